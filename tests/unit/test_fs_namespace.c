/* test_fs_namespace.c - kvfs names without a mount: create, lookup, link, unlink, rmdir,
 * rename (with RENAME_NOREPLACE / RENAME_EXCHANGE), symlinks, device nodes, ownership rules,
 * timestamps and lookup-count driven reclaim, against a real kvcore in a temp dir. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "checkutil.h"
#include "fs.h"
#include "fs_fixture.h"
#include "fs_int.h"
#include "kvcore/kv.h"
#include "testutil.h"

/* ---- Tests --------------------------------------------------------------------------------- */

/* ino's inode, chunks and orphan key are all gone. */
static void assert_reclaimed(uint64_t ino)
{
    ck_assert_uint_eq(tfs_count_keys('I', ino), 0);
    ck_assert_uint_eq(tfs_count_keys('C', ino), 0);
    ck_assert_uint_eq(tfs_count_keys('O', ino), 0);
}

START_TEST(test_fs_new_store_has_root_directory)
{
    struct stat st = tfs_getattr(1);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(st.st_nlink, 2);
    ck_assert_uint_eq(tfs_lookup(1, ".."), 1);
    ck_assert_uint_eq(tfs_lookup(1, "."), 1);
}
END_TEST

START_TEST(test_fs_create_then_lookup_returns_same_inode)
{
    struct fs_entry e, l;
    ck_assert_int_eq(fs_create(tfs_fs, &tfs_user, 1, "f", 0640, &e), 0);
    ck_assert(S_ISREG(e.attr.st_mode));
    ck_assert_int_eq(e.attr.st_mode & 07777, 0640);
    ck_assert_int_eq(e.attr.st_uid, 1000);
    ck_assert_int_eq(e.attr.st_gid, 1000);
    ck_assert_int_eq(e.attr.st_nlink, 1);
    ck_assert_int_eq(fs_lookup(tfs_fs, 1, "f", &l), 0);
    ck_assert_uint_eq(l.ino, e.ino);
    ck_assert_int_eq(fs_lookup(tfs_fs, 1, "g", &l), -ENOENT);
    fs_forget(tfs_fs, e.ino, 2);
    fs_release(tfs_fs, e.ino);
    ck_assert_uint_eq(tfs_lookup(1, "f"), e.ino);
}
END_TEST

START_TEST(test_fs_create_existing_name_fails_eexist)
{
    struct fs_entry e;
    tfs_mkfile(1, "x");
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, 1, "x", S_IFREG | 0644, 0, &e), -EEXIST);
    ck_assert_int_eq(fs_mkdir(tfs_fs, &tfs_root, 1, "x", 0755, &e), -EEXIST);
    ck_assert_int_eq(fs_symlink(tfs_fs, &tfs_root, 1, "x", "t", &e), -EEXIST);
    ck_assert_int_eq(fs_mkdir(tfs_fs, &tfs_root, 1, ".", 0755, &e), -EEXIST);
}
END_TEST

START_TEST(test_fs_name_longer_than_255_is_enametoolong)
{
    char name[300];
    struct fs_entry e;
    memset(name, 'a', 255);
    name[255] = '\0';
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, 1, name, S_IFREG | 0644, 0, &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    ck_assert_uint_eq(tfs_lookup(1, name), e.ino);
    name[255] = 'a';
    name[256] = '\0';
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, 1, name, S_IFREG | 0644, 0, &e), -ENAMETOOLONG);
    ck_assert_int_eq(fs_lookup(tfs_fs, 1, name, &e), -ENAMETOOLONG);
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, name), -ENAMETOOLONG);
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "x", 1, name, 0), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_fs_mkdir_and_rmdir_keep_parent_link_count)
{
    uint64_t d = tfs_mkdir(1, "d");
    ck_assert_int_eq(tfs_getattr(1).st_nlink, 3);
    ck_assert_int_eq(tfs_getattr(d).st_nlink, 2);
    tfs_mkdir(d, "e");
    ck_assert_int_eq(tfs_getattr(d).st_nlink, 3);
    ck_assert_int_eq(fs_rmdir(tfs_fs, 1, "d"), -ENOTEMPTY);
    ck_assert_int_eq(fs_rmdir(tfs_fs, d, "e"), 0);
    ck_assert_int_eq(tfs_getattr(d).st_nlink, 2);
    ck_assert_int_eq(fs_rmdir(tfs_fs, 1, "d"), 0);
    ck_assert_int_eq(tfs_getattr(1).st_nlink, 2);
    ck_assert_uint_eq(tfs_lookup(1, "d"), 0);
    /* unreferenced: the inode is gone */
    ck_assert_uint_eq(tfs_count_keys('I', d), 0);
}
END_TEST

