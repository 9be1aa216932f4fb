// Fuzzes mk::parse_pool_tree. Same invariants as fuzz_boot_tree: documented
// errno + detail on failure; accepted pools re-emit and round-trip exactly.
#include <cstdint>
#include <span>

#include "fuzz_check.h"
#include "mk/pool_tree.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = mk::parse_pool_tree(std::span<const uint8_t>(data, size));
  if (!r) {
    int c = r.error().code();
    MK_FUZZ_CHECK(c == EINVAL || c == EBADMSG || c == EPROTONOSUPPORT || c == E2BIG || c == EIO,
                  "code %d: %s", c, r.error().to_string().c_str());
    MK_FUZZ_CHECK(r.error().detail()[0] != '\0', "empty detail");
    return 0;
  }
  auto blob = mk::emit_pool_tree(*r);
  MK_FUZZ_CHECK(blob.has_value(), "accepted pool does not re-emit: %s", blob.error().to_string().c_str());
  auto back = mk::parse_pool_tree(*blob);
  MK_FUZZ_CHECK(back.has_value(), "re-emitted pool does not parse: %s", back.error().to_string().c_str());
  MK_FUZZ_CHECK(*back == *r, "round trip changed the pool");
  auto again = mk::emit_pool_tree(*back);
  MK_FUZZ_CHECK(again && *again == *blob, "emit is not canonical");
  return 0;
}
