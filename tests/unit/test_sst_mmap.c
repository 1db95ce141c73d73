/* test_sst_mmap.c - unit tests of tables read through a memory mapping (sst_reader_open_mapped).
 *
 * Tables are written to real files and opened through a counting wrapper of the POSIX env, so
 * each test can tell whether the reader used the mapping (no pread of a block) or fell back.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkutil.h"
#include "kvcore/kv.h"
#include "mem_file.h"
#include "table/sst.h"
#include "testutil.h"
#include "util/cache.h"
#include "util/ikey.h"

/* ---- An env that counts preads and passes everything else to the POSIX env ----------------- */

typedef struct counting_file {
    env_file base;
    env_file *inner;
} counting_file;

static int preads;

static int cf_pread(env_file *ef, void *dst, size_t n, uint64_t off, size_t *nread)
{
    __atomic_fetch_add(&preads, 1, __ATOMIC_RELAXED);
    return env_pread(((counting_file *)ef)->inner, dst, n, off, nread);
}

static int cf_map_readable(env_file *ef, uint64_t size, const void **base)
{
    return env_map_readable(((counting_file *)ef)->inner, size, base);
}

static int cf_close(env_file *ef)
{
    counting_file *f = (counting_file *)ef;
    int rc = env_close(f->inner);
    free(f);
    return rc;
}

static kv_env counting_env = {
    .pread = cf_pread, .close = cf_close, .map_readable = cf_map_readable};

static env_file *open_counting(const char *path)
{
    const kv_env *px = env_posix();
    counting_file *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(px->open_readable(px, path, &f->inner), 0);
    f->base.env = &counting_env;
    return &f->base;
}

/* ---- Test tables ----------------------------------------------------------------------------- */

#define NKEYS 20000

static char *tdir;
static char path[4096];
static uint64_t fsize;

static void setup(void)
{
    tdir = tu_ck_tempdir("sst_mmap");
    snprintf(path, sizeof path, "%s/000007.sst", tdir);
    preads = 0;
}

static void teardown(void)
{
    tu_ck_rmtempdir(&tdir);
}

static void make_key(buf *k, unsigned i)
{
    char uk[32];
    int n = snprintf(uk, sizeof uk, "key%08u", i * 2);
    buf_clear(k);
    ck_assert_int_eq(ikey_append(k, slice_make(uk, (size_t)n), 1000000 - i, IKEY_TYPE_VALUE), 0);
}

/* Value i: 10..109 bytes, compressible or not, the same on every call. */
static void make_value(buf *v, unsigned i, int compressible)
{
    tu_rng rng;
    tu_rng_init(&rng, i + 1);
    size_t n = 10 + tu_rng_below(&rng, 100);
    buf_clear(v);
    ck_assert_int_eq(buf_reserve(v, n), 0);
    for (size_t j = 0; j < n; j++)
        v->data[j] = compressible ? "abcabcab"[j % 8] : (char)tu_rng_below(&rng, 256);
    v->len = n;
}

/* Writes a table of NKEYS entries to path with the POSIX env, synced, and sets fsize. */
static void write_table(int compression)
{
    const kv_env *px = env_posix();
    env_file *f;
    ck_assert_int_eq(px->open_writable(px, path, &f), 0);
    /* 4 KiB blocks, restarts every 16 keys, zstd level 1 if compressing, 10 Bloom bits/key */
    sst_options o = {4096, 16, compression, 1, 10};
    sst_builder *b;
    ck_assert_int_eq(sst_builder_new(f, &o, &b), 0);
    buf k, v;
    buf_init(&k);
    buf_init(&v);
    for (unsigned i = 0; i < NKEYS; i++) {
        make_key(&k, i);
        make_value(&v, i, compression);
        ck_assert_int_eq(sst_builder_add(b, buf_slice(&k), buf_slice(&v)), 0);
    }
    ck_assert_int_eq(sst_builder_finish(b), 0);
    fsize = sst_builder_file_size(b);
    sst_builder_free(b);
    ck_assert_int_eq(env_sync(f), 0);
    ck_assert_int_eq(env_close(f), 0);
    buf_free(&k);
    buf_free(&v);
}

static int log_errors;
static char last_log[512];
static void capture_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level == KV_LOG_ERROR) {
        log_errors++;
        snprintf(last_log, sizeof last_log, "%s", msg);
    }
}
static const kv_logger test_log = {capture_log, NULL, KV_LOG_DEBUG};

static int open_reader(int mapped, cache *c, uint64_t size, sst_reader **r)
{
    sst_read_options ro = {
        .block_cache = c, .log = &test_log, .verify_checksums = 1, .fill_cache = 1};
    env_file *f = open_counting(path);
    return mapped ? sst_reader_open_mapped(f, size, "000007.sst", &ro, r)
                  : sst_reader_open(f, size, "000007.sst", &ro, r);
}

static void found_copy(void *ctx, slice ikey, slice value)
{
    buf *out = ctx;
    buf_clear(out);
    buf_append(out, ikey.data, ikey.size);
    buf_append(out, value.data, value.size);
}