START_TEST(test_fs_unlink_and_rmdir_check_types)
{
    tfs_mkdir(1, "d");
    tfs_mkfile(1, "f");
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "d"), -EISDIR);
    ck_assert_int_eq(fs_rmdir(tfs_fs, 1, "f"), -ENOTDIR);
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "nope"), -ENOENT);
    ck_assert_int_eq(fs_rmdir(tfs_fs, 1, "."), -EINVAL);
    ck_assert_int_eq(fs_rmdir(tfs_fs, 1, ".."), -ENOTEMPTY);
}
END_TEST

START_TEST(test_fs_create_in_removed_directory_fails_enoent)
{
    struct fs_entry d, e;
    ck_assert_int_eq(fs_mkdir(tfs_fs, &tfs_root, 1, "d", 0755, &d), 0);
    ck_assert_int_eq(fs_rmdir(tfs_fs, 1, "d"), 0);
    /* still referenced by the kernel: the inode lives, but takes no new entries */
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, d.ino, "f", S_IFREG | 0644, 0, &e), -ENOENT);
    ck_assert_int_eq(tfs_getattr(d.ino).st_nlink, 0);
    fs_forget(tfs_fs, d.ino, 1);
    ck_assert_int_eq(fs_getattr(tfs_fs, d.ino, &e.attr), -ENOENT);
}
END_TEST

START_TEST(test_fs_hard_link_shares_inode_and_counts_links)
{
    struct fs_entry e;
    uint64_t f = tfs_mkfile(1, "a"), d = tfs_mkdir(1, "d");
    ck_assert_int_eq(fs_link(tfs_fs, f, d, "b", &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    ck_assert_uint_eq(e.ino, f);
    ck_assert_int_eq(tfs_getattr(f).st_nlink, 2);
    ck_assert_int_eq(fs_link(tfs_fs, f, d, "b", &e), -EEXIST);
    ck_assert_int_eq(fs_link(tfs_fs, d, 1, "dl", &e), -EPERM);
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "a"), 0);
    ck_assert_int_eq(tfs_getattr(f).st_nlink, 1);
    ck_assert_uint_eq(tfs_lookup(d, "b"), f);
    ck_assert_int_eq(fs_unlink(tfs_fs, d, "b"), 0);
    ck_assert_uint_eq(tfs_count_keys('I', f), 0);
}
END_TEST

START_TEST(test_fs_unlinked_inode_lives_until_last_forget_and_release)
{
    struct fs_entry e;
    char buf[8];
    ck_assert_int_eq(fs_create(tfs_fs, &tfs_root, 1, "f", 0644, &e), 0);
    ck_assert_int_eq(fs_write(tfs_fs, e.ino, 0, "data", 4), 4);
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "f"), 0);
    ck_assert_uint_eq(tfs_count_keys('O', e.ino), 1);
    ck_assert_int_eq(fs_read(tfs_fs, e.ino, 0, sizeof buf, buf), 4);
    ck_assert_int_eq(memcmp(buf, "data", 4), 0);
    fs_forget(tfs_fs, e.ino, 1);
    ck_assert_uint_eq(tfs_count_keys('I', e.ino), 1); /* still open */
    fs_release(tfs_fs, e.ino);
    assert_reclaimed(e.ino);
}
END_TEST

START_TEST(test_fs_unlinked_open_file_is_reclaimed_by_the_last_forget_after_release)
{
    struct fs_entry e, l;
    ck_assert_int_eq(fs_create(tfs_fs, &tfs_root, 1, "f", 0644, &e), 0);
    ck_assert_int_eq(fs_write(tfs_fs, e.ino, 0, "data", 4), 4);
    ck_assert_int_eq(fs_lookup(tfs_fs, 1, "f", &l), 0); /* two lookup references */
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "f"), 0);
    fs_release(tfs_fs, e.ino);
    fs_forget(tfs_fs, e.ino, 1);
    ck_assert_uint_eq(tfs_count_keys('I', e.ino), 1); /* one reference left */
    ck_assert_uint_eq(tfs_count_keys('O', e.ino), 1);
    fs_forget(tfs_fs, e.ino, 1);
    assert_reclaimed(e.ino);
}
END_TEST

