/* fs.h - the kvfs filesystem logic: inodes, directories, files and xattrs over a kv_db.
 *
 * Nothing here knows FUSE: ll.c translates requests into these calls and the results into
 * replies, so everything below is unit-testable without a mount. Every function returns 0 (or
 * a byte count) on success and a negative errno on failure; on failure nothing was changed
 * (every multi-key change is one atomic kv batch). All functions are thread-safe; concurrent
 * calls on the same inode are serialised by a striped per-inode lock table.
 *
 * Lookup counts follow FUSE: every call that fills a struct fs_entry (lookup, mknod, mkdir,
 * symlink, link, create, readdirplus entries) adds one reference that fs_forget() drops.
 * An inode whose link count reaches 0 lives until its last reference and last open are gone.
 */
#ifndef KVFS_FS_H
#define KVFS_FS_H

#include <kvcore/kv.h>

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#define FS_DIRENT_NAME_BUF 256

struct fs;

struct fs_config {
    uint32_t chunk_size;    /* used only when formatting an empty store; 0: 64 KiB */
    int read_only;          /* reject every change with -EROFS; skip orphan processing */
    int write_flags;        /* flags for every kv_write (KV_WRITE_SYNC for sync=always) */
    const char *store_path; /* for statfs (statvfs of the store's directory); may be NULL */
    /* Bytes of decoded chunks kept for reads (fs/chunkcache.h); 0: FS_CC_DEFAULT_BYTES,
     * FS_CONFIG_NO_CHUNK_CACHE: none. */
    size_t chunk_cache_bytes;
    /* Bytes of directory listings kept for readdir (fs/dircache.h); 0: FS_DC_DEFAULT_BYTES,
     * FS_CONFIG_NO_DIR_CACHE: none. */
    size_t dir_cache_bytes;
};
#define FS_CONFIG_NO_CHUNK_CACHE SIZE_MAX
#define FS_CONFIG_NO_DIR_CACHE SIZE_MAX

/* Who asks: the request's credentials (for new inodes and the POSIX set-id rules). groups
 * may be NULL (ngroups 0): then only gid counts as membership. */
struct fs_ctx {
    uint32_t uid, gid;
    const gid_t *groups;
    int ngroups;
};

/* 1 if ctx is privileged (uid 0) or a member of gid (primary or supplementary). */
int fs_ctx_in_group(const struct fs_ctx *ctx, uint32_t gid);

struct fs_entry {
    uint64_t ino;
    uint64_t generation;
    struct stat attr;
};

/* Opens the filesystem in db: formats an empty store (root directory owned by root_uid/
 * root_gid), validates the superblock, then reclaims inodes left orphaned by a crash.
 * Returns -EPROTO for a newer format, -EINVAL if db holds keys but no kvfs superblock, -EIO on
 * corruption. db stays owned by the caller and must outlive *out. */
int fs_open(kv_db *db, const struct fs_config *cfg, uint32_t root_uid, uint32_t root_gid,
            struct fs **out);
/* Frees fs. Inodes still referenced with no links keep their orphan keys and are reclaimed by
 * the next fs_open(). Directory streams still open are closed (their snapshots released, so
 * kv_close may follow). No other call may be running. NULL is a no-op. */
void fs_close(struct fs *fs);
/* Frees fs doing nothing to the store: what a crash of the daemon leaves behind (orphans stay
 * for the next fs_open()); open directory streams are closed as by fs_close. For tests and for
 * exits that must not touch the store. */
void fs_abandon(struct fs *fs);

/* With FUSE's writeback cache the kernel owns the mtime/ctime of written files and sends them
 * with setattr; then fs_write() and fs_copy_file_range() leave them alone (otherwise a later
 * writeback would move mtime past what the kernel showed). Call before serving requests. */
void fs_set_kernel_times(struct fs *fs, int on);

/* Borrowed accessors: the store fs runs on, and its chunk size (fixed at format). */
kv_db *fs_get_db(struct fs *fs);
uint32_t fs_chunk_size(const struct fs *fs);

/* Maps a KV_E* code to a negative errno (the one place this happens). */
int fs_kv_errno(int kv_err);

/* ---- Names and attributes ----------------------------------------------------------------- */

/* Resolves name in directory parent ("." and ".." included) into *e, taking one lookup
 * reference. -ENOENT if absent, -ENAMETOOLONG past 255 bytes, -EIO if the entry is damaged. */
