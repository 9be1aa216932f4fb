// JSON encoding/decoding of Pool, Instance and Plan (see json_codec.h).
#include "json_codec.h"

#include <string>

namespace mk::tools {

namespace json = boost::json;

json::array warnings_to_json(const std::vector<std::string>& w) {
  json::array a;
  for (const auto& s : w) a.emplace_back(s);
  return a;
}

json::object to_json(const Pool& p) {
  json::array mem, devs;
  for (const auto& r : p.memory) mem.push_back(json::object{{"node", r.node}, {"bytes", r.bytes}});
  for (const auto& d : p.devices) devs.emplace_back(d);
  return {{"cpus", p.cpus.to_string()}, {"memory", std::move(mem)}, {"memory_bytes", p.total_memory()},
          {"devices", std::move(devs)}};
}

json::object to_json(const Instance& i) {
  json::array mem, devs;
  for (const auto& r : i.memory) mem.push_back(json::object{{"node", r.node}, {"bytes", r.bytes}});
  for (const auto& d : i.devices) devs.emplace_back(d.to_string());
  return {{"id", i.id},
          {"name", i.name},
          {"state", to_string(i.state)},
          {"cpus", i.cpus.to_string()},
          {"cpu_count", i.cpus.count()},
          {"memory", std::move(mem)},
          {"memory_bytes", i.memory_bytes()},
          {"devices", std::move(devs)}};
}

json::object instance_to_json(const Instance& i) {
  json::object o = to_json(i);
  if (i.image) {
    const LoadedImage& im = *i.image;
    json::object io{{"path", im.path},       {"sha256", im.sha256}, {"size", im.size},
                    {"machine", im.machine}, {"cmdline", im.cmdline}, {"init", im.init}};
    if (im.uid) io["uid"] = *im.uid;
    if (im.gid) io["gid"] = *im.gid;
    o["image"] = std::move(io);
  }
  if (i.runtime) o["runtime"] = runtime_to_json(*i.runtime);
  if (!i.last_exit.empty()) o["last_exit"] = i.last_exit;
  return o;
}

json::object runtime_to_json(const RuntimeRecord& r) {
  json::array regions, peers, guarantees;
  for (int32_t fd : r.region_fds) regions.emplace_back(fd);
  for (const auto& p : r.peers)
    peers.push_back(json::object{{"peer_id", p.peer_id}, {"fd", p.fd}, {"side", p.side == 0 ? "a" : "b"}});
  for (const auto& g : r.guarantees) guarantees.emplace_back(g);
  json::object o{{"pid", r.pid},
                 {"start_time", r.start_time},
                 {"started_unix_ms", r.started_unix_ms},
                 {"host_channel_fd", r.host_channel_fd},
                 {"console_host_fd", r.console_host_fd},
                 {"region_fds", std::move(regions)},
                 {"peers", std::move(peers)},
                 {"guarantees", std::move(guarantees)}};
  // After a live update: the earlier image that stays as the reaper (PID 1
  // of the instance's PID namespace).
  if (r.handover_host_fd >= 0) o["handover_host_fd"] = r.handover_host_fd;  // absent: an older daemon's record
  if (r.console_fd >= 0) o["console_fd"] = r.console_fd;  // absent: an older daemon's record
  if (r.ns_init_pid != 0) {
    o["ns_init_pid"] = r.ns_init_pid;
    o["ns_init_start_time"] = r.ns_init_start_time;
  }
  return o;
}

json::object to_json(const Plan& p) {
  json::array insts;
  for (const auto& ip : p.instances) {
    json::object o = to_json(ip.instance);
    o["warnings"] = warnings_to_json(ip.warnings);
    insts.push_back(std::move(o));
  }
  return {{"policy", to_string(p.policy)}, {"instances", std::move(insts)},
          {"warnings", warnings_to_json(p.warnings)}};
}

namespace {

Error bad(const char* path, const char* why) {
  return MK_FAIL(EBADMSG, "bad JSON", "%s: %s", path, why);
}

Result<const json::value*> field(const json::object& o, const char* key, const char* path) {
  const json::value* v = o.if_contains(key);
  if (!v) return MK_FAIL(EBADMSG, "bad JSON", "%s.%s: missing", path, key);
  return v;
}

Result<uint64_t> get_u64(const json::object& o, const char* key, const char* path, uint64_t max) {
  MK_TRY_ASSIGN(const json::value* v, field(o, key, path));
  uint64_t x;
  if (v->is_uint64()) x = v->get_uint64();
  else if (v->is_int64() && v->get_int64() >= 0) x = static_cast<uint64_t>(v->get_int64());
  else return MK_FAIL(EBADMSG, "bad JSON", "%s.%s: expected a non-negative integer", path, key);
  if (x > max) return MK_FAIL(EBADMSG, "bad JSON", "%s.%s: %llu is above %llu", path, key,
                              static_cast<unsigned long long>(x), static_cast<unsigned long long>(max));
  return x;
}

Result<std::string> get_str(const json::object& o, const char* key, const char* path) {
  MK_TRY_ASSIGN(const json::value* v, field(o, key, path));
  if (!v->is_string()) return MK_FAIL(EBADMSG, "bad JSON", "%s.%s: expected a string", path, key);
  return std::string(v->get_string());
}

Result<CpuSet> get_cpus(const json::object& o, const char* path, bool allow_empty) {
  MK_TRY_ASSIGN(std::string s, get_str(o, "cpus", path));
  if (s.empty() && allow_empty) return CpuSet{};
  auto c = CpuSet::parse(s);
  if (!c) return MK_FAIL(EBADMSG, "bad JSON", "%s.cpus: %s", path, c.error().message());
  return *c;
}

// The pool has one entry per node; an instance may have several regions on
// one node (`mkctl update --memory` adds regions).
Result<std::vector<MemoryRegion>> get_memory(const json::object& o, const char* path, bool one_per_node) {
  MK_TRY_ASSIGN(const json::value* v, field(o, "memory", path));
  if (!v->is_array()) return bad(path, "memory: expected an array");
  std::vector<MemoryRegion> out;
  for (const auto& e : v->get_array()) {
    if (!e.is_object()) return bad(path, "memory[]: expected objects");
    MK_TRY_ASSIGN(uint64_t node, get_u64(e.get_object(), "node", path, 4095));
    MK_TRY_ASSIGN(uint64_t bytes, get_u64(e.get_object(), "bytes", path, uint64_t{1} << 62));
    if (bytes % kPageSize) return bad(path, "memory[].bytes: not page aligned");
    for (const auto& r : out)
      if (one_per_node && r.node == node) return bad(path, "memory[]: node listed twice");
    out.push_back({static_cast<uint32_t>(node), bytes});
  }
  return out;
}

Result<const json::array*> get_array(const json::object& o, const char* key, const char* path) {
  MK_TRY_ASSIGN(const json::value* v, field(o, key, path));
  if (!v->is_array()) return MK_FAIL(EBADMSG, "bad JSON", "%s.%s: expected an array", path, key);
  return &v->get_array();
}

Result<int32_t> get_fd(const json::object& o, const char* key, const char* path) {
  MK_TRY_ASSIGN(uint64_t v, get_u64(o, key, path, 65535));
  return static_cast<int32_t>(v);
}

Result<LoadedImage> image_from_json(const json::value& v) {
  const char* path = "instances[].image";
  if (!v.is_object()) return bad(path, "expected an object");
  const auto& o = v.get_object();
  LoadedImage im;
  MK_TRY_ASSIGN(im.path, get_str(o, "path", path));
  if (im.path.empty() || im.path[0] != '/') return bad(path, "path: expected an absolute path");
  MK_TRY_ASSIGN(im.sha256, get_str(o, "sha256", path));
  if (im.sha256.size() != 64 || im.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
    return bad(path, "sha256: expected 64 lowercase hex digits");
  MK_TRY_ASSIGN(im.size, get_u64(o, "size", path, uint64_t{1} << 40));
  MK_TRY_ASSIGN(im.machine, get_str(o, "machine", path));
  MK_TRY_ASSIGN(im.cmdline, get_str(o, "cmdline", path));
  MK_TRY_ASSIGN(im.init, get_str(o, "init", path));
  if (im.cmdline.size() > 4096 || im.init.size() > 4096) return bad(path, "cmdline/init: longer than 4096 bytes");
  if (o.contains("uid")) {
    MK_TRY_ASSIGN(uint64_t uid, get_u64(o, "uid", path, 0xfffffffeu));
    im.uid = static_cast<uint32_t>(uid);
  }
  if (o.contains("gid")) {
    MK_TRY_ASSIGN(uint64_t gid, get_u64(o, "gid", path, 0xfffffffeu));
    im.gid = static_cast<uint32_t>(gid);
  }
  return im;
}

}  // namespace

Result<RuntimeRecord> runtime_from_json(const json::value& v) {
  const char* path = "instances[].runtime";
  if (!v.is_object()) return bad(path, "expected an object");
  const auto& o = v.get_object();
  RuntimeRecord r;
  MK_TRY_ASSIGN(uint64_t pid, get_u64(o, "pid", path, 4194304));
  if (pid < 2) return bad(path, "pid: expected a process id above 1");
  r.pid = static_cast<int32_t>(pid);
  MK_TRY_ASSIGN(r.start_time, get_u64(o, "start_time", path, UINT64_MAX));
  MK_TRY_ASSIGN(uint64_t ms, get_u64(o, "started_unix_ms", path, uint64_t{1} << 62));
  r.started_unix_ms = static_cast<int64_t>(ms);
  MK_TRY_ASSIGN(r.host_channel_fd, get_fd(o, "host_channel_fd", path));
  MK_TRY_ASSIGN(r.console_host_fd, get_fd(o, "console_host_fd", path));
  if (o.contains("console_fd")) {
    MK_TRY_ASSIGN(r.console_fd, get_fd(o, "console_fd", path));
  }
  if (o.contains("handover_host_fd")) {
    MK_TRY_ASSIGN(r.handover_host_fd, get_fd(o, "handover_host_fd", path));
  }
  MK_TRY_ASSIGN(const json::array* regions, get_array(o, "region_fds", path));
  for (const auto& e : *regions) {
    if (!e.is_int64() || e.get_int64() < 0 || e.get_int64() > 65535) return bad(path, "region_fds[]: expected fd numbers");
    r.region_fds.push_back(static_cast<int32_t>(e.get_int64()));
  }
  MK_TRY_ASSIGN(const json::array* peers, get_array(o, "peers", path));
  for (const auto& e : *peers) {
    if (!e.is_object()) return bad(path, "peers[]: expected objects");
    PeerChannelRecord pc;
    MK_TRY_ASSIGN(uint64_t peer, get_u64(e.get_object(), "peer_id", path, kMaxInstanceId));
    pc.peer_id = static_cast<uint32_t>(peer);
    MK_TRY_ASSIGN(pc.fd, get_fd(e.get_object(), "fd", path));
    const json::value* side = e.get_object().if_contains("side");
    if (!side || !side->is_string() || (side->get_string() != "a" && side->get_string() != "b"))
      return bad(path, "peers[].side: expected \"a\" or \"b\"");
    pc.side = side->get_string() == "a" ? 0 : 1;
    r.peers.push_back(pc);
  }
  if (o.contains("ns_init_pid") != o.contains("ns_init_start_time"))
    return bad(path, "ns_init_pid and ns_init_start_time go together");
  if (o.contains("ns_init_pid")) {
    MK_TRY_ASSIGN(uint64_t init, get_u64(o, "ns_init_pid", path, 4194304));
    if (init < 1) return bad(path, "ns_init_pid: expected a process id");
    r.ns_init_pid = static_cast<int32_t>(init);
    MK_TRY_ASSIGN(r.ns_init_start_time, get_u64(o, "ns_init_start_time", path, UINT64_MAX));
  }
  MK_TRY_ASSIGN(const json::array* gs, get_array(o, "guarantees", path));
  for (const auto& e : *gs) {
    if (!e.is_string()) return bad(path, "guarantees[]: expected strings");
    r.guarantees.emplace_back(e.get_string());
  }
  return r;
}


Result<Pool> pool_from_json(const json::value& v) {
  if (!v.is_object()) return bad("pool", "expected an object");
  const auto& o = v.get_object();
  Pool p;
  MK_TRY_ASSIGN(p.cpus, get_cpus(o, "pool", false));
  MK_TRY_ASSIGN(p.memory, get_memory(o, "pool", true));
  MK_TRY_ASSIGN(const json::array* devs, get_array(o, "devices", "pool"));
  for (const auto& d : *devs) {
    if (!d.is_string() || d.get_string().empty() || d.get_string().size() > 255)
      return bad("pool.devices[]", "expected device names");
    p.devices.emplace_back(d.get_string());
  }
  return p;
}

Result<Instance> instance_from_json(const json::value& v) {
  if (!v.is_object()) return bad("instances[]", "expected an object");
  const auto& o = v.get_object();
  Instance i;
  MK_TRY_ASSIGN(uint64_t id, get_u64(o, "id", "instances[]", kMaxInstanceId));
  if (id < kMinInstanceId) return bad("instances[].id", "0 is the host");
  i.id = static_cast<uint32_t>(id);
  MK_TRY_ASSIGN(i.name, get_str(o, "name", "instances[]"));
  if (auto r = validate_instance_name(i.name); !r)
    return MK_FAIL(EBADMSG, "bad JSON", "instances[].name: %s", r.error().message());
  MK_TRY_ASSIGN(std::string st, get_str(o, "state", "instances[]"));
  auto state = parse_instance_state(st);
  if (!state) return bad("instances[].state", "unknown state");
  i.state = *state;
  MK_TRY_ASSIGN(i.cpus, get_cpus(o, "instances[]", false));
  MK_TRY_ASSIGN(i.memory, get_memory(o, "instances[]", false));
  MK_TRY_ASSIGN(const json::array* devs, get_array(o, "devices", "instances[]"));
  for (const auto& d : *devs) {
    if (!d.is_string()) return bad("instances[].devices[]", "expected device specs");
    auto spec = DeviceSpec::parse(d.get_string());
    if (!spec) return MK_FAIL(EBADMSG, "bad JSON", "instances[].devices[]: %s", spec.error().message());
    i.devices.push_back(*spec);
  }
  // Lifecycle records (issue #4); absent in state files of older versions.
  if (const json::value* im = o.if_contains("image")) {
    MK_TRY_ASSIGN(i.image, image_from_json(*im));
  }
  if (const json::value* rt = o.if_contains("runtime")) {
    MK_TRY_ASSIGN(i.runtime, runtime_from_json(*rt));
  }
  if (const json::value* le = o.if_contains("last_exit")) {
    if (!le->is_string() || le->get_string().size() > 1024) return bad("instances[].last_exit", "expected a short string");
    i.last_exit = std::string(le->get_string());
  }
  const bool needs_image = i.state != InstanceState::Empty;
  if (needs_image && !i.image) return bad("instances[]", "state needs an image record");
  const bool running = i.state == InstanceState::Active || i.state == InstanceState::Stopping;
  if (running != i.runtime.has_value()) return bad("instances[]", "runtime record and state disagree");
  return i;
}

}  // namespace mk::tools
