/* test_concurrency.c - concurrent writers and readers: snapshots and iterators see only
 * consistent states while flushes and compactions run underneath.
 *
 * 4 writers apply batches that keep two invariants: (1) for every pair i, keys "a<i>" and
 * "b<i>" are both absent or hold the same bytes; (2) for every group g, the 8 keys "g<g>/<j>"
 * hold the same generation. 4 readers check the invariants through snapshots (gets and
 * scans), through plain iterators (each is a consistent view), and one re-reads a frozen
 * snapshot again and again: it must see identical bytes every time. A maintenance thread
 * forces flushes and range compactions meanwhile. Runs for KV_CONC_SECONDS, else
 * KV_TEST_SECONDS, else 15 s.
 * Built with -DKV_TSAN=ON it doubles as a data-race test.
 */
#include <check.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "kvcore/kv.h"
#include "testutil.h"

#define NPAIRS 64
#define NGROUPS 16
#define GROUP_SIZE 8
#define NWRITERS 4
#define NREADERS 4

static kv_db *g_db;
static atomic_int g_stop;
static atomic_long g_batches, g_reads, g_scans, g_frozen_rounds;
static pthread_mutex_t g_fail_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_fail[512];
static uint64_t g_seed;

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
    pthread_mutex_lock(&g_fail_mu);
    if (!g_fail[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_fail, sizeof(g_fail), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&g_fail_mu);
    atomic_store(&g_stop, 1);
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- writers ----------------------------------------------------------------------------------
 */

static void *writer_main(void *arg)
{
    long id = (long)arg;
    tu_rng rng;
    tu_rng_init(&rng, g_seed * 31 + (uint64_t)id);
    kv_batch *b = kv_batch_new();
    char *val = malloc(4096);
    if (!b || !val) {
        report("writer %ld: out of memory", id);
        return NULL;
    }
    uint64_t gen = (uint64_t)id << 48;
    while (!atomic_load(&g_stop)) {
        kv_batch_clear(b);
        gen++;
        size_t vl = 8 + (size_t)tu_rng_below(&rng, 2000);
        tu_rng_fill(&rng, val, vl);
        memcpy(val, &gen, 8);
        char k[32];
        if (tu_rng_chance(&rng, 1, 2)) {
            /* Several pairs per batch, each set (or deleted) as a unit. */
            int npairs = 1 + (int)tu_rng_below(&rng, 4);
            for (int p = 0; p < npairs; p++) {
                unsigned i = (unsigned)tu_rng_below(&rng, NPAIRS);
                int del = tu_rng_chance(&rng, 1, 8);
                for (int side = 0; side < 2; side++) {
                    snprintf(k, sizeof(k), "%c%03u", side ? 'b' : 'a', i);
                    if (del)
                        kv_batch_delete(b, k, strlen(k));
                    else
                        kv_batch_put(b, k, strlen(k), val, vl);
                }
            }
        } else {
            unsigned g = (unsigned)tu_rng_below(&rng, NGROUPS);
            for (int j = 0; j < GROUP_SIZE; j++) {
                snprintf(k, sizeof(k), "g%02u/%d", g, j);
                kv_batch_put(b, k, strlen(k), &gen, 8);
            }
        }
        int rc = kv_write(g_db, b, tu_rng_chance(&rng, 1, 50) ? KV_WRITE_SYNC : 0);
        if (rc != 0) {
            report("writer %ld: kv_write failed: %s", id, kv_strerror(rc));
            break;
        }
        atomic_fetch_add(&g_batches, 1);
    }
    kv_batch_free(b);
    free(val);
    return NULL;
}

/* ---- invariant checks ---------------------------------------------------------------------- */

/* Checks both invariants through gets as of snap. Returns 0 or reports and returns -1. */
static int check_by_gets(const kv_snapshot *snap, tu_rng *rng, const char *who)
{
    for (int n = 0; n < 16; n++) {
        unsigned i = (unsigned)tu_rng_below(rng, NPAIRS);
        char ka[16], kb[16];
        snprintf(ka, sizeof(ka), "a%03u", i);
        snprintf(kb, sizeof(kb), "b%03u", i);
        void *va = NULL, *vb = NULL;
        size_t la = 0, lb = 0;
        int ra = kv_get(g_db, snap, ka, 4, &va, &la);
        int rb = kv_get(g_db, snap, kb, 4, &vb, &lb);
        int bad = 1;
        if ((ra != 0 && ra != KV_ENOTFOUND) || (rb != 0 && rb != KV_ENOTFOUND))
            report("%s: kv_get failed: %s / %s", who, kv_strerror(ra), kv_strerror(rb));
        else if (ra != rb)
            report("%s: pair %u half present in a snapshot (a:%s b:%s)", who, i, kv_strerror(ra),
                   kv_strerror(rb));
        else if (ra == 0 && (la != lb || memcmp(va, vb, la) != 0))
            report("%s: pair %u differs in a snapshot", who, i);
        else
            bad = 0;
        kv_free(va);
        kv_free(vb);
        if (bad)
            return -1;
    }
    unsigned g = (unsigned)tu_rng_below(rng, NGROUPS);
    uint64_t first = 0;
    int present = -1;
    for (int j = 0; j < GROUP_SIZE; j++) {
        char k[16];
        snprintf(k, sizeof(k), "g%02u/%d", g, j);
        void *v = NULL;
        size_t vl = 0;
        int rc = kv_get(g_db, snap, k, strlen(k), &v, &vl);
        if (rc != 0 && rc != KV_ENOTFOUND) {
            report("%s: kv_get(%s) failed: %s", who, k, kv_strerror(rc));
            return -1;
        }
        uint64_t gen = 0;
        if (rc == 0 && vl == 8)
            memcpy(&gen, v, 8);
        kv_free(v);
        if (rc == 0 && vl != 8) {
            report("%s: %s has length %zu", who, k, vl);
            return -1;
        }
        if (present == -1) {
            present = rc == 0;
            first = gen;
        } else if (present != (rc == 0) || gen != first) {
            report("%s: group %u torn in a snapshot (key %d: gen %" PRIx64 " vs %" PRIx64 ")", who,
                   g, j, gen, first);
            return -1;
        }
    }
    atomic_fetch_add(&g_reads, 1);
    return 0;
}

/* Decimal digits p[0..n) as a number; a non-digit gives a value out of every range. */
static unsigned parse_num(const char *p, int n)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return ~0u;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v;
}

