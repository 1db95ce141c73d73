#!/bin/bash
# mount_leftovers.sh: lib.sh cleans up after mount tests killed hard, and only after them
# (registered as ctest mount.leftovers by tests/CMakeLists.txt).
#
# A child test (written below, sourcing tests/mount/lib.sh) attaches a loop device, mounts ext4
# on it and kvfs on a store there, all inside its private dir, then is killed in four ways:
#   1. its shell alone is SIGKILLed: the watchdog must release everything within seconds;
#   2. its whole process group is SIGKILLed (as a ctest timeout does): everything stays, and the
#      next run of the same test must release it at its start;
#   3. SIGHUP: the trap must release everything;
#   4. a live run must not be touched by a second run starting next to it.
# Throughout, a loop device and a mount of this test's own (outside the child's dir) must survive.
. "$(dirname "$0")/../mount/lib.sh"

mt_init
for tool in mkfs.ext4 losetup setsid flock; do
    command -v $tool >/dev/null || mt_fail "$tool is not installed"
done

# A bystander: a loop device and a mount the child runs did not create.
BY_IMG=$MT_DIR/bystander.img
BY_MNT=$MT_DIR/bystander
truncate -s 32M "$BY_IMG" && mkfs.ext4 -q -F "$BY_IMG" || mt_fail "cannot make the bystander image"
BY_LOOP=$(losetup -f --show "$BY_IMG") || mt_fail "no loop device"
mkdir -p "$BY_MNT" && mount -t ext4 "$BY_LOOP" "$BY_MNT" || mt_fail "cannot mount the bystander"
mt_cleanup_hook() {
    mountpoint -q "$BY_MNT" && umount "$BY_MNT"
    [ -n "${BY_LOOP:-}" ] && losetup -d "$BY_LOOP" 2>/dev/null
}

RUNS=$MT_DIR/runs # the children's $KV_TEST_TMP
mkdir -p "$RUNS"
CHILD=$MT_DIR/leftovers_child.sh
cat >"$CHILD" <<EOF
#!/bin/bash
# Child test: sets up a loop device, ext4 and a kvfs mount in its dir, then: \$1 = hang | ok.
. "$MT_SRC_DIR/lib.sh"
mt_init
truncate -s 64M "\$MT_DIR/fs.img" && mkfs.ext4 -q -F "\$MT_DIR/fs.img" || mt_fail mkfs
LOOP=\$(losetup -f --show "\$MT_DIR/fs.img") || mt_fail losetup
mkdir -p "\$MT_DIR/disk" && mount -t ext4 "\$LOOP" "\$MT_DIR/disk" || mt_fail mount
STORE=\$MT_DIR/disk/store
mkdir -p "\$STORE"
mt_mount ""
echo hello >"\$MNT/f" || mt_fail write
echo "READY \$MT_DIR \$LOOP \$DAEMON_PID"
if [ "\$1" = ok ]; then
    mt_unmount
    umount "\$MT_DIR/disk" && losetup -d "\$LOOP" || mt_fail "teardown"
    exit 0
fi
while :; do sleep 0.2; done
EOF

# Mounts and loop devices inside child dir $1, one per line.
leftovers() {
    awk -v d="$1/" 'index($2, d) == 1 { print "mount " $2 }' /proc/self/mounts
    losetup -l -n -O NAME,BACK-FILE | awk -v d="$1/" 'index($2, d) == 1 { print "loop " $1 }'
}

bystander_intact() {
    mountpoint -q "$BY_MNT" || mt_fail "$1: the bystander mount $BY_MNT is gone"
    losetup -l -n -O NAME,BACK-FILE | grep -qF "$BY_LOOP $BY_IMG" ||
        mt_fail "$1: the bystander loop device $BY_LOOP was detached"
}

