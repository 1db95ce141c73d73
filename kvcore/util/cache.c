/* cache.c - sharded LRU cache of reference-counted entries, bounded by total charge.
 *
 * The key's 64-bit hash picks a shard (top bits) and a bucket (low bits); each shard has its
 * own mutex, a chained hash table that doubles when it holds more entries than buckets, and
 * two lists: `lru` holds entries only the cache references (evictable, oldest first) and
 * `in_use` holds entries some handle also references. A lookup is one hash, one lock, a short
 * chain walk and a list splice. Deleters run after the shard lock is dropped, so a deleter may
 * do slow work (close a file) or use another cache.
 *
 * Invariants (per shard, under its mutex):
 *  1. An entry is in the hash table iff in_cache; then it is on exactly one of lru / in_use.
 *  2. in_cache entries hold one reference for the cache; refs == 1 <=> on lru.
 *  3. usage == sum of charge over in_cache entries; after any operation returns, usage <=
 *     capacity unless every in_cache entry is in use (nothing evictable).
 *  4. count == number of in_cache entries <= nbuckets (the table grows before exceeding it).
 * An entry not in_cache lives exactly as long as handles to it; the last release deletes it.
 *
 * Value memory (cache_mem_alloc). A block is allocated by whichever thread missed and freed by
 * whichever thread evicts it. With glibc's per-thread malloc arenas that strands memory: after
 * one thread filled a 32 MiB cache and four others took over, 36 MiB sat free but resident in
 * the first thread's arena, scattered in block-sized holes that malloc_trim cannot return
 * (measured with malloc_info in kvbench's mixed phase). So values up to CACHE_MEM_MAX_BYTES
 * come from the cache's own slabs, in size classes of CACHE_MEM_CLASS_BYTES: a freed slot goes
 * back on its class's free list and is reused by the next allocation of that class from any
 * thread. Slabs are mapped from the OS and returned only by cache_free; what they hold is
 * bounded by the peak of live values, which the capacity bounds (charges are slot sizes).
 * Pool invariants (under mem_mu):
 *  5. Every slot of every slab is owned by one caller, on its class's free list, or (never used
 *     yet) at or after carve[k] in the class's newest slab, carve_left[k] of them.
 *  6. A class's slabs hold slots of that class's size only.
 */
#include "util/cache.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util/checksum.h"

#define CACHE_MAX_SHARD_BITS 4 /* 16 shards */
#define CACHE_MIN_SHARD_CAPACITY 8
#define CACHE_INITIAL_BUCKETS 16
/* Debug builds walk a whole shard to check the invariants only while it is this small. */
#define CACHE_CHECK_MAX 256

/* Doubly linked list node; first in an entry so a node pointer converts to its entry. */
typedef struct link {
    struct link *prev, *next;
} link;

struct cache_handle {
    link node; /* on lru or in_use; must stay first */
    void *value;
    cache_deleter_fn deleter;
    struct cache_handle *next_hash;
    size_t charge;
    uint64_t hash;
    uint32_t refs;
    int in_cache;
    size_t key_len;
    char key[]; /* key_len bytes */
};
typedef struct cache_handle entry;

typedef struct shard {
    pthread_mutex_t mu;
    size_t capacity;
    size_t usage;          /* protected by mu */
    link lru;              /* protected by mu; dummy head: lru.next is the oldest */
    link in_use;           /* protected by mu; dummy head */
    entry **buckets;       /* protected by mu */
    size_t nbuckets;       /* protected by mu; a power of two */
    size_t count;          /* protected by mu */
    uint64_t hits, misses; /* atomics (relaxed): read without mu by cache_counters */
} __attribute__((aligned(64))) shard;

#define CACHE_MEM_CLASS_BYTES 256
#define CACHE_MEM_CLASSES (CACHE_MEM_MAX_BYTES / CACHE_MEM_CLASS_BYTES)
#define CACHE_SLAB_BYTES ((size_t)256 << 10)

/* A mapped run of slots of one class; slabs are listed only to be unmapped by cache_free. */
typedef struct mem_slab {
    struct mem_slab *next;
} mem_slab;

/* A free slot: its first bytes link it to the next free slot of its class. */
typedef struct mem_slot {
    struct mem_slot *next;
} mem_slot;

struct cache {
    uint64_t next_id; /* atomic */
    unsigned shard_bits;
    shard *shards;
    pthread_mutex_t mem_mu;
    mem_slot *free_slots[CACHE_MEM_CLASSES]; /* protected by mem_mu */
    char *carve[CACHE_MEM_CLASSES]; /* mem_mu: next never-used slot of the class's newest slab */
    size_t carve_left[CACHE_MEM_CLASSES]; /* mem_mu: never-used slots left there */
    mem_slab *slabs;                      /* protected by mem_mu */
};

