/* test_cache.c - the sharded LRU cache: eviction order, charge bound, handle lifetimes, erase,
 * deleters run exactly once, and concurrent use from several threads. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkutil.h"
#include "testutil.h"
#include "util/cache.h"

#define MAX_IDS 4096

/* Values are small ints; deletions are counted per value so "exactly once" is checkable. */
static int deleted[MAX_IDS];
static int delete_key_mismatch;

typedef struct value {
    int id;
    char key[16];
} value;

static void count_delete(slice key, void *v)
{
    value *val = v;
    if (!slice_equal(key, slice_from_str(val->key)))
        __atomic_add_fetch(&delete_key_mismatch, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&deleted[val->id], 1, __ATOMIC_RELAXED);
    free(val);
}

static void reset_counts(void)
{
    memset(deleted, 0, sizeof deleted);
    delete_key_mismatch = 0;
}

static value *make_value(int id, const char *key)
{
    value *v = malloc(sizeof *v);
    ck_assert_ptr_nonnull(v);
    v->id = id;
    snprintf(v->key, sizeof v->key, "%s", key);
    return v;
}

static void key_of(int i, char *out, size_t n)
{
    snprintf(out, n, "k%d", i);
}

/* Inserts key i with value id i and releases the handle. */
static void put(cache *c, int i, size_t charge)
{
    char k[16];
    key_of(i, k, sizeof k);
    cache_handle *h = cache_insert(c, slice_from_str(k), make_value(i, k), charge, count_delete);
    ck_assert_ptr_nonnull(h);
    cache_release(c, h);
}

/* Returns the id stored under key i, or -1 if absent. */
static int get(cache *c, int i)
{
    char k[16];
    key_of(i, k, sizeof k);
    cache_handle *h = cache_lookup(c, slice_from_str(k));
    if (!h)
        return -1;
    int id = ((value *)cache_value(h))->id;
    cache_release(c, h);
    return id;
}

START_TEST(test_cache_lookup_finds_inserted_and_counts_hits)
{
    reset_counts();
    cache *c = cache_new(1000);
    for (int i = 0; i < 50; i++)
        put(c, i, 1);
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(get(c, i), i);
    ck_assert_int_eq(get(c, 1000), -1);
    ck_assert_int_eq(get(c, 1001), -1);
    uint64_t hits, misses;
    cache_counters(c, &hits, &misses);
    ck_assert_uint_eq(hits, 50);
    ck_assert_uint_eq(misses, 2);
    ck_assert_uint_eq(cache_total_charge(c), 50);
    cache_free(c);
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(deleted[i], 1);
    ck_assert_int_eq(delete_key_mismatch, 0);
}
END_TEST

START_TEST(test_cache_evicts_least_recently_used_first)
{
    reset_counts();
    cache *c = cache_new(10); /* small: one shard, so the order is global */
    for (int i = 0; i < 10; i++)
        put(c, i, 1);
    ck_assert_int_eq(get(c, 0), 0); /* 0 is now the most recent; 1 the least */
    put(c, 10, 1);
    ck_assert_int_eq(deleted[1], 1);
    ck_assert_int_eq(get(c, 1), -1);
    ck_assert_int_eq(get(c, 0), 0);
    put(c, 11, 1);
    ck_assert_int_eq(get(c, 2), -1);
    ck_assert_int_eq(deleted[0], 0);
    for (int i = 3; i <= 11; i++)
        ck_assert_int_eq(get(c, i), i);
    /* A big entry pushes out several old ones at once. */
    put(c, 12, 5);
    ck_assert_uint_le(cache_total_charge(c), 10);
    ck_assert_int_eq(get(c, 12), 12);
    ck_assert_int_eq(get(c, 0), -1); /* the five least recently used are gone */
    ck_assert_int_eq(get(c, 3), -1);
    ck_assert_int_eq(get(c, 11), 11);
    cache_free(c);
    for (int i = 0; i <= 12; i++)
        ck_assert_int_eq(deleted[i], 1);
}
END_TEST

START_TEST(test_cache_total_charge_stays_within_capacity)
{
    reset_counts();
    tu_rng r;
    tu_rng_init(&r, tu_seed("cache charge bound"));
    size_t cap = 64 * 1024;
    cache *c = cache_new(cap);
    for (int i = 0; i < MAX_IDS; i++) {
        put(c, i, 1 + (size_t)tu_rng_below(&r, 4096));
        ck_assert_uint_le(cache_total_charge(c), cap);
    }
    /* And it is actually used, not trivially empty. */
    ck_assert_uint_ge(cache_total_charge(c), cap / 2);
    cache_free(c);
    for (int i = 0; i < MAX_IDS; i++)
        ck_assert_int_eq(deleted[i], 1);
}
END_TEST

