// Cgroup layout detection and per-instance cgroups, and their cpus changing
// under a CPU move (see cgroup.h).
#include "mkernel/cgroup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>

#include "mkernel/instance.h"

namespace mk {
namespace {

std::string trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\n' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\n' || s[e - 1] == '\t')) --e;
  return std::string(s.substr(b, e - b));
}

// mountinfo and /proc/mounts escape space, tab, newline and backslash as \ooo.
std::string unescape_mount_path(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    std::size_t p = s.find(sep, start);
    if (p == std::string_view::npos) p = s.size();
    if (p > start) out.emplace_back(s.substr(start, p - start));
    start = p + 1;
  }
  return out;
}

bool has_token(std::string_view list, std::string_view token, char sep) {
  for (const auto& t : split(list, sep))
    if (t == token) return true;
  return false;
}

struct Mount {
  std::string point, fstype, options, super_options;
};

std::vector<Mount> parse_mountinfo(const std::string& text) {
  std::vector<Mount> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto f = split(line, ' ');
    std::size_t dash = 0;
    for (std::size_t i = 6; i < f.size(); ++i)
      if (f[i] == "-") { dash = i; break; }
    if (dash == 0 || f.size() < dash + 3) continue;
    Mount m;
    m.point = unescape_mount_path(f[4]);
    m.options = f[5];
    m.fstype = f[dash + 1];
    m.super_options = dash + 3 < f.size() ? f[dash + 3] : "";
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<Mount> parse_proc_mounts(const std::string& text) {
  std::vector<Mount> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto f = split(line, ' ');
    if (f.size() < 4) continue;
    Mount m;
    m.point = unescape_mount_path(f[1]);
    m.fstype = f[2];
    m.options = f[3];
    m.super_options = f[3];
    out.push_back(std::move(m));
  }
  return out;
}

bool writable_mount(const SysRoot& root, const Mount& m, std::string& why) {
  if (has_token(m.options, "ro", ',')) {
    why = m.point + " is mounted read-only";
    return false;
  }
  if (::access(root.path(m.point).c_str(), W_OK) != 0) {
    why = m.point + " not writable (" + std::strerror(errno) + ")";
    return false;
  }
  return true;
}

Result<void> write_control(const SysRoot& root, const std::string& file, std::string_view value,
                           bool truncate = false) {
  std::string p = root.path(file);
  // No O_TRUNC by default: cgroupfs ignores it, and a fake tree then behaves
  // like the kernel's read-back (a longer status line stays visible).
  int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC | (truncate ? O_TRUNC : 0));
  if (fd < 0) {
    int e = errno;
    return MK_FAIL(e, "cannot open cgroup file", "%s: %s", p.c_str(), std::strerror(e));
  }
  ssize_t n = ::write(fd, value.data(), value.size());
  int e = errno;
  ::close(fd);
  if (n < 0) {
    return MK_FAIL(e, "cgroup write refused", "writing '%.*s' to %s: %s",
                   static_cast<int>(value.size()), value.data(), p.c_str(), std::strerror(e));
  }
  if (static_cast<std::size_t>(n) != value.size())
    return MK_FAIL(EIO, "short cgroup write", "%s: %zd of %zu bytes", p.c_str(), n, value.size());
  return ok();
}

// A cpu or node list, read back by value: O_TRUNC (ignored by cgroupfs) makes
// a fake tree's read-back exact too when the list gets shorter.
Result<void> write_list(const SysRoot& root, const std::string& file, const CpuSet& list) {
  return write_control(root, file, list.to_string(), true);
}

Result<std::string> read_control(const SysRoot& root, const std::string& file) {
  MK_TRY_ASSIGN(std::string s, root.read_file(file, 1 << 16));
  return trim(s);
}

Result<CpuSet> read_list(const SysRoot& root, const std::string& file) {
  MK_TRY_ASSIGN(std::string s, read_control(root, file));
  if (s.empty()) return CpuSet{};
  return CpuSet::parse(s);
}

