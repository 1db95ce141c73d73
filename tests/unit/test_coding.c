/* test_coding.c - unit tests of fixed/varint/big-endian encodings and the byte buffer. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "kvcore/kv.h"
#include "util/coding.h"

START_TEST(test_coding_fixed_is_little_endian)
{
    char b[8];
    coding_put_fixed32(b, 0x04030201u);
    ck_assert_mem_eq(b, "\x01\x02\x03\x04", 4);
    ck_assert_uint_eq(coding_get_fixed32(b), 0x04030201u);
    coding_put_fixed64(b, 0x0807060504030201ull);
    ck_assert_mem_eq(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    ck_assert_uint_eq(coding_get_fixed64(b), 0x0807060504030201ull);
    coding_put_fixed64(b, UINT64_MAX);
    ck_assert_uint_eq(coding_get_fixed64(b), UINT64_MAX);
}
END_TEST

START_TEST(test_coding_varint_known_encodings)
{
    static const struct {
        uint64_t v;
        const char *enc;
        int len;
    } cases[] = {
        {0, "\x00", 1},
        {1, "\x01", 1},
        {127, "\x7f", 1},
        {128, "\x80\x01", 2},
        {300, "\xac\x02", 2},
        {16383, "\xff\x7f", 2},
        {16384, "\x80\x80\x01", 3},
        {UINT32_MAX, "\xff\xff\xff\xff\x0f", 5},
        {UINT64_MAX, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char b[CODING_MAX_VARINT64];
        char *end = coding_put_varint64(b, cases[i].v);
        ck_assert_int_eq(end - b, cases[i].len);
        ck_assert_int_eq(coding_varint_length(cases[i].v), cases[i].len);
        ck_assert_mem_eq(b, cases[i].enc, (size_t)cases[i].len);
        uint64_t got = 12345;
        ck_assert_ptr_eq(coding_get_varint64(b, end, &got), end);
        ck_assert_uint_eq(got, cases[i].v);
    }
}
END_TEST

START_TEST(test_coding_varint_roundtrip_at_every_width)
{
    char b[64 * CODING_MAX_VARINT64 * 3];
    char *p = b;
    /* 2^k - 1, 2^k and 2^k + 1 for every k exercise each length boundary. */
    for (int k = 0; k < 64; k++) {
        uint64_t base = (uint64_t)1 << k;
        p = coding_put_varint64(p, base - 1);
        p = coding_put_varint64(p, base);
        p = coding_put_varint64(p, base + 1);
    }
    const char *q = b;
    for (int k = 0; k < 64; k++) {
        uint64_t base = (uint64_t)1 << k, v;
        for (int d = -1; d <= 1; d++) {
            q = coding_get_varint64(q, p, &v);
            ck_assert_ptr_nonnull(q);
            ck_assert_uint_eq(v, base + (uint64_t)(int64_t)d);
        }
    }
    ck_assert_ptr_eq(q, p);

    char c[CODING_MAX_VARINT32];
    uint32_t vals[] = {
        0,        1,         127, 128, 16383, 16384, (1u << 21) - 1, 1u << 21, (1u << 28) - 1,
        1u << 28, UINT32_MAX};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char *end = coding_put_varint32(c, vals[i]);
        uint32_t got;
        ck_assert_ptr_eq(coding_get_varint32(c, end, &got), end);
        ck_assert_uint_eq(got, vals[i]);
    }
}
END_TEST

START_TEST(test_coding_truncated_varint_is_rejected)
{
    char b[CODING_MAX_VARINT64];
    char *end = coding_put_varint64(b, UINT64_MAX - 5);
    for (char *lim = b; lim < end; lim++) {
        uint64_t v;
        ck_assert_ptr_null(coding_get_varint64(b, lim, &v));
    }
    end = coding_put_varint32(b, 0x12345678u);
    for (char *lim = b; lim < end; lim++) {
        uint32_t v;
        ck_assert_ptr_null(coding_get_varint32(b, lim, &v));
    }
}
END_TEST

