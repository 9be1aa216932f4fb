// Fuzzes mk::tools::partition_from_json_text — mkerneld's state file, which
// a crash, a full disk or a hand edit can leave in any shape. Invariants: a
// refusal is EBADMSG with a message; an accepted partition re-serializes to
// text that parses back to the same text (nothing is lost or invented).
#include <cerrno>
#include <cstdint>
#include <string_view>

#include "fuzz_check.h"
#include "state_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto p = mk::tools::partition_from_json_text(text, "live");
  if (!p) {
    MK_FUZZ_CHECK(p.error().code() == EBADMSG, "code %d: %s", p.error().code(), p.error().to_string().c_str());
    MK_FUZZ_CHECK(!p.error().to_string().empty(), "empty error");
    return 0;
  }
  const std::string once = mk::tools::partition_to_json_text(*p, "live");
  auto back = mk::tools::partition_from_json_text(once, "live");
  MK_FUZZ_CHECK(back.has_value(), "re-serialized state does not parse: %s", back.error().to_string().c_str());
  MK_FUZZ_CHECK(mk::tools::partition_to_json_text(*back, "live") == once, "round trip changed the state");
  return 0;
}
