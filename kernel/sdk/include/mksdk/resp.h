// DOC: mk::sdk::resp — RESP2 (the Redis protocol) request parser and reply
// serializer, for the KV service of mk-kernel (issue #5) and any image that
// wants to speak to redis-cli / redis-benchmark.
//
// What this is: an incremental parser over a byte buffer that may hold a
// partial request or several pipelined ones, and append-style serializers.
// Both sides are pure functions (no I/O, no state between calls): the caller
// keeps the unconsumed bytes and calls parse_request again when more arrive.
//
// Requests accepted (what redis-cli, redis-benchmark and clients send):
//   - multibulk: "*N\r\n" then N times "$LEN\r\nBYTES\r\n". "*0" and "*-1"
//     are an empty request (consumed, no command; Redis does the same).
//   - inline: one line "SET k v\n" (a "\r" before the "\n" is dropped),
//     split on blanks (space, tab). No quoting. An empty line is an empty
//     request. Anything not starting with '*' is inline.
// Limits (each is a protocol error, the connection is to be closed):
//   kMaxArgs      1024 arguments per request;
//   kMaxBulk      64 MiB per argument (Redis: 512 MiB; ours lives in an
//                 instance region, a bigger value would not fit anyway);
//   kMaxRequest   128 MiB of declared argument bytes per request;
//   kMaxInline    64 KiB per inline line (Redis: the same);
//   kMaxHeader    32 bytes per "*N" / "$LEN" line (digits only, an optional
//                 '-' for the count; "+5", " 5", "5x" are errors).
//
// Happy path:
//   1. std::vector<std::string> args;
//      auto r = parse_request(buf, &args);      // Result<size_t>
//   2. *r == 0: incomplete, keep the bytes, read more;
//      *r  > 0: *r bytes consumed; args is the command (empty: skip it);
//   3. reply with append_simple/append_bulk/... into the output buffer.
// Unhappy paths:
//   1. Malformed input or a limit crossed: EPROTO with a detail suitable
//      for the client ("-ERR Protocol error: <detail>"), args unspecified.
//      Nothing in a buffer can make the parser crash, allocate more than
//      the limits allow, or read outside `buf` (fuzzed: fuzz_resp).
//
// Serializers never fail: simple strings and errors get CR/LF replaced by
// blanks (RESP cannot carry them there).
//
// Thread safety: stateless; safe from any thread.
//
// Returns:
//   parse_request: EPROTO.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mk/result.h"

namespace mk::sdk::resp {

inline constexpr std::size_t kMaxArgs = 1024;
inline constexpr std::size_t kMaxBulk = 64ull << 20;
inline constexpr std::size_t kMaxRequest = 128ull << 20;
inline constexpr std::size_t kMaxInline = 64ull << 10;
inline constexpr std::size_t kMaxHeader = 32;

// Parses one request from the front of `buf` into `args` (cleared first).
// Returns the bytes consumed, 0 when `buf` holds only part of a request.
Result<std::size_t> parse_request(std::string_view buf, std::vector<std::string>* args);

// Reply serializers: append one RESP2 value to `out`.
void append_simple(std::string* out, std::string_view s);   // +s
void append_error(std::string* out, std::string_view s);    // -s (s = "ERR ...", "OOM ...")
void append_integer(std::string* out, std::int64_t v);      // :v
void append_bulk(std::string* out, std::string_view s);     // $len s
void append_nil(std::string* out);                          // $-1
void append_array_header(std::string* out, std::size_t n); // *n, then n values
void append_nil_array(std::string* out);                    // *-1

// A request as clients send it: an array of bulk strings.
std::string encode_command(std::span<const std::string> args);
std::string encode_command(std::initializer_list<std::string_view> args);

}  // namespace mk::sdk::resp
