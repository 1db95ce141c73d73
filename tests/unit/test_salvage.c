/* test_salvage.c - kv_salvage repairs a damaged CURRENT, cuts damaged logs back and rebuilds
 * the store around a damaged data block, index, filter, footer, truncated or missing table, or
 * damaged manifest (keeping the originals as *.damaged); every key outside the lost ranges it
 * reports survives with its newest value, nothing returned is ever wrong, and sound stores and
 * foreign directories are left untouched. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkutil.h"
#include "fs.h"
#include "fault_env.h"
#include "fs_fixture.h"
#include "kvcore/kv.h"
#include "table/sst_format.h"
#include "testutil.h"
#include "util/coding.h"

#define NKEYS 1000

static char *tdir;
static kv_lost *lostset; /* what the last salvage_ok() lost */
static int nlost;
static int compress; /* zstd blocks (the default is raw: many small blocks) */
static int tiered;   /* size-tiered compaction */
static int vlogged;  /* a value-log store: every value is a pointer into small segments */

static void setup(void)
{
    compress = 0;
    tiered = 0;
    vlogged = 0;
    tdir = tu_tempdir("salvage");
    ck_assert_ptr_nonnull(tdir);
}

static void teardown(void)
{
    kv_lost_free(lostset);
    lostset = NULL;
    tu_rmtree(tdir);
    free(tdir);
}

static void opts_init(kv_options *o)
{
    kv_options_init(o);
    o->log_fn = tu_quiet_log;
    o->compression = compress;
    o->compaction_style = tiered ? KV_COMPACTION_TIERED : KV_COMPACTION_LEVELED;
    if (vlogged) {
        o->value_log_threshold = 64;        /* every value (> 100 bytes) */
        o->value_log_segment_bytes = 16384; /* about 10 segments */
        o->value_log_gc_percent = 100;      /* no garbage here anyway */
    }
}

static void key_of(int i, char *k, size_t n)
{
    snprintf(k, n, "key%05d", i);
}

/* The value of key i in a store made with the given prefix ("value", or "old" and "new"). */
static void val_with(const char *prefix, int i, char *v, size_t n)
{
    snprintf(v, n, "%s-%d-%0*d", prefix, i, 100, i);
}

static void val_of(int i, char *v, size_t n)
{
    val_with("value", i, v, n);
}

/* Opens the test store and puts every key with the value val_with(prefix, i). */
static kv_db *open_and_put_all(const char *prefix)
{
    kv_options o;
    kv_db *db;
    char k[32], v[160];
    opts_init(&o);
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    for (int i = 0; i < NKEYS; i++) {
        key_of(i, k, sizeof k);
        val_with(prefix, i, v, sizeof v);
        ck_assert_int_eq(kv_put(db, k, strlen(k), v, strlen(v), 0), 0);
    }
    return db;
}

/* A store holding NKEYS keys, one WAL record each; flush: also write them to a table. */
static void make_store(int flush)
{
    kv_db *db = open_and_put_all("value");
    if (flush)
        ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(kv_close(db), 0);
}

/* Reads every key of the store: each must hold exactly its value, or fail with `allowed`
 * (KV_ENOTFOUND or KV_ECORRUPT), which *failed counts. Returns how many hold their value. */
static int read_keys(int allowed, int *failed)
{
    kv_options o;
    kv_db *db;
    char k[32], v[160];
    int present = 0;
    *failed = 0;
    opts_init(&o);
    o.create_if_missing = 0;
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    for (int i = 0; i < NKEYS; i++) {
        void *got;
        size_t glen;
        key_of(i, k, sizeof k);
        val_of(i, v, sizeof v);
        int rc = kv_get(db, NULL, k, strlen(k), &got, &glen);
        if (rc == allowed) {
            (*failed)++;
            continue;
        }
        ck_assert_int_eq(rc, 0);
        ck_assert_uint_eq(glen, strlen(v));
        ck_assert_int_eq(memcmp(got, v, glen), 0);
        kv_free(got);
        present++;
    }
    ck_assert_int_eq(kv_close(db), 0);
    return present;
}

/* kv_get of key i (its name into k, 32 bytes): the result code; a value read is freed. */
static int get_rc(kv_db *db, int i, char *k)
{
    void *got;
    size_t glen;
    key_of(i, k, 32);
    int rc = kv_get(db, NULL, k, strlen(k), &got, &glen);
    if (rc == 0)
        kv_free(got);
    return rc;
}

/* Every key is either absent or holds exactly its value; returns how many are present. */
static int check_keys(void)
{
    int missing;
    return read_keys(KV_ENOTFOUND, &missing);
}

static char *path_of(const char *name)
{
    size_t n = strlen(tdir) + strlen(name) + 2;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/%s", tdir, name);
    return p;
}

/* Flips a bit of the byte at off (< 0: counted back from the end) of the store's file name. */
static void flip_byte(const char *name, long off)
{
    char *p = path_of(name);
    tu_ck_xor_byte(p, off, 0x10);
    free(p);
}

static long file_size(const char *name)
{
    struct stat st;
    char *p = path_of(name);
    int rc = stat(p, &st);
    free(p);
    return rc == 0 ? (long)st.st_size : -1;
}

static int open_rc(void)
{
    kv_options o;
    kv_db *db = NULL;
    opts_init(&o);
    o.create_if_missing = 0;
    int rc = kv_open(tdir, &o, &db);
    if (rc == 0)
        kv_close(db);
    return rc;
}

/* A salvage of the test store fixes nothing and changes no file. */
static void assert_salvage_changes_nothing(void)
{
    kv_options o;
    uint64_t fixed = 99;
    char *before = tu_dir_fingerprint(tdir);
    opts_init(&o);
    ck_assert_int_eq(kv_salvage(tdir, &o, &fixed), 0);
    ck_assert_uint_eq(fixed, 0);
    tu_ck_dir_unchanged(tdir, before);
}

