/* dircache.c - whole-directory listings kept in memory (see dircache.h for the invariants). */
#include "dircache.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A cached directory: its listing (NULL: too big to keep) and the seq it is valid under. */
struct dc_ent {
    uint64_t ino;
    uint64_t seq;
    const struct fs_dc_list *list;
    size_t charge;
    struct dc_ent *hnext;       /* hash chain */
    struct dc_ent *prev, *next; /* LRU: head most recent */
};

struct fs_dc {
    pthread_mutex_t mu;
    size_t capacity, charge; /* protected by mu */
    struct dc_ent **table;   /* protected by mu: nbuckets chains */
    size_t nbuckets;
    struct dc_ent *head, *tail; /* protected by mu */
    size_t count;               /* protected by mu */
    struct fs_dc_stats st;      /* protected by mu: hits, misses, inserts, rejected */
    int nstripes;
    _Atomic uint64_t *seq; /* per stripe; changed only under the stripe's lock */
};

/* What a "too big" entry is charged: its bookkeeping. */
#define DC_ENT_CHARGE (sizeof(struct dc_ent) + 16)

static size_t bucket_of(const struct fs_dc *dc, uint64_t ino)
{
    return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 32) & (dc->nbuckets - 1);
}

#ifndef NDEBUG
/* charge is the sum of the entries' charges, count their number, and charge <= capacity. */
static void dc_check_invariants(const struct fs_dc *dc)
{
    size_t sum = 0, n = 0;
    for (const struct dc_ent *e = dc->head; e; e = e->next) {
        sum += e->charge;
        n++;
        assert(e->next || e == dc->tail);
    }
    assert(sum == dc->charge && n == dc->count && dc->charge <= dc->capacity);
}
#else
#define dc_check_invariants(dc) ((void)0)
#endif

struct fs_dc *fs_dc_new(size_t capacity, int nstripes)
{
    struct fs_dc *dc;

    if (capacity == 0 || nstripes <= 0)
        return NULL;
    dc = calloc(1, sizeof *dc);
    if (!dc)
        return NULL;
    dc->capacity = capacity;
    dc->nstripes = nstripes;
    /* One bucket per 4 KiB of capacity (at least 64): chains stay short with small listings. */
    dc->nbuckets = 64;
    while (dc->nbuckets < capacity / 4096 && dc->nbuckets < (1u << 20))
        dc->nbuckets <<= 1;
    dc->table = calloc(dc->nbuckets, sizeof *dc->table);
    dc->seq = calloc((size_t)nstripes, sizeof *dc->seq);
    if (!dc->table || !dc->seq) {
        free(dc->table);
        free(dc->seq);
        free(dc);
        return NULL;
    }
    for (int i = 0; i < nstripes; i++)
        atomic_init(&dc->seq[i], 0);
    pthread_mutex_init(&dc->mu, NULL);
    return dc;
}

