/* fsx: an fsx-like data-integrity exerciser; random I/O on one file checked against a model.
 *
 * Usage: fsx [-N ops] [-S seed] [-l maxlen] [-o maxop] [-b base] [-c every] [-d] [-F] [-M] [-T]
 * [-v] FILE -N ops    operations to run (default 10000) -S seed   random seed (default: from the
 * clock); printed, so a failure replays exactly -l maxlen largest file size the model covers
 * (default 4 MiB) -o maxop  largest single read/write (default 256 KiB) -b base   offset of the
 * model inside the file, e.g. 5G, to exercise >4 GiB offsets -c every  close and reopen the file
 * every N ops, verifying the whole file each time -d        O_DIRECT: all reads/writes 4
 * KiB-aligned; with -c, alternate O_DIRECT and buffered -F        no fallocate/punch-hole ops (for
 * filesystems without them) -M        no mmap ops -T        no reopen-with-O_TRUNC ops -v print
 * every op Ops: read, write, truncate, fallocate (0, KEEP_SIZE, PUNCH_HOLE), mmap read, mmap
 * write+msync, reopen with O_TRUNC. Every byte read (pread and mmap) is compared with the model.
 * Written bytes encode the op number (byte = op*7 + offset + 1), so a wrong byte hints at which op
 * wrote it. On failure the last ops are printed with the seed and the exit status is 1; 2 means a
 * usage or setup error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <linux/falloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define ALIGN 4096
#define HISTORY 64

enum op_kind {
    OP_READ,
    OP_WRITE,
    OP_TRUNCATE,
    OP_FALLOC,
    OP_FALLOC_KEEP,
    OP_PUNCH,
    OP_MAPREAD,
    OP_MAPWRITE,
    OP_TRUNC_OPEN,
    OP_KINDS
};

static const char *const op_names[OP_KINDS] = {
    "read",  "write",   "truncate", "falloc",     "falloc_keep",
    "punch", "mapread", "mapwrite", "trunc_open",
};

struct op_record {
    long num;
    enum op_kind kind;
    uint64_t off;
    uint64_t len;
    uint64_t size_after;
};

static struct {
    long ops;
    uint64_t seed;
    uint64_t maxlen;
    uint64_t maxop;
    uint64_t base;
    long reopen_every;
    int direct;
    int no_falloc;
    int no_mmap;
    int no_trunc_open;
    int verbose;
    const char *path;
} opt = {10000, 0, 4 << 20, 256 << 10, 0, 0, 0, 0, 0, 0, 0, NULL};

static unsigned char *model; /* maxlen bytes; bytes at and past model_size are zero */
static uint64_t model_size;
static unsigned char *iobuf; /* ALIGN-aligned, maxop + 2*ALIGN bytes */
static int fd = -1;
static int fd_direct;
static long cur_op;
static uint64_t rng_state;
static struct op_record history[HISTORY];
static long n_history;
static long op_counts[OP_KINDS];

static uint64_t rng_next(void)
{
    /* splitmix64: fast, and a seed fully determines the sequence. */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
    return n ? rng_next() % n : 0;
}

static void print_history(void)
{
    long first = n_history > HISTORY ? n_history - HISTORY : 0;
    fprintf(stderr, "last %ld ops (offsets relative to base %" PRIu64 "):\n", n_history - first,
            opt.base);
    for (long i = first; i < n_history; i++) {
        struct op_record *r = &history[i % HISTORY];
        fprintf(stderr,
                "  op %6ld %-11s off %10" PRIu64 " len %8" PRIu64 " (end %10" PRIu64
                ") size after %" PRIu64 "\n",
                r->num, op_names[r->kind], r->off, r->len, r->off + r->len, r->size_after);
    }
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fsx: FAIL at op %ld: ", cur_op);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    print_history();
    fprintf(stderr,
            "fsx: replay with: -S %" PRIu64 " -N %ld -l %" PRIu64 " -o %" PRIu64 " -b %" PRIu64
            "%s%s%s%s -c %ld %s\n",
            opt.seed, opt.ops, opt.maxlen, opt.maxop, opt.base, opt.direct ? " -d" : "",
            opt.no_falloc ? " -F" : "", opt.no_mmap ? " -M" : "", opt.no_trunc_open ? " -T" : "",
            opt.reopen_every, opt.path);
    exit(1);
}

