#!/bin/bash
# churn.sh: garbage must never fill the disk (durability contract 5: ENOSPC means the disk is
# full of live data). The store lives on a 384 MiB tmpfs; three writers overwrite their own
# 32 MiB file 40 times each, in parallel: about 3.8 GiB written, at most ~200 MiB alive (the
# three files, plus the copies being replaced). The value log turns every overwrite into
# garbage that GC must reclaim; a writer faster than the GC must wait for it (vlog_throttle),
# not get ENOSPC. Before writers waited, the first ENOSPC came after about 400 MB, with 54 MiB
# free and the GC not yet started. Then: every file equals its source, fsck is clean, and the
# files survive a remount.
. "$(dirname "$0")/lib.sh"

mt_init
SMALL=$MT_DIR/small
mt_cleanup_hook() {
    mountpoint -q "$SMALL" && umount "$SMALL"
}
head -c $((32 * 1024 * 1024)) /dev/urandom >"$MT_DIR/src" || mt_fail "random data"
mkdir -p "$SMALL"
mount -t tmpfs -o size=384m kvfs-churn "$SMALL" || mt_fail "cannot mount a tmpfs for the store"
STORE=$SMALL/store
mkdir "$STORE"
mt_mount ""

mt_log "3 writers x 40 overwrites of a 32 MiB file on a 384 MiB disk"
pids=()
for w in 1 2 3; do
    (
        for r in $(seq 1 40); do
            cp "$MT_DIR/src" "$MNT/f$w" 2>"$MT_DIR/cp$w.err" ||
                { echo "writer $w, overwrite $r: $(cat "$MT_DIR/cp$w.err")"; exit 1; }
        done
    ) >"$MT_DIR/w$w.out" 2>&1 &
    pids+=($!)
done
failed=""
for i in 0 1 2; do
    wait "${pids[$i]}" || failed+="$(cat "$MT_DIR/w$((i + 1)).out") "
done
stats=$("$KVFS_BIN" stats "$MNT" 2>/dev/null |
    awk '/^value log (bytes|bytes written|garbage bytes|gc deleted|stalls|stall micros) +[0-9]+$/ {
        v = $NF; $NF = ""; sub(/^value log /, ""); sub(/ +$/, ""); gsub(/ /, "_")
        printf "%s=%s ", $0, v }')
mt_log "after the writers: $(df -B1M --output=avail "$SMALL" | tail -n 1 | tr -d ' ') MiB free; $stats"
[ -z "$failed" ] || mt_fail "a writer failed while the disk held mostly garbage: $failed"
kill -0 "$DAEMON_PID" 2>/dev/null || mt_fail "the daemon died"
for w in 1 2 3; do
    cmp "$MT_DIR/src" "$MNT/f$w" || mt_fail "f$w differs from its source"
done
mt_unmount
timeout -k 5 120 "$KVFS_BIN" fsck "$STORE" >"$MT_DIR/fsck.log" 2>&1 ||
    mt_fail "kvfs fsck: $(tail -n 20 "$MT_DIR/fsck.log")"
mt_mount ""
for w in 1 2 3; do
    cmp "$MT_DIR/src" "$MNT/f$w" || mt_fail "f$w differs after a remount"
done
mt_unmount
umount "$SMALL" || mt_fail "umount $SMALL"
mt_log "PASS"
