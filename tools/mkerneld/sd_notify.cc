// systemd notify protocol, the part mkerneld uses (see sd_notify.h).
#include "sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace mkerneld {

mk::Result<bool> sd_notify(const char* state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::size_t len = std::strlen(path);
  if (len >= sizeof addr.sun_path)
    return MK_FAIL(ENAMETOOLONG, "NOTIFY_SOCKET too long", "%zu bytes", len);
  std::memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return mk::errno_error("cannot create the notify socket");
  ssize_t n = ::sendto(fd, state, std::strlen(state), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), alen);
  int e = errno;
  ::close(fd);
  if (n < 0) return mk::Error(e, "cannot notify systemd").set_detail("%s: %s", path, strerror(e));
  return true;
}

}  // namespace mkerneld
