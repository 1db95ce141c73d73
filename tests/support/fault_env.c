/* fault_env.c - power-loss simulation and fault injection over env_posix() (see fault_env.h).
 *
 * Invariants (all under fe->mu):
 *  1. For every live fstate, durable <= len, and len is the size of the real file (the env is
 *     the only writer of files it tracks).
 *  2. At most one live fstate per path.
 *  3. pend[] lists, oldest first, exactly the creates/renames/unlinks done since the last
 *     sync_dir of their directory (or the last crash).
 *  4. A handle whose gen differs from fe->gen touches neither the disk (except closing its
 *     descriptor) nor any fstate: fstates it may point to are already freed.
 */
#include "fault_env.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* Largest file whose contents are saved so that an undone rename/unlink can restore it. */
#define FAULT_SAVE_MAX (8u << 20)
/* The unit in which a crash in PAGES mode keeps or loses unsynced bytes (a page-cache page). */
#define FAULT_PAGE_SIZE 4096u

typedef struct fstate {
    char *path;
    uint64_t len;
    uint64_t durable;
    int live;
    uint64_t counted; /* bytes appended under the current space limit (unlink gives back) */
} fstate;

enum pend_kind { PEND_CREATE, PEND_RENAME, PEND_UNLINK };

typedef struct pending {
    enum pend_kind kind;
    char *dir;    /* the sync_dir that makes it durable */
    char *path;   /* CREATE/UNLINK: the file; RENAME: the source */
    char *to;     /* RENAME: the target */
    int had_old;  /* RENAME: the target existed before; UNLINK: always 1 */
    int saved_ok; /* the old contents were saved (small enough, readable) */
    char *saved;  /* the old contents (durable prefix) */
    size_t saved_len;
} pending;

typedef struct fault_rule {
    int active;
    uint64_t base; /* ops[op] when the rule was set */
    uint64_t nth, count;
    int err;
} fault_rule;

struct fault_env {
    kv_env env; /* first: the table handed to kvcore; env.ctx points back here */
    const kv_env *posix;
    pthread_mutex_t mu;
    uint64_t gen; /* bumped by each crash */
    tu_rng rng;
    fstate **files; /* every fstate since the last crash, live or not */
    size_t nfiles, capfiles;
    pending *pend;
    size_t npend, cappend;
    fault_rule rules[FAULT_OP_COUNT];
    uint64_t space_limit, space_used;
    /* Files preallocate grew, and the bytes it counted against the space limit. */
    char **prealloc_path;
    uint64_t *prealloc_counted;
    size_t nprealloc;
    int halt_armed, halted;
    uint64_t halt_at;
    uint64_t mutations;
    int create_durable_on_sync;
    int random_dir_ops;
    fault_env_counters c;
};

typedef struct ffile {
    struct env_file base; /* first, as env.h requires */
    env_file *inner;
    fault_env *fe;
    fstate *fs; /* NULL for readable handles */
    uint64_t gen;
} ffile;

/* ---- helpers ----------------------------------------------------------------------------- */

static fault_env *fe_of(const kv_env *env)
{
    return (fault_env *)env->ctx;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

/* Collapses "//" and "/./" and drops a trailing "/" so that "dir/x" and sync_dir("dir/")
 * agree. Returns a malloc'd string. */
static char *norm_path(const char *p)
{
    size_t n = strlen(p);
    char *out = malloc(n + 2);
    if (!out)
        abort();
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '/') {
            if (p[i + 1] == '.' && (p[i + 2] == '/' || p[i + 2] == '\0')) {
                i++;
                if (o == 0)
                    out[o++] = '/';
                continue;
            }
            if (o > 0 && out[o - 1] == '/')
                continue;
        }
        out[o++] = p[i];
    }
    while (o > 1 && out[o - 1] == '/')
        o--;
    if (o == 0)
        out[o++] = '.';
    out[o] = '\0';
    return out;
}

