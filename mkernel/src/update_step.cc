// One live-update step and the host's placement in the blackout (update_step.h).
#include "update_step.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "update_access.h"

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

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

bool pidfd_gone(int pidfd, int timeout_ms) {
  pollfd p{pidfd, POLLIN, 0};
  int r;
  while ((r = ::poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
  }
  return r > 0;
}

Result<OwnedFd> getfd(int pidfd, int target, const char* what) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, target, 0));
  if (fd < 0) {
    int e = errno;
    return Error(e, "cannot copy an fd out of an image")
        .set_detail("%s (fd %d): pidfd_getfd: %s", what, target, std::strerror(e));
  }
  return OwnedFd(fd);
}

bool is_namespace_init(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("NSpid:", 0) != 0) continue;
    std::istringstream in(line.substr(6));
    std::vector<long> ids;
    for (long v; in >> v;) ids.push_back(v);
    return ids.size() > 1 && ids.back() == 1;
  }
  return false;
}

bool runs_reaper(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::size_t i = 0;
  while (i < all.size()) {
    std::size_t e = all.find('\0', i);
    if (e == std::string::npos) e = all.size();
    // "--reaper" or "--reaper=FD" (kernel/image/reaper.h).
    if (all.compare(i, 8, "--reaper") == 0 && (e - i == 8 || all[i + 8] == '=')) return true;
    i = e + 1;
  }
  return false;
}

}  // namespace mk::update_step
