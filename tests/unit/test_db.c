/* test_db.c - the database object through kv.h: reads and writes, recovery, iterators,
 * snapshots, flush and compaction, locking, sync modes, maintenance calls and kv_check.
 *
 * Randomized tests print their seed (tu_seed); rerun with KV_SEED=N to replay a failure.
 */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkutil.h"
#include "fault_env.h"
#include "kvcore/kv.h"
#include "testutil.h"

/* ---- Fixtures and helpers ------------------------------------------------------------------ */

/* What the store logged in this test. */
static tu_logbuf g_log;

static char *g_dir;

static void setup(void)
{
    tu_logbuf_init(&g_log);
    g_dir = tu_ck_tempdir("test_db");
}

static void teardown(void)
{
    /* g_log stays initialised: a store a failed test left open may still log into it. */
    tu_ck_rmtempdir(&g_dir);
}

/* Options for tests: small memtable so flushes happen, log captured. */
static kv_options small_opts(void)
{
    kv_options o;
    kv_options_init(&o);
    o.memtable_bytes = 256 << 10;
    o.target_file_size = 128 << 10;
    o.level1_bytes = 512 << 10;
    o.block_cache_bytes = 1 << 20;
    o.log_fn = tu_logbuf_fn;
    o.log_ctx = &g_log;
    o.log_level = KV_LOG_INFO;
    return o;
}

static kv_db *open_db(const kv_options *o)
{
    return tu_ck_open(g_dir, o);
}

static void put_s(kv_db *db, const char *k, const char *v)
{
    int rc = kv_put(db, k, strlen(k), v, strlen(v), 0);
    ck_assert_msg(rc == 0, "kv_put(%s): %s", k, kv_strerror(rc));
}

static void del_s(kv_db *db, const char *k)
{
    ck_assert_int_eq(kv_delete(db, k, strlen(k), 0), 0);
}

/* Asserts key k reads as v (NULL: absent) as of snap. */
static void expect_get(kv_db *db, const kv_snapshot *snap, const char *k, const char *v)
{
    void *val = (void *)1;
    size_t vlen = 7;
    int rc = kv_get(db, snap, k, strlen(k), &val, &vlen);
    if (v == NULL) {
        ck_assert_msg(rc == KV_ENOTFOUND, "get(%s): expected absent, got %s", k, kv_strerror(rc));
        ck_assert_ptr_null(val);
        ck_assert_uint_eq(vlen, 0);
        return;
    }
    ck_assert_msg(rc == 0, "get(%s): %s", k, kv_strerror(rc));
    ck_assert_uint_eq(vlen, strlen(v));
    ck_assert_mem_eq(val, v, vlen);
    ck_assert_int_eq(((char *)val)[vlen], '\0');
    kv_free(val);
}

static void fmt_key(char *out, size_t n, uint64_t i)
{
    snprintf(out, n, "key%08llu", (unsigned long long)i);
}

/* Compares a full forward and backward scan of db (as of snap) with model m. */
static void expect_scan_equals(kv_db *db, const kv_snapshot *snap, const tu_model *m)
{
    tu_ck_scan_forward(db, snap, m);
    tu_ck_scan_backward(db, snap, m);
}

static void expect_gets_equal(kv_db *db, const tu_model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        void *v;
        size_t vl;
        int rc = kv_get(db, NULL, m->e[i].key, m->e[i].klen, &v, &vl);
        ck_assert_msg(rc == 0, "get of entry %zu: %s", i, kv_strerror(rc));
        ck_assert_uint_eq(vl, m->e[i].vlen);
        ck_assert_mem_eq(v, m->e[i].val, vl);
        kv_free(v);
    }
}

/* ---- Basic reads and writes ---------------------------------------------------------------- */

START_TEST(test_db_put_get_delete)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    expect_get(db, NULL, "a", NULL);
    put_s(db, "a", "1");
    put_s(db, "b", "2");
    expect_get(db, NULL, "a", "1");
    expect_get(db, NULL, "b", "2");
    del_s(db, "a");
    expect_get(db, NULL, "a", NULL);
    expect_get(db, NULL, "b", "2");
    del_s(db, "never-written"); /* deleting an absent key is fine */
    /* Empty key and empty value are ordinary byte strings. */
    ck_assert_int_eq(kv_put(db, "", 0, "", 0, 0), 0);
    void *v;
    size_t vl;
    ck_assert_int_eq(kv_get(db, NULL, "", 0, &v, &vl), 0);
    ck_assert_uint_eq(vl, 0);
    kv_free(v);
    /* Binary keys with NUL bytes are distinct from their prefixes. */
    ck_assert_int_eq(kv_put(db, "x\0y", 3, "bin", 3, 0), 0);
    expect_get(db, NULL, "x", NULL);
    ck_assert_int_eq(kv_get(db, NULL, "x\0y", 3, &v, &vl), 0);
    ck_assert_mem_eq(v, "bin", 3);
    kv_free(v);
    ck_assert_int_eq(kv_put(NULL, "a", 1, "b", 1, 0), KV_EINVAL);
    ck_assert_int_eq(kv_get(db, NULL, "a", 1, NULL, &vl), KV_EINVAL);
    ck_assert_int_eq(kv_close(db), 0);
}
END_TEST

START_TEST(test_db_overwrite_returns_newest)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    put_s(db, "k", "v1");
    put_s(db, "k", "v2");
    expect_get(db, NULL, "k", "v2");
    ck_assert_int_eq(kv_flush(db), 0);
    put_s(db, "k", "v3");
    expect_get(db, NULL, "k", "v3"); /* memtable shadows the table */
    ck_assert_int_eq(kv_flush(db), 0);
    expect_get(db, NULL, "k", "v3"); /* newer L0 table shadows the older */
    del_s(db, "k");
    expect_get(db, NULL, "k", NULL); /* a tombstone in the memtable hides the tables */
    ck_assert_int_eq(kv_flush(db), 0);
    expect_get(db, NULL, "k", NULL); /* and in a table */
    kv_close(db);
}
END_TEST

