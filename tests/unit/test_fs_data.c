/* test_fs_data.c - kvfs file data without a mount: reads and writes across chunk boundaries,
 * holes, truncate, fallocate (extend, keep-size, punch), SEEK_DATA/SEEK_HOLE, copy_file_range,
 * files past 4 GiB, a model-based random test against an in-memory file, and concurrent
 * writers to one file. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkutil.h"
#include "fs.h"
#include "fs_fixture.h"
#include "kvcore/kv.h"
#include "testutil.h"

/* ---- Tests --------------------------------------------------------------------------------- */

#define CS 65536u

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7 + (i >> 9));
}

START_TEST(test_fs_write_read_roundtrip_across_chunks)
{
    uint64_t f = tfs_mkfile(1, "f");
    size_t n = 3 * CS + 123;
    uint8_t *w = malloc(n), *r = malloc(n + 100);
    fill(w, n, 1);
    ck_assert_int_eq(fs_write(tfs_fs, f, 1000, w, n), (ssize_t)n);
    ck_assert_int_eq(tfs_getattr(f).st_size, 1000 + n);
    ck_assert_int_eq(fs_read(tfs_fs, f, 1000, n + 100, r), (ssize_t)n);
    ck_assert_int_eq(memcmp(w, r, n), 0);
    ck_assert_int_eq(fs_read(tfs_fs, f, 0, 1000, r), 1000);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(r[i], 0);
    ck_assert_int_eq(fs_read(tfs_fs, f, 1000 + n, 10, r), 0);
    ck_assert_int_eq(fs_read(tfs_fs, f, 1u << 30, 10, r), 0);
    tfs_reopen();
    ck_assert_int_eq(fs_read(tfs_fs, f, 1000, n, r), (ssize_t)n);
    ck_assert_int_eq(memcmp(w, r, n), 0);
    free(w);
    free(r);
}
END_TEST

START_TEST(test_fs_sparse_file_reads_zeros_and_costs_no_blocks)
{
    uint64_t f = tfs_mkfile(1, "f");
    uint8_t r[100];
    ck_assert_int_eq(fs_write(tfs_fs, f, 10 * CS, "end", 3), 3);
    ck_assert_int_eq(tfs_getattr(f).st_size, 10 * CS + 3);
    ck_assert_int_le(tfs_getattr(f).st_blocks, 8);
    ck_assert_int_eq(fs_read(tfs_fs, f, 5 * CS, sizeof r, r), (ssize_t)sizeof r);
    for (size_t i = 0; i < sizeof r; i++)
        ck_assert_int_eq(r[i], 0);
    ck_assert_uint_eq(tfs_count_keys('C', f), 1);
}
END_TEST

START_TEST(test_fs_truncate_then_extend_reads_zeros)
{
    uint64_t f = tfs_mkfile(1, "f");
    uint8_t w[3 * CS], r[3 * CS];
    struct stat st, out;
    fill(w, sizeof w, 3);
    ck_assert_int_eq(fs_write(tfs_fs, f, 0, w, sizeof w), (ssize_t)sizeof w);
    memset(&st, 0, sizeof st);
    st.st_size = CS + 10;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_SIZE, &out), 0);
    ck_assert_int_eq(out.st_size, CS + 10);
    ck_assert_uint_eq(tfs_count_keys('C', f), 2);
    st.st_size = 3 * CS;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_SIZE, &out), 0);
    ck_assert_int_eq(fs_read(tfs_fs, f, 0, sizeof r, r), (ssize_t)sizeof r);
    ck_assert_int_eq(memcmp(r, w, CS + 10), 0);
    for (size_t i = CS + 10; i < sizeof r; i++)
        ck_assert_int_eq(r[i], 0);
    st.st_size = 0;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_SIZE, &out), 0);
    ck_assert_uint_eq(tfs_count_keys('C', f), 0);
    ck_assert_int_eq(out.st_blocks, 0);
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, 1, &st, FS_SET_SIZE, &out), -EISDIR);
}
END_TEST

