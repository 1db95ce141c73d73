/* test_fs_dircache.c - the directory listing cache (fs/dircache.h): reuse of a listing while
 * its directory is unchanged, invalidation by every kind of change, the sequence-number rule
 * that keeps a listing built across a change out of the cache, its bounds, and listings that
 * stay exact while other threads create, unlink and rename in the directory. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkutil.h"
#include "dircache.h"
#include "fs.h"
#include "fs_fixture.h"
#include "fs_int.h"
#include "kvcore/kv.h"
#include "testutil.h"

#define MAX_NAMES 2048

/* A whole listing of dir, names other than . and .. in the order returned (strdup'd). */
struct listing {
    int n;
    char *names[MAX_NAMES];
    uint64_t inos[MAX_NAMES];
    uint64_t dotdot;
};

static void listing_free(struct listing *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->names[i]);
    l->n = 0;
}

/* Reads d from offset 2 to the end into l; asserts names come in strictly ascending order. */
static void read_stream(struct fs_dir *d, struct listing *l)
{
    struct fs_dirent de;
    uint64_t off = 2;
    int rc;
    l->n = 0;
    ck_assert_int_eq(fs_readdir(d, 1, &de), 1);
    l->dotdot = de.ino;
    while ((rc = fs_readdir(d, off, &de)) == 1) {
        ck_assert_uint_eq(de.namelen, strlen(de.name));
        ck_assert_int_lt(l->n, MAX_NAMES);
        if (l->n > 0)
            ck_assert_int_lt(strcmp(l->names[l->n - 1], de.name), 0);
        l->names[l->n] = strdup(de.name);
        l->inos[l->n] = de.ino;
        l->n++;
        off = de.next_off;
    }
    ck_assert_int_eq(rc, 0);
}

static void list_dir(uint64_t dir, struct listing *l)
{
    struct fs_dir *d;
    ck_assert_int_eq(fs_opendir(tfs_fs, dir, &d), 0);
    read_stream(d, l);
    fs_closedir(tfs_fs, d);
}

/* Lists dir and checks it holds exactly the names in want (ascending, NULL-terminated). */
static void expect_names(uint64_t dir, const char *const *want)
{
    struct listing l;
    int n = 0;
    list_dir(dir, &l);
    for (; want[n]; n++) {
        ck_assert_int_lt(n, l.n);
        ck_assert_str_eq(l.names[n], want[n]);
    }
    ck_assert_int_eq(l.n, n);
    listing_free(&l);
}

static struct fs_dc_stats dc_stats(void)
{
    struct fs_dc_stats st;
    fs_dc_get_stats(tfs_fs->dc, &st);
    return st;
}

/* Replaces the fixture's filesystem by one on the same store with dir_cache_bytes. */
static void reopen_fs_with_dir_cache(size_t bytes)
{
    struct fs_config cfg;
    fs_close(tfs_fs);
    memset(&cfg, 0, sizeof cfg);
    cfg.store_path = tfs_dir;
    cfg.dir_cache_bytes = bytes;
    ck_assert_int_eq(fs_open(tfs_db, &cfg, 0, 0, &tfs_fs), 0);
}

START_TEST(test_dircache_second_listing_of_an_unchanged_directory_is_a_hit)
{
    uint64_t d = tfs_mkdir(1, "d");
    static const char *const want[] = {"a", "b", "c", NULL};
    struct fs_dc_stats before, after;
    tfs_mkfile(d, "b");
    tfs_mkfile(d, "c");
    tfs_mkfile(d, "a");
    ck_assert_ptr_nonnull(tfs_fs->dc); /* on by default */
    before = dc_stats();
    expect_names(d, want);
    after = dc_stats();
    ck_assert_uint_eq(after.inserts, before.inserts + 1);
    ck_assert_uint_eq(after.hits, before.hits);
    expect_names(d, want);
    expect_names(d, want);
    ck_assert_uint_eq(dc_stats().hits, after.hits + 2);
    ck_assert_uint_eq(dc_stats().inserts, after.inserts);
}
END_TEST

