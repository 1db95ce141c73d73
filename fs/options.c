/* options.c - the kvfs mount command line (see options.h). */
#include "options.h"
#include "fslog.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    KEY_FOREGROUND,
    KEY_DEBUG,
    KEY_RO,
    KEY_HELP,
    KEY_VERSION,
    KEY_DISCARD,
    KEY_NODEFPERM,
};

#define MOPT(t, m)                                                                                 \
    {                                                                                              \
        t, offsetof(struct mount_opts, m), 1                                                       \
    }

static const struct fuse_opt mount_optspec[] = {
    MOPT("sync=%s", sync),
    MOPT("attr_timeout=%lf", attr_timeout),
    MOPT("entry_timeout=%lf", entry_timeout),
    MOPT("negative_timeout=%lf", negative_timeout),
    MOPT("cache_size=%s", cache_size),
    MOPT("chunk_cache_size=%s", chunk_cache_size),
    MOPT("dir_cache_size=%s", dir_cache_size),
    MOPT("memtable_size=%s", memtable_size),
    MOPT("reserve=%s", reserve),
    MOPT("log_level=%s", log_level),
    MOPT("writeback=%d", writeback),
    FUSE_OPT_KEY("-f", KEY_FOREGROUND),
    FUSE_OPT_KEY("foreground", KEY_FOREGROUND),
    FUSE_OPT_KEY("-d", KEY_DEBUG),
    FUSE_OPT_KEY("debug", KEY_DEBUG),
    FUSE_OPT_KEY("ro", KEY_RO),
    FUSE_OPT_KEY("-r", KEY_RO),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_KEY("default_permissions", KEY_DISCARD),
    FUSE_OPT_KEY("nodefault_permissions", KEY_NODEFPERM),
    /* fstab/mount(8) options with no meaning for a FUSE daemon, or which libfuse rejects */
    FUSE_OPT_KEY("defaults", KEY_DISCARD),
    FUSE_OPT_KEY("auto", KEY_DISCARD),
    FUSE_OPT_KEY("noauto", KEY_DISCARD),
    FUSE_OPT_KEY("user", KEY_DISCARD),
    FUSE_OPT_KEY("users", KEY_DISCARD),
    FUSE_OPT_KEY("nouser", KEY_DISCARD),
    FUSE_OPT_KEY("owner", KEY_DISCARD),
    FUSE_OPT_KEY("group", KEY_DISCARD),
    FUSE_OPT_KEY("nofail", KEY_DISCARD),
    FUSE_OPT_KEY("_netdev", KEY_DISCARD),
    FUSE_OPT_KEY("nonempty", KEY_DISCARD),
    FUSE_OPT_KEY("relatime", KEY_DISCARD),
    FUSE_OPT_KEY("norelatime", KEY_DISCARD),
    FUSE_OPT_KEY("strictatime", KEY_DISCARD),
    FUSE_OPT_KEY("nostrictatime", KEY_DISCARD),
    FUSE_OPT_KEY("lazytime", KEY_DISCARD),
    FUSE_OPT_KEY("nolazytime", KEY_DISCARD),
    FUSE_OPT_KEY("diratime", KEY_DISCARD),
    FUSE_OPT_KEY("nodiratime", KEY_DISCARD),
    FUSE_OPT_KEY("iversion", KEY_DISCARD),
    FUSE_OPT_KEY("noiversion", KEY_DISCARD),
    FUSE_OPT_KEY("comment=", KEY_DISCARD),
    FUSE_OPT_END,
};

static int mount_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    struct mount_opts *o = data;

    switch (key) {
    case FUSE_OPT_KEY_NONOPT:
        if (!o->store) {
            o->store = strdup(arg);
            return 0;
        }
        if (!o->mountpoint) {
            o->mountpoint = strdup(arg);
            return 0;
        }
        fprintf(stderr, "kvfs: unexpected argument '%s'\n", arg);
        return -1;
    case FUSE_OPT_KEY_OPT:
        if (strncmp(arg, "x-", 2) == 0)
            return 0; /* x-systemd.* and friends: for other programs */
        return 1;     /* libfuse's (rw, suid, dev, allow_other, ...) */
    case KEY_FOREGROUND:
        o->foreground = 1;
        return 0;
    case KEY_DEBUG:
        o->debug = o->foreground = 1;
        return 0;
    case KEY_RO:
        o->read_only = 1;
        return 1; /* libfuse mounts read-only too */
    case KEY_HELP:
        o->help = 1;
        return 0;
    case KEY_VERSION:
        o->version = 1;
        return 0;
    case KEY_NODEFPERM:
        o->no_default_permissions = 1;
        return 0;
    case KEY_DISCARD:
    default:
        return 0;
    }
}

