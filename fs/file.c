/* file.c - file data in chunks: read, write, truncate, fallocate, SEEK_DATA/SEEK_HOLE, copy.
 *
 * A file's byte range [i*cs, (i+1)*cs) lives in chunk key C ino i; a missing chunk is a hole.
 * A chunk stores its bytes only up to the last one written (never past EOF); the rest reads as
 * zeros. One write call is one batch: every chunk it touches plus the inode.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define FS_FILE_MAX ((uint64_t)INT64_MAX)
#define FS_COPY_PIECE (1u << 20)

/* Reads chunk idx; *data NULL and *len 0 for a hole. Validates the stored length. */
static int chunk_get(struct fs *fs, const kv_snapshot *snap, uint64_t ino, uint64_t idx,
                     uint8_t **data, size_t *len)
{
    uint8_t key[FS_KEY_MAX];
    size_t klen = fs_key_chunk(key, ino, idx);
    void *val;
    int rc = kv_get(fs->db, snap, key, klen, &val, len);

    *data = NULL;
    if (rc == KV_ENOTFOUND) {
        *len = 0;
        return 0;
    }
    if (rc)
        return fs_kv_errno(rc);
    if (*len == 0 || *len > fs->chunk_size) {
        fs_log(FS_LOG_ERROR, "chunk %llu of inode %llu: length %zu outside 1..%u",
               (unsigned long long)idx, (unsigned long long)ino, *len, fs->chunk_size);
        kv_free(val);
        *len = 0;
        return -EIO;
    }
    *data = val;
    return 0;
}

/* Copies bytes [a, b) of chunk idx to out: *n receives the stored bytes copied (the caller
 * zeroes the rest; a hole has none). Only the pages of the range are read (kv_get_range).
 * Validates the stored length as chunk_get does. */
static int chunk_read_range(struct fs *fs, const kv_snapshot *snap, uint64_t ino, uint64_t idx,
                            size_t a, size_t b, uint8_t *out, size_t *n)
{
    uint8_t key[FS_KEY_MAX];
    size_t klen = fs_key_chunk(key, ino, idx), len;
    int rc = kv_get_range(fs->db, snap, key, klen, a, out, b - a, n, &len);

    if (rc == KV_ENOTFOUND) {
        *n = 0;
        return 0;
    }
    if (rc)
        return fs_kv_errno(rc);
    if (len == 0 || len > fs->chunk_size) {
        fs_log(FS_LOG_ERROR, "chunk %llu of inode %llu: length %zu outside 1..%u",
               (unsigned long long)idx, (unsigned long long)ino, len, fs->chunk_size);
        *n = 0;
        return -EIO;
    }
    return 0;
}

static int check_regular(const struct fs_inode *in)
{
    if (S_ISDIR(in->mode))
        return -EISDIR;
    return S_ISREG(in->mode) ? 0 : -EINVAL;
}

int fs_open_file(struct fs *fs, uint64_t ino, int flags)
{
    struct fs_inode in;
    kv_batch *b = NULL;
    int rc;

    fs_lock_ino(fs, ino);
    rc = fs_inode_load(fs, NULL, ino, &in, NULL, NULL);
    if (rc == 0 && (flags & O_TRUNC) && S_ISREG(in.mode) && (flags & O_ACCMODE) != O_RDONLY) {
        /* libfuse asks for atomic O_TRUNC: the kernel sends no setattr, the open truncates.
         * Like truncate(2), it updates mtime and ctime even when the file was empty. */
        if (fs->cfg.read_only) {
            rc = -EROFS;
        } else if (!(b = kv_batch_new())) {
            rc = -ENOMEM;
        } else {
            rc = fs_truncate_locked(fs, b, &in, 0);
            fs_now(&in.mtime);
            in.ctime = in.mtime;
            if (rc == 0)
                rc = fs_batch_put_inode(b, &in, NULL, 0);
            if (rc == 0)
                rc = fs_commit(fs, b);
            kv_batch_free(b);
        }
    }
    if (rc == 0)
        rc = fs_itab_add(fs, ino, 0, 1);
    fs_unlock_ino(fs, ino);
    return rc;
}

