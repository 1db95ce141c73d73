/* test_fault_env.c - the fault-injecting env simulates power loss and faults as promised. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault_env.h"
#include "testutil.h"

static char *tdir;

static void setup(void)
{
    tdir = tu_tempdir("fault_env");
    ck_assert_ptr_nonnull(tdir);
}

static void teardown(void)
{
    tu_rmtree(tdir);
    free(tdir);
}

static char *pathof(const char *name)
{
    static char buf[8][4096];
    static int slot;
    char *p = buf[slot++ % 8];
    snprintf(p, 4096, "%s/%s", tdir, name);
    return p;
}

/* Reads the whole real file; returns its length, or -1 if absent. */
static long read_real(const char *name, char *out, size_t cap)
{
    FILE *f = fopen(pathof(name), "rb");
    if (!f)
        return -1;
    size_t n = fread(out, 1, cap, f);
    fclose(f);
    return (long)n;
}

static int real_exists(const char *name)
{
    struct stat st;
    return stat(pathof(name), &st) == 0;
}

/* Creates name with contents through the env, optionally synced and dir-synced. */
static void make_file(const kv_env *env, const char *name, const char *data, int sync, int dsync)
{
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, pathof(name), &f), 0);
    ck_assert_int_eq(env_append(f, data, strlen(data)), 0);
    if (sync)
        ck_assert_int_eq(env_sync(f), 0);
    ck_assert_int_eq(env_close(f), 0);
    if (dsync)
        ck_assert_int_eq(env->sync_dir(env, tdir), 0);
}

START_TEST(test_fault_env_drop_unsynced_loses_exactly_the_unsynced_tail)
{
    fault_env *fe = fault_env_new(1);
    const kv_env *env = fault_env_env(fe);
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, pathof("a"), &f), 0);
    ck_assert_int_eq(env->sync_dir(env, tdir), 0);
    ck_assert_int_eq(env_append(f, "hello", 5), 0);
    ck_assert_int_eq(env_sync(f), 0);
    ck_assert_int_eq(env_append(f, "world", 5), 0);
    ck_assert_int_eq(fault_env_durable_size(fe, pathof("a")), 5);
    char buf[64];
    ck_assert_int_eq(read_real("a", buf, sizeof(buf)), 10); /* written through before crash */
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    ck_assert_int_eq(read_real("a", buf, sizeof(buf)), 5);
    ck_assert(memcmp(buf, "hello", 5) == 0);
    env_close(f);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_tear_keeps_a_random_prefix_of_the_tail)
{
    int saw_partial = 0, saw_none = 0, saw_all = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        char name[32];
        snprintf(name, sizeof(name), "t%d", (int)seed);
        fault_env *fe = fault_env_new(seed);
        const kv_env *env = fault_env_env(fe);
        env_file *f;
        ck_assert_int_eq(env->open_writable(env, pathof(name), &f), 0);
        ck_assert_int_eq(env->sync_dir(env, tdir), 0);
        ck_assert_int_eq(env_append(f, "0123", 4), 0);
        ck_assert_int_eq(env_sync(f), 0);
        ck_assert_int_eq(env_append(f, "456789", 6), 0);
        ck_assert_int_eq(env_close(f), 0);
        ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_TEAR_UNSYNCED), 0);
        char buf[64];
        long n = read_real(name, buf, sizeof(buf));
        ck_assert_int_ge(n, 4);
        ck_assert_int_le(n, 10);
        ck_assert(memcmp(buf, "0123456789", (size_t)n) == 0);
        saw_none |= n == 4;
        saw_all |= n == 10;
        saw_partial |= n > 4 && n < 10;
        fault_env_free(fe);
    }
    ck_assert(saw_partial);
    ck_assert(saw_none || saw_all);
}
END_TEST

START_TEST(test_fault_env_tear_is_deterministic_for_a_seed)
{
    long sizes[2];
    for (int round = 0; round < 2; round++) {
        fault_env *fe = fault_env_new(777);
        const kv_env *env = fault_env_env(fe);
        make_file(env, "d", "", 1, 1);
        env_file *f;
        ck_assert_int_eq(env->open_appendable(env, pathof("d"), &f), 0);
        char big[1000];
        memset(big, 'x', sizeof(big));
        ck_assert_int_eq(env_append(f, big, sizeof(big)), 0);
        env_close(f);
        ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_TEAR_UNSYNCED), 0);
        char buf[2000];
        sizes[round] = read_real("d", buf, sizeof(buf));
        unlink(pathof("d"));
        fault_env_free(fe);
    }
    ck_assert_int_eq(sizes[0], sizes[1]);
}
END_TEST

