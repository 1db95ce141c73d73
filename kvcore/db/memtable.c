/* memtable.c - the in-memory write buffer: a lock-free-read skiplist over an arena.
 *
 * Each entry is one arena allocation: a node header, its tower of next pointers, then the
 * internal key (user key + 8-byte tag) and the value bytes. Nodes are never removed or
 * changed once published, so readers need no lock.
 *
 * Invariants:
 *  1. At every level, the list starting at head->next[level] is sorted strictly by
 *     ikey_compare (equal internal keys are never inserted by the db; if they were, they would
 *     sit next to each other and ordering would still hold non-strictly).
 *  2. A node is reachable at level i only if it is reachable at every level below i.
 *  3. A node's fields and key bytes are fully written before the release store that links it
 *     in at level 0; readers reach nodes only through acquire loads, so they see them whole.
 *  4. max_height only grows; a reader that sees a stale (lower) height still finds every node,
 *     and one that sees a new height before the node is linked finds NULL pointers in head,
 *     which simply lead it down a level.
 *  5. Every node key is a well-formed internal key (>= 8 bytes, type 0 or 1).
 *  6. Filter (if any): every user key of a node has its bits set, and they are set before the
 *     node is linked, so a reader whose sequence covers a node also sees its bits (the writer's
 *     release of the sequence orders both). Bits are only ever set, by the single writer.
 *
 * Threads: see memtable.h. The writer's state (rng, arena cursor) is touched only by
 * memtable_add. num_entries and max_height are atomics read by any thread.
 */
#include "db/memtable.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "db/arena.h"
#include "kvcore/kv.h"
#include "util/checksum.h"
#include "util/ikey.h"

#define MT_MAX_HEIGHT 12
#define MT_BRANCHING 4

typedef struct mt_node mt_node;

/* An entry's allocation is [next[height-1] .. next[0]] [mt_node] [ikey bytes] [value bytes]:
 * the tower sits before the header so that the header and key, which every comparison
 * reads, share cache lines, and next[0], which every step reads, is adjacent to them. */
typedef _Atomic(mt_node *) mt_link;

/* 32-bit lengths: a batch's lengths are varint32s anyway (batch.h), and 8 bytes less per
 * entry is ~5% more entries per memtable, so fewer and larger L0 tables (kvbench's 124-byte
 * entries took 152 arena bytes each). */
struct mt_node {
    uint32_t ikey_len;  /* internal key bytes (user key + tag) */
    uint32_t value_len; /* value bytes, following the key */
};

/* The memtable filter: blocks of 512 bits (a cache line); a key's hash picks one block and
 * sets MT_FILTER_PROBES bits in it, so an insert and a lookup touch one line each. */
#define MT_FILTER_BLOCK_WORDS 8
#define MT_FILTER_PROBES 4
#define MT_FILTER_BYTES_PER_BIT 8
/* A larger budget gets this much filter (more false positives, still correct). */
#define MT_FILTER_MAX_BYTES ((size_t)64 << 20)

struct memtable {
    arena arena;
    _Atomic uint64_t *filter; /* NULL: none; filter_blocks * MT_FILTER_BLOCK_WORDS words */
    uint64_t filter_blocks;
    mt_node *head;         /* sentinel with MT_MAX_HEIGHT levels, no key */
    atomic_int max_height; /* current height of the list, 1..MT_MAX_HEIGHT */
    atomic_uint_fast64_t num_entries;
    atomic_int refs;
    uint64_t rng; /* writer only: xorshift64 state for tower heights */
};

/* What a search compares nodes against: a split (user key, tag) pair, so that a lookup needs
 * no contiguous internal key (and so no allocation), or a raw internal key from a caller,
 * which may be malformed and then compares as ikey_compare says. */
typedef struct mt_target {
    slice user_key;
    uint64_t tag;
    slice raw;
    int use_raw;
} mt_target;

