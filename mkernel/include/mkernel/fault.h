// DOC: mk::fault — the fault-injection switch of boot, stop, live update and
// staged update (issue #8; docs/reliability.md "Fault injection").
//
// Role: every step of those four flows calls fault::point(op, step) before it
// acts. Normally that is a no-op; with the switch on, a named point fails
// with EIO "fault injected", and the flow must unwind as it would on a real
// failure of that step (rollback, cleanup), which the fault matrix test
// (tests/faults) checks for leaks.
//
// The switch is the environment variable MKERNEL_FAULT, read at each point
// (mkerneld inherits it from whoever starts it, e.g. `MKERNEL_FAULT=...
// mkctl start`):
//
//   MKERNEL_FAULT=OP:STEP[@N][,OP:STEP[@N]...]
//
// OP is boot | stop | update | staged, STEP a step name of catalog() (for
// staged, a prefix of the step's name: "cpu" matches "cpu 3"), and @N fails
// only the N-th time that point is reached in this process (default: every
// time). A spec naming an unknown OP or STEP is refused by validate(), which
// mkerneld runs at start.
//
// Compiled in only with -DMK_FAULT_INJECTION=ON (the ci, asan, tsan and debug
// presets); otherwise point() is always ok and validate() refuses a set
// MKERNEL_FAULT, so a production daemon never runs with it silently ignored.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "mk/result.h"

namespace mk::fault {

// One injectable point.
struct Point {
  std::string_view op;    // boot | stop | update | staged
  std::string_view step;  // e.g. "cgroup", "freeze"
  std::string_view what;  // what fails there, for docs and listings
};

// Every point of every flow, in flow order.
std::span<const Point> catalog();

// True when built with MK_FAULT_INJECTION.
bool compiled_in();

// Checks a spec (the value of MKERNEL_FAULT): empty is fine; otherwise every
// item must name a catalogued point and fault injection must be compiled in.
Result<void> validate(std::string_view spec);

// The step `step` of `op` is about to run: fails (EIO "fault injected",
// detail "MKERNEL_FAULT=op:step") when MKERNEL_FAULT selects it.
Result<void> point(std::string_view op, std::string_view step);

}  // namespace mk::fault
