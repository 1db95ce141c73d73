/* dir.c - namespace changes: create nodes, link, unlink, rmdir, rename. Each is one batch. */
#include "fs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int put_dirent(kv_batch *b, uint64_t parent, const char *name, size_t nlen, uint64_t child,
                      uint32_t mode)
{
    uint8_t key[FS_KEY_MAX], val[FS_DIRENT_LEN];
    size_t klen = fs_key_dirent(key, parent, name, nlen);

    fs_dirent_encode(child, fs_mode_to_dtype(mode), val);
    return fs_kv_errno(kv_batch_put(b, key, klen, val, sizeof val));
}

static int del_dirent(kv_batch *b, uint64_t parent, const char *name, size_t nlen)
{
    uint8_t key[FS_KEY_MAX];
    size_t klen = fs_key_dirent(key, parent, name, nlen);
    return fs_kv_errno(kv_batch_delete(b, key, klen));
}

/* Commits b, which changes the dirents of directory a and of c (0 or a: only a), between the
 * directory cache's change marks (dircache.h invariant 1). The caller holds both stripes. */
static int commit_dirents(struct fs *fs, kv_batch *b, uint64_t a, uint64_t c, int freeing)
{
    int rc;
    fs_dc_change_begin(fs->dc, fs_stripe_of(a));
    if (c)
        fs_dc_change_begin(fs->dc, fs_stripe_of(c));
    rc = freeing ? fs_commit_freeing(fs, b) : fs_commit(fs, b);
    fs_dc_change_end(fs->dc, fs_stripe_of(a));
    if (c)
        fs_dc_change_end(fs->dc, fs_stripe_of(c));
    return rc;
}

static int put_orphan(kv_batch *b, uint64_t ino)
{
    uint8_t key[FS_KEY_MAX];
    size_t klen = fs_key_orphan(key, ino);
    return fs_kv_errno(kv_batch_put(b, key, klen, "", 0));
}

/* Loads a directory that may receive or lose entries: -ENOTDIR, -ENOENT if removed. */
static int load_live_dir(struct fs *fs, uint64_t ino, struct fs_inode *dir)
{
    int rc = fs_inode_load(fs, NULL, ino, dir, NULL, NULL);
    if (rc)
        return rc;
    if (!S_ISDIR(dir->mode))
        return -ENOTDIR;
    if (dir->nlink == 0)
        return -ENOENT;
    return 0;
}

/* 1 if directory ino has no entries, 0 if it has, or a negative errno. */
static int dir_is_empty(struct fs *fs, uint64_t ino)
{
    uint8_t prefix[FS_KEY_MAX];
    size_t plen = fs_key_prefix(prefix, FS_KEY_DIRENT, ino), klen;
    kv_iter *it = kv_iter_new(fs->db, NULL);
    int rc;

    if (!it)
        return -ENOMEM;
    kv_iter_seek(it, prefix, plen);
    rc = 1;
    if (kv_iter_valid(it)) {
        const void *k = kv_iter_key(it, &klen);
        if (klen >= plen && memcmp(k, prefix, plen) == 0)
            rc = 0;
    } else if (kv_iter_status(it)) {
        rc = fs_kv_errno(kv_iter_status(it));
    }
    kv_iter_free(it);
    return rc;
}

