// Fuzzes mk::tools::rpc::parse_request — what mkerneld reads from its control
// socket. Invariants: a refusal has one of the documented codes and a
// message; an accepted request re-encodes to a line that parses to the same
// action (encode is canonical after one round).
#include <cerrno>
#include <cstdint>
#include <string_view>

#include "fuzz_check.h"
#include "rpc_protocol.h"

namespace rpc = mk::tools::rpc;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  auto r = rpc::parse_request(line);
  if (!r) {
    const int c = r.error().code();
    MK_FUZZ_CHECK(c == EMSGSIZE || c == EBADMSG || c == EOPNOTSUPP || c == EINVAL, "code %d: %s", c,
                  r.error().to_string().c_str());
    MK_FUZZ_CHECK(!r.error().to_string().empty(), "empty error");
    return 0;
  }
  const std::string once = rpc::encode_request(*r);
  auto back = rpc::parse_request(once);
  MK_FUZZ_CHECK(back.has_value(), "re-encoded request does not parse: %s\n%s", back.error().to_string().c_str(),
                once.c_str());
  MK_FUZZ_CHECK(back->index() == r->index(), "round trip changed the action");
  MK_FUZZ_CHECK(rpc::encode_request(*back) == once, "encode is not canonical:\n%s", once.c_str());
  return 0;
}
