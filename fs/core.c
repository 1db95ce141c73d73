/* core.c - kvfs lifecycle (format, open, orphan recovery), locks, reference table, and the
 * small store helpers every other module uses. */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Errors ------------------------------------------------------------------------------- */

int fs_kv_errno(int kv_err)
{
    switch (kv_err) {
    case KV_OK:
        return 0;
    case KV_ENOTFOUND:
        return -ENOENT;
    case KV_ENOSPC:
        return -ENOSPC;
    case KV_ENOMEM:
        return -ENOMEM;
    case KV_EINVAL:
        return -EINVAL;
    case KV_EBUSY:
        return -EBUSY;
    case KV_EVERSION:
        return -EPROTO;
    case KV_EEXIST:
        return -EEXIST;
    case KV_ECORRUPT:
    case KV_EIO:
    case KV_ECLOSED:
    default:
        return -EIO;
    }
}

/* ---- Locks -------------------------------------------------------------------------------- */

static int stripe_of(uint64_t ino)
{
    uint64_t h = ino * 0x9e3779b97f4a7c15ull;
    return (int)(h >> 56) & (FS_NSTRIPES - 1);
}

int fs_stripe_of(uint64_t ino)
{
    return stripe_of(ino);
}

void fs_lock_ino(struct fs *fs, uint64_t ino)
{
    pthread_mutex_lock(&fs->stripes[stripe_of(ino)]);
}

void fs_unlock_ino(struct fs *fs, uint64_t ino)
{
    int s = stripe_of(ino);
    fs_cc_stripe_unlocked(fs->cc, s); /* ends a change to chunks begun under the lock */
    pthread_mutex_unlock(&fs->stripes[s]);
}

void fs_lock_inos(struct fs *fs, struct fs_lockset *ls, const uint64_t *inos, int n)
{
    ls->n = 0;
    for (int i = 0; i < n && i < FS_LOCKSET_MAX; i++) {
        int s, j;
        if (inos[i] == 0)
            continue;
        s = stripe_of(inos[i]);
        for (j = 0; j < ls->n && ls->idx[j] != s; j++)
            ;
        if (j < ls->n)
            continue;
        /* insertion sort: the set is tiny */
        for (j = ls->n; j > 0 && ls->idx[j - 1] > s; j--)
            ls->idx[j] = ls->idx[j - 1];
        ls->idx[j] = s;
        ls->n++;
    }
    for (int i = 0; i < ls->n; i++)
        pthread_mutex_lock(&fs->stripes[ls->idx[i]]);
}

void fs_unlock_set(struct fs *fs, struct fs_lockset *ls)
{
    for (int i = ls->n - 1; i >= 0; i--) {
        fs_cc_stripe_unlocked(fs->cc, ls->idx[i]);
        pthread_mutex_unlock(&fs->stripes[ls->idx[i]]);
    }
    ls->n = 0;
}

int fs_lockset_try_add(struct fs *fs, struct fs_lockset *ls, const uint64_t *inos, int n)
{
    struct fs_lockset add = {0};

    for (int i = 0; i < n; i++) {
        int s = inos[i] ? stripe_of(inos[i]) : -1, j;
        if (s < 0 || fs_lockset_covers(ls, inos[i]))
            continue;
        for (j = 0; j < add.n && add.idx[j] != s; j++)
            ;
        if (j < add.n)
            continue;
        if (ls->n + add.n >= FS_LOCKSET_MAX || pthread_mutex_trylock(&fs->stripes[s]) != 0) {
            while (add.n > 0)
                pthread_mutex_unlock(&fs->stripes[add.idx[--add.n]]);
            return -EAGAIN;
        }
        add.idx[add.n++] = s;
    }
    for (int i = 0; i < add.n; i++) { /* ls stays ascending, as fs_lock_inos leaves it */
        int j;
        for (j = ls->n; j > 0 && ls->idx[j - 1] > add.idx[i]; j--)
            ls->idx[j] = ls->idx[j - 1];
        ls->idx[j] = add.idx[i];
        ls->n++;
    }
    return 0;
}

int fs_lockset_covers(const struct fs_lockset *ls, uint64_t ino)
{
    int s = stripe_of(ino);
    for (int i = 0; i < ls->n; i++)
        if (ls->idx[i] == s)
            return 1;
    return 0;
}

