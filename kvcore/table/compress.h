/* compress.h - adaptive zstd compression shared by the table builder and the value log.
 *
 * zstd spends as much time failing on random or already-compressed data as it spends
 * succeeding on text, and a piece that does not shrink by 1/8 is stored raw, so that work is
 * wasted. A compress_state remembers how attempts went: after a failed attempt the next 1, 2,
 * 4, ... up to COMPRESS_MAX_SKIP pieces are skipped while attempts keep failing; once the skip
 * runs out the next piece is tried again (a periodic probe), and one success resets the
 * backoff. A piece met while skipping still gets a cheap probe (a byte histogram of at most
 * COMPRESS_PROBE_SAMPLES sampled bytes): if its order-0 entropy says a byte-wise coder alone
 * would save 1/8, zstd is tried anyway, so compressible pieces that follow incompressible ones
 * are not stored raw. The probe cannot see LZ-only redundancy, which is what the periodic
 * attempts are for; they are what incompressible data costs. While backing off, an attempt on
 * a large piece first compresses its first 8 KiB and gives up if that prefix does not shrink
 * in the required proportion (compress_try), so such a failure costs an eighth of a 64 KiB
 * piece; a piece whose redundancy starts past that prefix is then stored raw (zstd had been
 * 77% of the daemon's user instructions on a 2 GiB fio write). Measured (session 3, perf stat
 * of the daemon, value log + tables after kvfs compact): a 256 MiB fio write (incompressible)
 * costs 2.07 G instructions with a cap of 8, 1.23 G with 32, 1.04 G with 64, while kvfs's copy
 * of /usr/share/doc takes 82.42 MB with each of the three (its text passes the probe). An
 * earlier measurement (81.0 MiB with 8, 81.5 with 32) had set the cap at 8.
 *
 * Threads: a compress_state may be shared by threads (its fields are read and written with
 * relaxed atomics: a race only shifts when the next probe happens). The thread contexts are
 * per thread. Nothing here touches the disk formats: callers frame the bytes.
 */
#ifndef KV_COMPRESS_H
#define KV_COMPRESS_H

#include <stddef.h>
#include <zstd.h>
#include "util/slice.h"

#define COMPRESS_MAX_SKIP 64
#define COMPRESS_PROBE_SAMPLES 1024

typedef struct compress_state {
    unsigned fail_streak; /* attempts failed in a row */
    unsigned skip;        /* pieces still to skip unless the probe says compressible */
} compress_state;

/* Whether to hand `contents` to zstd now (see above); counts a skipped piece. */
int compress_should_try(compress_state *s, slice contents);
/* Records the outcome of an attempt (saved: it was kept compressed). */
void compress_note_result(compress_state *s, int saved);

/* Compresses src into dst (dst_cap bytes, at least ZSTD_compressBound(src.size)) with c at
 * `level` and returns the compressed size if it is at most max_size, else 0 (also on a zstd
 * error or c == NULL): the caller stores the piece raw. Records the outcome in s. */
size_t compress_try(compress_state *s, ZSTD_CCtx *c, char *dst, size_t dst_cap, slice src,
                    int level, size_t max_size);
/* Decompresses the zstd frame src into dst, which must receive exactly n bytes. Returns 0,
 * KV_ECORRUPT if the frame is malformed or does not hold exactly n bytes (not logged: the
 * caller names the file and offset), or KV_ENOMEM (no context). Uses the calling thread's
 * context. Never reads or writes outside src and dst[0, n). */
int compress_decompress(slice src, char *dst, size_t n);

/* This thread's compression / decompression context (created on first use, freed at thread
 * exit); NULL if out of memory. The caller must not free it. */
ZSTD_CCtx *compress_thread_cctx(void);
ZSTD_DCtx *compress_thread_dctx(void);

#endif /* KV_COMPRESS_H */
