// Runtime directory, lock and atomic state file (see state_store.h).
#include "state_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <set>

#include "json_codec.h"

namespace mk::tools {

namespace json = boost::json;

namespace {

constexpr const char* kFormat = "mkernel-state-v1";
constexpr std::size_t kMaxStateBytes = 16 << 20;

std::string basename_no_ext(const std::string& path) {
  std::string b = path.substr(path.find_last_of('/') + 1);
  if (auto dot = b.rfind('.'); dot != std::string::npos && dot > 0) b.resize(dot);
  for (char& c : b)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  return b.empty() ? "topology" : b;
}

std::string state_file_for(const std::string& dir, const std::string& source) {
  if (source == "live") return dir + "/state.json";
  // FNV-1a of the absolute path: two files with the same name stay apart.
  char* abs = ::realpath(source.c_str(), nullptr);
  std::string key = abs ? abs : source;
  std::free(abs);
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return dir + "/topo/" + basename_no_ext(source) + "-" + std::string(hex, 8) + ".json";
}

Result<void> make_dir(const std::string& d) {
  if (::mkdir(d.c_str(), 0700) == 0 || errno == EEXIST) {
    struct stat st;
    if (::stat(d.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return ok();
    return MK_FAIL(ENOTDIR, "runtime directory unusable", "%s exists and is not a directory", d.c_str());
  }
  int e = errno;
  return Error(e, "cannot create runtime directory")
      .set_detail("%s: %s (set MKERNEL_RUNTIME_DIR to a writable directory)", d.c_str(), strerror(e));
}

Result<void> make_dirs(const std::string& d) {
  for (std::size_t pos = 1; (pos = d.find('/', pos)) != std::string::npos; ++pos) {
    std::string part = d.substr(0, pos);
    if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
      int e = errno;
      return Error(e, "cannot create runtime directory").set_detail("%s: %s", part.c_str(), strerror(e));
    }
  }
  return make_dir(d);
}

// "ENOSPC" for ENOSPC (glibc), the number otherwise.
std::string errno_name(int e) {
  if (const char* n = strerrorname_np(e)) return n;
  return "errno " + std::to_string(e);
}

// What to do about a failed write of `path`, by errno: the part of the
// message a user acts on.
const char* write_advice(int e) {
  switch (e) {
    case ENOSPC:
    case EDQUOT:
      return "the disk holding it is full: free space there (df) and retry; the previous file is intact";
    case EROFS:
      return "its file system is read-only: remount it read-write (or use another MKERNEL_RUNTIME_DIR) and retry; "
             "the previous file is intact";
    case EACCES:
    case EPERM:
      return "no permission to write there; the previous file is intact";
    default:
      return "the previous file is intact";
  }
}

Error write_error(int e, const char* what, const std::string& path) {
  return Error(e, what).set_detail("%s: %s (%s): %s", path.c_str(), strerror(e), errno_name(e).c_str(),
                                   write_advice(e));
}

Result<void> write_all(int fd, const std::string& data, const std::string& path) {
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return write_error(errno, "cannot write state", path);
    }
    off += static_cast<std::size_t>(n);
  }
  return ok();
}

// "line L, column C" of byte `off` in `text`.
std::string where_in(std::string_view text, std::size_t off) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < off && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col) + " (byte " + std::to_string(off) + ")";
}

}  // namespace

std::string runtime_dir() {
  if (const char* d = std::getenv("MKERNEL_RUNTIME_DIR"); d && *d) return d;
  if (::geteuid() == 0) return "/run/mkernel";
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) return std::string(x) + "/mkernel";
  return "/tmp/mkernel-" + std::to_string(::geteuid());
}

Result<void> make_runtime_dir(const std::string& dir) { return make_dirs(dir); }

StateStore::StateStore(StateStore&& o) noexcept
    : dir_(std::move(o.dir_)), path_(std::move(o.path_)), topology_source_(std::move(o.topology_source_)),
      lock_fd_(o.lock_fd_) {
  o.lock_fd_ = -1;
}

StateStore::~StateStore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

