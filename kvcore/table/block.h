/* block.h - sorted key/value blocks: prefix-compressed entries with restart points.
 *
 * Grammar (see kvcore/FORMAT.md, section SSTable; on-disk: never change):
 *   block    := entry* restart* num_restarts
 *   entry    := varint32 shared, varint32 non_shared, varint32 value_len,
 *               key_delta[non_shared], value[value_len]
 *   restart  := fixed32 offset of an entry whose shared == 0
 *   num_restarts := fixed32 (>= 1; an empty block has one restart at offset 0)
 * An entry's key is the first `shared` bytes of the previous entry's key followed by key_delta.
 *
 * Every byte of a block may come from a damaged disk: block_init() checks the restart array,
 * and the iterator checks every entry it decodes; a malformed block makes the iterator invalid
 * with status KV_ECORRUPT (and one log line when an origin with a logger is given). Nothing
 * here reads outside [data, data + size).
 *
 * Threads: a block is immutable once initialised and may be read by any number of iterators
 * at once; each iterator and each builder is used by one thread at a time.
 */
#ifndef KV_BLOCK_H
#define KV_BLOCK_H

#include <stddef.h>
#include <stdint.h>
#include "util/coding.h"
#include "util/iter.h"
#include "util/log.h"
#include "util/slice.h"

/* Size of the num_restarts field and of each restart offset. */
#define BLOCK_RESTART_SIZE 4

/* Orders the keys of a block (ikey_compare for data and index blocks, slice_compare for plain
 * bytewise keys). */
typedef int (*block_cmp_fn)(slice a, slice b);

/* A parsed block: borrowed bytes plus the location of its restart array. */
typedef struct block {
    const char *data;
    uint32_t size;
    uint32_t restarts_off; /* offset of the restart array == end of the entries */
    uint32_t num_restarts;
} block;

/* Checks the block's trailer (num_restarts, every restart offset in range, strictly increasing,
 * the first at 0) and fills *b, which borrows data. Returns 0, or KV_ECORRUPT with *why set to
 * a static description of the failed check. Cost: O(num_restarts). */
int block_init(block *b, const char *data, size_t size, const char **why);

/* Returns restart i's offset (caller guarantees i < b->num_restarts). */
static inline uint32_t block_restart(const block *b, uint32_t i)
{
    return coding_get_fixed32(b->data + b->restarts_off + (size_t)i * BLOCK_RESTART_SIZE);
}

/* Decodes the entry at off, which must start at a restart point (shared == 0) and end at or
 * before limit (<= restarts_off). On success the key and value borrow from the block, *end is
 * the offset after the entry and 0 is returned; else KV_ECORRUPT with *why set. Used to read
 * blocks whose every entry is a restart point (index blocks) without copying keys. */
int block_decode_restart_entry(const block *b, uint32_t off, uint32_t limit, slice *key,
                               slice *value, uint32_t *end, const char **why);

/* Where a block came from, for corruption messages ("sst <file>: <kind> block at offset N:
 * <check> (entry at M)"). All pointers are borrowed and must outlive the iterator; log may be
 * NULL (no message). */
typedef struct block_origin {
    const kv_logger *log;
    const char *file;
    const char *kind;
    uint64_t offset;
} block_origin;

/* An iterator over one block. Exposed so that table iterators can embed one (no allocation
 * per block) and call it directly; others should use block_iter_new(). Fields are private. */
struct block_iter {
    iter base;
    const block *b;
    block_cmp_fn cmp;
    block_origin origin;
    uint32_t cur;         /* offset of the current entry */
    uint32_t next_off;    /* offset just after the current entry */
    uint32_t restart_idx; /* index of the restart run holding the current entry */
    uint32_t run_start;   /* offset of restart restart_idx */
    uint32_t run_end;     /* offset of the next restart (restarts_off after the last run) */
    int valid;
    int status;
    slice key, value; /* key borrows from the block (shared == 0) or from kbuf */
    char *kbuf;       /* kinline or a malloc'd buffer of kcap bytes */
    size_t kcap;
    char kinline[64];
};

/* Initialises it over b (borrowed; must outlive the iterator's use) ordered by cmp; origin may
 * be NULL. The iterator starts invalid. Never fails. Release with block_iter_release(). */
void block_iter_init(struct block_iter *it, const block *b, block_cmp_fn cmp,
                     const block_origin *origin);
/* Frees the iterator's key buffer (not the block). */
void block_iter_release(struct block_iter *it);

void block_iter_seek_first(struct block_iter *it);
void block_iter_seek_last(struct block_iter *it);
/* Positions at the first entry with key >= target (invalid, status 0, if none). */
void block_iter_seek(struct block_iter *it, slice target);
void block_iter_next(struct block_iter *it); /* requires valid */
void block_iter_prev(struct block_iter *it); /* requires valid */

static inline int block_iter_valid(const struct block_iter *it)
{
    return it->valid;
}
/* Borrowed until the iterator moves or is released. Require valid. */
static inline slice block_iter_key(const struct block_iter *it)
{
    return it->key;
}
static inline slice block_iter_value(const struct block_iter *it)
{
    return it->value;
}
/* 0, or the error (KV_ECORRUPT, KV_ENOMEM) that made the iterator invalid; errors are sticky. */
static inline int block_iter_status(const struct block_iter *it)
{
    return it->status;
}

/* A heap-allocated block iterator behind the generic iter interface. b is borrowed (register
 * a cleanup to free it with the iterator if needed). NULL if out of memory. */
iter *block_iter_new(const block *b, block_cmp_fn cmp, const block_origin *origin);

/* ---- Building ---------------------------------------------------------------------------- */

/* Accumulates sorted entries into a block. Fields are private. */
typedef struct block_builder {
    buf data; /* entries, then (after finish) the restart array */
    uint32_t *restarts;
    size_t num_restarts, restarts_cap;
    int interval; /* entries per restart run */
    int counter;  /* entries since the last restart */
    buf last_key;
    uint64_t num_entries;
    int finished;
} block_builder;

/* restart_interval < 1 is treated as 1. Never fails (allocates lazily). */
void block_builder_init(block_builder *bb, int restart_interval);
void block_builder_free(block_builder *bb);
/* Empties the builder for a new block, keeping its memory. */
void block_builder_reset(block_builder *bb);
/* Appends an entry; keys must arrive in increasing order of the block's comparator (not
 * checked here). Returns 0, KV_ENOMEM, or KV_EINVAL if the block would reach 4 GiB. Not after
 * finish until reset. */
int block_builder_add(block_builder *bb, slice key, slice value);
/* The size the block would have if finished now. */
size_t block_builder_size_estimate(const block_builder *bb);
static inline int block_builder_empty(const block_builder *bb)
{
    return bb->num_entries == 0;
}
/* Appends the restart array and returns the finished block in *out (borrowed until reset or
 * free). Returns 0 or KV_ENOMEM. */
int block_builder_finish(block_builder *bb, slice *out);

#endif /* KV_BLOCK_H */
