/* checkutil.h - Check helpers every unit suite repeats: running a suite, a temp-dir fixture.
 *
 * Threads: tu_run_suite from main only; the temp-dir helpers from the test's main thread.
 */
#ifndef KV_CHECKUTIL_H
#define KV_CHECKUTIL_H

#include <check.h>

/* Runs every test of s (CK_NORMAL output; CK_RUN_SUITE/CK_RUN_CASE and the other Check
 * variables apply), frees the runner and the suite. Returns EXIT_SUCCESS if none failed, else
 * EXIT_FAILURE, for main() to return. */
int tu_run_suite(Suite *s);

/* tu_tempdir(tag), asserting it succeeded. Caller frees the path (or tu_ck_rmtempdir). */
char *tu_ck_tempdir(const char *tag);

/* Removes *dir recursively, frees it and sets it to NULL; a NULL *dir does nothing. Whatever
 * cannot be removed stays behind under $KV_TEST_TMP (the test's result does not depend on it). */
void tu_ck_rmtempdir(char **dir);

#endif /* KV_CHECKUTIL_H */
