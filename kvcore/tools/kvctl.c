/* kvctl.c - command-line access to a kvcore store: get, put, delete, scan, stats, check, compact.
 *
 * Uses only the public kv.h. Keys and values are given and printed as text in which a
 * backslash escapes: "\xNN" is the byte 0xNN, "\\" a backslash; on output every byte that is
 * not printable ASCII (and the backslash) is written escaped, so output can be pasted back.
 * Exit status: 0 success, 1 not found or an engine error, 2 bad usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvcore/kv.h"

#define EXIT_USAGE 2

static const char *prog = "kvctl";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s STORE COMMAND [ARGS]\n"
            "commands:\n"
            "  get KEY                      print KEY's value\n"
            "  put KEY VALUE                set KEY to VALUE (creates the store if missing)\n"
            "  delete KEY                   remove KEY\n"
            "  scan [FROM [TO]] [--limit N] print keys in [FROM, TO) with their values\n"
            "  stats                        print the engine's statistics\n"
            "  check                        verify every checksum in the store (offline)\n"
            "  compact                      compact the whole key range\n"
            "Keys and values are text; \\xNN is the byte 0xNN and \\\\ a backslash.\n",
            prog);
}

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the escaped text s into a malloc'd buffer. Returns NULL (after a message) if s has
 * a malformed escape or memory runs out. */
static char *unescape(const char *s, size_t *len)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (!out) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            out[o++] = s[i];
            continue;
        }
        if (s[i + 1] == '\\') {
            out[o++] = '\\';
            i++;
        } else if (s[i + 1] == 'x' && hex_digit((unsigned char)s[i + 2]) >= 0 &&
                   hex_digit((unsigned char)s[i + 3]) >= 0) {
            out[o++] = (char)(hex_digit((unsigned char)s[i + 2]) * 16 +
                              hex_digit((unsigned char)s[i + 3]));
            i += 3;
        } else {
            fprintf(stderr, "%s: bad escape in \"%s\" at offset %zu (use \\xNN or \\\\)\n", prog, s,
                    i);
            free(out);
            return NULL;
        }
    }
    out[o] = '\0';
    *len = o;
    return out;
}

static void print_escaped(FILE *out, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\\')
            fputs("\\\\", out);
        else if (p[i] >= 0x20 && p[i] < 0x7f)
            fputc(p[i], out);
        else
            fprintf(out, "\\x%02x", p[i]);
    }
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, kv_strerror(rc));
    return 1;
}

static int open_store(const char *path, int writable, kv_db **db)
{
    kv_options opts;
    kv_options_init(&opts);
    opts.create_if_missing = writable;
    int rc = kv_open(path, &opts, db);
    if (rc) {
        fprintf(stderr, "%s: cannot open store %s: %s\n", prog, path, kv_strerror(rc));
        return 1;
    }
    return 0;
}

static int cmd_get(kv_db *db, const char *key_text)
{
    size_t klen, vlen;
    char *key = unescape(key_text, &klen);
    if (!key)
        return EXIT_USAGE;
    void *val;
    int rc = kv_get(db, NULL, key, klen, &val, &vlen);
    free(key);
    if (rc == KV_ENOTFOUND) {
        fprintf(stderr, "%s: %s: not found\n", prog, key_text);
        return 1;
    }
    if (rc)
        return fail("get", rc);
    print_escaped(stdout, val, vlen);
    putchar('\n');
    kv_free(val);
    return 0;
}

static int cmd_put(kv_db *db, const char *key_text, const char *val_text)
{
    size_t klen, vlen;
    char *key = unescape(key_text, &klen);
    char *val = key ? unescape(val_text, &vlen) : NULL;
    if (!val) {
        free(key);
        return EXIT_USAGE;
    }
    int rc = kv_put(db, key, klen, val, vlen, KV_WRITE_SYNC);
    free(key);
    free(val);
    return rc ? fail("put", rc) : 0;
}

static int cmd_delete(kv_db *db, const char *key_text)
{
    size_t klen;
    char *key = unescape(key_text, &klen);
    if (!key)
        return EXIT_USAGE;
    int rc = kv_delete(db, key, klen, KV_WRITE_SYNC);
    free(key);
    return rc ? fail("delete", rc) : 0;
}

static int bytes_less(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int r = n ? memcmp(a, b, n) : 0;
    return r < 0 || (r == 0 && alen < blen);
}

