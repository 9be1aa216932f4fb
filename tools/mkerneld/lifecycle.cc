// Instance lifecycle in the daemon: load, start, stop, delete, crash and
// re-adoption, and the channels between instances (see controller.h).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/posix/descriptor_base.hpp>
#include <cstring>

#include "controller.h"
#include "json_codec.h"
#include "mkernel/image.h"
#include "partition_actions.h"
#include "server.h"
#include "state_store.h"

namespace mkerneld {

namespace rpc = mk::tools::rpc;
namespace json = boost::json;
using mk::Instance;
using mk::InstanceState;
using Clock = std::chrono::steady_clock;

mk::Error no_such_instance(const mk::Partition& part, const std::string& name) {
  return MK_FAIL(ENOENT, "no such instance", "'%s' (instances: %s)", name.c_str(),
                 mk::tools::instance_names(part).c_str());
}

namespace {

// The host tasks an instance's start moved off its CPUs, kept beside the
// state so a restarted daemon still gives them back when it stops.
std::string evicted_path(const std::string& dir, const std::string& name) {
  return dir + "/evicted-" + name + ".json";
}

mk::Result<void> save_evicted(const std::string& dir, const std::string& name,
                              const std::vector<mk::MovedTask>& moved) {
  const std::string path = evicted_path(dir, name);
  if (moved.empty()) {
    ::unlink(path.c_str());
    return mk::ok();
  }
  json::array tasks;
  for (const auto& m : moved)
    tasks.push_back(json::array{m.pid, m.tid, m.start_time, m.original.to_string(), m.now.to_string()});
  json::object o{{"format", "mkernel-evicted-tasks/1"}, {"tasks", std::move(tasks)}};
  return mk::tools::write_file_atomic(path, json::serialize(o) + "\n");
}

std::vector<mk::MovedTask> load_evicted(const std::string& dir, const std::string& name, std::string& why) {
  std::vector<mk::MovedTask> out;
  auto text = mk::SysRoot("/").read_file(evicted_path(dir, name), 16 << 20);
  if (!text) {
    if (text.error().code() != ENOENT) why = text.error().to_string();
    return out;
  }
  boost::system::error_code ec;
  json::value v = json::parse(*text, ec);
  const json::object* o = ec ? nullptr : v.if_object();
  const json::value* tasks = o ? o->if_contains("tasks") : nullptr;
  if (!tasks || !tasks->is_array()) {
    why = evicted_path(dir, name) + ": not an evicted-tasks file";
    return out;
  }
  for (const json::value& t : tasks->get_array()) {
    const json::array* a = t.if_array();
    if (!a || a->size() != 5 || !(*a)[0].is_int64() || !(*a)[1].is_int64() || !(*a)[3].is_string() ||
        !(*a)[4].is_string())
      continue;
    mk::MovedTask m;
    m.pid = static_cast<pid_t>((*a)[0].get_int64());
    m.tid = static_cast<pid_t>((*a)[1].get_int64());
    m.start_time = (*a)[2].is_uint64() ? (*a)[2].get_uint64() : static_cast<uint64_t>((*a)[2].to_number<int64_t>());
    auto orig = mk::CpuSet::parse(std::string((*a)[3].get_string()));
    auto now = mk::CpuSet::parse(std::string((*a)[4].get_string()));
    if (!orig || !now) continue;
    m.original = *orig;
    m.now = *now;
    out.push_back(std::move(m));
  }
  return out;
}

// How an exit reads for a user.
std::string exit_text(const ProcessExit& ex) {
  if (!ex.have_status) return "exited (status unknown: the image was adopted after a mkerneld restart)";
  char buf[128];
  if (ex.code == CLD_EXITED) std::snprintf(buf, sizeof buf, "exited with status %d", ex.status);
  else std::snprintf(buf, sizeof buf, "killed by signal %d (%s)%s", ex.status, strsignal(ex.status),
                     ex.code == CLD_DUMPED ? ", core dumped" : "");
  return buf;
}

std::unique_ptr<boost::asio::posix::stream_descriptor> watch_dup(boost::asio::io_context& io, int fd) {
  int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) return nullptr;
  return std::make_unique<boost::asio::posix::stream_descriptor>(io, d);
}

mk::Result<mk::ipi::ChannelFds> dup_fds(const mk::ipi::ChannelFds& in) {
  mk::ipi::ChannelFds out;
  int m = ::fcntl(in.memfd.get(), F_DUPFD_CLOEXEC, 3);
  int e0 = ::fcntl(in.eventfd[0].get(), F_DUPFD_CLOEXEC, 3);
  int e1 = ::fcntl(in.eventfd[1].get(), F_DUPFD_CLOEXEC, 3);
  out.memfd.reset(m);
  out.eventfd[0].reset(e0);
  out.eventfd[1].reset(e1);
  if (m < 0 || e0 < 0 || e1 < 0) return mk::errno_error("dup of a channel fd");
  return out;
}

}  // namespace