START_TEST(test_db_batch_is_atomic_and_later_ops_win)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    put_s(db, "gone", "x");
    kv_batch *b = kv_batch_new();
    ck_assert_int_eq(kv_batch_put(b, "a", 1, "1", 1), 0);
    ck_assert_int_eq(kv_batch_put(b, "b", 1, "2", 1), 0);
    ck_assert_int_eq(kv_batch_delete(b, "gone", 4), 0);
    ck_assert_int_eq(kv_batch_put(b, "a", 1, "3", 1), 0); /* later op on the same key wins */
    ck_assert_int_eq(kv_batch_put(b, "c", 1, "4", 1), 0);
    ck_assert_int_eq(kv_batch_delete(b, "c", 1), 0);
    const kv_snapshot *before = kv_snapshot_new(db);
    ck_assert_int_eq(kv_write(db, b, 0), 0);
    expect_get(db, NULL, "a", "3");
    expect_get(db, NULL, "b", "2");
    expect_get(db, NULL, "c", NULL);
    expect_get(db, NULL, "gone", NULL);
    /* A snapshot sees all of the batch or none of it. */
    expect_get(db, before, "a", NULL);
    expect_get(db, before, "b", NULL);
    expect_get(db, before, "gone", "x");
    kv_snapshot_free(db, before);
    /* The batch is unchanged by kv_write and can be applied again. */
    ck_assert_uint_eq(kv_batch_count(b), 6);
    kv_close(db);
    /* After recovery from the WAL the batch is still whole. */
    db = open_db(&o);
    expect_get(db, NULL, "a", "3");
    expect_get(db, NULL, "b", "2");
    expect_get(db, NULL, "c", NULL);
    expect_get(db, NULL, "gone", NULL);
    kv_batch_free(b);
    kv_close(db);
}
END_TEST

START_TEST(test_db_reopen_keeps_data_without_flush)
{
    kv_options o = small_opts();
    o.memtable_bytes = 16 << 20; /* everything stays in the memtable and the WAL */
    kv_db *db = open_db(&o);
    for (int i = 0; i < 500; i++) {
        char k[32], v[32];
        fmt_key(k, sizeof k, (uint64_t)i);
        snprintf(v, sizeof v, "val%d", i);
        put_s(db, k, v);
    }
    del_s(db, "key00000007");
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_eq(st.flushes, 0);
    uint64_t seq = st.last_sequence;
    ck_assert_uint_eq(seq, 501);
    ck_assert_int_eq(kv_close(db), 0);

    db = open_db(&o);
    for (int i = 0; i < 500; i++) {
        char k[32], v[32];
        fmt_key(k, sizeof k, (uint64_t)i);
        snprintf(v, sizeof v, "val%d", i);
        expect_get(db, NULL, k, i == 7 ? NULL : v);
    }
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_eq(st.last_sequence, seq); /* sequences continue, never go back */
    put_s(db, "after", "reopen");
    kv_close(db);
    db = open_db(&o);
    expect_get(db, NULL, "after", "reopen");
    expect_get(db, NULL, "key00000499", "val499");
    kv_close(db);
}
END_TEST

START_TEST(test_db_reopen_keeps_data_after_flush)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    put_s(db, "flushed", "1");
    put_s(db, "shadowed", "old");
    ck_assert_int_eq(kv_flush(db), 0);
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_eq(st.flushes, 1);
    ck_assert_uint_eq(st.level_files[0], 1);
    ck_assert_uint_eq(st.immutable_memtables, 0);
    put_s(db, "shadowed", "new");
    put_s(db, "unflushed", "2");
    kv_close(db);
    db = open_db(&o);
    expect_get(db, NULL, "flushed", "1");
    expect_get(db, NULL, "shadowed", "new");
    expect_get(db, NULL, "unflushed", "2");
    kv_close(db);
    /* Obsolete WALs are gone: only the live one remains after a clean reopen. */
    ck_assert_int_eq(tu_dir_count_suffix(g_dir, ".log"), 1);
}
END_TEST

START_TEST(test_db_large_values_1mib)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    size_t n = 1 << 20;
    char *big[3];
    tu_rng r;
    tu_rng_init(&r, 42);
    for (int i = 0; i < 3; i++) {
        big[i] = malloc(n);
        tu_rng_fill(&r, big[i], n);
        char k[8];
        snprintf(k, sizeof k, "big%d", i);
        ck_assert_int_eq(kv_put(db, k, strlen(k), big[i], n, 0), 0);
    }
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < 3; i++) {
            char k[8];
            snprintf(k, sizeof k, "big%d", i);
            void *v;
            size_t vl;
            ck_assert_int_eq(kv_get(db, NULL, k, strlen(k), &v, &vl), 0);
            ck_assert_uint_eq(vl, n);
            ck_assert_int_eq(memcmp(v, big[i], n), 0);
            kv_free(v);
        }
        if (pass == 0) {
            ck_assert_int_eq(kv_flush(db), 0);
        } else if (pass == 1) {
            kv_close(db);
            db = open_db(&o);
        }
    }
    kv_iter *it = kv_iter_new(db, NULL);
    kv_iter_seek(it, "big1", 4);
    ck_assert(kv_iter_valid(it));
    size_t vl;
    const void *v = kv_iter_value(it, &vl);
    ck_assert_uint_eq(vl, n);
    ck_assert_int_eq(memcmp(v, big[1], n), 0);
    kv_iter_prev(it); /* reverse direction copies the value: still whole */
    v = kv_iter_value(it, &vl);
    ck_assert_uint_eq(vl, n);
    ck_assert_int_eq(memcmp(v, big[0], n), 0);
    kv_iter_free(it);
    for (int i = 0; i < 3; i++)
        free(big[i]);
    kv_close(db);
}
END_TEST

/* ---- Iterators ----------------------------------------------------------------------------- */

/* Builds a store whose keys are spread over two L0 tables, a compacted level and the
 * memtable, with overwrites and deletions crossing the layers; fills the model. */
