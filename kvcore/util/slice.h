/* slice.h - a borrowed (pointer, length) view of bytes, used throughout kvcore.
 *
 * A slice never owns its bytes; whoever hands one out says how long they stay valid.
 */
#ifndef KV_SLICE_H
#define KV_SLICE_H

#include <stddef.h>
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

/* Bytewise order: memcmp on the common prefix, then the shorter slice first. */
static inline int slice_compare(slice a, slice b)
{
    size_t n = a.size < b.size ? a.size : b.size;
    int r = n ? memcmp(a.data, b.data, n) : 0;
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
