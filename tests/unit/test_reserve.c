/* test_reserve.c - recovery from a full disk: the space reserve and low-space mode (reserve.h),
 * driven through kv.h over tests/support/fault_env.c, whose space limit plays the full disk.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkutil.h"
#include "db/reserve.h"
#include "fault_env.h"
#include "kvcore/kv.h"
#include "testutil.h"

#define VAL_LEN 1000
#define NKEYS 400
#define AUTO_RESERVE ((64 + 2 * 128) << 10) /* small_opts: memtable + 2 tables */

static char *g_dir;

static void setup(void)
{
    g_dir = tu_ck_tempdir("test_reserve");
}

static void teardown(void)
{
    tu_ck_rmtempdir(&g_dir);
}

static kv_options small_opts(const kv_env *env)
{
    kv_options o;
    kv_options_init(&o);
    o.memtable_bytes = 64 << 10;
    o.target_file_size = 128 << 10; /* reserve: 320 KiB */
    o.level1_bytes = 512 << 10;
    o.block_cache_bytes = 1 << 20;
    o.compression = 0; /* sizes in this test are the bytes written */
    o.log_fn = tu_quiet_log;
    o.env = env;
    return o;
}

static kv_db *open_db(const kv_options *o)
{
    return tu_ck_open(g_dir, o);
}

/* small_opts over a new fault env (seeded with seed, into *fe), whose space limit plays the
 * full disk. */
static kv_options fault_opts(uint64_t seed, fault_env **fe)
{
    *fe = fault_env_new(seed);
    ck_assert_ptr_nonnull(*fe);
    return small_opts(fault_env_env(*fe));
}

/* fault_opts for the compaction tests: every flushed table stays in L0 until something compacts
 * it on purpose (kv_compact_range, the low-space mode); no reserve unless `reserve` (without
 * one, a compaction can run out of space). */
static kv_options l0_kept_opts(uint64_t seed, fault_env **fe, int reserve)
{
    kv_options o = fault_opts(seed, fe);
    if (!reserve)
        o.reserve_bytes = 0;
    o.l0_compaction_trigger = o.l0_slowdown_trigger = o.l0_stop_trigger = 1000;
    return o;
}

/* open_db(o), with m initialised empty: the model of what the store must hold. */
static kv_db *open_with_model(const kv_options *o, tu_model *m)
{
    tu_model_init(m);
    return open_db(o);
}

static void key_of(char *k, size_t n, int i)
{
    snprintf(k, n, "key%06d", i);
}

static void val_of(char *v, int i, int gen)
{
    memset(v, 'a' + (i + gen) % 26, VAL_LEN);
    snprintf(v, VAL_LEN, "v%d-%d", i, gen);
}

/* Puts key k with the value val_of(i, gen), asserting success; into m too unless it is NULL. */
static void put_key(kv_db *db, tu_model *m, const char *k, int i, int gen)
{
    char v[VAL_LEN];
    val_of(v, i, gen);
    ck_assert_int_eq(kv_put(db, k, strlen(k), v, VAL_LEN, 0), 0);
    if (m)
        tu_model_put(m, k, strlen(k), v, VAL_LEN);
}

/* Puts keys 0 .. n-1 (named by key_fn, generation-gen values), into m too unless it is NULL. */
static void put_keys(kv_db *db, tu_model *m, int n, int gen, void (*key_fn)(char *, size_t, int))
{
    char k[32];
    for (int i = 0; i < n; i++) {
        key_fn(k, sizeof k, i);
        put_key(db, m, k, i, gen);
    }
}

static int64_t reserve_file_size(void)
{
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/RESERVE", g_dir);
    return stat(p, &st) == 0 ? (int64_t)st.st_size : -1;
}

static void get_stats(kv_db *db, kv_stats *st)
{
    ck_assert_int_eq(kv_get_stats(db, st), 0);
}

/* Fills the store with NKEYS keys, then writes until the disk (a budget of `room` bytes) is
 * full. Returns the number of keys acknowledged in the model. */
