/* mem_file.c - an env_file over a memory buffer with injectable failures (mem_file.h). */
#include "mem_file.h"

#include <stdlib.h>
#include <string.h>

#include "kvcore/kv.h"

static int mem_pread(env_file *f, void *b, size_t n, uint64_t off, size_t *nread)
{
    tu_memfile *m = (tu_memfile *)f;
    *nread = 0;
    size_t seen = __atomic_load_n(&m->max_read_req, __ATOMIC_RELAXED);
    while (n > seen && !__atomic_compare_exchange_n(&m->max_read_req, &seen, n, 0, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED))
        ;
    if (__atomic_load_n(&m->fail_reads, __ATOMIC_RELAXED))
        return KV_EIO;
    if (off >= m->data->len)
        return 0;
    size_t avail = m->data->len - (size_t)off;
    *nread = n < avail ? n : avail;
    memcpy(b, m->data->data + off, *nread);
    __atomic_add_fetch(&m->bytes_read, (uint64_t)*nread, __ATOMIC_RELAXED);
    return 0;
}

static int mem_append(env_file *f, const void *b, size_t n)
{
    tu_memfile *m = (tu_memfile *)f;
    m->appends++;
    if (m->fail_appends_after >= 0 && m->data->len + n > (size_t)m->fail_appends_after)
        return KV_ENOSPC;
    if (m->data == &m->fixed) { /* the caller's array: never reallocated */
        if (n > m->fixed.cap - m->fixed.len)
            return KV_ENOSPC;
        memcpy(m->fixed.data + m->fixed.len, b, n);
        m->fixed.len += n;
        return 0;
    }
    return buf_append(m->data, b, n);
}

static int mem_sync(env_file *f)
{
    (void)f;
    return 0;
}

static int mem_close(env_file *f)
{
    tu_memfile *m = (tu_memfile *)f;
    if (m->closed)
        *m->closed = 1;
    free(m);
    return 0;
}

static const kv_env mem_env = {
    .pread = mem_pread, .append = mem_append, .sync = mem_sync, .close = mem_close};

tu_memfile *tu_memfile_open(buf *data)
{
    tu_memfile *m = calloc(1, sizeof(*m));
    if (!m)
        abort();
    m->base.env = &mem_env;
    m->data = data;
    m->fail_appends_after = -1;
    return m;
}

tu_memfile *tu_memfile_over(char *bytes, size_t len, size_t cap)
{
    tu_memfile *m = tu_memfile_open(NULL);
    m->fixed.data = bytes;
    m->fixed.len = len;
    m->fixed.cap = cap;
    m->data = &m->fixed;
    return m;
}
