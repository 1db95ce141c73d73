/* test_batch.c - write batches: encoding, iteration, counts, append and malformed input. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/batch.h"
#include "db/memtable.h"
#include "testutil.h"
#include "util/coding.h"
#include "util/ikey.h"

/* A handler that prints each op into a text log ("P seq key=value;" / "D seq key;"). */
typedef struct op_log {
    char text[8192]; /* what fits; later ops are counted but not logged */
    size_t len;
    int calls;
    int fail_at; /* return -42 on this call (1-based); 0: never */
} op_log;

static int log_put(void *ctx, uint64_t seq, slice key, slice value)
{
    op_log *l = ctx;
    if (++l->calls == l->fail_at)
        return -42;
    if (l->len + 200 + key.size + value.size >= sizeof(l->text))
        return 0;
    l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, "P%llu %.*s=%.*s;",
                               (unsigned long long)seq, (int)key.size, key.data, (int)value.size,
                               value.data);
    return 0;
}

static int log_del(void *ctx, uint64_t seq, slice key)
{
    op_log *l = ctx;
    if (++l->calls == l->fail_at)
        return -42;
    if (l->len + 200 + key.size >= sizeof(l->text))
        return 0;
    l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, "D%llu %.*s;",
                               (unsigned long long)seq, (int)key.size, key.data);
    return 0;
}

static int iterate_into(slice rep, op_log *l)
{
    memset(l, 0, sizeof(*l));
    batch_handler h = {log_put, log_del, l};
    return batch_iterate(rep, &h);
}

static slice rep_of(const kv_batch *b)
{
    return buf_slice(&b->rep);
}

START_TEST(test_batch_new_batch_is_empty)
{
    kv_batch *b = kv_batch_new();
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(kv_batch_count(b), 0);
    ck_assert_uint_eq(kv_batch_byte_size(b), BATCH_HEADER_SIZE);
    ck_assert_uint_eq(batch_sequence(b), 0);
    op_log l;
    ck_assert_int_eq(iterate_into(rep_of(b), &l), 0);
    ck_assert_int_eq(l.calls, 0);
    kv_batch_free(b);
    kv_batch_free(NULL);
}
END_TEST

START_TEST(test_batch_ops_iterate_in_order_with_consecutive_sequences)
{
    kv_batch *b = kv_batch_new();
    ck_assert_int_eq(kv_batch_put(b, "k1", 2, "v1", 2), 0);
    ck_assert_int_eq(kv_batch_delete(b, "k2", 2), 0);
    ck_assert_int_eq(kv_batch_put(b, "k1", 2, "again", 5), 0);
    ck_assert_int_eq(kv_batch_put(b, "", 0, "", 0), 0); /* empty key and value are allowed */
    ck_assert_int_eq(kv_batch_delete(b, NULL, 0), 0);
    batch_set_sequence(b, 100);
    ck_assert_uint_eq(batch_sequence(b), 100);
    ck_assert_uint_eq(kv_batch_count(b), 5);
    ck_assert_uint_eq(batch_count(b), 5);
    /* header + (1+1+2+1+2) + (1+1+2) + (1+1+2+1+5) + (1+1+1) + (1+1) */
    ck_assert_uint_eq(kv_batch_byte_size(b), BATCH_HEADER_SIZE + 7 + 4 + 10 + 3 + 2);
    op_log l;
    ck_assert_int_eq(iterate_into(rep_of(b), &l), 0);
    ck_assert_str_eq(l.text, "P100 k1=v1;D101 k2;P102 k1=again;P103 =;D104 ;");
    kv_batch_free(b);
}
END_TEST

START_TEST(test_batch_encoding_matches_the_documented_grammar)
{
    kv_batch *b = kv_batch_new();
    ck_assert_int_eq(kv_batch_put(b, "ab", 2, "xyz", 3), 0);
    ck_assert_int_eq(kv_batch_delete(b, "q", 1), 0);
    batch_set_sequence(b, 0x0102030405060708ULL);
    const unsigned char want[] = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* sequence */
                                  0x02, 0x00, 0x00, 0x00,                         /* count */
                                  0x01, 0x02, 'a',  'b',  0x03, 'x',  'y',  'z',  /* put */
                                  0x00, 0x01, 'q'};                               /* delete */
    ck_assert_uint_eq(kv_batch_byte_size(b), sizeof(want));
    ck_assert_int_eq(memcmp(b->rep.data, want, sizeof(want)), 0);
    kv_batch_free(b);
}
END_TEST

