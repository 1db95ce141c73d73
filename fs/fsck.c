/* fsck.c - offline consistency check and repair of a kvfs store (the invariants of fs_int.h).
 *
 * Four scans of the key space (inodes, chunks, dirents + xattrs + orphans, then the verdict
 * per inode) with one in-memory record per inode. Every problem is logged with the key it
 * concerns; with repair, each fix is its own small batch, so an interrupted repair leaves a
 * store that a second run finishes.
 *
 * After a kvcore salvage (fs_fsck_ex), between the inode scan and the others, every chunk
 * whose newest version may have been lost is replaced by a lost-chunk marker (SCHEMA.md): a
 * value one byte longer than a chunk, which the read and write paths already refuse with EIO.
 * A lost chunk is thus never served as zeros (a hole) or as an older version; the rest of the
 * file reads normally, and removing or truncating the file clears the damage. Lost directory
 * entries are handled as e2fsck does: the inodes they named are linked into /lost+found.
 */
#include "fs_int.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ck_inode {
    uint64_t ino; /* 0: empty slot */
    uint32_t mode, nlink;
    uint64_t size, parent, stored;
    uint64_t links;   /* dirents naming it */
    uint64_t subdirs; /* for directories: dirents of directories inside */
    uint64_t seen_stored;
    uint64_t dirent_parent; /* a directory's (first) containing directory */
    int orphan_key;
    int bad;       /* record failed validation: reported, left alone */
    uint64_t lost; /* lost-chunk markers seen */
    int adopted;   /* its record was lost: rebuilt from its chunks (see adopt_chunk) */
    uint32_t flags;
    char *name;           /* for the report of damaged files (name_damaged): one of its names */
    uint64_t name_parent; /* the directory that holds that name */
};

struct ck {
    kv_db *db;
    int repair;
    struct fsck_result *res;
    struct ck_inode *tab;
    size_t cap, n;
    struct fs_super sb;
    uint64_t keys;
    void (*progress)(void *, uint64_t);
    void *pctx;
    const kv_lost *lost; /* what a kvcore salvage lost (NULL: nothing) */
};

static void tick(struct ck *c)
{
    if (++c->keys % 4096 == 0 && c->progress)
        c->progress(c->pctx, c->keys);
}

static uint64_t hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static struct ck_inode *ck_find(struct ck *c, uint64_t ino)
{
    size_t i = hash64(ino) & (c->cap - 1);
    while (c->tab[i].ino && c->tab[i].ino != ino)
        i = (i + 1) & (c->cap - 1);
    return c->tab[i].ino ? &c->tab[i] : NULL;
}

static struct ck_inode *ck_add(struct ck *c, uint64_t ino)
{
    size_t i;
    if ((c->n + 1) * 2 > c->cap) {
        size_t ocap = c->cap, ncap = ocap ? ocap * 2 : 1024;
        struct ck_inode *old = c->tab, *nt = calloc(ncap, sizeof *nt);
        if (!nt)
            return NULL;
        c->tab = nt;
        c->cap = ncap;
        for (size_t j = 0; j < ocap; j++) {
            if (!old[j].ino)
                continue;
            i = hash64(old[j].ino) & (ncap - 1);
            while (nt[i].ino)
                i = (i + 1) & (ncap - 1);
            nt[i] = old[j];
        }
        free(old);
    }
    i = hash64(ino) & (c->cap - 1);
    while (c->tab[i].ino && c->tab[i].ino != ino)
        i = (i + 1) & (c->cap - 1);
    if (!c->tab[i].ino) {
        c->tab[i].ino = ino;
        c->n++;
    }
    return &c->tab[i];
}

