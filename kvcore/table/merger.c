/* merger.c - k-way merge of internal-key iterators, forward and backward (merger_new in sst.h).
 *
 * Entries are ordered by (ikey_compare, child index): equal keys from different children come
 * out lowest child first going forward and highest first going backward, so the order is a
 * strict total order and direction switches are exact.
 *
 * Invariants:
 *  1. heap[0..nheap) holds exactly the valid children, as a binary heap: a min-heap in the
 *     forward direction, a max-heap backward; heap[0] is the current entry.
 *  2. Forward: every valid child is at its first entry after the current one (in the order
 *     above), or is the current one. Backward: the mirror image.
 *  3. status != 0 (some child failed) makes the merger invalid until the next seek: skipping a
 *     failed child could expose an older version of a key, i.e. wrong data.
 *  4. For every child i in the heap, keys[i] equals iter_key(child[i]): comparisons read the
 *     cache instead of calling through two iterator layers (most of a scan's cost was there).
 *  5. runner_up is 0 (unknown) or the heap position (1 or 2) of the entry that comes next
 *     after heap[0]: a step that leaves the current child on top then costs one comparison.
 */
#include <assert.h>
#include <stdlib.h>

#include "kvcore/kv.h"
#include "table/sst.h"
#include "util/ikey.h"

enum { FORWARD = 0, BACKWARD = 1 };

struct merger {
    iter base;
    iter **child;
    slice *keys; /* keys[i]: child i's current key, cached while i is in the heap (invariant 4) */
    int n;
    int *heap; /* child indices */
    int nheap;
    int runner_up; /* invariant 5 */
    int dir;
    int status;
};

/* Returns 1 if child a comes before child b in the current direction's order. */
static inline int before(const struct merger *m, int a, int b)
{
    int c = ikey_compare(m->keys[a], m->keys[b]);
    if (c == 0)
        c = a < b ? -1 : 1;
    return m->dir == FORWARD ? c < 0 : c > 0;
}

static void sift_down(struct merger *m, int i)
{
    int *h = m->heap, n = m->nheap, x = h[i];
    m->runner_up = 0; /* heap[1] or heap[2] may move */
    for (;;) {
        int l = 2 * i + 1;
        if (l >= n)
            break;
        int best = l;
        if (l + 1 < n && before(m, h[l + 1], h[l]))
            best = l + 1;
        if (!before(m, h[best], x))
            break;
        h[i] = h[best];
        i = best;
    }
    h[i] = x;
}

#ifndef NDEBUG
static int merger_check_invariants(const struct merger *m)
{
    if (m->status)
        return m->nheap == 0;
    for (int i = 1; i < m->nheap; i++)
        if (before(m, m->heap[i], m->heap[(i - 1) / 2]))
            return 0;
    int r = m->runner_up;
    if (r != 0 && (r >= m->nheap || (m->nheap > 2 && before(m, m->heap[3 - r], m->heap[r]))))
        return 0;
    int valid = 0;
    for (int i = 0; i < m->n; i++)
        valid += iter_valid(m->child[i]) != 0;
    for (int i = 0; i < m->nheap; i++) {
        slice k = iter_key(m->child[m->heap[i]]);
        if (k.data != m->keys[m->heap[i]].data || k.size != m->keys[m->heap[i]].size)
            return 0;
    }
    return valid == m->nheap;
}
#endif

/* Records the first failing child's error; returns 1 if there was one. */
static int check_child(struct merger *m, int c)
{
    if (!iter_valid(m->child[c]) && iter_status(m->child[c]) != 0) {
        if (m->status == 0)
            m->status = iter_status(m->child[c]);
        return 1;
    }
    return 0;
}

/* Rebuilds the heap from every child's current position. */
static void rebuild(struct merger *m, int dir)
{
    m->dir = dir;
    m->nheap = 0;
    m->runner_up = 0;
    m->status = 0;
    for (int i = 0; i < m->n; i++) {
        check_child(m, i);
        if (iter_valid(m->child[i])) {
            m->keys[i] = iter_key(m->child[i]);
            m->heap[m->nheap++] = i;
        }
    }
    if (m->status) {
        m->nheap = 0;
        return;
    }
    for (int i = m->nheap / 2 - 1; i >= 0; i--)
        sift_down(m, i);
    assert(merger_check_invariants(m));
}

static int m_valid(const iter *it)
{
    const struct merger *m = (const struct merger *)it;
    return m->status == 0 && m->nheap > 0;
}

static void m_seek_first(iter *it)
{
    struct merger *m = (struct merger *)it;
    for (int i = 0; i < m->n; i++)
        iter_seek_first(m->child[i]);
    rebuild(m, FORWARD);
}

static void m_seek_last(iter *it)
{
    struct merger *m = (struct merger *)it;
    for (int i = 0; i < m->n; i++)
        iter_seek_last(m->child[i]);
    rebuild(m, BACKWARD);
}

static void m_seek(iter *it, slice target)
{
    struct merger *m = (struct merger *)it;
    for (int i = 0; i < m->n; i++)
        iter_seek(m->child[i], target);
    rebuild(m, FORWARD);
}

