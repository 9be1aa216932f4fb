// Memory and device moves of a running instance (see resource_move.h): the
// checks against the partition, the fd message on the handover socket, the
// image requests of the consent handshake, the cgroup writes, all or
// nothing, and the RunningInstance's lists brought up to date.
#include "mkernel/resource_move.h"

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "change_steps.h"
#include "ipi/fd_passing.h"
#include "mk/abi/control_messages.h"
#include "mk/units.h"
#include "mkernel/devices.h"
#include "mkernel/manifest.h"
#include "mkernel/memory_region.h"
#include "mkernel/process_identity.h"

namespace mk {

// The resource lists of a RunningInstance (boot.h): its regions are
// regions_ (booted) followed by adopted_regions_ (taken back after a
// restart), in /memory@N order.
struct ResourceAccess {
  static std::size_t region_count(const RunningInstance& r) { return r.regions_.size() + r.adopted_regions_.size(); }
  static int region_fd(const RunningInstance& r, std::size_t i) {
    return i < r.regions_.size() ? r.regions_[i].fd() : r.adopted_regions_.at(i - r.regions_.size()).get();
  }
  static void push_region(RunningInstance& r, RegionFd fd, const MemoryRegion& m, int image_fd) {
    r.guarantees_.push_back(fd.guarantee());
    // Its line after the other regions' in the record (the rest stay put).
    auto& lines = r.record_.guarantees;
    auto last = std::find_if(lines.rbegin(), lines.rend(), [](const std::string& l) { return is_region_line(l); });
    lines.insert(last == lines.rend() ? lines.end() : last.base(), to_line(fd.guarantee()));
    if (r.adopted_regions_.empty()) {
      r.regions_.push_back(std::move(fd));
    } else {
      r.adopted_regions_.emplace_back(fd.release_fd().release());
    }
    r.inst_.memory.push_back(m);
    r.record_.region_fds.push_back(image_fd);
  }
  static void pop_region(RunningInstance& r) {
    if (!r.adopted_regions_.empty()) {
      r.adopted_regions_.pop_back();
    } else if (!r.regions_.empty()) {
      r.regions_.pop_back();
      // Its guarantee line: the last "memory region" one.
      for (auto it = r.guarantees_.rbegin(); it != r.guarantees_.rend(); ++it) {
        if (it->name == "memory region") {
          r.guarantees_.erase(std::next(it).base());
          break;
        }
      }
    }
    if (!r.inst_.memory.empty()) r.inst_.memory.pop_back();
    if (!r.record_.region_fds.empty()) r.record_.region_fds.pop_back();
    auto& lines = r.record_.guarantees;
    auto last = std::find_if(lines.rbegin(), lines.rend(), [](const std::string& l) { return is_region_line(l); });
    if (last != lines.rend()) lines.erase(std::next(last).base());
  }
  static void set_region_image_fd(RunningInstance& r, std::size_t i, int fd) {
    if (i < r.record_.region_fds.size()) r.record_.region_fds[i] = fd;
  }
  static void set_devices(RunningInstance& r, std::vector<DeviceSpec> d) { r.inst_.devices = std::move(d); }
  // The cgroup's lines (its memory limit changed) replace those of the same
  // name, in the handle and in the record; every other line (the spawn's,
  // the regions', the host's isolation lines) stays where it is.
  static void sync_guarantees(RunningInstance& r) {
    if (!r.cgroup_) return;
    for (const Guarantee& g : r.cgroup_->guarantees()) {
      for (auto& mine : r.guarantees_)
        if (mine.name == g.name) mine = g;
      for (auto& line : r.record_.guarantees)
        if (line.rfind(g.name + ": ", 0) == 0) line = to_line(g);
    }
  }
  static bool is_region_line(const std::string& l) { return l.rfind("memory region: ", 0) == 0; }
  static int netns(const RunningInstance& r) { return r.netns_.get(); }
};

namespace {

using change::Clock;
using change::ms_since;
using change::Step;
using change::StepFn;

std::string region_text(std::size_t i, const MemoryRegion& m) {
  return "region " + std::to_string(i) + ": " + format_size(m.bytes) + " on node " + std::to_string(m.node);
}

uint64_t limit_of(const std::vector<MemoryRegion>& regions) {
  uint64_t sum = 0;
  for (const auto& m : regions) sum += m.bytes;
  return sum + kInstanceOverheadBytes;
}

CpuSet nodes_of(const std::vector<MemoryRegion>& regions) {
  CpuSet s;
  for (const auto& m : regions) s.insert(m.node);
  return s;
}

// The fd of a region or device, ahead of its add request.
Result<void> send_resource_fd(int sock, uint32_t op_id, uint32_t index, uint32_t kind, int fd) {
  if (sock < 0)
    return MK_FAIL(ENOTSUP, "no handover socket",
                   "the image was adopted from a record without one (started by an older mkerneld): stop and "
                   "start it to add memory or devices");
  const abi::ResourceFdMsg m{abi::kResourceFdMagic, op_id, index, kind};
  auto r = ipi::send_fds(sock, std::span<const int>(&fd, 1), std::as_bytes(std::span<const abi::ResourceFdMsg, 1>(&m, 1)));
  if (!r) return Error(r.error().code(), "cannot send the fd to the image").set_detail("handover socket: %s", r.error().message());
  return ok();
}

const char* type_name(uint16_t type) {
  switch (type) {
    case abi::kMsgMemoryAdd: return "kMsgMemoryAdd";
    case abi::kMsgMemoryRelease: return "kMsgMemoryRelease";
    case abi::kMsgDeviceAdd: return "kMsgDeviceAdd";
    default: return "kMsgDeviceRelease";
  }
}

// One image request. *unknown: it failed without the image's answer.
Result<abi::ResourceReply> request(RunningInstance& run, uint16_t type, const abi::ResourceMsg& m,
                                   std::chrono::milliseconds timeout, bool* unknown) {
  const std::string& name = run.instance().name;
  alignas(abi::ResourceReply) std::byte buf[sizeof(abi::ResourceReply) + 1];
  auto n = run.endpoint().request(run.instance().id, type,
                                  std::as_bytes(std::span<const abi::ResourceMsg, 1>(&m, 1)), buf, timeout);
  if (!n) {
    *unknown = n.error().code() == ETIMEDOUT;
    int code = n.error().code() == EMSGSIZE ? EPROTO : n.error().code();
    return Error(code, "resource request failed")
        .set_detail("%s #%u to '%s': %s", type_name(type), m.index, name.c_str(), n.error().message());
  }
  if (*n != sizeof(abi::ResourceReply))
    return MK_FAIL(EPROTO, "bad resource reply", "%s #%u: '%s' answered %zu bytes, expected %zu", type_name(type),
                   m.index, name.c_str(), *n, sizeof(abi::ResourceReply));
  abi::ResourceReply r;
  std::memcpy(&r, buf, sizeof r);
  r.detail[sizeof r.detail - 1] = '\0';
  if (r.status > 0)
    return MK_FAIL(EPROTO, "bad resource reply", "%s #%u: '%s' answered status %d", type_name(type), m.index,
                   name.c_str(), r.status);
  if (r.status < 0) {
    return Error(-r.status, "the image refused")
        .set_detail("'%s' refused %s #%u: %s: %s", name.c_str(), type_name(type), m.index, std::strerror(-r.status),
                    r.detail[0] ? r.detail : "no detail");
  }
  return r;
}

abi::ResourceMsg memory_msg(uint32_t op_id, std::size_t index, const MemoryRegion& m, bool fd_sent) {
  abi::ResourceMsg msg{};
  msg.op_id = op_id;
  msg.index = static_cast<uint32_t>(index);
  msg.fd_sent = fd_sent ? 1 : 0;
  msg.size = m.bytes;
  msg.numa = m.node;
  return msg;
}

// The device's node as ResourceMsg fields. EINVAL when it does not fit.
Result<abi::ResourceMsg> device_msg(uint32_t op_id, std::size_t index, const BootDevice& node, const DeviceSpec& spec) {
  abi::ResourceMsg msg{};
  msg.op_id = op_id;
  msg.index = static_cast<uint32_t>(index);
  msg.kind = static_cast<uint32_t>(node.kind);
  if (node.name.size() >= sizeof msg.name)
    return MK_FAIL(EINVAL, "device name too long", "%s: its node name '%s' is longer than %zu characters",
                   spec.to_string().c_str(), node.name.c_str(), sizeof msg.name - 1);
  std::memcpy(msg.name, node.name.data(), node.name.size());
  std::string props;
  for (const auto& [k, v] : node.properties) props += k + "=" + v + "\n";
  if (props.size() >= sizeof msg.properties)
    return MK_FAIL(EINVAL, "device properties too long",
                   "%s: its properties take %zu bytes, at most %zu fit in a request (a shorter path, e.g. a "
                   "symlink, fits)",
                   spec.to_string().c_str(), props.size(), sizeof msg.properties - 1);
  std::memcpy(msg.properties, props.data(), props.size());
  return msg;
}

bool carries_fd(DeviceKind k) { return k == DeviceKind::kFile || k == DeviceKind::kListen || k == DeviceKind::kBlock; }

bool lists(const std::vector<DeviceSpec>& list, const DeviceSpec& d) {
  return std::any_of(list.begin(), list.end(), [&](const DeviceSpec& x) { return x.key() == d.key(); });
}

// kMsgMemoryAdd with the fd sent first; the image's fd number in *image_fd.
StepFn memory_add_fn(RunningInstance& run, uint32_t op_id, std::size_t index, MemoryRegion m, const int* host_fd,
                     std::chrono::milliseconds timeout, int* image_fd) {
  return [&run, op_id, index, m, host_fd, timeout, image_fd](bool* unknown) -> Result<void> {
    MK_TRY(send_resource_fd(run.handover_socket(), op_id, static_cast<uint32_t>(index), 0, *host_fd));
    MK_TRY_ASSIGN(abi::ResourceReply r, request(run, abi::kMsgMemoryAdd, memory_msg(op_id, index, m, true), timeout,
                                                unknown));
    if (image_fd) *image_fd = r.fd;
    return ok();
  };
}

StepFn memory_release_fn(RunningInstance& run, uint32_t op_id, std::size_t index, MemoryRegion m,
                         std::chrono::milliseconds timeout) {
  return [&run, op_id, index, m, timeout](bool* unknown) -> Result<void> {
    MK_TRY(request(run, abi::kMsgMemoryRelease, memory_msg(op_id, index, m, false), timeout, unknown));
    return ok();
  };
}

// kMsgDeviceAdd: the device opened now (file, listen, block) and its fd
// sent first; a net interface moved into the namespace before (its own step).
// probe_first: ask without an fd first (the image answers 0 when it has the
// device: a listen socket it still holds must not be bound again).
StepFn device_add_fn(RunningInstance& run, uint32_t op_id, std::size_t index, BootDevice node, DeviceSpec spec,
                     std::chrono::milliseconds timeout, bool probe_first) {
  return [&run, op_id, index, node, spec, timeout, probe_first](bool* unknown) -> Result<void> {
    MK_TRY_ASSIGN(abi::ResourceMsg msg, device_msg(op_id, index, node, spec));
    if (!carries_fd(spec.kind)) {
      MK_TRY(request(run, abi::kMsgDeviceAdd, msg, timeout, unknown));
      return ok();
    }
    if (probe_first) {
      auto p = request(run, abi::kMsgDeviceAdd, msg, timeout, unknown);
      if (p) return ok();
      if (p.error().code() != EINVAL) return p.error();
    }
    MK_TRY_ASSIGN(OwnedFd fd, open_device(spec));
    MK_TRY(send_resource_fd(run.handover_socket(), op_id, static_cast<uint32_t>(index), msg.kind, fd.get()));
    msg.fd_sent = 1;
    MK_TRY(request(run, abi::kMsgDeviceAdd, msg, timeout, unknown));
    return ok();  // the host's copy closes here: the image holds the device
  };
}

StepFn device_release_fn(RunningInstance& run, uint32_t op_id, std::size_t index, BootDevice node, DeviceSpec spec,
                         std::chrono::milliseconds timeout) {
  return [&run, op_id, index, node, spec, timeout](bool* unknown) -> Result<void> {
    MK_TRY_ASSIGN(abi::ResourceMsg msg, device_msg(op_id, index, node, spec));
    MK_TRY(request(run, abi::kMsgDeviceRelease, msg, timeout, unknown));
    return ok();
  };
}

StepFn link_in_fn(RunningInstance& run, std::string ifname) {
  return [&run, ifname](bool*) -> Result<void> { return move_link(ifname, ResourceAccess::netns(run)); };
}
StepFn link_out_fn(RunningInstance& run, std::string ifname) {
  return [&run, ifname](bool*) -> Result<void> {
    MK_TRY_ASSIGN(OwnedFd host, open_current_netns());
    return return_link(ifname, ResourceAccess::netns(run), host.get());
  };
}

std::string list_text(const std::vector<MemoryRegion>& m) {
  std::string s;
  for (std::size_t i = 0; i < m.size(); ++i) s += (i ? ", " : "") + format_size(m[i].bytes) + "@" + std::to_string(m[i].node);
  return s.empty() ? "none" : s;
}

std::string list_text(const std::vector<DeviceSpec>& d) {
  std::string s;
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + d[i].to_string();
  return s.empty() ? "none" : s;
}

}  // namespace

Result<std::vector<MemoryRegion>> plan_memory(const Topology& topo, const Partition& part, std::string_view name,
                                              const std::vector<MemorySpec>& want) {
  const Instance* inst = part.find(name);
  if (!inst)
    return MK_FAIL(ENOENT, "no such instance", "no instance '%.*s' to change", static_cast<int>(name.size()),
                   name.data());
  if (want.empty())
    return MK_FAIL(EINVAL, "no memory", "'%s' needs at least one region (e.g. --memory %s)", inst->name.c_str(),
                   inst->memory.empty() ? "64M" : format_size(inst->memory.front().bytes).c_str());
  std::vector<MemoryRegion> out;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const MemorySpec& m = want[i];
    if (m.bytes == 0 || m.bytes % kPageSize)
      return MK_FAIL(EINVAL, "memory not page aligned", "region %zu: %s is not a positive multiple of the %llu-byte page",
                     i, format_size(m.bytes).c_str(), static_cast<unsigned long long>(kPageSize));
    uint32_t node = m.node ? *m.node
                           : i < inst->memory.size() ? inst->memory[i].node
                                                     : topo.main_node_of(inst->cpus);
    if (!topo.find_numa(node))
      return MK_FAIL(ENOENT, "no such NUMA node", "region %zu: NUMA node %u does not exist (this machine has %zu node(s))",
                     i, node, topo.numa_nodes.size());
    out.push_back({node, m.bytes});
  }
  // What the pool must give: per node, the new list's total beyond what
  // this instance holds there now.
  std::map<uint32_t, uint64_t> after;
  for (const auto& m : out) after[m.node] += m.bytes;
  for (auto [node, bytes] : after) {
    const uint64_t have = inst->memory_on(node);
    if (bytes <= have) continue;
    const uint64_t free = part.free_memory_on(node);
    if (bytes - have > free)
      return MK_FAIL(ENOMEM, "not enough pool memory",
                     "'%s' would need %s more on node %u but the pool has %s free there (of %s); ask for less or "
                     "grow the pool (mkctl init)",
                     inst->name.c_str(), format_size(bytes - have).c_str(), node, format_size(free).c_str(),
                     format_size(part.pool.memory_on(node)).c_str());
  }
  return out;
}

