/* test_fs_shutdown.c - what fs_close and fs_abandon release when the kernel never sent the
 * matching release (a daemon stopped by SIGTERM/SIGINT/SIGHUP with directories open): the open
 * directory streams, whose snapshots and iterators must go before kv_close. */
#include <check.h>
#include <stdint.h>

#include "checkutil.h"
#include "fs.h"
#include "fs_fixture.h"
#include "kvcore/kv.h"

static uint64_t live_snapshots(void)
{
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(tfs_db, &st), 0);
    return st.live_snapshots;
}

/* Opens three streams (root, sub, sub), reads an entry of the third so its iterator is
 * positioned, and closes the middle one: two streams stay open, one of them mid-listing. */
static void leave_two_streams_open(void)
{
    struct fs_dir *a, *b, *c;
    struct fs_dirent de;
    uint64_t sub = tfs_mkdir(1, "sub");

    tfs_mkfile(sub, "f");
    /* Streams served from the directory cache pin no snapshot: these list from the store. */
    tfs_dir_cache_bytes = FS_CONFIG_NO_DIR_CACHE;
    tfs_reopen();
    tfs_dir_cache_bytes = 0;
    ck_assert_int_eq(fs_opendir(tfs_fs, 1, &a), 0);
    ck_assert_int_eq(fs_opendir(tfs_fs, sub, &b), 0);
    ck_assert_int_eq(fs_opendir(tfs_fs, sub, &c), 0);
    ck_assert_int_eq(fs_readdir(c, 2, &de), 1);
    ck_assert_str_eq(de.name, "f");
    fs_closedir(tfs_fs, b);
    ck_assert_uint_eq(live_snapshots(), 2);
}

/* Leaves two streams open, frees the filesystem with free_fs (fs_close or fs_abandon): no
 * snapshot may remain, and the store must close cleanly and hold what was made before. */
static void check_free_releases_open_streams(void (*free_fs)(struct fs *))
{
    leave_two_streams_open();
    free_fs(tfs_fs);
    tfs_fs = NULL;
    ck_assert_uint_eq(live_snapshots(), 0);
    ck_assert_int_eq(kv_close(tfs_db), 0);
    tfs_db = NULL;
    tfs_open();
    ck_assert_uint_ne(tfs_lookup(1, "sub"), 0);
    ck_assert_uint_ne(tfs_lookup(tfs_lookup(1, "sub"), "f"), 0);
}

START_TEST(test_fs_close_releases_directory_streams_left_open)
{
    check_free_releases_open_streams(fs_close);
}
END_TEST

START_TEST(test_fs_abandon_releases_directory_streams_left_open)
{
    check_free_releases_open_streams(fs_abandon);
}
END_TEST

START_TEST(test_fs_closedir_in_any_order_then_close_is_clean)
{
    struct fs_dir *d[4];

    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(fs_opendir(tfs_fs, 1, &d[i]), 0);
    /* Head, tail, middle, last: every unlink case of the list of open streams. */
    fs_closedir(tfs_fs, d[3]);
    fs_closedir(tfs_fs, d[0]);
    fs_closedir(tfs_fs, d[2]);
    fs_closedir(tfs_fs, d[1]);
    ck_assert_uint_eq(live_snapshots(), 0);
    /* A stream that failed to open is never listed: closing the fs must not touch it. */
    ck_assert_int_ne(fs_opendir(tfs_fs, tfs_mkfile(1, "file"), &d[0]), 0);
    ck_assert_ptr_null(d[0]);
    fs_close(tfs_fs);
    tfs_fs = NULL;
    ck_assert_uint_eq(live_snapshots(), 0);
    ck_assert_int_eq(kv_close(tfs_db), 0);
    tfs_db = NULL;
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fs_shutdown");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, tfs_setup, tfs_teardown);
    tcase_add_test(tc, test_fs_close_releases_directory_streams_left_open);
    tcase_add_test(tc, test_fs_abandon_releases_directory_streams_left_open);
    tcase_add_test(tc, test_fs_closedir_in_any_order_then_close_is_clean);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
