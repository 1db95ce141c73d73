/* posix_driver: checks the POSIX semantics of every filesystem operation inside a directory.
 *
 * Usage:
 *   posix_driver DIR                 as root: every operation, errno of every error path
 *   posix_driver --setup-unpriv DIR  as root: create DIR/unpriv with fixtures owned by root
 *   posix_driver --unpriv DIR        as uid 65534 (setpriv): permission checks on DIR/unpriv
 *
 * Each check prints one line ("ok   section: what" or "FAIL section: what (details, line)"),
 * then "N passed, N failed"; exit status is 1 when any check failed, 2 on a usage error.
 * The expectations are those of Linux on ext4, so the driver validates itself there first.
 * Work happens in a fresh subdirectory (DIR/pd.<pid>) that is removed at the end.
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define UNPRIV_UID 65534
#define UNPRIV_GID 65534
#define FOREIGN_GID 1234 /* a group the unprivileged user is not a member of */
#define KiB 1024LL
#define MiB (1024LL * KiB)
#define GiB (1024LL * MiB)

static int n_passed;
static int n_failed;
static const char *cur_section = "init";

static void section(const char *name)
{
    cur_section = name;
}

static void vreport(int line, int ok, const char *detail, const char *fmt, va_list ap)
{
    char what[512];
    vsnprintf(what, sizeof(what), fmt, ap);
    if (ok) {
        n_passed++;
        printf("ok   %s: %s\n", cur_section, what);
    } else {
        n_failed++;
        printf("FAIL %s: %s (%s; posix_driver.c:%d)\n", cur_section, what, detail, line);
    }
    fflush(stdout);
}

/* Records a check of a plain condition; detail is shown on failure. */
static int check_cond(int line, int ok, const char *detail, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(line, ok, detail, fmt, ap);
    va_end(ap);
    return ok;
}

/* Records a check that a system call succeeded (ret >= 0); returns ret. */
static long check_ok(int line, long ret, const char *fmt, ...)
{
    int err = errno;
    char detail[128];
    va_list ap;
    snprintf(detail, sizeof(detail), "returned %ld, errno %s", ret, strerrorname_np(err));
    va_start(ap, fmt);
    vreport(line, ret >= 0, detail, fmt, ap);
    va_end(ap);
    errno = err;
    return ret;
}

/* Records a check that a system call failed with errno want. */
static int check_err(int line, long ret, int want, const char *fmt, ...)
{
    int err = errno;
    char detail[128];
    int ok = ret == -1 && err == want;
    va_list ap;
    if (ret == -1)
        snprintf(detail, sizeof(detail), "want %s, got errno %s", strerrorname_np(want),
                 strerrorname_np(err));
    else
        snprintf(detail, sizeof(detail), "want %s, but call returned %ld", strerrorname_np(want),
                 ret);
    va_start(ap, fmt);
    vreport(line, ok, detail, fmt, ap);
    va_end(ap);
    return ok;
}

#define CHK(cond, ...) check_cond(__LINE__, !!(cond), "condition false: " #cond, __VA_ARGS__)
#define CHKD(cond, detail, ...) check_cond(__LINE__, !!(cond), detail, __VA_ARGS__)
#define OK(expr, ...) check_ok(__LINE__, (long)(expr), __VA_ARGS__)
#define ERR(expr, want, ...) check_err(__LINE__, (long)(expr), want, __VA_ARGS__)

/* ---- helpers ------------------------------------------------------------------------------ */

static unsigned char pattern_byte(uint64_t off, unsigned seed)
{
    uint64_t x = (off + 1) * 0x9E3779B97F4A7C15ULL + seed * 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 29;
    return (unsigned char)(x | 1); /* never zero, so holes cannot pass for data */
}

static void fill_pattern(unsigned char *buf, size_t len, uint64_t off, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern_byte(off + i, seed);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        perror("malloc");
        exit(2);
    }
    return p;
}

static int write_all_at(int fd, const void *buf, size_t len, off_t off)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Reads up to len bytes at off; returns bytes read (short only at EOF) or -1. */
static ssize_t read_all_at(int fd, void *buf, size_t len, off_t off)
{
    unsigned char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, p + done, len - done, off + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* Creates (or truncates) path with the given content and mode; returns 0 or -1 (reported). */
static int make_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write_all_at(fd, data, len, 0) < 0) {
        OK(-1, "setup: create %s with %zu bytes", path, len);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int make_str(const char *path, const char *s)
{
    return make_file(path, s, strlen(s), 0644);
}

/* Compares a file's whole content with want; on mismatch, describes it in detail. */
static int content_is(const char *path, const void *want, size_t len, char *detail, size_t dcap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(detail, dcap, "open: %s", strerrorname_np(errno));
        return 0;
    }
    unsigned char *buf = xmalloc(len + 1);
    ssize_t n = read_all_at(fd, buf, len + 1, 0);
    int saved = errno;
    close(fd);
    int ok = 0;
    if (n < 0) {
        snprintf(detail, dcap, "read: %s", strerrorname_np(saved));
    } else if ((size_t)n != len) {
        snprintf(detail, dcap, "read %zd bytes, want %zu", n, len);
    } else {
        ok = 1;
        for (size_t i = 0; i < len; i++) {
            if (buf[i] != ((const unsigned char *)want)[i]) {
                snprintf(detail, dcap, "first difference at offset %zu: 0x%02x, want 0x%02x", i,
                         buf[i], ((const unsigned char *)want)[i]);
                ok = 0;
                break;
            }
        }
    }
    free(buf);
    return ok;
}

#define CONTENT_IS(path, want, len, ...)                                                           \
    do {                                                                                           \
        char detail_[160];                                                                         \
        int ok_ = content_is(path, want, len, detail_, sizeof(detail_));                           \
        check_cond(__LINE__, ok_, detail_, __VA_ARGS__);                                           \
    } while (0)

#define STR_IS(path, s, ...) CONTENT_IS(path, s, strlen(s), __VA_ARGS__)

/* Checks that buf[0..len) equals the pattern at off, or zeros when seed is 0. */
static int range_is(const unsigned char *buf, size_t len, uint64_t off, unsigned seed, char *detail,
                    size_t dcap)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char want = seed ? pattern_byte(off + i, seed) : 0;
        if (buf[i] != want) {
            snprintf(detail, dcap, "byte at file offset %" PRIu64 " is 0x%02x, want 0x%02x",
                     off + i, buf[i], want);
            return 0;
        }
    }
    snprintf(detail, dcap, "ok");
    return 1;
}

/* Reads [off, off+len) of fd and checks it against the pattern (seed) or zeros (seed 0). */
static int fd_range_is(int fd, uint64_t off, size_t len, unsigned seed, char *detail, size_t dcap)
{
    unsigned char *buf = xmalloc(len);
    ssize_t n = read_all_at(fd, buf, len, (off_t)off);
    int ok;
    if (n < 0) {
        snprintf(detail, dcap, "pread: %s", strerrorname_np(errno));
        ok = 0;
    } else if ((size_t)n != len) {
        snprintf(detail, dcap, "short read: %zd of %zu bytes", n, len);
        ok = 0;
    } else {
        ok = range_is(buf, len, off, seed, detail, dcap);
    }
    free(buf);
    return ok;
}

#define RANGE_IS(fd, off, len, seed, ...)                                                          \
    do {                                                                                           \
        char detail_[160];                                                                         \
        int ok_ = fd_range_is(fd, off, len, seed, detail_, sizeof(detail_));                       \
        check_cond(__LINE__, ok_, detail_, __VA_ARGS__);                                           \
    } while (0)

static struct stat lst(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        memset(&st, 0, sizeof(st));
        st.st_mode = 0;
        st.st_nlink = (nlink_t)-1;
    }
    return st;
}

static int ts_cmp(struct timespec a, struct timespec b)
{
    if (a.tv_sec != b.tv_sec)
        return a.tv_sec < b.tv_sec ? -1 : 1;
    if (a.tv_nsec != b.tv_nsec)
        return a.tv_nsec < b.tv_nsec ? -1 : 1;
    return 0;
}

static int ts_eq(struct timespec a, long sec, long nsec)
{
    return a.tv_sec == sec && a.tv_nsec == nsec;
}

/* Sleeps long enough that the next timestamp the kernel or the daemon takes is later. */
static void tick(void)
{
    struct timespec t = {0, 30 * 1000 * 1000};
    nanosleep(&t, NULL);
}

/* Sets atime and mtime of path to an hour ago (whole seconds), so updates are visible. */
static struct timespec age(const char *path)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct timespec t[2] = {{now.tv_sec - 3600, 0}, {now.tv_sec - 3600, 0}};
    OK(utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW), "setup: set %s times an hour back", path);
    return t[0];
}

static char *ts_str(struct timespec t, char *buf, size_t cap)
{
    snprintf(buf, cap, "%lld.%09ld", (long long)t.tv_sec, t.tv_nsec);
    return buf;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path) < 0 ? -1 : 0;
    return unlink(path) < 0 ? -1 : 0;
}

static int rm_rf(const char *path)
{
    return nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

static int sys_renameat2(const char *from, const char *to, unsigned flags)
{
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags);
}

/* Makes a fresh directory for one section and enters it; returns 0 or -1. */
static int enter(const char *name)
{
    section(name);
    if (OK(mkdir(name, 0755), "setup: mkdir %s", name) < 0)
        return -1;
    return (int)OK(chdir(name), "setup: chdir %s", name) < 0 ? -1 : 0;
}

static void leave(void)
{
    if (chdir("..") < 0) {
        perror("chdir ..");
        exit(2);
    }
}

/* ---- sections (root mode) ----------------------------------------------------------------- */

static void t_errors(void)
{
    if (enter("errors") < 0)
        return;
    make_str("file", "x");
    OK(mkdir("dir", 0755), "mkdir dir");
    OK(mkdir("full", 0755), "mkdir full");
    make_str("full/child", "c");

    ERR(open("missing", O_RDONLY), ENOENT, "open missing file -> ENOENT");
    struct stat st;
    ERR(stat("missing", &st), ENOENT, "stat missing -> ENOENT");
    ERR(mkdir("missing/sub", 0755), ENOENT, "mkdir under missing parent -> ENOENT");
    ERR(unlink("missing"), ENOENT, "unlink missing -> ENOENT");
    ERR(rmdir("missing"), ENOENT, "rmdir missing -> ENOENT");
    ERR(rename("missing", "other"), ENOENT, "rename missing -> ENOENT");
    ERR(link("missing", "other"), ENOENT, "link missing -> ENOENT");
    ERR(chmod("missing", 0644), ENOENT, "chmod missing -> ENOENT");
    ERR(truncate("missing", 0), ENOENT, "truncate missing -> ENOENT");
    ERR(open("missing/x", O_RDONLY | O_CREAT, 0644), ENOENT,
        "O_CREAT in missing directory -> ENOENT");

    ERR(mkdir("dir", 0755), EEXIST, "mkdir existing dir -> EEXIST");
    ERR(mkdir("file", 0755), EEXIST, "mkdir over existing file -> EEXIST");
    ERR(open("file", O_RDWR | O_CREAT | O_EXCL, 0644), EEXIST, "O_CREAT|O_EXCL existing -> EEXIST");
    ERR(link("file", "dir"), EEXIST, "link onto existing name -> EEXIST");
    ERR(symlink("t", "file"), EEXIST, "symlink onto existing name -> EEXIST");
    ERR(mknod("file", S_IFIFO | 0644, 0), EEXIST, "mknod onto existing name -> EEXIST");

    ERR(open("file/x", O_RDONLY), ENOTDIR, "open file/x -> ENOTDIR");
    ERR(open("file/", O_RDONLY), ENOTDIR, "open file/ (trailing slash) -> ENOTDIR");
    ERR(mkdir("file/x", 0755), ENOTDIR, "mkdir file/x -> ENOTDIR");
    ERR(rmdir("file"), ENOTDIR, "rmdir of a file -> ENOTDIR");
    ERR(open("file", O_RDONLY | O_DIRECTORY), ENOTDIR, "O_DIRECTORY on a file -> ENOTDIR");
    ERR(rename("dir", "file"), ENOTDIR, "rename dir over file -> ENOTDIR");

    ERR(open("dir", O_WRONLY), EISDIR, "open dir O_WRONLY -> EISDIR");
    ERR(open("dir", O_RDWR), EISDIR, "open dir O_RDWR -> EISDIR");
    ERR(unlink("dir"), EISDIR, "unlink of a dir -> EISDIR");
    ERR(rename("file", "dir"), EISDIR, "rename file over dir -> EISDIR");
    ERR(truncate("dir", 0), EISDIR, "truncate dir -> EISDIR");

    ERR(rmdir("full"), ENOTEMPTY, "rmdir non-empty dir -> ENOTEMPTY");
    ERR(rename("dir", "full"), ENOTEMPTY, "rename dir over non-empty dir -> ENOTEMPTY");
    CHK(lst("full/child").st_size == 1, "failed rename left full/child in place");

    char name255[256], name256[257];
    memset(name255, 'n', 255);
    name255[255] = 0;
    memset(name256, 'n', 256);
    name256[256] = 0;
    ERR(open(name256, O_RDWR | O_CREAT, 0644), ENAMETOOLONG,
        "create 256-byte name -> ENAMETOOLONG");
    ERR(mkdir(name256, 0755), ENAMETOOLONG, "mkdir 256-byte name -> ENAMETOOLONG");
    ERR(stat(name256, &st), ENAMETOOLONG, "stat 256-byte name -> ENAMETOOLONG");
    ERR(rename("file", name256), ENAMETOOLONG, "rename to 256-byte name -> ENAMETOOLONG");
    int fd = (int)OK(open(name255, O_RDWR | O_CREAT, 0644), "create 255-byte name");
    if (fd >= 0)
        close(fd);
    OK(stat(name255, &st), "stat 255-byte name");
    OK(unlink(name255), "unlink 255-byte name");

    OK(mkdir("a", 0755), "mkdir a");
    OK(mkdir("a/b", 0755), "mkdir a/b");
    ERR(rename("a", "a/b/c"), EINVAL, "rename dir into its own subtree -> EINVAL");
    ERR(rename("a", "a/c"), EINVAL, "rename dir into itself -> EINVAL");
    ERR(rename("a/b", "a"), ENOTEMPTY, "rename dir over its own ancestor -> ENOTEMPTY");
    CHK(S_ISDIR(lst("a/b").st_mode), "a/b still present after refused renames");
    ERR(rmdir("."), EINVAL, "rmdir . -> EINVAL");
    ERR(link("dir", "dirlink"), EPERM, "hard link to a directory -> EPERM");

    OK(symlink("loop2", "loop1"), "symlink loop1 -> loop2");
    OK(symlink("loop1", "loop2"), "symlink loop2 -> loop1");
    ERR(open("loop1", O_RDONLY), ELOOP, "open symlink loop -> ELOOP");
    ERR(stat("loop1/x", &st), ELOOP, "path through symlink loop -> ELOOP");
    OK(symlink("file", "tofile"), "symlink tofile -> file");
    ERR(open("tofile", O_RDONLY | O_NOFOLLOW), ELOOP, "O_NOFOLLOW on symlink -> ELOOP");

    fd = open("file", O_RDONLY);
    char c;
    ERR(write(fd, "x", 1), EBADF, "write on O_RDONLY fd -> EBADF");
    close(fd);
    fd = open("file", O_WRONLY);
    ERR(read(fd, &c, 1), EBADF, "read on O_WRONLY fd -> EBADF");
    close(fd);
    fd = open("dir", O_RDONLY | O_DIRECTORY);
    ERR(read(fd, &c, 1), EISDIR, "read on directory fd -> EISDIR");
    close(fd);
    ERR(truncate("file", -1), EINVAL, "truncate to negative size -> EINVAL");
    ERR(readlink("file", name255, sizeof(name255)), EINVAL, "readlink of a regular file -> EINVAL");
    leave();
}

