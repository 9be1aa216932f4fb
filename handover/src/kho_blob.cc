// kho_blob: the KHO blob model, its validation, and its FDT codec (see
// handover/kho_blob.h and docs/handover.md).
#include "handover/kho_blob.h"

#include <algorithm>
#include <cstring>

#include "mk/fdt_io.h"

namespace mk::handover {
namespace {

constexpr const char* kWhat = "bad handover blob";
constexpr const char* kEmitWhat = "cannot emit handover blob";
constexpr std::size_t kMaxPropName = 31;
constexpr std::size_t kMaxNodeName = 63;
constexpr std::size_t kMaxCompatible = 63;
constexpr uint32_t kMaxVersion = 999999;

// ---- byte order ----------------------------------------------------------------

void put_be(uint8_t* p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

uint64_t get_be(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// `s` with non-printable bytes escaped, cut to 48 chars, for details.
std::string printable(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < 48; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char b[5];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    }
  }
  if (s.size() > 48) out += "...";
  return out;
}

// ---- syntax ------------------------------------------------------------------

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool is_node_char(char c) { return is_alnum(c) || c == ',' || c == '.' || c == '_' || c == '+' || c == '-'; }
bool is_prop_char(char c) { return is_node_char(c) || c == '?' || c == '#'; }
bool is_compat_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '+' || c == '-';
}

bool valid_node_name(std::string_view n) {
  if (n.empty() || n.size() > kMaxNodeName) return false;
  std::size_t at = n.find('@');
  std::string_view base = n.substr(0, at);
  if (base.empty() || !std::all_of(base.begin(), base.end(), is_node_char)) return false;
  if (at == std::string_view::npos) return true;
  std::string_view unit = n.substr(at + 1);
  return !unit.empty() && std::all_of(unit.begin(), unit.end(), is_node_char);
}

bool valid_prop_name(std::string_view n) {
  if (n.empty() || n.size() > kMaxPropName) return false;
  if (n == "compatible" || n == "name" || n == "phandle") return false;
  return std::all_of(n.begin(), n.end(), is_prop_char);
}

// ---- validation --------------------------------------------------------------

template <class T, class F>
const std::string* first_duplicate(const std::vector<T>& items, F name_of) {
  std::vector<const std::string*> names;
  names.reserve(items.size());
  for (const T& t : items) names.push_back(&name_of(t));
  std::sort(names.begin(), names.end(), [](auto* a, auto* b) { return *a < *b; });
  for (std::size_t i = 1; i < names.size(); ++i)
    if (*names[i] == *names[i - 1]) return names[i];
  return nullptr;
}

Result<void> validate_props(const std::vector<KhoProperty>& props, const std::string& path) {
  if (props.size() > kMaxProperties) {
    return MK_FAIL(EINVAL, kWhat, "%s: %zu properties, at most %zu allowed", path.c_str(), props.size(),
                   kMaxProperties);
  }
  for (const KhoProperty& p : props) {
    if (!valid_prop_name(p.name)) {
      return MK_FAIL(EINVAL, kWhat, "%s: bad property name '%s'", path.c_str(), printable(p.name).c_str());
    }
  }
  if (const std::string* d = first_duplicate(props, [](const KhoProperty& p) -> const std::string& {
        return p.name;
      })) {
    return MK_FAIL(EINVAL, kWhat, "%s: duplicate property '%s'", path.c_str(), printable(*d).c_str());
  }
  return ok();
}

Result<void> validate_children(const std::vector<KhoNode>& children, const std::string& path,
                               std::size_t depth) {
  if (children.empty()) return ok();
  if (depth >= kMaxDepth) {
    return MK_FAIL(EINVAL, kWhat, "%s: child nodes below the maximum depth %zu", path.c_str(), kMaxDepth);
  }
  if (children.size() > kMaxChildren) {
    return MK_FAIL(EINVAL, kWhat, "%s: %zu child nodes, at most %zu allowed", path.c_str(),
                   children.size(), kMaxChildren);
  }
  for (const KhoNode& c : children) {
    if (!valid_node_name(c.name)) {
      return MK_FAIL(EINVAL, kWhat, "%s: bad node name '%s'", path.c_str(), printable(c.name).c_str());
    }
  }
  if (const std::string* d =
          first_duplicate(children, [](const KhoNode& n) -> const std::string& { return n.name; })) {
    return MK_FAIL(EINVAL, kWhat, "%s: duplicate node '%s'", path.c_str(), printable(*d).c_str());
  }
  for (const KhoNode& c : children) {
    std::string sub = path + "/" + c.name;
    MK_TRY(validate_props(c.properties, sub));
    MK_TRY(validate_children(c.children, sub, depth + 1));
  }
  return ok();
}

Result<void> validate_memory(const std::vector<PreservedRange>& memory) {
  if (memory.size() > kMaxRanges) {
    return MK_FAIL(EINVAL, kWhat, "/%s: %zu ranges, at most %zu allowed", kMemoryMapProperty,
                   memory.size(), kMaxRanges);
  }
  for (std::size_t i = 0; i < memory.size(); ++i) {
    const PreservedRange& r = memory[i];
    if (r.offset % kPageSize || r.length % kPageSize || r.length == 0) {
      return MK_FAIL(EINVAL, kWhat,
                     "/%s: range %zu (region %u, offset 0x%llx, length 0x%llx) is empty or not "
                     "%llu-byte aligned",
                     kMemoryMapProperty, i, r.region, static_cast<unsigned long long>(r.offset),
                     static_cast<unsigned long long>(r.length), static_cast<unsigned long long>(kPageSize));
    }
    if (r.offset + r.length < r.offset) {
      return MK_FAIL(EINVAL, kWhat, "/%s: range %zu (region %u) wraps around 2^64", kMemoryMapProperty, i,
                     r.region);
    }
    if (i == 0) continue;
    const PreservedRange& p = memory[i - 1];
    if (r.region < p.region || (r.region == p.region && r.offset < p.offset)) {
      return MK_FAIL(EINVAL, kWhat, "/%s: range %zu is not sorted by (region, offset)", kMemoryMapProperty,
                     i);
    }
    if (r.region == p.region && r.offset < p.offset + p.length) {
      return MK_FAIL(EINVAL, kWhat,
                     "/%s: range %zu (region %u, offset 0x%llx) overlaps range %zu (ends at 0x%llx)",
                     kMemoryMapProperty, i, r.region, static_cast<unsigned long long>(r.offset), i - 1,
                     static_cast<unsigned long long>(p.offset + p.length));
    }
  }
  return ok();
}

// ---- parsing -----------------------------------------------------------------

Result<std::string> decode_string(std::span<const uint8_t> v, const std::string& path, std::string_view name) {
  const auto* d = reinterpret_cast<const char*>(v.data());
  if (v.empty() || d[v.size() - 1] != '\0' || std::memchr(d, '\0', v.size() - 1)) {
    return MK_FAIL(EINVAL, kWhat, "%s: '%s' is not one NUL-terminated string", path.c_str(),
                   printable(name).c_str());
  }
  return std::string(d, v.size() - 1);
}

// The properties of `n` ("compatible" apart when asked for: a subsystem's).
// Node::read has already refused duplicates and more than the cap.
Result<std::vector<KhoProperty>> read_props(const fdt::Node& n, std::string* compatible) {
  std::vector<KhoProperty> out;
  out.reserve(n.props().size());
  bool have_compat = false;
  for (const fdt::Prop& p : n.props()) {
    if (compatible && p.name == "compatible") {
      MK_TRY_ASSIGN(*compatible, decode_string(p.data, n.path(), p.name));
      have_compat = true;
      continue;
    }
    out.push_back(KhoProperty{std::string(p.name), std::vector<uint8_t>(p.data.begin(), p.data.end())});
  }
  if (compatible && !have_compat) {
    return MK_FAIL(EINVAL, kWhat, "%s: missing required property 'compatible'", n.path().c_str());
  }
  return out;
}

Result<std::vector<KhoNode>> read_children(const fdt::Tree& t, fdt::Node& n, std::size_t depth) {
  MK_TRY(n.read_children(kMaxChildren));
  std::vector<KhoNode> out;
  if (n.children().empty()) return out;
  // Checked before descending: the recursion depth is bounded by kMaxDepth
  // whatever the blob says.
  if (depth >= kMaxDepth) {
    return MK_FAIL(EINVAL, kWhat, "%s: child nodes below the maximum depth %zu", n.path().c_str(), kMaxDepth);
  }
  out.reserve(n.children().size());
  for (const fdt::Child& c : n.children()) {
    MK_TRY_ASSIGN(fdt::Node sub, fdt::Node::read(t, c.offset, n.child_path(c.name), kMaxProperties));
    KhoNode k;
    k.name = std::string(c.name);
    MK_TRY_ASSIGN(k.properties, read_props(sub, nullptr));
    MK_TRY_ASSIGN(k.children, read_children(t, sub, depth + 1));
    out.push_back(std::move(k));
  }
  return out;
}

Result<std::vector<PreservedRange>> decode_memory(std::span<const uint8_t> v) {
  if (v.size() % kRangeRecordBytes) {
    return MK_FAIL(EINVAL, kWhat, "/%s is %zu bytes, not a multiple of %zu", kMemoryMapProperty, v.size(),
                   kRangeRecordBytes);
  }
  std::size_t n = v.size() / kRangeRecordBytes;
  if (n > kMaxRanges) {
    return MK_FAIL(EINVAL, kWhat, "/%s: %zu ranges, at most %zu allowed", kMemoryMapProperty, n, kMaxRanges);
  }
  std::vector<PreservedRange> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const uint8_t* p = v.data() + i * kRangeRecordBytes;
    if (get_be(p + 4, 4) != 0) {
      return MK_FAIL(EINVAL, kWhat, "/%s: range %zu has a non-zero reserved field", kMemoryMapProperty, i);
    }
    out[i].region = static_cast<uint32_t>(get_be(p, 4));
    out[i].offset = get_be(p + 8, 8);
    out[i].length = get_be(p + 16, 8);
  }
  return out;
}

