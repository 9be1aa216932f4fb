// Picture of the partition (see mkernel/picture.h): the colour key, the
// hwloc-annotated topology, and lstopo / rsvg-convert run under a timeout.
#include "mkernel/picture.h"

#include <dirent.h>
#include <fcntl.h>
#include <hwloc.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "hwloc_handle.h"
#include "mk/units.h"

extern char** environ;

namespace mk {
namespace {

// ---- the colour key -------------------------------------------------------

// Colour families: the most efficient CPU kind cool, the most performant warm,
// kinds between green; a machine without kinds a mixed qualitative palette.
enum class Family { kCool, kWarm, kMiddle, kMixed };

struct Palette {
  std::vector<const char*> colours;
  double hue_lo, hue_hi;  // for instances past the list
};

const Palette& palette(Family f) {
  static const Palette cool{{"#1f77b4", "#17becf", "#3949ab", "#00897b", "#5e35b1", "#0277bd"}, 180, 250};
  static const Palette warm{{"#d62728", "#ff7f0e", "#c2185b", "#8c564b", "#f4a300", "#e64a19"}, 0, 45};
  static const Palette middle{{"#2ca02c", "#7cb342", "#9e9d24", "#558b2f"}, 80, 150};
  static const Palette mixed{
      {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79"},
      0, 360};
  switch (f) {
    case Family::kCool: return cool;
    case Family::kWarm: return warm;
    case Family::kMiddle: return middle;
    case Family::kMixed: break;
  }
  return mixed;
}

std::string hex(unsigned r, unsigned g, unsigned b) {
  char s[8];
  std::snprintf(s, sizeof s, "#%02x%02x%02x", r & 0xff, g & 0xff, b & 0xff);
  return s;
}

// The n-th colour of a family: the list first, then hues spread by the golden
// ratio over the family's range, alternating two brightnesses.
std::string colour_of(Family f, std::size_t n) {
  const Palette& p = palette(f);
  if (n < p.colours.size()) return p.colours[n];
  std::size_t k = n - p.colours.size();
  double frac = std::fmod(0.5 + static_cast<double>(k) * 0.6180339887, 1.0);
  double h = p.hue_lo + (p.hue_hi - p.hue_lo) * frac;
  double s = 0.7, v = (k % 2) ? 0.62 : 0.85;
  double c = v * s, hp = std::fmod(h, 360.0) / 60.0, x = c * (1 - std::fabs(std::fmod(hp, 2.0) - 1));
  double r = 0, g = 0, b = 0;
  if (hp < 1) r = c, g = x;
  else if (hp < 2) r = x, g = c;
  else if (hp < 3) g = c, b = x;
  else if (hp < 4) g = x, b = c;
  else if (hp < 5) r = x, b = c;
  else r = c, b = x;
  double m = v - c;
  auto to8 = [m](double u) { return static_cast<unsigned>(std::lround((u + m) * 255)); };
  return hex(to8(r), to8(g), to8(b));
}

unsigned channel(const std::string& colour, int i) {
  return static_cast<unsigned>(std::strtoul(colour.substr(1 + 2 * i, 2).c_str(), nullptr, 16));
}

std::string text_colour_for(const std::string& bg) {
  double lum = 0.299 * channel(bg, 0) + 0.587 * channel(bg, 1) + 0.114 * channel(bg, 2);
  return lum > 150 ? "#000000" : "#ffffff";
}

// The kind most of `cpus` are of (ties: the lower), -1 without kinds.
int32_t main_kind(const Topology& topo, const CpuSet& cpus) {
  std::map<int32_t, std::size_t> count;
  for (uint32_t c : cpus)
    if (const Pu* pu = topo.find_pu(c); pu && pu->kind >= 0) ++count[pu->kind];
  int32_t kind = -1;
  std::size_t best = 0;
  for (auto [k, n] : count)
    if (n > best) best = n, kind = k;
  return kind;
}

std::string memory_text(const std::vector<MemoryRegion>& memory) {
  std::string s;
  for (const auto& r : memory) {
    if (!s.empty()) s += ", ";
    s += format_size(r.bytes) + " on node " + std::to_string(r.node);
  }
  return s.empty() ? "no memory" : s;
}

// ---- hwloc ----------------------------------------------------------------

// The same discovery as topology.cc: important I/O devices, no GPU-runtime
// plugins, so that the picture shows what mk::Topology describes, plus Misc
// objects.
Result<void> load_again(const Topology& topo, HwlocHandle& h) {
  if (hwloc_topology_init(h.out()) != 0)
    return MK_FAIL(EIO, "hwloc init failed", "hwloc_topology_init: %s", std::strerror(errno));
  (void)hwloc_topology_set_io_types_filter(h.get(), HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  // Misc objects are filtered out by default, and the labels are Misc objects.
  if (hwloc_topology_set_type_filter(h.get(), HWLOC_OBJ_MISC, HWLOC_TYPE_FILTER_KEEP_ALL) != 0)
    return MK_FAIL(EIO, "hwloc configuration failed", "Misc type filter: %s", std::strerror(errno));
  for (const char* name : {"opencl", "gl", "cuda", "nvml", "rsmi", "levelzero"})
    (void)hwloc_topology_set_components(h.get(), HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, name);
  if (!topo.is_live && hwloc_topology_set_xml(h.get(), topo.source.c_str()) != 0) {
    return MK_FAIL(EIO, "hwloc load failed", "'%s': hwloc_topology_set_xml: %s", topo.source.c_str(),
                   std::strerror(errno));
  }
  if (hwloc_topology_load(h.get()) != 0) {
    return MK_FAIL(EIO, "hwloc load failed", "%s: hwloc_topology_load: %s", topo.source.c_str(),
                   std::strerror(errno));
  }
  return ok();
}

std::string style(const std::string& bg, const std::string& text) { return "Background=" + bg + ";Text=" + text; }

Result<void> add_info(hwloc_obj_t obj, const char* name, const std::string& value) {
  if (hwloc_obj_add_info(obj, name, value.c_str()) != 0)
    return MK_FAIL(EIO, "hwloc annotation failed", "hwloc_obj_add_info(%s): %s", name, std::strerror(errno));
  return ok();
}

// A coloured label box (an hwloc Misc object) inside `parent`.
Result<void> add_label(hwloc_topology_t t, hwloc_obj_t parent, const std::string& text, const PictureEntry& e) {
  hwloc_obj_t misc = hwloc_topology_insert_misc_object(t, parent, text.c_str());
  if (!misc)
    return MK_FAIL(EIO, "hwloc annotation failed", "hwloc_topology_insert_misc_object('%s'): %s", text.c_str(),
                   std::strerror(errno));
  MK_TRY(add_info(misc, "lstopoStyle", style(e.colour, e.text_colour)));
  return add_info(misc, "mkernelInstance", e.name);
}

CpuSet cpus_of(hwloc_const_cpuset_t set) {
  CpuSet out;
  if (!set) return out;
  for (int i = hwloc_bitmap_first(set); i >= 0 && static_cast<uint32_t>(i) < CpuSet::kMaxCpus;
       i = hwloc_bitmap_next(set, i))
    out.insert(static_cast<uint32_t>(i));
  return out;
}

// ---- files and tools --------------------------------------------------------

// A private directory for the annotated XML, the SVG and the tools' stderr;
// everything in it goes with it.
class TempDir {
 public:
  Result<void> make() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/mkpicture.XXXXXX";
    if (!::mkdtemp(tmpl.data())) {
      int e = errno;
      return MK_FAIL(e, "cannot make a temporary directory", "%s: %s", tmpl.c_str(), std::strerror(e));
    }
    path_ = tmpl;
    return ok();
  }
  ~TempDir() {
    if (path_.empty()) return;
    if (DIR* d = ::opendir(path_.c_str())) {
      while (struct dirent* ent = ::readdir(d)) {
        if (std::strcmp(ent->d_name, ".") != 0 && std::strcmp(ent->d_name, "..") != 0)
          ::unlink((path_ + "/" + ent->d_name).c_str());
      }
      ::closedir(d);
    }
    ::rmdir(path_.c_str());
  }
  std::string file(const char* name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The output under a hidden temporary name in its own directory (which proves
// the directory writable before any work), renamed over `out` at the end.
class OutputFile {
 public:
  Result<void> open(const std::string& out) {
    out_ = out;
    auto slash = out.rfind('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : out.substr(0, slash));
    std::string base = slash == std::string::npos ? out : out.substr(slash + 1);
    std::string tmpl = (dir == "/" ? "" : dir) + "/." + base + ".XXXXXX";
    fd_ = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd_ < 0) {
      int e = errno;
      return MK_FAIL(e, "cannot write picture", "'%s': %s (its directory must exist and be writable)", out.c_str(),
                     std::strerror(e));
    }
    tmp_ = tmpl;
    (void)::fchmod(fd_, 0644);
    return ok();
  }
  Result<void> commit(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(fd_, data.data() + off, data.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int e = errno;
        return MK_FAIL(e, "cannot write picture", "'%s': %s", out_.c_str(), std::strerror(e));
      }
      off += static_cast<std::size_t>(n);
    }
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0 || ::rename(tmp_.c_str(), out_.c_str()) != 0) {
      int e = errno;
      return MK_FAIL(e, "cannot write picture", "'%s': %s", out_.c_str(), std::strerror(e));
    }
    tmp_.clear();
    return ok();
  }
  ~OutputFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
  }

 private:
  std::string out_, tmp_;
  int fd_ = -1;
};

Result<std::string> read_file(const std::string& path, const char* what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return MK_FAIL(EIO, "picture tool wrote nothing", "%s: '%s': %s", what, path.c_str(), std::strerror(e));
  }
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return data;
}

std::string find_in_path(const char* name) {
  const char* env = std::getenv("PATH");
  std::string path = env ? env : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (!dir.empty()) {
      std::string cand = dir + "/" + name;
      struct stat st{};
      if (::stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(cand.c_str(), X_OK) == 0) return cand;
    }
    start = end + 1;
  }
  return {};
}

std::string first_line(const std::string& text) {
  std::size_t b = 0;
  while (b < text.size()) {
    std::size_t e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    std::string line = text.substr(b, e - b);
    if (line.find_first_not_of(" \t\r") != std::string::npos) return line.substr(0, 300);
    b = e + 1;
  }
  return "no message";
}

// Runs argv[0] with stdin and stdout on /dev/null and stderr into `err_path`,
// waiting at most timeout_ms.
Result<void> run_tool(const std::vector<std::string>& argv, const std::string& err_path, int timeout_ms) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  sigset_t none, dfl;
  sigemptyset(&none);
  sigemptyset(&dfl);
  sigaddset(&dfl, SIGPIPE);
  sigaddset(&dfl, SIGTERM);
  sigaddset(&dfl, SIGINT);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &dfl);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, argv[0].c_str(), &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return MK_FAIL(rc, "cannot run picture tool", "%s: %s", argv[0].c_str(), std::strerror(rc));

  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      int e = errno;
      return MK_FAIL(e, "cannot wait for picture tool", "%s: waitpid: %s", argv[0].c_str(), std::strerror(e));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return MK_FAIL(ETIMEDOUT, "picture tool timed out", "%s did not finish within %d ms; it was killed",
                     argv[0].c_str(), timeout_ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ok();
  auto err = read_file(err_path, argv[0].c_str());
  std::string msg = err ? first_line(*err) : "no message";
  if (WIFSIGNALED(status)) {
    return MK_FAIL(EIO, "picture tool failed", "%s was killed by signal %d: %s", argv[0].c_str(), WTERMSIG(status),
                   msg.c_str());
  }
  return MK_FAIL(EIO, "picture tool failed", "%s exited with status %d: %s", argv[0].c_str(), WEXITSTATUS(status),
                 msg.c_str());
}

