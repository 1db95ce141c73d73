/* compaction.c - choosing, running and installing compactions; writing memtables to L0.
 *
 * Leveled (default). L0's score is its file count over l0_compaction_trigger; level n >= 1
 * scores its bytes over level1_bytes * 10^(n-1). The level with the highest score >= 1 is
 * compacted into the next: one file is picked round-robin after the level's compact pointer
 * (L0: with every L0 file overlapping it), then every overlapping file of the next level; the
 * first level's inputs grow if that pulls in no new file below (up to 25 target files). Inputs
 * never split a user key across the boundary of the compaction. A single input with nothing
 * below it and little grandparent overlap is moved by a manifest edit alone (trivial move).
 *
 * Size-tiered (compaction_style = KV_COMPACTION_TIERED). Each L0 table is one sorted run; runs
 * are ordered newest first (largest_seq). A compaction merges a contiguous window of at least
 * TIERED_MIN_MERGE runs (at most TIERED_MAX_MERGE) of similar size - each run between half and
 * twice the mean of the runs before it in the window, or all no bigger than memtable_bytes -
 * into one new run that takes the window's place in the age order (its largest_seq is the
 * window's). Keeping windows contiguous keeps the runs' sequence ranges disjoint, so reads may
 * still take L0 newest first. Among candidate windows the longest (then newest) wins. If no
 * window qualifies but the run count reaches l0_slowdown_trigger - 1, the cheapest contiguous
 * window that brings it back below is merged anyway, so writers are never stalled for good.
 * Each rewrite of a byte roughly quadruples the size of the run holding it, so write
 * amplification is about log4(data / memtable) instead of leveled's ~10 per level.
 *
 * Running: the inputs are merged (merger_new) and each entry is kept or dropped by the rules
 * of version.h: an entry is dropped if a newer entry of the same user key is visible to every
 * snapshot (its sequence <= smallest_snapshot); a deletion is dropped if it is visible to every
 * snapshot and no table older than the output (deeper levels, older L0 runs) may hold the key.
 * Outputs are cut at target_file_size or when they would overlap too much of the level below
 * next (grandparents) - only between two user keys, never inside one (tiered runs are never
 * cut). Each output is written as NNNNNN.tmp, synced, renamed to NNNNNN.sst; the directory is
 * synced before the compaction reports success.
 *
 * Bounded headroom (leveled compactions). Installing the result only at the end would need
 * free space for the whole output before any input is freed: an L0 -> L1 compaction, whose L0
 * tables usually span the whole key range, rewrites all of L1 and needed as much again free,
 * so a store filled only about half of a small disk before ENOSPC. Instead the result is
 * installed in steps. The input tables of levels >= 1 are sorted and disjoint; once the merge
 * has passed the largest key of one (the next user key is greater), every entry of it has
 * been merged into the outputs written so far. Then, between two user keys, the open output is
 * finished and one version edit adds the outputs so far to the output level and deletes the
 * passed inputs (of either level >= 1), whose files are deleted at once unless an older
 * version still uses them. The free space a compaction needs is so bounded by about one
 * step: the passed input tables plus what the merge writes for their key range (L0 entries
 * in it included), not by the size of the whole rewrite. L0 inputs span the whole range and
 * go only with the last edit (compaction_install). A step is taken once it frees or writes
 * at least half a target file, so that outputs are not cut into ever smaller tables.
 *
 * Why every intermediate version reads right (and so any crash between the edits, as each
 * edit is one manifest record): an installed output holds, for keys up to the step's key,
 * the merge of its inputs with only entries dropped that no read can see (shadowed for every
 * snapshot, or a tombstone with nothing older below); the deleted inputs are wholly merged
 * into it. The L0 inputs stay until the end, and L0 is read before L1, so a key they hold
 * reads as before; an entry may briefly exist both in an L0 input and in an output (the same
 * internal key and value), which the merging iterator and reads treat as one. The outputs end
 * before the smallest key of the first input not yet passed (the merge has not reached it),
 * so the output level stays sorted and disjoint. A compaction that fails after some steps
 * leaves a valid, partly compacted version; the next compaction picks up from it.
 *
 * Invariants of a compaction installing in steps (compaction_check_invariants, debug builds):
 *  1. passed[w] <= reached[w] <= inputs[w].n, and nothing of L0 is ever passed or reached.
 *  2. n_installed <= n_outputs; installed outputs are no longer pending outputs.
 *  3. The last installed output ends below the smallest key of the first output-level input
 *     still in the version (inputs[1].f[passed[1]]): the output level never overlaps.
 *  4. Until the input version is released its files are alive; after it, every file in the
 *     compaction's lists holds a version_file_ref (holds_file_refs).
 */
#include "db/version.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "db/filename.h"
#include "db/reserve.h"
#include "table/sst.h"
#include "util/env.h"
#include "util/ikey.h"

#define TIERED_MIN_MERGE 4
#define TIERED_MAX_MERGE 32
#define EXPANDED_COMPACTION_FACTOR 25 /* x target_file_size */
#define GRANDPARENT_OVERLAP_FACTOR 10 /* x target_file_size */
/* Bounded headroom (see the top): no output table exceeds reserve_table_cap() (1/64 of the
 * file system, not below 1 MiB; the automatic space reserve is sized from it), so that a step
 * - about one input table of the output level - needs little of a small disk; and L0 -> L1
 * takes at most 1/L0_HEADROOM_FRACTION of the free space in L0 inputs, the oldest first. */
#define L0_HEADROOM_FRACTION 4

typedef struct file_list {
    file_meta **f;
    int n, cap;
} file_list;

