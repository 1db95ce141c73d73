/* fault_env.h - a kv_env over env_posix() that simulates power loss and injects I/O faults.
 *
 * Writes go straight to the real files; the env remembers, per file, how many bytes are
 * durable (covered by a sync) and which creates, renames and unlinks have not yet been made
 * durable by a sync_dir of their directory. fault_env_crash() then rewrites the directory into
 * what a disk could hold after power loss at that instant:
 *   - every file tracked is cut back to its durable length (DROP), or to its durable length
 *     plus a random prefix of its unsynced tail (TEAR: the last write was torn), or keeps a
 *     random subset of the 4 KiB pages of its unsynced tail, lost pages reading as zeros,
 *     with a size anywhere from the durable length to the full length (PAGES: the kernel wrote
 *     back some dirty pages, in any order, and maybe the new size); MIXED picks one of the
 *     three for each file independently, so unsynced writes are also reordered across files;
 *   - pending directory operations are undone, newest first: a file created but never
 *     dir-synced disappears; a rename is undone (the old target, if it was saved, comes back);
 *     an unlinked file comes back with its durable contents (saved when small enough). With
 *     fault_env_set_random_dir_ops() each one is instead kept or undone at random (operations
 *     on one name stay in order: an operation is kept if a later one on any of its names is).
 * Files the env never wrote (present before it was used) count as durable.
 *
 * Faults: fail the Nth operation of a kind with a chosen error (optionally for several ops),
 * fail every append once a byte budget is spent (ENOSPC, lifted by raising the budget), halt
 * all mutating I/O after N more mutating operations (the process died mid-flush or
 * mid-compaction: nothing more reaches the disk), and flip a bit in a file.
 *
 * Deterministic given the seed (only TEAR, PAGES, MIXED and random dir ops use randomness).
 * Threads: every function and the env itself may be used from any thread; mutating I/O is
 * serialised by one mutex.
 *
 * A typical crash test: fault_env_halt(fe); kv_close(db) (it may report errors);
 * fault_env_crash(fe, FAULT_CRASH_DROP_UNSYNCED); kv_open(... same env ...).
 */
#ifndef KV_FAULT_ENV_H
#define KV_FAULT_ENV_H

#include <stddef.h>
#include <stdint.h>
#include "util/env.h"

typedef struct fault_env fault_env;

enum fault_crash_mode {
    FAULT_CRASH_DROP_UNSYNCED = 0, /* lose every byte after the last sync */
    FAULT_CRASH_TEAR_UNSYNCED = 1, /* keep a random prefix of the unsynced tail */
    FAULT_CRASH_LOSE_PAGES = 2,    /* added: keep a random subset of the unsynced pages */
    FAULT_CRASH_MIXED = 3,         /* added: one of the three above, per file at random */
};

/* Kinds of operation, for counters and fault rules. */
enum fault_op {
    FAULT_OP_OPEN_WRITABLE = 0,
    FAULT_OP_OPEN_APPENDABLE,
    FAULT_OP_OPEN_READABLE,
    FAULT_OP_READ,
    FAULT_OP_APPEND,
    FAULT_OP_SYNC,
    FAULT_OP_CLOSE,
    FAULT_OP_RENAME,
    FAULT_OP_UNLINK,
    FAULT_OP_MKDIR,
    FAULT_OP_RMDIR,
    FAULT_OP_SYNC_DIR,
    FAULT_OP_LIST_DIR,
    FAULT_OP_PREALLOCATE, /* added: kv_env.preallocate (a mutating operation) */
    FAULT_OP_COUNT
};

typedef struct fault_env_counters {
    uint64_t ops[FAULT_OP_COUNT]; /* calls of each kind, including failed ones */
    uint64_t bytes_appended;      /* bytes appended successfully */
    uint64_t bytes_synced;        /* bytes that became durable through sync */
    uint64_t faults_injected;     /* operations failed on purpose (rules, budget, halt) */
    uint64_t crashes;
    /* Added: what crashes did. */
    uint64_t files_cut;      /* files that lost unsynced bytes */
    uint64_t pages_lost;     /* unsynced pages zeroed inside a file (PAGES) */
    uint64_t dir_ops_undone; /* creates/renames/unlinks undone */
    uint64_t dir_ops_kept;   /* ... kept although never dir-synced (random dir ops) */
} fault_env_counters;

