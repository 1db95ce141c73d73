#!/bin/bash
# listing.sh: directory listings report every entry once with the right attributes, and see
# every change at once.
#
# kvfs answers the first READDIRPLUS of a listing with attributes for a few entries only and
# fills the later ones (fs/ll.c, LL_READDIRPLUS_FIRST): listing_check lists a 3,000-entry
# directory (files of varied size and mode, symlinks, subdirectories) with an lstat of each
# entry as it is read (the attributes come from READDIRPLUS replies), names only, and again
# from the kernel's cache, and checks each entry's d_type, inode number, mode, size and nlink;
# a 10-entry directory fits the first reply. Then a listing after each create, rename, unlink,
# mkdir and rmdir must show the change, and listings stay exact while other threads create,
# rename and unlink in the directory (listing_race: kvfs serves a listing of an unchanged
# directory from its directory cache, fs/dircache.h, so a change that failed to invalidate it
# shows there). All of it with and without the writeback cache and kernel attribute caching,
# and with the directory cache off, after dropping the kernel's dentries where we may; fsck at
# the end.
. "$(dirname "$0")/lib.sh"

mt_init
CHECK=$(mt_tool listing_check) || exit 1
RACE=$(mt_tool listing_race) || exit 1

drop_dentries() {
    sync
    if [ -w /proc/sys/vm/drop_caches ]; then echo 2 >/proc/sys/vm/drop_caches; fi
}

names() { # sorted names in $1 but . and ..
    ls -f "$1" | grep -v -x -F -e . -e .. | sort | tr '\n' ' '
}

expect_names() { # dir what-happened expected-names...
    local dir=$1 what=$2 got want
    shift 2
    got=$(names "$dir")
    want=""
    [ $# -eq 0 ] || want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
    [ "$got" = "$want" ] || mt_fail "listing after $what: got '$got', want '$want'"
}

churn() { # every change to a directory shows in the next listing, also from a listing held open
    local d=$MNT/churn.$1
    mt_run mkdir "$d"
    : >"$d/a" && expect_names "$d" create a
    mv "$d/a" "$d/b" && expect_names "$d" rename b
    : >"$d/c" && rm "$d/b" && expect_names "$d" "create + unlink" c
    mkdir "$d/sub" && expect_names "$d" mkdir c sub
    mv "$d/c" "$d/sub/c" && expect_names "$d" "rename out" sub
    expect_names "$d/sub" "rename in" c
    rm "$d/sub/c" && rmdir "$d/sub" && expect_names "$d" rmdir
    for i in $(seq 1 40); do : >"$d/f$i"; done
    expect_names "$d" "40 creates" $(seq -f 'f%g' 1 40)
    rm "$d"/f1? && expect_names "$d" "10 unlinks" f1 $(seq -f 'f%g' 2 9) $(seq -f 'f%g' 20 40)
}

for mode in "" "$MT_NOWB_OPTS,attr_timeout=0,entry_timeout=0,negative_timeout=0" \
    dir_cache_size=0; do
    tag=${mode:-default}
    tag=${tag%%,*}
    tag=${tag//=/}
    mt_mount "$mode"
    mt_run mkdir "$MNT/big.$tag" "$MNT/small.$tag"
    mt_run "$CHECK" make "$MNT/big.$tag" 3000
    mt_run "$CHECK" make "$MNT/small.$tag" 10
    drop_dentries
    mt_log "3,000 entries, $tag"
    mt_run "$CHECK" check "$MNT/big.$tag" 3000
    mt_log "10 entries, $tag"
    mt_run "$CHECK" check "$MNT/small.$tag" 10
    churn "$tag"
    mt_log "listings against concurrent create, rename and unlink, $tag"
    mt_run mkdir "$MNT/race.$tag"
    mt_run "$RACE" "$MNT/race.$tag" 3
    mt_remount
    mt_log "3,000 entries after a remount, $tag"
    mt_run "$CHECK" check "$MNT/big.$tag" 3000
    mt_unmount
done
timeout -k 5 120 "$KVFS_BIN" fsck "$STORE" >"$MT_DIR/fsck.log" 2>&1 ||
    mt_fail "kvfs fsck failed: $(tail -n 20 "$MT_DIR/fsck.log")"
mt_log "PASS"
