// Control protocol: Action <-> JSON, strict validation (see rpc_protocol.h).
#include "rpc_protocol.h"

#include <cmath>
#include <set>

namespace mk::tools::rpc {

namespace json = boost::json;

namespace {

// Reads the fields of one request object. Every accessor marks its key as
// known; finish() refuses any key nobody asked for. The first error wins.
class Fields {
 public:
  Fields(const json::object& o, const char* action) : o_(o), action_(action) { seen_.insert("action"); }

  const json::value* get(const char* key) {
    seen_.insert(key);
    return o_.if_contains(key);
  }
  std::optional<std::string> opt_str(const char* key) {
    const json::value* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) return type_error(key, "a string"), std::nullopt;
    return std::string(v->get_string());
  }
  std::string str(const char* key) {
    if (!o_.contains(key)) missing(key);
    return opt_str(key).value_or("");
  }
  std::optional<uint64_t> opt_uint(const char* key, uint64_t max) {
    const json::value* v = get(key);
    if (!v) return std::nullopt;
    uint64_t x = 0;
    if (v->is_uint64()) x = v->get_uint64();
    else if (v->is_int64() && v->get_int64() >= 0) x = static_cast<uint64_t>(v->get_int64());
    else return type_error(key, "a non-negative integer"), std::nullopt;
    if (x > max) {
      set(MK_FAIL(EINVAL, "bad request", "%s.%s: %llu is above %llu", action_, key,
                  static_cast<unsigned long long>(x), static_cast<unsigned long long>(max)));
      return std::nullopt;
    }
    return x;
  }
  bool boolean(const char* key) {
    const json::value* v = get(key);
    if (!v) return false;
    if (!v->is_bool()) return type_error(key, "true or false"), false;
    return v->get_bool();
  }
  std::vector<std::string> str_array(const char* key) {
    std::vector<std::string> out;
    const json::value* v = get(key);
    if (!v) return out;
    if (!v->is_array()) return type_error(key, "an array of strings"), out;
    for (const auto& e : v->get_array()) {
      if (!e.is_string()) return type_error(key, "an array of strings"), out;
      out.emplace_back(e.get_string());
    }
    return out;
  }
  std::vector<MemorySpec> memory(const char* key) {
    std::vector<MemorySpec> out;
    const json::value* v = get(key);
    if (!v) return out;
    if (!v->is_array()) return type_error(key, "an array of {bytes, node}"), out;
    for (const auto& e : v->get_array()) {
      if (!e.is_object()) return type_error(key, "an array of {bytes, node}"), out;
      Fields m(e.get_object(), action_);
      m.seen_.erase("action");
      MemorySpec s;
      if (!e.get_object().contains("bytes")) m.missing("bytes");
      s.bytes = m.opt_uint("bytes", uint64_t{1} << 62).value_or(0);
      if (auto n = m.opt_uint("node", 4095)) s.node = static_cast<uint32_t>(*n);
      if (auto r = m.finish(); !r) return set(r.error()), out;
      out.push_back(s);
    }
    return out;
  }
  // Parses a string field with one of mkernel's own parsers.
  template <class T, class Parse>
  std::optional<T> parsed(const char* key, Parse parse) {
    auto s = opt_str(key);
    if (!s) return std::nullopt;
    auto r = parse(*s);
    if (!r) {
      set(MK_FAIL(EINVAL, "bad request", "%s.%s: %s", action_, key, r.error().message()));
      return std::nullopt;
    }
    return T(std::move(*r));
  }
  void set(const Error& e) {
    if (ok_) err_ = e, ok_ = false;
  }
  Result<void> finish() {
    for (const auto& kv : o_) {
      if (seen_.count(std::string(kv.key()))) continue;
      set(MK_FAIL(EINVAL, "bad request", "%s: unknown field '%.*s'", action_, static_cast<int>(kv.key().size()),
                  kv.key().data()));
    }
    if (!ok_) return err_;
    return ok();
  }

 private:
  void type_error(const char* key, const char* expected) {
    set(MK_FAIL(EINVAL, "bad request", "%s.%s: expected %s", action_, key, expected));
  }
  void missing(const char* key) { set(MK_FAIL(EINVAL, "bad request", "%s: missing field '%s'", action_, key)); }

