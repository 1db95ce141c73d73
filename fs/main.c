/* main.c - the kvfs command: mount (also in mount.fuse3's form), fsck, stats, compact.
 *
 *   kvfs mount [-f] [-d] [-o OPT,...] STORE MOUNTPOINT
 *   kvfs STORE MOUNTPOINT [-o OPT,...]          (what mount.fuse3 and /etc/fstab run)
 *   kvfs fsck [--repair] STORE                  exit 0 clean, 1 repaired, 4 errors left
 *   kvfs stats STORE|MOUNTPOINT                 a mounted filesystem answers through the
 *                                               virtual xattr "kvfs.stats" on its root
 *   kvfs compact STORE
 *
 * Mounting forks first, then the child opens the store, mounts and reports success or the one
 * error line back through a pipe, so the caller sees the error and a non-zero exit while the
 * daemon keeps running in the background only once the mount succeeded.
 */
#include "fs.h"
#include "fslog.h"
#include "ll.h"
#include "options.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/file.h>
#include <sys/xattr.h>
#include <unistd.h>

#define KVFS_VERSION "0.1.0"

enum { EXIT_FSCK_REPAIRED = 1, EXIT_FSCK_ERRORS = 4 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kvfs mount [-f] [-d] [-o OPT,...] STORE MOUNTPOINT\n"
            "       kvfs STORE MOUNTPOINT [-o OPT,...]     (mount.fuse3 / fstab form)\n"
            "       kvfs fsck [--repair] STORE\n"
            "       kvfs stats STORE|MOUNTPOINT\n"
            "       kvfs compact STORE\n"
            "       kvfs --help | --version\n"
            "\n"
            "STORE is a directory, formatted on first use. Unmount with fusermount3 -u.\n"
            "\n"
            "mount options:\n"
            "  -f, -o foreground       stay in the foreground\n"
            "  -d, -o debug            foreground, log every FUSE request\n"
            "  -o ro                   read-only\n"
            "  -o allow_other          let other users in (needs user_allow_other)\n"
            "  -o default_permissions  kernel permission checks (default)\n"
            "  -o nodefault_permissions  no permission checks but access()\n"
            "  -o sync=never|request|always  WAL fsync policy (default request: on fsync;\n"
            "                          always also turns the writeback cache off)\n"
            "  -o attr_timeout=SEC     attribute cache time (default 1)\n"
            "  -o entry_timeout=SEC    name cache time (default 1)\n"
            "  -o negative_timeout=SEC cache time of failed lookups (default 1)\n"
            "  -o cache_size=BYTES     block cache (K, M, G suffixes; default 32M)\n"
            "  -o chunk_cache_size=BYTES  decoded file chunks kept for reads (default 64M;\n"
            "                          0: none)\n"
            "  -o dir_cache_size=BYTES  directory listings kept for readdir (default 8M; 0:\n"
            "                          none)\n"
            "  -o memtable_size=BYTES  memtables, active and frozen together (default 32M)\n"
            "  -o reserve=BYTES        space kept back so that a full disk recovers: rm works\n"
            "                          and the store compacts (default memtable_size + 32M, at\n"
            "                          most 1/8 of the disk; 0: none)\n"
            "  -o log_level=error|warn|info|debug\n"
            "  -o writeback=0|1        kernel writeback cache (default 1)\n"
            "  fstab options (rw, suid, dev, exec, noatime, nofail, _netdev, ...) are accepted.\n"
            "\n"
            "fsck exits 0 when clean, 1 when everything found was repaired, 4 when errors "
            "remain.\n"
            "fsck --repair salvages damaged store files: it keeps every block and record whose\n"
            "checksum holds and rebuilds the tables and manifest around what failed (originals\n"
            "kept as <name>.damaged). File data that may have been lost is marked, never served\n"
            "as zeros or older bytes: reading (or overwriting) those parts of the file fails\n"
            "with EIO, the rest reads normally; remove or truncate the file to clear it. Files\n"
            "whose directory entry was lost are linked into /lost+found as #INODE; a file whose\n"
            "inode was lost is rebuilt from its data (mode 0600, owner root).\n");
}

