// fdt_io: libfdt writer/reader wrappers and FDT_ERR_* -> errno (see fdt_io.h).
#include "mk/fdt_io.h"

#include "mk/fdt_structure.h"

#include <libfdt.h>

#include <algorithm>
#include <cstdarg>
#include <cstring>

namespace mk::fdt {

int to_errno(int fdt_err) noexcept {
  switch (fdt_err < 0 ? -fdt_err : fdt_err) {
    case FDT_ERR_NOTFOUND: return ENOENT;
    case FDT_ERR_EXISTS: return EEXIST;
    case FDT_ERR_NOSPACE: return ENOSPC;
    case FDT_ERR_BADVERSION: return EPROTONOSUPPORT;
    case FDT_ERR_TRUNCATED:
    case FDT_ERR_BADMAGIC:
    case FDT_ERR_BADSTRUCTURE:
    case FDT_ERR_BADLAYOUT:
    case FDT_ERR_BADVALUE:
    case FDT_ERR_BADNCELLS:
    case FDT_ERR_BADPHANDLE:
    case FDT_ERR_NOPHANDLES:
    case FDT_ERR_BADOVERLAY: return EBADMSG;
    case FDT_ERR_BADOFFSET:
    case FDT_ERR_BADPATH:
    case FDT_ERR_BADSTATE:
    case FDT_ERR_BADFLAGS:
    case FDT_ERR_ALIGNMENT: return EINVAL;
    default: return EIO;  // FDT_ERR_INTERNAL and codes newer than this table
  }
}

std::string printable(std::string_view s, std::size_t max) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    }
  }
  return out;
}

std::string unit_name(std::string_view base, uint32_t unit) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "@%x", unit);
  return std::string(base) + hex;
}

std::optional<uint32_t> parse_unit_name(std::string_view name, std::string_view base) noexcept {
  if (name.size() <= base.size() + 1 || name.substr(0, base.size()) != base || name[base.size()] != '@')
    return std::nullopt;
  std::string_view hex = name.substr(base.size() + 1);
  if (hex.size() > 8 || (hex.size() > 1 && hex[0] == '0')) return std::nullopt;  // canonical only
  uint32_t v = 0;
  for (char c : hex) {
    uint32_t d;
    if (c >= '0' && c <= '9') d = static_cast<uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<uint32_t>(c - 'a' + 10);
    else return std::nullopt;
    v = v * 16 + d;
  }
  return v;
}

// ---- Writer ----------------------------------------------------------------

namespace {
constexpr std::size_t kInitialBytes = 4096;
}

template <class F>
Result<void> Writer::run(const char* op, F&& call) {
  while (true) {
    int err = call();
    if (err >= 0) return ok();
    if (err != -FDT_ERR_NOSPACE) {
      return MK_FAIL(to_errno(err), what_, "fdt %s failed: %s", op, fdt_strerror(err));
    }
    std::size_t have = buf_.size() * sizeof(uint64_t);
    if (have >= cap_) {
      return MK_FAIL(E2BIG, what_, "tree does not fit in the %zu-byte limit", cap_);
    }
    std::size_t want = std::min(have * 2, cap_);
    std::vector<uint64_t> bigger(want / sizeof(uint64_t));
    int rerr = fdt_resize(buf_.data(), bigger.data(), static_cast<int>(want));
    if (rerr < 0) return MK_FAIL(to_errno(rerr), what_, "fdt resize failed: %s", fdt_strerror(rerr));
    buf_.swap(bigger);
  }
}

Result<Writer> Writer::create(std::size_t cap, const char* what) {
  Writer w(cap, what);
  w.buf_.resize(std::min(kInitialBytes, cap) / sizeof(uint64_t));
  int err = fdt_create(w.fdt(), static_cast<int>(w.buf_.size() * sizeof(uint64_t)));
  if (err < 0) return MK_FAIL(to_errno(err), what, "fdt create failed: %s", fdt_strerror(err));
  MK_TRY(w.run("reserve map", [&] { return fdt_finish_reservemap(w.fdt()); }));
  MK_TRY(w.begin_node(""));
  return w;
}

Result<void> Writer::begin_node(const char* name) {
  return run("begin node", [&] { return fdt_begin_node(fdt(), name); });
}

Result<void> Writer::end_node() {
  return run("end node", [&] { return fdt_end_node(fdt()); });
}

