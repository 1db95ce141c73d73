/* schema.c - encoding and validation of kvfs keys and values. See fs/SCHEMA.md. */
#include "schema.h"

#include "fslog.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

size_t fs_key_super(uint8_t *buf)
{
    buf[0] = FS_KEY_SUPER;
    return 1;
}

size_t fs_key_prefix(uint8_t *buf, char type, uint64_t ino)
{
    buf[0] = (uint8_t)type;
    fs_put_be64(buf + 1, ino);
    return 9;
}

size_t fs_key_inode(uint8_t *buf, uint64_t ino)
{
    return fs_key_prefix(buf, FS_KEY_INODE, ino);
}

size_t fs_key_orphan(uint8_t *buf, uint64_t ino)
{
    return fs_key_prefix(buf, FS_KEY_ORPHAN, ino);
}

static size_t key_named(uint8_t *buf, char type, uint64_t ino, const char *name, size_t nlen)
{
    if (nlen > FS_NAME_MAX)
        nlen = FS_NAME_MAX; /* cannot happen: callers check; never overflow buf */
    fs_key_prefix(buf, type, ino);
    if (nlen)
        memcpy(buf + 9, name, nlen);
    return 9 + nlen;
}

size_t fs_key_dirent(uint8_t *buf, uint64_t parent, const char *name, size_t nlen)
{
    return key_named(buf, FS_KEY_DIRENT, parent, name, nlen);
}

size_t fs_key_xattr(uint8_t *buf, uint64_t ino, const char *name, size_t nlen)
{
    return key_named(buf, FS_KEY_XATTR, ino, name, nlen);
}

size_t fs_key_chunk(uint8_t *buf, uint64_t ino, uint64_t index)
{
    fs_key_prefix(buf, FS_KEY_CHUNK, ino);
    fs_put_be64(buf + 9, index);
    return 17;
}

int fs_key_parse_ino(const uint8_t *key, size_t klen, char type, uint64_t *ino)
{
    if (klen != 9 || key[0] != (uint8_t)type) {
        fs_log(FS_LOG_ERROR, "key of type '%c': length %zu: expected 9", type, klen);
        return -EIO;
    }
    *ino = fs_get_be64(key + 1);
    return 0;
}

int fs_key_parse_chunk(const uint8_t *key, size_t klen, uint64_t *ino, uint64_t *index)
{
    if (klen != 17 || key[0] != FS_KEY_CHUNK) {
        fs_log(FS_LOG_ERROR, "chunk key: length %zu: expected 17", klen);
        return -EIO;
    }
    *ino = fs_get_be64(key + 1);
    *index = fs_get_be64(key + 9);
    return 0;
}

int fs_key_parse_named(const uint8_t *key, size_t klen, char type, uint64_t *ino, const char **name,
                       size_t *nlen)
{
    if (klen < 10 || klen > 9 + FS_NAME_MAX || key[0] != (uint8_t)type) {
        fs_log(FS_LOG_ERROR, "key of type '%c': length %zu outside 10..%u", type, klen,
               9 + FS_NAME_MAX);
        return -EIO;
    }
    *ino = fs_get_be64(key + 1);
    *name = (const char *)key + 9;
    *nlen = klen - 9;
    return 0;
}

/* ---- Superblock --------------------------------------------------------------------------- */

void fs_super_encode(const struct fs_super *sb, uint8_t *out)
{
    memset(out, 0, FS_SUPER_LEN);
    fs_put_be32(out + 0, FS_MAGIC);
    fs_put_be32(out + 4, sb->version);
    fs_put_be32(out + 8, sb->chunk_size);
    fs_put_be32(out + 12, sb->flags);
    fs_put_be64(out + 16, sb->ino_limit);
    memcpy(out + 24, sb->uuid, 16);
    fs_put_be64(out + 40, sb->created_ns);
}

