/* test_open_errors.c - kv_open refuses what it must without touching the disk, and corruption
 * in a table is reported (KV_ECORRUPT, logged with file and offset), never returned as data. */
#include <check.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/version.h"
#include "db/wal.h"
#include "fault_env.h"
#include "kvcore/kv.h"
#include "testutil.h"
#include "util/coding.h"
#include "util/env.h"

static char *tdir;

static void setup(void)
{
    tdir = tu_tempdir("open_errors");
    ck_assert_ptr_nonnull(tdir);
}

static void teardown(void)
{
    tu_rmtree(tdir);
    free(tdir);
}

/* ---- a logger that keeps every line ---------------------------------------------------------- */

typedef struct log_capture {
    pthread_mutex_t mu;
    char *text; /* every message, one per line */
    size_t len, cap;
} log_capture;

static void capture_log(void *ctx, int level, const char *msg)
{
    log_capture *lc = ctx;
    (void)level;
    pthread_mutex_lock(&lc->mu);
    size_t n = strlen(msg);
    if (lc->len + n + 2 > lc->cap) {
        lc->cap = (lc->len + n + 2) * 2;
        lc->text = realloc(lc->text, lc->cap);
        if (!lc->text)
            abort();
    }
    memcpy(lc->text + lc->len, msg, n);
    lc->len += n;
    lc->text[lc->len++] = '\n';
    lc->text[lc->len] = '\0';
    pthread_mutex_unlock(&lc->mu);
}

static void capture_init(log_capture *lc)
{
    memset(lc, 0, sizeof(*lc));
    pthread_mutex_init(&lc->mu, NULL);
    lc->text = calloc(1, 1);
    lc->cap = 1;
}

static void capture_free(log_capture *lc)
{
    free(lc->text);
    pthread_mutex_destroy(&lc->mu);
}

/* 1 if some single logged line contains both a and b. */
static int capture_has_line_with(log_capture *lc, const char *a, const char *b)
{
    int found = 0;
    pthread_mutex_lock(&lc->mu);
    const char *line = lc->text;
    while (*line && !found) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char *copy = strndup(line, n);
        found = strstr(copy, a) && strstr(copy, b);
        free(copy);
        line += n + (end ? 1 : 0);
    }
    pthread_mutex_unlock(&lc->mu);
    return found;
}

/* ---- helpers --------------------------------------------------------------------------------- */

static void opts_default(kv_options *o)
{
    kv_options_init(o);
    o->create_if_missing = 1;
    o->compression = 0;
    o->block_size = 1024;
    o->block_cache_bytes = 0;
}

/* Creates a store in dir with n keys "key%05d" -> value "val-%05d-" padded to 100 bytes, all
 * flushed into tables, and closes it. */
static void make_store(const char *dir, int n)
{
    kv_options o;
    opts_default(&o);
    kv_db *db;
    ck_assert_int_eq(kv_open(dir, &o, &db), 0);
    for (int i = 0; i < n; i++) {
        char k[16], v[101];
        snprintf(k, sizeof(k), "key%05d", i);
        memset(v, 'x', 100);
        snprintf(v, sizeof(v), "val-%05d-", i);
        v[strlen(v)] = 'x';
        ck_assert_int_eq(kv_put(db, k, 8, v, 100, 0), 0);
    }
    ck_assert_int_eq(kv_flush(db), 0);
    ck_assert_int_eq(kv_close(db), 0);
}

static void write_file(const char *dir, const char *name, const char *data)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(data, f);
    fclose(f);
}

/* ---- tests -------------------------------------------------------------------------------------
 */