START_TEST(test_fs_file_replaced_by_rename_is_reclaimed_by_its_last_forget)
{
    struct fs_entry a, b;
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, 1, "a", S_IFREG | 0644, 0, &a), 0);
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, 1, "b", S_IFREG | 0644, 0, &b), 0);
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "a", 1, "b", 0), 0);
    ck_assert_uint_eq(tfs_count_keys('I', b.ino), 1); /* the kernel still knows it */
    fs_forget(tfs_fs, a.ino, 1);                      /* a live inode: nothing happens */
    ck_assert_uint_eq(tfs_count_keys('I', a.ino), 1);
    ck_assert_uint_eq(tfs_lookup(1, "b"), a.ino);
    fs_forget(tfs_fs, b.ino, 1);
    ck_assert_uint_eq(tfs_count_keys('I', b.ino), 0);
    ck_assert_uint_eq(tfs_count_keys('O', b.ino), 0);
}
END_TEST

START_TEST(test_fs_reference_table_reports_unlinked_entries_on_their_last_drop)
{
    ck_assert_int_eq(fs_itab_add(tfs_fs, 5000, 2, 0), 0);
    ck_assert_int_eq(fs_itab_drop(tfs_fs, 5000, 1, 0), 0);
    ck_assert_int_eq(fs_itab_drop(tfs_fs, 5000, 1, 0), FS_ITAB_GONE);
    ck_assert_int_eq(fs_itab_mark_unlinked(tfs_fs, 5000), 0); /* not in the table */
    ck_assert_int_eq(fs_itab_add(tfs_fs, 5000, 1, 1), 0);
    ck_assert_int_eq(fs_itab_mark_unlinked(tfs_fs, 5000), 1);
    ck_assert_int_eq(fs_itab_drop(tfs_fs, 5000, 1, 0), 0);
    ck_assert_int_eq(fs_itab_drop(tfs_fs, 5000, 0, 1), FS_ITAB_GONE_UNLINKED);
    /* an inode the table does not know has an unknown link count */
    ck_assert_int_eq(fs_itab_drop(tfs_fs, 5001, 1, 0), FS_ITAB_GONE_UNLINKED);
}
END_TEST

START_TEST(test_fs_orphan_of_a_crashed_run_is_reclaimed_at_open)
{
    struct fs_entry e;
    ck_assert_int_eq(fs_create(tfs_fs, &tfs_root, 1, "f", 0644, &e), 0);
    ck_assert_int_eq(fs_write(tfs_fs, e.ino, 70000, "x", 1), 1);
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "f"), 0);
    /* "crash": the store is closed while the file is still open; fs_close() is not called */
    ck_assert_int_eq(kv_close(tfs_db), 0);
    tfs_db = NULL;
    fs_abandon(tfs_fs);
    tfs_fs = NULL;
    tfs_open();
    assert_reclaimed(e.ino);
}
END_TEST

static uint64_t n_rename(const char *from, const char *to, unsigned flags)
{
    return (uint64_t)(int64_t)fs_rename(tfs_fs, 1, from, 1, to, flags);
}

START_TEST(test_fs_rename_moves_and_replaces)
{
    uint64_t a = tfs_mkfile(1, "a"), b = tfs_mkfile(1, "b");
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "a", 1, "c", 0), 0);
    ck_assert_uint_eq(tfs_lookup(1, "a"), 0);
    ck_assert_uint_eq(tfs_lookup(1, "c"), a);
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "c", 1, "b", 0), 0);
    ck_assert_uint_eq(tfs_lookup(1, "b"), a);
    ck_assert_uint_eq(tfs_count_keys('I', b), 0); /* replaced and unreferenced: reclaimed */
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "nope", 1, "x", 0), -ENOENT);
    /* renaming onto another name of the same inode does nothing */
    {
        struct fs_entry e;
        ck_assert_int_eq(fs_link(tfs_fs, a, 1, "a2", &e), 0);
        fs_forget(tfs_fs, a, 1);
        ck_assert_int_eq(fs_rename(tfs_fs, 1, "b", 1, "a2", 0), 0);
        ck_assert_uint_eq(tfs_lookup(1, "b"), a);
        ck_assert_uint_eq(tfs_lookup(1, "a2"), a);
    }
}
END_TEST

