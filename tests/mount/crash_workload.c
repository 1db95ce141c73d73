/* crash_workload: a random multi-process workload that logs what must survive a crash, and the
 * checker that verifies a recovered tree against those logs.
 *
 *   crash_workload run [-m fsync|ack|ackdata] [-w WORKERS] [-t SECONDS] [-S SEED] [-B MAXBIG]
 *                      [-F MARKER] DIR LOG
 *   crash_workload verify DIR LOG
 *
 * run creates DIR (and DIR/w<i>/d<j>, made durable first), then forks WORKERS processes; worker
 * i works only under DIR/w<i> and appends one line per event to LOG.w<i> (LOG lives OUTSIDE the
 * mount, so it survives the daemon). Operations: create (small and MiB-sized files, written in
 * random pieces, with and without fsync), overwrite in place, atomic replace (write tmp, fsync,
 * rename over an existing or new name, sometimes across directories), hard link, truncate
 * (shrink and grow), unlink, set/remove xattrs. Every line is written BEFORE the operation it
 * announces ("P": this path may now be in state X) or AFTER the operation is durable ("S": this
 * path is in state X and nothing earlier may come back). A state is "-" (absent), "D" (a
 * directory), "*" (a regular file, any content) or "<fnv64hex>:<size>" (exact content).
 *
 * When is an operation durable? -m fsync: after fsync of the file and of the directories whose
 * entries changed (all a power cut promises). -m ack: additionally every namespace and metadata
 * operation (create, rename, link, unlink, truncate, setxattr) as soon as it returns, which is
 * what kvfs promises against kill -9 of the daemon (durability contract 1). -m ackdata: ack, and
 * also file data as soon as write(2) returns (for mounts without the writeback cache).
 *
 * A worker stops at its deadline, or quietly (exit 0) when the daemon is gone (ENOTCONN,
 * ECONNABORTED, or STATFS on the mount says so) or, with -F, once the file MARKER exists (the
 * test creates it just before it injects a fault, e.g. shuts the store's filesystem down); any
 * other error is reported and exits 1.
 *
 * verify replays every LOG.w* (and LOG.setup) to a set of allowed states per path and per xattr,
 * then checks DIR: each logged path's state must be one of its allowed states (content by hash,
 * byte for byte), and no file, directory or xattr may exist that no log line announced. A read
 * error (EIO) is a failure. Prints every problem; exit 0 clean, 1 problems, 2 usage/IO errors.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define SUBDIRS 3
#define MAX_FILES 64
#define XATTR_NAMES 6
#define XATTR_MAX_VALUE 3000
#define IOBUF (256 * 1024)

/* snprintf that refuses to truncate: a cut path would test the wrong file. */
static void xsnprintf(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void xsnprintf(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "crash_workload: name too long\n");
        exit(2);
    }
}

enum mode { MODE_FSYNC, MODE_ACK, MODE_ACKDATA };

/* ---- content: byte k of a file is a pure function of (seed, k), or 0 from zero_from on ---- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ULL;
    return mix64(*s);
}

struct content {
    uint64_t seed;
    uint64_t size;
    uint64_t zero_from; /* bytes at and after this offset are zero (holes from growing) */
};

static void content_fill(const struct content *c, uint64_t off, unsigned char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t k = off + i;
        if (k >= c->zero_from) {
            buf[i] = 0;
            continue;
        }
        buf[i] =
            (unsigned char)(mix64(c->seed ^ (k >> 3) * 0x9E3779B97F4A7C15ULL) >> (8 * (k & 7)));
    }
}

#define FNV_INIT 0xcbf29ce484222325ULL

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static unsigned char iobuf[IOBUF];

static void content_state(const struct content *c, char *out, size_t cap)
{
    uint64_t h = FNV_INIT;
    for (uint64_t off = 0; off < c->size; off += IOBUF) {
        size_t n = c->size - off < IOBUF ? (size_t)(c->size - off) : IOBUF;
        content_fill(c, off, iobuf, n);
        h = fnv(h, iobuf, n);
    }
    xsnprintf(out, cap, "%016" PRIx64 ":%" PRIu64, h, c->size);
}

