#!/usr/bin/env bash
# deps.sh - installs what kvfs needs to build and test (Debian/Ubuntu), quietly and only if missing.
#
# Idempotent: packages already installed are left alone and `apt-get update` runs only when
# something has to be installed. Works as root; otherwise uses sudo.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config   # toolchain
    libfuse3-dev fuse3                 # the filesystem
    libzstd-dev libxxhash-dev          # block compression, checksums
    check                              # unit tests
    clang                              # fuzzing (libFuzzer), sanitizers
    clang-format                       # the style check in test.sh
    attr acl rsync xfsprogs e2fsprogs  # tools the mount tests drive
    procps util-linux                  # pgrep/ps, setpriv/losetup (tests and their watchdogs)
    gdb                                # backtraces of a hung test (tests/watchdog.sh)
)

installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "deps.sh: need root or sudo to install: ${missing[*]}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps.sh: no apt-get; install these yourself: ${missing[*]}" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update -qq >"$log" 2>&1 ||
    ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    cat "$log" >&2
    echo "deps.sh: apt-get failed" >&2
    exit 1
fi
