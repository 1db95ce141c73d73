/* memtable.h - the in-memory write buffer: a skiplist of internal keys over an arena.
 *
 * Threads: one writer at a time (the db write path serialises memtable_add), any number of
 * concurrent readers without locks (readers see each insert either fully or not at all; inserts
 * publish nodes with release stores, readers follow them with acquire loads).
 * Lifetime: reference counted; memtable_new returns one reference.
 */
#ifndef KV_MEMTABLE_H
#define KV_MEMTABLE_H

#include <stddef.h>
#include <stdint.h>
#include "util/coding.h"
#include "util/iter.h"
#include "util/slice.h"

typedef struct memtable memtable;

memtable *memtable_new(void); /* NULL if out of memory */
/* memtable_new with a Bloom filter over the user keys added, sized for a memtable of about
 * budget_bytes of arena (1 bit per 8 bytes, budget_bytes / 64 bytes of memory, in 64-byte
 * blocks, at most 64 MiB): memtable_get of a key never added then mostly skips the skiplist
 * search, whose cache misses dominate a lookup. 0: no filter. NULL if out of memory. */
memtable *memtable_new_filtered(size_t budget_bytes);
void memtable_ref(memtable *m);
void memtable_unref(memtable *m);

/* Adds (key, seq, type) -> value. Returns 0, KV_ENOMEM, or KV_EINVAL (a bad seq or type, a
 * key longer than UINT32_MAX - 8 bytes or a value longer than UINT32_MAX: no batch holds
 * such an op). Single writer. */
int memtable_add(memtable *m, uint64_t seq, int type, slice user_key, slice value);

#define MEMTABLE_ABSENT 0  /* no entry for the key at or below seq */
#define MEMTABLE_FOUND 1   /* a value: appended to *value_out */
#define MEMTABLE_DELETED 2 /* a deletion is the newest entry at or below seq */

/* Looks up the newest entry for user_key with sequence <= seq. Returns MEMTABLE_* or KV_ENOMEM. */
int memtable_get(memtable *m, slice user_key, uint64_t seq, buf *value_out);

/* Iterator over the internal keys (key() is the internal key). Holds a reference to m. */
iter *memtable_iter_new(memtable *m);

/* Bytes of memory used (arena), for deciding when to freeze. */
size_t memtable_memory_usage(const memtable *m);
uint64_t memtable_num_entries(const memtable *m);

#endif /* KV_MEMTABLE_H */