START_TEST(test_fs_rename_noreplace_and_exchange)
{
    uint64_t a = tfs_mkfile(1, "a"), d = tfs_mkdir(1, "d"), sub;
    ck_assert_int_eq((int)n_rename("a", "d", RENAME_NOREPLACE), -EEXIST);
    ck_assert_int_eq((int)n_rename("a", "z", RENAME_NOREPLACE), 0);
    ck_assert_int_eq((int)n_rename("z", "nope", RENAME_EXCHANGE), -ENOENT);
    ck_assert_int_eq((int)n_rename("z", "d", RENAME_EXCHANGE | RENAME_NOREPLACE), -EINVAL);
    ck_assert_int_eq((int)n_rename("z", "d", RENAME_EXCHANGE), 0);
    ck_assert_uint_eq(tfs_lookup(1, "z"), d);
    ck_assert_uint_eq(tfs_lookup(1, "d"), a);
    /* exchange across directories moves the directory's parent pointer and link counts */
    sub = tfs_mkdir(d, "sub");
    tfs_mkfile(d, "f");
    ck_assert_int_eq(tfs_getattr(d).st_nlink, 3);
    ck_assert_int_eq(fs_rename(tfs_fs, d, "sub", 1, "d", RENAME_EXCHANGE), 0);
    ck_assert_uint_eq(tfs_lookup(1, "d"), sub);
    ck_assert_uint_eq(tfs_lookup(sub, ".."), 1);
    ck_assert_uint_eq(tfs_lookup(d, "sub"), a);
    ck_assert_int_eq(tfs_getattr(d).st_nlink, 2);
    ck_assert_int_eq(tfs_getattr(1).st_nlink, 4);
}
END_TEST

START_TEST(test_fs_rename_type_rules)
{
    uint64_t d = tfs_mkdir(1, "d"), e = tfs_mkdir(1, "e");
    tfs_mkfile(1, "f");
    tfs_mkfile(e, "inside");
    ck_assert_int_eq((int)n_rename("d", "f", 0), -ENOTDIR);
    ck_assert_int_eq((int)n_rename("f", "d", 0), -EISDIR);
    ck_assert_int_eq((int)n_rename("d", "e", 0), -ENOTEMPTY);
    ck_assert_int_eq(fs_unlink(tfs_fs, e, "inside"), 0);
    ck_assert_int_eq((int)n_rename("d", "e", 0), 0);
    ck_assert_uint_eq(tfs_lookup(1, "e"), d);
    ck_assert_int_eq(tfs_getattr(1).st_nlink, 3);
    ck_assert_int_eq((int)n_rename("e", ".", 0), -EBUSY);
}
END_TEST

START_TEST(test_fs_rename_directory_into_own_subtree_is_einval)
{
    uint64_t a = tfs_mkdir(1, "a"), b = tfs_mkdir(a, "b"), c = tfs_mkdir(b, "c");
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "a", c, "x", 0), -EINVAL);
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "a", a, "x", 0), -EINVAL);
    ck_assert_int_eq(fs_rename(tfs_fs, a, "b", c, "x", 0), -EINVAL);
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "a", c, "x", RENAME_EXCHANGE), -ENOENT);
    tfs_mkfile(c, "x");
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "a", c, "x", RENAME_EXCHANGE), -EINVAL);
    ck_assert_int_eq(fs_rename(tfs_fs, c, "x", 1, "a", RENAME_EXCHANGE), -EINVAL);
    ck_assert_int_eq(fs_unlink(tfs_fs, c, "x"), 0);
    /* moving c up is fine and fixes link counts and '..' */
    ck_assert_int_eq(fs_rename(tfs_fs, b, "c", 1, "c", 0), 0);
    ck_assert_uint_eq(tfs_lookup(c, ".."), 1);
    ck_assert_int_eq(tfs_getattr(b).st_nlink, 2);
    ck_assert_int_eq(tfs_getattr(1).st_nlink, 4);
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "a", c, "a", 0), 0);
    ck_assert_uint_eq(tfs_lookup(a, ".."), c);
}
END_TEST

