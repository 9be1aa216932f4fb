// Fuzzes mk::CpuSet::parse (cpu-list text from the CLI and state files).
// Invariants: errors are EINVAL/ERANGE with a detail; a parsed set is
// within kMaxCpus and its canonical text parses back to the same set.
#include <cstdint>
#include <string_view>

#include "fuzz_check.h"
#include "mk/cpu_set.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = mk::CpuSet::parse(text);
  if (!r) {
    int c = r.error().code();
    MK_FUZZ_CHECK(c == EINVAL || c == ERANGE, "code %d", c);
    MK_FUZZ_CHECK(r.error().detail()[0] != '\0', "empty detail");
    return 0;
  }
  MK_FUZZ_CHECK(!r->empty(), "parse accepted an empty list");
  MK_FUZZ_CHECK(r->last() < static_cast<int>(mk::CpuSet::kMaxCpus), "cpu %d", r->last());
  std::string canon = r->to_string();
  auto again = mk::CpuSet::parse(canon);
  MK_FUZZ_CHECK(again.has_value(), "canonical '%s' rejected", canon.c_str());
  MK_FUZZ_CHECK(*again == *r, "'%s' did not round-trip", canon.c_str());
  MK_FUZZ_CHECK(again->to_string() == canon, "canonical form of '%s' is unstable", canon.c_str());
  return 0;
}
