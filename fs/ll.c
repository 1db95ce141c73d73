/* ll.c - fuse_lowlevel_ops handlers: decode a request, call the fs logic, reply exactly once.
 * The only file that calls fuse_reply_*. */
#include "ll.h"

#include "fslog.h"
#include "schema.h"

#include <errno.h>
#include <limits.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LL_MAX_WRITE (1u << 20)
#define LL_MAX_GROUPS 64
/* Entries with attributes in the first READDIRPLUS reply of a listing. With READDIRPLUS_AUTO
 * the kernel asks for "plus" for every listing's first request, whoever reads; later requests
 * are "plus" only when the reader looked at entries of the previous reply (a lookup or a
 * revalidate of an inode that came with attributes sets FUSE_I_ADVISE_RDPLUS). So the first
 * reply carries attributes for a few entries and ends there: a reader that only wants names
 * (ls -f, find) reads the rest with plain READDIR and pays for few inode loads and kernel
 * inodes; a reader that stats (ls -l, du) stats these, and every later request comes as
 * "plus" and is filled (LL_READDIRPLUS_MORE). Small directories still come back whole, with
 * attributes, in one reply.
 * metabench -d, drop_caches before each listing, 9 runs each, load 6-11, median (min):
 *   1,000 entries, readdir:        first reply 128, later 128 (before): 0.50 ms (0.25)
 *                                  first 32, later all: 0.38 ms (0.20); first 16: 0.32 (0.17)
 *                                  first 0 (dots only), later 128: 0.32 ms (0.20)
 *   1,000 entries, readdir + lstat: 128/128: 1.43 ms (1.27); 16/all: 1.38 (1.26);
 *                                  0/128: 4.82 ms (4.57): every entry of the first READDIR
 *                                  then needs a LOOKUP, as fuse2fs's listings do.
 *   10,000 entries: readdir 1.78 -> 1.61 ms (min), readdir + lstat 17.6 -> 17.2 ms (min).
 * fuse2fs (no readdirplus): 1,000 entries readdir 0.30 ms (0.17), readdir + lstat 36.6 ms. */
#define LL_READDIRPLUS_FIRST 16
/* Entries with attributes in a later READDIRPLUS reply: the reader stats, so fill the buffer. */
#define LL_READDIRPLUS_MORE SIZE_MAX

static struct fs_ll *ll_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

/* Credentials of the request; supplementary groups only when asked (it reads /proc). */
static void ctx_of(fuse_req_t req, struct fs_ctx *ctx, gid_t *groups, int want_groups)
{
    const struct fuse_ctx *fc = fuse_req_ctx(req);
    ctx->uid = fc->uid;
    ctx->gid = fc->gid;
    ctx->groups = NULL;
    ctx->ngroups = 0;
    if (want_groups && fc->uid != 0) {
        int n = fuse_req_getgroups(req, LL_MAX_GROUPS, groups);
        if (n > 0) {
            ctx->groups = groups;
            ctx->ngroups = n < LL_MAX_GROUPS ? n : LL_MAX_GROUPS;
        }
    }
}

static void reply_entry(fuse_req_t req, const struct fs_entry *fe)
{
    struct fs_ll *ll = ll_of(req);
    struct fuse_entry_param e;

    memset(&e, 0, sizeof e);
    e.ino = fe->ino;
    e.generation = fe->generation;
    e.attr = fe->attr;
    e.attr_timeout = ll->attr_timeout;
    e.entry_timeout = ll->entry_timeout;
    /* The kernel did not get the entry (interrupted): it holds no reference to drop. */
    if (fuse_reply_entry(req, &e) != 0)
        fs_forget(ll->fs, fe->ino, 1);
}

