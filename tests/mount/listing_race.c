/* listing_race.c - listings of a directory stay exact while other threads change it.
 *
 *   listing_race DIR SECONDS
 *
 * DIR (which must exist and be empty) gets 64 names s00..s63 that stay throughout and one of the
 * pair x_a / x_b. A writer thread then, over and over: creates c<i> (i = 0, 1, ...), renames x_a
 * to x_b or back, and unlinks c<i - 40>. Three reader threads list DIR in a loop (opendir,
 * readdir to the end, closedir) and check each listing: names in strictly ascending byte order
 * once each (kvfs's order), all 64 s names, exactly one of x_a and x_b, and every c<j> whose
 * create returned before the opendir and whose unlink had not begun when the listing ended. A
 * listing served from a stale cache (a change not invalidating it) misses a new c name. Every
 * failure is printed; exit 1 if any, 0 if none and at least 50 listings were checked.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { LR_STABLE = 64, LR_WINDOW = 40, LR_READERS = 3, LR_REPORT_MAX = 20 };

static const char *lr_dir;
static atomic_long lr_created;      /* c<j> for every j below this was created (returned) */
static atomic_long lr_unlink_begun; /* unlinks of every j below this may have begun */
static atomic_int lr_stop;
static atomic_long lr_errors, lr_listings;

static void lr_fail(const char *fmt, long a, long b)
{
    if (atomic_fetch_add(&lr_errors, 1) < LR_REPORT_MAX) {
        printf("listing_race: ");
        printf(fmt, a, b);
        printf("\n");
        fflush(stdout);
    }
}

static void lr_die(const char *what, const char *path)
{
    fprintf(stderr, "listing_race: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void lr_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", lr_dir, name);
}

static void lr_touch(const char *name)
{
    char p[4096];
    int fd;
    lr_path(p, sizeof p, name);
    fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0)
        lr_die("create", p);
    close(fd);
}

static void *lr_writer(void *arg)
{
    char name[32], a[4096], b[4096];
    (void)arg;
    for (long i = 0; !atomic_load(&lr_stop); i++) {
        snprintf(name, sizeof name, "c%08ld", i);
        lr_touch(name);
        atomic_store(&lr_created, i + 1);
        lr_path(a, sizeof a, i % 2 ? "x_b" : "x_a");
        lr_path(b, sizeof b, i % 2 ? "x_a" : "x_b");
        if (rename(a, b) != 0)
            lr_die("rename", a);
        if (i >= LR_WINDOW) {
            atomic_store(&lr_unlink_begun, i - LR_WINDOW + 1);
            snprintf(name, sizeof name, "c%08ld", i - LR_WINDOW);
            lr_path(a, sizeof a, name);
            if (unlink(a) != 0)
                lr_die("unlink", a);
        }
    }
    return NULL;
}

static void lr_check_one(void)
{
    long hi = atomic_load(&lr_created), lo, got = 0, stable = 0, pair = 0, nc = 0;
    long cs[4 * LR_WINDOW];
    char last[256] = "";
    struct dirent *de;
    DIR *d = opendir(lr_dir);

    if (!d)
        lr_die("opendir", lr_dir);
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        if (strcmp(last, n) >= 0)
            lr_fail("names out of order or repeated (after %ld listings, %ld)",
                    atomic_load(&lr_listings), 0);
        snprintf(last, sizeof last, "%s", n);
        if (n[0] == 's') {
            stable++;
        } else if (n[0] == 'x') {
            pair++;
        } else if (n[0] == 'c' && nc < 4 * LR_WINDOW) {
            cs[nc++] = strtol(n + 1, NULL, 10);
        } else {
            lr_fail("more c names than ever exist at once (%ld, %ld)", nc, 0);
        }
    }
    if (errno)
        lr_die("readdir", lr_dir);
    closedir(d);
    /* c<j> for j in [lo, hi) existed from before the opendir until after the listing */
    lo = atomic_load(&lr_unlink_begun);
    for (long i = 0; i < nc; i++) {
        if (cs[i] > atomic_load(&lr_created))
            lr_fail("c%08ld listed before its create began (created %ld)", cs[i],
                    atomic_load(&lr_created));
        if (cs[i] >= lo && cs[i] < hi)
            got++;
    }
    if (hi > lo && got != hi - lo)
        lr_fail("a listing has %ld of the %ld c names that existed throughout", got, hi - lo);
    if (stable != LR_STABLE)
        lr_fail("%ld of %ld names present throughout were listed", stable, LR_STABLE);
    if (pair != 1)
        lr_fail("%ld of the pair x_a/x_b listed (want %ld)", pair, 1);
    atomic_fetch_add(&lr_listings, 1);
}

static void *lr_reader(void *arg)
{
    (void)arg;
    while (!atomic_load(&lr_stop))
        lr_check_one();
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t w, r[LR_READERS];
    char name[16];
    double secs;
    struct timespec t0, t;

    if (argc != 3) {
        fprintf(stderr, "usage: listing_race DIR SECONDS\n");
        return 2;
    }
    lr_dir = argv[1];
    secs = atof(argv[2]);
    for (int i = 0; i < LR_STABLE; i++) {
        snprintf(name, sizeof name, "s%02d", i);
        lr_touch(name);
    }
    lr_touch("x_a");
    lr_check_one(); /* a first listing, which a cache keeps */
    lr_check_one();
    if (pthread_create(&w, NULL, lr_writer, NULL) != 0)
        return 1;
    for (int i = 0; i < LR_READERS; i++)
        if (pthread_create(&r[i], NULL, lr_reader, NULL) != 0)
            return 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        usleep(20000);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
    atomic_store(&lr_stop, 1);
    pthread_join(w, NULL);
    for (int i = 0; i < LR_READERS; i++)
        pthread_join(r[i], NULL);
    lr_check_one(); /* quiet again: cached, and still exact */
    lr_check_one();
    printf("listing_race: %ld listings, %ld names created, %ld errors\n", atomic_load(&lr_listings),
           atomic_load(&lr_created), atomic_load(&lr_errors));
    if (atomic_load(&lr_listings) < 50) {
        printf("listing_race: too few listings to mean anything\n");
        return 1;
    }
    return atomic_load(&lr_errors) ? 1 : 0;
}
