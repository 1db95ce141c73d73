#!/bin/bash
# tools.sh: everyday tools on kvfs (cp -a, tar, rsync -aHAX, links, symlinks, xattrs, sparse and
# >4 GiB files, truncate, a big directory rename, 100k files in one directory, parallel writers),
# then persistence: a manifest must survive unmount+mount and, for synced data and for every
# acknowledged namespace operation, kill -9 (with an open-unlinked file pending), after which
# `kvfs fsck` must find the store clean.
#
# MT_TREE is the tree copied around (default /usr/include); MT_MANY the size of the big
# directory (default 100000); MT_TOOLS_OPTS extra mount options.
. "$(dirname "$0")/lib.sh"

mt_init
TREE=${MT_TREE:-/usr/include}
MANY=${MT_MANY:-100000}
[ -d "$TREE" ] || mt_fail "tree $TREE to copy is missing"
mt_mount "${MT_TOOLS_OPTS:-}"

# Builds the same tree of special cases anywhere (used on local disk and on the mount).
make_special() {
    local d=$1
    mkdir -p "$d/sub/deeper" "$d/emptydir" || return 1
    printf 'hard link content\n' >"$d/file"
    ln "$d/file" "$d/link1" && ln "$d/file" "$d/link2" && ln "$d/file" "$d/sub/link3" || return 1
    ln -s file "$d/sym" && ln -s /nonexistent/target "$d/dangling" && ln -s ../file "$d/sub/up" ||
        return 1
    : >"$d/empty"
    setfattr -n user.alpha -v hello "$d/file" &&
        setfattr -n user.bin -v 0x00ff00ff00 "$d/sub" &&
        setfattr -n user.big -v "$(head -c 2000 /dev/zero | tr '\0' a)" "$d/empty" &&
        setfattr -n trusted.t -v secret "$d/file" || return 1
    truncate -s 100M "$d/sparse" &&
        printf 'in the middle' | dd of="$d/sparse" bs=4k seek=$((50 * 1024 * 1024)) \
            oflag=seek_bytes conv=notrunc status=none || return 1
    seq 1 100000 >"$d/trunc" && truncate -s 100000 "$d/trunc" && truncate -s 400000 "$d/trunc" ||
        return 1
    seq 1 50000 >"$d/shrunk" && truncate -s 12345 "$d/shrunk" || return 1
    mkfifo "$d/fifo" && chmod 0751 "$d/sub" && chmod 4755 "$d/empty" && chmod 0600 "$d/shrunk" ||
        return 1
    for i in $(seq 1 50); do printf '%s\n' "$i" >"$d/sub/deeper/n$i" || return 1; done
    touch -d '2001-02-03 04:05:06.123456789' "$d/file" &&
        touch -h -d '1999-12-31 23:59:59.5' "$d/sym" || return 1
}

mt_log "cp -a $TREE"
mt_run cp -a "$TREE" "$MNT/cp"
mt_run diff -r --no-dereference "$TREE" "$MNT/cp"
mt_manifest "$TREE" "$MT_DIR/tree.man"
mt_manifest "$MNT/cp" "$MT_DIR/cp.man"
mt_compare_manifests "$MT_DIR/tree.man" "$MT_DIR/cp.man"

mt_log "tar round trip"
mt_run tar -C "$(dirname "$TREE")" --xattrs -cf "$MT_DIR/tree.tar" "$(basename "$TREE")"
mkdir "$MNT/tarx" || mt_fail "mkdir tarx"
mt_run tar -C "$MNT/tarx" --xattrs -xpf "$MT_DIR/tree.tar"
mt_run tar -C "$MNT/tarx" -df "$MT_DIR/tree.tar"
mt_run tar -C "$MNT/tarx" --xattrs -cf "$MT_DIR/back.tar" "$(basename "$TREE")"
mkdir "$MT_DIR/untar" && mt_run tar -C "$MT_DIR/untar" --xattrs -xpf "$MT_DIR/back.tar"
mt_run diff -r --no-dereference "$TREE" "$MT_DIR/untar/$(basename "$TREE")"
rm -rf "$MT_DIR/untar" "$MT_DIR/tree.tar" "$MT_DIR/back.tar"
mt_run rm -rf "$MNT/tarx"

mt_log "special files, rsync -aHAX"
make_special "$MT_DIR/special" || mt_fail "building the special tree on local disk"
make_special "$MNT/special" || mt_fail "building the special tree on kvfs"
mt_manifest "$MT_DIR/special" "$MT_DIR/special-local.man" notimes
mt_manifest "$MNT/special" "$MT_DIR/special-kvfs.man" notimes
mt_compare_manifests "$MT_DIR/special-local.man" "$MT_DIR/special-kvfs.man"
[ "$(stat -c %h "$MNT/special/file")" = 4 ] || mt_fail "hard link count of special/file is not 4"
# rsync leaves a time alone when it matches to the second, so a copy made within the second
# the source was created keeps its own sub-second mtimes on symlinks, directories and fifos
# (ext4 to ext4 too) and the manifests below differ. Copy in a later second.
sleep 1.1
mt_run rsync -aHAX "$MT_DIR/special/" "$MNT/rs/"
rsync -aHAXn --itemize-changes "$MT_DIR/special/" "$MNT/rs/" >"$MT_DIR/rsync.out" 2>&1 ||
    mt_fail "rsync -n failed: $(head -n 5 "$MT_DIR/rsync.out")"
