/* test_sst_compress.c - unit tests of adaptive compression: the SSTable builder's decision and
 * the shared table/compress module the value log uses too. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvcore/kv.h"
#include "mem_file.h"
#include "table/compress.h"
#include "table/sst.h"
#include "testutil.h"
#include "util/ikey.h"

/* Every value is one file chunk as kvfs stores it: 64 KiB, so each becomes its own block. */
#define CHUNK (64 * 1024)

/* ---- Chunks of a given kind -------------------------------------------------------------- */

enum kind {
    RANDOM = 'R', /* incompressible: fio's data, .gz/.jpg files */
    TEXT = 'T',   /* compressible by zstd and by a byte histogram */
    REPEAT = 'P', /* random 4 KiB repeated: order-0 entropy 8 bits, yet zstd shrinks it 16x */
};

static void fill_chunk(char *p, enum kind k, tu_rng *rng)
{
    static const char *const words[] = {"inode ", "chunk ", "table ", "block ", "flush ",
                                        "level ", "merge ", "write ", "fsync ", "cache "};
    size_t i = 0;
    switch (k) {
    case RANDOM:
        tu_rng_fill(rng, p, CHUNK);
        break;
    case TEXT:
        while (i < CHUNK) {
            const char *w = words[tu_rng_below(rng, 10)];
            for (size_t j = 0; w[j] && i < CHUNK; j++)
                p[i++] = w[j];
        }
        break;
    case REPEAT:
        tu_rng_fill(rng, p, 4096);
        for (i = 4096; i < CHUNK; i += 4096)
            memcpy(p + i, p, 4096);
        break;
    }
}

typedef struct built {
    buf file;
    uint64_t attempts;
    size_t nblocks;
} built;

/* Builds a table with one chunk per character of `kinds` (zstd level 1, as kvfs uses), reads
 * every entry back and checks it, and returns the file and the builder's attempt count. */
static void build(const char *kinds, int compression, uint64_t seed, built *out)
{
    size_t n = strlen(kinds);
    char *vals = malloc(n * CHUNK);
    ck_assert_ptr_nonnull(vals);
    tu_rng rng;
    tu_rng_init(&rng, seed);
    for (size_t i = 0; i < n; i++)
        fill_chunk(vals + i * CHUNK, (enum kind)kinds[i], &rng);

    buf_init(&out->file);
    tu_memfile *m = tu_memfile_open(&out->file);
    sst_options o = {.block_size = 4096,
                     .restart_interval = 16,
                     .compression = compression,
                     .compression_level = 1,
                     .bloom_bits_per_key = 10};
    sst_builder *b;
    ck_assert_int_eq(sst_builder_new(&m->base, &o, &b), 0);
    buf k;
    buf_init(&k);
    for (size_t i = 0; i < n; i++) {
        char uk[16];
        int ukl = snprintf(uk, sizeof(uk), "c%08zu", i);
        buf_clear(&k);
        ck_assert_int_eq(ikey_append(&k, slice_make(uk, (size_t)ukl), 100, IKEY_TYPE_VALUE), 0);
        ck_assert_int_eq(sst_builder_add(b, buf_slice(&k), slice_make(vals + i * CHUNK, CHUNK)), 0);
    }
    ck_assert_int_eq(sst_builder_finish(b), 0);
    out->attempts = sst_builder_compress_attempts(b);
    out->nblocks = n;
    sst_builder_free(b);
    env_close(&m->base);

    /* Whatever was decided per block, every value reads back exactly. */
    sst_read_options ro = {.verify_checksums = 1, .fill_cache = 0};
    sst_reader *r;
    ck_assert_int_eq(
        sst_reader_open(&tu_memfile_open(&out->file)->base, out->file.len, "000001.sst", &ro, &r),
        0);
    iter *it = sst_reader_iter_new(r, 0);
    size_t i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it), i++) {
        ck_assert_uint_lt(i, n);
        slice v = iter_value(it);
        ck_assert_uint_eq(v.size, CHUNK);
        ck_assert_msg(memcmp(v.data, vals + i * CHUNK, CHUNK) == 0, "value %zu differs", i);
    }
    ck_assert_int_eq(iter_status(it), 0);
    ck_assert_uint_eq(i, n);
    iter_free(it);
    sst_reader_close(r);
    buf_free(&k);
    free(vals);
}

static char *repeat_kind(char k, size_t n)
{
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    memset(s, k, n);
    s[n] = '\0';
    return s;
}

/* ---- Tests --------------------------------------------------------------------------------- */

