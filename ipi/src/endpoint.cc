// Endpoint: peers, handler dispatch, wait policy and liveness (requests live in
// endpoint_requests.cc). See ipi/endpoint.h.
#include "ipi/endpoint.h"

#include <poll.h>
#include <sys/epoll.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>

#include "endpoint_internal.h"

namespace mk::ipi {

using namespace std::chrono_literals;
using Clock = Channel::Clock;

namespace {

constexpr std::size_t kMaxPeers = 127;  // futex_waitv's limit (128), less the wake() word

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace

// ------------------------------------------------------------------ setup --

Endpoint::Endpoint(const EndpointOptions& opts) : opts_(opts) {}

Endpoint::~Endpoint() = default;

Result<std::unique_ptr<Endpoint>> Endpoint::create(const EndpointOptions& opts) {
  if (opts.max_pending == 0 || opts.max_pending > 65536) {
    return MK_FAIL(EINVAL, "bad ipi endpoint options", "max_pending %u must be in [1, 65536]",
                   opts.max_pending);
  }
  if (opts.poll_budget.count() < 0 || opts.liveness_interval.count() <= 0 ||
      opts.reply_timeout.count() < 0) {
    return fail(EINVAL, "bad ipi endpoint timing options");
  }
  std::unique_ptr<Endpoint> ep(new Endpoint(opts));
  ep->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep->epoll_.valid()) return errno_error("epoll_create1 for ipi endpoint");
  ep->pending_.resize(opts.max_pending);
  ep->free_slots_.reserve(opts.max_pending);
  for (std::uint32_t i = opts.max_pending; i-- > 0;) ep->free_slots_.push_back(i);
  return ep;
}

Result<void> Endpoint::add_peer(PeerId id, Channel&& ch, pid_t peer_pid) {
  if (find(id)) return MK_FAIL(EEXIST, "ipi peer already added", "peer %u", id);
  if (peers_.size() >= kMaxPeers) {
    return MK_FAIL(EINVAL, "too many ipi peers", "an endpoint serves at most %zu peers", kMaxPeers);
  }
  UniqueFd pidfd;
  if (peer_pid > 0) {
    pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, peer_pid, 0)));
    if (!pidfd.valid()) {
      Error e = errno_error("pidfd_open for ipi peer");
      return e.set_detail("peer %u (pid %d): %s", id, peer_pid, std::strerror(e.code()));
    }
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, ch.event_fd(), &ev) != 0) {
    return errno_error("epoll_ctl add ipi doorbell eventfd");
  }
  if (pidfd.valid() && ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, pidfd.get(), &ev) != 0) {
    Error e = errno_error("epoll_ctl add ipi peer pidfd");
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, ch.event_fd(), nullptr);
    return e;
  }
  auto p = std::make_unique<Peer>(id, std::move(ch));
  p->pid = peer_pid;
  p->pidfd = std::move(pidfd);
  peers_.push_back(std::move(p));
  return ok();
}

Result<void> Endpoint::on(std::uint16_t type, Handler h) {
  if (!is_valid_type(type)) {
    return MK_FAIL(EINVAL, "bad ipi message type", "0x%04x is outside the system/resource/io/user ranges",
                   type);
  }
  if (!h) return fail(EINVAL, "empty ipi handler");
  if (!handlers_.emplace(type, std::move(h)).second) {
    return MK_FAIL(EEXIST, "ipi handler already registered", "type 0x%04x", type);
  }
  return ok();
}

Endpoint::Peer* Endpoint::find(PeerId id) {
  for (auto& p : peers_) {
    if (p->id == id) return p.get();
  }
  return nullptr;
}

const Endpoint::Peer* Endpoint::find(PeerId id) const {
  return const_cast<Endpoint*>(this)->find(id);
}

bool Endpoint::peer_up(PeerId peer) const {
  const Peer* p = find(peer);
  return p && !p->down;
}

Channel* Endpoint::channel(PeerId peer) {
  Peer* p = find(peer);
  return p ? &p->ch : nullptr;
}

// ------------------------------------------------------------------- send --

Status Endpoint::send(PeerId peer, std::uint16_t type, std::span<const std::byte> bytes) {
  Peer* p = find(peer);
  if (!p) return Status(ENOENT);
  if (p->down) return Status(ECONNRESET);
  return p->ch.try_send(type, bytes);
}

void Endpoint::flush() {
  for (auto& p : peers_) {
    if (!p->down) p->ch.flush();
  }
}