/* kvcore's messages while a store is being opened are held back: for the expected failures
 * (locked, not a store, newer version) the user gets our one line instead; for anything else
 * (corruption: which file, which offset) they are printed before it. */
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static int holding;
static char held[4096];
static size_t held_len;

static void kv_log_to_fs(void *ctx, int level, const char *msg)
{
    pthread_mutex_lock(&held_mu);
    if (holding) {
        int n = snprintf(held + held_len, sizeof held - held_len, "kvfs: kvcore: %s\n", msg);
        if (n > 0 && held_len + (size_t)n < sizeof held)
            held_len += (size_t)n;
        pthread_mutex_unlock(&held_mu);
        return;
    }
    pthread_mutex_unlock(&held_mu);
    fs_log(level, "kvcore: %s", msg);
}

/* kv_open with held-back diagnostics (see kv_log_to_fs). */
static int open_store(const char *path, const kv_options *ko, kv_db **db)
{
    int rc;

    pthread_mutex_lock(&held_mu);
    holding = 1;
    held_len = 0;
    pthread_mutex_unlock(&held_mu);
    rc = kv_open(path, ko, db);
    pthread_mutex_lock(&held_mu);
    holding = 0;
    if (rc && rc != KV_EBUSY && rc != KV_EINVAL && rc != KV_EVERSION)
        fputs(held, stderr);
    held[0] = '\0';
    held_len = 0;
    pthread_mutex_unlock(&held_mu);
    return rc;
}

static void init_kv_options(kv_options *ko)
{
    kv_options_init(ko);
    /* File chunks (and other values of 4 KiB or more) go to the value log of a new store, so
     * that compaction does not rewrite file data (kvcore/FORMAT.md "Value log"). */
    ko->value_log_threshold = 4096;
    ko->log_fn = kv_log_to_fs;
    ko->log_ctx = NULL;
    ko->log_level = fs_log_get_level();
}

/* Why a path that kv_open refused with KV_EINVAL is no store: 0 missing, 1 not a directory,
 * 2 an empty directory, 3 a directory holding other files. */
static int why_not_a_store(const char *path)
{
    struct dirent *e;
    DIR *d = opendir(path);
    int why = 2;

    if (!d)
        return errno == ENOENT ? 0 : errno == ENOTDIR ? 1 : 3;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            why = 3;
            break;
        }
    }
    closedir(d);
    return why;
}

/* One clear line for an error opening the store. */
static void report_open_error(const char *store, int kvrc)
{
    static const char *const not_store[] = {
        "no such directory",
        "not a directory",
        "an empty directory",
        "a non-empty directory of other files",
    };

    switch (kvrc) {
    case KV_EBUSY:
        fprintf(stderr, "kvfs: store %s is in use (locked by another kvfs or program)\n", store);
        break;
    case KV_EINVAL:
        /* fsck, stats and compact do not create a store: a missing or empty directory is
         * refused too, and must not be described as one full of other files. */
        fprintf(stderr, "kvfs: %s is not a kvfs store (%s)\n", store,
                not_store[why_not_a_store(store)]);
        break;
    case KV_EVERSION:
        fprintf(stderr, "kvfs: store %s was written by a newer version of kvfs\n", store);
        break;
    default:
        fprintf(stderr, "kvfs: cannot open store %s: %s\n", store, kv_strerror(kvrc));
        break;
    }
}

static void report_fs_error(const char *store, int rc)
{
    if (rc == -EPROTO)
        fprintf(stderr, "kvfs: store %s holds a newer kvfs format\n", store);
    else if (rc == -EINVAL)
        fprintf(stderr, "kvfs: store %s holds data that is not a kvfs filesystem\n", store);
    else
        fprintf(stderr, "kvfs: cannot open the filesystem in %s: %s\n", store, strerror(-rc));
}