static void fill_until_full(kv_db *db, fault_env *fe, tu_model *m, uint64_t room)
{
    char k[32], v[VAL_LEN];
    put_keys(db, m, NKEYS, 0, key_of);
    fault_env_set_space_limit(fe, room);
    int rc = 0;
    for (int i = NKEYS; i < NKEYS * 10 && rc == 0; i++) {
        key_of(k, sizeof k, i);
        val_of(v, i, 0);
        rc = kv_put(db, k, strlen(k), v, VAL_LEN, 0);
        if (rc == 0)
            tu_model_put(m, k, strlen(k), v, VAL_LEN);
    }
    ck_assert_msg(rc == KV_ENOSPC, "filling the disk ended with %s", kv_strerror(rc));
}

/* The end of a full-disk test: db reads as m, and so does the store reopened with the disk's
 * space back; closes db and frees m and fe. */
static void finish_after_full_disk(kv_db *db, fault_env *fe, const kv_options *o, tu_model *m)
{
    tu_ck_scan_forward(db, NULL, m);
    fault_env_set_space_limit(fe, UINT64_MAX);
    kv_close(db);
    db = open_db(o);
    tu_ck_scan_forward(db, NULL, m);
    kv_close(db);
    tu_model_free(m);
    fault_env_free(fe);
}

