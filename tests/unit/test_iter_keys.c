/* test_iter_keys.c - kv_iter_new_keys: a scan that gives keys and value lengths without reading
 * the value log (kvfs deletes and sizes chunks with it), in both directions, and that a damaged
 * record does not stop it while it stops a reading scan. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkutil.h"
#include "kvcore/kv.h"
#include "testutil.h"

#define BIG 65536
#define NKEYS 8

static char *dir;
static kv_db *db;

static void setup(void)
{
    kv_options o;
    dir = tu_tempdir("iter_keys");
    ck_assert_ptr_nonnull(dir);
    kv_options_init(&o);
    o.value_log_threshold = 4096;
    o.log_fn = tu_quiet_log;
    ck_assert_int_eq(kv_open(dir, &o, &db), 0);
}

static void teardown(void)
{
    if (db)
        kv_close(db);
    db = NULL;
    tu_rmtree(dir);
    free(dir);
}

/* Key i holds a value of size_of(i) bytes: even keys in the value log, odd keys inline. */
static size_t size_of(int i)
{
    return i % 2 == 0 ? BIG - (size_t)i : 10 + (size_t)i;
}

static void put_all(void)
{
    char *v = malloc(BIG);
    tu_rng rng;
    ck_assert_ptr_nonnull(v);
    tu_rng_init(&rng, 5);
    for (int i = 0; i < NKEYS; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%02d", i);
        tu_rng_fill(&rng, v, BIG); /* random: stored raw, one record per value */
        ck_assert_int_eq(kv_put(db, k, 3, v, size_of(i), 0), 0);
    }
    ck_assert_int_eq(kv_delete(db, "k03", 3, 0), 0);
    free(v);
}

START_TEST(test_iter_keys_gives_keys_and_value_sizes_both_ways)
{
    put_all();
    kv_iter *it = kv_iter_new_keys(db, NULL);
    ck_assert_ptr_nonnull(it);
    int seen = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), seen++) {
        size_t kl;
        const char *k = kv_iter_key(it, &kl);
        int i = (k[1] - '0') * 10 + (k[2] - '0');
        ck_assert_int_ne(i, 3);
        ck_assert_uint_eq(kv_iter_value_size(it), size_of(i));
    }
    ck_assert_int_eq(kv_iter_status(it), 0);
    ck_assert_int_eq(seen, NKEYS - 1);
    kv_iter_seek_last(it);
    ck_assert(kv_iter_valid(it));
    ck_assert_uint_eq(kv_iter_value_size(it), size_of(NKEYS - 1));
    kv_iter_prev(it);
    ck_assert(kv_iter_valid(it));
    ck_assert_uint_eq(kv_iter_value_size(it), size_of(NKEYS - 2));
    kv_iter_free(it);
    /* A reading iterator gives the same sizes through both calls. */
    it = kv_iter_new(db, NULL);
    ck_assert_ptr_nonnull(it);
    kv_iter_seek(it, "k04", 3);
    ck_assert(kv_iter_valid(it));
    size_t vl;
    kv_iter_value(it, &vl);
    ck_assert_uint_eq(vl, size_of(4));
    ck_assert_uint_eq(kv_iter_value_size(it), size_of(4));
    kv_iter_free(it);
}
END_TEST

START_TEST(test_iter_keys_does_not_read_a_damaged_record_that_stops_a_reading_scan)
{
    char name[256], path[4096];
    put_all();
    ck_assert_int_eq(kv_sync(db), 0);
    /* Damage the value log every 4 KiB: every 64 KiB record gets hit. */
    ck_assert_int_eq(tu_dir_find_suffix(dir, ".vlog", name, sizeof name), 1);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    off_t end = lseek(fd, 0, SEEK_END);
    for (off_t off = 4096; off < end; off += 4096) {
        char c;
        ck_assert_int_eq(pread(fd, &c, 1, off), 1);
        c = (char)~c;
        ck_assert_int_eq(pwrite(fd, &c, 1, off), 1);
    }
    close(fd);

    kv_iter *it = kv_iter_new(db, NULL);
    ck_assert_ptr_nonnull(it);
    kv_iter_seek_first(it);
    ck_assert(!kv_iter_valid(it));
    ck_assert_int_eq(kv_iter_status(it), KV_ECORRUPT);
    kv_iter_free(it);

    it = kv_iter_new_keys(db, NULL);
    ck_assert_ptr_nonnull(it);
    int seen = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it))
        seen++;
    ck_assert_int_eq(kv_iter_status(it), 0);
    ck_assert_int_eq(seen, NKEYS - 1);
    kv_iter_free(it);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("iter_keys");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_iter_keys_gives_keys_and_value_sizes_both_ways);
    tcase_add_test(tc, test_iter_keys_does_not_read_a_damaged_record_that_stops_a_reading_scan);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
