// The process backend's start recipe and the running-instance handle (see boot.h).
#include "mkernel/boot.h"
#include "mkernel/fault.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>

#include "mkernel/confine.h"
#include "mkernel/console_log.h"
#include "mkernel/devices.h"
#include "mkernel/process_identity.h"

namespace mk {

namespace {

using Clock = std::chrono::steady_clock;

Result<OwnedFd> sealed_tree_memfd(const std::vector<uint8_t>& blob, const std::string& name) {
  std::string label = "mk-boot-tree-" + name;
  int fd = ::memfd_create(label.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return errno_error("memfd_create for the boot tree");
  OwnedFd owned(fd);
  std::size_t off = 0;
  while (off < blob.size()) {
    ssize_t n = ::write(fd, blob.data() + off, blob.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("writing the boot tree");
    off += static_cast<std::size_t>(n);
  }
  // Sealed read-only: the image cannot alter what it was told it owns.
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
    return errno_error("sealing the boot tree");
  return owned;
}

std::vector<std::string> split_blanks(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

CpuSet nodes_as_set(const Instance& inst, const Topology& topo) {
  CpuSet mems;  // a node set, spelled with the same bitset type
  for (const auto& r : inst.memory) mems.insert(r.node);
  if (mems.empty())
    for (uint32_t n : topo.nodes_of(inst.cpus)) mems.insert(n);
  if (mems.empty()) mems.insert(0);
  return mems;
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A copy of fd `target` of the process behind `pidfd` (close-on-exec).
Result<OwnedFd> fetch_fd(int pidfd, int target, const char* what) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, target, 0));
  if (fd < 0) {
    int e = errno;
    return Error(e, "cannot take an fd back from the image")
        .set_detail("%s (fd %d): pidfd_getfd: %s", what, target, std::strerror(e));
  }
  return OwnedFd(fd);
}

bool pidfd_exited(int pidfd, int timeout_ms) {
  pollfd p{pidfd, POLLIN, 0};
  int r;
  while ((r = ::poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
  }
  return r > 0;
}


// Everything an image's fd table is made of (manifest.h layout).
struct ImageFds {
  int devnull = -1;
  int console_write = -1;
  int console_read = -1;
  int tree = -1;
  std::vector<int> regions;  // in /memory@N order
  std::vector<int> devices;  // one per device listed with fd >= 0 (console excluded), in order
  const ipi::ChannelFds* host = nullptr;
  const std::vector<PeerChannelFds>* peers = nullptr;
  int handover = -1;       // the image's end of the handover socket
  int handover_host = -1;  // the host's end (the image keeps a copy)
};

// The handover socket of an image: [0] the host's end, [1] the image's.
Result<std::pair<OwnedFd, OwnedFd>> handover_socketpair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return errno_error("socketpair for the handover socket");
  return std::pair<OwnedFd, OwnedFd>(OwnedFd(sv[0]), OwnedFd(sv[1]));
}

// The child's complete fd table: 0 /dev/null, 1-2 console, 3 tree, then as
// the tree lists them; and the record of every number the host takes back.
Result<void> layout_fds(const BootTree& tree, const ImageFds& in, ConfineSpec& spec, RuntimeRecord& rec) {
  if (in.regions.size() != tree.memory.size())
    return MK_FAIL(EINVAL, "bad image fd table", "%zu region fds for %zu regions", in.regions.size(),
                   tree.memory.size());
  spec.fds.push_back({in.devnull, 0});
  spec.fds.push_back({in.console_write, 1});
  spec.fds.push_back({in.console_write, 2});
  spec.fds.push_back({in.tree, kBootTreeFd});
  for (std::size_t i = 0; i < tree.memory.size(); ++i) spec.fds.push_back({in.regions[i], tree.memory[i].fd});
  std::size_t next_dev = 0;
  for (const auto& d : tree.devices) {
    if (d.kind == DeviceKind::kConsole) spec.fds.push_back({in.console_write, d.fd});
    else if (d.fd >= 0) spec.fds.push_back({in.devices.at(next_dev++), d.fd});
  }
  const IpiChannel& hc = tree.ipi.channels.at(0);
  spec.fds.push_back({in.host->memfd.get(), hc.fd});
  spec.fds.push_back({in.host->eventfd[0].get(), hc.fd + 1});
  spec.fds.push_back({in.host->eventfd[1].get(), hc.fd + 2});
  rec.peers.clear();
  for (std::size_t i = 0; i < in.peers->size(); ++i) {
    const IpiChannel& pc = tree.ipi.channels.at(1 + i);
    const PeerChannelFds& pf = (*in.peers)[i];
    spec.fds.push_back({pf.memfd, pc.fd});
    spec.fds.push_back({pf.eventfd[0], pc.fd + 1});
    spec.fds.push_back({pf.eventfd[1], pc.fd + 2});
    rec.peers.push_back({pc.peer_id, pc.fd, pc.side});
  }
  // The console's read end, held by the image so the console outlives us.
  const int console_host_fd = std::atoi(tree.devices.front().properties.at("host-fd").c_str());
  spec.fds.push_back({in.console_read, console_host_fd});
  if (tree.handover_socket) spec.fds.push_back({in.handover, *tree.handover_socket});
  if (tree.handover_socket_host) spec.fds.push_back({in.handover_host, *tree.handover_socket_host});
  rec.handover_host_fd = tree.handover_socket_host.value_or(-1);
  rec.host_channel_fd = hc.fd;
  rec.console_host_fd = console_host_fd;
  rec.console_fd = tree.devices.front().fd;
  rec.region_fds.clear();
  for (const auto& m : tree.memory) rec.region_fds.push_back(m.fd);
  return ok();
}

std::vector<std::string> image_argv(const ImageSpec& image) {
  std::vector<std::string> argv{image.path};
  for (auto& a : split_blanks(image.cmdline)) argv.push_back(std::move(a));
  return argv;
}

std::vector<std::string> image_envp(const Instance& inst) {
  return {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "MKERNEL_INSTANCE=" + inst.name};
}

// True when process `pid` is in another `name` namespace than we are.
Result<bool> other_namespace(const SysRoot& root, pid_t pid, const char* name) {
  struct stat theirs{}, ours{};
  std::string p = root.path("/proc/" + std::to_string(pid) + "/ns/" + name);
  if (::stat(p.c_str(), &theirs) != 0) {
    int e = errno;
    return Error(e == ENOENT ? ESRCH : e, "cannot read the running image's namespaces")
        .set_detail("%s: %s", p.c_str(), std::strerror(e));
  }
  std::string self = std::string("/proc/self/ns/") + name;
  if (::stat(self.c_str(), &ours) != 0) return errno_error("stat /proc/self/ns");
  return theirs.st_ino != ours.st_ino || theirs.st_dev != ours.st_dev;
}

}  // namespace

Result<ipi::ChannelFds> fetch_channel_fds(int pidfd, int first_fd) {
  ipi::ChannelFds cf;
  for (int i = 0; i < 3; ++i) {
    MK_TRY_ASSIGN(OwnedFd fd, fetch_fd(pidfd, first_fd + i, "channel"));
    (i == 0 ? cf.memfd : cf.eventfd[i - 1]).reset(fd.release());
  }
  return cf;
}

Result<void> RunningInstance::add_host_endpoint(ipi::Channel&& ch) {
  MK_TRY_ASSIGN(ep_, ipi::Endpoint::create());
  MK_TRY(ep_->add_peer(inst_.id, std::move(ch), pid_));
  RunningInstance* raw = this;
  MK_TRY(ep_->on_value<abi::ReadyMsg>(abi::kMsgReady,
                                      [raw](const abi::ReadyMsg& m, ipi::Incoming&) { raw->ready_ = m; }));
  MK_TRY(ep_->on_value<abi::TenantExitMsg>(abi::kMsgTenantExit, [raw](const abi::TenantExitMsg& m, ipi::Incoming&) {
    if (raw->tenant_exits_.size() == 64) raw->tenant_exits_.erase(raw->tenant_exits_.begin());
    raw->tenant_exits_.push_back(m);
  }));
  return ok();
}

Result<std::unique_ptr<RunningInstance>> boot_instance(const Topology& topo, const BootRequest& req) {
  const Instance& inst = req.instance;
  std::unique_ptr<RunningInstance> run(new RunningInstance());
  run->inst_ = inst;
  run->image_ = req.image;

  // 1. cgroups (optional: reported, never required).
  CpuSet mems = nodes_as_set(inst, topo);
  MK_TRY(fault::point("boot", "cgroup"));
  if (req.use_cgroups) {
    MK_TRY_ASSIGN(CgroupLayout layout, detect_cgroups(req.root));
    InstanceCgroup::Options co;
    co.memory_limit = inst.memory_bytes() + kInstanceOverheadBytes;
    MK_TRY_ASSIGN(InstanceCgroup cg, InstanceCgroup::create(req.root, layout, inst.name, inst.cpus, mems, co));
    run->cgroup_ = std::move(cg);
    for (const auto& g : run->cgroup_->guarantees()) run->guarantees_.push_back(g);
  }

  // 2. memory regions, 3. devices, 4. console.
  MK_TRY(fault::point("boot", "memory"));
  for (std::size_t i = 0; i < inst.memory.size(); ++i) {
    std::string label = "mk-" + inst.name + "-mem" + std::to_string(i);
    MK_TRY_ASSIGN(RegionFd r, RegionFd::create(label, inst.memory[i].node, inst.memory[i].bytes, {}));
    run->guarantees_.push_back(r.guarantee());
    run->regions_.push_back(std::move(r));
  }
  std::vector<OwnedFd> device_fds;
  std::vector<std::string> net_links;
  MK_TRY(fault::point("boot", "devices"));
  for (const auto& d : inst.devices) {
    if (d.kind == DeviceKind::kNet) {
      net_links.push_back(d.target);
      continue;
    }
    MK_TRY_ASSIGN(OwnedFd fd, open_device(d));
    device_fds.push_back(std::move(fd));
  }
  MK_TRY_ASSIGN(ConsolePipe console, make_console_pipe());

  // 5. host channel (side A stays with the host).
  MK_TRY(fault::point("boot", "channel"));
  ipi::ChannelConfig cfg{kHostRingSlots, 256 * 1024};
  MK_TRY_ASSIGN(ipi::Channel host_ch, ipi::Channel::create(cfg));
  MK_TRY_ASSIGN(ipi::ChannelFds ch_fds, host_ch.export_fds());
  MK_TRY_ASSIGN(auto hsock, handover_socketpair());

  // 6. boot tree, with the fd layout of manifest.h.
  MK_TRY(fault::point("boot", "boot-tree"));
  BootOptions bo;
  bo.bootargs = req.image.cmdline;
  bo.init = req.image.init;
  for (const auto& p : req.peers) bo.peers.push_back({p.peer_id, p.peer_name, p.side, kHostRingSlots});
  MK_TRY_ASSIGN(BootTree tree, make_boot_tree(topo, inst, bo));
  MK_TRY_ASSIGN(std::vector<uint8_t> blob, emit_boot_tree(tree));
  MK_TRY_ASSIGN(OwnedFd tree_fd, sealed_tree_memfd(blob, inst.name));

  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return errno_error("open /dev/null");
  OwnedFd null_fd(devnull);
  ConfineSpec spec;
  spec.cpus = inst.cpus;
  for (uint32_t n : mems) spec.nodes.push_back(n);
  spec.hostname = inst.name;
  spec.uid = req.image.uid;
  spec.gid = req.image.gid;
  ImageFds in;
  in.devnull = null_fd.get();
  in.console_write = console.write_end.get();
  in.console_read = console.read_end.get();
  in.tree = tree_fd.get();
  for (const auto& r : run->regions_) in.regions.push_back(r.fd());
  for (const auto& d : device_fds) in.devices.push_back(d.get());
  in.host = &ch_fds;
  in.peers = &req.peers;
  in.handover = hsock.second.get();
  in.handover_host = hsock.first.get();
  MK_TRY(layout_fds(tree, in, spec, run->record_));
  MK_TRY_ASSIGN(ConfinePlan plan, make_confine_plan(spec));
  run->handover_ = std::move(hsock.first);

  // 7. spawn: the prepare gate joins the cgroup and takes the net devices in.
  std::vector<std::string> argv = image_argv(req.image);
  std::vector<std::string> envp = image_envp(inst);
  SpawnOptions so;
  so.namespaces = req.namespaces;
  so.net_namespace = !net_links.empty();
  const InstanceCgroup* cg = run->cgroup_ ? &*run->cgroup_ : nullptr;
  OwnedFd* netns = &run->netns_;
  so.prepare = [cg, &net_links, netns](pid_t pid) -> Result<void> {
    if (cg) MK_TRY(cg->attach(pid));
    if (!net_links.empty()) {
      // Held until release(): the namespace (and the interfaces in it)
      // outlives the image, so they can be handed back to the host.
      MK_TRY_ASSIGN(*netns, open_netns(pid));
      for (const auto& l : net_links) MK_TRY(move_link(l, netns->get()));
    }
    return ok();
  };
  MK_TRY(fault::point("boot", "spawn"));
  MK_TRY_ASSIGN(SpawnedProcess proc, spawn_confined(plan, argv, envp, so));
  run->pid_ = proc.pid;
  run->pidfd_ = std::move(proc.pidfd);
  for (auto& g : proc.guarantees) run->guarantees_.push_back(std::move(g));
  run->console_ = std::move(console.read_end);

  // What the host persists to find all of this again after a restart.
  MK_TRY_ASSIGN(ProcessIdentity who, read_identity(req.root, run->pid_));
  run->record_.pid = who.pid;
  run->record_.start_time = who.start_time;
  run->record_.started_unix_ms = unix_ms();
  for (const auto& g : run->guarantees_) run->record_.guarantees.push_back(to_line(g));

  // 8. the host's endpoint on the channel, watching the image.
  MK_TRY(fault::point("boot", "endpoint"));
  MK_TRY(run->add_host_endpoint(std::move(host_ch)));
  return run;
}

Result<Successor> boot_successor(const Topology& topo, RunningInstance& old, const SuccessorRequest& req) {
  Instance inst = old.inst_;
  if (req.cpus) inst.cpus = *req.cpus;  // a staged update's new image
  std::vector<int> region_fds;
  for (const auto& r : old.regions_) region_fds.push_back(r.fd());
  for (const auto& r : old.adopted_regions_) region_fds.push_back(r.get());
  if (region_fds.size() != inst.memory.size() || !old.console_ || req.console_write_fd < 0) {
    return MK_FAIL(ENOTCONN, "nothing to boot a successor on",
                   "instance '%s': the host holds %zu of %zu memory regions%s (detached or released?)",
                   inst.name.c_str(), region_fds.size(), inst.memory.size(),
                   !old.console_ || req.console_write_fd < 0 ? " and no console pipe" : "");
  }
  Successor out;
  std::unique_ptr<RunningInstance> run(new RunningInstance());
  run->inst_ = inst;
  run->image_ = req.image;

  // Devices: a parked successor gets them in the handoff package; a fresh
  // boot opens them again (the image that held them is gone). Net devices
  // are in the network namespace `old` holds (or the joined one).
  std::vector<OwnedFd> device_fds;
  if (!req.parked) {
    for (const auto& d : inst.devices) {
      if (d.kind == DeviceKind::kNet) continue;
      MK_TRY_ASSIGN(OwnedFd fd, open_device(d));
      device_fds.push_back(std::move(fd));
    }
  }
  ipi::ChannelConfig cfg{kHostRingSlots, 256 * 1024};
  MK_TRY_ASSIGN(ipi::Channel host_ch, ipi::Channel::create(cfg));
  MK_TRY_ASSIGN(ipi::ChannelFds ch_fds, host_ch.export_fds());
  MK_TRY_ASSIGN(auto hsock, handover_socketpair());

  BootOptions bo;
  bo.bootargs = req.image.cmdline;
  bo.init = req.parked ? std::string() : req.image.init;
  bo.device_fds = !req.parked;
  bo.parked = req.parked;
  for (const auto& p : req.peers) bo.peers.push_back({p.peer_id, p.peer_name, p.side, kHostRingSlots});
  MK_TRY_ASSIGN(BootTree tree, make_boot_tree(topo, inst, bo));
  MK_TRY_ASSIGN(std::vector<uint8_t> blob, emit_boot_tree(tree));
  MK_TRY_ASSIGN(OwnedFd tree_fd, sealed_tree_memfd(blob, inst.name));

  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return errno_error("open /dev/null");
  OwnedFd null_fd(devnull);
  ConfineSpec spec;
  spec.cpus = inst.cpus;
  for (uint32_t n : nodes_as_set(inst, topo)) spec.nodes.push_back(n);
  spec.hostname = inst.name;
  spec.uid = req.image.uid;
  spec.gid = req.image.gid;
  ImageFds in;
  in.devnull = null_fd.get();
  in.console_write = req.console_write_fd;
  in.console_read = old.console_.get();
  in.tree = tree_fd.get();
  in.regions = region_fds;
  for (const auto& d : device_fds) in.devices.push_back(d.get());
  in.host = &ch_fds;
  in.peers = &req.peers;
  in.handover = hsock.second.get();
  in.handover_host = hsock.first.get();
  MK_TRY(layout_fds(tree, in, spec, run->record_));
  run->handover_ = std::move(hsock.first);
  MK_TRY_ASSIGN(ConfinePlan plan, make_confine_plan(spec));

  SpawnOptions so;
  so.fallback_without_namespaces = true;
  if (req.ns_pidfd >= 0) {
    // Join what the running image has of its own; create nothing.
    so.namespaces = false;
    int child_ns = 0;
    const std::pair<const char*, int> kinds[] = {
        {"mnt", CLONE_NEWNS}, {"uts", CLONE_NEWUTS}, {"ipc", CLONE_NEWIPC}, {"net", CLONE_NEWNET}};
    for (const auto& [name, flag] : kinds) {
      MK_TRY_ASSIGN(bool other, other_namespace(req.root, req.ns_pid, name));
      if (other) child_ns |= flag;
    }
    MK_TRY_ASSIGN(bool other_pid, other_namespace(req.root, req.ns_pid, "pid"));
    if (other_pid) so.join_pid_ns = req.ns_pidfd;
    if (child_ns) so.join.push_back({req.ns_pidfd, child_ns});
  } else {
    so.namespaces = req.namespaces;
    // The interfaces stayed in the namespace the host holds: join it.
    if (old.netns_) so.join.push_back({old.netns_.get(), CLONE_NEWNET});
  }
  const InstanceCgroup* cg = old.cgroup_ ? &*old.cgroup_ : nullptr;
  so.prepare = [cg](pid_t pid) -> Result<void> {
    if (cg) MK_TRY(cg->attach(pid));
    return ok();
  };
  MK_TRY_ASSIGN(SpawnedProcess proc, spawn_confined(plan, image_argv(req.image), image_envp(inst), so));
  run->pid_ = proc.pid;
  run->pidfd_ = std::move(proc.pidfd);
  // The shared resources' guarantees stay true for the successor.
  if (old.cgroup_)
    for (const auto& g : old.cgroup_->guarantees()) run->guarantees_.push_back(g);
  for (const auto& r : old.regions_) run->guarantees_.push_back(r.guarantee());
  for (auto& g : proc.guarantees) run->guarantees_.push_back(std::move(g));
  MK_TRY_ASSIGN(ProcessIdentity who, read_identity(req.root, run->pid_));
  run->record_.pid = who.pid;
  run->record_.start_time = who.start_time;
  run->record_.started_unix_ms = unix_ms();
  for (const auto& g : run->guarantees_) run->record_.guarantees.push_back(to_line(g));
  MK_TRY(run->add_host_endpoint(std::move(host_ch)));
  out.run = std::move(run);
  return out;
}

Result<std::unique_ptr<RunningInstance>> adopt_instance(const Instance& inst, const SysRoot& root) {
  if (!inst.runtime) {
    return MK_FAIL(EINVAL, "nothing to adopt", "instance '%s' has no runtime record", inst.name.c_str());
  }
  const RuntimeRecord& rec = *inst.runtime;
  std::unique_ptr<RunningInstance> run(new RunningInstance());
  run->inst_ = inst;
  run->record_ = rec;
  run->child_ = false;
  if (inst.image) {
    run->image_.path = inst.image->path;
    run->image_.cmdline = inst.image->cmdline;
    run->image_.init = inst.image->init;
    if (inst.image->uid) run->image_.uid = static_cast<uid_t>(*inst.image->uid);
    if (inst.image->gid) run->image_.gid = static_cast<gid_t>(*inst.image->gid);
  }
  MK_TRY_ASSIGN(run->pidfd_, open_identity(root, {rec.pid, rec.start_time}));
  run->pid_ = rec.pid;
  if (rec.ns_init_pid != 0) {
    // The reaper a live update left (instance.h): ended after the image.
    MK_TRY_ASSIGN(run->ns_init_pidfd_, open_identity(root, {rec.ns_init_pid, rec.ns_init_start_time}));
    run->ns_init_pid_ = rec.ns_init_pid;
  }
  MK_TRY_ASSIGN(ipi::ChannelFds cf, fetch_channel_fds(run->pidfd_.get(), rec.host_channel_fd));
  MK_TRY_ASSIGN(ipi::Channel ch, ipi::Channel::take_over(std::move(cf), 0));
  MK_TRY_ASSIGN(run->console_, fetch_fd(run->pidfd_.get(), rec.console_host_fd, "console"));
  if (rec.handover_host_fd >= 0) {
    MK_TRY_ASSIGN(run->handover_, fetch_fd(run->pidfd_.get(), rec.handover_host_fd, "handover socket"));
  }
  int fl = ::fcntl(run->console_.get(), F_GETFL);
  if (fl < 0 || ::fcntl(run->console_.get(), F_SETFL, fl | O_NONBLOCK) != 0) return errno_error("console O_NONBLOCK");
  for (int fd : rec.region_fds) {
    MK_TRY_ASSIGN(OwnedFd r, fetch_fd(run->pidfd_.get(), fd, "memory region"));
    run->adopted_regions_.push_back(std::move(r));
  }
  // Its network namespace, to hand its interfaces back on stop.
  bool has_net = false;
  for (const auto& d : inst.devices) has_net |= d.kind == DeviceKind::kNet;
  if (has_net) {
    MK_TRY_ASSIGN(run->netns_, open_netns(rec.pid));
  }
  // The cgroup, when the instance was started with one.
  if (auto layout = detect_cgroups(root)) {
    if (auto cg = InstanceCgroup::open_existing(root, *layout, inst.name)) run->cgroup_ = std::move(*cg);
  }
  MK_TRY(run->add_host_endpoint(std::move(ch)));
  return run;
}

RunningInstance::~RunningInstance() {
  ep_.reset();
  kill();
  (void)release();
}

void RunningInstance::detach() {
  if (ep_) {
    if (ipi::Channel* ch = ep_->channel(inst_.id)) ch->detach();
    ep_.reset();
  }
  pid_ = -1;
  reaped_ = true;
  pidfd_.reset();
  ns_init_pidfd_.reset();
  ns_init_pid_ = -1;
  console_.reset();
  netns_.reset();
  cgroup_.reset();
  regions_.clear();
  adopted_regions_.clear();
}

Result<abi::PingPeerReply> RunningInstance::ping_peer(uint32_t peer, uint32_t count, uint32_t size,
                                                      std::chrono::milliseconds timeout) {
  // The image stops the series a little before we stop waiting for it.
  const auto margin = std::chrono::milliseconds(200);
  const uint32_t deadline_ms =
      static_cast<uint32_t>(std::max<std::chrono::milliseconds::rep>(100, (timeout - margin).count()));
  abi::PingPeerMsg m{peer, count, size, deadline_ms};
  abi::PingPeerReply r{};
  MK_TRY_ASSIGN(std::size_t n, ep_->request(inst_.id, abi::kMsgPingPeer, std::as_bytes(std::span<abi::PingPeerMsg, 1>(&m, 1)),
                                            std::as_writable_bytes(std::span<abi::PingPeerReply, 1>(&r, 1)), timeout));
  if (n != sizeof r) return MK_FAIL(EPROTO, "bad ping-peer reply", "%zu bytes", n);
  return r;
}

Result<abi::ReadyMsg> RunningInstance::wait_ready(std::chrono::milliseconds timeout) {
  MK_TRY(fault::point("boot", "ready"));
  const auto end = Clock::now() + timeout;
  while (!ready_) {
    int st = 0;
    if (!reaped_ && child_ && ::waitpid(pid_, &st, WNOHANG) == pid_) {
      reaped_ = true;
      return MK_FAIL(ECHILD, "image exited before ready", "instance '%s': image exited (%s %d) before READY",
                     inst_.name.c_str(), WIFEXITED(st) ? "status" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
    if (Clock::now() >= end) {
      return MK_FAIL(ETIMEDOUT, "no ready from image", "instance '%s': no READY within %lld ms",
                     inst_.name.c_str(), static_cast<long long>(timeout.count()));
    }
    (void)ep_->dispatch(std::chrono::milliseconds(10));
  }
  if (ready_->version != abi::kControlVersion || ready_->instance_id != inst_.id) {
    return MK_FAIL(EPROTO, "bad ready", "instance '%s': READY for id %u, protocol %u (expected id %u, protocol %u)",
                   inst_.name.c_str(), ready_->instance_id, ready_->version, inst_.id, abi::kControlVersion);
  }
  return *ready_;
}

Result<std::chrono::nanoseconds> RunningInstance::ping(std::size_t bytes, std::chrono::milliseconds timeout) {
  std::vector<std::byte> out(bytes, std::byte{0x5a}), in(std::max<std::size_t>(bytes, 1));
  auto t0 = Clock::now();
  auto r = ep_->request(inst_.id, abi::kMsgPing, out, in, timeout);
  if (!r) {  // say which instance: the ipi error names only the peer id
    Error e = r.error();
    const std::string why = e.message();
    return e.set_detail("instance '%s' (pid %d): %s", inst_.name.c_str(), pid_, why.c_str());
  }
  const std::size_t n = *r;
  auto dt = Clock::now() - t0;
  if (n != bytes || !std::equal(out.begin(), out.end(), in.begin()))
    return MK_FAIL(EPROTO, "bad ping reply", "instance '%s' echoed %zu bytes, expected %zu", inst_.name.c_str(), n, bytes);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(dt);
}

Result<abi::StatsMsg> RunningInstance::stats(std::chrono::milliseconds timeout) {
  abi::StatsMsg s{};
  MK_TRY_ASSIGN(std::size_t n, ep_->request(inst_.id, abi::kMsgStats, {},
                                            std::as_writable_bytes(std::span<abi::StatsMsg, 1>(&s, 1)), timeout));
  if (n != sizeof s) return MK_FAIL(EPROTO, "bad stats reply", "%zu bytes", n);
  return s;
}

Result<abi::ShutdownReply> RunningInstance::shutdown(std::chrono::milliseconds grace, std::chrono::milliseconds timeout) {
  abi::ShutdownMsg m{static_cast<uint32_t>(grace.count()), 0};
  abi::ShutdownReply r{};
  MK_TRY(fault::point("stop", "shutdown"));
  MK_TRY_ASSIGN(std::size_t n, ep_->request(inst_.id, abi::kMsgShutdown, std::as_bytes(std::span<abi::ShutdownMsg, 1>(&m, 1)),
                                            std::as_writable_bytes(std::span<abi::ShutdownReply, 1>(&r, 1)),
                                            timeout + grace));
  if (n != sizeof r) return MK_FAIL(EPROTO, "bad shutdown reply", "%zu bytes", n);
  MK_TRY(fault::point("stop", "exit"));
  MK_TRY(wait_exit(timeout));
  end_ns_init();
  return r;
}

Result<int> RunningInstance::wait_exit(std::chrono::milliseconds timeout) {
  const auto end = Clock::now() + timeout;
  while (true) {
    int st = 0;
    if (reaped_ || pid_ <= 0) return kExitStatusUnknown;
    if (child_ && ::waitpid(pid_, &st, WNOHANG) == pid_) {
      reaped_ = true;
      return st;
    }
    if (!child_ && pidfd_exited(pidfd_.get(), 0)) {
      reaped_ = true;
      return kExitStatusUnknown;
    }
    if (Clock::now() >= end)
      return MK_FAIL(ETIMEDOUT, "image did not exit", "instance '%s' (pid %d) still running", inst_.name.c_str(), pid_);
    if (ep_) (void)ep_->dispatch(std::chrono::milliseconds(10));
    else ::usleep(10'000);
  }
}

void RunningInstance::end_ns_init() {
  if (ns_init_pid_ <= 0 || !ns_init_pidfd_) return;
  // PID 1 of the namespace: SIGKILL always lands, and takes every process
  // left in the namespace with it.
  (void)::syscall(SYS_pidfd_send_signal, ns_init_pidfd_.get(), SIGKILL, nullptr, 0);
  // Bounded: a dying PID 1 finishes only once every other process of its
  // namespace is reaped, and a zombie there may be a child of ours (an
  // image the caller has not reaped yet): never block on it.
  (void)pidfd_exited(ns_init_pidfd_.get(), 5000);
  if (ns_init_child_) {
    int st = 0;
    while (::waitpid(ns_init_pid_, &st, WNOHANG) < 0 && errno == EINTR) {
    }
  }
  ns_init_pidfd_.reset();
  ns_init_pid_ = -1;
}

void RunningInstance::kill() {
  if (pid_ <= 0 || reaped_) {
    if (reaped_) end_ns_init();
    return;
  }
  // PID 1 of its namespace: only SIGKILL always lands. Through the pidfd, so
  // a recycled pid is never signalled.
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0) != 0 && errno != ESRCH) {
    ::kill(pid_, SIGKILL);
  }
  if (child_) {
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
  } else {
    (void)pidfd_exited(pidfd_.get(), 5000);
  }
  reaped_ = true;
  end_ns_init();
}

Result<void> RunningInstance::release() {
  // The reaper goes once the image is gone (never before: as PID 1 it would
  // take the image with it).
  if (reaped_ || pid_ <= 0) end_ns_init();
  regions_.clear();
  adopted_regions_.clear();
  if (netns_) {
    // Net devices go back to the host (a virtual one would otherwise die
    // with the namespace). We held the namespace since start.
    Result<void> back = ok();
    if (auto host = open_current_netns()) {
      for (const auto& d : inst_.devices) {
        if (d.kind != DeviceKind::kNet) continue;
        if (auto r = return_link(d.target, netns_.get(), host->get()); !r && back) back = r;
      }
    } else {
      back = host.error();
    }
    netns_.reset();
    MK_TRY(back);
  }
  if (cgroup_) {
    // Tenants die with the PID namespace when the image (its PID 1) exits;
    // give the kernel a moment to empty the cgroup before removing it.
    Result<void> r = fault::point("stop", "release");
    if (r) r = cgroup_->destroy();
    for (int i = 0; i < 100 && !r && r.error().code() == EBUSY; ++i) {
      ::usleep(10'000);
      r = cgroup_->destroy();
    }
    MK_TRY(r);
    cgroup_.reset();
  }
  return ok();
}

}  // namespace mk
