/* test_merger.c - unit tests of the k-way merging iterator (merger_new in table/sst.h). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvcore/kv.h"
#include "table/sst.h"
#include "testutil.h"
#include "util/ikey.h"

/* ---- A sorted-array iterator that can be told to fail when it reaches one position ------- */

typedef struct arr_iter {
    iter base;
    buf *keys; /* borrowed, sorted by ikey_compare */
    int n;
    int pos;     /* -1 or n: invalid */
    int fail_at; /* reaching this index makes the iterator fail with KV_EIO (-1: never) */
    int status;
    char value[16];
} arr_iter;

static void arr_settle(arr_iter *a)
{
    if (a->pos >= 0 && a->pos < a->n && a->pos == a->fail_at) {
        a->status = KV_EIO;
        a->pos = -1;
    }
}
static int arr_valid(const iter *it)
{
    const arr_iter *a = (const arr_iter *)it;
    return a->status == 0 && a->pos >= 0 && a->pos < a->n;
}
static void arr_seek_first(iter *it)
{
    arr_iter *a = (arr_iter *)it;
    a->status = 0;
    a->pos = 0;
    arr_settle(a);
}
static void arr_seek_last(iter *it)
{
    arr_iter *a = (arr_iter *)it;
    a->status = 0;
    a->pos = a->n - 1;
    arr_settle(a);
}
static void arr_seek(iter *it, slice target)
{
    arr_iter *a = (arr_iter *)it;
    a->status = 0;
    a->pos = 0;
    while (a->pos < a->n && ikey_compare(buf_slice(&a->keys[a->pos]), target) < 0)
        a->pos++;
    arr_settle(a);
}
static void arr_next(iter *it)
{
    arr_iter *a = (arr_iter *)it;
    ck_assert(arr_valid(it));
    a->pos++;
    arr_settle(a);
}
static void arr_prev(iter *it)
{
    arr_iter *a = (arr_iter *)it;
    ck_assert(arr_valid(it));
    a->pos--;
    arr_settle(a);
}
static slice arr_key(const iter *it)
{
    const arr_iter *a = (const arr_iter *)it;
    ck_assert(arr_valid(it));
    return buf_slice(&a->keys[a->pos]);
}
static slice arr_value(const iter *it)
{
    const arr_iter *a = (const arr_iter *)it;
    return slice_from_str(a->value);
}
static int arr_status(const iter *it)
{
    return ((const arr_iter *)it)->status;
}
static void arr_destroy(iter *it)
{
    free(it);
}
static const struct iter_ops arr_ops = {arr_valid,  arr_seek_first, arr_seek_last, arr_seek,
                                        arr_next,   arr_prev,       arr_key,       arr_value,
                                        arr_status, arr_destroy};

static iter *arr_new(buf *keys, int n, int child, int fail_at)
{
    arr_iter *a = calloc(1, sizeof(*a));
    iter_init(&a->base, &arr_ops);
    a->keys = keys;
    a->n = n;
    a->pos = -1;
    a->fail_at = fail_at;
    snprintf(a->value, sizeof(a->value), "c%d", child);
    return &a->base;
}

/* ---- Reference: every (key, child) pair sorted by key, then child ------------------------- */

typedef struct ref {
    slice key;
    int child;
} ref;

static int ref_cmp(const void *pa, const void *pb)
{
    const ref *a = pa, *b = pb;
    int c = ikey_compare(a->key, b->key);
    return c ? c : (a->child > b->child) - (a->child < b->child);
}

typedef struct fixture {
    int nchild;
    buf **keys; /* keys[c][0..counts[c]) */
    int *counts;
    ref *all;
    int nall;
} fixture;

/* nchild children holding random keys from a small space, so that equal internal keys in
 * different children (ties) happen too. */
