/* version.c - versions (the live tables per level), version edits, the manifest and recovery.
 *
 * A version_edit is encoded as a list of tagged fields (FORMAT.md "Manifest"); the manifest is
 * a record log (wal.h) whose first record is a snapshot of a whole version and whose further
 * records are edits. A builder applies edits to a base version and produces a new, immutable
 * version; versions are reference counted and kept on a list so that every table any live
 * version (an iterator, a compaction, a get in flight) references is known.
 *
 * Invariants (besides those of version.h):
 *  1. vs->current is on the version list and holds one reference of its own.
 *  2. In a version, L0 is ordered by largest_seq descending (ties: number descending) and the
 *     levels >= 1 by smallest key with largest[i] < smallest[i+1]; no file number appears twice.
 *  3. At most one version_set_log_and_apply writes the manifest at a time (manifest_busy).
 *  4. file_meta.refs counts the versions (and builders, and compactions that outlive their
 *     input version: version_file_ref) holding the file; it is freed at 0.
 */
#include "db/version.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/filename.h"
#include "db/memtable.h"
#include "db/wal.h"
#include "util/env.h"
#include "util/ikey.h"

/* Field tags of an encoded edit. on-disk: never change. See kvcore/FORMAT.md. */
enum {
    TAG_FORMAT_VERSION = 1,
    TAG_LOG_NUMBER = 2,
    TAG_NEXT_FILE_NUMBER = 3,
    TAG_LAST_SEQUENCE = 4,
    TAG_DELETED_FILE = 5,
    TAG_NEW_FILE = 6,
};

typedef struct version_node {
    version v; /* first, so a version * is a version_node * */
    struct version_node *prev, *next;
} version_node;

struct version_set {
    version_set_ctx ctx;
    char *dir;
    pthread_cond_t manifest_cv;
    int manifest_busy;         /* protected by mu; invariant 3 */
    uint64_t next_file_number; /* protected by mu */
    uint64_t manifest_number;  /* protected by mu */
    uint64_t last_sequence;    /* protected by mu */
    uint64_t log_number;       /* protected by mu */
    wal_writer *manifest;      /* NULL until the first apply after recovery; protected by mu */
    version_node versions;     /* list head (not a version); protected by mu */
    version *current;          /* protected by mu */
    buf compact_pointer[KV_MAX_LEVELS]; /* protected by mu */
    uint64_t *pending;                  /* outputs being written; protected by mu */
    size_t n_pending, cap_pending;
};

/* ---- file_meta ------------------------------------------------------------------------------ */

/* A table earns one allowed seek per this many bytes, and at least VERSION_MIN_SEEKS. LevelDB's
 * reasoning: a seek costs about as much as compacting 16 KiB, so a table probed in vain more
 * often than that is cheaper to merge into the next level. The floor is 1000, not LevelDB's
 * 100: a probe that the Bloom filter or a cached block answers costs microseconds, so small
 * tables are left alone until the reads clearly pay for a compaction. */
#define VERSION_SEEK_BYTES 16384
#define VERSION_MIN_SEEKS 1000

static file_meta *file_meta_new(uint64_t number, uint64_t size, slice smallest, slice largest,
                                uint64_t largest_seq)
{
    file_meta *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    if (buf_append(&m->smallest, smallest.data, smallest.size) ||
        buf_append(&m->largest, largest.data, largest.size)) {
        buf_free(&m->smallest);
        buf_free(&m->largest);
        free(m);
        return NULL;
    }
    m->number = number;
    m->size = size;
    m->largest_seq = largest_seq;
    uint64_t seeks = size / VERSION_SEEK_BYTES;
    m->allowed_seeks = seeks < VERSION_MIN_SEEKS ? VERSION_MIN_SEEKS
                       : seeks > INT32_MAX       ? INT32_MAX
                                                 : (int)seeks;
    return m;
}

/* file_meta.pin of a table the table cache would not pin: lookups go through
 * table_cache_get. */
static const char pin_refused_tag;
#define VERSION_PIN_REFUSED ((table_pin *)&pin_refused_tag)

static void file_meta_destroy(file_meta *m)
{
    if (m->pin != VERSION_PIN_REFUSED)
        table_cache_unpin(m->pin);
    buf_free(&m->smallest);
    buf_free(&m->largest);
    free(m);
}

static void file_meta_unref(file_meta *m)
{
    assert(m->refs > 0);
    if (--m->refs == 0)
        file_meta_destroy(m);
}

void version_file_ref(file_meta *f)
{
    assert(f->refs > 0);
    f->refs++;
}

void version_file_unref(file_meta *f)
{
    file_meta_unref(f);
}

/* ---- Version edits -------------------------------------------------------------------------- */

void version_edit_init(version_edit *e)
{
    memset(e, 0, sizeof *e);
}

void version_edit_free(version_edit *e)
{
    for (size_t i = 0; i < e->n_added; i++)
        if (e->added[i].meta)
            file_meta_destroy(e->added[i].meta);
    free(e->added);
    free(e->deleted);
    version_edit_init(e);
}

static int valid_ikey_range(slice smallest, slice largest)
{
    ikey_parsed a, b;
    return ikey_parse(smallest, &a) && ikey_parse(largest, &b) &&
           ikey_compare(smallest, largest) <= 0;
}

static int add_file(version_edit *e, int level, uint64_t number, uint64_t size, slice smallest,
                    slice largest, uint64_t largest_seq)
{
    if (level < 0 || level >= KV_MAX_LEVELS || !valid_ikey_range(smallest, largest))
        return KV_EINVAL;
    if (e->n_added == e->cap_added) {
        size_t cap = e->cap_added ? e->cap_added * 2 : 4;
        version_edit_file *a = realloc(e->added, cap * sizeof *a);
        if (a == NULL)
            return KV_ENOMEM;
        e->added = a;
        e->cap_added = cap;
    }
    file_meta *m = file_meta_new(number, size, smallest, largest, largest_seq);
    if (m == NULL)
        return KV_ENOMEM;
    e->added[e->n_added].level = level;
    e->added[e->n_added].meta = m;
    e->n_added++;
    return 0;
}

int version_edit_add_file(version_edit *e, int level, uint64_t number, uint64_t size,
                          slice smallest, slice largest)
{
    return add_file(e, level, number, size, smallest, largest, 0);
}

int version_edit_add_file_meta(version_edit *e, int level, const file_meta *m)
{
    return add_file(e, level, m->number, m->size, buf_slice(&m->smallest), buf_slice(&m->largest),
                    m->largest_seq);
}