START_TEST(test_reserve_full_disk_refuses_writes_accepts_deletes_and_recovers)
{
    fault_env *fe;
    kv_options o = fault_opts(1, &fe);
    kv_db *db = open_db(&o);
    kv_stats st;
    get_stats(db, &st);
    ck_assert_uint_eq(st.reserve_bytes, AUTO_RESERVE);
    ck_assert_uint_eq(st.low_space, 0);
    ck_assert_int_eq(reserve_file_size(), AUTO_RESERVE);

    tu_model m;
    tu_model_init(&m);
    fill_until_full(db, fe, &m, 48 << 10);
    get_stats(db, &st);
    ck_assert_uint_eq(st.low_space, 1);
    ck_assert_uint_eq(st.reserve_bytes, 0);
    ck_assert_uint_ge(st.reserve_releases, 1);
    ck_assert_int_eq(reserve_file_size(), -1);

    /* Low-space mode: an ordinary write fails at once and stores nothing, even though the
     * released reserve would hold it. */
    char k[32], v[VAL_LEN];
    val_of(v, 7, 1);
    ck_assert_int_eq(kv_put(db, "new", 3, v, VAL_LEN, KV_WRITE_SYNC), KV_ENOSPC);
    void *got;
    size_t gl;
    ck_assert_int_eq(kv_get(db, NULL, "new", 3, &got, &gl), KV_ENOTFOUND);
    tu_ck_scan_forward(db, NULL, &m);

    /* Writes that free space go through: delete 9 keys of 10, in batches as kvfs does. */
    kv_batch *b = kv_batch_new();
    for (int i = 0; i < NKEYS; i++) {
        if (i % 10 == 0)
            continue;
        key_of(k, sizeof k, i);
        ck_assert_int_eq(kv_batch_delete(b, k, strlen(k)), 0);
        tu_model_delete(&m, k, strlen(k));
        if (kv_batch_count(b) == 50) {
            ck_assert_int_eq(kv_write(db, b, KV_WRITE_RESERVE), 0);
            kv_batch_clear(b);
        }
    }
    ck_assert_int_eq(kv_write(db, b, KV_WRITE_RESERVE | KV_WRITE_SYNC), 0);
    kv_batch_free(b);
    ck_assert_int_eq(kv_delete(db, "nothing", 7, KV_WRITE_RESERVE), 0);
    tu_ck_scan_forward(db, NULL, &m);

    /* The compaction that reclaims the deleted data runs in the released space. */
    int rc = kv_compact_range(db, NULL, 0, NULL, 0);
    ck_assert_msg(rc == 0, "compaction on a full disk: %s", kv_strerror(rc));
    tu_ck_scan_forward(db, NULL, &m);
    get_stats(db, &st);
    ck_assert_uint_eq(st.low_space, 1); /* free space has not come back */
    ck_assert_int_eq(kv_put(db, "new", 3, v, VAL_LEN, 0), KV_ENOSPC);

    /* Space comes back: writes work again (after at most a short check interval) and the
     * reserve is re-created. */
    fault_env_set_space_limit(fe, UINT64_MAX);
    for (int tries = 0; (rc = kv_put(db, "new", 3, v, VAL_LEN, 0)) == KV_ENOSPC; tries++) {
        ck_assert_int_lt(tries, 200);
        usleep(10000);
    }
    ck_assert_int_eq(rc, 0);
    tu_model_put(&m, "new", 3, v, VAL_LEN);
    get_stats(db, &st);
    ck_assert_uint_eq(st.low_space, 0);
    ck_assert_uint_eq(st.reserve_bytes, AUTO_RESERVE);
    ck_assert_int_eq(reserve_file_size(), AUTO_RESERVE);
    for (int i = 0; i < 200; i++) {
        key_of(k, sizeof k, 100000 + i);
        put_key(db, &m, k, i, 2);
    }
    tu_ck_scan_forward(db, NULL, &m);

    /* Nothing lost across a reopen. */
    ck_assert_int_eq(kv_close(db), 0);
    db = open_db(&o);
    tu_ck_scan_forward(db, NULL, &m);
    get_stats(db, &st);
    ck_assert_uint_eq(st.low_space, 0);
    kv_close(db);
    tu_model_free(&m);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_reserve_monitor_ends_low_space_mode_without_writes)
{
    fault_env *fe;
    kv_options o = fault_opts(2, &fe);
    tu_model m;
    kv_db *db = open_with_model(&o, &m);
    fill_until_full(db, fe, &m, 16 << 10);
    kv_stats st;
    get_stats(db, &st);
    ck_assert_uint_eq(st.low_space, 1);
    fault_env_set_space_limit(fe, UINT64_MAX);
    /* No write asks: the background check (backoff up to 2 s) must notice by itself. */
    for (int tries = 0; get_stats(db, &st), st.low_space; tries++) {
        ck_assert_int_lt(tries, 500);
        usleep(10000);
    }
    ck_assert_int_eq(reserve_file_size(), AUTO_RESERVE);
    kv_close(db);
    tu_model_free(&m);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_reserve_deletions_in_low_space_mode_are_flushed_without_asking)
{
    fault_env *fe;
    kv_options o = fault_opts(7, &fe);
    o.memtable_bytes = 4 << 20; /* the deletions alone would never fill it */
    tu_model m;
    kv_db *db = open_with_model(&o, &m);
    fill_until_full(db, fe, &m, 48 << 10);
    kv_stats st;
    get_stats(db, &st);
    ck_assert_uint_eq(st.low_space, 1);
    uint64_t flushes = st.flushes;
    char k[32];
    for (int i = 0; i < 20; i++) {
        key_of(k, sizeof k, i);
        ck_assert_int_eq(kv_delete(db, k, strlen(k), KV_WRITE_RESERVE), 0);
        tu_model_delete(&m, k, strlen(k));
    }
    /* The monitor (backoff up to 2 s) flushes them so that compaction can reclaim space. */
    for (int tries = 0; get_stats(db, &st), st.flushes == flushes; tries++) {
        ck_assert_int_lt(tries, 500);
        usleep(10000);
    }
    tu_ck_scan_forward(db, NULL, &m);
    kv_close(db);
    db = open_db(&o);
    tu_ck_scan_forward(db, NULL, &m);
    kv_close(db);
    tu_model_free(&m);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_reserve_is_released_at_open_on_a_full_disk)
{
    fault_env *fe;
    kv_options o = fault_opts(3, &fe);
    tu_model m;
    kv_db *db = open_with_model(&o, &m);
    put_keys(db, &m, NKEYS, 0, key_of);
    ck_assert_int_eq(kv_close(db), 0); /* the WAL holds unflushed writes */

    /* Not one byte free: recovery (the WAL's memtable flushed to a table, a new manifest)
     * only fits in the released reserve. */
    fault_env_set_space_limit(fe, 0);
    db = open_db(&o);
    kv_stats st;
    get_stats(db, &st);
    ck_assert_uint_eq(st.low_space, 1);
    ck_assert_int_eq(reserve_file_size(), -1);
    tu_ck_scan_forward(db, NULL, &m);
    ck_assert_int_eq(kv_put(db, "x", 1, "y", 1, 0), KV_ENOSPC);
    char k[32];
    key_of(k, sizeof k, 3);
    ck_assert_int_eq(kv_delete(db, k, strlen(k), KV_WRITE_RESERVE | KV_WRITE_SYNC), 0);
    tu_model_delete(&m, k, strlen(k));
    tu_ck_scan_forward(db, NULL, &m);
    kv_close(db);

    fault_env_set_space_limit(fe, UINT64_MAX);
    db = open_db(&o);
    get_stats(db, &st);
    ck_assert_uint_eq(st.low_space, 0);
    ck_assert_int_eq(reserve_file_size(), AUTO_RESERVE);
    tu_ck_scan_forward(db, NULL, &m);
    kv_close(db);
    tu_model_free(&m);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_reserve_compaction_that_cannot_fit_fails_cleanly)
{
    fault_env *fe;
    kv_options o = l0_kept_opts(4, &fe, 0); /* the compaction must run out of space */
    tu_model m;
    kv_db *db = open_with_model(&o, &m);
    ck_assert_int_eq(reserve_file_size(), -1);
    for (int gen = 0; gen < 2; gen++)
        put_keys(db, &m, NKEYS, gen, key_of);
    ck_assert_int_eq(kv_flush(db), 0);
    kv_stats st;
    get_stats(db, &st);
    ck_assert_uint_gt(st.level_files[0], 2);
    fault_env_set_space_limit(fe, 64 << 10); /* less than the ~400 KiB of live output */
    int rc = kv_compact_range(db, NULL, 0, NULL, 0);
    ck_assert_int_eq(rc, KV_ENOSPC);
    /* No partial state: no temp file, and exactly the tables the manifest lists. */
    get_stats(db, &st);
    uint64_t tables = 0;
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        tables += st.level_files[l];
    ck_assert_int_eq(tu_dir_count_suffix(g_dir, ".tmp"), 0);
    ck_assert_int_eq(tu_dir_count_suffix(g_dir, ".sst"), (int)tables);
    tu_ck_scan_forward(db, NULL, &m);
    /* Without a reserve there is no low-space mode: ordinary writes are still tried. */
    ck_assert_uint_eq(st.low_space, 0);
    fault_env_set_space_limit(fe, UINT64_MAX);
    ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    finish_after_full_disk(db, fe, &o, &m);
}
END_TEST

