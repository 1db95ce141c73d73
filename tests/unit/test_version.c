/* test_version.c - version edits, the manifest, recovery, file names and the table cache. */
#include <check.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkutil.h"
#include "db/filename.h"
#include "db/memtable.h"
#include "db/table_cache.h"
#include "db/version.h"
#include "db/wal.h"
#include "testutil.h"
#include "util/env.h"
#include "util/ikey.h"

/* ---- Fixture --------------------------------------------------------------------------------- */

typedef struct fixture {
    char *dir;
    kv_options opts;
    kv_logger log;
    table_cache *tc;
    pthread_mutex_t mu;
    version_set *vs;
    tu_logbuf logged;
} fixture;

static void fx_open_vs(fixture *fx)
{
    fx->tc = table_cache_new(fx->dir, env_posix(), 50, NULL, &fx->log, 1);
    ck_assert_ptr_nonnull(fx->tc);
    ck_assert_int_eq(
        version_set_new(fx->dir, &fx->opts, env_posix(), fx->tc, &fx->log, &fx->mu, &fx->vs), 0);
}

static void fx_close_vs(fixture *fx)
{
    version_set_free(fx->vs);
    table_cache_free(fx->tc);
    fx->vs = NULL;
    fx->tc = NULL;
}

/* Opens the version set again over a table cache of max_open_files tables. */
static void fx_reopen_with_tc(fixture *fx, int max_open_files)
{
    fx_close_vs(fx);
    fx->tc = table_cache_new(fx->dir, env_posix(), max_open_files, NULL, &fx->log, 1);
    ck_assert_ptr_nonnull(fx->tc);
    ck_assert_int_eq(
        version_set_new(fx->dir, &fx->opts, env_posix(), fx->tc, &fx->log, &fx->mu, &fx->vs), 0);
    ck_assert_int_eq(version_set_recover(fx->vs), 0);
}

static void fx_init(fixture *fx, const char *tag)
{
    memset(fx, 0, sizeof *fx);
    fx->dir = tu_ck_tempdir(tag);
    tu_logbuf_init(&fx->logged);
    kv_options_init(&fx->opts);
    fx->opts.log_fn = tu_logbuf_fn;
    fx->opts.log_ctx = &fx->logged;
    fx->opts.log_level = KV_LOG_DEBUG;
    kv_logger_init(&fx->log, &fx->opts);
    pthread_mutex_init(&fx->mu, NULL);
    fx_open_vs(fx);
    ck_assert_int_eq(version_set_create_new(fx->vs), 0);
}

static void fx_done(fixture *fx)
{
    fx_close_vs(fx);
    pthread_mutex_destroy(&fx->mu);
    tu_logbuf_destroy(&fx->logged);
    tu_ck_rmtempdir(&fx->dir);
}

/* A stand-in table file of `size` bytes: recovery only checks that it exists with that size. */
static void make_file(const char *dir, uint64_t number, uint64_t size)
{
    char path[512];
    filename_table(path, sizeof path, dir, number);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (uint64_t i = 0; i < size; i++)
        fputc((int)(i & 0xff), f);
    fclose(f);
}

static buf ikey_of(const char *user_key, uint64_t seq, int type)
{
    buf b;
    buf_init(&b);
    ck_assert_int_eq(ikey_append(&b, slice_from_str(user_key), seq, type), 0);
    return b;
}

/* Adds table `number` covering [lo, hi] at `level` to e and creates its file. */
static void edit_add(fixture *fx, version_edit *e, int level, uint64_t number, const char *lo,
                     const char *hi, uint64_t size)
{
    buf s = ikey_of(lo, 10, IKEY_TYPE_VALUE), l = ikey_of(hi, 9, IKEY_TYPE_VALUE);
    ck_assert_int_eq(version_edit_add_file(e, level, number, size, buf_slice(&s), buf_slice(&l)),
                     0);
    make_file(fx->dir, number, size);
    buf_free(&s);
    buf_free(&l);
}

static int apply(fixture *fx, version_edit *e)
{
    pthread_mutex_lock(&fx->mu);
    int rc = version_set_log_and_apply(fx->vs, e);
    pthread_mutex_unlock(&fx->mu);
    return rc;
}

/* Sets the last sequence to last_seq (the edit's tables hold entries up to it), applies e
 * and frees it. */
static void apply_at(fixture *fx, version_edit *e, uint64_t last_seq)
{
    pthread_mutex_lock(&fx->mu);
    version_set_set_last_sequence(fx->vs, last_seq);
    pthread_mutex_unlock(&fx->mu);
    ck_assert_int_eq(apply(fx, e), 0);
    version_edit_free(e);
}

static uint64_t new_number(fixture *fx)
{
    pthread_mutex_lock(&fx->mu);
    uint64_t n = version_set_new_file_number(fx->vs);
    pthread_mutex_unlock(&fx->mu);
    return n;
}

/* "level:number,number;level:..." describing the current version, for comparisons. */
static void describe(version_set *vs, char *out, size_t n)
{
    version *v = version_set_current(vs);
    size_t len = 0;
    out[0] = '\0';
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        if (v->nfiles[l] == 0)
            continue;
        len += (size_t)snprintf(out + len, n - len, "%d:", l);
        for (int i = 0; i < v->nfiles[l]; i++)
            len += (size_t)snprintf(out + len, n - len, "%" PRIu64 "/%" PRIu64 ",",
                                    v->files[l][i]->number, v->files[l][i]->size);
        len += (size_t)snprintf(out + len, n - len, ";");
    }
}

/* ---- Version edits ------------------------------------------------------------------------- */

