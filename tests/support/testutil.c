/* testutil.c - temp dirs, seeded PRNG and the sorted reference map shared by kvcore tests. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "kvcore/kv.h"

/* ---- Seeds and random numbers ------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t tu_seed(const char *what)
{
    uint64_t seed;
    const char *env = getenv("KV_SEED");
    if (env && *env) {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
        x ^= (uint64_t)getpid() << 32;
        seed = splitmix64(&x) % 1000000000000ULL; /* short enough to retype */
    }
    fprintf(stderr, "%s: seed=%" PRIu64 "; rerun with KV_SEED=%" PRIu64 "\n", what ? what : "test",
            seed, seed);
    return seed;
}

void tu_rng_init(tu_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t tu_rng_next(tu_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t tu_rng_below(tu_rng *r, uint64_t n)
{
    if (n == 0)
        return 0;
    /* Rejection sampling keeps the distribution exactly uniform. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = tu_rng_next(r);
    } while (x >= limit);
    return x % n;
}

int tu_rng_chance(tu_rng *r, unsigned num, unsigned den)
{
    return tu_rng_below(r, den) < num;
}

void tu_rng_fill(tu_rng *r, void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        uint64_t x = tu_rng_next(r);
        size_t k = n < 8 ? n : 8;
        memcpy(p, &x, k);
        p += k;
        n -= k;
    }
}

uint64_t tu_env_u64(const char *name, uint64_t def)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    return (*end == '\0' && v > 0) ? (uint64_t)v : def;
}

double tu_test_seconds(const char *name, double def)
{
    const char *names[2] = {name, "KV_TEST_SECONDS"};
    for (int i = 0; i < 2; i++) {
        const char *s = names[i] ? getenv(names[i]) : NULL;
        if (!s || !*s)
            continue;
        char *end;
        double v = strtod(s, &end);
        if (*end == '\0' && v > 0)
            return v;
    }
    return def;
}

/* ---- Files and directories --------------------------------------------------------------- */

static int mkdir_p(const char *path)
{
    char tmp[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

char *tu_tempdir(const char *tag)
{
    const char *base = getenv("KV_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    if (mkdir_p(base) != 0)
        return NULL;
    size_t n = strlen(base) + strlen(tag) + 32;
    char *path = malloc(n);
    if (!path)
        return NULL;
    snprintf(path, n, "%s/%s.XXXXXX", base, tag);
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

int tu_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        size_t n = strlen(path) + strlen(de->d_name) + 2;
        char *child = malloc(n);
        if (!child) {
            rc = -1;
            break;
        }
        snprintf(child, n, "%s/%s", path, de->d_name);
        if (tu_rmtree(child) != 0)
            rc = -1;
        free(child);
    }
    closedir(d);
    if (rmdir(path) != 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the sorted names of the regular files in dir into a malloc'd array. */
static int list_files(const char *dir, char ***names_out, size_t *n_out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*names));
            if (!nn)
                abort();
            names = nn;
        }
        names[n] = strdup(de->d_name);
        if (!names[n])
            abort();
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), cmp_names);
    *names_out = names;
    *n_out = n;
    return 0;
}

char *tu_dir_fingerprint(const char *dir)
{
    char **names;
    size_t n;
    if (list_files(dir, &names, &n) != 0)
        return NULL;
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    if (!out)
        abort();
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat st;
        char line[512];
        if (lstat(path, &st) != 0) {
            snprintf(line, sizeof(line), "%s <vanished>\n", names[i]);
        } else if (!S_ISREG(st.st_mode)) {
            snprintf(line, sizeof(line), "%s <mode %o>\n", names[i], (unsigned)st.st_mode);
        } else {
            XXH64_state_t *h = XXH64_createState();
            XXH64_reset(h, 0);
            int fd = open(path, O_RDONLY);
            if (fd >= 0) {
                char buf[65536];
                ssize_t r;
                while ((r = read(fd, buf, sizeof(buf))) > 0)
                    XXH64_update(h, buf, (size_t)r);
                close(fd);
            }
            snprintf(line, sizeof(line), "%s %lld %016llx\n", names[i], (long long)st.st_size,
                     (unsigned long long)XXH64_digest(h));
            XXH64_freeState(h);
        }
        size_t ll = strlen(line);
        while (len + ll + 1 > cap) {
            cap *= 2;
            out = realloc(out, cap);
            if (!out)
                abort();
        }
        memcpy(out + len, line, ll + 1);
        len += ll;
        free(names[i]);
    }
    free(names);
    return out;
}

int tu_dir_find_suffix(const char *dir, const char *suffix, char *out, size_t n)
{
    char **names;
    size_t cnt;
    int found = 0;
    if (list_files(dir, &names, &cnt) != 0)
        return 0;
    size_t sl = strlen(suffix);
    for (size_t i = 0; i < cnt; i++) {
        size_t nl = strlen(names[i]);
        if (!found && nl >= sl && strcmp(names[i] + nl - sl, suffix) == 0) {
            found = 1;
            if (out)
                snprintf(out, n, "%s", names[i]);
        }
        free(names[i]);
    }
    free(names);
    return found;
}

int tu_dir_count_suffix(const char *dir, const char *suffix)
{
    char **names;
    size_t cnt;
    if (list_files(dir, &names, &cnt) != 0)
        return -1;
    size_t sl = strlen(suffix);
    int n = 0;
    for (size_t i = 0; i < cnt; i++) {
        char path[4096];
        struct stat st;
        size_t nl = strlen(names[i]);
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (nl >= sl && strcmp(names[i] + nl - sl, suffix) == 0 && lstat(path, &st) == 0 &&
            S_ISREG(st.st_mode))
            n++;
        free(names[i]);
    }
    free(names);
    return n;
}

/* ---- Captured log ------------------------------------------------------------------------ */

void tu_logbuf_init(tu_logbuf *lb)
{
    pthread_mutex_init(&lb->mu, NULL);
    lb->len = 0;
    lb->text[0] = '\0';
}

void tu_logbuf_destroy(tu_logbuf *lb)
{
    pthread_mutex_destroy(&lb->mu);
}

void tu_quiet_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level <= KV_LOG_WARN && getenv("KV_TEST_VERBOSE"))
        fprintf(stderr, "kvcore: %s\n", msg);
}

