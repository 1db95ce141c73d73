/* salvage.c - kv_salvage: offline repair of a damaged store for `kvfs fsck --repair`,
 * keeping every entry that can be proven intact (rules: kvcore/FORMAT.md, "Salvage").
 *
 * With the store's LOCK held, in this order:
 *  1. CURRENT missing, malformed, or naming a manifest that does not exist: pointed at the
 *     newest MANIFEST-NNNNNN (an older one may describe tables since compacted away).
 *  2. A write-ahead log whose records stop before its end is cut back to its last good record.
 *     The records after the damage are not resynchronised: each is a whole batch, and applying
 *     later batches without the lost one could leave a file with some new and some old bytes;
 *     the prefix is a state the store really was in.
 *  3. The manifest is replayed (without opening tables) and every live table is verified.
 *  4. If the manifest's records or any live table are damaged, the store is rebuilt: every data
 *     block that verifies (table/sst.h sst_scan) of every table - the live set, or every table
 *     in the directory when the manifest cannot be trusted - and every good WAL record are
 *     merged by internal key. Sequence numbers, not the tables' levels, decide which version of
 *     a key is current, so the merge is right whatever order the tables had; the newest
 *     version of each key is written (deletions applied: nothing older remains below) into new
 *     tables of about target_file_size in the last level, non-overlapping, and a fresh
 *     manifest naming only them (log_number above every log: the logs were merged) is synced
 *     before CURRENT is switched to it atomically. Until that switch nothing the store uses
 *     has changed; after it the replaced files are obsolete and the next open deletes them.
 * The original of every file changed or found damaged is first copied beside itself as
 * "<name>.damaged" (a name kvcore never touches).
 *
 * What a lost block held is unknown; its key range is not: between the keys (or index
 * separators) of the blocks around it. Those ranges go to the caller (kv_salvage_ex), since
 * within them a key may now be missing or show an older value than the one lost.
 *
 * Invariants:
 *  1. Nothing is changed unless the directory already holds kvcore files (CURRENT, a manifest,
 *     a table or a log): kv_salvage never turns a foreign directory into a store.
 *  2. A changed file is replaced atomically (temp name, sync, rename, directory sync) after its
 *     original was copied to <name>.damaged and synced; new tables and the new manifest are
 *     synced before CURRENT names them.
 *  3. Every entry written was read from a block or record whose checksum verified.
 */
#include "db/batch.h"
#include "db/filename.h"
#include "db/memtable.h"
#include "db/table_cache.h"
#include "db/version.h"
#include "db/wal.h"
#include "kvcore/kv.h"
#include "table/block.h"
#include "table/bloom.h"
#include "table/sst.h"
#include "util/env.h"
#include "util/ikey.h"
#include "util/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SALVAGE_COPY_CHUNK (1u << 20)
#define SALVAGE_KEY_LOG 300 /* key bytes a lost range's log line shows */

/* A table the salvage considers: from the manifest's live set, or found in the directory. */
struct stable {
    uint64_t number;
    int level;             /* -1: not from a trusted manifest */
    uint64_t size;         /* the manifest's size; 0: unknown */
    uint64_t largest_seq;  /* the manifest's */
    buf smallest, largest; /* the manifest's keys; empty: unknown */
    int damaged;
};

/* User keys k with lo < k <= hi (lo <= k if lo_inclusive); has_*: 0 means unbounded. The
 * damaged table's Bloom filter, if it verified, rules out keys the table never held. */
struct lost_range {
    buf lo, hi, filter;
    int has_lo, has_hi, lo_inclusive, has_filter;
};

struct kv_lost {
    struct lost_range *r;
    size_t n;
};

struct salvage {
    const kv_env *env;
    const char *dir;
    const kv_options *opts;
    kv_logger log;
    char **names;
    size_t n;
    kv_salvage_stats st;
    uint64_t max_number; /* highest file number in the directory */
    /* From the manifest replay. */
    char manifest[FILENAME_MAX_LEN]; /* "" if none could be read */
    int manifest_ok;                 /* every record decoded and replayed */
    int has_counters;
    uint64_t log_number, next_file, last_seq;
    struct stable *tables;
    size_t ntables, tables_cap;
    struct lost_range *lost;
    size_t nlost, lost_cap;
};

/* "dir/name" + suffix, malloc'd; NULL if out of memory. */
static char *join(const char *dir, const char *name, const char *suffix)
{
    size_t len = strlen(dir) + 1 + strlen(name) + strlen(suffix) + 1;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/%s%s", dir, name, suffix);
    return p;
}

/* Copies the first `len` bytes of dir/from to dir/to (through dir/to.tmp, synced, renamed,
 * directory synced). */
static int copy_prefix(struct salvage *s, const char *from, const char *to, uint64_t len)
{
    char *src = join(s->dir, from, ""), *tmp = join(s->dir, to, ".tmp"),
         *dst = join(s->dir, to, "");
    char *chunk = malloc(SALVAGE_COPY_CHUNK);
    env_file *in = NULL, *out = NULL;
    int rc = KV_ENOMEM;
    if (!src || !tmp || !dst || !chunk)
        goto done;
    rc = s->env->open_readable(s->env, src, &in);
    if (rc == 0)
        rc = s->env->open_writable(s->env, tmp, &out);
    for (uint64_t off = 0; rc == 0 && off < len;) {
        size_t want = len - off < SALVAGE_COPY_CHUNK ? (size_t)(len - off) : SALVAGE_COPY_CHUNK;
        size_t got = 0;
        rc = env_pread(in, chunk, want, off, &got);
        if (rc == 0 && got != want)
            rc = KV_EIO; /* the file shrank under us: someone else is using the store */
        if (rc == 0)
            rc = env_append(out, chunk, got);
        off += got;
    }
    if (rc == 0)
        rc = env_sync(out);
    if (out) {
        int crc = env_close(out);
        if (rc == 0)
            rc = crc;
    }
    if (rc == 0)
        rc = s->env->rename(s->env, tmp, dst);
    if (rc == 0)
        rc = s->env->sync_dir(s->env, s->dir);
    else if (out)
        s->env->unlink(s->env, tmp);
done:
    if (in)
        env_close(in);
    free(src);
    free(tmp);
    free(dst);
    free(chunk);
    return rc;
}