/* ---- Reference table ---------------------------------------------------------------------- */

/* The reference table holds an entry per inode the kernel knows (looked up or open): as many
 * as there are files in a big tree after a find or a tar -x, so its chain count doubles
 * whenever the entries reach twice the chains (a fixed 4,096 chains meant chains of 25 at
 * 100,000 inodes, walked under the one itab_mu by every lookup, forget and open). */
static size_t itab_index(uint64_t ino, unsigned bits)
{
    return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> (64 - bits));
}

static struct fs_iref **itab_slot(struct fs *fs, uint64_t ino)
{
    struct fs_iref **pp = &fs->itab[itab_index(ino, fs->itab_bits)];
    while (*pp && (*pp)->ino != ino)
        pp = &(*pp)->next;
    return pp;
}

/* Doubles the chains once the table is loaded past 2 entries per chain. Caller holds itab_mu.
 * Out of memory it keeps the table as it is: longer chains, still correct. */
static void itab_maybe_grow(struct fs *fs)
{
    size_t n = (size_t)1 << fs->itab_bits;
    unsigned bits = fs->itab_bits + 1;
    struct fs_iref **t;

    if (fs->itab_count <= 2 * n || bits >= 8 * sizeof(size_t) - 4)
        return;
    t = calloc((size_t)1 << bits, sizeof *t);
    if (!t)
        return;
    for (size_t i = 0; i < n; i++) {
        while (fs->itab[i]) {
            struct fs_iref *r = fs->itab[i];
            size_t j = itab_index(r->ino, bits);
            fs->itab[i] = r->next;
            r->next = t[j];
            t[j] = r;
        }
    }
    free(fs->itab);
    fs->itab = t;
    fs->itab_bits = bits;
}

int fs_itab_add(struct fs *fs, uint64_t ino, uint64_t nlookup, uint64_t nopen)
{
    struct fs_iref **pp;
    int rc = 0;

    pthread_mutex_lock(&fs->itab_mu);
    pp = itab_slot(fs, ino);
    if (!*pp) {
        *pp = calloc(1, sizeof **pp);
        if (!*pp) {
            rc = -ENOMEM;
            goto out;
        }
        (*pp)->ino = ino;
        fs->itab_count++;
        itab_maybe_grow(fs);
        pp = itab_slot(fs, ino);
    }
    (*pp)->nlookup += nlookup;
    (*pp)->nopen += nopen;
out:
    pthread_mutex_unlock(&fs->itab_mu);
    return rc;
}

int fs_itab_drop(struct fs *fs, uint64_t ino, uint64_t nlookup, uint64_t nopen)
{
    struct fs_iref **pp, *r;
    int gone = 0;

    pthread_mutex_lock(&fs->itab_mu);
    pp = itab_slot(fs, ino);
    r = *pp;
    if (!r) {
        /* cannot happen with a correct kernel; an unknown inode is unreferenced, and its
         * link count unknown */
        gone = FS_ITAB_GONE_UNLINKED;
        goto out;
    }
    if (nlookup > r->nlookup || nopen > r->nopen)
        fs_log(FS_LOG_WARN, "inode %llu: dropping more references than held",
               (unsigned long long)ino);
    r->nlookup -= nlookup < r->nlookup ? nlookup : r->nlookup;
    r->nopen -= nopen < r->nopen ? nopen : r->nopen;
    if (r->nlookup == 0 && r->nopen == 0) {
        gone = r->unlinked ? FS_ITAB_GONE_UNLINKED : FS_ITAB_GONE;
        *pp = r->next;
        free(r);
        fs->itab_count--;
    }
out:
    pthread_mutex_unlock(&fs->itab_mu);
    return gone;
}

int fs_itab_referenced(struct fs *fs, uint64_t ino)
{
    int ref;
    pthread_mutex_lock(&fs->itab_mu);
    ref = *itab_slot(fs, ino) != NULL;
    pthread_mutex_unlock(&fs->itab_mu);
    return ref;
}

