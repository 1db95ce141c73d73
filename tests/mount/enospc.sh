#!/bin/bash
# enospc.sh: kvfs on a full disk (durability contract 5): the store lives on a small tmpfs; filling
# it must yield ENOSPC (never EIO, never a crash), keep everything already stored intact, and
# work again once space is freed (the tmpfs is grown); then unmount, fsck and remount are clean.
# Run twice: with the writeback cache (ENOSPC may surface only at fsync) and with $MT_NOWB_OPTS,
# which turns it off, so write(2) itself must fail with ENOSPC.
. "$(dirname "$0")/lib.sh"

mt_init
SMALLS=()
mt_cleanup_hook() {
    local s
    for s in "${SMALLS[@]}"; do
        mountpoint -q "$s" && umount "$s"
    done
}
head -c $((4 * 1024 * 1024)) /dev/urandom >"$MT_DIR/keep" &&
    head -c $((64 * 1024 * 1024)) /dev/urandom >"$MT_DIR/fillsrc" || mt_fail "random data"

# scenario NAME MOUNT-OPTS
scenario() {
    local name=$1 opts=$2 small=$MT_DIR/small-$1 rc t0
    mkdir -p "$small"
    mount -t tmpfs -o size=48m kvfs-enospc "$small" || mt_fail "cannot mount a tmpfs for the store"
    SMALLS+=("$small")
    STORE=$small/store
    mkdir "$STORE"
    mt_mount "$opts"
    dd if="$MT_DIR/keep" of="$MNT/keep" bs=1M conv=fsync status=none || mt_fail "write keep"
    mkdir "$MNT/dir" && echo small >"$MNT/dir/small" && sync -f "$MNT" || mt_fail "small files"

    mt_log "$name: filling the store's disk"
    timeout -k 5 120 dd if="$MT_DIR/fillsrc" of="$MNT/fill" bs=1M conv=fsync \
        >"$MT_DIR/fill.err" 2>&1
    rc=$?
    cat "$MT_DIR/fill.err"
    [ $rc -ne 0 ] || mt_fail "64 MiB of random data fitted on a 48 MiB disk?"
    [ $rc -ne 124 ] && [ $rc -ne 137 ] || mt_fail "writing to a full disk hung (timeout)"
    grep -q "No space left on device" "$MT_DIR/fill.err" ||
        mt_fail "a full disk did not give ENOSPC: $(cat "$MT_DIR/fill.err")"
    if [ "$name" = nowriteback ]; then
        grep -q "error writing" "$MT_DIR/fill.err" ||
            mt_fail "without the writeback cache, write(2) itself must fail with ENOSPC"
    fi
    kill -0 "$DAEMON_PID" 2>/dev/null || mt_fail "daemon died on a full disk"
    df "$small" | tail -n 1

    mt_log "$name: stored data intact while full"
    cmp "$MT_DIR/keep" "$MNT/keep" || mt_fail "keep differs while the disk is full"
    [ "$(cat "$MNT/dir/small")" = small ] || mt_fail "dir/small differs while the disk is full"
    if [ "$name" = nowriteback ]; then
        # Every write(2) that returned before the ENOSPC was acknowledged: it must be readable.
        local copied
        copied=$(sed -n 's/^\([0-9]*\) bytes.*copied.*/\1/p' "$MT_DIR/fill.err")
        [ -n "$copied" ] || mt_fail "cannot tell how much dd wrote"
        cmp -n "$copied" "$MT_DIR/fillsrc" "$MNT/fill" ||
            mt_fail "the $copied bytes acknowledged before ENOSPC are not intact"
        mt_log "$name: the $copied bytes written before ENOSPC read back intact"
    fi
    if ! mkdir "$MNT/dir/while-full" 2>"$MT_DIR/mkdir.err"; then
        grep -q "No space left on device" "$MT_DIR/mkdir.err" ||
            mt_fail "mkdir on a full disk: $(cat "$MT_DIR/mkdir.err") (want success or ENOSPC)"
        echo "mkdir while full: ENOSPC"
    fi
    if ! rm -f "$MNT/fill" 2>"$MT_DIR/rm.err"; then
        grep -q "No space left on device" "$MT_DIR/rm.err" ||
            mt_fail "rm on a full disk: $(cat "$MT_DIR/rm.err") (want success or ENOSPC)"
        echo "rm while full: ENOSPC (space cannot be freed from inside kvfs)"
    fi

    mt_log "$name: space freed (tmpfs grown to 256 MiB)"
    mount -o remount,size=256m "$small" || mt_fail "cannot grow the tmpfs"
    # kvcore retries its failed background work with a backoff of up to a second or so: allow
    # recovery a little time, and say how long it took.
    t0=$SECONDS
    until rm -f "$MNT/fill" 2>"$MT_DIR/rm.err"; do
        [ $((SECONDS - t0)) -lt 15 ] ||
            mt_fail "rm still fails 15 s after space was freed: $(cat "$MT_DIR/rm.err")"
        sleep 0.5
    done
    mt_log "$name: rm succeeded $((SECONDS - t0)) s after space was freed"
    dd if="$MT_DIR/keep" of="$MNT/after" bs=1M conv=fsync status=none ||
        mt_fail "writing after space was freed failed"
    mkdir -p "$MNT/dir/after" || mt_fail "mkdir after space was freed"
    cmp "$MT_DIR/keep" "$MNT/after" || mt_fail "file written after recovery differs"
    cmp "$MT_DIR/keep" "$MNT/keep" || mt_fail "keep differs after recovery"
    mt_unmount
    timeout -k 5 120 "$KVFS_BIN" fsck "$STORE" >"$MT_DIR/fsck.log" 2>&1 ||
        mt_fail "kvfs fsck after ENOSPC: $(tail -n 20 "$MT_DIR/fsck.log")"
    mt_mount "$opts"
    cmp "$MT_DIR/keep" "$MNT/keep" && cmp "$MT_DIR/keep" "$MNT/after" ||
        mt_fail "data differs after remount"
    [ ! -e "$MNT/fill" ] || mt_fail "removed fill is back after remount"
    mt_unmount
    umount "$small" || mt_fail "umount $small"
}

# A small memtable makes flushes and compactions run (and meet ENOSPC) while the disk fills.
scenario writeback "memtable_size=4M"
scenario nowriteback "memtable_size=4M,$MT_NOWB_OPTS"
mt_log "PASS"
