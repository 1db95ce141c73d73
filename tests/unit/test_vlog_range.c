/* test_vlog_range.c - paged value-log records and kv_get_range: partial reads at and across
 * page boundaries and past the value's end, damage found in exactly the pages read (never wrong
 * bytes), the offline check and GC over paged records, and stores written in format version 1.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkutil.h"
#include "db/db_impl.h"
#include "db/vlog.h"
#include "kvcore/kv.h"
#include "testutil.h"
#include "util/coding.h"

#define PAGE VLOG_PAGE_SIZE
#define BIG (16 * PAGE + 100) /* 17 pages, the last one short */

static void range_opts(kv_options *o)
{
    kv_options_init(o);
    o->value_log_threshold = 100;
    o->memtable_bytes = 256 * 1024;
    o->compression = 0;
    o->value_log_gc_percent = 101; /* GC only when a test runs it */
    o->log_fn = tu_quiet_log;
}

static void value_of(char *v, size_t n, int i)
{
    tu_rng r;
    tu_rng_init(&r, 77u + (uint64_t)i);
    tu_rng_fill(&r, v, n);
}

static void key_of(char *k, int i)
{
    snprintf(k, 16, "rk%06d", i);
}

static void put_value(kv_db *db, int i, size_t n)
{
    char k[16], *v = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(v);
    key_of(k, i);
    value_of(v, n, i);
    ck_assert_int_eq(kv_put(db, k, strlen(k), v, n, 0), 0);
    free(v);
}

/* kv_get_range of [off, off + len) of key i (a value of n bytes) returns exactly those bytes of
 * the value, or none past its end, and the whole length. */
static void expect_range(kv_db *db, int i, size_t n, uint64_t off, size_t len)
{
    char k[16], *want = malloc(n + 1), *got = malloc(len + 1);
    ck_assert(want && got);
    key_of(k, i);
    value_of(want, n, i);
    memset(got, 0x5a, len + 1);
    size_t copied = 99, vlen = 99;
    int rc = kv_get_range(db, NULL, k, strlen(k), off, got, len, &copied, &vlen);
    ck_assert_msg(rc == 0, "range %s [%llu, +%zu): %s", k, (unsigned long long)off, len,
                  kv_strerror(rc));
    size_t expect = off >= n ? 0 : (n - off < len ? n - off : len);
    ck_assert_uint_eq(vlen, n);
    ck_assert_uint_eq(copied, expect);
    ck_assert_msg(expect == 0 || memcmp(got, want + off, expect) == 0,
                  "range %s [%llu, +%zu): wrong bytes", k, (unsigned long long)off, len);
    ck_assert_int_eq((unsigned char)got[expect], 0x5a); /* nothing written past what it copied */
    free(want);
    free(got);
}

/* Every interesting range of a BIG value: page starts and ends, across pages, the short last
 * page, the whole value, past its end. */
static void expect_ranges(kv_db *db, int i, size_t n)
{
    static const struct {
        uint64_t off;
        size_t len;
    } r[] = {{0, 1},        {0, PAGE},        {PAGE - 1, 2},
             {PAGE, PAGE},  {PAGE + 7, 100},  {3 * PAGE - 5, 2 * PAGE + 10},
             {0, BIG},      {16 * PAGE, 100}, {BIG - 1, 1},
             {BIG - 1, 50}, {BIG, 10},        {BIG + 4096, 10},
             {5, 0},        {0, 2 * BIG}};
    for (size_t j = 0; j < sizeof(r) / sizeof(r[0]); j++)
        expect_range(db, i, n, r[j].off, r[j].len);
}

/* The file offset of the first record of segment `seg` (its first byte after the header) and
 * the offsets of its value's pages, for a record of key length klen and value length vlen. */
static long first_value_byte(int klen, size_t vlen)
{
    return VLOG_SEGMENT_HEADER_SIZE + VLOG_RECORD_HEADER_SIZE + klen +
           (long)((vlen + PAGE - 1) / PAGE * 8);
}

static void segment_path(const char *dir, char *out, size_t n)
{
    char name[64];
    ck_assert_int_eq(tu_dir_find_suffix(dir, ".vlog", name, sizeof(name)), 1);
    snprintf(out, n, "%s/%s", dir, name);
}

/* A store in dir holding key 0 -> a BIG value in a table (so that WAL replay does not read it),
 * with the byte at offset `at` of its segment xor'ed with mask. */
