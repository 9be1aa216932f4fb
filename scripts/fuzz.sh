#!/usr/bin/env bash
# Builds the libFuzzer targets (preset "fuzz", clang) and runs every
# build/fuzz/bin/fuzz_* for SECONDS each (default 60), one after another.
#
#   scripts/fuzz.sh [SECONDS]
#
# Each target runs against a scratch copy of tests/fuzz/corpus/<target>/ (the
# repository's seeds are never written to), with tests/fuzz/<target>.dict
# when it exists. Prints the executions each target ran (libFuzzer's final
# "Done N runs" line) and exits non-zero if any target crashed, leaked,
# timed out or broke an invariant; its log and crashing input are kept in
# build/fuzz/findings/<target>/. New targets need no change here: add
# `mk_add_fuzzer(fuzz_x fuzz_x.cc LIBS ...)` to tests/fuzz/CMakeLists.txt.
set -euo pipefail

secs="${1:-60}"
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS]   (a positive whole number of seconds per target)" >&2
  exit 2
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
work="$(mktemp -d "${TMPDIR:-/tmp}/mk-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

shopt -s nullglob
targets=("$bin"/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz_* executables in $bin" >&2
  exit 1
fi

failed=0
summary=()
for exe in "${targets[@]}"; do
  [ -x "$exe" ] || continue
  name="$(basename "$exe")"
  corpus="$work/$name/corpus"
  artifacts="$work/$name/artifacts"
  mkdir -p "$corpus" "$artifacts"
  if [ -d "tests/fuzz/corpus/$name" ]; then
    cp -R "tests/fuzz/corpus/$name/." "$corpus/"
  else
    echo "fuzz: warning: no seed corpus tests/fuzz/corpus/$name/" >&2
  fi
  args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$artifacts/")
  if [ -f "tests/fuzz/$name.dict" ]; then
    args+=(-dict="tests/fuzz/$name.dict")
  fi
  log="$work/$name.log"
  echo "fuzz: $name for ${secs}s ..."
  rc=0
  "$exe" "${args[@]}" "$corpus" >"$log" 2>&1 || rc=$?

  runs="$(sed -n 's/^Done \([0-9][0-9]*\) runs.*/\1/p' "$log" | tail -n 1)"
  if [ -z "$runs" ]; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
  fi
  runs="${runs:-?}"
  if [ "$rc" -eq 0 ]; then
    summary+=("$(printf '%-20s %12s runs  ok' "$name" "$runs")")
  else
    failed=1
    rm -rf "${findings:?}/$name"
    mkdir -p "$findings/$name"
    cp "$log" "$findings/$name/"
    cp -R "$artifacts/." "$findings/$name/" 2>/dev/null || true
    summary+=("$(printf '%-20s %12s runs  FAILED (exit %d): see %s' "$name" "$runs" "$rc" \
      "${findings#"$root"/}/$name/")")
    echo "fuzz: $name FAILED (exit $rc); last lines of its log:" >&2
    tail -n 30 "$log" >&2
  fi
done

echo
echo "fuzz results (${secs}s per target):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
