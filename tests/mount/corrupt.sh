#!/bin/bash
# corrupt.sh: damaged store files (durability contract 4). A store is built with known files
# (several tables, a WAL holding the last session, a manifest), then copied; for each case the
# copy is restored and one file is damaged: a bit flipped in the newest and the oldest live
# table's data, filter, index and footer regions, tables truncated or missing, the WAL's first
# and last records flipped or cut, the manifest flipped, cut or missing, CURRENT flipped, cut,
# removed, and (the store is made with kvfs's value log on, which the test checks) the oldest
# and the newest value-log segment flipped in its header and first, middle and last record, or
# cut. For each case:
#   - `kvfs fsck STORE` must report it (non-zero), except for a WAL or manifest tail, which
#     recovery drops by design (a torn write looks the same) (a cut segment is a torn tail to
#     kv_check: fsck reports it when the chunk read behind it fails);
#   - the mount either fails with an error naming the damage, or serves every file byte for
#     byte or fails the read with EIO (never other bytes, never another errno), and then every
#     EIO has a daemon log line naming the file and offset; files written in the WAL's session
#     may instead be absent (an older state) when the WAL is damaged; the daemon never dies;
#   - `kvfs fsck --repair STORE` must succeed (exit 0 or 1: kv_salvage keeps every block and
#     record whose checksum holds and rebuilds around the rest; fsck marks the file data that
#     may have been lost). Then the store must mount; every file readable before the repair
#     must read back byte for byte, every other file must read byte for byte or fail with EIO
#     (a lost-chunk marker, with fsck naming its inode), or - if its name was lost - be found
#     byte for byte in /lost+found, or - if its inode was lost - have had its dirent removed by
#     fsck; nothing anywhere (lost+found included) reads bytes a file never held; and fsck must
#     then be clean (exit 0).
# At the end: per kind of damage, the cases, and from fsck --repair the keys kept, blocks,
# bytes and entries lost, files marked damaged and files found in lost+found.
# Store files are damaged with tests/store_corrupt (which also finds the live tables and record
# boundaries).
. "$(dirname "$0")/lib.sh"
export LC_ALL=C # key comparisons below are bytewise

mt_init
SC=$(mt_tool store_corrupt) || exit 1
REF=$MT_DIR/ref
mkdir -p "$REF"

# ---- build the store --------------------------------------------------------------------------
FILES=() # main files (in tables after the second mount)
TAILS=() # files written in the last session (only in the WAL)
mkfile() { # mkfile NAME SIZE
    local name=$1 flat
    flat=$(echo "$name" | tr / _)
    head -c "$2" /dev/urandom >"$REF/$flat" || mt_fail "random data"
    cp "$REF/$flat" "$MNT/$name" || mt_fail "write $name"
    INO[$name]=$(stat -c %i "$MNT/$name")
}
declare -A INO # inode number of each file (fsck names inodes, lost+found holds #INO)
mt_mount "memtable_size=1M"
mkdir -p "$MNT/a/b" || mt_fail mkdir
for i in $(seq 1 18); do
    case $((i % 3)) in
    0) d=. ;; 1) d=a ;; 2) d=a/b ;;
    esac
    size=$(((RANDOM * 13 + i * 7919) % (400 * 1024) + 1))
    [ $i -le 3 ] && size=$((i * 40))
    mkfile "$d/f$i" $size
    FILES+=("$d/f$i")
done
setfattr -n user.small -v hello "$MNT/a/f1" && setfattr -n user.big -v "$(head -c 3000 /dev/zero |
    tr '\0' x)" "$MNT/f3" || mt_fail setfattr
mt_unmount
mt_mount "" # replays the WAL into a table
mt_unmount
mt_mount ""
mkfile t1 100
mkfile a/t2 70000
TAILS=(t1 a/t2)
mt_unmount
cp -a "$STORE" "$MT_DIR/pristine" || mt_fail "copy of the store"
PRISTINE=$MT_DIR/pristine
ls -l "$PRISTINE"

