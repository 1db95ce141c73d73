/* vlog.c - the value log: segment files of checksummed (optionally zstd) value records, the
 * pointer encoding the LSM stores instead of large values, reads through pointers, recovery
 * checks and the background GC that moves live records out of mostly-dead segments.
 *
 * See vlog.h for the tags, the invariants and the lock order, and kvcore/FORMAT.md "Value log"
 * for the byte grammar.
 */
#include "db/vlog.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "db/filename.h"
#include "db/wal.h"
#include "table/compress.h"
#include "util/cache.h"
#include "util/checksum.h"

#define VLOG_MIN_COMPRESS 128          /* values shorter than this are never compressed */
#define VLOG_GC_BATCH_BYTES (1u << 20) /* a GC write carries at most about this much */
#define VLOG_MAX_POINTER 32            /* tag + 2 varint64 + 2 varint32 */
#define VLOG_GC_SEGMENTS_PER_PASS 4    /* segments collected per GC pass at most */
#define VLOG_MEASURES_PER_PASS 8       /* segments whose garbage is measured per pass at most */
#define VLOG_HELD_WARN_SECS 300    /* a moved segment kept this long is logged (again each time) */
#define VLOG_SPACE_CHECK_DIVISOR 8 /* free space is read again after low_water / 8 appended */
#define VLOG_FUTILE_MICROS 1000000 /* a futile pass for waiting writers stands this long */
#define VLOG_FUTILE_MIN_MICROS 100000 /* ... or this long if writes were applied since */
/* A writer waits this long for moved segments whose deletion waits for a flush (or a reader)
 * before it takes passes that reclaim nothing for futile. */
#define VLOG_HELD_PATIENCE_MICROS 3000000
/* Room the staged batch is given per op for the key its record repeats (longer keys only cost
 * a realloc): kvfs's chunk keys are 17 bytes. */
#define VLOG_STAGE_KEY_ROOM 32

struct vlog_seg {
    uint64_t number;
    uint64_t size;    /* bytes in the file, header included */
    uint64_t garbage; /* estimated bytes of dead records */
    int damaged;      /* GC met a record it could not read: never deleted (see gc_segment) */
    int moved;        /* GC moved its live records; deleted once gc_* say it is safe */
    uint64_t gc_epoch, gc_seq, gc_log;
    uint64_t moved_at, warned_at; /* monotonic seconds: when GC moved it, when we last said that
                                     its deletion is held back (collect) */
    uint64_t measured_at;  /* bytes_written when its garbage was last measured (measure_garbage) */
    uint64_t measured_ops; /* ops_applied then */
};

struct vlog_pin {
    uint64_t epoch;
    uint64_t readers;
};

/* Bytes of paged record heads kept (about 170 bytes + the cache's entry per 64 KiB chunk of
 * kvfs: the heads of 2 GiB of chunks). */
#define VLOG_HEAD_CACHE_BYTES (8u << 20)

struct vlog {
    char *dir;
    const kv_env *env;
    kv_logger log;
    vlog_db_ops ops;
    size_t threshold;
    uint64_t segment_bytes;
    int gc_percent;
    int compression, level;
    uint32_t write_version; /* VLOG_FORMAT_VERSION (vlog_test_write_version at open) */
    int read_only;
    /* Readable segment handles by number (charge 1 each, LRU; see VLOG_OPEN_SEGMENTS). A read
     * holds a reference while it reads, so eviction never closes a handle in use. Lookups,
     * opens and inserts happen under mu, so that a deleted segment is never re-inserted. */
    cache *handles;
    /* Verified heads (header, key, page sums) of paged records by (segment, offset), charge
     * their size: a partial read then reads only its pages. A record never changes and a
     * segment number is never reused, so an entry never goes stale. */
    cache *heads;

    /* Writer state (invariant 1): leader only, under wmu. */
    pthread_mutex_t wmu;
    env_file *wf;
    uint64_t active; /* number of the segment wf appends to; 0: none yet (written under mu too) */
    uint64_t wsize;  /* its size */
    int dirty;       /* appended since the last sync */
    int wfailed;     /* an append or sync failed: continue in a new segment */
    buf wbuf;        /* struct iovecs: the records of the group being committed, in the
                        batches they were staged in (written with one writev, not copied) */
    size_t wpending; /* the bytes wbuf's iovecs hold */
    kv_batch *out;   /* the committed group (pointers) */
    /* Leader only, filled before wmu is taken so that no callback into the db (which takes
     * its mu) runs under wmu: file numbers for the rotations a commit may need, and the
     * verdicts of points_at for its GC ops, in order. */
    uint64_t *numbers;
    size_t nnumbers, capnumbers;
    unsigned char *verdicts;
    size_t nverdicts, capverdicts, next_verdict;

    pthread_mutex_t mu; /* protects everything below */
    struct vlog_seg *segs;
    size_t nsegs, capsegs;
    uint64_t epoch;
    struct vlog_pin *pins;
    size_t npins, cappins;
    uint64_t *recovered;
    size_t nrecovered, caprecovered;
    uint64_t newest_at_open; /* the only segment a crash can have left short (invariant 2) */
    uint64_t bytes_written, gc_runs, gc_bytes, gc_deleted;
    uint64_t measures; /* segments measured (measure_garbage) */
    /* Back-pressure (vlog_throttle). low_water 0: off (the env cannot tell free space). */
    uint64_t low_water;
    uint64_t space_avail, space_at; /* free bytes last read, and bytes_written then */
    uint64_t ops_applied; /* write ops in the memtable so far (atomic; vlog_note_applied) */
    /* A pass asked for by waiting writers found nothing to reclaim: when (monotonic us; 0: none
     * since new garbage was counted) and ops_applied then. */
    uint64_t futile_time, futile_ops;
    int gc_running;        /* the GC thread runs passes (gc_main; cleared by vlog_gc_stop) */
    int waiters;           /* writers waiting in vlog_throttle: the GC runs urgently */
    uint64_t passes;       /* passes the GC thread finished; pass_cv is broadcast after each */
    uint64_t pass_written; /* bytes_written as the GC thread last saw it */
    uint64_t pass_written_micros;   /* when it saw it change */
    int last_urgent, last_progress; /* whether the last pass ran for waiters, and did anything */
    uint64_t last_held; /* moved segments still waiting for deletion after the last pass */
    pthread_cond_t pass_cv;
    uint64_t stalls, stall_micros;

    /* Adaptive compression (any thread; a race only shifts when the next probe happens). */
    compress_state cstate;

    /* GC thread. gc_mu protects the flags; gc_run_mu makes passes exclusive. */
    pthread_mutex_t gc_mu, gc_run_mu;
    pthread_cond_t gc_cv;
    pthread_t gc_thread;
    int gc_started, gc_stop, gc_kicked;
};

/* ---- Small helpers ----------------------------------------------------------------------- */

static char *seg_path(const vlog *v, uint64_t number, char *out, size_t n)
{
    return filename_vlog(out, n, v->dir, number);
}

#define SEG_PATH_SIZE(v) (strlen((v)->dir) + FILENAME_MAX_LEN)

static int corrupt(const vlog *v, uint64_t seg, uint64_t off, const char *check)
{
    kv_log(&v->log, KV_LOG_ERROR, "vlog %06" PRIu64 ".vlog: record at offset %" PRIu64 ": %s", seg,
           off, check);
    return KV_ECORRUPT;
}

