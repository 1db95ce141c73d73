#!/bin/bash
# fsx.sh: data integrity of kvfs under fsx, without and with the kernel writeback cache.
#
# The writeback cache is turned off with $MT_NOWB_OPTS (lib.sh; default -o writeback=0).
# FSX_OPS scales the run (default 6000 ops per configuration); FSX_SEED fixes the seed
# (default random, printed).
. "$(dirname "$0")/lib.sh"

mt_init
FSX=$(mt_tool fsx) || exit 1
OPS=${FSX_OPS:-6000}
seed_arg=()
[ -n "${FSX_SEED:-}" ] && seed_arg=(-S "$FSX_SEED")

run_fsx() {
    local label=$1
    shift
    mt_log "fsx $label: $*"
    "$FSX" "${seed_arg[@]}" "$@" >"$MT_DIR/fsx-$label.log" 2>&1
    local rc=$?
    cat "$MT_DIR/fsx-$label.log"
    [ $rc -eq 0 ] || mt_fail "fsx $label failed (exit $rc); replay line above"
}

for mode in "" "$MT_NOWB_OPTS"; do
    tag=${mode:-default}
    tag=${tag//[=,]/}
    mt_mount "$mode"
    run_fsx "$tag-buffered" -N "$OPS" -l 4M -o 256K "$MNT/fsx-buffered"
    run_fsx "$tag-reopen" -N $((OPS / 2)) -l 2M -o 128K -c 300 "$MNT/fsx-reopen"
    run_fsx "$tag-direct" -N $((OPS / 2)) -l 2M -o 128K -d -c 400 "$MNT/fsx-direct"
    run_fsx "$tag-5G" -N $((OPS / 3)) -l 1M -o 64K -b 5G -c 500 "$MNT/fsx-5G"
    # Three at once on separate files: the daemon's threads serve them concurrently.
    mt_log "fsx $tag-parallel: 3 instances"
    pids=()
    for i in 1 2 3; do
        "$FSX" "${seed_arg[@]}" -N $((OPS / 3)) -l 2M -o 128K -c 250 "$MNT/fsx-par$i" \
            >"$MT_DIR/fsx-$tag-par$i.log" 2>&1 &
        pids+=($!)
    done
    for i in 1 2 3; do
        wait "${pids[$((i - 1))]}"
        rc=$?
        cat "$MT_DIR/fsx-$tag-par$i.log"
        [ $rc -eq 0 ] || mt_fail "parallel fsx $i failed (exit $rc); replay line above"
    done
    # What fsx left behind must survive an unmount and a fresh mount byte for byte.
    (cd "$MNT" && sha256sum fsx-buffered fsx-reopen fsx-direct >"$MT_DIR/fsx.sum") ||
        mt_fail "sha256 of fsx files"
    mt_remount
    (cd "$MNT" && sha256sum -c --quiet "$MT_DIR/fsx.sum") ||
        mt_fail "fsx files changed across unmount/mount ($tag)"
    mt_unmount
done
mt_log "PASS"