# ---- the cases -----------------------------------------------------------------------------------
CASES=()
tables=$("$SC" live "$PRISTINE" | awk '{print $2}' | sort -n) || mt_fail "cannot list live tables"
newest=$(echo "$tables" | tail -n 1)
oldest=$(echo "$tables" | head -n 1)
[ -n "$newest" ] || mt_fail "no live table in the store"
for t in $(echo "$newest $oldest" | tr ' ' '\n' | sort -u); do
    f=$t.sst
    size=$("$SC" size "$PRISTINE/$f")
    while read -r region off len; do
        case $region in
        data) pos="$off $((off + len / 2)) $((off + len - 1))" ;;
        filter) pos="$((off + 1)) $((off + len - 1))" ;;
        index) pos="$off $((off + len / 2)) $((off + len - 9))" ;;
        footer) pos="$off $((off + 8)) $((off + 16)) $((off + 24)) $((off + 32)) $((off + 40))
                     $((off + 44)) $((off + 48)) $((off + 56)) $((off + 63))" ;;
        esac
        for p in $pos; do CASES+=("sst $f $region flip $p"); done
    done < <("$SC" regions "$PRISTINE/$f")
    CASES+=("sst $f whole truncate $((size - 1))" "sst $f whole truncate $((size / 2))"
        "sst $f whole truncate 0" "sst $f whole remove -")
done
wal=$(cd "$PRISTINE" && ls | grep -E '^[0-9]+\.log$' | sort -n | tail -n 1)
if [ -n "$wal" ] && [ "$("$SC" size "$PRISTINE/$wal")" -gt 0 ]; then
    read -r _ first_off first_len < <("$SC" records "$PRISTINE/$wal" | head -n 1)
    read -r _ last_off last_len < <("$SC" records "$PRISTINE/$wal" | tail -n 1)
    size=$("$SC" size "$PRISTINE/$wal")
    CASES+=("log $wal first flip $((first_off + 3))" "log $wal first flip $((first_off + 9))"
        "log $wal last flip $((last_off + 8))" "log $wal last flip $((last_off + last_len / 2))"
        "log $wal last truncate $((size - 1))" "log $wal last truncate $((last_off + 7))")
else
    mt_fail "the pristine store has no WAL with records (the tail session should be in one)"
fi
man=$(cat "$PRISTINE/CURRENT")
read -r _ moff mlen < <("$SC" records "$PRISTINE/$man" | head -n 1)
read -r _ loff llen < <("$SC" records "$PRISTINE/$man" | tail -n 1)
msize=$("$SC" size "$PRISTINE/$man")
CASES+=("manifest $man first flip $moff" "manifest $man first flip $((moff + 9))"
    "manifest $man first flip $((moff + mlen / 2))" "manifest $man last flip $((loff + llen - 1))"
    "manifest $man last truncate $((msize - 1))" "manifest $man whole truncate 0"
    "manifest $man whole remove -")
segs=$(cd "$PRISTINE" && ls | grep -E '^[0-9]+\.vlog$' | sort -n)
[ -f "$PRISTINE/VLOG" ] && [ -n "$segs" ] ||
    mt_fail "the pristine store has no value log: this test needs kvfs to make stores with it"
newest_seg=$(echo "$segs" | tail -n 1)
for f in $(printf '%s\n' "$(echo "$segs" | head -n 1)" "$newest_seg" | sort -u); do
    size=$("$SC" size "$PRISTINE/$f")
    [ "$size" -gt 1000 ] || continue # no record
    # The newest segment is the one a crash leaves short: cutting it is a torn tail ("last").
    cut=whole
    [ "$f" = "$newest_seg" ] && cut=last
    CASES+=("vlog $f header flip 3" "vlog $f first flip 16" "vlog $f first flip 40"
        "vlog $f middle flip $((size / 2))" "vlog $f last flip $((size - 1))"
        "vlog $f $cut truncate $((size - 1))" "vlog $f $cut truncate $((size / 2))"
        "vlog $f $cut truncate 16")