// lstopo writes viewBox='0 0 322px 324px'; units are not allowed there and
// librsvg renders such a file blank.
Result<void> fix_viewbox(std::string& svg) {
  if (svg.find("<svg") == std::string::npos)
    return MK_FAIL(EIO, "lstopo output is not SVG", "no <svg element in %zu bytes", svg.size());
  for (const char* key : {"viewBox='", "viewBox=\""}) {
    std::size_t b = svg.find(key);
    if (b == std::string::npos) continue;
    b += std::strlen(key);
    std::size_t e = svg.find(key[std::strlen(key) - 1], b);
    if (e == std::string::npos) break;
    std::string box = svg.substr(b, e - b);
    for (std::size_t p; (p = box.find("px")) != std::string::npos;) box.erase(p, 2);
    svg.replace(b, e - b, box);
    break;
  }
  return ok();
}

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (std::size_t i = 0; i < suffix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i]) return false;
  }
  return true;
}

}  // namespace

const char* to_string(PictureFormat f) { return f == PictureFormat::kPng ? "png" : "svg"; }

Result<PictureFormat> picture_format(std::string_view path) {
  if (ends_with_ci(path, ".svg") && path.size() > 4) return PictureFormat::kSvg;
  if (ends_with_ci(path, ".png") && path.size() > 4) return PictureFormat::kPng;
  return MK_FAIL(EINVAL, "unknown picture format", "'%.*s': the file name must end in .png or .svg",
                 static_cast<int>(path.size()), path.data());
}

