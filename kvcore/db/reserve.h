/* reserve.h - the store's space reserve and low-space mode (recovery from a full disk).
 *
 * A store keeps reserve_bytes allocated in the file RESERVE (see kvcore/FORMAT.md, "Files in a
 * store directory"). When the disk fills, the db releases the reserve (reserve_on_enospc): the
 * freed blocks let the WAL take writes that free space and let flushes and compactions finish,
 * while every other write is refused with KV_ENOSPC (reserve_admit). A monitor thread, and
 * refused writes, watch the file system's free space; once it exceeds the reserve plus a
 * margin the reserve is allocated again and the low-space mode ends.
 *
 * Invariants (mu held):
 *  1. low == 0 implies the reserve is held (held_bytes > 0) or the reserve could not be made
 *     for a reason other than space (logged) or was never wanted (want == 0: disabled).
 *  2. low == 1 implies held_bytes == 0: the reserve is released before the mode starts.
 *  3. The monitor thread runs from reserve_start to reserve_free and touches only RESERVE.
 *
 * Lock order: the db mutex may be held when calling any function here; this module never takes
 * it, so its own mutex is always taken last.
 */
#ifndef KV_RESERVE_H
#define KV_RESERVE_H

#include <stdint.h>
#include "kvcore/kv.h"
#include "util/env.h"
#include "util/log.h"

typedef struct db_reserve db_reserve;

/* The name of the reserve file inside a store directory. See kvcore/FORMAT.md. */
#define RESERVE_FILENAME "RESERVE"

/* The largest table a compaction writes on a file system of fs_total bytes (0: unknown):
 * target_file_size, but at most 1/64 of the file system (not below 1 MiB), so that a
 * compaction step - about one table in, one out - needs little of a small disk. Pure. */
uint64_t reserve_table_cap(uint64_t target_file_size, uint64_t fs_total);

/* The size of an automatic reserve (KV_RESERVE_AUTO) for a store with these sanitized opts,
 * value_log set if it keeps a value log, on a file system of fs_total bytes (0: unknown): what
 * recovery from a full disk needs (the formula and why: reserve.c), capped at 1/8 of
 * fs_total. Pure. */
uint64_t reserve_auto_bytes(const kv_options *opts, int value_log, uint64_t fs_total);

/* Prepares the reserve of the store in dir (opts sanitized; env, log and dir must outlive
 * it), before recovery writes anything: if the file system's free space is below the margin
 * an existing RESERVE is released at once (recovery may need the room) and the store starts
 * in low-space mode. Nothing else is written. Returns 0 or KV_ENOMEM; *out is NULL on failure.
 * Free with reserve_free(). Call once, from kv_open, with the store locked. */
int reserve_open(const char *dir, const kv_options *opts, const kv_env *env, const kv_logger *log,
                 db_reserve **out);

/* After a successful recovery: allocates (or tops up) RESERVE if the free space allows,
 * else enters low-space mode, then starts the monitor thread. Errors other than lack of space
 * are logged and leave the store without a reserve; returns 0, or KV_ENOMEM if the thread
 * cannot start. In low-space mode, after writes that free space, the monitor calls
 * flush(arg) (without any lock of this module held) so that their deletions reach the tables,
 * where a compaction can drop what they delete. */
int reserve_start(db_reserve *r, void (*flush)(void *arg), void *arg);

/* Stops the monitor thread (it calls flush no more). Idempotent; NULL is a no-op. */
void reserve_stop(db_reserve *r);

/* Stops the monitor thread and frees r (the file stays). NULL is a no-op. */
void reserve_free(db_reserve *r);

/* Write path, without the db mutex or with it: 0 if a write with these kv_write flags may
 * proceed, KV_ENOSPC if the store is in low-space mode and the write does not carry
 * KV_WRITE_RESERVE (after checking whether free space is
 * back, which may end the mode). NULL r: always 0. Thread-safe. */
int reserve_admit(db_reserve *r, int flags);

/* Something failed with KV_ENOSPC: releases the reserve (deletes RESERVE) if it is held and
 * enters low-space mode. background: a flush or compaction failed (not the WAL); it may have
 * wanted more than the disk has free, so for a while the mode then ends only once free space
 * exceeds what the release left. Returns 1 if space was released by this call (a retry may
 * now fit), else 0. NULL r: 0. Thread-safe. */
int reserve_on_enospc(db_reserve *r, int background);

/* 1 if the store is in low-space mode, else 0 (also for NULL r). Thread-safe, lock-free. */
int reserve_is_low(db_reserve *r);

/* For kv_get_stats: whether low-space mode is on, bytes held, releases so far. Thread-safe. */
void reserve_get_stats(db_reserve *r, uint64_t *low, uint64_t *held, uint64_t *releases);

/* Deletes dir's RESERVE (kv_destroy). Returns 0 if it is gone or was absent, else an error. */
int reserve_destroy(const kv_env *env, const char *dir);

#endif /* KV_RESERVE_H */