int fs_super_decode(const void *val, size_t len, struct fs_super *sb)
{
    const uint8_t *p = val;

    if (len < 8 || fs_get_be32(p) != FS_MAGIC) {
        fs_log(FS_LOG_ERROR, "superblock: bad magic or length %zu", len);
        return -EIO;
    }
    sb->version = fs_get_be32(p + 4);
    if (sb->version > FS_FORMAT_VERSION) {
        fs_log(FS_LOG_ERROR, "superblock: format version %u is newer than this kvfs (%u)",
               sb->version, FS_FORMAT_VERSION);
        return -EPROTO;
    }
    if (sb->version != FS_FORMAT_VERSION || len != FS_SUPER_LEN) {
        fs_log(FS_LOG_ERROR, "superblock: version %u, length %zu: expected %u, %u", sb->version,
               len, FS_FORMAT_VERSION, FS_SUPER_LEN);
        return -EIO;
    }
    sb->chunk_size = fs_get_be32(p + 8);
    sb->flags = fs_get_be32(p + 12);
    sb->ino_limit = fs_get_be64(p + 16);
    memcpy(sb->uuid, p + 24, 16);
    sb->created_ns = fs_get_be64(p + 40);
    if (sb->chunk_size < FS_MIN_CHUNK_SIZE || sb->chunk_size > FS_MAX_CHUNK_SIZE ||
        (sb->chunk_size & (sb->chunk_size - 1)) != 0) {
        fs_log(FS_LOG_ERROR, "superblock: chunk size %u is not a power of two in %u..%u",
               sb->chunk_size, FS_MIN_CHUNK_SIZE, FS_MAX_CHUNK_SIZE);
        return -EIO;
    }
    if (sb->flags != 0) {
        fs_log(FS_LOG_ERROR, "superblock: unknown flags 0x%x", sb->flags);
        return -EIO;
    }
    if (sb->ino_limit < FS_FIRST_INO || sb->ino_limit > (UINT64_MAX >> 1)) {
        fs_log(FS_LOG_ERROR, "superblock: inode limit %llu out of range",
               (unsigned long long)sb->ino_limit);
        return -EIO;
    }
    return 0;
}

/* ---- Inodes ------------------------------------------------------------------------------- */

static void put_time(uint8_t *sec, uint8_t *nsec, const struct timespec *ts)
{
    fs_put_be64(sec, (uint64_t)(int64_t)ts->tv_sec);
    fs_put_be32(nsec, (uint32_t)ts->tv_nsec);
}

static int get_time(const uint8_t *sec, const uint8_t *nsec, struct timespec *ts)
{
    uint32_t ns = fs_get_be32(nsec);

    ts->tv_sec = (time_t)(int64_t)fs_get_be64(sec);
    ts->tv_nsec = (long)ns;
    return ns < 1000000000u ? 0 : -1;
}

uint8_t *fs_inode_encode(const struct fs_inode *in, const void *tail, size_t tail_len,
                         size_t *out_len)
{
    uint8_t *p = calloc(1, FS_INODE_HDR_LEN + tail_len + 1);

    if (!p)
        return NULL;
    p[0] = FS_INODE_VERSION;
    p[1] = (uint8_t)in->flags;
    fs_put_be32(p + 4, in->mode);
    fs_put_be32(p + 8, in->uid);
    fs_put_be32(p + 12, in->gid);
    fs_put_be32(p + 16, in->nlink);
    fs_put_be64(p + 24, in->size);
    fs_put_be64(p + 32, in->rdev);
    fs_put_be64(p + 40, in->generation);
    fs_put_be64(p + 48, in->parent);
    fs_put_be64(p + 56, in->stored);
    put_time(p + 64, p + 88, &in->atime);
    put_time(p + 72, p + 92, &in->mtime);
    put_time(p + 80, p + 96, &in->ctime);
    if (tail_len)
        memcpy(p + FS_INODE_HDR_LEN, tail, tail_len);
    *out_len = FS_INODE_HDR_LEN + tail_len;
    return p;
}

static int inode_bad(uint64_t num, const char *what)
{
    fs_log(FS_LOG_ERROR, "inode %llu: %s", (unsigned long long)num, what);
    return -EIO;
}