/* Asserts that r holds exactly the table write_table(compression) wrote: a full scan, a scan
 * from the middle, and a get of every 7th key (present) and of absent keys. */
static void check_reader(sst_reader *r, int compression)
{
    buf k, v, got, want;
    buf_init(&k);
    buf_init(&v);
    buf_init(&got);
    buf_init(&want);
    iter *it = sst_reader_iter_new(r, 1);
    ck_assert_ptr_nonnull(it);
    unsigned i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it), i++) {
        make_key(&k, i);
        make_value(&v, i, compression);
        ck_assert_msg(slice_equal(iter_key(it), buf_slice(&k)), "key %u differs", i);
        ck_assert_msg(slice_equal(iter_value(it), buf_slice(&v)), "value %u differs", i);
    }
    ck_assert_int_eq(iter_status(it), 0);
    ck_assert_uint_eq(i, NKEYS);
    make_key(&k, NKEYS / 2);
    iter_seek(it, buf_slice(&k));
    for (i = NKEYS / 2; i < NKEYS / 2 + 300; i++, iter_next(it)) {
        ck_assert(iter_valid(it));
        make_key(&k, i);
        ck_assert(slice_equal(iter_key(it), buf_slice(&k)));
    }
    iter_free(it);
    for (i = 0; i < NKEYS; i += 7) {
        make_key(&k, i);
        make_value(&v, i, compression);
        buf_clear(&want);
        buf_append(&want, k.data, k.len);
        buf_append(&want, v.data, v.len);
        buf_clear(&got);
        ck_assert_int_eq(sst_reader_get(r, buf_slice(&k), &got, found_copy), 0);
        ck_assert_msg(slice_equal(buf_slice(&got), buf_slice(&want)), "get %u differs", i);
    }
    buf_free(&k);
    buf_free(&v);
    buf_free(&got);
    buf_free(&want);
}

/* ---- Tests ------------------------------------------------------------------------------------
 */

static void mapped_reads_equal_pread_reads(int compression)
{
    write_table(compression);
    /* A small cache, so that blocks are read again and again; and none at all. */
    for (int with_cache = 0; with_cache <= 1; with_cache++) {
        cache *c = with_cache ? cache_new(64 << 10) : NULL;
        sst_reader *r;
        preads = 0;
        ck_assert_int_eq(open_reader(0, c, fsize, &r), 0);
        check_reader(r, compression);
        sst_reader_close(r);
        ck_assert_int_gt(preads, NKEYS / 7 / 4); /* the pread path reads block by block */

        preads = 0;
        ck_assert_int_eq(open_reader(1, c, fsize, &r), 0);
        check_reader(r, compression);
        sst_reader_close(r);
        ck_assert_int_eq(preads, 0); /* everything came through the mapping */
        cache_free(c);
    }
    ck_assert_int_eq(log_errors, 0);
}

START_TEST(test_sst_mapped_reads_equal_pread_reads_uncompressed)
{
    mapped_reads_equal_pread_reads(0);
}
END_TEST

START_TEST(test_sst_mapped_reads_equal_pread_reads_compressed)
{
    mapped_reads_equal_pread_reads(1);
}
END_TEST

/* The manifest's size is trusted only after the descriptor confirms it: a table cut short
 * before open is not mapped (that would raise SIGBUS on the missing pages), and the pread
 * fallback reports it as corrupt. */
START_TEST(test_sst_mapped_table_shorter_than_its_size_is_ecorrupt_not_sigbus)
{
    write_table(0);
    uint64_t cuts[] = {1, 48, fsize / 2, fsize - 1};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        ck_assert_int_eq(truncate(path, (off_t)(fsize - cuts[c])), 0);
        sst_reader *r = (sst_reader *)1;
        log_errors = 0;
        ck_assert_int_eq(open_reader(1, NULL, fsize, &r), KV_ECORRUPT);
        ck_assert_ptr_null(r);
        ck_assert_int_ge(log_errors, 1);
        ck_assert_msg(strstr(last_log, "000007.sst") && strstr(last_log, "offset"),
                      "message without file and offset: %s", last_log);
        write_table(0);
    }
}
END_TEST

/* A bit flipped in a data block on disk after the table was opened and mapped is seen through
 * the mapping and caught by the block checksum, with the file and the block's offset named. */
START_TEST(test_sst_mapped_block_corrupted_after_open_is_ecorrupt)
{
    write_table(0);
    sst_reader *r;
    ck_assert_int_eq(open_reader(1, NULL, fsize, &r), 0);
    tu_ck_xor_byte(path, 100, 0x10); /* inside the first data block */
    log_errors = 0;
    iter *it = sst_reader_iter_new(r, 0);
    iter_seek_first(it);
    ck_assert(!iter_valid(it));
    ck_assert_int_eq(iter_status(it), KV_ECORRUPT);
    iter_free(it);
    ck_assert_int_eq(preads, 0);
    ck_assert_int_ge(log_errors, 1);
    ck_assert_msg(strstr(last_log, "000007.sst") && strstr(last_log, "offset 0") &&
                      strstr(last_log, "checksum"),
                  "unexpected message: %s", last_log);
    sst_reader_close(r);
}
END_TEST