static void record(enum op_kind kind, uint64_t off, uint64_t len)
{
    struct op_record *r = &history[n_history % HISTORY];
    r->num = cur_op;
    r->kind = kind;
    r->off = off;
    r->len = len;
    r->size_after = model_size;
    n_history++;
    op_counts[kind]++;
    if (opt.verbose)
        printf("op %ld %s off %" PRIu64 " len %" PRIu64 " size %" PRIu64 "\n", cur_op,
               op_names[kind], off, len, model_size);
}

/* Compares got[0..len) with the model at off; bytes past the model size must be absent. */
static void compare(const unsigned char *got, uint64_t off, uint64_t len, const char *how)
{
    for (uint64_t i = 0; i < len; i++) {
        unsigned char want = model[off + i];
        if (got[i] != want) {
            uint64_t j = i;
            while (j < len && got[j] != model[off + j])
                j++;
            fail("%s: byte at offset %" PRIu64 " (file offset %" PRIu64 ") is 0x%02x, want 0x%02x;"
                 " %" PRIu64 " bad bytes from there; model size %" PRIu64,
                 how, off + i, opt.base + off + i, got[i], want, j - i, model_size);
        }
    }
}

static void check_size(const char *when)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        fail("fstat (%s): %s", when, strerror(errno));
    if ((uint64_t)st.st_size != opt.base + model_size)
        fail("file size %lld after %s, model says %" PRIu64, (long long)st.st_size, when,
             opt.base + model_size);
}

static void do_open_flags(int direct, int extra)
{
    int flags = O_RDWR | O_CREAT | extra | (direct ? O_DIRECT : 0);
    fd = open(opt.path, flags, 0644);
    if (fd < 0)
        fail("open %s%s: %s", opt.path, direct ? " O_DIRECT" : "", strerror(errno));
    fd_direct = direct;
}

static void do_open(int direct)
{
    do_open_flags(direct, 0);
}

/* Reads [off, off+len) with pread (retrying short reads) and compares with the model. */
static void read_and_compare(uint64_t off, uint64_t len, const char *how)
{
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, iobuf + done, len - done, (off_t)(opt.base + off + done));
        if (n < 0)
            fail("%s: pread off %" PRIu64 " len %" PRIu64 ": %s", how, off + done, len - done,
                 strerror(errno));
        if (n == 0)
            break;
        done += (uint64_t)n;
    }
    uint64_t expect = off >= model_size ? 0 : (off + len > model_size ? model_size - off : len);
    if (done != expect)
        fail("%s: read %" PRIu64 " bytes at %" PRIu64 ", want %" PRIu64 " (model size %" PRIu64 ")",
             how, done, off, expect, model_size);
    compare(iobuf, off, expect, how);
}

static void verify_all(const char *when)
{
    check_size(when);
    for (uint64_t off = 0; off < model_size; off += opt.maxop) {
        uint64_t len = model_size - off < opt.maxop ? model_size - off : opt.maxop;
        if (fd_direct)
            len = (len + ALIGN - 1) / ALIGN * ALIGN;
        read_and_compare(off, len, when);
    }
}

/* Picks an offset: uniform, near EOF, or near a 64 KiB boundary (chunk edges). */
static uint64_t pick_offset(uint64_t limit)
{
    uint64_t off;
    switch (rng_below(4)) {
    case 0: {
        uint64_t boundary = rng_below(limit / 65536 + 1) * 65536;
        off = boundary + rng_below(64) - (boundary >= 32 ? 32 : 0);
        break;
    }
    case 1:
        off = model_size > 4096 ? model_size - rng_below(4096) : rng_below(model_size + 1);
        off += rng_below(3) == 0 ? rng_below(8192) : 0;
        break;
    default:
        off = rng_below(limit);
        break;
    }
    return off < limit ? off : limit - 1;
}

