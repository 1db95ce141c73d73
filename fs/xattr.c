/* xattr.c - extended attributes (key X ino name), and the virtual kvfs.stats attribute. */
#include "fs_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

static int check_xname(const char *name, size_t *nlen)
{
    size_t n = strnlen(name, FS_NAME_MAX + 1);
    if (n == 0 || n > FS_NAME_MAX)
        return -ERANGE;
    *nlen = n;
    return 0;
}

/* POSIX ACLs are not supported: storing them as plain bytes would let a tool believe that
 * setting an access ACL changed the mode (cp -a does exactly that), so they fail like on a
 * filesystem mounted without ACL support and callers fall back to chmod. */
static int is_posix_acl(const char *name)
{
    return strcmp(name, "system.posix_acl_access") == 0 ||
           strcmp(name, "system.posix_acl_default") == 0;
}

int fs_setxattr(struct fs *fs, uint64_t ino, const char *name, const void *value, size_t size,
                int flags)
{
    uint8_t key[FS_KEY_MAX];
    struct fs_inode in;
    struct timespec now;
    char *tail = NULL;
    size_t nlen, klen, tlen = 0, ovl;
    void *old;
    kv_batch *b;
    int rc;

    FS_ROFS_CHECK(fs);
    rc = check_xname(name, &nlen);
    if (rc)
        return rc;
    if (size > FS_XATTR_SIZE_MAX)
        return -E2BIG;
    if (strcmp(name, FS_STATS_XATTR) == 0)
        return -EPERM;
    if (is_posix_acl(name))
        return -EOPNOTSUPP;
    if (flags & ~(XATTR_CREATE | XATTR_REPLACE))
        return -EINVAL;
    b = kv_batch_new();
    if (!b)
        return -ENOMEM;
    fs_now(&now);
    klen = fs_key_xattr(key, ino, name, nlen);
    fs_lock_ino(fs, ino);
    rc = fs_inode_load(fs, NULL, ino, &in, &tail, &tlen);
    if (rc)
        goto out;
    rc = kv_get(fs->db, NULL, key, klen, &old, &ovl);
    if (rc == 0) {
        kv_free(old);
        if (flags & XATTR_CREATE) {
            rc = -EEXIST;
            goto out;
        }
    } else if (rc == KV_ENOTFOUND) {
        if (flags & XATTR_REPLACE) {
            rc = -ENODATA;
            goto out;
        }
    } else {
        rc = fs_kv_errno(rc);
        goto out;
    }
    in.ctime = now;
    in.flags |= FS_INODE_F_XATTR; /* lets reclaim skip the X scan of inodes that never had any */
    rc = fs_kv_errno(kv_batch_put(b, key, klen, value ? value : "", size));
    if (rc == 0)
        rc = fs_batch_put_inode(b, &in, tail, tlen);
    if (rc == 0)
        rc = fs_commit(fs, b);
out:
    fs_unlock_ino(fs, ino);
    kv_batch_free(b);
    free(tail);
    return rc;
}

static ssize_t copy_out(const void *val, size_t vlen, void *buf, size_t size)
{
    if (size == 0)
        return (ssize_t)vlen;
    if (vlen > size)
        return -ERANGE;
    memcpy(buf, val, vlen);
    return (ssize_t)vlen;
}

ssize_t fs_getxattr(struct fs *fs, uint64_t ino, const char *name, void *buf, size_t size)
{
    uint8_t key[FS_KEY_MAX];
    struct fs_inode in;
    size_t nlen, klen, vlen;
    void *val;
    ssize_t n;
    int rc = check_xname(name, &nlen);

    if (rc)
        return rc;
    if (is_posix_acl(name))
        return -EOPNOTSUPP;
    if (ino == FS_ROOT_INO && strcmp(name, FS_STATS_XATTR) == 0) {
        char *text = fs_format_stats(fs->db);
        if (!text)
            return -ENOMEM;
        n = copy_out(text, strlen(text), buf, size);
        free(text);
        return n;
    }
    /* The inode first: it tells a missing inode (-ENOENT) from a missing attribute, and most
     * inodes never had an xattr (no flag; fsck holds every xattr to its inode's flag), so the
     * kernel's security.capability query before each write costs one lookup, not two. */
    rc = fs_inode_load(fs, NULL, ino, &in, NULL, NULL);
    if (rc)
        return rc;
    if (!(in.flags & FS_INODE_F_XATTR))
        return -ENODATA;
    klen = fs_key_xattr(key, ino, name, nlen);
    rc = kv_get(fs->db, NULL, key, klen, &val, &vlen);
    if (rc == KV_ENOTFOUND)
        return -ENODATA;
    if (rc)
        return fs_kv_errno(rc);
    n = copy_out(val, vlen, buf, size);
    kv_free(val);
    return n;
}