static void t_rename(void)
{
    if (enter("rename") < 0)
        return;
    make_str("f1", "one");
    ino_t ino1 = lst("f1").st_ino;
    OK(rename("f1", "f2"), "rename f1 -> f2");
    struct stat st;
    ERR(lstat("f1", &st), ENOENT, "old name gone after rename");
    CHK(lst("f2").st_ino == ino1, "inode number kept by rename");
    STR_IS("f2", "one", "content kept by rename");

    make_str("f3", "three");
    int fd3 = open("f3", O_RDONLY);
    OK(rename("f2", "f3"), "rename over an existing file");
    STR_IS("f3", "one", "target replaced by source content");
    ERR(lstat("f2", &st), ENOENT, "source name gone after replacing rename");
    char buf[16] = {0};
    CHK(read(fd3, buf, sizeof(buf)) == 5 && memcmp(buf, "three", 5) == 0,
        "open fd of the replaced file still reads its old content");
    close(fd3);

    OK(rename("f3", "f3"), "rename a name onto itself is a no-op");
    STR_IS("f3", "one", "content intact after self-rename");
    OK(link("f3", "f3link"), "link f3 f3link");
    OK(rename("f3", "f3link"), "rename between two links of one inode succeeds");
    CHK(lst("f3").st_nlink == 2 && lst("f3link").st_nlink == 2,
        "both links still exist after rename between them (POSIX no-op)");

    OK(mkdir("d1", 0755), "mkdir d1");
    OK(mkdir("d2", 0755), "mkdir d2");
    OK(mkdir("d1/sub", 0755), "mkdir d1/sub");
    make_str("d1/sub/inner", "inner");
    CHK(lst("d1").st_nlink == 3, "d1 nlink 3 with one subdir (got %lu)",
        (unsigned long)lst("d1").st_nlink);
    OK(rename("d1/sub", "d2/sub"), "move directory to another parent");
    CHK(lst("d1").st_nlink == 2, "old parent nlink drops to 2 (got %lu)",
        (unsigned long)lst("d1").st_nlink);
    CHK(lst("d2").st_nlink == 3, "new parent nlink rises to 3 (got %lu)",
        (unsigned long)lst("d2").st_nlink);
    CHK(lst("d2/sub/..").st_ino == lst("d2").st_ino, "moved dir's .. is the new parent");
    STR_IS("d2/sub/inner", "inner", "moved dir's children follow it");

    OK(mkdir("e1", 0755), "mkdir e1");
    OK(mkdir("e2", 0755), "mkdir e2");
    make_str("e1/k", "k");
    ino_t e1 = lst("e1").st_ino;
    OK(rename("e1", "e2"), "rename dir over an empty dir");
    CHK(lst("e2").st_ino == e1, "target dir is now the source dir");
    STR_IS("e2/k", "k", "source dir's child is reachable under the new name");
    ERR(lstat("e1", &st), ENOENT, "source dir name gone");

    make_str("shared", "s");
    OK(mkdir("big", 0755), "mkdir big");
    char name[64];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "big/f%03d", i);
        make_str(name, name);
    }
    OK(rename("big", "big2"), "rename a directory with 200 entries");
    int all = 1;
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "big2/f%03d", i);
        char want[64];
        snprintf(want, sizeof(want), "big/f%03d", i);
        char detail[160];
        if (!content_is(name, want, strlen(want), detail, sizeof(detail)))
            all = 0;
    }
    CHK(all, "every child of the renamed directory is intact");
    leave();
}

static void t_rename_flags(void)
{
    if (enter("rename_flags") < 0)
        return;
    make_str("a", "A");
    make_str("b", "B");
    ERR(sys_renameat2("a", "b", RENAME_NOREPLACE), EEXIST,
        "RENAME_NOREPLACE onto existing -> EEXIST");
    STR_IS("a", "A", "source intact after refused NOREPLACE");
    STR_IS("b", "B", "target intact after refused NOREPLACE");
    OK(sys_renameat2("a", "c", RENAME_NOREPLACE), "RENAME_NOREPLACE to a free name");
    STR_IS("c", "A", "NOREPLACE rename moved the content");

    OK(mkdir("p1", 0755), "mkdir p1");
    OK(mkdir("p2", 0755), "mkdir p2");
    make_str("p1/x", "X");
    OK(mkdir("p2/y", 0755), "mkdir p2/y");
    make_str("p2/y/child", "child");
    ino_t ix = lst("p1/x").st_ino, iy = lst("p2/y").st_ino;
    OK(sys_renameat2("p1/x", "p2/y", RENAME_EXCHANGE), "RENAME_EXCHANGE file <-> dir across dirs");
    CHK(lst("p1/x").st_ino == iy && S_ISDIR(lst("p1/x").st_mode), "p1/x is now the directory");
    CHK(lst("p2/y").st_ino == ix && S_ISREG(lst("p2/y").st_mode), "p2/y is now the file");
    STR_IS("p2/y", "X", "exchanged file content intact");
    STR_IS("p1/x/child", "child", "exchanged dir's children follow it");
    CHK(lst("p1/x/..").st_ino == lst("p1").st_ino, "exchanged dir's .. is its new parent");
    CHK(lst("p1").st_nlink == 3 && lst("p2").st_nlink == 2,
        "parent nlinks follow the exchanged directory (p1 %lu want 3, p2 %lu want 2)",
        (unsigned long)lst("p1").st_nlink, (unsigned long)lst("p2").st_nlink);
    ERR(sys_renameat2("b", "nothere", RENAME_EXCHANGE), ENOENT,
        "RENAME_EXCHANGE with missing target -> ENOENT");
    ERR(sys_renameat2("b", "c", RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL,
        "RENAME_EXCHANGE|RENAME_NOREPLACE -> EINVAL");
    OK(sys_renameat2("b", "c", RENAME_EXCHANGE), "RENAME_EXCHANGE two files");
    STR_IS("b", "A", "exchange: b has c's content");
    STR_IS("c", "B", "exchange: c has b's content");
    leave();
}

static void t_links(void)
{
    if (enter("links") < 0)
        return;
    make_str("f", "data");
    struct stat before = lst("f");
    tick();
    OK(link("f", "g"), "link f g");
    struct stat sf = lst("f"), sg = lst("g");
    CHK(sf.st_ino == sg.st_ino, "both names share one inode");
    CHK(sf.st_nlink == 2 && sg.st_nlink == 2, "nlink is 2 on both names (got %lu)",
        (unsigned long)sf.st_nlink);
    CHK(ts_cmp(sf.st_ctim, before.st_ctim) > 0, "link updates the inode's ctime");
    int fd = open("g", O_WRONLY | O_APPEND);
    CHK(fd >= 0 && write(fd, "more", 4) == 4, "append through the second name");
    close(fd);
    STR_IS("f", "datamore", "write through one name visible through the other");
    OK(mkdir("sub", 0755), "mkdir sub");
    OK(link("f", "sub/h"), "link into another directory");
    CHK(lst("f").st_nlink == 3, "nlink 3 after third link");
    OK(unlink("f"), "unlink first name");
    CHK(lst("g").st_nlink == 2, "nlink drops to 2 after unlink");
    STR_IS("sub/h", "datamore", "content reachable through a remaining link");
    char name[32];
    int ok = 1;
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "l%03d", i);
        if (link("g", name) < 0)
            ok = 0;
    }
    CHK(ok, "100 more hard links created");
    CHK(lst("g").st_nlink == 102, "nlink counts 102 links (got %lu)",
        (unsigned long)lst("g").st_nlink);
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "l%03d", i);
        if (unlink(name) < 0)
            ok = 0;
    }
    CHK(ok && lst("g").st_nlink == 2, "nlink back to 2 after unlinking them");
    ERR(link("nothere", "x"), ENOENT, "link from a missing name -> ENOENT");
    leave();
}

static void t_symlinks(void)
{
    if (enter("symlinks") < 0)
        return;
    char buf[PATH_MAX + 1];
    OK(symlink("some/target/path", "s"), "symlink s");
    struct stat st = lst("s");
    CHK(S_ISLNK(st.st_mode), "lstat says symlink");
    CHK(st.st_size == 16, "symlink size is target length (got %lld)", (long long)st.st_size);
    ssize_t n = readlink("s", buf, sizeof(buf));
    CHK(n == 16 && memcmp(buf, "some/target/path", 16) == 0, "readlink returns exact target");
    ERR(stat("s", &st), ENOENT, "stat through dangling symlink -> ENOENT");
    make_str("file", "content");
    OK(symlink("file", "tofile"), "symlink tofile -> file");
    STR_IS("tofile", "content", "read through symlink");
    OK(mkdir("dir", 0755), "mkdir dir");
    make_str("dir/x", "x");
    OK(symlink("dir", "todir"), "symlink todir -> dir");
    STR_IS("todir/x", "x", "path component through symlink");
    n = readlink("s", buf, 4);
    CHK(n == 4 && memcmp(buf, "some", 4) == 0, "readlink with small buffer truncates");

    char longt[4001];
    for (int i = 0; i < 4000; i++)
        longt[i] = (i % 100 == 99) ? '/' : (char)('a' + i % 26);
    longt[4000] = 0;
    OK(symlink(longt, "long"), "symlink with a 4000-byte target");
    n = readlink("long", buf, sizeof(buf));
    CHK(n == 4000 && memcmp(buf, longt, 4000) == 0, "4000-byte target reads back exactly (n=%zd)",
        n);
    char *toolong = xmalloc(PATH_MAX + 1);
    memset(toolong, 'z', PATH_MAX);
    toolong[PATH_MAX] = 0;
    ERR(symlink(toolong, "toolong"), ENAMETOOLONG,
        "symlink target of PATH_MAX bytes -> ENAMETOOLONG");
    free(toolong);
    OK(lchown("s", 4321, 4321), "lchown a symlink");
    CHK(lst("s").st_uid == 4321 && lst("file").st_uid == 0,
        "lchown changed the link, not a target");
    struct timespec t[2] = {{100, 5}, {200, 6}};
    OK(utimensat(AT_FDCWD, "tofile", t, AT_SYMLINK_NOFOLLOW),
       "utimensat AT_SYMLINK_NOFOLLOW on a symlink");
    CHK(ts_eq(lst("tofile").st_mtim, 200, 6), "symlink's own mtime set");
    CHK(!ts_eq(lst("file").st_mtim, 200, 6), "target's mtime untouched");
    leave();
}

static void t_mknod(void)
{
    if (enter("mknod") < 0)
        return;
    OK(mkfifo("fifo", 0640), "mkfifo");
    struct stat st = lst("fifo");
    CHK(S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0640, "fifo type and mode 0640 (got %o)",
        st.st_mode);
    int fd = (int)OK(open("fifo", O_RDWR | O_NONBLOCK), "open fifo O_RDWR");
    char buf[8] = {0};
    CHK(fd >= 0 && write(fd, "pipe", 4) == 4 && read(fd, buf, 8) == 4 &&
            memcmp(buf, "pipe", 4) == 0,
        "data passes through the fifo");
    if (fd >= 0)
        close(fd);
    OK(mknod("chr", S_IFCHR | 0600, makedev(1, 7)), "mknod char device 1:7");
    st = lst("chr");
    CHK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 7), "char device type and rdev kept");
    OK(mknod("blk", S_IFBLK | 0600, makedev(259, 65537)), "mknod block device 259:65537");
    st = lst("blk");
    CHK(S_ISBLK(st.st_mode) && st.st_rdev == makedev(259, 65537),
        "block device large minor kept (got %u:%u)", major(st.st_rdev), minor(st.st_rdev));
    OK(mknod("sock", S_IFSOCK | 0644, 0), "mknod socket");
    CHK(S_ISSOCK(lst("sock").st_mode), "socket type kept");
    OK(mknod("reg", S_IFREG | 0600, 0), "mknod regular file");
    CHK(S_ISREG(lst("reg").st_mode) && lst("reg").st_size == 0,
        "mknod S_IFREG makes an empty file");

    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "bound.sock");
    OK(bind(s, (struct sockaddr *)&sa, sizeof(sa)), "bind a unix socket in the directory");
    CHK(S_ISSOCK(lst("bound.sock").st_mode), "bound socket appears as a socket");
    close(s);
    leave();
}