int fs_make_node(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
                 uint32_t mode, uint64_t rdev, const char *target, int open, struct fs_entry *e)
{
    struct fs_inode dir, in;
    struct timespec now;
    size_t nlen, tlen = target ? strlen(target) : 0;
    uint64_t ino, child;
    uint8_t dtype;
    kv_batch *b = NULL;
    int rc;

    memset(e, 0, sizeof *e);
    FS_ROFS_CHECK(fs);
    rc = fs_check_name(name, &nlen);
    if (rc)
        return rc;
    if (fs_mode_to_dtype(mode) == 0)
        return -EINVAL;
    if (target && (tlen == 0 || tlen > FS_SYMLINK_MAX))
        return tlen ? -ENAMETOOLONG : -ENOENT;
    rc = fs_alloc_ino(fs, &ino);
    if (rc)
        return rc;
    b = kv_batch_new();
    if (!b)
        return -ENOMEM;
    fs_now(&now);
    fs_lock_ino(fs, parent);
    rc = load_live_dir(fs, parent, &dir);
    if (rc)
        goto out;
    rc = fs_dirent_load(fs, NULL, parent, name, nlen, &child, &dtype);
    if (rc == 0)
        rc = -EEXIST;
    if (rc != -ENOENT)
        goto out;
    memset(&in, 0, sizeof in);
    in.ino = ino;
    in.mode = mode & (S_IFMT | 07777);
    in.uid = ctx->uid;
    in.gid = ctx->gid;
    if (dir.mode & S_ISGID) {
        /* BSD group semantics in a set-group-ID directory; subdirectories inherit the bit */
        in.gid = dir.gid;
        if (S_ISDIR(mode))
            in.mode |= S_ISGID;
    }
    if (!S_ISDIR(mode) && (in.mode & S_ISGID) && (in.mode & S_IXGRP) &&
        !fs_ctx_in_group(ctx, in.gid))
        in.mode &= ~(uint32_t)S_ISGID;
    in.nlink = S_ISDIR(mode) ? 2 : 1;
    in.parent = S_ISDIR(mode) ? parent : 0;
    in.size = tlen;
    in.rdev = (S_ISCHR(mode) || S_ISBLK(mode)) ? rdev : 0;
    in.generation = 1;
    in.atime = in.mtime = in.ctime = now;
    dir.mtime = dir.ctime = now;
    if (S_ISDIR(mode))
        dir.nlink++;
    rc = fs_batch_put_inode(b, &in, target, tlen);
    if (rc == 0)
        rc = put_dirent(b, parent, name, nlen, ino, mode);
    if (rc == 0)
        rc = fs_batch_put_inode(b, &dir, NULL, 0);
    if (rc == 0)
        rc = commit_dirents(fs, b, parent, 0, 0);
    if (rc == 0)
        rc = fs_itab_add(fs, ino, 1, open ? 1 : 0);
    if (rc == 0) {
        e->ino = ino;
        e->generation = in.generation;
        fs_inode_to_stat(fs, &in, &e->attr);
    }
out:
    fs_unlock_ino(fs, parent);
    kv_batch_free(b);
    return rc;
}

int fs_mknod(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
             uint32_t mode, uint64_t rdev, struct fs_entry *e)
{
    if (S_ISDIR(mode) || S_ISLNK(mode))
        return -EINVAL;
    if ((mode & S_IFMT) == 0)
        mode |= S_IFREG;
    return fs_make_node(fs, ctx, parent, name, mode, rdev, NULL, 0, e);
}

int fs_mkdir(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
             uint32_t mode, struct fs_entry *e)
{
    return fs_make_node(fs, ctx, parent, name, S_IFDIR | (mode & 07777), 0, NULL, 0, e);
}

int fs_symlink(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
               const char *target, struct fs_entry *e)
{
    return fs_make_node(fs, ctx, parent, name, S_IFLNK | 0777, 0, target, 0, e);
}

int fs_create(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
              uint32_t mode, struct fs_entry *e)
{
    return fs_make_node(fs, ctx, parent, name, S_IFREG | (mode & 07777), 0, NULL, 1, e);
}

int fs_link(struct fs *fs, uint64_t ino, uint64_t newparent, const char *newname,
            struct fs_entry *e)
{
    uint64_t inos[2] = {ino, newparent}, child;
    struct fs_inode in, dir;
    struct fs_lockset ls;
    struct timespec now;
    char *tail = NULL;
    size_t nlen, tlen = 0;
    uint8_t dtype;
    kv_batch *b;
    int rc;