// ---- load -------------------------------------------------------------------

rpc::Response Controller::load(const rpc::LoadAction& a) {
  mk::Partition work = part_;
  Instance* inst = work.find(a.name);
  if (!inst) return rpc::Response::failure(no_such_instance(part_, a.name));
  if (inst->state == InstanceState::Active || inst->state == InstanceState::Stopping) {
    return rpc::Response::failure(MK_FAIL(EBUSY, "instance is running", "'%s' is %s (pid %d)", a.name.c_str(),
                                          to_string(inst->state), inst->runtime ? inst->runtime->pid : 0),
                                  "stop it first (mkctl stop " + a.name + "); nothing was changed");
  }
  auto info = mk::inspect_image(a.kernel);
  if (!info) return rpc::Response::failure(info.error(), "nothing was changed");
  inst->image = mk::LoadedImage{info->path, info->sha256, info->size, info->machine, a.cmdline, a.init, a.uid, a.gid};
  inst->state = InstanceState::Loaded;
  if (auto s = persist(work); !s) return rpc::Response::failure(s.error(), "nothing was changed");
  part_ = std::move(work);
  const Instance& done = *part_.find(a.name);
  std::string text = "loaded '" + a.name + "': " + info->path + " (" + info->machine + ", " +
                     std::to_string(info->size) + " bytes, sha256 " + info->sha256 + ")\n";
  if (!a.cmdline.empty()) text += "  cmdline: " + a.cmdline + "\n";
  if (!a.init.empty()) text += "  init:    " + a.init + "\n";
  if (a.uid) text += "  runs as: uid " + std::to_string(*a.uid) + ", gid " + std::to_string(a.gid.value_or(*a.uid)) + "\n";
  return rpc::Response::success({{"instance", mk::tools::instance_to_json(done)}}, text);
}

// ---- channels between instances ---------------------------------------------

mk::Result<std::vector<mk::PeerChannelFds>> Controller::peer_channels_for(const Instance& inst,
                                                                          std::vector<PairKey>& created) {
  // One channel per pair of instances, made when the first of the two
  // starts (it takes side A) and handed to the second when it starts (side
  // B). After a daemon restart adopt_all() has taken the fds back from the
  // running instances. A pair whose channel was closed (one of them stopped
  // while the other ran) stays unconnected until both have restarted.
  std::vector<mk::PeerChannelFds> out;
  for (const Instance& other : part_.instances) {
    if (other.id == inst.id) continue;
    PairKey key{std::min(inst.id, other.id), std::max(inst.id, other.id)};
    auto lit = live_.find(other.name);
    auto pit = pairs_.find(key);
    if (lit != live_.end()) {
      // No entry: the pair was never connected, or one of them restarted
      // while the other ran (a daemon restart recovers every live pair in
      // adopt_all). Either way this pair stays unconnected.
      if (pit == pairs_.end()) continue;
      const uint8_t side = pit->second.side_a == inst.id ? 0 : 1;
      // The side we would take must still be open (the other may have seen
      // us stop: then this pair stays unconnected).
      {
        MK_TRY_ASSIGN(mk::ipi::ChannelFds probe_fds, dup_fds(pit->second.fds));
        auto probe = mk::ipi::Channel::take_over(std::move(probe_fds), side);
        if (!probe) {
          log("channel %s<->%s unusable (%s): %s runs without it", inst.name.c_str(), other.name.c_str(),
              probe.error().to_string().c_str(), inst.name.c_str());
          continue;
        }
        probe->detach();
      }
      out.push_back({other.id, other.name, side, pit->second.fds.memfd.get(),
                     {pit->second.fds.eventfd[0].get(), pit->second.fds.eventfd[1].get()}});
      continue;
    }
    // The other is not running: a fresh region; we take side A.
    MK_TRY_ASSIGN(mk::ipi::Channel ch, mk::ipi::Channel::create(mk::ipi::ChannelConfig{mk::kHostRingSlots, 256 * 1024}));
    PairChannel pc;
    MK_TRY_ASSIGN(pc.fds, ch.export_fds());
    ch.detach();  // the host never speaks on it; side A is the instance's
    pc.side_a = inst.id;
    pairs_[key] = std::move(pc);
    created.push_back(key);
    const PairChannel& held = pairs_[key];
    out.push_back({other.id, other.name, 0, held.fds.memfd.get(), {held.fds.eventfd[0].get(), held.fds.eventfd[1].get()}});
  }
  return out;
}

