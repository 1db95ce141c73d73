#!/usr/bin/env bash
# mount.sh [STORE [MOUNTPOINT]] - installs dependencies, builds kvfs and mounts it.
#
# Defaults: the store in ./store and the mount at ./mnt (both created if missing). The daemon
# runs in the background; unmount with `fusermount3 -u MOUNTPOINT`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STORE=${1:-store}
MNT=${2:-mnt}

bash "$ROOT/scripts/build.sh" "$ROOT/build"
KVFS="$ROOT/build/fs/kvfs"
if [ ! -x "$KVFS" ]; then
    echo "mount.sh: $KVFS was not built" >&2
    exit 1
fi

mkdir -p "$STORE" "$MNT"
if mountpoint -q "$MNT"; then
    echo "mount.sh: $MNT is already mounted; unmount it first with: fusermount3 -u $MNT" >&2
    exit 1
fi
"$KVFS" mount "$STORE" "$MNT"
if ! mountpoint -q "$MNT"; then
    echo "mount.sh: kvfs exited but $MNT is not mounted" >&2
    exit 1
fi
echo "kvfs is mounted at $MNT (store: $STORE)."
echo "Unmount with: fusermount3 -u $MNT"