// ---- emitting ----------------------------------------------------------------

Result<void> write_props(fdt::Writer& w, const std::vector<KhoProperty>& props) {
  for (const KhoProperty& p : props) MK_TRY(w.prop_bytes(p.name.c_str(), p.value));
  return ok();
}

Result<void> write_children(fdt::Writer& w, const std::vector<KhoNode>& children) {
  for (const KhoNode& c : children) {
    MK_TRY(w.begin_node(c.name.c_str()));
    MK_TRY(write_props(w, c.properties));
    MK_TRY(write_children(w, c.children));
    MK_TRY(w.end_node());
  }
  return ok();
}

std::vector<uint8_t> with_nul(std::string_view s) {
  std::vector<uint8_t> v(s.begin(), s.end());
  v.push_back(0);
  return v;
}

}  // namespace

// ---- KhoProperty ---------------------------------------------------------------

KhoProperty KhoProperty::u32(std::string name, uint32_t v) {
  KhoProperty p{std::move(name), std::vector<uint8_t>(4)};
  put_be(p.value.data(), v, 4);
  return p;
}

KhoProperty KhoProperty::u64(std::string name, uint64_t v) {
  KhoProperty p{std::move(name), std::vector<uint8_t>(8)};
  put_be(p.value.data(), v, 8);
  return p;
}

