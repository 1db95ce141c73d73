/* db_impl.h - the database object shared by db.c (open, write path, background work) and
 * db_iter.c (user iterators). Private to kvcore/db; nothing outside db.c/db_iter.c uses it.
 *
 * Invariants (checked by db_check_invariants() in debug builds, mu held):
 *  1. At most one immutable memtable exists; imm != NULL means the flush thread owes a
 *     flush. mem is never NULL while the db is open.
 *  2. Only the writer at the head of the write queue (the leader) touches `wal`, `mem`'s
 *     contents and `logfile_number`; it may do so without mu while it stays at the head.
 *  3. Every WAL numbered >= version_set_log_number() may still hold unflushed writes and is
 *     never deleted; imm's writes are in WALs < imm_log_number, mem's in WALs >= it.
 *  4. Snapshots form a doubly linked ring around `snapshots` ordered by sequence (oldest
 *     first); each sequence is <= last_sequence.
 *  5. Only the flush thread, the compaction thread and kv_open (before they start) write
 *     tables, call log_and_apply or delete files. A table's number is a pending output (in
 *     version_set_live_files) before its file is created, so it is never taken for garbage.
 *  6. db->view is NULL or holds one reference to itself; a read takes a reference only while
 *     the view's mem, imm and version are the current ones (db_view_acquire replaces a stale
 *     view first), so a read never misses a write acknowledged before it began. A stale view
 *     lives until its last reader leaves; delete_obsolete_files drops db->view when stale, so
 *     an idle view never keeps an obsolete table or memtable.
 *
 * Lock order: mu is the only db lock. The table cache, block cache and memtables have their
 * own internal locks and never call back into the db, so they may be used with mu held.
 */
#ifndef KV_DB_IMPL_H
#define KV_DB_IMPL_H

#include <pthread.h>
#include <stdint.h>
#include "db/memtable.h"
#include "db/table_cache.h"
#include "db/version.h"
#include "db/wal.h"
#include "kvcore/kv.h"
#include "util/cache.h"
#include "util/env.h"
#include "util/log.h"

struct kv_snapshot {
    uint64_t sequence;
    struct kv_snapshot *prev, *next; /* protected by mu */
};

/* A read view: the memtables and the version that were current at one moment, pinned by one
 * object that every read starting while they stay current shares. A read takes mu once, to
 * find (or replace) db->view and add a reference; it drops the reference without mu, and
 * only the last reader of a view that has stopped being current takes mu (to unpin the
 * version). See db_view_acquire(). */
typedef struct db_view {
    int refs;      /* atomic; db->view holds one while the view is current */
    memtable *mem; /* referenced */
    memtable *imm; /* referenced; may be NULL */
    version *v;    /* referenced */
} db_view;

struct db_writer; /* a thread waiting in the write queue; defined in db.c */
struct db_manual; /* a kv_compact_range request; defined in db.c */

struct kv_db {
    char *dbname;
    kv_options opts; /* sanitized copy */
    const kv_env *env;
    kv_logger log;
    env_lock *lock; /* NULL in read-only mode */
    cache *block_cache;
    table_cache *tc;

    pthread_mutex_t mu;
    pthread_cond_t bg_cv;    /* background work finished something; writers and waiters wait */
    pthread_cond_t work_cv;  /* wakes the compaction thread */
    pthread_cond_t flush_cv; /* wakes the flush thread */

    version_set *vs;       /* protected by mu */
    memtable *mem;         /* protected by mu for the pointer; contents: leader only */
    memtable *imm;         /* protected by mu */
    size_t mem_base_usage; /* memtable_memory_usage() of mem when it was empty; mu */
    uint64_t imm_log_number;
    wal_writer *wal; /* leader only (NULL in read-only mode) */
    uint64_t logfile_number;
    int log_dirty;   /* appended since the last sync; leader only */
    int log_failed;  /* an append failed: rotate to a new WAL before the next one; mu */
    kv_batch *group; /* the leader's joined batch; leader only */

    struct db_writer *wq_head, *wq_tail; /* protected by mu */
    struct kv_snapshot snapshots;        /* list head (sentinel); protected by mu */
    db_view *view; /* protected by mu: the view reads share, NULL until a read needs one */

    /* Background thread state, protected by mu. */
    pthread_t flush_thread, compact_thread;
    int bg_started; /* threads started: 0, 1 (flush) or 2 (flush and compaction) */
    volatile int shutting_down;
    int bg_error;         /* fatal: corruption or EIO; writes return it from now on */
    int bg_nospace;       /* the last background attempt failed with ENOSPC and is being retried */
    uint64_t bg_failures; /* failed background attempts, so waiters can tell when to give up */
    int last_bg_failure;
    struct db_manual *manual;
    struct db_reserve *reserve; /* space reserve (reserve.h; own lock); NULL when read-only */
    struct vlog *vlog;          /* value log (vlog.h; own locks); NULL: the store has none */

    /* Counters for kv_get_stats, protected by mu. */
    uint64_t user_bytes_written, wal_bytes_written, wal_syncs;
    uint64_t flush_bytes_written, flushes;
    uint64_t compaction_bytes_written, compaction_bytes_read, compactions;
    uint64_t stall_micros, slowdowns, stops;
    uint64_t live_snapshots, background_errors;
};

/* Takes references (mu held inside) to everything a read as of `snap` (NULL: latest) needs:
 * *mem, *imm (may be NULL) and *v, and returns the read sequence. Release with
 * db_release_read_view(). Thread-safe. */
uint64_t db_acquire_read_view(kv_db *db, const kv_snapshot *snap, memtable **mem, memtable **imm,
                              version **v);
/* Drops the references taken by db_acquire_read_view (any may be NULL). Takes mu. */
void db_release_read_view(kv_db *db, memtable *mem, memtable *imm, version *v);

/* Returns a reference to the view of the current memtables and version (db->view, replaced
 * first if any of them changed) and sets *seq to the read sequence as of snap (NULL: latest):
 * everything acknowledged before the call is visible through it. Takes mu once. NULL (out of
 * memory) leaves *seq unset. Release with db_view_release(). Thread-safe; mu not held. */
db_view *db_view_acquire(kv_db *db, const kv_snapshot *snap, uint64_t *seq);
/* Drops a reference from db_view_acquire (NULL: no-op). Lock-free unless it is the last
 * reference to a view that is no longer current, which takes mu to unpin its version.
 * Thread-safe; mu must not be held. */
void db_view_release(kv_db *db, db_view *view);
/* Drops db->view if it is no longer current, so that it pins no obsolete table or memtable;
 * with `all`, drops it in any case (close). mu held (or no other thread, at close). */
void db_view_drop_stale(kv_db *db, int all);

#endif /* KV_DB_IMPL_H */
