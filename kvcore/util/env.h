/* env.h - the I/O function table through which kvcore does all file I/O.
 *
 * Every file kvcore reads or writes goes through a struct kv_env, so that tests can swap in an
 * environment that drops unsynced writes, tears the last write, flips bits or fails with
 * ENOSPC/EIO (tests/support/fault_env.h). env_posix() is the real one.
 *
 * Errors: every function returns 0 or a negative KV_E* code (errno ENOSPC/EDQUOT -> KV_ENOSPC,
 * ENOENT -> KV_ENOTFOUND, ENOMEM -> KV_ENOMEM, anything else -> KV_EIO) and logs nothing; the
 * caller adds context.
 * Threads: every function may be called from any thread. A file handle may be used by several
 * threads for pread at once; append/sync/close on one handle are serialised by the caller.
 */
#ifndef KV_ENV_H
#define KV_ENV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "kvcore/kv.h"

typedef struct env_file env_file; /* opaque; each env defines its own */
typedef struct env_lock env_lock;

struct kv_env {
    /* Creates (or truncates) path for appending. */
    int (*open_writable)(const struct kv_env *env, const char *path, env_file **out);
    /* Opens an existing path for appending at its end (used to keep writing a WAL/manifest). */
    int (*open_appendable)(const struct kv_env *env, const char *path, env_file **out);
    /* Opens an existing path for positional reads. KV_ENOTFOUND if absent. */
    int (*open_readable)(const struct kv_env *env, const char *path, env_file **out);
    /* Reads up to n bytes at off; *nread < n only at end of file. */
    int (*pread)(env_file *f, void *buf, size_t n, uint64_t off, size_t *nread);
    /* Appends all n bytes (short writes are retried inside). */
    int (*append)(env_file *f, const void *buf, size_t n);
    /* Makes everything appended so far durable (fdatasync). */
    int (*sync)(env_file *f);
    /* Closes and frees f, even on error. Unsynced data is not synced by close. */
    int (*close)(env_file *f);
    int (*file_size)(const struct kv_env *env, const char *path, uint64_t *size);
    /* Atomically replaces `to` with `from` (rename(2)); durable only after sync_dir. */
    int (*rename)(const struct kv_env *env, const char *from, const char *to);
    int (*unlink)(const struct kv_env *env, const char *path);
    /* Creates a directory with mode 0700; 0 if it already exists as a directory. */
    int (*mkdir)(const struct kv_env *env, const char *path);
    int (*rmdir)(const struct kv_env *env, const char *path);
    /* fsyncs a directory so that creates, renames and unlinks in it are durable. */
    int (*sync_dir)(const struct kv_env *env, const char *path);
    /* Lists the names in a directory (without "." and ".."). *names is a malloc'd array of
     * malloc'd strings; free with env_free_names(). KV_ENOTFOUND if the directory is absent. */
    int (*list_dir)(const struct kv_env *env, const char *path, char ***names, size_t *n);
    /* Takes an exclusive, non-blocking flock on path (created if absent); KV_EBUSY if held. */
    int (*lock)(const struct kv_env *env, const char *path, env_lock **out);
    int (*unlock)(env_lock *l);
    uint64_t (*now_micros)(const struct kv_env *env);
    void (*sleep_micros)(const struct kv_env *env, uint64_t us);
    /* Added: makes path (created if absent) at least `bytes` long with every block allocated
     * (fallocate; emulated by writing where the file system cannot), so that unlinking it later
     * gives the space back. KV_ENOSPC if the space is not there (the file may then be partly
     * allocated: unlink it). The file's contents are unspecified. May be NULL in an env that
     * cannot do it: callers then keep no reserve. */
    int (*preallocate)(const struct kv_env *env, const char *path, uint64_t bytes);
    /* Added: bytes an unprivileged writer may still allocate on the file system holding path,
     * and its total size (statvfs). May be NULL (unknown). */
    int (*free_space)(const struct kv_env *env, const char *path, uint64_t *avail, uint64_t *total);
    /* Added: maps the first `size` bytes of f (opened with open_readable) read-only into memory
     * and sets *base to them; the mapping lives until close(f), which unmaps it, so the bytes
     * stay valid exactly as long as f is open. At most one mapping per file (a second call
     * fails). Fails (KV_EIO, KV_EINVAL, KV_ENOMEM; *base NULL, nothing mapped) if the file is
     * now shorter than size (checked on the open descriptor, so a mapping never covers bytes
     * past the end of the file as it was at the call), if size is 0 or does not fit the address
     * space, or if the system refuses; callers then read with pread. Only for files that are
     * complete and never written again (a table): a file truncated by someone else while mapped
     * makes a read of the lost pages raise SIGBUS. May be NULL in an env that cannot map (the
     * fault env, in-memory test files): callers read with pread. Threads: any; the mapped bytes
     * may be read by any number of threads at once. */
    int (*map_readable)(env_file *f, uint64_t size, const void **base);
    /* Added: appends the bytes of the n buffers of iov, in order, all of them (as append: short
     * writes are retried inside), with as few system calls as it can (writev). May be NULL:
     * env_appendv then calls append once per buffer. */
    int (*appendv)(env_file *f, const struct iovec *iov, int n);
    void *ctx; /* private to the implementation */
};

typedef struct kv_env kv_env;

/* The POSIX environment (a static singleton). */
const kv_env *env_posix(void);

void env_free_names(char **names, size_t n);

/* Convenience wrappers, so call sites read as env_append(f, ...) and not f->env->... */
int env_read_file(const kv_env *env, const char *path, char **data, size_t *len); /* malloc'd */
/* Writes data to path via a temp file + sync + rename + sync_dir(dir). */
int env_write_file_atomic(const kv_env *env, const char *dir, const char *name, const void *data,
                          size_t len);

/* Base of every env_file: implementations embed it first so the table can be found. */
struct env_file {
    const kv_env *env;
};

static inline int env_pread(env_file *f, void *b, size_t n, uint64_t off, size_t *nread)
{
    return f->env->pread(f, b, n, off, nread);
}
static inline int env_append(env_file *f, const void *b, size_t n)
{
    return f->env->append(f, b, n);
}
/* f's env appendv, or one append per buffer where the env has none. */
static inline int env_appendv(env_file *f, const struct iovec *iov, int n)
{
    if (f->env->appendv)
        return f->env->appendv(f, iov, n);
    for (int i = 0; i < n; i++) {
        int rc = f->env->append(f, iov[i].iov_base, iov[i].iov_len);
        if (rc != 0)
            return rc;
    }
    return 0;
}
static inline int env_sync(env_file *f)
{
    return f->env->sync(f);
}
/* f's env map_readable, or KV_EINVAL if the env cannot map (*base NULL). */
static inline int env_map_readable(env_file *f, uint64_t size, const void **base)
{
    *base = NULL;
    return f->env->map_readable ? f->env->map_readable(f, size, base) : KV_EINVAL;
}
static inline int env_close(env_file *f)
{
    return f ? f->env->close(f) : 0;
}

#endif /* KV_ENV_H */
