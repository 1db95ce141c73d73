/* test_sst.c - unit tests of table/sst: round trips, seek/prev/next, filter gets, corruption. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkutil.h"
#include "kvcore/kv.h"
#include "mem_file.h"
#include "table/bloom.h"
#include "table/sst.h"
#include "table/sst_format.h"
#include "testutil.h"
#include "util/cache.h"
#include "util/checksum.h"
#include "util/ikey.h"

/* The table's bytes live in a buf (tu_memfile) the test can inspect and damage. */

/* ---- Test data ------------------------------------------------------------------------------ */

typedef struct entry {
    buf ikey;
    buf value;
} entry;

typedef struct table {
    entry *e;
    size_t n;
} table;

/* n entries: user keys "key%08u" (step 2, so odd numbers are absent), seq = i + 1, values that
 * compress well (repeated text) or not (random bytes). Every 10th user key has 3 versions. */
static void table_make(table *t, size_t n, int compressible, uint64_t seed)
{
    tu_rng rng;
    tu_rng_init(&rng, seed);
    t->e = calloc(n, sizeof(entry));
    t->n = n;
    size_t i = 0;
    for (unsigned u = 0; i < n; u++) {
        char uk[32];
        int ukl = snprintf(uk, sizeof(uk), "key%08u", u * 2);
        int versions = (u % 10 == 0) ? 3 : 1;
        for (int v = 0; v < versions && i < n; v++, i++) {
            entry *e = &t->e[i];
            buf_init(&e->ikey);
            buf_init(&e->value);
            uint64_t seq = 1000000 - (uint64_t)v * 7 - u;
            int type = (v == 1) ? IKEY_TYPE_DELETION : IKEY_TYPE_VALUE;
            ck_assert_int_eq(ikey_append(&e->ikey, slice_make(uk, (size_t)ukl), seq, type), 0);
            size_t vl = tu_rng_below(&rng, 100);
            if (compressible) {
                for (size_t j = 0; j < vl; j++)
                    buf_append(&e->value, &"the quick brown fox "[j % 20], 1);
            } else {
                buf_reserve(&e->value, vl);
                tu_rng_fill(&rng, e->value.data, vl);
                e->value.len = vl;
            }
        }
    }
}

static void table_free(table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        buf_free(&t->e[i].ikey);
        buf_free(&t->e[i].value);
    }
    free(t->e);
}

static sst_options default_opts(int compression)
{
    sst_options o = {.block_size = 4096,
                     .restart_interval = 16,
                     .compression = compression,
                     .compression_level = 3,
                     .bloom_bits_per_key = 10};
    return o;
}

static void write_table(const table *t, const sst_options *o, buf *file)
{
    buf_init(file);
    tu_memfile *m = tu_memfile_open(file);
    sst_builder *b;
    ck_assert_int_eq(sst_builder_new(&m->base, o, &b), 0);
    for (size_t i = 0; i < t->n; i++)
        ck_assert_int_eq(sst_builder_add(b, buf_slice(&t->e[i].ikey), buf_slice(&t->e[i].value)),
                         0);
    ck_assert_int_eq(sst_builder_finish(b), 0);
    ck_assert_uint_eq(sst_builder_num_entries(b), t->n);
    ck_assert_uint_eq(sst_builder_file_size(b), file->len);
    sst_builder_free(b);
    env_close(&m->base);
}

static int log_errors;
static char last_log[512];
static void capture_log(void *ctx, int level, const char *msg)
{
    if (level == KV_LOG_ERROR) {
        log_errors++;
        snprintf(last_log, sizeof(last_log), "%s", msg);
    }
}
static const kv_logger test_log = {capture_log, NULL, KV_LOG_DEBUG};

static int open_table(buf *file, size_t size, cache *c, int verify, sst_reader **r)
{
    sst_read_options ro = {
        .block_cache = c, .log = &test_log, .verify_checksums = verify, .fill_cache = 1};
    return sst_reader_open(&tu_memfile_open(file)->base, size, "000042.sst", &ro, r);
}