Result<void> check_device_change(const Partition& part, std::string_view name, const std::vector<DeviceSpec>& want) {
  const Instance* inst = part.find(name);
  if (!inst)
    return MK_FAIL(ENOENT, "no such instance", "no instance '%.*s' to change", static_cast<int>(name.size()),
                   name.data());
  std::set<std::string> seen;
  for (const auto& d : want) {
    if (d.kind == DeviceKind::kConsole)
      return MK_FAIL(EINVAL, "console is implicit", "every instance has its console; do not list it");
    if (!seen.insert(d.key()).second)
      return MK_FAIL(EINVAL, "duplicate device", "device %s is given twice", d.to_string().c_str());
    if (lists(inst->devices, d)) continue;  // kept
    if ((d.kind == DeviceKind::kNet || d.kind == DeviceKind::kBlock) && !part.pool.has_device(d.target)) {
      std::string pool_devs;
      for (const auto& p : part.pool.devices) pool_devs += (pool_devs.empty() ? "" : ", ") + p;
      return MK_FAIL(ENOENT, "device not in pool",
                     "device '%s' is not in the pool (pool devices: %s); add it with mkctl init --devices",
                     d.target.c_str(), pool_devs.empty() ? "none" : pool_devs.c_str());
    }
    for (const auto& other : part.instances) {
      if (other.name != inst->name && lists(other.devices, d))
        return MK_FAIL(EBUSY, "device already owned", "device %s already belongs to instance '%s'",
                       d.to_string().c_str(), other.name.c_str());
    }
  }
  return ok();
}

