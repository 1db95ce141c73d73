/* db.c - the kvcore database object: open/recovery, the group-commit write path, point reads,
 * snapshots, the background flush/compaction thread, maintenance calls, statistics, kv_check.
 *
 * Write path: each writer queues itself (struct db_writer) under mu and waits until it is at
 * the head of the queue or a leader has done its work. The head (the leader) makes room
 * (freezing a full memtable, slowing down or stopping for the background threads), joins the
 * batches queued behind it into one, assigns sequence numbers, and then, without mu, appends
 * one WAL record, syncs it once if any member asked, and inserts the batch into the memtable.
 * It then publishes the last sequence and completes every member. See db_impl.h for the
 * invariants this relies on.
 *
 * Recovery: the manifest gives the live tables and log_number; every WAL numbered >= log_number
 * is replayed in order into one memtable (a torn tail is dropped and logged), which is written
 * out as an L0 table before a fresh WAL is started; see kvcore/FORMAT.md "Recovery".
 */
#include "db/db_impl.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "db/batch.h"
#include "db/filename.h"
#include "db/reserve.h"
#include "db/vlog.h"
#include "table/sst.h"
#include "util/checksum.h"
#include "util/ikey.h"

#define DB_GROUP_MAX_BYTES (1u << 20)     /* a joined batch stops growing past this */
#define DB_GROUP_SMALL_BYTES (128u << 10) /* a small leader joins at most this much more */
#define DB_BACKOFF_MIN_US 10000           /* first retry of background work after ENOSPC */
#define DB_BACKOFF_MAX_US 1000000
/* The active memtable is frozen at this share of memtable_bytes, which budgets it and the
 * frozen one together (see make_room_for_write). Measured with kvbench (1M keys, 32 MiB):
 * at 50% the smaller L0 tables raised write amp from 3.06 to 3.74; at 75% it stays at 3.07
 * and writers waited 0.5 s in 2M writes for flushes to free the budget. */
#define DB_FREEZE_PERCENT 75

struct db_writer {
    const kv_batch *batch; /* NULL: a sync or flush request without data */
    int sync;              /* the WAL must be synced before this writer completes */
    int force_flush;       /* kv_flush: freeze the memtable even if it is not full */
    int exclusive;         /* a value-log GC move: never joined with other writers */
    int done;
    int status;
    pthread_cond_t cv;
    struct db_writer *next;
};

struct db_manual {
    int level;
    const slice *begin, *end; /* NULL: unbounded */
    int done;
    int status;
};

/* ---- Options ------------------------------------------------------------------------------- */

void kv_options_init(kv_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->create_if_missing = 1;
    opts->error_if_exists = 0;
    opts->read_only = 0;
    opts->memtable_bytes = 32u << 20;
    opts->block_size = 4096;
    opts->block_cache_bytes = 32u << 20;
    opts->compression = 1;
    opts->compression_level = 1;
    opts->bloom_bits_per_key = 10;
    opts->sync_mode = KV_SYNC_ON_REQUEST;
    opts->compaction_style = KV_COMPACTION_LEVELED;
    opts->max_open_files = 1000;
    opts->target_file_size = 32u << 20;
    opts->level1_bytes = 256u << 20;
    opts->l0_compaction_trigger = 4;
    opts->l0_slowdown_trigger = 12;
    opts->l0_stop_trigger = 20;
    opts->paranoid_checks = 1;
    opts->log_fn = NULL;
    opts->log_ctx = NULL;
    opts->log_level = KV_LOG_WARN;
    opts->env = NULL;
    opts->reserve_bytes = KV_RESERVE_AUTO;
}

/* Replaces zero or nonsensical values by defaults so that the engine never divides by zero or
 * waits for a trigger that cannot fire. */
static void sanitize_options(kv_options *o)
{
    kv_options d;
    kv_options_init(&d);
    if (o->memtable_bytes == 0)
        o->memtable_bytes = d.memtable_bytes;
    if (o->block_size == 0)
        o->block_size = d.block_size;
    if (o->max_open_files < 16)
        o->max_open_files = 16;
    if (o->target_file_size == 0)
        o->target_file_size = d.target_file_size;
    if (o->level1_bytes == 0)
        o->level1_bytes = d.level1_bytes;
    if (o->l0_compaction_trigger < 1)
        o->l0_compaction_trigger = 1;
    if (o->l0_slowdown_trigger < o->l0_compaction_trigger)
        o->l0_slowdown_trigger = o->l0_compaction_trigger;
    if (o->l0_stop_trigger < o->l0_slowdown_trigger)
        o->l0_stop_trigger = o->l0_slowdown_trigger;
    if (o->sync_mode < KV_SYNC_NEVER || o->sync_mode > KV_SYNC_ALWAYS)
        o->sync_mode = d.sync_mode;
    if (o->compaction_style != KV_COMPACTION_TIERED)
        o->compaction_style = KV_COMPACTION_LEVELED;
    if (o->bloom_bits_per_key < 0)
        o->bloom_bits_per_key = 0;
}

/* ---- Small helpers ------------------------------------------------------------------------- */

static char *path_buf(const kv_db *db)
{
    return malloc(strlen(db->dbname) + FILENAME_MAX_LEN + 1);
}

static size_t path_buf_size(const kv_db *db)
{
    return strlen(db->dbname) + FILENAME_MAX_LEN + 1;
}

static int is_fatal(int rc)
{
    return rc != 0 && rc != KV_ENOSPC && rc != KV_ENOMEM;
}

static uint64_t now_us(const kv_db *db)
{
    return db->env->now_micros(db->env);
}

static uint64_t oldest_snapshot_seq(kv_db *db)
{
    if (db->snapshots.next != &db->snapshots)
        return db->snapshots.next->sequence;
    return version_set_last_sequence(db->vs);
}

#ifndef NDEBUG
/* Checks the invariants of db_impl.h that can be checked cheaply; mu held. Returns 1. */
static int db_check_invariants(kv_db *db)
{
    if (!db->mem)
        return 0;
    uint64_t last = version_set_last_sequence(db->vs), prev = 0;
    for (struct kv_snapshot *s = db->snapshots.next; s != &db->snapshots; s = s->next) {
        if (s->sequence < prev || s->sequence > last || s->next->prev != s)
            return 0;
        prev = s->sequence;
    }
    if (db->imm && db->imm_log_number < version_set_log_number(db->vs))
        return 0;
    if (db->view && __atomic_load_n(&db->view->refs, __ATOMIC_RELAXED) < 1)
        return 0; /* invariant 6: the db's own reference */
    return 1;
}
#endif

/* ---- Memtable insertion (write path and WAL replay) ---------------------------------------- */

struct insert_ctx {
    memtable *mem;
    uint64_t user_bytes;
    uint64_t max_seq;
};

static int insert_put(void *ctx, uint64_t seq, slice key, slice value)
{
    struct insert_ctx *ic = ctx;
    ic->user_bytes += key.size + value.size;
    if (seq > ic->max_seq)
        ic->max_seq = seq;
    return memtable_add(ic->mem, seq, IKEY_TYPE_VALUE, key, value);
}

static int insert_del(void *ctx, uint64_t seq, slice key)
{
    struct insert_ctx *ic = ctx;
    ic->user_bytes += key.size;
    if (seq > ic->max_seq)
        ic->max_seq = seq;
    return memtable_add(ic->mem, seq, IKEY_TYPE_DELETION, key, slice_make(NULL, 0));
}

static int insert_batch(memtable *m, slice rep, struct insert_ctx *ic)
{
    ic->mem = m;
    batch_handler h = {insert_put, insert_del, ic};
    return batch_iterate(rep, &h);
}

/* Records a fatal error: from now on writes fail with it. mu held. */
static void set_bg_error(kv_db *db, int rc, const char *what)
{
    if (db->bg_error == 0) {
        db->bg_error = rc;
        kv_log(&db->log, KV_LOG_ERROR, "%s failed: %s; the store refuses writes from now on", what,
               kv_strerror(rc));
    }
    pthread_cond_broadcast(&db->bg_cv);
}

/* ---- WAL files ------------------------------------------------------------------------------ */

/* A nonce for the sync markers of WAL `number` (wal.h): random, so that no payload bytes (a
 * user's copy of another store's WAL, say) can pass for one of this log's markers. */
static uint64_t new_log_nonce(kv_db *db, uint64_t number)
{
    uint64_t n = 0;
    if (getrandom(&n, sizeof(n), GRND_NONBLOCK) == (ssize_t)sizeof(n))
        return n;
    /* No entropy yet (early boot): mix what differs between logs and processes. */
    uint64_t mix[4] = {now_us(db), number, (uint64_t)getpid(), (uint64_t)(uintptr_t)&n};
    return checksum_value(mix, sizeof(mix));
}

/* Creates WAL `number` and a writer for it. */
static int open_new_log(kv_db *db, uint64_t number, wal_writer **out)
{
    *out = NULL;
    char *p = path_buf(db);
    if (!p)
        return KV_ENOMEM;
    filename_log(p, path_buf_size(db), db->dbname, number);
    env_file *f;
    int rc = db->env->open_writable(db->env, p, &f);
    if (rc != 0) {
        kv_log(&db->log, KV_LOG_ERROR, "wal %06" PRIu64 ".log: cannot create: %s", number,
               kv_strerror(rc));
        free(p);
        return rc;
    }
    free(p);
    /* Make the new name durable now: a WAL that vanishes at a crash would take synced
     * writes with it (fsync of the file alone does not persist its directory entry). */
    rc = db->env->sync_dir(db->env, db->dbname);
    if (rc != 0) {
        kv_log(&db->log, KV_LOG_ERROR, "wal %06" PRIu64 ".log: cannot sync the directory: %s",
               number, kv_strerror(rc));
        env_close(f);
        return rc;
    }
    rc = wal_writer_new(f, 0, out);
    if (rc == 0)
        rc = wal_writer_enable_sync_markers(*out, new_log_nonce(db, number));
    return rc; /* cannot fail: the log is new */
}

/* Makes what was appended to the current WAL durable and closes it, so that a new WAL can take
 * over. A writer whose append failed refuses to sync, so its file is reopened and synced
 * directly (fsync covers the inode whatever descriptor asks). Leader, mu held. */
static int retire_log(kv_db *db)
{
    int rc = 0;
    /* Value log first: a durable WAL record must never point at a record that is not. */
    if (db->log_dirty && db->vlog)
        rc = vlog_sync(db->vlog);
    if (rc == 0 && db->log_dirty && !db->log_failed)
        rc = wal_writer_sync(db->wal);
    if (rc != 0)
        return rc;
    /* Records that the whole log is durable (not synced itself: if it is lost, recovery just
     * knows less). Its failure loses nothing. */
    if (!db->log_failed && wal_add_sync_marker(db->wal) > 0)
        db->wal_bytes_written += WAL_SYNC_RECORD_SIZE;
    wal_writer_close(db->wal); /* a close error after a good sync loses nothing */
    db->wal = NULL;
    if (db->log_dirty && db->log_failed) {
        char *p = path_buf(db);
        if (!p)
            return KV_ENOMEM;
        filename_log(p, path_buf_size(db), db->dbname, db->logfile_number);
        env_file *f;
        rc = db->env->open_appendable(db->env, p, &f);
        if (rc == 0) {
            rc = env_sync(f);
            env_close(f);
        }
        free(p);
        if (rc == 0)
            db->wal_syncs++;
    }
    if (rc == 0)
        db->log_dirty = 0;
    return rc;
}

/* Swaps in WAL `number` (already opened as w) for the current one. Leader, mu held. On
 * failure the new WAL is closed and nothing changes. */