static inline const char *node_key_data(const mt_node *n)
{
    return (const char *)(n + 1);
}

/* The link of n at `level`; the caller knows n's tower is that high. */
static inline mt_link *node_link(const mt_node *n, int level)
{
    return (mt_link *)n - 1 - level;
}

static inline slice node_ikey(const mt_node *n)
{
    return slice_make(node_key_data(n), n->ikey_len);
}

static inline slice node_value(const mt_node *n)
{
    return slice_make(node_key_data(n) + n->ikey_len, n->value_len);
}

static inline mt_node *node_next(const mt_node *n, int level)
{
    return atomic_load_explicit(node_link(n, level), memory_order_acquire);
}

/* Compares node n with target t in ikey_compare order. */
static int node_compare(const mt_node *n, const mt_target *t)
{
    slice ik = node_ikey(n);
    if (t->use_raw)
        return ikey_compare(ik, t->raw);
    int r = slice_compare(ikey_user_key(ik), t->user_key);
    if (r == 0) {
        uint64_t tag = ikey_tag(ik);
        r = tag > t->tag ? -1 : tag < t->tag ? 1 : 0;
    }
    return r;
}

static mt_target target_from_node(const mt_node *n)
{
    slice ik = node_ikey(n);
    mt_target t = {ikey_user_key(ik), ikey_tag(ik), slice_make(NULL, 0), 0};
    return t;
}

static mt_target target_from_raw(slice raw)
{
    mt_target t = {slice_make(NULL, 0), 0, raw, 1};
    if (raw.size >= IKEY_TAG_SIZE) {
        t.user_key = ikey_user_key(raw);
        t.tag = ikey_tag(raw);
        t.use_raw = 0;
    }
    return t;
}

static int current_height(const memtable *m)
{
    return atomic_load_explicit((atomic_int *)&m->max_height, memory_order_relaxed);
}

/* Returns the first node >= t (NULL if none). If prev is non-NULL, fills prev[level] with the
 * last node < t at every level below the current height. */
static mt_node *find_greater_or_equal(const memtable *m, const mt_target *t, mt_node **prev)
{
    mt_node *x = m->head;
    int level = current_height(m) - 1;
    for (;;) {
        mt_node *next = node_next(x, level);
        /* The search is bound by cache misses on nodes: start loading the node it goes to if
         * it steps down here while it compares `next` (x's tower is already in cache). Inserts
         * of random keys into a 160k-entry memtable: ~3% faster (min of 9 runs, 7 pairs). */
        if (level > 0)
            __builtin_prefetch(node_next(x, level - 1));
        if (next && node_compare(next, t) < 0) {
            x = next;
            continue;
        }
        if (prev)
            prev[level] = x;
        if (level == 0)
            return next;
        level--;
    }
}

/* Returns the last node < t, or head if there is none. */
static mt_node *find_less_than(const memtable *m, const mt_target *t)
{
    mt_node *x = m->head;
    int level = current_height(m) - 1;
    for (;;) {
        mt_node *next = node_next(x, level);
        if (next && node_compare(next, t) < 0) {
            x = next;
            continue;
        }
        if (level == 0)
            return x;
        level--;
    }
}

/* Returns the last node, or head if the list is empty. */
static mt_node *find_last(const memtable *m)
{
    mt_node *x = m->head;
    int level = current_height(m) - 1;
    for (;;) {
        mt_node *next = node_next(x, level);
        if (next) {
            x = next;
            continue;
        }
        if (level == 0)
            return x;
        level--;
    }
}

static int random_height(memtable *m)
{
    int h = 1;
    for (;;) {
        uint64_t x = m->rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        m->rng = x;
        if (h >= MT_MAX_HEIGHT || (x >> 32) % MT_BRANCHING != 0)
            return h;
        h++;
    }
}

