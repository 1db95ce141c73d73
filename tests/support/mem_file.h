/* mem_file.h - an env_file over a growable memory buffer, for tests of the table and log
 * readers and writers that need no disk, with injectable read and append failures.
 *
 * Threads: one writer at a time; readers may pread concurrently with each other and with a
 * test flipping fail_reads (read atomically), never with an append.
 */
#ifndef KV_MEM_FILE_H
#define KV_MEM_FILE_H

#include "util/coding.h"
#include "util/env.h"

typedef struct tu_memfile {
    env_file base;           /* pass &base to the code under test */
    buf *data;               /* borrowed: the file's bytes; appends grow it */
    int fail_reads;          /* nonzero: every pread fails with KV_EIO */
    long fail_appends_after; /* an append that would pass this many bytes fails with KV_ENOSPC;
                                -1: never */
} tu_memfile;

/* Opens a file over data (borrowed, must outlive the file): reads see data->len bytes, appends
 * extend data. Closing it (env_close(&m->base)) frees the tu_memfile, not data. Aborts the test
 * process if out of memory. */
tu_memfile *tu_memfile_open(buf *data);

#endif /* KV_MEM_FILE_H */
