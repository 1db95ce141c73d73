/* salvage_rebuild.c - step 4 of kv_salvage: the good entries of every table and log, merged by
 * internal key into new tables, a fresh manifest, and CURRENT switched to it (see salvage.c and
 * kvcore/FORMAT.md, "Salvage").
 *
 * Sources are one iterator per table over the blocks sst_scan proves intact (table/sst.h) and
 * one over a memtable holding every good WAL record; merger_new orders them by internal key, so
 * sequence numbers alone decide which version of a key is newest. The output keeps that
 * version of each key (a deletion drops the key: nothing older remains below) and is cut into
 * tables of about target_file_size (in the last level; with size-tiered compaction one run in
 * level 0) by an iterator that table_build reads one window at a time.
 *
 * In a value-log store that iterator also checks each pointer it keeps (value_check): into a
 * segment with a damaged record it reads the record in full and writes the value inline if it
 * verifies; elsewhere it checks that the record lies inside its segment. A key whose newest
 * value fails is dropped and reported as a one-key lost range. WAL records are checked as
 * recovery checks them (vlog_verify_batch).
 */
#include "db/batch.h"
#include "db/filename.h"
#include "db/memtable.h"
#include "db/salvage.h"
#include "db/table_cache.h"
#include "db/version.h"
#include "db/wal.h"
#include "kvcore/kv.h"
#include "table/block.h"
#include "table/sst.h"
#include "util/env.h"
#include "util/ikey.h"
#include "util/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SALVAGE_KEY_LOG 300 /* key bytes a lost range's log line shows */

/* ---- Step 4: the rebuild's sources ---------------------------------------------------------- */

/* The entries of one table's good blocks, in order, as an iterator for the merger. Supports
 * seek_first once, then next; anything else makes it fail with KV_EINVAL. */
struct table_src {
    iter base;
    struct salvage *s;
    struct salvage_table *t;
    sst_scan *scan;
    struct block_iter bi;
    int have_bi, started, valid, status;
};

