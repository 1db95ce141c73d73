/* fuzz_wal.c - libFuzzer target: the WAL reader and the batch decoder over arbitrary bytes.
 *
 * Reads every record the memory reader accepts, decodes each as a write batch, and checks the
 * reader's accounting: good_offset + dropped bytes always equals the input size, a drop
 * always has a reason, and the verdict on a dropped tail (unsynced or damaged) agrees with
 * the synced offset the sync markers prove (or, without markers, with the zero-page rule). The
 * whole input is also decoded as a batch and, if valid, inserted into a memtable whose iteration
 * must then be sorted and complete.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "db/batch.h"
#include "db/memtable.h"
#include "db/wal.h"
#include "fuzz_util.h"
#include "kvcore/kv.h"
#include "util/ikey.h"
#include "util/iter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_sink {
    uint64_t ops;
    size_t bytes;
} fuzz_sink;

static int sink_put(void *ctx, uint64_t seq, slice key, slice value)
{
    fuzz_sink *s = ctx;
    s->ops++;
    /* Touch every byte so that an out-of-bounds slice shows under ASan. */
    for (size_t i = 0; i < key.size; i++)
        s->bytes += (unsigned char)key.data[i];
    for (size_t i = 0; i < value.size; i++)
        s->bytes += (unsigned char)value.data[i];
    return 0;
}

static int sink_del(void *ctx, uint64_t seq, slice key)
{
    return sink_put(ctx, seq, key, slice_make(NULL, 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = fz_copy(data, size); /* ASan catches any read past its end */
    if (!copy)
        return 0;
    wal_reader *r;
    if (wal_reader_new_mem(slice_make(copy, size), &r) != 0) {
        free(copy);
        return 0;
    }
    slice rec;
    int rc;
    uint64_t last_good = 0;
    while ((rc = wal_read_record(r, &rec)) == 1) {
        if (rec.size > size || rec.data < copy || rec.data + rec.size > copy + size)
            abort();
        /* The record ends at good_offset; only whole sync markers lie between records. */
        uint64_t good = wal_reader_good_offset(r);
        if (rec.data + rec.size != copy + good || good < last_good + WAL_HEADER_SIZE + rec.size ||
            (good - last_good - WAL_HEADER_SIZE - rec.size) % WAL_SYNC_RECORD_SIZE != 0)
            abort();
        last_good = good;
        fuzz_sink sink = {0, 0};
        batch_handler h = {sink_put, sink_del, &sink};
        int brc = batch_iterate(rec, &h);
        if (brc != 0 && brc != KV_ECORRUPT)
            abort();
        if (brc == KV_ECORRUPT && sink.ops != 0)
            abort(); /* a malformed batch must not be half applied */
    }
    if (rc != 0)
        abort(); /* the memory reader has no I/O to fail */
    /* The whole input as a batch too: the batch decoder sees arbitrary bytes directly, and
     * a batch it accepts must land in a memtable as exactly its ops, in order. */
    fuzz_sink sink = {0, 0};
    batch_handler h = {sink_put, sink_del, &sink};
    int brc = batch_iterate(slice_make(copy, size), &h);
    if (brc == 0) {
        memtable *m = memtable_new();
        if (m) {
            if (batch_insert_into_memtable(slice_make(copy, size), m) == 0 &&
                memtable_num_entries(m) != sink.ops)
                abort();
            iter *it = memtable_iter_new(m);
            uint64_t n = 0;
            slice prev = slice_make(NULL, 0);
            for (iter_seek_first(it); it && iter_valid(it); iter_next(it), n++) {
                if (n > 0 && ikey_compare(prev, iter_key(it)) >= 0)
                    abort();
                prev = iter_key(it); /* stays valid: memtable entries never move */
            }
            if (it && n != memtable_num_entries(m))
                abort();
            iter_free(it);
            memtable_unref(m);
        }
    } else if (brc != KV_ECORRUPT || sink.ops != 0) {
        abort();
    }

    uint64_t dropped = wal_reader_dropped_bytes(r);
    const char *why = wal_reader_drop_reason(r);
    if (wal_reader_good_offset(r) + dropped != size || (dropped != 0) != (why != NULL))
        abort();
    /* The verdict on the tail agrees with what the markers prove, or (no markers) with the
     * zero-page rule, which never calls a record cut short by the end of the input damage. */
    enum wal_tail tail = wal_reader_tail(r);
    uint64_t synced = wal_reader_synced_offset(r), good = wal_reader_good_offset(r);
    int proven = wal_reader_tail_proven(r);
    if ((tail == WAL_TAIL_CLEAN) != (dropped == 0) || synced > size || (proven && !dropped))
        abort();
    if (proven && (tail == WAL_TAIL_DAMAGED) != (synced > good))
        abort();
    if (!proven && tail == WAL_TAIL_DAMAGED && strncmp(why, "truncated", 9) == 0)
        abort();
    wal_reader_free(r);
    free(copy);
    return 0;
}
