/* test_block.c - unit tests of table/block: builder round trips, seek/prev, malformed blocks. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkutil.h"
#include "kvcore/kv.h"
#include "table/block.h"
#include "testutil.h"
#include "util/ikey.h"

static int bytewise(slice a, slice b)
{
    return slice_compare(a, b);
}

/* n sorted keys with long shared prefixes and occasional long keys (past the inline buffer). */
typedef struct kvset {
    char **k, **v;
    size_t *kl, *vl;
    size_t n;
} kvset;

static void kvset_make(kvset *s, size_t n, uint64_t seed)
{
    tu_rng rng;
    tu_rng_init(&rng, seed);
    s->n = n;
    s->k = calloc(n, sizeof(char *));
    s->v = calloc(n, sizeof(char *));
    s->kl = calloc(n, sizeof(size_t));
    s->vl = calloc(n, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        char tmp[256];
        int pad = (i % 7 == 3) ? 100 : 0; /* some keys longer than 64 bytes */
        int len = snprintf(tmp, sizeof(tmp), "user/%06zu/%0*d", i * 3, pad, 0);
        s->k[i] = malloc((size_t)len);
        memcpy(s->k[i], tmp, (size_t)len);
        s->kl[i] = (size_t)len;
        s->vl[i] = (size_t)tu_rng_below(&rng, 40);
        s->v[i] = malloc(s->vl[i] + 1);
        tu_rng_fill(&rng, s->v[i], s->vl[i]);
    }
}

static void kvset_free(kvset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->k[i]);
        free(s->v[i]);
    }
    free(s->k);
    free(s->v);
    free(s->kl);
    free(s->vl);
}

static slice K(const kvset *s, size_t i)
{
    return slice_make(s->k[i], s->kl[i]);
}

static slice V(const kvset *s, size_t i)
{
    return slice_make(s->v[i], s->vl[i]);
}

/* Builds a block of s into bb and returns a malloc'd copy of its bytes. */
static char *build(const kvset *s, int interval, size_t *size)
{
    block_builder bb;
    block_builder_init(&bb, interval);
    for (size_t i = 0; i < s->n; i++)
        ck_assert_int_eq(block_builder_add(&bb, K(s, i), V(s, i)), 0);
    size_t est = block_builder_size_estimate(&bb);
    slice out;
    ck_assert_int_eq(block_builder_finish(&bb, &out), 0);
    ck_assert_uint_eq(out.size, est);
    char *copy = malloc(out.size);
    memcpy(copy, out.data, out.size);
    *size = out.size;
    block_builder_free(&bb);
    return copy;
}

static void assert_at(const struct block_iter *it, const kvset *s, size_t i)
{
    ck_assert_msg(block_iter_valid(it), "iterator invalid where entry %zu expected", i);
    ck_assert_msg(slice_equal(block_iter_key(it), K(s, i)), "wrong key at %zu", i);
    ck_assert_msg(slice_equal(block_iter_value(it), V(s, i)), "wrong value at %zu", i);
}

START_TEST(test_block_round_trip_forward_and_backward_at_every_restart_interval)
{
    static const int intervals[] = {1, 2, 3, 16, 1000};
    kvset s;
    kvset_make(&s, 500, 1);
    for (size_t t = 0; t < sizeof(intervals) / sizeof(intervals[0]); t++) {
        size_t size;
        char *data = build(&s, intervals[t], &size);
        block b;
        const char *why = NULL;
        ck_assert_int_eq(block_init(&b, data, size, &why), 0);
        struct block_iter it;
        block_iter_init(&it, &b, bytewise, NULL);
        size_t i = 0;
        for (block_iter_seek_first(&it); block_iter_valid(&it); block_iter_next(&it))
            assert_at(&it, &s, i++);
        ck_assert_uint_eq(i, s.n);
        ck_assert_int_eq(block_iter_status(&it), 0);
        for (block_iter_seek_last(&it); block_iter_valid(&it); block_iter_prev(&it))
            assert_at(&it, &s, --i);
        ck_assert_uint_eq(i, 0);
        ck_assert_int_eq(block_iter_status(&it), 0);
        block_iter_release(&it);
        free(data);
    }
    kvset_free(&s);
}
END_TEST

START_TEST(test_block_prefix_compression_makes_blocks_smaller)
{
    kvset s;
    kvset_make(&s, 300, 2);
    for (size_t i = 0; i < s.n; i++)
        s.vl[i] = 0; /* measure the keys only */
    size_t plain, compressed;
    free(build(&s, 1, &plain));
    free(build(&s, 16, &compressed));
    ck_assert_msg(compressed < plain * 2 / 3, "interval 16: %zu bytes, interval 1: %zu", compressed,
                  plain);
    kvset_free(&s);
}
END_TEST