/* Undoes mountinfo's octal escapes (space, tab, newline, backslash as \ooo) into out. */
static void unescape_mountinfo(const char *in, char *out, size_t outsz)
{
    size_t j = 0;
    for (size_t i = 0; in[i] && j + 1 < outsz; i++) {
        if (in[i] == '\\' && in[i + 1] >= '0' && in[i + 1] <= '3' && in[i + 2] >= '0' &&
            in[i + 2] <= '7' && in[i + 3] >= '0' && in[i + 3] <= '7') {
            out[j++] =
                (char)(((in[i + 1] - '0') << 6) | ((in[i + 2] - '0') << 3) | (in[i + 3] - '0'));
            i += 3;
        } else {
            out[j++] = in[i];
        }
    }
    out[j] = '\0';
}

/* Scans /proc/self/mountinfo. With mnt set: 1 if something is mounted on mnt. With src set:
 * 1 if a kvfs is mounted from store src. */
static int find_mount(const char *mnt, const char *src)
{
    char line[PATH_MAX * 2 + 512], a[PATH_MAX + 1], b[PATH_MAX + 1];
    FILE *f = fopen("/proc/self/mountinfo", "r");
    int found = 0;

    if (!f)
        return 0;
    while (!found && fgets(line, sizeof line, f)) {
        /* id parent major:minor root mountpoint options [optional...] - fstype source super */
        char *sep = strstr(line, " - ");
        if (mnt && sscanf(line, "%*s %*s %*s %*s %4096s", a) == 1) {
            unescape_mountinfo(a, b, sizeof b);
            found = strcmp(b, mnt) == 0;
        } else if (src && sep && sscanf(sep + 3, "%255s %4096s", b, a) == 2 &&
                   strcmp(b, "fuse.kvfs") == 0) {
            unescape_mountinfo(a, b, sizeof b);
            found = strcmp(b, src) == 0;
        }
    }
    fclose(f);
    return found;
}

static int is_mount_point(const char *path)
{
    return find_mount(path, NULL);
}

static int prepare_paths(struct mount_opts *o, char *store_abs, char *mnt_abs)
{
    struct stat st;
    int created = 0;

    /* The mount point first: a failure here must leave no new store directory behind. */
    if (stat(o->mountpoint, &st) != 0) {
        fprintf(stderr, "kvfs: mount point %s: %s\n", o->mountpoint, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "kvfs: mount point %s is not a directory\n", o->mountpoint);
        return -1;
    }
    if (!realpath(o->mountpoint, mnt_abs)) {
        fprintf(stderr, "kvfs: cannot resolve %s: %s\n", o->mountpoint, strerror(errno));
        return -1;
    }
    if (is_mount_point(mnt_abs)) {
        fprintf(stderr, "kvfs: mount point %s is busy (something is mounted there)\n", mnt_abs);
        return -1;
    }
    if (stat(o->store, &st) != 0) {
        if (errno != ENOENT || mkdir(o->store, 0700) != 0) {
            fprintf(stderr, "kvfs: cannot use store %s: %s\n", o->store, strerror(errno));
            return -1;
        }
        created = 1;
    } else if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "kvfs: store %s is not a directory\n", o->store);
        return -1;
    }
    if (!realpath(o->store, store_abs)) {
        fprintf(stderr, "kvfs: cannot resolve %s: %s\n", o->store, strerror(errno));
        goto fail;
    }
    if (strcmp(store_abs, mnt_abs) == 0 ||
        (strncmp(store_abs, mnt_abs, strlen(mnt_abs)) == 0 && store_abs[strlen(mnt_abs)] == '/')) {
        fprintf(stderr, "kvfs: the store must not lie inside the mount point\n");
        goto fail;
    }
    return 0;
fail:
    if (created)
        rmdir(o->store);
    return -1;
}

static void report_status(int fd, int status)
{
    if (fd >= 0) {
        ssize_t n = write(fd, &status, sizeof status);
        (void)n;
        close(fd);
    }
}

/* Runs in the daemon (or the foreground process). status_fd receives 0 once mounted or an exit
 * code on failure. */
