// Memory and device moves in the daemon (`mkctl update NAME --memory LIST |
// --device SPEC...`, DESIGN.md §5 "resource hot-move"): the request, the
// partition it changes, and the journal that makes a daemon killed
// mid-change put the instance back as the state file says on restart.
//
// Role in the flow: validate against the partition (mk::plan_memory /
// check_device_change), write the journal <dir>/resource-move.json (the
// instance, how many regions and which devices the change touches), run
// mk::resize_memory / change_devices (the consent handshake with the image,
// cgroup, undo on failure), then persist the partition with the instance's
// new lists and runtime record (the fd numbers of its regions in the
// image), and remove the journal. A daemon that dies in between leaves the
// journal: its restart drops the regions the image released from the record
// it adopts from (trim_for_resource_journal, before adopt_instance), then
// makes the image match the state file (recover_resource_moves,
// mk::reconcile_resources): the change is either fully done (persisted) or
// not at all.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "controller.h"
#include "json_codec.h"
#include "mk/units.h"
#include "mkernel/resource_move.h"
#include "state_store.h"

namespace mkerneld {

namespace rpc = mk::tools::rpc;
namespace json = boost::json;
using mk::Instance;
using mk::InstanceState;

namespace {

json::array strings_json(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.push_back(json::string(s));
  return a;
}

json::array memory_json(const std::vector<mk::MemoryRegion>& m) {
  json::array a;
  for (const auto& r : m) a.push_back(json::object{{"bytes", r.bytes}, {"node", r.node}});
  return a;
}

json::array devices_json(const std::vector<mk::DeviceSpec>& d) {
  json::array a;
  for (const auto& s : d) a.push_back(json::string(s.to_string()));
  return a;
}

std::string memory_text(const std::vector<mk::MemoryRegion>& m) {
  std::string s;
  for (const auto& r : m) s += (s.empty() ? "" : ",") + mk::format_size(r.bytes) + "@" + std::to_string(r.node);
  return s;
}

std::string devices_text(const std::vector<mk::DeviceSpec>& d) {
  std::string s;
  for (const auto& x : d) s += (s.empty() ? "" : " ") + x.to_string();
  return s.empty() ? "none" : s;
}

// Devices in one list and not the other (the ones a change touches).
std::vector<mk::DeviceSpec> touched(const std::vector<mk::DeviceSpec>& a, const std::vector<mk::DeviceSpec>& b) {
  std::vector<mk::DeviceSpec> out;
  auto in = [](const std::vector<mk::DeviceSpec>& l, const mk::DeviceSpec& d) {
    for (const auto& x : l)
      if (x.key() == d.key()) return true;
    return false;
  };
  for (const auto& d : a)
    if (!in(b, d)) out.push_back(d);
  for (const auto& d : b)
    if (!in(a, d) && !in(out, d)) out.push_back(d);
  return out;
}

}  // namespace

std::string Controller::resource_journal_path() const { return dir_ + "/resource-move.json"; }

rpc::Response Controller::resources(const rpc::ResourcesAction& a) {
  const Instance* found = part_.find(a.name);
  if (!found) {
    return rpc::Response::failure(MK_FAIL(ENOENT, "no such instance", "no instance '%s' (mkctl show lists them)",
                                          a.name.c_str()),
                                  "nothing was changed");
  }
  const Instance inst = *found;
  std::vector<mk::MemoryRegion> want_memory;
  if (a.memory) {
    auto p = mk::plan_memory(topo_, part_, a.name, *a.memory);
    if (!p) return rpc::Response::failure(p.error(), "nothing was changed");
    want_memory = std::move(*p);
  } else if (auto c = mk::check_device_change(part_, a.name, *a.devices); !c) {
    return rpc::Response::failure(c.error(), "nothing was changed");
  }
  mk::RunningInstance* run = nullptr;
  if (auto it = live_.find(a.name); it != live_.end()) {
    if (it->second.stopping)
      return rpc::Response::failure(MK_FAIL(EBUSY, "instance is stopping", "'%s': wait until `mkctl stop` ends",
                                            a.name.c_str()),
                                    "nothing was changed");
    run = it->second.run.get();
  } else if (inst.state == InstanceState::Active || inst.state == InstanceState::Stopping) {
    return rpc::Response::failure(MK_FAIL(EBUSY, "instance is changing state", "'%s' is %s and not tracked as running",
                                          a.name.c_str(), to_string(inst.state)),
                                  "nothing was changed");
  }

  const uint32_t op_id = next_update_id_++;
  mk::ResourceChangeOptions opts = cpu_options(a.timeout_ms, a.fault, op_id);
  if (run) {
    json::object j{{"op_id", op_id},
                   {"name", a.name},
                   {"regions_touched", a.memory ? std::max(inst.memory.size(), want_memory.size()) : 0},
                   {"devices_touched", devices_json(a.devices ? touched(inst.devices, *a.devices)
                                                              : std::vector<mk::DeviceSpec>{})}};
    // Without its journal a restarted daemon could not undo a change it
    // died in: refused before anything is touched.
    if (auto w = mk::tools::write_file_atomic(resource_journal_path(), json::serialize(j) + "\n"); !w) {
      log("resource change %u: cannot write the journal: %s", op_id, w.error().to_string().c_str());
      return rpc::Response::failure(w.error(), "nothing was changed");
    }
  }
  const char* what = a.memory ? "memory" : "devices";
  log("resource change %u: %s of %s", op_id, what, a.name.c_str());
  auto r = a.memory ? mk::resize_memory(run, a.name, inst.memory, want_memory, opts)
                    : mk::change_devices(run, a.name, inst.devices, *a.devices, opts);
  if (!r) {
    ::unlink(resource_journal_path().c_str());
    log("resource change %u failed: %s", op_id, r.error().to_string().c_str());
    return rpc::Response::failure(r.error(), "'" + a.name + "' keeps its " + what + " (mkctl show)");
  }

  // Persist: the partition's lists, and the record (the image's region fds).
  mk::Partition work = part_;
  Instance& w = *work.find(a.name);
  if (a.memory) {
    w.memory = r->memory;
  } else {
    w.devices = r->devices;
  }
  if (run) w.runtime = run->record();
  if (auto s = persist(work); !s) {
    mk::ResourceChangeOptions back = cpu_options(a.timeout_ms, "", op_id);
    auto u = a.memory ? mk::resize_memory(run, a.name, r->memory, inst.memory, back)
                      : mk::change_devices(run, a.name, r->devices, inst.devices, back);
    if (!u) log("resource change %u: the state could not be saved and the undo failed: %s", op_id,
                u.error().to_string().c_str());
    ::unlink(resource_journal_path().c_str());
    return rpc::Response::failure(s.error(), u ? "the change was undone" : "the undo failed too (see the log)");
  }
  part_ = std::move(work);
  ::unlink(resource_journal_path().c_str());

  json::array steps;
  for (const auto& [name, ms] : r->steps) steps.push_back(json::object{{"step", name}, {"ms", ms}});
  json::object doc{{"name", a.name},       {"running", run != nullptr},      {"added", strings_json(r->added)},
                   {"removed", strings_json(r->removed)}, {"steps", std::move(steps)}, {"ms", r->ms},
                   {"warnings", strings_json(r->warnings)}};
  std::string before, after;
  if (a.memory) {
    doc["memory_before"] = memory_json(inst.memory);
    doc["memory"] = memory_json(r->memory);
    before = memory_text(inst.memory);
    after = memory_text(r->memory);
  } else {
    doc["devices_before"] = devices_json(inst.devices);
    doc["devices"] = devices_json(r->devices);
    before = devices_text(inst.devices);
    after = devices_text(r->devices);
  }
  std::string text = "'" + a.name + "': " + what + " " + before + " -> " + after;
  char tail[64];
  std::snprintf(tail, sizeof tail, " in %.3f ms%s\n", r->ms, run ? "" : " (not running: the state file only)");
  text += tail;
  for (const auto& s : r->added) text += "  + " + s + "\n";
  for (const auto& s : r->removed) text += "  - " + s + "\n";
  for (const auto& [name, ms] : r->steps) {
    char line[256];
    std::snprintf(line, sizeof line, "  %-40s %9.3f ms\n", name.c_str(), ms);
    text += line;
  }
  for (const auto& s : r->warnings) text += "  warning: " + s + "\n";
  return rpc::Response::success(std::move(doc), std::move(text));
}

namespace {

// The journal, or nullopt when there is none; a corrupt one is moved aside.
std::optional<json::object> read_journal(const std::string& path,
                                         const std::function<void(const std::string&)>& warn) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  json::value v = json::parse(ss.str(), ec);
  if (ec || !v.is_object() || !v.get_object().if_contains("name") || !v.get_object().at("name").is_string()) {
    warn(ec ? "not JSON: " + ec.message() : !v.is_object() ? "not a JSON object" : "'name': expected a string");
    return std::nullopt;
  }
  return v.get_object();
}

}  // namespace

