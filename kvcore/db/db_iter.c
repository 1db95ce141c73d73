/* db_iter.c - the user iterator: a view of the merged internal entries (memtables and tables)
 * that shows, at the iterator's sequence, only the newest entry of each user key and hides
 * deletions, with next/prev/seek/seek_for_prev/seek_first/seek_last.
 *
 * The merged internal stream orders each user key's entries newest first. Two directions:
 *  - forward: the internal iterator is ON the entry that supplies the current key and value,
 *    so key()/value() read straight from it. saved_key is scratch (the key being skipped).
 *  - reverse: the internal iterator is positioned just BEFORE every entry of the current key
 *    (on the last entry of a smaller key, or invalid); the current key and value are copies in
 *    saved_key/saved_value, because reaching the newest visible entry of a key backwards means
 *    walking past it.
 * Switching direction re-establishes the other position from the current key.
 *
 * Invariants:
 *  1. valid implies: forward -> internal valid, its entry visible (sequence <= it->sequence),
 *     a value, and the newest visible entry of its user key; reverse -> saved_key/saved_value
 *     hold the newest visible entry of a key whose newest visible entry is a value.
 *  2. When the internal iterator reports an error, the user iterator becomes invalid and
 *     kv_iter_status() returns the error: a partial scan never yields a stale value.
 *  3. The iterator pins a read view (db_view: the memtables and the version it reads; a
 *     cleanup on the merged iterator releases it), so flushes and compactions can proceed.
 */
#include "db/db_impl.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "db/vlog.h"
#include "table/sst.h"
#include "util/ikey.h"

enum { DIR_FORWARD = 0, DIR_REVERSE = 1 };

struct kv_iter {
    kv_db *db;
    iter *internal; /* merged memtables + tables; owns the version reference */
    uint64_t sequence;
    int valid;
    int dir;
    int status; /* an error found by this layer (malformed key, out of memory) */
    buf saved_key;
    buf saved_value;
    buf scratch; /* internal keys built for seeks */
    /* Value log (db->vlog set): the current value decoded, and the pin that keeps the
     * segments this view can reach. */
    uint64_t vlog_epoch;
    slice value;
    buf value_buf;
    /* kv_iter_new_keys: values are not read; value_size is the current one's length. */
    int keys_only;
    size_t value_size;
};

/* Runs from iter_free of the merged iterator: the tables and memtables are no longer read. */
static void release_view_cleanup(void *arg1, void *arg2)
{
    db_view_release((kv_db *)arg1, (db_view *)arg2);
}

/* Builds the merged iterator over view's memtables and tables (the view stays the caller's).
 * NULL if out of memory. */
static iter *new_internal_iter(const db_view *view)
{
    iter **children = malloc(2 * sizeof(*children));
    if (!children)
        return NULL;
    int n = 0, rc = 0;
    if ((children[n] = memtable_iter_new(view->mem)) != NULL)
        n++;
    else
        rc = KV_ENOMEM;
    if (rc == 0 && view->imm) {
        if ((children[n] = memtable_iter_new(view->imm)) != NULL)
            n++;
        else
            rc = KV_ENOMEM;
    }
    if (rc == 0)
        rc = version_add_iterators(view->v, 1, &children, &n);
    iter *merged = NULL;
    if (rc == 0)
        merged = merger_new(children, n); /* owns (or freed) the children now */
    else
        for (int i = 0; i < n; i++)
            iter_free(children[i]);
    free(children);
    return merged;
}

kv_iter *kv_iter_new_keys(kv_db *db, const kv_snapshot *snap)
{
    kv_iter *it = kv_iter_new(db, snap);
    if (it)
        it->keys_only = 1;
    return it;
}

kv_iter *kv_iter_new(kv_db *db, const kv_snapshot *snap)
{
    if (!db)
        return NULL;
    kv_iter *it = calloc(1, sizeof(*it));
    if (!it)
        return NULL;
    it->db = db;
    buf_init(&it->saved_key);
    buf_init(&it->saved_value);
    buf_init(&it->scratch);
    buf_init(&it->value_buf);
    if (db->vlog)
        it->vlog_epoch = vlog_pin(db->vlog);

    db_view *view = db_view_acquire(db, snap, &it->sequence);
    it->internal = view ? new_internal_iter(view) : NULL;
    /* On failure to register, the cleanup has released the view already. */
    if (!it->internal || iter_register_cleanup(it->internal, release_view_cleanup, db, view) != 0) {
        if (!it->internal)
            db_view_release(db, view);
        iter_free(it->internal);
        if (db->vlog)
            vlog_unpin(db->vlog, it->vlog_epoch);
        free(it);
        return NULL;
    }
    return it;
}

void kv_iter_free(kv_iter *it)
{
    if (!it)
        return;
    kv_db *db = it->db;
    iter_free(it->internal); /* releases the view (release_view_cleanup) */
    buf_free(&it->saved_key);
    buf_free(&it->saved_value);
    buf_free(&it->scratch);
    buf_free(&it->value_buf);
    if (db->vlog)
        vlog_unpin(db->vlog, it->vlog_epoch);
    free(it);
}

