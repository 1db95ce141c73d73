/* readdir.c - directory streams over a snapshot, and statfs.
 *
 * A stream pins a kv snapshot at opendir, so an entry that existed throughout the listing is
 * returned exactly once however the directory changes meanwhile. Offsets are positions ("." is
 * 0, ".." is 1, the n-th name is n + 2); the stream keeps one iterator at its last position,
 * so sequential reading is O(1) per entry and memory does not depend on the directory's size.
 */
#include "fs_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct fs_dir {
    struct fs *fs;
    uint64_t ino, parent;
    const kv_snapshot *snap;
    kv_iter *it;
    uint64_t it_pos; /* position (name index) the iterator is at; valid if positioned */
    int positioned;
    int at_entry; /* the iterator is at a dirent of this directory (returned at it_pos) */
    uint8_t prefix[9];
    int listed;                 /* in fs->dirs (opened successfully, not yet closed) */
    struct fs_dir *prev, *next; /* fs->dirs, protected by fs->dirs_mu */
};

int fs_opendir(struct fs *fs, uint64_t ino, struct fs_dir **out)
{
    struct fs_dir *d;
    struct fs_inode in;
    int rc;

    *out = NULL;
    d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->fs = fs;
    d->ino = ino;
    d->snap = kv_snapshot_new(fs->db);
    if (!d->snap) {
        free(d);
        return -ENOMEM;
    }
    rc = fs_inode_load(fs, d->snap, ino, &in, NULL, NULL);
    if (rc == 0 && !S_ISDIR(in.mode))
        rc = -ENOTDIR;
    if (rc == 0) {
        d->it = kv_iter_new(fs->db, d->snap);
        if (!d->it)
            rc = -ENOMEM;
    }
    if (rc) {
        fs_closedir(fs, d);
        return rc;
    }
    d->parent = in.parent;
    fs_key_prefix(d->prefix, FS_KEY_DIRENT, ino);
    pthread_mutex_lock(&fs->dirs_mu);
    d->next = fs->dirs;
    if (d->next)
        d->next->prev = d;
    fs->dirs = d;
    d->listed = 1;
    pthread_mutex_unlock(&fs->dirs_mu);
    *out = d;
    return 0;
}

void fs_closedir(struct fs *fs, struct fs_dir *d)
{
    if (!d)
        return;
    if (d->listed) {
        pthread_mutex_lock(&fs->dirs_mu);
        if (d->prev)
            d->prev->next = d->next;
        else
            fs->dirs = d->next;
        if (d->next)
            d->next->prev = d->prev;
        d->listed = 0;
        pthread_mutex_unlock(&fs->dirs_mu);
    }
    kv_iter_free(d->it);
    if (d->snap)
        kv_snapshot_free(fs->db, d->snap);
    free(d);
}

void fs_closedir_all(struct fs *fs)
{
    struct fs_dir *d;

    pthread_mutex_lock(&fs->dirs_mu);
    d = fs->dirs;
    fs->dirs = NULL;
    pthread_mutex_unlock(&fs->dirs_mu);
    while (d) {
        struct fs_dir *next = d->next;
        d->listed = 0; /* already off the list */
        fs_closedir(fs, d);
        d = next;
    }
}

static int at_prefix(struct fs_dir *d)
{
    size_t kl;
    const void *k;
    if (!kv_iter_valid(d->it))
        return 0;
    k = kv_iter_key(d->it, &kl);
    return kl > sizeof d->prefix && memcmp(k, d->prefix, sizeof d->prefix) == 0;
}

static uint32_t dtype_to_mode(uint8_t t)
{
    switch (t) {
    case DT_DIR:
        return S_IFDIR;
    case DT_LNK:
        return S_IFLNK;
    case DT_CHR:
        return S_IFCHR;
    case DT_BLK:
        return S_IFBLK;
    case DT_FIFO:
        return S_IFIFO;
    case DT_SOCK:
        return S_IFSOCK;
    default:
        return S_IFREG;
    }
}

