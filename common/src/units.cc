// Byte-size parsing and formatting (see mk/units.h).
#include "mk/units.h"

#include <cctype>
#include <cstdio>

namespace mk {

namespace {
constexpr uint64_t kMaxSize = uint64_t{1} << 62;
}

Result<uint64_t> parse_size(std::string_view text) {
  std::string_view s = text;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  if (s.empty()) return MK_FAIL(EINVAL, "bad size", "empty size (expected e.g. 512M or 2G)");

  // Integer part, then an optional fraction of up to 9 digits.
  std::size_t i = 0;
  uint64_t whole = 0;
  bool any_digit = false;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    if (whole > kMaxSize) break;  // keep going would overflow; ERANGE below
    whole = whole * 10 + static_cast<uint64_t>(s[i] - '0');
    any_digit = true;
    ++i;
  }
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;  // overflowed
  uint64_t frac_num = 0, frac_den = 1;
  if (i < s.size() && s[i] == '.') {
    ++i;
    std::size_t digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (digits < 9) {
        frac_num = frac_num * 10 + static_cast<uint64_t>(s[i] - '0');
        frac_den *= 10;
      }
      ++digits;
      any_digit = true;
      ++i;
    }
  }
  if (!any_digit) {
    return MK_FAIL(EINVAL, "bad size", "'%.*s' does not start with a number (expected e.g. 512M)",
                   static_cast<int>(text.size()), text.data());
  }
  std::string_view suf = s.substr(i);
  while (!suf.empty() && std::isspace(static_cast<unsigned char>(suf.front()))) suf.remove_prefix(1);
  uint64_t mult = 1;
  if (!suf.empty()) {
    switch (std::toupper(static_cast<unsigned char>(suf.front()))) {
      case 'B': mult = 1; break;
      case 'K': mult = kKiB; break;
      case 'M': mult = kMiB; break;
      case 'G': mult = kGiB; break;
      case 'T': mult = kGiB * 1024; break;
      default:
        return MK_FAIL(EINVAL, "bad size", "'%.*s': unknown unit (use K, M, G or T, binary)",
                       static_cast<int>(text.size()), text.data());
    }
    std::string_view after = suf.substr(1);
    if (mult != 1) {
      if (!after.empty() && (after.front() == 'i' || after.front() == 'I')) after.remove_prefix(1);
      if (!after.empty() && (after.front() == 'B' || after.front() == 'b')) after.remove_prefix(1);
    }
    if (!after.empty()) {
      return MK_FAIL(EINVAL, "bad size", "'%.*s': unexpected text after the unit",
                     static_cast<int>(text.size()), text.data());
    }
  }
  if (whole > kMaxSize / mult) {
    return MK_FAIL(ERANGE, "size too large", "'%.*s' is above the 4 EiB limit",
                   static_cast<int>(text.size()), text.data());
  }
  uint64_t bytes = whole * mult;
  if (frac_num) {
    if (mult == 1) {
      return MK_FAIL(EINVAL, "bad size", "'%.*s': a fraction of a byte", static_cast<int>(text.size()),
                     text.data());
    }
    // mult / frac_den must divide exactly for a whole number of bytes.
    unsigned __int128 part = static_cast<unsigned __int128>(frac_num) * mult;
    if (part % frac_den) {
      return MK_FAIL(EINVAL, "bad size", "'%.*s' is not a whole number of bytes",
                     static_cast<int>(text.size()), text.data());
    }
    bytes += static_cast<uint64_t>(part / frac_den);
    if (bytes > kMaxSize) {
      return MK_FAIL(ERANGE, "size too large", "'%.*s' is above the 4 EiB limit",
                     static_cast<int>(text.size()), text.data());
    }
  }
  return bytes;
}

std::string format_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  uint64_t div = 1;
  while (u < 5 && bytes >= div * 1024) {
    div *= 1024;
    ++u;
  }
  char buf[48];
  if (bytes % div == 0) {
    std::snprintf(buf, sizeof buf, "%llu %s", static_cast<unsigned long long>(bytes / div), kUnits[u]);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f %s", static_cast<double>(bytes) / static_cast<double>(div),
                  kUnits[u]);
  }
  return buf;
}

}  // namespace mk
