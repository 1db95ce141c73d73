/* env_posix.c - the real kv_env over POSIX system calls, and the env convenience helpers.
 *
 * Every call retries EINTR; append retries short writes; pread loops until n bytes or end of
 * file. errno becomes a KV_E* code in one place (map_errno). Nothing here logs: callers know
 * which file and why, and say so.
 */
#include "util/env.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define FILE_MODE 0644
#define DIR_MODE 0700

typedef struct posix_file {
    env_file base;
    int fd;
    void *map; /* posix_map_readable's mapping (NULL: none), unmapped by close */
    size_t map_size;
} posix_file;

struct env_lock {
    int fd;
};

static int map_errno(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        return KV_ENOSPC;
    case ENOENT:
        return KV_ENOTFOUND;
    case ENOMEM:
        return KV_ENOMEM;
    default:
        return KV_EIO;
    }
}

static int open_file(const kv_env *env, const char *path, int flags, env_file **out)
{
    *out = NULL;
    posix_file *f = malloc(sizeof *f);
    if (!f)
        return KV_ENOMEM;
    int fd;
    do {
        fd = open(path, flags | O_CLOEXEC, FILE_MODE);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int rc = map_errno(errno);
        free(f);
        return rc;
    }
    f->base.env = env;
    f->fd = fd;
    f->map = NULL;
    f->map_size = 0;
    *out = &f->base;
    return 0;
}

static int posix_open_writable(const kv_env *env, const char *path, env_file **out)
{
    return open_file(env, path, O_WRONLY | O_CREAT | O_TRUNC, out);
}

static int posix_open_appendable(const kv_env *env, const char *path, env_file **out)
{
    return open_file(env, path, O_WRONLY | O_APPEND, out);
}

static int posix_open_readable(const kv_env *env, const char *path, env_file **out)
{
    return open_file(env, path, O_RDONLY, out);
}

static int posix_pread(env_file *ef, void *buf, size_t n, uint64_t off, size_t *nread)
{
    posix_file *f = (posix_file *)ef;
    size_t done = 0;
    *nread = 0;
    if (off > (uint64_t)INT64_MAX)
        return KV_EINVAL;
    while (done < n) {
        ssize_t r = pread(f->fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return map_errno(errno);
        }
        if (r == 0)
            break; /* end of file */
        done += (size_t)r;
    }
    *nread = done;
    return 0;
}

static int posix_append(env_file *ef, const void *buf, size_t n)
{
    posix_file *f = (posix_file *)ef;
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return map_errno(errno);
        }
        /* cannot happen for regular files: write(2) returns 0 only for n == 0 */
        if (w == 0)
            return KV_EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int posix_appendv(env_file *ef, const struct iovec *iov, int n)
{
    posix_file *f = (posix_file *)ef;
    while (n > 0) {
        ssize_t w = writev(f->fd, iov, n < IOV_MAX ? n : IOV_MAX);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return map_errno(errno);
        }
        size_t left = (size_t)w;
        int before = n;
        for (; n > 0 && left >= iov->iov_len; iov++, n--)
            left -= iov->iov_len; /* buffers written whole (or empty) */
        if (left > 0) {
            /* A short write stopped inside this buffer: finish it, go on with the next. */
            int rc = posix_append(ef, (const char *)iov->iov_base + left, iov->iov_len - left);
            if (rc != 0)
                return rc;
            iov++;
            n--;
        } else if (n == before) {
            return KV_EIO; /* cannot happen for regular files: nothing written of a buffer */
        }
    }
    return 0;
}

