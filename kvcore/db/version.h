/* version.h - the set of live tables (versions), the manifest, and compaction.
 *
 * A version is an immutable snapshot of which SSTables make up each level. The version set
 * holds the current version, the file-number/sequence counters and the manifest: an
 * append-only log (wal.h record format) of version edits, named by CURRENT.
 *
 * Invariants:
 *  1. Tables in level >= 1 do not overlap and are sorted by smallest key; L0 tables may overlap
 *     and are ordered newest (highest number) first for reads.
 *  2. Every table a version references is recorded in the manifest and synced before the
 *     version becomes current; no file a live version references is ever deleted.
 *  3. next_file_number exceeds every file number in use; last_sequence is >= every sequence in
 *     any table.
 *
 * Threads: unless a function says otherwise, call it with the db mutex held (the `mu` passed
 * to version_set_new). version_get, version_add_iterators and compaction_run may be called
 * without it, on a version the caller holds a reference to.
 */
#ifndef KV_VERSION_H
#define KV_VERSION_H

#include <pthread.h>
#include <stdint.h>
#include "db/table_cache.h"
#include "kvcore/kv.h"
#include "util/coding.h"
#include "util/iter.h"
#include "util/log.h"

typedef struct file_meta {
    uint64_t number;
    uint64_t size;
    buf smallest; /* internal key */
    buf largest;  /* internal key */
    int refs;     /* versions referencing this file; protected by mu */
    /* Added: newest sequence number in the table (an upper bound). Orders L0 newest first and
     * is recorded in the manifest. 0 in an edit means "unknown": log_and_apply then uses the
     * version set's last_sequence, which is right for a memtable flush (its entries are newer
     * than every table already in L0). table_build and compaction_run fill it exactly. */
    uint64_t largest_seq;
    /* Added: lookups that may still probe this table in vain before it is compacted (LevelDB's
     * allowed_seeks: one per 16 KiB of table, at least 1000). A kv_get that probes this table
     * first and then has to probe another charges one; at zero the table is marked for a
     * compaction (version.seek_file), so that a key's versions spread over overlapping tables
     * are merged once reads show they cost. In memory only; atomic, mu not needed. */
    int allowed_seeks;
    /* Added: the table held open for lookups (table_cache_pin), made by the first kv_get that
     * probes this table and released when the metadata is freed; a marker of version.c once the
     * table cache refused a pin (its budget was spent), NULL before the first probe. Set once
     * by compare-and-swap, read with acquire loads; mu not needed. */
    table_pin *pin;
} file_meta;

/* ---- Version edits ------------------------------------------------------------------------ */

typedef struct version_edit_file {
    int level;
    file_meta *meta; /* owned by the edit until applied */
} version_edit_file;

typedef struct version_edit_deleted {
    int level;
    uint64_t number;
} version_edit_deleted;

typedef struct version_edit {
    int has_log_number;
    uint64_t log_number; /* WALs numbered below this are obsolete */
    int has_next_file_number;
    uint64_t next_file_number;
    int has_last_sequence;
    uint64_t last_sequence;
    int has_format_version;
    uint32_t format_version;
    version_edit_deleted *deleted;
    size_t n_deleted, cap_deleted;
    version_edit_file *added;
    size_t n_added, cap_added;
} version_edit;

void version_edit_init(version_edit *e);
void version_edit_free(version_edit *e); /* frees added metas still owned */
int version_edit_add_file(version_edit *e, int level, uint64_t number, uint64_t size,
                          slice smallest, slice largest);
int version_edit_delete_file(version_edit *e, int level, uint64_t number);
/* Added: like version_edit_add_file, copying m's number, size, keys and largest_seq. Returns 0,
 * KV_ENOMEM or KV_EINVAL (bad level or key). */
int version_edit_add_file_meta(version_edit *e, int level, const file_meta *m);
/* Added: the manifest format version this code writes; a manifest whose format_version is
 * higher is refused with KV_EVERSION. See kvcore/FORMAT.md. on-disk: never change. */
#define VERSION_FORMAT_CURRENT 1
/* Encoding (FORMAT.md "Manifest"). decode returns KV_ECORRUPT on any malformed input. */
int version_edit_encode(const version_edit *e, buf *out);
int version_edit_decode(version_edit *e, slice in);

/* ---- Versions ------------------------------------------------------------------------------ */

typedef struct version_set version_set;

typedef struct version {
    version_set *vset;
    int refs;                         /* protected by mu */
    file_meta **files[KV_MAX_LEVELS]; /* per level; L0 newest first, others by smallest key */
    int nfiles[KV_MAX_LEVELS];
    double compaction_score; /* >= 1 means a compaction is needed */
    int compaction_level;
    /* Added: a table of this version whose allowed_seeks ran out (NULL: none). Set once, by
     * compare-and-swap from any reading thread; read by the compaction picker (mu held). */
    file_meta *seek_file;
} version;