// mkdir; EEXIST is reported through `created` = false.
Result<void> make_dir(const SysRoot& root, const std::string& dir, bool& created) {
  std::string p = root.path(dir);
  created = false;
  if (::mkdir(p.c_str(), 0755) == 0) {
    created = true;
    return ok();
  }
  int e = errno;
  if (e == EEXIST) return ok();
  return MK_FAIL(e, "cannot create cgroup", "mkdir %s: %s", p.c_str(), std::strerror(e));
}

void remove_dir(const SysRoot& root, const std::string& dir) { ::rmdir(root.path(dir).c_str()); }

Result<std::vector<pid_t>> read_pids(const SysRoot& root, const std::string& dir) {
  MK_TRY_ASSIGN(std::string s, root.read_file(dir + "/cgroup.procs", 1 << 20));
  std::vector<pid_t> out;
  for (const auto& t : split(s, '\n')) {
    std::string v = trim(t);
    if (!v.empty()) out.push_back(static_cast<pid_t>(std::strtol(v.c_str(), nullptr, 10)));
  }
  return out;
}

// An instance's cpus, written to its cpuset `dir`. A v1 write that
// overlaps an exclusive sibling fails with EINVAL; when that sibling has no
// process in it, it is what a stop that could not remove its cgroups left
// (a task that lingered past the retries, or MKERNEL_FAULT=stop:release),
// and it would keep these cpus from every other instance for good. Such
// idle overlapping siblings are removed and the write retried once.
Result<void> write_instance_cpus(const SysRoot& root, const std::string& dir, const CpuSet& cpus) {
  auto r = write_list(root, dir + "/cpuset.cpus", cpus);
  if (r || r.error().code() != EINVAL) return r;
  const std::string parent = dir.substr(0, dir.rfind('/'));
  const std::string self = dir.substr(dir.rfind('/') + 1);
  int removed = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root.path(parent), ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name == self) continue;
    const std::string sib = parent + "/" + name;
    auto theirs = read_list(root, sib + "/cpuset.cpus");
    auto pids = read_pids(root, sib);
    if (!theirs || !pids || !pids->empty() || (*theirs & cpus).empty()) continue;
    if (::rmdir(root.path(sib).c_str()) == 0) ++removed;
  }
  if (removed == 0) return r;
  return write_list(root, dir + "/cpuset.cpus", cpus);
}

// Grow a cpuset directory's cpus/mems so it contains `cpus`/`mems` (a v1
// parent must contain its children's; a v2 child's are clipped otherwise).
// An empty `mems` leaves the mems alone (a CPU move).
Result<void> widen_cpuset(const SysRoot& root, const std::string& dir, const CpuSet& cpus,
                          const CpuSet& mems) {
  MK_TRY_ASSIGN(CpuSet have_cpus, read_list(root, dir + "/cpuset.cpus"));
  if (!cpus.is_subset_of(have_cpus))
    MK_TRY(write_list(root, dir + "/cpuset.cpus", have_cpus | cpus));
  if (mems.empty()) return ok();
  MK_TRY_ASSIGN(CpuSet have_mems, read_list(root, dir + "/cpuset.mems"));
  if (!mems.is_subset_of(have_mems))
    MK_TRY(write_list(root, dir + "/cpuset.mems", have_mems | mems));
  return ok();
}

Result<void> enable_controller(const SysRoot& root, const std::string& dir, const char* ctrl) {
  MK_TRY_ASSIGN(std::string on, read_control(root, dir + "/cgroup.subtree_control"));
  if (has_token(on, ctrl, ' ')) return ok();
  return write_control(root, dir + "/cgroup.subtree_control", std::string("+") + ctrl);
}

