#include "host_harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "ipi/fd_passing.h"
#include "mk/abi/handoff.h"
#include <fstream>
#include <sstream>

namespace mk::test {

std::uint32_t instance_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  std::uint32_t best = 0;
  for (int i = 0; i < CPU_SETSIZE; ++i) {
    if (CPU_ISSET(i, &set)) best = static_cast<std::uint32_t>(i);
  }
  return best;
}

std::vector<std::uint32_t> allowed_cpus() {
  std::vector<std::uint32_t> out;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return out;
  for (int i = 0; i < CPU_SETSIZE; ++i) {
    if (CPU_ISSET(i, &set)) out.push_back(static_cast<std::uint32_t>(i));
  }
  return out;
}

namespace {

Result<int> sealed_memfd(const void* data, std::size_t n) {
  int fd = ::memfd_create("mk-test-tree", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return errno_error("memfd_create");
  if (::write(fd, data, n) != static_cast<ssize_t>(n) ||
      ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    ::close(fd);
    return errno_error("writing/sealing the tree memfd");
  }
  return fd;
}

Result<int> region_memfd() {
  int fd = ::memfd_create("mk-test-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return errno_error("memfd_create");
  if (::ftruncate(fd, static_cast<off_t>(kRegionBytes)) != 0 ||
      ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
    ::close(fd);
    return errno_error("sizing the region memfd");
  }
  return fd;
}

void drain(int fd, std::string* buf) {
  char tmp[4096];
  for (;;) {
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n <= 0) return;
    buf->append(tmp, static_cast<std::size_t>(n));
  }
}

}  // namespace

Result<std::unique_ptr<ImageRun>> ImageRun::launch(const LaunchSpec& spec) {
  std::unique_ptr<ImageRun> run(new ImageRun());
  const std::vector<std::uint32_t> cpus = spec.cpus.empty() ? std::vector<std::uint32_t>{instance_cpu()} : spec.cpus;
  const ipi::ChannelConfig cfg{256, 64 * 1024};
  MK_TRY_ASSIGN(ipi::Channel host_ch, ipi::Channel::create(cfg));
  MK_TRY_ASSIGN(ipi::ChannelFds host_fds, host_ch.export_fds());
  std::optional<ipi::Channel> peer_ch;
  ipi::ChannelFds peer_fds;
  if (spec.peer_channel && spec.peer_from) {
    ipi::Channel* shared = spec.peer_from->ep().channel(kPeerId);
    if (!shared) return MK_FAIL(ENOENT, "peer_from has no peer channel", "launch it with peer_channel");
    MK_TRY_ASSIGN(peer_fds, shared->export_fds());
  } else if (spec.peer_channel) {
    MK_TRY_ASSIGN(peer_ch, ipi::Channel::create(cfg));
    MK_TRY_ASSIGN(peer_fds, peer_ch->export_fds());
  }
  int region = -1;
  if (spec.region_fd >= 0) {
    region = ::fcntl(spec.region_fd, F_DUPFD_CLOEXEC, 0);
    if (region < 0) return errno_error("dup of the region memfd");
  } else {
    MK_TRY_ASSIGN(region, region_memfd());
  }
  int listen_fd = -1;
  if (spec.listen_device && !spec.successor) {
    listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (listen_fd < 0 || ::bind(listen_fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::listen(listen_fd, 128) != 0 || ::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      return errno_error("listen socket for the listen device");
    }
    run->listen_port_ = ntohs(sa.sin_port);
  }
  int file_fd = -1;
  if (!spec.file_device.empty()) {
    file_fd = ::open(spec.file_device.c_str(), O_RDONLY | O_CLOEXEC);
    if (file_fd < 0) return errno_error("open of the file device");
  }
  const int listen_slots = spec.listen_device && !spec.successor ? 1 : 0;
  const int dev_fds = listen_slots + (file_fd >= 0 ? 1 : 0);
  int hsock[2] = {-1, -1};
  const bool hs = spec.successor || spec.handover_socket;
  if (hs && ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, hsock) != 0) {
    return errno_error("socketpair for the handover socket");
  }
  int con[2], err[2];
  if (::pipe2(con, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return errno_error("pipe2");
  ::fcntl(con[0], F_SETFL, O_NONBLOCK);
  ::fcntl(err[0], F_SETFL, O_NONBLOCK);

  BootTree t;
  t.instance = {kInstanceId, "t7"};
  t.init = spec.init;
  for (std::uint32_t c : cpus) t.cpus.push_back(BootCpu{c, c, 0, 0, -1, -1});
  t.memory = {BootMemory{0, kRegionBytes, 0, 4, 0}};
  t.devices = {BootDevice{"console", DeviceKind::kConsole, 5, {}}};
  if (spec.listen_device) {
    t.devices.push_back(BootDevice{"kv", DeviceKind::kListen, spec.successor ? -1 : 6,
                                   {{"address", "127.0.0.1"}, {"port", std::to_string(run->listen_port_)}}});
  }
  if (file_fd >= 0) t.devices.push_back(BootDevice{"f", DeviceKind::kFile, 6 + listen_slots, {{"path", spec.file_device}}});
  t.ipi.host_id = abi::kHostId;
  t.ipi.channels = {IpiChannel{abi::kHostId, "host", 6 + dev_fds, cfg.slot_count * 64, ChannelRole::kBidirectional}};
  if (spec.no_host_channel) t.ipi.channels.clear();
  if (spec.peer_channel) {
    t.ipi.channels.push_back(IpiChannel{kPeerId, "peer", 9 + dev_fds, cfg.slot_count * 64, ChannelRole::kBidirectional});
  }
  // The handover socket takes the fd after the channels.
  const int hs_target = 3 + 3 + dev_fds + (spec.no_host_channel ? 3 : 3) + (spec.peer_channel ? 3 : 0);
  if (hs) t.handover_socket = hs_target;
  t.parked = spec.successor;
  MK_TRY_ASSIGN(std::vector<std::uint8_t> blob, emit_boot_tree(t));
  if (spec.corrupt_tree) {
    for (std::size_t i = 0; i < blob.size(); i += 7) blob[i] ^= 0xa5;
  }
  MK_TRY_ASSIGN(int tree_fd, sealed_memfd(blob.data(), blob.size()));

  // Source fd for each target fd; -1 = leave closed.
  std::vector<int> src = {tree_fd, region, con[1]};
  if (listen_slots) src.push_back(listen_fd);
  if (file_fd >= 0) src.push_back(file_fd);
  src.insert(src.end(), {spec.no_host_channel ? -1 : host_fds.memfd.get(),
                          spec.omit_channel_eventfds || spec.no_host_channel ? -1 : host_fds.eventfd[0].get(),
                          spec.omit_channel_eventfds || spec.no_host_channel ? -1 : host_fds.eventfd[1].get()});
  if (spec.peer_channel) {
    src.push_back(peer_fds.memfd.get());
    src.push_back(peer_fds.eventfd[0].get());
    src.push_back(peer_fds.eventfd[1].get());
  }
  if (hs) src.push_back(hsock[1]);
  const std::string path = std::string(MK_BIN_DIR) + "/" + spec.image;
  std::vector<std::string> args = {path};
  args.insert(args.end(), spec.args.begin(), spec.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork");
  if (pid == 0) {
    // Only async-signal-safe calls from here to execv.
    int high[16];
    for (std::size_t i = 0; i < src.size(); ++i) high[i] = src[i] < 0 ? -1 : ::fcntl(src[i], F_DUPFD_CLOEXEC, 64);
    int err_high = ::fcntl(err[1], F_DUPFD_CLOEXEC, 64);
    for (std::size_t i = 0; i < src.size(); ++i) {
      if (high[i] >= 0) {
        ::dup2(high[i], 3 + static_cast<int>(i));
      } else {
        ::close(3 + static_cast<int>(i));
      }
    }
    ::dup2(err_high, 2);
    ::syscall(SYS_close_range, 3 + src.size(), ~0u, 0);
    cpu_set_t set;
    CPU_ZERO(&set);
    for (std::uint32_t c : cpus) CPU_SET(c, &set);
    ::sched_setaffinity(0, sizeof set, &set);  // the host confines before exec
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  run->pid_ = pid;
  ::close(tree_fd);
  run->region_fd_ = region;  // kept: a second attach reads the same memfd
  if (hs) {
    ::close(hsock[1]);
    run->handover_fd_ = hsock[0];
  }
  if (listen_fd >= 0) ::close(listen_fd);
  if (file_fd >= 0) ::close(file_fd);
  ::close(con[1]);
  ::close(err[1]);
  run->console_rd_ = con[0];
  run->stderr_rd_ = err[0];

  MK_TRY_ASSIGN(run->ep_, ipi::Endpoint::create());
  MK_TRY(run->ep_->add_peer(kInstanceId, std::move(host_ch), pid));
  // Not watched by pid: a live update's successor takes the image's side over.
  if (peer_ch) MK_TRY(run->ep_->add_peer(kPeerId, std::move(*peer_ch), 0));
  ImageRun* raw = run.get();
  MK_TRY(run->ep_->on_value<abi::ReadyMsg>(abi::kMsgReady,
                                           [raw](const abi::ReadyMsg& m, ipi::Incoming&) { raw->ready_ = m; }));
  MK_TRY(run->ep_->on_value<abi::TenantExitMsg>(
      abi::kMsgTenantExit, [raw](const abi::TenantExitMsg& m, ipi::Incoming&) { raw->exits_.push_back(m); }));
  // The harness also plays peer 9: echo its pings.
  MK_TRY(run->ep_->on(abi::kMsgPing, [](ipi::Incoming& in) { (void)in.reply(in.payload()); }));
  return run;
}

ImageRun::~ImageRun() {
  ep_.reset();
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  if (region_fd_ >= 0) ::close(region_fd_);
  if (handover_fd_ >= 0) ::close(handover_fd_);
  if (console_rd_ >= 0) ::close(console_rd_);
  if (stderr_rd_ >= 0) ::close(stderr_rd_);
}

bool ImageRun::wait_ready(std::chrono::milliseconds timeout) {
  return serve_until([&] { return ready_.has_value() || !ep_->peer_up(kInstanceId); }, timeout) &&
         ready_.has_value();
}

std::optional<int> ImageRun::wait_exit(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      return st;
    }
    if (std::chrono::steady_clock::now() >= end) return std::nullopt;
    if (ep_) {
      ep_->dispatch(std::chrono::milliseconds(10));
    } else {
      ::usleep(10'000);
    }
  }
}

std::string ImageRun::console() {
  drain(console_rd_, &console_buf_);
  return console_buf_;
}

std::string ImageRun::stderr_text() {
  drain(stderr_rd_, &stderr_buf_);
  return stderr_buf_;
}

Handoff::~Handoff() {
  if (package >= 0) ::close(package);
  for (int fd : fds) ::close(fd);
}

Result<Handoff> fetch_handoff(pid_t pid, int package_fd) {
  Handoff h;
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno_error("pidfd_open of the old image");
  auto getfd = [&](int fd) -> Result<int> {
    int r = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0));
    if (r < 0) return errno_error("pidfd_getfd");
    return r;
  };
  auto pkg = getfd(package_fd);
  if (!pkg) {
    ::close(pidfd);
    return pkg.error();
  }
  h.package = *pkg;
  abi::HandoffHeader hdr{};
  if (::pread(h.package, &hdr, sizeof hdr, 0) != static_cast<ssize_t>(sizeof hdr)) {
    ::close(pidfd);
    return MK_FAIL(EBADMSG, "short package", "header unreadable");
  }
  for (std::uint32_t i = 0; i < hdr.fd_count; ++i) {
    std::int32_t src = -1;
    if (::pread(h.package, &src, 4, static_cast<off_t>(sizeof hdr + 4 * i)) != 4) {
      ::close(pidfd);
      return MK_FAIL(EBADMSG, "short package", "fd table unreadable");
    }
    auto fd = getfd(src);
    if (!fd) {
      ::close(pidfd);
      return fd.error();
    }
    h.fds.push_back(*fd);
  }
  ::close(pidfd);
  return h;
}

Result<void> send_handoff(int sock, int package, const std::vector<int>& fds) {
  auto send_chunk = [&](std::uint32_t first, const int* f, std::uint32_t count) -> Result<void> {
    const abi::HandoffChunk chunk{first, count};
    return ipi::send_fds(sock, std::span<const int>(f, count),
                         std::as_bytes(std::span<const abi::HandoffChunk, 1>(&chunk, 1)));
  };
  MK_TRY(send_chunk(0, &package, 1));
  for (std::uint32_t first = 0; first < fds.size(); first += abi::kHandoffFdsPerMessage) {
    const auto count = std::min<std::uint32_t>(abi::kHandoffFdsPerMessage, static_cast<std::uint32_t>(fds.size()) - first);
    MK_TRY(send_chunk(first, fds.data() + first, count));
  }
  return {};
}

Result<void> send_resource_fd(int sock, std::uint32_t op_id, std::uint32_t index, std::uint32_t kind, int fd) {
  const abi::ResourceFdMsg msg{abi::kResourceFdMagic, op_id, index, kind};
  return ipi::send_fds(sock, fd >= 0 ? std::span<const int>(&fd, 1) : std::span<const int>(),
                       std::as_bytes(std::span<const abi::ResourceFdMsg, 1>(&msg, 1)));
}

std::vector<std::string> cpus_allowed_of_tasks(pid_t pid) {
  std::vector<std::string> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(dir + "/" + e->d_name + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("Cpus_allowed_list:", 0) == 0) {
        std::string v = line.substr(std::strlen("Cpus_allowed_list:"));
        v.erase(0, v.find_first_not_of(" \t"));
        out.push_back(v);
      }
    }
  }
  ::closedir(d);
  return out;
}

std::vector<TaskInfo> tasks_of(pid_t pid) {
  std::vector<TaskInfo> out;
  const std::string dir = pid < 0 ? std::string("/proc/self/task") : "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    TaskInfo t;
    t.tid = static_cast<pid_t>(std::atoi(e->d_name));
    std::ifstream c(dir + "/" + e->d_name + "/comm");
    std::getline(c, t.comm);
    std::ifstream f(dir + "/" + e->d_name + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("Cpus_allowed_list:", 0) == 0) {
        t.cpus = line.substr(std::strlen("Cpus_allowed_list:"));
        t.cpus.erase(0, t.cpus.find_first_not_of(" \t"));
      }
    }
    if (!t.comm.empty()) out.push_back(std::move(t));  // a task gone meanwhile has no comm
  }
  ::closedir(d);
  return out;
}

std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string s;
    std::getline(f, s);
    auto rp = s.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream in(s.substr(rp + 2));
    char state;
    pid_t ppid = 0;
    in >> state >> ppid;
    if (ppid == pid) out.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
  }
  ::closedir(d);
  return out;
}

}  // namespace mk::test