static int install_new_log(kv_db *db, uint64_t number, wal_writer *w)
{
    int rc = retire_log(db);
    if (rc != 0) {
        wal_writer_close(w);
        /* The old WAL's unsynced tail may be lost: stop using it (see write_group). */
        if (!db->log_failed) {
            db->log_failed = 1;
            if (rc != KV_ENOSPC && rc != KV_ENOMEM)
                set_bg_error(db, rc, "WAL sync");
        }
        return rc;
    }
    db->wal = w;
    db->logfile_number = number;
    db->log_dirty = 0;
    db->log_failed = 0;
    return 0;
}

/* After a failed append the WAL may end in a partial record: continue in a new one (replay
 * stops at the torn record of the old WAL, which holds nothing acknowledged after it). */
static int rotate_failed_log(kv_db *db)
{
    uint64_t number = version_set_new_file_number(db->vs);
    wal_writer *w;
    int rc = open_new_log(db, number, &w);
    if (rc == 0)
        rc = install_new_log(db, number, w);
    if (rc != 0) {
        if (w == NULL)
            version_set_reuse_file_number(db->vs, number);
        return rc;
    }
    kv_log(&db->log, KV_LOG_WARN, "wal: continuing in %06" PRIu64 ".log after a failed append",
           number);
    return 0;
}

/* A new active memtable, with a filter sized for the share of memtable_bytes it may fill
 * before it is frozen (so that a kv_get of a key it lacks skips its skiplist). */
static memtable *db_memtable_new(const kv_db *db)
{
    return memtable_new_filtered(db->opts.memtable_bytes / 100 * DB_FREEZE_PERCENT);
}

/* Freezes the memtable and starts a new WAL for its successor. Leader, mu held, imm == NULL. */
static int switch_memtable(kv_db *db)
{
    memtable *nm = db_memtable_new(db);
    if (!nm)
        return KV_ENOMEM;
    uint64_t number = version_set_new_file_number(db->vs);
    wal_writer *w;
    int rc = open_new_log(db, number, &w);
    if (rc != 0) {
        if (w == NULL)
            version_set_reuse_file_number(db->vs, number);
        memtable_unref(nm);
        return rc;
    }
    rc = install_new_log(db, number, w);
    if (rc != 0) {
        memtable_unref(nm);
        return rc;
    }
    db->imm = db->mem;
    db->imm_log_number = number;
    db->mem = nm;
    db->mem_base_usage = memtable_memory_usage(nm);
    pthread_cond_signal(&db->flush_cv);
    return 0;
}

/* ---- Write path ---------------------------------------------------------------------------- */

/* Waits on bg_cv for background progress, counting the wait as stall time. mu held. */
static void stall_wait(kv_db *db, int *counted)
{
    if (!*counted) {
        db->stops++;
        *counted = 1;
    }
    uint64_t t0 = now_us(db);
    pthread_cond_wait(&db->bg_cv, &db->mu);
    db->stall_micros += now_us(db) - t0;
}

/* Ensures the memtable has room for a write (force: freeze it now if it holds anything).
 * Leader, mu held (released while sleeping or waiting). */
static int make_room_for_write(kv_db *db, int force)
{
    int allow_delay = !force;
    int counted_stop = 0;
    uint64_t failures_seen = UINT64_MAX;
    for (;;) {
        if (db->bg_error)
            return db->bg_error;
        if (db->log_failed) {
            int rc = rotate_failed_log(db);
            if (rc != 0)
                return rc;
            continue;
        }
        int l0 = version_set_num_level_files(db->vs, 0);
        if (allow_delay && l0 >= db->opts.l0_slowdown_trigger) {
            /* Give the compaction a little CPU per write instead of a long stop later. */
            allow_delay = 0;
            db->slowdowns++;
            pthread_mutex_unlock(&db->mu);
            uint64_t t0 = now_us(db);
            db->env->sleep_micros(db->env, 1000);
            uint64_t dt = now_us(db) - t0;
            pthread_mutex_lock(&db->mu);
            db->stall_micros += dt;
            continue;
        }
        /* An empty memtable always has room, and fullness is measured from the memory an
         * empty one already holds (its arena's first block, which may alone exceed a small
         * memtable_bytes): otherwise every write would freeze a near-empty memtable.
         * memtable_bytes budgets the active and the frozen memtable together: the active one
         * is frozen at DB_FREEZE_PERCENT of it, and while a frozen one is being flushed its
         * successor gets only what the frozen one leaves of the budget (a writer that fills
         * it waits below for the flush). */
        if (memtable_num_entries(db->mem) == 0)
            return 0;
        size_t room = db->opts.memtable_bytes / 100 * DB_FREEZE_PERCENT;
        if (db->imm != NULL) {
            size_t imm_used = memtable_memory_usage(db->imm) - db->mem_base_usage;
            size_t left =
                imm_used < db->opts.memtable_bytes ? db->opts.memtable_bytes - imm_used : 0;
            if (left < room)
                room = left;
        }
        if (!force && memtable_memory_usage(db->mem) - db->mem_base_usage <= room)
            return 0;
        if (db->imm != NULL || l0 >= db->opts.l0_stop_trigger) {
            if (db->bg_nospace) {
                /* The background work is failing for lack of space. Ask for one attempt now
                 * (it may be sleeping in a backoff) and fail if that attempt fails too. */
                if (failures_seen != UINT64_MAX && db->bg_failures != failures_seen)
                    return db->last_bg_failure ? db->last_bg_failure : KV_ENOSPC;
                if (failures_seen == UINT64_MAX) {
                    failures_seen = db->bg_failures;
                    pthread_cond_signal(&db->flush_cv);
                    pthread_cond_signal(&db->work_cv);
                }
            }
            stall_wait(db, &counted_stop);
            continue;
        }
        int rc = switch_memtable(db);
        if (rc != 0)
            return rc;
        force = 0;
    }
}

/* Joins the batches queued behind the leader w into db->group, and points *group at the batch
 * to write: db->group, or in value-log mode w's own batch when nobody joins (vlog_commit_batch
 * rewrites it into a batch of its own, so the leader's megabyte of staged records is not
 * copied once more under mu). Returns the last writer joined; *sync says whether the group
 * must be synced. mu held. */
static struct db_writer *build_group(kv_db *db, struct db_writer *w, int *sync,
                                     const kv_batch **group, int *rc)
{
    *rc = 0;
    *sync = w->sync;
    *group = w->batch;
    struct db_writer *last = w;
    size_t size = kv_batch_byte_size(w->batch);
    size_t max = size <= DB_GROUP_SMALL_BYTES ? size + DB_GROUP_SMALL_BYTES : DB_GROUP_MAX_BYTES;
    if (max < DB_GROUP_MAX_BYTES && size > DB_GROUP_MAX_BYTES)
        max = size;
    for (struct db_writer *x = w->next; x; x = x->next) {
        if (x->batch == NULL || x->force_flush || x->exclusive || w->exclusive)
            break;
        if (x->sync && !*sync)
            break; /* a sync write never rides behind a leader that will not sync */
        size_t xs = kv_batch_byte_size(x->batch);
        if (size + xs > max)
            break;
        size += xs;
        last = x;
    }
    if (last == w && db->vlog)
        return last;
    kv_batch_clear(db->group);
    *group = db->group;
    *rc = batch_append(db->group, w->batch);
    if (*rc != 0)
        return w;
    for (struct db_writer *x = w; x != last; x = x->next) {
        if (batch_append(db->group, x->next->batch) != 0)
            return x; /* out of memory: the rest lead their own groups */
    }
    return last;
}

/* Appends the joined group to the WAL, syncs, and inserts it into the memtable. Leader; mu
 * held on entry and exit, released during the I/O. */
static int write_group(kv_db *db, const kv_batch *joined, int sync)
{
    kv_batch *group = db->group;
    uint64_t vlog_user_bytes = 0;
    if (db->vlog) {
        /* Large values go to the value log, which is synced (if asked) before the WAL. */
        const kv_batch *enc;
        pthread_mutex_unlock(&db->mu);
        int vrc = vlog_commit_batch(db->vlog, joined, sync, &enc, &vlog_user_bytes);
        pthread_mutex_lock(&db->mu);
        if (vrc != 0) {
            if (vrc == KV_EIO || vrc == KV_ECORRUPT)
                set_bg_error(db, vrc, "value log write");
            return vrc;
        }
        if (enc == joined && joined != db->group) {
            /* No records: the writer's own batch came back, which is not ours to number. */
            kv_batch_clear(db->group);
            if ((vrc = batch_append(db->group, joined)) != 0)
                return vrc;
        } else {
            group = (kv_batch *)enc; /* db->group or the value log's rewrite of it */
        }
    }
    uint64_t last_seq = version_set_last_sequence(db->vs);
    uint32_t count = batch_count(group);
    if (last_seq + count > IKEY_MAX_SEQUENCE)
        return KV_EINVAL; /* cannot happen in practice: 2^56 writes */
    batch_set_sequence(group, last_seq + 1);
    slice rep = buf_slice(&group->rep);
    memtable *mem = db->mem;

    pthread_mutex_unlock(&db->mu);
    struct insert_ctx ic = {0};
    int synced = 0;
    int stage = 0; /* 0: append, 1: sync, 2: memtable */
    uint64_t wal_before = wal_writer_size(db->wal);
    int rc = wal_add_record(db->wal, rep);
    if (rc == 0) {
        stage = 1;
        if (sync) {
            rc = wal_writer_sync(db->wal);
            synced = rc == 0;
        }
    }
    if (rc == 0) {
        stage = 2;
        rc = insert_batch(mem, rep, &ic);
    }
    pthread_mutex_lock(&db->mu);

    /* The sequences were consumed as soon as the record may have reached the file: never reuse
     * them, or a replay could meet two different entries with one (key, sequence). */
    version_set_set_last_sequence(db->vs, last_seq + count);
    if (stage >= 1) {
        db->wal_bytes_written += wal_writer_size(db->wal) - wal_before; /* with its marker */
        db->log_dirty = !synced;
        if (synced)
            db->wal_syncs++;
    }
    if (rc == 0) {
        db->user_bytes_written += db->vlog ? vlog_user_bytes : ic.user_bytes;
        if (db->vlog)
            vlog_note_applied(db->vlog, count);
        return 0;
    }
    if (stage == 0) {
        db->log_failed = 1;
        kv_log(&db->log, KV_LOG_ERROR, "wal %06" PRIu64 ".log: append failed: %s",
               db->logfile_number, kv_strerror(rc));
        if (rc == KV_EIO)
            set_bg_error(db, rc, "WAL append");
    } else if (stage == 1) {
        /* After a failed fsync the kernel may have dropped the dirty pages: nothing written
         * to this WAL can be trusted to be durable. ENOSPC (delayed allocation) is retried in
         * a new WAL; anything else stops writes. */
        db->log_failed = 1;
        kv_log(&db->log, KV_LOG_ERROR, "wal %06" PRIu64 ".log: sync failed: %s", db->logfile_number,
               kv_strerror(rc));
        if (rc != KV_ENOSPC)
            set_bg_error(db, rc, "WAL sync");
    } else {
        /* In the WAL but maybe half in the memtable: the state in memory is no longer the
         * state on disk, so no further write may be acknowledged. */
        set_bg_error(db, is_fatal(rc) ? rc : KV_ECLOSED, "memtable insert");
    }
    return rc;
}

/* The single entry point of every write, sync and flush request (exclusive: a value-log GC
 * move, which must be checked against the state no other write of its group changes). */