Result<ResourceChangeResult> resize_memory(RunningInstance* run, std::string_view name,
                                           const std::vector<MemoryRegion>& current,
                                           const std::vector<MemoryRegion>& want, const ResourceChangeOptions& opts) {
  const auto t0 = Clock::now();
  const std::string who(name);
  if (want.empty()) return MK_FAIL(EINVAL, "no memory", "'%s' needs at least one region", who.c_str());
  std::size_t keep = 0;
  while (keep < current.size() && keep < want.size() && current[keep] == want[keep]) ++keep;
  ResourceChangeResult res;
  res.memory = want;
  for (std::size_t i = current.size(); i-- > keep;) res.removed.push_back(region_text(i, current[i]));
  for (std::size_t i = keep; i < want.size(); ++i) res.added.push_back(region_text(i, want[i]));
  if (!run || (keep == current.size() && keep == want.size())) {
    res.ms = ms_since(t0);
    return res;
  }
  if (ResourceAccess::region_count(*run) != current.size() || run->instance().memory != current)
    return MK_FAIL(EINVAL, "regions out of step",
                   "'%s': the host holds %zu region(s) (%s) where the state file lists %zu (%s): restart mkerneld",
                   who.c_str(), ResourceAccess::region_count(*run), list_text(run->instance().memory).c_str(),
                   current.size(), list_text(current).c_str());
  if (run->handover_socket() < 0)
    return MK_FAIL(ENOTSUP, "no handover socket",
                   "'%s' was adopted from a record without one (started by an older mkerneld): stop and start it "
                   "to change its memory",
                   who.c_str());

  // The new regions first: making one touches nothing of the instance.
  std::vector<RegionFd> fresh;
  std::vector<int> fresh_fds;
  for (std::size_t i = keep; i < want.size(); ++i) {
    MK_TRY_ASSIGN(RegionFd r, RegionFd::create("mk-" + who + "-mem" + std::to_string(i), want[i].node, want[i].bytes,
                                               {}));
    fresh.push_back(std::move(r));
  }
  for (const auto& r : fresh) fresh_fds.push_back(r.fd());
  std::vector<int> host_fds;  // of the regions released, for the undo
  for (std::size_t i = 0; i < current.size(); ++i) host_fds.push_back(ResourceAccess::region_fd(*run, i));
  std::vector<int> image_fds(want.size(), -1);
  std::vector<int> undo_fds(current.size(), -1);  // image fd numbers of regions an undo gave back

  std::vector<Step> steps;
  const uint32_t op = opts.op_id;
  for (std::size_t i = current.size(); i-- > keep;) {
    const std::string r = "region " + std::to_string(i);
    steps.push_back({"release " + r + " from " + who, memory_release_fn(*run, op, i, current[i], opts.timeout),
                     "undo: add " + r + " to " + who,
                     memory_add_fn(*run, op, i, current[i], &host_fds[i], opts.timeout, &undo_fds[i])});
  }
  InstanceCgroup* cg = run->cgroup();
  std::vector<MemoryRegion> both = current;
  both.insert(both.end(), want.begin() + static_cast<std::ptrdiff_t>(keep), want.end());
  const uint64_t high = std::max(limit_of(current), limit_of(want));
  const CpuSet mems_before = nodes_of(current), mems_both = nodes_of(both);
  if (cg && keep < want.size() && (high != limit_of(current) || mems_both != mems_before)) {
    steps.push_back({"memory cgroup of " + who,
                     [cg, high, mems_both](bool*) { return cg->set_memory(high, mems_both); },
                     "undo: memory cgroup of " + who,
                     [cg, current, mems_before](bool*) { return cg->set_memory(limit_of(current), mems_before); }});
  }
  for (std::size_t i = keep; i < want.size(); ++i) {
    const std::string r = "region " + std::to_string(i);
    steps.push_back({"add " + r + " to " + who,
                     memory_add_fn(*run, op, i, want[i], &fresh_fds[i - keep], opts.timeout, &image_fds[i]),
                     "undo: release " + r + " from " + who, memory_release_fn(*run, op, i, want[i], opts.timeout)});
  }
  change::Runner runner(opts, res.steps);
  auto done = runner.all_or_nothing(steps, "memory change failed", who + " keeps " + list_text(current),
                                    "reconcile_resources");
  if (!done) {
    // A region an undo gave back is held under a new fd number now.
    for (std::size_t i = 0; i < undo_fds.size(); ++i)
      if (undo_fds[i] >= 0) ResourceAccess::set_region_image_fd(*run, i, undo_fds[i]);
    return done.error();
  }

  // Done: the handle describes the new list.
  while (ResourceAccess::region_count(*run) > keep) ResourceAccess::pop_region(*run);
  for (std::size_t i = keep; i < want.size(); ++i)
    ResourceAccess::push_region(*run, std::move(fresh[i - keep]), want[i], image_fds[i]);
  if (cg && (limit_of(want) != high || nodes_of(want) != mems_both)) {
    bool u = false;
    auto r = runner.step("memory cgroup of " + who, [cg, want](bool*) { return cg->set_memory(limit_of(want), nodes_of(want)); },
                         &u);
    if (!r)
      res.warnings.push_back("the memory cgroup of '" + who + "' keeps its limit for " + list_text(both) + ": " +
                             r.error().to_string());
  }
  ResourceAccess::sync_guarantees(*run);
  res.ms = ms_since(t0);
  return res;
}