START_TEST(test_cache_handle_keeps_evicted_entry_alive)
{
    reset_counts();
    cache *c = cache_new(4);
    char k[16];
    key_of(0, k, sizeof k);
    cache_handle *h = cache_insert(c, slice_from_str(k), make_value(0, k), 1, count_delete);
    /* Flood the cache while 0 is held: in-use entries cannot be evicted... */
    for (int i = 1; i < 20; i++)
        put(c, i, 1);
    ck_assert_int_eq(deleted[0], 0);
    ck_assert_int_eq(((value *)cache_value(h))->id, 0);
    ck_assert_int_eq(get(c, 0), 0);
    /* ...and once it is released and pushed out, it is deleted exactly once. */
    cache_release(c, h);
    for (int i = 20; i < 30; i++)
        put(c, i, 1);
    ck_assert_int_eq(get(c, 0), -1);
    ck_assert_int_eq(deleted[0], 1);
    cache_free(c);
    for (int i = 0; i < 30; i++)
        ck_assert_int_eq(deleted[i], 1);
}
END_TEST

START_TEST(test_cache_erase_and_replace_keep_held_values_alive)
{
    reset_counts();
    cache *c = cache_new(100);
    cache_handle *h0 = cache_insert(c, slice_from_str("a"), make_value(0, "a"), 1, count_delete);
    cache_erase(c, slice_from_str("a"));
    ck_assert_ptr_null(cache_lookup(c, slice_from_str("a")));
    ck_assert_int_eq(deleted[0], 0); /* still held */
    ck_assert_int_eq(((value *)cache_value(h0))->id, 0);
    ck_assert_uint_eq(cache_total_charge(c), 0);
    cache_release(c, h0);
    ck_assert_int_eq(deleted[0], 1);

    cache_handle *h1 = cache_insert(c, slice_from_str("b"), make_value(1, "b"), 1, count_delete);
    cache_handle *h2 = cache_insert(c, slice_from_str("b"), make_value(2, "b"), 1, count_delete);
    ck_assert_int_eq(deleted[1], 0);
    cache_handle *h = cache_lookup(c, slice_from_str("b"));
    ck_assert_int_eq(((value *)cache_value(h))->id, 2); /* the newer value wins */
    ck_assert_int_eq(((value *)cache_value(h1))->id, 1);
    cache_release(c, h);
    cache_release(c, h1);
    ck_assert_int_eq(deleted[1], 1);
    ck_assert_uint_eq(cache_total_charge(c), 1);
    cache_release(c, h2);
    ck_assert_int_eq(deleted[2], 0); /* still cached */
    cache_erase(c, slice_from_str("b"));
    ck_assert_int_eq(deleted[2], 1);
    cache_erase(c, slice_from_str("nothing")); /* absent: no effect */
    cache_free(c);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(deleted[i], 1);
    ck_assert_int_eq(delete_key_mismatch, 0);
}
END_TEST

START_TEST(test_cache_oversized_entry_lives_only_while_held)
{
    reset_counts();
    cache *c = cache_new(10);
    put(c, 1, 1);
    char k[16];
    key_of(0, k, sizeof k);
    cache_handle *h = cache_insert(c, slice_from_str(k), make_value(0, k), 50, count_delete);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(((value *)cache_value(h))->id, 0);
    cache_release(c, h);
    ck_assert_int_eq(deleted[0], 1);
    ck_assert_uint_le(cache_total_charge(c), 10);
    cache_free(c);
}
END_TEST

START_TEST(test_cache_with_zero_capacity_caches_nothing)
{
    reset_counts();
    cache *c = cache_new(0);
    cache_handle *h = cache_insert(c, slice_from_str("x"), make_value(0, "x"), 1, count_delete);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_null(cache_lookup(c, slice_from_str("x")));
    ck_assert_int_eq(deleted[0], 0);
    cache_release(c, h);
    ck_assert_int_eq(deleted[0], 1);
    cache_free(c);
}
END_TEST

START_TEST(test_cache_binary_keys_with_common_prefixes_are_distinct)
{
    reset_counts();
    cache *c = cache_new(1000);
    char a[9] = {0}, b[9] = {0};
    b[8] = 1;
    cache_handle *ha = cache_insert(c, slice_make(a, 8), make_value(0, ""), 1, NULL);
    cache_handle *hb = cache_insert(c, slice_make(a, 9), make_value(1, ""), 1, NULL);
    cache_handle *hc = cache_insert(c, slice_make(b, 9), make_value(2, ""), 1, NULL);
    cache_handle *hd = cache_insert(c, slice_make(a, 0), make_value(3, ""), 1, NULL);
    cache_handle *l[4] = {cache_lookup(c, slice_make(a, 8)), cache_lookup(c, slice_make(a, 9)),
                          cache_lookup(c, slice_make(b, 9)), cache_lookup(c, slice_make(b, 0))};
    for (int i = 0; i < 4; i++) {
        ck_assert_ptr_nonnull(l[i]);
        ck_assert_int_eq(((value *)cache_value(l[i]))->id, i);
        cache_release(c, l[i]);
    }
    cache_handle *hs[4] = {ha, hb, hc, hd};
    for (int i = 0; i < 4; i++) {
        free(cache_value(hs[i])); /* no deleter was given */
        cache_release(c, hs[i]);
    }
    cache_free(c);
}
END_TEST

