/* inode.c - lookup, forget, getattr, setattr and readlink. */
#include "fs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Loads ino and takes one lookup reference, under its stripe so that a concurrent reclaim
 * either finished before (-ENOENT) or sees the reference. */
static int ref_inode(struct fs *fs, uint64_t ino, struct fs_entry *e)
{
    struct fs_inode in;
    int rc;

    fs_lock_ino(fs, ino);
    rc = fs_inode_load(fs, NULL, ino, &in, NULL, NULL);
    if (rc == 0)
        rc = fs_itab_add(fs, ino, 1, 0);
    if (rc == 0 && in.nlink == 0) /* e.g. a listing's snapshot still names it */
        fs_itab_mark_unlinked(fs, ino);
    fs_unlock_ino(fs, ino);
    if (rc)
        return rc;
    e->ino = ino;
    e->generation = in.generation;
    fs_inode_to_stat(fs, &in, &e->attr);
    return 0;
}

int fs_lookup(struct fs *fs, uint64_t parent, const char *name, struct fs_entry *e)
{
    size_t nlen = strnlen(name, FS_NAME_MAX + 1);
    uint64_t child;
    uint8_t dtype;
    int rc;

    memset(e, 0, sizeof *e);
    if (nlen > FS_NAME_MAX)
        return -ENAMETOOLONG;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        struct fs_inode dir;
        rc = fs_inode_load(fs, NULL, parent, &dir, NULL, NULL);
        if (rc)
            return rc;
        if (!S_ISDIR(dir.mode))
            return -ENOTDIR;
        return ref_inode(fs, name[1] ? dir.parent : parent, e);
    }
    rc = fs_dirent_load(fs, NULL, parent, name, nlen, &child, &dtype);
    if (rc)
        return rc;
    rc = ref_inode(fs, child, e);
    if (rc == -ENOENT) {
        fs_log(FS_LOG_ERROR, "dirent %llu/%s names missing inode %llu", (unsigned long long)parent,
               name, (unsigned long long)child);
        rc = -EIO;
    }
    return rc;
}

int fs_readdir_entry(struct fs *fs, uint64_t ino, struct fs_entry *e)
{
    memset(e, 0, sizeof *e);
    return ref_inode(fs, ino, e);
}

void fs_forget(struct fs *fs, uint64_t ino, uint64_t nlookup)
{
    /* Only an inode seen unlinked while referenced can need reclaiming: the kernel forgets
     * every inode it drops from its cache (thousands after a drop_caches, or a big tree's
     * walk), and each of the others would cost a load to find its links still there. */
    fs_lock_ino(fs, ino);
    if (fs_itab_drop(fs, ino, nlookup, 0) == FS_ITAB_GONE_UNLINKED)
        fs_maybe_reclaim(fs, ino);
    fs_unlock_ino(fs, ino);
}

int fs_getattr(struct fs *fs, uint64_t ino, struct stat *st)
{
    struct fs_inode in;
    int rc = fs_inode_load(fs, NULL, ino, &in, NULL, NULL);

    if (rc)
        return rc;
    fs_inode_to_stat(fs, &in, st);
    return 0;
}