static kv_db *layered_store(kv_options *o, tu_model *m)
{
    kv_db *db = open_db(o);
    char k[32], v[32];
    for (int i = 0; i < 200; i += 2) { /* even keys, then compacted to L1+ */
        fmt_key(k, sizeof k, (uint64_t)i);
        snprintf(v, sizeof v, "base%d", i);
        put_s(db, k, v);
        tu_model_put(m, k, strlen(k), v, strlen(v));
    }
    ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    for (int i = 1; i < 200; i += 4) { /* some odd keys in an L0 table */
        fmt_key(k, sizeof k, (uint64_t)i);
        snprintf(v, sizeof v, "l0a%d", i);
        put_s(db, k, v);
        tu_model_put(m, k, strlen(k), v, strlen(v));
    }
    for (int i = 0; i < 200; i += 6) { /* deletions of base keys, in the same table */
        fmt_key(k, sizeof k, (uint64_t)i);
        del_s(db, k);
        tu_model_delete(m, k, strlen(k));
    }
    ck_assert_int_eq(kv_flush(db), 0);
    for (int i = 0; i < 200; i += 5) { /* overwrites (and resurrections) in a second table */
        fmt_key(k, sizeof k, (uint64_t)i);
        snprintf(v, sizeof v, "l0b%d", i);
        put_s(db, k, v);
        tu_model_put(m, k, strlen(k), v, strlen(v));
    }
    ck_assert_int_eq(kv_flush(db), 0);
    for (int i = 0; i < 200; i += 7) { /* the memtable: deletes and overwrites */
        fmt_key(k, sizeof k, (uint64_t)i);
        if (i % 2) {
            del_s(db, k);
            tu_model_delete(m, k, strlen(k));
        } else {
            snprintf(v, sizeof v, "mem%d", i);
            put_s(db, k, v);
            tu_model_put(m, k, strlen(k), v, strlen(v));
        }
    }
    kv_stats st;
    kv_get_stats(db, &st);
    ck_assert_uint_ge(st.level_files[0], 2);
    uint64_t deeper = 0;
    for (int l = 1; l < KV_MAX_LEVELS; l++)
        deeper += st.level_files[l];
    ck_assert_uint_ge(deeper, 1);
    return db;
}

START_TEST(test_db_iterator_scans_memtable_and_tables_both_ways)
{
    kv_options o = small_opts();
    tu_model m;
    tu_model_init(&m);
    kv_db *db = layered_store(&o, &m);
    expect_scan_equals(db, NULL, &m);
    expect_gets_equal(db, &m);
    tu_model_free(&m);
    kv_close(db);
}
END_TEST

START_TEST(test_db_iterator_seek_and_direction_switches_match_model)
{
    kv_options o = small_opts();
    tu_model m;
    tu_model_init(&m);
    kv_db *db = layered_store(&o, &m);
    uint64_t seed = tu_seed("test_db_iterator_seek_and_direction_switches_match_model");
    tu_rng r;
    tu_rng_init(&r, seed);
    kv_iter *it = kv_iter_new(db, NULL);
    ck_assert_ptr_nonnull(it);
    ck_assert(!kv_iter_valid(it)); /* starts unpositioned */
    size_t pos = (size_t)-1;       /* model index of the iterator, -1 when invalid */
    for (int step = 0; step < 3000; step++) {
        char k[32];
        int op = (int)tu_rng_below(&r, 6);
        if (pos == (size_t)-1 && (op == 4 || op == 5))
            op = (int)tu_rng_below(&r, 4);
        fmt_key(k, sizeof k, tu_rng_below(&r, 210));
        if (tu_rng_chance(&r, 1, 8))
            k[strlen(k) - 1] = 'x'; /* a key between stored keys */
        switch (op) {
        case 0:
            kv_iter_seek(it, k, strlen(k));
            pos = tu_model_lower_bound(&m, k, strlen(k));
            if (pos >= m.n)
                pos = (size_t)-1;
            break;
        case 1:
            kv_iter_seek_for_prev(it, k, strlen(k));
            pos = tu_model_floor(&m, k, strlen(k));
            break;
        case 2:
            kv_iter_seek_first(it);
            pos = m.n ? 0 : (size_t)-1;
            break;
        case 3:
            kv_iter_seek_last(it);
            pos = m.n ? m.n - 1 : (size_t)-1;
            break;
        case 4:
            kv_iter_next(it);
            pos = pos + 1 < m.n ? pos + 1 : (size_t)-1;
            break;
        case 5:
            kv_iter_prev(it);
            pos = pos > 0 ? pos - 1 : (size_t)-1;
            break;
        }
        ck_assert_int_eq(kv_iter_status(it), 0);
        if (pos == (size_t)-1) {
            ck_assert_msg(!kv_iter_valid(it), "step %d op %d: iterator should be invalid", step,
                          op);
            continue;
        }
        ck_assert_msg(kv_iter_valid(it), "step %d op %d: iterator should be at %s", step, op,
                      m.e[pos].key);
        size_t kl, vl;
        const char *key = kv_iter_key(it, &kl);
        const char *val = kv_iter_value(it, &vl);
        ck_assert_msg(tu_keycmp(key, kl, m.e[pos].key, m.e[pos].klen) == 0,
                      "step %d op %d: at %.*s, expected %s", step, op, (int)kl, key, m.e[pos].key);
        ck_assert_uint_eq(vl, m.e[pos].vlen);
        ck_assert_mem_eq(val, m.e[pos].val, vl);
    }
    kv_iter_free(it);
    tu_model_free(&m);
    kv_close(db);
}
END_TEST

START_TEST(test_db_iterator_is_a_consistent_view_across_writes_flush_and_compaction)
{
    kv_options o = small_opts();
    tu_model m;
    tu_model_init(&m);
    kv_db *db = layered_store(&o, &m);
    kv_iter *it = kv_iter_new(db, NULL);
    /* Everything after the iterator's creation is invisible to it, even once the tables it
     * reads have been compacted away. */
    for (int i = 0; i < 200; i++) {
        char k[32];
        fmt_key(k, sizeof k, (uint64_t)i);
        if (i % 3)
            put_s(db, k, "later");
        else
            del_s(db, k);
    }
    ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    size_t i = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), i++) {
        size_t kl, vl;
        const void *k = kv_iter_key(it, &kl);
        const void *v = kv_iter_value(it, &vl);
        ck_assert_uint_lt(i, m.n);
        ck_assert_int_eq(tu_keycmp(k, kl, m.e[i].key, m.e[i].klen), 0);
        ck_assert_uint_eq(vl, m.e[i].vlen);
        ck_assert_mem_eq(v, m.e[i].val, vl);
    }
    ck_assert_int_eq(kv_iter_status(it), 0);
    ck_assert_uint_eq(i, m.n);
    kv_iter_free(it);
    /* A new iterator sees the new state. */
    it = kv_iter_new(db, NULL);
    kv_iter_seek_first(it);
    ck_assert(kv_iter_valid(it));
    size_t kl, vl;
    const char *k = kv_iter_key(it, &kl);
    ck_assert_int_eq(tu_keycmp(k, kl, "key00000001", 11), 0);
    const char *v = kv_iter_value(it, &vl);
    ck_assert_int_eq(tu_keycmp(v, vl, "later", 5), 0);
    kv_iter_free(it);
    tu_model_free(&m);
    kv_close(db);
}
END_TEST

