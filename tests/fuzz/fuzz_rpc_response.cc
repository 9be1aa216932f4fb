// Fuzzes mk::tools::rpc::parse_response and parse_progress — what mkctl reads
// back from mkerneld's socket (tools/common/rpc_protocol.cc). mkctl treats
// a daemon as another process that may be an old version, killed mid-write
// or not mkerneld at all. Invariants: a refusal is EMSGSIZE (over the size
// limit) or EBADMSG with a message; an accepted response re-encodes
// (encode_response) to a line that parses back to the same response, and
// that encoding is canonical; a progress frame re-encodes (encode_progress)
// to a frame that parses back to the same object.
#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "rpc_protocol.h"

namespace rpc = mk::tools::rpc;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  if (auto p = rpc::parse_progress(line)) {
    const std::string enc = rpc::encode_progress(*p);
    auto again = rpc::parse_progress(enc);
    MK_FUZZ_CHECK(again.has_value(), "re-encoded progress frame not a frame:\n%s", enc.c_str());
    MK_FUZZ_CHECK(*again == *p, "progress frame did not round-trip");
    MK_FUZZ_CHECK(rpc::encode_progress(*again) == enc, "progress encoding not canonical");
  }
  auto r = rpc::parse_response(line);
  if (!r) {
    const int c = r.error().code();
    MK_FUZZ_CHECK(c == EBADMSG || c == EMSGSIZE, "code %d: %s", c, r.error().to_string().c_str());
    MK_FUZZ_CHECK(!r.error().to_string().empty(), "empty error");
    return 0;
  }
  const std::string once = rpc::encode_response(*r);
  auto back = rpc::parse_response(once);
  MK_FUZZ_CHECK(back.has_value(), "re-encoded response does not parse: %s\n%s", back.error().to_string().c_str(),
                once.c_str());
  MK_FUZZ_CHECK(back->ok == r->ok, "ok changed");
  if (r->ok) {
    MK_FUZZ_CHECK(back->result == r->result && back->text == r->text, "success changed in the round trip");
  } else {
    MK_FUZZ_CHECK(back->error.errnum == r->error.errnum && back->error.error == r->error.error &&
                      back->error.message == r->error.message && back->error.hint == r->error.hint,
                  "failure changed in the round trip");
    MK_FUZZ_CHECK(!r->error.to_string().empty(), "empty wire error text");
  }
  MK_FUZZ_CHECK(rpc::encode_response(*back) == once, "encode_response not canonical:\n%s", once.c_str());
  return 0;
}
