/* kv.h - the public interface of kvcore, an embedded LSM key-value store.
 *
 * This is the only header a user of kvcore includes. Keys and values are arbitrary byte strings;
 * keys are ordered bytewise (memcmp, shorter first on a common prefix).
 *
 * Conventions used by every function below:
 *  - Functions return 0 on success or a negative KV_E* code; kv_strerror() names a code.
 *  - Out-parameters are set to NULL/0 on failure.
 *  - Memory returned to the caller is owned by the caller unless a comment says "Borrowed".
 *  - A kv_db is fully thread-safe: any number of threads may read, write, iterate and take
 *    snapshots at once. A kv_iter and a kv_batch are owned by one thread at a time.
 *  - Detailed diagnostics (which file, which offset, which check failed) go to the logger set in
 *    kv_options; the return code says only the class of error.
 */
#ifndef KVCORE_KV_H
#define KVCORE_KV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Errors ------------------------------------------------------------------------------ */

#define KV_OK 0
#define KV_ENOTFOUND (-1) /* key absent; not an error condition for kv_get's callers */
#define KV_ECORRUPT (-2)  /* a checksum or structural check failed; details were logged */
#define KV_EIO (-3)       /* the operating system reported an I/O error */
#define KV_ENOSPC (-4)    /* the disk is full; the store stays usable and loses nothing */
#define KV_ENOMEM (-5)    /* out of memory */
#define KV_EINVAL (-6)    /* bad argument, or a directory that is not a store */
#define KV_EBUSY (-7)     /* the store is locked by another process or kv_db */
#define KV_EVERSION (-8)  /* the store was written by a newer format version */
#define KV_EEXIST (-9)    /* error_if_exists was set and the store exists */
#define KV_ECLOSED (-10)  /* the engine stopped accepting writes after an earlier I/O error */

/* Returns a static, human-readable name for a KV_E* code. */
const char *kv_strerror(int err);

/* ---- Options ----------------------------------------------------------------------------- */

enum kv_sync_mode {
    KV_SYNC_NEVER = 0,      /* the WAL is never fsynced (kv_sync() still syncs) */
    KV_SYNC_ON_REQUEST = 1, /* fsync when a write carries KV_WRITE_SYNC or on kv_sync() */
    KV_SYNC_ALWAYS = 2,     /* every write batch is on stable storage before it returns */
};

enum kv_compaction_style {
    KV_COMPACTION_LEVELED = 0, /* L0 by file count, L1+ by size, 10x per level (default) */
    KV_COMPACTION_TIERED = 1,  /* size-tiered: merge runs of similar size; less write amp */
};

enum kv_log_level { KV_LOG_ERROR = 0, KV_LOG_WARN = 1, KV_LOG_INFO = 2, KV_LOG_DEBUG = 3 };

/* Called from any kvcore thread, possibly concurrently; msg has no trailing newline. */
typedef void (*kv_log_fn)(void *ctx, int level, const char *msg);

struct kv_env; /* the I/O function table; see kvcore/util/env.h. NULL means POSIX. */