static void assert_entry(slice k, slice v, const table *t, size_t i)
{
    ck_assert_msg(slice_equal(k, buf_slice(&t->e[i].ikey)), "wrong key at %zu", i);
    ck_assert_msg(slice_equal(v, buf_slice(&t->e[i].value)), "wrong value at %zu", i);
}

/* Index of the first entry >= k. */
static size_t lower_bound(const table *t, slice k)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ikey_compare(buf_slice(&t->e[mid].ikey), k) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

typedef struct got {
    int calls;
    buf k, v;
} got;

static void on_found(void *ctx, slice k, slice v)
{
    got *g = ctx;
    g->calls++;
    buf_clear(&g->k);
    buf_clear(&g->v);
    buf_append(&g->k, k.data, k.size);
    buf_append(&g->v, v.data, v.size);
}

/* ---- Tests ---------------------------------------------------------------------------------- */

static void round_trip(int compression)
{
    table t;
    table_make(&t, 100000, compression, 11);
    sst_options o = default_opts(compression);
    buf file;
    write_table(&t, &o, &file);
    sst_reader *r;
    ck_assert_int_eq(open_table(&file, file.len, NULL, 1, &r), 0);
    iter *it = sst_reader_iter_new(r, 1);
    size_t i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        assert_entry(iter_key(it), iter_value(it), &t, i++);
    ck_assert_int_eq(iter_status(it), 0);
    ck_assert_uint_eq(i, t.n);
    for (iter_seek_last(it); iter_valid(it); iter_prev(it))
        assert_entry(iter_key(it), iter_value(it), &t, --i);
    ck_assert_int_eq(iter_status(it), 0);
    ck_assert_uint_eq(i, 0);
    iter_free(it);
    uint64_t problems = 99;
    ck_assert_int_eq(sst_reader_verify(r, NULL, NULL, &problems), 0);
    ck_assert_uint_eq(problems, 0);
    sst_reader_close(r);
    fprintf(stderr, "sst: 100000 entries, compression %d: %zu bytes\n", compression, file.len);
    buf_free(&file);
    table_free(&t);
}

START_TEST(test_sst_round_trip_of_100k_entries_without_compression)
{
    round_trip(0);
}
END_TEST

START_TEST(test_sst_round_trip_of_100k_entries_with_compression)
{
    round_trip(1);
}
END_TEST

START_TEST(test_sst_compression_shrinks_compressible_tables_only)
{
    table t;
    table_make(&t, 5000, 1, 12);
    sst_options raw = default_opts(0), z = default_opts(1);
    buf a, b;
    write_table(&t, &raw, &a);
    write_table(&t, &z, &b);
    ck_assert_msg(b.len < a.len / 2, "zstd %zu vs raw %zu", b.len, a.len);
    buf_free(&a);
    buf_free(&b);
    table_free(&t);
    /* Random values do not compress by 1/8: blocks are stored raw, same size as uncompressed
     * (keys compress a little, so allow a small difference). */
    table_make(&t, 5000, 0, 13);
    write_table(&t, &raw, &a);
    write_table(&t, &z, &b);
    ck_assert_uint_le(b.len, a.len);
    ck_assert_uint_ge(b.len, a.len - a.len / 8);
    buf_free(&a);
    buf_free(&b);
    table_free(&t);
}
END_TEST