int fs_itab_mark_unlinked(struct fs *fs, uint64_t ino)
{
    struct fs_iref *r;
    pthread_mutex_lock(&fs->itab_mu);
    r = *itab_slot(fs, ino);
    if (r)
        r->unlinked = 1;
    pthread_mutex_unlock(&fs->itab_mu);
    return r != NULL;
}

/* ---- Store helpers ------------------------------------------------------------------------ */

/* File times from the kernel's clock for them (current_time(): the coarse clock, one tick's
 * resolution, as local filesystems use). With the writeback cache the kernel sets mtime/ctime
 * itself on a write, and marks them for an extra SETATTR, whenever they differ from its
 * clock: a file created with a finer time always did. Since kernel 6.13 current_time() may
 * return a finer "floor" instead (after a multigrain filesystem took one), which no user
 * clock shows, so this helps only part of the time: tar -x of 200 files 802 -> 691..761
 * SETATTR, cp -a 603 -> 478..535 (machine under load). Times we set are then never ahead of
 * the kernel's own, so a write just after a create never moves mtime back. */
void fs_now(struct timespec *ts)
{
    if (clock_gettime(CLOCK_REALTIME_COARSE, ts) != 0)
        clock_gettime(CLOCK_REALTIME, ts);
}

int fs_commit(struct fs *fs, kv_batch *b)
{
    return fs_kv_errno(kv_write(fs->db, b, fs->cfg.write_flags));
}

int fs_commit_freeing(struct fs *fs, kv_batch *b)
{
    return fs_kv_errno(kv_write(fs->db, b, fs->cfg.write_flags | KV_WRITE_RESERVE));
}

int fs_inode_load(struct fs *fs, const kv_snapshot *snap, uint64_t ino, struct fs_inode *in,
                  char **tail, size_t *tail_len)
{
    uint8_t key[FS_KEY_MAX];
    size_t klen = fs_key_inode(key, ino), vlen, tl;
    const uint8_t *t;
    void *val;
    int rc;

    if (tail)
        *tail = NULL;
    rc = kv_get(fs->db, snap, key, klen, &val, &vlen);
    if (rc)
        return fs_kv_errno(rc);
    rc = fs_inode_decode(ino, val, vlen, in, &t, &tl);
    if (rc == 0 && tail) {
        *tail = malloc(tl + 1);
        if (!*tail) {
            rc = -ENOMEM;
        } else {
            memcpy(*tail, t, tl);
            (*tail)[tl] = '\0';
            if (tail_len)
                *tail_len = tl;
        }
    }
    kv_free(val);
    return rc;
}

int fs_batch_put_inode(kv_batch *b, const struct fs_inode *in, const void *tail, size_t tlen)
{
    uint8_t key[FS_KEY_MAX];
    size_t klen = fs_key_inode(key, in->ino), vlen;
    uint8_t *val = fs_inode_encode(in, tail, tlen, &vlen);
    int rc;

    if (!val)
        return -ENOMEM;
    rc = fs_kv_errno(kv_batch_put(b, key, klen, val, vlen));
    free(val);
    return rc;
}

int fs_dirent_load(struct fs *fs, const kv_snapshot *snap, uint64_t parent, const char *name,
                   size_t nlen, uint64_t *child, uint8_t *dtype)
{
    uint8_t key[FS_KEY_MAX];
    size_t klen = fs_key_dirent(key, parent, name, nlen), vlen;
    void *val;
    int rc = kv_get(fs->db, snap, key, klen, &val, &vlen);

    if (rc)
        return fs_kv_errno(rc);
    rc = fs_dirent_decode(val, vlen, child, dtype);
    if (rc)
        fs_log(FS_LOG_ERROR, "dirent %llu/%.*s: value failed validation",
               (unsigned long long)parent, (int)nlen, name);
    kv_free(val);
    return rc;
}

int fs_alloc_ino(struct fs *fs, uint64_t *ino)
{
    int rc = 0;

    pthread_mutex_lock(&fs->alloc_mu);
    if (fs->next_ino >= fs->sb.ino_limit) {
        /* Reserve a range before using it: the superblock put precedes, in the WAL, every
         * batch that uses a number from the range, so a crash never reuses a number. */
        struct fs_super nsb = fs->sb;
        uint8_t key[4], val[FS_SUPER_LEN];
        size_t klen = fs_key_super(key);
        nsb.ino_limit = fs->next_ino + FS_INO_RANGE;
        fs_super_encode(&nsb, val);
        rc = fs_kv_errno(kv_put(fs->db, key, klen, val, sizeof val, fs->cfg.write_flags));
        if (rc == 0)
            fs->sb = nsb;
    }
    if (rc == 0)
        *ino = fs->next_ino++;
    pthread_mutex_unlock(&fs->alloc_mu);
    return rc;
}

