#!/bin/sh
# Installs the build tree into a temporary prefix and builds the hello image
# out of tree twice: with find_package(mksdk) and with pkg-config. Then runs
# it without a boot tree: it must fail with exit code 3 (bad boot tree).
# usage: sdk_install_test.sh BUILD_DIR HELLO_MAIN_CC [CONSUMER_FLAGS]
# CONSUMER_FLAGS: compile and link flags of the consumer, e.g.
# -fsanitize=address,undefined when the build (and so the archives) is.
set -eu
build=$1
src=$2
flags=${3:-}
# An instrumented consumer exits 3 on purpose; its leak check is not the test.
export ASAN_OPTIONS=detect_leaks=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
mkdir "$tmp/proj"
cp "$src" "$tmp/proj/main.cc"
cat >"$tmp/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(myimage CXX)
set(CMAKE_CXX_STANDARD 20)
find_package(mksdk 0.1 REQUIRED)
add_executable(myimage main.cc)
target_link_libraries(myimage PRIVATE mksdk::mksdk)
CM
cmake -S "$tmp/proj" -B "$tmp/proj/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$tmp/proj/b" >/dev/null
pcdir=$(dirname "$(find "$tmp/prefix" -name mksdk.pc | head -n1)")
# shellcheck disable=SC2046
c++ -O2 $flags "$tmp/proj/main.cc" $(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs mksdk) -o "$tmp/pc-image"
for img in "$tmp/proj/b/myimage" "$tmp/pc-image"; do
  rc=0
  "$img" 3<&- 2>"$tmp/err" || rc=$?
  if [ "$rc" != 3 ]; then
    echo "$img: exit $rc, expected 3 (no boot tree)"; cat "$tmp/err"; exit 1
  fi
  grep -q "boot tree fd not open" "$tmp/err"
done
echo "ok: find_package and pkg-config images built and ran"
