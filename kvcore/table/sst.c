/* sst.c - SSTable builder, reader, point lookup and two-level iterator (see sst.h, FORMAT.md).
 *
 * Reader invariants (established by sst_reader_open, never changed afterwards):
 *  1. idx[0..nidx) are the index entries in strictly increasing ikey_compare order; their keys
 *     point into index_blk; their handles tile [0, data_end) exactly, in order, each block
 *     followed by its trailer.
 *  2. data_end <= the filter's offset (if any) <= the index's offset < file_size - footer.
 *  3. filter is either empty (no filter block) or a well-formed Bloom filter.
 *  4. map is NULL or holds exactly the file's first file_size bytes (the env checked the open
 *     file's size before mapping: no mapped page lies past its end), and every read of it goes
 *     through file_read, which clips to file_size as pread clips to the end of the file.
 * So every data block read is within the file; its contents are still checked (checksum,
 * restart array, every entry) because they were not read at open.
 *
 * Threads: a reader is immutable after open; gets and iterators may run in any threads at
 * once (the counters are atomic, the cache and env are thread-safe, and each thread keeps its
 * own zstd decompression context).
 */
#include "table/sst.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "table/block.h"
#include "table/bloom.h"
#include "table/compress.h"
#include "table/sst_format.h"
#include "util/checksum.h"
#include "util/ikey.h"

/* Output is collected and handed to the env in pieces of about this size. */
#define SST_WRITE_BUFFER (64 * 1024)

/* Blocks are compressed adaptively (table/compress.h): after failed attempts the builder skips
 * blocks unless a cheap entropy probe says they would shrink. */

/* ---- Building ---------------------------------------------------------------------------- */

struct sst_builder {
    env_file *f;
    sst_options o;
    int status; /* first error; sticky */
    int finished;
    uint64_t offset; /* logical bytes written, including wbuf */
    uint64_t num_entries;
    block_builder data;
    block_builder index;
    bloom_builder bloom;
    buf last_key;
    int pending_index; /* the last data block's index entry waits for the next key */
    uint64_t pending_off, pending_size;
    buf sep;  /* separator keys, filter contents */
    buf wbuf; /* output not yet appended to f */
    buf zbuf; /* compression output */
    ZSTD_CCtx *cctx;
    compress_state cstate;      /* adaptive compression (compress.h) */
    uint64_t compress_attempts; /* blocks handed to zstd */
};

int sst_builder_new(env_file *f, const sst_options *opts, sst_builder **out)
{
    *out = NULL;
    sst_builder *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return KV_ENOMEM;
    b->f = f;
    b->o = *opts;
    if (b->o.block_size < 64)
        b->o.block_size = 64;
    block_builder_init(&b->data, b->o.restart_interval);
    block_builder_init(&b->index, SST_INDEX_RESTART_INTERVAL);
    bloom_builder_init(&b->bloom, b->o.bloom_bits_per_key);
    if (b->o.compression) {
        b->cctx = ZSTD_createCCtx();
        if (b->cctx == NULL) {
            sst_builder_free(b);
            return KV_ENOMEM;
        }
    }
    *out = b;
    return 0;
}

void sst_builder_free(sst_builder *b)
{
    if (b == NULL)
        return;
    block_builder_free(&b->data);
    block_builder_free(&b->index);
    bloom_builder_free(&b->bloom);
    buf_free(&b->last_key);
    buf_free(&b->sep);
    buf_free(&b->wbuf);
    buf_free(&b->zbuf);
    ZSTD_freeCCtx(b->cctx);
    free(b);
}

uint64_t sst_builder_num_entries(const sst_builder *b)
{
    return b->num_entries;
}

uint64_t sst_builder_file_size(const sst_builder *b)
{
    return b->offset;
}

static int flush_output(sst_builder *b)
{
    if (b->wbuf.len == 0)
        return 0;
    int rc = env_append(b->f, b->wbuf.data, b->wbuf.len);
    buf_clear(&b->wbuf);
    return rc;
}

uint64_t sst_builder_compress_attempts(const sst_builder *b)
{
    return b->compress_attempts;
}

/* Writes contents + trailer (compressing if allowed and worth it); returns its handle. */
static int write_block(sst_builder *b, slice contents, int allow_compress, uint64_t *off,
                       uint64_t *size)
{
    slice stored = contents;
    unsigned char type = SST_BLOCK_RAW;
    if (allow_compress && b->cctx && contents.size <= SST_MAX_COMPRESSED_RAW_SIZE &&
        compress_should_try(&b->cstate, contents)) {
        size_t bound = ZSTD_compressBound(contents.size);
        buf_clear(&b->zbuf);
        if (buf_reserve(&b->zbuf, CODING_MAX_VARINT32 + bound) != 0)
            return KV_ENOMEM;
        char *p = coding_put_varint32(b->zbuf.data, (uint32_t)contents.size);
        size_t hdr = (size_t)(p - b->zbuf.data);
        /* Keep it compressed only if that saves at least 1/8 of the block. */
        size_t limit = contents.size - contents.size / 8;
        size_t z = compress_try(&b->cstate, b->cctx, p, bound, contents, b->o.compression_level,
                                limit > hdr ? limit - hdr : 0);
        if (z > 0) {
            stored = slice_make(b->zbuf.data, hdr + z);
            type = SST_BLOCK_ZSTD;
        }
        b->compress_attempts++;
    }
    if (buf_reserve(&b->wbuf, stored.size + SST_TRAILER_SIZE) != 0)
        return KV_ENOMEM;
    /* The block and its type byte are contiguous in wbuf: checksum them in one piece, which
     * takes checksum_value's vector path (the incremental one is the library's). */
    size_t at = b->wbuf.len;
    char type_byte = (char)type, sum[8];
    buf_append(&b->wbuf, stored.data, stored.size); /* cannot fail: reserved */
    buf_append(&b->wbuf, &type_byte, 1);
    coding_put_fixed64(sum, checksum_value(b->wbuf.data + at, stored.size + 1));
    buf_append(&b->wbuf, sum, sizeof(sum));
    *off = b->offset;
    *size = stored.size;
    b->offset += stored.size + SST_TRAILER_SIZE;
    if (b->wbuf.len >= SST_WRITE_BUFFER)
        return flush_output(b);
    return 0;
}

static int flush_data_block(sst_builder *b)
{
    if (block_builder_empty(&b->data))
        return 0;
    slice contents;
    int rc = block_builder_finish(&b->data, &contents);
    if (rc == 0)
        rc = write_block(b, contents, b->o.compression, &b->pending_off, &b->pending_size);
    if (rc != 0)
        return rc;
    block_builder_reset(&b->data);
    b->pending_index = 1;
    return 0;
}

/* Sets b->sep to a short internal key k with a <= k < next (LevelDB's shortest separator,
 * on user keys): a user key between the two, tagged so it sorts first among its versions. */
static int make_separator(sst_builder *b, slice a, slice next)
{
    slice ua = ikey_user_key(a), ub = ikey_user_key(next);
    size_t n = ua.size < ub.size ? ua.size : ub.size, p = 0;
    while (p < n && ua.data[p] == ub.data[p])
        p++;
    buf_clear(&b->sep);
    if (p < n) {
        unsigned char c = (unsigned char)ua.data[p];
        if (c < 0xff && c + 1 < (unsigned char)ub.data[p] && p + 1 < ua.size) {
            char last = (char)(c + 1);
            int rc = buf_append(&b->sep, ua.data, p);
            if (rc == 0)
                rc = buf_append(&b->sep, &last, 1);
            if (rc == 0)
                rc = buf_append_fixed64(&b->sep,
                                        ikey_pack_tag(IKEY_MAX_SEQUENCE, IKEY_TYPE_FOR_SEEK));
            if (rc != 0)
                return rc;
            assert(ikey_compare(a, buf_slice(&b->sep)) < 0);
            assert(ikey_compare(buf_slice(&b->sep), next) < 0);
            return 0;
        }
    }
    return buf_append(&b->sep, a.data, a.size);
}