int fs_lookup(struct fs *fs, uint64_t parent, const char *name, struct fs_entry *e);
/* Drops nlookup references; reclaims the inode if that was the last use of an unlinked one. */
void fs_forget(struct fs *fs, uint64_t ino, uint64_t nlookup);
/* Current attributes of ino (st_blocks from stored bytes, st_blksize the chunk size). */
int fs_getattr(struct fs *fs, uint64_t ino, struct stat *st);

/* Bits of to_set for fs_setattr; equal to libfuse's FUSE_SET_ATTR_* values. */
#define FS_SET_MODE (1 << 0)
#define FS_SET_UID (1 << 1)
#define FS_SET_GID (1 << 2)
#define FS_SET_SIZE (1 << 3)
#define FS_SET_ATIME (1 << 4)
#define FS_SET_MTIME (1 << 5)
#define FS_SET_ATIME_NOW (1 << 7)
#define FS_SET_MTIME_NOW (1 << 8)
#define FS_SET_CTIME (1 << 10)

/* Changes the attributes selected by to_set (from attr's st_mode, st_uid, st_gid, st_size,
 * st_atim, st_mtim, st_ctim) and returns the new attributes in *out. Permission checks are the
 * kernel's (default_permissions); the set-id clearing rules of chmod/chown are applied here. */
int fs_setattr(struct fs *fs, const struct fs_ctx *ctx, uint64_t ino, const struct stat *attr,
               int to_set, struct stat *out);

/* Copies a symlink's target into buf (NUL-terminated, truncated to size-1). Returns its full
 * length, -EINVAL if ino is not a symlink. */
int fs_readlink(struct fs *fs, uint64_t ino, char *buf, size_t size);

/* ---- Namespace changes -------------------------------------------------------------------- */

/* Each creates a name in parent owned by ctx (group and set-gid bit inherited from a set-gid
 * directory) in one batch with the parent's times (and nlink for mkdir), filling *e with one
 * lookup reference. -EEXIST, -ENOENT (parent removed), -ENOTDIR, -ENAMETOOLONG.
 * mode carries the type (S_IFREG, S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK) and permissions. */
int fs_mknod(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
             uint32_t mode, uint64_t rdev, struct fs_entry *e);
int fs_mkdir(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
             uint32_t mode, struct fs_entry *e);
int fs_symlink(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
               const char *target, struct fs_entry *e);
/* Like fs_mknod(S_IFREG | mode) and fs_open_file() together. */
int fs_create(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
              uint32_t mode, struct fs_entry *e);
/* A new name for a non-directory (-EPERM for directories, -ENOENT once unlinked). */
int fs_link(struct fs *fs, uint64_t ino, uint64_t newparent, const char *newname,
            struct fs_entry *e);
/* Remove a name (-EISDIR / -ENOTDIR by type, -ENOTEMPTY). At nlink 0 the inode gets an orphan
 * key and is reclaimed once unreferenced (now, if the kernel holds nothing). */
int fs_unlink(struct fs *fs, uint64_t parent, const char *name);
int fs_rmdir(struct fs *fs, uint64_t parent, const char *name);
/* POSIX rename in one batch, replacing (and unlinking) an existing target of compatible type.
 * flags: 0, RENAME_NOREPLACE (-EEXIST) or RENAME_EXCHANGE (-ENOENT without a target).
 * -EINVAL when a directory would move into its own subtree (checked by walking the new
 * parent's ancestry, O(depth)). Renames between directories are serialised (rename_mu). */
int fs_rename(struct fs *fs, uint64_t parent, const char *name, uint64_t newparent,
              const char *newname, unsigned int flags);

/* ---- File data ---------------------------------------------------------------------------- */

/* Counts an open of ino (released by fs_release()); flags are open(2)'s: O_TRUNC on a regular
 * file opened for writing truncates it to 0 in the same call (FUSE atomic_o_trunc). -EISDIR
 * is not checked: the kernel does. */
int fs_open_file(struct fs *fs, uint64_t ino, int flags);
void fs_release(struct fs *fs, uint64_t ino);
/* Reads up to size bytes at off into buf; returns the count (0 at or past EOF). */
ssize_t fs_read(struct fs *fs, uint64_t ino, uint64_t off, size_t size, void *buf);
/* Writes size bytes at off (one batch: chunks + inode); returns size. -EFBIG past 2^63. */
ssize_t fs_write(struct fs *fs, uint64_t ino, uint64_t off, const void *buf, size_t size);
/* Makes everything acknowledged durable. */
int fs_fsync(struct fs *fs);
/* mode: 0, FALLOC_FL_KEEP_SIZE, or FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE. */
int fs_fallocate(struct fs *fs, uint64_t ino, int mode, uint64_t off, uint64_t len);
/* whence SEEK_DATA or SEEK_HOLE; returns the offset, -ENXIO past the data/EOF. */
off_t fs_lseek(struct fs *fs, uint64_t ino, off_t off, int whence);
/* Copies up to len bytes; returns the count copied (short at the source's EOF). */
ssize_t fs_copy_file_range(struct fs *fs, uint64_t ino_in, uint64_t off_in, uint64_t ino_out,
                           uint64_t off_out, size_t len);

