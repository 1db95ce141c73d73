/* bloom.h - Bloom filters over user keys, one per SSTable.
 *
 * Grammar (see kvcore/FORMAT.md, section SSTable; on-disk: never change):
 *   filter := bits[m] k          m >= 8 bytes, k: one byte, number of probes (1..30)
 * A key's probes come from h = XXH3-64(key) (seed 0) by double hashing: for i in 0..k-1,
 *   x_i = h + i * (rotl64(h, 32) | 1)  (mod 2^64),   bit_i = (x_i * (8m)) >> 64  (128-bit product)
 * and bit b lives in byte b / 8 at mask 1 << (b % 8).
 *
 * Threads: a builder is used by one thread; bloom_may_match() is pure and thread-safe.
 */
#ifndef KV_BLOOM_H
#define KV_BLOOM_H

#include <stddef.h>
#include <stdint.h>
#include "util/coding.h"
#include "util/slice.h"

#define BLOOM_MAX_PROBES 30
#define BLOOM_MIN_BYTES 8

/* Collects key hashes; the filter is sized when finished. Fields are private. */
typedef struct bloom_builder {
    uint64_t *hashes;
    size_t n, cap;
    int bits_per_key;
} bloom_builder;

/* bits_per_key < 1 is treated as 1. Never fails (allocates lazily). */
void bloom_builder_init(bloom_builder *bb, int bits_per_key);
void bloom_builder_free(bloom_builder *bb);
/* Adds a key. Consecutive equal keys (versions of one user key) are counted once.
 * Returns 0 or KV_ENOMEM. */
int bloom_builder_add(bloom_builder *bb, slice key);
/* Number of distinct keys added (after consecutive duplicates are dropped). */
static inline size_t bloom_builder_count(const bloom_builder *bb)
{
    return bb->n;
}
/* Appends the filter for every key added to out and empties the builder.
 * Returns 0 or KV_ENOMEM (out unchanged). */
int bloom_builder_finish(bloom_builder *bb, buf *out);

/* The hash a filter uses for key (XXH3-64, seed 0). */
uint64_t bloom_hash(slice key);

/* Returns 1 if filter is well formed (at least BLOOM_MIN_BYTES of bits and 1 <= k <= 30). */
int bloom_filter_valid(slice filter);

/* Returns 0 if key (given by its bloom_hash) is certainly not in the set the filter was built
 * from, 1 if it may be. A malformed filter returns 1 (it never hides a key). */
int bloom_may_match_hash(slice filter, uint64_t h);
static inline int bloom_may_match(slice filter, slice key)
{
    return bloom_may_match_hash(filter, bloom_hash(key));
}

#endif /* KV_BLOOM_H */