/* Takes e off the hash chain and the LRU list, and frees it. Caller holds mu. */
static void ent_remove(struct fs_dc *dc, struct dc_ent *e)
{
    struct dc_ent **p = &dc->table[bucket_of(dc, e->ino)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    if (e->prev)
        e->prev->next = e->next;
    else
        dc->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        dc->tail = e->prev;
    dc->charge -= e->charge;
    dc->count--;
    fs_dc_list_put(e->list);
    free(e);
}

void fs_dc_free(struct fs_dc *dc)
{
    if (!dc)
        return;
    while (dc->head)
        ent_remove(dc, dc->head);
    pthread_mutex_destroy(&dc->mu);
    free(dc->table);
    free(dc->seq);
    free(dc);
}

uint64_t fs_dc_sample(struct fs_dc *dc, int stripe)
{
    return atomic_load(&dc->seq[stripe]);
}

size_t fs_dc_max_list_bytes(const struct fs_dc *dc)
{
    return dc->capacity / 2;
}

static struct dc_ent *find(struct fs_dc *dc, uint64_t ino)
{
    struct dc_ent *e = dc->table[bucket_of(dc, ino)];
    while (e && e->ino != ino)
        e = e->hnext;
    return e;
}

static void lru_front(struct fs_dc *dc, struct dc_ent *e)
{
    if (dc->head == e)
        return;
    e->prev->next = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        dc->tail = e->prev;
    e->prev = NULL;
    e->next = dc->head;
    dc->head->prev = e;
    dc->head = e;
}

int fs_dc_get(struct fs_dc *dc, int stripe, uint64_t ino, const struct fs_dc_list **out)
{
    struct dc_ent *e;
    int rc = FS_DC_MISS;

    *out = NULL;
    pthread_mutex_lock(&dc->mu);
    e = find(dc, ino);
    if (e && e->seq != atomic_load(&dc->seq[stripe])) { /* a change began since: dead */
        ent_remove(dc, e);
        e = NULL;
    }
    if (e) {
        lru_front(dc, e);
        if (e->list) {
            struct fs_dc_list *l = (struct fs_dc_list *)e->list;
            atomic_fetch_add(&l->refs, 1);
            *out = l;
            rc = FS_DC_HIT;
        } else {
            rc = FS_DC_TOO_BIG;
        }
    }
    if (rc == FS_DC_HIT)
        dc->st.hits++;
    else
        dc->st.misses++;
    pthread_mutex_unlock(&dc->mu);
    return rc;
}

void fs_dc_insert(struct fs_dc *dc, int stripe, uint64_t sample, uint64_t ino,
                  const struct fs_dc_list *list)
{
    size_t charge = DC_ENT_CHARGE + (list ? fs_dc_list_bytes(list) : 0);
    struct dc_ent *e, *old;

    if ((sample & 1) || (list && charge > fs_dc_max_list_bytes(dc)))
        return;
    e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->ino = ino;
    e->seq = sample;
    e->list = list;
    e->charge = charge;
    pthread_mutex_lock(&dc->mu);
    /* Invariant 2: a change begun since the sample may be missing from the listing. */
    if (atomic_load(&dc->seq[stripe]) != sample) {
        dc->st.rejected++;
        pthread_mutex_unlock(&dc->mu);
        free(e);
        return;
    }
    old = find(dc, ino);
    if (old)
        ent_remove(dc, old);
    while (dc->charge + charge > dc->capacity && dc->tail)
        ent_remove(dc, dc->tail);
    if (list)
        atomic_fetch_add(&((struct fs_dc_list *)list)->refs, 1);
    e->hnext = dc->table[bucket_of(dc, ino)];
    dc->table[bucket_of(dc, ino)] = e;
    e->next = dc->head;
    if (dc->head)
        dc->head->prev = e;
    dc->head = e;
    if (!dc->tail)
        dc->tail = e;
    dc->charge += charge;
    dc->count++;
    dc->st.inserts++;
    dc_check_invariants(dc);
    pthread_mutex_unlock(&dc->mu);
}

void fs_dc_change_begin(struct fs_dc *dc, int stripe)
{
    if (dc && (atomic_load(&dc->seq[stripe]) & 1) == 0)
        atomic_fetch_add(&dc->seq[stripe], 1);
}

void fs_dc_change_end(struct fs_dc *dc, int stripe)
{
    if (dc && (atomic_load(&dc->seq[stripe]) & 1) == 1)
        atomic_fetch_add(&dc->seq[stripe], 1);
}

void fs_dc_get_stats(struct fs_dc *dc, struct fs_dc_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!dc)
        return;
    pthread_mutex_lock(&dc->mu);
    *st = dc->st;
    st->lists = dc->count;
    st->bytes = dc->charge;
    pthread_mutex_unlock(&dc->mu);
}

/* ---- Listings ------------------------------------------------------------------------------ */

struct fs_dc_list *fs_dc_list_new(void)
{
    struct fs_dc_list *l = calloc(1, sizeof *l);
    if (l)
        atomic_init(&l->refs, 1);
    return l;
}

int fs_dc_list_add(struct fs_dc_list *l, const char *name, size_t nlen, uint64_t ino, uint32_t type)
{
    struct fs_dc_rec *r;

    if (nlen == 0 || nlen > 255 || l->nbytes + nlen > UINT32_MAX)
        return -EINVAL;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct fs_dc_rec *nr = realloc(l->recs, cap * sizeof *nr);
        if (!nr)
            return -ENOMEM;
        l->recs = nr;
        l->cap = cap;
    }
    if (l->nbytes + nlen > l->ncap) {
        size_t cap = l->ncap ? l->ncap * 2 : 1024;
        char *nn;
        while (cap < l->nbytes + nlen)
            cap *= 2;
        nn = realloc(l->names, cap + FS_DC_NAME_SLACK);
        if (!nn)
            return -ENOMEM;
        l->names = nn;
        l->ncap = cap;
    }
    r = &l->recs[l->n++];
    r->ino = ino;
    r->name_off = (uint32_t)l->nbytes;
    r->nlen = (uint8_t)nlen;
    r->type = (uint8_t)((type >> 12) & 0xf);
    memcpy(l->names + l->nbytes, name, nlen);
    l->nbytes += nlen;
    memset(l->names + l->nbytes, 0, FS_DC_NAME_SLACK); /* copied by fs_dc_list_entry */
    return 0;
}

void fs_dc_list_seal(struct fs_dc_list *l)
{
    if (l->n && l->n < l->cap) {
        struct fs_dc_rec *nr = realloc(l->recs, l->n * sizeof *nr);
        if (nr) {
            l->recs = nr;
            l->cap = l->n;
        }
    }
    if (l->nbytes && l->nbytes < l->ncap) {
        char *nn = realloc(l->names, l->nbytes + FS_DC_NAME_SLACK);
        if (nn) {
            l->names = nn;
            l->ncap = l->nbytes;
        }
    }
}

size_t fs_dc_list_bytes(const struct fs_dc_list *l)
{
    /* Once sealed, exactly what is allocated (the charge bounds the memory). */
    return sizeof *l + l->n * sizeof *l->recs + l->nbytes + FS_DC_NAME_SLACK;
}

void fs_dc_list_put(const struct fs_dc_list *cl)
{
    struct fs_dc_list *l = (struct fs_dc_list *)cl;
    if (!l || atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    free(l->recs);
    free(l->names);
    free(l);
}
