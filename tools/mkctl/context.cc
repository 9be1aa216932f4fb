// mkctl per-call context (see context.h).
#include "context.h"

#include <cstdio>
#include <iostream>
#include <typeinfo>

#include "daemon_client.h"
#include "mkernel/host_devices.h"
#include "mkernel/sysroot.h"
#include "partition_actions.h"

namespace mkctl {

namespace json = boost::json;

void Context::add_global_options(po::options_description& desc) {
  desc.add_options()
      ("json", po::bool_switch(&json_), "machine-readable output (one JSON document on stdout)")
      ("topology", po::value<std::string>(), "use an hwloc XML topology instead of the live machine "
                                            "(plan and validate only: nothing is booted)")
      ("help,h", "show this help");
}

namespace {

// The hidden option that collects positional arguments beyond the verb's
// own (so the message can name them instead of Boost's "too many
// positional options have been specified on the command line").
constexpr const char* kExtraArgs = "mkctl-extra-args";

// Arguments travel to mkerneld as JSON strings, which must be UTF-8.
bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xe ? 2 : (c >> 3) == 0x1e ? 3 : 9;
    if (n == 9 || (n == 1 && c < 0xc2) || (n == 3 && c > 0xf4) || i + n >= s.size() + (n ? 0 : 1)) return false;
    uint32_t cp = n == 0 ? c : c & (0x3f >> n);
    for (std::size_t k = 1; k <= n; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}

// An argument as it can be printed: bytes that are not printable ASCII as \xNN.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char b[5];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    }
  }
  return out;
}

bool is_unsigned(const boost::any& v) {
  return v.type() == typeid(uint32_t) || v.type() == typeid(uint64_t) || v.type() == typeid(unsigned long) ||
         v.type() == typeid(uint16_t);
}

}  // namespace

bool Context::parse(const po::options_description& desc, const po::positional_options_description& pos,
                    po::variables_map& vm, const char* usage_line, int& exit_code) {
  po::options_description all;
  all.add(desc);
  all.add_options()(kExtraArgs, po::value<std::vector<std::string>>());
  po::positional_options_description with_extra = pos;
  with_extra.add(kExtraArgs, -1);
  // Usage errors found while parsing are JSON documents too when --json is
  // on the command line (it is not stored yet then).
  auto bad = [&](const std::string& message) {
    for (const auto& a : args_) json_ = json_ || a == "--json";
    exit_code = usage_error(message);
    return false;
  };
  for (const auto& a : args_)
    if (!valid_utf8(a))
      return bad("argument '" + printable(a) + "' is not valid UTF-8 (mkctl passes names, paths and values to mkerneld as "
                 "JSON text)");
  po::parsed_options parsed(&all);
  try {
    parsed = po::command_line_parser(args_).options(all).positional(with_extra).run();
  } catch (const po::error& e) {
    return bad(e.what());
  }
  // An option whose value is another of the verb's options lost its value
  // ("--cpus --memory 1G"): say so rather than parse "--memory" as CPUs.
  for (const auto& o : parsed.options) {
    if (o.string_key == kExtraArgs || o.value.size() != 1 || o.original_tokens.size() < 2) continue;
    const std::string& v = o.value.front();
    if (v.rfind("--", 0) != 0 || v.size() < 3) continue;
    const std::string name = v.substr(2, v.find('=') == std::string::npos ? std::string::npos : v.find('=') - 2);
    if (desc.find_nothrow(name, false))
      return bad("the required argument for option '--" + o.string_key + "' is missing (got the option '" + v + "')");
  }
  try {
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return bad(e.what());
  }
  if (vm.count("help")) {
    std::cout << "usage: " << usage_line << "\n\n" << desc << "\n";
    exit_code = kExitOk;
    return false;
  }
  if (vm.count(kExtraArgs)) {
    const auto& extra = vm[kExtraArgs].as<std::vector<std::string>>();
    return bad("unexpected argument '" + extra.front() + "' (usage: " + usage_line + ")");
  }
  // Boost reads "-1" into an unsigned option as 4294967295: refuse a sign.
  for (const auto& o : parsed.options) {
    if (o.value.size() != 1 || !vm.count(o.string_key) || !is_unsigned(vm[o.string_key].value())) continue;
    const std::string& v = o.value.front();
    const std::size_t first = v.find_first_not_of(" \t");
    if (first != std::string::npos && (v[first] == '-' || v[first] == '+'))
      return bad("the argument ('" + v + "') for option '--" + o.string_key + "' is invalid: expected a whole number >= 0");
  }
  if (vm.count("topology")) topology_file_ = vm["topology"].as<std::string>();
  return true;
}

