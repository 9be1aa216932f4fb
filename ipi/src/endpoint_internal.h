// Private to the endpoint: the per-peer and per-request records shared by
// endpoint.cc (peers, handlers, dispatch, liveness) and endpoint_requests.cc
// (the pending-request table: ids, completion, timeouts, failure on peer
// death).
#pragma once

#include <sys/types.h>

#include <chrono>

#include "ipi/endpoint.h"

namespace mk::ipi {

struct Endpoint::Peer {
  Peer(PeerId i, Channel&& c) : id(i), ch(std::move(c)) {}
  PeerId id = 0;
  Channel ch;
  UniqueFd pidfd;
  pid_t pid = 0;
  bool down = false;
  // A reply to it timed out on a full ring: replies are no longer waited
  // for until it has read that ring down to half (Endpoint::send_reply).
  bool reply_stalled = false;
};

struct Endpoint::Pending {
  bool used = false;
  std::uint32_t id = 0;
  PeerId peer = 0;
  std::uint16_t type = 0;
  Channel::Clock::time_point deadline{};
  ResponseFn done;
};

// Saturating "now + t" on the channel clock.
inline Channel::Clock::time_point deadline_after(std::chrono::nanoseconds t) {
  const auto now = Channel::Clock::now();
  if (t >= Channel::Clock::time_point::max() - now) return Channel::Clock::time_point::max();
  return now + t;
}

}  // namespace mk::ipi