static char *dir_of(const char *normed)
{
    const char *slash = strrchr(normed, '/');
    if (!slash)
        return xstrdup(".");
    if (slash == normed)
        return xstrdup("/");
    size_t n = (size_t)(slash - normed);
    char *d = malloc(n + 1);
    if (!d)
        abort();
    memcpy(d, normed, n);
    d[n] = '\0';
    return d;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static fstate *find_live(fault_env *fe, const char *normed)
{
    for (size_t i = 0; i < fe->nfiles; i++)
        if (fe->files[i]->live && strcmp(fe->files[i]->path, normed) == 0)
            return fe->files[i];
    return NULL;
}

static fstate *add_fstate(fault_env *fe, const char *normed, uint64_t len, uint64_t durable)
{
    if (fe->nfiles == fe->capfiles) {
        fe->capfiles = fe->capfiles ? fe->capfiles * 2 : 32;
        fstate **nf = realloc(fe->files, fe->capfiles * sizeof(*nf));
        if (!nf)
            abort();
        fe->files = nf;
    }
    fstate *fs = calloc(1, sizeof(*fs));
    if (!fs)
        abort();
    fs->path = xstrdup(normed);
    fs->len = len;
    fs->durable = durable;
    fs->live = 1;
    fe->files[fe->nfiles++] = fs;
    return fs;
}

/* Size of the file at path now (0 if absent). */
static uint64_t file_bytes(const char *normed)
{
    struct stat st;
    return stat(normed, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void forget_prealloc(fault_env *fe, const char *normed, uint64_t *counted);

/* The `size` bytes of the file at normed (fs: its state, may be NULL) were freed: unlinked,
 * renamed over or truncated. As on a real disk they are free space again: what was counted
 * against the limit stops counting, and the rest (there before the limit was set) adds to
 * it. mu held. */
static void free_blocks(fault_env *fe, const char *normed, fstate *fs, uint64_t size)
{
    uint64_t counted = 0;
    forget_prealloc(fe, normed, &counted);
    if (fs) {
        counted += fs->counted;
        fs->counted = 0;
    }
    fe->space_used -= counted < fe->space_used ? counted : fe->space_used;
    if (fe->space_limit != UINT64_MAX && size > counted) {
        uint64_t grown = fe->space_limit + (size - counted);
        fe->space_limit = grown < fe->space_limit || grown == UINT64_MAX ? UINT64_MAX - 1 : grown;
    }
}

static pending *add_pending(fault_env *fe, enum pend_kind kind, const char *normed)
{
    if (fe->npend == fe->cappend) {
        fe->cappend = fe->cappend ? fe->cappend * 2 : 32;
        pending *np = realloc(fe->pend, fe->cappend * sizeof(*np));
        if (!np)
            abort();
        fe->pend = np;
    }
    pending *p = &fe->pend[fe->npend++];
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->path = xstrdup(normed);
    p->dir = dir_of(normed);
    return p;
}

static void free_pending(pending *p)
{
    free(p->dir);
    free(p->path);
    free(p->to);
    free(p->saved);
}

/* Reads what of the file at normed would survive a crash now (its durable prefix if tracked,
 * else all of it) into *out. Returns 1 if saved, 0 if too large or unreadable. */
static int save_durable(fault_env *fe, const char *normed, char **out, size_t *len)
{
    struct stat st;
    if (stat(normed, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    uint64_t want = (uint64_t)st.st_size;
    fstate *fs = find_live(fe, normed);
    if (fs && fs->durable < want)
        want = fs->durable;
    if (want > FAULT_SAVE_MAX)
        return 0;
    char *buf = malloc(want ? want : 1);
    if (!buf)
        abort();
    int fd = open(normed, O_RDONLY);
    if (fd < 0) {
        free(buf);
        return 0;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, buf + got, want - got, (off_t)got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != want) {
        free(buf);
        return 0;
    }
    *out = buf;
    *len = (size_t)want;
    return 1;
}

static int write_whole(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    return close(fd);
}

/* Counts an op and applies rules. Returns 0 to proceed or the error to inject. mu held. */
static int check_rule(fault_env *fe, enum fault_op op)
{
    fe->c.ops[op]++;
    fault_rule *r = &fe->rules[op];
    if (!r->active)
        return 0;
    uint64_t k = fe->c.ops[op] - r->base;
    if (k >= r->nth && (r->count == 0 || k < r->nth + r->count)) {
        fe->c.faults_injected++;
        return r->err;
    }
    return 0;
}

/* For a mutating op: counts it, then applies halt and rules. mu held. */
static int check_mutation(fault_env *fe, enum fault_op op)
{
    int rc = check_rule(fe, op);
    if (fe->halt_armed && fe->mutations >= fe->halt_at)
        fe->halted = 1;
    if (fe->halted) {
        if (rc == 0)
            fe->c.faults_injected++;
        return KV_EIO;
    }
    return rc;
}

/* Drops a pending create of path (its directory entry became durable). mu held. */
static void forget_create(fault_env *fe, const char *normed)
{
    size_t o = 0;
    for (size_t i = 0; i < fe->npend; i++) {
        if (fe->pend[i].kind == PEND_CREATE && strcmp(fe->pend[i].path, normed) == 0)
            free_pending(&fe->pend[i]);
        else
            fe->pend[o++] = fe->pend[i];
    }
    fe->npend = o;
}

/* ---- file handles -------------------------------------------------------------------------- */

static int wrap(fault_env *fe, env_file *inner, fstate *fs, env_file **out)
{
    ffile *f = calloc(1, sizeof(*f));
    if (!f) {
        env_close(inner);
        return KV_ENOMEM;
    }
    f->base.env = &fe->env;
    f->inner = inner;
    f->fe = fe;
    f->fs = fs;
    f->gen = fe->gen;
    *out = &f->base;
    return 0;
}

static int fe_pread(env_file *ef, void *buf, size_t n, uint64_t off, size_t *nread)
{
    ffile *f = (ffile *)ef;
    fault_env *fe = f->fe;
    pthread_mutex_lock(&fe->mu);
    int dead = f->gen != fe->gen;
    int rc = check_rule(fe, FAULT_OP_READ);
    pthread_mutex_unlock(&fe->mu);
    if (dead)
        rc = KV_EIO;
    if (rc) {
        *nread = 0;
        return rc;
    }
    return env_pread(f->inner, buf, n, off, nread);
}

static int fe_append(env_file *ef, const void *buf, size_t n)
{
    ffile *f = (ffile *)ef;
    fault_env *fe = f->fe;
    pthread_mutex_lock(&fe->mu);
    int rc;
    if (f->gen != fe->gen || !f->fs) {
        fe->c.ops[FAULT_OP_APPEND]++;
        rc = KV_EIO;
    } else {
        rc = check_mutation(fe, FAULT_OP_APPEND);
        if (rc == 0 && fe->space_limit != UINT64_MAX &&
            (fe->space_used + n > fe->space_limit || fe->space_used + n < fe->space_used)) {
            fe->c.faults_injected++;
            rc = KV_ENOSPC;
        }
        if (rc == 0) {
            rc = env_append(f->inner, buf, n);
            if (rc == 0) {
                f->fs->len += n;
                if (fe->space_limit != UINT64_MAX)
                    f->fs->counted += n;
                fe->space_used += n;
                fe->c.bytes_appended += n;
                fe->mutations++;
            }
        }
    }
    pthread_mutex_unlock(&fe->mu);
    return rc;
}

static int fe_sync(env_file *ef)
{
    ffile *f = (ffile *)ef;
    fault_env *fe = f->fe;
    pthread_mutex_lock(&fe->mu);
    int rc;
    if (f->gen != fe->gen) {
        fe->c.ops[FAULT_OP_SYNC]++;
        rc = KV_EIO;
    } else {
        rc = check_mutation(fe, FAULT_OP_SYNC);
        if (rc == 0) {
            rc = env_sync(f->inner);
            if (rc == 0) {
                if (f->fs) {
                    fe->c.bytes_synced += f->fs->len - f->fs->durable;
                    f->fs->durable = f->fs->len;
                    if (fe->create_durable_on_sync)
                        forget_create(fe, f->fs->path);
                }
                fe->mutations++;
            }
        }
    }
    pthread_mutex_unlock(&fe->mu);
    return rc;
}

static int fe_close(env_file *ef)
{
    ffile *f = (ffile *)ef;
    fault_env *fe = f->fe;
    pthread_mutex_lock(&fe->mu);
    fe->c.ops[FAULT_OP_CLOSE]++;
    int dead = f->gen != fe->gen;
    pthread_mutex_unlock(&fe->mu);
    int rc = env_close(f->inner);
    free(f);
    return dead ? KV_EIO : rc;
}

/* ---- env functions -------------------------------------------------------------------------- */

static int fe_open_writable(const kv_env *env, const char *path, env_file **out)
{
    fault_env *fe = fe_of(env);
    *out = NULL;
    char *np = norm_path(path);
    pthread_mutex_lock(&fe->mu);
    int rc = check_mutation(fe, FAULT_OP_OPEN_WRITABLE);
    if (rc == 0) {
        int existed = exists(np);
        uint64_t old_size = file_bytes(np);
        env_file *inner = NULL;
        rc = fe->posix->open_writable(fe->posix, path, &inner);
        if (rc == 0) {
            fe->mutations++;
            if (!existed)
                add_pending(fe, PEND_CREATE, np);
            fstate *fs = find_live(fe, np);
            if (existed)
                free_blocks(fe, np, fs, old_size);
            if (fs)
                fs->len = fs->durable = 0;
            else
                fs = add_fstate(fe, np, 0, 0);
            rc = wrap(fe, inner, fs, out);
        }
    }
    pthread_mutex_unlock(&fe->mu);
    free(np);
    return rc;
}

static int fe_open_appendable(const kv_env *env, const char *path, env_file **out)
{
    fault_env *fe = fe_of(env);
    *out = NULL;
    char *np = norm_path(path);
    pthread_mutex_lock(&fe->mu);
    int rc = check_mutation(fe, FAULT_OP_OPEN_APPENDABLE);
    if (rc == 0) {
        int existed = exists(np);
        env_file *inner = NULL;
        rc = fe->posix->open_appendable(fe->posix, path, &inner);
        if (rc == 0) {
            fe->mutations++;
            if (!existed)
                add_pending(fe, PEND_CREATE, np);
            fstate *fs = find_live(fe, np);
            if (!fs) {
                struct stat st;
                uint64_t sz = stat(np, &st) == 0 ? (uint64_t)st.st_size : 0;
                /* Bytes already there when we first see the file are durable. */
                fs = add_fstate(fe, np, sz, existed ? sz : 0);
            }
            rc = wrap(fe, inner, fs, out);
        }
    }
    pthread_mutex_unlock(&fe->mu);
    free(np);
    return rc;
}

static int fe_open_readable(const kv_env *env, const char *path, env_file **out)
{
    fault_env *fe = fe_of(env);
    *out = NULL;
    pthread_mutex_lock(&fe->mu);
    int rc = check_rule(fe, FAULT_OP_OPEN_READABLE);
    pthread_mutex_unlock(&fe->mu);
    if (rc)
        return rc;
    env_file *inner = NULL;
    rc = fe->posix->open_readable(fe->posix, path, &inner);
    if (rc)
        return rc;
    pthread_mutex_lock(&fe->mu);
    rc = wrap(fe, inner, NULL, out);
    pthread_mutex_unlock(&fe->mu);
    return rc;
}

static int fe_file_size(const kv_env *env, const char *path, uint64_t *size)
{
    fault_env *fe = fe_of(env);
    return fe->posix->file_size(fe->posix, path, size);
}

static int fe_rename(const kv_env *env, const char *from, const char *to)
{
    fault_env *fe = fe_of(env);
    char *nf = norm_path(from), *nt = norm_path(to);
    pthread_mutex_lock(&fe->mu);
    int rc = check_mutation(fe, FAULT_OP_RENAME);
    if (rc == 0) {
        char *saved = NULL;
        size_t saved_len = 0;
        int had_old = exists(nt);
        uint64_t old_size = file_bytes(nt);
        int saved_ok = had_old ? save_durable(fe, nt, &saved, &saved_len) : 1;
        rc = fe->posix->rename(fe->posix, from, to);
        if (rc == 0) {
            fe->mutations++;
            pending *p = add_pending(fe, PEND_RENAME, nf);
            free(p->dir);
            p->dir = dir_of(nt);
            p->to = xstrdup(nt);
            p->had_old = had_old;
            p->saved_ok = saved_ok;
            p->saved = saved;
            p->saved_len = saved_len;
            fstate *old = find_live(fe, nt);
            fstate *src = find_live(fe, nf);
            if (old && old != src)
                old->live = 0;
            if (had_old && strcmp(nf, nt) != 0)
                free_blocks(fe, nt, old && old != src ? old : NULL, old_size);
            if (src) {
                free(src->path);
                src->path = xstrdup(nt);
            }
        } else {
            free(saved);
        }
    }
    pthread_mutex_unlock(&fe->mu);
    free(nf);
    free(nt);
    return rc;
}

/* Index of path in the preallocated files, or nprealloc. mu held. */
static size_t find_prealloc(fault_env *fe, const char *normed)
{
    size_t i = 0;
    while (i < fe->nprealloc && strcmp(fe->prealloc_path[i], normed) != 0)
        i++;
    return i;
}

/* Drops normed from the preallocated files, adding what preallocate counted for it to
 * *counted. mu held. */
static void forget_prealloc(fault_env *fe, const char *normed, uint64_t *counted)
{
    size_t i = find_prealloc(fe, normed);
    if (i == fe->nprealloc)
        return;
    *counted += fe->prealloc_counted[i];
    free(fe->prealloc_path[i]);
    fe->nprealloc--;
    fe->prealloc_path[i] = fe->prealloc_path[fe->nprealloc];
    fe->prealloc_counted[i] = fe->prealloc_counted[fe->nprealloc];
}

static int fe_preallocate(const kv_env *env, const char *path, uint64_t bytes)
{
    fault_env *fe = fe_of(env);
    char *np = norm_path(path);
    pthread_mutex_lock(&fe->mu);
    int rc = check_mutation(fe, FAULT_OP_PREALLOCATE);
    size_t i = find_prealloc(fe, np);
    uint64_t have = file_bytes(np);
    uint64_t add = bytes > have ? bytes - have : 0;
    if (rc == 0 && fe->space_limit != UINT64_MAX &&
        (fe->space_used + add > fe->space_limit || fe->space_used + add < fe->space_used)) {
        fe->c.faults_injected++;
        rc = KV_ENOSPC;
    }
    if (rc == 0)
        rc = fe->posix->preallocate(fe->posix, path, bytes);
    if (rc == 0) {
        fe->mutations++;
        if (fe->space_limit == UINT64_MAX)
            add = 0;
        fe->space_used += add;
        if (i == fe->nprealloc) {
            char **pp = realloc(fe->prealloc_path, (i + 1) * sizeof(*pp));
            if (pp)
                fe->prealloc_path = pp;
            uint64_t *pb = realloc(fe->prealloc_counted, (i + 1) * sizeof(*pb));
            if (pb)
                fe->prealloc_counted = pb;
            if (!pp || !pb)
                abort();
            fe->prealloc_path[i] = xstrdup(np);
            fe->prealloc_counted[i] = 0;
            fe->nprealloc++;
        }
        fe->prealloc_counted[i] += add;
    }
    pthread_mutex_unlock(&fe->mu);
    free(np);
    return rc;
}

static int fe_free_space(const kv_env *env, const char *path, uint64_t *avail, uint64_t *total)
{
    fault_env *fe = fe_of(env);
    int rc = fe->posix->free_space(fe->posix, path, avail, total);
    pthread_mutex_lock(&fe->mu);
    if (rc == 0 && fe->space_limit != UINT64_MAX)
        *avail = fe->space_used < fe->space_limit ? fe->space_limit - fe->space_used : 0;
    pthread_mutex_unlock(&fe->mu);
    return rc;
}

static int fe_unlink(const kv_env *env, const char *path)
{
    fault_env *fe = fe_of(env);
    char *np = norm_path(path);
    pthread_mutex_lock(&fe->mu);
    int rc = check_mutation(fe, FAULT_OP_UNLINK);
    if (rc == 0) {
        char *saved = NULL;
        size_t saved_len = 0;
        int saved_ok = exists(np) && save_durable(fe, np, &saved, &saved_len);
        uint64_t old_size = file_bytes(np);
        rc = fe->posix->unlink(fe->posix, path);
        if (rc == 0) {
            fe->mutations++;
            pending *p = add_pending(fe, PEND_UNLINK, np);
            p->had_old = 1;
            p->saved_ok = saved_ok;
            p->saved = saved;
            p->saved_len = saved_len;
            fstate *fs = find_live(fe, np);
            if (fs)
                fs->live = 0;
            free_blocks(fe, np, fs, old_size);
        } else {
            free(saved);
        }
    }
    pthread_mutex_unlock(&fe->mu);
    free(np);
    return rc;
}

static int fe_mkdir(const kv_env *env, const char *path)
{
    fault_env *fe = fe_of(env);
    pthread_mutex_lock(&fe->mu);
    int rc = check_mutation(fe, FAULT_OP_MKDIR);
    if (rc == 0) {
        rc = fe->posix->mkdir(fe->posix, path);
        if (rc == 0)
            fe->mutations++;
    }
    pthread_mutex_unlock(&fe->mu);
    return rc;
}

static int fe_rmdir(const kv_env *env, const char *path)
{
    fault_env *fe = fe_of(env);
    pthread_mutex_lock(&fe->mu);
    int rc = check_mutation(fe, FAULT_OP_RMDIR);
    if (rc == 0) {
        rc = fe->posix->rmdir(fe->posix, path);
        if (rc == 0)
            fe->mutations++;
    }
    pthread_mutex_unlock(&fe->mu);
    return rc;
}

static int fe_sync_dir(const kv_env *env, const char *path)
{
    fault_env *fe = fe_of(env);
    char *nd = norm_path(path);
    pthread_mutex_lock(&fe->mu);
    int rc = check_mutation(fe, FAULT_OP_SYNC_DIR);
    if (rc == 0) {
        rc = fe->posix->sync_dir(fe->posix, path);
        if (rc == 0) {
            fe->mutations++;
            size_t o = 0;
            for (size_t i = 0; i < fe->npend; i++) {
                if (strcmp(fe->pend[i].dir, nd) == 0)
                    free_pending(&fe->pend[i]);
                else
                    fe->pend[o++] = fe->pend[i];
            }
            fe->npend = o;
        }
    }
    pthread_mutex_unlock(&fe->mu);
    free(nd);
    return rc;
}

static int fe_list_dir(const kv_env *env, const char *path, char ***names, size_t *n)
{
    fault_env *fe = fe_of(env);
    pthread_mutex_lock(&fe->mu);
    int rc = check_rule(fe, FAULT_OP_LIST_DIR);
    pthread_mutex_unlock(&fe->mu);
    if (rc) {
        *names = NULL;
        *n = 0;
        return rc;
    }
    return fe->posix->list_dir(fe->posix, path, names, n);
}

static int fe_lock(const kv_env *env, const char *path, env_lock **out)
{
    fault_env *fe = fe_of(env);
    return fe->posix->lock(fe->posix, path, out);
}

static int fe_unlock(env_lock *l)
{
    return env_posix()->unlock(l);
}

static uint64_t fe_now_micros(const kv_env *env)
{
    fault_env *fe = fe_of(env);
    return fe->posix->now_micros(fe->posix);
}

static void fe_sleep_micros(const kv_env *env, uint64_t us)
{
    fault_env *fe = fe_of(env);
    fe->posix->sleep_micros(fe->posix, us);
}

/* ---- public API ------------------------------------------------------------------------------ */

fault_env *fault_env_new(uint64_t seed)
{
    fault_env *fe = calloc(1, sizeof(*fe));
    if (!fe)
        return NULL;
    fe->posix = env_posix();
    pthread_mutex_init(&fe->mu, NULL);
    tu_rng_init(&fe->rng, seed);
    fe->space_limit = UINT64_MAX;
    fe->gen = 1;
    fe->env.open_writable = fe_open_writable;
    fe->env.open_appendable = fe_open_appendable;
    fe->env.open_readable = fe_open_readable;
    fe->env.pread = fe_pread;
    fe->env.append = fe_append;
    fe->env.sync = fe_sync;
    fe->env.close = fe_close;
    fe->env.file_size = fe_file_size;
    fe->env.rename = fe_rename;
    fe->env.unlink = fe_unlink;
    fe->env.mkdir = fe_mkdir;
    fe->env.rmdir = fe_rmdir;
    fe->env.sync_dir = fe_sync_dir;
    fe->env.list_dir = fe_list_dir;
    fe->env.lock = fe_lock;
    fe->env.unlock = fe_unlock;
    fe->env.now_micros = fe_now_micros;
    fe->env.sleep_micros = fe_sleep_micros;
    fe->env.preallocate = fe_preallocate;
    fe->env.free_space = fe_free_space;
    fe->env.ctx = fe;
    return fe;
}

static void drop_tracking(fault_env *fe)
{
    for (size_t i = 0; i < fe->nfiles; i++) {
        free(fe->files[i]->path);
        free(fe->files[i]);
    }
    fe->nfiles = 0;
    for (size_t i = 0; i < fe->npend; i++)
        free_pending(&fe->pend[i]);
    fe->npend = 0;
}

void fault_env_free(fault_env *fe)
{
    if (!fe)
        return;
    drop_tracking(fe);
    free(fe->files);
    free(fe->pend);
    for (size_t i = 0; i < fe->nprealloc; i++)
        free(fe->prealloc_path[i]);
    free(fe->prealloc_path);
    free(fe->prealloc_counted);
    pthread_mutex_destroy(&fe->mu);
    free(fe);
}

const kv_env *fault_env_env(fault_env *fe)
{
    return &fe->env;
}

/* Names kept by a crash (a small set: the pending operations since the last sync_dir). */
typedef struct pinned {
    char **names;
    size_t n, cap;
} pinned;

static int pinned_has(const pinned *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->names[i], name) == 0)
            return 1;
    return 0;
}

static void pinned_add(pinned *p, const char *name)
{
    if (pinned_has(p, name))
        return;
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        char **nn = realloc(p->names, p->cap * sizeof(*nn));
        if (!nn)
            abort();
        p->names = nn;
    }
    p->names[p->n++] = xstrdup(name);
}

static void pinned_free(pinned *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->names[i]);
    free(p->names);
}

/* Zeroes bytes [from, to) of the file at path. Returns 0 or -1. */
static int zero_range(const char *path, uint64_t from, uint64_t to)
{
    static const char zeros[FAULT_PAGE_SIZE];
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    int rc = 0;
    while (from < to && rc == 0) {
        size_t n = to - from < sizeof(zeros) ? (size_t)(to - from) : sizeof(zeros);
        ssize_t w = pwrite(fd, zeros, n, (off_t)from);
        if (w <= 0)
            rc = -1;
        else
            from += (uint64_t)w;
    }
    if (close(fd) != 0)
        rc = -1;
    return rc;
}

/* Leaves of fs's unsynced tail what a crash in `mode` keeps (fs->len > fs->durable). mu held.
 * Returns 0, or -1 if the file could not be rewritten. */
static int crash_file(fault_env *fe, fstate *fs, enum fault_crash_mode mode)
{
    if (mode == FAULT_CRASH_MIXED)
        mode = (enum fault_crash_mode)tu_rng_below(&fe->rng, 3);
    uint64_t unsynced = fs->len - fs->durable;
    uint64_t keep = fs->durable;
    if (mode != FAULT_CRASH_DROP_UNSYNCED)
        keep += tu_rng_below(&fe->rng, unsynced + 1);
    struct stat st;
    if (stat(fs->path, &st) != 0)
        return 0; /* gone (renamed over by an untracked name): nothing to cut */
    if ((uint64_t)st.st_size > keep && truncate(fs->path, (off_t)keep) != 0)
        return -1;
    int cut = keep < fs->len;
    if (mode != FAULT_CRASH_LOSE_PAGES) {
        fe->c.files_cut += cut;
        return 0;
    }
    /* Each page holding unsynced bytes was written back, or not (then its unsynced bytes read
     * as zeros: the page as the last sync left it). */
    for (uint64_t page = fs->durable / FAULT_PAGE_SIZE * FAULT_PAGE_SIZE; page < keep;
         page += FAULT_PAGE_SIZE) {
        if (tu_rng_chance(&fe->rng, 1, 2))
            continue;
        uint64_t from = page > fs->durable ? page : fs->durable;
        uint64_t to = page + FAULT_PAGE_SIZE < keep ? page + FAULT_PAGE_SIZE : keep;
        if (zero_range(fs->path, from, to) != 0)
            return -1;
        fe->c.pages_lost++;
        cut = 1;
    }
    fe->c.files_cut += cut;
    return 0;
}

int fault_env_crash(fault_env *fe, enum fault_crash_mode mode)
{
    int rc = 0;
    /* KV_FAULT_ENV_VERBOSE=1 says what each crash undoes, to explain a lost file. */
    const char *ve = getenv("KV_FAULT_ENV_VERBOSE");
    int verbose = ve && *ve && *ve != '0';
    pthread_mutex_lock(&fe->mu);
    fe->c.crashes++;
    /* 1. Cut every live file back to what reached the platter. */
    for (size_t i = 0; i < fe->nfiles; i++) {
        fstate *fs = fe->files[i];
        if (fs->live && fs->len > fs->durable && crash_file(fe, fs, mode) != 0)
            rc = -1;
    }
    /* 2. Undo directory operations that no sync_dir made durable, newest first (or, with
     * random dir ops, some of them, keeping each name's operations in order). */
    pinned pins = {NULL, 0, 0};
    for (size_t i = fe->npend; i-- > 0;) {
        pending *p = &fe->pend[i];
        int keep = pinned_has(&pins, p->path) || (p->to && pinned_has(&pins, p->to)) ||
                   (p->kind == PEND_RENAME && p->had_old && !p->saved_ok) ||
                   (fe->random_dir_ops && tu_rng_chance(&fe->rng, 1, 2));
        if (keep) {
            /* Kept: what came before it on its names must stay too. */
            pinned_add(&pins, p->path);
            if (p->to)
                pinned_add(&pins, p->to);
            fe->c.dir_ops_kept++;
            if (verbose)
                fprintf(stderr, "fault_env: crash keeps %s %s%s%s (never dir-synced)\n",
                        p->kind == PEND_CREATE   ? "create"
                        : p->kind == PEND_RENAME ? "rename"
                                                 : "unlink",
                        p->path, p->to ? " -> " : "", p->to ? p->to : "");
            continue;
        }
        fe->c.dir_ops_undone++;
        switch (p->kind) {
        case PEND_CREATE: {
            struct stat st;
            if (verbose && stat(p->path, &st) == 0)
                fprintf(stderr,
                        "fault_env: crash removes %s (%lld bytes): created, never dir-synced\n",
                        p->path, (long long)st.st_size);
            if (unlink(p->path) != 0 && errno != ENOENT)
                rc = -1;
            break;
        }
        case PEND_RENAME:
            if (verbose)
                fprintf(stderr, "fault_env: crash undoes rename %s -> %s (never dir-synced)\n",
                        p->path, p->to);
            if (exists(p->to) && rename(p->to, p->path) != 0)
                rc = -1;
            if (p->had_old && write_whole(p->to, p->saved, p->saved_len) != 0)
                rc = -1;
            break;
        case PEND_UNLINK:
            if (verbose && p->saved_ok)
                fprintf(stderr, "fault_env: crash brings back %s (unlink never dir-synced)\n",
                        p->path);
            if (p->saved_ok && write_whole(p->path, p->saved, p->saved_len) != 0)
                rc = -1;
            break;
        }
    }
    pinned_free(&pins);
    /* 3. What is on disk now is all durable; old handles are dead. */
    drop_tracking(fe);
    fe->gen++;
    fe->halt_armed = fe->halted = 0;
    memset(fe->rules, 0, sizeof(fe->rules));
    pthread_mutex_unlock(&fe->mu);
    return rc;
}

void fault_env_fail_op(fault_env *fe, enum fault_op op, uint64_t nth, uint64_t count, int err)
{
    assert(op < FAULT_OP_COUNT && nth >= 1);
    pthread_mutex_lock(&fe->mu);
    fault_rule *r = &fe->rules[op];
    r->active = 1;
    r->base = fe->c.ops[op];
    r->nth = nth;
    r->count = count;
    r->err = err;
    pthread_mutex_unlock(&fe->mu);
}

void fault_env_clear_rules(fault_env *fe)
{
    pthread_mutex_lock(&fe->mu);
    memset(fe->rules, 0, sizeof(fe->rules));
    pthread_mutex_unlock(&fe->mu);
}

void fault_env_set_space_limit(fault_env *fe, uint64_t bytes)
{
    pthread_mutex_lock(&fe->mu);
    fe->space_limit = bytes;
    fe->space_used = 0;
    for (size_t i = 0; i < fe->nfiles; i++)
        fe->files[i]->counted = 0;
    for (size_t i = 0; i < fe->nprealloc; i++)
        fe->prealloc_counted[i] = 0;
    pthread_mutex_unlock(&fe->mu);
}

void fault_env_halt_after(fault_env *fe, uint64_t n)
{
    pthread_mutex_lock(&fe->mu);
    fe->halt_armed = 1;
    fe->halt_at = fe->mutations + n;
    if (n == 0)
        fe->halted = 1;
    pthread_mutex_unlock(&fe->mu);
}

void fault_env_halt(fault_env *fe)
{
    fault_env_halt_after(fe, 0);
}

int fault_env_halted(fault_env *fe)
{
    pthread_mutex_lock(&fe->mu);
    int h = fe->halted || (fe->halt_armed && fe->mutations >= fe->halt_at);
    pthread_mutex_unlock(&fe->mu);
    return h;
}

void fault_env_set_random_dir_ops(fault_env *fe, int on)
{
    pthread_mutex_lock(&fe->mu);
    fe->random_dir_ops = on;
    pthread_mutex_unlock(&fe->mu);
}

void fault_env_set_create_durable_on_sync(fault_env *fe, int on)
{
    pthread_mutex_lock(&fe->mu);
    fe->create_durable_on_sync = on;
    pthread_mutex_unlock(&fe->mu);
}

int fault_env_flip_bit(fault_env *fe, const char *path, uint64_t offset, int bit)
{
    (void)fe;
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return -1;
    unsigned char b;
    int rc = -1;
    if (pread(fd, &b, 1, (off_t)offset) == 1) {
        b ^= (unsigned char)(1u << (bit & 7));
        if (pwrite(fd, &b, 1, (off_t)offset) == 1)
            rc = 0;
    }
    close(fd);
    return rc;
}

void fault_env_get_counters(fault_env *fe, fault_env_counters *c)
{
    pthread_mutex_lock(&fe->mu);
    *c = fe->c;
    pthread_mutex_unlock(&fe->mu);
}

uint64_t fault_env_mutations(fault_env *fe)
{
    pthread_mutex_lock(&fe->mu);
    uint64_t m = fe->mutations;
    pthread_mutex_unlock(&fe->mu);
    return m;
}

int64_t fault_env_durable_size(fault_env *fe, const char *path)
{
    char *np = norm_path(path);
    pthread_mutex_lock(&fe->mu);
    fstate *fs = find_live(fe, np);
    int64_t r = fs ? (int64_t)fs->durable : -1;
    pthread_mutex_unlock(&fe->mu);
    free(np);
    return r;
}