/* Sets b->sep to a short internal key >= a (a user key successor of a's). */
static int make_successor(sst_builder *b, slice a)
{
    slice ua = ikey_user_key(a);
    buf_clear(&b->sep);
    for (size_t i = 0; i < ua.size; i++) {
        unsigned char c = (unsigned char)ua.data[i];
        if (c != 0xff) {
            if (i + 1 == ua.size)
                break; /* no shorter key; keep a itself */
            char last = (char)(c + 1);
            int rc = buf_append(&b->sep, ua.data, i);
            if (rc == 0)
                rc = buf_append(&b->sep, &last, 1);
            if (rc == 0)
                rc = buf_append_fixed64(&b->sep,
                                        ikey_pack_tag(IKEY_MAX_SEQUENCE, IKEY_TYPE_FOR_SEEK));
            return rc;
        }
    }
    return buf_append(&b->sep, a.data, a.size);
}

static int add_index_entry(sst_builder *b, slice sep)
{
    char h[2 * CODING_MAX_VARINT64];
    char *p = coding_put_varint64(h, b->pending_off);
    p = coding_put_varint64(p, b->pending_size);
    b->pending_index = 0;
    return block_builder_add(&b->index, sep, slice_make(h, (size_t)(p - h)));
}

int sst_builder_add(sst_builder *b, slice ikey, slice value)
{
    if (b->status)
        return b->status;
    if (b->finished || ikey.size < IKEY_TAG_SIZE)
        return KV_EINVAL;
    if (b->num_entries > 0 && ikey_compare(buf_slice(&b->last_key), ikey) >= 0)
        return KV_EINVAL;
    int rc = 0;
    if (b->pending_index) {
        rc = make_separator(b, buf_slice(&b->last_key), ikey);
        if (rc == 0)
            rc = add_index_entry(b, buf_slice(&b->sep));
        if (rc != 0)
            return b->status = rc;
    }
    if (b->o.bloom_bits_per_key > 0 &&
        (rc = bloom_builder_add(&b->bloom, ikey_user_key(ikey))) != 0)
        return b->status = rc;
    buf_clear(&b->last_key);
    if ((rc = buf_append(&b->last_key, ikey.data, ikey.size)) != 0)
        return b->status = rc;
    if ((rc = block_builder_add(&b->data, ikey, value)) != 0)
        return b->status = rc;
    b->num_entries++;
    if (block_builder_size_estimate(&b->data) >= b->o.block_size && (rc = flush_data_block(b)) != 0)
        return b->status = rc;
    return 0;
}

int sst_builder_finish(sst_builder *b)
{
    if (b->status)
        return b->status;
    if (b->finished)
        return KV_EINVAL;
    int rc = flush_data_block(b);
    if (rc == 0 && b->pending_index) {
        rc = make_successor(b, buf_slice(&b->last_key));
        if (rc == 0)
            rc = add_index_entry(b, buf_slice(&b->sep));
    }
    uint64_t filter_off = 0, filter_size = 0, index_off = 0, index_size = 0;
    if (rc == 0 && b->o.bloom_bits_per_key > 0) {
        buf_clear(&b->sep);
        rc = bloom_builder_finish(&b->bloom, &b->sep);
        if (rc == 0)
            rc = write_block(b, buf_slice(&b->sep), 0, &filter_off, &filter_size);
    }
    slice index;
    if (rc == 0)
        rc = block_builder_finish(&b->index, &index);
    if (rc == 0)
        rc = write_block(b, index, b->o.compression, &index_off, &index_size);
    if (rc == 0) {
        char footer[SST_FOOTER_SIZE];
        memset(footer, 0, sizeof(footer));
        coding_put_fixed64(footer + SST_FOOTER_FILTER_OFF, filter_off);
        coding_put_fixed64(footer + SST_FOOTER_FILTER_SIZE, filter_size);
        coding_put_fixed64(footer + SST_FOOTER_INDEX_OFF, index_off);
        coding_put_fixed64(footer + SST_FOOTER_INDEX_SIZE, index_size);
        coding_put_fixed64(footer + SST_FOOTER_NUM_ENTRIES, b->num_entries);
        coding_put_fixed32(footer + SST_FOOTER_VERSION, SST_FORMAT_VERSION);
        coding_put_fixed64(footer + SST_FOOTER_CHECKSUM,
                           checksum_value(footer, SST_FOOTER_CHECKSUM));
        coding_put_fixed64(footer + SST_FOOTER_MAGIC, SST_MAGIC);
        rc = buf_append(&b->wbuf, footer, sizeof(footer));
        if (rc == 0)
            b->offset += sizeof(footer);
    }
    if (rc == 0)
        rc = flush_output(b);
    if (rc != 0)
        return b->status = rc;
    b->finished = 1;
    return 0;
}

/* ---- Reading ----------------------------------------------------------------------------- */

/* Read-ahead of a sequential scan (fetch_block_ahead): it starts at 2 blocks on the scan's
 * first step into a following block and doubles on each further one, up to these bounds. */
#define SST_READAHEAD_START_BLOCKS 2
#define SST_READAHEAD_MAX_BLOCKS 16
#define SST_READAHEAD_MAX_BYTES (64u << 10)

/* A block's uncompressed contents and, for key/value blocks, its parsed view, in one
 * allocation: from malloc (pool == NULL; free() releases it) or, for a block headed for the
 * block cache, from the cache's shared slabs (charge = alloc_size; see cache_mem_alloc). */
struct cached_block {
    block b;
    slice contents;
    cache *pool;
    size_t alloc_n;    /* bytes asked of the pool */
    size_t alloc_size; /* bytes the pool set aside */
    char data[];
};

/* A cached_block with room for n bytes of data, from pool (NULL: malloc). NULL if no memory. */
static struct cached_block *cached_block_alloc(cache *pool, size_t n)
{
    size_t total = sizeof(struct cached_block) + n, got = total;
    struct cached_block *cb = pool ? cache_mem_alloc(pool, total, &got) : malloc(total);
    if (cb) {
        cb->pool = pool;
        cb->alloc_n = total;
        cb->alloc_size = got;
    }
    return cb;
}

static void cached_block_free(struct cached_block *cb)
{
    if (cb && cb->pool)
        cache_mem_free(cb->pool, cb, cb->alloc_n);
    else
        free(cb);
}

struct index_entry {
    slice key; /* points into index_blk */
    uint64_t off, size;
};

struct sst_reader {
    env_file *f;
    uint64_t file_size;
    const char *map; /* the file's first file_size bytes, mapped (NULL: read with pread) */
    char *name;
    sst_read_options o;
    kv_logger log;
    uint64_t cache_id;
    struct cached_block *index_blk;
    struct index_entry *idx;
    uint32_t nidx;
    struct cached_block *filter_blk; /* NULL: no filter */
    slice filter;
    uint64_t data_end;
    uint64_t num_entries;               /* as the footer says */
    uint64_t blocks_read, bloom_useful; /* atomic */
};

static int corrupt(const sst_reader *r, const char *what, uint64_t off, const char *check)
{
    kv_log(&r->log, KV_LOG_ERROR, "sst %s: %s at offset %llu: %s", r->name, what,
           (unsigned long long)off, check);
    return KV_ECORRUPT;
}

/* Reads up to n bytes at off into dst like env_pread (*got < n only at the end of the file):
 * from the mapping if there is one (which holds exactly file_size bytes), else with pread. */
static int file_read(const sst_reader *r, void *dst, size_t n, uint64_t off, size_t *got)
{
    if (r->map == NULL)
        return env_pread(r->f, dst, n, off, got);
    size_t avail = off < r->file_size ? (size_t)(r->file_size - off) : 0;
    *got = n < avail ? n : avail;
    if (*got)
        memcpy(dst, r->map + off, *got);
    return 0;
}

/* Checks the block whose size bytes + trailer were read into cb->data and returns its
 * uncompressed contents in *out: cb itself, or (compressed) a new block from pool, cb being
 * freed. On failure cb is freed and the failed check logged. */