struct compaction {
    version_set *vs;
    version *input_version; /* referenced */
    int level, output_level;
    int tiered;         /* an L0 -> L0 merge of a window of runs */
    int bounded_level0; /* L0 inputs cut to the free space: never expanded */
    int manual;
    file_list inputs[2]; /* level, level + 1 (tiered: only inputs[0]) */
    file_list grandparents;
    file_list older_runs; /* tiered: L0 runs older than the window */
    uint64_t window_seq;  /* tiered: largest_seq of the window's newest run */
    uint64_t max_output_size;
    /* Installing in steps (see "Bounded headroom" above). */
    int incremental;      /* leveled, not a trivial move: compaction_run installs steps */
    int n_installed;      /* outputs[0, n_installed) are in the current version */
    int passed[2];        /* inputs[w].f[0, passed[w]) are deleted from the current version */
    int reached[2];       /* inputs[w].f[0, reached[w]) are wholly merged (>= passed[w]) */
    uint64_t step_input;  /* bytes of inputs reached but not yet deleted */
    uint64_t step_output; /* bytes of outputs finished but not yet installed */
    int holds_file_refs;  /* each file of the lists here holds a version_file_ref */
    int install_failed;   /* a step's log_and_apply failed: its outputs' fate is unknown */
    file_list deeper[KV_MAX_LEVELS];         /* levels below the output, for is_base_for_key */
    void (*on_drop)(void *ctx, slice value); /* compaction_set_drop_hook */
    void *on_drop_ctx;
    /* Filled by compaction_run. */
    int ran;
    file_meta **outputs; /* owned (refs 0) */
    int n_outputs, cap_outputs;
    /* Tombstone checks walk each deeper level once, in key order. */
    int level_ptrs[KV_MAX_LEVELS];
    /* Grandparent overlap of the output being written. */
    int gp_index;
    int gp_seen_key;
    uint64_t gp_overlap;
};

/* ---- Helpers ------------------------------------------------------------------------------- */

/* Free bytes (avail) and size (total) of the file system holding the store; UINT64_MAX for
 * both if the env cannot tell. */
static void disk_space(const version_set_ctx *ctx, uint64_t *avail, uint64_t *total)
{
    if (ctx->env->free_space == NULL ||
        ctx->env->free_space(ctx->env, ctx->dir, avail, total) != 0) {
        *avail = UINT64_MAX;
        *total = UINT64_MAX;
    }
}

static int list_add(file_list *l, file_meta *f)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 8;
        file_meta **a = realloc(l->f, (size_t)cap * sizeof *a);
        if (a == NULL)
            return KV_ENOMEM;
        l->f = a;
        l->cap = cap;
    }
    l->f[l->n++] = f;
    return 0;
}

static void list_free(file_list *l)
{
    free(l->f);
    memset(l, 0, sizeof *l);
}

static int list_contains(const file_list *l, const file_meta *f)
{
    for (int i = 0; i < l->n; i++)
        if (l->f[i] == f)
            return 1;
    return 0;
}

static uint64_t list_bytes(const file_list *l)
{
    uint64_t sum = 0;
    for (int i = 0; i < l->n; i++)
        sum += l->f[i]->size;
    return sum;
}

static slice smallest_of(const file_meta *f)
{
    return buf_slice(&f->smallest);
}

static slice largest_of(const file_meta *f)
{
    return buf_slice(&f->largest);
}

/* Smallest and largest internal keys over the files of a and b (b may be NULL). */
static void key_range(const file_list *a, const file_list *b, slice *smallest, slice *largest)
{
    int first = 1;
    for (int k = 0; k < 2; k++) {
        const file_list *l = k == 0 ? a : b;
        for (int i = 0; l && i < l->n; i++) {
            slice s = smallest_of(l->f[i]), g = largest_of(l->f[i]);
            if (first || ikey_compare(s, *smallest) < 0)
                *smallest = s;
            if (first || ikey_compare(g, *largest) > 0)
                *largest = g;
            first = 0;
        }
    }
}

uint64_t version_max_bytes_for_level(const kv_options *opts, int level)
{
    uint64_t bytes = opts->level1_bytes ? opts->level1_bytes : (UINT64_C(10) << 20);
    for (int l = 1; l < level; l++)
        bytes *= 10;
    return bytes;
}

static uint64_t target_size(const kv_options *opts)
{
    return opts->target_file_size ? opts->target_file_size : (UINT64_C(2) << 20);
}

static int l0_trigger(const kv_options *opts)
{
    return opts->l0_compaction_trigger > 0 ? opts->l0_compaction_trigger : 4;
}

/* Files of v's level overlapping the user-key range [begin, end] (NULL: unbounded), into out.
 * In L0 the range grows to cover every file it overlaps, transitively. */
static int overlapping_inputs(const version *v, int level, const slice *begin, const slice *end,
                              file_list *out)
{
    slice b = begin ? *begin : slice_make(NULL, 0), e = end ? *end : slice_make(NULL, 0);
    int has_b = begin != NULL, has_e = end != NULL;
    out->n = 0;
    for (int i = 0; i < v->nfiles[level];) {
        file_meta *f = v->files[level][i++];
        slice fs = ikey_user_key(smallest_of(f)), fl = ikey_user_key(largest_of(f));
        if (has_b && slice_compare(fl, b) < 0)
            continue;
        if (has_e && slice_compare(fs, e) > 0)
            continue;
        int rc = list_add(out, f);
        if (rc)
            return rc;
        if (level == 0) {
            /* A file sticking out of the range widens it; rescan from the start. */
            if (has_b && slice_compare(fs, b) < 0) {
                b = fs;
                out->n = 0;
                i = 0;
            } else if (has_e && slice_compare(fl, e) > 0) {
                e = fl;
                out->n = 0;
                i = 0;
            }
        }
    }
    return 0;
}

/* Adds to `files` the files of `level` that continue the user key of its largest key (a file
 * whose smallest key has the same user key but an older sequence), so that no version of a
 * user key stays behind in the level while a newer one moves down. */
static int add_boundary_inputs(const version *v, int level, file_list *files)
{
    if (level == 0 || files->n == 0)
        return 0;
    slice largest, smallest;
    key_range(files, NULL, &smallest, &largest);
    for (;;) {
        file_meta *boundary = NULL;
        for (int i = 0; i < v->nfiles[level]; i++) {
            file_meta *f = v->files[level][i];
            slice s = smallest_of(f);
            if (ikey_compare(s, largest) > 0 &&
                slice_equal(ikey_user_key(s), ikey_user_key(largest)) &&
                (boundary == NULL || ikey_compare(s, smallest_of(boundary)) < 0))
                boundary = f;
        }
        if (boundary == NULL || list_contains(files, boundary))
            return 0;
        int rc = list_add(files, boundary);
        if (rc)
            return rc;
        largest = largest_of(boundary);
    }
}

static compaction *compaction_new(version_set *vs, int level, int output_level)
{
    compaction *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->vs = vs;
    c->input_version = version_set_current(vs);
    version_ref(c->input_version);
    c->level = level;
    c->output_level = output_level;
    c->max_output_size = target_size(version_set_get_ctx(vs)->opts);
    uint64_t avail, total;
    disk_space(version_set_get_ctx(vs), &avail, &total);
    c->max_output_size = reserve_table_cap(c->max_output_size, total == UINT64_MAX ? 0 : total);
    return c;
}