/* ---- Directories -------------------------------------------------------------------------- */

struct fs_dir;

struct fs_dirent {
    char name[FS_DIRENT_NAME_BUF];
    uint32_t namelen; /* strlen(name) */
    uint64_t ino;
    uint32_t type; /* S_IFMT bits of the child */
    uint64_t next_off;
};

/* Opens a directory stream over the directory as it is now (a snapshot, or a cached listing:
 * fs/readdir.c). Caller frees with fs_closedir(). */
int fs_opendir(struct fs *fs, uint64_t ino, struct fs_dir **out);
/* Returns 1 and the entry at position off ("." is 0, ".." 1, then names in byte order), 0 at
 * the end, or a negative errno. Does not advance: the next call with de->next_off does. Memory
 * is independent of the directory's size. One thread per stream at a time. */
int fs_readdir(struct fs_dir *d, uint64_t off, struct fs_dirent *de);
/* For readdirplus: the current attributes of a child, adding a lookup reference. -ENOENT if it
 * is gone since the snapshot. */
int fs_readdir_entry(struct fs *fs, uint64_t ino, struct fs_entry *e);
void fs_closedir(struct fs *fs, struct fs_dir *d);
int fs_statfs(struct fs *fs, struct statvfs *st);

/* ---- Extended attributes ------------------------------------------------------------------ */

/* flags: 0, XATTR_CREATE or XATTR_REPLACE. */
int fs_setxattr(struct fs *fs, uint64_t ino, const char *name, const void *value, size_t size,
                int flags);
/* size 0: returns the value's length. Otherwise copies it; -ERANGE if it does not fit. */
ssize_t fs_getxattr(struct fs *fs, uint64_t ino, const char *name, void *buf, size_t size);
/* NUL-separated names; size 0 asks for the length; -ERANGE if it does not fit. */
ssize_t fs_listxattr(struct fs *fs, uint64_t ino, char *buf, size_t size);
int fs_removexattr(struct fs *fs, uint64_t ino, const char *name);

/* The virtual, read-only xattr on the root directory that `kvfs stats MOUNTPOINT` reads. */
#define FS_STATS_XATTR "kvfs.stats"
/* Formats kv_get_stats() as the text table `kvfs stats` prints. Returns a malloc'd string. */
char *fs_format_stats(kv_db *db);

/* ---- Offline check ------------------------------------------------------------------------ */

struct fsck_result {
    uint64_t inodes, dirents, chunks, xattrs, orphans;
    uint64_t problems; /* found */
    uint64_t repaired; /* of those, fixed */
    /* Added (salvage): chunks marked lost (they read as EIO) and the files holding them. */
    uint64_t lost_chunks, damaged_files;
};

/* Checks the filesystem in db (opened exclusively, nothing mounted): every dirent names a live
 * inode of the right type, link counts, directory parents, orphans, chunks past EOF or of dead
 * inodes, unreferenced inodes. With repair, fixes what it can (dangling dirents removed, link
 * counts corrected, unreferenced inodes moved to /lost+found, stray chunks deleted). progress
 * (may be NULL) is called with keys scanned. Returns 0 or a negative errno (I/O). */
int fs_fsck(kv_db *db, int repair, void (*progress)(void *ctx, uint64_t keys), void *pctx,
            struct fsck_result *res);
/* Added (salvage): fs_fsck that first, with repair, marks what a kvcore salvage lost (lost from
 * kv_salvage_ex; NULL: nothing): each chunk of a regular file whose key may have lost its
 * newest entry, and every chunk of a file whose inode record may have, becomes a lost-chunk
 * marker (fs/SCHEMA.md) that reads, and is overwritten, as EIO, so that no stale or zeroed
 * bytes are served for it. Counted as problems repaired. Same returns as fs_fsck. */
int fs_fsck_ex(kv_db *db, int repair, const kv_lost *lost,
               void (*progress)(void *ctx, uint64_t keys), void *pctx, struct fsck_result *res);

#endif /* KVFS_FS_H */