  const json::object& o_;
  const char* action_;
  std::set<std::string> seen_;
  bool ok_ = true;
  Error err_;
};

json::array memory_to_json(const std::vector<MemorySpec>& m) {
  json::array a;
  for (const auto& s : m) {
    json::object o{{"bytes", s.bytes}};
    if (s.node) o["node"] = *s.node;
    a.push_back(std::move(o));
  }
  return a;
}

std::string kind_to_string(const KindSelector& k) {
  switch (k.by) {
    case KindSelector::By::Performance: return "performance";
    case KindSelector::By::Efficiency: return "efficiency";
    case KindSelector::By::Index: break;
  }
  return std::to_string(k.index);
}

template <class T>
json::array strings_to_json(const std::vector<T>& v) {
  json::array a;
  for (const auto& x : v) {
    if constexpr (std::is_same_v<T, std::string>) a.emplace_back(x);
    else a.emplace_back(x.to_string());
  }
  return a;
}

json::object encode(const InitAction& a) {
  json::object o{{"memory", memory_to_json(a.request.memory)}, {"devices", strings_to_json(a.request.devices)}};
  if (a.request.cpus) o["cpus"] = a.request.cpus->to_string();
  return o;
}

json::object encode(const CreateAction& a) {
  const CreateRequest& r = a.request;
  json::object o{{"name", r.name},
                 {"memory", memory_to_json(r.memory)},
                 {"devices", strings_to_json(r.devices)},
                 {"spread", r.spread}};
  if (r.id) o["id"] = *r.id;
  if (r.cpus) o["cpus"] = r.cpus->to_string();
  if (r.cpu_count) o["cpu_count"] = r.cpu_count;
  if (r.kind) o["kind"] = kind_to_string(*r.kind);
  if (r.numa) o["numa"] = *r.numa;
  return o;
}

json::object encode(const DeleteAction& a) { return {{"name", a.name}}; }

json::object encode(const ShowAction& a) {
  json::object o;
  if (a.name) o["name"] = *a.name;
  return o;
}

json::object encode(const PlanAction& a) {
  const PlanRequest& r = a.request;
  json::object o{{"policy", to_string(r.policy)},
                 {"name_prefix", r.name_prefix},
                 {"kinds_override", strings_to_json(r.kinds_override)},
                 {"apply", a.apply}};
  if (r.instances) o["instances"] = *r.instances;
  if (r.memory_per_instance) o["memory_per_instance"] = *r.memory_per_instance;
  return o;
}

json::object encode(const HostStatusAction&) { return {}; }
json::object encode(const HostStopAction&) { return {}; }
json::object encode(const LoadAction& a) {
  json::object o{{"name", a.name}, {"kernel", a.kernel}, {"cmdline", a.cmdline}, {"init", a.init}};
  if (a.uid) o["uid"] = *a.uid;
  if (a.gid) o["gid"] = *a.gid;
  return o;
}
json::object encode(const StartAction& a) {
  return {{"name", a.name},           {"timeout_ms", a.timeout_ms}, {"steer_irqs", a.steer_irqs},
          {"evict_host_tasks", a.evict_host_tasks},
          {"exclusive_memory", a.exclusive_memory}};
}
json::object encode(const StopAction& a) {
  return {{"name", a.name}, {"force", a.force}, {"grace_ms", a.grace_ms}, {"timeout_ms", a.timeout_ms}};
}
json::object encode(const PingAction& a) {
  json::object o{{"name", a.name}, {"count", a.count}, {"size", a.size}};
  if (a.from) o["from"] = *a.from;
  return o;
}
json::object encode(const ConsoleAction& a) { return {{"name", a.name}}; }
json::object encode(const TopAction& a) { return {{"interval_ms", a.interval_ms}}; }
json::object encode(const UpdateAction& a) {
  json::object o{{"name", a.name}, {"kernel", a.kernel}, {"timeout_ms", a.timeout_ms}, {"fault", a.fault}};
  if (a.cmdline) o["cmdline"] = *a.cmdline;
  if (a.staged) o["staged"] = true;
  if (a.spare_cpus) o["spare_cpus"] = a.spare_cpus->to_string();
  return o;
}
json::object encode(const UpdateAbortAction& a) { return {{"name", a.name}}; }

json::object encode(const CpuMoveAction& a) {
  return {{"cpu", a.cpu}, {"from", a.from}, {"to", a.to}, {"timeout_ms", a.timeout_ms}, {"fault", a.fault}};
}
json::object encode(const ResizeAction& a) {
  return {{"name", a.name}, {"cpus", a.cpus.to_string()}, {"timeout_ms", a.timeout_ms}, {"fault", a.fault}};
}

json::object encode(const ResourcesAction& a) {
  json::object o{{"name", a.name}, {"timeout_ms", a.timeout_ms}, {"fault", a.fault}};
  if (a.memory) o["memory"] = memory_to_json(*a.memory);
  if (a.devices) {
    json::array d;
    for (const auto& s : *a.devices) d.push_back(json::string(s.to_string()));
    o["devices"] = std::move(d);
  }
  return o;
}

// A bounded integer field with a default, refusing values below `min`.
uint32_t bounded(Fields& f, const char* action, const char* key, uint32_t def, uint32_t min, uint32_t max) {
  auto v = f.opt_uint(key, max);
  if (!v) return def;
  if (*v < min) {
    f.set(MK_FAIL(EINVAL, "bad request", "%s.%s: %llu is below %u", action, key,
                  static_cast<unsigned long long>(*v), min));
    return def;
  }
  return static_cast<uint32_t>(*v);
}

// The fault injection of CpuMoveAction/ResizeAction (rpc_protocol.h).
void check_move_fault(Fields& f, const char* action, const std::string& fault) {
  if (fault.empty()) return;
  const bool ok = fault.size() <= 200 &&
                  ((fault.rfind("fail:", 0) == 0 && fault.size() > 5) ||
                   (fault.rfind("host-exit-after:", 0) == 0 && fault.size() > 16));
  if (!ok)
    f.set(MK_FAIL(EINVAL, "bad request", "%s.fault: '%.200s' (known: fail:STEP, host-exit-after:STEP)", action,
                  fault.c_str()));
}

Result<Action> decode(const std::string& name, const json::object& o) {
  Fields f(o, name.c_str());
  Action out;
  if (name == "init") {
    InitAction a;
    a.request.cpus = f.parsed<CpuSet>("cpus", [](const std::string& s) { return CpuSet::parse(s); });
    a.request.memory = f.memory("memory");
    a.request.devices = f.str_array("devices");
    out = std::move(a);
  } else if (name == "create") {
    CreateAction a;
    CreateRequest& r = a.request;
    r.name = f.str("name");
    if (auto id = f.opt_uint("id", 0xffffffffu)) r.id = static_cast<uint32_t>(*id);
    r.cpus = f.parsed<CpuSet>("cpus", [](const std::string& s) { return CpuSet::parse(s); });
    r.cpu_count = static_cast<uint32_t>(f.opt_uint("cpu_count", 0xffffffffu).value_or(0));
    r.kind = f.parsed<KindSelector>("kind", [](const std::string& s) { return KindSelector::parse(s); });
    if (auto n = f.opt_uint("numa", 0xffffffffu)) r.numa = static_cast<uint32_t>(*n);
    r.spread = f.boolean("spread");
    r.memory = f.memory("memory");
    for (const auto& d : f.str_array("devices")) {
      auto s = DeviceSpec::parse(d);
      if (!s) {
        f.set(MK_FAIL(EINVAL, "bad request", "create.devices: %s", s.error().message()));
        break;
      }
      r.devices.push_back(*s);
    }
    // The rules mkctl create enforces on its command line hold on the wire too.
    if (r.cpus.has_value() == (r.cpu_count != 0))
      f.set(MK_FAIL(EINVAL, "bad request", "create: give exactly one of cpus and cpu_count (at least 1)"));
    else if (r.cpus && (r.kind || r.numa || r.spread))
      f.set(MK_FAIL(EINVAL, "bad request", "create: kind, numa and spread go with cpu_count, not cpus"));
    else if (r.memory.empty())
      f.set(MK_FAIL(EINVAL, "bad request", "create: missing field 'memory'"));
    out = std::move(a);
  } else if (name == "delete") {
    out = DeleteAction{f.str("name")};
  } else if (name == "show") {
    out = ShowAction{f.opt_str("name")};
  } else if (name == "plan") {
    PlanAction a;
    if (!o.contains("policy")) f.set(MK_FAIL(EINVAL, "bad request", "plan: missing field 'policy'"));
    if (auto p = f.parsed<PlanPolicy>("policy", [](const std::string& s) { return parse_plan_policy(s); }))
      a.request.policy = *p;
    if (auto n = f.opt_uint("instances", 0xffffffffu)) a.request.instances = static_cast<uint32_t>(*n);
    a.request.memory_per_instance = f.opt_uint("memory_per_instance", uint64_t{1} << 62);
    a.request.name_prefix = f.opt_str("name_prefix").value_or("");
    for (const auto& k : f.str_array("kinds_override")) {
      auto c = CpuSet::parse(k);
      if (!c) {
        f.set(MK_FAIL(EINVAL, "bad request", "plan.kinds_override: %s", c.error().message()));
        break;
      }
      a.request.kinds_override.push_back(*c);
    }
    a.apply = f.boolean("apply");
    out = std::move(a);
  } else if (name == "host-status") {
    out = HostStatusAction{};
  } else if (name == "host-stop") {
    out = HostStopAction{};
  } else if (name == "load") {
    LoadAction a;
    a.name = f.str("name");
    a.kernel = f.str("kernel");
    a.cmdline = f.opt_str("cmdline").value_or("");
    a.init = f.opt_str("init").value_or("");
    if (auto u = f.opt_uint("uid", 0xfffffffeu)) a.uid = static_cast<uint32_t>(*u);
    if (auto g = f.opt_uint("gid", 0xfffffffeu)) a.gid = static_cast<uint32_t>(*g);
    if (a.gid && !a.uid) f.set(MK_FAIL(EINVAL, "bad request", "load.gid: only together with uid"));
    if (a.kernel.empty()) f.set(MK_FAIL(EINVAL, "bad request", "load.kernel: empty path"));
    if (a.cmdline.size() > 4096 || a.init.size() > 4096)
      f.set(MK_FAIL(EINVAL, "bad request", "load: cmdline and init are at most 4096 bytes each"));
    out = std::move(a);
  } else if (name == "start") {
    StartAction a;
    a.name = f.str("name");
    a.timeout_ms = bounded(f, "start", "timeout_ms", a.timeout_ms, 1, 600000);
    a.steer_irqs = f.boolean("steer_irqs");
    a.evict_host_tasks = f.boolean("evict_host_tasks");
    a.exclusive_memory = f.boolean("exclusive_memory");
    out = std::move(a);
  } else if (name == "stop") {
    StopAction a;
    a.name = f.str("name");
    a.force = f.boolean("force");
    a.grace_ms = bounded(f, "stop", "grace_ms", a.grace_ms, 0, 600000);
    a.timeout_ms = bounded(f, "stop", "timeout_ms", a.timeout_ms, 1, 600000);
    out = std::move(a);
  } else if (name == "ping") {
    PingAction a;
    a.name = f.str("name");
    a.from = f.opt_str("from");
    a.count = bounded(f, "ping", "count", a.count, 1, 100000);
    a.size = bounded(f, "ping", "size", a.size, 0, 4096);
    out = std::move(a);
  } else if (name == "console") {
    out = ConsoleAction{f.str("name")};
  } else if (name == "top") {
    TopAction a;
    a.interval_ms = bounded(f, "top", "interval_ms", a.interval_ms, 50, 10000);
    out = std::move(a);
  } else if (name == "update") {
    UpdateAction a;
    a.name = f.str("name");
    a.kernel = f.opt_str("kernel").value_or("");
    a.cmdline = f.opt_str("cmdline");
    a.timeout_ms = bounded(f, "update", "timeout_ms", a.timeout_ms, 1, 600000);
    a.fault = f.opt_str("fault").value_or("");
    a.staged = f.boolean("staged");
    a.spare_cpus = f.parsed<CpuSet>("spare_cpus", [](const std::string& s) { return CpuSet::parse(s); });
    if (a.cmdline && a.cmdline->size() > 4096)
      f.set(MK_FAIL(EINVAL, "bad request", "update.cmdline: at most 4096 bytes"));
    if (a.staged) {
      check_move_fault(f, "update", a.fault);
    } else if (!a.fault.empty() && a.fault != "corrupt-package" && a.fault != "host-exit-after-freeze") {
      f.set(MK_FAIL(EINVAL, "bad request", "update.fault: '%s' (known: corrupt-package, host-exit-after-freeze)",
                    a.fault.c_str()));
    }
    if (a.spare_cpus && !a.staged) f.set(MK_FAIL(EINVAL, "bad request", "update.spare_cpus: only with staged"));
    if (a.spare_cpus && a.spare_cpus->empty()) f.set(MK_FAIL(EINVAL, "bad request", "update.spare_cpus: empty"));
    out = std::move(a);
  } else if (name == "update-abort") {
    out = UpdateAbortAction{f.str("name")};
  } else if (name == "cpu-move") {
    CpuMoveAction a;
    if (!o.contains("cpu")) f.set(MK_FAIL(EINVAL, "bad request", "cpu-move: missing field 'cpu'"));
    a.cpu = static_cast<uint32_t>(f.opt_uint("cpu", 8191).value_or(0));
    a.from = f.str("from");
    a.to = f.str("to");
    a.timeout_ms = bounded(f, "cpu-move", "timeout_ms", a.timeout_ms, 1, 600000);
    a.fault = f.opt_str("fault").value_or("");
    check_move_fault(f, "cpu-move", a.fault);
    out = std::move(a);
  } else if (name == "resize") {
    ResizeAction a;
    a.name = f.str("name");
    if (!o.contains("cpus")) f.set(MK_FAIL(EINVAL, "bad request", "resize: missing field 'cpus'"));
    if (auto c = f.parsed<CpuSet>("cpus", [](const std::string& s) { return CpuSet::parse(s); })) a.cpus = *c;
    a.timeout_ms = bounded(f, "resize", "timeout_ms", a.timeout_ms, 1, 600000);
    a.fault = f.opt_str("fault").value_or("");
    check_move_fault(f, "resize", a.fault);
    out = std::move(a);
  } else if (name == "resources") {
    ResourcesAction a;
    a.name = f.str("name");
    if (o.contains("memory")) {
      a.memory = f.memory("memory");
      if (a.memory->empty()) f.set(MK_FAIL(EINVAL, "bad request", "resources.memory: at least one region"));
    }
    if (o.contains("devices")) {
      a.devices.emplace();
      for (const auto& d : f.str_array("devices")) {
        auto s = DeviceSpec::parse(d);
        if (!s) {
          f.set(MK_FAIL(EINVAL, "bad request", "resources.devices: %s", s.error().message()));
          break;
        }
        a.devices->push_back(*s);
      }
    }
    if (a.memory.has_value() == a.devices.has_value())
      f.set(MK_FAIL(EINVAL, "bad request", "resources: give exactly one of memory and devices"));
    a.timeout_ms = bounded(f, "resources", "timeout_ms", a.timeout_ms, 1, 600000);
    a.fault = f.opt_str("fault").value_or("");
    check_move_fault(f, "resources", a.fault);
    out = std::move(a);
  } else {
    return MK_FAIL(EOPNOTSUPP, "unknown action",
                   "'%s' (actions: init, create, delete, show, plan, host-status, host-stop, load, start, stop, "
                   "ping, console, top, update, cpu-move, resize, update-abort, resources)",
                   name.c_str());
  }
  MK_TRY(f.finish());
  return out;
}

}  // namespace

