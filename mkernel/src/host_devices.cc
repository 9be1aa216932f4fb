// Net and block devices from sysfs (see host_devices.h).
#include "mkernel/host_devices.h"

#include <dirent.h>

#include <algorithm>

namespace mk {

namespace {

void add_dir(Topology& topo, const SysRoot& root, const char* dir, const char* kind) {
  DIR* d = ::opendir(root.path(dir).c_str());
  if (!d) return;  // no sysfs (container, fake root without it): nothing to add
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == ".." || n == "lo") continue;
    names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    bool known = std::any_of(topo.devices.begin(), topo.devices.end(),
                             [&](const IoDevice& dev) { return dev.name == n; });
    if (known) continue;
    IoDevice dev;
    dev.kind = kind;
    dev.name = n;
    dev.description = std::string("from ") + dir;
    topo.devices.push_back(std::move(dev));
  }
}

}  // namespace

void add_sysfs_devices(Topology& topo, const SysRoot& root) {
  add_dir(topo, root, "/sys/class/net", "net");
  add_dir(topo, root, "/sys/block", "block");
}

}  // namespace mk