START_TEST(test_fault_env_create_without_dir_sync_disappears)
{
    fault_env *fe = fault_env_new(2);
    const kv_env *env = fault_env_env(fe);
    make_file(env, "kept", "k", 1, 1);
    make_file(env, "lost", "l", 1, 0); /* data synced, but the name never was */
    ck_assert(real_exists("lost"));
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    ck_assert(real_exists("kept"));
    ck_assert(!real_exists("lost"));
    char buf[8];
    ck_assert_int_eq(read_real("kept", buf, sizeof(buf)), 1);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_lenient_mode_lets_a_synced_new_file_survive)
{
    fault_env *fe = fault_env_new(15);
    const kv_env *env = fault_env_env(fe);
    fault_env_set_create_durable_on_sync(fe, 1);
    make_file(env, "synced", "s", 1, 0);
    make_file(env, "unsynced", "u", 0, 0);
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    ck_assert(real_exists("synced"));
    ck_assert(!real_exists("unsynced"));
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_rename_without_dir_sync_is_undone)
{
    fault_env *fe = fault_env_new(3);
    const kv_env *env = fault_env_env(fe);
    make_file(env, "CURRENT", "old", 1, 1);
    make_file(env, "tmp", "new", 1, 1);
    ck_assert_int_eq(env->rename(env, pathof("tmp"), pathof("CURRENT")), 0);
    ck_assert(!real_exists("tmp"));
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    char buf[16];
    ck_assert_int_eq(read_real("CURRENT", buf, sizeof(buf)), 3);
    ck_assert(memcmp(buf, "old", 3) == 0);
    ck_assert_int_eq(read_real("tmp", buf, sizeof(buf)), 3);
    ck_assert(memcmp(buf, "new", 3) == 0);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_rename_with_dir_sync_survives)
{
    fault_env *fe = fault_env_new(4);
    const kv_env *env = fault_env_env(fe);
    make_file(env, "CURRENT", "old", 1, 1);
    make_file(env, "tmp", "new", 1, 0);
    ck_assert_int_eq(env->rename(env, pathof("tmp"), pathof("CURRENT")), 0);
    ck_assert_int_eq(env->sync_dir(env, tdir), 0);
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    char buf[16];
    ck_assert_int_eq(read_real("CURRENT", buf, sizeof(buf)), 3);
    ck_assert(memcmp(buf, "new", 3) == 0);
    ck_assert(!real_exists("tmp"));
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_unsynced_data_of_renamed_file_is_lost)
{
    fault_env *fe = fault_env_new(5);
    const kv_env *env = fault_env_env(fe);
    make_file(env, "x.tmp", "payload", 0, 0); /* never synced */
    ck_assert_int_eq(env->rename(env, pathof("x.tmp"), pathof("x.sst")), 0);
    ck_assert_int_eq(env->sync_dir(env, tdir), 0);
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    char buf[16];
    ck_assert_int_eq(read_real("x.sst", buf, sizeof(buf)), 0); /* name durable, data not */
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_unlink_without_dir_sync_is_undone)
{
    fault_env *fe = fault_env_new(6);
    const kv_env *env = fault_env_env(fe);
    make_file(env, "old.log", "records", 1, 1);
    ck_assert_int_eq(env->unlink(env, pathof("old.log")), 0);
    ck_assert(!real_exists("old.log"));
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    char buf[16];
    ck_assert_int_eq(read_real("old.log", buf, sizeof(buf)), 7);
    ck_assert(memcmp(buf, "records", 7) == 0);
    /* Once dir-synced, the unlink sticks. */
    ck_assert_int_eq(env->unlink(env, pathof("old.log")), 0);
    ck_assert_int_eq(env->sync_dir(env, tdir), 0);
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    ck_assert(!real_exists("old.log"));
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_handles_fail_after_crash_and_env_reopens)
{
    fault_env *fe = fault_env_new(7);
    const kv_env *env = fault_env_env(fe);
    env_file *w, *r;
    make_file(env, "f", "abc", 1, 1);
    ck_assert_int_eq(env->open_appendable(env, pathof("f"), &w), 0);
    ck_assert_int_eq(env->open_readable(env, pathof("f"), &r), 0);
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    ck_assert_int_eq(env_append(w, "d", 1), KV_EIO);
    ck_assert_int_eq(env_sync(w), KV_EIO);
    char buf[8];
    size_t got = 99;
    ck_assert_int_eq(env_pread(r, buf, 3, 0, &got), KV_EIO);
    env_close(w);
    env_close(r);
    /* New handles work. */
    ck_assert_int_eq(env->open_readable(env, pathof("f"), &r), 0);
    ck_assert_int_eq(env_pread(r, buf, 8, 0, &got), 0);
    ck_assert_uint_eq(got, 3);
    ck_assert(memcmp(buf, "abc", 3) == 0);
    env_close(r);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_nth_append_fails_with_chosen_error_and_writes_nothing)
{
    fault_env *fe = fault_env_new(8);
    const kv_env *env = fault_env_env(fe);
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, pathof("n"), &f), 0);
    fault_env_fail_op(fe, FAULT_OP_APPEND, 3, 1, KV_ENOSPC);
    ck_assert_int_eq(env_append(f, "a", 1), 0);
    ck_assert_int_eq(env_append(f, "b", 1), 0);
    ck_assert_int_eq(env_append(f, "c", 1), KV_ENOSPC);
    ck_assert_int_eq(env_append(f, "d", 1), 0);
    fault_env_fail_op(fe, FAULT_OP_SYNC, 1, 0, KV_EIO);
    ck_assert_int_eq(env_sync(f), KV_EIO);
    ck_assert_int_eq(env_sync(f), KV_EIO); /* count 0: sticky */
    ck_assert_int_eq(fault_env_durable_size(fe, pathof("n")), 0);
    fault_env_clear_rules(fe);
    ck_assert_int_eq(env_sync(f), 0);
    env_close(f);
    char buf[8];
    ck_assert_int_eq(read_real("n", buf, sizeof(buf)), 3);
    ck_assert(memcmp(buf, "abd", 3) == 0);
    fault_env_counters c;
    fault_env_get_counters(fe, &c);
    ck_assert_uint_eq(c.ops[FAULT_OP_APPEND], 4);
    ck_assert_uint_eq(c.ops[FAULT_OP_SYNC], 3);
    ck_assert_uint_eq(c.faults_injected, 3);
    ck_assert_uint_eq(c.bytes_appended, 3);
    ck_assert_uint_eq(c.bytes_synced, 3);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_rename_fault_leaves_both_names)
{
    fault_env *fe = fault_env_new(9);
    const kv_env *env = fault_env_env(fe);
    make_file(env, "a", "1", 1, 1);
    fault_env_fail_op(fe, FAULT_OP_RENAME, 1, 1, KV_EIO);
    ck_assert_int_eq(env->rename(env, pathof("a"), pathof("b")), KV_EIO);
    ck_assert(real_exists("a"));
    ck_assert(!real_exists("b"));
    ck_assert_int_eq(env->rename(env, pathof("a"), pathof("b")), 0);
    ck_assert(real_exists("b"));
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_space_limit_fails_appends_until_lifted)
{
    fault_env *fe = fault_env_new(10);
    const kv_env *env = fault_env_env(fe);
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, pathof("s"), &f), 0);
    fault_env_set_space_limit(fe, 10);
    ck_assert_int_eq(env_append(f, "12345678", 8), 0);
    ck_assert_int_eq(env_append(f, "abc", 3), KV_ENOSPC);
    ck_assert_int_eq(env_append(f, "ab", 2), 0); /* exactly at the limit */
    ck_assert_int_eq(env_append(f, "z", 1), KV_ENOSPC);
    fault_env_set_space_limit(fe, UINT64_MAX);
    ck_assert_int_eq(env_append(f, "z", 1), 0);
    env_close(f);
    char buf[32];
    ck_assert_int_eq(read_real("s", buf, sizeof(buf)), 11);
    ck_assert(memcmp(buf, "12345678abz", 11) == 0);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_halt_after_n_mutations_freezes_the_disk)
{
    fault_env *fe = fault_env_new(11);
    const kv_env *env = fault_env_env(fe);
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, pathof("h"), &f), 0);
    fault_env_halt_after(fe, 2);
    ck_assert(!fault_env_halted(fe));
    ck_assert_int_eq(env_append(f, "a", 1), 0);
    ck_assert_int_eq(env_sync(f), 0);
    ck_assert(fault_env_halted(fe));
    ck_assert_int_eq(env_append(f, "b", 1), KV_EIO);
    ck_assert_int_eq(env->rename(env, pathof("h"), pathof("h2")), KV_EIO);
    env_file *g;
    ck_assert_int_eq(env->open_writable(env, pathof("g"), &g), KV_EIO);
    ck_assert(!real_exists("g"));
    ck_assert(real_exists("h"));
    /* Reads still work while halted. */
    env_file *r;
    ck_assert_int_eq(env->open_readable(env, pathof("h"), &r), 0);
    char c = 0;
    size_t got = 0;
    ck_assert_int_eq(env_pread(r, &c, 1, 0, &got), 0);
    ck_assert_uint_eq(got, 1);
    ck_assert_int_eq(c, 'a');
    env_close(r);
    env_close(f);
    /* The crash clears the halt; h was never dir-synced, so it is gone. */
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    ck_assert(!fault_env_halted(fe));
    ck_assert(!real_exists("h"));
    make_file(env, "after", "ok", 1, 1);
    ck_assert(real_exists("after"));
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_flip_bit_changes_exactly_one_bit)
{
    fault_env *fe = fault_env_new(12);
    const kv_env *env = fault_env_env(fe);
    make_file(env, "b", "AAAA", 1, 1);
    ck_assert_int_eq(fault_env_flip_bit(fe, pathof("b"), 2, 0), 0);
    char buf[8];
    ck_assert_int_eq(read_real("b", buf, sizeof(buf)), 4);
    ck_assert(memcmp(buf, "AA@A", 4) == 0);
    ck_assert_int_eq(fault_env_flip_bit(fe, pathof("b"), 4, 0), -1); /* past the end */
    ck_assert_int_eq(fault_env_flip_bit(fe, pathof("nope"), 0, 0), -1);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_files_it_never_wrote_count_as_durable)
{
    FILE *f = fopen(pathof("pre"), "wb");
    ck_assert_ptr_nonnull(f);
    fputs("existing", f);
    fclose(f);
    fault_env *fe = fault_env_new(13);
    const kv_env *env = fault_env_env(fe);
    env_file *w;
    ck_assert_int_eq(env->open_appendable(env, pathof("pre"), &w), 0);
    ck_assert_int_eq(env_append(w, "+more", 5), 0);
    env_close(w);
    ck_assert_int_eq(fault_env_durable_size(fe, pathof("pre")), 8);
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    char buf[32];
    ck_assert_int_eq(read_real("pre", buf, sizeof(buf)), 8);
    ck_assert(memcmp(buf, "existing", 8) == 0);
    fault_env_free(fe);
}
END_TEST