/* Keeps a copy of dir/name (all of it) as dir/name.damaged. */
static int keep_original(struct salvage *s, const char *name)
{
    size_t dlen = strlen(name) + sizeof ".damaged";
    char *p = join(s->dir, name, ""), *damaged = malloc(dlen);
    uint64_t size = 0;
    int rc = p && damaged ? s->env->file_size(s->env, p, &size) : KV_ENOMEM;
    if (rc == 0) {
        snprintf(damaged, dlen, "%s.damaged", name);
        rc = copy_prefix(s, name, damaged, size);
    }
    if (rc != 0)
        kv_log(&s->log, KV_LOG_ERROR, "salvage: cannot keep a copy of %s: %s", name,
               kv_strerror(rc));
    free(p);
    free(damaged);
    return rc;
}

/* Step 1: CURRENT. */
static int salvage_current(struct salvage *s)
{
    char *p = join(s->dir, "CURRENT", "");
    char *data = NULL, name[FILENAME_MAX_LEN];
    size_t len = 0;
    const char *why = NULL;
    uint64_t number = 0, newest = 0, size;
    enum filename_type type;
    int have_manifest = 0;
    if (!p)
        return KV_ENOMEM;
    int rc = env_read_file(s->env, p, &data, &len);
    if (rc == KV_ENOTFOUND) {
        why = "missing";
        rc = 0;
    } else if (rc != 0) {
        free(p);
        return rc;
    } else if (len < 2 || len >= sizeof name || data[len - 1] != '\n') {
        why = "malformed";
    } else {
        memcpy(name, data, len - 1);
        name[len - 1] = '\0';
        if (strlen(name) != len - 1 || !filename_parse(name, &type, &number) ||
            type != FILE_TYPE_MANIFEST) {
            why = "malformed";
        } else {
            char *m = join(s->dir, name, "");
            if (!m) {
                free(p);
                free(data);
                return KV_ENOMEM;
            }
            if (s->env->file_size(s->env, m, &size) == KV_ENOTFOUND)
                why = "naming a manifest that does not exist";
            free(m);
        }
    }
    free(p);
    free(data);
    if (!why)
        return 0;
    for (size_t i = 0; i < s->n; i++) {
        if (filename_parse(s->names[i], &type, &number) && type == FILE_TYPE_MANIFEST &&
            (!have_manifest || number > newest)) {
            newest = number;
            have_manifest = 1;
        }
    }
    if (!have_manifest) {
        /* The rebuild (step 4) writes a new manifest and CURRENT from the tables and logs. */
        kv_log(&s->log, KV_LOG_ERROR, "salvage: CURRENT is %s and no manifest is left", why);
        return 0;
    }
    if (strcmp(why, "missing") != 0 && (rc = keep_original(s, "CURRENT")) != 0)
        return rc;
    rc = filename_set_current(s->env, s->dir, newest);
    if (rc != 0) {
        kv_log(&s->log, KV_LOG_ERROR, "salvage: cannot rewrite CURRENT: %s", kv_strerror(rc));
        return rc;
    }
    s->st.files_fixed++;
    kv_log(&s->log, KV_LOG_WARN, "salvage: CURRENT was %s; it now names MANIFEST-%06" PRIu64, why,
           newest);
    return 0;
}

/* Step 2: one write-ahead log. */
static int salvage_log(struct salvage *s, const char *name)
{
    char *p = join(s->dir, name, "");
    env_file *f;
    wal_reader *r;
    slice rec;
    int rc;
    if (!p)
        return KV_ENOMEM;
    rc = s->env->open_readable(s->env, p, &f);
    free(p);
    if (rc != 0)
        return rc;
    rc = wal_reader_new(f, &r);
    if (rc != 0)
        return rc;
    while ((rc = wal_read_record(r, &rec)) == 1)
        ;
    uint64_t good = wal_reader_good_offset(r), dropped = wal_reader_dropped_bytes(r);
    const char *reason = wal_reader_drop_reason(r);
    char why[64];
    snprintf(why, sizeof why, "%s", reason ? reason : "unknown");
    wal_reader_free(r);
    if (rc < 0) {
        kv_log(&s->log, KV_LOG_ERROR, "salvage: %s: cannot read: %s", name, kv_strerror(rc));
        return rc;
    }
    if (dropped == 0)
        return 0;
    rc = keep_original(s, name);
    if (rc == 0)
        rc = copy_prefix(s, name, name, good);
    if (rc != 0) {
        kv_log(&s->log, KV_LOG_ERROR, "salvage: %s: cannot cut it back: %s", name, kv_strerror(rc));
        return rc;
    }
    s->st.files_fixed++;
    s->st.bytes_lost += dropped;
    kv_log(&s->log, KV_LOG_WARN,
           "salvage: %s: cut back to its last good record at offset %" PRIu64 " (%s); the %" PRIu64
           " bytes after it are lost (kept in %s.damaged)",
           name, good, why, dropped, name);
    return 0;
}

/* ---- Tables and lost ranges ---------------------------------------------------------------- */

static struct stable *table_find(struct salvage *s, uint64_t number)
{
    for (size_t i = 0; i < s->ntables; i++)
        if (s->tables[i].number == number)
            return &s->tables[i];
    return NULL;
}

