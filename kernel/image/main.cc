// mk-kernel: the default instance image (DESIGN.md §3), built on mksdk.
//
// Launch contract (what the host does, docs/sdk.md "Launching an image"):
//   fds  3 = sealed boot-tree memfd; the others exactly as the tree lists
//        them (mkernel/manifest.h): memory regions, console, file/listen
//        devices, then per IPI channel its memfd and, right after it, its
//        two doorbell eventfds (memfd+1, memfd+2).
//   argv the instance's bootargs split on blanks (argv[0] = image path).
//   env  passed through to tenants unchanged; the image reads none.
// Options (bootargs):
//   --init=CMD        tenant command (overrides the tree's init)
//   --wait-mode=MODE  poll | adaptive (default) | block, for the IPI endpoints
//   --tick-ms=N       idle tick of the per-CPU loops (default 10)
//   --grace-ms=N      tenant SIGTERM->SIGKILL grace when the host goes down (default 1000)
//   --services=LIST   comma-separated image services; known: kv (a Redis-protocol
//                     KV store in /memory@0 served on every listen device,
//                     kernel/image/kv_service.h, docs/sdk.md "KV service")
//   --help
// Exit codes: mk::sdk::exit_code (0 shutdown requested, 1 internal, 2 usage,
// 3 bad boot tree, 4 missing resource, 5 host link, 6 host down, 7 tenant).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "mk/abi/control_messages.h"
#include "mksdk/boot_info.h"
#include "mksdk/devices.h"
#include "kv_service.h"
#include "mksdk/host_link.h"
#include "mksdk/kv_store.h"
#include "mksdk/percpu.h"
#include "mksdk/regions.h"
#include "mksdk/tenants.h"

namespace {

using namespace mk;
using namespace mk::sdk;

struct Args {
  std::string init;
  bool init_set = false;
  ipi::WaitMode mode = ipi::WaitMode::kAdaptive;
  unsigned tick_ms = 10;
  unsigned grace_ms = 1000;
  bool kv = false;
};

constexpr char kUsage[] =
    "usage: mk-kernel [--init=CMD] [--wait-mode=poll|adaptive|block] [--tick-ms=N] [--grace-ms=N]\n"
    "                 [--services=kv]\n"
    "The host starts it with the boot tree on fd 3 (see docs/sdk.md).\n";

bool parse_uint(std::string_view s, unsigned* out) {
  if (s.empty() || s.size() > 9) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  *out = v;
  return true;
}

// "kv" or "" (a comma-separated list of known services).
bool parse_services(std::string_view s, Args* a) {
  while (!s.empty()) {
    const std::size_t comma = s.find(',');
    const std::string_view one = s.substr(0, comma);
    if (one == "kv") {
      a->kv = true;
    } else if (!one.empty()) {
      return false;
    }
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return true;
}

// Returns -1 to continue, or the exit code.
int parse_args(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string_view s = argv[i];
    auto value = [&](std::string_view key, std::string_view* v) {
      if (s.substr(0, key.size()) != key) return false;
      if (s.size() > key.size() && s[key.size()] == '=') {
        *v = s.substr(key.size() + 1);
        return true;
      }
      if (s.size() == key.size() && i + 1 < argc) {
        *v = argv[++i];
        return true;
      }
      return false;
    };
    std::string_view v;
    if (s == "--help" || s == "-h") {
      std::fputs(kUsage, stdout);
      return exit_code::kOk;
    } else if (value("--init", &v)) {
      a->init = std::string(v);
      a->init_set = true;
    } else if (value("--wait-mode", &v) && ipi::parse_wait_mode(v, &a->mode)) {
    } else if (value("--tick-ms", &v) && parse_uint(v, &a->tick_ms) && a->tick_ms > 0) {
    } else if (value("--grace-ms", &v) && parse_uint(v, &a->grace_ms)) {
    } else if (value("--services", &v) && parse_services(v, a)) {
    } else {
      std::fprintf(stderr, "mk-kernel: bad argument '%s'\n%s", argv[i], kUsage);
      return exit_code::kUsage;
    }
  }
  return -1;
}

// The main thread (and so every tenant it spawns) runs on the instance's
// CPUs only, whatever affinity the launcher left us.
Result<void> confine_to(const BootTree& tree) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const auto& c : tree.cpus) CPU_SET(c.os_index, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) return errno_error("sched_setaffinity to the instance cpus");
  return {};
}

