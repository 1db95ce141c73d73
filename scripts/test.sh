#!/usr/bin/env bash
# test.sh [--tsan] - builds kvfs and runs every test; exits non-zero if anything failed.
#
# Default run (the CI job, see .ci/run), in this order:
#   1. dependencies (scripts/deps.sh)
#   2. RelWithDebInfo build with -Werror, then `ctest` of every test: unit, crash, mount
#      (mount tests skip only when /dev/fuse is absent)
#   3. ASan+UBSan build (clang if present, else gcc): the unit and crash labels
#   4. clang libFuzzer build (with ASan+UBSan): every fuzz target for KV_FUZZ_SECONDS each
# then prints a summary. Stages after a failure still run, so one run reports everything.
#
# --tsan: instead, a ThreadSanitizer build running the unit and crash labels, which hold the
#         concurrency tests (cache, group commit, background flush/compaction).
#
# Environment: KV_JOBS (parallelism, default 2), KV_FUZZ_SECONDS (default 15),
# KV_TEST_BUILD (prefix of the build directories, default ./build-test).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=${KV_JOBS:-2}
FUZZ_SECONDS=${KV_FUZZ_SECONDS:-15}
PREFIX=${KV_TEST_BUILD:-$ROOT/build-test}
MODE=default
case "${1:-}" in
"") ;;
--tsan) MODE=tsan ;;
-h | --help)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: $0 [--tsan]" >&2
    exit 2
    ;;
esac

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

SUMMARY=()
FAILED=0
T0=$SECONDS

# run_stage NAME CMD...: runs CMD, records ok/FAILED and the time it took.
run_stage() {
    local name=$1 start=$SECONDS status
    shift
    echo "==> $name"
    if "$@"; then status=ok; else
        status=FAILED
        FAILED=1
    fi
    SUMMARY+=("$(printf '%-36s %-8s %5ss' "$name" "$status" $((SECONDS - start)))")
    [ "$status" = ok ]
}

skip_stage() {
    echo "==> $1: skipped ($2)"
    SUMMARY+=("$(printf '%-36s %-8s (%s)' "$1" skipped "$2")")
}

# Runs a command with its output in LOG; shows the output only if it fails.
quietly() {
    local log=$1
    shift
    if "$@" >"$log" 2>&1; then return 0; fi
    if [ "$(wc -l <"$log")" -gt 300 ]; then
        grep -E 'error|Error|warning' "$log" | head -100
        echo "... (last 100 lines of $log)"
        tail -n 100 "$log"
    else
        cat "$log"
    fi
    return 1
}

# build DIR TARGETS(space separated, "" = all) CMAKE_ARGS...
build() {
    local dir=$1 targets=$2
    shift 2
    mkdir -p "$dir" || return 1
    quietly "$dir/configure.log" cmake -S "$ROOT" -B "$dir" "$@" || return 1
    local t=()
    for x in $targets; do t+=(--target "$x"); done
    quietly "$dir/build.log" cmake --build "$dir" -j"$JOBS" "${t[@]}"
}

run_ctest() {
    local dir=$1
    shift
    (cd "$dir" && ctest --output-on-failure -j"$JOBS" "$@")
}

san_cc() {
    if command -v clang >/dev/null 2>&1; then echo clang; else echo gcc; fi
}

run_stage "dependencies" bash "$ROOT/scripts/deps.sh" || true

if [ "$MODE" = tsan ]; then
    dir=$PREFIX-tsan
    if run_stage "build (TSan, $(san_cc))" build "$dir" "" -DCMAKE_C_COMPILER="$(san_cc)" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_TSAN=ON; then
        run_stage "unit+crash under TSan" run_ctest "$dir" -L 'unit|crash'
    fi
else
    dir=$PREFIX-main
    if run_stage "build (RelWithDebInfo, -Werror)" build "$dir" "" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_WERROR=ON; then
        run_stage "ctest: all (unit, crash, mount)" run_ctest "$dir"
    fi

    dir=$PREFIX-asan
    if run_stage "build (ASan+UBSan, $(san_cc))" build "$dir" "" \
        -DCMAKE_C_COMPILER="$(san_cc)" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_WERROR=ON \
        -DKV_ASAN=ON -DKV_UBSAN=ON; then
        run_stage "unit+crash under ASan+UBSan" run_ctest "$dir" -L 'unit|crash'
    fi

    shopt -s nullglob
    fuzz_targets=()
    for f in "$ROOT"/tests/fuzz/fuzz_*.c; do fuzz_targets+=("$(basename "$f" .c)"); done
    if ! command -v clang >/dev/null 2>&1; then
        skip_stage "fuzz" "clang not installed"
    elif [ ${#fuzz_targets[@]} -eq 0 ]; then
        skip_stage "fuzz" "no targets in tests/fuzz"
    else
        dir=$PREFIX-fuzz
        # The library is instrumented for coverage too (fuzzer-no-link), or libFuzzer would
        # see only the few lines of each target's entry point.
        if run_stage "build (libFuzzer, clang)" build "$dir" "${fuzz_targets[*]}" \
            -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_FUZZ=ON \
            -DKV_FUZZ_SECONDS="$FUZZ_SECONDS" -DKV_ASAN=ON -DKV_UBSAN=ON \
            -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" \
            -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address"; then
            run_stage "fuzz (${FUZZ_SECONDS}s per target)" run_ctest "$dir" -L fuzz
        fi
    fi
fi

echo
echo "==== summary ($MODE run, $((SECONDS - T0))s) ===="
printf '%s\n' "${SUMMARY[@]}"
if [ "$FAILED" -ne 0 ]; then
    echo "RESULT: FAILED"
    exit 1
fi
echo "RESULT: all passed"