static struct stable *table_add(struct salvage *s, uint64_t number)
{
    if (s->ntables == s->tables_cap) {
        size_t ncap = s->tables_cap ? s->tables_cap * 2 : 16;
        struct stable *nt = realloc(s->tables, ncap * sizeof(*nt));
        if (!nt)
            return NULL;
        s->tables = nt;
        s->tables_cap = ncap;
    }
    struct stable *t = &s->tables[s->ntables++];
    memset(t, 0, sizeof *t);
    t->number = number;
    t->level = -1;
    buf_init(&t->smallest);
    buf_init(&t->largest);
    return t;
}

static void table_remove(struct salvage *s, struct stable *t)
{
    buf_free(&t->smallest);
    buf_free(&t->largest);
    *t = s->tables[--s->ntables];
}

static void tables_free(struct salvage *s)
{
    while (s->ntables)
        table_remove(s, &s->tables[0]);
    free(s->tables);
    s->tables = NULL;
    s->tables_cap = 0;
}

/* Records a lost range of user keys; lo/hi NULL: unbounded; filter NULL: none. */
static int lost_add(struct salvage *s, const slice *lo, int lo_inclusive, const slice *hi,
                    const slice *filter)
{
    if (s->nlost == s->lost_cap) {
        size_t ncap = s->lost_cap ? s->lost_cap * 2 : 16;
        struct lost_range *nl = realloc(s->lost, ncap * sizeof(*nl));
        if (!nl)
            return KV_ENOMEM;
        s->lost = nl;
        s->lost_cap = ncap;
    }
    struct lost_range *l = &s->lost[s->nlost];
    memset(l, 0, sizeof *l);
    buf_init(&l->lo);
    buf_init(&l->hi);
    buf_init(&l->filter);
    l->has_lo = lo != NULL;
    l->has_hi = hi != NULL;
    l->has_filter = filter != NULL;
    l->lo_inclusive = lo_inclusive;
    if ((lo && buf_append(&l->lo, lo->data, lo->size) != 0) ||
        (hi && buf_append(&l->hi, hi->data, hi->size) != 0) ||
        (filter && buf_append(&l->filter, filter->data, filter->size) != 0)) {
        buf_free(&l->lo);
        buf_free(&l->hi);
        buf_free(&l->filter);
        return KV_ENOMEM;
    }
    s->nlost++;
    return 0;
}

static void ranges_free(struct lost_range *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf_free(&r[i].lo);
        buf_free(&r[i].hi);
        buf_free(&r[i].filter);
    }
    free(r);
}

size_t kv_lost_count(const kv_lost *l)
{
    return l ? l->n : 0;
}

void kv_lost_range(const kv_lost *l, size_t i, const void **lo, size_t *lolen, int *lo_inclusive,
                   const void **hi, size_t *hilen)
{
    const struct lost_range *r = &l->r[i];
    *lo = r->has_lo ? r->lo.data : NULL;
    *lolen = r->lo.len;
    *lo_inclusive = r->lo_inclusive;
    *hi = r->has_hi ? r->hi.data : NULL;
    *hilen = r->hi.len;
    if (r->has_lo && !*lo)
        *lo = ""; /* an empty key is a bound too */
    if (r->has_hi && !*hi)
        *hi = "";
}

int kv_lost_may_contain(const kv_lost *l, const void *key, size_t klen)
{
    slice k = slice_make(key, klen);
    for (size_t i = 0; l && i < l->n; i++) {
        const struct lost_range *r = &l->r[i];
        int c = r->has_lo ? slice_compare(buf_slice(&r->lo), k) : -1;
        if (c > 0 || (c == 0 && !r->lo_inclusive))
            continue;
        if (r->has_hi && slice_compare(k, buf_slice(&r->hi)) > 0)
            continue;
        if (r->has_filter && !bloom_may_match(buf_slice(&r->filter), k))
            continue;
        return 1;
    }
    return 0;
}

void kv_lost_free(kv_lost *l)
{
    if (l)
        ranges_free(l->r, l->n);
    free(l);
}

/* ---- Step 3: the manifest and the live tables ----------------------------------------------- */

/* Applies one decoded edit to the table list; returns a static reason if it does not fit. */
static const char *replay_edit(struct salvage *s, version_edit *e)
{
    for (size_t i = 0; i < e->n_deleted; i++) {
        struct stable *t = table_find(s, e->deleted[i].number);
        if (!t || t->level != e->deleted[i].level)
            return "deletes a table that is not in that level";
        table_remove(s, t);
    }
    for (size_t i = 0; i < e->n_added; i++) {
        const file_meta *m = e->added[i].meta;
        if (table_find(s, m->number))
            return "adds a table already present";
        struct stable *t = table_add(s, m->number);
        if (!t || buf_append(&t->smallest, m->smallest.data, m->smallest.len) != 0 ||
            buf_append(&t->largest, m->largest.data, m->largest.len) != 0)
            return "out of memory";
        t->level = e->added[i].level;
        t->size = m->size;
        t->largest_seq = m->largest_seq;
    }
    if (e->has_log_number)
        s->log_number = e->log_number;
    if (e->has_next_file_number)
        s->next_file = e->next_file_number;
    if (e->has_last_sequence)
        s->last_seq = e->last_sequence;
    s->has_counters |= e->has_next_file_number && e->has_last_sequence;
    return NULL;
}

/* 1 if bytes [off, end of file) of path are all zero (what a crash leaves where the file
 * was extended), else 0. */
static int tail_is_zeros(struct salvage *s, const char *name, uint64_t off)
{
    char *p = join(s->dir, name, ""), *data = NULL;
    size_t len = 0;
    int zeros = 0;
    if (p && env_read_file(s->env, p, &data, &len) == 0 && off <= len) {
        zeros = 1;
        for (size_t i = (size_t)off; i < len && zeros; i++)
            zeros = data[i] == 0;
    }
    free(data);
    free(p);
    return zeros;
}

/* Replays the manifest CURRENT names into s->tables. s->manifest_ok says whether it can be
 * trusted: every record decoded and fitted, and anything dropped at the end was a torn tail.
 * Only I/O errors and ENOMEM are returned. */
