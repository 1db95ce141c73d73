/* coding.c - little-endian fixed-width integers, LEB128 varints, big-endian keys, byte buffers.
 *
 * Decoders treat their input as untrusted: they never read at or past `limit`, and reject a
 * varint that is truncated, longer than its maximum length, or whose last byte carries bits
 * beyond the target width (so every value has exactly one accepted encoding length bound).
 */
#include "util/coding.h"

#include <stdlib.h>
#include <string.h>

#include "kvcore/kv.h"

char *coding_put_varint32(char *dst, uint32_t v)
{
    return coding_put_varint64(dst, v);
}

char *coding_put_varint64(char *dst, uint64_t v)
{
    unsigned char *p = (unsigned char *)dst;
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return (char *)p;
}

int coding_varint_length(uint64_t v)
{
    int n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Shared decoder: at most max_bytes bytes, and the value must fit in `bits` bits. */
static const char *decode_varint(const char *p, const char *limit, int max_bytes, int bits,
                                 uint64_t *v)
{
    uint64_t result = 0;
    if (p == NULL || limit == NULL)
        return NULL;
    for (int i = 0; i < max_bytes && p < limit; i++) {
        uint64_t byte = *(const unsigned char *)p++;
        int shift = 7 * i;
        uint64_t payload = byte & 0x7f;
        /* Reject bits that would fall off the top of the target width. */
        if (shift + 7 > bits && (payload >> (bits - shift)) != 0)
            return NULL;
        result |= payload << shift;
        if ((byte & 0x80) == 0) {
            *v = result;
            return p;
        }
    }
    return NULL; /* truncated or too long */
}

const char *coding_get_varint32(const char *p, const char *limit, uint32_t *v)
{
    uint64_t x = 0;
    const char *q = decode_varint(p, limit, CODING_MAX_VARINT32, 32, &x);
    if (q)
        *v = (uint32_t)x;
    return q;
}

const char *coding_get_varint64(const char *p, const char *limit, uint64_t *v)
{
    return decode_varint(p, limit, CODING_MAX_VARINT64, 64, v);
}

int coding_slice_get_varint32(slice *in, uint32_t *v)
{
    const char *q = coding_get_varint32(in->data, in->data + in->size, v);
    if (!q)
        return 0;
    in->size -= (size_t)(q - in->data);
    in->data = q;
    return 1;
}

int coding_slice_get_varint64(slice *in, uint64_t *v)
{
    const char *q = coding_get_varint64(in->data, in->data + in->size, v);
    if (!q)
        return 0;
    in->size -= (size_t)(q - in->data);
    in->data = q;
    return 1;
}

int coding_slice_get_fixed32(slice *in, uint32_t *v)
{
    if (in->size < 4)
        return 0;
    *v = coding_get_fixed32(in->data);
    in->data += 4;
    in->size -= 4;
    return 1;
}

int coding_slice_get_fixed64(slice *in, uint64_t *v)
{
    if (in->size < 8)
        return 0;
    *v = coding_get_fixed64(in->data);
    in->data += 8;
    in->size -= 8;
    return 1;
}

int coding_slice_get_length_prefixed(slice *in, slice *out)
{
    slice s = *in;
    uint32_t len;
    if (!coding_slice_get_varint32(&s, &len) || len > s.size)
        return 0;
    *out = slice_make(s.data, len);
    in->data = s.data + len;
    in->size = s.size - len;
    return 1;
}

void coding_put_be64(char *dst, uint64_t v)
{
    unsigned char *p = (unsigned char *)dst;
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)v;
        v >>= 8;
    }
}

uint64_t coding_get_be64(const char *src)
{
    const unsigned char *p = (const unsigned char *)src;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

void buf_init(buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_free(buf *b)
{
    free(b->data);
    buf_init(b);
}

void buf_clear(buf *b)
{
    b->len = 0;
}

int buf_reserve(buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return KV_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return KV_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_append_fixed32(buf *b, uint32_t v)
{
    char tmp[4];
    coding_put_fixed32(tmp, v);
    return buf_append(b, tmp, sizeof tmp);
}

int buf_append_fixed64(buf *b, uint64_t v)
{
    char tmp[8];
    coding_put_fixed64(tmp, v);
    return buf_append(b, tmp, sizeof tmp);
}

int buf_append_varint32(buf *b, uint32_t v)
{
    char tmp[CODING_MAX_VARINT32];
    char *end = coding_put_varint32(tmp, v);
    return buf_append(b, tmp, (size_t)(end - tmp));
}

int buf_append_varint64(buf *b, uint64_t v)
{
    char tmp[CODING_MAX_VARINT64];
    char *end = coding_put_varint64(tmp, v);
    return buf_append(b, tmp, (size_t)(end - tmp));
}

int buf_append_length_prefixed(buf *b, slice s)
{
    if (s.size > UINT32_MAX)
        return KV_EINVAL;
    char tmp[CODING_MAX_VARINT32];
    char *end = coding_put_varint32(tmp, (uint32_t)s.size);
    size_t hl = (size_t)(end - tmp);
    /* Reserve for both parts first so a failure leaves the buffer unchanged. */
    int rc = buf_reserve(b, hl + s.size);
    if (rc)
        return rc;
    memcpy(b->data + b->len, tmp, hl);
    if (s.size)
        memcpy(b->data + b->len + hl, s.data, s.size);
    b->len += hl + s.size;
    return 0;
}
