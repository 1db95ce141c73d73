/* batch.c - write batches: the public kv_batch_* API and the encoding shared with the WAL.
 *
 * Invariants:
 *  1. rep.len >= BATCH_HEADER_SIZE; rep holds sequence:fixed64 count:fixed32 then exactly
 *     `count` well-formed ops (batch.h grammar) for every batch built through this API.
 *  2. A failed kv_batch_put/kv_batch_delete/batch_append leaves the batch unchanged.
 *
 * batch_iterate validates the whole encoding before calling any handler, so that a malformed
 * batch is never half applied.
 */
#include "db/batch.h"

#include <stdlib.h>
#include <string.h>

#include "util/ikey.h"

#define BATCH_TAG_DELETE 0
#define BATCH_TAG_PUT 1
#define BATCH_COUNT_OFFSET 8

static void batch_set_count(kv_batch *b, uint32_t n)
{
    coding_put_fixed32(b->rep.data + BATCH_COUNT_OFFSET, n);
}

/* Resets b to an empty batch with sequence 0. Returns 0 or KV_ENOMEM. */
static int batch_reset(kv_batch *b)
{
    buf_clear(&b->rep);
    if (buf_reserve(&b->rep, BATCH_HEADER_SIZE) != 0)
        return KV_ENOMEM;
    char zero[BATCH_HEADER_SIZE] = {0};
    return buf_append(&b->rep, zero, sizeof(zero));
}

kv_batch *kv_batch_new(void)
{
    kv_batch *b = malloc(sizeof(*b));
    if (!b)
        return NULL;
    buf_init(&b->rep);
    if (batch_reset(b) != 0) {
        buf_free(&b->rep);
        free(b);
        return NULL;
    }
    return b;
}

void kv_batch_free(kv_batch *b)
{
    if (!b)
        return;
    buf_free(&b->rep);
    free(b);
}

void kv_batch_clear(kv_batch *b)
{
    /* The buffer already holds at least a header, so this cannot fail (invariant 1). */
    b->rep.len = BATCH_HEADER_SIZE;
    memset(b->rep.data, 0, BATCH_HEADER_SIZE);
}

uint64_t batch_sequence(const kv_batch *b)
{
    return coding_get_fixed64(b->rep.data);
}

void batch_set_sequence(kv_batch *b, uint64_t seq)
{
    coding_put_fixed64(b->rep.data, seq);
}

uint32_t batch_count(const kv_batch *b)
{
    return coding_get_fixed32(b->rep.data + BATCH_COUNT_OFFSET);
}

size_t kv_batch_count(const kv_batch *b)
{
    return batch_count(b);
}

size_t kv_batch_byte_size(const kv_batch *b)
{
    return b->rep.len;
}

/* Encodes one op at dst, which has room for batch_op_max_size() bytes; returns its end. The
 * write path builds one op per put, so this writes the bytes directly instead of through
 * buf_append's checks (measured with callgrind: a single put's encoding went from ~450 to
 * ~100 instructions). */
static char *batch_encode_op(char *dst, int tag, slice key, const slice *value)
{
    *dst++ = (char)tag;
    dst = coding_put_varint32(dst, (uint32_t)key.size);
    if (key.size)
        memcpy(dst, key.data, key.size);
    dst += key.size;
    if (value) {
        dst = coding_put_varint32(dst, (uint32_t)value->size);
        if (value->size)
            memcpy(dst, value->data, value->size);
        dst += value->size;
    }
    return dst;
}

static size_t batch_op_max_size(slice key, const slice *value)
{
    size_t need = 1 + CODING_MAX_VARINT32 + key.size;
    if (value)
        need += CODING_MAX_VARINT32 + value->size;
    return need;
}

/* Whether one more op with key and a value of vlen bytes may join b. */
static int batch_op_fits(const kv_batch *b, slice key, size_t vlen)
{
    /* The key's internal form (key + 8-byte tag) must fit the memtable's 32-bit length. */
    if (key.size > UINT32_MAX - IKEY_TAG_SIZE || vlen > UINT32_MAX)
        return KV_EINVAL;
    return batch_count(b) == UINT32_MAX ? KV_EINVAL : 0;
}