int fail(Console& con, int code, const Error& e) {
  con.print("mk-kernel: boot failed: %s\n", e.to_string().c_str());
  if (con.fd() != 2) std::fprintf(stderr, "mk-kernel: boot failed: %s\n", e.to_string().c_str());
  return code;
}

struct Image {
  BootTree tree;
  Console con;
  std::unique_ptr<PerCpu> loops;
  std::unique_ptr<Regions> regions;
  std::unique_ptr<image::KvService> kv;  // --services=kv; stopped before regions unmap
  Tenants tenants;
  std::unique_ptr<HostLink> link;
  std::uint64_t t0 = 0;
};

HostServices services(Image& im) {
  HostServices s;
  s.stats = [&im] {
    abi::StatsMsg m{};
    m.memory_used_bytes = im.regions->used_bytes();
    if (im.kv) {
      // The store claims all of region 0 from the page allocator; count
      // only what it holds (header, buckets, live blocks).
      m.memory_used_bytes -= std::min(m.memory_used_bytes, im.kv->capacity_bytes());
      m.memory_used_bytes += im.kv->used_bytes();
    }
    m.memory_bytes = im.regions->total_bytes();
    m.loop_iterations = im.loops->iterations();
    m.cpus = static_cast<std::uint32_t>(im.loops->size());
    m.tenants_running = im.tenants.running();
    m.uptime_ns = monotonic_ns() - im.t0;
    return m;
  };
  s.shutdown = [&im](std::uint32_t grace_ms) {
    im.con.print("mk-kernel: shutdown requested (grace %u ms)\n", grace_ms);
    auto r = im.tenants.stop(std::chrono::milliseconds(grace_ms));
    for (const auto& e : r.exits) {
      (void)im.link->send_tenant_exit(abi::TenantExitMsg{e.pid, e.status, e.index, 0});
    }
    return abi::ShutdownReply{0, r.killed};
  };
  return s;
}

void report_exits(Image& im) {
  for (const auto& e : im.tenants.reap()) {
    im.con.print("mk-kernel: tenant %u (pid %d) exited, status 0x%x\n", e.index, e.pid, e.status);
    (void)im.link->send_tenant_exit(abi::TenantExitMsg{e.pid, e.status, e.index, 0});
  }
}

// Serves the host until it asks us to shut down (0) or goes away (6).
int serve(Image& im, const Args& args) {
  HostLink::State st;
  while ((st = im.link->serve_once(std::chrono::milliseconds(50))) == HostLink::State::kRunning) {
    report_exits(im);
  }
  im.loops->stop();
  if (im.kv) im.kv->stop();
  if (st == HostLink::State::kShutdown) {
    im.con.print("mk-kernel: instance %u down\n", im.tree.instance.id);
    return exit_code::kOk;
  }
  im.con.print("mk-kernel: host gone, stopping tenants\n");
  (void)im.tenants.stop(std::chrono::milliseconds(args.grace_ms));
  return exit_code::kHostDown;
}

