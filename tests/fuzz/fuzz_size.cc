// Fuzzes mk::parse_size ("512M", "1.5GiB", ... from the CLI and state).
// Invariants: errors are EINVAL/ERANGE with a detail; a parsed size is
// <= 2^62 and its decimal form parses back to the same value.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "mk/units.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = mk::parse_size(text);
  if (!r) {
    int c = r.error().code();
    MK_FUZZ_CHECK(c == EINVAL || c == ERANGE, "code %d", c);
    MK_FUZZ_CHECK(r.error().detail()[0] != '\0', "empty detail");
    return 0;
  }
  MK_FUZZ_CHECK(*r <= (uint64_t{1} << 62), "%llu above 2^62", static_cast<unsigned long long>(*r));
  std::string dec = std::to_string(*r);
  auto again = mk::parse_size(dec);
  MK_FUZZ_CHECK(again && *again == *r, "'%s' did not round-trip", dec.c_str());
  MK_FUZZ_CHECK(!mk::format_size(*r).empty(), "empty format");
  return 0;
}
