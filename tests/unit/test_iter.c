/* test_iter.c - the internal iterator header: cleanups, iter_free order, the empty iterator. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "kvcore/kv.h"
#include "util/iter.h"

/* A do-nothing iterator whose destroy still reads the state a cleanup frees, as an sst
 * iterator reads its reader (owned by a table cache handle that a cleanup releases). */
struct probe_state {
    int alive; /* 1 until the cleanup "frees" it */
    char log[16];
    size_t n;
};

struct probe_iter {
    iter base;
    struct probe_state *st;
};

static int p_valid(const iter *it)
{
    return 0;
}
static void p_move(iter *it)
{
}
static void p_seek(iter *it, slice target)
{
}
static slice p_slice(const iter *it)
{
    slice s = {0};
    return s;
}
static int p_status(const iter *it)
{
    return 0;
}
static void p_destroy(iter *it)
{
    struct probe_iter *p = (struct probe_iter *)it;
    ck_assert_msg(p->st->alive, "destroy ran after a cleanup released what it reads");
    p->st->log[p->st->n++] = 'D';
    free(p);
}

static const struct iter_ops probe_ops = {
    .valid = p_valid,
    .seek_first = p_move,
    .seek_last = p_move,
    .seek = p_seek,
    .next = p_move,
    .prev = p_move,
    .key = p_slice,
    .value = p_slice,
    .status = p_status,
    .destroy = p_destroy,
};

static void release_state(void *arg1, void *arg2)
{
    struct probe_state *st = arg1;
    st->alive = 0;
    st->log[st->n++] = *(char *)arg2;
}

/* Regression: iter_free ran the cleanups first, so freeing an sst iterator whose table had
 * been evicted read the freed reader (ASan heap-use-after-free in block_ref_release). */
START_TEST(test_iter_free_destroys_before_running_cleanups_newest_first)
{
    struct probe_state st = {.alive = 1};
    char one = '1', two = '2';
    struct probe_iter *p = calloc(1, sizeof *p);
    ck_assert_ptr_nonnull(p);
    iter_init(&p->base, &probe_ops);
    p->st = &st;
    ck_assert_int_eq(iter_register_cleanup(&p->base, release_state, &st, &one), 0);
    ck_assert_int_eq(iter_register_cleanup(&p->base, release_state, &st, &two), 0);
    iter_free(&p->base);
    ck_assert_str_eq(st.log, "D21");
    ck_assert_int_eq(st.alive, 0);
}
END_TEST

START_TEST(test_iter_free_of_null_is_a_no_op)
{
    iter_free(NULL);
}
END_TEST

START_TEST(test_empty_iter_is_invalid_and_reports_its_status)
{
    iter *it = iter_new_empty(KV_ECORRUPT);
    ck_assert_ptr_nonnull(it);
    iter_seek_first(it);
    ck_assert_int_eq(iter_valid(it), 0);
    ck_assert_int_eq(iter_status(it), KV_ECORRUPT);
    iter_free(it);
    it = iter_new_empty(0);
    ck_assert_ptr_nonnull(it);
    iter_seek_last(it);
    ck_assert_int_eq(iter_valid(it), 0);
    ck_assert_int_eq(iter_status(it), 0);
    iter_free(it);
}
END_TEST

static Suite *iter_suite(void)
{
    Suite *s = suite_create("iter");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_iter_free_destroys_before_running_cleanups_newest_first);
    tcase_add_test(tc, test_iter_free_of_null_is_a_no_op);
    tcase_add_test(tc, test_empty_iter_is_invalid_and_reports_its_status);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(iter_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
