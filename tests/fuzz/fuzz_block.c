/* fuzz_block.c - libFuzzer target: the block reader over arbitrary bytes.
 *
 * The first input byte picks the comparator (bytewise or internal-key order); the rest is the
 * block. Walks it forward and backward, checks that the two walks agree when both end cleanly,
 * and seeks to keys taken from the walk and from the input. Any read outside the block shows
 * under ASan because the block lives in an allocation of exactly its size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "kvcore/kv.h"
#include "table/block.h"
#include "util/ikey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int bytewise(slice a, slice b)
{
    return slice_compare(a, b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    block_cmp_fn cmp = (data[0] & 1) ? ikey_compare : bytewise;
    size_t n = size - 1;
    char *bytes = fz_copy(data + 1, n);
    if (bytes == NULL)
        return 0;
    block b;
    const char *why;
    if (block_init(&b, bytes, n, &why) != 0) {
        free(bytes);
        return 0;
    }
    struct block_iter it;
    block_iter_init(&it, &b, cmp, NULL);
    size_t sum = 0, forward = 0, backward = 0;
    char *first = NULL, *last = NULL;
    size_t first_len = 0, last_len = 0;
    for (block_iter_seek_first(&it); block_iter_valid(&it); block_iter_next(&it)) {
        slice k = block_iter_key(&it);
        sum += fz_touch(k) + fz_touch(block_iter_value(&it));
        if (forward == 0) {
            first = malloc(k.size + 1);
            memcpy(first, k.data, k.size);
            first_len = k.size;
        }
        free(last);
        last = malloc(k.size + 1);
        memcpy(last, k.data, k.size);
        last_len = k.size;
        if (++forward > n)
            abort(); /* more entries than bytes: the iterator is looping */
    }
    int fstatus = block_iter_status(&it);
    block_iter_release(&it);
    block_iter_init(&it, &b, cmp, NULL);
    for (block_iter_seek_last(&it); block_iter_valid(&it); block_iter_prev(&it)) {
        slice k = block_iter_key(&it);
        sum += fz_touch(k) + fz_touch(block_iter_value(&it));
        if (backward == 0 && fstatus == 0 && forward > 0 &&
            (k.size != last_len || memcmp(k.data, last, k.size) != 0))
            abort(); /* the last entry differs between the two walks */
        if (++backward > n)
            abort();
    }
    if (fstatus == 0 && block_iter_status(&it) == 0 && forward != backward)
        abort();
    block_iter_release(&it);
    /* Seeks: to the first and last keys seen, and to a slice of the input. */
    block_iter_init(&it, &b, cmp, NULL);
    if (first) {
        block_iter_seek(&it, slice_make(first, first_len));
        if (block_iter_valid(&it))
            sum += fz_touch(block_iter_key(&it));
    }
    if (last) {
        block_iter_seek(&it, slice_make(last, last_len));
        if (block_iter_valid(&it)) {
            block_iter_prev(&it);
            if (block_iter_valid(&it))
                block_iter_next(&it);
        }
    }
    block_iter_seek(&it, slice_make(bytes, n < 12 ? n : 12));
    while (block_iter_valid(&it)) {
        sum += fz_touch(block_iter_value(&it));
        block_iter_prev(&it);
    }
    block_iter_release(&it);
    free(first);
    free(last);
    free(bytes);
    return (int)(sum & 0); /* libFuzzer wants 0; sum keeps the touches alive */
}