static void fs_op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct fs_ll *ll = userdata;

    if (ll->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
        conn->want |= FUSE_CAP_WRITEBACK_CACHE;
        fs_set_kernel_times(ll->fs, 1);
    }
    if (conn->capable & FUSE_CAP_READDIRPLUS)
        conn->want |= FUSE_CAP_READDIRPLUS;
    if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO)
        conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    /* The kernel clears set-id bits on write/truncate through setattr (we keep no killpriv
     * logic on the write path). Splice gains nothing here: data is copied into kv batches.
     * The cost, measured with -d (tar -x of 200 files: 2,680 requests): a GETXATTR of
     * security.capability before every write and chown (477) and a GETATTR before every chown
     * (200). FUSE_HANDLE_KILLPRIV_V2 would remove the GETXATTRs (the kernel then marks the
     * superblock SB_NOSEC), but libfuse 3.14 can neither negotiate it nor pass on its
     * FUSE_WRITE_KILL_SUIDGID / FATTR_KILL_SUIDGID / FUSE_OPEN_KILL_SUIDGID flags. Version 1
     * would remove the chown GETATTR but hides from the filesystem whether the caller has
     * CAP_FSETID (a write by root must keep the bits), so it is not used either. */
    conn->want &= ~(unsigned)(FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_SPLICE_READ |
                              FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
    /* O_TRUNC arrives with open (fs_open_file truncates): one request instead of two. */
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    conn->max_write = LL_MAX_WRITE;
    conn->max_readahead = LL_MAX_WRITE;
    conn->time_gran = 1;
}

static void fs_op_destroy(void *userdata)
{
    struct fs_ll *ll = userdata;
    fs_fsync(ll->fs); /* best effort: unmount makes everything durable */
}

static void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fs_ll *ll = ll_of(req);
    struct fs_entry fe;
    int rc = fs_lookup(ll->fs, parent, name, &fe);

    if (rc == -ENOENT && ll->negative_timeout > 0) {
        struct fuse_entry_param e;
        memset(&e, 0, sizeof e);
        e.ino = 0; /* a negative entry, cached for entry_timeout */
        e.entry_timeout = ll->negative_timeout;
        fuse_reply_entry(req, &e);
        return;
    }
    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_entry(req, &fe);
}

static void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    fs_forget(ll_of(req)->fs, ino, nlookup);
    fuse_reply_none(req);
}

static void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    struct fs *fs = ll_of(req)->fs;
    for (size_t i = 0; i < count; i++)
        fs_forget(fs, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs_ll *ll = ll_of(req);
    struct stat st;
    int rc = fs_getattr(ll->fs, ino, &st);

    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &st, ll->attr_timeout);
}

_Static_assert(FS_SET_MODE == FUSE_SET_ATTR_MODE && FS_SET_UID == FUSE_SET_ATTR_UID &&
                   FS_SET_GID == FUSE_SET_ATTR_GID && FS_SET_SIZE == FUSE_SET_ATTR_SIZE &&
                   FS_SET_ATIME == FUSE_SET_ATTR_ATIME && FS_SET_MTIME == FUSE_SET_ATTR_MTIME &&
                   FS_SET_ATIME_NOW == FUSE_SET_ATTR_ATIME_NOW &&
                   FS_SET_MTIME_NOW == FUSE_SET_ATTR_MTIME_NOW &&
                   FS_SET_CTIME == FUSE_SET_ATTR_CTIME,
               "FS_SET_* mirror FUSE_SET_ATTR_*");

static void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                          struct fuse_file_info *fi)
{
    struct fs_ll *ll = ll_of(req);
    gid_t groups[LL_MAX_GROUPS];
    struct fs_ctx ctx;
    struct stat st;
    int rc;

    ctx_of(req, &ctx, groups, (to_set & FUSE_SET_ATTR_MODE) != 0);
    rc = fs_setattr(ll->fs, &ctx, ino, attr, to_set, &st);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &st, ll->attr_timeout);
}

static void fs_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    char buf[FS_SYMLINK_MAX + 1];
    int rc = fs_readlink(ll_of(req)->fs, ino, buf, sizeof buf);

    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_readlink(req, buf);
}

static void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                        dev_t rdev)
{
    gid_t groups[LL_MAX_GROUPS];
    struct fs_ctx ctx;
    struct fs_entry fe;
    int rc;

    ctx_of(req, &ctx, groups, (mode & S_ISGID) != 0);
    rc = fs_mknod(ll_of(req)->fs, &ctx, parent, name, mode, rdev, &fe);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_entry(req, &fe);
}

static void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct fs_ctx ctx;
    struct fs_entry fe;
    int rc;

    ctx_of(req, &ctx, NULL, 0);
    rc = fs_mkdir(ll_of(req)->fs, &ctx, parent, name, mode, &fe);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_entry(req, &fe);
}

static void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    struct fs_ctx ctx;
    struct fs_entry fe;
    int rc;

    ctx_of(req, &ctx, NULL, 0);
    rc = fs_symlink(ll_of(req)->fs, &ctx, parent, name, link, &fe);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_entry(req, &fe);
}

static void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    struct fs_entry fe;
    int rc = fs_link(ll_of(req)->fs, ino, newparent, newname, &fe);

    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_entry(req, &fe);
}