START_TEST(test_salvage_leaves_a_sound_store_alone)
{
    make_store(1);
    assert_salvage_changes_nothing();
    ck_assert_int_eq(check_keys(), NKEYS);
}
END_TEST

START_TEST(test_salvage_repoints_a_damaged_current)
{
    kv_options o;
    uint64_t fixed = 0;
    make_store(1);
    flip_byte("CURRENT", 0); /* "MANIFEST-..." -> "]ANIFEST-..." */
    ck_assert_int_eq(open_rc(), KV_ECORRUPT);
    opts_init(&o);
    ck_assert_int_eq(kv_salvage(tdir, &o, &fixed), 0);
    ck_assert_uint_eq(fixed, 1);
    ck_assert_int_eq(check_keys(), NKEYS);
    ck_assert_int_eq(file_size("CURRENT.damaged"), file_size("CURRENT"));
}
END_TEST

START_TEST(test_salvage_recreates_a_missing_current)
{
    kv_options o;
    uint64_t fixed = 0;
    make_store(0);
    char *p = path_of("CURRENT");
    ck_assert_int_eq(unlink(p), 0);
    free(p);
    ck_assert_int_ne(open_rc(), 0);
    opts_init(&o);
    ck_assert_int_eq(kv_salvage(tdir, &o, &fixed), 0);
    ck_assert_uint_eq(fixed, 1);
    ck_assert_int_eq(check_keys(), NKEYS);
}
END_TEST

START_TEST(test_salvage_cuts_a_damaged_log_back_and_keeps_the_original)
{
    kv_options o;
    uint64_t fixed = 0;
    char log[256], damaged[300];
    make_store(0); /* everything is in the WAL */
    ck_assert(tu_dir_find_suffix(tdir, ".log", log, sizeof log));
    long size = file_size(log);
    ck_assert_int_gt(size, 1000);
    flip_byte(log, size / 2);
    ck_assert_int_eq(open_rc(), KV_ECORRUPT); /* a damaged record, not a torn tail */
    opts_init(&o);
    ck_assert_int_eq(kv_salvage(tdir, &o, &fixed), 0);
    ck_assert_uint_eq(fixed, 1);
    snprintf(damaged, sizeof damaged, "%s.damaged", log);
    ck_assert_int_eq(file_size(damaged), size);
    ck_assert_int_lt(file_size(log), size / 2 + 1);
    int present = check_keys(); /* never a wrong value: only the keys after the cut are gone */
    ck_assert_int_gt(present, NKEYS / 4);
    ck_assert_int_lt(present, NKEYS);
}
END_TEST

START_TEST(test_salvage_refuses_a_foreign_directory)
{
    kv_options o;
    char *p = path_of("hello.txt");
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a store\n", f);
    fclose(f);
    free(p);
    char *before = tu_dir_fingerprint(tdir);
    opts_init(&o);
    ck_assert_int_eq(kv_salvage(tdir, &o, NULL), KV_EINVAL);
    char *after = tu_dir_fingerprint(tdir);
    ck_assert_str_eq(before, after); /* not even a LOCK file */
    free(before);
    free(after);
}
END_TEST

START_TEST(test_salvage_refuses_an_open_store)
{
    kv_options o;
    kv_db *db;
    make_store(0);
    opts_init(&o);
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    ck_assert_int_eq(kv_salvage(tdir, &o, NULL), KV_EBUSY);
    ck_assert_int_eq(kv_close(db), 0);
}
END_TEST

/* ---- Table and manifest damage -------------------------------------------------------------- */

/* 1 if key k may have lost its newest entry. */
static int in_lost_range(const char *k)
{
    return kv_lost_may_contain(lostset, k, strlen(k));
}

/* Salvages (must succeed and leave a store kv_check finds sound); collects the lost ranges. */
static kv_salvage_stats salvage_ok(void)
{
    kv_options o;
    kv_salvage_stats st;
    uint64_t problems = 99;
    opts_init(&o);
    kv_lost_free(lostset);
    ck_assert_int_eq(kv_salvage_ex(tdir, &o, &lostset, &st), 0);
    nlost = (int)kv_lost_count(lostset);
    ck_assert_uint_eq(st.lost_ranges, (uint64_t)nlost);
    ck_assert_int_eq(kv_check(tdir, &o, NULL, NULL, &problems), 0);
    ck_assert_uint_eq(problems, 0);
    return st;
}

/* The newest value of key i in the stores below: 1 and *v set, or 0 if it is deleted. */
typedef int (*expect_fn)(int i, char *v, size_t n);

static int expect_plain(int i, char *v, size_t n)
{
    val_of(i, v, n);
    return 1;
}

/* make_versions: every key written ("old"), then half rewritten ("new") and a fifth deleted in
 * a newer table, then a third rewritten again ("wal") only in the log. */
static int expect_versions(int i, char *v, size_t n)
{
    if (i % 3 == 0)
        snprintf(v, n, "wal-%d", i);
    else if (i % 5 == 0)
        return 0;
    else if (i % 2 == 0)
        val_with("new", i, v, n);
    else
        val_with("old", i, v, n);
    return 1;
}

/* Every key outside the lost ranges holds its newest value; inside them it may be absent or
 * older, never anything else. Returns the keys that hold their newest value; *inside (may be
 * NULL) receives the keys inside a lost range. */
