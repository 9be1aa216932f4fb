// DOC: fdt_io — mkcommon's RAII wrappers over libfdt (fdt_io.cc is the only
// file of mkcommon that includes <libfdt.h>; libfdt stays a private
// dependency). Shared by every FDT codec of the project: the boot tree, the
// pool tree (common/) and the KHO blob (handover/); not for images.
//
// What this is: a sequential writer over fdt_sw (growing its buffer up to a
// cap) and a reader over fdt_ro that first copies an untrusted blob into an
// 8-byte-aligned private buffer and validates it once with fdt_check_full
// (libfdt's FDT_RO_PROBE idea: probe once, then walk safely). Node and
// property accessors return mk::Result with a detail that names the node
// path and the property, e.g. "/cpus/cpu@3: 'numa-node-id' is 2 bytes,
// expected 4". Used by boot_tree.cc, pool_tree.cc and handover's kho_blob.cc.
//
// libfdt error translation (to_errno), done here and nowhere else:
//   FDT_ERR_NOTFOUND -> ENOENT        FDT_ERR_EXISTS -> EEXIST
//   FDT_ERR_NOSPACE -> ENOSPC         FDT_ERR_BADVERSION -> EPROTONOSUPPORT
//   FDT_ERR_TRUNCATED, BADMAGIC, BADSTRUCTURE, BADLAYOUT, BADVALUE,
//     BADNCELLS, BADPHANDLE, NOPHANDLES, BADOVERLAY -> EBADMSG (corrupt input)
//   FDT_ERR_BADOFFSET, BADPATH, BADSTATE, BADFLAGS, ALIGNMENT -> EINVAL
//     (misuse by the caller)
//   FDT_ERR_INTERNAL and anything unknown -> EIO
//
// Reader lifecycle:
//   1. Tree::open(blob, cap, what) — cap check (E2BIG); header checks (magic,
//      FDT version 17 as fdt_sw writes it: EBADMSG / EPROTONOSUPPORT) before
//      libfdt walks anything; aligned copy; fdt_check_full; exact-size check
//      (EBADMSG); empty reserve map (EINVAL).
//   2. Node::read / read_leaf (tree, offset, path) gathers the properties,
//      read_children() the children, once each, rejecting duplicate names
//      and more than a bounded count (EINVAL).
//   3. Typed getters (u32, u64, s32, str, ...) check presence and size.
// Unhappy paths: every failure is an Error whose `what` is the literal given
// to Tree::open ("bad boot tree", "bad pool tree"); no partial state leaks.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mk/result.h"

namespace mk::fdt {

int to_errno(int fdt_err) noexcept;

// `s` with non-printable bytes escaped as \xNN, cut to `max` chars + "...".
std::string printable(std::string_view s, std::size_t max = 48);

// "name@<hex>" for a unit address, and the reverse: the value of a node
// name that is exactly `base@<canonical lowercase hex>`, else nullopt.
std::string unit_name(std::string_view base, uint32_t unit);
std::optional<uint32_t> parse_unit_name(std::string_view name, std::string_view base) noexcept;

class Writer {
 public:
  // A tree with its root node open. `what` (a literal) labels errors.
  static Result<Writer> create(std::size_t cap, const char* what);

  Result<void> begin_node(const char* name);
  Result<void> end_node();
  Result<void> prop_u32(const char* name, uint32_t v);
  Result<void> prop_s32(const char* name, int32_t v) { return prop_u32(name, static_cast<uint32_t>(v)); }
  Result<void> prop_u64(const char* name, uint64_t v);
  Result<void> prop_string(const char* name, std::string_view v);  // v has no NUL
  Result<void> prop_u32_array(const char* name, std::span<const uint32_t> v);
  Result<void> prop_string_list(const char* name, std::span<const std::string> v);
  // Raw bytes, stored as given (FDT values are untyped).
  Result<void> prop_bytes(const char* name, std::span<const uint8_t> v);

  // Closes the root and returns exactly fdt_totalsize() bytes.
  Result<std::vector<uint8_t>> finish();

 private:
  Writer(std::size_t cap, const char* what) : cap_(cap), what_(what) {}
  // Reserves a property of `len` bytes, growing the buffer as needed.
  Result<uint8_t*> placeholder(const char* name, std::size_t len);
  // Runs one fdt_sw call, growing the buffer and retrying on NOSPACE.
  template <class F>
  Result<void> run(const char* op, F&& call);
  void* fdt() { return buf_.data(); }

  std::vector<uint64_t> buf_;  // uint64_t: libfdt wants 8-byte alignment
  std::size_t cap_;
  const char* what_;
};

// Checks the root's compatible string and version property: EINVAL when
// missing or malformed, EPROTONOSUPPORT when they name another schema.
class Node;
Result<void> expect_schema(const Node& root, const char* compatible, uint32_t version);

class Tree {
 public:
  static Result<Tree> open(std::span<const uint8_t> blob, std::size_t cap, const char* what);
  const void* fdt() const { return buf_.data(); }
  const char* what() const { return what_; }

 private:
  Tree(const char* what) : what_(what) {}
  std::vector<uint64_t> buf_;
  const char* what_;
};

struct Prop {
  std::string_view name;
  std::span<const uint8_t> data;
};

struct Child {
  std::string_view name;
  int offset;
};

class Node {
 public:
  // Gathers the properties (at most max_props) of the node at `offset`;
  // duplicate property names are errors. `tree` must outlive the Node.
  static Result<Node> read(const Tree& tree, int offset, std::string path, std::size_t max_props);
  // read() of a node that must have no children.
  static Result<Node> read_leaf(const Tree& tree, int offset, std::string path, std::size_t max_props);
  // Gathers the children (at most max_children); duplicate names are errors.
  // Separate from read() so a root can check its schema first.
  Result<void> read_children(std::size_t max_children);

  const std::string& path() const { return path_; }
  const std::vector<Prop>& props() const { return props_; }
  const std::vector<Child>& children() const { return children_; }
  std::string child_path(std::string_view child) const;

  // Fails on any property not in `allowed`.
  Result<void> expect_only(std::initializer_list<std::string_view> allowed) const;
  const Prop* find(std::string_view name) const;

  // Required getters fail with EINVAL when missing or wrongly sized.
  Result<uint32_t> u32(std::string_view name) const;
  Result<int32_t> s32(std::string_view name) const;
  Result<uint64_t> u64(std::string_view name) const;
  Result<std::string> str(std::string_view name) const;
  // Optional: nullopt when absent, EINVAL when present but malformed.
  Result<std::optional<std::string>> opt_str(std::string_view name) const;
  // Decoders shared by the getters, for properties found by iteration.
  Result<std::string> decode_str(const Prop& p) const;
  Result<std::vector<uint32_t>> u32_array(std::string_view name, std::size_t max) const;
  Result<std::vector<std::string>> string_list(std::string_view name, std::size_t max) const;

  // An Error labelled with the tree's `what` and this node's path; bad()
  // is error(EINVAL, ...).
  Error error(int code, const char* fmt, ...) const __attribute__((format(printf, 3, 4)));
  Error bad(const char* fmt, ...) const __attribute__((format(printf, 2, 3)));

 private:
  Node(const Tree& tree, int offset, std::string path)
      : tree_(&tree), offset_(offset), what_(tree.what()), path_(std::move(path)) {}
  Result<const Prop*> require(std::string_view name, std::size_t size) const;
  Error verror(int code, const char* fmt, va_list ap) const;

  const Tree* tree_;
  int offset_;
  const char* what_;
  std::string path_;
  std::vector<Prop> props_;
  std::vector<Child> children_;
};

}  // namespace mk::fdt
