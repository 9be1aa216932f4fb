// Private: the image's endpoint for instance-to-instance channels.
//
// What this is: the peer half of HostLink (mksdk/host_link.h). Every
// /ipi/channel@PEER other than the host's is attached (side B) to one
// Endpoint driven by its own thread. That thread answers peers' kMsgPing
// (echo) and runs the ping series HostLink hands it for kMsgPingPeer; the
// host thread waits for the result. Channels that fail to attach are kept
// as an error per peer, so PingPeer reports why.
//
// Live update: detach() stops the thread and leaves every attached side
// with ipi::Channel::detach (the peer sees nothing), returning duplicates of
// each channel's fds, so a later open_sides() (a cancelled update) or the
// successor (the tree's fds) resumes the side with take_over.
//
// No peer channels: no thread; ping() answers -ENOENT inline.
// Happy path: 1. PeerLink::open(tree, opts); 2. ping(peer, count, size) from
// the host thread; 3. destruction stops and joins the thread.
// Unhappy paths: 1. no channel to the peer: status -ENOENT; 2. attach failed:
// -errno of the attach; 3. a round trip fails: -errno, `done` so far;
// 4. the deadline passes: -ETIMEDOUT with `done` so far.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include <optional>
#include <thread>

#include "ipi/endpoint.h"
#include "mk/abi/control_messages.h"
#include "mk/boot_tree.h"
#include "mk/result.h"

namespace mk::sdk {

class PeerLink {
 public:
  struct Options {
    ipi::WaitMode mode = ipi::WaitMode::kAdaptive;
    std::chrono::milliseconds ping_timeout{1000};
    std::chrono::milliseconds ping_deadline{30000};
  };
  struct Side {
    std::uint32_t peer_id = 0;
    std::uint32_t side = 0;
    std::string name;
    ipi::ChannelFds fds;
  };
  // The tree's non-host channels (takes ownership of their fd numbers).
  static std::vector<Side> sides_of(const BootTree& tree);
  // Never fails as a whole: channels that fail to attach are recorded.
  static Result<std::unique_ptr<PeerLink>> open(std::vector<Side> sides, const Options& opts);
  ~PeerLink();

  // Stops the thread and detaches every attached side; returns the sides
  // (with dup'ed fds) for a later open(). Sides that failed to attach are
  // returned without fds. Returns: dup errno (EMFILE); nothing is detached then.
  Result<std::vector<Side>> detach();

  // Blocking: runs on the peer thread, returns when done or, when
  // deadline_ms > 0, by then (capped by Options::ping_deadline).
  abi::PingPeerReply ping(std::uint32_t peer, std::uint32_t count, std::uint32_t size,
                          std::uint32_t deadline_ms = 0);

  std::uint64_t rx() const { return rx_.load(std::memory_order_relaxed); }
  std::uint64_t tx() const { return tx_.load(std::memory_order_relaxed); }

 private:
  struct Job {
    abi::PingPeerMsg req{};
    abi::PingPeerReply reply{};
    bool done = false;
  };
  PeerLink() = default;
  void run();
  abi::PingPeerReply run_ping(const abi::PingPeerMsg& req);

  Options opts_;
  std::unique_ptr<ipi::Endpoint> ep_;
  std::map<std::uint32_t, int> attach_error_;  // peer -> errno (0 = attached)
  std::vector<Side> sides_;                     // fds moved out; peer_id/side/name kept
  std::mutex mu_;
  std::condition_variable cv_;
  Job* job_ = nullptr;  // guarded by mu_
  bool stop_ = false;   // guarded by mu_
  std::thread thread_;
  std::atomic<std::uint64_t> rx_{0}, tx_{0};
};

}  // namespace mk::sdk