void Controller::close_pair_channels(uint32_t id) {
  // The image is gone: close its sides on its behalf, which wakes the peers
  // (pending requests fail with ECONNRESET), and forget the pairs.
  for (auto it = pairs_.begin(); it != pairs_.end();) {
    if (it->first.first != id && it->first.second != id) {
      ++it;
      continue;
    }
    const uint32_t side = it->second.side_a == id ? 0 : 1;
    if (auto fds = dup_fds(it->second.fds)) {
      if (auto ch = mk::ipi::Channel::take_over(std::move(*fds), side)) ch->close();
    }
    it = pairs_.erase(it);
  }
}

// ---- start ------------------------------------------------------------------

rpc::Response Controller::start(const rpc::StartAction& a) {
  const Instance* cur = part_.find(a.name);
  if (!cur) return rpc::Response::failure(no_such_instance(part_, a.name));
  if (cur->state == InstanceState::Active || cur->state == InstanceState::Stopping) {
    return rpc::Response::failure(MK_FAIL(EBUSY, "instance is running", "'%s' is %s (pid %d)", a.name.c_str(),
                                          to_string(cur->state), cur->runtime ? cur->runtime->pid : 0));
  }
  if (!cur->image) {
    return rpc::Response::failure(MK_FAIL(EINVAL, "no image loaded", "'%s' has no kernel image", a.name.c_str()),
                                  "mkctl load " + a.name + " --kernel IMAGE (e.g. mk-kernel)");
  }
  const mk::LoadedImage& im = *cur->image;
  if (auto v = mk::verify_image(mk::ImageInfo{im.path, im.sha256, im.size, im.machine, false}); !v) {
    return rpc::Response::failure(v.error(), "mkctl load " + a.name + " --kernel " + im.path + " to record it again");
  }

  std::vector<PairKey> created;
  auto forget_created = [&] {
    for (const auto& k : created) pairs_.erase(k);
  };
  auto peers = peer_channels_for(*cur, created);
  if (!peers) {
    forget_created();
    return rpc::Response::failure(peers.error(), "nothing was started");
  }
  if (peers->size() > limits_.max_channels_per_instance) {
    forget_created();
    return rpc::Response::failure(
        MK_FAIL(EDQUOT, "channel limit reached",
                "'%s' would get %zu IPI channels to other instances, the limit is %u: raise "
                "max_channels_per_instance (mkerneld --max-channels-per-instance N, or in %s/limits.json)",
                a.name.c_str(), peers->size(), limits_.max_channels_per_instance, dir_.c_str()),
        std::string("nothing was started; ") + kLimitsHint);
  }
  mk::BootRequest req;
  req.instance = *cur;
  req.image = {im.path, im.cmdline, im.init, im.uid, im.gid};
  req.root = sysroot_;
  req.peers = std::move(*peers);

  // Console log first, so even a boot that fails leaves its last words.
  ::mkdir((dir_ + "/console").c_str(), 0700);
  // The two files (NAME.log, NAME.log.1) together stay within the limit.
  auto log_file = mk::ConsoleLog::create(console_path(a.name), limits_.max_console_log / 2);
  if (!log_file) {
    forget_created();
    return rpc::Response::failure(log_file.error(), "nothing was started");
  }
  const auto t0 = Clock::now();
  auto run = mk::boot_instance(topo_, req);
  if (!run) {
    forget_created();
    return rpc::Response::failure(run.error(), "nothing was started; the instance stays " +
                                                   std::string(to_string(cur->state)));
  }
  auto ready = (*run)->wait_ready(std::chrono::milliseconds(a.timeout_ms));
  const auto ready_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  bool eof = false;
  (void)log_file->drain((*run)->console_fd(), &eof);
  if (!ready) {
    (*run)->kill();
    (void)log_file->drain((*run)->console_fd(), &eof);
    (void)(*run)->release();
    forget_created();
    (void)log_file->append("[mkerneld] start failed: " + ready.error().to_string() + "\n");
    return rpc::Response::failure(ready.error(), "nothing was started; see mkctl console " + a.name);
  }

  mk::Partition work = part_;
  Instance* w = work.find(a.name);
  w->state = InstanceState::Active;
  w->last_exit.clear();
  std::vector<mk::MovedTask> evicted;
  // The isolation lines join the handle's record, so every later copy of it
  // (a memory or device change, a live update's new image) keeps them.
  (*run)->add_guarantee_lines(isolate(*cur, (*run)->pid(), a, evicted));
  w->runtime = (*run)->record();
  if (auto sv = save_evicted(dir_, a.name, evicted); !sv)
    log("%s: host tasks moved off will not be given back after a daemon restart: %s", a.name.c_str(),
        sv.error().to_string().c_str());
  if (auto s = persist(work); !s) {
    (*run)->kill();
    (void)(*run)->release();
    forget_created();
    unisolate(std::move(evicted));
    return rpc::Response::failure(s.error(), "the instance was stopped again: its state could not be saved");
  }
  part_ = std::move(work);
  Live& live = live_[a.name];
  live.run = std::move(*run);
  live.log = std::move(*log_file);
  live.steer_irqs = a.steer_irqs;
  live.evicted = std::move(evicted);
  if (auto wst = begin_watching(a.name, live); !wst) log("%s: %s", a.name.c_str(), wst.error().to_string().c_str());

  const Instance& done = *part_.find(a.name);
  json::array guarantees;
  for (const auto& g : done.runtime->guarantees) guarantees.emplace_back(g);
  json::object doc{{"instance", mk::tools::instance_to_json(done)},
                   {"pid", done.runtime->pid},
                   {"start_to_ready_ms", ready_ms},
                   {"image_boot_ns", ready->boot_ns},
                   {"cpus_running", ready->cpu_count},
                   {"tenants", ready->tenants},
                   {"guarantees", std::move(guarantees)}};
  char head[256];
  std::snprintf(head, sizeof head, "started '%s': pid %d on cpus %s, ready in %.1f ms (%u cpu loop(s), %u tenant(s))\n",
                a.name.c_str(), done.runtime->pid, done.cpus.to_string().c_str(), ready_ms, ready->cpu_count,
                ready->tenants);
  std::string text = head;
  for (const auto& g : done.runtime->guarantees) text += "  " + g + "\n";
  return rpc::Response::success(std::move(doc), text);
}