/* ---- the worker ---------------------------------------------------------------------------- */

struct wfile {
    char name[64]; /* relative to the worker's directory: d<j>/f<k> */
    struct content c;
    int settled; /* content known exactly (last S/P line gives it) */
    int linked;  /* shares its inode with another name: never modified in place */
};

struct worker {
    int id;
    enum mode mode;
    char dir[4096]; /* DIR/w<i> */
    const char *top;
    int logfd;
    int dirfd;                /* the worker's directory, to probe whether the mount is alive */
    const char *fault_marker; /* -F: once this file exists, every error is the injected fault */
    uint64_t rs;
    struct wfile files[MAX_FILES];
    int nfiles;
    unsigned next_name;
    uint64_t max_big;
    double deadline;
    long ops;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wlog(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wlog(struct worker *w, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof line - 1) {
        fprintf(stderr, "crash_workload: log line too long\n");
        exit(2);
    }
    line[n++] = '\n';
    /* One write per line with O_APPEND: a line is never split, and the log is on a filesystem
     * the test does not crash, so it holds every line written before the daemon died. */
    if (write(w->logfd, line, (size_t)n) != n) {
        fprintf(stderr, "crash_workload: cannot write the log: %s\n", strerror(errno));
        exit(2);
    }
}

/* An operation failed: daemon gone -> quiet exit 0; anything else -> exit 1. */
static void wfail(struct worker *w, const char *what, const char *path)
{
    int e = errno;
    struct statfs sfs;
    /* After the kill, writeback and flush-at-close report EIO: ask the mount whether it is
     * still there (STATFS goes to the daemon even on a lazily detached mount). */
    if (e == ENOTCONN || e == ECONNABORTED ||
        (w->fault_marker && access(w->fault_marker, F_OK) == 0) ||
        (fstatfs(w->dirfd, &sfs) != 0 && (errno == ENOTCONN || errno == ECONNABORTED))) {
        printf("worker %d: daemon gone during %s after %ld ops\n", w->id, what, w->ops);
        exit(0);
    }
    fprintf(stderr, "worker %d: %s %s: %s (unexpected)\n", w->id, what, path, strerror(e));
    exit(1);
}

static void wpath(struct worker *w, const char *name, char *out, size_t cap)
{
    xsnprintf(out, cap, "%s/%s", w->dir, name);
}

static void fsync_path(struct worker *w, const char *path, int dir)
{
    int fd = open(path, O_RDONLY | (dir ? O_DIRECTORY : 0));
    if (fd < 0)
        wfail(w, "open for fsync", path);
    if (fsync(fd) != 0)
        wfail(w, "fsync", path);
    close(fd);
}

static void fsync_parent(struct worker *w, const char *name)
{
    char p[4096], rel[64];
    xsnprintf(rel, sizeof rel, "%s", name);
    char *slash = strrchr(rel, '/');
    if (slash)
        *slash = 0;
    else
        rel[0] = 0;
    xsnprintf(p, sizeof p, "%s%s%s", w->dir, rel[0] ? "/" : "", rel);
    fsync_path(w, p, 1);
}

/* The path as logged: relative to DIR (w<i>/name). */
#define LP(w, name) (w)->id, (name)

static void new_name(struct worker *w, char *out, size_t cap)
{
    xsnprintf(out, cap, "d%d/f%u", (int)(rnd(&w->rs) % SUBDIRS), w->next_name++);
}

static uint64_t pick_size(struct worker *w)
{
    uint64_t r = rnd(&w->rs) % 100;
    if (r < 8 && w->max_big > 0)
        return 1024 * 1024 +
               rnd(&w->rs) % (w->max_big > 1024 * 1024 ? w->max_big - 1024 * 1024 : 1);
    if (r < 20)
        return rnd(&w->rs) % (256 * 1024);
    if (r < 25)
        return 0;
    return rnd(&w->rs) % 8192;
}

/* Writes c's content to fd front to back in pieces of random size. */
static void write_content(struct worker *w, int fd, const struct content *c, const char *path)
{
    uint64_t off = 0;
    while (off < c->size) {
        size_t n = 1 + rnd(&w->rs) % IOBUF;
        if (n > c->size - off)
            n = (size_t)(c->size - off);
        content_fill(c, off, iobuf, n);
        ssize_t got = pwrite(fd, iobuf, n, (off_t)off);
        if (got < 0)
            wfail(w, "pwrite", path);
        off += (uint64_t)got;
    }
}

static struct wfile *add_file(struct worker *w, const char *name)
{
    struct wfile *f = &w->files[w->nfiles++];
    memset(f, 0, sizeof *f);
    xsnprintf(f->name, sizeof f->name, "%s", name);
    return f;
}

static void drop_file(struct worker *w, struct wfile *f)
{
    *f = w->files[--w->nfiles];
}

/* Writes a new file (or rewrites one in place) with fresh content; returns with the state
 * logged as durable only as the mode allows. want_sync: fsync the file and its directory. */
static void put_content(struct worker *w, struct wfile *f, int fresh, int want_sync)
{
    char path[4096], st[64];
    wpath(w, f->name, path, sizeof path);
    struct content c = {.seed = rnd(&w->rs), .size = pick_size(w)};
    c.zero_from = c.size;
    content_state(&c, st, sizeof st);
    wlog(w, "P w%d/%s *", LP(w, f->name));
    wlog(w, "P w%d/%s %s", LP(w, f->name), st);
    int fd = open(path, O_WRONLY | O_CREAT | (fresh || rnd(&w->rs) % 2 ? O_TRUNC : 0), 0644);
    if (fd < 0)
        wfail(w, "create", path);
    if (fresh && w->mode != MODE_FSYNC)
        wlog(w, "S w%d/%s *", LP(w, f->name)); /* the create was acknowledged */
    write_content(w, fd, &c, path);
    if (ftruncate(fd, (off_t)c.size) != 0) /* an in-place rewrite may have been longer */
        wfail(w, "ftruncate", path);
    f->c = c;
    f->settled = 0;
    if (want_sync) {
        if (fsync(fd) != 0)
            wfail(w, "fsync", path);
        if (fresh)
            fsync_parent(w, f->name);
        wlog(w, "S w%d/%s %s", LP(w, f->name), st);
        f->settled = 1;
    } else if (w->mode == MODE_ACKDATA) {
        wlog(w, "S w%d/%s %s", LP(w, f->name), st);
        f->settled = 1;
    }
    if (close(fd) != 0)
        wfail(w, "close", path);
}

static void op_create(struct worker *w)
{
    char name[64];
    if (w->nfiles >= MAX_FILES)
        return;
    new_name(w, name, sizeof name);
    put_content(w, add_file(w, name), 1, rnd(&w->rs) % 3 != 0);
}

static struct wfile *pick(struct worker *w, int need_unlinked)
{
    if (w->nfiles == 0)
        return NULL;
    for (int tries = 0; tries < 8; tries++) {
        struct wfile *f = &w->files[rnd(&w->rs) % (uint64_t)w->nfiles];
        if (!need_unlinked || !f->linked)
            return f;
    }
    return NULL;
}

static void op_overwrite(struct worker *w)
{
    struct wfile *f = pick(w, 1);
    if (f)
        put_content(w, f, 0, rnd(&w->rs) % 2);
}

/* Atomic replace: tmp written and fsynced, then renamed over an existing or a new name. */
static void op_replace(struct worker *w)
{
    char tmpname[64], path[4096], tpath[4096], st[64];
    struct wfile *dst = NULL;
    if (w->nfiles >= MAX_FILES - 1)
        return;
    if (rnd(&w->rs) % 4 != 0)
        dst = pick(w, 0);
    xsnprintf(tmpname, sizeof tmpname, "d%d/tmp%u", (int)(rnd(&w->rs) % SUBDIRS), w->next_name++);
    struct wfile *t = add_file(w, tmpname);
    put_content(w, t, 1, 1); /* the tmp is fsynced: its content is settled */
    content_state(&t->c, st, sizeof st);
    char dname[64];
    if (dst)
        xsnprintf(dname, sizeof dname, "%s", dst->name);
    else
        new_name(w, dname, sizeof dname);
    wpath(w, tmpname, tpath, sizeof tpath);
    wpath(w, dname, path, sizeof path);
    wlog(w, "P w%d/%s %s", LP(w, dname), st);
    wlog(w, "P w%d/%s -", LP(w, tmpname));
    if (rename(tpath, path) != 0)
        wfail(w, "rename", path);
    if (w->mode == MODE_FSYNC) {
        fsync_parent(w, dname);
        fsync_parent(w, tmpname);
    }
    wlog(w, "S w%d/%s %s", LP(w, dname), st);
    wlog(w, "S w%d/%s -", LP(w, tmpname));
    struct content c = t->c;
    if (!dst) {
        xsnprintf(t->name, sizeof t->name, "%s", dname);
    } else {
        dst->c = c;
        dst->settled = 1;
        dst->linked = 0; /* a new inode now */
        drop_file(w, t);
    }
}

static void op_link(struct worker *w)
{
    char name[64], spath[4096], dpath[4096], st[64];
    if (w->nfiles >= MAX_FILES)
        return;
    struct wfile *s = pick(w, 0);
    if (!s)
        return;
    new_name(w, name, sizeof name);
    if (s->settled)
        content_state(&s->c, st, sizeof st);
    else
        xsnprintf(st, sizeof st, "*");
    wpath(w, s->name, spath, sizeof spath);
    wpath(w, name, dpath, sizeof dpath);
    wlog(w, "P w%d/%s %s", LP(w, name), st);
    if (link(spath, dpath) != 0)
        wfail(w, "link", dpath);
    if (w->mode == MODE_FSYNC)
        fsync_parent(w, name);
    wlog(w, "S w%d/%s %s", LP(w, name), st);
    s->linked = 1;
    struct content c = s->c;
    int settled = s->settled;
    struct wfile *d = add_file(w, name); /* may move s: use the copies */
    d->c = c;
    d->settled = settled;
    d->linked = 1;
}

static void op_truncate(struct worker *w)
{
    char path[4096], st[64];
    struct wfile *f = pick(w, 1);
    if (!f || !f->settled)
        return;
    struct content c = f->c;
    uint64_t r = rnd(&w->rs);
    if (r % 3 == 0)
        c.size = c.size + r % (512 * 1024); /* grow: a hole of zeros */
    else
        c.size = c.size ? (r >> 8) % c.size : 0;
    if (c.zero_from > c.size)
        c.zero_from = c.size;
    content_state(&c, st, sizeof st);
    wpath(w, f->name, path, sizeof path);
    wlog(w, "P w%d/%s %s", LP(w, f->name), st);
    if (truncate(path, (off_t)c.size) != 0)
        wfail(w, "truncate", path);
    if (w->mode == MODE_FSYNC)
        fsync_path(w, path, 0);
    wlog(w, "S w%d/%s %s", LP(w, f->name), st);
    f->c = c;
}

static void op_unlink(struct worker *w)
{
    char path[4096];
    struct wfile *f = pick(w, 0);
    if (!f)
        return;
    wpath(w, f->name, path, sizeof path);
    wlog(w, "P w%d/%s -", LP(w, f->name));
    if (unlink(path) != 0)
        wfail(w, "unlink", path);
    if (w->mode == MODE_FSYNC)
        fsync_parent(w, f->name);
    wlog(w, "S w%d/%s -", LP(w, f->name));
    drop_file(w, f);
}

/* xattrs live on one file per worker (w<i>/x) that is never renamed or unlinked. */
static void op_xattr(struct worker *w)
{
    char path[4096], name[32];
    unsigned char val[XATTR_MAX_VALUE];
    wpath(w, "x", path, sizeof path);
    xsnprintf(name, sizeof name, "user.k%d", (int)(rnd(&w->rs) % XATTR_NAMES));
    if (rnd(&w->rs) % 4 == 0) {
        wlog(w, "XP w%d/x %s -", w->id, name);
        if (removexattr(path, name) != 0 && errno != ENODATA)
            wfail(w, "removexattr", path);
        if (w->mode == MODE_FSYNC)
            fsync_path(w, path, 0);
        wlog(w, "XS w%d/x %s -", w->id, name);
        return;
    }
    size_t n = rnd(&w->rs) % XATTR_MAX_VALUE;
    struct content c = {.seed = rnd(&w->rs), .size = n, .zero_from = n};
    content_fill(&c, 0, val, n);
    uint64_t h = fnv(FNV_INIT, val, n);
    wlog(w, "XP w%d/x %s %016" PRIx64 ":%zu", w->id, name, h, n);
    if (setxattr(path, name, val, n, 0) != 0)
        wfail(w, "setxattr", path);
    if (w->mode == MODE_FSYNC)
        fsync_path(w, path, 0);
    wlog(w, "XS w%d/x %s %016" PRIx64 ":%zu", w->id, name, h, n);
}

static void worker_main(struct worker *w)
{
    while (now_s() < w->deadline) {
        uint64_t r = rnd(&w->rs) % 100;
        if (r < 25)
            op_create(w);
        else if (r < 37)
            op_overwrite(w);
        else if (r < 55)
            op_replace(w);
        else if (r < 63)
            op_link(w);
        else if (r < 71)
            op_truncate(w);
        else if (r < 83)
            op_unlink(w);
        else if (r < 95)
            op_xattr(w);
        else {
            /* syncfs(2) makes nothing durable in this model (FUSE may not forward it); it
             * only exercises that path while the other workers write. */
            int fd = open(w->dir, O_RDONLY | O_DIRECTORY);
            if (fd < 0)
                wfail(w, "open", w->dir);
            if (syncfs(fd) != 0)
                wfail(w, "syncfs", w->dir);
            close(fd);
        }
        w->ops++;
    }
    printf("worker %d: deadline reached after %ld ops\n", w->id, w->ops);
    exit(0);
}

static int make_dir_durable(const char *path, int logfd, const char *logname)
{
    char line[256];
    if (logname) {
        int n = snprintf(line, sizeof line, "P %s D\n", logname);
        if (n < 0 || n >= (int)sizeof line || write(logfd, line, (size_t)n) != n)
            return -1;
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "crash_workload: mkdir %s: %s\n", path, strerror(errno));
        return -1;
    }
    char parent[4096];
    xsnprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = 0;
    int fd = open(parent, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0) {
        fprintf(stderr, "crash_workload: fsync %s: %s\n", parent, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    if (logname) {
        int n = snprintf(line, sizeof line, "S %s D\n", logname);
        if (write(logfd, line, (size_t)n) != n)
            return -1;
    }
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    enum mode mode = MODE_FSYNC;
    int workers = 4, opt;
    double secs = 10;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    uint64_t max_big = 4 * 1024 * 1024;
    const char *fault_marker = NULL;
    while ((opt = getopt(argc, argv, "m:w:t:S:B:F:")) != -1) {
        switch (opt) {
        case 'm':
            if (strcmp(optarg, "fsync") == 0)
                mode = MODE_FSYNC;
            else if (strcmp(optarg, "ack") == 0)
                mode = MODE_ACK;
            else if (strcmp(optarg, "ackdata") == 0)
                mode = MODE_ACKDATA;
            else
                return 2;
            break;
        case 'w':
            workers = atoi(optarg);
            break;
        case 't':
            secs = atof(optarg);
            break;
        case 'S':
            seed = strtoull(optarg, NULL, 0);
            break;
        case 'B':
            max_big = strtoull(optarg, NULL, 0);
            break;
        case 'F':
            fault_marker = optarg;
            break;
        default:
            return 2;
        }
    }
    if (argc - optind != 2 || workers < 1 || workers > 32)
        return 2;
    const char *dir = argv[optind], *log = argv[optind + 1];
    char lpath[4096], p[4096];
    printf("crash_workload run: seed %" PRIu64 ", %d workers, mode %s, %.1fs\n", seed, workers,
           mode == MODE_FSYNC ? "fsync"
           : mode == MODE_ACK ? "ack"
                              : "ackdata",
           secs);
    fflush(stdout);
    xsnprintf(lpath, sizeof lpath, "%s.setup", log);
    int sfd = open(lpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (sfd < 0)
        return 2;
    /* Everything a worker needs exists and is durable before the workers start. */
    if (make_dir_durable(dir, sfd, NULL) != 0)
        return 1;
    for (int i = 0; i < workers; i++) {
        char rel[64];
        xsnprintf(p, sizeof p, "%s/w%d", dir, i);
        xsnprintf(rel, sizeof rel, "w%d", i);
        if (make_dir_durable(p, sfd, rel) != 0)
            return 1;
        for (int j = 0; j < SUBDIRS; j++) {
            xsnprintf(p, sizeof p, "%s/w%d/d%d", dir, i, j);
            xsnprintf(rel, sizeof rel, "w%d/d%d", i, j);
            if (make_dir_durable(p, sfd, rel) != 0)
                return 1;
        }
        xsnprintf(p, sizeof p, "%s/w%d/x", dir, i);
        int fd = open(p, O_WRONLY | O_CREAT, 0644);
        if (fd < 0 || fsync(fd) != 0)
            return 1;
        close(fd);
        xsnprintf(p, sizeof p, "%s/w%d", dir, i);
        if (make_dir_durable(p, sfd, NULL) != 0)
            return 1;
        char line[128];
        int n = snprintf(line, sizeof line, "S w%d/x %s\n", i, "cbf29ce484222325:0");
        if (write(sfd, line, (size_t)n) != n)
            return 2;
    }
    close(sfd);
    printf("crash_workload: set up, workers started\n");
    fflush(stdout);
    double deadline = now_s() + secs;
    pid_t pids[32];
    for (int i = 0; i < workers; i++) {
        pids[i] = fork();
        if (pids[i] < 0)
            return 2;
        if (pids[i] == 0) {
            static struct worker w;
            w.id = i;
            w.mode = mode;
            w.top = dir;
            w.rs = seed * 1000003 + (uint64_t)i;
            w.max_big = max_big;
            w.fault_marker = fault_marker;
            w.deadline = deadline;
            xsnprintf(w.dir, sizeof w.dir, "%s/w%d", dir, i);
            xsnprintf(lpath, sizeof lpath, "%s.w%d", log, i);
            w.logfd = open(lpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
            w.dirfd = open(w.dir, O_RDONLY | O_DIRECTORY);
            if (w.logfd < 0 || w.dirfd < 0)
                _exit(2);
            worker_main(&w);
        }
    }
    int bad = 0;
    for (int i = 0; i < workers; i++) {
        int st;
        if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "crash_workload: worker %d failed (status 0x%x)\n", i, st);
            bad = 1;
        }
    }
    return bad;
}

/* ---- the checker --------------------------------------------------------------------------- */

struct entry {
    char *key;      /* "w0/d1/f3" or "w0/x\tuser.k2" for an xattr */
    char **allowed; /* states */
    int n, cap;
    int seen; /* found by the tree walk */
};

static void allow(struct entry *e, const char *state, int settle);

static struct entry *ents;
static size_t nents, capents;
static long problems;

static struct entry *lookup(const char *key, int create)
{
    for (size_t i = 0; i < nents; i++)
        if (strcmp(ents[i].key, key) == 0)
            return &ents[i];
    if (!create)
        return NULL;
    if (nents == capents) {
        capents = capents ? capents * 2 : 256;
        ents = realloc(ents, capents * sizeof *ents);
        if (!ents)
            abort();
    }
    struct entry *e = &ents[nents++];
    memset(e, 0, sizeof *e);
    e->key = strdup(key);
    allow(e, "-", 0); /* names are never reused: before its first line, a path was absent */
    return e;
}

static void allow(struct entry *e, const char *state, int settle)
{
    if (settle) {
        for (int i = 0; i < e->n; i++)
            free(e->allowed[i]);
        e->n = 0;
    }
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->allowed[i], state) == 0)
            return;
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 4;
        e->allowed = realloc(e->allowed, (size_t)e->cap * sizeof *e->allowed);
        if (!e->allowed)
            abort();
    }
    e->allowed[e->n++] = strdup(state);
}