/* Restores the heap after heap[0]'s key moved on. Most steps of a scan leave the same child
 * on top (the largest level holds most entries): one comparison with the known runner-up
 * settles that, where a plain sift-down compares heap[1] with heap[2] first. */
static void sift_to_place(struct merger *m)
{
    int *h = m->heap, n = m->nheap;
    if (n < 2)
        return;
    int r = m->runner_up;
    if (r == 0)
        r = n > 2 && before(m, h[2], h[1]) ? 2 : 1;
    if (!before(m, h[r], h[0])) {
        m->runner_up = r; /* heap[1] and heap[2] did not move */
        return;
    }
    /* The runner-up takes the top; the old top sinks from its place (resets runner_up). */
    int x = h[0];
    h[0] = h[r];
    h[r] = x;
    sift_down(m, r);
}

/* Moves the current child one step in the current direction and restores the heap. */
static void advance_top(struct merger *m)
{
    int c = m->heap[0];
    if (m->dir == FORWARD)
        iter_next(m->child[c]);
    else
        iter_prev(m->child[c]);
    if (iter_valid(m->child[c])) {
        m->keys[c] = iter_key(m->child[c]);
        sift_to_place(m);
    } else if (check_child(m, c)) {
        m->nheap = 0;
        return;
    } else {
        m->heap[0] = m->heap[--m->nheap];
        if (m->nheap > 0)
            sift_down(m, 0);
    }
    assert(merger_check_invariants(m));
}

static void m_next(iter *it)
{
    struct merger *m = (struct merger *)it;
    assert(m_valid(it));
    if (!m_valid(it))
        return;
    if (m->dir != FORWARD) {
        /* Put every other child at its first entry after (key, cur) in merge order. */
        int cur = m->heap[0];
        slice key = iter_key(m->child[cur]);
        for (int i = 0; i < m->n; i++) {
            if (i == cur)
                continue;
            iter *c = m->child[i];
            iter_seek(c, key);
            if (i < cur && iter_valid(c) && ikey_compare(iter_key(c), key) == 0)
                iter_next(c);
        }
        /* The other children moved; rebuild with cur in place, then step it. */
        rebuild(m, FORWARD);
        if (m->status)
            return;
    }
    advance_top(m);
}

static void m_prev(iter *it)
{
    struct merger *m = (struct merger *)it;
    assert(m_valid(it));
    if (!m_valid(it))
        return;
    if (m->dir != BACKWARD) {
        /* Put every other child at its last entry before (key, cur) in merge order. */
        int cur = m->heap[0];
        slice key = iter_key(m->child[cur]);
        for (int i = 0; i < m->n; i++) {
            if (i == cur)
                continue;
            iter *c = m->child[i];
            iter_seek(c, key);
            if (iter_valid(c)) {
                /* c is at its first entry >= key: keep it only if it is equal and i < cur. */
                if (!(i < cur && ikey_compare(iter_key(c), key) == 0))
                    iter_prev(c);
            } else if (iter_status(c) == 0) {
                iter_seek_last(c); /* every entry of c is < key */
            }
        }
        rebuild(m, BACKWARD);
        if (m->status)
            return;
    }
    advance_top(m);
}

static slice m_key(const iter *it)
{
    const struct merger *m = (const struct merger *)it;
    return m->keys[m->heap[0]];
}

static slice m_value(const iter *it)
{
    const struct merger *m = (const struct merger *)it;
    return iter_value(m->child[m->heap[0]]);
}

static int m_status(const iter *it)
{
    return ((const struct merger *)it)->status;
}

static void m_destroy(iter *it)
{
    struct merger *m = (struct merger *)it;
    for (int i = 0; i < m->n; i++)
        iter_free(m->child[i]);
    free(m->child);
    free(m->keys);
    free(m->heap);
    free(m);
}

static const struct iter_ops merger_ops = {
    .valid = m_valid,
    .seek_first = m_seek_first,
    .seek_last = m_seek_last,
    .seek = m_seek,
    .next = m_next,
    .prev = m_prev,
    .key = m_key,
    .value = m_value,
    .status = m_status,
    .destroy = m_destroy,
};

iter *merger_new(iter **children, int n)
{
    if (n <= 0)
        return iter_new_empty(0);
    if (n == 1)
        return children[0];
    struct merger *m = calloc(1, sizeof(*m));
    iter **child = malloc((size_t)n * sizeof(*child));
    int *heap = malloc((size_t)n * sizeof(*heap));
    slice *keys = malloc((size_t)n * sizeof(*keys));
    if (m == NULL || child == NULL || heap == NULL || keys == NULL) {
        free(m);
        free(child);
        free(heap);
        free(keys);
        for (int i = 0; i < n; i++)
            iter_free(children[i]);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        child[i] = children[i];
    iter_init(&m->base, &merger_ops);
    m->child = child;
    m->heap = heap;
    m->keys = keys;
    m->n = n;
    return &m->base;
}