int mount_opts_parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    int shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10, end++;
        break;
    case 'm':
    case 'M':
        shift = 20, end++;
        break;
    case 'g':
    case 'G':
        shift = 30, end++;
        break;
    default:
        break;
    }
    if (*s == '-' || v > (SIZE_MAX >> shift))
        return -1; /* strtoull takes "-1" as 2^64-1; a size that does not fit is no size */
    v <<= shift;
    if (*end == 'i' || *end == 'B')
        end++;
    if (*end == 'B')
        end++;
    if (*end)
        return -1;
    *out = (size_t)v;
    return 0;
}

int mount_opts_parse_log_level(const char *s)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return FS_LOG_WARN;
    return -1;
}

int mount_opts_parse(struct fuse_args *args, struct mount_opts *o)
{
    memset(o, 0, sizeof *o);
    o->attr_timeout = o->entry_timeout = o->negative_timeout = 1.0;
    o->writeback = 1;
    return fuse_opt_parse(args, o, mount_optspec, mount_opt_proc) != 0 ? -1 : 0;
}

int mount_opts_check(const struct mount_opts *o)
{
    int level = FS_LOG_WARN;
    if (o->log_level) {
        level = mount_opts_parse_log_level(o->log_level);
        if (level < 0) {
            fprintf(stderr, "kvfs: bad log_level '%s'\n", o->log_level);
            return -1;
        }
    }
    /* !(x >= 0) also refuses NaN, which "%lf" accepts. */
    if (!(o->attr_timeout >= 0) || !(o->entry_timeout >= 0) || !(o->negative_timeout >= 0)) {
        fprintf(stderr, "kvfs: timeouts must not be negative\n");
        return -1;
    }
    if (o->writeback != 0 && o->writeback != 1) {
        fprintf(stderr, "kvfs: bad writeback=%d (0 or 1)\n", o->writeback);
        return -1;
    }
    return level;
}

/* Parses the size option `name` into *out if given; min is the smallest value accepted. */
static int apply_size(const char *name, const char *text, size_t min, size_t *out)
{
    size_t sz;
    if (!text)
        return 0;
    if (mount_opts_parse_size(text, &sz) != 0 || sz < min) {
        fprintf(stderr, "kvfs: bad %s '%s'\n", name, text);
        return -1;
    }
    *out = sz;
    return 0;
}

int mount_opts_apply(const struct mount_opts *o, kv_options *ko, struct fs_config *cfg,
                     struct fs_ll *ll)
{
    size_t reserve = (size_t)ko->reserve_bytes;
    memset(cfg, 0, sizeof *cfg);
    memset(ll, 0, sizeof *ll);
    ko->read_only = o->read_only;
    if (apply_size("cache_size", o->cache_size, 0, &ko->block_cache_bytes) != 0 ||
        apply_size("memtable_size", o->memtable_size, 65536, &ko->memtable_bytes) != 0 ||
        apply_size("reserve", o->reserve, 0, &reserve) != 0 ||
        apply_size("chunk_cache_size", o->chunk_cache_size, 0, &cfg->chunk_cache_bytes) != 0 ||
        apply_size("dir_cache_size", o->dir_cache_size, 0, &cfg->dir_cache_bytes) != 0)
        return -1;
    if (o->chunk_cache_size && cfg->chunk_cache_bytes == 0)
        cfg->chunk_cache_bytes = FS_CONFIG_NO_CHUNK_CACHE;
    if (o->dir_cache_size && cfg->dir_cache_bytes == 0)
        cfg->dir_cache_bytes = FS_CONFIG_NO_DIR_CACHE;
    ko->reserve_bytes = reserve;
    ll->writeback = o->writeback != 0;
    if (!o->sync || strcmp(o->sync, "request") == 0) {
        ko->sync_mode = KV_SYNC_ON_REQUEST;
    } else if (strcmp(o->sync, "never") == 0) {
        ko->sync_mode = KV_SYNC_NEVER;
    } else if (strcmp(o->sync, "always") == 0) {
        ko->sync_mode = KV_SYNC_ALWAYS;
        cfg->write_flags = KV_WRITE_SYNC;
        ll->writeback = 0; /* write(2) must reach the WAL before it returns */
    } else {
        fprintf(stderr, "kvfs: bad sync '%s' (never, request or always)\n", o->sync);
        return -1;
    }
    return 0;
}

void mount_opts_free(struct mount_opts *o)
{
    free(o->store);
    free(o->mountpoint);
    free(o->sync);
    free(o->cache_size);
    free(o->chunk_cache_size);
    free(o->dir_cache_size);
    free(o->memtable_size);
    free(o->reserve);
    free(o->log_level);
    memset(o, 0, sizeof *o);
}