typedef struct kv_options {
    int create_if_missing;     /* create an empty store if the directory holds none (default 1) */
    int error_if_exists;       /* fail with KV_EEXIST if a store exists (default 0) */
    int read_only;             /* open without writing anything, not even the LOCK (default 0) */
    size_t memtable_bytes;     /* memory of the active and the frozen memtable together */
    size_t block_size;         /* target uncompressed SSTable data block size */
    size_t block_cache_bytes;  /* LRU block cache capacity, 0 disables it */
    int compression;           /* 0: none, 1: zstd per block when it saves >= 12.5% */
    int compression_level;     /* zstd level */
    int bloom_bits_per_key;    /* 0 disables Bloom filters */
    int sync_mode;             /* enum kv_sync_mode */
    int compaction_style;      /* enum kv_compaction_style */
    int max_open_files;        /* bound on the table cache's open files; a value log keeps at
                                  most a quarter as many segment files open besides */
    size_t target_file_size;   /* SSTable size produced by compaction */
    uint64_t level1_bytes;     /* size limit of L1; each further level is 10x */
    int l0_compaction_trigger; /* L0 file count that starts a compaction */
    int l0_slowdown_trigger;   /* L0 file count at which each write is delayed by 1 ms */
    int l0_stop_trigger;       /* L0 file count at which writes wait for compaction */
    int paranoid_checks;       /* verify every block checksum on read (default 1) */
    kv_log_fn log_fn;          /* NULL: warnings and errors to stderr */
    void *log_ctx;             /* passed to log_fn */
    int log_level;             /* messages above this level are not produced */
    const struct kv_env *env;  /* NULL: the POSIX environment; tests inject faults here */
    /* Added: bytes kept allocated in the store's RESERVE file so that a full disk can be
     * recovered from (see "Full disk" below and kvcore/FORMAT.md). KV_RESERVE_AUTO (the
     * default): memtable_bytes + 2 x the table size compaction writes (target_file_size, at
     * most 1/64 of the file system) + with the value log the live share of a segment GC may
     * move (value_log_segment_bytes x (100 - value_log_gc_percent) %): room to flush the
     * deletions, take a compaction step and free a segment. Any value is capped at 1/8 of the
     * file system's size.
     * 0: no reserve and no low-space mode (a full disk then fails every write until space
     * comes back from outside). */
    uint64_t reserve_bytes;
    /* Added: the value log (kvcore/FORMAT.md "Value log"). A store created with
     * value_log_threshold > 0 keeps every value of at least that many bytes in append-only
     * segment files (zstd-compressed when compression is on and it saves >= 1/8) and only a
     * pointer in the LSM tree, so that flush and compaction do not copy it again. The choice is
     * made when the store is created and recorded in its VLOG file: for a store created without
     * it the threshold is ignored; in a store created with it, 0 keeps new values inline.
     * Default 0 (off). */
    size_t value_log_threshold;
    /* A segment is closed at this size (default 64 MiB; at most 1/32 of the file system, not
     * below 1 MiB, so that GC needs little room on a small disk). */
    uint64_t value_log_segment_bytes;
    /* A closed segment whose estimated dead share reaches this percentage is collected in the
     * background: its live values are appended anew and the file deleted (default 50). */
    int value_log_gc_percent;
    /* Added: read tables through read-only memory mappings instead of pread (where the env can
     * map; falls back to pread otherwise). Saves a system call per block read (seekrandom+next100
     * of kvbench, 1M keys: 117k -> 134k seeks/s), but every table page read counts in the
     * process's RSS until the table is closed: that run's engine RSS went from 88 to 334 MiB.
     * Default 0 (off), so that memory stays within memtable_bytes + block_cache_bytes. */
    int mmap_reads;
} kv_options;

#define KV_RESERVE_AUTO UINT64_MAX

/* Fills *opts with the defaults. Always call it before setting fields: new fields may appear. */
void kv_options_init(kv_options *opts);

/* ---- Opening and closing ----------------------------------------------------------------- */

typedef struct kv_db kv_db;

/* Opens (and, with create_if_missing, creates) the store in directory `path`, recovering from
 * the manifest and replaying the write-ahead log. Takes an exclusive flock on path/LOCK.
 * Returns KV_EBUSY if another handle holds the lock, KV_EINVAL if path holds files that are not
 * a store, KV_EVERSION for a newer format, KV_ECORRUPT if the manifest or a referenced table is
 * damaged or missing (nothing is changed on disk in any of these cases). Caller owns *db. */
int kv_open(const char *path, const kv_options *opts, kv_db **db);

/* Waits for background work in progress, writes nothing new, releases the lock and frees db.
 * Acknowledged writes are already in the WAL; close does not need to flush. NULL is a no-op.
 * No other call on db may be running or start. */