START_TEST(test_reserve_has_the_configured_size_and_destroy_removes_it)
{
    kv_options o = small_opts(NULL);
    o.reserve_bytes = 3 << 20;
    kv_db *db = open_db(&o);
    kv_stats st;
    get_stats(db, &st);
    ck_assert_uint_eq(st.reserve_bytes, 3 << 20);
    ck_assert_int_eq(reserve_file_size(), 3 << 20);
    char p[4096];
    struct stat sb;
    snprintf(p, sizeof p, "%s/RESERVE", g_dir);
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_int_ge((int64_t)sb.st_blocks * 512, 3 << 20); /* allocated, not sparse */
    kv_close(db);
    o.reserve_bytes = 0; /* reserve turned off: the old one is given back */
    db = open_db(&o);
    ck_assert_int_eq(reserve_file_size(), -1);
    get_stats(db, &st);
    ck_assert_uint_eq(st.reserve_bytes, 0);
    kv_close(db);
    o.reserve_bytes = 3 << 20;
    db = open_db(&o);
    ck_assert_int_eq(reserve_file_size(), 3 << 20);
    kv_close(db);
    ck_assert_int_eq(kv_destroy(g_dir, &o), 0);
    ck_assert_int_ne(stat(g_dir, &sb), 0); /* nothing left behind, not even the directory */
}
END_TEST

