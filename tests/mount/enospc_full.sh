#!/bin/bash
# enospc_full.sh: a really full disk under kvfs (durability contract 5), complementing enospc.sh
# (which fills a tmpfs and recovers by growing it). Here the store lives on a 256 MiB ext4 image
# with no reserved blocks, so the only way back is from inside kvfs: 40 files are written and
# fsynced (sha256 manifest), then four parallel writers and a small-file/xattr/mkdir loop fill
# the disk until they fail with ENOSPC (never EIO, never a hang, daemon alive) - after at
# least MIN_FILL_PERCENT of the free space holds data (printed); every
# file written before is intact while full, after an unmount and a remount of the full disk,
# and `kvfs fsck` is clean; then the fill files are deleted from inside kvfs, the store is
# compacted (`kvfs compact`), and writing works again (64 MiB written and read back).
. "$(dirname "$0")/lib.sh"

mt_init
for tool in mkfs.ext4 losetup; do
    command -v $tool >/dev/null || mt_fail "$tool is not installed"
done
IMG=$MT_DIR/ext4.img
EMNT=$MT_DIR/ext4
LOOP=""
mt_cleanup_hook() {
    if [ -n "$EMNT" ] && mountpoint -q "$EMNT"; then umount "$EMNT" || umount -l "$EMNT"; fi
    [ -n "$LOOP" ] && losetup -d "$LOOP"
    rm -f "$IMG"
}
truncate -s 256M "$IMG" && mkfs.ext4 -q -F -m 0 "$IMG" || mt_fail "cannot make the ext4 image"
LOOP=$(losetup -f --show "$IMG") || mt_fail "no loop device"
mkdir -p "$EMNT"
mount -t ext4 "$LOOP" "$EMNT" || mt_fail "cannot mount the ext4 image"
STORE=$EMNT/store
OPTS="memtable_size=4M"
FREE0=$(df -B1 --output=avail "$EMNT" | tail -n 1 | tr -d ' ')
# The fraction of the file system's free space that kvfs turns into user data before ENOSPC
# (stored data bytes as st_blocks counts them, after a remount, over the free space before the
# store existed). Measured: 59-71% while an L0 -> L1 compaction needed all of L1 again as free
# space; 78-83% once compaction bounded its headroom (kvcore/db/compaction.c, "Bounded
# headroom"); 86% with file data in the value log. Most of the rest is the space reserve:
# kvcore/db/reserve.c sizes it as memtable + 2 capped tables + half a 64 MiB value-log segment
# (44 MiB), capped at 1/8 of this disk (32 MiB). With -o reserve=20M the fill was 90%, with
# 12M 93%, and recovery still worked (deleted files empty whole segments, so GC moves little),
# so smaller value-log segments on small disks would buy ~4-7 points.
MIN_FILL_PERCENT=${MIN_FILL_PERCENT:-75}

fsck_clean() {
    timeout -k 5 120 "$KVFS_BIN" fsck "$STORE" >"$MT_DIR/fsck.log" 2>&1 ||
        mt_fail "kvfs fsck ($1) exit $?: $(tail -n 20 "$MT_DIR/fsck.log")"
}
check_keep() {
    (cd "$MNT/keep" && sha256sum --quiet -c "$MT_DIR/keep.sha256") >"$MT_DIR/check.out" 2>&1 ||
        mt_fail "files written before the disk filled differ ($1): $(head -n 10 "$MT_DIR/check.out")"
}
# Every error in a log must be ENOSPC.
only_enospc() {
    if grep -v "No space left on device" "$1" | grep -Ei "error|cannot|failed|denied|Input/output"; then
        mt_fail "$2: an error other than ENOSPC (above)"
    fi
}

mt_mount "$OPTS"
mkdir "$MNT/keep" "$MNT/fill" "$MNT/small" || mt_fail mkdir
for i in $(seq 1 40); do
    # ~56 MiB in all: a store holding real data, so that reclaiming space means rewriting it
    head -c $(((i % 7 + 4) * 200000 + i)) /dev/urandom >"$MNT/keep/k$i" || mt_fail "write keep/k$i"