/* Bounded headroom: when the L0 inputs of c are more than the free space allows
 * (1/L0_HEADROOM_FRACTION of it), takes instead the oldest L0 tables that fit (at least one).
 * Any oldest part of L0 may go down alone: every table left in L0 is newer than every table
 * moved, and L0 is read before L1. The inputs are then not expanded (setup_other_inputs). */
static int bound_level0_inputs(compaction *c)
{
    const version *v = c->input_version;
    uint64_t avail, total;
    disk_space(version_set_get_ctx(c->vs), &avail, &total);
    uint64_t budget = avail / L0_HEADROOM_FRACTION;
    if (list_bytes(&c->inputs[0]) <= budget)
        return 0;
    c->inputs[0].n = 0;
    uint64_t bytes = 0;
    for (int i = v->nfiles[0] - 1; i >= 0; i--) {
        file_meta *f = v->files[0][i];
        if (c->inputs[0].n > 0 && bytes + f->size > budget)
            break;
        int rc = list_add(&c->inputs[0], f);
        if (rc)
            return rc;
        bytes += f->size;
    }
    c->bounded_level0 = 1;
    return 0;
}

/* Completes a leveled compaction whose inputs[0] is chosen: the next level's inputs, the
 * expansion of inputs[0], grandparents, and the level's compact pointer. */
static int setup_other_inputs(compaction *c)
{
    const version *v = c->input_version;
    const kv_options *opts = version_set_get_ctx(c->vs)->opts;
    int level = c->level, rc;
    slice smallest, largest, all_start, all_limit;

    if ((rc = add_boundary_inputs(v, level, &c->inputs[0])))
        return rc;
    key_range(&c->inputs[0], NULL, &smallest, &largest);
    slice us = ikey_user_key(smallest), ul = ikey_user_key(largest);
    if ((rc = overlapping_inputs(v, level + 1, &us, &ul, &c->inputs[1])) ||
        (rc = add_boundary_inputs(v, level + 1, &c->inputs[1])))
        return rc;
    key_range(&c->inputs[0], &c->inputs[1], &all_start, &all_limit);

    if (c->inputs[1].n > 0 && !c->bounded_level0) {
        file_list expanded0 = {0}, expanded1 = {0};
        slice as = ikey_user_key(all_start), al = ikey_user_key(all_limit);
        rc = overlapping_inputs(v, level, &as, &al, &expanded0);
        if (rc == 0)
            rc = add_boundary_inputs(v, level, &expanded0);
        uint64_t limit = EXPANDED_COMPACTION_FACTOR * target_size(opts);
        if (rc == 0 && expanded0.n > c->inputs[0].n &&
            list_bytes(&expanded0) + list_bytes(&c->inputs[1]) < limit) {
            slice ns, nl;
            key_range(&expanded0, NULL, &ns, &nl);
            slice nus = ikey_user_key(ns), nul = ikey_user_key(nl);
            rc = overlapping_inputs(v, level + 1, &nus, &nul, &expanded1);
            if (rc == 0)
                rc = add_boundary_inputs(v, level + 1, &expanded1);
            if (rc == 0 && expanded1.n == c->inputs[1].n) {
                list_free(&c->inputs[0]);
                list_free(&c->inputs[1]);
                c->inputs[0] = expanded0;
                c->inputs[1] = expanded1;
                memset(&expanded0, 0, sizeof expanded0);
                memset(&expanded1, 0, sizeof expanded1);
                key_range(&c->inputs[0], NULL, &smallest, &largest);
                key_range(&c->inputs[0], &c->inputs[1], &all_start, &all_limit);
            }
        }
        list_free(&expanded0);
        list_free(&expanded1);
        if (rc)
            return rc;
    }
    if (level + 2 < KV_MAX_LEVELS) {
        slice as = ikey_user_key(all_start), al = ikey_user_key(all_limit);
        if ((rc = overlapping_inputs(v, level + 2, &as, &al, &c->grandparents)))
            return rc;
    }
    buf *ptr = version_set_compact_pointer(c->vs, level);
    buf_clear(ptr);
    return buf_append(ptr, largest.data, largest.size);
}

/* ---- Tiered picking ------------------------------------------------------------------------- */

static int similar_size(uint64_t size, uint64_t mean, uint64_t small)
{
    if (size <= small && mean <= small)
        return 1;
    return size <= 2 * mean && 2 * size >= mean;
}

/* Finds the window of L0 runs to merge; returns its length (0: none) and start in *start. */
static int tiered_window(const version *v, const kv_options *opts, int *start)
{
    int n = v->nfiles[0];
    uint64_t small = opts->memtable_bytes ? opts->memtable_bytes : (UINT64_C(4) << 20);
    int best_len = 0;
    for (int i = 0; i < n; i++) {
        uint64_t sum = v->files[0][i]->size;
        int j = i + 1;
        while (j < n && j - i < TIERED_MAX_MERGE &&
               similar_size(v->files[0][j]->size, sum / (uint64_t)(j - i), small))
            sum += v->files[0][j++]->size;
        if (j - i >= TIERED_MIN_MERGE && j - i > best_len) {
            best_len = j - i;
            *start = i;
        }
    }
    if (best_len)
        return best_len;

    int max_runs = opts->l0_slowdown_trigger > 3 ? opts->l0_slowdown_trigger - 1 : 2;
    if (max_runs < l0_trigger(opts))
        max_runs = l0_trigger(opts);
    if (n < max_runs || n < 2)
        return 0;
    int len = n - max_runs + 2;
    if (len < TIERED_MIN_MERGE)
        len = TIERED_MIN_MERGE;
    if (len > n)
        len = n;
    uint64_t best_bytes = UINT64_MAX;
    for (int i = 0; i + len <= n; i++) {
        uint64_t sum = 0;
        for (int j = i; j < i + len; j++)
            sum += v->files[0][j]->size;
        if (sum < best_bytes) {
            best_bytes = sum;
            *start = i;
        }
    }
    return len;
}

