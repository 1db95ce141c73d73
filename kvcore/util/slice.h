/* slice.h - a borrowed (pointer, length) view of bytes, used throughout kvcore.
 *
 * A slice never owns its bytes; whoever hands one out says how long they stay valid.
 */
#ifndef KV_SLICE_H
#define KV_SLICE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct slice {
    const char *data;
    size_t size;
} slice;

static inline slice slice_make(const void *data, size_t size)
{
    slice s = {(const char *)data, size};
    return s;
}

static inline slice slice_from_str(const char *s)
{
    return slice_make(s, strlen(s));
}

/* Bytewise order: memcmp on the common prefix, then the shorter slice first. Returns <0, 0
 * or >0 (only the sign means anything). Keys are short (kvfs: 9-40 bytes), and the skiplist,
 * the merger and block seeks compare them constantly (memcmp was 8-13% of kvbench's fill and
 * scan profiles): up to 64 bytes are compared 8 at a time inline, as big-endian words, which
 * order exactly as their bytes do. */
static inline int slice_compare(slice a, slice b)
{
    size_t n = a.size < b.size ? a.size : b.size;
    int r = 0;
    if (n <= 64) {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t x, y;
            memcpy(&x, a.data + i, 8);
            memcpy(&y, b.data + i, 8);
            if (x != y) {
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_BIG_ENDIAN__
                x = __builtin_bswap64(x);
                y = __builtin_bswap64(y);
#endif
                return x < y ? -1 : 1;
            }
        }
        for (; i < n; i++)
            if (a.data[i] != b.data[i])
                return (unsigned char)a.data[i] < (unsigned char)b.data[i] ? -1 : 1;
    } else {
        r = memcmp(a.data, b.data, n);
    }
    if (r == 0)
        r = (a.size < b.size) ? -1 : (a.size > b.size);
    return r;
}

static inline int slice_equal(slice a, slice b)
{
    return a.size == b.size && (a.size == 0 || memcmp(a.data, b.data, a.size) == 0);
}

static inline int slice_starts_with(slice s, slice prefix)
{
    return s.size >= prefix.size && memcmp(s.data, prefix.data, prefix.size) == 0;
}

#endif /* KV_SLICE_H */