KhoProperty KhoProperty::string(std::string name, std::string_view v) {
  return KhoProperty{std::move(name), with_nul(v)};
}

KhoProperty KhoProperty::bytes(std::string name, std::span<const uint8_t> v) {
  return KhoProperty{std::move(name), std::vector<uint8_t>(v.begin(), v.end())};
}

Result<uint32_t> KhoProperty::as_u32() const {
  if (value.size() != 4) {
    return MK_FAIL(EINVAL, kWhat, "'%s' is %zu bytes, expected 4", printable(name).c_str(), value.size());
  }
  return static_cast<uint32_t>(get_be(value.data(), 4));
}

Result<uint64_t> KhoProperty::as_u64() const {
  if (value.size() != 8) {
    return MK_FAIL(EINVAL, kWhat, "'%s' is %zu bytes, expected 8", printable(name).c_str(), value.size());
  }
  return get_be(value.data(), 8);
}

Result<std::string> KhoProperty::as_string() const { return decode_string(value, "property", name); }

// ---- public API ----------------------------------------------------------------

const Subsystem* find_subsystem(const KhoBlob& blob, std::string_view name) noexcept {
  for (const Subsystem& s : blob.subsystems)
    if (s.name == name) return &s;
  return nullptr;
}

uint32_t compatible_version(std::string_view c) noexcept {
  if (c.size() > kMaxCompatible) return 0;
  std::size_t comma = c.find(',');
  if (comma == 0 || comma == std::string_view::npos) return 0;
  std::size_t dash_v = c.rfind("-v");
  if (dash_v == std::string_view::npos || dash_v <= comma + 1) return 0;
  std::string_view vendor = c.substr(0, comma);
  std::string_view schema = c.substr(comma + 1, dash_v - comma - 1);
  std::string_view digits = c.substr(dash_v + 2);
  if (!is_alnum(vendor[0]) || !is_alnum(schema[0])) return 0;
  if (!std::all_of(vendor.begin(), vendor.end(), is_compat_char)) return 0;
  if (!std::all_of(schema.begin(), schema.end(), is_compat_char)) return 0;
  if (digits.empty() || digits.size() > 6 || digits[0] == '0') return 0;
  uint32_t v = 0;
  for (char d : digits) {
    if (d < '0' || d > '9') return 0;
    v = v * 10 + static_cast<uint32_t>(d - '0');
  }
  return v <= kMaxVersion ? v : 0;
}

