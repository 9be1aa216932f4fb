// DOC: the host's side of a live update's handoff package (mk/abi/handoff.h):
// reading and checking what an outgoing image wrote at its freeze, and
// sending it with the preserved fds on a successor's handover socket.
//
// Place in the update flow (live_update.h): step 4, transfer. The host
// copies the package memfd out of the old image (pidfd_getfd), reads and
// checks it here (the old image is not trusted: nothing is forwarded
// unless it parses), copies every fd it lists, and send_handoff()s the
// package and the fds to the parked successor before kMsgHandover.
// corrupted_package_copy() is the `--fault corrupt-package` injection.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "mk/abi/handoff.h"
#include "mk/result.h"
#include "mkernel/owned_fd.h"

namespace mk {

// The handoff package as the host read it from the old image's memfd
// (mk/abi/handoff.h), checked: the old image is not trusted.
struct HandoffPackage {
  abi::HandoffHeader header{};
  std::vector<int32_t> source_fds;  // fd numbers in the old image, transfer order
  std::vector<uint8_t> bytes;       // the whole package
  std::span<const uint8_t> blob() const;
};

// Limits the host puts on a package below the ABI caps (mkerneld's
// --max-handoff-fds and --max-handoff-blob). Process-wide, set once at
// start (before any update runs); `raise_fds`/`raise_blob` name how to raise
// each (a static string, nullptr: the ABI cap, which cannot be raised).
struct HandoffLimits {
  uint32_t max_fds = abi::kMaxHandoffFds;
  uint64_t max_blob_bytes = abi::kMaxHandoffBlobBytes;
  const char* raise_fds = nullptr;
  const char* raise_blob = nullptr;
};
// Returns: EINVAL when a limit is above its ABI cap (or the blob limit 0).
Result<void> set_handoff_limits(const HandoffLimits& l);
HandoffLimits handoff_limits();

// Checks a package: size at least a header, magic, version, reserved 0,
// fd_count <= kMaxHandoffFds, blob 1..kMaxHandoffBlobBytes, the exact size
// handoff_size(), every source fd in 0..65535, and the update id.
// Returns: EBADMSG (short, wrong size, magic, reserved, blob size 0, fd
// number out of range, another update's id), EPROTONOSUPPORT (version),
// E2BIG (too many fds, blob above the cap or above handoff_limits(): the
// message names the limit and how to raise it).
Result<HandoffPackage> parse_handoff_package(std::span<const uint8_t> bytes, uint32_t update_id);
// Reads the package memfd (at most the largest valid size) and parses it.
// Returns: parse_handoff_package's codes, E2BIG for a larger file, errno of
// fstat/pread.
Result<HandoffPackage> read_handoff_package(int memfd, uint32_t update_id);
// A new sealed memfd with the package's bytes and the blob's first 8 bytes
// flipped (FDT magic and size: a successor must refuse it). The source is
// never modified. Returns: errno of memfd_create/write/fcntl.
Result<OwnedFd> corrupted_package_copy(const HandoffPackage& pkg);
// The socket protocol of mk/abi/handoff.h: message 0 {0, 1} + the package
// memfd, then `fds` in chunks of kHandoffFdsPerMessage, each with its
// HandoffChunk. Returns: EINVAL (more than kMaxHandoffFds), sendmsg's errno
// (EPIPE: the successor closed its end, EAGAIN never: blocking socket).
Result<void> send_handoff(int sock, int package_fd, std::span<const int> fds);

}  // namespace mk
