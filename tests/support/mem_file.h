/* mem_file.h - an env_file over a growable memory buffer, for tests of the table and log
 * readers and writers that need no disk, with injectable read and append failures.
 *
 * Threads: one writer at a time; readers may pread concurrently with each other and with a
 * test flipping fail_reads (read atomically), never with an append. The read counters are
 * updated atomically; read them once the readers are done.
 */
#ifndef KV_MEM_FILE_H
#define KV_MEM_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "util/coding.h"
#include "util/env.h"

typedef struct tu_memfile {
    env_file base;           /* pass &base to the code under test */
    buf *data;               /* borrowed: the file's bytes; appends grow it */
    int fail_reads;          /* nonzero: every pread fails with KV_EIO */
    long fail_appends_after; /* an append that would pass this many bytes fails with KV_ENOSPC;
                                -1: never */
    long appends;            /* append calls so far, failed ones included */
    size_t max_read_req;     /* the largest n passed to pread */
    uint64_t bytes_read;     /* bytes pread returned, in all */
    int *closed;             /* if not NULL: set to 1 when the file is closed (and freed) */
    buf fixed;               /* tu_memfile_over: the caller's bytes (data points here) */
} tu_memfile;

/* Opens a file over data (borrowed, must outlive the file): reads see data->len bytes, appends
 * extend data. Closing it (env_close(&m->base)) frees the tu_memfile, not data. Aborts the test
 * process if out of memory. */
tu_memfile *tu_memfile_open(buf *data);
/* Opens a file over the caller's array bytes[0, cap) (borrowed, must outlive the file), of
 * which the first len are the file: appends write into the array, and one that would pass
 * cap fails with KV_ENOSPC (a full disk); m->data->len is the file's size. Otherwise as
 * tu_memfile_open(). */
tu_memfile *tu_memfile_over(char *bytes, size_t len, size_t cap);

#endif /* KV_MEM_FILE_H */