static void make_damaged_store(const char *dir, const kv_options *o, long at, int mask)
{
    kv_db *db = tu_ck_open(dir, o);
    put_value(db, 0, BIG);
    ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(kv_close(db), 0);
    char seg[512];
    segment_path(dir, seg, sizeof(seg));
    tu_ck_xor_byte(seg, at, mask);
}

/* kv_check of dir fails with KV_ECORRUPT and counts the damage. */
static void expect_check_finds_damage(const char *dir, const kv_options *o)
{
    uint64_t problems = 0;
    ck_assert_int_eq(kv_check(dir, o, NULL, NULL, &problems), KV_ECORRUPT);
    ck_assert_uint_gt(problems, 0);
}

START_TEST(test_vlog_range_reads_return_exactly_the_asked_bytes)
{
    char *dir = tu_ck_tempdir("vlog_range");
    kv_options o;
    range_opts(&o);
    kv_db *db = tu_ck_open(dir, &o);
    put_value(db, 0, BIG);      /* paged */
    put_value(db, 1, 50);       /* inline */
    put_value(db, 2, 3000);     /* a raw record: below VLOG_PAGED_MIN */
    put_value(db, 3, 2 * PAGE); /* paged, exactly two whole pages */
    expect_ranges(db, 0, BIG);  /* pointer in the memtable */
    expect_range(db, 1, 50, 10, 20);
    expect_range(db, 1, 50, 40, 20);
    expect_range(db, 1, 50, 50, 20);
    expect_range(db, 2, 3000, 1000, 4096);
    expect_range(db, 3, 2 * PAGE, PAGE - 1, 2);
    expect_range(db, 3, 2 * PAGE, PAGE, PAGE);
    ck_assert_int_eq(kv_flush(db), 0);
    expect_ranges(db, 0, BIG); /* pointer in a table */
    expect_range(db, 2, 3000, 0, 3000);
    ck_assert_int_eq(kv_close(db), 0);
    db = tu_ck_open(dir, &o);
    expect_ranges(db, 0, BIG); /* reopened: no head cached */
    size_t n, vlen;
    char b[8];
    ck_assert_int_eq(kv_get_range(db, NULL, "absent", 6, 0, b, sizeof(b), &n, &vlen), KV_ENOTFOUND);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(kv_get_range(db, NULL, "rk000000", 8, 0, NULL, 8, &n, &vlen), KV_EINVAL);
    ck_assert_int_eq(kv_close(db), 0);
    uint64_t problems = 1;
    ck_assert_int_eq(kv_check(dir, &o, NULL, NULL, &problems), 0);
    ck_assert_uint_eq(problems, 0);
    tu_ck_rmtempdir(&dir);
}
END_TEST

/* A store without a value log serves ranges of its values too. */
START_TEST(test_vlog_range_reads_work_without_a_value_log)
{
    char *dir = tu_ck_tempdir("vlog_range_plain");
    kv_options o;
    range_opts(&o);
    o.value_log_threshold = 0;
    kv_db *db = tu_ck_open(dir, &o);
    ck_assert_ptr_null(db->vlog);
    put_value(db, 0, BIG);
    expect_ranges(db, 0, BIG);
    ck_assert_int_eq(kv_flush(db), 0);
    expect_ranges(db, 0, BIG);
    ck_assert_int_eq(kv_close(db), 0);
    tu_ck_rmtempdir(&dir);
}
END_TEST

/* A flipped byte in page 5 of a paged value: a range that needs page 5 (and a whole get) is
 * KV_ECORRUPT, a range of other pages reads (only the pages read are verified), and the
 * offline check counts the damage. */
START_TEST(test_vlog_range_read_of_a_damaged_page_is_ecorrupt)
{
    char *dir = tu_ck_tempdir("vlog_range_page");
    kv_options o;
    range_opts(&o);
    make_damaged_store(dir, &o, first_value_byte(8, BIG) + 5 * PAGE + 17, 0x01);
    kv_db *db = tu_ck_open(dir, &o);
    char b[2 * PAGE];
    size_t n = 7, vlen = 7;
    ck_assert_int_eq(kv_get_range(db, NULL, "rk000000", 8, 5 * PAGE + 100, b, 10, &n, &vlen),
                     KV_ECORRUPT);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(kv_get_range(db, NULL, "rk000000", 8, 4 * PAGE + 10, b, PAGE, &n, &vlen),
                     KV_ECORRUPT); /* across pages 4 and 5 */
    expect_range(db, 0, BIG, 0, PAGE);
    expect_range(db, 0, BIG, 4 * PAGE, PAGE);
    expect_range(db, 0, BIG, 6 * PAGE, 2 * PAGE);
    void *v;
    ck_assert_int_eq(kv_get(db, NULL, "rk000000", 8, &v, &vlen), KV_ECORRUPT);
    ck_assert_int_eq(kv_close(db), 0);
    expect_check_finds_damage(dir, &o);
    tu_ck_rmtempdir(&dir);
}
END_TEST

