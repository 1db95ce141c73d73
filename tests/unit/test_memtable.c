/* test_memtable.c - the skiplist memtable: ordering, lookups by sequence, deletions,
 * iteration both ways against a sorted array, and one writer with concurrent readers. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/memtable.h"
#include "kvcore/kv.h"
#include "testutil.h"
#include "util/coding.h"
#include "util/ikey.h"
#include "util/iter.h"

static int get_str(memtable *m, const char *key, uint64_t seq, char *out, size_t n)
{
    buf v;
    buf_init(&v);
    int rc = memtable_get(m, slice_from_str(key), seq, &v);
    if (rc == MEMTABLE_FOUND) {
        ck_assert_uint_lt(v.len, n);
        memcpy(out, v.data, v.len);
        out[v.len] = 0;
    }
    buf_free(&v);
    return rc;
}

static int add_str(memtable *m, uint64_t seq, int type, const char *k, const char *v)
{
    return memtable_add(m, seq, type, slice_from_str(k), slice_from_str(v));
}

/* The newest-entry checks on m (empty; freed here). */
static void check_newest_entry_at_or_below_sequence(memtable *m)
{
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(add_str(m, 10, IKEY_TYPE_VALUE, "k", "v10"), 0);
    ck_assert_int_eq(add_str(m, 20, IKEY_TYPE_VALUE, "k", "v20"), 0);
    ck_assert_int_eq(add_str(m, 30, IKEY_TYPE_DELETION, "k", ""), 0);
    ck_assert_int_eq(add_str(m, 40, IKEY_TYPE_VALUE, "k", "v40"), 0);
    ck_assert_int_eq(add_str(m, 15, IKEY_TYPE_VALUE, "j", "j15"), 0);
    ck_assert_int_eq(add_str(m, 16, IKEY_TYPE_VALUE, "kk", "kk16"), 0);
    char v[32];
    ck_assert_int_eq(get_str(m, "k", 9, v, sizeof(v)), MEMTABLE_ABSENT);
    ck_assert_int_eq(get_str(m, "k", 10, v, sizeof(v)), MEMTABLE_FOUND);
    ck_assert_str_eq(v, "v10");
    ck_assert_int_eq(get_str(m, "k", 19, v, sizeof(v)), MEMTABLE_FOUND);
    ck_assert_str_eq(v, "v10");
    ck_assert_int_eq(get_str(m, "k", 20, v, sizeof(v)), MEMTABLE_FOUND);
    ck_assert_str_eq(v, "v20");
    ck_assert_int_eq(get_str(m, "k", 30, v, sizeof(v)), MEMTABLE_DELETED);
    ck_assert_int_eq(get_str(m, "k", 39, v, sizeof(v)), MEMTABLE_DELETED);
    ck_assert_int_eq(get_str(m, "k", 40, v, sizeof(v)), MEMTABLE_FOUND);
    ck_assert_str_eq(v, "v40");
    ck_assert_int_eq(get_str(m, "k", UINT64_MAX, v, sizeof(v)), MEMTABLE_FOUND);
    ck_assert_str_eq(v, "v40");
    /* Neighbours and prefixes are different keys. */
    ck_assert_int_eq(get_str(m, "", 100, v, sizeof(v)), MEMTABLE_ABSENT);
    ck_assert_int_eq(get_str(m, "j", 14, v, sizeof(v)), MEMTABLE_ABSENT);
    ck_assert_int_eq(get_str(m, "kk", 15, v, sizeof(v)), MEMTABLE_ABSENT);
    ck_assert_int_eq(get_str(m, "kk", 16, v, sizeof(v)), MEMTABLE_FOUND);
    ck_assert_str_eq(v, "kk16");
    ck_assert_int_eq(get_str(m, "l", 100, v, sizeof(v)), MEMTABLE_ABSENT);
    ck_assert_uint_eq(memtable_num_entries(m), 6);
    memtable_unref(m);
}

START_TEST(test_memtable_get_sees_newest_entry_at_or_below_sequence)
{
    check_newest_entry_at_or_below_sequence(memtable_new());
}
END_TEST

