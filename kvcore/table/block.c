/* block.c - block builder and bounds-checked block iterator (format in block.h, FORMAT.md).
 *
 * Invariants of a block_iter:
 *  1. valid implies status == 0 and cur < next_off <= b->restarts_off.
 *  2. When valid, restart_idx is the last restart with offset <= cur; run_start and run_end
 *     are that restart's offset and the next one's (restarts_off after the last).
 *  3. key.data points into the block or into kbuf; kbuf is kinline or owned and kcap long.
 *  4. status != 0 implies !valid, and stays so (a block's bytes never change).
 *  5. Entries tile each restart run exactly: an entry never extends past the next restart
 *     point, so forward and backward walks decode the same entries.
 */
#include "table/block.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "kvcore/kv.h"

/* ---- Parsing ----------------------------------------------------------------------------- */

int block_init(block *b, const char *data, size_t size, const char **why)
{
    memset(b, 0, sizeof(*b));
    if (size < BLOCK_RESTART_SIZE) {
        *why = "block shorter than its restart count";
        return KV_ECORRUPT;
    }
    if (size > UINT32_MAX) {
        *why = "block larger than 4 GiB";
        return KV_ECORRUPT;
    }
    uint32_t n = coding_get_fixed32(data + size - BLOCK_RESTART_SIZE);
    size_t max_restarts = (size - BLOCK_RESTART_SIZE) / BLOCK_RESTART_SIZE;
    if (n == 0 || n > max_restarts) {
        *why = "restart count out of range";
        return KV_ECORRUPT;
    }
    uint32_t restarts_off = (uint32_t)(size - BLOCK_RESTART_SIZE - (size_t)n * BLOCK_RESTART_SIZE);
    b->data = data;
    b->size = (uint32_t)size;
    b->restarts_off = restarts_off;
    b->num_restarts = n;
    if (block_restart(b, 0) != 0) {
        *why = "first restart is not at offset 0";
        return KV_ECORRUPT;
    }
    if (restarts_off == 0) {
        /* An empty block: exactly one restart, at 0. */
        if (n != 1) {
            *why = "empty block with several restarts";
            return KV_ECORRUPT;
        }
        return 0;
    }
    uint32_t prev = 0;
    for (uint32_t i = 1; i < n; i++) {
        uint32_t r = block_restart(b, i);
        if (r <= prev || r >= restarts_off) {
            *why = "restart offsets not increasing within the block";
            return KV_ECORRUPT;
        }
        prev = r;
    }
    return 0;
}

/* Decodes the three varint32 lengths of the entry at p; returns the byte after them or NULL. */
static inline const char *decode_entry_header(const char *p, const char *limit, uint32_t *shared,
                                              uint32_t *non_shared, uint32_t *vlen)
{
    if (limit - p < 3)
        return NULL;
    *shared = (unsigned char)p[0];
    *non_shared = (unsigned char)p[1];
    *vlen = (unsigned char)p[2];
    if ((*shared | *non_shared | *vlen) < 128)
        return p + 3; /* the common case: three one-byte varints */
    if ((p = coding_get_varint32(p, limit, shared)) == NULL)
        return NULL;
    if ((p = coding_get_varint32(p, limit, non_shared)) == NULL)
        return NULL;
    return coding_get_varint32(p, limit, vlen);
}

int block_decode_restart_entry(const block *b, uint32_t off, uint32_t limit, slice *key,
                               slice *value, uint32_t *end, const char **why)
{
    uint32_t shared, non_shared, vlen;
    if (limit > b->restarts_off || off >= limit) {
        *why = "entry offset out of range";
        return KV_ECORRUPT;
    }
    const char *lim = b->data + limit;
    const char *p = decode_entry_header(b->data + off, lim, &shared, &non_shared, &vlen);
    if (p == NULL) {
        *why = "bad entry header";
        return KV_ECORRUPT;
    }
    if (shared != 0) {
        *why = "restart entry shares a prefix";
        return KV_ECORRUPT;
    }
    size_t avail = (size_t)(lim - p);
    if (non_shared > avail || vlen > avail - non_shared) {
        *why = "entry runs past the end of the block";
        return KV_ECORRUPT;
    }
    *key = slice_make(p, non_shared);
    *value = slice_make(p + non_shared, vlen);
    *end = (uint32_t)(p + non_shared + vlen - b->data);
    return 0;
}

/* ---- Iterator ---------------------------------------------------------------------------- */