Result<ResourceChangeResult> change_devices(RunningInstance* run, std::string_view name,
                                            const std::vector<DeviceSpec>& current, const std::vector<DeviceSpec>& want,
                                            const ResourceChangeOptions& opts) {
  const auto t0 = Clock::now();
  const std::string who(name);
  ResourceChangeResult res;
  std::vector<DeviceSpec> after;  // kept, in the current order, then the new ones
  for (const auto& d : current)
    if (lists(want, d)) after.push_back(d);
  const std::size_t kept = after.size();
  for (const auto& d : want)
    if (!lists(current, d)) after.push_back(d);
  for (std::size_t i = kept; i < after.size(); ++i) res.added.push_back(after[i].to_string());
  for (const auto& d : current)
    if (!lists(want, d)) res.removed.push_back(d.to_string());
  res.devices = after;
  if (!run || (res.added.empty() && res.removed.empty())) {
    res.ms = ms_since(t0);
    return res;
  }
  if (run->instance().devices != current)
    return MK_FAIL(EINVAL, "devices out of step", "'%s': the host has %s where the state file lists %s: restart mkerneld",
                   who.c_str(), list_text(run->instance().devices).c_str(), list_text(current).c_str());
  bool has_fd_device = false, has_net = false;
  for (std::size_t i = kept; i < after.size(); ++i) {
    has_fd_device |= carries_fd(after[i].kind);
    has_net |= after[i].kind == DeviceKind::kNet;
  }
  if (has_fd_device && run->handover_socket() < 0)
    return MK_FAIL(ENOTSUP, "no handover socket",
                   "'%s' was adopted from a record without one (started by an older mkerneld): stop and start it "
                   "to add a file, listen or block device",
                   who.c_str());
  if (has_net && ResourceAccess::netns(*run) < 0)
    return MK_FAIL(ENOTSUP, "no network namespace",
                   "'%s' runs in the host's network namespace (it was started without a net device): a net device "
                   "can join it only when it starts; stop it, `mkctl update %s --device ...`, start it",
                   who.c_str(), who.c_str());

  // The working list as the image sees it after each step: current, then
  // the added ones appended, then the removed ones taken out.
  std::vector<DeviceSpec> work = current;
  std::vector<Step> steps;
  const uint32_t op = opts.op_id;
  for (std::size_t i = kept; i < after.size(); ++i) {
    const DeviceSpec& d = after[i];
    work.push_back(d);
    const std::size_t index = work.size();  // /devices index: the console is 0
    const BootDevice node = device_node(work, work.size() - 1);
    MK_TRY(device_msg(op, index, node, d));  // fits, checked before anything moves
    if (d.kind == DeviceKind::kNet)
      steps.push_back({"move " + d.target + " into " + who, link_in_fn(*run, d.target),
                       "undo: return " + d.target + " to the host", link_out_fn(*run, d.target)});
    steps.push_back({"add " + d.to_string() + " to " + who, device_add_fn(*run, op, index, node, d, opts.timeout, false),
                     "undo: release " + d.to_string() + " from " + who,
                     device_release_fn(*run, op, index, node, d, opts.timeout)});
  }
  for (std::size_t j = current.size(); j-- > 0;) {
    const DeviceSpec& d = current[j];
    if (lists(want, d)) continue;
    const BootDevice node = device_node(current, j);
    MK_TRY(device_msg(op, j + 1, node, d));
    steps.push_back({"release " + d.to_string() + " from " + who,
                     device_release_fn(*run, op, j + 1, node, d, opts.timeout),
                     "undo: add " + d.to_string() + " to " + who,
                     device_add_fn(*run, op, j + 1, node, d, opts.timeout, false)});
    if (d.kind == DeviceKind::kNet)
      steps.push_back({"return " + d.target + " to the host", link_out_fn(*run, d.target),
                       "undo: move " + d.target + " into " + who, link_in_fn(*run, d.target)});
  }
  change::Runner runner(opts, res.steps);
  MK_TRY(runner.all_or_nothing(steps, "device change failed", who + " keeps " + list_text(current),
                               "reconcile_resources"));
  ResourceAccess::set_devices(*run, after);
  res.ms = ms_since(t0);
  return res;
}