static int run_mount(struct mount_opts *o, struct fuse_args *args, const char *store,
                     const char *mnt, int status_fd)
{
    struct fs_config cfg;
    struct fs_ll ll;
    struct fuse_session *se = NULL;
    struct fuse_loop_config *lc = NULL;
    kv_options ko;
    kv_db *db = NULL;
    struct fs *fs = NULL;
    int rc, ret = 1;

    /* One malloc arena for the whole daemon. By default glibc gives each FUSE worker thread
     * its own arena, and the 64 KiB chunk buffers and cache blocks freed into one thread's
     * arena are not reused by the others: in a 4 KiB random-write run the daemon's peak RSS was
     * 296 MiB for about 125 MiB of live heap. With one arena the peak is 134 MiB; the lock is
     * not contended enough to show in that run's IOPS (each allocation is followed by a
     * 64 KiB copy). Must run before any thread starts. */
    mallopt(M_ARENA_MAX, 1);
    init_kv_options(&ko);
    memset(&cfg, 0, sizeof cfg);
    memset(&ll, 0, sizeof ll);
    if (mount_opts_apply(o, &ko, &cfg, &ll) != 0)
        goto out;
    /* An interrupted `fsck --repair` leaves the key ranges it lost in the store's LOST file
     * until it has marked the files that depended on them (reads of those chunks give EIO).
     * Mounting before that would serve the lost chunks as holes or older bytes: refuse. */
    kv_lost *lost = NULL;
    rc = kv_lost_pending(store, &ko, &lost);
    if (rc || lost) {
        if (rc)
            fprintf(stderr, "kvfs: %s: cannot read the list of lost key ranges: %s\n", store,
                    kv_strerror(rc));
        else
            fprintf(stderr,
                    "kvfs: %s: an interrupted repair left %zu lost key range(s) unmarked; "
                    "run 'kvfs fsck --repair %s' to finish it before mounting\n",
                    store, kv_lost_count(lost), store);
        kv_lost_free(lost);
        goto out;
    }
    /* A daemon that was just unmounted may still be closing the store: wait for it a little,
     * but only when no kvfs is mounted from this store (then the lock is a real conflict). */
    for (int waited = 0;; waited++) {
        rc = open_store(store, &ko, &db);
        if (rc != KV_EBUSY || waited >= 100 || find_mount(NULL, store))
            break;
        usleep(100000);
    }
    if (rc) {
        report_open_error(store, rc);
        goto out;
    }
    cfg.read_only = o->read_only;
    cfg.store_path = store;
    rc = fs_open(db, &cfg, getuid(), getgid(), &fs);
    if (rc) {
        report_fs_error(store, rc);
        goto out;
    }
    ll.fs = fs;
    ll.attr_timeout = o->attr_timeout;
    ll.entry_timeout = o->entry_timeout;
    ll.negative_timeout = o->negative_timeout;
    se = fuse_session_new(args, fs_ll_ops(), sizeof *fs_ll_ops(), &ll);
    if (!se) {
        fprintf(stderr, "kvfs: bad mount options (see kvfs --help)\n");
        goto out;
    }
    if (fuse_set_signal_handlers(se) != 0) {
        fprintf(stderr, "kvfs: cannot install signal handlers\n");
        goto out;
    }
    if (fuse_session_mount(se, mnt) != 0) {
        fprintf(stderr, "kvfs: cannot mount on %s\n", mnt);
        fuse_remove_signal_handlers(se);
        goto out;
    }
    /* Mounted: from here on the caller has its answer. */
    report_status(status_fd, 0);
    status_fd = -1;
    if (!o->foreground) {
        int nul = open("/dev/null", O_RDWR);
        fs_log_use_syslog();
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(nul, 2);
            if (nul > 2)
                close(nul);
        }
        if (chdir("/") != 0) {
            /* harmless: the daemon opens nothing by relative path */
        }
    }
    lc = fuse_loop_cfg_create();
    if (!lc) {
        ret = 1;
    } else {
        fuse_loop_cfg_set_clone_fd(lc, 1);
        fuse_loop_cfg_set_max_threads(lc, 16);
        /* 0, -errno, or the number of the signal (SIGTERM, SIGINT, SIGHUP) that stopped the
         * loop: a stop by signal is an orderly shutdown, which exits 0 like an unmount once
         * the store is closed. */
        ret = fuse_session_loop_mt(se, lc) < 0 ? 1 : 0;
        fuse_loop_cfg_destroy(lc);
    }
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
out:
    if (se)
        fuse_session_destroy(se);
    fs_close(fs);
    if (db) {
        rc = kv_close(db);
        if (rc) {
            fs_log(FS_LOG_ERROR, "closing the store: %s", kv_strerror(rc));
            ret = 1;
        }
    }
    report_status(status_fd, ret ? ret : 1);
    return ret;
}

