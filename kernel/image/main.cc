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
//   --fault=STEP      fault injection (docs/sdk.md "Live update", "Moving CPUs"):
//                     exit-at-boot, hang-at-handover, refuse-handover (a
//                     successor), die-in-prepare (an old image);
//                     refuse-cpu-release (every kMsgCpuRelease: -EPERM)
//   --reaper=FD       not an image: the reaper an old image execs (reaper.h)
//   --help
// Live update (docs/sdk.md "Live update"): a tree with
// mkernel,parked makes this a parked successor: it boots without
// tenants, services or peer channels, sends READY and waits for
// kMsgHandover; any image answers kMsgUpdatePrepare/Freeze/Cancel/Finish.
// Staged updates (staged.h): scoped steps, one part each; an image holds
// the parts it booted with or received and takes further parts.
// CPU moves (docs/sdk.md "Moving CPUs", cpus.h): kMsgCpuRelease/kMsgCpuAdd,
// refused while parked or during a live update.
// Memory and device moves (docs/sdk.md "Moving memory and devices",
// resources.h): kMsgMemoryAdd/Release, kMsgDeviceAdd/Release, refused likewise.
// Exit codes: mk::sdk::exit_code (0 shutdown requested, 1 internal, 2 usage,
// 3 bad boot tree, 4 missing resource, 5 host link, 6 host down, 7 tenant).
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <thread>

#include "args.h"
#include "cpus.h"
#include "files_handler.h"
#include "handoff_package.h"
#include "handover/kho_blob.h"
#include "handover/update.h"
#include "kv_handler.h"
#include "kv_service.h"
#include "memory_handler.h"
#include "prefault.h"
#include "mk/abi/control_messages.h"
#include "mksdk/boot_info.h"
#include "mksdk/devices.h"
#include "reaper.h"
#include "resources.h"
#include "staged.h"
#include "tenants_handler.h"
#include "mksdk/host_link.h"
#include "mksdk/kv_store.h"
#include "mksdk/percpu.h"
#include "mksdk/regions.h"
#include "mksdk/tenants.h"

extern char** environ;

namespace {

using namespace mk;
using namespace mk::sdk;
using image::Args;
using image::Fault;

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
  const Args* args = nullptr;
  std::unique_ptr<PerCpu> loops;
  std::unique_ptr<Regions> regions;
  std::unique_ptr<image::KvService> kv;  // --services=kv; stopped before regions unmap
  std::optional<PageRange> kv_range;     // the store's allocation (all of /memory@0)
  Tenants tenants;
  std::unique_ptr<HostLink> link;
  std::uint64_t t0 = 0;
  // Live update. The handler objects serve both sides: restore as a
  // successor, preserve when this image is updated in turn.
  bool parked = false;  // a successor waiting for kMsgHandover
  std::uint32_t held = 0;   // parts held (staged.h): all when booted normally
  std::uint32_t scope = 0;  // parts of the update in progress (prepare .. finish/cancel)
  image::ExitForwarder forward;  // tenants handed away while still our children
  std::unique_ptr<image::FilesHandler> files;
  std::unique_ptr<image::MemoryHandler> memory;
  std::unique_ptr<image::TenantsHandler> tenants_h;
  std::unique_ptr<image::KvHandler> kv_h;
  handover::UpdateMachine machine;  // rebuilt per prepare with the scope's handlers (staged.h)
  handover::KhoBlob blob;
  handover::OwnedFd package;  // the sealed handoff package, until finish/cancel
  handover::OwnedFd precopy;  // the pre-copy package (prepare's reply), until freeze/cancel
  handover::OwnedFd spare;    // made at prepare: the freeze writes its package into it
};

