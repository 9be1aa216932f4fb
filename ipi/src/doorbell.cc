// Doorbell: see ipi/doorbell.h for the store-then-load argument.
#include "ipi/doorbell.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>

#include "shm_atomic.h"

namespace mk::ipi {

using detail::shm_cas;
using detail::shm_load;
using detail::shm_store;

namespace {

timespec to_timespec(std::chrono::nanoseconds d) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(d.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(d.count() % 1'000'000'000);
  return ts;
}

}  // namespace

bool parse_wait_mode(std::string_view s, WaitMode* out) {
  for (WaitMode m : {WaitMode::kPoll, WaitMode::kAdaptive, WaitMode::kBlock}) {
    if (s == to_string(m)) {
      *out = m;
      return true;
    }
  }
  return false;
}

std::uint32_t* Doorbell::word() const { return &line_->state; }

bool Doorbell::ring() {
  // The load half of the producer's store-then-load: the preceding seq_cst
  // store of the slot seq (RingProducer::publish) and this seq_cst load are
  // ordered against the consumer's seq_cst store in announce_sleep() and its
  // seq_cst load in RingConsumer::has_pending(); see the header.
  const std::uint32_t s = shm_load<std::uint32_t>(&line_->state, std::memory_order_seq_cst);
  if (s == abi::kAwake) return false;
  // Only one ringer (or the consumer's own cancel) wins the transition.
  if (!shm_cas<std::uint32_t>(&line_->state, s, abi::kAwake, std::memory_order_acq_rel)) return false;
  ++syscalls_;
  if (s == abi::kSleepingEventfd && efd_ >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(efd_, &one, sizeof one);  // EAGAIN: counter saturated, still readable
  } else {
    // kSleepingFutex, or garbage a peer wrote: waking is always harmless.
    ::syscall(SYS_futex, &line_->state, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
  }
  return true;
}

void Doorbell::announce_sleep(std::uint32_t how) {
  // The store half of the consumer's store-then-load; pairs with the seq_cst
  // load in ring(). See the header for the argument.
  shm_store<std::uint32_t>(&line_->state, how, std::memory_order_seq_cst);
}

void Doorbell::cancel_sleep() {
  shm_store<std::uint32_t>(&line_->state, abi::kAwake, std::memory_order_relaxed);
}

int Doorbell::wait(std::chrono::nanoseconds timeout) {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout.count() >= 0) {
    ts = to_timespec(timeout);
    tsp = &ts;
  }
  // Shared (not FUTEX_PRIVATE_FLAG): the word lives in a MAP_SHARED memfd
  // mapped by two processes. The kernel re-checks the word == SLEEPING.
  long r = ::syscall(SYS_futex, &line_->state, FUTEX_WAIT, abi::kSleepingFutex, tsp, nullptr, 0);
  if (r != 0 && errno == ETIMEDOUT) return ETIMEDOUT;
  return 0;
}

void Doorbell::drain_eventfd() {
  if (efd_ < 0) return;
  std::uint64_t v;
  [[maybe_unused]] ssize_t n = ::read(efd_, &v, sizeof v);  // EFD_NONBLOCK: EAGAIN when empty
}

int wait_any(std::span<Doorbell* const> bells, std::chrono::nanoseconds timeout) {
  if (bells.empty()) {
    if (timeout.count() > 0) {
      timespec ts = to_timespec(timeout);
      ::nanosleep(&ts, nullptr);
    }
    return ETIMEDOUT;
  }
  if (bells.size() == 1) return bells[0]->wait(timeout);
  struct futex_waitv w[FUTEX_WAITV_MAX] = {};
  const std::size_t n = std::min<std::size_t>(bells.size(), FUTEX_WAITV_MAX);
  for (std::size_t i = 0; i < n; ++i) {
    w[i].val = abi::kSleepingFutex;
    w[i].uaddr = reinterpret_cast<std::uintptr_t>(bells[i]->word());
    w[i].flags = FUTEX_32;  // shared futex
  }
  // futex_waitv takes an absolute CLOCK_MONOTONIC deadline.
  timespec abs{};
  timespec* absp = nullptr;
  if (timeout.count() >= 0) {
    clock_gettime(CLOCK_MONOTONIC, &abs);
    const auto ns = abs.tv_nsec + timeout.count() % 1'000'000'000;
    abs.tv_sec += static_cast<time_t>(timeout.count() / 1'000'000'000 + ns / 1'000'000'000);
    abs.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    absp = &abs;
  }
  long r = ::syscall(SYS_futex_waitv, w, n, 0, absp, CLOCK_MONOTONIC);
  if (r < 0 && errno == ETIMEDOUT) return ETIMEDOUT;
  if (r < 0 && errno == ENOSYS) {
    // Kernels before 5.16: fall back to a short wait on the first bell; the
    // caller loops, so the others are re-checked within a millisecond.
    using namespace std::chrono_literals;
    return bells[0]->wait(timeout.count() < 0 ? std::chrono::nanoseconds(1ms)
                                              : std::min<std::chrono::nanoseconds>(timeout, 1ms));
  }
  return 0;
}

}  // namespace mk::ipi
