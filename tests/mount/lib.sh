# lib.sh: shared harness of the kvfs mount tests (sourced): temp dir, mount, cleanup, helpers.
#
# A test sources this file, calls mt_init, then mt_mount, and uses the helpers below. Everything
# lives in a private directory under $KV_TEST_TMP (store, mount point, daemon log). The EXIT/INT/
# TERM/HUP trap unmounts and stops only the daemon this test started (by pid: kvfs runs with -f
# in the background, so $! is its pid). A watchdog bounds the whole test: on timeout it kills our
# daemon (which unblocks anything stuck on the mount) and then this shell.
#
# Leftovers. A test killed hard (SIGKILL, a ctest timeout) runs no trap, and could leave its
# daemon, its FUSE mount, file systems it mounted and loop devices it attached. What a test
# creates is recognised by where it lives: every mount point and every loop image of a test is
# inside its private directory (keep them there; name images *.img), whose name is unique. mt_release_dir DIR
# releases exactly that: kvfs daemons serving a mount point in DIR, every mount whose mount point
# is in DIR (deepest first), every loop device whose backing file is in DIR. Nothing outside the
# directory is ever touched. It runs (1) in the EXIT trap, after the test's own mt_cleanup_hook,
# for whatever the hook missed; (2) from the watchdog, as soon as it sees this shell gone
# without its trap having run; (3) in mt_init, for every earlier run of the same test (same
# name, same $KV_TEST_TMP) whose shell is dead: each run writes DIR/owner ("pid starttime", so a
# reused pid does not pass for the run) and removes it once cleaned up. A killed run's loop
# images, DIR/*.img, are deleted then; its other files are kept for inspection.
#
# Sanitizers. When kvfs (or a helper) is built with ASan/UBSan (-DKV_ASAN=ON -DKV_UBSAN=ON),
# every report goes to a file under $MT_DIR/san/ (log_path: a detached daemon has no stderr),
# with halt_on_error and abort_on_error, and LeakSanitizer checks at a clean exit (unmount; a
# SIGKILLed daemon reports nothing). mt_unmount and the EXIT trap look at that directory: any
# report fails the test and is printed. Options already in ASAN_OPTIONS/UBSAN_OPTIONS override
# the defaults here, but log_path is always ours. An uninstrumented build ignores all of this.
#
# Environment: KVFS_BIN (kvfs binary), KV_BUILD_DIR (build tree holding tests/posix_driver and
# tests/fsx), KV_TEST_TMP (scratch root), MT_TIMEOUT (seconds, default 280), MT_KEEP=1 keeps
# the temp dir even when the test passes, MT_NOWB_OPTS (below). Exit 77 (skip) only when
# /dev/fuse is missing.

set -u -o pipefail

MT_NAME=$(basename "$0" .sh)
MT_SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MT_REPO=$(cd "$MT_SRC_DIR/../.." && pwd)
KVFS_BIN=${KVFS_BIN:-$MT_REPO/build/fs/kvfs}
KV_BUILD_DIR=${KV_BUILD_DIR:-$(cd "$(dirname "$KVFS_BIN")/.." 2>/dev/null && pwd || echo "$MT_REPO/build")}
MT_TIMEOUT=${MT_TIMEOUT:-280}
# Mount options that turn the kernel writeback cache off (agreed name writeback=0; override with
# MT_NOWB_OPTS, e.g. sync=always, which also turns it off).
MT_NOWB_OPTS=${MT_NOWB_OPTS:-writeback=0}
MT_START=$SECONDS

MT_DIR=""
STORE=""
MNT=""
DAEMON_PID=""
MT_MOUNT_OPTS=""
MT_WATCHDOG_PID=""
MT_FAILED=0

mt_log() {
    printf '[%s +%ds] %s\n' "$MT_NAME" $((SECONDS - MT_START)) "$*"
}

# Prints the context a failure needs: mount state, daemon state, the daemon log's tail.
mt_context() {
    {
        echo "---- context ($MT_NAME, dir $MT_DIR)"
        if [ -n "$MNT" ]; then
            grep -F " $MNT " /proc/self/mounts || echo "(mount point $MNT not mounted)"
        fi
        if [ -n "$DAEMON_PID" ]; then
            if kill -0 "$DAEMON_PID" 2>/dev/null; then
                echo "daemon pid $DAEMON_PID alive"
            else
                echo "daemon pid $DAEMON_PID not running"
            fi
        fi
        if [ -s "$MT_DIR/kvfs.log" ]; then
            echo "---- last 30 lines of $MT_DIR/kvfs.log"
            tail -n 30 "$MT_DIR/kvfs.log"
        fi
        echo "----"
    } >&2
}

