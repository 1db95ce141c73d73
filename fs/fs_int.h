/* fs_int.h - internals shared by the kvfs logic modules (core, inode, dir, file, xattr, fsck).
 *
 * Invariants (checked by fsck; see fs/SCHEMA.md):
 *  1. Every dirent names an existing inode whose type matches the dirent's type.
 *  2. A non-directory's nlink equals the number of dirents naming it; a directory has exactly
 *     one dirent (in dir `parent`) and nlink 2 + its subdirectories (root: no dirent).
 *  3. An inode with nlink 0 has an 'O' orphan key; it is deleted with its chunks and xattrs once
 *     no lookup reference and no open remains (or at the next mount).
 *  4. No chunk of a file lies at or beyond its size, and a chunk's stored length never reaches
 *     past the size; stored = the sum of its chunks' lengths.
 *  5. Inode numbers are never reused: every number handed out is below the superblock's limit.
 *
 * Lock order (never take an earlier lock while holding a later one):
 *   rename_mu  ->  inode stripe locks, in ascending stripe index  ->  itab_mu  ->  alloc_mu
 * A stripe lock protects the inode record and, for a directory, its dirents: every
 * read-modify-write of an 'I' key or change under a 'D' prefix holds that inode's stripe.
 */
#ifndef KVFS_FS_INT_H
#define KVFS_FS_INT_H

#include "chunkcache.h"
#include "dircache.h"
#include "fs.h"
#include "fslog.h"
#include "schema.h"

#include <pthread.h>

#define FS_NSTRIPES 256
/* Initial bucket count of the reference table (a power of two); it doubles as it fills. */
#define FS_ITAB_BUCKETS 4096

struct fs_iref {
    uint64_t ino;
    uint64_t nlookup; /* protected by itab_mu */
    uint64_t nopen;   /* protected by itab_mu */
    int unlinked;     /* protected by itab_mu: seen with nlink 0 (fs_itab_mark_unlinked) */
    struct fs_iref *next;
};

struct fs {
    kv_db *db;
    struct fs_config cfg;
    uint32_t chunk_size;
    int opened;         /* fs_open() completed */
    int kernel_times;   /* writes leave mtime/ctime to the kernel (writeback cache) */
    struct fs_super sb; /* protected by alloc_mu */
    uint64_t next_ino;  /* protected by alloc_mu */

    pthread_mutex_t rename_mu; /* serialises renames between different directories */
    pthread_mutex_t stripes[FS_NSTRIPES];
    pthread_mutex_t itab_mu;
    struct fs_iref **itab; /* protected by itab_mu: 2^itab_bits chains */
    unsigned itab_bits;    /* protected by itab_mu */
    size_t itab_count;     /* protected by itab_mu: entries in the table */
    pthread_mutex_t alloc_mu;
    pthread_mutex_t dirs_mu; /* a leaf lock: nothing is taken while holding it */
    struct fs_dir *dirs;     /* protected by dirs_mu: open directory streams (readdir.c) */
    struct fs_cc *cc;        /* recently read chunks (chunkcache.h); NULL: none */
    struct fs_dc *dc;        /* directory listings (dircache.h); NULL: none */
};

/* ---- Directory streams (readdir.c) ------------------------------------------------------- */

/* Closes every directory stream still open, releasing its snapshot and iterator (kv_close
 * requires that): a daemon stopped by a signal gets no releasedir for the directories that
 * are open. For fs_close/fs_abandon only: no other call on fs may be running. */
void fs_closedir_all(struct fs *fs);

/* ---- Locks (core.c) ----------------------------------------------------------------------- */

#define FS_LOCKSET_MAX 4

struct fs_lockset {
    int n;
    int idx[FS_LOCKSET_MAX]; /* stripe indexes held, ascending, distinct */
};

/* Locks the stripes of up to FS_LOCKSET_MAX inodes (0 entries are skipped) in stripe order. */
void fs_lock_inos(struct fs *fs, struct fs_lockset *ls, const uint64_t *inos, int n);
void fs_unlock_set(struct fs *fs, struct fs_lockset *ls);
/* Adds the stripes of up to FS_LOCKSET_MAX - ls->n inodes (0 entries skipped) to ls without
 * waiting: trylock only, so the lock order may be broken without risk of deadlock. Returns 0
 * with every stripe held, or -EAGAIN with ls as it was (nothing more held). */
