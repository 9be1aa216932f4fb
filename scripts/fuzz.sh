#!/usr/bin/env bash
# Builds the libFuzzer targets (preset "fuzz", clang) and runs every
# build/fuzz/bin/fuzz_* for SECONDS each (default 60), JOBS at a time
# (default 1: one after another).
#
#   scripts/fuzz.sh [-j JOBS] [SECONDS]      (or FUZZ_JOBS=JOBS in the environment)
#
# Each target runs against a scratch copy of tests/fuzz/corpus/<target>/ (the
# repository's seeds are never written to), with tests/fuzz/<target>.dict
# when it exists. Prints, per target, the executions it ran (libFuzzer's
# final "Done N runs" line), its corpus (seeds -> after the run) and the
# coverage it reached, and exits non-zero if any target crashed, leaked,
# timed out or broke an invariant; its log and crashing input are kept in
# build/fuzz/findings/<target>/. Every target's log is kept in
# build/fuzz/logs/<target>.log. New targets need no change here: add
# `mk_add_fuzzer(fuzz_x fuzz_x.cc LIBS ...)` to tests/fuzz/CMakeLists.txt.
# With -j, give each job a core: a target's executions per second drop
# when jobs share one.
set -euo pipefail

usage() {
  echo "usage: $0 [-j JOBS] [SECONDS]   (seconds per target, default 60; jobs: targets run at once," \
       "default \$FUZZ_JOBS or 1)" >&2
  exit 2
}

jobs="${FUZZ_JOBS:-1}"
while getopts ":j:h" opt; do
  case "$opt" in
    j) jobs="$OPTARG" ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
secs="${1:-60}"
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: SECONDS must be a positive whole number of seconds per target" >&2
  usage
fi
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: JOBS (-j or FUZZ_JOBS) must be a positive whole number" >&2
  usage
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/install-deps.sh"

cmake --preset fuzz >/dev/null
# Only the fuzz targets: the fuzz run must not depend on every other binary
# building with clang. (`cmake --build --preset fuzz` builds everything.)
cmake --build --preset fuzz --target fuzzers

bin="$root/build/fuzz/bin"
findings="$root/build/fuzz/findings"
logs="$root/build/fuzz/logs"
work="$(mktemp -d "${TMPDIR:-/tmp}/mk-fuzz.XXXXXX")"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$logs"

shopt -s nullglob
targets=()
for exe in "$bin"/fuzz_*; do
  [ -x "$exe" ] && targets+=("$exe")
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz_* executables in $bin" >&2
  exit 1
fi

# Runs one target; leaves "rc runs seeds corpus cov" in $work/<name>.result.
run_target() {
  local exe="$1" name corpus artifacts log rc seeds runs corp cov
  name="$(basename "$exe")"
  corpus="$work/$name/corpus"
  artifacts="$work/$name/artifacts"
  mkdir -p "$corpus" "$artifacts"
  if [ -d "tests/fuzz/corpus/$name" ]; then
    cp -R "tests/fuzz/corpus/$name/." "$corpus/"
  else
    echo "fuzz: warning: no seed corpus tests/fuzz/corpus/$name/" >&2
  fi
  seeds="$(find "$corpus" -type f | wc -l)"
  local args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
              -artifact_prefix="$artifacts/")
  if [ -f "tests/fuzz/$name.dict" ]; then
    args+=(-dict="tests/fuzz/$name.dict")
  fi
  log="$work/$name.log"
  rc=0
  "$exe" "${args[@]}" "$corpus" >"$log" 2>&1 || rc=$?
  cp "$log" "$logs/$name.log"

  runs="$(sed -n 's/^Done \([0-9][0-9]*\) runs.*/\1/p' "$log" | tail -n 1)"
  if [ -z "$runs" ]; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
  fi
  corp="$(find "$corpus" -type f | wc -l)"
  cov="$(sed -n 's/^#[0-9][0-9]*.*cov: \([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
  if [ "$rc" -ne 0 ]; then
    rm -rf "${findings:?}/$name"
    mkdir -p "$findings/$name"
    cp "$log" "$findings/$name/"
    cp -R "$artifacts/." "$findings/$name/" 2>/dev/null || true
  fi
  echo "$rc ${runs:-?} $seeds $corp ${cov:-?}" >"$work/$name.result"
}

echo "fuzz: ${#targets[@]} targets, ${secs}s each, $jobs at a time"
running=0
for exe in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  echo "fuzz: $(basename "$exe") for ${secs}s ..."
  run_target "$exe" &
  running=$((running + 1))
done
wait || true

failed=0
summary=()
for exe in "${targets[@]}"; do
  name="$(basename "$exe")"
  if [ ! -f "$work/$name.result" ]; then
    failed=1
    summary+=("$(printf '%-22s %12s runs  FAILED: the run did not finish' "$name" "?")")
    continue
  fi
  read -r rc runs seeds corp cov <"$work/$name.result"
  line="$(printf '%-22s %12s runs  corpus %5s -> %-6s cov %6s' "$name" "$runs" "$seeds" "$corp" "$cov")"
  if [ "$rc" -eq 0 ]; then
    summary+=("$line  ok")
  else
    failed=1
    summary+=("$line  FAILED (exit $rc): see ${findings#"$root"/}/$name/")
    echo "fuzz: $name FAILED (exit $rc); last lines of its log:" >&2
    tail -n 30 "$logs/$name.log" >&2
  fi
done

echo
echo "fuzz results (${secs}s per target, $jobs at a time; logs in ${logs#"$root"/}/):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