static void fixture_make(fixture *f, int nchild, tu_rng *rng)
{
    f->nchild = nchild;
    f->keys = calloc((size_t)nchild, sizeof(buf *));
    f->counts = calloc((size_t)nchild, sizeof(int));
    f->nall = 0;
    f->all = NULL;
    for (int c = 0; c < nchild; c++) {
        int n = (int)tu_rng_below(rng, 60);
        f->keys[c] = calloc((size_t)(n ? n : 1), sizeof(buf));
        /* Pick n distinct (user key, seq) from the space; sort by generating in order. */
        int made = 0;
        for (unsigned u = 0; u < 100 && made < n; u++) {
            for (unsigned s = 3; s >= 1 && made < n; s--) {
                if (tu_rng_below(rng, 100) >= 30)
                    continue;
                char uk[16];
                int l = snprintf(uk, sizeof(uk), "u%03u", u);
                buf_init(&f->keys[c][made]);
                ikey_append(&f->keys[c][made], slice_make(uk, (size_t)l), s, IKEY_TYPE_VALUE);
                made++;
            }
        }
        f->counts[c] = made;
        f->all = realloc(f->all, (size_t)(f->nall + made + 1) * sizeof(ref));
        for (int i = 0; i < made; i++)
            f->all[f->nall++] = (ref){buf_slice(&f->keys[c][i]), c};
    }
    if (f->nall > 1)
        qsort(f->all, (size_t)f->nall, sizeof(ref), ref_cmp);
}

static void fixture_free(fixture *f)
{
    for (int c = 0; c < f->nchild; c++) {
        for (int i = 0; i < f->counts[c]; i++)
            buf_free(&f->keys[c][i]);
        free(f->keys[c]);
    }
    free(f->keys);
    free(f->counts);
    free(f->all);
}

static iter *fixture_merger(fixture *f, int fail_child, int fail_at)
{
    iter **ch = malloc((size_t)f->nchild * sizeof(iter *));
    for (int c = 0; c < f->nchild; c++)
        ch[c] = arr_new(f->keys[c], f->counts[c], c, c == fail_child ? fail_at : -1);
    iter *m = merger_new(ch, f->nchild);
    free(ch);
    ck_assert_ptr_nonnull(m);
    return m;
}

static void assert_pos(iter *m, const fixture *f, int pos)
{
    ck_assert_int_eq(iter_status(m), 0);
    if (pos < 0 || pos >= f->nall) {
        ck_assert_msg(!iter_valid(m), "merger valid where the reference is exhausted");
        return;
    }
    ck_assert_msg(iter_valid(m), "merger invalid at reference position %d of %d", pos, f->nall);
    ck_assert(slice_equal(iter_key(m), f->all[pos].key));
    char want[16];
    snprintf(want, sizeof(want), "c%d", f->all[pos].child);
    ck_assert_msg(slice_equal(iter_value(m), slice_from_str(want)),
                  "position %d: wrong child for a tied key", pos);
}

START_TEST(test_merger_random_walks_match_the_sorted_union_including_ties)
{
    static const int sizes[] = {0, 1, 2, 3, 5, 17, 40};
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("merger walk"));
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        for (int round = 0; round < 10; round++) {
            fixture f;
            fixture_make(&f, sizes[si], &rng);
            iter *m = fixture_merger(&f, -1, -1);
            int pos = -1;
            for (int step = 0; step < 600; step++) {
                int op = (int)tu_rng_below(&rng, 8);
                int valid = pos >= 0 && pos < f.nall;
                if (op == 0) {
                    iter_seek_first(m);
                    pos = 0;
                } else if (op == 1) {
                    iter_seek_last(m);
                    pos = f.nall - 1;
                } else if (op == 2) {
                    buf t;
                    buf_init(&t);
                    char uk[16];
                    int l = snprintf(uk, sizeof(uk), "u%03u", (unsigned)tu_rng_below(&rng, 101));
                    ikey_append(&t, slice_make(uk, (size_t)l), tu_rng_below(&rng, 5),
                                IKEY_TYPE_VALUE);
                    iter_seek(m, buf_slice(&t));
                    ref probe = {buf_slice(&t), -1};
                    pos = 0;
                    while (pos < f.nall && ref_cmp(&f.all[pos], &probe) < 0)
                        pos++;
                    buf_free(&t);
                } else if (op <= 5 && valid) {
                    iter_next(m);
                    pos++;
                } else if (valid) {
                    iter_prev(m);
                    pos--;
                }
                assert_pos(m, &f, pos);
            }
            iter_free(m);
            fixture_free(&f);
        }
    }
}
END_TEST

