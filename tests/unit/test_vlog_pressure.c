/* test_vlog_pressure.c - back-pressure from value-log garbage (vlog_throttle): on a small disk a
 * writer that outruns the GC waits for it instead of failing with ENOSPC while most of the disk
 * is garbage; a disk full of live data still answers ENOSPC promptly (no writer hangs), keeps
 * every acknowledged value, and takes writes again once deletions have been collected. */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkutil.h"
#include "db/db_impl.h"
#include "db/vlog.h"
#include "fault_env.h"
#include "kvcore/kv.h"
#include "testutil.h"

#define SEGMENT (256u * 1024)
#define VALUE (64u * 1024)

/* Value-log store on fe: 256 KiB segments (low water: 1 MiB), small memtable and tables, no
 * compression (the values are random anyway), the automatic reserve. */
static void pressure_opts(kv_options *o, fault_env *fe)
{
    kv_options_init(o);
    o->env = fault_env_env(fe);
    o->value_log_threshold = 1024;
    o->value_log_segment_bytes = SEGMENT;
    o->memtable_bytes = 256 * 1024;
    o->target_file_size = 64 * 1024;
    o->compression = 0;
    o->log_fn = tu_quiet_log;
}

/* A new store (pressure_opts) in a temp dir tagged `tag`, through a fault env seeded with seed
 * whose disk has `room` bytes free once the store is open. */
static kv_db *open_small(const char *tag, uint64_t seed, uint64_t room, fault_env **fe, char **dir,
                         kv_options *o)
{
    *fe = fault_env_new(seed);
    ck_assert_ptr_nonnull(*fe);
    *dir = tu_ck_tempdir(tag);
    pressure_opts(o, *fe);
    kv_db *db = tu_ck_open(*dir, o);
    fault_env_set_space_limit(*fe, room);
    return db;
}

static void key_of(char *k, int i)
{
    snprintf(k, 16, "key%06d", i);
}

/* Puts VALUE random bytes (seeded by i and ver) under key i; returns kv_put's result and adds
 * the pair to m when it succeeded. */
static int put_value(kv_db *db, int i, int ver, tu_model *m)
{
    static char v[VALUE];
    char k[16];
    key_of(k, i);
    tu_rng r;
    tu_rng_init(&r, (uint64_t)i * 7919u + (uint64_t)ver * 104729u + 1);
    tu_rng_fill(&r, v, sizeof(v));
    int rc = kv_put(db, k, strlen(k), v, sizeof(v), 0);
    if (rc == 0)
        tu_model_put(m, k, strlen(k), v, sizeof(v));
    return rc;
}

static void check_all(kv_db *db, const tu_model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        void *v;
        size_t vl;
        int rc = kv_get(db, NULL, m->e[i].key, m->e[i].klen, &v, &vl);
        ck_assert_msg(rc == 0, "get %.*s: %s", (int)m->e[i].klen, m->e[i].key, kv_strerror(rc));
        ck_assert_uint_eq(vl, m->e[i].vlen);
        ck_assert(memcmp(v, m->e[i].val, vl) == 0);
        kv_free(v);
    }
}

/* Checks db against m, and again after a reopen (on the same small disk); then closes it and
 * frees everything. */
static void finish(kv_db *db, char **dir, const kv_options *o, tu_model *m, fault_env *fe)
{
    check_all(db, m);
    ck_assert_int_eq(kv_close(db), 0);
    db = tu_ck_open(*dir, o);
    check_all(db, m);
    ck_assert_int_eq(kv_close(db), 0);
    fault_env_set_space_limit(fe, UINT64_MAX);
    tu_model_free(m);
    tu_ck_rmtempdir(dir);
    fault_env_free(fe);
}

/* 16 keys of 64 KiB (1 MiB live) overwritten until 64 MiB were written, on a disk with 8 MiB
 * free: the GC must reclaim seven eighths of everything written. Without back-pressure the
 * writer outruns it and a put fails with KV_ENOSPC as soon as the 8 MiB are written (checked by
 * turning vlog_throttle off: round 7, key 15, three runs out of three). */
