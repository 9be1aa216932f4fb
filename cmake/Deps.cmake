# One place that finds every external dependency (Debian packages only;
# scripts/install-deps.sh installs them).
find_package(PkgConfig REQUIRED)
pkg_check_modules(HWLOC REQUIRED IMPORTED_TARGET hwloc>=2.4)
pkg_check_modules(NUMA REQUIRED IMPORTED_TARGET numa)

find_path(FDT_INCLUDE_DIR libfdt.h REQUIRED)
find_library(FDT_LIBRARY NAMES fdt REQUIRED)
add_library(mk_libfdt INTERFACE)
target_include_directories(mk_libfdt INTERFACE ${FDT_INCLUDE_DIR})
target_link_libraries(mk_libfdt INTERFACE ${FDT_LIBRARY})

# Boost 1.81 (Debian's default 1.74 has no Boost.JSON). Tools only.
find_package(Boost 1.81.0 CONFIG REQUIRED COMPONENTS json program_options)

# OpenSSL libcrypto: SHA-256 of kernel images (mkernel/src/image.cc).
find_package(OpenSSL REQUIRED COMPONENTS Crypto)

find_package(Threads REQUIRED)

if(MK_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(MK_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