void fs_release(struct fs *fs, uint64_t ino)
{
    fs_lock_ino(fs, ino);
    if (fs_itab_drop(fs, ino, 0, 1))
        fs_maybe_reclaim(fs, ino);
    fs_unlock_ino(fs, ino);
}

int fs_fsync(struct fs *fs)
{
    if (fs->cfg.read_only)
        return 0;
    return fs_kv_errno(kv_sync(fs->db));
}

/* relatime: atime moves when it is not newer than mtime and ctime, or is a day old. */
static int atime_is_stale(const struct fs_inode *in)
{
    struct timespec now;
    fs_now(&now);
    if (in->atime.tv_sec < in->mtime.tv_sec ||
        (in->atime.tv_sec == in->mtime.tv_sec && in->atime.tv_nsec <= in->mtime.tv_nsec))
        return 1;
    if (in->atime.tv_sec < in->ctime.tv_sec ||
        (in->atime.tv_sec == in->ctime.tv_sec && in->atime.tv_nsec <= in->ctime.tv_nsec))
        return 1;
    return now.tv_sec - in->atime.tv_sec >= 86400;
}

static void touch_atime(struct fs *fs, uint64_t ino)
{
    struct fs_inode in;
    kv_batch *b;

    if (fs->cfg.read_only)
        return;
    fs_lock_ino(fs, ino);
    if (fs_inode_load(fs, NULL, ino, &in, NULL, NULL) == 0 && in.nlink > 0 && atime_is_stale(&in) &&
        (b = kv_batch_new()) != NULL) {
        fs_now(&in.atime);
        if (fs_batch_put_inode(b, &in, NULL, 0) == 0)
            fs_commit(fs, b); /* best effort: a lost atime update is harmless */
        kv_batch_free(b);
    }
    fs_unlock_ino(fs, ino);
}

ssize_t fs_read(struct fs *fs, uint64_t ino, uint64_t off, size_t size, void *buf)
{
    /* The cache's sample comes before the snapshot (chunkcache.h, invariant 2). */
    int stripe = fs_stripe_of(ino);
    uint64_t sample = fs_cc_sample(fs->cc, stripe);
    const kv_snapshot *snap = kv_snapshot_new(fs->db);
    struct fs_inode in;
    uint64_t cs, end, pos;
    uint8_t *out = buf;
    int rc, stale = 0;

    if (!snap)
        return -ENOMEM;
    rc = fs_inode_load(fs, snap, ino, &in, NULL, NULL);
    if (rc == 0)
        rc = check_regular(&in);
    if (rc)
        goto out;
    stale = atime_is_stale(&in);
    if (off >= in.size || size == 0)
        goto out;
    cs = fs->chunk_size;
    end = in.size - off < size ? in.size : off + size;
    for (pos = off; pos < end;) {
        uint64_t idx = pos / cs, cstart = idx * cs, a = pos - cstart;
        uint64_t b = end - cstart < cs ? end - cstart : cs;
        uint8_t *data;
        size_t len, n;
        if (fs_cc_read(fs->cc, stripe, sample, ino, idx, (size_t)a, (size_t)b, out + (pos - off))) {
            pos = cstart + b;
            continue;
        }
        if ((a == 0 && b == cs) || !fs_cc_admit(fs->cc, ino, idx)) {
            /* Only the pages of [a, b) are read and verified, straight into the reply: a 4 KiB
             * read of a 64 KiB chunk costs about 4 KiB. */
            rc = chunk_read_range(fs, snap, ino, idx, (size_t)a, (size_t)b, out + (pos - off), &n);
            if (rc)
                goto out;
            memset(out + (pos - off) + n, 0, b - a - n); /* past the stored bytes: zeros */
            pos = cstart + b;
            continue;
        }
        /* The cache expects more reads of this chunk (fs_cc_admit): read all of it and keep it,
         * unless the kernel took all of it (it caches what it read). */
        rc = chunk_get(fs, snap, ino, idx, &data, &len);
        if (rc)
            goto out;
        n = len > a ? (len < b ? len : b) - a : 0;
        if (n) /* a hole has no data */
            memcpy(out + (pos - off), data + a, n);
        memset(out + (pos - off) + n, 0, b - a - n); /* past the stored bytes: zeros */
        if (a > 0 || b < len)
            fs_cc_insert(fs->cc, stripe, sample, ino, idx, data, len); /* takes data */
        else
            kv_free(data);
        pos = cstart + b;
    }
    rc = 0;
    kv_snapshot_free(fs->db, snap);
    if (stale)
        touch_atime(fs, ino);
    return (ssize_t)(end - off);
out:
    kv_snapshot_free(fs->db, snap);
    if (rc == 0 && stale)
        touch_atime(fs, ino);
    return rc;
}

