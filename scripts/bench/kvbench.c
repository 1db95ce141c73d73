/* kvbench.c - runs the same key-value workloads on kvcore, LevelDB and RocksDB in one run.
 *
 * Each (engine, compression, settings) combination runs in a forked child, so that peak RSS
 * (VmHWM) and bytes written to disk (/proc/self/io write_bytes) belong to that engine alone.
 * The child runs the workloads in a fixed order on fresh stores and sends its figures back
 * through a pipe; the parent prints Markdown tables with the ratio of kvcore to each peer.
 *
 * Workloads (db_bench's meanings): fillseq, fillrandom, overwrite, readrandom, readmissing,
 * seekrandom (seek + next 100), deleterandom, and mixed (2 writer + 2 reader threads).
 * Keys are 16 bytes, values 100 bytes that compress to about half.
 */
#include <errno.h>
#include <malloc.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <kvcore/kv.h>
#include <leveldb/c.h>
#include <rocksdb/c.h>

#define KEY_SIZE 16
#define SCAN_LENGTH 100
#define MAX_ROWS 16

/* ---- Configuration ------------------------------------------------------------------------ */

typedef struct bench_config {
    uint64_t num;          /* keys */
    int value_size;        /* bytes */
    double mixed_seconds;  /* duration of the mixed workload */
    const char *dir;       /* parent directory of the stores */
    size_t memtable_bytes; /* matched settings */
    size_t cache_bytes;    /* matched settings */
    int bloom_bits;        /* matched settings */
    int zstd_level;        /* matched settings */
    int writes_only;       /* stop after fillrandom+overwrite (profiling the write path) */
} bench_config;

typedef struct run_spec {
    const char *engine; /* "kvcore", "leveldb", "rocksdb" */
    int compression;    /* 0/1 */
    int matched;        /* 0: each engine's defaults; 1: matched memtable/cache/bloom */
} run_spec;

/* ---- Results ------------------------------------------------------------------------------ */

typedef struct row_result {
    char name[24];
    double ops_per_sec;
    double mb_per_sec;
    double write_amp; /* disk bytes written / user bytes written; < 0 if not a write phase */
    uint64_t ops;
    uint64_t found; /* for reads */
} row_result;

typedef struct run_result {
    int ok;
    char error[256];
    int nrows;
    row_result rows[MAX_ROWS];
    double total_write_amp; /* over fillrandom + overwrite, including close */
    double space_amp;       /* bytes on disk after overwrite+close / logical bytes */
    uint64_t peak_rss_kib;
    uint64_t base_rss_kib; /* the harness's own memory (keys, values) before the engine opens */
} run_result;

/* ---- A uniform engine interface ------------------------------------------------------------ */

typedef struct engine engine;
struct engine {
    void *db;
    void *aux[6];
    int (*put)(engine *e, const char *k, size_t kl, const char *v, size_t vl);
    int (*get)(engine *e, const char *k, size_t kl, int *found); /* 0 ok */
    int (*del)(engine *e, const char *k, size_t kl);
    /* Seeks to k and reads up to n entries; returns entries read or -1. */
    long (*scan)(engine *e, const char *k, size_t kl, int n);
    void (*close)(engine *e);
};

static void die(const char *what, const char *err)
{
    fprintf(stderr, "kvbench: %s: %s\n", what, err ? err : "failed");
    exit(2);
}

/* kvcore */
static int kvc_put(engine *e, const char *k, size_t kl, const char *v, size_t vl)
{
    return kv_put(e->db, k, kl, v, vl, 0);
}
static int kvc_get(engine *e, const char *k, size_t kl, int *found)
{
    void *v;
    size_t vl;
    int rc = kv_get(e->db, NULL, k, kl, &v, &vl);
    *found = rc == 0;
    if (rc == 0)
        kv_free(v);
    return rc == KV_ENOTFOUND ? 0 : rc;
}
static int kvc_del(engine *e, const char *k, size_t kl)
{
    return kv_delete(e->db, k, kl, 0);
}
static long kvc_scan(engine *e, const char *k, size_t kl, int n)
{
    kv_iter *it = kv_iter_new(e->db, NULL);
    long got = 0;
    if (!it)
        return -1;
    size_t len;
    for (kv_iter_seek(it, k, kl); kv_iter_valid(it) && got < n; kv_iter_next(it)) {
        kv_iter_key(it, &len);
        kv_iter_value(it, &len);
        got++;
    }
    if (kv_iter_status(it))
        got = -1;
    kv_iter_free(it);
    return got;
}
static int verbose; /* --verbose: each phase's rate and memory, and kvcore's stalls, to stderr */

