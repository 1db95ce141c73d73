/* vlog.h - the value log: large values live in append-only segment files and the LSM stores a
 * small pointer to them, so that flush and compaction copy pointers, not file contents.
 *
 * A store is in value-log mode when its directory holds the VLOG marker (written once, when a
 * store is created with kv_options.value_log_threshold > 0; see kvcore/FORMAT.md "Value log").
 * In that mode EVERY value in the WAL, memtables and tables carries a one-byte tag, and this
 * module is the one place that decides and decodes it:
 *   value := 0x00 user_bytes                       (inline)
 *          | 0x01 pointer                          (the bytes live in a segment record)
 * Two more tags exist only in memory, between a writer's thread and the write leader:
 *          | 0x02 record                           (staged: appended by the leader)
 *          | 0x03 seg:varint64 off:varint64 record (a GC move, applied only if the key still
 *                                                   points at (seg, off))
 *
 * Write path: the caller's thread stages a batch (vlog_stage_batch: compresses and checksums
 * large values), the leader appends the staged records of the joined group to the active
 * segment in one write and rewrites them into pointers (vlog_commit_batch) before the WAL
 * append. A segment is synced before any WAL record that points into it is synced (the leader
 * syncs both for a sync write), before a flush records a table that points into it, and when it
 * is closed; WAL replay checks that every pointer it meets leads to a sound record.
 *
 * Invariants:
 *  1. Only the write leader appends (vlog_commit_batch); appends and syncs hold wmu.
 *  2. Every segment except the active one is durable (synced when it was closed).
 *  3. A segment is unlinked only when (a) its live records were moved by a synced write whose
 *     WAL is obsolete (no replay can meet an old pointer), (b) no snapshot older than that
 *     write exists, and (c) no reader that pinned an epoch at or before the move is still
 *     running (vlog_pin).
 *  4. The segment table (segs) only grows at the end (numbers increase) and loses entries only
 *     by GC deletion.
 *
 * Long-lived readers: a snapshot, an iterator or a kv_get that is still running keeps every
 * segment GC empties after it began (invariant 3), and an unflushed WAL keeps the segments its
 * records' old pointers name. What they hold is at most what was rewritten (overwritten or
 * deleted, then moved by GC) while they lived, plus one segment: never more than the bytes
 * written since the oldest of them began. kv_stats shows it (vlog_held_segments, _bytes, and
 * _seconds: how long the oldest has waited), and the GC logs a warning, naming whether an
 * iterator or a snapshot/WAL holds them, once a held segment has waited VLOG_HELD_WARN_SECS
 * (5 minutes; again every 5 minutes while it lasts). Releasing the snapshot or iterator (or a
 * flush, for a WAL) lets the next GC pass delete them.
 *
 * Damaged segments: a segment with a record that cannot be read (checksum, sizes) is never
 * deleted, since the unreadable bytes may be a live value. GC still moves every live record it
 * can read (before the damage and after it, from the next record that verifies), so only the
 * damaged values keep it; kv_stats counts it (vlog_damaged_segments), the GC logs it, and
 * kv_check reports it for fsck --repair / kv_salvage. An unreadable end of the segment that was
 * being appended when the process last stopped, cut off by the end of the file or zeros with no
 * record after it, is a crash's torn tail instead, and the segment is collected as usual.
 *
 * Open files: reads go through a cache of at most VLOG_OPEN_SEGMENTS(max_open_files) readable
 * segment handles (LRU; a quarter of kv_options.max_open_files, at least 4), on top of the
 * table cache's max_open_files; the active segment's append handle and the short-lived handles
 * of a GC pass or a check (one at a time) come on top of that. So a store holds at most about
 * 1.25 * max_open_files + 3 + (WAL, MANIFEST, LOCK, LOG) files open, whatever its size.
 *
 * Locks: the db's mu (if held by the caller) before wmu (the writer's state) before mu (segment
 * table, pins, counters). vlog never calls back into the db with wmu or mu held: the leader
 * reserves file numbers and decides its GC ops (points_at) before it takes wmu. The GC's own
 * locks (gc_run_mu: one pass at a time; gc_mu: the thread's flags) are taken without the db's
 * mu, and gc_run_mu is held while the GC writes through the db.
 */
#ifndef KV_VLOG_H
#define KV_VLOG_H

#include <stdint.h>
#include "db/batch.h"
#include "kvcore/kv.h"
#include "util/coding.h"
#include "util/env.h"
#include "util/log.h"
#include "util/slice.h"