ssize_t fs_listxattr(struct fs *fs, uint64_t ino, char *buf, size_t size)
{
    uint8_t prefix[FS_KEY_MAX];
    size_t plen = fs_key_prefix(prefix, FS_KEY_XATTR, ino), total = 0;
    struct fs_inode in;
    kv_iter *it;
    int rc = fs_inode_load(fs, NULL, ino, &in, NULL, NULL);

    if (rc)
        return rc;
    it = kv_iter_new(fs->db, NULL);
    if (!it)
        return -ENOMEM;
    for (kv_iter_seek(it, prefix, plen); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, nlen;
        const uint8_t *k = kv_iter_key(it, &kl);
        const char *name;
        uint64_t kino;
        if (kl < plen || memcmp(k, prefix, plen) != 0)
            break;
        rc = fs_key_parse_named(k, kl, FS_KEY_XATTR, &kino, &name, &nlen);
        if (rc)
            break;
        if (size) {
            if (total + nlen + 1 > size) {
                rc = -ERANGE;
                break;
            }
            memcpy(buf + total, name, nlen);
            buf[total + nlen] = '\0';
        }
        total += nlen + 1;
    }
    if (rc == 0)
        rc = fs_kv_errno(kv_iter_status(it));
    kv_iter_free(it);
    return rc ? rc : (ssize_t)total;
}

int fs_removexattr(struct fs *fs, uint64_t ino, const char *name)
{
    uint8_t key[FS_KEY_MAX];
    struct fs_inode in;
    struct timespec now;
    char *tail = NULL;
    size_t nlen, klen, tlen = 0, vl;
    void *val;
    kv_batch *b;
    int rc;

    FS_ROFS_CHECK(fs);
    rc = check_xname(name, &nlen);
    if (rc)
        return rc;
    b = kv_batch_new();
    if (!b)
        return -ENOMEM;
    fs_now(&now);
    klen = fs_key_xattr(key, ino, name, nlen);
    fs_lock_ino(fs, ino);
    rc = fs_inode_load(fs, NULL, ino, &in, &tail, &tlen);
    if (rc)
        goto out;
    rc = kv_get(fs->db, NULL, key, klen, &val, &vl);
    if (rc) {
        rc = rc == KV_ENOTFOUND ? -ENODATA : fs_kv_errno(rc);
        goto out;
    }
    kv_free(val);
    in.ctime = now;
    rc = fs_kv_errno(kv_batch_delete(b, key, klen));
    if (rc == 0)
        rc = fs_batch_put_inode(b, &in, tail, tlen);
    if (rc == 0)
        rc = fs_commit_freeing(fs, b);
out:
    fs_unlock_ino(fs, ino);
    kv_batch_free(b);
    free(tail);
    return rc;
}