START_TEST(test_merger_full_scans_both_ways_yield_every_entry_once)
{
    tu_rng rng;
    tu_rng_init(&rng, 7);
    fixture f;
    fixture_make(&f, 9, &rng);
    iter *m = fixture_merger(&f, -1, -1);
    int pos = 0;
    for (iter_seek_first(m); iter_valid(m); iter_next(m))
        assert_pos(m, &f, pos++);
    ck_assert_int_eq(pos, f.nall);
    for (iter_seek_last(m); iter_valid(m); iter_prev(m))
        assert_pos(m, &f, --pos);
    ck_assert_int_eq(pos, 0);
    ck_assert_int_eq(iter_status(m), 0);
    iter_free(m);
    fixture_free(&f);
}
END_TEST

START_TEST(test_merger_child_error_stops_the_merge_instead_of_skipping_data)
{
    tu_rng rng;
    tu_rng_init(&rng, 8);
    fixture f;
    fixture_make(&f, 4, &rng);
    while (f.counts[2] < 10) {
        fixture_free(&f);
        fixture_make(&f, 4, &rng);
    }
    /* Child 2 fails when it reaches its 6th entry: the merge must stop with KV_EIO before
     * yielding anything that comes after child 2's 5th entry. */
    iter *m = fixture_merger(&f, 2, 5);
    slice fail_key = buf_slice(&f.keys[2][5]);
    int n = 0;
    for (iter_seek_first(m); iter_valid(m); iter_next(m)) {
        ck_assert_int_le(ikey_compare(iter_key(m), fail_key), 0);
        n++;
    }
    ck_assert_int_eq(iter_status(m), KV_EIO);
    ck_assert_int_gt(n, 0);
    /* Backward from the end reaches the failing entry too. */
    iter_seek_last(m);
    while (iter_valid(m))
        iter_prev(m);
    ck_assert_int_eq(iter_status(m), KV_EIO);
    /* A seek that lands on it fails at once. */
    iter_seek(m, fail_key);
    ck_assert(!iter_valid(m));
    ck_assert_int_eq(iter_status(m), KV_EIO);
    /* A seek elsewhere recovers. */
    iter_seek(m, buf_slice(&f.keys[2][0]));
    ck_assert(iter_valid(m));
    ck_assert_int_eq(iter_status(m), 0);
    iter_free(m);
    fixture_free(&f);
}
END_TEST

START_TEST(test_merger_of_a_failed_child_reports_its_status)
{
    iter *ch[3] = {iter_new_empty(0), iter_new_empty(KV_ECORRUPT), iter_new_empty(0)};
    iter *m = merger_new(ch, 3);
    iter_seek_first(m);
    ck_assert(!iter_valid(m));
    ck_assert_int_eq(iter_status(m), KV_ECORRUPT);
    iter_free(m);
    m = merger_new(NULL, 0);
    iter_seek_first(m);
    ck_assert(!iter_valid(m));
    ck_assert_int_eq(iter_status(m), 0);
    iter_free(m);
}
END_TEST

static Suite *merger_suite(void)
{
    Suite *s = suite_create("merger");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_merger_random_walks_match_the_sorted_union_including_ties);
    tcase_add_test(tc, test_merger_full_scans_both_ways_yield_every_entry_once);
    tcase_add_test(tc, test_merger_child_error_stops_the_merge_instead_of_skipping_data);
    tcase_add_test(tc, test_merger_of_a_failed_child_reports_its_status);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(merger_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