START_TEST(test_dircache_every_change_to_a_directory_is_seen_by_the_next_listing)
{
    uint64_t d = tfs_mkdir(1, "d"), o = tfs_mkdir(1, "o"), f;
    struct fs_entry e;
    struct listing l;

    f = tfs_mkfile(d, "f");
    expect_names(d, (const char *const[]){"f", NULL});
    expect_names(d, (const char *const[]){"f", NULL}); /* now cached */
    ck_assert_int_eq(fs_mknod(tfs_fs, &tfs_root, d, "n", S_IFIFO | 0644, 0, &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    expect_names(d, (const char *const[]){"f", "n", NULL});
    ck_assert_int_eq(fs_mkdir(tfs_fs, &tfs_root, d, "m", 0755, &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    expect_names(d, (const char *const[]){"f", "m", "n", NULL});
    ck_assert_int_eq(fs_symlink(tfs_fs, &tfs_root, d, "s", "f", &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    expect_names(d, (const char *const[]){"f", "m", "n", "s", NULL});
    ck_assert_int_eq(fs_link(tfs_fs, f, d, "g", &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    expect_names(d, (const char *const[]){"f", "g", "m", "n", "s", NULL});
    ck_assert_int_eq(fs_create(tfs_fs, &tfs_root, d, "c", 0644, &e), 0);
    fs_forget(tfs_fs, e.ino, 1);
    fs_release(tfs_fs, e.ino);
    expect_names(d, (const char *const[]){"c", "f", "g", "m", "n", "s", NULL});
    ck_assert_int_eq(fs_unlink(tfs_fs, d, "g"), 0);
    expect_names(d, (const char *const[]){"c", "f", "m", "n", "s", NULL});
    ck_assert_int_eq(fs_rmdir(tfs_fs, d, "m"), 0);
    expect_names(d, (const char *const[]){"c", "f", "n", "s", NULL});
    ck_assert_int_eq(fs_rename(tfs_fs, d, "c", d, "b", 0), 0); /* within */
    expect_names(d, (const char *const[]){"b", "f", "n", "s", NULL});
    expect_names(o, (const char *const[]){NULL});
    ck_assert_int_eq(fs_rename(tfs_fs, d, "b", o, "x", 0), 0); /* out of d, into o */
    expect_names(d, (const char *const[]){"f", "n", "s", NULL});
    expect_names(o, (const char *const[]){"x", NULL});
    ck_assert_int_eq(fs_rename(tfs_fs, o, "x", d, "f", 0), 0); /* over f */
    expect_names(d, (const char *const[]){"f", "n", "s", NULL});
    expect_names(o, (const char *const[]){NULL});
    ck_assert_uint_ne(tfs_lookup(d, "f"), f);
    tfs_mkfile(o, "y");
    expect_names(o, (const char *const[]){"y", NULL});
    ck_assert_int_eq(fs_rename(tfs_fs, o, "y", d, "n", RENAME_EXCHANGE), 0);
    list_dir(d, &l);
    ck_assert_int_eq(l.n, 3);
    ck_assert_uint_eq(l.inos[1], tfs_lookup(d, "n"));
    ck_assert(S_ISREG(tfs_getattr(l.inos[1]).st_mode)); /* y's inode, under n */
    listing_free(&l);
    list_dir(o, &l);
    ck_assert_int_eq(l.n, 1);
    ck_assert(S_ISFIFO(tfs_getattr(l.inos[0]).st_mode));
    listing_free(&l);
}
END_TEST

START_TEST(test_dircache_moved_directory_lists_its_new_parent_as_dotdot)
{
    uint64_t a = tfs_mkdir(1, "a"), b = tfs_mkdir(1, "b"), d = tfs_mkdir(a, "d");
    struct listing l;
    tfs_mkfile(d, "f");
    list_dir(d, &l);
    ck_assert_uint_eq(l.dotdot, a);
    listing_free(&l);
    list_dir(d, &l); /* served from the cache */
    listing_free(&l);
    ck_assert_int_eq(fs_rename(tfs_fs, a, "d", b, "d", 0), 0);
    list_dir(d, &l);
    ck_assert_uint_eq(l.dotdot, b);
    ck_assert_int_eq(l.n, 1);
    listing_free(&l);
    ck_assert_int_eq(fs_unlink(tfs_fs, d, "f"), 0);
    ck_assert_int_eq(fs_rmdir(tfs_fs, b, "d"), 0);
    {
        struct fs_dir *dir;
        ck_assert_int_eq(fs_opendir(tfs_fs, d, &dir), -ENOENT);
    }
}
END_TEST

START_TEST(test_dircache_open_stream_keeps_its_listing_and_offsets_after_changes)
{
    uint64_t d = tfs_mkdir(1, "d");
    struct fs_dir *dir;
    struct fs_dirent de;
    struct listing l;
    char name[16];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "f%03d", i);
        tfs_mkfile(d, name);
    }
    list_dir(d, &l); /* cached */
    listing_free(&l);
    ck_assert_int_eq(fs_opendir(tfs_fs, d, &dir), 0);
    ck_assert_int_eq(fs_readdir(dir, 2 + 50, &de), 1);
    ck_assert_str_eq(de.name, "f050");
    ck_assert_int_eq(fs_unlink(tfs_fs, d, "f000"), 0);
    ck_assert_int_eq(fs_unlink(tfs_fs, d, "f051"), 0);
    tfs_mkfile(d, "f0505");
    ck_assert_int_eq(fs_readdir(dir, de.next_off, &de), 1); /* the stream's state, unchanged */
    ck_assert_str_eq(de.name, "f051");
    ck_assert_int_eq(fs_readdir(dir, 2, &de), 1); /* rewind (seekdir to a saved offset) */
    ck_assert_str_eq(de.name, "f000");
    read_stream(dir, &l);
    ck_assert_int_eq(l.n, 100);
    listing_free(&l);
    fs_closedir(tfs_fs, dir);
    list_dir(d, &l);
    ck_assert_int_eq(l.n, 99);
    ck_assert_str_eq(l.names[0], "f001");
    ck_assert_str_eq(l.names[50], "f0505");
    ck_assert_str_eq(l.names[51], "f052");
    listing_free(&l);
}
END_TEST

START_TEST(test_dircache_listing_of_a_stream_opened_before_a_change_is_not_kept)
{
    uint64_t d = tfs_mkdir(1, "d");
    struct fs_dc_stats st0;
    struct fs_dir *dir;
    struct listing l;
    tfs_mkfile(d, "a");
    /* opened and closed without reading: no scan, nothing cached */
    st0 = dc_stats();
    ck_assert_int_eq(fs_opendir(tfs_fs, d, &dir), 0);
    fs_closedir(tfs_fs, dir);
    ck_assert_uint_eq(dc_stats().inserts, st0.inserts);
    /* the stream's snapshot predates "b": its listing lacks it and must not be cached */
    ck_assert_int_eq(fs_opendir(tfs_fs, d, &dir), 0);
    tfs_mkfile(d, "b");
    read_stream(dir, &l);
    ck_assert_int_eq(l.n, 1);
    listing_free(&l);
    fs_closedir(tfs_fs, dir);
    ck_assert_uint_eq(dc_stats().inserts, st0.inserts);
    ck_assert_uint_eq(dc_stats().rejected, st0.rejected + 1);
    expect_names(d, (const char *const[]){"a", "b", NULL});
    expect_names(d, (const char *const[]){"a", "b", NULL});
    ck_assert_uint_eq(dc_stats().hits, st0.hits + 1);
}
END_TEST

START_TEST(test_dircache_listing_built_across_a_change_is_not_kept)
{
    struct fs_dc *dc = fs_dc_new(1 << 20, 4);
    const struct fs_dc_list *got;
    struct fs_dc_list *l = fs_dc_list_new();
    uint64_t s;

    ck_assert_ptr_nonnull(dc);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(fs_dc_list_add(l, "a", 1, 7, S_IFREG), 0);
    /* a change begins and ends between the sample and the insert */
    s = fs_dc_sample(dc, 2);
    fs_dc_change_begin(dc, 2);
    fs_dc_change_end(dc, 2);
    fs_dc_insert(dc, 2, s, 100, l);
    ck_assert_int_eq(fs_dc_get(dc, 2, 100, &got), FS_DC_MISS);
    /* sampled while a change is under way (odd): never kept */
    fs_dc_change_begin(dc, 2);
    fs_dc_change_begin(dc, 2); /* idempotent under the lock */
    s = fs_dc_sample(dc, 2);
    ck_assert_uint_eq(s & 1, 1);
    fs_dc_insert(dc, 2, s, 100, l);
    ck_assert_int_eq(fs_dc_get(dc, 2, 100, &got), FS_DC_MISS);
    fs_dc_change_end(dc, 2);
    fs_dc_change_end(dc, 2);
    ck_assert_uint_eq(fs_dc_sample(dc, 2) & 1, 0);
    /* an unchanged stripe: kept; a change in another stripe does not matter */
    s = fs_dc_sample(dc, 2);
    fs_dc_change_begin(dc, 3);
    fs_dc_change_end(dc, 3);
    fs_dc_insert(dc, 2, s, 100, l);
    ck_assert_int_eq(fs_dc_get(dc, 2, 100, &got), FS_DC_HIT);
    ck_assert_ptr_eq(got, l);
    fs_dc_list_put(got);
    /* a change begun after the insert makes it dead at once, before the commit */
    fs_dc_change_begin(dc, 2);
    ck_assert_int_eq(fs_dc_get(dc, 2, 100, &got), FS_DC_MISS);
    fs_dc_change_end(dc, 2);
    ck_assert_int_eq(fs_dc_get(dc, 2, 100, &got), FS_DC_MISS);
    ck_assert_uint_eq(fs_dc_list_count(l), 1); /* the caller's reference still holds it */
    fs_dc_list_put(l);
    fs_dc_free(dc);
}
END_TEST

START_TEST(test_dircache_holds_at_most_its_capacity_and_evicts_least_recent)
{
    struct fs_dc *dc = fs_dc_new(64 << 10, 1);
    const struct fs_dc_list *got;
    struct fs_dc_stats st;
    char name[32];

    ck_assert_ptr_nonnull(dc);
    ck_assert_ptr_null(fs_dc_new(0, 1)); /* 0: no cache */
    for (uint64_t ino = 1; ino <= 40; ino++) {
        struct fs_dc_list *l = fs_dc_list_new();
        for (int i = 0; i < 100; i++) {
            int n = snprintf(name, sizeof name, "entry-%04d", i);
            ck_assert_int_eq(fs_dc_list_add(l, name, (size_t)n, ino * 1000 + (uint64_t)i, S_IFREG),
                             0);
        }
        fs_dc_list_seal(l);
        fs_dc_insert(dc, 0, fs_dc_sample(dc, 0), ino, l);
        fs_dc_list_put(l);
        if (ino > 1) { /* keep the first one recently used */
            ck_assert_int_eq(fs_dc_get(dc, 0, 1, &got), FS_DC_HIT);
            fs_dc_list_put(got);
        }
        fs_dc_get_stats(dc, &st);
        ck_assert_uint_le(st.bytes, 64 << 10);
    }
    ck_assert_uint_lt(st.lists, 40);
    ck_assert_int_eq(fs_dc_get(dc, 0, 1, &got), FS_DC_HIT);
    {
        char buf[256];
        uint64_t ino;
        uint32_t type;
        ck_assert_uint_eq(fs_dc_list_entry(got, 99, buf, &ino, &type), 10);
        ck_assert_str_eq(buf, "entry-0099");
        ck_assert_uint_eq(ino, 1099);
        ck_assert_uint_eq(type, S_IFREG);
    }
    fs_dc_list_put(got);
    ck_assert_int_eq(fs_dc_get(dc, 0, 2, &got), FS_DC_MISS); /* evicted */
    ck_assert_int_eq(fs_dc_get(dc, 0, 40, &got), FS_DC_HIT);
    fs_dc_list_put(got);
    /* a listing over half the capacity is not kept */
    {
        struct fs_dc_list *big = fs_dc_list_new();
        char longname[200];
        memset(longname, 'z', sizeof longname);
        for (int i = 0; i < 200; i++)
            ck_assert_int_eq(fs_dc_list_add(big, longname, sizeof longname, 5, S_IFDIR), 0);
        fs_dc_list_seal(big);
        ck_assert_uint_gt(fs_dc_list_bytes(big), fs_dc_max_list_bytes(dc));
        fs_dc_insert(dc, 0, fs_dc_sample(dc, 0), 77, big);
        ck_assert_int_eq(fs_dc_get(dc, 0, 77, &got), FS_DC_MISS);
        fs_dc_list_put(big);
    }
    fs_dc_free(dc);
}
END_TEST

START_TEST(test_dircache_directory_too_big_for_the_cache_lists_from_the_store)
{
    uint64_t d;
    char name[64];
    struct listing l;
    struct fs_dc_stats st;

    reopen_fs_with_dir_cache(16 << 10); /* listings of at most 8 KiB */
    d = tfs_mkdir(1, "big");
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "a-fairly-long-file-name-%04d", i);
        tfs_mkfile(d, name);
    }
    list_dir(d, &l);
    ck_assert_int_eq(l.n, 1000);
    listing_free(&l);
    list_dir(d, &l); /* recorded as too big: not scanned into memory again */
    ck_assert_int_eq(l.n, 1000);
    ck_assert_str_eq(l.names[999], "a-fairly-long-file-name-0999");
    listing_free(&l);
    fs_dc_get_stats(tfs_fs->dc, &st);
    ck_assert_uint_eq(st.hits, 0);
    ck_assert_uint_le(st.bytes, 16 << 10);
    ck_assert_int_eq(fs_unlink(tfs_fs, d, "a-fairly-long-file-name-0999"), 0);
    list_dir(d, &l);
    ck_assert_int_eq(l.n, 999);
    listing_free(&l);

    reopen_fs_with_dir_cache(FS_CONFIG_NO_DIR_CACHE); /* off: every listing reads the store */
    ck_assert_ptr_null(tfs_fs->dc);
    list_dir(d, &l);
    ck_assert_int_eq(l.n, 999);
    listing_free(&l);
    tfs_mkfile(d, "b");
    list_dir(d, &l);
    ck_assert_int_eq(l.n, 1000);
    ck_assert_str_eq(l.names[999], "b");
    listing_free(&l);
}
END_TEST

START_TEST(test_dircache_streams_on_cached_listings_pin_no_snapshot_and_close_cleanly)
{
    uint64_t d = tfs_mkdir(1, "d");
    struct fs_dir *a, *b;
    struct fs_dirent de;
    struct listing l;
    kv_stats st;
    tfs_mkfile(d, "f");
    list_dir(d, &l); /* cached */
    listing_free(&l);
    ck_assert_int_eq(fs_opendir(tfs_fs, d, &a), 0);
    ck_assert_int_eq(fs_opendir(tfs_fs, d, &b), 0);
    ck_assert_int_eq(fs_readdir(b, 2, &de), 1);
    ck_assert_str_eq(de.name, "f");
    ck_assert_int_eq(kv_get_stats(tfs_db, &st), 0);
    ck_assert_uint_eq(st.live_snapshots, 0);
    /* left open: fs_close (the teardown) releases them, and their listings (LeakSanitizer) */
    (void)a;
}
END_TEST

/* ---- Listings under concurrent changes ------------------------------------------------------ */

#define RACE_DIR_NAMES 64 /* "s%02d": present throughout */
#define RACE_WINDOW 40    /* created names alive at once */

struct race {
    uint64_t dir;
    atomic_long created;      /* c%08ld for every number below this was created */
    atomic_long unlink_begun; /* unlinks of every number below this may have begun */
    atomic_int stop;
    long listings;
};

static void *race_writer(void *arg)
{
    struct race *r = arg;
    char name[32];
    struct fs_entry e;
    for (long i = 0; !atomic_load(&r->stop); i++) {
        snprintf(name, sizeof name, "c%08ld", i);
        ck_assert_int_eq(fs_create(tfs_fs, &tfs_root, r->dir, name, 0644, &e), 0);
        fs_forget(tfs_fs, e.ino, 1);
        fs_release(tfs_fs, e.ino);
        atomic_store(&r->created, i + 1);
        /* the pair x_a / x_b: exactly one exists at any time (rename is one commit) */
        ck_assert_int_eq(
            fs_rename(tfs_fs, r->dir, i % 2 ? "x_b" : "x_a", r->dir, i % 2 ? "x_a" : "x_b", 0), 0);
        if (i >= RACE_WINDOW) {
            atomic_store(&r->unlink_begun, i - RACE_WINDOW + 1);
            snprintf(name, sizeof name, "c%08ld", i - RACE_WINDOW);
            ck_assert_int_eq(fs_unlink(tfs_fs, r->dir, name), 0);
        }
    }
    return NULL;
}

/* Every listing: sorted, nothing twice, the stable names all there, exactly one of x_a/x_b,
 * and every c name created before opendir and not unlinked before the listing ended. */
static void race_check_one(struct race *r)
{
    struct listing l;
    long created = atomic_load(&r->created), seen_c = 0, lo, hi;
    int stable = 0, pair = 0;
    list_dir(r->dir, &l);
    lo = atomic_load(&r->unlink_begun);
    hi = created;
    for (int i = 0; i < l.n; i++) {
        const char *n = l.names[i];
        if (n[0] == 's') {
            stable++;
        } else if (n[0] == 'x') {
            pair++;
        } else {
            long num = strtol(n + 1, NULL, 10);
            ck_assert_int_lt(num, atomic_load(&r->created) + 1);
            if (num >= lo && num < hi)
                seen_c++;
        }
    }
    ck_assert_int_eq(stable, RACE_DIR_NAMES);
    ck_assert_int_eq(pair, 1);
    if (hi > lo)
        ck_assert_int_eq(seen_c, hi - lo);
    listing_free(&l);
}

static void *race_reader(void *arg)
{
    struct race *r = arg;
    while (!atomic_load(&r->stop))
        race_check_one(r);
    return NULL;
}

START_TEST(test_dircache_listings_stay_exact_under_concurrent_create_unlink_rename)
{
    struct race r;
    pthread_t w, rd[2];
    char name[16];
    struct fs_dc_stats st;
    long n = 0;

    memset(&r, 0, sizeof r);
    r.dir = tfs_mkdir(1, "race");
    for (int i = 0; i < RACE_DIR_NAMES; i++) {
        snprintf(name, sizeof name, "s%02d", i);
        tfs_mkfile(r.dir, name);
    }
    tfs_mkfile(r.dir, "x_a");
    ck_assert_int_eq(pthread_create(&w, NULL, race_writer, &r), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&rd[i], NULL, race_reader, &r), 0);
    /* the main thread lists too, counting, until the writer has done enough */
    while (atomic_load(&r.created) < 1500) {
        race_check_one(&r);
        n++;
    }
    atomic_store(&r.stop, 1);
    pthread_join(w, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(rd[i], NULL);
    ck_assert_int_gt(n, 10);
    /* quiet now: listings come from the cache and are still exact */
    race_check_one(&r);
    race_check_one(&r);
    fs_dc_get_stats(tfs_fs->dc, &st);
    ck_assert_uint_gt(st.hits, 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fs_dircache");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, tfs_setup, tfs_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_dircache_second_listing_of_an_unchanged_directory_is_a_hit);
    tcase_add_test(tc, test_dircache_every_change_to_a_directory_is_seen_by_the_next_listing);
    tcase_add_test(tc, test_dircache_moved_directory_lists_its_new_parent_as_dotdot);
    tcase_add_test(tc, test_dircache_open_stream_keeps_its_listing_and_offsets_after_changes);
    tcase_add_test(tc, test_dircache_listing_of_a_stream_opened_before_a_change_is_not_kept);
    tcase_add_test(tc, test_dircache_listing_built_across_a_change_is_not_kept);
    tcase_add_test(tc, test_dircache_holds_at_most_its_capacity_and_evicts_least_recent);
    tcase_add_test(tc, test_dircache_directory_too_big_for_the_cache_lists_from_the_store);
    tcase_add_test(tc, test_dircache_streams_on_cached_listings_pin_no_snapshot_and_close_cleanly);
    tcase_add_test(tc, test_dircache_listings_stay_exact_under_concurrent_create_unlink_rename);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