static void t_chmod_chown(void)
{
    if (enter("chmod_chown") < 0)
        return;
    make_str("f", "x");
    OK(chmod("f", 0640), "chmod 0640");
    CHK((lst("f").st_mode & 07777) == 0640, "mode is 0640");
    OK(chmod("f", 07777), "chmod 07777 as root");
    CHK((lst("f").st_mode & 07777) == 07777, "all mode bits kept (got %o)",
        lst("f").st_mode & 07777);
    int fd = open("f", O_RDONLY);
    OK(fchmod(fd, 0600), "fchmod 0600");
    close(fd);
    CHK((lst("f").st_mode & 07777) == 0600, "mode is 0600 after fchmod");
    struct stat before = lst("f");
    tick();
    OK(chown("f", 1234, 5678), "chown 1234:5678");
    struct stat st = lst("f");
    CHK(st.st_uid == 1234 && st.st_gid == 5678, "owner and group set");
    CHK(ts_cmp(st.st_ctim, before.st_ctim) > 0, "chown updates ctime");
    OK(chown("f", (uid_t)-1, (gid_t)-1), "chown -1 -1");
    CHK(lst("f").st_uid == 1234 && lst("f").st_gid == 5678, "chown -1 -1 changes nothing");
    OK(chmod("f", 06755), "chmod 06755");
    OK(chown("f", 1, (gid_t)-1), "chown of a setuid/setgid executable");
    CHK((lst("f").st_mode & 07777) == 0755, "chown cleared setuid and setgid (mode %o)",
        lst("f").st_mode & 07777);
    OK(chmod("f", 02745), "chmod 02745 (setgid without group exec: mandatory-lock bit)");
    OK(chown("f", 2, (gid_t)-1), "chown of a setgid non-group-executable file");
    CHK((lst("f").st_mode & 07777) == 02745, "setgid without group exec survives chown (mode %o)",
        lst("f").st_mode & 07777);
    OK(chmod("f", 04755), "chmod 04755");
    fd = open("f", O_WRONLY);
    CHK(fd >= 0 && write(fd, "y", 1) == 1, "root writes to setuid file");
    close(fd);
    CHK((lst("f").st_mode & 07777) == 04755, "write by root (CAP_FSETID) keeps setuid (mode %o)",
        lst("f").st_mode & 07777);
    OK(mkdir("d", 0755), "mkdir d");
    OK(chmod("d", 02755), "chmod dir 02755");
    OK(chown("d", 3, 4), "chown dir");
    CHK((lst("d").st_mode & 07777) == 02755, "chown keeps setgid on a directory (mode %o)",
        lst("d").st_mode & 07777);
    OK(chown("d", 0, 4), "setup: chown d back to root");
    make_str("d/inherit", "i");
    CHK(lst("d/inherit").st_gid == 4, "file in setgid dir inherits the dir's group (got %u)",
        lst("d/inherit").st_gid);
    OK(mkdir("d/sub", 0755), "mkdir in setgid dir");
    CHK(lst("d/sub").st_gid == 4 && (lst("d/sub").st_mode & S_ISGID),
        "subdir of setgid dir inherits group and setgid");
    leave();
}

