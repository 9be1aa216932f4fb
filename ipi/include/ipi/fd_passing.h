// DOC: SCM_RIGHTS helpers — hand a channel to a process that did not fork
// from its creator.
//
// What this is: send_fds/recv_fds move up to kMaxFds descriptors plus a small
// data frame over a connected AF_UNIX socket; send_channel/recv_channel use
// them to ship a channel's memfd and its two doorbell eventfds (side B then
// calls Channel::attach on what arrives). Frames carry a magic so a stray
// writer on the socket cannot be mistaken for a channel hand-off.
//
// Place in the IPI flow: mkerneld creates every channel (side A or both
// sides) and passes side B to the instance over its control socket; tests use
// a socketpair.
//
// Happy path:
//   1. sender: send_channel(sock, channel)       (dups nothing: sendmsg copies fds)
//   2. receiver: auto fds = recv_channel(sock);  Channel::attach(std::move(*fds))
// Unhappy paths:
//   1. EBADF: bad socket or descriptor.  EPIPE/ECONNRESET: peer gone.
//   2. recv_*: EBADMSG when the frame is short, has the wrong magic, or
//      carries a different number of descriptors than announced (every
//      received descriptor is closed); EMSGSIZE when the control data was
//      truncated (MSG_CTRUNC); ECONNRESET on end of stream.
#pragma once

#include <cstddef>
#include <span>

#include "ipi/channel.h"
#include "ipi/unique_fd.h"
#include "mk/result.h"

namespace mk::ipi {

// SCM_MAX_FD: the most descriptors Linux passes in one message (a live
// update's handoff sends them 250 at a time, mk/abi/handoff.h).
inline constexpr std::size_t kMaxFds = 253;

// Sends `data` (may be empty, <= 4 KiB) with `fds` attached, in one sendmsg.
Result<void> send_fds(int sock, std::span<const int> fds, std::span<const std::byte> data = {});

// Receives one frame: up to out_fds.size() descriptors and up to data.size()
// bytes. Returns {descriptor count, data bytes}.
struct RecvFdsResult {
  std::size_t nfds = 0;
  std::size_t nbytes = 0;
};
Result<RecvFdsResult> recv_fds(int sock, std::span<UniqueFd> out_fds, std::span<std::byte> data);

Result<void> send_channel(int sock, const Channel& ch);
Result<ChannelFds> recv_channel(int sock);

}  // namespace mk::ipi
