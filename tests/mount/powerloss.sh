#!/bin/bash
# powerloss.sh: power cuts under kvfs (durability contracts 2 and 3). The store lives on an xfs
# image (512 MiB, loop device); each cycle mounts kvfs, checks every earlier cycle's tree
# against its log, runs crash_workload -m fsync (only what fsync made durable is promised),
# then cuts the power: `xfs_io -x -c shutdown` drops every write xfs had not made durable, the
# daemon is SIGKILLed and the dead FUSE mount detached; the xfs image is unmounted and mounted
# again (log recovery), `kvfs fsck STORE` must be clean, and the next cycle verifies: every
# fsynced file byte for byte, every fsynced dirent, every fsynced rename old-or-new, nothing
# unannounced.
#
# Usage: powerloss.sh [--cycles N] [--seed S]    (env: POWERLOSS_CYCLES, POWERLOSS_SEED)
CYCLES=${POWERLOSS_CYCLES:-8}
SEED=${POWERLOSS_SEED:-$(( $(date +%s) % 1000000 ))}
while [ $# -gt 0 ]; do
    case $1 in
    --cycles) CYCLES=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    *) echo "usage: $0 [--cycles N] [--seed S]" >&2; exit 2 ;;
    esac
done
MT_TIMEOUT=${MT_TIMEOUT:-$((CYCLES * 15 + 120))}
. "$(dirname "$0")/lib.sh"

mt_init
WL=$(mt_tool crash_workload) || exit 1
for tool in mkfs.xfs xfs_io losetup; do
    command -v $tool >/dev/null || mt_fail "$tool is not installed (xfsprogs, util-linux)"
done
RANDOM=$SEED
mt_log "seed $SEED (rerun with --seed $SEED), $CYCLES power cuts"

IMG=$MT_DIR/xfs.img
XMNT=$MT_DIR/xfs
LOOP=""
mt_cleanup_hook() {
    if [ -n "$XMNT" ] && mountpoint -q "$XMNT"; then umount "$XMNT" || umount -l "$XMNT"; fi
    [ -n "$LOOP" ] && losetup -d "$LOOP"
    rm -f "$IMG"
}
truncate -s 512M "$IMG" && mkfs.xfs -q -f "$IMG" || mt_fail "cannot make the xfs image"
LOOP=$(losetup -f --show "$IMG") || mt_fail "no loop device"
mkdir -p "$XMNT"
mount -t xfs "$LOOP" "$XMNT" || mt_fail "cannot mount the xfs image"
STORE=$XMNT/store
mkdir -p "$MT_DIR/log"
MARK=$MT_DIR/fault
LIVE=()
RETIRED=()

fsck_clean() {
    timeout -k 5 120 "$KVFS_BIN" fsck "$STORE" >"$MT_DIR/fsck.log" 2>&1 ||
        mt_fail "kvfs fsck ($1) exit $?: $(tail -n 20 "$MT_DIR/fsck.log")"
}

verify_all() {
    local c
    for c in "${LIVE[@]}"; do
        "$WL" verify "$MNT/c$c" "$MT_DIR/log/c$c" >"$MT_DIR/verify.out" 2>&1 ||
            mt_fail "cycle $c's tree does not match its log ($1): $(head -n 30 "$MT_DIR/verify.out")"
    done
    for c in "${RETIRED[@]}"; do
        [ ! -e "$MNT/c$c" ] || mt_fail "the removed tree c$c is back ($1)"
    done
}

for ((c = 1; c <= CYCLES; c++)); do
    case $((c % 3)) in
    0) opts="memtable_size=1M" ;;
    1) opts="$MT_NOWB_OPTS,memtable_size=2M" ;;
    2) opts="" ;;
    esac
    mt_mount "$opts"
    verify_all "after power cut $((c - 1))"
    if [ ${#LIVE[@]} -ge 3 ]; then
        old=${LIVE[0]}
        rm -rf "$MNT/c$old" || mt_fail "rm -rf c$old"
        # The removal is only promised once synced: fsync the directory (sync FILE = fsync).
        sync "$MNT" || mt_fail "fsync of the mount's root"
        LIVE=("${LIVE[@]:1}")
        RETIRED+=("$old")
    fi
    rm -f "$MARK"
    wseed=$((RANDOM * 32768 + RANDOM))
    "$WL" run -m fsync -w 3 -t 30 -S "$wseed" -F "$MARK" "$MNT/c$c" "$MT_DIR/log/c$c" \
        >"$MT_DIR/wl.out" 2>&1 &
    wl=$!
    LIVE+=("$c")
    i=0
    until grep -q "workers started" "$MT_DIR/wl.out"; do
        kill -0 $wl 2>/dev/null || mt_fail "crash_workload setup failed: $(cat "$MT_DIR/wl.out")"
        i=$((i + 1))
        [ $i -lt 200 ] || mt_fail "crash_workload setup took over 20 s"
        sleep 0.1
    done
    ms=$((300 + RANDOM % 2200))
    sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
    kill -0 "$DAEMON_PID" 2>/dev/null || mt_fail "the daemon died by itself (cycle $c)"
    touch "$MARK"
    xfs_io -x -c shutdown "$XMNT" || mt_fail "xfs_io shutdown failed"
    mt_kill9_daemon
    wait $wl || mt_fail "crash_workload failed before the power cut (cycle $c): $(tail -n 20 "$MT_DIR/wl.out")"
    umount "$XMNT" || mt_fail "cannot unmount the shut-down xfs"
    mount -t xfs "$LOOP" "$XMNT" || mt_fail "xfs does not mount after the power cut"
    ops=$(grep -o 'after [0-9]* ops' "$MT_DIR/wl.out" | awk '{s += $2} END {print s + 0}')
    mt_log "cycle $c: -o ${opts:-none}, seed $wseed, power cut after ${ms} ms, $ops ops"
    fsck_clean "after power cut $c"
done

mt_mount ""
verify_all "after the last power cut"
mt_unmount
fsck_clean "after the final clean unmount"
mt_log "PASS: $CYCLES power cuts, every fsynced file, dirent and rename intact, fsck clean"