/* The options kvfs always passes to libfuse: permissions, the type and the source shown by
 * mount(8) ("STORE on MNT type fuse.kvfs"). */
static int add_mount_args(struct fuse_args *args, const struct mount_opts *o, const char *store)
{
    char *esc = NULL, *opt = NULL;
    int rc;

    if (!o->no_default_permissions && fuse_opt_add_arg(args, "-odefault_permissions"))
        return -1;
    if (o->debug && fuse_opt_add_arg(args, "-odebug"))
        return -1;
    if (fuse_opt_add_arg(args, "-osubtype=kvfs"))
        return -1;
    if (fuse_opt_add_opt_escaped(&esc, store) || asprintf(&opt, "-ofsname=%s", esc) < 0) {
        free(esc);
        return -1;
    }
    rc = fuse_opt_add_arg(args, opt);
    free(esc);
    free(opt);
    return rc;
}

static int cmd_mount(int argc, char **argv)
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct mount_opts o;
    char store[PATH_MAX], mnt[PATH_MAX];
    int ret = 1, pfd[2] = {-1, -1}, ll;

    if (mount_opts_parse(&args, &o) != 0)
        goto out;
    if (o.help) {
        usage(stdout);
        ret = 0;
        goto out;
    }
    if (o.version) {
        printf("kvfs %s (libfuse %s)\n", KVFS_VERSION, fuse_pkgversion());
        ret = 0;
        goto out;
    }
    if (!o.store || !o.mountpoint) {
        usage(stderr);
        goto out;
    }
    if ((ll = mount_opts_check(&o)) < 0)
        goto out;
    if (o.log_level)
        fs_log_set_level(ll);
    if (prepare_paths(&o, store, mnt) != 0)
        goto out;
    if (add_mount_args(&args, &o, store) != 0) {
        fprintf(stderr, "kvfs: out of memory\n");
        goto out;
    }
    if (o.foreground) {
        ret = run_mount(&o, &args, store, mnt, -1);
        goto out;
    }
    if (pipe(pfd) != 0) {
        fprintf(stderr, "kvfs: pipe: %s\n", strerror(errno));
        goto out;
    }
    switch (fork()) {
    case -1:
        fprintf(stderr, "kvfs: fork: %s\n", strerror(errno));
        goto out;
    case 0:
        close(pfd[0]);
        setsid();
        /* exit, not _exit: the daemon ends like a foreground mount (run_mount has closed the
         * store), and under ASan LeakSanitizer checks it at exit as it does a foreground one.
         * Nothing was buffered in stdio before the fork. */
        exit(run_mount(&o, &args, store, mnt, pfd[1]));
    default: {
        int status = 1;
        close(pfd[1]);
        if (read(pfd[0], &status, sizeof status) != (ssize_t)sizeof status)
            status = 1; /* the child died before reporting; it printed why */
        close(pfd[0]);
        ret = status;
        if (ret) {
            int ws;
            wait(&ws);
        }
    }
    }
out:
    fuse_opt_free_args(&args);
    mount_opts_free(&o);
    return ret;
}

/* ---- fsck, stats, compact ----------------------------------------------------------------- */

static void check_progress(void *ctx, uint64_t done, uint64_t total)
{
    if (total)
        fprintf(stderr, "\rkvfs fsck: checksums %3u%%", (unsigned)(done * 100 / total));
}

