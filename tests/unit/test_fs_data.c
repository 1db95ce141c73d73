/* test_fs_data.c - kvfs file data without a mount: reads and writes across chunk boundaries,
 * holes, truncate, fallocate (extend, keep-size, punch), SEEK_DATA/SEEK_HOLE, copy_file_range,
 * files past 4 GiB, a model-based random test against an in-memory file, concurrent writers to
 * one file, and the chunk cache (chunkcache.h): bounded, and never serving bytes a write,
 * truncate, punch, rename or reclaim has replaced. */
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
#include "chunkcache.h"
#include "fs.h"
#include "fs_fixture.h"
#include "fs_int.h"
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

/* ---- Chunk cache ------------------------------------------------------------------------- */

#define PG 4096u

static struct fs_cc_stats cc_stats(void)
{
    struct fs_cc_stats st;
    fs_cc_get_stats(tfs_fs->cc, &st);
    return st;
}

/* Reads [off, off + n) of f in 4 KiB pieces, as the kernel does for a random reader (a piece
 * takes part of a chunk, so the chunk is kept), and compares with want. */
static void read_pages_eq(uint64_t f, uint64_t off, size_t n, const uint8_t *want)
{
    uint8_t got[PG];
    for (size_t done = 0; done < n; done += PG) {
        size_t k = n - done < PG ? n - done : PG;
        ck_assert_int_eq(fs_read(tfs_fs, f, off + done, k, got), (ssize_t)k);
        if (memcmp(got, want + done, k) != 0)
            ck_abort_msg("bytes at %llu differ", (unsigned long long)(off + done));
    }
}

START_TEST(test_fs_partial_reads_are_served_from_the_chunk_cache)
{
    uint64_t f = tfs_mkfile(1, "f");
    uint8_t *w = malloc(2 * CS);
    struct fs_cc_stats before, after;
    fill(w, 2 * CS, 5);
    ck_assert_ptr_nonnull(tfs_fs->cc);
    ck_assert_int_eq(fs_write(tfs_fs, f, 0, w, 2 * CS), (ssize_t)(2 * CS));
    before = cc_stats();
    read_pages_eq(f, 0, 2 * CS, w); /* 32 pieces: 2 misses, 30 hits */
    after = cc_stats();
    ck_assert_uint_eq(after.misses - before.misses, 2);
    ck_assert_uint_eq(after.hits - before.hits, 2 * CS / PG - 2);
    ck_assert_uint_eq(after.entries, 2);
    /* A read that takes whole chunks (a sequential reader) leaves nothing behind. */
    tfs_reopen();
    uint8_t *r = malloc(2 * CS);
    ck_assert_int_eq(fs_read(tfs_fs, f, 0, 2 * CS, r), (ssize_t)(2 * CS));
    ck_assert_int_eq(memcmp(r, w, 2 * CS), 0);
    ck_assert_uint_eq(cc_stats().entries, 0);
    free(r);
    free(w);
}
END_TEST

/* Creates file "f" in the root holding nchunks whole chunks of fill(seed) bytes; *w receives
 * them (caller frees). Returns its inode. */
static uint64_t file_of_chunks(size_t nchunks, int seed, uint8_t **w)
{
    uint64_t f = tfs_mkfile(1, "f");
    *w = malloc(nchunks * CS);
    ck_assert_ptr_nonnull(*w);
    fill(*w, nchunks * CS, seed);
    ck_assert_int_eq(fs_write(tfs_fs, f, 0, *w, nchunks * CS), (ssize_t)(nchunks * CS));
    return f;
}

/* -o chunk_cache_size: the capacity bounds what is kept (one chunk here), and 0 keeps nothing;
 * reads are the same bytes either way. */
