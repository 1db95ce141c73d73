/* test_compaction.c - picking, running and installing compactions (leveled and tiered). */
#include <check.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/filename.h"
#include "db/memtable.h"
#include "db/table_cache.h"
#include "db/version.h"
#include "fault_env.h"
#include "testutil.h"
#include "util/env.h"
#include "util/ikey.h"

typedef struct fixture {
    char *dir;
    const kv_env *env;
    kv_options opts;
    kv_logger log;
    table_cache *tc;
    pthread_mutex_t mu;
    version_set *vs;
    uint64_t seq;   /* last sequence used */
    tu_model model; /* newest value of each live key */
    compaction_stats total;
} fixture;

/* A fresh store in a temp dir whose I/O goes through env (NULL: POSIX). */
static void fx_init_env(fixture *fx, const char *tag, int style, const kv_env *env)
{
    memset(fx, 0, sizeof *fx);
    fx->dir = tu_tempdir(tag);
    ck_assert_ptr_nonnull(fx->dir);
    fx->env = env ? env : env_posix();
    kv_options_init(&fx->opts);
    fx->opts.compaction_style = style;
    fx->opts.compression = 0;
    fx->opts.block_size = 1024;
    fx->opts.target_file_size = 8 << 10;
    fx->opts.level1_bytes = 32 << 10;
    fx->opts.memtable_bytes = 16 << 10;
    fx->opts.log_level = KV_LOG_WARN;
    kv_logger_init(&fx->log, &fx->opts);
    pthread_mutex_init(&fx->mu, NULL);
    fx->tc = table_cache_new(fx->dir, fx->env, 100, NULL, &fx->log, 1);
    ck_assert_int_eq(
        version_set_new(fx->dir, &fx->opts, fx->env, fx->tc, &fx->log, &fx->mu, &fx->vs), 0);
    ck_assert_int_eq(version_set_create_new(fx->vs), 0);
    tu_model_init(&fx->model);
}

static void fx_init(fixture *fx, const char *tag, int style)
{
    fx_init_env(fx, tag, style, NULL);
}

static void fx_done(fixture *fx)
{
    version_set_free(fx->vs);
    table_cache_free(fx->tc);
    pthread_mutex_destroy(&fx->mu);
    tu_model_free(&fx->model);
    tu_rmtree(fx->dir);
    free(fx->dir);
}

/* A batch of writes that becomes one L0 table. */
typedef struct flush_buf {
    memtable *m;
} flush_buf;

static void fb_begin(flush_buf *fb)
{
    fb->m = memtable_new();
    ck_assert_ptr_nonnull(fb->m);
}

static void fb_put(fixture *fx, flush_buf *fb, const char *key, const char *val)
{
    ck_assert_int_eq(
        memtable_add(fb->m, ++fx->seq, IKEY_TYPE_VALUE, slice_from_str(key), slice_from_str(val)),
        0);
    tu_model_put(&fx->model, key, strlen(key), val, strlen(val));
}

static void fb_del(fixture *fx, flush_buf *fb, const char *key)
{
    ck_assert_int_eq(
        memtable_add(fb->m, ++fx->seq, IKEY_TYPE_DELETION, slice_from_str(key), slice_make("", 0)),
        0);
    tu_model_delete(&fx->model, key, strlen(key));
}

/* Writes the memtable to L0 through table_build and log_and_apply. */
static void fb_flush(fixture *fx, flush_buf *fb)
{
    iter *it = memtable_iter_new(fb->m);
    file_meta meta;
    pthread_mutex_lock(&fx->mu);
    uint64_t number = version_set_new_file_number(fx->vs);
    pthread_mutex_unlock(&fx->mu);
    ck_assert_int_eq(table_build(fx->dir, fx->env, &fx->opts, fx->tc, it, number, &meta), 0);
    iter_free(it);
    memtable_unref(fb->m);
    ck_assert_uint_gt(meta.size, 0);
    ck_assert_uint_le(meta.largest_seq, fx->seq);
    version_edit e;
    version_edit_init(&e);
    ck_assert_int_eq(version_edit_add_file_meta(&e, 0, &meta), 0);
    buf_free(&meta.smallest);
    buf_free(&meta.largest);
    pthread_mutex_lock(&fx->mu);
    version_set_set_last_sequence(fx->vs, fx->seq);
    ck_assert_int_eq(version_set_log_and_apply(fx->vs, &e), 0);
    pthread_mutex_unlock(&fx->mu);
    version_edit_free(&e);
}

/* Runs c (picked with mu held) to completion and frees it. */
static int run_and_install(fixture *fx, compaction *c, uint64_t smallest_snapshot)
{
    compaction_stats st;
    int rc = compaction_run(c, smallest_snapshot, NULL, &st);
    pthread_mutex_lock(&fx->mu);
    if (rc == 0)
        rc = compaction_install(c);
    compaction_free(c);
    pthread_mutex_unlock(&fx->mu);
    fx->total.bytes_read += st.bytes_read;
    fx->total.bytes_written += st.bytes_written;
    fx->total.entries_dropped += st.entries_dropped;
    return rc;
}