START_TEST(test_fs_open_with_o_trunc_empties_the_file)
{
    uint64_t f = tfs_mkfile(1, "f");
    char r[4];
    ck_assert_int_eq(fs_write(tfs_fs, f, 0, "data", 4), 4);
    ck_assert_int_eq(fs_open_file(tfs_fs, f, O_RDONLY | O_TRUNC), 0); /* read-only: no effect */
    fs_release(tfs_fs, f);
    ck_assert_int_eq(tfs_getattr(f).st_size, 4);
    ck_assert_int_eq(fs_open_file(tfs_fs, f, O_WRONLY | O_TRUNC), 0);
    ck_assert_int_eq(tfs_getattr(f).st_size, 0);
    ck_assert_uint_eq(tfs_count_keys('C', f), 0);
    ck_assert_int_eq(fs_read(tfs_fs, f, 0, sizeof r, r), 0);
    fs_release(tfs_fs, f);
}
END_TEST

START_TEST(test_fs_write_to_directory_is_eisdir)
{
    ck_assert_int_eq(fs_write(tfs_fs, 1, 0, "x", 1), -EISDIR);
    ck_assert_int_eq(fs_read(tfs_fs, 1, 0, 1, (char[1]){0}), -EISDIR);
}
END_TEST

START_TEST(test_fs_file_beyond_4gib_keeps_offsets)
{
    uint64_t f = tfs_mkfile(1, "f"), off = 5ull << 30;
    char r[8];
    ck_assert_int_eq(fs_write(tfs_fs, f, off, "far away", 8), 8);
    ck_assert_int_eq(tfs_getattr(f).st_size, (off_t)(off + 8));
    ck_assert_int_eq(fs_read(tfs_fs, f, off, 8, r), 8);
    ck_assert_int_eq(memcmp(r, "far away", 8), 0);
    ck_assert_int_eq(fs_read(tfs_fs, f, off - 4, 4, r), 4);
    ck_assert_int_eq(memcmp(r, "\0\0\0\0", 4), 0);
    ck_assert_int_eq(fs_write(tfs_fs, f, INT64_MAX, "x", 1), -EFBIG);
}
END_TEST

START_TEST(test_fs_fallocate_extends_keeps_size_and_punches_holes)
{
    uint64_t f = tfs_mkfile(1, "f");
    uint8_t w[2 * CS], r[2 * CS];
    fill(w, sizeof w, 9);
    ck_assert_int_eq(fs_fallocate(tfs_fs, f, 0, 0, 100), 0);
    ck_assert_int_eq(tfs_getattr(f).st_size, 100);
    ck_assert_int_eq(fs_fallocate(tfs_fs, f, FALLOC_FL_KEEP_SIZE, 0, 1000), 0);
    ck_assert_int_eq(tfs_getattr(f).st_size, 100);
    ck_assert_int_eq(fs_write(tfs_fs, f, 0, w, sizeof w), (ssize_t)sizeof w);
    ck_assert_int_eq(
        fs_fallocate(tfs_fs, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, CS + 50), 0);
    ck_assert_int_eq(tfs_getattr(f).st_size, 2 * CS);
    ck_assert_int_eq(fs_read(tfs_fs, f, 0, sizeof r, r), (ssize_t)sizeof r);
    ck_assert_int_eq(memcmp(r, w, 100), 0);
    for (size_t i = 100; i < CS + 150; i++)
        ck_assert_int_eq(r[i], 0);
    ck_assert_int_eq(memcmp(r + CS + 150, w + CS + 150, CS - 150), 0);
    /* punching a whole chunk deletes it */
    ck_assert_int_eq(fs_fallocate(tfs_fs, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, CS, CS),
                     0);
    ck_assert_uint_eq(tfs_count_keys('C', f), 1);
    ck_assert_int_eq(fs_fallocate(tfs_fs, f, FALLOC_FL_PUNCH_HOLE, 0, 1), -EOPNOTSUPP);
    ck_assert_int_eq(fs_fallocate(tfs_fs, f, FALLOC_FL_ZERO_RANGE, 0, 1), -EOPNOTSUPP);
}
END_TEST

