/* checkutil.c - Check helpers shared by the unit suites (checkutil.h). */
#include "checkutil.h"

#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

char *tu_ck_tempdir(const char *tag)
{
    char *dir = tu_tempdir(tag);
    ck_assert_msg(dir != NULL, "tu_tempdir(%s) failed", tag);
    return dir;
}

void tu_ck_rmtempdir(char **dir)
{
    if (!*dir)
        return;
    tu_rmtree(*dir);
    free(*dir);
    *dir = NULL;
}

void tu_ck_dir_unchanged(const char *dir, char *before)
{
    ck_assert_ptr_nonnull(before);
    char *after = tu_dir_fingerprint(dir);
    ck_assert_ptr_nonnull(after);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
}

void tu_ck_xor_byte(const char *path, long off, int mask)
{
    FILE *f = fopen(path, "r+b");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, off, off < 0 ? SEEK_END : SEEK_SET), 0);
    long at = ftell(f);
    int c = fgetc(f);
    ck_assert_msg(c != EOF, "%s has no byte at offset %ld", path, off);
    ck_assert_int_eq(fseek(f, at, SEEK_SET), 0);
    ck_assert_int_ne(fputc(c ^ mask, f), EOF);
    ck_assert_int_eq(fclose(f), 0);
}

kv_db *tu_ck_open(const char *dir, const kv_options *o)
{
    kv_db *db = NULL;
    int rc = kv_open(dir, o, &db);
    ck_assert_msg(rc == 0, "kv_open: %s", kv_strerror(rc));
    ck_assert_ptr_nonnull(db);
    return db;
}

/* Asserts that the iterator's entry is entry i of m; dir names the scan in the message. */
static void expect_entry(kv_iter *it, const tu_model *m, size_t i, const char *dir)
{
    size_t kl, vl;
    const void *k = kv_iter_key(it, &kl);
    const void *v = kv_iter_value(it, &vl);
    ck_assert_msg(tu_keycmp(k, kl, m->e[i].key, m->e[i].klen) == 0, "%s key %zu differs", dir, i);
    ck_assert_uint_eq(vl, m->e[i].vlen);
    ck_assert_mem_eq(v, m->e[i].val, vl);
}

void tu_ck_scan_forward(kv_db *db, const kv_snapshot *snap, const tu_model *m)
{
    kv_iter *it = kv_iter_new(db, snap);
    ck_assert_ptr_nonnull(it);
    size_t i = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), i++) {
        ck_assert_uint_lt(i, m->n);
        expect_entry(it, m, i, "forward");
    }
    ck_assert_int_eq(kv_iter_status(it), 0);
    ck_assert_uint_eq(i, m->n);
    kv_iter_free(it);
}

void tu_ck_scan_backward(kv_db *db, const kv_snapshot *snap, const tu_model *m)
{
    kv_iter *it = kv_iter_new(db, snap);
    ck_assert_ptr_nonnull(it);
    size_t i = m->n;
    for (kv_iter_seek_last(it); kv_iter_valid(it); kv_iter_prev(it)) {
        ck_assert_uint_gt(i, 0);
        i--;
        expect_entry(it, m, i, "backward");
    }
    ck_assert_int_eq(kv_iter_status(it), 0);
    ck_assert_uint_eq(i, 0);
    kv_iter_free(it);
}