Result<void> validate_kho_blob(const KhoBlob& blob) {
  MK_TRY(validate_memory(blob.memory));
  if (blob.subsystems.size() > kMaxSubsystems) {
    return MK_FAIL(EINVAL, kWhat, "/: %zu subsystems, at most %zu allowed", blob.subsystems.size(),
                   kMaxSubsystems);
  }
  for (const Subsystem& s : blob.subsystems) {
    if (!valid_node_name(s.name)) {
      return MK_FAIL(EINVAL, kWhat, "/: bad subsystem name '%s'", printable(s.name).c_str());
    }
    std::string path = "/" + s.name;
    if (compatible_version(s.compatible) == 0) {
      return MK_FAIL(EINVAL, kWhat, "%s: compatible '%s' is not '<vendor>,<schema>-v<N>'", path.c_str(),
                     printable(s.compatible).c_str());
    }
    MK_TRY(validate_props(s.properties, path));
    MK_TRY(validate_children(s.children, path, 1));
  }
  if (const std::string* d = first_duplicate(
          blob.subsystems, [](const Subsystem& s) -> const std::string& { return s.name; })) {
    return MK_FAIL(EINVAL, kWhat, "/: duplicate subsystem '%s'", printable(*d).c_str());
  }
  return ok();
}

Result<std::vector<uint8_t>> emit_kho_blob(const KhoBlob& blob) {
  if (auto v = validate_kho_blob(blob); !v) {
    Error e = v.error();
    return MK_FAIL(e.code(), kEmitWhat, "%s", e.message());
  }
  MK_TRY_ASSIGN(fdt::Writer w, fdt::Writer::create(kMaxBlobBytes, kEmitWhat));
  MK_TRY(w.prop_string("compatible", kKhoCompatible));
  std::vector<uint8_t> map(blob.memory.size() * kRangeRecordBytes);
  for (std::size_t i = 0; i < blob.memory.size(); ++i) {
    uint8_t* p = map.data() + i * kRangeRecordBytes;
    put_be(p, blob.memory[i].region, 4);
    put_be(p + 4, 0, 4);
    put_be(p + 8, blob.memory[i].offset, 8);
    put_be(p + 16, blob.memory[i].length, 8);
  }
  MK_TRY(w.prop_bytes(kMemoryMapProperty, map));
  for (const Subsystem& s : blob.subsystems) {
    MK_TRY(w.begin_node(s.name.c_str()));
    MK_TRY(w.prop_string("compatible", s.compatible));
    MK_TRY(write_props(w, s.properties));
    MK_TRY(write_children(w, s.children));
    MK_TRY(w.end_node());
  }
  return w.finish();
}