static int check_salvaged(expect_fn expect, int *inside)
{
    kv_options o;
    kv_db *db;
    char k[32], v[160];
    int good = 0, in = 0;
    opts_init(&o);
    o.create_if_missing = 0;
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    for (int i = 0; i < NKEYS; i++) {
        void *got = NULL;
        size_t glen = 0;
        key_of(i, k, sizeof k);
        int live = expect(i, v, sizeof v), lostk = in_lost_range(k);
        int rc = kv_get(db, NULL, k, strlen(k), &got, &glen);
        in += lostk;
        ck_assert(rc == 0 || rc == KV_ENOTFOUND);
        int right =
            live ? rc == 0 && glen == strlen(v) && memcmp(got, v, glen) == 0 : rc == KV_ENOTFOUND;
        if (!right)
            ck_assert_msg(lostk, "key %s is wrong outside every lost range", k);
        if (!right && rc == 0) {
            char old[160];
            val_with("old", i, old, sizeof old);
            ck_assert_msg(glen == strlen(old) && memcmp(got, old, glen) == 0,
                          "key %s holds bytes it never held", k);
        }
        good += right;
        kv_free(got);
    }
    ck_assert_int_eq(kv_close(db), 0);
    if (inside)
        *inside = in;
    return good;
}

static void make_versions(void)
{
    char k[32], v[160];
    kv_db *db = open_and_put_all("old");
    ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    for (int i = 0; i < NKEYS; i++) {
        key_of(i, k, sizeof k);
        val_with("new", i, v, sizeof v);
        if (i % 5 == 0)
            ck_assert_int_eq(kv_delete(db, k, strlen(k), 0), 0);
        else if (i % 2 == 0)
            ck_assert_int_eq(kv_put(db, k, strlen(k), v, strlen(v), 0), 0);
    }
    ck_assert_int_eq(kv_flush(db), 0);
    for (int i = 0; i < NKEYS; i += 3) {
        key_of(i, k, sizeof k);
        snprintf(v, sizeof v, "wal-%d", i);
        ck_assert_int_eq(kv_put(db, k, strlen(k), v, strlen(v), 0), 0);
    }
    ck_assert_int_eq(kv_close(db), 0);
}

struct layout {
    long size;
    uint64_t filter_off, filter_size, index_off, index_size, data_end;
};

static void table_layout(const char *name, struct layout *l)
{
    char footer[SST_FOOTER_SIZE], *p = path_of(name);
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, -SST_FOOTER_SIZE, SEEK_END), 0);
    ck_assert_uint_eq(fread(footer, 1, sizeof footer, f), sizeof footer);
    fclose(f);
    free(p);
    l->size = file_size(name);
    l->filter_off = coding_get_fixed64(footer + SST_FOOTER_FILTER_OFF);
    l->filter_size = coding_get_fixed64(footer + SST_FOOTER_FILTER_SIZE);
    l->index_off = coding_get_fixed64(footer + SST_FOOTER_INDEX_OFF);
    l->index_size = coding_get_fixed64(footer + SST_FOOTER_INDEX_SIZE);
    l->data_end = l->filter_size ? l->filter_off : l->index_off;
}

/* Makes the test store, flushed to one table: its name into sst (n bytes), its layout into
 * *l. */
static void make_table_store(char *sst, size_t n, struct layout *l)
{
    make_store(1);
    ck_assert(tu_dir_find_suffix(tdir, ".sst", sst, n));
    table_layout(sst, l);
}

/* Starts over in an empty directory with the test store flushed to one table (its name into
 * sst, n bytes; its layout into *l) and a bit flipped in the middle of its data blocks. */
static void fresh_store_with_a_damaged_block(char *sst, size_t n, struct layout *l)
{
    tu_rmtree(tdir);
    ck_assert_int_eq(mkdir(tdir, 0700), 0);
    make_table_store(sst, n, l);
    flip_byte(sst, (long)(l->data_end / 2));
}

/* The table with the highest number (the newest). */
static void newest_table(char *out, size_t n)
{
    ck_assert(tu_dir_find_suffix(tdir, ".sst", out, n));
    DIR *d = opendir(tdir);
    struct dirent *e;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".sst") == 0 && strcmp(e->d_name, out) > 0 &&
            strlen(e->d_name) >= strlen(out))
            snprintf(out, n, "%s", e->d_name);
    }
    closedir(d);
}

static void assert_store_is_damaged(void)
{
    kv_options o;
    uint64_t problems = 0;
    opts_init(&o);
    ck_assert_int_eq(kv_check(tdir, &o, NULL, NULL, &problems), KV_ECORRUPT);
    ck_assert_uint_gt(problems, 0);
}

static void assert_damaged_copy(const char *name, long size)
{
    char damaged[300];
    snprintf(damaged, sizeof damaged, "%s.damaged", name);
    ck_assert_int_eq(file_size(damaged), size);
}

START_TEST(test_salvage_drops_only_the_damaged_data_block)
{
    char sst[256];
    struct layout l;
    int inside = 0;
    make_table_store(sst, sizeof sst, &l);
    flip_byte(sst, (long)(l.data_end / 2));
    assert_store_is_damaged();
    kv_salvage_stats st = salvage_ok();
    ck_assert_int_eq(st.rebuilt, 1);
    ck_assert_uint_eq(st.tables_damaged, 1);
    ck_assert_uint_eq(st.blocks_lost, 1);
    ck_assert_int_eq(nlost, 1);
    int good = check_salvaged(expect_plain, &inside);
    ck_assert_int_lt(good, NKEYS);
    ck_assert_uint_eq(st.entries_lost, (uint64_t)(NKEYS - good));
    ck_assert_uint_eq(st.keys_written, (uint64_t)good);
    ck_assert_int_le(inside, 40); /* one 4 KiB block of ~130-byte entries, and its bounds */
    ck_assert_int_ge(inside, NKEYS - good);
    assert_damaged_copy(sst, l.size);
    /* A second run finds nothing to do. */
    uint64_t fixed = 99;
    kv_options o;
    opts_init(&o);
    ck_assert_int_eq(kv_salvage(tdir, &o, &fixed), 0);
    ck_assert_uint_eq(fixed, 0);
}
END_TEST

