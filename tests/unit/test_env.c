/* test_env.c - the POSIX env: reads, appends, renames, listings, locks and errno mapping. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkutil.h"
#include "kvcore/kv.h"
#include "testutil.h"
#include "util/env.h"

static char *dir;
static const kv_env *env;

static void setup(void)
{
    env = env_posix();
    dir = tu_ck_tempdir("env");
}

static void teardown(void)
{
    tu_ck_rmtempdir(&dir);
}

static char *path_in(const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

START_TEST(test_env_append_then_pread_returns_the_bytes)
{
    char *p = path_in("f");
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, p, &f), 0);
    ck_assert_int_eq(env_append(f, "hello ", 6), 0);
    ck_assert_int_eq(env_append(f, "world", 5), 0);
    ck_assert_int_eq(env_sync(f), 0);
    ck_assert_int_eq(env_close(f), 0);

    uint64_t size;
    ck_assert_int_eq(env->file_size(env, p, &size), 0);
    ck_assert_uint_eq(size, 11);

    ck_assert_int_eq(env->open_readable(env, p, &f), 0);
    char b[32];
    size_t n;
    ck_assert_int_eq(env_pread(f, b, 5, 6, &n), 0);
    ck_assert_uint_eq(n, 5);
    ck_assert_mem_eq(b, "world", 5);
    /* A read past the end is short, not an error. */
    ck_assert_int_eq(env_pread(f, b, sizeof b, 3, &n), 0);
    ck_assert_uint_eq(n, 8);
    ck_assert_mem_eq(b, "lo world", 8);
    ck_assert_int_eq(env_pread(f, b, sizeof b, 100, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(env_close(f), 0);
    free(p);
}
END_TEST

START_TEST(test_env_open_writable_truncates_and_appendable_continues)
{
    char *p = path_in("f");
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, p, &f), 0);
    ck_assert_int_eq(env_append(f, "0123456789", 10), 0);
    ck_assert_int_eq(env_close(f), 0);
    ck_assert_int_eq(env->open_appendable(env, p, &f), 0);
    ck_assert_int_eq(env_append(f, "ab", 2), 0);
    ck_assert_int_eq(env_close(f), 0);
    char *data;
    size_t len;
    ck_assert_int_eq(env_read_file(env, p, &data, &len), 0);
    ck_assert_uint_eq(len, 12);
    ck_assert_mem_eq(data, "0123456789ab", 12);
    free(data);

    ck_assert_int_eq(env->open_writable(env, p, &f), 0);
    ck_assert_int_eq(env_close(f), 0);
    uint64_t size = 99;
    ck_assert_int_eq(env->file_size(env, p, &size), 0);
    ck_assert_uint_eq(size, 0);
    free(p);
}
END_TEST

START_TEST(test_env_missing_file_maps_to_notfound)
{
    char *p = path_in("absent");
    env_file *f = (env_file *)p;
    ck_assert_int_eq(env->open_readable(env, p, &f), KV_ENOTFOUND);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(env->open_appendable(env, p, &f), KV_ENOTFOUND);
    uint64_t size;
    ck_assert_int_eq(env->file_size(env, p, &size), KV_ENOTFOUND);
    ck_assert_int_eq(env->unlink(env, p), KV_ENOTFOUND);
    char *q = path_in("other");
    ck_assert_int_eq(env->rename(env, p, q), KV_ENOTFOUND);
    char **names;
    size_t n;
    ck_assert_int_eq(env->list_dir(env, p, &names, &n), KV_ENOTFOUND);
    ck_assert_ptr_null(names);
    char *data = (char *)p;
    size_t len = 7;
    ck_assert_int_eq(env_read_file(env, p, &data, &len), KV_ENOTFOUND);
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    free(q);
    free(p);
}
END_TEST

START_TEST(test_env_other_errors_map_to_eio)
{
    /* Opening a directory for writing fails with EISDIR, which is not a class of its own. */
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, dir, &f), KV_EIO);
    /* A file where a directory is expected: ENOTDIR. */
    char *p = path_in("plain");
    ck_assert_int_eq(env->open_writable(env, p, &f), 0);
    ck_assert_int_eq(env_close(f), 0);
    char *q = path_in("plain/sub");
    ck_assert_int_eq(env->mkdir(env, q), KV_EIO);
    ck_assert_int_eq(env->mkdir(env, p), KV_EIO); /* exists, but is not a directory */
    free(q);
    free(p);
}
END_TEST

START_TEST(test_env_rename_replaces_target)
{
    char *a = path_in("a"), *b = path_in("b");
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, a, &f), 0);
    ck_assert_int_eq(env_append(f, "new", 3), 0);
    ck_assert_int_eq(env_close(f), 0);
    ck_assert_int_eq(env->open_writable(env, b, &f), 0);
    ck_assert_int_eq(env_append(f, "old!", 4), 0);
    ck_assert_int_eq(env_close(f), 0);
    ck_assert_int_eq(env->rename(env, a, b), 0);
    ck_assert_int_eq(env->sync_dir(env, dir), 0);
    char *data;
    size_t len;
    ck_assert_int_eq(env_read_file(env, b, &data, &len), 0);
    ck_assert_uint_eq(len, 3);
    ck_assert_str_eq(data, "new"); /* NUL-terminated for convenience */
    free(data);
    uint64_t size;
    ck_assert_int_eq(env->file_size(env, a, &size), KV_ENOTFOUND);
    free(a);
    free(b);
}
END_TEST

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