mk::Result<mk::Topology> Context::topology() {
  if (topology_) return *topology_;
  if (topology_file_) {
    MK_TRY_ASSIGN(topology_, mk::load_topology_xml(*topology_file_));
  } else {
    MK_TRY_ASSIGN(mk::Topology t, mk::load_topology_live());
    // hwloc lists only physical NICs and disks; instances may also take
    // virtual interfaces (veth, macvlan) that sysfs shows.
    mk::add_sysfs_devices(t, mk::SysRoot::from_env());
    topology_ = std::move(t);
  }
  return *topology_;
}

mk::Result<mk::tools::StateStore> Context::open_state(mk::tools::StateStore::Mode mode) {
  return mk::tools::StateStore::open(mk::tools::runtime_dir(), topology_source(), mode);
}

int Context::emit(const json::object& doc, const std::string& text) {
  if (json_) std::cout << json::serialize(doc) << "\n";
  else std::cout << text;
  std::cout.flush();
  return kExitOk;
}

mk::tools::rpc::Response Context::execute(const mk::tools::rpc::Action& action,
                                          const std::function<void(const boost::json::object&)>& on_progress) {
  using mk::tools::rpc::Response;
  if (planning_only()) return execute(action);  // refused there: lifecycle actions need the daemon
  std::string dir = mk::tools::runtime_dir();
  auto r = mk::tools::call_daemon(dir, action, mk::tools::AutoStart::Yes, on_progress);
  if (!r) return Response::failure(r.error(), "mkerneld log: " + mk::tools::daemon_log_path(dir));
  return std::move(*r);
}

mk::tools::rpc::Response Context::execute(const mk::tools::rpc::Action& action) {
  using mk::tools::rpc::Response;
  if (!planning_only()) {
    std::string dir = mk::tools::runtime_dir();
    auto r = mk::tools::call_daemon(dir, action, mk::tools::AutoStart::Yes);
    if (!r) return Response::failure(r.error(), "mkerneld log: " + mk::tools::daemon_log_path(dir));
    return std::move(*r);
  }
  if (mk::tools::rpc::is_lifecycle(action)) {
    return Response::failure(MK_FAIL(EOPNOTSUPP, "needs the live machine",
                                     "'%s' runs instances on this machine; --topology only plans",
                                     mk::tools::rpc::action_name(action)),
                             "drop --topology");
  }
  auto topo = topology();
  if (!topo) return Response::failure(topo.error());
  bool change = mk::tools::rpc::changes_partition(action);
  auto store = open_state(change ? mk::tools::StateStore::Mode::Write : mk::tools::StateStore::Mode::Read);
  if (!store) return Response::failure(store.error());
  auto part = store->load();
  if (!part) return Response::failure(part.error());
  mk::SysRoot sysroot = mk::SysRoot::from_env();
  bool changed = false;
  Response r = mk::tools::apply_partition_action(action, {*topo, sysroot, topology_source()}, *part, changed);
  if (r.ok && changed) {
    if (auto s = store->save(*part); !s) return Response::failure(s.error(), mk::tools::failure_hint(action));
  }
  return r;
}

int Context::finish(const mk::tools::rpc::Response& r) { return r.ok ? emit(r.result, r.text) : fail(r.error); }

int Context::fail(const mk::Error& e, const std::string& hint) { return fail(mk::tools::rpc::WireError::from(e, hint)); }

int Context::fail(const mk::tools::rpc::WireError& e) {
  if (json_) {
    json::object err{{"errno", e.errnum}, {"error", e.error}, {"message", e.message}};
    if (!e.hint.empty()) err["hint"] = e.hint;
    std::cout << json::serialize(json::object{{"error", std::move(err)}}) << "\n";
  }
  std::fprintf(stderr, "mkctl %s: %s\n", verb_.c_str(), e.to_string().c_str());
  if (!e.hint.empty()) std::fprintf(stderr, "  %s\n", e.hint.c_str());
  return kExitFailed;
}

int Context::usage_error(const std::string& message) {
  if (json_) {
    std::cout << json::serialize(json::object{{"error", json::object{{"errno", EINVAL}, {"error", "bad usage"},
                                                                   {"message", message}}}})
              << "\n";
  }
  std::fprintf(stderr, "mkctl %s: %s\n  see: mkctl %s --help\n", verb_.c_str(), message.c_str(), verb_.c_str());
  return kExitUsage;
}

std::string warning_lines(const std::vector<std::string>& w) {
  std::string s;
  for (const auto& x : w) s += "warning: " + x + "\n";
  return s;
}

}  // namespace mkctl