Result<unsigned> Endpoint::broadcast(std::uint16_t type, std::span<const std::byte> bytes) {
  unsigned reached = 0, tried = 0;
  Error first{};
  PeerId first_peer = 0;
  bool failed = false;
  for (auto& p : peers_) {
    if (p->down) continue;
    ++tried;
    auto r = p->ch.send(type, bytes, opts_.reply_timeout);
    if (r) {
      ++reached;
    } else if (!failed) {
      failed = true;
      first = r.error();
      first_peer = p->id;
    }
  }
  flush();
  if (failed) {
    Error e = first;
    return e.set_detail("broadcast of type 0x%04x reached %u of %u peers; peer %u: %s", type, reached,
                        tried, first_peer, first.message());
  }
  return reached;
}

Status Endpoint::send_reply(PeerId peer, std::uint32_t corr, MessageKind kind,
                            std::span<const std::byte> bytes) {
  Peer* p = find(peer);
  if (!p) return Status(ENOENT);
  if (p->down) return Status(ECONNRESET);
  if (p->reply_stalled && p->ch.tx_backlog() <= p->ch.region().slot_count() / 2) p->reply_stalled = false;
  Status s = p->ch.try_send(sys::kPing /* any valid type; responses match by id */, bytes, kind, corr);
  if (s.again()) {
    // A peer that keeps sending requests and never reads the replies: one
    // wait was enough, drop (a wait per reply would block this dispatch
    // for reply_timeout times the requests in its ring).
    if (p->reply_stalled) {
      ++stats_.replies_dropped;
      return s;
    }
    // Reverse ring full: the requester drains it while it waits, so a short
    // bounded wait resolves it; never block indefinitely inside a handler.
    auto r = p->ch.send(sys::kPing, bytes, opts_.reply_timeout, kind, corr);
    if (r) return kOk;
    if (r.error().code() == ETIMEDOUT) {
      p->reply_stalled = true;
      ++stats_.replies_dropped;
    }
    return Status(r.error().code());
  }
  return s;
}

Status Incoming::reply(std::span<const std::byte> bytes) {
  if (!is_request()) return Status(EINVAL);
  if (replied_) return Status(EALREADY);
  replied_ = true;
  return ep_->send_reply(peer_, msg_->corr, MessageKind::kResponse, bytes);
}

Status Incoming::reply_error(int code) {
  if (!is_request()) return Status(EINVAL);
  if (replied_) return Status(EALREADY);
  replied_ = true;
  const std::int32_t c = code;
  return ep_->send_reply(peer_, msg_->corr, MessageKind::kErrorResponse,
                         std::as_bytes(std::span<const std::int32_t, 1>(&c, 1)));
}

// --------------------------------------------------------------- dispatch --

void Endpoint::handle(Peer& p, const InMessage& m) {
  if (m.kind == MessageKind::kResponse || m.kind == MessageKind::kErrorResponse) {
    complete(p, m);
    return;
  }
  Incoming in(this, p.id, &m);
  auto it = handlers_.find(m.type);
  if (it == handlers_.end()) {
    if (!in.is_request()) {
      ++stats_.unhandled;
    } else if (m.type == sys::kPing) {
      (void)in.reply(m.payload);  // built-in echo for `mkctl ping`
    } else {
      (void)in.reply_error(ENOSYS);
    }
    return;
  }
  ++dispatch_depth_;
  it->second(in);
  --dispatch_depth_;
  ++stats_.dispatched;
  // A handler that forgets to answer would leave the requester waiting for
  // its timeout; answer for it with a clear error instead.
  if (in.is_request() && !in.replied_) (void)in.reply_error(ENOMSG);
}

std::size_t Endpoint::drain(Peer& p) {
  // At most one ring's worth per pass, so one chatty or scribbling peer
  // cannot starve the others.
  const std::uint32_t budget = p.ch.region().slot_count();
  std::size_t n = 0;
  InMessage m;
  for (std::uint32_t i = 0; i < budget && !p.down; ++i) {
    Status s = p.ch.try_receive(m);
    if (s) {
      handle(p, m);
      ++n;
    } else if (!s.again() && s.code() != EBADMSG) {
      break;
    } else if (s.again()) {
      break;
    }
  }
  return n;
}

std::size_t Endpoint::poll() {
  const std::size_t n = drain_all();
  expire_requests();
  return n;
}

std::size_t Endpoint::drain_all() {
  std::size_t n = 0;
  for (std::size_t i = 0; i < peers_.size(); ++i) {
    if (!peers_[i]->down) n += drain(*peers_[i]);
  }
  flush();
  return n;
}

void Endpoint::mark_down(Peer& p, const Error& why) {
  if (p.down) return;
  drain(p);  // what it published before dying is still valid
  p.down = true;
  ++stats_.peers_down;
  fail_pending(p.id, why);
  if (on_peer_down_) on_peer_down_(p.id, why);
}

