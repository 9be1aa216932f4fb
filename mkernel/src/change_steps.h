// The all-or-nothing step runner shared by the resource changes of a running
// instance: CPU moves (cpu_move.cc) and memory/device moves
// (resource_move.cc). Each step knows how to take itself back; on the first
// failure the steps done are undone in reverse order (the failing one too
// when its outcome is unknown: a request that timed out may have taken
// effect, and every undo request is idempotent).
//
// Role in the flow: the host side of the consent handshakes of
// mk/abi/control_messages.h steps 10-15. Fault injection (tests, mkctl
// --fault) and the per-step timing and report go through Runner::step.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "mk/result.h"
#include "mkernel/cpu_move.h"

namespace mk::change {

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// *unknown: the step failed without knowing whether it took effect.
using StepFn = std::function<Result<void>(bool* unknown)>;

// One step of a change and how to take it back ("" / null: nothing to undo).
struct Step {
  std::string name;
  StepFn run;
  std::string undo_name;
  StepFn undo;
};

// Runs steps with injection, timing and on_step, and undoes them.
class Runner {
 public:
  Runner(const CpuChangeOptions& opts, std::vector<std::pair<std::string, double>>& steps)
      : opts_(opts), steps_(steps) {}

  Result<void> step(const std::string& name, const StepFn& fn, bool* unknown) {
    *unknown = false;
    const auto t0 = Clock::now();
    Result<void> r;
    if (opts_.inject) r = opts_.inject(name);
    if (r) r = fn(unknown);
    const double ms = ms_since(t0);
    steps_.emplace_back(name, ms);
    if (opts_.on_step) opts_.on_step(name, ms);
    return r;
  }

  // Every step, or on the first failure the ones done undone in reverse
  // order (the failing one too when its outcome is unknown). `what` is the
  // error class (a literal); `before` says what the instance(s) own. The
  // undo stops at its first failure (what follows depends on it); the
  // error then names what is still done, and `reconcile` what puts it back.
  Result<void> all_or_nothing(const std::vector<Step>& steps, const char* what, const std::string& before,
                              const char* reconcile) {
    for (std::size_t i = 0; i < steps.size(); ++i) {
      bool unknown = false;
      auto r = step(steps[i].name, steps[i].run, &unknown);
      if (r) continue;
      const Error failed = r.error();
      std::vector<const Step*> todo;
      if (unknown && steps[i].undo) todo.push_back(&steps[i]);
      for (std::size_t j = i; j-- > 0;)
        if (steps[j].undo) todo.push_back(&steps[j]);
      std::string undone;
      for (std::size_t k = 0; k < todo.size(); ++k) {
        bool u = false;
        auto ur = step(todo[k]->undo_name, todo[k]->undo, &u);
        if (!ur) {
          std::string left;
          for (std::size_t l = k; l < todo.size(); ++l) left += (l > k ? ", " : "") + todo[l]->name;
          return Error(failed.code(), what)
              .set_detail("%s failed and the undo stopped at '%s' (%s); still done: %s; the state file says %s "
                          "(%s puts them back): %s",
                          steps[i].name.c_str(), todo[k]->undo_name.c_str(), ur.error().message(), left.c_str(),
                          before.c_str(), reconcile, failed.message());
        }
        undone += (k ? ", " : "") + todo[k]->name;
      }
      return Error(failed.code(), what)
          .set_detail("%s failed, nothing changed (%s%s%s): %s", steps[i].name.c_str(), before.c_str(),
                      undone.empty() ? "" : "; undone: ", undone.c_str(), failed.message());
    }
    return ok();
  }

 private:
  const CpuChangeOptions& opts_;
  std::vector<std::pair<std::string, double>>& steps_;
};

}  // namespace mk::change
