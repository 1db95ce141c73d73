/* fs_fixture.c - a fresh store opened as a filesystem for the fs unit suites (fs_fixture.h). */
#include "fs_fixture.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

char *tfs_dir;
kv_db *tfs_db;
struct fs *tfs_fs;
const struct fs_ctx tfs_root = {0, 0, NULL, 0};
const struct fs_ctx tfs_user = {1000, 1000, NULL, 0};
size_t tfs_chunk_cache_bytes;
size_t tfs_dir_cache_bytes;

/* Opens the store in tfs_dir into tfs_db, logging only errors. */
static void open_store(void)
{
    kv_options o;
    kv_options_init(&o);
    o.log_level = KV_LOG_ERROR;
    ck_assert_int_eq(kv_open(tfs_dir, &o, &tfs_db), 0);
}

void tfs_open(void)
{
    struct fs_config cfg;
    open_store();
    memset(&cfg, 0, sizeof cfg);
    cfg.store_path = tfs_dir;
    cfg.chunk_cache_bytes = tfs_chunk_cache_bytes;
    cfg.dir_cache_bytes = tfs_dir_cache_bytes;
    ck_assert_int_eq(fs_open(tfs_db, &cfg, 0, 0, &tfs_fs), 0);
}

void tfs_close(void)
{
    fs_close(tfs_fs);
    tfs_fs = NULL;
    ck_assert_int_eq(kv_close(tfs_db), 0);
    tfs_db = NULL;
}

void tfs_reopen(void)
{
    tfs_close();
    tfs_open();
}

void tfs_setup(void)
{
    tfs_dir = tu_tempdir("fs");
    ck_assert_ptr_nonnull(tfs_dir);
    tfs_open();
}

void tfs_teardown(void)
{
    if (tfs_fs || tfs_db)
        tfs_close();
    tu_rmtree(tfs_dir);
    free(tfs_dir);
    tfs_dir = NULL;
}

struct fsck_result tfs_fsck_closed(int repair)
{
    struct fsck_result res;
    ck_assert_ptr_null(tfs_fs);
    ck_assert_ptr_null(tfs_db);
    open_store();
    ck_assert_int_eq(fs_fsck(tfs_db, repair, NULL, NULL, &res), 0);
    ck_assert_int_eq(kv_close(tfs_db), 0);
    tfs_db = NULL;
    return res;
}

struct fsck_result tfs_fsck_reopen(int repair)
{
    tfs_close();
    struct fsck_result res = tfs_fsck_closed(repair);
    tfs_open();
    return res;
}

uint64_t tfs_mkfile(uint64_t parent, const char *name)
{
    struct fs_entry e;
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, parent, name, S_IFREG | 0644, 0, &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    return e.ino;
}

uint64_t tfs_mkdir(uint64_t parent, const char *name)
{
    struct fs_entry e;
    ck_assert_int_eq(fs_mkdir(tfs_fs, &tfs_root, parent, name, 0755, &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    return e.ino;
}

uint64_t tfs_lookup(uint64_t parent, const char *name)
{
    struct fs_entry e;
    if (fs_lookup(tfs_fs, parent, name, &e) != 0)
        return 0;
    fs_forget(tfs_fs, e.ino, 1);
    return e.ino;
}

struct stat tfs_getattr(uint64_t ino)
{
    struct stat st;
    ck_assert_int_eq(fs_getattr(tfs_fs, ino, &st), 0);
    return st;
}

size_t tfs_count_keys(char type, uint64_t ino)
{
    uint8_t p[9];
    size_t n = 0, kl;
    kv_iter *it = kv_iter_new(tfs_db, NULL);
    ck_assert_ptr_nonnull(it);
    p[0] = (uint8_t)type;
    for (int i = 0; i < 8; i++)
        p[1 + i] = (uint8_t)(ino >> (56 - 8 * i));
    for (kv_iter_seek(it, p, 9); kv_iter_valid(it); kv_iter_next(it)) {
        const void *k = kv_iter_key(it, &kl);
        if (kl < 9 || memcmp(k, p, 9) != 0)
            break;
        n++;
    }
    kv_iter_free(it);
    return n;
}