START_TEST(test_reserve_auto_size_is_a_memtable_two_capped_tables_and_a_gc_move)
{
    kv_options o;
    kv_options_init(&o);
    o.memtable_bytes = 4 << 20;
    o.target_file_size = 32 << 20;
    o.value_log_segment_bytes = 64 << 20;
    o.value_log_gc_percent = 50;
    const uint64_t mib = 1 << 20;
    /* Unknown disk: tables at their target size, no cap. */
    ck_assert_uint_eq(reserve_auto_bytes(&o, 0, 0), (4 + 2 * 32) * mib);
    /* 1 GiB: tables capped at 1/64 (16 MiB), segments at 1/32 (32 MiB); the value log adds
     * the live half of a segment. */
    ck_assert_uint_eq(reserve_table_cap(32 * mib, 1024 * mib), 16 * mib);
    ck_assert_uint_eq(reserve_auto_bytes(&o, 0, 1024 * mib), (4 + 2 * 16) * mib);
    ck_assert_uint_eq(reserve_auto_bytes(&o, 1, 1024 * mib), (4 + 2 * 16 + 16) * mib);
    o.value_log_gc_percent = 75; /* GC moves at most a quarter of a segment */
    ck_assert_uint_eq(reserve_auto_bytes(&o, 1, 1024 * mib), (4 + 2 * 16 + 8) * mib);
    /* 256 MiB: 4 MiB tables, 8 MiB segments. */
    ck_assert_uint_eq(reserve_auto_bytes(&o, 0, 256 * mib), (4 + 2 * 4) * mib);
    ck_assert_uint_eq(reserve_auto_bytes(&o, 1, 256 * mib), (4 + 2 * 4 + 2) * mib);
    o.value_log_gc_percent = 50;
    ck_assert_uint_eq(reserve_auto_bytes(&o, 1, 256 * mib), (4 + 2 * 4 + 4) * mib);
    /* 64 MiB: 1 MiB tables, 2 MiB segments. */
    ck_assert_uint_eq(reserve_auto_bytes(&o, 1, 64 * mib), (4 + 2 * 1 + 1) * mib);
    /* A tiny disk: tables never below 1 MiB (or their target), the whole still 1/8. */
    ck_assert_uint_eq(reserve_table_cap(32 * mib, 16 * mib), mib);
    ck_assert_uint_eq(reserve_table_cap(mib / 2, 16 * mib), mib / 2);
    ck_assert_uint_eq(reserve_auto_bytes(&o, 0, 16 * mib), 2 * mib);
}
END_TEST

START_TEST(test_reserve_auto_size_counts_the_value_log_of_the_store)
{
    kv_options o = small_opts(NULL);
    kv_db *db = open_db(&o);
    kv_stats st;
    get_stats(db, &st);
    /* memtable + 2 tables; the real disk is large enough for no cap to apply */
    ck_assert_uint_eq(st.reserve_bytes, (64 + 2 * 128) << 10);
    ck_assert_int_eq(reserve_file_size(), (64 + 2 * 128) << 10);
    kv_close(db);
    ck_assert_int_eq(kv_destroy(g_dir, &o), 0);

    o.value_log_threshold = 512;
    o.value_log_segment_bytes = 1 << 20;
    o.value_log_gc_percent = 50;
    db = open_db(&o);
    get_stats(db, &st);
    ck_assert_uint_eq(st.reserve_bytes, (64 + 2 * 128 + 512) << 10);
    kv_close(db);
    /* The store keeps its value log when opened without the threshold (VLOG marker). */
    o.value_log_threshold = 0;
    db = open_db(&o);
    get_stats(db, &st);
    ck_assert_uint_eq(st.reserve_bytes, (64 + 2 * 128 + 512) << 10);
    ck_assert_int_eq(reserve_file_size(), (64 + 2 * 128 + 512) << 10);
    kv_close(db);
}
END_TEST

