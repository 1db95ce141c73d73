/* salvage.c - kv_salvage: offline repair of the store damage that can be undone without
 * guessing, for `kvfs fsck --repair`.
 *
 * What it repairs, in this order, with the store's LOCK held:
 *  1. CURRENT missing, malformed, or naming a manifest that does not exist: pointed at the
 *     newest MANIFEST-NNNNNN in the directory (only the newest: an older manifest may describe
 *     tables since compacted away, or a state older than what was acknowledged).
 *  2. A write-ahead log whose records stop before its end (a torn tail, or a damaged record
 *     that kv_open refuses with paranoid_checks): cut back to its last good record. The
 *     records after the cut are lost; how many bytes is logged.
 * Every file it changes is first copied beside itself as "<name>.damaged" (a name kvcore never
 * touches), so nothing is destroyed. What it does not repair: damage inside a table (a block,
 * the index, the filter or the footer) or inside the manifest's records. Skipping a damaged
 * table block would need block-level access to the table (sst.h offers none) and would let
 * older versions of the lost keys reappear, i.e. serve old bytes as current; that is left to
 * a human (see the report printed by kvfs fsck).
 *
 * Invariants:
 *  1. Nothing is changed unless the directory already holds kvcore files (CURRENT, a manifest,
 *     a table or a log): kv_salvage never turns a foreign directory into a store.
 *  2. A changed file is replaced atomically (temp name, sync, rename, directory sync) after its
 *     original was copied to <name>.damaged and synced.
 */
#include "db/filename.h"
#include "db/wal.h"
#include "kvcore/kv.h"
#include "util/env.h"
#include "util/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SALVAGE_COPY_CHUNK (1u << 20)

struct salvage {
    const kv_env *env;
    const char *dir;
    kv_logger log;
    char **names;
    size_t n;
    uint64_t fixed;
};

/* "dir/name" + suffix, malloc'd; NULL if out of memory. */
static char *join(const char *dir, const char *name, const char *suffix)
{
    size_t len = strlen(dir) + 1 + strlen(name) + strlen(suffix) + 1;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/%s%s", dir, name, suffix);
    return p;
}

/* Copies the first `len` bytes of dir/from to dir/to (through dir/to.tmp, synced, renamed,
 * directory synced). */
static int copy_prefix(struct salvage *s, const char *from, const char *to, uint64_t len)
{
    char *src = join(s->dir, from, ""), *tmp = join(s->dir, to, ".tmp"),
         *dst = join(s->dir, to, "");
    char *buf = malloc(SALVAGE_COPY_CHUNK);
    env_file *in = NULL, *out = NULL;
    int rc = KV_ENOMEM;
    if (!src || !tmp || !dst || !buf)
        goto done;
    rc = s->env->open_readable(s->env, src, &in);
    if (rc == 0)
        rc = s->env->open_writable(s->env, tmp, &out);
    for (uint64_t off = 0; rc == 0 && off < len;) {
        size_t want = len - off < SALVAGE_COPY_CHUNK ? (size_t)(len - off) : SALVAGE_COPY_CHUNK;
        size_t got = 0;
        rc = env_pread(in, buf, want, off, &got);
        if (rc == 0 && got != want)
            rc = KV_EIO; /* the file shrank under us: someone else is using the store */
        if (rc == 0)
            rc = env_append(out, buf, got);
        off += got;
    }
    if (rc == 0)
        rc = env_sync(out);
    if (out) {
        int crc = env_close(out);
        if (rc == 0)
            rc = crc;
    }
    if (rc == 0)
        rc = s->env->rename(s->env, tmp, dst);
    if (rc == 0)
        rc = s->env->sync_dir(s->env, s->dir);
    else if (out)
        s->env->unlink(s->env, tmp);
done:
    if (in)
        env_close(in);
    free(src);
    free(tmp);
    free(dst);
    free(buf);
    return rc;
}

/* Keeps a copy of dir/name (all of it) as dir/name.damaged. */
static int keep_original(struct salvage *s, const char *name)
{
    size_t dlen = strlen(name) + sizeof ".damaged";
    char *p = join(s->dir, name, ""), *damaged = malloc(dlen);
    uint64_t size = 0;
    int rc = p && damaged ? s->env->file_size(s->env, p, &size) : KV_ENOMEM;
    if (rc == 0) {
        snprintf(damaged, dlen, "%s.damaged", name);
        rc = copy_prefix(s, name, damaged, size);
    }
    if (rc != 0)
        kv_log(&s->log, KV_LOG_ERROR, "salvage: cannot keep a copy of %s: %s", name,
               kv_strerror(rc));
    free(p);
    free(damaged);
    return rc;
}

