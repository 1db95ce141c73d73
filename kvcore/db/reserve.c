/* reserve.c - the space reserve and low-space mode (see reserve.h).
 *
 * Sizes. want = reserve_bytes, or for KV_RESERVE_AUTO what getting out of a full disk needs
 * once the reserve is released (reserve_auto_bytes):
 *     memtable_bytes                   the deletions' WAL and the flush of their memtable
 *   + 2 x reserve_table_cap()          a compaction step: about one output table is written
 *                                      before the input table it replaces is deleted, and
 *                                      one more for the step's L0 share / cut slack
 *   + segment x (100 - gc%) / 100      value log only: GC frees a segment by moving its live
 *                                      records first, and collects only segments with at least
 *                                      value_log_gc_percent garbage, so it moves at most that;
 *                                      segment is vlog_segment_cap() (at most 1/32 of the disk)
 * Compaction installs its result in steps (compaction.c, "Bounded headroom"), so nothing needs
 * room for a whole level. Any value is capped at 1/8 of the file system. The mode ends when
 * free space >= want + margin, margin = max(want / 4, 1 MiB): after the reserve is taken back
 * there is still room for a little work, so the store does not flip straight back into the
 * mode.
 */
#include "db/reserve.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/vlog.h"

#define RESERVE_MIN_MARGIN (UINT64_C(1) << 20)
#define RESERVE_CAP_DIVISOR 8
#define RESERVE_TABLE_DISK_FRACTION 64
#define RESERVE_TABLE_MIN_CAP (UINT64_C(1) << 20)
#define RESERVE_VLOG_GC_PERCENT_DEFAULT 50 /* vlog.c's default */
#define RESERVE_BACKOFF_MIN_US 50000       /* first free-space check after entering the mode */
#define RESERVE_BACKOFF_MAX_US 2000000     /* the monitor checks at least this often */
#define RESERVE_HOLD_OFF_US 10000000       /* after a release, the released space is left alone */

struct db_reserve {
    const kv_env *env;
    const kv_logger *log;
    const char *dir;
    char *path;
    uint64_t want, margin;

    pthread_mutex_t mu;
    pthread_cond_t cv;      /* wakes the monitor: mode entered, or stopping */
    int low;                /* low-space mode; protected by mu, read atomically without it */
    uint64_t held_bytes;    /* size of RESERVE as allocated by us; mu */
    uint64_t releases;      /* mu */
    uint64_t release_avail; /* free space right after the last release (0: none); mu */
    uint64_t release_us;    /* when (env clock) */
    int freed_pending;      /* a KV_WRITE_RESERVE write since the monitor's last flush; atomic */
    void (*flush)(void *arg);
    void *flush_arg;
    int stopping; /* mu */
    int thread_started;
    pthread_t thread;
};

#ifndef NDEBUG
/* Invariant 2 of reserve.h; mu held. Returns 1 if it holds. */
static int reserve_check_invariants(db_reserve *r)
{
    return !r->low || r->held_bytes == 0;
}
#endif

/* Free space of the store's file system; 0 on error (treated as full, logged at debug). */
static uint64_t avail_bytes(db_reserve *r, uint64_t *total)
{
    uint64_t avail = 0, tot = 0;
    int rc = r->env->free_space(r->env, r->dir, &avail, &tot);
    if (rc != 0)
        kv_log(r->log, KV_LOG_DEBUG, "%s: cannot read free space: %s", r->dir, kv_strerror(rc));
    if (total)
        *total = tot;
    return avail;
}

/* Deletes RESERVE. mu held. */
static void release_locked(db_reserve *r, const char *why)
{
    int rc = r->env->unlink(r->env, r->path);
    if (rc != 0 && rc != KV_ENOTFOUND)
        kv_log(r->log, KV_LOG_ERROR, "%s: cannot release the space reserve: %s", r->path,
               kv_strerror(rc));
    if (r->held_bytes > 0 || rc == 0) {
        r->releases++;
        kv_log(r->log, KV_LOG_WARN,
               "%s: released %" PRIu64 " bytes of space reserve (%s); low-space mode: only "
               "writes that free space are accepted until free space returns",
               r->dir, r->held_bytes, why);
    }
    r->held_bytes = 0;
}

/* Allocates RESERVE to want bytes if free space allows. Returns 0 (held), KV_ENOSPC (not
 * enough space: nothing held, any partial file removed) or another error (logged; nothing
 * held). mu held. */
