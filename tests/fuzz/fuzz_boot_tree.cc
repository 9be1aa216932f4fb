// Fuzzes mk::parse_boot_tree, the image's parser of its untrusted boot tree.
// Invariants: failures carry a documented errno and a detail; anything
// accepted re-emits, parses back to an equal BootTree, and the re-emitted
// blob is canonical (emitting the re-parsed tree gives the same bytes).
#include <cstdint>
#include <span>

#include "fuzz_check.h"
#include "mk/boot_tree.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = mk::parse_boot_tree(std::span<const uint8_t>(data, size));
  if (!r) {
    int c = r.error().code();
    MK_FUZZ_CHECK(c == EINVAL || c == EBADMSG || c == EPROTONOSUPPORT || c == E2BIG || c == EIO,
                  "code %d: %s", c, r.error().to_string().c_str());
    MK_FUZZ_CHECK(r.error().detail()[0] != '\0', "empty detail");
    return 0;
  }
  auto blob = mk::emit_boot_tree(*r);
  MK_FUZZ_CHECK(blob.has_value(), "accepted tree does not re-emit: %s", blob.error().to_string().c_str());
  auto back = mk::parse_boot_tree(*blob);
  MK_FUZZ_CHECK(back.has_value(), "re-emitted tree does not parse: %s", back.error().to_string().c_str());
  MK_FUZZ_CHECK(*back == *r, "round trip changed the tree");
  auto again = mk::emit_boot_tree(*back);
  MK_FUZZ_CHECK(again && *again == *blob, "emit is not canonical");
  return 0;
}
