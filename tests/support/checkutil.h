/* checkutil.h - Check helpers the unit suites repeat: running a suite, a temp-dir fixture,
 * opening a store, comparing a store with the reference map.
 *
 * Every tu_ck_* helper asserts with Check, so a failure fails the calling test.
 * Threads: tu_run_suite from main only; the temp-dir helpers from the test's main thread.
 */
#ifndef KV_CHECKUTIL_H
#define KV_CHECKUTIL_H

#include <check.h>

#include "kvcore/kv.h"
#include "testutil.h"

/* Runs every test of s (CK_NORMAL output; CK_RUN_SUITE/CK_RUN_CASE and the other Check
 * variables apply), frees the runner and the suite. Returns EXIT_SUCCESS if none failed, else
 * EXIT_FAILURE, for main() to return. */
int tu_run_suite(Suite *s);

/* tu_tempdir(tag), asserting it succeeded. Caller frees the path (or tu_ck_rmtempdir). */
char *tu_ck_tempdir(const char *tag);

/* Removes *dir recursively, frees it and sets it to NULL; a NULL *dir does nothing. Whatever
 * cannot be removed stays behind under $KV_TEST_TMP (the test's result does not depend on it). */
void tu_ck_rmtempdir(char **dir);

/* Asserts that dir is as tu_dir_fingerprint(dir) described it in before (taken earlier: same
 * files, sizes and contents), then frees before. before must not be NULL. */
void tu_ck_dir_unchanged(const char *dir, char *before);

/* XORs the byte at offset off of the file at path with mask (off < 0: counted back from the
 * end of the file, -1 being the last byte), asserting the file exists and holds that byte. */
void tu_ck_xor_byte(const char *path, long off, int mask);

/* kv_open(dir, o), asserting it returned 0 (the message names the error). Caller closes. */
kv_db *tu_ck_open(const char *dir, const kv_options *o);

/* Asserts that a full forward scan of db as of snap (NULL: latest) yields exactly the pairs of
 * m in order, and that the iterator ends without error. */
void tu_ck_scan_forward(kv_db *db, const kv_snapshot *snap, const tu_model *m);
/* The same for a full backward scan (seek_last, prev). */
void tu_ck_scan_backward(kv_db *db, const kv_snapshot *snap, const tu_model *m);

#endif /* KV_CHECKUTIL_H */