static void t_utimens(void)
{
    if (enter("utimens") < 0)
        return;
    make_str("f", "x");
    char a[40], b[40];
    struct timespec t[2] = {{1000, 123456789}, {2000, 987654321}};
    struct stat before = lst("f");
    tick();
    OK(utimensat(AT_FDCWD, "f", t, 0), "utimensat with nanoseconds");
    struct stat st = lst("f");
    CHK(ts_eq(st.st_atim, 1000, 123456789), "atime exact to the ns (got %s)",
        ts_str(st.st_atim, a, sizeof(a)));
    CHK(ts_eq(st.st_mtim, 2000, 987654321), "mtime exact to the ns (got %s)",
        ts_str(st.st_mtim, b, sizeof(b)));
    CHK(ts_cmp(st.st_ctim, before.st_ctim) > 0, "utimensat updates ctime");
    struct timespec t2[2] = {{0, UTIME_OMIT}, {3000, 5}};
    OK(utimensat(AT_FDCWD, "f", t2, 0), "utimensat UTIME_OMIT atime");
    st = lst("f");
    CHK(ts_eq(st.st_atim, 1000, 123456789), "UTIME_OMIT leaves atime alone");
    CHK(ts_eq(st.st_mtim, 3000, 5), "mtime set alongside UTIME_OMIT");
    struct timespec t3[2] = {{4000, 7}, {0, UTIME_OMIT}};
    OK(utimensat(AT_FDCWD, "f", t3, 0), "utimensat UTIME_OMIT mtime");
    st = lst("f");
    CHK(ts_eq(st.st_atim, 4000, 7) && ts_eq(st.st_mtim, 3000, 5), "UTIME_OMIT leaves mtime alone");
    struct timespec now0, now1;
    clock_gettime(CLOCK_REALTIME, &now0);
    struct timespec t4[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
    OK(utimensat(AT_FDCWD, "f", t4, 0), "utimensat UTIME_NOW");
    clock_gettime(CLOCK_REALTIME, &now1);
    st = lst("f");
    CHK(st.st_mtim.tv_sec >= now0.tv_sec - 1 && st.st_mtim.tv_sec <= now1.tv_sec + 1 &&
            st.st_atim.tv_sec >= now0.tv_sec - 1 && st.st_atim.tv_sec <= now1.tv_sec + 1,
        "UTIME_NOW sets both times to now");
    OK(utimensat(AT_FDCWD, "f", NULL, 0), "utimensat NULL (now)");
    CHK(lst("f").st_mtim.tv_sec >= now0.tv_sec - 1, "NULL times set now");
    int fd = open("f", O_RDONLY);
    struct timespec t5[2] = {{5000, 1}, {6000, 999999999}};
    OK(futimens(fd, t5), "futimens");
    close(fd);
    CHK(ts_eq(lst("f").st_mtim, 6000, 999999999) && ts_eq(lst("f").st_atim, 5000, 1),
        "futimens times exact");
    struct timespec t6[2] = {{8589934592LL, 1}, {4294967296LL + 7, 2}};
    OK(utimensat(AT_FDCWD, "f", t6, 0), "utimensat beyond 2106 (2^33 s)");
    st = lst("f");
    CHK(ts_eq(st.st_atim, 8589934592LL, 1) && ts_eq(st.st_mtim, 4294967296LL + 7, 2),
        "times beyond 32 bits kept (atime %s mtime %s)", ts_str(st.st_atim, a, sizeof(a)),
        ts_str(st.st_mtim, b, sizeof(b)));
    OK(mkdir("d", 0755), "mkdir d");
    OK(utimensat(AT_FDCWD, "d", t, 0), "utimensat on a directory");
    CHK(ts_eq(lst("d").st_mtim, 2000, 987654321), "directory mtime exact");
    leave();
}

#define NEWER(after, before, what)                                                                 \
    do {                                                                                           \
        char a_[40], b_[40], d_[100];                                                              \
        snprintf(d_, sizeof(d_), "%s -> %s", ts_str(before, b_, sizeof(b_)),                       \
                 ts_str(after, a_, sizeof(a_)));                                                   \
        check_cond(__LINE__, ts_cmp(after, before) > 0, d_, "%s", what);                           \
    } while (0)

#define SAME(after, before, what)                                                                  \
    do {                                                                                           \
        char a_[40], b_[40], d_[100];                                                              \
        snprintf(d_, sizeof(d_), "%s -> %s", ts_str(before, b_, sizeof(b_)),                       \
                 ts_str(after, a_, sizeof(a_)));                                                   \
        check_cond(__LINE__, ts_cmp(after, before) == 0, d_, "%s", what);                          \
    } while (0)

static void t_timestamps(void)
{
    if (enter("timestamps") < 0)
        return;
    make_str("f", "hello");
    struct timespec old = age("f");
    struct stat b = lst("f");
    tick();
    int fd = open("f", O_WRONLY);
    CHK(write(fd, "J", 1) == 1, "write one byte");
    struct stat a;
    fstat(fd, &a);
    NEWER(a.st_mtim, old, "write updates mtime");
    NEWER(a.st_ctim, b.st_ctim, "write updates ctime");
    SAME(a.st_atim, old, "write leaves atime alone");
    close(fd);
    a = lst("f");
    SAME(a.st_atim, old, "atime still untouched after close");

    old = age("f");
    b = lst("f");
    tick();
    OK(truncate("f", 2), "truncate down");
    a = lst("f");
    NEWER(a.st_mtim, old, "truncate updates mtime");
    NEWER(a.st_ctim, b.st_ctim, "truncate updates ctime");
    old = age("f");
    b = lst("f");
    tick();
    fd = open("f", O_WRONLY);
    OK(ftruncate(fd, 100000), "ftruncate up");
    close(fd);
    a = lst("f");
    NEWER(a.st_mtim, old, "ftruncate updates mtime");
    NEWER(a.st_ctim, b.st_ctim, "ftruncate updates ctime");
    old = age("f");
    b = lst("f");
    tick();
    fd = open("f", O_WRONLY | O_TRUNC);
    close(fd);
    a = lst("f");
    NEWER(a.st_mtim, old, "O_TRUNC updates mtime");
    NEWER(a.st_ctim, b.st_ctim, "O_TRUNC updates ctime");

    make_str("r", "readme");
    old = age("r");
    b = lst("r");
    tick();
    char buf[8];
    fd = open("r", O_RDONLY);
    CHK(read(fd, buf, sizeof(buf)) == 6, "read 6 bytes");
    close(fd);
    a = lst("r");
    SAME(a.st_mtim, old, "read leaves mtime alone");
    SAME(a.st_ctim, b.st_ctim, "read leaves ctime alone");

    old = age("f");
    b = lst("f");
    tick();
    OK(chmod("f", 0600), "chmod");
    a = lst("f");
    NEWER(a.st_ctim, b.st_ctim, "chmod updates ctime");
    SAME(a.st_mtim, old, "chmod leaves mtime alone");

    OK(mkdir("p", 0755), "mkdir p");
    OK(mkdir("q", 0755), "mkdir q");
    make_str("p/x", "x");
    struct timespec pold = age("p");
    struct stat pb = lst("p");
    b = lst("p/x");
    tick();
    OK(link("p/x", "p/y"), "link in p");
    a = lst("p/x");
    NEWER(a.st_ctim, b.st_ctim, "link updates the file's ctime");
    struct stat pa = lst("p");
    NEWER(pa.st_mtim, pold, "link updates parent mtime");
    NEWER(pa.st_ctim, pb.st_ctim, "link updates parent ctime");

    pold = age("p");
    pb = lst("p");
    b = lst("p/x");
    tick();
    OK(unlink("p/y"), "unlink p/y");
    pa = lst("p");
    NEWER(pa.st_mtim, pold, "unlink updates parent mtime");
    NEWER(pa.st_ctim, pb.st_ctim, "unlink updates parent ctime");
    NEWER(lst("p/x").st_ctim, b.st_ctim, "unlink updates ctime of the remaining link");

    pold = age("p");
    pb = lst("p");
    struct timespec qold = age("q");
    struct stat qb = lst("q");
    b = lst("p/x");
    tick();
    OK(rename("p/x", "q/x"), "rename p/x q/x");
    pa = lst("p");
    struct stat qa = lst("q");
    NEWER(pa.st_mtim, pold, "rename updates source parent mtime");
    NEWER(pa.st_ctim, pb.st_ctim, "rename updates source parent ctime");
    NEWER(qa.st_mtim, qold, "rename updates target parent mtime");
    NEWER(qa.st_ctim, qb.st_ctim, "rename updates target parent ctime");
    NEWER(lst("q/x").st_ctim, b.st_ctim, "rename updates the renamed inode's ctime");

    pold = age("p");
    pb = lst("p");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    tick();
    make_str("p/new", "n");
    pa = lst("p");
    NEWER(pa.st_mtim, pold, "create updates parent mtime");
    NEWER(pa.st_ctim, pb.st_ctim, "create updates parent ctime");
    a = lst("p/new");
    CHK(a.st_mtim.tv_sec >= now.tv_sec - 1 && a.st_ctim.tv_sec >= now.tv_sec - 1 &&
            a.st_atim.tv_sec >= now.tv_sec - 1 && a.st_mtim.tv_sec <= now.tv_sec + 10,
        "new file's times are now");

    pold = age("p");
    pb = lst("p");
    tick();
    OK(mkdir("p/d", 0755), "mkdir p/d");
    pa = lst("p");
    NEWER(pa.st_mtim, pold, "mkdir updates parent mtime");
    NEWER(pa.st_ctim, pb.st_ctim, "mkdir updates parent ctime");
    pold = age("p");
    tick();
    OK(rmdir("p/d"), "rmdir p/d");
    NEWER(lst("p").st_mtim, pold, "rmdir updates parent mtime");
    pold = age("p");
    tick();
    OK(symlink("t", "p/s"), "symlink p/s");
    NEWER(lst("p").st_mtim, pold, "symlink updates parent mtime");
    pold = age("p");
    tick();
    OK(mknod("p/fifo", S_IFIFO | 0644, 0), "mknod p/fifo");
    NEWER(lst("p").st_mtim, pold, "mknod updates parent mtime");

    b = lst("r");
    tick();
    OK(setxattr("r", "user.t", "v", 1, 0), "setxattr");
    NEWER(lst("r").st_ctim, b.st_ctim, "setxattr updates ctime");
    b = lst("r");
    tick();
    OK(removexattr("r", "user.t"), "removexattr");
    NEWER(lst("r").st_ctim, b.st_ctim, "removexattr updates ctime");
    leave();
}

static void t_truncate(void)
{
    if (enter("truncate") < 0)
        return;
    const size_t n = 300000;
    unsigned char *buf = xmalloc(n);
    fill_pattern(buf, n, 0, 7);
    if (make_file("f", buf, n, 0644) == 0) {
        int fd = open("f", O_RDWR);
        OK(truncate("f", 100000), "truncate down to 100000");
        CHK(lst("f").st_size == 100000, "size 100000");
        RANGE_IS(fd, 0, 100000, 7, "prefix intact after truncate down");
        OK(truncate("f", 250000), "truncate up to 250000");
        CHK(lst("f").st_size == 250000, "size 250000");
        RANGE_IS(fd, 0, 100000, 7, "prefix intact after truncate up");
        RANGE_IS(fd, 100000, 150000, 0, "extension after truncate down+up reads zeros");
        OK(ftruncate(fd, 65537), "ftruncate to 65537");
        OK(ftruncate(fd, 70000), "ftruncate to 70000");
        RANGE_IS(fd, 0, 65537, 7, "prefix intact after ftruncate at a 64 KiB+1 boundary");
        RANGE_IS(fd, 65537, 70000 - 65537, 0, "tail after ftruncate down+up reads zeros");
        OK(ftruncate(fd, 0), "ftruncate to 0");
        CHK(lst("f").st_size == 0, "size 0");
        OK(ftruncate(fd, 4096), "ftruncate up from 0");
        RANGE_IS(fd, 0, 4096, 0, "file regrown from 0 reads zeros");
        char c;
        CHK(pread(fd, &c, 1, 4096) == 0, "read at EOF returns 0");
        close(fd);

        fd = open("g", O_RDWR | O_CREAT, 0644);
        CHK(pwrite(fd, "0123456789", 10, 0) == 10, "write 10 bytes");
        CHK(pwrite(fd, "Z", 1, 1000000) == 1, "write one byte at 1000000");
        CHK(lst("g").st_size == 1000001, "size grows to 1000001");
        RANGE_IS(fd, 10, 1000000 - 10, 0, "gap written past EOF reads zeros");
        close(fd);
    }
    free(buf);
    leave();
}

static void t_open_flags(void)
{
    if (enter("open_flags") < 0)
        return;
    make_str("f", "0123456789");
    int fd = (int)OK(open("f", O_WRONLY | O_APPEND), "open O_APPEND");
    lseek(fd, 0, SEEK_SET);
    CHK(write(fd, "abc", 3) == 3, "write via O_APPEND");
    CHK(pwrite(fd, "de", 2, 0) == 2, "pwrite via O_APPEND");
    close(fd);
    STR_IS("f", "0123456789abcde", "O_APPEND writes land at EOF (pwrite too, as on Linux)");
    int f1 = open("f", O_WRONLY | O_APPEND), f2 = open("f", O_WRONLY | O_APPEND);
    CHK(write(f1, "1", 1) == 1 && write(f2, "2", 1) == 1 && write(f1, "3", 1) == 1,
        "interleaved appends through two fds");
    close(f1);
    close(f2);
    STR_IS("f", "0123456789abcde123", "appends from two fds never overwrite each other");
    fd = (int)OK(open("f", O_RDWR | O_CREAT, 0600), "O_CREAT on an existing file opens it");
    close(fd);
    STR_IS("f", "0123456789abcde123", "O_CREAT without O_TRUNC keeps content");
    ERR(open("f", O_RDWR | O_CREAT | O_EXCL, 0600), EEXIST, "O_EXCL on existing -> EEXIST");
    OK(symlink("dangling-target", "dang"), "symlink dang");
    ERR(open("dang", O_RDWR | O_CREAT | O_EXCL, 0600), EEXIST,
        "O_EXCL on dangling symlink -> EEXIST");
    fd = (int)OK(open("dang", O_RDWR | O_CREAT, 0600),
                 "O_CREAT through dangling symlink creates target");
    close(fd);
    CHK(S_ISREG(lst("dangling-target").st_mode), "symlink target created");
    fd = (int)OK(open("f", O_RDWR | O_TRUNC), "open O_TRUNC");
    struct stat st;
    fstat(fd, &st);
    CHK(st.st_size == 0, "O_TRUNC empties the file");
    close(fd);
    /* Regression: a daemon that ignored O_TRUNC let the old bytes come back once the file grew
     * again (the kernel had only dropped its own size and pages). */
    unsigned char old[4096];
    fill_pattern(old, sizeof(old), 1 * MiB, 21);
    fd = open("grow", O_RDWR | O_CREAT, 0644);
    CHK(fd >= 0 && write_all_at(fd, old, sizeof(old), 1 * MiB) == 0, "write 4 KiB at 1 MiB");
    if (fd >= 0)
        close(fd);
    fd = (int)OK(open("grow", O_WRONLY | O_TRUNC), "reopen with O_TRUNC");
    CHK(fd >= 0 && pwrite(fd, "end", 3, 2 * MiB) == 3, "grow the file again past 2 MiB");
    if (fd >= 0)
        close(fd);
    fd = open("grow", O_RDONLY);
    RANGE_IS(fd, 0, 2 * MiB, 0, "bytes from before O_TRUNC do not come back when the file regrows");
    if (fd >= 0)
        close(fd);
    fd = (int)OK(open("new", O_RDWR | O_CREAT | O_EXCL, 0600), "O_CREAT|O_EXCL new file");
    close(fd);
    CHK((lst("new").st_mode & 07777) == 0600, "created with requested mode 0600");
    fd = (int)OK(open("new2", O_RDWR | O_CREAT, 0666), "create with 0666 under umask 022");
    close(fd);
    CHK((lst("new2").st_mode & 07777) == 0644, "umask applied (got %o)",
        lst("new2").st_mode & 07777);

    fd = open("direct", O_RDWR | O_CREAT | O_DIRECT, 0644);
    if (OK(fd, "open O_DIRECT") < 0) {
        leave();
        return;
    }
    void *abuf = NULL;
    if (posix_memalign(&abuf, 4096, 65536) != 0)
        exit(2);
    fill_pattern(abuf, 65536, 8192, 11);
    CHK(pwrite(fd, abuf, 65536, 8192) == 65536, "aligned O_DIRECT write of 64 KiB at 8192");
    memset(abuf, 0, 65536);
    CHK(pread(fd, abuf, 65536, 8192) == 65536, "aligned O_DIRECT read");
    char detail[160];
    CHKD(range_is(abuf, 65536, 8192, 11, detail, sizeof(detail)), detail,
         "O_DIRECT read returns what O_DIRECT wrote");
    close(fd);
    fd = open("direct", O_RDONLY);
    RANGE_IS(fd, 0, 8192, 0, "buffered read sees the hole before the O_DIRECT write");
    RANGE_IS(fd, 8192, 65536, 11, "buffered read sees the O_DIRECT data");
    close(fd);
    free(abuf);
    leave();
}

static void t_sparse_seek(void)
{
    if (enter("sparse") < 0)
        return;
    const off_t far = 16 * MiB;
    unsigned char buf[4096];
    int fd = (int)OK(open("f", O_RDWR | O_CREAT, 0644), "create f");
    if (fd < 0) {
        leave();
        return;
    }
    fill_pattern(buf, sizeof(buf), 0, 3);
    CHK(pwrite(fd, buf, 4096, 0) == 4096, "write 4 KiB at 0");
    fill_pattern(buf, sizeof(buf), (uint64_t)far, 3);
    CHK(pwrite(fd, buf, 4096, far) == 4096, "write 4 KiB at 16 MiB");
    OK(fsync(fd), "fsync");
    CHK(lst("f").st_size == far + 4096, "size is 16 MiB + 4 KiB");
    RANGE_IS(fd, 4096, 1 * MiB, 0, "hole reads zeros");
    RANGE_IS(fd, (uint64_t)far - 65536, 65536, 0, "hole just before the far data reads zeros");
    RANGE_IS(fd, (uint64_t)far, 4096, 3, "far data intact");
    off_t data0 = lseek(fd, 0, SEEK_DATA);
    CHK(data0 == 0, "SEEK_DATA from 0 is 0 (got %lld)", (long long)data0);
    off_t hole = lseek(fd, 0, SEEK_HOLE);
    CHK(hole >= 4096 && hole < far, "SEEK_HOLE from 0 finds the hole in [4 KiB, 16 MiB) (got %lld)",
        (long long)hole);
    off_t data1 = lseek(fd, hole < 0 ? 4096 : hole, SEEK_DATA);
    CHK(data1 > 4096 && data1 <= far, "SEEK_DATA from the hole finds the far data (got %lld)",
        (long long)data1);
    off_t hole2 = lseek(fd, far, SEEK_HOLE);
    CHK(hole2 == far + 4096, "SEEK_HOLE in the last data is EOF (got %lld)", (long long)hole2);
    ERR(lseek(fd, far + 4096, SEEK_DATA), ENXIO, "SEEK_DATA at EOF -> ENXIO");
    ERR(lseek(fd, far + 5000, SEEK_HOLE), ENXIO, "SEEK_HOLE past EOF -> ENXIO");
    struct stat st;
    fstat(fd, &st);
    CHK((long long)st.st_blocks * 512 < 4 * MiB,
        "sparse file allocates far less than its size (st_blocks %lld)", (long long)st.st_blocks);
    close(fd);

    fd = open("empty", O_RDWR | O_CREAT, 0644);
    OK(ftruncate(fd, 1 * GiB), "ftruncate a new file to 1 GiB");
    ERR(lseek(fd, 0, SEEK_DATA), ENXIO, "SEEK_DATA in an all-hole file -> ENXIO");
    CHK(lseek(fd, 0, SEEK_HOLE) == 0, "SEEK_HOLE in an all-hole file is 0");
    RANGE_IS(fd, 512 * MiB, 65536, 0, "all-hole file reads zeros in the middle");
    close(fd);
    leave();
}

static void t_fallocate(void)
{
    if (enter("fallocate") < 0)
        return;
    int fd = (int)OK(open("f", O_RDWR | O_CREAT, 0644), "create f");
    if (fd < 0) {
        leave();
        return;
    }
    OK(fallocate(fd, 0, 0, 1 * MiB), "fallocate mode 0, 1 MiB");
    CHK(lst("f").st_size == 1 * MiB, "mode 0 extends the size to 1 MiB");
    RANGE_IS(fd, 0, 1 * MiB, 0, "preallocated range reads zeros");
    OK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 2 * MiB), "fallocate KEEP_SIZE 2 MiB");
    CHK(lst("f").st_size == 1 * MiB, "KEEP_SIZE keeps the size at 1 MiB");
    OK(fallocate(fd, 0, 5 * MiB, 4096), "fallocate mode 0 beyond EOF");
    CHK(lst("f").st_size == 5 * MiB + 4096, "size grows to 5 MiB + 4 KiB");
    close(fd);

    const size_t n = 300000;
    unsigned char *buf = xmalloc(n);
    fill_pattern(buf, n, 0, 5);
    if (make_file("p", buf, n, 0644) == 0) {
        fd = open("p", O_RDWR);
        OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1000, 70000),
           "punch an unaligned hole [1000, 71000)");
        RANGE_IS(fd, 0, 1000, 5, "data before the hole intact");
        RANGE_IS(fd, 1000, 70000, 0, "punched range reads zeros");
        RANGE_IS(fd, 71000, 131072 - 71000, 5, "data after the hole intact");
        OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 131072, 65536),
           "punch an aligned 64 KiB hole");
        RANGE_IS(fd, 131072, 65536, 0, "aligned punched range reads zeros");
        RANGE_IS(fd, 196608, n - 196608, 5, "data after the aligned hole intact");
        CHK(lst("p").st_size == (off_t)n, "punching keeps the size");
        OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, n - 10, 1000),
           "punch a hole across EOF");
        CHK(lst("p").st_size == (off_t)n, "punch across EOF keeps the size");
        RANGE_IS(fd, n - 10, 10, 0, "last 10 bytes punched");
        ERR(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), EOPNOTSUPP,
            "PUNCH_HOLE without KEEP_SIZE -> EOPNOTSUPP");
        close(fd);
    }
    free(buf);
    leave();
}

static void t_large_offsets(void)
{
    if (enter("large") < 0)
        return;
    int fd = (int)OK(open("f", O_RDWR | O_CREAT, 0644), "create f");
    if (fd < 0) {
        leave();
        return;
    }
    const off_t off = 5 * GiB + 123;
    CHK(pwrite(fd, "hello", 5, off) == 5, "pwrite at 5 GiB + 123");
    CHK(lst("f").st_size == off + 5, "size is 5 GiB + 128");
    char buf[16] = {0};
    CHK(pread(fd, buf, 5, off) == 5 && memcmp(buf, "hello", 5) == 0, "read back at 5 GiB + 123");
    RANGE_IS(fd, 4 * GiB - 4096, 8192, 0, "zeros around 4 GiB");
    CHK(pwrite(fd, "ABCDEF", 6, 4 * GiB - 3) == 6, "write across the 4 GiB boundary");
    CHK(pread(fd, buf, 6, 4 * GiB - 3) == 6 && memcmp(buf, "ABCDEF", 6) == 0,
        "read across the 4 GiB boundary");
    CHK(lseek(fd, 0, SEEK_END) == off + 5, "SEEK_END at 5 GiB + 128");
    OK(ftruncate(fd, 4 * GiB + 1), "ftruncate to 4 GiB + 1");
    CHK(pread(fd, buf, 8, 4 * GiB - 3) == 4 && memcmp(buf, "ABCD", 4) == 0,
        "truncate at 4 GiB + 1 keeps 4 bytes of the boundary write");
    OK(ftruncate(fd, 6 * GiB), "ftruncate up to 6 GiB");
    RANGE_IS(fd, 4 * GiB + 1, 65536, 0, "zeros past the old 4 GiB + 1 end");
    const off_t tb = 1024 * GiB + 7;
    CHK(pwrite(fd, "tera", 4, tb) == 4, "pwrite at 1 TiB + 7");
    CHK(pread(fd, buf, 4, tb) == 4 && memcmp(buf, "tera", 4) == 0, "read back at 1 TiB + 7");
    CHK(lst("f").st_size == tb + 4, "size 1 TiB + 11");
    close(fd);
    leave();
}