START_TEST(test_memtable_filtered_get_sees_newest_entry_at_or_below_sequence)
{
    check_newest_entry_at_or_below_sequence(memtable_new_filtered(1 << 20));
}
END_TEST

/* Adds keys "key<i>" for i < n (every third a deletion) to m, then checks that each reads back
 * and that n keys never added read as absent. */
static void check_filtered_keys(memtable *m, int n)
{
    ck_assert_ptr_nonnull(m);
    char k[32], v[32];
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "key%d", i);
        snprintf(v, sizeof v, "val%d", i);
        ck_assert_int_eq(add_str(m, (uint64_t)i + 1, i % 3 ? IKEY_TYPE_VALUE : IKEY_TYPE_DELETION,
                                 k, i % 3 ? v : ""),
                         0);
    }
    for (int i = 0; i < n; i++) {
        char got[32];
        snprintf(k, sizeof k, "key%d", i);
        snprintf(v, sizeof v, "val%d", i);
        int rc = get_str(m, k, UINT64_MAX, got, sizeof got);
        ck_assert_int_eq(rc, i % 3 ? MEMTABLE_FOUND : MEMTABLE_DELETED);
        if (i % 3)
            ck_assert_str_eq(got, v);
        snprintf(k, sizeof k, "nokey%d", i);
        ck_assert_int_eq(get_str(m, k, UINT64_MAX, got, sizeof got), MEMTABLE_ABSENT);
    }
    memtable_unref(m);
}

START_TEST(test_memtable_filter_never_hides_an_added_key)
{
    check_filtered_keys(memtable_new_filtered(1 << 20), 20000); /* ~16 bits per key */
    check_filtered_keys(memtable_new_filtered(1), 20000);       /* one block, saturated */
    memtable *m = memtable_new_filtered(1 << 20);
    ck_assert_uint_ge(memtable_memory_usage(m), (1 << 20) / 64); /* the filter is counted */
    memtable_unref(m);
    /* Any budget gets a filter of bounded size. */
    m = memtable_new_filtered(SIZE_MAX);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_le(memtable_memory_usage(m), (size_t)65 << 20);
    memtable_unref(m);
}
END_TEST

START_TEST(test_memtable_get_appends_to_the_output_buffer)
{
    memtable *m = memtable_new();
    ck_assert_int_eq(add_str(m, 1, IKEY_TYPE_VALUE, "a", "value"), 0);
    ck_assert_int_eq(add_str(m, 2, IKEY_TYPE_VALUE, "empty", ""), 0);
    buf v;
    buf_init(&v);
    ck_assert_int_eq(buf_append(&v, "pre-", 4), 0);
    ck_assert_int_eq(memtable_get(m, slice_from_str("a"), 5, &v), MEMTABLE_FOUND);
    ck_assert(slice_equal(buf_slice(&v), slice_from_str("pre-value")));
    ck_assert_int_eq(memtable_get(m, slice_from_str("empty"), 5, &v), MEMTABLE_FOUND);
    ck_assert_uint_eq(v.len, 9);
    buf_free(&v);
    memtable_unref(m);
}
END_TEST

START_TEST(test_memtable_iterates_internal_keys_in_order)
{
    memtable *m = memtable_new();
    /* Inserted out of order on purpose. */
    ck_assert_int_eq(add_str(m, 5, IKEY_TYPE_VALUE, "b", "b5"), 0);
    ck_assert_int_eq(add_str(m, 7, IKEY_TYPE_DELETION, "b", ""), 0);
    ck_assert_int_eq(add_str(m, 1, IKEY_TYPE_VALUE, "c", "c1"), 0);
    ck_assert_int_eq(add_str(m, 9, IKEY_TYPE_VALUE, "a", "a9"), 0);
    ck_assert_int_eq(add_str(m, 6, IKEY_TYPE_VALUE, "b", "b6"), 0);
    ck_assert_int_eq(add_str(m, 3, IKEY_TYPE_VALUE, "", "empty"), 0);
    ck_assert_int_eq(add_str(m, 8, IKEY_TYPE_VALUE, "ba", "ba8"), 0);
    const char *want_keys[] = {"", "a", "b", "b", "b", "ba", "c"};
    uint64_t want_seq[] = {3, 9, 7, 6, 5, 8, 1};
    int want_type[] = {1, 1, 0, 1, 1, 1, 1};
    const char *want_val[] = {"empty", "a9", "", "b6", "b5", "ba8", "c1"};
    iter *it = memtable_iter_new(m);
    ck_assert_ptr_nonnull(it);
    int i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it), i++) {
        ikey_parsed p;
        ck_assert(ikey_parse(iter_key(it), &p));
        ck_assert(slice_equal(p.user_key, slice_from_str(want_keys[i])));
        ck_assert_uint_eq(p.sequence, want_seq[i]);
        ck_assert_int_eq(p.type, want_type[i]);
        ck_assert(slice_equal(iter_value(it), slice_from_str(want_val[i])));
    }
    ck_assert_int_eq(i, 7);
    ck_assert_int_eq(iter_status(it), 0);
    iter_free(it);
    memtable_unref(m);
}
END_TEST

