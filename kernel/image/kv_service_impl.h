// The KV service's internals (kv_service.h), shared by its two halves:
// kv_service.cc (the epoll loop, RESP framing, command execution) and
// kv_service_handover.cc (its live-update side: stage, begin, pause,
// resume, snapshot). Not part of any interface.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kv_service.h"

namespace mk::image {

namespace kv {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kOutHigh = 4u << 20;
constexpr int kMaxEvents = 256;

struct Conn {
  std::uint32_t id = 0;   // KvConnState::id
  std::string in;         // received, not yet parsed
  std::size_t in_off = 0; // parsed prefix of `in`
  std::string out;        // replies not yet written
  std::size_t out_off = 0;
  bool closing = false;   // QUIT or protocol error: close once `out` is written
  std::uint32_t events = 0;  // current epoll interest
};

}  // namespace kv

struct KvService::Impl {
  using Conn = kv::Conn;
  std::optional<sdk::KvStore> store;  // set by begin()
  // The thread reads it only between enter() and leave(); the owner
  // changes it (add_listener / remove_listener) only with the gate closed.
  std::vector<int> listen;
  std::uint32_t cpu = 0;  // guarded by cpu_mu (set_cpu vs the thread's own pinning)
  mutable std::mutex cpu_mu;
  sdk::Console* con = nullptr;
  int ep = -1;
  int stop_fd = -1;
  int reserve_fd = -1;  // closed to accept-and-drop when out of fds
  std::vector<std::unique_ptr<Conn>> conns;  // by fd
  // By fd too, contiguous: the connection's id (0: none) and whether it
  // holds buffered bytes or a pending close. snapshot() reads these, not
  // the (cold) connections, at the freeze of a live update.
  std::vector<std::uint32_t> id_of;
  std::vector<std::uint8_t> pending_of;
  // stage(): (id, fd) of the staged connections, by id, so that begin()
  // touches only the connections that changed (the rest are cold).
  std::vector<std::pair<std::uint32_t, int>> staged_index;
  // Connections carried over with buffered bytes or a pending close: the
  // thread works on these first; the others wait for epoll like any.
  std::vector<int> carried;
  std::vector<std::string> args;
  std::vector<char> scratch = std::vector<char>(kv::kReadChunk);
  std::thread thread;
  std::atomic<std::uint64_t> used{0};
  std::atomic<std::uint64_t> nconns{0};
  std::uint32_t next_id = 1;  // of the next accepted connection
  // The thread works on a batch only while the gate is open, and says so
  // (busy). pause() closes the gate and waits until no batch runs: an idle
  // thread stays asleep in epoll_wait (no wake-up inside the update's
  // blackout); if it wakes it waits at the gate. A staged service's
  // thread starts behind a closed gate, until begin(). kQuit ends it.
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  enum class Gate { kWait, kGo, kQuit } gate = Gate::kGo;
  bool busy = false;

  void run();
  void pin_self();  // names the thread mk-kv and pins it to `cpu`
  Result<void> add_conn(KvConnState st);
  void accept_all(int lfd);
  void on_conn(int fd, std::uint32_t ev);
  void process(int fd, Conn& c);
  bool flush(int fd, Conn& c);  // false: closed
  void update_interest(int fd, Conn& c);
  // `shut`: shutdown(2) the socket first, so the client sees the close
  // even while another process holds a dup of it (the host and the
  // successor do during a live update). Never for connections that are
  // handed on (stop() of a successor that gives the instance back).
  void close_conn(int fd, bool shut);
  void track(int fd, std::uint32_t id, bool pending);  // id 0: gone
  static bool pending(const Conn& c) { return c.in_off < c.in.size() || c.out_off < c.out.size() || c.closing; }
  bool enter();  // waits for an open gate, then busy; false: quit
  void leave();
  void execute(Conn& c);
  void reply_error(std::string* out, const Error& e);
};

}  // namespace mk::image