/* on-disk: never change. See kvcore/FORMAT.md "Value log". */
#define VLOG_TAG_INLINE 0
#define VLOG_TAG_POINTER 1
#define VLOG_TAG_STAGED 2 /* memory only */
#define VLOG_TAG_GC 3     /* memory only */
#define VLOG_MARKER_NAME "VLOG"
/* "kvVLog\0\x01" read as a little-endian fixed64 */
#define VLOG_MAGIC UINT64_C(0x0100676f4c56766b)
/* Segments and the marker are written with VLOG_FORMAT_VERSION; every version from
 * VLOG_FORMAT_VERSION_MIN on is read (version 1 has no paged records). A writable open upgrades
 * a version-1 marker, so that a binary that knows only version 1 refuses the store. */
#define VLOG_FORMAT_VERSION 2
#define VLOG_FORMAT_VERSION_MIN 1
#define VLOG_SEGMENT_HEADER_SIZE 16 /* magic:8 version:4 reserved:4 */
/* record := checksum:8 type:1 klen:4 slen:4 vlen:4 key[klen] stored[slen]. type 0: stored is
 * the value; 1: stored is zstd of it (vlen bytes); types 0 and 1: checksum = XXH3-64 over
 * bytes [8, end). type 2 (paged, version 2): stored is sums[ceil(vlen / VLOG_PAGE_SIZE)]
 * (fixed64 XXH3-64 of each VLOG_PAGE_SIZE page of the value, the last one short) then the
 * value; checksum = XXH3-64 over [8, end of sums), so that a read of part of the value reads
 * and verifies the head and only the pages it needs. Uncompressed values of at least
 * VLOG_PAGED_MIN bytes are written paged. */
#define VLOG_RECORD_HEADER_SIZE 21
#define VLOG_RECORD_RAW 0
#define VLOG_RECORD_ZSTD 1
#define VLOG_RECORD_PAGED 2
#define VLOG_PAGE_SIZE 4096
#define VLOG_PAGED_MIN (2 * VLOG_PAGE_SIZE)

/* Segment size when kv_options.value_log_segment_bytes is 0, and the cap by the disk: a segment
 * is at most 1/VLOG_SEGMENT_DISK_FRACTION of the file system (not below VLOG_SEGMENT_MIN_CAP),
 * since GC needs room for a segment's live records before it can delete it, and a store
 * holds up to a segment of garbage per segment written since the last GC pass. */
#define VLOG_SEGMENT_DEFAULT_BYTES (UINT64_C(64) << 20)
#define VLOG_SEGMENT_DISK_FRACTION 32
#define VLOG_SEGMENT_MIN_CAP (UINT64_C(1) << 20)
/* Writers wait for GC while the file system has less than this many segments of free space
 * (vlog_throttle): room for the GC's moves (VLOG_GC_SEGMENTS_PER_PASS segments per pass) and
 * for the flushes that make its deletions safe. */
#define VLOG_LOW_WATER_SEGMENTS 4

/* The bound on cached readable segment handles for a given kv_options.max_open_files. */
#define VLOG_OPEN_SEGMENTS(max_open_files)                                                         \
    ((max_open_files) / 4 > 4 ? (size_t)(max_open_files) / 4 : 4u)

typedef struct vlog vlog;

/* What the value log needs from the database; every callback is called without vlog's locks. */
typedef struct vlog_db_ops {
    /* A fresh file number for a new segment (takes the db's mu). */
    uint64_t (*new_file_number)(void *ctx);
    /* 1 if key's newest value is the pointer to (seg, off), 0 if not, or an error. Called by
     * the GC, and by the leader in vlog_commit_batch (so no other write can intervene). */
    int (*points_at)(void *ctx, slice key, uint64_t seg, uint64_t off);
    /* GC: applies a batch of VLOG_TAG_GC ops as a synced write on its own (never joined with
     * other writers); *last_seq and *log_number receive values at least as large as the
     * write's last sequence and WAL number. An empty batch writes nothing but returns only
     * after every write queued before it has finished (its pointers are in the memtable). */
    int (*gc_write)(void *ctx, const kv_batch *b, uint64_t *last_seq, uint64_t *log_number);
    /* GC: 1 if no snapshot older than seq exists and every WAL <= log_number is obsolete.
     * When only the current WAL stands in the way, flushes the memtable and waits for the
     * flush (so that the segment goes in this pass). */
    int (*gc_safe)(void *ctx, uint64_t seq, uint64_t log_number);
    void *ctx;
} vlog_db_ops;

/* Opens the value log of store `dir`. If the VLOG marker is absent and `creating` (a new store)
 * with opts->value_log_threshold > 0, writes it (durably) first. If the store is not in
 * value-log mode, *out is NULL and 0 is returned. In read-only mode nothing is written. Returns
 * 0, KV_ECORRUPT (a malformed marker, logged), or an I/O error. Caller owns *out; close with
 * vlog_close() after every other use has ended. Single-threaded (kv_open). */