/* Compacts until nothing is needed; returns the number of compactions run. */
static int compact_until_done(fixture *fx, uint64_t smallest_snapshot)
{
    int n = 0;
    for (;; n++) {
        ck_assert_int_lt(n, 1000);
        pthread_mutex_lock(&fx->mu);
        compaction *c = version_set_pick_compaction(fx->vs);
        int needs = version_set_needs_compaction(fx->vs);
        pthread_mutex_unlock(&fx->mu);
        ck_assert_int_eq(needs, c != NULL); /* the score and the picker agree */
        if (c == NULL)
            return n;
        ck_assert_int_eq(run_and_install(fx, c, smallest_snapshot), 0);
    }
}

/* Manual compaction of every level into the last one. */
static void compact_all_down(fixture *fx, uint64_t smallest_snapshot)
{
    for (int l = 0; l < KV_MAX_LEVELS - 1; l++) {
        pthread_mutex_lock(&fx->mu);
        compaction *c = version_set_compact_range(fx->vs, l, NULL, NULL);
        pthread_mutex_unlock(&fx->mu);
        if (c)
            ck_assert_int_eq(run_and_install(fx, c, smallest_snapshot), 0);
    }
}

/* Levels >= 1: sorted, disjoint, and no user key in two tables. */
static void check_levels(fixture *fx)
{
    version *v = version_set_current(fx->vs);
    for (int l = 1; l < KV_MAX_LEVELS; l++) {
        for (int i = 0; i < v->nfiles[l]; i++) {
            file_meta *f = v->files[l][i];
            ck_assert_int_le(ikey_compare(buf_slice(&f->smallest), buf_slice(&f->largest)), 0);
            if (i == 0)
                continue;
            file_meta *p = v->files[l][i - 1];
            ck_assert_msg(slice_compare(ikey_user_key(buf_slice(&p->largest)),
                                        ikey_user_key(buf_slice(&f->smallest))) < 0,
                          "level %d: tables %" PRIu64 " and %" PRIu64 " overlap or share a key", l,
                          p->number, f->number);
        }
    }
}

/* Every live key reads its newest value; every key ever written and now deleted reads as
 * deleted or absent. */
static void check_model(fixture *fx, int nkeys, const char *fmt)
{
    version *v = version_set_current(fx->vs);
    buf val;
    buf_init(&val);
    for (int i = 0; i < nkeys; i++) {
        char key[32];
        snprintf(key, sizeof key, fmt, i);
        buf_clear(&val);
        int rc = version_get(v, slice_from_str(key), fx->seq, &val);
        const tu_entry *e = tu_model_get(&fx->model, key, strlen(key));
        if (e) {
            ck_assert_msg(rc == MEMTABLE_FOUND, "%s: rc %d, want found", key, rc);
            ck_assert_msg(val.len == e->vlen && memcmp(val.data, e->val, e->vlen) == 0,
                          "%s: wrong value %.*s, want %s", key, (int)val.len, val.data, e->val);
        } else {
            ck_assert_msg(rc == MEMTABLE_DELETED || rc == MEMTABLE_ABSENT, "%s: rc %d", key, rc);
        }
    }
    buf_free(&val);
}

typedef struct scan_result {
    int entries;
    int deletions;
    int duplicate_user_keys;
} scan_result;

/* Walks every entry of every table in the current version, merged. */
static scan_result scan_all(fixture *fx)
{
    scan_result r = {0, 0, 0};
    iter **its = NULL;
    int n = 0;
    ck_assert_int_eq(version_add_iterators(version_set_current(fx->vs), 0, &its, &n), 0);
    iter *m = merger_new(its, n);
    free(its);
    ck_assert_ptr_nonnull(m);
    buf prev;
    buf_init(&prev);
    for (iter_seek_first(m); iter_valid(m); iter_next(m)) {
        ikey_parsed p;
        ck_assert(ikey_parse(iter_key(m), &p));
        if (r.entries > 0 && slice_equal(p.user_key, buf_slice(&prev)))
            r.duplicate_user_keys++;
        r.entries++;
        r.deletions += p.type == IKEY_TYPE_DELETION;
        buf_clear(&prev);
        buf_append(&prev, p.user_key.data, p.user_key.size);
    }
    ck_assert_int_eq(iter_status(m), 0);
    iter_free(m);
    buf_free(&prev);
    return r;
}

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    size_t sl = strlen(suffix);
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        n += l >= sl && strcmp(de->d_name + l - sl, suffix) == 0;
    }
    closedir(d);
    return n;
}

/* A random workload of `flushes` tables over nkeys keys. */
static void random_flush(fixture *fx, tu_rng *rng, int ops, int nkeys)
{
    flush_buf fb;
    fb_begin(&fb);
    for (int i = 0; i < ops; i++) {
        char key[32], val[160];
        snprintf(key, sizeof key, "key%06d", (int)tu_rng_below(rng, (uint64_t)nkeys));
        if (tu_rng_chance(rng, 1, 5)) {
            fb_del(fx, &fb, key);
        } else {
            int len = snprintf(val, sizeof val, "%s@%" PRIu64 ":", key, fx->seq + 1);
            int extra = (int)tu_rng_below(rng, 80);
            for (int j = 0; j < extra; j++)
                val[len + j] = (char)('a' + (int)tu_rng_below(rng, 26));
            val[len + extra] = '\0';
            fb_put(fx, &fb, key, val);
        }
    }
    fb_flush(fx, &fb);
}

