#!/usr/bin/env bash
# watchdog.sh SECONDS CMD [ARGS...] - runs a test under a time limit; a hang fails with stacks.
#
# ctest runs every unit and crash test through this script. If CMD (or anything it forked,
# such as Check's per-test child processes) is still running after SECONDS, it prints the
# process tree and every thread's backtrace of each process in it (gdb, if installed and
# ptrace is allowed), kills the whole tree and exits 124. So a hung test fails within minutes
# and says where it hung, instead of sitting until CI's hard limit. Otherwise it exits with
# CMD's status. SIGTERM/SIGINT to the watchdog (ctest's own timeout) kill the tree too.
set -u

if [ $# -lt 2 ]; then
    echo "usage: $0 SECONDS CMD [ARGS...]" >&2
    exit 2
fi
limit=$1
shift

# Prints pid and all its descendants, parents first.
tree_pids() {
    local p=$1 c
    echo "$p"
    for c in $(pgrep -P "$p" 2>/dev/null); do
        tree_pids "$c"
    done
}

kill_tree() {
    local pids
    mapfile -t pids < <(tree_pids "$child")
    # Stop first so nothing forks while we kill, then kill every process of the tree.
    kill -STOP "${pids[@]}" 2>/dev/null
    kill -KILL "${pids[@]}" 2>/dev/null
}

"$@" &
child=$!
trap 'kill_tree; exit 143' TERM
trap 'kill_tree; exit 130' INT

sleep "$limit" &
sleeper=$!
# wait -n returns when either the test or the sleeper ends; -p names which one.
finished=""
wait -n -p finished "$child" "$sleeper"
rc=$?
if [ "$finished" = "$child" ]; then
    kill "$sleeper" 2>/dev/null
    wait "$sleeper" 2>/dev/null
    exit $rc
fi

echo "WATCHDOG: '$*' still running after ${limit}s; this is a hang or a budget overrun." >&2
mapfile -t pids < <(tree_pids "$child")
echo "WATCHDOG: process tree:" >&2
ps -o pid,ppid,stat,etime,time,args -p "$(IFS=,; echo "${pids[*]}")" >&2
for p in "${pids[@]}"; do
    echo "WATCHDOG: ---- backtraces of pid $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null))" >&2
    if command -v gdb >/dev/null 2>&1; then
        timeout 60 gdb -p "$p" -batch -nx -q -ex 'set pagination off' \
            -ex 'thread apply all bt' </dev/null 2>&1 |
            grep -Ev '^\[(New LWP|Thread debugging|Inferior)|^Using host libthread_db' >&2
    else
        echo "(gdb is not installed: no backtraces)" >&2
    fi
done
kill_tree
wait "$child" 2>/dev/null
echo "WATCHDOG: killed; failing with status 124" >&2
exit 124