int fs_readdir(struct fs_dir *d, uint64_t off, struct fs_dirent *de)
{
    uint64_t want, ino;
    const uint8_t *k;
    const void *v;
    const char *name;
    size_t kl, vl, nlen;
    uint8_t dtype;
    int rc;

    /* Not a memset of the whole name buffer: this runs once per entry of every listing. */
    de->name[0] = '\0';
    de->namelen = 0;
    de->ino = 0;
    de->type = 0;
    de->next_off = 0;
    if (off < 2) {
        strcpy(de->name, off == 0 ? "." : "..");
        de->namelen = off == 0 ? 1 : 2;
        de->ino = off == 0 ? d->ino : d->parent;
        de->type = S_IFDIR;
        de->next_off = off + 1;
        return 1;
    }
    want = off - 2;
    if (!d->positioned || want < d->it_pos) {
        kv_iter_seek(d->it, d->prefix, sizeof d->prefix);
        d->it_pos = 0;
        d->positioned = 1;
        d->at_entry = 0;
    }
    /* Reading on from the entry returned last, the iterator is known to be at one: one
     * prefix check per entry, not two. */
    while (d->it_pos < want && (d->at_entry || at_prefix(d))) {
        kv_iter_next(d->it);
        d->it_pos++;
        d->at_entry = 0;
    }
    if (!at_prefix(d)) {
        rc = kv_iter_status(d->it);
        return rc ? fs_kv_errno(rc) : 0;
    }
    k = kv_iter_key(d->it, &kl);
    v = kv_iter_value(d->it, &vl);
    rc = fs_key_parse_named(k, kl, FS_KEY_DIRENT, &ino, &name, &nlen);
    if (rc == 0)
        rc = fs_dirent_decode(v, vl, &ino, &dtype);
    if (rc)
        return rc;
    /* Copied and checked in one pass: two memchr calls per entry cost more on short names. */
    for (size_t i = 0; i < nlen; i++) {
        char c = name[i];
        if (c == '/' || c == '\0') {
            fs_log(FS_LOG_ERROR, "dirent in directory %llu: name holds '/' or NUL",
                   (unsigned long long)d->ino);
            de->name[0] = '\0';
            return -EIO;
        }
        de->name[i] = c;
    }
    d->at_entry = 1;
    de->name[nlen] = '\0';
    de->namelen = (uint32_t)nlen;
    de->ino = ino;
    de->type = dtype_to_mode(dtype);
    de->next_off = off + 1;
    return 1;
}

int fs_statfs(struct fs *fs, struct statvfs *st)
{
    struct statvfs sv;
    uint64_t used_inos;

    memset(st, 0, sizeof *st);
    if (fs->cfg.store_path && statvfs(fs->cfg.store_path, &sv) == 0) {
        st->f_bsize = sv.f_bsize;
        st->f_frsize = sv.f_frsize;
        st->f_blocks = sv.f_blocks;
        st->f_bfree = sv.f_bfree;
        st->f_bavail = sv.f_bavail;
    } else {
        st->f_bsize = st->f_frsize = 4096;
    }
    pthread_mutex_lock(&fs->alloc_mu);
    used_inos = fs->next_ino;
    st->f_fsid = fs_get_be64(fs->sb.uuid) ^ fs_get_be64(fs->sb.uuid + 8);
    pthread_mutex_unlock(&fs->alloc_mu);
    /* Inodes are keys, limited only by space: about one per 256 free bytes. */
    st->f_ffree = st->f_favail = (uint64_t)st->f_bavail * st->f_frsize / 256;
    st->f_files = st->f_ffree + used_inos;
    st->f_namemax = FS_NAME_MAX;
    if (fs->cfg.read_only)
        st->f_flag |= ST_RDONLY;
    return 0;
}