int kv_close(kv_db *db);

/* Deletes every file of the store in `path` (and the directory if it is then empty). */
int kv_destroy(const char *path, const kv_options *opts);

/* ---- Writing ----------------------------------------------------------------------------- */

#define KV_WRITE_SYNC 1 /* flag: the write is on stable storage before the call returns */
/* Added flag: this write frees space (deletions, truncations): it is accepted in low-space
 * mode, where every other write fails with KV_ENOSPC.
 *
 * Full disk. The store keeps reserve_bytes allocated in a RESERVE file. When a WAL append, a
 * flush or a compaction fails with ENOSPC, the reserve is released (the file is deleted) and
 * the store enters low-space mode: flushes and compactions go on using the released space,
 * writes carrying KV_WRITE_RESERVE are accepted (a write that fails with ENOSPC just as the
 * reserve is released is retried once), and every other write fails at once with KV_ENOSPC,
 * storing nothing. Nothing already stored is lost. When the file system's free space is back
 * above reserve_bytes plus a margin (checked by a background thread with a growing backoff,
 * and by every refused write) the reserve is allocated again and the mode ends. A store
 * opened on a nearly full disk releases its reserve before recovery writes anything.
 * kv_stats.low_space says whether the mode is on. */
#define KV_WRITE_RESERVE 2

/* Each of these is atomic and durable as the sync mode and flags say. A write acknowledged
 * (returned 0) is in the WAL: it survives a crash of the process. Thread-safe; concurrent
 * writers are joined into one WAL append and one sync (group commit). */
int kv_put(kv_db *db, const void *key, size_t klen, const void *val, size_t vlen, int flags);
int kv_delete(kv_db *db, const void *key, size_t klen, int flags);

typedef struct kv_batch kv_batch;

/* A batch is an ordered list of puts and deletes applied all-or-nothing by kv_write(). Later
 * operations on the same key win. A batch is not thread-safe; it copies keys and values. */
kv_batch *kv_batch_new(void); /* NULL if out of memory; free with kv_batch_free() */
void kv_batch_free(kv_batch *b);
void kv_batch_clear(kv_batch *b);
int kv_batch_put(kv_batch *b, const void *key, size_t klen, const void *val, size_t vlen);
int kv_batch_delete(kv_batch *b, const void *key, size_t klen);
size_t kv_batch_count(const kv_batch *b);     /* number of operations */
size_t kv_batch_byte_size(const kv_batch *b); /* encoded size, for callers bounding batches */

/* Applies every operation of b atomically. The batch is unchanged and may be reused. */
int kv_write(kv_db *db, const kv_batch *b, int flags);

/* Makes every write acknowledged so far durable (fsync of the WAL), whatever the sync mode. */
int kv_sync(kv_db *db);

/* ---- Reading ----------------------------------------------------------------------------- */

typedef struct kv_snapshot kv_snapshot;

/* A snapshot pins the store's state as of its creation; reads through it never see later
 * writes. Release with kv_snapshot_free() before kv_close(). Thread-safe. NULL if no memory. */
const kv_snapshot *kv_snapshot_new(kv_db *db);
void kv_snapshot_free(kv_db *db, const kv_snapshot *snap);

/* Looks key up as of snap (NULL: latest). On success *val is a malloc'd copy (free with
 * kv_free(); one extra NUL byte follows it, not counted in *vlen). Returns KV_ENOTFOUND if
 * absent, KV_ECORRUPT/KV_EIO if a block on the way could not be read (logged with file and
 * offset; never a wrong value). */
int kv_get(kv_db *db, const kv_snapshot *snap, const void *key, size_t klen, void **val,
           size_t *vlen);
