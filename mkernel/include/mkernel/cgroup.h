// DOC: mk::CgroupLayout and mk::InstanceCgroup — the cgroup half of an
// instance's confinement (DESIGN.md §2, process backend).
//
// What this is: detect_cgroups() finds, through the injectable SysRoot, which
// cgroup hierarchies the host offers for CPU and memory confinement: the v2
// unified hierarchy (with the cpuset/memory controllers and, for CPUs,
// `cpuset.cpus.partition`), the v1 cpuset and memory hierarchies (this VM:
// v1 cpuset at /sys/fs/cgroup/cpuset, cgroup2 with no controllers at
// /sys/fs/cgroup/unified), or none that is writable. InstanceCgroup then makes
// one cgroup per instance, `<hierarchy>/<parent>/<name>` (parent "mkernel"),
// with the instance's CPUs and nodes, exclusive where the kernel allows it,
// and a memory limit where a memory hierarchy is writable.
//
// Place in the boot flow: `start`, after validation and before the instance's
// root process is spawned: create() -> spawn_confined() -> attach(pid). The
// cgroup outlives the daemon (no RAII removal): a restarted daemon re-opens it
// with open_existing(); `delete` calls destroy().
//
// Happy path:
//   1. detect_cgroups(root) reads /proc/self/mountinfo (or /proc/mounts) under
//      the root and checks each hierarchy for the controller and write access.
//   2. create(): makes <parent> if missing (v1: cpuset.cpus/mems set before a
//      child can exist, cpu_exclusive=1 so exclusive children are allowed;
//      v2: +cpuset/+memory in subtree_control, partition "root"), widens the
//      parent's cpus/mems to contain the child's, makes <name>, writes
//      cpus and mems, then v1 cpuset.cpu_exclusive=1 or v2
//      cpuset.cpus.partition=isolated (read back), then memory.limit_in_bytes
//      (v1) or memory.max (v2).
//   3. attach(pid) writes the pid to cgroup.procs of every hierarchy used.
//   4. guarantees() says what is in force: "cpuset: v1 exclusive",
//      "cpuset: v2 isolated partition", "memory cgroup: v1 limit 67108864".
//   5. destroy() removes the instance directories (and the parent when it
//      became empty).
//
// Unhappy paths:
//   1. No writable cpuset hierarchy: create() succeeds without a cpuset, the
//      guarantee says "no (...)"; affinity alone confines the CPUs.
//   2. v1 kernel refuses cpu_exclusive=1 (an exclusive sibling overlaps): the
//      cgroup still restricts the CPUs; the guarantee is not in force and
//      names the refusal. Options::require_exclusive turns this into EINVAL.
//   3. v2 partition reads back "isolated invalid (reason)": the partition is
//      reverted to "member" and reported as not in force with the kernel's
//      reason (EINVAL with require_exclusive). Never reported as a success.
//   4. A cpus/mems write the kernel refuses (not in the parent, offline):
//      create() fails with the errno, naming file and value; directories it
//      made are removed again (the parent is left: it may be shared).
//   5. The instance directory already exists: reused when it has no tasks (a
//      leftover of a crash), EBUSY when tasks are in it.
//   6. destroy() with tasks left: EBUSY naming the pids; nothing removed.
//
// Returns: detect_cgroups: ENOENT/EACCES when neither mountinfo nor mounts can
// be read. create: EINVAL (empty cpus/mems, bad name, exclusivity refused
// with require_exclusive), EBUSY (name in use), and errno of mkdir/write
// (EACCES, EPERM, ENOSPC, EINVAL from the kernel). attach: ESRCH/EINVAL/EACCES
// from the cgroup.procs write. destroy: EBUSY, errno of rmdir.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mk/cpu_set.h"
#include "mk/result.h"
#include "mkernel/guarantee.h"
#include "mkernel/sysroot.h"

namespace mk {

enum class CgroupVersion { kNone, kV1, kV2 };
const char* to_string(CgroupVersion v);

// One controller's hierarchy. `mount` is the absolute path as the host sees it
// (mapped through the SysRoot on every access).
struct CgroupHierarchy {
  CgroupVersion version = CgroupVersion::kNone;
  std::string mount;
  bool writable = false;
  std::string why_not;  // when version == kNone or !writable
};

struct CgroupLayout {
  CgroupHierarchy cpuset;
  CgroupHierarchy memory;
  bool v2_partition = false;      // cpuset.cpus.partition exists (v2 only)
  std::string unified_mount;      // cgroup2 mount point, "" if none
  std::string parent = "mkernel";  // directory under each hierarchy

  std::string to_string() const;  // one line, for logs and mkctl
};

Result<CgroupLayout> detect_cgroups(const SysRoot& root);

class InstanceCgroup {
 public:
  struct Options {
    uint64_t memory_limit = 0;       // bytes; 0 = no memory cgroup
    bool require_exclusive = false;  // exclusivity refused -> error
  };

  static Result<InstanceCgroup> create(const SysRoot& root, const CgroupLayout& layout,
                                       std::string_view name, const CpuSet& cpus,
                                       const CpuSet& mems, const Options& opts);
  // Re-open the cgroups of an instance created earlier (daemon restart).
  // Returns: ENOENT when none of its directories exists.
  static Result<InstanceCgroup> open_existing(const SysRoot& root, const CgroupLayout& layout,
                                              std::string_view name);

  Result<void> attach(pid_t pid) const;
  // A CPU move (cpu_move.h): the instance's cpuset becomes `cpus`. Growing,
  // the parent is widened first; v1 keeps cpu_exclusive, v2 re-reads the
  // partition state (guarantees() updated). No cpuset hierarchy: no-op.
  // Returns: EINVAL (empty), the write's errno naming file and value (the
  // kernel refuses a CPU an exclusive sibling holds: EINVAL).
  Result<void> set_cpus(const CpuSet& cpus);
  // A memory move (resource_move.h): the memory limit becomes `limit`
  // (v1 memory.limit_in_bytes / v2 memory.max; no memory cgroup, or 0:
  // left alone) and the cpuset's mems `mems` (the parent widened first;
  // no cpuset hierarchy: left alone). Raise before a region is added,
  // lower after one was released (the kernel refuses a limit below what is
  // charged: EBUSY on v1). Returns: EINVAL (no mems), the write's errno.
  Result<void> set_memory(uint64_t limit, const CpuSet& mems);
  // v1 cpuset.mem_exclusive=1 on the parent, then on the instance (asked
  // for with `mkctl start --exclusive-memory`): no sibling cpuset may then
  // use the instance's memory nodes (the kernel refuses EINVAL when one
  // does — a second instance or a host cgroup on the same node; and later
  // refuses such a sibling's mems). The "memory nodes" guarantee: in force,
  // or why not (the refusal, v2 has no such file, no cpuset hierarchy).
  // Never an error: the instance runs either way.
  Guarantee make_mems_exclusive();
  // Pids in the instance cgroup (cpuset hierarchy first, else memory).
  Result<std::vector<pid_t>> pids() const;
  Result<void> destroy();

  const Guarantees& guarantees() const { return guarantees_; }
  // Absolute (host) directories; "" when that hierarchy is not used.
  const std::string& cpuset_dir() const { return cpuset_dir_; }
  const std::string& memory_dir() const { return memory_dir_; }

 private:
  InstanceCgroup() = default;
  SysRoot root_;
  CgroupLayout layout_;
  std::string cpuset_dir_;
  std::string memory_dir_;
  Guarantees guarantees_;
};

}  // namespace mk
