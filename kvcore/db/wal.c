/* wal.c - the record log (write-ahead log and manifest): writer, and readers over a file or
 * over memory that stop cleanly at a torn or corrupt tail.
 *
 * Reader invariants:
 *  1. Every byte before good_offset belongs to a record that was returned whole and passed
 *     its checksum and type checks.
 *  2. In file mode, buf holds the file bytes [buf_off, buf_off + buf_len) and pos <= buf_len;
 *     the next record starts at file offset buf_off + pos == good_offset.
 *  3. Nothing is allocated for a record's payload until the file is known to contain its last
 *     byte, so a corrupt length can cost at most one 1-byte read, never a huge allocation.
 *  4. Once state is not WAL_READING the reader returns the same result forever.
 */
#include "db/wal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "kvcore/kv.h"
#include "util/checksum.h"
#include "util/coding.h"

/* Records up to this size are gathered with their header into one append. */
#define WAL_GATHER_LIMIT ((size_t)32 * 1024)
/* File reads are made in chunks of this size. */
#define WAL_READ_CHUNK ((size_t)256 * 1024)

/* A record's total size (13 + a 32-bit length) must fit in size_t. */
_Static_assert(SIZE_MAX / 2 > (uint64_t)UINT32_MAX, "kvcore needs a 64-bit size_t");

#define WAL_CHECKSUM_OFFSET 0
#define WAL_LENGTH_OFFSET 8
#define WAL_TYPE_OFFSET 12

/* ---- Writer ------------------------------------------------------------------------------ */

struct wal_writer {
    env_file *f;
    uint64_t size; /* bytes in the file, including every record appended successfully */
    int error;     /* sticky: the first append failure */
    char *gather;  /* scratch buffer of WAL_HEADER_SIZE + WAL_GATHER_LIMIT bytes */
};

int wal_writer_new(env_file *f, uint64_t offset, wal_writer **out)
{
    *out = NULL;
    wal_writer *w = calloc(1, sizeof(*w));
    char *gather = malloc(WAL_HEADER_SIZE + WAL_GATHER_LIMIT);
    if (!w || !gather) {
        free(w);
        free(gather);
        env_close(f);
        return KV_ENOMEM;
    }
    w->f = f;
    w->size = offset;
    w->gather = gather;
    *out = w;
    return 0;
}

/* Fills the 13-byte header for payload p; the checksum covers length, type and payload. When
 * the payload already follows the header in memory (the gather buffer), one one-shot hash
 * covers both: XXH3's streaming state costs more than hashing a small record itself. */
static void wal_encode_header(char *h, slice p, int contiguous)
{
    coding_put_fixed32(h + WAL_LENGTH_OFFSET, (uint32_t)p.size);
    h[WAL_TYPE_OFFSET] = WAL_TYPE_FULL;
    uint64_t sum;
    if (contiguous) {
        sum = checksum_value(h + WAL_LENGTH_OFFSET, WAL_HEADER_SIZE - WAL_LENGTH_OFFSET + p.size);
    } else {
        checksum_state st;
        checksum_begin(&st);
        checksum_update(&st, h + WAL_LENGTH_OFFSET, WAL_HEADER_SIZE - WAL_LENGTH_OFFSET);
        if (p.size)
            checksum_update(&st, p.data, p.size);
        sum = checksum_end(&st);
    }
    coding_put_fixed64(h + WAL_CHECKSUM_OFFSET, sum);
}

int wal_add_record(wal_writer *w, slice payload)
{
    if (w->error)
        return w->error;
    if (payload.size > UINT32_MAX)
        return KV_EINVAL; /* nothing written: the log is still whole */
    int rc;
    if (payload.size <= WAL_GATHER_LIMIT) {
        if (payload.size)
            memcpy(w->gather + WAL_HEADER_SIZE, payload.data, payload.size);
        wal_encode_header(w->gather, payload, 1);
        rc = env_append(w->f, w->gather, WAL_HEADER_SIZE + payload.size);
    } else {
        char header[WAL_HEADER_SIZE];
        wal_encode_header(header, payload, 0);
        rc = env_append(w->f, header, sizeof(header));
        if (rc == 0)
            rc = env_append(w->f, payload.data, payload.size);
    }
    if (rc != 0) {
        w->error = rc;
        return rc;
    }
    w->size += WAL_HEADER_SIZE + payload.size;
    return 0;
}

int wal_writer_sync(wal_writer *w)
{
    if (w->error)
        return w->error;
    return env_sync(w->f);
}

uint64_t wal_writer_size(const wal_writer *w)
{
    return w->size;
}

int wal_writer_close(wal_writer *w)
{
    if (!w)
        return 0;
    int rc = env_close(w->f);
    free(w->gather);
    free(w);
    return rc;
}