START_TEST(test_db_iterator_on_empty_store_is_invalid)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    kv_iter *it = kv_iter_new(db, NULL);
    kv_iter_seek_first(it);
    ck_assert(!kv_iter_valid(it));
    kv_iter_seek_last(it);
    ck_assert(!kv_iter_valid(it));
    kv_iter_seek(it, "a", 1);
    ck_assert(!kv_iter_valid(it));
    kv_iter_seek_for_prev(it, "z", 1);
    ck_assert(!kv_iter_valid(it));
    ck_assert_int_eq(kv_iter_status(it), 0);
    kv_iter_free(it);
    /* Only deletions: still nothing to show. */
    del_s(db, "a");
    put_s(db, "b", "1");
    del_s(db, "b");
    it = kv_iter_new(db, NULL);
    kv_iter_seek_first(it);
    ck_assert(!kv_iter_valid(it));
    kv_iter_seek_last(it);
    ck_assert(!kv_iter_valid(it));
    kv_iter_free(it);
    kv_close(db);
}
END_TEST

/* ---- Snapshots ----------------------------------------------------------------------------- */

START_TEST(test_db_snapshot_isolates_later_writes)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    put_s(db, "a", "1");
    put_s(db, "b", "1");
    const kv_snapshot *s1 = kv_snapshot_new(db);
    ck_assert_ptr_nonnull(s1);
    put_s(db, "a", "2");
    del_s(db, "b");
    put_s(db, "c", "2");
    const kv_snapshot *s2 = kv_snapshot_new(db);
    put_s(db, "a", "3");
    kv_stats st;
    kv_get_stats(db, &st);
    ck_assert_uint_eq(st.live_snapshots, 2);

    for (int round = 0; round < 3; round++) {
        expect_get(db, s1, "a", "1");
        expect_get(db, s1, "b", "1");
        expect_get(db, s1, "c", NULL);
        expect_get(db, s2, "a", "2");
        expect_get(db, s2, "b", NULL);
        expect_get(db, s2, "c", "2");
        expect_get(db, NULL, "a", "3");
        tu_model m1;
        tu_model_init(&m1);
        tu_model_put(&m1, "a", 1, "1", 1);
        tu_model_put(&m1, "b", 1, "1", 1);
        expect_scan_equals(db, s1, &m1);
        tu_model_free(&m1);
        /* Versions a snapshot needs survive flushes and full compactions. */
        if (round == 0)
            ck_assert_int_eq(kv_flush(db), 0);
        else if (round == 1)
            ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    }
    kv_snapshot_free(db, s1);
    kv_snapshot_free(db, s2);
    kv_get_stats(db, &st);
    ck_assert_uint_eq(st.live_snapshots, 0);
    kv_close(db);
}
END_TEST

/* ---- Flush and compaction ------------------------------------------------------------------ */

START_TEST(test_db_compaction_keeps_newest_values_and_drops_garbage)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    char k[32], v[64];
    uint64_t one_round = 0; /* bytes of the table holding one round: every key, one value */
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 300; i++) {
            fmt_key(k, sizeof k, (uint64_t)i);
            snprintf(v, sizeof v, "round%d-value%d-padding-padding", round, i);
            put_s(db, k, v);
        }
        ck_assert_int_eq(kv_flush(db), 0);
        if (round == 0) {
            kv_stats st;
            kv_get_stats(db, &st);
            one_round = st.total_sst_bytes;
        }
    }
    for (int i = 0; i < 300; i += 2) {
        fmt_key(k, sizeof k, (uint64_t)i);
        del_s(db, k);
    }
    kv_stats before;
    kv_get_stats(db, &before);
    ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    kv_stats after;
    kv_get_stats(db, &after);
    ck_assert_uint_eq(after.level_files[0], 0);
    ck_assert_uint_gt(after.compactions, before.compactions);
    ck_assert_uint_gt(after.compaction_bytes_written, 0);
    /* Four rounds of values and the tombstones collapse to one value per live key: half the
     * keys of one round. (Compared with one round's table, not with `before`: the background
     * compaction may already have merged the four rounds before `before` was taken.) */
    ck_assert_uint_gt(one_round, 0);
    ck_assert_uint_lt(after.total_sst_bytes, one_round * 3 / 4);
    for (int i = 0; i < 300; i++) {
        fmt_key(k, sizeof k, (uint64_t)i);
        snprintf(v, sizeof v, "round3-value%d-padding-padding", i);
        expect_get(db, NULL, k, i % 2 ? v : NULL);
    }
    kv_close(db);
    db = open_db(&o);
    for (int i = 1; i < 300; i += 2) {
        fmt_key(k, sizeof k, (uint64_t)i);
        snprintf(v, sizeof v, "round3-value%d-padding-padding", i);
        expect_get(db, NULL, k, v);
    }
    kv_close(db);
    /* Compaction deleted the tables it replaced. */
    ck_assert_int_eq((uint64_t)tu_dir_count_suffix(g_dir, ".sst"),
                     after.level_files[0] + after.level_files[1] + after.level_files[2] +
                         after.level_files[3] + after.level_files[4] + after.level_files[5] +
                         after.level_files[6]);
}
END_TEST