START_TEST(test_sst_random_chunks_are_rarely_handed_to_zstd)
{
    char *kinds = repeat_kind(RANDOM, 256);
    built z, raw;
    build(kinds, 1, 1, &z);
    build(kinds, 0, 1, &raw);
    /* Backoff 1, 2, 4, 8 blocks: about 256/9 + 4 attempts, never one per block. */
    ck_assert_msg(z.attempts <= 40, "%llu zstd attempts for 256 random blocks",
                  (unsigned long long)z.attempts);
    ck_assert_uint_ge(z.attempts, 1);
    /* Stored raw: the same size as without compression (the index may compress a little). */
    ck_assert_uint_le(z.file.len, raw.file.len);
    ck_assert_uint_ge(z.file.len, raw.file.len - raw.file.len / 100);
    fprintf(stderr, "sst_compress: 256 random chunks: %llu attempts, %zu bytes (raw %zu)\n",
            (unsigned long long)z.attempts, z.file.len, raw.file.len);
    buf_free(&z.file);
    buf_free(&raw.file);
    free(kinds);
}
END_TEST

START_TEST(test_sst_text_chunks_are_all_compressed)
{
    char *kinds = repeat_kind(TEXT, 64);
    built z, raw;
    build(kinds, 1, 2, &z);
    build(kinds, 0, 2, &raw);
    /* 64 data blocks and the index block, every one tried. */
    ck_assert_uint_eq(z.attempts, 65);
    ck_assert_msg(z.file.len < raw.file.len / 2, "zstd %zu vs raw %zu", z.file.len, raw.file.len);
    buf_free(&z.file);
    buf_free(&raw.file);
    free(kinds);
}
END_TEST

/* A text chunk met while backing off after random ones is still compressed (the probe), so a
 * table mixing .gz files and text costs no more space than its parts compressed separately. */
START_TEST(test_sst_text_after_random_chunks_is_still_compressed)
{
    char *rnd = repeat_kind(RANDOM, 40), *txt = repeat_kind(TEXT, 40);
    char mixed[128] = "";
    for (int i = 0; i < 40; i++) { /* R R R T R R R T ...: always inside a backoff */
        strcat(mixed, i % 4 == 3 ? "T" : "R");
    }
    built m, r, t;
    build(mixed, 1, 3, &m);
    build(rnd, 1, 3, &r);
    build(txt, 1, 3, &t);
    /* 30 random chunks stored raw + 10 text chunks compressed: at most 30/40 of the random
     * table + 10/40 of the text table (plus slack for index and footer). */
    size_t bound = r.file.len * 30 / 40 + t.file.len * 10 / 40 + 4096;
    ck_assert_msg(m.file.len <= bound, "mixed table %zu bytes > %zu", m.file.len, bound);
    ck_assert_uint_lt(m.attempts, 40);
    buf_free(&m.file);
    buf_free(&r.file);
    buf_free(&t.file);
    free(rnd);
    free(txt);
}
END_TEST

/* Data the byte histogram calls random but zstd compresses (repeats) is found by the periodic
 * retry once the incompressible run is over. */
START_TEST(test_sst_backoff_retries_and_finds_compressible_data_again)
{
    char kinds[256 + 1];
    memset(kinds, RANDOM, 128);
    memset(kinds + 128, REPEAT, 128);
    kinds[256] = '\0';
    built z;
    build(kinds, 1, 4, &z);
    /* The 128 random chunks take 128 * 64 KiB raw; of the 128 repeats at most the first few
     * (one full backoff, 8) may be stored raw, the rest shrink about 16x. */
    size_t bound = (size_t)128 * CHUNK + (size_t)9 * CHUNK + (size_t)119 * CHUNK / 8;
    ck_assert_msg(z.file.len <= bound, "table %zu bytes > %zu", z.file.len, bound);
    buf_free(&z.file);
}
END_TEST

