/* compress.c - adaptive zstd compression (backoff + entropy probe) and per-thread zstd contexts,
 * shared by the table builder and the value log (see compress.h). */
#include "table/compress.h"

#include <pthread.h>
#include <stdint.h>

#include "kvcore/kv.h"

/* log2(x) in 1/256ths for 1 <= x <= 2^23, by linear interpolation between powers of two
 * (error under 0.09 bits: ample for a yes/no probe). */
static uint32_t log2_q8(uint32_t x)
{
    uint32_t e = 31u - (uint32_t)__builtin_clz(x);
    return e * 256u + ((x << 8) >> e) - 256u;
}

/* Whether a sample of the bytes has an order-0 entropy of at most 7 bits a byte, that is,
 * whether even a byte-wise entropy coder would save 1/8. Random bytes measure about 7.8 on this
 * sample size (the estimate runs low on few samples), so they stay well above. */
static int looks_compressible(slice contents)
{
    uint32_t hist[256] = {0};
    size_t stride = contents.size / COMPRESS_PROBE_SAMPLES, n = 0;
    stride = stride < 1 ? 1 : stride | 1; /* odd: no aliasing with power-of-two record sizes */
    for (size_t i = 0; i < contents.size; i += stride, n++)
        hist[(unsigned char)contents.data[i]]++;
    if (n == 0)
        return 0;
    /* Entropy-coded size in bits = sum over symbols of c * log2(n / c). */
    uint64_t bits_q8 = 0;
    uint32_t log_n = log2_q8((uint32_t)n);
    for (int c = 0; c < 256; c++)
        if (hist[c])
            bits_q8 += (uint64_t)hist[c] * (log_n - log2_q8(hist[c]));
    return bits_q8 <= (uint64_t)n * 7u * 256u;
}

int compress_should_try(compress_state *s, slice contents)
{
    unsigned skip = __atomic_load_n(&s->skip, __ATOMIC_RELAXED);
    if (skip == 0)
        return 1;
    __atomic_store_n(&s->skip, skip - 1, __ATOMIC_RELAXED);
    return looks_compressible(contents);
}

void compress_note_result(compress_state *s, int saved)
{
    if (saved) {
        __atomic_store_n(&s->fail_streak, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->skip, 0, __ATOMIC_RELAXED);
        return;
    }
    unsigned streak = __atomic_load_n(&s->fail_streak, __ATOMIC_RELAXED);
    if (streak < 16)
        streak++;
    __atomic_store_n(&s->fail_streak, streak, __ATOMIC_RELAXED);
    unsigned skip = 1u << (streak - 1);
    __atomic_store_n(&s->skip, skip < COMPRESS_MAX_SKIP ? skip : COMPRESS_MAX_SKIP,
                     __ATOMIC_RELAXED);
}

/* A piece of at least COMPRESS_TRIAL_MIN bytes met during a backoff is first judged by
 * compressing its first COMPRESS_TRIAL_BYTES: most such attempts fail (incompressible data is
 * what caused the backoff), and zstd spends as long failing as succeeding, so a failure costs
 * an eighth of a 64 KiB piece. Measured (perf record -e instructions:u of the daemon, 2 GiB fio
 * sequential write of incompressible data): zstd was 77% of the daemon's user instructions. */
#define COMPRESS_TRIAL_BYTES (8u << 10)
#define COMPRESS_TRIAL_MIN (4 * COMPRESS_TRIAL_BYTES)

size_t compress_try(compress_state *s, ZSTD_CCtx *c, char *dst, size_t dst_cap, slice src,
                    int level, size_t max_size)
{
    int saved = 0;
    size_t z = 0;
    if (c != NULL && src.size >= COMPRESS_TRIAL_MIN &&
        __atomic_load_n(&s->fail_streak, __ATOMIC_RELAXED) > 0) {
        /* The prefix must shrink in the proportion the whole piece must. */
        size_t t = ZSTD_compressCCtx(c, dst, dst_cap, src.data, COMPRESS_TRIAL_BYTES, level);
        if (ZSTD_isError(t) || t == 0 ||
            (uint64_t)t * src.size > (uint64_t)max_size * COMPRESS_TRIAL_BYTES)
            c = NULL;
    }
    if (c != NULL) {
        z = ZSTD_compressCCtx(c, dst, dst_cap, src.data, src.size, level);
        saved = !ZSTD_isError(z) && z > 0 && z <= max_size;
    }
    compress_note_result(s, saved);
    return saved ? z : 0;
}

int compress_decompress(slice src, char *dst, size_t n)
{
    ZSTD_DCtx *d = compress_thread_dctx();
    if (d == NULL)
        return KV_ENOMEM;
    size_t z = ZSTD_decompressDCtx(d, dst, n, src.data, src.size);
    return ZSTD_isError(z) || z != n ? KV_ECORRUPT : 0;
}

static pthread_key_t cctx_key, dctx_key;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;
static int keys_ok;

static void cctx_free(void *p)
{
    ZSTD_freeCCtx(p);
}

static void dctx_free(void *p)
{
    ZSTD_freeDCtx(p);
}

static void keys_init(void)
{
    keys_ok = pthread_key_create(&cctx_key, cctx_free) == 0 &&
              pthread_key_create(&dctx_key, dctx_free) == 0;
}

ZSTD_CCtx *compress_thread_cctx(void)
{
    pthread_once(&keys_once, keys_init);
    if (!keys_ok)
        return NULL;
    ZSTD_CCtx *c = pthread_getspecific(cctx_key);
    if (c == NULL && (c = ZSTD_createCCtx()) != NULL && pthread_setspecific(cctx_key, c) != 0) {
        ZSTD_freeCCtx(c);
        c = NULL;
    }
    return c;
}

ZSTD_DCtx *compress_thread_dctx(void)
{
    pthread_once(&keys_once, keys_init);
    if (!keys_ok)
        return NULL;
    ZSTD_DCtx *d = pthread_getspecific(dctx_key);
    if (d == NULL && (d = ZSTD_createDCtx()) != NULL && pthread_setspecific(dctx_key, d) != 0) {
        ZSTD_freeDCtx(d);
        d = NULL;
    }
    return d;
}
