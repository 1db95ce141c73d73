/* fuzz_util.h - what the libFuzzer targets share: exact-size copies of the input, an env_file
 * over bytes in memory, a logger that drops every message, and the SSTable image the table
 * targets open.
 *
 * Header-only (static inline functions): each target is built from its one fuzz_<name>.c
 * (tests/CMakeLists.txt), so there is no library to put them in. Threads: libFuzzer runs a
 * target on one thread; nothing here holds state between calls.
 */
#ifndef KV_FUZZ_UTIL_H
#define KV_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvcore/kv.h"
#include "table/sst_format.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/env.h"
#include "util/log.h"

/* A private copy of the n bytes at p in an allocation of exactly n bytes (1 if n is 0), so
 * ASan catches any read past the end. Caller frees; NULL if out of memory. */
static inline char *fz_copy(const void *p, size_t n)
{
    char *copy = malloc(n ? n : 1);
    if (copy && n)
        memcpy(copy, p, n);
    return copy;
}

/* Touches every byte of s, so that a slice pointing out of bounds is caught; returns their
 * sum (fold it into the target's result so the reads are not optimised away). */
static inline size_t fz_touch(slice s)
{
    size_t sum = 0;
    for (size_t i = 0; i < s.size; i++)
        sum += (unsigned char)s.data[i];
    return sum;
}

static inline void fz_drop_message(void *ctx, int level, const char *msg)
{
    (void)ctx;
    (void)level;
    (void)msg;
}

/* A logger that drops every message (borrowed, static). */
static inline const kv_logger *fz_quiet_log(void)
{
    static const kv_logger quiet = {fz_drop_message, NULL, KV_LOG_DEBUG};
    return &quiet;
}

/* ---- An env_file over bytes in memory (read-only) --------------------------------------- */

typedef struct fz_memfile {
    env_file base;
    const char *data; /* borrowed */
    size_t size;
} fz_memfile;

static inline int fz_mem_pread(env_file *f, void *b, size_t n, uint64_t off, size_t *nread)
{
    fz_memfile *m = (fz_memfile *)f;
    *nread = 0;
    if (off >= m->size)
        return 0;
    size_t avail = m->size - (size_t)off;
    *nread = n < avail ? n : avail;
    memcpy(b, m->data + off, *nread);
    return 0;
}

static inline int fz_mem_close(env_file *f)
{
    free(f);
    return 0;
}

/* A file whose bytes are data[0, size) (borrowed: must outlive the file); it can only be read
 * and closed, and closing frees it, not data. NULL if out of memory. */
static inline env_file *fz_memfile_open(const char *data, size_t size)
{
    static const kv_env mem_env = {.pread = fz_mem_pread, .close = fz_mem_close};
    fz_memfile *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->base.env = &mem_env;
    m->data = data;
    m->size = size;
    return &m->base;
}

/* ---- SSTable images --------------------------------------------------------------------- */

/* The table targets' input: a mode byte, then the file. Bit 1 of the mode rewrites the footer
 * checksum to match, so the fuzzer gets past the footer. */
#define FZ_SST_FIX_FOOTER 2

typedef struct fz_sst_image {
    int mode;       /* the input's first byte */
    char *bytes;    /* the table file: a private exact-size copy (see fz_copy); caller frees */
    size_t size;    /* its size */
    env_file *file; /* a file over bytes (fz_memfile_open), for the table reader to take */
} fz_sst_image;

/* Splits an input into its mode byte and the table file, with the footer checksum fixed if the
 * mode asks, and opens a file over it. Returns 0, or -1 for an empty input or out of memory
 * (nothing to free). Whoever closes img->file does not free img->bytes: the caller does. */
static inline int fz_sst_open(const uint8_t *data, size_t size, fz_sst_image *img)
{
    if (size < 1)
        return -1;
    img->mode = data[0];
    img->size = size - 1;
    img->bytes = fz_copy(data + 1, img->size);
    if (!img->bytes)
        return -1;
    if ((img->mode & FZ_SST_FIX_FOOTER) && img->size >= SST_FOOTER_SIZE) {
        char *footer = img->bytes + img->size - SST_FOOTER_SIZE;
        coding_put_fixed64(footer + SST_FOOTER_CHECKSUM,
                           checksum_value(footer, SST_FOOTER_CHECKSUM));
    }
    img->file = fz_memfile_open(img->bytes, img->size);
    if (!img->file) {
        free(img->bytes);
        return -1;
    }
    return 0;
}

#endif /* KV_FUZZ_UTIL_H */