START_TEST(test_open_of_a_foreign_directory_is_einval_and_changes_nothing)
{
    write_file(tdir, "notes.txt", "my thesis, do not touch\n");
    write_file(tdir, "photo.jpg", "\xff\xd8\xff\xe0 not really a jpeg");
    char sub[4096];
    snprintf(sub, sizeof(sub), "%s/subdir", tdir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    char *before = tu_dir_fingerprint(tdir);
    ck_assert_ptr_nonnull(before);
    kv_options o;
    opts_default(&o);
    kv_db *db = (kv_db *)1;
    ck_assert_int_eq(kv_open(tdir, &o, &db), KV_EINVAL);
    ck_assert_ptr_null(db);
    char *after = tu_dir_fingerprint(tdir);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
}
END_TEST

START_TEST(test_open_of_a_newer_format_is_eversion_and_changes_nothing)
{
    make_store(tdir, 50);
    /* Append to the live manifest an edit a newer kvcore would write: a higher format version.
     * It is a well-formed, checksummed record, so only the version check can refuse it. */
    char cur[4096];
    snprintf(cur, sizeof(cur), "%s/CURRENT", tdir);
    FILE *f = fopen(cur, "rb");
    ck_assert_ptr_nonnull(f);
    char name[256] = {0};
    ck_assert_ptr_nonnull(fgets(name, sizeof(name), f));
    fclose(f);
    name[strcspn(name, "\r\n")] = '\0';
    ck_assert_msg(strncmp(name, "MANIFEST-", 9) == 0, "CURRENT names '%s'", name);
    char mpath[4096];
    snprintf(mpath, sizeof(mpath), "%s/%s", tdir, name);
    struct stat st;
    ck_assert_int_eq(stat(mpath, &st), 0);

    version_edit e;
    version_edit_init(&e);
    e.has_format_version = 1;
    e.format_version = VERSION_FORMAT_CURRENT + 1;
    buf b;
    buf_init(&b);
    ck_assert_int_eq(version_edit_encode(&e, &b), 0);
    env_file *ef;
    const kv_env *px = env_posix();
    ck_assert_int_eq(px->open_appendable(px, mpath, &ef), 0);
    wal_writer *w;
    ck_assert_int_eq(wal_writer_new(ef, (uint64_t)st.st_size, &w), 0);
    ck_assert_int_eq(wal_add_record(w, buf_slice(&b)), 0);
    ck_assert_int_eq(wal_writer_sync(w), 0);
    ck_assert_int_eq(wal_writer_close(w), 0);
    buf_free(&b);
    version_edit_free(&e);

    char *before = tu_dir_fingerprint(tdir);
    kv_options o;
    opts_default(&o);
    kv_db *db = (kv_db *)1;
    ck_assert_int_eq(kv_open(tdir, &o, &db), KV_EVERSION);
    ck_assert_ptr_null(db);
    char *after = tu_dir_fingerprint(tdir);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
}
END_TEST

START_TEST(test_open_with_a_missing_table_is_ecorrupt_and_changes_nothing)
{
    make_store(tdir, 200);
    char sst[256];
    ck_assert_msg(tu_dir_find_suffix(tdir, ".sst", sst, sizeof(sst)), "flush wrote no .sst");
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", tdir, sst);
    ck_assert_int_eq(unlink(p), 0);
    char *before = tu_dir_fingerprint(tdir);
    log_capture lc;
    capture_init(&lc);
    kv_options o;
    opts_default(&o);
    o.log_fn = capture_log;
    o.log_ctx = &lc;
    kv_db *db = (kv_db *)1;
    ck_assert_int_eq(kv_open(tdir, &o, &db), KV_ECORRUPT);
    ck_assert_ptr_null(db);
    char *after = tu_dir_fingerprint(tdir);
    ck_assert_str_eq(before, after);
    /* The message names the missing file. */
    char num[32];
    snprintf(num, sizeof(num), "%.*s", (int)strcspn(sst, "."), sst);
    ck_assert_msg(capture_has_line_with(&lc, num, num), "no log line names %s; log:\n%s", sst,
                  lc.text);
    capture_free(&lc);
    free(before);
    free(after);
}
END_TEST

START_TEST(test_second_open_is_ebusy_until_the_first_closes)
{
    kv_options o;
    opts_default(&o);
    kv_db *a, *b = (kv_db *)1;
    ck_assert_int_eq(kv_open(tdir, &o, &a), 0);
    ck_assert_int_eq(kv_put(a, "k", 1, "v", 1, 0), 0);
    ck_assert_int_eq(kv_open(tdir, &o, &b), KV_EBUSY);
    ck_assert_ptr_null(b);
    /* The failed open disturbed nothing: the first handle still works. */
    ck_assert_int_eq(kv_put(a, "k2", 2, "v2", 2, KV_WRITE_SYNC), 0);
    ck_assert_int_eq(kv_close(a), 0);
    ck_assert_int_eq(kv_open(tdir, &o, &b), 0);
    void *v;
    size_t vl;
    ck_assert_int_eq(kv_get(b, NULL, "k2", 2, &v, &vl), 0);
    ck_assert_uint_eq(vl, 2);
    kv_free(v);
    ck_assert_int_eq(kv_close(b), 0);
}
END_TEST

START_TEST(test_error_if_exists_is_eexist)
{
    make_store(tdir, 10);
    kv_options o;
    opts_default(&o);
    o.error_if_exists = 1;
    kv_db *db = (kv_db *)1;
    ck_assert_int_eq(kv_open(tdir, &o, &db), KV_EEXIST);
    ck_assert_ptr_null(db);
}
END_TEST

START_TEST(test_corrupt_table_block_gives_ecorrupt_and_logs_file_and_offset)
{
    make_store(tdir, 1000);
    char sst[256];
    ck_assert(tu_dir_find_suffix(tdir, ".sst", sst, sizeof(sst)));
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", tdir, sst);
    /* Byte 20 lies inside the first data block, which holds the smallest keys. */
    fault_env *fe = fault_env_new(1);
    ck_assert_int_eq(fault_env_flip_bit(fe, p, 20, 3), 0);
    fault_env_free(fe);

    log_capture lc;
    capture_init(&lc);
    kv_options o;
    opts_default(&o);
    o.paranoid_checks = 1;
    o.log_fn = capture_log;
    o.log_ctx = &lc;
    o.log_level = KV_LOG_DEBUG;
    kv_db *db;
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    void *v = (void *)1;
    size_t vl;
    int rc = kv_get(db, NULL, "key00000", 8, &v, &vl);
    ck_assert_msg(rc == KV_ECORRUPT, "kv_get over a corrupt block returned %s", kv_strerror(rc));
    ck_assert_ptr_null(v);
    char num[32];
    snprintf(num, sizeof(num), "%.*s", (int)strcspn(sst, "."), sst);
    ck_assert_msg(capture_has_line_with(&lc, num, "offset"),
                  "no log line names %s and an offset; log:\n%s", sst, lc.text);
    /* A scan stops with KV_ECORRUPT and never yields a wrong value before it stops. */
    kv_iter *it = kv_iter_new(db, NULL);
    ck_assert_ptr_nonnull(it);
    int seen = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl;
        const char *k = kv_iter_key(it, &kl);
        const char *val = kv_iter_value(it, &vl);
        ck_assert_uint_eq(kl, 8);
        ck_assert_uint_eq(vl, 100);
        ck_assert(memcmp(val + 4, k + 3, 5) == 0);
        seen++;
    }
    ck_assert_int_eq(kv_iter_status(it), KV_ECORRUPT);
    ck_assert_int_lt(seen, 1000);
    kv_iter_free(it);
    /* Keys in intact blocks are still served. */
    ck_assert_int_eq(kv_get(db, NULL, "key00999", 8, &v, &vl), 0);
    ck_assert(memcmp(v, "val-00999-", 10) == 0);
    kv_free(v);
    ck_assert_int_eq(kv_close(db), 0);
    /* kv_check finds the damage offline. */
    uint64_t problems = 0;
    ck_assert_int_eq(kv_check(tdir, &o, NULL, NULL, &problems), KV_ECORRUPT);
    ck_assert_uint_ge(problems, 1);
    capture_free(&lc);
}
END_TEST