const char* action_name(const Action& a) {
  static constexpr const char* kNames[] = {"init",  "create", "delete", "show", "plan",    "host-status", "host-stop",
                                           "load",  "start",  "stop",   "ping", "console", "top",
                                           "update", "cpu-move", "resize", "update-abort", "resources"};
  static_assert(std::size(kNames) == std::variant_size_v<Action>);
  return kNames[a.index()];
}

bool is_lifecycle(const Action& a) {
  return std::holds_alternative<LoadAction>(a) || std::holds_alternative<StartAction>(a) ||
         std::holds_alternative<StopAction>(a) || std::holds_alternative<PingAction>(a) ||
         std::holds_alternative<ConsoleAction>(a) || std::holds_alternative<TopAction>(a) ||
         std::holds_alternative<UpdateAction>(a) || std::holds_alternative<CpuMoveAction>(a) ||
         std::holds_alternative<ResizeAction>(a) || std::holds_alternative<UpdateAbortAction>(a) ||
         std::holds_alternative<ResourcesAction>(a);
}

bool changes_partition(const Action& a) {
  if (const auto* p = std::get_if<PlanAction>(&a)) return p->apply;
  return std::holds_alternative<InitAction>(a) || std::holds_alternative<CreateAction>(a) ||
         std::holds_alternative<DeleteAction>(a);
}