START_TEST(test_fault_env_path_spelling_does_not_hide_dir_sync)
{
    fault_env *fe = fault_env_new(14);
    const kv_env *env = fault_env_env(fe);
    char p[4200], d[4200];
    snprintf(p, sizeof(p), "%s//./file", tdir);
    snprintf(d, sizeof(d), "%s/", tdir);
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, p, &f), 0);
    ck_assert_int_eq(env_sync(f), 0);
    env_close(f);
    ck_assert_int_eq(env->sync_dir(env, d), 0);
    ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
    ck_assert(real_exists("file"));
    fault_env_free(fe);
}
END_TEST

/* Appends n bytes of a pattern (never zero) to name, whose durable contents are `synced`
 * bytes of the same pattern. */
static void pattern(char *out, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(1 + (off + i) % 251);
}

START_TEST(test_fault_env_lose_pages_keeps_each_unsynced_page_whole_or_zero)
{
    enum { SYNCED = 5000, TAIL = 40000 };
    static char want[SYNCED + TAIL], got[SYNCED + TAIL + 1];
    pattern(want, 0, sizeof(want));
    int saw_hole_before_data = 0, saw_short = 0;
    fault_env_counters c;
    for (uint64_t seed = 1; seed <= 30; seed++) {
        fault_env *fe = fault_env_new(seed);
        const kv_env *env = fault_env_env(fe);
        env_file *f;
        ck_assert_int_eq(env->open_writable(env, pathof("p"), &f), 0);
        ck_assert_int_eq(env->sync_dir(env, tdir), 0);
        ck_assert_int_eq(env_append(f, want, SYNCED), 0);
        ck_assert_int_eq(env_sync(f), 0);
        ck_assert_int_eq(env_append(f, want + SYNCED, TAIL), 0);
        ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_LOSE_PAGES), 0);
        env_close(f);
        long n = read_real("p", got, sizeof(got));
        ck_assert_int_ge(n, SYNCED);
        ck_assert_int_le(n, SYNCED + TAIL);
        ck_assert(memcmp(got, want, SYNCED) == 0); /* synced bytes always survive */
        saw_short |= n < SYNCED + TAIL;
        int hole = 0;
        for (long page = SYNCED / 4096 * 4096; page < n; page += 4096) {
            long from = page > SYNCED ? page : SYNCED, to = page + 4096 < n ? page + 4096 : n;
            int kept = memcmp(got + from, want + from, (size_t)(to - from)) == 0;
            int zero = 1;
            for (long i = from; i < to && zero; i++)
                zero = got[i] == 0;
            ck_assert_msg(kept || zero, "seed %d: page at %ld is neither written nor lost",
                          (int)seed, page);
            if (zero && !kept)
                hole = 1;
            else if (hole)
                saw_hole_before_data = 1;
        }
        fault_env_get_counters(fe, &c);
        ck_assert_uint_eq(c.files_cut, n < SYNCED + TAIL || hole);
        ck_assert_uint_eq(fault_env_crash(fe, FAULT_CRASH_LOSE_PAGES), 0); /* nothing left */
        ck_assert_int_eq(read_real("p", got, sizeof(got)), n);
        unlink(pathof("p"));
        fault_env_free(fe);
    }
    ck_assert(saw_hole_before_data); /* pages were written back out of order */
    ck_assert(saw_short);
}
END_TEST