static int same_timespec(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* 1 if the fields a setattr may change are equal in a and b. */
static int same_settable(const struct fs_inode *a, const struct fs_inode *b)
{
    return a->mode == b->mode && a->uid == b->uid && a->gid == b->gid && a->size == b->size &&
           a->stored == b->stored && same_timespec(a->atime, b->atime) &&
           same_timespec(a->mtime, b->mtime) && same_timespec(a->ctime, b->ctime);
}

int fs_setattr(struct fs *fs, const struct fs_ctx *ctx, uint64_t ino, const struct stat *attr,
               int to_set, struct stat *out)
{
    struct fs_inode old;
    struct fs_inode in;
    struct timespec now;
    kv_batch *b = NULL;
    char *tail = NULL;
    size_t tlen = 0;
    int rc, shrinks = 0;

    FS_ROFS_CHECK(fs);
    fs_now(&now);
    fs_lock_ino(fs, ino);
    rc = fs_inode_load(fs, NULL, ino, &in, &tail, &tlen);
    if (rc)
        goto out;
    old = in;
    b = kv_batch_new();
    if (!b) {
        rc = -ENOMEM;
        goto out;
    }
    if (to_set & FS_SET_MODE) {
        in.mode = (in.mode & S_IFMT) | (attr->st_mode & 07777);
        /* chmod by a non-member of the file's group cannot set the set-group-ID bit */
        if (!fs_ctx_in_group(ctx, in.gid))
            in.mode &= ~(uint32_t)S_ISGID;
    }
    if (to_set & (FS_SET_UID | FS_SET_GID)) {
        if (to_set & FS_SET_UID)
            in.uid = attr->st_uid;
        if (to_set & FS_SET_GID)
            in.gid = attr->st_gid;
        /* chown of a non-directory clears set-user-ID, and set-group-ID when group-executable
         * (without group-execute it marks mandatory locking and stays) */
        if (!S_ISDIR(in.mode)) {
            in.mode &= ~(uint32_t)S_ISUID;
            if (in.mode & S_IXGRP)
                in.mode &= ~(uint32_t)S_ISGID;
        }
    }
    if (to_set & FS_SET_SIZE) {
        if (S_ISDIR(in.mode)) {
            rc = -EISDIR;
            goto out;
        }
        if (!S_ISREG(in.mode)) {
            rc = -EINVAL;
            goto out;
        }
        if (attr->st_size < 0) {
            rc = -EINVAL;
            goto out;
        }
        if ((uint64_t)attr->st_size != in.size) {
            shrinks = (uint64_t)attr->st_size < in.size;
            rc = fs_truncate_locked(fs, b, &in, (uint64_t)attr->st_size);
            if (rc)
                goto out;
        }
        /* as on ext4, a truncate updates mtime (and ctime) even when the size stays the same */
        in.mtime = now;
    }
    if (to_set & FS_SET_ATIME_NOW)
        in.atime = now;
    else if (to_set & FS_SET_ATIME)
        in.atime = attr->st_atim;
    if (to_set & FS_SET_MTIME_NOW)
        in.mtime = now;
    else if (to_set & FS_SET_MTIME)
        in.mtime = attr->st_mtim;
    if (in.atime.tv_nsec < 0 || in.atime.tv_nsec >= 1000000000L || in.mtime.tv_nsec < 0 ||
        in.mtime.tv_nsec >= 1000000000L) {
        rc = -EINVAL;
        goto out;
    }
    if ((to_set & FS_SET_CTIME) && attr->st_ctim.tv_nsec >= 0 &&
        attr->st_ctim.tv_nsec < 1000000000L)
        in.ctime = attr->st_ctim;
    else
        in.ctime = now;
    /* With the writeback cache the kernel sends the times it holds after each rename, unlink
     * and write: often the ones stored (fs_now reads the kernel's clock), then nothing is
     * written. */
    if (kv_batch_count(b) == 0 && same_settable(&in, &old)) {
        fs_inode_to_stat(fs, &in, out);
        goto out;
    }
    rc = fs_batch_put_inode(b, &in, tail, tlen);
    if (rc == 0) /* truncating down frees space: accepted on a full disk */
        rc = shrinks ? fs_commit_freeing(fs, b) : fs_commit(fs, b);
    if (rc == 0)
        fs_inode_to_stat(fs, &in, out);
out:
    fs_unlock_ino(fs, ino);
    kv_batch_free(b);
    free(tail);
    return rc;
}

int fs_readlink(struct fs *fs, uint64_t ino, char *buf, size_t size)
{
    struct fs_inode in;
    char *tail;
    size_t tlen = 0;
    int rc = fs_inode_load(fs, NULL, ino, &in, &tail, &tlen);

    if (rc)
        return rc;
    if (!S_ISLNK(in.mode)) {
        free(tail);
        return -EINVAL;
    }
    if (size) {
        size_t n = tlen < size - 1 ? tlen : size - 1;
        memcpy(buf, tail, n);
        buf[n] = '\0';
    }
    free(tail);
    return (int)tlen;
}