static uint64_t pick_len(void)
{
    switch (rng_below(4)) {
    case 0:
        return rng_below(64) + 1;
    case 1:
        return rng_below(8192) + 1;
    default:
        return rng_below(opt.maxop) + 1;
    }
}

/* Aligns an (off, len) pair for O_DIRECT and clamps it to the model. */
static void fit(uint64_t *off, uint64_t *len)
{
    if (fd_direct) {
        *off = *off / ALIGN * ALIGN;
        *len = (*len + ALIGN - 1) / ALIGN * ALIGN;
        if (*len > opt.maxop)
            *len = opt.maxop / ALIGN * ALIGN;
        if (*len == 0)
            *len = ALIGN;
    }
    if (*off + *len > opt.maxlen) {
        if (*off >= opt.maxlen)
            *off = fd_direct ? (opt.maxlen - ALIGN) : opt.maxlen - 1;
        *len = opt.maxlen - *off;
    }
}

static void op_read(void)
{
    uint64_t off = pick_offset(model_size + 1), len = pick_len();
    fit(&off, &len);
    record(OP_READ, off, len);
    read_and_compare(off, len, "read");
}

static void op_write(void)
{
    uint64_t off = pick_offset(opt.maxlen), len = pick_len();
    fit(&off, &len);
    for (uint64_t i = 0; i < len; i++)
        iobuf[i] = (unsigned char)(cur_op * 7 + off + i + 1);
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, iobuf + done, len - done, (off_t)(opt.base + off + done));
        if (n <= 0)
            fail("write: pwrite off %" PRIu64 " len %" PRIu64 ": %s", off + done, len - done,
                 n < 0 ? strerror(errno) : "returned 0");
        done += (uint64_t)n;
    }
    memcpy(model + off, iobuf, len);
    if (off + len > model_size)
        model_size = off + len;
    record(OP_WRITE, off, len);
}

static void set_model_size(uint64_t size)
{
    if (size < model_size)
        memset(model + size, 0, model_size - size);
    model_size = size;
}

static void op_truncate(void)
{
    uint64_t size = rng_below(3) == 0 ? pick_offset(opt.maxlen) : rng_below(opt.maxlen / 2 + 1);
    if (size > opt.maxlen)
        size = opt.maxlen;
    if (ftruncate(fd, (off_t)(opt.base + size)) < 0)
        fail("ftruncate to %" PRIu64 ": %s", size, strerror(errno));
    set_model_size(size);
    record(OP_TRUNCATE, size, 0);
    check_size("truncate");
}

static void op_fallocate(enum op_kind kind)
{
    uint64_t off = pick_offset(opt.maxlen), len = pick_len();
    fit(&off, &len);
    int mode = kind == OP_FALLOC        ? 0
               : kind == OP_FALLOC_KEEP ? FALLOC_FL_KEEP_SIZE
                                        : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    if (fallocate(fd, mode, (off_t)(opt.base + off), (off_t)len) < 0)
        fail("%s off %" PRIu64 " len %" PRIu64 ": %s (use -F to skip fallocate)", op_names[kind],
             off, len, strerror(errno));
    if (kind == OP_FALLOC && off + len > model_size)
        model_size = off + len; /* new space reads as zeros, already zero in the model */
    if (kind == OP_PUNCH && off < model_size)
        memset(model + off, 0, (off + len > model_size ? model_size : off + len) - off);
    record(kind, off, len);
    if (kind != OP_PUNCH)
        check_size(op_names[kind]);
}

/* Maps the page-aligned window around [off, off+len) of the file. */
static unsigned char *map_window(uint64_t off, uint64_t len, int prot, uint64_t *map_off,
                                 uint64_t *map_len)
{
    uint64_t file_off = opt.base + off;
    uint64_t start = file_off / ALIGN * ALIGN;
    *map_off = file_off - start;
    *map_len = *map_off + len;
    void *p = mmap(NULL, *map_len, prot, MAP_SHARED, fd, (off_t)start);
    if (p == MAP_FAILED)
        fail("mmap off %" PRIu64 " len %" PRIu64 ": %s", off, len, strerror(errno));
    return p;
}