Result<uint8_t*> Writer::placeholder(const char* name, std::size_t len) {
  if (len > cap_) return MK_FAIL(E2BIG, what_, "property '%s' is %zu bytes", name, len);
  void* val = nullptr;
  MK_TRY(run("property", [&] {
    return fdt_property_placeholder(fdt(), name, static_cast<int>(len), &val);
  }));
  return static_cast<uint8_t*>(val);
}

Result<void> Writer::prop_u32(const char* name, uint32_t v) {
  MK_TRY_ASSIGN(uint8_t * p, placeholder(name, 4));
  fdt32_t be = cpu_to_fdt32(v);
  std::memcpy(p, &be, 4);
  return ok();
}

Result<void> Writer::prop_u64(const char* name, uint64_t v) {
  MK_TRY_ASSIGN(uint8_t * p, placeholder(name, 8));
  fdt64_t be = cpu_to_fdt64(v);
  std::memcpy(p, &be, 8);
  return ok();
}

Result<void> Writer::prop_string(const char* name, std::string_view v) {
  MK_TRY_ASSIGN(uint8_t * p, placeholder(name, v.size() + 1));
  std::memcpy(p, v.data(), v.size());
  p[v.size()] = 0;
  return ok();
}

Result<void> Writer::prop_u32_array(const char* name, std::span<const uint32_t> v) {
  MK_TRY_ASSIGN(uint8_t * p, placeholder(name, v.size() * 4));
  for (std::size_t i = 0; i < v.size(); ++i) {
    fdt32_t be = cpu_to_fdt32(v[i]);
    std::memcpy(p + 4 * i, &be, 4);
  }
  return ok();
}

Result<void> Writer::prop_bytes(const char* name, std::span<const uint8_t> v) {
  MK_TRY_ASSIGN(uint8_t * p, placeholder(name, v.size()));
  if (!v.empty()) std::memcpy(p, v.data(), v.size());
  return ok();
}

Result<void> Writer::prop_string_list(const char* name, std::span<const std::string> v) {
  std::size_t len = 0;
  for (const std::string& s : v) len += s.size() + 1;
  MK_TRY_ASSIGN(uint8_t * p, placeholder(name, len));
  for (const std::string& s : v) {
    std::memcpy(p, s.data(), s.size());
    p[s.size()] = 0;
    p += s.size() + 1;
  }
  return ok();
}

Result<std::vector<uint8_t>> Writer::finish() {
  MK_TRY(end_node());
  MK_TRY(run("finish", [&] { return fdt_finish(fdt()); }));
  const auto* bytes = reinterpret_cast<const uint8_t*>(buf_.data());
  return std::vector<uint8_t>(bytes, bytes + fdt_totalsize(fdt()));
}

// ---- Tree ------------------------------------------------------------------

Result<Tree> Tree::open(std::span<const uint8_t> blob, std::size_t cap, const char* what) {
  // The fixed 1 GiB bound also tells g++ 12 at -O2 that the size cannot
  // wrap in the rounding below (otherwise -Wstringop-overflow fires).
  if (blob.size() > cap || blob.size() > (std::size_t{1} << 30)) {
    return MK_FAIL(E2BIG, what, "blob is %zu bytes, above the %zu-byte limit", blob.size(), cap);
  }
  Tree t(what);
  t.buf_.resize((blob.size() + 7) / 8);
  if (!blob.empty()) std::memcpy(t.buf_.data(), blob.data(), blob.size());
  const void* f = t.fdt();
  // Probe the header ourselves first so libfdt only ever walks the format
  // fdt_sw produces (version 17, last compatible 16).
  if (blob.size() < sizeof(struct fdt_header)) {
    return MK_FAIL(EBADMSG, what, "blob is %zu bytes, shorter than an FDT header (%zu)", blob.size(),
                   sizeof(struct fdt_header));
  }
  if (fdt_magic(f) != FDT_MAGIC) {
    return MK_FAIL(EBADMSG, what, "not an FDT: magic is 0x%08x, expected 0x%08x", fdt_magic(f),
                   FDT_MAGIC);
  }
  if (fdt_version(f) != 17 || fdt_last_comp_version(f) != 16) {
    return MK_FAIL(EPROTONOSUPPORT, what, "FDT format version %u (last compatible %u), expected 17 (16)",
                   fdt_version(f), fdt_last_comp_version(f));
  }
  // Our own bounded walk first: Debian 12's libfdt loops forever in
  // fdt_check_full() on a negative property length (mk/fdt_structure.h).
  if (auto s = check_fdt_structure(blob); !s) return MK_FAIL(EBADMSG, what, "malformed FDT: %s", s.error().message());
  if (int err = fdt_check_full(f, blob.size()); err != 0) {
    return MK_FAIL(to_errno(err), what, "malformed FDT: %s", fdt_strerror(err));
  }
  if (fdt_totalsize(f) != blob.size()) {
    return MK_FAIL(EBADMSG, what, "blob is %zu bytes but its FDT header says %u", blob.size(),
                   fdt_totalsize(f));
  }
  if (int n = fdt_num_mem_rsv(f); n != 0) {
    return MK_FAIL(n < 0 ? EBADMSG : EINVAL, what, "FDT has %d memory reservation entries, expected none",
                   n);
  }
  return t;
}

