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

Result<std::vector<MemoryRegion>> get_memory(const json::object& o, const char* path) {
  MK_TRY_ASSIGN(const json::value* v, field(o, "memory", path));
  if (!v->is_array()) return bad(path, "memory: expected an array");
  std::vector<MemoryRegion> out;
  for (const auto& e : v->get_array()) {
    if (!e.is_object()) return bad(path, "memory[]: expected objects");
    MK_TRY_ASSIGN(uint64_t node, get_u64(e.get_object(), "node", path, 4095));
    MK_TRY_ASSIGN(uint64_t bytes, get_u64(e.get_object(), "bytes", path, uint64_t{1} << 62));
    if (bytes % kPageSize) return bad(path, "memory[].bytes: not page aligned");
    for (const auto& r : out)
      if (r.node == node) return bad(path, "memory[]: node listed twice");
    out.push_back({static_cast<uint32_t>(node), bytes});
  }
  return out;
}

Result<const json::array*> get_array(const json::object& o, const char* key, const char* path) {
  MK_TRY_ASSIGN(const json::value* v, field(o, key, path));
  if (!v->is_array()) return MK_FAIL(EBADMSG, "bad JSON", "%s.%s: expected an array", path, key);
  return &v->get_array();
}

}  // namespace

Result<Pool> pool_from_json(const json::value& v) {
  if (!v.is_object()) return bad("pool", "expected an object");
  const auto& o = v.get_object();
  Pool p;
  MK_TRY_ASSIGN(p.cpus, get_cpus(o, "pool", false));
  MK_TRY_ASSIGN(p.memory, get_memory(o, "pool"));
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
  MK_TRY_ASSIGN(i.memory, get_memory(o, "instances[]"));
  MK_TRY_ASSIGN(const json::array* devs, get_array(o, "devices", "instances[]"));
  for (const auto& d : *devs) {
    if (!d.is_string()) return bad("instances[].devices[]", "expected device specs");
    auto spec = DeviceSpec::parse(d.get_string());
    if (!spec) return MK_FAIL(EBADMSG, "bad JSON", "instances[].devices[]: %s", spec.error().message());
    i.devices.push_back(*spec);
  }
  return i;
}

}  // namespace mk::tools
