// Channel: rings + doorbells + wait policy for one side of a link.
#include "ipi/channel.h"

#include <fcntl.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <thread>

#include "shm_atomic.h"

namespace mk::ipi {

using namespace std::chrono_literals;
using Clock = Channel::Clock;

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

Clock::time_point deadline_after(std::chrono::nanoseconds t) {
  const auto now = Clock::now();
  if (t >= Clock::time_point::max() - now) return Clock::time_point::max();
  return now + t;
}

std::chrono::nanoseconds remaining(Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) return std::chrono::nanoseconds(-1);
  const auto d = deadline - Clock::now();
  return d.count() > 0 ? std::chrono::duration_cast<std::chrono::nanoseconds>(d) : 0ns;
}

Result<UniqueFd> dup_fd(int fd) {
  UniqueFd d(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!d.valid()) return errno_error("dup of ipi channel fd");
  return d;
}

}  // namespace

Result<void> validate(const ChannelOptions& o) {
  if (o.batch == 0 || o.batch > kMaxBatch) {
    return MK_FAIL(EINVAL, "bad ipi batch size", "batch %u must be in [1, %u]", o.batch, kMaxBatch);
  }
  if (o.poll_budget.count() < 0) return fail(EINVAL, "negative ipi poll budget");
  return ok();
}

Result<Channel> Channel::make(std::shared_ptr<Region> region, std::uint32_t side,
                              const ChannelOptions& opts) {
  MK_TRY(validate(opts));
  Channel c;
  c.region_ = std::move(region);
  c.side_ = side;
  c.opts_ = opts;
  c.scratch_ = std::make_unique<std::byte[]>(abi::kMaxSpanPayload);
  const std::uint32_t out = side, in = side ^ 1u;
  c.tx_ = RingProducer(c.region_->ring(out));
  c.rx_ = RingConsumer(c.region_->ring(in), std::span<std::byte>(c.scratch_.get(), abi::kMaxSpanPayload));
  c.bell_tx_ = Doorbell(c.region_->doorbell(out), c.region_->eventfd(out));
  c.bell_rx_ = Doorbell(c.region_->doorbell(in), c.region_->eventfd(in));
  return c;
}

Result<Channel> Channel::create(const ChannelConfig& cfg, const ChannelOptions& opts) {
  MK_TRY(validate(opts));
  MK_TRY_ASSIGN(auto region, Region::create(cfg));
  return make(std::move(region), abi::kDirAtoB, opts);
}

Result<Channel> Channel::attach(ChannelFds fds, const ChannelOptions& opts) {
  MK_TRY(validate(opts));
  MK_TRY_ASSIGN(auto region, Region::attach(std::move(fds.memfd), std::move(fds.eventfd[0]),
                                            std::move(fds.eventfd[1])));
  return make(std::move(region), abi::kDirBtoA, opts);
}

Result<Channel> Channel::take_over(ChannelFds fds, std::uint32_t side, const ChannelOptions& opts) {
  MK_TRY(validate(opts));
  if (side > 1) {
    return MK_FAIL(EINVAL, "bad ipi channel side", "side %u must be 0 (A) or 1 (B)", side);
  }
  MK_TRY_ASSIGN(auto region, Region::open(std::move(fds.memfd), std::move(fds.eventfd[0]),
                                          std::move(fds.eventfd[1])));
  auto* hdr = region->header();
  const char* name = side == 0 ? "A" : "B";
  const std::uint32_t state =
      detail::shm_load<std::uint32_t>(&hdr->side_state[side], std::memory_order_acquire);
  if (state == abi::kSideClosed) {
    return MK_FAIL(EPIPE, "ipi channel side closed", "side %s was closed by its owner; it cannot be taken over",
                   name);
  }
  if (state != abi::kSideAttached && state != abi::kSideUnattached) {
    return MK_FAIL(EBADMSG, "corrupt ipi side state", "side %s state word is %u", name, state);
  }
  MK_TRY_ASSIGN(Channel c, make(std::move(region), side, opts));
  // Read-only recovery first: a refused take-over leaves the region untouched.
  if (Status s = c.tx_.resume(); !s) {
    c.closed_ = true;  // never mark the side closed on the way out
    return MK_FAIL(EBADMSG, "ipi ring indices inconsistent",
                   "side %s's outgoing ring: the peer's consumer tail is impossible", name);
  }
  if (Status s = c.rx_.resume(); !s) {
    c.closed_ = true;
    return MK_FAIL(EBADMSG, "ipi ring indices inconsistent",
                   "side %s's incoming ring: our consumer tail is impossible", name);
  }
  if (state == abi::kSideUnattached &&
      !detail::shm_cas<std::uint32_t>(&hdr->side_state[side], abi::kSideUnattached, abi::kSideAttached,
                                      std::memory_order_acq_rel)) {
    c.closed_ = true;
    return MK_FAIL(EBUSY, "ipi channel already attached", "side %s was claimed concurrently", name);
  }
  detail::shm_store<std::int32_t>(&hdr->pid[side], static_cast<std::int32_t>(::getpid()),
                                  std::memory_order_relaxed);
  c.tx_.discard_unpublished();
  // The previous owner may have died asleep: its doorbell word would make the
  // peer pay a wake-up syscall on every publish until we next slept.
  c.bell_rx_.cancel_sleep();
  return c;
}