static void src_loss(void *ctx, const sst_scan_loss *l)
{
    struct table_src *ts = ctx;
    struct salvage_table *t = ts->t;
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
    if (salvage_lost_add(ts->s, lop, lo_inc, hip, has_filter ? &filter : NULL) != 0 &&
        ts->status == 0)
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
static int src_open(struct salvage *s, struct salvage_table *t, iter **out)
{
    char name[FILENAME_MAX_LEN];
    snprintf(name, sizeof name, "%06" PRIu64 ".sst", t->number);
    char *p = salvage_join(s->dir, name, "");
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
        return salvage_lost_add(s, known ? &lo : NULL, 1, known ? &hi : NULL, NULL);
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

/* Whether a WAL record dropped for a bad value pointer is a torn tail or damage. */
struct tail_check {
    uint64_t newest;    /* the newest segment */
    int newest_damaged; /* it holds a damaged record */
    int damage;         /* result: a pointer goes elsewhere, or into damage */
};

static int bad_ptr_put(void *ctx, uint64_t seq, slice key, slice value)
{
    struct tail_check *tc = ctx;
    uint64_t seg, off;
    uint32_t size, vlen;
    (void)seq;
    (void)key;
    if (!vlog_parse_pointer(value, &seg, &off, &size, &vlen))
        tc->damage |= value.size > 0 && (unsigned char)value.data[0] != VLOG_TAG_INLINE;
    else if (seg != tc->newest || tc->newest_damaged)
        tc->damage = 1;
    return 0;
}

static int lost_key_put(void *ctx, uint64_t seq, slice key, slice value)
{
    (void)seq;
    (void)value;
    return salvage_lost_add(ctx, &key, 1, &key, NULL);
}

static int lost_key_del(void *ctx, uint64_t seq, slice key)
{
    (void)seq;
    return salvage_lost_add(ctx, &key, 1, &key, NULL);
}

/* The newest value-log segment in the directory (0: none). */
static uint64_t newest_segment(const struct salvage *s)
{
    enum filename_type type;
    uint64_t number, newest = 0;
    for (size_t i = 0; i < s->n; i++)
        if (filename_parse(s->names[i], &type, &number) && type == FILE_TYPE_VLOG &&
            number > newest)
            newest = number;
    return newest;
}

/* A WAL record whose value pointers do not all lead to sound records (vlog_verify_batch) is
 * dropped with the rest of its log, as recovery drops it. It is a crash's torn tail if every
 * pointer goes into the newest segment, that segment has no damaged record and no sync marker
 * of the log covers the record: then, as for recovery, nothing is reported. Otherwise (damage)
 * every key of the dropped records is reported lost. Returns 0 or an error. */
/* The offset up to which log `name`'s sync markers prove it durable (wal.h), read in a pass
 * of its own; 0 if it has none or cannot be read. */
static uint64_t log_synced_offset(struct salvage *s, const char *name)
{
    char *p = salvage_join(s->dir, name, "");
    env_file *f;
    wal_reader *r;
    slice rec;
    uint64_t synced = 0;
    if (p && s->env->open_readable(s->env, p, &f) == 0 && wal_reader_new(f, &r) == 0) {
        while (wal_read_record(r, &rec) == 1)
            ;
        synced = wal_reader_synced_offset(r);
        wal_reader_free(r);
    }
    free(p);
    return synced;
}

static int drop_bad_pointer_tail(struct salvage *s, const char *name, wal_reader *r, slice rec)
{
    struct tail_check tc = {newest_segment(s), 0, 0};
    tc.newest_damaged = salvage_vlog_damaged(s, tc.newest);
    batch_handler check = {bad_ptr_put, NULL, &tc};
    if (batch_iterate(rec, &check) != 0)
        tc.damage = 1; /* malformed: not a crash's doing */
    /* A segment cut short looks like a crash's torn tail, but not when the WAL's markers prove
     * the record synced: the segment is synced before every WAL sync (recovery's rule). */
    if (!tc.damage && log_synced_offset(s, name) >= wal_reader_good_offset(r))
        tc.damage = 1;
    if (!s->dry)
        kv_log(&s->log, tc.damage ? KV_LOG_ERROR : KV_LOG_WARN,
               "salvage: %s: record ending at offset %" PRIu64
               " points at a value-log record that is %s; the records from it on are dropped%s",
               name, wal_reader_good_offset(r), tc.damage ? "damaged" : "not there (torn tail)",
               tc.damage ? " and their keys reported lost" : "");
    if (!tc.damage)
        return 0;
    batch_handler lost = {lost_key_put, lost_key_del, s};
    int rc = batch_iterate(rec, &lost);
    while (rc != KV_ENOMEM && wal_read_record(r, &rec) == 1)
        rc = batch_iterate(rec, &lost); /* a malformed batch: the keys before the fault */
    return rc == KV_ENOMEM ? rc : 0;
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
        char *p = salvage_join(s->dir, s->names[i], "");
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
            int vrc = s->vl ? vlog_verify_batch(s->vl, rec) : 0;
            if (vrc == KV_ECORRUPT) {
                rc = drop_bad_pointer_tail(s, s->names[i], r, rec);
                break;
            }
            if (vrc != 0) {
                rc = vrc;
                break;
            }
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
    struct salvage *s;
    int started, status;
    uint64_t limit, window;
    uint64_t max_seq, keys;
    buf user;    /* user key of the entry being left behind */
    buf val;     /* the value written inline, when inl */
    buf scratch; /* vlog_resolve's */
    int inl;
    uint64_t size_seg, size_bytes; /* the last segment whose size was looked up (0: none) */
    int size_missing;
};

enum { VALUE_KEEP, VALUE_INLINE, VALUE_LOST };

/* A value-log store: whether the pointer `enc` of user key `u` can stay (VALUE_KEEP), was read
 * and verified into o->val because its segment holds damage (VALUE_INLINE), or leads nowhere
 * sound (VALUE_LOST: logged). Returns one of those or an error. */
static int value_check(struct out_iter *o, slice u, slice enc)
{
    struct salvage *s = o->s;
    uint64_t seg, off;
    uint32_t size, vlen;
    const char *why = NULL;
    if (enc.size > 0 && (unsigned char)enc.data[0] == VLOG_TAG_INLINE)
        return VALUE_KEEP;
    if (!vlog_parse_pointer(enc, &seg, &off, &size, &vlen)) {
        seg = off = 0;
        why = "a malformed stored value";
    } else if (salvage_vlog_damaged(s, seg)) {
        slice out;
        int rc = vlog_resolve(s->vl, u, enc, &o->scratch, &out);
        if (rc == KV_ECORRUPT)
            why = "a damaged record";
        else if (rc != 0)
            return rc;
        else {
            buf_clear(&o->val);
            char tag = (char)VLOG_TAG_INLINE;
            if (buf_append(&o->val, &tag, 1) != 0 || buf_append(&o->val, out.data, out.size) != 0)
                return KV_ENOMEM;
            return VALUE_INLINE;
        }
    } else {
        if (seg != o->size_seg) {
            char name[FILENAME_MAX_LEN];
            snprintf(name, sizeof name, "%06" PRIu64 ".vlog", seg);
            char *p = salvage_join(s->dir, name, "");
            int rc = p ? s->env->file_size(s->env, p, &o->size_bytes) : KV_ENOMEM;
            free(p);
            if (rc != 0 && rc != KV_ENOTFOUND)
                return rc;
            o->size_seg = seg;
            o->size_missing = rc == KV_ENOTFOUND;
        }
        if (o->size_missing)
            why = "a missing segment";
        else if (off > o->size_bytes || size > o->size_bytes - off)
            why = "a record beyond the end of its segment";
        else
            return VALUE_KEEP;
    }
    char hex[2 * 64 + 2];
    size_t n = u.size < 64 ? u.size : 64, h = 0;
    for (size_t j = 0; j < n; j++, h += 2)
        snprintf(hex + h, 3, "%02x", (unsigned char)u.data[j]);
    if (n < u.size)
        hex[h++] = '+';
    hex[h] = '\0';
    if (!s->dry)
        kv_log(&s->log, KV_LOG_ERROR,
               "salvage: key %s lost: its value points at %s (%06" PRIu64 ".vlog offset %" PRIu64
               ", %" PRIu32 " bytes)",
               hex, why, seg, off, size);
    s->st.entries_lost++;
    s->st.bytes_lost += size;
    int rc = salvage_lost_add(s, &u, 1, &u, NULL);
    return rc != 0 ? rc : VALUE_LOST;
}

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

/* Moves to the newest entry of the next user key that is not deleted (nor lost). */
static void out_settle(struct out_iter *o)
{
    o->inl = 0;
    while (iter_valid(o->m) && o->status == 0) {
        ikey_parsed pk;
        if (!ikey_parse(iter_key(o->m), &pk))
            return; /* cannot happen: sources are checked; the writer refuses it */
        if (pk.type != IKEY_TYPE_DELETION) {
            int v = o->s->vl ? value_check(o, pk.user_key, iter_value(o->m)) : VALUE_KEEP;
            if (v < 0)
                o->status = v;
            o->inl = v == VALUE_INLINE;
            if (v != VALUE_LOST)
                return;
        }
        buf_clear(&o->user);
        if (buf_append(&o->user, pk.user_key.data, pk.user_key.size) != 0)
            return;
        out_skip_user(o, buf_slice(&o->user));
    }
}

static int out_valid(const iter *it)
{
    const struct out_iter *o = (const struct out_iter *)it;
    return o->status == 0 && o->window < o->limit && iter_valid(o->m);
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
    o->window += k.size + (o->inl ? o->val.len : iter_value(o->m).size);
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
    const struct out_iter *o = (const struct out_iter *)it;
    return o->inl ? buf_slice(&o->val) : iter_value(o->m);
}

static int out_status(const iter *it)
{
    const struct out_iter *o = (const struct out_iter *)it;
    return o->status ? o->status : iter_status(o->m);
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

/* Where the rebuilt tables go: one sorted run in level 0 for size-tiered compaction (which
 * keeps every run there), else the last level (non-overlapping tables). */
static int output_level(const struct salvage *s)
{
    return s->opts->compaction_style == KV_COMPACTION_TIERED ? 0 : KV_MAX_LEVELS - 1;
}

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
        rc = version_edit_add_file_meta(&e, output_level(s), &outs[i]);
    if (rc == 0)
        rc = version_edit_encode(&e, &enc);
    snprintf(name, sizeof name, "MANIFEST-%06" PRIu64, number);
    char *p = rc == 0 ? salvage_join(s->dir, name, "") : NULL;
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
    o.s = s;
    o.limit = s->opts->target_file_size ? s->opts->target_file_size : (2u << 20);
    if (s->opts->compaction_style == KV_COMPACTION_TIERED)
        o.limit = UINT64_MAX; /* one run: tiered runs are never cut */
    buf_init(&o.user);
    buf_init(&o.val);
    buf_init(&o.scratch);
    *outs = NULL;
    *nout = 0;
    if (s->dry) {
        o.limit = UINT64_MAX;
        out_seek_first(&o.base);
        while (out_valid(&o.base))
            out_next(&o.base);
    }
    for (; !s->dry;) {
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
        rc = out_status(&o.base);
    s->st.keys_written = o.keys;
    *max_seq = o.max_seq;
    buf_free(&o.user);
    buf_free(&o.val);
    buf_free(&o.scratch);
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
        char *p = salvage_join(s->dir, name, "");
        if (p)
            s->env->unlink(s->env, p);
        free(p);
    }
}

/* Logs lost range i as "(lo, hi]" in hex ("[" for an inclusive lo; "-" for no bound). */
static void log_lost_range(struct salvage *s, size_t i)
{
    const struct salvage_range *l = &s->lost[i];
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

/* After the switch: nothing points into a damaged segment any more; each is renamed to
 * <name>.damaged (so kv_check no longer counts it) and the directory synced. */
static int set_aside_segments(struct salvage *s)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < s->nvbad; i++) {
        char name[FILENAME_MAX_LEN];
        snprintf(name, sizeof name, "%06" PRIu64 ".vlog", s->vbad[i]);
        char *from = salvage_join(s->dir, name, ""), *to = salvage_join(s->dir, name, ".damaged");
        rc = from && to ? s->env->rename(s->env, from, to) : KV_ENOMEM;
        if (rc == KV_ENOTFOUND)
            rc = 0; /* a missing segment was never counted; a rerun finds it moved */
        else if (rc == 0)
            s->st.files_fixed++;
        else
            kv_log(&s->log, KV_LOG_ERROR, "salvage: cannot rename %s to %s.damaged: %s", name, name,
                   kv_strerror(rc));
        free(from);
        free(to);
    }
    if (rc == 0 && s->nvbad)
        rc = s->env->sync_dir(s->env, s->dir);
    return rc;
}

/* Opens the value log read-only for the rebuild's pointer checks (s->vl; none unless the
 * store is in value-log mode). */
static int open_vlog(struct salvage *s)
{
    if (!s->vlog_mode)
        return 0;
    kv_options o = *s->opts;
    vlog_db_ops ops;
    memset(&ops, 0, sizeof ops);
    o.read_only = 1;
    int rc = vlog_open(s->dir, s->env, &s->log, &o, 0, &ops, &s->vl);
    if (rc != 0)
        kv_log(&s->log, KV_LOG_ERROR, "salvage: cannot open the value log: %s", kv_strerror(rc));
    return rc;
}

/* The rest of the rebuild once its tables are written: the manifest, the originals of what
 * is replaced, the switch of CURRENT (or, on failure, the removal of what was written). */
static int finish_rebuild(struct salvage *s, int rc, file_meta *outs, size_t nout, uint64_t next,
                          uint64_t max_seq)
{
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
        char *p = salvage_join(s->dir, name, "");
        uint64_t size;
        if (!p) {
            rc = KV_ENOMEM;
            break;
        }
        if (s->env->file_size(s->env, p, &size) == 0) {
            rc = salvage_keep_original(s, name);
            s->st.files_fixed++;
        }
        free(p);
    }
    if (rc == 0 && s->manifest[0] && !s->manifest_ok) {
        rc = salvage_keep_original(s, s->manifest);
        s->st.files_fixed++;
    }
    if (rc == 0)
        rc = salvage_lost_persist(s);
    int switching = rc == 0;
    if (rc == 0)
        rc = filename_set_current(s->env, s->dir, manifest_number);
    if (rc != 0 && switching) {
        /* CURRENT may or may not name the new manifest now (the rename may have happened
         * before the failure): keep every file. Whichever manifest it names is whole; the
         * other one's tables are unreferenced and the next open deletes them. */
        kv_log(&s->log, KV_LOG_ERROR,
               "salvage: switching CURRENT to MANIFEST-%06" PRIu64 " failed (%s); run the "
               "salvage again",
               manifest_number, kv_strerror(rc));
    } else if (rc != 0) {
        char name[FILENAME_MAX_LEN];
        snprintf(name, sizeof name, "MANIFEST-%06" PRIu64, manifest_number);
        char *p = salvage_join(s->dir, name, "");
        if (p)
            s->env->unlink(s->env, p);
        free(p);
        outs_unlink(s, outs, nout);
        kv_log(&s->log, KV_LOG_ERROR, "salvage: rebuild failed (%s); the store is unchanged",
               kv_strerror(rc));
    } else {
        rc = set_aside_segments(s);
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
    return rc;
}

int salvage_rebuild(struct salvage *s)
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
    if (rc == 0)
        rc = open_vlog(s);
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
    if (!s->dry)
        rc = finish_rebuild(s, rc, outs, nout, next, max_seq);
    outs_free(outs, nout);
    vlog_close(s->vl);
    s->vl = NULL;
    if (mem)
        memtable_unref(mem);
    table_cache_free(tc);
    free(srcs);
    return rc;
}
