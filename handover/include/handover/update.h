// DOC: mk::handover::UpdateMachine — the per-instance live-update state
// machine and the ordered subsystem handler protocol (LUO's file handler
// callbacks: preserve / cancel / freeze / unfreeze / retrieve / finish).
//
// What this is: every subsystem that carries state across an update (files,
// memory, tenants, the application) registers a Handler, in order. The
// machine drives them through the update and keeps the instance's state:
//
//   normal --prepare--> prepared --freeze--> frozen --retrieve--> updated
//     ^                    |                   |                    |
//     +------cancel--------+------cancel-------+                    |
//     +------------------------------finish-------------------------+
//
// Happy path:
//   1. prepare(blob): preserve() on each handler in registration order, while
//      the instance still runs; each records its state in the KHO blob.
//   2. freeze(blob): freeze() on each handler in order; the outgoing image
//      stops mutating preserved state and finalizes its subtree.
//   3. The host hands blob + fds + regions to the pre-booted new image.
//   4. retrieve(blob): retrieve() on each (new side) handler in order.
//   5. finish(): finish() on each handler in order; back to normal.
// Unhappy paths:
//   1. A preserve fails: the handlers already prepared are cancelled in
//      reverse order, the state stays normal, nothing changed; the error
//      names the failed handler (also last_failed_handler()).
//   2. A freeze fails: the handlers already frozen are unfrozen in reverse
//      order and the state stays prepared (LUO: a failed freeze unwinds only
//      the entries already frozen). The caller retries freeze or cancels.
//   3. cancel() from prepared: cancel() on every handler in reverse order.
//      From frozen: unfreeze() on every handler in reverse, then cancel() on
//      every handler in reverse. The old image keeps running.
//   4. A retrieve fails (the new image refuses the blob): the state stays
//      frozen; the caller cancels, which unfreezes the old image (rollback).
//   5. A finish fails: the state stays updated; finish() again calls only
//      the handlers that have not finished yet (retry is idempotent).
//   cancel() and unfreeze() callbacks cannot fail: they must undo.
//
// Every transition goes through one check; an illegal one (e.g. freeze from
// normal, cancel from updated, prepare twice) is refused with EINVAL naming
// "from -> to", and no handler is called.
//
// Returns:
//   add_handler: EINVAL (null handler, bad name, or state not normal),
//                EEXIST (a handler of that name is registered).
//   prepare / freeze / retrieve / finish: EINVAL (illegal transition), or
//                the failing handler's own code with a detail naming it.
//   cancel:      EINVAL (state is normal or updated).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "handover/kho_blob.h"
#include "mk/result.h"

namespace mk::handover {

enum class UpdateState : uint8_t { kNormal, kPrepared, kFrozen, kUpdated };
std::string_view to_string(UpdateState state) noexcept;  // "normal", ...

// Whether `from -> to` is an edge of the diagram above.
bool is_legal_transition(UpdateState from, UpdateState to) noexcept;

// One subsystem's participation in an update. The machine does not own it.
class Handler {
 public:
  virtual ~Handler() = default;
  // 1..63 chars, unique per machine; used in errors and logs.
  virtual std::string_view name() const = 0;
  // Outgoing side, instance running: record state into `blob`. May fail.
  virtual Result<void> preserve(KhoBlob& blob) = 0;
  // Undo a successful preserve (update cancelled). Cannot fail.
  virtual void cancel() = 0;
  // Outgoing side: stop mutating preserved state; finalize `blob`. May fail.
  virtual Result<void> freeze(KhoBlob& blob) = 0;
  // Undo a successful freeze (update aborted). Cannot fail.
  virtual void unfreeze() = 0;
  // Incoming side: take the state back from `blob`. May fail (refusal).
  virtual Result<void> retrieve(const KhoBlob& blob) = 0;
  // Incoming side: the update is complete; release what is no longer needed.
  virtual Result<void> finish() = 0;
};

class UpdateMachine {
 public:
  using Observer = std::function<void(UpdateState from, UpdateState to)>;

  UpdateState state() const { return state_; }
  // Called on every state change (e.g. to log "old -> new").
  void set_observer(Observer observer) { observer_ = std::move(observer); }

  Result<void> add_handler(Handler* handler);
  std::size_t handler_count() const { return handlers_.size(); }

  Result<void> prepare(KhoBlob& blob);
  Result<void> freeze(KhoBlob& blob);
  Result<void> retrieve(const KhoBlob& blob);
  Result<void> finish();
  Result<void> cancel();

  // The handler whose step failed last ("" when none did).
  const std::string& last_failed_handler() const { return last_failed_; }

 private:
  Result<void> check(UpdateState to) const;
  void set_state(UpdateState to);
  Error handler_failed(std::size_t index, const char* step, const Error& cause);

  UpdateState state_ = UpdateState::kNormal;
  std::vector<Handler*> handlers_;
  std::size_t finished_ = 0;  // handlers finished in the current finish phase
  std::string last_failed_;
  Observer observer_;
};

}  // namespace mk::handover