#ifndef NDEBUG
static int block_iter_check_invariants(const struct block_iter *it)
{
    if (it->valid) {
        if (it->status != 0 || it->cur >= it->next_off || it->next_off > it->b->restarts_off)
            return 0;
        if (it->restart_idx >= it->b->num_restarts ||
            block_restart(it->b, it->restart_idx) > it->cur)
            return 0;
        if (it->restart_idx + 1 < it->b->num_restarts &&
            block_restart(it->b, it->restart_idx + 1) <= it->cur)
            return 0;
        if (it->run_start != block_restart(it->b, it->restart_idx) ||
            it->run_end != (it->restart_idx + 1 < it->b->num_restarts
                                ? block_restart(it->b, it->restart_idx + 1)
                                : it->b->restarts_off))
            return 0;
    }
    if (it->kbuf != it->kinline && it->kcap <= sizeof(it->kinline))
        return 0;
    return it->status == 0 || !it->valid;
}
#endif

static void corrupt(struct block_iter *it, uint32_t at, const char *why)
{
    it->valid = 0;
    it->status = KV_ECORRUPT;
    it->key = it->value = slice_make(NULL, 0);
    const block_origin *o = &it->origin;
    if (o->log)
        kv_log(o->log, KV_LOG_ERROR, "sst %s: %s block at offset %llu: %s (entry at %u)",
               o->file ? o->file : "?", o->kind ? o->kind : "data", (unsigned long long)o->offset,
               why, at);
}

/* Makes kbuf hold at least n bytes, keeping its first `keep` bytes. 0 or KV_ENOMEM. */
static int key_reserve(struct block_iter *it, size_t n, size_t keep)
{
    if (n <= it->kcap)
        return 0;
    size_t cap = it->kcap * 2;
    if (cap < n)
        cap = n;
    char *p = malloc(cap);
    if (p == NULL)
        return KV_ENOMEM;
    memcpy(p, it->kbuf, keep);
    if (it->kbuf != it->kinline)
        free(it->kbuf);
    it->kbuf = p;
    it->kcap = cap;
    return 0;
}

/* Makes restart run ri current: restart_idx, run_start, run_end. */
static void set_run(struct block_iter *it, uint32_t ri)
{
    const block *b = it->b;
    it->restart_idx = ri;
    it->run_start = block_restart(b, ri);
    it->run_end = ri + 1 < b->num_restarts ? block_restart(b, ri + 1) : b->restarts_off;
}

/* Decodes the entry at it->next_off, which follows the current entry (or starts a restart run
 * with it->key empty). At the end of the entries the iterator becomes invalid, status 0. */
static void decode_next(struct block_iter *it)
{
    const block *b = it->b;
    uint32_t off = it->next_off;
    if (off >= b->restarts_off) {
        it->valid = 0;
        return;
    }
    /* Entries never straddle a restart point, so that walking backward (which restarts at the
     * previous restart point) decodes exactly the entries walking forward did. Restarts
     * increase strictly (block_init), so off reached the end of its run exactly or not at all
     * (a longer entry was refused below); the loop only guards against a block_init bug. */
    if (off >= it->run_end) {
        uint32_t ri = it->restart_idx;
        while (ri + 1 < b->num_restarts && block_restart(b, ri + 1) <= off)
            ri++;
        set_run(it, ri);
    }
    const char *limit = b->data + it->run_end;
    uint32_t shared, non_shared, vlen;
    const char *p = decode_entry_header(b->data + off, limit, &shared, &non_shared, &vlen);
    if (p == NULL) {
        corrupt(it, off, "bad entry header or entry crosses a restart point");
        return;
    }
    size_t avail = (size_t)(limit - p);
    if (non_shared > avail || vlen > avail - non_shared) {
        corrupt(it, off, "entry runs past its restart run or the block");
        return;
    }
    int at_restart = it->run_start == off;
    if (at_restart ? shared != 0 : shared > it->key.size) {
        corrupt(it, off, at_restart ? "restart entry shares a prefix" : "shared prefix too long");
        return;
    }
    if (shared == 0) {
        it->key = slice_make(p, non_shared);
    } else {
        size_t klen = (size_t)shared + non_shared;
        if (it->key.data != it->kbuf) {
            /* The previous key lives in the block: bring its prefix into kbuf. */
            if (key_reserve(it, klen, 0) != 0) {
                it->valid = 0;
                it->status = KV_ENOMEM;
                return;
            }
            memcpy(it->kbuf, it->key.data, shared);
        } else if (key_reserve(it, klen, shared) != 0) {
            it->valid = 0;
            it->status = KV_ENOMEM;
            return;
        }
        memcpy(it->kbuf + shared, p, non_shared);
        it->key = slice_make(it->kbuf, klen);
    }
    it->value = slice_make(p + non_shared, vlen);
    it->cur = off;
    it->next_off = (uint32_t)(p + non_shared + vlen - b->data);
    it->valid = 1;
    assert(block_iter_check_invariants(it));
}

