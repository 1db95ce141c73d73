/* status.c - names for the KV_E* error codes of kv.h. */
#include "kvcore/kv.h"

const char *kv_strerror(int err)
{
    switch (err) {
    case KV_OK:
        return "success";
    case KV_ENOTFOUND:
        return "not found";
    case KV_ECORRUPT:
        return "corruption detected";
    case KV_EIO:
        return "I/O error";
    case KV_ENOSPC:
        return "no space left on device";
    case KV_ENOMEM:
        return "out of memory";
    case KV_EINVAL:
        return "invalid argument";
    case KV_EBUSY:
        return "store is locked by another user";
    case KV_EVERSION:
        return "store written by a newer format version";
    case KV_EEXIST:
        return "store already exists";
    case KV_ECLOSED:
        return "store stopped accepting writes after an earlier I/O error";
    default:
        return "unknown error";
    }
}