# start_child MODE OUT [setsid]: starts the child in the background and waits for READY; sets
# CHILD_PID, CHILD_DIR, CHILD_DAEMON.
start_child() {
    local i=0
    if [ "${3:-}" = setsid ]; then
        KV_TEST_TMP=$RUNS MT_TIMEOUT=120 setsid bash "$CHILD" "$1" >"$2" 2>&1 &
    else
        KV_TEST_TMP=$RUNS MT_TIMEOUT=120 bash "$CHILD" "$1" >"$2" 2>&1 &
    fi
    CHILD_PID=$!
    until grep -q '^READY ' "$2"; do
        kill -0 $CHILD_PID 2>/dev/null || mt_fail "child ($1) died before READY: $(cat "$2")"
        i=$((i + 1))
        [ $i -lt 300 ] || mt_fail "child ($1) not ready after 30 s: $(cat "$2")"
        sleep 0.1
    done
    read -r _ CHILD_DIR _ CHILD_DAEMON < <(grep '^READY ' "$2")
    [ -n "$(leftovers "$CHILD_DIR")" ] || mt_fail "child ($1) mounted nothing in $CHILD_DIR"
}

# wait_released DIR WHAT SECONDS: fails unless DIR holds no mount or loop within SECONDS.
wait_released() {
    local i=0
    while [ -n "$(leftovers "$1")" ]; do
        i=$((i + 1))
        [ $i -lt $(($3 * 10)) ] || mt_fail "$2: still there after $3 s: $(leftovers "$1")"
        sleep 0.1
    done
}

mt_log "1. the child's shell is SIGKILLed; its watchdog releases what it left"
start_child hang "$MT_DIR/c1.out"
kill -9 $CHILD_PID
wait $CHILD_PID 2>/dev/null
wait_released "$CHILD_DIR" "after SIGKILL of the test's shell" 10
for _ in $(seq 50); do kill -0 "$CHILD_DAEMON" 2>/dev/null || break; sleep 0.1; done
kill -0 "$CHILD_DAEMON" 2>/dev/null && mt_fail "the killed run's kvfs daemon $CHILD_DAEMON still runs"
[ ! -e "$CHILD_DIR/fs.img" ] || mt_fail "the killed run's loop image was not removed"
[ -e "$CHILD_DIR/kvfs.log" ] || mt_fail "the killed run's dir was not kept for inspection"
bystander_intact "case 1"

mt_log "2. the child's process group is SIGKILLed; the next run releases what it left"
start_child hang "$MT_DIR/c2.out" setsid
first=$CHILD_DIR
pgid=$(ps -o pgid= -p $CHILD_PID | tr -d ' ')
[ -n "$pgid" ] && [ "$pgid" != "$(ps -o pgid= -p $$ | tr -d ' ')" ] || mt_fail "setsid gave no group"
kill -9 -- "-$pgid"
wait $CHILD_PID 2>/dev/null
sleep 1
[ -n "$(leftovers "$first")" ] || mt_fail "nothing left behind: case 2 tests nothing"
start_child ok "$MT_DIR/c3.out"
wait $CHILD_PID || mt_fail "the next run failed: $(cat "$MT_DIR/c3.out")"
[ -z "$(leftovers "$first")" ] || mt_fail "the next run left the killed run's $(leftovers "$first")"
grep -q "released what a killed run left in $first" "$MT_DIR/c3.out" ||
    mt_fail "the next run did not say what it released: $(cat "$MT_DIR/c3.out")"
[ -z "$(leftovers "$CHILD_DIR")" ] || mt_fail "the clean run left $(leftovers "$CHILD_DIR")"
bystander_intact "case 2"

mt_log "3. SIGHUP: the trap releases everything"
start_child hang "$MT_DIR/c4.out"
kill -HUP $CHILD_PID
wait $CHILD_PID
rc=$?
[ $rc = 129 ] || mt_fail "exit status after SIGHUP: $rc, want 129"
wait_released "$CHILD_DIR" "after SIGHUP" 5
bystander_intact "case 3"

mt_log "4. a live run is left alone by the next run"
start_child hang "$MT_DIR/c5.out"
live=$CHILD_DIR
live_pid=$CHILD_PID
start_child ok "$MT_DIR/c6.out"
wait $CHILD_PID || mt_fail "the second run failed: $(cat "$MT_DIR/c6.out")"
[ -n "$(leftovers "$live")" ] && kill -0 $live_pid 2>/dev/null ||
    mt_fail "the second run touched the live run $live"
mountpoint -q "$live/mnt" && [ "$(cat "$live/mnt/f")" = hello ] ||
    mt_fail "the live run's kvfs mount stopped working"
kill -TERM $live_pid
wait $live_pid
wait_released "$live" "after SIGTERM" 5
bystander_intact "case 4"
mt_log "PASS"