/* Every answer over a damaged table is the right one or an error; never a wrong value and never
 * "not found" for a key that exists. */
static void check_all_answers(kv_db *db, int n)
{
    for (int i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof(k), "key%05d", i);
        void *v;
        size_t vl;
        int rc = kv_get(db, NULL, k, 8, &v, &vl);
        if (rc == KV_ECORRUPT || rc == KV_EIO)
            continue;
        ck_assert_msg(rc == 0, "kv_get(%s) over a damaged table returned %s", k, kv_strerror(rc));
        char want[16];
        snprintf(want, sizeof(want), "val-%05d-", i);
        ck_assert_msg(vl == 100 && memcmp(v, want, 10) == 0, "kv_get(%s) returned a wrong value",
                      k);
        for (size_t j = 10; j < 100; j++)
            ck_assert_msg(((char *)v)[j] == 'x', "kv_get(%s): wrong byte %zu", k, j);
        kv_free(v);
    }
    kv_iter *it = kv_iter_new(db, NULL);
    ck_assert_ptr_nonnull(it);
    int expect = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const char *k = kv_iter_key(it, &kl);
        const char *val = kv_iter_value(it, &vl);
        char want[16];
        snprintf(want, sizeof(want), "key%05d", expect);
        ck_assert_msg(kl == 8 && memcmp(k, want, 8) == 0,
                      "scan over a damaged table yielded %.*s, expected %s", (int)kl, k, want);
        ck_assert_msg(vl == 100 && memcmp(val + 4, k + 3, 5) == 0,
                      "scan over a damaged table yielded a wrong value at %s", want);
        expect++;
    }
    if (expect < n)
        ck_assert_msg(kv_iter_status(it) != 0, "scan ended early at %d/%d without an error", expect,
                      n);
    kv_iter_free(it);
}