static void kvc_close(engine *e)
{
    kv_stats st;
    if (verbose && kv_get_stats(e->db, &st) == 0)
        fprintf(stderr,
                "kvbench:   kvcore at close: stalled %.2f s (%" PRIu64 " stops, %" PRIu64
                " slowdowns), %" PRIu64 " flushes, %" PRIu64 " compactions, L0 %" PRIu64
                " tables\n",
                st.stall_micros / 1e6, st.stops, st.slowdowns, st.flushes, st.compactions,
                st.level_files[0]);
    if (verbose && st.user_bytes_written) {
        /* Where the write amplification comes from (the flush at close is not yet in it). */
        double u = (double)st.user_bytes_written;
        fprintf(stderr,
                "kvbench:   kvcore write amp by source: wal %.2f, flush %.2f, compaction %.2f "
                "(read %.2f); levels:",
                st.wal_bytes_written / u, st.flush_bytes_written / u,
                st.compaction_bytes_written / u, st.compaction_bytes_read / u);
        for (int l = 0; l < KV_MAX_LEVELS; l++)
            if (st.level_files[l])
                fprintf(stderr, " L%d %" PRIu64 " files %.1f MiB", l, st.level_files[l],
                        st.level_bytes[l] / 1048576.0);
        fprintf(stderr, "\n");
    }
    kv_close(e->db);
}
static void kvc_open(engine *e, const char *path, const bench_config *cfg, const run_spec *rs)
{
    kv_options o;
    kv_options_init(&o);
    o.create_if_missing = 1;
    o.compression = rs->compression;
    if (rs->matched) {
        o.memtable_bytes = cfg->memtable_bytes;
        o.block_cache_bytes = cfg->cache_bytes;
        o.bloom_bits_per_key = cfg->bloom_bits;
        o.compression_level = cfg->zstd_level;
    }
    kv_db *db;
    int rc = kv_open(path, &o, &db);
    if (rc)
        die("kv_open", kv_strerror(rc));
    e->db = db;
    e->put = kvc_put;
    e->get = kvc_get;
    e->del = kvc_del;
    e->scan = kvc_scan;
    e->close = kvc_close;
}

/* LevelDB: aux = options, roptions, woptions, cache, filter */
static int ldb_put(engine *e, const char *k, size_t kl, const char *v, size_t vl)
{
    char *err = NULL;
    leveldb_put(e->db, e->aux[2], k, kl, v, vl, &err);
    if (err) {
        leveldb_free(err);
        return -1;
    }
    return 0;
}
static int ldb_get(engine *e, const char *k, size_t kl, int *found)
{
    char *err = NULL;
    size_t vl;
    char *v = leveldb_get(e->db, e->aux[1], k, kl, &vl, &err);
    if (err) {
        leveldb_free(err);
        return -1;
    }
    *found = v != NULL;
    leveldb_free(v);
    return 0;
}
static int ldb_del(engine *e, const char *k, size_t kl)
{
    char *err = NULL;
    leveldb_delete(e->db, e->aux[2], k, kl, &err);
    if (err) {
        leveldb_free(err);
        return -1;
    }
    return 0;
}
static long ldb_scan(engine *e, const char *k, size_t kl, int n)
{
    leveldb_iterator_t *it = leveldb_create_iterator(e->db, e->aux[1]);
    long got = 0;
    size_t len;
    for (leveldb_iter_seek(it, k, kl); leveldb_iter_valid(it) && got < n; leveldb_iter_next(it)) {
        leveldb_iter_key(it, &len);
        leveldb_iter_value(it, &len);
        got++;
    }
    leveldb_iter_destroy(it);
    return got;
}
static void ldb_close(engine *e)
{
    leveldb_close(e->db);
    leveldb_options_destroy(e->aux[0]);
    leveldb_readoptions_destroy(e->aux[1]);
    leveldb_writeoptions_destroy(e->aux[2]);
    if (e->aux[3])
        leveldb_cache_destroy(e->aux[3]);
    if (e->aux[4])
        leveldb_filterpolicy_destroy(e->aux[4]);
}
static void ldb_open(engine *e, const char *path, const bench_config *cfg, const run_spec *rs)
{
    leveldb_options_t *o = leveldb_options_create();
    leveldb_options_set_create_if_missing(o, 1);
    /* LevelDB offers only Snappy; "compression on" means Snappy for it. */
    leveldb_options_set_compression(o, rs->compression ? leveldb_snappy_compression
                                                       : leveldb_no_compression);
    memset(e->aux, 0, sizeof(e->aux));
    if (rs->matched) {
        leveldb_options_set_write_buffer_size(o, cfg->memtable_bytes);
        e->aux[3] = leveldb_cache_create_lru(cfg->cache_bytes);
        leveldb_options_set_cache(o, e->aux[3]);
        e->aux[4] = leveldb_filterpolicy_create_bloom(cfg->bloom_bits);
        leveldb_options_set_filter_policy(o, e->aux[4]);
    }
    char *err = NULL;
    e->db = leveldb_open(o, path, &err);
    if (err)
        die("leveldb_open", err);
    e->aux[0] = o;
    e->aux[1] = leveldb_readoptions_create();
    e->aux[2] = leveldb_writeoptions_create();
    e->put = ldb_put;
    e->get = ldb_get;
    e->del = ldb_del;
    e->scan = ldb_scan;
    e->close = ldb_close;
}

