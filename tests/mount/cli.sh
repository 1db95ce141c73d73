#!/bin/bash
# cli.sh: the kvfs command line: help/version, refused mounts (locked store, a non-empty
# directory that is not a store, missing mount point), daemon mode, fsck, the fstab form,
# SIGTERM with directories open; with an ASan build, that a sanitizer report of the daemon
# fails a mount test (lib.sh).
. "$(dirname "$0")/lib.sh"

mt_init
failed=0
check() { # check DESCRIPTION COMMAND...: the command must succeed
    local what=$1
    shift
    if "$@"; then
        echo "ok   $what"
    else
        echo "FAIL $what"
        failed=1
    fi
}
# Runs kvfs with a time limit, output to $MT_DIR/out; prints nothing, returns kvfs's status.
# A refused mount must fail at once: 10 s is plenty and bounds a wrongly successful "-f" mount.
kv() {
    timeout -k 5 "${KV_LIMIT:-10}" "$KVFS_BIN" "$@" >"$MT_DIR/out" 2>&1
}
refused() { # refused WHAT: the last kv call failed (not timeout) and said something
    local rc=$1
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && [ -s "$MT_DIR/out" ] || {
        echo "  (exit $rc, output: $(head -c 300 "$MT_DIR/out"))"
        return 1
    }
}

kv --help
rc=$?
check "--help exits 0 (got $rc)" [ $rc -eq 0 ]
check "--help mentions mount" grep -q mount "$MT_DIR/out"
check "--help mentions fsck" grep -q fsck "$MT_DIR/out"
kv --version
rc=$?
check "--version exits 0 (got $rc)" [ $rc -eq 0 ]
check "--version prints a version number" grep -Eq '[0-9]+\.[0-9]+' "$MT_DIR/out"
kv
rc=$?
check "no arguments: usage error" refused $rc
kv no-such-command
rc=$?
check "unknown command: error" refused $rc

kv mount "$STORE" "$MT_DIR/no-such-dir/mnt"
rc=$?
check "missing mount point refused" refused $rc
check "  and the error names the mount point" grep -q "no-such-dir" "$MT_DIR/out"

# Bad option values are refused with a line naming the option, and nothing is mounted.
for opt in writeback=2 cache_size=99999999999999G cache_size=-1 memtable_size=1k sync=bogus \
    entry_timeout=-1 attr_timeout=nan log_level=loud reserve=12X chunk_cache_size=1Q; do
    kv mount -f -o "$opt" "$MT_DIR/optstore" "$MNT"
    rc=$?
    check "-o $opt refused" refused $rc
    check "  and the error names it" grep -qE "${opt%%=*}|timeouts" "$MT_DIR/out"
    check "  and nothing was mounted" eval '! mountpoint -q "$MNT"'
done

mkdir -p "$MT_DIR/notastore"
echo "precious" >"$MT_DIR/notastore/hello.txt"
kv mount -f "$MT_DIR/notastore" "$MNT"
rc=$?
check "non-empty directory that is not a store refused" refused $rc
check "  and nothing was mounted" eval '! mountpoint -q "$MNT"'
check "  and the directory is untouched" eval '[ "$(ls -A "$MT_DIR/notastore")" = hello.txt ] &&
    [ "$(cat "$MT_DIR/notastore/hello.txt")" = precious ]'
if mountpoint -q "$MNT"; then fusermount3 -u "$MNT"; fi

kv fsck "$MT_DIR/no-such-store"
rc=$?
check "fsck of a missing store fails" refused $rc
check "  and says the directory is missing" grep -q "not a kvfs store (no such directory)" \
    "$MT_DIR/out"
# stats and compact never create a store either; an empty directory is not "other files".
mkdir -p "$MT_DIR/empty"
for cmd in stats compact; do
    kv "$cmd" "$MT_DIR/empty"
    rc=$?
    check "$cmd of an empty directory fails" refused $rc
    check "  and says it is empty" grep -q "not a kvfs store (an empty directory)" "$MT_DIR/out"
    check "  and leaves it empty" [ -z "$(ls -A "$MT_DIR/empty")" ]
    kv "$cmd" "$MT_DIR/notastore"
    rc=$?
    check "$cmd of a directory of other files fails" refused $rc
    check "  and says so" grep -q "not a kvfs store (a non-empty directory of other files)" \
        "$MT_DIR/out"
done

# Daemon mode (no -f): kvfs returns once mounted; the daemon holds the store's LOCK.
kv mount "$STORE" "$MNT"
rc=$?
check "daemon-mode mount exits 0 (got $rc)" [ $rc -eq 0 ]
if mountpoint -q "$MNT"; then
    DAEMON_PID=$(mt_lock_holder "$STORE")
    echo "$DAEMON_PID" >"$MT_DIR/daemon.pid"
    check "daemon holds the store LOCK (pid '${DAEMON_PID}')" [ -n "$DAEMON_PID" ]
    echo hello >"$MNT/file"
    check "daemon-mode mount works" [ "$(cat "$MNT/file")" = hello ]
    mkdir -p "$MT_DIR/mnt2"
    kv mount -f "$STORE" "$MT_DIR/mnt2"
    rc=$?
    check "second mount of a locked store refused" refused $rc
    check "  and the second mount point is not mounted" eval '! mountpoint -q "$MT_DIR/mnt2"'
    mountpoint -q "$MT_DIR/mnt2" && fusermount3 -u "$MT_DIR/mnt2"
    check "  and the first mount still works" [ "$(cat "$MNT/file")" = hello ]
    kv fsck "$STORE"
    rc=$?
    check "fsck of a mounted (locked) store refused" refused $rc
    fusermount3 -u "$MNT"
    if [ -n "$DAEMON_PID" ]; then
        for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        check "daemon exits after fusermount3 -u" eval '! kill -0 "$DAEMON_PID" 2>/dev/null'
        kill -0 "$DAEMON_PID" 2>/dev/null && kill -9 "$DAEMON_PID"
    fi
    DAEMON_PID=""
    : >"$MT_DIR/daemon.pid"
