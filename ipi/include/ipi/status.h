// DOC: mk::ipi::Status — the hot-path return code of the IPI library.
//
// What this is: a one-word [[nodiscard]] errno wrapper returned by the polled
// operations (try_send, try_receive, flush, RingProducer/RingConsumer). A
// polling receiver calls try_receive millions of times a second and mostly
// hears EAGAIN; mk::Error is allocation-free but ~360 bytes with its detail
// buffer, so building one per empty poll would dominate the loop. Everything
// that is not polled (create, attach, blocking send/receive, request,
// endpoint setup) returns mk::Result with a full Error; to_error() converts at
// that boundary.
//
// Place in the IPI flow: ring.h and channel.h return it; endpoint.h and the
// blocking channel calls translate it.
//
// Happy path:
//   1. Status s = ch.try_receive(msg);  2. if (s.ok()) handle(msg);
// Unhappy paths:
//   1. s.code() == EAGAIN: nothing ready (receive) / no room (send); retry.
//   2. s.code() == EBADMSG: the peer wrote something invalid; it was counted
//      in the ring stats and skipped; call again.
//   3. Any other errno: see the Returns: list of the call.
#pragma once

#include <cerrno>

namespace mk::ipi {

class [[nodiscard]] Status {
 public:
  constexpr Status() = default;
  constexpr explicit Status(int code) : code_(code) {}

  constexpr bool ok() const { return code_ == 0; }
  constexpr explicit operator bool() const { return code_ == 0; }
  constexpr int code() const { return code_; }
  constexpr bool again() const { return code_ == EAGAIN; }

 private:
  int code_ = 0;
};

inline constexpr Status kOk{};

}  // namespace mk::ipi