int version_edit_delete_file(version_edit *e, int level, uint64_t number)
{
    if (level < 0 || level >= KV_MAX_LEVELS)
        return KV_EINVAL;
    if (e->n_deleted == e->cap_deleted) {
        size_t cap = e->cap_deleted ? e->cap_deleted * 2 : 4;
        version_edit_deleted *d = realloc(e->deleted, cap * sizeof *d);
        if (d == NULL)
            return KV_ENOMEM;
        e->deleted = d;
        e->cap_deleted = cap;
    }
    e->deleted[e->n_deleted].level = level;
    e->deleted[e->n_deleted].number = number;
    e->n_deleted++;
    return 0;
}

static int encode_new_file(buf *out, int level, const file_meta *m)
{
    int rc = buf_append_varint32(out, TAG_NEW_FILE);
    rc = rc ? rc : buf_append_varint32(out, (uint32_t)level);
    rc = rc ? rc : buf_append_varint64(out, m->number);
    rc = rc ? rc : buf_append_varint64(out, m->size);
    rc = rc ? rc : buf_append_varint64(out, m->largest_seq);
    rc = rc ? rc : buf_append_length_prefixed(out, buf_slice(&m->smallest));
    rc = rc ? rc : buf_append_length_prefixed(out, buf_slice(&m->largest));
    return rc;
}

static int encode_tagged64(buf *out, uint32_t tag, uint64_t v)
{
    int rc = buf_append_varint32(out, tag);
    return rc ? rc : buf_append_varint64(out, v);
}

int version_edit_encode(const version_edit *e, buf *out)
{
    size_t start = out->len;
    int rc = 0;
    if (e->has_format_version) {
        rc = buf_append_varint32(out, TAG_FORMAT_VERSION);
        rc = rc ? rc : buf_append_varint32(out, e->format_version);
    }
    if (!rc && e->has_log_number)
        rc = encode_tagged64(out, TAG_LOG_NUMBER, e->log_number);
    if (!rc && e->has_next_file_number)
        rc = encode_tagged64(out, TAG_NEXT_FILE_NUMBER, e->next_file_number);
    if (!rc && e->has_last_sequence)
        rc = encode_tagged64(out, TAG_LAST_SEQUENCE, e->last_sequence);
    for (size_t i = 0; !rc && i < e->n_deleted; i++) {
        rc = buf_append_varint32(out, TAG_DELETED_FILE);
        rc = rc ? rc : buf_append_varint32(out, (uint32_t)e->deleted[i].level);
        rc = rc ? rc : buf_append_varint64(out, e->deleted[i].number);
    }
    for (size_t i = 0; !rc && i < e->n_added; i++)
        rc = encode_new_file(out, e->added[i].level, e->added[i].meta);
    if (rc)
        out->len = start;
    return rc;
}

static int get_level(slice *in, int *level)
{
    uint32_t v;
    if (!coding_slice_get_varint32(in, &v) || v >= KV_MAX_LEVELS)
        return 0;
    *level = (int)v;
    return 1;
}

/* Decodes `in` into e (which is emptied first). *why names the failed check on error. */
static int edit_decode(version_edit *e, slice in, const char **why)
{
    version_edit_free(e);
    *why = NULL;
    int rc = KV_ECORRUPT;
    while (in.size > 0) {
        uint32_t tag;
        if (!coding_slice_get_varint32(&in, &tag)) {
            *why = "truncated field tag";
            goto fail;
        }
        switch (tag) {
        case TAG_FORMAT_VERSION:
            if (!coding_slice_get_varint32(&in, &e->format_version)) {
                *why = "truncated format version";
                goto fail;
            }
            if (e->format_version == 0) {
                *why = "format version 0";
                goto fail;
            }
            if (e->format_version > VERSION_FORMAT_CURRENT) {
                *why = "written by a newer format version";
                rc = KV_EVERSION;
                goto fail;
            }
            e->has_format_version = 1;
            break;
        case TAG_LOG_NUMBER:
            if (!coding_slice_get_varint64(&in, &e->log_number)) {
                *why = "truncated log number";
                goto fail;
            }
            e->has_log_number = 1;
            break;
        case TAG_NEXT_FILE_NUMBER:
            if (!coding_slice_get_varint64(&in, &e->next_file_number)) {
                *why = "truncated next file number";
                goto fail;
            }
            e->has_next_file_number = 1;
            break;
        case TAG_LAST_SEQUENCE:
            if (!coding_slice_get_varint64(&in, &e->last_sequence) ||
                e->last_sequence > IKEY_MAX_SEQUENCE) {
                *why = "bad last sequence";
                goto fail;
            }
            e->has_last_sequence = 1;
            break;
        case TAG_DELETED_FILE: {
            int level;
            uint64_t number;
            if (!get_level(&in, &level) || !coding_slice_get_varint64(&in, &number)) {
                *why = "bad deleted-file field";
                goto fail;
            }
            if (version_edit_delete_file(e, level, number)) {
                rc = KV_ENOMEM;
                goto fail;
            }
            break;
        }
        case TAG_NEW_FILE: {
            int level;
            uint64_t number, size, largest_seq;
            slice smallest, largest;
            if (!get_level(&in, &level) || !coding_slice_get_varint64(&in, &number) ||
                !coding_slice_get_varint64(&in, &size) ||
                !coding_slice_get_varint64(&in, &largest_seq) ||
                !coding_slice_get_length_prefixed(&in, &smallest) ||
                !coding_slice_get_length_prefixed(&in, &largest)) {
                *why = "bad new-file field";
                goto fail;
            }
            if (largest_seq > IKEY_MAX_SEQUENCE || !valid_ikey_range(smallest, largest)) {
                *why = "new file with a bad key range or sequence";
                goto fail;
            }
            if (add_file(e, level, number, size, smallest, largest, largest_seq)) {
                rc = KV_ENOMEM;
                goto fail;
            }
            break;
        }
        default:
            *why = "unknown field tag";
            goto fail;
        }
    }
    return 0;
fail:
    if (*why == NULL)
        *why = "out of memory";
    version_edit_free(e);
    return rc;
}

int version_edit_decode(version_edit *e, slice in)
{
    const char *why;
    return edit_decode(e, in, &why);
}

/* ---- Versions ------------------------------------------------------------------------------ */

static version *version_new(version_set *vs)
{
    version_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->v.vset = vs;
    n->v.compaction_level = -1;
    n->next = &vs->versions;
    n->prev = vs->versions.prev;
    n->prev->next = n;
    vs->versions.prev = n;
    return &n->v;
}

static void version_destroy(version *v)
{
    version_node *n = (version_node *)v;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        for (int i = 0; i < v->nfiles[l]; i++)
            file_meta_unref(v->files[l][i]);
        free(v->files[l]);
    }
    free(n);
}

void version_ref(version *v)
{
    v->refs++;
}

void version_unref(version *v)
{
    assert(v->refs > 0);
    if (--v->refs == 0)
        version_destroy(v);
}