START_TEST(test_random_bit_flips_in_a_table_never_yield_wrong_answers)
{
    const int n = 600;
    make_store(tdir, n);
    char sst[256];
    ck_assert(tu_dir_find_suffix(tdir, ".sst", sst, sizeof(sst)));
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", tdir, sst);
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("open_errors bit flips"));
    fault_env *fe = fault_env_new(1);
    kv_options o;
    opts_default(&o);
    o.paranoid_checks = 1;
    o.log_fn = capture_log;
    log_capture lc;
    capture_init(&lc);
    o.log_ctx = &lc;
    for (int trial = 0; trial < 40; trial++) {
        uint64_t off = tu_rng_below(&rng, (uint64_t)st.st_size);
        int bit = (int)tu_rng_below(&rng, 8);
        ck_assert_int_eq(fault_env_flip_bit(fe, p, off, bit), 0);
        kv_db *db;
        int rc = kv_open(tdir, &o, &db);
        if (rc == 0) {
            check_all_answers(db, n);
            ck_assert_int_eq(kv_close(db), 0);
        } else {
            ck_assert_msg(rc == KV_ECORRUPT, "open after a flip at %llu returned %s",
                          (unsigned long long)off, kv_strerror(rc));
        }
        ck_assert_int_eq(fault_env_flip_bit(fe, p, off, bit), 0); /* undo */
    }
    fault_env_free(fe);
    capture_free(&lc);
}
END_TEST

/* Reads the name CURRENT points at into name (size n). */
static void read_current(const char *dir, char *name, size_t n)
{
    char cur[4096];
    snprintf(cur, sizeof(cur), "%s/CURRENT", dir);
    FILE *f = fopen(cur, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(name, (int)n, f));
    fclose(f);
    name[strcspn(name, "\r\n")] = '\0';
}