[ ! -s "$MT_DIR/rsync.out" ] || mt_fail "rsync -aHAX copy is not identical: $(head -n 10 "$MT_DIR/rsync.out")"
mt_manifest "$MT_DIR/special" "$MT_DIR/special-local-full.man"
mt_manifest "$MNT/rs" "$MT_DIR/rs.man"
mt_compare_manifests "$MT_DIR/special-local-full.man" "$MT_DIR/rs.man"
mt_run rsync -aHAX "$TREE/" "$MNT/rstree/"
rsync -aHAXn --itemize-changes "$TREE/" "$MNT/rstree/" >"$MT_DIR/rsync.out" 2>&1 ||
    mt_fail "rsync -n of $TREE failed: $(head -n 5 "$MT_DIR/rsync.out")"
[ ! -s "$MT_DIR/rsync.out" ] || mt_fail "rsync copy of $TREE not identical: $(head -n 10 "$MT_DIR/rsync.out")"
mt_run rm -rf "$MNT/rstree"

mt_log "sparse file beyond 4 GiB"
printf 'MARK-5G' | dd of="$MNT/huge" bs=4k seek=$((5 * 1024 * 1024 * 1024)) oflag=seek_bytes \
    conv=notrunc status=none || mt_fail "write at 5 GiB"
printf 'MARK-0' | dd of="$MNT/huge" conv=notrunc status=none || mt_fail "write at 0"
check_huge() {
    [ "$(stat -c %s "$MNT/huge")" = $((5 * 1024 * 1024 * 1024 + 7)) ] ||
        mt_fail "huge: size $(stat -c %s "$MNT/huge")"
    [ "$(dd if="$MNT/huge" bs=7 skip=$((5 * 1024 * 1024 * 1024)) iflag=skip_bytes count=1 status=none)" = MARK-5G ] ||
        mt_fail "huge: marker at 5 GiB wrong"
    [ "$(head -c 6 "$MNT/huge")" = MARK-0 ] || mt_fail "huge: marker at 0 wrong"
    [ "$(dd if="$MNT/huge" bs=1M skip=4096 count=1 status=none | tr -d '\0' | wc -c)" = 0 ] ||
        mt_fail "huge: hole at 4 GiB is not zeros"
    local blocks
    blocks=$(stat -c %b "$MNT/huge")
    [ "$blocks" -lt $((1024 * 1024 * 2)) ] || mt_fail "huge: $blocks blocks allocated for a sparse file"
}
check_huge

mt_log "rename of a big directory"
mt_run mv "$MNT/cp" "$MNT/cp-renamed"
mt_manifest "$MNT/cp-renamed" "$MT_DIR/cp-renamed.man"
mt_compare_manifests "$MT_DIR/cp.man" "$MT_DIR/cp-renamed.man"
[ ! -e "$MNT/cp" ] || mt_fail "old name of the renamed directory still exists"

mt_log "$MANY files in one directory"
mkdir "$MNT/many" || mt_fail "mkdir many"
(cd "$MNT/many" && seq -f 'file%07.0f' 1 "$MANY" | xargs touch) || mt_fail "creating $MANY files"
n=$(ls "$MNT/many" | wc -l)
[ "$n" = "$MANY" ] || mt_fail "ls many | wc -l says $n, want $MANY"
n=$(ls -f "$MNT/many" | sort -u | wc -l)
[ "$n" = $((MANY + 2)) ] || mt_fail "unsorted listing has $n unique names, want $((MANY + 2))"
(cd "$MNT/many" && seq -f 'file%07.0f' 1 2 "$MANY" | xargs rm) || mt_fail "removing half"
n=$(ls "$MNT/many" | wc -l)
[ "$n" = $((MANY / 2)) ] || mt_fail "after removing half: $n files, want $((MANY / 2))"
[ -e "$MNT/many/file$(printf %07d "$MANY")" ] && [ ! -e "$MNT/many/file0000001" ] ||
    mt_fail "wrong half removed"

mt_log "parallel writers"
head -c $((16 * 1024 * 1024)) /dev/urandom >"$MT_DIR/rand" || mt_fail "random source"
mkdir "$MNT/par" || mt_fail "mkdir par"
pids=()
for j in 0 1 2 3; do
    (
        for k in 0 1 2 3 4 5 6 7; do
            dd if="$MT_DIR/rand" of="$MNT/par/j$j-$k" bs=64k skip=$(((j * 8 + k) * 8)) count=8 \
                status=none || exit 1
        done
        # Disjoint 4 MiB regions of one shared file, written in 64 KiB pieces by 4 writers.
        dd if="$MT_DIR/rand" of="$MNT/par/shared" bs=64k skip=$((j * 64)) seek=$((j * 64)) \
            count=64 conv=notrunc status=none || exit 1
        for k in $(seq 1 200); do echo "writer $j line $k" >>"$MNT/par/log" || exit 1; done
    ) &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || mt_fail "a parallel writer failed"; done