static int db_write_ex(kv_db *db, const kv_batch *b, int sync, int force_flush, int exclusive)
{
    struct db_writer w;
    memset(&w, 0, sizeof(w));
    w.batch = b;
    w.sync = sync;
    w.force_flush = force_flush;
    w.exclusive = exclusive;
    if (pthread_cond_init(&w.cv, NULL) != 0)
        return KV_ENOMEM;

    pthread_mutex_lock(&db->mu);
    if (db->wq_tail)
        db->wq_tail->next = &w;
    else
        db->wq_head = &w;
    db->wq_tail = &w;
    while (!w.done && db->wq_head != &w)
        pthread_cond_wait(&w.cv, &db->mu);
    if (w.done) {
        pthread_mutex_unlock(&db->mu);
        pthread_cond_destroy(&w.cv);
        return w.status;
    }

    /* Leader. */
    struct db_writer *last = &w;
    int rc;
    if (b != NULL || force_flush)
        rc = make_room_for_write(db, force_flush);
    else
        rc = db->bg_error;
    if (rc == 0 && b != NULL) {
        int group_sync;
        const kv_batch *group;
        last = build_group(db, &w, &group_sync, &group, &rc);
        if (rc == 0)
            rc = write_group(db, group, group_sync);
    } else if (rc == 0 && sync && db->log_dirty) {
        if (db->log_failed) {
            rc = rotate_failed_log(db); /* syncs what the failed WAL holds */
        } else {
            pthread_mutex_unlock(&db->mu);
            rc = db->vlog ? vlog_sync(db->vlog) : 0; /* before the WAL that points into it */
            if (rc == 0)
                rc = wal_writer_sync(db->wal);
            pthread_mutex_lock(&db->mu);
            if (rc == 0) {
                db->log_dirty = 0;
                db->wal_syncs++;
            } else {
                db->log_failed = 1;
                if (rc != KV_ENOSPC)
                    set_bg_error(db, rc, "WAL sync");
            }
        }
    }

    for (;;) {
        struct db_writer *x = db->wq_head;
        db->wq_head = x->next;
        if (db->wq_head == NULL)
            db->wq_tail = NULL;
        if (x != &w) {
            x->status = rc;
            x->done = 1;
            pthread_cond_signal(&x->cv);
        }
        if (x == last)
            break;
    }
    if (db->wq_head)
        pthread_cond_signal(&db->wq_head->cv);
    assert(db_check_invariants(db));
    pthread_mutex_unlock(&db->mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

static int db_write(kv_db *db, const kv_batch *b, int sync, int force_flush)
{
    return db_write_ex(db, b, sync, force_flush, 0);
}

static int effective_sync(const kv_db *db, int flags)
{
    if (db->opts.sync_mode == KV_SYNC_ALWAYS)
        return 1;
    if (db->opts.sync_mode == KV_SYNC_NEVER)
        return 0;
    return (flags & KV_WRITE_SYNC) != 0;
}

int kv_write(kv_db *db, const kv_batch *b, int flags)
{
    if (!db || !b)
        return KV_EINVAL;
    if (db->opts.read_only)
        return KV_EINVAL;
    kv_batch *staged = NULL;
    if (db->vlog) {
        /* Compress and checksum large values on the caller's thread, not the leader's. */
        uint64_t record_bytes = 0;
        int src = vlog_stage_batch(db->vlog, b, &staged, &record_bytes);
        if (src != 0)
            return src;
        b = staged;
        /* With free space short, wait here (holding nothing) while GC reclaims garbage. */
        vlog_throttle(db->vlog, record_bytes);
    }
    int rc = reserve_admit(db->reserve, flags); /* low-space mode: KV_ENOSPC */
    if (rc == 0)
        rc = db_write(db, b, effective_sync(db, flags), 0);
    /* A full disk: release the reserve; a write that frees space gets one more try in it. */
    if (rc == KV_ENOSPC && reserve_on_enospc(db->reserve, 0) && (flags & KV_WRITE_RESERVE))
        rc = db_write(db, b, effective_sync(db, flags), 0);
    if (staged)
        kv_batch_free(staged);
    return rc;
}

/* A single put or delete encodes its one-op batch on the stack when it fits (most keys and
 * values of a filesystem's metadata do): no allocation on the write path. */
#define DB_SINGLE_OP_STACK 512

static int write_single(kv_db *db, int is_put, slice key, slice value, int flags)
{
    char mem[DB_SINGLE_OP_STACK];
    kv_batch sb;
    if (batch_init_single(&sb, mem, sizeof(mem), is_put, key, value) == 0)
        return kv_write(db, &sb, flags);
    kv_batch *b = kv_batch_new();
    if (!b)
        return KV_ENOMEM;
    int rc = is_put ? kv_batch_put(b, key.data, key.size, value.data, value.size)
                    : kv_batch_delete(b, key.data, key.size);
    if (rc == 0)
        rc = kv_write(db, b, flags);
    kv_batch_free(b);
    return rc;
}

int kv_put(kv_db *db, const void *key, size_t klen, const void *val, size_t vlen, int flags)
{
    if (!db || (!key && klen) || (!val && vlen))
        return KV_EINVAL;
    return write_single(db, 1, slice_make(key, klen), slice_make(val, vlen), flags);
}

int kv_delete(kv_db *db, const void *key, size_t klen, int flags)
{
    if (!db || (!key && klen))
        return KV_EINVAL;
    return write_single(db, 0, slice_make(key, klen), slice_make(NULL, 0), flags);
}

int kv_sync(kv_db *db)
{
    if (!db)
        return KV_EINVAL;
    if (db->opts.read_only)
        return 0;
    return db_write(db, NULL, 1, 0);
}

/* ---- Reads and snapshots ------------------------------------------------------------------- */

uint64_t db_acquire_read_view(kv_db *db, const kv_snapshot *snap, memtable **mem, memtable **imm,
                              version **v)
{
    pthread_mutex_lock(&db->mu);
    uint64_t seq = snap ? snap->sequence : version_set_last_sequence(db->vs);
    *mem = db->mem;
    memtable_ref(*mem);
    *imm = db->imm;
    if (*imm)
        memtable_ref(*imm);
    *v = version_set_current(db->vs);
    version_ref(*v);
    pthread_mutex_unlock(&db->mu);
    return seq;
}

void db_release_read_view(kv_db *db, memtable *mem, memtable *imm, version *v)
{
    if (mem)
        memtable_unref(mem);
    if (imm)
        memtable_unref(imm);
    if (v) {
        pthread_mutex_lock(&db->mu);
        version_unref(v);
        pthread_mutex_unlock(&db->mu);
    }
}

/* Frees a view nobody references any more. mu held (for version_unref). */
static void db_view_destroy_locked(db_view *view)
{
    version_unref(view->v);
    memtable_unref(view->mem);
    if (view->imm)
        memtable_unref(view->imm);
    free(view);
}

/* Drops db->view's own reference (mu held). */
static void db_view_retire_locked(kv_db *db)
{
    db_view *view = db->view;
    db->view = NULL;
    if (view && __atomic_sub_fetch(&view->refs, 1, __ATOMIC_ACQ_REL) == 0)
        db_view_destroy_locked(view);
}

/* True if view pins exactly the current memtables and version (mu held). Pointers compare
 * safely: the view references its objects, so none of their addresses can be reused. */
static int db_view_is_current(const kv_db *db, const db_view *view)
{
    return view->mem == db->mem && view->imm == db->imm && view->v == version_set_current(db->vs);
}

db_view *db_view_acquire(kv_db *db, const kv_snapshot *snap, uint64_t *seq)
{
    pthread_mutex_lock(&db->mu);
    db_view *view = db->view;
    if (!view || !db_view_is_current(db, view)) {
        db_view_retire_locked(db);
        view = malloc(sizeof(*view));
        if (!view) {
            pthread_mutex_unlock(&db->mu);
            return NULL;
        }
        view->refs = 1; /* db->view's */
        view->mem = db->mem;
        memtable_ref(view->mem);
        view->imm = db->imm;
        if (view->imm)
            memtable_ref(view->imm);
        view->v = version_set_current(db->vs);
        version_ref(view->v);
        db->view = view;
    }
    __atomic_add_fetch(&view->refs, 1, __ATOMIC_RELAXED); /* db->view's keeps it above 0 */
    *seq = snap ? snap->sequence : version_set_last_sequence(db->vs);
    assert(db_view_is_current(db, view) && __atomic_load_n(&view->refs, __ATOMIC_RELAXED) >= 2);
    pthread_mutex_unlock(&db->mu);
    return view;
}

void db_view_release(kv_db *db, db_view *view)
{
    if (!view || __atomic_sub_fetch(&view->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    /* The last reference: db->view moved on (it holds one while current). */
    pthread_mutex_lock(&db->mu);
    db_view_destroy_locked(view);
    pthread_mutex_unlock(&db->mu);
}

void db_view_drop_stale(kv_db *db, int all)
{
    if (db->view && (all || !db_view_is_current(db, db->view)))
        db_view_retire_locked(db);
}

/* Looks k up as of snap (NULL: latest) and appends the stored value (for a store with a value
 * log: tagged, vlog.h) to *value. Returns MEMTABLE_* or an error. */
static int db_get_stored(kv_db *db, const kv_snapshot *snap, slice k, buf *value)
{
    uint64_t seq;
    db_view *view = db_view_acquire(db, snap, &seq);
    if (!view)
        return KV_ENOMEM;
    int seek_due = 0;
    int rc = memtable_get(view->mem, k, seq, value);
    if (rc == MEMTABLE_ABSENT && view->imm)
        rc = memtable_get(view->imm, k, seq, value);
    if (rc == MEMTABLE_ABSENT)
        rc = version_get_counted(view->v, k, seq, value, &seek_due);
    if (seek_due) {
        /* This lookup marked a table for a seek compaction (version.h): start it. */
        pthread_mutex_lock(&db->mu);
        pthread_cond_signal(&db->work_cv);
        pthread_mutex_unlock(&db->mu);
    }
    db_view_release(db, view);
    return rc;
}

/* Replaces the stored value in *value by the user's value (vlog_resolve). */
static int db_vlog_decode(kv_db *db, slice key, buf *value)
{
    buf out;
    buf_init(&out);
    slice s;
    if (!key.data)
        key = slice_make("", 0); /* an empty key is checked like any other (vlog_resolve) */
    int rc = vlog_resolve(db->vlog, key, buf_slice(value), &out, &s);
    if (rc == 0 && s.size > 0 && s.data != out.data) {
        memmove(value->data, s.data, s.size); /* inline: the bytes after the tag */
        value->len = s.size;
    } else if (rc == 0) {
        buf_free(value);
        *value = out;
        return MEMTABLE_FOUND;
    }
    buf_free(&out);
    return rc == 0 ? MEMTABLE_FOUND : rc;
}

int kv_get(kv_db *db, const kv_snapshot *snap, const void *key, size_t klen, void **val,
           size_t *vlen)
{
    if (val)
        *val = NULL;
    if (vlen)
        *vlen = 0;
    if (!db || (!key && klen) || !val || !vlen)
        return KV_EINVAL;
    slice k = slice_make(key, klen);
    buf value;
    buf_init(&value);
    uint64_t epoch = db->vlog ? vlog_pin(db->vlog) : 0;
    int rc = db_get_stored(db, snap, k, &value);
    if (rc == MEMTABLE_FOUND && db->vlog)
        rc = db_vlog_decode(db, k, &value);
    if (db->vlog)
        vlog_unpin(db->vlog, epoch);

    if (rc == MEMTABLE_FOUND) {
        /* Hand the buffer over with the promised NUL after the value. */
        if (buf_append(&value, "", 1) != 0) {
            buf_free(&value);
            return KV_ENOMEM;
        }
        *vlen = value.len - 1;
        *val = value.data;
        return 0;
    }
    buf_free(&value);
    if (rc == MEMTABLE_ABSENT || rc == MEMTABLE_DELETED)
        return KV_ENOTFOUND;
    return rc < 0 ? rc : KV_ECORRUPT;
}

int kv_get_range(kv_db *db, const kv_snapshot *snap, const void *key, size_t klen, uint64_t off,
                 void *dst, size_t len, size_t *n, size_t *vlen)
{
    if (n)
        *n = 0;
    if (vlen)
        *vlen = 0;
    if (!db || (!key && klen) || (!dst && len) || !n || !vlen)
        return KV_EINVAL;
    slice k = slice_make(key ? key : "", klen);
    buf value;
    buf_init(&value);
    uint64_t epoch = db->vlog ? vlog_pin(db->vlog) : 0;
    int rc = db_get_stored(db, snap, k, &value);
    if (rc == MEMTABLE_FOUND && db->vlog) {
        buf scratch;
        buf_init(&scratch);
        uint64_t whole = 0;
        rc = vlog_resolve_range(db->vlog, k, buf_slice(&value), off, dst, len, n, &whole, &scratch);
        buf_free(&scratch);
        *vlen = (size_t)whole;
        rc = rc == 0 ? MEMTABLE_FOUND : rc;
    } else if (rc == MEMTABLE_FOUND) {
        *vlen = value.len;
        if (off < value.len) {
            *n = value.len - off < len ? (size_t)(value.len - off) : len;
            memcpy(dst, value.data + off, *n);
        }
    }
    if (db->vlog)
        vlog_unpin(db->vlog, epoch);
    buf_free(&value);
    if (rc == MEMTABLE_FOUND)
        return 0;
    *n = 0;
    *vlen = 0;
    if (rc == MEMTABLE_ABSENT || rc == MEMTABLE_DELETED)
        return KV_ENOTFOUND;
    return rc < 0 ? rc : KV_ECORRUPT;
}

void kv_free(void *p)
{
    free(p);
}

const kv_snapshot *kv_snapshot_new(kv_db *db)
{
    if (!db)
        return NULL;
    struct kv_snapshot *s = malloc(sizeof(*s));
    if (!s)
        return NULL;
    pthread_mutex_lock(&db->mu);
    s->sequence = version_set_last_sequence(db->vs);
    s->next = &db->snapshots;
    s->prev = db->snapshots.prev;
    s->prev->next = s;
    db->snapshots.prev = s;
    db->live_snapshots++;
    pthread_mutex_unlock(&db->mu);
    return s;
}

void kv_snapshot_free(kv_db *db, const kv_snapshot *snap)
{
    if (!db || !snap)
        return;
    struct kv_snapshot *s = (struct kv_snapshot *)snap;
    pthread_mutex_lock(&db->mu);
    s->prev->next = s->next;
    s->next->prev = s->prev;
    db->live_snapshots--;
    pthread_mutex_unlock(&db->mu);
    free(s);
}

/* ---- Obsolete files ------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Deletes files no live version needs: tables not referenced (nor being written), WALs below
 * log_number (other than the current one), manifests older than the current one, and - only
 * while no background thread runs - temp files. Names that are not ours are never touched.
 * mu held (released during the I/O). The directory is listed BEFORE the live set is taken:
 * every table file in the listing was registered as a pending output before it was created,
 * so it is either pending, live, or garbage when the live set is read, even with a flush and
 * a compaction finishing concurrently. */
static void delete_obsolete_files(kv_db *db)
{
    int allow_temp = db->bg_started == 0;
    pthread_mutex_unlock(&db->mu);
    char **names = NULL;
    size_t n = 0;
    int rc = db->env->list_dir(db->env, db->dbname, &names, &n);
    pthread_mutex_lock(&db->mu);
    if (rc != 0)
        return;
    uint64_t *live = NULL;
    size_t nlive = 0;
    db_view_drop_stale(db, 0); /* an idle view must not keep obsolete tables */
    if (version_set_live_files(db->vs, &live, &nlive) != 0) {
        env_free_names(names, n);
        return; /* out of memory: try again after the next flush or compaction */
    }
    uint64_t log_number = version_set_log_number(db->vs);
    uint64_t manifest_number = version_set_manifest_number(db->vs);
    uint64_t current_log = db->logfile_number;
    if (nlive > 1)
        qsort(live, nlive, sizeof(*live), cmp_u64);
    pthread_mutex_unlock(&db->mu);

    char *p = path_buf(db);
    for (size_t i = 0; p && i < n; i++) {
        enum filename_type type;
        uint64_t number;
        if (!filename_parse(names[i], &type, &number))
            continue;
        int keep = 1;
        switch (type) {
        case FILE_TYPE_LOG:
            keep = number >= log_number || number == current_log;
            break;
        case FILE_TYPE_TABLE:
            keep = bsearch(&number, live, nlive, sizeof(*live), cmp_u64) != NULL;
            break;
        case FILE_TYPE_MANIFEST:
            keep = number >= manifest_number;
            break;
        case FILE_TYPE_TEMP:
            /* While threads run a temp file may be a table or CURRENT being written; the
             * writers remove their own on failure, so only leftovers of a crash are swept,
             * at open. */
            keep = !allow_temp;
            break;
        case FILE_TYPE_CURRENT:
        case FILE_TYPE_LOCK:
        case FILE_TYPE_VLOG:        /* deleted by the value log's GC only */
        case FILE_TYPE_VLOG_MARKER: /* lives as long as the store */
            keep = 1;
            break;
        }
        if (keep)
            continue;
        if (type == FILE_TYPE_TABLE)
            table_cache_evict(db->tc, number);
        snprintf(p, path_buf_size(db), "%s/%s", db->dbname, names[i]);
        rc = db->env->unlink(db->env, p);
        if (rc != 0 && rc != KV_ENOTFOUND)
            kv_log(&db->log, KV_LOG_WARN, "cannot delete obsolete file %s: %s", names[i],
                   kv_strerror(rc));
        else
            kv_log(&db->log, KV_LOG_DEBUG, "deleted obsolete file %s", names[i]);
    }
    env_free_names(names, n);
    free(p);
    free(live);
    pthread_mutex_lock(&db->mu);
}

/* ---- Background work ----------------------------------------------------------------------- */

/* Writes memtable m as table `number` and records it in *e at level 0 (nothing if m is
 * empty). Called without mu. */
static int write_level0_table(kv_db *db, memtable *m, uint64_t number, version_edit *e,
                              uint64_t *bytes)
{
    iter *it = memtable_iter_new(m);
    if (!it)
        return KV_ENOMEM;
    file_meta meta;
    memset(&meta, 0, sizeof(meta));
    buf_init(&meta.smallest);
    buf_init(&meta.largest);
    int rc = table_build(db->dbname, db->env, &db->opts, db->tc, it, number, &meta);
    iter_free(it);
    *bytes = 0;
    if (rc == 0 && meta.size > 0) {
        meta.number = number;
        rc = version_edit_add_file_meta(e, 0, &meta);
        *bytes = meta.size;
    }
    if (rc != 0)
        kv_log(&db->log, KV_LOG_ERROR, "flush to table %06" PRIu64 ".sst failed: %s", number,
               kv_strerror(rc));
    buf_free(&meta.smallest);
    buf_free(&meta.largest);
    return rc;
}

/* Flushes the immutable memtable. Background thread, mu held (released during the I/O). */
static int bg_flush(kv_db *db)
{
    memtable *imm = db->imm;
    uint64_t number = version_set_new_file_number(db->vs);
    int rc = version_set_add_pending_output(db->vs, number);
    if (rc != 0)
        return rc;
    version_edit e;
    version_edit_init(&e);
    uint64_t bytes = 0;
    pthread_mutex_unlock(&db->mu);
    rc = write_level0_table(db, imm, number, &e, &bytes);
    if (rc == 0 && db->vlog)
        rc = vlog_sync(db->vlog); /* the table's pointers must lead to durable records */
    pthread_mutex_lock(&db->mu);
    if (rc == 0) {
        e.has_log_number = 1;
        e.log_number = db->imm_log_number;
        rc = version_set_log_and_apply(db->vs, &e);
    }
    version_set_remove_pending_output(db->vs, number);
    version_edit_free(&e);
    if (rc != 0)
        return rc;
    db->imm = NULL;
    memtable_unref(imm);
    db->flushes++;
    db->flush_bytes_written += bytes;
    pthread_cond_broadcast(&db->bg_cv);
    delete_obsolete_files(db);
    /* Segments that GC emptied wait for the WAL of their moves to become obsolete (gc_safe asks
     * for this flush): collect them now, not at the GC thread's next tick. */
    if (db->vlog)
        vlog_gc_kick(db->vlog);
    return 0;
}

static void db_vlog_dropped(void *ctx, slice value)
{
    vlog_note_dropped(ctx, value);
}

/* Runs one compaction: the manual one if m is set, else with reclaim the low-space one
 * (version_set_pick_reclaim), else the most needed. Returns 0, 1 if there was nothing to
 * compact, or an error. Compaction thread, mu held (released while merging). */
static int bg_compact(kv_db *db, struct db_manual *m, int reclaim)
{
    /* Full disk: a manual level -1 (kv_compact_range after its L0 -> L1 found no room)
     * merges L0 in place, which reclaims what was deleted since L0 was flushed without
     * rewriting L1. An automatic retry after ENOSPC does not: merging in place needs room for
     * all of L0, while the picker's L0 -> L1 takes only the oldest L0 tables that fit in the
     * free space and installs in steps (compaction.c, "Bounded headroom"). */
    int merge_l0 = m && m->level < 0;
    compaction *c = merge_l0 ? version_set_merge_level0(db->vs) : NULL;
    if (!merge_l0)
        c = m         ? version_set_compact_range(db->vs, m->level, m->begin, m->end)
            : reclaim ? version_set_pick_reclaim(db->vs)
                      : version_set_pick_compaction(db->vs);
    if (!c)
        return 1;
    uint64_t smallest_snapshot = oldest_snapshot_seq(db);
    if (db->vlog)
        compaction_set_drop_hook(c, db_vlog_dropped, db->vlog);
    compaction_stats st;
    memset(&st, 0, sizeof(st));
    pthread_mutex_unlock(&db->mu);
    int rc = compaction_run(c, smallest_snapshot, &db->shutting_down, &st);
    pthread_mutex_lock(&db->mu);
    if (rc == 0 && db->shutting_down)
        rc = KV_ECLOSED;
    if (rc == 0)
        rc = compaction_install(c);
    compaction_free(c);
    db->compaction_bytes_read += st.bytes_read;
    db->compaction_bytes_written += st.bytes_written;
    if (rc != 0)
        return rc;
    db->compactions++;
    pthread_cond_broadcast(&db->bg_cv);
    delete_obsolete_files(db);
    /* On a full disk the value log's space comes back only through its GC: the entries this
     * compaction dropped may have made a segment collectable (it takes the most garbage). */
    if (db->vlog && reserve_is_low(db->reserve))
        vlog_gc_kick(db->vlog);
    return 0;
}

static void add_micros(struct timespec *ts, uint64_t us)
{
    ts->tv_sec += (time_t)(us / 1000000);
    ts->tv_nsec += (long)(us % 1000000) * 1000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* After a failed background attempt: counts and logs it; a fatal error stops writes, anything
 * else (ENOSPC, ENOMEM) is retried after a growing backoff, sleeping on cv so that a waiter
 * can ask for an attempt at once. mu held. */
static void bg_failed(kv_db *db, int rc, const char *what, uint64_t *backoff, pthread_cond_t *cv)
{
    db->background_errors++;
    db->bg_failures++;
    db->last_bg_failure = rc;
    if (is_fatal(rc)) {
        set_bg_error(db, rc, what);
        return;
    }
    db->bg_nospace = rc == KV_ENOSPC;
    if (rc == KV_ENOSPC)
        reserve_on_enospc(db->reserve, 1); /* the retry may use the reserve's space */
    *backoff = *backoff ? *backoff * 2 : DB_BACKOFF_MIN_US;
    if (*backoff > DB_BACKOFF_MAX_US)
        *backoff = DB_BACKOFF_MAX_US;
    kv_log(&db->log, KV_LOG_WARN, "%s failed: %s; retrying in %" PRIu64 " ms", what,
           kv_strerror(rc), *backoff / 1000);
    pthread_cond_broadcast(&db->bg_cv);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    add_micros(&ts, *backoff);
    if (!db->shutting_down)
        pthread_cond_timedwait(cv, &db->mu, &ts);
}

/* Gives memory that malloc holds free back to the OS. Block cache entries are allocated by the
 * reading thread and freed by whichever thread evicts them, so with glibc they land in many
 * per-thread malloc arenas, and a thread that stops reading leaves its arena's freed blocks
 * resident: measured, a 4-thread mixed phase after single-thread reads held ~70 MiB of free
 * heap (malloc_stats) on top of a 32 MiB cache. Called by the background threads after each
 * flush or compaction, without mu, so the cost (a walk of the free lists) stays off the read
 * and write paths. */
static void release_free_heap(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* The flush thread: writes each immutable memtable out as soon as it appears, so that writers
 * never wait behind a long compaction. */
static void *flush_main(void *arg)
{
    kv_db *db = arg;
    uint64_t backoff = 0;
    pthread_mutex_lock(&db->mu);
    while (!db->shutting_down) {
        if (db->bg_error || db->imm == NULL) {
            pthread_cond_wait(&db->flush_cv, &db->mu);
            continue;
        }
        int rc = bg_flush(db);
        if (rc == 0) {
            db->bg_nospace = 0;
            backoff = 0;
            pthread_cond_signal(&db->work_cv); /* L0 grew: maybe compact */
            pthread_cond_broadcast(&db->bg_cv);
            pthread_mutex_unlock(&db->mu);
            release_free_heap();
            pthread_mutex_lock(&db->mu);
        } else if (!db->shutting_down) {
            bg_failed(db, rc, "flush", &backoff, &db->flush_cv);
        }
    }
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* The compaction thread: manual compactions first, then whatever the version set asks for;
 * in low-space mode with nothing due, L0 -> L1 compactions (version_set_pick_reclaim) that
 * let the deletions accepted in the mode (flushed by the reserve's monitor) reclaim space,
 * for as long as each takes tables out of L0 and again after each flush. */
static void *compact_main(void *arg)
{
    kv_db *db = arg;
    uint64_t backoff = 0, reclaim_flushes = UINT64_MAX;
    int reclaim_l0 = -1;
    pthread_mutex_lock(&db->mu);
    while (!db->shutting_down) {
        struct db_manual *m = db->manual;
        if (db->bg_error) {
            if (m) {
                m->status = db->bg_error;
                m->done = 1;
                db->manual = NULL;
                pthread_cond_broadcast(&db->bg_cv);
            }
            pthread_cond_wait(&db->work_cv, &db->mu);
            continue;
        }
        int rc;
        if (m) {
            rc = bg_compact(db, m, 0);
            if (rc == 1)
                rc = 0; /* nothing overlapped the range at this level */
            m->status = rc;
            m->done = 1;
            db->manual = NULL;
        } else if (version_set_needs_compaction(db->vs)) {
            rc = bg_compact(db, NULL, 0);
            if (rc == 1) {
                /* Scored as needed but nothing could be picked: wait for a change rather
                 * than spin. */
                pthread_cond_wait(&db->work_cv, &db->mu);
                continue;
            }
        } else if (reserve_is_low(db->reserve) && version_set_num_level_files(db->vs, 0) > 0 &&
                   (db->flushes != reclaim_flushes ||
                    version_set_num_level_files(db->vs, 0) != reclaim_l0)) {
            /* Not again with the same L0 until a flush: a failed or empty attempt stops. */
            reclaim_flushes = db->flushes;
            reclaim_l0 = version_set_num_level_files(db->vs, 0);
            rc = bg_compact(db, NULL, 1);
            if (rc == 1)
                rc = 0;
        } else {
            pthread_cond_wait(&db->work_cv, &db->mu);
            continue;
        }
        if (rc == 0) {
            db->bg_nospace = 0;
            backoff = 0;
            pthread_cond_broadcast(&db->bg_cv);
            pthread_mutex_unlock(&db->mu);
            release_free_heap();
            pthread_mutex_lock(&db->mu);
        } else if (!db->shutting_down) {
            bg_failed(db, rc, m ? "manual compaction" : "compaction", &backoff, &db->work_cv);
        }
    }
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* ---- Open and recovery --------------------------------------------------------------------- */

/* Looks at the directory before anything is written to it. Sets *has_current. Returns
 * KV_EINVAL if it holds files that are not a store's, KV_ECORRUPT if it holds tables or WALs
 * but no CURRENT, else 0 (a store, an empty or missing directory, or an interrupted
 * creation that left only a manifest/temp/LOCK file). */
static int inspect_dir(kv_db *db, int *has_current, int *exists)
{
    char **names;
    size_t n;
    *has_current = 0;
    *exists = 0;
    int rc = db->env->list_dir(db->env, db->dbname, &names, &n);
    if (rc == KV_ENOTFOUND)
        return 0;
    if (rc != 0) {
        kv_log(&db->log, KV_LOG_ERROR, "%s: cannot list directory: %s", db->dbname,
               kv_strerror(rc));
        return rc;
    }
    *exists = 1;
    const char *foreign = NULL, *data = NULL;
    for (size_t i = 0; i < n; i++) {
        enum filename_type type;
        uint64_t number;
        if (strcmp(names[i], RESERVE_FILENAME) == 0)
            continue; /* ours, and holds no data (reserve.h) */
        if (!filename_parse(names[i], &type, &number)) {
            if (!foreign)
                foreign = names[i];
            continue;
        }
        if (type == FILE_TYPE_CURRENT)
            *has_current = 1;
        else if ((type == FILE_TYPE_LOG || type == FILE_TYPE_TABLE) && !data)
            data = names[i];
    }
    rc = 0;
    if (!*has_current && foreign) {
        kv_log(&db->log, KV_LOG_ERROR, "%s: not a kvcore store (no CURRENT; holds \"%s\")",
               db->dbname, foreign);
        rc = KV_EINVAL;
    } else if (!*has_current && data) {
        kv_log(&db->log, KV_LOG_ERROR, "%s: holds %s but no CURRENT file: store damaged",
               db->dbname, data);
        rc = KV_ECORRUPT;
    }
    env_free_names(names, n);
    return rc;
}

/* Replays WAL `number` into mem. Returns 0 or an error (logged). */
static int replay_log(kv_db *db, uint64_t number, memtable *mem, uint64_t *max_seq)
{
    char *p = path_buf(db);
    if (!p)
        return KV_ENOMEM;
    filename_log(p, path_buf_size(db), db->dbname, number);
    env_file *f;
    int rc = db->env->open_readable(db->env, p, &f);
    if (rc != 0) {
        kv_log(&db->log, KV_LOG_ERROR, "wal %06" PRIu64 ".log: cannot open: %s", number,
               kv_strerror(rc));
        free(p);
        return rc == KV_ENOTFOUND ? KV_EIO : rc;
    }
    wal_reader *r;
    rc = wal_reader_new(f, &r);
    if (rc != 0) {
        free(p);
        return rc;
    }
    slice rec;
    uint64_t records = 0, skipped = 0;
    uint64_t vlog_bad_end = 0; /* end offset of the first record whose value-log record is bad */
    struct insert_ctx ic = {0};
    while ((rc = wal_read_record(r, &rec)) == 1) {
        uint64_t end = wal_reader_good_offset(r);
        if (vlog_bad_end) {
            skipped++; /* read on only to learn how far this log's sync markers reach */
            continue;
        }
        if (db->vlog) {
            rc = vlog_verify_batch(db->vlog, rec);
            if (rc == KV_ECORRUPT) {
                /* Its value-log record is missing or bad (logged by vlog). Whether that is an
                 * unsynced write (a torn tail: the segment is synced before every WAL sync, so
                 * a power cut can lose it only if the WAL record was unsynced too) or damage
                 * is decided below from the sync markers after it. */
                vlog_bad_end = end;
                rc = 0;
                continue;
            }
            if (rc != 0) {
                kv_log(&db->log, KV_LOG_ERROR,
                       "wal %06" PRIu64 ".log: record ending at offset %" PRIu64
                       ": cannot read its value-log records: %s",
                       number, end, kv_strerror(rc));
                break;
            }
        }
        rc = insert_batch(mem, rec, &ic);
        if (rc != 0) {
            if (rc == KV_ECORRUPT)
                kv_log(&db->log, KV_LOG_ERROR,
                       "wal %06" PRIu64 ".log: record ending at offset %" PRIu64
                       ": malformed write batch",
                       number, end);
            break;
        }
        records++;
    }
    if (rc < 0) {
        if (rc != KV_ECORRUPT)
            kv_log(&db->log, KV_LOG_ERROR, "wal %06" PRIu64 ".log: replay failed: %s", number,
                   kv_strerror(rc));
        wal_reader_free(r);
        free(p);
        return rc;
    }
    if (vlog_bad_end) {
        /* A marker proving the record synced makes its lost value-log record damage. */
        uint64_t synced = wal_reader_synced_offset(r);
        if (synced >= vlog_bad_end) {
            kv_log(&db->log, db->opts.paranoid_checks ? KV_LOG_ERROR : KV_LOG_WARN,
                   "wal %06" PRIu64 ".log: record ending at offset %" PRIu64
                   " was synced (up to offset %" PRIu64 ") but its value-log record is damaged "
                   "or missing: %s %" PRIu64 " later records",
                   number, vlog_bad_end, synced,
                   db->opts.paranoid_checks ? "refusing to drop it and the" : "dropped with the",
                   skipped);
            if (db->opts.paranoid_checks) {
                wal_reader_free(r);
                free(p);
                return KV_ECORRUPT;
            }
        } else {
            kv_log(&db->log, KV_LOG_WARN,
                   "wal %06" PRIu64 ".log: record ending at offset %" PRIu64
                   " points at a value-log record a power cut lost (the log is synced only up "
                   "to offset %" PRIu64 "): dropped with the %" PRIu64 " records after it",
                   number, vlog_bad_end, synced, skipped);
        }
    }
    uint64_t dropped = wal_reader_dropped_bytes(r);
    uint64_t good = wal_reader_good_offset(r);
    const char *reason = wal_reader_drop_reason(r) ? wal_reader_drop_reason(r) : "unknown";
    if (dropped > 0) {
        int damage = wal_reader_tail(r) == WAL_TAIL_DAMAGED;
        char why[64]; /* what the verdict rests on (wal.h) */
        if (wal_reader_tail_proven(r))
            snprintf(why, sizeof(why), "synced up to offset %" PRIu64, wal_reader_synced_offset(r));
        else
            snprintf(why, sizeof(why), "no sync markers: judged by zero pages");
        if (damage && db->opts.paranoid_checks) {
            kv_log(&db->log, KV_LOG_ERROR,
                   "wal %06" PRIu64 ".log: record at offset %" PRIu64 ": %s, with %" PRIu64
                   " bytes after it (%s): damaged, not torn (paranoid_checks: refusing to drop "
                   "them)",
                   number, good, reason, dropped, why);
            wal_reader_free(r);
            free(p);
            return KV_ECORRUPT;
        }
        kv_log(&db->log, KV_LOG_WARN,
               "wal %06" PRIu64 ".log: dropped %" PRIu64 " bytes at offset %" PRIu64
               " (%s; %s): %s",
               number, dropped, good, reason, why,
               damage ? "damaged record; paranoid_checks is off"
                      : "torn tail of an interrupted, unsynced write");
    }
    free(p);
    kv_log(&db->log, KV_LOG_INFO, "wal %06" PRIu64 ".log: replayed %" PRIu64 " records", number,
           records);
    wal_reader_free(r);
    if (ic.max_seq > *max_seq)
        *max_seq = ic.max_seq;
    return 0;
}

/* Replays every WAL numbered >= the manifest's log_number, oldest first, into db->mem. */
static int replay_logs(kv_db *db, uint64_t *max_seq)
{
    char **names;
    size_t n;
    int rc = db->env->list_dir(db->env, db->dbname, &names, &n);
    if (rc != 0)
        return rc;
    uint64_t *logs = malloc((n ? n : 1) * sizeof(*logs));
    if (!logs) {
        env_free_names(names, n);
        return KV_ENOMEM;
    }
    size_t nlogs = 0;
    uint64_t min_log = version_set_log_number(db->vs);
    for (size_t i = 0; i < n; i++) {
        enum filename_type type;
        uint64_t number;
        if (!filename_parse(names[i], &type, &number))
            continue;
        version_set_mark_file_number_used(db->vs, number);
        if (type == FILE_TYPE_LOG && number >= min_log)
            logs[nlogs++] = number;
    }
    env_free_names(names, n);
    if (nlogs > 1)
        qsort(logs, nlogs, sizeof(*logs), cmp_u64);
    rc = 0;
    for (size_t i = 0; i < nlogs && rc == 0; i++)
        rc = replay_log(db, logs[i], db->mem, max_seq);
    free(logs);
    return rc;
}

/* Writes the recovered memtable out as an L0 table and starts a fresh WAL; one manifest edit
 * records both. mu held. */
static int finish_recovery(kv_db *db, uint64_t max_seq)
{
    version_edit e;
    version_edit_init(&e);
    uint64_t log_number = version_set_new_file_number(db->vs);
    wal_writer *w;
    int rc = open_new_log(db, log_number, &w);
    if (rc != 0) {
        version_edit_free(&e);
        return rc;
    }
    db->wal = w;
    db->logfile_number = log_number;
    if (db->vlog && (rc = vlog_sync_recovered(db->vlog)) != 0) {
        version_edit_free(&e);
        return rc;
    }
    if (memtable_num_entries(db->mem) > 0) {
        uint64_t number = version_set_new_file_number(db->vs);
        uint64_t bytes = 0;
        rc = write_level0_table(db, db->mem, number, &e, &bytes);
        if (rc == 0) {
            db->flushes++;
            db->flush_bytes_written += bytes;
        }
    }
    if (rc == 0) {
        e.has_log_number = 1;
        e.log_number = log_number;
        if (max_seq > version_set_last_sequence(db->vs))
            version_set_set_last_sequence(db->vs, max_seq);
        rc = version_set_log_and_apply(db->vs, &e);
    }
    version_edit_free(&e);
    if (rc != 0)
        return rc;
    memtable *fresh = db_memtable_new(db);
    if (!fresh)
        return KV_ENOMEM;
    memtable_unref(db->mem);
    db->mem = fresh;
    db->mem_base_usage = memtable_memory_usage(fresh);
    return 0;
}

/* Frees everything db holds; the background threads must not be running. */
static void db_free(kv_db *db)
{
    if (!db)
        return;
    reserve_free(db->reserve);
    vlog_close(db->vlog);
    if (db->wal)
        wal_writer_close(db->wal);
    db_view_drop_stale(db, 1);
    if (db->mem)
        memtable_unref(db->mem);
    if (db->imm)
        memtable_unref(db->imm);
    while (db->snapshots.next && db->snapshots.next != &db->snapshots) {
        struct kv_snapshot *s = db->snapshots.next;
        s->prev->next = s->next;
        s->next->prev = s->prev;
        free(s); /* released by nobody: the caller broke the contract; do not leak */
    }
    if (db->vs)
        version_set_free(db->vs);
    if (db->tc)
        table_cache_free(db->tc);
    if (db->block_cache)
        cache_free(db->block_cache);
    if (db->group)
        kv_batch_free(db->group);
    if (db->lock)
        db->env->unlock(db->lock);
    pthread_cond_destroy(&db->bg_cv);
    pthread_cond_destroy(&db->work_cv);
    pthread_cond_destroy(&db->flush_cv);
    pthread_mutex_destroy(&db->mu);
    free(db->dbname);
    free(db);
}

static int db_alloc(const char *path, const kv_options *opts, kv_db **out)
{
    kv_db *db = calloc(1, sizeof(*db));
    if (!db)
        return KV_ENOMEM;
    if (opts)
        db->opts = *opts;
    else
        kv_options_init(&db->opts);
    sanitize_options(&db->opts);
    db->env = db->opts.env ? db->opts.env : env_posix();
    kv_logger_init(&db->log, &db->opts);
    db->snapshots.next = db->snapshots.prev = &db->snapshots;
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->bg_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&db->work_cv, &ca);
    pthread_cond_init(&db->flush_cv, &ca);
    pthread_condattr_destroy(&ca);
    /* Strip trailing slashes so that messages and file names read cleanly. */
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    db->dbname = strndup(path, len);
    if (!db->dbname) {
        db_free(db);
        return KV_ENOMEM;
    }
    *out = db;
    return 0;
}

/* Creates the caches and the version set. */
static int db_open_components(kv_db *db)
{
    if (db->opts.block_cache_bytes > 0) {
        db->block_cache = cache_new(db->opts.block_cache_bytes);
        if (!db->block_cache)
            return KV_ENOMEM;
    }
    db->tc = table_cache_new(db->dbname, db->env, db->opts.max_open_files, db->block_cache,
                             &db->log, db->opts.paranoid_checks);
    if (!db->tc)
        return KV_ENOMEM;
    table_cache_set_mmap(db->tc, db->opts.mmap_reads);
    db->group = kv_batch_new();
    if (!db->group)
        return KV_ENOMEM;
    db->mem = db_memtable_new(db);
    if (!db->mem)
        return KV_ENOMEM;
    db->mem_base_usage = memtable_memory_usage(db->mem);
    return version_set_new(db->dbname, &db->opts, db->env, db->tc, &db->log, &db->mu, &db->vs);
}

/* ---- Value log callbacks (vlog_db_ops) ------------------------------------------------------ */

static uint64_t db_vlog_new_number(void *ctx)
{
    kv_db *db = ctx;
    pthread_mutex_lock(&db->mu);
    uint64_t n = version_set_new_file_number(db->vs);
    pthread_mutex_unlock(&db->mu);
    return n;
}

static int db_vlog_points_at(void *ctx, slice key, uint64_t seg, uint64_t off)
{
    kv_db *db = ctx;
    buf value;
    buf_init(&value);
    int rc = db_get_stored(db, NULL, key, &value);
    uint64_t s, o;
    uint32_t size, vlen;
    if (rc == MEMTABLE_FOUND)
        rc = vlog_parse_pointer(buf_slice(&value), &s, &o, &size, &vlen) && s == seg && o == off;
    else if (rc >= 0)
        rc = 0;
    buf_free(&value);
    return rc;
}

static int db_vlog_gc_write(void *ctx, const kv_batch *b, uint64_t *last_seq, uint64_t *log_number)
{
    kv_db *db = ctx;
    int rc = 0;
    if (kv_batch_count(b) > 0)
        rc = db_write_ex(db, b, 1, 0, 1);
    else
        (void)db_write(db, NULL, 0, 0); /* a barrier: returns once the writers queued before it
                                           are done (its bg_error, if any, is not the GC's) */
    pthread_mutex_lock(&db->mu);
    *last_seq = version_set_last_sequence(db->vs);
    *log_number = db->logfile_number;
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* Whether every WAL <= log_number is obsolete. mu held. */
static int db_wals_obsolete(kv_db *db, uint64_t log_number)
{
    /* Only WALs >= log_number hold unflushed writes; with nothing unflushed, none does. */
    return version_set_log_number(db->vs) > log_number ||
           (db->imm == NULL && memtable_num_entries(db->mem) == 0);
}

static int db_vlog_gc_safe(void *ctx, uint64_t seq, uint64_t log_number)
{
    kv_db *db = ctx;
    pthread_mutex_lock(&db->mu);
    int snapshots_ok = db->snapshots.next == &db->snapshots || db->snapshots.next->sequence >= seq;
    int wal_ok = db_wals_obsolete(db, log_number);
    /* The WAL of the move is still the current one: freeze it so that it becomes obsolete. */
    int flush = !wal_ok && db->logfile_number <= log_number && db->imm == NULL && !db->bg_error;
    pthread_mutex_unlock(&db->mu);
    if (flush && snapshots_ok) {
        /* Wait for the flush (it ends in success or a failure, as for kv_flush), so that the
         * segment goes now rather than at a later pass: on a small disk written fast the
         * emptied segments otherwise pile up, and a restart forgets that they were moved. A
         * failed flush is left to the flush thread's own retries. */
        if (kv_flush(db) == 0) {
            pthread_mutex_lock(&db->mu);
            wal_ok = db_wals_obsolete(db, log_number);
            pthread_mutex_unlock(&db->mu);
        }
    } else if (flush) {
        db_write(db, NULL, 0, 1); /* a snapshot holds the segment anyway: do not wait */
    }
    return snapshots_ok && wal_ok;
}

static int db_open_locked(kv_db *db)
{
    int has_current, exists;
    int rc = inspect_dir(db, &has_current, &exists);
    if (rc != 0)
        return rc;
    if (!has_current && (db->opts.read_only || !db->opts.create_if_missing)) {
        kv_log(&db->log, KV_LOG_ERROR, "%s: no store here (create_if_missing is off)", db->dbname);
        return KV_EINVAL;
    }
    if (has_current && db->opts.error_if_exists) {
        kv_log(&db->log, KV_LOG_ERROR, "%s: store exists (error_if_exists is on)", db->dbname);
        return KV_EEXIST;
    }
    if (!db->opts.read_only) {
        if (!exists && (rc = db->env->mkdir(db->env, db->dbname)) != 0) {
            kv_log(&db->log, KV_LOG_ERROR, "%s: cannot create directory: %s", db->dbname,
                   kv_strerror(rc));
            return rc;
        }
        char *p = path_buf(db);
        if (!p)
            return KV_ENOMEM;
        rc = db->env->lock(db->env, filename_lock(p, path_buf_size(db), db->dbname), &db->lock);
        free(p);
        if (rc != 0) {
            db->lock = NULL;
            if (rc == KV_EBUSY)
                kv_log(&db->log, KV_LOG_ERROR, "%s: locked by another user", db->dbname);
            return rc;
        }
        /* Another process may have created the store between the look and the lock. */
        if ((rc = inspect_dir(db, &has_current, &exists)) != 0)
            return rc;
        if (has_current && db->opts.error_if_exists)
            return KV_EEXIST;
        /* Before recovery writes: on a nearly full disk the reserve makes room for it. */
        if ((rc = reserve_open(db->dbname, &db->opts, db->env, &db->log, &db->reserve)) != 0)
            return rc;
    }
    if ((rc = db_open_components(db)) != 0)
        return rc;

    /* The VLOG marker of a new store is written before CURRENT (vlog_open). */
    vlog_db_ops vops = {db_vlog_new_number, db_vlog_points_at, db_vlog_gc_write, db_vlog_gc_safe,
                        db};
    if ((rc = vlog_open(db->dbname, db->env, &db->log, &db->opts, !has_current, &vops,
                        &db->vlog)) != 0)
        return rc;
    pthread_mutex_lock(&db->mu);
    if (!has_current) {
        rc = version_set_create_new(db->vs);
        if (rc != 0)
            kv_log(&db->log, KV_LOG_ERROR, "%s: cannot create the store: %s", db->dbname,
                   kv_strerror(rc));
    }
    if (rc == 0)
        rc = version_set_recover(db->vs);
    uint64_t max_seq = 0;
    if (rc == 0)
        rc = replay_logs(db, &max_seq);
    if (rc == 0 && db->opts.read_only) {
        if (max_seq > version_set_last_sequence(db->vs))
            version_set_set_last_sequence(db->vs, max_seq);
    } else if (rc == 0) {
        rc = finish_recovery(db, max_seq);
        if (rc == 0)
            delete_obsolete_files(db);
    }
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* The reserve monitor's request (reserve_start): freeze the memtable so that deletions
 * accepted in low-space mode reach L0, where compaction can drop what they delete. Does not
 * wait for the flush. */
static void flush_for_reserve(void *arg)
{
    kv_db *db = arg;
    int rc = db_write(db, NULL, 0, 1);
    if (rc != 0)
        kv_log(&db->log, KV_LOG_DEBUG, "low-space flush request: %s", kv_strerror(rc));
}

/* Stops the background threads, letting a flush in progress finish and abandoning a
 * compaction at its next check. */
static void db_stop_threads(kv_db *db)
{
    /* The value log's GC moves are writes: stop it before the threads they may wait for. */
    if (db->vlog)
        vlog_gc_stop(db->vlog);
    reserve_stop(db->reserve); /* first: its monitor may still ask for a flush */
    pthread_mutex_lock(&db->mu);
    /* Atomic: compaction_run polls the flag without mu. */
    __atomic_store_n(&db->shutting_down, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&db->work_cv);
    pthread_cond_broadcast(&db->flush_cv);
    pthread_mutex_unlock(&db->mu);
    if (db->bg_started >= 1)
        pthread_join(db->flush_thread, NULL);
    if (db->bg_started >= 2)
        pthread_join(db->compact_thread, NULL);
    db->bg_started = 0;
}

int kv_open(const char *path, const kv_options *opts, kv_db **out)
{
    if (out)
        *out = NULL;
    if (!path || !*path || !out)
        return KV_EINVAL;
    kv_db *db;
    int rc = db_alloc(path, opts, &db);
    if (rc != 0)
        return rc;
    rc = db_open_locked(db);
    if (rc == 0 && !db->opts.read_only)
        rc = reserve_start(db->reserve, flush_for_reserve, db);
    if (rc == 0 && !db->opts.read_only) {
        /* bg_started is read under mu by the threads themselves (delete_obsolete_files), so it
         * is set under mu, and before each thread starts. */
        pthread_mutex_lock(&db->mu);
        db->bg_started = 1;
        pthread_mutex_unlock(&db->mu);
        if (pthread_create(&db->flush_thread, NULL, flush_main, db) != 0) {
            rc = KV_ENOMEM;
            db->bg_started = 0; /* no thread started: nobody else reads it */
        } else {
            pthread_mutex_lock(&db->mu);
            db->bg_started = 2;
            pthread_mutex_unlock(&db->mu);
            if (pthread_create(&db->compact_thread, NULL, compact_main, db) != 0) {
                rc = KV_ENOMEM;
                pthread_mutex_lock(&db->mu);
                db->bg_started = 1;
                pthread_mutex_unlock(&db->mu);
            }
        }
    }
    if (rc == 0 && db->vlog && !db->opts.read_only)
        rc = vlog_gc_start(db->vlog);
    if (rc != 0) {
        db_stop_threads(db);
        db_free(db);
        return rc;
    }
    pthread_mutex_lock(&db->mu);
    if (version_set_needs_compaction(db->vs))
        pthread_cond_signal(&db->work_cv);
    pthread_mutex_unlock(&db->mu);
    *out = db;
    return 0;
}

int kv_close(kv_db *db)
{
    if (!db)
        return 0;
    /* Sync (through the write queue, like kv_sync), then record with a marker (synced too)
     * that the whole WAL is durable, so that recovery can tell damage anywhere in it from a
     * torn tail (FORMAT.md "Recovery"). */
    pthread_mutex_lock(&db->mu);
    int dirty = db->wal && db->log_dirty && !db->log_failed && !db->bg_error;
    pthread_mutex_unlock(&db->mu);
    int rc = dirty ? db_write(db, NULL, 1, 0) : 0;
    db_stop_threads(db);
    if (db->wal) {
        if (rc == 0 && !db->log_failed && (rc = wal_add_sync_marker(db->wal)) == 1)
            rc = wal_writer_sync(db->wal);
        if (rc != 0)
            kv_log(&db->log, KV_LOG_ERROR, "wal %06" PRIu64 ".log: sync at close failed: %s",
                   db->logfile_number, kv_strerror(rc));
        int crc = wal_writer_close(db->wal);
        if (rc == 0)
            rc = crc;
        db->wal = NULL;
    }
    db_free(db);
    return rc;
}

int kv_destroy(const char *path, const kv_options *opts)
{
    if (!path || !*path)
        return KV_EINVAL;
    kv_options o;
    if (opts)
        o = *opts;
    else
        kv_options_init(&o);
    const kv_env *env = o.env ? o.env : env_posix();
    kv_logger log;
    kv_logger_init(&log, &o);
    char **names;
    size_t n;
    int rc = env->list_dir(env, path, &names, &n);
    if (rc == KV_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    size_t psz = strlen(path) + FILENAME_MAX_LEN + 1;
    char *p = malloc(psz);
    if (!p) {
        env_free_names(names, n);
        return KV_ENOMEM;
    }
    env_lock *lock = NULL;
    rc = env->lock(env, filename_lock(p, psz, path), &lock);
    if (rc != 0) {
        free(p);
        env_free_names(names, n);
        return rc;
    }
    /* RESERVE first: left alone without CURRENT it would make the directory look foreign. */
    int result = reserve_destroy(env, path);
    for (size_t i = 0; i < n; i++) {
        enum filename_type type;
        uint64_t number;
        if (!filename_parse(names[i], &type, &number) || type == FILE_TYPE_LOCK)
            continue;
        snprintf(p, psz, "%s/%s", path, names[i]);
        rc = env->unlink(env, p);
        if (rc != 0 && rc != KV_ENOTFOUND) {
            kv_log(&log, KV_LOG_ERROR, "destroy: cannot delete %s: %s", p, kv_strerror(rc));
            if (result == 0)
                result = rc;
        }
    }
    env_free_names(names, n);
    env->unlock(lock);
    env->unlink(env, filename_lock(p, psz, path));
    env->rmdir(env, path); /* fails harmlessly if foreign files remain */
    free(p);
    return result;
}

/* ---- Maintenance --------------------------------------------------------------------------- */

int kv_flush(kv_db *db)
{
    if (!db)
        return KV_EINVAL;
    if (db->opts.read_only)
        return KV_EINVAL;
    int rc = db_write(db, NULL, 0, 1);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&db->mu);
    /* Wake the flush thread from a backoff: the caller wants an attempt now. */
    uint64_t failures = db->bg_failures;
    pthread_cond_signal(&db->flush_cv);
    while (db->imm != NULL && db->bg_error == 0 && db->bg_failures == failures)
        pthread_cond_wait(&db->bg_cv, &db->mu);
    if (db->bg_error)
        rc = db->bg_error;
    else if (db->imm != NULL)
        rc = db->last_bg_failure ? db->last_bg_failure : KV_ENOSPC;
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* Runs one manual compaction of `level` in the compaction thread and waits for it. mu held. */
static int run_manual(kv_db *db, int level, const slice *begin, const slice *end)
{
    struct db_manual m = {level, begin, end, 0, 0};
    while (db->manual != NULL)
        pthread_cond_wait(&db->bg_cv, &db->mu);
    db->manual = &m;
    pthread_cond_signal(&db->work_cv);
    while (!m.done)
        pthread_cond_wait(&db->bg_cv, &db->mu);
    return m.status;
}

/* Compacts the files of `level` (>= 1) overlapping [begin, end] into level + 1 one file at a
 * time, each with what overlaps it below, as LevelDB does: a whole level at once would need
 * free space for a rewrite of the whole level before its inputs can go, which a full disk
 * (working in its space reserve) does not have; one file's rewrite it does. mu held. */
static int compact_level_by_file(kv_db *db, int level, const slice *begin, const slice *end)
{
    int rc = 0;
    int max_steps = 4 * version_set_num_level_files(db->vs, level) + 16; /* others add files */
    buf lo, hi;
    buf_init(&lo);
    buf_init(&hi);
    for (int step = 0; rc == 0 && step < max_steps; step++) {
        version *v = version_set_current(db->vs);
        const file_meta *pick = NULL;
        for (int i = 0; i < v->nfiles[level] && !pick; i++) {
            const file_meta *f = v->files[level][i];
            slice fs = ikey_user_key(buf_slice(&f->smallest));
            slice fl = ikey_user_key(buf_slice(&f->largest));
            if ((!begin || slice_compare(fl, *begin) >= 0) &&
                (!end || slice_compare(fs, *end) <= 0))
                pick = f;
        }
        if (!pick)
            break;
        /* Copies: the version may change while the compaction runs. */
        buf_clear(&lo);
        buf_clear(&hi);
        slice pl = ikey_user_key(buf_slice(&pick->smallest));
        slice ph = ikey_user_key(buf_slice(&pick->largest));
        if (buf_append(&lo, pl.data, pl.size) != 0 || buf_append(&hi, ph.data, ph.size) != 0) {
            rc = KV_ENOMEM;
            break;
        }
        slice l = buf_slice(&lo), h = buf_slice(&hi);
        rc = run_manual(db, level, &l, &h);
    }
    buf_free(&lo);
    buf_free(&hi);
    return rc;
}

int kv_compact_range(kv_db *db, const void *begin, size_t blen, const void *end, size_t elen)
{
    if (!db || (!begin && blen) || (!end && elen))
        return KV_EINVAL;
    if (db->opts.read_only)
        return KV_EINVAL;
    int rc = kv_flush(db);
    if (rc != 0)
        return rc;
    slice b = slice_make(begin, blen), e = slice_make(end, elen);
    pthread_mutex_lock(&db->mu);
    int deepest = 1;
    for (int level = 1; level < KV_MAX_LEVELS; level++)
        if (version_set_num_level_files(db->vs, level) > 0)
            deepest = level;
    for (int level = 0; level < deepest && rc == 0; level++) {
        if (level > 0) {
            rc = compact_level_by_file(db, level, begin ? &b : NULL, end ? &e : NULL);
            continue;
        }
        rc = run_manual(db, 0, begin ? &b : NULL, end ? &e : NULL);
        /* L0 -> L1 does not fit: merge L0 in place (room for L0's live data only), then
         * try again in the space that freed. */
        if (rc == KV_ENOSPC && version_set_num_level_files(db->vs, 0) > 1 &&
            run_manual(db, -1, NULL, NULL) == 0)
            rc = run_manual(db, 0, begin ? &b : NULL, end ? &e : NULL);
    }
    pthread_mutex_unlock(&db->mu);
    if (rc == 0 && db->vlog) {
        /* Reclaim the value-log segments that are now mostly dead, too (kvfs compact). */
        rc = vlog_gc_run(db->vlog, 0, NULL);
        if (rc == 0)
            rc = kv_flush(db); /* makes the moves' WAL obsolete, so the segments can go */
        if (rc == 0)
            vlog_gc_collect(db->vlog);
    }
    return rc;
}

int kv_get_stats(kv_db *db, kv_stats *st)
{
    if (!db || !st)
        return KV_EINVAL;
    memset(st, 0, sizeof(*st));
    if (db->vlog)
        vlog_get_stats(db->vlog, st);
    pthread_mutex_lock(&db->mu);
    for (int level = 0; level < KV_MAX_LEVELS; level++) {
        st->level_files[level] = (uint64_t)version_set_num_level_files(db->vs, level);
        st->level_bytes[level] = version_set_num_level_bytes(db->vs, level);
        st->total_sst_bytes += st->level_bytes[level];
    }
    st->memtable_bytes = memtable_memory_usage(db->mem);
    st->immutable_memtables = db->imm ? 1 : 0;
    st->pending_compaction_bytes = version_set_pending_compaction_bytes(db->vs);
    st->user_bytes_written = db->user_bytes_written;
    st->wal_bytes_written = db->wal_bytes_written;
    st->flush_bytes_written = db->flush_bytes_written;
    st->compaction_bytes_written = db->compaction_bytes_written;
    st->compaction_bytes_read = db->compaction_bytes_read;
    st->wal_syncs = db->wal_syncs;
    st->flushes = db->flushes;
    st->compactions = db->compactions;
    st->stall_micros = db->stall_micros + st->vlog_stall_micros;
    st->slowdowns = db->slowdowns;
    st->stops = db->stops;
    st->live_snapshots = db->live_snapshots;
    st->last_sequence = version_set_last_sequence(db->vs);
    st->background_errors = db->background_errors;
    pthread_mutex_unlock(&db->mu);
    reserve_get_stats(db->reserve, &st->low_space, &st->reserve_bytes, &st->reserve_releases);
    if (db->block_cache) {
        cache_counters(db->block_cache, &st->block_cache_hits, &st->block_cache_misses);
        st->block_cache_bytes = cache_total_charge(db->block_cache);
    }
    table_cache_counters(db->tc, &st->bloom_useful);
    st->table_cache_open_files = table_cache_open_count(db->tc);
    return 0;
}

/* ---- Offline check ------------------------------------------------------------------------- */

struct check_state {
    kv_db *db;
    kv_progress_fn progress;
    void *pctx;
    uint64_t done, total;
    uint64_t problems;
};

static void check_advance(void *ctx, uint64_t bytes)
{
    struct check_state *cs = ctx;
    cs->done += bytes;
    if (cs->done > cs->total)
        cs->total = cs->done;
    if (cs->progress)
        cs->progress(cs->pctx, cs->done, cs->total);
}

static int check_null_put(void *ctx, uint64_t seq, slice key, slice value)
{
    return 0;
}

static int check_null_del(void *ctx, uint64_t seq, slice key)
{
    return 0;
}

static int check_manifest_record(struct check_state *cs, slice rec)
{
    version_edit e;
    version_edit_init(&e);
    int rc = version_edit_decode(&e, rec);
    version_edit_free(&e);
    return rc;
}

/* Reads every record of a WAL (is_manifest 0) or manifest (1) and checks each decodes. A torn
 * tail is what a crash leaves and what recovery drops: reported, not counted as a problem.
 * Returns 0, or an I/O error. */
static int check_log_file(struct check_state *cs, const char *name, int is_manifest)
{
    kv_db *db = cs->db;
    char *p = path_buf(db);
    if (!p)
        return KV_ENOMEM;
    snprintf(p, path_buf_size(db), "%s/%s", db->dbname, name);
    env_file *f;
    int rc = db->env->open_readable(db->env, p, &f);
    free(p);
    if (rc != 0) {
        kv_log(&db->log, KV_LOG_ERROR, "%s: cannot open: %s", name, kv_strerror(rc));
        cs->problems++;
        return 0;
    }
    wal_reader *r;
    if ((rc = wal_reader_new(f, &r)) != 0)
        return rc;
    slice rec;
    uint64_t prev_end = 0;
    batch_handler h = {check_null_put, check_null_del, NULL};
    while ((rc = wal_read_record(r, &rec)) == 1) {
        uint64_t end = wal_reader_good_offset(r);
        int bad = is_manifest ? check_manifest_record(cs, rec) : batch_iterate(rec, &h);
        if (bad == KV_ENOMEM) {
            rc = bad;
            break;
        }
        if (bad != 0) {
            kv_log(&db->log, KV_LOG_ERROR, "%s: record at offset %" PRIu64 ": malformed %s", name,
                   prev_end, is_manifest ? "version edit" : "write batch");
            cs->problems++;
        }
        check_advance(cs, end - prev_end);
        prev_end = end;
    }
    if (rc == 0) /* sync markers after the last record */
        check_advance(cs, wal_reader_good_offset(r) - prev_end);
    if (rc == 0 && wal_reader_dropped_bytes(r) > 0) {
        uint64_t dropped = wal_reader_dropped_bytes(r), good = wal_reader_good_offset(r);
        const char *reason = wal_reader_drop_reason(r) ? wal_reader_drop_reason(r) : "unknown";
        if (wal_reader_tail(r) == WAL_TAIL_DAMAGED) {
            kv_log(&db->log, KV_LOG_ERROR,
                   "%s: record at offset %" PRIu64 ": %s, with %" PRIu64
                   " bytes after it: damaged, not a torn tail",
                   name, good, reason, dropped);
            cs->problems++;
        } else {
            kv_log(&db->log, KV_LOG_WARN,
                   "%s: %" PRIu64 " bytes after offset %" PRIu64
                   " are a torn tail (%s); recovery drops them",
                   name, dropped, good, reason);
        }
        check_advance(cs, dropped);
    }
    wal_reader_free(r);
    if (rc < 0)
        kv_log(&db->log, KV_LOG_ERROR, "%s: read failed: %s", name, kv_strerror(rc));
    return rc < 0 ? rc : 0;
}

/* Verifies one table: its size against the manifest, then every block. */
static int check_table(struct check_state *cs, const file_meta *fm)
{
    kv_db *db = cs->db;
    char name[FILENAME_MAX_LEN];
    snprintf(name, sizeof(name), "%06" PRIu64 ".sst", fm->number);
    char *p = path_buf(db);
    if (!p)
        return KV_ENOMEM;
    filename_table(p, path_buf_size(db), db->dbname, fm->number);
    uint64_t size = 0;
    int rc = db->env->file_size(db->env, p, &size);
    env_file *f = NULL;
    if (rc == 0 && size != fm->size) {
        kv_log(&db->log, KV_LOG_ERROR,
               "sst %s: file is %" PRIu64 " bytes but the manifest records %" PRIu64, name, size,
               fm->size);
        cs->problems++;
        rc = KV_ECORRUPT;
    }
    if (rc == 0)
        rc = db->env->open_readable(db->env, p, &f);
    free(p);
    if (rc != 0) {
        if (rc != KV_ECORRUPT) {
            kv_log(&db->log, KV_LOG_ERROR, "sst %s: cannot open: %s", name, kv_strerror(rc));
            cs->problems++;
        }
        check_advance(cs, fm->size);
        return rc == KV_ENOMEM ? rc : 0;
    }
    sst_read_options ro = {NULL, &db->log, 1, 0};
    sst_reader *r;
    rc = sst_reader_open(f, size, name, &ro, &r);
    if (rc != 0) {
        cs->problems++; /* logged by the reader with the offset */
        check_advance(cs, fm->size);
        return rc == KV_ENOMEM ? rc : 0;
    }
    uint64_t bad = 0, before = cs->done;
    rc = sst_reader_verify(r, check_advance, cs, &bad);
    sst_reader_close(r);
    cs->problems += bad;
    if (rc != 0 && rc != KV_ECORRUPT && bad == 0) {
        kv_log(&db->log, KV_LOG_ERROR, "sst %s: verify failed: %s", name, kv_strerror(rc));
        cs->problems++;
    }
    /* Count the footer, index and filter too, so progress ends at the total. */
    if (cs->done - before < fm->size)
        check_advance(cs, fm->size - (cs->done - before));
    return rc == KV_ENOMEM ? rc : 0;
}

static int check_store(struct check_state *cs)
{
    kv_db *db = cs->db;
    int has_current, exists;
    int rc = inspect_dir(db, &has_current, &exists);
    if (rc == KV_ECORRUPT)
        cs->problems++;
    if (rc != 0)
        return rc;
    if (!has_current) {
        kv_log(&db->log, KV_LOG_ERROR, "%s: no store here", db->dbname);
        return KV_EINVAL;
    }
    if ((rc = db_open_components(db)) != 0)
        return rc;
    pthread_mutex_lock(&db->mu);
    rc = version_set_recover(db->vs); /* checks the manifest's structure and table presence */
    pthread_mutex_unlock(&db->mu);
    if (rc != 0) {
        if (rc == KV_ECORRUPT)
            cs->problems++;
        return rc;
    }
    version *v = version_set_current(db->vs);
    uint64_t log_number = version_set_log_number(db->vs);

    char **names;
    size_t n;
    if ((rc = db->env->list_dir(db->env, db->dbname, &names, &n)) != 0)
        return rc;
    char *current = NULL;
    size_t clen = 0;
    char *cpath = path_buf(db);
    if (!cpath) {
        env_free_names(names, n);
        return KV_ENOMEM;
    }
    filename_current(cpath, path_buf_size(db), db->dbname);
    rc = env_read_file(db->env, cpath, &current, &clen);
    free(cpath);
    char manifest[FILENAME_MAX_LEN] = "";
    if (rc == 0) {
        while (clen > 0 && (current[clen - 1] == '\n' || current[clen - 1] == '\0'))
            clen--;
        if (clen > 0 && clen < sizeof(manifest)) {
            memcpy(manifest, current, clen);
            manifest[clen] = '\0';
        }
        free(current);
    }

    /* Sizes first, so that progress has a total. */
    const char *dir = db->dbname;
    size_t plen = path_buf_size(db);
    char *p = path_buf(db);
    if (!p) {
        env_free_names(names, n);
        return KV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        enum filename_type type;
        uint64_t number, size = 0;
        if (!filename_parse(names[i], &type, &number))
            continue;
        if ((type == FILE_TYPE_LOG && number >= log_number) ||
            (type == FILE_TYPE_MANIFEST && strcmp(names[i], manifest) == 0)) {
            snprintf(p, plen, "%s/%s", dir, names[i]);
            if (db->env->file_size(db->env, p, &size) == 0)
                cs->total += size;
        }
    }
    free(p);
    for (int level = 0; level < KV_MAX_LEVELS; level++)
        for (int i = 0; i < v->nfiles[level]; i++)
            cs->total += v->files[level][i]->size;

    rc = 0;
    if (manifest[0])
        rc = check_log_file(cs, manifest, 1);
    for (size_t i = 0; i < n && rc == 0; i++) {
        enum filename_type type;
        uint64_t number;
        if (filename_parse(names[i], &type, &number) && type == FILE_TYPE_LOG &&
            number >= log_number)
            rc = check_log_file(cs, names[i], 0);
    }
    env_free_names(names, n);
    for (int level = 0; level < KV_MAX_LEVELS && rc == 0; level++)
        for (int i = 0; i < v->nfiles[level] && rc == 0; i++)
            rc = check_table(cs, v->files[level][i]);
    uint64_t vlog_bytes = 0;
    if (rc == 0)
        rc = vlog_check_dir(db->dbname, db->env, &db->log, &cs->problems, &vlog_bytes);
    cs->done += vlog_bytes;
    return rc;
}

int kv_check(const char *path, const kv_options *opts, kv_progress_fn progress, void *pctx,
             uint64_t *problems)
{
    if (problems)
        *problems = 0;
    if (!path || !*path)
        return KV_EINVAL;
    kv_options o;
    if (opts)
        o = *opts;
    else
        kv_options_init(&o);
    o.read_only = 1;
    o.create_if_missing = 0;
    o.error_if_exists = 0;
    o.block_cache_bytes = 0; /* every block is read from disk */
    o.paranoid_checks = 1;
    kv_db *db;
    int rc = db_alloc(path, &o, &db);
    if (rc != 0)
        return rc;
    struct check_state cs = {db, progress, pctx, 0, 0, 0};
    rc = check_store(&cs);
    if (problems)
        *problems = cs.problems;
    if (rc == 0 && cs.problems > 0)
        rc = KV_ECORRUPT;
    if (rc == 0)
        kv_log(&db->log, KV_LOG_INFO, "%s: check passed (%" PRIu64 " bytes verified)", db->dbname,
               cs.done);
    db_free(db);
    return rc;
}