static int load_manifest(struct salvage *s)
{
    char *p = join(s->dir, "CURRENT", ""), *data = NULL;
    size_t len = 0;
    enum filename_type type;
    uint64_t number;
    if (!p)
        return KV_ENOMEM;
    int rc = env_read_file(s->env, p, &data, &len);
    free(p);
    if (rc == KV_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (len >= 2 && len < sizeof s->manifest && data[len - 1] == '\n') {
        memcpy(s->manifest, data, len - 1);
        s->manifest[len - 1] = '\0';
        if (strlen(s->manifest) != len - 1 || !filename_parse(s->manifest, &type, &number) ||
            type != FILE_TYPE_MANIFEST)
            s->manifest[0] = '\0';
    }
    free(data);
    if (!s->manifest[0])
        return 0;

    env_file *f;
    wal_reader *r;
    slice rec;
    const char *why = NULL;
    p = join(s->dir, s->manifest, "");
    rc = p ? s->env->open_readable(s->env, p, &f) : KV_ENOMEM;
    free(p);
    if (rc == KV_ENOTFOUND) {
        s->manifest[0] = '\0';
        return 0;
    }
    if (rc == 0)
        rc = wal_reader_new(f, &r);
    if (rc != 0)
        return rc;
    while (!why && (rc = wal_read_record(r, &rec)) == 1) {
        version_edit e;
        version_edit_init(&e);
        if (version_edit_decode(&e, rec) != 0)
            why = "edit does not decode";
        else
            why = replay_edit(s, &e);
        version_edit_free(&e);
        if (why)
            kv_log(&s->log, KV_LOG_ERROR,
                   "salvage: manifest %s: record ending at offset %" PRIu64 ": %s", s->manifest,
                   wal_reader_good_offset(r), why);
    }
    uint64_t good = wal_reader_good_offset(r), dropped = wal_reader_dropped_bytes(r);
    const char *reason = wal_reader_drop_reason(r);
    enum wal_tail tail = wal_reader_tail(r);
    wal_reader_free(r);
    if (rc < 0)
        return rc;
    /* The reader's verdict where it has one; else what a power cut leaves: a short file, or
     * zeros where it was extended. */
    int damaged =
        tail == WAL_TAIL_DAMAGED ||
        (tail != WAL_TAIL_CLEAN && tail != WAL_TAIL_UNSYNCED && reason &&
         strcmp(reason, "truncated header") != 0 && strcmp(reason, "truncated payload") != 0 &&
         !tail_is_zeros(s, s->manifest, good));
    if (!why && dropped && damaged) {
        why = reason;
        kv_log(&s->log, KV_LOG_ERROR,
               "salvage: manifest %s: record at offset %" PRIu64 ": %s, with %" PRIu64
               " bytes from there: damaged",
               s->manifest, good, reason, dropped);
    }
    if (!why && !s->has_counters) {
        why = "no record gives the counters";
        kv_log(&s->log, KV_LOG_ERROR, "salvage: manifest %s: %s", s->manifest, why);
    }
    s->manifest_ok = why == NULL;
    return 0;
}

/* Verifies table t completely. Returns 0 (sound), 1 (damaged or missing: logged) or an I/O
 * error. */
static int check_table(struct salvage *s, struct stable *t)
{
    char name[FILENAME_MAX_LEN];
    snprintf(name, sizeof name, "%06" PRIu64 ".sst", t->number);
    char *p = join(s->dir, name, "");
    uint64_t size = 0, problems = 0;
    env_file *f;
    sst_reader *r;
    if (!p)
        return KV_ENOMEM;
    int rc = s->env->file_size(s->env, p, &size);
    if (rc == 0 && size != t->size) {
        kv_log(&s->log, KV_LOG_ERROR,
               "salvage: table %s: %" PRIu64 " bytes, the manifest says %" PRIu64, name, size,
               t->size);
        free(p);
        return 1;
    }
    if (rc == 0)
        rc = s->env->open_readable(s->env, p, &f);
    free(p);
    if (rc == KV_ENOTFOUND) {
        kv_log(&s->log, KV_LOG_ERROR, "salvage: table %s referenced by the manifest is missing",
               name);
        return 1;
    }
    if (rc != 0)
        return rc;
    sst_read_options ro = {NULL, &s->log, 1, 0};
    rc = sst_reader_open(f, size, name, &ro, &r);
    if (rc == 0) {
        rc = sst_reader_verify(r, NULL, NULL, &problems);
        sst_reader_close(r);
    }
    if (rc == KV_ECORRUPT || rc == KV_EVERSION)
        return 1;
    return rc;
}

/* ---- Step 4: the rebuild's sources ---------------------------------------------------------- */

/* The entries of one table's good blocks, in order, as an iterator for the merger. Supports
 * seek_first once, then next; anything else makes it fail with KV_EINVAL. */
struct table_src {
    iter base;
    struct salvage *s;
    struct stable *t;
    sst_scan *scan;
    struct block_iter bi;
    int have_bi, started, valid, status;
};

static void src_loss(void *ctx, const sst_scan_loss *l)
{
    struct table_src *ts = ctx;
    struct stable *t = ts->t;
    slice lo, hi;
    int lo_inc = 0;
    const slice *lop = NULL, *hip = NULL;
    t->damaged = 1;
    if (l->has_lower) {
        lo = ikey_user_key(l->lower);
        lop = &lo;
    } else if (t->smallest.len >= IKEY_TAG_SIZE) {
        lo = ikey_user_key(buf_slice(&t->smallest));
        lop = &lo;
        lo_inc = 1;
    }
    if (l->has_upper) {
        hi = ikey_user_key(l->upper);
        hip = &hi;
    } else if (t->largest.len >= IKEY_TAG_SIZE) {
        hi = ikey_user_key(buf_slice(&t->largest));
        hip = &hi;
    }
    slice filter;
    int has_filter = sst_scan_filter(ts->scan, &filter);
    if (lost_add(ts->s, lop, lo_inc, hip, has_filter ? &filter : NULL) != 0 && ts->status == 0)
        ts->status = KV_ENOMEM;
}

/* Moves to the first entry of the next good block. */
static void src_load(struct table_src *ts)
{
    const block *b;
    ts->valid = 0;
    if (ts->have_bi) {
        block_iter_release(&ts->bi);
        ts->have_bi = 0;
    }
    if (ts->status != 0)
        return;
    int rc = sst_scan_next(ts->scan, src_loss, ts, &b);
    if (rc < 0)
        ts->status = rc;
    if (rc != 1 || ts->status != 0)
        return;
    block_iter_init(&ts->bi, b, ikey_compare, NULL);
    ts->have_bi = 1;
    block_iter_seek_first(&ts->bi);
    ts->valid = block_iter_valid(&ts->bi); /* blocks are checked non-empty */
    if (!ts->valid)
        ts->status = KV_ECORRUPT; /* cannot happen: sst_scan checked every entry */
}

static int src_valid(const iter *it)
{
    return ((const struct table_src *)it)->valid;
}

static void src_seek_first(iter *it)
{
    struct table_src *ts = (struct table_src *)it;
    if (ts->started) {
        ts->valid = 0;
        ts->status = KV_EINVAL;
        return;
    }
    ts->started = 1;
    src_load(ts);
}

static void src_unsupported(iter *it)
{
    struct table_src *ts = (struct table_src *)it;
    ts->valid = 0;
    ts->status = KV_EINVAL;
}

static void src_seek(iter *it, slice target)
{
    (void)target;
    src_unsupported(it);
}

static void src_next(iter *it)
{
    struct table_src *ts = (struct table_src *)it;
    block_iter_next(&ts->bi);
    if (!block_iter_valid(&ts->bi))
        src_load(ts);
}

static slice src_key(const iter *it)
{
    return block_iter_key(&((const struct table_src *)it)->bi);
}

static slice src_value(const iter *it)
{
    return block_iter_value(&((const struct table_src *)it)->bi);
}

static int src_status(const iter *it)
{
    return ((const struct table_src *)it)->status;
}

static void src_destroy(iter *it)
{
    struct table_src *ts = (struct table_src *)it;
    sst_scan_stats st;
    if (ts->have_bi)
        block_iter_release(&ts->bi);
    sst_scan_get_stats(ts->scan, &st);
    ts->s->st.blocks_lost += st.blocks_lost;
    ts->s->st.bytes_lost += st.bytes_lost;
    ts->s->st.entries_read += st.entries;
    if (st.footer_ok && st.footer_entries > st.entries)
        ts->s->st.entries_lost += st.footer_entries - st.entries;
    if (!st.footer_ok || !st.index_ok || !st.filter_ok || st.blocks_lost)
        ts->t->damaged = 1;
    sst_scan_close(ts->scan);
    free(ts);
}

static const struct iter_ops src_ops = {
    src_valid,       src_seek_first, src_unsupported, src_seek,   src_next,
    src_unsupported, src_key,        src_value,       src_status, src_destroy,
};

/* Opens table t for the merge. A missing or unreadable table loses its whole key range (the
 * manifest's, or everything if unknown). Returns 0 with *out (NULL if there is nothing to
 * read) or an error. */
static int src_open(struct salvage *s, struct stable *t, iter **out)
{
    char name[FILENAME_MAX_LEN];
    snprintf(name, sizeof name, "%06" PRIu64 ".sst", t->number);
    char *p = join(s->dir, name, "");
    uint64_t size = 0;
    env_file *f = NULL;
    *out = NULL;
    if (!p)
        return KV_ENOMEM;
    int rc = s->env->file_size(s->env, p, &size);
    if (rc == 0)
        rc = s->env->open_readable(s->env, p, &f);
    free(p);
    if (rc == KV_ENOTFOUND) {
        slice lo = ikey_user_key(buf_slice(&t->smallest)),
              hi = ikey_user_key(buf_slice(&t->largest));
        int known = t->smallest.len >= IKEY_TAG_SIZE && t->largest.len >= IKEY_TAG_SIZE;
        t->damaged = 1;
        kv_log(&s->log, KV_LOG_ERROR, "salvage: table %s is missing: all of it is lost", name);
        return lost_add(s, known ? &lo : NULL, 1, known ? &hi : NULL, NULL);
    }
    if (rc != 0)
        return rc;
    struct table_src *ts = calloc(1, sizeof *ts);
    if (!ts) {
        env_close(f);
        return KV_ENOMEM;
    }
    rc = sst_scan_open(f, size, name, &s->log, &ts->scan);
    if (rc != 0) {
        free(ts);
        return rc;
    }
    iter_init(&ts->base, &src_ops);
    ts->s = s;
    ts->t = t;
    *out = &ts->base;
    return 0;
}

/* Replays every good record of the logs that hold data not yet in a table (all logs when the
 * manifest cannot say) into *mem. Logs were already cut back to their last good record. */
static int logs_into_memtable(struct salvage *s, memtable *mem)
{
    enum filename_type type;
    uint64_t number;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < s->n; i++) {
        if (!filename_parse(s->names[i], &type, &number) || type != FILE_TYPE_LOG ||
            (s->manifest_ok && number < s->log_number))
            continue;
        char *p = join(s->dir, s->names[i], "");
        env_file *f;
        wal_reader *r;
        slice rec;
        rc = p ? s->env->open_readable(s->env, p, &f) : KV_ENOMEM;
        free(p);
        if (rc == 0)
            rc = wal_reader_new(f, &r);
        if (rc != 0)
            break;
        while ((rc = wal_read_record(r, &rec)) == 1) {
            int brc = batch_insert_into_memtable(rec, mem);
            if (brc == KV_ECORRUPT) {
                /* Its checksum holds: the writer made it. Keep the prefix, as for damage. */
                kv_log(&s->log, KV_LOG_ERROR,
                       "salvage: %s: record ending at offset %" PRIu64
                       ": malformed batch; the records from it on are dropped",
                       s->names[i], wal_reader_good_offset(r));
                rc = 0;
                break;
            }
            if (brc != 0) {
                rc = brc;
                break;
            }
            s->st.entries_read += coding_get_fixed32(rec.data + 8);
        }
        wal_reader_free(r);
    }
    return rc;
}

