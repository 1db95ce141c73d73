/* meta_stress: concurrent namespace operations on a directory, then a link-count consistency check.
 *
 * Usage: meta_stress [-t threads] [-s seconds] [-S seed] [-g] DIR    run, then check
 *        meta_stress -c DIR                                         check only
 * Threads create, write, truncate, mkdir, rmdir, unlink, link, symlink, rename (plain,
 * RENAME_NOREPLACE, RENAME_EXCHANGE) and set/remove xattrs on a small set of names inside
 * DIR/t0..t3, so operations collide constantly. Errors that the operation can legitimately meet
 * (ENOENT, EEXIST, ENOTEMPTY, ...) are expected; any other errno (EIO, ENOTCONN, ...) is a failure.
 * With -g, ENOTCONN/ECONNABORTED mean the daemon was killed on purpose: the run stops quietly and
 * skips the check. The check walks DIR and requires, for every inode: as many names as st_nlink
 * for non-directories, 2 + subdirectories for directories, and d_ino/d_type agreeing with lstat.
 * Prints the seed and counts; exit 1 on any failure, 2 on usage errors.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define TOPS 4
#define NAMES 12
#define MAX_INODES 65536

static atomic_int stop_flag;
static atomic_int gone;
static atomic_long unexpected;
static atomic_long ops_done;
static atomic_long estale;
static int allow_gone;

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* A random path: t<k>/n<i>, sometimes one level deeper (t<k>/n<i>/n<j>). */
static void random_path(uint64_t *s, char *buf, size_t cap)
{
    uint64_t r = next_rand(s);
    if (r % 3 == 0)
        snprintf(buf, cap, "t%d/n%d/n%d", (int)(r >> 8) % TOPS, (int)(r >> 16) % NAMES,
                 (int)(r >> 24) % NAMES);
    else
        snprintf(buf, cap, "t%d/n%d", (int)(r >> 8) % TOPS, (int)(r >> 16) % NAMES);
}

/* Judges the result of one operation; the allowed errnos depend on nothing but are all benign. */
static void judge(const char *op, const char *a, const char *b, int ret)
{
    if (ret >= 0)
        return;
    int e = errno;
    switch (e) {
    case ENOENT:
    case EEXIST:
    case ENOTEMPTY:
    case ENOTDIR:
    case EISDIR:
    case EINVAL: /* rename of a directory into itself */
    case EPERM:  /* hard link to a directory */
    case ELOOP:
    case ENODATA:
    case EMLINK:
        return;
    case ESTALE:
        /* FUSE only: a lookup found a directory whose cached dentry lives under another name
         * while a concurrent rename held s_vfs_rename_mutex, so d_splice_alias could not move
         * it (the VFS retries once). The dcache of a local filesystem never needs that. */
        atomic_fetch_add(&estale, 1);
        return;
    case ENOTCONN:
    case ECONNABORTED:
        if (allow_gone) {
            atomic_store(&gone, 1);
            atomic_store(&stop_flag, 1);
            return;
        }
        break;
    default:
        break;
    }
    atomic_fetch_add(&unexpected, 1);
    fprintf(stderr, "meta_stress: unexpected %s from %s(%s%s%s)\n", strerrorname_np(e), op, a,
            b ? ", " : "", b ? b : "");
}

