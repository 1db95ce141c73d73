/* test_fs_meta.c - kvfs without a mount: extended attributes, directory streams (snapshot
 * semantics, offsets, readdirplus references), the schema's decoders on damaged values, and
 * fsck's detection and repair of broken invariants. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "checkutil.h"
#include "fs.h"
#include "fs_fixture.h"
#include "kvcore/kv.h"
#include "schema.h"

/* ---- Extended attributes ------------------------------------------------------------------- */

START_TEST(test_fs_xattr_set_get_list_remove)
{
    uint64_t f = tfs_mkfile(1, "f");
    char buf[256];
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "user.a", "one", 3, 0), 0);
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "user.b", "", 0, 0), 0);
    ck_assert_int_eq(fs_getxattr(tfs_fs, f, "user.a", NULL, 0), 3);
    ck_assert_int_eq(fs_getxattr(tfs_fs, f, "user.a", buf, sizeof buf), 3);
    ck_assert_int_eq(memcmp(buf, "one", 3), 0);
    ck_assert_int_eq(fs_getxattr(tfs_fs, f, "user.a", buf, 2), -ERANGE);
    ck_assert_int_eq(fs_getxattr(tfs_fs, f, "user.b", buf, sizeof buf), 0);
    ck_assert_int_eq(fs_getxattr(tfs_fs, f, "user.c", buf, sizeof buf), -ENODATA);
    ck_assert_int_eq(fs_listxattr(tfs_fs, f, NULL, 0), 14);
    ck_assert_int_eq(fs_listxattr(tfs_fs, f, buf, sizeof buf), 14);
    ck_assert_int_eq(memcmp(buf, "user.a\0user.b\0", 14), 0);
    ck_assert_int_eq(fs_listxattr(tfs_fs, f, buf, 5), -ERANGE);
    ck_assert_int_eq(fs_removexattr(tfs_fs, f, "user.a"), 0);
    ck_assert_int_eq(fs_removexattr(tfs_fs, f, "user.a"), -ENODATA);
    ck_assert_int_eq(fs_listxattr(tfs_fs, f, buf, sizeof buf), 7);
    ck_assert_int_eq(fs_getxattr(tfs_fs, 999999, "user.a", buf, sizeof buf), -ENOENT);
}
END_TEST

START_TEST(test_fs_xattr_flags_and_limits)
{
    uint64_t f = tfs_mkfile(1, "f");
    char name[300], *big = calloc(1, FS_XATTR_SIZE_MAX + 1);
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "user.a", "1", 1, XATTR_REPLACE), -ENODATA);
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "user.a", "1", 1, XATTR_CREATE), 0);
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "user.a", "2", 1, XATTR_CREATE), -EEXIST);
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "user.a", "3", 1, XATTR_REPLACE), 0);
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "user.big", big, FS_XATTR_SIZE_MAX, 0), 0);
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "user.big", big, FS_XATTR_SIZE_MAX + 1, 0), -E2BIG);
    memset(name, 'n', 256);
    name[256] = '\0';
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, name, "1", 1, 0), -ERANGE);
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "", "1", 1, 0), -ERANGE);
    free(big);
}
END_TEST

START_TEST(test_fs_xattrs_go_with_their_inode)
{
    uint64_t f = tfs_mkfile(1, "f");
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "user.a", "1", 1, 0), 0);
    ck_assert_uint_eq(tfs_count_keys('X', f), 1);
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "f"), 0);
    ck_assert_uint_eq(tfs_count_keys('X', f), 0);
}
END_TEST

START_TEST(test_fs_stats_xattr_is_virtual_and_read_only)
{
    char buf[8192];
    ssize_t n = fs_getxattr(tfs_fs, 1, FS_STATS_XATTR, buf, sizeof buf - 1);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_ptr_nonnull(strstr(buf, "L0"));
    ck_assert_ptr_nonnull(strstr(buf, "block cache hits"));
    ck_assert_int_eq(fs_setxattr(tfs_fs, 1, FS_STATS_XATTR, "x", 1, 0), -EPERM);
    ck_assert_int_eq(fs_listxattr(tfs_fs, 1, NULL, 0), 0);
}
END_TEST

/* ---- Directory streams --------------------------------------------------------------------- */