/* ---- Step 4: the merged output --------------------------------------------------------------- */

/* Over the merger: the newest entry of each user key, skipping keys whose newest entry is a
 * deletion. seek_first starts at the first entry the first time and, after that, a new window
 * at the current entry; a window ends (valid() 0) once it holds `limit` bytes, so that
 * table_build, which seeks first and reads to the end, writes one table per window. */
struct out_iter {
    iter base;
    iter *m;
    int started;
    uint64_t limit, window;
    uint64_t max_seq, keys;
    buf user; /* user key of the entry being left behind */
};

/* Skips every entry of the merger with user key `u`. */
static void out_skip_user(struct out_iter *o, slice u)
{
    while (iter_valid(o->m) && slice_compare(ikey_user_key(iter_key(o->m)), u) == 0) {
        ikey_parsed pk;
        if (ikey_parse(iter_key(o->m), &pk) && pk.sequence > o->max_seq)
            o->max_seq = pk.sequence;
        iter_next(o->m);
    }
}

/* Moves to the newest entry of the next user key that is not deleted. */
static void out_settle(struct out_iter *o)
{
    while (iter_valid(o->m)) {
        ikey_parsed pk;
        if (!ikey_parse(iter_key(o->m), &pk))
            return; /* cannot happen: sources are checked; the writer refuses it */
        if (pk.type != IKEY_TYPE_DELETION)
            return;
        buf_clear(&o->user);
        if (buf_append(&o->user, pk.user_key.data, pk.user_key.size) != 0)
            return;
        out_skip_user(o, buf_slice(&o->user));
    }
}