START_TEST(test_block_seek_finds_first_key_at_or_after_target)
{
    kvset s;
    kvset_make(&s, 400, 3);
    size_t size;
    char *data = build(&s, 16, &size);
    block b;
    const char *why;
    ck_assert_int_eq(block_init(&b, data, size, &why), 0);
    struct block_iter it;
    block_iter_init(&it, &b, bytewise, NULL);
    for (size_t i = 0; i < s.n; i++) {
        block_iter_seek(&it, K(&s, i));
        assert_at(&it, &s, i);
        /* Between key i and i+1 (keys step by 3): "user/NNNNNN" with +1. */
        char between[64];
        int len = snprintf(between, sizeof(between), "user/%06zu", i * 3 + 1);
        block_iter_seek(&it, slice_make(between, (size_t)len));
        if (i + 1 < s.n)
            assert_at(&it, &s, i + 1);
        else
            ck_assert(!block_iter_valid(&it) && block_iter_status(&it) == 0);
        /* prev from a seek lands on the entry before. */
        block_iter_seek(&it, K(&s, i));
        block_iter_prev(&it);
        if (i > 0)
            assert_at(&it, &s, i - 1);
        else
            ck_assert(!block_iter_valid(&it) && block_iter_status(&it) == 0);
    }
    block_iter_seek(&it, slice_from_str("a"));
    assert_at(&it, &s, 0);
    block_iter_seek(&it, slice_from_str("zzz"));
    ck_assert(!block_iter_valid(&it));
    ck_assert_int_eq(block_iter_status(&it), 0);
    block_iter_release(&it);
    free(data);
    kvset_free(&s);
}
END_TEST

START_TEST(test_block_direction_changes_anywhere_return_neighbours)
{
    kvset s;
    kvset_make(&s, 200, 4);
    size_t size;
    char *data = build(&s, 5, &size);
    block b;
    const char *why;
    ck_assert_int_eq(block_init(&b, data, size, &why), 0);
    iter *it = block_iter_new(&b, bytewise, NULL);
    ck_assert_ptr_nonnull(it);
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("block direction"));
    size_t pos = 0;
    iter_seek_first(it);
    for (int step = 0; step < 5000; step++) {
        int op = (int)tu_rng_below(&rng, 3);
        if (op == 0 && pos + 1 < s.n) {
            iter_next(it);
            pos++;
        } else if (op == 1 && pos > 0) {
            iter_prev(it);
            pos--;
        } else {
            pos = tu_rng_below(&rng, s.n);
            iter_seek(it, K(&s, pos));
        }
        ck_assert(iter_valid(it));
        ck_assert(slice_equal(iter_key(it), K(&s, pos)));
        ck_assert(slice_equal(iter_value(it), V(&s, pos)));
    }
    iter_free(it);
    free(data);
    kvset_free(&s);
}
END_TEST

START_TEST(test_block_empty_block_iterates_nothing)
{
    block_builder bb;
    block_builder_init(&bb, 16);
    ck_assert(block_builder_empty(&bb));
    slice out;
    ck_assert_int_eq(block_builder_finish(&bb, &out), 0);
    ck_assert_uint_eq(out.size, 8); /* one restart + count */
    block b;
    const char *why;
    ck_assert_int_eq(block_init(&b, out.data, out.size, &why), 0);
    struct block_iter it;
    block_iter_init(&it, &b, bytewise, NULL);
    block_iter_seek_first(&it);
    ck_assert(!block_iter_valid(&it));
    block_iter_seek_last(&it);
    ck_assert(!block_iter_valid(&it));
    block_iter_seek(&it, slice_from_str("x"));
    ck_assert(!block_iter_valid(&it));
    ck_assert_int_eq(block_iter_status(&it), 0);
    block_iter_release(&it);
    /* Reset and reuse the builder. */
    block_builder_reset(&bb);
    ck_assert_int_eq(block_builder_add(&bb, slice_from_str("k"), slice_from_str("v")), 0);
    ck_assert_int_eq(block_builder_finish(&bb, &out), 0);
    ck_assert_int_eq(block_init(&b, out.data, out.size, &why), 0);
    block_iter_init(&it, &b, bytewise, NULL);
    block_iter_seek_first(&it);
    ck_assert(block_iter_valid(&it));
    ck_assert(slice_equal(block_iter_key(&it), slice_from_str("k")));
    block_iter_release(&it);
    block_builder_free(&bb);
}
END_TEST

