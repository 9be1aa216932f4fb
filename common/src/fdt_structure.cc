// Bounds-checked structure walk of an untrusted FDT (see fdt_structure.h).
#include "mk/fdt_structure.h"

namespace mk {

namespace {

// Token values of the devicetree specification (v0.4, 5.4.1).
constexpr uint32_t kBeginNode = 0x1, kEndNode = 0x2, kProp = 0x3, kNop = 0x4, kEnd = 0x9;
constexpr std::size_t kHeaderBytes = 40;  // v17 header

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

Error bad(const char* fmt, unsigned long a, unsigned long b = 0) {
  return MK_FAIL(EBADMSG, "malformed FDT", fmt, a, b);
}

}  // namespace

Result<void> check_fdt_structure(std::span<const uint8_t> blob) {
  if (blob.size() < kHeaderBytes) return bad("blob is %lu bytes, shorter than an FDT header (%lu)", blob.size(), kHeaderBytes);
  const uint8_t* h = blob.data();
  const uint64_t total = be32(h + 4), off_struct = be32(h + 8), off_strings = be32(h + 12);
  const uint64_t size_strings = be32(h + 32), size_struct = be32(h + 36);
  if (total > blob.size()) return bad("header totalsize %lu is above the blob's %lu bytes", total, blob.size());
  if (off_struct % 4 != 0) return bad("structure block at offset %lu is not 4-byte aligned", off_struct);
  if (off_struct < kHeaderBytes || off_struct + size_struct > total)
    return bad("structure block [%lu, +%lu) is outside the blob", off_struct, size_struct);
  if (off_strings < kHeaderBytes || off_strings + size_strings > total)
    return bad("strings block [%lu, +%lu) is outside the blob", off_strings, size_strings);
  const uint8_t* s = h + off_struct;
  uint64_t pos = 0;
  unsigned depth = 0;
  bool seen_root = false;
  while (true) {
    if (pos + 4 > size_struct) return bad("structure block ends at %lu without an END token", off_struct + pos);
    const uint64_t at = off_struct + pos;
    const uint32_t tag = be32(s + pos);
    pos += 4;
    switch (tag) {
      case kBeginNode: {
        if (seen_root && depth == 0) return bad("a second root node at offset %lu", at);
        uint64_t n = pos;
        while (n < size_struct && s[n] != 0) ++n;
        if (n >= size_struct) return bad("node name at offset %lu runs past the structure block", at);
        pos = (n + 1 + 3) & ~uint64_t{3};
        ++depth;  // no cap here: the walk is iterative; parsers cap their own depth
        seen_root = true;
        break;
      }
      case kEndNode:
        if (depth == 0) return bad("END_NODE without a node at offset %lu", at);
        --depth;
        break;
      case kProp: {
        if (depth == 0) return bad("property outside any node at offset %lu", at);
        if (pos + 8 > size_struct) return bad("property header at offset %lu runs past the structure block", at);
        const uint64_t len = be32(s + pos), nameoff = be32(s + pos + 4);
        pos += 8;
        if (len > size_struct - pos) return bad("property at offset %lu has length %lu past the structure block", at, len);
        if (nameoff >= size_strings) return bad("property at offset %lu names string %lu outside the strings block", at, nameoff);
        pos = (pos + len + 3) & ~uint64_t{3};
        break;
      }
      case kNop:
        break;
      case kEnd:
        if (!seen_root || depth != 0) return bad("END at offset %lu with %lu node(s) open", at, depth);
        return ok();
      default:
        return bad("unknown token 0x%lx at offset %lu", tag, at);
    }
  }
}

}  // namespace mk
