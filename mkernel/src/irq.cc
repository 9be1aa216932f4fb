// IRQ steering off instance CPUs, with the originals kept for restoring
// them (see irq.h).
#include "mkernel/irq.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <sstream>

namespace mk {
namespace {

constexpr const char* kStateFormat = "mkernel-irq-affinity/1";

std::string trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

Result<CpuSet> read_list(const SysRoot& root, const std::string& file) {
  MK_TRY_ASSIGN(std::string s, root.read_file(file, 1 << 16));
  std::string t = trim(s);
  if (t.empty()) return CpuSet{};
  return CpuSet::parse(t);
}

// Writes `value` to a /proc file; the errno of open or write on failure.
Result<void> write_proc(const SysRoot& root, const std::string& file, const std::string& value) {
  std::string p = root.path(file);
  int fd = ::open(p.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return MK_FAIL(e, "cannot open IRQ file", "%s: %s", p.c_str(), std::strerror(e));
  }
  ssize_t n = ::write(fd, value.data(), value.size());
  int e = errno;
  ::close(fd);
  if (n < 0)
    return MK_FAIL(e, "IRQ affinity write refused", "writing '%s' to %s: %s", value.c_str(), p.c_str(),
                   std::strerror(e));
  return ok();
}

// "  24:   1   0  IO-APIC   5-edge   ACPI:Ged" -> {24, "ACPI:Ged"}.
std::map<int, std::string> read_names(const SysRoot& root) {
  std::map<int, std::string> out;
  auto text = root.read_file("/proc/interrupts", 4 << 20);
  if (!text) return out;
  std::istringstream in(*text);
  std::string line;
  std::size_t ncpu = 0;
  bool first = true;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> tok;
    for (std::string t; ls >> t;) tok.push_back(t);
    if (first) {  // the "CPU0 CPU1 ..." header
      ncpu = tok.size();
      first = false;
      continue;
    }
    if (tok.empty() || tok[0].back() != ':') continue;
    std::string label = tok[0].substr(0, tok[0].size() - 1);
    if (label.empty() || !std::all_of(label.begin(), label.end(), ::isdigit)) continue;
    // label, ncpu counts, chip, hwirq-type, action names...
    std::size_t rest = 1 + ncpu;
    std::string name;
    if (tok.size() > rest + 2) {
      for (std::size_t i = rest + 2; i < tok.size(); ++i) name += (name.empty() ? "" : " ") + tok[i];
    } else if (tok.size() > rest) {
      name = tok.back();
    }
    out[std::atoi(label.c_str())] = name;
  }
  return out;
}

// The state file: {"format":"...","reserved":"1","default_smp_affinity":"0-1"|null,
// "irqs":{"24":"0-1",...}}. Written and read only by this module.
std::string state_text(const std::map<int, CpuSet>& orig, const std::optional<CpuSet>& def,
                       const CpuSet& reserved) {
  std::string s = std::string("{\"format\":\"") + kStateFormat + "\",\"reserved\":\"" + reserved.to_string() +
                  "\",\"default_smp_affinity\":";
  s += def ? "\"" + def->to_string() + "\"" : std::string("null");
  s += ",\"irqs\":{";
  bool first = true;
  for (const auto& [irq, cpus] : orig) {
    s += (first ? "\"" : ",\"") + std::to_string(irq) + "\":\"" + cpus.to_string() + "\"";
    first = false;
  }
  return s + "}}\n";
}

// A tiny reader for exactly what state_text() writes: strings, null, one
// nested object of string values.
class StateReader {
 public:
  explicit StateReader(std::string_view t) : t_(t) {}
  Result<void> read(std::map<int, CpuSet>& orig, std::optional<CpuSet>& def, CpuSet& reserved) {
    MK_TRY(expect('{'));
    bool have_format = false;
    while (true) {
      MK_TRY_ASSIGN(std::string key, string());
      MK_TRY(expect(':'));
      if (key == "irqs") {
        MK_TRY(expect('{'));
        skip();
        if (peek() == '}') {
          ++i_;
        } else {
          while (true) {
            MK_TRY_ASSIGN(std::string irq, string());
            MK_TRY(expect(':'));
            MK_TRY_ASSIGN(std::string list, string());
            if (irq.empty() || !std::all_of(irq.begin(), irq.end(), ::isdigit))
              return bad("irq number '" + irq + "'");
            MK_TRY_ASSIGN(CpuSet c, CpuSet::parse(list));
            orig[std::atoi(irq.c_str())] = c;
            skip();
            if (peek() == ',') { ++i_; continue; }
            MK_TRY(expect('}'));
            break;
          }
        }
      } else if (key == "default_smp_affinity") {
        skip();
        if (t_.substr(i_, 4) == "null") {
          i_ += 4;
        } else {
          MK_TRY_ASSIGN(std::string list, string());
          MK_TRY_ASSIGN(CpuSet c, CpuSet::parse(list));
          def = c;
        }
      } else {
        MK_TRY_ASSIGN(std::string v, string());
        if (key == "reserved" && !v.empty()) {
          MK_TRY_ASSIGN(reserved, CpuSet::parse(v));
        }
        if (key == "format") {
          if (v != kStateFormat) return bad("format '" + v + "', expected " + kStateFormat);
          have_format = true;
        }
      }
      skip();
      if (peek() == ',') { ++i_; continue; }
      MK_TRY(expect('}'));
      break;
    }
    if (!have_format) return bad("no \"format\"");
    return ok();
  }

