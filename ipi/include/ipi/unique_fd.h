// DOC: mk::ipi::UniqueFd — owning file descriptor (memfds, eventfds, pidfds,
// sockets of the IPI library).
//
// What this is: move-only RAII around an int fd; close() on destruction.
// Place in the IPI flow: Region owns its memfd and eventfds through it,
// Endpoint its pidfds, fd_passing.h hands received descriptors back in it.
// Happy path: 1. UniqueFd fd(::memfd_create(...)); 2. use fd.get();
//             3. destructor closes.
// Unhappy paths: 1. constructed from -1: valid() is false, nothing closed.
//                2. release() gives up ownership; the caller closes.
#pragma once

#include <unistd.h>

#include <utility>

namespace mk::ipi {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace mk::ipi