static int load_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : -1;
    char line[1024];
    long lines = 0;
    while (fgets(line, sizeof line, f)) {
        char kind[4], a[512], b[128], c[128], key[700];
        size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n') {
            fprintf(stderr, "verify: %s: unterminated line %ld\n", path, lines + 1);
            fclose(f);
            return -1;
        }
        lines++;
        int n = sscanf(line, "%3s %511s %127s %127s", kind, a, b, c);
        if (n == 3 && (strcmp(kind, "P") == 0 || strcmp(kind, "S") == 0)) {
            allow(lookup(a, 1), b, kind[0] == 'S');
        } else if (n == 4 && (strcmp(kind, "XP") == 0 || strcmp(kind, "XS") == 0)) {
            xsnprintf(key, sizeof key, "%s\t%s", a, b);
            allow(lookup(key, 1), c, kind[1] == 'S');
        } else {
            fprintf(stderr, "verify: %s:%ld: malformed line: %s", path, lines, line);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

static void problem(const struct entry *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void problem(const struct entry *e, const char *fmt, ...)
{
    va_list ap;
    problems++;
    fprintf(stderr, "verify: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (e) {
        fprintf(stderr, " (allowed:");
        for (int i = 0; i < e->n; i++)
            fprintf(stderr, " %s", e->allowed[i]);
        fprintf(stderr, ")");
    }
    fprintf(stderr, "\n");
}

static int allows(const struct entry *e, const char *state)
{
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->allowed[i], state) == 0)
            return 1;
    return 0;
}