done
setfattr -n user.keep -v kept "$MNT/keep/k1" || mt_fail setfattr
sync "$MNT/keep"/* "$MNT/keep" || mt_fail "fsync of keep"
(cd "$MNT/keep" && sha256sum k*) >"$MT_DIR/keep.sha256" || mt_fail "manifest"
mt_log "40 files written and fsynced; filling the disk ($(df -h --output=avail "$EMNT" | tail -n 1) free)"

# Four streaming writers (80 MiB each: together more than the disk holds) and one metadata
# loop. With the writeback cache write(2) only fills the page cache, so a writer learns of
# ENOSPC at its fsync (conv=fsync); each failed writeback costs a compaction attempt, which is
# why the writers are bounded rather than left to write until they fail.
pids=()
for w in 1 2 3 4; do
    (
        timeout -k 5 150 dd if=/dev/urandom of="$MNT/fill/f$w" bs=1M count=80 conv=fsync \
            >"$MT_DIR/fill$w.err" 2>&1
        echo $? >"$MT_DIR/fill$w.rc"
    ) &
    pids+=($!)
done
(
    i=0
    while [ $i -lt 200000 ]; do
        mkdir "$MNT/small/d$i" 2>>"$MT_DIR/small.err" || break
        { head -c 3000 /dev/urandom >"$MNT/small/d$i/f"; } 2>>"$MT_DIR/small.err" || break
        setfattr -n user.x -v "$i" "$MNT/small/d$i/f" 2>>"$MT_DIR/small.err" || break
        i=$((i + 1))
    done
    echo "$i small directories before the first failure" >"$MT_DIR/small.count"
) &
pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
full=0
for w in 1 2 3 4; do
    grep -q "No space left on device" "$MT_DIR/fill$w.err" && full=$((full + 1))
    rc=$(cat "$MT_DIR/fill$w.rc")
    [ "$rc" != 124 ] && [ "$rc" != 137 ] || mt_fail "writer $w hung (timeout after 150 s)"
    only_enospc "$MT_DIR/fill$w.err" "writer $w"
done
[ $full -gt 0 ] || mt_fail "320 MiB fitted on a 256 MiB disk? $(cat "$MT_DIR"/fill*.err)"
# The metadata loop may still fit (kvfs keeps a little room for small writes) or fail: if it
# failed, only ENOSPC.
only_enospc "$MT_DIR/small.err" "small files, mkdir and xattrs"
mt_log "full: $(cat "$MT_DIR/small.count"); $(df -h --output=avail "$EMNT" | tail -n 1) left"
kill -0 "$DAEMON_PID" 2>/dev/null || mt_fail "the daemon died on a full disk"
check_keep "while full"
[ "$(getfattr --absolute-names --only-values -n user.keep "$MNT/keep/k1")" = kept ] ||
    mt_fail "xattr lost while full"

mt_log "unmount and remount on the full disk"
mt_unmount
fsck_clean "on the full disk"
mt_mount "$OPTS"
check_keep "after remount on the full disk"
stored=$(du -s -B1 "$MNT" | cut -f1)
fill=$((stored * 100 / FREE0))
mt_log "fill: $stored bytes of data stored on $FREE0 bytes free at the start: $fill%"
[ "$fill" -ge "$MIN_FILL_PERCENT" ] ||
    mt_fail "kvfs held only $fill% of the disk's free space as data before ENOSPC" \
        "(want >= $MIN_FILL_PERCENT%): compaction or value-log GC needs too much headroom"

mt_log "freeing space from inside kvfs"
t0=$SECONDS
until rm -rf "$MNT/fill" "$MNT/small" 2>"$MT_DIR/rm.err"; do
    only_enospc "$MT_DIR/rm.err" "rm on the full disk"
    [ $((SECONDS - t0)) -lt 30 ] ||
        mt_fail "files cannot be deleted from inside kvfs on a full disk (30 s of ENOSPC):" \
            "a deletion needs WAL and table space, and kvcore keeps no reserve for it" \
            "($(df -h --output=avail "$EMNT" | tail -n 1) free)"
    sleep 1
done
[ ! -e "$MNT/fill" ] || mt_fail "fill still there"
mt_unmount
timeout -k 5 300 "$KVFS_BIN" compact "$STORE" >"$MT_DIR/compact.log" 2>&1 ||
    mt_fail "kvfs compact after deleting ($(df -h --output=avail "$EMNT" | tail -n 1) free):" \
        "the compaction that would reclaim the deleted files needs free space for its" \
        "output first: $(tail -n 3 "$MT_DIR/compact.log")"
mt_log "compacted: $(df -h --output=avail "$EMNT" | tail -n 1) free"
mt_mount "$OPTS"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$MT_DIR/after" || mt_fail "random data"
dd if="$MT_DIR/after" of="$MNT/after" bs=1M conv=fsync status=none 2>"$MT_DIR/after.err" ||
    mt_fail "writing after space was freed: $(cat "$MT_DIR/after.err")"
mkdir "$MNT/after.d" && echo x >"$MNT/after.d/x" || mt_fail "metadata after space was freed"
cmp "$MT_DIR/after" "$MNT/after" || mt_fail "file written after recovery differs"
check_keep "after recovery"
mt_unmount
fsck_clean "after recovery"
mt_mount "$OPTS"
check_keep "after the last remount"
cmp "$MT_DIR/after" "$MNT/after" || mt_fail "file written after recovery differs after remount"
mt_unmount
mt_log "PASS"