START_TEST(test_memtable_rejects_bad_type_and_sequence)
{
    memtable *m = memtable_new();
    ck_assert_int_eq(add_str(m, 1, 2, "k", "v"), KV_EINVAL);
    ck_assert_int_eq(add_str(m, IKEY_MAX_SEQUENCE + 1, IKEY_TYPE_VALUE, "k", "v"), KV_EINVAL);
    ck_assert_int_eq(add_str(m, IKEY_MAX_SEQUENCE, IKEY_TYPE_VALUE, "k", "v"), 0);
    ck_assert_uint_eq(memtable_num_entries(m), 1);
    char v[8];
    ck_assert_int_eq(get_str(m, "k", UINT64_MAX, v, sizeof(v)), MEMTABLE_FOUND);
    memtable_unref(m);
}
END_TEST

/* ---- Iterator against a sorted array ------------------------------------------------------ */

typedef struct ref_entry {
    char ikey[32]; /* user key (up to 16 bytes) + tag */
    size_t ikey_len;
    char value[40];
    size_t value_len;
} ref_entry;

static int ref_cmp(const void *a, const void *b)
{
    const ref_entry *x = a, *y = b;
    return ikey_compare(slice_make(x->ikey, x->ikey_len), slice_make(y->ikey, y->ikey_len));
}

static void make_entry(tu_rng *rng, ref_entry *e, uint64_t seq)
{
    /* Short keys from a small alphabet, so many user keys repeat with different sequences. */
    size_t klen = tu_rng_below(rng, 4);
    for (size_t i = 0; i < klen; i++)
        e->ikey[i] = (char)('a' + tu_rng_below(rng, 4));
    int type = tu_rng_chance(rng, 1, 5) ? IKEY_TYPE_DELETION : IKEY_TYPE_VALUE;
    coding_put_fixed64(e->ikey + klen, ikey_pack_tag(seq, type));
    e->ikey_len = klen + 8;
    e->value_len = type == IKEY_TYPE_VALUE ? (size_t)snprintf(e->value, sizeof(e->value), "v%llu",
                                                              (unsigned long long)seq)
                                           : 0;
}

static void check_at(iter *it, const ref_entry *ref, size_t n, size_t idx)
{
    if (idx >= n) {
        ck_assert_msg(!iter_valid(it), "expected end, iterator valid");
        return;
    }
    ck_assert_msg(iter_valid(it), "expected entry %zu, iterator invalid", idx);
    ck_assert(slice_equal(iter_key(it), slice_make(ref[idx].ikey, ref[idx].ikey_len)));
    ck_assert(slice_equal(iter_value(it), slice_make(ref[idx].value, ref[idx].value_len)));
}

