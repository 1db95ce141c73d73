/* testutil.h - shared helpers for kvcore tests: temp dirs, a replayable PRNG, a reference map.
 *
 * Every randomized test takes its seed from tu_seed() so that a failure prints the seed and
 * replays exactly with KV_SEED=N. The reference map (tu_model) is the trivially correct
 * "store" a model-based test compares kvcore against: a sorted array of byte-string pairs.
 * Threads: nothing here is thread-safe except tu_seed/tu_tempdir; give each thread its own rng.
 */
#ifndef KV_TESTUTIL_H
#define KV_TESTUTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Seeds and random numbers ------------------------------------------------------------ */

/* Returns $KV_SEED if set, else a seed from the clock, and ALWAYS prints
 * "<what>: seed=N; rerun with KV_SEED=N" to stderr so the run can be replayed. */
uint64_t tu_seed(const char *what);

/* xoshiro256** seeded through splitmix64: deterministic for a given seed. */
typedef struct tu_rng {
    uint64_t s[4];
} tu_rng;

void tu_rng_init(tu_rng *r, uint64_t seed);
uint64_t tu_rng_next(tu_rng *r);
/* Uniform in [0, n); n == 0 returns 0. */
uint64_t tu_rng_below(tu_rng *r, uint64_t n);
/* 1 with probability num/den. */
int tu_rng_chance(tu_rng *r, unsigned num, unsigned den);
void tu_rng_fill(tu_rng *r, void *buf, size_t n);

/* Returns the number in environment variable name (e.g. KV_TEST_MEMTABLE_BYTES, to rerun a
 * test with other sizes), or def if it is unset or not a positive number. */
uint64_t tu_env_u64(const char *name, uint64_t def);

/* Time budget in seconds of a long randomized test: $name if set to a positive number, else
 * $KV_TEST_SECONDS (the suite-wide budget, set by tests/CMakeLists.txt and lowered for
 * sanitizer builds), else def. Such tests run until the budget is spent, not a fixed count. */
double tu_test_seconds(const char *name, double def);

/* ---- Files and directories --------------------------------------------------------------- */

/* Creates a fresh, empty directory under $KV_TEST_TMP (created if missing) or /tmp, whose
 * name contains tag. Returns a malloc'd path (caller frees) or NULL (errno set). */
char *tu_tempdir(const char *tag);

/* Removes path recursively (like rm -rf). Returns 0, or -1 with errno set. A missing path is
 * not an error. */
int tu_rmtree(const char *path);

/* Describes every regular file in dir (not recursive): one line per file, sorted by name,
 * "name size xxh64-of-contents". Returns a malloc'd string (caller frees) or NULL on error.
 * Two equal fingerprints mean nothing was created, removed or changed. */
char *tu_dir_fingerprint(const char *dir);

/* Returns 1 if dir contains a file whose name ends with suffix; the first such name goes to
 * out (size n) if out is not NULL. */
int tu_dir_find_suffix(const char *dir, const char *suffix, char *out, size_t n);

/* Number of regular files in dir (not recursive) whose name ends with suffix; -1 if dir cannot
 * be read (errno set). */
int tu_dir_count_suffix(const char *dir, const char *suffix);

/* ---- Captured log ------------------------------------------------------------------------ */

/* Collects kvcore's log lines ("<level> <message>\n") so a test can check what was reported.
 * Holds the first TU_LOGBUF_BYTES - 1 bytes; later lines are dropped whole. Threads: the store's
 * threads append while the test reads, all under mu. */
#define TU_LOGBUF_BYTES 16384
typedef struct tu_logbuf {
    pthread_mutex_t mu;
    char text[TU_LOGBUF_BYTES]; /* protected by mu; NUL-terminated */
    size_t len;                 /* protected by mu */
} tu_logbuf;

/* Initialises lb empty (call once before use; tu_logbuf_destroy when done). */
void tu_logbuf_init(tu_logbuf *lb);
void tu_logbuf_destroy(tu_logbuf *lb);
/* A kv_log_fn that drops kvcore's messages, for tests whose stores log expected errors:
 * warnings and errors still go to stderr when $KV_TEST_VERBOSE is set. Any thread. */
void tu_quiet_log(void *ctx, int level, const char *msg);

/* A kv_log_fn: set options.log_fn = tu_logbuf_fn and options.log_ctx = lb. */
void tu_logbuf_fn(void *ctx, int level, const char *msg);
/* Forgets everything captured so far. */
void tu_logbuf_reset(tu_logbuf *lb);
/* 1 if a captured line contains needle. */
int tu_logbuf_contains(tu_logbuf *lb, const char *needle);

/* ---- Reference map ----------------------------------------------------------------------- */

typedef struct tu_entry {
    char *key; /* malloc'd; one NUL byte follows the bytes (not counted) */
    size_t klen;
    char *val; /* malloc'd; one NUL byte follows */
    size_t vlen;
} tu_entry;

/* Sorted by key, bytewise (memcmp, shorter first on a common prefix) like kv.h. */
typedef struct tu_model {
    tu_entry *e;
    size_t n, cap;
} tu_model;

void tu_model_init(tu_model *m);
void tu_model_free(tu_model *m);
/* Inserts or overwrites. Aborts the test process if out of memory. */
void tu_model_put(tu_model *m, const void *k, size_t kl, const void *v, size_t vl);
/* Removes k if present; returns 1 if it was present. */
int tu_model_delete(tu_model *m, const void *k, size_t kl);
/* Borrowed pointer to the entry for k, or NULL. Valid until the model next changes. */
const tu_entry *tu_model_get(const tu_model *m, const void *k, size_t kl);
/* Index of the first entry with key >= k (n if none). */
size_t tu_model_lower_bound(const tu_model *m, const void *k, size_t kl);
/* Index of the last entry with key <= k, or (size_t)-1 if none. */
size_t tu_model_floor(const tu_model *m, const void *k, size_t kl);
/* Deep copy of src into *dst (dst must not be initialised). */
void tu_model_clone(tu_model *dst, const tu_model *src);
/* 1 if both hold exactly the same pairs. */
int tu_model_equal(const tu_model *a, const tu_model *b);

/* Bytewise key order as in kv.h. */
int tu_keycmp(const void *a, size_t al, const void *b, size_t bl);

#endif /* KV_TESTUTIL_H */