START_TEST(test_batch_clear_empties_and_allows_reuse)
{
    kv_batch *b = kv_batch_new();
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(kv_batch_put(b, "key", 3, "value", 5), 0);
    batch_set_sequence(b, 7);
    kv_batch_clear(b);
    ck_assert_uint_eq(kv_batch_count(b), 0);
    ck_assert_uint_eq(kv_batch_byte_size(b), BATCH_HEADER_SIZE);
    ck_assert_uint_eq(batch_sequence(b), 0);
    ck_assert_int_eq(kv_batch_delete(b, "z", 1), 0);
    op_log l;
    ck_assert_int_eq(iterate_into(rep_of(b), &l), 0);
    ck_assert_str_eq(l.text, "D0 z;");
    kv_batch_free(b);
}
END_TEST

START_TEST(test_batch_append_concatenates_ops_and_counts)
{
    kv_batch *a = kv_batch_new(), *b = kv_batch_new(), *empty = kv_batch_new();
    ck_assert_int_eq(kv_batch_put(a, "a", 1, "1", 1), 0);
    ck_assert_int_eq(kv_batch_delete(b, "b", 1), 0);
    ck_assert_int_eq(kv_batch_put(b, "c", 1, "3", 1), 0);
    batch_set_sequence(a, 10);
    batch_set_sequence(b, 99); /* src's sequence is irrelevant */
    ck_assert_int_eq(batch_append(a, b), 0);
    ck_assert_int_eq(batch_append(a, empty), 0);
    ck_assert_uint_eq(kv_batch_count(a), 3);
    ck_assert_uint_eq(kv_batch_byte_size(a),
                      kv_batch_byte_size(b) + 5); /* b's ops + a's single put (header same) */
    op_log l;
    ck_assert_int_eq(iterate_into(rep_of(a), &l), 0);
    ck_assert_str_eq(l.text, "P10 a=1;D11 b;P12 c=3;");
    ck_assert_uint_eq(kv_batch_count(b), 2); /* src unchanged */
    /* Appending a batch to itself doubles it (the buffer may move while it grows). */
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(batch_append(b, b), 0);
    ck_assert_uint_eq(kv_batch_count(b), 2 * 1024);
    ck_assert_int_eq(iterate_into(rep_of(b), &l), 0);
    ck_assert_int_eq(l.calls, 2 * 1024);
    kv_batch_free(a);
    kv_batch_free(b);
    kv_batch_free(empty);
}
END_TEST

START_TEST(test_batch_set_contents_round_trips_and_rejects_short_input)
{
    kv_batch *a = kv_batch_new(), *b = kv_batch_new();
    ck_assert_int_eq(kv_batch_put(a, "k", 1, "v", 1), 0);
    batch_set_sequence(a, 5);
    ck_assert_int_eq(kv_batch_put(b, "old", 3, "x", 1), 0);
    ck_assert_int_eq(batch_set_contents(b, rep_of(a)), 0);
    ck_assert_uint_eq(kv_batch_byte_size(b), kv_batch_byte_size(a));
    ck_assert_int_eq(memcmp(b->rep.data, a->rep.data, kv_batch_byte_size(a)), 0);
    size_t before = kv_batch_byte_size(b);
    ck_assert_int_eq(batch_set_contents(b, slice_make(a->rep.data, BATCH_HEADER_SIZE - 1)),
                     KV_ECORRUPT);
    ck_assert_uint_eq(kv_batch_byte_size(b), before); /* unchanged on failure */
    kv_batch_free(a);
    kv_batch_free(b);
}
END_TEST

START_TEST(test_batch_every_truncation_is_corrupt_and_calls_no_handler)
{
    kv_batch *b = kv_batch_new();
    ck_assert_int_eq(kv_batch_put(b, "alpha", 5, "one", 3), 0);
    ck_assert_int_eq(kv_batch_delete(b, "beta", 4), 0);
    ck_assert_int_eq(kv_batch_put(b, "gamma", 5, "three", 5), 0);
    slice full = rep_of(b);
    for (size_t cut = 0; cut < full.size; cut++) {
        op_log l;
        ck_assert_msg(iterate_into(slice_make(full.data, cut), &l) == KV_ECORRUPT,
                      "cut at %zu accepted", cut);
        ck_assert_int_eq(l.calls, 0); /* never half applied */
    }
    op_log l;
    ck_assert_int_eq(iterate_into(full, &l), 0);
    ck_assert_int_eq(l.calls, 3);
    kv_batch_free(b);
}
END_TEST

