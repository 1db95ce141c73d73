/* test_read_view.c - the shared read view of kv_get and kv_iter_new (db_view in db_impl.h):
 * reads see every write acknowledged before them, and an idle view pins nothing obsolete. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvcore/kv.h"
#include "testutil.h"

static kv_db *open_small(const char *dir, size_t memtable_bytes)
{
    kv_options o;
    kv_options_init(&o);
    o.create_if_missing = 1;
    o.memtable_bytes = memtable_bytes;
    o.compression = 0;
    kv_db *db = NULL;
    ck_assert_int_eq(kv_open(dir, &o, &db), 0);
    return db;
}

static void put_num(kv_db *db, int key, int val)
{
    char k[32], v[64];
    int kl = snprintf(k, sizeof(k), "key%08d", key);
    int vl = snprintf(v, sizeof(v), "value-%d-%0*d", val, 40, val);
    ck_assert_int_eq(kv_put(db, k, (size_t)kl, v, (size_t)vl, 0), 0);
}

/* Returns the number in key's value ("value-N-..."), or -1 if the key is absent. */
static int get_num(kv_db *db, int key)
{
    char k[32];
    int kl = snprintf(k, sizeof(k), "key%08d", key);
    void *v;
    size_t vl;
    int rc = kv_get(db, NULL, k, (size_t)kl, &v, &vl);
    if (rc == KV_ENOTFOUND)
        return -1;
    ck_assert_int_eq(rc, 0);
    int n = -2;
    ck_assert_int_eq(sscanf(v, "value-%d-", &n), 1);
    kv_free(v);
    return n;
}

static void close_and_remove(kv_db *db, char *dir)
{
    ck_assert_int_eq(kv_close(db), 0);
    tu_rmtree(dir);
    free(dir);
}

/* Puts keys [0, n) with values key + delta. */
static void put_range(kv_db *db, int n, int delta)
{
    for (int i = 0; i < n; i++)
        put_num(db, i, i + delta);
}

static int live_tables(kv_db *db)
{
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    int n = 0;
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        n += (int)st.level_files[l];
    return n;
}

/* A view is replaced when the memtable it pins is switched: a get right after a put that
 * filled the memtable must read the new one. */
START_TEST(test_read_view_get_sees_each_put_across_memtable_switches)
{
    char *dir = tu_tempdir("readview");
    kv_db *db = open_small(dir, 16 << 10);
    for (int i = 0; i < 6000; i++) {
        put_num(db, i % 1500, i);
        ck_assert_int_eq(get_num(db, i % 1500), i);
        if (i >= 1)
            ck_assert_int_eq(get_num(db, (i - 1) % 1500), i - 1);
    }
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_gt(st.flushes, 5); /* the memtable really was switched, many times */
    close_and_remove(db, dir);
}
END_TEST

/* The view a get left behind pins the version of its time; once flushes and a compaction have
 * made that version's tables obsolete, they must still be deleted although no read follows. */
START_TEST(test_read_view_idle_view_does_not_keep_obsolete_tables)
{
    char *dir = tu_tempdir("readview");
    kv_db *db = open_small(dir, 64 << 10);
    put_range(db, 2000, 0);
    ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(get_num(db, 7), 7); /* the view now pins this version */
    put_range(db, 2000, 1);
    ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    /* Deletion follows the compaction on the background thread: allow it a moment. */
    int files = -1, live = -1;
    for (int tries = 0; tries < 200; tries++) {
        files = tu_dir_count_suffix(dir, ".sst");
        live = live_tables(db);
        if (files == live)
            break;
        usleep(10000);
    }
    ck_assert_int_eq(files, live);
    ck_assert_int_eq(get_num(db, 7), 8);
    close_and_remove(db, dir);
}
END_TEST

/* An iterator keeps reading its view while flushes and a compaction replace every table, and
 * reads started after the writes see them. */
START_TEST(test_read_view_iterator_outlives_flush_and_compaction)
{
    char *dir = tu_tempdir("readview");
    kv_db *db = open_small(dir, 64 << 10);
    put_range(db, 3000, 0);
    kv_iter *it = kv_iter_new(db, NULL);
    ck_assert_ptr_nonnull(it);
    for (int i = 0; i < 3000; i += 2) {
        char k[32];
        int kl = snprintf(k, sizeof(k), "key%08d", i);
        ck_assert_int_eq(kv_delete(db, k, (size_t)kl, 0), 0);
        put_num(db, i + 1, -(i + 1));
    }
    ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(kv_compact_range(db, NULL, 0, NULL, 0), 0);
    kv_iter *it2 = kv_iter_new(db, NULL);
    ck_assert_ptr_nonnull(it2);

    int n = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), n++) {
        size_t kl, vl;
        const char *k = kv_iter_key(it, &kl);
        const char *v = kv_iter_value(it, &vl);
        char want[32];
        snprintf(want, sizeof(want), "key%08d", n);
        ck_assert_uint_eq(kl, strlen(want));
        ck_assert(memcmp(k, want, kl) == 0);
        int got = -1;
        ck_assert_int_eq(sscanf(v, "value-%d-", &got), 1);
        ck_assert_int_eq(got, n);
    }
    ck_assert_int_eq(kv_iter_status(it), 0);
    ck_assert_int_eq(n, 3000);
    kv_iter_free(it);

    n = 0;
    for (kv_iter_seek_first(it2); kv_iter_valid(it2); kv_iter_next(it2), n++) {
        size_t vl;
        int got = 0;
        ck_assert_int_eq(sscanf(kv_iter_value(it2, &vl), "value-%d-", &got), 1);
        ck_assert_int_eq(got, -(2 * n + 1));
    }
    ck_assert_int_eq(kv_iter_status(it2), 0);
    ck_assert_int_eq(n, 1500);
    kv_iter_free(it2);
    ck_assert_int_eq(get_num(db, 0), -1);
    ck_assert_int_eq(get_num(db, 3), -3);
    close_and_remove(db, dir);
}
END_TEST

static Suite *read_view_suite(void)
{
    Suite *s = suite_create("read_view");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_read_view_get_sees_each_put_across_memtable_switches);
    tcase_add_test(tc, test_read_view_idle_view_does_not_keep_obsolete_tables);
    tcase_add_test(tc, test_read_view_iterator_outlives_flush_and_compaction);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(read_view_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