START_TEST(test_fs_chunk_cache_size_is_configurable)
{
    uint8_t *w;
    uint64_t f = file_of_chunks(4, 7, &w);
    tfs_chunk_cache_bytes = CS;
    tfs_reopen();
    read_pages_eq(f, 0, 4 * CS, w);
    ck_assert_uint_le(cc_stats().entries, 1);
    ck_assert_uint_le(cc_stats().bytes, CS);
    tfs_chunk_cache_bytes = FS_CONFIG_NO_CHUNK_CACHE;
    tfs_reopen();
    read_pages_eq(f, 0, 4 * CS, w);
    read_pages_eq(f, 0, 4 * CS, w);
    ck_assert_uint_eq(cc_stats().entries, 0);
    ck_assert_uint_eq(cc_stats().hits, 0);
    tfs_chunk_cache_bytes = 0;
    free(w);
}
END_TEST

START_TEST(test_fs_cached_chunk_never_outlives_a_write)
{
    uint8_t *w;
    uint64_t f = file_of_chunks(3, 7, &w);
    read_pages_eq(f, 0, 3 * CS, w);
    ck_assert_uint_eq(cc_stats().entries, 3);
    /* a partial-chunk write (read-modify-write), a whole-chunk write, an extending write */
    memset(w + 100, 'x', 10);
    ck_assert_int_eq(fs_write(tfs_fs, f, 100, "xxxxxxxxxx", 10), 10);
    read_pages_eq(f, 0, 3 * CS, w);
    fill(w + CS, CS, 9);
    ck_assert_int_eq(fs_write(tfs_fs, f, CS, w + CS, CS), (ssize_t)CS);
    read_pages_eq(f, 0, 3 * CS, w);
    w = realloc(w, 3 * CS + 50);
    memset(w + 3 * CS - 10, 'y', 60);
    ck_assert_int_eq(fs_write(tfs_fs, f, 3 * CS - 10, w + 3 * CS - 10, 60), 60);
    read_pages_eq(f, 0, 3 * CS + 50, w);
    free(w);
}
END_TEST

START_TEST(test_fs_cached_chunk_never_outlives_truncate_or_punch)
{
    uint8_t *w;
    uint64_t f = file_of_chunks(3, 11, &w);
    struct stat st, out;
    read_pages_eq(f, 0, 3 * CS, w);
    /* Truncate into chunk 1, extend again: the cut bytes read as zeros. */
    memset(&st, 0, sizeof st);
    st.st_size = CS + 100;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_SIZE, &out), 0);
    st.st_size = 3 * CS;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_SIZE, &out), 0);
    memset(w + CS + 100, 0, 2 * CS - 100);
    read_pages_eq(f, 0, 3 * CS, w);
    /* Punch the middle of chunk 0 and all of chunk 1. */
    ck_assert_int_eq(
        fs_fallocate(tfs_fs, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1000, 2 * CS - 1000),
        0);
    memset(w + 1000, 0, 2 * CS - 1000);
    read_pages_eq(f, 0, 3 * CS, w);
    /* O_TRUNC at open empties it. */
    read_pages_eq(f, 0, 2 * PG, w);
    ck_assert_int_eq(fs_open_file(tfs_fs, f, O_WRONLY | O_TRUNC), 0);
    fs_release(tfs_fs, f);
    ck_assert_int_eq(fs_write(tfs_fs, f, 2 * CS, "z", 1), 1);
    memset(w, 0, 2 * CS);
    w[2 * CS] = 'z';
    read_pages_eq(f, 0, 2 * CS + 1, w);
    free(w);
}
END_TEST

START_TEST(test_fs_cached_chunk_never_outlives_rename_over)
{
    uint64_t a = tfs_mkfile(1, "a"), b = tfs_mkfile(1, "b"), now;
    uint8_t *wa = malloc(CS), *wb = malloc(CS);
    fill(wa, CS, 13);
    fill(wb, CS, 17);
    ck_assert_int_eq(fs_write(tfs_fs, a, 0, wa, CS), (ssize_t)CS);
    ck_assert_int_eq(fs_write(tfs_fs, b, 0, wb, CS), (ssize_t)CS);
    read_pages_eq(a, 0, CS, wa);
    read_pages_eq(b, 0, CS, wb);
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "a", 1, "b", 0), 0);
    now = tfs_lookup(1, "b");
    ck_assert_uint_eq(now, a);
    read_pages_eq(now, 0, CS, wa);
    /* the replaced inode is gone, and nothing of it is served */
    uint8_t r[PG];
    ck_assert_int_lt(fs_read(tfs_fs, b, 0, PG, r), 0);
    free(wa);
    free(wb);
}
END_TEST

