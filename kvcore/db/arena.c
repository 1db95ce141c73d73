/* arena.c - the memtable's bump allocator (see arena.h).
 *
 * Blocks are mapped with mmap and unmapped by arena_destroy, not taken from malloc: a memtable
 * is allocated by whichever writer leads the write queue, so malloc would spread successive
 * memtables over the per-thread malloc arenas, and a freed memtable's blocks would stay
 * resident in an arena no later writer reuses (measured: peak RSS of a 4-thread mixed phase
 * grew by ~2 memtables). Unmapping gives the memory back the moment the flush is done.
 *
 * Invariants:
 *  1. alloc_ptr is ARENA_ALIGN-aligned whenever alloc_remaining > 0, and [alloc_ptr,
 *     alloc_ptr + alloc_remaining) lies inside the newest shared block.
 *  2. usage equals the sum of the mapped sizes of every block in the list.
 */
#include "db/arena.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

struct arena_block {
    struct arena_block *next;
    size_t size; /* bytes mapped for this block, header included */
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
        munmap(b, b->size);
        b = next;
    }
    arena_init(a);
}

/* Maps a block with at least `payload` usable bytes (the mapping is whole pages) and links it
 * in; returns its payload or NULL. */
static char *arena_new_block(arena *a, size_t payload)
{
    /* Rounded to 4 KiB pages for the usage count; the kernel rounds to its own page size. */
    const size_t page = 4096;
    if (payload > SIZE_MAX - ARENA_HEADER_SIZE - page)
        return NULL;
    size_t total = (ARENA_HEADER_SIZE + payload + page - 1) / page * page;
    void *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return NULL;
    struct arena_block *b = mem;
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
    /* A shared block maps exactly ARENA_BLOCK_SIZE bytes, header included. */
    char *p = arena_new_block(a, ARENA_BLOCK_SIZE - ARENA_HEADER_SIZE);
    if (!p)
        return NULL;
    a->alloc_ptr = p + need;
    a->alloc_remaining = ARENA_BLOCK_SIZE - ARENA_HEADER_SIZE - need;
    return p;
}

size_t arena_memory_usage(const arena *a)
{
    return atomic_load_explicit(&a->usage, memory_order_relaxed);
}
