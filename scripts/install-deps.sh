#!/usr/bin/env bash
# Installs every build and test dependency of mkernel from Debian 12 packages.
# Idempotent: quiet and quick when everything is already there. Run as root
# (or with sudo available). Usage: scripts/install-deps.sh
set -euo pipefail

PKGS=(
  # toolchain
  g++ cmake ninja-build git pkg-config make
  # libraries (DESIGN.md: hwloc, libnuma, libfdt, Boost 1.81 with Boost.JSON)
  libhwloc-dev hwloc-nox libnuma-dev libfdt-dev
  # OpenSSL libcrypto (SHA-256 of kernel images)
  libssl-dev
  libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # fuzzing (libFuzzer) and sanitizer runtimes
  clang libclang-rt-14-dev
  # tools the tests and demo call
  util-linux procps iproute2
  # a real Redis client against the KV service across live updates
  redis-tools
  # benchmarks and pictures: charts (gnuplot), the noisy neighbour
  # (stress-ng), lstopo's SVG made PNG (rsvg-convert)
  gnuplot-nox stress-ng librsvg2-bin
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "install-deps: missing packages (${missing[*]}) and not root; rerun as root" >&2
    exit 1
  fi
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
