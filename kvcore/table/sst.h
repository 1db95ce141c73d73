/* sst.h - sorted string tables: immutable files of internal keys in sorted blocks.
 *
 * Layout (grammar in kvcore/FORMAT.md): data blocks (prefix-compressed with restart points,
 * optionally zstd-compressed, each followed by a trailer with its compression type and an
 * XXH3-64 checksum), a filter block (Bloom filter over the user keys), an index block (one entry
 * per data block: a separator key >= the block's last key -> block handle), and a fixed-size
 * footer with the filter/index handles, format version and magic number.
 *
 * Errors: a failed checksum or a malformed structure returns KV_ECORRUPT after logging
 * "sst NNNNNN.sst: <what> at offset N: <which check failed>" through the logger; wrong bytes
 * are never returned. No content of a file can make the reader crash or read out of bounds.
 */
#ifndef KV_SST_H
#define KV_SST_H

#include <stdint.h>
#include "util/cache.h"
#include "util/coding.h"
#include "util/env.h"
#include "util/iter.h"
#include "util/log.h"
#include "util/slice.h"

struct block;

typedef struct sst_options {
    size_t block_size;    /* target uncompressed data block size (e.g. 4096) */
    int restart_interval; /* keys between restart points (e.g. 16) */
    int compression;      /* 0 none, 1 zstd (kept raw unless it saves >= 1/8) */
    int compression_level;
    int bloom_bits_per_key; /* 0: no filter block */
} sst_options;

/* ---- Building ---------------------------------------------------------------------------- */

typedef struct sst_builder sst_builder;

/* Starts a table written to f (borrowed: the caller syncs and closes it after finish). */
int sst_builder_new(env_file *f, const sst_options *opts, sst_builder **out);
/* Adds an entry; internal keys must arrive in strictly increasing ikey_compare order. */
int sst_builder_add(sst_builder *b, slice ikey, slice value);
/* Writes the remaining data block, filter, index and footer. No sync. */
int sst_builder_finish(sst_builder *b);
uint64_t sst_builder_num_entries(const sst_builder *b);
/* Bytes written so far (after finish: the file size). */
uint64_t sst_builder_file_size(const sst_builder *b);
/* Blocks handed to zstd so far: compression is adaptive (skipped after failures, see sst.c), so
 * this is at most the number of blocks written. For tests and measurements. */
uint64_t sst_builder_compress_attempts(const sst_builder *b);
void sst_builder_free(sst_builder *b);

/* ---- Reading ----------------------------------------------------------------------------- */

typedef struct sst_reader sst_reader;

typedef struct sst_read_options {
    cache *block_cache;   /* may be NULL; shared by all tables */
    const kv_logger *log; /* for corruption messages */
    int verify_checksums; /* verify each block read (1 recommended) */
    int fill_cache;       /* put blocks read into the cache (0 for compaction scans) */
} sst_read_options;

/* Opens a table: reads and checks the footer, index block and filter. Takes ownership of f
 * (closed on failure too). `name` (e.g. "000123.sst") is used in messages and is copied.
 * The options struct is copied; the cache and logger it points to must outlive the reader. */
int sst_reader_open(env_file *f, uint64_t file_size, const char *name,
                    const sst_read_options *ropts, sst_reader **out);
/* sst_reader_open, but the table is mapped into memory (env map_readable) and blocks are
 * copied out of the mapping instead of read with pread, which saves a system call per block
 * read. Only for a table that is complete, synced and never written again, whose size is
 * file_size; the mapping lives exactly as long as the reader (it is undone when the reader
 * closes f). If the env cannot map (map_readable NULL, 32-bit, the file is shorter than
 * file_size, mmap fails) the reader uses pread as sst_reader_open does, silently: a short file
 * is then KV_ECORRUPT as before. Every byte read through the mapping is checked exactly as
 * pread's are (block handles against file_size before any pointer arithmetic, checksums if
 * verify_checksums), and blocks are still copied into the block cache (or a private buffer),
 * so cache accounting, hit rates and the bytes a caller holds do not depend on the mapping.
 * A table truncated by another process while mapped makes a read of the lost pages raise
 * SIGBUS: kvcore never truncates or rewrites a table (it unlinks it, which keeps the mapping
 * valid) and holds the store's LOCK, so only a foreign writer can do that. */
int sst_reader_open_mapped(env_file *f, uint64_t file_size, const char *name,
                           const sst_read_options *ropts, sst_reader **out);
void sst_reader_close(sst_reader *r);