/* Hash of a file's content as "<fnv>:<size>"; -1 with errno on a read error. */
static int file_state(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    uint64_t h = FNV_INIT, size = 0;
    for (;;) {
        ssize_t n = read(fd, iobuf, IOBUF);
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (n == 0)
            break;
        h = fnv(h, iobuf, (size_t)n);
        size += (uint64_t)n;
    }
    close(fd);
    xsnprintf(out, cap, "%016" PRIx64 ":%" PRIu64, h, size);
    return 0;
}

static void check_path(const char *top, struct entry *e)
{
    char path[4096], st[64];
    struct stat sb;
    xsnprintf(path, sizeof path, "%s/%s", top, e->key);
    if (lstat(path, &sb) != 0) {
        if (errno != ENOENT)
            problem(e, "%s: lstat: %s", e->key, strerror(errno));
        else if (!allows(e, "-"))
            problem(e, "%s: missing", e->key);
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        if (!allows(e, "D"))
            problem(e, "%s: is a directory", e->key);
        return;
    }
    if (!S_ISREG(sb.st_mode)) {
        problem(e, "%s: unexpected file type 0%o", e->key, sb.st_mode & S_IFMT);
        return;
    }
    if (file_state(path, st, sizeof st) != 0) {
        problem(e, "%s: read: %s", e->key, strerror(errno));
        return;
    }
    if (!allows(e, st) && !allows(e, "*"))
        problem(e, "%s: content %s is none of the allowed states", e->key, st);
}