/* Inode numbers are never handed out twice (fs_int.h, invariant 5), but if one came back (a
 * store edited by hand, a repair) its cached chunks must not: the reclaim kills them. */
START_TEST(test_fs_cached_chunk_never_outlives_unlink_and_reuse_of_its_inode)
{
    uint64_t f = tfs_mkfile(1, "f");
    uint8_t *w = malloc(CS), key[FS_KEY_MAX];
    struct fs_inode in;
    kv_batch *b;
    fill(w, CS, 19);
    ck_assert_int_eq(fs_write(tfs_fs, f, 0, w, CS), (ssize_t)CS);
    read_pages_eq(f, 0, CS, w);
    ck_assert_int_eq(fs_inode_load(tfs_fs, NULL, f, &in, NULL, NULL), 0);
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "f"), 0);
    ck_assert_uint_eq(tfs_count_keys('C', f), 0); /* reclaimed */
    /* The same number again, holding other bytes. */
    fill(w, CS, 23);
    in.nlink = 1;
    ck_assert_ptr_nonnull(b = kv_batch_new());
    ck_assert_int_eq(fs_batch_put_inode(b, &in, NULL, 0), 0);
    ck_assert_int_eq(kv_batch_put(b, key, fs_key_chunk(key, f, 0), w, CS), 0);
    ck_assert_int_eq(fs_commit(tfs_fs, b), 0);
    kv_batch_free(b);
    read_pages_eq(f, 0, CS, w);
    free(w);
}
END_TEST

/* A writer replaces chunks 0..3 whole with version v (every byte v) in one batch per version;
 * readers take 4 KiB pieces. A piece must be one version, never older than one the same
 * reader saw at that chunk before (a stale cached chunk would go back), and the last one once
 * the writer is done. */
#define RACE_CHUNKS 4
#define RACE_VERSIONS 200

static uint64_t race_ino;
static int race_done;

static void *race_reader(void *p)
{
    unsigned seed = (unsigned)(uintptr_t)p;
    uint8_t last[RACE_CHUNKS] = {0}, got[PG];
    for (;;) {
        int done = __atomic_load_n(&race_done, __ATOMIC_ACQUIRE);
        seed = seed * 1103515245u + 12345u;
        unsigned c = (seed >> 8) % RACE_CHUNKS, pg = (seed >> 16) % (CS / PG);
        if (fs_read(tfs_fs, race_ino, (uint64_t)c * CS + pg * PG, PG, got) != PG)
            return (void *)1;
        for (size_t i = 1; i < PG; i++)
            if (got[i] != got[0])
                return (void *)2;
        if (got[0] < last[c])
            return (void *)3;
        last[c] = got[0];
        if (done) {
            if (got[0] != RACE_VERSIONS)
                return (void *)4;
            break;
        }
    }
    return NULL;
}

START_TEST(test_fs_chunk_cache_never_serves_an_older_version_to_concurrent_readers)
{
    pthread_t th[3];
    uint8_t *w = malloc(RACE_CHUNKS * CS);
    race_ino = tfs_mkfile(1, "f");
    race_done = 0;
    memset(w, 1, RACE_CHUNKS * CS);
    ck_assert_int_eq(fs_write(tfs_fs, race_ino, 0, w, RACE_CHUNKS * CS),
                     (ssize_t)(RACE_CHUNKS * CS));
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, race_reader, (void *)(uintptr_t)(i + 1)), 0);
    for (int v = 2; v <= RACE_VERSIONS; v++) {
        memset(w, v, RACE_CHUNKS * CS);
        ck_assert_int_eq(fs_write(tfs_fs, race_ino, 0, w, RACE_CHUNKS * CS),
                         (ssize_t)(RACE_CHUNKS * CS));
    }
    __atomic_store_n(&race_done, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 3; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        ck_assert_ptr_null(ret);
    }
    ck_assert_uint_gt(cc_stats().hits, 0);
    free(w);
}
END_TEST