 private:
  void skip() {
    while (i_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[i_]))) ++i_;
  }
  char peek() const { return i_ < t_.size() ? t_[i_] : '\0'; }
  Error bad(const std::string& what) const {
    return MK_FAIL(EBADMSG, "bad IRQ affinity state", "%s at offset %zu", what.c_str(), i_);
  }
  Result<void> expect(char c) {
    skip();
    if (peek() != c) return bad(std::string("expected '") + c + "'");
    ++i_;
    return ok();
  }
  Result<std::string> string() {
    MK_TRY(expect('"'));
    std::size_t end = t_.find('"', i_);
    if (end == std::string_view::npos) return bad("unterminated string");
    std::string s(t_.substr(i_, end - i_));
    i_ = end + 1;
    return s;
  }
  std::string_view t_;
  std::size_t i_ = 0;
};

// Temporary file, fsync, rename, fsync of the directory (the same recipe as
// tools/common/state_store.h write_file_atomic, which mkernel cannot use).
Result<void> write_atomic(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    return MK_FAIL(e, "cannot save IRQ affinities", "%s: %s", tmp.c_str(), std::strerror(e));
  }
  std::size_t off = 0;
  int e = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) { e = errno; break; }
    off += static_cast<std::size_t>(n);
  }
  if (e == 0 && ::fsync(fd) != 0) e = errno;
  ::close(fd);
  if (e == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) e = errno;
  if (e != 0) {
    ::unlink(tmp.c_str());
    return MK_FAIL(e, "cannot save IRQ affinities", "%s: %s", path.c_str(), std::strerror(e));
  }
  std::string parent = path.substr(0, path.find_last_of('/'));
  if (int dfd = ::open(parent.empty() ? "/" : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return ok();
}

}  // namespace

Result<CpuSet> parse_cpu_mask(std::string_view text) {
  std::string hex;
  for (char c : trim(text))
    if (c != ',') hex += c;
  if (hex.empty()) return MK_FAIL(EINVAL, "bad cpu mask", "empty");
  CpuSet out;
  uint32_t bit = 0;
  for (auto it = hex.rbegin(); it != hex.rend(); ++it, bit += 4) {
    int v;
    char c = static_cast<char>(std::tolower(static_cast<unsigned char>(*it)));
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else return MK_FAIL(EINVAL, "bad cpu mask", "'%.*s': '%c' is not hex", static_cast<int>(text.size()), text.data(), *it);
    for (uint32_t b = 0; b < 4; ++b)
      if (v & (1 << b)) {
        if (bit + b >= CpuSet::kMaxCpus) return MK_FAIL(EINVAL, "bad cpu mask", "cpu %u out of range", bit + b);
        out.insert(bit + b);
      }
  }
  return out;
}

std::string to_cpu_mask(const CpuSet& cpus) {
  const int last = cpus.last();
  const uint32_t words = last < 0 ? 1 : static_cast<uint32_t>(last) / 32 + 1;
  std::string out;
  for (uint32_t w = words; w-- > 0;) {
    uint32_t v = 0;
    for (uint32_t b = 0; b < 32; ++b)
      if (cpus.contains(w * 32 + b)) v |= 1u << b;
    char buf[16];
    std::snprintf(buf, sizeof buf, w + 1 == words ? "%x" : "%08x", v);
    out += (out.empty() ? "" : ",") + std::string(buf);
  }
  return out;
}