/* ---- Reader ------------------------------------------------------------------------------ */

enum wal_state { WAL_READING, WAL_END, WAL_FAILED };

struct wal_reader {
    env_file *f; /* NULL in memory mode */
    slice mem;   /* memory mode: the whole log */

    /* File mode (invariant 2). */
    char *buf;
    size_t buf_cap, buf_len, pos;
    uint64_t buf_off;
    int eof;             /* a read came back short: buf ends at the end of the file */
    uint64_t known_size; /* the file is known to hold at least this many bytes */

    uint64_t good_offset;
    uint64_t dropped;
    const char *reason;
    enum wal_state state;
    int error; /* state == WAL_FAILED */
};

static int wal_reader_alloc(env_file *f, slice mem, wal_reader **out)
{
    *out = NULL;
    wal_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        env_close(f);
        return KV_ENOMEM;
    }
    r->f = f;
    r->mem = mem;
    r->state = WAL_READING;
    *out = r;
    return 0;
}

int wal_reader_new(env_file *f, wal_reader **out)
{
    return wal_reader_alloc(f, slice_make(NULL, 0), out);
}

int wal_reader_new_mem(slice data, wal_reader **out)
{
    return wal_reader_alloc(NULL, data, out);
}

void wal_reader_free(wal_reader *r)
{
    if (!r)
        return;
    env_close(r->f);
    free(r->buf);
    free(r);
}

uint64_t wal_reader_good_offset(const wal_reader *r)
{
    return r->good_offset;
}

uint64_t wal_reader_dropped_bytes(const wal_reader *r)
{
    return r->state == WAL_END ? r->dropped : 0;
}

const char *wal_reader_drop_reason(const wal_reader *r)
{
    return r->state == WAL_END ? r->reason : NULL;
}

/* Probes whether the file has a byte at offset off. 1: yes, 0: no, < 0: error. */
static int wal_file_has_byte(wal_reader *r, uint64_t off)
{
    if (off < r->known_size)
        return 1;
    char c;
    size_t n = 0;
    int rc = env_pread(r->f, &c, 1, off, &n);
    if (rc != 0)
        return rc;
    if (n == 1 && off + 1 > r->known_size)
        r->known_size = off + 1;
    return n == 1;
}

/* Finds the file's size without reading the bytes between here and there: an exponential,
 * then binary, search with 1-byte probes. Returns 0 or an error. */
static int wal_file_size(wal_reader *r, uint64_t *size)
{
    if (r->eof) {
        *size = r->buf_off + r->buf_len;
        return 0;
    }
    uint64_t lo = r->known_size; /* bytes [0, lo) exist */
    uint64_t step = WAL_READ_CHUNK;
    uint64_t hi; /* byte hi does not exist */
    for (;;) {
        uint64_t probe = lo + step;
        if (probe < lo) /* cannot happen: files are < 2^64 bytes */
            return KV_EIO;
        int rc = wal_file_has_byte(r, probe - 1);
        if (rc < 0)
            return rc;
        if (!rc) {
            hi = probe - 1;
            break;
        }
        lo = probe;
        step *= 2;
    }
    /* Now byte lo-1 exists (or lo == 0) and byte hi does not: the size is in [lo, hi]. */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2; /* is there a byte at mid? */
        int rc = wal_file_has_byte(r, mid);
        if (rc < 0)
            return rc;
        if (rc)
            lo = mid + 1;
        else
            hi = mid;
    }
    *size = lo;
    return 0;
}

/* Makes at least `want` bytes available at buf + pos, reading in chunks, unless the file ends
 * first. Returns 0 (check buf_len - pos for what was available) or an error. */
static int wal_fill(wal_reader *r, size_t want)
{
    if (r->buf_len - r->pos >= want || r->eof)
        return 0;
    /* Drop consumed bytes; the previously returned record is no longer borrowed. */
    size_t keep = r->buf_len - r->pos;
    if (r->pos > 0) {
        if (keep)
            memmove(r->buf, r->buf + r->pos, keep);
        r->buf_off += r->pos;
        r->buf_len = keep;
        r->pos = 0;
    }
    size_t cap = want > WAL_READ_CHUNK ? want : WAL_READ_CHUNK;
    if (r->buf_cap != cap && (r->buf_cap < cap || r->buf_cap > 2 * WAL_READ_CHUNK)) {
        /* Grow for a large record, or give back memory a past large record needed. */
        char *nb = realloc(r->buf, cap);
        if (!nb)
            return KV_ENOMEM;
        r->buf = nb;
        r->buf_cap = cap;
    }
    while (r->buf_len < want && !r->eof) {
        size_t room = r->buf_cap - r->buf_len;
        size_t n = 0;
        int rc = env_pread(r->f, r->buf + r->buf_len, room, r->buf_off + r->buf_len, &n);
        if (rc != 0)
            return rc;
        if (n > room) /* cannot happen: a broken env; refuse rather than trust it */
            return KV_EIO;
        r->buf_len += n;
        if (n < room)
            r->eof = 1;
    }
    if (r->buf_off + r->buf_len > r->known_size)
        r->known_size = r->buf_off + r->buf_len;
    return 0;
}