Result<std::size_t> trim_released_regions(Instance& inst, const SysRoot& root) {
  if (!inst.runtime) return std::size_t{0};
  RuntimeRecord& rec = *inst.runtime;
  MK_TRY_ASSIGN(OwnedFd pidfd, open_identity(root, {rec.pid, rec.start_time}));
  std::size_t dropped = 0;
  while (!rec.region_fds.empty() && rec.region_fds.size() <= inst.memory.size()) {
    const std::size_t i = rec.region_fds.size() - 1;
    int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), rec.region_fds[i], 0));
    if (fd >= 0) {
      OwnedFd got(fd);
      struct stat st{};
      // A memfd of the region's size: still held. (The number may have been
      // reused for a socket or pipe after the image closed the region.)
      if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == inst.memory[i].bytes)
        break;
    } else if (errno != EBADF) {
      int e = errno;
      return Error(e, "cannot read the image's regions").set_detail("pidfd_getfd of fd %d: %s", rec.region_fds[i],
                                                                    std::strerror(e));
    }
    rec.region_fds.pop_back();
    inst.memory.resize(rec.region_fds.size());
    ++dropped;
  }
  return dropped;
}

Result<void> reconcile_resources(RunningInstance& run, const std::vector<MemoryRegion>& memory,
                                 std::size_t regions_touched, const std::vector<DeviceSpec>& devices,
                                 const std::vector<DeviceSpec>& devices_touched, const ResourceChangeOptions& opts) {
  std::vector<std::pair<std::string, double>> steps_log;
  change::Runner runner(opts, steps_log);
  const std::string who = run.instance().name;
  const uint32_t op = opts.op_id;
  auto run_step = [&](const std::string& name, const StepFn& fn) -> Result<void> {
    bool u = false;
    auto r = runner.step(name, fn, &u);
    if (!r)
      return Error(r.error().code(), "resource reconcile failed")
          .set_detail("%s failed (the rest not attempted; reconciling again is safe): %s", name.c_str(),
                      r.error().message());
    return ok();
  };
  // Regions the image may hold beyond the state file's: released, last first.
  for (std::size_t i = regions_touched; i-- > memory.size();) {
    MK_TRY(run_step("release region " + std::to_string(i) + " from " + who,
                    memory_release_fn(run, op, i, MemoryRegion{}, opts.timeout)));
  }
  // Regions of the state file the host no longer holds (trimmed): afresh.
  const std::vector<MemoryRegion> held = run.instance().memory;
  if (held.size() < memory.size()) {
    if (InstanceCgroup* cg = run.cgroup())
      MK_TRY(run_step("memory cgroup of " + who, [cg, memory](bool*) { return cg->set_memory(limit_of(memory), nodes_of(memory)); }));
    for (std::size_t i = held.size(); i < memory.size(); ++i) {
      MK_TRY_ASSIGN(RegionFd r, RegionFd::create("mk-" + who + "-mem" + std::to_string(i), memory[i].node,
                                                 memory[i].bytes, {}));
      const int host_fd = r.fd();
      int image_fd = -1;
      MK_TRY(run_step("add region " + std::to_string(i) + " to " + who,
                      memory_add_fn(run, op, i, memory[i], &host_fd, opts.timeout, &image_fd)));
      ResourceAccess::push_region(run, std::move(r), memory[i], image_fd);
    }
    ResourceAccess::sync_guarantees(run);
  }
  // Devices: the image's list follows the state file's order for what it
  // keeps; a touched device is added (idempotent probe first) or released.
  for (const auto& d : devices_touched) {
    auto at = std::find_if(devices.begin(), devices.end(), [&](const DeviceSpec& x) { return x.key() == d.key(); });
    if (at != devices.end()) {
      const std::size_t j = static_cast<std::size_t>(at - devices.begin());
      if (d.kind == DeviceKind::kNet && ResourceAccess::netns(run) >= 0) {
        // Back inside unless it is there already (ENODEV: not in the host's namespace).
        if (auto m = move_link(d.target, ResourceAccess::netns(run)); !m && m.error().code() != ENODEV) return m.error();
      }
      MK_TRY(run_step("add " + d.to_string() + " to " + who,
                      device_add_fn(run, op, j + 1, device_node(devices, j), d, opts.timeout, true)));
    } else {
      std::vector<DeviceSpec> one{d};
      MK_TRY(run_step("release " + d.to_string() + " from " + who,
                      device_release_fn(run, op, 0, device_node(one, 0), d, opts.timeout)));
      if (d.kind == DeviceKind::kNet && ResourceAccess::netns(run) >= 0) {
        MK_TRY_ASSIGN(OwnedFd host, open_current_netns());
        if (auto m = return_link(d.target, ResourceAccess::netns(run), host.get()); !m && m.error().code() != ENODEV)
          return m.error();
      }
    }
  }
  ResourceAccess::set_devices(run, devices);
  return ok();
}

}  // namespace mk
