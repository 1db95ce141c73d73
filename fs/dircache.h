/* dircache.h - a bounded LRU cache of whole directory listings (name, inode, type per entry).
 *
 * Why: a listing read from the store walks every dirent key with a kvcore iterator, about 500
 * of the daemon's ~720 instructions per entry; fuse2fs answers from directory blocks it keeps
 * in memory. A directory listed again while unchanged is served from the listing kept here.
 *
 * Staleness is ruled out by a sequence number per inode stripe (the stripes of fs_int.h), as
 * in chunkcache.h:
 *  1. Every change to a directory's dirents is committed with the directory's stripe locked,
 *     between fs_dc_change_begin() (seq becomes odd, before the commit) and fs_dc_change_end()
 *     (seq becomes even, after the commit, the lock still held). Both are idempotent while the
 *     lock is held, so a rename whose two directories share a stripe may call them for each.
 *  2. A builder samples seq (fs_dc_sample) BEFORE taking the snapshot it scans; it may insert
 *     only with an even sample, and fs_dc_insert keeps the listing only if seq still equals
 *     the sample: no change to any directory of the stripe began between the sample and the
 *     insert, so the listing equals the directory's committed state over that whole interval.
 *  3. fs_dc_get returns a listing only if its stripe's seq still equals the seq it was inserted
 *     under: no change began since it was built, so the listing is the directory's current
 *     committed state at the moment of the check. A change that commits after the check
 *     began after it (its seq bump comes first) and so is concurrent with the opendir that
 *     asked: the listing is a snapshot taken at the check, as a kv snapshot would be.
 *  4. A listing is immutable once offered and reference-counted: a stream keeps serving the
 *     listing it got (its positions stable, seekdir works) after the cache drops it.
 *  5. charge (the bytes of the listings held) <= capacity after every insert; a listing over
 *     capacity / 2 is never kept (fs_dc_max_list_bytes), so a directory too big for the cache
 *     is recorded as such (a small "too big" entry under the same rule 3) and not scanned
 *     into memory again until it changes.
 * Dead entries (seq moved on) are dropped when met, or evicted by LRU: no scan per change.
 */
#ifndef KVFS_DIRCACHE_H
#define KVFS_DIRCACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Default capacity (-o dir_cache_size): a listing costs ~16 bytes per entry plus its name, so
 * 8 MiB holds a directory of 100,000 short names next to many small ones. */
#define FS_DC_DEFAULT_BYTES (8u << 20)

struct fs_dc;

/* A listing. Its fields belong to dircache.c; readers use the accessors below (inline: they run
 * once per entry of every listing). */
struct fs_dc_rec {
    uint64_t ino;
    uint32_t name_off;
    uint8_t nlen;
    uint8_t type; /* S_IFMT >> 12 */
};
struct fs_dc_list {
    atomic_uint refs;
    size_t n, cap;       /* records */
    size_t nbytes, ncap; /* name bytes; FS_DC_NAME_SLACK more are allocated past ncap */
    struct fs_dc_rec *recs;
    char *names;
};
/* Readable bytes past every name's start: FS_DC_NAME_SLACK bytes may be copied at once. */
#define FS_DC_NAME_SLACK 16

/* Creates a cache holding up to capacity bytes of listings, with nstripes sequence numbers
 * (one per inode stripe). Returns NULL when out of memory or capacity is 0 (then every caller
 * lists from the store). Free with fs_dc_free. */
struct fs_dc *fs_dc_new(size_t capacity, int nstripes);
/* Frees the cache and drops its reference on every listing (streams keep theirs). NULL is a
 * no-op. No other call on dc may be running. */
void fs_dc_free(struct fs_dc *dc);

/* The stripe's seq, sampled before the snapshot a listing is built from (invariant 2). Odd: a
 * change is under way; build nothing. Thread-safe. */
uint64_t fs_dc_sample(struct fs_dc *dc, int stripe);