START_TEST(test_fault_env_mixed_crash_treats_each_file_on_its_own)
{
    /* Two files with the same unsynced history: some crash keeps all of one's tail and none
     * of the other's, i.e. unsynced writes are reordered across files. */
    int saw_reorder = 0;
    for (uint64_t seed = 1; seed <= 60 && !saw_reorder; seed++) {
        fault_env *fe = fault_env_new(seed);
        const kv_env *env = fault_env_env(fe);
        make_file(env, "m1", "", 1, 1);
        make_file(env, "m2", "", 1, 1);
        for (int i = 1; i <= 2; i++) {
            env_file *f;
            ck_assert_int_eq(env->open_appendable(env, pathof(i == 1 ? "m1" : "m2"), &f), 0);
            ck_assert_int_eq(env_append(f, "abcdefgh", 8), 0);
            env_close(f);
        }
        ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_MIXED), 0);
        char buf[16];
        long a = read_real("m1", buf, sizeof(buf)), b = read_real("m2", buf, sizeof(buf));
        saw_reorder = (a == 0 && b == 8) || (a == 8 && b == 0);
        unlink(pathof("m1"));
        unlink(pathof("m2"));
        fault_env_free(fe);
    }
    ck_assert(saw_reorder);
}
END_TEST

START_TEST(test_fault_env_random_dir_ops_keep_or_lose_each_unsynced_create)
{
    int seen[4] = {0, 0, 0, 0}; /* by (a survives) + 2 * (b survives) */
    for (uint64_t seed = 1; seed <= 40; seed++) {
        fault_env *fe = fault_env_new(seed);
        fault_env_set_random_dir_ops(fe, 1);
        const kv_env *env = fault_env_env(fe);
        make_file(env, "ca", "a", 1, 0);
        make_file(env, "cb", "b", 1, 0);
        ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
        fault_env_counters c;
        fault_env_get_counters(fe, &c);
        ck_assert_uint_eq(c.dir_ops_kept + c.dir_ops_undone, 2);
        int a = real_exists("ca"), b = real_exists("cb");
        ck_assert_uint_eq(c.dir_ops_kept, (uint64_t)(a + b));
        seen[a + 2 * b] = 1;
        unlink(pathof("ca"));
        unlink(pathof("cb"));
        fault_env_free(fe);
    }
    ck_assert(seen[0] && seen[1] && seen[2] && seen[3]);
}
END_TEST