static compaction *pick_tiered(version_set *vs)
{
    version *v = version_set_current(vs);
    int start = 0, len = tiered_window(v, version_set_get_ctx(vs)->opts, &start);
    if (len == 0)
        return NULL;
    compaction *c = compaction_new(vs, 0, 0);
    if (c == NULL)
        return NULL;
    c->tiered = 1;
    c->window_seq = v->files[0][start]->largest_seq;
    for (int i = 0; i < v->nfiles[0]; i++) {
        file_list *l = i < start ? NULL : i < start + len ? &c->inputs[0] : &c->older_runs;
        if (l && list_add(l, v->files[0][i])) {
            compaction_free(c);
            return NULL;
        }
    }
    return c;
}

compaction *version_set_merge_level0(version_set *vs)
{
    version *v = version_set_current(vs);
    if (v->nfiles[0] < 2)
        return NULL;
    compaction *c = compaction_new(vs, 0, 0);
    if (c == NULL)
        return NULL;
    c->tiered = 1; /* one uncut output run; tombstones kept while deeper levels hold the key */
    c->manual = 1;
    for (int i = 0; i < v->nfiles[0]; i++) {
        if (v->files[0][i]->largest_seq > c->window_seq)
            c->window_seq = v->files[0][i]->largest_seq;
        if (list_add(&c->inputs[0], v->files[0][i])) {
            compaction_free(c);
            return NULL;
        }
    }
    return c;
}

/* ---- Scores and picking ---------------------------------------------------------------------- */

void version_compute_score(version *v, const kv_options *opts)
{
    double best = -1;
    int best_level = -1;
    if (opts->compaction_style == KV_COMPACTION_TIERED) {
        int start = 0;
        double runs = (double)v->nfiles[0] / l0_trigger(opts);
        if (tiered_window(v, opts, &start))
            best = runs > 1 ? runs : 1;
        else
            best = runs < 0.99 ? runs : 0.99;
        v->compaction_score = best;
        v->compaction_level = 0;
        return;
    }
    for (int l = 0; l < KV_MAX_LEVELS - 1; l++) {
        double score;
        if (l == 0) {
            score = (double)v->nfiles[0] / l0_trigger(opts);
        } else {
            uint64_t bytes = 0;
            for (int i = 0; i < v->nfiles[l]; i++)
                bytes += v->files[l][i]->size;
            score = (double)bytes / (double)version_max_bytes_for_level(opts, l);
        }
        if (score > best) {
            best = score;
            best_level = l;
        }
    }
    v->compaction_score = best;
    v->compaction_level = best_level;
}

/* The level of v that holds f, or -1. */
static int seek_file_level(const version *v, const file_meta *f)
{
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        for (int i = 0; i < v->nfiles[l]; i++)
            if (v->files[l][i] == f)
                return l;
    return -1;
}

/* A leveled compaction of pick (a file of level) into level + 1: for L0 with every L0 table
 * overlapping it, bounded by the free space (bound_level0_inputs); then the next level's
 * inputs (setup_other_inputs). NULL if out of memory. */
static compaction *leveled_compaction(version_set *vs, int level, file_meta *pick)
{
    const version *v = version_set_current(vs);
    compaction *c = compaction_new(vs, level, level + 1);
    if (c == NULL)
        return NULL;
    int rc = list_add(&c->inputs[0], pick);
    if (rc == 0 && level == 0) {
        slice s = ikey_user_key(smallest_of(pick)), l = ikey_user_key(largest_of(pick));
        rc = overlapping_inputs(v, 0, &s, &l, &c->inputs[0]);
        if (rc == 0)
            rc = bound_level0_inputs(c);
    }
    if (rc == 0)
        rc = setup_other_inputs(c);
    if (rc) {
        compaction_free(c);
        return NULL;
    }
    return c;
}

compaction *version_set_pick_compaction(version_set *vs)
{
    const kv_options *opts = version_set_get_ctx(vs)->opts;
    if (opts->compaction_style == KV_COMPACTION_TIERED)
        return pick_tiered(vs);

    version *v = version_set_current(vs);
    int level;
    file_meta *pick = NULL;
    if (v->compaction_score >= 1 && v->compaction_level >= 0) {
        level = v->compaction_level;
        if (v->nfiles[level] == 0)
            return NULL; /* cannot happen: a score >= 1 needs files */
        /* Round robin: the first file after the key where the last compaction of this level
         * stopped, wrapping around to the start. */
        const buf *ptr = version_set_compact_pointer(vs, level);
        pick = v->files[level][0];
        for (int i = 0; ptr->len > 0 && i < v->nfiles[level]; i++) {
            if (ikey_compare(largest_of(v->files[level][i]), buf_slice(ptr)) > 0) {
                pick = v->files[level][i];
                break;
            }
        }
    } else {
        /* A table that lookups keep probing in vain (version.h, allowed_seeks). Asked once:
         * whatever happens, the mark is dropped so that the picker never spins on it. */
        file_meta *seek = __atomic_exchange_n(&v->seek_file, NULL, __ATOMIC_ACQ_REL);
        level = seek ? seek_file_level(v, seek) : -1;
        if (level < 0 || level + 1 >= KV_MAX_LEVELS)
            return NULL;
        pick = seek;
    }
    return leveled_compaction(vs, level, pick);
}

compaction *version_set_pick_reclaim(version_set *vs)
{
    const kv_options *opts = version_set_get_ctx(vs)->opts;
    version *v = version_set_current(vs);
    if (opts->compaction_style == KV_COMPACTION_TIERED || v->nfiles[0] == 0)
        return NULL;
    /* The oldest L0 table, with what overlaps it and fits (bound_level0_inputs). */
    return leveled_compaction(vs, 0, v->files[0][v->nfiles[0] - 1]);
}

compaction *version_set_compact_range(version_set *vs, int level, const slice *begin,
                                      const slice *end)
{
    if (level < 0 || level >= KV_MAX_LEVELS - 1)
        return NULL;
    version *v = version_set_current(vs);
    const slice *b = begin && begin->data ? begin : NULL;
    const slice *e = end && end->data ? end : NULL;
    file_list in = {0};
    if (overlapping_inputs(v, level, b, e, &in) || in.n == 0) {
        list_free(&in);
        return NULL;
    }
    compaction *c = compaction_new(vs, level, level + 1);
    if (c == NULL) {
        list_free(&in);
        return NULL;
    }
    c->manual = 1;
    c->inputs[0] = in;
    if (setup_other_inputs(c)) {
        compaction_free(c);
        return NULL;
    }
    return c;
}