static uint64_t now_micros(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_secs(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

/* Index of segment `number` in segs, or -1. mu held. */
static long find_seg(const vlog *v, uint64_t number)
{
    size_t lo = 0, hi = v->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->segs[mid].number < number)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->nsegs && v->segs[lo].number == number ? (long)lo : -1;
}

/* Adds segment `number` (larger than every known one, invariant 4). mu held. */
static int push_seg(vlog *v, uint64_t number, uint64_t size)
{
    if (v->nsegs == v->capsegs) {
        size_t cap = v->capsegs ? v->capsegs * 2 : 16;
        struct vlog_seg *s = realloc(v->segs, cap * sizeof(*s));
        if (!s)
            return KV_ENOMEM;
        v->segs = s;
        v->capsegs = cap;
    }
    struct vlog_seg *s = &v->segs[v->nsegs++];
    memset(s, 0, sizeof(*s));
    s->number = number;
    s->size = size;
    s->measured_at = v->bytes_written;
    return 0;
}

static int cmp_seg(const void *a, const void *b)
{
    uint64_t x = ((const struct vlog_seg *)a)->number, y = ((const struct vlog_seg *)b)->number;
    return x < y ? -1 : x > y;
}

/* ---- Marker and open --------------------------------------------------------------------- */

int vlog_marker_exists(const kv_env *env, const char *dir)
{
    char path[strlen(dir) + FILENAME_MAX_LEN];
    uint64_t size;
    int rc = env->file_size(env, filename_vlog_marker(path, sizeof(path), dir), &size);
    if (rc == KV_ENOTFOUND)
        return 0;
    return rc == 0 ? 1 : rc;
}

/* The version written (vlog_test_write_version). */
static uint32_t write_version = VLOG_FORMAT_VERSION;

void vlog_test_write_version(uint32_t version)
{
    __atomic_store_n(&write_version, version, __ATOMIC_RELAXED);
}

/* Marker contents: magic:8 version:4 reserved:4 - the same bytes as a segment header. */
static void put_header(char *h)
{
    coding_put_fixed64(h, VLOG_MAGIC);
    coding_put_fixed32(h + 8, __atomic_load_n(&write_version, __ATOMIC_RELAXED));
    coding_put_fixed32(h + 12, 0);
}

/* Checks a 16-byte header (marker or segment); `what` names the file in messages. */
static int check_header(const vlog *v, const char *what, const char *h, size_t n)
{
    if (n < VLOG_SEGMENT_HEADER_SIZE || coding_get_fixed64(h) != VLOG_MAGIC) {
        kv_log(&v->log, KV_LOG_ERROR, "%s: bad magic number", what);
        return KV_ECORRUPT;
    }
    uint32_t version = coding_get_fixed32(h + 8);
    if (version < VLOG_FORMAT_VERSION_MIN || version > VLOG_FORMAT_VERSION) {
        kv_log(&v->log, KV_LOG_ERROR, "%s: format version %" PRIu32 " is not supported", what,
               coding_get_fixed32(h + 8));
        return KV_EVERSION;
    }
    return 0;
}

/* Reads and checks the marker; *version (may be NULL) receives its format version. */
static int read_marker(vlog *v, uint32_t *version)
{
    char path[SEG_PATH_SIZE(v)];
    char *data;
    size_t len;
    int rc = env_read_file(v->env, filename_vlog_marker(path, sizeof(path), v->dir), &data, &len);
    if (rc != 0)
        return rc;
    rc = check_header(v, VLOG_MARKER_NAME, data, len);
    if (rc == 0 && version)
        *version = coding_get_fixed32(data + 8);
    free(data);
    return rc;
}

/* Writes the marker (durably, replacing any) with the current format version. */
static int write_marker(const char *dir, const kv_env *env, const kv_logger *log)
{
    char h[VLOG_SEGMENT_HEADER_SIZE];
    put_header(h);
    int rc = env_write_file_atomic(env, dir, VLOG_MARKER_NAME, h, sizeof(h));
    if (rc != 0)
        kv_log(log, KV_LOG_ERROR, "%s: cannot write the %s marker: %s", dir, VLOG_MARKER_NAME,
               kv_strerror(rc));
    return rc;
}

/* Lists the segments in the directory (sizes from the file system). */
static int scan_segments(vlog *v)
{
    char **names;
    size_t n;
    int rc = v->env->list_dir(v->env, v->dir, &names, &n);
    if (rc != 0)
        return rc;
    char path[SEG_PATH_SIZE(v)];
    for (size_t i = 0; i < n && rc == 0; i++) {
        enum filename_type type;
        uint64_t number, size = 0;
        if (!filename_parse(names[i], &type, &number) || type != FILE_TYPE_VLOG)
            continue;
        rc = v->env->file_size(v->env, seg_path(v, number, path, sizeof(path)), &size);
        if (rc == 0) {
            rc = push_seg(v, 0, size);
            if (rc == 0) {
                v->segs[v->nsegs - 1].number = number;
                v->segs[v->nsegs - 1].measured_at = UINT64_MAX; /* never measured */
            }
        }
    }
    env_free_names(names, n);
    if (v->nsegs > 1)
        qsort(v->segs, v->nsegs, sizeof(*v->segs), cmp_seg);
    if (v->nsegs > 0)
        v->newest_at_open = v->segs[v->nsegs - 1].number;
    return rc;
}

static void vlog_free(vlog *v)
{
    cache_free(v->handles); /* closes every handle: no read is running any more */
    cache_free(v->heads);
    free(v->segs);
    free(v->pins);
    free(v->recovered);
    free(v->numbers);
    free(v->verdicts);
    buf_free(&v->wbuf);
    if (v->out)
        kv_batch_free(v->out);
    pthread_mutex_destroy(&v->wmu);
    pthread_mutex_destroy(&v->mu);
    pthread_mutex_destroy(&v->gc_mu);
    pthread_mutex_destroy(&v->gc_run_mu);
    pthread_cond_destroy(&v->gc_cv);
    pthread_cond_destroy(&v->pass_cv);
    free(v->dir);
    free(v);
}

uint64_t vlog_segment_cap(uint64_t segment_bytes, uint64_t fs_total)
{
    uint64_t want = segment_bytes ? segment_bytes : VLOG_SEGMENT_DEFAULT_BYTES;
    uint64_t cap = fs_total / VLOG_SEGMENT_DISK_FRACTION;
    if (fs_total == 0)
        return want;
    if (cap < VLOG_SEGMENT_MIN_CAP)
        cap = VLOG_SEGMENT_MIN_CAP;
    return want < cap ? want : cap;
}

/* The file system's size under dir, or 0 when the env cannot tell. */
static uint64_t fs_total_bytes(const kv_env *env, const char *dir)
{
    uint64_t avail = 0, total = 0;
    if (!env->free_space || env->free_space(env, dir, &avail, &total) != 0)
        return 0;
    return total == UINT64_MAX ? 0 : total;
}

int vlog_open(const char *dir, const kv_env *env, const kv_logger *log, const kv_options *opts,
              int creating, const vlog_db_ops *ops, vlog **out)
{
    *out = NULL;
    int exists = vlog_marker_exists(env, dir);
    if (exists < 0)
        return exists;
    if (!exists && (!creating || opts->read_only || opts->value_log_threshold == 0)) {
        if (opts->value_log_threshold > 0 && !creating)
            kv_log(log, KV_LOG_INFO,
                   "%s: the store was created without a value log; value_log_threshold ignored",
                   dir);
        return 0;
    }
    vlog *v = calloc(1, sizeof(*v));
    if (!v)
        return KV_ENOMEM;
    v->dir = strdup(dir);
    v->env = env;
    v->log = *log;
    v->ops = *ops;
    v->threshold = opts->value_log_threshold;
    v->segment_bytes = vlog_segment_cap(opts->value_log_segment_bytes, fs_total_bytes(env, dir));
    v->gc_percent = opts->value_log_gc_percent > 0 ? opts->value_log_gc_percent : 50;
    v->compression = opts->compression;
    v->write_version = __atomic_load_n(&write_version, __ATOMIC_RELAXED);
    v->level = opts->compression_level;
    v->read_only = opts->read_only;
    v->epoch = 1;
    buf_init(&v->wbuf);
    pthread_mutex_init(&v->wmu, NULL);
    pthread_mutex_init(&v->mu, NULL);
    pthread_mutex_init(&v->gc_mu, NULL);
    pthread_mutex_init(&v->gc_run_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&v->gc_cv, &ca);
    pthread_cond_init(&v->pass_cv, &ca);
    pthread_condattr_destroy(&ca);
    v->low_water = env->free_space ? VLOG_LOW_WATER_SEGMENTS * v->segment_bytes : 0;
    v->space_avail = UINT64_MAX; /* read after the first low_water / 8 appended */
    v->out = kv_batch_new();
    v->handles = cache_new(VLOG_OPEN_SEGMENTS(opts->max_open_files));
    v->heads = cache_new(VLOG_HEAD_CACHE_BYTES);
    int rc = v->dir && v->out && v->handles && v->heads ? 0 : KV_ENOMEM;
    uint32_t version = VLOG_FORMAT_VERSION;
    if (rc == 0 && !exists)
        rc = write_marker(dir, env, log);
    else if (rc == 0)
        rc = read_marker(v, &version);
    /* New segments may hold paged records: a binary that reads only version 1 must refuse the
     * store at open rather than meet one. */
    if (rc == 0 && version < __atomic_load_n(&write_version, __ATOMIC_RELAXED) && !opts->read_only)
        rc = write_marker(dir, env, log);
    if (rc == 0)
        rc = scan_segments(v);
    if (rc != 0) {
        vlog_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

/* Syncs and closes the active segment. wmu held. */
static int close_active(vlog *v)
{
    int rc = 0;
    if (v->wf && v->dirty && !v->wfailed)
        rc = env_sync(v->wf);
    if (v->wf && v->wfailed && v->dirty && rc == 0) {
        /* A writer whose append failed may hold a partial record at its end; what came
         * before it is still needed and is synced through a fresh handle. */
        char path[SEG_PATH_SIZE(v)];
        env_file *f;
        rc = v->env->open_appendable(v->env, seg_path(v, v->active, path, sizeof(path)), &f);
        if (rc == 0) {
            rc = env_sync(f);
            env_close(f);
        }
    }
    if (rc != 0)
        return rc;
    env_close(v->wf);
    v->wf = NULL;
    v->dirty = 0;
    v->wfailed = 0;
    return 0;
}

void vlog_close(vlog *v)
{
    if (!v)
        return;
    vlog_gc_stop(v);
    pthread_mutex_lock(&v->wmu);
    int rc = close_active(v);
    if (rc != 0) {
        kv_log(&v->log, KV_LOG_ERROR, "vlog %06" PRIu64 ".vlog: sync at close failed: %s",
               v->active, kv_strerror(rc));
        env_close(v->wf);
    }
    pthread_mutex_unlock(&v->wmu);
    vlog_free(v);
}

/* ---- Encoding ---------------------------------------------------------------------------- */

int vlog_parse_pointer(slice enc, uint64_t *seg, uint64_t *off, uint32_t *size, uint32_t *vlen)
{
    if (enc.size < 1 || (unsigned char)enc.data[0] != VLOG_TAG_POINTER)
        return 0;
    slice in = slice_make(enc.data + 1, enc.size - 1);
    return coding_slice_get_varint64(&in, seg) && coding_slice_get_varint64(&in, off) &&
           coding_slice_get_varint32(&in, size) && coding_slice_get_varint32(&in, vlen) &&
           in.size == 0 && *size >= VLOG_RECORD_HEADER_SIZE;
}

static size_t encode_pointer(char *p, uint64_t seg, uint64_t off, uint32_t size, uint32_t vlen)
{
    char *q = p;
    *q++ = (char)VLOG_TAG_POINTER;
    q = coding_put_varint64(q, seg);
    q = coding_put_varint64(q, off);
    q = coding_put_varint32(q, size);
    q = coding_put_varint32(q, vlen);
    return (size_t)(q - p);
}

/* ---- Records ----------------------------------------------------------------------------- */

/* The bytes of page checksums a paged record of a vlen-byte value carries. */
static uint64_t paged_sums_size(uint64_t vlen)
{
    return (vlen + VLOG_PAGE_SIZE - 1) / VLOG_PAGE_SIZE * 8;
}

/* XXH3-64 of the page of value[0, vlen) that starts at p (the last page may be short). */
static uint64_t page_sum(const char *value, uint64_t vlen, uint64_t p)
{
    return checksum_value(value + p,
                          (size_t)(vlen - p < VLOG_PAGE_SIZE ? vlen - p : VLOG_PAGE_SIZE));
}

/* Whether the sizes of a record header h agree with each other and with a record of `size`
 * bytes, for its type: raw stores the value, paged its page sums then the value, zstd any
 * frame. A type unknown to this version fails too. */
static int record_sizes_ok(const char *h, uint64_t size)
{
    unsigned type = (unsigned char)h[8];
    uint64_t klen = coding_get_fixed32(h + 9), slen = coding_get_fixed32(h + 13);
    uint64_t vlen = coding_get_fixed32(h + 17);
    if (VLOG_RECORD_HEADER_SIZE + klen + slen != size)
        return 0;
    if (type == VLOG_RECORD_RAW)
        return slen == vlen;
    if (type == VLOG_RECORD_PAGED)
        return vlen > 0 && slen == paged_sums_size(vlen) + vlen;
    return type == VLOG_RECORD_ZSTD;
}

/* The bytes the record checksum covers from offset 0 (itself included): the whole record, or
 * of a paged record whose sizes agree (record_sizes_ok) the head up to the end of its sums. */
static uint64_t record_head_size(const char *h, uint64_t size)
{
    if ((unsigned char)h[8] != VLOG_RECORD_PAGED || !record_sizes_ok(h, size))
        return size;
    return VLOG_RECORD_HEADER_SIZE + coding_get_fixed32(h + 9) +
           paged_sums_size(coding_get_fixed32(h + 17));
}

/* Verifies a whole record of size bytes (at least a header): its checksum, its sizes and type,
 * and for a paged record every page. NULL if sound, else the check that failed. */
static const char *record_check(const char *rec, uint64_t size)
{
    uint64_t head = record_head_size(rec, size);
    if (checksum_value(rec + 8, (size_t)head - 8) != coding_get_fixed64(rec))
        return "checksum mismatch";
    if ((unsigned char)rec[8] > VLOG_RECORD_PAGED)
        return "unknown record type";
    if (!record_sizes_ok(rec, size))
        return "record sizes disagree";
    if ((unsigned char)rec[8] != VLOG_RECORD_PAGED)
        return NULL;
    const char *sums = rec + VLOG_RECORD_HEADER_SIZE + coding_get_fixed32(rec + 9);
    const char *value = rec + head;
    uint64_t vlen = coding_get_fixed32(rec + 17);
    for (uint64_t p = 0; p < vlen; p += VLOG_PAGE_SIZE, sums += 8)
        if (page_sum(value, vlen, p) != coding_get_fixed64(sums))
            return "page checksum mismatch";
    return NULL;
}

/* Appends tag + record(key, value) to b. */
static int build_record(vlog *v, buf *b, slice key, slice value)
{
    size_t sums =
        value.size >= VLOG_PAGED_MIN && v->write_version >= 2 ? paged_sums_size(value.size) : 0;
    if (key.size > UINT32_MAX || value.size > UINT32_MAX - VLOG_RECORD_HEADER_SIZE - key.size ||
        sums > UINT32_MAX - VLOG_RECORD_HEADER_SIZE - key.size - value.size)
        return KV_EINVAL;
    size_t start = b->len;
    int type = VLOG_RECORD_RAW;
    int try_zstd =
        v->compression && value.size >= VLOG_MIN_COMPRESS && compress_should_try(&v->cstate, value);
    size_t bound = try_zstd ? ZSTD_compressBound(value.size) : 0;
    int rc = buf_reserve(b, 1 + VLOG_RECORD_HEADER_SIZE + key.size +
                                (bound > value.size + sums ? bound : value.size + sums));
    if (rc != 0)
        return rc;
    char *h = b->data + start + 1;
    char *body = h + VLOG_RECORD_HEADER_SIZE;
    memcpy(body, key.data, key.size);
    size_t stored = value.size;
    if (bound > 0) {
        /* Kept compressed only if that saves at least 1/8. */
        size_t z = compress_try(&v->cstate, compress_thread_cctx(), body + key.size, bound, value,
                                v->level, value.size - value.size / 8);
        if (z > 0) {
            type = VLOG_RECORD_ZSTD;
            stored = z;
        }
    }
    if (type == VLOG_RECORD_RAW && sums > 0) {
        type = VLOG_RECORD_PAGED;
        char *sp = body + key.size;
        for (size_t p = 0; p < value.size; p += VLOG_PAGE_SIZE, sp += 8)
            coding_put_fixed64(sp, page_sum(value.data, value.size, p));
        memcpy(sp, value.data, value.size);
        stored = sums + value.size;
    } else if (type == VLOG_RECORD_RAW) {
        memcpy(body + key.size, value.data, value.size);
    }
    b->data[start] = (char)VLOG_TAG_STAGED;
    h[8] = (char)type;
    coding_put_fixed32(h + 9, (uint32_t)key.size);
    coding_put_fixed32(h + 13, (uint32_t)stored);
    coding_put_fixed32(h + 17, (uint32_t)value.size);
    size_t rec = VLOG_RECORD_HEADER_SIZE + key.size + stored;
    coding_put_fixed64(h, checksum_value(h + 8, record_head_size(h, rec) - 8));
    b->len = start + 1 + rec;
    return 0;
}

struct stage_ctx {
    vlog *v;
    kv_batch *out;
    uint64_t record_bytes;
};

/* Puts key -> tagged value into the staged batch, building the value in place there: a 64 KiB
 * chunk is copied once (into its record), not built aside and copied in. */
static int stage_put(void *ctx, uint64_t seq, slice key, slice value)
{
    (void)seq;
    struct stage_ctx *sc = ctx;
    int large = value.size >= sc->v->threshold && sc->v->threshold > 0;
    size_t hint = 1 + value.size + (large ? VLOG_RECORD_HEADER_SIZE + key.size : 0);
    batch_pending p;
    int rc = batch_put_begin(sc->out, key, hint, &p);
    if (rc != 0)
        return rc;
    buf *rep = &sc->out->rep;
    size_t start = rep->len;
    if (large) {
        rc = build_record(sc->v, rep, key, value);
        if (rc == 0)
            sc->record_bytes += rep->len - start - 1; /* after the staged tag */
    } else {
        char tag = (char)VLOG_TAG_INLINE;
        rc = buf_append(rep, &tag, 1);
        if (rc == 0)
            rc = buf_append(rep, value.data, value.size);
    }
    if (rc != 0) {
        batch_put_abort(sc->out, &p);
        return rc;
    }
    return batch_put_end(sc->out, &p);
}

static int stage_del(void *ctx, uint64_t seq, slice key)
{
    (void)seq;
    struct stage_ctx *sc = ctx;
    return kv_batch_delete(sc->out, key.data, key.size);
}

int vlog_stage_batch(vlog *v, const kv_batch *in, kv_batch **out, uint64_t *record_bytes)
{
    *out = NULL;
    if (record_bytes)
        *record_bytes = 0;
    struct stage_ctx sc = {v, kv_batch_new(), 0};
    if (!sc.out)
        return KV_ENOMEM;
    /* The staged batch is about the size of the user's plus a record header, the key again and
     * page sums per op: taken at once, not by doubling (a 1 MiB write was four reallocs, each
     * faulting in fresh pages), and so that records built in place never move. */
    size_t per_op = 1 + VLOG_RECORD_HEADER_SIZE + CODING_MAX_VARINT32 + VLOG_STAGE_KEY_ROOM;
    if (buf_reserve(&sc.out->rep,
                    in->rep.len + in->rep.len / 256 + (size_t)batch_count(in) * per_op) != 0) {
        kv_batch_free(sc.out);
        return KV_ENOMEM;
    }
    batch_handler h = {stage_put, stage_del, &sc};
    int rc = batch_iterate(buf_slice(&in->rep), &h);
    if (rc != 0) {
        kv_batch_free(sc.out);
        return rc;
    }
    *out = sc.out;
    if (record_bytes)
        *record_bytes = sc.record_bytes;
    return 0;
}

/* ---- Commit (leader) --------------------------------------------------------------------- */

/* Forgets the records queued in wbuf. */
static void wbuf_clear(vlog *v)
{
    buf_clear(&v->wbuf);
    v->wpending = 0;
}

/* Appends the records queued in wbuf to the active segment, and forgets them (on failure too:
 * the commit fails). wmu held. */
static int flush_wbuf(vlog *v)
{
    if (v->wpending == 0 && v->wbuf.len == 0)
        return 0;
    int rc = env_appendv(v->wf, (const struct iovec *)(void *)v->wbuf.data,
                         (int)(v->wbuf.len / sizeof(struct iovec)));
    size_t n = v->wpending;
    wbuf_clear(v);
    if (rc != 0) {
        v->wfailed = 1;
        v->dirty = 1;
        kv_log(&v->log, KV_LOG_ERROR, "vlog %06" PRIu64 ".vlog: append failed: %s", v->active,
               kv_strerror(rc));
        return rc;
    }
    v->dirty = 1;
    v->wsize += n;
    pthread_mutex_lock(&v->mu);
    v->bytes_written += n;
    long i = find_seg(v, v->active);
    if (i >= 0)
        v->segs[i].size = v->wsize;
    pthread_mutex_unlock(&v->mu);
    return 0;
}

/* Closes the active segment (synced) and starts a new one. wmu held. */
static int rotate(vlog *v)
{
    int rc = close_active(v);
    if (rc != 0)
        return rc;
    if (v->nnumbers == 0)
        return KV_EINVAL;            /* cannot happen: vlog_commit_batch reserved enough */
    uint64_t number = v->numbers[0]; /* the oldest: segment numbers must only grow */
    memmove(v->numbers, v->numbers + 1, --v->nnumbers * sizeof(*v->numbers));
    char path[SEG_PATH_SIZE(v)];
    env_file *f;
    rc = v->env->open_writable(v->env, seg_path(v, number, path, sizeof(path)), &f);
    if (rc != 0) {
        kv_log(&v->log, KV_LOG_ERROR, "vlog %06" PRIu64 ".vlog: cannot create: %s", number,
               kv_strerror(rc));
        return rc;
    }
    char h[VLOG_SEGMENT_HEADER_SIZE];
    put_header(h);
    rc = env_append(f, h, sizeof(h));
    /* The header is synced on its own, before any record: otherwise a power cut could keep a
     * later page of the file and lose the header's, leaving a segment no reader or GC pass
     * accepts (found by crash_engine, fault_env's page-loss mode). The name must be durable
     * before a synced WAL record points into the file. One sync more per segment. */
    if (rc == 0)
        rc = env_sync(f);
    if (rc == 0)
        rc = v->env->sync_dir(v->env, v->dir);
    if (rc == 0) {
        pthread_mutex_lock(&v->mu);
        rc = push_seg(v, number, sizeof(h));
        v->bytes_written += sizeof(h);
        if (rc == 0)
            v->active = number; /* read by the GC under mu */
        pthread_mutex_unlock(&v->mu);
    }
    if (rc != 0) {
        kv_log(&v->log, KV_LOG_ERROR, "vlog %06" PRIu64 ".vlog: cannot start: %s", number,
               kv_strerror(rc));
        env_close(f);
        v->env->unlink(v->env, path);
        return rc;
    }
    v->wf = f;
    v->wsize = sizeof(h);
    v->dirty = 1;
    return 0;
}

/* Makes room for a record of n bytes in the active segment. wmu held. */
static int make_room(vlog *v, size_t n)
{
    if (v->wf && !v->wfailed &&
        (v->wsize + v->wpending + n <= v->segment_bytes ||
         v->wsize + v->wpending == VLOG_SEGMENT_HEADER_SIZE))
        return 0;
    int rc = v->wf && !v->wfailed ? flush_wbuf(v) : 0;
    return rc ? rc : rotate(v);
}

/* Queues record `rec` for the active segment and puts key -> pointer into out. wmu held. */
static int commit_record(vlog *v, slice key, slice rec)
{
    if (rec.size < VLOG_RECORD_HEADER_SIZE || rec.size > UINT32_MAX)
        return KV_EINVAL; /* cannot happen: staged by vlog_stage_batch */
    int rc = make_room(v, rec.size);
    if (rc != 0)
        return rc;
    uint64_t off = v->wsize + v->wpending;
    /* Queued by reference: the staged batch outlives the commit's writev. */
    struct iovec iov = {(void *)(uintptr_t)rec.data, rec.size};
    if ((rc = buf_append(&v->wbuf, (const char *)&iov, sizeof(iov))) != 0)
        return rc;
    v->wpending += rec.size;
    char p[VLOG_MAX_POINTER];
    size_t plen =
        encode_pointer(p, v->active, off, (uint32_t)rec.size, coding_get_fixed32(rec.data + 17));
    return kv_batch_put(v->out, key.data, key.size, p, plen);
}

struct commit_ctx {
    vlog *v;
    uint64_t user_bytes;
    uint64_t records, record_bytes;
};

/* Decides a GC op now, before wmu is taken (see `verdicts`). Leader only. */
static int add_verdict(vlog *v, slice key, slice value)
{
    slice in = slice_make(value.data + 1, value.size - 1);
    uint64_t seg, off;
    if (!coding_slice_get_varint64(&in, &seg) || !coding_slice_get_varint64(&in, &off))
        return KV_EINVAL; /* cannot happen: built by add_gc_op */
    int live = v->ops.points_at(v->ops.ctx, key, seg, off);
    if (live < 0)
        return live;
    if (v->nverdicts == v->capverdicts) {
        size_t cap = v->capverdicts ? v->capverdicts * 2 : 64;
        unsigned char *p = realloc(v->verdicts, cap);
        if (!p)
            return KV_ENOMEM;
        v->verdicts = p;
        v->capverdicts = cap;
    }
    v->verdicts[v->nverdicts++] = (unsigned char)live;
    return 0;
}

static int scan_put(void *ctx, uint64_t seq, slice key, slice value)
{
    (void)seq;
    struct commit_ctx *cc = ctx;
    if (value.size == 0)
        return KV_EINVAL; /* cannot happen: staged values carry a tag */
    unsigned tag = (unsigned char)value.data[0];
    if (tag == VLOG_TAG_STAGED || tag == VLOG_TAG_GC) {
        cc->records++;
        cc->record_bytes += value.size;
        if (tag == VLOG_TAG_GC) {
            int rc = add_verdict(cc->v, key, value);
            if (rc != 0)
                return rc;
        }
    } else if (tag != VLOG_TAG_INLINE) {
        return KV_EINVAL;
    }
    cc->user_bytes += key.size + value.size - 1;
    return 0;
}

/* Reserves the file numbers a commit of `records` records, `bytes` in all, may need: a segment
 * closes only when the next record does not fit, so each rotation but two is paid for by half
 * a segment of this commit's bytes or by a record larger than that. Leader only, before wmu. */
static int reserve_numbers(vlog *v, uint64_t records, uint64_t bytes)
{
    uint64_t need = bytes / (v->segment_bytes / 2 + 1) + 3;
    if (need > records + 1)
        need = records + 1;
    if (need > v->capnumbers) {
        uint64_t *p = realloc(v->numbers, need * sizeof(*p));
        if (!p)
            return KV_ENOMEM;
        v->numbers = p;
        v->capnumbers = need;
    }
    while (v->nnumbers < need)
        v->numbers[v->nnumbers++] = v->ops.new_file_number(v->ops.ctx);
    return 0;
}

static int scan_del(void *ctx, uint64_t seq, slice key)
{
    (void)seq;
    struct commit_ctx *cc = ctx;
    cc->user_bytes += key.size;
    return 0;
}

static int commit_put(void *ctx, uint64_t seq, slice key, slice value)
{
    (void)seq;
    struct commit_ctx *cc = ctx;
    vlog *v = cc->v;
    unsigned tag = (unsigned char)value.data[0];
    if (tag == VLOG_TAG_INLINE)
        return kv_batch_put(v->out, key.data, key.size, value.data, value.size);
    slice rec = slice_make(value.data + 1, value.size - 1);
    if (tag == VLOG_TAG_GC) {
        uint64_t seg, off;
        if (!coding_slice_get_varint64(&rec, &seg) || !coding_slice_get_varint64(&rec, &off) ||
            v->next_verdict >= v->nverdicts)
            return KV_EINVAL; /* cannot happen: checked by the scan */
        if (!v->verdicts[v->next_verdict++])
            return 0; /* moved on since the GC looked: the newer write stays */
    }
    return commit_record(v, key, rec);
}

static int commit_del(void *ctx, uint64_t seq, slice key)
{
    (void)seq;
    struct commit_ctx *cc = ctx;
    return kv_batch_delete(cc->v->out, key.data, key.size);
}

/* Syncs the active segment if it holds unsynced records. wmu held. */
static int sync_active(vlog *v)
{
    if (!v->wf || !v->dirty)
        return 0;
    if (v->wfailed)
        return close_active(v); /* syncs what the failed writer holds; the next commit rotates */
    int rc = env_sync(v->wf);
    if (rc != 0) {
        v->wfailed = 1; /* the kernel may have dropped the pages: never trust this file again */
        kv_log(&v->log, KV_LOG_ERROR, "vlog %06" PRIu64 ".vlog: sync failed: %s", v->active,
               kv_strerror(rc));
        return rc;
    }
    v->dirty = 0;
    return 0;
}

int vlog_commit_batch(vlog *v, const kv_batch *staged, int sync, const kv_batch **out,
                      uint64_t *user_bytes)
{
    *out = NULL;
    struct commit_ctx cc = {v, 0, 0, 0};
    batch_handler scan = {scan_put, scan_del, &cc};
    v->nverdicts = v->next_verdict = 0;
    int rc = batch_iterate(buf_slice(&staged->rep), &scan);
    *user_bytes = cc.user_bytes;
    if (rc == 0 && cc.records > 0)
        rc = reserve_numbers(v, cc.records, cc.record_bytes);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&v->wmu);
    if (cc.records == 0) {
        rc = sync ? sync_active(v) : 0;
        pthread_mutex_unlock(&v->wmu);
        if (rc == 0)
            *out = staged;
        return rc;
    }
    kv_batch_clear(v->out);
    wbuf_clear(v);
    batch_handler h = {commit_put, commit_del, &cc};
    rc = batch_iterate(buf_slice(&staged->rep), &h);
    if (rc == 0)
        rc = flush_wbuf(v);
    if (rc == 0 && sync)
        rc = sync_active(v);
    wbuf_clear(v);
    pthread_mutex_unlock(&v->wmu);
    if (rc == 0)
        *out = v->out;
    return rc;
}

int vlog_sync(vlog *v)
{
    pthread_mutex_lock(&v->wmu);
    int rc = sync_active(v);
    pthread_mutex_unlock(&v->wmu);
    return rc;
}

/* ---- Reads ------------------------------------------------------------------------------- */

static void seg_key(char *k, uint64_t number)
{
    coding_put_fixed64(k, number);
}

static void close_handle(slice key, void *value)
{
    (void)key;
    env_close(value);
}

/* A reference to the readable handle of segment `number` (from the cache, or opened now), or
 * NULL with *rc set; release it with cache_release(v->handles, h). *size receives the segment's
 * size. The segment itself stays while the caller holds a pin (invariant 3). */
static cache_handle *seg_reader(vlog *v, uint64_t number, int *rc, uint64_t *size)
{
    char k[8];
    seg_key(k, number);
    *rc = 0;
    *size = 0;
    pthread_mutex_lock(&v->mu);
    long i = find_seg(v, number);
    cache_handle *h = NULL;
    if (i < 0) {
        *rc = KV_ECORRUPT;
    } else if ((*size = v->segs[i].size, h = cache_lookup(v->handles, slice_make(k, 8))) == NULL) {
        char path[SEG_PATH_SIZE(v)];
        env_file *f = NULL;
        *rc = v->env->open_readable(v->env, seg_path(v, number, path, sizeof(path)), &f);
        if (*rc == 0 &&
            (h = cache_insert(v->handles, slice_make(k, 8), f, 1, close_handle)) == NULL)
            *rc = KV_ENOMEM; /* the deleter closed f */
    }
    pthread_mutex_unlock(&v->mu);
    return h;
}

uint64_t vlog_open_segments(vlog *v)
{
    return cache_total_charge(v->handles);
}

/* Checks record `rec` (size bytes, read from seg at off): checksum, sizes, key (if key.data),
 * and puts the value into *scratch (decompressing) with *out pointing at it. */
static int decode_record(vlog *v, uint64_t seg, uint64_t off, slice rec, slice key,
                         uint32_t want_vlen, buf *scratch, slice *out)
{
    const char *h = rec.data;
    if (rec.size < VLOG_RECORD_HEADER_SIZE)
        return corrupt(v, seg, off, "shorter than a record header");
    if (checksum_value(h + 8, (size_t)record_head_size(h, rec.size) - 8) != coding_get_fixed64(h))
        return corrupt(v, seg, off, "checksum mismatch");
    unsigned type = (unsigned char)h[8];
    uint64_t klen = coding_get_fixed32(h + 9), slen = coding_get_fixed32(h + 13);
    uint32_t vlen = coding_get_fixed32(h + 17);
    if (VLOG_RECORD_HEADER_SIZE + klen + slen != rec.size)
        return corrupt(v, seg, off, "record sizes disagree with the pointer");
    if (type > VLOG_RECORD_PAGED)
        return corrupt(v, seg, off, "unknown record type");
    if (vlen != want_vlen)
        return corrupt(v, seg, off, "value length disagrees with the pointer");
    slice rkey = slice_make(h + VLOG_RECORD_HEADER_SIZE, klen);
    if (key.data && !slice_equal(rkey, key))
        return corrupt(v, seg, off, "record belongs to another key");
    const char *stored = rkey.data + klen;
    buf_clear(scratch);
    if (type != VLOG_RECORD_ZSTD) {
        if (!record_sizes_ok(h, rec.size))
            return corrupt(v, seg, off, "raw record length mismatch");
        const char *failed = record_check(h, rec.size);
        if (failed)
            return corrupt(v, seg, off, failed);
        if (buf_append(scratch, stored + (slen - vlen), vlen) != 0)
            return KV_ENOMEM;
    } else {
        unsigned long long claimed = ZSTD_getFrameContentSize(stored, slen);
        if (claimed != vlen)
            return corrupt(v, seg, off, "zstd frame size disagrees with the record");
        if (buf_reserve(scratch, (size_t)vlen + 1) != 0)
            return KV_ENOMEM;
        int rc = compress_decompress(slice_make(stored, slen), scratch->data, vlen);
        if (rc == KV_ECORRUPT)
            return corrupt(v, seg, off, "zstd decompression failed or wrong size");
        if (rc != 0)
            return rc;
        scratch->len = vlen;
    }
    *out = buf_slice(scratch);
    return 0;
}

/* seg_reader for a read of the record at off that a pointer names: NULL with the error in *rc
 * (logged: a missing segment is KV_ECORRUPT). */
static cache_handle *pointed_segment(vlog *v, uint64_t seg, uint64_t off, int *rc,
                                     uint64_t *seg_size)
{
    cache_handle *h = seg_reader(v, seg, rc, seg_size);
    if (h)
        return h;
    if (*rc == KV_ECORRUPT || *rc == KV_ENOTFOUND)
        *rc = corrupt(v, seg, off, "pointer to a segment that does not exist");
    else
        kv_log(&v->log, KV_LOG_ERROR, "vlog %06" PRIu64 ".vlog: cannot open: %s", seg,
               kv_strerror(*rc));
    return NULL;
}

/* Reads the record a pointer names into *raw (the record bytes). */
static int read_record(vlog *v, uint64_t seg, uint64_t off, uint32_t size, buf *raw)
{
    int rc;
    uint64_t seg_size;
    cache_handle *h = pointed_segment(v, seg, off, &rc, &seg_size);
    if (!h)
        return rc;
    size_t got = 0;
    if (off > seg_size || size > seg_size - off) {
        rc = corrupt(v, seg, off, "record runs past the end of the segment");
    } else {
        buf_clear(raw);
        rc = buf_reserve(raw, size) != 0 ? KV_ENOMEM : 0;
    }
    if (rc == 0)
        rc = env_pread(cache_value(h), raw->data, size, off, &got);
    cache_release(v->handles, h);
    if (rc == KV_ECORRUPT || rc == KV_ENOMEM)
        return rc;
    if (rc != 0) {
        kv_log(&v->log, KV_LOG_ERROR,
               "vlog %06" PRIu64 ".vlog: read of %" PRIu32 " bytes at offset %" PRIu64 ": %s", seg,
               size, off, kv_strerror(rc));
        return rc;
    }
    if (got != size)
        return corrupt(v, seg, off, "record runs past the end of the segment");
    raw->len = size;
    return 0;
}

int vlog_resolve(vlog *v, slice key, slice enc, buf *scratch, slice *out)
{
    *out = slice_make("", 0);
    if (enc.size >= 1 && (unsigned char)enc.data[0] == VLOG_TAG_INLINE) {
        *out = slice_make(enc.data + 1, enc.size - 1);
        return 0;
    }
    uint64_t seg, off;
    uint32_t size, vlen;
    if (!vlog_parse_pointer(enc, &seg, &off, &size, &vlen)) {
        kv_log(&v->log, KV_LOG_ERROR, "vlog: malformed stored value (%zu bytes, tag %d)", enc.size,
               enc.size ? (unsigned char)enc.data[0] : -1);
        return KV_ECORRUPT;
    }
    buf raw;
    buf_init(&raw);
    int rc = read_record(v, seg, off, size, &raw);
    if (rc == 0)
        rc = decode_record(v, seg, off, buf_slice(&raw), key, vlen, scratch, out);
    buf_free(&raw);
    if (rc != 0)
        *out = slice_make("", 0);
    return rc;
}

/* Reads [at, at + n) of segment seg's open handle h (seg_size bytes) into dst: 0, KV_ECORRUPT
 * for bytes past the end (logged against the record at off), or an I/O error (logged). */
static int read_span(vlog *v, cache_handle *h, uint64_t seg_size, uint64_t seg, uint64_t off,
                     uint64_t at, void *dst, size_t n)
{
    if (at > seg_size || n > seg_size - at)
        return corrupt(v, seg, off, "record runs past the end of the segment");
    size_t got = 0;
    int rc = env_pread(cache_value(h), dst, n, at, &got);
    if (rc != 0) {
        kv_log(&v->log, KV_LOG_ERROR,
               "vlog %06" PRIu64 ".vlog: read of %zu bytes at offset %" PRIu64 ": %s", seg, n, at,
               kv_strerror(rc));
        return rc;
    }
    return got == n ? 0 : corrupt(v, seg, off, "record runs past the end of the segment");
}

static void free_head(slice key, void *value)
{
    (void)key;
    free(value);
}

/* The verified head of the paged record at (seg, off) that a pointer of `size` bytes and
 * want_vlen names, from the head cache or read now (with the bytes after it up to `ahead`,
 * when that is more): *h points at it, in *ch (release it with cache_release(v->heads)) or in
 * scratch, *got receives the bytes of the record at *h. 1 if the record is not paged (the
 * caller reads it whole), 0, or an error. */
static int paged_head(vlog *v, cache_handle *fh, uint64_t seg_size, slice key, uint64_t seg,
                      uint64_t off, uint32_t size, uint32_t want_vlen, uint64_t ahead, buf *scratch,
                      cache_handle **ch, const char **h, uint64_t *got)
{
    char hkey[16];
    coding_put_fixed64(hkey, seg);
    coding_put_fixed64(hkey + 8, off);
    uint64_t sums = paged_sums_size(want_vlen);
    *ch = cache_lookup(v->heads, slice_make(hkey, 16));
    if (*ch) {
        /* Verified when it was read: only its agreement with this pointer and key is open. */
        *h = cache_value(*ch);
        uint64_t klen = coding_get_fixed32(*h + 9);
        *got = VLOG_RECORD_HEADER_SIZE + klen + sums;
        if (!record_sizes_ok(*h, size) || coding_get_fixed32(*h + 17) != want_vlen)
            return corrupt(v, seg, off, "record sizes disagree with the pointer");
        if (key.data && !slice_equal(slice_make(*h + VLOG_RECORD_HEADER_SIZE, klen), key))
            return corrupt(v, seg, off, "record belongs to another key");
        return 0;
    }
    /* The head as the pointer and key predict it, and what follows up to `ahead`. */
    uint64_t want = VLOG_RECORD_HEADER_SIZE + (key.data ? key.size : 0) + sums;
    want = ahead > want ? ahead : want;
    want = want > size ? size : want;
    buf_clear(scratch);
    int rc = buf_reserve(scratch, (size_t)want) != 0 ? KV_ENOMEM : 0;
    if (rc == 0)
        rc = read_span(v, fh, seg_size, seg, off, off, scratch->data, (size_t)want);
    *h = scratch->data;
    *got = want;
    if (rc != 0)
        return rc;
    if ((unsigned char)(*h)[8] != VLOG_RECORD_PAGED)
        return 1;
    if (!record_sizes_ok(*h, size))
        return corrupt(v, seg, off, "record sizes disagree with the pointer");
    if (coding_get_fixed32(*h + 17) != want_vlen)
        return corrupt(v, seg, off, "value length disagrees with the pointer");
    /* The sizes agree with the pointer's, so the head lies inside the record. */
    uint64_t klen = coding_get_fixed32(*h + 9), hsize = VLOG_RECORD_HEADER_SIZE + klen + sums;
    if (hsize > want) { /* the key is longer than predicted: read the rest of the head */
        if (buf_reserve(scratch, (size_t)hsize) != 0)
            return KV_ENOMEM;
        *h = scratch->data;
        rc = read_span(v, fh, seg_size, seg, off, off + want, scratch->data + want,
                       (size_t)(hsize - want));
        if (rc != 0)
            return rc;
        *got = hsize;
    }
    if (checksum_value(*h + 8, (size_t)hsize - 8) != coding_get_fixed64(*h))
        return corrupt(v, seg, off, "checksum mismatch");
    if (key.data && !slice_equal(slice_make(*h + VLOG_RECORD_HEADER_SIZE, klen), key))
        return corrupt(v, seg, off, "record belongs to another key");
    char *copy = malloc((size_t)hsize);
    if (copy) { /* best effort: without it the next read reads the head again */
        memcpy(copy, *h, (size_t)hsize);
        cache_handle *nh =
            cache_insert(v->heads, slice_make(hkey, 16), copy, (size_t)hsize, free_head);
        if (nh)
            cache_release(v->heads, nh);
    }
    return 0;
}

/* vlog_resolve_range of a record that may be paged (want_vlen >= VLOG_PAGED_MIN): takes its
 * verified head from the head cache and reads only the pages of [from, from + len), or, when
 * the head is not cached, reads the record from its start to the end of those pages in one
 * read (one I/O where two small ones would each wait for a cold disk: this is the first read
 * of the record since the store opened, or since its head was evicted); verifies the pages and
 * copies the range to dst. 1 if the record is not paged (the caller reads it whole), 0, or an
 * error. */
static int read_paged_range(vlog *v, slice key, uint64_t seg, uint64_t off, uint32_t size,
                            uint32_t want_vlen, uint64_t from, char *dst, size_t len, buf *scratch)
{
    uint64_t seg_size;
    int rc;
    cache_handle *fh = pointed_segment(v, seg, off, &rc, &seg_size);
    if (!fh)
        return rc;
    if (off > seg_size || size > seg_size - off) { /* before any allocation sized by it */
        cache_release(v->handles, fh);
        return corrupt(v, seg, off, "record runs past the end of the segment");
    }
    uint64_t first = from / VLOG_PAGE_SIZE * VLOG_PAGE_SIZE;
    uint64_t last = len < want_vlen - from ? from + len : want_vlen; /* end of the range */
    uint64_t pend = (last + VLOG_PAGE_SIZE - 1) / VLOG_PAGE_SIZE * VLOG_PAGE_SIZE;
    if (pend > want_vlen)
        pend = want_vlen;
    uint64_t hpred =
        VLOG_RECORD_HEADER_SIZE + (key.data ? key.size : 0) + paged_sums_size(want_vlen);
    cache_handle *ch = NULL;
    const char *h = NULL;
    uint64_t got = 0;
    rc = paged_head(v, fh, seg_size, key, seg, off, size, want_vlen, hpred + pend, scratch, &ch, &h,
                    &got);
    uint64_t hsize =
        rc == 0 ? VLOG_RECORD_HEADER_SIZE + coding_get_fixed32(h + 9) + paged_sums_size(want_vlen)
                : 0;
    /* The pages [first, pend): among the bytes read with the head, or read now. */
    const char *pages = NULL;
    if (rc == 0 && !ch && got >= hsize + pend) {
        pages = h + hsize + first;
    } else if (rc == 0) {
        size_t at = ch ? 0 : (size_t)got; /* after the head in scratch, or at its start */
        rc = buf_reserve(scratch, at + (size_t)(pend - first)) != 0 ? KV_ENOMEM : 0;
        if (!ch)
            h = scratch->data;
        if (rc == 0)
            rc = read_span(v, fh, seg_size, seg, off, off + hsize + first, scratch->data + at,
                           (size_t)(pend - first));
        pages = scratch->data + at;
    }
    if (rc == 0) {
        const char *sum =
            h + VLOG_RECORD_HEADER_SIZE + coding_get_fixed32(h + 9) + first / VLOG_PAGE_SIZE * 8;
        for (uint64_t p = first; p < pend && rc == 0; p += VLOG_PAGE_SIZE, sum += 8)
            if (checksum_value(pages + (p - first),
                               (size_t)(pend - p < VLOG_PAGE_SIZE ? pend - p : VLOG_PAGE_SIZE)) !=
                coding_get_fixed64(sum))
                rc = corrupt(v, seg, off, "page checksum mismatch");
    }
    if (rc == 0)
        memcpy(dst, pages + (from - first), (size_t)(last - from));
    if (ch)
        cache_release(v->heads, ch);
    cache_release(v->handles, fh);
    return rc;
}

int vlog_resolve_range(vlog *v, slice key, slice enc, uint64_t off, void *dst, size_t len,
                       size_t *n, uint64_t *vlen, buf *scratch)
{
    *n = 0;
    *vlen = 0;
    if (enc.size >= 1 && (unsigned char)enc.data[0] == VLOG_TAG_INLINE) {
        *vlen = enc.size - 1;
        if (off < *vlen) {
            *n = *vlen - off < len ? (size_t)(*vlen - off) : len;
            memcpy(dst, enc.data + 1 + off, *n);
        }
        return 0;
    }
    uint64_t seg, roff;
    uint32_t size, want;
    if (!vlog_parse_pointer(enc, &seg, &roff, &size, &want)) {
        kv_log(&v->log, KV_LOG_ERROR, "vlog: malformed stored value (%zu bytes, tag %d)", enc.size,
               enc.size ? (unsigned char)enc.data[0] : -1);
        return KV_ECORRUPT;
    }
    *vlen = want;
    if (off >= want || len == 0)
        return 0;
    int rc = 1;
    if (want >= VLOG_PAGED_MIN)
        rc = read_paged_range(v, key, seg, roff, size, want, off, dst, len, scratch);
    if (rc == 1) { /* not paged: the whole record */
        slice out;
        rc = vlog_resolve(v, key, enc, scratch, &out);
        if (rc == 0 && out.size != want)
            rc = KV_ECORRUPT; /* cannot happen: decode_record checked vlen */
        if (rc == 0)
            memcpy(dst, out.data + off, want - off < len ? (size_t)(want - off) : len);
    }
    if (rc == 0)
        *n = want - off < len ? (size_t)(want - off) : len;
    return rc;
}

uint64_t vlog_pin(vlog *v)
{
    pthread_mutex_lock(&v->mu);
    uint64_t e = v->epoch;
    if (v->npins == 0 || v->pins[v->npins - 1].epoch != e) {
        if (v->npins == v->cappins) {
            size_t cap = v->cappins ? v->cappins * 2 : 8;
            struct vlog_pin *p = realloc(v->pins, cap * sizeof(*p));
            if (!p) {
                /* Out of memory: pin the oldest epoch instead, which is always safe. */
                if (v->npins > 0) {
                    v->pins[0].readers++;
                    e = v->pins[0].epoch;
                    pthread_mutex_unlock(&v->mu);
                    return e;
                }
                pthread_mutex_unlock(&v->mu);
                return 0; /* epoch 0 is never pinned: the reader is unprotected */
            }
            v->pins = p;
            v->cappins = cap;
        }
        v->pins[v->npins].epoch = e;
        v->pins[v->npins].readers = 0;
        v->npins++;
    }
    v->pins[v->npins - 1].readers++;
    pthread_mutex_unlock(&v->mu);
    return e;
}

void vlog_unpin(vlog *v, uint64_t epoch)
{
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < v->npins; i++) {
        if (v->pins[i].epoch != epoch)
            continue;
        if (--v->pins[i].readers == 0) {
            memmove(&v->pins[i], &v->pins[i + 1], (v->npins - i - 1) * sizeof(*v->pins));
            v->npins--;
        }
        break;
    }
    pthread_mutex_unlock(&v->mu);
}

/* ---- Recovery ---------------------------------------------------------------------------- */

struct verify_ctx {
    vlog *v;
    buf scratch;
};

static int note_recovered(vlog *v, uint64_t seg)
{
    pthread_mutex_lock(&v->mu);
    int rc = 0;
    if (v->nrecovered == 0 || v->recovered[v->nrecovered - 1] != seg) {
        if (v->nrecovered == v->caprecovered) {
            size_t cap = v->caprecovered ? v->caprecovered * 2 : 8;
            uint64_t *p = realloc(v->recovered, cap * sizeof(*p));
            if (p) {
                v->recovered = p;
                v->caprecovered = cap;
            } else {
                rc = KV_ENOMEM;
            }
        }
        if (rc == 0)
            v->recovered[v->nrecovered++] = seg;
    }
    pthread_mutex_unlock(&v->mu);
    return rc;
}

/* Every segment but the newest was synced when it was closed, or by the recovery that followed
 * its crash, before anything that needs it was made durable: a pointer into one of those only
 * has to lie inside it. Records of the newest are read and checked in full (at most one
 * segment's worth, whatever the size of the WAL). */
static int verify_put(void *ctx, uint64_t seq, slice key, slice value)
{
    (void)seq;
    struct verify_ctx *vc = ctx;
    vlog *v = vc->v;
    if (value.size >= 1 && (unsigned char)value.data[0] == VLOG_TAG_INLINE)
        return 0;
    uint64_t seg, off;
    uint32_t size, vlen;
    if (!vlog_parse_pointer(value, &seg, &off, &size, &vlen)) {
        kv_log(&v->log, KV_LOG_ERROR, "vlog: malformed stored value in a WAL record");
        return KV_ECORRUPT;
    }
    if (seg != v->newest_at_open) {
        pthread_mutex_lock(&v->mu);
        long i = find_seg(v, seg);
        int inside = i >= 0 && off <= v->segs[i].size && size <= v->segs[i].size - off;
        pthread_mutex_unlock(&v->mu);
        return inside ? 0 : corrupt(v, seg, off, "pointer outside the segment");
    }
    slice out;
    int rc = vlog_resolve(v, key, value, &vc->scratch, &out);
    return rc == 0 ? note_recovered(v, seg) : rc;
}

static int verify_del(void *ctx, uint64_t seq, slice key)
{
    (void)ctx;
    (void)seq;
    (void)key;
    return 0;
}

int vlog_verify_batch(vlog *v, slice rep)
{
    struct verify_ctx vc = {v, {0}};
    batch_handler h = {verify_put, verify_del, &vc};
    int rc = batch_iterate(rep, &h);
    buf_free(&vc.scratch);
    return rc;
}

int vlog_sync_recovered(vlog *v)
{
    int rc = 0;
    char path[SEG_PATH_SIZE(v)];
    for (size_t i = 0; i < v->nrecovered && rc == 0; i++) {
        env_file *f;
        /* open_appendable writes nothing; fsync covers the inode whatever handle asks. */
        rc = v->env->open_appendable(v->env, seg_path(v, v->recovered[i], path, sizeof(path)), &f);
        if (rc == 0) {
            rc = env_sync(f);
            env_close(f);
        }
        if (rc != 0)
            kv_log(&v->log, KV_LOG_ERROR, "vlog %06" PRIu64 ".vlog: sync at recovery failed: %s",
                   v->recovered[i], kv_strerror(rc));
    }
    if (rc == 0)
        v->nrecovered = 0;
    return rc;
}

/* ---- Accounting -------------------------------------------------------------------------- */

void vlog_note_dropped(vlog *v, slice enc)
{
    uint64_t seg, off;
    uint32_t size, vlen;
    if (!vlog_parse_pointer(enc, &seg, &off, &size, &vlen))
        return;
    pthread_mutex_lock(&v->mu);
    long i = find_seg(v, seg);
    if (i >= 0) {
        struct vlog_seg *s = &v->segs[i];
        s->garbage += size;
        if (s->garbage > s->size)
            s->garbage = s->size;
        v->futile_time = 0; /* new garbage: a waiting writer may ask the GC again */
    }
    pthread_mutex_unlock(&v->mu);
    if (i >= 0)
        vlog_gc_kick(v);
}

void vlog_get_stats(vlog *v, kv_stats *st)
{
    pthread_mutex_lock(&v->mu);
    uint64_t total = 0, garbage = 0, now = now_secs();
    for (size_t i = 0; i < v->nsegs; i++) {
        const struct vlog_seg *s = &v->segs[i];
        total += s->size;
        garbage += s->moved ? s->size : s->garbage;
        st->vlog_damaged_segments += s->damaged != 0;
        if (s->moved) {
            st->vlog_held_segments++;
            st->vlog_held_bytes += s->size;
            if (now - s->moved_at > st->vlog_held_seconds)
                st->vlog_held_seconds = now - s->moved_at;
        }
    }
    st->vlog_open_segments = cache_total_charge(v->handles);
    st->vlog_segments = v->nsegs;
    st->vlog_bytes = total;
    st->vlog_garbage_bytes = garbage;
    st->vlog_bytes_written = v->bytes_written;
    st->vlog_gc_runs = v->gc_runs;
    st->vlog_gc_bytes_moved = v->gc_bytes;
    st->vlog_gc_segments_deleted = v->gc_deleted;
    st->vlog_stalls = v->stalls;
    st->vlog_stall_micros = v->stall_micros;
    pthread_mutex_unlock(&v->mu);
}

/* ---- Garbage collection ------------------------------------------------------------------ */

/* Picks the segment to collect: closed, not damaged or moved, the largest garbage share of at
 * least min_percent (force: any). Returns its number, or 0. */
static uint64_t pick_segment(vlog *v, int force, int min_percent)
{
    pthread_mutex_lock(&v->mu);
    uint64_t best = 0;
    double best_share = -1;
    for (size_t i = 0; i < v->nsegs; i++) {
        struct vlog_seg *s = &v->segs[i];
        if (s->number == v->active || s->damaged || s->moved)
            continue;
        uint64_t body = s->size > VLOG_SEGMENT_HEADER_SIZE ? s->size - VLOG_SEGMENT_HEADER_SIZE : 0;
        double share = body ? (double)s->garbage * 100.0 / (double)body : 100.0;
        if ((force || share >= min_percent) && share > best_share) {
            best = s->number;
            best_share = share;
        }
    }
    pthread_mutex_unlock(&v->mu);
    return best;
}

/* Appends a GC op for the record `rec` of (seg, off) to b. */
static int add_gc_op(kv_batch *b, buf *scratch, slice key, uint64_t seg, uint64_t off, slice rec)
{
    buf_clear(scratch);
    char tag = (char)VLOG_TAG_GC;
    int rc = buf_append(scratch, &tag, 1);
    if (rc == 0)
        rc = buf_append_varint64(scratch, seg);
    if (rc == 0)
        rc = buf_append_varint64(scratch, off);
    if (rc == 0)
        rc = buf_append(scratch, rec.data, rec.size);
    if (rc == 0)
        rc = kv_batch_put(b, key.data, key.size, scratch->data, scratch->len);
    return rc;
}

/* Reads the header of the record at off into h and its total size into *size. Returns 1, 0 at
 * the end of the file, KV_ECORRUPT if the record does not fit in the file, or an I/O error. */
static int record_extent(env_file *f, uint64_t off, uint64_t fsize, char *h, uint64_t *size)
{
    if (off >= fsize)
        return 0;
    size_t got;
    int rc = env_pread(f, h, VLOG_RECORD_HEADER_SIZE, off, &got);
    if (rc != 0)
        return rc;
    *size =
        VLOG_RECORD_HEADER_SIZE + (uint64_t)coding_get_fixed32(h + 9) + coding_get_fixed32(h + 13);
    return got < VLOG_RECORD_HEADER_SIZE || off + *size > fsize ? KV_ECORRUPT : 1;
}

/* Reads the record at off of the open segment f (file size fsize) into *rec. Returns 1 with
 * *next set, 0 at the end of the file, or KV_ECORRUPT for a record that cannot be read (logged,
 * unless it is cut off by the end of the file: then *cut is set and the caller decides). */
static int next_record(vlog *v, env_file *f, uint64_t seg, uint64_t off, uint64_t fsize, buf *rec,
                       uint64_t *next, int *cut)
{
    char h[VLOG_RECORD_HEADER_SIZE];
    uint64_t size = 0; /* set whenever record_extent returns 1; gcc -O3 cannot see that */
    size_t got;
    int rc = record_extent(f, off, fsize, h, &size);
    *cut = rc == KV_ECORRUPT;
    if (rc != 1)
        return rc;
    buf_clear(rec);
    if (buf_reserve(rec, size) != 0)
        return KV_ENOMEM;
    rc = env_pread(f, rec->data, size, off, &got);
    if (rc != 0)
        return rc;
    if (got != size)
        return corrupt(v, seg, off, "record runs past the end of the segment");
    rec->len = size;
    const char *failed = record_check(rec->data, size);
    if (failed)
        return corrupt(v, seg, off, failed);
    *next = off + size;
    return 1;
}

/* Reads only the header and key of the record at off (no checksum: for estimates) into *rec;
 * returns 1 with *next set, 0 at the end, or KV_ECORRUPT if it does not fit in the file. One
 * pread of VLOG_KEY_SCAN_READ bytes takes the header and a key of usual length together (a
 * measurement walks every record of a segment); a longer key takes a second. */
#define VLOG_KEY_SCAN_READ 128
static int next_record_key(env_file *f, uint64_t off, uint64_t fsize, buf *rec, uint64_t *next)
{
    if (off >= fsize)
        return 0;
    size_t want = fsize - off < VLOG_KEY_SCAN_READ ? (size_t)(fsize - off) : VLOG_KEY_SCAN_READ;
    size_t got;
    buf_clear(rec);
    if (buf_reserve(rec, VLOG_KEY_SCAN_READ) != 0)
        return KV_ENOMEM;
    int rc = env_pread(f, rec->data, want, off, &got);
    if (rc != 0)
        return rc;
    if (got < VLOG_RECORD_HEADER_SIZE)
        return KV_ECORRUPT;
    uint64_t klen = coding_get_fixed32(rec->data + 9);
    uint64_t size = VLOG_RECORD_HEADER_SIZE + klen + coding_get_fixed32(rec->data + 13);
    if (off + size > fsize)
        return KV_ECORRUPT;
    size_t head = VLOG_RECORD_HEADER_SIZE + (size_t)klen;
    if (head > got) {
        if (buf_reserve(rec, head) != 0)
            return KV_ENOMEM;
        size_t more;
        rc = env_pread(f, rec->data + got, head - got, off + got, &more);
        if (rc != 0)
            return rc;
        if (more != head - got)
            return KV_ECORRUPT;
    }
    rec->len = head;
    *next = off + size;
    return 1;
}

/* Opens segment `seg` for a sequential pass and checks its header. */
static int open_for_scan(vlog *v, uint64_t seg, env_file **f, uint64_t *fsize)
{
    char path[SEG_PATH_SIZE(v)];
    seg_path(v, seg, path, sizeof(path));
    int rc = v->env->file_size(v->env, path, fsize);
    if (rc == 0)
        rc = v->env->open_readable(v->env, path, f);
    if (rc != 0)
        return rc;
    if (*fsize < VLOG_SEGMENT_HEADER_SIZE) {
        /* Created, but its header never reached the disk (a crash before the first sync):
         * nothing durable can point into it. */
        kv_log(&v->log, KV_LOG_INFO,
               "vlog %06" PRIu64 ".vlog: shorter than its header: an interrupted creation", seg);
        *fsize = VLOG_SEGMENT_HEADER_SIZE;
        return 0;
    }
    char h[VLOG_SEGMENT_HEADER_SIZE];
    size_t got;
    rc = env_pread(*f, h, sizeof(h), 0, &got);
    if (rc == 0) {
        char what[FILENAME_MAX_LEN];
        snprintf(what, sizeof(what), "vlog %06" PRIu64 ".vlog", seg);
        rc = check_header(v, what, h, got);
    }
    if (rc != 0) {
        env_close(*f);
        *f = NULL;
    }
    return rc;
}

static int looks_torn(env_file *f, uint64_t off, uint64_t fsize);

/* Whether the record at p (its header in h, at least VLOG_RECORD_HEADER_SIZE bytes) fits in the
 * file and verifies; *size receives its size. The record is read into *rec if not all in h
 * (hn bytes), which costs *budget that many bytes: 2 if the budget is spent. 1, 0, 2 or an
 * error. Quiet: used to look for records after a damaged one. */
static int record_verifies(env_file *f, uint64_t p, uint64_t fsize, const char *h, size_t hn,
                           buf *rec, uint64_t *size, uint64_t *budget)
{
    uint64_t klen = coding_get_fixed32(h + 9), slen = coding_get_fixed32(h + 13);
    *size = VLOG_RECORD_HEADER_SIZE + klen + slen;
    if (!record_sizes_ok(h, *size) || p > fsize || *size > fsize - p)
        return 0;
    if (*size <= hn)
        return record_check(h, *size) == NULL;
    if (*size > *budget)
        return 2;
    *budget -= *size;
    buf_clear(rec);
    if (buf_reserve(rec, (size_t)*size) != 0)
        return KV_ENOMEM;
    size_t got;
    int rc = env_pread(f, rec->data, (size_t)*size, p, &got);
    if (rc != 0)
        return rc;
    return got == *size && record_check(rec->data, got) == NULL;
}

/* Looks for the first offset in [from, fsize) where a whole record verifies (after a damaged
 * record, whose own sizes cannot be trusted: a false match needs a 64-bit checksum to agree,
 * and a record found here is moved only if a pointer names exactly its offset). Returns 1 with
 * *at set, 0 if there is none, 2 if it gave up (headers that look plausible in damaged bytes
 * made it read more than twice the file: the caller must assume records may follow), or an
 * error. Reads the tail once, 1 MiB at a time. */
static int find_next_record(env_file *f, uint64_t from, uint64_t fsize, buf *rec, uint64_t *at)
{
    uint64_t budget = 2 * fsize + VLOG_GC_BATCH_BYTES;
    enum { CHUNK = 1 << 20 };
    char *chunk = malloc(CHUNK);
    if (!chunk)
        return KV_ENOMEM;
    int rc = 0;
    for (uint64_t base = from; rc == 0 && base + VLOG_RECORD_HEADER_SIZE <= fsize;) {
        size_t want = (size_t)(fsize - base < CHUNK ? fsize - base : CHUNK), got = 0;
        rc = env_pread(f, chunk, want, base, &got);
        if (rc != 0 || got < VLOG_RECORD_HEADER_SIZE)
            break;
        size_t i;
        for (i = 0; i + VLOG_RECORD_HEADER_SIZE <= got && rc == 0; i++) {
            uint64_t size;
            int ok = record_verifies(f, base + i, fsize, chunk + i, got - i, rec, &size, &budget);
            if (ok == 1) {
                *at = base + i;
                rc = 1;
            } else if (ok != 0) {
                rc = ok;
            }
        }
        if (rc == 0)
            base += i; /* the next chunk starts where a header no longer fitted */
    }
    free(chunk);
    return rc;
}

/* Moves the live records of segment seg. Sets *moved; marks it moved, or damaged if it holds a
 * record that cannot be read: then every live record GC can still find (before it, and after
 * it from the next record that verifies) is moved all the same, but the segment is kept, since
 * the unreadable bytes may hold a live value (fsck --repair decides what is lost). The
 * exception is the segment that was being appended when the process last stopped
 * (newest_at_open): an unreadable end there, cut off by the end of the file or zeros, with no
 * record after it, is the torn tail of a crash, which nothing durable points into. */
static int gc_segment(vlog *v, uint64_t seg, uint64_t *moved)
{
    env_file *f;
    uint64_t fsize;
    int rc = open_for_scan(v, seg, &f, &fsize);
    if (rc != 0)
        return rc;
    kv_batch *b = kv_batch_new();
    buf rec, scratch;
    buf_init(&rec);
    buf_init(&scratch);
    if (!b)
        rc = KV_ENOMEM;
    uint64_t off = VLOG_SEGMENT_HEADER_SIZE, next = 0, last_seq = 0, log_number = 0;
    uint64_t first_bad = 0, bad = 0;
    int r = 1, cut;
    /* A leader appends its group's records, rotating `seg` out when it fills, before its WAL
     * record and memtable insert make the pointers visible: picked in that window, seg holds
     * records that points_at would call dead, and they would be deleted with seg while the
     * memtable (then tables) still points at them. The empty write waits for every writer in
     * flight; a later one can only append to a newer segment. So every pointer into seg is
     * visible to points_at from here on. */
    if (rc == 0)
        rc = v->ops.gc_write(v->ops.ctx, b, &last_seq, &log_number);
    while (rc == 0 && (r = next_record(v, f, seg, off, fsize, &rec, &next, &cut)) != 0) {
        if (r == KV_ECORRUPT) {
            uint64_t at = 0;
            r = find_next_record(f, off + 1, fsize, &rec, &at);
            int torn =
                r == 0 && seg == v->newest_at_open ? (cut ? 1 : looks_torn(f, off, fsize)) : 0;
            if (r == 2)
                r = 0; /* cannot tell: keep the segment as damaged */
            if (r < 0 || torn < 0) {
                rc = r < 0 ? r : torn;
            } else if (torn) {
                kv_log(&v->log, KV_LOG_INFO,
                       "vlog %06" PRIu64 ".vlog: %" PRIu64 " bytes at offset %" PRIu64
                       " are the torn tail of an interrupted write",
                       seg, fsize - off, off);
            } else {
                if (bad++ == 0)
                    first_bad = off;
                if (r == 1) {
                    off = at;
                    continue;
                }
            }
            break;
        }
        if (r < 0) {
            rc = r;
            break;
        }
        slice key =
            slice_make(rec.data + VLOG_RECORD_HEADER_SIZE, coding_get_fixed32(rec.data + 9));
        int live = v->ops.points_at(v->ops.ctx, key, seg, off);
        if (live < 0)
            rc = live;
        else if (live)
            rc = add_gc_op(b, &scratch, key, seg, off, buf_slice(&rec));
        if (rc == 0 && live)
            *moved += rec.len;
        if (rc == 0 && kv_batch_byte_size(b) >= VLOG_GC_BATCH_BYTES) {
            rc = v->ops.gc_write(v->ops.ctx, b, &last_seq, &log_number);
            kv_batch_clear(b);
        }
        off = next;
    }
    /* The final write (possibly empty) also yields the sequence and WAL that make the move
     * safe: every older read view and WAL may still reach the segment. */
    if (rc == 0)
        rc = v->ops.gc_write(v->ops.ctx, b, &last_seq, &log_number);
    if (rc == 0) {
        pthread_mutex_lock(&v->mu);
        long i = find_seg(v, seg);
        if (i >= 0) {
            struct vlog_seg *s = &v->segs[i];
            if (bad) {
                s->damaged = 1;
            } else {
                s->moved = 1;
                s->gc_epoch = v->epoch++; /* readers pinned from now on see the moved records */
                s->gc_seq = last_seq;
                s->gc_log = log_number;
                s->moved_at = s->warned_at = now_secs();
            }
        }
        v->gc_runs++;
        v->gc_bytes += *moved;
        pthread_mutex_unlock(&v->mu);
    }
    if (rc == 0 && bad)
        kv_log(&v->log, KV_LOG_WARN,
               "vlog %06" PRIu64 ".vlog: %" PRIu64
               " unreadable records, the first at offset %" PRIu64 "; GC moved the %" PRIu64
               " live bytes it could read and keeps the segment, which "
               "may hold live values: run fsck --repair (kvfs) or kv_salvage",
               seg, bad, first_bad, *moved);
    env_close(f);
    if (b)
        kv_batch_free(b);
    buf_free(&rec);
    buf_free(&scratch);
    return rc;
}

/* Logs (at most once per VLOG_HELD_WARN_SECS) the moved segments whose deletion has waited that
 * long, and what holds them: a read view (iterator, or a get still running) pinned before the
 * move, or else a snapshot older than the move or a WAL not yet flushed (gc_safe). Takes mu. */
static void warn_held(vlog *v, uint64_t min_pinned)
{
    uint64_t now = now_secs(), n = 0, bytes = 0, oldest = 0, by_reader = 0;
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < v->nsegs; i++) {
        struct vlog_seg *s = &v->segs[i];
        if (!s->moved || now - s->moved_at < VLOG_HELD_WARN_SECS ||
            now - s->warned_at < VLOG_HELD_WARN_SECS)
            continue;
        s->warned_at = now;
        n++;
        bytes += s->size;
        by_reader += s->gc_epoch >= min_pinned;
        if (now - s->moved_at > oldest)
            oldest = now - s->moved_at;
    }
    pthread_mutex_unlock(&v->mu);
    if (n > 0)
        kv_log(&v->log, KV_LOG_WARN,
               "vlog: %" PRIu64 " segments (%" PRIu64 " bytes) emptied by GC up to %" PRIu64
               " s ago cannot be deleted yet: %" PRIu64 " are held by an iterator opened before "
               "GC moved them, the others by an older snapshot (or a WAL that a flush will end)",
               n, bytes, oldest, by_reader);
}