static void *cc_chunk(size_t len, uint8_t byte)
{
    void *p = malloc(len);
    ck_assert_ptr_nonnull(p);
    memset(p, byte, len);
    return p;
}

START_TEST(test_fs_chunk_cache_stays_within_capacity_and_obeys_stripe_sequence)
{
    struct fs_cc *cc = fs_cc_new(3 * CS, CS, 4);
    struct fs_cc_stats st;
    uint8_t out[16];
    uint64_t s;
    ck_assert_ptr_nonnull(cc);
    s = fs_cc_sample(cc, 1);
    for (uint64_t i = 0; i < 5; i++)
        fs_cc_insert(cc, 1, s, 9, i, cc_chunk(CS, (uint8_t)i), CS);
    fs_cc_get_stats(cc, &st);
    ck_assert_uint_eq(st.entries, 3);
    ck_assert_uint_le(st.bytes, 3 * CS);
    ck_assert_int_eq(fs_cc_read(cc, 1, s, 9, 0, 0, sizeof out, out), 0); /* evicted: oldest */
    ck_assert_int_eq(fs_cc_read(cc, 1, s, 9, 4, 0, sizeof out, out), 1);
    ck_assert_int_eq(out[0], 4);
    /* a short chunk reads as zeros past its length */
    fs_cc_insert(cc, 1, s, 9, 7, cc_chunk(10, 0xAA), 10);
    ck_assert_int_eq(fs_cc_read(cc, 1, s, 9, 7, 4, 4 + sizeof out, out), 1);
    ck_assert_int_eq(out[5], 0xAA);
    ck_assert_int_eq(out[6], 0);
    /* A change begins: no use, no insert, for readers sampled before or during it. */
    fs_cc_write_begin(cc, 1);
    ck_assert_int_eq(fs_cc_sample(cc, 1) & 1, 1);
    ck_assert_int_eq(fs_cc_read(cc, 1, s, 9, 4, 0, sizeof out, out), 0);
    fs_cc_insert(cc, 1, fs_cc_sample(cc, 1), 9, 8, cc_chunk(CS, 8), CS);
    fs_cc_stripe_unlocked(cc, 1);
    ck_assert_uint_eq(fs_cc_sample(cc, 1), s + 2);
    ck_assert_int_eq(fs_cc_read(cc, 1, s + 2, 9, 4, 0, sizeof out, out), 0);
    ck_assert_int_eq(fs_cc_read(cc, 1, s + 2, 9, 8, 0, sizeof out, out), 0);
    fs_cc_insert(cc, 1, s, 9, 8, cc_chunk(CS, 8), CS); /* sampled before the change */
    ck_assert_int_eq(fs_cc_read(cc, 1, s + 2, 9, 8, 0, sizeof out, out), 0);
    /* other stripes are untouched; invalidate kills a stripe's chunks */
    fs_cc_insert(cc, 2, fs_cc_sample(cc, 2), 10, 0, cc_chunk(CS, 3), CS);
    ck_assert_int_eq(fs_cc_read(cc, 2, fs_cc_sample(cc, 2), 10, 0, 0, 1, out), 1);
    fs_cc_invalidate(cc, 2);
    ck_assert_int_eq(fs_cc_read(cc, 2, fs_cc_sample(cc, 2), 10, 0, 0, 1, out), 0);
    fs_cc_free(cc);
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
    tcase_add_test(tc, test_fs_partial_reads_are_served_from_the_chunk_cache);
    tcase_add_test(tc, test_fs_chunk_cache_size_is_configurable);
    tcase_add_test(tc, test_fs_cached_chunk_never_outlives_a_write);
    tcase_add_test(tc, test_fs_cached_chunk_never_outlives_truncate_or_punch);
    tcase_add_test(tc, test_fs_cached_chunk_never_outlives_rename_over);
    tcase_add_test(tc, test_fs_cached_chunk_never_outlives_unlink_and_reuse_of_its_inode);
    tcase_add_test(tc, test_fs_chunk_cache_never_serves_an_older_version_to_concurrent_readers);
    tcase_add_test(tc, test_fs_chunk_cache_stays_within_capacity_and_obeys_stripe_sequence);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
