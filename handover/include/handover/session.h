// DOC: mk::handover::Session — named sets of file descriptors preserved
// across a live update, with the semantics of Linux's Live Update
// Orchestrator (LUO) sessions.
//
// What this is: the outgoing image (or the host on its behalf) puts the fds
// that must survive the update — listen sockets, client connections, memfds
// holding state, pipes, eventfds — into a named Session, each under a token
// the application chose. The host holds the dups during the switch, as the
// kernel does for LUO. The session's fd list is described in a KHO subtree
// ("mkernel,files-v1": token, type and flags of each fd) so the incoming image
// knows what it gets before it touches anything; the fds themselves travel
// over SCM_RIGHTS in the subtree's order. The incoming image restores the
// session, retrieves each token once and calls finish().
//
// Lifecycle (happy path):
//   1. SessionRegistry::create(name) — a new, empty session.
//   2. Session::preserve(fd, token) — checks the fd type now (not at update
//      time), dups and holds it. The caller may close its own fd.
//   3. Session::describe() — the "mkernel,files-v1" subtree for the KHO blob;
//      transfer_fds() — the held fds, in the subtree's order.
//   4. Incoming side: Session::restore(subtree, fds) — validates the subtree
//      against the received fds and rebuilds the session.
//   5. Session::retrieve(token) — hands the fd over (once per token).
//   6. Session::finish() — every token retrieved: the session is closed.
// Unhappy paths:
//   1. An fd of a type the runtime cannot carry (directory, epoll, pidfd,
//      signalfd, timerfd, UDP or unconnected socket...) is refused at
//      preserve time with ENOENT ("cannot preserve fd of type X"), so the
//      application learns it before any update starts.
//   2. The update is cancelled: the outgoing image keeps running and simply
//      retrieves its tokens from the same session (or drops the session).
//   3. A connection whose client closes or resets it while it travels is
//      still restored as tcp-connected (the application then reads EOF or
//      ECONNRESET from it, as it would have without the update).
//   4. The incoming image receives a subtree it does not understand (another
//      version) or fds that do not match it: restore fails (EPROTONOSUPPORT,
//      EINVAL), the image refuses the blob and the update rolls back; the
//      fds it received are closed, the host still holds its own dups.
//   5. finish() with tokens never retrieved is refused (EBUSY): nothing
//      preserved is dropped silently. (LUO lets a file handler veto finish
//      with can_finish(); here every unretrieved fd vetoes it.)
//
// Returns:
//   classify_fd:   EBADF (not an open fd), ENOENT (type not preservable).
//   preserve:      EBADF, ENOENT (as classify_fd), EEXIST (token already in
//                  the session), EINVAL (session finished), EMFILE/ENFILE
//                  (dup failed).
//   retrieve:      ENOENT (unknown token), EALREADY (token already
//                  retrieved), EINVAL (session finished).
//   finish:        EBUSY (tokens not retrieved yet; detail names one). A
//                  second finish() succeeds and does nothing.
//   describe:      never fails for a valid session name (Result for EINVAL
//                  on names the blob would refuse).
//   restore:       EPROTONOSUPPORT (subtree is not "mkernel,files-v1"),
//                  EINVAL (malformed subtree, fd count or type mismatch,
//                  duplicate token), EBADF (a received fd is not open).
//   SessionRegistry::create: EEXIST (name taken), EINVAL (bad name).
//   SessionRegistry::find / remove: ENOENT.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "handover/kho_blob.h"
#include "mk/result.h"