static int acquire_locked(db_reserve *r)
{
    uint64_t avail = avail_bytes(r, NULL);
    uint64_t need = r->want > r->held_bytes ? r->want - r->held_bytes : 0;
    if (need == 0)
        return 0;
    /* After a release the freed reserve itself shows as free space: for a while only space
     * beyond it (reclaimed by compaction, or freed outside the store) ends the mode, so that
     * the background work gets a few attempts in it before the reserve is taken back. */
    int fresh = r->env->now_micros(r->env) - r->release_us < RESERVE_HOLD_OFF_US;
    if (avail < need + r->margin || (r->low && fresh && avail < r->release_avail + r->margin))
        return KV_ENOSPC;
    int rc = r->env->preallocate(r->env, r->path, r->want);
    if (rc == 0) {
        r->held_bytes = r->want;
        return 0;
    }
    int urc = r->env->unlink(r->env, r->path); /* a partial reserve is no reserve */
    (void)urc;
    r->held_bytes = 0;
    if (rc != KV_ENOSPC)
        kv_log(r->log, KV_LOG_WARN, "%s: cannot allocate the space reserve: %s; going on without",
               r->path, kv_strerror(rc));
    return rc;
}

/* In low-space mode: ends it if free space is back. Returns 1 if the mode is off. mu held. */
static int try_leave_locked(db_reserve *r)
{
    if (!r->low)
        return 1;
    int rc = acquire_locked(r);
    if (rc == KV_ENOSPC)
        return 0;
    /* Space is back (rc == 0), or it is back but the reserve cannot be made for another
     * reason (logged): refusing writes would not help then. */
    __atomic_store_n(&r->low, 0, __ATOMIC_RELEASE);
    r->release_avail = 0;
    kv_log(r->log, KV_LOG_WARN, "%s: free space is back; %s; low-space mode ends", r->dir,
           rc == 0 ? "space reserve re-created" : "no space reserve");
    return 1;
}