START_TEST(test_env_list_dir_names_every_entry_once)
{
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "file%03d", i);
        char *p = path_in(name);
        env_file *f;
        ck_assert_int_eq(env->open_writable(env, p, &f), 0);
        ck_assert_int_eq(env_close(f), 0);
        free(p);
    }
    char *sub = path_in("subdir");
    ck_assert_int_eq(env->mkdir(env, sub), 0);
    ck_assert_int_eq(env->mkdir(env, sub), 0); /* already a directory: fine */
    struct stat st;
    ck_assert_int_eq(stat(sub, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0700);

    char **names;
    size_t n;
    ck_assert_int_eq(env->list_dir(env, dir, &names, &n), 0);
    ck_assert_uint_eq(n, 101);
    qsort(names, n, sizeof *names, cmp_str);
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "file%03d", i);
        ck_assert_str_eq(names[i], name);
    }
    ck_assert_str_eq(names[100], "subdir");
    env_free_names(names, n);
    env_free_names(NULL, 0);

    ck_assert_int_eq(env->rmdir(env, sub), 0);
    ck_assert_int_eq(env->rmdir(env, sub), KV_ENOTFOUND);
    free(sub);
}
END_TEST

START_TEST(test_env_lock_twice_is_busy_until_unlocked)
{
    char *p = path_in("LOCK");
    env_lock *l1, *l2 = (env_lock *)p;
    ck_assert_int_eq(env->lock(env, p, &l1), 0);
    ck_assert_int_eq(access(p, F_OK), 0); /* created */
    ck_assert_int_eq(env->lock(env, p, &l2), KV_EBUSY);
    ck_assert_ptr_null(l2);

    /* Another process is refused too. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        env_lock *l3;
        _exit(env->lock(env, p, &l3) == KV_EBUSY ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    ck_assert_int_eq(env->unlock(l1), 0);
    ck_assert_int_eq(env->lock(env, p, &l2), 0);
    ck_assert_int_eq(env->unlock(l2), 0);
    free(p);
}
END_TEST

START_TEST(test_env_write_file_atomic_replaces_whole_file)
{
    ck_assert_int_eq(env_write_file_atomic(env, dir, "CURRENT", "MANIFEST-000001\n", 16), 0);
    ck_assert_int_eq(env_write_file_atomic(env, dir, "CURRENT", "MANIFEST-2\n", 11), 0);
    char *p = path_in("CURRENT");
    char *data;
    size_t len;
    ck_assert_int_eq(env_read_file(env, p, &data, &len), 0);
    ck_assert_uint_eq(len, 11);
    ck_assert_mem_eq(data, "MANIFEST-2\n", 11);
    free(data);
    free(p);
    /* No temp file is left behind. */
    char **names;
    size_t n;
    ck_assert_int_eq(env->list_dir(env, dir, &names, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(names[0], "CURRENT");
    env_free_names(names, n);
}
END_TEST

START_TEST(test_env_write_file_atomic_into_missing_dir_fails_cleanly)
{
    char *missing = path_in("nodir");
    ck_assert_int_eq(env_write_file_atomic(env, missing, "CURRENT", "x", 1), KV_ENOTFOUND);
    free(missing);
}
END_TEST

START_TEST(test_env_read_file_handles_large_and_empty_files)
{
    size_t big = 300 * 1024 + 17;
    char *src = malloc(big);
    ck_assert_ptr_nonnull(src);
    for (size_t i = 0; i < big; i++)
        src[i] = (char)(i * 31 + (i >> 9));
    ck_assert_int_eq(env_write_file_atomic(env, dir, "big", src, big), 0);
    ck_assert_int_eq(env_write_file_atomic(env, dir, "empty", "", 0), 0);
    char *p = path_in("big"), *q = path_in("empty");
    char *data;
    size_t len;
    ck_assert_int_eq(env_read_file(env, p, &data, &len), 0);
    ck_assert_uint_eq(len, big);
    ck_assert(memcmp(data, src, big) == 0);
    free(data);
    ck_assert_int_eq(env_read_file(env, q, &data, &len), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_nonnull(data);
    free(data);
    free(p);
    free(q);
    free(src);
}
END_TEST

START_TEST(test_env_clock_is_monotonic_and_sleep_waits)
{
    uint64_t t0 = env->now_micros(env);
    env->sleep_micros(env, 2000);
    uint64_t t1 = env->now_micros(env);
    ck_assert_uint_ge(t1 - t0, 2000);
}
END_TEST

static Suite *env_suite(void)
{
    Suite *s = suite_create("env");
    TCase *tc = tcase_create("posix");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_env_append_then_pread_returns_the_bytes);
    tcase_add_test(tc, test_env_open_writable_truncates_and_appendable_continues);
    tcase_add_test(tc, test_env_missing_file_maps_to_notfound);
    tcase_add_test(tc, test_env_other_errors_map_to_eio);
    tcase_add_test(tc, test_env_rename_replaces_target);
    tcase_add_test(tc, test_env_list_dir_names_every_entry_once);
    tcase_add_test(tc, test_env_lock_twice_is_busy_until_unlocked);
    tcase_add_test(tc, test_env_write_file_atomic_replaces_whole_file);
    tcase_add_test(tc, test_env_write_file_atomic_into_missing_dir_fails_cleanly);
    tcase_add_test(tc, test_env_read_file_handles_large_and_empty_files);
    tcase_add_test(tc, test_env_clock_is_monotonic_and_sleep_waits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(env_suite());
}