static int collect(vlog *v)
{
    int deleted = 0;
    for (;;) {
        pthread_mutex_lock(&v->mu);
        uint64_t min_pinned = UINT64_MAX;
        for (size_t i = 0; i < v->npins; i++)
            if (v->pins[i].readers > 0 && v->pins[i].epoch < min_pinned)
                min_pinned = v->pins[i].epoch;
        struct vlog_seg cand;
        int found = 0;
        for (size_t i = 0; i < v->nsegs && !found; i++) {
            if (v->segs[i].moved && v->segs[i].gc_epoch < min_pinned) {
                cand = v->segs[i];
                found = 1;
            }
        }
        pthread_mutex_unlock(&v->mu);
        if (!found || v->ops.gc_safe(v->ops.ctx, cand.gc_seq, cand.gc_log) != 1) {
            warn_held(v, min_pinned);
            return deleted;
        }
        pthread_mutex_lock(&v->mu);
        long i = find_seg(v, cand.number);
        if (i >= 0) {
            char k[8];
            seg_key(k, cand.number);
            cache_erase(v->handles, slice_make(k, 8)); /* a read still using it keeps it open */
            memmove(&v->segs[i], &v->segs[i + 1], (v->nsegs - (size_t)i - 1) * sizeof(*v->segs));
            v->nsegs--;
            v->gc_deleted++;
        }
        pthread_mutex_unlock(&v->mu);
        char path[SEG_PATH_SIZE(v)];
        int rc = v->env->unlink(v->env, seg_path(v, cand.number, path, sizeof(path)));
        if (rc != 0 && rc != KV_ENOTFOUND)
            kv_log(&v->log, KV_LOG_WARN, "vlog %06" PRIu64 ".vlog: cannot delete: %s", cand.number,
                   kv_strerror(rc));
        else
            kv_log(&v->log, KV_LOG_DEBUG, "vlog %06" PRIu64 ".vlog: deleted after GC", cand.number);
        deleted++;
    }
}