/* Scans everything through an iterator (as of snap, or its own view) and checks both
 * invariants; *hash (if not NULL) receives a hash of every key and value seen. */
static int check_by_scan(const kv_snapshot *snap, const char *who, uint64_t *hash)
{
    kv_iter *it = kv_iter_new(g_db, snap);
    if (!it) {
        report("%s: kv_iter_new failed", who);
        return -1;
    }
    XXH64_state_t *h = XXH64_createState();
    XXH64_reset(h, 0);
    /* Values of a-keys, checked against b-keys, and group generations. */
    char *aval[NPAIRS] = {0};
    size_t alen[NPAIRS] = {0};
    int apresent[NPAIRS] = {0}, bpresent[NPAIRS] = {0};
    uint64_t ggen[NGROUPS] = {0};
    int gcount[NGROUPS] = {0};
    int rc = 0;
    char prev[64];
    size_t prevlen = 0;
    int have_prev = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it) && rc == 0; kv_iter_next(it)) {
        size_t kl, vl;
        const char *k = kv_iter_key(it, &kl);
        const char *v = kv_iter_value(it, &vl);
        XXH64_update(h, &kl, sizeof(kl));
        XXH64_update(h, k, kl);
        XXH64_update(h, &vl, sizeof(vl));
        XXH64_update(h, v, vl);
        if (have_prev && tu_keycmp(prev, prevlen, k, kl) >= 0) {
            report("%s: scan keys out of order", who);
            rc = -1;
            break;
        }
        if (kl < sizeof(prev)) {
            memcpy(prev, k, kl);
            prevlen = kl;
            have_prev = 1;
        }
        if (kl == 4 && (k[0] == 'a' || k[0] == 'b')) {
            unsigned i = parse_num(k + 1, 3);
            if (i >= NPAIRS)
                continue;
            if (k[0] == 'a') {
                apresent[i] = 1;
                aval[i] = malloc(vl ? vl : 1);
                memcpy(aval[i], v, vl);
                alen[i] = vl;
            } else {
                bpresent[i] = 1;
                if (!apresent[i] || alen[i] != vl || memcmp(aval[i], v, vl) != 0) {
                    report("%s: pair %u inconsistent in a scan", who, i);
                    rc = -1;
                }
            }
        } else if (k[0] == 'g' && vl == 8) {
            unsigned g = parse_num(k + 1, 2);
            uint64_t gen;
            memcpy(&gen, v, 8);
            if (g < NGROUPS) {
                if (gcount[g] && ggen[g] != gen) {
                    report("%s: group %u torn in a scan", who, g);
                    rc = -1;
                }
                ggen[g] = gen;
                gcount[g]++;
            }
        }
    }
    if (rc == 0 && kv_iter_status(it) != 0) {
        report("%s: scan failed: %s", who, kv_strerror(kv_iter_status(it)));
        rc = -1;
    }
    for (int i = 0; i < NPAIRS && rc == 0; i++) {
        if (apresent[i] != bpresent[i]) {
            report("%s: pair %d half present in a scan", who, i);
            rc = -1;
        }
    }
    for (int g = 0; g < NGROUPS && rc == 0; g++) {
        if (gcount[g] != 0 && gcount[g] != GROUP_SIZE) {
            report("%s: group %d has %d of %d keys in a scan", who, g, gcount[g], GROUP_SIZE);
            rc = -1;
        }
    }
    for (int i = 0; i < NPAIRS; i++)
        free(aval[i]);
    if (hash)
        *hash = XXH64_digest(h);
    XXH64_freeState(h);
    kv_iter_free(it);
    if (rc == 0)
        atomic_fetch_add(&g_scans, 1);
    return rc;
}

