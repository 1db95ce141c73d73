/* bloom.c - Bloom filter builder and probe (format in bloom.h and kvcore/FORMAT.md).
 *
 * Probe positions use a 128-bit multiply ("fast range") instead of a modulo: it maps a
 * uniform 64-bit value onto [0, bits) without a division on the read path.
 */
#include "table/bloom.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "kvcore/kv.h"

uint64_t bloom_hash(slice key)
{
    return XXH3_64bits(key.data, key.size);
}

static inline uint64_t probe_delta(uint64_t h)
{
    return ((h << 32) | (h >> 32)) | 1;
}

static inline uint64_t fast_range(uint64_t x, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)x * n) >> 64);
}

void bloom_builder_init(bloom_builder *bb, int bits_per_key)
{
    memset(bb, 0, sizeof(*bb));
    bb->bits_per_key = bits_per_key < 1 ? 1 : bits_per_key;
}

void bloom_builder_free(bloom_builder *bb)
{
    free(bb->hashes);
    memset(bb, 0, sizeof(*bb));
}

int bloom_builder_add(bloom_builder *bb, slice key)
{
    uint64_t h = bloom_hash(key);
    if (bb->n > 0 && bb->hashes[bb->n - 1] == h)
        return 0;
    if (bb->n == bb->cap) {
        size_t cap = bb->cap ? bb->cap * 2 : 256;
        uint64_t *p = realloc(bb->hashes, cap * sizeof(*p));
        if (p == NULL)
            return KV_ENOMEM;
        bb->hashes = p;
        bb->cap = cap;
    }
    bb->hashes[bb->n++] = h;
    return 0;
}

int bloom_builder_finish(bloom_builder *bb, buf *out)
{
    /* k = bits_per_key * ln 2 minimises the false-positive rate for a given size. */
    int k = (int)(bb->bits_per_key * 0.69 + 0.5);
    if (k < 1)
        k = 1;
    if (k > BLOOM_MAX_PROBES)
        k = BLOOM_MAX_PROBES;
    uint64_t bits = (uint64_t)bb->n * (uint64_t)bb->bits_per_key;
    if (bits < BLOOM_MIN_BYTES * 8)
        bits = BLOOM_MIN_BYTES * 8;
    size_t bytes = (size_t)((bits + 7) / 8);
    bits = (uint64_t)bytes * 8;
    if (buf_reserve(out, bytes + 1) != 0)
        return KV_ENOMEM;
    char *array = out->data + out->len;
    memset(array, 0, bytes);
    for (size_t i = 0; i < bb->n; i++) {
        uint64_t h = bb->hashes[i], delta = probe_delta(h);
        for (int j = 0; j < k; j++) {
            uint64_t b = fast_range(h, bits);
            array[b >> 3] |= (char)(1u << (b & 7));
            h += delta;
        }
    }
    array[bytes] = (char)k;
    out->len += bytes + 1;
    bb->n = 0;
    return 0;
}

int bloom_filter_valid(slice filter)
{
    if (filter.size < BLOOM_MIN_BYTES + 1)
        return 0;
    unsigned k = (unsigned char)filter.data[filter.size - 1];
    return k >= 1 && k <= BLOOM_MAX_PROBES;
}

int bloom_may_match_hash(slice filter, uint64_t h)
{
    if (!bloom_filter_valid(filter))
        return 1;
    int k = (unsigned char)filter.data[filter.size - 1];
    uint64_t bits = (uint64_t)(filter.size - 1) * 8;
    const unsigned char *array = (const unsigned char *)filter.data;
    uint64_t delta = probe_delta(h);
    for (int j = 0; j < k; j++) {
        uint64_t b = fast_range(h, bits);
        if ((array[b >> 3] & (1u << (b & 7))) == 0)
            return 0;
        h += delta;
    }
    return 1;
}