static void t_xattr(void)
{
    if (enter("xattr") < 0)
        return;
    make_str("f", "x");
    char buf[8192];
    OK(setxattr("f", "user.a", "value-a", 7, XATTR_CREATE), "setxattr XATTR_CREATE");
    ERR(setxattr("f", "user.a", "v", 1, XATTR_CREATE), EEXIST,
        "XATTR_CREATE on existing -> EEXIST");
    ERR(setxattr("f", "user.b", "v", 1, XATTR_REPLACE), ENODATA,
        "XATTR_REPLACE on missing -> ENODATA");
    ssize_t n = getxattr("f", "user.a", buf, sizeof(buf));
    CHK(n == 7 && memcmp(buf, "value-a", 7) == 0, "getxattr returns the value");
    CHK(getxattr("f", "user.a", NULL, 0) == 7, "getxattr size query returns 7");
    ERR(getxattr("f", "user.a", buf, 3), ERANGE, "getxattr with small buffer -> ERANGE");
    ERR(getxattr("f", "user.none", buf, sizeof(buf)), ENODATA, "getxattr missing -> ENODATA");
    OK(setxattr("f", "user.a", "replaced", 8, XATTR_REPLACE), "XATTR_REPLACE on existing");
    n = getxattr("f", "user.a", buf, sizeof(buf));
    CHK(n == 8 && memcmp(buf, "replaced", 8) == 0, "replaced value read back");
    OK(setxattr("f", "user.empty", "", 0, 0), "set empty value");
    CHK(getxattr("f", "user.empty", buf, sizeof(buf)) == 0, "empty value reads back empty");
    unsigned char bin[3000];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(i * 7);
    OK(setxattr("f", "user.bin", bin, sizeof(bin), 0), "set 3000-byte binary value with NULs");
    n = getxattr("f", "user.bin", buf, sizeof(buf));
    CHK(n == (ssize_t)sizeof(bin) && memcmp(buf, bin, sizeof(bin)) == 0, "binary value exact");
    OK(setxattr("f", "trusted.t", "tv", 2, 0), "set trusted.* as root");
    n = listxattr("f", buf, sizeof(buf));
    int has_a = 0, has_empty = 0, has_bin = 0, has_t = 0, count = 0;
    for (ssize_t i = 0; n > 0 && i < n; i += (ssize_t)strlen(buf + i) + 1) {
        count++;
        has_a |= strcmp(buf + i, "user.a") == 0;
        has_empty |= strcmp(buf + i, "user.empty") == 0;
        has_bin |= strcmp(buf + i, "user.bin") == 0;
        has_t |= strcmp(buf + i, "trusted.t") == 0;
    }
    CHK(has_a && has_empty && has_bin && has_t, "listxattr lists every name (n=%zd, %d names)", n,
        count);
    CHK(count == 4, "listxattr lists no extra names (%d)", count);
    ssize_t need = listxattr("f", NULL, 0);
    CHK(need == n, "listxattr size query matches (%zd vs %zd)", need, n);
    ERR(listxattr("f", buf, 5), ERANGE, "listxattr with small buffer -> ERANGE");
    OK(removexattr("f", "user.a"), "removexattr");
    ERR(getxattr("f", "user.a", buf, sizeof(buf)), ENODATA, "removed attribute -> ENODATA");
    ERR(removexattr("f", "user.a"), ENODATA, "removexattr missing -> ENODATA");
    OK(mkdir("d", 0755), "mkdir d");
    OK(setxattr("d", "user.dir", "dv", 2, 0), "setxattr on a directory");
    CHK(getxattr("d", "user.dir", buf, sizeof(buf)) == 2, "directory xattr reads back");
    OK(link("f", "g"), "link f g");
    CHK(getxattr("g", "user.bin", buf, sizeof(buf)) == (ssize_t)sizeof(bin),
        "xattrs shared between hard links");
    int fd = open("f", O_RDONLY);
    OK(fsetxattr(fd, "user.fd", "1", 1, 0), "fsetxattr");
    CHK(fgetxattr(fd, "user.fd", buf, sizeof(buf)) == 1, "fgetxattr");
    close(fd);
    make_str("h", "h");
    OK(setxattr("h", "user.gone", "x", 1, 0), "setxattr on h");
    OK(unlink("h"), "unlink h");
    make_str("h", "h2");
    ERR(getxattr("h", "user.gone", buf, sizeof(buf)), ENODATA,
        "a new file at a reused name has none of the old file's xattrs");
    leave();
}

/* Sets a valid version-2 security.capability (CAP_NET_BIND_SERVICE permitted) on path. */
static int set_file_caps(const char *path)
{
    uint32_t cap[5] = {htole32(0x02000000u), htole32(1u << 10), 0, 0, 0};
    return setxattr(path, "security.capability", cap, sizeof cap, 0);
}

/* File capabilities go with every write, truncate and chown, whoever does it (the kernel's
 * killpriv, or the filesystem's own with FUSE's handle_killpriv): a binary changed after
 * being granted capabilities must not keep them. Runs as root (CAP_SETFCAP). */
static void t_killpriv_caps(void)
{
    char buf[64];
    int fd;

    if (enter("killpriv_caps") < 0)
        return;
    make_str("cap", "c");
    OK(chmod("cap", 0755), "chmod 0755");
    OK(set_file_caps("cap"), "set security.capability");
    CHK(getxattr("cap", "security.capability", buf, sizeof buf) == 20,
        "security.capability reads back (20 bytes)");
    fd = open("cap", O_WRONLY);
    CHK(fd >= 0 && write(fd, "w", 1) == 1, "root writes to a file with capabilities");
    if (fd >= 0)
        close(fd);
    ERR(getxattr("cap", "security.capability", buf, sizeof buf), ENODATA,
        "a write removed security.capability");
    CHK(content_is("cap", "w", 1, buf, sizeof buf), "the write landed (%s)", buf);

    OK(set_file_caps("cap"), "set security.capability again");
    fd = open("cap", O_WRONLY);
    CHK(fd >= 0 && pwrite(fd, "xyz", 3, 4096) == 3, "pwrite past EOF");
    if (fd >= 0)
        close(fd);
    ERR(getxattr("cap", "security.capability", buf, sizeof buf), ENODATA,
        "a pwrite removed security.capability");

    OK(set_file_caps("cap"), "set security.capability for truncate");
    OK(truncate("cap", 1), "truncate");
    ERR(getxattr("cap", "security.capability", buf, sizeof buf), ENODATA,
        "truncate removed security.capability");

    OK(set_file_caps("cap"), "set security.capability for O_TRUNC");
    fd = open("cap", O_WRONLY | O_TRUNC);
    CHK(fd >= 0, "open O_TRUNC");
    if (fd >= 0)
        close(fd);
    ERR(getxattr("cap", "security.capability", buf, sizeof buf), ENODATA,
        "open with O_TRUNC removed security.capability");

    OK(set_file_caps("cap"), "set security.capability for chown");
    OK(chown("cap", 1, 1), "chown 1:1");
    ERR(getxattr("cap", "security.capability", buf, sizeof buf), ENODATA,
        "chown removed security.capability");

    OK(setxattr("cap", "user.keep", "k", 1, 0), "set user.keep");
    OK(set_file_caps("cap"), "set security.capability beside a user xattr");
    fd = open("cap", O_WRONLY | O_APPEND);
    CHK(fd >= 0 && write(fd, "a", 1) == 1, "append");
    if (fd >= 0)
        close(fd);
    ERR(getxattr("cap", "security.capability", buf, sizeof buf), ENODATA,
        "an append removed security.capability");
    CHK(getxattr("cap", "user.keep", buf, sizeof buf) == 1, "other xattrs stay");
    leave();
}

static void t_unlinked_open(void)
{
    if (enter("unlinked_open") < 0)
        return;
    const size_t n = 100000;
    unsigned char *buf = xmalloc(n);
    fill_pattern(buf, n, 0, 9);
    int fd = (int)OK(open("f", O_RDWR | O_CREAT, 0644), "create f");
    if (fd < 0) {
        free(buf);
        leave();
        return;
    }
    CHK(write_all_at(fd, buf, n, 0) == 0, "write 100000 bytes");
    int fd2 = open("f", O_RDONLY);
    OK(unlink("f"), "unlink while open");
    struct stat st;
    fstat(fd, &st);
    CHK(st.st_nlink == 0, "fstat nlink is 0 (got %lu)", (unsigned long)st.st_nlink);
    RANGE_IS(fd, 0, n, 9, "unlinked file still readable");
    fill_pattern(buf, n, 200000, 9);
    CHK(write_all_at(fd, buf, n, 200000) == 0, "unlinked file still writable");
    RANGE_IS(fd, 200000, n, 9, "data written after unlink reads back");
    RANGE_IS(fd, n, 100000, 0, "gap in unlinked file reads zeros");
    OK(ftruncate(fd, 150000), "ftruncate unlinked file");
    fstat(fd, &st);
    CHK(st.st_size == 150000, "unlinked file size follows ftruncate");
    close(fd);
    RANGE_IS(fd2, 0, 100000, 9, "second fd still reads after the first closed");
    close(fd2);
    struct stat st2;
    ERR(lstat("f", &st2), ENOENT, "name is gone");
    make_str("f", "new");
    STR_IS("f", "new", "name reused by a new file");

    OK(mkdir("d", 0755), "mkdir d");
    DIR *dir = opendir("d");
    OK(rmdir("d"), "rmdir while open");
    int entries = 0;
    errno = 0;
    while (dir && readdir(dir))
        entries++;
    CHK(entries == 0, "readdir of a removed directory returns nothing (%d entries)", entries);
    if (dir)
        closedir(dir);
    free(buf);
    leave();
}

static void t_mmap(void)
{
    if (enter("mmap") < 0)
        return;
    const size_t n = 3 * 4096 + 100;
    unsigned char *buf = xmalloc(n);
    fill_pattern(buf, n, 0, 13);
    if (make_file("f", buf, n, 0644) == 0) {
        int fd = open("f", O_RDONLY);
        unsigned char *m = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
        if (CHK(m != MAP_FAILED, "mmap PROT_READ")) {
            char detail[160];
            CHKD(range_is(m, n, 0, 13, detail, sizeof(detail)), detail, "mapped bytes equal file");
            munmap(m, n);
        }
        close(fd);

        fd = open("f", O_RDWR);
        m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (CHK(m != MAP_FAILED, "mmap MAP_SHARED read-write")) {
            memcpy(m + 100, "MAPPED-WRITE", 12);
            memcpy(m + 4096 + 5, "SECOND-PAGE", 11);
            OK(msync(m, 8192, MS_SYNC), "msync MS_SYNC");
            int other = open("f", O_RDONLY);
            char got[16] = {0};
            CHK(pread(other, got, 12, 100) == 12 && memcmp(got, "MAPPED-WRITE", 12) == 0,
                "read() through another fd sees the mmap write");
            CHK(pread(other, got, 11, 4096 + 5) == 11 && memcmp(got, "SECOND-PAGE", 11) == 0,
                "second page write visible too");
            close(other);
            CHK(pwrite(fd, "VIA-WRITE", 9, 200) == 9, "pwrite into the mapped range");
            CHK(memcmp(m + 200, "VIA-WRITE", 9) == 0, "mapping sees the pwrite");
            munmap(m, 8192);
        }
        OK(fsync(fd), "fsync after mmap write");
        close(fd);
        memcpy(buf + 100, "MAPPED-WRITE", 12);
        memcpy(buf + 4096 + 5, "SECOND-PAGE", 11);
        memcpy(buf + 200, "VIA-WRITE", 9);
        CONTENT_IS("f", buf, n, "whole file has exactly the mapped and written changes");
    }
    free(buf);
    leave();
}

struct churn {
    atomic_int stop;
    int ops;
    int errors;
};

static void *churn_thread(void *arg)
{
    struct churn *c = arg;
    char name[32];
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), "tmp%04d", i);
        if (unlink(name) < 0)
            c->errors++;
        snprintf(name, sizeof(name), "new%04d", i);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0)
            c->errors++;
        else
            close(fd);
        c->ops++;
    }
    atomic_store(&c->stop, 1);
    return NULL;
}

struct linux_dirent64_hdr {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Lists "." with small getdents64 calls; counts keep/tmp/new names. Returns 0 or a problem. */
static int scan_dir(int *keep_seen, int keeps, int *n_tmp, int *n_new, int *dups, int *strange,
                    int *bad_type)
{
    int fd = open(".", O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    static unsigned char seen_tmp[500], seen_new[500];
    memset(seen_tmp, 0, sizeof(seen_tmp));
    memset(seen_new, 0, sizeof(seen_new));
    memset(keep_seen, 0, sizeof(int) * (size_t)keeps);
    *n_tmp = *n_new = *dups = *strange = *bad_type = 0;
    char buf[1024];
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        for (long off = 0; off < n;) {
            struct linux_dirent64_hdr *d = (struct linux_dirent64_hdr *)(buf + off);
            int idx;
            if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) {
                /* expected */
            } else if (sscanf(d->d_name, "keep%d", &idx) == 1 && idx >= 0 && idx < keeps) {
                if (keep_seen[idx]++)
                    (*dups)++;
            } else if (sscanf(d->d_name, "tmp%d", &idx) == 1 && idx >= 0 && idx < 500) {
                if (seen_tmp[idx]++)
                    (*dups)++;
                (*n_tmp)++;
            } else if (sscanf(d->d_name, "new%d", &idx) == 1 && idx >= 0 && idx < 500) {
                if (seen_new[idx]++)
                    (*dups)++;
                (*n_new)++;
            } else {
                (*strange)++;
            }
            if (d->d_name[0] != '.' && d->d_type != DT_REG && d->d_type != DT_UNKNOWN)
                (*bad_type)++;
            off += d->d_reclen;
        }
    }
    close(fd);
    return 0;
}