mk::Result<void> Controller::begin_watching(const std::string& name, Live& live) {
  MK_TRY(supervisor_.adopt({live.run->pid(), live.run->record().start_time}));
  if (live.ipi_retry) live.ipi_retry->cancel();  // a new endpoint: one watch only
  live.ipi_watch = watch_dup(io_, live.run->endpoint().event_fd());
  live.console_watch = watch_dup(io_, live.run->console_fd());
  if (!live.ipi_watch || !live.console_watch) return mk::errno_error("dup for the event loop");
  watch_ipi(name);
  watch_console(name);
  return mk::ok();
}

void Controller::watch_ipi(const std::string& name) {
  auto it = live_.find(name);
  if (it == live_.end() || !it->second.ipi_watch) return;
  mk::ipi::Endpoint& ep = it->second.run->endpoint();
  bool armed = false;
  for (int i = 0; i < 64 && !(armed = ep.arm()); ++i) (void)ep.poll();  // work already pending
  if (!armed) {
    // Still more after 64 bounded drains: a peer that floods. Nothing would
    // wake an unarmed fd, so come back in 10 ms (at most 64 drains per 10 ms
    // for it; the loop serves everything else meanwhile).
    Live& live = it->second;
    if (!live.ipi_retry) live.ipi_retry = std::make_unique<boost::asio::steady_timer>(io_);
    live.ipi_retry->expires_after(std::chrono::milliseconds(10));
    live.ipi_retry->async_wait([this, name](const boost::system::error_code& ec) {
      if (!ec) watch_ipi(name);
    });
    return;
  }
  it->second.ipi_watch->async_wait(boost::asio::posix::descriptor_base::wait_read,
                                   [this, name](const boost::system::error_code& ec) {
                                     if (ec) return;
                                     auto l = live_.find(name);
                                     if (l == live_.end()) return;
                                     l->second.run->endpoint().disarm();
                                     (void)l->second.run->endpoint().poll();
                                     watch_ipi(name);
                                   });
}