/* Like kv_get, but copies only bytes [off, off + len) of the value into the caller's buf:
 * *n receives the bytes copied (0 if off is at or past the value's end) and *vlen the whole
 * value's length. A large value in the value log is read and verified only in the pages that
 * hold the range (kvcore/FORMAT.md "Value log"), so a small read of a big value costs about its
 * own size. Returns 0, KV_ENOTFOUND (absent), KV_EINVAL, or KV_ECORRUPT/KV_EIO (logged; buf's
 * contents are then undefined, never taken for the value). Thread-safe. */
int kv_get_range(kv_db *db, const kv_snapshot *snap, const void *key, size_t klen, uint64_t off,
                 void *buf, size_t len, size_t *n, size_t *vlen);

/* Frees memory that kvcore returned to the caller. */
void kv_free(void *p);

typedef struct kv_iter kv_iter;

/* Creates an iterator over a consistent view: as of snap, or (NULL) as of this call. The
 * iterator starts unpositioned (invalid). Caller owns the result; free with kv_iter_free()
 * before kv_close(). NULL if out of memory. Use from one thread at a time. */
kv_iter *kv_iter_new(kv_db *db, const kv_snapshot *snap);
/* Like kv_iter_new, for scans that need keys and value lengths only (deleting a range of keys,
 * adding up sizes): values kept in the value log are not read, so a step costs no read of a
 * record. Call kv_iter_value_size() for lengths; kv_iter_value() must not be called on it
 * (it returns "" and length 0). A value-log length comes from the stored pointer, which is not
 * checked against its record (a damaged record shows when the value is read). */
kv_iter *kv_iter_new_keys(kv_db *db, const kv_snapshot *snap);
void kv_iter_free(kv_iter *it);

void kv_iter_seek_first(kv_iter *it);
void kv_iter_seek_last(kv_iter *it);
/* Positions at the first key >= key. */
void kv_iter_seek(kv_iter *it, const void *key, size_t klen);
/* Positions at the last key <= key. */
void kv_iter_seek_for_prev(kv_iter *it, const void *key, size_t klen);
void kv_iter_next(kv_iter *it); /* requires kv_iter_valid() */
void kv_iter_prev(kv_iter *it); /* requires kv_iter_valid() */
int kv_iter_valid(const kv_iter *it);
/* Borrowed: valid until the iterator moves or is freed. Require kv_iter_valid(). */
const void *kv_iter_key(const kv_iter *it, size_t *klen);
const void *kv_iter_value(const kv_iter *it, size_t *vlen);
/* Length of the current value, on any iterator. Requires kv_iter_valid(). */
size_t kv_iter_value_size(const kv_iter *it);
/* 0, or the error that made the iterator stop early (invalid but not at the end). */
int kv_iter_status(const kv_iter *it);

/* ---- Maintenance ------------------------------------------------------------------------- */

/* Writes the memtable out as an SSTable and waits until it is in the manifest. */
int kv_flush(kv_db *db);

/* Compacts every table overlapping [begin, end] (NULL: unbounded) down to the last level,
 * dropping overwritten values and tombstones no snapshot needs. Waits for completion. */
int kv_compact_range(kv_db *db, const void *begin, size_t blen, const void *end, size_t elen);

#define KV_MAX_LEVELS 7