// ---- Node ------------------------------------------------------------------

Error Node::verror(int code, const char* fmt, va_list ap) const {
  char msg[Error::kDetailMax];
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  return MK_FAIL(code, what_, "%s: %s", path_.empty() ? "/" : path_.c_str(), msg);
}

Error Node::error(int code, const char* fmt, ...) const {
  va_list ap;
  va_start(ap, fmt);
  Error e = verror(code, fmt, ap);
  va_end(ap);
  return e;
}

Error Node::bad(const char* fmt, ...) const {
  va_list ap;
  va_start(ap, fmt);
  Error e = verror(EINVAL, fmt, ap);
  va_end(ap);
  return e;
}

Result<void> expect_schema(const Node& root, const char* compatible, uint32_t version) {
  MK_TRY_ASSIGN(std::string compat, root.str("compatible"));
  if (compat != compatible) {
    return root.error(EPROTONOSUPPORT, "compatible is '%s', expected '%s'", printable(compat).c_str(),
                      compatible);
  }
  MK_TRY_ASSIGN(uint32_t v, root.u32("version"));
  if (v != version) {
    return root.error(EPROTONOSUPPORT, "version is %u, this reader supports %u", v, version);
  }
  return ok();
}

std::string Node::child_path(std::string_view child) const {
  return path_ + "/" + printable(child);
}

Result<Node> Node::read(const Tree& tree, int offset, std::string path, std::size_t max_props) {
  Node n(tree, offset, std::move(path));
  const void* f = tree.fdt();
  int prop;
  fdt_for_each_property_offset(prop, f, offset) {
    if (n.props_.size() >= max_props) {
      return n.bad("more than %zu properties", max_props);
    }
    const char* name = nullptr;
    int len = 0;
    const void* val = fdt_getprop_by_offset(f, prop, &name, &len);
    if (!val || !name || len < 0) return n.bad("unreadable property: %s", fdt_strerror(len));
    Prop p{name, {static_cast<const uint8_t*>(val), static_cast<std::size_t>(len)}};
    for (const Prop& q : n.props_) {
      if (q.name == p.name) return n.bad("duplicate property '%s'", printable(p.name).c_str());
    }
    n.props_.push_back(p);
  }
  if (prop != -FDT_ERR_NOTFOUND) return n.bad("corrupt property list: %s", fdt_strerror(prop));
  return n;
}

Result<Node> Node::read_leaf(const Tree& tree, int offset, std::string path, std::size_t max_props) {
  MK_TRY_ASSIGN(Node n, read(tree, offset, std::move(path), max_props));
  int child = fdt_first_subnode(tree.fdt(), offset);
  if (child >= 0) {
    int len = 0;
    const char* name = fdt_get_name(tree.fdt(), child, &len);
    std::string_view v = name && len >= 0 ? std::string_view(name, static_cast<std::size_t>(len)) : "?";
    return n.bad("unexpected child node '%s'", printable(v).c_str());
  }
  if (child != -FDT_ERR_NOTFOUND) return n.bad("corrupt node list: %s", fdt_strerror(child));
  return n;
}

Result<void> Node::read_children(std::size_t max_children) {
  const void* f = tree_->fdt();
  children_.clear();
  int child;
  fdt_for_each_subnode(child, f, offset_) {
    if (children_.size() >= max_children) {
      return bad("more than %zu child nodes", max_children);
    }
    int len = 0;
    const char* name = fdt_get_name(f, child, &len);
    if (!name || len < 0) return bad("unreadable child node: %s", fdt_strerror(len));
    children_.push_back(Child{std::string_view(name, static_cast<std::size_t>(len)), child});
  }
  if (child != -FDT_ERR_NOTFOUND) return bad("corrupt node list: %s", fdt_strerror(child));

  // Duplicate child names: sort a copy (up to 8192 CPUs, so not quadratic).
  std::vector<std::string_view> names;
  names.reserve(children_.size());
  for (const Child& c : children_) names.push_back(c.name);
  std::sort(names.begin(), names.end());
  auto dup = std::adjacent_find(names.begin(), names.end());
  if (dup != names.end()) return bad("duplicate node '%s'", printable(*dup).c_str());
  return ok();
}

