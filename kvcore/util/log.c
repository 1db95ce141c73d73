/* log.c - formats diagnostics and hands them to the user's logger, or to stderr.
 *
 * Messages are formatted into a bounded stack buffer (truncated if longer) so that logging
 * never allocates and is safe while out of memory. The stderr default writes each message
 * with one fprintf so lines from concurrent threads do not interleave mid-line.
 */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>

#define LOG_MSG_MAX 1024

void kv_logger_init(kv_logger *lg, const kv_options *opts)
{
    lg->fn = opts ? opts->log_fn : NULL;
    lg->ctx = opts ? opts->log_ctx : NULL;
    lg->level = opts ? opts->log_level : KV_LOG_WARN;
}

static const char *level_name(int level)
{
    switch (level) {
    case KV_LOG_ERROR:
        return "error";
    case KV_LOG_WARN:
        return "warning";
    case KV_LOG_INFO:
        return "info";
    case KV_LOG_DEBUG:
        return "debug";
    default:
        return "log";
    }
}

void kv_log(const kv_logger *lg, int level, const char *fmt, ...)
{
    int max_level = lg ? lg->level : KV_LOG_WARN;
    if (level > max_level)
        return;
    char msg[LOG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(msg, sizeof msg, "(unformattable log message: %s)", fmt);
    else if ((size_t)n >= sizeof msg) /* mark the truncation rather than hide it */
        snprintf(msg + sizeof msg - 5, 5, "...");
    if (lg && lg->fn)
        lg->fn(lg->ctx, level, msg);
    else
        fprintf(stderr, "kvcore: %s: %s\n", level_name(level), msg);
}
