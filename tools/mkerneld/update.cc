// Live update in the daemon (`mkctl update`, DESIGN.md §5): the request, its
// progress frames, and the journal that makes a daemon killed mid-update
// roll the update back on restart (see controller.h).
//
// The journal <dir>/update/NAME.json is written once the successor is READY
// and parked (before the old image is asked to prepare) and removed when the
// update ended either way and the state file says which image runs. A
// restarted daemon that finds one re-adopts the old image as usual (the
// state file still names it), then undoes the update: the successor is
// killed (pid + start time, never a recycled pid) and the old image told to
// cancel, which unfreezes it with everything it had. Never half.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "controller.h"
#include "json_codec.h"
#include "mkernel/image.h"
#include "mkernel/live_update.h"
#include "mkernel/process_identity.h"
#include "server.h"
#include "state_store.h"

namespace mkerneld {

namespace rpc = mk::tools::rpc;
namespace json = boost::json;
using mk::Instance;
using mk::InstanceState;

std::string Controller::journal_path(const std::string& name) const { return dir_ + "/update/" + name + ".json"; }

void Controller::stop_watching(Live& live) {
  if (live.ipi_watch) live.ipi_watch->cancel();
  if (live.console_watch) live.console_watch->cancel();
  live.ipi_watch.reset();
  live.console_watch.reset();
  if (live.run) supervisor_.release(live.run->pid());
}

rpc::Response Controller::update(const rpc::UpdateAction& a, const Progress& progress) {
  rpc::Response r = run_update(a, progress);
  updating_.reset();        // (run_update did, on every path past live_update)
  handle_deferred_exits();  // exits of other instances seen while it ran
  return r;
}

rpc::Response Controller::run_update(const rpc::UpdateAction& a, const Progress& progress) {
  const Instance* cur = part_.find(a.name);
  if (!cur) return rpc::Response::failure(no_such_instance(part_, a.name));
  auto it = live_.find(a.name);
  if (it == live_.end() || !cur->image) {
    return rpc::Response::failure(MK_FAIL(EINVAL, "instance is not running", "'%s' is %s", a.name.c_str(),
                                          to_string(cur->state)),
                                  "a live update replaces a running image; start it (mkctl start " + a.name + ")");
  }
  // The new image: --kernel, or the loaded path read again (a rebuilt file
  // is the new kernel); validated and hashed before anything is touched.
  const mk::LoadedImage& was = *cur->image;
  auto info = mk::inspect_image(a.kernel.empty() ? was.path : a.kernel);
  if (!info) return rpc::Response::failure(info.error(), "nothing was changed; the instance runs as before");
  const mk::LoadedImage next{info->path, info->sha256,  info->size, info->machine,
                             a.cmdline.value_or(was.cmdline), was.init, was.uid, was.gid};
  // The state file must take the new image's record once the update is
  // done (else a restarted daemon would look for the old pid): a disk that
  // is full or read-only refuses the update before anything is touched.
  if (auto s = persist(part_); !s)
    return rpc::Response::failure(s.error(), "nothing was changed; the instance runs as before");
  if (a.staged) return run_staged(a, progress, next);

  const uint32_t id = cur->id;
  Live& live = it->second;
  const pid_t old_pid = live.run->pid();
  const mk::RuntimeRecord old_record = live.run->record();

  mk::UpdateRequest req;
  req.image = {next.path, next.cmdline, next.init, next.uid, next.gid};
  req.peers = peer_fds_of(id);
  req.timeout = std::chrono::milliseconds(a.timeout_ms);
  req.update_id = next_update_id_++;
  req.corrupt_package = a.fault == "corrupt-package";
  req.on_phase = [&](std::string_view phase, double ms) {
    if (progress) progress(json::object{{"instance", a.name}, {"phase", phase}, {"ms", ms}});
  };
  req.on_successor = [&](const mk::RuntimeRecord& successor) {
    ::mkdir((dir_ + "/update").c_str(), 0700);
    json::object j{{"instance", a.name},
                   {"update_id", req.update_id},
                   {"kernel", next.path},
                   {"old", mk::tools::runtime_to_json(old_record)},
                   {"successor", mk::tools::runtime_to_json(successor)}};
    if (auto w = mk::tools::write_file_atomic(journal_path(a.name), json::serialize(j) + "\n"); !w)
      log("update %u of %s: cannot write the journal: %s", req.update_id, a.name.c_str(), w.error().to_string().c_str());
  };
  req.after_freeze = [&] {
    if (a.fault != "host-exit-after-freeze") return;
    log("update %u of %s: fault injection: mkerneld kills itself between freeze and ready", req.update_id,
        a.name.c_str());
    ::kill(::getpid(), SIGKILL);
  };

  // The state machine as `mkctl show` reports it. on_state runs inside the
  // blackout: an enum store into an entry that exists already, nothing more
  // (remove() of this instance is refused while it runs, so `status` stays).
  UpdateStatus& status = update_status_[a.name];
  status.state = UpdateState::Normal;
  // A rollback has no blackout of the library's (freeze -> restore); the
  // old image was frozen from the freeze until the rollback ended, which
  // the state's timestamps give (a clock read: no I/O).
  std::optional<std::chrono::steady_clock::time_point> frozen_at, thawed_at;
  req.on_state = [&](std::string_view st) {
    auto s = parse_update_state(st);
    if (!s) return;
    status.state = *s;
    if (*s == UpdateState::Frozen) frozen_at = std::chrono::steady_clock::now();
    else if (frozen_at && !thawed_at && *s != UpdateState::Prepared) thawed_at = std::chrono::steady_clock::now();
  };
  req.on_wait = [this] { serve_while_updating(); };

  // The old image's exit (or exec into the reaper) is the update's business
  // now, not a crash; the event loop does not serve its endpoint meanwhile.
  live.stopping = true;
  stop_watching(live);
  drain_console(live);
  log("update %u of %s: %s -> %s", req.update_id, a.name.c_str(), was.path.c_str(), next.path.c_str());
  updating_ = a.name;
  updating_id_ = req.update_id;
  mk::UpdateOutcome out = mk::live_update(live.run, topo_, sysroot_, req);
  updating_.reset();
  live.stopping = false;
  ::unlink(journal_path(a.name).c_str());
  {
    LastUpdate last{utc_now_iso8601(), req.update_id, next.path, "updated", out.blackout_ms, "", ""};
    if (!out.updated) {
      last.outcome = live.run ? "rolled back" : "failed";
      last.cause = out.cause ? out.cause->to_string() : std::string("no cause recorded");
      last.rollback = out.rollback;
      if (!last.blackout_ms && frozen_at && thawed_at)
        last.blackout_ms = std::chrono::duration<double, std::milli>(*thawed_at - *frozen_at).count();
    }
    record_last_update(a.name, std::move(last));
  }

  if (!live.run) {
    const std::string why = "live update failed and the instance could not be kept running: " +
                            (out.cause ? out.cause->to_string() : std::string("unknown"));
    log("update %u of %s: %s", req.update_id, a.name.c_str(), why.c_str());
    live_.erase(it);
    retire(a.name, InstanceState::Failed, why);
    return rpc::Response::failure(MK_FAIL(EIO, "live update failed", "%s", why.c_str()),
                                  "mkctl console " + a.name + "; mkctl start " + a.name + " boots it again");
  }
  if (auto w = begin_watching(a.name, live); !w) log("%s: %s", a.name.c_str(), w.error().to_string().c_str());

  mk::Partition work = part_;
  Instance* w = work.find(a.name);
  w->runtime = live.run->record();
  if (out.updated) w->image = next;
  if (auto s = persist(work); !s) log("update %u of %s: cannot save state: %s", req.update_id, a.name.c_str(),
                                      s.error().to_string().c_str());
  part_ = std::move(work);
  if (live.log) {
    (void)live.log->append("[mkerneld] update " + std::to_string(req.update_id) + ": " +
                           (out.updated ? "now running " + next.path + " (pid " + std::to_string(live.run->pid()) + ")"
                                        : "rolled back: " + out.rollback) +
                           "\n");
  }

  json::array phases;
  for (const auto& p : out.phases) {
    json::object o{{"phase", p.phase}, {"ms", p.ms}};
    if (p.image_ms) o["image_ms"] = *p.image_ms;
    phases.push_back(std::move(o));
  }
  json::object doc{{"instance", mk::tools::instance_to_json(*part_.find(a.name))},
                   {"update_id", req.update_id},
                   {"updated", out.updated},
                   {"old_pid", old_pid},
                   {"pid", live.run->pid()},
                   {"phases", std::move(phases)},
                   {"fds", out.fds},
                   {"precopied_fds", out.precopied_fds},
                   {"blob_bytes", out.blob_bytes},
                   {"preserved_bytes", out.preserved_bytes}};
  if (out.blackout_ms) doc["blackout_ms"] = *out.blackout_ms;
  if (!out.updated) {
    const mk::Error cause = out.cause ? *out.cause : MK_FAIL(EIO, "update failed", "no cause recorded");
    log("update %u of %s rolled back: %s; %s", req.update_id, a.name.c_str(), cause.to_string().c_str(),
        out.rollback.c_str());
    return rpc::Response::failure(
        mk::Error(cause.code(), "live update rolled back").set_detail("%s; %s", cause.to_string().c_str(),
                                                                     out.rollback.c_str()),
        "the instance runs its previous image (pid " + std::to_string(live.run->pid()) + "); see mkctl console " +
            a.name);
  }
  char text[512];
  std::snprintf(text, sizeof text,
                "updated '%s': pid %d -> %d, blackout %.3f ms (%u fd(s), %u of them before the freeze, %.1f MiB of "
                "memory preserved, blob %llu bytes)\n",
                a.name.c_str(), old_pid, live.run->pid(), out.blackout_ms.value_or(0), out.fds, out.precopied_fds,
                static_cast<double>(out.preserved_bytes) / (1 << 20),
                static_cast<unsigned long long>(out.blob_bytes));
  log("update %u of %s: done, blackout %.3f ms", req.update_id, a.name.c_str(), out.blackout_ms.value_or(0));
  return rpc::Response::success(std::move(doc), text);
}

void Controller::recover_updates() {
  const std::string dir = dir_ + "/update";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> files;
  while (const dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0) files.push_back(n);
  }
  ::closedir(d);
  for (const std::string& f : files) {
    const std::string path = dir + "/" + f;
    const std::string name = f.substr(0, f.size() - 5);
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    boost::system::error_code ec;
    json::value v = json::parse(ss.str(), ec);
    if (!ec && v.is_object() && v.get_object().contains("staged")) {
      std::string problem;
      if (recover_staged(name, v.get_object(), problem)) {
        ::unlink(path.c_str());
      } else {
        set_aside(path, problem,
                  "a staged update of " + name + " was interrupted and left alone: check " + name +
                      "'s CPUs (mkctl show) and that no new image of it runs unowned (ps)");
      }
      continue;
    }
    const json::value* succ = (!ec && v.is_object()) ? v.get_object().if_contains("successor") : nullptr;
    auto rec = succ ? mk::tools::runtime_from_json(*succ)
                    : mk::Result<mk::RuntimeRecord>(MK_FAIL(EBADMSG, "corrupt update journal", "%s", path.c_str()));
    if (!rec) {
      set_aside(path,
                ec ? "not JSON: " + ec.message()
                   : succ ? rec.error().to_string() : std::string("'successor': missing or not an object"),
                "an update of " + name + " was interrupted: check that " + name +
                    " runs (mkctl show) and that no successor image of it runs unowned (ps)");
      continue;
    }
    // What show reports as the last update (kernel: journals of older
    // daemons do not name it).
    LastUpdate last{utc_now_iso8601(), 0, "", "rolled back", std::nullopt,
                    "mkerneld was restarted during the update (it was killed or crashed)", ""};
    const json::object& jo = v.get_object();
    if (const json::value* id = jo.if_contains("update_id"); id && id->is_int64() && id->get_int64() >= 0 &&
                                                              id->get_int64() <= UINT32_MAX)
      last.update_id = static_cast<uint32_t>(id->get_int64());
    if (const json::value* k = jo.if_contains("kernel"); k && k->is_string()) last.kernel = std::string(k->get_string());
    auto it = live_.find(name);
    if (it != live_.end()) {
      // The old image was re-adopted: undo the update, it resumes.
      auto r = mk::abort_update(*it->second.run, *rec, std::chrono::seconds(5));
      last.rollback = "by the restarted mkerneld: successor pid " + std::to_string(rec->pid) + " killed, old image " +
                      (r ? "unfrozen" : "did not answer the cancel: " + r.error().to_string());
      log("update of %s interrupted by a mkerneld restart: rolled back (successor pid %d killed, old image pid %d %s)",
          name.c_str(), rec->pid, it->second.run->pid(),
          r ? "unfrozen" : ("did not answer the cancel: " + r.error().to_string()).c_str());
      if (it->second.log)
        (void)it->second.log->append("[mkerneld] update interrupted by a mkerneld restart: rolled back\n");
    } else {
      // The old image is gone too: the successor must not run unowned.
      if (auto pidfd = mk::open_identity(sysroot_, {rec->pid, rec->start_time})) {
        (void)::syscall(SYS_pidfd_send_signal, pidfd->get(), SIGKILL, nullptr, 0);
      }
      log("update of %s interrupted by a mkerneld restart and its old image is gone: successor pid %d killed",
          name.c_str(), rec->pid);
      last.outcome = "failed";
      last.rollback = "the old image was gone too: successor pid " + std::to_string(rec->pid) + " killed";
    }
    if (part_.find(name)) record_last_update(name, std::move(last));
    ::unlink(path.c_str());
  }
}

}  // namespace mkerneld