void Endpoint::check_liveness(bool force) {
  const auto now = Clock::now();
  if (!force && now < next_liveness_) return;
  next_liveness_ = now + opts_.liveness_interval;
  pollfd fds[kMaxPeers];
  Peer* owners[kMaxPeers];
  nfds_t n = 0;
  for (auto& p : peers_) {
    if (p->down) continue;
    if (p->ch.peer_closed()) {
      mark_down(*p, MK_FAIL(ECONNRESET, "ipi peer down", "peer %u closed its channel", p->id));
      continue;
    }
    if (p->pidfd.valid()) {
      fds[n] = {p->pidfd.get(), POLLIN, 0};
      owners[n++] = p.get();
    }
  }
  if (n == 0 || ::poll(fds, n, 0) <= 0) return;
  for (nfds_t i = 0; i < n; ++i) {
    if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
      mark_down(*owners[i], MK_FAIL(ECONNRESET, "ipi peer down", "peer %u (pid %d) exited",
                                    owners[i]->id, owners[i]->pid));
    }
  }
}

void Endpoint::sleep_until(Clock::time_point wake_at) {
  Doorbell* bells[kMaxPeers + 1];
  std::size_t n = 0;
  bells[n++] = &wake_bell_;
  for (auto& p : peers_) {
    if (!p->down) bells[n++] = &p->ch.rx_doorbell();
  }
  for (std::size_t i = 0; i < n; ++i) bells[i]->announce_sleep(abi::kSleepingFutex);
  // The seq_cst store of announce_sleep and this seq_cst load pair with
  // wake()'s store of the flag and load of the word: one of the two sides
  // sees the other, no wake-up is lost.
  bool work = wake_requested_.load(std::memory_order_seq_cst);
  for (auto& p : peers_) {
    if (!p->down && (p->ch.consumer().has_pending() || p->ch.peer_closed())) work = true;
  }
  if (!work) {
    const auto now = Clock::now();
    const auto left = wake_at > now ? std::chrono::duration_cast<std::chrono::nanoseconds>(wake_at - now)
                                    : 0ns;
    if (left.count() > 0) wait_any(std::span<Doorbell* const>(bells, n), left);
  }
  for (std::size_t i = 0; i < n; ++i) bells[i]->cancel_sleep();
}

void Endpoint::wake() {
  wake_requested_.store(true, std::memory_order_seq_cst);
  std::atomic_ref<std::uint32_t> word(wake_line_.state);
  std::uint32_t s = word.load(std::memory_order_seq_cst);
  if (s != abi::kAwake && word.compare_exchange_strong(s, abi::kAwake, std::memory_order_acq_rel)) {
    ::syscall(SYS_futex, &wake_line_.state, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
  }
}

std::size_t Endpoint::dispatch(std::chrono::nanoseconds timeout) {
  // The spin loop reads the clock (and so expires requests and checks
  // liveness) once per 64 empty passes: a clock read costs ~40 ns on a VM.
  if (std::size_t n = drain_all()) {
    expire_requests();
    return n;
  }
  const auto deadline = deadline_after(timeout);
  auto spin_until = deadline;
  if (opts_.mode == WaitMode::kAdaptive) spin_until = std::min(deadline, deadline_after(opts_.poll_budget));
  if (opts_.mode == WaitMode::kBlock) spin_until = Clock::time_point::min();

  for (std::uint32_t i = 1;; ++i) {
    if (std::size_t n = drain_all()) return n;
    if ((i & 63) == 0) {
      if (take_wake()) return 0;
      expire_requests();
      const auto now = Clock::now();
      if (now >= next_liveness_) check_liveness(true);
      if (now >= deadline) return 0;
      if (now >= spin_until) break;
    }
    cpu_relax();
  }
  for (;;) {
    if (std::size_t n = poll()) return n;
    if (take_wake()) return 0;
    check_liveness(false);
    const auto now = Clock::now();
    if (now >= deadline) return 0;
    sleep_until(std::min({deadline, next_expiry_, next_liveness_}));
  }
}

bool Endpoint::arm() {
  for (std::size_t i = 0; i < peers_.size(); ++i) {
    if (peers_[i]->down) continue;
    if (!peers_[i]->ch.arm_eventfd()) {
      for (std::size_t j = 0; j < i; ++j) {
        if (!peers_[j]->down) peers_[j]->ch.disarm_eventfd();
      }
      return false;
    }
  }
  return true;
}

void Endpoint::disarm() {
  for (auto& p : peers_) {
    if (!p->down) p->ch.disarm_eventfd();
  }
  check_liveness(true);
}

}  // namespace mk::ipi