START_TEST(test_vlog_pressure_writers_wait_for_gc_instead_of_failing)
{
    fault_env *fe;
    char *dir;
    kv_options o;
    kv_db *db = open_small("vlog_pressure", 1, 8u << 20, &fe, &dir, &o);
    tu_model m;
    tu_model_init(&m);
    const int keys = 16, rounds = 64;
    kv_stats st;
    for (int round = 0; round < rounds; round++)
        for (int i = 0; i < keys; i++) {
            int rc = put_value(db, i, round, &m);
            if (rc != 0)
                ck_assert_int_eq(kv_get_stats(db, &st), 0);
            ck_assert_msg(rc == 0,
                          "round %d, key %d: %s (value log %" PRIu64 " bytes, %" PRIu64
                          " garbage, %" PRIu64 " segments held; %" PRIu64 " stalls, %" PRIu64
                          " GC runs, %" PRIu64 " deleted; low-space mode %" PRIu64 ")",
                          round, i, kv_strerror(rc), st.vlog_bytes, st.vlog_garbage_bytes,
                          st.vlog_held_segments, st.vlog_stalls, st.vlog_gc_runs,
                          st.vlog_gc_segments_deleted, st.low_space);
        }
    ck_assert_int_eq(kv_get_stats(db, &st), 0);
    ck_assert_uint_gt(st.vlog_stalls, 0);
    ck_assert_uint_gt(st.vlog_stall_micros, 0);
    ck_assert_uint_ge(st.stall_micros, st.vlog_stall_micros);
    ck_assert_uint_gt(st.vlog_gc_segments_deleted, 0);
    ck_assert_uint_eq(st.low_space, 0); /* the reserve was never needed */
    finish(db, &dir, &o, &m, fe);
}
END_TEST

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A disk filled with live values: nothing to reclaim, so the writer must not wait for GC
 * forever - the put that does not fit fails with KV_ENOSPC, every earlier value stays
 * readable, and after deleting half the keys (KV_WRITE_RESERVE, as kvfs's unlink does) the
 * engine collects their segments and takes new values again. */
START_TEST(test_vlog_pressure_full_of_live_data_fails_promptly_and_recovers)
{
    fault_env *fe;
    char *dir;
    kv_options o;
    const uint64_t room = 6u << 20;
    kv_db *db = open_small("vlog_pressure_full", 2, room, &fe, &dir, &o);
    tu_model m;
    tu_model_init(&m);
    int n = 0, rc = 0;
    double t0 = now_seconds();
    while ((rc = put_value(db, n, 0, &m)) == 0) {
        n++;
        ck_assert_int_lt(n, (int)(room / VALUE) + 1); /* more than fits: not counted */
    }
    double took = now_seconds() - t0;
    ck_assert_msg(rc == KV_ENOSPC, "the put that does not fit: %s", kv_strerror(rc));
    /* Half the room at least holds live values (the rest: the low-water mark, the active
     * segment, WAL and tables). */
    ck_assert_int_ge((uint64_t)n * VALUE, room / 2);
    /* A generous bound that only a writer stuck waiting for GC would break. */
    ck_assert_msg(took < 60, "filling took %.1f s", took);
    check_all(db, &m);

    /* Free half of it. */
    for (int i = 0; i < n; i += 2) {
        char k[16];
        key_of(k, i);
        ck_assert_int_eq(kv_delete(db, k, strlen(k), KV_WRITE_RESERVE), 0);
        tu_model_delete(&m, k, strlen(k));
    }
    /* New values fit again once the deletions are flushed, compacted and their segments
     * collected (the reserve's monitor and the GC do that in the background). */
    t0 = now_seconds();
    int added = 0;
    while (added < 4 && now_seconds() - t0 < 60) {
        rc = put_value(db, n + added, 1, &m);
        if (rc == 0) {
            added++;
            continue;
        }
        ck_assert_msg(rc == KV_ENOSPC, "put after the deletions: %s", kv_strerror(rc));
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_assert_msg(added == 4, "only %d new values fitted within 60 s of the deletions", added);
    finish(db, &dir, &o, &m, fe);
}
END_TEST

static Suite *vlog_pressure_suite(void)
{
    Suite *s = suite_create("vlog_pressure");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_vlog_pressure_writers_wait_for_gc_instead_of_failing);
    tcase_add_test(tc, test_vlog_pressure_full_of_live_data_fails_promptly_and_recovers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(vlog_pressure_suite());
}