static void op_mapread(void)
{
    if (model_size == 0)
        return;
    uint64_t off = rng_below(model_size), len = pick_len();
    if (off + len > model_size)
        len = model_size - off;
    uint64_t map_off, map_len;
    unsigned char *p = map_window(off, len, PROT_READ, &map_off, &map_len);
    record(OP_MAPREAD, off, len);
    compare(p + map_off, off, len, "mapread");
    munmap(p, map_len);
}

static void op_mapwrite(void)
{
    if (model_size == 0)
        return;
    /* A shared mapping cannot extend the file: write inside the current size only. */
    uint64_t off = rng_below(model_size), len = pick_len();
    if (off + len > model_size)
        len = model_size - off;
    uint64_t map_off, map_len;
    unsigned char *p = map_window(off, len, PROT_READ | PROT_WRITE, &map_off, &map_len);
    for (uint64_t i = 0; i < len; i++)
        p[map_off + i] = (unsigned char)(cur_op * 7 + off + i + 1);
    if (msync(p, map_len, MS_SYNC) < 0)
        fail("msync: %s", strerror(errno));
    memcpy(model + off, p + map_off, len);
    munmap(p, map_len);
    record(OP_MAPWRITE, off, len);
}

/* Closes and reopens with O_TRUNC: the file must be empty right away and stay so. */
static void op_trunc_open(void)
{
    if (close(fd) < 0)
        fail("close: %s", strerror(errno));
    do_open_flags(fd_direct, O_TRUNC);
    set_model_size(0);
    record(OP_TRUNC_OPEN, 0, 0);
    /* The base offset region is part of the file too: restore the size the model assumes. */
    if (opt.base && ftruncate(fd, (off_t)opt.base) < 0)
        fail("ftruncate to base after O_TRUNC: %s", strerror(errno));
    check_size("open O_TRUNC");
}