/* Looks up the listing of directory ino (in stripe). Returns FS_DC_HIT with *out set to a new
 * reference (release with fs_dc_list_put), FS_DC_TOO_BIG if the directory was found too big to
 * keep and has not changed since, or FS_DC_MISS. Thread-safe. */
#define FS_DC_MISS 0
#define FS_DC_HIT 1
#define FS_DC_TOO_BIG 2
int fs_dc_get(struct fs_dc *dc, int stripe, uint64_t ino, const struct fs_dc_list **out);

/* The most bytes one listing may take to be kept (capacity / 2). Builders stop past it. */
size_t fs_dc_max_list_bytes(const struct fs_dc *dc);

/* Offers list, built from a snapshot taken after `sample` was taken; list == NULL records that
 * ino is too big. Keeps (a new reference on) the listing only if the stripe's seq still equals
 * sample (even) and it is within fs_dc_max_list_bytes; may evict least recently used
 * listings. The caller keeps its own reference. Thread-safe. */
void fs_dc_insert(struct fs_dc *dc, int stripe, uint64_t sample, uint64_t ino,
                  const struct fs_dc_list *list);

/* Invariant 1: the caller holds the stripe's lock and is about to commit a change to the
 * dirents of a directory in it (begin), or has committed it, successfully or not (end).
 * NULL dc is a no-op. Thread-safe for distinct stripes. */
void fs_dc_change_begin(struct fs_dc *dc, int stripe);
void fs_dc_change_end(struct fs_dc *dc, int stripe);

/* ---- Listings ------------------------------------------------------------------------------ */

/* A new, empty, growable listing with one reference held by the caller. NULL when out of
 * memory. Not thread-safe until offered (then read-only). */
struct fs_dc_list *fs_dc_list_new(void);
/* Appends an entry (name of nlen 1..255 bytes, copied; its inode; its type as S_IFMT bits).
 * Returns 0, -EINVAL for a length out of range, or -ENOMEM (list unchanged either way). */
int fs_dc_list_add(struct fs_dc_list *l, const char *name, size_t nlen, uint64_t ino,
                   uint32_t type);
/* Gives back the slack of the growable arrays once the listing is complete. */
void fs_dc_list_seal(struct fs_dc_list *l);
/* Bytes the listing takes (charged against the capacity): what it holds, which is what it has
 * allocated once sealed (before, the growable arrays may hold up to twice that). */
size_t fs_dc_list_bytes(const struct fs_dc_list *l);
/* Number of entries. */
static inline size_t fs_dc_list_count(const struct fs_dc_list *l)
{
    return l->n;
}
/* Copies the name of entry i (< count) to buf (at least 256 bytes), NUL-terminated, and
 * returns its length; *ino and *type (S_IFMT bits) receive the rest. */
static inline size_t fs_dc_list_entry(const struct fs_dc_list *l, size_t i, char *buf,
                                      uint64_t *ino, uint32_t *type)
{
    const struct fs_dc_rec *r = &l->recs[i];
    const char *name = l->names + r->name_off;
    /* One fixed-size copy for short names (the slack makes it safe), not a memcpy call. */
    if (r->nlen <= FS_DC_NAME_SLACK)
        memcpy(buf, name, FS_DC_NAME_SLACK);
    else
        memcpy(buf, name, r->nlen);
    buf[r->nlen] = '\0';
    *ino = r->ino;
    *type = (uint32_t)r->type << 12;
    return r->nlen;
}
/* Drops a reference; the last frees the listing. NULL is a no-op. Thread-safe. */
void fs_dc_list_put(const struct fs_dc_list *l);

/* Counters for tests and statistics. Thread-safe. */
struct fs_dc_stats {
    uint64_t hits, misses, inserts, rejected, lists, bytes;
};
void fs_dc_get_stats(struct fs_dc *dc, struct fs_dc_stats *st);

#endif /* KVFS_DIRCACHE_H */
