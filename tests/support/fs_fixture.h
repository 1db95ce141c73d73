/* fs_fixture.h - the Check fixture of the fs unit suites: a fresh store in a temp dir, opened
 * as a filesystem, and the small helpers those suites share.
 *
 * One filesystem per test process: the state lives in the tfs_* globals below, which a test
 * uses and may replace directly (e.g. close the filesystem, open the store alone to damage or
 * check it, then tfs_open() again). Every helper asserts with Check, so a failure fails the
 * calling test. Threads: the helpers are for the test's main thread; other threads may use
 * tfs_fs and tfs_db concurrently with the calls fs.h and kv.h allow.
 */
#ifndef KV_FS_FIXTURE_H
#define KV_FS_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs.h"
#include "kvcore/kv.h"

/* The temp dir holding the store (malloc'd by tfs_setup, freed by tfs_teardown). */
extern char *tfs_dir;
/* The open store and filesystem; NULL while closed. Owned by the fixture. */
extern kv_db *tfs_db;
extern struct fs *tfs_fs;
/* Callers: root (uid 0) and an unprivileged user (uid/gid 1000), no supplementary groups. */
extern const struct fs_ctx tfs_root;
extern const struct fs_ctx tfs_user;
/* struct fs_config's chunk_cache_bytes for the next tfs_open (0, the default: the default
 * cache). A test that changes it sets it back to 0 before it ends. */
extern size_t tfs_chunk_cache_bytes;
/* struct fs_config's dir_cache_bytes for the next tfs_open (0, the default: the default
 * cache). A test that changes it sets it back to 0 before it ends. */
extern size_t tfs_dir_cache_bytes;

/* Checked fixture (tcase_add_checked_fixture(tc, tfs_setup, tfs_teardown)): tfs_setup makes a
 * fresh temp dir and opens a new store and filesystem in it; tfs_teardown closes whatever is
 * still open and removes the dir. */
void tfs_setup(void);
void tfs_teardown(void);

/* Opens the store in tfs_dir (log level ERROR) and the filesystem on it into tfs_db/tfs_fs;
 * both must be closed. Asserts on failure. */
void tfs_open(void);
/* Closes the filesystem, then the store, and sets both to NULL. Asserts kv_close succeeded. */
void tfs_close(void);
/* tfs_close() then tfs_open(): everything not yet in a table is recovered from the WAL. */
void tfs_reopen(void);

/* With the filesystem and store closed, opens the store alone, runs fs_fsck(repair) and closes
 * it again, leaving both closed. Returns fsck's counts; asserts that every step returned 0. */
struct fsck_result tfs_fsck_closed(int repair);
/* tfs_close(), tfs_fsck_closed(repair), tfs_open(): returns fsck's counts. */
struct fsck_result tfs_fsck_reopen(int repair);

/* Creates a regular file (0644) or a directory (0755) as root and drops the lookup reference
 * the call took. Returns its inode number; asserts on failure. */
uint64_t tfs_mkfile(uint64_t parent, const char *name);
uint64_t tfs_mkdir(uint64_t parent, const char *name);
/* Looks name up; returns its inode number (dropping the reference) or 0 on any error. */
uint64_t tfs_lookup(uint64_t parent, const char *name);
/* fs_getattr of ino; asserts it succeeds. */
struct stat tfs_getattr(uint64_t ino);
/* Number of keys in the store that start with type and the big-endian ino (9-byte prefix).
 * Asserts the iterator could be made. */
size_t tfs_count_keys(char type, uint64_t ino);

#endif /* KV_FS_FIXTURE_H */