// Makes the shared parent directory of a hierarchy ready for instance
// children. v1 cpuset: cpus/mems before any child, cpu_exclusive=1 so a child
// may be exclusive (best effort: a refusal shows up at the child). v2: the
// controllers enabled for children, and a partition root for isolated
// children (best effort, "root invalid" is reverted to "member").
Result<void> prepare_parent(const SysRoot& root, const CgroupHierarchy& h, const std::string& parent,
                            bool cpuset, const CpuSet& cpus, const CpuSet& mems) {
  if (h.version == CgroupVersion::kV2)
    MK_TRY(enable_controller(root, h.mount, cpuset ? "cpuset" : "memory"));
  bool created = false;
  MK_TRY(make_dir(root, parent, created));
  if (h.version == CgroupVersion::kV2) {
    MK_TRY(enable_controller(root, parent, cpuset ? "cpuset" : "memory"));
  }
  if (!cpuset) return ok();
  MK_TRY(widen_cpuset(root, parent, cpus, mems));
  if (h.version == CgroupVersion::kV1) {
    auto excl = read_control(root, parent + "/cpuset.cpu_exclusive");
    if (excl && *excl != "1") (void)write_control(root, parent + "/cpuset.cpu_exclusive", "1");
  } else if (root.exists(parent + "/cpuset.cpus.partition")) {
    auto part = read_control(root, parent + "/cpuset.cpus.partition");
    if (part && *part == "member") {
      if (write_control(root, parent + "/cpuset.cpus.partition", "root")) {
        auto back = read_control(root, parent + "/cpuset.cpus.partition");
        if (!back || *back != "root")
          (void)write_control(root, parent + "/cpuset.cpus.partition", "member");
      }
    }
  }
  return ok();
}

// The instance directory: made, or reused when a crash left it empty.
Result<bool> make_instance_dir(const SysRoot& root, const std::string& dir) {
  bool created = false;
  MK_TRY(make_dir(root, dir, created));
  if (!created) {
    MK_TRY_ASSIGN(auto pids, read_pids(root, dir));
    if (!pids.empty())
      return MK_FAIL(EBUSY, "cgroup in use", "%s exists and holds %zu task(s) (pid %d)",
                     root.path(dir).c_str(), pids.size(), static_cast<int>(pids[0]));
  }
  return created;
}

// What an instance directory's exclusivity request came to: the "cpuset"
// guarantee, and the refusal when it is not in force.
struct Exclusivity {
  Guarantee guarantee;
  std::optional<Error> refused;
};

// v1: cpu_exclusive=1 on the instance directory. `base` describes the cgroup
// for the not-in-force text.
Exclusivity v1_exclusive(const SysRoot& root, const std::string& dir, const CpuSet& cpus,
                         const std::string& base) {
  auto r = write_control(root, dir + "/cpuset.cpu_exclusive", "1");
  if (r) return {{"cpuset", true, "v1 exclusive, cpus " + cpus.to_string()}, std::nullopt};
  return {{"cpuset", false, base + ", not exclusive (kernel refused cpu_exclusive=1: " +
                                std::strerror(r.error().code()) + "; an exclusive sibling overlaps?)"},
          r.error()};
}

// v2: an isolated partition, read back. "isolated invalid (reason)" means the
// kernel took the request but cannot honour it (the cgroup acts as a plain
// member): reverted to "member" and reported with the kernel's reason.
Result<Exclusivity> v2_isolate(const SysRoot& root, const std::string& dir, const CpuSet& cpus,
                               const std::string& base) {
  std::string file = dir + "/cpuset.cpus.partition";
  auto w = write_control(root, file, "isolated");
  std::string back;
  if (w) {
    MK_TRY_ASSIGN(back, read_control(root, file));
  } else {
    back = std::string("write refused: ") + std::strerror(w.error().code());
  }
  if (back == "isolated")
    return Exclusivity{{"cpuset", true, "v2 isolated partition, cpus " + cpus.to_string()}, std::nullopt};
  (void)write_control(root, file, "member");
  return Exclusivity{{"cpuset", false, base + ", not isolated (" + back + ")"},
                     MK_FAIL(EINVAL, "cpuset partition refused", "%s: %s", root.path(file).c_str(),
                             back.c_str())};
}

void set_guarantee(Guarantees& gs, Guarantee g) {
  for (auto& x : gs) {
    if (x.name == g.name) {
      x = std::move(g);
      return;
    }
  }
  gs.push_back(std::move(g));
}

}  // namespace