/* Damage to the head (a page checksum, the key, a size) fails every range of the value. */
START_TEST(test_vlog_range_read_with_a_damaged_head_is_ecorrupt)
{
    static const long at[] = {VLOG_SEGMENT_HEADER_SIZE + 8,                           /* type */
                              VLOG_SEGMENT_HEADER_SIZE + 18,                          /* vlen */
                              VLOG_SEGMENT_HEADER_SIZE + VLOG_RECORD_HEADER_SIZE + 3, /* key */
                              VLOG_SEGMENT_HEADER_SIZE + VLOG_RECORD_HEADER_SIZE + 8 + 40};
    for (size_t j = 0; j < sizeof(at) / sizeof(at[0]); j++) {
        char *dir = tu_ck_tempdir("vlog_range_head");
        kv_options o;
        range_opts(&o);
        make_damaged_store(dir, &o, at[j], 0x02);
        kv_db *db = tu_ck_open(dir, &o);
        char b[PAGE];
        size_t n, vlen;
        for (uint64_t off = 0; off < BIG; off += 3 * PAGE)
            ck_assert_msg(kv_get_range(db, NULL, "rk000000", 8, off, b, sizeof(b), &n, &vlen) ==
                              KV_ECORRUPT,
                          "damage at %ld, range at %llu", at[j], (unsigned long long)off);
        ck_assert_int_eq(kv_close(db), 0);
        expect_check_finds_damage(dir, &o);
        tu_ck_rmtempdir(&dir);
    }
}
END_TEST

/* GC moves paged records as they are: after a forced pass over a segment with dead records,
 * every live value reads whole and in ranges, and the check finds nothing. */
START_TEST(test_vlog_gc_moves_paged_records)
{
    char *dir = tu_ck_tempdir("vlog_range_gc");
    kv_options o;
    range_opts(&o);
    o.value_log_segment_bytes = 256 * 1024;
    kv_db *db = tu_ck_open(dir, &o);
    for (int i = 0; i < 24; i++)
        put_value(db, i, BIG);
    for (int i = 0; i < 24; i += 2) { /* the even keys' records become garbage */
        char k[16];
        key_of(k, i);
        ck_assert_int_eq(kv_delete(db, k, strlen(k), 0), 0);
    }
    ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    uint64_t moved = 0, total = 0;
    for (int pass = 0; pass < 8; pass++) {
        moved = 0;
        ck_assert_int_eq(vlog_gc_run(db->vlog, 1, &moved), 0);
        total += moved;
    }
    ck_assert_uint_gt(total, 0);
    for (int i = 1; i < 24; i += 2) {
        expect_range(db, i, BIG, 0, BIG);
        expect_range(db, i, BIG, 7 * PAGE + 3, PAGE);
    }
    ck_assert_int_eq(kv_close(db), 0);
    db = tu_ck_open(dir, &o);
    for (int i = 1; i < 24; i += 2)
        expect_ranges(db, i, BIG);
    ck_assert_int_eq(kv_close(db), 0);
    uint64_t problems = 1;
    ck_assert_int_eq(kv_check(dir, &o, NULL, NULL, &problems), 0);
    ck_assert_uint_eq(problems, 0);
    tu_ck_rmtempdir(&dir);
}
END_TEST

static uint32_t file_version(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char h[VLOG_SEGMENT_HEADER_SIZE];
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fread(h, 1, sizeof(h), f), sizeof(h));
    fclose(f);
    return coding_get_fixed32((const char *)h + 8);
}

static unsigned first_record_type(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, VLOG_SEGMENT_HEADER_SIZE + 8, SEEK_SET), 0);
    int c = fgetc(f);
    fclose(f);
    ck_assert_int_ge(c, 0);
    return (unsigned)c;
}