#ifndef NDEBUG
/* Invariant 2, for debug builds: 1 if v is well formed. */
static int version_check_invariants(const version *v)
{
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        for (int i = 0; i < v->nfiles[l]; i++) {
            const file_meta *f = v->files[l][i];
            if (f->refs <= 0 || ikey_compare(buf_slice(&f->smallest), buf_slice(&f->largest)) > 0)
                return 0;
            if (i == 0)
                continue;
            const file_meta *p = v->files[l][i - 1];
            if (l == 0) {
                if (p->largest_seq < f->largest_seq ||
                    (p->largest_seq == f->largest_seq && p->number < f->number))
                    return 0;
            } else if (ikey_compare(buf_slice(&p->largest), buf_slice(&f->smallest)) >= 0) {
                return 0;
            }
        }
    }
    return 1;
}
#endif

/* ---- Builder ----------------------------------------------------------------------------- */

/* Files per level, sorted by number while edits are applied; each holds a reference. */
typedef struct builder {
    file_meta **files[KV_MAX_LEVELS];
    int n[KV_MAX_LEVELS], cap[KV_MAX_LEVELS];
} builder;

static int cmp_number(const void *a, const void *b)
{
    const file_meta *x = *(file_meta *const *)a, *y = *(file_meta *const *)b;
    return x->number < y->number ? -1 : x->number > y->number;
}

static void builder_free(builder *b)
{
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        for (int i = 0; i < b->n[l]; i++)
            file_meta_unref(b->files[l][i]);
        free(b->files[l]);
    }
    memset(b, 0, sizeof *b);
}

static int builder_init(builder *b, const version *base)
{
    memset(b, 0, sizeof *b);
    for (int l = 0; base && l < KV_MAX_LEVELS; l++) {
        int n = base->nfiles[l];
        if (n == 0)
            continue;
        b->files[l] = malloc((size_t)n * sizeof(file_meta *));
        if (b->files[l] == NULL) {
            builder_free(b);
            return KV_ENOMEM;
        }
        memcpy(b->files[l], base->files[l], (size_t)n * sizeof(file_meta *));
        for (int i = 0; i < n; i++)
            b->files[l][i]->refs++;
        b->n[l] = b->cap[l] = n;
        qsort(b->files[l], (size_t)n, sizeof(file_meta *), cmp_number);
    }
    return 0;
}

/* Index of the first file in b's level with number >= number. */
static int builder_find(const builder *b, int level, uint64_t number)
{
    int lo = 0, hi = b->n[level];
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (b->files[level][mid]->number < number)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int builder_has(const builder *b, int level, uint64_t number)
{
    int i = builder_find(b, level, number);
    return i < b->n[level] && b->files[level][i]->number == number;
}

/* Applies e: deletions first, then additions (copied). A deletion of a file that is not there
 * or an addition of a number already present is refused with bad_rc, logging `where`. */
static int builder_apply(builder *b, const version_edit *e, int bad_rc, const kv_logger *log,
                         const char *where)
{
    for (size_t k = 0; k < e->n_deleted; k++) {
        int l = e->deleted[k].level;
        uint64_t number = e->deleted[k].number;
        if (!builder_has(b, l, number)) {
            kv_log(log, KV_LOG_ERROR, "%s: edit deletes table %06" PRIu64 ".sst not in level %d",
                   where, number, l);
            return bad_rc;
        }
        int i = builder_find(b, l, number);
        file_meta_unref(b->files[l][i]);
        memmove(&b->files[l][i], &b->files[l][i + 1],
                (size_t)(b->n[l] - i - 1) * sizeof(file_meta *));
        b->n[l]--;
    }
    for (size_t k = 0; k < e->n_added; k++) {
        int l = e->added[k].level;
        const file_meta *src = e->added[k].meta;
        for (int ol = 0; ol < KV_MAX_LEVELS; ol++) {
            if (builder_has(b, ol, src->number)) {
                kv_log(log, KV_LOG_ERROR,
                       "%s: edit adds table %06" PRIu64 ".sst to level %d, already in level %d",
                       where, src->number, l, ol);
                return bad_rc;
            }
        }
        if (b->n[l] == b->cap[l]) {
            int cap = b->cap[l] ? b->cap[l] * 2 : 8;
            file_meta **a = realloc(b->files[l], (size_t)cap * sizeof *a);
            if (a == NULL)
                return KV_ENOMEM;
            b->files[l] = a;
            b->cap[l] = cap;
        }
        file_meta *m = file_meta_new(src->number, src->size, buf_slice(&src->smallest),
                                     buf_slice(&src->largest), src->largest_seq);
        if (m == NULL)
            return KV_ENOMEM;
        m->refs = 1;
        int i = builder_find(b, l, m->number);
        memmove(&b->files[l][i + 1], &b->files[l][i], (size_t)(b->n[l] - i) * sizeof(file_meta *));
        b->files[l][i] = m;
        b->n[l]++;
    }
    return 0;
}

static int cmp_l0(const void *a, const void *b)
{
    const file_meta *x = *(file_meta *const *)a, *y = *(file_meta *const *)b;
    if (x->largest_seq != y->largest_seq)
        return x->largest_seq > y->largest_seq ? -1 : 1;
    return x->number > y->number ? -1 : x->number < y->number;
}

static int cmp_smallest(const void *a, const void *b)
{
    const file_meta *x = *(file_meta *const *)a, *y = *(file_meta *const *)b;
    int r = ikey_compare(buf_slice(&x->smallest), buf_slice(&y->smallest));
    return r ? r : cmp_number(a, b);
}

/* Produces a version from b (b keeps its own references). Overlapping tables in a level >= 1
 * are refused with bad_rc. */
static int builder_save(builder *b, version_set *vs, int bad_rc, const char *where, version **out)
{
    *out = NULL;
    version *v = version_new(vs);
    if (v == NULL)
        return KV_ENOMEM;
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        int n = b->n[l];
        if (n == 0)
            continue;
        v->files[l] = malloc((size_t)n * sizeof(file_meta *));
        if (v->files[l] == NULL) {
            version_destroy(v);
            return KV_ENOMEM;
        }
        memcpy(v->files[l], b->files[l], (size_t)n * sizeof(file_meta *));
        qsort(v->files[l], (size_t)n, sizeof(file_meta *), l == 0 ? cmp_l0 : cmp_smallest);
        for (int i = 0; i < n; i++)
            v->files[l][i]->refs++;
        v->nfiles[l] = n;
        for (int i = 1; l > 0 && i < n; i++) {
            const file_meta *p = v->files[l][i - 1], *f = v->files[l][i];
            if (ikey_compare(buf_slice(&p->largest), buf_slice(&f->smallest)) >= 0) {
                kv_log(vs->ctx.log, KV_LOG_ERROR,
                       "%s: tables %06" PRIu64 ".sst and %06" PRIu64 ".sst overlap in level %d",
                       where, p->number, f->number, l);
                version_destroy(v);
                return bad_rc;
            }
        }
    }
    *out = v;
    return 0;
}