typedef struct kv_stats {
    uint64_t level_files[KV_MAX_LEVELS];
    uint64_t level_bytes[KV_MAX_LEVELS];
    uint64_t memtable_bytes;      /* active memtable */
    uint64_t immutable_memtables; /* frozen memtables waiting for flush */
    uint64_t pending_compaction_bytes;
    uint64_t block_cache_hits;
    uint64_t block_cache_misses;
    uint64_t block_cache_bytes;  /* in use */
    uint64_t bloom_useful;       /* table lookups the Bloom filter avoided */
    uint64_t user_bytes_written; /* keys + values passed to writes */
    uint64_t wal_bytes_written;
    uint64_t flush_bytes_written;
    uint64_t compaction_bytes_written;
    uint64_t compaction_bytes_read;
    uint64_t wal_syncs;
    uint64_t flushes;
    uint64_t compactions;
    uint64_t stall_micros; /* time writers spent delayed or stopped (any cause) */
    uint64_t slowdowns;    /* writes delayed because L0 was too deep */
    uint64_t stops;        /* writes that waited for a flush or compaction */
    uint64_t live_snapshots;
    uint64_t last_sequence;
    uint64_t table_cache_open_files;
    uint64_t total_sst_bytes;   /* bytes of live SSTables, all levels */
    uint64_t background_errors; /* flush/compaction failures seen (logged) */
    /* Added: full-disk handling (see KV_WRITE_RESERVE). */
    uint64_t low_space;        /* 1 while in low-space mode: only KV_WRITE_RESERVE writes */
    uint64_t reserve_bytes;    /* bytes held in the RESERVE file now (0 when released) */
    uint64_t reserve_releases; /* times the reserve was released for lack of space */
    /* Added: the value log (all 0 for a store without one). */
    uint64_t vlog_segments;            /* segment files */
    uint64_t vlog_bytes;               /* their total size */
    uint64_t vlog_garbage_bytes;       /* estimated dead bytes in them (the rest is live) */
    uint64_t vlog_bytes_written;       /* appended since open */
    uint64_t vlog_gc_runs;             /* segments whose live values GC moved */
    uint64_t vlog_gc_bytes_moved;      /* bytes GC re-appended */
    uint64_t vlog_gc_segments_deleted; /* segments GC deleted */
    /* Added: value-log health. */
    uint64_t vlog_open_segments;    /* readable segment files open (at most max_open_files / 4) */
    uint64_t vlog_held_segments;    /* segments GC emptied whose deletion waits for an older
                                       snapshot, iterator or unflushed WAL to end */
    uint64_t vlog_held_bytes;       /* their size: space only ending those readers gives back */
    uint64_t vlog_held_seconds;     /* how long the oldest of them has waited */
    uint64_t vlog_damaged_segments; /* segments with an unreadable record: GC moved what it
                                       could read and keeps them for fsck --repair */
    /* Added: value-log back-pressure (free space short: writers wait for GC). */
    uint64_t vlog_stalls;       /* writes that waited */
    uint64_t vlog_stall_micros; /* time they waited (also in stall_micros) */
} kv_stats;

/* Fills *st with a consistent-enough view of the engine's counters. Thread-safe. */
int kv_get_stats(kv_db *db, kv_stats *st);