/* RocksDB: aux = options, roptions, woptions, cache, filter(owned by bbo), bbo */
static int rdb_put(engine *e, const char *k, size_t kl, const char *v, size_t vl)
{
    char *err = NULL;
    rocksdb_put(e->db, e->aux[2], k, kl, v, vl, &err);
    if (err) {
        rocksdb_free(err);
        return -1;
    }
    return 0;
}
static int rdb_get(engine *e, const char *k, size_t kl, int *found)
{
    char *err = NULL;
    size_t vl;
    char *v = rocksdb_get(e->db, e->aux[1], k, kl, &vl, &err);
    if (err) {
        rocksdb_free(err);
        return -1;
    }
    *found = v != NULL;
    rocksdb_free(v);
    return 0;
}
static int rdb_del(engine *e, const char *k, size_t kl)
{
    char *err = NULL;
    rocksdb_delete(e->db, e->aux[2], k, kl, &err);
    if (err) {
        rocksdb_free(err);
        return -1;
    }
    return 0;
}
static long rdb_scan(engine *e, const char *k, size_t kl, int n)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator(e->db, e->aux[1]);
    long got = 0;
    size_t len;
    for (rocksdb_iter_seek(it, k, kl); rocksdb_iter_valid(it) && got < n; rocksdb_iter_next(it)) {
        rocksdb_iter_key(it, &len);
        rocksdb_iter_value(it, &len);
        got++;
    }
    rocksdb_iter_destroy(it);
    return got;
}
static void rdb_close(engine *e)
{
    rocksdb_close(e->db);
    rocksdb_options_destroy(e->aux[0]);
    rocksdb_readoptions_destroy(e->aux[1]);
    rocksdb_writeoptions_destroy(e->aux[2]);
    if (e->aux[5])
        rocksdb_block_based_options_destroy(e->aux[5]);
    if (e->aux[3])
        rocksdb_cache_destroy(e->aux[3]);
}
static void rdb_open(engine *e, const char *path, const bench_config *cfg, const run_spec *rs)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_compression(o, rs->compression ? rocksdb_zstd_compression
                                                       : rocksdb_no_compression);
    memset(e->aux, 0, sizeof(e->aux));
    if (rs->matched) {
        rocksdb_options_set_write_buffer_size(o, cfg->memtable_bytes);
        rocksdb_block_based_table_options_t *bbo = rocksdb_block_based_options_create();
        e->aux[3] = rocksdb_cache_create_lru(cfg->cache_bytes);
        rocksdb_block_based_options_set_block_cache(bbo, e->aux[3]);
        rocksdb_block_based_options_set_filter_policy(
            bbo, rocksdb_filterpolicy_create_bloom(cfg->bloom_bits));
        rocksdb_options_set_block_based_table_factory(o, bbo);
        e->aux[5] = bbo;
        if (rs->compression)
            rocksdb_options_set_compression_options(o, -14, cfg->zstd_level, 0, 0);
    }
    char *err = NULL;
    e->db = rocksdb_open(o, path, &err);
    if (err)
        die("rocksdb_open", err);
    e->aux[0] = o;
    e->aux[1] = rocksdb_readoptions_create();
    e->aux[2] = rocksdb_writeoptions_create();
    e->put = rdb_put;
    e->get = rdb_get;
    e->del = rdb_del;
    e->scan = rdb_scan;
    e->close = rdb_close;
}