static void t_readdir(void)
{
    if (enter("readdir") < 0)
        return;
    const int keeps = 1000;
    char name[32];
    int ok = 1;
    for (int i = 0; i < keeps; i++) {
        snprintf(name, sizeof(name), "keep%04d", i);
        int fd = open(name, O_WRONLY | O_CREAT, 0644);
        ok &= fd >= 0;
        if (fd >= 0)
            close(fd);
    }
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), "tmp%04d", i);
        int fd = open(name, O_WRONLY | O_CREAT, 0644);
        ok &= fd >= 0;
        if (fd >= 0)
            close(fd);
    }
    CHK(ok, "setup: 1500 files created");
    int *keep_seen = xmalloc(sizeof(int) * (size_t)keeps);
    int n_tmp, n_new, dups, strange, bad_type;
    CHK(scan_dir(keep_seen, keeps, &n_tmp, &n_new, &dups, &strange, &bad_type) == 0 &&
            n_tmp == 500 && dups == 0 && strange == 0 && bad_type == 0,
        "quiet listing: 1000 keep + 500 tmp, no duplicates, d_type DT_REG");

    struct churn c = {0};
    pthread_t th;
    pthread_create(&th, NULL, churn_thread, &c);
    int passes = 0, bad_passes = 0, missing_total = 0, dup_total = 0, strange_total = 0;
    while (!atomic_load(&c.stop) || passes == 0) {
        if (scan_dir(keep_seen, keeps, &n_tmp, &n_new, &dups, &strange, &bad_type) < 0) {
            bad_passes++;
            break;
        }
        int missing = 0;
        for (int i = 0; i < keeps; i++)
            missing += keep_seen[i] != 1;
        if (missing || dups || strange)
            bad_passes++;
        missing_total += missing;
        dup_total += dups;
        strange_total += strange;
        passes++;
    }
    pthread_join(th, NULL);
    CHK(c.errors == 0, "concurrent unlink/create all succeeded (%d errors)", c.errors);
    CHKD(bad_passes == 0, "see counts",
         "%d listings during churn each saw every stable entry once "
         "(bad %d, keep missing-or-repeated %d, duplicates %d, unknown names %d)",
         passes, bad_passes, missing_total, dup_total, strange_total);
    scan_dir(keep_seen, keeps, &n_tmp, &n_new, &dups, &strange, &bad_type);
    int missing = 0;
    for (int i = 0; i < keeps; i++)
        missing += keep_seen[i] != 1;
    CHK(missing == 0 && n_tmp == 0 && n_new == 500 && dups == 0 && strange == 0,
        "final listing: 1000 keep, 0 tmp, 500 new (missing %d tmp %d new %d dups %d)", missing,
        n_tmp, n_new, dups);
    struct stat st;
    DIR *d = opendir(".");
    int ino_ok = 1, checked = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && checked < 50) {
        if (e->d_name[0] == '.')
            continue;
        if (lstat(e->d_name, &st) < 0 || st.st_ino != e->d_ino)
            ino_ok = 0;
        checked++;
    }
    if (d)
        closedir(d);
    CHK(ino_ok && checked == 50, "d_ino matches st_ino");
    free(keep_seen);
    leave();
}

static void t_names(void)
{
    if (enter("names") < 0)
        return;
    static const char *const names[] = {
        "with space", "new\nline", "tab\there", "\xff\xfe binary", "caf\xc3\xa9 utf8", "*?[glob]",
        "-dash",      ".hidden",   "..dots",    "back\\slash",     "quote'\"s",        "%s%n",
    };
    const int n = (int)(sizeof(names) / sizeof(names[0]));
    int created = 0;
    for (int i = 0; i < n; i++)
        if (make_file(names[i], names[i], strlen(names[i]), 0644) == 0)
            created++;
    CHK(created == n, "files with unusual bytes in their names created (%d of %d)", created, n);
    int found = 0, other = 0;
    DIR *d = opendir(".");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        int hit = 0;
        for (int i = 0; i < n; i++)
            hit |= strcmp(e->d_name, names[i]) == 0;
        if (hit)
            found++;
        else
            other++;
    }
    if (d)
        closedir(d);
    CHK(found == n && other == 0, "readdir returns every name byte for byte (%d found, %d other)",
        found, other);
    int same = 1;
    for (int i = 0; i < n; i++) {
        char detail[160];
        same &= content_is(names[i], names[i], strlen(names[i]), detail, sizeof(detail));
    }
    CHK(same, "each file opened by its unusual name has its own content");
    OK(rename("new\nline", "\x01\x7f ctl"), "rename to a name with control bytes");
    STR_IS("\x01\x7f ctl", "new\nline", "renamed file reachable by its new name");
    char deep[4096] = "";
    int depth_ok = 1;
    for (int i = 0; i < 60; i++) {
        strcat(deep, i ? "/d" : "d");
        if (mkdir(deep, 0755) < 0)
            depth_ok = 0;
    }
    CHK(depth_ok, "60 nested directories created");
    strcat(deep, "/leaf");
    make_str(deep, "leaf");
    STR_IS(deep, "leaf", "file at depth 60 reads back");
    leave();
}

static void t_statfs(void)
{
    section("statfs");
    struct statvfs sv;
    if (OK(statvfs(".", &sv), "statvfs") < 0)
        return;
    CHK(sv.f_bsize > 0 && sv.f_frsize > 0, "block sizes non-zero (%lu, %lu)", sv.f_bsize,
        sv.f_frsize);
    CHK(sv.f_blocks > 0 && sv.f_bfree <= sv.f_blocks && sv.f_bavail <= sv.f_bfree,
        "blocks >= free >= avail (%llu %llu %llu)", (unsigned long long)sv.f_blocks,
        (unsigned long long)sv.f_bfree, (unsigned long long)sv.f_bavail);
    CHK(sv.f_ffree <= sv.f_files, "inodes: free <= total (%llu %llu)",
        (unsigned long long)sv.f_ffree, (unsigned long long)sv.f_files);
    CHK(sv.f_namemax == 255, "name max 255 (got %lu)", sv.f_namemax);
}

static void t_copy_file_range(void)
{
    if (enter("copy_file_range") < 0)
        return;
    const size_t n = 1 * MiB + 77;
    unsigned char *buf = xmalloc(n);
    fill_pattern(buf, n, 0, 17);
    if (make_file("src", buf, n, 0644) == 0) {
        int in = open("src", O_RDONLY), out = open("dst", O_RDWR | O_CREAT, 0644);
        loff_t ioff = 1000, ooff = 5000;
        size_t left = 500000;
        int ok = 1;
        while (left > 0) {
            ssize_t c = copy_file_range(in, &ioff, out, &ooff, left, 0);
            if (c <= 0) {
                ok = 0;
                OK(c, "copy_file_range");
                break;
            }
            left -= (size_t)c;
        }
        CHK(ok && ioff == 501000 && ooff == 505000, "copy_file_range advances both offsets");
        CHK(lst("dst").st_size == 505000, "destination size 505000");
        RANGE_IS(out, 0, 5000, 0, "destination before the copy reads zeros");
        char detail[160];
        unsigned char *got = xmalloc(500000);
        CHK(read_all_at(out, got, 500000, 5000) == 500000, "read the copied range");
        int same = memcmp(got, buf + 1000, 500000) == 0;
        snprintf(detail, sizeof(detail), "copied bytes differ");
        CHKD(same, detail, "copied bytes equal the source range");
        ioff = (loff_t)n;
        CHK(copy_file_range(in, &ioff, out, NULL, 100, 0) == 0, "copy from EOF copies nothing");
        lseek(in, 0, SEEK_SET);
        lseek(out, 0, SEEK_SET);
        ssize_t c = copy_file_range(in, NULL, out, NULL, 4096, 0);
        CHK(c > 0 && lseek(out, 0, SEEK_CUR) == c, "copy_file_range with file offsets (%zd)", c);
        RANGE_IS(out, 0, (size_t)(c > 0 ? c : 0), 17, "copied head equals source head");
        free(got);
        close(in);
        close(out);
    }
    free(buf);
    leave();
}

static void t_sync_and_nlink(void)
{
    if (enter("sync_nlink") < 0)
        return;
    int fd = open("f", O_RDWR | O_CREAT, 0644);
    CHK(write(fd, "sync", 4) == 4, "write");
    OK(fsync(fd), "fsync");
    OK(fdatasync(fd), "fdatasync");
    OK(sync_file_range(fd, 0, 4, SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER),
       "sync_file_range");
    OK(syncfs(fd), "syncfs");
    close(fd);
    int dfd = open(".", O_RDONLY | O_DIRECTORY);
    OK(fsync(dfd), "fsync of a directory");
    close(dfd);
    OK(mkdir("d", 0755), "mkdir d");
    CHK(lst("d").st_nlink == 2, "new dir nlink 2");
    OK(mkdir("d/s1", 0755), "mkdir d/s1");
    OK(mkdir("d/s2", 0755), "mkdir d/s2");
    make_str("d/file", "f");
    CHK(lst("d").st_nlink == 4, "two subdirs: nlink 4 (files do not count)");
    OK(rmdir("d/s1"), "rmdir d/s1");
    CHK(lst("d").st_nlink == 3, "nlink 3 after rmdir");
    CHK(lst("d/.").st_ino == lst("d").st_ino && lst("d/s2/..").st_ino == lst("d").st_ino,
        ". and .. resolve to the right inodes");
    leave();
}

/* ---- unprivileged mode ------------------------------------------------------------------- */

/* Checks derived from what pjdfstest verifies on Linux (ctime/mtime side effects, limits, the
 * choices among errnos), each as ext4 behaves. */
static void t_pjd_times(void)
{
    if (enter("pjd-times") < 0)
        return;
    struct stat a, b;

    make_str("empty", "");
    a = lst("empty");
    tick();
    int fd = (int)OK(open("empty", O_WRONLY | O_TRUNC), "open O_TRUNC an existing empty file");
    if (fd >= 0)
        close(fd);
    b = lst("empty");
    CHK(ts_cmp(b.st_mtim, a.st_mtim) > 0 && ts_cmp(b.st_ctim, a.st_ctim) > 0,
        "O_TRUNC of an empty file still updates mtime and ctime");

    /* truncate(2) to the same size is not checked: under the FUSE writeback cache the kernel
     * owns a regular file's mtime and only advances it when the size changes */
    make_str("same", "abc");
    a = lst("same");
    tick();
    fd = open("same", O_RDWR);
    OK(ftruncate(fd, 3), "ftruncate to the current size");
    if (fd >= 0)
        close(fd);
    b = lst("same");
    CHK(ts_cmp(b.st_mtim, a.st_mtim) > 0 && ts_cmp(b.st_ctim, a.st_ctim) > 0,
        "ftruncate to the same size updates mtime and ctime");

    make_str("own", "o");
    OK(chown("own", 0, 0), "setup: chown own 0:0");
    a = lst("own");
    tick();
    OK(chown("own", 0, 0), "chown to the ids it already has");
    CHK(ts_cmp(lst("own").st_ctim, a.st_ctim) > 0, "chown to the same ids updates ctime");
    a = lst("own");
    tick();
    OK(chown("own", (uid_t)-1, (gid_t)-1), "chown -1 -1");
    CHK(ts_cmp(lst("own").st_ctim, a.st_ctim) > 0, "chown -1 -1 updates ctime (as on ext4)");
    a = lst("own");
    tick();
    OK(chmod("own", a.st_mode & 07777), "chmod to the mode it already has");
    CHK(ts_cmp(lst("own").st_ctim, a.st_ctim) > 0, "chmod to the same mode updates ctime");
    OK(chmod("own", 06555), "chmod 06555");
    OK(chown("own", (uid_t)-1, (gid_t)-1), "chown -1 -1 of a setuid/setgid executable");
    CHK((lst("own").st_mode & 07777) == 0555, "root's chown -1 -1 clears setuid/setgid (mode %o)",
        lst("own").st_mode & 07777);

    make_str("mv", "m");
    a = lst("mv");
    tick();
    OK(rename("mv", "mv2"), "rename a file");
    CHK(ts_cmp(lst("mv2").st_ctim, a.st_ctim) > 0, "rename updates the moved file's ctime");
    OK(mkdir("mvd", 0755), "mkdir mvd");
    a = lst("mvd");
    tick();
    OK(rename("mvd", "mvd2"), "rename a directory");
    CHK(ts_cmp(lst("mvd2").st_ctim, a.st_ctim) > 0, "rename updates the moved directory's ctime");
    OK(symlink("mv2", "mvs"), "symlink mvs");
    a = lst("mvs");
    tick();
    OK(rename("mvs", "mvs2"), "rename a symlink");
    CHK(ts_cmp(lst("mvs2").st_ctim, a.st_ctim) > 0, "rename updates the moved symlink's ctime");

    OK(link("mv2", "mvl"), "link mv2 mvl");
    a = lst("mv2");
    OK(rename("mv2", "mvl"), "rename onto another name of the same inode");
    CHK(lst("mv2").st_nlink == 2 && lst("mvl").st_nlink == 2 && lst("mv2").st_ino == a.st_ino,
        "rename between two links of one inode does nothing (both names stay)");
    OK(rename("mvl", "mvl"), "rename a name onto itself");
    CHK(lst("mvl").st_ino == a.st_ino && lst("mvl").st_nlink == 2, "self-rename changes nothing");

    OK(mkdir("p1", 0755), "mkdir p1");
    OK(mkdir("p2", 0755), "mkdir p2");
    OK(mkdir("p1/sub", 0755), "mkdir p1/sub");
    OK(rename("p1/sub", "p2/sub"), "move a directory to another parent");
    struct stat dd;
    CHK(stat("p2/sub/..", &dd) == 0 && dd.st_ino == lst("p2").st_ino,
        "the moved directory's .. is its new parent");
    CHK(lst("p1").st_nlink == 2 && lst("p2").st_nlink == 3,
        "parents' link counts follow the move (p1 %lu, p2 %lu)", (unsigned long)lst("p1").st_nlink,
        (unsigned long)lst("p2").st_nlink);
    OK(mkdir("p1/empty", 0755), "mkdir p1/empty");
    OK(rename("p2/sub", "p1/empty"), "rename a directory onto an empty directory");
    CHK(S_ISDIR(lst("p1/empty").st_mode) && lst("p2/sub").st_nlink == (nlink_t)-1,
        "the empty directory was replaced");

    OK(symlink("nowhere", "sl"), "symlink sl");
    OK(link("sl", "slh"), "hard link to a symlink");
    CHK(S_ISLNK(lst("slh").st_mode) && lst("slh").st_ino == lst("sl").st_ino,
        "link of a symlink links the symlink itself");
    leave();
}

