/* test_wal.c - the record log: round trips, torn tails, corruption, bounds and I/O errors.
 *
 * Most tests run the reader both over memory and over an in-memory env_file (tu_memfile,
 * mem_file.h), which records how the reader reads so tests can check it never loads more than it
 * must.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "db/wal.h"
#include "fault_env.h"
#include "mem_file.h"
#include "testutil.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/env.h"

/* ---- Building logs ------------------------------------------------------------------------ */

#define MAX_RECS 64

typedef struct log_image {
    char *data;
    size_t len;
    size_t nrec;
    size_t off[MAX_RECS + 1]; /* off[i]: start of record i; off[nrec] == len */
    char *payload[MAX_RECS];
    size_t plen[MAX_RECS];
} log_image;

/* A writer over *mf, a file in the cap bytes of data (owned by the writer), whose size counts
 * from offset. */
static wal_writer *writer_over(char *data, size_t cap, uint64_t offset, tu_memfile **mf)
{
    *mf = tu_memfile_over(data, 0, cap);
    wal_writer *w;
    ck_assert_int_eq(wal_writer_new(&(*mf)->base, offset, &w), 0);
    return w;
}

/* Payload bytes that depend on the record index and position, so misplaced bytes show. */
static void fill_payload(char *p, size_t n, size_t rec)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(rec * 131 + i * 7 + (i >> 8));
}

/* Writes records of the given sizes through wal_writer into a memory image. */
static void build_log(log_image *img, const size_t *sizes, size_t n)
{
    ck_assert_uint_le(n, MAX_RECS);
    size_t cap = 0;
    for (size_t i = 0; i < n; i++)
        cap += WAL_HEADER_SIZE + sizes[i];
    memset(img, 0, sizeof(*img));
    img->data = malloc(cap ? cap : 1);
    ck_assert_ptr_nonnull(img->data);
    int closed = 0;
    tu_memfile *mf;
    wal_writer *w = writer_over(img->data, cap, 0, &mf);
    mf->closed = &closed;
    for (size_t i = 0; i < n; i++) {
        img->payload[i] = malloc(sizes[i] ? sizes[i] : 1);
        ck_assert_ptr_nonnull(img->payload[i]);
        fill_payload(img->payload[i], sizes[i], i);
        img->plen[i] = sizes[i];
        img->off[i] = mf->data->len;
        ck_assert_int_eq(wal_add_record(w, slice_make(img->payload[i], sizes[i])), 0);
        ck_assert_uint_eq(wal_writer_size(w), mf->data->len);
    }
    ck_assert_int_eq(wal_writer_sync(w), 0);
    img->nrec = n;
    img->len = mf->data->len;
    img->off[n] = mf->data->len;
    ck_assert_uint_eq(img->len, cap);
    ck_assert_int_eq(wal_writer_close(w), 0);
    ck_assert(closed);
}

static void free_log(log_image *img)
{
    for (size_t i = 0; i < img->nrec; i++)
        free(img->payload[i]);
    free(img->data);
}

enum mode { MODE_MEM, MODE_FILE };

typedef struct read_result {
    size_t nread;        /* records returned */
    int bad;             /* a returned record differed from the expected one */
    int rc;              /* the final wal_read_record result (0 or an error) */
    uint64_t good;       /* wal_reader_good_offset */
    uint64_t dropped;    /* wal_reader_dropped_bytes */
    const char *reason;  /* wal_reader_drop_reason */
    size_t max_read_req; /* file mode: the largest pread request */
} read_result;

/* A reader over the first len bytes of data, from memory or through *mf (NULL in memory
 * mode; owned by the reader). The reader never writes to data. */
static wal_reader *reader_over(const char *data, size_t len, enum mode mode, tu_memfile **mf)
{
    wal_reader *r;
    *mf = NULL;
    if (mode == MODE_MEM) {
        ck_assert_int_eq(wal_reader_new_mem(slice_make(data, len), &r), 0);
    } else {
        *mf = tu_memfile_over((char *)data, len, len);
        ck_assert_int_eq(wal_reader_new(&(*mf)->base, &r), 0);
    }
    return r;
}

/* Reads the first len bytes of `data` as a log and compares each record with img's. */
static read_result read_log(const char *data, size_t len, const log_image *img, enum mode mode)
{
    read_result res = {0};
    tu_memfile *mf;
    int closed = 0;
    wal_reader *r = reader_over(data, len, mode, &mf);
    if (mf)
        mf->closed = &closed;
    slice rec;
    int rc;
    while ((rc = wal_read_record(r, &rec)) == 1) {
        size_t i = res.nread++;
        if (i >= img->nrec || !slice_equal(rec, slice_make(img->payload[i], img->plen[i])))
            res.bad = 1;
        if (wal_reader_good_offset(r) != (i < img->nrec ? img->off[i + 1] : 0))
            res.bad = 1;
    }
    res.rc = rc;
    /* The end is sticky. */
    if (rc == 0) {
        ck_assert_int_eq(wal_read_record(r, &rec), 0);
    }
    res.good = wal_reader_good_offset(r);
    res.dropped = wal_reader_dropped_bytes(r);
    res.reason = wal_reader_drop_reason(r);
    if (mode == MODE_FILE)
        res.max_read_req = mf->max_read_req;
    wal_reader_free(r);
    if (mode == MODE_FILE)
        ck_assert(closed);
    return res;
}

static const char *mode_name(enum mode m)
{
    return m == MODE_MEM ? "mem" : "file";
}

/* ---- Tests -------------------------------------------------------------------------------- */

START_TEST(test_wal_round_trip_of_many_records)
{
    size_t sizes[40];
    size_t n = 0;
    sizes[n++] = 0;
    sizes[n++] = 1;
    sizes[n++] = 1024 * 1024; /* bigger than a read chunk */
    sizes[n++] = 0;
    sizes[n++] = 12;
    sizes[n++] = 13;
    sizes[n++] = 32 * 1024; /* the writer's gather limit */
    sizes[n++] = 32 * 1024 + 1;
    sizes[n++] = 256 * 1024 - WAL_HEADER_SIZE; /* exactly one read chunk */
    sizes[n++] = 256 * 1024;
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_wal_round_trip_of_many_records"));
    while (n < 40)
        sizes[n++] = tu_rng_below(&rng, 5000);
    log_image img;
    build_log(&img, sizes, n);
    for (enum mode m = MODE_MEM; m <= MODE_FILE; m++) {
        read_result res = read_log(img.data, img.len, &img, m);
        ck_assert_msg(res.nread == n && !res.bad, "%s: read %zu records, bad=%d", mode_name(m),
                      res.nread, res.bad);
        ck_assert_int_eq(res.rc, 0);
        ck_assert_uint_eq(res.good, img.len);
        ck_assert_uint_eq(res.dropped, 0);
        ck_assert_ptr_null(res.reason);
        if (m == MODE_FILE) /* chunked reads: never more than a chunk or the largest record */
            ck_assert_uint_le(res.max_read_req, WAL_HEADER_SIZE + 1024 * 1024);
    }
    free_log(&img);
}
END_TEST