START_TEST(test_fs_symlink_reads_back_target)
{
    struct fs_entry e;
    char buf[64], big[5000];
    ck_assert_int_eq(fs_symlink(tfs_fs, &tfs_user, 1, "l", "../some/where", &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    ck_assert(S_ISLNK(e.attr.st_mode));
    ck_assert_int_eq(e.attr.st_size, 13);
    ck_assert_int_eq(fs_readlink(tfs_fs, e.ino, buf, sizeof buf), 13);
    ck_assert_str_eq(buf, "../some/where");
    ck_assert_int_eq(fs_readlink(tfs_fs, 1, buf, sizeof buf), -EINVAL);
    /* a rename rewrites the inode's ctime and must keep the target */
    ck_assert_int_eq(fs_rename(tfs_fs, 1, "l", 1, "m", 0), 0);
    ck_assert_int_eq(fs_readlink(tfs_fs, e.ino, buf, sizeof buf), 13);
    ck_assert_str_eq(buf, "../some/where");
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ck_assert_int_eq(fs_symlink(tfs_fs, &tfs_user, 1, "big", big, &e), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_fs_mknod_makes_fifo_and_device_nodes)
{
    struct fs_entry e;
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, 1, "p", S_IFIFO | 0600, 0, &e), 0);
    ck_assert(S_ISFIFO(e.attr.st_mode));
    fs_forget(tfs_fs, e.ino, 1);
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, 1, "c", S_IFCHR | 0600, makedev(4, 5), &e), 0);
    ck_assert(S_ISCHR(tfs_getattr(e.ino).st_mode));
    ck_assert_uint_eq(tfs_getattr(e.ino).st_rdev, makedev(4, 5));
    fs_forget(tfs_fs, e.ino, 1);
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, 1, "b", S_IFBLK | 0600, makedev(8, 1), &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, 1, "s", S_IFSOCK | 0600, 0, &e), 0);
    ck_assert(S_ISSOCK(tfs_getattr(e.ino).st_mode));
    fs_forget(tfs_fs, e.ino, 1);
    tfs_reopen();
    ck_assert_uint_eq(tfs_getattr(tfs_lookup(1, "c")).st_rdev, makedev(4, 5));
}
END_TEST

START_TEST(test_fs_setgid_directory_passes_group_and_bit_on)
{
    struct fs_entry d, f, sub;
    struct stat st;
    ck_assert_int_eq(fs_mkdir(tfs_fs, &tfs_root, 1, "g", 02775, &d), 0);
    memset(&st, 0, sizeof st);
    st.st_gid = 500;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, d.ino, &st, FS_SET_GID, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 02775); /* directories keep set-gid on chown */
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_user, d.ino, "f", S_IFREG | 0644, 0, &f), 0);
    ck_assert_int_eq(f.attr.st_gid, 500);
    ck_assert_int_eq(f.attr.st_uid, 1000);
    ck_assert_int_eq(fs_mkdir(tfs_fs, &tfs_user, d.ino, "s", 0755, &sub), 0);
    ck_assert_int_eq(sub.attr.st_gid, 500);
    ck_assert(sub.attr.st_mode & S_ISGID);
    /* a non-member's group-executable set-gid file loses the bit */
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_user, d.ino, "x", S_IFREG | 02755, 0, &f), 0);
    ck_assert(!(f.attr.st_mode & S_ISGID));
}
END_TEST

START_TEST(test_fs_chown_clears_setid_and_chmod_by_nonmember_drops_setgid)
{
    struct fs_entry e;
    struct stat st, out;
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, 1, "f", S_IFREG | 06755, 0, &e), 0);
    memset(&st, 0, sizeof st);
    st.st_uid = 7;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, e.ino, &st, FS_SET_UID, &out), 0);
    ck_assert_int_eq(out.st_uid, 7);
    ck_assert_int_eq(out.st_mode & 07777, 0755);
    /* without group-execute, set-gid means mandatory locking and survives chown */
    st.st_mode = 02644;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, e.ino, &st, FS_SET_MODE, &out), 0);
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, e.ino, &st, FS_SET_GID, &out), 0);
    ck_assert_int_eq(out.st_mode & 07777, 02644);
    /* chmod g+s by someone outside the file's group (gid 0) */
    st.st_mode = 02755;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_user, e.ino, &st, FS_SET_MODE, &out), 0);
    ck_assert_int_eq(out.st_mode & 07777, 0755);
}
END_TEST