static void *monitor_main(void *arg)
{
    db_reserve *r = arg;
    uint64_t backoff = RESERVE_BACKOFF_MIN_US;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        if (!r->low) {
            backoff = RESERVE_BACKOFF_MIN_US;
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (backoff % 1000000u) * 1000u;
        ts.tv_sec += (time_t)(backoff / 1000000u + ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        if (r->stopping || !r->low)
            continue;
        if (r->flush && __atomic_exchange_n(&r->freed_pending, 0, __ATOMIC_ACQ_REL)) {
            /* Deletions accepted in the mode reclaim nothing while they sit in the memtable:
             * a small one is not flushed for a long time. */
            pthread_mutex_unlock(&r->mu);
            r->flush(r->flush_arg);
            pthread_mutex_lock(&r->mu);
            if (r->stopping || !r->low)
                continue;
        }
        try_leave_locked(r);
        backoff = backoff * 2 > RESERVE_BACKOFF_MAX_US ? RESERVE_BACKOFF_MAX_US : backoff * 2;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

uint64_t reserve_table_cap(uint64_t target_file_size, uint64_t fs_total)
{
    uint64_t cap = fs_total / RESERVE_TABLE_DISK_FRACTION;
    if (fs_total == 0 || cap < RESERVE_TABLE_MIN_CAP)
        cap = fs_total == 0 ? UINT64_MAX : RESERVE_TABLE_MIN_CAP;
    return target_file_size < cap ? target_file_size : cap;
}

uint64_t reserve_auto_bytes(const kv_options *opts, int value_log, uint64_t fs_total)
{
    uint64_t want = (uint64_t)opts->memtable_bytes +
                    2 * reserve_table_cap((uint64_t)opts->target_file_size, fs_total);
    if (value_log) {
        uint64_t seg = vlog_segment_cap(opts->value_log_segment_bytes, fs_total);
        int pct = opts->value_log_gc_percent > 0 && opts->value_log_gc_percent <= 100
                      ? opts->value_log_gc_percent
                      : RESERVE_VLOG_GC_PERCENT_DEFAULT;
        want += seg / 100 * (uint64_t)(100 - pct) + seg % 100 * (uint64_t)(100 - pct) / 100;
    }
    if (fs_total > 0 && want > fs_total / RESERVE_CAP_DIVISOR)
        want = fs_total / RESERVE_CAP_DIVISOR;
    return want;
}

int reserve_open(const char *dir, const kv_options *opts, const kv_env *env, const kv_logger *log,
                 db_reserve **out)
{
    *out = NULL;
    db_reserve *r = calloc(1, sizeof(*r));
    if (!r)
        return KV_ENOMEM;
    size_t n = strlen(dir) + sizeof(RESERVE_FILENAME) + 2;
    r->path = malloc(n);
    if (!r->path) {
        free(r);
        return KV_ENOMEM;
    }
    snprintf(r->path, n, "%s/%s", dir, RESERVE_FILENAME);
    r->env = env;
    r->log = log;
    r->dir = dir;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);

    uint64_t want = opts->reserve_bytes;
    if (!env->preallocate || !env->free_space)
        want = 0; /* an env that cannot do it: no reserve, no mode */
    uint64_t total = 0, avail = 0;
    if (want > 0) {
        avail = avail_bytes(r, &total);
        if (want == KV_RESERVE_AUTO)
            want = reserve_auto_bytes(
                opts, opts->value_log_threshold > 0 || vlog_marker_exists(env, dir) == 1, total);
        if (total > 0 && want > total / RESERVE_CAP_DIVISOR)
            want = total / RESERVE_CAP_DIVISOR;
    }
    r->want = want;
    r->margin = want / 4 > RESERVE_MIN_MARGIN ? want / 4 : RESERVE_MIN_MARGIN;
    if (want == 0) {
        /* No reserve wanted: one left by an earlier open with a reserve only wastes space. */
        int urc = env->unlink(env, r->path);
        if (urc != 0 && urc != KV_ENOTFOUND)
            kv_log(log, KV_LOG_WARN, "%s: cannot delete the unwanted space reserve: %s", r->path,
                   kv_strerror(urc));
        return *out = r, 0;
    }

    uint64_t size = 0;
    if (env->file_size(env, r->path, &size) == 0 && size > 0) {
        r->held_bytes = size; /* ours from an earlier run (allocation assumed) */
        if (avail < r->margin) {
            pthread_mutex_lock(&r->mu);
            release_locked(r, "the disk is nearly full at open");
            r->low = 1;
            pthread_mutex_unlock(&r->mu);
        }
    }
    *out = r;
    return 0;
}

int reserve_start(db_reserve *r, void (*flush)(void *arg), void *arg)
{
    if (!r || r->want == 0)
        return 0;
    r->flush = flush;
    r->flush_arg = arg;
    pthread_mutex_lock(&r->mu);
    if (!r->low && acquire_locked(r) == KV_ENOSPC) {
        __atomic_store_n(&r->low, 1, __ATOMIC_RELEASE);
        kv_log(r->log, KV_LOG_WARN,
               "%s: too little free space for a %" PRIu64 "-byte space reserve; low-space "
               "mode: only writes that free space are accepted until free space returns",
               r->dir, r->want);
    }
    pthread_mutex_unlock(&r->mu);
    if (pthread_create(&r->thread, NULL, monitor_main, r) != 0)
        return KV_ENOMEM;
    r->thread_started = 1;
    return 0;
}

void reserve_stop(db_reserve *r)
{
    if (!r || !r->thread_started)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    r->thread_started = 0;
}

void reserve_free(db_reserve *r)
{
    if (!r)
        return;
    reserve_stop(r);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->path);
    free(r);
}

int reserve_admit(db_reserve *r, int flags)
{
    if (!r || !__atomic_load_n(&r->low, __ATOMIC_ACQUIRE))
        return 0;
    if (flags & KV_WRITE_RESERVE) {
        __atomic_store_n(&r->freed_pending, 1, __ATOMIC_RELEASE);
        return 0;
    }
    /* A refused write looks at the free space every time (one statvfs): space freed outside
     * the store is usable at once, and a transient ENOSPC ends the mode on the next write. */
    pthread_mutex_lock(&r->mu);
    int rc = try_leave_locked(r) ? 0 : KV_ENOSPC;
    assert(reserve_check_invariants(r));
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int reserve_on_enospc(db_reserve *r, int background)
{
    if (!r || r->want == 0)
        return 0;
    pthread_mutex_lock(&r->mu);
    int freed = r->held_bytes > 0;
    if (freed) {
        release_locked(r, background ? "a flush or compaction found the disk full"
                                     : "the disk is full");
        /* A WAL append fails only when the disk is full; a compaction may also fail because
         * it wants more than is free: then the released space is left to it for a while. */
        r->release_avail = background ? avail_bytes(r, NULL) : 0;
        r->release_us = r->env->now_micros(r->env);
    }
    if (!r->low) {
        __atomic_store_n(&r->low, 1, __ATOMIC_RELEASE);
        if (!freed)
            kv_log(r->log, KV_LOG_WARN,
                   "%s: the disk is full and no space reserve is held; "
                   "low-space mode: only writes that free space are accepted",
                   r->dir);
        pthread_cond_signal(&r->cv);
    }
    assert(reserve_check_invariants(r));
    pthread_mutex_unlock(&r->mu);
    return freed;
}

int reserve_is_low(db_reserve *r)
{
    return r ? __atomic_load_n(&r->low, __ATOMIC_ACQUIRE) : 0;
}

void reserve_get_stats(db_reserve *r, uint64_t *low, uint64_t *held, uint64_t *releases)
{
    *low = *held = *releases = 0;
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    *low = (uint64_t)r->low;
    *held = r->held_bytes;
    *releases = r->releases;
    pthread_mutex_unlock(&r->mu);
}

int reserve_destroy(const kv_env *env, const char *dir)
{
    size_t n = strlen(dir) + sizeof(RESERVE_FILENAME) + 2;
    char *p = malloc(n);
    if (!p)
        return KV_ENOMEM;
    snprintf(p, n, "%s/%s", dir, RESERVE_FILENAME);
    int rc = env->unlink(env, p);
    free(p);
    return rc == KV_ENOTFOUND ? 0 : rc;
}
