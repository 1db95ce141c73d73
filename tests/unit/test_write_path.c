/* test_write_path.c - the bulk write path: records appended by reference from the staged batch
 * (one writev per commit) keep their offsets, across segment ends and after a crash, a lone
 * writer's batch committed without the group copy, values built in place in a batch, env_appendv,
 * and compression attempts that judge a large piece by its prefix. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkutil.h"
#include "db/batch.h"
#include "fault_env.h"
#include "kvcore/kv.h"
#include "table/compress.h"
#include "testutil.h"
#include "util/env.h"

#define WP_THRESHOLD 100

static void wp_opts(kv_options *o)
{
    kv_options_init(o);
    o->value_log_threshold = WP_THRESHOLD;
    o->memtable_bytes = 256 * 1024;
    o->log_fn = tu_quiet_log;
}

/* Value of key i, version ver: n bytes, random (so never compressed) or text. */
static void wp_value(char *v, size_t n, int i, int ver)
{
    tu_rng r;
    tu_rng_init(&r, (uint64_t)i * 7919u + (uint64_t)ver);
    if (i % 3 == 0) {
        for (size_t j = 0; j < n; j++)
            v[j] = (char)('a' + (j / 16 + (size_t)i + (size_t)ver) % 26);
    } else {
        tu_rng_fill(&r, v, n);
    }
}

/* Sizes around the threshold and up to above a chunk, mixed in one batch. */
static size_t wp_size(int i)
{
    static const size_t sizes[] = {150, 16383, 16384, 300, 65536, 40000, 99, 1000, 70001};
    return sizes[i % 9];
}

static void wp_put_batch(kv_db *db, int first, int n, int ver, int flags)
{
    kv_batch *b = kv_batch_new();
    ck_assert_ptr_nonnull(b);
    for (int i = first; i < first + n; i++) {
        char key[16], *v = malloc(wp_size(i));
        ck_assert_ptr_nonnull(v);
        wp_value(v, wp_size(i), i, ver);
        snprintf(key, sizeof(key), "k%06d", i);
        ck_assert_int_eq(kv_batch_put(b, key, strlen(key), v, wp_size(i)), 0);
        free(v);
    }
    ck_assert_int_eq(kv_write(db, b, flags), 0);
    kv_batch_free(b);
}

static void wp_check(kv_db *db, int first, int n, int ver)
{
    for (int i = first; i < first + n; i++) {
        char key[16], *want = malloc(wp_size(i));
        void *got = NULL;
        size_t glen = 0;
        ck_assert_ptr_nonnull(want);
        wp_value(want, wp_size(i), i, ver);
        snprintf(key, sizeof(key), "k%06d", i);
        ck_assert_int_eq(kv_get(db, NULL, key, strlen(key), &got, &glen), 0);
        ck_assert_uint_eq(glen, wp_size(i));
        ck_assert_msg(memcmp(got, want, glen) == 0, "key %d (%zu bytes) differs", i, glen);
        kv_free(got);
        free(want);
    }
}

/* Checks keys [first, first + n) at version ver, then again after a reopen; closes db. */
static void wp_check_across_reopen(kv_db *db, const char *dir, const kv_options *o, int first,
                                   int n, int ver)
{
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            db = tu_ck_open(dir, o);
        wp_check(db, first, n, ver);
        kv_close(db);
    }
}

START_TEST(test_write_path_mixed_record_sizes_in_one_batch_read_back)
{
    char *dir = tu_ck_tempdir("wp_mixed");
    kv_options o;
    wp_opts(&o);
    kv_db *db = tu_ck_open(dir, &o);
    for (int round = 0; round < 4; round++)
        wp_put_batch(db, round * 27, 27, 1, 0);
    wp_put_batch(db, 0, 27, 2, KV_WRITE_SYNC); /* overwrites among the first batch's keys */
    wp_check(db, 27, 81, 1);
    wp_check_across_reopen(db, dir, &o, 0, 27, 2);
    tu_ck_rmtempdir(&dir);
}
END_TEST