/* ---- readers ----------------------------------------------------------------------------------
 */

static void *reader_main(void *arg)
{
    long id = (long)arg;
    char who[32];
    snprintf(who, sizeof(who), "reader %ld", id);
    tu_rng rng;
    tu_rng_init(&rng, g_seed * 97 + (uint64_t)id);
    const kv_snapshot *frozen = NULL;
    uint64_t frozen_hash = 0;
    while (!atomic_load(&g_stop)) {
        if (id == 0 || id == 1) {
            /* Snapshot gets and scans. */
            const kv_snapshot *s = kv_snapshot_new(g_db);
            if (!s) {
                report("%s: kv_snapshot_new failed", who);
                break;
            }
            int rc = check_by_gets(s, &rng, who);
            if (rc == 0 && tu_rng_chance(&rng, 1, 4))
                rc = check_by_scan(s, who, NULL);
            /* The same snapshot later still holds the invariants. */
            if (rc == 0)
                rc = check_by_gets(s, &rng, who);
            kv_snapshot_free(g_db, s);
            if (rc)
                break;
        } else if (id == 2) {
            /* Plain iterators: each one is a consistent view by itself. */
            if (check_by_scan(NULL, who, NULL))
                break;
        } else {
            /* A frozen snapshot re-read while everything changes underneath. */
            if (!frozen || tu_rng_chance(&rng, 1, 40)) {
                if (frozen)
                    kv_snapshot_free(g_db, frozen);
                frozen = kv_snapshot_new(g_db);
                if (!frozen) {
                    report("%s: kv_snapshot_new failed", who);
                    break;
                }
                if (check_by_scan(frozen, who, &frozen_hash))
                    break;
                continue;
            }
            uint64_t hsh;
            if (check_by_scan(frozen, who, &hsh))
                break;
            if (hsh != frozen_hash) {
                report("%s: a frozen snapshot changed between two scans", who);
                break;
            }
            if (check_by_gets(frozen, &rng, who))
                break;
            atomic_fetch_add(&g_frozen_rounds, 1);
        }
    }
    if (frozen)
        kv_snapshot_free(g_db, frozen);
    return NULL;
}