START_TEST(test_fs_seek_data_and_hole_follow_chunks)
{
    uint64_t f = tfs_mkfile(1, "f");
    uint8_t w[CS];
    fill(w, sizeof w, 5);
    /* data in chunks 2 and 3 (full), then 100 bytes in chunk 6; size 7*CS */
    ck_assert_int_eq(fs_write(tfs_fs, f, 2 * CS, w, CS), CS);
    ck_assert_int_eq(fs_write(tfs_fs, f, 3 * CS, w, CS), CS);
    ck_assert_int_eq(fs_write(tfs_fs, f, 6 * CS, w, 100), 100);
    ck_assert_int_eq(fs_fallocate(tfs_fs, f, 0, 0, 7 * CS), 0);
    ck_assert_int_eq(fs_lseek(tfs_fs, f, 0, SEEK_DATA), 2 * CS);
    ck_assert_int_eq(fs_lseek(tfs_fs, f, 2 * CS + 5, SEEK_DATA), 2 * CS + 5);
    ck_assert_int_eq(fs_lseek(tfs_fs, f, 0, SEEK_HOLE), 0);
    ck_assert_int_eq(fs_lseek(tfs_fs, f, 2 * CS, SEEK_HOLE), 4 * CS);
    ck_assert_int_eq(fs_lseek(tfs_fs, f, 4 * CS, SEEK_DATA), 6 * CS);
    ck_assert_int_eq(fs_lseek(tfs_fs, f, 6 * CS, SEEK_HOLE), 6 * CS + 100);
    ck_assert_int_eq(fs_lseek(tfs_fs, f, 6 * CS + 100, SEEK_DATA), -ENXIO);
    ck_assert_int_eq(fs_lseek(tfs_fs, f, 7 * CS, SEEK_DATA), -ENXIO);
    ck_assert_int_eq(fs_lseek(tfs_fs, f, 7 * CS, SEEK_HOLE), -ENXIO);
}
END_TEST

START_TEST(test_fs_copy_file_range_copies_and_stops_at_eof)
{
    uint64_t a = tfs_mkfile(1, "a"), b = tfs_mkfile(1, "b");
    uint8_t w[CS + 500], r[CS + 500];
    fill(w, sizeof w, 11);
    ck_assert_int_eq(fs_write(tfs_fs, a, 0, w, sizeof w), (ssize_t)sizeof w);
    ck_assert_int_eq(fs_copy_file_range(tfs_fs, a, 100, b, 7, 1u << 20), (ssize_t)sizeof w - 100);
    ck_assert_int_eq(tfs_getattr(b).st_size, 7 + sizeof w - 100);
    ck_assert_int_eq(fs_read(tfs_fs, b, 7, sizeof r, r), (ssize_t)sizeof w - 100);
    ck_assert_int_eq(memcmp(r, w + 100, sizeof w - 100), 0);
    ck_assert_int_eq(fs_copy_file_range(tfs_fs, a, 0, a, 10, 100), -EINVAL);
}
END_TEST

/* Model-based: random writes, truncates, punches against a plain buffer; compare the whole
 * file after every step and after reopening. */
