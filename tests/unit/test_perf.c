/* test_perf.c - behaviour behind kvcore's performance work: seek-triggered compaction, the
 * allocation-free single-op write path, the merger's cached child keys, the memtable budget
 * and the block cache's shared value memory.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvcore/kv.h"
#include "testutil.h"
#include "util/cache.h"
#include "util/slice.h"

static char *g_dir;

static void setup(void)
{
    g_dir = tu_tempdir("perf");
    ck_assert_ptr_nonnull(g_dir);
}

static void teardown(void)
{
    tu_rmtree(g_dir);
    free(g_dir);
}

static kv_db *open_db(void)
{
    kv_options o;
    kv_options_init(&o);
    o.memtable_bytes = 1u << 20; /* nothing flushes by itself in these tests */
    o.compression = 0;
    o.l0_compaction_trigger = 8; /* two L0 tables never score a compaction */
    o.l0_slowdown_trigger = 16;
    o.l0_stop_trigger = 24;
    kv_db *db = NULL;
    ck_assert_int_eq(kv_open(g_dir, &o, &db), 0);
    return db;
}

static void key_of(char *k, int i, int parity)
{
    snprintf(k, 16, "key%06d", 2 * i + parity);
}

/* Two overlapping L0 tables: the older holds the even keys, the newer the odd ones. */
static void make_two_l0_tables(kv_db *db, int n)
{
    char k[16], v[32];
    for (int parity = 0; parity < 2; parity++) {
        for (int i = 0; i < n; i++) {
            key_of(k, i, parity);
            snprintf(v, sizeof v, "value-%s", k);
            ck_assert_int_eq(kv_put(db, k, strlen(k), v, strlen(v), 0), 0);
        }
        ck_assert_int_eq(kv_flush(db), 0);
    }
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_eq(st.level_files[0], 2);
}

static void get_expect(kv_db *db, const char *k)
{
    void *val;
    size_t vlen;
    char want[32];
    snprintf(want, sizeof want, "value-%s", k);
    ck_assert_int_eq(kv_get(db, NULL, k, strlen(k), &val, &vlen), 0);
    ck_assert_uint_eq(vlen, strlen(want));
    ck_assert(memcmp(val, want, vlen) == 0);
    kv_free(val);
}

/* Waits up to 10 s for L0 to hold at most max_l0 tables; returns the last count seen. */
static uint64_t wait_l0_at_most(kv_db *db, uint64_t max_l0)
{
    kv_stats st;
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(kv_get_stats(db, &st), 0);
        if (st.level_files[0] <= max_l0)
            break;
        usleep(10000);
    }
    return st.level_files[0];
}

START_TEST(test_perf_lookups_that_miss_in_the_newer_table_compact_it)
{
    kv_db *db = open_db();
    make_two_l0_tables(db, 500);
    /* Every even key but the first is looked for in the newer table first (its range
     * overlaps), in vain: each such lookup charges that table one of its 1000 allowed seeks. */
    char k[16];
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 500; i++) {
            key_of(k, i, 0);
            get_expect(db, k);
        }
    ck_assert_uint_eq(wait_l0_at_most(db, 0), 0);
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_ge(st.compactions, 1);
    /* Nothing was lost or changed by the compaction. */
    for (int i = 0; i < 500; i++) {
        key_of(k, i, 0);
        get_expect(db, k);
        key_of(k, i, 1);
        get_expect(db, k);
    }
    kv_close(db);
}
END_TEST

START_TEST(test_perf_lookups_found_in_the_first_table_compact_nothing)
{
    kv_db *db = open_db();
    make_two_l0_tables(db, 500);
    char k[16];
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 500; i++) {
            key_of(k, i, 1); /* odd keys: in the newer table, the first probed */
            get_expect(db, k);
        }
    usleep(200000);
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_eq(st.level_files[0], 2);
    ck_assert_uint_eq(st.compactions, 0);
    kv_close(db);
}
END_TEST

