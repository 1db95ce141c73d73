/* test_checksum.c - the on-disk checksum is XXH3-64 seed 0, one-shot and incremental agree. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "util/checksum.h"

#define SANITY_LEN 2367

/* The input xxHash's own sanity check uses (cli/xsum_sanity_check.c): byte i is the top byte
 * of PRIME32 * PRIME64^i. */
static unsigned char sanity[SANITY_LEN];

static void fill_sanity(void)
{
    uint64_t gen = 2654435761u;
    for (size_t i = 0; i < SANITY_LEN; i++) {
        sanity[i] = (unsigned char)(gen >> 56);
        gen *= 11400714785074694797ull;
    }
}

/* Published XXH3_64bits(seed 0) values from upstream xxHash: a different algorithm or seed (an
 * on-disk format change) fails here. The lengths cover every internal code path. */
static const struct {
    size_t len;
    uint64_t hash;
} vectors[] = {
    {0, 0x2D06800538D394C2ull},    {1, 0xC44BDFF4074EECDBull},    {6, 0x27B56A84CD2D7325ull},
    {12, 0xA713DAF0DFBB77E7ull},   {24, 0xA3FE70BF9D3510EBull},   {48, 0x397DA259ECBA1F11ull},
    {80, 0xBCDEFBBB2C47C90Aull},   {195, 0xCD94217EE362EC3Aull},  {403, 0xCDEB804D65C6DEA4ull},
    {512, 0x617E49599013CB6Bull},  {2048, 0xDD59E2C3A5F038E0ull}, {2240, 0x6E73A90539CF2948ull},
    {2367, 0xCB37AEB9E5D361EDull},
};

START_TEST(test_checksum_matches_published_xxh3_vectors)
{
    fill_sanity();
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        uint64_t got = checksum_value(sanity, vectors[i].len);
        ck_assert_msg(got == vectors[i].hash, "len %zu: got %016llx want %016llx", vectors[i].len,
                      (unsigned long long)got, (unsigned long long)vectors[i].hash);
    }
}
END_TEST

START_TEST(test_checksum_incremental_equals_one_shot_for_every_split)
{
    fill_sanity();
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        size_t len = vectors[i].len;
        /* Every two-piece split of the small inputs, a stride of splits of the large ones. */
        size_t step = len > 300 ? 37 : 1;
        for (size_t cut = 0; cut <= len; cut += step) {
            checksum_state st;
            checksum_begin(&st);
            checksum_update(&st, sanity, cut);
            checksum_update(&st, sanity + cut, len - cut);
            ck_assert_uint_eq(checksum_end(&st), vectors[i].hash);
        }
    }
}
END_TEST

START_TEST(test_checksum_incremental_in_many_small_pieces)
{
    fill_sanity();
    checksum_state st;
    checksum_begin(&st);
    size_t off = 0, piece = 1;
    while (off < SANITY_LEN) {
        size_t n = piece < SANITY_LEN - off ? piece : SANITY_LEN - off;
        checksum_update(&st, sanity + off, n);
        checksum_update(&st, NULL, 0); /* empty updates change nothing */
        off += n;
        piece = piece * 3 % 97 + 1;
    }
    ck_assert_uint_eq(checksum_end(&st), 0xCB37AEB9E5D361EDull);
    /* The state can be reused after begin. */
    checksum_begin(&st);
    ck_assert_uint_eq(checksum_end(&st), 0x2D06800538D394C2ull);
}
END_TEST

START_TEST(test_checksum_detects_every_single_bit_flip)
{
    unsigned char block[64];
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (unsigned char)(i * 13 + 1);
    uint64_t good = checksum_value(block, sizeof block);
    for (size_t bit = 0; bit < sizeof block * 8; bit++) {
        block[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        ck_assert_uint_ne(checksum_value(block, sizeof block), good);
        block[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    ck_assert_uint_eq(checksum_value(block, sizeof block), good);
}
END_TEST

static Suite *checksum_suite(void)
{
    Suite *s = suite_create("checksum");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_checksum_matches_published_xxh3_vectors);
    tcase_add_test(tc, test_checksum_incremental_equals_one_shot_for_every_split);
    tcase_add_test(tc, test_checksum_incremental_in_many_small_pieces);
    tcase_add_test(tc, test_checksum_detects_every_single_bit_flip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(checksum_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