static void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, -fs_unlink(ll_of(req)->fs, parent, name));
}

static void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, -fs_rmdir(ll_of(req)->fs, parent, name));
}

static void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                         const char *newname, unsigned int flags)
{
    fuse_reply_err(req, -fs_rename(ll_of(req)->fs, parent, name, newparent, newname, flags));
}

static void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs *fs = ll_of(req)->fs;
    int rc = fs_open_file(fs, ino, fi->flags);

    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    /* Every change goes through this daemon, so cached pages stay valid across opens. */
    fi->keep_cache = 1;
    if (fuse_reply_open(req, fi) != 0)
        fs_release(fs, ino);
}

static void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                         struct fuse_file_info *fi)
{
    struct fs_ll *ll = ll_of(req);
    gid_t groups[LL_MAX_GROUPS];
    struct fuse_entry_param e;
    struct fs_ctx ctx;
    struct fs_entry fe;
    int rc;

    ctx_of(req, &ctx, groups, (mode & S_ISGID) != 0);
    rc = fs_create(ll->fs, &ctx, parent, name, mode, &fe);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    memset(&e, 0, sizeof e);
    e.ino = fe.ino;
    e.generation = fe.generation;
    e.attr = fe.attr;
    e.attr_timeout = ll->attr_timeout;
    e.entry_timeout = ll->entry_timeout;
    fi->keep_cache = 1;
    if (fuse_reply_create(req, &e, fi) != 0) {
        fs_release(ll->fs, fe.ino);
        fs_forget(ll->fs, fe.ino, 1);
    }
}

/* Each FUSE thread builds its read replies in a buffer it keeps (freed when the thread ends):
 * a fresh malloc of up to 2 MiB per request faulted in every page it touched (perf of a
 * sequential read: page faults and the zeroing of new pages were a fifth of the daemon). At
 * most 2 * LL_MAX_WRITE bytes per FUSE thread. */
struct read_buf {
    size_t cap;
    unsigned char data[];
};

static pthread_key_t read_buf_key;
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;
static int read_buf_ok;

static void read_buf_init(void)
{
    read_buf_ok = pthread_key_create(&read_buf_key, free) == 0;
}

/* This thread's buffer of at least size bytes; NULL if out of memory. */
static void *read_buf_get(size_t size)
{
    struct read_buf *rb, *grown;

    pthread_once(&read_buf_once, read_buf_init);
    if (!read_buf_ok)
        return NULL;
    rb = pthread_getspecific(read_buf_key);
    if (rb && rb->cap >= size)
        return rb->data;
    grown = malloc(sizeof *grown + size);
    if (!grown)
        return NULL;
    grown->cap = size;
    if (pthread_setspecific(read_buf_key, grown) != 0) {
        free(grown); /* the thread keeps its old buffer */
        return NULL;
    }
    free(rb);
    return grown->data;
}

static void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    void *buf;
    ssize_t n;

    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (size > 2 * LL_MAX_WRITE)
        size = 2 * LL_MAX_WRITE;
    buf = read_buf_get(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    n = fs_read(ll_of(req)->fs, ino, (uint64_t)off, size, buf);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else
        fuse_reply_buf(req, buf, (size_t)n);
}

static void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
    ssize_t n;

    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    n = fs_write(ll_of(req)->fs, ino, (uint64_t)off, buf, size);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else
        fuse_reply_write(req, (size_t)n);
}

static void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    /* Every acknowledged write is already in the WAL: nothing is buffered here. */
    fuse_reply_err(req, 0);
}

static void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fs_release(ll_of(req)->fs, ino);
    fuse_reply_err(req, 0);
}

static void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    fuse_reply_err(req, -fs_fsync(ll_of(req)->fs));
}

static void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs *fs = ll_of(req)->fs;
    struct fs_dir *d;
    int rc = fs_opendir(fs, ino, &d);

    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    /* No cache_readdir (FOPEN_CACHE_DIR), measured and left off:
     * - A listing served from the kernel's cache sends no READDIRPLUS, so a reader that stats
     *   (ls -l, ls --color, du) needs a LOOKUP per entry once the 1 s entry timeout has passed.
     *   10,000 entries, metabench, cache on vs off: readdir 0.43-0.76 vs 1.6-2.7 ms, but
     *   readdir + lstat 1.5 s after a listing 51-53 vs 13-39 ms, and after drop_caches
     *   58-110 vs 18 ms.
     * - Offsets are positions in this handle's snapshot, while a cached stream carries the
     *   offsets of the handle that filled it, taken at that handle's opendir. A change between
     *   that opendir and its first READDIR leaves the cache without it yet recorded as current
     *   (the kernel stamps the cache at the first READDIR), and a cache dropped in the middle
     *   of a listing resumes at an offset of another snapshot: both break "every entry that
     *   existed throughout, exactly once" (DESIGN.md). */
    fi->fh = (uint64_t)(uintptr_t)d;
    if (fuse_reply_open(req, fi) != 0)
        fs_closedir(fs, d);
}

