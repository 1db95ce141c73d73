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
 *     In a value-log store every segment is verified too (vlog_check_dir_ex, as kv_check);
 *     if nothing needs a rebuild, a dry run of it checks that every newest value pointer leads
 *     inside an existing segment (a segment cut at a record boundary, or deleted, looks sound).
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
 *     A segment with a damaged record also forces a rebuild: each pointer into such a segment
 *     is read in full and its value, if it verifies, written inline in the new tables; a key
 *     whose newest value cannot be read (damaged, beyond the end of its segment, or in a
 *     missing one) is dropped and reported lost. After the switch nothing points into the
 *     damaged segments, and they are renamed to <name>.damaged.
 * The original of every file changed or found damaged is first copied beside itself as
 * "<name>.damaged" (a name kvcore never touches). What a rebuild lost is written to the LOST
 * file before the switch and reported again by every salvage until the caller, done with it,
 * calls kv_lost_clear (so a caller killed before it acted on the losses can finish).
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
#include "db/filename.h"
#include "db/salvage.h"
#include "db/version.h"
#include "db/wal.h"
#include "kvcore/kv.h"
#include "table/bloom.h"
#include "table/sst.h"
#include "util/checksum.h"
#include "util/env.h"
#include "util/ikey.h"
#include "util/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SALVAGE_COPY_CHUNK (1u << 20)
/* The LOST file (kvcore/FORMAT.md "Salvage"): on-disk, never change. */
#define SALVAGE_LOST_NAME "LOST"
#define SALVAGE_LOST_MAGIC UINT64_C(0x010054534f4c766b) /* "kvLOST\0\x01" little-endian */
#define SALVAGE_LOST_VERSION 1
#define SALVAGE_LOST_HAS_LO 1
#define SALVAGE_LOST_HAS_HI 2
#define SALVAGE_LOST_LO_INCLUSIVE 4
#define SALVAGE_LOST_HAS_FILTER 8