static int out_valid(const iter *it)
{
    const struct out_iter *o = (const struct out_iter *)it;
    return o->window < o->limit && iter_valid(o->m);
}

static void out_seek_first(iter *it)
{
    struct out_iter *o = (struct out_iter *)it;
    o->window = 0;
    if (!o->started) {
        o->started = 1;
        iter_seek_first(o->m);
        out_settle(o);
    }
}

static void out_next(iter *it)
{
    struct out_iter *o = (struct out_iter *)it;
    slice k = iter_key(o->m), u = ikey_user_key(k);
    o->window += k.size + iter_value(o->m).size;
    o->keys++;
    buf_clear(&o->user);
    if (buf_append(&o->user, u.data, u.size) != 0)
        return;
    out_skip_user(o, buf_slice(&o->user));
    out_settle(o);
}

static slice out_key(const iter *it)
{
    return iter_key(((const struct out_iter *)it)->m);
}

static slice out_value(const iter *it)
{
    return iter_value(((const struct out_iter *)it)->m);
}

static int out_status(const iter *it)
{
    return iter_status(((const struct out_iter *)it)->m);
}

static void out_unsupported(iter *it)
{
    (void)it; /* never called: table_build only seeks first and steps forward */
}

static void out_seek(iter *it, slice target)
{
    (void)it;
    (void)target;
}

static void out_destroy(iter *it)
{
    (void)it; /* lives on the caller's stack */
}

static const struct iter_ops out_ops = {
    out_valid,       out_seek_first, out_unsupported, out_seek,   out_next,
    out_unsupported, out_key,        out_value,       out_status, out_destroy,
};

/* ---- Step 4: the rebuild -------------------------------------------------------------------- */

/* Writes the manifest MANIFEST-number holding exactly the given tables and counters. */
static int write_manifest(struct salvage *s, uint64_t number, file_meta *outs, size_t nout,
                          uint64_t next_file, uint64_t last_seq)
{
    version_edit e;
    buf enc;
    env_file *f;
    wal_writer *w = NULL;
    char name[FILENAME_MAX_LEN];
    int rc = 0;
    version_edit_init(&e);
    buf_init(&enc);
    e.has_format_version = 1;
    e.format_version = VERSION_FORMAT_CURRENT;
    e.has_log_number = 1;
    e.log_number = next_file;
    e.has_next_file_number = 1;
    e.next_file_number = next_file;
    e.has_last_sequence = 1;
    e.last_sequence = last_seq;
    for (size_t i = 0; rc == 0 && i < nout; i++)
        rc = version_edit_add_file_meta(&e, KV_MAX_LEVELS - 1, &outs[i]);
    if (rc == 0)
        rc = version_edit_encode(&e, &enc);
    snprintf(name, sizeof name, "MANIFEST-%06" PRIu64, number);
    char *p = rc == 0 ? join(s->dir, name, "") : NULL;
    if (rc == 0 && !p)
        rc = KV_ENOMEM;
    if (rc == 0)
        rc = s->env->open_writable(s->env, p, &f);
    if (rc == 0)
        rc = wal_writer_new(f, 0, &w);
    if (rc == 0)
        rc = wal_add_record(w, buf_slice(&enc));
    if (rc == 0)
        rc = wal_writer_sync(w);
    if (w) {
        int crc = wal_writer_close(w);
        if (rc == 0)
            rc = crc;
    }
    if (rc == 0)
        rc = s->env->sync_dir(s->env, s->dir);
    else if (p)
        s->env->unlink(s->env, p);
    free(p);
    buf_free(&enc);
    version_edit_free(&e);
    return rc;
}