START_TEST(test_coding_varint_never_reads_past_limit)
{
    /* Continuation bytes right up to the limit: a decoder that peeks one byte too far would
     * read the poison byte (0x01) and succeed. */
    char b[16];
    memset(b, 0x80, sizeof b);
    b[3] = 0x01;
    uint64_t v;
    uint32_t w;
    ck_assert_ptr_null(coding_get_varint64(b, b + 3, &v));
    ck_assert_ptr_null(coding_get_varint32(b, b + 3, &w));
    ck_assert_ptr_eq(coding_get_varint64(b, b + 4, &v), b + 4);
    ck_assert_uint_eq(v, (uint64_t)1 << 21);
}
END_TEST

START_TEST(test_coding_overlong_or_overflowing_varint_is_rejected)
{
    uint32_t w;
    uint64_t v;
    /* 2^32: does not fit a varint32. */
    const char *big32 = "\x80\x80\x80\x80\x10";
    ck_assert_ptr_null(coding_get_varint32(big32, big32 + 5, &w));
    /* Six bytes for a varint32. */
    const char *long32 = "\x81\x80\x80\x80\x80\x00";
    ck_assert_ptr_null(coding_get_varint32(long32, long32 + 6, &w));
    /* 2^64: bit 64 set in the tenth byte. */
    const char *big64 = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02";
    ck_assert_ptr_null(coding_get_varint64(big64, big64 + 10, &v));
    /* Eleven bytes. */
    const char *long64 = "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00";
    ck_assert_ptr_null(coding_get_varint64(long64, long64 + 11, &v));
    /* Empty input. */
    ck_assert_ptr_null(coding_get_varint64(big64, big64, &v));
}
END_TEST

START_TEST(test_coding_slice_decoders_consume_exactly)
{
    buf b;
    buf_init(&b);
    ck_assert_int_eq(buf_append_varint32(&b, 300), 0);
    ck_assert_int_eq(buf_append_varint64(&b, (uint64_t)1 << 40), 0);
    ck_assert_int_eq(buf_append_fixed32(&b, 0xdeadbeefu), 0);
    ck_assert_int_eq(buf_append_fixed64(&b, 0x0123456789abcdefull), 0);
    ck_assert_int_eq(buf_append_length_prefixed(&b, slice_from_str("hello")), 0);
    ck_assert_int_eq(buf_append_length_prefixed(&b, slice_make("", 0)), 0);

    slice in = buf_slice(&b), s;
    uint32_t w;
    uint64_t v;
    ck_assert(coding_slice_get_varint32(&in, &w) && w == 300);
    ck_assert(coding_slice_get_varint64(&in, &v) && v == (uint64_t)1 << 40);
    ck_assert(coding_slice_get_fixed32(&in, &w) && w == 0xdeadbeefu);
    ck_assert(coding_slice_get_fixed64(&in, &v) && v == 0x0123456789abcdefull);
    ck_assert(coding_slice_get_length_prefixed(&in, &s));
    ck_assert(slice_equal(s, slice_from_str("hello")));
    ck_assert(coding_slice_get_length_prefixed(&in, &s));
    ck_assert_uint_eq(s.size, 0);
    ck_assert_uint_eq(in.size, 0);
    /* Nothing left: every decoder fails and leaves the slice alone. */
    ck_assert(!coding_slice_get_varint32(&in, &w));
    ck_assert(!coding_slice_get_fixed32(&in, &w));
    ck_assert(!coding_slice_get_fixed64(&in, &v));
    ck_assert(!coding_slice_get_length_prefixed(&in, &s));
    ck_assert_uint_eq(in.size, 0);
    buf_free(&b);
}
END_TEST