START_TEST(test_perf_single_puts_and_deletes_of_every_size_round_trip)
{
    kv_db *db = open_db();
    /* Around the stack buffer of a single-op write (512 bytes) and far beyond it. */
    size_t sizes[] = {0, 1, 100, 480, 481, 490, 491, 492, 500, 511, 512, 513, 4096, 100000};
    size_t n = sizeof(sizes) / sizeof(sizes[0]);
    char *big = malloc(100001);
    for (size_t i = 0; i < 100001; i++)
        big[i] = (char)('a' + i % 23);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            if (sizes[i] == 0 && j > 0)
                continue;
            char kbuf[16];
            /* keys of sizes[i] bytes: a distinct prefix, then filler */
            size_t klen = sizes[i] < 8 ? 8 : sizes[i];
            char *key = malloc(klen);
            memcpy(key, big, klen);
            snprintf(kbuf, sizeof kbuf, "%02zu%02zu", i, j);
            memcpy(key, kbuf, 4);
            ck_assert_int_eq(kv_put(db, key, klen, big + 1, sizes[j], 0), 0);
            void *val;
            size_t vlen;
            ck_assert_int_eq(kv_get(db, NULL, key, klen, &val, &vlen), 0);
            ck_assert_uint_eq(vlen, sizes[j]);
            ck_assert(vlen == 0 || memcmp(val, big + 1, vlen) == 0);
            kv_free(val);
            ck_assert_int_eq(kv_delete(db, key, klen, 0), 0);
            ck_assert_int_eq(kv_get(db, NULL, key, klen, &val, &vlen), KV_ENOTFOUND);
            free(key);
        }
    /* After a reopen (WAL replay) every delete still holds. */
    kv_close(db);
    db = open_db();
    kv_iter *it = kv_iter_new(db, NULL);
    kv_iter_seek_first(it);
    ck_assert(!kv_iter_valid(it));
    ck_assert_int_eq(kv_iter_status(it), 0);
    kv_iter_free(it);
    free(big);
    kv_close(db);
}
END_TEST

START_TEST(test_perf_scan_over_overlapping_tables_and_memtable_is_exact)
{
    /* Three sources (two L0 tables, the memtable) interleave and shadow each other; a forward
     * and a backward scan, with a direction switch in the middle, must see each key's newest
     * value exactly once. */
    kv_db *db = open_db();
    make_two_l0_tables(db, 300);
    char k[16], v[32];
    for (int i = 0; i < 600; i += 3) { /* newer values for every third key, in the memtable */
        snprintf(k, sizeof k, "key%06d", i);
        snprintf(v, sizeof v, "new-%s", k);
        ck_assert_int_eq(kv_put(db, k, strlen(k), v, strlen(v), 0), 0);
    }
    kv_iter *it = kv_iter_new(db, NULL);
    int i = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), i++) {
        size_t kl, vl;
        const char *kk = kv_iter_key(it, &kl);
        const char *vv = kv_iter_value(it, &vl);
        snprintf(k, sizeof k, "key%06d", i);
        snprintf(v, sizeof v, i % 3 == 0 ? "new-%s" : "value-%s", k);
        ck_assert_uint_eq(kl, strlen(k));
        ck_assert(memcmp(kk, k, kl) == 0);
        ck_assert_uint_eq(vl, strlen(v));
        ck_assert(memcmp(vv, v, vl) == 0);
        if (i == 299) { /* one step back and forth in the middle */
            kv_iter_prev(it);
            kk = kv_iter_key(it, &kl);
            ck_assert(kl == 9 && memcmp(kk, "key000298", 9) == 0);
            kv_iter_next(it);
            kk = kv_iter_key(it, &kl);
            ck_assert(kl == 9 && memcmp(kk, "key000299", 9) == 0);
        }
    }
    ck_assert_int_eq(i, 600);
    ck_assert_int_eq(kv_iter_status(it), 0);
    for (kv_iter_seek_last(it); kv_iter_valid(it); kv_iter_prev(it))
        i--;
    ck_assert_int_eq(i, 0);
    kv_iter_free(it);
    kv_close(db);
}
END_TEST

/* memtable_bytes budgets the active and the frozen memtable together: the active one is
 * frozen at 3/4 of it, and gets only what a frozen one leaves while that one is flushed (the
 * old code let each reach the whole budget, so the two held twice the budget). */
