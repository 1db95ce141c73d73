/* fuzz_sst_scan.c - libFuzzer target: the salvage scan of a damaged SSTable (table/sst.h
 * sst_scan) over arbitrary bytes, read from memory.
 *
 * The first input byte chooses the mode: bit 1 rewrites the footer checksum to match (so the
 * fuzzer gets past the footer to the index and the trailer search). The rest is the file. The
 * target checks what sst_scan promises for any input: no crash, no read outside the file's
 * bytes (they live in an allocation of exactly their size), every block returned is fully
 * iterable with well-formed internal keys strictly increasing across the whole scan, the entry
 * count matches, lost stretches lie inside the file and do not overlap, and the scan ends.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "kvcore/kv.h"
#include "table/block.h"
#include "table/sst.h"
#include "table/sst_format.h"
#include "util/coding.h"
#include "util/ikey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct loss_ctx {
    uint64_t file_size, end, sum;
} loss_ctx;

static void on_loss(void *ctx, const sst_scan_loss *l)
{
    loss_ctx *c = ctx;
    if (l->offset < c->end || l->offset > c->file_size || l->bytes > c->file_size - l->offset)
        abort(); /* overlapping or outside the file */
    c->end = l->offset + l->bytes;
    for (size_t i = 0; l->has_lower && i < l->lower.size; i++)
        c->sum += (unsigned char)l->lower.data[i];
    for (size_t i = 0; l->has_upper && i < l->upper.size; i++)
        c->sum += (unsigned char)l->upper.data[i];
    if (!l->why)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_sst_image img;
    if (fz_sst_open(data, size, &img) != 0)
        return 0;
    sst_scan *s;
    if (sst_scan_open(img.file, img.size, "fuzz.sst", fz_quiet_log(), &s) != 0) {
        free(img.bytes);
        return 0;
    }
    loss_ctx lc = {img.size, 0, 0};
    buf prev;
    buf_init(&prev);
    uint64_t entries = 0, blocks = 0;
    const block *b;
    int rc;
    while ((rc = sst_scan_next(s, on_loss, &lc, &b)) == 1) {
        struct block_iter bi;
        block_iter_init(&bi, b, ikey_compare, NULL);
        for (block_iter_seek_first(&bi); block_iter_valid(&bi); block_iter_next(&bi)) {
            slice k = block_iter_key(&bi), v = block_iter_value(&bi);
            ikey_parsed pk;
            if (!ikey_parse(k, &pk) || (prev.len && ikey_compare(buf_slice(&prev), k) >= 0))
                abort(); /* the scan promised checked, increasing keys */
            buf_clear(&prev);
            buf_append(&prev, k.data, k.size);
            for (size_t i = 0; i < v.size; i++)
                lc.sum += (unsigned char)v.data[i];
            entries++;
        }
        if (block_iter_status(&bi) != 0)
            abort();
        block_iter_release(&bi);
        if (++blocks > img.size)
            abort(); /* more blocks than bytes: looping */
    }
    if (rc < 0 && rc != KV_ENOMEM)
        abort(); /* memory reads do not fail */
    if (rc == 0 && sst_scan_next(s, on_loss, &lc, &b) != 0)
        abort(); /* the end is sticky */
    sst_scan_stats st;
    sst_scan_get_stats(s, &st);
    if (rc == 0 && (st.entries != entries || st.blocks_read != blocks))
        abort();
    slice filter;
    if (sst_scan_filter(s, &filter) && filter.size == 0)
        abort();
    sst_scan_close(s);
    buf_free(&prev);
    free(img.bytes);
    return lc.sum == 42 ? 0 : 0;
}