static int cmd_scan(kv_db *db, const char *from_text, const char *to_text, uint64_t limit)
{
    char *from = NULL, *to = NULL;
    size_t from_len = 0, to_len = 0;
    if (from_text && !(from = unescape(from_text, &from_len)))
        return EXIT_USAGE;
    if (to_text && !(to = unescape(to_text, &to_len))) {
        free(from);
        return EXIT_USAGE;
    }
    int ret = 0;
    kv_iter *it = kv_iter_new(db, NULL);
    if (!it) {
        ret = fail("scan", KV_ENOMEM);
        goto out;
    }
    if (from)
        kv_iter_seek(it, from, from_len);
    else
        kv_iter_seek_first(it);
    for (uint64_t n = 0; kv_iter_valid(it) && (limit == 0 || n < limit); n++) {
        size_t klen, vlen;
        const void *k = kv_iter_key(it, &klen);
        if (to && !bytes_less(k, klen, to, to_len))
            break;
        const void *v = kv_iter_value(it, &vlen);
        print_escaped(stdout, k, klen);
        fputc('\t', stdout);
        print_escaped(stdout, v, vlen);
        fputc('\n', stdout);
        kv_iter_next(it);
    }
    int rc = kv_iter_status(it);
    if (rc)
        ret = fail("scan", rc);
    kv_iter_free(it);
out:
    free(from);
    free(to);
    return ret;
}

static void print_stat(const char *name, uint64_t v)
{
    printf("  %-28s %20" PRIu64 "\n", name, v);
}

static int cmd_stats(kv_db *db)
{
    kv_stats st;
    int rc = kv_get_stats(db, &st);
    if (rc)
        return fail("stats", rc);
    printf("%-6s %10s %16s\n", "level", "files", "bytes");
    for (int i = 0; i < KV_MAX_LEVELS; i++)
        printf("L%-5d %10" PRIu64 " %16" PRIu64 "\n", i, st.level_files[i], st.level_bytes[i]);
    printf("\n");
    print_stat("memtable_bytes", st.memtable_bytes);
    print_stat("immutable_memtables", st.immutable_memtables);
    print_stat("pending_compaction_bytes", st.pending_compaction_bytes);
    print_stat("total_sst_bytes", st.total_sst_bytes);
    print_stat("block_cache_hits", st.block_cache_hits);
    print_stat("block_cache_misses", st.block_cache_misses);
    uint64_t lookups = st.block_cache_hits + st.block_cache_misses;
    if (lookups)
        printf("  %-28s %19.1f%%\n", "block_cache_hit_rate",
               100.0 * (double)st.block_cache_hits / (double)lookups);
    print_stat("block_cache_bytes", st.block_cache_bytes);
    print_stat("bloom_useful", st.bloom_useful);
    print_stat("user_bytes_written", st.user_bytes_written);
    print_stat("wal_bytes_written", st.wal_bytes_written);
    print_stat("flush_bytes_written", st.flush_bytes_written);
    print_stat("compaction_bytes_written", st.compaction_bytes_written);
    print_stat("compaction_bytes_read", st.compaction_bytes_read);
    if (st.user_bytes_written) {
        uint64_t disk = st.wal_bytes_written + st.flush_bytes_written + st.compaction_bytes_written;
        printf("  %-28s %20.2f\n", "write_amplification",
               (double)disk / (double)st.user_bytes_written);
    }
    print_stat("wal_syncs", st.wal_syncs);
    print_stat("flushes", st.flushes);
    print_stat("compactions", st.compactions);
    print_stat("stall_micros", st.stall_micros);
    print_stat("slowdowns", st.slowdowns);
    print_stat("stops", st.stops);
    print_stat("live_snapshots", st.live_snapshots);
    print_stat("last_sequence", st.last_sequence);
    print_stat("table_cache_open_files", st.table_cache_open_files);
    print_stat("background_errors", st.background_errors);
    print_stat("vlog_segments", st.vlog_segments);
    print_stat("vlog_bytes", st.vlog_bytes);
    print_stat("vlog_garbage_bytes", st.vlog_garbage_bytes);
    print_stat("vlog_bytes_written", st.vlog_bytes_written);
    print_stat("vlog_gc_runs", st.vlog_gc_runs);
    print_stat("vlog_gc_bytes_moved", st.vlog_gc_bytes_moved);
    print_stat("vlog_gc_segments_deleted", st.vlog_gc_segments_deleted);
    print_stat("vlog_open_segments", st.vlog_open_segments);
    print_stat("vlog_held_segments", st.vlog_held_segments);
    print_stat("vlog_held_bytes", st.vlog_held_bytes);
    print_stat("vlog_held_seconds", st.vlog_held_seconds);
    print_stat("vlog_damaged_segments", st.vlog_damaged_segments);
    print_stat("vlog_stalls", st.vlog_stalls);
    print_stat("vlog_stall_micros", st.vlog_stall_micros);
    return 0;
}