START_TEST(test_db_many_keys_across_flushes_and_compactions_match_model)
{
    kv_options o = small_opts();
    o.memtable_bytes = 160 << 10;
    o.target_file_size = 64 << 10;
    o.level1_bytes = 256 << 10;
    uint64_t seed = tu_seed("test_db_many_keys_across_flushes_and_compactions_match_model");
    tu_rng r;
    tu_rng_init(&r, seed);
    tu_model m;
    tu_model_init(&m);
    kv_db *db = open_db(&o);
    uint64_t flushes = 0, compactions = 0;
    for (int step = 0; step < 20000; step++) {
        char k[32];
        fmt_key(k, sizeof k, tu_rng_below(&r, 3000));
        unsigned c = (unsigned)tu_rng_below(&r, 100);
        if (c < 70) {
            char v[300];
            size_t vl = (size_t)tu_rng_below(&r, sizeof v);
            tu_rng_fill(&r, v, vl);
            ck_assert_int_eq(kv_put(db, k, strlen(k), v, vl, 0), 0);
            tu_model_put(&m, k, strlen(k), v, vl);
        } else if (c < 95) {
            ck_assert_int_eq(kv_delete(db, k, strlen(k), 0), 0);
            tu_model_delete(&m, k, strlen(k));
        } else if (c < 98) {
            const tu_entry *e = tu_model_get(&m, k, strlen(k));
            void *v;
            size_t vl;
            int rc = kv_get(db, NULL, k, strlen(k), &v, &vl);
            if (e) {
                ck_assert_int_eq(rc, 0);
                ck_assert_uint_eq(vl, e->vlen);
                ck_assert_mem_eq(v, e->val, vl);
                kv_free(v);
            } else {
                ck_assert_int_eq(rc, KV_ENOTFOUND);
            }
        } else if (step % 7 == 0) {
            kv_stats st;
            kv_get_stats(db, &st);
            flushes += st.flushes;
            compactions += st.compactions;
            kv_close(db);
            db = open_db(&o);
        } else if (step % 11 == 0) {
            char b[32], e[32];
            fmt_key(b, sizeof b, tu_rng_below(&r, 3000));
            fmt_key(e, sizeof e, tu_rng_below(&r, 3000));
            ck_assert_int_eq(kv_compact_range(db, b, strlen(b), e, strlen(e)), 0);
        }
    }
    kv_stats st;
    kv_get_stats(db, &st);
    flushes += st.flushes;
    compactions += st.compactions;
    ck_assert_uint_ge(flushes, 10); /* the data really crossed many tables */
    ck_assert_uint_ge(compactions, 3);
    expect_scan_equals(db, NULL, &m);
    expect_gets_equal(db, &m);
    kv_close(db);
    db = open_db(&o);
    ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    expect_scan_equals(db, NULL, &m);
    kv_close(db);
    uint64_t problems = 99;
    ck_assert_int_eq(kv_check(g_dir, &o, NULL, NULL, &problems), 0);
    ck_assert_uint_eq(problems, 0);
    tu_model_free(&m);
}
END_TEST

/* ---- Opening ------------------------------------------------------------------------------- */

START_TEST(test_db_second_open_is_busy)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    kv_db *db2 = (kv_db *)1;
    ck_assert_int_eq(kv_open(g_dir, &o, &db2), KV_EBUSY);
    ck_assert_ptr_null(db2);
    kv_close(db);
    db2 = open_db(&o); /* the lock is released by close */
    kv_close(db2);
}
END_TEST

START_TEST(test_db_non_store_directory_is_rejected_untouched)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/notes.txt", g_dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("my precious data\n", f);
    fclose(f);
    char *before = tu_dir_fingerprint(g_dir);
    kv_options o = small_opts();
    kv_db *db = (kv_db *)1;
    ck_assert_int_eq(kv_open(g_dir, &o, &db), KV_EINVAL);
    ck_assert_ptr_null(db);
    ck_assert_int_eq(kv_check(g_dir, &o, NULL, NULL, NULL), KV_EINVAL);
    tu_ck_dir_unchanged(g_dir, before); /* no LOCK, no manifest: nothing written */
    ck_assert(tu_logbuf_contains(&g_log, "not a kvcore store"));
}
END_TEST

START_TEST(test_db_create_if_missing_and_error_if_exists)
{
    kv_options o = small_opts();
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/store", g_dir);
    kv_db *db;
    o.create_if_missing = 0;
    ck_assert_int_eq(kv_open(sub, &o, &db), KV_EINVAL);
    struct stat sb;
    ck_assert_int_ne(stat(sub, &sb), 0); /* not even the directory was made */
    o.create_if_missing = 1;
    ck_assert_int_eq(kv_open(sub, &o, &db), 0);
    kv_close(db);
    o.error_if_exists = 1;
    ck_assert_int_eq(kv_open(sub, &o, &db), KV_EEXIST);
    o.error_if_exists = 0;
    o.create_if_missing = 0;
    ck_assert_int_eq(kv_open(sub, &o, &db), 0);
    kv_close(db);
}
END_TEST

START_TEST(test_db_read_only_open_writes_nothing)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    put_s(db, "t", "table");
    ck_assert_int_eq(kv_flush(db), 0);
    put_s(db, "w", "wal-only");
    kv_close(db);
    char *before = tu_dir_fingerprint(g_dir);
    o.read_only = 1;
    db = open_db(&o);
    expect_get(db, NULL, "t", "table");
    expect_get(db, NULL, "w", "wal-only"); /* replayed into memory, not flushed */
    ck_assert_int_eq(kv_put(db, "x", 1, "y", 1, 0), KV_EINVAL);
    ck_assert_int_eq(kv_flush(db), KV_EINVAL);
    /* A read-only handle takes no lock, so a second one may open too. */
    kv_db *db2 = open_db(&o);
    kv_close(db2);
    kv_close(db);
    tu_ck_dir_unchanged(g_dir, before);
}
END_TEST

START_TEST(test_db_torn_wal_tail_is_dropped_and_logged)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    put_s(db, "a", "1");
    put_s(db, "b", "2");
    kv_close(db);
    char name[256];
    ck_assert(tu_dir_find_suffix(g_dir, ".log", name, sizeof name));
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    /* The start of a record whose payload never made it to disk. */
    FILE *f = fopen(path, "ab");
    ck_assert_ptr_nonnull(f);
    const char junk[9] = {1, 2, 3, 4, 5, 6, 7, 8, 100};
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    tu_logbuf_reset(&g_log);
    db = open_db(&o);
    expect_get(db, NULL, "a", "1");
    expect_get(db, NULL, "b", "2");
    ck_assert_msg(tu_logbuf_contains(&g_log, "dropped 9 bytes"), "log: %s", g_log.text);
    ck_assert(tu_logbuf_contains(&g_log, name));
    put_s(db, "c", "3");
    kv_close(db);
    db = open_db(&o);
    expect_get(db, NULL, "c", "3");
    kv_close(db);
}
END_TEST

/* A power cut can leave the unsynced end of a WAL with a page that was never written (reads as
 * zeros) before pages that were: that is a torn tail, so the store opens (contract 3: no
 * manual repair after a crash), keeping every record before the hole. Regression: recovery
 * took such a log for damage and refused to open after every power cut. */