START_TEST(test_compaction_leveled_keeps_newest_values_in_disjoint_levels)
{
    fixture fx;
    fx_init(&fx, "cmp-leveled", KV_COMPACTION_LEVELED);
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_compaction_leveled"));
    int deepest = 0;
    for (int round = 0; round < 40; round++) {
        random_flush(&fx, &rng, 300, 3000);
        compact_until_done(&fx, fx.seq);
        check_levels(&fx);
        ck_assert_int_lt(version_set_num_level_files(fx.vs, 0), fx.opts.l0_compaction_trigger);
        for (int l = 1; l < KV_MAX_LEVELS - 1; l++) {
            uint64_t limit = version_max_bytes_for_level(&fx.opts, l);
            ck_assert_uint_le(version_set_num_level_bytes(fx.vs, l), limit);
            if (version_set_num_level_files(fx.vs, l) > 0 && l > deepest)
                deepest = l;
        }
        if (round % 8 == 7)
            check_model(&fx, 3000, "key%06d");
    }
    ck_assert_int_ge(deepest, 2); /* the workload really spans several levels */
    ck_assert_uint_gt(fx.total.entries_dropped, 0);
    ck_assert_uint_gt(fx.total.bytes_written, 0);
    check_model(&fx, 3000, "key%06d");

    /* Everything down to the last level: exactly the live keys remain, tombstones are gone. */
    compact_all_down(&fx, fx.seq);
    check_levels(&fx);
    for (int l = 0; l < KV_MAX_LEVELS - 1; l++)
        ck_assert_int_eq(version_set_num_level_files(fx.vs, l), 0);
    ck_assert_int_gt(version_set_num_level_files(fx.vs, KV_MAX_LEVELS - 1), 1);
    scan_result r = scan_all(&fx);
    ck_assert_int_eq(r.deletions, 0);
    ck_assert_int_eq(r.duplicate_user_keys, 0);
    ck_assert_int_eq(r.entries, (int)fx.model.n);
    check_model(&fx, 3000, "key%06d");

    /* And the result survives a reopen of the version set. */
    version_set_free(fx.vs);
    ck_assert_int_eq(version_set_new(fx.dir, &fx.opts, env_posix(), fx.tc, &fx.log, &fx.mu, &fx.vs),
                     0);
    ck_assert_int_eq(version_set_recover(fx.vs), 0);
    check_model(&fx, 3000, "key%06d");
    fx_done(&fx);
}
END_TEST

START_TEST(test_compaction_snapshot_visible_versions_survive)
{
    fixture fx;
    fx_init(&fx, "cmp-snap", KV_COMPACTION_LEVELED);
    flush_buf fb;
    fb_begin(&fb);
    fb_put(&fx, &fb, "k", "v1"); /* seq 1 */
    fb_put(&fx, &fb, "other", "o");
    fb_flush(&fx, &fb);
    fb_begin(&fb);
    fb_put(&fx, &fb, "k", "v2"); /* seq 3 */
    fb_flush(&fx, &fb);
    fb_begin(&fb);
    fb_del(&fx, &fb, "k"); /* seq 4 */
    fb_flush(&fx, &fb);

    /* A snapshot at seq 1 must still read v1 after a full compaction to the bottom. */
    compact_all_down(&fx, 1);
    version *v = version_set_current(fx.vs);
    buf val;
    buf_init(&val);
    ck_assert_int_eq(version_get(v, slice_from_str("k"), 1, &val), MEMTABLE_FOUND);
    ck_assert_int_eq((int)val.len, 2);
    ck_assert(memcmp(val.data, "v1", 2) == 0);
    buf_clear(&val);
    ck_assert_int_eq(version_get(v, slice_from_str("k"), 4, &val), MEMTABLE_DELETED);
    scan_result r = scan_all(&fx);
    ck_assert_int_eq(r.deletions, 1); /* seq 4 > snapshot 1: the tombstone stays */
    ck_assert_int_eq(r.entries, 4);
    buf_free(&val);
    fx_done(&fx);

    /* The same history with no snapshot older than seq 4: only "other" is left. */
    fx_init(&fx, "cmp-snap2", KV_COMPACTION_LEVELED);
    fb_begin(&fb);
    fb_put(&fx, &fb, "k", "v1");
    fb_put(&fx, &fb, "other", "o");
    fb_flush(&fx, &fb);
    fb_begin(&fb);
    fb_put(&fx, &fb, "k", "v2");
    fb_flush(&fx, &fb);
    fb_begin(&fb);
    fb_del(&fx, &fb, "k");
    fb_flush(&fx, &fb);
    compact_all_down(&fx, fx.seq);
    r = scan_all(&fx);
    ck_assert_int_eq(r.entries, 1);
    ck_assert_int_eq(r.deletions, 0);
    ck_assert_uint_eq(fx.total.entries_dropped, 3);
    buf_init(&val);
    ck_assert_int_eq(version_get(version_set_current(fx.vs), slice_from_str("k"), 1, &val),
                     MEMTABLE_ABSENT);
    buf_free(&val);
    fx_done(&fx);
}
END_TEST