START_TEST(test_wal_empty_log_is_a_clean_end)
{
    log_image img;
    build_log(&img, NULL, 0);
    for (enum mode m = MODE_MEM; m <= MODE_FILE; m++) {
        read_result res = read_log(img.data, 0, &img, m);
        ck_assert_uint_eq(res.nread, 0);
        ck_assert_int_eq(res.rc, 0);
        ck_assert_uint_eq(res.dropped, 0);
        ck_assert_ptr_null(res.reason);
    }
    free_log(&img);
}
END_TEST

/* Cuts the log at every byte of its last record: the last record is dropped with the right
 * reason and byte count, every earlier one survives. */
static void check_torn_tail(const size_t *sizes, size_t n, size_t stride)
{
    log_image img;
    build_log(&img, sizes, n);
    size_t start = img.off[n - 1];
    for (enum mode m = MODE_MEM; m <= MODE_FILE; m++) {
        for (size_t cut = start; cut < img.len; cut += (cut - start < 64 ? 1 : stride)) {
            read_result res = read_log(img.data, cut, &img, m);
            ck_assert_msg(res.nread == n - 1 && !res.bad && res.rc == 0,
                          "%s cut at %zu: %zu records, bad=%d rc=%d", mode_name(m), cut, res.nread,
                          res.bad, res.rc);
            ck_assert_uint_eq(res.good, start);
            ck_assert_uint_eq(res.dropped, cut - start);
            if (cut == start)
                ck_assert_ptr_null(res.reason);
            else if (cut - start < WAL_HEADER_SIZE)
                ck_assert_str_eq(res.reason, "truncated header");
            else
                ck_assert_str_eq(res.reason, "truncated payload");
        }
    }
    free_log(&img);
}

START_TEST(test_wal_torn_tail_is_dropped_at_every_byte)
{
    size_t sizes[] = {100, 0, 5000, 70000, 1, 3000};
    check_torn_tail(sizes, sizeof(sizes) / sizeof(sizes[0]), 1);
}
END_TEST

START_TEST(test_wal_torn_tail_of_a_record_larger_than_a_chunk_is_dropped)
{
    /* Cuts inside a 1 MiB last record, every 4099 bytes (plus each of the first 64). */
    size_t sizes[] = {300000, 10, 1024 * 1024};
    check_torn_tail(sizes, sizeof(sizes) / sizeof(sizes[0]), 4099);
}
END_TEST

START_TEST(test_wal_bit_flip_stops_replay_at_that_record)
{
    size_t sizes[] = {50, 0, 400000, 7, 20000, 90};
    size_t n = sizeof(sizes) / sizeof(sizes[0]);
    log_image img;
    build_log(&img, sizes, n);
    char *copy = malloc(img.len);
    ck_assert_ptr_nonnull(copy);
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_wal_bit_flip_stops_replay_at_that_record"));
    for (size_t k = 0; k < n; k++) {
        size_t rec_len = img.off[k + 1] - img.off[k];
        for (int trial = 0; trial < 24; trial++) {
            /* The first trials hit each header byte, the rest random bytes of the record. */
            size_t at = trial < WAL_HEADER_SIZE ? (size_t)trial : tu_rng_below(&rng, rec_len);
            if (at >= rec_len)
                continue;
            int bit = (int)tu_rng_below(&rng, 8);
            memcpy(copy, img.data, img.len);
            copy[img.off[k] + at] ^= (char)(1 << bit);
            for (enum mode m = MODE_MEM; m <= MODE_FILE; m++) {
                read_result res = read_log(copy, img.len, &img, m);
                ck_assert_msg(res.nread == k && !res.bad && res.rc == 0,
                              "%s: flip rec %zu byte %zu bit %d: %zu records bad=%d rc=%d",
                              mode_name(m), k, at, bit, res.nread, res.bad, res.rc);
                ck_assert_uint_eq(res.good, img.off[k]);
                ck_assert_uint_eq(res.dropped, img.len - img.off[k]);
                ck_assert_ptr_nonnull(res.reason);
                /* A flipped length can make the record run past the end of the file. */
                if (at < 8 || at >= WAL_HEADER_SIZE)
                    ck_assert_str_eq(res.reason, "checksum mismatch");
                else if (strcmp(res.reason, "checksum mismatch") != 0)
                    ck_assert_str_eq(res.reason, "truncated payload");
            }
        }
    }
    free(copy);
    free_log(&img);
}
END_TEST

/* Builds a record of the given type whose checksum is right. */
static size_t make_record(char *out, int type, const char *payload, uint32_t len)
{
    coding_put_fixed32(out + 8, len);
    out[12] = (char)type;
    memcpy(out + WAL_HEADER_SIZE, payload, len);
    coding_put_fixed64(out, checksum_value(out + 8, 5 + (size_t)len));
    return WAL_HEADER_SIZE + len;
}

START_TEST(test_wal_unknown_record_type_is_dropped_as_bad_type)
{
    char data[3 * (WAL_HEADER_SIZE + 5)];
    size_t len = make_record(data, WAL_TYPE_FULL, "first", 5);
    size_t bad_at = len;
    len += make_record(data + len, 3, "other", 5); /* 1 and 2 (sync marker) are taken */
    len += make_record(data + len, WAL_TYPE_FULL, "third", 5);
    for (enum mode m = MODE_MEM; m <= MODE_FILE; m++) {
        tu_memfile *mf;
        wal_reader *r = reader_over(data, len, m, &mf);
        slice rec;
        ck_assert_int_eq(wal_read_record(r, &rec), 1);
        ck_assert(slice_equal(rec, slice_from_str("first")));
        ck_assert_int_eq(wal_read_record(r, &rec), 0);
        ck_assert_uint_eq(wal_reader_good_offset(r), bad_at);
        ck_assert_uint_eq(wal_reader_dropped_bytes(r), len - bad_at);
        ck_assert_str_eq(wal_reader_drop_reason(r), "bad record type");
        wal_reader_free(r);
    }
}
END_TEST

START_TEST(test_wal_huge_length_is_not_trusted)
{
    /* One good record, then a header claiming ~4 GiB: the reader must report a truncated
     * payload without asking for (or allocating) the claimed size. */
    char data[64];
    size_t len = make_record(data, WAL_TYPE_FULL, "ok", 2);
    size_t bad_at = len;
    memset(data + len, 0xab, 8);
    coding_put_fixed32(data + len + 8, 0xfffffff0u);
    data[len + 12] = WAL_TYPE_FULL;
    len += WAL_HEADER_SIZE + 10;
    for (enum mode m = MODE_MEM; m <= MODE_FILE; m++) {
        log_image img = {0};
        char p[] = "ok";
        img.nrec = 1;
        img.payload[0] = p;
        img.plen[0] = 2;
        img.off[1] = bad_at;
        read_result res = read_log(data, len, &img, m);
        ck_assert_uint_eq(res.nread, 1);
        ck_assert(!res.bad);
        ck_assert_int_eq(res.rc, 0);
        ck_assert_uint_eq(res.dropped, len - bad_at);
        ck_assert_str_eq(res.reason, "truncated payload");
        if (m == MODE_FILE)
            ck_assert_uint_le(res.max_read_req, 256 * 1024);
    }
}
END_TEST

