#!/bin/bash
# stress.sh: concurrent namespace operations on kvfs (meta_stress), link counts consistent after
# the run, after a remount, and after kill -9 in the middle of the run; fsck clean each time.
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
mt_log "PASS"