static void engine_open(engine *e, const char *path, const bench_config *cfg, const run_spec *rs)
{
    if (strcmp(rs->engine, "kvcore") == 0)
        kvc_open(e, path, cfg, rs);
    else if (strcmp(rs->engine, "leveldb") == 0)
        ldb_open(e, path, cfg, rs);
    else
        rdb_open(e, path, cfg, rs);
}

/* ---- Data ------------------------------------------------------------------------------- */

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void make_key(char *k, uint64_t i, int missing)
{
    /* 16 bytes that sort numerically; "missing" keys end in a character no stored key has. */
    for (int d = KEY_SIZE - 2; d >= 0; d--, i /= 10)
        k[d] = (char)('0' + i % 10);
    k[KEY_SIZE - 1] = missing ? 'x' : '0';
    k[KEY_SIZE] = '\0';
}

/* A pool of values that compress to about half: each 100 bytes are 50 random letters written
 * twice. Values are taken from rolling offsets into the pool. */
typedef struct value_pool {
    char *data;
    size_t size;
    size_t pos;
} value_pool;

static void pool_init(value_pool *p, int value_size, uint64_t seed)
{
    p->size = 1 << 20;
    p->data = malloc(p->size + (size_t)value_size);
    p->pos = 0;
    for (size_t off = 0; off < p->size + (size_t)value_size; off += 100) {
        char piece[50];
        for (int j = 0; j < 50; j++)
            piece[j] = (char)(' ' + rng_next(&seed) % 95);
        for (int j = 0; j < 100 && off + j < p->size + (size_t)value_size; j++)
            p->data[off + j] = piece[j % 50];
    }
}

static const char *pool_next(value_pool *p, int value_size)
{
    if (p->pos + (size_t)value_size > p->size)
        p->pos = 0;
    const char *v = p->data + p->pos;
    p->pos += (size_t)value_size;
    return v;
}

static uint64_t *make_permutation(uint64_t n, uint64_t seed)
{
    uint64_t *perm = malloc(n * sizeof(*perm));
    for (uint64_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint64_t i = n - 1; i > 0; i--) {
        uint64_t j = rng_next(&seed) % (i + 1);
        uint64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    return perm;
}

/* ---- Measuring the process ---------------------------------------------------------------- */

static uint64_t proc_write_bytes(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    uint64_t v = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "write_bytes: %" SCNu64, &v) == 1)
            break;
    fclose(f);
    return v;
}

static uint64_t proc_status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256], fmt[64];
    uint64_t v = 0;
    if (!f)
        return 0;
    snprintf(fmt, sizeof(fmt), "%s: %%" SCNu64, field);
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, fmt, &v) == 1)
            break;
    fclose(f);
    return v;
}

static uint64_t proc_peak_rss_kib(void)
{
    return proc_status_kib("VmHWM");
}

static uint64_t proc_rss_kib(void)
{
    return proc_status_kib("VmRSS");
}

static uint64_t dir_disk_bytes(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    uint64_t total = 0;
    if (!d)
        return 0;
    while ((de = readdir(d))) {
        char p[4096];
        struct stat st;
        /* kvcore's preallocated space reserve (for recovering from a full disk) is free space
         * held back, not data: it is reported apart, not as space amplification. */
        if (de->d_name[0] == '.' || strcmp(de->d_name, "RESERVE") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
        if (lstat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                total += dir_disk_bytes(p);
            else
                total += (uint64_t)st.st_blocks * 512;
        }
    }
    closedir(d);
    return total;
}

static void remove_tree(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "kvbench: could not remove %s\n", path);
}

/* ---- Workloads ------------------------------------------------------------------------------ */

/* CPU seconds (user + system) of the calling thread: a phase's cost per operation on a loaded
 * machine, where wall time also counts waiting for a core. */
static double thread_cpu_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct phase {
    double start;
    double cpu_start;
    uint64_t wbytes;
} phase;

static phase phase_begin(void)
{
    phase p = {now_sec(), thread_cpu_sec(), proc_write_bytes()};
    return p;
}