/* Records a problem; returns 1 if the caller should repair it. */
static int problem(struct ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int problem(struct ck *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->res->problems++;
    fprintf(stderr, "kvfs fsck: %s%s\n", msg, c->repair ? " (repairing)" : "");
    return c->repair;
}

static void fixed(struct ck *c, int rc)
{
    if (rc == 0)
        c->res->repaired++;
    else
        fprintf(stderr, "kvfs fsck: repair failed: %s\n", kv_strerror(rc));
}

static void fix_delete(struct ck *c, const void *key, size_t klen)
{
    fixed(c, kv_delete(c->db, key, klen, 0));
}

/* A lost-chunk marker: chunk_size + 1 bytes (one more than any chunk may hold, so every path
 * that reads the chunk fails with EIO), starting with this text, the rest zero. */
static const char lost_magic[] = "kvfs: chunk lost in a kvcore salvage (kvfs fsck)\n";

static int is_lost_marker(const struct ck *c, const uint8_t *v, size_t vl)
{
    return vl == (size_t)c->sb.chunk_size + 1 && memcmp(v, lost_magic, sizeof lost_magic - 1) == 0;
}

/* Byte order of two keys, as the store sorts them. */
static int keycmp(const void *a, size_t al, const void *b, size_t bl)
{
    int r = memcmp(a, b, al < bl ? al : bl);
    return r ? r : (al > bl) - (al < bl);
}

/* Rewrites inode ino through fn, keeping its tail. */
static void fix_inode(struct ck *c, uint64_t ino, void (*fn)(struct fs_inode *, void *), void *arg)
{
    uint8_t key[FS_KEY_MAX], *nv;
    size_t klen = fs_key_inode(key, ino), vlen, tl, nl;
    const uint8_t *tail;
    struct fs_inode in;
    void *val;
    int rc = kv_get(c->db, NULL, key, klen, &val, &vlen);

    if (rc == 0) {
        if (fs_inode_decode(ino, val, vlen, &in, &tail, &tl) != 0) {
            rc = KV_ECORRUPT;
        } else {
            fn(&in, arg);
            nv = fs_inode_encode(&in, tail, tl, &nl);
            rc = nv ? kv_put(c->db, key, klen, nv, nl, 0) : KV_ENOMEM;
            free(nv);
        }
        kv_free(val);
    }
    fixed(c, rc);
}

static void set_nlink(struct fs_inode *in, void *arg)
{
    in->nlink = *(uint32_t *)arg;
}

static void set_stored(struct fs_inode *in, void *arg)
{
    in->stored = *(uint64_t *)arg;
}

static void set_flags(struct fs_inode *in, void *arg)
{
    in->flags = *(uint32_t *)arg;
}

static void set_parent(struct fs_inode *in, void *arg)
{
    in->parent = *(uint64_t *)arg;
}

typedef int (*scan_fn)(struct ck *c, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl);

static int scan(struct ck *c, char type, scan_fn fn)
{
    uint8_t prefix[1] = {(uint8_t)type};
    kv_iter *it = kv_iter_new(c->db, NULL);
    int rc = 0;

    if (!it)
        return -ENOMEM;
    for (kv_iter_seek(it, prefix, 1); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = kv_iter_key(it, &kl), *v;
        if (kl == 0 || k[0] != (uint8_t)type)
            break;
        v = kv_iter_value(it, &vl);
        tick(c);
        rc = fn(c, k, kl, v, vl);
        if (rc)
            break;
    }
    if (rc == 0)
        rc = fs_kv_errno(kv_iter_status(it));
    kv_iter_free(it);
    return rc;
}

static int scan_inode(struct ck *c, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    struct fs_inode in;
    struct ck_inode *r;
    uint64_t ino;

    if (fs_key_parse_ino(k, kl, FS_KEY_INODE, &ino) != 0 || ino == 0) {
        if (problem(c, "malformed inode key of %zu bytes", kl))
            fix_delete(c, k, kl);
        return 0;
    }
    c->res->inodes++;
    r = ck_add(c, ino);
    if (!r)
        return -ENOMEM;
    if (fs_inode_decode(ino, v, vl, &in, NULL, NULL) != 0) {
        /* Keep it known, so that names and data of a damaged inode are not thrown away. */
        c->res->problems++;
        fprintf(stderr, "kvfs fsck: inode %llu: record fails validation (not repairable)\n",
                (unsigned long long)ino);
        r->bad = 1;
        return 0;
    }
    r->mode = in.mode;
    r->flags = in.flags;
    r->nlink = in.nlink;
    r->size = in.size;
    r->parent = in.parent;
    r->stored = in.stored;
    if (ino >= c->sb.ino_limit &&
        problem(c, "inode %llu: at or above the allocator limit %llu", (unsigned long long)ino,
                (unsigned long long)c->sb.ino_limit)) {
        uint8_t key[4], val[FS_SUPER_LEN];
        size_t klen = fs_key_super(key);
        c->sb.ino_limit = ino + 1;
        fs_super_encode(&c->sb, val);
        fixed(c, kv_put(c->db, key, klen, val, sizeof val, 0));
    }
    return 0;
}

static int scan_dirent(struct ck *c, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    struct ck_inode *p, *ch;
    uint64_t parent, child;
    const char *name;
    size_t nlen;
    uint8_t dtype;

    if (fs_key_parse_named(k, kl, FS_KEY_DIRENT, &parent, &name, &nlen) != 0 ||
        memchr(name, '/', nlen) || memchr(name, '\0', nlen) || (nlen == 1 && name[0] == '.') ||
        (nlen == 2 && name[0] == '.' && name[1] == '.')) {
        if (problem(c, "malformed dirent key of %zu bytes", kl))
            fix_delete(c, k, kl);
        return 0;
    }
    c->res->dirents++;
    if (fs_dirent_decode(v, vl, &child, &dtype) != 0) {
        if (problem(c, "dirent %llu/%.*s: bad value", (unsigned long long)parent, (int)nlen, name))
            fix_delete(c, k, kl);
        return 0;
    }
    p = ck_find(c, parent);
    if (p && p->bad)
        return 0;
    if (!p || !S_ISDIR(p->mode)) {
        if (problem(c, "dirent %llu/%.*s: parent is not a live directory",
                    (unsigned long long)parent, (int)nlen, name))
            fix_delete(c, k, kl);
        return 0;
    }
    ch = ck_find(c, child);
    if (!ch) {
        if (problem(c, "dirent %llu/%.*s: names missing inode %llu", (unsigned long long)parent,
                    (int)nlen, name, (unsigned long long)child))
            fix_delete(c, k, kl);
        return 0;
    }
    if (ch->bad) {
        ch->links++;
        return 0;
    }
    if (child == FS_ROOT_INO || (S_ISDIR(ch->mode) && ch->links > 0)) {
        if (problem(c, "dirent %llu/%.*s: a second name for directory %llu",
                    (unsigned long long)parent, (int)nlen, name, (unsigned long long)child))
            fix_delete(c, k, kl);
        return 0;
    }
    if (fs_mode_to_dtype(ch->mode) != dtype &&
        problem(c, "dirent %llu/%.*s: type %u but inode %llu has mode 0%o",
                (unsigned long long)parent, (int)nlen, name, dtype, (unsigned long long)child,
                ch->mode)) {
        uint8_t val[FS_DIRENT_LEN];
        fs_dirent_encode(child, fs_mode_to_dtype(ch->mode), val);
        fixed(c, kv_put(c->db, k, kl, val, sizeof val, 0));
    }
    ch->links++;
    if (S_ISDIR(ch->mode)) {
        ch->dirent_parent = parent;
        p->subdirs++;
    }
    return 0;
}

/* A chunk of an inode that has no record: if a salvage may have lost that record, the file
 * is rebuilt from its chunks (a regular file of mode 0600 ending with its last chunk, linked
 * into /lost+found by the verdict) rather than its data thrown away. Returns 1 if the chunk
 * was taken (r allocated or grown), 0 to treat it as a stray chunk. */
static int adopt_chunk(struct ck *c, uint64_t ino, uint64_t idx, size_t vl)
{
    uint8_t key[FS_KEY_MAX];
    struct ck_inode *r = ck_find(c, ino);
    uint64_t cs = c->sb.chunk_size;
    if (!r) {
        if (!c->repair || !c->lost || ino == 0 || ino >= c->sb.ino_limit || vl == 0 || vl > cs ||
            !kv_lost_may_contain(c->lost, key, fs_key_inode(key, ino)))
            return 0;
        r = ck_add(c, ino);
        if (!r)
            return 1; /* the caller reports ENOMEM */
        r->mode = S_IFREG | 0600;
        r->adopted = 1;
    }
    if (vl == 0 || vl > cs)
        return 0; /* malformed: deleted as a stray chunk below (the record does not exist) */
    if (idx * cs + vl > r->size)
        r->size = idx * cs + vl;
    r->seen_stored += vl;
    return 1;
}

static int scan_chunk(struct ck *c, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    struct ck_inode *r;
    uint64_t ino, idx, cs = c->sb.chunk_size;

    if (fs_key_parse_chunk(k, kl, &ino, &idx) != 0) {
        if (problem(c, "malformed chunk key of %zu bytes", kl))
            fix_delete(c, k, kl);
        return 0;
    }
    c->res->chunks++;
    r = ck_find(c, ino);
    if (r && r->bad)
        return 0;
    if ((!r || r->adopted) && adopt_chunk(c, ino, idx, vl))
        return r || ck_find(c, ino) ? 0 : -ENOMEM;
    if (!r || !S_ISREG(r->mode)) {
        if (problem(c, "chunk %llu of inode %llu: no such regular file", (unsigned long long)idx,
                    (unsigned long long)ino))
            fix_delete(c, k, kl);
        return 0;
    }
    if (is_lost_marker(c, v, vl) && idx < (r->size + cs - 1) / cs) {
        c->res->lost_chunks++;
        r->lost++;
        r->seen_stored += vl;
        return 0;
    }
    if (vl == 0 || vl > cs || idx >= (r->size + cs - 1) / cs) {
        if (problem(c, "chunk %llu of inode %llu: length %zu, or past EOF %llu",
                    (unsigned long long)idx, (unsigned long long)ino, vl,
                    (unsigned long long)r->size))
            fix_delete(c, k, kl);
        return 0;
    }
    if (idx * cs + vl > r->size) {
        size_t keep = (size_t)(r->size - idx * cs);
        if (problem(c, "chunk %llu of inode %llu: stores bytes past EOF %llu",
                    (unsigned long long)idx, (unsigned long long)ino, (unsigned long long)r->size))
            fixed(c, kv_put(c->db, k, kl, v, keep, 0));
        vl = keep;
    }
    r->seen_stored += vl;
    return 0;
}

static int scan_xattr(struct ck *c, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    struct ck_inode *r;
    uint64_t ino;
    const char *name;
    size_t nlen;

    if (fs_key_parse_named(k, kl, FS_KEY_XATTR, &ino, &name, &nlen) != 0 ||
        vl > FS_XATTR_SIZE_MAX) {
        if (problem(c, "malformed xattr of %zu+%zu bytes", kl, vl))
            fix_delete(c, k, kl);
        return 0;
    }
    c->res->xattrs++;
    r = ck_find(c, ino);
    if (!r) {
        if (problem(c, "xattr %.*s of missing inode %llu", (int)nlen, name,
                    (unsigned long long)ino))
            fix_delete(c, k, kl);
    } else if (!r->bad && !(r->flags & FS_INODE_F_XATTR)) {
        uint32_t f = r->flags | FS_INODE_F_XATTR;
        r->flags = f;
        if (problem(c, "inode %llu: has xattrs but not the xattr flag", (unsigned long long)ino))
            fix_inode(c, ino, set_flags, &f);
    }
    return 0;
}

static int scan_orphan(struct ck *c, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    struct ck_inode *r;
    uint64_t ino;

    if (fs_key_parse_ino(k, kl, FS_KEY_ORPHAN, &ino) != 0) {
        if (problem(c, "malformed orphan key of %zu bytes", kl))
            fix_delete(c, k, kl);
        return 0;
    }
    r = ck_find(c, ino);
    if (!r) {
        if (problem(c, "orphan key for missing inode %llu", (unsigned long long)ino))
            fix_delete(c, k, kl);
        return 0;
    }
    r->orphan_key = 1;
    return 0;
}

/* Finds or makes /lost+found; returns its inode number or 0. */
static uint64_t lost_found(struct ck *c, kv_batch *b)
{
    static const char name[] = "lost+found";
    uint8_t key[FS_KEY_MAX], sk[4], sv[FS_SUPER_LEN], dv[FS_DIRENT_LEN];
    size_t klen = fs_key_dirent(key, FS_ROOT_INO, name, sizeof name - 1), vl;
    struct fs_inode in;
    struct ck_inode *r;
    void *val;
    uint64_t ino;
    uint8_t dt;
    int rc = kv_get(c->db, NULL, key, klen, &val, &vl);

    if (rc == 0) {
        rc = fs_dirent_decode(val, vl, &ino, &dt);
        kv_free(val);
        r = rc == 0 ? ck_find(c, ino) : NULL;
        return r && S_ISDIR(r->mode) ? ino : 0;
    }
    if (rc != KV_ENOTFOUND)
        return 0;
    ino = c->sb.ino_limit;
    c->sb.ino_limit += FS_INO_RANGE;
    memset(&in, 0, sizeof in);
    in.ino = ino;
    in.mode = S_IFDIR | 0700;
    in.nlink = 2;
    in.parent = FS_ROOT_INO;
    in.generation = 1;
    fs_now(&in.mtime);
    in.atime = in.ctime = in.mtime;
    fs_super_encode(&c->sb, sv);
    fs_dirent_encode(ino, DT_DIR, dv);
    kv_batch_clear(b);
    if (kv_batch_put(b, sk, fs_key_super(sk), sv, sizeof sv) ||
        fs_batch_put_inode(b, &in, NULL, 0) || kv_batch_put(b, key, klen, dv, sizeof dv) ||
        kv_write(c->db, b, 0))
        return 0;
    r = ck_add(c, ino);
    if (!r)
        return 0;
    r->mode = in.mode;
    r->nlink = 2;
    r->parent = FS_ROOT_INO;
    r->links = 1;
    r->dirent_parent = FS_ROOT_INO;
    ck_find(c, FS_ROOT_INO)->subdirs++;
    return ino;
}

/* Links an unreferenced inode into /lost+found as "#ino". */
static void reconnect(struct ck *c, struct ck_inode *r)
{
    kv_batch *b = kv_batch_new();
    uint8_t key[FS_KEY_MAX], dv[FS_DIRENT_LEN];
    char name[32];
    uint64_t lf = b ? lost_found(c, b) : 0;
    int n;

    if (!lf) {
        fprintf(stderr, "kvfs fsck: cannot make /lost+found\n");
        kv_batch_free(b);
        return;
    }
    n = snprintf(name, sizeof name, "#%llu", (unsigned long long)r->ino);
    fs_dirent_encode(r->ino, fs_mode_to_dtype(r->mode), dv);
    fixed(c, kv_put(c->db, key, fs_key_dirent(key, lf, name, (size_t)n), dv, sizeof dv, 0));
    r->links++;
    if (S_ISDIR(r->mode)) {
        r->dirent_parent = lf;
        ck_find(c, lf)->subdirs++;
    }
    kv_batch_free(b);
}

static void verdict(struct ck *c)
{
    struct ck_inode *root = ck_find(c, FS_ROOT_INO);

    if (root)
        root->links = 1, root->dirent_parent = FS_ROOT_INO; /* the mount point names it */
    for (size_t i = 0; i < c->cap; i++) {
        struct ck_inode *r = &c->tab[i];
        if (!r->ino || r->ino == FS_ROOT_INO || r->bad)
            continue;
        if (r->links == 0 && r->nlink == 0) {
            if (r->orphan_key) {
                c->res->orphans++; /* unlinked while open: the next mount reclaims it */
            } else if (problem(c, "inode %llu: unlinked without an orphan key",
                               (unsigned long long)r->ino)) {
                uint8_t key[FS_KEY_MAX];
                fixed(c, kv_put(c->db, key, fs_key_orphan(key, r->ino), "", 0, 0));
            }
            continue;
        }
        if (r->links == 0 &&
            problem(c, "inode %llu: no directory entry names it", (unsigned long long)r->ino))
            reconnect(c, r);
    }
    /* With names settled, link counts, parents and stored bytes. */
    for (size_t i = 0; i < c->cap; i++) {
        struct ck_inode *r = &c->tab[i];
        uint32_t want;
        if (!r->ino || r->bad || (r->links == 0 && r->nlink == 0))
            continue;
        if (r->orphan_key && r->links > 0 &&
            problem(c, "inode %llu: orphan key on a linked inode", (unsigned long long)r->ino)) {
            uint8_t key[FS_KEY_MAX];
            fix_delete(c, key, fs_key_orphan(key, r->ino));
        }
        want = S_ISDIR(r->mode) ? (uint32_t)(2 + r->subdirs) : (uint32_t)r->links;
        if (r->nlink != want && problem(c, "inode %llu: nlink %u, expected %u",
                                        (unsigned long long)r->ino, r->nlink, want))
            fix_inode(c, r->ino, set_nlink, &want);
        if (S_ISDIR(r->mode) && r->links && r->parent != r->dirent_parent &&
            problem(c, "directory %llu: parent %llu but named in %llu", (unsigned long long)r->ino,
                    (unsigned long long)r->parent, (unsigned long long)r->dirent_parent))
            fix_inode(c, r->ino, set_parent, &r->dirent_parent);
        if (r->lost)
            c->res->damaged_files++; /* named by report_damaged */
        if (S_ISREG(r->mode) && r->stored != r->seen_stored &&
            problem(c, "inode %llu: stored bytes %llu, chunks hold %llu",
                    (unsigned long long)r->ino, (unsigned long long)r->stored,
                    (unsigned long long)r->seen_stored))
            fix_inode(c, r->ino, set_stored, &r->seen_stored);
    }
}

/* The first chunk index in [0, n) whose key is above range i's lower bound (hi == 0) or
 * above its upper bound (hi == 1); n if none. Chunk keys of one inode grow with the index. */
/* scan_fn of the naming pass: keeps one name of each directory and each damaged file. */
static int name_dirent(struct ck *c, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    uint64_t parent, child;
    const char *name;
    size_t nlen;
    uint8_t dtype;
    struct ck_inode *ch;

    if (fs_key_parse_named(k, kl, FS_KEY_DIRENT, &parent, &name, &nlen) != 0 ||
        fs_dirent_decode(v, vl, &child, &dtype) != 0)
        return 0; /* reported by scan_dirent */
    ch = ck_find(c, child);
    if (!ch || ch->name || !(ch->lost || S_ISDIR(ch->mode)))
        return 0;
    ch->name = malloc(nlen + 1);
    if (!ch->name)
        return -ENOMEM;
    memcpy(ch->name, name, nlen);
    ch->name[nlen] = '\0';
    ch->name_parent = parent;
    return 0;
}

/* Writes into out (size n) the path of r from the names kept by name_dirent: "" if some
 * directory on the way has no name (or the chain loops). */
static void path_of(struct ck *c, const struct ck_inode *r, char *out, size_t n)
{
    size_t len = 0, depth = 0;
    out[0] = '\0';
    while (r && r->ino != FS_ROOT_INO) {
        size_t nl = r->name ? strlen(r->name) : 0;
        if (!r->name || ++depth > 4096 || len + nl + 1 >= n) {
            out[0] = '\0';
            return;
        }
        memmove(out + nl + 1, out, len + 1); /* prepend "/name" */
        out[0] = '/';
        memcpy(out + 1, r->name, nl);
        len += nl + 1;
        r = ck_find(c, r->name_parent);
    }
    if (!r)
        out[0] = '\0';
}

/* Names every file holding lost-chunk markers, by path where it has one: one more scan of the
 * dirents keeps a name for each such file and each directory. Returns 0 or -errno. */
static int report_damaged(struct ck *c)
{
    char path[4096];
    int rc = scan(c, FS_KEY_DIRENT, name_dirent);
    for (size_t i = 0; rc == 0 && i < c->cap; i++) {
        struct ck_inode *r = &c->tab[i];
        if (!r->ino || r->bad || !r->lost || (r->links == 0 && r->nlink == 0))
            continue;
        path_of(c, r, path, sizeof path);
        fprintf(stderr,
                "kvfs fsck: %s%sinode %llu%s: %llu chunks lost in a kvcore salvage read as EIO "
                "(remove or truncate the file to clear them)\n",
                path[0] ? path : "", path[0] ? " (" : "", (unsigned long long)r->ino,
                path[0] ? ")" : " (no path names it)", (unsigned long long)r->lost);
    }
    return rc;
}

static uint64_t lost_bound(const kv_lost *lost, size_t i, uint64_t ino, uint64_t n, int hi)
{
    const void *lo, *up;
    size_t lolen, uplen;
    int lo_inc;
    uint64_t a = 0, b = n;
    kv_lost_range(lost, i, &lo, &lolen, &lo_inc, &up, &uplen);
    if (hi ? !up : !lo)
        return hi ? n : 0;
    while (a < b) {
        uint64_t mid = a + (b - a) / 2;
        uint8_t key[FS_KEY_MAX];
        size_t kl = fs_key_chunk(key, ino, mid);
        int above =
            hi ? keycmp(key, kl, up, uplen) > 0
               : (lo_inc ? keycmp(key, kl, lo, lolen) >= 0 : keycmp(key, kl, lo, lolen) > 0);
        if (above)
            b = mid;
        else
            a = mid + 1;
    }
    return a;
}

/* 1 if some lost range holds keys that start with prefix. */
static int lost_touches_prefix(const kv_lost *lost, const uint8_t *prefix, size_t plen)
{
    for (size_t i = 0; i < kv_lost_count(lost); i++) {
        const void *lo, *up;
        size_t lolen, uplen;
        int lo_inc;
        kv_lost_range(lost, i, &lo, &lolen, &lo_inc, &up, &uplen);
        /* Some key >= prefix is <= up; some key with the prefix is above lo. */
        if (up && keycmp(up, uplen, prefix, plen) < 0)
            continue;
        if (lo && memcmp(lo, prefix, lolen < plen ? lolen : plen) > 0)
            continue;
        return 1;
    }
    return 0;
}

/* Test hook (tests/mount/corrupt.sh): with KVFS_FSCK_KILL_AT=marking a repair dies of SIGKILL
 * right after its first lost-chunk marker, as a kill -9 in the middle of the marking would (the
 * other kill points are in main.c). The markers are written one by one and the LOST file stays
 * until the marking is done, so the next repair marks the rest. */
static void kill_point_marking(void)
{
    const char *at = getenv("KVFS_FSCK_KILL_AT");
    if (at && strcmp(at, "marking") == 0) {
        fflush(NULL);
        raise(SIGKILL);
    }
}

/* Replaces chunk idx of r by a lost-chunk marker. */
static void mark_lost(struct ck *c, struct ck_inode *r, uint64_t idx, const uint8_t *marker)
{
    uint8_t key[FS_KEY_MAX];
    size_t kl = fs_key_chunk(key, r->ino, idx);
    int rc = kv_put(c->db, key, kl, marker, (size_t)c->sb.chunk_size + 1, 0);
    if (rc != 0)
        fprintf(stderr, "kvfs fsck: repair failed: %s\n", kv_strerror(rc));
    else
        kill_point_marking();
}

/* The chunks inode ino holds: how many bytes in all, and the end of the last one (0: none).
 * Returns 0 or a negative errno. */
static int chunk_extent(struct ck *c, uint64_t ino, uint64_t *bytes, uint64_t *end)
{
    uint8_t prefix[FS_KEY_MAX];
    size_t plen = fs_key_prefix(prefix, FS_KEY_CHUNK, ino);
    kv_iter *it = kv_iter_new(c->db, NULL);
    int rc;
    *bytes = *end = 0;
    if (!it)
        return -ENOMEM;
    for (kv_iter_seek(it, prefix, plen); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = kv_iter_key(it, &kl);
        uint64_t kino, idx;
        if (kl < plen || memcmp(k, prefix, plen) != 0)
            break;
        kv_iter_value(it, &vl);
        if (fs_key_parse_chunk(k, kl, &kino, &idx) != 0 || vl == 0 || vl > (size_t)c->sb.chunk_size)
            continue; /* the chunk scan deals with it */
        *bytes += vl;
        if (idx * c->sb.chunk_size + vl > *end)
            *end = idx * c->sb.chunk_size + vl;
    }
    rc = fs_kv_errno(kv_iter_status(it));
    kv_iter_free(it);
    return rc;
}

static void set_size(struct fs_inode *in, void *arg)
{
    in->size = *(uint64_t *)arg;
}

/* Marks, in every regular file, the chunks a salvage may have lost: in a lost range (and not
 * ruled out by the damaged table's Bloom filter), a chunk present may be an older version, so
 * it is marked; a hole is marked only if the file holds fewer bytes than its record counts
 * (else nothing is missing, and a sparse file does not fill up with markers). A file whose
 * record itself may be older than one lost keeps its chunks (holes in a lost range are marked,
 * as its byte count cannot be trusted), but its size is made to end where its data ends, plus
 * one marked chunk if the record claimed more and the last chunk is full (so no zeros are read
 * past the real end, and the uncertainty reads as EIO). Directories, symlinks and xattrs whose
 * keys may have lost entries are reported. */
static int mark_salvage_losses(struct ck *c, const kv_lost *lost)
{
    uint64_t cs = c->sb.chunk_size;
    uint8_t *marker = calloc(cs + 1, 1);
    int rc = 0;
    if (!marker)
        return -ENOMEM;
    memcpy(marker, lost_magic, sizeof lost_magic - 1);
    for (size_t t = 0; t < c->cap && rc == 0; t++) {
        struct ck_inode *r = &c->tab[t];
        uint8_t key[FS_KEY_MAX];
        size_t kl;
        uint64_t n, marked = 0, have = 0, end = 0;
        if (!r->ino || r->bad)
            continue;
        kl = fs_key_inode(key, r->ino);
        int whole = kv_lost_may_contain(lost, key, kl);
        kl = fs_key_prefix(key, FS_KEY_XATTR, r->ino);
        if (lost_touches_prefix(lost, key, kl))
            fprintf(stderr,
                    "kvfs fsck: inode %llu: extended attributes may have lost entries in the "
                    "kvcore salvage (names unknown; not marked)\n",
                    (unsigned long long)r->ino);
        if (!S_ISREG(r->mode)) {
            /* No bytes to mark: link counts and parents are recomputed below; the rest of
             * the record (owner, mode, times, a symlink's target) is reported. */
            if (whole)
                fprintf(stderr,
                        "kvfs fsck: inode %llu (mode 0%o): its record may be older than one lost "
                        "in the kvcore salvage (kept)\n",
                        (unsigned long long)r->ino, r->mode);
            continue;
        }
        rc = chunk_extent(c, r->ino, &have, &end);
        if (rc != 0)
            break;
        if (whole) {
            /* A last chunk that is not full ended the file when it was written; a full one
             * may have been followed by more: mark the next chunk so that reads there fail
             * rather than end early or return zeros. */
            uint64_t size = end;
            if (r->size > end && end % cs == 0) {
                mark_lost(c, r, end / cs, marker);
                marked++;
                size = end + cs;
            }
            if (size != r->size) {
                r->size = size;
                fix_inode(c, r->ino, set_size, &size);
            }
        }
        n = (r->size + cs - 1) / cs;
        for (size_t i = 0; i < kv_lost_count(lost); i++) {
            uint64_t a = lost_bound(lost, i, r->ino, n, 0), b = lost_bound(lost, i, r->ino, n, 1);
            for (uint64_t idx = a; idx < b; idx++) {
                void *v;
                size_t vl;
                kl = fs_key_chunk(key, r->ino, idx);
                if (!kv_lost_may_contain(lost, key, kl))
                    continue;
                int present = kv_get(c->db, NULL, key, kl, &v, &vl) == 0;
                if (present)
                    kv_free(v);
                else if (!whole && have >= r->stored)
                    continue; /* a hole, and the record says no bytes are missing */
                mark_lost(c, r, idx, marker);
                marked++;
            }
        }
        if (marked) {
            c->res->problems++;
            c->res->repaired++;
            fprintf(stderr,
                    "kvfs fsck: inode %llu: %llu chunks may have been lost in the kvcore salvage "
                    "(%s): marked, reads of them fail with EIO\n",
                    (unsigned long long)r->ino, (unsigned long long)marked,
                    whole ? "its inode record may be stale too" : "their keys lie in a lost range");
        }
    }
    free(marker);
    return rc;
}

/* Writes a record for every inode rebuilt from its chunks, marking first the chunks it may
 * have lost, and one more past its last chunk if the file may have gone on (its size is then
 * that chunk's end: reading there fails with EIO rather than the file looking shorter). */
static int write_adopted(struct ck *c)
{
    uint64_t cs = c->sb.chunk_size;
    uint8_t *marker = NULL;
    int rc = 0;
    for (size_t t = 0; t < c->cap && rc == 0; t++) {
        struct ck_inode *r = &c->tab[t];
        uint8_t key[FS_KEY_MAX], *val;
        uint64_t n, marked = 0;
        size_t vl;
        struct fs_inode in;
        if (!r->ino || !r->adopted)
            continue;
        if (!marker && !(marker = calloc(cs + 1, 1)))
            return -ENOMEM;
        memcpy(marker, lost_magic, sizeof lost_magic - 1);
        n = (r->size + cs - 1) / cs;
        if (kv_lost_may_contain(c->lost, key, fs_key_chunk(key, r->ino, n))) {
            r->size = (n + 1) * cs;
            n++;
        }
        for (uint64_t idx = 0; idx < n; idx++) {
            if (kv_lost_may_contain(c->lost, key, fs_key_chunk(key, r->ino, idx))) {
                void *old;
                size_t ol;
                if (kv_get(c->db, NULL, key, fs_key_chunk(key, r->ino, idx), &old, &ol) == 0) {
                    r->seen_stored -= ol <= r->seen_stored ? ol : r->seen_stored;
                    kv_free(old);
                }
                mark_lost(c, r, idx, marker);
                r->seen_stored += cs + 1;
                marked++;
            }
        }
        memset(&in, 0, sizeof in);
        in.ino = r->ino;
        in.mode = r->mode;
        in.nlink = 1;
        in.size = r->size;
        in.generation = 1;
        in.stored = r->seen_stored;
        fs_now(&in.mtime);
        in.atime = in.ctime = in.mtime;
        val = fs_inode_encode(&in, NULL, 0, &vl);
        rc = val ? kv_put(c->db, key, fs_key_inode(key, r->ino), val, vl, 0) : KV_ENOMEM;
        free(val);
        if (rc != 0) {
            fprintf(stderr, "kvfs fsck: repair failed: %s\n", kv_strerror(rc));
            rc = fs_kv_errno(rc);
            break;
        }
        r->nlink = 1;
        r->stored = r->seen_stored;
        c->res->problems++;
        c->res->repaired++;
        fprintf(
            stderr,
            "kvfs fsck: inode %llu: its record was lost in the kvcore salvage; rebuilt from its "
            "chunks as a regular file of %llu bytes, mode 0600 (%llu chunks marked lost)\n",
            (unsigned long long)r->ino, (unsigned long long)r->size, (unsigned long long)marked);
    }
    free(marker);
    return rc;
}

int fs_fsck(kv_db *db, int repair, void (*progress)(void *ctx, uint64_t keys), void *pctx,
            struct fsck_result *res)
{
    return fs_fsck_ex(db, repair, NULL, progress, pctx, res);
}

int fs_fsck_ex(kv_db *db, int repair, const kv_lost *lost,
               void (*progress)(void *ctx, uint64_t keys), void *pctx, struct fsck_result *res)
{
    struct ck c;
    uint8_t key[4];
    void *val;
    size_t vl;
    int rc;
    struct ck_inode *root;

    memset(res, 0, sizeof *res);
    memset(&c, 0, sizeof c);
    c.db = db;
    c.repair = repair;
    c.res = res;
    c.progress = progress;
    c.pctx = pctx;
    c.lost = kv_lost_count(lost) ? lost : NULL;
    rc = kv_get(db, NULL, key, fs_key_super(key), &val, &vl);
    if (rc) {
        if (rc == KV_ENOTFOUND)
            problem(&c, "no superblock: not a kvfs store (not repairable)");
        return rc == KV_ENOTFOUND ? 0 : fs_kv_errno(rc);
    }
    rc = fs_super_decode(val, vl, &c.sb);
    kv_free(val);
    if (rc) {
        problem(&c, "superblock fails validation (not repairable)");
        return 0;
    }
    rc = scan(&c, FS_KEY_INODE, scan_inode);
    root = rc == 0 ? ck_find(&c, FS_ROOT_INO) : NULL;
    if (rc == 0 && (!root || !S_ISDIR(root->mode))) {
        problem(&c, "the root directory (inode 1) is missing (not repairable)");
        goto out;
    }
    if (rc == 0 && repair && kv_lost_count(lost))
        rc = mark_salvage_losses(&c, lost);
    /* Chunks before dirents: an inode whose record a salvage lost is rebuilt from its chunks
     * first, so that the names it still has keep naming it. */
    if (rc == 0)
        rc = scan(&c, FS_KEY_CHUNK, scan_chunk);
    if (rc == 0)
        rc = write_adopted(&c);
    if (rc == 0)
        rc = scan(&c, FS_KEY_DIRENT, scan_dirent);
    if (rc == 0)
        rc = scan(&c, FS_KEY_XATTR, scan_xattr);
    if (rc == 0)
        rc = scan(&c, FS_KEY_ORPHAN, scan_orphan);
    if (rc == 0)
        verdict(&c);
    if (rc == 0 && res->damaged_files)
        rc = report_damaged(&c);
out:
    if (progress)
        progress(pctx, c.keys);
    for (size_t i = 0; c.tab && i < c.cap; i++)
        free(c.tab[i].name);
    free(c.tab);
    return rc;
}