START_TEST(test_compaction_tombstone_kept_while_older_data_lies_below)
{
    fixture fx;
    fx_init(&fx, "cmp-tomb", KV_COMPACTION_LEVELED);
    flush_buf fb;
    fb_begin(&fb);
    fb_put(&fx, &fb, "k", "old");
    fb_put(&fx, &fb, "z", "z");
    fb_flush(&fx, &fb);
    /* Push it to L2. */
    for (int l = 0; l < 2; l++) {
        pthread_mutex_lock(&fx.mu);
        compaction *c = version_set_compact_range(fx.vs, l, NULL, NULL);
        pthread_mutex_unlock(&fx.mu);
        ck_assert_ptr_nonnull(c);
        ck_assert_int_eq(run_and_install(&fx, c, fx.seq), 0);
    }
    ck_assert_int_eq(version_set_num_level_files(fx.vs, 2), 1);

    fb_begin(&fb);
    fb_del(&fx, &fb, "k");
    fb_flush(&fx, &fb);
    pthread_mutex_lock(&fx.mu);
    compaction *c = version_set_compact_range(fx.vs, 0, NULL, NULL);
    pthread_mutex_unlock(&fx.mu);
    ck_assert_int_eq(compaction_output_level(c), 1);
    ck_assert_int_eq(run_and_install(&fx, c, fx.seq), 0);
    /* The tombstone now in L1 still hides the value in L2. */
    scan_result r = scan_all(&fx);
    ck_assert_int_eq(r.deletions, 1);
    buf val;
    buf_init(&val);
    ck_assert_int_eq(version_get(version_set_current(fx.vs), slice_from_str("k"), fx.seq, &val),
                     MEMTABLE_DELETED);

    /* Merged into L2, the bottom for "k", the tombstone and the value both go. */
    pthread_mutex_lock(&fx.mu);
    c = version_set_compact_range(fx.vs, 1, NULL, NULL);
    pthread_mutex_unlock(&fx.mu);
    ck_assert_int_eq(run_and_install(&fx, c, fx.seq), 0);
    r = scan_all(&fx);
    ck_assert_int_eq(r.deletions, 0);
    ck_assert_int_eq(r.entries, 1);
    ck_assert_int_eq(version_get(version_set_current(fx.vs), slice_from_str("k"), fx.seq, &val),
                     MEMTABLE_ABSENT);
    buf_free(&val);
    fx_done(&fx);
}
END_TEST

START_TEST(test_compaction_single_l0_table_is_moved_trivially)
{
    fixture fx;
    fx_init(&fx, "cmp-trivial", KV_COMPACTION_LEVELED);
    fx.opts.l0_compaction_trigger = 1;
    flush_buf fb;
    fb_begin(&fb);
    fb_put(&fx, &fb, "a", "1");
    fb_put(&fx, &fb, "b", "2");
    fb_flush(&fx, &fb);
    uint64_t number = version_set_current(fx.vs)->files[0][0]->number;
    pthread_mutex_lock(&fx.mu);
    compaction *c = version_set_pick_compaction(fx.vs);
    pthread_mutex_unlock(&fx.mu);
    ck_assert_ptr_nonnull(c);
    ck_assert(compaction_is_trivial_move(c));
    ck_assert_int_eq(compaction_level(c), 0);
    ck_assert_int_eq(compaction_output_level(c), 1);
    pthread_mutex_lock(&fx.mu);
    ck_assert_int_eq(compaction_install(c), 0); /* no run needed for a move */
    compaction_free(c);
    pthread_mutex_unlock(&fx.mu);
    version *v = version_set_current(fx.vs);
    ck_assert_int_eq(v->nfiles[0], 0);
    ck_assert_int_eq(v->nfiles[1], 1);
    ck_assert_uint_eq(v->files[1][0]->number, number);
    check_model(&fx, 0, "%d");
    buf val;
    buf_init(&val);
    ck_assert_int_eq(version_get(v, slice_from_str("b"), fx.seq, &val), MEMTABLE_FOUND);
    buf_free(&val);

    /* A manual compaction is never a move: it must rewrite (and so purge) the data. */
    pthread_mutex_lock(&fx.mu);
    c = version_set_compact_range(fx.vs, 1, NULL, NULL);
    pthread_mutex_unlock(&fx.mu);
    ck_assert(!compaction_is_trivial_move(c));
    ck_assert_int_eq(run_and_install(&fx, c, fx.seq), 0);
    ck_assert_uint_ne(version_set_current(fx.vs)->files[2][0]->number, number);
    fx_done(&fx);
}
END_TEST

