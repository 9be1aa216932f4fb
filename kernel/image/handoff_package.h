// The handoff package of a live update (mk/abi/handoff.h), both ends.
//
// Role in the handover flow: at kMsgUpdateFreeze the old image writes the
// package (header, the session's fd numbers in transfer order, the KHO blob)
// into a sealed memfd and replies with its number; the host forwards it on
// the successor's handover socket followed by the fds; at kMsgHandover the
// successor receives them (receive_handoff) and validates the package
// (read_handoff_package) before anything else looks at the blob.
//
// Everything received is untrusted: every chunk header, count, fd count,
// the header's magic/version/sizes and the memfd's exact size are checked;
// on any failure every fd received so far is closed.
//
// Returns:
//   write_handoff_package: EINVAL (more than kMaxHandoffFds fds, empty or
//                          oversized blob), memfd_create/write/ftruncate/
//                          fcntl errno.
//   make_package_memfd:    memfd_create/fallocate errno.
//   receive_handoff:       ETIMEDOUT (nothing arrived in time), EPROTO (a
//                          chunk out of order, wrong fd count, missing
//                          SCM_RIGHTS, MSG_CTRUNC: fds were dropped, short
//                          message), ECONNRESET (socket closed), recvmsg errno.
//   read_handoff_package:  EBADMSG (bad magic, version, reserved, sizes,
//                          memfd size != handoff_size, written for another
//                          update_id), EPROTO (fd_count != the fds
//                          announced), fstat/pread errno.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "handover/session.h"
#include "mk/abi/handoff.h"
#include "mk/result.h"

namespace mk::image {

// A fresh, empty package memfd (sealable) with `reserve` bytes of pages
// allocated: the old image makes one at prepare so that the freeze, inside
// the blackout, neither creates the memfd nor allocates its pages.
Result<handover::OwnedFd> make_package_memfd(std::size_t reserve);

// Writes and seals (F_SEAL_WRITE|SHRINK|GROW|SEAL) the package memfd:
// `into` (from make_package_memfd, nothing written yet) or a new one.
Result<handover::OwnedFd> write_handoff_package(std::uint32_t update_id, std::span<const int> source_fds,
                                                std::span<const std::uint8_t> blob, handover::OwnedFd into = {});

struct ReceivedHandoff {
  handover::OwnedFd package;
  std::vector<handover::OwnedFd> fds;  // index order
};
// Reads message 0 (the package memfd) and the chunks carrying `fd_count`
// fds from the handover socket, waiting up to `timeout` for each message.
Result<ReceivedHandoff> receive_handoff(int sock, std::uint32_t fd_count, std::chrono::milliseconds timeout);

struct HandoffContents {
  abi::HandoffHeader header{};
  std::vector<std::int32_t> source_fds;
  std::vector<std::uint8_t> blob;
};
// `update_id`: kMsgHandover's (the package must be the freeze of that update).
Result<HandoffContents> read_handoff_package(int memfd, std::uint32_t expected_fds, std::uint32_t update_id);

}  // namespace mk::image
