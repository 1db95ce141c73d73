#!/usr/bin/env bash
# Builds kvbench (Release) and runs kvcore, LevelDB and RocksDB side by side in one run.
# Usage: scripts/bench/run-kvbench.sh [--quick] [kvbench options...]
# The Markdown report goes to stdout and to scripts/bench/RESULTS-kvbench.md (full runs only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bash "$top/scripts/deps.sh"
if ! dpkg -s libleveldb-dev librocksdb-dev >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libleveldb-dev librocksdb-dev >/dev/null
fi
build="$top/build-bench"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKV_BENCH=ON -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target kvbench >/dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$build/scripts/bench/kvbench" "$@" | tee "$out"
case " $* " in
*" --quick "* | *" --num "*) ;;
*) cp "$out" "$here/RESULTS-kvbench.md" ;;
esac
