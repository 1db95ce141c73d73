/* log.h - diagnostics to the logger configured in kv_options.
 *
 * A corruption message names the check that failed and where: "sst 000123.sst: block at
 * offset 65536: checksum mismatch". Threads: callable from any thread.
 */
#ifndef KV_LOG_H
#define KV_LOG_H

#include "kvcore/kv.h"

typedef struct kv_logger {
    kv_log_fn fn; /* NULL: stderr */
    void *ctx;
    int level;
} kv_logger;

void kv_logger_init(kv_logger *lg, const kv_options *opts);
void kv_log(const kv_logger *lg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* KV_LOG_H */