int compaction_level(const compaction *c)
{
    return c->level;
}

int compaction_output_level(const compaction *c)
{
    return c->output_level;
}

int compaction_is_trivial_move(const compaction *c)
{
    uint64_t limit = GRANDPARENT_OVERLAP_FACTOR * c->max_output_size;
    return !c->manual && !c->tiered && c->inputs[0].n == 1 && c->inputs[1].n == 0 &&
           list_bytes(&c->grandparents) <= limit;
}

uint64_t compaction_input_bytes(const compaction *c)
{
    return list_bytes(&c->inputs[0]) + list_bytes(&c->inputs[1]);
}

/* ---- Running ------------------------------------------------------------------------------- */

/* 1 if no table older than the compaction's output may hold user_key. Keys arrive in
 * ascending order, so each deeper level is walked once. */
static int is_base_for_key(compaction *c, slice user_key)
{
    for (int i = 0; i < c->older_runs.n; i++) {
        const file_meta *f = c->older_runs.f[i];
        if (slice_compare(user_key, ikey_user_key(smallest_of(f))) >= 0 &&
            slice_compare(user_key, ikey_user_key(largest_of(f))) <= 0)
            return 0;
    }
    for (int l = 1; l < KV_MAX_LEVELS; l++) {
        while (c->level_ptrs[l] < c->deeper[l].n) {
            const file_meta *f = c->deeper[l].f[c->level_ptrs[l]];
            if (slice_compare(user_key, ikey_user_key(largest_of(f))) <= 0) {
                if (slice_compare(user_key, ikey_user_key(smallest_of(f))) >= 0)
                    return 0;
                break;
            }
            c->level_ptrs[l]++;
        }
    }
    return 1;
}

/* Advances the grandparent cursor to ikey; 1 if the current output already overlaps enough
 * grandparent bytes that it should end before ikey. */
static int should_stop_before(compaction *c, slice ikey)
{
    while (c->gp_index < c->grandparents.n &&
           ikey_compare(ikey, largest_of(c->grandparents.f[c->gp_index])) > 0) {
        if (c->gp_seen_key)
            c->gp_overlap += c->grandparents.f[c->gp_index]->size;
        c->gp_index++;
    }
    c->gp_seen_key = 1;
    if (c->gp_overlap > GRANDPARENT_OVERLAP_FACTOR * c->max_output_size) {
        c->gp_overlap = 0;
        return 1;
    }
    return 0;
}

static void sst_options_from(const kv_options *o, sst_options *so)
{
    memset(so, 0, sizeof *so);
    so->block_size = o->block_size ? o->block_size : 4096;
    so->restart_interval = 16;
    so->compression = o->compression;
    so->compression_level = o->compression_level;
    so->bloom_bits_per_key = o->bloom_bits_per_key;
}

/* A table being written: temp file, builder and key range. */
typedef struct table_out {
    const char *dir;
    const kv_env *env;
    uint64_t number;
    env_file *f;
    sst_builder *b;
    file_meta meta; /* smallest, largest, largest_seq; size once finished */
} table_out;

static int out_open(table_out *o, const char *dir, const kv_env *env, const kv_options *opts,
                    uint64_t number)
{
    memset(o, 0, sizeof *o);
    o->dir = dir;
    o->env = env;
    o->number = number;
    o->meta.number = number;
    sst_options so;
    sst_options_from(opts, &so);
    size_t plen = strlen(dir) + FILENAME_MAX_LEN;
    char tmp[plen];
    filename_temp(tmp, plen, dir, number);
    int rc = env->open_writable(env, tmp, &o->f);
    if (rc)
        return rc;
    rc = sst_builder_new(o->f, &so, &o->b);
    if (rc) {
        env_close(o->f);
        o->f = NULL;
        env->unlink(env, tmp);
    }
    return rc;
}

static int out_add(table_out *o, slice ikey, uint64_t seq, slice value)
{
    int rc = sst_builder_add(o->b, ikey, value);
    if (rc)
        return rc;
    if (o->meta.smallest.len == 0 && (rc = buf_append(&o->meta.smallest, ikey.data, ikey.size)))
        return rc;
    buf_clear(&o->meta.largest);
    if ((rc = buf_append(&o->meta.largest, ikey.data, ikey.size)))
        return rc;
    if (seq > o->meta.largest_seq)
        o->meta.largest_seq = seq;
    return 0;
}

/* Finishes, syncs, closes and renames the table into place (no directory sync). */
static int out_finish(table_out *o)
{
    size_t plen = strlen(o->dir) + FILENAME_MAX_LEN;
    char tmp[plen], path[plen];
    filename_temp(tmp, plen, o->dir, o->number);
    filename_table(path, plen, o->dir, o->number);
    int rc = sst_builder_finish(o->b);
    o->meta.size = sst_builder_file_size(o->b);
    sst_builder_free(o->b);
    o->b = NULL;
    if (rc == 0)
        rc = env_sync(o->f);
    int crc = env_close(o->f);
    o->f = NULL;
    if (rc == 0)
        rc = crc;
    if (rc == 0)
        rc = o->env->rename(o->env, tmp, path);
    if (rc)
        o->env->unlink(o->env, tmp);
    return rc;
}

/* Drops an unfinished table (temp file included) and frees o's memory. */
static void out_abandon(table_out *o)
{
    if (o->b) {
        size_t plen = strlen(o->dir) + FILENAME_MAX_LEN;
        char tmp[plen];
        sst_builder_free(o->b);
        env_close(o->f);
        filename_temp(tmp, plen, o->dir, o->number);
        o->env->unlink(o->env, tmp);
        o->b = NULL;
        o->f = NULL;
    }
    buf_free(&o->meta.smallest);
    buf_free(&o->meta.largest);
}

/* Opens table `number` through the table cache, proving it readable. */
static int verify_table(table_cache *tc, uint64_t number, uint64_t size)
{
    iter *it = table_cache_iter_new(tc, number, size, 0);
    if (it == NULL)
        return KV_ENOMEM;
    int rc = iter_status(it);
    iter_free(it);
    return rc;
}