void fs_inode_to_stat(const struct fs *fs, const struct fs_inode *in, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = in->ino;
    st->st_mode = in->mode;
    st->st_nlink = in->nlink;
    st->st_uid = in->uid;
    st->st_gid = in->gid;
    st->st_rdev = in->rdev;
    st->st_size = (off_t)in->size;
    st->st_blksize = fs->chunk_size;
    st->st_blocks = (blkcnt_t)((in->stored + 511) / 512);
    st->st_atim = in->atime;
    st->st_mtim = in->mtime;
    st->st_ctim = in->ctime;
}

int fs_check_name(const char *name, size_t *nlen)
{
    size_t n = strnlen(name, FS_NAME_MAX + 1);

    if (n > FS_NAME_MAX)
        return -ENAMETOOLONG;
    if (n == 0 || memchr(name, '/', n))
        return -EINVAL;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -EEXIST;
    *nlen = n;
    return 0;
}

int fs_ctx_in_group(const struct fs_ctx *ctx, uint32_t gid)
{
    if (ctx->uid == 0 || ctx->gid == gid)
        return 1;
    for (int i = 0; i < ctx->ngroups; i++)
        if (ctx->groups && (uint32_t)ctx->groups[i] == gid)
            return 1;
    return 0;
}

int fs_delete_prefix(struct fs *fs, char type, uint64_t ino)
{
    uint8_t prefix[FS_KEY_MAX];
    size_t plen = fs_key_prefix(prefix, type, ino);
    kv_iter *it = kv_iter_new_keys(fs->db, NULL); /* keys only: no chunk is read to delete it */
    kv_batch *b = kv_batch_new();
    int rc = 0;

    if (!it || !b) {
        rc = -ENOMEM;
        goto out;
    }
    for (kv_iter_seek(it, prefix, plen); kv_iter_valid(it); kv_iter_next(it)) {
        size_t klen;
        const uint8_t *k = kv_iter_key(it, &klen);
        if (klen < plen || memcmp(k, prefix, plen) != 0)
            break;
        rc = fs_kv_errno(kv_batch_delete(b, k, klen));
        if (rc == 0 && kv_batch_count(b) >= 1024)
            rc = fs_commit_freeing(fs, b), kv_batch_clear(b);
        if (rc)
            goto out;
    }
    rc = fs_kv_errno(kv_iter_status(it));
    if (rc == 0 && kv_batch_count(b) > 0)
        rc = fs_commit_freeing(fs, b);
out:
    kv_batch_free(b);
    kv_iter_free(it);
    return rc;
}

/* Files of at most this many chunk slots have their chunks deleted by key, in the batch that
 * deletes the inode, instead of by a prefix scan: an iterator over every table costs more than
 * the whole rest of an unlink. Invariant 4 bounds the indexes by the size. */
#define FS_RECLAIM_POINT_CHUNKS 64

/* Deletes the inode record and orphan key of ino, and with them (when in is known, has stored
 * bytes and few chunk slots) each of its chunks by key, in one batch. */
static int reclaim_commit(struct fs *fs, uint64_t ino, const struct fs_inode *in, int chunks)
{
    uint8_t key[FS_KEY_MAX];
    kv_batch *b = kv_batch_new();
    size_t klen;
    int rc = 0;

    if (!b)
        return -ENOMEM;
    if (chunks) {
        uint64_t n = (in->size + fs->chunk_size - 1) / fs->chunk_size;
        for (uint64_t i = 0; i < n && rc == 0; i++) {
            klen = fs_key_chunk(key, ino, i);
            rc = fs_kv_errno(kv_batch_delete(b, key, klen));
        }
    }
    klen = fs_key_inode(key, ino);
    if (rc == 0)
        rc = fs_kv_errno(kv_batch_delete(b, key, klen));
    klen = fs_key_orphan(key, ino);
    if (rc == 0)
        rc = fs_kv_errno(kv_batch_delete(b, key, klen));
    if (rc == 0)
        rc = fs_commit_freeing(fs, b);
    kv_batch_free(b);
    return rc;
}

