/* table_cache.c - open sst_readers by file number on an LRU cache of max_open_files entries.
 *
 * Each cache entry is a table_entry holding an open reader (charge 1). A handle pins the entry:
 * table_cache_get holds one for the duration of the lookup, an iterator holds one until it is
 * freed, so eviction never closes a reader in use. Every open reader is also on a list, so that
 * the Bloom-filter counters of live readers can be summed; closed readers add theirs to
 * closed_bloom_useful.
 *
 * With mmap on (table_cache_set_mmap, kv_options.mmap_reads) readers map their tables
 * (sst_reader_open_mapped): tables in a version are complete, synced and never written again. A
 * mapping lives exactly as long as its reader, so max_open_files bounds the mappings as it bounds
 * the descriptors (address space only: the pages are the page cache's), eviction unmaps, and a
 * table deleted while an iterator still pins its entry stays mapped (unlink keeps the inode) until
 * that iterator is freed.
 *
 * A pin (table_cache_pin) is a handle held until table_cache_unpin; at most max_open_files / 2
 * are out at once (tc->pinned counts them), so pinned tables cannot crowd the others out.
 *
 * Lock order: the cache's internal locks, then tc->mu (the deleter takes mu while the cache
 * may hold a shard lock; nothing here calls into the cache with mu held).
 */
#include "db/table_cache.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "db/filename.h"
#include "kvcore/kv.h"
#include "util/coding.h"

typedef struct table_entry {
    table_cache *tc;
    sst_reader *reader;
    uint64_t number;
    struct table_entry *prev, *next; /* on tc->open; protected by tc->mu */
} table_entry;

struct table_cache {
    char *dir;
    const kv_env *env;
    cache *c;
    cache *block_cache;
    const kv_logger *log;
    int verify_checksums;
    int mmap;      /* table_cache_set_mmap */
    int pin_limit; /* table_cache_pin: at most this many pins at once */
    int pinned;    /* pins not yet released; atomic */
    pthread_mutex_t mu;
    table_entry *open;            /* protected by mu */
    uint64_t closed_bloom_useful; /* protected by mu */
};

table_cache *table_cache_new(const char *dir, const kv_env *env, int max_open_files,
                             cache *block_cache, const kv_logger *log, int verify_checksums)
{
    table_cache *tc = calloc(1, sizeof *tc);
    if (tc == NULL)
        return NULL;
    tc->dir = strdup(dir);
    tc->c = cache_new(max_open_files > 0 ? (size_t)max_open_files : 1);
    if (tc->dir == NULL || tc->c == NULL) {
        free(tc->dir);
        cache_free(tc->c);
        free(tc);
        return NULL;
    }
    tc->env = env;
    tc->block_cache = block_cache;
    tc->log = log;
    tc->verify_checksums = verify_checksums;
    tc->pin_limit = max_open_files / 2;
    pthread_mutex_init(&tc->mu, NULL);
    return tc;
}

void table_cache_set_mmap(table_cache *tc, int on)
{
    tc->mmap = on != 0;
}

void table_cache_free(table_cache *tc)
{
    if (tc == NULL)
        return;
    cache_free(tc->c); /* runs the deleter of every entry, closing the readers */
    pthread_mutex_destroy(&tc->mu);
    free(tc->dir);
    free(tc);
}

static void delete_entry(slice key, void *value)
{
    (void)key;
    table_entry *te = value;
    table_cache *tc = te->tc;
    uint64_t blocks_read = 0, bloom_useful = 0;
    sst_reader_counters(te->reader, &blocks_read, &bloom_useful);
    pthread_mutex_lock(&tc->mu);
    if (te->prev)
        te->prev->next = te->next;
    else
        tc->open = te->next;
    if (te->next)
        te->next->prev = te->prev;
    tc->closed_bloom_useful += bloom_useful;
    pthread_mutex_unlock(&tc->mu);
    sst_reader_close(te->reader);
    free(te);
}