/* Where in a table to flip a byte: offset from its start (or, if negative, before its end). */
typedef long (*where_fn)(const struct layout *l);

static long in_the_index(const struct layout *l)
{
    return (long)(l->index_off + l->index_size / 2);
}

static long in_the_filter(const struct layout *l)
{
    ck_assert_uint_gt(l->filter_size, 8);
    return (long)(l->filter_off + 3);
}

static long in_the_footer_checksum(const struct layout *l)
{
    (void)l;
    return -(SST_FOOTER_SIZE - SST_FOOTER_CHECKSUM);
}

static long in_the_footer_index_handle(const struct layout *l)
{
    (void)l;
    return -(SST_FOOTER_SIZE - SST_FOOTER_INDEX_OFF);
}

/* Damage outside the data blocks: every key survives. */
static void salvage_loses_nothing(where_fn where)
{
    char sst[256];
    struct layout l;
    make_table_store(sst, sizeof sst, &l);
    long off = where(&l);
    flip_byte(sst, off);
    assert_store_is_damaged();
    kv_salvage_stats st = salvage_ok();
    ck_assert_int_eq(st.rebuilt, 1);
    ck_assert_uint_eq(st.blocks_lost, 0);
    ck_assert_uint_eq(st.bytes_lost, 0);
    ck_assert_int_eq(nlost, 0);
    ck_assert_int_eq(check_salvaged(expect_plain, NULL), NKEYS);
    assert_damaged_copy(sst, l.size);
}

START_TEST(test_salvage_loses_nothing_to_a_damaged_index)
{
    salvage_loses_nothing(in_the_index);
}
END_TEST

START_TEST(test_salvage_loses_nothing_to_a_damaged_filter)
{
    salvage_loses_nothing(in_the_filter);
}
END_TEST

START_TEST(test_salvage_loses_nothing_to_a_damaged_footer_checksum)
{
    salvage_loses_nothing(in_the_footer_checksum);
}
END_TEST

START_TEST(test_salvage_loses_nothing_to_a_damaged_footer_index_handle)
{
    /* The index handle is wrong: blocks are found by searching for their trailers. */
    salvage_loses_nothing(in_the_footer_index_handle);
}
END_TEST

START_TEST(test_salvage_finds_compressed_blocks_by_their_trailers)
{
    compress = 1;
    salvage_loses_nothing(in_the_footer_index_handle);
}
END_TEST

START_TEST(test_salvage_resyncs_after_a_damaged_block_when_the_index_is_damaged_too)
{
    char sst[256];
    struct layout l;
    make_table_store(sst, sizeof sst, &l);
    flip_byte(sst, (long)(l.data_end / 3));
    flip_byte(sst, (long)(l.index_off + l.index_size / 2));
    kv_salvage_stats st = salvage_ok();
    ck_assert_uint_eq(st.blocks_lost, 1);
    int inside = 0, good = check_salvaged(expect_plain, &inside);
    ck_assert_int_lt(good, NKEYS);
    ck_assert_int_ge(good, NKEYS - 40);
    ck_assert_int_le(inside, 80);
}
END_TEST

START_TEST(test_salvage_keeps_the_blocks_of_a_truncated_table)
{
    char sst[256], *p;
    struct layout l;
    make_table_store(sst, sizeof sst, &l);
    p = path_of(sst);
    ck_assert_int_eq(truncate(p, l.size * 6 / 10), 0);
    free(p);
    kv_salvage_stats st = salvage_ok();
    ck_assert_int_eq(nlost, 1);
    int inside = 0, good = check_salvaged(expect_plain, &inside);
    ck_assert_int_gt(good, NKEYS / 2);
    ck_assert_int_lt(good, NKEYS * 6 / 10);
    ck_assert_int_eq(inside, NKEYS - good);
    ck_assert_uint_eq(st.keys_written, (uint64_t)good);
}
END_TEST

START_TEST(test_salvage_reports_a_missing_table_as_lost)
{
    char sst[256], *p;
    make_store(1);
    ck_assert(tu_dir_find_suffix(tdir, ".sst", sst, sizeof sst));
    p = path_of(sst);
    ck_assert_int_eq(unlink(p), 0);
    free(p);
    ck_assert_int_eq(open_rc(), KV_ECORRUPT);
    salvage_ok();
    int inside = 0;
    ck_assert_int_eq(check_salvaged(expect_plain, &inside), 0);
    ck_assert_int_eq(inside, NKEYS);
}
END_TEST

/* The name of the manifest CURRENT names, into man (n bytes). */
static void current_manifest(char *man, size_t n)
{
    char *cur = path_of("CURRENT");
    FILE *f = fopen(cur, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(man, (int)n, f));
    fclose(f);
    free(cur);
    man[strcspn(man, "\n")] = 0;
}

START_TEST(test_salvage_rebuilds_a_damaged_manifest_keeping_the_newest_versions)
{
    char man[256];
    make_versions();
    current_manifest(man, sizeof man);
    long size = file_size(man);
    flip_byte(man, 20); /* the version snapshot */
    ck_assert_int_eq(open_rc(), KV_ECORRUPT);
    kv_salvage_stats st = salvage_ok();
    ck_assert_int_eq(st.rebuilt, 1);
    ck_assert_int_eq(nlost, 0);
    /* Tables from two levels and the log, put together by sequence number alone. */
    ck_assert_int_eq(check_salvaged(expect_versions, NULL), NKEYS);
    assert_damaged_copy(man, size);
}
END_TEST