static int posix_sync(env_file *ef)
{
    posix_file *f = (posix_file *)ef;
    int r;
    do {
        r = fdatasync(f->fd);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? map_errno(errno) : 0;
}

static int posix_close(env_file *ef)
{
    posix_file *f = (posix_file *)ef;
    /* On Linux the descriptor is released even if close fails (EINTR included): never retry,
     * a retry could close a descriptor another thread just opened. */
    if (f->map)
        munmap(f->map, f->map_size);
    int r = close(f->fd);
    int rc = (r < 0 && errno != EINTR) ? map_errno(errno) : 0;
    free(f);
    return rc;
}

static int posix_map_readable(env_file *ef, uint64_t size, const void **base)
{
    posix_file *f = (posix_file *)ef;
    *base = NULL;
    /* size_t is narrower than the file on 32-bit systems: those read such a table with pread. */
    if (f->map || size == 0 || size > (uint64_t)SIZE_MAX || size > (uint64_t)INT64_MAX)
        return KV_EINVAL;
    /* The size is checked on this descriptor, not by path: pages past the end of the file
     * would raise SIGBUS when read, so a file shorter than the caller thinks is not mapped. */
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        return map_errno(errno);
    if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size < size)
        return KV_EIO;
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, f->fd, 0);
    if (p == MAP_FAILED)
        return map_errno(errno);
    f->map = p;
    f->map_size = (size_t)size;
    *base = p;
    return 0;
}

static int posix_file_size(const kv_env *env, const char *path, uint64_t *size)
{
    struct stat st;
    *size = 0;
    if (stat(path, &st) < 0)
        return map_errno(errno);
    *size = (uint64_t)st.st_size;
    return 0;
}

static int posix_rename(const kv_env *env, const char *from, const char *to)
{
    return rename(from, to) < 0 ? map_errno(errno) : 0;
}

static int posix_unlink(const kv_env *env, const char *path)
{
    return unlink(path) < 0 ? map_errno(errno) : 0;
}

static int posix_mkdir(const kv_env *env, const char *path)
{
    if (mkdir(path, DIR_MODE) == 0)
        return 0;
    int e = errno;
    if (e == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
    }
    return map_errno(e);
}

static int posix_rmdir(const kv_env *env, const char *path)
{
    return rmdir(path) < 0 ? map_errno(errno) : 0;
}