void version_ref(version *v);   /* mu held */
void version_unref(version *v); /* mu held */
/* Added: a reference to one table's metadata (mu held), for a compaction that keeps reading
 * its inputs' metadata after it has released its input version (compaction.c installs its
 * progress in steps). Holding it does not keep the file: only versions and pending outputs
 * do (version_set_live_files). version_file_unref frees the metadata at zero references. */
void version_file_ref(file_meta *f);
void version_file_unref(file_meta *f);

/* Point lookup of user_key as of seq through the tables of v (L0 newest first, then one table
 * per level). Returns MEMTABLE_FOUND (value appended to *value), MEMTABLE_DELETED,
 * MEMTABLE_ABSENT, or an error (KV_ECORRUPT/KV_EIO/KV_ENOMEM). mu need not be held. */
int version_get(version *v, slice user_key, uint64_t seq, buf *value);
/* Added: version_get that also sets *seek_due to 1 when this lookup used up a table's allowed
 * seeks and marked it for compaction (the caller should then wake the compaction thread),
 * else 0. mu need not be held. */
int version_get_counted(version *v, slice user_key, uint64_t seq, buf *value, int *seek_due);

/* Appends to *its (growing the malloc'd array, count in *n) one iterator per L0 table and one
 * concatenating iterator per non-empty deeper level. mu need not be held; v must stay
 * referenced while the iterators live (register a cleanup that unrefs it). */
int version_add_iterators(version *v, int fill_cache, iter ***its, int *n);

/* ---- Version set ---------------------------------------------------------------------------- */

/* Creates a version set for the store in dir. opts, env, tc and log must outlive it. */
int version_set_new(const char *dir, const kv_options *opts, const kv_env *env, table_cache *tc,
                    const kv_logger *log, pthread_mutex_t *mu, version_set **out);
void version_set_free(version_set *vs);

/* Creates the first manifest of an empty store (format version, counters) and CURRENT. */
int version_set_create_new(version_set *vs);
/* Reads CURRENT and the manifest it names, rebuilding the current version. KV_ECORRUPT (logged)
 * if the manifest is damaged or references a table file that is missing; KV_EVERSION if it was
 * written by a newer format. Changes nothing on disk. */
int version_set_recover(version_set *vs);
/* Applies edit to the current version, writes it to the manifest (starting a new manifest on
 * first use after recovery), syncs, and installs the result as current. Sets the edit's
 * next_file_number/last_sequence. mu held; may release and retake it during I/O. On failure
 * the current version is unchanged. */
int version_set_log_and_apply(version_set *vs, version_edit *e);

version *version_set_current(version_set *vs); /* borrowed; ref it to keep it */
uint64_t version_set_new_file_number(version_set *vs);
/* Gives back a number obtained by new_file_number if it was not used (best effort). */
void version_set_reuse_file_number(version_set *vs, uint64_t number);
uint64_t version_set_last_sequence(const version_set *vs);
void version_set_set_last_sequence(version_set *vs, uint64_t seq);
uint64_t version_set_log_number(const version_set *vs);
uint64_t version_set_manifest_number(const version_set *vs);
/* Marks `number` used (e.g. a WAL found at recovery) so new numbers are above it. */
void version_set_mark_file_number_used(version_set *vs, uint64_t number);

/* Adds every table number referenced by any live version to *numbers (malloc'd, *n). */
int version_set_live_files(version_set *vs, uint64_t **numbers, size_t *n);
int version_set_num_level_files(const version_set *vs, int level);
uint64_t version_set_num_level_bytes(const version_set *vs, int level);
/* Bytes that compaction still has to rewrite to bring every level under its limit. */
uint64_t version_set_pending_compaction_bytes(const version_set *vs);
int version_set_needs_compaction(const version_set *vs);

/* ---- Compaction ------------------------------------------------------------------------------ */

typedef struct compaction compaction;

/* Picks the most needed compaction (leveled or size-tiered, as opts say), or NULL if none.
 * Leveled L0 -> L1 takes at most a quarter of the free space in L0 inputs (the oldest L0
 * tables that fit, at least one), so that a nearly full disk can still compact. */
compaction *version_set_pick_compaction(version_set *vs);
/* A compaction of every table in `level` overlapping [begin, end] (NULL slices' data: unbounded)
 * into level + 1, or NULL if nothing overlaps. */
compaction *version_set_compact_range(version_set *vs, int level, const slice *begin,
                                      const slice *end);
