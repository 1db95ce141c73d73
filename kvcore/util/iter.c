/* iter.c - the common header of internal iterators: cleanups, free, and the empty iterator. */
#include "util/iter.h"

#include <stdlib.h>

#include "kvcore/kv.h"

void iter_init(iter *it, const struct iter_ops *ops)
{
    it->ops = ops;
    it->cleanups = NULL;
}

int iter_register_cleanup(iter *it, iter_cleanup_fn fn, void *arg1, void *arg2)
{
    struct iter_cleanup *c = malloc(sizeof *c);
    if (!c) {
        fn(arg1, arg2); /* run now so whatever it releases does not leak */
        return KV_ENOMEM;
    }
    c->fn = fn;
    c->arg1 = arg1;
    c->arg2 = arg2;
    c->next = it->cleanups;
    it->cleanups = c;
    return 0;
}

void iter_free(iter *it)
{
    if (!it)
        return;
    /* The cleanups release what the iterator reads from (a table's cache handle, a version),
     * so they run after destroy: destroying an sst iterator still touches its reader, which the
     * table cache frees when the cleanup drops the last reference. */
    struct iter_cleanup *c = it->cleanups;
    it->cleanups = NULL;
    it->ops->destroy(it);
    while (c) {
        struct iter_cleanup *next = c->next;
        c->fn(c->arg1, c->arg2);
        free(c);
        c = next;
    }
}

/* ---- The empty iterator ------------------------------------------------------------------ */

typedef struct empty_iter {
    iter base;
    int status;
} empty_iter;

static int empty_valid(const iter *it)
{
    return 0;
}

static void empty_move(iter *it)
{
}

static void empty_seek(iter *it, slice target)
{
}

/* key()/value() require a valid iterator; an empty one never is. Return an empty slice
 * rather than crash if a caller breaks that rule. */
static slice empty_slice(const iter *it)
{
    return slice_make("", 0);
}

static int empty_status(const iter *it)
{
    return ((const empty_iter *)it)->status;
}

static void empty_destroy(iter *it)
{
    free(it);
}

static const struct iter_ops empty_ops = {
    .valid = empty_valid,
    .seek_first = empty_move,
    .seek_last = empty_move,
    .seek = empty_seek,
    .next = empty_move,
    .prev = empty_move,
    .key = empty_slice,
    .value = empty_slice,
    .status = empty_status,
    .destroy = empty_destroy,
};

iter *iter_new_empty(int status)
{
    empty_iter *e = malloc(sizeof *e);
    if (!e)
        return NULL;
    iter_init(&e->base, &empty_ops);
    e->status = status;
    return &e->base;
}