START_TEST(test_sst_seek_prev_next_match_a_sorted_array)
{
    table t;
    table_make(&t, 20000, 1, 14);
    sst_options o = default_opts(1);
    o.block_size = 512; /* many blocks, so block boundaries are crossed often */
    buf file;
    write_table(&t, &o, &file);
    sst_reader *r;
    ck_assert_int_eq(open_table(&file, file.len, NULL, 1, &r), 0);
    iter *it = sst_reader_iter_new(r, 1);
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("sst seek"));
    size_t pos = t.n; /* t.n: invalid */
    buf target;
    buf_init(&target);
    for (int step = 0; step < 20000; step++) {
        int op = (int)tu_rng_below(&rng, 6);
        if (op == 0) {
            /* Seek to a random user key (present or absent) at a random sequence. */
            char uk[32];
            int ukl = snprintf(uk, sizeof(uk), "key%08u", (unsigned)tu_rng_below(&rng, 9000));
            buf_clear(&target);
            ikey_append(&target, slice_make(uk, (size_t)ukl), tu_rng_below(&rng, 1000001),
                        IKEY_TYPE_FOR_SEEK);
            iter_seek(it, buf_slice(&target));
            pos = lower_bound(&t, buf_slice(&target));
        } else if (op == 1) {
            iter_seek_first(it);
            pos = 0;
        } else if (op == 2) {
            iter_seek_last(it);
            pos = t.n - 1;
        } else if (op <= 4 && pos < t.n) {
            iter_next(it);
            pos = pos + 1;
        } else if (pos < t.n) {
            iter_prev(it);
            pos = pos == 0 ? t.n : pos - 1;
        }
        ck_assert_int_eq(iter_status(it), 0);
        if (pos >= t.n) {
            ck_assert(!iter_valid(it));
            pos = t.n;
        } else {
            assert_entry(iter_key(it), iter_value(it), &t, pos);
        }
    }
    buf_free(&target);
    iter_free(it);
    sst_reader_close(r);
    buf_free(&file);
    table_free(&t);
}
END_TEST

START_TEST(test_sst_get_finds_newest_visible_version_and_filter_skips_absent_keys)
{
    table t;
    table_make(&t, 20000, 1, 15);
    sst_options o = default_opts(1);
    buf file;
    write_table(&t, &o, &file);
    cache *c = cache_new(16 << 20);
    sst_reader *r;
    ck_assert_int_eq(open_table(&file, file.len, c, 1, &r), 0);
    got g = {0};
    buf_init(&g.k);
    buf_init(&g.v);
    /* Every entry, looked up by its own internal key, is found exactly. */
    for (size_t i = 0; i < t.n; i++) {
        g.calls = 0;
        ck_assert_int_eq(sst_reader_get(r, buf_slice(&t.e[i].ikey), &g, on_found), 0);
        ck_assert_int_eq(g.calls, 1);
        assert_entry(buf_slice(&g.k), buf_slice(&g.v), &t, i);
    }
    uint64_t reads_before, useful_before;
    sst_reader_counters(r, &reads_before, &useful_before);
    ck_assert_uint_eq(useful_before, 0);
    /* Looking everything up again hits the cache only. */
    for (size_t i = 0; i < t.n; i += 3)
        ck_assert_int_eq(sst_reader_get(r, buf_slice(&t.e[i].ikey), &g, on_found), 0);
    uint64_t reads_after;
    sst_reader_counters(r, &reads_after, NULL);
    ck_assert_uint_eq(reads_after, reads_before);
    /* A seek sequence between versions finds the newest version at or below it. */
    buf k;
    buf_init(&k);
    ikey_parsed p0;
    ck_assert(ikey_parse(buf_slice(&t.e[0].ikey), &p0));
    ikey_append(&k, p0.user_key, p0.sequence - 1, IKEY_TYPE_FOR_SEEK);
    g.calls = 0;
    ck_assert_int_eq(sst_reader_get(r, buf_slice(&k), &g, on_found), 0);
    ck_assert_int_eq(g.calls, 1);
    assert_entry(buf_slice(&g.k), buf_slice(&g.v), &t, 1);
    /* Absent user keys (odd numbers): the filter answers most; a call, if any, is for
     * another user key. */
    size_t absent = 0;
    for (unsigned u = 1; u < 20000; u += 2, absent++) {
        char uk[32];
        int ukl = snprintf(uk, sizeof(uk), "key%08u", u);
        buf_clear(&k);
        ikey_append(&k, slice_make(uk, (size_t)ukl), IKEY_MAX_SEQUENCE, IKEY_TYPE_FOR_SEEK);
        g.calls = 0;
        ck_assert_int_eq(sst_reader_get(r, buf_slice(&k), &g, on_found), 0);
        if (g.calls) {
            ikey_parsed pg;
            ck_assert(ikey_parse(buf_slice(&g.k), &pg));
            ck_assert(!slice_equal(pg.user_key, slice_make(uk, (size_t)ukl)));
            ck_assert_int_gt(ikey_compare(buf_slice(&g.k), buf_slice(&k)), 0);
        }
    }
    uint64_t useful;
    sst_reader_counters(r, NULL, &useful);
    fprintf(stderr, "sst: filter answered %llu of %zu absent-key gets\n",
            (unsigned long long)useful, absent);
    ck_assert_uint_ge(useful, absent * 97 / 100);
    /* A key past the last entry: nothing found. */
    buf_clear(&k);
    ikey_append(&k, slice_from_str("zzz"), 1, IKEY_TYPE_VALUE);
    g.calls = 0;
    ck_assert_int_eq(sst_reader_get(r, buf_slice(&k), &g, on_found), 0);
    ck_assert_int_eq(g.calls, 0);
    buf_free(&k);
    buf_free(&g.k);
    buf_free(&g.v);
    sst_reader_close(r);
    cache_free(c);
    buf_free(&file);
    table_free(&t);
}
END_TEST