abi::UpdateReply on_update(Image& im, std::uint16_t type, const abi::UpdateStepMsg& m);
abi::UpdateReply on_handover(Image& im, const abi::HandoverMsg& m);
abi::UpdateReply on_precopy(Image& im, const abi::HandoverMsg& m);
abi::CpuReply on_cpu(Image& im, std::uint16_t type, const abi::CpuMsg& m);
abi::ResourceReply on_resource(Image& im, std::uint16_t type, const abi::ResourceMsg& m);

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
  s.update = [&im](std::uint16_t type, const abi::UpdateStepMsg& m) { return on_update(im, type, m); };
  s.handover = [&im](const abi::HandoverMsg& m) { return on_handover(im, m); };
  s.precopy = [&im](const abi::HandoverMsg& m) { return on_precopy(im, m); };
  s.cpu = [&im](std::uint16_t type, const abi::CpuMsg& m) { return on_cpu(im, type, m); };
  s.resource = [&im](std::uint16_t type, const abi::ResourceMsg& m) { return on_resource(im, type, m); };
  return s;
}

// ---- CPU moves (docs/sdk.md "Moving CPUs"; the work is in cpus.cc) ----

abi::CpuReply on_cpu(Image& im, std::uint16_t type, const abi::CpuMsg& m) {
  image::CpuRefusal no;
  if (im.parked) {
    no = {EBUSY, "a parked successor: its CPUs move with the handover"};
  } else if (im.machine.state() != handover::UpdateState::kNormal) {
    no = {EBUSY, "a live update is in progress: move CPUs before or after it"};
  } else if (type == abi::kMsgCpuRelease && im.args->fault == Fault::kRefuseCpuRelease) {
    no = {EPERM, "refused by --fault"};
  }
  return image::serve_cpu(image::CpuContext{&im.tree, im.loops.get(), &im.kv, &im.tenants, &im.con}, type, m, no);
}

// Memory and device moves (docs/sdk.md "Moving memory and devices"; the
// work is in resources.cc). A staged pre-copy or a staged update names
// devices by their index: nothing moves under it.
abi::ResourceReply on_resource(Image& im, std::uint16_t type, const abi::ResourceMsg& m) {
  image::ResourceRefusal no;
  if (im.parked) {
    no = {EBUSY, "a parked successor: its memory and devices move with the handover"};
  } else if (im.machine.state() != handover::UpdateState::kNormal) {
    no = {EBUSY, "a live update is in progress: move memory and devices before or after it"};
  } else if (im.held != image::kAllParts || im.files->staged()) {
    no = {EBUSY, "a staged update is in progress: move memory and devices before or after it"};
  }
  return image::serve_resource(
      image::ResourceContext{&im.tree, im.regions.get(), &im.kv, &im.kv_range, &im.con}, type, m, no);
}

// ---- live update (docs/sdk.md "Live update") ----

void set_detail(abi::UpdateReply* r, const Error& e) {
  std::snprintf(r->detail, sizeof r->detail, "%s", e.to_string().c_str());
}

// The handler objects; each prepare registers those of its scope with a
// fresh machine (new_machine).
void setup_update(Image& im) {
  im.files = std::make_unique<image::FilesHandler>(&im.tree);
  im.memory = std::make_unique<image::MemoryHandler>(im.regions.get(), &im.kv_range);
  im.tenants_h = std::make_unique<image::TenantsHandler>(&im.tenants, im.files.get());
  if (im.args->kv) {
    im.kv_h = std::make_unique<image::KvHandler>(
        image::KvContext{&im.kv, &im.kv_range, im.regions.get(), &im.tree, &im.con}, im.files.get());
  }
}

image::PartsContext parts(Image& im) {
  return image::PartsContext{&im.tree,       im.regions.get(), &im.kv,
                             &im.kv_range,   &im.tenants,      im.files.get(),
                             im.memory.get(), im.tenants_h.get(), im.kv_h.get(),
                             &im.con};
}

Result<void> new_machine(Image& im, std::uint32_t scope) {
  MK_TRY(image::build_outgoing(im.machine, parts(im), scope));
  im.machine.set_observer([&im](handover::UpdateState from, handover::UpdateState to) {
    im.con.print("mk-kernel: update: %s -> %s\n", handover::to_string(from).data(), handover::to_string(to).data());
  });
  return {};
}