START_TEST(test_read_only_open_serves_reads_and_writes_nothing)
{
    make_store(tdir, 100);
    char *before = tu_dir_fingerprint(tdir);
    kv_options o;
    opts_default(&o);
    o.read_only = 1;
    kv_db *db;
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    void *v;
    size_t vl;
    ck_assert_int_eq(kv_get(db, NULL, "key00042", 8, &v, &vl), 0);
    ck_assert(vl == 100 && memcmp(v, "val-00042-", 10) == 0);
    kv_free(v);
    ck_assert_int_ne(kv_put(db, "new", 3, "x", 1, 0), 0);
    ck_assert_int_eq(kv_close(db), 0);
    char *after = tu_dir_fingerprint(tdir);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
}
END_TEST

START_TEST(test_destroy_removes_the_store_but_not_foreign_files)
{
    make_store(tdir, 100);
    write_file(tdir, "keep-me.txt", "not kvcore's");
    kv_options o;
    opts_default(&o);
    ck_assert_int_eq(kv_destroy(tdir, &o), 0);
    char *left = tu_dir_fingerprint(tdir);
    ck_assert_ptr_nonnull(left);
    ck_assert_msg(strncmp(left, "keep-me.txt ", 12) == 0 && strchr(left, '\n')[1] == '\0',
                  "after kv_destroy the directory holds:\n%s", left);
    free(left);
    /* Without foreign files the directory itself goes. */
    char sub[4096];
    snprintf(sub, sizeof(sub), "%s/store2", tdir);
    make_store(sub, 10);
    ck_assert_int_eq(kv_destroy(sub, &o), 0);
    struct stat st;
    ck_assert_int_ne(stat(sub, &st), 0);
}
END_TEST

START_TEST(test_garbage_current_is_ecorrupt_and_changes_nothing)
{
    make_store(tdir, 20);
    write_file(tdir, "CURRENT", "\x01\x02garbage\n");
    char *before = tu_dir_fingerprint(tdir);
    kv_options o;
    opts_default(&o);
    kv_db *db = (kv_db *)1;
    ck_assert_int_eq(kv_open(tdir, &o, &db), KV_ECORRUPT);
    ck_assert_ptr_null(db);
    char *after = tu_dir_fingerprint(tdir);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
}
END_TEST

/* A damaged record in the middle of the manifest, with good records after it, is corruption,
 * not a torn tail: opening must fail rather than come up with an older set of tables. */
START_TEST(test_manifest_damaged_before_its_end_is_ecorrupt)
{
    kv_options o;
    opts_default(&o);
    kv_db *db;
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < 50; i++) {
            char k[16];
            snprintf(k, sizeof(k), "r%d-%03d", round, i);
            ck_assert_int_eq(kv_put(db, k, strlen(k), "value", 5, 0), 0);
        }
        ck_assert_int_eq(kv_flush(db), 0); /* one version edit per flush */
    }
    ck_assert_int_eq(kv_close(db), 0);
    char name[256], p[4096];
    read_current(tdir, name, sizeof(name));
    snprintf(p, sizeof(p), "%s/%s", tdir, name);
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_gt(st.st_size, 100);
    fault_env *fe = fault_env_new(1);
    ck_assert_int_eq(fault_env_flip_bit(fe, p, (uint64_t)st.st_size / 2, 2), 0);
    fault_env_free(fe);
    char *before = tu_dir_fingerprint(tdir);
    db = (kv_db *)1;
    int rc = kv_open(tdir, &o, &db);
    if (rc == 0) {
        kv_stats ks;
        kv_get_stats(db, &ks);
        kv_close(db);
        char *now = tu_dir_fingerprint(tdir);
        int files_before = 0, files_now = 0;
        for (const char *c = before; *c; c++)
            files_before += *c == '\n';
        for (const char *c = now; *c; c++)
            files_now += *c == '\n';
        free(now);
        ck_abort_msg("opened a store whose manifest is damaged in the middle (%" PRIu64
                     " tables left in L0 of 8 flushed; %d files in the directory before, %d "
                     "after)",
                     ks.level_files[0], files_before, files_now);
    }
    ck_assert_int_eq(rc, KV_ECORRUPT);
    char *after = tu_dir_fingerprint(tdir);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
}
END_TEST