struct progress {
    int tty;
    time_t last;
    int shown; /* a progress line is on the terminal, not yet ended by a newline */
};

static void human_size(char *out, size_t n, uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void check_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct progress *p = ctx;
    if (!p->tty)
        return;
    time_t now = time(NULL);
    if (p->shown && now == p->last && done < total)
        return; /* at most one update a second, plus the final one */
    p->last = now;
    char d[32], t[32];
    human_size(d, sizeof d, done);
    human_size(t, sizeof t, total);
    double pct = total ? 100.0 * (double)done / (double)total : 100.0;
    fprintf(stderr, "\r\033[Kchecking: %s / %s (%.1f%%)", d, t, pct);
    fflush(stderr);
    p->shown = 1;
}

/* Diagnostics during check: end any progress line first so messages stay readable. */
static void check_log(void *ctx, int level, const char *msg)
{
    struct progress *p = ctx;
    if (p->shown) {
        fputs("\r\033[K", stderr);
        p->shown = 0;
    }
    static const char *const names[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "kvcore: %s: %s\n", level >= 0 && level <= 3 ? names[level] : "log", msg);
}

static int cmd_check(const char *path)
{
    struct progress p = {isatty(STDERR_FILENO), 0, 0};
    kv_options opts;
    kv_options_init(&opts);
    opts.create_if_missing = 0;
    opts.log_fn = check_log;
    opts.log_ctx = &p;
    uint64_t problems = 0;
    int rc = kv_check(path, &opts, check_progress, &p, &problems);
    if (p.shown)
        fputc('\n', stderr);
    if (rc == 0) {
        printf("%s: ok\n", path);
        return 0;
    }
    if (rc == KV_ECORRUPT) {
        printf("%s: %" PRIu64 " problem%s found\n", path, problems, problems == 1 ? "" : "s");
        return 1;
    }
    return fail("check", rc);
}

static int cmd_compact(kv_db *db)
{
    int rc = kv_compact_range(db, NULL, 0, NULL, 0);
    return rc ? fail("compact", rc) : 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return -1;
    *v = x;
    return 0;
}

static int run(const char *store, const char *cmd, int argc, char **argv)
{
    if (strcmp(cmd, "check") == 0) {
        if (argc != 0)
            goto bad;
        return cmd_check(store);
    }

    /* Gather scan's arguments before opening anything, so bad usage changes nothing. */
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    uint64_t limit = 0;
    int writable;
    if (strcmp(cmd, "get") == 0 && argc == 1) {
        writable = 0;
    } else if (strcmp(cmd, "put") == 0 && argc == 2) {
        writable = 1;
    } else if (strcmp(cmd, "delete") == 0 && argc == 1) {
        writable = 0;
    } else if (strcmp(cmd, "scan") == 0) {
        writable = 0;
        for (int i = 0; i < argc; i++) {
            if (strcmp(argv[i], "--limit") == 0) {
                if (i + 1 >= argc || parse_u64(argv[i + 1], &limit) != 0)
                    goto bad;
                i++;
            } else if (npos < 2) {
                pos[npos++] = argv[i];
            } else {
                goto bad;
            }
        }
    } else if ((strcmp(cmd, "stats") == 0 || strcmp(cmd, "compact") == 0) && argc == 0) {
        writable = 0;
    } else {
        goto bad;
    }

    kv_db *db;
    if (open_store(store, writable, &db))
        return 1;
    int ret;
    if (strcmp(cmd, "get") == 0)
        ret = cmd_get(db, argv[0]);
    else if (strcmp(cmd, "put") == 0)
        ret = cmd_put(db, argv[0], argv[1]);
    else if (strcmp(cmd, "delete") == 0)
        ret = cmd_delete(db, argv[0]);
    else if (strcmp(cmd, "scan") == 0)
        ret = cmd_scan(db, pos[0], pos[1], limit);
    else if (strcmp(cmd, "stats") == 0)
        ret = cmd_stats(db);
    else
        ret = cmd_compact(db);
    int rc = kv_close(db);
    if (rc && ret == 0)
        ret = fail("close", rc);
    if (fflush(stdout) != 0 && ret == 0) {
        fprintf(stderr, "%s: writing output: %s\n", prog, strerror(errno));
        ret = 1;
    }
    return ret;
bad:
    usage(stderr);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 3) {
        usage(stderr);
        return EXIT_USAGE;
    }
    return run(argv[1], argv[2], argc - 3, argv + 3);
}
