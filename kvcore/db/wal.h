/* wal.h - the record log used for the write-ahead log and the manifest.
 *
 * Record grammar (kvcore/FORMAT.md; on-disk: never change):
 *   record   := checksum:fixed64  length:fixed32  type:u8  payload:length bytes
 *   checksum := XXH3-64 over (length, type, payload) as stored
 *   type     := 1 (full record) | 2 (sync marker); any other value is corruption
 *   marker   := a type-2 record whose payload is nonce:fixed64 synced:fixed64
 * All fixed-width integers are little-endian. A log is a plain sequence of records; a record
 * may be of any length up to 2^32-1.
 *
 * Sync markers (WAL only; the manifest writes none): a writer with markers enabled starts the
 * log with a marker (synced 0) that fixes the log's random nonce, and puts a marker in front
 * of the first record appended after each successful sync, in the same append, carrying the
 * size the sync made durable. A marker found intact anywhere in the file (same nonce) thus
 * proves that every byte before its `synced` offset was on stable storage.
 *
 * Recovery: the reader returns the full records in order (markers are consumed, never
 * returned) and stops at the first one that is truncated (its header or payload runs past the
 * end of the file) or fails its checksum/type/marker check. What follows is dropped;
 * wal_reader_dropped_bytes() says how much, and wal_reader_tail() whether it is a torn
 * unsynced tail (a power cut) or damage to bytes a sync had made durable. The one place that
 * decides this, for the WAL and the manifest alike.
 *
 * Threads: a writer or reader is used by one thread at a time.
 */
#ifndef KV_WAL_H
#define KV_WAL_H

#include <stddef.h>
#include <stdint.h>
#include "util/env.h"
#include "util/slice.h"

#define WAL_HEADER_SIZE 13
#define WAL_TYPE_FULL 1
#define WAL_TYPE_SYNC 2
#define WAL_SYNC_PAYLOAD_SIZE 16 /* nonce:fixed64 synced:fixed64 */
#define WAL_SYNC_RECORD_SIZE (WAL_HEADER_SIZE + WAL_SYNC_PAYLOAD_SIZE)
#define WAL_PAGE_SIZE 4096 /* the page a power cut writes back whole or not at all */

typedef struct wal_writer wal_writer;

/* Writes records to f (taken over: closed by wal_writer_close), whose current size is
 * `offset`. Returns 0 or KV_ENOMEM (f is then closed). */
int wal_writer_new(env_file *f, uint64_t offset, wal_writer **out);
/* Appends one record (not synced). After a failed append the writer refuses further records
 * with the same error, since the log may end in a partial record. */
int wal_add_record(wal_writer *w, slice payload);
/* Makes the log write sync markers (see the top of this file) under the given nonce, which
 * should be unpredictable to whoever supplies payload bytes. Only before the first record of
 * an empty log (offset 0). Returns 0, or KV_EINVAL (nothing changes). */
int wal_writer_enable_sync_markers(wal_writer *w, uint64_t nonce);
/* Syncs the file. On success the log's current size counts as durable: the next record
 * appended, or wal_add_sync_marker(), records it. After a failed append: that error. */
int wal_writer_sync(wal_writer *w);
/* Appends a lone marker recording the last synced size, if markers are on and no marker
 * records it yet; else does nothing. Not synced. For a log about to be closed after its
 * final sync, so that a later reader can prove all of it durable. Returns 1 if it appended
 * a marker, 0 if none was due, or the append error (sticky, as for wal_add_record). */
int wal_add_sync_marker(wal_writer *w);
uint64_t wal_writer_size(const wal_writer *w); /* bytes in the file */
/* Closes the file and frees w (NULL is a no-op). Returns the close error, if any. */
int wal_writer_close(wal_writer *w);

typedef struct wal_reader wal_reader;

/* Reads records from f (taken over). */
int wal_reader_new(env_file *f, wal_reader **out);
/* Reads records from memory (borrowed; for tests and fuzzing). */
int wal_reader_new_mem(slice data, wal_reader **out);
/* 1: *record holds the next record (borrowed until the next call); 0: end of the log (a clean
 * end, or a torn/corrupt tail that was dropped); < 0: an I/O error (KV_EIO, KV_ENOMEM). */
int wal_read_record(wal_reader *r, slice *record);
/* Offset just past the last good record returned. */
uint64_t wal_reader_good_offset(const wal_reader *r);
/* After the end: bytes of the file after the last good record (0 on a clean end). */
uint64_t wal_reader_dropped_bytes(const wal_reader *r);
/* After the end: a static description of why the tail was dropped ("truncated header",
 * "truncated payload", "checksum mismatch", "bad record type", "bad sync marker"), or NULL
 * for a clean end. */
const char *wal_reader_drop_reason(const wal_reader *r);

enum wal_tail {
    WAL_TAIL_CLEAN = 0,    /* nothing dropped */
    WAL_TAIL_UNSYNCED = 1, /* the dropped bytes were never promised durable: a torn tail */
    WAL_TAIL_DAMAGED = 2,  /* the dropped bytes include damage to durable bytes */
};
/* After the end: what the dropped bytes are. In a log with sync markers the reader looks for
 * intact markers of this log after the bad record, up to the end of the file: damage iff one
 * proves a byte at or after the bad record durable (exact for power cuts). In a log without
 * (the manifest, older WALs, a WAL whose header never reached the disk) it judges by how a
 * power cut leaves a file: cut short ("truncated ...": torn), or else by the zero-page rule
 * of wal_tail_is_torn() below. Reading the rest of the file may fail: wal_read_record() then
 * returned the error. */
enum wal_tail wal_reader_tail(const wal_reader *r);
/* After the end: 1 if wal_reader_tail() rests on this log's sync markers, 0 if on the
 * zero-page heuristic (or nothing was dropped). */
int wal_reader_tail_proven(const wal_reader *r);
/* The highest offset proven durable by a marker of this log (after the end: including the
 * markers found past the bad record); 0 if none. */
uint64_t wal_reader_synced_offset(const wal_reader *r);
void wal_reader_free(wal_reader *r);

/* Reads up to n bytes at off into dst: 0 with *got <= n bytes read (fewer only at the end of
 * the file), or an error. */
typedef int (*wal_read_fn)(void *ctx, uint64_t off, char *dst, size_t n, size_t *got);
/* The zero-page rule, for the bytes [from, end) dropped after a bad record at `from` of a log
 * appended without sync markers (the WAL reader uses it; so does the value log for its newest
 * segment, which is appended the same way). A power cut leaves pages never written back as
 * zeros, possibly before pages that were. Sets *torn to 1 (a torn tail) if the bytes are all
 * zeros, or a page-aligned WAL_PAGE_SIZE run of them (the last may end at `end`) is all zeros,
 * or the bytes from `from` to the end of its page are all zeros and the next page starts with
 * a non-zero byte (the first page of an append lost, the next kept); else 0 (damage). Reads
 * through read(ctx, ...), page by page; a file shorter than `end` is judged by what it holds.
 * Returns 0, or read's error (KV_EIO if it claims more than it was asked for), *torn then 0.
 * Uses WAL_PAGE_SIZE bytes of stack; threads: as read allows. */
int wal_tail_is_torn(wal_read_fn read, void *ctx, uint64_t from, uint64_t end, int *torn);
/* wal_tail_is_torn() over [from, end) of f (borrowed). Any thread that may pread f. */
int wal_file_tail_is_torn(env_file *f, uint64_t from, uint64_t end, int *torn);

#endif /* KV_WAL_H */