static void key_progress(void *ctx, uint64_t keys)
{
    fprintf(stderr, "\rkvfs fsck: %" PRIu64 " keys checked   ", keys);
}

/* Takes the store's LOCK (the flock kv_open takes) so that fsck never runs under a mounted
 * daemon. Returns the fd holding it, -1 if the store has no LOCK file (kv_check reports), or
 * -2 if someone else holds it. */
static int lock_store(const char *store)
{
    char path[PATH_MAX];
    int fd;

    if (snprintf(path, sizeof path, "%s/LOCK", store) >= (int)sizeof path)
        return -1;
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -2;
    }
    return fd;
}

/* Test hook (tests/mount/corrupt.sh): with KVFS_FSCK_KILL_AT=salvage or =marked, fsck dies
 * of SIGKILL right after that step of a repair, as a crash or a kill -9 there would
 * (=marking, after the first lost-chunk marker, is in fsck.c). */
static void fsck_kill_point(const char *step)
{
    const char *at = getenv("KVFS_FSCK_KILL_AT");
    if (at && strcmp(at, step) == 0) {
        fflush(NULL); /* what it printed so far, as a terminal would have shown it */
        raise(SIGKILL);
    }
}

/* fsck --repair's kvcore step: kv_salvage_ex (the store's lock released for it, then taken
 * again into *lock_fd) and its report, then kv_check again into *problems. *lost receives what
 * the salvage lost (caller frees); *salvaged counts the files it repaired. Returns kv_check's
 * result. */
static int fsck_salvage(const char *store, kv_options *ko, int tty, int *lock_fd, kv_lost **lost,
                        uint64_t *salvaged, uint64_t *problems)
{
    kv_salvage_stats sst;
    int rc;

    /* kv_salvage fixes a damaged CURRENT and cuts damaged logs back (keeping *.damaged
     * copies); what it cannot fix, the second check reports. */
    if (*lock_fd >= 0)
        close(*lock_fd); /* kv_salvage takes it for itself */
    *lock_fd = -1;
    rc = kv_salvage_ex(store, ko, lost, &sst);
    *salvaged += sst.files_fixed;
    printf("kvfs fsck: kvcore salvage %s: %" PRIu64 " files repaired%s\n",
           rc ? "incomplete" : "done", sst.files_fixed,
           sst.files_fixed ? " (originals kept as <name>.damaged)" : "");
    if (sst.rebuilt)
        printf("kvfs fsck: store rebuilt: %" PRIu64 " keys kept; lost %" PRIu64 " blocks, %" PRIu64
               " bytes, at least %" PRIu64 " entries, in %" PRIu64 " key ranges\n",
               sst.keys_written, sst.blocks_lost, sst.bytes_lost, sst.entries_lost,
               sst.lost_ranges);
    fsck_kill_point("salvage");
    *lock_fd = lock_store(store);
    *problems = 0;
    rc = kv_check(store, ko, tty ? check_progress : NULL, NULL, problems);
    if (tty)
        fprintf(stderr, "\n");
    return rc;
}

