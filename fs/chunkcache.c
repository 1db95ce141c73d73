/* chunkcache.c - the LRU cache of decoded file chunks and its per-stripe sequence numbers.
 * The invariants are in chunkcache.h. */
#include "chunkcache.h"

#include "kvcore/kv.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct cc_entry {
    uint64_t ino, idx;
    uint64_t seq; /* the stripe's seq the chunk was read under (even) */
    size_t len;
    void *data;             /* kv_get buffer: kv_free */
    struct cc_entry *hnext; /* hash chain */
    struct cc_entry *prev;  /* LRU list: toward the most recently used */
    struct cc_entry *next;  /* LRU list: toward the least recently used */
};

struct fs_cc {
    size_t capacity;
    uint32_t chunk_size;
    int nstripes;
    uint64_t *seq; /* per stripe; written by the stripe's lock holder, read atomically */

    pthread_mutex_t mu;
    struct cc_entry **buckets; /* protected by mu */
    size_t nbuckets;           /* a power of two */
    struct cc_entry *head;     /* protected by mu: most recently used */
    struct cc_entry *tail;     /* protected by mu: least recently used */
    size_t charge;             /* protected by mu: sum of len */
    uint64_t entries;          /* protected by mu */
    uint64_t hits, misses;     /* protected by mu */
    /* fs_cc_admit: hits and lookups of the current window (protected by mu), whether the last
     * window's hit rate was below one half (atomic), and a ring of recent misses (mu). */
    uint32_t win_hits, win_lookups;
    int selective;
    struct {
        uint64_t ino, idx;
    } recent[FS_CC_RECENT_MISSES];
    unsigned recent_next;
};

static size_t bucket_of(const struct fs_cc *cc, uint64_t ino, uint64_t idx)
{
    uint64_t h = (ino * 0x9e3779b97f4a7c15ull) ^ (idx * 0xc2b2ae3d27d4eb4full);
    h ^= h >> 29;
    return (size_t)h & (cc->nbuckets - 1);
}

struct fs_cc *fs_cc_new(size_t capacity, uint32_t chunk_size, int nstripes)
{
    struct fs_cc *cc = calloc(1, sizeof *cc);
    size_t want = chunk_size ? capacity / chunk_size * 2 : 0;

    if (!cc || nstripes <= 0) {
        free(cc);
        return NULL;
    }
    cc->capacity = capacity;
    cc->chunk_size = chunk_size;
    cc->nstripes = nstripes;
    cc->nbuckets = 64;
    while (cc->nbuckets < want)
        cc->nbuckets <<= 1;
    cc->seq = calloc((size_t)nstripes, sizeof *cc->seq);
    cc->buckets = calloc(cc->nbuckets, sizeof *cc->buckets);
    if (!cc->seq || !cc->buckets) {
        free(cc->seq);
        free(cc->buckets);
        free(cc);
        return NULL;
    }
    pthread_mutex_init(&cc->mu, NULL);
    return cc;
}

void fs_cc_free(struct fs_cc *cc)
{
    if (!cc)
        return;
    for (struct cc_entry *e = cc->head, *n; e; e = n) {
        n = e->next;
        kv_free(e->data);
        free(e);
    }
    pthread_mutex_destroy(&cc->mu);
    free(cc->buckets);
    free(cc->seq);
    free(cc);
}

#ifndef NDEBUG
/* Invariant 4 and the bookkeeping behind it: the LRU list and the hash chains hold the same
 * entries, and charge and entries are their sums. Caller holds mu. */
static int cc_check_invariants(const struct fs_cc *cc)
{
    size_t charge = 0, chained = 0;
    uint64_t n = 0;
    for (const struct cc_entry *e = cc->head; e; e = e->next) {
        assert(e->len > 0 && e->len <= cc->chunk_size);
        assert((e->seq & 1) == 0);
        assert(e->next ? e->next->prev == e : cc->tail == e);
        charge += e->len;
        n++;
    }
    for (size_t i = 0; i < cc->nbuckets; i++)
        for (const struct cc_entry *e = cc->buckets[i]; e; e = e->hnext) {
            assert(bucket_of(cc, e->ino, e->idx) == i);
            chained++;
        }
    assert(charge == cc->charge && n == cc->entries && chained == n);
    assert(cc->charge <= cc->capacity);
    return 1;
}
#endif

static struct cc_entry **find_slot(struct fs_cc *cc, uint64_t ino, uint64_t idx)
{
    struct cc_entry **p = &cc->buckets[bucket_of(cc, ino, idx)];
    while (*p && ((*p)->ino != ino || (*p)->idx != idx))
        p = &(*p)->hnext;
    return p;
}

static void lru_unlink(struct fs_cc *cc, struct cc_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        cc->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        cc->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct fs_cc *cc, struct cc_entry *e)
{
    e->prev = NULL;
    e->next = cc->head;
    if (cc->head)
        cc->head->prev = e;
    cc->head = e;
    if (!cc->tail)
        cc->tail = e;
}

/* Takes the entry at *slot out of the cache and returns it. Caller holds mu. */
static struct cc_entry *cc_remove(struct fs_cc *cc, struct cc_entry **slot)
{
    struct cc_entry *e = *slot;
    *slot = e->hnext;
    e->hnext = NULL;
    lru_unlink(cc, e);
    cc->charge -= e->len;
    cc->entries--;
    return e;
}

static void entry_free(struct cc_entry *e)
{
    kv_free(e->data);
    free(e);
}

static uint64_t seq_load(const struct fs_cc *cc, int stripe)
{
    return __atomic_load_n(&cc->seq[stripe], __ATOMIC_SEQ_CST);
}