START_TEST(test_perf_memtables_share_the_budget)
{
    kv_options o;
    kv_options_init(&o);
    o.memtable_bytes = 1u << 20;
    o.compression = 0;
    kv_db *db = NULL;
    ck_assert_int_eq(kv_open(g_dir, &o, &db), 0);
    char k[32], v[200];
    memset(v, 'v', sizeof v);
    uint64_t max_active = 0;
    kv_stats st;
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof k, "key%08d", (i * 7919) % 20000);
        ck_assert_int_eq(kv_put(db, k, strlen(k), v, sizeof v, 0), 0);
        ck_assert_int_eq(kv_get_stats(db, &st), 0);
        if (st.memtable_bytes > max_active)
            max_active = st.memtable_bytes;
    }
    ck_assert_uint_ge(st.flushes + st.immutable_memtables, 6); /* ~5 MiB written */
    /* 3/4 of the budget, plus the arena block an empty memtable holds and the block the write
     * that crossed the line may have started. */
    ck_assert_uint_le(max_active, (3u << 18) + 2 * (64u << 10));
    for (int i = 0; i < 20000; i += 997) {
        void *val;
        size_t vlen;
        snprintf(k, sizeof k, "key%08d", i);
        ck_assert_int_eq(kv_get(db, NULL, k, strlen(k), &val, &vlen), 0);
        ck_assert_uint_eq(vlen, sizeof v);
        kv_free(val);
    }
    kv_close(db);
}
END_TEST

struct mem_job {
    cache *c;
    void *p;
    size_t n;
};

static void *mem_free_job(void *arg)
{
    struct mem_job *j = arg;
    cache_mem_free(j->c, j->p, j->n);
    return NULL;
}

static void *mem_alloc_job(void *arg)
{
    struct mem_job *j = arg;
    size_t got = 0;
    j->p = cache_mem_alloc(j->c, j->n, &got);
    return NULL;
}

/* A block freed by the thread that evicts it is reused by the next thread that reads one:
 * with malloc's per-thread arenas it stayed in the arena of the thread that allocated it. */
START_TEST(test_perf_cache_memory_freed_by_one_thread_is_reused_by_another)
{
    cache *c = cache_new(1u << 20);
    ck_assert_ptr_nonnull(c);
    size_t got = 0;
    void *p = cache_mem_alloc(c, 4200, &got);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_ge(got, 4200);
    ck_assert_uint_lt(got, 4200 + 256);
    memset(p, 0x5a, 4200);
    pthread_t t;
    struct mem_job j = {c, p, 4200};
    ck_assert_int_eq(pthread_create(&t, NULL, mem_free_job, &j), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    struct mem_job j2 = {c, NULL, 4100}; /* same size class */
    ck_assert_int_eq(pthread_create(&t, NULL, mem_alloc_job, &j2), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_ptr_eq(j2.p, p);
    /* Distinct live allocations never overlap. */
    memset(p, 0x5a, 4100);
    void *q = cache_mem_alloc(c, 4200, &got);
    ck_assert_ptr_nonnull(q);
    ck_assert(q != p);
    memset(q, 0x11, 4200);
    ck_assert_int_eq(((unsigned char *)p)[0], 0x5a);
    ck_assert_int_eq(((unsigned char *)p)[4099], 0x5a);
    cache_mem_free(c, q, 4200);
    cache_mem_free(c, p, 4100);
    /* Slots carved across several slabs never overlap, and freed ones are handed out again
     * before new ones are carved. */
    enum { MANY = 300 };
    unsigned char *many[MANY];
    for (int i = 0; i < MANY; i++) {
        many[i] = cache_mem_alloc(c, 4200, &got);
        ck_assert_ptr_nonnull(many[i]);
        memset(many[i], i & 0xff, 4200);
    }
    for (int i = 0; i < MANY; i++)
        for (int b = 0; b < 4200; b += 599)
            ck_assert_int_eq(many[i][b], i & 0xff);
    cache_mem_free(c, many[17], 4200);
    void *again = cache_mem_alloc(c, 4200, &got);
    ck_assert_ptr_eq(again, many[17]);
    for (int i = 0; i < MANY; i++)
        cache_mem_free(c, many[i], 4200);
    /* Larger values come from malloc and are charged exactly their size. */
    void *big = cache_mem_alloc(c, CACHE_MEM_MAX_BYTES + 1, &got);
    ck_assert_ptr_nonnull(big);
    ck_assert_uint_eq(got, CACHE_MEM_MAX_BYTES + 1);
    memset(big, 0, CACHE_MEM_MAX_BYTES + 1);
    cache_mem_free(c, big, CACHE_MEM_MAX_BYTES + 1);
    cache_free(c);
}
END_TEST

/* One table of n keys (about 150 blocks for 20000) and a store reopened on it, so that every
 * block a scan needs is a cache miss. */
static kv_db *open_one_table(int n, size_t cache_bytes)
{
    kv_options o;
    kv_options_init(&o);
    o.compression = 0;
    o.block_cache_bytes = cache_bytes;
    kv_db *db = NULL;
    ck_assert_int_eq(kv_open(g_dir, &o, &db), 0);
    char k[32], v[64];
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "key%08d", i);
        snprintf(v, sizeof v, "value-%08d-%020d", i, i);
        ck_assert_int_eq(kv_put(db, k, strlen(k), v, strlen(v), 0), 0);
    }
    ck_assert_int_eq(kv_flush(db), 0);
    kv_close(db);
    ck_assert_int_eq(kv_open(g_dir, &o, &db), 0);
    return db;
}