START_TEST(test_salvage_rebuilds_a_store_whose_manifest_is_gone)
{
    make_versions();
    DIR *d = opendir(tdir);
    struct dirent *e;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "MANIFEST-", 9) == 0) {
            char *p = path_of(e->d_name);
            ck_assert_int_eq(unlink(p), 0);
            free(p);
        }
    }
    closedir(d);
    ck_assert_int_ne(open_rc(), 0);
    kv_salvage_stats st = salvage_ok();
    ck_assert_int_eq(st.rebuilt, 1);
    ck_assert_int_eq(nlost, 0);
    ck_assert_int_eq(check_salvaged(expect_versions, NULL), NKEYS);
}
END_TEST

START_TEST(test_salvage_keeps_a_tiered_store_tiered)
{
    char man[256];
    tiered = 1;
    make_versions();
    current_manifest(man, sizeof man);
    flip_byte(man, 20);
    salvage_ok();
    ck_assert_int_eq(check_salvaged(expect_versions, NULL), NKEYS);
    kv_options o;
    kv_db *db;
    kv_stats st;
    opts_init(&o);
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_eq(st.level_files[0], 1); /* one run, where size-tiered keeps runs */
    for (int i = 1; i < KV_MAX_LEVELS; i++)
        ck_assert_uint_eq(st.level_files[i], 0);
    ck_assert_int_eq(kv_close(db), 0);
}
END_TEST

START_TEST(test_salvage_never_shows_an_older_version_outside_the_lost_ranges)
{
    char sst[256];
    struct layout l;
    int inside = 0;
    make_versions();
    newest_table(sst, sizeof sst); /* the table of "new" values and deletions, over "old" */
    table_layout(sst, &l);
    flip_byte(sst, (long)(l.data_end / 2));
    salvage_ok();
    ck_assert_int_eq(nlost, 1);
    int good = check_salvaged(expect_versions, &inside);
    ck_assert_int_lt(good, NKEYS); /* the lost block's keys show "old" values or nothing */
    ck_assert_int_gt(good, NKEYS - 80);
    ck_assert_int_ge(inside, NKEYS - good);
}
END_TEST

/* A salvage cut short at any mutating I/O (the process dies, unsynced bytes are lost) leaves
 * a store that a second salvage repairs: nothing CURRENT names changes until the switch. */
START_TEST(test_salvage_interrupted_anywhere_leaves_a_store_a_second_salvage_repairs)
{
    char sst[256];
    struct layout l;
    for (uint64_t n = 1;; n++) {
        ck_assert_uint_lt(n, 400);
        fresh_store_with_a_damaged_block(sst, sizeof sst, &l);

        fault_env *fe = fault_env_new(n);
        ck_assert_ptr_nonnull(fe);
        fault_env_halt_after(fe, n);
        kv_options o;
        opts_init(&o);
        o.env = fault_env_env(fe);
        int rc = kv_salvage_ex(tdir, &o, NULL, NULL);
        int halted = fault_env_halted(fe);
        ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
        fault_env_free(fe);
        if (!halted) {
            ck_assert_int_eq(rc, 0); /* the salvage finished within n mutations */
            ck_assert_uint_gt(n, 5);
            break;
        }
        salvage_ok();
        /* Keys of the lost block are gone (reported or not, depending on which salvage
         * rebuilt); every other key holds its value. */
        ck_assert_int_ge(check_keys(), NKEYS - 40);
    }
}
END_TEST

/* A salvage whose I/O fails (any append, sync, rename, directory sync or create, in turn)
 * reports the error and leaves a store that a second salvage repairs. */
START_TEST(test_salvage_that_fails_on_any_io_leaves_a_store_a_second_salvage_repairs)
{
    static const enum fault_op ops[] = {FAULT_OP_OPEN_WRITABLE, FAULT_OP_APPEND, FAULT_OP_SYNC,
                                        FAULT_OP_RENAME, FAULT_OP_SYNC_DIR};
    char sst[256];
    struct layout l;
    int failures = 0;
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        for (uint64_t nth = 1;; nth++) {
            ck_assert_uint_lt(nth, 200);
            fresh_store_with_a_damaged_block(sst, sizeof sst, &l);

            fault_env *fe = fault_env_new(nth);
            fault_env_counters c;
            ck_assert_ptr_nonnull(fe);
            fault_env_fail_op(fe, ops[k], nth, 1, KV_EIO);
            kv_options o;
            opts_init(&o);
            o.env = fault_env_env(fe);
            int rc = kv_salvage_ex(tdir, &o, NULL, NULL);
            fault_env_get_counters(fe, &c);
            fault_env_free(fe);
            if (c.faults_injected == 0) {
                ck_assert_int_eq(rc, 0);
                break;
            }
            ck_assert_int_ne(rc, 0);
            failures++;
            salvage_ok();
            ck_assert_int_ge(check_keys(), NKEYS - 40);
        }
    }
    ck_assert_int_gt(failures, 10);
}
END_TEST

/* ---- kvfs fsck after a salvage ----------------------------------------------------------- */

#define NFILES 24
#define FILE_BYTES 70000 /* two chunks of the default 64 KiB */

/* Byte i of file f: a pattern no other file or offset repeats. */
static uint8_t file_byte(int f, size_t i)
{
    uint64_t x = ((uint64_t)f << 32 | i) * 0x9e3779b97f4a7c15ull;
    return (uint8_t)(x >> 56);
}

static kv_lost *fs_lost;