START_TEST(test_sst_get_without_filter_moves_past_a_block_that_ends_before_the_key)
{
    /* Without a filter, a key that falls between a block's last key and its separator must
     * still yield the first entry >= it (the next block's first). */
    table t;
    table_make(&t, 3000, 0, 16);
    sst_options o = default_opts(0);
    o.bloom_bits_per_key = 0;
    o.block_size = 256;
    buf file;
    write_table(&t, &o, &file);
    sst_reader *r;
    ck_assert_int_eq(open_table(&file, file.len, NULL, 1, &r), 0);
    got g = {0};
    buf_init(&g.k);
    buf_init(&g.v);
    buf k;
    buf_init(&k);
    for (unsigned u = 1; u < 2 * 3000; u += 2) {
        char uk[32];
        int ukl = snprintf(uk, sizeof(uk), "key%08u", u);
        buf_clear(&k);
        ikey_append(&k, slice_make(uk, (size_t)ukl), 5, IKEY_TYPE_FOR_SEEK);
        g.calls = 0;
        ck_assert_int_eq(sst_reader_get(r, buf_slice(&k), &g, on_found), 0);
        size_t want = lower_bound(&t, buf_slice(&k));
        if (want == t.n) {
            ck_assert_int_eq(g.calls, 0);
        } else {
            ck_assert_int_eq(g.calls, 1);
            assert_entry(buf_slice(&g.k), buf_slice(&g.v), &t, want);
        }
    }
    buf_free(&k);
    buf_free(&g.k);
    buf_free(&g.v);
    sst_reader_close(r);
    buf_free(&file);
    table_free(&t);
}
END_TEST

START_TEST(test_sst_empty_table_opens_and_holds_nothing)
{
    table t = {0};
    sst_options o = default_opts(1);
    buf file;
    write_table(&t, &o, &file);
    sst_reader *r;
    ck_assert_int_eq(open_table(&file, file.len, NULL, 1, &r), 0);
    iter *it = sst_reader_iter_new(r, 1);
    iter_seek_first(it);
    ck_assert(!iter_valid(it));
    iter_seek_last(it);
    ck_assert(!iter_valid(it));
    ck_assert_int_eq(iter_status(it), 0);
    iter_free(it);
    got g = {0};
    buf k;
    buf_init(&k);
    ikey_append(&k, slice_from_str("a"), 1, IKEY_TYPE_VALUE);
    ck_assert_int_eq(sst_reader_get(r, buf_slice(&k), &g, on_found), 0);
    ck_assert_int_eq(g.calls, 0);
    ck_assert_int_eq(sst_reader_verify(r, NULL, NULL, NULL), 0);
    buf_free(&k);
    sst_reader_close(r);
    buf_free(&file);
}
END_TEST