static int add_output(compaction *c, table_out *o)
{
    if (c->n_outputs == c->cap_outputs) {
        int cap = c->cap_outputs ? c->cap_outputs * 2 : 4;
        file_meta **a = realloc(c->outputs, (size_t)cap * sizeof *a);
        if (a == NULL)
            return KV_ENOMEM;
        c->outputs = a;
        c->cap_outputs = cap;
    }
    file_meta *m = calloc(1, sizeof *m);
    if (m == NULL)
        return KV_ENOMEM;
    *m = o->meta; /* takes the key buffers */
    memset(&o->meta, 0, sizeof o->meta);
    c->outputs[c->n_outputs++] = m;
    c->step_output += m->size;
    return 0;
}

/* Forgets table `number` in the table cache and deletes its file (called without mu). */
static void delete_table_file(const version_set_ctx *ctx, uint64_t number)
{
    size_t plen = strlen(ctx->dir) + FILENAME_MAX_LEN;
    char path[plen];
    table_cache_evict(ctx->tc, number);
    filename_table(path, plen, ctx->dir, number);
    int rc = ctx->env->unlink(ctx->env, path);
    if (rc && rc != KV_ENOTFOUND)
        kv_log(ctx->log, KV_LOG_WARN, "cannot delete table %06" PRIu64 ".sst: %s", number,
               kv_strerror(rc));
}

/* Deletes the outputs written but not installed (called without mu). Outputs a failed
 * step may have recorded in the manifest are left to the db's sweep of obsolete files. */
static void delete_outputs(compaction *c)
{
    const version_set_ctx *ctx = version_set_get_ctx(c->vs);
    if (c->install_failed)
        return;
    for (int i = c->n_installed; i < c->n_outputs; i++) {
        file_meta *m = c->outputs[i];
        delete_table_file(ctx, m->number);
        pthread_mutex_lock(ctx->mu);
        version_set_remove_pending_output(c->vs, m->number);
        pthread_mutex_unlock(ctx->mu);
        buf_free(&m->smallest);
        buf_free(&m->largest);
        free(m);
    }
    c->n_outputs = c->n_installed;
}

static iter *input_iterator(compaction *c)
{
    table_cache *tc = version_set_get_ctx(c->vs)->tc;
    int cap = c->inputs[0].n + 1, n = 0;
    iter **children = calloc((size_t)cap, sizeof *children);
    if (children == NULL)
        return NULL;
    if (c->level == 0) {
        for (int i = 0; i < c->inputs[0].n; i++) {
            const file_meta *f = c->inputs[0].f[i];
            if ((children[n++] = table_cache_iter_new(tc, f->number, f->size, 0)) == NULL)
                goto nomem;
        }
    } else if ((children[n++] = version_concat_iter_new(tc, c->inputs[0].f, c->inputs[0].n, 0)) ==
               NULL) {
        goto nomem;
    }
    if (c->inputs[1].n > 0 &&
        (children[n++] = version_concat_iter_new(tc, c->inputs[1].f, c->inputs[1].n, 0)) == NULL)
        goto nomem;
    iter *m = merger_new(children, n); /* frees the children if it fails */
    free(children);
    return m;
nomem:
    for (int i = 0; i < n; i++)
        iter_free(children[i]);
    free(children);
    return NULL;
}

/* ---- Installing in steps (see "Bounded headroom" at the top) ------------------------------ */

static int cmp_smallest(const void *a, const void *b)
{
    const file_meta *x = *(file_meta *const *)a, *y = *(file_meta *const *)b;
    return ikey_compare(smallest_of(x), smallest_of(y));
}

/* Prepares compaction_run (input version referenced): the lists of levels >= 1 in key order,
 * and the levels below the output copied for is_base_for_key, which must keep working after
 * the input version is released. */
