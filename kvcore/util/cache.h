/* cache.h - a sharded LRU cache of reference-counted entries, bounded by total charge.
 *
 * Used as the block cache (charge = bytes) and the table cache (charge = 1 per open table).
 * Threads: every function is thread-safe. An entry stays alive while any handle to it is held,
 * even after it is evicted or erased; its deleter runs when the last reference goes.
 */
#ifndef KV_CACHE_H
#define KV_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "util/slice.h"

typedef struct cache cache;
typedef struct cache_handle cache_handle;

typedef void (*cache_deleter_fn)(slice key, void *value);

/* Returns a cache holding at most `capacity` total charge; NULL if out of memory. */
cache *cache_new(size_t capacity);
/* Frees the cache; every handle must have been released. NULL is a no-op. */
void cache_free(cache *c);

/* Inserts key -> value (replacing an existing entry for key) and returns a handle to it, which
 * the caller must cache_release(). The key is copied. NULL only if out of memory, in which case
 * the deleter has been run on value. */
cache_handle *cache_insert(cache *c, slice key, void *value, size_t charge,
                           cache_deleter_fn deleter);
/* Returns a handle to key's entry (release it), or NULL if absent. Counts a hit or a miss. */
cache_handle *cache_lookup(cache *c, slice key);
void cache_release(cache *c, cache_handle *h);
/* 1 if key has an entry now, else 0; takes no reference and counts neither hit nor miss (for
 * deciding what to read ahead). */
int cache_contains(cache *c, slice key);
void *cache_value(const cache_handle *h);
/* Drops key's entry from the cache (live handles keep it alive). */
void cache_erase(cache *c, slice key);
/* A new id, unique for this cache, for callers that share one cache to prefix their keys. */
uint64_t cache_new_id(cache *c);
size_t cache_total_charge(cache *c);

/* Values of at most this many bytes come from the cache's shared slabs (see cache.c). */
#define CACHE_MEM_MAX_BYTES ((size_t)16 << 10)

/* Memory for a value that will be inserted into c: n bytes, from slabs shared by every thread
 * when n <= CACHE_MEM_MAX_BYTES (so memory freed by one thread is reused by the next thread
 * that allocates, whichever it is), else from malloc. *alloc_size receives the bytes actually
 * set aside, which is what the entry should be charged. Returns NULL if out of memory.
 * Thread-safe. Free with cache_mem_free(c, p, n) with the same n, from any thread, before
 * cache_free(c) (which unmaps the slabs). */
void *cache_mem_alloc(cache *c, size_t n, size_t *alloc_size);
/* Returns p (from cache_mem_alloc(c, n, ...)) to c. NULL is a no-op. Thread-safe. */
void cache_mem_free(cache *c, void *p, size_t n);
void cache_counters(cache *c, uint64_t *hits, uint64_t *misses);

#endif /* KV_CACHE_H */