void tu_logbuf_fn(void *ctx, int level, const char *msg)
{
    tu_logbuf *lb = ctx;
    pthread_mutex_lock(&lb->mu);
    size_t room = sizeof(lb->text) - lb->len;
    int n = snprintf(lb->text + lb->len, room, "%d %s\n", level, msg);
    if (n > 0 && (size_t)n < room)
        lb->len += (size_t)n;
    else
        lb->text[lb->len] = '\0'; /* a line that does not fit is dropped whole */
    pthread_mutex_unlock(&lb->mu);
}

void tu_logbuf_reset(tu_logbuf *lb)
{
    pthread_mutex_lock(&lb->mu);
    lb->len = 0;
    lb->text[0] = '\0';
    pthread_mutex_unlock(&lb->mu);
}

int tu_logbuf_contains(tu_logbuf *lb, const char *needle)
{
    pthread_mutex_lock(&lb->mu);
    int found = strstr(lb->text, needle) != NULL;
    pthread_mutex_unlock(&lb->mu);
    return found;
}

/* ---- Reference map ----------------------------------------------------------------------- */

int tu_keycmp(const void *a, size_t al, const void *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int r = n ? memcmp(a, b, n) : 0;
    if (r == 0)
        r = (al < bl) ? -1 : (al > bl);
    return r;
}

static char *dup_bytes(const void *p, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        abort();
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

void tu_model_init(tu_model *m)
{
    m->e = NULL;
    m->n = m->cap = 0;
}

void tu_model_free(tu_model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].key);
        free(m->e[i].val);
    }
    free(m->e);
    tu_model_init(m);
}

size_t tu_model_lower_bound(const tu_model *m, const void *k, size_t kl)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tu_keycmp(m->e[mid].key, m->e[mid].klen, k, kl) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t tu_model_floor(const tu_model *m, const void *k, size_t kl)
{
    size_t i = tu_model_lower_bound(m, k, kl);
    if (i < m->n && tu_keycmp(m->e[i].key, m->e[i].klen, k, kl) == 0)
        return i;
    return i == 0 ? (size_t)-1 : i - 1;
}

void tu_model_put(tu_model *m, const void *k, size_t kl, const void *v, size_t vl)
{
    size_t i = tu_model_lower_bound(m, k, kl);
    if (i < m->n && tu_keycmp(m->e[i].key, m->e[i].klen, k, kl) == 0) {
        free(m->e[i].val);
        m->e[i].val = dup_bytes(v, vl);
        m->e[i].vlen = vl;
        return;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        tu_entry *ne = realloc(m->e, m->cap * sizeof(*ne));
        if (!ne)
            abort();
        m->e = ne;
    }
    memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof(*m->e));
    m->e[i].key = dup_bytes(k, kl);
    m->e[i].klen = kl;
    m->e[i].val = dup_bytes(v, vl);
    m->e[i].vlen = vl;
    m->n++;
}

int tu_model_delete(tu_model *m, const void *k, size_t kl)
{
    size_t i = tu_model_lower_bound(m, k, kl);
    if (i >= m->n || tu_keycmp(m->e[i].key, m->e[i].klen, k, kl) != 0)
        return 0;
    free(m->e[i].key);
    free(m->e[i].val);
    memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof(*m->e));
    m->n--;
    return 1;
}

const tu_entry *tu_model_get(const tu_model *m, const void *k, size_t kl)
{
    size_t i = tu_model_lower_bound(m, k, kl);
    if (i < m->n && tu_keycmp(m->e[i].key, m->e[i].klen, k, kl) == 0)
        return &m->e[i];
    return NULL;
}

void tu_model_clone(tu_model *dst, const tu_model *src)
{
    dst->n = src->n;
    dst->cap = src->n ? src->n : 1;
    dst->e = malloc(dst->cap * sizeof(*dst->e));
    if (!dst->e)
        abort();
    for (size_t i = 0; i < src->n; i++) {
        dst->e[i].key = dup_bytes(src->e[i].key, src->e[i].klen);
        dst->e[i].klen = src->e[i].klen;
        dst->e[i].val = dup_bytes(src->e[i].val, src->e[i].vlen);
        dst->e[i].vlen = src->e[i].vlen;
    }
}

int tu_model_equal(const tu_model *a, const tu_model *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        if (a->e[i].klen != b->e[i].klen || a->e[i].vlen != b->e[i].vlen)
            return 0;
        if (memcmp(a->e[i].key, b->e[i].key, a->e[i].klen) != 0 ||
            memcmp(a->e[i].val, b->e[i].val, a->e[i].vlen) != 0)
            return 0;
    }
    return 1;
}
