/* wal.c - the record log (write-ahead log and manifest): writer, and readers over a file or
 * over memory that stop cleanly at a torn or corrupt tail and tell an unsynced tail from
 * damage by the log's sync markers.
 *
 * Writer invariants:
 *  W1. marked <= synced <= size: `synced` is the size at the last successful sync, `marked`
 *      the value the newest marker in the file (or about to be) carries.
 *  W2. With markers on, the record at offset 0 is a marker (synced 0) and every marker carries
 *      a size some earlier sync made durable, never more.
 *
 * Reader invariants:
 *  1. Every byte before good_offset belongs to a record that was returned whole and passed
 *     its checksum and type checks.
 *  2. In file mode, buf holds the file bytes [buf_off, buf_off + buf_len) and pos <= buf_len;
 *     the next record starts at file offset buf_off + pos == good_offset.
 *  3. Nothing is allocated for a record's payload until the file is known to contain its last
 *     byte, so a corrupt length can cost at most one 1-byte read, never a huge allocation.
 *  4. Once state is not WAL_READING the reader returns the same result forever.
 *  5. synced is the largest `synced` of the intact markers of this log (nonce equal to the
 *     one the marker at offset 0 set) read so far, and after the end also of those found
 *     past the bad record; it never exceeds the offset of the marker that carries it.
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

/* The 5 bytes (length, type) every sync marker's header holds at offset 8. */
#define WAL_MARKER_SIGNATURE_SIZE 5

/* A record's total size (13 + a 32-bit length) must fit in size_t. */
_Static_assert(SIZE_MAX / 2 > (uint64_t)UINT32_MAX, "kvcore needs a 64-bit size_t");

#define WAL_CHECKSUM_OFFSET 0
#define WAL_LENGTH_OFFSET 8
#define WAL_TYPE_OFFSET 12

/* ---- Writer ------------------------------------------------------------------------------ */

struct wal_writer {
    env_file *f;
    uint64_t size;   /* bytes in the file, including every record appended successfully */
    int error;       /* sticky: the first append failure */
    char *gather;    /* scratch: WAL_SYNC_RECORD_SIZE + WAL_HEADER_SIZE + WAL_GATHER_LIMIT */
    int markers;     /* sync markers on (wal_writer_enable_sync_markers) */
    uint64_t nonce;  /* the log's marker nonce */
    uint64_t synced; /* invariant W1 */
    uint64_t marked;
};

/* Room in front of a gathered record for the marker that may precede it. */
#define WAL_GATHER_SIZE (WAL_SYNC_RECORD_SIZE + WAL_HEADER_SIZE + WAL_GATHER_LIMIT)