static void phase_end(run_result *r, const char *name, phase p, uint64_t ops, uint64_t user_bytes,
                      uint64_t found, int is_write)
{
    double secs = now_sec() - p.start;
    if (verbose) {
        struct mallinfo2 mi = mallinfo2();
        double cpu = thread_cpu_sec() - p.cpu_start;
        fprintf(stderr,
                "kvbench:   %-20s %10.0f ops/s %10.0f ops/cpu-s  VmRSS %6.1f MiB  VmHWM %6.1f "
                "MiB  malloc: in use %.1f MiB, free %.1f MiB, mmapped %.1f MiB\n",
                name, secs > 0 ? ops / secs : 0, cpu > 0 ? ops / cpu : 0, proc_rss_kib() / 1024.0,
                proc_peak_rss_kib() / 1024.0, mi.uordblks / 1048576.0, mi.fordblks / 1048576.0,
                mi.hblkhd / 1048576.0);
        if (getenv("KVBENCH_MALLOC_INFO"))
            malloc_info(0, stderr);
    }
    row_result *row = &r->rows[r->nrows++];
    snprintf(row->name, sizeof(row->name), "%s", name);
    row->ops = ops;
    row->found = found;
    row->ops_per_sec = secs > 0 ? ops / secs : 0;
    row->mb_per_sec = secs > 0 ? user_bytes / secs / 1048576.0 : 0;
    row->write_amp =
        is_write && user_bytes ? (double)(proc_write_bytes() - p.wbytes) / user_bytes : -1;
}

static void fill(engine *e, run_result *r, const char *name, const uint64_t *order, uint64_t n,
                 value_pool *vp, int value_size)
{
    char k[KEY_SIZE + 1];
    phase p = phase_begin();
    for (uint64_t i = 0; i < n; i++) {
        make_key(k, order ? order[i] : i, 0);
        if (e->put(e, k, KEY_SIZE, pool_next(vp, value_size), (size_t)value_size))
            die(name, "put failed");
    }
    phase_end(r, name, p, n, n * (KEY_SIZE + (uint64_t)value_size), 0, 1);
}

typedef struct mixed_arg {
    engine *e;
    int writer;
    uint64_t num;
    int value_size;
    double deadline;
    uint64_t seed;
    uint64_t ops;
    atomic_int *failed;
} mixed_arg;

static void *mixed_thread(void *argp)
{
    mixed_arg *a = argp;
    value_pool vp;
    char k[KEY_SIZE + 1];
    pool_init(&vp, a->value_size, a->seed);
    while ((a->ops & 255) || now_sec() < a->deadline) {
        make_key(k, rng_next(&a->seed) % a->num, 0);
        int found, rc;
        if (a->writer)
            rc = a->e->put(a->e, k, KEY_SIZE, pool_next(&vp, a->value_size), (size_t)a->value_size);
        else
            rc = a->e->get(a->e, k, KEY_SIZE, &found);
        if (rc)
            atomic_store(a->failed, 1);
        a->ops++;
    }
    free(vp.data);
    return NULL;
}