done
CASES+=("current CURRENT whole flip 0" "current CURRENT whole flip 14 1"
    "current CURRENT whole truncate 15" "current CURRENT whole truncate 0"
    "current CURRENT whole remove -")

# ---- checking one mount ---------------------------------------------------------------------------
# try_mount LOG: starts the daemon; returns 0 once mounted, 1 if it exited (DAEMON_RC set).
try_mount() {
    "$KVFS_BIN" mount -f "$STORE" "$MNT" >"$1" 2>&1 &
    DAEMON_PID=$!
    echo "$DAEMON_PID" >"$MT_DIR/daemon.pid"
    local i=0
    while ! mountpoint -q "$MNT"; do
        if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            wait "$DAEMON_PID"
            DAEMON_RC=$?
            DAEMON_PID=""
            : >"$MT_DIR/daemon.pid"
            return 1
        fi
        i=$((i + 1))
        [ $i -lt 300 ] || mt_fail "$CASE: mount neither appeared nor failed within 30 s"
        sleep 0.1
    done
    return 0
}

# Unmounts; the daemon must exit by itself, not die of a signal.
stop_mount() {
    local i=0
    while ! fusermount3 -u "$MNT" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 50 ] || mt_fail "$CASE: fusermount3 -u keeps failing"
        sleep 0.1
    done
    mt_stop_daemon 30
    [ "$MT_DAEMON_RC" -lt 128 ] || mt_fail "$CASE: the daemon died of signal $((MT_DAEMON_RC - 128))"
}

# in_lost_range HEXKEY: 0 if kv_salvage logged a lost key range (in repair.out) holding it.
in_lost_range() {
    local key=$1 open lo hi
    while read -r open lo hi; do
        if [ "$lo" != - ]; then
            [[ $open == "[" && ! $key < $lo ]] || [[ $key > $lo ]] || continue
        fi
        [ "$hi" = - ] || [[ ! $key > $hi ]] || continue
        return 0
    done < <(sed -nE 's/.*salvage: lost key range [0-9]+: ([[(])([-0-9a-f]+), ([-0-9a-f]+)\].*/\1 \2 \3/p' \
        "$MT_DIR/repair.out")
    return 1
}