/* fs_reclaim() with the inode already loaded (in) or known to be absent (in == NULL). */
static int reclaim_loaded(struct fs *fs, uint64_t ino, const struct fs_inode *in)
{
    int rc = 0, point = 0;

    /* With the inode at hand, skip scans that cannot find anything: no chunk when nothing is
     * stored (invariant 4), no xattr without the flag. Without it (a reclaim interrupted by a
     * crash), scan both. */
    if (in && in->stored > 0 && in->size > 0)
        point = in->size / fs->chunk_size < FS_RECLAIM_POINT_CHUNKS;
    if ((!in || in->stored > 0) && !point)
        rc = fs_delete_prefix(fs, FS_KEY_CHUNK, ino);
    if (rc == 0 && (!in || (in->flags & FS_INODE_F_XATTR)))
        rc = fs_delete_prefix(fs, FS_KEY_XATTR, ino);
    if (rc == 0)
        rc = reclaim_commit(fs, ino, in, point);
    fs_cc_invalidate(fs->cc, stripe_of(ino)); /* chunks deleted: none may be served again */
    if (rc == 0)
        return 0;
    /* The orphan key stays: the next mount finishes the job. */
    fs_log(FS_LOG_WARN, "inode %llu: reclaim failed (%s); left for the next mount",
           (unsigned long long)ino, strerror(-rc));
    return rc;
}

int fs_reclaim(struct fs *fs, uint64_t ino)
{
    struct fs_inode in;
    int rc = fs_inode_load(fs, NULL, ino, &in, NULL, NULL);

    if (rc && rc != -ENOENT) {
        fs_log(FS_LOG_WARN, "inode %llu: reclaim failed (%s); left for the next mount",
               (unsigned long long)ino, strerror(-rc));
        return rc;
    }
    return reclaim_loaded(fs, ino, rc == 0 ? &in : NULL);
}

int fs_maybe_reclaim(struct fs *fs, uint64_t ino)
{
    struct fs_inode in;
    int rc;

    /* Referenced: the last drop reclaims it (forget looks only at inodes marked here). A
     * mark on an inode that still has links costs that drop one load, nothing more. */
    if (fs->cfg.read_only || fs_itab_mark_unlinked(fs, ino))
        return 0;
    rc = fs_inode_load(fs, NULL, ino, &in, NULL, NULL);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return rc;
    if (in.nlink != 0)
        return 0;
    return reclaim_loaded(fs, ino, &in);
}

/* ---- Open, format, recover ---------------------------------------------------------------- */

static int store_is_empty(kv_db *db, int *empty)
{
    kv_iter *it = kv_iter_new(db, NULL);
    int rc;

    if (!it)
        return -ENOMEM;
    kv_iter_seek_first(it);
    *empty = !kv_iter_valid(it);
    rc = fs_kv_errno(kv_iter_status(it));
    kv_iter_free(it);
    return rc;
}

static void make_uuid(uint8_t uuid[16])
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    struct timespec ts;
    ssize_t n = fd >= 0 ? read(fd, uuid, 16) : -1;

    if (fd >= 0)
        close(fd);
    if (n != 16) {
        fs_now(&ts);
        fs_put_be64(uuid, (uint64_t)ts.tv_sec);
        fs_put_be64(uuid + 8, (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32));
    }
    uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40); /* version 4 */
    uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
}