// --services=kv: the store takes all of /memory@0 (the first allocation of
// the page allocator, so it sits at offset 0 where the next image looks),
// attached if the region already holds one, formatted if it is zeroed.
Result<void> start_kv(Image& im) {
  const Devices devs(im.tree.devices);  // all() points into it: keep it alive
  const auto listens = devs.all(DeviceKind::kListen);
  if (listens.empty()) {
    return MK_FAIL(ENOENT, "kv service: no listen device", "add one: mkctl create ... --device listen:ADDR:PORT");
  }
  const BootMemory& m0 = im.tree.memory.front();
  if (m0.size < KvStore::kMinRegion) {
    return MK_FAIL(ENOSPC, "kv service: /memory@0 too small", "%llu bytes, the store needs %llu",
                   static_cast<unsigned long long>(m0.size), static_cast<unsigned long long>(KvStore::kMinRegion));
  }
  MK_TRY_ASSIGN(PageRange range, im.regions->alloc(m0.size / kPageSize));
  if (range.region != 0 || range.offset != 0) {
    (void)im.regions->release(range);
    return MK_FAIL(EBUSY, "kv service: /memory@0 is not free", "the store needs all of region 0");
  }
  std::byte* base = im.regions->at(range);
  auto store = KvStore::attach(base, m0.size);
  if (!store && store.error().code() == ENOENT) {
    store = KvStore::format(base, m0.size);
    if (store) im.con.print("mk-kernel: kv: formatted a new store in /memory@0 (%llu MiB, %llu buckets)\n",
                            static_cast<unsigned long long>(m0.size >> 20),
                            static_cast<unsigned long long>(store->bucket_count()));
  } else if (store) {
    im.con.print("mk-kernel: kv: attached the store in /memory@0: %llu keys\n",
                 static_cast<unsigned long long>(store->dbsize()));
  }
  if (!store) return store.error();
  std::vector<int> fds;
  for (const auto* d : listens) fds.push_back(d->fd);
  MK_TRY_ASSIGN(im.kv, image::KvService::start(*store, fds, im.tree.cpus.front().os_index, &im.con));
  for (const auto* d : listens) {
    const auto a = d->properties.find("address");
    const auto p = d->properties.find("port");
    im.con.print("mk-kernel: kv: serving on '%s' (%s:%s)\n", d->name.c_str(),
                 a == d->properties.end() ? "?" : a->second.c_str(), p == d->properties.end() ? "?" : p->second.c_str());
  }
  return {};
}

int boot(Image& im, const Args& args) {
  auto tree = read_boot_tree(kBootTreeFd);
  if (!tree) return fail(im.con, exit_code::kBadBootTree, tree.error());
  im.tree = std::move(*tree);
  // The console first (when its fd is open), so later failures reach it.
  if (auto con = Devices(im.tree.devices).console_fd(); con && ::fcntl(*con, F_GETFD) >= 0) im.con.set_fd(*con);
  if (auto r = check_boot_fds(im.tree); !r) return fail(im.con, exit_code::kMissingResource, r.error());
  if (auto r = confine_to(im.tree); !r) return fail(im.con, exit_code::kMissingResource, r.error());
  im.con.print("mk-kernel: instance %u '%s': %zu cpus, %zu regions, %zu devices, %zu channels\n",
               im.tree.instance.id, im.tree.instance.name.c_str(), im.tree.cpus.size(), im.tree.memory.size(),
               im.tree.devices.size(), im.tree.ipi.channels.size());
  auto loops = PerCpu::start(im.tree.cpus, PerCpuOptions{std::chrono::milliseconds(args.tick_ms)});
  if (!loops) return fail(im.con, exit_code::kMissingResource, loops.error());
  im.loops = std::move(*loops);
  auto regions = Regions::map(im.tree.memory);
  if (!regions) return fail(im.con, exit_code::kMissingResource, regions.error());
  im.regions = std::move(*regions);
  if (args.kv) {
    if (auto r = start_kv(im); !r) return fail(im.con, exit_code::kMissingResource, r.error());
  }
  HostLinkOptions lo;
  lo.mode = args.mode;
  auto link = HostLink::open(im.tree, services(im), lo);
  if (!link) return fail(im.con, exit_code::kHostLink, link.error());
  im.link = std::move(*link);
  const std::string init = args.init_set ? args.init : im.tree.init;
  if (!init.empty()) {
    auto t = im.tenants.start(init, im.con.fd());
    if (!t) return fail(im.con, exit_code::kTenantStart, t.error());
    im.con.print("mk-kernel: tenant 0: %s\n", init.c_str());
  }
  const abi::ReadyMsg ready{abi::kControlVersion, im.tree.instance.id,
                            static_cast<std::uint32_t>(im.loops->size()), im.tenants.started(),
                            monotonic_ns() - im.t0};
  if (auto r = im.link->send_ready(ready); !r) return fail(im.con, exit_code::kHostLink, r.error());
  im.con.print("mk-kernel: ready in %llu us\n", static_cast<unsigned long long>(ready.boot_ns / 1000));
  return serve(im, args);
}

}  // namespace

int main(int argc, char** argv) {
  Image im;
  im.t0 = monotonic_ns();  // first thing: boot_ns counts from here
  // Console/host pipes may close under us: report, never die of SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  Args args;
  if (int rc = parse_args(argc, argv, &args); rc >= 0) return rc;
  return boot(im, args);
}
