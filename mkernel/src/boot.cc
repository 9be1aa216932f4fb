// The process backend's start recipe and the running-instance handle (see boot.h).
#include "mkernel/boot.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
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

std::string guarantee_line(const Guarantee& g) {
  return g.name + ": " + g.detail + (g.in_force ? "" : " [not in force]");
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

  // 1. cgroups (optional: reported, never required).
  CpuSet mems = nodes_as_set(inst, topo);
  if (req.use_cgroups) {
    MK_TRY_ASSIGN(CgroupLayout layout, detect_cgroups(req.root));
    InstanceCgroup::Options co;
    co.memory_limit = inst.memory_bytes() + kInstanceOverheadBytes;
    MK_TRY_ASSIGN(InstanceCgroup cg, InstanceCgroup::create(req.root, layout, inst.name, inst.cpus, mems, co));
    run->cgroup_ = std::move(cg);
    for (const auto& g : run->cgroup_->guarantees()) run->guarantees_.push_back(g);
  }

  // 2. memory regions, 3. devices, 4. console.
  for (std::size_t i = 0; i < inst.memory.size(); ++i) {
    std::string label = "mk-" + inst.name + "-mem" + std::to_string(i);
    MK_TRY_ASSIGN(RegionFd r, RegionFd::create(label, inst.memory[i].node, inst.memory[i].bytes, {}));
    run->guarantees_.push_back(r.guarantee());
    run->regions_.push_back(std::move(r));
  }
  std::vector<OwnedFd> device_fds;
  std::vector<std::string> net_links;
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
  ipi::ChannelConfig cfg{kHostRingSlots, 256 * 1024};
  MK_TRY_ASSIGN(ipi::Channel host_ch, ipi::Channel::create(cfg));
  MK_TRY_ASSIGN(ipi::ChannelFds ch_fds, host_ch.export_fds());

  // 6. boot tree, with the fd layout of manifest.h.
  BootOptions bo;
  bo.bootargs = req.image.cmdline;
  bo.init = req.image.init;
  for (const auto& p : req.peers) bo.peers.push_back({p.peer_id, p.peer_name, p.side, kHostRingSlots});
  MK_TRY_ASSIGN(BootTree tree, make_boot_tree(topo, inst, bo));
  MK_TRY_ASSIGN(std::vector<uint8_t> blob, emit_boot_tree(tree));
  MK_TRY_ASSIGN(OwnedFd tree_fd, sealed_tree_memfd(blob, inst.name));

  // The child's complete fd table: 0 /dev/null, 1-2 console, 3 tree, then
  // regions, console, devices, channel (memfd + 2 eventfds).
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return errno_error("open /dev/null");
  OwnedFd null_fd(devnull);
  ConfineSpec spec;
  spec.cpus = inst.cpus;
  for (uint32_t n : mems) spec.nodes.push_back(n);
  spec.hostname = inst.name;
  spec.uid = req.image.uid;
  spec.gid = req.image.gid;
  spec.fds.push_back({null_fd.get(), 0});
  spec.fds.push_back({console.write_end.get(), 1});
  spec.fds.push_back({console.write_end.get(), 2});
  spec.fds.push_back({tree_fd.get(), kBootTreeFd});
  for (std::size_t i = 0; i < tree.memory.size(); ++i) spec.fds.push_back({run->regions_[i].fd(), tree.memory[i].fd});
  std::size_t next_dev = 0;
  for (const auto& d : tree.devices) {
    if (d.kind == DeviceKind::kConsole) spec.fds.push_back({console.write_end.get(), d.fd});
    else if (d.fd >= 0) spec.fds.push_back({device_fds.at(next_dev++).get(), d.fd});
  }
  const IpiChannel& hc = tree.ipi.channels.at(0);
  spec.fds.push_back({ch_fds.memfd.get(), hc.fd});
  spec.fds.push_back({ch_fds.eventfd[0].get(), hc.fd + 1});
  spec.fds.push_back({ch_fds.eventfd[1].get(), hc.fd + 2});
  for (std::size_t i = 0; i < req.peers.size(); ++i) {
    const IpiChannel& pc = tree.ipi.channels.at(1 + i);
    const PeerChannelFds& pf = req.peers[i];
    spec.fds.push_back({pf.memfd, pc.fd});
    spec.fds.push_back({pf.eventfd[0], pc.fd + 1});
    spec.fds.push_back({pf.eventfd[1], pc.fd + 2});
    run->record_.peers.push_back({pc.peer_id, pc.fd, pc.side});
  }
  // The console's read end, held by the image so the console outlives us.
  const int console_host_fd = std::atoi(tree.devices.front().properties.at("host-fd").c_str());
  spec.fds.push_back({console.read_end.get(), console_host_fd});
  MK_TRY_ASSIGN(ConfinePlan plan, make_confine_plan(spec));

  // 7. spawn: the prepare gate joins the cgroup and takes the net devices in.
  std::vector<std::string> argv{req.image.path};
  for (auto& a : split_blanks(req.image.cmdline)) argv.push_back(std::move(a));
  std::vector<std::string> envp{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                "MKERNEL_INSTANCE=" + inst.name};
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
  run->record_.host_channel_fd = hc.fd;
  run->record_.console_host_fd = console_host_fd;
  for (const auto& m : tree.memory) run->record_.region_fds.push_back(m.fd);
  for (const auto& g : run->guarantees_) run->record_.guarantees.push_back(guarantee_line(g));

  // 8. the host's endpoint on the channel, watching the image.
  MK_TRY(run->add_host_endpoint(std::move(host_ch)));
  return run;
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
  MK_TRY_ASSIGN(run->pidfd_, open_identity(root, {rec.pid, rec.start_time}));
  run->pid_ = rec.pid;
  MK_TRY_ASSIGN(ipi::ChannelFds cf, fetch_channel_fds(run->pidfd_.get(), rec.host_channel_fd));
  MK_TRY_ASSIGN(ipi::Channel ch, ipi::Channel::take_over(std::move(cf), 0));
  MK_TRY_ASSIGN(run->console_, fetch_fd(run->pidfd_.get(), rec.console_host_fd, "console"));
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
  console_.reset();
  netns_.reset();
  cgroup_.reset();
  regions_.clear();
  adopted_regions_.clear();
}