void reattach_peers(Image& im) {
  if (!(im.held & abi::kUpdateScopePeers) || im.link->peers_attached()) return;
  if (auto r = im.link->attach_peers(); !r) {
    im.con.print("mk-kernel: update: re-attaching the peer channels failed: %s\n", r.error().to_string().c_str());
  }
}

// Freeze: detach the peer sides, handlers freeze (kv pauses), emit the blob,
// write the sealed package. Any failure leaves the image serving: prepared
// (a handler's freeze failed; the machine unwound the others) or normal
// (emit/package failed after every handler froze: cancelled here).
Result<void> freeze(Image& im, std::uint32_t update_id) {
  if (im.machine.state() != handover::UpdateState::kPrepared) {
    return MK_FAIL(EINVAL, "freeze refused", "the update is %s: send kMsgUpdatePrepare first",
                   handover::to_string(im.machine.state()).data());
  }
  const bool peers = im.scope & abi::kUpdateScopePeers;
  if (peers && im.link->peers_attached()) {
    MK_TRY(im.link->detach_peers());
  }
  im.blob = {};
  if (auto r = im.machine.freeze(im.blob); !r) {
    reattach_peers(im);
    return r.error();
  }
  if (peers) im.blob.subsystems.push_back(image::peers_subsystem());  // the receiver attaches its sides
  auto undo = [&](const Error& e) -> Error {
    (void)im.machine.cancel();
    reattach_peers(im);
    im.blob = {};
    return e;
  };
  auto bytes = handover::emit_kho_blob(im.blob);
  if (!bytes) return undo(bytes.error());
  const std::vector<int> fds = im.files->transfer_fds();
  auto pkg = image::write_handoff_package(update_id, fds, *bytes, std::move(im.spare));
  if (!pkg) return undo(pkg.error());
  im.package = std::move(*pkg);
  im.con.print("mk-kernel: update %u: frozen, package fd %d: %zu fds, %zu blob bytes\n", update_id, im.package.get(),
               fds.size(), bytes->size());
  return {};
}

// The freeze's package memfd, made at prepare with this much room: the
// delta package of a pre-copied update is a few KiB; a larger one grows.
constexpr std::size_t kSpareBytes = 64 * 1024;

// After prepare, with kUpdateFlagPrecopy: what the session holds so far, as
// a package of its own (files subtree only), sent to the successor before
// the freeze; the freeze's package then carries the rest.
Result<void> write_precopy(Image& im, std::uint32_t update_id) {
  handover::KhoBlob pre;
  MK_TRY_ASSIGN(handover::Subsystem files, im.files->precopy_subsystem());
  pre.subsystems.push_back(std::move(files));
  MK_TRY_ASSIGN(std::vector<std::uint8_t> bytes, handover::emit_kho_blob(pre));
  const std::vector<int> fds = im.files->transfer_fds();
  MK_TRY_ASSIGN(im.precopy, image::write_handoff_package(update_id, fds, bytes));
  im.files->commit_precopy();
  im.con.print("mk-kernel: update %u: prepared, pre-copy package fd %d: %zu fds\n", update_id, im.precopy.get(),
               fds.size());
  return {};
}

void prefault(Image& im) {
  if (auto r = image::prefault_image(); !r) {
    im.con.print("mk-kernel: update: %s (going on)\n", r.error().to_string().c_str());
  }
}

// Prepare: the handlers preserve; then the freeze's package memfd is made
// and, with kUpdateFlagPrecopy, the pre-copy package written. Anything
// failing after the handlers preserved cancels them: normal again.
Result<void> prepare(Image& im, const abi::UpdateStepMsg& m) {
  if (im.machine.state() != handover::UpdateState::kNormal) {
    return MK_FAIL(EINVAL, "prepare refused", "the update is %s already", handover::to_string(im.machine.state()).data());
  }
  MK_TRY_ASSIGN(const std::uint32_t scope, image::prepare_scope(m.flags, im.held));
  MK_TRY(new_machine(im, scope));
  im.scope = scope;
  im.blob = {};
  im.precopy.reset();
  im.spare.reset();
  prefault(im);  // the freeze runs code this process may never have run
  MK_TRY(im.machine.prepare(im.blob));
  auto rest = [&]() -> Result<void> {
    MK_TRY_ASSIGN(im.spare, image::make_package_memfd(kSpareBytes));
    if (m.flags & abi::kUpdateFlagPrecopy) MK_TRY(write_precopy(im, m.update_id));
    return {};
  };
  if (auto r = rest(); !r) {
    (void)im.machine.cancel();
    im.spare.reset();
    im.precopy.reset();
    return r.error();
  }
  return {};
}