Result<StateStore> StateStore::open(const std::string& dir, const std::string& topology_source, Mode mode) {
  MK_TRY(make_dirs(dir));
  StateStore s;
  s.dir_ = dir;
  s.topology_source_ = topology_source;
  s.path_ = state_file_for(dir, topology_source);
  if (topology_source != "live" && mode == Mode::Write) MK_TRY(make_dir(dir + "/topo"));
  std::string lock = dir + "/lock";
  s.lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (s.lock_fd_ < 0 && mode == Mode::Read) s.lock_fd_ = ::open(lock.c_str(), O_RDONLY | O_CLOEXEC);
  if (s.lock_fd_ < 0) {
    int e = errno;
    if (mode == Mode::Read && e == ENOENT) return s;  // read-only dir without a lock: nothing stored
    return write_error(e, "cannot open lock file", lock);
  }
  // Serializes concurrent mkctl calls: readers share, writers are alone.
  while (::flock(s.lock_fd_, mode == Mode::Write ? LOCK_EX : LOCK_SH) != 0) {
    if (errno == EINTR) continue;
    int e = errno;
    return Error(e, "cannot lock runtime directory").set_detail("%s: %s", lock.c_str(), strerror(e));
  }
  return s;
}

Result<Partition> StateStore::load() const {
  int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Partition{};
    int e = errno;
    return Error(e, "cannot read state").set_detail("%s: %s", path_.c_str(), strerror(e));
  }
  std::string text;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return Error(e, "cannot read state").set_detail("%s: %s", path_.c_str(), strerror(e));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxStateBytes) break;
  }
  ::close(fd);
  auto p = partition_from_json_text(text, topology_source_);
  if (!p) {
    return MK_FAIL(EBADMSG, "corrupt state file", "%s: %s (left untouched: move it aside to start afresh, or restore a good copy)",
                   path_.c_str(), p.error().message());
  }
  return p;
}

