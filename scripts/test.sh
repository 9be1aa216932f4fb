#!/usr/bin/env bash
# Installs what is missing, builds and runs the whole test suite:
#   1. the CI build (-Werror) and every ctest test;
#   2. ASan+UBSan over the whole suite;
#   3. TSan over the IPI tests;
#   4. each libFuzzer target for FUZZ_SECONDS (default 4) on its seed corpus
#      (a smoke run that keeps CI under 20 minutes; scripts/fuzz.sh 60 for more).
# Usage (as root on Debian 12): bash scripts/test.sh
# Environment: JOBS (default: nproc), FUZZ_SECONDS, MK_SKIP_SANITIZERS=1,
# MK_SKIP_FUZZ=1 (local shortcuts; CI runs everything).
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

step "build (ci preset: -O2 without debug info, -Werror)"
cmake --preset ci >/dev/null
cmake --build --preset ci -j "$JOBS"
step "tests (ci)"
run_ctest ci --preset ci

if [ "${MK_SKIP_SANITIZERS:-0}" != 1 ]; then
  step "build (asan preset: ASan + UBSan)"
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$JOBS"
  step "tests (ASan + UBSan)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest asan --preset asan

  step "build (tsan preset: ThreadSanitizer, IPI tests)"
  cmake --preset tsan >/dev/null
  if grep -q 'ipi_test' tests/ipi/CMakeLists.txt; then
    cmake --build --preset tsan -j "$JOBS" --target ipi_test
    step "tests (TSan: IPI)"
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_ctest tsan --preset tsan -L '^ipi$'
  fi
fi

if [ "${MK_SKIP_FUZZ:-0}" != 1 ] && [ -x scripts/fuzz.sh ]; then
  step "fuzz (${FUZZ_SECONDS:-4} s per target)"
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-4}"
fi
step "all test stages passed"
echo "tests: $PASSED passed, $FAILED failed"