START_TEST(test_wal_huge_length_in_a_long_file_is_probed_not_allocated)
{
    /* The bad header comes first and the file goes on well past one read chunk, so the
     * reader cannot tell from the chunk alone that the record is truncated: it must probe the
     * claimed last byte rather than buffer (and allocate) the claimed 4 GiB. */
    size_t len = 700000;
    char *data = calloc(1, len);
    ck_assert_ptr_nonnull(data);
    coding_put_fixed32(data + 8, 0xfffffff0u);
    data[12] = WAL_TYPE_FULL;
    tu_memfile *mf = tu_memfile_over(data, len, len);
    wal_reader *r;
    ck_assert_int_eq(wal_reader_new(&mf->base, &r), 0);
    slice rec;
    ck_assert_int_eq(wal_read_record(r, &rec), 0);
    ck_assert_uint_eq(wal_reader_good_offset(r), 0);
    ck_assert_uint_eq(wal_reader_dropped_bytes(r), len);
    ck_assert_str_eq(wal_reader_drop_reason(r), "truncated payload");
    ck_assert_uint_le(mf->max_read_req, 256 * 1024);
    ck_assert_uint_le(mf->bytes_read, 256 * 1024 + 100);
    wal_reader_free(r);
    free(data);
}
END_TEST

START_TEST(test_wal_dropped_bytes_count_an_unread_tail)
{
    /* Corrupt the first record of a 3 MiB log: the reader must count every byte after it,
     * and reads them only to judge them (damage: no page of zeros), in bounded pieces. */
    size_t sizes[8];
    for (int i = 0; i < 8; i++)
        sizes[i] = 400000 + (size_t)i;
    log_image img;
    build_log(&img, sizes, 8);
    img.data[WAL_HEADER_SIZE + 3] ^= 1;
    tu_memfile *mf = tu_memfile_over(img.data, img.len, img.len);
    wal_reader *r;
    ck_assert_int_eq(wal_reader_new(&mf->base, &r), 0);
    slice rec;
    ck_assert_int_eq(wal_read_record(r, &rec), 0);
    ck_assert_uint_eq(wal_reader_good_offset(r), 0);
    ck_assert_uint_eq(wal_reader_dropped_bytes(r), img.len);
    ck_assert_str_eq(wal_reader_drop_reason(r), "checksum mismatch");
    ck_assert_int_eq(wal_reader_tail(r), WAL_TAIL_DAMAGED);
    ck_assert_uint_le(mf->max_read_req, 256 * 1024);
    wal_reader_free(r);
    free_log(&img);
}
END_TEST

/* Maps len bytes so that the byte after the last one is an inaccessible page. */
static char *guarded_copy(const char *src, size_t len, void **map, size_t *map_len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;
    char *base =
        mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(base != MAP_FAILED);
    ck_assert_int_eq(mprotect(base + (pages - 1) * page, page, PROT_NONE), 0);
    char *dst = base + (pages - 1) * page - len;
    memcpy(dst, src, len);
    *map = base;
    *map_len = pages * page;
    return dst;
}

START_TEST(test_wal_memory_reader_never_reads_past_end)
{
    size_t sizes[] = {3, 17, 0, 200};
    size_t n = sizeof(sizes) / sizeof(sizes[0]);
    log_image img;
    build_log(&img, sizes, n);
    /* Every prefix, and every prefix with its last byte's bits flipped, sits against a guard
     * page: any read past its end faults and fails the test. */
    for (size_t cut = 0; cut <= img.len; cut++) {
        for (int flip = 0; flip < 2; flip++) {
            if (flip && cut == 0)
                continue;
            void *map;
            size_t map_len;
            char *d = guarded_copy(img.data, cut, &map, &map_len);
            if (flip)
                d[cut - 1] ^= (char)0xff;
            read_result res = read_log(d, cut, &img, MODE_MEM);
            ck_assert(!res.bad);
            ck_assert_uint_eq(res.good + res.dropped, cut);
            munmap(map, map_len);
        }
    }
    free_log(&img);
}
END_TEST

START_TEST(test_wal_failed_append_is_sticky)
{
    char data[4096];
    tu_memfile *mf;
    wal_writer *w = writer_over(data, sizeof(data), 0, &mf);
    mf->fail_appends_after = WAL_HEADER_SIZE + 3; /* the first record fits, the second not */
    ck_assert_int_eq(wal_add_record(w, slice_from_str("one")), 0);
    ck_assert_uint_eq(wal_writer_size(w), WAL_HEADER_SIZE + 3);
    ck_assert_int_eq(wal_add_record(w, slice_from_str("two")), KV_ENOSPC);
    mf->fail_appends_after = -1; /* even once the disk has room, the writer refuses */
    ck_assert_int_eq(wal_add_record(w, slice_from_str("three")), KV_ENOSPC);
    ck_assert_int_eq(wal_writer_sync(w), KV_ENOSPC);
    ck_assert_uint_eq(wal_writer_size(w), WAL_HEADER_SIZE + 3);
    ck_assert_uint_eq(mf->data->len, WAL_HEADER_SIZE + 3);
    ck_assert_int_eq(wal_writer_close(w), 0);
}
END_TEST

START_TEST(test_wal_failed_payload_append_of_a_large_record_is_sticky)
{
    /* A large record is appended as header then payload; failing the payload leaves a torn
     * record, which the reader must drop. */
    size_t cap = 200000;
    char *data = malloc(cap);
    char *payload = calloc(1, 100000);
    tu_memfile *mf;
    wal_writer *w = writer_over(data, cap, 0, &mf);
    ck_assert_int_eq(wal_add_record(w, slice_from_str("a")), 0);
    /* Room for the next record's header, not its payload. */
    mf->fail_appends_after = (long)(mf->data->len + WAL_HEADER_SIZE);
    ck_assert_int_eq(wal_add_record(w, slice_make(payload, 100000)), KV_ENOSPC);
    ck_assert_int_eq(wal_add_record(w, slice_from_str("b")), KV_ENOSPC);
    ck_assert_uint_eq(wal_writer_size(w), WAL_HEADER_SIZE + 1);
    ck_assert_uint_eq(mf->data->len, 2 * WAL_HEADER_SIZE + 1);
    wal_reader *r;
    ck_assert_int_eq(wal_reader_new_mem(slice_make(data, mf->data->len), &r), 0);
    slice rec;
    ck_assert_int_eq(wal_read_record(r, &rec), 1);
    ck_assert_int_eq(wal_read_record(r, &rec), 0);
    ck_assert_uint_eq(wal_reader_dropped_bytes(r), WAL_HEADER_SIZE);
    ck_assert_str_eq(wal_reader_drop_reason(r), "truncated payload");
    wal_reader_free(r);
    ck_assert_int_eq(wal_writer_close(w), 0);
    free(payload);
    free(data);
}
END_TEST

