/* metabench.c - times metadata operations on one directory of any filesystem, for fsbench.
 *
 *   metabench [-n FILES] [-t DIRS] [-s SEED] [-d] [-r REPEAT] [-p PHASES] DIR
 *
 * Phases, in this order (each one a line "phase<TAB>operations<TAB>seconds" on stdout):
 *   create      FILES empty files f0000000.. in DIR/files (open O_CREAT|O_EXCL, close)
 *   stat        stat of every file, in a random order (seeded, so every filesystem sees the same)
 *   readdir     one pass of readdir over the directory; fails unless it counts FILES entries
 *   readdir_lstat  readdir plus an lstat of every entry (what ls -l does)
 *   rename      each file renamed to r0000000.. in the same directory
 *   unlink      each renamed file unlinked
 *   mkdir_tree  DIRS directories under DIR/tree, breadth first, 10 children per directory
 *   rmdir_tree  the tree removed again, deepest first
 * -d drops the kernel's dentry and inode caches (sync, then 2 > /proc/sys/vm/drop_caches) before
 * stat, readdir and readdir_lstat, so the filesystem itself answers instead of the kernel's
 * caches; it needs root. The drop is not timed. -r runs each listing phase (readdir,
 * readdir_lstat: they change nothing) up to REPEAT times, each after its own drop, stopping
 * once that phase has taken MB_REPEAT_BUDGET seconds in all, and reports the median run: a
 * listing of 1,000 entries takes well under a millisecond, where one scheduling delay on a
 * shared machine would otherwise decide the figure. Every failure exits 1 naming the call and
 * path.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; a plain cc build of this file does not */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { MB_TREE_FANOUT = 10, MB_NAME_MAX = 32, MB_REPEAT_MAX = 99 };
#define MB_REPEAT_BUDGET 1.0 /* seconds of repeated listing per phase, at most */

struct mb_config {
    long files;
    long dirs;
    long repeat; /* runs of each listing phase, at most; the median is reported */
    uint64_t seed;
    int drop_caches;
    const char *phases; /* comma-separated subset, NULL for all */
};

static double mb_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void mb_die(const char *what, const char *path)
{
    fprintf(stderr, "metabench: %s %s: %s\n", what, path ? path : "", strerror(errno));
    exit(1);
}

static void mb_report(const char *phase, long ops, double seconds)
{
    printf("%s\t%ld\t%.6f\n", phase, ops, seconds);
    fflush(stdout);
}

