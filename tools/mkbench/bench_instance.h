// DOC: helpers of the mkbench suites that run a workload *inside* real
// instances (isolation.cc, pe_split.cc): boot the mk-kernel image with a
// tenant command through mk::boot_instance and wait for READY, stop and
// release it, keep host tasks and IRQs off its CPUs while it runs, wait for
// the file a tenant writes its result to, a process's CPU time, percentiles
// of a sample, and a private scratch directory.
//
// The tenants are `mkbench __worker ...` (worker.h): the image starts them
// with /bin/sh -c inside the instance's cgroup and CPUs; they write one JSON
// result file into the scratch directory (same filesystem: the instance's
// mount namespace only remounts /proc).
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mk/result.h"
#include "mkernel/boot.h"
#include "mkernel/host_tasks.h"
#include "mkernel/irq.h"
#include "mkernel/topology.h"

namespace mkbench {

// Boots `req` and waits for READY (10 s). On failure nothing is left behind.
mk::Result<std::unique_ptr<mk::RunningInstance>> boot_ready(const mk::Topology& topo, const mk::BootRequest& req);
// Shutdown (kill when it does not answer), then release (cgroup, regions).
void stop_instance(std::unique_ptr<mk::RunningInstance>& run);

// Waits until `path` exists (the tenant writes it with a rename) and parses
// it as a JSON object. Returns: ETIMEDOUT naming the file, EPROTO (not JSON).
mk::Result<boost::json::object> wait_result_file(const std::string& path, std::chrono::milliseconds timeout);
// Writes `doc` to path.tmp, then renames it to `path` (what wait_result_file reads).
bool write_result_file(const std::string& path, const boost::json::object& doc);

// utime + stime of a process in seconds (/proc/PID/stat); -1 if unreadable.
double proc_cpu_seconds(pid_t pid);

// The q-quantile (0..1) of an ascending sample by the nearest-rank rule; 0 if empty.
double quantile(const std::vector<double>& sorted, double q);

// A fresh directory /tmp/mkbench-TAG-PID (removed first if it exists).
mk::Result<std::string> scratch_dir(const std::string& tag);

// What a suite that runs workloads in instances checks first: root, the
// image (mk::inspect_image), a scratch directory (scratch_dir(suite)); and
// this mkbench's path (the tenants run `mkbench __worker`). nullopt after
// printing "mkbench SUITE: why" on stderr, with the exit code in *code.
struct InstanceBenchSetup {
  std::string dir;    // the scratch directory (the caller removes it)
  std::string self;   // this mkbench
  std::string image;  // the image's path as inspect_image resolved it
};
std::optional<InstanceBenchSetup> setup_instance_bench(const char* suite, const std::string& image, int* code);
void remove_dir(const std::string& dir);

// What mkerneld does for an instance started with --evict-host-tasks and
// IRQ steering: the host's movable tasks (this process among them) and the
// IRQs off `cpus` (onto the machine's other CPUs), undone by restore() and
// the destructor. Applied before the instance boots (the image and its
// tenants get their CPUs from their cpuset and affinity; tasks in instance
// cgroups are left alone). Tasks the host started meanwhile inherited the
// narrowed affinity; restore() gives those (started after apply(), allowed
// exactly the CPUs the host was narrowed to, not in an instance cgroup)
// every CPU back, so nothing stays pinned after a benchmark.
class HostEnforcement {
 public:
  HostEnforcement(const mk::CpuSet& cpus, const mk::CpuSet& all);
  ~HostEnforcement() { restore(); }
  HostEnforcement(const HostEnforcement&) = delete;
  HostEnforcement& operator=(const HostEnforcement&) = delete;
  // The guarantee lines: "host tasks: ...", "irq steering: ...".
  std::vector<mk::Guarantee> apply();
  void restore();

 private:
  mk::CpuSet cpus_, host_;
  mk::IrqSteering irq_;
  std::vector<mk::MovedTask> moved_;
  bool steered_ = false;
  bool evicted_ = false;
  unsigned long long applied_ticks_ = 0;  // clock ticks since boot at apply()
};

// Single-quoted for /bin/sh.
std::string sh_quote(const std::string& s);

}  // namespace mkbench