/* ---- Helpers ------------------------------------------------------------------------------- */

static void fail(kv_iter *it, int rc)
{
    if (it->status == 0)
        it->status = rc;
    it->valid = 0;
}

/* Parses the internal iterator's key; on a malformed key marks the iterator corrupt. */
static int parse_current(kv_iter *it, ikey_parsed *pk)
{
    if (ikey_parse(iter_key(it->internal), pk))
        return 1;
    kv_log(&it->db->log, KV_LOG_ERROR, "iterator: malformed internal key (%zu bytes)",
           iter_key(it->internal).size);
    fail(it, KV_ECORRUPT);
    return 0;
}

static int save(kv_iter *it, buf *b, slice s)
{
    buf_clear(b);
    if (buf_append(b, s.data, s.size) != 0) {
        fail(it, KV_ENOMEM);
        return 0;
    }
    return 1;
}

static void clear_saved(kv_iter *it)
{
    buf_clear(&it->saved_key);
    buf_clear(&it->saved_value);
}

/* Value log: decodes the current entry's stored value into it->value (a pointer is read and
 * verified now, so that a damaged record ends the scan with its error). */
static void resolve_value(kv_iter *it)
{
    if (!it->valid || !it->db->vlog)
        return;
    int fwd = it->dir == DIR_FORWARD;
    slice stored = fwd ? iter_value(it->internal) : buf_slice(&it->saved_value);
    slice key = fwd ? ikey_user_key(iter_key(it->internal)) : buf_slice(&it->saved_key);
    if (it->keys_only) {
        uint64_t seg, off;
        uint32_t size, vlen;
        if (stored.size >= 1 && (unsigned char)stored.data[0] == VLOG_TAG_INLINE) {
            it->value_size = stored.size - 1;
        } else if (vlog_parse_pointer(stored, &seg, &off, &size, &vlen)) {
            it->value_size = vlen;
        } else {
            kv_log(&it->db->log, KV_LOG_ERROR,
                   "iterator: malformed stored value (%zu bytes, tag %d)", stored.size,
                   stored.size ? (unsigned char)stored.data[0] : -1);
            fail(it, KV_ECORRUPT);
        }
        return;
    }
    int rc = vlog_resolve(it->db->vlog, key, stored, &it->value_buf, &it->value);
    if (rc != 0)
        fail(it, rc);
}

/* Invariant 2: an internal error ends the scan. */
static void check_internal_status(kv_iter *it)
{
    if (it->valid && iter_status(it->internal) != 0)
        it->valid = 0;
}

/* Forward: from the internal position, finds the first visible value whose user key is not
 * hidden. With skipping, entries with user key <= saved_key are hidden (already shown or
 * deleted). */
static void find_next_user_entry(kv_iter *it, int skipping)
{
    assert(it->dir == DIR_FORWARD);
    while (iter_valid(it->internal)) {
        ikey_parsed pk;
        if (!parse_current(it, &pk))
            return;
        if (pk.sequence <= it->sequence) {
            if (pk.type == IKEY_TYPE_DELETION) {
                /* Hide every older entry of this key. */
                if (!save(it, &it->saved_key, pk.user_key))
                    return;
                skipping = 1;
            } else if (!skipping || slice_compare(pk.user_key, buf_slice(&it->saved_key)) > 0) {
                it->valid = 1;
                buf_clear(&it->saved_key);
                check_internal_status(it);
                resolve_value(it);
                return;
            }
        }
        iter_next(it->internal);
    }
    buf_clear(&it->saved_key);
    it->valid = 0;
}

/* Reverse: walks backwards over the entries of the key before the internal position and
 * keeps the newest visible one; stops on the last entry of the key before that. */
static void find_prev_user_entry(kv_iter *it)
{
    assert(it->dir == DIR_REVERSE);
    int value_type = IKEY_TYPE_DELETION;
    while (iter_valid(it->internal)) {
        ikey_parsed pk;
        if (!parse_current(it, &pk))
            return;
        if (pk.sequence <= it->sequence) {
            if (value_type != IKEY_TYPE_DELETION &&
                slice_compare(pk.user_key, buf_slice(&it->saved_key)) < 0)
                break; /* an entry of the previous key: the current one is complete */
            value_type = pk.type;
            if (pk.type == IKEY_TYPE_DELETION) {
                clear_saved(it);
            } else if (!save(it, &it->saved_key, pk.user_key) ||
                       !save(it, &it->saved_value, iter_value(it->internal))) {
                return;
            }
        }
        iter_prev(it->internal);
    }
    if (iter_status(it->internal) != 0) {
        /* Newer entries of the key may lie past the failure: never show an older value. */
        it->valid = 0;
        clear_saved(it);
        return;
    }
    if (value_type == IKEY_TYPE_DELETION) {
        it->valid = 0;
        clear_saved(it);
        it->dir = DIR_FORWARD;
    } else {
        it->valid = 1;
        resolve_value(it);
    }
}