/* Byte order of two keys, as the store sorts them. */
static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

/* Stored length of chunk idx (0 for a hole), for a write that replaces the chunk whole and so
 * needs only its length (for in->stored), not its bytes. *itp is one forward scan shared by the
 * whole-chunk pieces of a write, which come in increasing idx: created on first use, it reads
 * each chunk's length in place instead of copying 64 KiB out of the store per chunk. */
static int whole_chunk_old_len(struct fs *fs, kv_iter **itp, uint64_t ino, uint64_t idx,
                               size_t *olen)
{
    uint8_t key[FS_KEY_MAX];
    size_t klen = fs_key_chunk(key, ino, idx), kl, vl;
    kv_iter *it = *itp;
    const uint8_t *k;
    int steps = 0;

    *olen = 0;
    if (!it) {
        it = *itp = kv_iter_new_keys(fs->db, NULL);
        if (!it)
            return -ENOMEM;
        kv_iter_seek(it, key, klen);
    }
    /* Usually the scan already stands on idx or one chunk before it. */
    while (kv_iter_valid(it) && (k = kv_iter_key(it, &kl), key_cmp(k, kl, key, klen) < 0)) {
        if (++steps > 2) {
            kv_iter_seek(it, key, klen);
            break;
        }
        kv_iter_next(it);
    }
    if (!kv_iter_valid(it))
        return fs_kv_errno(kv_iter_status(it));
    k = kv_iter_key(it, &kl);
    if (key_cmp(k, kl, key, klen) != 0)
        return 0; /* a hole */
    vl = kv_iter_value_size(it);
    if (vl == 0 || vl > fs->chunk_size) {
        fs_log(FS_LOG_ERROR, "chunk %llu of inode %llu: length %zu outside 1..%u",
               (unsigned long long)idx, (unsigned long long)ino, vl, fs->chunk_size);
        return -EIO;
    }
    *olen = vl;
    return 0;
}

ssize_t fs_write(struct fs *fs, uint64_t ino, uint64_t off, const void *buf, size_t size)
{
    const uint8_t *src = buf;
    struct fs_inode in;
    struct timespec now;
    uint64_t cs = fs->chunk_size, end, pos;
    uint8_t *tmp = NULL;
    kv_iter *scan = NULL;
    kv_batch *b;
    int rc;

    FS_ROFS_CHECK(fs);
    if (off > FS_FILE_MAX || size > FS_FILE_MAX - off)
        return -EFBIG;
    if (size == 0)
        return 0;
    end = off + size;
    b = kv_batch_new();
    tmp = malloc(cs);
    if (!b || !tmp) {
        rc = -ENOMEM;
        goto out_free;
    }
    fs_now(&now);
    fs_lock_ino(fs, ino);
    fs_cc_write_begin(fs->cc, fs_stripe_of(ino)); /* the unlock ends it */
    rc = fs_inode_load(fs, NULL, ino, &in, NULL, NULL);
    if (rc == 0)
        rc = check_regular(&in);
    if (rc)
        goto out;
    for (pos = off; pos < end;) {
        uint64_t idx = pos / cs, cstart = idx * cs, a = pos - cstart;
        uint64_t e = end - cstart < cs ? end - cstart : cs;
        uint8_t key[FS_KEY_MAX];
        size_t klen = fs_key_chunk(key, ino, idx), olen = 0, nlen;
        uint8_t *old = NULL;
        if (a == 0 && (e == cs || cstart + e >= in.size)) {
            /* The write replaces every byte the chunk may hold (a stored chunk never reaches
             * past EOF, invariant 4): its old bytes are not needed, only its length, and the
             * new bytes go to the batch straight from the caller's buffer. */
            if (cstart < in.size) { /* no chunk exists at or past EOF (invariant 4) */
                rc = whole_chunk_old_len(fs, &scan, ino, idx, &olen);
                if (rc)
                    goto out;
            }
            nlen = (size_t)e;
            rc = fs_kv_errno(kv_batch_put(b, key, klen, src + (pos - off), nlen));
        } else {
            if (cstart < in.size) {
                rc = chunk_get(fs, NULL, ino, idx, &old, &olen);
                if (rc)
                    goto out;
            }
            nlen = olen > e ? olen : e;
            if (olen)
                memcpy(tmp, old, olen);
            if (a > olen)
                memset(tmp + olen, 0, a - olen);
            memcpy(tmp + a, src + (pos - off), e - a);
            kv_free(old);
            rc = fs_kv_errno(kv_batch_put(b, key, klen, tmp, nlen));
        }
        if (rc)
            goto out;
        in.stored += nlen - olen;
        pos = cstart + e;
    }
    kv_iter_free(scan); /* before the commit: it pins the memtable it read */
    scan = NULL;
    if (end > in.size)
        in.size = end;
    if (!fs->kernel_times)
        in.mtime = in.ctime = now;
    rc = fs_batch_put_inode(b, &in, NULL, 0);
    if (rc == 0)
        rc = fs_commit(fs, b);
out:
    kv_iter_free(scan);
    fs_unlock_ino(fs, ino);
out_free:
    kv_batch_free(b);
    free(tmp);
    return rc ? rc : (ssize_t)size;
}

