/* coding.h - fixed-width and varint integer encodings, and a growable byte buffer.
 *
 * On-disk integers in kvcore are little-endian unless FORMAT.md says otherwise. Varints are
 * LEB128 (7 bits per byte, low group first, high bit = more), at most 5 bytes for 32-bit and
 * 10 bytes for 64-bit values. See kvcore/FORMAT.md.
 * Decoders never read past `limit` and return NULL on truncated or overlong input.
 */
#ifndef KV_CODING_H
#define KV_CODING_H

#include <stddef.h>
#include <stdint.h>
#include "util/slice.h"

#define CODING_MAX_VARINT32 5
#define CODING_MAX_VARINT64 10

/* Fixed-width little-endian integers. Inline because block, key and checksum decoding call them
 * once or more per entry; the byte-wise form compiles to one load or store on x86-64. */
static inline void coding_put_fixed32(char *dst, uint32_t v)
{
    unsigned char *p = (unsigned char *)dst;
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void coding_put_fixed64(char *dst, uint64_t v)
{
    coding_put_fixed32(dst, (uint32_t)v);
    coding_put_fixed32(dst + 4, (uint32_t)(v >> 32));
}

static inline uint32_t coding_get_fixed32(const char *src)
{
    const unsigned char *p = (const unsigned char *)src;
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t coding_get_fixed64(const char *src)
{
    return (uint64_t)coding_get_fixed32(src) | ((uint64_t)coding_get_fixed32(src + 4) << 32);
}

/* Writes v at dst (which has room for the maximum); returns the byte after the last written. */
char *coding_put_varint32(char *dst, uint32_t v);
char *coding_put_varint64(char *dst, uint64_t v);
int coding_varint_length(uint64_t v);

/* Decode one varint from [p, limit). Returns the byte after it, or NULL if malformed. */
const char *coding_get_varint32(const char *p, const char *limit, uint32_t *v);
const char *coding_get_varint64(const char *p, const char *limit, uint64_t *v);

/* Slice-consuming decoders: on success advance *in past the value and return 1; else 0. */
int coding_slice_get_varint32(slice *in, uint32_t *v);
int coding_slice_get_varint64(slice *in, uint64_t *v);
int coding_slice_get_fixed32(slice *in, uint32_t *v);
int coding_slice_get_fixed64(slice *in, uint64_t *v);
/* A varint32 length followed by that many bytes; *out borrows from *in. */
int coding_slice_get_length_prefixed(slice *in, slice *out);

/* Big-endian encodings, for keys that must sort numerically (used by callers of kvcore too,
 * but they carry their own copy: fs/ never includes kvcore internals). */
void coding_put_be64(char *dst, uint64_t v);
uint64_t coding_get_be64(const char *src);

/* A growable byte buffer. Zero-initialise (or buf_init) before use; buf_free releases it.
 * Append functions return 0 or KV_ENOMEM (the buffer is unchanged on failure). */
typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
void buf_clear(buf *b); /* len = 0, memory kept */
int buf_reserve(buf *b, size_t extra);
int buf_append(buf *b, const void *p, size_t n);
int buf_append_fixed32(buf *b, uint32_t v);
int buf_append_fixed64(buf *b, uint64_t v);
int buf_append_varint32(buf *b, uint32_t v);
int buf_append_varint64(buf *b, uint64_t v);
int buf_append_length_prefixed(buf *b, slice s);
static inline slice buf_slice(const buf *b)
{
    return slice_make(b->data, b->len);
}

#endif /* KV_CODING_H */
