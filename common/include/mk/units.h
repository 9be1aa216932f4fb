// DOC: byte sizes as users write them ("64M", "2G", "1.5GiB", "4096").
//
// Used by every CLI verb that takes --memory and by the state file. The
// parser is untrusted-input safe: it bounds the result to 2^62 bytes and
// rejects anything it does not fully consume.
//
// Suffixes are binary (K = KiB = 1024, M, G, T; an optional "i" and "B" are
// accepted, so "2G", "2GB" and "2GiB" are all 2 * 2^30). A bare number is
// bytes. Fractions are allowed with a suffix ("1.5G") and must come out to a
// whole number of bytes.
//
// Returns (parse_size): EINVAL for malformed text, ERANGE above 2^62.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "mk/result.h"

namespace mk {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = kKiB * 1024;
inline constexpr uint64_t kGiB = kMiB * 1024;

Result<uint64_t> parse_size(std::string_view text);

// "64 MiB", "1.5 GiB", "4096 B": short human form for messages.
std::string format_size(uint64_t bytes);

}  // namespace mk