static int ts_cmp(struct timespec a, struct timespec b)
{
    if (a.tv_sec != b.tv_sec)
        return a.tv_sec < b.tv_sec ? -1 : 1;
    return a.tv_nsec < b.tv_nsec ? -1 : a.tv_nsec > b.tv_nsec;
}

START_TEST(test_fs_setattr_sets_times_explicitly_or_now_and_bumps_ctime)
{
    uint64_t f = tfs_mkfile(1, "f");
    struct stat st, out, before = tfs_getattr(f);
    memset(&st, 0, sizeof st);
    st.st_atim.tv_sec = 1000;
    st.st_atim.tv_nsec = 123456789;
    st.st_mtim.tv_sec = 2000;
    st.st_mtim.tv_nsec = 987654321;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_ATIME | FS_SET_MTIME, &out), 0);
    ck_assert_int_eq(out.st_atim.tv_sec, 1000);
    ck_assert_int_eq(out.st_atim.tv_nsec, 123456789);
    ck_assert_int_eq(out.st_mtim.tv_sec, 2000);
    ck_assert_int_eq(out.st_mtim.tv_nsec, 987654321);
    ck_assert_int_ge(ts_cmp(out.st_ctim, before.st_ctim), 0);
    /* UTIME_OMIT for atime: only mtime moves, to now */
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, f, &st, FS_SET_MTIME | FS_SET_MTIME_NOW, &out),
                     0);
    ck_assert_int_eq(out.st_atim.tv_sec, 1000);
    ck_assert_int_ge(ts_cmp(out.st_mtim, before.st_mtim), 0);
    tfs_reopen();
    ck_assert_int_eq(tfs_getattr(f).st_atim.tv_nsec, 123456789);
}
END_TEST

START_TEST(test_fs_create_and_unlink_update_parent_times)
{
    struct stat before = tfs_getattr(1), after;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    tfs_mkfile(1, "f");
    after = tfs_getattr(1);
    ck_assert_int_gt(ts_cmp(after.st_mtim, before.st_mtim), 0);
    ck_assert_int_gt(ts_cmp(after.st_ctim, before.st_ctim), 0);
    nanosleep(&ts, NULL);
    ck_assert_int_eq(fs_unlink(tfs_fs, 1, "f"), 0);
    ck_assert_int_gt(ts_cmp(tfs_getattr(1).st_mtim, after.st_mtim), 0);
}
END_TEST

