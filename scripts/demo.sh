#!/usr/bin/env bash
# Installs what is missing, builds mkernel and runs the main demo:
#   1. the live machine's topology, and a recorded hybrid laptop's (P/E kinds);
#   2. plans for real machines (2 x EPYC 9654 per NUMA node; Raptor Lake P/E split);
#   3. a pool and two single-CPU instances on this machine, a refused
#      overlapping create, an instance's boot tree;
#   4. both booted with the default image mk-kernel (one with a tenant), the
#      CPU confinement of every thread checked in /proc, IPI pings host ->
#      instance and instance <-> instance, top, the console;
#   5. the host daemon SIGKILLed: the instances keep running and the next
#      mkctl call's daemon re-adopts them with the same pids;
#   6. a live update of alpha in place: a new image, the same tenant, the
#      channel to beta carried over;
#   7. stop + delete, and a check that nothing of them is left.
# Usage (as root on Debian 12): bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
JOBS=${JOBS:-$(nproc)}
cmake --preset release >/dev/null
cmake --build --preset release -j "$JOBS" --target mkctl mkerneld mkbench mk-kernel >/dev/null

MKCTL=$PWD/build/release/bin/mkctl
KERNEL=$PWD/build/release/bin/mk-kernel
TOPO=$PWD/tests/data/topologies
# The demo keeps its state apart from the machine's /run/mkernel.
export MKERNEL_RUNTIME_DIR=${MKERNEL_RUNTIME_DIR:-$(mktemp -d /tmp/mkernel-demo.XXXXXX)}

run() { printf '\n$ mkctl %s\n' "$*"; "$MKCTL" "$@"; }
pid_of() { "$MKCTL" show "$1" --json | grep -o '"pid":[0-9]*' | head -1 | cut -d: -f2; }
# Every thread of PID and of its children: Cpus_allowed_list must be CPUS.
check_cpus() {
  local pid=$1 want=$2 bad=0 n=0 p t got
  for p in "$pid" $(pgrep -P "$pid"); do
    for t in /proc/"$p"/task/*; do
      got=$(awk '/^Cpus_allowed_list:/ {print $2}' "$t/status")
      n=$((n + 1))
      if [ "$got" != "$want" ]; then echo "  $t: Cpus_allowed_list $got, expected $want"; bad=1; fi
    done
  done
  echo "  pid $pid and its tenants: $n thread(s), Cpus_allowed_list = $want for every one"
  return $bad
}

run topology
run topology --topology "$TOPO/Intel-RaptorLake-Corei7-1370P.xml"
run plan --topology "$TOPO/AMD-19h-Zen4-2xEpyc-9654.xml" --policy per-numa --instances 2
# The recorded laptop has no memory sizes: give its pool all 20 CPUs and 16 GiB.
run init --topology "$TOPO/Intel-RaptorLake-Corei7-1370P.xml" --cpus 0-19 --memory 16G@0
run plan --topology "$TOPO/Intel-RaptorLake-Corei7-1370P.xml" --policy pe-split --apply
run show --topology "$TOPO/Intel-RaptorLake-Corei7-1370P.xml"

ncpu=$(nproc)
last=$((ncpu - 1))
if [ "$ncpu" -ge 2 ]; then
  # Two single-CPU instances need every CPU on a 2-CPU machine: the host
  # then shares, and init says so.
  run init --cpus "0-$last" --memory 256M
  run create alpha --cpus 0 --memory 64M --device listen:127.0.0.1:6379
  run create beta --cpu-count 1 --memory 64M
  printf '\n(an overlapping create is refused and changes nothing)\n'
  run create gamma --cpus "$last" --memory 64M || true
  run show
  run show alpha --dtb "$MKERNEL_RUNTIME_DIR/alpha.dtb"
  if command -v dtc >/dev/null; then dtc -q -I dtb -O dts "$MKERNEL_RUNTIME_DIR/alpha.dtb"; fi

  # Boot both with the default image; alpha runs a tenant.
  run load alpha --kernel "$KERNEL" --init sleep 600
  run load beta --kernel "$KERNEL"
  run start alpha
  run start beta
  run show
  a_pid=$(pid_of alpha); b_cpus=$("$MKCTL" show beta --json | grep -o '"cpus":"[^"]*"' | head -1 | cut -d'"' -f4)
  b_pid=$(pid_of beta)
  printf '\n(confinement, from /proc/PID/task/*/status)\n'
  check_cpus "$a_pid" 0
  check_cpus "$b_pid" "$b_cpus"
  run ping alpha --count 20
  run ping beta --from alpha --count 1000
  run ping alpha --from beta --count 1000
  run top --interval 200
  run console alpha

  # The host daemon dies; its instances do not.
  d_pid=$(cat "$MKERNEL_RUNTIME_DIR/mkerneld.lock")
  printf '\n$ kill -9 %s   (mkerneld)\n' "$d_pid"
  kill -9 "$d_pid"
  sleep 0.3
  kill -0 "$a_pid" && kill -0 "$b_pid" && echo "  alpha (pid $a_pid) and beta (pid $b_pid) still run"
  run show
  [ "$(pid_of alpha)" = "$a_pid" ] && [ "$(pid_of beta)" = "$b_pid" ] && echo "  re-adopted with the same pids"
  run ping beta --from alpha --count 100

  # Live update in place: the new image is booted next to the old one,
  # state is handed over, the tenant stays (docs/handover.md §4).
  t_pid=""
  for t in $(cat /sys/fs/cgroup/cpuset/mkernel/alpha/tasks 2>/dev/null); do
    [ "$(cat /proc/$t/comm 2>/dev/null)" = sleep ] && t_pid=$t
  done
  run update alpha
  u_pid=$(pid_of alpha)
  if [ "$u_pid" != "$a_pid" ] && [ -n "$t_pid" ] && kill -0 "$t_pid"; then
    echo "  alpha now runs pid $u_pid (was $a_pid); its tenant (pid $t_pid) kept running"
  fi
  check_cpus "$u_pid" 0
  run ping beta --from alpha --count 100

  run stop alpha
  run stop beta
  run delete alpha
  run delete beta
  left=$(ls /sys/fs/cgroup/cpuset/mkernel 2>/dev/null | grep -cE '^(alpha|beta)$' || true)
  live=0
  for p in $a_pid $b_pid $u_pid $t_pid; do
    if [ -e /proc/$p ] && ! grep -q '^State:.*Z' /proc/$p/status; then live=$((live + 1)); fi
  done
  printf '\n(after stop + delete: %s live process(es), %s cgroup(s) of alpha/beta left)\n' "$live" "$left"
  [ "$live" = 0 ] && [ "$left" = 0 ]
fi
run host status
run host stop
printf '\nstate kept in %s\n' "$MKERNEL_RUNTIME_DIR"