START_TEST(test_block_internal_keys_seek_by_ikey_order)
{
    /* One user key with several versions: a seek with a sequence finds the newest <= it. */
    block_builder bb;
    block_builder_init(&bb, 2);
    buf k;
    buf_init(&k);
    for (int seq = 9; seq >= 1; seq -= 2) {
        buf_clear(&k);
        ck_assert_int_eq(ikey_append(&k, slice_from_str("apple"), (uint64_t)seq, IKEY_TYPE_VALUE),
                         0);
        char v = (char)('0' + seq);
        ck_assert_int_eq(block_builder_add(&bb, buf_slice(&k), slice_make(&v, 1)), 0);
    }
    slice out;
    ck_assert_int_eq(block_builder_finish(&bb, &out), 0);
    block b;
    const char *why;
    ck_assert_int_eq(block_init(&b, out.data, out.size, &why), 0);
    struct block_iter it;
    block_iter_init(&it, &b, ikey_compare, NULL);
    buf_clear(&k);
    ck_assert_int_eq(ikey_append(&k, slice_from_str("apple"), 6, IKEY_TYPE_FOR_SEEK), 0);
    block_iter_seek(&it, buf_slice(&k));
    ck_assert(block_iter_valid(&it));
    ck_assert_int_eq(block_iter_value(&it).data[0], '5');
    block_iter_release(&it);
    buf_free(&k);
    block_builder_free(&bb);
}
END_TEST

START_TEST(test_block_bad_restart_arrays_are_rejected)
{
    const char *why = NULL;
    block b;
    char tiny[3] = {0};
    ck_assert_int_eq(block_init(&b, tiny, sizeof(tiny), &why), KV_ECORRUPT);
    ck_assert_ptr_nonnull(why);
    /* num_restarts = 0 */
    char zero[4] = {0};
    ck_assert_int_eq(block_init(&b, zero, sizeof(zero), &why), KV_ECORRUPT);
    /* num_restarts larger than the block can hold */
    char big[8];
    coding_put_fixed32(big, 0);
    coding_put_fixed32(big + 4, 1000);
    ck_assert_int_eq(block_init(&b, big, sizeof(big), &why), KV_ECORRUPT);
    /* A real block whose second restart points backwards, then past the entries. */
    block_builder bb;
    block_builder_init(&bb, 1);
    ck_assert_int_eq(block_builder_add(&bb, slice_from_str("a"), slice_from_str("1")), 0);
    ck_assert_int_eq(block_builder_add(&bb, slice_from_str("b"), slice_from_str("2")), 0);
    slice out;
    ck_assert_int_eq(block_builder_finish(&bb, &out), 0);
    char *copy = malloc(out.size);
    memcpy(copy, out.data, out.size);
    ck_assert_int_eq(block_init(&b, copy, out.size, &why), 0);
    size_t r1 = out.size - 8;
    coding_put_fixed32(copy + r1, 0);
    ck_assert_int_eq(block_init(&b, copy, out.size, &why), KV_ECORRUPT);
    coding_put_fixed32(copy + r1, (uint32_t)(out.size - 12));
    ck_assert_int_eq(block_init(&b, copy, out.size, &why), KV_ECORRUPT);
    coding_put_fixed32(copy + out.size - 12, 1); /* first restart not at 0 */
    ck_assert_int_eq(block_init(&b, copy, out.size, &why), KV_ECORRUPT);
    free(copy);
    block_builder_free(&bb);
}
END_TEST

static int log_count;
static void count_log(void *ctx, int level, const char *msg)
{
    if (level == KV_LOG_ERROR && strstr(msg, "sst t.sst: data block at offset 77:"))
        log_count++;
}