int vlog_open(const char *dir, const kv_env *env, const kv_logger *log, const kv_options *opts,
              int creating, const vlog_db_ops *ops, vlog **out);
/* The size at which segments are closed for kv_options.value_log_segment_bytes `segment_bytes`
 * (0: VLOG_SEGMENT_DEFAULT_BYTES) on a file system of fs_total bytes (0: unknown, no cap): at
 * most fs_total / VLOG_SEGMENT_DISK_FRACTION, but a cap never goes below VLOG_SEGMENT_MIN_CAP
 * (a smaller segment_bytes is kept). vlog_open and the reserve (reserve_auto_bytes) both use
 * it. Pure. */
uint64_t vlog_segment_cap(uint64_t segment_bytes, uint64_t fs_total);
/* Stops the GC thread if started, closes every segment (the active one synced first: a close
 * error is logged) and frees v. NULL is a no-op. */
void vlog_close(vlog *v);

/* Whether `dir` holds the VLOG marker (1), not (0), or an error. */
int vlog_marker_exists(const kv_env *env, const char *dir);

/* ---- Write path ---- */

/* Encodes the user batch `in` into a new staged batch *out (caller owns; kv_batch_free):
 * values >= threshold become staged records (compressed when that saves >= 1/8), others are
 * tagged inline. *record_bytes (may be NULL) receives the bytes of the staged records, what
 * the commit will append to the segments (0: the batch needs no room in the value log). Any
 * thread. Returns 0 or KV_ENOMEM. */
int vlog_stage_batch(vlog *v, const kv_batch *in, kv_batch **out, uint64_t *record_bytes);

/* Back-pressure from garbage. A writer about to append `record_bytes` calls this first,
 * without any lock: while the file system's free space is below the low-water mark
 * (VLOG_LOW_WATER_SEGMENTS segments; read with env->free_space at most every 1/8 of the mark
 * appended, and at every call below it) it waits for the background GC, which then runs
 * again at once while it makes progress, measures again every segment measured before the
 * last write, and collects any segment with at least half of value_log_gc_percent dead. It
 * returns as soon as free space is above the mark, or when a pass it asked for found nothing
 * to reclaim and no moved segment waits for its deletion (or one has waited 3 s: a reader
 * holds it). The disk is then full of live data: the append meets the disk's own ENOSPC, and
 * no writer waits again until compaction counts new garbage, or for 100 ms - 1 s after writes
 * were applied since. Without free_space in the env, or without the GC thread (read-only, or
 * stopped), it returns at once. The time waited is counted in kv_stats (vlog_stalls,
 * vlog_stall_micros, and stall_micros). Thread-safe. An error of the GC is logged by the GC;
 * the append decides. */
void vlog_throttle(vlog *v, uint64_t record_bytes);
/* The write leader inserted a group of `ops` operations into the memtable (db mu held): the
 * GC's clock of changes, by which writers waiting for space have segments measured again.
 * Thread-safe, lock-free. */
void vlog_note_applied(vlog *v, uint64_t ops);
/* Leader only: appends the staged records of `staged` to the active segment (rotating it when
 * full), syncs the segment if `sync`, and sets *out to a batch whose values are all inline or
 * pointers (either `staged` itself or a batch owned by v, valid until the next call). GC ops
 * whose key moved on are dropped. *user_bytes receives the keys + user values of the group.
 * Returns 0, or an error (nothing that *out would point at is then referenced; an error of the
 * segment's sync is returned as is and the caller must treat it like a failed WAL sync). */
int vlog_commit_batch(vlog *v, const kv_batch *staged, int sync, const kv_batch **out,
                      uint64_t *user_bytes);
/* Makes every record appended so far durable (flush calls it before recording a table).
 * Thread-safe. 0 or an I/O error. */
int vlog_sync(vlog *v);

/* ---- Reads ---- */

/* Decodes the stored value `enc` of `key`: an inline value is returned as a slice into enc; a
 * pointer is read, verified (checksum, sizes, key - unless key.data is NULL, for tools that do
 * not know it) and decompressed into *scratch, and *out
 * points into scratch. Returns 0, or KV_ECORRUPT (logged with segment file and offset and the
 * check that failed) / KV_EIO / KV_ENOMEM; *out is empty then. Thread-safe; the caller must
 * hold a pin (vlog_pin) from before it took its read view until it is done with the value. */