const Prop* Node::find(std::string_view name) const {
  for (const Prop& p : props_)
    if (p.name == name) return &p;
  return nullptr;
}

Result<void> Node::expect_only(std::initializer_list<std::string_view> allowed) const {
  for (const Prop& p : props_) {
    if (std::find(allowed.begin(), allowed.end(), p.name) == allowed.end()) {
      return bad("unknown property '%s'", printable(p.name).c_str());
    }
  }
  return ok();
}

Result<const Prop*> Node::require(std::string_view name, std::size_t size) const {
  const Prop* p = find(name);
  if (!p) return bad("missing required property '%.*s'", static_cast<int>(name.size()), name.data());
  if (p->data.size() != size) {
    return bad("'%.*s' is %zu bytes, expected %zu", static_cast<int>(name.size()), name.data(),
               p->data.size(), size);
  }
  return p;
}

Result<uint32_t> Node::u32(std::string_view name) const {
  MK_TRY_ASSIGN(const Prop* p, require(name, 4));
  fdt32_t be;
  std::memcpy(&be, p->data.data(), 4);
  return fdt32_to_cpu(be);
}

Result<int32_t> Node::s32(std::string_view name) const {
  MK_TRY_ASSIGN(uint32_t v, u32(name));
  return static_cast<int32_t>(v);
}

Result<uint64_t> Node::u64(std::string_view name) const {
  MK_TRY_ASSIGN(const Prop* p, require(name, 8));
  fdt64_t be;
  std::memcpy(&be, p->data.data(), 8);
  return fdt64_to_cpu(be);
}

Result<std::string> Node::decode_str(const Prop& p) const {
  const auto* d = reinterpret_cast<const char*>(p.data.data());
  std::size_t len = p.data.size();
  if (len == 0 || d[len - 1] != '\0') {
    return bad("'%s' is not a NUL-terminated string", printable(p.name).c_str());
  }
  if (std::memchr(d, '\0', len - 1)) {
    return bad("'%s' holds several strings, expected one", printable(p.name).c_str());
  }
  return std::string(d, len - 1);
}

Result<std::string> Node::str(std::string_view name) const {
  const Prop* p = find(name);
  if (!p) return bad("missing required property '%.*s'", static_cast<int>(name.size()), name.data());
  return decode_str(*p);
}

Result<std::optional<std::string>> Node::opt_str(std::string_view name) const {
  const Prop* p = find(name);
  if (!p) return std::optional<std::string>();
  MK_TRY_ASSIGN(std::string s, decode_str(*p));
  return std::optional<std::string>(std::move(s));
}

Result<std::vector<uint32_t>> Node::u32_array(std::string_view name, std::size_t max) const {
  const Prop* p = find(name);
  if (!p) return bad("missing required property '%.*s'", static_cast<int>(name.size()), name.data());
  if (p->data.size() % 4 != 0) {
    return bad("'%.*s' is %zu bytes, expected a multiple of 4", static_cast<int>(name.size()),
               name.data(), p->data.size());
  }
  std::size_t count = p->data.size() / 4;
  if (count > max) {
    return bad("'%.*s' has %zu cells, at most %zu allowed", static_cast<int>(name.size()),
               name.data(), count, max);
  }
  std::vector<uint32_t> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    fdt32_t be;
    std::memcpy(&be, p->data.data() + 4 * i, 4);
    out[i] = fdt32_to_cpu(be);
  }
  return out;
}

Result<std::vector<std::string>> Node::string_list(std::string_view name, std::size_t max) const {
  const Prop* p = find(name);
  if (!p) return bad("missing required property '%.*s'", static_cast<int>(name.size()), name.data());
  const auto* d = reinterpret_cast<const char*>(p->data.data());
  std::size_t len = p->data.size();
  if (len > 0 && d[len - 1] != '\0') {
    return bad("'%.*s' is not a NUL-terminated string list", static_cast<int>(name.size()),
               name.data());
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < len;) {
    if (out.size() >= max) {
      return bad("'%.*s' has more than %zu strings", static_cast<int>(name.size()), name.data(), max);
    }
    std::size_t n = std::strlen(d + i);  // terminated: d[len - 1] == 0
    out.emplace_back(d + i, n);
    i += n + 1;
  }
  return out;
}

}  // namespace mk::fdt