/* Adds one plain READDIR entry in the kernel's format (struct fuse_dirent), as
 * fuse_add_direntry() does but without its strlen and strncpy of a name whose length is known:
 * they were a third of the daemon's CPU listing 10,000 entries (perf, kernel 6.18's 64 KiB
 * READDIR replies). Returns the entry's size; writes nothing if that exceeds size. */
static size_t add_dirent(char *buf, size_t size, const struct fs_dirent *de)
{
    size_t len = FUSE_NAME_OFFSET + de->namelen, ent = FUSE_DIRENT_ALIGN(len);
    struct fuse_dirent d;

    if (ent > size)
        return ent;
    d.ino = de->ino;
    d.off = de->next_off;
    d.namelen = de->namelen;
    d.type = (de->type & S_IFMT) >> 12;
    memcpy(buf, &d, FUSE_NAME_OFFSET);
    memcpy(buf + FUSE_NAME_OFFSET, de->name, de->namelen);
    memset(buf + len, 0, ent - len);
    return ent;
}

static void do_readdir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi, int plus)
{
    struct fs_ll *ll = ll_of(req);
    struct fs_dir *d = (struct fs_dir *)(uintptr_t)fi->fh;
    size_t used = 0, nplus = 0, plus_max = off == 0 ? LL_READDIRPLUS_FIRST : LL_READDIRPLUS_MORE;
    char *buf;
    int rc = 0;

    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (size > 4 * LL_MAX_WRITE)
        size = 4 * LL_MAX_WRITE;
    buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    for (;;) {
        struct fs_dirent de;
        size_t n;
        rc = fs_readdir(d, (uint64_t)off, &de);
        if (rc <= 0)
            break;
        if (!plus) {
            n = add_dirent(buf + used, size - used, &de);
            if (n > size - used)
                break;
        } else {
            struct fuse_entry_param e;
            int dots = strcmp(de.name, ".") == 0 || strcmp(de.name, "..") == 0;
            memset(&e, 0, sizeof e);
            if (dots) {
                /* no lookup reference for . and ..: ino 0 tells the kernel not to keep one */
                e.attr.st_ino = de.ino;
                e.attr.st_mode = de.type;
            } else {
                struct fs_entry fe;
                if (nplus == plus_max)
                    break; /* used > 0: the kernel asks again from off */
                rc = fs_readdir_entry(ll->fs, de.ino, &fe);
                if (rc == -ENOENT) { /* removed since opendir: it did not exist throughout */
                    off = (off_t)de.next_off;
                    rc = 0;
                    continue;
                }
                if (rc)
                    break;
                e.ino = fe.ino;
                e.generation = fe.generation;
                e.attr = fe.attr;
                e.attr_timeout = ll->attr_timeout;
                e.entry_timeout = ll->entry_timeout;
            }
            n = fuse_add_direntry_plus(req, buf + used, size - used, de.name, &e,
                                       (off_t)de.next_off);
            if (n > size - used) {
                if (e.ino)
                    fs_forget(ll->fs, e.ino, 1);
                break;
            }
            if (e.ino)
                nplus++;
        }
        used += n;
        off = (off_t)de.next_off;
    }
    if (rc < 0 && used == 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_buf(req, buf, used);
    free(buf);
}

static void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                          struct fuse_file_info *fi)
{
    do_readdir(req, size, off, fi, 0);
}

static void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                              struct fuse_file_info *fi)
{
    do_readdir(req, size, off, fi, 1);
}

static void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fs_closedir(ll_of(req)->fs, (struct fs_dir *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    fuse_reply_err(req, -fs_fsync(ll_of(req)->fs));
}

static void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs st;
    int rc = fs_statfs(ll_of(req)->fs, &st);

    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_statfs(req, &st);
}