/* Reads the whole stream; returns the count of names other than . and .., checks order. */
static int read_all(struct fs_dir *d, uint64_t from, char names[][16], int max)
{
    struct fs_dirent de;
    uint64_t off = from;
    int n = 0, rc;
    char last[256] = "";
    while ((rc = fs_readdir(d, off, &de)) == 1) {
        ck_assert_uint_eq(de.namelen, strlen(de.name)); /* ll.c sends namelen bytes */
        if (strcmp(de.name, ".") && strcmp(de.name, "..")) {
            ck_assert_int_lt(strcmp(last, de.name), 0);
            strcpy(last, de.name);
            if (n < max)
                snprintf(names[n], 16, "%.15s", de.name);
            n++;
        }
        off = de.next_off;
    }
    ck_assert_int_eq(rc, 0);
    return n;
}

START_TEST(test_fs_readdir_lists_dot_dotdot_and_names_in_order)
{
    uint64_t d = tfs_mkdir(1, "d");
    struct fs_dir *dir;
    struct fs_dirent de;
    char names[8][16];
    tfs_mkfile(d, "b");
    tfs_mkfile(d, "a");
    tfs_mkdir(d, "c");
    ck_assert_int_eq(fs_opendir(tfs_fs, d, &dir), 0);
    ck_assert_int_eq(fs_readdir(dir, 0, &de), 1);
    ck_assert_str_eq(de.name, ".");
    ck_assert_uint_eq(de.namelen, 1);
    ck_assert_uint_eq(de.ino, d);
    ck_assert_int_eq(fs_readdir(dir, 1, &de), 1);
    ck_assert_str_eq(de.name, "..");
    ck_assert_uint_eq(de.namelen, 2);
    ck_assert_uint_eq(de.ino, 1);
    ck_assert_int_eq(read_all(dir, 2, names, 8), 3);
    ck_assert_str_eq(names[0], "a");
    ck_assert_str_eq(names[2], "c");
    /* offsets stay valid: resume at the third name, and rewind */
    ck_assert_int_eq(fs_readdir(dir, 4, &de), 1);
    ck_assert_str_eq(de.name, "c");
    ck_assert(S_ISDIR(de.type));
    ck_assert_int_eq(fs_readdir(dir, 3, &de), 1);
    ck_assert_str_eq(de.name, "b");
    ck_assert(S_ISREG(de.type));
    ck_assert_int_eq(fs_readdir(dir, 5, &de), 0);
    fs_closedir(tfs_fs, dir);
    ck_assert_int_eq(fs_opendir(tfs_fs, tfs_lookup(d, "b"), &dir), -ENOTDIR);
}
END_TEST

START_TEST(test_fs_readdir_of_a_stored_name_with_a_slash_or_nul_is_eio)
{
    static const char bad[2][3] = {{'b', '/', 'c'}, {'b', '\0', 'c'}};
    uint64_t d = tfs_mkdir(1, "d"), f = tfs_mkfile(d, "a");

    for (int i = 0; i < 2; i++) {
        uint8_t key[FS_KEY_MAX], val[FS_DIRENT_LEN];
        size_t klen = fs_key_dirent(key, d, bad[i], sizeof bad[i]);
        struct fs_dirent de;
        struct fs_dir *dir;

        fs_dirent_encode(f, DT_REG, val);
        ck_assert_int_eq(kv_put(tfs_db, key, klen, val, sizeof val, 0), 0);
        ck_assert_int_eq(fs_opendir(tfs_fs, d, &dir), 0);
        ck_assert_int_eq(fs_readdir(dir, 2, &de), 1); /* "a" reads, then the damaged name */
        ck_assert_str_eq(de.name, "a");
        ck_assert_int_eq(fs_readdir(dir, de.next_off, &de), -EIO);
        fs_closedir(tfs_fs, dir);
        ck_assert_int_eq(kv_delete(tfs_db, key, klen, 0), 0);
    }
}
END_TEST

START_TEST(test_fs_readdir_sees_the_directory_as_of_opendir)
{
    struct fs_dir *dir;
    struct fs_dirent de;
    char names[300][16], name[16];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof name, "f%03d", i);
        tfs_mkfile(1, name);
    }
    ck_assert_int_eq(fs_opendir(tfs_fs, 1, &dir), 0);
    ck_assert_int_eq(fs_readdir(dir, 0, &de), 1);
    /* changes after opendir: not seen, and nothing seen twice or skipped */
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "f100"), 0);
    tfs_mkfile(1, "f100x");
    ck_assert_int_eq(read_all(dir, 2, names, 300), 200);
    ck_assert_str_eq(names[100], "f100");
    fs_closedir(tfs_fs, dir);
    ck_assert_int_eq(fs_opendir(tfs_fs, 1, &dir), 0);
    ck_assert_int_eq(read_all(dir, 2, names, 300), 200);
    ck_assert_str_eq(names[100], "f100x");
    fs_closedir(tfs_fs, dir);
}
END_TEST