uint64_t fs_cc_sample(struct fs_cc *cc, int stripe)
{
    if (!cc || stripe < 0 || stripe >= cc->nstripes)
        return 1; /* odd: bypass */
    return seq_load(cc, stripe);
}

int fs_cc_read(struct fs_cc *cc, int stripe, uint64_t sample, uint64_t ino, uint64_t idx, size_t a,
               size_t b, void *out)
{
    struct cc_entry **slot, *e, *dead = NULL;
    int hit = 0;

    if (!cc || (sample & 1) || stripe < 0 || stripe >= cc->nstripes || a > b || b > cc->chunk_size)
        return 0;
    pthread_mutex_lock(&cc->mu);
    if (seq_load(cc, stripe) == sample) {
        slot = find_slot(cc, ino, idx);
        e = *slot;
        if (e && e->seq != sample) {
            dead = cc_remove(cc, slot); /* invariant 3: changed since it was read */
        } else if (e) {
            size_t n = e->len > a ? (e->len < b ? e->len : b) - a : 0;
            memcpy(out, (const uint8_t *)e->data + a, n);
            memset((uint8_t *)out + n, 0, b - a - n);
            lru_unlink(cc, e);
            lru_push_front(cc, e);
            hit = 1;
        }
    }
    if (hit)
        cc->hits++;
    else
        cc->misses++;
    cc->win_hits += (uint32_t)hit;
    if (++cc->win_lookups == FS_CC_ADMIT_WINDOW) {
        __atomic_store_n(&cc->selective, cc->win_hits * 2 < cc->win_lookups, __ATOMIC_RELAXED);
        cc->win_hits = cc->win_lookups = 0;
    }
    pthread_mutex_unlock(&cc->mu);
    if (dead)
        entry_free(dead);
    return hit;
}

void fs_cc_insert(struct fs_cc *cc, int stripe, uint64_t sample, uint64_t ino, uint64_t idx,
                  void *data, size_t len)
{
    struct cc_entry *e, **slot, *evicted = NULL;

    if (!cc || (sample & 1) || stripe < 0 || stripe >= cc->nstripes || len == 0 ||
        len > cc->chunk_size || len > cc->capacity || !(e = malloc(sizeof *e))) {
        kv_free(data);
        return;
    }
    e->ino = ino;
    e->idx = idx;
    e->seq = sample;
    e->len = len;
    e->data = data;
    e->hnext = e->prev = e->next = NULL;
    pthread_mutex_lock(&cc->mu);
    if (seq_load(cc, stripe) != sample) {
        pthread_mutex_unlock(&cc->mu);
        entry_free(e); /* invariant 2: the stripe changed since the read began */
        return;
    }
    slot = find_slot(cc, ino, idx);
    if (*slot) {
        struct cc_entry *old = cc_remove(cc, slot);
        old->next = evicted;
        evicted = old;
        slot = find_slot(cc, ino, idx);
    }
    *slot = e;
    lru_push_front(cc, e);
    cc->charge += len;
    cc->entries++;
    while (cc->charge > cc->capacity) {
        struct cc_entry *victim = cc->tail;
        struct cc_entry *out = cc_remove(cc, find_slot(cc, victim->ino, victim->idx));
        out->next = evicted;
        evicted = out;
    }
    assert(cc_check_invariants(cc));
    pthread_mutex_unlock(&cc->mu);
    while (evicted) {
        struct cc_entry *n = evicted->next;
        entry_free(evicted);
        evicted = n;
    }
}

int fs_cc_admit(struct fs_cc *cc, uint64_t ino, uint64_t idx)
{
    int seen = 0;

    if (!cc || cc->capacity < cc->chunk_size)
        return 0;
    if (!__atomic_load_n(&cc->selective, __ATOMIC_RELAXED))
        return 1;
    pthread_mutex_lock(&cc->mu);
    for (unsigned i = 0; i < FS_CC_RECENT_MISSES && !seen; i++)
        seen = cc->recent[i].ino == ino && cc->recent[i].idx == idx;
    if (!seen) {
        cc->recent[cc->recent_next].ino = ino;
        cc->recent[cc->recent_next].idx = idx;
        cc->recent_next = (cc->recent_next + 1) % FS_CC_RECENT_MISSES;
    }
    pthread_mutex_unlock(&cc->mu);
    return seen;
}

/* Adds `by` to the stripe's seq if its parity is `parity` (0 even, 1 odd). Only the stripe's
 * lock holder writes its seq, so the load and the store need no lock between them. */
static void seq_advance(struct fs_cc *cc, int stripe, uint64_t parity, uint64_t by)
{
    uint64_t s;

    if (!cc || stripe < 0 || stripe >= cc->nstripes)
        return;
    s = seq_load(cc, stripe);
    if ((s & 1) == parity)
        __atomic_store_n(&cc->seq[stripe], s + by, __ATOMIC_SEQ_CST);
}

void fs_cc_write_begin(struct fs_cc *cc, int stripe)
{
    seq_advance(cc, stripe, 0, 1);
}

void fs_cc_stripe_unlocked(struct fs_cc *cc, int stripe)
{
    seq_advance(cc, stripe, 1, 1);
}

void fs_cc_invalidate(struct fs_cc *cc, int stripe)
{
    seq_advance(cc, stripe, 0, 2); /* odd: a change is under way and its unlock ends it */
}

void fs_cc_get_stats(struct fs_cc *cc, struct fs_cc_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!cc)
        return;
    pthread_mutex_lock(&cc->mu);
    st->hits = cc->hits;
    st->misses = cc->misses;
    st->entries = cc->entries;
    st->bytes = cc->charge;
    pthread_mutex_unlock(&cc->mu);
}