int vlog_resolve(vlog *v, slice key, slice enc, buf *scratch, slice *out);
/* Copies bytes [off, off + len) of the value `enc` of `key` (as vlog_resolve: key.data NULL
 * skips the key check) into dst: *n receives the bytes copied (0 when off >= the value's
 * length) and *vlen the whole value's length. Of a paged record only the head (header, key,
 * page checksums) and the pages that hold the range are read and verified; inline values are
 * copied, other records read whole (into *scratch) and the range copied out. Returns 0 or
 * KV_ECORRUPT (logged with segment file, offset and the check that failed; dst may then hold
 * garbage and must not be used) / KV_EIO / KV_ENOMEM. Thread-safe; pin as for vlog_resolve. */
int vlog_resolve_range(vlog *v, slice key, slice enc, uint64_t off, void *dst, size_t len,
                       size_t *n, uint64_t *vlen, buf *scratch);
/* Pins the current GC epoch: no segment that a read view taken after this call can reach is
 * deleted until vlog_unpin(). Returns the epoch to pass to vlog_unpin. Thread-safe. */
uint64_t vlog_pin(vlog *v);
/* Readable segment handles open now (at most VLOG_OPEN_SEGMENTS, more only while that many
 * reads run at once). Thread-safe. */
uint64_t vlog_open_segments(vlog *v);
void vlog_unpin(vlog *v, uint64_t epoch);

/* ---- Recovery ---- */

/* WAL replay: checks that every pointer in the batch `rep` leads to a sound record (read in
 * full for the newest segment, the only one a crash can leave short; inside the file for the
 * others) and notes its segment for vlog_sync_recovered. Returns 0, KV_ECORRUPT (logged; the caller
 * drops the record and the rest of that WAL as a torn tail), or another error. */
int vlog_verify_batch(vlog *v, slice rep);
/* Makes durable the segments that replayed records point into (they may hold unsynced writes
 * of the crashed process) before recovery records the replayed memtable in a table. */
int vlog_sync_recovered(vlog *v);

/* ---- Space accounting and garbage collection ---- */

/* Compaction dropped an entry whose stored value is `enc`: counts its record as garbage of its
 * segment. Thread-safe; cheap; ignores inline values. */
void vlog_note_dropped(vlog *v, slice enc);
/* Adds the value-log counters to *st (the vlog_* fields; *st is zeroed by the caller).
 * Thread-safe. */
void vlog_get_stats(vlog *v, kv_stats *st);
/* Runs one GC pass: picks the closed segment with the largest garbage share (at least
 * opts.value_log_gc_percent, or any garbage with `force`), moves its live records, and deletes
 * segments whose move is safe (invariant 3). *moved (may be NULL) receives the bytes re-appended.
 * Returns 0 (also when there was nothing to do) or an error. Not concurrent with itself. */
int vlog_gc_run(vlog *v, int force, uint64_t *moved);
/* Deletes segments whose earlier GC moves have become safe. Returns how many were deleted. */
int vlog_gc_collect(vlog *v);
/* Starts/stops the background GC thread (wakes every second and after vlog_gc_kick). */
int vlog_gc_start(vlog *v);
void vlog_gc_stop(vlog *v);
void vlog_gc_kick(vlog *v);

/* ---- Offline check ---- */

/* Verifies every record of every segment in dir (kv_check). A record cut off by the end of the
 * file, or whose tail passes the zero-page rule (wal_tail_is_torn in wal.h), is a torn tail
 * (logged, not counted). *problems is incremented per damaged segment; *bytes (may be NULL)
 * receives the bytes verified. Returns 0 or an I/O error. */
int vlog_check_dir(const char *dir, const kv_env *env, const kv_logger *log, uint64_t *problems,
                   uint64_t *bytes);
/* Added (salvage): vlog_check_dir that also calls note(nctx, number, 1) (if note is not NULL)
 * for each segment it counts as damaged (a bad header or a damaged record), and
 * note(nctx, number, 0) for each whose end it takes for a torn tail. */
int vlog_check_dir_ex(const char *dir, const kv_env *env, const kv_logger *log, uint64_t *problems,
                      uint64_t *bytes, void (*note)(void *ctx, uint64_t seg, int damaged),
                      void *nctx);

/* Tests only: the format version that value logs opened from now on write, as the binaries
 * that knew only it did (1: no paged records, version-1 segment headers and marker, and a
 * version-1 marker is not upgraded). VLOG_FORMAT_VERSION restores the default. Not for
 * concurrent use with kv_open. */
void vlog_test_write_version(uint32_t version);

/* Parses a pointer value (with its tag). 1 and fills the fields if well formed, else 0. */
int vlog_parse_pointer(slice enc, uint64_t *seg, uint64_t *off, uint32_t *size, uint32_t *vlen);

#endif /* KV_VLOG_H */