START_TEST(test_fs_readdir_entry_takes_a_lookup_reference)
{
    struct fs_entry e;
    uint64_t f = tfs_mkfile(1, "f");
    ck_assert_int_eq(fs_readdir_entry(tfs_fs, f, &e), 0);
    ck_assert_uint_eq(e.ino, f);
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "f"), 0);
    ck_assert_uint_eq(tfs_count_keys('I', f), 1); /* the reference keeps it */
    fs_forget(tfs_fs, f, 1);
    ck_assert_uint_eq(tfs_count_keys('I', f), 0);
    ck_assert_int_eq(fs_readdir_entry(tfs_fs, f, &e), -ENOENT);
}
END_TEST

START_TEST(test_fs_statfs_reports_store_space_and_name_max)
{
    struct statvfs st;
    ck_assert_int_eq(fs_statfs(tfs_fs, &st), 0);
    ck_assert_int_eq(st.f_namemax, 255);
    ck_assert_int_gt(st.f_blocks, 0);
    ck_assert_int_gt(st.f_files, st.f_ffree);
}
END_TEST

/* ---- Schema decoders ------------------------------------------------------------------------ */

START_TEST(test_fs_inode_decoder_rejects_damaged_values)
{
    struct fs_inode in, out;
    size_t len;
    uint8_t *v;
    memset(&in, 0, sizeof in);
    in.ino = 5;
    in.mode = S_IFLNK | 0777;
    in.nlink = 1;
    in.size = 3;
    in.mtime.tv_nsec = 5;
    v = fs_inode_encode(&in, "abc", 3, &len);
    ck_assert_int_eq(fs_inode_decode(5, v, len, &out, NULL, NULL), 0);
    ck_assert_int_eq(out.mtime.tv_nsec, 5);
    ck_assert_int_eq(fs_inode_decode(5, v, len - 1, &out, NULL, NULL), -EIO); /* size != tail */
    ck_assert_int_eq(fs_inode_decode(5, v, FS_INODE_HDR_LEN - 1, &out, NULL, NULL), -EIO);
    v[0] = 2;
    ck_assert_int_eq(fs_inode_decode(5, v, len, &out, NULL, NULL), -EIO);
    v[0] = FS_INODE_VERSION;
    fs_put_be32(v + 92, 1000000000u);
    ck_assert_int_eq(fs_inode_decode(5, v, len, &out, NULL, NULL), -EIO);
    fs_put_be32(v + 92, 0);
    fs_put_be32(v + 4, 0170777); /* no such file type */
    ck_assert_int_eq(fs_inode_decode(5, v, len, &out, NULL, NULL), -EIO);
    free(v);
}
END_TEST

START_TEST(test_fs_superblock_decoder_rejects_newer_and_damaged)
{
    struct fs_super sb, out;
    uint8_t v[FS_SUPER_LEN];
    memset(&sb, 0, sizeof sb);
    sb.version = FS_FORMAT_VERSION;
    sb.chunk_size = 65536;
    sb.ino_limit = 1024;
    fs_super_encode(&sb, v);
    ck_assert_int_eq(fs_super_decode(v, sizeof v, &out), 0);
    ck_assert_int_eq(out.chunk_size, 65536);
    ck_assert_int_eq(fs_super_decode(v, sizeof v - 1, &out), -EIO);
    fs_put_be32(v + 8, 65535);
    ck_assert_int_eq(fs_super_decode(v, sizeof v, &out), -EIO);
    fs_put_be32(v + 8, 65536);
    fs_put_be32(v + 4, FS_FORMAT_VERSION + 1);
    ck_assert_int_eq(fs_super_decode(v, sizeof v, &out), -EPROTO);
    v[0] ^= 1;
    ck_assert_int_eq(fs_super_decode(v, sizeof v, &out), -EIO);
}
END_TEST

