// One live-update step and the host's placement in the blackout (update_step.h).
#include "update_step.h"

#include <algorithm>
#include <cstring>
#include <optional>

namespace mk::update_step {

// Inside the blackout the host spins for a reply (kPoll) for up to this
// long instead of sleeping: a sleeping host costs a wake-up per reply
// (60-120 us on a paravirtualized guest) and the image a doorbell write.
// Only ever on a CPU the instance does not own (HostOffInstance); past the
// budget it sleeps again.
constexpr auto kBlackoutSpin = std::chrono::milliseconds(20);

// One update step as a request; a negative status is the image's refusal,
// returned as an error with its own errno and detail. `tick` runs between
// dispatches while the reply is awaited; `spin`: see kBlackoutSpin.
Result<abi::UpdateReply> step(RunningInstance& ri, uint16_t type, const char* name, const void* payload,
                              std::size_t size, std::chrono::milliseconds timeout,
                              const std::function<void()>& tick, bool spin,
                              const std::function<void()>& after_send) {
  struct State {
    bool done = false;
    std::size_t len = 0;
    abi::UpdateReply r{};
    std::optional<Error> err;
  } st;
  auto id = ri.endpoint().request_async(
      ri.instance().id, type, std::span<const std::byte>(static_cast<const std::byte*>(payload), size), timeout,
      [s = &st](Result<std::span<const std::byte>> r) {
        s->done = true;
        if (!r) {
          s->err = r.error();
        } else {
          s->len = r->size();
          std::memcpy(&s->r, r->data(), std::min(r->size(), sizeof s->r));
        }
      });
  if (!id) st.err = id.error();
  if (id && after_send) after_send();
  ipi::Endpoint& ep = ri.endpoint();
  const ipi::WaitMode mode = ep.wait_mode();
  const auto spin_end = std::chrono::steady_clock::now() + kBlackoutSpin;
  bool spinning = spin && mode != ipi::WaitMode::kPoll;
  if (spinning) ep.set_wait_mode(ipi::WaitMode::kPoll);
  while (id && !st.done) {
    if (spinning && std::chrono::steady_clock::now() >= spin_end) {
      ep.set_wait_mode(mode);
      spinning = false;
    }
    (void)ep.dispatch(spinning ? std::chrono::milliseconds(1) : std::chrono::milliseconds(10));
    if (tick) tick();
  }
  ep.set_wait_mode(mode);
  if (st.err) {
    return Error(st.err->code(), "update step failed")
        .set_detail("%s to the image (pid %d): %s", name, ri.pid(), st.err->message());
  }
  abi::UpdateReply& r = st.r;
  if (st.len != sizeof r)
    return MK_FAIL(EPROTO, "bad update reply", "%s: reply of %zu bytes, expected %zu", name, st.len, sizeof r);
  if (r.status < 0) {
    r.detail[sizeof r.detail - 1] = '\0';
    return Error(-r.status, "the image refused the update step")
        .set_detail("%s (pid %d): %s: %s", name, ri.pid(), std::strerror(-r.status),
                    r.detail[0] ? r.detail : "no detail");
  }
  return r;
}

Result<abi::UpdateReply> old_step(RunningInstance& ri, uint16_t type, const char* name, uint32_t id,
                                  std::chrono::milliseconds timeout, const std::function<void()>& tick,
                                  uint32_t flags, bool spin) {
  abi::UpdateStepMsg m{id, flags};
  return step(ri, type, name, &m, sizeof m, timeout, tick, spin);
}

}  // namespace mk::update_step