/* Ends the log at good_offset: dropped = file_size - good_offset; reason NULL if none. */
static int wal_finish(wal_reader *r, uint64_t file_size, const char *reason)
{
    assert(file_size >= r->good_offset);
    r->state = WAL_END;
    r->dropped = file_size - r->good_offset;
    r->reason = r->dropped ? reason : NULL;
    return 0;
}

static int wal_fail(wal_reader *r, int err)
{
    r->state = WAL_FAILED;
    r->error = err;
    return err;
}

/* Checks a record whose header and payload are in rec (header first). Returns the drop
 * reason, or NULL if the record is good. */
static const char *wal_check_record(const char *rec, size_t payload_len)
{
    uint64_t stored = coding_get_fixed64(rec + WAL_CHECKSUM_OFFSET);
    uint64_t actual =
        checksum_value(rec + WAL_LENGTH_OFFSET, WAL_HEADER_SIZE - WAL_LENGTH_OFFSET + payload_len);
    if (stored != actual)
        return "checksum mismatch";
    if ((unsigned char)rec[WAL_TYPE_OFFSET] != WAL_TYPE_FULL)
        return "bad record type";
    return NULL;
}

static int wal_read_mem(wal_reader *r, slice *record)
{
    uint64_t off = r->good_offset;
    size_t left = r->mem.size - (size_t)off;
    if (left == 0)
        return wal_finish(r, r->mem.size, NULL);
    if (left < WAL_HEADER_SIZE)
        return wal_finish(r, r->mem.size, "truncated header");
    const char *rec = r->mem.data + off;
    uint32_t len = coding_get_fixed32(rec + WAL_LENGTH_OFFSET);
    if (len > left - WAL_HEADER_SIZE)
        return wal_finish(r, r->mem.size, "truncated payload");
    const char *why = wal_check_record(rec, len);
    if (why)
        return wal_finish(r, r->mem.size, why);
    *record = slice_make(rec + WAL_HEADER_SIZE, len);
    r->good_offset += WAL_HEADER_SIZE + (uint64_t)len;
    return 1;
}

/* Ends the file-mode log at good_offset with the given reason, after finding the file size. */
static int wal_finish_file(wal_reader *r, const char *reason)
{
    uint64_t size;
    int rc = wal_file_size(r, &size);
    if (rc != 0)
        return wal_fail(r, rc);
    if (size < r->good_offset) /* cannot happen unless the file shrank under us */
        size = r->good_offset;
    return wal_finish(r, size, reason);
}

static int wal_read_file(wal_reader *r, slice *record)
{
    int rc = wal_fill(r, WAL_HEADER_SIZE);
    if (rc != 0)
        return wal_fail(r, rc);
    size_t avail = r->buf_len - r->pos;
    if (avail < WAL_HEADER_SIZE) /* wal_fill read to the end of the file */
        return wal_finish(r, r->good_offset + avail, avail ? "truncated header" : NULL);
    uint32_t len = coding_get_fixed32(r->buf + r->pos + WAL_LENGTH_OFFSET);
    size_t total = WAL_HEADER_SIZE + (size_t)len;
    if (avail < total) {
        /* Invariant 3: confirm the record's last byte exists before buffering it all. */
        if (r->eof)
            return wal_finish(r, r->good_offset + avail, "truncated payload");
        rc = wal_file_has_byte(r, r->good_offset + total - 1);
        if (rc < 0)
            return wal_fail(r, rc);
        if (!rc)
            return wal_finish_file(r, "truncated payload");
        rc = wal_fill(r, total);
        if (rc != 0)
            return wal_fail(r, rc);
        avail = r->buf_len - r->pos;
        if (avail < total) /* the file shrank after the probe */
            return wal_finish(r, r->good_offset + avail, "truncated payload");
    }
    const char *rec = r->buf + r->pos;
    const char *why = wal_check_record(rec, len);
    if (why)
        return wal_finish_file(r, why);
    *record = slice_make(rec + WAL_HEADER_SIZE, len);
    r->pos += total;
    r->good_offset += total;
    return 1;
}

int wal_read_record(wal_reader *r, slice *record)
{
    *record = slice_make(NULL, 0);
    switch (r->state) {
    case WAL_END:
        return 0;
    case WAL_FAILED:
        return r->error;
    case WAL_READING:
        break;
    }
    return r->f ? wal_read_file(r, record) : wal_read_mem(r, record);
}
