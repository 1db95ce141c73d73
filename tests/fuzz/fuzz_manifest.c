/* fuzz_manifest.c - libFuzzer target: version edit decoding and manifest images.
 *
 * Each input is tried two ways: as one encoded version edit, and as a whole manifest file (a
 * record log) whose every record is decoded as an edit. A decoded edit must satisfy what the
 * decoder promises (levels in range, well-formed ordered key ranges) and must survive an
 * encode/decode round trip unchanged; a failed decode must leave the edit empty.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "db/version.h"
#include "db/wal.h"
#include "fuzz_util.h"
#include "kvcore/kv.h"
#include "util/ikey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_edit(const version_edit *e)
{
    for (size_t i = 0; i < e->n_deleted; i++)
        if (e->deleted[i].level < 0 || e->deleted[i].level >= KV_MAX_LEVELS)
            abort();
    for (size_t i = 0; i < e->n_added; i++) {
        const file_meta *m = e->added[i].meta;
        ikey_parsed a, b;
        if (e->added[i].level < 0 || e->added[i].level >= KV_MAX_LEVELS)
            abort();
        if (!ikey_parse(buf_slice(&m->smallest), &a) || !ikey_parse(buf_slice(&m->largest), &b))
            abort();
        if (ikey_compare(buf_slice(&m->smallest), buf_slice(&m->largest)) > 0)
            abort();
    }
    if (e->has_format_version && e->format_version > VERSION_FORMAT_CURRENT)
        abort();
}

/* Decodes in; if it decodes, checks it and that encode/decode/encode is stable. */
static void try_edit(slice in)
{
    version_edit e, again;
    version_edit_init(&e);
    version_edit_init(&again);
    int rc = version_edit_decode(&e, in);
    if (rc != 0) {
        if (rc != KV_ECORRUPT && rc != KV_EVERSION && rc != KV_ENOMEM)
            abort();
        if (e.n_added || e.n_deleted || e.has_log_number || e.has_format_version)
            abort(); /* a failed decode leaves nothing behind */
        return;
    }
    check_edit(&e);
    buf enc1, enc2;
    buf_init(&enc1);
    buf_init(&enc2);
    if (version_edit_encode(&e, &enc1) == 0) {
        if (version_edit_decode(&again, buf_slice(&enc1)) != 0)
            abort();
        if (again.n_added != e.n_added || again.n_deleted != e.n_deleted)
            abort();
        if (version_edit_encode(&again, &enc2) == 0 &&
            (enc1.len != enc2.len || (enc1.len > 0 && memcmp(enc1.data, enc2.data, enc1.len) != 0)))
            abort();
    }
    buf_free(&enc1);
    buf_free(&enc2);
    version_edit_free(&e);
    version_edit_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = fz_copy(data, size); /* ASan catches any read past its end */
    if (!copy)
        return 0;

    try_edit(slice_make(copy, size));

    wal_reader *r;
    if (wal_reader_new_mem(slice_make(copy, size), &r) == 0) {
        slice rec;
        while (wal_read_record(r, &rec) == 1) {
            /* The record is borrowed until the next read; decode a copy of exact size. */
            char *rc = malloc(rec.size ? rec.size : 1);
            if (!rc)
                break;
            if (rec.size)
                memcpy(rc, rec.data, rec.size);
            try_edit(slice_make(rc, rec.size));
            free(rc);
        }
        wal_reader_free(r);
    }
    free(copy);
    return 0;
}
