/* fuzz_vlog.c - libFuzzer target: the value log's readers over arbitrary segment bytes.
 *
 * The input becomes segment 000001.vlog of a scratch store directory (with a VLOG marker). The
 * offline check walks it record by record; then the stored-value decoder resolves pointers whose
 * fields come from the input's first bytes (and one at every record the walk found), through a
 * read-only value log. Nothing may crash or read out of bounds, and a resolved value must have
 * exactly the length its pointer names. At each record the walk found, partial reads
 * (vlog_resolve_range, with and without the record's key, at offsets taken from the segment
 * header's reserved bytes) must copy exactly the bytes of the range, and the same bytes as a
 * whole read when that succeeds too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/vlog.h"
#include "fuzz_util.h"
#include "kvcore/kv.h"
#include "util/coding.h"
#include "util/env.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static int write_file(const char *name, const void *p, size_t n)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    fclose(f);
    return w == n ? 0 : -1;
}

static int points_nowhere(void *ctx, slice key, uint64_t seg, uint64_t off)
{
    (void)ctx;
    (void)key;
    (void)seg;
    (void)off;
    return 0;
}

/* Reads [off, off + len) of the record behind pointer enc and checks it against the whole
 * value (when that resolves). */
static void read_range(vlog *v, slice key, slice enc, uint32_t vlen, uint64_t off, size_t len,
                       buf *scratch)
{
    char *dst = malloc(len + 1);
    if (!dst)
        return;
    size_t n = 0;
    uint64_t whole = 0;
    if (vlog_resolve_range(v, key, enc, off, dst, len, &n, &whole, scratch) == 0) {
        size_t want = off >= vlen ? 0 : (vlen - off < len ? (size_t)(vlen - off) : len);
        if (whole != vlen || n != want)
            abort();
        slice out;
        buf all;
        buf_init(&all);
        if (vlog_resolve(v, key, enc, &all, &out) == 0 && n > 0 &&
            (out.size != vlen || memcmp(out.data + off, dst, n) != 0))
            abort(); /* a range read returned other bytes than the whole read */
        buf_free(&all);
    }
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/fuzz_vlog.%d", (int)getpid());
        if (mkdir(dir, 0700) != 0)
            return 0;
    }
    char marker[VLOG_SEGMENT_HEADER_SIZE];
    coding_put_fixed64(marker, VLOG_MAGIC);
    coding_put_fixed32(marker + 8, VLOG_FORMAT_VERSION);
    coding_put_fixed32(marker + 12, 0);
    if (write_file(VLOG_MARKER_NAME, marker, sizeof(marker)) != 0 ||
        write_file("000001.vlog", data, size) != 0)
        return 0;

    kv_options o;
    kv_options_init(&o);
    o.log_fn = fz_drop_message;
    o.read_only = 1;
    kv_logger lg;
    kv_logger_init(&lg, &o);
    uint64_t problems = 0, bytes = 0;
    vlog_check_dir(dir, env_posix(), &lg, &problems, &bytes);

    vlog_db_ops ops = {NULL, points_nowhere, NULL, NULL, NULL};
    vlog *v = NULL;
    if (vlog_open(dir, env_posix(), &lg, &o, 0, &ops, &v) != 0 || !v)
        return 0;
    buf scratch;
    buf_init(&scratch);
    /* Pointers taken from the input: tag 1 + fields, and raw stored values of every tag. */
    for (size_t cut = 0; cut <= 24 && cut <= size; cut += 8) {
        slice enc = slice_make(data, cut + (size - cut > 40 ? 40 : size - cut));
        slice out;
        uint64_t seg, off;
        uint32_t psize, vlen;
        int ok = vlog_parse_pointer(enc, &seg, &off, &psize, &vlen);
        int rc = vlog_resolve(v, slice_make(NULL, 0), enc, &scratch, &out);
        if (rc == 0 && ok && out.size != vlen)
            abort(); /* a resolved pointer returns exactly vlen bytes */
    }
    /* A pointer at each record a walk from offset 16 finds (key unchecked: NULL key). */
    uint64_t off = VLOG_SEGMENT_HEADER_SIZE;
    uint32_t range_seed = size >= 16 ? coding_get_fixed32((const char *)data + 12) : 0;
    while (off + VLOG_RECORD_HEADER_SIZE <= size) {
        const char *h = (const char *)data + off;
        uint64_t rec = VLOG_RECORD_HEADER_SIZE + (uint64_t)coding_get_fixed32(h + 9) +
                       coding_get_fixed32(h + 13);
        if (rec > UINT32_MAX)
            break;
        char p[32];
        char *q = p;
        *q++ = (char)VLOG_TAG_POINTER;
        q = coding_put_varint64(q, 1);
        q = coding_put_varint64(q, off);
        q = coding_put_varint32(q, (uint32_t)rec);
        q = coding_put_varint32(q, coding_get_fixed32(h + 17));
        slice out, enc = slice_make(p, (size_t)(q - p));
        int rc = vlog_resolve(v, slice_make(NULL, 0), enc, &scratch, &out);
        uint32_t vlen = coding_get_fixed32(h + 17);
        if (rc == 0 && out.size != vlen)
            abort();
        uint64_t klen = coding_get_fixed32(h + 9);
        slice key = off + VLOG_RECORD_HEADER_SIZE + klen <= size
                        ? slice_make(h + VLOG_RECORD_HEADER_SIZE, (size_t)klen)
                        : slice_make("", 0);
        uint64_t at = vlen ? range_seed % vlen : 0;
        size_t len = 1 + (range_seed >> 16) % 9000;
        read_range(v, slice_make(NULL, 0), enc, vlen, at, len, &scratch);
        read_range(v, key, enc, vlen, at, len, &scratch);
        read_range(v, key, enc, vlen, at / VLOG_PAGE_SIZE * VLOG_PAGE_SIZE, VLOG_PAGE_SIZE,
                   &scratch);
        read_range(v, key, enc, vlen, vlen, 10, &scratch);
        off += rec;
    }
    buf_free(&scratch);
    vlog_close(v);
    return 0;
}