static void fill_edit(version_edit *e)
{
    version_edit_init(e);
    e->has_format_version = 1;
    e->format_version = VERSION_FORMAT_CURRENT;
    e->has_log_number = 1;
    e->log_number = 77;
    e->has_next_file_number = 1;
    e->next_file_number = 1u << 20;
    e->has_last_sequence = 1;
    e->last_sequence = IKEY_MAX_SEQUENCE;
    ck_assert_int_eq(version_edit_delete_file(e, 3, 12345678901ULL), 0);
    ck_assert_int_eq(version_edit_delete_file(e, 0, 5), 0);
    buf s = ikey_of("apple", 3, IKEY_TYPE_VALUE), l = ikey_of("zebra", 1, IKEY_TYPE_DELETION);
    ck_assert_int_eq(version_edit_add_file(e, 6, 99, 4096, buf_slice(&s), buf_slice(&l)), 0);
    e->added[0].meta->largest_seq = 3;
    ck_assert_int_eq(version_edit_add_file(e, 0, 100, 1, buf_slice(&s), buf_slice(&s)), 0);
    buf_free(&s);
    buf_free(&l);
}

START_TEST(test_version_edit_round_trip_keeps_every_field)
{
    version_edit e, d;
    fill_edit(&e);
    version_edit_init(&d);
    buf enc;
    buf_init(&enc);
    ck_assert_int_eq(version_edit_encode(&e, &enc), 0);
    ck_assert_int_eq(version_edit_decode(&d, buf_slice(&enc)), 0);
    ck_assert(d.has_format_version && d.format_version == VERSION_FORMAT_CURRENT);
    ck_assert(d.has_log_number && d.log_number == 77);
    ck_assert(d.has_next_file_number && d.next_file_number == 1u << 20);
    ck_assert(d.has_last_sequence && d.last_sequence == IKEY_MAX_SEQUENCE);
    ck_assert_uint_eq(d.n_deleted, 2);
    ck_assert_int_eq(d.deleted[0].level, 3);
    ck_assert_uint_eq(d.deleted[0].number, 12345678901ULL);
    ck_assert_int_eq(d.deleted[1].level, 0);
    ck_assert_uint_eq(d.n_added, 2);
    ck_assert_int_eq(d.added[0].level, 6);
    ck_assert_uint_eq(d.added[0].meta->number, 99);
    ck_assert_uint_eq(d.added[0].meta->size, 4096);
    ck_assert_uint_eq(d.added[0].meta->largest_seq, 3);
    ck_assert(
        slice_equal(buf_slice(&d.added[0].meta->smallest), buf_slice(&e.added[0].meta->smallest)));
    ck_assert(
        slice_equal(buf_slice(&d.added[0].meta->largest), buf_slice(&e.added[0].meta->largest)));
    /* Re-encoding the decoded edit gives the same bytes. */
    buf enc2;
    buf_init(&enc2);
    ck_assert_int_eq(version_edit_encode(&d, &enc2), 0);
    ck_assert(slice_equal(buf_slice(&enc), buf_slice(&enc2)));
    buf_free(&enc);
    buf_free(&enc2);
    version_edit_free(&e);
    version_edit_free(&d);
}
END_TEST

START_TEST(test_version_edit_decode_of_every_truncation_never_crashes)
{
    version_edit e, d;
    fill_edit(&e);
    version_edit_init(&d);
    buf enc;
    buf_init(&enc);
    ck_assert_int_eq(version_edit_encode(&e, &enc), 0);
    int ok = 0, corrupt = 0;
    for (size_t n = 0; n < enc.len; n++) {
        /* A copy of exactly n bytes, so ASan sees any read past the end. */
        char *copy = malloc(n ? n : 1);
        memcpy(copy, enc.data, n);
        int rc = version_edit_decode(&d, slice_make(copy, n));
        ck_assert_msg(rc == 0 || rc == KV_ECORRUPT, "prefix %zu: rc %d", n, rc);
        if (rc == 0)
            ok++;
        else {
            corrupt++;
            ck_assert_uint_eq(d.n_added, 0); /* a failed decode leaves nothing behind */
        }
        free(copy);
    }
    ck_assert_int_gt(corrupt, ok); /* most cuts fall inside a field */
    buf_free(&enc);
    version_edit_free(&e);
    version_edit_free(&d);
}
END_TEST

static int decode_bytes(const char *bytes, size_t n)
{
    version_edit d;
    version_edit_init(&d);
    int rc = version_edit_decode(&d, slice_make(bytes, n));
    version_edit_free(&d);
    return rc;
}