int fs_inode_decode(uint64_t num, const void *val, size_t len, struct fs_inode *in,
                    const uint8_t **tail, size_t *tail_len)
{
    const uint8_t *p = val;
    size_t tl;

    if (len < FS_INODE_HDR_LEN)
        return inode_bad(num, "value shorter than the 104-byte header");
    if (p[0] != FS_INODE_VERSION)
        return inode_bad(num, "unknown inode version");
    memset(in, 0, sizeof *in);
    in->ino = num;
    in->flags = p[1];
    in->mode = fs_get_be32(p + 4);
    in->uid = fs_get_be32(p + 8);
    in->gid = fs_get_be32(p + 12);
    in->nlink = fs_get_be32(p + 16);
    in->size = fs_get_be64(p + 24);
    in->rdev = fs_get_be64(p + 32);
    in->generation = fs_get_be64(p + 40);
    in->parent = fs_get_be64(p + 48);
    in->stored = fs_get_be64(p + 56);
    if (get_time(p + 64, p + 88, &in->atime) || get_time(p + 72, p + 92, &in->mtime) ||
        get_time(p + 80, p + 96, &in->ctime))
        return inode_bad(num, "timestamp nanoseconds >= 1e9");
    if ((in->flags & ~FS_INODE_FLAGS_KNOWN) || p[2] || p[3])
        return inode_bad(num, "unknown flags");
    if (fs_mode_to_dtype(in->mode) == DT_UNKNOWN || (in->mode & ~(uint32_t)(S_IFMT | 07777)))
        return inode_bad(num, "invalid file type in mode");
    if ((int64_t)in->size < 0)
        return inode_bad(num, "size above 2^63");
    tl = len - FS_INODE_HDR_LEN;
    if (S_ISLNK(in->mode)) {
        if (tl == 0 || tl > FS_SYMLINK_MAX || tl != in->size)
            return inode_bad(num, "symlink target length disagrees with size");
    } else if (tl != 0) {
        return inode_bad(num, "trailing bytes after the header of a non-symlink");
    }
    if (S_ISDIR(in->mode) && in->parent == 0)
        return inode_bad(num, "directory without a parent");
    if (tail)
        *tail = p + FS_INODE_HDR_LEN;
    if (tail_len)
        *tail_len = tl;
    return 0;
}

/* ---- Directory entries -------------------------------------------------------------------- */

static int valid_dtype(uint8_t t)
{
    return t == DT_REG || t == DT_DIR || t == DT_LNK || t == DT_CHR || t == DT_BLK ||
           t == DT_FIFO || t == DT_SOCK;
}

void fs_dirent_encode(uint64_t child, uint8_t dtype, uint8_t out[FS_DIRENT_LEN])
{
    fs_put_be64(out, child);
    out[8] = dtype;
}

int fs_dirent_decode(const void *val, size_t len, uint64_t *child, uint8_t *dtype)
{
    const uint8_t *p = val;

    if (len != FS_DIRENT_LEN) {
        fs_log(FS_LOG_ERROR, "dirent: value length %zu, expected %u", len, FS_DIRENT_LEN);
        return -EIO;
    }
    *child = fs_get_be64(p);
    *dtype = p[8];
    if (*child == 0 || !valid_dtype(*dtype)) {
        fs_log(FS_LOG_ERROR, "dirent: child %llu type %u invalid", (unsigned long long)*child,
               *dtype);
        return -EIO;
    }
    return 0;
}

uint8_t fs_mode_to_dtype(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG:
        return DT_REG;
    case S_IFDIR:
        return DT_DIR;
    case S_IFLNK:
        return DT_LNK;
    case S_IFCHR:
        return DT_CHR;
    case S_IFBLK:
        return DT_BLK;
    case S_IFIFO:
        return DT_FIFO;
    case S_IFSOCK:
        return DT_SOCK;
    default:
        return DT_UNKNOWN;
    }
}