START_TEST(test_sst_builder_rejects_keys_out_of_order_and_short_keys)
{
    buf file;
    buf_init(&file);
    tu_memfile *m = tu_memfile_open(&file);
    sst_options o = default_opts(0);
    sst_builder *b;
    ck_assert_int_eq(sst_builder_new(&m->base, &o, &b), 0);
    buf k1, k2;
    buf_init(&k1);
    buf_init(&k2);
    ikey_append(&k1, slice_from_str("b"), 5, IKEY_TYPE_VALUE);
    ikey_append(&k2, slice_from_str("a"), 5, IKEY_TYPE_VALUE);
    ck_assert_int_eq(sst_builder_add(b, buf_slice(&k1), slice_from_str("v")), 0);
    ck_assert_int_eq(sst_builder_add(b, buf_slice(&k1), slice_from_str("v")), KV_EINVAL);
    ck_assert_int_eq(sst_builder_add(b, buf_slice(&k2), slice_from_str("v")), KV_EINVAL);
    ck_assert_int_eq(sst_builder_add(b, slice_from_str("short"), slice_from_str("v")), KV_EINVAL);
    ck_assert_uint_eq(sst_builder_num_entries(b), 1);
    ck_assert_int_eq(sst_builder_finish(b), 0);
    ck_assert_int_eq(sst_builder_add(b, buf_slice(&k1), slice_from_str("v")), KV_EINVAL);
    sst_builder_free(b);
    env_close(&m->base);
    buf_free(&k1);
    buf_free(&k2);
    buf_free(&file);
}
END_TEST

START_TEST(test_sst_large_values_span_blocks_and_round_trip)
{
    table t;
    table_make(&t, 50, 0, 17);
    for (size_t i = 0; i < t.n; i += 5) {
        buf_clear(&t.e[i].value);
        buf_reserve(&t.e[i].value, 100000);
        for (size_t j = 0; j < 100000; j++)
            t.e[i].value.data[j] = (char)(j * 7 + i);
        t.e[i].value.len = 100000;
    }
    sst_options o = default_opts(1);
    buf file;
    write_table(&t, &o, &file);
    sst_reader *r;
    ck_assert_int_eq(open_table(&file, file.len, NULL, 1, &r), 0);
    iter *it = sst_reader_iter_new(r, 0);
    size_t i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        assert_entry(iter_key(it), iter_value(it), &t, i++);
    ck_assert_uint_eq(i, t.n);
    iter_free(it);
    sst_reader_close(r);
    buf_free(&file);
    table_free(&t);
}
END_TEST

START_TEST(test_sst_approximate_offset_grows_with_the_key)
{
    table t;
    table_make(&t, 5000, 0, 18);
    sst_options o = default_opts(0);
    buf file;
    write_table(&t, &o, &file);
    sst_reader *r;
    ck_assert_int_eq(open_table(&file, file.len, NULL, 1, &r), 0);
    uint64_t prev = 0;
    for (size_t i = 0; i < t.n; i += 100) {
        uint64_t off = sst_reader_approximate_offset(r, buf_slice(&t.e[i].ikey));
        ck_assert_uint_ge(off, prev);
        ck_assert_uint_lt(off, file.len);
        prev = off;
    }
    ck_assert_uint_gt(prev, file.len / 2);
    buf k;
    buf_init(&k);
    ikey_append(&k, slice_from_str("zzz"), 1, IKEY_TYPE_VALUE);
    ck_assert_uint_gt(sst_reader_approximate_offset(r, buf_slice(&k)), prev);
    buf_free(&k);
    sst_reader_close(r);
    buf_free(&file);
    table_free(&t);
}
END_TEST

/* Opens the (damaged) table and reads everything through an iterator and through gets; every
 * answer must be the original data or an error. Returns 1 if some error was reported. */