START_TEST(test_compaction_user_key_never_straddles_outputs)
{
    fixture fx;
    fx_init(&fx, "cmp-straddle", KV_COMPACTION_LEVELED);
    char val[600];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    /* 100 versions of "hot" (60 KB, far above the 8 KB target), all kept by snapshot 0. */
    for (int t = 0; t < 4; t++) {
        flush_buf fb;
        fb_begin(&fb);
        for (int i = 0; i < 25; i++)
            fb_put(&fx, &fb, "hot", val);
        for (int i = 0; i < 40; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%02d-%d", i, t);
            fb_put(&fx, &fb, key, val);
        }
        fb_flush(&fx, &fb);
    }
    compact_all_down(&fx, 0);
    version *v = version_set_current(fx.vs);
    int last = KV_MAX_LEVELS - 1;
    ck_assert_int_gt(v->nfiles[last], 3); /* outputs were cut */
    check_levels(&fx);
    int holding_hot = 0;
    for (int i = 0; i < v->nfiles[last]; i++) {
        slice lo = ikey_user_key(buf_slice(&v->files[last][i]->smallest));
        slice hi = ikey_user_key(buf_slice(&v->files[last][i]->largest));
        holding_hot += slice_compare(lo, slice_from_str("hot")) <= 0 &&
                       slice_compare(hi, slice_from_str("hot")) >= 0;
    }
    ck_assert_int_eq(holding_hot, 1);
    scan_result r = scan_all(&fx);
    ck_assert_int_eq(r.entries, 4 * 65);
    fx_done(&fx);
}
END_TEST

START_TEST(test_compaction_shutdown_abandons_and_deletes_outputs)
{
    fixture fx;
    fx_init(&fx, "cmp-shutdown", KV_COMPACTION_LEVELED);
    tu_rng rng;
    tu_rng_init(&rng, 7);
    for (int i = 0; i < 4; i++)
        random_flush(&fx, &rng, 200, 500);
    int ssts = count_files(fx.dir, ".sst");
    ck_assert_int_eq(ssts, 4);
    pthread_mutex_lock(&fx.mu);
    compaction *c = version_set_pick_compaction(fx.vs);
    pthread_mutex_unlock(&fx.mu);
    ck_assert_ptr_nonnull(c);
    volatile int stop = 1;
    compaction_stats st;
    ck_assert_int_eq(compaction_run(c, fx.seq, &stop, &st), KV_ECLOSED);
    ck_assert_int_eq(count_files(fx.dir, ".sst"), ssts);
    ck_assert_int_eq(count_files(fx.dir, ".tmp"), 0);
    pthread_mutex_lock(&fx.mu);
    compaction_free(c);
    uint64_t *live = NULL;
    size_t n = 0;
    ck_assert_int_eq(version_set_live_files(fx.vs, &live, &n), 0);
    ck_assert_uint_eq(n, 4); /* no pending output left behind */
    free(live);
    pthread_mutex_unlock(&fx.mu);
    ck_assert_int_eq(version_set_num_level_files(fx.vs, 0), 4);
    check_model(&fx, 500, "key%06d");
    fx_done(&fx);
}
END_TEST

START_TEST(test_compaction_tiered_merges_similar_runs_and_keeps_newest)
{
    fixture fx;
    fx_init(&fx, "cmp-tiered", KV_COMPACTION_TIERED);
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_compaction_tiered"));
    int compactions = 0, max_runs = 0;
    for (int round = 0; round < 60; round++) {
        random_flush(&fx, &rng, 100 + (int)tu_rng_below(&rng, 100), 2000);
        compactions += compact_until_done(&fx, fx.seq);
        int runs = version_set_num_level_files(fx.vs, 0);
        if (runs > max_runs)
            max_runs = runs;
        ck_assert_int_lt(runs, fx.opts.l0_slowdown_trigger);
        for (int l = 1; l < KV_MAX_LEVELS; l++)
            ck_assert_int_eq(version_set_num_level_files(fx.vs, l), 0);
        /* L0 stays newest first by largest_seq. */
        version *v = version_set_current(fx.vs);
        for (int i = 1; i < v->nfiles[0]; i++)
            ck_assert_uint_ge(v->files[0][i - 1]->largest_seq, v->files[0][i]->largest_seq);
        if (round % 10 == 9)
            check_model(&fx, 2000, "key%06d");
    }
    ck_assert_int_gt(compactions, 5);
    ck_assert_int_ge(max_runs, 4);
    ck_assert_uint_gt(fx.total.entries_dropped, 0);
    check_model(&fx, 2000, "key%06d");
    /* Each merge rewrote a window of runs; tiered writes far less than leveled would. */
    ck_assert_uint_gt(fx.total.bytes_written, 0);
    fx_done(&fx);
}
END_TEST

