#!/bin/bash
# hostile.sh: names, depths, sizes and users that try to break kvfs. Names made of every byte
# 1-255 but '/' (one file per byte, and one 254-byte name holding them all), 255-byte names
# (256 -> ENAMETOOLONG for create, mkdir, rename, link, symlink), a 1000-level deep tree,
# xattrs at the size and name limits and beyond (E2BIG, ERANGE) and more names than listxattr
# can return; all of it must survive a remount and leave fsck clean. Then the access rules: the
# store directory is created 0700, allow_other is off unless asked (uid 65534 cannot even stat
# the mount), and on an allow_other mount uid 65534 is held to the mode bits (read, write,
# list, create, rename, unlink forbidden), cannot chown or chmod what is not its own, cannot
# set trusted.* xattrs or user.* xattrs on a file it cannot write.
. "$(dirname "$0")/lib.sh"

export LC_ALL=C # names are bytes
mt_init
STORE=$MT_DIR/newstore # created by kvfs itself, to check its mode
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)

# expect_err WHAT MESSAGE CMD...: CMD must fail with MESSAGE (strerror text) on stderr.
expect_err() {
    local what=$1 msg=$2
    shift 2
    if "$@" >/dev/null 2>"$MT_DIR/err"; then
        mt_fail "$what: succeeded, want '$msg'"
    fi
    grep -q "$msg" "$MT_DIR/err" || mt_fail "$what: $(head -c 300 "$MT_DIR/err") (want '$msg')"
}

# as_nobody WHAT MESSAGE SHELL-CMD: runs SHELL-CMD as uid 65534 inside the mount; with MESSAGE
# empty it must succeed, else fail with MESSAGE.
as_nobody() {
    local what=$1 msg=$2 cmd=$3 rc
    (cd "$MNT" && "${NOBODY[@]}" sh -c "$cmd") >"$MT_DIR/out" 2>"$MT_DIR/err"
    rc=$?
    if [ -z "$msg" ]; then
        [ $rc -eq 0 ] || mt_fail "as uid 65534: $what: $(head -c 300 "$MT_DIR/err")"
    else
        [ $rc -ne 0 ] || mt_fail "as uid 65534: $what: succeeded, want '$msg'"
        grep -q "$msg" "$MT_DIR/err" ||
            mt_fail "as uid 65534: $what: $(head -c 300 "$MT_DIR/err") (want '$msg')"
    fi
}

fsck_clean() {
    timeout -k 5 120 "$KVFS_BIN" fsck "$STORE" >"$MT_DIR/fsck.log" 2>&1 ||
        mt_fail "kvfs fsck ($1): $(tail -n 20 "$MT_DIR/fsck.log")"
}

mt_mount ""
mode=$(stat -c %a "$STORE")
[ "$mode" = 700 ] || mt_fail "kvfs created the store directory with mode $mode, want 700"
grep -F " $MNT " /proc/self/mounts | grep -q allow_other && mt_fail "allow_other is on by default"
expect_err "uid 65534 on a mount without allow_other" "Permission denied" \
    "${NOBODY[@]}" stat "$MNT"

# ---- every byte in names ---------------------------------------------------------------------
mkdir "$MNT/bytes" || mt_fail mkdir
ALL=""
NAMES=()
for b in $(seq 1 255); do
    [ $b -eq 47 ] && continue
    printf -v ch "\\x$(printf %02x $b)"
    ALL+=$ch
    NAMES+=("a${ch}z")
    [ $b -eq 46 ] || NAMES+=("$ch") # "." alone is not a name
