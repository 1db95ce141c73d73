/* ll.h - the FUSE low-level glue: fuse_lowlevel_ops handlers over the fs logic. */
#ifndef KVFS_LL_H
#define KVFS_LL_H

#include "fs.h"

#include <fuse_lowlevel.h>

/* The session's userdata: what every handler needs. Owned by main.c, which keeps it alive
 * until fuse_session_destroy() returns. */
struct fs_ll {
    struct fs *fs;
    double attr_timeout;     /* seconds the kernel may cache attributes */
    double entry_timeout;    /* seconds the kernel may cache a name -> inode */
    double negative_timeout; /* seconds it may cache "no such name"; 0: not at all */
    int writeback;           /* ask for the writeback cache (off for sync=always) */
};

/* The operation table (static storage; handlers are fs_op_<op> in ll.c). Each handler replies
 * exactly once; errors are negative errnos from fs.h turned into fuse_reply_err(). */
const struct fuse_lowlevel_ops *fs_ll_ops(void);

#endif /* KVFS_LL_H */