#ifndef NDEBUG
/* Checks invariants 1, 2 and 5. Writer thread only (or when no writer runs). O(n). */
static int memtable_check_invariants(const memtable *m)
{
    int height = current_height(m);
    if (height < 1 || height > MT_MAX_HEIGHT)
        return 0;
    for (int level = 0; level < height; level++) {
        const mt_node *prev = NULL;
        for (const mt_node *n = node_next(m->head, level); n; n = node_next(n, level)) {
            ikey_parsed p;
            if (!ikey_parse(node_ikey(n), &p))
                return 0;
            if (prev && ikey_compare(node_ikey(prev), node_ikey(n)) > 0)
                return 0;
            prev = n;
        }
    }
    return 1;
}
#endif

/* The filter block of hash h (its first word). */
static _Atomic uint64_t *filter_block(const memtable *m, uint64_t h)
{
    uint64_t block = (uint64_t)(((unsigned __int128)(h >> 32) * m->filter_blocks) >> 32);
    return m->filter + block * MT_FILTER_BLOCK_WORDS;
}

/* The bit positions of h in its block: MT_FILTER_PROBES 9-bit fields of a remix of h. */
static inline uint64_t filter_positions(uint64_t h)
{
    return h * 0x9E3779B97F4A7C15ULL;
}

#define MT_FILTER_POS(bits, i) ((unsigned)((bits) >> (64 - 9 * ((i) + 1))) & 511u)

static uint64_t filter_hash(slice user_key)
{
    return checksum_value(user_key.data ? user_key.data : "", user_key.size);
}

/* Sets the bits of h (writer only: a plain read-modify-write of each word is enough). */
static void filter_add(memtable *m, uint64_t h)
{
    _Atomic uint64_t *b = filter_block(m, h);
    uint64_t bits = filter_positions(h);
    for (int i = 0; i < MT_FILTER_PROBES; i++) {
        unsigned pos = MT_FILTER_POS(bits, i);
        _Atomic uint64_t *w = &b[pos / 64];
        atomic_store_explicit(
            w, atomic_load_explicit(w, memory_order_relaxed) | (uint64_t)1 << (pos % 64),
            memory_order_relaxed);
    }
}

/* 0 if no key of hash h was added (invariant 6); 1 if one may have been. */
static int filter_may_contain(const memtable *m, uint64_t h)
{
    _Atomic uint64_t *b = filter_block(m, h);
    uint64_t bits = filter_positions(h);
    for (int i = 0; i < MT_FILTER_PROBES; i++) {
        unsigned pos = MT_FILTER_POS(bits, i);
        if (!(atomic_load_explicit(&b[pos / 64], memory_order_relaxed) >> (pos % 64) & 1))
            return 0;
    }
    return 1;
}

memtable *memtable_new(void)
{
    return memtable_new_filtered(0);
}

memtable *memtable_new_filtered(size_t budget_bytes)
{
    memtable *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    if (budget_bytes > 0) {
        size_t bits = budget_bytes / MT_FILTER_BYTES_PER_BIT;
        if (bits > MT_FILTER_MAX_BYTES * 8 - MT_FILTER_BLOCK_WORDS * 64)
            bits = MT_FILTER_MAX_BYTES * 8 - MT_FILTER_BLOCK_WORDS * 64;
        size_t blocks = bits / (MT_FILTER_BLOCK_WORDS * 64) + 1;
        size_t bytes = blocks * MT_FILTER_BLOCK_WORDS * sizeof(uint64_t);
        m->filter = aligned_alloc(64, bytes);
        if (!m->filter) {
            free(m);
            return NULL;
        }
        memset((void *)m->filter, 0, bytes);
        m->filter_blocks = blocks;
    }
    arena_init(&m->arena);
    char *mem = arena_alloc(&m->arena, MT_MAX_HEIGHT * sizeof(mt_link) + sizeof(mt_node));
    if (!mem) {
        arena_destroy(&m->arena);
        free((void *)m->filter);
        free(m);
        return NULL;
    }
    m->head = (mt_node *)(mem + MT_MAX_HEIGHT * sizeof(mt_link));
    m->head->ikey_len = 0;
    m->head->value_len = 0;
    for (int i = 0; i < MT_MAX_HEIGHT; i++)
        atomic_init(node_link(m->head, i), NULL);
    atomic_init(&m->max_height, 1);
    atomic_init(&m->num_entries, 0);
    atomic_init(&m->refs, 1);
    m->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)m;
    if (m->rng == 0)
        m->rng = 1; /* cannot happen in practice; xorshift must not start at 0 */
    return m;
}