/* An env without map_readable (the fault env, in-memory files) reads the table with pread. */
START_TEST(test_sst_mapped_open_falls_back_to_pread_without_map_readable)
{
    write_table(0);
    char *data;
    size_t len;
    ck_assert_int_eq(env_read_file(env_posix(), path, &data, &len), 0);
    buf file;
    buf_init(&file);
    ck_assert_int_eq(buf_append(&file, data, len), 0);
    free(data);
    tu_memfile *m = tu_memfile_open(&file);
    ck_assert_ptr_null(m->base.env->map_readable);
    sst_read_options ro = {.log = &test_log, .verify_checksums = 1, .fill_cache = 1};
    sst_reader *r;
    ck_assert_int_eq(sst_reader_open_mapped(&m->base, file.len, "000007.sst", &ro, &r), 0);
    check_reader(r, 0);
    sst_reader_close(r);
    buf_free(&file);
}
END_TEST

/* The POSIX env maps only what the open file holds, once per handle. */
START_TEST(test_env_posix_map_readable_refuses_sizes_past_the_end_and_a_second_map)
{
    write_table(0);
    const kv_env *px = env_posix();
    env_file *f;
    ck_assert_int_eq(px->open_readable(px, path, &f), 0);
    const void *base = (const void *)1;
    ck_assert_int_ne(env_map_readable(f, fsize + 1, &base), 0);
    ck_assert_ptr_null(base);
    ck_assert_int_ne(env_map_readable(f, 0, &base), 0);
    ck_assert_int_eq(env_map_readable(f, fsize, &base), 0);
    ck_assert_ptr_nonnull(base);
    char tail[64];
    size_t got;
    ck_assert_int_eq(env_pread(f, tail, sizeof tail, fsize - sizeof tail, &got), 0);
    ck_assert_uint_eq(got, sizeof tail);
    ck_assert_mem_eq((const char *)base + fsize - sizeof tail, tail, sizeof tail);
    const void *again = (const void *)1;
    ck_assert_int_ne(env_map_readable(f, fsize, &again), 0);
    ck_assert_ptr_null(again);
    /* An unlinked table stays readable through its mapping until close. */
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_mem_eq((const char *)base + fsize - sizeof tail, tail, sizeof tail);
    ck_assert_int_eq(env_close(f), 0);
}
END_TEST

/* kv_options.mmap_reads: a store read through mappings returns what pread returns, through
 * gets and scans of flushed and compacted tables, and the option is off by default. */
START_TEST(test_sst_mmap_store_with_mmap_reads_reads_the_same)
{
    kv_options o;
    kv_options_init(&o);
    ck_assert_int_eq(o.mmap_reads, 0);
    o.memtable_bytes = 256 * 1024;
    o.log_level = KV_LOG_ERROR;
    char *dir = tu_ck_tempdir("sst_mmap_db");
    tu_model m;
    tu_model_init(&m);
    for (int pass = 0; pass < 2; pass++) {
        o.mmap_reads = pass;
        kv_db *db = tu_ck_open(dir, &o);
        if (pass == 0) {
            for (unsigned i = 0; i < 20000; i++) {
                char k[32], v[64];
                int kl = snprintf(k, sizeof k, "key%08u", i * 7919u % 20000u);
                int vl = snprintf(v, sizeof v, "value-%u-%u", i, i * 31u);
                ck_assert_int_eq(kv_put(db, k, (size_t)kl, v, (size_t)vl, 0), 0);
                tu_model_put(&m, k, (size_t)kl, v, (size_t)vl);
            }
            ck_assert_int_eq(kv_flush(db), 0);
            ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
        }
        for (size_t i = 0; i < m.n; i++) {
            void *v;
            size_t vl;
            ck_assert_int_eq(kv_get(db, NULL, m.e[i].key, m.e[i].klen, &v, &vl), 0);
            ck_assert_uint_eq(vl, m.e[i].vlen);
            ck_assert(memcmp(v, m.e[i].val, vl) == 0);
            kv_free(v);
        }
        tu_ck_scan_forward(db, NULL, &m);
        ck_assert_int_eq(kv_close(db), 0);
    }
    tu_model_free(&m);
    tu_ck_rmtempdir(&dir);
}
END_TEST

static Suite *sst_mmap_suite(void)
{
    Suite *s = suite_create("sst_mmap");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sst_mapped_reads_equal_pread_reads_uncompressed);
    tcase_add_test(tc, test_sst_mapped_reads_equal_pread_reads_compressed);
    tcase_add_test(tc, test_sst_mapped_table_shorter_than_its_size_is_ecorrupt_not_sigbus);
    tcase_add_test(tc, test_sst_mapped_block_corrupted_after_open_is_ecorrupt);
    tcase_add_test(tc, test_sst_mapped_open_falls_back_to_pread_without_map_readable);
    tcase_add_test(tc, test_env_posix_map_readable_refuses_sizes_past_the_end_and_a_second_map);
    tcase_add_test(tc, test_sst_mmap_store_with_mmap_reads_reads_the_same);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(sst_mmap_suite());
}