struct worker {
    pthread_t th;
    uint64_t seed;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t s = w->seed;
    char p1[64], p2[64], buf[4096];
    memset(buf, 'w', sizeof(buf));
    while (!atomic_load(&stop_flag)) {
        random_path(&s, p1, sizeof(p1));
        random_path(&s, p2, sizeof(p2));
        uint64_t r = next_rand(&s);
        int fd, ret;
        switch (r % 16) {
        case 0:
        case 1:
            fd = open(p1, O_WRONLY | O_CREAT | O_EXCL, 0644);
            judge("create", p1, NULL, fd);
            if (fd >= 0) {
                judge("write", p1, NULL, (int)write(fd, buf, (size_t)(r >> 20) % sizeof(buf)));
                close(fd);
            }
            break;
        case 2:
        case 3:
            judge("mkdir", p1, NULL, mkdir(p1, 0755));
            break;
        case 4:
            judge("unlink", p1, NULL, unlink(p1));
            break;
        case 5:
            judge("rmdir", p1, NULL, rmdir(p1));
            break;
        case 6:
            judge("link", p1, p2, link(p1, p2));
            break;
        case 7:
            judge("symlink", p1, p2, symlink(p1, p2));
            break;
        case 8:
        case 9:
        case 10:
            judge("rename", p1, p2, rename(p1, p2));
            break;
        case 11:
            ret = (int)syscall(SYS_renameat2, AT_FDCWD, p1, AT_FDCWD, p2, RENAME_NOREPLACE);
            judge("rename_noreplace", p1, p2, ret);
            break;
        case 12:
            ret = (int)syscall(SYS_renameat2, AT_FDCWD, p1, AT_FDCWD, p2, RENAME_EXCHANGE);
            judge("rename_exchange", p1, p2, ret);
            break;
        case 13:
            /* EPERM (user.* on a symlink) is among the expected errors */
            judge("lsetxattr", p1, NULL, lsetxattr(p1, "user.s", buf, (r >> 20) % 200, 0));
            break;
        case 14:
            judge("truncate", p1, NULL, truncate(p1, (off_t)((r >> 20) % 300000)));
            break;
        default: {
            DIR *d = opendir(p1);
            if (!d) {
                judge("opendir", p1, NULL, -1);
                break;
            }
            while (readdir(d))
                ;
            closedir(d);
            break;
        }
        }
        atomic_fetch_add(&ops_done, 1);
    }
    return NULL;
}

struct inode_seen {
    ino_t ino;
    int names;
    int subdirs;
    nlink_t nlink;
    int is_dir;
};

static struct inode_seen *table;
static size_t n_table;
static int check_failures;

/* Open addressing on the inode number; the table holds at most half of its slots. */
static struct inode_seen *lookup_inode(ino_t ino)
{
    size_t i = (size_t)((uint64_t)ino * 0x9E3779B97F4A7C15ULL >> 47) % (2 * MAX_INODES);
    while (table[i].ino != 0 && table[i].ino != ino)
        i = (i + 1) % (2 * MAX_INODES);
    if (table[i].ino == 0) {
        if (n_table == MAX_INODES) {
            fprintf(stderr, "meta_stress: too many inodes to check\n");
            exit(2);
        }
        table[i].ino = ino;
        n_table++;
    }
    return &table[i];
}

static void walk(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "check: opendir %s: %s\n", path, strerror(errno));
        check_failures++;
        return;
    }
    struct dirent *e;
    char child[4096];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(child, &st) < 0) {
            fprintf(stderr, "check: %s listed but lstat fails: %s\n", child, strerror(errno));
            check_failures++;
            continue;
        }
        if (st.st_ino != e->d_ino) {
            fprintf(stderr, "check: %s d_ino %" PRIu64 " but st_ino %" PRIu64 "\n", child,
                    (uint64_t)e->d_ino, (uint64_t)st.st_ino);
            check_failures++;
        }
        if (e->d_type != DT_UNKNOWN && (mode_t)DTTOIF(e->d_type) != (st.st_mode & S_IFMT)) {
            fprintf(stderr, "check: %s d_type %d disagrees with mode %o\n", child, e->d_type,
                    st.st_mode);
            check_failures++;
        }
        struct inode_seen *in = lookup_inode(st.st_ino);
        in->names++;
        in->nlink = st.st_nlink;
        in->is_dir = S_ISDIR(st.st_mode);
        if (S_ISDIR(st.st_mode)) {
            struct stat self;
            if (lstat(path, &self) == 0)
                lookup_inode(self.st_ino)->subdirs++;
            walk(child);
        }
    }
    closedir(d);
}

