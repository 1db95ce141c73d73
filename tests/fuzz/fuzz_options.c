/* fuzz_options.c - libFuzzer target for the kvfs mount command line (fs/options.c): the input is
 * an argv, its arguments separated by NUL bytes, parsed by libfuse's option parser with our
 * option table and then checked and applied as `kvfs mount` does. Every input must give an
 * error line or a result; never a crash, a leak or undefined behaviour. */
#include "kvcore/kv.h"
#include "options.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The error line each bad input prints is expected: -close_fd_mask=2 closes the target's
 * stderr while libFuzzer keeps its own output and the sanitizers' reports on a copy. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char quiet[] = "-close_fd_mask=2";
    static char *args[256];
    int n = *argc < 254 ? *argc : 254;
    memcpy(args, *argv, (size_t)n * sizeof(char *));
    args[n++] = quiet;
    args[n] = NULL;
    *argc = n;
    *argv = args;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char prog[] = "kvfs";
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = prog;
    for (size_t i = 0; i <= size && argc < MAX_ARGS;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;

    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct mount_opts o;
    if (mount_opts_parse(&args, &o) == 0 && mount_opts_check(&o) >= 0) {
        kv_options ko;
        struct fs_config cfg;
        struct fs_ll ll;
        kv_options_init(&ko);
        if (mount_opts_apply(&o, &ko, &cfg, &ll) == 0) {
            /* What a mount would be given must be sane. */
            if (ko.memtable_bytes < 65536 || (ll.writeback && ko.sync_mode == KV_SYNC_ALWAYS))
                abort();
        }
    }
    fuse_opt_free_args(&args);
    mount_opts_free(&o);
    free(buf);
    return 0;
}
