/* schema.h - kvfs key schema: how superblock, inodes, dirents, chunks, xattrs and orphans are
 * encoded as kvcore keys and values. See fs/SCHEMA.md. on-disk: never change.
 *
 * Every integer in a key or value is big-endian (keys sort numerically under memcmp). Decoders
 * treat their input as untrusted: they check lengths, versions and field ranges, log what failed
 * (which key, which check) and return -EIO; they never read out of bounds.
 */
#ifndef KVFS_SCHEMA_H
#define KVFS_SCHEMA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- Constants (on-disk: never change) ---------------------------------------------------- */

#define FS_MAGIC 0x4b564653u /* "KVFS" */
#define FS_FORMAT_VERSION 1u
#define FS_DEFAULT_CHUNK_SIZE 65536u
#define FS_MIN_CHUNK_SIZE 4096u
#define FS_MAX_CHUNK_SIZE (1u << 20)
#define FS_ROOT_INO 1u
#define FS_FIRST_INO 2u      /* first number the allocator hands out */
#define FS_INO_RANGE 1024u   /* inode numbers reserved per superblock write */
#define FS_NAME_MAX 255u     /* bytes in one name (dirent or xattr) */
#define FS_SYMLINK_MAX 4095u /* bytes in a symlink target */
#define FS_XATTR_SIZE_MAX 65536u

#define FS_KEY_SUPER 'S'
#define FS_KEY_INODE 'I'
#define FS_KEY_DIRENT 'D'
#define FS_KEY_CHUNK 'C'
#define FS_KEY_XATTR 'X'
#define FS_KEY_ORPHAN 'O'

#define FS_SUPER_LEN 48u
#define FS_INODE_VERSION 1u
#define FS_INODE_HDR_LEN 104u
#define FS_INODE_F_XATTR 0x01u /* inode flag: it has (or once had) extended attributes */
#define FS_INODE_FLAGS_KNOWN FS_INODE_F_XATTR
#define FS_DIRENT_LEN 9u

/* Longest key the schema produces: prefix + ino + 255-byte name. */
#define FS_KEY_MAX (1 + 8 + FS_NAME_MAX)

/* ---- Big-endian coding -------------------------------------------------------------------- */

static inline void fs_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void fs_put_be64(uint8_t *p, uint64_t v)
{
    fs_put_be32(p, (uint32_t)(v >> 32));
    fs_put_be32(p + 4, (uint32_t)v);
}

static inline uint32_t fs_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t fs_get_be64(const uint8_t *p)
{
    return ((uint64_t)fs_get_be32(p) << 32) | fs_get_be32(p + 4);
}

/* ---- Keys --------------------------------------------------------------------------------- */

/* Each fs_key_* writes a key into buf (at least FS_KEY_MAX bytes) and returns its length. */
size_t fs_key_super(uint8_t *buf);
size_t fs_key_inode(uint8_t *buf, uint64_t ino);
/* name of nlen <= FS_NAME_MAX bytes; nlen 0 gives the prefix of every dirent of parent. */
size_t fs_key_dirent(uint8_t *buf, uint64_t parent, const char *name, size_t nlen);
size_t fs_key_chunk(uint8_t *buf, uint64_t ino, uint64_t index);
/* nlen 0 gives the prefix of every xattr of ino. */
size_t fs_key_xattr(uint8_t *buf, uint64_t ino, const char *name, size_t nlen);
size_t fs_key_orphan(uint8_t *buf, uint64_t ino);
/* The prefix shared by every key of `type` ('C', 'X', 'D') belonging to ino: 9 bytes. */
size_t fs_key_prefix(uint8_t *buf, char type, uint64_t ino);

/* Splits a key read from the store. Returns 0 and the fields, or -EIO (logged) if the key is
 * malformed. For 'D' and 'X' keys *name points into key (not NUL-terminated). */
int fs_key_parse_ino(const uint8_t *key, size_t klen, char type, uint64_t *ino);
int fs_key_parse_chunk(const uint8_t *key, size_t klen, uint64_t *ino, uint64_t *index);
int fs_key_parse_named(const uint8_t *key, size_t klen, char type, uint64_t *ino, const char **name,
                       size_t *nlen);

/* ---- Superblock --------------------------------------------------------------------------- */

struct fs_super {
    uint32_t version;
    uint32_t chunk_size;
    uint32_t flags;     /* 0 in version 1 */
    uint64_t ino_limit; /* every inode number below this may have been handed out */
    uint8_t uuid[16];
    uint64_t created_ns; /* wall clock at format */
};

/* Encodes sb into out (FS_SUPER_LEN bytes). */
void fs_super_encode(const struct fs_super *sb, uint8_t *out);
/* Decodes and validates. Returns 0, -EPROTO for a newer format version, or -EIO (logged). */
int fs_super_decode(const void *val, size_t len, struct fs_super *sb);

/* ---- Inodes ------------------------------------------------------------------------------- */

struct fs_inode {
    uint64_t ino;   /* not stored in the value: the key holds it */
    uint32_t flags; /* FS_INODE_F_* */
    uint32_t mode;  /* type and permission bits, as st_mode */
    uint32_t uid, gid;
    uint32_t nlink;
    uint64_t size; /* bytes; for a symlink, the target's length */
    uint64_t rdev;
    uint64_t generation;
    uint64_t parent; /* directories: the containing directory (root: itself); others: 0 */
    uint64_t stored; /* bytes of chunk data stored (for st_blocks) */
    struct timespec atime, mtime, ctime;
};

/* Encodes ino plus an optional tail (a symlink's target) into a malloc'd buffer. Returns NULL
 * if out of memory. Caller frees with free(). */
uint8_t *fs_inode_encode(const struct fs_inode *ino, const void *tail, size_t tail_len,
                         size_t *out_len);
/* Decodes and validates the value of inode `num`. On success *tail and *tail_len (may be NULL)
 * borrow the tail inside val. Returns 0 or -EIO (logged with the inode number and check). */
int fs_inode_decode(uint64_t num, const void *val, size_t len, struct fs_inode *ino,
                    const uint8_t **tail, size_t *tail_len);

/* ---- Directory entries -------------------------------------------------------------------- */

/* Dirent value: child inode number and d_type (DT_*). */
void fs_dirent_encode(uint64_t child, uint8_t dtype, uint8_t out[FS_DIRENT_LEN]);
int fs_dirent_decode(const void *val, size_t len, uint64_t *child, uint8_t *dtype);

/* d_type for an st_mode; 0 (DT_UNKNOWN) if the type is not one kvfs stores. */
uint8_t fs_mode_to_dtype(uint32_t mode);

#endif /* KVFS_SCHEMA_H */