static int mb_phase_wanted(const struct mb_config *c, const char *phase)
{
    size_t n = strlen(phase);
    const char *p = c->phases;

    if (!p)
        return 1;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (len == n && strncmp(p, phase, n) == 0)
            return 1;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static void mb_drop_caches(const struct mb_config *c)
{
    int fd;

    if (!c->drop_caches)
        return;
    sync();
    fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (fd < 0)
        mb_die("open", "/proc/sys/vm/drop_caches");
    if (write(fd, "2", 1) != 1)
        mb_die("write", "/proc/sys/vm/drop_caches");
    close(fd);
}

/* xorshift64*: a fixed, seedable order that is the same on every filesystem */
static uint64_t mb_rand(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static long *mb_shuffled(long n, uint64_t seed)
{
    long *order = malloc((size_t)n * sizeof *order);
    uint64_t state = seed ? seed : 1;

    if (!order) {
        errno = ENOMEM;
        mb_die("malloc", "order");
    }
    for (long i = 0; i < n; i++)
        order[i] = i;
    for (long i = n - 1; i > 0; i--) {
        long j = (long)(mb_rand(&state) % (uint64_t)(i + 1));
        long t = order[i];

        order[i] = order[j];
        order[j] = t;
    }
    return order;
}

static void mb_name(char *buf, char prefix, long i)
{
    snprintf(buf, MB_NAME_MAX, "%c%07ld", prefix, i);
}

/* One timed pass over the directory (with an lstat of every entry if plus); fails unless it
 * counts `files` entries besides . and .. */
static double mb_list(const char *dpath, int plus, long files)
{
    long seen = 0;
    struct dirent *de;
    struct stat st;
    double t0 = mb_now();
    DIR *d = opendir(dpath);

    if (!d)
        mb_die("opendir", dpath);
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (plus && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            mb_die("lstat", de->d_name);
        seen++;
    }
    if (errno != 0)
        mb_die("readdir", dpath);
    closedir(d);
    if (seen != files) {
        fprintf(stderr, "metabench: readdir of %s saw %ld entries, expected %ld\n", dpath, seen,
                files);
        exit(1);
    }
    return mb_now() - t0;
}

static int mb_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static void mb_files(int dfd, const char *dpath, const struct mb_config *c)
{
    char name[MB_NAME_MAX], to[MB_NAME_MAX];
    long *order = mb_shuffled(c->files, c->seed);
    struct stat st;
    double t0;

    if (mb_phase_wanted(c, "create")) {
        t0 = mb_now();
        for (long i = 0; i < c->files; i++) {
            int fd;

            mb_name(name, 'f', i);
            fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
            if (fd < 0)
                mb_die("create", name);
            if (close(fd) != 0)
                mb_die("close", name);
        }
        mb_report("create", c->files, mb_now() - t0);
    }

    if (mb_phase_wanted(c, "stat")) {
        mb_drop_caches(c);
        t0 = mb_now();
        for (long i = 0; i < c->files; i++) {
            mb_name(name, 'f', order[i]);
            if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                mb_die("stat", name);
            if (!S_ISREG(st.st_mode) || st.st_size != 0) {
                fprintf(stderr, "metabench: %s: not an empty regular file\n", name);
                exit(1);
            }
        }
        mb_report("stat", c->files, mb_now() - t0);
    }

    for (int plus = 0; plus < 2; plus++) {
        const char *phase = plus ? "readdir_lstat" : "readdir";
        double runs[MB_REPEAT_MAX], total = 0;
        long n = 0;

        if (!mb_phase_wanted(c, phase))
            continue;
        while (n < c->repeat && (n == 0 || total < MB_REPEAT_BUDGET)) {
            mb_drop_caches(c);
            runs[n] = mb_list(dpath, plus, c->files);
            total += runs[n++];
        }
        qsort(runs, (size_t)n, sizeof runs[0], mb_cmp_double);
        mb_report(phase, c->files, runs[n / 2]);
    }

    if (mb_phase_wanted(c, "rename")) {
        t0 = mb_now();
        for (long i = 0; i < c->files; i++) {
            mb_name(name, 'f', i);
            mb_name(to, 'r', i);
            if (renameat(dfd, name, dfd, to) != 0)
                mb_die("rename", name);
        }
        mb_report("rename", c->files, mb_now() - t0);
    }

    if (mb_phase_wanted(c, "unlink")) {
        char prefix = mb_phase_wanted(c, "rename") ? 'r' : 'f';

        t0 = mb_now();
        for (long i = 0; i < c->files; i++) {
            mb_name(name, prefix, i);
            if (unlinkat(dfd, name, 0) != 0)
                mb_die("unlink", name);
        }
        mb_report("unlink", c->files, mb_now() - t0);
    }
    free(order);
}

/* Directory i (1-based, breadth first) is child (i-1)%FANOUT of directory (i-1)/FANOUT, where
 * directory 0 is the tree's root; its path is built by walking up to the root. */
static void mb_tree_path(char *buf, size_t cap, long i)
{
    long chain[64];
    int depth = 0;
    size_t len = 0;

    while (i > 0 && depth < 64) {
        chain[depth++] = i;
        i = (i - 1) / MB_TREE_FANOUT;
    }
    buf[0] = '\0';
    for (int k = depth - 1; k >= 0; k--) {
        int n = snprintf(buf + len, cap - len, "%sd%ld", len ? "/" : "", chain[k]);

        if (n < 0 || (size_t)n >= cap - len) {
            fprintf(stderr, "metabench: tree path too long\n");
            exit(1);
        }
        len += (size_t)n;
    }
}

static void mb_tree(int tfd, const struct mb_config *c)
{
    char path[4096];
    double t0;

    if (mb_phase_wanted(c, "mkdir_tree")) {
        t0 = mb_now();
        for (long i = 1; i <= c->dirs; i++) {
            mb_tree_path(path, sizeof path, i);
            if (mkdirat(tfd, path, 0755) != 0)
                mb_die("mkdir", path);
        }
        mb_report("mkdir_tree", c->dirs, mb_now() - t0);
    }
    if (mb_phase_wanted(c, "rmdir_tree")) {
        t0 = mb_now();
        for (long i = c->dirs; i >= 1; i--) {
            mb_tree_path(path, sizeof path, i);
            if (unlinkat(tfd, path, AT_REMOVEDIR) != 0)
                mb_die("rmdir", path);
        }
        mb_report("rmdir_tree", c->dirs, mb_now() - t0);
    }
}

static int mb_open_subdir(const char *top, const char *sub, char *path, size_t cap)
{
    int fd;

    if ((size_t)snprintf(path, cap, "%s/%s", top, sub) >= cap) {
        errno = ENAMETOOLONG;
        mb_die("path", top);
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        mb_die("mkdir", path);
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        mb_die("open", path);
    return fd;
}

static void mb_usage(void)
{
    fprintf(stderr,
            "usage: metabench [-n FILES] [-t DIRS] [-s SEED] [-d] [-r REPEAT] [-p PHASE,...] "
            "DIR\n"
            "phases: create,stat,readdir,readdir_lstat,rename,unlink,mkdir_tree,"
            "rmdir_tree\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct mb_config c = {.files = 10000, .dirs = 10000, .repeat = 1, .seed = 42};
    char path[4096];
    int opt, fd;

    while ((opt = getopt(argc, argv, "n:t:s:dr:p:")) != -1) {
        switch (opt) {
        case 'n':
            c.files = strtol(optarg, NULL, 10);
            break;
        case 't':
            c.dirs = strtol(optarg, NULL, 10);
            break;
        case 's':
            c.seed = strtoull(optarg, NULL, 10);
            break;
        case 'd':
            c.drop_caches = 1;
            break;
        case 'r':
            c.repeat = strtol(optarg, NULL, 10);
            break;
        case 'p':
            c.phases = optarg;
            break;
        default:
            mb_usage();
        }
    }
    if (optind != argc - 1 || c.files < 0 || c.dirs < 0 || c.repeat < 1 || c.repeat > MB_REPEAT_MAX)
        mb_usage();

    if (c.files > 0) {
        fd = mb_open_subdir(argv[optind], "files", path, sizeof path);
        mb_files(fd, path, &c);
        close(fd);
        if (mb_phase_wanted(&c, "unlink") && rmdir(path) != 0)
            mb_die("rmdir", path);
    }
    if (c.dirs > 0) {
        fd = mb_open_subdir(argv[optind], "tree", path, sizeof path);
        mb_tree(fd, &c);
        close(fd);
        if (mb_phase_wanted(&c, "rmdir_tree") && rmdir(path) != 0)
            mb_die("rmdir", path);
    }
    return 0;
}