START_TEST(test_fs_namespace_survives_reopen)
{
    uint64_t d = tfs_mkdir(1, "d"), f = tfs_mkfile(d, "f");
    struct fs_entry e;
    ck_assert_int_eq(fs_symlink(tfs_fs, &tfs_root, d, "l", "f", &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    tfs_reopen();
    ck_assert_uint_eq(tfs_lookup(1, "d"), d);
    ck_assert_uint_eq(tfs_lookup(d, "f"), f);
    ck_assert_uint_eq(tfs_lookup(d, "l"), e.ino);
    /* new inode numbers never reuse old ones */
    ck_assert_uint_gt(tfs_mkfile(1, "g"), e.ino);
}
END_TEST

START_TEST(test_fs_read_only_filesystem_rejects_changes)
{
    struct fs_config cfg;
    struct fs *ro;
    struct fs_entry e;
    tfs_mkfile(1, "f");
    memset(&cfg, 0, sizeof cfg);
    cfg.read_only = 1;
    ck_assert_int_eq(fs_open(tfs_db, &cfg, 0, 0, &ro), 0);
    ck_assert_int_eq(fs_mknod(ro, &tfs_root, 1, "g", S_IFREG | 0644, 0, &e), -EROFS);
    ck_assert_int_eq(fs_unlink(ro, 1, "f"), -EROFS);
    ck_assert_int_eq(fs_lookup(ro, 1, "f", &e), 0);
    fs_forget(ro, e.ino, 1);
    fs_close(ro);
}
END_TEST

/* Threads renaming files and directories between three directories (both directions, so lock
 * order matters), creating and unlinking: no deadlock, no error other than the expected races,
 * and fsck finds every link count and parent right afterwards. */
struct churn_arg {
    uint64_t dirs[3];
    uint64_t seed;
    int failures;
};

static void *churn(void *p)
{
    struct churn_arg *a = p;
    tu_rng rng;
    char from[16], to[16];
    tu_rng_init(&rng, a->seed);
    for (int i = 0; i < 400; i++) {
        uint64_t s = a->dirs[tu_rng_below(&rng, 3)], d = a->dirs[tu_rng_below(&rng, 3)];
        struct fs_entry e;
        int rc;
        snprintf(from, sizeof from, "n%u", (unsigned)tu_rng_below(&rng, 8));
        snprintf(to, sizeof to, "n%u", (unsigned)tu_rng_below(&rng, 8));
        switch (tu_rng_below(&rng, 5)) {
        case 0:
            rc = fs_mknod(tfs_fs, &tfs_root, s, from, S_IFREG | 0644, 0, &e);
            if (rc == 0)
                fs_forget(tfs_fs, e.ino, 1);
            break;
        case 1:
            rc = fs_mkdir(tfs_fs, &tfs_root, s, from, 0755, &e);
            if (rc == 0)
                fs_forget(tfs_fs, e.ino, 1);
            break;
        case 2:
            rc = fs_unlink(tfs_fs, s, from);
            if (rc == -EISDIR)
                rc = fs_rmdir(tfs_fs, s, from);
            break;
        default:
            rc = fs_rename(tfs_fs, s, from, d, to, tu_rng_below(&rng, 4) ? 0 : RENAME_EXCHANGE);
            break;
        }
        if (rc != 0 && rc != -ENOENT && rc != -EEXIST && rc != -ENOTEMPTY && rc != -EISDIR &&
            rc != -ENOTDIR && rc != -EINVAL)
            a->failures++;
    }
    return NULL;
}

START_TEST(test_fs_concurrent_renames_creates_and_unlinks_stay_consistent)
{
    uint64_t seed = tu_seed("test_fs_concurrent_renames_creates_and_unlinks_stay_consistent");
    uint64_t dirs[3] = {1, tfs_mkdir(1, "a"), tfs_mkdir(1, "b")};
    struct churn_arg a[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        memcpy(a[i].dirs, dirs, sizeof dirs);
        a[i].seed = seed + (uint64_t)i;
        a[i].failures = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, churn, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(a[i].failures, 0);
    }
    tfs_close();
    ck_assert_uint_eq(tfs_fsck_closed(0).problems, 0);
}
END_TEST

static uint64_t last_sequence(void)
{
    kv_stats st;
    ck_assert_int_eq(kv_get_stats(tfs_db, &st), 0);
    return st.last_sequence;
}

START_TEST(test_fs_setattr_to_the_stored_times_writes_nothing)
{
    uint64_t ino = tfs_mkfile(1, "f");
    struct stat st = tfs_getattr(ino), out, set;
    uint64_t seq;

    /* What the kernel's writeback cache sends after an unlink or rename: the times it holds,
     * which are the stored ones. */
    memset(&set, 0, sizeof set);
    set.st_mtim = st.st_mtim;
    set.st_ctim = st.st_ctim;
    seq = last_sequence();
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, ino, &set, FS_SET_MTIME | FS_SET_CTIME, &out),
                     0);
    ck_assert_uint_eq(last_sequence(), seq);
    ck_assert_int_eq(out.st_ctim.tv_sec, st.st_ctim.tv_sec);
    ck_assert_int_eq(out.st_ctim.tv_nsec, st.st_ctim.tv_nsec);
    ck_assert_int_eq(out.st_mode, st.st_mode);
    ck_assert_int_eq(out.st_nlink, 1);

    /* A different ctime is written, and survives a reopen. */
    set.st_ctim.tv_nsec = (st.st_ctim.tv_nsec + 1) % 1000000000L;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, ino, &set, FS_SET_MTIME | FS_SET_CTIME, &out),
                     0);
    ck_assert_uint_gt(last_sequence(), seq);
    tfs_reopen();
    st = tfs_getattr(ino);
    ck_assert_int_eq(st.st_ctim.tv_nsec, set.st_ctim.tv_nsec);

    /* A mode equal to the stored one with no time given still moves ctime to now. */
    seq = last_sequence();
    set.st_mode = st.st_mode;
    ck_assert_int_eq(fs_setattr(tfs_fs, &tfs_root, ino, &set, FS_SET_MODE, &out), 0);
    ck_assert_uint_gt(last_sequence(), seq);
}
END_TEST

