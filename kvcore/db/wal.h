/* wal.h - the record log used for the write-ahead log and the manifest.
 *
 * Record grammar (kvcore/FORMAT.md; on-disk: never change):
 *   record   := checksum:fixed64  length:fixed32  type:u8  payload:length bytes
 *   checksum := XXH3-64 over (length, type, payload) as stored
 *   type     := 1 (full record); any other value is corruption
 * All fixed-width integers are little-endian. A log is a plain sequence of records; a record
 * may be of any length up to 2^32-1.
 *
 * Recovery: the reader returns records in order and stops at the first one that is truncated
 * (its header or payload runs past the end of the file) or fails its checksum/type check. What
 * follows is dropped; wal_reader_dropped_bytes() says how much, and the caller logs it.
 *
 * Threads: a writer or reader is used by one thread at a time.
 */
#ifndef KV_WAL_H
#define KV_WAL_H

#include <stdint.h>
#include "util/env.h"
#include "util/slice.h"

#define WAL_HEADER_SIZE 13
#define WAL_TYPE_FULL 1

typedef struct wal_writer wal_writer;

/* Writes records to f (taken over: closed by wal_writer_close), whose current size is
 * `offset`. Returns 0 or KV_ENOMEM (f is then closed). */
int wal_writer_new(env_file *f, uint64_t offset, wal_writer **out);
/* Appends one record (not synced). After a failed append the writer refuses further records
 * with the same error, since the log may end in a partial record. */
int wal_add_record(wal_writer *w, slice payload);
int wal_writer_sync(wal_writer *w);
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
 * "truncated payload", "checksum mismatch", "bad record type"), or NULL for a clean end. */
const char *wal_reader_drop_reason(const wal_reader *r);
void wal_reader_free(wal_reader *r);

#endif /* KV_WAL_H */