static int read_all_or_error(buf *file, size_t size, const table *t, int verify)
{
    sst_reader *r;
    int rc = open_table(file, size, NULL, verify, &r);
    if (rc != 0) {
        ck_assert_int_eq(rc, KV_ECORRUPT);
        return 1;
    }
    int errors = 0;
    iter *it = sst_reader_iter_new(r, 1);
    size_t i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
        ck_assert_uint_lt(i, t->n);
        assert_entry(iter_key(it), iter_value(it), t, i++);
    }
    if (iter_status(it) != 0) {
        ck_assert_int_eq(iter_status(it), KV_ECORRUPT);
        errors = 1;
    } else {
        ck_assert_uint_eq(i, t->n);
    }
    iter_free(it);
    got g = {0};
    buf_init(&g.k);
    buf_init(&g.v);
    for (size_t j = 0; j < t->n; j++) {
        g.calls = 0;
        rc = sst_reader_get(r, buf_slice(&t->e[j].ikey), &g, on_found);
        if (rc != 0) {
            ck_assert_int_eq(rc, KV_ECORRUPT);
            errors = 1;
        } else {
            ck_assert_int_eq(g.calls, 1);
            assert_entry(buf_slice(&g.k), buf_slice(&g.v), t, j);
        }
    }
    buf_free(&g.k);
    buf_free(&g.v);
    sst_reader_close(r);
    return errors;
}

START_TEST(test_sst_every_single_byte_corruption_is_detected_or_harmless)
{
    static const int comp[] = {0, 1};
    for (int ci = 0; ci < 2; ci++) {
        table t;
        table_make(&t, 60, comp[ci], 19);
        sst_options o = default_opts(comp[ci]);
        o.block_size = 200;
        o.restart_interval = 4;
        buf file;
        write_table(&t, &o, &file);
        ck_assert_int_eq(read_all_or_error(&file, file.len, &t, 1), 0);
        size_t undetected = 0;
        for (size_t i = 0; i < file.len; i++) {
            char orig = file.data[i];
            file.data[i] = (char)(orig ^ 0x5a);
            log_errors = 0;
            if (read_all_or_error(&file, file.len, &t, 1))
                ck_assert_msg(log_errors > 0, "error without a log line, byte %zu", i);
            else
                undetected++;
            file.data[i] = orig;
        }
        /* Every byte is covered by a checksum: nothing may go unnoticed. */
        ck_assert_uint_eq(undetected, 0);
        fprintf(stderr, "sst: %zu-byte table (compression %d): every byte flip detected\n",
                file.len, comp[ci]);
        buf_free(&file);
        table_free(&t);
    }
}
END_TEST

START_TEST(test_sst_every_truncation_is_corrupt)
{
    table t;
    table_make(&t, 60, 1, 20);
    sst_options o = default_opts(1);
    o.block_size = 200;
    buf file;
    write_table(&t, &o, &file);
    size_t full = file.len;
    for (size_t len = 0; len < full; len++) {
        file.len = len;
        sst_reader *r;
        log_errors = 0;
        ck_assert_int_eq(open_table(&file, len, NULL, 1, &r), KV_ECORRUPT);
        ck_assert_int_eq(log_errors, 1);
        ck_assert_ptr_null(r);
    }
    file.len = full;
    buf_free(&file);
    table_free(&t);
}
END_TEST

START_TEST(test_sst_corrupt_data_block_is_reported_with_file_and_offset)
{
    table t;
    table_make(&t, 2000, 0, 21);
    sst_options o = default_opts(0);
    buf file;
    write_table(&t, &o, &file);
    /* Damage the second data block: open succeeds (data blocks are read lazily); reads that
     * need it fail, verify counts it. */
    sst_reader *r;
    ck_assert_int_eq(open_table(&file, file.len, NULL, 1, &r), 0);
    iter *it = sst_reader_iter_new(r, 1);
    iter_seek_first(it);
    size_t n0 = 0;
    uint64_t second = 0;
    /* Find where block 1 starts: the approximate offset of an entry beyond block 0. */
    for (; iter_valid(it); iter_next(it), n0++) {
        second = sst_reader_approximate_offset(r, iter_key(it));
        if (second > 0)
            break;
    }
    iter_free(it);
    sst_reader_close(r);
    ck_assert_uint_gt(second, 0);
    file.data[second + 10] ^= 1;
    ck_assert_int_eq(open_table(&file, file.len, NULL, 1, &r), 0);
    log_errors = 0;
    it = sst_reader_iter_new(r, 1);
    size_t n = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        assert_entry(iter_key(it), iter_value(it), &t, n++);
    ck_assert_int_eq(iter_status(it), KV_ECORRUPT);
    ck_assert_uint_eq(n, n0);
    iter_free(it);
    char want[128];
    snprintf(want, sizeof(want), "sst 000042.sst: data block at offset %llu: checksum mismatch",
             (unsigned long long)second);
    ck_assert_msg(strcmp(last_log, want) == 0, "log was: %s", last_log);
    uint64_t problems = 0;
    ck_assert_int_eq(sst_reader_verify(r, NULL, NULL, &problems), KV_ECORRUPT);
    ck_assert_uint_eq(problems, 1);
    sst_reader_close(r);
    buf_free(&file);
    table_free(&t);
}
END_TEST