void Controller::drain_console(Live& live) {
  if (!live.log || live.run->console_fd() < 0) return;
  bool eof = false;
  if (auto r = live.log->drain(live.run->console_fd(), &eof); !r)
    log("console of %s: %s", live.run->instance().name.c_str(), r.error().to_string().c_str());
}

void Controller::watch_console(const std::string& name) {
  auto it = live_.find(name);
  if (it == live_.end() || !it->second.console_watch) return;
  it->second.console_watch->async_wait(boost::asio::posix::descriptor_base::wait_read,
                                       [this, name](const boost::system::error_code& ec) {
                                         if (ec) return;
                                         auto l = live_.find(name);
                                         if (l == live_.end() || !l->second.log) return;
                                         bool eof = false;
                                         auto r = l->second.log->drain(l->second.run->console_fd(), &eof);
                                         if (!r || eof) return;  // writers gone: the exit path takes over
                                         watch_console(name);
                                       });
}

// ---- stop, crash, delete ----------------------------------------------------

void Controller::retire(const std::string& name, InstanceState next, const std::string& why) {
  auto it = live_.find(name);
  if (it != live_.end()) {
    Live& live = it->second;
    if (live.ipi_watch) live.ipi_watch->cancel();
    if (live.ipi_retry) live.ipi_retry->cancel();
    if (live.console_watch) live.console_watch->cancel();
    drain_console(live);
    if (live.log) (void)live.log->append("[mkerneld] " + name + " " + why + "\n");
    close_pair_channels(live.run->instance().id);
    if (auto r = live.run->release(); !r) log("%s: release: %s", name.c_str(), r.error().to_string().c_str());
    std::vector<mk::MovedTask> evicted = std::move(live.evicted);
    const bool steered = live.steer_irqs;
    live_.erase(it);  // destroys the endpoint (closes the dead host channel side)
    if (steered || !evicted.empty()) unisolate(std::move(evicted));
    ::unlink(evicted_path(dir_, name).c_str());
  }
  mk::Partition work = part_;
  if (Instance* w = work.find(name)) {
    w->state = next;
    w->runtime.reset();
    w->last_exit = why;
  }
  if (auto s = persist(work); !s) log("cannot save state after %s %s: %s", name.c_str(), why.c_str(), s.error().to_string().c_str());
  part_ = std::move(work);  // memory follows reality even when the disk failed
}

void Controller::on_exit(const ProcessExit& ex) {
  if (updating_) {  // seen in an update's poll: handled once it returned (update_gate.cc)
    for (auto& [name, live] : live_) {
      if (live.run->pid() != ex.who.pid) continue;
      // Its endpoint and console stay readable now: stop watching them
      // (a completion already queued finds no watch to re-arm; only the
      // dups close, retire() does the rest later).
      if (live.ipi_watch) live.ipi_watch->cancel();
      if (live.console_watch) live.console_watch->cancel();
      live.ipi_watch.reset();
      live.console_watch.reset();
    }
    deferred_exits_.push_back(ex);
    return;
  }
  for (auto& [name, live] : live_) {
    if (live.run->pid() != ex.who.pid) continue;
    if (live.stopping) return;  // stop() reaps and retires it
    live.run->mark_exited();    // reaped by the supervisor (or not our child)
    const std::string why = exit_text(ex);
    log("instance %s (pid %d) %s: failed", name.c_str(), ex.who.pid, why.c_str());
    retire(std::string(name), InstanceState::Failed, why);
    return;
  }
}

