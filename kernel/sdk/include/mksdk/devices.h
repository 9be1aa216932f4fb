// DOC: mk::sdk::Devices and Console — the instance's devices by kind and name.
//
// What this is: the /devices/* nodes of the boot tree (console, file, listen,
// block, net) indexed for lookup: a device's fd by name or by kind, and a
// Console writer for the console device (always present for images the host
// starts), whose output the host captures (`mkctl console NAME`).
//
// Place in the boot flow: after Regions::map; the console is the first
// device used (boot messages), file/listen fds go to image services.
//
// Happy path:
//   1. Devices devs(tree.devices);
//   2. devs.fd(DeviceKind::kListen, "web") -> fd; devs.first(kind) -> device;
//   3. Console con(devs.console_fd().value_or(2)); con.print("booted\n").
// Unhappy paths:
//   1. No device with that kind/name: ENOENT. A device without an fd (net):
//      EBADF from fd().
//   2. Console writes that fail (host closed the pipe: EPIPE, EAGAIN on a
//      full non-blocking pipe) are dropped and counted (Console::dropped);
//      console output never blocks or kills the image (SIGPIPE is ignored
//      by images, see mk-kernel's main).
//
// Returns:
//   fd / console_fd: ENOENT, EBADF.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>
#include <vector>

#include "mk/boot_tree.h"
#include "mk/result.h"

namespace mk::sdk {

class Devices {
 public:
  Devices() = default;
  explicit Devices(std::vector<BootDevice> devices) : devices_(std::move(devices)) {}

  const BootDevice* find(std::string_view name) const;
  const BootDevice* first(DeviceKind kind) const;
  std::vector<const BootDevice*> all(DeviceKind kind) const;
  Result<int> fd(DeviceKind kind, std::string_view name) const;
  Result<int> console_fd() const;
  std::size_t size() const { return devices_.size(); }

 private:
  std::vector<BootDevice> devices_;
};

class Console {
 public:
  explicit Console(int fd = 2) : fd_(fd) {}
  // printf-style; one write(2) per call so lines from threads do not mix.
  void print(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  int fd() const { return fd_; }
  void set_fd(int fd) { fd_ = fd; }  // before other threads use it
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  int fd_;
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace mk::sdk
