// Fuzzes the small text parsers of mkctl options and of the state the daemon
// reads back (all in mkernel/): the first input byte picks one, the rest is
// its text.
//   0 mk::MemorySpec::parse      (pool.cc; --memory SIZE[@NODE], requests, state)
//   1 mk::KindSelector::parse    (partition.cc; --kind)
//   2 mk::parse_kinds_override   (planner.cc; mkctl plan --kinds 0-3:4-7)
//   3 mk::parse_plan_policy      (planner.cc; --policy)
//   4 mk::parse_instance_state   (instance.cc; the state file's "state")
//   5 mk::parse_cpu_mask         (irq.cc; /proc/irq/default_smp_affinity)
// Invariants: a refusal is EINVAL (or, for a size, parse_size's ERANGE) with
// a detail; accepted values are within
// their documented bounds (node <= 4095, size > 0 and <= 2^62, kind index
// <= 63, at least two disjoint kinds, CPUs < kMaxCpus) and their canonical
// text parses back to the same value.
#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "mkernel/instance.h"
#include "mkernel/irq.h"
#include "mkernel/partition.h"
#include "mkernel/planner.h"
#include "mkernel/pool.h"

namespace {

template <typename E>
void refused(const E& e, bool range_too = false) {
  MK_FUZZ_CHECK(e.code() == EINVAL || (range_too && e.code() == ERANGE), "code %d: %s", e.code(),
                e.to_string().c_str());
  MK_FUZZ_CHECK(e.detail()[0] != '\0', "empty detail");
}

void memory_spec(std::string_view t) {
  auto r = mk::MemorySpec::parse(t);
  if (!r) return refused(r.error(), true);  // parse_size's ERANGE (mk/units.h) passes through
  MK_FUZZ_CHECK(r->bytes > 0 && r->bytes <= (uint64_t{1} << 62), "bytes %llu", (unsigned long long)r->bytes);
  MK_FUZZ_CHECK(!r->node || *r->node <= 4095, "node %u", *r->node);
  std::string canon = std::to_string(r->bytes);
  if (r->node) canon += "@" + std::to_string(*r->node);
  auto back = mk::MemorySpec::parse(canon);
  MK_FUZZ_CHECK(back && back->bytes == r->bytes && back->node == r->node, "'%s' did not round-trip", canon.c_str());
}

void kind_selector(std::string_view t) {
  auto r = mk::KindSelector::parse(t);
  if (!r) return refused(r.error());
  using By = mk::KindSelector::By;
  std::string canon = r->by == By::Performance   ? "performance"
                      : r->by == By::Efficiency ? "efficiency"
                                                : std::to_string(r->index);
  MK_FUZZ_CHECK(r->by != By::Index || r->index <= 63, "kind index %u", r->index);
  auto back = mk::KindSelector::parse(canon);
  MK_FUZZ_CHECK(back && back->by == r->by && back->index == r->index, "'%s' did not round-trip", canon.c_str());
}

void kinds_override(std::string_view t) {
  auto r = mk::parse_kinds_override(t);
  if (!r) return refused(r.error());
  MK_FUZZ_CHECK(r->size() >= 2, "%zu kinds", r->size());
  mk::CpuSet seen;
  std::string canon;
  for (const mk::CpuSet& k : *r) {
    MK_FUZZ_CHECK(!k.empty() && k.last() < static_cast<int>(mk::CpuSet::kMaxCpus), "kind out of range");
    MK_FUZZ_CHECK(!k.intersects(seen), "overlapping kinds accepted");
    seen |= k;
    canon += (canon.empty() ? "" : ":") + k.to_string();
  }
  auto back = mk::parse_kinds_override(canon);
  MK_FUZZ_CHECK(back && *back == *r, "'%s' did not round-trip", canon.c_str());
}

void plan_policy(std::string_view t) {
  auto r = mk::parse_plan_policy(t);
  if (!r) return refused(r.error());
  auto back = mk::parse_plan_policy(mk::to_string(*r));
  MK_FUZZ_CHECK(back && *back == *r && t == mk::to_string(*r), "policy did not round-trip");
}

void instance_state(std::string_view t) {
  auto r = mk::parse_instance_state(t);
  if (!r) return refused(r.error());
  MK_FUZZ_CHECK(t == mk::to_string(*r), "state '%s' is not its own name", mk::to_string(*r));
}

void cpu_mask(std::string_view t) {
  auto r = mk::parse_cpu_mask(t);
  if (!r) return refused(r.error());
  MK_FUZZ_CHECK(r->empty() || r->last() < static_cast<int>(mk::CpuSet::kMaxCpus), "cpu %d", r->last());
  const std::string canon = mk::to_cpu_mask(*r);
  auto back = mk::parse_cpu_mask(canon);
  MK_FUZZ_CHECK(back && *back == *r, "mask '%s' did not round-trip", canon.c_str());
  MK_FUZZ_CHECK(mk::to_cpu_mask(*back) == canon, "mask '%s' unstable", canon.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view t(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 6) {
    case 0: memory_spec(t); break;
    case 1: kind_selector(t); break;
    case 2: kinds_override(t); break;
    case 3: plan_policy(t); break;
    case 4: instance_state(t); break;
    case 5: cpu_mask(t); break;
  }
  return 0;
}