// The part of an update step the image keeps after the step: everything
// staged or prepared is forgotten (cancel, finish).
void clear_step(Image& im) {
  im.package.reset();
  im.precopy.reset();
  im.spare.reset();
  im.blob = {};
  im.scope = 0;
}

// kMsgUpdateFinish with kUpdateFlagPartial (staged.h): the receiver holds
// the part now; drop it, back to normal, serve the rest.
void finish_part(Image& im, std::uint32_t update_id) {
  const std::uint32_t scope = im.scope;
  image::drop_parts(parts(im), scope);
  if ((scope & abi::kUpdateScopeTenants) && im.tenants_h->reaper_write_fd() >= 0) im.forward.start();
  im.held &= ~scope;
  im.machine = handover::UpdateMachine{};
  clear_step(im);
  im.con.print("mk-kernel: update %u: %s handed over; holding %s, serving\n", update_id,
               image::part_names(scope).c_str(), image::part_names(im.held).c_str());
}

// kMsgUpdateCancel on a receiver: drop a staged pre-copy nobody handed
// over (its connection fds close without shutdown(2), the parked kv
// thread stops, the staged device fds close).
void drop_staged(Image& im, std::uint32_t update_id) {
  if (!im.files->staged()) return;
  if (im.kv_h) im.kv_h->cancel();
  im.files->cancel();
  im.con.print("mk-kernel: update %u cancelled: the staged pre-copy is dropped\n", update_id);
}

abi::UpdateReply on_update(Image& im, std::uint16_t type, const abi::UpdateStepMsg& m) {
  const std::uint64_t t0 = monotonic_ns();
  abi::UpdateReply r{};
  r.fd = -1;
  auto fail = [&](const Error& e) {
    r.status = -e.code();
    set_detail(&r, e);
    im.con.print("mk-kernel: update %u: step 0x%x refused: %s\n", m.update_id, type, e.to_string().c_str());
  };
  const handover::UpdateState st = im.machine.state();
  if (type == abi::kMsgUpdateCancel) {
    if (st == handover::UpdateState::kNormal) {
      drop_staged(im, m.update_id);
    } else if (auto x = im.machine.cancel(); !x) {
      fail(x.error());
    } else {
      reattach_peers(im);
      clear_step(im);
      im.con.print("mk-kernel: update %u cancelled, serving as before\n", m.update_id);
    }
  } else if (im.parked) {
    fail(MK_FAIL(EBUSY, "a parked successor cannot be updated", "it has not been handed anything yet"));
  } else if (type == abi::kMsgUpdatePrepare) {
    if (im.args->fault == Fault::kDieInPrepare) {
      im.con.print("mk-kernel: --fault=die-in-prepare: exiting on kMsgUpdatePrepare\n");
      ::_exit(1);
    }
    if (auto x = prepare(im, m); !x) {
      fail(x.error());
    } else {
      r.fd = im.precopy.valid() ? im.precopy.get() : -1;
    }
  } else if (type == abi::kMsgUpdateFreeze) {
    if (auto x = freeze(im, m.update_id); !x) {
      fail(x.error());
    } else {
      r.fd = im.package.get();
    }
  } else if (type == abi::kMsgUpdateFinish) {
    const bool frozen = st == handover::UpdateState::kFrozen && im.package.valid();
    if (m.flags & abi::kUpdateFlagPartial) {
      if (!frozen) {
        fail(MK_FAIL(EINVAL, "finish refused", "the update is %s, not frozen with a package",
                     handover::to_string(st).data()));
      } else {
        finish_part(im, m.update_id);
      }
    } else if (const std::uint32_t left = im.held & ~(image::has_peers(im.tree) ? 0u : abi::kUpdateScopePeers);
               !(frozen && (left & ~im.scope) == 0) && !(st == handover::UpdateState::kNormal && left == 0)) {
      // Retiring: frozen with everything held handed over, or (a staged
      // update's last step) every part handed over already.
      fail(MK_FAIL(EINVAL, "finish refused", "the update is %s, not frozen with a package, and the image holds %s",
                   handover::to_string(st).data(), image::part_names(im.held).c_str()));
    }
  }
  r.image_ns = monotonic_ns() - t0;
  return r;
}