/* Spreads keys over the key space, so that every table of a level overlaps the next level's. */
static void scattered_key(char *k, size_t n, int i)
{
    snprintf(k, n, "%08x-%d", (unsigned)((uint32_t)i * 2654435761u), i);
}

START_TEST(test_reserve_full_compaction_needs_room_for_one_table_at_a_time)
{
    fault_env *fe;
    kv_options o = l0_kept_opts(5, &fe, 0);
    o.target_file_size = 32 << 10;
    o.level1_bytes = 96 << 10; /* ~600 KiB of data: L1 and L2 */
    tu_model m;
    kv_db *db = open_with_model(&o, &m);
    char k[32];
    put_keys(db, &m, 600, 0, scattered_key);
    /* Everything into L2: L0 -> L1 here, L1 -> L2 by the background work (L1 is over its
     * size) and by another full compaction once L2 exists. */
    kv_stats st;
    ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    for (int tries = 0;; tries++) {
        ck_assert_int_lt(tries, 500);
        get_stats(db, &st);
        if (st.level_files[0] + st.level_files[1] == 0)
            break;
        if (st.level_files[2] > 0)
            ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
        else
            usleep(10000);
    }
    /* Newer versions of a third of the keys, left in L0. */
    for (int i = 0; i < 600; i += 3) {
        scattered_key(k, sizeof k, i);
        put_key(db, &m, k, i, 1);
    }
    ck_assert_int_eq(kv_flush(db), 0);
    get_stats(db, &st);
    ck_assert_uint_gt(st.level_bytes[2], 500 << 10);
    /* The full compaction moves L0 into L1, whose tables then span L2's whole key range: in
     * one piece L1 -> L2 would rewrite ~600 KiB before deleting anything; table by table it
     * needs about an L1 table plus its share of L2 at a time. */
    fault_env_set_space_limit(fe, 350 << 10);
    int rc = kv_compact_range(db, NULL, 0, NULL, 0);
    ck_assert_msg(rc == 0, "full compaction with 350 KiB free: %s", kv_strerror(rc));
    get_stats(db, &st);
    ck_assert_uint_eq(st.level_files[0] + st.level_files[1], 0);
    finish_after_full_disk(db, fe, &o, &m);
}
END_TEST

START_TEST(test_reserve_full_compaction_reclaims_deleted_l0_data_before_rewriting_l1)
{
    fault_env *fe;
    kv_options o = l0_kept_opts(6, &fe, 0);
    tu_model m;
    kv_db *db = open_with_model(&o, &m);
    char k[32];
    for (int i = 0; i < 300; i++) { /* kept data, in L1 */
        snprintf(k, sizeof k, "key%06d-keep", i);
        put_key(db, &m, k, i, 0);
    }
    ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    for (int i = 0; i < 400; i++) { /* data written, then deleted while still in L0 */
        snprintf(k, sizeof k, "key%06d-tmp", i);
        put_key(db, NULL, k, i, 1);
    }
    ck_assert_int_eq(kv_flush(db), 0);
    for (int i = 0; i < 400; i++) {
        snprintf(k, sizeof k, "key%06d-tmp", i);
        ck_assert_int_eq(kv_delete(db, k, strlen(k), KV_WRITE_RESERVE), 0);
    }
    kv_stats st;
    get_stats(db, &st);
    ck_assert_uint_gt(st.level_files[0], 2);
    ck_assert_uint_gt(st.level_bytes[1], 250 << 10);
    /* L0 -> L1 would rewrite the ~300 KiB of L1 before deleting anything: it cannot fit in
     * 150 KiB, but merging L0 alone can, and frees the ~400 KiB deleted. */
    fault_env_set_space_limit(fe, 150 << 10);
    int rc = kv_compact_range(db, NULL, 0, NULL, 0);
    ck_assert_msg(rc == 0, "full compaction with 150 KiB free: %s", kv_strerror(rc));
    get_stats(db, &st);
    ck_assert_uint_eq(st.level_files[0], 0);
    finish_after_full_disk(db, fe, &o, &m);
}
END_TEST