/* Many threads reading through a small block cache (constant eviction, blocks freed by other
 * threads than the ones that read them) get every value right. */
struct read_job {
    kv_db *db;
    int n, seed, errors;
};

static void *read_job_main(void *arg)
{
    struct read_job *j = arg;
    unsigned s = (unsigned)j->seed;
    char k[32], want[64];
    for (int i = 0; i < 20000; i++) {
        s = s * 1103515245u + 12345u;
        int x = (int)((s >> 8) % (unsigned)j->n);
        snprintf(k, sizeof k, "key%08d", x);
        snprintf(want, sizeof want, "value-%08d-%020d", x, x);
        void *val;
        size_t vlen;
        if (kv_get(j->db, NULL, k, strlen(k), &val, &vlen) != 0) {
            j->errors++;
            continue;
        }
        if (vlen != strlen(want) || memcmp(val, want, vlen) != 0)
            j->errors++;
        kv_free(val);
    }
    return NULL;
}

START_TEST(test_perf_threads_reading_through_an_evicting_cache_get_exact_values)
{
    const int n = 20000;
    kv_db *db = open_one_table(n, 64u << 10); /* a cache of a handful of blocks */
    pthread_t t[4];
    struct read_job j[4];
    for (int i = 0; i < 4; i++) {
        j[i] = (struct read_job){db, n, i + 1, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, read_job_main, &j[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        ck_assert_int_eq(j[i].errors, 0);
    }
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_gt(st.block_cache_misses, 1000);
    ck_assert_uint_le(st.block_cache_bytes, 64u << 10);
    kv_close(db);
}
END_TEST

static int sign(int x)
{
    return (x > 0) - (x < 0);
}

/* The reference order: memcmp on the common prefix, then the shorter first. */
static int reference_compare(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int r = n ? memcmp(a, b, n) : 0;
    return r ? sign(r) : (an < bn ? -1 : an > bn);
}

/* slice_compare's word-at-a-time path orders keys of every length exactly as bytewise memcmp
 * does: a difference at any position, bytes above 0x7f, equal prefixes of unequal lengths. */
START_TEST(test_perf_slice_compare_matches_bytewise_order)
{
    unsigned char a[96], b[96];
    unsigned s = 12345;
    for (size_t n = 0; n <= 80; n++) {
        for (size_t pos = 0; pos <= n; pos++) {
            for (int round = 0; round < 4; round++) {
                for (size_t i = 0; i < n + 8; i++) {
                    s = s * 1103515245u + 12345u;
                    a[i] = b[i] = (unsigned char)(s >> 16);
                }
                if (pos < n) {
                    s = s * 1103515245u + 12345u;
                    b[pos] = (unsigned char)(a[pos] ^ (1u << ((s >> 16) % 8)));
                }
                size_t bn = round == 3 && n < 88 ? n + 1 + pos % 7 : n;
                ck_assert_int_eq(sign(slice_compare(slice_make(a, n), slice_make(b, bn))),
                                 reference_compare(a, n, b, bn));
                ck_assert_int_eq(sign(slice_compare(slice_make(b, bn), slice_make(a, n))),
                                 reference_compare(b, bn, a, n));
            }
        }
    }
    const unsigned char hi[] = {0x80, 0, 0, 0, 0, 0, 0, 0, 1},
                        lo[] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    ck_assert_int_gt(slice_compare(slice_make(hi, sizeof hi), slice_make(lo, sizeof lo)), 0);
}
END_TEST

/* Counts the entries of a forward scan from the first key, checking each; returns the count
 * and the iterator's final status in *status. */
static int scan_checked(kv_db *db, int *status)
{
    kv_iter *it = kv_iter_new(db, NULL);
    ck_assert_ptr_nonnull(it);
    int i = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), i++) {
        char k[32], v[64];
        snprintf(k, sizeof k, "key%08d", i);
        snprintf(v, sizeof v, "value-%08d-%020d", i, i);
        size_t kl, vl;
        const void *kp = kv_iter_key(it, &kl), *vp = kv_iter_value(it, &vl);
        ck_assert_uint_eq(kl, strlen(k));
        ck_assert(memcmp(kp, k, kl) == 0);
        ck_assert_uint_eq(vl, strlen(v));
        ck_assert(memcmp(vp, v, vl) == 0);
    }
    *status = kv_iter_status(it);
    kv_iter_free(it);
    return i;
}