START_TEST(test_wal_writer_size_starts_at_the_given_offset)
{
    char data[256];
    tu_memfile *mf;
    wal_writer *w = writer_over(data, sizeof(data), 1000, &mf);
    ck_assert_uint_eq(wal_writer_size(w), 1000);
    ck_assert_int_eq(wal_add_record(w, slice_from_str("xyz")), 0);
    ck_assert_uint_eq(wal_writer_size(w), 1000 + WAL_HEADER_SIZE + 3);
    ck_assert_int_eq(wal_writer_close(w), 0);
    ck_assert_int_eq(wal_writer_close(NULL), 0);
}
END_TEST

START_TEST(test_wal_read_error_is_returned_and_sticky)
{
    size_t sizes[] = {10};
    log_image img;
    build_log(&img, sizes, 1);
    tu_memfile *mf = tu_memfile_over(img.data, img.len, img.len);
    mf->fail_reads = 1;
    wal_reader *r;
    ck_assert_int_eq(wal_reader_new(&mf->base, &r), 0);
    slice rec;
    ck_assert_int_eq(wal_read_record(r, &rec), KV_EIO);
    mf->fail_reads = 0;
    ck_assert_int_eq(wal_read_record(r, &rec), KV_EIO);
    ck_assert_uint_eq(wal_reader_dropped_bytes(r), 0);
    ck_assert_ptr_null(wal_reader_drop_reason(r));
    wal_reader_free(r);
    free_log(&img);
}
END_TEST

START_TEST(test_wal_posix_file_round_trip)
{
    char *dir = tu_tempdir("wal");
    ck_assert_ptr_nonnull(dir);
    char path[4096];
    snprintf(path, sizeof(path), "%s/000001.log", dir);
    const kv_env *env = env_posix();
    env_file *f;
    ck_assert_int_eq(env->open_writable(env, path, &f), 0);
    wal_writer *w;
    ck_assert_int_eq(wal_writer_new(f, 0, &w), 0);
    size_t sizes[] = {0, 10, 600000, 33000, 5};
    char *p[5];
    for (int i = 0; i < 5; i++) {
        p[i] = malloc(sizes[i] + 1);
        fill_payload(p[i], sizes[i], (size_t)i);
        ck_assert_int_eq(wal_add_record(w, slice_make(p[i], sizes[i])), 0);
        if (i == 2)
            ck_assert_int_eq(wal_writer_sync(w), 0);
    }
    uint64_t size = wal_writer_size(w);
    ck_assert_int_eq(wal_writer_sync(w), 0);
    ck_assert_int_eq(wal_writer_close(w), 0);
    uint64_t fsize;
    ck_assert_int_eq(env->file_size(env, path, &fsize), 0);
    ck_assert_uint_eq(fsize, size);

    /* Reopen for appending and add one more record after the existing ones. */
    ck_assert_int_eq(env->open_appendable(env, path, &f), 0);
    ck_assert_int_eq(wal_writer_new(f, fsize, &w), 0);
    ck_assert_int_eq(wal_add_record(w, slice_from_str("appended")), 0);
    size = wal_writer_size(w);
    ck_assert_int_eq(wal_writer_close(w), 0);

    ck_assert_int_eq(env->open_readable(env, path, &f), 0);
    wal_reader *r;
    ck_assert_int_eq(wal_reader_new(f, &r), 0);
    slice rec;
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(wal_read_record(r, &rec), 1);
        ck_assert(slice_equal(rec, slice_make(p[i], sizes[i])));
    }
    ck_assert_int_eq(wal_read_record(r, &rec), 1);
    ck_assert(slice_equal(rec, slice_from_str("appended")));
    ck_assert_int_eq(wal_read_record(r, &rec), 0);
    ck_assert_uint_eq(wal_reader_good_offset(r), size);
    ck_assert_uint_eq(wal_reader_dropped_bytes(r), 0);
    wal_reader_free(r);
    for (int i = 0; i < 5; i++)
        free(p[i]);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_wal_record_over_4gib_is_refused_without_writing)
{
    char data[64];
    tu_memfile *mf;
    wal_writer *w = writer_over(data, sizeof(data), 0, &mf);
    /* The size alone is checked; the pointer is never read. */
    ck_assert_int_eq(wal_add_record(w, slice_make(data, (size_t)UINT32_MAX + 1)), KV_EINVAL);
    ck_assert_uint_eq(mf->data->len, 0);
    ck_assert_int_eq(wal_add_record(w, slice_from_str("fine")), 0);
    ck_assert_int_eq(wal_writer_close(w), 0);
}
END_TEST