const char* to_string(CgroupVersion v) {
  switch (v) {
    case CgroupVersion::kV1: return "v1";
    case CgroupVersion::kV2: return "v2";
    case CgroupVersion::kNone: break;
  }
  return "none";
}

std::string CgroupLayout::to_string() const {
  auto one = [](const char* what, const CgroupHierarchy& h) {
    std::string s = what;
    s += ": ";
    if (h.version == CgroupVersion::kNone || !h.writable) return s + "no (" + h.why_not + ")";
    return s + mk::to_string(h.version) + " at " + h.mount;
  };
  return one("cpuset", cpuset) + "; " + one("memory", memory) +
         (v2_partition ? "; v2 partitions" : "");
}

Result<CgroupLayout> detect_cgroups(const SysRoot& root) {
  std::vector<Mount> mounts;
  if (auto mi = root.read_file("/proc/self/mountinfo")) {
    mounts = parse_mountinfo(*mi);
  } else if (auto pm = root.read_file("/proc/mounts")) {
    mounts = parse_proc_mounts(*pm);
  } else {
    return MK_FAIL(pm.error().code(), "cannot list mounts", "neither %s nor %s is readable: %s",
                   root.path("/proc/self/mountinfo").c_str(), root.path("/proc/mounts").c_str(),
                   pm.error().message());
  }

  CgroupLayout out;
  out.cpuset.why_not = "no cpuset hierarchy mounted";
  out.memory.why_not = "no memory hierarchy mounted";
  CgroupHierarchy v1_cpuset, v1_memory, v2_cpuset, v2_memory;
  for (const Mount& m : mounts) {
    std::string why;
    if (m.fstype == "cgroup2") {
      if (!out.unified_mount.empty()) continue;
      out.unified_mount = m.point;
      auto ctl = read_control(root, m.point + "/cgroup.controllers");
      std::string controllers = ctl ? *ctl : "";
      bool w = writable_mount(root, m, why);
      for (auto* h : {&v2_cpuset, &v2_memory}) {
        const char* name = h == &v2_cpuset ? "cpuset" : "memory";
        if (!has_token(controllers, name, ' ')) continue;
        *h = {CgroupVersion::kV2, m.point, w, why};
      }
    } else if (m.fstype == "cgroup") {
      bool w = writable_mount(root, m, why);
      if (has_token(m.super_options, "cpuset", ',') && v1_cpuset.version == CgroupVersion::kNone)
        v1_cpuset = {CgroupVersion::kV1, m.point, w, why};
      if (has_token(m.super_options, "memory", ',') && v1_memory.version == CgroupVersion::kNone)
        v1_memory = {CgroupVersion::kV1, m.point, w, why};
    }
  }
  // A controller is bound to one hierarchy at a time: prefer a writable v2,
  // then v1, and keep a non-writable one only to explain why it is unusable.
  auto pick = [](CgroupHierarchy& dst, const CgroupHierarchy& v2, const CgroupHierarchy& v1) {
    if (v2.version != CgroupVersion::kNone && v2.writable) dst = v2;
    else if (v1.version != CgroupVersion::kNone && v1.writable) dst = v1;
    else if (v2.version != CgroupVersion::kNone) dst = v2;
    else if (v1.version != CgroupVersion::kNone) dst = v1;
  };
  pick(out.cpuset, v2_cpuset, v1_cpuset);
  pick(out.memory, v2_memory, v1_memory);
  if (out.cpuset.version == CgroupVersion::kV2)
    out.v2_partition = root.exists(out.cpuset.mount + "/" + out.parent + "/cpuset.cpus.partition");
  return out;
}

