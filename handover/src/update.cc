// update: the per-instance update state machine and handler protocol (see
// handover/update.h).
#include "handover/update.h"

#include <algorithm>

namespace mk::handover {
namespace {

constexpr const char* kWhat = "update step refused";

}  // namespace

std::string_view to_string(UpdateState state) noexcept {
  switch (state) {
    case UpdateState::kNormal: return "normal";
    case UpdateState::kPrepared: return "prepared";
    case UpdateState::kFrozen: return "frozen";
    case UpdateState::kUpdated: return "updated";
  }
  return "?";
}

bool is_legal_transition(UpdateState from, UpdateState to) noexcept {
  using S = UpdateState;
  switch (from) {
    case S::kNormal: return to == S::kPrepared;
    case S::kPrepared: return to == S::kFrozen || to == S::kNormal;
    case S::kFrozen: return to == S::kUpdated || to == S::kNormal;
    case S::kUpdated: return to == S::kNormal;
  }
  return false;
}

Result<void> UpdateMachine::check(UpdateState to) const {
  if (!is_legal_transition(state_, to)) {
    return MK_FAIL(EINVAL, kWhat, "illegal update transition %s -> %s", to_string(state_).data(),
                   to_string(to).data());
  }
  return ok();
}

void UpdateMachine::set_state(UpdateState to) {
  UpdateState from = state_;
  state_ = to;
  if (observer_) observer_(from, to);
}

Error UpdateMachine::handler_failed(std::size_t index, const char* step, const Error& cause) {
  last_failed_ = std::string(handlers_[index]->name());
  return MK_FAIL(cause.code(), "update handler failed", "handler '%s' (%zu of %zu) failed to %s: %s",
                 last_failed_.c_str(), index + 1, handlers_.size(), step, cause.to_string().c_str());
}

Result<void> UpdateMachine::add_handler(Handler* handler) {
  if (!handler) return MK_FAIL(EINVAL, "bad update handler", "null handler");
  if (state_ != UpdateState::kNormal) {
    return MK_FAIL(EINVAL, "bad update handler", "cannot add handler '%.*s' in state %s",
                   static_cast<int>(std::min<std::size_t>(handler->name().size(), 63)),
                   handler->name().data(), to_string(state_).data());
  }
  std::string_view name = handler->name();
  if (name.empty() || name.size() > 63) {
    return MK_FAIL(EINVAL, "bad update handler", "handler name must be 1..63 chars");
  }
  for (Handler* h : handlers_) {
    if (h->name() == name) {
      return MK_FAIL(EEXIST, "bad update handler", "a handler '%.*s' is already registered",
                     static_cast<int>(name.size()), name.data());
    }
  }
  handlers_.push_back(handler);
  return ok();
}

Result<void> UpdateMachine::prepare(KhoBlob& blob) {
  MK_TRY(check(UpdateState::kPrepared));
  last_failed_.clear();
  for (std::size_t i = 0; i < handlers_.size(); ++i) {
    auto r = handlers_[i]->preserve(blob);
    if (!r) {
      // Unwind only the handlers already prepared, newest first.
      for (std::size_t j = i; j-- > 0;) handlers_[j]->cancel();
      return handler_failed(i, "preserve", r.error());
    }
  }
  set_state(UpdateState::kPrepared);
  return ok();
}

Result<void> UpdateMachine::freeze(KhoBlob& blob) {
  MK_TRY(check(UpdateState::kFrozen));
  last_failed_.clear();
  for (std::size_t i = 0; i < handlers_.size(); ++i) {
    auto r = handlers_[i]->freeze(blob);
    if (!r) {
      for (std::size_t j = i; j-- > 0;) handlers_[j]->unfreeze();
      return handler_failed(i, "freeze", r.error());
    }
  }
  set_state(UpdateState::kFrozen);
  return ok();
}

Result<void> UpdateMachine::retrieve(const KhoBlob& blob) {
  MK_TRY(check(UpdateState::kUpdated));
  last_failed_.clear();
  for (std::size_t i = 0; i < handlers_.size(); ++i) {
    auto r = handlers_[i]->retrieve(blob);
    if (!r) return handler_failed(i, "retrieve", r.error());
  }
  finished_ = 0;
  set_state(UpdateState::kUpdated);
  return ok();
}

Result<void> UpdateMachine::finish() {
  if (state_ != UpdateState::kUpdated) {
    return MK_FAIL(EINVAL, kWhat, "illegal update transition %s -> %s (finish)", to_string(state_).data(),
                   to_string(UpdateState::kNormal).data());
  }
  last_failed_.clear();
  // Resume after the handlers a previous, failed finish() already finished.
  for (; finished_ < handlers_.size(); ++finished_) {
    auto r = handlers_[finished_]->finish();
    if (!r) return handler_failed(finished_, "finish", r.error());
  }
  finished_ = 0;
  set_state(UpdateState::kNormal);
  return ok();
}

Result<void> UpdateMachine::cancel() {
  if (state_ != UpdateState::kPrepared && state_ != UpdateState::kFrozen) {
    return MK_FAIL(EINVAL, kWhat, "illegal update transition %s -> %s (cancel)", to_string(state_).data(),
                   to_string(UpdateState::kNormal).data());
  }
  if (state_ == UpdateState::kFrozen) {
    for (std::size_t j = handlers_.size(); j-- > 0;) handlers_[j]->unfreeze();
  }
  for (std::size_t j = handlers_.size(); j-- > 0;) handlers_[j]->cancel();
  set_state(UpdateState::kNormal);
  return ok();
}

}  // namespace mk::handover