int fs_truncate_locked(struct fs *fs, kv_batch *b, struct fs_inode *in, uint64_t size)
{
    uint64_t cs = fs->chunk_size, first_dead, idx;
    uint8_t prefix[FS_KEY_MAX], key[FS_KEY_MAX];
    size_t plen, klen;
    kv_iter *it;
    int rc = 0;

    if (size > FS_FILE_MAX)
        return -EFBIG;
    if (size >= in->size) {
        in->size = size;
        return 0;
    }
    /* The caller holds the stripe; its unlock ends the change (chunkcache.h, invariant 1). */
    fs_cc_write_begin(fs->cc, fs_stripe_of(in->ino));
    /* Delete every chunk wholly past the new EOF. */
    first_dead = size / cs + (size % cs != 0);
    plen = fs_key_prefix(prefix, FS_KEY_CHUNK, in->ino);
    it = kv_iter_new_keys(fs->db, NULL); /* lengths only: a deleted chunk is not read */
    if (!it)
        return -ENOMEM;
    klen = fs_key_chunk(key, in->ino, first_dead);
    for (kv_iter_seek(it, key, klen); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = kv_iter_key(it, &kl);
        uint64_t kino;
        if (kl < plen || memcmp(k, prefix, plen) != 0)
            break;
        rc = fs_key_parse_chunk(k, kl, &kino, &idx);
        if (rc)
            break;
        vl = kv_iter_value_size(it);
        rc = fs_kv_errno(kv_batch_delete(b, k, kl));
        if (rc)
            break;
        in->stored -= vl < in->stored ? vl : in->stored;
    }
    if (rc == 0)
        rc = fs_kv_errno(kv_iter_status(it));
    kv_iter_free(it);
    /* Trim the chunk that now holds EOF, so a later extension reads zeros. */
    if (rc == 0 && size % cs) {
        uint8_t *data;
        size_t len, keep = size % cs;
        idx = size / cs;
        rc = chunk_get(fs, NULL, in->ino, idx, &data, &len);
        if (rc == 0 && len > keep) {
            klen = fs_key_chunk(key, in->ino, idx);
            rc = fs_kv_errno(kv_batch_put(b, key, klen, data, keep));
            in->stored -= (len - keep) < in->stored ? (len - keep) : in->stored;
        }
        kv_free(data);
    }
    if (rc == 0)
        in->size = size;
    return rc;
}