Result<InstanceCgroup> InstanceCgroup::create(const SysRoot& root, const CgroupLayout& layout,
                                              std::string_view name, const CpuSet& cpus,
                                              const CpuSet& mems, const Options& opts) {
  MK_TRY(validate_instance_name(name));
  if (cpus.empty()) return MK_FAIL(EINVAL, "bad cgroup request", "instance '%.*s' has no cpus",
                                   static_cast<int>(name.size()), name.data());
  if (mems.empty()) return MK_FAIL(EINVAL, "bad cgroup request", "instance '%.*s' has no nodes",
                                   static_cast<int>(name.size()), name.data());
  InstanceCgroup cg;
  cg.root_ = root;
  cg.layout_ = layout;

  // Directories this call made, removed again if a later step fails.
  std::vector<std::string> made;
  struct Rollback {
    const SysRoot& root;
    std::vector<std::string>& dirs;
    bool armed = true;
    ~Rollback() {
      if (armed)
        for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) remove_dir(root, *it);
    }
  } rollback{root, made};

  const CgroupHierarchy& ch = layout.cpuset;
  if (ch.version != CgroupVersion::kNone && ch.writable) {
    std::string parent = ch.mount + "/" + layout.parent;
    std::string dir = parent + "/" + std::string(name);
    MK_TRY(prepare_parent(root, ch, parent, true, cpus, mems));
    MK_TRY_ASSIGN(bool created, make_instance_dir(root, dir));
    if (created) made.push_back(dir);
    cg.cpuset_dir_ = dir;
    MK_TRY(write_instance_cpus(root, dir, cpus));
    MK_TRY(write_list(root, dir + "/cpuset.mems", mems));
    std::string base = std::string(to_string(ch.version)) + " cpus " + cpus.to_string() +
                       " mems " + mems.to_string();
    if (ch.version == CgroupVersion::kV1 || root.exists(dir + "/cpuset.cpus.partition")) {
      Exclusivity x;
      if (ch.version == CgroupVersion::kV1) {
        x = v1_exclusive(root, dir, cpus, base);
      } else {
        MK_TRY_ASSIGN(x, v2_isolate(root, dir, cpus, base));
      }
      if (x.refused && opts.require_exclusive) return *x.refused;
      cg.guarantees_.push_back(std::move(x.guarantee));
    } else {
      if (opts.require_exclusive)
        return MK_FAIL(EINVAL, "cpuset partition unsupported", "%s has no cpuset.cpus.partition",
                       root.path(dir).c_str());
      cg.guarantees_.push_back({"cpuset", false, base + ", not exclusive (no cpuset.cpus.partition)"});
    }
  } else {
    cg.guarantees_.push_back({"cpuset", false, "no (" + ch.why_not + ")"});
  }

  const CgroupHierarchy& mh = layout.memory;
  if (opts.memory_limit == 0) {
    cg.guarantees_.push_back({"memory cgroup", false, "no (no limit requested)"});
  } else if (mh.version != CgroupVersion::kNone && mh.writable) {
    std::string parent = mh.mount + "/" + layout.parent;
    std::string dir = parent + "/" + std::string(name);
    if (dir != cg.cpuset_dir_) {
      MK_TRY(prepare_parent(root, mh, parent, false, cpus, mems));
      MK_TRY_ASSIGN(bool created, make_instance_dir(root, dir));
      if (created) made.push_back(dir);
    } else {
      // Same v2 directory as the cpuset: only the controller is missing.
      MK_TRY(enable_controller(root, mh.mount, "memory"));
      MK_TRY(enable_controller(root, parent, "memory"));
    }
    cg.memory_dir_ = dir;
    const char* file = mh.version == CgroupVersion::kV1 ? "/memory.limit_in_bytes" : "/memory.max";
    MK_TRY(write_control(root, dir + file, std::to_string(opts.memory_limit)));
    cg.guarantees_.push_back({"memory cgroup", true, std::string(to_string(mh.version)) +
                                                         " limit " +
                                                         std::to_string(opts.memory_limit)});
  } else {
    cg.guarantees_.push_back({"memory cgroup", false, "no (" + mh.why_not + ")"});
  }
  rollback.armed = false;
  return cg;
}