    memset(e, 0, sizeof *e);
    FS_ROFS_CHECK(fs);
    rc = fs_check_name(newname, &nlen);
    if (rc)
        return rc;
    b = kv_batch_new();
    if (!b)
        return -ENOMEM;
    fs_now(&now);
    fs_lock_inos(fs, &ls, inos, 2);
    rc = fs_inode_load(fs, NULL, ino, &in, &tail, &tlen);
    if (rc)
        goto out;
    if (S_ISDIR(in.mode)) {
        rc = -EPERM;
        goto out;
    }
    if (in.nlink == 0) {
        rc = -ENOENT;
        goto out;
    }
    if (in.nlink >= 65000) {
        rc = -EMLINK;
        goto out;
    }
    rc = load_live_dir(fs, newparent, &dir);
    if (rc)
        goto out;
    rc = fs_dirent_load(fs, NULL, newparent, newname, nlen, &child, &dtype);
    if (rc == 0)
        rc = -EEXIST;
    if (rc != -ENOENT)
        goto out;
    in.nlink++;
    in.ctime = now;
    dir.mtime = dir.ctime = now;
    rc = fs_batch_put_inode(b, &in, tail, tlen);
    if (rc == 0)
        rc = put_dirent(b, newparent, newname, nlen, ino, in.mode);
    if (rc == 0)
        rc = fs_batch_put_inode(b, &dir, NULL, 0);
    if (rc == 0)
        rc = commit_dirents(fs, b, newparent, 0, 0);
    if (rc == 0)
        rc = fs_itab_add(fs, ino, 1, 0);
    if (rc == 0) {
        e->ino = ino;
        e->generation = in.generation;
        fs_inode_to_stat(fs, &in, &e->attr);
    }
out:
    fs_unlock_set(fs, &ls);
    kv_batch_free(b);
    free(tail);
    return rc;
}

/* Locks {parents, the children their names resolve to} with the names resolved under the
 * parents' locks. First the parents, then the children by trylock (one read of each dirent);
 * if a child's stripe is busy, all are taken in stripe order and the names re-read, until they
 * resolve to the children locked. *c2 may be 0 (no such entry) when n2 is given. */
static int lock_names(struct fs *fs, struct fs_lockset *ls, uint64_t p1, const char *n1, size_t l1,
                      uint64_t *c1, uint64_t p2, const char *n2, size_t l2, uint64_t *c2)
{
    uint64_t a = 0, b = 0;

    for (int tries = 0;; tries++) {
        uint64_t a2 = 0, b2 = 0, set[4] = {p1, n2 ? p2 : 0, a, b};
        uint8_t t;
        int rc, ok;

        fs_lock_inos(fs, ls, set, tries == 0 ? 2 : 4);
        rc = fs_dirent_load(fs, NULL, p1, n1, l1, &a2, &t);
        if (rc == 0 && n2) {
            rc = fs_dirent_load(fs, NULL, p2, n2, l2, &b2, &t);
            if (rc == -ENOENT)
                rc = 0, b2 = 0;
        }
        if (rc) {
            fs_unlock_set(fs, ls);
            return rc;
        }
        if (tries == 0) {
            uint64_t kids[2] = {a2, b2};
            ok = fs_lockset_try_add(fs, ls, kids, 2) == 0;
        } else {
            ok = a2 == a && b2 == b; /* the children locked are still the ones named */
        }
        if (ok) {
            *c1 = a2;
            if (c2)
                *c2 = b2;
            return 0;
        }
        fs_unlock_set(fs, ls);
        a = a2;
        b = b2;
        if (tries > 1000) /* cannot happen unless something loops renames forever */
            return -EAGAIN;
    }
}