START_TEST(test_memtable_iterator_matches_sorted_array_both_directions)
{
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_memtable_iterator_matches_sorted_array_both_directions"));
    size_t n = 5000;
    ref_entry *ref = calloc(n, sizeof(*ref));
    memtable *m = memtable_new();
    for (size_t i = 0; i < n; i++) {
        make_entry(&rng, &ref[i], i + 1);
        ikey_parsed p;
        ck_assert(ikey_parse(slice_make(ref[i].ikey, ref[i].ikey_len), &p));
        ck_assert_int_eq(memtable_add(m, p.sequence, p.type, p.user_key,
                                      slice_make(ref[i].value, ref[i].value_len)),
                         0);
    }
    qsort(ref, n, sizeof(*ref), ref_cmp);
    iter *it = memtable_iter_new(m);

    size_t idx = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        check_at(it, ref, n, idx++);
    ck_assert_uint_eq(idx, n);

    idx = n;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it))
        check_at(it, ref, n, --idx);
    ck_assert_uint_eq(idx, 0);

    /* Seeks to existing keys, to keys between entries, and to user keys at seek sequence. */
    for (int t = 0; t < 2000; t++) {
        ref_entry target;
        make_entry(&rng, &target, tu_rng_below(&rng, n + 2));
        size_t lo = 0, hi = n; /* first ref >= target */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (ref_cmp(&ref[mid], &target) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        iter_seek(it, slice_make(target.ikey, target.ikey_len));
        check_at(it, ref, n, lo);
        /* A few steps each way from there. */
        size_t at = lo;
        for (int s = 0; s < 3 && iter_valid(it); s++) {
            iter_next(it);
            check_at(it, ref, n, ++at);
        }
        iter_seek(it, slice_make(target.ikey, target.ikey_len));
        at = lo;
        for (int s = 0; s < 3 && iter_valid(it); s++) {
            iter_prev(it);
            if (at == 0) {
                ck_assert(!iter_valid(it));
                break;
            }
            check_at(it, ref, n, --at);
        }
    }

    /* A malformed (short) seek target compares bytewise and must not crash. */
    iter_seek(it, slice_make("ab", 2));
    iter_seek(it, slice_make(NULL, 0));
    check_at(it, ref, n, 0);

    iter_free(it);
    memtable_unref(m);
    free(ref);
}
END_TEST

START_TEST(test_memtable_empty_iterator_is_invalid_everywhere)
{
    memtable *m = memtable_new();
    iter *it = memtable_iter_new(m);
    iter_seek_first(it);
    ck_assert(!iter_valid(it));
    iter_seek_last(it);
    ck_assert(!iter_valid(it));
    iter_seek(it, slice_from_str("anything-with-tag"));
    ck_assert(!iter_valid(it));
    ck_assert_int_eq(iter_status(it), 0);
    iter_free(it);
    memtable_unref(m);
}
END_TEST

START_TEST(test_memtable_iterator_keeps_the_memtable_alive)
{
    memtable *m = memtable_new();
    ck_assert_int_eq(add_str(m, 1, IKEY_TYPE_VALUE, "key", "value"), 0);
    iter *it = memtable_iter_new(m);
    memtable_unref(m); /* the iterator's reference is now the only one */
    iter_seek_first(it);
    ck_assert(iter_valid(it));
    ck_assert(slice_equal(iter_value(it), slice_from_str("value")));
    iter_free(it); /* frees the memtable; ASan/valgrind would flag a leak or a double free */
}
END_TEST

START_TEST(test_memtable_large_entries_and_memory_usage)
{
    memtable *m = memtable_new();
    size_t base = memtable_memory_usage(m);
    size_t big = 1024 * 1024;
    char *v = malloc(big);
    for (size_t i = 0; i < big; i++)
        v[i] = (char)(i * 31);
    ck_assert_int_eq(memtable_add(m, 1, IKEY_TYPE_VALUE, slice_from_str("big"), slice_make(v, big)),
                     0);
    ck_assert_uint_ge(memtable_memory_usage(m), base + big);
    for (int i = 0; i < 2000; i++) {
        char k[24];
        snprintf(k, sizeof(k), "small%05d", i);
        ck_assert_int_eq(add_str(m, 2 + (uint64_t)i, IKEY_TYPE_VALUE, k, "x"), 0);
    }
    /* Small entries share 64 KiB blocks: the total stays near what they need. */
    size_t used = memtable_memory_usage(m);
    ck_assert_uint_le(used, base + big + 2000 * 128 + 2 * 65536);
    buf out;
    buf_init(&out);
    ck_assert_int_eq(memtable_get(m, slice_from_str("big"), 10, &out), MEMTABLE_FOUND);
    ck_assert(slice_equal(buf_slice(&out), slice_make(v, big)));
    buf_free(&out);
    free(v);
    memtable_unref(m);
}
END_TEST