/* A sequential scan reads the blocks after the one it is in ahead, several per read, into the
 * cache: its later steps find them there (one lookup miss per read, not one per block). */
START_TEST(test_perf_sequential_scan_reads_ahead_into_the_cache)
{
    const int n = 20000;
    kv_db *db = open_one_table(n, 8u << 20);
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    uint64_t blocks = st.total_sst_bytes / 4096, misses0 = st.block_cache_misses;
    ck_assert_uint_gt(blocks, 100);
    int status = -100;
    ck_assert_int_eq(scan_checked(db, &status), n);
    ck_assert_int_eq(status, 0);
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    uint64_t misses = st.block_cache_misses - misses0;
    ck_assert_uint_gt(misses, 0);
    ck_assert_uint_lt(misses * 4, blocks); /* read-ahead grows to 16 blocks a read */
    /* Everything read ahead was cached: a second scan misses nothing. */
    ck_assert_int_eq(scan_checked(db, &status), n);
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_eq(st.block_cache_misses - misses0, misses);
    kv_close(db);
}
END_TEST

/* A damaged block inside a read-ahead is not cached and not skipped: the scan returns every
 * entry before it exactly, then stops with KV_ECORRUPT. */
START_TEST(test_perf_damaged_block_inside_a_read_ahead_stops_the_scan)
{
    const int n = 20000;
    kv_db *db = open_one_table(n, 8u << 20);
    kv_close(db);
    char name[256], path[4096];
    ck_assert_int_eq(tu_dir_find_suffix(g_dir, ".sst", name, sizeof name), 1);
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 40 * 4096 + 1000, SEEK_SET), 0); /* a data block mid-table */
    int c = fgetc(f);
    ck_assert_int_eq(fseek(f, 40 * 4096 + 1000, SEEK_SET), 0);
    fputc(c ^ 0x40, f);
    fclose(f);
    kv_options o;
    kv_options_init(&o);
    o.compression = 0;
    o.block_cache_bytes = 8u << 20;
    o.log_level = -1; /* the corruption message is expected */
    ck_assert_int_eq(kv_open(g_dir, &o, &db), 0);
    int status = 0;
    int got = scan_checked(db, &status);
    ck_assert_int_eq(status, KV_ECORRUPT);
    ck_assert_int_gt(got, 30 * 4096 / 40); /* the blocks before the damaged one */
    ck_assert_int_lt(got, n);
    kv_close(db);
}
END_TEST

static Suite *perf_suite(void)
{
    Suite *s = suite_create("perf");
    TCase *tc = tcase_create("perf");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_perf_lookups_that_miss_in_the_newer_table_compact_it);
    tcase_add_test(tc, test_perf_lookups_found_in_the_first_table_compact_nothing);
    tcase_add_test(tc, test_perf_single_puts_and_deletes_of_every_size_round_trip);
    tcase_add_test(tc, test_perf_scan_over_overlapping_tables_and_memtable_is_exact);
    tcase_add_test(tc, test_perf_memtables_share_the_budget);
    tcase_add_test(tc, test_perf_slice_compare_matches_bytewise_order);
    tcase_add_test(tc, test_perf_sequential_scan_reads_ahead_into_the_cache);
    tcase_add_test(tc, test_perf_damaged_block_inside_a_read_ahead_stops_the_scan);
    tcase_add_test(tc, test_perf_cache_memory_freed_by_one_thread_is_reused_by_another);
    tcase_add_test(tc, test_perf_threads_reading_through_an_evicting_cache_get_exact_values);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(perf_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