done
NAMES+=("$ALL")
[ ${#ALL} -eq 254 ] || mt_fail "the all-bytes name has ${#ALL} bytes"
check_bytes() {
    local i n
    for i in "${!NAMES[@]}"; do
        [ "$(cat "$MNT/bytes/${NAMES[$i]}" 2>&1)" = "$i" ] ||
            mt_fail "name #$i ($(printf %s "${NAMES[$i]}" | od -An -tx1 | head -c 60)) $1"
    done
    n=$(find "$MNT/bytes" -mindepth 1 -printf . | wc -c)
    [ "$n" -eq ${#NAMES[@]} ] || mt_fail "readdir of bytes/ lists $n names, want ${#NAMES[@]} $1"
}
for i in "${!NAMES[@]}"; do
    echo "$i" >"$MNT/bytes/${NAMES[$i]}" || mt_fail "create name #$i"
done
check_bytes "(first mount)"
mt_log "${#NAMES[@]} names made of every byte 1-255 but '/'"

# ---- name length -------------------------------------------------------------------------------
n255=$(printf 'n%.0s' $(seq 1 255))
n256=${n255}x
mkdir "$MNT/len" && cd "$MNT/len" || mt_fail "mkdir len"
echo 255 >"$n255" || mt_fail "create a 255-byte name"
mkdir "d$(printf 'n%.0s' $(seq 1 254))" || mt_fail "mkdir a 255-byte name"
expect_err "create a 256-byte name" "File name too long" touch "$n256"
expect_err "mkdir a 256-byte name" "File name too long" mkdir "$n256"
expect_err "rename to a 256-byte name" "File name too long" mv -T "$n255" "$n256"
expect_err "link to a 256-byte name" "File name too long" ln "$n255" "$n256"
expect_err "symlink with a 256-byte name" "File name too long" ln -s target "$n256"
ln "$n255" "l$(printf 'n%.0s' $(seq 1 254))" || mt_fail "link to a 255-byte name"
cd / || exit 1

# ---- deep tree ---------------------------------------------------------------------------------
deep=$MNT/deep
for i in $(seq 1 1000); do deep+=/d; done
mkdir -p "$deep" || mt_fail "mkdir -p of 1000 levels"
echo bottom >"$deep/f" || mt_fail "file at depth 1000"
mt_log "1000-level tree"

# ---- xattrs --------------------------------------------------------------------------------------
touch "$MNT/x" || mt_fail touch
v64k=$(head -c 65536 /dev/zero | tr '\0' v)
setfattr -n user.max -v "$v64k" "$MNT/x" || mt_fail "65536-byte xattr value"
expect_err "65537-byte xattr value" "Argument list too long" setfattr -n user.over -v "${v64k}v" "$MNT/x"
xn250=$(printf 'x%.0s' $(seq 1 250))
setfattr -n "user.$xn250" -v ok "$MNT/x" || mt_fail "255-byte xattr name"
expect_err "256-byte xattr name" "Numerical result out of range" setfattr -n "user.${xn250}y" -v no "$MNT/x"
touch "$MNT/many" || mt_fail touch
for i in $(seq 100 399); do
    setfattr -n "user.$i${xn250:0:240}" -v "$i" "$MNT/many" || mt_fail "xattr #$i on many"
done
# 300 names of 245 bytes: more than listxattr can return (64 KiB) -> E2BIG, never a cut list.
if getfattr --absolute-names -d -m - "$MNT/many" >"$MT_DIR/many.out" 2>"$MT_DIR/err"; then
    n=$(grep -c '^user\.' "$MT_DIR/many.out")
    [ "$n" -eq 300 ] || mt_fail "listxattr returned $n of 300 names"
else
    grep -Eq "Argument list too long|Numerical result out of range" "$MT_DIR/err" ||
        mt_fail "listxattr of 73 KiB of names: $(cat "$MT_DIR/err")"
fi
[ "$(getfattr --absolute-names --only-values -n "user.123${xn250:0:240}" "$MNT/many")" = 123 ] ||
    mt_fail "one xattr among 300"
kill -0 "$DAEMON_PID" || mt_fail "daemon died"

check_xattrs() {
    [ "$(getfattr --absolute-names --only-values -n user.max "$MNT/x")" = "$v64k" ] || mt_fail "64 KiB xattr $1"
    [ "$(getfattr --absolute-names --only-values -n "user.$xn250" "$MNT/x")" = ok ] || mt_fail "long-name xattr $1"
}
check_xattrs "(first mount)"

# ---- everything again after a remount --------------------------------------------------------
mt_remount
check_bytes "after remount"
[ "$(cat "$MNT/len/$n255")" = 255 ] || mt_fail "255-byte name after remount"
[ "$(cat "$deep/f")" = bottom ] || mt_fail "deep file after remount"
n=$(find "$MNT/deep" | wc -l)
[ "$n" -eq 1002 ] || mt_fail "deep tree has $n entries after remount, want 1002"
check_xattrs "after remount"
rm -rf "$MNT/deep" || mt_fail "rm -rf of the deep tree"
[ ! -e "$MNT/deep" ] || mt_fail "deep tree still there"
mt_unmount
fsck_clean "after the hostile names"

# ---- permissions as uid 65534 ---------------------------------------------------------------------
mt_mount "allow_other"
cd "$MNT" || exit 1
echo secret >secret && chmod 600 secret &&
    echo ro >ro && chmod 644 ro &&
    mkdir private && echo p >private/f && chmod 700 private &&
    mkdir pub && echo a >pub/a && chmod 755 pub &&
    mkdir open && chmod 777 open || mt_fail "fixtures"
cd / || exit 1
as_nobody "stat the allow_other mount" "" "stat . >/dev/null"
as_nobody "read a 0600 root file" "Permission denied" "cat secret"
as_nobody "read a 0644 root file" "" "cat ro"
as_nobody "write a 0644 root file" "Permission denied" "echo x >>ro"
as_nobody "truncate a 0644 root file" "Permission denied" "truncate -s 0 ro"
as_nobody "list a 0700 root directory" "Permission denied" "ls private"
as_nobody "reach into a 0700 root directory" "Permission denied" "cat private/f"
as_nobody "create in a 0755 root directory" "Permission denied" "touch pub/new"
as_nobody "rename in a 0755 root directory" "Permission denied" "mv pub/a pub/b"
as_nobody "unlink in a 0755 root directory" "Permission denied" "rm -f pub/a"
as_nobody "chmod a root file" "Operation not permitted" "chmod 666 ro"
as_nobody "create own file" "" "echo mine >open/mine"
as_nobody "chown own file to root" "Operation not permitted" "chown 0 open/mine"
as_nobody "set trusted.* on own file" "Operation not permitted" "setfattr -n trusted.t -v 1 open/mine"
as_nobody "set user.* on own file" "" "setfattr -n user.u -v 1 open/mine"
as_nobody "set user.* on a 0644 root file" "Permission denied" "setfattr -n user.u -v 1 ro"
[ "$(cat "$MNT/ro")" = ro ] && [ -e "$MNT/pub/a" ] && [ ! -e "$MNT/pub/b" ] &&
    [ "$(stat -c %u "$MNT/open/mine")" = 65534 ] || mt_fail "a forbidden operation changed something"
getfattr --absolute-names -n trusted.t "$MNT/open/mine" >/dev/null 2>&1 && mt_fail "trusted.t was set by uid 65534"
mt_unmount
fsck_clean "after the permission checks"
mt_log "PASS"
