/* arena.h - a bump allocator for the memtable: many small allocations, freed all at once.
 *
 * Memory comes in blocks of ARENA_BLOCK_SIZE bytes mapped from the OS (not malloc, see arena.c);
 * a request larger than a quarter of a block gets a block of its own (whole pages), so that at
 * most a quarter of a block is wasted at each block switch.
 * Every allocation is aligned to ARENA_ALIGN bytes (enough for pointers, size_t and atomics).
 *
 * Threads: arena_alloc is called by one thread at a time (the memtable's single writer);
 * arena_memory_usage may be called from any thread at any time (relaxed atomic read).
 * Memory handed out stays valid, and never moves, until arena_destroy.
 */
#ifndef KV_ARENA_H
#define KV_ARENA_H

#include <stdatomic.h>
#include <stddef.h>

#define ARENA_BLOCK_SIZE ((size_t)64 * 1024)
#define ARENA_ALIGN ((size_t)8)

struct arena_block; /* private to arena.c */

typedef struct arena {
    char *alloc_ptr;            /* next free byte in the current block */
    size_t alloc_remaining;     /* bytes left in the current block */
    struct arena_block *blocks; /* every block, newest first */
    atomic_size_t usage;        /* bytes mapped, including block headers */
} arena;

/* Initialises an empty arena (allocates nothing). */
void arena_init(arena *a);
/* Frees every block; the arena is then empty and may be reused after arena_init. */
void arena_destroy(arena *a);
/* Returns n (> 0) bytes aligned to ARENA_ALIGN, owned by the arena, or NULL if out of memory
 * (the arena is unchanged). Single writer. */
void *arena_alloc(arena *a, size_t n);
/* Bytes of memory the arena holds. Any thread. */
size_t arena_memory_usage(const arena *a);

#endif /* KV_ARENA_H */