/* Progress callback for long offline operations: done/total in bytes. May be NULL. */
typedef void (*kv_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Verifies, offline, every checksum in the store at path: each table's every block, footer,
 * index and filter, the manifest and the WAL. Returns 0 if all is sound, KV_ECORRUPT if any
 * check failed (each failure logged with file and offset), or another error. Does not modify
 * anything. *problems (may be NULL) receives the number of failures found. */
int kv_check(const char *path, const kv_options *opts, kv_progress_fn progress, void *pctx,
             uint64_t *problems);

/* Repairs a damaged store, offline, keeping every entry that can be proven intact (the full
 * rules: kvcore/FORMAT.md, "Salvage"). A missing or malformed CURRENT is pointed at the newest
 * manifest; a write-ahead log whose records stop before its end is cut back to its last good
 * record (the records after the damage are dropped, not resynchronised: a later batch applied
 * without the lost one could mix old and new bytes). If a live table has any damage (a data
 * block, the index, the filter, the footer, a wrong size, or missing), or the manifest's records
 * are damaged, the store is rebuilt: every data block that verifies, of every table (the
 * manifest's live set, or every table in the directory if the manifest is unreadable), and
 * every good WAL record are merged by sequence number into new tables (newest version of each
 * key; deletions applied), recorded in a fresh manifest that CURRENT then names atomically.
 * Only what failed a check is lost; each loss is logged with file, offset and bytes. The
 * original of every changed or replaced damaged file is kept beside it as "<name>.damaged".
 * Takes the store's lock (KV_EBUSY if the store is open). Returns 0 if the store opens
 * afterwards; *fixed (may be NULL) receives the number of files repaired (0: nothing needed
 * fixing). Returns KV_ECORRUPT (logged) if the store still does not open, KV_EINVAL if path
 * holds no store, or an I/O error (KV_EIO, KV_ENOSPC, KV_ENOMEM); files already fixed stay
 * fixed and an interrupted rebuild changes nothing CURRENT names. Call with no kv_db open on
 * path. */
int kv_salvage(const char *path, const kv_options *opts, uint64_t *fixed);

/* Added (salvage): what a salvage lost, for callers that give meaning to keys (kvfs fsck
 * marks the files that depended on lost entries). Opaque; free with kv_lost_free(). */
typedef struct kv_lost kv_lost;

/* Added (salvage): what kv_salvage_ex did. */
typedef struct kv_salvage_stats {
    uint64_t files_fixed;    /* files repaired (kv_salvage's *fixed) */
    uint64_t tables_damaged; /* live tables with a failed check, or missing */
    uint64_t blocks_lost;    /* data blocks (or unresolved stretches) that failed */
    uint64_t bytes_lost;     /* table bytes lost, plus WAL bytes cut */
    uint64_t entries_read;   /* entries recovered from tables and logs (all versions) */
    uint64_t entries_lost;   /* table entries lost, where footers count them (a lower bound) */
    uint64_t keys_written;   /* live keys in the rebuilt tables */
    uint64_t lost_ranges;    /* key ranges in *lost */
    int rebuilt;             /* 1 if tables and manifest were rebuilt */
} kv_salvage_stats;

/* kv_salvage, also describing what was lost: *lost (lost may be NULL) receives, when it
 * returns 0, the key ranges whose newest entries may be gone (caller owns it: kv_lost_free;
 * NULL on failure), and *st (may be NULL) the counts. Same errors as kv_salvage. */
int kv_salvage_ex(const char *path, const kv_options *opts, kv_lost **lost, kv_salvage_stats *st);
/* The number of lost ranges (0 for NULL). */
size_t kv_lost_count(const kv_lost *l);
/* Range i (< kv_lost_count): user keys k with lo < k <= hi, or lo <= k if *lo_inclusive; *lo
 * NULL: no lower bound; *hi NULL: no upper bound (bytewise order). Pointers are borrowed
 * until kv_lost_free. */
void kv_lost_range(const kv_lost *l, size_t i, const void **lo, size_t *lolen, int *lo_inclusive,
                   const void **hi, size_t *hilen);
/* 1 if key may have lost its newest entry: it lies in a lost range and the damaged table's
 * Bloom filter (when it survived) does not rule it out. Such a key may now be absent although
 * it existed, or show an older value than the one lost. 0: the key is as it was. */
int kv_lost_may_contain(const kv_lost *l, const void *key, size_t klen);
void kv_lost_free(kv_lost *l); /* NULL is a no-op */
/* Added (salvage): a rebuild records what it lost in the store's LOST file before it switches
 * CURRENT, and kv_salvage_ex reports those ranges again (with any new ones) until the caller
 * has acted on them all and calls kv_lost_clear, so an interrupted caller can finish.
 * kv_lost_pending loads them without salvaging: *lost is NULL if there are none. Returns 0,
 * KV_ECORRUPT (the file is damaged, logged), or an I/O error. Call with no kv_db open. */
int kv_lost_pending(const char *path, const kv_options *opts, kv_lost **lost);
/* Added (salvage): deletes the LOST file (durably). Returns 0 (also if there is none) or an
 * I/O error. */
int kv_lost_clear(const char *path, const kv_options *opts);

#ifdef __cplusplus
}
#endif

#endif /* KVCORE_KV_H */
