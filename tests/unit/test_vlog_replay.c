/* test_vlog_replay.c - WAL replay when a value-log record a WAL record points to is bad: damage
 * if the WAL's sync markers prove that record was synced (refused under paranoid_checks), an
 * unsynced tail otherwise (dropped with what follows, every earlier record kept). */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkutil.h"
#include "kvcore/kv.h"
#include "testutil.h"

#define NKEYS 8
#define VSIZE 8192

static void quiet_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level <= KV_LOG_WARN && getenv("KV_TEST_VERBOSE"))
        fprintf(stderr, "kvcore: %s\n", msg);
}

static void opts(kv_options *o, int paranoid)
{
    kv_options_init(o);
    o->value_log_threshold = 1024;
    o->memtable_bytes = 8 << 20; /* nothing is flushed: every value is reached through the WAL */
    o->compression = 0;          /* the segment holds the value bytes as written */
    o->paranoid_checks = paranoid;
    o->log_fn = quiet_log;
}

static void value_of(char *v, int i)
{
    for (int j = 0; j < VSIZE; j++)
        v[j] = (char)('A' + (i * 7 + j / 97) % 26);
}

/* Writes NKEYS values, each synced, and closes the store cleanly. */
static void fill(const char *dir)
{
    kv_options o;
    opts(&o, 1);
    kv_db *db = tu_ck_open(dir, &o);
    char k[16], v[VSIZE];
    for (int i = 0; i < NKEYS; i++) {
        snprintf(k, sizeof(k), "key%02d", i);
        value_of(v, i);
        ck_assert_int_eq(kv_put(db, k, strlen(k), v, VSIZE, KV_WRITE_SYNC), 0);
    }
    kv_close(db);
}

/* The path of the store's only value-log segment (caller frees). */
static char *segment_path(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ls %s | grep '\\.vlog$'", dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char name[64] = "", more[64];
    ck_assert_ptr_nonnull(fgets(name, sizeof(name), p));
    ck_assert_msg(fgets(more, sizeof(more), p) == NULL, "expected one segment");
    pclose(p);
    name[strcspn(name, "\n")] = 0;
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    return path;
}

/* Flips one byte inside the value of the record at index `which` (values are stored in order,
 * each as VSIZE plain bytes: the record holding key `which` is found by its contents). */
static void damage_value(const char *dir, int which)
{
    char *path = segment_path(dir);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    char *buf = malloc((size_t)st.st_size);
    ck_assert_int_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    char v[VSIZE];
    value_of(v, which);
    char *at = memmem(buf, (size_t)st.st_size, v, VSIZE);
    ck_assert_ptr_nonnull(at);
    off_t off = (at - buf) + VSIZE / 2;
    char c = (char)(buf[off] ^ 0x5a);
    ck_assert_int_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
    free(buf);
    free(path);
}

START_TEST(test_vlog_replay_synced_record_with_damaged_value_is_refused)
{
    char *dir = tu_ck_tempdir("vlog_replay");
    fill(dir);
    damage_value(dir, 3);
    kv_options o;
    opts(&o, 1);
    kv_db *db = NULL;
    ck_assert_int_eq(kv_open(dir, &o, &db), KV_ECORRUPT);
    ck_assert_ptr_null(db);
    tu_ck_rmtempdir(&dir);
}
END_TEST

START_TEST(test_vlog_replay_without_paranoid_checks_keeps_every_record_before_the_damage)
{
    char *dir = tu_ck_tempdir("vlog_replay");
    fill(dir);
    damage_value(dir, 5);
    kv_options o;
    opts(&o, 0);
    kv_db *db = tu_ck_open(dir, &o);
    char k[16], v[VSIZE];
    for (int i = 0; i < NKEYS; i++) {
        snprintf(k, sizeof(k), "key%02d", i);
        void *got = NULL;
        size_t n = 0;
        int rc = kv_get(db, NULL, k, strlen(k), &got, &n);
        if (i < 5) {
            ck_assert_int_eq(rc, 0);
            value_of(v, i);
            ck_assert_uint_eq(n, VSIZE);
            ck_assert(memcmp(got, v, VSIZE) == 0);
            kv_free(got);
        } else {
            ck_assert_int_eq(rc, KV_ENOTFOUND); /* never wrong bytes */
        }
    }
    kv_close(db);
    tu_ck_rmtempdir(&dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vlog_replay");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_vlog_replay_synced_record_with_damaged_value_is_refused);
    tcase_add_test(tc,
                   test_vlog_replay_without_paranoid_checks_keeps_every_record_before_the_damage);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