START_TEST(test_fs_random_ops_match_in_memory_model)
{
    uint64_t seed = tu_seed("test_fs_random_ops_match_in_memory_model");
    const size_t max = 6 * CS;
    uint8_t *model = calloc(1, max), *buf = malloc(max), *got = malloc(max);
    size_t size = 0;
    uint64_t f = tfs_mkfile(1, "f");
    tu_rng rng;

    tu_rng_init(&rng, seed);
    for (int step = 0; step < 300; step++) {
        unsigned op = (unsigned)tu_rng_below(&rng, 10);
        size_t off = (size_t)tu_rng_below(&rng, max), len = (size_t)tu_rng_below(&rng, 3 * CS);
        if (off + len > max)
            len = max - off;
        if (op < 6 && len > 0) {
            tu_rng_fill(&rng, buf, len);
            ck_assert_int_eq(fs_write(tfs_fs, f, off, buf, len), (ssize_t)len);
            memcpy(model + off, buf, len);
            if (off + len > size)
                size = off + len;
        } else if (op < 8) {
            struct stat st, out;
            memset(&st, 0, sizeof st);
            st.st_size = (off_t)off;
            ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_SIZE, &out), 0);
            if (off < size)
                memset(model + off, 0, size - off);
            size = off;
        } else if (len > 0) {
            ck_assert_int_eq(
                fs_fallocate(tfs_fs, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len), 0);
            if (off < size)
                memset(model + off, 0, (off + len < size ? off + len : size) - off);
        }
        if (step % 50 == 49)
            tfs_reopen();
        ck_assert_int_eq(tfs_getattr(f).st_size, (off_t)size);
        ck_assert_int_eq(fs_read(tfs_fs, f, 0, max, got), (ssize_t)size);
        if (memcmp(got, model, size) != 0)
            ck_abort_msg("content differs after step %d (seed %llu)", step,
                         (unsigned long long)seed);
    }
    tfs_close();
    /* stored-bytes and chunk-past-EOF invariants */
    ck_assert_uint_eq(tfs_fsck_closed(0).problems, 0);
    free(model);
    free(buf);
    free(got);
}
END_TEST

/* Writes that replace whole chunks take only the old chunk's length, not its bytes (and a
 * chunk holding EOF counts as whole when the write reaches EOF): over full chunks, holes,
 * short chunks and the EOF chunk, content and st_blocks must stay exact. */
START_TEST(test_fs_whole_chunk_overwrites_keep_content_and_stored_bytes)
{
    const size_t max = 8 * CS;
    uint8_t *model = calloc(1, max), *buf = malloc(max), *got = malloc(max);
    uint64_t f = tfs_mkfile(1, "f");
    size_t size;
    /* chunk 0 full, 1 a hole, 2 short (bytes 100..149), 3 full, 4 holds EOF (10 bytes) */
    fill(buf, max, 3);
    ck_assert_int_eq(fs_write(tfs_fs, f, 0, buf, CS), (ssize_t)CS);
    ck_assert_int_eq(fs_write(tfs_fs, f, 2 * CS + 100, buf, 50), 50);
    ck_assert_int_eq(fs_write(tfs_fs, f, 3 * CS, buf, CS + 10), (ssize_t)(CS + 10));
    memcpy(model, buf, CS);
    memcpy(model + 2 * CS + 100, buf, 50);
    memcpy(model + 3 * CS, buf, CS + 10);
    size = 4 * CS + 10;
    ck_assert_int_eq(tfs_getattr(f).st_blocks, (2 * CS + 150 + 10 + 511) / 512);
    tfs_reopen(); /* the old chunks now come from a table, not only the memtable */

    /* Whole chunks 0..3 and the EOF chunk 4 only partly (5 of its 10 bytes): read-modify. */
    fill(buf, max, 9);
    ck_assert_int_eq(fs_write(tfs_fs, f, 0, buf, 4 * CS + 5), (ssize_t)(4 * CS + 5));
    memcpy(model, buf, 4 * CS + 5);
    ck_assert_int_eq(tfs_getattr(f).st_blocks, (4 * CS + 10 + 511) / 512);
    ck_assert_int_eq(fs_read(tfs_fs, f, 0, max, got), (ssize_t)size);
    ck_assert_int_eq(memcmp(got, model, size), 0);
    /* From chunk 4's start past EOF: chunk 4 replaced whole, chunk 5 new and short. */
    fill(buf, max, 17);
    ck_assert_int_eq(fs_write(tfs_fs, f, 4 * CS, buf, CS + 7), (ssize_t)(CS + 7));
    memcpy(model + 4 * CS, buf, CS + 7);
    size = 5 * CS + 7;
    ck_assert_int_eq(tfs_getattr(f).st_size, (off_t)size);
    ck_assert_int_eq(tfs_getattr(f).st_blocks, (size + 511) / 512);
    /* A whole-chunk write into a hole left by truncate-and-extend counts the hole as 0. */
    struct stat st, out;
    memset(&st, 0, sizeof st);
    st.st_size = (off_t)CS;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_SIZE, &out), 0);
    memset(model + CS, 0, size - CS);
    st.st_size = (off_t)(7 * CS);
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_SIZE, &out), 0);
    size = 7 * CS;
    fill(buf, max, 29);
    ck_assert_int_eq(fs_write(tfs_fs, f, 2 * CS, buf, 2 * CS), (ssize_t)(2 * CS));
    memcpy(model + 2 * CS, buf, 2 * CS);
    ck_assert_int_eq(tfs_getattr(f).st_blocks, (3 * CS) / 512);

    ck_assert_int_eq(fs_read(tfs_fs, f, 0, max, got), (ssize_t)size);
    ck_assert_int_eq(memcmp(got, model, size), 0);
    ck_assert_uint_eq(tfs_fsck_reopen(0).problems,
                      0); /* stored bytes = sum of the chunks' lengths */
    ck_assert_int_eq(fs_read(tfs_fs, f, 0, max, got), (ssize_t)size);
    ck_assert_int_eq(memcmp(got, model, size), 0);
    free(model);
    free(buf);
    free(got);
}
END_TEST