START_TEST(test_compaction_tiered_window_keeps_its_place_among_newer_runs)
{
    fixture fx;
    fx_init(&fx, "cmp-tiered-order", KV_COMPACTION_TIERED);
    fx.opts.memtable_bytes = 1; /* similarity by size ratio only */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int r = 0; r < 4; r++) { /* four old runs of ~20 KB, each setting "k" */
        flush_buf fb;
        fb_begin(&fb);
        char v[16];
        snprintf(v, sizeof v, "old%d", r);
        fb_put(&fx, &fb, "k", v);
        for (int i = 0; i < 10; i++) {
            char key[16];
            snprintf(key, sizeof key, "pad%d-%d", r, i);
            fb_put(&fx, &fb, key, big);
        }
        fb_flush(&fx, &fb);
    }
    flush_buf fb; /* and one tiny newest run */
    fb_begin(&fb);
    fb_put(&fx, &fb, "k", "newest");
    fb_flush(&fx, &fb);

    pthread_mutex_lock(&fx.mu);
    compaction *c = version_set_pick_compaction(fx.vs);
    pthread_mutex_unlock(&fx.mu);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(compaction_level(c), 0);
    ck_assert_int_eq(compaction_output_level(c), 0);
    ck_assert(!compaction_is_trivial_move(c));
    ck_assert_int_eq(run_and_install(&fx, c, fx.seq), 0);
    version *v = version_set_current(fx.vs);
    ck_assert_int_eq(v->nfiles[0], 2);
    /* The merged run has the highest file number but older data: it must read second. */
    ck_assert_uint_gt(v->files[0][1]->number, v->files[0][0]->number);
    buf val;
    buf_init(&val);
    ck_assert_int_eq(version_get(v, slice_from_str("k"), fx.seq, &val), MEMTABLE_FOUND);
    ck_assert_int_eq((int)val.len, 6);
    ck_assert(memcmp(val.data, "newest", 6) == 0);
    buf_free(&val);
    /* The older run's shadowed "k" values were dropped. */
    ck_assert_uint_eq(fx.total.entries_dropped, 3);

    /* Order survives recovery too. */
    version_set_free(fx.vs);
    ck_assert_int_eq(version_set_new(fx.dir, &fx.opts, env_posix(), fx.tc, &fx.log, &fx.mu, &fx.vs),
                     0);
    ck_assert_int_eq(version_set_recover(fx.vs), 0);
    check_model(&fx, 0, "%d");
    buf_init(&val);
    ck_assert_int_eq(version_get(version_set_current(fx.vs), slice_from_str("k"), fx.seq, &val),
                     MEMTABLE_FOUND);
    ck_assert(memcmp(val.data, "newest", 6) == 0);
    buf_free(&val);
    fx_done(&fx);
}
END_TEST

START_TEST(test_table_build_of_an_empty_memtable_writes_nothing)
{
    fixture fx;
    fx_init(&fx, "cmp-empty", KV_COMPACTION_LEVELED);
    memtable *m = memtable_new();
    iter *it = memtable_iter_new(m);
    file_meta meta;
    ck_assert_int_eq(table_build(fx.dir, env_posix(), &fx.opts, fx.tc, it, 9, &meta), 0);
    ck_assert_uint_eq(meta.size, 0);
    ck_assert_int_eq(count_files(fx.dir, ".sst"), 0);
    ck_assert_int_eq(count_files(fx.dir, ".tmp"), 0);
    iter_free(it);
    memtable_unref(m);
    fx_done(&fx);
}
END_TEST

/* ---- Bounded headroom ------------------------------------------------------------------- */

#define HR_KEYS 2000
#define HR_STRIDE 40 /* each L0 table of hr_setup updates every HR_STRIDE-th key */

/* Closes the version set and its table cache (before a simulated crash). */
static void fx_close_vs(fixture *fx)
{
    version_set_free(fx->vs);
    table_cache_free(fx->tc);
    fx->vs = NULL;
    fx->tc = NULL;
}

/* Opens the version set again from CURRENT and the manifest. */
static void fx_open_vs(fixture *fx)
{
    fx->tc = table_cache_new(fx->dir, fx->env, 100, NULL, &fx->log, 1);
    ck_assert_int_eq(
        version_set_new(fx->dir, &fx->opts, fx->env, fx->tc, &fx->log, &fx->mu, &fx->vs), 0);
    ck_assert_int_eq(version_set_recover(fx->vs), 0);
}

static void hr_put(fixture *fx, flush_buf *fb, int i, int ver)
{
    char key[32], val[200];
    snprintf(key, sizeof key, "key%06d", i);
    int len = snprintf(val, sizeof val, "%s/v%d/", key, ver);
    memset(val + len, 'a' + ver % 26, 150 - (size_t)len);
    val[150] = '\0';
    fb_put(fx, fb, key, val);
}

/* HR_KEYS keys in L1 (about 40 tables), then four L0 tables that each update (or delete)
 * every HR_STRIDE-th key and the last one: every L0 table spans all of L1, so an L0 -> L1
 * compaction rewrites the whole of L1. */
static void hr_setup(fixture *fx)
{
    flush_buf fb;
    for (int f = 0; f < 8; f++) {
        fb_begin(&fb);
        for (int i = f * (HR_KEYS / 8); i < (f + 1) * (HR_KEYS / 8); i++)
            hr_put(fx, &fb, i, 0);
        fb_flush(fx, &fb);
    }
    pthread_mutex_lock(&fx->mu);
    compaction *c = version_set_compact_range(fx->vs, 0, NULL, NULL);
    pthread_mutex_unlock(&fx->mu);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(run_and_install(fx, c, fx->seq), 0);
    ck_assert_int_eq(version_set_num_level_files(fx->vs, 0), 0);
    ck_assert_int_ge(version_set_num_level_files(fx->vs, 1), 20);
    for (int f = 0; f < 4; f++) {
        fb_begin(&fb);
        for (int i = f; i < HR_KEYS - 1; i += HR_STRIDE) {
            if ((i / HR_STRIDE) % 5 == 4) {
                char key[32];
                snprintf(key, sizeof key, "key%06d", i);
                fb_del(fx, &fb, key);
            } else {
                hr_put(fx, &fb, i, f + 1);
            }
        }
        hr_put(fx, &fb, HR_KEYS - 1, f + 1);
        fb_flush(fx, &fb);
    }
    ck_assert_int_eq(version_set_num_level_files(fx->vs, 0), 4);
}