START_TEST(test_db_wal_hole_left_by_power_cut_is_a_torn_tail)
{
    kv_options o = small_opts();
    o.memtable_bytes = 4 << 20;
    kv_db *db = open_db(&o);
    char k[32], v[64];
    memset(v, 'q', sizeof v);
    for (int i = 0; i < 400; i++) {
        fmt_key(k, sizeof k, (uint64_t)i);
        ck_assert_int_eq(kv_put(db, k, strlen(k), v, sizeof v, 0), 0);
    }
    char name[256], path[4096];
    ck_assert(tu_dir_find_suffix(g_dir, ".log", name, sizeof name));
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    /* The power is cut, not the store closed: kv_close syncs the WAL and records that in a
     * sync marker, after which a zero page is damage. So the log goes back to how it stood
     * before the close (nothing synced). */
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    char *image = malloc((size_t)sb.st_size);
    ck_assert_ptr_nonnull(image);
    FILE *img = fopen(path, "rb");
    ck_assert_ptr_nonnull(img);
    ck_assert_uint_eq(fread(image, 1, (size_t)sb.st_size, img), (size_t)sb.st_size);
    fclose(img);
    kv_close(db);
    img = fopen(path, "wb");
    ck_assert_ptr_nonnull(img);
    ck_assert_uint_eq(fwrite(image, 1, (size_t)sb.st_size, img), (size_t)sb.st_size);
    ck_assert_int_eq(fclose(img), 0);
    free(image);
    ck_assert_int_gt(sb.st_size, 4 * 4096);
    /* The second page from the end was never written back; the last one was. */
    off_t hole = (off_t)((sb.st_size / 4096 - 2) * 4096);
    char zeros[4096];
    memset(zeros, 0, sizeof zeros);
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, zeros, sizeof zeros, hole), (ssize_t)sizeof zeros);
    close(fd);

    tu_logbuf_reset(&g_log);
    ck_assert_int_eq(kv_open(g_dir, &o, &db), 0);
    ck_assert_msg(tu_logbuf_contains(&g_log, "torn tail"), "log: %s", g_log.text);
    /* Every record wholly before the hole survives; the first one is certainly among them. */
    fmt_key(k, sizeof k, 0);
    void *val;
    size_t vlen;
    ck_assert_int_eq(kv_get(db, NULL, k, strlen(k), &val, &vlen), 0);
    ck_assert_uint_eq(vlen, sizeof v);
    kv_free(val);
    uint64_t kept = 0;
    for (int i = 0; i < 400; i++) {
        fmt_key(k, sizeof k, (uint64_t)i);
        int rc = kv_get(db, NULL, k, strlen(k), &val, &vlen);
        if (rc == 0) {
            ck_assert_msg((uint64_t)i == kept, "record %d survives after a lost one", i);
            ck_assert(memcmp(val, v, sizeof v) == 0);
            kv_free(val);
            kept++;
        }
    }
    ck_assert_uint_lt(kept, 400);
    kv_close(db);
}
END_TEST

/* A bad record with more bytes after it is damage, not a torn write: paranoid_checks refuses
 * to open (changing nothing); without it the rest of that WAL is dropped and logged. */
START_TEST(test_db_damaged_wal_record_is_corruption_not_a_torn_tail)
{
    kv_options o = small_opts();
    o.memtable_bytes = 4 << 20;
    kv_db *db = open_db(&o);
    char k[32], v[64];
    memset(v, 'q', sizeof v);
    for (int i = 0; i < 100; i++) {
        fmt_key(k, sizeof k, (uint64_t)i);
        ck_assert_int_eq(kv_put(db, k, strlen(k), v, sizeof v, 0), 0);
    }
    kv_close(db);
    char name[256], path[4096];
    ck_assert(tu_dir_find_suffix(g_dir, ".log", name, sizeof name));
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    fault_env *fe = fault_env_new(2);
    ck_assert_int_eq(fault_env_flip_bit(fe, path, (uint64_t)sb.st_size / 2, 1), 0);
    fault_env_free(fe);

    char *before = tu_dir_fingerprint(g_dir);
    tu_logbuf_reset(&g_log);
    uint64_t problems = 0;
    ck_assert_int_eq(kv_check(g_dir, &o, NULL, NULL, &problems), KV_ECORRUPT);
    ck_assert_uint_eq(problems, 1);
    ck_assert_int_eq(kv_open(g_dir, &o, &db), KV_ECORRUPT);
    ck_assert(tu_logbuf_contains(&g_log, "damaged, not torn"));
    tu_ck_dir_unchanged(g_dir, before);

    o.paranoid_checks = 0;
    db = open_db(&o);
    expect_get(db, NULL, "key00000000",
               "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq");
    expect_get(db, NULL, "key00000099", NULL); /* after the damage: dropped */
    kv_close(db);
}
END_TEST

START_TEST(test_db_corrupt_table_is_reported_never_wrong_data)
{
    kv_options o = small_opts();
    o.compression = 0;
    o.block_cache_bytes = 0;
    kv_db *db = open_db(&o);
    char k[32], v[64];
    for (int i = 0; i < 400; i++) {
        fmt_key(k, sizeof k, (uint64_t)i);
        snprintf(v, sizeof v, "value-%d-xxxxxxxxxxxxxxxxxxxxxx", i);
        put_s(db, k, v);
    }
    ck_assert_int_eq(kv_flush(db), 0);
    kv_close(db);
    uint64_t problems = 7;
    ck_assert_int_eq(kv_check(g_dir, &o, NULL, NULL, &problems), 0);
    ck_assert_uint_eq(problems, 0);

    char name[256], path[4096];
    ck_assert(tu_dir_find_suffix(g_dir, ".sst", name, sizeof name));
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    fault_env *fe = fault_env_new(1);
    ck_assert_int_eq(fault_env_flip_bit(fe, path, 100, 3), 0); /* inside the first data block */
    fault_env_free(fe);

    tu_logbuf_reset(&g_log);
    ck_assert_int_eq(kv_check(g_dir, &o, NULL, NULL, &problems), KV_ECORRUPT);
    ck_assert_uint_ge(problems, 1);
    ck_assert(tu_logbuf_contains(&g_log, name));

    db = open_db(&o);
    int bad = 0;
    for (int i = 0; i < 400; i++) {
        fmt_key(k, sizeof k, (uint64_t)i);
        snprintf(v, sizeof v, "value-%d-xxxxxxxxxxxxxxxxxxxxxx", i);
        void *val;
        size_t vl;
        int rc = kv_get(db, NULL, k, strlen(k), &val, &vl);
        if (rc == 0) {
            ck_assert_uint_eq(vl, strlen(v));
            ck_assert_mem_eq(val, v, vl); /* any value returned is the right one */
            kv_free(val);
        } else {
            ck_assert_int_eq(rc, KV_ECORRUPT);
            bad++;
        }
    }
    ck_assert_int_gt(bad, 0);
    kv_iter *it = kv_iter_new(db, NULL);
    int n = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it))
        n++;
    ck_assert_int_lt(n, 400);
    ck_assert_int_eq(kv_iter_status(it), KV_ECORRUPT);
    kv_iter_free(it);
    kv_close(db);
}
END_TEST

/* ---- Sync modes and statistics ------------------------------------------------------------- */

