/* chunkcache.h - a bounded LRU cache of recently read file chunks (decoded, checksum-verified).
 *
 * Why: a read of part of a chunk that misses costs a read of the pages it needs (kv_get_range:
 * a pread and a checksum per 4 KiB page, plus the record's head the first time); the kernel
 * keeps only the pages it asked for, so a reader that comes back for the chunk's other pages
 * (small sequential reads, a hot set) pays again for each. For such readers fs_read reads the
 * whole chunk once and the cache keeps it (fs_cc_admit decides when that pays).
 *
 * Staleness is ruled out by a sequence number per inode stripe (the stripes of fs_int.h):
 *  1. Every change to a file's chunks happens with its stripe locked, between
 *     fs_cc_write_begin() (seq becomes odd, before anything is committed) and the stripe's
 *     unlock, which calls fs_cc_stripe_unlocked() (seq becomes even, after the commit).
 *  2. A reader samples seq (fs_cc_sample) BEFORE taking its snapshot; it uses the cache only if
 *     the sample is even, and a lookup or insert counts only while seq still equals the sample.
 *     So an entry was read from a snapshot taken after the last change to its stripe ended,
 *     and is used only by readers whose snapshot is also after that change, with no change
 *     begun since: the cached bytes are exactly what the reader's snapshot holds.
 *  3. Each entry carries the (even) seq it was read under; a later change makes it dead, and
 *     dead entries are dropped when met or evicted by LRU (no scan per write).
 *  4. charge (the bytes held) <= capacity after every insert.
 * Reclaiming an inode (its chunks deleted, the number never handed out again) bumps its
 * stripe's seq by two after the deletes are committed (fs_cc_invalidate).
 */
#ifndef KVFS_CHUNKCACHE_H
#define KVFS_CHUNKCACHE_H

#include <stddef.h>
#include <stdint.h>

/* Default capacity of a filesystem's chunk cache (bytes of chunk data held; -o
 * chunk_cache_size). fs_read keeps only chunks the kernel took part of, and only those
 * fs_cc_admit admits, so the cache stays empty under large sequential reads and holds few
 * chunks under random reads of files much bigger than it.
 * The daemon's memory at default options: 32 MiB of memtables + 32 MiB of block cache + this
 * + the FUSE threads' buffers and table metadata, well under 256 MiB. */
#define FS_CC_DEFAULT_BYTES (64u << 20)
/* fs_cc_admit: lookups per measurement of the hit rate, and misses remembered. */
#define FS_CC_ADMIT_WINDOW 256
#define FS_CC_RECENT_MISSES 64

struct fs_cc;

/* Creates a cache holding up to capacity bytes of chunks of chunk_size bytes, with nstripes
 * sequence numbers (one per inode stripe). Returns NULL when out of memory (the filesystem
 * then runs without a cache). capacity 0 gives a cache that never holds anything. Free with
 * fs_cc_free. */
struct fs_cc *fs_cc_new(size_t capacity, uint32_t chunk_size, int nstripes);
/* Frees the cache and every chunk in it. NULL is a no-op. No other call may be running. */
void fs_cc_free(struct fs_cc *cc);

/* The stripe's seq, sampled by a reader before it takes its snapshot (invariant 2). Odd: a
 * change is under way, do not use the cache. Thread-safe. */
uint64_t fs_cc_sample(struct fs_cc *cc, int stripe);

/* Copies bytes [a, b) of chunk (ino, idx) to out if the cache holds it and the stripe's seq is
 * still `sample` (even); bytes at or past the chunk's stored length read as zeros. Returns 1 on
 * a hit (out filled), 0 on a miss (out untouched). Thread-safe. a <= b <= chunk_size. */
int fs_cc_read(struct fs_cc *cc, int stripe, uint64_t sample, uint64_t ino, uint64_t idx, size_t a,
               size_t b, void *out);

/* Offers chunk (ino, idx), stored length len (1..chunk_size), read from a snapshot taken after
 * `sample` was taken. Takes ownership of data (a kv_get buffer, released with kv_free) in every
 * case: kept if seq still equals sample (even), freed otherwise or when len is out of range.
 * May evict the least recently used chunks. Thread-safe. */
void fs_cc_insert(struct fs_cc *cc, int stripe, uint64_t sample, uint64_t ino, uint64_t idx,
                  void *data, size_t len);

/* Whether fs_read, after fs_cc_read missed chunk (ino, idx) for a part of it, should read the
 * whole chunk and insert it (1) or read only the part it needs (0). A miss costs a read of the
 * part (kvcore reads and verifies only its pages) or of the whole chunk plus the insert, about
 * a chunk's worth of copying and hashing: worth it only if later reads of the chunk hit. So the
 * cache admits every miss while at least half of its recent lookups hit (a sequential reader of
 * small pieces, a hot set that fits), and otherwise (a random reader of a big file) only the
 * second miss of a chunk among the last FS_CC_RECENT_MISSES, which lets a reader that turns
 * sequential bring the hit rate back. Thread-safe. 0 for a NULL cache. */
int fs_cc_admit(struct fs_cc *cc, uint64_t ino, uint64_t idx);

/* Marks the start of a change to chunks of an inode in stripe (invariant 1): the caller holds
 * the stripe's lock and calls it before committing anything. Idempotent while the lock is held.
 * Thread-safe (distinct stripes). */
void fs_cc_write_begin(struct fs_cc *cc, int stripe);
/* Called by the stripe's unlock with the lock still held: ends a change begun under it. Cheap
 * when none was begun. */
void fs_cc_stripe_unlocked(struct fs_cc *cc, int stripe);
/* Makes every cached chunk of the stripe dead, for a change already committed by a caller
 * that holds the stripe (reclaim). Thread-safe. */
void fs_cc_invalidate(struct fs_cc *cc, int stripe);

/* Counters for tests and statistics: hits, misses (lookups that found no live entry), chunks
 * held and bytes held. Thread-safe. */
struct fs_cc_stats {
    uint64_t hits, misses, entries, bytes;
};
void fs_cc_get_stats(struct fs_cc *cc, struct fs_cc_stats *st);

#endif /* KVFS_CHUNKCACHE_H */