Result<std::pair<Channel, Channel>> Channel::create_pair(const ChannelConfig& cfg,
                                                         const ChannelOptions& opts_a,
                                                         const ChannelOptions& opts_b) {
  MK_TRY(validate(opts_b));
  MK_TRY_ASSIGN(Channel a, create(cfg, opts_a));
  auto* hdr = a.region_->header();
  detail::shm_store<std::uint32_t>(&hdr->side_state[1], abi::kSideAttached, std::memory_order_relaxed);
  detail::shm_store<std::int32_t>(&hdr->pid[1], static_cast<std::int32_t>(::getpid()),
                                  std::memory_order_relaxed);
  MK_TRY_ASSIGN(Channel b, make(a.region_, abi::kDirBtoA, opts_b));
  return std::pair<Channel, Channel>(std::move(a), std::move(b));
}

Channel& Channel::operator=(Channel&& o) noexcept {
  if (this != &o) {
    close();
    region_ = std::move(o.region_);
    side_ = o.side_;
    opts_ = o.opts_;
    scratch_ = std::move(o.scratch_);
    tx_ = o.tx_;
    rx_ = o.rx_;
    bell_tx_ = o.bell_tx_;
    bell_rx_ = o.bell_rx_;
    stats_ = o.stats_;
    closed_ = o.closed_;
  }
  return *this;
}

Channel::~Channel() { close(); }

Result<ChannelFds> Channel::export_fds() const {
  const RegionFds f = region_->fds();
  ChannelFds out;
  MK_TRY_ASSIGN(out.memfd, dup_fd(f.memfd));
  MK_TRY_ASSIGN(out.eventfd[0], dup_fd(f.eventfd[0]));
  MK_TRY_ASSIGN(out.eventfd[1], dup_fd(f.eventfd[1]));
  return out;
}

void Channel::detach() {
  if (!region_) return;
  if (!closed_) {
    flush();
    rx_.release();  // a later owner resumes at bulk_tail
  }
  region_.reset();
  tx_ = RingProducer();
  rx_ = RingConsumer();
  bell_tx_ = Doorbell();
  bell_rx_ = Doorbell();
  closed_ = true;
}

bool Channel::peer_closed() const {
  // The header line is read-mostly: an L1 hit in the common case.
  // seq_cst: checked after announce_sleep() like the ring seq (doorbell.h).
  return detail::shm_load<std::uint32_t>(&region_->header()->side_state[side_ ^ 1u],
                                         std::memory_order_seq_cst) == abi::kSideClosed;
}

pid_t Channel::peer_pid() const {
  return detail::shm_load<std::int32_t>(&region_->header()->pid[side_ ^ 1u], std::memory_order_relaxed);
}

void Channel::close() {
  if (!region_ || closed_) return;
  flush();
  closed_ = true;
  // seq_cst store then ring()'s seq_cst load: the doorbell's store-then-load,
  // so a peer going to sleep either sees "closed" or gets woken.
  detail::shm_store<std::uint32_t>(&region_->header()->side_state[side_], abi::kSideClosed,
                                   std::memory_order_seq_cst);
  bell_tx_.ring();
}

Status Channel::try_send(std::uint16_t type, std::span<const std::byte> payload, MessageKind kind,
                         std::uint32_t corr) {
  if (closed_ || peer_closed()) return Status(EPIPE);
  Status s = tx_.write(type, kind, corr, payload);
  if (!s) {
    if (s.again()) {
      ++stats_.send_full;
      // Our own unpublished batch may be what fills the ring: let it drain.
      if (tx_.unpublished()) flush();
    }
    return s;
  }
  ++stats_.sent;
  if (tx_.unpublished() >= opts_.batch) flush();
  return s;
}

void Channel::flush() {
  if (!tx_.publish()) return;
  ++stats_.publishes;
  if (bell_tx_.ring()) ++stats_.doorbell_syscalls;
}