static void check_xattr(const char *top, struct entry *e)
{
    char path[4096], *tab = strchr(e->key, '\t'), st[64];
    static unsigned char val[70000];
    xsnprintf(path, sizeof path, "%s/%.*s", top, (int)(tab - e->key), e->key);
    ssize_t n = lgetxattr(path, tab + 1, val, sizeof val);
    if (n < 0) {
        if (errno == ENODATA) {
            if (!allows(e, "-"))
                problem(e, "xattr %s: missing", e->key);
        } else if (errno == ENOENT) {
            problem(e, "xattr %s: its file is missing", e->key);
        } else {
            problem(e, "xattr %s: %s", e->key, strerror(errno));
        }
        return;
    }
    xsnprintf(st, sizeof st, "%016" PRIx64 ":%zd", fnv(FNV_INIT, val, (size_t)n), n);
    if (!allows(e, st))
        problem(e, "xattr %s: value %s is none of the allowed states", e->key, st);
}

/* Walks the tree: every entry and xattr found must have been announced by the logs. */
static void walk(const char *top, const char *rel)
{
    char path[4096], sub[4096];
    xsnprintf(path, sizeof path, "%s%s%s", top, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) {
        problem(NULL, "%s: opendir: %s", rel[0] ? rel : ".", strerror(errno));
        return;
    }
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        xsnprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        struct entry *e = lookup(sub, 0);
        if (!e) {
            problem(NULL, "%s: exists but no log announced it", sub);
            continue;
        }
        e->seen = 1;
        char full[4096];
        xsnprintf(full, sizeof full, "%s/%s", top, sub);
        char names[8192];
        ssize_t ln = llistxattr(full, names, sizeof names);
        if (ln < 0) {
            problem(NULL, "%s: listxattr: %s", sub, strerror(errno));
        } else {
            for (ssize_t i = 0; i < ln; i += (ssize_t)strlen(names + i) + 1) {
                char key[4400];
                xsnprintf(key, sizeof key, "%s\t%s", sub, names + i);
                if (!lookup(key, 0))
                    problem(NULL, "%s: xattr %s exists but no log announced it", sub, names + i);
            }
        }
        if (de->d_type == DT_DIR)
            walk(top, sub);
        errno = 0;
    }
    if (errno != 0)
        problem(NULL, "%s: readdir: %s", rel[0] ? rel : ".", strerror(errno));
    closedir(d);
}

static int cmd_verify(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    const char *top = argv[1], *log = argv[2];
    char p[4096];
    xsnprintf(p, sizeof p, "%s.setup", log);
    if (load_log(p) != 0)
        return 2;
    for (int i = 0; i < 32; i++) {
        xsnprintf(p, sizeof p, "%s.w%d", log, i);
        if (load_log(p) != 0)
            return 2;
    }
    size_t files = 0, xattrs = 0;
    for (size_t i = 0; i < nents; i++) {
        if (strchr(ents[i].key, '\t')) {
            check_xattr(top, &ents[i]);
            xattrs++;
        } else {
            check_path(top, &ents[i]);
            files++;
        }
    }
    walk(top, "");
    printf("verify %s: %zu paths and %zu xattrs checked, %ld problems\n", top, files, xattrs,
           problems);
    return problems ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    fprintf(stderr, "usage: crash_workload run [-m fsync|ack|ackdata] [-w N] [-t SECS] [-S SEED] "
                    "[-B MAXBIG] [-F MARKER] DIR LOG\n"
                    "       crash_workload verify DIR LOG\n");
    return 2;
}