static void fs_teardown(void)
{
    kv_lost_free(fs_lost);
    fs_lost = NULL;
    tfs_teardown();
}

START_TEST(test_fsck_marks_what_a_salvage_lost_as_eio_and_keeps_the_rest)
{
    uint64_t ino[NFILES];
    uint8_t *want = malloc(FILE_BYTES), *got = malloc(FILE_BYTES);
    char name[16], sst[256];
    ck_assert_ptr_nonnull(want);
    ck_assert_ptr_nonnull(got);
    for (int f = 0; f < NFILES; f++) {
        snprintf(name, sizeof name, "f%d", f);
        ino[f] = tfs_mkfile(1, name);
        for (size_t i = 0; i < FILE_BYTES; i++)
            want[i] = file_byte(f, i);
        ck_assert_int_eq(fs_write(tfs_fs, ino[f], 0, want, FILE_BYTES), FILE_BYTES);
    }
    tfs_reopen(); /* the WAL becomes a table */
    tfs_close();

    /* Damage one data block of the table. */
    char *saved = tdir;
    tdir = tfs_dir;
    ck_assert(tu_dir_find_suffix(tdir, ".sst", sst, sizeof sst));
    struct layout l;
    table_layout(sst, &l);
    flip_byte(sst, (long)(l.data_end / 2));
    kv_options o;
    kv_salvage_stats st;
    opts_init(&o);
    ck_assert_int_eq(kv_salvage_ex(tdir, &o, &fs_lost, &st), 0);
    ck_assert_int_eq(st.rebuilt, 1);
    size_t nranges = kv_lost_count(fs_lost);
    ck_assert_uint_ge(nranges, 1);
    /* The caller is killed before it marks anything: what was lost is on disk (LOST), and a
     * second salvage (which has nothing left to rebuild) and kv_lost_pending report it. */
    kv_lost_free(fs_lost);
    fs_lost = NULL;
    ck_assert_int_gt(file_size("LOST"), 0);
    ck_assert_int_eq(kv_salvage_ex(tdir, &o, &fs_lost, &st), 0);
    ck_assert_int_eq(st.rebuilt, 0);
    ck_assert_uint_eq(kv_lost_count(fs_lost), nranges);
    kv_lost_free(fs_lost);
    fs_lost = NULL;
    ck_assert_int_eq(kv_lost_pending(tdir, &o, &fs_lost), 0);
    ck_assert_uint_eq(kv_lost_count(fs_lost), nranges);
    tdir = saved;

    /* The filesystem-level repair marks what may be lost; then fsck is clean. */
    kv_db *db;
    struct fsck_result res;
    opts_init(&o);
    o.create_if_missing = 0;
    ck_assert_int_eq(kv_open(tfs_dir, &o, &db), 0);
    ck_assert_int_eq(fs_fsck_ex(db, 1, fs_lost, NULL, NULL, &res), 0);
    ck_assert_int_eq(kv_close(db), 0);
    ck_assert_uint_gt(res.lost_chunks, 0);
    ck_assert_uint_gt(res.damaged_files, 0);
    /* Marked: the record goes, and nothing is pending any more. */
    kv_lost *none = NULL;
    ck_assert_int_eq(kv_lost_clear(tfs_dir, &o), 0);
    ck_assert_int_eq(kv_lost_pending(tfs_dir, &o, &none), 0);
    ck_assert_ptr_null(none);
    struct fsck_result again = tfs_fsck_closed(0);
    ck_assert_uint_eq(again.problems, 0);
    ck_assert_uint_eq(again.lost_chunks, res.lost_chunks);

    /* Every file reads its own bytes, or fails with EIO where a chunk was lost: never zeros,
     * never another file's bytes. */
    tfs_open();
    int eio = 0, whole = 0;
    for (int f = 0; f < NFILES; f++) {
        snprintf(name, sizeof name, "f%d", f);
        uint64_t i = tfs_lookup(1, name);
        if (i == 0)
            continue; /* its name was lost: fsck linked it into /lost+found */
        ck_assert_uint_eq(i, ino[f]);
        for (size_t c = 0; c < FILE_BYTES; c += 65536) {
            size_t n = FILE_BYTES - c < 65536 ? FILE_BYTES - c : 65536;
            ssize_t r = fs_read(tfs_fs, i, c, n, got);
            if (r == -EIO) {
                eio++;
                continue;
            }
            ck_assert_int_eq(r, (ssize_t)n);
            for (size_t b = 0; b < n; b++)
                ck_assert_msg(got[b] == file_byte(f, c + b), "f%d byte %zu is wrong", f, c + b);
            whole++;
        }
    }
    ck_assert_int_gt(eio, 0);
    ck_assert_int_gt(whole, eio); /* one block lost: most chunks survive */
    free(want);
    free(got);
}
END_TEST

/* The value-log segments of the test store, in number order; returns how many (<= max). */
static int segments(char names[][32], int max)
{
    DIR *d = opendir(tdir);
    struct dirent *e;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 6 || l >= 32 || strcmp(e->d_name + l - 5, ".vlog") != 0)
            continue;
        ck_assert_int_lt(n, max);
        int at = n++;
        while (at > 0 && strcmp(names[at - 1], e->d_name) > 0) {
            strcpy(names[at], names[at - 1]);
            at--;
        }
        strcpy(names[at], e->d_name);
    }
    closedir(d);
    return n;
}

/* Reads every key: each returns its exact value or KV_ECORRUPT; returns how many failed. */
static int count_corrupt_reads(void)
{
    int bad;
    read_keys(KV_ECORRUPT, &bad);
    return bad;
}