WireError WireError::from(const Error& e, std::string hint) {
  return {e.code(), e.what(), e.message(), std::move(hint)};
}

std::string WireError::to_string() const { return message.empty() || message == error ? error : error + ": " + message; }

Response Response::success(json::object result, std::string text) {
  Response r;
  r.ok = true;
  r.result = std::move(result);
  r.text = std::move(text);
  return r;
}

Response Response::failure(const Error& e, std::string hint) {
  Response r;
  r.error = WireError::from(e, std::move(hint));
  return r;
}

std::string encode_request(const Action& a) {
  json::object o = std::visit([](const auto& x) { return encode(x); }, a);
  o["action"] = action_name(a);
  return json::serialize(o);
}

std::string encode_progress(const json::object& progress) {
  return json::serialize(json::object{{"progress", progress}});
}

// Boost.JSON reads a number beyond a double's range (1e400) as infinity and
// serializes it as `Infinity`, which is not JSON: a response or progress
// frame holding one would make `mkctl --json` print what no reader parses.
static bool finite_numbers(const json::value& v) {
  switch (v.kind()) {
    case json::kind::double_: return std::isfinite(v.get_double());
    case json::kind::array:
      for (const json::value& e : v.get_array())
        if (!finite_numbers(e)) return false;
      return true;
    case json::kind::object:
      for (const auto& kv : v.get_object())
        if (!finite_numbers(kv.value())) return false;
      return true;
    default: return true;
  }
}