# check_files PHASE DAEMONLOG: reads every file; sets READABLE (names read correctly) and EIOS.
check_files() {
    local phase=$1 dlog=$2 name flat err f
    READABLE=()
    EIOS=0 LOSTFOUND=0 GONE=0 OLDER=0
    if [ "$phase" = repaired ] && [ -d "$MNT/lost+found" ]; then
        # Whatever fsck linked there must be its file's exact bytes, or fail with EIO.
        for name in "${FILES[@]}" "${TAILS[@]}"; do
            f=$(find "$MNT/lost+found" -inum "${INO[$name]}" -print -quit 2>/dev/null)
            [ -n "$f" ] && [ -f "$f" ] || continue
            flat=$(echo "$name" | tr / _)
            if cat "$f" >"$MT_DIR/read" 2>"$MT_DIR/read.err"; then
                cmp -s "$MT_DIR/read" "$REF/$flat" ||
                    mt_fail "$CASE ($phase): $f (was $name) reads back different bytes"
            else
                grep -q "Input/output error" "$MT_DIR/read.err" ||
                    mt_fail "$CASE ($phase): reading $f: $(cat "$MT_DIR/read.err") (want EIO)"
            fi
        done
    fi
    for name in "${FILES[@]}" "${TAILS[@]}"; do
        flat=$(echo "$name" | tr / _)
        if cat "$MNT/$name" >"$MT_DIR/read" 2>"$MT_DIR/read.err"; then
            if [ "$KIND" = vlog ] && [ ! -s "$MT_DIR/read" ] && [[ " ${TAILS[*]} " == *" $name "* ]]; then
                # Recovery drops a WAL record whose value it cannot read, with the rest of
                # that WAL, as a torn tail: a file of the last session may be back to the
                # empty state its create left (counted below as data dropped silently).
                OLDER=$((OLDER + 1))
                continue
            fi
            cmp -s "$MT_DIR/read" "$REF/$flat" ||
                mt_fail "$CASE ($phase): $name reads back different bytes (never allowed)"
            READABLE+=("$name")
            continue
        fi
        err=$(cat "$MT_DIR/read.err")
        if [[ $err == *"No such file or directory"* ]]; then
            # Only a damaged WAL may take the last session's files back to "never written".
            if [[ $KIND == log || $KIND == vlog ]] && [[ " ${TAILS[*]} " == *" $name "* ]]; then
                continue
            fi
            if [ "$phase" = repaired ]; then
                # Its name was lost: fsck linked the inode into lost+found (checked above: its
                # bytes, or EIO).
                if [ -d "$MNT/lost+found" ] &&
                    [ -n "$(find "$MNT/lost+found" -inum "${INO[$name]}" -print -quit 2>/dev/null)" ]; then
                    LOSTFOUND=$((LOSTFOUND + 1))
                    continue
                fi
                # Its inode record was lost: fsck removed what was left of it and said so (as
                # e2fsck clears an inode it cannot trust), or nothing of it was left.
                if grep -Eq "(names missing inode|of inode) ${INO[$name]}\b" "$MT_DIR/repair.out" ||
                    in_lost_range "$(printf '49%016x' "${INO[$name]}")"; then
                    GONE=$((GONE + 1))
                    continue
                fi
            fi
            # A damaged directory block loses the name: lookup must then fail with EIO, never
            # pretend the file does not exist.
            mt_fail "$CASE ($phase): $name is missing: $err"
        fi
        [[ $err == *"Input/output error"* ]] || mt_fail "$CASE ($phase): reading $name: $err (want EIO)"
        if [ "$phase" = repaired ]; then
            # fsck names a damaged file by its path, not only by its inode number.
            grep -Fq "kvfs fsck: /${name#./} (inode ${INO[$name]}): " "$MT_DIR/repair.out" ||
                mt_fail "$CASE ($phase): $name reads EIO but fsck --repair did not name its path"
        fi
        EIOS=$((EIOS + 1))
    done
    # Metadata paths too: listing and xattrs fail only with EIO.
    ls -laR "$MNT" >/dev/null 2>"$MT_DIR/ls.err"
    if [ -s "$MT_DIR/ls.err" ]; then
        grep -v "Input/output error" "$MT_DIR/ls.err" | grep -v "No such file" |
            grep -q . && mt_fail "$CASE ($phase): ls -R: $(head -n 3 "$MT_DIR/ls.err")"
        grep -q "Input/output error" "$MT_DIR/ls.err" && EIOS=$((EIOS + 1))
    fi
    local v
    if v=$(getfattr --only-values -n user.small "$MNT/a/f1" 2>"$MT_DIR/x.err"); then
        [ "$v" = hello ] || mt_fail "$CASE ($phase): xattr user.small reads '$v'"
    elif [ "$phase" = repaired ] && grep -q "extended attributes may have lost entries" "$MT_DIR/repair.out"; then
        : # fsck said that attributes of some inode may be gone
    elif [ "$phase" = repaired ] && grep -q "No such file" "$MT_DIR/x.err" && [ $LOSTFOUND -gt 0 ]; then
        : # a/f1 itself was moved to lost+found
    elif ! grep -q "Input/output error" "$MT_DIR/x.err"; then
        mt_fail "$CASE ($phase): getfattr: $(cat "$MT_DIR/x.err") (want EIO)"
    else
        EIOS=$((EIOS + 1))
    fi
    kill -0 "$DAEMON_PID" 2>/dev/null || mt_fail "$CASE ($phase): the daemon died while reading"
    if [ $EIOS -gt 0 ] && [ "$phase" = repaired ]; then
        # After a repair, EIO comes from the lost-chunk markers fsck wrote and named.
        grep -Eq 'chunk [0-9]+ of inode [0-9]+: length' "$dlog" &&
            grep -q "may have been lost in the kvcore salvage" "$MT_DIR/repair.out" ||
            mt_fail "$CASE ($phase): EIO without a lost-chunk marker named by fsck: $(head -n 5 "$dlog")"
    elif [ $EIOS -gt 0 ]; then
        grep -Eq '[0-9]+\.(sst|log|vlog)|MANIFEST|CURRENT' "$dlog" && grep -q 'offset' "$dlog" ||
            mt_fail "$CASE ($phase): EIO without a log line naming file and offset: $(head -n 5 "$dlog")"
    fi
}

