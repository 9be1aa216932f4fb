// Fuzzes mk::handover::parse_kho_blob, the incoming image's parser of the
// untrusted handover blob. Invariants: failures carry a documented errno and
// a detail; anything accepted re-emits, parses back to an equal KhoBlob, and
// the re-emitted blob is canonical (emitting the re-parsed blob gives the
// same bytes); find_compatible never crashes on what was accepted.
#include <cstdint>
#include <span>

#include "fuzz_check.h"
#include "handover/kho_blob.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mk::handover;
  auto r = parse_kho_blob(std::span<const uint8_t>(data, size));
  if (!r) {
    int c = r.error().code();
    MK_FUZZ_CHECK(c == EINVAL || c == EBADMSG || c == EPROTONOSUPPORT || c == E2BIG || c == EIO,
                  "code %d: %s", c, r.error().to_string().c_str());
    MK_FUZZ_CHECK(r.error().detail()[0] != '\0', "empty detail");
    return 0;
  }
  auto blob = emit_kho_blob(*r);
  MK_FUZZ_CHECK(blob.has_value(), "accepted blob does not re-emit: %s", blob.error().to_string().c_str());
  auto back = parse_kho_blob(*blob);
  MK_FUZZ_CHECK(back.has_value(), "re-emitted blob does not parse: %s", back.error().to_string().c_str());
  MK_FUZZ_CHECK(*back == *r, "round trip changed the blob");
  auto again = emit_kho_blob(*back);
  MK_FUZZ_CHECK(again && *again == *blob, "emit is not canonical");
  for (const Subsystem& s : r->subsystems) {
    auto f = find_compatible(*r, s.name, "mkernel,files-v", 1);
    MK_FUZZ_CHECK(f || f.error().code() == EPROTONOSUPPORT, "find_compatible: %s",
                  f.error().to_string().c_str());
  }
  return 0;
}
