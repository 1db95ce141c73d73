/* fslog.c - kvfs diagnostics to stderr or syslog. */
#include "fslog.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

static int log_level = FS_LOG_WARN;
static int log_syslog;

void fs_log_set_level(int level)
{
    log_level = level;
}

int fs_log_get_level(void)
{
    return log_level;
}

void fs_log_use_syslog(void)
{
    openlog("kvfs", LOG_PID, LOG_DAEMON);
    log_syslog = 1;
}

void fs_log(int level, const char *fmt, ...)
{
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    static const char *const name[] = {"error", "warning", "info", "debug"};
    char msg[1024];
    va_list ap;

    if (level > log_level)
        return;
    if (level < 0)
        level = 0;
    if (level > FS_LOG_DEBUG)
        level = FS_LOG_DEBUG;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_syslog)
        syslog(prio[level], "%s", msg);
    else
        fprintf(stderr, "kvfs: %s: %s\n", name[level], msg);
}