/* Segments of 256 KiB: a commit's queued records are written out before each rotation. */
START_TEST(test_write_path_queued_records_rotate_segments_at_the_right_offsets)
{
    char *dir = tu_ck_tempdir("wp_rotate");
    kv_options o;
    wp_opts(&o);
    o.value_log_segment_bytes = 256 * 1024;
    kv_db *db = tu_ck_open(dir, &o);
    for (int round = 0; round < 12; round++)
        wp_put_batch(db, round * 9, 9, 1, 0);
    wp_check_across_reopen(db, dir, &o, 0, 108, 1);
    tu_ck_rmtempdir(&dir);
}
END_TEST

/* Every synced write survives a power cut that drops or tears all unsynced bytes, and the store
 * checks clean: records appended by writev are synced with the rest of their segment. */
START_TEST(test_write_path_synced_records_survive_a_crash)
{
    for (int mode = 0; mode < 2; mode++) {
        char *dir = tu_ck_tempdir("wp_crash");
        fault_env *fe = fault_env_new(77 + (uint64_t)mode);
        ck_assert_ptr_nonnull(fe);
        kv_options o;
        wp_opts(&o);
        o.env = fault_env_env(fe);
        kv_db *db = tu_ck_open(dir, &o);
        wp_put_batch(db, 0, 18, 1, KV_WRITE_SYNC);
        wp_put_batch(db, 18, 18, 1, 0); /* unsynced: may be lost, must not corrupt */
        ck_assert_int_eq(
            fault_env_crash(fe, mode == 0 ? FAULT_CRASH_DROP_UNSYNCED : FAULT_CRASH_TEAR_UNSYNCED),
            0);
        kv_close(db);
        db = tu_ck_open(dir, &o);
        wp_check(db, 0, 18, 1);
        kv_close(db);
        uint64_t problems = 1;
        ck_assert_int_eq(kv_check(dir, &o, NULL, NULL, &problems), 0);
        ck_assert_uint_eq(problems, 0);
        fault_env_free(fe);
        tu_ck_rmtempdir(&dir);
    }
}
END_TEST

struct wp_writer {
    kv_db *db;
    int id;
};

static void *wp_writer_main(void *arg)
{
    struct wp_writer *w = arg;
    for (int r = 0; r < 20; r++)
        wp_put_batch(w->db, w->id * 1000 + (r % 5) * 9, 9, r / 5, r % 7 == 0 ? KV_WRITE_SYNC : 0);
    return NULL;
}

/* Writers of large batches (each leads its own group) and of small ones (which join) at once:
 * every writer's last version of every key is read back. */
START_TEST(test_write_path_concurrent_large_and_small_writers_keep_every_value)
{
    char *dir = tu_ck_tempdir("wp_conc");
    kv_options o;
    wp_opts(&o);
    kv_db *db = tu_ck_open(dir, &o);
    pthread_t t[4];
    struct wp_writer w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct wp_writer){db, i};
        ck_assert_int_eq(pthread_create(&t[i], NULL, wp_writer_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        wp_check(db, i * 1000, 45, 3);
    kv_close(db);
    tu_ck_rmtempdir(&dir);
}
END_TEST

/* More buffers than one writev takes (IOV_MAX, 1024 on Linux), some empty: all in order. */
START_TEST(test_write_path_appendv_writes_every_buffer_in_order)
{
    char *dir = tu_ck_tempdir("wp_appendv");
    char path[4096];
    snprintf(path, sizeof(path), "%s/f", dir);
    enum { NBUF = 2500 };
    static struct iovec iov[NBUF];
    static char data[NBUF * 40];
    tu_rng r;
    tu_rng_init(&r, 9);
    tu_rng_fill(&r, data, sizeof(data));
    size_t total = 0;
    for (int i = 0; i < NBUF; i++) {
        iov[i].iov_base = data + total;
        iov[i].iov_len = (size_t)(i % 7 == 3 ? 0 : (i * 13) % 40);
        total += iov[i].iov_len;
    }
    const kv_env *env = env_posix();
    ck_assert_ptr_nonnull(env->appendv);
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, path, &f), 0);
    ck_assert_int_eq(env_append(f, "head", 4), 0);
    ck_assert_int_eq(env_appendv(f, iov, NBUF), 0);
    ck_assert_int_eq(env_appendv(f, iov, 0), 0);
    ck_assert_int_eq(env_close(f), 0);
    char *back;
    size_t len;
    ck_assert_int_eq(env_read_file(env, path, &back, &len), 0);
    ck_assert_uint_eq(len, 4 + total);
    ck_assert(memcmp(back, "head", 4) == 0 && memcmp(back + 4, data, total) == 0);
    free(back);
    tu_ck_rmtempdir(&dir);
}
END_TEST