/* Builds the internal key (user_key, seq, type) in scratch. */
static int make_seek_key(kv_iter *it, slice user_key, uint64_t seq, int type)
{
    buf_clear(&it->scratch);
    if (ikey_append(&it->scratch, user_key, seq, type) != 0) {
        fail(it, KV_ENOMEM);
        return 0;
    }
    return 1;
}

/* ---- Positioning --------------------------------------------------------------------------- */

void kv_iter_seek_first(kv_iter *it)
{
    it->status = 0;
    it->dir = DIR_FORWARD;
    clear_saved(it);
    iter_seek_first(it->internal);
    find_next_user_entry(it, 0);
}

void kv_iter_seek_last(kv_iter *it)
{
    it->status = 0;
    it->dir = DIR_REVERSE;
    clear_saved(it);
    iter_seek_last(it->internal);
    find_prev_user_entry(it);
}

void kv_iter_seek(kv_iter *it, const void *key, size_t klen)
{
    it->status = 0;
    it->dir = DIR_FORWARD;
    clear_saved(it);
    if (!make_seek_key(it, slice_make(key, klen), it->sequence, IKEY_TYPE_FOR_SEEK))
        return;
    iter_seek(it->internal, buf_slice(&it->scratch));
    find_next_user_entry(it, 0);
}

void kv_iter_seek_for_prev(kv_iter *it, const void *key, size_t klen)
{
    it->status = 0;
    it->dir = DIR_REVERSE;
    clear_saved(it);
    slice target = slice_make(key, klen);
    /* (target, 0, deletion) sorts after every entry of target: land on the first entry of a
     * larger key, then step back onto the last entry of a key <= target. */
    if (!make_seek_key(it, target, 0, IKEY_TYPE_DELETION))
        return;
    iter_seek(it->internal, buf_slice(&it->scratch));
    while (iter_valid(it->internal)) {
        ikey_parsed pk;
        if (!parse_current(it, &pk))
            return;
        if (slice_compare(pk.user_key, target) > 0)
            break;
        iter_next(it->internal);
    }
    if (iter_status(it->internal) != 0) {
        it->valid = 0;
        return;
    }
    if (iter_valid(it->internal))
        iter_prev(it->internal);
    else
        iter_seek_last(it->internal);
    find_prev_user_entry(it);
}

void kv_iter_next(kv_iter *it)
{
    assert(it->valid);
    if (!it->valid)
        return;
    if (it->dir == DIR_REVERSE) {
        /* The internal iterator is before every entry of the current key (saved_key): step
         * onto them and skip them all. */
        it->dir = DIR_FORWARD;
        if (!iter_valid(it->internal))
            iter_seek_first(it->internal);
        else
            iter_next(it->internal);
        buf_clear(&it->saved_value);
    } else {
        if (!save(it, &it->saved_key, ikey_user_key(iter_key(it->internal))))
            return;
        iter_next(it->internal);
    }
    if (!iter_valid(it->internal)) {
        it->valid = 0;
        buf_clear(&it->saved_key);
        return;
    }
    find_next_user_entry(it, 1);
}

void kv_iter_prev(kv_iter *it)
{
    assert(it->valid);
    if (!it->valid)
        return;
    if (it->dir == DIR_FORWARD) {
        /* The internal iterator is on the current key's newest visible entry: back up until
         * it is on an entry of a smaller user key. */
        if (!save(it, &it->saved_key, ikey_user_key(iter_key(it->internal))))
            return;
        for (;;) {
            iter_prev(it->internal);
            if (!iter_valid(it->internal)) {
                it->valid = 0;
                clear_saved(it);
                return;
            }
            ikey_parsed pk;
            if (!parse_current(it, &pk))
                return;
            if (slice_compare(pk.user_key, buf_slice(&it->saved_key)) < 0)
                break;
        }
        it->dir = DIR_REVERSE;
    }
    find_prev_user_entry(it);
}

int kv_iter_valid(const kv_iter *it)
{
    return it && it->valid;
}

const void *kv_iter_key(const kv_iter *it, size_t *klen)
{
    assert(it->valid);
    slice k =
        it->dir == DIR_FORWARD ? ikey_user_key(iter_key(it->internal)) : buf_slice(&it->saved_key);
    if (klen)
        *klen = k.size;
    return k.data ? k.data : ""; /* never NULL, even for an empty key */
}

const void *kv_iter_value(const kv_iter *it, size_t *vlen)
{
    assert(it->valid);
    slice v = it->dir == DIR_FORWARD ? iter_value(it->internal) : buf_slice(&it->saved_value);
    if (it->db->vlog)
        v = it->keys_only ? slice_make("", 0) : it->value;
    if (vlen)
        *vlen = v.size;
    return v.data ? v.data : "";
}

size_t kv_iter_value_size(const kv_iter *it)
{
    size_t n;
    if (it->db->vlog && it->keys_only)
        return it->value_size;
    kv_iter_value(it, &n);
    return n;
}

int kv_iter_status(const kv_iter *it)
{
    if (!it)
        return KV_EINVAL;
    if (it->status)
        return it->status;
    return iter_status(it->internal);
}