/* A store written in format version 1 (no paged records) opens and reads unchanged, whole and
 * in ranges (raw, compressed and inline values); a writable open upgrades its marker to
 * version 2 (so a version-1 binary refuses it) and writes new values paged in version-2
 * segments; both kinds read after a reopen and pass the check. */
START_TEST(test_vlog_version1_store_reads_and_upgrades)
{
    char *dir = tu_ck_tempdir("vlog_range_v1");
    kv_options o;
    range_opts(&o);
    vlog_test_write_version(1);
    kv_db *db = tu_ck_open(dir, &o);
    put_value(db, 0, BIG); /* raw in version 1 */
    put_value(db, 1, 40);
    ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(kv_close(db), 0);
    o.compression = 1; /* a compressible value: zstd */
    db = tu_ck_open(dir, &o);
    char *z = calloc(1, BIG);
    ck_assert_int_eq(kv_put(db, "zz", 2, z, BIG, 0), 0);
    ck_assert_int_eq(kv_close(db), 0);
    vlog_test_write_version(VLOG_FORMAT_VERSION);
    char marker[512], seg[512];
    snprintf(marker, sizeof(marker), "%s/%s", dir, VLOG_MARKER_NAME);
    segment_path(dir, seg, sizeof(seg));
    ck_assert_uint_eq(file_version(marker), 1);
    ck_assert_uint_eq(file_version(seg), 1);
    ck_assert_uint_eq(first_record_type(seg), VLOG_RECORD_RAW);

    o.read_only = 1; /* a read-only open leaves the marker alone */
    db = tu_ck_open(dir, &o);
    expect_ranges(db, 0, BIG);
    ck_assert_int_eq(kv_close(db), 0);
    ck_assert_uint_eq(file_version(marker), 1);

    o.read_only = 0;
    db = tu_ck_open(dir, &o);
    ck_assert_uint_eq(file_version(marker), VLOG_FORMAT_VERSION);
    expect_ranges(db, 0, BIG);
    expect_range(db, 1, 40, 3, 10);
    char b[100];
    size_t n, vlen;
    ck_assert_int_eq(kv_get_range(db, NULL, "zz", 2, 5 * PAGE, b, sizeof(b), &n, &vlen), 0);
    ck_assert_uint_eq(n, sizeof(b));
    ck_assert_uint_eq(vlen, BIG);
    ck_assert(memcmp(b, z, sizeof(b)) == 0);
    o.compression = 0;
    ck_assert_int_eq(kv_close(db), 0);
    db = tu_ck_open(dir, &o);
    put_value(db, 2, BIG); /* paged, in a new version-2 segment */
    expect_ranges(db, 2, BIG);
    ck_assert_int_eq(kv_close(db), 0);
    db = tu_ck_open(dir, &o);
    expect_ranges(db, 0, BIG);
    expect_ranges(db, 2, BIG);
    ck_assert_int_eq(kv_close(db), 0);
    uint64_t problems = 1;
    ck_assert_int_eq(kv_check(dir, &o, NULL, NULL, &problems), 0);
    ck_assert_uint_eq(problems, 0);
    free(z);
    tu_ck_rmtempdir(&dir);
}
END_TEST

/* A segment of a version this binary does not know is refused, never read. */
START_TEST(test_vlog_segment_of_a_newer_version_is_refused)
{
    char *dir = tu_ck_tempdir("vlog_range_v3");
    kv_options o;
    range_opts(&o);
    make_damaged_store(dir, &o, 8, VLOG_FORMAT_VERSION ^ (VLOG_FORMAT_VERSION + 1));
    expect_check_finds_damage(dir, &o);
    kv_db *db = tu_ck_open(dir, &o);
    ck_assert_int_eq(vlog_gc_run(db->vlog, 1, NULL), KV_EVERSION); /* GC refuses to read it */
    ck_assert_int_eq(kv_close(db), 0);
    tu_ck_rmtempdir(&dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vlog_range");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_vlog_range_reads_return_exactly_the_asked_bytes);
    tcase_add_test(tc, test_vlog_range_reads_work_without_a_value_log);
    tcase_add_test(tc, test_vlog_range_read_of_a_damaged_page_is_ecorrupt);
    tcase_add_test(tc, test_vlog_range_read_with_a_damaged_head_is_ecorrupt);
    tcase_add_test(tc, test_vlog_gc_moves_paged_records);
    tcase_add_test(tc, test_vlog_version1_store_reads_and_upgrades);
    tcase_add_test(tc, test_vlog_segment_of_a_newer_version_is_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
