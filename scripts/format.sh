#!/usr/bin/env bash
# format.sh [--check] - formats every C source and header with clang-format (.clang-format).
#
# With --check nothing is changed; the exit status is non-zero if any file needs formatting.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
if ! command -v "$CLANG_FORMAT" >/dev/null 2>&1; then
    echo "format.sh: $CLANG_FORMAT not found (apt-get install clang-format)" >&2
    exit 1
fi

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files '*.c' '*.h')
else
    mapfile -t files < <(find . -path './build*' -prune -o \( -name '*.c' -o -name '*.h' \) -print)
fi
[ ${#files[@]} -gt 0 ] || exit 0

if [ "${1:-}" = "--check" ]; then
    "$CLANG_FORMAT" --dry-run --Werror "${files[@]}"
else
    "$CLANG_FORMAT" -i "${files[@]}"
fi