START_TEST(test_fs_open_refuses_newer_format_and_foreign_store)
{
    uint8_t v[FS_SUPER_LEN], k[4];
    struct fs_super sb;
    struct fs_config cfg;
    struct fs *fs2;
    size_t kl = fs_key_super(k);
    memset(&cfg, 0, sizeof cfg);
    memset(&sb, 0, sizeof sb);
    sb.version = FS_FORMAT_VERSION + 1;
    sb.chunk_size = 65536;
    sb.ino_limit = 1024;
    fs_super_encode(&sb, v);
    ck_assert_int_eq(kv_put(tfs_db, k, kl, v, sizeof v, 0), 0);
    ck_assert_int_eq(fs_open(tfs_db, &cfg, 0, 0, &fs2), -EPROTO);
    ck_assert_int_eq(kv_delete(tfs_db, k, kl, 0), 0);
    ck_assert_int_eq(fs_open(tfs_db, &cfg, 0, 0, &fs2), -EINVAL); /* keys, but no superblock */
}
END_TEST

START_TEST(test_fs_corrupt_dirent_value_reads_as_eio)
{
    uint8_t k[FS_KEY_MAX];
    struct fs_entry e;
    size_t kl = fs_key_dirent(k, 1, "bad", 3);
    ck_assert_int_eq(kv_put(tfs_db, k, kl, "xx", 2, 0), 0);
    ck_assert_int_eq(fs_lookup(tfs_fs, 1, "bad", &e), -EIO);
}
END_TEST

/* ---- fsck ----------------------------------------------------------------------------------- */

START_TEST(test_fs_fsck_finds_a_busy_filesystem_clean)
{
    struct fs_entry e;
    uint64_t d = tfs_mkdir(1, "d"), f = tfs_mkfile(d, "f");
    ck_assert_int_eq(fs_write(tfs_fs, f, 100000, "x", 1), 1);
    ck_assert_int_eq(fs_link(tfs_fs, f, 1, "g", &e), 0);
    fs_forget(tfs_fs, f, 1);
    ck_assert_int_eq(fs_setxattr(tfs_fs, f, "user.k", "v", 1, 0), 0);
    ck_assert_int_eq(fs_symlink(tfs_fs, &tfs_root, d, "l", "f", &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "d", 1, "d2", 0), 0);
    struct fsck_result r = tfs_fsck_reopen(0);
    ck_assert_uint_eq(r.problems, 0);
    ck_assert_uint_eq(r.inodes, 4);
    ck_assert_uint_eq(r.dirents, 4);
    ck_assert_uint_eq(r.chunks, 1);
    ck_assert_uint_eq(r.xattrs, 1);
}
END_TEST

START_TEST(test_fs_fsck_repairs_dangling_dirent_bad_nlink_and_stray_chunk)
{
    uint8_t k[FS_KEY_MAX], v[FS_DIRENT_LEN];
    struct fsck_result r;
    uint64_t f = tfs_mkfile(1, "f");
    size_t kl;
    /* a dirent to nowhere */
    fs_dirent_encode(777777, DT_REG, v);
    kl = fs_key_dirent(k, 1, "ghost", 5);
    ck_assert_int_eq(kv_put(tfs_db, k, kl, v, sizeof v, 0), 0);
    /* a second, uncounted name for f */
    fs_dirent_encode(f, DT_REG, v);
    kl = fs_key_dirent(k, 1, "f2", 2);
    ck_assert_int_eq(kv_put(tfs_db, k, kl, v, sizeof v, 0), 0);
    /* a chunk of f past its EOF (size 0) */
    kl = fs_key_chunk(k, f, 3);
    ck_assert_int_eq(kv_put(tfs_db, k, kl, "data", 4, 0), 0);
    r = tfs_fsck_reopen(0);
    ck_assert_uint_eq(r.problems, 3);
    ck_assert_uint_eq(r.repaired, 0);
    r = tfs_fsck_reopen(1);
    ck_assert_uint_eq(r.problems, 3);
    ck_assert_uint_eq(r.repaired, 3);
    r = tfs_fsck_reopen(0);
    ck_assert_uint_eq(r.problems, 0);
    ck_assert_uint_eq(tfs_lookup(1, "ghost"), 0);
    ck_assert_int_eq(tfs_getattr(f).st_nlink, 2);
    ck_assert_uint_eq(tfs_count_keys('C', f), 0);
}
END_TEST

