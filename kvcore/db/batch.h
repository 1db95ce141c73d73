/* batch.h - the encoding of a write batch, which is also the payload of a WAL record.
 *
 * Grammar (kvcore/FORMAT.md; on-disk: never change):
 *   batch  := sequence:fixed64  count:fixed32  op{count}
 *   op     := 1:u8 key:lenstr value:lenstr      (put)
 *           | 0:u8 key:lenstr                   (delete)
 *   lenstr := length:varint32 bytes
 * The i-th op (from 0) gets sequence number sequence + i.
 */
#ifndef KV_BATCH_H
#define KV_BATCH_H

#include <stdint.h>
#include "kvcore/kv.h"
#include "db/memtable.h"
#include "util/coding.h"

#define BATCH_HEADER_SIZE 12

struct kv_batch {
    buf rep; /* always at least BATCH_HEADER_SIZE bytes */
};

uint64_t batch_sequence(const kv_batch *b);
void batch_set_sequence(kv_batch *b, uint64_t seq);
uint32_t batch_count(const kv_batch *b);
/* Makes b a batch of one put (is_put) or delete of key (value ignored for a delete) whose
 * encoding lives in the caller's mem[cap], so that a single write needs no allocation. Returns
 * 0, or KV_EINVAL if the encoding might not fit in cap (use a heap batch then). b borrows mem:
 * never free, clear or grow it. Thread: the caller's. */
int batch_init_single(kv_batch *b, char *mem, size_t cap, int is_put, slice key, slice value);
/* A put being appended by batch_put_begin/_end: offsets into the batch's rep. */
typedef struct batch_pending {
    size_t op_start, value_at, slot;
} batch_pending;
/* Starts a put of key whose value the caller then appends to b->rep itself (so a value built in
 * place is not built elsewhere and copied in); vlen_hint is its expected length (a wrong hint
 * costs a move of the value in batch_put_end, nothing else). Until batch_put_end or
 * batch_put_abort, b holds a partial op and must not be used otherwise. Returns 0, KV_EINVAL
 * (as kv_batch_put) or KV_ENOMEM, b unchanged then. Thread: the caller's. */
int batch_put_begin(kv_batch *b, slice key, size_t vlen_hint, batch_pending *p);
/* Completes the put p: the value is every byte appended to b->rep since batch_put_begin.
 * Returns 0, or KV_EINVAL (value over UINT32_MAX bytes) / KV_ENOMEM with the put removed. */
int batch_put_end(kv_batch *b, const batch_pending *p);
/* Removes the partial put p (and every byte appended since batch_put_begin). */
void batch_put_abort(kv_batch *b, const batch_pending *p);
/* Appends src's operations to dst (for group commit). 0 or KV_ENOMEM (dst unchanged). */
int batch_append(kv_batch *dst, const kv_batch *src);
/* Replaces b's contents with an encoded batch read from the WAL; KV_ECORRUPT if it is shorter
 * than the header. */
int batch_set_contents(kv_batch *b, slice rep);

typedef struct batch_handler {
    int (*put)(void *ctx, uint64_t seq, slice key, slice value);
    int (*del)(void *ctx, uint64_t seq, slice key);
    void *ctx;
} batch_handler;

/* Calls the handler for each operation in order. Returns KV_ECORRUPT if rep is malformed (the
 * count disagrees, a length runs past the end, an unknown tag), or the first non-zero value a
 * handler returned. Safe on any bytes. */
int batch_iterate(slice rep, const batch_handler *h);
/* Inserts every operation into m with its sequence number. */
int batch_insert_into_memtable(slice rep, memtable *m);

#endif /* KV_BATCH_H */