/* Measures the garbage of closed segments that were never measured (every segment found at
 * open: estimates live in memory, so a restart or power cut loses them) or that enough has been
 * written since they were last measured (compaction's count misses values still shadowed inside
 * a memtable, and starts at 0 on open): walks the records, asks whether each is still its key's
 * newest value, and replaces the estimate by the dead bytes found. "Enough" is a quarter segment
 * once writing has paused (idle: nothing appended for VLOG_IDLE_MICROS), but the value
 * log's closed bytes while it goes on, so that about one segment is re-measured per segment
 * written: with a quarter segment throughout, every closed segment was re-read that often and
 * the reads grew with the square of the log's size (243k preads during one 2 GiB sequential
 * write). Compaction counts most dead values as it drops them (vlog_note_dropped); writers
 * waiting for space (urgent) re-measure whatever changed. */
static void measure_garbage(vlog *v, int urgent, int idle)
{
    for (int done = 0; done < VLOG_MEASURES_PER_PASS; done++) {
        pthread_mutex_lock(&v->mu);
        uint64_t seg = 0, oldest = UINT64_MAX;
        uint64_t ops = __atomic_load_n(&v->ops_applied, __ATOMIC_ACQUIRE);
        uint64_t every = v->segment_bytes / 4;
        if (!idle && v->nsegs > 1)
            every = v->segment_bytes * (v->nsegs - 1); /* the closed segments' bytes */
        for (size_t i = 0; i < v->nsegs; i++) {
            struct vlog_seg *s = &v->segs[i];
            if (s->number == v->active || s->damaged || s->moved)
                continue;
            /* Never measured (found at open: its estimate died with the last run) comes
             * first, then the longest since its last measurement. */
            uint64_t rank = s->measured_at == UINT64_MAX ? 0 : s->measured_at + 1;
            /* Writers waiting for space (urgent): any write since (an overwrite or delete, even
             * with an inline value) may have made some of its records dead. */
            if (rank != 0 &&
                (urgent ? s->measured_ops == ops : v->bytes_written - s->measured_at < every))
                continue;
            if (seg == 0 || rank < oldest) {
                oldest = rank;
                seg = s->number;
            }
        }
        uint64_t mark = v->bytes_written;
        pthread_mutex_unlock(&v->mu);
        if (seg == 0)
            return;
        env_file *f = NULL;
        uint64_t fsize = 0, live = 0, off = VLOG_SEGMENT_HEADER_SIZE, next = 0;
        int r = open_for_scan(v, seg, &f, &fsize);
        buf rec;
        buf_init(&rec);
        while (r >= 0 && (r = next_record_key(f, off, fsize, &rec, &next)) == 1) {
            slice key =
                slice_make(rec.data + VLOG_RECORD_HEADER_SIZE, coding_get_fixed32(rec.data + 9));
            int is_live = v->ops.points_at(v->ops.ctx, key, seg, off);
            if (is_live < 0) {
                r = is_live;
                break;
            }
            if (is_live)
                live += next - off;
            off = next;
        }
        buf_free(&rec);
        if (f)
            env_close(f);
        pthread_mutex_lock(&v->mu);
        long i = find_seg(v, seg);
        if (i >= 0) {
            struct vlog_seg *s = &v->segs[i];
            s->measured_at = mark;
            s->measured_ops = ops;
            v->measures++;
            if (r == 0)
                s->garbage = fsize - VLOG_SEGMENT_HEADER_SIZE - live;
        }
        pthread_mutex_unlock(&v->mu);
    }
}