Result<InstanceCgroup> InstanceCgroup::open_existing(const SysRoot& root, const CgroupLayout& layout,
                                                     std::string_view name) {
  MK_TRY(validate_instance_name(name));
  InstanceCgroup cg;
  cg.root_ = root;
  cg.layout_ = layout;
  for (auto [h, dst] : {std::pair{&layout.cpuset, &cg.cpuset_dir_},
                        std::pair{&layout.memory, &cg.memory_dir_}}) {
    if (h->version == CgroupVersion::kNone) continue;
    std::string dir = h->mount + "/" + layout.parent + "/" + std::string(name);
    if (root.exists(dir)) *dst = dir;
  }
  if (cg.cpuset_dir_.empty() && cg.memory_dir_.empty())
    return MK_FAIL(ENOENT, "no such instance cgroup", "no cgroup directory for '%.*s' (%s)",
                   static_cast<int>(name.size()), name.data(), layout.to_string().c_str());
  if (!cg.cpuset_dir_.empty())
    cg.guarantees_.push_back({"cpuset", true, std::string(to_string(layout.cpuset.version)) +
                                                  " (re-opened)"});
  if (!cg.memory_dir_.empty())
    cg.guarantees_.push_back({"memory cgroup", true,
                              std::string(to_string(layout.memory.version)) + " (re-opened)"});
  return cg;
}

Result<void> InstanceCgroup::attach(pid_t pid) const {
  std::string v = std::to_string(pid);
  if (!cpuset_dir_.empty()) MK_TRY(write_control(root_, cpuset_dir_ + "/cgroup.procs", v));
  if (!memory_dir_.empty() && memory_dir_ != cpuset_dir_)
    MK_TRY(write_control(root_, memory_dir_ + "/cgroup.procs", v));
  return ok();
}

Result<void> InstanceCgroup::set_cpus(const CpuSet& cpus) {
  if (cpus.empty())
    return MK_FAIL(EINVAL, "bad cgroup request", "an instance cgroup needs at least one cpu (%s)",
                   cpuset_dir_.empty() ? "no cpuset" : root_.path(cpuset_dir_).c_str());
  if (cpuset_dir_.empty()) return ok();
  const CgroupVersion v = layout_.cpuset.version;
  // A v1 parent must contain its children's cpus (the kernel refuses the
  // child's write otherwise); a v2 child's would be clipped. The parent is
  // never narrowed here: other instances may hold what this one gives up.
  const std::string parent = cpuset_dir_.substr(0, cpuset_dir_.rfind('/'));
  MK_TRY(widen_cpuset(root_, parent, cpus, CpuSet{}));
  MK_TRY(write_instance_cpus(root_, cpuset_dir_, cpus));

  const std::string base = std::string(to_string(v)) + " cpus " + cpus.to_string();
  if (v == CgroupVersion::kV1) {
    // cpu_exclusive survives a cpus write; a refusal at create() is retried
    // (the overlapping sibling may be gone).
    auto excl = read_control(root_, cpuset_dir_ + "/cpuset.cpu_exclusive");
    if (excl && *excl == "1") {
      set_guarantee(guarantees_, {"cpuset", true, "v1 exclusive, cpus " + cpus.to_string()});
    } else {
      set_guarantee(guarantees_, v1_exclusive(root_, cpuset_dir_, cpus, base).guarantee);
    }
  } else if (root_.exists(cpuset_dir_ + "/cpuset.cpus.partition")) {
    // The new cpus may make the partition invalid (or valid again).
    MK_TRY_ASSIGN(std::string state, read_control(root_, cpuset_dir_ + "/cpuset.cpus.partition"));
    if (state == "isolated") {
      set_guarantee(guarantees_, {"cpuset", true, "v2 isolated partition, cpus " + cpus.to_string()});
    } else {
      MK_TRY_ASSIGN(Exclusivity x, v2_isolate(root_, cpuset_dir_, cpus, base));
      set_guarantee(guarantees_, std::move(x.guarantee));
    }
  } else {
    set_guarantee(guarantees_, {"cpuset", false, base + ", not exclusive (no cpuset.cpus.partition)"});
  }
  return ok();
}