static void t_pjd_limits(void)
{
    if (enter("pjd-limits") < 0)
        return;
    struct stat a;
    char *t = xmalloc(PATH_MAX + 1);
    memset(t, 'x', PATH_MAX);
    t[PATH_MAX - 1] = 0;
    OK(symlink(t, "s4095"), "symlink with a PATH_MAX-1 (4095) byte target");
    char *r = xmalloc(PATH_MAX + 1);
    CHK(readlink("s4095", r, PATH_MAX + 1) == PATH_MAX - 1 && memcmp(r, t, PATH_MAX - 1) == 0,
        "the 4095-byte target reads back exactly");
    t[PATH_MAX - 1] = 'x';
    t[PATH_MAX] = 0;
    ERR(symlink(t, "s4096"), ENAMETOOLONG, "symlink with a PATH_MAX target -> ENAMETOOLONG");

    /* a relative path of PATH_MAX-1 bytes through 20 directories of 200-byte names works; one
     * byte more is ENAMETOOLONG */
    char comp[201];
    memset(comp, 'd', 200);
    comp[200] = 0;
    size_t len = 0;
    int ok = 1;
    for (int i = 0; i < 20 && ok; i++) {
        if (i)
            t[len++] = '/';
        memcpy(t + len, comp, 200);
        len += 200;
        t[len] = 0;
        ok = mkdir(t, 0755) == 0;
    }
    CHK(ok, "20 nested directories with 200-byte names");
    t[len++] = '/';
    memset(t + len, 'f', PATH_MAX - 1 - len);
    t[PATH_MAX - 1] = 0;
    int fd = (int)OK(open(t, O_WRONLY | O_CREAT, 0644), "create through a 4095-byte path");
    if (fd >= 0)
        close(fd);
    t[PATH_MAX - 1] = 'g';
    t[PATH_MAX] = 0;
    ERR(open(t, O_WRONLY | O_CREAT, 0644), ENAMETOOLONG, "create through a 4096-byte path");
    /* remove the tree here: nftw in the cleanup would build absolute paths beyond PATH_MAX */
    t[PATH_MAX - 1] = 0;
    ok = unlink(t) == 0;
    for (size_t end = len - 1; ok && end > 0; end -= 201) {
        t[end] = 0;
        ok = rmdir(t) == 0;
        if (end < 201)
            break;
    }
    CHK(ok, "remove the deep tree");
    ERR(mknod("dirnode", S_IFDIR | 0755, 0), EPERM, "mknod S_IFDIR -> EPERM");

    /* over-long components on every entry point, below and above FUSE's own 1024-byte limit */
    make_str("lf", "l");
    static const size_t lens[] = {256, 1025};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t l = lens[i];
        memset(t, 'n', l);
        t[l] = 0;
        ERR(symlink("lf", t), ENAMETOOLONG, "symlink named with %zu bytes -> ENAMETOOLONG", l);
        ERR(link("lf", t), ENAMETOOLONG, "link to a %zu-byte name -> ENAMETOOLONG", l);
        ERR(mknod(t, S_IFIFO | 0644, 0), ENAMETOOLONG, "mknod %zu-byte name -> ENAMETOOLONG", l);
        ERR(unlink(t), ENAMETOOLONG, "unlink %zu-byte name -> ENAMETOOLONG", l);
        ERR(rmdir(t), ENAMETOOLONG, "rmdir %zu-byte name -> ENAMETOOLONG", l);
        ERR(chmod(t, 0644), ENAMETOOLONG, "chmod %zu-byte name -> ENAMETOOLONG", l);
        ERR(truncate(t, 0), ENAMETOOLONG, "truncate %zu-byte name -> ENAMETOOLONG", l);
        OK(symlink(t, "longcomp"), "symlink to a target with a %zu-byte component", l);
        ERR(stat("longcomp", &a), ENAMETOOLONG, "follow it -> ENAMETOOLONG");
        OK(unlink("longcomp"), "unlink that symlink");
    }
    free(t);
    free(r);

    mode_t old = umask(027);
    OK(mkfifo("fifo", 0777), "mkfifo 0777 under umask 027");
    CHK((lst("fifo").st_mode & 07777) == 0750, "umask applies to mkfifo (mode %o)",
        lst("fifo").st_mode & 07777);
    OK(mkdir("ud", 03777), "mkdir 03777 under umask 027");
    CHK((lst("ud").st_mode & 07777) == 01750,
        "mkdir keeps sticky, drops setgid, applies umask (%o)", lst("ud").st_mode & 07777);
    fd = open("uf", O_WRONLY | O_CREAT, 07777);
    CHK(fd >= 0 && (lst("uf").st_mode & 07777) == 07750, "create 07777 keeps the special bits (%o)",
        lst("uf").st_mode & 07777);
    if (fd >= 0)
        close(fd);
    umask(old);

    make_str("fa", "");
    a = lst("fa");
    tick();
    fd = open("fa", O_RDWR);
    CHK(posix_fallocate(fd, 0, 567) == 0 && lst("fa").st_size == 567,
        "posix_fallocate extends to 567 bytes");
    CHK(ts_cmp(lst("fa").st_mtim, a.st_mtim) > 0 && ts_cmp(lst("fa").st_ctim, a.st_ctim) > 0,
        "posix_fallocate that extends updates mtime and ctime");
    a = lst("fa");
    tick();
    CHK(posix_fallocate(fd, 0, 100) == 0 && lst("fa").st_size == 567,
        "posix_fallocate inside the file keeps the size");
    CHK(ts_cmp(lst("fa").st_mtim, a.st_mtim) > 0 && ts_cmp(lst("fa").st_ctim, a.st_ctim) > 0,
        "posix_fallocate inside the file updates mtime and ctime (as on ext4)");
    a = lst("fa");
    tick();
    OK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 50000), "fallocate KEEP_SIZE past EOF");
    CHK(lst("fa").st_size == 567, "KEEP_SIZE keeps the size");
    CHK(ts_cmp(lst("fa").st_mtim, a.st_mtim) > 0 && ts_cmp(lst("fa").st_ctim, a.st_ctim) > 0,
        "fallocate KEEP_SIZE updates mtime and ctime (as on ext4)");
    CHK(posix_fallocate(fd, 0, 0) == EINVAL, "posix_fallocate of length 0 -> EINVAL");
    CHK(posix_fallocate(fd, -1, 10) == EINVAL, "posix_fallocate at a negative offset -> EINVAL");
    if (fd >= 0)
        close(fd);
    fd = open("fa", O_RDONLY);
    CHK(posix_fallocate(fd, 0, 10) == EBADF, "posix_fallocate on an O_RDONLY fd -> EBADF");
    if (fd >= 0)
        close(fd);
    fd = open("fifo", O_RDWR | O_NONBLOCK);
    CHK(posix_fallocate(fd, 0, 10) == ESPIPE, "posix_fallocate on a fifo -> ESPIPE");
    if (fd >= 0)
        close(fd);
    fd = open("fa", O_RDONLY);
    ERR(ftruncate(fd, 5), EINVAL, "ftruncate on an O_RDONLY fd -> EINVAL");
    if (fd >= 0)
        close(fd);
    leave();
}

/* A running executable cannot be opened for writing or truncated (ETXTBSY) but can be unlinked. */
static void t_pjd_txtbsy(void)
{
    if (enter("pjd-txtbsy") < 0)
        return;
    int in = open("/bin/sleep", O_RDONLY);
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0) {
        CHK(0, "setup: open /bin/sleep: %s", strerror(errno));
        if (in >= 0)
            close(in);
        leave();
        return;
    }
    unsigned char *buf = xmalloc((size_t)st.st_size);
    ssize_t n = pread(in, buf, (size_t)st.st_size, 0);
    close(in);
    if (n != st.st_size || make_file("prog", buf, (size_t)n, 0755) < 0) {
        CHK(0, "setup: copy /bin/sleep");
        free(buf);
        leave();
        return;
    }
    free(buf);
    pid_t pid = fork();
    if (pid == 0) {
        execl("./prog", "prog", "5", (char *)NULL);
        _exit(127);
    }
    /* wait until the child has exec'd: its /proc/PID/exe then names our copy */
    char exe[PATH_MAX], link[64];
    snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
    int exec_seen = 0;
    for (int i = 0; i < 200 && !exec_seen; i++) {
        ssize_t l = readlink(link, exe, sizeof(exe) - 1);
        if (l > 0) {
            exe[l] = 0;
            exec_seen = strstr(exe, "/pjd-txtbsy/prog") != NULL;
        }
        if (!exec_seen)
            tick();
    }
    CHK(exec_seen, "the copied program is running");
    ERR(open("prog", O_WRONLY), ETXTBSY, "open a running program for writing -> ETXTBSY");
    ERR(truncate("prog", 0), ETXTBSY, "truncate a running program -> ETXTBSY");
    OK(unlink("prog"), "unlink a running program");
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    leave();
}

static void setup_unpriv(const char *dir)
{
    section("setup-unpriv");
    if (chdir(dir) < 0 || OK(mkdir("unpriv", 0777), "mkdir unpriv") < 0 || chdir("unpriv") < 0)
        return;
    OK(chmod(".", 0777), "chmod unpriv 0777");
    make_file("secret", "secret", 6, 0600);
    make_file("rofile", "ro", 2, 0644);
    make_file("rwfile", "rw", 2, 0666);
    OK(chmod("rwfile", 0666), "chmod rwfile 0666");
    OK(mkdir("nosearch", 0700), "mkdir nosearch");
    make_str("nosearch/f", "f");
    OK(mkdir("searchonly", 0711), "mkdir searchonly");
    make_str("searchonly/f", "f");
    OK(mkdir("rodir", 0755), "mkdir rodir");
    make_str("rodir/x", "x");
    OK(mkdir("sticky", 0777), "mkdir sticky");
    OK(chmod("sticky", 01777), "chmod sticky 01777");
    make_file("sticky/rootf", "r", 1, 0666);
    OK(chmod("sticky/rootf", 0666), "chmod sticky/rootf 0666");
    OK(mkdir("sgid", 0777), "mkdir sgid");
    OK(chown("sgid", 0, FOREIGN_GID), "chown sgid to a foreign group");
    OK(chmod("sgid", 02777), "chmod sgid 02777");
    make_str("mine", "m");
    OK(chown("mine", UNPRIV_UID, 0), "chown mine to the unprivileged user, group 0");
    OK(setxattr("mine", "trusted.t", "t", 1, 0), "set trusted.t on mine");
    OK(mkdir("rootdir", 0755), "mkdir rootdir");
    OK(mkdir("mvdst", 0777), "mkdir mvdst");
    OK(chmod("mvdst", 0777), "chmod mvdst 0777");
    make_str("xattr-root", "x");
    OK(setxattr("xattr-root", "user.a", "v", 1, 0), "set user.a on xattr-root");
    make_str("pjd-suid", "s");
    OK(chown("pjd-suid", UNPRIV_UID, UNPRIV_GID), "chown pjd-suid to the unprivileged user");
    OK(chmod("pjd-suid", 06555), "chmod pjd-suid 06555");
    make_str("pjd-rootrw", "w");
    OK(chmod("pjd-rootrw", 0666), "chmod pjd-rootrw 0666");
    make_str("capfile", "c");
    OK(chmod("capfile", 06777), "chmod capfile 06777 (set-id, writable by anyone)");
    OK(set_file_caps("capfile"), "set security.capability on capfile");
    OK(mkdir("sticky/rootd", 0777), "mkdir sticky/rootd");
    OK(mkdir("mysticky", 0755), "mkdir mysticky");
    make_str("mysticky/rootf", "r");
    OK(mkdir("mysticky/rootd", 0755), "mkdir mysticky/rootd");
    OK(chown("mysticky", UNPRIV_UID, UNPRIV_GID), "chown mysticky to the unprivileged user");
    OK(chmod("mysticky", 01777), "chmod mysticky 01777");
}