/* A bit flip in the middle of an older segment, whose values the flushed tables (flush) or
 * the WAL (!flush) point at: kv_check reports it, a read of that one value is KV_ECORRUPT,
 * and a salvage keeps every other value, reports exactly the key it lost and sets the segment
 * aside, after which the store checks clean and takes new writes. */
static void salvage_damaged_segment(int flush)
{
    char segs[64][32], damaged[40];
    kv_options o;
    uint64_t problems = 0;
    vlogged = 1;
    make_store(flush);
    int nseg = segments(segs, 64);
    ck_assert_int_ge(nseg, 3);
    flip_byte(segs[1], file_size(segs[1]) / 2);
    opts_init(&o);
    ck_assert_int_eq(kv_check(tdir, &o, NULL, NULL, &problems), KV_ECORRUPT);
    ck_assert_uint_eq(problems, 1);
    ck_assert_int_eq(count_corrupt_reads(), 1);

    kv_salvage_stats st = salvage_ok();
    ck_assert_int_eq(st.rebuilt, 1);
    ck_assert_int_eq(nlost, 1);
    ck_assert_uint_eq(st.keys_written, NKEYS - 1);
    ck_assert_int_eq(check_keys(), NKEYS - 1);
    int outside_missing = 0, inside = 0;
    kv_db *db;
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    for (int i = 0; i < NKEYS; i++) {
        char k[32];
        int rc = get_rc(db, i, k);
        inside += in_lost_range(k);
        outside_missing += rc == KV_ENOTFOUND && !in_lost_range(k);
    }
    ck_assert_int_eq(inside, 1);
    ck_assert_int_eq(outside_missing, 0);
    ck_assert_int_eq(kv_put(db, "after", 5, "x", 1, 1), 0);
    ck_assert_int_eq(kv_close(db), 0);
    snprintf(damaged, sizeof damaged, "%s.damaged", segs[1]);
    ck_assert_int_gt(file_size(damaged), 0);
    ck_assert_int_eq(file_size(segs[1]), -1);
    ck_assert_int_eq(kv_check(tdir, &o, NULL, NULL, &problems), 0);

    /* The LOST record is checked: damaged, it is reported, never taken for "nothing lost". */
    kv_lost *pending = NULL;
    ck_assert_int_eq(kv_lost_pending(tdir, &o, &pending), 0);
    ck_assert_uint_eq(kv_lost_count(pending), 1);
    kv_lost_free(pending);
    pending = NULL;
    flip_byte("LOST", 20);
    ck_assert_int_eq(kv_lost_pending(tdir, &o, &pending), KV_ECORRUPT);
    ck_assert_ptr_null(pending);
    kv_lost *again = NULL;
    ck_assert_int_eq(kv_salvage_ex(tdir, &o, &again, NULL), KV_ECORRUPT);
    ck_assert_int_eq(kv_lost_clear(tdir, &o), 0);
    ck_assert_int_eq(kv_lost_pending(tdir, &o, &pending), 0);
    ck_assert_ptr_null(pending);
}

START_TEST(test_salvage_keeps_every_intact_value_of_a_damaged_segment_tables)
{
    salvage_damaged_segment(1);
}
END_TEST

START_TEST(test_salvage_keeps_every_intact_value_of_a_damaged_segment_wal)
{
    salvage_damaged_segment(0);
}
END_TEST

/* An older segment lost its end (kv_check takes that for a torn tail): a salvage rebuilds,
 * drops exactly the keys whose values lay past the cut (reported lost) and keeps the rest. */
START_TEST(test_salvage_drops_keys_whose_values_lie_past_a_truncated_segment)
{
    char segs[64][32];
    vlogged = 1;
    make_store(1);
    int nseg = segments(segs, 64);
    ck_assert_int_ge(nseg, 3);
    long size = file_size(segs[1]);
    char *p = path_of(segs[1]);
    ck_assert_int_eq(truncate(p, size - 1000), 0);
    free(p);
    int unreadable = count_corrupt_reads();
    ck_assert_int_ge(unreadable, 1);
    ck_assert_int_le(unreadable, 1000 / 100 + 1); /* records are > 100 bytes */

    kv_salvage_stats st = salvage_ok();
    ck_assert_int_eq(st.rebuilt, 1);
    ck_assert_int_eq(nlost, unreadable);
    ck_assert_int_eq(check_keys(), NKEYS - unreadable);
}
END_TEST

/* An older segment is gone, or cut back to its header: nothing looks damaged to kv_check, yet
 * the store points into it. A salvage finds that, drops and reports exactly those keys. */
static void salvage_lost_segment(int remove_it)
{
    char segs[64][32];
    vlogged = 1;
    make_store(1);
    ck_assert_int_ge(segments(segs, 64), 3);
    char *p = path_of(segs[1]);
    ck_assert_int_eq(remove_it ? unlink(p) : truncate(p, 16), 0);
    free(p);
    int unreadable = count_corrupt_reads();
    ck_assert_int_ge(unreadable, 16384 / 200);

    kv_salvage_stats st = salvage_ok();
    ck_assert_int_eq(st.rebuilt, 1);
    ck_assert_int_eq(nlost, unreadable);
    ck_assert_int_eq(check_keys(), NKEYS - unreadable);
}

START_TEST(test_salvage_drops_the_keys_of_a_missing_segment)
{
    salvage_lost_segment(1);
}
END_TEST

START_TEST(test_salvage_drops_the_keys_of_a_segment_cut_to_its_header)
{
    salvage_lost_segment(0);
}
END_TEST

/* Only the WAL points into the newest segment. Damage there (a whole record that fails its
 * checksum) drops that WAL record and the rest of the log, as recovery would, and reports
 * every dropped key as lost. So does a cut here: the store was closed cleanly, so the WAL's
 * sync markers prove the records synced (a crash's unsynced tail would be dropped silently,
 * as recovery drops it). Either way every key before it keeps its value. */