static int finish_block(sst_reader *r, const char *what, uint64_t off, uint64_t size, int verify,
                        cache *pool, struct cached_block *cb, struct cached_block **out)
{
    *out = NULL;
    unsigned char type = (unsigned char)cb->data[size];
    if (verify &&
        checksum_value(cb->data, (size_t)size + 1) != coding_get_fixed64(cb->data + size + 1)) {
        cached_block_free(cb);
        return corrupt(r, what, off, "checksum mismatch");
    }
    if (type == SST_BLOCK_RAW) {
        cb->contents = slice_make(cb->data, (size_t)size);
        *out = cb;
        return 0;
    }
    if (type != SST_BLOCK_ZSTD) {
        cached_block_free(cb);
        return corrupt(r, what, off, "unknown compression type");
    }
    uint32_t raw_size;
    const char *p = coding_get_varint32(cb->data, cb->data + size, &raw_size);
    if (p == NULL || raw_size > SST_MAX_COMPRESSED_RAW_SIZE) {
        cached_block_free(cb);
        return corrupt(r, what, off, "bad uncompressed size");
    }
    struct cached_block *raw = cached_block_alloc(pool, raw_size);
    if (raw == NULL) {
        cached_block_free(cb);
        return KV_ENOMEM;
    }
    int rc = compress_decompress(slice_make(p, (size_t)(cb->data + size - p)), raw->data, raw_size);
    cached_block_free(cb);
    if (rc != 0) {
        cached_block_free(raw);
        return rc == KV_ECORRUPT ? corrupt(r, what, off, "zstd decompression failed or wrong size")
                                 : rc;
    }
    raw->contents = slice_make(raw->data, raw_size);
    *out = raw;
    return 0;
}

/* True if block handle (off, size) + trailer lies inside the table's data. */
static int block_handle_ok(const sst_reader *r, uint64_t off, uint64_t size)
{
    uint64_t limit = r->file_size - SST_FOOTER_SIZE;
    return off <= limit && size <= limit - off && SST_TRAILER_SIZE <= limit - off - size;
}

/* Reads the block at (off, size) + trailer, checks it and returns its uncompressed contents in
 * a new cached_block allocated from pool (NULL: malloc), which the caller owns (b is not
 * initialised). `what` names it in messages. */
static int read_block_from(sst_reader *r, const char *what, uint64_t off, uint64_t size, int verify,
                           cache *pool, struct cached_block **out)
{
    *out = NULL;
    if (!block_handle_ok(r, off, size))
        return corrupt(r, what, off, "block handle beyond the end of the file");
    size_t n = (size_t)size + SST_TRAILER_SIZE;
    struct cached_block *cb = cached_block_alloc(pool, n);
    if (cb == NULL)
        return KV_ENOMEM;
    size_t got = 0;
    int rc = file_read(r, cb->data, n, off, &got);
    if (rc != 0) {
        cached_block_free(cb);
        kv_log(&r->log, KV_LOG_ERROR, "sst %s: %s at offset %llu: read failed: %s", r->name, what,
               (unsigned long long)off, kv_strerror(rc));
        return rc;
    }
    if (got != n) {
        cached_block_free(cb);
        return corrupt(r, what, off, "file shorter than the block (short read)");
    }
    return finish_block(r, what, off, size, verify, pool, cb, out);
}

/* read_block_from with malloc'd memory: the caller frees the block with free(). */
static int read_block(sst_reader *r, const char *what, uint64_t off, uint64_t size, int verify,
                      struct cached_block **out)
{
    return read_block_from(r, what, off, size, verify, NULL, out);
}

/* Checks the restart array of the key/value block rc/out came back with; frees it if bad. */
static int init_kv_block(sst_reader *r, const char *what, uint64_t off, int rc,
                         struct cached_block **out)
{
    if (rc != 0)
        return rc;
    const char *why;
    if (block_init(&(*out)->b, (*out)->contents.data, (*out)->contents.size, &why) != 0) {
        cached_block_free(*out);
        *out = NULL;
        return corrupt(r, what, off, why);
    }
    return 0;
}

/* Reads a key/value block (memory from pool, NULL: malloc) and checks its restart array. */
static int read_kv_block_from(sst_reader *r, const char *what, uint64_t off, uint64_t size,
                              int verify, cache *pool, struct cached_block **out)
{
    return init_kv_block(r, what, off, read_block_from(r, what, off, size, verify, pool, out), out);
}

/* read_kv_block_from with malloc'd memory: the caller frees the block with free(). */
static int read_kv_block(sst_reader *r, const char *what, uint64_t off, uint64_t size, int verify,
                         struct cached_block **out)
{
    return read_kv_block_from(r, what, off, size, verify, NULL, out);
}

static int parse_index(sst_reader *r, uint64_t index_off)
{
    const block *b = &r->index_blk->b;
    uint32_t n = b->restarts_off == 0 ? 0 : b->num_restarts;
    r->nidx = n;
    if (n == 0)
        return r->data_end == 0 ? 0
                                : corrupt(r, "index block", index_off, "no entries for the data");
    r->idx = calloc(n, sizeof(*r->idx));
    if (r->idx == NULL)
        return KV_ENOMEM;
    uint64_t expect = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t off = block_restart(b, i), end;
        uint32_t limit = i + 1 < n ? block_restart(b, i + 1) : b->restarts_off;
        slice k, v;
        const char *why;
        if (block_decode_restart_entry(b, off, limit, &k, &v, &end, &why) != 0)
            return corrupt(r, "index block", index_off, why);
        struct index_entry *e = &r->idx[i];
        if (end != limit)
            return corrupt(r, "index block", index_off, "entry does not end at the next restart");
        if (k.size < IKEY_TAG_SIZE)
            return corrupt(r, "index block", index_off, "separator shorter than a tag");
        if (i > 0 && ikey_compare(r->idx[i - 1].key, k) >= 0)
            return corrupt(r, "index block", index_off, "separators not increasing");
        if (!coding_slice_get_varint64(&v, &e->off) || !coding_slice_get_varint64(&v, &e->size) ||
            v.size != 0)
            return corrupt(r, "index block", index_off, "bad block handle");
        if (e->off != expect || e->size > r->data_end - expect ||
            SST_TRAILER_SIZE > r->data_end - expect - e->size)
            return corrupt(r, "index block", index_off, "block handles do not tile the data");
        e->key = k;
        expect = e->off + e->size + SST_TRAILER_SIZE;
    }
    if (expect != r->data_end)
        return corrupt(r, "index block", index_off, "data blocks do not end at the meta blocks");
    return 0;
}