struct wp_ops {
    int n;
    size_t vlen[8];
    char first[8];
};

static int wp_op_put(void *ctx, uint64_t seq, slice key, slice value)
{
    (void)seq;
    struct wp_ops *o = ctx;
    ck_assert_uint_eq(key.size, 1);
    ck_assert_int_eq(key.data[0], 'a' + o->n);
    o->vlen[o->n] = value.size;
    o->first[o->n] = value.size ? value.data[0] : 0;
    for (size_t i = 0; i < value.size; i++)
        ck_assert_int_eq(value.data[i], value.data[0]);
    o->n++;
    return 0;
}

static int wp_op_del(void *ctx, uint64_t seq, slice key)
{
    (void)ctx, (void)seq, (void)key;
    ck_abort_msg("no delete was put");
    return 0;
}

/* Appends a put of key "a" + i whose n value bytes (all c) the test writes into the rep itself. */
static void wp_put_in_place(kv_batch *b, int i, size_t hint, size_t n, char c, int abort)
{
    batch_pending p;
    char key = (char)('a' + i);
    ck_assert_int_eq(batch_put_begin(b, (slice){&key, 1}, hint, &p), 0);
    ck_assert_int_eq(buf_reserve(&b->rep, n), 0);
    memset(b->rep.data + b->rep.len, c, n);
    b->rep.len += n;
    if (abort)
        batch_put_abort(b, &p);
    else
        ck_assert_int_eq(batch_put_end(b, &p), 0);
}

/* Hints too small (the value moves up), too large (it moves down), exact, and an aborted put
 * between them: the batch decodes to exactly the completed puts. */
START_TEST(test_write_path_batch_put_in_place_survives_wrong_length_hints)
{
    kv_batch *b = kv_batch_new();
    ck_assert_ptr_nonnull(b);
    wp_put_in_place(b, 0, 10, 300, 'x', 0);      /* 1-byte slot, 2-byte length */
    wp_put_in_place(b, 1, 70000, 5, 'y', 0);     /* 3-byte slot, 1-byte length */
    wp_put_in_place(b, 2, 100, 50, 'q', 1);      /* aborted */
    wp_put_in_place(b, 2, 65536, 65536, 'z', 0); /* exact */
    wp_put_in_place(b, 3, 0, 0, 0, 0);           /* empty value */
    ck_assert_uint_eq(kv_batch_count(b), 4);
    struct wp_ops o = {0};
    batch_handler h = {wp_op_put, wp_op_del, &o};
    ck_assert_int_eq(batch_iterate(buf_slice(&b->rep), &h), 0);
    ck_assert_int_eq(o.n, 4);
    ck_assert_uint_eq(o.vlen[0], 300);
    ck_assert_int_eq(o.first[0], 'x');
    ck_assert_uint_eq(o.vlen[1], 5);
    ck_assert_int_eq(o.first[1], 'y');
    ck_assert_uint_eq(o.vlen[2], 65536);
    ck_assert_int_eq(o.first[2], 'z');
    ck_assert_uint_eq(o.vlen[3], 0);
    kv_batch_free(b);
}
END_TEST

#define WP_PIECE 65536