START_TEST(test_fs_fsck_flags_xattrs_that_reclaim_would_miss)
{
    uint8_t k[FS_KEY_MAX];
    struct fsck_result r;
    uint64_t f = tfs_mkfile(1, "f");
    /* an xattr key written behind the inode's back: its inode lacks FS_INODE_F_XATTR, so a
     * reclaim would skip the X scan and leak it */
    ck_assert_int_eq(kv_put(tfs_db, k, fs_key_xattr(k, f, "user.a", 6), "v", 1, 0), 0);
    r = tfs_fsck_reopen(0);
    ck_assert_uint_eq(r.problems, 1);
    r = tfs_fsck_reopen(1);
    ck_assert_uint_eq(r.repaired, 1);
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "f"), 0);
    ck_assert_uint_eq(tfs_count_keys('X', f), 0);
    r = tfs_fsck_reopen(0);
    ck_assert_uint_eq(r.problems, 0);
}
END_TEST

START_TEST(test_fs_fsck_moves_unreferenced_inode_to_lost_found)
{
    uint8_t k[FS_KEY_MAX];
    struct fsck_result r;
    uint64_t d = tfs_mkdir(1, "d"), f = tfs_mkfile(d, "f"), lf;
    /* lose the name of d: d and everything below is unreachable */
    ck_assert_int_eq(kv_delete(tfs_db, k, fs_key_dirent(k, 1, "d", 1), 0), 0);
    r = tfs_fsck_reopen(1);
    ck_assert_uint_ge(r.problems, 2); /* d unnamed; root's nlink */
    ck_assert_uint_eq(r.problems, r.repaired);
    lf = tfs_lookup(1, "lost+found");
    ck_assert_uint_ne(lf, 0);
    {
        char name[32];
        snprintf(name, sizeof name, "#%llu", (unsigned long long)d);
        ck_assert_uint_eq(tfs_lookup(lf, name), d);
    }
    ck_assert_uint_eq(tfs_lookup(d, "f"), f);
    ck_assert_uint_eq(tfs_lookup(d, ".."), lf);
    r = tfs_fsck_reopen(0);
    ck_assert_uint_eq(r.problems, 0);
}
END_TEST

START_TEST(test_fs_fsck_counts_pending_orphans_as_clean)
{
    struct fs_entry e;
    struct fsck_result r;
    ck_assert_int_eq(fs_create(tfs_fs, &tfs_root, 1, "f", 0644, &e), 0);
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "f"), 0);
    /* crash with the file open: the orphan key is on disk */
    ck_assert_int_eq(kv_close(tfs_db), 0);
    tfs_db = NULL;
    fs_abandon(tfs_fs);
    tfs_fs = NULL;
    r = tfs_fsck_closed(0);
    ck_assert_uint_eq(r.problems, 0);
    ck_assert_uint_eq(r.orphans, 1);
    tfs_open();
    ck_assert_uint_eq(tfs_count_keys('I', e.ino), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fs_meta");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, tfs_setup, tfs_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fs_xattr_set_get_list_remove);
    tcase_add_test(tc, test_fs_xattr_flags_and_limits);
    tcase_add_test(tc, test_fs_xattrs_go_with_their_inode);
    tcase_add_test(tc, test_fs_stats_xattr_is_virtual_and_read_only);
    tcase_add_test(tc, test_fs_readdir_lists_dot_dotdot_and_names_in_order);
    tcase_add_test(tc, test_fs_readdir_sees_the_directory_as_of_opendir);
    tcase_add_test(tc, test_fs_readdir_of_a_stored_name_with_a_slash_or_nul_is_eio);
    tcase_add_test(tc, test_fs_readdir_entry_takes_a_lookup_reference);
    tcase_add_test(tc, test_fs_statfs_reports_store_space_and_name_max);
    tcase_add_test(tc, test_fs_inode_decoder_rejects_damaged_values);
    tcase_add_test(tc, test_fs_superblock_decoder_rejects_newer_and_damaged);
    tcase_add_test(tc, test_fs_open_refuses_newer_format_and_foreign_store);
    tcase_add_test(tc, test_fs_corrupt_dirent_value_reads_as_eio);
    tcase_add_test(tc, test_fs_fsck_finds_a_busy_filesystem_clean);
    tcase_add_test(tc, test_fs_fsck_repairs_dangling_dirent_bad_nlink_and_stray_chunk);
    tcase_add_test(tc, test_fs_fsck_moves_unreferenced_inode_to_lost_found);
    tcase_add_test(tc, test_fs_fsck_flags_xattrs_that_reclaim_would_miss);
    tcase_add_test(tc, test_fs_fsck_counts_pending_orphans_as_clean);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
