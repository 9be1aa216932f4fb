// DOC: mk::handover::KhoBlob — the handover blob of a live update, and its
// FDT codec.
//
// What this is: everything the outgoing image hands to the incoming one
// (DESIGN.md §5), as an FDT shaped like Linux KHO's: a root with
// `compatible = "kho-v1"`, a preserved-memory map (which page-aligned byte
// ranges of which instance memory region must survive) and one subtree per
// subsystem ("files", "memory", "tenants", application state...), each with
// its own versioned compatible ("mkernel,files-v1"). Property values are raw
// bytes, as in any FDT; their type (u32, u64, string, bytes) is given by the
// subsystem's compatible, and KhoProperty has typed constructors and getters.
// The byte layout is specified in docs/handover.md; any change to it bumps
// "kho-v1", any change inside a subtree bumps that subtree's version.
//
// The blob is untrusted input for the incoming image: parse_kho_blob() checks
// the FDT structure (fdt_check_full), the size cap, the root schema, every
// name, compatible, count and nesting depth, and the memory map; it never
// crashes on any input. find_compatible() is the incoming side's version
// check: a subtree newer than the reader supports is refused, which makes
// the update roll back instead of misreading state.
//
// Happy path:
//   1. The outgoing image's handlers fill a KhoBlob (preserve phase).
//   2. emit_kho_blob() validates it (validate_kho_blob) and writes the FDT.
//   3. The host passes the bytes to the incoming image with the boot tree.
//   4. The incoming image calls parse_kho_blob() and gets an equal KhoBlob,
//      then find_compatible() for each subsystem it knows how to restore.
// Unhappy paths:
//   1. A handler builds an invalid blob (bad name, overlapping ranges...):
//      emit fails with EINVAL, the update is cancelled before the freeze.
//   2. The blob would exceed kMaxBlobBytes: emit fails with E2BIG.
//   3. The incoming image gets a corrupt, truncated, foreign or hostile blob:
//      parse fails (EBADMSG, E2BIG, EPROTONOSUPPORT, EINVAL with a detail
//      naming the node and property); the image refuses and the update rolls
//      back.
//   4. A subtree is from a newer (or another) schema: find_compatible fails
//      with EPROTONOSUPPORT; the image refuses and the update rolls back.
//
// Returns:
//   validate_kho_blob: EINVAL (detail names the subsystem/node/property).
//   emit_kho_blob:     EINVAL (validation), E2BIG (above kMaxBlobBytes).
//   parse_kho_blob:    E2BIG (blob above kMaxBlobBytes), EBADMSG (not a
//                      well-formed FDT: bad magic, truncated, corrupt
//                      structure, size != FDT total size), EPROTONOSUPPORT
//                      (FDT format version, or root compatible not "kho-v1"),
//                      EINVAL (schema violation: unknown root property,
//                      memory map, names, compatibles, duplicates, caps).
//   find_compatible:   ENOENT (no such subsystem), EPROTONOSUPPORT
//                      (compatible has another prefix, or version above
//                      max_version), EINVAL (bad prefix or max_version 0).
//   KhoProperty::as_*: EINVAL (wrong size / not one NUL-terminated string).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mk/result.h"

namespace mk::handover {

inline constexpr const char* kKhoCompatible = "kho-v1";
inline constexpr const char* kMemoryMapProperty = "preserved-memory-map";

// Caps of the reader (and of the writer, so that emit never writes what
// parse would refuse).
inline constexpr std::size_t kMaxBlobBytes = std::size_t{16} << 20;
inline constexpr std::size_t kMaxSubsystems = 64;
inline constexpr std::size_t kMaxProperties = 128;  // per node
inline constexpr std::size_t kMaxChildren = 1024;   // per node
inline constexpr std::size_t kMaxDepth = 8;         // subsystem node = depth 1
inline constexpr std::size_t kMaxRanges = 65536;
inline constexpr uint64_t kPageSize = 4096;
// One memory map record: region (u32), reserved (u32, 0), offset (u64),
// length (u64), big-endian.
inline constexpr std::size_t kRangeRecordBytes = 24;

// A byte range of an instance memory region to keep across the update.
// offset and length are multiples of kPageSize, length > 0, no overflow.
// In a blob the ranges are sorted by (region, offset) and do not overlap.
struct PreservedRange {
  uint32_t region = 0;  // the region's index (BootMemory::index)
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const PreservedRange&) const = default;
};

// A property: a name (1..31 chars of [A-Za-z0-9,._+?#-], not "compatible",
// "name" or "phandle") and raw bytes (big-endian for numbers).
struct KhoProperty {
  std::string name;
  std::vector<uint8_t> value;

  static KhoProperty u32(std::string name, uint32_t v);
  static KhoProperty u64(std::string name, uint64_t v);
  static KhoProperty string(std::string name, std::string_view v);  // stored with a NUL
  static KhoProperty bytes(std::string name, std::span<const uint8_t> v);

  Result<uint32_t> as_u32() const;
  Result<uint64_t> as_u64() const;
  Result<std::string> as_string() const;

  bool operator==(const KhoProperty&) const = default;
};

// A node below a subsystem: a name (1..63 chars of [A-Za-z0-9,._+-], an
// optional "@unit" of [A-Za-z0-9,._+-]), unique among its siblings.
struct KhoNode {
  std::string name;
  std::vector<KhoProperty> properties;  // unique names, at most kMaxProperties
  std::vector<KhoNode> children;        // at most kMaxChildren
  bool operator==(const KhoNode&) const = default;
};

// One subsystem's subtree, a child of the root.
struct Subsystem {
  std::string name;        // node-name rules, unique among subsystems
  std::string compatible;  // "<vendor>,<schema>-v<N>", N in 1..999999
  std::vector<KhoProperty> properties;
  std::vector<KhoNode> children;
  bool operator==(const Subsystem&) const = default;
};

struct KhoBlob {
  std::vector<PreservedRange> memory;  // sorted, non-overlapping
  std::vector<Subsystem> subsystems;   // at most kMaxSubsystems
  bool operator==(const KhoBlob&) const = default;
};

// Finds a subsystem by name (or nullptr).
const Subsystem* find_subsystem(const KhoBlob& blob, std::string_view name) noexcept;

// The version N of a "<vendor>,<schema>-v<N>" compatible, or 0 when the
// string is not of that shape.
uint32_t compatible_version(std::string_view compatible) noexcept;

// Checks every rule above on an in-memory blob. Returns: EINVAL.
Result<void> validate_kho_blob(const KhoBlob& blob);

// Validates and serializes. Returns: EINVAL, E2BIG.
Result<std::vector<uint8_t>> emit_kho_blob(const KhoBlob& blob);

// Parses an untrusted blob (exactly the FDT, no trailing bytes).
// Returns: E2BIG, EBADMSG, EPROTONOSUPPORT, EINVAL.
Result<KhoBlob> parse_kho_blob(std::span<const uint8_t> bytes);

// The incoming side's compatibility check: the subsystem `name`, whose
// compatible must be `compatible_prefix` (e.g. "mkernel,files-v") followed
// by a version in 1..max_version. The pointer is into `blob`.
// Returns: ENOENT, EPROTONOSUPPORT, EINVAL.
Result<const Subsystem*> find_compatible(const KhoBlob& blob, std::string_view name,
                                         std::string_view compatible_prefix, uint32_t max_version);

}  // namespace mk::handover