/* pjdfstest-derived permission rules for the unprivileged user (fixtures from setup_unpriv). */
static void t_unpriv_pjd(void)
{
    section("unpriv-pjd");
    OK(chown("pjd-suid", (uid_t)-1, (gid_t)-1), "chown -1 -1 of one's own 06555 file");
    CHK((lst("pjd-suid").st_mode & 07777) == 0555,
        "a non-root chown, even -1 -1, clears setuid and setgid (mode %o)",
        lst("pjd-suid").st_mode & 07777);
    struct stat a = lst("pjd-rootrw");
    tick();
    OK(chown("pjd-rootrw", (uid_t)-1, (gid_t)-1), "chown -1 -1 of another's file");
    ERR(chown("pjd-rootrw", 0, 0), EPERM, "chown another's file to the ids it has -> EPERM");
    ERR(chmod("pjd-rootrw", 0666), EPERM, "chmod another's file to its own mode -> EPERM");

    struct timespec t[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    ERR(utimensat(AT_FDCWD, "pjd-rootrw", t, 0), EPERM,
        "UTIME_NOW,UTIME_OMIT on another's writable file -> EPERM");
    t[0].tv_nsec = UTIME_OMIT;
    t[1].tv_nsec = UTIME_NOW;
    ERR(utimensat(AT_FDCWD, "pjd-rootrw", t, 0), EPERM,
        "UTIME_OMIT,UTIME_NOW on another's writable file -> EPERM");
    t[0].tv_nsec = UTIME_OMIT;
    t[1].tv_nsec = UTIME_OMIT;
    OK(utimensat(AT_FDCWD, "pjd-rootrw", t, 0), "UTIME_OMIT,UTIME_OMIT on another's file");
    OK(utimensat(AT_FDCWD, "rofile", t, 0), "UTIME_OMIT,UTIME_OMIT without write permission");
    t[0].tv_nsec = UTIME_NOW;
    t[1].tv_nsec = UTIME_NOW;
    OK(utimensat(AT_FDCWD, "pjd-rootrw", t, 0), "UTIME_NOW,UTIME_NOW with write permission");
    ERR(utimensat(AT_FDCWD, "rofile", t, 0), EACCES,
        "UTIME_NOW,UTIME_NOW without write permission -> EACCES");

    a = lst("rofile");
    tick();
    ERR(truncate("rofile", 123), EACCES, "truncate without write permission -> EACCES");
    CHK(ts_cmp(lst("rofile").st_ctim, a.st_ctim) == 0, "a failed truncate leaves ctime alone");
    a = lst("pjd-rootrw");
    tick();
    int fd = (int)OK(open("pjd-rootrw", O_WRONLY | O_TRUNC), "O_TRUNC another's writable file");
    if (fd >= 0)
        close(fd);
    CHK(ts_cmp(lst("pjd-rootrw").st_mtim, a.st_mtim) > 0 &&
            ts_cmp(lst("pjd-rootrw").st_ctim, a.st_ctim) > 0,
        "O_TRUNC by a non-owner updates mtime and ctime");

    ERR(rmdir("sticky/rootd"), EPERM, "rmdir another's dir in a sticky dir -> EPERM");
    ERR(rename("sticky/rootd", "sticky/rootd2"), EPERM,
        "rename another's dir in a sticky dir -> EPERM");
    OK(mkdir("sticky/myd", 0755), "mkdir one's own dir in the sticky dir");
    ERR(rename("sticky/myd", "sticky/rootd"), EPERM,
        "rename onto another's dir in a sticky dir -> EPERM");
    OK(rmdir("sticky/myd"), "rmdir one's own dir in a sticky dir");
    OK(unlink("mysticky/rootf"), "the sticky dir's owner unlinks another's file");
    OK(rmdir("mysticky/rootd"), "the sticky dir's owner removes another's dir");
    OK(link("pjd-rootrw", "pjd-rootrw.l"), "hard link to another's read-write file");
    FILE *ph = fopen("/proc/sys/fs/protected_hardlinks", "r");
    int prot = ph && fgetc(ph) == '1';
    if (ph)
        fclose(ph);
    if (prot)
        ERR(link("rofile", "rofile.l"), EPERM,
            "hard link to another's file without write access -> EPERM (protected_hardlinks)");
}

static void t_unpriv(const char *dir)
{
    section("unpriv");
    if (getuid() == 0 || geteuid() == 0) {
        CHK(0, "--unpriv must run as an unprivileged user (use setpriv)");
        return;
    }
    if (chdir(dir) < 0 || chdir("unpriv") < 0) {
        CHK(0, "chdir unpriv (run --setup-unpriv as root first): %s", strerror(errno));
        return;
    }
    char buf[64];
    struct stat st;
    int fd;

    section("unpriv-mode-bits");
    ERR(open("secret", O_RDONLY), EACCES, "read a 0600 root file -> EACCES");
    ERR(access("secret", R_OK), EACCES, "access R_OK on a 0600 root file -> EACCES");
    ERR(open("rofile", O_WRONLY), EACCES, "write-open a 0644 root file -> EACCES");
    ERR(truncate("rofile", 0), EACCES, "truncate a 0644 root file -> EACCES");
    fd = (int)OK(open("rofile", O_RDONLY), "read-open a 0644 root file");
    CHK(fd >= 0 && read(fd, buf, sizeof(buf)) == 2, "read the 0644 file");
    if (fd >= 0)
        close(fd);
    ERR(stat("nosearch/f", &st), EACCES, "stat through a 0700 root dir -> EACCES");
    ERR(open("nosearch", O_RDONLY | O_DIRECTORY), EACCES, "open a 0700 root dir -> EACCES");
    OK(stat("searchonly/f", &st), "stat through a 0711 dir (search only)");
    ERR(open("searchonly", O_RDONLY | O_DIRECTORY), EACCES, "list a 0711 dir -> EACCES");
    fd = (int)OK(open("searchonly/f", O_RDONLY), "open a file in a 0711 dir");
    if (fd >= 0)
        close(fd);
    ERR(open("rodir/new", O_WRONLY | O_CREAT, 0644), EACCES, "create in a 0755 root dir -> EACCES");
    ERR(mkdir("rodir/d", 0755), EACCES, "mkdir in a 0755 root dir -> EACCES");
    ERR(unlink("rodir/x"), EACCES, "unlink in a 0755 root dir -> EACCES");
    ERR(rename("rodir/x", "x2"), EACCES, "rename out of a 0755 root dir -> EACCES");
    make_str("tomove", "t");
    ERR(rename("tomove", "rodir/tomove"), EACCES, "rename into a 0755 root dir -> EACCES");
    ERR(symlink("t", "rodir/sl"), EACCES, "symlink in a 0755 root dir -> EACCES");
    ERR(link("tomove", "rodir/ln"), EACCES, "link into a 0755 root dir -> EACCES");
    ERR(mknod("rodir/fifo", S_IFIFO | 0644, 0), EACCES, "mkfifo in a 0755 root dir -> EACCES");
    ERR(rename("rootdir", "mvdst/rootdir"), EACCES,
        "move a root dir (no write on it) to another parent -> EACCES");
    OK(rename("rootdir", "rootdir2"), "rename a root dir within its parent");
    OK(rename("rootdir2", "rootdir"), "and back");
    ERR(open("rofile", O_RDONLY | O_NOATIME), EPERM, "O_NOATIME on another's file -> EPERM");

    section("unpriv-owner");
    make_str("own", "o");
    ERR(chown("own", 0, (gid_t)-1), EPERM, "give away a file -> EPERM");
    ERR(chown("own", (uid_t)-1, 0), EPERM, "chgrp to a group one is not in -> EPERM");
    OK(chown("own", (uid_t)-1, UNPRIV_GID), "chgrp to one's own group");
    ERR(chown("rwfile", UNPRIV_UID, (gid_t)-1), EPERM, "take a root file -> EPERM");
    ERR(chmod("rwfile", 0777), EPERM, "chmod a root file -> EPERM");
    struct timespec t[2] = {{1000, 0}, {1000, 0}};
    ERR(utimensat(AT_FDCWD, "rwfile", t, 0), EPERM, "set explicit times on a root file -> EPERM");
    OK(utimensat(AT_FDCWD, "rwfile", NULL, 0), "set times to now on a writable root file");
    ERR(utimensat(AT_FDCWD, "rofile", NULL, 0), EACCES, "set times to now without write -> EACCES");
    ERR(mknod("chr", S_IFCHR | 0600, makedev(1, 7)), EPERM, "mknod a device -> EPERM");
    OK(mkfifo("fifo", 0644), "mkfifo as unprivileged user");

    section("unpriv-xattr");
    ERR(setxattr("own", "trusted.x", "v", 1, 0), EPERM, "set trusted.* -> EPERM");
    ERR(getxattr("mine", "trusted.t", buf, sizeof(buf)), ENODATA,
        "trusted.* is invisible -> ENODATA");
    OK(setxattr("own", "user.a", "v", 1, 0), "set user.* on one's own file");
    ERR(setxattr("xattr-root", "user.b", "v", 1, 0), EACCES,
        "set user.* on a 0644 root file -> EACCES");
    CHK(getxattr("xattr-root", "user.a", buf, sizeof(buf)) == 1,
        "read user.* of a readable root file");
    ERR(getxattr("secret", "user.a", buf, sizeof(buf)), EACCES,
        "read user.* of an unreadable file -> EACCES");

    section("unpriv-sticky");
    ERR(unlink("sticky/rootf"), EPERM, "unlink another's file in a sticky dir -> EPERM");
    ERR(rename("sticky/rootf", "sticky/z"), EPERM,
        "rename another's file in a sticky dir -> EPERM");
    make_str("sticky/mine", "m");
    ERR(rename("sticky/mine", "sticky/rootf"), EPERM,
        "replace another's file in a sticky dir -> EPERM");
    fd = open("sticky/rootf", O_WRONLY);
    CHK(fd >= 0 && write(fd, "w", 1) == 1,
        "writing another's 0666 file in a sticky dir is allowed");
    if (fd >= 0)
        close(fd);
    OK(unlink("sticky/mine"), "unlink one's own file in a sticky dir");

    section("unpriv-setgid");
    make_str("sgid/f", "f");
    CHK(lst("sgid/f").st_gid == FOREIGN_GID, "file in a setgid dir gets the dir's group (got %u)",
        lst("sgid/f").st_gid);
    OK(mkdir("sgid/d", 0755), "mkdir in a setgid dir");
    st = lst("sgid/d");
    CHK(st.st_gid == FOREIGN_GID && (st.st_mode & S_ISGID), "subdir inherits group and setgid bit");
    fd = open("sgid/g", O_WRONLY | O_CREAT, 02755);
    CHK(fd >= 0, "create with setgid mode in a setgid dir");
    if (fd >= 0)
        close(fd);
    CHK(!(lst("sgid/g").st_mode & S_ISGID),
        "setgid stripped when creator is not in the group (mode %o)",
        lst("sgid/g").st_mode & 07777);
    OK(chmod("mine", 02644), "chmod g+s on own file whose group one is not in");
    CHK((lst("mine").st_mode & 07777) == 0644, "setgid silently dropped (mode %o)",
        lst("mine").st_mode & 07777);
    OK(chmod("mine", 04644), "chmod u+s on own file");
    CHK((lst("mine").st_mode & 07777) == 04644, "owner may set setuid (mode %o)",
        lst("mine").st_mode & 07777);

    section("unpriv-killpriv");
    make_str("suid", "s");
    OK(chmod("suid", 06775), "chmod 06775 own file (own group)");
    fd = open("suid", O_WRONLY);
    CHK(fd >= 0 && write(fd, "x", 1) == 1, "write to own setuid file");
    if (fd >= 0)
        close(fd);
    CHK((lst("suid").st_mode & 07777) == 0775, "write cleared setuid and setgid (mode %o)",
        lst("suid").st_mode & 07777);
    OK(chmod("suid", 04755), "chmod 04755");
    OK(truncate("suid", 0), "truncate own setuid file");
    CHK((lst("suid").st_mode & 07777) == 0755, "truncate cleared setuid (mode %o)",
        lst("suid").st_mode & 07777);
    OK(chmod("suid", 04755), "chmod 04755 again");
    fd = open("suid", O_WRONLY);
    CHK(fd >= 0 && pwrite(fd, "abc", 3, 0) == 3, "pwrite to own setuid file");
    if (fd >= 0)
        close(fd);
    CHK((lst("suid").st_mode & 07777) == 0755, "pwrite cleared setuid (mode %o)",
        lst("suid").st_mode & 07777);
    {
        char cbuf[64];
        fd = open("capfile", O_WRONLY);
        CHK(fd >= 0 && write(fd, "u", 1) == 1, "write to root's set-id file with capabilities");
        if (fd >= 0)
            close(fd);
        CHK((lst("capfile").st_mode & 07777) == 0777,
            "a write by another user cleared setuid and setgid (mode %o)",
            lst("capfile").st_mode & 07777);
        ERR(getxattr("capfile", "security.capability", cbuf, sizeof cbuf), ENODATA,
            "a write by another user removed security.capability");
    }

    t_unpriv_pjd();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    umask(022);
    if (argc == 3 && strcmp(argv[1], "--setup-unpriv") == 0) {
        setup_unpriv(argv[2]);
    } else if (argc == 3 && strcmp(argv[1], "--unpriv") == 0) {
        t_unpriv(argv[2]);
    } else if (argc == 2 && argv[1][0] != '-') {
        if (geteuid() != 0) {
            fprintf(stderr, "posix_driver: the default mode must run as root\n");
            return 2;
        }
        char work[64];
        snprintf(work, sizeof(work), "pd.%d", (int)getpid());
        if (chdir(argv[1]) < 0 || mkdir(work, 0755) < 0 || chdir(work) < 0) {
            fprintf(stderr, "posix_driver: cannot set up %s/%s: %s\n", argv[1], work,
                    strerror(errno));
            return 2;
        }
        t_errors();
        t_rename();
        t_rename_flags();
        t_links();
        t_symlinks();
        t_mknod();
        t_chmod_chown();
        t_utimens();
        t_timestamps();
        t_truncate();
        t_open_flags();
        t_sparse_seek();
        t_fallocate();
        t_large_offsets();
        t_xattr();
        t_killpriv_caps();
        t_unlinked_open();
        t_mmap();
        t_readdir();
        t_names();
        t_statfs();
        t_copy_file_range();
        t_sync_and_nlink();
        t_pjd_times();
        t_pjd_limits();
        t_pjd_txtbsy();
        section("cleanup");
        if (chdir("..") == 0)
            OK(rm_rf(work), "remove the work directory %s", work);
    } else {
        fprintf(stderr, "usage: posix_driver DIR | --setup-unpriv DIR | --unpriv DIR\n");
        return 2;
    }
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