static int posix_sync_dir(const kv_env *env, const char *path)
{
    int fd;
    do {
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return map_errno(errno);
    int r;
    do {
        r = fsync(fd);
    } while (r < 0 && errno == EINTR);
    /* Some file systems cannot fsync a directory (EINVAL); their metadata operations are
     * then as durable as they will ever be, so this is not a failure. */
    int rc = (r < 0 && errno != EINVAL) ? map_errno(errno) : 0;
    close(fd);
    return rc;
}

static int posix_list_dir(const kv_env *env, const char *path, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(path);
    if (!d)
        return map_errno(errno);
    char **v = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                rc = map_errno(errno);
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nv = realloc(v, ncap * sizeof *nv);
            if (!nv) {
                rc = KV_ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        if (!(v[len] = strdup(de->d_name))) {
            rc = KV_ENOMEM;
            break;
        }
        len++;
    }
    closedir(d);
    if (rc) {
        env_free_names(v, len);
        return rc;
    }
    *names = v;
    *n = len;
    return 0;
}

static int posix_lock(const kv_env *env, const char *path, env_lock **out)
{
    *out = NULL;
    env_lock *l = malloc(sizeof *l);
    if (!l)
        return KV_ENOMEM;
    do {
        l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, FILE_MODE);
    } while (l->fd < 0 && errno == EINTR);
    if (l->fd < 0) {
        int rc = map_errno(errno);
        free(l);
        return rc;
    }
    /* flock locks belong to the open file description, so a second kv_open of the same store
     * in this very process is refused too, not only one from another process. */
    int r;
    do {
        r = flock(l->fd, LOCK_EX | LOCK_NB);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        int rc = errno == EWOULDBLOCK ? KV_EBUSY : map_errno(errno);
        close(l->fd);
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

static int posix_unlock(env_lock *l)
{
    if (!l)
        return 0;
    int rc = flock(l->fd, LOCK_UN) < 0 ? map_errno(errno) : 0;
    close(l->fd); /* releases the lock even if LOCK_UN failed */
    free(l);
    return rc;
}

/* Monotonic: used for measuring delays and stalls, never stored. */
static uint64_t posix_now_micros(const kv_env *env)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void posix_sleep_micros(const kv_env *env, uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int posix_preallocate(const kv_env *env, const char *path, uint64_t bytes)
{
    (void)env;
    int fd;
    do {
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, FILE_MODE);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return map_errno(errno);
    /* posix_fallocate allocates real blocks (not a sparse size) and falls back to writing
     * where fallocate(2) is unsupported; it returns the error instead of setting errno. */
    int e;
    do {
        e = bytes > 0 ? posix_fallocate(fd, 0, (off_t)bytes) : 0;
    } while (e == EINTR);
    close(fd);
    return e ? map_errno(e) : 0;
}

static int posix_free_space(const kv_env *env, const char *path, uint64_t *avail, uint64_t *total)
{
    (void)env;
    struct statvfs sv;
    *avail = *total = 0;
    if (statvfs(path, &sv) != 0)
        return map_errno(errno);
    uint64_t frsize = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
    *avail = (uint64_t)sv.f_bavail * frsize;
    *total = (uint64_t)sv.f_blocks * frsize;
    return 0;
}

static const kv_env posix_env = {
    .open_writable = posix_open_writable,
    .open_appendable = posix_open_appendable,
    .open_readable = posix_open_readable,
    .pread = posix_pread,
    .append = posix_append,
    .appendv = posix_appendv,
    .sync = posix_sync,
    .close = posix_close,
    .file_size = posix_file_size,
    .rename = posix_rename,
    .unlink = posix_unlink,
    .mkdir = posix_mkdir,
    .rmdir = posix_rmdir,
    .sync_dir = posix_sync_dir,
    .list_dir = posix_list_dir,
    .lock = posix_lock,
    .unlock = posix_unlock,
    .now_micros = posix_now_micros,
    .sleep_micros = posix_sleep_micros,
    .preallocate = posix_preallocate,
    .free_space = posix_free_space,
    .map_readable = posix_map_readable,
    .ctx = NULL,
};

const kv_env *env_posix(void)
{
    return &posix_env;
}

void env_free_names(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* ---- Helpers over any env ---------------------------------------------------------------- */

#define READ_CHUNK ((size_t)64 * 1024)

int env_read_file(const kv_env *env, const char *path, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    env_file *f = NULL;
    int rc = env->open_readable(env, path, &f);
    if (rc)
        return rc;
    char *p = NULL;
    size_t used = 0, cap = 0;
    for (;;) {
        if (cap - used < READ_CHUNK + 1) {
            size_t ncap = cap ? cap * 2 : READ_CHUNK + 1;
            char *np = ncap > cap ? realloc(p, ncap) : NULL;
            if (!np) {
                rc = KV_ENOMEM;
                break;
            }
            p = np;
            cap = ncap;
        }
        size_t want = cap - used - 1, got = 0;
        rc = env_pread(f, p + used, want, used, &got);
        if (rc)
            break;
        used += got;
        if (got < want)
            break; /* end of file */
    }
    int crc = env_close(f);
    if (!rc)
        rc = crc;
    if (rc) {
        free(p);
        return rc;
    }
    p[used] = '\0'; /* convenience for text files; not counted in *len */
    *data = p;
    *len = used;
    return 0;
}

static char *join_path(const char *dir, const char *name, const char *suffix)
{
    size_t dl = strlen(dir), nl = strlen(name), sl = strlen(suffix);
    char *p = malloc(dl + 1 + nl + sl + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, dl);
    p[dl] = '/';
    memcpy(p + dl + 1, name, nl);
    memcpy(p + dl + 1 + nl, suffix, sl + 1);
    return p;
}

int env_write_file_atomic(const kv_env *env, const char *dir, const char *name, const void *data,
                          size_t len)
{
    char *tmp = join_path(dir, name, ".tmp");
    char *dst = join_path(dir, name, "");
    int rc = KV_ENOMEM;
    if (!tmp || !dst)
        goto out;
    env_file *f = NULL;
    rc = env->open_writable(env, tmp, &f);
    if (rc)
        goto out;
    rc = env_append(f, data, len);
    if (!rc)
        rc = env_sync(f);
    int crc = env_close(f);
    if (!rc)
        rc = crc;
    if (!rc)
        rc = env->rename(env, tmp, dst);
    if (rc) {
        env->unlink(env, tmp); /* best effort: a stale temp file is harmless */
        goto out;
    }
    rc = env->sync_dir(env, dir);
out:
    free(tmp);
    free(dst);
    return rc;
}
