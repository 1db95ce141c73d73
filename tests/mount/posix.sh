#!/bin/bash
# posix.sh: POSIX semantics of kvfs: posix_driver as root, then as uid 65534 on an allow_other
# mount, then as root again without the writeback cache and without kernel attribute caching.
. "$(dirname "$0")/lib.sh"

mt_init
DRIVER=$(mt_tool posix_driver) || exit 1
# The unprivileged run must be able to execute the driver whatever the build tree's modes.
cp "$DRIVER" "$MT_DIR/posix_driver" && chmod 755 "$MT_DIR/posix_driver" || mt_fail "copy driver"
DRIVER=$MT_DIR/posix_driver

mt_mount "allow_other"

failed=0
mt_log "posix_driver as root on $MNT"
"$DRIVER" "$MNT" >"$MT_DIR/root.log" 2>&1
rc=$?
grep -v '^ok ' "$MT_DIR/root.log"
[ $rc -eq 0 ] || { echo "posix_driver as root: exit $rc (full log $MT_DIR/root.log)" >&2; failed=1; }

mt_log "posix_driver --setup-unpriv as root"
"$DRIVER" --setup-unpriv "$MNT" >"$MT_DIR/setup.log" 2>&1
rc=$?
grep -v '^ok ' "$MT_DIR/setup.log"
[ $rc -eq 0 ] || { echo "posix_driver --setup-unpriv: exit $rc" >&2; failed=1; }

mt_log "posix_driver --unpriv as uid 65534"
(cd "$MNT" && setpriv --reuid=65534 --regid=65534 --clear-groups "$DRIVER" --unpriv "$MNT") \
    >"$MT_DIR/unpriv.log" 2>&1
rc=$?
grep -v '^ok ' "$MT_DIR/unpriv.log"
[ $rc -eq 0 ] || { echo "posix_driver --unpriv: exit $rc (full log $MT_DIR/unpriv.log)" >&2; failed=1; }

mt_unmount

# Again, as root and as 65534, with the writeback cache off and no kernel caching of attributes
# or names, so every answer comes from the daemon rather than from the kernel's bookkeeping.
mt_mount "$MT_NOWB_OPTS,allow_other,attr_timeout=0,entry_timeout=0,negative_timeout=0"
mt_log "posix_driver as root, no writeback cache, no attribute/entry caching"
"$DRIVER" "$MNT" >"$MT_DIR/root-nocache.log" 2>&1
rc=$?
grep -v '^ok ' "$MT_DIR/root-nocache.log"
[ $rc -eq 0 ] || { echo "posix_driver without caches: exit $rc (log $MT_DIR/root-nocache.log)" >&2; failed=1; }
mkdir "$MNT/nocache" && "$DRIVER" --setup-unpriv "$MNT/nocache" >"$MT_DIR/setup-nocache.log" 2>&1 ||
    { cat "$MT_DIR/setup-nocache.log"; echo "setup-unpriv without caches failed" >&2; failed=1; }
(cd "$MNT" && setpriv --reuid=65534 --regid=65534 --clear-groups "$DRIVER" --unpriv "$MNT/nocache") \
    >"$MT_DIR/unpriv-nocache.log" 2>&1
rc=$?
grep -v '^ok ' "$MT_DIR/unpriv-nocache.log"
[ $rc -eq 0 ] || { echo "posix_driver --unpriv without caches: exit $rc" >&2; failed=1; }
mt_unmount

[ $failed -eq 0 ] || mt_fail "POSIX checks failed (FAIL lines above)"
mt_log "PASS"
