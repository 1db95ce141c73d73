/* store_corrupt: damages kvcore store files on purpose, for tests/mount/corrupt.sh.
 *
 *   store_corrupt regions FILE.sst   prints "<region> <offset> <length>" for the data blocks,
 *                                    the filter block, the index block (each with its 9-byte
 *                                    trailer) and the footer, from the footer of an intact table
 *                                    (see kvcore/FORMAT.md, "Footer")
 *   store_corrupt flip FILE OFFSET [BIT]   inverts one bit (default bit 0) of the byte at OFFSET
 *   store_corrupt size FILE          prints the file's size
 *   store_corrupt records FILE       prints "record <offset> <total length>" for each record of
 *                                    a record log (a WAL or a manifest) up to the first bad one
 *   store_corrupt writeback FILE     writes back (sync_file_range) only the last page of FILE,
 *                                    as background writeback may do before a power cut, while
 *                                    the earlier unsynced pages stay in memory
 *   store_corrupt live STORE         prints "table <number> <level>" for each table the manifest
 *                                    named by CURRENT lists (its edits replayed in order)
 *
 * Exit 0 on success, 1 if the file cannot be read or is not what the command expects.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SST_FOOTER_SIZE 64
#define SST_TRAILER_SIZE 9
#define SST_MAGIC 0x016261545353766bULL

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int cmd_regions(const char *path)
{
    unsigned char f[SST_FOOTER_SIZE];
    struct stat st;
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < SST_FOOTER_SIZE ||
        pread(fd, f, sizeof f, st.st_size - SST_FOOTER_SIZE) != SST_FOOTER_SIZE) {
        fprintf(stderr, "store_corrupt: %s: cannot read a footer: %s\n", path, strerror(errno));
        return 1;
    }
    close(fd);
    uint64_t size = (uint64_t)st.st_size, foot = size - SST_FOOTER_SIZE;
    uint64_t filter_off = le64(f), filter_size = le64(f + 8);
    uint64_t index_off = le64(f + 16), index_size = le64(f + 24);
    if (le64(f + 56) != SST_MAGIC || index_off + index_size + SST_TRAILER_SIZE != foot ||
        (filter_size && filter_off + filter_size + SST_TRAILER_SIZE != index_off)) {
        fprintf(stderr, "store_corrupt: %s: not an intact table\n", path);
        return 1;
    }
    uint64_t data_end = filter_size ? filter_off : index_off;
    printf("data 0 %" PRIu64 "\n", data_end);
    if (filter_size)
        printf("filter %" PRIu64 " %" PRIu64 "\n", filter_off, filter_size + SST_TRAILER_SIZE);
    printf("index %" PRIu64 " %" PRIu64 "\n", index_off, index_size + SST_TRAILER_SIZE);
    printf("footer %" PRIu64 " %d\n", foot, SST_FOOTER_SIZE);
    return 0;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads a whole (small) file; caller frees. NULL on failure. */
static unsigned char *slurp(const char *path, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    if (buf && pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
        free(buf);
        buf = NULL;
    }
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

/* Calls fn for each complete record (header 13 bytes: checksum, length, type). The checksum is
 * not verified here: this tool only reads stores the test has just written intact. */
static int each_record(const unsigned char *b, size_t n,
                       int (*fn)(void *, size_t off, const unsigned char *p, size_t len), void *ctx)
{
    size_t off = 0;
    while (n - off >= 13) {
        size_t len = le32(b + off + 8);
        if (len > n - off - 13 || b[off + 12] != 1)
            break;
        if (fn(ctx, off, b + off + 13, len) != 0)
            return -1;
        off += 13 + len;
    }
    return 0;
}

static int print_record(void *ctx, size_t off, const unsigned char *p, size_t len)
{
    (void)ctx;
    (void)p;
    printf("record %zu %zu\n", off, 13 + len);
    return 0;
}

static int varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        unsigned char c = *(*p)++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return 0;
    }
    return -1;
}

#define MAX_TABLES 4096

struct live {
    uint64_t num[MAX_TABLES];
    int level[MAX_TABLES];
    int n;
};

