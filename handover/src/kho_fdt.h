// DOC: kho_fdt — mkhandover's private seam over libfdt (kho_fdt.cc is the
// only file of handover/ that includes <libfdt.h>, STYLE.md §2.11).
//
// What this is: a sequential writer over fdt_sw that grows its buffer up to a
// cap, and a reader that copies an untrusted blob into an 8-byte-aligned
// private buffer, probes its header, validates it once with fdt_check_full
// and then hands out node names, raw properties and child offsets. The KHO
// schema (kho_blob.cc) sits on top; nothing here knows about it.
//
// libfdt error translation, done here and nowhere else in handover/:
//   NOTFOUND -> ENOENT, NOSPACE -> ENOSPC, BADVERSION -> EPROTONOSUPPORT,
//   TRUNCATED/BADMAGIC/BADSTRUCTURE/BADLAYOUT/BADVALUE/... -> EBADMSG,
//   BADOFFSET/BADPATH/BADSTATE/BADFLAGS/ALIGNMENT -> EINVAL, anything else EIO.
//
// Returns:
//   KhoWriter::*: ENOSPC/E2BIG (tree above the cap), EINVAL (libfdt misuse).
//   KhoReader::open: E2BIG (blob above the cap), EBADMSG (not an FDT, corrupt,
//     size mismatch), EPROTONOSUPPORT (FDT format version other than 17/16),
//     EINVAL (memory reservation entries present).
//   KhoReader::props/children: EBADMSG (unreadable entry), EINVAL (count cap).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "mk/result.h"

namespace mk::handover::fdt {

int to_errno(int fdt_err) noexcept;

class KhoWriter {
 public:
  // A tree with its root node open; errors carry `what` (a literal).
  static Result<KhoWriter> create(std::size_t cap, const char* what);

  Result<void> begin_node(const char* name);
  Result<void> end_node();
  // Raw property: the bytes are stored as given (FDT values are untyped).
  Result<void> prop(const char* name, std::span<const uint8_t> value);
  // Closes the root and returns exactly fdt_totalsize() bytes.
  Result<std::vector<uint8_t>> finish();

 private:
  KhoWriter(std::size_t cap, const char* what) : cap_(cap), what_(what) {}
  template <class F>
  Result<void> run(const char* op, F&& call);
  void* fdt() { return buf_.data(); }

  std::vector<uint64_t> buf_;  // uint64_t: libfdt wants 8-byte alignment
  std::size_t cap_;
  const char* what_;
};

struct RawProp {
  std::string_view name;
  std::span<const uint8_t> value;
};

struct RawChild {
  std::string_view name;
  int offset;
};

class KhoReader {
 public:
  static Result<KhoReader> open(std::span<const uint8_t> blob, std::size_t cap, const char* what);

  // The properties of the node at `offset`, in blob order (at most max).
  Result<std::vector<RawProp>> props(int offset, std::size_t max) const;
  // The child nodes of the node at `offset`, in blob order (at most max).
  Result<std::vector<RawChild>> children(int offset, std::size_t max) const;

 private:
  explicit KhoReader(const char* what) : what_(what) {}
  const void* fdt() const { return buf_.data(); }
  std::vector<uint64_t> buf_;
  const char* what_;
};

}  // namespace mk::handover::fdt