static void seek_to_restart(struct block_iter *it, uint32_t i)
{
    it->key = slice_make(NULL, 0);
    set_run(it, i);
    it->next_off = it->run_start;
    decode_next(it);
}

void block_iter_init(struct block_iter *it, const block *b, block_cmp_fn cmp,
                     const block_origin *origin)
{
    memset(it, 0, offsetof(struct block_iter, kinline));
    it->b = b;
    it->cmp = cmp;
    if (origin)
        it->origin = *origin;
    it->kbuf = it->kinline;
    it->kcap = sizeof(it->kinline);
}

void block_iter_release(struct block_iter *it)
{
    if (it->kbuf != it->kinline)
        free(it->kbuf);
    it->kbuf = it->kinline;
    it->kcap = sizeof(it->kinline);
    it->valid = 0;
}

void block_iter_seek_first(struct block_iter *it)
{
    if (it->status)
        return;
    seek_to_restart(it, 0);
}

void block_iter_seek_last(struct block_iter *it)
{
    if (it->status)
        return;
    seek_to_restart(it, it->b->num_restarts - 1);
    while (it->valid && it->next_off < it->b->restarts_off)
        decode_next(it);
}

void block_iter_seek(struct block_iter *it, slice target)
{
    if (it->status)
        return;
    const block *b = it->b;
    if (b->restarts_off == 0) {
        it->valid = 0;
        return;
    }
    /* Find the last restart whose key is < target: every entry before it is < target too. */
    uint32_t lo = 0, hi = b->num_restarts - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        uint32_t off = block_restart(b, mid), end;
        uint32_t run_end = mid + 1 < b->num_restarts ? block_restart(b, mid + 1) : b->restarts_off;
        slice k, v;
        const char *why;
        if (block_decode_restart_entry(b, off, run_end, &k, &v, &end, &why) != 0) {
            corrupt(it, off, why);
            return;
        }
        if (it->cmp(k, target) < 0)
            lo = mid;
        else
            hi = mid - 1;
    }
    seek_to_restart(it, lo);
    while (it->valid && it->cmp(it->key, target) < 0)
        decode_next(it);
}

void block_iter_next(struct block_iter *it)
{
    assert(it->valid);
    if (!it->valid)
        return;
    decode_next(it);
}

void block_iter_prev(struct block_iter *it)
{
    assert(it->valid);
    if (!it->valid)
        return;
    const block *b = it->b;
    uint32_t original = it->cur;
    uint32_t ri = it->restart_idx;
    while (block_restart(b, ri) >= original) {
        if (ri == 0) {
            it->valid = 0; /* before the first entry */
            return;
        }
        ri--;
    }
    seek_to_restart(it, ri);
    while (it->valid && it->next_off < original)
        decode_next(it);
    if (it->valid && it->next_off != original)
        corrupt(it, it->cur, "entries overlap a restart point"); /* cannot happen after init */
}

/* ---- Generic iterator wrapper ------------------------------------------------------------ */

static int bi_valid(const iter *it)
{
    return ((const struct block_iter *)it)->valid;
}
static void bi_seek_first(iter *it)
{
    block_iter_seek_first((struct block_iter *)it);
}
static void bi_seek_last(iter *it)
{
    block_iter_seek_last((struct block_iter *)it);
}
static void bi_seek(iter *it, slice target)
{
    block_iter_seek((struct block_iter *)it, target);
}
static void bi_next(iter *it)
{
    block_iter_next((struct block_iter *)it);
}
static void bi_prev(iter *it)
{
    block_iter_prev((struct block_iter *)it);
}
static slice bi_key(const iter *it)
{
    return ((const struct block_iter *)it)->key;
}
static slice bi_value(const iter *it)
{
    return ((const struct block_iter *)it)->value;
}
static int bi_status(const iter *it)
{
    return ((const struct block_iter *)it)->status;
}
static void bi_destroy(iter *it)
{
    block_iter_release((struct block_iter *)it);
    free(it);
}

static const struct iter_ops block_iter_ops = {
    .valid = bi_valid,
    .seek_first = bi_seek_first,
    .seek_last = bi_seek_last,
    .seek = bi_seek,
    .next = bi_next,
    .prev = bi_prev,
    .key = bi_key,
    .value = bi_value,
    .status = bi_status,
    .destroy = bi_destroy,
};