/* Added (full disk): a merge of every L0 table into one L0 table (a size-tiered merge of all
 * runs), or NULL if L0 holds fewer than two. It drops what newer L0 entries shadow (data
 * deleted since it was flushed) without rewriting any deeper level, so it needs room only for
 * L0's live data: the way out when an L0 -> L1 compaction cannot fit. */
compaction *version_set_merge_level0(version_set *vs);
/* Added (full disk): in low-space mode, when no compaction is scored as due, an L0 -> L1 of
 * the oldest L0 table and what overlaps it, bounded by the free space as the picker does,
 * so that deletions flushed to L0 reclaim what they delete (at the bottom level their
 * tombstones go too). NULL if L0 is empty, the style is tiered, or out of memory. mu held. */
compaction *version_set_pick_reclaim(version_set *vs);
/* Levels the compaction reads and writes, and whether it is a trivial move (one input table
 * that can be moved to the next level by a manifest edit alone). */
int compaction_level(const compaction *c);
int compaction_output_level(const compaction *c);
int compaction_is_trivial_move(const compaction *c);
uint64_t compaction_input_bytes(const compaction *c);

typedef struct compaction_stats {
    uint64_t bytes_read;
    uint64_t bytes_written;
    uint64_t entries_dropped;
} compaction_stats;

/* Runs the merge without mu held: reads the inputs, drops entries shadowed by a newer entry
 * that every snapshot >= smallest_snapshot also sees, drops tombstones at the bottom level
 * when nothing older lies below, and writes output tables (temp name, sync, rename) of about
 * target_file_size (at most 1/64 of the file system). A leveled compaction installs its
 * result in steps as it goes (takes mu for each; compaction.c "Bounded headroom"): the outputs
 * so far with the input tables of levels >= 1 the merge has passed, whose files it then
 * deletes unless an older version uses them. `shutting_down` (if non-NULL) is polled to
 * abandon early. On failure, the outputs not yet installed are deleted; installed steps stay
 * (the version is valid, partly compacted). */
int compaction_run(compaction *c, uint64_t smallest_snapshot, const volatile int *shutting_down,
                   compaction_stats *st);
/* Installs the rest of the compaction's result (mu held): log_and_apply of one edit adding
 * the outputs no step installed and deleting the remaining inputs (L0 inputs always here). */
int compaction_install(compaction *c);
/* Added (value log): fn(ctx, stored_value) is called by compaction_run for every value entry it
 * drops, so that the value log can count the records that became garbage. Call before
 * compaction_run; fn runs on the compaction's thread without mu. */
void compaction_set_drop_hook(compaction *c, void (*fn)(void *ctx, slice value), void *ctx);
void compaction_free(compaction *c); /* mu held (unrefs the input version) */

/* Writes the entries of it (a memtable iterator) as table file `number` (temp name, sync,
 * rename) and fills *meta (number, size, smallest, largest). An empty iterator writes nothing
 * and leaves meta->size 0. Call without mu. */
int table_build(const char *dir, const kv_env *env, const kv_options *opts, table_cache *tc,
                iter *it, uint64_t number, file_meta *meta);

/* ---- Added: shared by db/version.c and db/compaction.c only ------------------------------- */

/* The version set's fixed surroundings (borrowed, valid while vs lives). */
typedef struct version_set_ctx {
    const char *dir;
    const kv_options *opts;
    const kv_env *env;
    table_cache *tc;
    const kv_logger *log;
    pthread_mutex_t *mu;
} version_set_ctx;
const version_set_ctx *version_set_get_ctx(const version_set *vs);
/* Largest internal key of the last leveled compaction of `level` (empty: none yet); mu held. */
buf *version_set_compact_pointer(version_set *vs, int level);
/* Numbers of tables being written by a compaction: version_set_live_files reports them too, so
 * that nobody deletes them as obsolete. mu held. add returns 0 or KV_ENOMEM. */
int version_set_add_pending_output(version_set *vs, uint64_t number);
void version_set_remove_pending_output(version_set *vs, uint64_t number);
/* A concatenating iterator over files (sorted, non-overlapping; borrowed: keep the version that
 * holds them referenced), opening one table at a time through tc. NULL if out of memory. */
iter *version_concat_iter_new(table_cache *tc, file_meta *const *files, int n, int fill_cache);
/* Sets v->compaction_score/compaction_level from v's files and opts (compaction.c). */
void version_compute_score(version *v, const kv_options *opts);
/* Size limit of a level >= 1 in leveled mode: level1_bytes * 10^(level-1). */
uint64_t version_max_bytes_for_level(const kv_options *opts, int level);

#endif /* KV_VERSION_H */