int vlog_gc_collect(vlog *v)
{
    pthread_mutex_lock(&v->gc_run_mu);
    int deleted = collect(v);
    pthread_mutex_unlock(&v->gc_run_mu);
    return deleted;
}

#define VLOG_IDLE_MICROS 1000000 /* nothing appended for this long: writing has paused */

/* One pass of vlog_gc_run; urgent: writers wait for space (vlog_throttle), so measure what
 * changed at all and collect segments at half the usual share of garbage; idle: writing has
 * paused (or a caller asked for the pass), so measure at the finer cadence (measure_garbage). */
static int gc_pass(vlog *v, int force, int urgent, int idle, uint64_t *moved)
{
    uint64_t m = 0;
    if (moved)
        *moved = 0;
    if (v->read_only)
        return 0;
    pthread_mutex_lock(&v->gc_run_mu);
    collect(v);
    if (!force)
        measure_garbage(v, urgent, idle);
    int rc = 0;
    uint64_t seg;
    int min_percent = urgent ? (v->gc_percent + 1) / 2 : v->gc_percent;
    for (int n = 0; rc == 0 && n < (force ? 1 : VLOG_GC_SEGMENTS_PER_PASS) &&
                    (seg = pick_segment(v, force, min_percent)) != 0;
         n++) {
        uint64_t one = 0;
        rc = gc_segment(v, seg, &one);
        m += one;
        if (rc == 0)
            kv_log(&v->log, KV_LOG_INFO, "vlog %06" PRIu64 ".vlog: GC moved %" PRIu64 " live bytes",
                   seg, one);
        else
            kv_log(&v->log, KV_LOG_WARN, "vlog %06" PRIu64 ".vlog: GC failed: %s", seg,
                   kv_strerror(rc));
        collect(v);
    }
    pthread_mutex_unlock(&v->gc_run_mu);
    if (moved)
        *moved = m;
    return rc;
}