/* A damaged record in the middle of a WAL, with good synced records after it, is corruption: the
 * records after it were acknowledged as durable. With paranoid_checks, opening must fail (as
 * LevelDB's paranoid mode does) rather than silently drop them. */
START_TEST(test_wal_damaged_before_its_end_is_ecorrupt_with_paranoid_checks)
{
    kv_options o;
    opts_default(&o);
    o.memtable_bytes = 4 << 20; /* everything stays in the WAL */
    o.paranoid_checks = 1;
    kv_db *db;
    ck_assert_int_eq(kv_open(tdir, &o, &db), 0);
    for (int i = 0; i < 300; i++) {
        char k[16], v[64];
        snprintf(k, sizeof(k), "w%04d", i);
        memset(v, 'a' + i % 26, sizeof(v));
        ck_assert_int_eq(kv_put(db, k, strlen(k), v, sizeof(v), KV_WRITE_SYNC), 0);
    }
    ck_assert_int_eq(kv_close(db), 0);
    char logname[256], p[4096];
    ck_assert(tu_dir_find_suffix(tdir, ".log", logname, sizeof(logname)));
    snprintf(p, sizeof(p), "%s/%s", tdir, logname);
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_gt(st.st_size, 300 * 64);
    fault_env *fe = fault_env_new(1);
    ck_assert_int_eq(fault_env_flip_bit(fe, p, (uint64_t)st.st_size / 3, 5), 0);
    fault_env_free(fe);
    char *before = tu_dir_fingerprint(tdir);
    db = (kv_db *)1;
    int rc = kv_open(tdir, &o, &db);
    if (rc == 0) {
        int present = 0;
        for (int i = 0; i < 300; i++) {
            char k[16];
            snprintf(k, sizeof(k), "w%04d", i);
            void *v;
            size_t vl;
            if (kv_get(db, NULL, k, strlen(k), &v, &vl) == 0) {
                present++;
                kv_free(v);
            }
        }
        kv_close(db);
        ck_abort_msg("opened a store whose WAL is damaged a third of the way in: %d of 300 "
                     "synced writes survive, the rest were dropped silently",
                     present);
    }
    ck_assert_int_eq(rc, KV_ECORRUPT);
    char *after = tu_dir_fingerprint(tdir);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
}
END_TEST

static Suite *open_errors_suite(void)
{
    Suite *s = suite_create("open_errors");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_open_of_a_foreign_directory_is_einval_and_changes_nothing);
    tcase_add_test(tc, test_open_of_a_newer_format_is_eversion_and_changes_nothing);
    tcase_add_test(tc, test_open_with_a_missing_table_is_ecorrupt_and_changes_nothing);
    tcase_add_test(tc, test_second_open_is_ebusy_until_the_first_closes);
    tcase_add_test(tc, test_error_if_exists_is_eexist);
    tcase_add_test(tc, test_corrupt_table_block_gives_ecorrupt_and_logs_file_and_offset);
    tcase_add_test(tc, test_random_bit_flips_in_a_table_never_yield_wrong_answers);
    tcase_add_test(tc, test_read_only_open_serves_reads_and_writes_nothing);
    tcase_add_test(tc, test_destroy_removes_the_store_but_not_foreign_files);
    tcase_add_test(tc, test_garbage_current_is_ecorrupt_and_changes_nothing);
    tcase_add_test(tc, test_manifest_damaged_before_its_end_is_ecorrupt);
    tcase_add_test(tc, test_wal_damaged_before_its_end_is_ecorrupt_with_paranoid_checks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(open_errors_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