static int format(struct fs *fs, uint32_t uid, uint32_t gid)
{
    struct fs_inode root;
    uint8_t key[4], val[FS_SUPER_LEN];
    size_t klen = fs_key_super(key);
    kv_batch *b = kv_batch_new();
    int rc;

    if (!b)
        return -ENOMEM;
    memset(&fs->sb, 0, sizeof fs->sb);
    fs->sb.version = FS_FORMAT_VERSION;
    fs->sb.chunk_size = fs->cfg.chunk_size ? fs->cfg.chunk_size : FS_DEFAULT_CHUNK_SIZE;
    fs->sb.ino_limit = FS_FIRST_INO;
    make_uuid(fs->sb.uuid);
    memset(&root, 0, sizeof root);
    root.ino = FS_ROOT_INO;
    root.mode = S_IFDIR | 0755;
    root.uid = uid;
    root.gid = gid;
    root.nlink = 2;
    root.generation = 1;
    root.parent = FS_ROOT_INO;
    fs_now(&root.mtime);
    root.atime = root.ctime = root.mtime;
    fs->sb.created_ns = (uint64_t)root.mtime.tv_sec * 1000000000ull + (uint64_t)root.mtime.tv_nsec;
    fs_super_encode(&fs->sb, val);
    rc = fs_kv_errno(kv_batch_put(b, key, klen, val, sizeof val));
    if (rc == 0)
        rc = fs_batch_put_inode(b, &root, NULL, 0);
    if (rc == 0)
        rc = fs_kv_errno(kv_write(fs->db, b, KV_WRITE_SYNC));
    kv_batch_free(b);
    return rc;
}

static void fs_free(struct fs *fs, int reclaim);

/* Reclaims every inode an earlier run left with nlink 0 (crash while files were open). */
static int recover_orphans(struct fs *fs)
{
    uint8_t prefix[1] = {FS_KEY_ORPHAN};
    uint64_t *inos = NULL;
    size_t n = 0, cap = 0;
    kv_iter *it = kv_iter_new(fs->db, NULL);
    int rc = 0;

    if (!it)
        return -ENOMEM;
    for (kv_iter_seek(it, prefix, 1); kv_iter_valid(it); kv_iter_next(it)) {
        size_t klen;
        const uint8_t *k = kv_iter_key(it, &klen);
        uint64_t ino;
        if (klen < 1 || k[0] != FS_KEY_ORPHAN)
            break;
        if (fs_key_parse_ino(k, klen, FS_KEY_ORPHAN, &ino) != 0)
            continue; /* logged; fsck reports it */
        if (n == cap) {
            uint64_t *ni = realloc(inos, (cap ? cap * 2 : 64) * sizeof *inos);
            if (!ni) {
                rc = -ENOMEM;
                break;
            }
            inos = ni;
            cap = cap ? cap * 2 : 64;
        }
        inos[n++] = ino;
    }
    if (rc == 0)
        rc = fs_kv_errno(kv_iter_status(it));
    kv_iter_free(it);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct fs_inode in;
        int lr = fs_inode_load(fs, NULL, inos[i], &in, NULL, NULL);
        if (lr == 0 && in.nlink > 0) {
            uint8_t key[FS_KEY_MAX];
            size_t klen = fs_key_orphan(key, inos[i]);
            rc = fs_kv_errno(kv_delete(fs->db, key, klen, fs->cfg.write_flags | KV_WRITE_RESERVE));
        } else if (lr == 0 || lr == -ENOENT) {
            rc = fs_reclaim(fs, inos[i]);
        } else {
            rc = lr;
        }
    }
    if (n)
        fs_log(FS_LOG_INFO, "reclaimed %zu orphaned inodes", n);
    free(inos);
    return rc;
}

int fs_open(kv_db *db, const struct fs_config *cfg, uint32_t root_uid, uint32_t root_gid,
            struct fs **out)
{
    struct fs *fs = calloc(1, sizeof *fs);
    uint8_t key[4];
    size_t klen = fs_key_super(key), vlen;
    void *val = NULL;
    int rc;

    *out = NULL;
    if (!fs)
        return -ENOMEM;
    fs->db = db;
    fs->cfg = *cfg;
    fs->itab_bits = 0;
    while (((size_t)1 << fs->itab_bits) < FS_ITAB_BUCKETS)
        fs->itab_bits++;
    fs->itab = calloc((size_t)1 << fs->itab_bits, sizeof *fs->itab);
    if (!fs->itab) {
        free(fs);
        return -ENOMEM;
    }
    pthread_mutex_init(&fs->rename_mu, NULL);
    pthread_mutex_init(&fs->itab_mu, NULL);
    pthread_mutex_init(&fs->alloc_mu, NULL);
    pthread_mutex_init(&fs->dirs_mu, NULL);
    for (int i = 0; i < FS_NSTRIPES; i++)
        pthread_mutex_init(&fs->stripes[i], NULL);