/* Copies rep into a fresh buffer, applies an edit, iterates; returns the result. */
static int iterate_edited(slice rep, size_t at, const char *bytes, size_t n, size_t extra_len,
                          op_log *l)
{
    char tmp[256];
    ck_assert_uint_le(rep.size + extra_len, sizeof(tmp));
    memcpy(tmp, rep.data, rep.size);
    memcpy(tmp + at, bytes, n);
    return iterate_into(slice_make(tmp, rep.size + extra_len), l);
}

START_TEST(test_batch_malformed_inputs_are_corrupt)
{
    kv_batch *b = kv_batch_new();
    ck_assert_int_eq(kv_batch_put(b, "k", 1, "v", 1), 0);
    ck_assert_int_eq(kv_batch_delete(b, "d", 1), 0);
    slice rep = rep_of(b); /* header | 01 01 'k' 01 'v' | 00 01 'd' */
    op_log l;
    char c;

    c = 3; /* count says 3, two ops present */
    ck_assert_int_eq(iterate_edited(rep, 8, &c, 1, 0, &l), KV_ECORRUPT);
    ck_assert_int_eq(l.calls, 0);
    c = 1; /* count says 1, two ops present */
    ck_assert_int_eq(iterate_edited(rep, 8, &c, 1, 0, &l), KV_ECORRUPT);
    ck_assert_int_eq(l.calls, 0);
    c = 2; /* unknown tag */
    ck_assert_int_eq(iterate_edited(rep, 12, &c, 1, 0, &l), KV_ECORRUPT);
    c = (char)0x80; /* a put tag with the high bit */
    ck_assert_int_eq(iterate_edited(rep, 12, &c, 1, 0, &l), KV_ECORRUPT);
    c = 9; /* key length runs past the end */
    ck_assert_int_eq(iterate_edited(rep, 13, &c, 1, 0, &l), KV_ECORRUPT);
    c = 0x7f; /* delete's key length runs past the end */
    ck_assert_int_eq(iterate_edited(rep, 18, &c, 1, 0, &l), KV_ECORRUPT);
    /* trailing garbage after the last op */
    const char junk = 0x01;
    ck_assert_int_eq(iterate_edited(rep, rep.size, &junk, 1, 1, &l), KV_ECORRUPT);
    /* an overlong varint (6 bytes) as the key length of a third op the count announces */
    char tmp[64];
    memcpy(tmp, rep.data, rep.size);
    tmp[8] = 3;
    const char overlong[] = {0x00,       (char)0x81, (char)0x80, (char)0x80,
                             (char)0x80, (char)0x80, 0x00,       'x'};
    memcpy(tmp + rep.size, overlong, sizeof(overlong));
    ck_assert_int_eq(iterate_into(slice_make(tmp, rep.size + sizeof(overlong)), &l), KV_ECORRUPT);
    ck_assert_int_eq(l.calls, 0);
    /* a sequence so high that the batch's last op would exceed the maximum */
    char seq[8];
    coding_put_fixed64(seq, IKEY_MAX_SEQUENCE);
    ck_assert_int_eq(iterate_edited(rep, 0, seq, 8, 0, &l), KV_ECORRUPT);
    coding_put_fixed64(seq, IKEY_MAX_SEQUENCE - 1); /* exactly fits */
    ck_assert_int_eq(iterate_edited(rep, 0, seq, 8, 0, &l), 0);
    ck_assert_int_eq(l.calls, 2);
    kv_batch_free(b);
}
END_TEST

START_TEST(test_batch_random_bytes_never_crash)
{
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_batch_random_bytes_never_crash"));
    char data[200];
    int accepted = 0;
    for (int i = 0; i < 200000; i++) {
        size_t n = tu_rng_below(&rng, sizeof(data) + 1);
        tu_rng_fill(&rng, data, n);
        if (n >= BATCH_HEADER_SIZE) {
            /* Small counts and small lengths give the parser something to chew on. */
            coding_put_fixed32(data + 8, (uint32_t)tu_rng_below(&rng, 4));
            for (size_t j = BATCH_HEADER_SIZE; j < n; j++)
                if (tu_rng_chance(&rng, 3, 4))
                    data[j] &= 0x03;
        }
        op_log l;
        int rc = iterate_into(slice_make(data, n), &l);
        ck_assert(rc == 0 || rc == KV_ECORRUPT);
        if (rc == KV_ECORRUPT)
            ck_assert_int_eq(l.calls, 0);
        else
            accepted++;
    }
    ck_assert_int_gt(accepted, 0); /* some inputs were valid, so parsing was exercised */
}
END_TEST