/* Creates a fault env wrapping env_posix(). NULL if out of memory. Free with fault_env_free()
 * after every kv_db using it is closed. */
fault_env *fault_env_new(uint64_t seed);
void fault_env_free(fault_env *fe);

/* Borrowed: the table to put in kv_options.env; valid until fault_env_free(). */
const kv_env *fault_env_env(fault_env *fe);

/* Simulates power loss now (see the top of this file). Every handle opened before the call
 * fails from then on with KV_EIO (close still frees it); halts and fault rules are cleared,
 * the byte budget is kept; afterwards the env is ready for a reopen of the store. Returns 0,
 * or -1 if the real file system refused to be rewritten (a test setup problem). */
int fault_env_crash(fault_env *fe, enum fault_crash_mode mode);

/* Makes operations number nth .. nth+count-1 of kind op, counted from this call (nth >= 1),
 * fail with err (a KV_E* code) without touching the disk. count 0 means "and every later
 * one". A new rule for the same kind replaces the old one. */
void fault_env_fail_op(fault_env *fe, enum fault_op op, uint64_t nth, uint64_t count, int err);
/* Removes every fail_op rule. */
void fault_env_clear_rules(fault_env *fe);

/* Appends fail with KV_ENOSPC (writing nothing) once more than `bytes` bytes would have been
 * appended in total since this call. UINT64_MAX lifts the limit. Added, to model a disk
 * whose free space was `bytes` at this call: a file's bytes unlinked, renamed over or
 * truncated by open_writable are free again (bytes appended since the call stop counting;
 * older ones raise the limit); preallocate counts the bytes it adds to a file (KV_ENOSPC,
 * changing nothing, when they do not fit); free_space reports limit - used while a limit is
 * set, else the real file system's figures. */
void fault_env_set_space_limit(fault_env *fe, uint64_t bytes);

/* After `n` more mutating operations (open_writable/appendable, append, sync, rename, unlink,
 * mkdir, rmdir, sync_dir) succeed, every further mutating operation fails with KV_EIO and
 * changes nothing. n == 0 halts now. Reads keep working. Cleared by fault_env_crash(). */
void fault_env_halt_after(fault_env *fe, uint64_t n);
void fault_env_halt(fault_env *fe);
/* 1 if the env is halted (the halt point was reached). */
int fault_env_halted(fault_env *fe);

/* on = 1 models file systems (ext4, xfs in practice) where fsync of a newly created file also
 * commits its directory entry, so a synced file survives a crash without a sync_dir. The
 * default (0) is the POSIX rule the engine must be written for: only sync_dir makes a create
 * durable. Meant for looking past a known bug of that kind; tests run strict. */
void fault_env_set_create_durable_on_sync(fault_env *fe, int on);

/* on = 1: at a crash, each create/rename/unlink not made durable by a sync_dir is kept or
 * undone at random (see the top of this file), as a file system may commit some directory
 * changes before the power fails and not others. The default (0) undoes them all. Added. */
void fault_env_set_random_dir_ops(fault_env *fe, int on);

/* Flips bit `bit` (0-7) of the byte at `offset` in path, directly on disk (not counted as an
 * operation and not tracked). Returns 0, or -1 if the file cannot be read or is too short. */
int fault_env_flip_bit(fault_env *fe, const char *path, uint64_t offset, int bit);

/* Copies the counters out (a consistent snapshot). */
void fault_env_get_counters(fault_env *fe, fault_env_counters *c);
/* Number of mutating operations done so far (what halt_after counts). */
uint64_t fault_env_mutations(fault_env *fe);

/* Bytes of path known durable, or -1 if the env does not track it (untouched: all durable). */
int64_t fault_env_durable_size(fault_env *fe, const char *path);

#endif /* KV_FAULT_ENV_H */