Result<image::HandoffContents> receive(Image& im, const abi::HandoverMsg& m,
                                       std::vector<handover::OwnedFd>* fds, handover::OwnedFd* memfd) {
  MK_TRY_ASSIGN(image::ReceivedHandoff got,
                image::receive_handoff(*im.tree.handover_socket, m.fds, std::chrono::seconds(5)));
  MK_TRY_ASSIGN(image::HandoffContents pkg, image::read_handoff_package(got.package.get(), m.fds, m.update_id));
  *fds = std::move(got.fds);
  *memfd = std::move(got.package);
  return pkg;
}

// kMsgHandover: restore the parts the package carries (staged.h), attach
// the peers when they came, re-pin the tenants when they came.
Result<void> restore(Image& im, const abi::HandoverMsg& m) {
  std::vector<handover::OwnedFd> fds;
  handover::OwnedFd memfd;
  MK_TRY_ASSIGN(image::HandoffContents pkg, receive(im, m, &fds, &memfd));
  MK_TRY_ASSIGN(handover::KhoBlob blob, handover::parse_kho_blob(pkg.blob));
  const std::uint32_t got = image::parts_in(blob);
  if (got & im.held) {
    return MK_FAIL(EEXIST, "part held already", "the package carries %s; this image holds %s",
                   image::part_names(got).c_str(), image::part_names(im.held).c_str());
  }
  MK_TRY(image::restore_parts(parts(im), blob, std::move(fds)));
  im.held |= got;
  if (!image::has_peers(im.tree)) im.held |= abi::kUpdateScopePeers;  // no channel: nothing to wait for
  if ((got & abi::kUpdateScopePeers) && !im.link->peers_attached()) MK_TRY(im.link->attach_peers());
  if (got & abi::kUpdateScopeTenants) {
    if (auto p = image::repin_to(im.tree, im.tenants); !p) {
      im.con.print("mk-kernel: update %u: re-pinning the tenants: %s (going on)\n", m.update_id,
                   p.error().to_string().c_str());
    }
  }
  return {};
}

// kMsgUpdatePrecopy: take what the old image preserved at prepare and
// stage it (files: the session and the device fds; kv: the connections and
// a parked service thread), so that the handover has only the delta to do.
Result<void> stage(Image& im, const abi::HandoverMsg& m) {
  std::vector<handover::OwnedFd> fds;
  handover::OwnedFd memfd;
  MK_TRY_ASSIGN(image::HandoffContents pkg, receive(im, m, &fds, &memfd));
  MK_TRY_ASSIGN(handover::KhoBlob blob, handover::parse_kho_blob(pkg.blob));
  MK_TRY(im.files->stage(blob, std::move(fds)));
  if (im.kv_h) MK_TRY(im.kv_h->stage());
  return {};
}

// A refused kMsgHandover/kMsgUpdatePrecopy: the package the host sends
// with it (right after the request) is read and dropped, so that it is not
// taken for the next one's.
void discard_package(Image& im, const abi::HandoverMsg& m) {
  if (auto got = image::receive_handoff(*im.tree.handover_socket, m.fds, std::chrono::milliseconds(200)); got) {
    im.con.print("mk-kernel: update %u: the refused package (%u fds) is dropped\n", m.update_id, m.fds);
  }
}

// Whether this image may receive a part now ("" when it may).
const char* cannot_receive(Image& im) {
  if (im.held == image::kAllParts) return "the image holds every part already (restored, or booted normally)";
  if (im.machine.state() != handover::UpdateState::kNormal) return "the image is handing a part over itself";
  return "";
}

