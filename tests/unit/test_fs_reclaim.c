/* test_fs_reclaim.c - kvfs without a mount: an unlinked file's keys all go once it is
 * unreferenced (small files by key in one batch, large or sparse ones by scan), and the
 * in-memory reference table grows and stays exact past 100,000 referenced inodes. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkutil.h"
#include "fs.h"
#include "fs_fixture.h"
#include "fs_int.h"
#include "kvcore/kv.h"
#include "testutil.h"

#define CS 65536u

static uint8_t buf[CS];

/* Writes len bytes of 'x' at off into ino, asserting a full write. */
static void put(uint64_t ino, uint64_t off, size_t len)
{
    memset(buf, 'x', len);
    ck_assert_int_eq(fs_write(tfs_fs, ino, off, buf, len), (ssize_t)len);
}

/* Checks ino holds `chunks` chunk keys, unlinks name in the root while open, checks every key
 * of the file is still there, then releases it and checks none is left and fsck is clean. */
static void unlink_and_release(const char *name, uint64_t ino, size_t chunks)
{
    size_t before = tfs_count_keys(FS_KEY_CHUNK, ino);
    struct fsck_result r;

    ck_assert_uint_eq(before, chunks);
    ck_assert_int_eq(fs_open_file(tfs_fs, ino, O_RDWR), 0);
    ck_assert_int_eq(fs_unlink(tfs_fs, FS_ROOT_INO, name), 0);
    ck_assert_uint_eq(tfs_count_keys(FS_KEY_CHUNK, ino), before);
    ck_assert_uint_eq(tfs_count_keys(FS_KEY_ORPHAN, ino), 1);
    fs_release(tfs_fs, ino);
    ck_assert_uint_eq(tfs_count_keys(FS_KEY_CHUNK, ino), 0);
    ck_assert_uint_eq(tfs_count_keys(FS_KEY_XATTR, ino), 0);
    ck_assert_uint_eq(tfs_count_keys(FS_KEY_INODE, ino), 0);
    ck_assert_uint_eq(tfs_count_keys(FS_KEY_ORPHAN, ino), 0);
    r = tfs_fsck_reopen(0);
    ck_assert_uint_eq(r.problems, 0);
    ck_assert_uint_eq(r.chunks, 0);
}

START_TEST(test_fs_unlinked_small_file_with_holes_leaves_no_key)
{
    uint64_t f = tfs_mkfile(FS_ROOT_INO, "small");

    /* chunks 0, 2 and a partial last one (3); chunk 1 is a hole */
    put(f, 0, CS);
    put(f, 2 * (uint64_t)CS, 100);
    put(f, 3 * (uint64_t)CS + 5, 10);
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "user.k", "v", 1, 0), 0);
    unlink_and_release("small", f, 3);
}
END_TEST

START_TEST(test_fs_unlinked_large_sparse_file_leaves_no_key)
{
    uint64_t f = tfs_mkfile(FS_ROOT_INO, "sparse");

    /* far more chunk slots than are worth deleting by key: the scan path */
    put(f, 0, 10);
    put(f, 70 * (uint64_t)CS, 10);
    put(f, 100000 * (uint64_t)CS, 10);
    unlink_and_release("sparse", f, 3);
}
END_TEST

START_TEST(test_fs_unlinked_file_truncated_to_few_chunks_leaves_no_key)
{
    uint64_t f = tfs_mkfile(FS_ROOT_INO, "shrunk");
    struct stat st;

    put(f, 0, 100);
    put(f, 200 * (uint64_t)CS, 100);
    memset(&st, 0, sizeof st);
    st.st_size = 2 * CS + 1; /* drops the far chunk: the key path covers what is left */
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_SIZE, &st), 0);
    put(f, CS, 1);
    unlink_and_release("shrunk", f, 2);
}
END_TEST

#define MANY 100000

START_TEST(test_fs_reference_table_grows_and_counts_past_100k_inodes)
{
    struct fs_entry e;
    char name[32];
    unsigned bits0 = tfs_fs->itab_bits;
    uint64_t first = 0, last = 0;

    for (int i = 0; i < MANY; i++) {
        snprintf(name, sizeof name, "f%d", i);
        ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, FS_ROOT_INO, name, S_IFREG | 0644, 0, &e), 0);
        if (i == 0)
            first = e.ino;
        last = e.ino;
    }
    ck_assert_uint_eq(tfs_fs->itab_count, MANY);
    ck_assert_uint_gt(tfs_fs->itab_bits, bits0);
    ck_assert_uint_le(tfs_fs->itab_count, 2 * ((size_t)1 << tfs_fs->itab_bits));
    /* a second reference to one, then unlink it: it stays until both are dropped */
    ck_assert_int_eq(fs_lookup(tfs_fs, FS_ROOT_INO, "f0", &e), 0);
    ck_assert_uint_eq(e.ino, first);
    ck_assert_int_eq(fs_unlink(tfs_fs, FS_ROOT_INO, "f0"), 0);
    fs_forget(tfs_fs, first, 1);
    ck_assert_int_eq(fs_itab_referenced(tfs_fs, first), 1);
    ck_assert_uint_eq(tfs_count_keys(FS_KEY_INODE, first), 1);
    fs_forget(tfs_fs, first, 1);
    ck_assert_int_eq(fs_itab_referenced(tfs_fs, first), 0);
    ck_assert_uint_eq(tfs_count_keys(FS_KEY_INODE, first), 0);
    ck_assert_int_eq(fs_itab_referenced(tfs_fs, last), 1);
    for (uint64_t ino = first + 1; ino <= last; ino++)
        fs_forget(tfs_fs, ino, 1);
    ck_assert_uint_eq(tfs_fs->itab_count, 0);
    ck_assert_int_eq(fs_itab_referenced(tfs_fs, last), 0);
    ck_assert_uint_eq(tfs_getattr(last).st_nlink, 1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fs_reclaim");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, tfs_setup, tfs_teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_fs_unlinked_small_file_with_holes_leaves_no_key);
    tcase_add_test(tc, test_fs_unlinked_large_sparse_file_leaves_no_key);
    tcase_add_test(tc, test_fs_unlinked_file_truncated_to_few_chunks_leaves_no_key);
    tcase_add_test(tc, test_fs_reference_table_grows_and_counts_past_100k_inodes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