START_TEST(test_sst_newer_format_version_is_refused)
{
    table t;
    table_make(&t, 10, 0, 22);
    sst_options o = default_opts(0);
    buf file;
    write_table(&t, &o, &file);
    char *footer = file.data + file.len - SST_FOOTER_SIZE;
    ck_assert(coding_get_fixed64(footer + SST_FOOTER_MAGIC) == SST_MAGIC);
    ck_assert_uint_eq(coding_get_fixed32(footer + SST_FOOTER_VERSION), SST_FORMAT_VERSION);
    coding_put_fixed32(footer + SST_FOOTER_VERSION, SST_FORMAT_VERSION + 1);
    coding_put_fixed64(footer + SST_FOOTER_CHECKSUM, checksum_value(footer, SST_FOOTER_CHECKSUM));
    sst_reader *r;
    ck_assert_int_eq(open_table(&file, file.len, NULL, 1, &r), KV_EVERSION);
    buf_free(&file);
    table_free(&t);
}
END_TEST

START_TEST(test_sst_read_errors_are_returned_not_hidden)
{
    table t;
    table_make(&t, 1000, 0, 23);
    sst_options o = default_opts(0);
    buf file;
    write_table(&t, &o, &file);
    tu_memfile *m = tu_memfile_open(&file);
    sst_read_options ro = {.log = &test_log, .verify_checksums = 1, .fill_cache = 1};
    sst_reader *r;
    ck_assert_int_eq(sst_reader_open(&m->base, file.len, "x.sst", &ro, &r), 0);
    m->fail_reads = 1;
    got g = {0};
    ck_assert_int_eq(sst_reader_get(r, buf_slice(&t.e[500].ikey), &g, on_found), KV_EIO);
    ck_assert_int_eq(g.calls, 0);
    iter *it = sst_reader_iter_new(r, 1);
    iter_seek_first(it);
    ck_assert(!iter_valid(it));
    ck_assert_int_eq(iter_status(it), KV_EIO);
    m->fail_reads = 0;
    iter_seek_first(it); /* a later seek retries */
    ck_assert(iter_valid(it));
    iter_free(it);
    sst_reader_close(r);
    buf_free(&file);
    table_free(&t);
}
END_TEST

START_TEST(test_sst_write_errors_are_returned_and_sticky)
{
    table t;
    table_make(&t, 5000, 0, 24);
    sst_options o = default_opts(0);
    buf file;
    buf_init(&file);
    tu_memfile *m = tu_memfile_open(&file);
    m->fail_appends_after = 100000;
    sst_builder *b;
    ck_assert_int_eq(sst_builder_new(&m->base, &o, &b), 0);
    int rc = 0;
    size_t i;
    for (i = 0; i < t.n && rc == 0; i++)
        rc = sst_builder_add(b, buf_slice(&t.e[i].ikey), buf_slice(&t.e[i].value));
    ck_assert_int_eq(rc, KV_ENOSPC);
    ck_assert_uint_lt(i, t.n);
    ck_assert_int_eq(sst_builder_add(b, buf_slice(&t.e[0].ikey), buf_slice(&t.e[0].value)),
                     KV_ENOSPC); /* sticky: the first error, not KV_EINVAL for the order */
    ck_assert_int_eq(sst_builder_finish(b), KV_ENOSPC);
    sst_builder_free(b);
    env_close(&m->base);
    buf_free(&file);
    table_free(&t);
}
END_TEST

