// DOC: IPI message types — the numbering every endpoint agrees on.
//
// What this is: a message type is a 16-bit number in one of four ranges that
// mirror the multikernel kernel framework: system (0x1000: ready, shutdown,
// update phases, ping), resource (0x2000: CPU/memory/device moves), IO
// (0x3000: console, block, net forwarding) and user (0x4000: tenants and
// experiments). Each range holds 0x1000 types. Types outside the four ranges
// are invalid on the wire: senders refuse them (EINVAL) and receivers count
// and drop them.
//
// Place in the IPI flow: Endpoint::on() registers a handler per type; the
// ring consumer validates the type of every slot it reads (is_valid_type).
//
// Happy path:
//   1. Pick a type: `constexpr auto kMyThing = type_in(TypeRange::kUser, 7);`
//   2. Register: `ep.on(kMyThing, handler)`; send: `ep.send(peer, kMyThing, x)`.
// Unhappy paths:
//   1. type_in() with an index >= kTypeRangeSize is a compile-time error in a
//      constant expression (and clamps to invalid 0 at run time).
//   2. A received out-of-range type is counted in RingStats::bad_type.
#pragma once

#include <cstdint>

namespace mk::ipi {

enum class TypeRange : std::uint16_t {
  kSystem = 0x1000,
  kResource = 0x2000,
  kIo = 0x3000,
  kUser = 0x4000,
};

inline constexpr std::uint16_t kTypeRangeSize = 0x1000;
inline constexpr std::uint16_t kFirstValidType = 0x1000;
inline constexpr std::uint16_t kLastValidType = 0x4fff;

constexpr bool is_valid_type(std::uint16_t t) {
  return t >= kFirstValidType && t <= kLastValidType;
}

constexpr std::uint16_t type_in(TypeRange r, std::uint16_t index) {
  if (index >= kTypeRangeSize) return 0;  // invalid on purpose
  return static_cast<std::uint16_t>(static_cast<std::uint16_t>(r) + index);
}

constexpr TypeRange range_of(std::uint16_t t) {
  return static_cast<TypeRange>(t & 0xf000);
}

constexpr const char* to_string(TypeRange r) {
  switch (r) {
    case TypeRange::kSystem: return "system";
    case TypeRange::kResource: return "resource";
    case TypeRange::kIo: return "io";
    case TypeRange::kUser: return "user";
  }
  return "invalid";
}

// System types the library itself understands.
namespace sys {
inline constexpr std::uint16_t kPing = type_in(TypeRange::kSystem, 1);      // request, echoed
inline constexpr std::uint16_t kReady = type_in(TypeRange::kSystem, 2);     // image -> host
inline constexpr std::uint16_t kShutdown = type_in(TypeRange::kSystem, 3);  // host -> image
inline constexpr std::uint16_t kUpdatePhase = type_in(TypeRange::kSystem, 4);
}  // namespace sys

static_assert(is_valid_type(sys::kPing) && !is_valid_type(0x0fff) && !is_valid_type(0x5000));
static_assert(range_of(type_in(TypeRange::kIo, 5)) == TypeRange::kIo);

}  // namespace mk::ipi
