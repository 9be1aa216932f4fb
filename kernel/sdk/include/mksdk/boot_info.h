// DOC: mk::sdk boot info — read and validate the boot tree an image gets on fd 3.
//
// What this is: the first step of every image (DESIGN.md §3, step 3). The
// host hands the image a sealed memfd holding the boot tree (FDT, schema in
// docs/boot-tree.md) as fd 3, and every other resource as the fd numbers the
// tree lists (fd layout: mkernel/manifest.h; channel fds: docs/sdk.md). This
// file reads that memfd with a size cap, parses it with mk::parse_boot_tree,
// and checks that every descriptor the tree names is really open, so a
// broken launch fails here with one clear message instead of later with
// EBADF deep inside a component. It also marks those descriptors
// close-on-exec so tenants never inherit the instance's resources.
//
// Place in the boot flow: load_boot_info() -> PerCpu::start -> Regions::map
// -> Devices -> Tenants::start -> HostLink::open -> send_ready.
//
// Happy path:
//   1. read_boot_tree(3): fstat, size check, pread the blob, parse.
//   2. check_boot_fds(tree): fcntl(F_GETFD) on every listed fd (memory
//      regions, devices with an fd, each IPI channel's memfd and its two
//      doorbell eventfds at memfd+1 and memfd+2, the handover blob) and sets
//      FD_CLOEXEC on them and on fd 3.
//   3. load_boot_info() does both and the image proceeds.
// Unhappy paths:
//   1. fd 3 is not open or not a regular file: EBADF; exit with
//      exit_code::kBadBootTree.
//   2. The blob is empty or larger than abi::kMaxTreeBytes: E2BIG / EBADMSG.
//   3. The blob is not a valid tree: parse_boot_tree's EBADMSG,
//      EPROTONOSUPPORT or EINVAL; exit with exit_code::kBadBootTree.
//   4. A listed fd is not open: EBADF naming the node and fd; exit with
//      exit_code::kMissingResource.
//
// Returns:
//   read_boot_tree:  EBADF, E2BIG, EBADMSG, EIO (short read), pread errno,
//                    and parse_boot_tree's codes.
//   check_boot_fds:  EBADF.
//   load_boot_info:  both.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "mk/boot_tree.h"
#include "mk/result.h"

namespace mk::sdk {

inline constexpr int kBootTreeFd = 3;

// Process exit codes of mk-kernel and of images that follow the SDK's
// conventions (documented in docs/sdk.md; the host maps them to a failure
// reason).
namespace exit_code {
inline constexpr int kOk = 0;               // shut down on the host's request
inline constexpr int kInternal = 1;         // unexpected internal error
inline constexpr int kUsage = 2;            // bad command line (bootargs)
inline constexpr int kBadBootTree = 3;      // fd 3 missing, unreadable or invalid
inline constexpr int kMissingResource = 4;  // a listed fd is not open; region/CPU setup failed
inline constexpr int kHostLink = 5;         // host channel could not be attached / READY not sent
inline constexpr int kHostDown = 6;         // the host closed the channel or died
inline constexpr int kTenantStart = 7;      // the init tenant could not be started
}  // namespace exit_code

// Reads the tree from `fd` (normally kBootTreeFd).
Result<BootTree> read_boot_tree(int fd = kBootTreeFd);

// The descriptors an IPI channel occupies: its memfd, then the eventfd of
// direction 0 (host/creator -> image) and of direction 1.
std::vector<int> channel_fds(const IpiChannel& ch);

// Checks every fd the tree lists is open and marks it close-on-exec.
Result<void> check_boot_fds(const BootTree& tree, int tree_fd = kBootTreeFd);

// read_boot_tree + check_boot_fds.
Result<BootTree> load_boot_info(int fd = kBootTreeFd);

// CLOCK_MONOTONIC now, in ns (the clock of ReadyMsg::boot_ns).
std::uint64_t monotonic_ns();

}  // namespace mk::sdk