abi::UpdateReply on_precopy(Image& im, const abi::HandoverMsg& m) {
  const std::uint64_t t0 = monotonic_ns();
  abi::UpdateReply r{};
  r.fd = -1;
  const char* no = cannot_receive(im);
  if (*no || im.files->staged() || (im.held & abi::kUpdateScopeServices)) {
    discard_package(im, m);
    r.status = *no || im.files->staged() ? -EALREADY : -EEXIST;
    std::snprintf(r.detail, sizeof r.detail, "%s",
                  *no ? no : im.files->staged() ? "a pre-copy was staged already" : "the image holds the services");
    return r;
  }
  if (auto x = stage(im, m); !x) {
    if (im.kv_h) im.kv_h->cancel();
    im.files->cancel();
    r.status = -x.error().code();
    set_detail(&r, x.error());
    im.con.print("mk-kernel: pre-copy %u refused: %s\n", m.update_id, x.error().to_string().c_str());
  } else {
    im.con.print("mk-kernel: pre-copy %u staged\n", m.update_id);
  }
  r.image_ns = monotonic_ns() - t0;
  return r;
}

abi::UpdateReply on_handover(Image& im, const abi::HandoverMsg& m) {
  const std::uint64_t t0 = monotonic_ns();
  abi::UpdateReply r{};
  r.fd = -1;
  if (const char* no = cannot_receive(im); *no) {
    discard_package(im, m);
    r.status = -EALREADY;
    std::snprintf(r.detail, sizeof r.detail, "%s", no);
    return r;
  }
  if (im.args->fault == Fault::kHangAtHandover) {
    im.con.print("mk-kernel: --fault=hang-at-handover: never answering kMsgHandover\n");
    for (;;) ::pause();
  }
  if (im.args->fault == Fault::kRefuseHandover) {
    r.status = -EPROTONOSUPPORT;
    std::snprintf(r.detail, sizeof r.detail, "refused by --fault");
    im.con.print("mk-kernel: --fault=refuse-handover: refusing update %u\n", m.update_id);
    return r;
  }
  if (auto x = restore(im, m); !x) {
    r.status = -x.error().code();
    set_detail(&r, x.error());
    im.con.print("mk-kernel: handover %u refused: %s\n", m.update_id, x.error().to_string().c_str());
  } else {
    im.parked = false;
    im.con.print("mk-kernel: handover %u: restored, holding %s, %u tenants adopted, serving\n", m.update_id,
                 image::part_names(im.held).c_str(), im.tenants.running());
  }
  r.image_ns = monotonic_ns() - t0;
  return r;
}

// After kMsgUpdateFinish (replied): leave. As PID 1 of the namespace, or
// still the parent of tenants, exec the reaper instead (reaper.h).
int retire(Image& im) {
  im.forward.poll(im.tenants_h->reaper_write_fd());  // what is still queued, before the reaper takes over
  bool children = im.forward.active();  // tenants handed away in a staged update: still ours
  for (const auto& t : im.tenants.running_tenants()) children |= !t.adopted;
  const bool pid1 = ::getpid() == 1;
  if (!pid1 && !children) {
    im.con.print("mk-kernel: instance %u handed over, exiting\n", im.tree.instance.id);
    return exit_code::kOk;
  }
  int wfd = im.tenants_h ? im.tenants_h->reaper_write_fd() : -1;
  if (wfd < 0) {  // PID 1 without tenants: a pipe nobody reads (records are dropped)
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      im.con.print("mk-kernel: retire: pipe2: %s\n", std::strerror(errno));
      return exit_code::kInternal;
    }
    ::close(p[0]);
    wfd = p[1];
  }
  im.con.print("mk-kernel: instance %u handed over; becoming the reaper (%s)\n", im.tree.instance.id,
               pid1 ? "PID 1 of the namespace" : "tenants are our children");
  const int fl = ::fcntl(wfd, F_GETFD);
  if (fl >= 0) ::fcntl(wfd, F_SETFD, fl & ~FD_CLOEXEC);
  std::string arg = "--reaper=" + std::to_string(wfd);
  std::string arg0 = "mk-kernel";
  char* argv[] = {arg0.data(), arg.data(), nullptr};
  ::execve("/proc/self/exe", argv, environ);
  im.con.print("mk-kernel: exec of the reaper failed (%s): reaping in this process\n", std::strerror(errno));
  return image::run_reaper(wfd);
}