Result<void> Channel::send(std::uint16_t type, std::span<const std::byte> payload,
                           std::chrono::nanoseconds timeout, MessageKind kind, std::uint32_t corr) {
  // Fast path first: reading the clock costs ~40 ns on a kvm-clock VM, more
  // than the rest of a send, so the deadline is computed only when needed.
  Status s = try_send(type, payload, kind, corr);
  if (s) return ok();
  Clock::time_point deadline{};
  if (s.again()) deadline = deadline_after(timeout);
  // Back-off for a full ring: spin briefly (the consumer is usually draining),
  // then sleep with doubling intervals capped at 1 ms.
  std::chrono::microseconds nap = 10us;
  for (std::uint32_t spins = 0;; ++spins) {
    if (spins > 0) s = try_send(type, payload, kind, corr);
    if (s) return ok();
    if (!s.again()) {
      switch (s.code()) {
        case EPIPE: return fail(EPIPE, "ipi peer closed the channel");
        case EMSGSIZE:
          return MK_FAIL(EMSGSIZE, "ipi message too large", "%zu bytes; this channel carries at most %llu",
                         payload.size(), static_cast<unsigned long long>(tx_.max_payload()));
        case EPROTO: return fail(EPROTO, "ipi ring indices corrupted by the peer");
        default: return MK_FAIL(s.code(), "ipi send failed", "type 0x%04x", type);
      }
    }
    if (Clock::now() >= deadline) {
      flush();
      return MK_FAIL(ETIMEDOUT, "ipi send timed out", "ring to the peer stayed full (type 0x%04x, %zu bytes)",
                     type, payload.size());
    }
    if (spins < 256) {
      cpu_relax();
    } else {
      std::this_thread::sleep_for(nap);
      nap = std::min<std::chrono::microseconds>(nap * 2, 1000us);
    }
  }
}

Result<void> Channel::receive(InMessage& msg, std::chrono::nanoseconds timeout) {
  // Fast path: a message is usually there (or about to be) when polling;
  // the first kQuickPolls attempts read no clock (see send()).
  constexpr int kQuickPolls = 64;
  if (try_receive(msg)) return ok();
  if (opts_.mode != WaitMode::kBlock) {
    for (int i = 0; i < kQuickPolls; ++i) {
      cpu_relax();
      if (try_receive(msg)) return ok();
    }
  }
  const auto deadline = deadline_after(timeout);
  auto spin_until = deadline;
  if (opts_.mode == WaitMode::kAdaptive) spin_until = std::min(deadline, deadline_after(opts_.poll_budget));
  if (opts_.mode == WaitMode::kBlock) spin_until = Clock::time_point::min();

  // Poll phase: no syscall; the clock is read every 64 empty polls (vDSO).
  for (std::uint32_t i = 0;; ++i) {
    Status s = try_receive(msg);
    if (s) return ok();
    // EBADMSG (counted in rx_stats()) falls through: a scribbling peer must
    // not keep us past the deadline.
    if ((i & 63) == 0) {
      if (peer_closed() && !rx_.has_pending()) return fail(EPIPE, "ipi peer closed the channel");
      const auto now = Clock::now();
      if (now >= deadline) return fail(ETIMEDOUT, "ipi receive timed out");
      if (now >= spin_until) break;
    }
    cpu_relax();
  }
  // Sleep phase (adaptive after its budget, block at once).
  for (;;) {
    Status s = try_receive(msg);
    if (s) return ok();
    const auto left = remaining(deadline);
    if (left.count() == 0) return fail(ETIMEDOUT, "ipi receive timed out");
    if (s.code() == EBADMSG) continue;
    if (peer_closed() && !rx_.has_pending()) return fail(EPIPE, "ipi peer closed the channel");
    bell_rx_.announce_sleep(abi::kSleepingFutex);
    if (rx_.has_pending() || peer_closed()) {
      bell_rx_.cancel_sleep();
      continue;
    }
    ++stats_.sleeps;
    // Woken (0): the ringer already CASed the word to AWAKE, so leave the
    // line alone (rewriting it would pull it back from the sender's cache).
    // A spurious 0 only costs the peer one needless FUTEX_WAKE later.
    if (bell_rx_.wait(left) != 0) bell_rx_.cancel_sleep();
  }
}

bool Channel::arm_eventfd() {
  bell_rx_.announce_sleep(abi::kSleepingEventfd);
  if (rx_.has_pending() || peer_closed()) {
    bell_rx_.cancel_sleep();
    return false;
  }
  return true;
}

void Channel::disarm_eventfd() {
  bell_rx_.cancel_sleep();
  bell_rx_.drain_eventfd();
}

}  // namespace mk::ipi