Result<void> InstanceCgroup::set_memory(uint64_t limit, const CpuSet& mems) {
  if (mems.empty())
    return MK_FAIL(EINVAL, "bad cgroup request", "an instance cgroup needs at least one memory node (%s)",
                   cpuset_dir_.empty() ? "no cpuset" : root_.path(cpuset_dir_).c_str());
  if (!cpuset_dir_.empty()) {
    const std::string parent = cpuset_dir_.substr(0, cpuset_dir_.rfind('/'));
    MK_TRY(widen_cpuset(root_, parent, CpuSet{}, mems));
    MK_TRY(write_list(root_, cpuset_dir_ + "/cpuset.mems", mems));
  }
  if (!memory_dir_.empty() && limit > 0) {
    const CgroupVersion v = layout_.memory.version;
    const char* file = v == CgroupVersion::kV1 ? "/memory.limit_in_bytes" : "/memory.max";
    MK_TRY(write_control(root_, memory_dir_ + file, std::to_string(limit)));
    set_guarantee(guarantees_, {"memory cgroup", true, std::string(to_string(v)) + " limit " + std::to_string(limit)});
  }
  return ok();
}

Guarantee InstanceCgroup::make_mems_exclusive() {
  if (cpuset_dir_.empty())
    return {"memory nodes", false, "not exclusive (no cpuset cgroup: " + layout_.cpuset.why_not + ")"};
  auto mems = read_control(root_, cpuset_dir_ + "/cpuset.mems");
  const std::string nodes = mems ? *mems : std::string("?");
  if (layout_.cpuset.version != CgroupVersion::kV1)
    return {"memory nodes", false, "node(s) " + nodes + " not exclusive (cgroup v2 has no mem_exclusive; "
                                   "partitions cover cpus only)"};
  const std::string parent = cpuset_dir_.substr(0, cpuset_dir_.rfind('/'));
  for (const std::string& dir : {parent, cpuset_dir_}) {
    auto cur = read_control(root_, dir + "/cpuset.mem_exclusive");
    if (cur && *cur == "1") continue;
    if (auto w = write_control(root_, dir + "/cpuset.mem_exclusive", "1"); !w)
      return {"memory nodes", false, "node(s) " + nodes + " not exclusive (kernel refused mem_exclusive=1 on " +
                                         dir + ": " + std::strerror(w.error().code()) +
                                         "; another cpuset uses these nodes?)"};
  }
  Guarantee g{"memory nodes", true, "v1 mem_exclusive, node(s) " + nodes};
  set_guarantee(guarantees_, g);
  return g;
}

Result<std::vector<pid_t>> InstanceCgroup::pids() const {
  if (!cpuset_dir_.empty()) return read_pids(root_, cpuset_dir_);
  if (!memory_dir_.empty()) return read_pids(root_, memory_dir_);
  return std::vector<pid_t>{};
}

Result<void> InstanceCgroup::destroy() {
  for (const std::string* dir : {&cpuset_dir_, &memory_dir_}) {
    if (dir->empty() || !root_.exists(*dir)) continue;
    MK_TRY_ASSIGN(auto left, read_pids(root_, *dir));
    if (!left.empty()) {
      std::string list;
      for (std::size_t i = 0; i < left.size() && i < 8; ++i)
        list += (i ? " " : "") + std::to_string(left[i]);
      return MK_FAIL(EBUSY, "cgroup still has tasks", "%s: %zu task(s) left: %s%s",
                     root_.path(*dir).c_str(), left.size(), list.c_str(),
                     left.size() > 8 ? " ..." : "");
    }
  }
  for (std::string* dir : {&cpuset_dir_, &memory_dir_}) {
    if (dir->empty()) continue;
    std::string p = root_.path(*dir);
    if (::rmdir(p.c_str()) != 0 && errno != ENOENT) {
      int e = errno;
      return MK_FAIL(e, "cannot remove cgroup", "rmdir %s: %s", p.c_str(), std::strerror(e));
    }
    // The shared parent goes when its last instance does; EBUSY/ENOTEMPTY
    // means another instance still lives there.
    std::string parent = dir->substr(0, dir->rfind('/'));
    ::rmdir(root_.path(parent).c_str());
    if (&*dir == &cpuset_dir_ && memory_dir_ == cpuset_dir_) memory_dir_.clear();
    dir->clear();
  }
  return ok();
}

}  // namespace mk