static uint64_t hash_key(slice key)
{
    return checksum_value(key.data, key.size);
}

static shard *shard_for(cache *c, uint64_t hash)
{
    return c->shard_bits ? &c->shards[hash >> (64 - c->shard_bits)] : &c->shards[0];
}

static entry *entry_of(link *l)
{
    return (entry *)(void *)l;
}

static void list_remove(entry *e)
{
    e->node.next->prev = e->node.prev;
    e->node.prev->next = e->node.next;
}

/* Appends e as the newest entry of list. */
static void list_append(link *list, entry *e)
{
    e->node.next = list;
    e->node.prev = list->prev;
    list->prev->next = &e->node;
    list->prev = &e->node;
}

/* Returns the slot that points to the entry for (key, hash), or to the NULL ending its chain. */
static entry **find_slot(shard *s, slice key, uint64_t hash)
{
    entry **slot = &s->buckets[hash & (s->nbuckets - 1)];
    while (*slot && ((*slot)->hash != hash || (*slot)->key_len != key.size ||
                     memcmp((*slot)->key, key.data, key.size) != 0))
        slot = &(*slot)->next_hash;
    return slot;
}

/* Doubles the bucket array; on allocation failure keeps the old one (chains just get longer). */
static void grow_table(shard *s)
{
    size_t n = s->nbuckets * 2;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        entry *e = s->buckets[i];
        while (e) {
            entry *next = e->next_hash;
            entry **slot = &b[e->hash & (n - 1)];
            e->next_hash = *slot;
            *slot = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

/* Drops one reference. When it was the last, e joins *dead (deleted after unlocking); when
 * only the cache's remains, e moves to the lru list. */
static void unref_locked(shard *s, entry *e, entry **dead)
{
    assert(e->refs > 0);
    e->refs--;
    if (e->refs == 0) {
        assert(!e->in_cache);
        e->next_hash = *dead; /* out of the table, so the chain link is free */
        *dead = e;
    } else if (e->in_cache && e->refs == 1) {
        list_remove(e);
        list_append(&s->lru, e);
    }
}

static void ref_locked(shard *s, entry *e)
{
    if (e->refs == 1 && e->in_cache) {
        list_remove(e);
        list_append(&s->in_use, e);
    }
    e->refs++;
}

/* Takes e (already unlinked from the table at *slot's position) out of the cache. */
static void remove_from_cache_locked(shard *s, entry **slot, entry **dead)
{
    entry *e = *slot;
    *slot = e->next_hash;
    s->count--;
    s->usage -= e->charge;
    e->in_cache = 0;
    list_remove(e);
    unref_locked(s, e, dead);
}

static void evict_locked(shard *s, entry **dead)
{
    while (s->usage > s->capacity && s->lru.next != &s->lru) {
        entry *old = entry_of(s->lru.next);
        entry **slot = find_slot(s, slice_make(old->key, old->key_len), old->hash);
        assert(*slot == old);
        remove_from_cache_locked(s, slot, dead);
    }
}

static void run_deleters(entry *dead)
{
    while (dead) {
        entry *next = dead->next_hash;
        if (dead->deleter)
            dead->deleter(slice_make(dead->key, dead->key_len), dead->value);
        free(dead);
        dead = next;
    }
}

#ifndef NDEBUG
static int shard_check_invariants(shard *s)
{
    size_t n = 0, usage = 0;
    for (link *l = s->lru.next; l != &s->lru; l = l->next) {
        const entry *e = entry_of(l);
        if (!e->in_cache || e->refs != 1)
            return 0;
        n++;
        usage += e->charge;
    }
    for (link *l = s->in_use.next; l != &s->in_use; l = l->next) {
        const entry *e = entry_of(l);
        if (!e->in_cache || e->refs < 2)
            return 0;
        n++;
        usage += e->charge;
    }
    size_t in_table = 0;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (entry *e = s->buckets[i]; e; e = e->next_hash)
            in_table++;
    return n == s->count && in_table == s->count && usage == s->usage &&
           (s->usage <= s->capacity || s->lru.next == &s->lru);
}
#endif

cache *cache_new(size_t capacity)
{
    cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    /* Use fewer shards for small capacities (a table cache of a few dozen files) so that no
     * shard is too small to hold its share of the working set. */
    unsigned bits = CACHE_MAX_SHARD_BITS;
    while (bits > 0 && capacity / ((size_t)1 << bits) < CACHE_MIN_SHARD_CAPACITY)
        bits--;
    size_t n = (size_t)1 << bits;
    c->shard_bits = bits;
    if (pthread_mutex_init(&c->mem_mu, NULL) != 0) {
        free(c);
        return NULL;
    }
    if (posix_memalign((void **)&c->shards, 64, n * sizeof(shard)) != 0) {
        pthread_mutex_destroy(&c->mem_mu);
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        shard *s = &c->shards[i];
        memset(s, 0, sizeof *s);
        /* Split exactly: the shards' capacities add up to `capacity`. */
        s->capacity = capacity / n + (i < capacity % n ? 1 : 0);
        s->lru.next = s->lru.prev = &s->lru;
        s->in_use.next = s->in_use.prev = &s->in_use;
        s->nbuckets = CACHE_INITIAL_BUCKETS;
        s->buckets = calloc(s->nbuckets, sizeof(entry *));
        if (!s->buckets || pthread_mutex_init(&s->mu, NULL) != 0) {
            free(s->buckets);
            for (size_t j = 0; j < i; j++) {
                pthread_mutex_destroy(&c->shards[j].mu);
                free(c->shards[j].buckets);
            }
            free(c->shards);
            pthread_mutex_destroy(&c->mem_mu);
            free(c);
            return NULL;
        }
    }
    return c;
}

void cache_free(cache *c)
{
    if (!c)
        return;
    size_t n = (size_t)1 << c->shard_bits;
    for (size_t i = 0; i < n; i++) {
        shard *s = &c->shards[i];
        /* Every handle has been released, so every entry is on lru with refs == 1. */
        assert(s->in_use.next == &s->in_use);
        entry *dead = NULL;
        while (s->lru.next != &s->lru) {
            entry *e = entry_of(s->lru.next);
            entry **slot = find_slot(s, slice_make(e->key, e->key_len), e->hash);
            remove_from_cache_locked(s, slot, &dead);
        }
        run_deleters(dead);
        pthread_mutex_destroy(&s->mu);
        free(s->buckets);
    }
    /* The deleters above returned their values' slots; nothing else may hold one now. */
    while (c->slabs) {
        mem_slab *next = c->slabs->next;
        munmap(c->slabs, CACHE_SLAB_BYTES);
        c->slabs = next;
    }
    pthread_mutex_destroy(&c->mem_mu);
    free(c->shards);
    free(c);
}

cache_handle *cache_insert(cache *c, slice key, void *value, size_t charge,
                           cache_deleter_fn deleter)
{
    uint64_t hash = hash_key(key);
    entry *e = malloc(sizeof *e + key.size);
    if (!e) {
        if (deleter)
            deleter(key, value);
        return NULL;
    }
    e->value = value;
    e->deleter = deleter;
    e->charge = charge;
    e->hash = hash;
    e->key_len = key.size;
    if (key.size)
        memcpy(e->key, key.data, key.size);
    e->refs = 1; /* the returned handle */
    e->in_cache = 0;
    e->next_hash = NULL;
    e->node.prev = e->node.next = &e->node;

    shard *s = shard_for(c, hash);
    entry *dead = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->capacity > 0) {
        entry **slot = find_slot(s, key, hash);
        if (*slot)
            remove_from_cache_locked(s, slot, &dead);
        e->refs++; /* the cache's own reference */
        e->in_cache = 1;
        list_append(&s->in_use, e);
        e->next_hash = *slot; /* NULL: the old entry, if any, was unlinked from this slot */
        *slot = e;
        s->count++;
        s->usage += charge;
        if (s->count > s->nbuckets)
            grow_table(s);
        evict_locked(s, &dead);
    } /* else caching is off: the handle alone owns e and the last release deletes it */
    assert(s->count > CACHE_CHECK_MAX || shard_check_invariants(s));
    pthread_mutex_unlock(&s->mu);
    run_deleters(dead);
    return e;
}

cache_handle *cache_lookup(cache *c, slice key)
{
    uint64_t hash = hash_key(key);
    shard *s = shard_for(c, hash);
    pthread_mutex_lock(&s->mu);
    entry *e = *find_slot(s, key, hash);
    if (e)
        ref_locked(s, e);
    pthread_mutex_unlock(&s->mu);
    __atomic_fetch_add(e ? &s->hits : &s->misses, 1, __ATOMIC_RELAXED);
    return e;
}

int cache_contains(cache *c, slice key)
{
    uint64_t hash = hash_key(key);
    shard *s = shard_for(c, hash);
    pthread_mutex_lock(&s->mu);
    int found = *find_slot(s, key, hash) != NULL;
    pthread_mutex_unlock(&s->mu);
    return found;
}

void cache_release(cache *c, cache_handle *h)
{
    shard *s = shard_for(c, h->hash);
    entry *dead = NULL;
    pthread_mutex_lock(&s->mu);
    unref_locked(s, h, &dead);
    /* An entry that was in use while the shard was over capacity becomes evictable now. */
    if (dead == NULL && h->in_cache && h->refs == 1)
        evict_locked(s, &dead);
    pthread_mutex_unlock(&s->mu);
    run_deleters(dead);
}

void *cache_value(const cache_handle *h)
{
    return h->value;
}

void cache_erase(cache *c, slice key)
{
    uint64_t hash = hash_key(key);
    shard *s = shard_for(c, hash);
    entry *dead = NULL;
    pthread_mutex_lock(&s->mu);
    entry **slot = find_slot(s, key, hash);
    if (*slot)
        remove_from_cache_locked(s, slot, &dead);
    assert(s->count > CACHE_CHECK_MAX || shard_check_invariants(s));
    pthread_mutex_unlock(&s->mu);
    run_deleters(dead);
}

/* Slot size of class k (0-based): (k + 1) * CACHE_MEM_CLASS_BYTES. */
static size_t mem_class_of(size_t n)
{
    return (n + CACHE_MEM_CLASS_BYTES - 1) / CACHE_MEM_CLASS_BYTES - 1;
}

/* Maps a new slab for class k, whose never-used slots are then carved off one by one (so its
 * pages become resident only as slots are used). mem_mu held. Returns 0, or -1 if the OS has
 * no memory. The slab header takes the first slot. */
static int mem_grow_locked(cache *c, size_t k)
{
    size_t slot = (k + 1) * CACHE_MEM_CLASS_BYTES;
    void *p =
        mmap(NULL, CACHE_SLAB_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    mem_slab *slab = p;
    slab->next = c->slabs;
    c->slabs = slab;
    c->carve[k] = (char *)p + slot;
    c->carve_left[k] = (CACHE_SLAB_BYTES - slot) / slot;
    return 0;
}

void *cache_mem_alloc(cache *c, size_t n, size_t *alloc_size)
{
    if (n == 0 || n > CACHE_MEM_MAX_BYTES) {
        *alloc_size = n;
        return malloc(n ? n : 1);
    }
    size_t k = mem_class_of(n);
    void *p = NULL;
    pthread_mutex_lock(&c->mem_mu);
    if (c->free_slots[k]) {
        mem_slot *m = c->free_slots[k];
        c->free_slots[k] = m->next;
        p = m;
    } else if (c->carve_left[k] > 0 || mem_grow_locked(c, k) == 0) {
        p = c->carve[k];
        c->carve[k] += (k + 1) * CACHE_MEM_CLASS_BYTES;
        c->carve_left[k]--;
    }
    pthread_mutex_unlock(&c->mem_mu);
    *alloc_size = (k + 1) * CACHE_MEM_CLASS_BYTES;
    return p;
}

void cache_mem_free(cache *c, void *p, size_t n)
{
    if (p == NULL)
        return;
    if (n == 0 || n > CACHE_MEM_MAX_BYTES) {
        free(p);
        return;
    }
    size_t k = mem_class_of(n);
    mem_slot *m = p;
    pthread_mutex_lock(&c->mem_mu);
    m->next = c->free_slots[k];
    c->free_slots[k] = m;
    pthread_mutex_unlock(&c->mem_mu);
}

uint64_t cache_new_id(cache *c)
{
    return __atomic_add_fetch(&c->next_id, 1, __ATOMIC_RELAXED);
}

size_t cache_total_charge(cache *c)
{
    size_t total = 0, n = (size_t)1 << c->shard_bits;
    for (size_t i = 0; i < n; i++) {
        shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        total += s->usage;
        pthread_mutex_unlock(&s->mu);
    }
    return total;
}

void cache_counters(cache *c, uint64_t *hits, uint64_t *misses)
{
    uint64_t h = 0, m = 0;
    size_t n = (size_t)1 << c->shard_bits;
    for (size_t i = 0; i < n; i++) {
        h += __atomic_load_n(&c->shards[i].hits, __ATOMIC_RELAXED);
        m += __atomic_load_n(&c->shards[i].misses, __ATOMIC_RELAXED);
    }
    if (hits)
        *hits = h;
    if (misses)
        *misses = m;
}
