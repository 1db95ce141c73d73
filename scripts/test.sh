#!/usr/bin/env bash
# test.sh [--tsan] - builds kvfs and runs every test; exits non-zero if anything failed.
#
# Default run (the CI job, see .ci/run), in this order:
#   1. dependencies (scripts/deps.sh)
#   2. RelWithDebInfo build with -Werror, then `ctest` of every test: unit, crash, mount
#      (mount tests skip only when /dev/fuse is absent)
#   3. ASan+UBSan build (clang if present, else gcc): the unit and crash labels
#   4. the same build's kvfs daemon on real mounts: a short subset of the mount tests (posix,
#      fsx, tools, hostile, cli, stress, churn; KV_SAN_FSX_OPS fsx operations, a KV_SAN_MANY-file
#      directory in tools), each failing on any ASan/UBSan/LeakSanitizer report of its processes
#      (tests/mount/lib.sh collects them; leaks are checked when the daemon exits after unmount)
#   5. with clang, the same build also holds the libFuzzer targets (the library is instrumented
#      for coverage too); every fuzz target runs for KV_FUZZ_SECONDS on its corpus
# then prints how long each stage took and the test counts of all stages together in ctest's
# words ("N% tests passed, F tests failed out of T"). Stages after a failure still run, so one
# run reports everything.
#
# --tsan: instead, a ThreadSanitizer build running the unit and crash labels, which hold the
#         concurrency tests (cache, group commit, background flush/compaction).
#
# Time: the long randomized tests (model, concurrency, crash engine) run for a time budget, not a
# fixed count: KV_TEST_SECONDS each in the -Werror build (default 60), KV_SAN_TEST_SECONDS under
# the sanitizers (default 30). A test still running after its budget + 240 s is a hang: its
# stacks are printed and it fails (tests/watchdog.sh). Mount soak lengths: KV_MOUNT_CRASH_SECONDS
# (mount.crash, default 60), KV_MOUNT_POWERLOSS_CYCLES (per file system, default 4).
#
# Seeds: the engine tests take KV_SEED; unless it is set, it is derived from the commit, so a
# rerun of the same commit replays the same random sequences (the seed is printed). The mount
# crash and power-loss workloads take CRASH_SEED / POWERLOSS_SEED, derived from KV_SEED.
#
# Scratch: the unit and crash tests (which simulate power loss themselves) run on a tmpfs
# (/dev/shm) when it has room, as fsync on a disk would only slow them down; mount tests run
# in the build directory. Logs of each stage are in the build directories.
#
# Environment: KV_JOBS (parallelism, default 2), KV_FUZZ_SECONDS (default 15), KV_TEST_BUILD
# (prefix of the build directories, default ./build-test), KV_SAN_FSX_OPS (default 6000),
# KV_SAN_MANY (default 30000), and the knobs above.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=${KV_JOBS:-2}
FUZZ_SECONDS=${KV_FUZZ_SECONDS:-15}
TEST_SECONDS=${KV_TEST_SECONDS:-60}
SAN_TEST_SECONDS=${KV_SAN_TEST_SECONDS:-30}
MOUNT_CRASH_SECONDS=${KV_MOUNT_CRASH_SECONDS:-60}
MOUNT_POWERLOSS_CYCLES=${KV_MOUNT_POWERLOSS_CYCLES:-4}
SAN_FSX_OPS=${KV_SAN_FSX_OPS:-6000}
SAN_MANY=${KV_SAN_MANY:-30000}
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