START_TEST(test_reserve_compaction_after_enospc_moves_what_fits_instead_of_all_of_level0)
{
    fault_env *fe;
    kv_options o = l0_kept_opts(7, &fe, 0);
    tu_model m;
    kv_db *db = open_with_model(&o, &m);
    char k[32];
    for (int t = 0; t < 8; t++) { /* 8 L0 tables of ~60 KiB, none overwriting another */
        for (int i = 0; i < 60; i++) {
            snprintf(k, sizeof k, "key%02d-%04d", i % 10, t * 100 + i);
            put_key(db, &m, k, i, t);
        }
        ck_assert_int_eq(kv_flush(db), 0);
    }
    kv_close(db);
    /* Less room than one table: the first L0 -> L1 attempt fails with ENOSPC. */
    o.l0_compaction_trigger = 4;
    fault_env_set_space_limit(fe, 40 << 10);
    db = open_db(&o);
    kv_stats st;
    for (int tries = 0;; tries++) {
        ck_assert_int_lt(tries, 1000);
        get_stats(db, &st);
        if (st.background_errors > 0)
            break;
        usleep(10000);
    }
    ck_assert_uint_ge(st.level_files[0], 6); /* at most a trivial move of the oldest went */
    /* Room for a few tables but not for all of L0 (>= 360 KiB): merging L0 in place can never
     * fit, moving its oldest tables down a few at a time can. */
    fault_env_set_space_limit(fe, 300 << 10);
    for (int tries = 0;; tries++) {
        ck_assert_msg(tries < 1000, "L0 still has %d tables after an ENOSPC",
                      (int)st.level_files[0]);
        get_stats(db, &st);
        if (st.level_files[0] < 4)
            break;
        usleep(10000);
    }
    finish_after_full_disk(db, fe, &o, &m);
}
END_TEST

/* The disk fills (8 KiB left): new keys are written until one fails with KV_ENOSPC; the
 * acknowledged ones go into m. */
static void write_until_full(kv_db *db, fault_env *fe, tu_model *m)
{
    char k[32], v[VAL_LEN];
    fault_env_set_space_limit(fe, 8 << 10);
    int rc = 0;
    for (int i = 0; rc == 0; i++) {
        ck_assert_int_lt(i, 1000);
        snprintf(k, sizeof k, "more%06d", i);
        val_of(v, i, 1);
        if ((rc = kv_put(db, k, strlen(k), v, VAL_LEN, 0)) == 0)
            tu_model_put(m, k, strlen(k), v, VAL_LEN);
    }
    ck_assert_int_eq(rc, KV_ENOSPC);
}

START_TEST(test_reserve_low_space_mode_compacts_level0_deletions_before_any_trigger)
{
    fault_env *fe;
    kv_options o = l0_kept_opts(8, &fe, 1);
    tu_model m;
    kv_db *db = open_with_model(&o, &m);
    char k[32];
    put_keys(db, NULL, 200, 0, key_of); /* all deleted below: not in the model */
    ck_assert_int_eq(kv_flush(db), 0);
    kv_stats st;
    get_stats(db, &st);
    ck_assert_uint_ge(st.level_files[0], 2);
    /* The disk fills: the reserve goes and the store enters low-space mode. */
    write_until_full(db, fe, &m);
    get_stats(db, &st);
    ck_assert_uint_eq(st.low_space, 1);
    for (int i = 0; i < 200; i++) {
        key_of(k, sizeof k, i);
        ck_assert_int_eq(kv_delete(db, k, strlen(k), KV_WRITE_RESERVE), 0);
    }
    /* Far below any compaction trigger, the deletions reach L0 (the monitor's flush) and L0
     * goes down into L1, where they drop the ~200 KiB they delete. */
    for (int tries = 0;; tries++) {
        get_stats(db, &st);
        ck_assert_msg(tries < 1000, "low-space mode left %d L0 tables, %d KiB in L1",
                      (int)st.level_files[0], (int)(st.level_bytes[1] >> 10));
        if (st.level_files[0] == 0 && st.level_bytes[1] < (100 << 10))
            break;
        usleep(10000);
    }
    finish_after_full_disk(db, fe, &o, &m);
}
END_TEST