cmp "$MT_DIR/rand" "$MNT/par/shared" || mt_fail "shared file written in parallel differs"
for j in 0 1 2 3; do
    for k in 0 1 2 3 4 5 6 7; do
        cmp <(dd if="$MT_DIR/rand" bs=64k skip=$(((j * 8 + k) * 8)) count=8 status=none) \
            "$MNT/par/j$j-$k" || mt_fail "par/j$j-$k differs"
    done
    [ "$(grep -c "^writer $j line" "$MNT/par/log")" = 200 ] &&
        grep "^writer $j line" "$MNT/par/log" | awk '{ if ($4 != NR) exit 1 }' ||
        mt_fail "appends of writer $j lost or reordered"
done
[ "$(wc -l <"$MNT/par/log")" = 800 ] || mt_fail "par/log has $(wc -l <"$MNT/par/log") lines, want 800"

mt_log "manifest, unmount, mount, manifest"
mt_manifest "$MNT" "$MT_DIR/before-remount.man"
mt_remount
mt_manifest "$MNT" "$MT_DIR/after-remount.man"
mt_compare_manifests "$MT_DIR/before-remount.man" "$MT_DIR/after-remount.man"
check_huge

mt_log "synced writes, then kill -9"
mkdir "$MNT/durable" || mt_fail "mkdir durable"
for i in $(seq 1 40); do
    dd if="$MT_DIR/rand" of="$MNT/durable/f$i" bs=4k skip=$((i * 3)) count=$((i % 7 + 1)) \
        conv=fsync status=none || mt_fail "durable write $i"
done
setfattr -n user.d -v synced "$MNT/durable/f1" && mv "$MNT/durable/f2" "$MNT/durable/f2-renamed" &&
    ln "$MNT/durable/f3" "$MNT/durable/f3-link" && rm "$MNT/durable/f4" &&
    truncate -s 1000 "$MNT/durable/f5" && mv "$MNT/many" "$MNT/many-renamed" ||
    mt_fail "metadata changes in durable"
mkdir "$MNT/scratch" || mt_fail "mkdir scratch"
sync -f "$MNT/durable" || mt_fail "syncfs"
# Namespace operations acknowledged but never synced: each reached the WAL before it returned,
# so kill -9 of the daemon must not lose them (durability contract 1; no data is involved, so
# the writeback cache does not matter).
mkdir -p "$MNT/acked/a/b" && touch "$MNT/acked/e1" "$MNT/acked/e2" &&
    mv "$MNT/acked/e1" "$MNT/acked/a/e1-moved" && ln "$MNT/acked/e2" "$MNT/acked/a/b/e2-link" &&
    ln -s ../e2 "$MNT/acked/a/sym" && chmod 0705 "$MNT/acked/a" && mkfifo "$MNT/acked/fifo" &&
    setfattr -n user.k -v acked "$MNT/acked/e2" && touch -d '2010-01-01 00:00:01' "$MNT/acked/e2" &&
    mkdir "$MNT/acked/gone" && rmdir "$MNT/acked/gone" && mv "$MNT/durable/f6" "$MNT/acked/f6" ||
    mt_fail "unsynced namespace operations"
# A file unlinked while open is an orphan when the daemon dies; recovery must reclaim it.
exec 7<>"$MNT/scratch/orphan" && printf 'orphan data' >&7 && rm "$MNT/scratch/orphan" ||
    mt_fail "open-unlinked orphan"
mt_manifest "$MNT" "$MT_DIR/before-kill.man"
# Unsynced work in flight when the daemon dies: may be lost, must not corrupt anything.
dd if="$MT_DIR/rand" of="$MNT/scratch/inflight" bs=64k count=64 status=none &
inflight=$!
sleep 0.2
mt_kill9_daemon
wait $inflight 2>/dev/null
exec 7>&-
timeout -k 5 120 "$KVFS_BIN" fsck "$STORE" >"$MT_DIR/fsck-after-kill.log" 2>&1 ||
    mt_fail "kvfs fsck after kill -9 failed: $(tail -n 20 "$MT_DIR/fsck-after-kill.log")"
mt_mount "$MT_MOUNT_OPTS"
rm -f "$MNT/scratch/inflight"
mt_manifest "$MNT" "$MT_DIR/after-kill.man"
mt_compare_manifests "$MT_DIR/before-kill.man" "$MT_DIR/after-kill.man" "^E \\./scratch "
check_huge
mt_unmount
timeout -k 5 120 "$KVFS_BIN" fsck "$STORE" >"$MT_DIR/fsck.log" 2>&1 ||
    mt_fail "kvfs fsck failed: $(tail -n 20 "$MT_DIR/fsck.log")"
mt_log "fsck clean; PASS"