Result<std::vector<IrqLine>> read_irqs(const SysRoot& root) {
  std::string dir = root.path("/proc/irq");
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    int e = errno;
    return MK_FAIL(e, "cannot list IRQs", "%s: %s", dir.c_str(), std::strerror(e));
  }
  std::vector<int> nums;
  while (dirent* ent = ::readdir(d)) {
    std::string n = ent->d_name;
    if (!n.empty() && std::all_of(n.begin(), n.end(), ::isdigit)) nums.push_back(std::atoi(n.c_str()));
  }
  ::closedir(d);
  std::sort(nums.begin(), nums.end());
  auto names = read_names(root);
  std::vector<IrqLine> out;
  for (int n : nums) {
    std::string base = "/proc/irq/" + std::to_string(n);
    auto aff = read_list(root, base + "/smp_affinity_list");
    if (!aff) continue;  // no affinity file (IRQ 0/2 on some arches): not steerable, not listed
    IrqLine l;
    l.irq = n;
    l.affinity = *aff;
    if (auto it = names.find(n); it != names.end()) l.name = it->second;
    if (auto eff = read_list(root, base + "/effective_affinity_list"); eff && !eff->empty()) l.effective = *eff;
    out.push_back(std::move(l));
  }
  return out;
}

Guarantee IrqSteerReport::guarantee() const {
  std::string d = std::to_string(moved) + " of " + std::to_string(on_cpus) + " IRQs on cpus " + cpus.to_string() +
                  " moved off them (" + std::to_string(total) + " IRQs in all";
  if (!host.empty()) d += ", host cpus " + host.to_string();
  d += ")";
  if (!default_steered) d += "; default_smp_affinity not steered";
  if (!not_movable.empty()) {
    d += "; " + std::to_string(not_movable.size()) + " not movable (managed or refused):";
    for (std::size_t i = 0; i < not_movable.size(); ++i) {
      if (i == 8) {
        d += " ...";
        break;
      }
      d += (i ? ", " : " ") + std::to_string(not_movable[i].first) + " (" + not_movable[i].second + ")";
    }
  }
  if (!pending.empty()) {
    d += "; " + std::to_string(pending.size()) + " move at their next interrupt (effective affinity not yet off):";
    for (std::size_t i = 0; i < pending.size(); ++i) {
      if (i == 8) {
        d += " ...";
        break;
      }
      d += (i ? ", " : " ") + std::to_string(pending[i].first) + " (" + pending[i].second + ")";
    }
  }
  return {"irq steering", moved == on_cpus && default_steered, d};
}

Result<void> IrqSteering::load() {
  if (state_path_.empty()) return ok();
  int fd = ::open(state_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return ok();
    int e = errno;
    return MK_FAIL(e, "cannot read IRQ affinity state", "%s: %s", state_path_.c_str(), std::strerror(e));
  }
  ::close(fd);
  // The state file lives outside the SysRoot (the daemon's runtime dir).
  MK_TRY_ASSIGN(std::string text, SysRoot("/").read_file(state_path_, 4 << 20));
  std::map<int, CpuSet> orig;
  std::optional<CpuSet> def;
  CpuSet reserved;
  if (auto r = StateReader(text).read(orig, def, reserved); !r)
    return MK_FAIL(EBADMSG, "bad IRQ affinity state", "%s: %s; move it away to start afresh (the IRQs it "
                   "names keep their current affinity)", state_path_.c_str(), r.error().to_string().c_str());
  for (auto& [irq, cpus] : orig) original_.emplace(irq, std::move(cpus));
  if (def && !default_original_) default_original_ = def;
  if (reserved_.empty()) reserved_ = reserved;
  return ok();
}

Result<void> IrqSteering::save() const {
  if (state_path_.empty()) return ok();
  if (original_.empty() && !default_original_) {
    if (::unlink(state_path_.c_str()) != 0 && errno != ENOENT) {
      int e = errno;
      return MK_FAIL(e, "cannot remove IRQ affinity state", "%s: %s", state_path_.c_str(), std::strerror(e));
    }
    return ok();
  }
  return write_atomic(state_path_, state_text(original_, default_original_, reserved_));
}