static int remove_entry(struct fs *fs, uint64_t parent, const char *name, int want_dir)
{
    struct fs_inode dir, in;
    struct fs_lockset ls;
    struct timespec now;
    uint64_t child;
    char *tail = NULL;
    size_t nlen = strnlen(name, FS_NAME_MAX + 1), tlen = 0;
    kv_batch *b;
    int rc;

    FS_ROFS_CHECK(fs);
    if (nlen > FS_NAME_MAX)
        return -ENAMETOOLONG;
    if (strcmp(name, ".") == 0)
        return want_dir ? -EINVAL : -EISDIR;
    if (strcmp(name, "..") == 0)
        return want_dir ? -ENOTEMPTY : -EISDIR;
    b = kv_batch_new();
    if (!b)
        return -ENOMEM;
    rc = lock_names(fs, &ls, parent, name, nlen, &child, 0, NULL, 0, NULL);
    if (rc) {
        kv_batch_free(b);
        return rc;
    }
    fs_now(&now);
    rc = load_live_dir(fs, parent, &dir);
    if (rc == 0)
        rc = fs_inode_load(fs, NULL, child, &in, &tail, &tlen);
    if (rc == -ENOENT)
        rc = -EIO; /* the dirent names a missing inode: logged by fsck */
    if (rc)
        goto out;
    if (want_dir && !S_ISDIR(in.mode)) {
        rc = -ENOTDIR;
        goto out;
    }
    if (!want_dir && S_ISDIR(in.mode)) {
        rc = -EISDIR;
        goto out;
    }
    if (want_dir) {
        rc = dir_is_empty(fs, child);
        if (rc <= 0) {
            rc = rc == 0 ? -ENOTEMPTY : rc;
            goto out;
        }
        in.nlink = 0;
        dir.nlink--;
    } else {
        in.nlink--;
    }
    in.ctime = now;
    dir.mtime = dir.ctime = now;
    rc = del_dirent(b, parent, name, nlen);
    if (rc == 0)
        rc = fs_batch_put_inode(b, &dir, NULL, 0);
    if (rc == 0)
        rc = fs_batch_put_inode(b, &in, tail, tlen);
    if (rc == 0 && in.nlink == 0)
        rc = put_orphan(b, child);
    if (rc == 0)
        rc = commit_dirents(fs, b, parent, 0, 1);
    if (rc == 0 && in.nlink == 0)
        fs_maybe_reclaim(fs, child); /* failure leaves the orphan key: not the caller's error */
out:
    fs_unlock_set(fs, &ls);
    kv_batch_free(b);
    free(tail);
    return rc;
}

int fs_unlink(struct fs *fs, uint64_t parent, const char *name)
{
    return remove_entry(fs, parent, name, 0);
}

int fs_rmdir(struct fs *fs, uint64_t parent, const char *name)
{
    return remove_entry(fs, parent, name, 1);
}

/* -EINVAL if directory `dir` is `anc` or lies below it: walks dir's parents up to the root,
 * O(depth). Caller holds rename_mu, so no directory changes parent meanwhile. */
static int check_not_below(struct fs *fs, uint64_t dir, uint64_t anc)
{
    for (int depth = 0; depth < 100000; depth++) {
        struct fs_inode in;
        int rc;
        if (dir == anc)
            return -EINVAL;
        if (dir == FS_ROOT_INO)
            return 0;
        rc = fs_inode_load(fs, NULL, dir, &in, NULL, NULL);
        if (rc)
            return rc == -ENOENT ? -EIO : rc;
        dir = in.parent;
    }
    fs_log(FS_LOG_ERROR, "directory parent chain does not reach the root (loop)");
    return -EIO;
}

struct rn_node {
    struct fs_inode in;
    char *tail;
    size_t tlen;
};