typedef struct reader_thread {
    sst_reader *r;
    const table *t;
    uint64_t seed;
    int errors;
} reader_thread;

static void *reader_main(void *arg)
{
    reader_thread *rt = arg;
    tu_rng rng;
    tu_rng_init(&rng, rt->seed);
    got g = {0};
    buf_init(&g.k);
    buf_init(&g.v);
    for (int n = 0; n < 20000; n++) {
        size_t i = tu_rng_below(&rng, rt->t->n);
        g.calls = 0;
        if (sst_reader_get(rt->r, buf_slice(&rt->t->e[i].ikey), &g, on_found) != 0 ||
            g.calls != 1 || !slice_equal(buf_slice(&g.k), buf_slice(&rt->t->e[i].ikey)) ||
            !slice_equal(buf_slice(&g.v), buf_slice(&rt->t->e[i].value)))
            rt->errors++;
    }
    iter *it = sst_reader_iter_new(rt->r, 1);
    size_t j = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it), j++)
        if (j >= rt->t->n || !slice_equal(iter_key(it), buf_slice(&rt->t->e[j].ikey)))
            rt->errors++;
    if (j != rt->t->n || iter_status(it) != 0)
        rt->errors++;
    iter_free(it);
    buf_free(&g.k);
    buf_free(&g.v);
    return NULL;
}

START_TEST(test_sst_concurrent_readers_share_one_table_and_cache)
{
    table t;
    table_make(&t, 20000, 1, 25);
    sst_options o = default_opts(1);
    buf file;
    write_table(&t, &o, &file);
    cache *c = cache_new(64 << 10); /* small: threads insert and evict all the time */
    sst_reader *r;
    ck_assert_int_eq(open_table(&file, file.len, c, 1, &r), 0);
    pthread_t th[4];
    reader_thread rt[4];
    for (int i = 0; i < 4; i++) {
        rt[i] = (reader_thread){r, &t, (uint64_t)i + 1, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader_main, &rt[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(rt[i].errors, 0);
    }
    sst_reader_close(r);
    cache_free(c);
    buf_free(&file);
    table_free(&t);
}
END_TEST

static Suite *sst_suite(void)
{
    Suite *s = suite_create("sst");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_sst_round_trip_of_100k_entries_without_compression);
    tcase_add_test(tc, test_sst_round_trip_of_100k_entries_with_compression);
    tcase_add_test(tc, test_sst_compression_shrinks_compressible_tables_only);
    tcase_add_test(tc, test_sst_seek_prev_next_match_a_sorted_array);
    tcase_add_test(tc, test_sst_get_finds_newest_visible_version_and_filter_skips_absent_keys);
    tcase_add_test(tc, test_sst_get_without_filter_moves_past_a_block_that_ends_before_the_key);
    tcase_add_test(tc, test_sst_empty_table_opens_and_holds_nothing);
    tcase_add_test(tc, test_sst_builder_rejects_keys_out_of_order_and_short_keys);
    tcase_add_test(tc, test_sst_large_values_span_blocks_and_round_trip);
    tcase_add_test(tc, test_sst_approximate_offset_grows_with_the_key);
    tcase_add_test(tc, test_sst_every_single_byte_corruption_is_detected_or_harmless);
    tcase_add_test(tc, test_sst_every_truncation_is_corrupt);
    tcase_add_test(tc, test_sst_corrupt_data_block_is_reported_with_file_and_offset);
    tcase_add_test(tc, test_sst_newer_format_version_is_refused);
    tcase_add_test(tc, test_sst_read_errors_are_returned_not_hidden);
    tcase_add_test(tc, test_sst_write_errors_are_returned_and_sticky);
    tcase_add_test(tc, test_sst_concurrent_readers_share_one_table_and_cache);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(sst_suite());
}