START_TEST(test_batch_handler_error_stops_iteration)
{
    kv_batch *b = kv_batch_new();
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(kv_batch_put(b, "k", 1, "v", 1), 0);
    op_log l;
    memset(&l, 0, sizeof(l));
    l.fail_at = 3;
    batch_handler h = {log_put, log_del, &l};
    ck_assert_int_eq(batch_iterate(rep_of(b), &h), -42);
    ck_assert_int_eq(l.calls, 3);
    kv_batch_free(b);
}
END_TEST

START_TEST(test_batch_insert_into_memtable_applies_every_op)
{
    kv_batch *b = kv_batch_new();
    ck_assert_int_eq(kv_batch_put(b, "a", 1, "1", 1), 0);
    ck_assert_int_eq(kv_batch_put(b, "b", 1, "2", 1), 0);
    ck_assert_int_eq(kv_batch_delete(b, "a", 1), 0);
    batch_set_sequence(b, 50);
    memtable *m = memtable_new();
    ck_assert_int_eq(batch_insert_into_memtable(rep_of(b), m), 0);
    ck_assert_uint_eq(memtable_num_entries(m), 3);
    buf v;
    buf_init(&v);
    ck_assert_int_eq(memtable_get(m, slice_from_str("a"), 52, &v), MEMTABLE_DELETED);
    ck_assert_int_eq(memtable_get(m, slice_from_str("a"), 51, &v), MEMTABLE_FOUND);
    ck_assert(slice_equal(buf_slice(&v), slice_from_str("1")));
    buf_clear(&v);
    ck_assert_int_eq(memtable_get(m, slice_from_str("b"), 100, &v), MEMTABLE_FOUND);
    ck_assert(slice_equal(buf_slice(&v), slice_from_str("2")));
    ck_assert_int_eq(memtable_get(m, slice_from_str("b"), 50, &v), MEMTABLE_ABSENT);
    /* A corrupt batch inserts nothing. */
    char bad[64];
    memcpy(bad, b->rep.data, b->rep.len);
    bad[8] = 9;
    ck_assert_int_eq(batch_insert_into_memtable(slice_make(bad, b->rep.len), m), KV_ECORRUPT);
    ck_assert_uint_eq(memtable_num_entries(m), 3);
    buf_free(&v);
    memtable_unref(m);
    kv_batch_free(b);
}
END_TEST

START_TEST(test_batch_large_values_round_trip)
{
    kv_batch *b = kv_batch_new();
    size_t n = 3 * 1024 * 1024;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 13);
    ck_assert_int_eq(kv_batch_put(b, big, 300, big, n), 0);
    ck_assert_uint_eq(kv_batch_byte_size(b), BATCH_HEADER_SIZE + 1 + 2 + 300 + 4 + n);
    kv_batch *c = kv_batch_new();
    ck_assert_int_eq(batch_set_contents(c, rep_of(b)), 0);
    slice in = slice_make(c->rep.data + BATCH_HEADER_SIZE, c->rep.len - BATCH_HEADER_SIZE);
    ck_assert_int_eq(in.data[0], 1);
    in.data++;
    in.size--;
    slice k, v;
    ck_assert(coding_slice_get_length_prefixed(&in, &k));
    ck_assert(coding_slice_get_length_prefixed(&in, &v));
    ck_assert(slice_equal(k, slice_make(big, 300)));
    ck_assert(slice_equal(v, slice_make(big, n)));
    ck_assert_uint_eq(in.size, 0);
    free(big);
    kv_batch_free(b);
    kv_batch_free(c);
}
END_TEST

/* kv_put and kv_delete encode their one op on the stack (batch_init_single): the bytes must be
 * those a heap batch gets, including 2-byte length varints (>= 128), and a too small buffer is
 * refused rather than overrun. */