rpc::Response Controller::stop(const rpc::StopAction& a) {
  const Instance* cur = part_.find(a.name);
  if (!cur) return rpc::Response::failure(no_such_instance(part_, a.name));
  auto it = live_.find(a.name);
  if (it == live_.end()) {
    return rpc::Response::failure(MK_FAIL(EINVAL, "instance is not running", "'%s' is %s", a.name.c_str(),
                                          to_string(cur->state)));
  }
  Live& live = it->second;
  live.stopping = true;
  supervisor_.release(live.run->pid());  // this exit is ours to collect
  const pid_t pid = live.run->pid();
  const auto t0 = Clock::now();
  std::string how;
  uint32_t killed_tenants = 0;
  if (a.force) {
    live.run->kill();
    how = "killed (--force)";
  } else {
    auto r = live.run->shutdown(std::chrono::milliseconds(a.grace_ms), std::chrono::milliseconds(a.timeout_ms));
    if (r) {
      killed_tenants = r->tenants_killed;
      how = "shut down over IPI";
    } else {
      live.run->kill();
      how = "killed after the shutdown request failed (" + r.error().to_string() + ")";
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  retire(a.name, InstanceState::Loaded, "stopped by mkctl stop: " + how);
  char text[512];
  std::snprintf(text, sizeof text, "stopped '%s' (pid %d): %s in %.1f ms; %u tenant(s) needed SIGKILL\n",
                a.name.c_str(), pid, how.c_str(), ms, killed_tenants);
  return rpc::Response::success({{"instance", mk::tools::instance_to_json(*part_.find(a.name))},
                                 {"pid", pid},
                                 {"how", how},
                                 {"stop_ms", ms},
                                 {"tenants_killed", killed_tenants}},
                                text);
}

rpc::Response Controller::remove(const rpc::DeleteAction& a) {
  rpc::Response r = change(rpc::Action{a});
  if (!r.ok) return r;
  if (irq_ && (!irq_->originals().empty() || irq_->default_original()))
    if (auto st = steer_irqs(); !st) log("irq steering after deleting %s: %s", a.name.c_str(), st.error().to_string().c_str());
  // Nothing of the instance stays behind: its console log goes too.
  const std::string path = console_path(a.name);
  ::unlink(path.c_str());
  ::unlink((path + ".1").c_str());
  ::unlink(last_update_path(dir_, a.name).c_str());
  update_status_.erase(a.name);
  return r;
}

// ---- isolation extras -----------------------------------------------------------

mk::Result<void> Controller::steer_irqs(const mk::CpuSet& plus) {
  if (!irq_) irq_ = std::make_unique<mk::IrqSteering>(sysroot_, dir_ + "/irq-affinity.json");
  mk::CpuSet reserved = plus;
  for (const auto& [name, live] : live_)
    if (const Instance* i = part_.find(name); live.steer_irqs && i) reserved |= i->cpus;
  mk::CpuSet host = topo_.all_pus() - reserved;
  return irq_->apply(reserved, host);
}

std::vector<std::string> Controller::isolate(const Instance& inst, pid_t pid, const rpc::StartAction& a,
                                             std::vector<mk::MovedTask>& evicted) {
  std::vector<std::string> lines;
  if (a.steer_irqs) {
    if (auto st = steer_irqs(inst.cpus); st) {
      lines.push_back(mk::to_line(irq_->report(inst.cpus).guarantee()));
    } else {
      lines.push_back(mk::to_line({"irq steering", false, "not steered (" + st.error().to_string() + ")"}));
    }
  } else {
    lines.push_back(mk::to_line({"irq steering", false, "not steered (not requested: mkctl start --steer-irqs)"}));
  }
  if (a.evict_host_tasks) {
    mk::EvictOptions o;
    o.instance_cpus = inst.cpus;
    o.reserved = inst.cpus;
    for (const auto& [name, live] : live_) {
      if (const Instance* i = part_.find(name)) o.reserved |= i->cpus;
      o.instance_pids.push_back(live.run->pid());
    }
    o.instance_pids.push_back(pid);
    o.instance_pids.push_back(::getpid());  // mkerneld stays where apply_host_affinity put it
    if (auto r = mk::evict_host_tasks(sysroot_, o); r) {
      lines.push_back(mk::to_line(r->guarantee()));
      evicted = std::move(r->moved);
    } else {
      lines.push_back(mk::to_line({"host tasks", false, "not moved off (" + r.error().to_string() + ")"}));
    }
  } else {
    lines.push_back(mk::to_line(mk::host_tasks_not_requested()));
  }
  if (a.exclusive_memory) {
    auto layout = mk::detect_cgroups(sysroot_);
    auto cg = layout ? mk::InstanceCgroup::open_existing(sysroot_, *layout, inst.name)
                     : mk::Result<mk::InstanceCgroup>(layout.error());
    if (cg) {
      lines.push_back(mk::to_line(cg->make_mems_exclusive()));
    } else {
      lines.push_back(mk::to_line({"memory nodes", false, "not exclusive (" + cg.error().to_string() + ")"}));
    }
  } else {
    lines.push_back(mk::to_line(
        {"memory nodes", false, "not exclusive (not requested: mkctl start --exclusive-memory)"}));
  }
  return lines;
}

void Controller::unisolate(std::vector<mk::MovedTask> evicted) {
  if (!evicted.empty()) {
    mk::CpuSet reserved;
    for (const auto& [name, live] : live_)
      if (const Instance* i = part_.find(name)) reserved |= i->cpus;
    auto r = mk::restore_host_tasks(sysroot_, evicted, reserved);
    log("host tasks given back: %zu restored, %zu left (gone or re-pinned since)", r.restored, r.skipped);
  }
  if (auto st = steer_irqs(); !st) log("irq steering: %s", st.error().to_string().c_str());
}

// ---- re-adoption --------------------------------------------------------------

void Controller::adopt_all() {
  finish_retired_staged_updates();  // before anything is adopted from the state file
  mk::Partition work = part_;
  bool changed = false;
  for (Instance& inst : work.instances) {
    if (inst.state != InstanceState::Active && inst.state != InstanceState::Stopping) continue;
    Instance from = inst;  // the state file's, less the regions an interrupted change released
    trim_for_resource_journal(from);
    auto run = inst.runtime ? mk::adopt_instance(from, sysroot_)
                            : mk::Result<std::unique_ptr<mk::RunningInstance>>(
                                  MK_FAIL(EINVAL, "no runtime record", "%s", inst.name.c_str()));
    if (!run) {
      const bool gone = run.error().code() == ESRCH;
      inst.last_exit = gone ? "exited while mkerneld was down"
                            : "could not be re-adopted: " + run.error().to_string();
      log("instance %s (pid %d): %s", inst.name.c_str(), inst.runtime ? inst.runtime->pid : 0, inst.last_exit.c_str());
      // Leftovers of a dead instance: its cgroup, the host tasks it moved off.
      if (gone) {
        std::string why;
        auto evicted = load_evicted(dir_, inst.name, why);
        if (!evicted.empty()) {
          auto r = mk::restore_host_tasks(sysroot_, evicted, mk::CpuSet{});
          log("%s: host tasks given back: %zu restored, %zu left", inst.name.c_str(), r.restored, r.skipped);
        }
        if (!why.empty()) {
          set_aside(evicted_path(dir_, inst.name), why,
                    "host tasks " + inst.name + " moved off its CPUs were not given back: check their affinity "
                    "(taskset -p PID)");
        } else {
          ::unlink(evicted_path(dir_, inst.name).c_str());
        }
        if (auto layout = mk::detect_cgroups(sysroot_)) {
          if (auto cg = mk::InstanceCgroup::open_existing(sysroot_, *layout, inst.name)) (void)cg->destroy();
        }
      }
      inst.state = InstanceState::Failed;
      inst.runtime.reset();
      changed = true;
      continue;
    }
    ::mkdir((dir_ + "/console").c_str(), 0700);
    Live& live = live_[inst.name];
    live.run = std::move(*run);
    if (auto lf = mk::ConsoleLog::create(console_path(inst.name), limits_.max_console_log / 2)) {
      live.log = std::move(*lf);
    } else {
      log("%s: its console is not logged: %s", inst.name.c_str(), lf.error().to_string().c_str());
    }
    if (inst.state == InstanceState::Stopping) {
      inst.state = InstanceState::Active;  // the stop died with the old daemon
      changed = true;
    }
    if (auto w = begin_watching(inst.name, live); !w) log("%s: %s", inst.name.c_str(), w.error().to_string().c_str());
    if (live.log) (void)live.log->append("[mkerneld] re-adopted by mkerneld pid " + std::to_string(::getpid()) + "\n");
    std::string why;
    live.evicted = load_evicted(dir_, inst.name, why);
    if (!why.empty())
      set_aside(evicted_path(dir_, inst.name), why,
                "host tasks " + inst.name + " moved off its CPUs will not be given back when it stops: check "
                "their affinity (taskset -p PID)");
    log("re-adopted %s (pid %d)", inst.name.c_str(), live.run->pid());
  }
  if (changed) {
    if (auto s = persist(work); !s) log("cannot save state after re-adoption: %s", s.error().to_string().c_str());
  }
  part_ = std::move(work);
  // The channels between running instances: take their fds back too, so a
  // later crash can close the dead one's side for its peers.
  for (auto& [name, live] : live_) {
    const mk::RuntimeRecord& rec = live.run->record();
    const uint32_t id = live.run->instance().id;
    for (const auto& p : rec.peers) {
      PairKey key{std::min(id, p.peer_id), std::max(id, p.peer_id)};
      if (pairs_.count(key)) continue;
      PairChannel pc;
      auto fds = mk::fetch_channel_fds(live.run->pidfd(), p.fd);
      if (!fds) {
        log("channel of %s to peer %u: cannot take it back: %s", name.c_str(), p.peer_id,
            fds.error().to_string().c_str());
        continue;
      }
      // A peer that stopped (or was deleted) since this image started: the
      // record still lists the channel, but nobody is at its other end.
      // Closed on the peer's behalf (as when it stopped) and not kept: a
      // live update must not hand the successor a channel to nobody.
      bool peer_live = false;
      for (const auto& [other, olive] : live_) peer_live = peer_live || olive.run->instance().id == p.peer_id;
      if (!peer_live) {
        if (auto ch = mk::ipi::Channel::take_over(std::move(*fds), p.side == 0 ? 1 : 0)) ch->close();
        log("channel of %s to peer %u: the peer no longer runs; closed on its behalf", name.c_str(), p.peer_id);
        continue;
      }
      pc.fds = std::move(*fds);
      pc.side_a = p.side == 0 ? id : p.peer_id;
      pairs_.emplace(key, std::move(pc));
    }
  }
  // IRQs steered by the previous daemon: kept off the CPUs of the instances
  // that asked (those it had reserved and that still run), the rest back.
  irq_ = std::make_unique<mk::IrqSteering>(sysroot_, dir_ + "/irq-affinity.json");
  if (auto l = irq_->load(); !l) {
    // Unreadable originals: kept aside (the next steering would overwrite
    // them), the IRQs stay where they are.
    if (l.error().code() == EBADMSG || l.error().code() == EINVAL) {
      set_aside(dir_ + "/irq-affinity.json", l.error().to_string(),
                "the IRQs it steered keep their current affinity: check /proc/irq/*/smp_affinity_list");
      irq_ = std::make_unique<mk::IrqSteering>(sysroot_, dir_ + "/irq-affinity.json");
    } else {
      log("irq steering: %s", l.error().to_string().c_str());
    }
  } else if (!irq_->originals().empty() || irq_->default_original()) {
    const mk::CpuSet saved = irq_->reserved();
    for (auto& [name, live] : live_)
      if (const Instance* i = part_.find(name); i && i->cpus.intersects(saved)) live.steer_irqs = true;
    if (auto st = steer_irqs(); !st) log("irq steering after restart: %s", st.error().to_string().c_str());
    else log("irq steering after restart: cpus %s reserved", irq_->reserved().to_string().c_str());
  }
  recover_updates();  // a daemon killed mid-update: roll those back
  recover_cpu_moves();  // a daemon killed mid-move: every CPU back where the state file says
  recover_resource_moves();  // and every region and device
}

}  // namespace mkerneld
