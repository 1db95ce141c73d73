/* salvage.h - what kvcore/db/salvage.c (kv_salvage: CURRENT, logs, manifest, checks) and
 * kvcore/db/salvage_rebuild.c (the rebuild of tables and manifest) share. Internal to db/.
 *
 * Threads: one salvage runs in one thread, with the store's LOCK held.
 */
#ifndef KV_SALVAGE_H
#define KV_SALVAGE_H

#include <stddef.h>
#include <stdint.h>

#include "db/filename.h"
#include "db/vlog.h"
#include "kvcore/kv.h"
#include "util/coding.h"
#include "util/env.h"
#include "util/log.h"
#include "util/slice.h"

/* A table the salvage considers: from the manifest's live set, or found in the directory. */
struct salvage_table {
    uint64_t number;
    int level;             /* -1: not from a trusted manifest */
    uint64_t size;         /* the manifest's size; 0: unknown */
    uint64_t largest_seq;  /* the manifest's */
    buf smallest, largest; /* the manifest's keys; empty: unknown */
    int damaged;
};

/* User keys k with lo < k <= hi (lo <= k if lo_inclusive); has_*: 0 means unbounded. The
 * damaged table's Bloom filter, if it verified, rules out keys the table never held. */
struct salvage_range {
    buf lo, hi, filter;
    int has_lo, has_hi, lo_inclusive, has_filter;
};

/* kv.h's opaque kv_lost: the ranges a salvage lost (owned). */
struct kv_lost {
    struct salvage_range *r;
    size_t n;
};

/* One run of kv_salvage_ex; the arrays are owned and freed by it. */
struct salvage {
    const kv_env *env;
    const char *dir;
    const kv_options *opts;
    kv_logger log;
    char **names;
    size_t n;
    kv_salvage_stats st;
    uint64_t max_number; /* highest file number in the directory */
    /* From the manifest replay. */
    char manifest[FILENAME_MAX_LEN]; /* "" if none could be read */
    int manifest_ok;                 /* every record decoded and replayed */
    int has_counters;
    uint64_t log_number, next_file, last_seq;
    struct salvage_table *tables;
    size_t ntables, tables_cap;
    struct salvage_range *lost;
    size_t nlost, lost_cap;
    /* Value log (step 3b): the store is in value-log mode; the segments kv_check counts as
     * damaged (numbers); the value log opened read-only for the rebuild (NULL: none). */
    int vlog_mode;
    uint64_t *vbad;
    size_t nvbad, vbad_cap;
    int vbad_oom;
    size_t vtorn; /* segments whose end is a torn tail */
    /* A dry run of the rebuild (step 3c): reads every source as the rebuild would and sets
     * dry_failed where the rebuild would lose something, writing and logging nothing. */
    int dry, dry_failed;
    vlog *vl;
};

/* "dir/name" + suffix, malloc'd (caller frees); NULL if out of memory. */
char *salvage_join(const char *dir, const char *name, const char *suffix);
/* Copies dir/name, all of it, to dir/name.damaged (temp name, sync, rename, directory sync).
 * Returns 0 or the I/O error (logged). */
int salvage_keep_original(struct salvage *s, const char *name);
/* Records a lost range of user keys (copied); lo/hi NULL: unbounded; filter NULL: none.
 * Returns 0 or KV_ENOMEM. */
int salvage_lost_add(struct salvage *s, const slice *lo, int lo_inclusive, const slice *hi,
                     const slice *filter);
/* Step 4 (or with s->dry, step 3c): merges the good entries of s->tables and of the logs into new
 * tables, writes a new manifest naming only them and switches CURRENT to it (salvage_rebuild.c). On
 * failure nothing CURRENT names has changed and the files it wrote are deleted. Returns 0 or an
 * error (logged). */
int salvage_rebuild(struct salvage *s);
/* Writes every range in s->lost (those of earlier salvages that LOST still held included) to
 * the LOST file atomically; nothing if there are none. Called before CURRENT is switched, so
 * that what a rebuild lost outlives an interruption of its caller. Returns 0 or an I/O error
 * (logged). */
int salvage_lost_persist(struct salvage *s);
/* 1 if value-log segment `seg` holds a damaged record (step 3b), else 0. */
int salvage_vlog_damaged(const struct salvage *s, uint64_t seg);

#endif /* KV_SALVAGE_H */