START_TEST(test_version_edit_decode_rejects_malformed_fields)
{
    /* Unknown tag. */
    ck_assert_int_eq(decode_bytes("\x63\x01", 2), KV_ECORRUPT);
    /* Deleted file at level 7 (there are KV_MAX_LEVELS = 7 levels). */
    ck_assert_int_eq(decode_bytes("\x05\x07\x01", 3), KV_ECORRUPT);
    /* Varint of 11 bytes. */
    ck_assert_int_eq(decode_bytes("\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12),
                     KV_ECORRUPT);
    /* Format version 0. */
    ck_assert_int_eq(decode_bytes("\x01\x00", 2), KV_ECORRUPT);
    /* Last sequence above 2^56 - 1. */
    ck_assert_int_eq(decode_bytes("\x04\x80\x80\x80\x80\x80\x80\x80\x80\x01", 10), KV_ECORRUPT);

    /* New file whose keys are shorter than a tag, or out of order. */
    buf b;
    buf_init(&b);
    buf_append_varint32(&b, 6);
    buf_append_varint32(&b, 1);
    buf_append_varint64(&b, 9);
    buf_append_varint64(&b, 100);
    buf_append_varint64(&b, 0);
    buf_append_length_prefixed(&b, slice_from_str("short"));
    buf_append_length_prefixed(&b, slice_from_str("short"));
    ck_assert_int_eq(decode_bytes(b.data, b.len), KV_ECORRUPT);

    buf_clear(&b);
    buf hi = ikey_of("b", 1, IKEY_TYPE_VALUE), lo = ikey_of("a", 1, IKEY_TYPE_VALUE);
    buf_append_varint32(&b, 6);
    buf_append_varint32(&b, 1);
    buf_append_varint64(&b, 9);
    buf_append_varint64(&b, 100);
    buf_append_varint64(&b, 0);
    buf_append_length_prefixed(&b, buf_slice(&hi));
    buf_append_length_prefixed(&b, buf_slice(&lo));
    ck_assert_int_eq(decode_bytes(b.data, b.len), KV_ECORRUPT);
    /* The same field with the keys in order decodes. */
    buf_clear(&b);
    buf_append_varint32(&b, 6);
    buf_append_varint32(&b, 1);
    buf_append_varint64(&b, 9);
    buf_append_varint64(&b, 100);
    buf_append_varint64(&b, 0);
    buf_append_length_prefixed(&b, buf_slice(&lo));
    buf_append_length_prefixed(&b, buf_slice(&hi));
    ck_assert_int_eq(decode_bytes(b.data, b.len), 0);
    /* A key length running past the end. */
    b.data[b.len - hi.len - 1] = 100;
    ck_assert_int_eq(decode_bytes(b.data, b.len), KV_ECORRUPT);
    buf_free(&b);
    buf_free(&hi);
    buf_free(&lo);
}
END_TEST

START_TEST(test_version_edit_of_a_newer_format_is_eversion)
{
    char enc[2] = {1, VERSION_FORMAT_CURRENT + 1};
    ck_assert_int_eq(decode_bytes(enc, 2), KV_EVERSION);
    /* Fields this version does not know follow a newer format version: still EVERSION. */
    char enc2[4] = {1, VERSION_FORMAT_CURRENT + 1, 0x40, 0x00};
    ck_assert_int_eq(decode_bytes(enc2, 4), KV_EVERSION);
}
END_TEST

/* ---- Manifest, apply and recovery --------------------------------------------------------- */

START_TEST(test_version_set_apply_then_recover_gives_the_same_version)
{
    fixture fx;
    fx_init(&fx, "vs-recover");
    version_edit e;
    version_edit_init(&e);
    uint64_t a = new_number(&fx), b = new_number(&fx), c = new_number(&fx);
    edit_add(&fx, &e, 0, a, "a", "m", 100);
    edit_add(&fx, &e, 1, b, "a", "f", 200);
    edit_add(&fx, &e, 1, c, "g", "z", 300);
    apply_at(&fx, &e, 500);
    uint64_t first_manifest = version_set_manifest_number(fx.vs);
    ck_assert_uint_gt(first_manifest, 1); /* a new manifest on first apply */

    version_edit_init(&e);
    uint64_t d = new_number(&fx);
    ck_assert_int_eq(version_edit_delete_file(&e, 0, a), 0);
    edit_add(&fx, &e, 2, d, "a", "k", 400);
    ck_assert_int_eq(apply(&fx, &e), 0);
    version_edit_free(&e);
    ck_assert_uint_eq(version_set_manifest_number(fx.vs), first_manifest);

    char before[512], after[512];
    describe(fx.vs, before, sizeof before);
    ck_assert_str_eq(before, "1:3/200,4/300,;2:6/400,;");
    uint64_t next = new_number(&fx);
    ck_assert_int_eq(version_set_num_level_files(fx.vs, 1), 2);
    ck_assert_uint_eq(version_set_num_level_bytes(fx.vs, 1), 500);

    /* Simulated reopen. */
    fx_close_vs(&fx);
    fx_open_vs(&fx);
    ck_assert_int_eq(version_set_recover(fx.vs), 0);
    describe(fx.vs, after, sizeof after);
    ck_assert_str_eq(before, after);
    ck_assert_uint_eq(version_set_last_sequence(fx.vs), 500);
    ck_assert_uint_eq(version_set_manifest_number(fx.vs), first_manifest);
    /* File numbers handed out after the last edit may be lost, never reused below it. */
    ck_assert_uint_ge(new_number(&fx), next - 1);

    /* The first apply after recovery starts a new manifest and points CURRENT at it. */
    version_edit_init(&e);
    ck_assert_int_eq(version_edit_delete_file(&e, 2, d), 0);
    ck_assert_int_eq(apply(&fx, &e), 0);
    version_edit_free(&e);
    ck_assert_uint_gt(version_set_manifest_number(fx.vs), first_manifest);
    describe(fx.vs, before, sizeof before);
    fx_close_vs(&fx);
    fx_open_vs(&fx);
    ck_assert_int_eq(version_set_recover(fx.vs), 0);
    describe(fx.vs, after, sizeof after);
    ck_assert_str_eq(before, after);
    ck_assert_str_eq(after, "1:3/200,4/300,;");
    fx_done(&fx);
}
END_TEST

START_TEST(test_version_set_l0_is_newest_first_across_recovery)
{
    fixture fx;
    fx_init(&fx, "vs-l0order");
    uint64_t nums[3];
    for (int i = 0; i < 3; i++) {
        version_edit e;
        version_edit_init(&e);
        nums[i] = new_number(&fx);
        edit_add(&fx, &e, 0, nums[i], "a", "z", 10 + (uint64_t)i);
        apply_at(&fx, &e, 100 * (uint64_t)(i + 1));
    }
    version *v = version_set_current(fx.vs);
    ck_assert_int_eq(v->nfiles[0], 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(v->files[0][i]->number, nums[2 - i]);
        ck_assert_uint_eq(v->files[0][i]->largest_seq, 100 * (uint64_t)(3 - i));
    }
    fx_close_vs(&fx);
    fx_open_vs(&fx);
    ck_assert_int_eq(version_set_recover(fx.vs), 0);
    v = version_set_current(fx.vs);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(v->files[0][i]->number, nums[2 - i]);
    fx_done(&fx);
}
END_TEST

START_TEST(test_version_set_missing_table_is_corrupt_and_named)
{
    fixture fx;
    fx_init(&fx, "vs-missing");
    version_edit e;
    version_edit_init(&e);
    uint64_t a = new_number(&fx), b = new_number(&fx);
    edit_add(&fx, &e, 1, a, "a", "c", 100);
    edit_add(&fx, &e, 1, b, "d", "f", 100);
    ck_assert_int_eq(apply(&fx, &e), 0);
    version_edit_free(&e);
    fx_close_vs(&fx);

    char path[512], expect[128];
    filename_table(path, sizeof path, fx.dir, b);
    ck_assert_int_eq(unlink(path), 0);
    char *fp_before = tu_dir_fingerprint(fx.dir);
    fx_open_vs(&fx);
    tu_logbuf_reset(&fx.logged);
    ck_assert_int_eq(version_set_recover(fx.vs), KV_ECORRUPT);
    snprintf(expect, sizeof expect, "table %06" PRIu64 ".sst referenced by the manifest is missing",
             b);
    ck_assert_msg(tu_logbuf_contains(&fx.logged, expect), "log was: %s", fx.logged.text);
    /* Recovery wrote nothing, even when it failed. */
    tu_ck_dir_unchanged(fx.dir, fp_before);

    /* A table whose size differs from the manifest's is corrupt too. */
    make_file(fx.dir, b, 99);
    ck_assert_int_eq(version_set_recover(fx.vs), KV_ECORRUPT);
    ck_assert(tu_logbuf_contains(&fx.logged, "file size check"));
    fx_done(&fx);
}
END_TEST

START_TEST(test_version_set_recover_changes_nothing_on_disk)
{
    fixture fx;
    fx_init(&fx, "vs-readonly");
    version_edit e;
    version_edit_init(&e);
    edit_add(&fx, &e, 0, new_number(&fx), "k", "q", 64);
    ck_assert_int_eq(apply(&fx, &e), 0);
    version_edit_free(&e);
    fx_close_vs(&fx);
    char *before = tu_dir_fingerprint(fx.dir);
    fx_open_vs(&fx);
    ck_assert_int_eq(version_set_recover(fx.vs), 0);
    tu_ck_dir_unchanged(fx.dir, before);
    fx_done(&fx);
}
END_TEST

/* Writes a manifest of the given records and points CURRENT at it. */
static void write_manifest(fixture *fx, uint64_t number, const buf *recs, int n)
{
    char path[512];
    env_file *f = NULL;
    wal_writer *w = NULL;
    filename_manifest(path, sizeof path, fx->dir, number);
    ck_assert_int_eq(env_posix()->open_writable(env_posix(), path, &f), 0);
    ck_assert_int_eq(wal_writer_new(f, 0, &w), 0);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(wal_add_record(w, buf_slice(&recs[i])), 0);
    ck_assert_int_eq(wal_writer_sync(w), 0);
    ck_assert_int_eq(wal_writer_close(w), 0);
    ck_assert_int_eq(filename_set_current(env_posix(), fx->dir, number), 0);
}

START_TEST(test_version_set_manifest_of_a_newer_format_is_eversion)
{
    fixture fx;
    fx_init(&fx, "vs-newer");
    version_edit e;
    version_edit_init(&e);
    e.has_format_version = 1;
    e.format_version = VERSION_FORMAT_CURRENT + 1;
    e.has_log_number = e.has_next_file_number = e.has_last_sequence = 1;
    e.next_file_number = 10;
    buf rec;
    buf_init(&rec);
    ck_assert_int_eq(version_edit_encode(&e, &rec), 0);
    write_manifest(&fx, 7, &rec, 1);
    fx_close_vs(&fx);
    fx_open_vs(&fx);
    ck_assert_int_eq(version_set_recover(fx.vs), KV_EVERSION);
    ck_assert(tu_logbuf_contains(&fx.logged, "newer format"));
    buf_free(&rec);
    version_edit_free(&e);
    fx_done(&fx);
}
END_TEST

START_TEST(test_version_set_torn_manifest_tail_is_dropped)
{
    fixture fx;
    fx_init(&fx, "vs-torn");
    version_edit e;
    version_edit_init(&e);
    uint64_t a = new_number(&fx);
    edit_add(&fx, &e, 1, a, "a", "c", 100);
    ck_assert_int_eq(apply(&fx, &e), 0);
    version_edit_free(&e);
    char good[256];
    describe(fx.vs, good, sizeof good);
    char mpath[512];
    filename_manifest(mpath, sizeof mpath, fx.dir, version_set_manifest_number(fx.vs));
    struct stat st;
    ck_assert_int_eq(stat(mpath, &st), 0);
    off_t good_size = st.st_size;

    version_edit_init(&e);
    edit_add(&fx, &e, 1, new_number(&fx), "d", "f", 100);
    ck_assert_int_eq(apply(&fx, &e), 0);
    version_edit_free(&e);
    fx_close_vs(&fx);
    ck_assert_int_eq(stat(mpath, &st), 0);

    /* Every cut inside the last record drops exactly that record (cutting from the end, so the
     * file only ever shrinks). */
    for (off_t cut = st.st_size - 1; cut > good_size; cut -= 3) {
        ck_assert_int_eq(truncate(mpath, cut), 0);
        fx_open_vs(&fx);
        tu_logbuf_reset(&fx.logged);
        ck_assert_int_eq(version_set_recover(fx.vs), 0);
        char now[256];
        describe(fx.vs, now, sizeof now);
        ck_assert_str_eq(now, good);
        ck_assert(tu_logbuf_contains(&fx.logged, "dropped a torn tail"));
        fx_close_vs(&fx);
    }

    /* Zeros where the file grew (a crash after the size was updated but not the data) are a
     * torn tail too; a complete record with wrong bytes is damage. */
    ck_assert_int_eq(truncate(mpath, good_size), 0);
    ck_assert_int_eq(truncate(mpath, st.st_size), 0);
    fx_open_vs(&fx);
    ck_assert_int_eq(version_set_recover(fx.vs), 0);
    char now[256];
    describe(fx.vs, now, sizeof now);
    ck_assert_str_eq(now, good);
    fx_close_vs(&fx);
    FILE *f = fopen(mpath, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, (long)good_size + 20, SEEK_SET);
    fputc('#', f);
    fclose(f);
    fx_open_vs(&fx);
    ck_assert_int_eq(version_set_recover(fx.vs), KV_ECORRUPT);
    ck_assert(tu_logbuf_contains(&fx.logged, "damaged, not a torn tail"));
    fx_done(&fx);
}
END_TEST

START_TEST(test_version_set_corrupt_current_or_manifest_is_ecorrupt)
{
    fixture fx;
    fx_init(&fx, "vs-badcurrent");
    fx_close_vs(&fx);
    char path[512];
    filename_current(path, sizeof path, fx.dir);
    FILE *f = fopen(path, "w");
    fputs("MANIFEST-00000x\n", f);
    fclose(f);
    fx_open_vs(&fx);
    ck_assert_int_eq(version_set_recover(fx.vs), KV_ECORRUPT);
    ck_assert(tu_logbuf_contains(&fx.logged, "CURRENT"));

    /* CURRENT naming a manifest that does not exist. */
    f = fopen(path, "w");
    fputs("MANIFEST-000042\n", f);
    fclose(f);
    ck_assert_int_eq(version_set_recover(fx.vs), KV_ECORRUPT);
    ck_assert(tu_logbuf_contains(&fx.logged, "MANIFEST-000042 named by CURRENT is missing"));

    /* A manifest whose record decodes but deletes a table that was never added. */
    version_edit e;
    version_edit_init(&e);
    e.has_format_version = 1;
    e.format_version = VERSION_FORMAT_CURRENT;
    e.has_log_number = e.has_next_file_number = e.has_last_sequence = 1;
    e.next_file_number = 10;
    ck_assert_int_eq(version_edit_delete_file(&e, 2, 5), 0);
    buf rec;
    buf_init(&rec);
    ck_assert_int_eq(version_edit_encode(&e, &rec), 0);
    write_manifest(&fx, 8, &rec, 1);
    ck_assert_int_eq(version_set_recover(fx.vs), KV_ECORRUPT);
    ck_assert(tu_logbuf_contains(&fx.logged, "deletes table 000005.sst not in level 2"));

    /* A manifest whose tables overlap in level 1. */
    version_edit_free(&e);
    version_edit_init(&e);
    e.has_format_version = 1;
    e.format_version = VERSION_FORMAT_CURRENT;
    e.has_log_number = e.has_next_file_number = e.has_last_sequence = 1;
    e.next_file_number = 10;
    edit_add(&fx, &e, 1, 5, "a", "m", 10);
    edit_add(&fx, &e, 1, 6, "k", "z", 10);
    buf_clear(&rec);
    ck_assert_int_eq(version_edit_encode(&e, &rec), 0);
    write_manifest(&fx, 9, &rec, 1);
    ck_assert_int_eq(version_set_recover(fx.vs), KV_ECORRUPT);
    ck_assert(tu_logbuf_contains(&fx.logged, "overlap in level 1"));
    buf_free(&rec);
    version_edit_free(&e);
    fx_done(&fx);
}
END_TEST

START_TEST(test_version_set_apply_refuses_overlap_and_keeps_current)
{
    fixture fx;
    fx_init(&fx, "vs-overlap");
    version_edit e;
    version_edit_init(&e);
    edit_add(&fx, &e, 1, new_number(&fx), "a", "m", 10);
    ck_assert_int_eq(apply(&fx, &e), 0);
    version_edit_free(&e);
    char before[256], after[256];
    describe(fx.vs, before, sizeof before);
    version_edit_init(&e);
    edit_add(&fx, &e, 1, new_number(&fx), "c", "d", 10);
    ck_assert_int_eq(apply(&fx, &e), KV_EINVAL);
    version_edit_free(&e);
    describe(fx.vs, after, sizeof after);
    ck_assert_str_eq(before, after);
    fx_done(&fx);
}
END_TEST

START_TEST(test_version_set_live_files_include_referenced_old_versions)
{
    fixture fx;
    fx_init(&fx, "vs-live");
    version_edit e;
    version_edit_init(&e);
    uint64_t a = new_number(&fx);
    edit_add(&fx, &e, 1, a, "a", "m", 10);
    ck_assert_int_eq(apply(&fx, &e), 0);
    version_edit_free(&e);

    pthread_mutex_lock(&fx.mu);
    version *old = version_set_current(fx.vs);
    version_ref(old);
    pthread_mutex_unlock(&fx.mu);
    version_edit_init(&e);
    ck_assert_int_eq(version_edit_delete_file(&e, 1, a), 0);
    ck_assert_int_eq(apply(&fx, &e), 0);
    version_edit_free(&e);

    uint64_t *live = NULL;
    size_t n = 0;
    pthread_mutex_lock(&fx.mu);
    ck_assert_int_eq(version_set_add_pending_output(fx.vs, 4242), 0);
    ck_assert_int_eq(version_set_live_files(fx.vs, &live, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(live[0], a);
    ck_assert_uint_eq(live[1], 4242);
    version_unref(old);
    version_set_remove_pending_output(fx.vs, 4242);
    n = 0;
    ck_assert_int_eq(version_set_live_files(fx.vs, &live, &n), 0);
    ck_assert_uint_eq(n, 0);
    pthread_mutex_unlock(&fx.mu);
    free(live);
    fx_done(&fx);
}
END_TEST

/* ---- Lookups through tables ----------------------------------------------------------------- */

/* Builds a table from (key, seq, type, value) entries and adds it at `level` to e. */
static void build_table(fixture *fx, version_edit *e, int level, const char *const *keys,
                        const uint64_t *seqs, const int *types, const char *const *vals, int n)
{
    memtable *m = memtable_new();
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(memtable_add(m, seqs[i], types[i], slice_from_str(keys[i]),
                                      slice_from_str(vals[i] ? vals[i] : "")),
                         0);
    iter *it = memtable_iter_new(m);
    file_meta meta;
    uint64_t number = new_number(fx);
    ck_assert_int_eq(table_build(fx->dir, env_posix(), &fx->opts, fx->tc, it, number, &meta), 0);
    ck_assert_uint_gt(meta.size, 0);
    ck_assert_int_eq(version_edit_add_file_meta(e, level, &meta), 0);
    buf_free(&meta.smallest);
    buf_free(&meta.largest);
    iter_free(it);
    memtable_unref(m);
}

/* sst_reader_get callback: counts the entries found (ctx: int). */
static void count_found(void *ctx, slice ikey, slice value)
{
    (void)ikey;
    (void)value;
    ++*(int *)ctx;
}

static int get(fixture *fx, const char *key, uint64_t seq, char *out, size_t n)
{
    buf v;
    buf_init(&v);
    int rc = version_get(version_set_current(fx->vs), slice_from_str(key), seq, &v);
    if (rc == MEMTABLE_FOUND)
        snprintf(out, n, "%.*s", (int)v.len, v.data);
    buf_free(&v);
    return rc;
}

/* Asserts that key reads as want as of seq. */
static void expect_value(fixture *fx, const char *key, uint64_t seq, const char *want)
{
    char out[64];
    ck_assert_int_eq(get(fx, key, seq, out, sizeof out), MEMTABLE_FOUND);
    ck_assert_str_eq(out, want);
}

START_TEST(test_version_get_reads_l0_newest_first_then_deeper_levels)
{
    fixture fx;
    fx_init(&fx, "vs-get");
    version_edit e;
    version_edit_init(&e);
    /* L2: old values; L1: newer; L0 (two tables): newest, one deleting "b". */
    {
        const char *k[] = {"a", "b", "c", "x"};
        uint64_t s[] = {1, 2, 3, 4};
        int t[] = {1, 1, 1, 1};
        const char *v[] = {"a1", "b1", "c1", "x1"};
        build_table(&fx, &e, 2, k, s, t, v, 4);
    }
    {
        const char *k[] = {"a", "c"};
        uint64_t s[] = {10, 11};
        int t[] = {1, 1};
        const char *v[] = {"a2", "c2"};
        build_table(&fx, &e, 1, k, s, t, v, 2);
    }
    apply_at(&fx, &e, 11);
    version_edit_init(&e);
    {
        const char *k[] = {"a", "b"};
        uint64_t s[] = {20, 21};
        int t[] = {1, 0};
        const char *v[] = {"a3", NULL};
        build_table(&fx, &e, 0, k, s, t, v, 2);
    }
    apply_at(&fx, &e, 21);
    version_edit_init(&e);
    {
        const char *k[] = {"a"};
        uint64_t s[] = {30};
        int t[] = {1};
        const char *v[] = {"a4"};
        build_table(&fx, &e, 0, k, s, t, v, 1);
    }
    apply_at(&fx, &e, 30);

    char out[64];
    expect_value(&fx, "a", 100, "a4");
    expect_value(&fx, "a", 25, "a3");
    expect_value(&fx, "a", 10, "a2");
    expect_value(&fx, "a", 9, "a1");
    ck_assert_int_eq(get(&fx, "a", 0, out, sizeof out), MEMTABLE_ABSENT);
    ck_assert_int_eq(get(&fx, "b", 100, out, sizeof out), MEMTABLE_DELETED);
    expect_value(&fx, "b", 20, "b1");
    expect_value(&fx, "c", 100, "c2");
    expect_value(&fx, "x", 100, "x1");
    ck_assert_int_eq(get(&fx, "y", 100, out, sizeof out), MEMTABLE_ABSENT);
    ck_assert_int_eq(get(&fx, "", 100, out, sizeof out), MEMTABLE_ABSENT);

    /* Iterators: 2 L0 tables + L1 + L2, merged they yield every entry in order. */
    iter **its = NULL;
    int n = 0;
    ck_assert_int_eq(version_add_iterators(version_set_current(fx.vs), 1, &its, &n), 0);
    ck_assert_int_eq(n, 4);
    iter *m = merger_new(its, n);
    free(its);
    int count = 0;
    buf prev;
    buf_init(&prev);
    for (iter_seek_first(m); iter_valid(m); iter_next(m), count++) {
        if (count)
            ck_assert_int_lt(ikey_compare(buf_slice(&prev), iter_key(m)), 0);
        buf_clear(&prev);
        buf_append(&prev, iter_key(m).data, iter_key(m).size);
    }
    ck_assert_int_eq(iter_status(m), 0);
    ck_assert_int_eq(count, 9);
    /* And backwards. */
    count = 0;
    for (iter_seek_last(m); iter_valid(m); iter_prev(m))
        count++;
    ck_assert_int_eq(count, 9);
    buf_free(&prev);
    iter_free(m);
    fx_done(&fx);
}
END_TEST

START_TEST(test_version_level_iterator_seeks_across_tables_and_reports_a_lost_one)
{
    fixture fx;
    fx_init(&fx, "vs-concat");
    version_edit e;
    version_edit_init(&e);
    /* L1: [b d] [f h] [j l] */
    const char *groups[3][2] = {{"b", "d"}, {"f", "h"}, {"j", "l"}};
    for (int g = 0; g < 3; g++) {
        uint64_t s[] = {(uint64_t)g * 2 + 1, (uint64_t)g * 2 + 2};
        int t[] = {1, 1};
        build_table(&fx, &e, 1, groups[g], s, t, groups[g], 2);
    }
    apply_at(&fx, &e, 6);
    version *v = version_set_current(fx.vs);
    iter *it = version_concat_iter_new(fx.tc, v->files[1], v->nfiles[1], 1);
    struct {
        const char *target, *want;
    } cases[] = {{"a", "b"}, {"b", "b"}, {"c", "d"}, {"e", "f"},
                 {"i", "j"}, {"l", "l"}, {"m", NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf k = ikey_of(cases[i].target, IKEY_MAX_SEQUENCE, IKEY_TYPE_FOR_SEEK);
        iter_seek(it, buf_slice(&k));
        buf_free(&k);
        if (cases[i].want == NULL) {
            ck_assert(!iter_valid(it));
            ck_assert_int_eq(iter_status(it), 0);
            continue;
        }
        ck_assert_msg(iter_valid(it), "seek %s", cases[i].target);
        ck_assert(slice_equal(ikey_user_key(iter_key(it)), slice_from_str(cases[i].want)));
    }
    /* Walking backwards from "f" crosses into the previous table. */
    buf k = ikey_of("f", IKEY_MAX_SEQUENCE, IKEY_TYPE_FOR_SEEK);
    iter_seek(it, buf_slice(&k));
    iter_prev(it);
    ck_assert(iter_valid(it));
    ck_assert(slice_equal(ikey_user_key(iter_key(it)), slice_from_str("d")));
    iter_free(it);

    /* The middle table disappears: a walk stops there with KV_ECORRUPT, never skipping it. The
     * walks above pinned the tables open (file_meta.pin), so the version set is opened again
     * first: a table lost before anything opened it. */
    fx_close_vs(&fx);
    fx_open_vs(&fx);
    ck_assert_int_eq(version_set_recover(fx.vs), 0);
    v = version_set_current(fx.vs);
    char path[512];
    filename_table(path, sizeof path, fx.dir, v->files[1][1]->number);
    table_cache_evict(fx.tc, v->files[1][1]->number);
    ck_assert_int_eq(unlink(path), 0);
    it = version_concat_iter_new(fx.tc, v->files[1], v->nfiles[1], 1);
    int n = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        n++;
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(iter_status(it), KV_ECORRUPT);
    iter_seek(it, buf_slice(&k)); /* the error is sticky */
    ck_assert(!iter_valid(it));
    ck_assert_int_eq(iter_status(it), KV_ECORRUPT);
    iter_free(it);
    buf_free(&k);
    /* A point lookup in the lost table fails the same way. */
    buf val;
    buf_init(&val);
    ck_assert_int_eq(version_get(v, slice_from_str("g"), 100, &val), KV_ECORRUPT);
    ck_assert_int_eq(version_get(v, slice_from_str("k"), 100, &val), MEMTABLE_ABSENT);
    buf_free(&val);
    fx_done(&fx);
}
END_TEST

START_TEST(test_table_cache_missing_table_is_corrupt_and_logged)
{
    fixture fx;
    fx_init(&fx, "tc-missing");
    iter *it = table_cache_iter_new(fx.tc, 123, 0, 1);
    ck_assert_ptr_nonnull(it);
    ck_assert(!iter_valid(it));
    ck_assert_int_eq(iter_status(it), KV_ECORRUPT);
    iter_free(it);
    ck_assert(
        tu_logbuf_contains(&fx.logged, "table 000123.sst referenced by the manifest is missing"));
    buf k = ikey_of("a", 1, 1);
    ck_assert_int_eq(table_cache_get(fx.tc, 123, 0, buf_slice(&k), NULL, NULL), KV_ECORRUPT);
    buf_free(&k);
    ck_assert_uint_eq(table_cache_open_count(fx.tc), 0);
    fx_done(&fx);
}
END_TEST

/* Builds n one-key L0 tables "k0".."k<n-1>" (value "v<i>") into e. */
static void build_one_key_tables(fixture *fx, version_edit *e, int n)
{
    for (int i = 0; i < n; i++) {
        char key[8], val[8];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "v%d", i);
        const char *k[] = {key}, *v[] = {val};
        uint64_t s[] = {(uint64_t)i + 1};
        int t[] = {IKEY_TYPE_VALUE};
        build_table(fx, e, 0, k, s, t, v, 1);
    }
}

/* fx_init over a table cache of max_open_files tables, with n one-key L0 tables built into e
 * (not applied). */
static void fx_init_with_tables(fixture *fx, const char *tag, int max_open_files, version_edit *e,
                                int n)
{
    fx_init(fx, tag);
    fx_reopen_with_tc(fx, max_open_files);
    version_edit_init(e);
    build_one_key_tables(fx, e, n);
}

START_TEST(test_table_cache_bounds_open_tables)
{
    fixture fx;
    version_edit e;
    fx_init_with_tables(&fx, "tc-bound", 3, &e, 6);
    ck_assert_uint_le(table_cache_open_count(fx.tc), 3);
    /* Every table still reads back through the cache. */
    for (size_t i = 0; i < e.n_added; i++) {
        iter *it = table_cache_iter_new(fx.tc, e.added[i].meta->number, e.added[i].meta->size, 1);
        iter_seek_first(it);
        ck_assert(iter_valid(it));
        iter_free(it);
        ck_assert_uint_le(table_cache_open_count(fx.tc), 3);
    }
    version_edit_free(&e);
    fx_done(&fx);
}
END_TEST

START_TEST(test_table_cache_pins_at_most_half_of_max_open_files)
{
    fixture fx;
    version_edit e;
    fx_init_with_tables(&fx, "tc-pin", 4, &e, 3);
    table_pin *p[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(
            table_cache_pin(fx.tc, e.added[i].meta->number, e.added[i].meta->size, &p[i]), 0);
    ck_assert_ptr_nonnull(p[0]);
    ck_assert_ptr_nonnull(p[1]);
    ck_assert_ptr_null(p[2]); /* 4 / 2 pins out already */
    table_cache_unpin(p[0]);
    ck_assert_int_eq(table_cache_pin(fx.tc, e.added[2].meta->number, e.added[2].meta->size, &p[2]),
                     0);
    ck_assert_ptr_nonnull(p[2]);
    /* A pinned reader reads its table, also after the cache forgot the table. */
    table_cache_evict(fx.tc, e.added[2].meta->number);
    buf k = ikey_of("k2", 100, IKEY_TYPE_FOR_SEEK);
    int calls = 0;
    ck_assert_int_eq(sst_reader_get(table_pin_reader(p[2]), buf_slice(&k), &calls, count_found), 0);
    ck_assert_int_eq(calls, 1);
    buf_free(&k);
    /* A missing table cannot be pinned: the error of opening it, no pin. */
    table_cache_unpin(p[1]);
    table_pin *lost = p[0];
    ck_assert_int_eq(table_cache_pin(fx.tc, 999, 0, &lost), KV_ECORRUPT);
    ck_assert_ptr_null(lost);
    table_cache_unpin(p[2]);
    table_cache_unpin(NULL);
    ck_assert_uint_le(table_cache_open_count(fx.tc), 2);
    version_edit_free(&e);
    fx_done(&fx);
}
END_TEST

START_TEST(test_version_get_pins_tables_until_their_metadata_is_freed)
{
    fixture fx;
    version_edit e;
    fx_init_with_tables(&fx, "vs-pin", 4, &e, 3); /* 2 pins at most */
    uint64_t numbers[3] = {e.added[0].meta->number, e.added[1].meta->number,
                           e.added[2].meta->number};
    uint64_t spare_size = e.added[2].meta->size;
    apply_at(&fx, &e, 2);
    expect_value(&fx, "k0", 10, "v0");
    expect_value(&fx, "k1", 10, "v1");
    /* The two lookups pinned their tables and spent the budget: the third table, probed, reads
     * through the cache, and nothing else can pin. */
    expect_value(&fx, "k2", 10, "v2");
    table_pin *p = NULL;
    ck_assert_int_eq(table_cache_pin(fx.tc, numbers[2], spare_size, &p), 0);
    ck_assert_ptr_null(p);
    /* Two tables leave the version: their metadata, and with them the pins, are freed. */
    version_edit_init(&e);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(version_edit_delete_file(&e, 0, numbers[i]), 0);
    ck_assert_int_eq(apply(&fx, &e), 0);
    version_edit_free(&e);
    ck_assert_int_eq(table_cache_pin(fx.tc, numbers[2], spare_size, &p), 0);
    ck_assert_ptr_nonnull(p);
    table_cache_unpin(p);
    char out[16];
    ck_assert_int_eq(get(&fx, "k0", 10, out, sizeof out), MEMTABLE_ABSENT);
    expect_value(&fx, "k2", 10, "v2");
    fx_done(&fx);
}
END_TEST

/* ---- File names ---------------------------------------------------------------------------- */

START_TEST(test_filename_round_trips_and_rejects_foreign_names)
{
    char p[128];
    enum filename_type t;
    uint64_t n;
    ck_assert_str_eq(filename_table(p, sizeof p, "/d", 7), "/d/000007.sst");
    ck_assert_str_eq(filename_log(p, sizeof p, "/d", 1234567), "/d/1234567.log");
    ck_assert_str_eq(filename_manifest(p, sizeof p, "/d", 3), "/d/MANIFEST-000003");
    ck_assert_str_eq(filename_temp(p, sizeof p, "/d", 3), "/d/000003.tmp");
    ck_assert_str_eq(filename_current(p, sizeof p, "/d"), "/d/CURRENT");
    ck_assert_str_eq(filename_lock(p, sizeof p, "/d"), "/d/LOCK");
    ck_assert(filename_parse("000007.sst", &t, &n) && t == FILE_TYPE_TABLE && n == 7);
    ck_assert(filename_parse("18446744073709551615.log", &t, &n) && t == FILE_TYPE_LOG &&
              n == UINT64_MAX);
    ck_assert(filename_parse("MANIFEST-000012", &t, &n) && t == FILE_TYPE_MANIFEST && n == 12);
    ck_assert(filename_parse("000003.tmp", &t, &n) && t == FILE_TYPE_TEMP && n == 3);
    ck_assert(filename_parse("CURRENT", &t, &n) && t == FILE_TYPE_CURRENT);
    ck_assert(filename_parse("LOCK", &t, &n) && t == FILE_TYPE_LOCK);
    const char *bad[] = {"",          "x.sst",       ".sst",        "7.ldb",
                         "MANIFEST-", "MANIFEST-1x", "CURRENT.bak", "18446744073709551616.sst",
                         "-1.log",    "1.sst.tmp",   "MANIFEST"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!filename_parse(bad[i], &t, &n), "accepted %s", bad[i]);
}
END_TEST

static Suite *version_suite(void)
{
    Suite *s = suite_create("version");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_version_edit_round_trip_keeps_every_field);
    tcase_add_test(tc, test_version_edit_decode_of_every_truncation_never_crashes);
    tcase_add_test(tc, test_version_edit_decode_rejects_malformed_fields);
    tcase_add_test(tc, test_version_edit_of_a_newer_format_is_eversion);
    tcase_add_test(tc, test_version_set_apply_then_recover_gives_the_same_version);
    tcase_add_test(tc, test_version_set_l0_is_newest_first_across_recovery);
    tcase_add_test(tc, test_version_set_missing_table_is_corrupt_and_named);
    tcase_add_test(tc, test_version_set_recover_changes_nothing_on_disk);
    tcase_add_test(tc, test_version_set_manifest_of_a_newer_format_is_eversion);
    tcase_add_test(tc, test_version_set_torn_manifest_tail_is_dropped);
    tcase_add_test(tc, test_version_set_corrupt_current_or_manifest_is_ecorrupt);
    tcase_add_test(tc, test_version_set_apply_refuses_overlap_and_keeps_current);
    tcase_add_test(tc, test_version_set_live_files_include_referenced_old_versions);
    tcase_add_test(tc, test_version_get_reads_l0_newest_first_then_deeper_levels);
    tcase_add_test(tc, test_version_level_iterator_seeks_across_tables_and_reports_a_lost_one);
    tcase_add_test(tc, test_table_cache_missing_table_is_corrupt_and_logged);
    tcase_add_test(tc, test_table_cache_bounds_open_tables);
    tcase_add_test(tc, test_table_cache_pins_at_most_half_of_max_open_files);
    tcase_add_test(tc, test_version_get_pins_tables_until_their_metadata_is_freed);
    tcase_add_test(tc, test_filename_round_trips_and_rejects_foreign_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(version_suite());
}