static void *maintenance_main(void *arg)
{
    (void)arg;
    tu_rng rng;
    tu_rng_init(&rng, g_seed * 7 + 1);
    while (!atomic_load(&g_stop)) {
        usleep(50000 + (useconds_t)tu_rng_below(&rng, 200000));
        int rc;
        if (tu_rng_chance(&rng, 1, 2)) {
            rc = kv_flush(g_db);
            if (rc)
                report("kv_flush failed: %s", kv_strerror(rc));
        } else {
            char lo[8], hi[8];
            snprintf(lo, sizeof(lo), "a%03u", (unsigned)tu_rng_below(&rng, NPAIRS));
            snprintf(hi, sizeof(hi), "g%02u", (unsigned)tu_rng_below(&rng, NGROUPS));
            rc = tu_rng_chance(&rng, 1, 3) ? kv_compact_range(g_db, NULL, 0, NULL, 0)
                                           : kv_compact_range(g_db, lo, 4, hi, 3);
            if (rc)
                report("kv_compact_range failed: %s", kv_strerror(rc));
        }
    }
    return NULL;
}

static double run_seconds(void)
{
    return tu_test_seconds("KV_CONC_SECONDS", 15.0);
}

START_TEST(test_readers_see_only_whole_batches_while_writers_flush_and_compact)
{
    g_seed = tu_seed("concurrency");
    char *dir = tu_tempdir("concurrency");
    ck_assert_ptr_nonnull(dir);
    kv_options o;
    kv_options_init(&o);
    o.memtable_bytes = (size_t)tu_env_u64("KV_TEST_MEMTABLE_BYTES", 64 * 1024);
    o.target_file_size = 64 * 1024;
    o.level1_bytes = 256 * 1024;
    o.l0_compaction_trigger = 3;
    o.block_cache_bytes = 128 * 1024;
    o.compression = 1;
    o.sync_mode = KV_SYNC_ON_REQUEST;
    ck_assert_int_eq(kv_open(dir, &o, &g_db), 0);
    atomic_store(&g_stop, 0);

    double seconds = run_seconds();
    pthread_t w[NWRITERS], r[NREADERS], m;
    for (long i = 0; i < NWRITERS; i++)
        ck_assert_int_eq(pthread_create(&w[i], NULL, writer_main, (void *)i), 0);
    for (long i = 0; i < NREADERS; i++)
        ck_assert_int_eq(pthread_create(&r[i], NULL, reader_main, (void *)i), 0);
    ck_assert_int_eq(pthread_create(&m, NULL, maintenance_main, NULL), 0);
    double end = now_sec() + seconds;
    while (!atomic_load(&g_stop) && now_sec() < end)
        usleep(20000);
    atomic_store(&g_stop, 1);
    for (int i = 0; i < NWRITERS; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < NREADERS; i++)
        pthread_join(r[i], NULL);
    pthread_join(m, NULL);

    kv_stats st;
    ck_assert_int_eq(kv_get_stats(g_db, &st), 0);
    fprintf(stderr,
            "concurrency: %ld batches, %ld snapshot checks, %ld scans, %ld frozen re-reads; "
            "engine: %" PRIu64 " flushes, %" PRIu64 " compactions, %" PRIu64 " stall us\n",
            atomic_load(&g_batches), atomic_load(&g_reads), atomic_load(&g_scans),
            atomic_load(&g_frozen_rounds), st.flushes, st.compactions, st.stall_micros);
    ck_assert_msg(!g_fail[0], "%s (seed %" PRIu64 ")", g_fail, g_seed);
    ck_assert_uint_eq(st.live_snapshots, 0);
    /* Only meaningful if things really happened concurrently. */
    ck_assert_int_gt(atomic_load(&g_batches), 100);
    ck_assert_int_gt(atomic_load(&g_frozen_rounds), 0);
    ck_assert_uint_gt(st.flushes, 0);
    ck_assert_uint_gt(st.compactions, 0);
    /* After everything settles, and after a reopen, the invariants still hold. */
    ck_assert_int_eq(check_by_scan(NULL, "final", NULL), 0);
    ck_assert_int_eq(kv_close(g_db), 0);
    ck_assert_int_eq(kv_open(dir, &o, &g_db), 0);
    ck_assert_int_eq(check_by_scan(NULL, "after reopen", NULL), 0);
    ck_assert_msg(!g_fail[0], "%s", g_fail);
    ck_assert_int_eq(kv_close(g_db), 0);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

static Suite *concurrency_suite(void)
{
    Suite *s = suite_create("concurrency");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, (int)run_seconds() + 240);
    tcase_add_test(tc, test_readers_see_only_whole_batches_while_writers_flush_and_compact);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(concurrency_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
