/* fslog.h - kvfs diagnostics: one line per message to stderr, or to syslog once daemonised. */
#ifndef KVFS_FSLOG_H
#define KVFS_FSLOG_H

enum { FS_LOG_ERROR = 0, FS_LOG_WARN = 1, FS_LOG_INFO = 2, FS_LOG_DEBUG = 3 };

/* Logs one message (no trailing newline needed) if level <= the current level. Thread-safe. */
void fs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sets the most verbose level logged (default FS_LOG_WARN). Call before starting threads. */
void fs_log_set_level(int level);
int fs_log_get_level(void);
/* Sends later messages to syslog (daemon facility) instead of stderr. Call before threads. */
void fs_log_use_syslog(void);

#endif /* KVFS_FSLOG_H */
