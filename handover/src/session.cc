// session: LUO-style sessions of preserved fds (see handover/session.h).
#include "handover/session.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <set>

namespace mk::handover {
namespace {

constexpr const char* kPreserveWhat = "cannot preserve fd";
constexpr const char* kSessionWhat = "session error";
constexpr const char* kRestoreWhat = "cannot restore session";
constexpr uint32_t kFlagMask = O_ACCMODE | O_APPEND | O_NONBLOCK;

constexpr std::string_view kTypeNames[] = {"memfd", "regular",       "pipe",    "fifo",    "unix",
                                           "tcp-listen", "tcp-connected", "eventfd", "chardev", "blockdev"};

bool valid_session_name(std::string_view n) {
  if (n.empty() || n.size() > 63) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

// The /proc/self/fd link of `fd` ("pipe:[123]", "anon_inode:[eventfd]",
// "/memfd:x (deleted)", "socket:[9]", a path...), or "" when unreadable.
std::string fd_link(int fd) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  char buf[512];
  ssize_t n = ::readlink(path, buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

int sockopt(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  return ::getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
}

Error refuse(int fd, const char* type) {
  return MK_FAIL(ENOENT, kPreserveWhat, "cannot preserve fd %d of type %s", fd, type);
}

Result<FdType> classify_socket(int fd) {
  int domain = sockopt(fd, SOL_SOCKET, SO_DOMAIN);
  if (domain == AF_UNIX) return FdType::kUnixSocket;
  if (domain != AF_INET && domain != AF_INET6) return refuse(fd, "socket (not unix/inet)");
  if (sockopt(fd, SOL_SOCKET, SO_TYPE) != SOCK_STREAM || sockopt(fd, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_TCP) {
    return refuse(fd, "socket (inet, not TCP)");
  }
  if (sockopt(fd, SOL_SOCKET, SO_ACCEPTCONN) == 1) return FdType::kTcpListen;
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0) return FdType::kTcpConnected;
  return refuse(fd, "socket (TCP, neither listening nor connected)");
}

// A TCP stream socket, not listening, whose peer is gone: what a connection
// preserved as tcp-connected becomes when its client closes or resets it
// in transit. It is still that connection (the application reads EOF or
// ECONNRESET from it), so restore takes it as described.
bool is_tcp_connection_without_peer(int fd) {
  const int domain = sockopt(fd, SOL_SOCKET, SO_DOMAIN);
  return (domain == AF_INET || domain == AF_INET6) && sockopt(fd, SOL_SOCKET, SO_TYPE) == SOCK_STREAM &&
         sockopt(fd, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP && sockopt(fd, SOL_SOCKET, SO_ACCEPTCONN) == 0;
}

}  // namespace

// ---- OwnedFd / FdType ------------------------------------------------------------

OwnedFd& OwnedFd::operator=(OwnedFd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

void OwnedFd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string_view to_string(FdType type) noexcept {
  auto i = static_cast<std::size_t>(type);
  return i < std::size(kTypeNames) ? kTypeNames[i] : "?";
}

std::optional<FdType> parse_fd_type(std::string_view text) noexcept {
  for (std::size_t i = 0; i < std::size(kTypeNames); ++i)
    if (kTypeNames[i] == text) return static_cast<FdType>(i);
  return std::nullopt;
}

Result<FdType> classify_fd(int fd) {
  struct stat st{};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    return MK_FAIL(EBADF, kPreserveWhat, "fd %d is not an open file descriptor", fd);
  }
  // Sockets (most of what an update carries: one per client connection) are
  // told apart by getsockopt alone; the /proc link (a path walk, the
  // costliest call here) is read only for the other kinds.
  const mode_t kind = st.st_mode & S_IFMT;
  if (kind == S_IFSOCK) return classify_socket(fd);
  if (kind == S_IFDIR) return refuse(fd, "directory");
  // Device nodes: the open file travels as it is (its position, flags and
  // the driver's per-open state are the file's, not the process's).
  if (kind == S_IFCHR) return FdType::kCharDevice;
  if (kind == S_IFBLK) return FdType::kBlockDevice;
  // Anonymous inodes (eventfd, epoll, signalfd, timerfd, pidfd...) carry no
  // useful mode bits on every kernel: tell them apart by their link name.
  std::string link = fd_link(fd);
  if (link.rfind("anon_inode:", 0) == 0) {
    if (link == "anon_inode:[eventfd]") return FdType::kEventfd;
    std::string what = link.substr(11);
    if (what.size() > 2 && what.front() == '[' && what.back() == ']') what = what.substr(1, what.size() - 2);
    return MK_FAIL(ENOENT, kPreserveWhat, "cannot preserve fd %d of type %s", fd, what.c_str());
  }
  if (link.rfind("pidfd:", 0) == 0) return refuse(fd, "pidfd");
  switch (kind) {
    case S_IFREG:
      return link.rfind("/memfd:", 0) == 0 ? FdType::kMemfd : FdType::kRegular;
    case S_IFIFO:
      return link.rfind("pipe:", 0) == 0 ? FdType::kPipe : FdType::kFifo;
    default: return refuse(fd, "unknown");
  }
}

// ---- Session ---------------------------------------------------------------------

Result<void> Session::preserve(int fd, uint64_t token) {
  if (finished_) {
    return MK_FAIL(EINVAL, kSessionWhat, "session '%s' is finished: cannot preserve token %llu",
                   name_.c_str(), static_cast<unsigned long long>(token));
  }
  // Validate everything, then take the dup: nothing to undo on failure.
  MK_TRY_ASSIGN(FdType type, classify_fd(fd));
  if (entries_.count(token)) {
    return MK_FAIL(EEXIST, kSessionWhat, "session '%s' already holds token %llu", name_.c_str(),
                   static_cast<unsigned long long>(token));
  }
  if (entries_.size() >= kMaxSessionFiles) {
    return MK_FAIL(ENOSPC, kSessionWhat, "session '%s' already holds %zu fds", name_.c_str(),
                   kMaxSessionFiles);
  }
  int flags = ::fcntl(fd, F_GETFL);
  OwnedFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!dup.valid() || flags < 0) return errno_error(kPreserveWhat).set_detail("dup of fd %d failed", fd);
  entries_.emplace(token, Entry{type, static_cast<uint32_t>(flags) & kFlagMask, std::move(dup), false});
  return ok();
}

Result<OwnedFd> Session::retrieve(uint64_t token) {
  if (finished_) {
    return MK_FAIL(EINVAL, kSessionWhat, "session '%s' is finished: cannot retrieve token %llu",
                   name_.c_str(), static_cast<unsigned long long>(token));
  }
  auto it = entries_.find(token);
  if (it == entries_.end()) {
    return MK_FAIL(ENOENT, kSessionWhat, "session '%s' has no token %llu", name_.c_str(),
                   static_cast<unsigned long long>(token));
  }
  if (it->second.retrieved) {
    return MK_FAIL(EALREADY, kSessionWhat, "token %llu of session '%s' was already retrieved",
                   static_cast<unsigned long long>(token), name_.c_str());
  }
  it->second.retrieved = true;
  return OwnedFd(it->second.fd.release());
}

Result<void> Session::finish() {
  if (finished_) return ok();
  for (const auto& [token, e] : entries_) {
    if (!e.retrieved) {
      return MK_FAIL(EBUSY, kSessionWhat, "session '%s': token %llu was never retrieved", name_.c_str(),
                     static_cast<unsigned long long>(token));
    }
  }
  finished_ = true;
  return ok();
}

bool Session::contains(uint64_t token) const {
  auto it = entries_.find(token);
  return it != entries_.end() && !it->second.retrieved;
}

std::vector<PreservedFile> Session::files() const {
  std::vector<PreservedFile> out;
  for (const auto& [token, e] : entries_)
    if (!e.retrieved) out.push_back(PreservedFile{token, e.type, e.flags});
  return out;
}

std::vector<int> Session::transfer_fds() const {
  std::vector<int> out;
  for (const auto& [token, e] : entries_)
    if (!e.retrieved) out.push_back(e.fd.get());
  return out;
}

Result<Subsystem> Session::describe() const {
  if (!valid_session_name(name_)) {
    return MK_FAIL(EINVAL, kSessionWhat, "session name '%s' is not a valid node name", name_.c_str());
  }
  Subsystem s{name_, kFilesCompatible, {KhoProperty::string("session", name_)}, {}};
  uint32_t index = 0;
  for (const PreservedFile& f : files()) {
    char node[32];
    std::snprintf(node, sizeof node, "fd@%llx", static_cast<unsigned long long>(f.token));
    s.children.push_back(KhoNode{node,
                                 {KhoProperty::u64("token", f.token),
                                  KhoProperty::string("type", to_string(f.type)),
                                  KhoProperty::u32("flags", f.flags), KhoProperty::u32("index", index++)},
                                 {}});
  }
  return s;
}

Result<std::vector<PreservedFile>> Session::parse_files(const Subsystem& files) {
  const std::string& n = files.name;
  if (compatible_version(files.compatible) == 0 ||
      files.compatible.rfind(kFilesCompatiblePrefix, 0) != 0 ||
      compatible_version(files.compatible) > kFilesVersion) {
    return MK_FAIL(EPROTONOSUPPORT, kRestoreWhat, "/%s: compatible '%s', this image reads '%s'", n.c_str(),
                   files.compatible.c_str(), kFilesCompatible);
  }
  if (files.properties.size() != 1 || files.properties[0].name != "session") {
    return MK_FAIL(EINVAL, kRestoreWhat, "/%s: expected exactly the property 'session'", n.c_str());
  }
  MK_TRY_ASSIGN(std::string session, files.properties[0].as_string());
  if (session != n) {
    return MK_FAIL(EINVAL, kRestoreWhat, "/%s: 'session' is '%s', expected the node name", n.c_str(),
                   session.c_str());
  }
  std::vector<PreservedFile> out(files.children.size());
  std::vector<bool> seen(files.children.size(), false);
  std::set<uint64_t> tokens;
  for (const KhoNode& c : files.children) {
    auto bad = [&](const char* why) {
      return MK_FAIL(EINVAL, kRestoreWhat, "/%s/%s: %s", n.c_str(), c.name.c_str(), why);
    };
    if (!c.children.empty()) return bad("unexpected child nodes");
    const KhoProperty *token = nullptr, *type = nullptr, *flags = nullptr, *index = nullptr;
    for (const KhoProperty& p : c.properties) {
      if (p.name == "token") token = &p;
      else if (p.name == "type") type = &p;
      else if (p.name == "flags") flags = &p;
      else if (p.name == "index") index = &p;
      else return bad("unknown property");
    }
    if (!token || !type || !flags || !index) return bad("missing token, type, flags or index");
    auto t = token->as_u64();
    auto ty = type->as_string();
    auto fl = flags->as_u32();
    auto ix = index->as_u32();
    if (!t || !ty || !fl || !ix) return bad("malformed token, type, flags or index");
    std::optional<FdType> ft = parse_fd_type(*ty);
    if (!ft) return bad("unknown fd type");
    if (*fl & ~kFlagMask) return bad("unknown flag bits");
    if (*ix >= out.size() || seen[*ix]) return bad("index out of range or repeated");
    if (!tokens.insert(*t).second) return bad("duplicate token");
    char node[32];
    std::snprintf(node, sizeof node, "fd@%llx", static_cast<unsigned long long>(*t));
    if (c.name != node) return bad("node name does not match its token");
    seen[*ix] = true;
    out[*ix] = PreservedFile{*t, *ft, *fl};
  }
  return out;
}

Result<Session> Session::restore(const Subsystem& files, std::vector<OwnedFd> fds) {
  MK_TRY_ASSIGN(std::vector<PreservedFile> list, parse_files(files));
  if (list.size() != fds.size()) {
    return MK_FAIL(EINVAL, kRestoreWhat, "/%s describes %zu fds, %zu received", files.name.c_str(),
                   list.size(), fds.size());
  }
  Session s(files.name);
  for (std::size_t i = 0; i < list.size(); ++i) {
    auto type = classify_fd(fds[i].get());
    if (!type && type.error().code() == EBADF) return type.error();
    if (!type && list[i].type == FdType::kTcpConnected && is_tcp_connection_without_peer(fds[i].get())) {
      type = FdType::kTcpConnected;  // its client left while it travelled
    }
    if (!type || *type != list[i].type) {
      return MK_FAIL(EINVAL, kRestoreWhat, "/%s: fd %zu (token %llu) is %s, the subtree says %s",
                     files.name.c_str(), i, static_cast<unsigned long long>(list[i].token),
                     type ? std::string(to_string(*type)).c_str() : "unpreservable",
                     std::string(to_string(list[i].type)).c_str());
    }
    s.entries_.emplace(list[i].token, Entry{list[i].type, list[i].flags, std::move(fds[i]), false});
  }
  return s;
}

// ---- SessionRegistry ---------------------------------------------------------------

Result<Session*> SessionRegistry::create(std::string_view name) {
  if (!valid_session_name(name)) {
    return MK_FAIL(EINVAL, kSessionWhat, "bad session name '%.*s' (1..63 chars of [A-Za-z0-9_.-])",
                   static_cast<int>(std::min<std::size_t>(name.size(), 80)), name.data());
  }
  return adopt(Session(std::string(name)));
}

Result<Session*> SessionRegistry::adopt(Session session) {
  if (sessions_.count(session.name())) {
    return MK_FAIL(EEXIST, kSessionWhat, "session '%s' already exists", session.name().c_str());
  }
  std::string name = session.name();
  auto p = std::make_unique<Session>(std::move(session));
  Session* raw = p.get();
  sessions_.emplace(std::move(name), std::move(p));
  return raw;
}

Result<Session*> SessionRegistry::find(std::string_view name) {
  auto it = sessions_.find(name);
  if (it == sessions_.end()) {
    return MK_FAIL(ENOENT, kSessionWhat, "no session '%.*s'",
                   static_cast<int>(std::min<std::size_t>(name.size(), 80)), name.data());
  }
  return it->second.get();
}

Result<void> SessionRegistry::remove(std::string_view name) {
  auto it = sessions_.find(name);
  if (it == sessions_.end()) {
    return MK_FAIL(ENOENT, kSessionWhat, "no session '%.*s'",
                   static_cast<int>(std::min<std::size_t>(name.size(), 80)), name.data());
  }
  sessions_.erase(it);
  return ok();
}

Result<std::vector<Subsystem>> SessionRegistry::describe() const {
  std::vector<Subsystem> out;
  for (const auto& [name, s] : sessions_) {
    MK_TRY_ASSIGN(Subsystem sub, s->describe());
    out.push_back(std::move(sub));
  }
  return out;
}

}  // namespace mk::handover