static void run_engine(const bench_config *cfg, const run_spec *rs, run_result *r)
{
    char path[4096];
    engine e;
    value_pool vp;
    uint64_t n = cfg->num, seed = 42;
    char k[KEY_SIZE + 1];
    uint64_t logical = n * (KEY_SIZE + (uint64_t)cfg->value_size);

    memset(r, 0, sizeof(*r));
    pool_init(&vp, cfg->value_size, 7);
    snprintf(path, sizeof(path), "%s/%s-%d-%d", cfg->dir, rs->engine, rs->compression, rs->matched);
    remove_tree(path);

    /* The harness's own arrays exist before any engine opens, so that the engine's memory is
     * peak RSS minus this baseline. */
    uint64_t *perm = make_permutation(n, seed);
    uint64_t *perm2 = make_permutation(n, seed + 1);
    uint64_t *perm3 = make_permutation(n, seed + 2);
    r->base_rss_kib = proc_rss_kib();

    /* fillseq, on its own store */
    engine_open(&e, path, cfg, rs);
    fill(&e, r, "fillseq", NULL, n, &vp, cfg->value_size);
    e.close(&e);
    remove_tree(path);

    /* fillrandom and the rest, on one store */
    uint64_t w0 = proc_write_bytes();
    engine_open(&e, path, cfg, rs);
    fill(&e, r, "fillrandom", perm, n, &vp, cfg->value_size);
    fill(&e, r, "overwrite", perm2, n, &vp, cfg->value_size);
    e.close(&e);
    r->total_write_amp = (double)(proc_write_bytes() - w0) / (2.0 * logical);
    r->space_amp = (double)dir_disk_bytes(path) / logical;
    if (cfg->writes_only)
        goto done;
    engine_open(&e, path, cfg, rs);

    phase p = phase_begin();
    uint64_t found_total = 0;
    for (uint64_t i = 0; i < n; i++) {
        int found;
        make_key(k, rng_next(&seed) % n, 0);
        if (e.get(&e, k, KEY_SIZE, &found))
            die("readrandom", "get failed");
        found_total += (uint64_t)found;
    }
    phase_end(r, "readrandom", p, n, n * (KEY_SIZE + (uint64_t)cfg->value_size), found_total, 0);

    p = phase_begin();
    found_total = 0;
    for (uint64_t i = 0; i < n; i++) {
        int found;
        make_key(k, rng_next(&seed) % n, 1);
        if (e.get(&e, k, KEY_SIZE, &found))
            die("readmissing", "get failed");
        found_total += (uint64_t)found;
    }
    phase_end(r, "readmissing", p, n, n * KEY_SIZE, found_total, 0);

    uint64_t seeks = n / 10 ? n / 10 : 1;
    uint64_t entries = 0;
    p = phase_begin();
    for (uint64_t i = 0; i < seeks; i++) {
        make_key(k, rng_next(&seed) % n, 0);
        long got = e.scan(&e, k, KEY_SIZE, SCAN_LENGTH);
        if (got < 0)
            die("seekrandom", "iterator failed");
        entries += (uint64_t)got;
    }
    phase_end(r, "seekrandom+next100", p, seeks, entries * (KEY_SIZE + (uint64_t)cfg->value_size),
              entries, 0);

    /* mixed: 2 writers overwriting random keys, 2 readers reading random keys */
    {
        pthread_t th[4];
        mixed_arg args[4];
        atomic_int failed = 0;
        double deadline = now_sec() + cfg->mixed_seconds;
        p = phase_begin();
        for (int t = 0; t < 4; t++) {
            args[t] = (mixed_arg){&e, t < 2, n, cfg->value_size, deadline, 100 + t, 0, &failed};
            pthread_create(&th[t], NULL, mixed_thread, &args[t]);
        }
        uint64_t wops = 0, rops = 0;
        for (int t = 0; t < 4; t++) {
            pthread_join(th[t], NULL);
            if (args[t].writer)
                wops += args[t].ops;
            else
                rops += args[t].ops;
        }
        if (failed)
            die("mixed", "an operation failed");
        phase_end(r, "mixed(2w+2r)", p, wops + rops,
                  (wops + rops) * (KEY_SIZE + (uint64_t)cfg->value_size), 0, 0);
        double secs = now_sec() - p.start;
        row_result *row = &r->rows[r->nrows++];
        snprintf(row->name, sizeof(row->name), "  mixed writes");
        row->ops = wops;
        row->ops_per_sec = wops / secs;
        row->mb_per_sec = wops * (KEY_SIZE + (double)cfg->value_size) / secs / 1048576.0;
        row->write_amp = -1;
        row = &r->rows[r->nrows++];
        snprintf(row->name, sizeof(row->name), "  mixed reads");
        row->ops = rops;
        row->ops_per_sec = rops / secs;
        row->mb_per_sec = rops * (KEY_SIZE + (double)cfg->value_size) / secs / 1048576.0;
        row->write_amp = -1;
    }

    p = phase_begin();
    for (uint64_t i = 0; i < n; i++) {
        make_key(k, perm3[i], 0);
        if (e.del(&e, k, KEY_SIZE))
            die("deleterandom", "delete failed");
    }
    phase_end(r, "deleterandom", p, n, n * KEY_SIZE, 0, 1);
    e.close(&e);

done:
    r->peak_rss_kib = proc_peak_rss_kib();
    r->ok = 1;
    remove_tree(path);
    free(perm);
    free(perm2);
    free(perm3);
    free(vp.data);
}