Result<void> write_file_atomic(const std::string& path, const std::string& text) {
  // Errors name `path` (the file the user knows), not the temporary name.
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return write_error(errno, "cannot write state", path);
  auto w = write_all(fd, text, path);
  if (w && ::fsync(fd) != 0) w = write_error(errno, "cannot write state", path);
  if (::close(fd) != 0 && w) w = write_error(errno, "cannot write state", path);
  if (w && ::rename(tmp.c_str(), path.c_str()) != 0) w = write_error(errno, "cannot replace state", path);
  if (!w) {
    ::unlink(tmp.c_str());
    return w;
  }
  // The rename is durable only once the directory entry is.
  std::string parent = path.substr(0, path.find_last_of('/'));
  if (parent.empty()) parent = "/";
  if (int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return ok();
}

Result<std::string> move_aside(const std::string& path) {
  // Never over an earlier copy: NAME.corrupt, else NAME.corrupt.1, .2, ...
  for (int i = 0; i < 1000; ++i) {
    std::string to = path + ".corrupt" + (i ? "." + std::to_string(i) : "");
    // link + unlink: unlike rename, link never replaces an existing file.
    if (::link(path.c_str(), to.c_str()) == 0) {
      ::unlink(path.c_str());
      return to;
    }
    if (errno == EEXIST) continue;
    int e = errno;
    return Error(e, "cannot move a corrupt file aside").set_detail("%s -> %s: %s", path.c_str(), to.c_str(), strerror(e));
  }
  return MK_FAIL(EEXIST, "cannot move a corrupt file aside", "%s: 1000 earlier copies exist", path.c_str());
}

Result<void> StateStore::save(const Partition& p) const {
  return write_file_atomic(path_, partition_to_json_text(p, topology_source_));
}

std::string partition_to_json_text(const Partition& p, const std::string& topology_source) {
  json::array insts;
  for (const auto& i : p.instances) insts.push_back(instance_to_json(i));
  json::object o{{"format", kFormat},
                 {"topology", topology_source},
                 {"pool", p.has_pool ? json::value(to_json(p.pool)) : json::value(nullptr)},
                 {"instances", std::move(insts)}};
  return json::serialize(o) + "\n";
}

Result<Partition> partition_from_json_text(std::string_view text, const std::string& expected_source) {
  if (text.size() > kMaxStateBytes) return MK_FAIL(EBADMSG, "bad JSON", "larger than 16 MiB");
  boost::system::error_code ec;
  json::stream_parser parser;
  std::size_t used = parser.write(text.data(), text.size(), ec);
  if (!ec) parser.finish(ec);
  if (ec) {
    return MK_FAIL(EBADMSG, "bad JSON", "not JSON: %s at %s%s", ec.message().c_str(),
                   where_in(text, used).c_str(), used >= text.size() ? " (truncated?)" : "");
  }
  json::value v = parser.release();
  if (!v.is_object()) return MK_FAIL(EBADMSG, "bad JSON", "top level is not an object");
  const auto& o = v.get_object();
  const json::value* fmt = o.if_contains("format");
  if (!fmt || !fmt->is_string() || fmt->get_string() != kFormat)
    return MK_FAIL(EBADMSG, "bad JSON", "format is not \"%s\"", kFormat);
  const json::value* src = o.if_contains("topology");
  if (!src || !src->is_string() || src->get_string() != expected_source)
    return MK_FAIL(EBADMSG, "bad JSON", "made for another topology than '%s'", expected_source.c_str());
  Partition p;
  const json::value* pool = o.if_contains("pool");
  if (!pool) return MK_FAIL(EBADMSG, "bad JSON", "pool: missing");
  if (!pool->is_null()) {
    MK_TRY_ASSIGN(p.pool, pool_from_json(*pool));
    p.has_pool = true;
  }
  const json::value* insts = o.if_contains("instances");
  if (!insts || !insts->is_array()) return MK_FAIL(EBADMSG, "bad JSON", "instances: expected an array");
  if (!p.has_pool && !insts->get_array().empty())
    return MK_FAIL(EBADMSG, "bad JSON", "instances without a pool");
  std::set<std::string> devices;
  std::size_t index = 0;
  for (const auto& iv : insts->get_array()) {
    auto parsed = instance_from_json(iv);
    if (!parsed) {
      const json::value* n = iv.is_object() ? iv.get_object().if_contains("name") : nullptr;
      std::string who = n && n->is_string() ? " ('" + std::string(n->get_string()).substr(0, 40) + "')" : "";
      return MK_FAIL(EBADMSG, "bad JSON", "instances[%zu]%s: %s", index, who.c_str(), parsed.error().message());
    }
    ++index;
    Instance inst = std::move(*parsed);
    // Invariants a valid state always holds; a violation means corruption.
    if (p.find(inst.name)) return MK_FAIL(EBADMSG, "bad JSON", "instance name '%s' twice", inst.name.c_str());
    if (p.find_id(inst.id)) return MK_FAIL(EBADMSG, "bad JSON", "instance id %u twice", inst.id);
    if (!inst.cpus.is_subset_of(p.pool.cpus))
      return MK_FAIL(EBADMSG, "bad JSON", "instance '%s' has cpus outside the pool", inst.name.c_str());
    if (inst.cpus.intersects(p.used_cpus())) {
      const mk::CpuSet both = inst.cpus & p.used_cpus();
      std::string other = "?";
      for (const auto& o : p.instances)
        if (o.cpus.intersects(both)) other = o.name;
      return MK_FAIL(EBADMSG, "bad JSON", "cpu %s owned by two instances ('%s' and '%s')", both.to_string().c_str(),
                     other.c_str(), inst.name.c_str());
    }
    for (const auto& d : inst.devices)
      if (!devices.insert(d.key()).second)
        return MK_FAIL(EBADMSG, "bad JSON", "device %s owned twice", d.to_string().c_str());
    p.add(std::move(inst));
  }
  for (const auto& inst : p.instances)
    for (const auto& r : inst.memory)
      if (p.used_memory_on(r.node) > p.pool.memory_on(r.node))
        return MK_FAIL(EBADMSG, "bad JSON", "instances use more memory than the pool has on node %u", r.node);
  return p;
}

}  // namespace mk::tools