static uint64_t wal_syncs(kv_db *db)
{
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    return st.wal_syncs;
}

START_TEST(test_db_sync_modes_sync_when_they_say)
{
    kv_options o = small_opts();
    o.sync_mode = KV_SYNC_ON_REQUEST;
    kv_db *db = open_db(&o);
    uint64_t s0 = wal_syncs(db);
    ck_assert_int_eq(kv_put(db, "a", 1, "1", 1, 0), 0);
    ck_assert_uint_eq(wal_syncs(db), s0);
    ck_assert_int_eq(kv_put(db, "a", 1, "2", 1, KV_WRITE_SYNC), 0);
    ck_assert_uint_eq(wal_syncs(db), s0 + 1);
    ck_assert_int_eq(kv_put(db, "a", 1, "3", 1, 0), 0);
    ck_assert_int_eq(kv_sync(db), 0);
    ck_assert_uint_eq(wal_syncs(db), s0 + 2);
    ck_assert_int_eq(kv_sync(db), 0); /* nothing new to sync */
    ck_assert_uint_eq(wal_syncs(db), s0 + 2);
    kv_close(db);

    o.sync_mode = KV_SYNC_ALWAYS;
    db = open_db(&o);
    s0 = wal_syncs(db);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(kv_put(db, "b", 1, "1", 1, 0), 0);
    ck_assert_uint_eq(wal_syncs(db), s0 + 3);
    kv_close(db);

    o.sync_mode = KV_SYNC_NEVER;
    db = open_db(&o);
    s0 = wal_syncs(db);
    ck_assert_int_eq(kv_put(db, "c", 1, "1", 1, KV_WRITE_SYNC), 0);
    ck_assert_uint_eq(wal_syncs(db), s0);
    ck_assert_int_eq(kv_sync(db), 0); /* kv_sync still syncs */
    ck_assert_uint_eq(wal_syncs(db), s0 + 1);
    kv_close(db);

    o.sync_mode = KV_SYNC_ON_REQUEST;
    db = open_db(&o);
    expect_get(db, NULL, "a", "3");
    expect_get(db, NULL, "b", "1");
    expect_get(db, NULL, "c", "1");
    kv_close(db);
}
END_TEST

START_TEST(test_db_synced_write_survives_power_loss)
{
    fault_env *fe = fault_env_new(7);
    kv_options o = small_opts();
    o.env = fault_env_env(fe);
    kv_db *db = open_db(&o);
    put_s(db, "unsynced-before", "1");
    ck_assert_int_eq(kv_put(db, "synced", 6, "yes", 3, KV_WRITE_SYNC), 0);
    kv_close(db);
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    db = open_db(&o);
    expect_get(db, NULL, "synced", "yes");
    expect_get(db, NULL, "unsynced-before", "1"); /* written before the sync: covered by it */
    kv_close(db);
    fault_env_free(fe);
}
END_TEST

/* Regression: a WAL created after an append failure was never dir-synced, so at power loss
 * it vanished together with the synced writes in it. */
START_TEST(test_db_synced_write_in_a_new_wal_survives_power_loss)
{
    fault_env *fe = fault_env_new(9);
    kv_options o = small_opts();
    o.env = fault_env_env(fe);
    o.log_level = KV_LOG_ERROR;
    kv_db *db = open_db(&o);
    ck_assert_int_eq(kv_put(db, "k", 1, "old", 3, KV_WRITE_SYNC), 0);
    fault_env_fail_op(fe, FAULT_OP_APPEND, 1, 1, KV_ENOSPC);
    ck_assert_int_eq(kv_put(db, "lost", 4, "x", 1, KV_WRITE_SYNC), KV_ENOSPC);
    /* This write goes to a new WAL. */
    ck_assert_int_eq(kv_put(db, "k", 1, "new", 3, KV_WRITE_SYNC), 0);
    ck_assert_int_ge(tu_dir_count_suffix(g_dir, ".log"), 2);
    fault_env_halt(fe);
    kv_close(db);
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    db = open_db(&o);
    expect_get(db, NULL, "k", "new");
    expect_get(db, NULL, "lost", NULL); /* never acknowledged, never appended */
    kv_close(db);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_db_stats_count_what_happened)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    put_s(db, "abc", "defg");
    del_s(db, "xy");
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_eq(st.user_bytes_written, 3 + 4 + 2);
    ck_assert_uint_gt(st.wal_bytes_written, st.user_bytes_written);
    ck_assert_uint_eq(st.last_sequence, 2);
    ck_assert_uint_gt(st.memtable_bytes, 0);
    ck_assert_uint_eq(st.flushes, 0);
    ck_assert_int_eq(kv_flush(db), 0);
    expect_get(db, NULL, "abc", "defg");
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_eq(st.flushes, 1);
    ck_assert_uint_gt(st.flush_bytes_written, 0);
    ck_assert_uint_eq(st.level_files[0], 1);
    ck_assert_uint_eq(st.level_bytes[0], st.total_sst_bytes);
    ck_assert_uint_eq(st.flush_bytes_written, st.total_sst_bytes);
    ck_assert_uint_ge(st.table_cache_open_files, 1);
    ck_assert_uint_eq(st.background_errors, 0);
    kv_close(db);
}
END_TEST

/* ---- Concurrency (group commit) ------------------------------------------------------------ */

struct writer_arg {
    kv_db *db;
    int id;
};

static void *writer_thread(void *p)
{
    struct writer_arg *a = p;
    for (int i = 0; i < 2000; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "t%d-%05d", a->id, i);
        snprintf(v, sizeof v, "v%d", i);
        int flags = (i % 50 == 0) ? KV_WRITE_SYNC : 0;
        if (kv_put(a->db, k, strlen(k), v, strlen(v), flags) != 0)
            return (void *)1;
    }
    return NULL;
}