/* Opens table `number` and returns a pinned handle to it in *out. */
static int find_table(table_cache *tc, uint64_t number, uint64_t file_size, cache_handle **out)
{
    char key[8];
    coding_put_fixed64(key, number);
    slice k = slice_make(key, sizeof key);

    *out = cache_lookup(tc->c, k);
    if (*out)
        return 0;

    size_t plen = strlen(tc->dir) + FILENAME_MAX_LEN;
    char path[plen], name[FILENAME_MAX_LEN];
    filename_table(path, plen, tc->dir, number);
    filename_table(name, sizeof name, ".", number);
    const char *base = name + 2; /* "NNNNNN.sst" without "./" */

    uint64_t actual_size = 0;
    int rc = tc->env->file_size(tc->env, path, &actual_size);
    if (rc == KV_ENOTFOUND) {
        kv_log(tc->log, KV_LOG_ERROR, "table %s referenced by the manifest is missing", base);
        return KV_ECORRUPT;
    }
    if (rc) {
        kv_log(tc->log, KV_LOG_ERROR, "table %s: cannot read its size: %s", base, kv_strerror(rc));
        return rc;
    }
    if (file_size != 0 && actual_size != file_size) {
        kv_log(tc->log, KV_LOG_ERROR,
               "sst %s: file size check: manifest records %" PRIu64 " bytes, file has %" PRIu64,
               base, file_size, actual_size);
        return KV_ECORRUPT;
    }

    env_file *f = NULL;
    rc = tc->env->open_readable(tc->env, path, &f);
    if (rc == KV_ENOTFOUND) {
        kv_log(tc->log, KV_LOG_ERROR, "table %s referenced by the manifest is missing", base);
        return KV_ECORRUPT;
    }
    if (rc) {
        kv_log(tc->log, KV_LOG_ERROR, "table %s: open failed: %s", base, kv_strerror(rc));
        return rc;
    }

    sst_read_options ro = {
        .block_cache = tc->block_cache,
        .log = tc->log,
        .verify_checksums = tc->verify_checksums,
        .fill_cache = 1,
    };
    sst_reader *r = NULL;
    /* Both take f, even on failure. */
    rc = tc->mmap ? sst_reader_open_mapped(f, actual_size, base, &ro, &r)
                  : sst_reader_open(f, actual_size, base, &ro, &r);
    if (rc)
        return rc;

    table_entry *te = calloc(1, sizeof *te);
    if (te == NULL) {
        sst_reader_close(r);
        return KV_ENOMEM;
    }
    te->tc = tc;
    te->reader = r;
    te->number = number;
    pthread_mutex_lock(&tc->mu);
    te->next = tc->open;
    if (tc->open)
        tc->open->prev = te;
    tc->open = te;
    pthread_mutex_unlock(&tc->mu);

    *out = cache_insert(tc->c, k, te, 1, delete_entry);
    return *out ? 0 : KV_ENOMEM; /* on failure the deleter already closed the reader */
}

int table_cache_get(table_cache *tc, uint64_t number, uint64_t file_size, slice ikey, void *ctx,
                    void (*found)(void *ctx, slice ikey, slice value))
{
    cache_handle *h = NULL;
    int rc = find_table(tc, number, file_size, &h);
    if (rc)
        return rc;
    table_entry *te = cache_value(h);
    rc = sst_reader_get(te->reader, ikey, ctx, found);
    cache_release(tc->c, h);
    return rc;
}

struct table_pin {
    table_cache *tc;
    cache_handle *h;
    sst_reader *reader;
};

int table_cache_pin(table_cache *tc, uint64_t number, uint64_t file_size, table_pin **out)
{
    *out = NULL;
    if (__atomic_add_fetch(&tc->pinned, 1, __ATOMIC_RELAXED) > tc->pin_limit) {
        __atomic_sub_fetch(&tc->pinned, 1, __ATOMIC_RELAXED);
        return 0;
    }
    table_pin *p = malloc(sizeof *p);
    cache_handle *h = NULL;
    int rc = p ? find_table(tc, number, file_size, &h) : KV_ENOMEM;
    if (rc) {
        free(p);
        __atomic_sub_fetch(&tc->pinned, 1, __ATOMIC_RELAXED);
        return rc;
    }
    p->tc = tc;
    p->h = h;
    p->reader = ((table_entry *)cache_value(h))->reader;
    *out = p;
    return 0;
}

sst_reader *table_pin_reader(const table_pin *p)
{
    return p->reader;
}

void table_cache_unpin(table_pin *p)
{
    if (p == NULL)
        return;
    cache_release(p->tc->c, p->h);
    __atomic_sub_fetch(&p->tc->pinned, 1, __ATOMIC_RELAXED);
    free(p);
}

static void release_handle(void *arg1, void *arg2)
{
    cache_release((cache *)arg1, (cache_handle *)arg2);
}

iter *table_cache_iter_new(table_cache *tc, uint64_t number, uint64_t file_size, int fill_cache)
{
    cache_handle *h = NULL;
    int rc = find_table(tc, number, file_size, &h);
    if (rc)
        return iter_new_empty(rc);
    table_entry *te = cache_value(h);
    iter *it = sst_reader_iter_new(te->reader, fill_cache);
    if (it == NULL) {
        cache_release(tc->c, h);
        return NULL;
    }
    if (iter_register_cleanup(it, release_handle, tc->c, h)) {
        /* The cleanup ran already (handle released); the iterator must not be used. */
        iter_free(it);
        return iter_new_empty(KV_ENOMEM);
    }
    return it;
}

void table_cache_evict(table_cache *tc, uint64_t number)
{
    char key[8];
    coding_put_fixed64(key, number);
    cache_erase(tc->c, slice_make(key, sizeof key));
}

uint64_t table_cache_open_count(table_cache *tc)
{
    return cache_total_charge(tc->c);
}

void table_cache_counters(table_cache *tc, uint64_t *bloom_useful)
{
    pthread_mutex_lock(&tc->mu);
    uint64_t total = tc->closed_bloom_useful;
    for (table_entry *te = tc->open; te; te = te->next) {
        uint64_t blocks = 0, useful = 0;
        sst_reader_counters(te->reader, &blocks, &useful);
        total += useful;
    }
    pthread_mutex_unlock(&tc->mu);
    *bloom_useful = total;
}