struct busy_unlink {
    uint64_t parent;
    const char *name;
    int rc;
    volatile int done;
};

static void *busy_unlink_thread(void *arg)
{
    struct busy_unlink *u = arg;
    u->rc = fs_unlink(tfs_fs, u->parent, u->name);
    __atomic_store_n(&u->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

START_TEST(test_fs_unlink_waits_for_a_busy_child_and_then_removes_it)
{
    uint64_t dir = tfs_mkdir(1, "d"), ino = tfs_mkfile(dir, "f");
    struct busy_unlink u = {dir, "f", -1, 0};
    struct timespec pause = {0, 50 * 1000 * 1000};
    pthread_t t;

    /* The child's stripe is held (as by a write to it): the unlink may not take it out of
     * order, so it falls back to locking in stripe order and waits. */
    fs_lock_ino(tfs_fs, ino);
    ck_assert_int_eq(pthread_create(&t, NULL, busy_unlink_thread, &u), 0);
    nanosleep(&pause, NULL);
    ck_assert_int_eq(__atomic_load_n(&u.done, __ATOMIC_ACQUIRE), 0);
    ck_assert_uint_eq(tfs_count_keys('I', ino), 1);
    fs_unlock_ino(tfs_fs, ino);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(u.rc, 0);
    ck_assert_uint_eq(tfs_lookup(dir, "f"), 0);
    ck_assert_uint_eq(tfs_count_keys('I', ino), 0); /* nothing referenced it: reclaimed */
    ck_assert_int_eq(tfs_getattr(dir).st_nlink, 2);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fs_namespace");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, tfs_setup, tfs_teardown);
    tcase_add_test(tc, test_fs_new_store_has_root_directory);
    tcase_add_test(tc, test_fs_create_then_lookup_returns_same_inode);
    tcase_add_test(tc, test_fs_create_existing_name_fails_eexist);
    tcase_add_test(tc, test_fs_name_longer_than_255_is_enametoolong);
    tcase_add_test(tc, test_fs_mkdir_and_rmdir_keep_parent_link_count);
    tcase_add_test(tc, test_fs_unlink_and_rmdir_check_types);
    tcase_add_test(tc, test_fs_create_in_removed_directory_fails_enoent);
    tcase_add_test(tc, test_fs_hard_link_shares_inode_and_counts_links);
    tcase_add_test(tc, test_fs_unlinked_inode_lives_until_last_forget_and_release);
    tcase_add_test(tc, test_fs_orphan_of_a_crashed_run_is_reclaimed_at_open);
    tcase_add_test(tc, test_fs_rename_moves_and_replaces);
    tcase_add_test(tc, test_fs_rename_noreplace_and_exchange);
    tcase_add_test(tc, test_fs_rename_type_rules);
    tcase_add_test(tc, test_fs_rename_directory_into_own_subtree_is_einval);
    tcase_add_test(tc, test_fs_symlink_reads_back_target);
    tcase_add_test(tc, test_fs_mknod_makes_fifo_and_device_nodes);
    tcase_add_test(tc, test_fs_setgid_directory_passes_group_and_bit_on);
    tcase_add_test(tc, test_fs_chown_clears_setid_and_chmod_by_nonmember_drops_setgid);
    tcase_add_test(tc, test_fs_setattr_sets_times_explicitly_or_now_and_bumps_ctime);
    tcase_add_test(tc, test_fs_create_and_unlink_update_parent_times);
    tcase_add_test(tc, test_fs_namespace_survives_reopen);
    tcase_add_test(tc, test_fs_read_only_filesystem_rejects_changes);
    tcase_add_test(tc, test_fs_concurrent_renames_creates_and_unlinks_stay_consistent);
    tcase_add_test(tc, test_fs_setattr_to_the_stored_times_writes_nothing);
    tcase_add_test(tc, test_fs_unlinked_open_file_is_reclaimed_by_the_last_forget_after_release);
    tcase_add_test(tc, test_fs_file_replaced_by_rename_is_reclaimed_by_its_last_forget);
    tcase_add_test(tc, test_fs_reference_table_reports_unlinked_entries_on_their_last_drop);
    tcase_add_test(tc, test_fs_unlink_waits_for_a_busy_child_and_then_removes_it);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