START_TEST(test_db_concurrent_writers_are_all_applied)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    pthread_t th[4];
    struct writer_arg args[4];
    for (int t = 0; t < 4; t++) {
        args[t].db = db;
        args[t].id = t;
        ck_assert_int_eq(pthread_create(&th[t], NULL, writer_thread, &args[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        void *ret;
        pthread_join(th[t], &ret);
        ck_assert_ptr_null(ret);
    }
    kv_stats st;
    kv_get_stats(db, &st);
    ck_assert_uint_eq(st.last_sequence, 8000);
    for (int pass = 0; pass < 2; pass++) {
        for (int t = 0; t < 4; t++)
            for (int i = 0; i < 2000; i += 37) {
                char k[32], v[32];
                snprintf(k, sizeof k, "t%d-%05d", t, i);
                snprintf(v, sizeof v, "v%d", i);
                expect_get(db, NULL, k, v);
            }
        kv_close(db);
        db = open_db(&o);
    }
    kv_close(db);
}
END_TEST

/* ---- Full disk ----------------------------------------------------------------------------- */

START_TEST(test_db_enospc_fails_writes_and_recovers_when_space_returns)
{
    fault_env *fe = fault_env_new(3);
    kv_options o = small_opts();
    o.env = fault_env_env(fe);
    o.log_level = KV_LOG_ERROR;
    kv_db *db = open_db(&o);
    tu_model m;
    tu_model_init(&m);
    fault_env_set_space_limit(fe, 200 << 10);
    int nospc = 0, i;
    char k[32], v[200];
    memset(v, 'v', sizeof v);
    for (i = 0; i < 5000 && nospc < 20; i++) {
        fmt_key(k, sizeof k, (uint64_t)i);
        int rc = kv_put(db, k, strlen(k), v, sizeof v, 0);
        if (rc == 0)
            tu_model_put(&m, k, strlen(k), v, sizeof v);
        else {
            ck_assert_msg(rc == KV_ENOSPC, "put: %s", kv_strerror(rc));
            nospc++;
        }
    }
    ck_assert_int_gt(nospc, 0);
    expect_gets_equal(db, &m); /* nothing acknowledged was lost */
    fault_env_set_space_limit(fe, UINT64_MAX);
    for (int j = 0; j < 600; j++, i++) {
        fmt_key(k, sizeof k, (uint64_t)i);
        ck_assert_int_eq(kv_put(db, k, strlen(k), v, sizeof v, 0), 0);
        tu_model_put(&m, k, strlen(k), v, sizeof v);
    }
    ck_assert_int_eq(kv_flush(db), 0);
    expect_scan_equals(db, NULL, &m);
    kv_close(db);
    db = open_db(&o);
    expect_scan_equals(db, NULL, &m);
    kv_close(db);
    tu_model_free(&m);
    fault_env_free(fe);
}
END_TEST

/* ---- Maintenance --------------------------------------------------------------------------- */

static void count_progress(void *ctx, uint64_t done, uint64_t total)
{
    uint64_t *last = ctx;
    ck_assert_uint_ge(done, last[0]); /* monotonic */
    ck_assert_uint_le(done, total);
    last[0] = done;
    last[1] = total;
    last[2]++;
}

START_TEST(test_db_check_reports_progress_on_a_sound_store)
{
    kv_options o = small_opts();
    kv_db *db = open_db(&o);
    for (int i = 0; i < 3000; i++) {
        char k[32];
        fmt_key(k, sizeof k, (uint64_t)i);
        put_s(db, k, "some value that takes a little room");
    }
    ck_assert_int_eq(kv_flush(db), 0);
    put_s(db, "in-wal", "1");
    kv_close(db);
    uint64_t prog[3] = {0, 0, 0}, problems = 5;
    ck_assert_int_eq(kv_check(g_dir, &o, count_progress, prog, &problems), 0);
    ck_assert_uint_eq(problems, 0);
    ck_assert_uint_gt(prog[2], 1);
    ck_assert_uint_eq(prog[0], prog[1]); /* ends at 100% */
}
END_TEST

START_TEST(test_db_destroy_removes_the_store)
{
    kv_options o = small_opts();
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/store", g_dir);
    kv_db *db;
    ck_assert_int_eq(kv_open(sub, &o, &db), 0);
    put_s(db, "a", "1");
    ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(kv_destroy(sub, &o), KV_EBUSY); /* open: locked */
    kv_close(db);
    ck_assert_int_eq(kv_destroy(sub, &o), 0);
    struct stat sb;
    ck_assert_int_ne(stat(sub, &sb), 0);
    ck_assert_int_eq(kv_destroy(sub, &o), 0); /* already gone */
}
END_TEST

static Suite *db_suite(void)
{
    Suite *s = suite_create("db");
    TCase *tc = tcase_create("db");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_db_put_get_delete);
    tcase_add_test(tc, test_db_overwrite_returns_newest);
    tcase_add_test(tc, test_db_batch_is_atomic_and_later_ops_win);
    tcase_add_test(tc, test_db_reopen_keeps_data_without_flush);
    tcase_add_test(tc, test_db_reopen_keeps_data_after_flush);
    tcase_add_test(tc, test_db_large_values_1mib);
    tcase_add_test(tc, test_db_iterator_scans_memtable_and_tables_both_ways);
    tcase_add_test(tc, test_db_iterator_seek_and_direction_switches_match_model);
    tcase_add_test(tc, test_db_iterator_is_a_consistent_view_across_writes_flush_and_compaction);
    tcase_add_test(tc, test_db_iterator_on_empty_store_is_invalid);
    tcase_add_test(tc, test_db_snapshot_isolates_later_writes);
    tcase_add_test(tc, test_db_compaction_keeps_newest_values_and_drops_garbage);
    tcase_add_test(tc, test_db_many_keys_across_flushes_and_compactions_match_model);
    tcase_add_test(tc, test_db_second_open_is_busy);
    tcase_add_test(tc, test_db_non_store_directory_is_rejected_untouched);
    tcase_add_test(tc, test_db_create_if_missing_and_error_if_exists);
    tcase_add_test(tc, test_db_read_only_open_writes_nothing);
    tcase_add_test(tc, test_db_torn_wal_tail_is_dropped_and_logged);
    tcase_add_test(tc, test_db_damaged_wal_record_is_corruption_not_a_torn_tail);
    tcase_add_test(tc, test_db_wal_hole_left_by_power_cut_is_a_torn_tail);
    tcase_add_test(tc, test_db_corrupt_table_is_reported_never_wrong_data);
    tcase_add_test(tc, test_db_sync_modes_sync_when_they_say);
    tcase_add_test(tc, test_db_synced_write_survives_power_loss);
    tcase_add_test(tc, test_db_synced_write_in_a_new_wal_survives_power_loss);
    tcase_add_test(tc, test_db_stats_count_what_happened);
    tcase_add_test(tc, test_db_concurrent_writers_are_all_applied);
    tcase_add_test(tc, test_db_enospc_fails_writes_and_recovers_when_space_returns);
    tcase_add_test(tc, test_db_check_reports_progress_on_a_sound_store);
    tcase_add_test(tc, test_db_destroy_removes_the_store);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(db_suite());
}
