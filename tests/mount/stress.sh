#!/bin/bash
# stress.sh: concurrent namespace operations on kvfs (meta_stress), link counts consistent after
# the run, after a remount, and after kill -9 in the middle of the run; then kill -9 during a
# streaming write without the writeback cache: every acknowledged byte must be recovered.
# fsck must be clean each time.
. "$(dirname "$0")/lib.sh"

mt_init
STRESS=$(mt_tool meta_stress) || exit 1
SECS=${STRESS_SECONDS:-8}

fsck_clean() {
    timeout -k 5 120 "$KVFS_BIN" fsck "$STORE" >"$MT_DIR/fsck-$1.log" 2>&1 ||
        mt_fail "kvfs fsck ($1) exit $?: $(tail -n 20 "$MT_DIR/fsck-$1.log")"
    mt_log "fsck clean ($1)"
}

mt_mount ""
mkdir "$MNT/s1" "$MNT/s2" || mt_fail "mkdir"
mt_log "meta_stress, 4 threads, ${SECS}s"
mt_run "$STRESS" -t 4 -s "$SECS" "$MNT/s1"
mt_remount
mt_run "$STRESS" -c "$MNT/s1"
mt_unmount
fsck_clean "after clean unmount"

mt_mount ""
mt_log "meta_stress killed by kill -9 of the daemon"
"$STRESS" -g -t 4 -s 60 "$MNT/s2" &
stress_pid=$!
sleep 3
mt_kill9_daemon
wait $stress_pid || mt_fail "meta_stress saw unexpected errors before the kill"
fsck_clean "right after kill -9"
mt_mount ""
mt_run "$STRESS" -c "$MNT/s2"
mt_run "$STRESS" -c "$MNT/s1"
mt_unmount
fsck_clean "after recovery"

# Data acknowledged without the writeback cache must survive kill -9: a writer appends 64 KiB
# blocks, one dd (write + close) each, and records every block that completed; all of them must
# read back after recovery. The file lives in a directory that exists only on kvfs: once the
# dead mount is detached, a dd that had not started yet must fail, not write into the bare
# mount point underneath (which made 64 MiB "acknowledged" under load).
mt_mount "$MT_NOWB_OPTS"
mkdir "$MNT/w" || mt_fail "mkdir w"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$MT_DIR/src" || mt_fail "random source"
mt_log "kill -9 while writing (no writeback cache)"
echo 0 >"$MT_DIR/acked"
(
    i=0
    while [ $i -lt 1024 ]; do
        dd if="$MT_DIR/src" of="$MNT/w/data" bs=64k skip=$i seek=$i count=1 conv=notrunc \
            status=none 2>/dev/null || break
        i=$((i + 1))
        echo $i >"$MT_DIR/acked"
    done
) &
writer=$!
sleep 1.5
mt_kill9_daemon
wait $writer
acked=$(($(cat "$MT_DIR/acked") * 65536))
[ "$acked" -gt 0 ] || mt_fail "no block was written before the kill"
fsck_clean "after kill -9 during writes"
mt_mount "$MT_NOWB_OPTS"
size=$(stat -c %s "$MNT/w/data")
[ "$size" -ge "$acked" ] || mt_fail "data has $size bytes after recovery, $acked were acknowledged"
cmp -n "$size" "$MT_DIR/src" "$MNT/w/data" ||
    mt_fail "recovered data differs from what was written (acknowledged $acked, size $size)"
mt_log "all $acked acknowledged bytes recovered (file has $size)"
mt_unmount
fsck_clean "after data recovery"
mt_log "PASS"