/* Makes v (unreferenced, fresh from builder_save) the current version. */
static void install_version(version_set *vs, version *v)
{
    assert(version_check_invariants(v));
    version_compute_score(v, vs->ctx.opts);
    v->refs++;
    if (vs->current)
        version_unref(vs->current);
    vs->current = v;
}

/* ---- Lookups ---------------------------------------------------------------------------- */

typedef struct get_state {
    slice user_key;
    buf *value;
    int result; /* MEMTABLE_* */
    int err;
    uint64_t number;
    const kv_logger *log;
} get_state;

static void get_found(void *ctx, slice ik, slice value)
{
    get_state *st = ctx;
    ikey_parsed p;
    if (!ikey_parse(ik, &p)) {
        kv_log(st->log, KV_LOG_ERROR,
               "sst %06" PRIu64 ".sst: lookup found an entry with a malformed internal key",
               st->number);
        st->err = KV_ECORRUPT;
        return;
    }
    if (!slice_equal(p.user_key, st->user_key))
        return;
    if (p.type == IKEY_TYPE_VALUE) {
        if (buf_append(st->value, value.data, value.size)) {
            st->err = KV_ENOMEM;
            return;
        }
        st->result = MEMTABLE_FOUND;
    } else {
        st->result = MEMTABLE_DELETED;
    }
}

/* f's pin (file_meta.pin), made on the first call: NULL if the table cache refused one or
 * pinning failed (*rc: the error of opening the table). */