    rc = kv_get(db, NULL, key, klen, &val, &vlen);
    if (rc == KV_ENOTFOUND) {
        int empty = 0;
        rc = store_is_empty(db, &empty);
        if (rc == 0 && !empty) {
            fs_log(FS_LOG_ERROR, "the store holds keys but no kvfs superblock");
            rc = -EINVAL;
        } else if (rc == 0 && cfg->read_only) {
            rc = -EROFS;
        } else if (rc == 0) {
            rc = format(fs, root_uid, root_gid);
        }
    } else if (rc == 0) {
        rc = fs_super_decode(val, vlen, &fs->sb);
        kv_free(val);
    } else {
        rc = fs_kv_errno(rc);
    }
    if (rc == 0) {
        struct fs_inode root;
        fs->chunk_size = fs->sb.chunk_size;
        fs->next_ino = fs->sb.ino_limit;
        size_t cc_bytes = cfg->chunk_cache_bytes;
        if (cc_bytes == 0)
            cc_bytes = FS_CC_DEFAULT_BYTES;
        else if (cc_bytes == FS_CONFIG_NO_CHUNK_CACHE)
            cc_bytes = 0; /* a cache that holds nothing */
        fs->cc = fs_cc_new(cc_bytes, fs->chunk_size, FS_NSTRIPES);
        if (!fs->cc)
            fs_log(FS_LOG_WARN, "no memory for the chunk cache: reads go to the store");
        if (cfg->dir_cache_bytes != FS_CONFIG_NO_DIR_CACHE)
            fs->dc = fs_dc_new(cfg->dir_cache_bytes ? cfg->dir_cache_bytes : FS_DC_DEFAULT_BYTES,
                               FS_NSTRIPES); /* NULL (no memory): listings read the store */
        rc = fs_inode_load(fs, NULL, FS_ROOT_INO, &root, NULL, NULL);
        if (rc == 0 && !S_ISDIR(root.mode)) {
            fs_log(FS_LOG_ERROR, "inode 1: the root is not a directory");
            rc = -EIO;
        } else if (rc == -ENOENT) {
            fs_log(FS_LOG_ERROR, "inode 1: the root directory is missing");
            rc = -EIO;
        }
    }
    if (rc == 0 && !cfg->read_only)
        rc = recover_orphans(fs);
    if (rc) {
        fs_free(fs, 0);
        return rc;
    }
    fs->opened = 1;
    *out = fs;
    return 0;
}

static void fs_free(struct fs *fs, int reclaim)
{
    if (!fs)
        return;
    /* Directories the kernel never released (the daemon stops on a signal) hold a snapshot and
     * an iterator, which must go before the caller's kv_close. */
    fs_closedir_all(fs);
    /* Nothing references any inode any more: finish unlinked-but-open files now rather than at
     * the next mount. A failure leaves the orphan keys, which the next mount processes. */
    if (reclaim && fs->opened && !fs->cfg.read_only)
        recover_orphans(fs);
    for (size_t i = 0; i < ((size_t)1 << fs->itab_bits); i++) {
        while (fs->itab[i]) {
            struct fs_iref *r = fs->itab[i];
            fs->itab[i] = r->next;
            free(r);
        }
    }
    free(fs->itab);
    fs_cc_free(fs->cc);
    fs_dc_free(fs->dc);
    for (int i = 0; i < FS_NSTRIPES; i++)
        pthread_mutex_destroy(&fs->stripes[i]);
    pthread_mutex_destroy(&fs->rename_mu);
    pthread_mutex_destroy(&fs->itab_mu);
    pthread_mutex_destroy(&fs->alloc_mu);
    pthread_mutex_destroy(&fs->dirs_mu);
    free(fs);
}

void fs_close(struct fs *fs)
{
    fs_free(fs, 1);
}

void fs_abandon(struct fs *fs)
{
    fs_free(fs, 0);
}

void fs_set_kernel_times(struct fs *fs, int on)
{
    fs->kernel_times = on;
}

kv_db *fs_get_db(struct fs *fs)
{
    return fs->db;
}

uint32_t fs_chunk_size(const struct fs *fs)
{
    return fs->chunk_size;
}