int vlog_gc_run(vlog *v, int force, uint64_t *moved)
{
    return gc_pass(v, force, 0, 1, moved);
}

static void *gc_main(void *arg)
{
    vlog *v = arg;
    pthread_mutex_lock(&v->gc_mu);
    while (!v->gc_stop) {
        /* Writers waiting for space kick the GC (vlog_throttle), as do flushes and a pass that
         * did something; otherwise it wakes once a second. */
        if (!v->gc_kicked) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&v->gc_cv, &v->gc_mu, &ts);
        }
        v->gc_kicked = 0;
        if (v->gc_stop)
            break;
        pthread_mutex_unlock(&v->gc_mu);
        pthread_mutex_lock(&v->mu);
        uint64_t work = v->gc_runs + v->gc_deleted + v->measures;
        int urgent = v->waiters > 0;
        uint64_t now = now_micros();
        if (v->bytes_written != v->pass_written) {
            v->pass_written = v->bytes_written;
            v->pass_written_micros = now;
        }
        int idle = now - v->pass_written_micros >= VLOG_IDLE_MICROS;
        pthread_mutex_unlock(&v->mu);
        int rc = gc_pass(v, 0, urgent, idle, NULL);
        pthread_mutex_lock(&v->mu);
        int progress = v->gc_runs + v->gc_deleted + v->measures != work;
        v->passes++;
        v->last_urgent = urgent;
        v->last_progress = progress && rc == 0;
        v->last_held = 0;
        for (size_t i = 0; i < v->nsegs; i++)
            v->last_held += v->segs[i].moved != 0;
        pthread_cond_broadcast(&v->pass_cv);
        pthread_mutex_unlock(&v->mu);
        pthread_mutex_lock(&v->gc_mu);
        if (progress && rc == 0)
            v->gc_kicked = 1; /* more may be ready: go again without waiting */
    }
    pthread_mutex_unlock(&v->gc_mu);
    return NULL;
}