START_TEST(test_wal_power_loss_keeps_every_synced_record_and_a_prefix_of_the_rest)
{
    /* Writes random records with sync markers through the fault env, syncing now and then,
     * cuts power (the unsynced tail dropped, torn at a random byte, or cut to a random subset
     * of its pages), and reads back: every synced record must come back, followed by a prefix
     * of the unsynced ones, and nothing else; the lost tail is never taken for damage. Then a
     * flipped byte before the proven synced offset must be. */
    uint64_t seed =
        tu_seed("test_wal_power_loss_keeps_every_synced_record_and_a_prefix_of_the_rest");
    tu_rng rng;
    tu_rng_init(&rng, seed);
    char *dir = tu_tempdir("wal-crash");
    ck_assert_ptr_nonnull(dir);
    char path[4096];
    snprintf(path, sizeof(path), "%s/000007.log", dir);
    enum { NREC = 40 };
    char *p[NREC];
    size_t plen[NREC];
    for (int round = 0; round < 40; round++) {
        fault_env *fe = fault_env_new(seed + (uint64_t)round);
        ck_assert_ptr_nonnull(fe);
        const kv_env *env = fault_env_env(fe);
        env_file *f;
        ck_assert_int_eq(env->open_writable(env, path, &f), 0);
        ck_assert_int_eq(env->sync_dir(env, dir), 0);
        wal_writer *w;
        ck_assert_int_eq(wal_writer_new(f, 0, &w), 0);
        ck_assert_int_eq(wal_writer_enable_sync_markers(w, seed * 31 + (uint64_t)round), 0);
        int synced = 0;
        for (int i = 0; i < NREC; i++) {
            plen[i] = tu_rng_chance(&rng, 1, 10) ? 40000 + tu_rng_below(&rng, 100000)
                                                 : tu_rng_below(&rng, 300);
            p[i] = malloc(plen[i] + 1);
            tu_rng_fill(&rng, p[i], plen[i]);
            ck_assert_int_eq(wal_add_record(w, slice_make(p[i], plen[i])), 0);
            if (tu_rng_chance(&rng, 1, 8)) {
                ck_assert_int_eq(wal_writer_sync(w), 0);
                synced = i + 1;
            }
        }
        ck_assert_int_eq(fault_env_crash(fe, (enum fault_crash_mode)(round % 4)), 0);
        wal_writer_close(w); /* the handle is dead after the crash; close only frees it */

        ck_assert_int_eq(env->open_readable(env, path, &f), 0);
        wal_reader *r;
        ck_assert_int_eq(wal_reader_new(f, &r), 0);
        slice rec;
        int n = 0, rc;
        while ((rc = wal_read_record(r, &rec)) == 1) {
            ck_assert_int_lt(n, NREC);
            ck_assert_msg(slice_equal(rec, slice_make(p[n], plen[n])),
                          "round %d: record %d differs (seed %llu)", round, n,
                          (unsigned long long)seed);
            n++;
        }
        ck_assert_int_eq(rc, 0);
        ck_assert_msg(n >= synced, "round %d: %d records back, %d were synced", round, n, synced);
        uint64_t size;
        ck_assert_int_eq(env->file_size(env, path, &size), 0);
        ck_assert_uint_eq(wal_reader_good_offset(r) + wal_reader_dropped_bytes(r), size);
        ck_assert_msg(wal_reader_tail(r) != WAL_TAIL_DAMAGED,
                      "round %d: a power cut was taken "
                      "for damage (seed %llu)",
                      round, (unsigned long long)seed);
        uint64_t proven = wal_reader_synced_offset(r);
        wal_reader_free(r);
        if (proven > WAL_SYNC_RECORD_SIZE) {
            ck_assert_int_eq(fault_env_flip_bit(fe, path, WAL_SYNC_RECORD_SIZE + 4, 3), 0);
            ck_assert_int_eq(env->open_readable(env, path, &f), 0);
            ck_assert_int_eq(wal_reader_new(f, &r), 0);
            while ((rc = wal_read_record(r, &rec)) == 1)
                ;
            ck_assert_int_eq(rc, 0);
            ck_assert_int_eq(wal_reader_tail(r), WAL_TAIL_DAMAGED);
            wal_reader_free(r);
        }
        for (int i = 0; i < NREC; i++)
            free(p[i]);
        ck_assert_int_eq(env->unlink(env, path), 0);
        fault_env_free(fe);
    }
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- Sync markers ---------------------------------------------------------------------------- */

/* A writer with markers over *mf, a file in the `cap` bytes of lg (owned by the writer). */
static wal_writer *marker_writer(tu_memfile **mf, char *lg, size_t cap, uint64_t nonce)
{
    wal_writer *w = writer_over(lg, cap, 0, mf);
    ck_assert_int_eq(wal_writer_enable_sync_markers(w, nonce), 0);
    return w;
}

/* Reads a whole log; returns the number of full records and leaves the reader's verdict. */
static size_t read_verdict(const char *data, size_t len, enum mode mode, enum wal_tail *tail,
                           uint64_t *synced)
{
    tu_memfile *mf;
    wal_reader *r = reader_over(data, len, mode, &mf);
    slice rec;
    size_t n = 0;
    int rc;
    while ((rc = wal_read_record(r, &rec)) == 1) {
        ck_assert(rec.size != WAL_SYNC_PAYLOAD_SIZE); /* markers are never returned */
        n++;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(wal_reader_good_offset(r) + wal_reader_dropped_bytes(r), len);
    *tail = wal_reader_tail(r);
    *synced = wal_reader_synced_offset(r);
    wal_reader_free(r);
    return n;
}

/* wal_reader_tail_proven() after reading data to its end. */
static int wal_tail_proven_for_test(const char *data, size_t len, enum mode mode)
{
    tu_memfile *mf;
    wal_reader *r = reader_over(data, len, mode, &mf);
    slice rec;
    while (wal_read_record(r, &rec) == 1)
        ;
    int proven = wal_reader_tail_proven(r);
    wal_reader_free(r);
    return proven;
}

START_TEST(test_wal_sync_marker_rides_in_the_append_after_a_sync)
{
    static char lg[4096];
    tu_memfile *mf;
    wal_writer *w = marker_writer(&mf, lg, sizeof lg, 0x1234);
    ck_assert_int_eq(wal_add_record(w, slice_from_str("first")), 0);
    ck_assert_int_eq(mf->appends, 1); /* the header marker came with the record */
    ck_assert_uint_eq(mf->data->len, WAL_SYNC_RECORD_SIZE + WAL_HEADER_SIZE + 5);
    ck_assert_int_eq((unsigned char)lg[12], WAL_TYPE_SYNC);
    ck_assert_int_eq(wal_writer_sync(w), 0);
    uint64_t durable = mf->data->len;
    ck_assert_int_eq(wal_add_record(w, slice_from_str("second")), 0);
    ck_assert_int_eq(mf->appends, 2); /* still one append per record */
    ck_assert_uint_eq(mf->data->len, durable + WAL_SYNC_RECORD_SIZE + WAL_HEADER_SIZE + 6);
    ck_assert_uint_eq(coding_get_fixed64(lg + durable + WAL_HEADER_SIZE + 8), durable);
    ck_assert_int_eq(wal_add_record(w, slice_from_str("third")), 0);
    ck_assert_uint_eq(mf->data->len, durable + WAL_SYNC_RECORD_SIZE + 2 * WAL_HEADER_SIZE + 11);
    ck_assert_uint_eq(wal_writer_size(w), mf->data->len);
    size_t len = mf->data->len;
    ck_assert_int_eq(wal_writer_close(w), 0);
    for (enum mode m = MODE_MEM; m <= MODE_FILE; m++) {
        enum wal_tail tail;
        uint64_t synced;
        ck_assert_uint_eq(read_verdict(lg, len, m, &tail, &synced), 3);
        ck_assert_int_eq(tail, WAL_TAIL_CLEAN);
        ck_assert_uint_eq(synced, durable);
    }
}
END_TEST

START_TEST(test_wal_lone_sync_marker_is_written_only_when_a_sync_is_unrecorded)
{
    static char lg[4096];
    tu_memfile *mf;
    wal_writer *w = marker_writer(&mf, lg, sizeof lg, 7);
    ck_assert_int_eq(wal_add_sync_marker(w), 0); /* nothing synced: nothing to record */
    ck_assert_uint_eq(mf->data->len, 0);
    ck_assert_int_eq(wal_add_record(w, slice_from_str("a")), 0);
    ck_assert_int_eq(wal_add_sync_marker(w), 0);
    ck_assert_int_eq(wal_writer_sync(w), 0);
    uint64_t durable = mf->data->len;
    ck_assert_int_eq(wal_add_sync_marker(w), 1);
    ck_assert_uint_eq(mf->data->len, durable + WAL_SYNC_RECORD_SIZE);
    ck_assert_int_eq(wal_add_sync_marker(w), 0); /* already recorded */
    ck_assert_int_eq(wal_add_record(w, slice_from_str("b")), 0);
    ck_assert_uint_eq(mf->data->len, durable + WAL_SYNC_RECORD_SIZE + WAL_HEADER_SIZE + 1);
    ck_assert_int_eq(wal_writer_close(w), 0);
    /* A writer without markers (the manifest) never writes one. */
    w = writer_over(lg, sizeof lg, 0, &mf);
    ck_assert_int_eq(wal_add_record(w, slice_from_str("m")), 0);
    ck_assert_int_eq(wal_writer_sync(w), 0);
    ck_assert_int_eq(wal_add_sync_marker(w), 0);
    ck_assert_uint_eq(mf->data->len, WAL_HEADER_SIZE + 1);
    /* Markers can only be turned on for an empty log. */
    ck_assert_int_eq(wal_writer_enable_sync_markers(w, 1), KV_EINVAL);
    ck_assert_int_eq(wal_writer_close(w), 0);
}
END_TEST

/* Builds a marker log of 3 groups of 4 records, synced after the first two, then a lone
 * marker if `final_marker`. Sets group_end[g] (the end of group g) and returns the size. */
static size_t build_marker_log(char *lg, size_t cap, uint64_t nonce, int final_marker,
                               size_t group_end[3])
{
    tu_memfile *mf;
    wal_writer *w = marker_writer(&mf, lg, cap, nonce);
    char payload[300];
    for (int g = 0; g < 3; g++) {
        for (int i = 0; i < 4; i++) {
            fill_payload(payload, sizeof payload, (size_t)(g * 4 + i));
            ck_assert_int_eq(wal_add_record(w, slice_make(payload, sizeof payload)), 0);
        }
        group_end[g] = mf->data->len;
        if (g < 2 || final_marker)
            ck_assert_int_eq(wal_writer_sync(w), 0);
    }
    if (final_marker)
        ck_assert_int_eq(wal_add_sync_marker(w), 1);
    size_t len = mf->data->len;
    ck_assert_int_eq(wal_writer_close(w), 0);
    return len;
}

START_TEST(test_wal_damage_before_a_synced_offset_is_damage_not_a_torn_tail)
{
    static char lg[8192], copy[8192];
    size_t ends[3];
    size_t len = build_marker_log(lg, sizeof lg, 0xabcdef, 0, ends);
    /* Every byte of the first group after the log's header marker, flipped: a marker after
     * it proves it was synced. */
    for (size_t at = WAL_SYNC_RECORD_SIZE; at < ends[0]; at += 37) {
        for (enum mode m = MODE_MEM; m <= MODE_FILE; m++) {
            memcpy(copy, lg, len);
            copy[at] ^= 0x10;
            enum wal_tail tail;
            uint64_t synced;
            read_verdict(copy, len, m, &tail, &synced);
            ck_assert_msg(tail == WAL_TAIL_DAMAGED, "flip at %zu (%s): tail %d", at, mode_name(m),
                          tail);
            ck_assert(wal_tail_proven_for_test(copy, len, m));
            ck_assert_uint_eq(synced, ends[1]);
        }
    }
    /* A zeroed range in synced bytes (a lost page) is damage too. */
    memcpy(copy, lg, len);
    memset(copy + 100, 0, 600);
    enum wal_tail tail;
    uint64_t synced;
    read_verdict(copy, len, MODE_FILE, &tail, &synced);
    ck_assert_int_eq(tail, WAL_TAIL_DAMAGED);
    /* Damage to the header marker itself leaves no nonce to trust markers by: the zero-page
     * heuristic judges (no page of zeros after it: damage). */
    memcpy(copy, lg, len);
    copy[20] ^= 1;
    read_verdict(copy, len, MODE_MEM, &tail, &synced);
    ck_assert_int_eq(tail, WAL_TAIL_DAMAGED);
}
END_TEST

START_TEST(test_wal_bad_bytes_after_the_last_sync_are_an_unsynced_tail)
{
    static char lg[8192], copy[8192];
    size_t ends[3];
    size_t len = build_marker_log(lg, sizeof lg, 99, 0, ends);
    for (enum mode m = MODE_MEM; m <= MODE_FILE; m++) {
        enum wal_tail tail;
        uint64_t synced;
        /* A flip in the last, unsynced group. */
        for (size_t at = ends[1]; at < len; at += 41) {
            memcpy(copy, lg, len);
            copy[at] ^= 1;
            read_verdict(copy, len, m, &tail, &synced);
            ck_assert_msg(tail == WAL_TAIL_UNSYNCED, "flip at %zu: tail %d", at, tail);
            /* The marker saying ends[1] leads the group; damaged, the one before counts. */
            ck_assert_uint_eq(synced, at < ends[1] + WAL_SYNC_RECORD_SIZE ? ends[0] : ends[1]);
        }
        /* A hole (never written page) followed by written bytes, and a cut at every byte. */
        memcpy(copy, lg, len);
        memset(copy + ends[1] + 50, 0, 500);
        read_verdict(copy, len, m, &tail, &synced);
        ck_assert_int_eq(tail, WAL_TAIL_UNSYNCED);
        for (size_t cut = ends[1] + 1; cut < len; cut += 7) {
            read_verdict(lg, cut, m, &tail, &synced);
            ck_assert(tail == WAL_TAIL_UNSYNCED || tail == WAL_TAIL_CLEAN); /* clean: a boundary */
        }
    }
    /* Damage in the middle group is proven by the marker leading the last group. But if the
     * log ended right after the second sync, no marker would record that sync: the last
     * synced group of a log without a final marker cannot be told from a torn tail
     * (FORMAT.md). */
    memcpy(copy, lg, len);
    copy[ends[0] + 200] ^= 4;
    enum wal_tail tail;
    uint64_t synced;
    read_verdict(copy, len, MODE_MEM, &tail, &synced);
    ck_assert_int_eq(tail, WAL_TAIL_DAMAGED);
    read_verdict(copy, ends[1], MODE_MEM, &tail, &synced);
    ck_assert_int_eq(tail, WAL_TAIL_UNSYNCED);
    /* A final marker (as kv_close and a WAL switch write) closes that gap. */
    len = build_marker_log(lg, sizeof lg, 99, 1, ends);
    memcpy(copy, lg, len);
    copy[ends[1] + 200] ^= 4;
    read_verdict(copy, len, MODE_FILE, &tail, &synced);
    ck_assert_int_eq(tail, WAL_TAIL_DAMAGED);
    ck_assert_uint_eq(synced, ends[2]);
}
END_TEST

START_TEST(test_wal_marker_of_another_log_proves_nothing)
{
    /* A payload that holds a perfect marker of a log with another nonce (a user's copy of
     * another store's WAL, say) must not turn a torn tail into damage. */
    static char foreign[512], lg[8192], copy[8192];
    char big[200];
    memset(big, 'f', sizeof big);
    tu_memfile *mf;
    wal_writer *fw = marker_writer(&mf, foreign, sizeof foreign, 1111);
    ck_assert_int_eq(wal_add_record(fw, slice_make(big, sizeof big)), 0);
    ck_assert_int_eq(wal_writer_sync(fw), 0);
    ck_assert_int_eq(wal_add_sync_marker(fw), 1);
    size_t flen = mf->data->len;
    ck_assert_int_eq(wal_writer_close(fw), 0);
    for (int same = 0; same <= 1; same++) {
        wal_writer *w = marker_writer(&mf, lg, sizeof lg, same ? 1111 : 2222);
        ck_assert_int_eq(wal_add_record(w, slice_from_str("synced")), 0);
        ck_assert_int_eq(wal_writer_sync(w), 0);
        size_t durable = mf->data->len;
        ck_assert_int_eq(wal_add_record(w, slice_from_str("unsynced")), 0);
        size_t torn_at = durable + WAL_SYNC_RECORD_SIZE; /* after the marker saying durable */
        /* The copied log in a payload: its last marker claims a synced offset past torn_at. */
        ck_assert_uint_gt(flen - WAL_SYNC_RECORD_SIZE, torn_at);
        ck_assert_int_eq(wal_add_record(w, slice_make(foreign, flen)), 0);
        size_t len = mf->data->len;
        ck_assert_int_eq(wal_writer_close(w), 0);
        memcpy(copy, lg, len);
        copy[torn_at + 15] ^= 8; /* the unsynced record is torn */
        enum wal_tail tail;
        uint64_t synced;
        read_verdict(copy, len, MODE_FILE, &tail, &synced);
        /* With the same nonce the copy's marker would count (this is why nonces are
         * random); with another it proves nothing. */
        ck_assert_int_eq(tail, same ? WAL_TAIL_DAMAGED : WAL_TAIL_UNSYNCED);
        if (!same)
            ck_assert_uint_eq(synced, durable);
    }
}
END_TEST

START_TEST(test_wal_log_without_markers_is_judged_by_zero_pages)
{
    /* The manifest and older WALs: a bad record with bytes after it is damage, unless a
     * page-aligned page of the dropped bytes is all zeros (a page a power cut never wrote),
     * or the record was cut short by the end of the file. */
    size_t sizes[8] = {10, 200, 30, 5000, 1, 50, 9000, 20};
    log_image img;
    build_log(&img, sizes, 8);
    char *copy = malloc(img.len);
    for (enum mode m = MODE_MEM; m <= MODE_FILE; m++) {
        enum wal_tail tail;
        uint64_t synced;
        ck_assert_uint_eq(read_verdict(img.data, img.len, m, &tail, &synced), 8);
        ck_assert_int_eq(tail, WAL_TAIL_CLEAN);
        memcpy(copy, img.data, img.len);
        copy[img.off[2] + 15] ^= 2;
        ck_assert_uint_eq(read_verdict(copy, img.len, m, &tail, &synced), 2);
        ck_assert_int_eq(tail, WAL_TAIL_DAMAGED);
        ck_assert_uint_eq(synced, 0);
        /* A never-written page after the bad record: a torn tail. */
        memset(copy + 8192, 0, 4096);
        read_verdict(copy, img.len, m, &tail, &synced);
        ck_assert_int_eq(tail, WAL_TAIL_UNSYNCED);
        ck_assert_int_eq(wal_tail_proven_for_test(copy, img.len, m), 0);
        /* Zeros that do not fill an aligned page prove nothing. */
        memcpy(copy, img.data, img.len);
        memset(copy + img.off[2], 0, 4000);
        read_verdict(copy, img.len, m, &tail, &synced);
        ck_assert_int_eq(tail, WAL_TAIL_DAMAGED);
        /* Zeros from the bad record to the end of its page and a next page that starts with
         * data: a power cut lost the first page of an append and kept the second. Torn. */
        memcpy(copy, img.data, img.len);
        ck_assert_uint_lt(img.off[2], 4096);
        memset(copy + img.off[2], 0, 4096 - img.off[2]);
        copy[4096] |= 1;
        read_verdict(copy, img.len, m, &tail, &synced);
        ck_assert_int_eq(tail, WAL_TAIL_UNSYNCED);
        /* All zeros to the end, or a cut: torn. */
        memcpy(copy, img.data, img.len);
        memset(copy + img.off[3], 0, img.len - img.off[3]);
        read_verdict(copy, img.len, m, &tail, &synced);
        ck_assert_int_eq(tail, WAL_TAIL_UNSYNCED);
        read_verdict(img.data, img.off[7] - 3, m, &tail, &synced);
        ck_assert_int_eq(tail, WAL_TAIL_UNSYNCED);
    }
    free(copy);
    free_log(&img);
}
END_TEST

/* ---- The zero-page rule (wal_tail_is_torn) ------------------------------------------------ */

/* wal_tail_is_torn() over [from, len) of bytes, through a tu_memfile: 1 torn, 0 damage. */
static int zero_page_verdict(char *bytes, size_t len, uint64_t from)
{
    tu_memfile *mf = tu_memfile_over(bytes, len, len);
    int torn = -1;
    ck_assert_int_eq(wal_file_tail_is_torn(&mf->base, from, len, &torn), 0);
    ck_assert_uint_le(mf->max_read_req, WAL_PAGE_SIZE); /* page by page */
    env_close(&mf->base);
    ck_assert(torn == 0 || torn == 1);
    return torn;
}

START_TEST(test_wal_zero_page_rule_tells_a_torn_tail_from_damage)
{
    enum { P = WAL_PAGE_SIZE };
    static char b[4 * P];
    memset(b, 'x', sizeof b);
    uint64_t from = 1000; /* the bad record, inside the first page */
    ck_assert_int_eq(zero_page_verdict(b, sizeof b, from), 0); /* data, no hole: damage */
    ck_assert_int_eq(zero_page_verdict(b, from, from), 1);     /* nothing dropped */
    /* All zeros to the end, from an unaligned start: torn. */
    memset(b + from, 0, sizeof b - from);
    ck_assert_int_eq(zero_page_verdict(b, sizeof b, from), 1);
    /* A never-written aligned page among data: torn, wherever it is. */
    for (int page = 1; page < 4; page++) {
        memset(b, 'x', sizeof b);
        memset(b + page * P, 0, P);
        ck_assert_int_eq(zero_page_verdict(b, sizeof b, from), 1);
        b[page * P + P / 2] = 1; /* one byte written: not a hole */
        ck_assert_int_eq(zero_page_verdict(b, sizeof b, from), 0);
    }
    /* The last page may be short: all zeros to the end of the file is a hole. */
    memset(b, 'x', sizeof b);
    memset(b + 3 * P, 0, 100);
    ck_assert_int_eq(zero_page_verdict(b, 3 * P + 100, from), 1);
    ck_assert_int_eq(zero_page_verdict(b, 3 * P + 101, from), 0);
    /* Zeros that do not fill an aligned page prove nothing. */
    memset(b, 'x', sizeof b);
    memset(b + P + 1, 0, P);
    ck_assert_int_eq(zero_page_verdict(b, sizeof b, from), 0);
    /* Zeros from the bad record to the end of its page, then a page that starts with data:
     * the first page of an append lost, the next kept. Torn. */
    memset(b, 'x', sizeof b);
    memset(b + from, 0, P - from);
    ck_assert_int_eq(zero_page_verdict(b, sizeof b, from), 1);
    /* ... but not if the next page starts with a zero byte, or the zeros stop short. */
    b[P] = 0;
    ck_assert_int_eq(zero_page_verdict(b, sizeof b, from), 0);
    b[P] = 'x';
    b[P - 1] = 'x';
    ck_assert_int_eq(zero_page_verdict(b, sizeof b, from), 0);
    /* Zeros at the end of a later page followed by data are not the bad record's page. */
    memset(b, 'x', sizeof b);
    memset(b + P + 10, 0, P - 10);
    ck_assert_int_eq(zero_page_verdict(b, sizeof b, from), 0);
    /* A file shorter than `end` is judged by what it holds. */
    memset(b, 'x', sizeof b);
    tu_memfile *mf = tu_memfile_over(b, 2 * P, 2 * P);
    int torn = -1;
    ck_assert_int_eq(wal_file_tail_is_torn(&mf->base, from, 4 * P, &torn), 0);
    ck_assert_int_eq(torn, 0);
    env_close(&mf->base);
}
END_TEST

/* A wal_read_fn that claims to have read one byte more than it was asked for. */
static int read_too_much(void *ctx, uint64_t off, char *dst, size_t n, size_t *got)
{
    (void)ctx;
    (void)off;
    memset(dst, 0, n);
    *got = n + 1;
    return 0;
}

START_TEST(test_wal_zero_page_rule_returns_read_errors)
{
    static char b[2 * WAL_PAGE_SIZE];
    tu_memfile *mf = tu_memfile_over(b, sizeof b, sizeof b);
    mf->fail_reads = 1;
    int torn = -1;
    ck_assert_int_eq(wal_file_tail_is_torn(&mf->base, 10, sizeof b, &torn), KV_EIO);
    ck_assert_int_eq(torn, 0);
    env_close(&mf->base);
    torn = -1;
    ck_assert_int_eq(wal_tail_is_torn(read_too_much, NULL, 10, sizeof b, &torn), KV_EIO);
    ck_assert_int_eq(torn, 0);
}
END_TEST

START_TEST(test_wal_forged_or_misplaced_marker_ends_the_log)
{
    /* A marker at offset 0 must say 0; a later one must carry the log's nonce and speak only
     * of bytes before itself. Each case ends the log there as "bad sync marker". */
    static char lg[1024];
    tu_memfile *mf;
    for (int c = 0; c < 3; c++) {
        wal_writer *w = marker_writer(&mf, lg, sizeof lg, 5);
        ck_assert_int_eq(wal_add_record(w, slice_from_str("one")), 0);
        ck_assert_int_eq(wal_writer_sync(w), 0);
        ck_assert_int_eq(wal_add_sync_marker(w), 1);
        size_t len = mf->data->len;
        ck_assert_int_eq(wal_writer_close(w), 0);
        size_t m = c == 0 ? 0 : len - WAL_SYNC_RECORD_SIZE; /* the marker to forge */
        char *pl = lg + m + WAL_HEADER_SIZE;
        if (c == 0)
            coding_put_fixed64(pl + 8, 1); /* header claims a synced byte */
        else if (c == 1)
            coding_put_fixed64(pl, 6); /* another nonce */
        else
            coding_put_fixed64(pl + 8, m + 1); /* claims bytes after itself */
        coding_put_fixed64(lg + m,
                           checksum_value(lg + m + 8, 5 + WAL_SYNC_PAYLOAD_SIZE)); /* valid */
        wal_reader *r;
        ck_assert_int_eq(wal_reader_new_mem(slice_make(lg, len), &r), 0);
        slice rec;
        while (wal_read_record(r, &rec) == 1)
            ;
        ck_assert_uint_eq(wal_reader_good_offset(r), m);
        ck_assert_str_eq(wal_reader_drop_reason(r), "bad sync marker");
        /* A bad header leaves no nonce: the zero-page rule calls it damage. A bad later
         * marker proves nothing about itself: an unsynced tail. */
        ck_assert_int_eq(wal_reader_tail(r), c == 0 ? WAL_TAIL_DAMAGED : WAL_TAIL_UNSYNCED);
        wal_reader_free(r);
    }
}
END_TEST

static Suite *wal_suite(void)
{
    Suite *s = suite_create("wal");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_wal_round_trip_of_many_records);
    tcase_add_test(tc, test_wal_empty_log_is_a_clean_end);
    tcase_add_test(tc, test_wal_torn_tail_is_dropped_at_every_byte);
    tcase_add_test(tc, test_wal_torn_tail_of_a_record_larger_than_a_chunk_is_dropped);
    tcase_add_test(tc, test_wal_bit_flip_stops_replay_at_that_record);
    tcase_add_test(tc, test_wal_unknown_record_type_is_dropped_as_bad_type);
    tcase_add_test(tc, test_wal_huge_length_is_not_trusted);
    tcase_add_test(tc, test_wal_huge_length_in_a_long_file_is_probed_not_allocated);
    tcase_add_test(tc, test_wal_dropped_bytes_count_an_unread_tail);
    tcase_add_test(tc, test_wal_memory_reader_never_reads_past_end);
    tcase_add_test(tc, test_wal_failed_append_is_sticky);
    tcase_add_test(tc, test_wal_failed_payload_append_of_a_large_record_is_sticky);
    tcase_add_test(tc, test_wal_writer_size_starts_at_the_given_offset);
    tcase_add_test(tc, test_wal_read_error_is_returned_and_sticky);
    tcase_add_test(tc, test_wal_posix_file_round_trip);
    tcase_add_test(tc, test_wal_record_over_4gib_is_refused_without_writing);
    tcase_add_test(tc, test_wal_power_loss_keeps_every_synced_record_and_a_prefix_of_the_rest);
    tcase_add_test(tc, test_wal_sync_marker_rides_in_the_append_after_a_sync);
    tcase_add_test(tc, test_wal_lone_sync_marker_is_written_only_when_a_sync_is_unrecorded);
    tcase_add_test(tc, test_wal_damage_before_a_synced_offset_is_damage_not_a_torn_tail);
    tcase_add_test(tc, test_wal_bad_bytes_after_the_last_sync_are_an_unsynced_tail);
    tcase_add_test(tc, test_wal_marker_of_another_log_proves_nothing);
    tcase_add_test(tc, test_wal_log_without_markers_is_judged_by_zero_pages);
    tcase_add_test(tc, test_wal_forged_or_misplaced_marker_ends_the_log);
    tcase_add_test(tc, test_wal_zero_page_rule_tells_a_torn_tail_from_damage);
    tcase_add_test(tc, test_wal_zero_page_rule_returns_read_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wal_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