START_TEST(test_cache_new_id_is_unique)
{
    cache *c = cache_new(10);
    uint64_t a = cache_new_id(c), b = cache_new_id(c), d = cache_new_id(c);
    ck_assert_uint_ne(a, b);
    ck_assert_uint_ne(b, d);
    ck_assert_uint_ne(a, d);
    cache_free(c);
}
END_TEST

/* ---- Concurrency ------------------------------------------------------------------------- */

#define THREADS 4
#define KEYS 512
#define OPS 40000

static int concurrent_ids; /* next value id; ids index deleted[] */
static int concurrent_bad;

struct worker {
    cache *c;
    uint64_t seed;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    tu_rng r;
    tu_rng_init(&r, w->seed);
    cache_handle *held[8] = {0};
    for (int op = 0; op < OPS; op++) {
        int i = (int)tu_rng_below(&r, KEYS);
        char k[16];
        key_of(i, k, sizeof k);
        unsigned what = (unsigned)tu_rng_below(&r, 100);
        cache_handle *h = NULL;
        if (what < 10) {
            int id = __atomic_fetch_add(&concurrent_ids, 1, __ATOMIC_RELAXED);
            if (id >= MAX_IDS * 8)
                continue;
            value *v = malloc(sizeof *v);
            if (!v)
                abort();
            v->id = id % MAX_IDS; /* ids wrap: per-slot counts still sum correctly */
            snprintf(v->key, sizeof v->key, "%s", k);
            h = cache_insert(w->c, slice_from_str(k), v, 1 + tu_rng_below(&r, 8), count_delete);
        } else if (what < 12) {
            cache_erase(w->c, slice_from_str(k));
        } else {
            h = cache_lookup(w->c, slice_from_str(k));
        }
        if (h && strcmp(((value *)cache_value(h))->key, k) != 0)
            __atomic_add_fetch(&concurrent_bad, 1, __ATOMIC_RELAXED);
        /* Keep a few handles across operations so evictions meet live handles. */
        int slot = (int)tu_rng_below(&r, 8);
        if (held[slot])
            cache_release(w->c, held[slot]);
        held[slot] = h;
    }
    for (int s = 0; s < 8; s++)
        if (held[s])
            cache_release(w->c, held[s]);
    return NULL;
}

START_TEST(test_cache_concurrent_lookups_and_inserts_are_consistent)
{
    reset_counts();
    concurrent_ids = 0;
    concurrent_bad = 0;
    uint64_t seed = tu_seed("cache concurrency");
    cache *c = cache_new(600); /* smaller than the key space: constant eviction */
    pthread_t t[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i].c = c;
        w[i].seed = seed + (uint64_t)i;
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(concurrent_bad, 0);
    ck_assert_uint_le(cache_total_charge(c), 600);
    uint64_t hits, misses;
    cache_counters(c, &hits, &misses);
    ck_assert_uint_gt(hits, 0);
    ck_assert_uint_gt(misses, 0);
    cache_free(c);
    /* Every value inserted was deleted exactly once. */
    int inserted = concurrent_ids < MAX_IDS * 8 ? concurrent_ids : MAX_IDS * 8;
    long total = 0;
    for (int i = 0; i < MAX_IDS; i++) {
        int expect = inserted / MAX_IDS + (i < inserted % MAX_IDS ? 1 : 0);
        ck_assert_int_eq(deleted[i], expect);
        total += deleted[i];
    }
    ck_assert_int_eq(total, inserted);
    ck_assert_int_eq(delete_key_mismatch, 0);
}
END_TEST

static Suite *cache_suite(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_cache_lookup_finds_inserted_and_counts_hits);
    tcase_add_test(tc, test_cache_evicts_least_recently_used_first);
    tcase_add_test(tc, test_cache_total_charge_stays_within_capacity);
    tcase_add_test(tc, test_cache_handle_keeps_evicted_entry_alive);
    tcase_add_test(tc, test_cache_erase_and_replace_keep_held_values_alive);
    tcase_add_test(tc, test_cache_oversized_entry_lives_only_while_held);
    tcase_add_test(tc, test_cache_with_zero_capacity_caches_nothing);
    tcase_add_test(tc, test_cache_binary_keys_with_common_prefixes_are_distinct);
    tcase_add_test(tc, test_cache_new_id_is_unique);
    suite_add_tcase(s, tc);
    TCase *tcc = tcase_create("concurrent");
    tcase_add_test(tcc, test_cache_concurrent_lookups_and_inserts_are_consistent);
    suite_add_tcase(s, tcc);
    return s;
}

int main(void)
{
    return tu_run_suite(cache_suite());
}
