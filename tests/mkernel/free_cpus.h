// Test helper: CPUs that no instance cgroup of another test suite holds.
#pragma once

#include <dirent.h>

#include <fstream>
#include <string>
#include <vector>

#include "mk/cpu_set.h"
#include "mkernel/topology.h"

namespace mk::test {

inline std::string cpuset_text(const std::string& path) {
  std::ifstream f(path);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// CPUs no other instance cgroup holds right now (other test suites may run
// instances on this machine at the same time; cpusets are exclusive).
inline std::vector<uint32_t> free_cpus(const Topology& topo) {
  CpuSet taken;
  const std::string base = "/sys/fs/cgroup/cpuset/mkernel";
  if (DIR* d = ::opendir(base.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.' || e->d_type != DT_DIR) continue;
      std::string text = cpuset_text(base + "/" + e->d_name + "/cpuset.cpus");
      if (auto set = CpuSet::parse(text)) {
        for (uint32_t c : *set) taken.insert(c);
      }
    }
    ::closedir(d);
  }
  std::vector<uint32_t> out;
  for (auto it = topo.pus.rbegin(); it != topo.pus.rend(); ++it)
    if (!taken.contains(it->os_index)) out.push_back(it->os_index);
  return out;
}

}  // namespace mk::test