NCASES=0 MOUNT_FAILED=0 SERVED=0 EIO_CASES=0 REPAIRED=0 SILENT=0 EIO_BEFORE=0
SILENT_LIST=()
run_case() {
    # KIND FILE REGION ACTION ARG [BIT]
    KIND=$1
    local file=$2 region=$3 action=$4 arg=$5 bit=${6:-0} frc clog rrc
    CASE="[$KIND $file $region: $action $arg]"
    NCASES=$((NCASES + 1))
    rm -rf "$STORE" && cp -a "$PRISTINE" "$STORE" || mt_fail "restore the store"
    case $action in
    flip) "$SC" flip "$STORE/$file" "$arg" "$bit" || mt_fail "$CASE: flip" ;;
    truncate) truncate -s "$arg" "$STORE/$file" || mt_fail "$CASE: truncate" ;;
    remove) rm "$STORE/$file" || mt_fail "$CASE: rm" ;;
    esac

    timeout -k 5 60 "$KVFS_BIN" fsck "$STORE" >"$MT_DIR/fsck.out" 2>&1
    frc=$?
    [ $frc -ne 124 ] && [ $frc -lt 128 ] || mt_fail "$CASE: fsck crashed or hung (exit $frc)"
    # The last record of a WAL or manifest is where a torn write lands: recovery drops it by
    # design (FORMAT.md), so fsck may pass; everything else must be reported.
    if [ "$KIND" != log ] && [ "$region" != last ] && [ $frc -eq 0 ]; then
        mt_fail "$CASE: kvfs fsck exits 0 on a damaged store: $(tail -n 5 "$MT_DIR/fsck.out")"
    fi

    clog=$MT_DIR/case.log
    local readable_before=()
    if try_mount "$clog"; then
        check_files "mounted" "$clog"
        readable_before=("${READABLE[@]}")
        EIO_BEFORE=$EIOS
        stop_mount
        SERVED=$((SERVED + 1))
        [ $EIOS -gt 0 ] && EIO_CASES=$((EIO_CASES + 1))
        if [[ $KIND == log || $KIND == vlog ]] && [ $EIOS -eq 0 ] &&
            [ ${#READABLE[@]} -lt $((${#FILES[@]} + ${#TAILS[@]})) ]; then
            SILENT=$((SILENT + 1)) # acknowledged tail records dropped without an error
            SILENT_LIST+=("$CASE: ${#READABLE[@]} of $((${#FILES[@]} + ${#TAILS[@]})) files, fsck $frc")
        fi
    else
        [ "$DAEMON_RC" -gt 0 ] && [ "$DAEMON_RC" -lt 128 ] ||
            mt_fail "$CASE: mount failed with status $DAEMON_RC (crash?): $(head -n 5 "$clog")"
        grep -Eq '[0-9]+\.(sst|log|vlog)|MANIFEST|CURRENT' "$clog" ||
            mt_fail "$CASE: mount failed without naming the damaged file: $(head -n 5 "$clog")"
        MOUNT_FAILED=$((MOUNT_FAILED + 1))
    fi

    : >"$MT_DIR/repair.out"
    if [ -n "${KILL_AT:-}" ]; then
        # A repair killed right after the kvcore salvage, after its first lost-chunk marker, or
        # after marking the files but before dropping the record of the losses: the rerun below
        # must finish the marking.
        KVFS_FSCK_KILL_AT=$KILL_AT timeout -k 5 120 "$KVFS_BIN" fsck --repair "$STORE" \
            >"$MT_DIR/repair.out" 2>&1
        rrc=$?
        if [ "$KILL_AT" = marking ] && [ $rrc -ne 137 ]; then
            # Killed after its first lost-chunk marker: a repair with none to write ends.
            ! grep -q "marked, reads of them fail with EIO" "$MT_DIR/repair.out" ||
                mt_fail "$CASE: fsck --repair marked chunks but was not killed (exit $rrc)"
            [ $rrc -ne 124 ] && [ $rrc -lt 128 ] || mt_fail "$CASE: fsck --repair crashed ($rrc)"
        else
            [ $rrc -eq 137 ] || mt_fail "$CASE: fsck --repair was to be killed at $KILL_AT, exit $rrc"
        fi
        [ $rrc -eq 137 ] && [ "$KILL_AT" = marking ] && KILLED_MARKING=$((KILLED_MARKING + 1))
        if grep -q "salvage: lost key range" "$MT_DIR/repair.out"; then
            [ -s "$STORE/LOST" ] || mt_fail "$CASE: killed at $KILL_AT with losses but no LOST file"
            # Until a repair has marked what was lost, a mount would serve it unmarked.
            ! try_mount "$clog.unfinished" ||
                mt_fail "$CASE: mounted with an unfinished repair's LOST file in the store"
            grep -q "interrupted repair" "$clog.unfinished" ||
                mt_fail "$CASE: mount refused without saying why: $(head -n 3 "$clog.unfinished")"
            KILLED_WITH_LOSSES=$((KILLED_WITH_LOSSES + 1))
        fi
        CASE="$CASE (killed at $KILL_AT, rerun)"
    fi
    timeout -k 5 120 "$KVFS_BIN" fsck --repair "$STORE" >>"$MT_DIR/repair.out" 2>&1
    rrc=$?
    [ $rrc -ne 124 ] && [ $rrc -lt 128 ] || mt_fail "$CASE: fsck --repair crashed or hung ($rrc)"
    [ $rrc -le 1 ] ||
        mt_fail "$CASE: fsck --repair gave up (exit $rrc): $(tail -n 5 "$MT_DIR/repair.out")"
    try_mount "$clog.repaired" ||
        mt_fail "$CASE: fsck --repair exited $rrc but the store does not mount: $(head -n 5 "$clog.repaired")"
    check_files "repaired" "$clog.repaired"
    for name in "${readable_before[@]}"; do
        [[ " ${READABLE[*]} " == *" $name "* ]] ||
            mt_fail "$CASE: $name was readable before fsck --repair, not after"
    done
    stop_mount
    timeout -k 5 60 "$KVFS_BIN" fsck "$STORE" >"$MT_DIR/fsck2.out" 2>&1 ||
        mt_fail "$CASE: fsck not clean after a successful repair: $(tail -n 5 "$MT_DIR/fsck2.out")"
    [ ! -e "$STORE/LOST" ] || mt_fail "$CASE: LOST is still there after a completed repair"
    REPAIRED=$((REPAIRED + 1))

    # Numbers: what the salvage kept and lost, what the filesystem lost.
    local kept=- blocks=0 bytes=0 entries=0 ranges=0 line
    line=$(grep "store rebuilt:" "$MT_DIR/repair.out" || true)
    if [ -n "$line" ]; then
        read -r kept blocks bytes entries ranges < <(echo "$line" |
            sed -E 's/.*: ([0-9]+) keys kept; lost ([0-9]+) blocks, ([0-9]+) bytes, at least ([0-9]+) entries, in ([0-9]+) key ranges.*/\1 \2 \3 \4 \5/')
        REBUILT=$((REBUILT + 1))
    fi
    local kind="$KIND $region"
    K_CASES[$kind]=$((${K_CASES[$kind]:-0} + 1))
    K_BLOCKS[$kind]=$((${K_BLOCKS[$kind]:-0} + blocks))
    K_ENTRIES[$kind]=$((${K_ENTRIES[$kind]:-0} + entries))
    K_EIO[$kind]=$((${K_EIO[$kind]:-0} + EIOS))
    K_LF[$kind]=$((${K_LF[$kind]:-0} + LOSTFOUND + GONE))
    K_READ[$kind]=$((${K_READ[$kind]:-0} + ${#READABLE[@]}))
    [ "$kept" != - ] && K_KEPT[$kind]=$((${K_KEPT[$kind]:-0} + kept))
    printf '%-52s fsck %d, %s, repair %d: keys kept %s, lost %s blocks/%s entries/%s ranges; then %d read, %d EIO, %d lost+found, %d gone\n' \
        "$CASE" $frc \
        "$([ -n "${readable_before[*]}" ] && echo "served ${#readable_before[@]} files, $EIO_BEFORE EIO" ||
            echo "mount refused")" $rrc "$kept" "$blocks" "$entries" "$ranges" \
        ${#READABLE[@]} $EIOS $LOSTFOUND $GONE
}

declare -A K_CASES K_BLOCKS K_ENTRIES K_EIO K_LF K_READ K_KEPT
REBUILT=0
mt_log "${#CASES[@]} corruption cases"
for c in "${CASES[@]}"; do
    # CORRUPT_KINDS="vlog log" runs only those kinds of damage (default: every kind).
    [ -z "${CORRUPT_KINDS:-}" ] || [[ " $CORRUPT_KINDS " == *" ${c%% *} "* ]] || continue
    run_case $c
done
# An interrupted repair resumes: a few cases that lose data again, with fsck --repair killed
# after each of its steps first (and once in the middle of its marking).
KILLED_WITH_LOSSES=0 KILLED_MARKING=0
if [ -z "${CORRUPT_KINDS:-}" ] || [[ " $CORRUPT_KINDS " == *" kill "* ]]; then
    kill_data=$("$SC" regions "$PRISTINE/$oldest.sst" | awk '$1 == "data" {print $2 + 1; exit}')
    oldest_seg=$(echo "$segs" | head -n 1)
    kill_seg_off=$(($("$SC" size "$PRISTINE/$oldest_seg") / 2))
    for c in "sst $oldest.sst data flip $kill_data" "vlog $oldest_seg middle flip $kill_seg_off"; do
        for KILL_AT in salvage marking marked; do
            run_case $c
        done
    done
    KILL_AT=
    [ $KILLED_WITH_LOSSES -gt 0 ] || mt_fail "no killed repair had lost anything: the resume went untested"
    [ $KILLED_MARKING -gt 0 ] || mt_fail "no repair was killed in the middle of its marking"
fi
mt_log "$NCASES cases: mount refused $MOUNT_FAILED, served $SERVED ($EIO_CASES with EIO)," \
    "repaired $REPAIRED ($REBUILT rebuilt by kv_salvage), WAL damage dropped data silently $SILENT"
echo "per kind (sums over its cases; $((${#FILES[@]} + ${#TAILS[@]})) files per case):"
printf '  %-18s %5s %10s %11s %12s %10s %9s %14s\n' kind cases "keys kept" "blocks lost" \
    "entries lost" "files read" "files EIO" "lost+found/gone"
for k in $(printf '%s\n' "${!K_CASES[@]}" | sort | tr ' ' '_'); do
    kk=${k//_/ }
    printf '  %-18s %5d %10s %11d %12d %10d %9d %14d\n' "$kk" "${K_CASES[$kk]}" "${K_KEPT[$kk]:--}" \
        "${K_BLOCKS[$kk]}" "${K_ENTRIES[$kk]}" "${K_READ[$kk]}" "${K_EIO[$kk]}" "${K_LF[$kk]}"
done
if [ $SILENT -gt 0 ]; then
    echo "NOTE: damage inside the WAL (or in the newest value-log segment, whose records recovery"
    echo "reads back) dropped acknowledged records with no error (FORMAT.md treats every bad"
    echo "record as a torn tail, even when intact records follow it):"
    printf '  %s\n' "${SILENT_LIST[@]}"
fi
mt_log "PASS"