int vlog_gc_start(vlog *v)
{
    if (v->read_only || v->gc_started)
        return 0;
    /* The first pass at once: the segments found at open await their measurement, and a
     * store restarted after a power cut may be short of space. */
    v->gc_kicked = 1;
    if (pthread_create(&v->gc_thread, NULL, gc_main, v) != 0)
        return KV_ENOMEM;
    v->gc_started = 1;
    pthread_mutex_lock(&v->mu);
    v->gc_running = 1;
    pthread_mutex_unlock(&v->mu);
    return 0;
}

void vlog_gc_stop(vlog *v)
{
    if (!v->gc_started)
        return;
    pthread_mutex_lock(&v->mu);
    v->gc_running = 0; /* no writer starts to wait now, and the waiting ones return */
    pthread_cond_broadcast(&v->pass_cv);
    pthread_mutex_unlock(&v->mu);
    pthread_mutex_lock(&v->gc_mu);
    v->gc_stop = 1;
    pthread_cond_signal(&v->gc_cv);
    pthread_mutex_unlock(&v->gc_mu);
    pthread_join(v->gc_thread, NULL);
    v->gc_started = 0;
}

void vlog_gc_kick(vlog *v)
{
    pthread_mutex_lock(&v->gc_mu);
    v->gc_kicked = 1;
    pthread_cond_signal(&v->gc_cv);
    pthread_mutex_unlock(&v->gc_mu);
}