if [ -z "${KV_SEED:-}" ]; then
    commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo 0)
    KV_SEED=$((16#${commit:0:8}))
fi
export KV_SEED
# The mount tests' workloads too (their kill moments still depend on timing).
export CRASH_SEED=${CRASH_SEED:-$((KV_SEED % 1000000))}
export POWERLOSS_SEED=${POWERLOSS_SEED:-$((KV_SEED % 1000000))}

SUMMARY=()
FAILED=0
T0=$SECONDS
TESTS_TOTAL=0
TESTS_FAILED=0
FAILED_TESTS=()

# run_stage NAME CMD...: runs CMD, records ok/FAILED and the time it took.
run_stage() {
    local name=$1 start=$SECONDS status
    shift
    echo
    echo "==> $name ($(date +%T))"
    if "$@"; then status=ok; else
        status=FAILED
        FAILED=1
    fi
    SUMMARY+=("$(printf '%-40s %-8s %5ss' "$name" "$status" $((SECONDS - start)))")
    echo "==> $name: $status in $((SECONDS - start))s"
    [ "$status" = ok ]
}

skip_stage() {
    echo "==> $1: skipped ($2)"
    SUMMARY+=("$(printf '%-40s %-8s (%s)' "$1" skipped "$2")")
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

# run_ctest DIR CTEST_ARGS...: ctest with its output also in DIR/ctest-N.log; adds its counts
# and failed tests to the totals.
CTEST_RUNS=0
run_ctest() {
    local dir=$1 log rc line
    shift
    CTEST_RUNS=$((CTEST_RUNS + 1))
    log=$dir/ctest-$CTEST_RUNS.log
    (cd "$dir" && ctest --output-on-failure --no-tests=error -j"$JOBS" "$@") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
    if [[ $line =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
        TESTS_FAILED=$((TESTS_FAILED + BASH_REMATCH[1]))
        TESTS_TOTAL=$((TESTS_TOTAL + BASH_REMATCH[2]))
    elif [ "$rc" -ne 0 ]; then
        FAILED_TESTS+=("(ctest $* in $dir did not run: see $log)")
    fi
    # What the budgeted and soak tests got done (ctest shows the output of failures only).
    if [ -f "$dir/Testing/Temporary/LastTest.log" ]; then
        echo "---- work done by the long tests:"
        grep -hE '^(crash: [0-9]+ iterations|[a-z+]+: [0-9]+ seeds, |concurrency: [0-9]+ batches)|^\[(crash|powerloss) .*\] PASS|^Done [0-9]+ runs' \
            "$dir/Testing/Temporary/LastTest.log" | cut -c1-160
    fi
    while IFS= read -r line; do
        FAILED_TESTS+=("$line")
    done < <(sed -n '/^The following tests FAILED:/,/^Errors while running/p' "$log" |
        grep -E '^[[:space:]]+[0-9]+ - ' | sed "s|\$| [$(basename "$dir")]|")
    return "$rc"
}

# The sanitizer build's kvfs on real mounts: a short subset of the mount tests (see the top).
# The test harness (lib.sh) fails a test on any sanitizer report; ASAN_OPTIONS and UBSAN_OPTIONS
# above still apply, lib.sh only adds its log_path.
SAN_MOUNT_TESTS='mount\.(posix|fsx|tools|hostile|cli|stress|churn)$'
SAN_MOUNT_TARGETS="kvfs posix_driver fsx meta_stress"
san_mount_tests() {
    FSX_OPS=$SAN_FSX_OPS MT_MANY=$SAN_MANY run_ctest "$1" -L mount -R "$SAN_MOUNT_TESTS"
}

san_cc() {
    if command -v clang >/dev/null 2>&1; then echo clang; else echo gcc; fi
}

# Scratch space for the engine tests: a private directory on /dev/shm if it is a writable
# tmpfs with at least 2 GiB free, else the build directory's default (KV_TEST_TMPDIR unset).
SCRATCH=""
scratch_args() {
    [ -n "$SCRATCH" ] && echo "-DKV_TEST_TMPDIR=$SCRATCH" && return
    echo "-DKV_TEST_TMPDIR=$1/tmp"
}
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] &&
    [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')" -ge $((2 * 1024 * 1024)) ] 2>/dev/null; then
    SCRATCH=$(mktemp -d /dev/shm/kvfs-test.XXXXXX 2>/dev/null) || SCRATCH=""
fi
cleanup_scratch() {
    [ -n "$SCRATCH" ] || return 0
    if [ "$FAILED" -eq 0 ]; then
        rm -rf "$SCRATCH"
    else
        echo "test.sh: kept the engine tests' scratch directory $SCRATCH (failures above)"
    fi
}
trap cleanup_scratch EXIT

echo "test.sh: $MODE run at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), jobs $JOBS," \
    "KV_SEED=$KV_SEED, engine test scratch ${SCRATCH:-in the build directories}"

run_stage "dependencies" bash "$ROOT/scripts/deps.sh" || true

if [ "$MODE" = tsan ]; then
    dir=$PREFIX-tsan
    if run_stage "build (TSan, $(san_cc))" build "$dir" kv_engine_tests \
        -DCMAKE_C_COMPILER="$(san_cc)" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_TSAN=ON \
        -DKV_TEST_SECONDS="$SAN_TEST_SECONDS" "$(scratch_args "$dir")"; then
        run_stage "unit+crash under TSan" run_ctest "$dir" -L 'unit|crash'
    fi
else
    dir=$PREFIX-main
    run_stage "clang-format clean" bash "$ROOT/scripts/format.sh" --check
    if run_stage "build (RelWithDebInfo, -Werror)" build "$dir" "" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_WERROR=ON -DKV_TEST_SECONDS="$TEST_SECONDS" \
        -DKV_MOUNT_CRASH_SECONDS="$MOUNT_CRASH_SECONDS" \
        -DKV_MOUNT_POWERLOSS_CYCLES="$MOUNT_POWERLOSS_CYCLES" "$(scratch_args "$dir")"; then
        run_stage "ctest: all (unit, crash, mount)" run_ctest "$dir"
    fi

    shopt -s nullglob
    fuzz_targets=()
    for f in "$ROOT"/tests/fuzz/fuzz_*.c; do fuzz_targets+=("$(basename "$f" .c)"); done
    dir=$PREFIX-asan
    if [ "$(san_cc)" = clang ] && [ ${#fuzz_targets[@]} -gt 0 ]; then
        # One clang build serves both: ASan+UBSan everywhere, plus libFuzzer's coverage
        # instrumentation (KV_FUZZ) that the fuzz targets need and the unit tests ignore.
        if run_stage "build (ASan+UBSan+libFuzzer, clang)" build "$dir" \
            "kv_engine_tests $SAN_MOUNT_TARGETS ${fuzz_targets[*]}" -DCMAKE_C_COMPILER=clang \
            -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_WERROR=ON -DKV_ASAN=ON -DKV_UBSAN=ON \
            -DKV_FUZZ=ON -DKV_FUZZ_SECONDS="$FUZZ_SECONDS" \
            -DKV_TEST_SECONDS="$SAN_TEST_SECONDS" "$(scratch_args "$dir")"; then
            run_stage "unit+crash under ASan+UBSan" run_ctest "$dir" -L 'unit|crash'
            run_stage "mount tests under ASan+UBSan" san_mount_tests "$dir"
            run_stage "fuzz (${FUZZ_SECONDS}s per target)" run_ctest "$dir" -L fuzz
        fi
    else
        if run_stage "build (ASan+UBSan, $(san_cc))" build "$dir" \
            "kv_engine_tests $SAN_MOUNT_TARGETS" \
            -DCMAKE_C_COMPILER="$(san_cc)" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_WERROR=ON \
            -DKV_ASAN=ON -DKV_UBSAN=ON -DKV_TEST_SECONDS="$SAN_TEST_SECONDS" \
            "$(scratch_args "$dir")"; then
            run_stage "unit+crash under ASan+UBSan" run_ctest "$dir" -L 'unit|crash'
            run_stage "mount tests under ASan+UBSan" san_mount_tests "$dir"
        fi
        if [ ${#fuzz_targets[@]} -eq 0 ]; then
            skip_stage "fuzz" "no targets in tests/fuzz"
        else
            skip_stage "fuzz" "clang not installed"
        fi
    fi
fi

echo
echo "==== summary ($MODE run, $((SECONDS - T0))s) ===="
printf '%s\n' "${SUMMARY[@]}"
if [ "$FAILED" -ne 0 ]; then
    echo "RESULT: FAILED"
else
    echo "RESULT: all passed"
fi
# Last, the counts of every ctest run together, in ctest's own words and order.
echo
if [ "$TESTS_TOTAL" -gt 0 ]; then
    pct=$(((TESTS_TOTAL - TESTS_FAILED) * 100 / TESTS_TOTAL))
    [ "$TESTS_FAILED" -gt 0 ] && [ "$pct" -eq 100 ] && pct=99
else
    pct=0
fi
echo "$pct% tests passed, $TESTS_FAILED tests failed out of $TESTS_TOTAL"
echo
echo "Total Test time (real) = $((SECONDS - T0)).00 sec"
if [ ${#FAILED_TESTS[@]} -gt 0 ]; then
    echo
    echo "The following tests FAILED:"
    printf '%s\n' "${FAILED_TESTS[@]}"
fi
if [ "$FAILED" -ne 0 ]; then
    echo "Errors while running CTest"
    exit 1
fi