Result<void> IrqSteering::apply(const CpuSet& reserved, const CpuSet& host) {
  MK_TRY_ASSIGN(std::vector<IrqLine> lines, read_irqs(root_));
  const bool restoring = reserved.empty();
  // 1. Targets, and the originals to keep before anything is written.
  std::map<int, CpuSet> target;
  std::map<int, CpuSet> orig = original_;
  std::map<int, bool> present;
  for (const IrqLine& l : lines) {
    present[l.irq] = true;
    const CpuSet from = orig.count(l.irq) ? orig[l.irq] : l.affinity;
    CpuSet want = restoring ? from : from - reserved;
    if (want.empty()) want = host;
    if (want.empty()) continue;  // nowhere to go: reported below
    if (want == l.affinity && !(l.effective && !restoring && l.effective->intersects(reserved))) continue;
    target[l.irq] = want;
    if (!orig.count(l.irq)) orig[l.irq] = l.affinity;
  }
  for (auto it = orig.begin(); it != orig.end();) it = present.count(it->first) ? std::next(it) : orig.erase(it);
  std::optional<CpuSet> def_orig = default_original_;
  std::optional<CpuSet> def_target;
  std::optional<Error> def_error;
  if (auto cur = root_.read_file("/proc/irq/default_smp_affinity")) {
    auto cur_set = parse_cpu_mask(*cur);
    if (cur_set) {
      const CpuSet from = def_orig ? *def_orig : *cur_set;
      CpuSet want = restoring ? from : from - reserved;
      if (want.empty()) want = host;
      if (!want.empty() && !(want == *cur_set)) {
        def_target = want;
        if (!def_orig) def_orig = *cur_set;
      }
    } else {
      def_error = cur_set.error();
    }
  } else {
    def_error = cur.error();
  }
  reserved_ = reserved;
  host_ = host;
  original_ = orig;
  default_original_ = def_orig;
  MK_TRY(save());

  // 2. The writes, each read back.
  auto write = [this](const std::string& abs, const std::string& value) {
    return writer_ ? writer_(abs, value) : write_proc(root_, abs, value);
  };
  not_movable_.clear();
  for (const auto& [irq, want] : target) {
    const std::string base = "/proc/irq/" + std::to_string(irq);
    auto w = write(base + "/smp_affinity_list", want.to_string());
    if (!w) {
      const int e = w.error().code();
      // write_irq_affinity() refuses a managed (or per-CPU) IRQ with EIO;
      // some kernels' irq_set_affinity() with EPERM.
      not_movable_[irq] = e == EIO || e == EPERM
                              ? std::string("managed: kernel refused the write: ") + std::strerror(e)
                              : std::string("kernel refused the write: ") + std::strerror(e);
      continue;
    }
    auto back = read_list(root_, base + "/smp_affinity_list");
    if (!back || !(*back == want)) {
      not_movable_[irq] = "kernel kept cpus " + (back ? back->to_string() : std::string("?"));
      continue;
    }
  }
  // x86 without interrupt remapping moves an IRQ when it next fires (from
  // the old CPU): its effective affinity follows then. One that has not
  // followed after a short wait is "pending", counted as moved and named.
  pending_.clear();
  if (!restoring) {
    for (int tries = 0; tries < 10; ++tries) {
      pending_.clear();
      for (const auto& [irq, want] : target) {
        if (not_movable_.count(irq)) continue;
        auto eff = read_list(root_, "/proc/irq/" + std::to_string(irq) + "/effective_affinity_list");
        if (eff && !eff->empty() && eff->intersects(reserved)) pending_.insert(irq);
      }
      if (pending_.empty() || !settle_) break;
      ::usleep(10 * 1000);
    }
  }
  for (const IrqLine& l : lines) {
    const CpuSet from = original_.count(l.irq) ? original_.at(l.irq) : l.affinity;
    if (!restoring && (from - reserved).empty() && host.empty())
      not_movable_[l.irq] = "no host cpu to move it to";
  }
  default_ok_ = false;
  if (def_target) {
    auto w = write("/proc/irq/default_smp_affinity", to_cpu_mask(*def_target));
    if (!w) def_error = w.error();
  }
  if (!def_error) {
    auto back = root_.read_file("/proc/irq/default_smp_affinity");
    auto set = back ? parse_cpu_mask(*back) : Result<CpuSet>(back.error());
    default_ok_ = set && !set->intersects(reserved);
  }
  MK_TRY_ASSIGN(lines_, read_irqs(root_));
  if (restoring) {
    // Everything is back: the originals are no longer needed (an IRQ the
    // kernel refused is at its original affinity anyway).
    original_.clear();
    default_original_.reset();
    MK_TRY(save());
  }
  if (def_error) return *def_error;
  return ok();
}

IrqSteerReport IrqSteering::report(const CpuSet& cpus) const {
  IrqSteerReport r;
  r.cpus = cpus;
  r.host = host_;
  r.total = lines_.size();
  r.default_steered = default_ok_;
  for (const IrqLine& l : lines_) {
    auto o = original_.find(l.irq);
    const CpuSet& from = o != original_.end() ? o->second : l.affinity;
    if (!from.intersects(cpus) && !l.affinity.intersects(cpus)) continue;
    ++r.on_cpus;
    auto nm = not_movable_.find(l.irq);
    if (nm == not_movable_.end() && !l.affinity.intersects(cpus)) {
      ++r.moved;
      if (l.effective && l.effective->intersects(cpus))
        r.pending.emplace_back(l.irq, l.name.empty() ? std::string("?") : l.name);
    } else {
      std::string why = nm != not_movable_.end() ? nm->second : "still on cpus " + l.affinity.to_string();
      r.not_movable.emplace_back(l.irq, (l.name.empty() ? std::string("?") : l.name) + ": " + why);
    }
  }
  return r;
}

}  // namespace mk