/* Appends one op; the reservation up front makes the encoding below infallible. */
static int batch_add(kv_batch *b, int tag, slice key, const slice *value)
{
    int rc = batch_op_fits(b, key, value ? value->size : 0);
    if (rc != 0)
        return rc;
    uint32_t count = batch_count(b);
    if (buf_reserve(&b->rep, batch_op_max_size(key, value)) != 0)
        return KV_ENOMEM;
    char *end = batch_encode_op(b->rep.data + b->rep.len, tag, key, value);
    b->rep.len = (size_t)(end - b->rep.data);
    batch_set_count(b, count + 1);
    return 0;
}

int kv_batch_put(kv_batch *b, const void *key, size_t klen, const void *val, size_t vlen)
{
    if ((!key && klen) || (!val && vlen))
        return KV_EINVAL;
    slice v = slice_make(val, vlen);
    return batch_add(b, BATCH_TAG_PUT, slice_make(key, klen), &v);
}

int batch_put_begin(kv_batch *b, slice key, size_t vlen_hint, batch_pending *p)
{
    int rc = batch_op_fits(b, key, 0);
    if (rc != 0)
        return rc;
    p->op_start = b->rep.len;
    p->slot = (size_t)coding_varint_length(vlen_hint < UINT32_MAX ? vlen_hint : UINT32_MAX);
    if (buf_reserve(&b->rep, 1 + CODING_MAX_VARINT32 + key.size + p->slot) != 0)
        return KV_ENOMEM;
    char *q = batch_encode_op(b->rep.data + b->rep.len, BATCH_TAG_PUT, key, NULL);
    b->rep.len = (size_t)(q - b->rep.data) + p->slot;
    p->value_at = b->rep.len;
    return 0;
}

int batch_put_end(kv_batch *b, const batch_pending *p)
{
    size_t vlen = b->rep.len - p->value_at;
    if (vlen > UINT32_MAX) {
        batch_put_abort(b, p);
        return KV_EINVAL;
    }
    size_t need = (size_t)coding_varint_length(vlen);
    if (need > p->slot && buf_reserve(&b->rep, need - p->slot) != 0) {
        batch_put_abort(b, p);
        return KV_ENOMEM;
    }
    char *len_at = b->rep.data + p->value_at - p->slot;
    if (need != p->slot) /* the hint missed: the value moves to follow its real length */
        memmove(len_at + need, b->rep.data + p->value_at, vlen);
    coding_put_varint32(len_at, (uint32_t)vlen);
    b->rep.len = p->value_at - p->slot + need + vlen;
    batch_set_count(b, batch_count(b) + 1);
    return 0;
}

void batch_put_abort(kv_batch *b, const batch_pending *p)
{
    b->rep.len = p->op_start;
}

int batch_init_single(kv_batch *b, char *mem, size_t cap, int is_put, slice key, slice value)
{
    const slice *v = is_put ? &value : NULL;
    if (key.size > cap || value.size > cap || BATCH_HEADER_SIZE + batch_op_max_size(key, v) > cap)
        return KV_EINVAL;
    /* The whole encoding fits in cap, so the buffer is never reallocated. */
    coding_put_fixed64(mem, 0);
    coding_put_fixed32(mem + BATCH_COUNT_OFFSET, 1);
    char *end =
        batch_encode_op(mem + BATCH_HEADER_SIZE, is_put ? BATCH_TAG_PUT : BATCH_TAG_DELETE, key, v);
    b->rep.data = mem;
    b->rep.len = (size_t)(end - mem);
    b->rep.cap = cap;
    return 0;
}

int kv_batch_delete(kv_batch *b, const void *key, size_t klen)
{
    if (!key && klen)
        return KV_EINVAL;
    return batch_add(b, BATCH_TAG_DELETE, slice_make(key, klen), NULL);
}

int batch_append(kv_batch *dst, const kv_batch *src)
{
    uint64_t total = (uint64_t)batch_count(dst) + batch_count(src);
    if (total > UINT32_MAX)
        return KV_EINVAL; /* needs > 12 GiB of ops; reported rather than wrapped */
    size_t ops = src->rep.len - BATCH_HEADER_SIZE;
    /* Reserve first, so that src's bytes are read after any move (dst may be src). */
    if (buf_reserve(&dst->rep, ops) != 0)
        return KV_ENOMEM;
    if (buf_append(&dst->rep, src->rep.data + BATCH_HEADER_SIZE, ops) != 0)
        return KV_ENOMEM; /* cannot happen after the reservation */
    batch_set_count(dst, (uint32_t)total);
    return 0;
}