/* Writes the merged entries as tables numbered from *next (advanced); fills outs. */
static int write_tables(struct salvage *s, iter *merged, table_cache *tc, uint64_t *next,
                        file_meta **outs, size_t *nout, uint64_t *max_seq)
{
    struct out_iter o;
    size_t cap = 0;
    int rc = 0;
    memset(&o, 0, sizeof o);
    iter_init(&o.base, &out_ops);
    o.m = merged;
    o.limit = s->opts->target_file_size ? s->opts->target_file_size : (2u << 20);
    buf_init(&o.user);
    *outs = NULL;
    *nout = 0;
    for (;;) {
        file_meta meta;
        if (*nout == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            file_meta *no = realloc(*outs, ncap * sizeof(*no));
            if (!no) {
                rc = KV_ENOMEM;
                break;
            }
            *outs = no;
            cap = ncap;
        }
        rc = table_build(s->dir, s->env, s->opts, tc, &o.base, *next, &meta);
        if (rc != 0 || meta.size == 0) {
            buf_free(&meta.smallest);
            buf_free(&meta.largest);
            break;
        }
        (*outs)[(*nout)++] = meta;
        (*next)++;
        if (!iter_valid(merged))
            break;
    }
    if (rc == 0)
        rc = iter_status(merged);
    s->st.keys_written = o.keys;
    *max_seq = o.max_seq;
    buf_free(&o.user);
    return rc;
}

static void outs_free(file_meta *outs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf_free(&outs[i].smallest);
        buf_free(&outs[i].largest);
    }
    free(outs);
}

/* Deletes tables written by a rebuild that did not complete. */
static void outs_unlink(struct salvage *s, const file_meta *outs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char name[FILENAME_MAX_LEN];
        snprintf(name, sizeof name, "%06" PRIu64 ".sst", outs[i].number);
        char *p = join(s->dir, name, "");
        if (p)
            s->env->unlink(s->env, p);
        free(p);
    }
}

/* Logs lost range i as "(lo, hi]" in hex ("[" for an inclusive lo; "-" for no bound). */
static void log_lost_range(struct salvage *s, size_t i)
{
    const struct lost_range *l = &s->lost[i];
    char lo[2 * SALVAGE_KEY_LOG + 4], hi[2 * SALVAGE_KEY_LOG + 4];
    const buf *b[2] = {&l->lo, &l->hi};
    char *out[2] = {lo, hi};
    int has[2] = {l->has_lo, l->has_hi};
    for (int k = 0; k < 2; k++) {
        size_t n = b[k]->len < SALVAGE_KEY_LOG ? b[k]->len : SALVAGE_KEY_LOG, o = 0;
        if (!has[k])
            out[k][o++] = '-';
        for (size_t j = 0; has[k] && j < n; j++, o += 2)
            snprintf(out[k] + o, 3, "%02x", (unsigned char)b[k]->data[j]);
        if (has[k] && n < b[k]->len)
            out[k][o++] = '+'; /* cut short */
        out[k][o] = '\0';
    }
    kv_log(&s->log, KV_LOG_WARN, "salvage: lost key range %zu: %c%s, %s]%s", i,
           l->lo_inclusive ? '[' : '(', lo, hi,
           l->has_filter ? " (less what the table's Bloom filter rules out)" : "");
}

static int rebuild(struct salvage *s)
{
    iter **srcs = calloc(s->ntables + 1, sizeof(*srcs));
    int nsrc = 0, rc = 0;
    memtable *mem = memtable_new();
    table_cache *tc = table_cache_new(s->dir, s->env, 16, NULL, &s->log, 1);
    file_meta *outs = NULL;
    size_t nout = 0;
    uint64_t max_seq = 0;
    if (!srcs || !mem || !tc)
        rc = KV_ENOMEM;
    for (size_t i = 0; rc == 0 && i < s->ntables; i++) {
        iter *it;
        rc = src_open(s, &s->tables[i], &it);
        if (rc == 0 && it)
            srcs[nsrc++] = it;
    }
    if (rc == 0)
        rc = logs_into_memtable(s, mem);
    if (rc == 0) {
        srcs[nsrc] = memtable_iter_new(mem);
        if (!srcs[nsrc])
            rc = KV_ENOMEM;
        else
            nsrc++;
    }
    if (rc != 0) {
        for (int i = 0; i < nsrc; i++)
            iter_free(srcs[i]);
        nsrc = 0;
    }
    iter *merged = rc == 0 ? merger_new(srcs, nsrc) : NULL;
    if (rc == 0 && !merged)
        rc = KV_ENOMEM;

    uint64_t next = s->max_number + 1;
    if (s->has_counters && s->next_file > next)
        next = s->next_file;
    if (rc == 0)
        rc = write_tables(s, merged, tc, &next, &outs, &nout, &max_seq);
    iter_free(merged); /* reports every table's stats and losses */
    if (rc == 0 && s->has_counters && s->last_seq > max_seq)
        max_seq = s->last_seq;
    uint64_t manifest_number = next++;
    if (rc == 0)
        rc = write_manifest(s, manifest_number, outs, nout, next, max_seq);
    /* Keep what is about to be replaced; then switch. */
    for (size_t i = 0; rc == 0 && i < s->ntables; i++) {
        if (!s->tables[i].damaged)
            continue;
        s->st.tables_damaged++;
        char name[FILENAME_MAX_LEN];
        snprintf(name, sizeof name, "%06" PRIu64 ".sst", s->tables[i].number);
        char *p = join(s->dir, name, "");
        uint64_t size;
        if (!p) {
            rc = KV_ENOMEM;
            break;
        }
        if (s->env->file_size(s->env, p, &size) == 0) {
            rc = keep_original(s, name);
            s->st.files_fixed++;
        }
        free(p);
    }
    if (rc == 0 && s->manifest[0] && !s->manifest_ok) {
        rc = keep_original(s, s->manifest);
        s->st.files_fixed++;
    }
    if (rc == 0)
        rc = filename_set_current(s->env, s->dir, manifest_number);
    if (rc != 0) {
        char name[FILENAME_MAX_LEN];
        snprintf(name, sizeof name, "MANIFEST-%06" PRIu64, manifest_number);
        char *p = join(s->dir, name, "");
        if (p)
            s->env->unlink(s->env, p);
        free(p);
        outs_unlink(s, outs, nout);
        kv_log(&s->log, KV_LOG_ERROR, "salvage: rebuild failed (%s); the store is unchanged",
               kv_strerror(rc));
    } else {
        s->st.rebuilt = 1;
        for (size_t i = 0; i < s->nlost; i++)
            log_lost_range(s, i);
        if (s->st.files_fixed == 0)
            s->st.files_fixed = 1;
        kv_log(&s->log, KV_LOG_WARN,
               "salvage: rebuilt %zu tables holding %" PRIu64 " keys from %zu tables and the logs "
               "(%" PRIu64 " entries read); lost: %" PRIu64 " blocks, %" PRIu64
               " bytes, at least %" PRIu64 " entries, in %zu key ranges; new manifest "
               "MANIFEST-%06" PRIu64,
               nout, s->st.keys_written, s->ntables, s->st.entries_read, s->st.blocks_lost,
               s->st.bytes_lost, s->st.entries_lost, s->nlost, manifest_number);
    }
    outs_free(outs, nout);
    if (mem)
        memtable_unref(mem);
    table_cache_free(tc);
    free(srcs);
    return rc;
}

