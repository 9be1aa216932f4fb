#!/usr/bin/env bash
# Installs what is missing, builds mkernel and runs the main demo:
#   1. the live machine's topology, and a recorded hybrid laptop's (P/E kinds);
#   2. plans for real machines (2 x EPYC 9654 per NUMA node; Raptor Lake P/E split);
#   3. a pool and two instances on this machine, a refused overlapping create,
#      an instance's boot tree, and deletion; the host daemon mkerneld (which
#      mkctl starts on the first live call) is stopped at the end.
# Usage (as root on Debian 12): bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
JOBS=${JOBS:-$(nproc)}
cmake --preset release >/dev/null
cmake --build --preset release -j "$JOBS" --target mkctl mkerneld mkbench >/dev/null

MKCTL=$PWD/build/release/bin/mkctl
TOPO=$PWD/tests/data/topologies
# The demo keeps its state apart from the machine's /run/mkernel.
export MKERNEL_RUNTIME_DIR=${MKERNEL_RUNTIME_DIR:-$(mktemp -d /tmp/mkernel-demo.XXXXXX)}

run() { printf '\n$ mkctl %s\n' "$*"; "$MKCTL" "$@"; }

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
  run delete alpha
  run delete beta
fi
run host status
run host stop
printf '\nstate kept in %s\n' "$MKERNEL_RUNTIME_DIR"