static int cmd_fsck(int argc, char **argv)
{
    const char *store = NULL;
    int repair = 0, tty = isatty(2), rc, lock_fd, salvage_ran = 0, want_salvage;
    uint64_t problems = 0, salvaged = 0;
    struct fsck_result res;
    kv_options ko;
    kv_db *db = NULL;
    kv_lost *lost = NULL; /* what kv_salvage_ex lost, for the filesystem-level repair */

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--repair") == 0 || strcmp(argv[i], "-y") == 0)
            repair = 1;
        else if (!store && argv[i][0] != '-')
            store = argv[i];
        else {
            usage(stderr);
            return EXIT_FSCK_ERRORS;
        }
    }
    if (!store) {
        usage(stderr);
        return EXIT_FSCK_ERRORS;
    }
    lock_fd = lock_store(store);
    if (lock_fd == -2) {
        fprintf(stderr, "kvfs fsck: store %s is in use (mounted?); unmount it first\n", store);
        return EXIT_FSCK_ERRORS;
    }
    init_kv_options(&ko);
    ko.create_if_missing = 0;
    rc = kv_check(store, &ko, tty ? check_progress : NULL, NULL, &problems);
    if (tty)
        fprintf(stderr, "\n");
    if (rc && rc != KV_ECORRUPT) {
        report_open_error(store, rc);
        if (lock_fd >= 0)
            close(lock_fd);
        return EXIT_FSCK_ERRORS;
    }
    want_salvage = repair && (rc == KV_ECORRUPT || problems);
    if (!want_salvage) {
        /* An interrupted repair: its salvage recorded what it lost (kv_lost_pending) but the
         * chunks that depended on it may not be marked yet. */
        int lrc = kv_lost_pending(store, &ko, &lost);
        if (lrc) {
            report_open_error(store, lrc);
            if (lock_fd >= 0)
                close(lock_fd);
            return EXIT_FSCK_ERRORS;
        }
        if (lost && !repair) {
            printf("kvfs fsck: an interrupted repair left %zu lost key ranges whose files are "
                   "not marked yet: run kvfs fsck --repair\n",
                   kv_lost_count(lost));
            problems++;
            kv_lost_free(lost);
            lost = NULL;
        }
    }
    for (;;) {
        if (want_salvage) {
            want_salvage = 0;
            salvage_ran = 1;
            rc = fsck_salvage(store, &ko, tty, &lock_fd, &lost, &salvaged, &problems);
            if (rc && rc != KV_ECORRUPT) {
                report_open_error(store, rc);
                if (lock_fd >= 0)
                    close(lock_fd);
                kv_lost_free(lost);
                return EXIT_FSCK_ERRORS;
            }
        }
        if (rc == KV_ECORRUPT || problems) {
            printf("kvfs fsck: %" PRIu64 " checksum or structure failures in %s (see above); "
                   "not repairable here\n",
                   problems, store);
        }
        ko.read_only = !repair;
        if (repair && lock_fd >= 0) {
            close(lock_fd); /* kv_open takes it for itself */
            lock_fd = -1;
        }
        rc = open_store(store, &ko, &db);
        if (rc == KV_ECORRUPT && repair && !salvage_ran) {
            /* Damage only recovery can see (a synced WAL record whose value-log record is
             * gone: kv_check takes a segment cut short for a crash's torn tail): salvage. */
            printf("kvfs fsck: opening the store failed: %s: running the kvcore salvage\n",
                   kv_strerror(rc));
            want_salvage = 1;
            continue;
        }
        if (rc) {
            report_open_error(store, rc);
            if (lock_fd >= 0)
                close(lock_fd);
            kv_lost_free(lost);
            return EXIT_FSCK_ERRORS;
        }
        rc = fs_fsck_ex(db, repair, lost, tty ? key_progress : NULL, NULL, &res);
        if (tty)
            fprintf(stderr, "\n");
        kv_close(db);
        kv_lost_free(lost);
        lost = NULL;
        if (rc == 0 && repair) {
            fsck_kill_point("marked");
            /* Every chunk that depended on a lost entry is marked: the record may go. */
            int lrc = kv_lost_clear(store, &ko);
            if (lrc)
                fprintf(stderr, "kvfs fsck: cannot remove %s/LOST: %s\n", store, kv_strerror(lrc));
        }
        if (rc != -EIO || !repair || salvage_ran)
            break;
        /* A value kv_check could not judge (past the end of a value-log segment cut short,
         * which looks like a crash's torn tail) failed to read: salvage, then check again. */
        printf("kvfs fsck: reading the store failed with EIO: running the kvcore salvage\n");
        want_salvage = 1;
    }
    if (lock_fd >= 0)
        close(lock_fd);
    if (rc) {
        fprintf(stderr, "kvfs fsck: stopped: %s\n", strerror(-rc));
        return EXIT_FSCK_ERRORS;
    }
    printf("kvfs fsck: %" PRIu64 " inodes, %" PRIu64 " dirents, %" PRIu64 " chunks, %" PRIu64
           " xattrs, %" PRIu64 " pending orphans\n",
           res.inodes, res.dirents, res.chunks, res.xattrs, res.orphans);
    printf("kvfs fsck: %" PRIu64 " problems found, %" PRIu64 " repaired\n", res.problems,
           res.repaired);
    if (res.lost_chunks)
        printf("kvfs fsck: %" PRIu64 " files hold %" PRIu64
               " chunks lost in a salvage; reading them fails with EIO (see above)\n",
               res.damaged_files, res.lost_chunks);
    if (problems || res.problems > res.repaired)
        return EXIT_FSCK_ERRORS;
    return res.problems || salvaged ? EXIT_FSCK_REPAIRED : 0;
}