int fs_rename(struct fs *fs, uint64_t parent, const char *name, uint64_t newparent,
              const char *newname, unsigned int flags)
{
    struct fs_inode pd, npd, *np;
    struct rn_node src = {0}, dst = {0};
    struct fs_lockset ls;
    struct timespec now;
    uint64_t s_ino, d_ino;
    size_t nlen = strnlen(name, FS_NAME_MAX + 1), nnlen;
    int cross = parent != newparent, rc, exchange = (flags & RENAME_EXCHANGE) != 0;
    kv_batch *b;

    FS_ROFS_CHECK(fs);
    if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
        return -EINVAL;
    if ((flags & RENAME_NOREPLACE) && exchange)
        return -EINVAL;
    if (nlen > FS_NAME_MAX)
        return -ENAMETOOLONG;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -EBUSY;
    rc = fs_check_name(newname, &nnlen);
    if (rc)
        return rc == -EEXIST ? -EBUSY : rc;
    b = kv_batch_new();
    if (!b)
        return -ENOMEM;
    if (cross)
        pthread_mutex_lock(&fs->rename_mu);
    rc = lock_names(fs, &ls, parent, name, nlen, &s_ino, newparent, newname, nnlen, &d_ino);
    if (rc)
        goto out_nolock;
    fs_now(&now);
    rc = load_live_dir(fs, parent, &pd);
    if (rc == 0 && cross) /* within one directory np is pd: one load */
        rc = load_live_dir(fs, newparent, &npd);
    if (rc)
        goto out;
    np = cross ? &npd : &pd;
    rc = fs_inode_load(fs, NULL, s_ino, &src.in, &src.tail, &src.tlen);
    if (rc == 0 && d_ino)
        rc = fs_inode_load(fs, NULL, d_ino, &dst.in, &dst.tail, &dst.tlen);
    if (rc == -ENOENT)
        rc = -EIO;
    if (rc)
        goto out;
    if (d_ino == s_ino) /* same inode under both names: POSIX says do nothing */
        goto out;
    if ((flags & RENAME_NOREPLACE) && d_ino) {
        rc = -EEXIST;
        goto out;
    }
    if (exchange && !d_ino) {
        rc = -ENOENT;
        goto out;
    }
    if (d_ino && !exchange) {
        if (S_ISDIR(src.in.mode) && !S_ISDIR(dst.in.mode)) {
            rc = -ENOTDIR;
            goto out;
        }
        if (!S_ISDIR(src.in.mode) && S_ISDIR(dst.in.mode)) {
            rc = -EISDIR;
            goto out;
        }
        if (S_ISDIR(dst.in.mode)) {
            rc = dir_is_empty(fs, d_ino);
            if (rc <= 0) {
                rc = rc == 0 ? -ENOTEMPTY : rc;
                goto out;
            }
        }
    }
    if (cross && S_ISDIR(src.in.mode)) {
        rc = check_not_below(fs, newparent, s_ino);
        if (rc)
            goto out;
    }
    if (cross && exchange && S_ISDIR(dst.in.mode)) {
        rc = check_not_below(fs, parent, d_ino);
        if (rc)
            goto out;
    }

    /* Build the batch. */
    pd.mtime = pd.ctime = now;
    np->mtime = np->ctime = now;
    src.in.ctime = now;
    if (exchange) {
        dst.in.ctime = now;
        rc = put_dirent(b, parent, name, nlen, d_ino, dst.in.mode);
        if (rc == 0)
            rc = put_dirent(b, newparent, newname, nnlen, s_ino, src.in.mode);
        if (cross && S_ISDIR(src.in.mode)) {
            src.in.parent = newparent;
            pd.nlink--;
            np->nlink++;
        }
        if (cross && S_ISDIR(dst.in.mode)) {
            dst.in.parent = parent;
            np->nlink--;
            pd.nlink++;
        }
    } else {
        rc = del_dirent(b, parent, name, nlen);
        if (rc == 0)
            rc = put_dirent(b, newparent, newname, nnlen, s_ino, src.in.mode);
        if (d_ino) {
            dst.in.ctime = now;
            if (S_ISDIR(dst.in.mode)) {
                dst.in.nlink = 0;
                np->nlink--;
            } else {
                dst.in.nlink--;
            }
            if (rc == 0 && dst.in.nlink == 0)
                rc = put_orphan(b, d_ino);
        }
        if (cross && S_ISDIR(src.in.mode)) {
            src.in.parent = newparent;
            pd.nlink--;
            np->nlink++;
        }
    }
    if (rc == 0)
        rc = fs_batch_put_inode(b, &pd, NULL, 0);
    if (rc == 0 && cross)
        rc = fs_batch_put_inode(b, &npd, NULL, 0);
    if (rc == 0)
        rc = fs_batch_put_inode(b, &src.in, src.tail, src.tlen);
    if (rc == 0 && d_ino)
        rc = fs_batch_put_inode(b, &dst.in, dst.tail, dst.tlen);
    if (rc == 0) /* replacing a file frees space; a plain rename adds none */
        rc = commit_dirents(fs, b, parent, newparent, d_ino && !exchange);
    if (rc == 0 && d_ino && !exchange && dst.in.nlink == 0)
        fs_maybe_reclaim(fs, d_ino);
out:
    fs_unlock_set(fs, &ls);
out_nolock:
    if (cross)
        pthread_mutex_unlock(&fs->rename_mu);
    kv_batch_free(b);
    free(src.tail);
    free(dst.tail);
    return rc;
}