START_TEST(test_reserve_low_space_mode_gives_back_value_log_segments_of_deleted_keys)
{
    fault_env *fe;
    kv_options o = l0_kept_opts(9, &fe, 1);
    o.value_log_threshold = 512;
    o.value_log_segment_bytes = 128 << 10;
    tu_model m;
    kv_db *db = open_with_model(&o, &m);
    put_keys(db, NULL, 400, 0, key_of); /* ~400 KiB of values in the value log; deleted below */
    ck_assert_int_eq(kv_flush(db), 0);
    write_until_full(db, fe, &m);
    char k[32];
    kv_stats st;
    get_stats(db, &st);
    ck_assert_uint_eq(st.low_space, 1);
    uint64_t vlog_bytes = st.vlog_bytes;
    ck_assert_uint_gt(vlog_bytes, 400 << 10);
    for (int i = 0; i < 400; i++) {
        key_of(k, sizeof k, i);
        ck_assert_int_eq(kv_delete(db, k, strlen(k), KV_WRITE_RESERVE), 0);
    }
    /* Nobody compacts or collects by hand: the deletions are flushed, compacted out of L0 and
     * the segments they emptied are deleted, all by the low-space mode itself. */
    for (int tries = 0;; tries++) {
        get_stats(db, &st);
        ck_assert_msg(tries < 1000,
                      "value log still %d KiB (was %d KiB) with %d KiB garbage, %d GC runs",
                      (int)(st.vlog_bytes >> 10), (int)(vlog_bytes >> 10),
                      (int)(st.vlog_garbage_bytes >> 10), (int)st.vlog_gc_runs);
        if (st.vlog_bytes < vlog_bytes / 2)
            break;
        usleep(10000);
    }
    finish_after_full_disk(db, fe, &o, &m);
}
END_TEST

static Suite *reserve_suite(void)
{
    Suite *s = suite_create("reserve");
    TCase *tc = tcase_create("reserve");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_reserve_full_disk_refuses_writes_accepts_deletes_and_recovers);
    tcase_add_test(tc, test_reserve_monitor_ends_low_space_mode_without_writes);
    tcase_add_test(tc, test_reserve_deletions_in_low_space_mode_are_flushed_without_asking);
    tcase_add_test(tc, test_reserve_is_released_at_open_on_a_full_disk);
    tcase_add_test(tc, test_reserve_compaction_that_cannot_fit_fails_cleanly);
    tcase_add_test(tc, test_reserve_has_the_configured_size_and_destroy_removes_it);
    tcase_add_test(tc, test_reserve_auto_size_is_a_memtable_two_capped_tables_and_a_gc_move);
    tcase_add_test(tc, test_reserve_auto_size_counts_the_value_log_of_the_store);
    tcase_add_test(tc, test_reserve_full_compaction_needs_room_for_one_table_at_a_time);
    tcase_add_test(tc, test_reserve_full_compaction_reclaims_deleted_l0_data_before_rewriting_l1);
    tcase_add_test(tc,
                   test_reserve_compaction_after_enospc_moves_what_fits_instead_of_all_of_level0);
    tcase_add_test(tc, test_reserve_low_space_mode_compacts_level0_deletions_before_any_trigger);
    tcase_add_test(tc, test_reserve_low_space_mode_gives_back_value_log_segments_of_deleted_keys);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(reserve_suite());
}
