/* filename.h - names of the files in a store directory (listed in kvcore/FORMAT.md).
 *
 *   NNNNNN.log         write-ahead log          NNNNNN.sst   sorted string table
 *   MANIFEST-NNNNNN    version edits            CURRENT      names the live manifest
 *   LOCK               flock'd while open       NNNNNN.tmp   a file being written
 *   NNNNNN.vlog        value-log segment        VLOG         marks a store with a value log
 * NNNNNN is a decimal file number, zero-padded to at least 6 digits.
 */
#ifndef KV_FILENAME_H
#define KV_FILENAME_H

#include <stddef.h>
#include <stdint.h>

struct kv_env;

enum filename_type {
    FILE_TYPE_LOG,
    FILE_TYPE_TABLE,
    FILE_TYPE_MANIFEST,
    FILE_TYPE_CURRENT,
    FILE_TYPE_LOCK,
    FILE_TYPE_TEMP,
    FILE_TYPE_VLOG,        /* added: a value-log segment (db/vlog.h) */
    FILE_TYPE_VLOG_MARKER, /* added: the VLOG file */
};

/* Each writes "dir/name" into out (size n) and returns out; names are short, so
 * FILENAME_MAX_LEN bytes beyond strlen(dir) always suffice. */
#define FILENAME_MAX_LEN 64
char *filename_log(char *out, size_t n, const char *dir, uint64_t number);
char *filename_table(char *out, size_t n, const char *dir, uint64_t number);
char *filename_manifest(char *out, size_t n, const char *dir, uint64_t number);
char *filename_temp(char *out, size_t n, const char *dir, uint64_t number);
char *filename_current(char *out, size_t n, const char *dir);
char *filename_lock(char *out, size_t n, const char *dir);
char *filename_vlog(char *out, size_t n, const char *dir, uint64_t number);
char *filename_vlog_marker(char *out, size_t n, const char *dir);

/* Parses a bare file name (no directory). Returns 1 and fills type/number if it is one of
 * ours, else 0. */
int filename_parse(const char *name, enum filename_type *type, uint64_t *number);

/* Points CURRENT at MANIFEST-number atomically (temp file, sync, rename, sync of dir). */
int filename_set_current(const struct kv_env *env, const char *dir, uint64_t manifest_number);

#endif /* KV_FILENAME_H */
