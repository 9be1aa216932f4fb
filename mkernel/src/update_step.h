// One step of a live update as the host sends it (live_update.cc): an IPI
// request to an image answered by an abi::UpdateReply, and the host thread's
// placement while it waits inside the blackout.
//
// Role in the handover flow: every step of mk::live_update (prepare,
// pre-copy, freeze, handover, cancel, finish) goes through step(); the
// freeze and the handover, inside the blackout, spin for their reply on a
// CPU the instance does not own (HostOffInstance) instead of sleeping.
//
// Returns (step/old_step): the request's errors (ETIMEDOUT, ECONNRESET...)
// with the step named; EPROTO (a reply of the wrong size); the image's own
// refusal (-status) with its detail.
#pragma once

#include <sched.h>

#include <chrono>
#include <cstdint>
#include <functional>

#include "mk/abi/control_messages.h"
#include "mk/cpu_set.h"
#include "mk/result.h"
#include "mkernel/boot.h"

namespace mk::update_step {

// `tick` runs between dispatches while the reply is awaited; `spin`: wait
// polling (20 ms at most, then sleeping again); `after_send` runs
// once the request went out (the handover sends its fds then).
Result<abi::UpdateReply> step(RunningInstance& ri, uint16_t type, const char* name, const void* payload,
                              std::size_t size, std::chrono::milliseconds timeout,
                              const std::function<void()>& tick = {}, bool spin = false,
                              const std::function<void()>& after_send = {});

// A step to the old image: UpdateStepMsg{id, flags}.
Result<abi::UpdateReply> old_step(RunningInstance& ri, uint16_t type, const char* name, uint32_t id,
                                  std::chrono::milliseconds timeout, const std::function<void()>& tick = {},
                                  uint32_t flags = 0, bool spin = false);

// For the blackout: the calling (host) thread leaves the instance's CPUs,
// so that spinning for replies never takes a CPU from the images; put
// back as it was on destruction. `active` is false (no spinning: the
// thread sleeps for its replies as at any other time) when the thread may
// run nowhere else or its affinity cannot be read or set. (A spinner at
// normal priority on a busy host CPU can lose a time slice to the tasks
// there; under redis-benchmark on the host CPU the blackouts measured the
// same with SCHED_FIFO as without, so it stays at its priority.)
class HostOffInstance {
 public:
  explicit HostOffInstance(const CpuSet& instance) {
    if (::sched_getaffinity(0, sizeof was_, &was_) != 0) return;
    cpu_set_t away = was_;
    for (uint32_t c : instance.to_vector()) {
      if (c < CPU_SETSIZE) CPU_CLR(c, &away);
    }
    if (CPU_COUNT(&away) == 0) return;
    active_ = ::sched_setaffinity(0, sizeof away, &away) == 0;
  }
  ~HostOffInstance() {
    if (active_) (void)::sched_setaffinity(0, sizeof was_, &was_);
  }
  HostOffInstance(const HostOffInstance&) = delete;
  HostOffInstance& operator=(const HostOffInstance&) = delete;
  bool active() const { return active_; }

 private:
  cpu_set_t was_{};
  bool active_ = false;
};

}  // namespace mk::update_step
