// resp: RESP2 request parser and reply serializers (see mksdk/resp.h).
#include "mksdk/resp.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace mk::sdk::resp {

namespace {

enum class Line { kIncomplete, kOk };

// Finds the "\r\n"-terminated header line that starts at `pos` (after the
// type byte). On kOk, *value is the number and *next the byte after "\n".
Result<Line> header_number(std::string_view buf, std::size_t pos, bool allow_negative, const char* what,
                           long long* value, std::size_t* next) {
  const std::size_t limit = std::min(buf.size(), pos + kMaxHeader + 2);
  const void* nl = std::memchr(buf.data() + pos, '\n', limit - pos);
  if (nl == nullptr) {
    if (buf.size() < pos + kMaxHeader + 2) return Line::kIncomplete;
    return MK_FAIL(EPROTO, "bad request", "too big %s string", what);
  }
  const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(nl) - buf.data());
  if (end == pos || buf[end - 1] != '\r') return MK_FAIL(EPROTO, "bad request", "invalid %s line", what);
  std::string_view digits = buf.substr(pos, end - 1 - pos);
  bool neg = false;
  if (!digits.empty() && digits[0] == '-' && allow_negative) {
    neg = true;
    digits.remove_prefix(1);
  }
  if (digits.empty() || digits.size() > 18) return MK_FAIL(EPROTO, "bad request", "invalid %s", what);
  long long v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return MK_FAIL(EPROTO, "bad request", "invalid %s", what);
    v = v * 10 + (c - '0');
  }
  *value = neg ? -v : v;
  *next = end + 1;
  return Line::kOk;
}

Result<std::size_t> parse_inline(std::string_view buf, std::vector<std::string>* args) {
  const std::size_t limit = std::min(buf.size(), kMaxInline);
  const void* nl = std::memchr(buf.data(), '\n', limit);
  if (nl == nullptr) {
    if (buf.size() < kMaxInline) return std::size_t{0};
    return MK_FAIL(EPROTO, "bad request", "too big inline request");
  }
  const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(nl) - buf.data());
  std::string_view line = buf.substr(0, end);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i == line.size()) break;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (args->size() == kMaxArgs) return MK_FAIL(EPROTO, "bad request", "too many arguments (max %zu)", kMaxArgs);
    args->emplace_back(line.substr(i, j - i));
    i = j;
  }
  return end + 1;
}

}  // namespace

Result<std::size_t> parse_request(std::string_view buf, std::vector<std::string>* args) {
  args->clear();
  if (buf.empty()) return std::size_t{0};
  if (buf[0] != '*') return parse_inline(buf, args);
  long long count = 0;
  std::size_t pos = 0;
  MK_TRY_ASSIGN(Line l, header_number(buf, 1, true, "multibulk count", &count, &pos));
  if (l == Line::kIncomplete) return std::size_t{0};
  if (count <= 0) return pos;  // "*0", "*-1": an empty request
  if (static_cast<unsigned long long>(count) > kMaxArgs) {
    return MK_FAIL(EPROTO, "bad request", "invalid multibulk length %lld (max %zu)", count, kMaxArgs);
  }
  // First pass: check the framing and the limits without copying, so an
  // incomplete request costs no allocation.
  std::size_t total = 0;
  std::size_t p = pos;
  for (long long i = 0; i < count; ++i) {
    if (p >= buf.size()) return std::size_t{0};
    if (buf[p] != '$') {
      const unsigned char c = static_cast<unsigned char>(buf[p]);
      if (c >= 0x20 && c < 0x7f) return MK_FAIL(EPROTO, "bad request", "expected '$', got '%c'", c);
      return MK_FAIL(EPROTO, "bad request", "expected '$', got byte 0x%02x", c);
    }
    long long len = 0;
    std::size_t data = 0;
    MK_TRY_ASSIGN(Line bl, header_number(buf, p + 1, false, "bulk length", &len, &data));
    if (bl == Line::kIncomplete) return std::size_t{0};
    if (static_cast<unsigned long long>(len) > kMaxBulk) {
      return MK_FAIL(EPROTO, "bad request", "invalid bulk length %lld (max %zu)", len, kMaxBulk);
    }
    total += static_cast<std::size_t>(len);
    if (total > kMaxRequest) {
      return MK_FAIL(EPROTO, "bad request", "request larger than %zu bytes", kMaxRequest);
    }
    const std::size_t ulen = static_cast<std::size_t>(len);
    if (buf.size() - data < ulen + 2) return std::size_t{0};
    if (buf[data + ulen] != '\r' || buf[data + ulen + 1] != '\n') {
      return MK_FAIL(EPROTO, "bad request", "bulk string of %zu bytes not followed by CRLF", ulen);
    }
    p = data + ulen + 2;
  }
  // Second pass: complete and valid, copy the arguments out.
  args->reserve(static_cast<std::size_t>(count));
  p = pos;
  for (long long i = 0; i < count; ++i) {
    const void* nl = std::memchr(buf.data() + p, '\n', buf.size() - p);
    const std::size_t data = static_cast<std::size_t>(static_cast<const char*>(nl) - buf.data()) + 1;
    std::size_t len = 0;
    for (std::size_t k = p + 1; buf[k] != '\r'; ++k) len = len * 10 + static_cast<std::size_t>(buf[k] - '0');
    args->emplace_back(buf.substr(data, len));
    p = data + len + 2;
  }
  return p;
}

namespace {
void append_line_safe(std::string* out, char type, std::string_view s) {
  out->push_back(type);
  const std::size_t at = out->size();
  out->append(s);
  for (std::size_t i = at; i < out->size(); ++i) {
    if ((*out)[i] == '\r' || (*out)[i] == '\n') (*out)[i] = ' ';
  }
  out->append("\r\n");
}
void append_number(std::string* out, char type, long long v) {
  char tmp[32];
  int n = std::snprintf(tmp, sizeof tmp, "%c%lld\r\n", type, v);
  out->append(tmp, static_cast<std::size_t>(n));
}
}  // namespace

void append_simple(std::string* out, std::string_view s) { append_line_safe(out, '+', s); }
void append_error(std::string* out, std::string_view s) { append_line_safe(out, '-', s); }
void append_integer(std::string* out, std::int64_t v) { append_number(out, ':', v); }
void append_bulk(std::string* out, std::string_view s) {
  append_number(out, '$', static_cast<long long>(s.size()));
  out->append(s);
  out->append("\r\n");
}
void append_nil(std::string* out) { out->append("$-1\r\n"); }
void append_array_header(std::string* out, std::size_t n) { append_number(out, '*', static_cast<long long>(n)); }
void append_nil_array(std::string* out) { out->append("*-1\r\n"); }

std::string encode_command(std::span<const std::string> args) {
  std::string out;
  append_array_header(&out, args.size());
  for (const auto& a : args) append_bulk(&out, a);
  return out;
}

std::string encode_command(std::initializer_list<std::string_view> args) {
  std::string out;
  append_array_header(&out, args.size());
  for (auto a : args) append_bulk(&out, a);
  return out;
}

}  // namespace mk::sdk::resp
