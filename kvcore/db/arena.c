/* arena.c - the memtable's bump allocator (see arena.h).
 *
 * Invariants:
 *  1. alloc_ptr is ARENA_ALIGN-aligned whenever alloc_remaining > 0, and [alloc_ptr,
 *     alloc_ptr + alloc_remaining) lies inside the newest shared block.
 *  2. usage equals the sum of the malloc'd sizes of every block in the list.
 */
#include "db/arena.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

struct arena_block {
    struct arena_block *next;
    size_t size; /* bytes malloc'd for this block, header included */
};

/* The header is padded so that the payload that follows it is aligned. */
#define ARENA_HEADER_SIZE ((sizeof(struct arena_block) + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1))

void arena_init(arena *a)
{
    a->alloc_ptr = NULL;
    a->alloc_remaining = 0;
    a->blocks = NULL;
    atomic_init(&a->usage, 0);
}

void arena_destroy(arena *a)
{
    struct arena_block *b = a->blocks;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    arena_init(a);
}

/* Mallocs a block with `payload` usable bytes and links it in; returns its payload or NULL. */
static char *arena_new_block(arena *a, size_t payload)
{
    if (payload > SIZE_MAX - ARENA_HEADER_SIZE)
        return NULL;
    size_t total = ARENA_HEADER_SIZE + payload;
    struct arena_block *b = malloc(total);
    if (!b)
        return NULL;
    b->size = total;
    b->next = a->blocks;
    a->blocks = b;
    atomic_fetch_add_explicit(&a->usage, total, memory_order_relaxed);
    return (char *)b + ARENA_HEADER_SIZE;
}

void *arena_alloc(arena *a, size_t n)
{
    assert(n > 0);
    if (n > SIZE_MAX - ARENA_ALIGN)
        return NULL;
    size_t need = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (need <= a->alloc_remaining) {
        char *p = a->alloc_ptr;
        a->alloc_ptr += need;
        a->alloc_remaining -= need;
        return p;
    }
    if (need > ARENA_BLOCK_SIZE / 4) {
        /* A big entry gets its own block; the current block keeps serving small ones. */
        return arena_new_block(a, need);
    }
    char *p = arena_new_block(a, ARENA_BLOCK_SIZE);
    if (!p)
        return NULL;
    a->alloc_ptr = p + need;
    a->alloc_remaining = ARENA_BLOCK_SIZE - need;
    return p;
}

size_t arena_memory_usage(const arena *a)
{
    return atomic_load_explicit(&a->usage, memory_order_relaxed);
}