static int prepare_run(compaction *c)
{
    const version *v = c->input_version;
    c->incremental = !c->tiered;
    for (int w = 0; w < 2; w++)
        if (c->level + w >= 1 && c->inputs[w].n > 1)
            qsort(c->inputs[w].f, (size_t)c->inputs[w].n, sizeof *c->inputs[w].f, cmp_smallest);
    int first = c->tiered ? 1 : c->output_level + 1;
    for (int l = first; l < KV_MAX_LEVELS; l++) {
        for (int i = 0; i < v->nfiles[l]; i++) {
            int rc = list_add(&c->deeper[l], v->files[l][i]);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Applies fn (version_file_ref or _unref) to every file of the compaction's lists. mu held. */
static void for_each_file(compaction *c, void (*fn)(file_meta *))
{
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < c->inputs[w].n; i++)
            fn(c->inputs[w].f[i]);
    for (int i = 0; i < c->grandparents.n; i++)
        fn(c->grandparents.f[i]);
    for (int i = 0; i < c->older_runs.n; i++)
        fn(c->older_runs.f[i]);
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        for (int i = 0; i < c->deeper[l].n; i++)
            fn(c->deeper[l].f[i]);
}

/* The merge is at user_key: marks the input tables of levels >= 1 whose keys all lie before
 * it as reached. Returns 1 if a step may be installed here: some reached input is still in
 * the version, and user_key is not past the smallest key of the first output-level input not
 * reached (the outputs so far, all below user_key, then end before it). */
static int step_possible(compaction *c, slice user_key)
{
    for (int w = c->level == 0 ? 1 : 0; w < 2; w++) {
        const file_list *l = &c->inputs[w];
        while (c->reached[w] < l->n &&
               slice_compare(user_key, ikey_user_key(largest_of(l->f[c->reached[w]]))) > 0)
            c->step_input += l->f[c->reached[w]++]->size;
    }
    if (c->reached[0] == c->passed[0] && c->reached[1] == c->passed[1])
        return 0;
    const file_list *below = &c->inputs[1];
    return c->reached[1] == below->n ||
           slice_compare(user_key, ikey_user_key(smallest_of(below->f[c->reached[1]]))) <= 0;
}

#ifndef NDEBUG
/* The invariants above, for debug builds: 1 if they hold. */
static int compaction_check_invariants(const compaction *c)
{
    for (int w = 0; w < 2; w++)
        if (c->passed[w] > c->reached[w] || c->reached[w] > c->inputs[w].n ||
            (c->level + w == 0 && c->reached[w] != 0))
            return 0;
    if (c->n_installed > c->n_outputs)
        return 0;
    if (c->n_installed > 0 && c->passed[1] < c->inputs[1].n &&
        slice_compare(ikey_user_key(largest_of(c->outputs[c->n_installed - 1])),
                      ikey_user_key(smallest_of(c->inputs[1].f[c->passed[1]]))) >= 0)
        return 0;
    return c->input_version != NULL || c->holds_file_refs;
}
#endif

/* One step: syncs the directory, proves the new outputs readable, and installs them while
 * deleting the reached inputs in one version edit; then deletes those inputs' files unless an
 * older version still uses them. The open output must be finished. Called without mu. */
static int install_step(compaction *c)
{
    const version_set_ctx *ctx = version_set_get_ctx(c->vs);
    int rc = 0;
    if (c->n_outputs > c->n_installed)
        rc = ctx->env->sync_dir(ctx->env, ctx->dir);
    for (int i = c->n_installed; rc == 0 && i < c->n_outputs; i++)
        rc = verify_table(ctx->tc, c->outputs[i]->number, c->outputs[i]->size);
    version_edit e;
    version_edit_init(&e);
    for (int w = 0; rc == 0 && w < 2; w++)
        for (int i = c->passed[w]; rc == 0 && i < c->reached[w]; i++)
            rc = version_edit_delete_file(&e, c->level + w, c->inputs[w].f[i]->number);
    for (int i = c->n_installed; rc == 0 && i < c->n_outputs; i++)
        rc = version_edit_add_file_meta(&e, c->output_level, c->outputs[i]);
    if (rc) {
        version_edit_free(&e);
        return rc;
    }
    uint64_t *live = NULL;
    size_t nlive = 0;
    pthread_mutex_lock(ctx->mu);
    if (!c->holds_file_refs) {
        for_each_file(c, version_file_ref);
        c->holds_file_refs = 1;
    }
    rc = version_set_log_and_apply(c->vs, &e);
    if (rc == 0) {
        for (int i = c->n_installed; i < c->n_outputs; i++)
            version_set_remove_pending_output(c->vs, c->outputs[i]->number);
        c->n_installed = c->n_outputs;
        if (c->input_version) {
            version_unref(c->input_version); /* its files may now become obsolete */
            c->input_version = NULL;
        }
        if (version_set_live_files(c->vs, &live, &nlive)) {
            free(live); /* out of memory: the db's sweep deletes the files later */
            live = NULL;
        }
    } else {
        c->install_failed = 1;
    }
    pthread_mutex_unlock(ctx->mu);
    version_edit_free(&e);
    if (rc)
        return rc;
    for (int w = 0; w < 2; w++) {
        for (; c->passed[w] < c->reached[w]; c->passed[w]++) {
            uint64_t number = c->inputs[w].f[c->passed[w]]->number;
            int in_use = 0;
            for (size_t i = 0; live && i < nlive && !in_use; i++)
                in_use = live[i] == number;
            if (live && !in_use)
                delete_table_file(ctx, number);
        }
    }
    free(live);
    c->step_input = 0;
    c->step_output = 0;
    assert(compaction_check_invariants(c));
    return 0;
}

void compaction_set_drop_hook(compaction *c, void (*fn)(void *ctx, slice value), void *ctx)
{
    c->on_drop = fn;
    c->on_drop_ctx = ctx;
}

int compaction_run(compaction *c, uint64_t smallest_snapshot, const volatile int *shutting_down,
                   compaction_stats *st)
{
    const version_set_ctx *ctx = version_set_get_ctx(c->vs);
    compaction_stats local = {0, 0, 0};
    if (st == NULL)
        st = &local;
    memset(st, 0, sizeof *st);
    if (c->ran)
        return KV_EINVAL; /* cannot happen: run twice */
    if (compaction_is_trivial_move(c)) {
        c->ran = 1;
        return 0;
    }
    memset(c->level_ptrs, 0, sizeof c->level_ptrs);
    int prc = prepare_run(c);
    if (prc)
        return prc;
    c->gp_index = 0;
    c->gp_seen_key = 0;
    c->gp_overlap = 0;
    st->bytes_read = compaction_input_bytes(c);

    iter *in = input_iterator(c);
    if (in == NULL)
        return KV_ENOMEM;

    table_out out;
    int out_open_now = 0, rc = 0, stop_pending = 0, has_user_key = 0;
    uint64_t last_seq_for_key = 0, unlisted_number = 0; /* pending, not yet in outputs */
    buf cur_user_key;
    buf_init(&cur_user_key);
    memset(&out, 0, sizeof out);

    for (iter_seek_first(in); iter_valid(in); iter_next(in)) {
        if (shutting_down && __atomic_load_n(shutting_down, __ATOMIC_ACQUIRE)) {
            rc = KV_ECLOSED;
            break;
        }
        slice key = iter_key(in);
        ikey_parsed p;
        if (!ikey_parse(key, &p)) {
            kv_log(ctx->log, KV_LOG_ERROR,
                   "compaction of level %d: an input entry has a malformed internal key "
                   "(%zu bytes)",
                   c->level, key.size);
            rc = KV_ECORRUPT;
            break;
        }
        if (!c->tiered && c->grandparents.n)
            stop_pending |= should_stop_before(c, key);

        int new_key = !has_user_key || !slice_equal(p.user_key, buf_slice(&cur_user_key));
        if (new_key) {
            buf_clear(&cur_user_key);
            if ((rc = buf_append(&cur_user_key, p.user_key.data, p.user_key.size)))
                break;
            has_user_key = 1;
            last_seq_for_key = UINT64_MAX; /* no newer entry of this key seen yet */
            uint64_t open_bytes = out_open_now ? sst_builder_file_size(out.b) : 0;
            if (c->incremental && step_possible(c, p.user_key) &&
                c->step_input + c->step_output + open_bytes >= c->max_output_size / 2) {
                if (out_open_now) {
                    out_open_now = 0;
                    if ((rc = out_finish(&out)) || (rc = add_output(c, &out)))
                        break;
                    unlisted_number = 0;
                    st->bytes_written += c->outputs[c->n_outputs - 1]->size;
                }
                if ((rc = install_step(c)))
                    break;
            }
        }
        int drop = 0;
        if (last_seq_for_key <= smallest_snapshot)
            drop = 1; /* a newer entry of the key is visible to every snapshot */
        else if (p.type == IKEY_TYPE_DELETION && p.sequence <= smallest_snapshot &&
                 is_base_for_key(c, p.user_key))
            drop = 1; /* nothing older below, and no snapshot sees what it hid */
        last_seq_for_key = p.sequence;
        if (drop) {
            st->entries_dropped++;
            if (c->on_drop && p.type == IKEY_TYPE_VALUE)
                c->on_drop(c->on_drop_ctx, iter_value(in));
            continue;
        }

        /* Cut the output only between user keys, so a user key never straddles tables. */
        if (out_open_now && !c->tiered &&
            !slice_equal(p.user_key, ikey_user_key(buf_slice(&out.meta.largest))) &&
            (stop_pending || sst_builder_file_size(out.b) >= c->max_output_size)) {
            out_open_now = 0;
            if ((rc = out_finish(&out)) || (rc = add_output(c, &out)))
                break;
            unlisted_number = 0;
            st->bytes_written += c->outputs[c->n_outputs - 1]->size;
        }
        if (!out_open_now) {
            stop_pending = 0;
            pthread_mutex_lock(ctx->mu);
            uint64_t number = version_set_new_file_number(c->vs);
            rc = version_set_add_pending_output(c->vs, number);
            pthread_mutex_unlock(ctx->mu);
            if (rc)
                break;
            unlisted_number = number;
            if ((rc = out_open(&out, ctx->dir, ctx->env, ctx->opts, number)))
                break;
            out_open_now = 1;
        }
        if ((rc = out_add(&out, key, p.sequence, iter_value(in))))
            break;
    }
    if (rc == 0)
        rc = iter_status(in);
    if (rc == 0 && out_open_now) {
        out_open_now = 0;
        rc = out_finish(&out);
        if (rc == 0)
            rc = add_output(c, &out);
        if (rc == 0) {
            unlisted_number = 0;
            st->bytes_written += c->outputs[c->n_outputs - 1]->size;
        }
    }
    iter_free(in);
    buf_free(&cur_user_key);
    if (out_open_now || rc)
        out_abandon(&out);
    if (rc == 0 && c->n_outputs > c->n_installed)
        rc = ctx->env->sync_dir(ctx->env, ctx->dir);
    for (int i = c->n_installed; rc == 0 && i < c->n_outputs; i++)
        rc = verify_table(ctx->tc, c->outputs[i]->number, c->outputs[i]->size);
    if (rc) {
        if (rc != KV_ECLOSED)
            kv_log(ctx->log, KV_LOG_ERROR, "compaction of level %d into level %d failed: %s",
                   c->level, c->output_level, kv_strerror(rc));
        delete_outputs(c);
        if (unlisted_number) {
            delete_table_file(ctx, unlisted_number);
            pthread_mutex_lock(ctx->mu);
            version_set_remove_pending_output(c->vs, unlisted_number);
            pthread_mutex_unlock(ctx->mu);
        }
        return rc;
    }
    c->ran = 1;
    return 0;
}

int compaction_install(compaction *c)
{
    if (!c->ran && !compaction_is_trivial_move(c))
        return KV_EINVAL; /* cannot happen: install before a successful run */
    assert(compaction_check_invariants(c));
    version_edit e;
    version_edit_init(&e);
    int rc = 0;
    if (compaction_is_trivial_move(c)) {
        file_meta *f = c->inputs[0].f[0];
        rc = version_edit_delete_file(&e, c->level, f->number);
        if (rc == 0)
            rc = version_edit_add_file_meta(&e, c->level + 1, f);
    } else {
        /* What the steps of compaction_run have not installed yet. */
        for (int w = 0; rc == 0 && w < 2; w++)
            for (int i = c->passed[w]; rc == 0 && i < c->inputs[w].n; i++)
                rc = version_edit_delete_file(&e, c->level + w, c->inputs[w].f[i]->number);
        for (int i = c->n_installed; rc == 0 && i < c->n_outputs; i++) {
            file_meta *m = c->outputs[i];
            if (c->tiered)
                m->largest_seq = c->window_seq; /* keeps the window's place among the runs */
            rc = version_edit_add_file_meta(&e, c->output_level, m);
        }
    }
    if (rc == 0)
        rc = version_set_log_and_apply(c->vs, &e);
    version_edit_free(&e);
    if (rc == 0) {
        for (int i = c->n_installed; i < c->n_outputs; i++)
            version_set_remove_pending_output(c->vs, c->outputs[i]->number);
        c->n_installed = c->n_outputs;
    }
    return rc;
}

void compaction_free(compaction *c)
{
    if (c == NULL)
        return;
    /* Outputs of a compaction that was not installed stay pending until now: after a failed
     * install their fate is unknown, and the caller decides (see version_set_log_and_apply). */
    for (int i = 0; i < c->n_outputs; i++) {
        if (i >= c->n_installed)
            version_set_remove_pending_output(c->vs, c->outputs[i]->number);
        buf_free(&c->outputs[i]->smallest);
        buf_free(&c->outputs[i]->largest);
        free(c->outputs[i]);
    }
    free(c->outputs);
    if (c->holds_file_refs)
        for_each_file(c, version_file_unref);
    list_free(&c->inputs[0]);
    list_free(&c->inputs[1]);
    list_free(&c->grandparents);
    list_free(&c->older_runs);
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        list_free(&c->deeper[l]);
    if (c->input_version)
        version_unref(c->input_version);
    free(c);
}

/* ---- Flushes ---------------------------------------------------------------------------- */

int table_build(const char *dir, const kv_env *env, const kv_options *opts, table_cache *tc,
                iter *it, uint64_t number, file_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    buf_init(&meta->smallest);
    buf_init(&meta->largest);
    meta->number = number;
    iter_seek_first(it);
    if (!iter_valid(it))
        return iter_status(it);

    table_out o;
    int rc = out_open(&o, dir, env, opts, number);
    if (rc)
        return rc;
    for (; rc == 0 && iter_valid(it); iter_next(it)) {
        ikey_parsed p;
        slice key = iter_key(it);
        if (!ikey_parse(key, &p)) {
            rc = KV_ECORRUPT; /* cannot happen: memtables hold only keys they made */
            break;
        }
        rc = out_add(&o, key, p.sequence, iter_value(it));
    }
    if (rc == 0)
        rc = iter_status(it);
    if (rc == 0)
        rc = out_finish(&o);
    if (rc == 0)
        rc = env->sync_dir(env, dir);
    if (rc == 0)
        rc = verify_table(tc, number, o.meta.size);
    if (rc) {
        size_t plen = strlen(dir) + FILENAME_MAX_LEN;
        char path[plen];
        out_abandon(&o);
        table_cache_evict(tc, number);
        filename_table(path, plen, dir, number);
        env->unlink(env, path);
        return rc;
    }
    *meta = o.meta;
    return 0;
}