/* Runs one spec in a child process; returns its result. */
static void run_in_child(const bench_config *cfg, const run_spec *rs, run_result *out)
{
    int fds[2];
    memset(out, 0, sizeof(*out));
    if (pipe(fds) != 0)
        die("pipe", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork", strerror(errno));
    if (pid == 0) {
        run_result r;
        close(fds[0]);
        run_engine(cfg, rs, &r);
        ssize_t w = write(fds[1], &r, sizeof(r));
        _exit(w == (ssize_t)sizeof(r) ? 0 : 3);
    }
    close(fds[1]);
    size_t got = 0;
    while (got < sizeof(*out)) {
        ssize_t n = read(fds[0], (char *)out + got, sizeof(*out) - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    if (got != sizeof(*out) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        memset(out, 0, sizeof(*out));
        snprintf(out->error, sizeof(out->error), "child failed (status %d)", status);
    }
}

/* ---- Report ------------------------------------------------------------------------------- */

static const char *ENGINES[3] = {"kvcore", "leveldb", "rocksdb"};

static void print_ratio(double a, double b)
{
    if (a > 0 && b > 0)
        printf(" %.2fx |", a / b);
    else
        printf(" - |");
}

static void print_table(const bench_config *cfg, int compression, int matched, run_result res[3])
{
    printf("\n### compression %s, %s settings\n\n", compression ? "on" : "off",
           matched ? "matched" : "default");
    if (matched)
        printf("Matched: memtable %zu MiB, block cache %zu MiB, Bloom %d bits/key%s.\n\n",
               cfg->memtable_bytes >> 20, cfg->cache_bytes >> 20, cfg->bloom_bits,
               compression ? ", zstd level matched (LevelDB: Snappy, its only codec)" : "");
    else
        printf("Each engine at its own defaults%s.\n\n",
               compression ? " (kvcore zstd, LevelDB Snappy, RocksDB zstd)" : "");
    for (int i = 0; i < 3; i++)
        if (!res[i].ok)
            printf("**%s failed: %s**\n\n", ENGINES[i], res[i].error);
    printf("| workload | kvcore ops/s | kvcore MB/s | leveldb ops/s | rocksdb ops/s | "
           "kvcore/leveldb | kvcore/rocksdb |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    int nrows = 0;
    for (int i = 0; i < 3; i++)
        if (res[i].ok && res[i].nrows > nrows)
            nrows = res[i].nrows;
    for (int row = 0; row < nrows; row++) {
        const char *name = NULL;
        double ops[3] = {0, 0, 0};
        double mb = 0;
        for (int i = 0; i < 3; i++)
            if (res[i].ok && row < res[i].nrows) {
                name = res[i].rows[row].name;
                ops[i] = res[i].rows[row].ops_per_sec;
                if (i == 0)
                    mb = res[i].rows[row].mb_per_sec;
            }
        printf("| %s |", name);
        for (int i = 0; i < 3; i++) {
            if (i == 1)
                printf(" %.1f |", mb);
            if (res[i].ok)
                printf(" %.0f |", ops[i]);
            else
                printf(" - |");
        }
        print_ratio(ops[0], ops[1]);
        print_ratio(ops[0], ops[2]);
        printf("\n");
    }
    printf("| write amp (fillrandom+overwrite, to close) | %.2f | | %.2f | %.2f |",
           res[0].total_write_amp, res[1].total_write_amp, res[2].total_write_amp);
    print_ratio(res[1].total_write_amp, res[0].total_write_amp);
    print_ratio(res[2].total_write_amp, res[0].total_write_amp);
    printf("\n| space amp (after overwrite) | %.2f | | %.2f | %.2f |", res[0].space_amp,
           res[1].space_amp, res[2].space_amp);
    print_ratio(res[1].space_amp, res[0].space_amp);
    print_ratio(res[2].space_amp, res[0].space_amp);
    printf("\n| peak RSS (MiB) | %.1f | | %.1f | %.1f |", res[0].peak_rss_kib / 1024.0,
           res[1].peak_rss_kib / 1024.0, res[2].peak_rss_kib / 1024.0);
    print_ratio(res[1].peak_rss_kib, res[0].peak_rss_kib);
    print_ratio(res[2].peak_rss_kib, res[0].peak_rss_kib);
    double eng[3];
    for (int i = 0; i < 3; i++)
        eng[i] = ((double)res[i].peak_rss_kib - (double)res[i].base_rss_kib) / 1024.0;
    printf("\n| engine RSS (MiB, peak minus the harness's %.0f MiB) | %.1f | | %.1f | %.1f |",
           res[0].base_rss_kib / 1024.0, eng[0], eng[1], eng[2]);
    print_ratio(eng[1], eng[0]);
    print_ratio(eng[2], eng[0]);
    printf("\n\nWrite-amp, space-amp and RSS ratios are peer/kvcore (above 1: kvcore uses "
           "less). Per-phase write amp (kvcore / leveldb / rocksdb):");
    for (int row = 0; row < nrows; row++)
        if (res[0].ok && res[0].rows[row].write_amp >= 0)
            printf(" %s %.2f / %.2f / %.2f;", res[0].rows[row].name, res[0].rows[row].write_amp,
                   res[1].ok ? res[1].rows[row].write_amp : 0,
                   res[2].ok ? res[2].rows[row].write_amp : 0);
    printf("\n");
}

static void usage(void)
{
    fprintf(stderr, "usage: kvbench [--num N] [--value-size B] [--mixed-seconds S] [--dir DIR]\n"
                    "               [--compression on|off|both] [--settings default|matched|both]\n"
                    "               [--memtable-mib M] [--cache-mib C] [--bloom-bits B] [--quick]\n"
                    "               [--verbose] [--writes-only]\n"
                    "               [--engines kvcore,leveldb,rocksdb]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bench_config cfg = {1000000, 100, 10.0, "/tmp/kvbench", 32u << 20, 32u << 20, 10, 1, 0};
    int comp_from = 0, comp_to = 1, set_from = 0, set_to = 1;
    const char *engines = "kvcore,leveldb,rocksdb"; /* which engines run; the others show as - */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--verbose") == 0) {
            verbose = 1;
            continue;
        }
        if (strcmp(a, "--writes-only") == 0) {
            cfg.writes_only = 1;
            continue;
        }
        if (strcmp(a, "--quick") == 0) {
            cfg.num = 100000;
            cfg.mixed_seconds = 3;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--num") == 0)
            cfg.num = strtoull(v, NULL, 10);
        else if (strcmp(a, "--value-size") == 0)
            cfg.value_size = atoi(v);
        else if (strcmp(a, "--mixed-seconds") == 0)
            cfg.mixed_seconds = atof(v);
        else if (strcmp(a, "--dir") == 0)
            cfg.dir = v;
        else if (strcmp(a, "--memtable-mib") == 0)
            cfg.memtable_bytes = strtoull(v, NULL, 10) << 20;
        else if (strcmp(a, "--cache-mib") == 0)
            cfg.cache_bytes = strtoull(v, NULL, 10) << 20;
        else if (strcmp(a, "--engines") == 0)
            engines = v;
        else if (strcmp(a, "--bloom-bits") == 0)
            cfg.bloom_bits = atoi(v);
        else if (strcmp(a, "--compression") == 0) {
            comp_from = strcmp(v, "on") == 0;
            comp_to = strcmp(v, "off") != 0;
        } else if (strcmp(a, "--settings") == 0) {
            set_from = strcmp(v, "matched") == 0;
            set_to = strcmp(v, "default") != 0;
        } else
            usage();
    }
    if (cfg.num < 10 || cfg.value_size < 1)
        usage();
    mkdir(cfg.dir, 0755);

    struct utsname u;
    uname(&u);
    time_t t = time(NULL);
    char when[64];
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", gmtime(&t));
    printf("## kvbench: kvcore vs LevelDB %d.%d vs RocksDB %s\n\n", leveldb_major_version(),
           leveldb_minor_version(), "7.8.3 (Debian librocksdb-dev)");
    printf("Run %s on %s %s, %ld cores. Command:", when, u.sysname, u.release,
           sysconf(_SC_NPROCESSORS_ONLN));
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\n\n%" PRIu64 " keys of %d bytes, values of %d bytes (compress to about half), "
           "no fsync (all engines' default), store under %s. Each engine runs in its own "
           "process; bytes written are from /proc/self/io.\n",
           cfg.num, KEY_SIZE, cfg.value_size, cfg.dir);
    fflush(stdout);

    for (int comp = comp_from; comp <= comp_to; comp++)
        for (int matched = set_from; matched <= set_to; matched++) {
            run_result res[3];
            for (int i = 0; i < 3; i++) {
                run_spec rs = {ENGINES[i], comp, matched};
                if (!strstr(engines, ENGINES[i])) {
                    memset(&res[i], 0, sizeof(res[i]));
                    snprintf(res[i].error, sizeof(res[i].error), "not run (--engines)");
                    continue;
                }
                fprintf(stderr, "kvbench: %s compression=%d matched=%d ...\n", ENGINES[i], comp,
                        matched);
                run_in_child(&cfg, &rs, &res[i]);
            }
            print_table(&cfg, comp, matched, res);
            fflush(stdout);
        }
    return 0;
}
