#!/usr/bin/env bash
# Issues #5 and #6's acceptance runs: a KV instance serves redis-benchmark
# while it is live-updated N times (default 20); passes when redis-benchmark
# reports no error and every key written before the first update reads back
# after each update. In place (#5): the instance on CPU 1. --staged (#6): the
# instance on CPUs 0-1 with a tenant, each update a staged one (the new image
# starts on CPU 1 taken from the old one, tenants and services move to it,
# then CPU 0); the tenant must keep its pid. Needs root, a built tree (BUILD,
# default build/release) and redis-tools. Uses its own runtime directory;
# leaves nothing behind.
#
# Usage: scripts/update-under-load.sh [--staged] [UPDATES] [REQUESTS]
#   e.g. scripts/update-under-load.sh 20 200000
#        scripts/update-under-load.sh --staged 10 200000
set -euo pipefail

STAGED=
if [ "${1:-}" = "--staged" ]; then STAGED=--staged; shift; fi
UPDATES=${1:-20}
REQUESTS=${2:-200000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
BIN=$BUILD/bin
export MKERNEL_RUNTIME_DIR=${MKERNEL_RUNTIME_DIR:-/tmp/mk-update-under-load.$$}
PORT=${PORT:-16379}
NAME=kvload
KEYS=1000
MKCTL="$BIN/mkctl"

for t in "$MKCTL" "$BIN/mkerneld" "$BIN/mk-kernel"; do
  [ -x "$t" ] || { echo "update-under-load: $t missing: build first (BUILD=$BUILD)" >&2; exit 1; }
done
command -v redis-benchmark >/dev/null || { echo "update-under-load: redis-benchmark missing (apt-get install redis-tools)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "update-under-load: needs root (cgroups, namespaces)" >&2; exit 1; }

cleanup() {
  "$MKCTL" stop "$NAME" >/dev/null 2>&1 || true
  "$MKCTL" delete "$NAME" >/dev/null 2>&1 || true
  "$MKCTL" host stop >/dev/null 2>&1 || true
  rm -rf "$MKERNEL_RUNTIME_DIR"
}
trap cleanup EXIT

"$MKCTL" init --cpus 0-1 --memory 512M >/dev/null 2>&1
if [ -n "$STAGED" ]; then
  "$MKCTL" create "$NAME" --cpus 0-1 --memory 256M --device "listen:127.0.0.1:$PORT" >/dev/null
  "$MKCTL" load "$NAME" --kernel "$BIN/mk-kernel" --cmdline --services=kv --init 'sleep 100000' >/dev/null
else
  "$MKCTL" create "$NAME" --cpus 1 --memory 256M --device "listen:127.0.0.1:$PORT" >/dev/null
  "$MKCTL" load "$NAME" --kernel "$BIN/mk-kernel" --cmdline --services=kv >/dev/null
fi
"$MKCTL" start "$NAME"
sleep 0.3  # the tenant's exec
TENANT=$(pgrep -f '^sleep 100000$' | head -1 || true)

# Every key written before the first update reads back (else FAIL and exit 1).
check_keys() {
  for i in $(seq 1 $KEYS); do printf 'GET before:%d\n' "$i"; done | redis-cli -p "$PORT" >"$MKERNEL_RUNTIME_DIR/get.out"
  local missing
  missing=$(awk '$0 != "value-" NR' "$MKERNEL_RUNTIME_DIR/get.out" | wc -l)
  missing=$((missing + KEYS - $(wc -l <"$MKERNEL_RUNTIME_DIR/get.out")))
  if [ "$missing" -ne 0 ]; then
    echo "update-under-load: FAIL: $missing of $KEYS keys missing $1" >&2
    exit 1
  fi
}

echo "writing $KEYS keys before the first update"
for i in $(seq 1 $KEYS); do printf 'SET before:%d value-%d\n' "$i" "$i"; done | redis-cli -p "$PORT" >/dev/null

OUT=$MKERNEL_RUNTIME_DIR/redis-benchmark.out
redis-benchmark -p "$PORT" -t set,get,incr -n "$REQUESTS" -c 20 -q >"$OUT" 2>&1 &
BENCH=$!
sleep 0.5
blackouts=()
for i in $(seq 1 "$UPDATES"); do
  j=$("$MKCTL" update "$NAME" $STAGED --json); [ -n "${MK_UPDATE_LOG:-}" ] && echo "$j" >>"$MK_UPDATE_LOG"
  if [ -n "$STAGED" ]; then  # the longest of the update's step blackouts
    b=$(echo "$j" | sed -n 's/.*"max_blackout_ms":\([0-9.eE+-]*\).*/\1/p' | awk '{printf "%.3f", $1}')
  else
    b=$(echo "$j" | sed -n 's/.*"blackout_ms":\([0-9.eE+-]*\).*/\1/p' | awk '{printf "%.3f", $1}')
  fi
  [ -n "$b" ] || { echo "update-under-load: update $i failed" >&2; exit 1; }
  blackouts+=("$b")
  check_keys "after update $i"
  sleep 0.8  # spread the updates over the whole benchmark (about 20 s at -n 200000)
done
rc=0
wait "$BENCH" || rc=$?
tr '\r' '\n' <"$OUT" | grep -v '^ *$' | grep -v 'requests per second' | grep -v '^[A-Z]*: rps=' || true
tr '\r' '\n' <"$OUT" | grep 'requests per second' || true
printf '%sblackouts (ms): %s\n' "${STAGED:+longest step }" "${blackouts[*]}"
if [ "$rc" -ne 0 ] || tr '\r' '\n' <"$OUT" | grep -qi 'error'; then
  echo "update-under-load: FAIL: redis-benchmark exit $rc or errors reported" >&2
  exit 1
fi
check_keys "after the last update"
if [ -n "$STAGED" ] && [ -n "$TENANT" ] && ! kill -0 "$TENANT" 2>/dev/null; then
  echo "update-under-load: FAIL: the tenant (pid $TENANT) did not survive the staged updates" >&2
  exit 1
fi
echo "update-under-load: OK: $UPDATES ${STAGED:+staged }live updates under redis-benchmark -n $REQUESTS -c 20 (set,get,incr): no error; all $KEYS keys written before read back after each update"
