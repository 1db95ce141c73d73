/* checksum.c - XXH3-64 (seed 0) from libxxhash, one-shot and incremental.
 *
 * The incremental state is an XXH3_state_t placed inside the caller's checksum_state, so a
 * multi-piece checksum needs no allocation. XXH3's output is frozen since xxhash 0.8.0, which
 * is what makes it usable as an on-disk checksum.
 */
#include "util/checksum.h"

#include <assert.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

_Static_assert(sizeof(XXH3_state_t) <= sizeof(((checksum_state *)0)->opaque),
               "checksum_state too small for this libxxhash's XXH3_state_t");
_Static_assert(_Alignof(XXH3_state_t) <= _Alignof(checksum_state),
               "checksum_state under-aligned for XXH3_state_t");

static XXH3_state_t *state_of(checksum_state *st)
{
    return (XXH3_state_t *)(void *)st->opaque;
}

uint64_t checksum_value(const void *data, size_t n)
{
    return (uint64_t)XXH3_64bits(data, n);
}

void checksum_begin(checksum_state *st)
{
    XXH3_state_t *s = state_of(st);
    XXH3_INITSTATE(s);
    XXH_errorcode rc = XXH3_64bits_reset(s);
    assert(rc == XXH_OK); /* cannot happen: fails only for a NULL state */
    (void)rc;
}

void checksum_update(checksum_state *st, const void *data, size_t n)
{
    if (n == 0)
        return;
    XXH_errorcode rc = XXH3_64bits_update(state_of(st), data, n);
    assert(rc == XXH_OK); /* cannot happen: fails only for NULL input with n > 0 */
    (void)rc;
}

uint64_t checksum_end(checksum_state *st)
{
    return (uint64_t)XXH3_64bits_digest(state_of(st));
}