static int check_tree(const char *dir)
{
    table = calloc(2 * MAX_INODES, sizeof(*table));
    if (!table)
        exit(2);
    struct stat root;
    if (lstat(dir, &root) < 0) {
        fprintf(stderr, "check: lstat %s: %s\n", dir, strerror(errno));
        return 1;
    }
    struct inode_seen *r = lookup_inode(root.st_ino);
    r->is_dir = 1;
    r->names = 1;
    r->nlink = root.st_nlink;
    walk(dir);
    r->nlink = lstat(dir, &root) == 0 ? root.st_nlink : 0;
    for (size_t i = 0; i < 2 * MAX_INODES; i++) {
        struct inode_seen *in = &table[i];
        if (in->ino == 0)
            continue;
        if (in->is_dir) {
            if (in->names != 1) {
                fprintf(stderr, "check: directory inode %" PRIu64 " has %d names\n",
                        (uint64_t)in->ino, in->names);
                check_failures++;
            }
            if (in->nlink != (nlink_t)(2 + in->subdirs)) {
                fprintf(stderr, "check: directory inode %" PRIu64 " nlink %lu, has %d subdirs\n",
                        (uint64_t)in->ino, (unsigned long)in->nlink, in->subdirs);
                check_failures++;
            }
        } else if (in->nlink != (nlink_t)in->names) {
            fprintf(stderr, "check: inode %" PRIu64 " nlink %lu but %d names\n", (uint64_t)in->ino,
                    (unsigned long)in->nlink, in->names);
            check_failures++;
        }
    }
    printf("meta_stress: checked %zu inodes, %d problems\n", n_table, check_failures);
    free(table);
    return check_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    int threads = 4, seconds = 5, check_only = 0, c;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t seed = (uint64_t)tv.tv_sec * 1000003ULL ^ (uint64_t)tv.tv_usec;
    while ((c = getopt(argc, argv, "t:s:S:gc")) != -1) {
        switch (c) {
        case 't':
            threads = atoi(optarg);
            break;
        case 's':
            seconds = atoi(optarg);
            break;
        case 'S':
            seed = strtoull(optarg, NULL, 0);
            break;
        case 'g':
            allow_gone = 1;
            break;
        case 'c':
            check_only = 1;
            break;
        default:
            fprintf(stderr, "usage: meta_stress [-t threads] [-s seconds] [-S seed] [-g] DIR | "
                            "meta_stress -c DIR\n");
            return 2;
        }
    }
    if (optind != argc - 1 || threads < 1 || threads > 64) {
        fprintf(stderr, "meta_stress: need one DIR and 1..64 threads\n");
        return 2;
    }
    if (chdir(argv[optind]) < 0) {
        fprintf(stderr, "meta_stress: chdir %s: %s\n", argv[optind], strerror(errno));
        return 2;
    }
    if (check_only)
        return check_tree(".");
    printf("meta_stress: seed %" PRIu64 ", %d threads, %d s\n", seed, threads, seconds);
    fflush(stdout);
    char top[8];
    for (int i = 0; i < TOPS; i++) {
        snprintf(top, sizeof(top), "t%d", i);
        if (mkdir(top, 0755) < 0 && errno != EEXIST) {
            fprintf(stderr, "meta_stress: mkdir %s: %s\n", top, strerror(errno));
            return 1;
        }
    }
    struct worker *w = calloc((size_t)threads, sizeof(*w));
    for (int i = 0; i < threads; i++) {
        w[i].seed = seed + (uint64_t)i * 0x1000193ULL;
        pthread_create(&w[i].th, NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < seconds * 10 && !atomic_load(&stop_flag); i++)
        usleep(100000);
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(w[i].th, NULL);
    free(w);
    printf("meta_stress: %ld ops, %ld unexpected errors, %ld ESTALE%s\n", atomic_load(&ops_done),
           atomic_load(&unexpected), atomic_load(&estale),
           atomic_load(&gone) ? ", stopped: mount gone" : "");
    if (atomic_load(&unexpected))
        return 1;
    if (atomic_load(&gone))
        return 0;
    return check_tree(".");
}