char *fs_format_stats(kv_db *db)
{
    kv_stats st;
    char *text = NULL;
    size_t len = 0;
    FILE *f;
    uint64_t lsm = 0;
    int rc = kv_get_stats(db, &st);

    if (rc)
        return NULL;
    f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fprintf(f, "%-6s %10s %16s\n", "level", "files", "bytes");
    for (int i = 0; i < KV_MAX_LEVELS; i++) {
        fprintf(f, "L%-5d %10" PRIu64 " %16" PRIu64 "\n", i, st.level_files[i], st.level_bytes[i]);
        lsm += st.level_bytes[i];
    }
    fprintf(f, "%-28s %16" PRIu64 "\n", "memtable bytes", st.memtable_bytes);
    fprintf(f, "%-28s %16" PRIu64 "\n", "immutable memtables", st.immutable_memtables);
    fprintf(f, "%-28s %16" PRIu64 "\n", "total sst bytes", st.total_sst_bytes);
    fprintf(f, "%-28s %16" PRIu64 "\n", "pending compaction bytes", st.pending_compaction_bytes);
    fprintf(f, "%-28s %16" PRIu64 "\n", "user bytes written", st.user_bytes_written);
    fprintf(f, "%-28s %16" PRIu64 "\n", "wal bytes written", st.wal_bytes_written);
    fprintf(f, "%-28s %16" PRIu64 "\n", "flush bytes written", st.flush_bytes_written);
    fprintf(f, "%-28s %16" PRIu64 "\n", "compaction bytes written", st.compaction_bytes_written);
    fprintf(f, "%-28s %16" PRIu64 "\n", "compaction bytes read", st.compaction_bytes_read);
    if (st.user_bytes_written)
        fprintf(
            f, "%-28s %16.2f\n", "write amplification",
            (double)(st.wal_bytes_written + st.flush_bytes_written + st.compaction_bytes_written) /
                (double)st.user_bytes_written);
    (void)lsm;
    fprintf(f, "%-28s %16" PRIu64 "\n", "block cache hits", st.block_cache_hits);
    fprintf(f, "%-28s %16" PRIu64 "\n", "block cache misses", st.block_cache_misses);
    if (st.block_cache_hits + st.block_cache_misses)
        fprintf(f, "%-28s %15.1f%%\n", "block cache hit rate",
                100.0 * (double)st.block_cache_hits /
                    (double)(st.block_cache_hits + st.block_cache_misses));
    fprintf(f, "%-28s %16" PRIu64 "\n", "block cache bytes", st.block_cache_bytes);
    fprintf(f, "%-28s %16" PRIu64 "\n", "bloom filter useful", st.bloom_useful);
    fprintf(f, "%-28s %16" PRIu64 "\n", "wal syncs", st.wal_syncs);
    fprintf(f, "%-28s %16" PRIu64 "\n", "flushes", st.flushes);
    fprintf(f, "%-28s %16" PRIu64 "\n", "compactions", st.compactions);
    fprintf(f, "%-28s %16" PRIu64 "\n", "stall micros", st.stall_micros);
    fprintf(f, "%-28s %16" PRIu64 "\n", "slowdowns", st.slowdowns);
    fprintf(f, "%-28s %16" PRIu64 "\n", "stops", st.stops);
    fprintf(f, "%-28s %16" PRIu64 "\n", "live snapshots", st.live_snapshots);
    fprintf(f, "%-28s %16" PRIu64 "\n", "last sequence", st.last_sequence);
    fprintf(f, "%-28s %16" PRIu64 "\n", "open table files", st.table_cache_open_files);
    fprintf(f, "%-28s %16" PRIu64 "\n", "background errors", st.background_errors);
    fprintf(f, "%-28s %16" PRIu64 "\n", "low-space mode", st.low_space);
    fprintf(f, "%-28s %16" PRIu64 "\n", "space reserve bytes", st.reserve_bytes);
    fprintf(f, "%-28s %16" PRIu64 "\n", "space reserve releases", st.reserve_releases);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log segments", st.vlog_segments);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log bytes", st.vlog_bytes);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log garbage bytes", st.vlog_garbage_bytes);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log bytes written", st.vlog_bytes_written);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log gc runs", st.vlog_gc_runs);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log gc bytes moved", st.vlog_gc_bytes_moved);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log gc deleted", st.vlog_gc_segments_deleted);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log open files", st.vlog_open_segments);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log held segments", st.vlog_held_segments);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log held bytes", st.vlog_held_bytes);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log held seconds", st.vlog_held_seconds);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log damaged segments", st.vlog_damaged_segments);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log stalls", st.vlog_stalls);
    fprintf(f, "%-28s %16" PRIu64 "\n", "value log stall micros", st.vlog_stall_micros);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
