#!/bin/bash
# crash.sh: kill -9 of the kvfs daemon at random moments under a random multi-process workload
# (durability contracts 1 and 3). Each cycle mounts, checks every earlier cycle's tree against
# the workload logs (crash_workload verify), removes the tree of three cycles back, starts
# crash_workload with 3 processes (creates, small and MiB-sized writes with and without fsync,
# in-place rewrites, atomic rename-over, hard links, truncates, unlinks, xattrs), SIGKILLs the
# daemon after 0.3-2.5 s, detaches the dead mount and requires `kvfs fsck STORE` to exit 0.
# Verification: every fsynced file byte for byte, every acknowledged namespace/metadata
# operation (kill -9 loses nothing acknowledged), every rename target old or new (never torn),
# no unannounced file or xattr, removed trees still gone.
# Cycles rotate mount options: small memtables (flushes and compactions race the kill),
# the writeback cache off (then file data is acknowledged by write(2) itself), and default.
#
# Cycles run until a time budget is spent (--seconds, env CRASH_SECONDS, default 90; at least 6
# cycles, so each option set is killed twice), or exactly --cycles N (env CRASH_CYCLES).
#
# Usage: crash.sh [--seconds S | --cycles N] [--seed S]   (env: CRASH_SECONDS, CRASH_CYCLES,
#        CRASH_SEED)
CYCLES=${CRASH_CYCLES:-}
BUDGET=${CRASH_SECONDS:-90}
SEED=${CRASH_SEED:-$(( $(date +%s) % 1000000 ))}
while [ $# -gt 0 ]; do
    case $1 in
    --cycles) CYCLES=$2; shift 2 ;;
    --seconds) BUDGET=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds S | --cycles N] [--seed S]" >&2; exit 2 ;;
    esac
done
MIN_CYCLES=6
# A cycle takes a few seconds; the slowest allowed is 9 s (+ the final checks).
if [ -n "$CYCLES" ]; then
    MT_TIMEOUT=${MT_TIMEOUT:-$((CYCLES * 9 + 120))}
else
    MT_TIMEOUT=${MT_TIMEOUT:-$((BUDGET + MIN_CYCLES * 9 + 120))}
fi
. "$(dirname "$0")/lib.sh"

mt_init
WL=$(mt_tool crash_workload) || exit 1
RANDOM=$SEED
if [ -n "$CYCLES" ]; then
    mt_log "seed $SEED (rerun with --seed $SEED), $CYCLES cycles"
else
    mt_log "seed $SEED (rerun with --seed $SEED), cycles for ${BUDGET}s (at least $MIN_CYCLES)"
fi
mkdir -p "$MT_DIR/log"
LIVE=()    # cycles whose trees are still checked
RETIRED=() # cycles whose trees were removed (must stay gone)

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
    # Nothing but our trees at the top.
    local extra
    extra=$(ls -A "$MNT" | grep -Ev '^c[0-9]+$')
    [ -z "$extra" ] || mt_fail "unexpected entries at the top: $extra"
}

# Succeeds if cycle $1 should run: up to CYCLES if given, else until the budget is spent.
more_cycles() {
    if [ -n "$CYCLES" ]; then
        [ "$1" -le "$CYCLES" ]
    else
        [ "$1" -le "$MIN_CYCLES" ] || [ $((SECONDS - MT_START)) -lt "$BUDGET" ]
    fi
}

kills=0
c=0
while more_cycles $((c + 1)); do
    c=$((c + 1))
    case $((c % 3)) in
    0) opts="memtable_size=1M" mode=ack ;;
    1) opts="$MT_NOWB_OPTS,memtable_size=2M" mode=ackdata ;;
    2) opts="" mode=fsync ;;
    esac
    mt_mount "$opts"
    verify_all "after crash $((c - 1))"
    if [ ${#LIVE[@]} -ge 3 ]; then
        old=${LIVE[0]}
        rm -rf "$MNT/c$old" || mt_fail "rm -rf c$old"
        LIVE=("${LIVE[@]:1}")
        RETIRED+=("$old")
    fi
    wseed=$((RANDOM * 32768 + RANDOM))
    "$WL" run -m "$mode" -w 3 -t 30 -S "$wseed" "$MNT/c$c" "$MT_DIR/log/c$c" \
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
    mt_kill9_daemon
    kills=$((kills + 1))
    wait $wl || mt_fail "crash_workload failed before the kill (cycle $c): $(tail -n 20 "$MT_DIR/wl.out")"
    ops=$(grep -o 'after [0-9]* ops' "$MT_DIR/wl.out" | awk '{s += $2} END {print s + 0}')
    mt_log "cycle $c: -o ${opts:-none}, mode $mode, seed $wseed, killed after ${ms} ms, $ops ops"
    fsck_clean "after kill -9 in cycle $c"
done

mt_mount ""
verify_all "after the last crash"
mt_unmount
fsck_clean "after the final clean unmount"
mt_log "PASS: $kills kills, all fsynced/acknowledged state intact, fsck clean each time"