struct writer_arg {
    uint64_t ino;
    int id;
};

static void *writer(void *p)
{
    struct writer_arg *a = p;
    uint8_t blk[1000];
    for (int i = 0; i < 50; i++) {
        memset(blk, 'a' + a->id, sizeof blk);
        /* interleaved blocks of every writer share chunks: a lost update would show */
        if (fs_write(tfs_fs, a->ino, ((uint64_t)i * 4 + (uint64_t)a->id) * sizeof blk, blk,
                     sizeof blk) != (ssize_t)sizeof blk)
            return (void *)1;
    }
    return NULL;
}

START_TEST(test_fs_concurrent_writers_lose_no_update)
{
    pthread_t th[4];
    struct writer_arg a[4];
    uint64_t f = tfs_mkfile(1, "f");
    uint8_t *r = malloc(200 * 1000);
    for (int i = 0; i < 4; i++) {
        a[i].ino = f;
        a[i].id = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, writer, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        ck_assert_ptr_null(ret);
    }
    ck_assert_int_eq(tfs_getattr(f).st_size, 200 * 1000);
    ck_assert_int_eq(fs_read(tfs_fs, f, 0, 200 * 1000, r), 200 * 1000);
    for (int blk = 0; blk < 200; blk++)
        for (int j = 0; j < 1000; j++)
            ck_assert_int_eq(r[blk * 1000 + j], 'a' + blk % 4);
    free(r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fs_data");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, tfs_setup, tfs_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fs_write_read_roundtrip_across_chunks);
    tcase_add_test(tc, test_fs_sparse_file_reads_zeros_and_costs_no_blocks);
    tcase_add_test(tc, test_fs_truncate_then_extend_reads_zeros);
    tcase_add_test(tc, test_fs_open_with_o_trunc_empties_the_file);
    tcase_add_test(tc, test_fs_write_to_directory_is_eisdir);
    tcase_add_test(tc, test_fs_file_beyond_4gib_keeps_offsets);
    tcase_add_test(tc, test_fs_fallocate_extends_keeps_size_and_punches_holes);
    tcase_add_test(tc, test_fs_seek_data_and_hole_follow_chunks);
    tcase_add_test(tc, test_fs_copy_file_range_copies_and_stops_at_eof);
    tcase_add_test(tc, test_fs_random_ops_match_in_memory_model);
    tcase_add_test(tc, test_fs_whole_chunk_overwrites_keep_content_and_stored_bytes);
    tcase_add_test(tc, test_fs_concurrent_writers_lose_no_update);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