START_TEST(test_block_malformed_entries_make_iterator_corrupt_and_log)
{
    /* Entry: shared=0 non_shared=200 value=0, but only 1 byte follows. */
    char data[16];
    size_t n = 0;
    data[n++] = 0;
    data[n++] = (char)200;
    data[n++] = 1;
    data[n++] = 0;
    data[n++] = 'k';
    coding_put_fixed32(data + n, 0);
    coding_put_fixed32(data + n + 4, 1);
    n += 8;
    block b;
    const char *why;
    ck_assert_int_eq(block_init(&b, data, n, &why), 0);
    kv_logger lg = {count_log, NULL, KV_LOG_DEBUG};
    block_origin o = {&lg, "t.sst", "data", 77};
    struct block_iter it;
    block_iter_init(&it, &b, bytewise, &o);
    log_count = 0;
    block_iter_seek_first(&it);
    ck_assert(!block_iter_valid(&it));
    ck_assert_int_eq(block_iter_status(&it), KV_ECORRUPT);
    ck_assert_int_eq(log_count, 1);
    /* Errors are sticky. */
    block_iter_seek_last(&it);
    ck_assert(!block_iter_valid(&it));
    ck_assert_int_eq(block_iter_status(&it), KV_ECORRUPT);
    block_iter_release(&it);

    /* A restart entry that claims a shared prefix. */
    char d2[16];
    n = 0;
    d2[n++] = 2;
    d2[n++] = 1;
    d2[n++] = 0;
    d2[n++] = 'k';
    coding_put_fixed32(d2 + n, 0);
    coding_put_fixed32(d2 + n + 4, 1);
    n += 8;
    ck_assert_int_eq(block_init(&b, d2, n, &why), 0);
    block_iter_init(&it, &b, bytewise, NULL);
    block_iter_seek(&it, slice_from_str("a"));
    ck_assert_int_eq(block_iter_status(&it), KV_ECORRUPT);
    block_iter_release(&it);
}
END_TEST

/* Walks the block both ways; if both walks end cleanly they must agree (a damaged block may
 * decode to other entries, but never inconsistently, and never outside its bytes). */
static void check_consistent(const char *data, size_t size)
{
    block b;
    const char *why;
    if (block_init(&b, data, size, &why) != 0)
        return;
    struct block_iter it;
    block_iter_init(&it, &b, bytewise, NULL);
    size_t nf = 0, nb = 0;
    slice *fk = NULL; /* forward keys, copied */
    for (block_iter_seek_first(&it); block_iter_valid(&it); block_iter_next(&it)) {
        slice k = block_iter_key(&it), v = block_iter_value(&it);
        ck_assert_uint_le(k.size, size);
        ck_assert(v.size == 0 || (v.data >= data && v.data + v.size <= data + size));
        fk = realloc(fk, (nf + 1) * sizeof(*fk));
        char *c = malloc(k.size + 1);
        if (k.size)
            memcpy(c, k.data, k.size);
        fk[nf++] = slice_make(c, k.size);
        ck_assert_uint_le(nf, size);
    }
    int fstatus = block_iter_status(&it);
    block_iter_release(&it);
    block_iter_init(&it, &b, bytewise, NULL);
    for (block_iter_seek_last(&it); block_iter_valid(&it); block_iter_prev(&it)) {
        nb++;
        ck_assert_uint_le(nb, size);
        if (fstatus == 0)
            ck_assert_msg(nb <= nf && slice_equal(block_iter_key(&it), fk[nf - nb]),
                          "backward walk disagrees with forward walk at %zu", nb);
    }
    if (fstatus == 0 && block_iter_status(&it) == 0)
        ck_assert_uint_eq(nf, nb);
    block_iter_release(&it);
    for (size_t i = 0; i < nf; i++)
        free((char *)fk[i].data);
    free(fk);
}

START_TEST(test_block_every_byte_flip_and_truncation_is_safe_and_consistent)
{
    kvset s;
    kvset_make(&s, 30, 5);
    size_t size;
    char *data = build(&s, 4, &size);
    char *copy = malloc(size);
    for (size_t i = 0; i < size; i++) {
        static const unsigned char masks[] = {0x01, 0x80, 0xff};
        for (size_t m = 0; m < sizeof(masks); m++) {
            memcpy(copy, data, size);
            copy[i] ^= (char)masks[m];
            check_consistent(copy, size);
        }
    }
    for (size_t len = 0; len < size; len++) {
        char *t = malloc(len ? len : 1); /* exact size: ASan catches any overread */
        memcpy(t, data, len);
        check_consistent(t, len);
        free(t);
    }
    free(copy);
    free(data);
    kvset_free(&s);
}
END_TEST

static Suite *block_suite(void)
{
    Suite *s = suite_create("block");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_block_round_trip_forward_and_backward_at_every_restart_interval);
    tcase_add_test(tc, test_block_prefix_compression_makes_blocks_smaller);
    tcase_add_test(tc, test_block_seek_finds_first_key_at_or_after_target);
    tcase_add_test(tc, test_block_direction_changes_anywhere_return_neighbours);
    tcase_add_test(tc, test_block_empty_block_iterates_nothing);
    tcase_add_test(tc, test_block_internal_keys_seek_by_ikey_order);
    tcase_add_test(tc, test_block_bad_restart_arrays_are_rejected);
    tcase_add_test(tc, test_block_malformed_entries_make_iterator_corrupt_and_log);
    tcase_add_test(tc, test_block_every_byte_flip_and_truncation_is_safe_and_consistent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(block_suite());
}