int wal_writer_new(env_file *f, uint64_t offset, wal_writer **out)
{
    *out = NULL;
    wal_writer *w = calloc(1, sizeof(*w));
    char *gather = malloc(WAL_GATHER_SIZE);
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

int wal_writer_enable_sync_markers(wal_writer *w, uint64_t nonce)
{
    if (w->size != 0 || w->error)
        return KV_EINVAL;
    w->markers = 1;
    w->nonce = nonce;
    return 0;
}

/* Fills the 13-byte header for payload p; the checksum covers length, type and payload. When
 * the payload already follows the header in memory (the gather buffer), one one-shot hash
 * covers both: XXH3's streaming state costs more than hashing a small record itself. */
static void wal_encode_header(char *h, slice p, int type, int contiguous)
{
    coding_put_fixed32(h + WAL_LENGTH_OFFSET, (uint32_t)p.size);
    h[WAL_TYPE_OFFSET] = (char)type;
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

/* Encodes at m the marker recording w->synced (WAL_SYNC_RECORD_SIZE bytes). */
static void wal_encode_marker(const wal_writer *w, char *m)
{
    char *p = m + WAL_HEADER_SIZE;
    coding_put_fixed64(p, w->nonce);
    coding_put_fixed64(p + 8, w->synced);
    wal_encode_header(m, slice_make(p, WAL_SYNC_PAYLOAD_SIZE), WAL_TYPE_SYNC, 1);
}

/* 1 if the next append must start with a marker: the log's first record (the header that
 * fixes the nonce), or a sync made more durable than the newest marker says. */
static int wal_marker_due(const wal_writer *w)
{
    return w->markers && (w->size == 0 || w->synced > w->marked);
}

int wal_add_record(wal_writer *w, slice payload)
{
    if (w->error)
        return w->error;
    if (payload.size > UINT32_MAX)
        return KV_EINVAL; /* nothing written: the log is still whole */
    /* The marker rides in the record's own append: no extra write for it. */
    size_t pre = wal_marker_due(w) ? WAL_SYNC_RECORD_SIZE : 0;
    if (pre)
        wal_encode_marker(w, w->gather);
    char *h = w->gather + pre;
    int rc;
    if (payload.size <= WAL_GATHER_LIMIT) {
        if (payload.size)
            memcpy(h + WAL_HEADER_SIZE, payload.data, payload.size);
        wal_encode_header(h, payload, WAL_TYPE_FULL, 1);
        rc = env_append(w->f, w->gather, pre + WAL_HEADER_SIZE + payload.size);
    } else {
        wal_encode_header(h, payload, WAL_TYPE_FULL, 0);
        rc = env_append(w->f, w->gather, pre + WAL_HEADER_SIZE);
        if (rc == 0)
            rc = env_append(w->f, payload.data, payload.size);
    }
    if (rc != 0) {
        w->error = rc;
        return rc;
    }
    w->size += pre + WAL_HEADER_SIZE + payload.size;
    if (pre)
        w->marked = w->synced;
    return 0;
}

int wal_add_sync_marker(wal_writer *w)
{
    if (w->error)
        return w->error;
    if (!w->markers || w->synced <= w->marked)
        return 0;
    wal_encode_marker(w, w->gather);
    int rc = env_append(w->f, w->gather, WAL_SYNC_RECORD_SIZE);
    if (rc != 0) {
        w->error = rc;
        return rc;
    }
    w->size += WAL_SYNC_RECORD_SIZE;
    w->marked = w->synced;
    return 1;
}

int wal_writer_sync(wal_writer *w)
{
    if (w->error)
        return w->error;
    int rc = env_sync(w->f);
    if (rc == 0)
        w->synced = w->size;
    assert(w->marked <= w->synced && w->synced <= w->size);
    return rc;
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

    int have_nonce; /* the log began with a marker */
    uint64_t nonce;
    uint64_t synced; /* invariant 5 */
    enum wal_tail tail;
    int tail_proven; /* tail rests on markers */
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

enum wal_tail wal_reader_tail(const wal_reader *r)
{
    return r->state == WAL_END ? r->tail : WAL_TAIL_CLEAN;
}

int wal_reader_tail_proven(const wal_reader *r)
{
    return r->state == WAL_END && r->tail_proven;
}

uint64_t wal_reader_synced_offset(const wal_reader *r)
{
    return r->synced;
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

static int wal_fail(wal_reader *r, int err)
{
    r->state = WAL_FAILED;
    r->error = err;
    return err;
}

/* If the WAL_SYNC_RECORD_SIZE bytes at m (file offset at) are an intact marker of this log
 * that speaks only of bytes before itself, returns 1 and its synced offset. */
static int wal_marker_at(const wal_reader *r, const char *m, uint64_t at, uint64_t *synced)
{
    if (coding_get_fixed32(m + WAL_LENGTH_OFFSET) != WAL_SYNC_PAYLOAD_SIZE ||
        (unsigned char)m[WAL_TYPE_OFFSET] != WAL_TYPE_SYNC)
        return 0;
    uint64_t sum = checksum_value(m + WAL_LENGTH_OFFSET,
                                  WAL_HEADER_SIZE - WAL_LENGTH_OFFSET + WAL_SYNC_PAYLOAD_SIZE);
    if (sum != coding_get_fixed64(m + WAL_CHECKSUM_OFFSET))
        return 0;
    uint64_t s = coding_get_fixed64(m + WAL_HEADER_SIZE + 8);
    if (coding_get_fixed64(m + WAL_HEADER_SIZE) != r->nonce || s > at)
        return 0;
    *synced = s;
    return 1;
}

/* Looks for this log's markers that start in [from, end) and end by `end`, raising synced to
 * the largest offset they prove durable. Returns 0 or an I/O error. */
static int wal_scan_markers(wal_reader *r, uint64_t from, uint64_t end)
{
    uint64_t s;
    if (!r->f) {
        for (uint64_t p = from; end >= WAL_SYNC_RECORD_SIZE && p <= end - WAL_SYNC_RECORD_SIZE; p++)
            if (wal_marker_at(r, r->mem.data + p, p, &s) && s > r->synced)
                r->synced = s;
        return 0;
    }
    char *chunk = malloc(WAL_READ_CHUNK);
    if (!chunk)
        return KV_ENOMEM;
    int rc = 0;
    uint64_t pos = from;
    while (pos < end && end - pos >= WAL_SYNC_RECORD_SIZE) {
        size_t want = end - pos < WAL_READ_CHUNK ? (size_t)(end - pos) : WAL_READ_CHUNK, n = 0;
        rc = env_pread(r->f, chunk, want, pos, &n);
        if (rc != 0)
            break;
        if (n > want) { /* cannot happen: a broken env; refuse rather than trust it */
            rc = KV_EIO;
            break;
        }
        if (n < WAL_SYNC_RECORD_SIZE)
            break; /* the file shrank under us: nothing more to find */
        for (size_t i = 0; i + WAL_SYNC_RECORD_SIZE <= n; i++)
            if (wal_marker_at(r, chunk + i, pos + i, &s) && s > r->synced)
                r->synced = s;
        /* The next chunk starts at the first position not yet checked. */
        pos += n - (WAL_SYNC_RECORD_SIZE - 1);
    }
    free(chunk);
    return rc;
}

/* Reads up to n bytes at off of the reader's log (memory or file): a wal_read_fn. */
static int wal_read_at(void *ctx, uint64_t off, char *dst, size_t n, size_t *got)
{
    wal_reader *r = ctx;
    *got = 0;
    if (!r->f) {
        if (off < r->mem.size) {
            *got = r->mem.size - off < n ? (size_t)(r->mem.size - off) : n;
            memcpy(dst, r->mem.data + off, *got);
        }
        return 0;
    }
    return env_pread(r->f, dst, n, off, got);
}

int wal_tail_is_torn(wal_read_fn read, void *ctx, uint64_t from, uint64_t end, int *torn)
{
    char page[WAL_PAGE_SIZE];
    int nonzero_seen = 0, hole_seen = 0, lost_rest = 0;
    *torn = 0;
    /* Read page by page; the bytes before the first page boundary share a page with good
     * records. */
    for (uint64_t pos = from; pos < end && !hole_seen;) {
        uint64_t page_end = (pos / WAL_PAGE_SIZE + 1) * WAL_PAGE_SIZE;
        size_t want = (size_t)((page_end < end ? page_end : end) - pos), got = 0;
        int rc = read(ctx, pos, page, want, &got);
        if (rc == 0 && got > want) /* cannot happen: a broken reader; refuse to trust it */
            rc = KV_EIO;
        if (rc != 0)
            return rc;
        if (got == 0)
            break; /* the file is shorter than `end`: nothing more to judge */
        int zero = 1;
        for (size_t i = 0; i < got && zero; i++)
            zero = page[i] == 0;
        if (!zero) {
            nonzero_seen = 1;
            /* The rest of the first page lost, the next kept: a power cut's doing. */
            if (lost_rest && page[0] != 0)
                hole_seen = 1;
            lost_rest = 0;
        } else if (pos % WAL_PAGE_SIZE == 0) {
            hole_seen = got == want; /* a page never written (a short read proves nothing) */
            lost_rest = 0;
        } else {
            /* Zeros from the bad record to the end of its page: a power cut that lost this
             * page (which then holds only what was synced before `from`) may have kept the
             * next page of the same append. Judged with the next page. */
            lost_rest = pos + got == page_end;
        }
        if (got < want)
            break; /* the file shrank under us */
        pos += got;
    }
    *torn = !nonzero_seen || hole_seen;
    return 0;
}

static int wal_file_read_at(void *ctx, uint64_t off, char *dst, size_t n, size_t *got)
{
    return env_pread(ctx, dst, n, off, got);
}

int wal_file_tail_is_torn(env_file *f, uint64_t from, uint64_t end, int *torn)
{
    return wal_tail_is_torn(wal_file_read_at, f, from, end, torn);
}

/* Ends the log at good_offset: dropped = file_size - good_offset; reason NULL if none. Then
 * judges the dropped bytes (wal_reader_tail in wal.h). Returns 0, or an error (the reader
 * failed). */
static int wal_finish(wal_reader *r, uint64_t file_size, const char *reason)
{
    assert(file_size >= r->good_offset);
    r->state = WAL_END;
    r->dropped = file_size - r->good_offset;
    r->reason = r->dropped ? reason : NULL;
    r->tail = r->dropped ? WAL_TAIL_UNSYNCED : WAL_TAIL_CLEAN;
    r->tail_proven = 0;
    if (r->dropped == 0)
        return 0;
    int rc, damaged = 0;
    if (r->have_nonce) {
        rc = wal_scan_markers(r, r->good_offset + 1, file_size);
        damaged = r->good_offset < r->synced;
        r->tail_proven = 1;
    } else if (strncmp(reason, "truncated", 9) == 0) {
        rc = 0; /* a crash cuts a log short */
    } else {
        int torn = 0;
        rc = wal_tail_is_torn(wal_read_at, r, r->good_offset, file_size, &torn);
        damaged = !torn;
    }
    if (rc != 0)
        return wal_fail(r, rc);
    if (damaged)
        r->tail = WAL_TAIL_DAMAGED;
    return 0;
}

/* Checks a record at file offset `at` whose header and payload are in rec (header first).
 * Returns the drop reason, or NULL if the record is good. A marker must have the marker
 * length; at offset 0 it sets the nonce (and must say 0); elsewhere it needs the log's nonce
 * and may only speak of bytes before itself. */
static const char *wal_check_record(const wal_reader *r, const char *rec, size_t payload_len,
                                    uint64_t at)
{
    uint64_t stored = coding_get_fixed64(rec + WAL_CHECKSUM_OFFSET);
    uint64_t actual =
        checksum_value(rec + WAL_LENGTH_OFFSET, WAL_HEADER_SIZE - WAL_LENGTH_OFFSET + payload_len);
    if (stored != actual)
        return "checksum mismatch";
    unsigned char type = (unsigned char)rec[WAL_TYPE_OFFSET];
    if (type == WAL_TYPE_FULL)
        return NULL;
    if (type != WAL_TYPE_SYNC)
        return "bad record type";
    if (payload_len != WAL_SYNC_PAYLOAD_SIZE)
        return "bad sync marker";
    uint64_t synced = coding_get_fixed64(rec + WAL_HEADER_SIZE + 8);
    if (at == 0)
        return synced == 0 ? NULL : "bad sync marker";
    uint64_t s;
    return r->have_nonce && wal_marker_at(r, rec, at, &s) ? NULL : "bad sync marker";
}

/* Takes note of the good marker rec (at file offset at). */
static void wal_note_marker(wal_reader *r, const char *rec, uint64_t at)
{
    if (at == 0) {
        r->have_nonce = 1;
        r->nonce = coding_get_fixed64(rec + WAL_HEADER_SIZE);
    }
    uint64_t s = coding_get_fixed64(rec + WAL_HEADER_SIZE + 8);
    assert(s <= at);
    if (s > r->synced)
        r->synced = s;
}

/* The next record of a memory log: 1 (a full record), 2 (a marker), 0 (the end). */
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
    const char *why = wal_check_record(r, rec, len, off);
    if (why)
        return wal_finish(r, r->mem.size, why);
    if ((unsigned char)rec[WAL_TYPE_OFFSET] == WAL_TYPE_SYNC)
        wal_note_marker(r, rec, off);
    *record = slice_make(rec + WAL_HEADER_SIZE, len);
    r->good_offset += WAL_HEADER_SIZE + (uint64_t)len;
    return 1 + ((unsigned char)rec[WAL_TYPE_OFFSET] == WAL_TYPE_SYNC);
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

/* The next record of a file log: 1 (a full record), 2 (a marker), 0 (the end), < 0 (error). */
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
    const char *why = wal_check_record(r, rec, len, r->good_offset);
    if (why)
        return wal_finish_file(r, why);
    if ((unsigned char)rec[WAL_TYPE_OFFSET] == WAL_TYPE_SYNC)
        wal_note_marker(r, rec, r->good_offset);
    *record = slice_make(rec + WAL_HEADER_SIZE, len);
    r->pos += total;
    r->good_offset += total;
    return 1 + ((unsigned char)rec[WAL_TYPE_OFFSET] == WAL_TYPE_SYNC);
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
    /* 1: a full record; 2: a marker, consumed here; else the end or an error. */
    int rc;
    do
        rc = r->f ? wal_read_file(r, record) : wal_read_mem(r, record);
    while (rc == 2);
    if (rc != 1)
        *record = slice_make(NULL, 0);
    return rc;
}
