/* iter.h - the internal iterator interface shared by blocks, tables, memtables and merges.
 *
 * An internal iterator walks (key, value) pairs in ikey_compare order (or bytewise order for
 * block-level iterators over non-internal keys, e.g. an index block). It is used by one thread
 * at a time. key()/value() are borrowed until the iterator moves or is freed.
 * An iterator that hits an error becomes invalid and status() returns the KV_E* code; an
 * iterator that simply reaches the end is invalid with status() == 0.
 */
#ifndef KV_ITER_H
#define KV_ITER_H

#include "util/slice.h"

typedef struct iter iter;

struct iter_ops {
    int (*valid)(const iter *it);
    void (*seek_first)(iter *it);
    void (*seek_last)(iter *it);
    void (*seek)(iter *it, slice target); /* first entry with key >= target */
    void (*next)(iter *it);
    void (*prev)(iter *it);
    slice (*key)(const iter *it);
    slice (*value)(const iter *it);
    int (*status)(const iter *it);
    void (*destroy)(iter *it); /* frees the iterator's own memory */
};

typedef void (*iter_cleanup_fn)(void *arg1, void *arg2);

struct iter_cleanup {
    iter_cleanup_fn fn;
    void *arg1, *arg2;
    struct iter_cleanup *next;
};

/* Every iterator starts with this header. */
struct iter {
    const struct iter_ops *ops;
    struct iter_cleanup *cleanups; /* run by iter_free, newest first, after destroy */
};

static inline int iter_valid(const iter *it)
{
    return it->ops->valid(it);
}
static inline void iter_seek_first(iter *it)
{
    it->ops->seek_first(it);
}
static inline void iter_seek_last(iter *it)
{
    it->ops->seek_last(it);
}
static inline void iter_seek(iter *it, slice target)
{
    it->ops->seek(it, target);
}
static inline void iter_next(iter *it)
{
    it->ops->next(it);
}
static inline void iter_prev(iter *it)
{
    it->ops->prev(it);
}
static inline slice iter_key(const iter *it)
{
    return it->ops->key(it);
}
static inline slice iter_value(const iter *it)
{
    return it->ops->value(it);
}
static inline int iter_status(const iter *it)
{
    return it->ops->status(it);
}

/* Initialises the header of an iterator implementation. */
void iter_init(iter *it, const struct iter_ops *ops);
/* Registers fn(arg1, arg2) to run when the iterator is freed. Returns 0 or KV_ENOMEM (in which
 * case fn is run at once, so nothing leaks; the caller should then fail the iterator). */
int iter_register_cleanup(iter *it, iter_cleanup_fn fn, void *arg1, void *arg2);
/* Destroys it, then runs its cleanups (which may free what the iterator was reading from).
 * NULL is a no-op. */
void iter_free(iter *it);

/* An iterator over nothing that reports `status` (0 for a plain empty iterator). NULL only if
 * out of memory. */
iter *iter_new_empty(int status);

#endif /* KV_ITER_H */