static uint64_t parse_size(const char *s)
{
    char *end;
    uint64_t v = strtoull(s, &end, 0);
    switch (*end) {
    case 'k':
    case 'K':
        v <<= 10;
        break;
    case 'm':
    case 'M':
        v <<= 20;
        break;
    case 'g':
    case 'G':
        v <<= 30;
        break;
    case 0:
        break;
    default:
        fprintf(stderr, "fsx: bad size '%s'\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    int c;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    opt.seed = (uint64_t)tv.tv_sec * 1000003ULL ^ (uint64_t)tv.tv_usec ^ (uint64_t)getpid();
    while ((c = getopt(argc, argv, "N:S:l:o:b:c:dFMTv")) != -1) {
        switch (c) {
        case 'N':
            opt.ops = atol(optarg);
            break;
        case 'S':
            opt.seed = strtoull(optarg, NULL, 0);
            break;
        case 'l':
            opt.maxlen = parse_size(optarg);
            break;
        case 'o':
            opt.maxop = parse_size(optarg);
            break;
        case 'b':
            opt.base = parse_size(optarg);
            break;
        case 'c':
            opt.reopen_every = atol(optarg);
            break;
        case 'd':
            opt.direct = 1;
            break;
        case 'F':
            opt.no_falloc = 1;
            break;
        case 'M':
            opt.no_mmap = 1;
            break;
        case 'T':
            opt.no_trunc_open = 1;
            break;
        case 'v':
            opt.verbose = 1;
            break;
        default:
            fprintf(stderr, "usage: fsx [-N ops] [-S seed] [-l maxlen] [-o maxop] [-b base] "
                            "[-c every] [-d] [-F] [-M] [-T] [-v] FILE\n");
            return 2;
        }
    }
    if (optind != argc - 1 || opt.maxlen < 2 * ALIGN || opt.maxop < ALIGN ||
        opt.base % ALIGN != 0 || opt.maxlen % ALIGN != 0 || opt.maxop % ALIGN != 0) {
        fprintf(stderr, "fsx: need one FILE; maxlen >= 8K, maxop >= 4K and base, all multiples "
                        "of 4K\n");
        return 2;
    }
    opt.path = argv[optind];
    rng_state = opt.seed;
    printf("fsx: seed %" PRIu64 ", %ld ops, maxlen %" PRIu64 ", maxop %" PRIu64 ", base %" PRIu64
           "%s%s%s, reopen every %ld, file %s\n",
           opt.seed, opt.ops, opt.maxlen, opt.maxop, opt.base, opt.direct ? ", O_DIRECT" : "",
           opt.no_falloc ? ", no fallocate" : "", opt.no_mmap ? ", no mmap" : "", opt.reopen_every,
           opt.path);
    fflush(stdout);
    model = calloc(1, opt.maxlen);
    void *buf = NULL;
    if (!model || posix_memalign(&buf, ALIGN, opt.maxop + 2 * ALIGN) != 0) {
        fprintf(stderr, "fsx: out of memory\n");
        return 2;
    }
    iobuf = buf;
    unlink(opt.path);
    do_open(opt.direct);
    if (ftruncate(fd, (off_t)opt.base) < 0)
        fail("initial ftruncate to base %" PRIu64 ": %s", opt.base, strerror(errno));
    int reopen_direct = opt.direct;
    for (cur_op = 1; cur_op <= opt.ops; cur_op++) {
        uint64_t r = rng_below(100);
        enum op_kind kind = r < 30   ? OP_READ
                            : r < 62 ? OP_WRITE
                            : r < 68 ? OP_TRUNCATE
                            : r < 72 ? OP_FALLOC
                            : r < 75 ? OP_FALLOC_KEEP
                            : r < 84 ? OP_PUNCH
                            : r < 94 ? OP_MAPREAD
                            : r < 99 ? OP_MAPWRITE
                                     : OP_TRUNC_OPEN;
        if (opt.no_falloc && (kind == OP_FALLOC || kind == OP_FALLOC_KEEP || kind == OP_PUNCH))
            kind = OP_WRITE;
        if (opt.no_mmap && (kind == OP_MAPREAD || kind == OP_MAPWRITE))
            kind = OP_READ;
        if (opt.no_trunc_open && kind == OP_TRUNC_OPEN)
            kind = OP_TRUNCATE;
        switch (kind) {
        case OP_READ:
            op_read();
            break;
        case OP_WRITE:
            op_write();
            break;
        case OP_TRUNCATE:
            op_truncate();
            break;
        case OP_FALLOC:
        case OP_FALLOC_KEEP:
        case OP_PUNCH:
            op_fallocate(kind);
            break;
        case OP_MAPREAD:
            op_mapread();
            break;
        case OP_MAPWRITE:
            op_mapwrite();
            break;
        case OP_TRUNC_OPEN:
            op_trunc_open();
            break;
        case OP_KINDS:
            break;
        }
        if (opt.reopen_every > 0 && cur_op % opt.reopen_every == 0) {
            if (close(fd) < 0)
                fail("close: %s", strerror(errno));
            if (opt.direct)
                reopen_direct = !reopen_direct;
            do_open(reopen_direct);
            verify_all("reopen");
        }
    }
    cur_op = opt.ops;
    if (fsync(fd) < 0)
        fail("fsync: %s", strerror(errno));
    verify_all("final check");
    close(fd);
    do_open(0);
    verify_all("final check after reopen");
    close(fd);
    printf("fsx: %ld ops passed (read %ld write %ld truncate %ld falloc %ld falloc_keep %ld punch "
           "%ld mapread %ld mapwrite %ld trunc_open %ld), file size %" PRIu64 "\n",
           opt.ops, op_counts[OP_READ], op_counts[OP_WRITE], op_counts[OP_TRUNCATE],
           op_counts[OP_FALLOC], op_counts[OP_FALLOC_KEEP], op_counts[OP_PUNCH],
           op_counts[OP_MAPREAD], op_counts[OP_MAPWRITE], op_counts[OP_TRUNC_OPEN],
           opt.base + model_size);
    free(model);
    free(buf);
    return 0;
}
