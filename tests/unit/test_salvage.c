/* test_salvage.c - kv_salvage repairs a damaged CURRENT and cuts damaged logs back (keeping the
 * originals as *.damaged), leaves sound stores and foreign directories untouched, refuses an
 * open store, leaves table damage to kv_check, and reports a manifest it cannot repair. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvcore/kv.h"
#include "testutil.h"

#define NKEYS 200

static char *tdir;

static void setup(void)
{
    tdir = tu_tempdir("salvage");
    ck_assert_ptr_nonnull(tdir);
}

static void teardown(void)
{
    tu_rmtree(tdir);
    free(tdir);
}

static void quiet(void *ctx, int level, const char *msg)
{
    (void)ctx;
    (void)level;
    (void)msg;
}

static void opts_init(kv_options *o)
{
    kv_options_init(o);
    o->log_fn = quiet;
}

static void key_of(int i, char *k, size_t n)
{
    snprintf(k, n, "key%05d", i);
}

static void val_of(int i, char *v, size_t n)
{
    snprintf(v, n, "value-%d-%0*d", i, 100, i);
}

/* A store holding NKEYS keys, one WAL record each; flush: also write them to a table. */
static void make_store(int flush)
{
    kv_options o;
    kv_db *db;
    char k[32], v[160];
    opts_init(&o);
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    for (int i = 0; i < NKEYS; i++) {
        key_of(i, k, sizeof k);
        val_of(i, v, sizeof v);
        ck_assert_int_eq(kv_put(db, k, strlen(k), v, strlen(v), 0), 0);
    }
    if (flush)
        ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(kv_close(db), 0);
}

/* Every key is either absent or holds exactly its value; returns how many are present. */
static int check_keys(void)
{
    kv_options o;
    kv_db *db;
    char k[32], v[160];
    int present = 0;
    opts_init(&o);
    o.create_if_missing = 0;
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    for (int i = 0; i < NKEYS; i++) {
        void *got;
        size_t glen;
        key_of(i, k, sizeof k);
        val_of(i, v, sizeof v);
        int rc = kv_get(db, NULL, k, strlen(k), &got, &glen);
        if (rc == KV_ENOTFOUND)
            continue;
        ck_assert_int_eq(rc, 0);
        ck_assert_uint_eq(glen, strlen(v));
        ck_assert_int_eq(memcmp(got, v, glen), 0);
        kv_free(got);
        present++;
    }
    ck_assert_int_eq(kv_close(db), 0);
    return present;
}

static char *path_of(const char *name)
{
    size_t n = strlen(tdir) + strlen(name) + 2;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/%s", tdir, name);
    return p;
}

static void flip_byte(const char *name, long off_from_start, long off_from_end)
{
    char *p = path_of(name);
    FILE *f = fopen(p, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(
        fseek(f, off_from_end ? -off_from_end : off_from_start, off_from_end ? SEEK_END : SEEK_SET),
        0);
    long at = ftell(f);
    int c = fgetc(f);
    ck_assert_int_ne(c, EOF);
    ck_assert_int_eq(fseek(f, at, SEEK_SET), 0);
    ck_assert_int_ne(fputc(c ^ 0x10, f), EOF);
    ck_assert_int_eq(fclose(f), 0);
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

START_TEST(test_salvage_leaves_a_sound_store_alone)
{
    kv_options o;
    uint64_t fixed = 99;
    make_store(1);
    char *before = tu_dir_fingerprint(tdir);
    ck_assert_ptr_nonnull(before);
    opts_init(&o);
    ck_assert_int_eq(kv_salvage(tdir, &o, &fixed), 0);
    ck_assert_uint_eq(fixed, 0);
    char *after = tu_dir_fingerprint(tdir);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    ck_assert_int_eq(check_keys(), NKEYS);
}
END_TEST

START_TEST(test_salvage_repoints_a_damaged_current)
{
    kv_options o;
    uint64_t fixed = 0;
    make_store(1);
    flip_byte("CURRENT", 0, 0); /* "MANIFEST-..." -> "]ANIFEST-..." */
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
    flip_byte(log, size / 2, 0);
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

START_TEST(test_salvage_changes_nothing_for_table_damage_and_kv_check_still_reports_it)
{
    kv_options o;
    uint64_t fixed = 99, problems = 0;
    char sst[256];
    make_store(1);
    ck_assert(tu_dir_find_suffix(tdir, ".sst", sst, sizeof sst));
    flip_byte(sst, 0, 20); /* inside the footer */
    char *before = tu_dir_fingerprint(tdir);
    opts_init(&o);
    ck_assert_int_eq(kv_salvage(tdir, &o, &fixed), 0); /* opens: tables are read lazily */
    ck_assert_uint_eq(fixed, 0);
    char *after = tu_dir_fingerprint(tdir);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    ck_assert_int_eq(kv_check(tdir, &o, NULL, NULL, &problems), KV_ECORRUPT);
    ck_assert_uint_gt(problems, 0);
}
END_TEST

START_TEST(test_salvage_reports_a_manifest_it_cannot_repair)
{
    kv_options o;
    uint64_t fixed = 99;
    char man[256];
    make_store(1);
    /* the manifest's first record (the version snapshot) */
    char *cur = path_of("CURRENT");
    FILE *f = fopen(cur, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(man, sizeof man, f));
    fclose(f);
    free(cur);
    man[strcspn(man, "\n")] = 0;
    flip_byte(man, 20, 0);
    opts_init(&o);
    ck_assert_int_eq(kv_salvage(tdir, &o, &fixed), KV_ECORRUPT);
    ck_assert_uint_eq(fixed, 0);
}
END_TEST

static Suite *salvage_suite(void)
{
    Suite *s = suite_create("salvage");
    TCase *tc = tcase_create("salvage");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_salvage_leaves_a_sound_store_alone);
    tcase_add_test(tc, test_salvage_repoints_a_damaged_current);
    tcase_add_test(tc, test_salvage_recreates_a_missing_current);
    tcase_add_test(tc, test_salvage_cuts_a_damaged_log_back_and_keeps_the_original);
    tcase_add_test(tc, test_salvage_refuses_a_foreign_directory);
    tcase_add_test(tc, test_salvage_refuses_an_open_store);
    tcase_add_test(tc, test_salvage_changes_nothing_for_table_damage_and_kv_check_still_reports_it);
    tcase_add_test(tc, test_salvage_reports_a_manifest_it_cannot_repair);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(salvage_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