static void salvage_newest_segment(int cut)
{
    char segs[64][32];
    vlogged = 1;
    make_store(0);
    int nseg = segments(segs, 64);
    ck_assert_int_ge(nseg, 3);
    const char *newest = segs[nseg - 1];
    long size = file_size(newest);
    if (cut) {
        char *p = path_of(newest);
        ck_assert_int_eq(truncate(p, size / 2), 0);
        free(p);
    } else {
        flip_byte(newest, size / 2);
    }
    kv_salvage_stats st = salvage_ok();
    ck_assert_int_eq(st.rebuilt, 1);
    int present = check_keys(), first_missing = -1;
    ck_assert_int_gt(present, NKEYS / 2);
    ck_assert_int_lt(present, NKEYS);
    kv_options o;
    kv_db *db;
    opts_init(&o);
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    for (int i = 0; i < NKEYS; i++) {
        char k[32];
        int rc = get_rc(db, i, k);
        if (rc == 0) {
            ck_assert_int_eq(first_missing, -1); /* a prefix of the writes survives */
            ck_assert(!in_lost_range(k));
        } else {
            ck_assert_int_eq(rc, KV_ENOTFOUND);
            if (first_missing < 0)
                first_missing = i;
            /* The store was closed cleanly, so the WAL's sync markers prove every record
             * synced: a cut segment lost synced values, which is damage, reported. */
            ck_assert(in_lost_range(k));
        }
    }
    ck_assert_int_eq(kv_close(db), 0);
    ck_assert_int_eq(nlost, NKEYS - present);
}

START_TEST(test_salvage_reports_wal_records_whose_value_is_damaged_as_lost)
{
    salvage_newest_segment(0);
}
END_TEST

START_TEST(test_salvage_reports_wal_records_past_a_cut_segment_as_lost_when_synced)
{
    salvage_newest_segment(1);
}
END_TEST

START_TEST(test_salvage_leaves_a_sound_value_log_store_alone)
{
    vlogged = 1;
    make_store(1);
    assert_salvage_changes_nothing();
    ck_assert_int_eq(count_corrupt_reads(), 0);
}
END_TEST

static Suite *salvage_suite(void)
{
    Suite *s = suite_create("salvage");
    TCase *tc = tcase_create("salvage");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_salvage_leaves_a_sound_store_alone);
    tcase_add_test(tc, test_salvage_repoints_a_damaged_current);
    tcase_add_test(tc, test_salvage_recreates_a_missing_current);
    tcase_add_test(tc, test_salvage_cuts_a_damaged_log_back_and_keeps_the_original);
    tcase_add_test(tc, test_salvage_refuses_a_foreign_directory);
    tcase_add_test(tc, test_salvage_refuses_an_open_store);
    tcase_add_test(tc, test_salvage_drops_only_the_damaged_data_block);
    tcase_add_test(tc, test_salvage_loses_nothing_to_a_damaged_index);
    tcase_add_test(tc, test_salvage_loses_nothing_to_a_damaged_filter);
    tcase_add_test(tc, test_salvage_loses_nothing_to_a_damaged_footer_checksum);
    tcase_add_test(tc, test_salvage_loses_nothing_to_a_damaged_footer_index_handle);
    tcase_add_test(tc, test_salvage_finds_compressed_blocks_by_their_trailers);
    tcase_add_test(tc, test_salvage_resyncs_after_a_damaged_block_when_the_index_is_damaged_too);
    tcase_add_test(tc, test_salvage_keeps_the_blocks_of_a_truncated_table);
    tcase_add_test(tc, test_salvage_reports_a_missing_table_as_lost);
    tcase_add_test(tc, test_salvage_rebuilds_a_damaged_manifest_keeping_the_newest_versions);
    tcase_add_test(tc, test_salvage_rebuilds_a_store_whose_manifest_is_gone);
    tcase_add_test(tc, test_salvage_interrupted_anywhere_leaves_a_store_a_second_salvage_repairs);
    tcase_add_test(tc, test_salvage_that_fails_on_any_io_leaves_a_store_a_second_salvage_repairs);
    tcase_add_test(tc, test_salvage_keeps_a_tiered_store_tiered);
    tcase_add_test(tc, test_salvage_never_shows_an_older_version_outside_the_lost_ranges);
    tcase_add_test(tc, test_salvage_keeps_every_intact_value_of_a_damaged_segment_tables);
    tcase_add_test(tc, test_salvage_keeps_every_intact_value_of_a_damaged_segment_wal);
    tcase_add_test(tc, test_salvage_drops_keys_whose_values_lie_past_a_truncated_segment);
    tcase_add_test(tc, test_salvage_leaves_a_sound_value_log_store_alone);
    tcase_add_test(tc, test_salvage_reports_wal_records_whose_value_is_damaged_as_lost);
    tcase_add_test(tc, test_salvage_reports_wal_records_past_a_cut_segment_as_lost_when_synced);
    tcase_add_test(tc, test_salvage_drops_the_keys_of_a_missing_segment);
    tcase_add_test(tc, test_salvage_drops_the_keys_of_a_segment_cut_to_its_header);
    suite_add_tcase(s, tc);
    TCase *fs = tcase_create("fsck");
    tcase_add_checked_fixture(fs, tfs_setup, fs_teardown);
    tcase_set_timeout(fs, 60);
    tcase_add_test(fs, test_fsck_marks_what_a_salvage_lost_as_eio_and_keeps_the_rest);
    suite_add_tcase(s, fs);
    return s;
}

int main(void)
{
    return tu_run_suite(salvage_suite());
}