Result<abi::PingPeerReply> RunningInstance::ping_peer(uint32_t peer, uint32_t count, uint32_t size,
                                                      std::chrono::milliseconds timeout) {
  abi::PingPeerMsg m{peer, count, size, 0};
  abi::PingPeerReply r{};
  MK_TRY_ASSIGN(std::size_t n, ep_->request(inst_.id, abi::kMsgPingPeer, std::as_bytes(std::span<abi::PingPeerMsg, 1>(&m, 1)),
                                            std::as_writable_bytes(std::span<abi::PingPeerReply, 1>(&r, 1)), timeout));
  if (n != sizeof r) return MK_FAIL(EPROTO, "bad ping-peer reply", "%zu bytes", n);
  return r;
}

Result<abi::ReadyMsg> RunningInstance::wait_ready(std::chrono::milliseconds timeout) {
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
  MK_TRY_ASSIGN(std::size_t n, ep_->request(inst_.id, abi::kMsgPing, out, in, timeout));
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
  MK_TRY_ASSIGN(std::size_t n, ep_->request(inst_.id, abi::kMsgShutdown, std::as_bytes(std::span<abi::ShutdownMsg, 1>(&m, 1)),
                                            std::as_writable_bytes(std::span<abi::ShutdownReply, 1>(&r, 1)),
                                            timeout + grace));
  if (n != sizeof r) return MK_FAIL(EPROTO, "bad shutdown reply", "%zu bytes", n);
  MK_TRY(wait_exit(timeout));
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

void RunningInstance::kill() {
  if (pid_ <= 0 || reaped_) return;
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
}

Result<void> RunningInstance::release() {
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
    Result<void> r = cgroup_->destroy();
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