void memtable_ref(memtable *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void memtable_unref(memtable *m)
{
    if (!m)
        return;
    int old = atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel);
    assert(old > 0);
    if (old == 1) {
        arena_destroy(&m->arena);
        free((void *)m->filter);
        free(m);
    }
}

int memtable_add(memtable *m, uint64_t seq, int type, slice user_key, slice value)
{
    if (seq > IKEY_MAX_SEQUENCE || (type != IKEY_TYPE_VALUE && type != IKEY_TYPE_DELETION))
        return KV_EINVAL;
    size_t ikey_len = user_key.size + IKEY_TAG_SIZE;
    int height = random_height(m);
    size_t tower = (size_t)height * sizeof(mt_link);
    if (user_key.size > UINT32_MAX - IKEY_TAG_SIZE || value.size > UINT32_MAX)
        return KV_EINVAL; /* a batch cannot hold such an op: its lengths are varint32s */
    size_t total = sizeof(mt_node) + tower + ikey_len + value.size;
    char *mem = arena_alloc(&m->arena, total);
    if (!mem)
        return KV_ENOMEM;
    mt_node *n = (mt_node *)(mem + tower);
    n->ikey_len = (uint32_t)ikey_len;
    n->value_len = (uint32_t)value.size;
    char *kp = (char *)node_key_data(n);
    if (user_key.size)
        memcpy(kp, user_key.data, user_key.size);
    coding_put_fixed64(kp + user_key.size, ikey_pack_tag(seq, type));
    if (value.size)
        memcpy(kp + ikey_len, value.data, value.size);

    mt_node *prev[MT_MAX_HEIGHT];
    mt_target t = target_from_node(n);
    uint64_t fh = 0;
    if (m->filter) {
        /* The filter line's miss overlaps the search; its bits are set before the node is
         * linked (invariant 6). */
        fh = filter_hash(user_key);
        __builtin_prefetch((const void *)filter_block(m, fh), 1);
    }
    find_greater_or_equal(m, &t, prev);
    if (m->filter)
        filter_add(m, fh);
    int cur = current_height(m);
    if (height > cur) {
        for (int i = cur; i < height; i++)
            prev[i] = m->head;
        /* Readers may see the new height before the node is linked: see invariant 4. */
        atomic_store_explicit(&m->max_height, height, memory_order_relaxed);
    }
    for (int i = 0; i < height; i++) {
        /* n is not yet visible, so its own pointers need no ordering; linking it into
         * prev[i] is the publication (release), bottom level first (invariant 2). */
        atomic_store_explicit(node_link(n, i), node_next(prev[i], i), memory_order_relaxed);
        atomic_store_explicit(node_link(prev[i], i), n, memory_order_release);
    }
    uint64_t entries = atomic_fetch_add_explicit(&m->num_entries, 1, memory_order_relaxed) + 1;
    /* A full check at each power of two keeps debug builds linear overall. */
    assert((entries & (entries - 1)) != 0 || memtable_check_invariants(m));
    (void)entries;
    return 0;
}

