/* options.h - the kvfs mount command line: libfuse's option parser over struct mount_opts,
 * and the checks that turn the parsed text into kvcore and filesystem settings.
 *
 * Every function prints its one error line to stderr ("kvfs: bad ...") and returns -1 on bad
 * input; none exits. Strings in struct mount_opts are owned by it (mount_opts_free). Not
 * thread-safe (the command line is parsed once, before any thread starts).
 */
#ifndef KVFS_OPTIONS_H
#define KVFS_OPTIONS_H

#include "fs.h"
#include "ll.h"

#include <fuse_opt.h>
#include <stddef.h>

struct mount_opts {
    char *store;
    char *mountpoint;
    int foreground;
    int debug;
    int read_only;
    int no_default_permissions;
    int help;
    int version;
    char *sync;
    double attr_timeout;
    double entry_timeout;
    double negative_timeout;
    char *cache_size;
    char *chunk_cache_size;
    char *dir_cache_size;
    char *memtable_size;
    char *reserve;
    char *log_level;
    int writeback; /* -o writeback=0|1, default 1 */
};

/* Parses args (argv of `kvfs mount` or mount.fuse3's form) into *o, which it initialises
 * (timeouts 1 s, writeback on). Options meant for libfuse stay in args. Returns 0, or -1 on a
 * malformed command line (message printed). Free *o with mount_opts_free either way. */
int mount_opts_parse(struct fuse_args *args, struct mount_opts *o);
/* Checks what needs no store: log level, timeouts, writeback. Returns the log level (an
 * FS_LOG_* value; FS_LOG_WARN when not given), or -1 (message printed). */
int mount_opts_check(const struct mount_opts *o);
/* Applies the sizes and the sync mode to ko (initialised by the caller), cfg and ll, after
 * zeroing cfg and ll. Returns 0 or -1 (message printed). */
int mount_opts_apply(const struct mount_opts *o, kv_options *ko, struct fs_config *cfg,
                     struct fs_ll *ll);
/* Frees the strings of *o and zeroes it. */
void mount_opts_free(struct mount_opts *o);

/* "64M", "1GiB", "4096" -> bytes (K, M, G: powers of 1024). Returns 0, or -1 if malformed or
 * too large for size_t. */
int mount_opts_parse_size(const char *s, size_t *out);
/* "error", "warn" (or "warning"), "info", "debug" -> FS_LOG_*; -1 otherwise. */
int mount_opts_parse_log_level(const char *s);

#endif /* KVFS_OPTIONS_H */