void report_exits(Image& im) {
  // Frozen for an update: exits stay with the kernel, for the reaper (and
  // the successor) or for us again after a cancel.
  if (im.tenants_h && im.tenants_h->frozen()) return;
  im.forward.poll(im.tenants_h->reaper_write_fd());  // before reap(): our children's records go first
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
  if (st == HostLink::State::kRetired) return retire(im);
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
  im.kv_range = range;
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
  // The handover socket (and the copy of the host's end, only kept open):
  // never inherited by tenants.
  for (const auto& [fd, what] : {std::pair{im.tree.handover_socket, "mkernel,handover-socket"},
                                 std::pair{im.tree.handover_socket_host, "mkernel,handover-socket-host"}}) {
    if (!fd) continue;
    const int fl = ::fcntl(*fd, F_GETFD);
    if (fl < 0 || ::fcntl(*fd, F_SETFD, fl | FD_CLOEXEC) != 0) {
      return fail(im.con, exit_code::kMissingResource,
                  MK_FAIL(EBADF, "handover socket not open", "/chosen %s is fd %d, which is not open", what, *fd));
    }
  }
  // A successor: boot parked (no tenants, services or peer channels).
  im.parked = im.tree.parked;
  if (args.kv && !im.parked) {
    if (auto r = start_kv(im); !r) return fail(im.con, exit_code::kMissingResource, r.error());
  }
  im.held = im.parked ? 0 : image::kAllParts;
  setup_update(im);
  HostLinkOptions lo;
  lo.mode = args.mode;
  lo.attach_peers = !im.parked;
  auto link = HostLink::open(im.tree, services(im), lo);
  if (!link) return fail(im.con, exit_code::kHostLink, link.error());
  im.link = std::move(*link);
  const std::string init = args.init_set ? args.init : im.tree.init;
  if (!init.empty() && !im.parked) {
    auto t = im.tenants.start(init, im.con.fd());
    if (!t) return fail(im.con, exit_code::kTenantStart, t.error());
    im.con.print("mk-kernel: tenant 0: %s\n", init.c_str());
  }
  const abi::ReadyMsg ready{abi::kControlVersion, im.tree.instance.id,
                            static_cast<std::uint32_t>(im.loops->size()), im.tenants.started(),
                            monotonic_ns() - im.t0};
  // A successor's restore runs inside the blackout: its code is faulted in now.
  if (im.parked) prefault(im);
  if (im.parked && args.fault == Fault::kExitAtBoot) {
    im.con.print("mk-kernel: --fault=exit-at-boot: exiting before READY\n");
    return exit_code::kInternal;
  }
  if (auto r = im.link->send_ready(ready); !r) return fail(im.con, exit_code::kHostLink, r.error());
  if (im.parked) im.con.print("mk-kernel: successor parked, waiting for the handover\n");
  im.con.print("mk-kernel: ready in %llu us\n", static_cast<unsigned long long>(ready.boot_ns / 1000));
  return serve(im, args);
}

}  // namespace

int main(int argc, char** argv) {
  Image im;
  im.t0 = monotonic_ns();  // first thing: boot_ns counts from here
  // Console/host pipes may close under us: report, never die of SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  // Heap pages freed stay mapped (no trim, no mmap for big blocks): the
  // freeze and the restore allocate what prepare and the pre-copy just
  // did, and a fresh page costs a fault inside the blackout.
  ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  Args args;
  if (int rc = image::parse_args(argc, argv, &args); rc >= 0) return rc;
  if (args.reaper_fd >= 0) return image::run_reaper(args.reaper_fd);
  im.args = &args;
  return boot(im, args);
}