/* Point lookup for internal key ikey: if the filter says the user key is absent, returns 0
 * without calling found(); else finds the first entry >= ikey and, if there is one, calls
 * found(ctx, entry_ikey, entry_value) once (the caller checks the user key). Returns 0 or an
 * error (KV_ECORRUPT, KV_EIO, KV_ENOMEM). */
int sst_reader_get(sst_reader *r, slice ikey, void *ctx,
                   void (*found)(void *ctx, slice ikey, slice value));
/* Iterator over every entry of the table; holds no reference to r: the caller keeps r open
 * (the table cache does this with an iter cleanup). NULL only if out of memory. */
iter *sst_reader_iter_new(sst_reader *r, int fill_cache);
/* Approximate file offset where ikey's data would be (for size estimates). */
uint64_t sst_reader_approximate_offset(sst_reader *r, slice ikey);
/* Reads and verifies every block of the table; progress(ctx, bytes) after each block.
 * Returns 0 or KV_ECORRUPT (each bad block logged) and counts failures in *problems. */
int sst_reader_verify(sst_reader *r, void (*progress)(void *ctx, uint64_t bytes), void *ctx,
                      uint64_t *problems);
/* Blocks read from disk (cache misses) and filter negatives, for statistics. */
void sst_reader_counters(const sst_reader *r, uint64_t *blocks_read, uint64_t *bloom_useful);

/* ---- Salvage: reading a damaged table block by block ------------------------------------- */

/* A scan of a possibly damaged table for kv_salvage: it returns every data block whose
 * checksum verifies and whose entries are well formed and in order, and reports each stretch
 * of the data region it could not read. Block boundaries come from the index when the footer
 * and index verify; else from the handles of a damaged index (each block still proves itself
 * by its own checksum); else, from the first byte without a known boundary, by searching for
 * the next offset where a trailer's checksum matches the bytes before it (FORMAT.md, "Salvage").
 * Damage to the footer, filter or index alone loses no entry. Nothing returned was not
 * verified. Used by one thread. */
typedef struct sst_scan sst_scan;

/* A stretch of the data region that was lost: file bytes [offset, offset + bytes), and the
 * internal keys it may have held: every one is > lower (if has_lower) and <= upper (if
 * has_upper). Borrowed for the duration of the callback. */
typedef struct sst_scan_loss {
    uint64_t offset, bytes;
    int has_lower, has_upper;
    slice lower, upper;
    const char *why; /* static: the first failed check */
} sst_scan_loss;

typedef void (*sst_scan_loss_fn)(void *ctx, const sst_scan_loss *loss);

typedef struct sst_scan_stats {
    uint64_t blocks_read, blocks_lost, bytes_lost;
    uint64_t entries;                   /* entries in the blocks returned */
    uint64_t footer_entries;            /* entries the footer counts (valid if footer_ok) */
    int footer_ok, index_ok, filter_ok; /* each 1 if it verified (filter: or there is none) */
} sst_scan_stats;

/* Starts a scan of table f (taken over; closed by sst_scan_close, or on failure). Reads the
 * footer, index and filter if they verify (damage there is logged, not fatal). Returns 0, or
 * KV_ENOMEM / KV_EIO. name is copied; log (may be NULL) must outlive the scan. */
int sst_scan_open(env_file *f, uint64_t file_size, const char *name, const kv_logger *log,
                  sst_scan **out);
/* Moves to the next good data block. Returns 1 with *blk set (borrowed until the next call or
 * close; its entries were all checked, keys strictly increasing across the whole scan), 0 at the
 * end, or KV_EIO/KV_ENOMEM. Each lost stretch is passed to loss(ctx, ...) (may be NULL) before
 * the block that follows it, or before 0 is returned, and logged with file and offset. */
int sst_scan_next(sst_scan *s, sst_scan_loss_fn loss, void *ctx, const struct block **blk);
void sst_scan_get_stats(const sst_scan *s, sst_scan_stats *st);
/* 1 and *filter (borrowed until close) if the table's Bloom filter verified, else 0. Since the
 * filter holds every user key of the table, a key it rules out was in no lost block. */
int sst_scan_filter(const sst_scan *s, slice *filter);
void sst_scan_close(sst_scan *s); /* NULL is a no-op */

/* ---- Generic iterators built in table/ ----------------------------------------------------- */

/* Merges n children (taking ownership) into one iterator in ikey_compare order; duplicates are
 * all yielded (newest first for equal user keys since tags differ). NULL if out of memory (the
 * children are freed). */
iter *merger_new(iter **children, int n);

#endif /* KV_SST_H */