static int apply_edit(void *ctx, size_t off, const unsigned char *p, size_t len)
{
    struct live *l = ctx;
    const unsigned char *end = p + len;
    while (p < end) {
        uint64_t tag, level, num, v;
        if (varint(&p, end, &tag) != 0)
            goto bad;
        switch (tag) {
        case 1:
        case 2:
        case 3:
        case 4:
            if (varint(&p, end, &v) != 0)
                goto bad;
            break;
        case 5:
            if (varint(&p, end, &level) != 0 || varint(&p, end, &num) != 0)
                goto bad;
            for (int i = 0; i < l->n; i++)
                if (l->num[i] == num) {
                    l->num[i] = l->num[l->n - 1];
                    l->level[i] = l->level[l->n - 1];
                    l->n--;
                    break;
                }
            break;
        case 6:
            if (varint(&p, end, &level) != 0 || varint(&p, end, &num) != 0 ||
                varint(&p, end, &v) != 0 || varint(&p, end, &v) != 0)
                goto bad;
            for (int k = 0; k < 2; k++) {
                if (varint(&p, end, &v) != 0 || v > (uint64_t)(end - p))
                    goto bad;
                p += v;
            }
            if (l->n == MAX_TABLES)
                goto bad;
            l->num[l->n] = num;
            l->level[l->n++] = (int)level;
            break;
        default:
            goto bad;
        }
    }
    return 0;
bad:
    fprintf(stderr, "store_corrupt: manifest record at offset %zu does not decode\n", off);
    return -1;
}

static int cmd_live(const char *store)
{
    char path[4096], name[256];
    size_t n;
    snprintf(path, sizeof path, "%s/CURRENT", store);
    unsigned char *cur = slurp(path, &n);
    if (!cur || n < 2 || n >= sizeof name || cur[n - 1] != '\n') {
        fprintf(stderr, "store_corrupt: %s unreadable\n", path);
        free(cur);
        return 1;
    }
    memcpy(name, cur, n - 1);
    name[n - 1] = 0;
    free(cur);
    if ((size_t)snprintf(path, sizeof path, "%s/%s", store, name) >= sizeof path)
        return 1;
    unsigned char *m = slurp(path, &n);
    static struct live l;
    if (!m || each_record(m, n, apply_edit, &l) != 0) {
        free(m);
        return 1;
    }
    free(m);
    for (int i = 0; i < l.n; i++)
        printf("table %06" PRIu64 " %d\n", l.num[i], l.level[i]);
    return 0;
}

static int cmd_flip(const char *path, const char *off_s, const char *bit_s)
{
    char *end;
    errno = 0;
    unsigned long long off = strtoull(off_s, &end, 0);
    long bit = bit_s ? strtol(bit_s, NULL, 0) : 0;
    if (errno || *end || bit < 0 || bit > 7) {
        fprintf(stderr, "store_corrupt: bad offset or bit\n");
        return 1;
    }
    unsigned char b;
    int fd = open(path, O_RDWR);
    if (fd < 0 || pread(fd, &b, 1, (off_t)off) != 1) {
        fprintf(stderr, "store_corrupt: %s: no byte at offset %llu\n", path, off);
        return 1;
    }
    b ^= (unsigned char)(1u << bit);
    if (pwrite(fd, &b, 1, (off_t)off) != 1 || fsync(fd) != 0 || close(fd) != 0) {
        fprintf(stderr, "store_corrupt: %s: write failed: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "regions") == 0)
        return cmd_regions(argv[2]);
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "flip") == 0)
        return cmd_flip(argv[2], argv[3], argc == 5 ? argv[4] : NULL);
    if (argc == 3 && strcmp(argv[1], "size") == 0) {
        struct stat st;
        if (stat(argv[2], &st) != 0)
            return 1;
        printf("%lld\n", (long long)st.st_size);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "writeback") == 0) {
        struct stat st;
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0 || fstat(fd, &st) != 0) {
            fprintf(stderr, "store_corrupt: %s: %s\n", argv[2], strerror(errno));
            return 1;
        }
        off_t last = st.st_size > 0 ? (st.st_size - 1) / 4096 * 4096 : 0;
        int rc = sync_file_range(fd, last, st.st_size - last,
                                 SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                     SYNC_FILE_RANGE_WAIT_AFTER);
        close(fd);
        if (rc != 0) {
            fprintf(stderr, "store_corrupt: sync_file_range: %s\n", strerror(errno));
            return 1;
        }
        printf("wrote back [%lld, %lld) of %s\n", (long long)last, (long long)st.st_size, argv[2]);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "live") == 0)
        return cmd_live(argv[2]);
    if (argc == 3 && strcmp(argv[1], "records") == 0) {
        size_t n;
        unsigned char *b = slurp(argv[2], &n);
        if (!b)
            return 1;
        each_record(b, n, print_record, NULL);
        free(b);
        return 0;
    }
    fprintf(stderr, "usage: store_corrupt regions FILE.sst | flip FILE OFFSET [BIT] | size FILE | "
                    "records FILE | live STORE\n");
    return 2;
}