static int open_tables(sst_reader *r)
{
    if (r->file_size < SST_FOOTER_SIZE)
        return corrupt(r, "file", 0, "shorter than a footer");
    uint64_t foff = r->file_size - SST_FOOTER_SIZE;
    char footer[SST_FOOTER_SIZE];
    size_t got = 0;
    int rc = file_read(r, footer, sizeof(footer), foff, &got);
    if (rc != 0) {
        kv_log(&r->log, KV_LOG_ERROR, "sst %s: footer at offset %llu: read failed: %s", r->name,
               (unsigned long long)foff, kv_strerror(rc));
        return rc;
    }
    if (got != sizeof(footer))
        return corrupt(r, "footer", foff, "short read");
    if (coding_get_fixed64(footer + SST_FOOTER_MAGIC) != SST_MAGIC)
        return corrupt(r, "footer", foff, "bad magic number (not an sst, or truncated)");
    if (checksum_value(footer, SST_FOOTER_CHECKSUM) !=
        coding_get_fixed64(footer + SST_FOOTER_CHECKSUM))
        return corrupt(r, "footer", foff, "checksum mismatch");
    uint32_t version = coding_get_fixed32(footer + SST_FOOTER_VERSION);
    if (version > SST_FORMAT_VERSION) {
        kv_log(&r->log, KV_LOG_ERROR,
               "sst %s: footer at offset %llu: format version %u is newer "
               "than this build (%u)",
               r->name, (unsigned long long)foff, version, SST_FORMAT_VERSION);
        return KV_EVERSION;
    }
    if (version != SST_FORMAT_VERSION || coding_get_fixed32(footer + SST_FOOTER_RESERVED) != 0)
        return corrupt(r, "footer", foff, "bad format version or reserved field");
    uint64_t filter_off = coding_get_fixed64(footer + SST_FOOTER_FILTER_OFF);
    uint64_t filter_size = coding_get_fixed64(footer + SST_FOOTER_FILTER_SIZE);
    uint64_t index_off = coding_get_fixed64(footer + SST_FOOTER_INDEX_OFF);
    uint64_t index_size = coding_get_fixed64(footer + SST_FOOTER_INDEX_SIZE);
    r->num_entries = coding_get_fixed64(footer + SST_FOOTER_NUM_ENTRIES);
    /* The index ends at the footer; the filter (if any) ends at the index; data before. */
    if (index_off > foff || index_size > foff - index_off ||
        foff - index_off - index_size != SST_TRAILER_SIZE)
        return corrupt(r, "footer", foff, "index handle does not end at the footer");
    if (filter_size == 0) {
        if (filter_off != 0)
            return corrupt(r, "footer", foff, "empty filter handle with an offset");
        r->data_end = index_off;
    } else {
        if (filter_off > index_off || filter_size > index_off - filter_off ||
            index_off - filter_off - filter_size != SST_TRAILER_SIZE)
            return corrupt(r, "footer", foff, "filter handle does not end at the index");
        r->data_end = filter_off;
    }
    int verify = r->o.verify_checksums;
    if ((rc = read_kv_block(r, "index block", index_off, index_size, verify, &r->index_blk)) != 0)
        return rc;
    if ((rc = parse_index(r, index_off)) != 0)
        return rc;
    if (filter_size != 0) {
        rc = read_block(r, "filter block", filter_off, filter_size, verify, &r->filter_blk);
        if (rc != 0)
            return rc;
        r->filter = r->filter_blk->contents;
        if (!bloom_filter_valid(r->filter))
            return corrupt(r, "filter block", filter_off, "malformed Bloom filter");
    }
    return 0;
}