iter *block_iter_new(const block *b, block_cmp_fn cmp, const block_origin *origin)
{
    struct block_iter *it = malloc(sizeof(*it));
    if (it == NULL)
        return NULL;
    block_iter_init(it, b, cmp, origin);
    iter_init(&it->base, &block_iter_ops);
    return &it->base;
}

/* ---- Builder ----------------------------------------------------------------------------- */

void block_builder_init(block_builder *bb, int restart_interval)
{
    memset(bb, 0, sizeof(*bb));
    buf_init(&bb->data);
    buf_init(&bb->last_key);
    bb->interval = restart_interval < 1 ? 1 : restart_interval;
}

void block_builder_free(block_builder *bb)
{
    buf_free(&bb->data);
    buf_free(&bb->last_key);
    free(bb->restarts);
    memset(bb, 0, sizeof(*bb));
}

void block_builder_reset(block_builder *bb)
{
    buf_clear(&bb->data);
    buf_clear(&bb->last_key);
    bb->num_restarts = 0;
    bb->counter = 0;
    bb->num_entries = 0;
    bb->finished = 0;
}

size_t block_builder_size_estimate(const block_builder *bb)
{
    size_t restarts = bb->num_restarts ? bb->num_restarts : 1;
    return bb->data.len + restarts * BLOCK_RESTART_SIZE + BLOCK_RESTART_SIZE;
}

static int push_restart(block_builder *bb, uint32_t off)
{
    if (bb->num_restarts == bb->restarts_cap) {
        size_t cap = bb->restarts_cap ? bb->restarts_cap * 2 : 16;
        uint32_t *r = realloc(bb->restarts, cap * sizeof(*r));
        if (r == NULL)
            return KV_ENOMEM;
        bb->restarts = r;
        bb->restarts_cap = cap;
    }
    bb->restarts[bb->num_restarts++] = off;
    return 0;
}

int block_builder_add(block_builder *bb, slice key, slice value)
{
    assert(!bb->finished);
    if (bb->finished)
        return KV_EINVAL;
    size_t shared = 0;
    int restart = bb->counter == 0 || bb->counter >= bb->interval;
    if (!restart) {
        size_t n = key.size < bb->last_key.len ? key.size : bb->last_key.len;
        while (shared < n && key.data[shared] == bb->last_key.data[shared])
            shared++;
    }
    size_t non_shared = key.size - shared;
    size_t need = 3 * CODING_MAX_VARINT32 + non_shared + value.size;
    /* Keep every offset, and the finished block, below 4 GiB. */
    if (key.size > UINT32_MAX || value.size > UINT32_MAX ||
        block_builder_size_estimate(bb) + need + BLOCK_RESTART_SIZE > UINT32_MAX)
        return KV_EINVAL;
    if (buf_reserve(&bb->data, need) != 0 || buf_reserve(&bb->last_key, key.size) != 0)
        return KV_ENOMEM;
    if (restart) {
        if (push_restart(bb, (uint32_t)bb->data.len) != 0)
            return KV_ENOMEM;
        bb->counter = 0;
    }
    char *p = bb->data.data + bb->data.len;
    p = coding_put_varint32(p, (uint32_t)shared);
    p = coding_put_varint32(p, (uint32_t)non_shared);
    p = coding_put_varint32(p, (uint32_t)value.size);
    if (non_shared)
        memcpy(p, key.data + shared, non_shared);
    p += non_shared;
    if (value.size)
        memcpy(p, value.data, value.size);
    p += value.size;
    bb->data.len = (size_t)(p - bb->data.data);
    if (non_shared)
        memcpy(bb->last_key.data + shared, key.data + shared, non_shared);
    bb->last_key.len = key.size;
    bb->counter++;
    bb->num_entries++;
    return 0;
}

int block_builder_finish(block_builder *bb, slice *out)
{
    if (!bb->finished) {
        if (bb->num_restarts == 0 && push_restart(bb, 0) != 0)
            return KV_ENOMEM;
        if (buf_reserve(&bb->data, (bb->num_restarts + 1) * BLOCK_RESTART_SIZE) != 0)
            return KV_ENOMEM;
        for (size_t i = 0; i < bb->num_restarts; i++)
            buf_append_fixed32(&bb->data, bb->restarts[i]); /* cannot fail: reserved */
        buf_append_fixed32(&bb->data, (uint32_t)bb->num_restarts);
        bb->finished = 1;
    }
    *out = buf_slice(&bb->data);
    return 0;
}
