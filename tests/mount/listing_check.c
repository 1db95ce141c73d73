/* listing_check.c - builds a directory of known entries and checks what listings report of it.
 *
 *   listing_check make DIR N     creates N entries e00000.. in DIR (which must exist)
 *   listing_check check DIR N    lists DIR three ways and checks every entry
 *
 * Entry i is a directory when i % 97 == 0, a symlink to "t<i>" when i % 31 == 0, else a regular
 * file of i % 13 bytes with mode 0600 | (i % 4) << 3 (so neighbours differ in size and mode).
 * check lists the directory (a) with an lstat of each entry as it is read (what ls -l does: the
 * kernel then asks kvfs for READDIRPLUS replies, whose attributes come from the listing), (b)
 * names only (plain READDIR after the first reply), and (c) with lstat again straight away
 * (attributes from the kernel's cache). Each listing must return every entry exactly once with
 * the right d_type, and every lstat the entry's inode number (d_ino), type, mode, size and
 * nlink. Every mismatch is printed; the exit status is 1 if there was any.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { LC_NAME_MAX = 32, LC_REPORT_MAX = 20 };

static long lc_errors;

static void lc_error(const char *fmt, const char *name, long want, long got)
{
    if (lc_errors++ < LC_REPORT_MAX) {
        printf("listing_check: %s: ", name);
        printf(fmt, want, got);
        printf("\n");
    }
}

static unsigned lc_type(long i)
{
    if (i % 97 == 0)
        return DT_DIR;
    if (i % 31 == 0)
        return DT_LNK;
    return DT_REG;
}

static void lc_name(char *buf, long i)
{
    snprintf(buf, LC_NAME_MAX, "e%05ld", i);
}

static int lc_make(const char *dir, long n)
{
    char name[LC_NAME_MAX], target[LC_NAME_MAX];
    static const char bytes[13] = "abcdefghijkl";
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);

    if (dfd < 0) {
        perror(dir);
        return 1;
    }
    for (long i = 0; i < n; i++) {
        lc_name(name, i);
        if (lc_type(i) == DT_DIR) {
            if (mkdirat(dfd, name, 0755) != 0)
                goto fail;
        } else if (lc_type(i) == DT_LNK) {
            snprintf(target, sizeof target, "t%ld", i);
            if (symlinkat(target, dfd, name) != 0)
                goto fail;
        } else {
            int fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY, 0600);
            size_t len = (size_t)(i % 13);
            if (fd < 0)
                goto fail;
            if (write(fd, bytes, len) != (ssize_t)len ||
                fchmod(fd, (mode_t)(0600 | (i % 4) << 3)) != 0 || close(fd) != 0)
                goto fail;
        }
    }
    close(dfd);
    return 0;
fail:
    perror(name);
    close(dfd);
    return 1;
}

static void lc_check_stat(const char *name, long i, const struct dirent *de, const struct stat *st)
{
    unsigned t = lc_type(i);

    if (st->st_ino != de->d_ino)
        lc_error("st_ino %ld, d_ino %ld", name, (long)st->st_ino, (long)de->d_ino);
    if (t == DT_DIR) {
        if (!S_ISDIR(st->st_mode) || st->st_nlink != 2)
            lc_error("want a directory with nlink 2, mode %lo nlink %ld", name, (long)st->st_mode,
                     (long)st->st_nlink);
    } else if (t == DT_LNK) {
        char target[LC_NAME_MAX];
        long len = snprintf(target, sizeof target, "t%ld", i);
        if (!S_ISLNK(st->st_mode) || st->st_size != len)
            lc_error("want a symlink of %ld bytes, st_size %ld", name, len, (long)st->st_size);
    } else {
        long mode = S_IFREG | 0600 | (i % 4) << 3;
        if ((long)st->st_mode != mode)
            lc_error("st_mode want %lo got %lo", name, mode, (long)st->st_mode);
        if (st->st_size != i % 13 || st->st_nlink != 1)
            lc_error("want size %ld nlink 1, size %ld", name, i % 13, (long)st->st_size);
    }
}

/* One listing; with_stat lstat's each entry as it is read. */
static void lc_list(const char *dir, long n, int with_stat, const char *label)
{
    unsigned char *seen = calloc((size_t)n, 1);
    long dots = 0, count = 0;
    struct dirent *de;
    DIR *d = opendir(dir);

    if (!seen || !d) {
        perror(dir);
        exit(1);
    }
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long i;
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            dots++;
            continue;
        }
        i = de->d_name[0] == 'e' ? strtol(de->d_name + 1, &end, 10) : -1;
        if (i < 0 || i >= n || *end != '\0') {
            lc_error("unexpected name (%ld, %ld)", de->d_name, 0, 0);
            continue;
        }
        count++;
        if (seen[i]++)
            lc_error("listed again (%ld times, entry %ld)", de->d_name, seen[i], i);
        if (de->d_type != lc_type(i))
            lc_error("d_type want %ld got %ld", de->d_name, (long)lc_type(i), (long)de->d_type);
        if (with_stat) {
            if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                lc_error("lstat failed (errno %ld, %ld)", de->d_name, (long)errno, 0);
            else
                lc_check_stat(de->d_name, i, de, &st);
        }
        errno = 0;
    }
    if (errno != 0)
        lc_error("readdir failed (errno %ld, %ld)", dir, (long)errno, 0);
    closedir(d);
    if (dots != 2)
        lc_error(". and .. want %ld got %ld", dir, 2, dots);
    if (count != n)
        lc_error("entries want %ld got %ld", dir, n, count);
    printf("listing_check: %s listing of %ld entries done (%ld errors so far)\n", label, count,
           lc_errors);
    free(seen);
}

int main(int argc, char **argv)
{
    long n;

    if (argc != 4 || (n = strtol(argv[3], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: listing_check make|check DIR N\n");
        return 2;
    }
    if (strcmp(argv[1], "make") == 0)
        return lc_make(argv[2], n);
    if (strcmp(argv[1], "check") != 0) {
        fprintf(stderr, "usage: listing_check make|check DIR N\n");
        return 2;
    }
    lc_list(argv[2], n, 1, "lstat-each");
    lc_list(argv[2], n, 0, "names-only");
    lc_list(argv[2], n, 1, "lstat-each-again");
    return lc_errors ? 1 : 0;
}