static void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                           size_t size, int flags)
{
    fuse_reply_err(req, -fs_setxattr(ll_of(req)->fs, ino, name, value, size, flags));
}

static void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    void *buf = NULL;
    ssize_t n;

    if (size > FS_XATTR_SIZE_MAX)
        size = FS_XATTR_SIZE_MAX;
    if (size && !(buf = malloc(size))) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    n = fs_getxattr(ll_of(req)->fs, ino, name, buf, size);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)n);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
}

static void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    char *buf = NULL;
    ssize_t n;

    if (size > 16 * FS_XATTR_SIZE_MAX)
        size = 16 * FS_XATTR_SIZE_MAX;
    if (size && !(buf = malloc(size))) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    n = fs_listxattr(ll_of(req)->fs, ino, buf, size);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)n);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
}

static void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    fuse_reply_err(req, -fs_removexattr(ll_of(req)->fs, ino, name));
}

/* Only reached with nodefault_permissions: the classic owner/group/other check. */
static void fs_op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
    gid_t groups[LL_MAX_GROUPS];
    struct fs_ctx ctx;
    struct stat st;
    unsigned bits;
    int rc = fs_getattr(ll_of(req)->fs, ino, &st);

    if (rc || mask == F_OK) {
        fuse_reply_err(req, -rc);
        return;
    }
    ctx_of(req, &ctx, groups, 1);
    if (ctx.uid == 0) {
        int xok = !(mask & X_OK) || S_ISDIR(st.st_mode) || (st.st_mode & 0111);
        fuse_reply_err(req, xok ? 0 : EACCES);
        return;
    }
    if (ctx.uid == st.st_uid)
        bits = (st.st_mode >> 6) & 7;
    else if (fs_ctx_in_group(&ctx, st.st_gid))
        bits = (st.st_mode >> 3) & 7;
    else
        bits = st.st_mode & 7;
    fuse_reply_err(req, ((unsigned)mask & ~bits & 7) ? EACCES : 0);
}

static void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                            struct fuse_file_info *fi)
{
    if (off < 0 || len <= 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    fuse_reply_err(req, -fs_fallocate(ll_of(req)->fs, ino, mode, (uint64_t)off, (uint64_t)len));
}

static void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                        struct fuse_file_info *fi)
{
    off_t r = fs_lseek(ll_of(req)->fs, ino, off, whence);

    if (r < 0)
        fuse_reply_err(req, (int)-r);
    else
        fuse_reply_lseek(req, r);
}

static void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                                  struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                                  struct fuse_file_info *fi_out, size_t len, int flags)
{
    ssize_t n;

    if (flags != 0 || off_in < 0 || off_out < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    n = fs_copy_file_range(ll_of(req)->fs, ino_in, (uint64_t)off_in, ino_out, (uint64_t)off_out,
                           len);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else
        fuse_reply_write(req, (size_t)n);
}

static const struct fuse_lowlevel_ops ll_ops = {
    .init = fs_op_init,
    .destroy = fs_op_destroy,
    .lookup = fs_op_lookup,
    .forget = fs_op_forget,
    .forget_multi = fs_op_forget_multi,
    .getattr = fs_op_getattr,
    .setattr = fs_op_setattr,
    .readlink = fs_op_readlink,
    .mknod = fs_op_mknod,
    .mkdir = fs_op_mkdir,
    .unlink = fs_op_unlink,
    .rmdir = fs_op_rmdir,
    .symlink = fs_op_symlink,
    .rename = fs_op_rename,
    .link = fs_op_link,
    .open = fs_op_open,
    .create = fs_op_create,
    .read = fs_op_read,
    .write = fs_op_write,
    .flush = fs_op_flush,
    .release = fs_op_release,
    .fsync = fs_op_fsync,
    .opendir = fs_op_opendir,
    .readdir = fs_op_readdir,
    .readdirplus = fs_op_readdirplus,
    .releasedir = fs_op_releasedir,
    .fsyncdir = fs_op_fsyncdir,
    .statfs = fs_op_statfs,
    .setxattr = fs_op_setxattr,
    .getxattr = fs_op_getxattr,
    .listxattr = fs_op_listxattr,
    .removexattr = fs_op_removexattr,
    .access = fs_op_access,
    .fallocate = fs_op_fallocate,
    .lseek = fs_op_lseek,
    .copy_file_range = fs_op_copy_file_range,
};

const struct fuse_lowlevel_ops *fs_ll_ops(void)
{
    return &ll_ops;
}