START_TEST(test_coding_length_prefix_longer_than_input_is_rejected)
{
    /* Claims 10 bytes, has 3. */
    const char data[] = "\x0a"
                        "abc";
    slice in = slice_make(data, 4), out = slice_make("x", 1);
    ck_assert(!coding_slice_get_length_prefixed(&in, &out));
    ck_assert_ptr_eq(in.data, data);
    ck_assert_uint_eq(in.size, 4);
    /* Short fixed fields likewise. */
    slice f = slice_make(data, 3);
    uint32_t w;
    uint64_t v;
    ck_assert(!coding_slice_get_fixed32(&f, &w));
    ck_assert(!coding_slice_get_fixed64(&f, &v));
    ck_assert_uint_eq(f.size, 3);
}
END_TEST

START_TEST(test_coding_be64_sorts_numerically)
{
    uint64_t vals[] = {0, 1, 255, 256, 65535, 1ull << 32, (1ull << 56) + 7, UINT64_MAX};
    for (size_t i = 0; i + 1 < sizeof vals / sizeof vals[0]; i++) {
        char a[8], b[8];
        coding_put_be64(a, vals[i]);
        coding_put_be64(b, vals[i + 1]);
        ck_assert_int_lt(memcmp(a, b, 8), 0);
        ck_assert_uint_eq(coding_get_be64(a), vals[i]);
    }
    char c[8];
    coding_put_be64(c, 0x0102030405060708ull);
    ck_assert_mem_eq(c, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
}
END_TEST

START_TEST(test_buf_grows_and_keeps_contents)
{
    buf b;
    buf_init(&b);
    ck_assert_uint_eq(b.len, 0);
    for (int i = 0; i < 10000; i++) {
        unsigned char x = (unsigned char)(i * 7);
        ck_assert_int_eq(buf_append(&b, &x, 1), 0);
    }
    ck_assert_uint_eq(b.len, 10000);
    ck_assert_uint_ge(b.cap, b.len);
    for (int i = 0; i < 10000; i++)
        ck_assert_uint_eq((unsigned char)b.data[i], (unsigned char)(i * 7));
    size_t cap = b.cap;
    buf_clear(&b);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, cap);
    ck_assert_int_eq(buf_append(&b, "xy", 2), 0);
    ck_assert_mem_eq(b.data, "xy", 2);
    ck_assert_int_eq(buf_append(&b, NULL, 0), 0);
    ck_assert_uint_eq(b.len, 2);
    buf_free(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
}
END_TEST

START_TEST(test_buf_impossible_reserve_fails_and_leaves_buffer_unchanged)
{
    buf b;
    buf_init(&b);
    ck_assert_int_eq(buf_append(&b, "abc", 3), 0);
    ck_assert_int_eq(buf_reserve(&b, SIZE_MAX - 1), KV_ENOMEM);
    ck_assert_uint_eq(b.len, 3);
    ck_assert_mem_eq(b.data, "abc", 3);
    buf_free(&b);
}
END_TEST

static Suite *coding_suite(void)
{
    Suite *s = suite_create("coding");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_coding_fixed_is_little_endian);
    tcase_add_test(tc, test_coding_varint_known_encodings);
    tcase_add_test(tc, test_coding_varint_roundtrip_at_every_width);
    tcase_add_test(tc, test_coding_truncated_varint_is_rejected);
    tcase_add_test(tc, test_coding_varint_never_reads_past_limit);
    tcase_add_test(tc, test_coding_overlong_or_overflowing_varint_is_rejected);
    tcase_add_test(tc, test_coding_slice_decoders_consume_exactly);
    tcase_add_test(tc, test_coding_length_prefix_longer_than_input_is_rejected);
    tcase_add_test(tc, test_coding_be64_sorts_numerically);
    tcase_add_test(tc, test_buf_grows_and_keeps_contents);
    tcase_add_test(tc, test_buf_impossible_reserve_fails_and_leaves_buffer_unchanged);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(coding_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
