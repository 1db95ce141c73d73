#!/usr/bin/env bash
# build.sh [BUILD_DIR] [CMAKE_ARGS...] - installs dependencies, configures and builds kvfs.
#
# BUILD_DIR defaults to build/ in the repository. The build type is RelWithDebInfo unless
# CMAKE_ARGS says otherwise. The kvfs binary ends up in BUILD_DIR/fs/kvfs, kvctl in
# BUILD_DIR/kvcore/kvctl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
shift || true
JOBS=${KV_JOBS:-$(nproc 2>/dev/null || echo 2)}

bash "$ROOT/scripts/deps.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$BUILD" -j"$JOBS"
