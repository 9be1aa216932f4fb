// DOC: Doorbell — the sleep-aware wake-up of one ring's consumer.
//
// What this is: a futex word in shared memory (abi::DoorbellLine::state) plus
// an optional eventfd view. The consumer polls its ring for a budget; when it
// gives up it publishes "sleeping" and waits on the futex (or on the eventfd
// in an event loop). The producer pays a syscall only when the consumer has
// actually published "sleeping"; otherwise ringing costs one seq_cst load
// of a line that stays shared in both caches.
//
// The no-lost-wake-up argument (Dekker: both sides store, then load, with
// sequentially consistent atomics):
//   consumer: state = SLEEPING (seq_cst store, announce_sleep)
//             load ring seq     (seq_cst, RingConsumer::has_pending) -> empty? FUTEX_WAIT
//   producer: ring seq = p + 1  (seq_cst store, RingProducer::publish)
//             load state        (seq_cst, ring())                     -> sleeping? wake
// All four operations are in one total order S. If the producer's load comes
// before the consumer's store in S, the producer's store precedes the
// consumer's load, so the consumer sees the message and does not sleep.
// Otherwise the producer's load sees SLEEPING, CASes it to AWAKE and calls
// FUTEX_WAKE (or writes the eventfd). FUTEX_WAIT only blocks while the word
// still equals SLEEPING, so a wake landing between the consumer's check and
// its futex call is not lost either. close() uses the same pattern with the
// side_state word. (seq_cst operations rather than relaxed ones plus
// atomic_thread_fence: same x86 cost, one locked instruction per side, and
// ThreadSanitizer understands them; it does not model fences.)
//
// Place in the IPI flow: Channel::flush -> RingProducer::publish -> ring();
// Channel::receive / Endpoint::dispatch -> announce_sleep -> has_pending ->
// wait.
//
// Happy path (consumer):
//   1. poll try_pop for the mode's budget (kPoll: forever, kAdaptive: budget,
//      kBlock: none);
//   2. announce_sleep(kSleepingFutex); if ring.has_pending(): cancel_sleep();
//   3. wait(timeout); cancel_sleep(); go to 1.
// Unhappy paths:
//   1. Timeout: wait returns ETIMEDOUT; the caller decides (deadline, peer
//      liveness check).
//   2. The peer scribbles the word: FUTEX_WAIT sees a value other than
//      SLEEPING and returns at once (EAGAIN -> treated as a wake); the caller
//      re-checks its deadline, so a garbage word costs CPU, never a hang.
//   3. EINTR from a signal: reported as a wake.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>

#include "ipi/abi/ring_layout.h"

namespace mk::ipi {

enum class WaitMode : std::uint8_t {
  kPoll,      // spin until a message or the deadline; never sleeps
  kAdaptive,  // spin for a budget, then sleep on the doorbell (default)
  kBlock,     // sleep on the doorbell as soon as the ring is empty
};

constexpr const char* to_string(WaitMode m) {
  switch (m) {
    case WaitMode::kPoll: return "poll";
    case WaitMode::kAdaptive: return "adaptive";
    case WaitMode::kBlock: return "block";
  }
  return "?";
}

// Parses "poll" / "adaptive" / "block"; false on anything else.
bool parse_wait_mode(std::string_view s, WaitMode* out);

class Doorbell {
 public:
  Doorbell() = default;
  // `line` lives in shared memory; `eventfd` (borrowed, may be -1) is the
  // eventfd view of this doorbell.
  Doorbell(abi::DoorbellLine* line, int eventfd) : line_(line), efd_(eventfd) {}

  // Producer side, after a publish. Returns true when it made a syscall.
  bool ring();

  // Consumer side.
  void announce_sleep(std::uint32_t how = abi::kSleepingFutex);
  void cancel_sleep();
  // FUTEX_WAIT while the word is kSleepingFutex, at most `timeout`
  // (negative: no limit). Returns 0 (woken, value changed, EINTR) or ETIMEDOUT.
  int wait(std::chrono::nanoseconds timeout);
  // Empties the eventfd counter after an event loop saw it readable.
  void drain_eventfd();

  int eventfd() const { return efd_; }
  std::uint32_t* word() const;
  std::uint64_t syscalls() const { return syscalls_; }

 private:
  abi::DoorbellLine* line_ = nullptr;
  int efd_ = -1;
  std::uint64_t syscalls_ = 0;
};

// Waits on several doorbells at once (futex_waitv; up to 128), each expected
// to be in kSleepingFutex. Returns 0 (one changed or was woken) or ETIMEDOUT.
int wait_any(std::span<Doorbell* const> bells, std::chrono::nanoseconds timeout);

}  // namespace mk::ipi
