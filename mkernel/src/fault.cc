// The fault-injection switch (see mkernel/fault.h): the catalogue of points
// and the MKERNEL_FAULT parser.
#include "mkernel/fault.h"

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace mk::fault {
namespace {

constexpr Point kPoints[] = {
    // boot_instance (mkernel/src/boot.cc), in order.
    {"boot", "cgroup", "creating the instance's cpuset/memory cgroups"},
    {"boot", "memory", "creating the memory region memfds"},
    {"boot", "devices", "opening the instance's devices"},
    {"boot", "channel", "creating the host channel and handover socket"},
    {"boot", "boot-tree", "building and sealing the boot tree"},
    {"boot", "spawn", "spawning the confined image"},
    {"boot", "endpoint", "the host's endpoint on the image's channel"},
    {"boot", "ready", "waiting for the image's READY"},
    // Stopping a running image (RunningInstance, mkernel/src/boot.cc).
    {"stop", "shutdown", "the shutdown request (the host falls back to SIGKILL)"},
    {"stop", "exit", "waiting for the image to exit (the host falls back to SIGKILL)"},
    {"stop", "release", "removing the instance's cgroups and namespaces"},
    // In-place live update (mkernel/src/live_update.cc), in order.
    {"update", "boot", "booting the successor"},
    {"update", "ready", "the successor's READY"},
    {"update", "prepare", "the old image's prepare"},
    {"update", "precopy", "the pre-copy to the successor"},
    {"update", "freeze", "the old image's freeze (blackout starts)"},
    {"update", "transfer", "taking the handoff package and its fds"},
    {"update", "restore", "the successor's restore from the package"},
    // Staged update (mkernel/src/staged_update.cc): prefixes of step names.
    {"staged", "cpu", "taking CPUs for the new image, or moving one to it"},
    {"staged", "boot", "booting the new image"},
    {"staged", "tenants", "handing over the tenants"},
    {"staged", "services", "handing over the services"},
    {"staged", "peers", "handing over the peer channels"},
    {"staged", "retire", "retiring the old image"},
};

struct Item {
  std::string op, step;
  long nth = 0;  // 0: every time
};

Result<std::vector<Item>> parse(std::string_view spec) {
  std::vector<Item> items;
  while (!spec.empty()) {
    auto comma = spec.find(',');
    std::string_view one = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
    if (one.empty()) continue;
    auto colon = one.find(':');
    if (colon == std::string_view::npos) {
      return MK_FAIL(EINVAL, "bad MKERNEL_FAULT item", "'%.*s' is not OP:STEP[@N] (e.g. update:freeze)",
                     static_cast<int>(one.size()), one.data());
    }
    Item it;
    it.op = std::string(one.substr(0, colon));
    std::string_view step = one.substr(colon + 1);
    if (auto at = step.find('@'); at != std::string_view::npos) {
      std::string_view n = step.substr(at + 1);
      auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), it.nth);
      if (ec != std::errc{} || p != n.data() + n.size() || it.nth < 1) {
        return MK_FAIL(EINVAL, "bad MKERNEL_FAULT item", "'%.*s': @N must be a whole number from 1",
                       static_cast<int>(one.size()), one.data());
      }
      step = step.substr(0, at);
    }
    it.step = std::string(step);
    bool known = false;
    for (const auto& p : kPoints) known = known || (p.op == it.op && p.step == it.step);
    if (!known) {
      std::string list;
      for (const auto& p : kPoints) {
        if (p.op != it.op) continue;
        list += (list.empty() ? "" : ", ") + std::string(p.step);
      }
      if (list.empty()) {
        return MK_FAIL(EINVAL, "bad MKERNEL_FAULT item", "'%.*s': no operation '%s' (boot, stop, update, staged)",
                       static_cast<int>(one.size()), one.data(), it.op.c_str());
      }
      return MK_FAIL(EINVAL, "bad MKERNEL_FAULT item", "'%.*s': %s has no step '%s' (its steps: %s)",
                     static_cast<int>(one.size()), one.data(), it.op.c_str(), it.step.c_str(), list.c_str());
    }
    items.push_back(std::move(it));
  }
  return items;
}

}  // namespace

std::span<const Point> catalog() { return kPoints; }

bool compiled_in() {
#ifdef MK_FAULT_INJECTION
  return true;
#else
  return false;
#endif
}

Result<void> validate(std::string_view spec) {
  MK_TRY_ASSIGN(auto items, parse(spec));
  if (!items.empty() && !compiled_in()) {
    return MK_FAIL(ENOTSUP, "fault injection is not built in",
                   "MKERNEL_FAULT is set but this build lacks it (configure with -DMK_FAULT_INJECTION=ON, "
                   "as the ci, asan, tsan and debug presets do), or unset MKERNEL_FAULT");
  }
  return ok();
}

Result<void> point(std::string_view op, std::string_view step) {
#ifdef MK_FAULT_INJECTION
  const char* env = std::getenv("MKERNEL_FAULT");
  if (env == nullptr || *env == '\0') return ok();
  auto items = parse(env);
  if (!items) return items.error();  // validate() at start makes this rare
  static std::mutex mu;
  static std::map<std::string, long> hits;
  for (const auto& it : *items) {
    // staged: the catalogue names prefixes ("cpu" for "cpu 3").
    const bool match = it.op == op && (op == "staged" ? step.substr(0, it.step.size()) == it.step &&
                                                            (step.size() == it.step.size() || step[it.step.size()] == ' ')
                                                      : step == it.step);
    if (!match) continue;
    long n;
    {
      std::lock_guard lock(mu);
      n = ++hits[it.op + ":" + it.step];
    }
    if (it.nth == 0 || it.nth == n) {
      return MK_FAIL(EIO, "fault injected", "MKERNEL_FAULT=%s:%s at step '%.*s'", it.op.c_str(), it.step.c_str(),
                     static_cast<int>(step.size()), step.data());
    }
  }
  return ok();
#else
  (void)op;
  (void)step;
  return ok();
#endif
}

}  // namespace mk::fault