static table_pin *file_pin(table_cache *tc, file_meta *f, int *rc)
{
    *rc = 0;
    table_pin *p = __atomic_load_n(&f->pin, __ATOMIC_ACQUIRE);
    if (p != NULL)
        return p == VERSION_PIN_REFUSED ? NULL : p;
    table_pin *mine = NULL, *expected = NULL;
    if ((*rc = table_cache_pin(tc, f->number, f->size, &mine)) != 0)
        return NULL; /* not recorded: a later lookup tries again */
    table_pin *want = mine ? mine : VERSION_PIN_REFUSED;
    if (__atomic_compare_exchange_n(&f->pin, &expected, want, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        return mine;
    table_cache_unpin(mine); /* another lookup pinned it first */
    return expected == VERSION_PIN_REFUSED ? NULL : expected;
}

/* Probes table f; returns < 0 on error, else 1 if the key was resolved (st->result set). */
static int probe_table(version *v, file_meta *f, slice lookup, get_state *st)
{
    const version_set_ctx *c = &v->vset->ctx;
    st->number = f->number;
    int rc;
    table_pin *p = file_pin(c->tc, f, &rc);
    if (p != NULL)
        rc = sst_reader_get(table_pin_reader(p), lookup, st, get_found);
    else if (rc == 0)
        rc = table_cache_get(c->tc, f->number, f->size, lookup, st, get_found);
    if (rc)
        return rc;
    if (st->err)
        return st->err;
    return st->result != MEMTABLE_ABSENT;
}

/* One lookup probed f first and had to go on: charges f and, when its allowance runs out,
 * marks it in v. Returns 1 if this call marked it. */
static int charge_seek(version *v, file_meta *f)
{
    if (__atomic_sub_fetch(&f->allowed_seeks, 1, __ATOMIC_RELAXED) != 0)
        return 0;
    file_meta *expected = NULL;
    return __atomic_compare_exchange_n(&v->seek_file, &expected, f, 0, __ATOMIC_RELEASE,
                                       __ATOMIC_RELAXED);
}

int version_get(version *v, slice user_key, uint64_t seq, buf *value)
{
    return version_get_counted(v, user_key, seq, value, NULL);
}

int version_get_counted(version *v, slice user_key, uint64_t seq, buf *value, int *seek_due)
{
    if (seek_due)
        *seek_due = 0;
    /* The lookup key: on the stack when it fits (every kv_get comes here), else malloc'd. */
    char stack_key[128];
    buf lookup;
    buf_init(&lookup);
    slice lk;
    if (user_key.size <= sizeof(stack_key) - IKEY_TAG_SIZE) {
        if (user_key.size)
            memcpy(stack_key, user_key.data, user_key.size);
        coding_put_fixed64(stack_key + user_key.size, ikey_pack_tag(seq, IKEY_TYPE_FOR_SEEK));
        lk = slice_make(stack_key, user_key.size + IKEY_TAG_SIZE);
    } else {
        if (ikey_append(&lookup, user_key, seq, IKEY_TYPE_FOR_SEEK)) {
            buf_free(&lookup);
            return KV_ENOMEM;
        }
        lk = buf_slice(&lookup);
    }
    get_state st = {user_key, value, MEMTABLE_ABSENT, 0, 0, v->vset->ctx.log};
    int rc = 0;
    file_meta *first = NULL; /* the first table probed, charged if another one is probed */
    int probes = 0;

    for (int i = 0; rc == 0 && i < v->nfiles[0]; i++) {
        file_meta *f = v->files[0][i];
        if (slice_compare(user_key, ikey_user_key(buf_slice(&f->smallest))) < 0 ||
            slice_compare(user_key, ikey_user_key(buf_slice(&f->largest))) > 0)
            continue;
        if (probes++ == 0)
            first = f;
        rc = probe_table(v, f, lk, &st);
    }
    for (int l = 1; rc == 0 && l < KV_MAX_LEVELS; l++) {
        int lo = 0, hi = v->nfiles[l];
        while (lo < hi) { /* first file whose largest key >= lookup */
            int mid = lo + (hi - lo) / 2;
            if (ikey_compare(buf_slice(&v->files[l][mid]->largest), lk) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == v->nfiles[l])
            continue;
        file_meta *f = v->files[l][lo];
        if (slice_compare(user_key, ikey_user_key(buf_slice(&f->smallest))) < 0)
            continue;
        if (probes++ == 0)
            first = f;
        rc = probe_table(v, f, lk, &st);
    }
    buf_free(&lookup);
    if (rc >= 0 && probes >= 2 && charge_seek(v, first) && seek_due)
        *seek_due = 1;
    if (rc < 0)
        return rc;
    return st.result;
}

/* ---- Concatenating iterator ---------------------------------------------------------------- */

typedef struct concat_iter {
    iter base;
    table_cache *tc;
    file_meta *const *files;
    int n;
    int fill_cache;
    int index; /* file that data iterates; n when none */
    iter *data;
    int status; /* first error seen; sticky */
} concat_iter;

/* An iterator over f's table, through its pin when it has one (the version holding f outlives
 * the iterator: version_add_iterators), else as table_cache_iter_new. NULL if out of memory. */
static iter *table_iter_new(table_cache *tc, file_meta *f, int fill_cache)
{
    int rc;
    table_pin *p = file_pin(tc, f, &rc);
    if (p != NULL)
        return sst_reader_iter_new(table_pin_reader(p), fill_cache);
    return rc ? iter_new_empty(rc) : table_cache_iter_new(tc, f->number, f->size, fill_cache);
}

static void concat_set_file(concat_iter *ci, int index)
{
    if (ci->data && ci->index == index)
        return;
    iter_free(ci->data);
    ci->data = NULL;
    ci->index = index;
    if (index < 0 || index >= ci->n) {
        ci->index = ci->n;
        return;
    }
    ci->data = table_iter_new(ci->tc, ci->files[index], ci->fill_cache);
    if (ci->data == NULL)
        ci->status = KV_ENOMEM;
}

/* If data has stopped with an error, records it and drops data; returns 1 if so. */
static int concat_check_error(concat_iter *ci)
{
    if (ci->status)
        return 1;
    if (ci->data && !iter_valid(ci->data) && iter_status(ci->data)) {
        ci->status = iter_status(ci->data);
        iter_free(ci->data);
        ci->data = NULL;
        ci->index = ci->n;
        return 1;
    }
    return 0;
}

static void concat_skip_forward(concat_iter *ci)
{
    while (!concat_check_error(ci) && ci->data && !iter_valid(ci->data)) {
        if (ci->index + 1 >= ci->n) {
            concat_set_file(ci, ci->n);
            return;
        }
        concat_set_file(ci, ci->index + 1);
        if (ci->data)
            iter_seek_first(ci->data);
    }
}

static void concat_skip_backward(concat_iter *ci)
{
    while (!concat_check_error(ci) && ci->data && !iter_valid(ci->data)) {
        if (ci->index == 0) {
            concat_set_file(ci, ci->n);
            return;
        }
        concat_set_file(ci, ci->index - 1);
        if (ci->data)
            iter_seek_last(ci->data);
    }
}

static int concat_valid(const iter *it)
{
    const concat_iter *ci = (const concat_iter *)it;
    return ci->status == 0 && ci->data && iter_valid(ci->data);
}

static void concat_seek_first(iter *it)
{
    concat_iter *ci = (concat_iter *)it;
    if (ci->status)
        return;
    concat_set_file(ci, 0);
    if (ci->data)
        iter_seek_first(ci->data);
    concat_skip_forward(ci);
}

static void concat_seek_last(iter *it)
{
    concat_iter *ci = (concat_iter *)it;
    if (ci->status)
        return;
    concat_set_file(ci, ci->n - 1);
    if (ci->data)
        iter_seek_last(ci->data);
    concat_skip_backward(ci);
}

static void concat_seek(iter *it, slice target)
{
    concat_iter *ci = (concat_iter *)it;
    if (ci->status)
        return;
    int lo = 0, hi = ci->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (ikey_compare(buf_slice(&ci->files[mid]->largest), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    concat_set_file(ci, lo);
    if (ci->data)
        iter_seek(ci->data, target);
    concat_skip_forward(ci);
}

static void concat_next(iter *it)
{
    concat_iter *ci = (concat_iter *)it;
    assert(concat_valid(it));
    iter_next(ci->data);
    concat_skip_forward(ci);
}

static void concat_prev(iter *it)
{
    concat_iter *ci = (concat_iter *)it;
    assert(concat_valid(it));
    iter_prev(ci->data);
    concat_skip_backward(ci);
}

static slice concat_key(const iter *it)
{
    return iter_key(((const concat_iter *)it)->data);
}

static slice concat_value(const iter *it)
{
    return iter_value(((const concat_iter *)it)->data);
}

static int concat_status(const iter *it)
{
    const concat_iter *ci = (const concat_iter *)it;
    if (ci->status)
        return ci->status;
    return ci->data ? iter_status(ci->data) : 0;
}

static void concat_destroy(iter *it)
{
    concat_iter *ci = (concat_iter *)it;
    iter_free(ci->data);
    free(ci);
}

static const struct iter_ops concat_ops = {
    concat_valid, concat_seek_first, concat_seek_last, concat_seek,   concat_next,
    concat_prev,  concat_key,        concat_value,     concat_status, concat_destroy,
};

iter *version_concat_iter_new(table_cache *tc, file_meta *const *files, int n, int fill_cache)
{
    concat_iter *ci = calloc(1, sizeof *ci);
    if (ci == NULL)
        return NULL;
    iter_init(&ci->base, &concat_ops);
    ci->tc = tc;
    ci->files = files;
    ci->n = n;
    ci->fill_cache = fill_cache;
    ci->index = n;
    return &ci->base;
}

int version_add_iterators(version *v, int fill_cache, iter ***its, int *n)
{
    table_cache *tc = v->vset->ctx.tc;
    int want = v->nfiles[0];
    for (int l = 1; l < KV_MAX_LEVELS; l++)
        want += v->nfiles[l] > 0;
    iter **a = realloc(*its, (size_t)(*n + want + 1) * sizeof *a);
    if (a == NULL)
        return KV_ENOMEM;
    *its = a;
    int start = *n, k = *n;
    for (int i = 0; i < v->nfiles[0]; i++) {
        if ((a[k] = table_iter_new(tc, v->files[0][i], fill_cache)) == NULL)
            goto nomem;
        k++;
    }
    for (int l = 1; l < KV_MAX_LEVELS; l++) {
        if (v->nfiles[l] == 0)
            continue;
        if ((a[k] = version_concat_iter_new(tc, v->files[l], v->nfiles[l], fill_cache)) == NULL)
            goto nomem;
        k++;
    }
    *n = k;
    return 0;
nomem:
    while (k > start)
        iter_free(a[--k]);
    return KV_ENOMEM;
}

/* ---- Version set ---------------------------------------------------------------------------- */

int version_set_new(const char *dir, const kv_options *opts, const kv_env *env, table_cache *tc,
                    const kv_logger *log, pthread_mutex_t *mu, version_set **out)
{
    *out = NULL;
    version_set *vs = calloc(1, sizeof *vs);
    if (vs == NULL)
        return KV_ENOMEM;
    vs->dir = strdup(dir);
    if (vs->dir == NULL) {
        free(vs);
        return KV_ENOMEM;
    }
    vs->ctx.dir = vs->dir;
    vs->ctx.opts = opts;
    vs->ctx.env = env;
    vs->ctx.tc = tc;
    vs->ctx.log = log;
    vs->ctx.mu = mu;
    pthread_cond_init(&vs->manifest_cv, NULL);
    vs->next_file_number = 2;
    vs->manifest_number = 1;
    vs->versions.next = vs->versions.prev = &vs->versions;
    version *v = version_new(vs);
    if (v == NULL) {
        free(vs->dir);
        free(vs);
        return KV_ENOMEM;
    }
    install_version(vs, v);
    *out = vs;
    return 0;
}

void version_set_free(version_set *vs)
{
    if (vs == NULL)
        return;
    wal_writer_close(vs->manifest);
    if (vs->current)
        version_unref(vs->current);
    /* Versions still referenced here were leaked by a caller; free them anyway. */
    while (vs->versions.next != &vs->versions)
        version_destroy(&vs->versions.next->v);
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        buf_free(&vs->compact_pointer[l]);
    free(vs->pending);
    pthread_cond_destroy(&vs->manifest_cv);
    free(vs->dir);
    free(vs);
}

/* Writes a new manifest holding recs to path and syncs it; the writer goes to *keep (if not NULL)
 * for further records, else it is closed. */
static int write_manifest_file(const kv_env *env, const char *dir, const char *path,
                               const buf *const *recs, int nrecs, wal_writer **keep)
{
    env_file *f = NULL;
    wal_writer *w = NULL;
    int rc = env->open_writable(env, path, &f);
    if (rc)
        return rc;
    rc = wal_writer_new(f, 0, &w);
    if (rc)
        return rc;
    for (int i = 0; rc == 0 && i < nrecs; i++)
        rc = wal_add_record(w, buf_slice(recs[i]));
    if (rc == 0)
        rc = wal_writer_sync(w);
    /* The new name must be durable before CURRENT names it: after a power cut the rename of
     * CURRENT could otherwise survive while the manifest's directory entry does not. */
    if (rc == 0)
        rc = env->sync_dir(env, dir);
    if (rc || keep == NULL) {
        int crc = wal_writer_close(w);
        if (rc == 0)
            rc = crc;
    } else {
        *keep = w;
    }
    return rc;
}

int version_set_create_new(version_set *vs)
{
    const kv_env *env = vs->ctx.env;
    version_edit e;
    buf rec;
    version_edit_init(&e);
    buf_init(&rec);
    e.has_format_version = 1;
    e.format_version = VERSION_FORMAT_CURRENT;
    e.has_log_number = 1;
    e.log_number = 0;
    e.has_next_file_number = 1;
    e.next_file_number = 2;
    e.has_last_sequence = 1;
    e.last_sequence = 0;
    int rc = version_edit_encode(&e, &rec);
    if (rc) {
        buf_free(&rec);
        return rc;
    }
    size_t plen = strlen(vs->dir) + FILENAME_MAX_LEN;
    char path[plen];
    filename_manifest(path, plen, vs->dir, 1);
    const buf *recs[1] = {&rec};
    rc = write_manifest_file(env, vs->dir, path, recs, 1, NULL);
    if (rc == 0)
        rc = filename_set_current(env, vs->dir, 1);
    if (rc) {
        env->unlink(env, path);
        kv_log(vs->ctx.log, KV_LOG_ERROR, "creating MANIFEST-000001 failed: %s", kv_strerror(rc));
    }
    buf_free(&rec);
    if (rc == 0) {
        vs->manifest_number = 1;
        vs->next_file_number = 2;
        vs->log_number = 0;
        vs->last_sequence = 0;
    }
    return rc;
}

/* Reads CURRENT into *number. */
static int read_current(version_set *vs, uint64_t *number)
{
    const kv_env *env = vs->ctx.env;
    size_t plen = strlen(vs->dir) + FILENAME_MAX_LEN;
    char path[plen];
    char *data = NULL;
    size_t len = 0;
    filename_current(path, plen, vs->dir);
    int rc = env_read_file(env, path, &data, &len);
    if (rc == KV_ENOTFOUND)
        return rc;
    if (rc) {
        kv_log(vs->ctx.log, KV_LOG_ERROR, "CURRENT: read failed: %s", kv_strerror(rc));
        return rc;
    }
    enum filename_type type;
    char name[FILENAME_MAX_LEN];
    int ok =
        len >= 2 && len < sizeof name && data[len - 1] == '\n' && memchr(data, '\0', len) == NULL;
    if (ok) {
        memcpy(name, data, len - 1);
        name[len - 1] = '\0';
        ok = filename_parse(name, &type, number) && type == FILE_TYPE_MANIFEST;
    }
    free(data);
    if (!ok) {
        kv_log(vs->ctx.log, KV_LOG_ERROR,
               "CURRENT: offset 0: contents are not \"MANIFEST-<number>\\n\" (%zu bytes)", len);
        return KV_ECORRUPT;
    }
    return 0;
}

/* Checks that every table of v exists with the size the manifest records. */
static int check_tables_exist(version_set *vs, const version *v)
{
    const kv_env *env = vs->ctx.env;
    size_t plen = strlen(vs->dir) + FILENAME_MAX_LEN;
    char path[plen];
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        for (int i = 0; i < v->nfiles[l]; i++) {
            const file_meta *f = v->files[l][i];
            uint64_t size = 0;
            filename_table(path, plen, vs->dir, f->number);
            int rc = env->file_size(env, path, &size);
            if (rc == KV_ENOTFOUND) {
                kv_log(vs->ctx.log, KV_LOG_ERROR,
                       "table %06" PRIu64 ".sst referenced by the manifest is missing", f->number);
                return KV_ECORRUPT;
            }
            if (rc) {
                kv_log(vs->ctx.log, KV_LOG_ERROR, "table %06" PRIu64 ".sst: stat failed: %s",
                       f->number, kv_strerror(rc));
                return rc;
            }
            if (size != f->size) {
                kv_log(vs->ctx.log, KV_LOG_ERROR,
                       "sst %06" PRIu64 ".sst: file size check: manifest records %" PRIu64
                       " bytes, file has %" PRIu64,
                       f->number, f->size, size);
                return KV_ECORRUPT;
            }
        }
    }
    return 0;
}

int version_set_recover(version_set *vs)
{
    const kv_env *env = vs->ctx.env;
    const kv_logger *log = vs->ctx.log;
    uint64_t mnum = 0;
    int rc = read_current(vs, &mnum);
    if (rc)
        return rc;

    size_t plen = strlen(vs->dir) + FILENAME_MAX_LEN;
    char path[plen], where[FILENAME_MAX_LEN + 32];
    filename_manifest(path, plen, vs->dir, mnum);
    snprintf(where, sizeof where, "manifest MANIFEST-%06" PRIu64, mnum);
    env_file *f = NULL;
    rc = env->open_readable(env, path, &f);
    if (rc == KV_ENOTFOUND) {
        kv_log(log, KV_LOG_ERROR, "%s named by CURRENT is missing", where);
        return KV_ECORRUPT;
    }
    if (rc) {
        kv_log(log, KV_LOG_ERROR, "%s: open failed: %s", where, kv_strerror(rc));
        return rc;
    }
    wal_reader *r = NULL;
    rc = wal_reader_new(f, &r);
    if (rc)
        return rc;

    builder b;
    version_edit e;
    version_edit_init(&e);
    builder_init(&b, NULL);
    int have_format = 0, have_log = 0, have_next = 0, have_last = 0;
    uint64_t log_number = 0, next_file = 0, last_seq = 0;
    for (;;) {
        uint64_t offset = wal_reader_good_offset(r);
        slice rec;
        int got = wal_read_record(r, &rec);
        if (got < 0) {
            kv_log(log, KV_LOG_ERROR, "%s: read failed at offset %" PRIu64 ": %s", where, offset,
                   kv_strerror(got));
            rc = got;
            break;
        }
        if (got == 0) {
            uint64_t dropped = wal_reader_dropped_bytes(r), good = wal_reader_good_offset(r);
            const char *reason = wal_reader_drop_reason(r) ? wal_reader_drop_reason(r) : "?";
            if (dropped == 0)
                break;
            /* wal.h: a power cut may leave the unsynced last append short or with pages never
             * written (zeros), even before pages that were. */
            if (wal_reader_tail(r) == WAL_TAIL_DAMAGED) {
                kv_log(log, KV_LOG_ERROR,
                       "%s: record at offset %" PRIu64 ": %s, with %" PRIu64
                       " bytes after it: damaged, not a torn tail",
                       where, good, reason, dropped);
                rc = KV_ECORRUPT;
            } else {
                kv_log(log, KV_LOG_WARN,
                       "%s: dropped a torn tail of %" PRIu64 " bytes at offset %" PRIu64 ": %s",
                       where, dropped, good, reason);
            }
            break;
        }
        const char *why = NULL;
        rc = edit_decode(&e, rec, &why);
        if (rc) {
            kv_log(log, KV_LOG_ERROR, "%s: record at offset %" PRIu64 ": %s", where, offset, why);
            break;
        }
        if (!have_format && !e.has_format_version) {
            kv_log(log, KV_LOG_ERROR,
                   "%s: record at offset %" PRIu64 ": first record lacks the format version", where,
                   offset);
            rc = KV_ECORRUPT;
            break;
        }
        char at[sizeof where + 40];
        snprintf(at, sizeof at, "%s: record at offset %" PRIu64, where, offset);
        rc = builder_apply(&b, &e, KV_ECORRUPT, log, at);
        if (rc)
            break;
        have_format |= e.has_format_version;
        if (e.has_log_number) {
            have_log = 1;
            log_number = e.log_number;
        }
        if (e.has_next_file_number) {
            have_next = 1;
            next_file = e.next_file_number;
        }
        if (e.has_last_sequence) {
            have_last = 1;
            last_seq = e.last_sequence;
        }
    }
    version_edit_free(&e);
    wal_reader_free(r);
    if (rc == 0 && (!have_format || !have_log || !have_next || !have_last)) {
        kv_log(log, KV_LOG_ERROR, "%s: no record gives the %s", where,
               !have_format ? "format version"
               : !have_log  ? "log number"
               : !have_next ? "next file number"
                            : "last sequence");
        rc = KV_ECORRUPT;
    }
    version *v = NULL;
    if (rc == 0)
        rc = builder_save(&b, vs, KV_ECORRUPT, where, &v);
    builder_free(&b);
    if (rc == 0)
        rc = check_tables_exist(vs, v);
    if (rc) {
        if (v)
            version_destroy(v);
        return rc;
    }

    /* Invariant 3 of version.h holds even if the manifest's counters lag behind. */
    if (next_file <= mnum)
        next_file = mnum + 1;
    if (next_file <= log_number)
        next_file = log_number + 1;
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        for (int i = 0; i < v->nfiles[l]; i++) {
            const file_meta *fm = v->files[l][i];
            if (next_file <= fm->number)
                next_file = fm->number + 1;
            if (last_seq < fm->largest_seq)
                last_seq = fm->largest_seq;
        }
    }
    install_version(vs, v);
    wal_writer_close(vs->manifest);
    vs->manifest = NULL;
    vs->manifest_number = mnum;
    vs->next_file_number = next_file;
    vs->log_number = log_number;
    vs->last_sequence = last_seq;
    return 0;
}

/* Encodes the whole of v, with the counters of e, as one edit (the first manifest record). */
static int encode_snapshot(const version *v, const version_edit *e, buf *out)
{
    int rc = buf_append_varint32(out, TAG_FORMAT_VERSION);
    rc = rc ? rc : buf_append_varint32(out, VERSION_FORMAT_CURRENT);
    rc = rc ? rc : encode_tagged64(out, TAG_LOG_NUMBER, e->log_number);
    rc = rc ? rc : encode_tagged64(out, TAG_NEXT_FILE_NUMBER, e->next_file_number);
    rc = rc ? rc : encode_tagged64(out, TAG_LAST_SEQUENCE, e->last_sequence);
    for (int l = 0; rc == 0 && l < KV_MAX_LEVELS; l++)
        for (int i = 0; rc == 0 && i < v->nfiles[l]; i++)
            rc = encode_new_file(out, l, v->files[l][i]);
    return rc;
}

int version_set_log_and_apply(version_set *vs, version_edit *e)
{
    pthread_mutex_t *mu = vs->ctx.mu;
    const kv_env *env = vs->ctx.env;
    const kv_logger *log = vs->ctx.log;
    while (vs->manifest_busy)
        pthread_cond_wait(&vs->manifest_cv, mu);
    vs->manifest_busy = 1;

    int rc = 0;
    version *v = NULL;
    builder b;
    buf snap, rec;
    buf_init(&snap);
    buf_init(&rec);
    memset(&b, 0, sizeof b);

    if (!e->has_log_number) {
        e->has_log_number = 1;
        e->log_number = vs->log_number;
    } else if (e->log_number < vs->log_number || e->log_number >= vs->next_file_number) {
        kv_log(log, KV_LOG_ERROR,
               "version edit: log number %" PRIu64 " outside [%" PRIu64 ", %" PRIu64 ")",
               e->log_number, vs->log_number, vs->next_file_number);
        rc = KV_EINVAL;
        goto out;
    }
    int new_manifest = vs->manifest == NULL;
    uint64_t mnum = new_manifest ? vs->next_file_number++ : vs->manifest_number;
    e->has_next_file_number = 1;
    e->next_file_number = vs->next_file_number;
    e->has_last_sequence = 1;
    e->last_sequence = vs->last_sequence;
    for (size_t i = 0; i < e->n_added; i++)
        if (e->added[i].meta->largest_seq == 0)
            e->added[i].meta->largest_seq = vs->last_sequence;

    rc = builder_init(&b, vs->current);
    if (rc == 0)
        rc = builder_apply(&b, e, KV_EINVAL, log, "version edit");
    if (rc == 0)
        rc = builder_save(&b, vs, KV_EINVAL, "version edit", &v);
    builder_free(&b);
    if (rc == 0 && new_manifest)
        rc = encode_snapshot(vs->current, e, &snap);
    if (rc == 0)
        rc = version_edit_encode(e, &rec);
    if (rc)
        goto out;

    {
        /* The I/O runs without mu; invariant 3 keeps other appliers out meanwhile. */
        pthread_mutex_unlock(mu);
        size_t plen = strlen(vs->dir) + FILENAME_MAX_LEN;
        char path[plen];
        filename_manifest(path, plen, vs->dir, mnum);
        wal_writer *w = vs->manifest;
        int current_rc = 0;
        if (new_manifest) {
            const buf *recs[2] = {&snap, &rec};
            rc = write_manifest_file(env, vs->dir, path, recs, 2, &w);
            if (rc == 0)
                rc = current_rc = filename_set_current(env, vs->dir, mnum);
        } else {
            rc = wal_add_record(w, buf_slice(&rec));
            if (rc == 0)
                rc = wal_writer_sync(w);
        }
        if (rc && new_manifest) {
            if (w)
                wal_writer_close(w);
            /* If CURRENT could not be switched it may still have been renamed into place: keep the
             * (complete) new manifest then rather than risk CURRENT naming a deleted file. */
            if (current_rc == 0)
                env->unlink(env, path);
        }
        pthread_mutex_lock(mu);

        if (rc) {
            kv_log(log, KV_LOG_ERROR,
                   "manifest MANIFEST-%06" PRIu64 ": writing a version edit failed: %s", mnum,
                   kv_strerror(rc));
            if (!new_manifest) {
                /* The log may end in a partial record: start a fresh manifest next time. */
                wal_writer_close(vs->manifest);
                vs->manifest = NULL;
            }
            version_destroy(v);
            goto out;
        }
        if (new_manifest) {
            vs->manifest = w;
            vs->manifest_number = mnum;
        }
        vs->log_number = e->log_number;
        install_version(vs, v);
    }
out:
    buf_free(&snap);
    buf_free(&rec);
    vs->manifest_busy = 0;
    pthread_cond_broadcast(&vs->manifest_cv);
    return rc;
}

version *version_set_current(version_set *vs)
{
    return vs->current;
}

uint64_t version_set_new_file_number(version_set *vs)
{
    return vs->next_file_number++;
}

void version_set_reuse_file_number(version_set *vs, uint64_t number)
{
    if (vs->next_file_number == number + 1)
        vs->next_file_number = number;
}

uint64_t version_set_last_sequence(const version_set *vs)
{
    return vs->last_sequence;
}

void version_set_set_last_sequence(version_set *vs, uint64_t seq)
{
    assert(seq >= vs->last_sequence);
    vs->last_sequence = seq;
}

uint64_t version_set_log_number(const version_set *vs)
{
    return vs->log_number;
}

uint64_t version_set_manifest_number(const version_set *vs)
{
    return vs->manifest_number;
}

void version_set_mark_file_number_used(version_set *vs, uint64_t number)
{
    if (vs->next_file_number <= number)
        vs->next_file_number = number + 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int version_set_live_files(version_set *vs, uint64_t **numbers, size_t *n)
{
    size_t count = vs->n_pending;
    for (version_node *vn = vs->versions.next; vn != &vs->versions; vn = vn->next)
        for (int l = 0; l < KV_MAX_LEVELS; l++)
            count += (size_t)vn->v.nfiles[l];
    uint64_t *a = realloc(*numbers, (*n + count + 1) * sizeof *a);
    if (a == NULL)
        return KV_ENOMEM;
    size_t k = *n;
    for (version_node *vn = vs->versions.next; vn != &vs->versions; vn = vn->next)
        for (int l = 0; l < KV_MAX_LEVELS; l++)
            for (int i = 0; i < vn->v.nfiles[l]; i++)
                a[k++] = vn->v.files[l][i]->number;
    for (size_t i = 0; i < vs->n_pending; i++)
        a[k++] = vs->pending[i];
    qsort(a, k, sizeof *a, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || a[u - 1] != a[i])
            a[u++] = a[i];
    *numbers = a;
    *n = u;
    return 0;
}

int version_set_num_level_files(const version_set *vs, int level)
{
    assert(level >= 0 && level < KV_MAX_LEVELS);
    return vs->current->nfiles[level];
}

static uint64_t level_bytes(const version *v, int level)
{
    uint64_t sum = 0;
    for (int i = 0; i < v->nfiles[level]; i++)
        sum += v->files[level][i]->size;
    return sum;
}

uint64_t version_set_num_level_bytes(const version_set *vs, int level)
{
    assert(level >= 0 && level < KV_MAX_LEVELS);
    return level_bytes(vs->current, level);
}

uint64_t version_set_pending_compaction_bytes(const version_set *vs)
{
    const version *v = vs->current;
    const kv_options *o = vs->ctx.opts;
    uint64_t pending = 0;
    if (o->compaction_style == KV_COMPACTION_TIERED) {
        if (v->compaction_score >= 1)
            pending += level_bytes(v, 0);
    } else if (v->nfiles[0] >= o->l0_compaction_trigger) {
        pending += level_bytes(v, 0);
    }
    for (int l = 1; l < KV_MAX_LEVELS - 1; l++) {
        uint64_t bytes = level_bytes(v, l), limit = version_max_bytes_for_level(o, l);
        if (bytes > limit)
            pending += bytes - limit;
    }
    return pending;
}

int version_set_needs_compaction(const version_set *vs)
{
    if (vs->current->compaction_score >= 1)
        return 1;
    return vs->ctx.opts->compaction_style == KV_COMPACTION_LEVELED &&
           __atomic_load_n(&vs->current->seek_file, __ATOMIC_ACQUIRE) != NULL;
}

const version_set_ctx *version_set_get_ctx(const version_set *vs)
{
    return &vs->ctx;
}

buf *version_set_compact_pointer(version_set *vs, int level)
{
    return &vs->compact_pointer[level];
}

int version_set_add_pending_output(version_set *vs, uint64_t number)
{
    if (vs->n_pending == vs->cap_pending) {
        size_t cap = vs->cap_pending ? vs->cap_pending * 2 : 8;
        uint64_t *a = realloc(vs->pending, cap * sizeof *a);
        if (a == NULL)
            return KV_ENOMEM;
        vs->pending = a;
        vs->cap_pending = cap;
    }
    vs->pending[vs->n_pending++] = number;
    return 0;
}

void version_set_remove_pending_output(version_set *vs, uint64_t number)
{
    for (size_t i = 0; i < vs->n_pending; i++) {
        if (vs->pending[i] == number) {
            vs->pending[i] = vs->pending[--vs->n_pending];
            return;
        }
    }
}