/* A manual compaction of all of `level` into level + 1, with the env halted after
 * `halt_after` more mutating operations (0: never); returns its status. */
static int hr_compact(fixture *fx, fault_env *fe, int level, uint64_t halt_after)
{
    if (halt_after)
        fault_env_halt_after(fe, halt_after);
    pthread_mutex_lock(&fx->mu);
    compaction *c = version_set_compact_range(fx->vs, level, NULL, NULL);
    pthread_mutex_unlock(&fx->mu);
    ck_assert_ptr_nonnull(c);
    compaction_stats st;
    int rc = compaction_run(c, fx->seq, NULL, &st);
    pthread_mutex_lock(&fx->mu);
    if (rc == 0)
        rc = compaction_install(c);
    compaction_free(c);
    pthread_mutex_unlock(&fx->mu);
    return rc;
}

/* A store through a new fault env (returned) with hr_setup's tables; levels are never scored
 * for compaction here. level 1: everything one level further down (the updates in L1, which
 * is then compacted into L2, the tables of both levels being deleted step by step). */
static fault_env *hr_open(fixture *fx, const char *tag, uint64_t seed, int level)
{
    fault_env *fe = fault_env_new(seed);
    ck_assert_ptr_nonnull(fe);
    fx_init_env(fx, tag, KV_COMPACTION_LEVELED, fault_env_env(fe));
    fx->opts.level1_bytes = 64 << 20;
    hr_setup(fx);
    if (level == 1) {
        ck_assert_int_eq(hr_compact(fx, fe, 1, 0), 0);
        ck_assert_int_eq(hr_compact(fx, fe, 0, 0), 0);
        ck_assert_int_ge(version_set_num_level_files(fx->vs, 1), 3);
        ck_assert_int_ge(version_set_num_level_files(fx->vs, 2), 20);
    }
    return fe;
}

static uint64_t max_number_in_level(fixture *fx, int level)
{
    version *v = version_set_current(fx->vs);
    uint64_t max = 0;
    for (int i = 0; i < v->nfiles[level]; i++)
        if (v->files[level][i]->number > max)
            max = v->files[level][i]->number;
    return max;
}

START_TEST(test_compaction_l0_to_l1_frees_its_l1_inputs_as_it_goes)
{
    fixture fx;
    fault_env *fe = hr_open(&fx, "cmp-steps", 11, 0);
    uint64_t l0 = version_set_num_level_bytes(fx.vs, 0), l1 = version_set_num_level_bytes(fx.vs, 1);
    /* Room for the L0 inputs written again and a few tables: installing only at the end
     * would need all of L1 again (and did: ENOSPC). */
    uint64_t room = l0 + 6 * fx.opts.target_file_size;
    ck_assert_uint_lt(3 * room, l1);
    version *v = version_set_current(fx.vs);
    uint64_t *inputs = calloc((size_t)v->nfiles[1], sizeof *inputs);
    int n_inputs = v->nfiles[1];
    ck_assert_ptr_nonnull(inputs);
    for (int i = 0; i < n_inputs; i++)
        inputs[i] = v->files[1][i]->number;
    fault_env_set_space_limit(fe, room);
    pthread_mutex_lock(&fx.mu);
    compaction *c = version_set_compact_range(fx.vs, 0, NULL, NULL);
    pthread_mutex_unlock(&fx.mu);
    ck_assert_ptr_nonnull(c);
    int rc = run_and_install(&fx, c, fx.seq);
    ck_assert_msg(rc == 0, "L0 -> L1 of %" PRIu64 " + %" PRIu64 " bytes in %" PRIu64 " free: %s",
                  l0, l1, room, kv_strerror(rc));
    ck_assert_int_eq(version_set_num_level_files(fx.vs, 0), 0);
    check_levels(&fx);
    check_model(&fx, HR_KEYS, "key%06d");
    scan_result r = scan_all(&fx);
    ck_assert_int_eq(r.duplicate_user_keys, 0);
    ck_assert_int_eq(r.entries, (int)fx.model.n); /* tombstones with nothing below are gone */
    /* The compaction deleted the files of its L1 inputs as it went (no db sweeps obsolete
     * files here); only the last one, which the final edit deletes, is left to that sweep. */
    for (int i = 0; i < n_inputs - 1; i++) {
        char path[4096];
        filename_table(path, sizeof path, fx.dir, inputs[i]);
        ck_assert_msg(access(path, F_OK) != 0, "input %s is still on disk", path);
    }
    free(inputs);
    fault_env_set_space_limit(fe, UINT64_MAX);
    fx_close_vs(&fx);
    fx_open_vs(&fx);
    check_levels(&fx);
    check_model(&fx, HR_KEYS, "key%06d");
    fx_done(&fx);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_compaction_picker_takes_the_oldest_l0_tables_that_fit_the_free_space)
{
    fixture fx;
    fault_env *fe = hr_open(&fx, "cmp-l0-bound", 12, 0);
    version *v = version_set_current(fx.vs);
    uint64_t newest[3], oldest_size = v->files[0][3]->size;
    for (int i = 0; i < 3; i++)
        newest[i] = v->files[0][i]->number;
    uint64_t l0 = version_set_num_level_bytes(fx.vs, 0), l1 = version_set_num_level_bytes(fx.vs, 1);
    /* A quarter of the free space holds the oldest L0 table but not two of them. */
    uint64_t room = 6 * oldest_size;
    ck_assert_uint_lt(room / 4, l0);
    ck_assert_uint_lt(3 * room, l1);
    fault_env_set_space_limit(fe, room);
    pthread_mutex_lock(&fx.mu);
    compaction *c = version_set_pick_compaction(fx.vs);
    pthread_mutex_unlock(&fx.mu);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(compaction_level(c), 0);
    int rc = run_and_install(&fx, c, fx.seq);
    ck_assert_msg(rc == 0, "L0 -> L1 with %" PRIu64 " bytes free: %s", room, kv_strerror(rc));
    /* The oldest table went down; the three newer ones stay in L0, and still shadow L1. */
    v = version_set_current(fx.vs);
    ck_assert_int_eq(v->nfiles[0], 3);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(v->files[0][i]->number, newest[i]);
    check_levels(&fx);
    check_model(&fx, HR_KEYS, "key%06d");
    fault_env_set_space_limit(fe, UINT64_MAX);
    fx_close_vs(&fx);
    fx_open_vs(&fx);
    check_model(&fx, HR_KEYS, "key%06d");
    fx_done(&fx);
    fault_env_free(fe);
}
END_TEST