/* "dir/name" + suffix, malloc'd; NULL if out of memory. */
char *salvage_join(const char *dir, const char *name, const char *suffix)
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
    char *src = salvage_join(s->dir, from, ""), *tmp = salvage_join(s->dir, to, ".tmp"),
         *dst = salvage_join(s->dir, to, "");
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
int salvage_keep_original(struct salvage *s, const char *name)
{
    size_t dlen = strlen(name) + sizeof ".damaged";
    char *p = salvage_join(s->dir, name, ""), *damaged = malloc(dlen);
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
    char *p = salvage_join(s->dir, "CURRENT", "");
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
            char *m = salvage_join(s->dir, name, "");
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
    if (strcmp(why, "missing") != 0 && (rc = salvage_keep_original(s, "CURRENT")) != 0)
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
    char *p = salvage_join(s->dir, name, "");
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
    rc = salvage_keep_original(s, name);
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

static struct salvage_table *table_find(struct salvage *s, uint64_t number)
{
    for (size_t i = 0; i < s->ntables; i++)
        if (s->tables[i].number == number)
            return &s->tables[i];
    return NULL;
}

static struct salvage_table *table_add(struct salvage *s, uint64_t number)
{
    if (s->ntables == s->tables_cap) {
        size_t ncap = s->tables_cap ? s->tables_cap * 2 : 16;
        struct salvage_table *nt = realloc(s->tables, ncap * sizeof(*nt));
        if (!nt)
            return NULL;
        s->tables = nt;
        s->tables_cap = ncap;
    }
    struct salvage_table *t = &s->tables[s->ntables++];
    memset(t, 0, sizeof *t);
    t->number = number;
    t->level = -1;
    buf_init(&t->smallest);
    buf_init(&t->largest);
    return t;
}

static void table_remove(struct salvage *s, struct salvage_table *t)
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
int salvage_lost_add(struct salvage *s, const slice *lo, int lo_inclusive, const slice *hi,
                     const slice *filter)
{
    if (s->dry) {
        s->dry_failed = 1;
        return 0;
    }
    if (s->nlost == s->lost_cap) {
        size_t ncap = s->lost_cap ? s->lost_cap * 2 : 16;
        struct salvage_range *nl = realloc(s->lost, ncap * sizeof(*nl));
        if (!nl)
            return KV_ENOMEM;
        s->lost = nl;
        s->lost_cap = ncap;
    }
    struct salvage_range *l = &s->lost[s->nlost];
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

static void ranges_free(struct salvage_range *r, size_t n)
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
    const struct salvage_range *r = &l->r[i];
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
        const struct salvage_range *r = &l->r[i];
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

/* ---- The LOST file: what salvages lost, until the caller has acted on it ------------------- */

int salvage_lost_persist(struct salvage *s)
{
    buf b;
    int rc = 0;
    if (s->nlost == 0)
        return 0;
    buf_init(&b);
    rc |= buf_append_fixed64(&b, SALVAGE_LOST_MAGIC);
    rc |= buf_append_fixed32(&b, SALVAGE_LOST_VERSION);
    rc |= buf_append_fixed32(&b, (uint32_t)s->nlost);
    for (size_t i = 0; rc == 0 && i < s->nlost; i++) {
        const struct salvage_range *r = &s->lost[i];
        unsigned char flags = (unsigned char)((r->has_lo ? SALVAGE_LOST_HAS_LO : 0) |
                                              (r->has_hi ? SALVAGE_LOST_HAS_HI : 0) |
                                              (r->lo_inclusive ? SALVAGE_LOST_LO_INCLUSIVE : 0) |
                                              (r->has_filter ? SALVAGE_LOST_HAS_FILTER : 0));
        rc |= buf_append(&b, &flags, 1);
        rc |= buf_append_length_prefixed(&b, buf_slice(&r->lo));
        rc |= buf_append_length_prefixed(&b, buf_slice(&r->hi));
        rc |= buf_append_length_prefixed(&b, buf_slice(&r->filter));
    }
    if (rc == 0)
        rc = buf_append_fixed64(&b, checksum_value(b.data, b.len));
    rc = rc ? KV_ENOMEM : env_write_file_atomic(s->env, s->dir, SALVAGE_LOST_NAME, b.data, b.len);
    if (rc != 0)
        kv_log(&s->log, KV_LOG_ERROR, "salvage: cannot write %s/%s: %s", s->dir, SALVAGE_LOST_NAME,
               kv_strerror(rc));
    buf_free(&b);
    return rc;
}

/* Logs a failed check of the LOST file and returns KV_ECORRUPT. */
static int lost_corrupt(struct salvage *s, size_t off, const char *check)
{
    kv_log(&s->log, KV_LOG_ERROR, "salvage: %s/%s: offset %zu: %s", s->dir, SALVAGE_LOST_NAME, off,
           check);
    return KV_ECORRUPT;
}

/* Adds the ranges of the LOST file, if there is one, to s->lost. Returns 0, KV_ECORRUPT
 * (logged: what an interrupted repair lost is then unknown, and nothing may guess it), or an
 * I/O error. */
static int lost_load(struct salvage *s)
{
    char *p = salvage_join(s->dir, SALVAGE_LOST_NAME, ""), *data = NULL;
    size_t len = 0;
    int rc = p ? env_read_file(s->env, p, &data, &len) : KV_ENOMEM;
    free(p);
    if (rc == KV_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    uint32_t ver = 0, count = 0;
    slice in = slice_make(data, len);
    uint64_t magic = 0;
    if (len < 24)
        rc = lost_corrupt(s, 0, "shorter than its header and checksum");
    else if (checksum_value(data, len - 8) != coding_get_fixed64(data + len - 8))
        rc = lost_corrupt(s, len - 8, "checksum mismatch");
    else if (!coding_slice_get_fixed64(&in, &magic) || magic != SALVAGE_LOST_MAGIC)
        rc = lost_corrupt(s, 0, "bad magic");
    else if (!coding_slice_get_fixed32(&in, &ver) || ver != SALVAGE_LOST_VERSION)
        rc = lost_corrupt(s, 8, "unknown version");
    else if (!coding_slice_get_fixed32(&in, &count))
        rc = lost_corrupt(s, 12, "no count");
    in.size -= in.size >= 8 ? 8 : in.size; /* the checksum */
    for (uint32_t i = 0; rc == 0 && i < count; i++) {
        slice lo, hi, filter;
        size_t at = (size_t)(in.data - data);
        unsigned char flags = in.size ? (unsigned char)in.data[0] : 0xff;
        if (in.size)
            in = slice_make(in.data + 1, in.size - 1);
        if (flags & ~(SALVAGE_LOST_HAS_LO | SALVAGE_LOST_HAS_HI | SALVAGE_LOST_LO_INCLUSIVE |
                      SALVAGE_LOST_HAS_FILTER) ||
            !coding_slice_get_length_prefixed(&in, &lo) ||
            !coding_slice_get_length_prefixed(&in, &hi) ||
            !coding_slice_get_length_prefixed(&in, &filter)) {
            rc = lost_corrupt(s, at, "malformed range");
            break;
        }
        rc = salvage_lost_add(s, flags & SALVAGE_LOST_HAS_LO ? &lo : NULL,
                              !!(flags & SALVAGE_LOST_LO_INCLUSIVE),
                              flags & SALVAGE_LOST_HAS_HI ? &hi : NULL,
                              flags & SALVAGE_LOST_HAS_FILTER ? &filter : NULL);
    }
    if (rc == 0 && in.size != 0)
        rc = lost_corrupt(s, (size_t)(in.data - data), "bytes after the last range");
    free(data);
    if (rc == 0 && count)
        kv_log(&s->log, KV_LOG_WARN,
               "salvage: %s holds %" PRIu32 " key ranges an earlier salvage lost and its caller "
               "has not finished with: reported again",
               SALVAGE_LOST_NAME, count);
    return rc;
}

/* Sets up a salvage of the store at path with (a copy in *o of) opts, or the defaults. */
static void salvage_init(struct salvage *s, kv_options *o, const kv_options *opts, const char *path)
{
    if (opts)
        *o = *opts;
    else
        kv_options_init(o);
    memset(s, 0, sizeof *s);
    s->env = o->env ? o->env : env_posix();
    s->dir = path;
    s->opts = o;
    kv_logger_init(&s->log, o);
}

/* Hands s->lost over to a new *lost (if rc is 0 and lost is not NULL; none: NULL when
 * !keep_empty), else frees it. Returns rc, or KV_ENOMEM. */
static int lost_hand_over(struct salvage *s, int rc, kv_lost **lost, int keep_empty)
{
    if (rc == 0 && lost && (s->nlost || keep_empty)) {
        *lost = malloc(sizeof **lost);
        if (*lost) {
            (*lost)->r = s->lost;
            (*lost)->n = s->nlost;
            return 0;
        }
        rc = KV_ENOMEM;
    }
    ranges_free(s->lost, s->nlost);
    return rc;
}

int kv_lost_pending(const char *path, const kv_options *opts, kv_lost **lost)
{
    kv_options o;
    struct salvage s;
    *lost = NULL;
    salvage_init(&s, &o, opts, path);
    return lost_hand_over(&s, lost_load(&s), lost, 0);
}

int kv_lost_clear(const char *path, const kv_options *opts)
{
    const kv_env *env = opts && opts->env ? opts->env : env_posix();
    char *p = salvage_join(path, SALVAGE_LOST_NAME, "");
    int rc = p ? env->unlink(env, p) : KV_ENOMEM;
    free(p);
    if (rc == KV_ENOTFOUND)
        return 0;
    return rc == 0 ? env->sync_dir(env, path) : rc;
}

/* ---- Step 3: the manifest and the live tables ----------------------------------------------- */

/* Applies one decoded edit to the table list; returns a static reason if it does not fit. */
static const char *replay_edit(struct salvage *s, version_edit *e)
{
    for (size_t i = 0; i < e->n_deleted; i++) {
        struct salvage_table *t = table_find(s, e->deleted[i].number);
        if (!t || t->level != e->deleted[i].level)
            return "deletes a table that is not in that level";
        table_remove(s, t);
    }
    for (size_t i = 0; i < e->n_added; i++) {
        const file_meta *m = e->added[i].meta;
        if (table_find(s, m->number))
            return "adds a table already present";
        struct salvage_table *t = table_add(s, m->number);
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
    char *p = salvage_join(s->dir, name, ""), *data = NULL;
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
    char *p = salvage_join(s->dir, "CURRENT", ""), *data = NULL;
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
    p = salvage_join(s->dir, s->manifest, "");
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
static int check_table(struct salvage *s, struct salvage_table *t)
{
    char name[FILENAME_MAX_LEN];
    snprintf(name, sizeof name, "%06" PRIu64 ".sst", t->number);
    char *p = salvage_join(s->dir, name, "");
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

int salvage_vlog_damaged(const struct salvage *s, uint64_t seg)
{
    for (size_t i = 0; i < s->nvbad; i++)
        if (s->vbad[i] == seg)
            return 1;
    return 0;
}

/* vlog_check_dir_ex's callback: notes a damaged segment (once), or counts a torn tail. */
static void note_segment(void *ctx, uint64_t seg, int damaged)
{
    struct salvage *s = ctx;
    if (!damaged)
        s->vtorn++;
    if (!damaged || salvage_vlog_damaged(s, seg))
        return;
    if (s->nvbad == s->vbad_cap) {
        size_t ncap = s->vbad_cap ? s->vbad_cap * 2 : 8;
        uint64_t *nv = realloc(s->vbad, ncap * sizeof(*nv));
        if (!nv) {
            s->vbad_oom = 1;
            return;
        }
        s->vbad = nv;
        s->vbad_cap = ncap;
    }
    s->vbad[s->nvbad++] = seg;
}

/* Step 3b: in a value-log store, finds the segments holding a damaged record, and those whose
 * end looks torn (*need = 1 if any: a torn tail is what a crash leaves in the newest segment,
 * but also what a truncation leaves anywhere, and then pointers may lead past the end; the
 * rebuild checks every pointer's bounds, and loses nothing when there are none). Returns 0 or
 * an error. */
static int salvage_segments(struct salvage *s, int *need)
{
    int rc = vlog_marker_exists(s->env, s->dir);
    if (rc <= 0)
        return rc;
    s->vlog_mode = 1;
    uint64_t problems = 0;
    rc = vlog_check_dir_ex(s->dir, s->env, &s->log, &problems, NULL, note_segment, s);
    if (rc == 0 && s->vbad_oom)
        rc = KV_ENOMEM;
    if (rc == 0 && s->nvbad) {
        *need = 1;
        kv_log(&s->log, KV_LOG_WARN,
               "salvage: %zu value-log segments hold damaged records: rebuilding (their values "
               "that verify move into the new tables; keys whose value is damaged are lost)",
               s->nvbad);
    } else if (rc == 0 && s->vtorn) {
        *need = 1;
        kv_log(&s->log, KV_LOG_WARN,
               "salvage: %zu value-log segments end in a torn tail: rebuilding (keys whose value "
               "lies past a segment's end are lost)",
               s->vtorn);
    }
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
    rc = salvage_segments(s, &need);
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
    if (!need && s->vlog_mode) {
        /* Step 3c: a pointer past the end of a segment cut at a record boundary, or into a
         * missing segment, is damage no check of the files alone can see. */
        kv_salvage_stats saved = s->st;
        s->dry = 1;
        rc = salvage_rebuild(s);
        s->dry = 0;
        s->st = saved;
        if (rc != 0)
            return rc;
        need = s->dry_failed;
        if (need)
            kv_log(&s->log, KV_LOG_WARN,
                   "salvage: values that the store points at are missing from the value log: "
                   "rebuilding");
    }
    return need ? salvage_rebuild(s) : 0;
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
    salvage_init(&s, &o, opts, path);

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
    char *lp = salvage_join(path, "LOCK", "");
    rc = lp ? s.env->lock(s.env, lp, &lock) : KV_ENOMEM;
    free(lp);
    if (rc == 0)
        rc = lost_load(&s);
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
    free(s.vbad);
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
    return lost_hand_over(&s, rc, lost, 1);
}

int kv_salvage(const char *path, const kv_options *opts, uint64_t *fixed)
{
    kv_salvage_stats st;
    int rc = kv_salvage_ex(path, opts, NULL, &st);
    if (fixed)
        *fixed = st.files_fixed;
    return rc;
}
