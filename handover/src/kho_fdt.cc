// kho_fdt: libfdt writer/reader for the KHO blob and FDT_ERR_* -> errno
// (see kho_fdt.h).
#include "kho_fdt.h"

#include <libfdt.h>

#include "mk/fdt_structure.h"

#include <algorithm>
#include <cstring>

namespace mk::handover::fdt {

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
    default: return EIO;
  }
}

// ---- KhoWriter ---------------------------------------------------------------

namespace {
constexpr std::size_t kInitialBytes = 4096;
}

template <class F>
Result<void> KhoWriter::run(const char* op, F&& call) {
  while (true) {
    int err = call();
    if (err >= 0) return ok();
    if (err != -FDT_ERR_NOSPACE) {
      return MK_FAIL(to_errno(err), what_, "fdt %s failed: %s", op, fdt_strerror(err));
    }
    std::size_t have = buf_.size() * sizeof(uint64_t);
    if (have >= cap_) {
      return MK_FAIL(E2BIG, what_, "blob does not fit in the %zu-byte limit", cap_);
    }
    std::size_t want = std::min(have * 2, cap_);
    std::vector<uint64_t> bigger(want / sizeof(uint64_t));
    int rerr = fdt_resize(buf_.data(), bigger.data(), static_cast<int>(want));
    if (rerr < 0) return MK_FAIL(to_errno(rerr), what_, "fdt resize failed: %s", fdt_strerror(rerr));
    buf_.swap(bigger);
  }
}

Result<KhoWriter> KhoWriter::create(std::size_t cap, const char* what) {
  KhoWriter w(cap, what);
  w.buf_.resize(std::min(kInitialBytes, cap) / sizeof(uint64_t));
  int err = fdt_create(w.fdt(), static_cast<int>(w.buf_.size() * sizeof(uint64_t)));
  if (err < 0) return MK_FAIL(to_errno(err), what, "fdt create failed: %s", fdt_strerror(err));
  MK_TRY(w.run("reserve map", [&] { return fdt_finish_reservemap(w.fdt()); }));
  MK_TRY(w.begin_node(""));
  return w;
}

Result<void> KhoWriter::begin_node(const char* name) {
  return run("begin node", [&] { return fdt_begin_node(fdt(), name); });
}

Result<void> KhoWriter::end_node() {
  return run("end node", [&] { return fdt_end_node(fdt()); });
}

Result<void> KhoWriter::prop(const char* name, std::span<const uint8_t> value) {
  if (value.size() > cap_) {
    return MK_FAIL(E2BIG, what_, "property '%s' is %zu bytes, above the %zu-byte limit", name,
                   value.size(), cap_);
  }
  void* val = nullptr;
  MK_TRY(run("property", [&] {
    return fdt_property_placeholder(fdt(), name, static_cast<int>(value.size()), &val);
  }));
  if (!value.empty()) std::memcpy(val, value.data(), value.size());
  return ok();
}

Result<std::vector<uint8_t>> KhoWriter::finish() {
  MK_TRY(end_node());
  MK_TRY(run("finish", [&] { return fdt_finish(fdt()); }));
  const auto* bytes = reinterpret_cast<const uint8_t*>(buf_.data());
  return std::vector<uint8_t>(bytes, bytes + fdt_totalsize(fdt()));
}

// ---- KhoReader ---------------------------------------------------------------

Result<KhoReader> KhoReader::open(std::span<const uint8_t> blob, std::size_t cap, const char* what) {
  if (blob.size() > cap || blob.size() > (std::size_t{1} << 30)) {
    return MK_FAIL(E2BIG, what, "blob is %zu bytes, above the %zu-byte limit", blob.size(), cap);
  }
  if (blob.size() < sizeof(struct fdt_header)) {
    return MK_FAIL(EBADMSG, what, "blob is %zu bytes, shorter than an FDT header (%zu)", blob.size(),
                   sizeof(struct fdt_header));
  }
  KhoReader r(what);
  r.buf_.resize((blob.size() + 7) / 8);
  std::memcpy(r.buf_.data(), blob.data(), blob.size());
  const void* f = r.fdt();
  // Probe the header first so libfdt only walks the format fdt_sw writes.
  if (fdt_magic(f) != FDT_MAGIC) {
    return MK_FAIL(EBADMSG, what, "not an FDT: magic is 0x%08x, expected 0x%08x", fdt_magic(f),
                   FDT_MAGIC);
  }
  if (fdt_version(f) != 17 || fdt_last_comp_version(f) != 16) {
    return MK_FAIL(EPROTONOSUPPORT, what, "FDT format version %u (last compatible %u), expected 17 (16)",
                   fdt_version(f), fdt_last_comp_version(f));
  }
  if (fdt_totalsize(f) != blob.size()) {
    return MK_FAIL(EBADMSG, what, "blob is %zu bytes but its FDT header says %u", blob.size(),
                   fdt_totalsize(f));
  }
  // Our own bounded walk first: Debian 12's libfdt loops forever in
  // fdt_check_full() on a negative property length (mk/fdt_structure.h).
  if (auto s = check_fdt_structure(blob); !s) return MK_FAIL(EBADMSG, what, "malformed FDT: %s", s.error().message());
  if (int err = fdt_check_full(f, blob.size()); err != 0) {
    return MK_FAIL(to_errno(err), what, "malformed FDT: %s", fdt_strerror(err));
  }
  if (int n = fdt_num_mem_rsv(f); n != 0) {
    return MK_FAIL(n < 0 ? EBADMSG : EINVAL, what,
                   "FDT has %d memory reservation entries, expected none", n);
  }
  return r;
}

Result<std::vector<RawProp>> KhoReader::props(int offset, std::size_t max) const {
  std::vector<RawProp> out;
  const void* f = fdt();
  int prop;
  fdt_for_each_property_offset(prop, f, offset) {
    if (out.size() >= max) return MK_FAIL(EINVAL, what_, "more than %zu properties", max);
    const char* name = nullptr;
    int len = 0;
    const void* val = fdt_getprop_by_offset(f, prop, &name, &len);
    if (!val || !name || len < 0) {
      return MK_FAIL(EBADMSG, what_, "unreadable property: %s", fdt_strerror(len));
    }
    out.push_back(RawProp{name, {static_cast<const uint8_t*>(val), static_cast<std::size_t>(len)}});
  }
  if (prop != -FDT_ERR_NOTFOUND) {
    return MK_FAIL(EBADMSG, what_, "corrupt property list: %s", fdt_strerror(prop));
  }
  return out;
}

Result<std::vector<RawChild>> KhoReader::children(int offset, std::size_t max) const {
  std::vector<RawChild> out;
  const void* f = fdt();
  int child;
  fdt_for_each_subnode(child, f, offset) {
    if (out.size() >= max) return MK_FAIL(EINVAL, what_, "more than %zu child nodes", max);
    int len = 0;
    const char* name = fdt_get_name(f, child, &len);
    if (!name || len < 0) return MK_FAIL(EBADMSG, what_, "unreadable node: %s", fdt_strerror(len));
    out.push_back(RawChild{std::string_view(name, static_cast<std::size_t>(len)), child});
  }
  if (child != -FDT_ERR_NOTFOUND) {
    return MK_FAIL(EBADMSG, what_, "corrupt node list: %s", fdt_strerror(child));
  }
  return out;
}

}  // namespace mk::handover::fdt