/* A state that has just failed an attempt (backing off). */
static void failed_state(compress_state *st)
{
    *st = (compress_state){0, 0};
    compress_note_result(st, 0);
    ck_assert_uint_gt(st->fail_streak, 0);
}

START_TEST(test_compress_piece_with_random_prefix_is_stored_raw_while_backing_off)
{
    static char src[WP_PIECE], out[WP_PIECE * 2];
    tu_rng r;
    tu_rng_init(&r, 5);
    tu_rng_fill(&r, src, 8192);
    memset(src + 8192, 'x', WP_PIECE - 8192); /* compressible past the prefix */
    size_t cap = ZSTD_compressBound(WP_PIECE);
    ck_assert_uint_le(cap, sizeof(out));
    slice s = {src, WP_PIECE};
    compress_state st;
    failed_state(&st);
    unsigned streak = st.fail_streak;
    ck_assert_uint_eq(compress_try(&st, compress_thread_cctx(), out, cap, s, 1, WP_PIECE * 7 / 8),
                      0);
    ck_assert_uint_eq(st.fail_streak, streak + 1); /* counted as a failed attempt */
    /* Without a failure behind it the whole piece is compressed (and round-trips). */
    st = (compress_state){0, 0};
    size_t z = compress_try(&st, compress_thread_cctx(), out, cap, s, 1, WP_PIECE * 7 / 8);
    ck_assert_uint_gt(z, 0);
    static char back[WP_PIECE];
    ck_assert_int_eq(compress_decompress((slice){out, z}, back, WP_PIECE), 0);
    ck_assert(memcmp(back, src, WP_PIECE) == 0);
}
END_TEST

START_TEST(test_compress_prefix_that_shrinks_still_needs_the_whole_piece_to)
{
    static char src[WP_PIECE], out[WP_PIECE * 2];
    tu_rng r;
    tu_rng_init(&r, 6);
    memset(src, 'y', 8192);                       /* the prefix compresses ... */
    tu_rng_fill(&r, src + 8192, WP_PIECE - 8192); /* ... the whole does not by 1/8 */
    size_t cap = ZSTD_compressBound(WP_PIECE);
    slice s = {src, WP_PIECE};
    compress_state st;
    failed_state(&st);
    ck_assert_uint_eq(compress_try(&st, compress_thread_cctx(), out, cap, s, 1, WP_PIECE * 7 / 8),
                      0);
    /* Text throughout passes the prefix and is kept compressed; the backoff resets. */
    for (size_t j = 0; j < WP_PIECE; j++)
        src[j] = (char)('a' + (j / 7) % 26);
    failed_state(&st);
    size_t z = compress_try(&st, compress_thread_cctx(), out, cap, s, 1, WP_PIECE * 7 / 8);
    ck_assert_uint_gt(z, 0);
    ck_assert_uint_eq(st.fail_streak, 0);
    static char back[WP_PIECE];
    ck_assert_int_eq(compress_decompress((slice){out, z}, back, WP_PIECE), 0);
    ck_assert(memcmp(back, src, WP_PIECE) == 0);
}
END_TEST

static Suite *write_path_suite(void)
{
    Suite *s = suite_create("write_path");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_write_path_mixed_record_sizes_in_one_batch_read_back);
    tcase_add_test(tc, test_write_path_queued_records_rotate_segments_at_the_right_offsets);
    tcase_add_test(tc, test_write_path_synced_records_survive_a_crash);
    tcase_add_test(tc, test_write_path_concurrent_large_and_small_writers_keep_every_value);
    tcase_add_test(tc, test_write_path_batch_put_in_place_survives_wrong_length_hints);
    tcase_add_test(tc, test_write_path_appendv_writes_every_buffer_in_order);
    tcase_add_test(tc, test_compress_piece_with_random_prefix_is_stored_raw_while_backing_off);
    tcase_add_test(tc, test_compress_prefix_that_shrinks_still_needs_the_whole_piece_to);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(write_path_suite());
}