int fs_lockset_try_add(struct fs *fs, struct fs_lockset *ls, const uint64_t *inos, int n);
/* True if the stripe of ino is held in ls. */
int fs_lockset_covers(const struct fs_lockset *ls, uint64_t ino);
void fs_lock_ino(struct fs *fs, uint64_t ino);
/* The stripe index of ino (0..FS_NSTRIPES-1): which lock fs_lock_ino takes. */
int fs_stripe_of(uint64_t ino);
void fs_unlock_ino(struct fs *fs, uint64_t ino);

/* ---- In-memory reference table (core.c) --------------------------------------------------- */

/* Adds lookup references / opens. Returns -ENOMEM if no table entry could be made. */
int fs_itab_add(struct fs *fs, uint64_t ino, uint64_t nlookup, uint64_t nopen);
/* Drops references; returns 0 if ino is still referenced, else (entry removed)
 * FS_ITAB_GONE_UNLINKED if it was marked by fs_itab_mark_unlinked() (or was not in the table),
 * FS_ITAB_GONE if not: then its link count was never seen at 0 while referenced, and only a
 * caller that may have dropped the last link itself needs to look. */
int fs_itab_drop(struct fs *fs, uint64_t ino, uint64_t nlookup, uint64_t nopen);
#define FS_ITAB_GONE 1
#define FS_ITAB_GONE_UNLINKED 2
int fs_itab_referenced(struct fs *fs, uint64_t ino);
/* Marks ino's entry as unlinked if it is in the table: its last drop then returns
 * FS_ITAB_GONE_UNLINKED. Returns 1 if it was there (referenced), 0 if not. Called, under the
 * inode's stripe, by whoever sees its link count at 0 while it may be referenced. */
int fs_itab_mark_unlinked(struct fs *fs, uint64_t ino);

/* ---- Store access (core.c) ---------------------------------------------------------------- */

/* Loads inode ino (snap may be NULL). *tail (may be NULL) receives a malloc'd copy of the tail
 * (symlink target, NUL-terminated). Returns -ENOENT if absent, -EIO if corrupt. */
int fs_inode_load(struct fs *fs, const kv_snapshot *snap, uint64_t ino, struct fs_inode *in,
                  char **tail, size_t *tail_len);
int fs_batch_put_inode(kv_batch *b, const struct fs_inode *in, const void *tail, size_t tlen);
/* Applies b with the configured write flags. Returns 0 or a negative errno. */
int fs_commit(struct fs *fs, kv_batch *b);
/* Like fs_commit, for a batch that frees space (unlink, rmdir, reclaim, truncate down, punch,
 * removexattr, rename over a file): with KV_WRITE_RESERVE, so that it is accepted on a full
 * disk, where every other write fails with -ENOSPC. */
int fs_commit_freeing(struct fs *fs, kv_batch *b);
/* Looks up the dirent (parent, name). Returns 0, -ENOENT, or -EIO. */
int fs_dirent_load(struct fs *fs, const kv_snapshot *snap, uint64_t parent, const char *name,
                   size_t nlen, uint64_t *child, uint8_t *dtype);
/* Hands out a new inode number (persisting a new range in the superblock when needed). */
int fs_alloc_ino(struct fs *fs, uint64_t *ino);
void fs_now(struct timespec *ts);
void fs_inode_to_stat(const struct fs *fs, const struct fs_inode *in, struct stat *st);
/* Deletes every key with the 9-byte prefix (type, ino), in bounded batches. */
int fs_delete_prefix(struct fs *fs, char type, uint64_t ino);
/* Frees an unlinked, unreferenced inode: chunks, xattrs, then inode and orphan key. The
 * caller holds the inode's stripe. Idempotent. */
int fs_reclaim(struct fs *fs, uint64_t ino);
/* If ino has nlink 0 and nothing references it, reclaims it. Caller holds its stripe. */
int fs_maybe_reclaim(struct fs *fs, uint64_t ino);
/* Validates a name for a new dirent: -ENAMETOOLONG, -EINVAL ('/' or empty), -EEXIST (. ..). */
int fs_check_name(const char *name, size_t *nlen);
/* Truncates the data of in (locked by the caller) to size, adding chunk deletes/trims to b and
 * updating in->size and in->stored. Returns 0 or a negative errno. */
int fs_truncate_locked(struct fs *fs, kv_batch *b, struct fs_inode *in, uint64_t size);
/* Creates a new entry in parent (mknod/mkdir/symlink/create). */
int fs_make_node(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
                 uint32_t mode, uint64_t rdev, const char *target, int open, struct fs_entry *e);

#define FS_ROFS_CHECK(fs)                                                                          \
    do {                                                                                           \
        if ((fs)->cfg.read_only)                                                                   \
            return -EROFS;                                                                         \
    } while (0)

#endif /* KVFS_FS_INT_H */
