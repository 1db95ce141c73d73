/* ikey.h - internal keys: a user key tagged with a sequence number and a type.
 *
 * Grammar (see kvcore/FORMAT.md; on-disk: never change):
 *   internal_key := user_key  tag
 *   tag          := fixed64 little-endian of (sequence << 8 | type)
 *   type         := 0 (deletion) | 1 (value)
 * Order: user key ascending (bytewise), then sequence descending, then type descending, so that
 * the newest version of a key comes first. Sequences are < 2^56.
 */
#ifndef KV_IKEY_H
#define KV_IKEY_H

#include <stdint.h>
#include "util/coding.h"
#include "util/slice.h"

#define IKEY_TYPE_DELETION 0
#define IKEY_TYPE_VALUE 1
#define IKEY_MAX_SEQUENCE ((UINT64_C(1) << 56) - 1)
#define IKEY_TAG_SIZE 8
/* Type used when seeking: the highest type, so a seek finds every entry of seq <= s. */
#define IKEY_TYPE_FOR_SEEK IKEY_TYPE_VALUE

static inline uint64_t ikey_pack_tag(uint64_t seq, int type)
{
    return (seq << 8) | (uint64_t)type;
}

/* Appends user_key + tag to b. Returns 0 or KV_ENOMEM. */
static inline int ikey_append(buf *b, slice user_key, uint64_t seq, int type)
{
    int rc = buf_append(b, user_key.data, user_key.size);
    return rc ? rc : buf_append_fixed64(b, ikey_pack_tag(seq, type));
}

typedef struct ikey_parsed {
    slice user_key;
    uint64_t sequence;
    int type;
} ikey_parsed;

/* Returns 1 if ik is well formed (>= 8 bytes, known type), filling *out; else 0. */
static inline int ikey_parse(slice ik, ikey_parsed *out)
{
    if (ik.size < IKEY_TAG_SIZE)
        return 0;
    uint64_t tag = coding_get_fixed64(ik.data + ik.size - IKEY_TAG_SIZE);
    out->user_key = slice_make(ik.data, ik.size - IKEY_TAG_SIZE);
    out->sequence = tag >> 8;
    out->type = (int)(tag & 0xff);
    return out->type <= IKEY_TYPE_VALUE;
}

/* The user key of a well-formed internal key (caller guarantees size >= 8). */
static inline slice ikey_user_key(slice ik)
{
    return slice_make(ik.data, ik.size - IKEY_TAG_SIZE);
}

static inline uint64_t ikey_tag(slice ik)
{
    return coding_get_fixed64(ik.data + ik.size - IKEY_TAG_SIZE);
}

/* Total order on internal keys as described above. Keys shorter than 8 bytes (corrupt) compare
 * bytewise as a whole, after no valid key, so the comparison never reads out of bounds. */
static inline int ikey_compare(slice a, slice b)
{
    if (a.size < IKEY_TAG_SIZE || b.size < IKEY_TAG_SIZE)
        return slice_compare(a, b);
    int r = slice_compare(ikey_user_key(a), ikey_user_key(b));
    if (r == 0) {
        uint64_t ta = ikey_tag(a), tb = ikey_tag(b);
        r = ta > tb ? -1 : ta < tb ? 1 : 0;
    }
    return r;
}

#endif /* KV_IKEY_H */
