/* filename.c - names of the files in a store directory, their parsing, and CURRENT. */
#include "db/filename.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kvcore/kv.h"
#include "util/env.h"

static char *numbered_name(char *out, size_t n, const char *dir, uint64_t number,
                           const char *suffix)
{
    snprintf(out, n, "%s/%06" PRIu64 ".%s", dir, number, suffix);
    return out;
}

char *filename_log(char *out, size_t n, const char *dir, uint64_t number)
{
    return numbered_name(out, n, dir, number, "log");
}

char *filename_table(char *out, size_t n, const char *dir, uint64_t number)
{
    return numbered_name(out, n, dir, number, "sst");
}

char *filename_temp(char *out, size_t n, const char *dir, uint64_t number)
{
    return numbered_name(out, n, dir, number, "tmp");
}

char *filename_manifest(char *out, size_t n, const char *dir, uint64_t number)
{
    snprintf(out, n, "%s/MANIFEST-%06" PRIu64, dir, number);
    return out;
}

char *filename_current(char *out, size_t n, const char *dir)
{
    snprintf(out, n, "%s/CURRENT", dir);
    return out;
}

char *filename_lock(char *out, size_t n, const char *dir)
{
    snprintf(out, n, "%s/LOCK", dir);
    return out;
}

char *filename_vlog(char *out, size_t n, const char *dir, uint64_t number)
{
    return numbered_name(out, n, dir, number, "vlog");
}

char *filename_vlog_marker(char *out, size_t n, const char *dir)
{
    snprintf(out, n, "%s/VLOG", dir);
    return out;
}

/* Parses a run of decimal digits filling the whole of [p, p+len); 0 if empty, not all digits,
 * or above UINT64_MAX. */
static int parse_number(const char *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

int filename_parse(const char *name, enum filename_type *type, uint64_t *number)
{
    static const char manifest_prefix[] = "MANIFEST-";
    size_t len = strlen(name);

    if (strcmp(name, "CURRENT") == 0) {
        *type = FILE_TYPE_CURRENT;
        *number = 0;
        return 1;
    }
    if (strcmp(name, "LOCK") == 0) {
        *type = FILE_TYPE_LOCK;
        *number = 0;
        return 1;
    }
    if (strcmp(name, "VLOG") == 0) {
        *type = FILE_TYPE_VLOG_MARKER;
        *number = 0;
        return 1;
    }
    if (strncmp(name, manifest_prefix, sizeof manifest_prefix - 1) == 0) {
        size_t plen = sizeof manifest_prefix - 1;
        if (!parse_number(name + plen, len - plen, number))
            return 0;
        *type = FILE_TYPE_MANIFEST;
        return 1;
    }
    const char *dot = strrchr(name, '.');
    if (dot == NULL)
        return 0;
    uint64_t num;
    if (!parse_number(name, (size_t)(dot - name), &num))
        return 0;
    const char *suffix = dot + 1;
    if (strcmp(suffix, "log") == 0)
        *type = FILE_TYPE_LOG;
    else if (strcmp(suffix, "sst") == 0)
        *type = FILE_TYPE_TABLE;
    else if (strcmp(suffix, "tmp") == 0)
        *type = FILE_TYPE_TEMP;
    else if (strcmp(suffix, "vlog") == 0)
        *type = FILE_TYPE_VLOG;
    else
        return 0;
    *number = num;
    return 1;
}

int filename_set_current(const struct kv_env *env, const char *dir, uint64_t manifest_number)
{
    size_t n = strlen(dir) + FILENAME_MAX_LEN;
    char tmp[n], cur[n], contents[FILENAME_MAX_LEN];
    int len = snprintf(contents, sizeof contents, "MANIFEST-%06" PRIu64 "\n", manifest_number);
    env_file *f = NULL;

    /* The temp file carries the manifest's own number: numbers are never reused, so no table
     * or other temp file can have this name. */
    filename_temp(tmp, n, dir, manifest_number);
    filename_current(cur, n, dir);
    int rc = env->open_writable(env, tmp, &f);
    if (rc)
        return rc;
    rc = env_append(f, contents, (size_t)len);
    if (rc == 0)
        rc = env_sync(f);
    int crc = env_close(f);
    if (rc == 0)
        rc = crc;
    if (rc == 0)
        rc = env->rename(env, tmp, cur);
    if (rc) {
        env->unlink(env, tmp);
        return rc;
    }
    return env->sync_dir(env, dir);
}