/* ---- One writer, three readers ------------------------------------------------------------ */

#define CONC_KEYS 200000
#define CONC_READERS 3

typedef struct conc_state {
    memtable *m;
    atomic_uint_fast64_t published; /* entries the writer has finished adding */
    atomic_int done;
    uint64_t seed;
    atomic_int failures;
    char why[CONC_READERS][200];
} conc_state;

/* Key i is a 16-byte pseudo-random string; its value says which key it belongs to. */
static void conc_key(uint64_t seed, uint64_t i, char k[16])
{
    tu_rng r;
    tu_rng_init(&r, seed ^ (i * 0x9E3779B97F4A7C15ULL));
    tu_rng_fill(&r, k, 16);
    k[0] = (char)('a' + (i % 7)); /* some shared prefixes */
}

static void conc_value(uint64_t i, char v[32])
{
    snprintf(v, 32, "value-%016llx", (unsigned long long)i);
}

static void *conc_writer(void *arg)
{
    conc_state *st = arg;
    for (uint64_t i = 0; i < CONC_KEYS; i++) {
        char k[16], v[32];
        conc_key(st->seed, i, k);
        conc_value(i, v);
        if (memtable_add(st->m, i + 1, IKEY_TYPE_VALUE, slice_make(k, 16), slice_make(v, 22))) {
            atomic_fetch_add(&st->failures, 1);
            break;
        }
        atomic_store_explicit(&st->published, i + 1, memory_order_release);
    }
    atomic_store(&st->done, 1);
    return NULL;
}

typedef struct reader_arg {
    conc_state *st;
    int id;
} reader_arg;

static void reader_fail(reader_arg *ra, const char *what, uint64_t detail)
{
    if (atomic_fetch_add(&ra->st->failures, 1) == 0 || ra->st->why[ra->id][0] == 0)
        snprintf(ra->st->why[ra->id], sizeof(ra->st->why[ra->id]), "reader %d: %s (%llu)", ra->id,
                 what, (unsigned long long)detail);
}

/* Checks an entry: its sequence names the key it must have and the value it must hold. */
static int entry_consistent(const conc_state *st, slice ik, slice v)
{
    ikey_parsed p;
    if (!ikey_parse(ik, &p) || p.sequence == 0 || p.sequence > CONC_KEYS || p.user_key.size != 16)
        return 0;
    char k[16], want[32];
    conc_key(st->seed, p.sequence - 1, k);
    conc_value(p.sequence - 1, want);
    return memcmp(k, p.user_key.data, 16) == 0 && slice_equal(v, slice_make(want, 22));
}

static void *conc_reader(void *arg)
{
    reader_arg *ra = arg;
    conc_state *st = ra->st;
    tu_rng rng;
    tu_rng_init(&rng, st->seed + (uint64_t)ra->id + 1);
    buf v;
    buf_init(&v);
    int last_round = 0;
    while (!last_round) {
        last_round = atomic_load(&st->done);
        /* Everything published before the scan started must be seen by it. */
        uint64_t before = atomic_load_explicit(&st->published, memory_order_acquire);
        iter *it = memtable_iter_new(st->m);
        uint64_t seen = 0;
        buf prev;
        buf_init(&prev);
        int forward = tu_rng_chance(&rng, 1, 2);
        if (forward)
            iter_seek_first(it);
        else
            iter_seek_last(it);
        for (; iter_valid(it); forward ? iter_next(it) : iter_prev(it)) {
            slice k = iter_key(it);
            if (!entry_consistent(st, k, iter_value(it)))
                reader_fail(ra, "inconsistent entry", seen);
            if (prev.len) {
                int c = ikey_compare(buf_slice(&prev), k);
                if (forward ? c >= 0 : c <= 0)
                    reader_fail(ra, "out of order", seen);
            }
            buf_clear(&prev);
            if (buf_append(&prev, k.data, k.size))
                reader_fail(ra, "out of memory", 0);
            seen++;
        }
        buf_free(&prev);
        iter_free(it);
        if (seen < before)
            reader_fail(ra, "scan missed published entries", before - seen);
        /* Point lookups of published keys, and of a key not yet written. */
        uint64_t pub = atomic_load_explicit(&st->published, memory_order_acquire);
        for (int q = 0; q < 2000 && pub > 0; q++) {
            uint64_t i = tu_rng_below(&rng, pub);
            char k[16], want[32];
            conc_key(st->seed, i, k);
            conc_value(i, want);
            buf_clear(&v);
            int rc = memtable_get(st->m, slice_make(k, 16), UINT64_MAX, &v);
            if (rc != MEMTABLE_FOUND || !slice_equal(buf_slice(&v), slice_make(want, 22)))
                reader_fail(ra, "published key not found", i);
            rc = memtable_get(st->m, slice_make(k, 16), i, &v); /* sequence i+1 not visible */
            if (rc != MEMTABLE_ABSENT)
                reader_fail(ra, "entry visible below its sequence", i);
        }
    }
    buf_free(&v);
    return NULL;
}