int memtable_get(memtable *m, slice user_key, uint64_t seq, buf *value_out)
{
    if (seq > IKEY_MAX_SEQUENCE)
        seq = IKEY_MAX_SEQUENCE;
    if (m->filter && !filter_may_contain(m, filter_hash(user_key)))
        return MEMTABLE_ABSENT;
    mt_target t = {user_key, ikey_pack_tag(seq, IKEY_TYPE_FOR_SEEK), slice_make(NULL, 0), 0};
    mt_node *n = find_greater_or_equal(m, &t, NULL);
    if (!n)
        return MEMTABLE_ABSENT;
    slice ik = node_ikey(n);
    if (!slice_equal(ikey_user_key(ik), user_key))
        return MEMTABLE_ABSENT;
    if ((ikey_tag(ik) & 0xff) == IKEY_TYPE_DELETION)
        return MEMTABLE_DELETED;
    slice v = node_value(n);
    if (buf_append(value_out, v.data, v.size) != 0)
        return KV_ENOMEM;
    return MEMTABLE_FOUND;
}

size_t memtable_memory_usage(const memtable *m)
{
    return arena_memory_usage(&m->arena) +
           (size_t)m->filter_blocks * MT_FILTER_BLOCK_WORDS * sizeof(uint64_t);
}

uint64_t memtable_num_entries(const memtable *m)
{
    return atomic_load_explicit((atomic_uint_fast64_t *)&m->num_entries, memory_order_relaxed);
}

/* ---- Iterator ---------------------------------------------------------------------------- */

typedef struct mt_iter {
    iter base;
    memtable *m;
    mt_node *node; /* NULL when not positioned */
} mt_iter;

static int mt_iter_valid(const iter *it)
{
    return ((const mt_iter *)it)->node != NULL;
}

static void mt_iter_seek_first(iter *it)
{
    mt_iter *mi = (mt_iter *)it;
    mi->node = node_next(mi->m->head, 0);
}

static void mt_iter_seek_last(iter *it)
{
    mt_iter *mi = (mt_iter *)it;
    mt_node *n = find_last(mi->m);
    mi->node = n == mi->m->head ? NULL : n;
}

static void mt_iter_seek(iter *it, slice target)
{
    mt_iter *mi = (mt_iter *)it;
    mt_target t = target_from_raw(target);
    mi->node = find_greater_or_equal(mi->m, &t, NULL);
}

static void mt_iter_next(iter *it)
{
    mt_iter *mi = (mt_iter *)it;
    assert(mi->node);
    mi->node = node_next(mi->node, 0);
}

static void mt_iter_prev(iter *it)
{
    mt_iter *mi = (mt_iter *)it;
    assert(mi->node);
    mt_target t = target_from_node(mi->node);
    mt_node *n = find_less_than(mi->m, &t);
    mi->node = n == mi->m->head ? NULL : n;
}

static slice mt_iter_key(const iter *it)
{
    const mt_iter *mi = (const mt_iter *)it;
    assert(mi->node);
    return node_ikey(mi->node);
}

static slice mt_iter_value(const iter *it)
{
    const mt_iter *mi = (const mt_iter *)it;
    assert(mi->node);
    return node_value(mi->node);
}

static int mt_iter_status(const iter *it)
{
    return 0;
}

static void mt_iter_destroy(iter *it)
{
    mt_iter *mi = (mt_iter *)it;
    memtable_unref(mi->m);
    free(mi);
}

static const struct iter_ops mt_iter_ops = {
    .valid = mt_iter_valid,
    .seek_first = mt_iter_seek_first,
    .seek_last = mt_iter_seek_last,
    .seek = mt_iter_seek,
    .next = mt_iter_next,
    .prev = mt_iter_prev,
    .key = mt_iter_key,
    .value = mt_iter_value,
    .status = mt_iter_status,
    .destroy = mt_iter_destroy,
};

iter *memtable_iter_new(memtable *m)
{
    mt_iter *mi = malloc(sizeof(*mi));
    if (!mi)
        return iter_new_empty(KV_ENOMEM);
    iter_init(&mi->base, &mt_iter_ops);
    memtable_ref(m);
    mi->m = m;
    mi->node = NULL;
    return &mi->base;
}