static int reader_open(env_file *f, uint64_t file_size, const char *name,
                       const sst_read_options *ropts, int map, sst_reader **out)
{
    *out = NULL;
    sst_reader *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->name = strdup(name ? name : "?")) == NULL) {
        free(r);
        env_close(f);
        return KV_ENOMEM;
    }
    r->f = f;
    r->file_size = file_size;
    r->o = *ropts;
    if (ropts->log) {
        r->log = *ropts->log;
    } else {
        r->log.fn = NULL;
        r->log.ctx = NULL;
        r->log.level = KV_LOG_WARN;
    }
    if (r->o.block_cache)
        r->cache_id = cache_new_id(r->o.block_cache);
    const void *base = NULL;
    if (map && env_map_readable(f, file_size, &base) == 0)
        r->map = base; /* else: read with pread, as the option promises */
    int rc = open_tables(r);
    if (rc != 0) {
        sst_reader_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

int sst_reader_open(env_file *f, uint64_t file_size, const char *name,
                    const sst_read_options *ropts, sst_reader **out)
{
    return reader_open(f, file_size, name, ropts, 0, out);
}

int sst_reader_open_mapped(env_file *f, uint64_t file_size, const char *name,
                           const sst_read_options *ropts, sst_reader **out)
{
    return reader_open(f, file_size, name, ropts, 1, out);
}

void sst_reader_close(sst_reader *r)
{
    if (r == NULL)
        return;
    env_close(r->f);
    free(r->idx);
    free(r->index_blk);
    free(r->filter_blk);
    free(r->name);
    free(r);
}

void sst_reader_counters(const sst_reader *r, uint64_t *blocks_read, uint64_t *bloom_useful)
{
    if (blocks_read)
        *blocks_read = __atomic_load_n(&r->blocks_read, __ATOMIC_RELAXED);
    if (bloom_useful)
        *bloom_useful = __atomic_load_n(&r->bloom_useful, __ATOMIC_RELAXED);
}

/* Index of the first block whose separator is >= target (nidx if none). */
static uint32_t index_lower_bound(const sst_reader *r, slice target)
{
    uint32_t lo = 0, hi = r->nidx;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ikey_compare(r->idx[mid].key, target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void cached_block_deleter(slice key, void *value)
{
    cached_block_free(value);
}

/* A data block pinned for reading: in the cache (h != NULL) or owned by the holder. */
struct block_ref {
    struct cached_block *cb;
    cache_handle *h;
};

static void block_ref_release(const sst_reader *r, struct block_ref *ref)
{
    if (ref->h)
        cache_release(r->o.block_cache, ref->h);
    else
        cached_block_free(ref->cb);
    ref->cb = NULL;
    ref->h = NULL;
}

static void block_cache_key(const sst_reader *r, uint32_t i, char kbuf[16])
{
    coding_put_fixed64(kbuf, r->cache_id);
    coding_put_fixed64(kbuf + 8, r->idx[i].off);
}

/* Blocks i+1.. that a read-ahead from block i covers: those not in the cache, up to the first
 * that is, at most `ahead` blocks and SST_READAHEAD_MAX_BYTES in all. */
static uint32_t readahead_extent(sst_reader *r, uint32_t i, uint32_t ahead)
{
    cache *c = r->o.block_cache;
    uint32_t n = 0;
    while (n < ahead && i + 1 + n < r->nidx) {
        const struct index_entry *e = &r->idx[i + 1 + n];
        uint64_t next_end = e->off + e->size + SST_TRAILER_SIZE;
        if (next_end - r->idx[i].off > SST_READAHEAD_MAX_BYTES)
            break;
        char kbuf[16];
        block_cache_key(r, i + 1 + n, kbuf);
        if (cache_contains(c, slice_make(kbuf, sizeof(kbuf))))
            break;
        n++;
    }
    return n;
}

/* Reads block i and the `n` blocks after it (contiguous: parse_index checked that the handles
 * tile the data) with one pread. Block i comes back in *out as read_kv_block_from would return
 * it; each following block that checks out is put into the cache, and one that does not is
 * dropped without a word (it is read and reported on its own if a reader gets to it). Returns
 * 1 (nothing done) if the range could not be read in one piece, so the caller reads block i
 * alone. */
static int read_ahead(sst_reader *r, uint32_t i, uint32_t n, struct cached_block **out)
{
    cache *c = r->o.block_cache;
    uint64_t start = r->idx[i].off;
    const struct index_entry *last = &r->idx[i + n];
    if (!block_handle_ok(r, last->off, last->size))
        return 1;
    size_t total = (size_t)(last->off + last->size + SST_TRAILER_SIZE - start);
    /* A mapped table needs no staging buffer: each block is copied out of the mapping (the
     * range is inside file_size: block_handle_ok above, and the handles tile the data). */
    char *tmp = NULL;
    const char *src = r->map ? r->map + start : NULL;
    if (src == NULL) {
        size_t got = 0;
        if ((tmp = malloc(total)) == NULL)
            return 1;
        if (env_pread(r->f, tmp, total, start, &got) != 0 || got != total) {
            free(tmp);
            return 1;
        }
        src = tmp;
    }
    int rc = 0;
    for (uint32_t j = i; j <= i + n; j++) {
        const struct index_entry *e = &r->idx[j];
        size_t len = (size_t)e->size + SST_TRAILER_SIZE;
        struct cached_block *cb = cached_block_alloc(c, len), *blk = NULL;
        int brc = KV_ENOMEM;
        if (cb != NULL) {
            memcpy(cb->data, src + (e->off - start), len);
            brc =
                finish_block(r, "data block", e->off, e->size, r->o.verify_checksums, c, cb, &blk);
            brc = init_kv_block(r, "data block", e->off, brc, &blk);
        }
        if (j == i) {
            rc = brc;
            *out = blk;
            if (brc != 0)
                break;
            continue;
        }
        if (brc != 0)
            continue;
        __atomic_fetch_add(&r->blocks_read, 1, __ATOMIC_RELAXED);
        char kbuf[16];
        block_cache_key(r, j, kbuf);
        cache_handle *h = cache_insert(c, slice_make(kbuf, sizeof(kbuf)), blk, blk->alloc_size,
                                       cached_block_deleter);
        if (h)
            cache_release(c, h);
    }
    free(tmp);
    return rc;
}

/* Pins block i: from the cache, else read (and cached if fill_cache). With `ahead` > 0 and a
 * cache, a miss also reads up to `ahead` following blocks into the cache in the same pread: a
 * sequential scan about to need them then pays one system call instead of one per block. */
static int fetch_block_ahead(sst_reader *r, uint32_t i, int fill_cache, uint32_t ahead,
                             struct block_ref *ref)
{
    const struct index_entry *e = &r->idx[i];
    cache *c = r->o.block_cache;
    char kbuf[16];
    ref->cb = NULL;
    ref->h = NULL;
    if (c) {
        block_cache_key(r, i, kbuf);
        ref->h = cache_lookup(c, slice_make(kbuf, sizeof(kbuf)));
        if (ref->h) {
            ref->cb = cache_value(ref->h);
            return 0;
        }
    }
    struct cached_block *cb = NULL;
    int rc = 1;
    uint32_t n = c && fill_cache && ahead ? readahead_extent(r, i, ahead) : 0;
    if (n > 0)
        rc = read_ahead(r, i, n, &cb);
    if (rc == 1)
        rc = read_kv_block_from(r, "data block", e->off, e->size, r->o.verify_checksums,
                                c && fill_cache ? c : NULL, &cb);
    if (rc != 0)
        return rc;
    __atomic_fetch_add(&r->blocks_read, 1, __ATOMIC_RELAXED);
    if (c && fill_cache) {
        ref->h = cache_insert(c, slice_make(kbuf, sizeof(kbuf)), cb, cb->alloc_size,
                              cached_block_deleter);
        if (ref->h == NULL)
            return KV_ENOMEM; /* the deleter freed cb */
    }
    ref->cb = cb;
    return 0;
}

static int fetch_block(sst_reader *r, uint32_t i, int fill_cache, struct block_ref *ref)
{
    return fetch_block_ahead(r, i, fill_cache, 0, ref);
}

static void init_block_iter(const sst_reader *r, struct block_iter *bi, const struct block_ref *ref,
                            uint32_t i)
{
    block_origin o = {&r->log, r->name, "data", r->idx[i].off};
    block_iter_init(bi, &ref->cb->b, ikey_compare, &o);
}

int sst_reader_get(sst_reader *r, slice ikey, void *ctx,
                   void (*found)(void *ctx, slice ikey, slice value))
{
    if (ikey.size < IKEY_TAG_SIZE)
        return KV_EINVAL;
    if (r->filter.size && !bloom_may_match(r->filter, ikey_user_key(ikey))) {
        __atomic_fetch_add(&r->bloom_useful, 1, __ATOMIC_RELAXED);
        return 0;
    }
    /* The first entry >= ikey is in the first block whose separator is >= ikey or, if that
     * block holds only smaller keys (ikey fell between its last key and the separator), it is
     * the first entry of a following block. */
    for (uint32_t i = index_lower_bound(r, ikey); i < r->nidx; i++) {
        struct block_ref ref;
        int rc = fetch_block(r, i, r->o.fill_cache, &ref);
        if (rc != 0)
            return rc;
        struct block_iter bi;
        init_block_iter(r, &bi, &ref, i);
        block_iter_seek(&bi, ikey);
        int done = 0;
        if (block_iter_valid(&bi)) {
            found(ctx, block_iter_key(&bi), block_iter_value(&bi));
            done = 1;
        } else if ((rc = block_iter_status(&bi)) != 0) {
            done = 1;
        }
        block_iter_release(&bi);
        block_ref_release(r, &ref);
        if (done)
            return rc;
    }
    return 0;
}

uint64_t sst_reader_approximate_offset(sst_reader *r, slice ikey)
{
    uint32_t i = index_lower_bound(r, ikey);
    return i < r->nidx ? r->idx[i].off : r->data_end;
}

int sst_reader_verify(sst_reader *r, void (*progress)(void *ctx, uint64_t bytes), void *ctx,
                      uint64_t *problems)
{
    uint64_t bad = 0, entries = 0;
    buf prev;
    buf_init(&prev);
    int rc = 0;
    for (uint32_t i = 0; i < r->nidx && rc == 0; i++) {
        const struct index_entry *e = &r->idx[i];
        struct cached_block *cb;
        int brc = read_kv_block(r, "data block", e->off, e->size, 1, &cb);
        if (brc == KV_ECORRUPT) {
            bad++;
        } else if (brc != 0) {
            rc = brc;
        } else {
            struct block_iter bi;
            block_origin o = {&r->log, r->name, "data", e->off};
            block_iter_init(&bi, &cb->b, ikey_compare, &o);
            const char *why = NULL;
            for (block_iter_seek_first(&bi); block_iter_valid(&bi); block_iter_next(&bi)) {
                slice k = block_iter_key(&bi);
                ikey_parsed pk;
                entries++;
                if (!ikey_parse(k, &pk))
                    why = "malformed internal key";
                else if (prev.len && ikey_compare(buf_slice(&prev), k) >= 0)
                    why = "keys out of order";
                else if (ikey_compare(k, e->key) > 0)
                    why = "key beyond the block's index separator";
                else if (r->filter.size && !bloom_may_match(r->filter, pk.user_key))
                    why = "key missing from the Bloom filter";
                if (why)
                    break;
                buf_clear(&prev);
                if (buf_append(&prev, k.data, k.size) != 0) {
                    rc = KV_ENOMEM;
                    break;
                }
            }
            if (why) {
                corrupt(r, "data block", e->off, why);
                bad++;
            } else if (block_iter_status(&bi) == KV_ECORRUPT) {
                bad++; /* logged by the block iterator */
            } else if (block_iter_status(&bi) != 0) {
                rc = block_iter_status(&bi);
            }
            block_iter_release(&bi);
            free(cb);
        }
        if (progress)
            progress(ctx, e->size + SST_TRAILER_SIZE);
    }
    buf_free(&prev);
    if (rc == 0 && bad == 0 && entries != r->num_entries) {
        corrupt(r, "footer", r->file_size - SST_FOOTER_SIZE,
                "entry count differs from the entries in the data blocks");
        bad++;
    }
    if (problems)
        *problems = bad;
    if (rc != 0)
        return rc;
    return bad ? KV_ECORRUPT : 0;
}

/* ---- Two-level iterator ------------------------------------------------------------------ */

struct sst_iter {
    iter base;
    sst_reader *r;
    int fill_cache;
    int status;
    uint32_t blk;   /* index of the loaded block, if ref.cb */
    uint32_t ahead; /* blocks to read ahead on the next forward step (0 after a seek) */
    struct block_ref ref;
    struct block_iter bi;
};

static void si_unload(struct sst_iter *it)
{
    if (it->ref.cb) {
        block_iter_release(&it->bi);
        block_ref_release(it->r, &it->ref);
    }
}

/* Makes block i the current block (unpositioned), reading `ahead` blocks after it along if
 * it is not cached. Returns 0 or sets it->status. */
static int si_load_ahead(struct sst_iter *it, uint32_t i, uint32_t ahead)
{
    if (it->ref.cb && it->blk == i)
        return 0;
    si_unload(it);
    int rc = fetch_block_ahead(it->r, i, it->fill_cache, ahead, &it->ref);
    if (rc != 0) {
        it->status = rc;
        return rc;
    }
    it->blk = i;
    init_block_iter(it->r, &it->bi, &it->ref, i);
    return 0;
}

static int si_load(struct sst_iter *it, uint32_t i)
{
    it->ahead = 0;
    return si_load_ahead(it, i, 0);
}

/* After the block iterator ran off the end of its block, moves on to the next non-empty one.
 * Only a step of next() (stepping) reads ahead: a seek that lands past its block's last key
 * (between it and the index separator) moves on too, but says nothing about a scan. */
static void si_skip_forward(struct sst_iter *it, int stepping)
{
    while (it->ref.cb && !block_iter_valid(&it->bi)) {
        if ((it->status = block_iter_status(&it->bi)) != 0)
            return;
        if (it->blk + 1 >= it->r->nidx) {
            si_unload(it);
            return;
        }
        if (stepping)
            it->ahead = it->ahead == 0                         ? SST_READAHEAD_START_BLOCKS
                        : it->ahead < SST_READAHEAD_MAX_BLOCKS ? it->ahead * 2
                                                               : SST_READAHEAD_MAX_BLOCKS;
        if (si_load_ahead(it, it->blk + 1, it->ahead) != 0)
            return;
        block_iter_seek_first(&it->bi);
    }
}

static void si_skip_backward(struct sst_iter *it)
{
    while (it->ref.cb && !block_iter_valid(&it->bi)) {
        if ((it->status = block_iter_status(&it->bi)) != 0)
            return;
        if (it->blk == 0) {
            si_unload(it);
            return;
        }
        if (si_load(it, it->blk - 1) != 0)
            return;
        block_iter_seek_last(&it->bi);
    }
}

static int si_valid(const iter *base)
{
    const struct sst_iter *it = (const struct sst_iter *)base;
    return it->status == 0 && it->ref.cb && block_iter_valid(&it->bi);
}

static void si_seek_first(iter *base)
{
    struct sst_iter *it = (struct sst_iter *)base;
    it->status = 0;
    if (it->r->nidx == 0) {
        si_unload(it);
        return;
    }
    if (si_load(it, 0) != 0)
        return;
    block_iter_seek_first(&it->bi);
    si_skip_forward(it, 0);
}

static void si_seek_last(iter *base)
{
    struct sst_iter *it = (struct sst_iter *)base;
    it->status = 0;
    if (it->r->nidx == 0) {
        si_unload(it);
        return;
    }
    if (si_load(it, it->r->nidx - 1) != 0)
        return;
    block_iter_seek_last(&it->bi);
    si_skip_backward(it);
}

static void si_seek(iter *base, slice target)
{
    struct sst_iter *it = (struct sst_iter *)base;
    it->status = 0;
    uint32_t i = index_lower_bound(it->r, target);
    if (i >= it->r->nidx) {
        si_unload(it);
        return;
    }
    if (si_load(it, i) != 0)
        return;
    block_iter_seek(&it->bi, target);
    si_skip_forward(it, 0);
}

static void si_next(iter *base)
{
    struct sst_iter *it = (struct sst_iter *)base;
    assert(si_valid(base));
    if (!si_valid(base))
        return;
    block_iter_next(&it->bi);
    si_skip_forward(it, 1);
}

static void si_prev(iter *base)
{
    struct sst_iter *it = (struct sst_iter *)base;
    assert(si_valid(base));
    if (!si_valid(base))
        return;
    block_iter_prev(&it->bi);
    si_skip_backward(it);
}

static slice si_key(const iter *base)
{
    return block_iter_key(&((const struct sst_iter *)base)->bi);
}

static slice si_value(const iter *base)
{
    return block_iter_value(&((const struct sst_iter *)base)->bi);
}

static int si_status(const iter *base)
{
    return ((const struct sst_iter *)base)->status;
}

static void si_destroy(iter *base)
{
    struct sst_iter *it = (struct sst_iter *)base;
    si_unload(it);
    free(it);
}

static const struct iter_ops sst_iter_ops = {
    .valid = si_valid,
    .seek_first = si_seek_first,
    .seek_last = si_seek_last,
    .seek = si_seek,
    .next = si_next,
    .prev = si_prev,
    .key = si_key,
    .value = si_value,
    .status = si_status,
    .destroy = si_destroy,
};

iter *sst_reader_iter_new(sst_reader *r, int fill_cache)
{
    struct sst_iter *it = calloc(1, sizeof(*it));
    if (it == NULL)
        return NULL;
    iter_init(&it->base, &sst_iter_ops);
    it->r = r;
    it->fill_cache = fill_cache;
    return &it->base;
}

/* ---- Salvage scan ------------------------------------------------------------------------- */

/* Bytes of the file the trailer search reads at a time (plus a trailer of look-ahead). */
#define SCAN_WINDOW (1u << 20)

struct scan_hint {
    uint64_t off, size;
    slice sep; /* the block's separator; size 0 unless the index verified */
};

struct sst_scan {
    sst_reader r; /* f, file_size, name, log: what read_block needs */
    uint64_t data_end;
    int data_end_known; /* from a verified footer or index; else blocks are found by search */
    struct scan_hint *hints;
    size_t nhints, next_hint;
    int strict; /* hints tile the data region and come from a verified index */
    struct cached_block *cur;
    uint64_t pos;
    buf last;  /* last key of the previous good block */
    buf first; /* first key of the current block */
    int have_last;
    int in_gap;
    uint64_t gap_start;
    const char *gap_why;
    buf gap_lower;
    int gap_has_lower;
    size_t gap_first_hint; /* strict: hint index where the gap starts */
    int index_found;       /* search: the index block was met where the footer says */
    int ended;
    sst_scan_stats st;
};

/* Orders hints by offset (qsort). */
static int hint_cmp(const void *a, const void *b)
{
    const struct scan_hint *x = a, *y = b;
    return (x->off > y->off) - (x->off < y->off);
}

/* Hints from an index block that failed its checks: every entry that still decodes, in
 * whatever order; each block they point at proves itself by its own checksum. */
static int scan_lenient_hints(sst_scan *s, slice contents)
{
    const char *p = contents.data;
    const char *limit = contents.data + (contents.size >= 4 ? contents.size - 4 : 0);
    size_t cap = 0;
    while (p < limit) {
        uint32_t shared, nonshared, vlen;
        uint64_t off, size;
        p = coding_get_varint32(p, limit, &shared);
        if (p)
            p = coding_get_varint32(p, limit, &nonshared);
        if (p)
            p = coding_get_varint32(p, limit, &vlen);
        if (!p || shared != 0 || nonshared > (size_t)(limit - p) ||
            vlen > (size_t)(limit - p) - nonshared)
            break;
        slice v = slice_make(p + nonshared, vlen);
        p += (size_t)nonshared + vlen;
        if (!coding_slice_get_varint64(&v, &off) || !coding_slice_get_varint64(&v, &size) ||
            v.size != 0 || off > s->data_end || size > s->data_end - off ||
            SST_TRAILER_SIZE > s->data_end - off - size)
            continue;
        if (s->nhints == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct scan_hint *nh = realloc(s->hints, ncap * sizeof(*nh));
            if (!nh)
                return KV_ENOMEM;
            s->hints = nh;
            cap = ncap;
        }
        s->hints[s->nhints].off = off;
        s->hints[s->nhints].size = size;
        s->hints[s->nhints].sep = slice_make(NULL, 0);
        s->nhints++;
    }
    if (s->nhints)
        qsort(s->hints, s->nhints, sizeof(*s->hints), hint_cmp);
    return 0;
}

/* A file without a footer (a truncated table): the data may run to its end. read_block's limit
 * is the file size minus a footer, so pretend one follows. */
static int scan_no_footer(sst_scan *s, uint64_t file_size)
{
    corrupt(&s->r, "footer", file_size >= SST_FOOTER_SIZE ? file_size - SST_FOOTER_SIZE : 0,
            "no footer (truncated?): searching the whole file for blocks");
    s->st.footer_ok = s->st.index_ok = s->st.filter_ok = 0;
    s->data_end = file_size;
    s->data_end_known = 0;
    cached_block_free(s->r.filter_blk);
    s->r.filter_blk = NULL;
    s->r.filter = slice_make(NULL, 0);
    s->r.file_size = file_size + SST_FOOTER_SIZE;
    return 0;
}

/* Reads the footer and, if they verify, the index and filter; sets the data region and the
 * block hints. Damage is logged and noted in the stats; only I/O errors and ENOMEM fail. */
static int scan_open_meta(sst_scan *s, uint64_t file_size)
{
    sst_reader *r = &s->r;
    char footer[SST_FOOTER_SIZE];
    size_t got = 0;
    int rc, magic = 0;

    s->data_end = file_size;
    if (file_size >= SST_FOOTER_SIZE) {
        rc = env_pread(r->f, footer, sizeof footer, file_size - SST_FOOTER_SIZE, &got);
        if (rc != 0)
            return rc;
    }
    if (got != sizeof footer)
        return scan_no_footer(s, file_size);
    magic = coding_get_fixed64(footer + SST_FOOTER_MAGIC) == SST_MAGIC;
    uint64_t foff = file_size - SST_FOOTER_SIZE;
    s->st.footer_ok = magic &&
                      checksum_value(footer, SST_FOOTER_CHECKSUM) ==
                          coding_get_fixed64(footer + SST_FOOTER_CHECKSUM) &&
                      coding_get_fixed32(footer + SST_FOOTER_VERSION) == SST_FORMAT_VERSION &&
                      coding_get_fixed32(footer + SST_FOOTER_RESERVED) == 0;
    if (!s->st.footer_ok)
        corrupt(r, "footer", foff,
                magic ? "checksum, version or reserved field wrong: its handles are only hints"
                      : "bad magic number: its handles are only hints (truncated?)");
    s->st.footer_entries = coding_get_fixed64(footer + SST_FOOTER_NUM_ENTRIES);
    uint64_t fo = coding_get_fixed64(footer + SST_FOOTER_FILTER_OFF);
    uint64_t fs = coding_get_fixed64(footer + SST_FOOTER_FILTER_SIZE);
    uint64_t io = coding_get_fixed64(footer + SST_FOOTER_INDEX_OFF);
    uint64_t is = coding_get_fixed64(footer + SST_FOOTER_INDEX_SIZE);
    if (io > foff || is > foff - io || foff - io - is != SST_TRAILER_SIZE) {
        if (!magic)
            return scan_no_footer(s, file_size);
        s->data_end = foff;
        return 0; /* no usable index handle: search up to the footer */
    }
    uint64_t data_end = io;
    int filter_fits =
        fs == 0 ? fo == 0 : fo <= io && fs <= io - fo && io - fo - fs == SST_TRAILER_SIZE;
    if (filter_fits && fs) {
        struct cached_block *fb;
        rc = read_block(r, "filter block", fo, fs, 1, &fb);
        if (rc != 0 && rc != KV_ECORRUPT)
            return rc;
        if (rc == 0 && bloom_filter_valid(fb->contents)) {
            s->st.filter_ok = 1;
            r->filter_blk = fb;
            r->filter = fb->contents;
        } else if (rc == 0) {
            corrupt(r, "filter block", fo, "malformed Bloom filter");
            cached_block_free(fb);
        }
        data_end = fo;
    } else {
        s->st.filter_ok = filter_fits;
    }
    struct cached_block *ib = NULL;
    rc = read_kv_block(r, "index block", io, is, 1, &ib);
    if (rc != 0 && rc != KV_ECORRUPT)
        return rc;
    if (rc == 0 && filter_fits) {
        r->index_blk = ib;
        r->data_end = data_end;
        rc = parse_index(r, io);
        if (rc != 0 && rc != KV_ECORRUPT)
            return rc;
        if (rc == 0) {
            s->st.index_ok = 1;
            s->strict = 1;
            s->data_end_known = 1;
            s->data_end = data_end;
            s->hints = calloc(r->nidx ? r->nidx : 1, sizeof(*s->hints));
            if (!s->hints)
                return KV_ENOMEM;
            for (uint32_t i = 0; i < r->nidx; i++) {
                s->hints[i].off = r->idx[i].off;
                s->hints[i].size = r->idx[i].size;
                s->hints[i].sep = r->idx[i].key;
            }
            s->nhints = r->nidx;
            return 0;
        }
    } else {
        cached_block_free(ib);
    }
    if (!magic)
        return scan_no_footer(s, file_size); /* the index did not prove the footer real */
    /* Without the index pinning the layout, a block with a good checksum where the footer
     * says the filter is might be some other block: rule nothing out with it. */
    cached_block_free(r->filter_blk);
    r->filter_blk = NULL;
    r->filter = slice_make(NULL, 0);
    s->data_end = foff;
    if (s->st.footer_ok && filter_fits) {
        s->data_end = data_end;
        s->data_end_known = 1;
    }
    /* The index is damaged: what its entries still say is a hint. */
    struct cached_block *raw = NULL;
    rc = read_block(r, "index block (unverified)", io, is, 0, &raw);
    if (rc == 0)
        rc = scan_lenient_hints(s, raw->contents);
    cached_block_free(raw);
    return rc == KV_ECORRUPT ? 0 : rc;
}

int sst_scan_open(env_file *f, uint64_t file_size, const char *name, const kv_logger *log,
                  sst_scan **out)
{
    *out = NULL;
    sst_scan *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->r.name = strdup(name ? name : "?")) == NULL) {
        free(s);
        env_close(f);
        return KV_ENOMEM;
    }
    s->r.f = f;
    s->r.file_size = file_size;
    if (log) {
        s->r.log = *log;
    } else {
        s->r.log.fn = NULL;
        s->r.log.ctx = NULL;
        s->r.log.level = KV_LOG_WARN;
    }
    buf_init(&s->last);
    buf_init(&s->first);
    buf_init(&s->gap_lower);
    int rc = scan_open_meta(s, file_size);
    if (rc != 0) {
        sst_scan_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void sst_scan_close(sst_scan *s)
{
    if (s == NULL)
        return;
    cached_block_free(s->cur);
    free(s->hints);
    buf_free(&s->last);
    buf_free(&s->first);
    buf_free(&s->gap_lower);
    env_close(s->r.f);
    free(s->r.idx);
    cached_block_free(s->r.index_blk);
    cached_block_free(s->r.filter_blk);
    free(s->r.name);
    free(s);
}

int sst_scan_filter(const sst_scan *s, slice *filter)
{
    *filter = s->r.filter;
    return s->r.filter_blk != NULL;
}

void sst_scan_get_stats(const sst_scan *s, sst_scan_stats *st)
{
    *st = s->st;
}

/* Searches [pos, data_end) for the first offset e where a trailer (type 0 or 1, then the
 * checksum of bytes [pos, e] ) matches: the block at pos is then e - pos bytes. Returns 1 and
 * *size, 0 if there is none, or an I/O error. Cost: O(bytes searched). */
static int scan_find_block_end(sst_scan *s, uint64_t pos, uint64_t *size)
{
    checksum_state st, tmp;
    char *w = malloc(SCAN_WINDOW + SST_TRAILER_SIZE);
    uint64_t wstart = pos, wend = pos;
    int rc = 0;
    if (!w)
        return KV_ENOMEM;
    checksum_begin(&st);
    for (uint64_t e = pos; e + SST_TRAILER_SIZE <= s->data_end; e++) {
        if (e + SST_TRAILER_SIZE > wend) {
            uint64_t want = s->data_end - e < SCAN_WINDOW + SST_TRAILER_SIZE
                                ? s->data_end - e
                                : SCAN_WINDOW + SST_TRAILER_SIZE;
            size_t got = 0;
            rc = env_pread(s->r.f, w, (size_t)want, e, &got);
            if (rc != 0)
                break;
            wstart = e;
            wend = e + got;
            if (e + SST_TRAILER_SIZE > wend)
                break; /* the file is shorter than it was */
        }
        const char *b = w + (e - wstart);
        if (e > pos && (unsigned char)b[0] <= SST_BLOCK_ZSTD) {
            memcpy(&tmp, &st, sizeof tmp);
            checksum_update(&tmp, b, 1);
            if (checksum_end(&tmp) == coding_get_fixed64(b + 1)) {
                *size = e - pos;
                rc = 1;
                break;
            }
        }
        checksum_update(&st, b, 1);
    }
    free(w);
    return rc;
}

/* Checks every entry of a block: well-formed internal keys in strictly increasing order, all
 * after the previous good block's last key. Returns NULL or the failed check. */
static const char *scan_check_block(sst_scan *s, struct cached_block *cb, uint64_t *entries)
{
    struct block_iter bi;
    const char *why = NULL;
    slice prev = s->have_last ? buf_slice(&s->last) : slice_make(NULL, 0);
    int have_prev = s->have_last;
    buf cur;
    buf_init(&cur);
    block_iter_init(&bi, &cb->b, ikey_compare, NULL);
    *entries = 0;
    for (block_iter_seek_first(&bi); block_iter_valid(&bi); block_iter_next(&bi)) {
        slice k = block_iter_key(&bi);
        ikey_parsed pk;
        if (!ikey_parse(k, &pk)) {
            why = "malformed internal key";
            break;
        }
        if (have_prev && ikey_compare(prev, k) >= 0) {
            why = "keys out of order";
            break;
        }
        buf_clear(&cur);
        if (buf_append(&cur, k.data, k.size) != 0) {
            why = "out of memory";
            break;
        }
        prev = buf_slice(&cur);
        have_prev = 1;
        (*entries)++;
    }
    if (!why && block_iter_status(&bi) != 0)
        why = "malformed entry";
    if (!why && *entries == 0)
        why = "empty data block";
    if (!why) {
        block_iter_seek_first(&bi);
        buf_clear(&s->first);
        if (!block_iter_valid(&bi) ||
            buf_append(&s->first, block_iter_key(&bi).data, block_iter_key(&bi).size) != 0)
            why = "out of memory"; /* valid: checked above */
    }
    block_iter_release(&bi);
    buf_free(&cur);
    return why;
}

static void scan_gap_start(sst_scan *s, uint64_t pos, const char *why)
{
    if (s->in_gap)
        return;
    s->in_gap = 1;
    s->gap_start = pos;
    s->gap_why = why;
    s->gap_first_hint = s->next_hint;
    buf_clear(&s->gap_lower);
    s->gap_has_lower = 0;
    if (s->strict && s->next_hint > 0) {
        slice sep = s->hints[s->next_hint - 1].sep;
        s->gap_has_lower = buf_append(&s->gap_lower, sep.data, sep.size) == 0;
    } else if (s->have_last) {
        s->gap_has_lower = buf_append(&s->gap_lower, s->last.data, s->last.len) == 0;
    }
}

/* Reports the gap that ends at `end`; upper (if non-NULL) bounds the keys it held. */
static void scan_gap_end(sst_scan *s, uint64_t end, const slice *upper, sst_scan_loss_fn fn,
                         void *ctx)
{
    if (!s->in_gap)
        return;
    sst_scan_loss l;
    memset(&l, 0, sizeof l);
    l.offset = s->gap_start;
    l.bytes = end - s->gap_start;
    l.why = s->gap_why;
    l.has_lower = s->gap_has_lower;
    l.lower = buf_slice(&s->gap_lower);
    if (upper) {
        l.has_upper = 1;
        l.upper = *upper;
    }
    s->st.bytes_lost += l.bytes;
    kv_log(&s->r.log, KV_LOG_ERROR,
           "sst %s: data blocks at offset %llu: %llu bytes lost (%s); the rest is salvaged",
           s->r.name, (unsigned long long)l.offset, (unsigned long long)l.bytes, l.why);
    if (fn)
        fn(ctx, &l);
    s->in_gap = 0;
}

int sst_scan_next(sst_scan *s, sst_scan_loss_fn loss, void *ctx, const block **blk)
{
    *blk = NULL;
    for (;;) {
        cached_block_free(s->cur);
        s->cur = NULL;
        if (s->pos >= s->data_end) {
            if (s->ended)
                return 0;
            s->ended = 1;
            /* Without a verified footer or index, or the index found in place, nothing proves
             * that the data ended here (a table cut short at a block boundary looks the same):
             * whatever would have followed the last good block is lost. */
            if (!s->data_end_known && !s->index_found)
                scan_gap_start(s, s->data_end, "end of the data not proven (no footer)");
            const slice *upper = s->strict && s->nhints ? &s->hints[s->nhints - 1].sep : NULL;
            scan_gap_end(s, s->data_end, upper, loss, ctx);
            return 0;
        }
        while (s->next_hint < s->nhints && s->hints[s->next_hint].off < s->pos)
            s->next_hint++;
        struct cached_block *cb = NULL;
        uint64_t size = 0;
        int rc;
        if (s->next_hint < s->nhints && s->hints[s->next_hint].off == s->pos) {
            size = s->hints[s->next_hint].size;
            rc = read_kv_block(&s->r, "data block", s->pos, size, 1, &cb);
            if (rc != 0 && rc != KV_ECORRUPT)
                return rc;
            if (rc != 0 && s->strict) {
                scan_gap_start(s, s->pos, "block failed its checks");
                s->st.blocks_lost++;
                s->pos += size + SST_TRAILER_SIZE;
                s->next_hint++;
                continue;
            }
        }
        if (cb == NULL) {
            rc = scan_find_block_end(s, s->pos, &size);
            if (rc < 0)
                return rc;
            if (rc == 0) {
                /* No block starts here that can be proven: skip to the next hint, if any. */
                scan_gap_start(s, s->pos, "no block boundary found");
                s->st.blocks_lost++;
                size_t h = s->next_hint;
                while (h < s->nhints && s->hints[h].off <= s->pos)
                    h++;
                s->pos = h < s->nhints ? s->hints[h].off : s->data_end;
                continue;
            }
            if (!s->data_end_known && s->pos + size + SST_TRAILER_SIZE == s->data_end) {
                s->pos = s->data_end; /* the last block before the footer is the index */
                s->index_found = 1;
                continue;
            }
            rc = read_block(&s->r, "data block", s->pos, size, 1, &cb);
            if (rc != 0 && rc != KV_ECORRUPT)
                return rc;
            const char *why = NULL;
            if (rc == 0 && block_init(&cb->b, cb->contents.data, cb->contents.size, &why) != 0) {
                if (!s->data_end_known && bloom_filter_valid(cb->contents)) {
                    cached_block_free(cb); /* the filter block: not data */
                    s->pos += size + SST_TRAILER_SIZE;
                    continue;
                }
                corrupt(&s->r, "data block", s->pos, why);
                cached_block_free(cb);
                cb = NULL;
            }
            if (cb == NULL) {
                scan_gap_start(s, s->pos, "block failed its checks");
                s->st.blocks_lost++;
                s->pos += size + SST_TRAILER_SIZE;
                continue;
            }
        }
        uint64_t entries = 0;
        const char *why = scan_check_block(s, cb, &entries);
        if (why) {
            corrupt(&s->r, "data block", s->pos, why);
            cached_block_free(cb);
            scan_gap_start(s, s->pos, why);
            s->st.blocks_lost++;
            s->pos += size + SST_TRAILER_SIZE;
            continue;
        }
        if (s->in_gap) {
            slice first = buf_slice(&s->first);
            const slice *upper = &first;
            if (s->strict && s->next_hint > 0)
                upper = &s->hints[s->next_hint - 1].sep;
            scan_gap_end(s, s->pos, upper, loss, ctx);
        }
        struct block_iter bi;
        block_iter_init(&bi, &cb->b, ikey_compare, NULL);
        block_iter_seek_last(&bi);
        buf_clear(&s->last);
        rc = block_iter_valid(&bi)
                 ? buf_append(&s->last, block_iter_key(&bi).data, block_iter_key(&bi).size)
                 : KV_ECORRUPT; /* cannot happen: checked above */
        block_iter_release(&bi);
        if (rc != 0) {
            cached_block_free(cb);
            return rc;
        }
        s->have_last = 1;
        s->st.blocks_read++;
        s->st.entries += entries;
        s->pos += size + SST_TRAILER_SIZE;
        if (s->next_hint < s->nhints && s->hints[s->next_hint].off < s->pos)
            s->next_hint++;
        s->cur = cb;
        *blk = &cb->b;
        return 1;
    }
}