namespace mk::handover {

inline constexpr const char* kFilesCompatible = "mkernel,files-v1";
inline constexpr const char* kFilesCompatiblePrefix = "mkernel,files-v";
inline constexpr uint32_t kFilesVersion = 1;
inline constexpr std::size_t kMaxSessionFiles = kMaxChildren;

// A file descriptor owned by exactly one object; closed on destruction.
class OwnedFd {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) noexcept : fd_(fd) {}
  OwnedFd(OwnedFd&& o) noexcept : fd_(o.release()) {}
  OwnedFd& operator=(OwnedFd&& o) noexcept;
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  ~OwnedFd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// The fd types the runtime can carry across an update.
enum class FdType : uint8_t {
  kMemfd,         // memfd_create
  kRegular,       // a regular file
  kPipe,          // an anonymous pipe end
  kFifo,          // a named pipe
  kUnixSocket,    // AF_UNIX, any type, any state
  kTcpListen,     // AF_INET/AF_INET6 TCP in listen state
  kTcpConnected,  // AF_INET/AF_INET6 TCP with a peer
  kEventfd,
  kCharDevice,   // an open character device node (a tty, /dev/null, a driver's node)
  kBlockDevice,  // an open block device node (an instance's `block` device)
};
std::string_view to_string(FdType type) noexcept;  // "memfd", "regular", ...
std::optional<FdType> parse_fd_type(std::string_view text) noexcept;

// What kind of fd `fd` is. Returns: EBADF, ENOENT (not preservable; the
// detail names the type, e.g. "cannot preserve fd 7 of type directory").
Result<FdType> classify_fd(int fd);

// One entry of a session, as described in its subtree.
struct PreservedFile {
  uint64_t token = 0;
  FdType type = FdType::kRegular;
  uint32_t flags = 0;  // F_GETFL & (O_ACCMODE | O_APPEND | O_NONBLOCK)
  bool operator==(const PreservedFile&) const = default;
};

class Session {
 public:
  const std::string& name() const { return name_; }
  std::size_t size() const { return entries_.size(); }
  bool finished() const { return finished_; }

  Result<void> preserve(int fd, uint64_t token);
  Result<OwnedFd> retrieve(uint64_t token);
  Result<void> finish();

  // Whether `token` is held (preserved or restored, not retrieved yet).
  bool contains(uint64_t token) const;
  // Whether `token` was ever in this session (retrieved ones included).
  bool knows(uint64_t token) const { return entries_.count(token) != 0; }
  // The entries in token order (the order of describe() and transfer_fds()).
  std::vector<PreservedFile> files() const;
  // The "mkernel,files-v1" subtree: node name = session name, property
  // "session" (string), children "fd@<token hex>" with token (u64), type
  // (string), flags (u32), index (u32: position in transfer_fds()).
  Result<Subsystem> describe() const;
  // The held fds (not retrieved ones), in describe() order; still owned by
  // the session.
  std::vector<int> transfer_fds() const;

  // Incoming side: rebuilds a session from its subtree and the received fds
  // (in transfer order). Takes ownership of the fds either way.
  static Result<Session> restore(const Subsystem& files, std::vector<OwnedFd> fds);
  // Reads a "mkernel,files-v1" subtree (for inspection). Returns:
  // EPROTONOSUPPORT, EINVAL.
  static Result<std::vector<PreservedFile>> parse_files(const Subsystem& files);

 private:
  friend class SessionRegistry;
  explicit Session(std::string name) : name_(std::move(name)) {}
  struct Entry {
    FdType type;
    uint32_t flags;
    OwnedFd fd;
    bool retrieved = false;
  };

  std::string name_;
  std::map<uint64_t, Entry> entries_;
  bool finished_ = false;
};

class SessionRegistry {
 public:
  // Session names: 1..63 chars of [A-Za-z0-9_.-] (a valid KHO node name).
  Result<Session*> create(std::string_view name);
  // Adds a restored session. Returns: EEXIST.
  Result<Session*> adopt(Session session);
  Result<Session*> find(std::string_view name);
  Result<void> remove(std::string_view name);
  std::size_t size() const { return sessions_.size(); }
  // One subtree per session, in name order.
  Result<std::vector<Subsystem>> describe() const;

 private:
  std::map<std::string, std::unique_ptr<Session>, std::less<>> sessions_;
};

}  // namespace mk::handover