# Fails the test loudly: message, context, non-zero exit (the trap cleans up).
mt_fail() {
    MT_FAILED=1
    echo "FAIL: $MT_NAME: $*" >&2
    mt_context
    exit 1
}

# Runs a command; fails the test with the command line and its status if it fails.
mt_run() {
    "$@"
    local rc=$?
    [ $rc -eq 0 ] || mt_fail "command failed (exit $rc): $*"
}

# Points the sanitizers' reports of every process this test starts into $MT_DIR/san/ (world-
# writable and sticky: posix.sh and hostile.sh run instrumented helpers as uid 65534).
mt_san_setup() {
    local san=$MT_DIR/san
    mkdir -p "$san" && chmod 1777 "$san"
    export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}:log_path=$san/report"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}:log_path=$san/report"
    export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}log_path=$san/report"
}

# Prints every sanitizer report not printed yet (then marks it printed); fails if any report,
# printed now or before, exists.
mt_san_check() {
    local f found=1
    [ -n "$MT_DIR" ] && [ -d "$MT_DIR/san" ] || return 0
    for f in "$MT_DIR"/san/*; do
        [ -s "$f" ] || continue
        found=0
        case $f in *.printed) continue ;; esac
        {
            echo "---- sanitizer report $f (first 80 lines):"
            head -n 80 "$f"
            echo "----"
        } >&2
        mv -f "$f" "$f.printed"
    done
    [ $found -ne 0 ]
}

mt_skip_unless_fuse() {
    if [ ! -c /dev/fuse ]; then
        echo "SKIP: $MT_NAME: /dev/fuse is missing, cannot mount kvfs" >&2
        exit 77
    fi
}

mt_tool() {
    local p="$KV_BUILD_DIR/tests/$1"
    [ -x "$p" ] || mt_fail "helper program $p not built (build target $1)"
    echo "$p"
}

mt_cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM HUP # a second signal must not cut the cleanup short
    if [ -n "$MT_WATCHDOG_PID" ]; then
        kill "$MT_WATCHDOG_PID" 2>/dev/null
        wait "$MT_WATCHDOG_PID" 2>/dev/null
    fi
    if [ -n "$MNT" ] && mountpoint -q "$MNT" 2>/dev/null; then
        fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null
    fi
    mt_stop_daemon 10
    if ! mt_san_check; then
        echo "FAIL: $MT_NAME: a process of this test wrote a sanitizer report ($MT_DIR/san)" >&2
        MT_FAILED=1
        [ $rc -ne 0 ] || rc=1
    fi
    # A test may define mt_cleanup_hook (e.g. to unmount a scratch tmpfs it mounted).
    if declare -F mt_cleanup_hook >/dev/null; then mt_cleanup_hook; fi
    # Whatever is still mounted or attached in our directory (the hook's or a helper's leftovers).
    if [ -n "$MT_DIR" ]; then
        local left
        left=$(mt_release_dir "$MT_DIR")
        [ -z "$left" ] || echo "$MT_NAME: cleanup also $(tr '\n' ';' <<<"$left")" >&2
    fi
    [ -n "$MT_DIR" ] && rm -f "$MT_DIR/owner"
    if [ $rc -ne 0 ] || [ "$MT_FAILED" = 1 ] || [ "${MT_KEEP:-0}" = 1 ]; then
        [ -n "$MT_DIR" ] && echo "$MT_NAME: kept $MT_DIR for inspection" >&2
    elif [ -n "$MT_DIR" ] && ! mountpoint -q "$MNT" 2>/dev/null; then
        rm -rf --one-file-system "$MT_DIR"
    fi
    exit $rc
}

# Waits up to $1 seconds for our daemon to exit, then SIGKILLs it. Sets MT_DAEMON_RC.
mt_stop_daemon() {
    local limit=$1 i=0
    MT_DAEMON_RC=""
    [ -n "$DAEMON_PID" ] || return 0
    while kill -0 "$DAEMON_PID" 2>/dev/null && [ $i -lt $((limit * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        echo "$MT_NAME: daemon $DAEMON_PID still running after ${limit}s, sending SIGKILL" >&2
        kill -9 "$DAEMON_PID" 2>/dev/null
    fi
    wait "$DAEMON_PID" 2>/dev/null
    MT_DAEMON_RC=$?
    DAEMON_PID=""
    : >"$MT_DIR/daemon.pid"
}

# ---- Leftovers of runs killed hard (see the top of this file) ----------------------------------

# Prints the start time of process $1 (field 22 of /proc/PID/stat, clock ticks since boot), which
# with the pid names one process for good; fails if there is no such process.
mt_proc_start() {
    local stat fields
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    # After the command name (which may hold spaces and parentheses) come fields 3, 4, ...
    read -r -a fields <<<"${stat##*) }"
    echo "${fields[19]}"
}

# Succeeds if the process recorded in owner file $1 ("pid starttime") is still running.
mt_owner_alive() {
    local pid start
    read -r pid start <"$1" 2>/dev/null || return 1
    [ -n "$pid" ] && [ "$(mt_proc_start "$pid")" = "$start" ]
}

# /proc/self/mounts spells a space, tab, newline and backslash in a path as octal escapes.
mt_mounts_escape() {
    local p=${1//\\/\\134}
    p=${p// /\\040}
    p=${p//$'\t'/\\011}
    echo "${p//$'\n'/\\012}"
}

# Releases what a test left in its private directory $1 (absolute): kills kvfs daemons serving a
# mount point inside it, unmounts every mount point inside it (deepest first; FUSE ones with
# fusermount3, lazily if busy), detaches every loop device whose backing file is inside it.
# Touches nothing else. Prints one line per thing released.
mt_release_dir() {
    local dir=$1 pid arg a m esc dev back recorded=""
    case $dir in /*/*) ;; *) return 0 ;; esac # never /, never a relative path
    # 1. Daemons (the pid our scripts recorded, or any kvfs whose arguments name a path in dir):
    #    a dead daemon lets its mount and the file system under its store go.
    read -r recorded <"$dir/daemon.pid" 2>/dev/null
    for pid in $({ echo "$recorded"; pgrep -x kvfs; } 2>/dev/null | sort -un); do
        if [ "$pid" = "$$" ] || [ ! -r "/proc/$pid/cmdline" ]; then continue; fi
        while IFS= read -r -d '' arg; do
            case $arg in
            "$dir"/*)
                kill -9 "$pid" 2>/dev/null && echo "killed kvfs daemon $pid ($arg)"
                break
                ;;
            esac
        done <"/proc/$pid/cmdline"
    done
    for a in $(seq 50); do
        if [ -z "$recorded" ] || ! kill -0 "$recorded" 2>/dev/null; then break; fi
        sleep 0.1
    done
    # 2. Mounts inside dir: FUSE ones first (a store may live on another of them), then the
    #    others deepest first. (awk -v would undo the escapes in the prefix; ENVIRON does not.)
    esc=$(mt_mounts_escape "$dir")
    MT_D="$esc/" awk 'index($2, ENVIRON["MT_D"]) == 1 {
        print ($3 ~ /^fuse/ ? 1 : 0), length($2), $3, $2 }' /proc/self/mounts |
        sort -k1,1nr -k2,2nr | while read -r _ _ a m; do
        m=$(printf '%b' "${m//\\/\\0}") # undo the octal escapes
        if [ "${a#fuse}" != "$a" ]; then
            fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || umount -l "$m"
        else
            umount "$m" 2>/dev/null || umount -l "$m"
        fi && echo "unmounted $m ($a)"
    done
    # 3. Loop devices backed by a file inside dir.
    command -v losetup >/dev/null || return 0
    losetup -l -n -O NAME,BACK-FILE 2>/dev/null | while read -r dev back; do
        case $back in
        "$dir"/*) losetup -d "$dev" && echo "detached $dev ($back)" ;;
        esac
    done
}

# Releases the leftovers of run directory $1 if its shell is dead and it did not clean up
# (DIR/owner still there); serialised by a lock on DIR. Prints what it did.
# shellcheck disable=SC2094 # DIR is only locked through fd 9, never read or written through it
mt_reap_dir() {
    local dir=$1 out
    [ -f "$dir/owner" ] || return 0
    (
        flock -n 9 || exit 0 # another run or a watchdog is at it
        if [ ! -f "$dir/owner" ] || mt_owner_alive "$dir/owner"; then exit 0; fi
        out=$(mt_release_dir "$dir")
        # Its loop images (*.img, possibly GiBs) go; the rest stays for inspection.
        out+=$(find "$dir" -maxdepth 1 -type f -name '*.img' -printf '\nremoved %p' -delete)
        rm -f "$dir/owner"
        if [ -n "$out" ]; then
            echo "$MT_NAME: released what a killed run left in $dir (kept for inspection):"
            sed '/^$/d; s/^/  /' <<<"$out"
        fi
    ) 9<"$dir" >&2
}

# Creates the private directory and installs the trap and the watchdog.
mt_init() {
    mt_skip_unless_fuse
    [ -x "$KVFS_BIN" ] || {
        echo "FAIL: $MT_NAME: kvfs binary $KVFS_BIN not found (set KVFS_BIN or build target kvfs)" >&2
        exit 1
    }
    command -v fusermount3 >/dev/null || {
        echo "FAIL: $MT_NAME: fusermount3 not installed" >&2
        exit 1
    }
    local root=${KV_TEST_TMP:-/tmp} old
    mkdir -p "$root" && root=$(cd "$root" && pwd -P) || exit 1
    for old in "$root/mount-$MT_NAME".*; do
        [ -d "$old" ] && mt_reap_dir "$old"
    done
    MT_DIR=$(mktemp -d "$root/mount-$MT_NAME.XXXXXX") || exit 1
    echo "$$ $(mt_proc_start $$)" >"$MT_DIR/owner"
    chmod 755 "$MT_DIR"
    STORE=$MT_DIR/store
    MNT=$MT_DIR/mnt
    mkdir -p "$STORE" "$MNT"
    : >"$MT_DIR/daemon.pid"
    mt_san_setup
    trap mt_cleanup EXIT
    trap 'echo "$MT_NAME: interrupted" >&2; exit 130' INT
    trap 'echo "$MT_NAME: terminated (timeout ${MT_TIMEOUT}s?)" >&2; MT_FAILED=1; exit 124' TERM
    trap 'echo "$MT_NAME: hangup" >&2; MT_FAILED=1; exit 129' HUP
    # The watchdog wakes every second: if this shell is gone without its EXIT trap (SIGKILL), it
    # releases our leftovers at once; at the deadline it kills our daemon and this shell.
    (
        trap - EXIT INT HUP
        sleeper=""
        trap '[ -n "$sleeper" ] && kill $sleeper 2>/dev/null; exit 0' TERM
        deadline=$((SECONDS + MT_TIMEOUT))
        while [ $SECONDS -lt $deadline ]; do
            sleep 1 &
            sleeper=$!
            wait $sleeper
            mt_owner_alive "$MT_DIR/owner" || { mt_reap_dir "$MT_DIR"; exit 0; }
        done
        echo "TIMEOUT: $MT_NAME exceeded ${MT_TIMEOUT}s; killing our daemon and the test" >&2
        pid=$(cat "$MT_DIR/daemon.pid" 2>/dev/null)
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
        fusermount3 -uz "$MNT" 2>/dev/null
        read -r me _ <"$MT_DIR/owner" && mt_owner_alive "$MT_DIR/owner" && kill -TERM "$me"
        # The EXIT trap stops this watchdog; if the shell dies without it, clean up for it.
        while mt_owner_alive "$MT_DIR/owner"; do
            sleep 1 &
            sleeper=$!
            wait $sleeper
        done
        mt_reap_dir "$MT_DIR"
    ) &
    MT_WATCHDOG_PID=$!
    mt_log "dir $MT_DIR, kvfs $KVFS_BIN, timeout ${MT_TIMEOUT}s"
}

# Mounts STORE on MNT with the given -o options (may be empty); waits until it is mounted.
mt_mount() {
    MT_MOUNT_OPTS=${1-$MT_MOUNT_OPTS}
    local args=(mount -f)
    [ -n "$MT_MOUNT_OPTS" ] && args+=(-o "$MT_MOUNT_OPTS")
    echo "== $(date +%T) kvfs ${args[*]} $STORE $MNT" >>"$MT_DIR/kvfs.log"
    "$KVFS_BIN" "${args[@]}" "$STORE" "$MNT" >>"$MT_DIR/kvfs.log" 2>&1 &
    DAEMON_PID=$!
    echo "$DAEMON_PID" >"$MT_DIR/daemon.pid"
    local i=0
    while ! mountpoint -q "$MNT"; do
        if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            wait "$DAEMON_PID"
            local rc=$?
            DAEMON_PID=""
            mt_fail "kvfs mount exited with status $rc before the mount appeared"
        fi
        i=$((i + 1))
        [ $i -lt 300 ] || mt_fail "mount did not appear within 30s"
        sleep 0.1
    done
    mt_log "mounted (pid $DAEMON_PID, -o ${MT_MOUNT_OPTS:-none})"
}

# Unmounts cleanly and checks that the daemon then exits with status 0.
mt_unmount() {
    local i=0
    while ! fusermount3 -u "$MNT" 2>"$MT_DIR/umount.err"; do
        i=$((i + 1))
        [ $i -lt 50 ] || mt_fail "fusermount3 -u failed: $(cat "$MT_DIR/umount.err")"
        sleep 0.1
    done
    mt_stop_daemon 60
    mt_san_check || mt_fail "sanitizer report (above) from the daemon or another process"
    [ "$MT_DAEMON_RC" = 0 ] || mt_fail "daemon exited with status $MT_DAEMON_RC after unmount"
    mt_log "unmounted"
}

mt_remount() {
    mt_unmount
    mt_mount "$MT_MOUNT_OPTS"
}

# SIGKILLs our daemon (no chance to flush anything), then lazily unmounts the dead mount.
mt_kill9_daemon() {
    [ -n "$DAEMON_PID" ] || mt_fail "kill9_daemon: no daemon running"
    kill -9 "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=""
    : >"$MT_DIR/daemon.pid"
    fusermount3 -uz "$MNT" 2>/dev/null
    local i=0
    while mountpoint -q "$MNT"; do
        i=$((i + 1))
        [ $i -lt 50 ] || mt_fail "dead mount still present after fusermount3 -uz"
        sleep 0.1
    done
    mt_log "daemon killed with SIGKILL, mount detached"
}

# Pid holding the flock on a store's LOCK file, from /proc/locks (for daemons we did not
# start with -f). Prints nothing when nobody holds it.
mt_lock_holder() {
    local ino dev key
    ino=$(stat -c %i "$1/LOCK" 2>/dev/null) || return 0
    dev=$(stat -c %d "$1/LOCK")
    key=$(printf '%02x:%02x:%s' $(((dev >> 8) & 0xfff)) $((dev & 0xff)) "$ino")
    awk -v key="$key" '
        { for (i = 2; i <= NF; i++) if ($i == key) { print $(i - 1); exit } }' /proc/locks
}

# Writes a sorted manifest of a tree: one line per entry with path, type+mode, uid, gid, size,
# mtime (ns), nlink and symlink target; then the sha256 of every regular file up to 1 GiB
# (bigger ones are checked separately); then every xattr (hex values). With a third argument
# "notimes", owners and directory sizes and mtimes are left out (to compare two trees built
# separately rather than one tree over time).
mt_manifest() {
    local dir=$1 out=$2 notimes=${3:-}
    (
        cd "$dir" || exit 1
        if [ "$notimes" = notimes ]; then
            find . -printf 'E %p %M %n %l\n' | LC_ALL=C sort
            find . -type f -printf 'S %p %s\n' | LC_ALL=C sort
        else
            # Directory sizes are filesystem-specific, so they are left out.
            { find . ! -type d -printf 'E %p %M %U %G %s %T@ %n %l\n'
              find . -type d -printf 'E %p %M %U %G - %T@ %n\n'; } | LC_ALL=C sort
        fi
        find . -type f -size -1048577k -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum |
            sed 's/^/H /'
        find . -type f -size +1048576k -printf 'H (not hashed, %s bytes) %p\n' | LC_ALL=C sort
        getfattr -R -h -d -m - -e hex . 2>/dev/null | awk '
            /^# file: / { f = substr($0, 9); next }
            /=/ { print "X " f " " $0 }' | LC_ALL=C sort
    ) >"$out" || mt_fail "manifest of $dir failed"
}

# Compares two manifests; fails with the first differences. An optional third argument is an
# extended regex of lines to leave out of both.
mt_compare_manifests() {
    local skip=${3:-^$}
    if ! diff -u <(grep -Ev "$skip" "$1") <(grep -Ev "$skip" "$2") >"$MT_DIR/manifest.diff"; then
        head -n 40 "$MT_DIR/manifest.diff" >&2
        mt_fail "manifests differ ($1 vs $2; full diff in $MT_DIR/manifest.diff)"
    fi
}
