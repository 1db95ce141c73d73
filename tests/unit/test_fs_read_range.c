/* test_fs_read_range.c - fs_read of parts of chunks through kv_get_range (only the pages of the
 * range are read): the bytes of random reads of every size against a model of the file (holes,
 * a short chunk, zeros past the stored bytes, EOF), and the chunk cache's admission policy
 * (fs_cc_admit) that decides when a miss reads and keeps the whole chunk instead.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkutil.h"
#include "chunkcache.h"
#include "fs_fixture.h"
#include "fs.h"
#include "testutil.h"

#define CS 65536u

/* 256 lookups that miss (a stripe's sample, chunks nobody inserted). */
static void miss_a_window(struct fs_cc *cc)
{
    char out[16];
    for (uint64_t i = 0; i < FS_CC_ADMIT_WINDOW; i++)
        ck_assert_int_eq(fs_cc_read(cc, 1, fs_cc_sample(cc, 1), 9, 100000 + i, 0, 16, out), 0);
}

START_TEST(test_fs_cc_admits_every_miss_only_while_lookups_hit)
{
    struct fs_cc *cc = fs_cc_new(4 * CS, CS, 4);
    ck_assert_ptr_nonnull(cc);
    ck_assert_int_eq(fs_cc_admit(cc, 9, 1), 1); /* no history: admit */
    miss_a_window(cc);
    /* A random reader: only the second miss of a chunk among the recent ones is admitted. */
    ck_assert_int_eq(fs_cc_admit(cc, 9, 7), 0);
    ck_assert_int_eq(fs_cc_admit(cc, 9, 8), 0);
    ck_assert_int_eq(fs_cc_admit(cc, 9, 7), 1);
    ck_assert_int_eq(fs_cc_admit(cc, 10, 8), 0); /* another inode's chunk 8 */
    for (uint64_t i = 0; i < 2 * FS_CC_RECENT_MISSES; i++)
        ck_assert_int_eq(fs_cc_admit(cc, 11, 1000 + i), 0);
    ck_assert_int_eq(fs_cc_admit(cc, 9, 8), 0); /* forgotten since */
    /* Lookups that hit again (a reader coming back to its chunks): every miss is admitted. */
    char *chunk = malloc(CS), out[16];
    ck_assert_ptr_nonnull(chunk);
    memset(chunk, 3, CS);
    uint64_t s = fs_cc_sample(cc, 1);
    fs_cc_insert(cc, 1, s, 9, 5, chunk, CS);
    for (int i = 0; i < FS_CC_ADMIT_WINDOW; i++)
        ck_assert_int_eq(fs_cc_read(cc, 1, s, 9, 5, 0, 16, out), 1);
    ck_assert_int_eq(fs_cc_admit(cc, 9, 12345), 1);
    miss_a_window(cc);
    ck_assert_int_eq(fs_cc_admit(cc, 9, 12346), 0);
    fs_cc_free(cc);
    /* No cache, or one that cannot hold a chunk: never read a whole chunk for it. */
    ck_assert_int_eq(fs_cc_admit(NULL, 9, 1), 0);
    cc = fs_cc_new(CS - 1, CS, 4);
    ck_assert_ptr_nonnull(cc);
    ck_assert_int_eq(fs_cc_admit(cc, 9, 1), 0);
    fs_cc_free(cc);
}
END_TEST

/* Compares fs_read of [off, off + n) with the model. */
static void read_eq(uint64_t f, const uint8_t *model, uint64_t size, uint64_t off, size_t n)
{
    static uint8_t got[3 * CS];
    memset(got, 0xee, n);
    size_t want = off >= size ? 0 : (size - off < n ? (size_t)(size - off) : n);
    ck_assert_int_eq(fs_read(tfs_fs, f, off, n, got), (ssize_t)want);
    if (want && memcmp(got, model + off, want) != 0)
        ck_abort_msg("read [%llu, +%zu): wrong bytes", (unsigned long long)off, n);
}

/* Replaces the fixture's filesystem by one on a fresh store with a value log, as kvfs makes
 * them (chunks of 4 KiB and more in value-log records, paged), and chunk_cache_bytes. */
static void open_value_log_fs(size_t chunk_cache_bytes)
{
    tfs_close();
    ck_assert_int_eq(tu_rmtree(tfs_dir), 0);
    kv_options o;
    kv_options_init(&o);
    o.log_level = KV_LOG_ERROR;
    o.value_log_threshold = 4096;
    ck_assert_int_eq(kv_open(tfs_dir, &o, &tfs_db), 0);
    struct fs_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.store_path = tfs_dir;
    cfg.chunk_cache_bytes = chunk_cache_bytes;
    ck_assert_int_eq(fs_open(tfs_db, &cfg, 0, 0, &tfs_fs), 0);
}

/* In a store with a value log, a file with a hole (chunk 0), whole chunks, a chunk stored short
 * (chunk 40: 5000 bytes, then zeros up to EOF after an extending truncate) and a hole at its end
 * (chunk 41); random reads of sizes from 1 byte to 3 chunks, aligned or not, with a small cache (so
 * that most misses read only their pages) and then with none, all return the model's bytes. */
START_TEST(test_fs_random_partial_reads_return_the_written_bytes)
{
    uint64_t size = 42 * (uint64_t)CS, wend = 40 * (uint64_t)CS + 5000;
    uint8_t *model = calloc(1, size);
    ck_assert_ptr_nonnull(model);
    tu_rng r;
    tu_rng_init(&r, tu_seed("fs_read_range"));
    tu_rng_fill(&r, model + CS, wend - CS);
    open_value_log_fs(2 * CS);
    uint64_t f = tfs_mkfile(1, "f");
    ck_assert_int_eq(fs_write(tfs_fs, f, CS, model + CS, wend - CS), (ssize_t)(wend - CS));
    struct stat st, out;
    memset(&st, 0, sizeof(st));
    st.st_size = (off_t)size;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_SIZE, &out), 0);
    ck_assert_int_eq(kv_flush(tfs_db), 0); /* the chunks' pointers in a table */
    static const size_t sizes[] = {1, 100, 4096, 4096, 4096, 5000, CS, 2 * CS + 3};
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 1500; i++) {
            size_t n = sizes[tu_rng_below(&r, sizeof(sizes) / sizeof(sizes[0]))];
            uint64_t off = tu_rng_below(&r, size + 2 * CS);
            if (tu_rng_chance(&r, 1, 2))
                off = off / 4096 * 4096;
            read_eq(f, model, size, off, n);
        }
        read_eq(f, model, size, 0, 3 * CS);
        read_eq(f, model, size, 40 * (uint64_t)CS + 4000, 2000); /* stored bytes, then zeros */
        read_eq(f, model, size, size - 10, 100);
        tfs_chunk_cache_bytes = FS_CONFIG_NO_CHUNK_CACHE;
        tfs_reopen(); /* the store keeps its value log */
    }
    tfs_chunk_cache_bytes = 0;
    uint64_t problems = 1;
    tfs_close();
    ck_assert_int_eq(tu_dir_find_suffix(tfs_dir, ".vlog", NULL, 0), 1);
    ck_assert_int_eq(kv_check(tfs_dir, NULL, NULL, NULL, &problems), 0);
    ck_assert_uint_eq(problems, 0);
    free(model);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fs_read_range");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, tfs_setup, tfs_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fs_cc_admits_every_miss_only_while_lookups_hit);
    tcase_add_test(tc, test_fs_random_partial_reads_return_the_written_bytes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