PictureKey picture_key(const Topology& topo, const Partition& part) {
  PictureKey key;
  const bool kinds = topo.kinds.size() >= 2;
  const int32_t top_kind = kinds ? static_cast<int32_t>(topo.kinds.size()) - 1 : -1;
  std::map<Family, std::size_t> used;
  CpuSet owned;
  for (const Instance& i : part.instances) {
    PictureEntry e;
    e.name = i.name;
    e.cpus = i.cpus;
    e.memory = i.memory;
    for (const auto& d : i.devices)
      if (d.kind == DeviceKind::kNet || d.kind == DeviceKind::kBlock) e.devices.push_back(d.target);
    Family f = Family::kMixed;
    if (int32_t k = kinds ? main_kind(topo, i.cpus) : -1; k >= 0) {
      if (k == 0) f = Family::kCool, e.kind = "E-cores";
      else if (k == top_kind) f = Family::kWarm, e.kind = "P-cores";
      else f = Family::kMiddle, e.kind = "kind " + std::to_string(k);
    }
    e.colour = colour_of(f, used[f]++);
    e.text_colour = text_colour_for(e.colour);
    owned |= i.cpus;
    key.instances.push_back(std::move(e));
  }
  key.host_cpus = part.has_pool ? topo.all_pus() - part.pool.cpus : topo.all_pus();
  key.free_cpus = part.has_pool ? part.pool.cpus - owned : CpuSet{};

  key.legend.push_back("mkernel partition of " + topo.source + (part.has_pool ? "" : " (no pool set)"));
  // SVG collapses runs of blanks: fields are separated by ", ", not aligned.
  for (const auto& e : key.instances) {
    std::string line = e.name + ": " + e.colour + ", cpus " + e.cpus.to_string();
    if (!e.kind.empty()) line += " (" + e.kind + ")";
    line += ", " + memory_text(e.memory);
    if (!e.devices.empty()) {
      line += ", devices";
      for (const auto& d : e.devices) line += " " + d;
    }
    key.legend.push_back(line);
  }
  if (!key.free_cpus.empty())
    key.legend.push_back(std::string("free: ") + kPictureFreeColour + ", cpus " + key.free_cpus.to_string() +
                         " (in the pool, no instance)");
  if (!key.host_cpus.empty()) key.legend.push_back("host: plain, cpus " + key.host_cpus.to_string());
  return key;
}