START_TEST(test_fault_env_random_dir_ops_keep_each_names_order)
{
    /* old -> b by rename, then a new a: if the new a survives, the rename before it on the
     * same name must too (else undoing it would bring the old a back over the new one). */
    int saw_new = 0, saw_old = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        fault_env *fe = fault_env_new(seed);
        fault_env_set_random_dir_ops(fe, 1);
        const kv_env *env = fault_env_env(fe);
        make_file(env, "na", "old", 1, 1);
        ck_assert_int_eq(env->rename(env, pathof("na"), pathof("nb")), 0);
        make_file(env, "na", "new", 1, 0);
        ck_assert_int_eq(fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED), 0);
        char a[8], b[8];
        long la = read_real("na", a, sizeof(a)), lb = read_real("nb", b, sizeof(b));
        /* Allowed: nothing kept (old a), the rename kept (b only), both kept (new a, b). */
        if (la == -1 || memcmp(a, "new", 3) == 0) {
            saw_new |= la == 3;
            ck_assert_int_eq(lb, 3);
            ck_assert(memcmp(b, "old", 3) == 0);
        } else {
            saw_old = 1;
            ck_assert_int_eq(la, 3);
            ck_assert(memcmp(a, "old", 3) == 0);
            ck_assert_int_eq(lb, -1);
        }
        unlink(pathof("na"));
        unlink(pathof("nb"));
        fault_env_free(fe);
    }
    ck_assert(saw_new && saw_old);
}
END_TEST