/* One writer and CONC_READERS readers on m (freed here). */
static void run_one_writer_three_readers(memtable *m)
{
    conc_state *st = calloc(1, sizeof(*st));
    st->m = m;
    st->seed = tu_seed("test_memtable_one_writer_three_readers_see_consistent_sorted_data");
    atomic_init(&st->published, 0);
    atomic_init(&st->done, 0);
    atomic_init(&st->failures, 0);
    pthread_t w, r[CONC_READERS];
    reader_arg ra[CONC_READERS];
    for (int i = 0; i < CONC_READERS; i++) {
        ra[i].st = st;
        ra[i].id = i;
        ck_assert_int_eq(pthread_create(&r[i], NULL, conc_reader, &ra[i]), 0);
    }
    ck_assert_int_eq(pthread_create(&w, NULL, conc_writer, st), 0);
    pthread_join(w, NULL);
    for (int i = 0; i < CONC_READERS; i++)
        pthread_join(r[i], NULL);
    for (int i = 0; i < CONC_READERS; i++)
        if (st->why[i][0])
            fprintf(stderr, "%s\n", st->why[i]);
    ck_assert_int_eq(atomic_load(&st->failures), 0);
    ck_assert_uint_eq(memtable_num_entries(st->m), CONC_KEYS);
    memtable_unref(st->m);
    free(st);
}

START_TEST(test_memtable_one_writer_three_readers_see_consistent_sorted_data)
{
    run_one_writer_three_readers(memtable_new());
}
END_TEST

/* The readers' lookups of published keys go through the filter while the writer sets bits. */
START_TEST(test_memtable_filtered_one_writer_three_readers_see_every_published_key)
{
    run_one_writer_three_readers(memtable_new_filtered((size_t)CONC_KEYS * 64));
}
END_TEST

static Suite *memtable_suite(void)
{
    Suite *s = suite_create("memtable");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_memtable_get_sees_newest_entry_at_or_below_sequence);
    tcase_add_test(tc, test_memtable_get_appends_to_the_output_buffer);
    tcase_add_test(tc, test_memtable_iterates_internal_keys_in_order);
    tcase_add_test(tc, test_memtable_rejects_bad_type_and_sequence);
    tcase_add_test(tc, test_memtable_iterator_matches_sorted_array_both_directions);
    tcase_add_test(tc, test_memtable_empty_iterator_is_invalid_everywhere);
    tcase_add_test(tc, test_memtable_iterator_keeps_the_memtable_alive);
    tcase_add_test(tc, test_memtable_large_entries_and_memory_usage);
    tcase_add_test(tc, test_memtable_one_writer_three_readers_see_consistent_sorted_data);
    tcase_add_test(tc, test_memtable_filtered_one_writer_three_readers_see_every_published_key);
    tcase_add_test(tc, test_memtable_filtered_get_sees_newest_entry_at_or_below_sequence);
    tcase_add_test(tc, test_memtable_filter_never_hides_an_added_key);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(memtable_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
