// SysRoot: path mapping and bounded file reads (see sysroot.h).
#include "mkernel/sysroot.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

namespace mk {

SysRoot SysRoot::from_env() {
  const char* r = std::getenv("MKERNEL_SYSROOT");
  return SysRoot(r && *r ? r : "/");
}

std::string SysRoot::path(std::string_view abs) const {
  if (root_ == "/" || root_.empty()) return std::string(abs);
  std::string p = root_;
  if (!p.empty() && p.back() == '/') p.pop_back();
  if (abs.empty() || abs.front() != '/') p += '/';
  p += abs;
  return p;
}

Result<std::string> SysRoot::read_file(std::string_view abs, std::size_t max_bytes) const {
  std::string p = path(abs);
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return Error(e, "cannot open file").set_detail("%s: %s", p.c_str(), strerror(e));
  }
  std::string out;
  char buf[4096];
  while (out.size() < max_bytes) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return Error(e, "cannot read file").set_detail("%s: %s", p.c_str(), strerror(e));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (out.size() > max_bytes) out.resize(max_bytes);
  return out;
}

bool SysRoot::exists(std::string_view abs) const { return ::access(path(abs).c_str(), F_OK) == 0; }

}  // namespace mk
