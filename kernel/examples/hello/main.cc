// hello: the smallest useful image written against mksdk.
//
// It parses its boot tree, pins one loop per CPU, reports READY, answers
// the host's pings and stats, and exits 0 when the host asks it to shut
// down (or 6 when the host goes away). Build it out of tree with
//   find_package(mksdk) + target_link_libraries(hello PRIVATE mksdk::mksdk)
// or with `pkg-config --cflags --libs mksdk`.
#include <cstdio>

#include "mksdk/boot_info.h"
#include "mksdk/devices.h"
#include "mksdk/host_link.h"
#include "mksdk/percpu.h"

int main() {
  using namespace mk::sdk;
  const auto t0 = monotonic_ns();
  auto tree = load_boot_info();
  if (!tree) {
    std::fprintf(stderr, "hello: %s\n", tree.error().to_string().c_str());
    return exit_code::kBadBootTree;
  }
  Console con(Devices(tree->devices).console_fd().value_or(2));
  auto loops = PerCpu::start(tree->cpus);
  if (!loops) {
    con.print("hello: %s\n", loops.error().to_string().c_str());
    return exit_code::kMissingResource;
  }
  HostServices services;
  services.stats = [&] {
    mk::abi::StatsMsg s{};
    s.cpus = static_cast<std::uint32_t>((*loops)->size());
    s.loop_iterations = (*loops)->iterations();
    s.uptime_ns = monotonic_ns() - t0;
    return s;
  };
  services.shutdown = [](std::uint32_t) { return mk::abi::ShutdownReply{0, 0}; };
  auto link = HostLink::open(*tree, services);
  if (!link) {
    con.print("hello: %s\n", link.error().to_string().c_str());
    return exit_code::kHostLink;
  }
  const mk::abi::ReadyMsg ready{mk::abi::kControlVersion, tree->instance.id,
                                static_cast<std::uint32_t>((*loops)->size()), 0, monotonic_ns() - t0};
  if (!(*link)->send_ready(ready)) return exit_code::kHostLink;
  con.print("hello from instance %u on %zu cpu(s)\n", tree->instance.id, (*loops)->size());
  HostLink::State st;
  while ((st = (*link)->serve_once(std::chrono::milliseconds(100))) == HostLink::State::kRunning) {
  }
  con.print("hello: %s, bye\n", to_string(st));
  return st == HostLink::State::kShutdown ? exit_code::kOk : exit_code::kHostDown;
}
