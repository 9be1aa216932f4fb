// Test harness that plays the host for an image (mk-kernel, mk-hello): it
// builds a boot tree by hand, seals it in a memfd, arranges the fds exactly
// as mkernel/manifest.h and docs/sdk.md describe (3 tree, 4 region, 5
// console, 6/7/8 host channel memfd + doorbell eventfds, then optional peer
// channels), pins the child like the host would, execs the image and talks
// to it over the host endpoint.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ipi/endpoint.h"
#include "mk/abi/control_messages.h"
#include "mk/boot_tree.h"
#include "mk/result.h"

namespace mk::test {

inline constexpr std::uint32_t kInstanceId = 7;
inline constexpr std::uint32_t kPeerId = 9;  // the harness plays this peer too when asked
inline constexpr std::uint64_t kRegionBytes = 16ull << 20;

class ImageRun;

struct LaunchSpec {
  std::string image = "mk-kernel";   // in MK_BIN_DIR
  std::vector<std::string> args;     // argv[1..]
  std::string init;                  // tree's init
  bool corrupt_tree = false;         // fd 3 holds garbage
  bool omit_channel_eventfds = false;// fds 7, 8 not passed
  bool peer_channel = false;         // add /ipi/channel@9 played by the harness
  bool no_host_channel = false;      // the tree lists no /ipi/channel@0 (fds 6-8 closed)
  // A listen device "kv" on 127.0.0.1, ephemeral port (ImageRun::listen_port),
  // at fd 6; the channels then move up by one (host 7-9, peer 10-12).
  bool listen_device = false;
  // A file device "f" opened from this path (O_RDONLY), after the listen
  // device; the channels move up by one more.
  std::string file_device;
  // A live update's successor: /chosen mkernel,handover-socket names one
  // end of a SOCK_SEQPACKET socketpair (the last fd; the harness keeps the
  // other end, ImageRun::handover_fd()), and the listen device (if any) is
  // listed with fd -1 (its fd arrives in the package).
  bool successor = false;
  // A handover socket without being parked (every image has one: a staged
  // update hands parts back to the old image on it).
  bool handover_socket = false;
  int region_fd = -1;  // reuse this region memfd (dup'ed), e.g. the old image's
  // The tree's /cpus and the image's affinity (empty: {instance_cpu()}).
  std::vector<std::uint32_t> cpus;
  // With peer_channel: the same side of the same peer channel as this run's
  // image (a successor); the harness end stays in that run's endpoint.
  ImageRun* peer_from = nullptr;
};

// The handoff package an old image wrote at freeze, copied out of it as the
// host does (pidfd_getfd of the package and of every fd it lists).
struct Handoff {
  int package = -1;
  std::vector<int> fds;
  ~Handoff();
  Handoff() = default;
  Handoff(Handoff&& o) noexcept : package(o.package), fds(std::move(o.fds)) { o.package = -1; o.fds.clear(); }
  Handoff(const Handoff&) = delete;
};
Result<Handoff> fetch_handoff(pid_t pid, int package_fd);
// Sends a package and fds on a handover socket exactly as mk/abi/handoff.h
// says (message 0: the package; then chunks of at most 250 fds).
Result<void> send_handoff(int sock, int package, const std::vector<int>& fds);

// The fd message of a memory / device add on a handover socket, as
// mk/abi/control_messages.h says (one SOCK_SEQPACKET message: ResourceFdMsg
// with kResourceFdMagic and SCM_RIGHTS with `fd`; fd -1: no fd attached).
Result<void> send_resource_fd(int sock, std::uint32_t op_id, std::uint32_t index, std::uint32_t kind, int fd);

// The instance's CPU: the highest CPU this process may use (1 on the 2-CPU VM).
std::uint32_t instance_cpu();
// Every CPU this process may use, ascending.
std::vector<std::uint32_t> allowed_cpus();

class ImageRun {
 public:
  static Result<std::unique_ptr<ImageRun>> launch(const LaunchSpec& spec);
  ~ImageRun();  // SIGKILLs and reaps the image if still running