else
    echo "FAIL daemon-mode mount did not appear"
    failed=1
fi

KV_LIMIT=120 kv fsck "$STORE"
rc=$?
check "fsck of the unmounted store exits 0 (got $rc)" [ $rc -eq 0 ]
[ $rc -eq 0 ] || head -n 20 "$MT_DIR/out"

# The form mount.fuse3 uses (kvfs STORE MOUNTPOINT -o OPTS), directly and through mount(8).
timeout -k 5 30 "$KVFS_BIN" "$STORE" "$MNT" -o rw >"$MT_DIR/out" 2>&1
rc=$?
check "fstab form 'kvfs STORE MNT -o rw' mounts (exit $rc)" mountpoint -q "$MNT"
if mountpoint -q "$MNT"; then
    check "  and the earlier file is there" [ "$(cat "$MNT/file" 2>/dev/null)" = hello ]
    pid=$(mt_lock_holder "$STORE")
    fusermount3 -u "$MNT"
    [ -n "$pid" ] && for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
# mount(8) runs its helper with a fixed PATH, so name the binary in the "fuse" type's
# PROGRAM#SOURCE form; mount.fuse3 then calls "PROGRAM SOURCE MNT -o OPTS" as for fuse.kvfs.
if [ -x /sbin/mount.fuse3 ] || [ -x /usr/sbin/mount.fuse3 ]; then
    timeout -k 5 30 mount -t fuse "$KVFS_BIN#$STORE" "$MNT" -o rw >"$MT_DIR/out" 2>&1
    rc=$?
    check "mount -t fuse 'kvfs#STORE' MNT, via mount.fuse3 (exit $rc)" mountpoint -q "$MNT"
    [ $rc -eq 0 ] || head -n 5 "$MT_DIR/out"
    if mountpoint -q "$MNT"; then
        check "  and the earlier file is there" [ "$(cat "$MNT/file" 2>/dev/null)" = hello ]
        pid=$(mt_lock_holder "$STORE")
        check "  umount MNT works" umount "$MNT"
        [ -n "$pid" ] && for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
else
    echo "skip mount -t fuse: mount.fuse3 not installed"
fi

# SIGTERM (what a service manager sends) with directories open, so no releasedir ever comes:
# the daemon must still exit 0 having freed them (under ASan, LeakSanitizer checks at exit and
# lib.sh fails the test on its report), and the store must be clean.
mt_mount ""
mkdir -p "$MNT/held/sub" && touch "$MNT/held/a"
exec 8<"$MNT/held" 9<"$MNT/held/sub"
kill -TERM "$DAEMON_PID"
mt_stop_daemon 30
check "SIGTERM with directories open: the daemon exits 0 (got $MT_DAEMON_RC)" \
    [ "$MT_DAEMON_RC" = 0 ]
exec 8<&- 9<&-
fusermount3 -uz "$MNT" 2>/dev/null
KV_LIMIT=120 kv fsck "$STORE"
rc=$?
check "  and fsck finds the store clean (got $rc)" [ $rc -eq 0 ]
check "  and nothing was reported by a sanitizer" mt_san_check

# The harness must see a sanitizer report of a detached process (lib.sh, mt_san_check). With an
# ASan build, make the daemon write a real one: max_allocation_size_mb=1 turns libfuse's first
# 1 MiB request buffer into an "allocation size too big" report (and an abort).
if ASAN_OPTIONS=help=1:log_path=stderr "$KVFS_BIN" --version 2>&1 | grep -c AddressSanitizer >/dev/null; then
    mkdir -p "$MT_DIR/san-store"
    ASAN_OPTIONS="$ASAN_OPTIONS:max_allocation_size_mb=1" \
        timeout -k 5 30 "$KVFS_BIN" mount -f "$MT_DIR/san-store" "$MNT" >"$MT_DIR/out" 2>&1 &
    san_pid=$!
    # (It dies on the kernel's INIT request, usually before the mount can be seen.)
    for _ in $(seq 100); do
        mountpoint -q "$MNT" || ! kill -0 $san_pid 2>/dev/null && break
        sleep 0.1
    done
    stat "$MNT" >/dev/null 2>&1 # a request, if the daemon is still there to take it
    wait $san_pid
    rc=$?
    fusermount3 -uz "$MNT" 2>/dev/null
    check "an ASan report makes the daemon fail (exit $rc)" eval '[ $rc -ne 0 ] && [ $rc -ne 124 ]'
    echo "(the sanitizer report below is expected)"
    check "  and the harness finds and prints it" eval '! mt_san_check'
    check "  and it is the one caused" grep -qs "exceeds maximum supported size" \
        "$MT_DIR"/san/*
    mkdir -p "$MT_DIR/san-expected"
    mv "$MT_DIR"/san/* "$MT_DIR/san-expected/" 2>/dev/null
    check "  (set aside; nothing else was reported)" mt_san_check
else
    echo "skip sanitizer report check: $KVFS_BIN is not built with ASan"
fi

[ $failed -eq 0 ] || mt_fail "command-line checks failed (FAIL lines above)"
mt_log "PASS"