/* The value log's use: one compress_state for many values, compress_try with a 1/8 limit. */
START_TEST(test_compress_state_backs_off_on_random_and_resets_on_text)
{
    enum { N = 4 * COMPRESS_MAX_SKIP };
    compress_state st = {0, 0};
    int ramp = 1; /* attempts while the skip doubles up to the cap: 1, 2, 4, ... */
    for (unsigned k = 1; k < COMPRESS_MAX_SKIP; k <<= 1)
        ramp++;
    ZSTD_CCtx *c = compress_thread_cctx();
    ck_assert_ptr_nonnull(c);
    size_t cap = ZSTD_compressBound(CHUNK);
    char *in = malloc(CHUNK), *out = malloc(cap);
    ck_assert(in && out);
    tu_rng rng;
    tu_rng_init(&rng, 7);
    int tried = 0;
    for (int i = 0; i < N || (st.skip == 0 && i < 2 * N); i++) { /* end while skipping */
        fill_chunk(in, RANDOM, &rng);
        slice src = {in, CHUNK};
        if (compress_should_try(&st, src)) {
            tried++;
            ck_assert_uint_eq(compress_try(&st, c, out, cap, src, 1, CHUNK - CHUNK / 8), 0);
        }
    }
    /* backs off to 1 in COMPRESS_MAX_SKIP + 1 */
    ck_assert_int_le(tried, N / (COMPRESS_MAX_SKIP + 1) + ramp + 1);
    ck_assert_int_ge(tried, N / (COMPRESS_MAX_SKIP + 1));
    ck_assert_uint_gt(st.skip, 0); /* in the middle of a back-off ... */
    fill_chunk(in, TEXT, &rng);
    slice text = {in, CHUNK};
    ck_assert(compress_should_try(&st, text)); /* ... the probe still lets text through */
    size_t z = compress_try(&st, c, out, cap, text, 1, CHUNK - CHUNK / 8);
    ck_assert_uint_gt(z, 0);
    ck_assert_uint_le(z, CHUNK - CHUNK / 8);
    ck_assert_uint_eq(st.skip, 0);
    ck_assert_uint_eq(st.fail_streak, 0);
    /* Round trip, and a limit the output does not meet stores it raw (0). */
    char *back = malloc(CHUNK);
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(compress_decompress((slice){out, z}, back, CHUNK), 0);
    ck_assert_int_eq(memcmp(back, in, CHUNK), 0);
    ck_assert_uint_eq(compress_try(&st, c, out, cap, text, 1, z - 1), 0);
    ck_assert_uint_eq(compress_try(&st, NULL, out, cap, text, 1, CHUNK), 0);
    free(back);
    free(in);
    free(out);
}
END_TEST

/* Damaged input never yields wrong bytes: a frame decompressed into another size, cut short,
 * or with a flipped byte is KV_ECORRUPT, and nothing is written past the given size. */
START_TEST(test_compress_decompress_rejects_wrong_size_and_damaged_frames)
{
    char in[4096], frame[8192], outb[4096 + 64];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (char)("abcdefgh"[i % 8] + (i / 512));
    size_t z = ZSTD_compressCCtx(compress_thread_cctx(), frame, sizeof(frame), in, sizeof(in), 3);
    ck_assert(!ZSTD_isError(z));
    ck_assert_int_eq(compress_decompress((slice){frame, z}, outb, sizeof(in)), 0);
    ck_assert_int_eq(memcmp(outb, in, sizeof(in)), 0);
    memset(outb, 0x77, sizeof(outb));
    ck_assert_int_eq(compress_decompress((slice){frame, z}, outb, sizeof(in) - 1), KV_ECORRUPT);
    for (size_t i = sizeof(in) - 1; i < sizeof(outb); i++)
        ck_assert_int_eq(outb[i], 0x77); /* nothing past the size it was given */
    ck_assert_int_eq(compress_decompress((slice){frame, z}, outb, sizeof(in) + 1), KV_ECORRUPT);
    ck_assert_int_eq(compress_decompress((slice){frame, z - 1}, outb, sizeof(in)), KV_ECORRUPT);
    ck_assert_int_eq(compress_decompress((slice){frame, 0}, outb, sizeof(in)), KV_ECORRUPT);
    frame[z / 2] ^= 0x10;
    int rc = compress_decompress((slice){frame, z}, outb, sizeof(in));
    /* zstd's frame has no content checksum here: a flip may decode to other bytes of the same
     * size (the value log's record checksum catches that), but never to an error other than
     * KV_ECORRUPT. */
    ck_assert(rc == 0 || rc == KV_ECORRUPT);
}
END_TEST

static Suite *sst_compress_suite(void)
{
    Suite *s = suite_create("sst_compress");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sst_random_chunks_are_rarely_handed_to_zstd);
    tcase_add_test(tc, test_sst_text_chunks_are_all_compressed);
    tcase_add_test(tc, test_sst_text_after_random_chunks_is_still_compressed);
    tcase_add_test(tc, test_sst_backoff_retries_and_finds_compressible_data_again);
    tcase_add_test(tc, test_compress_state_backs_off_on_random_and_resets_on_text);
    tcase_add_test(tc, test_compress_decompress_rejects_wrong_size_and_damaged_frames);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sst_compress_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