std::optional<json::object> parse_progress(std::string_view line) {
  if (line.rfind("{\"progress\":", 0) != 0) return std::nullopt;
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec || !v.is_object() || !finite_numbers(v)) return std::nullopt;
  const json::value* p = v.get_object().if_contains("progress");
  if (!p || !p->is_object() || v.get_object().size() != 1) return std::nullopt;
  return p->get_object();
}

std::string encode_response(const Response& r) {
  if (r.ok) return json::serialize(json::object{{"ok", true}, {"result", r.result}, {"text", r.text}});
  json::object e{{"errno", r.error.errnum}, {"error", r.error.error}, {"message", r.error.message}};
  if (!r.error.hint.empty()) e["hint"] = r.error.hint;
  return json::serialize(json::object{{"ok", false}, {"error", std::move(e)}});
}

Result<Action> parse_request(std::string_view line) {
  if (line.size() > kMaxRequestBytes)
    return MK_FAIL(EMSGSIZE, "request too large", "%zu bytes; the limit is %zu", line.size(), kMaxRequestBytes);
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec) return MK_FAIL(EBADMSG, "bad request", "not JSON (%s)", ec.message().c_str());
  if (!v.is_object()) return MK_FAIL(EBADMSG, "bad request", "a request is a JSON object");
  const json::object& o = v.get_object();
  const json::value* act = o.if_contains("action");
  if (!act || !act->is_string()) return MK_FAIL(EBADMSG, "bad request", "missing \"action\" (a string)");
  return decode(std::string(act->get_string()), o);
}