static int cmd_stats(int argc, char **argv)
{
    kv_options ko;
    kv_db *db;
    char *text;
    ssize_t n;
    int rc;

    if (argc != 2) {
        usage(stderr);
        return 2;
    }
    /* A mounted kvfs answers through its root's virtual xattr. */
    n = getxattr(argv[1], FS_STATS_XATTR, NULL, 0);
    if (n > 0) {
        text = malloc((size_t)n + 1);
        if (text && (n = getxattr(argv[1], FS_STATS_XATTR, text, (size_t)n)) > 0) {
            fwrite(text, 1, (size_t)n, stdout);
            free(text);
            return 0;
        }
        free(text);
    }
    init_kv_options(&ko);
    ko.create_if_missing = 0;
    ko.read_only = 1;
    rc = open_store(argv[1], &ko, &db);
    if (rc) {
        report_open_error(argv[1], rc);
        return 1;
    }
    text = fs_format_stats(db);
    kv_close(db);
    if (!text) {
        fprintf(stderr, "kvfs: cannot read statistics\n");
        return 1;
    }
    fputs(text, stdout);
    free(text);
    return 0;
}

struct compact_watch {
    kv_db *db;
    volatile int done;
};

static void *compact_progress(void *arg)
{
    struct compact_watch *w = arg;
    while (!w->done) {
        kv_stats st;
        if (kv_get_stats(w->db, &st) == 0)
            fprintf(stderr,
                    "\rkvfs compact: %" PRIu64 " compactions, %" PRIu64 " MiB written, %" PRIu64
                    " MiB live   ",
                    st.compactions, st.compaction_bytes_written >> 20, st.total_sst_bytes >> 20);
        usleep(500000);
    }
    return NULL;
}

static int cmd_compact(int argc, char **argv)
{
    struct compact_watch w = {0};
    pthread_t th;
    kv_stats before, after;
    kv_options ko;
    int rc, watching = 0;

    if (argc != 2) {
        usage(stderr);
        return 2;
    }
    init_kv_options(&ko);
    ko.create_if_missing = 0;
    rc = open_store(argv[1], &ko, &w.db);
    if (rc) {
        report_open_error(argv[1], rc);
        return 1;
    }
    kv_get_stats(w.db, &before);
    if (isatty(2) && pthread_create(&th, NULL, compact_progress, &w) == 0)
        watching = 1;
    rc = kv_flush(w.db);
    if (rc == 0)
        rc = kv_compact_range(w.db, NULL, 0, NULL, 0);
    w.done = 1;
    if (watching) {
        pthread_join(th, NULL);
        fprintf(stderr, "\n");
    }
    kv_get_stats(w.db, &after);
    kv_close(w.db);
    if (rc) {
        fprintf(stderr, "kvfs compact: %s\n", kv_strerror(rc));
        return 1;
    }
    printf("kvfs compact: %" PRIu64 " -> %" PRIu64 " bytes of tables\n", before.total_sst_bytes,
           after.total_sst_bytes);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "mount") == 0) {
        argv[1] = argv[0];
        return cmd_mount(argc - 1, argv + 1);
    }
    if (argc >= 2 && strcmp(argv[1], "fsck") == 0)
        return cmd_fsck(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "stats") == 0)
        return cmd_stats(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "compact") == 0)
        return cmd_compact(argc - 1, argv + 1);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    return cmd_mount(argc, argv);
}
