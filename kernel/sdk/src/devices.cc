// devices: lookup of the boot tree's devices; the console writer.
#include "mksdk/devices.h"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>

namespace mk::sdk {

const BootDevice* Devices::find(std::string_view name) const {
  for (const auto& d : devices_) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

const BootDevice* Devices::first(DeviceKind kind) const {
  for (const auto& d : devices_) {
    if (d.kind == kind) return &d;
  }
  return nullptr;
}

std::vector<const BootDevice*> Devices::all(DeviceKind kind) const {
  std::vector<const BootDevice*> out;
  for (const auto& d : devices_) {
    if (d.kind == kind) out.push_back(&d);
  }
  return out;
}

Result<int> Devices::fd(DeviceKind kind, std::string_view name) const {
  const BootDevice* d = find(name);
  if (!d || d->kind != kind) {
    return MK_FAIL(ENOENT, "no such device", "no %s device named '%.*s'", std::string(to_string(kind)).c_str(),
                   static_cast<int>(name.size()), name.data());
  }
  if (d->fd < 0) return MK_FAIL(EBADF, "device has no fd", "device '%s' has no fd", d->name.c_str());
  return d->fd;
}

Result<int> Devices::console_fd() const {
  const BootDevice* d = first(DeviceKind::kConsole);
  if (!d) return MK_FAIL(ENOENT, "no console device", "the boot tree lists no console");
  if (d->fd < 0) return MK_FAIL(EBADF, "console has no fd", "console '%s' has no fd", d->name.c_str());
  return d->fd;
}

void Console::print(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  std::size_t len = std::min(static_cast<std::size_t>(n), sizeof buf - 1);
  std::size_t off = 0;
  while (off < len) {
    ssize_t w = ::write(fd_, buf + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {  // EPIPE/EAGAIN/EBADF: the console is best effort
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    off += static_cast<std::size_t>(w);
  }
}

}  // namespace mk::sdk
