/* table_cache.h - open sst_readers by file number, bounded by max_open_files (LRU).
 *
 * Threads: thread-safe. Readers handed out stay valid while their handle/iterator lives even if
 * evicted meanwhile.
 */
#ifndef KV_TABLE_CACHE_H
#define KV_TABLE_CACHE_H

#include <stdint.h>
#include "table/sst.h"
#include "util/cache.h"
#include "util/env.h"
#include "util/log.h"

typedef struct table_cache table_cache;

/* dir is copied; block_cache (may be NULL) and log must outlive the table cache. */
table_cache *table_cache_new(const char *dir, const kv_env *env, int max_open_files,
                             cache *block_cache, const kv_logger *log, int verify_checksums);
void table_cache_free(table_cache *tc);
/* Tables opened from now on are read through memory mappings (sst_reader_open_mapped) if on,
 * with pread (sst_reader_open) if off, the default. Call before the first lookup. */
void table_cache_set_mmap(table_cache *tc, int on);

/* Looks up ikey in table `number` (see sst_reader_get). Errors opening the table (missing file:
 * KV_ECORRUPT with a log line naming it) are returned. */
int table_cache_get(table_cache *tc, uint64_t number, uint64_t file_size, slice ikey, void *ctx,
                    void (*found)(void *ctx, slice ikey, slice value));
/* Iterator over table `number`; keeps the table open until freed. On error returns an
 * iterator whose status() is the error (NULL only if out of memory). */
iter *table_cache_iter_new(table_cache *tc, uint64_t number, uint64_t file_size, int fill_cache);
/* A table held open for a caller that probes it many times (version.c pins the tables of the
 * versions kv_get reads): probing through the pin's reader skips the cache's lock round and
 * hash lookup of table_cache_get. */
typedef struct table_pin table_pin;
/* Pins table `number` open (opening it as table_cache_get would) and returns the pin in *out,
 * or *out = NULL when max_open_files / 2 tables are pinned already: pins never take more than
 * half of the bound, so the rest of the tables still rotate through the LRU. Returns 0 or the
 * error of opening the table (*out = NULL). The pin is the caller's: release it with
 * table_cache_unpin, before table_cache_free. Thread-safe. */
int table_cache_pin(table_cache *tc, uint64_t number, uint64_t file_size, table_pin **out);
/* The pinned table's reader (thread-safe, valid until the pin is released). */
sst_reader *table_pin_reader(const table_pin *p);
/* Releases a pin (NULL: nothing); the table closes when nothing else holds it and it has been
 * evicted or the cache needs the room. */
void table_cache_unpin(table_pin *p);
/* Forgets table `number` (its file is being deleted). */
void table_cache_evict(table_cache *tc, uint64_t number);
uint64_t table_cache_open_count(table_cache *tc);
void table_cache_counters(table_cache *tc, uint64_t *bloom_useful);

#endif /* KV_TABLE_CACHE_H */