/* Halts the env at `trials - 1` points spread over a compaction of all of `level`, then checks
 * reads of the version in memory, and of the store after a power cut, and that the
 * compaction completes from there. Returns how many halts left a partly installed result. */
static int hr_crash_points(int level, int trials)
{
    /* A run without faults, to count its mutating operations. */
    fixture fx;
    fault_env *fe = hr_open(&fx, "cmp-steps-count", 13, level);
    uint64_t m0 = fault_env_mutations(fe);
    ck_assert_int_eq(hr_compact(&fx, fe, level, 0), 0);
    uint64_t total = fault_env_mutations(fe) - m0;
    fx_done(&fx);
    fault_env_free(fe);
    ck_assert_uint_gt(total, 40);

    int partial = 0;
    for (int t = 1; t < trials; t++) {
        fe = hr_open(&fx, "cmp-steps-crash", 13 + (uint64_t)t, level);
        uint64_t out_max = max_number_in_level(&fx, level + 1);
        int rc = hr_compact(&fx, fe, level, total * (uint64_t)t / (uint64_t)trials);
        ck_assert_msg(rc != 0, "level %d, trial %d: the compaction finished though halted", level,
                      t);
        /* The version left in memory by the failed compaction reads right... */
        check_levels(&fx);
        check_model(&fx, HR_KEYS, "key%06d");
        if (version_set_num_level_files(fx.vs, level) > 0 &&
            max_number_in_level(&fx, level + 1) > out_max)
            partial++; /* some steps installed, some inputs still there */
        /* ...and so does what a power loss now leaves on disk. */
        fx_close_vs(&fx);
        ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
        fx_open_vs(&fx);
        check_levels(&fx);
        check_model(&fx, HR_KEYS, "key%06d");
        /* And the compaction completes from there. */
        ck_assert_int_eq(hr_compact(&fx, fe, level, 0), 0);
        ck_assert_int_eq(version_set_num_level_files(fx.vs, level), 0);
        check_levels(&fx);
        check_model(&fx, HR_KEYS, "key%06d");
        fx_done(&fx);
        fault_env_free(fe);
    }
    return partial;
}

START_TEST(test_compaction_steps_read_right_in_memory_and_after_a_crash_at_any_point)
{
    int trials = 16;
    ck_assert_int_ge(hr_crash_points(0, trials), trials / 3); /* L0 -> L1 */
    ck_assert_int_ge(hr_crash_points(1, trials), trials / 3); /* L1 -> L2 */
}
END_TEST

static Suite *compaction_suite(void)
{
    Suite *s = suite_create("compaction");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_compaction_leveled_keeps_newest_values_in_disjoint_levels);
    tcase_add_test(tc, test_compaction_snapshot_visible_versions_survive);
    tcase_add_test(tc, test_compaction_tombstone_kept_while_older_data_lies_below);
    tcase_add_test(tc, test_compaction_single_l0_table_is_moved_trivially);
    tcase_add_test(tc, test_compaction_user_key_never_straddles_outputs);
    tcase_add_test(tc, test_compaction_shutdown_abandons_and_deletes_outputs);
    tcase_add_test(tc, test_compaction_tiered_merges_similar_runs_and_keeps_newest);
    tcase_add_test(tc, test_compaction_tiered_window_keeps_its_place_among_newer_runs);
    tcase_add_test(tc, test_table_build_of_an_empty_memtable_writes_nothing);
    tcase_add_test(tc, test_compaction_l0_to_l1_frees_its_l1_inputs_as_it_goes);
    tcase_add_test(tc, test_compaction_picker_takes_the_oldest_l0_tables_that_fit_the_free_space);
    tcase_add_test(tc, test_compaction_steps_read_right_in_memory_and_after_a_crash_at_any_point);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(compaction_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