/* Zeroes [off, end) (inside EOF) of a locked inode: whole chunks deleted, edges rewritten. */
static int punch_locked(struct fs *fs, kv_batch *b, struct fs_inode *in, uint64_t off, uint64_t end)
{
    uint64_t cs = fs->chunk_size;
    uint8_t prefix[FS_KEY_MAX], key[FS_KEY_MAX];
    size_t plen = fs_key_prefix(prefix, FS_KEY_CHUNK, in->ino), klen;
    /* Keys and lengths only: a chunk punched whole is deleted unread; the (at most two) edge
     * chunks are read with chunk_get. */
    kv_iter *it = kv_iter_new_keys(fs->db, NULL);
    int rc = 0;

    if (!it)
        return -ENOMEM;
    fs_cc_write_begin(fs->cc, fs_stripe_of(in->ino)); /* the caller's unlock ends it */
    /* Visit only chunks that exist: a punch over a sparse range costs nothing. */
    klen = fs_key_chunk(key, in->ino, off / cs);
    for (kv_iter_seek(it, key, klen); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl, len;
        const uint8_t *k = kv_iter_key(it, &kl);
        uint64_t kino, idx, cstart, a, e;
        uint8_t *data;
        if (kl < plen || memcmp(k, prefix, plen) != 0)
            break;
        rc = fs_key_parse_chunk(k, kl, &kino, &idx);
        if (rc)
            break;
        cstart = idx * cs;
        if (cstart >= end)
            break;
        vl = kv_iter_value_size(it);
        if (vl == 0 || vl > cs) {
            fs_log(FS_LOG_ERROR, "chunk %llu of inode %llu: length %zu outside 1..%llu",
                   (unsigned long long)idx, (unsigned long long)in->ino, vl,
                   (unsigned long long)cs);
            rc = -EIO;
            break;
        }
        a = off > cstart ? off - cstart : 0;
        e = end - cstart < cs ? end - cstart : cs;
        if (a >= vl)
            continue;
        if (a == 0 && e >= vl) {
            rc = fs_kv_errno(kv_batch_delete(b, k, kl));
            in->stored -= vl;
            if (rc)
                break;
            continue;
        }
        rc = chunk_get(fs, NULL, in->ino, idx, &data, &len);
        if (rc == 0 && len != vl) {
            fs_log(FS_LOG_ERROR, "chunk %llu of inode %llu: %zu bytes, its pointer says %zu",
                   (unsigned long long)idx, (unsigned long long)in->ino, len, vl);
            rc = -EIO;
        }
        if (rc == 0 && e >= vl) {
            rc = fs_kv_errno(kv_batch_put(b, k, kl, data, a));
            in->stored -= vl - a;
        } else if (rc == 0) {
            memset(data + a, 0, e - a); /* data is this call's copy */
            rc = fs_kv_errno(kv_batch_put(b, k, kl, data, vl));
        }
        kv_free(data);
        if (rc)
            break;
    }
    if (rc == 0)
        rc = fs_kv_errno(kv_iter_status(it));
    kv_iter_free(it);
    return rc;
}

static int check_space(struct fs *fs, uint64_t len)
{
    struct statvfs sv;
    if (!fs->cfg.store_path || statvfs(fs->cfg.store_path, &sv) != 0)
        return 0;
    if (len > (uint64_t)sv.f_bavail * sv.f_frsize)
        return -ENOSPC;
    return 0;
}

int fs_fallocate(struct fs *fs, uint64_t ino, int mode, uint64_t off, uint64_t len)
{
    struct fs_inode in;
    struct timespec now;
    kv_batch *b = NULL;
    int rc, punch = mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);

    FS_ROFS_CHECK(fs);
    if (mode != 0 && mode != FALLOC_FL_KEEP_SIZE && !punch)
        return -EOPNOTSUPP;
    if (len == 0)
        return -EINVAL;
    if (off > FS_FILE_MAX || len > FS_FILE_MAX - off)
        return -EFBIG;
    if (!punch) {
        rc = check_space(fs, len);
        if (rc)
            return rc;
    }
    b = kv_batch_new();
    if (!b)
        return -ENOMEM;
    fs_now(&now);
    fs_lock_ino(fs, ino);
    rc = fs_inode_load(fs, NULL, ino, &in, NULL, NULL);
    if (rc == 0)
        rc = check_regular(&in);
    if (rc)
        goto out;
    if (punch) {
        uint64_t end = off + len < in.size ? off + len : in.size;
        if (off < end)
            rc = punch_locked(fs, b, &in, off, end);
        in.mtime = in.ctime = now;
    } else {
        /* Space is not reserved (chunks are written lazily); the size grows as ext4's does, and
         * as on ext4 every successful allocation updates mtime and ctime (file_modified) */
        if (mode == 0 && off + len > in.size)
            in.size = off + len;
        in.mtime = in.ctime = now;
    }
    if (rc == 0)
        rc = fs_batch_put_inode(b, &in, NULL, 0);
    if (rc == 0)
        rc = punch ? fs_commit_freeing(fs, b) : fs_commit(fs, b);