Result<void> annotate_topology(const Topology& topo, const PictureKey& key, const std::string& xml_path) {
  HwlocHandle h;
  MK_TRY(load_again(topo, h));
  hwloc_topology_t t = h.get();

  for (const PictureEntry& e : key.instances) {
    const std::string st = style(e.colour, e.text_colour);
    for (uint32_t c : e.cpus) {
      hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(t, c);
      if (!pu) {
        return MK_FAIL(EINVAL, "instance CPU not in topology",
                       "cpu %u of instance '%s' is not in %s; is this state from another machine?", c,
                       e.name.c_str(), topo.source.c_str());
      }
      MK_TRY(add_info(pu, "lstopoStyle", st));
      MK_TRY(add_info(pu, "mkernelInstance", e.name));
    }
    // A label in every package holding some of its CPUs (the root without packages).
    int npkg = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE);
    if (npkg <= 0) {
      if (!e.cpus.empty()) MK_TRY(add_label(t, hwloc_get_root_obj(t), e.name + ": cpus " + e.cpus.to_string(), e));
    }
    for (int p = 0; p < npkg; ++p) {
      hwloc_obj_t pkg = hwloc_get_obj_by_type(t, HWLOC_OBJ_PACKAGE, static_cast<unsigned>(p));
      CpuSet here = e.cpus & cpus_of(pkg->cpuset);
      if (!here.empty()) MK_TRY(add_label(t, pkg, e.name + ": cpus " + here.to_string(), e));
    }
  }
  for (uint32_t c : key.free_cpus) {
    if (hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(t, c))
      MK_TRY(add_info(pu, "lstopoStyle", style(kPictureFreeColour, "#000000")));
  }

  // Memory: a label per instance in each node it has memory on; a node that
  // holds one instance's memory only takes that instance's colour.
  std::map<uint32_t, std::vector<std::pair<const PictureEntry*, uint64_t>>> by_node;
  for (const PictureEntry& e : key.instances)
    for (const auto& r : e.memory) by_node[r.node].push_back({&e, r.bytes});
  for (const auto& [node, holders] : by_node) {
    hwloc_obj_t obj = hwloc_get_numanode_obj_by_os_index(t, node);
    if (!obj) {
      return MK_FAIL(EINVAL, "instance memory node not in topology",
                     "node %u (memory of instance '%s') is not in %s; is this state from another machine?", node,
                     holders.front().first->name.c_str(), topo.source.c_str());
    }
    for (const auto& [e, bytes] : holders) MK_TRY(add_label(t, obj, e->name + ": " + format_size(bytes), *e));
    const auto* first = holders.front().first;  // (clang 14 cannot capture a structured binding)
    bool one = std::all_of(holders.begin(), holders.end(), [first](const auto& x) { return x.first == first; });
    if (one) MK_TRY(add_info(obj, "lstopoStyle", style(holders.front().first->colour, holders.front().first->text_colour)));
  }

  // Devices: the OS devices (eth1, nvme0n1) an instance holds.
  for (hwloc_obj_t os = nullptr; (os = hwloc_get_next_osdev(t, os)) != nullptr;) {
    if (!os->name) continue;
    for (const PictureEntry& e : key.instances) {
      if (std::find(e.devices.begin(), e.devices.end(), os->name) == e.devices.end()) continue;
      MK_TRY(add_info(os, "lstopoStyle", style(e.colour, e.text_colour)));
      MK_TRY(add_info(os, "mkernelInstance", e.name));
    }
  }

  hwloc_obj_t root = hwloc_get_root_obj(t);
  for (const auto& line : key.legend) MK_TRY(add_info(root, "lstopoLegend", line));

  if (hwloc_topology_export_xml(t, xml_path.c_str(), 0) != 0) {
    int e = errno;
    return MK_FAIL(EIO, "hwloc export failed", "hwloc_topology_export_xml('%s'): %s", xml_path.c_str(),
                   std::strerror(e));
  }
  return ok();
}