Result<Response> parse_response(std::string_view line) {
  if (line.size() > kMaxResponseBytes) return MK_FAIL(EMSGSIZE, "response too large", "%zu bytes", line.size());
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec) return MK_FAIL(EBADMSG, "bad response", "not JSON (%s)", ec.message().c_str());
  if (!finite_numbers(v)) return MK_FAIL(EBADMSG, "bad response", "a number beyond a double's range");
  const json::object* o = v.if_object();
  const json::value* okv = o ? o->if_contains("ok") : nullptr;
  if (!okv || !okv->is_bool()) return MK_FAIL(EBADMSG, "bad response", "missing \"ok\"");
  Response r;
  r.ok = okv->get_bool();
  if (r.ok) {
    const json::value* res = o->if_contains("result");
    const json::value* text = o->if_contains("text");
    if (!res || !res->is_object() || !text || !text->is_string())
      return MK_FAIL(EBADMSG, "bad response", "success without \"result\" and \"text\"");
    r.result = res->get_object();
    r.text = text->get_string();
    return r;
  }
  const json::value* ev = o->if_contains("error");
  const json::object* e = ev ? ev->if_object() : nullptr;
  if (!e) return MK_FAIL(EBADMSG, "bad response", "failure without \"error\"");
  const json::value* no = e->if_contains("errno");
  const json::value* what = e->if_contains("error");
  const json::value* msg = e->if_contains("message");
  const json::value* hint = e->if_contains("hint");
  if (!no || !no->is_int64() || !what || !what->is_string() || !msg || !msg->is_string() ||
      (hint && !hint->is_string()))
    return MK_FAIL(EBADMSG, "bad response", "error needs errno, error and message");
  r.error.errnum = static_cast<int>(no->get_int64());
  r.error.error = what->get_string();
  r.error.message = msg->get_string();
  if (hint) r.error.hint = hint->get_string();
  return r;
}

}  // namespace mk::tools::rpc
