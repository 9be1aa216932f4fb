// Fuzzes mk::tools::rpc::parse_response and parse_progress — what mkctl reads
// back from mkerneld's socket (tools/common/rpc_protocol.cc). mkctl treats
// a daemon as another process that may be an old version, killed mid-write
// or not mkerneld at all. Invariants: a refusal is EMSGSIZE (over the size
// limit) or EBADMSG with a message; an accepted response re-encodes
// (encode_response) to a line that parses back to the same response; a
// progress frame re-encodes (encode_progress) to a frame that parses back to
// the same object (doubles within a few ulps: see same()).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "rpc_protocol.h"

namespace rpc = mk::tools::rpc;
namespace json = boost::json;

namespace {

// Equal JSON, doubles within a few ulps: Boost.JSON 1.81's parser is not
// correctly rounded (number_precision::precise came in 1.83), so a long
// number read, written shortest-form and read again may move by an ulp.
bool same(const json::value& a, const json::value& b) {
  if (a.is_double() && b.is_double()) {
    const double x = a.get_double(), y = b.get_double();
    return x == y || std::fabs(x - y) <= 1e-15 * std::max(std::fabs(x), std::fabs(y));
  }
  if (a.kind() != b.kind()) return false;
  if (a.is_array()) {
    const auto &p = a.get_array(), &q = b.get_array();
    if (p.size() != q.size()) return false;
    for (std::size_t i = 0; i < p.size(); ++i)
      if (!same(p[i], q[i])) return false;
    return true;
  }
  if (a.is_object()) {
    const auto &p = a.get_object(), &q = b.get_object();
    if (p.size() != q.size()) return false;
    for (const auto& kv : p) {
      const json::value* w = q.if_contains(kv.key());
      if (!w || !same(kv.value(), *w)) return false;
    }
    return true;
  }
  return a == b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  if (auto p = rpc::parse_progress(line)) {
    const std::string enc = rpc::encode_progress(*p);
    auto again = rpc::parse_progress(enc);
    MK_FUZZ_CHECK(again.has_value(), "re-encoded progress frame not a frame:\n%s", enc.c_str());
    MK_FUZZ_CHECK(same(*again, *p), "progress frame did not round-trip");
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
    MK_FUZZ_CHECK(same(back->result, r->result) && back->text == r->text, "success changed in the round trip");
  } else {
    MK_FUZZ_CHECK(back->error.errnum == r->error.errnum && back->error.error == r->error.error &&
                      back->error.message == r->error.message && back->error.hint == r->error.hint,
                  "failure changed in the round trip");
    (void)r->error.to_string();  // may be "" for an empty error class and message: mkctl still fails (exit 1)
  }
  return 0;
}