/* Steps 3 and 4: decides whether a rebuild is needed and does it. */
static int salvage_tables(struct salvage *s)
{
    enum filename_type type;
    uint64_t number;
    int rc = load_manifest(s), need = 0;
    if (rc != 0)
        return rc;
    if (!s->manifest_ok) {
        /* Every table here may be live: sequence numbers sort out which entries are newest. */
        tables_free(s);
        for (size_t i = 0; i < s->n; i++)
            if (filename_parse(s->names[i], &type, &number) && type == FILE_TYPE_TABLE &&
                !table_add(s, number))
                return KV_ENOMEM;
        need = 1;
        kv_log(&s->log, KV_LOG_WARN,
               "salvage: the manifest cannot be trusted: rebuilding from the %zu tables and the "
               "logs in the directory",
               s->ntables);
    }
    for (size_t i = 0; s->manifest_ok && i < s->ntables; i++) {
        rc = check_table(s, &s->tables[i]);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            s->tables[i].damaged = 1;
            need = 1;
        }
    }
    return need ? rebuild(s) : 0;
}

int kv_salvage_ex(const char *path, const kv_options *opts, kv_lost **lost, kv_salvage_stats *st)
{
    kv_options o;
    struct salvage s;
    env_lock *lock = NULL;
    enum filename_type type;
    uint64_t number;
    int ours = 0, rc;

    if (st)
        memset(st, 0, sizeof *st);
    if (lost)
        *lost = NULL;
    if (!path || !*path)
        return KV_EINVAL;
    if (opts)
        o = *opts;
    else
        kv_options_init(&o);
    memset(&s, 0, sizeof s);
    s.env = o.env ? o.env : env_posix();
    s.dir = path;
    s.opts = &o;
    kv_logger_init(&s.log, &o);

    rc = s.env->list_dir(s.env, path, &s.names, &s.n);
    if (rc != 0)
        return rc == KV_ENOTFOUND ? KV_EINVAL : rc;
    for (size_t i = 0; i < s.n; i++) {
        if (!filename_parse(s.names[i], &type, &number))
            continue;
        if (type != FILE_TYPE_LOCK && type != FILE_TYPE_CURRENT && number > s.max_number)
            s.max_number = number;
        if (type != FILE_TYPE_LOCK && type != FILE_TYPE_TEMP)
            ours = 1;
    }
    if (!ours) {
        env_free_names(s.names, s.n);
        kv_log(&s.log, KV_LOG_ERROR, "salvage: %s holds no kvcore files", path);
        return KV_EINVAL;
    }
    char *lp = join(path, "LOCK", "");
    rc = lp ? s.env->lock(s.env, lp, &lock) : KV_ENOMEM;
    free(lp);
    if (rc == 0)
        rc = salvage_current(&s);
    for (size_t i = 0; rc == 0 && i < s.n; i++)
        if (filename_parse(s.names[i], &type, &number) && type == FILE_TYPE_LOG)
            rc = salvage_log(&s, s.names[i]);
    if (rc == 0)
        rc = salvage_tables(&s);
    if (lock)
        s.env->unlock(lock);
    env_free_names(s.names, s.n);
    tables_free(&s);
    s.st.lost_ranges = s.nlost;
    if (st)
        *st = s.st;

    /* Whatever remains makes the open fail again. */
    if (rc == 0) {
        kv_db *db;
        o.read_only = 1;
        o.create_if_missing = 0;
        o.error_if_exists = 0;
        rc = kv_open(path, &o, &db);
        if (rc != 0)
            kv_log(&s.log, KV_LOG_ERROR, "salvage: %s still does not open (%s)", path,
                   kv_strerror(rc));
        else
            rc = kv_close(db);
    }
    if (rc == 0 && lost) {
        *lost = malloc(sizeof **lost);
        if (*lost) {
            (*lost)->r = s.lost;
            (*lost)->n = s.nlost;
            return 0;
        }
        rc = KV_ENOMEM;
    }
    ranges_free(s.lost, s.nlost);
    return rc;
}

int kv_salvage(const char *path, const kv_options *opts, uint64_t *fixed)
{
    kv_salvage_stats st;
    int rc = kv_salvage_ex(path, opts, NULL, &st);
    if (fixed)
        *fixed = st.files_fixed;
    return rc;
}