static Suite *fault_env_suite(void)
{
    Suite *s = suite_create("fault_env");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_fault_env_drop_unsynced_loses_exactly_the_unsynced_tail);
    tcase_add_test(tc, test_fault_env_tear_keeps_a_random_prefix_of_the_tail);
    tcase_add_test(tc, test_fault_env_tear_is_deterministic_for_a_seed);
    tcase_add_test(tc, test_fault_env_create_without_dir_sync_disappears);
    tcase_add_test(tc, test_fault_env_lenient_mode_lets_a_synced_new_file_survive);
    tcase_add_test(tc, test_fault_env_rename_without_dir_sync_is_undone);
    tcase_add_test(tc, test_fault_env_rename_with_dir_sync_survives);
    tcase_add_test(tc, test_fault_env_unsynced_data_of_renamed_file_is_lost);
    tcase_add_test(tc, test_fault_env_unlink_without_dir_sync_is_undone);
    tcase_add_test(tc, test_fault_env_handles_fail_after_crash_and_env_reopens);
    tcase_add_test(tc, test_fault_env_nth_append_fails_with_chosen_error_and_writes_nothing);
    tcase_add_test(tc, test_fault_env_rename_fault_leaves_both_names);
    tcase_add_test(tc, test_fault_env_space_limit_fails_appends_until_lifted);
    tcase_add_test(tc, test_fault_env_halt_after_n_mutations_freezes_the_disk);
    tcase_add_test(tc, test_fault_env_flip_bit_changes_exactly_one_bit);
    tcase_add_test(tc, test_fault_env_files_it_never_wrote_count_as_durable);
    tcase_add_test(tc, test_fault_env_path_spelling_does_not_hide_dir_sync);
    tcase_add_test(tc, test_fault_env_lose_pages_keeps_each_unsynced_page_whole_or_zero);
    tcase_add_test(tc, test_fault_env_mixed_crash_treats_each_file_on_its_own);
    tcase_add_test(tc, test_fault_env_random_dir_ops_keep_or_lose_each_unsynced_create);
    tcase_add_test(tc, test_fault_env_random_dir_ops_keep_each_names_order);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fault_env_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