Result<PictureResult> draw_partition(const Topology& topo, const Partition& part, const std::string& out_path,
                                     const PictureOptions& options) {
  MK_TRY_ASSIGN(PictureFormat format, picture_format(out_path));
  std::string lstopo = find_in_path("lstopo-no-graphics");
  if (lstopo.empty()) lstopo = find_in_path("lstopo");
  if (lstopo.empty()) {
    return MK_FAIL(ENOENT, "lstopo not found",
                   "neither lstopo-no-graphics nor lstopo is in PATH; install hwloc-nox (apt-get install hwloc-nox)");
  }
  std::string rsvg;
  if (format == PictureFormat::kPng) {
    rsvg = find_in_path("rsvg-convert");
    if (rsvg.empty()) {
      return MK_FAIL(ENOENT, "rsvg-convert not found",
                     "a .png needs rsvg-convert in PATH; install librsvg2-bin (apt-get install librsvg2-bin), or "
                     "ask for a .svg");
    }
  }
  OutputFile out;
  MK_TRY(out.open(out_path));

  PictureResult res;
  res.path = out_path;
  res.format = format;
  res.key = picture_key(topo, part);

  TempDir tmp;
  MK_TRY(tmp.make());
  const std::string xml = tmp.file("annotated.xml"), svg_path = tmp.file("picture.svg"), err = tmp.file("tool.err");
  MK_TRY(annotate_topology(topo, res.key, xml));
  MK_TRY(run_tool({lstopo, "-f", "--no-factorize", "--if", "xml", "--input", xml, "--of", "svg", svg_path}, err,
                  options.timeout_ms));
  MK_TRY_ASSIGN(std::string data, read_file(svg_path, lstopo.c_str()));
  MK_TRY(fix_viewbox(data));

  if (format == PictureFormat::kPng) {
    const std::string fixed = tmp.file("fixed.svg"), png = tmp.file("picture.png");
    int fd = ::open(fixed.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      int e = errno;
      return MK_FAIL(e, "cannot write temporary SVG", "%s: %s", fixed.c_str(), std::strerror(e));
    }
    bool wrote = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
    ::close(fd);
    if (!wrote) return MK_FAIL(EIO, "cannot write temporary SVG", "%s: short write", fixed.c_str());
    MK_TRY(run_tool({rsvg, "-f", "png", "-b", "white", "-o", png, fixed}, err, options.timeout_ms));
    MK_TRY_ASSIGN(data, read_file(png, rsvg.c_str()));
    static const char kSig[] = "\x89PNG\r\n\x1a\n";
    if (data.size() < 64 || data.compare(0, 8, kSig, 8) != 0)
      return MK_FAIL(EIO, "rsvg-convert output is not PNG", "%zu bytes without the PNG signature", data.size());
  }
  MK_TRY(out.commit(data));
  res.bytes = data.size();
  return res;
}

}  // namespace mk
