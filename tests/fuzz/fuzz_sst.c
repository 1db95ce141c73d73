/* fuzz_sst.c - libFuzzer target: a whole SSTable from arbitrary bytes, read from memory.
 *
 * The first input byte chooses the mode: bit 0 turns block checksum verification off (so the
 * fuzzer reaches the parsers behind the checksums), bit 1 rewrites the footer checksum to match
 * (so it gets past the footer), bit 2 reads through a small block cache. The rest is the file.
 * The table is opened, iterated both ways, probed with gets for keys it holds and one it does
 * not, and verified. The target checks what holds for any input: no crash, no read outside
 * the file's bytes (they live in an allocation of exactly their size), forward and backward
 * walks of equal length when both end cleanly, and no endless loop.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "kvcore/kv.h"
#include "table/sst.h"
#include "table/sst_format.h"
#include "util/cache.h"
#include "util/ikey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct found_ctx {
    size_t calls, sum;
} found_ctx;

static void on_found(void *ctx, slice k, slice v)
{
    found_ctx *f = ctx;
    f->calls++;
    f->sum += fz_touch(k) + fz_touch(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_sst_image img;
    if (fz_sst_open(data, size, &img) != 0)
        return 0;
    cache *c = (img.mode & 4) ? cache_new(16 << 10) : NULL;
    sst_read_options ro = {.block_cache = c,
                           .log = fz_quiet_log(),
                           .verify_checksums = !(img.mode & 1),
                           .fill_cache = 1};
    sst_reader *r;
    if (sst_reader_open(img.file, img.size, "fuzz.sst", &ro, &r) != 0) {
        cache_free(c);
        free(img.bytes);
        return 0;
    }
    size_t sum = 0, forward = 0, backward = 0;
    /* Keep up to 16 keys seen, to look them up later. */
    char *keys[16];
    size_t klen[16], nkeys = 0;
    iter *it = sst_reader_iter_new(r, 1);
    if (it) {
        for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
            slice k = iter_key(it);
            sum += fz_touch(k) + fz_touch(iter_value(it));
            if (nkeys < 16 && (forward % 3) == 0) {
                keys[nkeys] = malloc(k.size + 1);
                memcpy(keys[nkeys], k.data, k.size);
                klen[nkeys++] = k.size;
            }
            if (++forward > img.size)
                abort(); /* more entries than bytes: looping */
        }
        int fstatus = iter_status(it);
        for (iter_seek_last(it); iter_valid(it); iter_prev(it)) {
            sum += fz_touch(iter_key(it));
            if (++backward > img.size)
                abort();
        }
        if (fstatus == 0 && iter_status(it) == 0 && forward != backward)
            abort();
        for (size_t i = 0; i < nkeys; i++) {
            iter_seek(it, slice_make(keys[i], klen[i]));
            if (iter_valid(it)) {
                sum += fz_touch(iter_key(it));
                iter_prev(it);
            }
        }
        iter_free(it);
    }
    for (size_t i = 0; i < nkeys; i++) {
        found_ctx fc = {0, 0};
        if (klen[i] >= IKEY_TAG_SIZE)
            sst_reader_get(r, slice_make(keys[i], klen[i]), &fc, on_found);
        sum += fc.sum;
        free(keys[i]);
    }
    char probe[IKEY_TAG_SIZE + 4] = "zzzz";
    coding_put_fixed64(probe + 4, ikey_pack_tag(1, IKEY_TYPE_VALUE));
    found_ctx fc = {0, 0};
    sst_reader_get(r, slice_make(probe, sizeof(probe)), &fc, on_found);
    sst_reader_approximate_offset(r, slice_make(probe, sizeof(probe)));
    uint64_t problems;
    sst_reader_verify(r, NULL, NULL, &problems);
    sst_reader_close(r);
    cache_free(c);
    free(img.bytes);
    return (int)((sum + fc.sum) & 0);
}