out:
    fs_unlock_ino(fs, ino);
    kv_batch_free(b);
    return rc;
}

off_t fs_lseek(struct fs *fs, uint64_t ino, off_t off, int whence)
{
    const kv_snapshot *snap;
    struct fs_inode in;
    uint64_t cs = fs->chunk_size, pos = (uint64_t)off, expect;
    uint8_t prefix[FS_KEY_MAX], key[FS_KEY_MAX];
    size_t plen, klen;
    kv_iter *it;
    int rc;

    if (whence != SEEK_DATA && whence != SEEK_HOLE)
        return -EINVAL;
    if (off < 0)
        return -ENXIO;
    snap = kv_snapshot_new(fs->db);
    if (!snap)
        return -ENOMEM;
    rc = fs_inode_load(fs, snap, ino, &in, NULL, NULL);
    if (rc == 0 && (uint64_t)off >= in.size)
        rc = -ENXIO;
    it = rc == 0 ? kv_iter_new_keys(fs->db, snap) : NULL; /* lengths only */
    if (rc == 0 && !it)
        rc = -ENOMEM;
    if (rc) {
        kv_snapshot_free(fs->db, snap);
        return rc;
    }
    plen = fs_key_prefix(prefix, FS_KEY_CHUNK, ino);
    klen = fs_key_chunk(key, ino, pos / cs);
    expect = pos / cs;
    for (kv_iter_seek(it, key, klen); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = kv_iter_key(it, &kl);
        uint64_t kino, idx, cstart;
        if (kl < plen || memcmp(k, prefix, plen) != 0)
            break;
        if (fs_key_parse_chunk(k, kl, &kino, &idx) != 0) {
            rc = -EIO;
            break;
        }
        vl = kv_iter_value_size(it);
        cstart = idx * cs;
        if (whence == SEEK_DATA) {
            if (pos < cstart + vl) {
                pos = pos > cstart ? pos : cstart;
                goto found;
            }
        } else {
            if (idx != expect || pos < cstart || pos >= cstart + vl)
                goto found; /* pos is in a gap */
            pos = cstart + vl;
            if (vl < cs)
                goto found;
            expect = idx + 1;
        }
    }
    if (rc == 0)
        rc = fs_kv_errno(kv_iter_status(it));
    if (rc == 0 && whence == SEEK_DATA)
        rc = -ENXIO;
found:
    kv_iter_free(it);
    kv_snapshot_free(fs->db, snap);
    if (rc)
        return rc;
    if (pos > in.size)
        pos = in.size;
    return (off_t)pos;
}

ssize_t fs_copy_file_range(struct fs *fs, uint64_t ino_in, uint64_t off_in, uint64_t ino_out,
                           uint64_t off_out, size_t len)
{
    size_t done = 0;
    uint8_t *buf;

    FS_ROFS_CHECK(fs);
    if (ino_in == ino_out && off_in < off_out + len && off_out < off_in + len)
        return -EINVAL;
    buf = malloc(FS_COPY_PIECE);
    if (!buf)
        return -ENOMEM;
    while (done < len) {
        size_t want = len - done < FS_COPY_PIECE ? len - done : FS_COPY_PIECE;
        ssize_t n = fs_read(fs, ino_in, off_in + done, want, buf), w;
        if (n <= 0) {
            if (n < 0 && done == 0) {
                free(buf);
                return n;
            }
            break;
        }
        w = fs_write(fs, ino_out, off_out + done, buf, (size_t)n);
        if (w < 0) {
            free(buf);
            return done ? (ssize_t)done : w;
        }
        done += (size_t)w;
        if ((size_t)n < want)
            break;
    }
    free(buf);
    return (ssize_t)done;
}