int batch_set_contents(kv_batch *b, slice rep)
{
    if (rep.size < BATCH_HEADER_SIZE)
        return KV_ECORRUPT;
    if (rep.size > b->rep.cap && buf_reserve(&b->rep, rep.size - b->rep.len) != 0)
        return KV_ENOMEM;
    buf_clear(&b->rep);
    return buf_append(&b->rep, rep.data, rep.size); /* cannot fail after the reservation */
}

/* One decoded operation. */
typedef struct batch_op {
    int tag;
    slice key;
    slice value;
} batch_op;

/* coding_slice_get_length_prefixed with the one-byte length (< 128, most keys and small
 * values) decoded inline: every op of every write is decoded twice (validate, then apply). */
static inline int batch_get_lenstr(slice *in, slice *out)
{
    if (in->size > 0 && (unsigned char)in->data[0] < 0x80) {
        size_t len = (unsigned char)in->data[0];
        if (len > in->size - 1)
            return 0;
        *out = slice_make(in->data + 1, len);
        in->data += 1 + len;
        in->size -= 1 + len;
        return 1;
    }
    return coding_slice_get_length_prefixed(in, out);
}

/* Decodes the op at the front of *in. Returns 1 and advances, or 0 if malformed. */
static inline int batch_next_op(slice *in, batch_op *op)
{
    if (in->size < 1)
        return 0;
    op->tag = (unsigned char)in->data[0];
    in->data++;
    in->size--;
    switch (op->tag) {
    case BATCH_TAG_PUT:
        return batch_get_lenstr(in, &op->key) && batch_get_lenstr(in, &op->value);
    case BATCH_TAG_DELETE:
        op->value = slice_make(NULL, 0);
        return batch_get_lenstr(in, &op->key);
    default:
        return 0;
    }
}

/* Checks the whole encoding: header, every op, the count, and that sequence numbers stay in
 * range. Returns 0 or KV_ECORRUPT. */
static int batch_validate(slice rep)
{
    if (rep.size < BATCH_HEADER_SIZE)
        return KV_ECORRUPT;
    uint64_t seq = coding_get_fixed64(rep.data);
    uint32_t count = coding_get_fixed32(rep.data + BATCH_COUNT_OFFSET);
    if (count > 0 && (seq > IKEY_MAX_SEQUENCE || count - 1 > IKEY_MAX_SEQUENCE - seq))
        return KV_ECORRUPT;
    slice in = slice_make(rep.data + BATCH_HEADER_SIZE, rep.size - BATCH_HEADER_SIZE);
    uint64_t found = 0;
    while (in.size > 0) {
        batch_op op;
        if (!batch_next_op(&in, &op) || ++found > count)
            return KV_ECORRUPT;
    }
    return found == count ? 0 : KV_ECORRUPT;
}

int batch_iterate(slice rep, const batch_handler *h)
{
    int rc = batch_validate(rep);
    if (rc != 0)
        return rc;
    uint64_t seq = coding_get_fixed64(rep.data);
    slice in = slice_make(rep.data + BATCH_HEADER_SIZE, rep.size - BATCH_HEADER_SIZE);
    while (in.size > 0) {
        batch_op op;
        if (!batch_next_op(&in, &op))
            return KV_ECORRUPT; /* cannot happen: validated above */
        rc = op.tag == BATCH_TAG_PUT ? h->put(h->ctx, seq, op.key, op.value)
                                     : h->del(h->ctx, seq, op.key);
        if (rc != 0)
            return rc;
        seq++;
    }
    return 0;
}

static int memtable_put_op(void *ctx, uint64_t seq, slice key, slice value)
{
    return memtable_add(ctx, seq, IKEY_TYPE_VALUE, key, value);
}

static int memtable_del_op(void *ctx, uint64_t seq, slice key)
{
    return memtable_add(ctx, seq, IKEY_TYPE_DELETION, key, slice_make(NULL, 0));
}

int batch_insert_into_memtable(slice rep, memtable *m)
{
    batch_handler h = {memtable_put_op, memtable_del_op, m};
    return batch_iterate(rep, &h);
}