/* Step 1: CURRENT. */
static int salvage_current(struct salvage *s)
{
    char *p = join(s->dir, "CURRENT", "");
    char *data = NULL, name[FILENAME_MAX_LEN];
    size_t len = 0;
    const char *why = NULL;
    uint64_t number = 0, newest = 0, size;
    enum filename_type type;
    int have_manifest = 0;
    if (!p)
        return KV_ENOMEM;
    int rc = env_read_file(s->env, p, &data, &len);
    if (rc == KV_ENOTFOUND) {
        why = "missing";
        rc = 0;
    } else if (rc != 0) {
        free(p);
        return rc;
    } else if (len < 2 || len >= sizeof name || data[len - 1] != '\n') {
        why = "malformed";
    } else {
        memcpy(name, data, len - 1);
        name[len - 1] = '\0';
        if (strlen(name) != len - 1 || !filename_parse(name, &type, &number) ||
            type != FILE_TYPE_MANIFEST) {
            why = "malformed";
        } else {
            char *m = join(s->dir, name, "");
            if (!m) {
                free(p);
                free(data);
                return KV_ENOMEM;
            }
            if (s->env->file_size(s->env, m, &size) == KV_ENOTFOUND)
                why = "naming a manifest that does not exist";
            free(m);
        }
    }
    free(p);
    free(data);
    if (!why)
        return 0;
    for (size_t i = 0; i < s->n; i++) {
        if (filename_parse(s->names[i], &type, &number) && type == FILE_TYPE_MANIFEST &&
            (!have_manifest || number > newest)) {
            newest = number;
            have_manifest = 1;
        }
    }
    if (!have_manifest) {
        kv_log(&s->log, KV_LOG_ERROR, "salvage: CURRENT is %s and no manifest is left", why);
        return KV_ECORRUPT;
    }
    if (strcmp(why, "missing") != 0 && (rc = keep_original(s, "CURRENT")) != 0)
        return rc;
    rc = filename_set_current(s->env, s->dir, newest);
    if (rc != 0) {
        kv_log(&s->log, KV_LOG_ERROR, "salvage: cannot rewrite CURRENT: %s", kv_strerror(rc));
        return rc;
    }
    s->fixed++;
    kv_log(&s->log, KV_LOG_WARN, "salvage: CURRENT was %s; it now names MANIFEST-%06" PRIu64, why,
           newest);
    return 0;
}

/* Step 2: one write-ahead log. */
static int salvage_log(struct salvage *s, const char *name)
{
    char *p = join(s->dir, name, "");
    env_file *f;
    wal_reader *r;
    slice rec;
    int rc;
    if (!p)
        return KV_ENOMEM;
    rc = s->env->open_readable(s->env, p, &f);
    free(p);
    if (rc != 0)
        return rc;
    rc = wal_reader_new(f, &r);
    if (rc != 0)
        return rc;
    while ((rc = wal_read_record(r, &rec)) == 1)
        ;
    uint64_t good = wal_reader_good_offset(r), dropped = wal_reader_dropped_bytes(r);
    const char *reason = wal_reader_drop_reason(r);
    char why[64];
    snprintf(why, sizeof why, "%s", reason ? reason : "unknown");
    wal_reader_free(r);
    if (rc < 0) {
        kv_log(&s->log, KV_LOG_ERROR, "salvage: %s: cannot read: %s", name, kv_strerror(rc));
        return rc;
    }
    if (dropped == 0)
        return 0;
    rc = keep_original(s, name);
    if (rc == 0)
        rc = copy_prefix(s, name, name, good);
    if (rc != 0) {
        kv_log(&s->log, KV_LOG_ERROR, "salvage: %s: cannot cut it back: %s", name, kv_strerror(rc));
        return rc;
    }
    s->fixed++;
    kv_log(&s->log, KV_LOG_WARN,
           "salvage: %s: cut back to its last good record at offset %" PRIu64 " (%s); the %" PRIu64
           " bytes after it are lost (kept in %s.damaged)",
           name, good, why, dropped, name);
    return 0;
}

int kv_salvage(const char *path, const kv_options *opts, uint64_t *fixed)
{
    kv_options o;
    struct salvage s;
    env_lock *lock = NULL;
    enum filename_type type;
    uint64_t number;
    int ours = 0, rc;

    if (fixed)
        *fixed = 0;
    if (!path || !*path)
        return KV_EINVAL;
    if (opts)
        o = *opts;
    else
        kv_options_init(&o);
    memset(&s, 0, sizeof s);
    s.env = o.env ? o.env : env_posix();
    s.dir = path;
    kv_logger_init(&s.log, &o);

    rc = s.env->list_dir(s.env, path, &s.names, &s.n);
    if (rc != 0)
        return rc == KV_ENOTFOUND ? KV_EINVAL : rc;
    for (size_t i = 0; i < s.n; i++)
        if (filename_parse(s.names[i], &type, &number) && type != FILE_TYPE_LOCK &&
            type != FILE_TYPE_TEMP)
            ours = 1;
    if (!ours) {
        env_free_names(s.names, s.n);
        kv_log(&s.log, KV_LOG_ERROR, "salvage: %s holds no kvcore files", path);
        return KV_EINVAL;
    }
    char *lp = join(path, "LOCK", "");
    rc = lp ? s.env->lock(s.env, lp, &lock) : KV_ENOMEM;
    free(lp);
    if (rc == 0)
        rc = salvage_current(&s);
    for (size_t i = 0; rc == 0 && i < s.n; i++)
        if (filename_parse(s.names[i], &type, &number) && type == FILE_TYPE_LOG)
            rc = salvage_log(&s, s.names[i]);
    if (lock)
        s.env->unlock(lock);
    env_free_names(s.names, s.n);
    if (fixed)
        *fixed = s.fixed;
    if (rc != 0)
        return rc;

    /* Whatever remains (a damaged table or manifest record) makes the open fail again. */
    kv_db *db;
    o.read_only = 1;
    o.create_if_missing = 0;
    o.error_if_exists = 0;
    rc = kv_open(path, &o, &db);
    if (rc != 0) {
        kv_log(&s.log, KV_LOG_ERROR,
               "salvage: %s still does not open (%s): damage inside a table or the manifest "
               "is not salvageable",
               path, kv_strerror(rc));
        return rc;
    }
    return kv_close(db);
}
