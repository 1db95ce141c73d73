/* checksum.h - the one checksum kvcore stores on disk: XXH3-64 (libxxhash).
 *
 * Every on-disk checksum in kvcore is checksum_value() over exactly the bytes FORMAT.md names.
 * on-disk: never change the algorithm or seed of an existing format version.
 */
#ifndef KV_CHECKSUM_H
#define KV_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

uint64_t checksum_value(const void *data, size_t n);

/* Incremental form for a checksum over several pieces; equal to checksum_value of the
 * concatenation. The state lives on the caller's stack. */
typedef struct checksum_state {
    unsigned char opaque[640] __attribute__((aligned(64)));
} checksum_state;

void checksum_begin(checksum_state *st);
void checksum_update(checksum_state *st, const void *data, size_t n);
uint64_t checksum_end(checksum_state *st);

#endif /* KV_CHECKSUM_H */
