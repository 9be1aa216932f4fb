#!/usr/bin/env bash
# Installs what is missing, builds and runs the whole test suite:
#   1. the whole ctest suite under ASan+UBSan (-Werror, MKERNEL_FAULT
#      compiled in: the fault matrix runs);
#   2. TSan over the IPI tests and the daemon's tests;
#   3. (the SDK install test runs in 1, its consumers with -fsanitize);
#   4. each libFuzzer target for FUZZ_SECONDS (default 4) on its seed corpus
#      (a smoke run that keeps CI under 20 minutes; scripts/fuzz.sh 60 for more);
#   5. mksoak for SOAK_MINUTES (default 2) with injected faults.
# Usage (as root on Debian 12): bash scripts/test.sh
# Environment: JOBS (default: nproc), FUZZ_SECONDS, SOAK_MINUTES, MK_SKIP_FUZZ=1 (a local
# shortcut; CI runs everything).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

JOBS=${JOBS:-$(nproc)}
export CTEST_PARALLEL_LEVEL=${CTEST_PARALLEL_LEVEL:-$JOBS}
# Tests use their own runtime directories; never the machine's /run/mkernel.
export MKERNEL_RUNTIME_DIR=$(mktemp -d /tmp/mkernel-test.XXXXXX)
trap 'rm -rf "$MKERNEL_RUNTIME_DIR"' EXIT

T0=$(date +%s)
step() { printf '\n==> [%s, +%ds] %s\n' "$(date +%T)" "$(( $(date +%s) - T0 ))" "$*"; }
# Every ctest stage's counts, summed into one closing line.
PASSED=0 FAILED=0
count() {
  local log=$1 line
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1)
  [ -n "$line" ] || return 0
  local failed total
  failed=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
  total=$(sed -E 's/.* tests failed out of ([0-9]+).*/\1/' <<<"$line")
  PASSED=$((PASSED + total - failed)); FAILED=$((FAILED + failed))
}
run_ctest() {  # run_ctest LOGNAME ctest-args...
  local log=$MKERNEL_RUNTIME_DIR/$1.log; shift
  local rc
  set +e
  ctest "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  count "$log"
  return "$rc"
}

# The whole suite runs once, under ASan+UBSan with -Werror and the
# MKERNEL_FAULT switch compiled in (a second, plain -O2 run of the same
# tests cost 7 of CI's 20 minutes; the sanitized run is the stricter; the
# SDK install test builds its consumers with the same -fsanitize). The TSan
# and fuzz builds compile on one core, niced, while the ASan tests run:
# those mostly wait on instances.
step "build (asan preset: ASan + UBSan, -Werror, fault injection)"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$JOBS"

SIDE_LOG=$MKERNEL_RUNTIME_DIR/side-builds.log
side_builds() {
  set -e
  cmake --preset tsan >/dev/null
  nice -n 19 cmake --build --preset tsan -j 1 --target ipi_test supervisor_test daemon_test mkctl mkerneld
  if [ "${MK_SKIP_FUZZ:-0}" != 1 ]; then
    cmake --preset fuzz >/dev/null
    nice -n 19 cmake --build --preset fuzz -j 1 --target fuzzers
  fi
}
side_builds >"$SIDE_LOG" 2>&1 &
SIDE_PID=$!

step "tests (ASan + UBSan: the whole suite)"
# Leak detection is ASan's default (mkctl alone turns it off for itself,
# tools/mkctl/main.cc; the bad-input table turns it back on).
ASAN_OPTIONS=abort_on_error=1 LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_ctest asan --preset asan

step "waiting for the side builds (TSan, fuzzers)"
if ! wait "$SIDE_PID"; then
  tail -n 60 "$SIDE_LOG"
  echo "a side build failed (log above)" >&2
  exit 1
fi

step "tests (TSan: IPI, and the daemon's supervisor, server and end-to-end tests)"
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_ctest tsan-ipi --preset tsan -L '^ipi$'
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  run_ctest tsan-daemon --preset tsan -R '^(SupervisorTest|ServerTest|Daemon)\.'

# The soak (tools/soak, docs/reliability.md): random operations and daemon
# restarts with injected faults on the ASan binaries, invariants after each,
# no leak at the end. The seed is printed: mksoak --seed N replays it. The
# fuzz smoke run (niced: the soak's instances come first) runs beside it;
# both are bounded by time, not by work.
FUZZ_LOG=$MKERNEL_RUNTIME_DIR/fuzz.log
if [ "${MK_SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz (${FUZZ_SECONDS:-4} s per target, two at a time, niced) beside the soak"
  FUZZ_JOBS=2 nice -n 19 bash scripts/fuzz.sh "${FUZZ_SECONDS:-4}" >"$FUZZ_LOG" 2>&1 &
  FUZZ_PID=$!
fi
step "soak (${SOAK_MINUTES:-2} min, ASan build, faults on)"
ASAN_OPTIONS=abort_on_error=1 LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  build/asan/bin/mksoak --minutes "${SOAK_MINUTES:-2}"
PASSED=$((PASSED + 1))
if [ "${MK_SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz results"
  rc=0
  wait "$FUZZ_PID" || rc=$?
  sed -n '/^fuzz results/,$p' "$FUZZ_LOG"
  if [ "$rc" != 0 ]; then
    cat "$FUZZ_LOG"
    echo "fuzz: a target failed (log above; inputs under build/fuzz/findings/)" >&2
    exit 1
  fi
fi
step "all test stages passed"
echo "tests: $PASSED passed, $FAILED failed"