  pid_t pid() const { return pid_; }
  ipi::Endpoint& ep() { return *ep_; }
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  const std::optional<abi::ReadyMsg>& ready() const { return ready_; }
  const std::vector<abi::TenantExitMsg>& tenant_exits() const { return exits_; }

  // Waits for the image to exit, serving the endpoint meanwhile. Returns the
  // waitpid status, or nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Polls the endpoint until `pred` or timeout.
  template <class F>
  bool serve_until(F pred, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= end) return false;
      if (ep_) ep_->dispatch(std::chrono::milliseconds(10));
    }
    return true;
  }

  // One CPU move request (kMsgCpuRelease / kMsgCpuAdd) for `os_index`.
  Result<abi::CpuReply> cpu_request(std::uint16_t type, std::uint32_t os_index, std::uint32_t op_id = 1) {
    return request<abi::CpuMsg, abi::CpuReply>(type, abi::CpuMsg{op_id, os_index, os_index, 0, 0, -1, -1, 0});
  }

  // One memory / device move request (kMsgMemoryAdd ... kMsgDeviceRelease).
  Result<abi::ResourceReply> resource_request(std::uint16_t type, const abi::ResourceMsg& m) {
    return request<abi::ResourceMsg, abi::ResourceReply>(type, m);
  }

  template <class Req, class Rep>
  Result<Rep> request(std::uint16_t type, const Req& req,
                      std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    Rep rep{};
    MK_TRY_ASSIGN(std::size_t n,
                  ep_->request(kInstanceId, type, std::as_bytes(std::span<const Req, 1>(&req, 1)),
                               std::as_writable_bytes(std::span<Rep, 1>(&rep, 1)), timeout));
    if (n != sizeof(Rep)) return MK_FAIL(EBADMSG, "short reply", "%zu bytes", n);
    return rep;
  }

  // Drops the host endpoint (closes our side of every channel).
  void close_host() { ep_.reset(); }
  // Everything the image wrote to its console / stderr so far.
  std::string console();
  std::string stderr_text();
  // The listen device's port (0 without one) and the region memfd (kept
  // open by the harness, like the host keeps it for a live update).
  std::uint16_t listen_port() const { return listen_port_; }
  int region_fd() const { return region_fd_; }
  int handover_fd() const { return handover_fd_; }  // successor / handover_socket only
  // One update step to this image; the reply.
  Result<abi::UpdateReply> step(std::uint16_t type, std::uint32_t update_id = 1,
                                std::chrono::milliseconds timeout = std::chrono::seconds(30),
                                std::uint32_t flags = 0) {
    return request<abi::UpdateStepMsg, abi::UpdateReply>(type, abi::UpdateStepMsg{update_id, flags}, timeout);
  }

 private:
  ImageRun() = default;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int console_rd_ = -1, stderr_rd_ = -1;
  int region_fd_ = -1;
  int handover_fd_ = -1;
  std::uint16_t listen_port_ = 0;
  std::string console_buf_, stderr_buf_;
  std::unique_ptr<ipi::Endpoint> ep_;
  std::optional<abi::ReadyMsg> ready_;
  std::vector<abi::TenantExitMsg> exits_;
};

// Cpus_allowed_list of every task of `pid` (empty if it is gone).
std::vector<std::string> cpus_allowed_of_tasks(pid_t pid);
// Every task of `pid` (-1: this process): tid, comm and Cpus_allowed_list.
struct TaskInfo {
  pid_t tid = 0;
  std::string comm;
  std::string cpus;
};
std::vector<TaskInfo> tasks_of(pid_t pid);
// Direct children of `pid` (from /proc/*/stat).
std::vector<pid_t> children_of(pid_t pid);

}  // namespace mk::test