Result<KhoBlob> parse_kho_blob(std::span<const uint8_t> bytes) {
  MK_TRY_ASSIGN(fdt::Tree t, fdt::Tree::open(bytes, kMaxBlobBytes, kWhat));

  // Root: exactly compatible = "kho-v1" and the memory map.
  MK_TRY_ASSIGN(fdt::Node root, fdt::Node::read(t, 0, "", 2));
  bool have_compat = false, have_map = false;
  KhoBlob blob;
  for (const fdt::Prop& p : root.props()) {
    if (p.name == "compatible") {
      MK_TRY_ASSIGN(std::string c, decode_string(p.data, "/", p.name));
      if (c != kKhoCompatible) {
        return MK_FAIL(EPROTONOSUPPORT, kWhat, "/: compatible is '%s', expected '%s'", printable(c).c_str(),
                       kKhoCompatible);
      }
      have_compat = true;
    } else if (p.name == kMemoryMapProperty) {
      MK_TRY_ASSIGN(blob.memory, decode_memory(p.data));
      have_map = true;
    } else {
      return MK_FAIL(EINVAL, kWhat, "/: unknown property '%s'", printable(p.name).c_str());
    }
  }
  if (!have_compat) return MK_FAIL(EINVAL, kWhat, "/: missing required property 'compatible'");
  if (!have_map) return MK_FAIL(EINVAL, kWhat, "/: missing required property '%s'", kMemoryMapProperty);

  MK_TRY(root.read_children(kMaxSubsystems));
  blob.subsystems.reserve(root.children().size());
  for (const fdt::Child& c : root.children()) {
    MK_TRY_ASSIGN(fdt::Node sub, fdt::Node::read(t, c.offset, root.child_path(c.name), kMaxProperties + 1));
    Subsystem s;
    s.name = std::string(c.name);
    MK_TRY_ASSIGN(s.properties, read_props(sub, &s.compatible));
    MK_TRY_ASSIGN(s.children, read_children(t, sub, 1));
    blob.subsystems.push_back(std::move(s));
  }
  // Names, compatibles, duplicates, the memory map's order and overlaps:
  // the same rules emit enforces.
  MK_TRY(validate_kho_blob(blob));
  return blob;
}

Result<const Subsystem*> find_compatible(const KhoBlob& blob, std::string_view name,
                                         std::string_view compatible_prefix, uint32_t max_version) {
  if (compatible_prefix.size() < 2 || compatible_prefix.substr(compatible_prefix.size() - 2) != "-v" ||
      max_version == 0) {
    return MK_FAIL(EINVAL, "bad compatibility check", "prefix '%s' must end in \"-v\", max version %u > 0",
                   printable(compatible_prefix).c_str(), max_version);
  }
  const Subsystem* s = find_subsystem(blob, name);
  if (!s) {
    return MK_FAIL(ENOENT, "handover subsystem missing", "no subsystem '%s' in the blob",
                   printable(name).c_str());
  }
  uint32_t v = compatible_version(s->compatible);
  if (s->compatible.compare(0, compatible_prefix.size(), compatible_prefix) != 0 || v == 0) {
    return MK_FAIL(EPROTONOSUPPORT, "incompatible handover subsystem",
                   "/%s: compatible '%s' is not a '%s<N>' schema", printable(name).c_str(),
                   printable(s->compatible).c_str(), printable(compatible_prefix).c_str());
  }
  if (v > max_version) {
    return MK_FAIL(EPROTONOSUPPORT, "incompatible handover subsystem",
                   "/%s: compatible '%s' is version %u, this image supports up to %u",
                   printable(name).c_str(), printable(s->compatible).c_str(), v, max_version);
  }
  return s;
}

}  // namespace mk::handover