/* ---- Back-pressure ----------------------------------------------------------------------- */

/* Free space now: the last reading less what was appended since (an underestimate when GC
 * deleted segments since, which the next reading corrects). mu held. */
static uint64_t estimated_avail(const vlog *v)
{
    uint64_t since = v->bytes_written - v->space_at;
    return v->space_avail > since ? v->space_avail - since : 0;
}

/* Reads the file system's free space (space_avail; UINT64_MAX if the env cannot tell now, which
 * turns back-pressure off until the next reading). Takes mu: call without it. */
static void read_space(vlog *v)
{
    pthread_mutex_lock(&v->mu);
    uint64_t at = v->bytes_written;
    pthread_mutex_unlock(&v->mu);
    uint64_t avail = 0, total = 0;
    if (v->env->free_space(v->env, v->dir, &avail, &total) != 0)
        avail = UINT64_MAX;
    pthread_mutex_lock(&v->mu);
    v->space_avail = avail;
    v->space_at = at;
    pthread_mutex_unlock(&v->mu);
}

/* Whether a writer appending `need` bytes must wait for GC: free space short, the GC thread
 * running, and no pass for waiting writers found nothing to reclaim lately - since compaction
 * last counted new garbage, within VLOG_FUTILE_MICROS, or within VLOG_FUTILE_MIN_MICROS if
 * writes were applied since (they may have made records dead). mu held. */
static int must_wait(const vlog *v, uint64_t need, uint64_t now)
{
    if (!v->gc_running || estimated_avail(v) >= v->low_water + need)
        return 0;
    if (v->futile_time == 0 || now - v->futile_time >= VLOG_FUTILE_MICROS)
        return 1;
    return now - v->futile_time >= VLOG_FUTILE_MIN_MICROS &&
           __atomic_load_n(&v->ops_applied, __ATOMIC_ACQUIRE) != v->futile_ops;
}

void vlog_note_applied(vlog *v, uint64_t ops)
{
    __atomic_add_fetch(&v->ops_applied, ops, __ATOMIC_RELEASE);
}

void vlog_throttle(vlog *v, uint64_t record_bytes)
{
    if (record_bytes == 0 || v->low_water == 0)
        return;
    pthread_mutex_lock(&v->mu);
    int check = v->bytes_written - v->space_at >= v->low_water / VLOG_SPACE_CHECK_DIVISOR ||
                must_wait(v, record_bytes, now_micros());
    pthread_mutex_unlock(&v->mu);
    if (!check)
        return;
    read_space(v);
    uint64_t t0 = 0;
    int kick = 1;
    pthread_mutex_lock(&v->mu);
    while (must_wait(v, record_bytes, now_micros())) {
        if (t0 == 0) {
            t0 = now_micros();
            v->stalls++;
        }
        v->waiters++;
        uint64_t pass = v->passes;
        pthread_mutex_unlock(&v->mu);
        if (kick)
            vlog_gc_kick(v);
        pthread_mutex_lock(&v->mu);
        /* Wait for a pass that ran for the waiters (one already running when this writer came
         * may have been an ordinary one: it does not count). */
        int answered = 0;
        while (v->gc_running && !answered) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&v->pass_cv, &v->mu, &ts);
            if (v->passes != pass && v->last_urgent)
                answered = 1;
            else
                pass = v->passes;
        }
        v->waiters--;
        /* After a pass that did nothing, the next one comes when something may have changed:
         * a flush ends (it kicks the GC), or the GC's once-a-second tick. Segments it moved
         * whose deletion waits for that flush are worth waiting for, a while; nothing else
         * is. */
        kick = !answered || v->last_progress;
        if (answered && !v->last_progress &&
            (v->last_held == 0 || now_micros() - t0 >= VLOG_HELD_PATIENCE_MICROS)) {
            v->futile_time = now_micros();
            v->futile_ops = __atomic_load_n(&v->ops_applied, __ATOMIC_ACQUIRE);
            kv_log(&v->log, KV_LOG_INFO,
                   "vlog: free space is below %" PRIu64 " bytes and GC finds nothing more to "
                   "reclaim: writes go on until the disk is full",
                   v->low_water);
        }
        pthread_mutex_unlock(&v->mu);
        read_space(v);
        pthread_mutex_lock(&v->mu);
    }
    if (t0 != 0)
        v->stall_micros += now_micros() - t0;
    pthread_mutex_unlock(&v->mu);
}

/* ---- Offline check ----------------------------------------------------------------------- */

/* Whether [off, fsize) of f, from a bad record on, looks like the torn tail of an interrupted
 * append: the zero-page rule of the record log (wal_tail_is_torn in wal.h), since a segment is
 * appended the same way. 1, 0 or an error. */
static int looks_torn(env_file *f, uint64_t off, uint64_t fsize)
{
    int torn = 0;
    int rc = wal_file_tail_is_torn(f, off, fsize, &torn);
    return rc != 0 ? rc : torn;
}

int vlog_check_dir(const char *dir, const kv_env *env, const kv_logger *log, uint64_t *problems,
                   uint64_t *bytes)
{
    return vlog_check_dir_ex(dir, env, log, problems, bytes, NULL, NULL);
}

int vlog_check_dir_ex(const char *dir, const kv_env *env, const kv_logger *log, uint64_t *problems,
                      uint64_t *bytes, void (*note)(void *ctx, uint64_t seg, int damaged),
                      void *nctx)
{
    vlog tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.dir = (char *)dir;
    tmp.env = env;
    tmp.log = *log;
    pthread_mutex_init(&tmp.mu, NULL);
    if (bytes)
        *bytes = 0;
    int rc = vlog_marker_exists(env, dir);
    if (rc == 1) {
        rc = read_marker(&tmp, NULL);
        if (rc == KV_ECORRUPT || rc == KV_EVERSION) {
            (*problems)++;
            rc = 0;
        }
    }
    if (rc >= 0)
        rc = scan_segments(&tmp);
    buf rec;
    buf_init(&rec);
    for (size_t i = 0; i < tmp.nsegs && rc == 0; i++) {
        uint64_t seg = tmp.segs[i].number, fsize, off = VLOG_SEGMENT_HEADER_SIZE, next = 0;
        env_file *f;
        rc = open_for_scan(&tmp, seg, &f, &fsize);
        if (rc == KV_ECORRUPT || rc == KV_EVERSION) {
            (*problems)++;
            if (note)
                note(nctx, seg, 1);
            rc = 0;
            continue;
        }
        int r, cut;
        while ((r = next_record(&tmp, f, seg, off, fsize, &rec, &next, &cut)) == 1)
            off = next;
        if (r == KV_ECORRUPT) {
            int torn = cut ? 1 : looks_torn(f, off, fsize);
            if (torn == 1) {
                kv_log(log, KV_LOG_INFO,
                       "vlog %06" PRIu64 ".vlog: %" PRIu64 " bytes at offset %" PRIu64
                       " are the torn tail of an interrupted write",
                       seg, fsize - off, off);
                if (note)
                    note(nctx, seg, 0);
            } else if (torn == 0) {
                kv_log(log, KV_LOG_ERROR,
                       "vlog %06" PRIu64 ".vlog: damaged record at offset %" PRIu64, seg, off);
                (*problems)++;
                if (note)
                    note(nctx, seg, 1);
            } else {
                rc = torn;
            }
        } else if (r < 0) {
            rc = r;
        }
        if (bytes)
            *bytes += fsize;
        env_close(f);
    }
    buf_free(&rec);
    free(tmp.segs);
    pthread_mutex_destroy(&tmp.mu);
    return rc;
}
