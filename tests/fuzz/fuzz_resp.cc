// Fuzzes mk::sdk::resp::parse_request (what mk-kernel's KV service reads
// from any TCP client). The input is consumed like the service does: parse
// at the front, advance by what was consumed, until incomplete or error.
// Invariants: no crash / UB / over-read (ASan); an error is EPROTO with a
// message; progress is > 0 and <= the remaining bytes; argument counts and
// sizes within the documented limits; an accepted command re-encoded with
// encode_command parses back to the same arguments, consuming exactly the
// encoding (also when split at every point: a prefix is never an error).
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "mksdk/resp.h"

namespace resp = mk::sdk::resp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> args, again;
  std::size_t off = 0;
  for (int rounds = 0; off < in.size() && rounds < 4096; ++rounds) {
    auto r = resp::parse_request(in.substr(off), &args);
    if (!r) {
      MK_FUZZ_CHECK(r.error().code() == EPROTO, "code %d", r.error().code());
      MK_FUZZ_CHECK(std::strlen(r.error().message()) > 0, "empty message");
      return 0;
    }
    if (*r == 0) break;
    MK_FUZZ_CHECK(*r <= in.size() - off, "consumed %zu of %zu", *r, in.size() - off);
    MK_FUZZ_CHECK(args.size() <= resp::kMaxArgs, "%zu args", args.size());
    std::size_t total = 0;
    for (const auto& a : args) {
      MK_FUZZ_CHECK(a.size() <= resp::kMaxBulk, "arg of %zu bytes", a.size());
      total += a.size();
    }
    MK_FUZZ_CHECK(total <= resp::kMaxRequest, "%zu request bytes", total);
    off += *r;
    if (args.empty()) continue;
    const std::string enc = resp::encode_command(args);
    auto back = resp::parse_request(enc, &again);
    MK_FUZZ_CHECK(back.has_value(), "re-encoding rejected: %s", back ? "" : back.error().message());
    MK_FUZZ_CHECK(*back == enc.size(), "re-encoding consumed %zu of %zu", *back, enc.size());
    MK_FUZZ_CHECK(again == args, "re-encoding differs");
    if (enc.size() <= 256) {
      for (std::size_t cut = 0; cut < enc.size(); ++cut) {
        auto part = resp::parse_request(std::string_view(enc).substr(0, cut), &again);
        MK_FUZZ_CHECK(part.has_value() && *part == 0, "prefix %zu of a valid request not incomplete", cut);
      }
    }
  }
  // Serializers never produce an unparseable reply framing (smoke only:
  // replies are not requests, but a bulk round-trips through the inline-free
  // array form above).
  std::string out;
  resp::append_error(&out, in.substr(0, std::min<std::size_t>(in.size(), 64)));
  MK_FUZZ_CHECK(out.find('\n') == out.size() - 1, "error reply carries a newline");
  return 0;
}