void Controller::trim_for_resource_journal(Instance& inst) {
  const std::string path = resource_journal_path();
  // Read again by recover_resource_moves(), which deals with a corrupt one.
  auto j = read_journal(path, [](const std::string&) {});
  if (!j || j->at("name").get_string() != inst.name) return;
  auto n = mk::trim_released_regions(inst, sysroot_);
  if (!n) {
    log("%s: cannot check its regions after an interrupted change: %s", inst.name.c_str(), n.error().to_string().c_str());
  } else if (*n > 0) {
    log("%s: %zu region(s) its image released during an interrupted change", inst.name.c_str(), *n);
  }
}

void Controller::recover_resource_moves() {
  const std::string path = resource_journal_path();
  auto j = read_journal(path, [&](const std::string& why) {
    set_aside(path, why,
              "a memory or device change was interrupted: check the instance's memory and devices (mkctl show) and "
              "set them with `mkctl update NAME --memory/--device`");
  });
  if (!j) return;
  const std::string name(j->at("name").get_string());
  std::size_t regions = 0;
  if (const auto* r = j->if_contains("regions_touched"); r && (r->is_uint64() || r->is_int64()))
    regions = static_cast<std::size_t>(r->is_uint64() ? r->get_uint64() : std::max<int64_t>(0, r->get_int64()));
  std::vector<mk::DeviceSpec> devs;
  if (const auto* d = j->if_contains("devices_touched"); d && d->is_array()) {
    for (const auto& e : d->get_array()) {
      if (!e.is_string()) continue;
      if (auto s = mk::DeviceSpec::parse(std::string(e.get_string()))) devs.push_back(*s);
    }
  }
  Instance* inst = part_.find(name);
  auto it = live_.find(name);
  if (inst && it != live_.end()) {
    mk::RunningInstance& run = *it->second.run;
    auto r = mk::reconcile_resources(run, inst->memory, regions, inst->devices, devs, cpu_options(5000, "", 0));
    const std::string msg = "memory or device change interrupted by a mkerneld restart: " + name + " put back to " +
                            memory_text(inst->memory) + ", devices " + devices_text(inst->devices) +
                            (r ? "" : " (reconcile failed: " + r.error().to_string() + ")");
    log("%s", msg.c_str());
    if (it->second.log) (void)it->second.log->append("[mkerneld] " + msg + "\n");
    if (run.instance().memory != inst->memory) {
      // Some region could not be given back: the state file follows what runs.
      inst->memory = run.instance().memory;
    }
    inst->runtime = run.record();
    if (auto s = persist(part_); !s) log("cannot save state after the reconcile: %s", s.error().to_string().c_str());
  }
  ::unlink(path.c_str());
}

}  // namespace mkerneld