START_TEST(test_batch_single_op_on_the_stack_encodes_like_a_heap_batch)
{
    static const size_t sizes[] = {0, 1, 16, 127, 128, 300};
    char data[300];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7 + 1);
    for (size_t ki = 0; ki < sizeof(sizes) / sizeof(sizes[0]); ki++)
        for (size_t vi = 0; vi < sizeof(sizes) / sizeof(sizes[0]); vi++)
            for (int is_put = 0; is_put <= 1; is_put++) {
                slice k = slice_make(data, sizes[ki]), v = slice_make(data + 1, sizes[vi] / 2);
                kv_batch *heap = kv_batch_new();
                ck_assert_int_eq(is_put ? kv_batch_put(heap, k.data, k.size, v.data, v.size)
                                        : kv_batch_delete(heap, k.data, k.size),
                                 0);
                char mem[1024];
                memset(mem, 0xAA, sizeof(mem));
                kv_batch sb;
                ck_assert_int_eq(batch_init_single(&sb, mem, sizeof(mem), is_put, k, v), 0);
                ck_assert_uint_eq(kv_batch_byte_size(&sb), kv_batch_byte_size(heap));
                ck_assert_int_eq(memcmp(sb.rep.data, heap->rep.data, heap->rep.len), 0);
                ck_assert_uint_eq(kv_batch_count(&sb), 1);
                /* Exactly the op's bytes were written: the rest of mem is untouched. */
                for (size_t j = heap->rep.len; j < sizeof(mem); j++)
                    ck_assert_int_eq((unsigned char)mem[j], 0xAA);
                /* A buffer too small for the encoding is refused. */
                char small[16];
                kv_batch tb;
                if (heap->rep.len + 2 * CODING_MAX_VARINT32 > sizeof(small))
                    ck_assert_int_eq(batch_init_single(&tb, small, sizeof(small), is_put, k, v),
                                     KV_EINVAL);
                kv_batch_free(heap);
            }
}
END_TEST

/* The memtable keeps 32-bit lengths, so a batch refuses a key whose internal form (key + 8-byte
 * tag) would not fit in one (the lengths are checked before any byte is read). */
START_TEST(test_batch_refuses_a_key_too_long_for_the_memtable)
{
    kv_batch *b = kv_batch_new();
    static const char byte = 'k';
    ck_assert_int_eq(kv_batch_put(b, &byte, (size_t)UINT32_MAX - IKEY_TAG_SIZE + 1, "v", 1),
                     KV_EINVAL);
    ck_assert_int_eq(kv_batch_delete(b, &byte, (size_t)UINT32_MAX), KV_EINVAL);
    ck_assert_uint_eq(kv_batch_count(b), 0);
    ck_assert_uint_eq(kv_batch_byte_size(b), BATCH_HEADER_SIZE);
    memtable *m = memtable_new();
    ck_assert_int_eq(memtable_add(m, 1, IKEY_TYPE_VALUE,
                                  slice_make(&byte, (size_t)UINT32_MAX - IKEY_TAG_SIZE + 1),
                                  slice_make("v", 1)),
                     KV_EINVAL);
    ck_assert_int_eq(memtable_add(m, 1, IKEY_TYPE_VALUE, slice_make(&byte, 1),
                                  slice_make(&byte, (size_t)UINT32_MAX + 1)),
                     KV_EINVAL);
    ck_assert_uint_eq(memtable_num_entries(m), 0);
    memtable_unref(m);
    kv_batch_free(b);
}
END_TEST

static Suite *batch_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_batch_new_batch_is_empty);
    tcase_add_test(tc, test_batch_ops_iterate_in_order_with_consecutive_sequences);
    tcase_add_test(tc, test_batch_encoding_matches_the_documented_grammar);
    tcase_add_test(tc, test_batch_clear_empties_and_allows_reuse);
    tcase_add_test(tc, test_batch_append_concatenates_ops_and_counts);
    tcase_add_test(tc, test_batch_set_contents_round_trips_and_rejects_short_input);
    tcase_add_test(tc, test_batch_every_truncation_is_corrupt_and_calls_no_handler);
    tcase_add_test(tc, test_batch_malformed_inputs_are_corrupt);
    tcase_add_test(tc, test_batch_random_bytes_never_crash);
    tcase_add_test(tc, test_batch_handler_error_stops_iteration);
    tcase_add_test(tc, test_batch_insert_into_memtable_applies_every_op);
    tcase_add_test(tc, test_batch_large_values_round_trip);
    tcase_add_test(tc, test_batch_single_op_on_the_stack_encodes_like_a_heap_batch);
    tcase_add_test(tc, test_batch_refuses_a_key_too_long_for_the_memtable);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(batch_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
