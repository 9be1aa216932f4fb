// Control protocol: every action round-trips; anything else is refused with
// the documented errno and a message naming the problem.
#include "rpc_protocol.h"

#include <gtest/gtest.h>

namespace {

namespace rpc = mk::tools::rpc;

rpc::Action round_trip(const rpc::Action& a) {
  auto back = rpc::parse_request(rpc::encode_request(a));
  EXPECT_TRUE(back) << back.error().to_string() << "\n" << rpc::encode_request(a);
  return back ? *back : rpc::Action{};
}

TEST(RpcProtocol, EveryActionRoundTrips) {
  rpc::InitAction init;
  init.request.cpus = *mk::CpuSet::parse("1-3");
  init.request.memory = {{1 << 20, 0}, {2 << 20, std::nullopt}};
  init.request.devices = {"eth0"};
  auto i = std::get<rpc::InitAction>(round_trip(init));
  EXPECT_EQ(i.request.cpus->to_string(), "1-3");
  ASSERT_EQ(i.request.memory.size(), 2u);
  EXPECT_EQ(i.request.memory[0].node, 0u);
  EXPECT_FALSE(i.request.memory[1].node);
  EXPECT_EQ(i.request.devices, std::vector<std::string>{"eth0"});

  rpc::CreateAction create;
  create.request.name = "web";
  create.request.cpu_count = 2;
  create.request.kind = *mk::KindSelector::parse("e");
  create.request.numa = 1;
  create.request.spread = true;
  create.request.id = 7;
  create.request.memory = {{4096, std::nullopt}};
  create.request.devices = {*mk::DeviceSpec::parse("file:/tmp/x:ro")};
  auto c = std::get<rpc::CreateAction>(round_trip(create));
  EXPECT_EQ(c.request.name, "web");
  EXPECT_EQ(c.request.cpu_count, 2u);
  EXPECT_EQ(c.request.kind->by, mk::KindSelector::By::Efficiency);
  EXPECT_EQ(*c.request.numa, 1u);
  EXPECT_TRUE(c.request.spread);
  EXPECT_EQ(*c.request.id, 7u);
  ASSERT_EQ(c.request.devices.size(), 1u);
  EXPECT_EQ(c.request.devices[0].to_string(), create.request.devices[0].to_string());

  EXPECT_EQ(std::get<rpc::DeleteAction>(round_trip(rpc::DeleteAction{"web"})).name, "web");
  EXPECT_FALSE(std::get<rpc::ShowAction>(round_trip(rpc::ShowAction{})).name);
  EXPECT_EQ(*std::get<rpc::ShowAction>(round_trip(rpc::ShowAction{"web"})).name, "web");

  rpc::PlanAction plan;
  plan.request.policy = *mk::parse_plan_policy("pe-split");
  plan.request.instances = 2;
  plan.request.memory_per_instance = 1 << 30;
  plan.request.name_prefix = "t";
  plan.request.kinds_override = *mk::parse_kinds_override("0-1:2-3");
  plan.apply = true;
  auto p = std::get<rpc::PlanAction>(round_trip(plan));
  EXPECT_STREQ(mk::to_string(p.request.policy), "pe-split");
  EXPECT_EQ(*p.request.instances, 2u);
  EXPECT_EQ(*p.request.memory_per_instance, 1u << 30);
  EXPECT_EQ(p.request.name_prefix, "t");
  ASSERT_EQ(p.request.kinds_override.size(), 2u);
  EXPECT_TRUE(p.apply);

  EXPECT_TRUE(std::holds_alternative<rpc::HostStatusAction>(round_trip(rpc::HostStatusAction{})));
  EXPECT_TRUE(std::holds_alternative<rpc::HostStopAction>(round_trip(rpc::HostStopAction{})));
}

TEST(RpcProtocol, MalformedRequestsAreRefusedWithTheRightCode) {
  const std::vector<std::pair<std::string, int>> bad = {
      {"", EBADMSG},
      {"garbage", EBADMSG},
      {"[1,2]", EBADMSG},
      {"{}", EBADMSG},
      {R"({"action": 5})", EBADMSG},
      {R"({"action": "reboot"})", EOPNOTSUPP},
      {R"({"action": "show", "bogus": 1})", EINVAL},
      {R"({"action": "show", "name": 5})", EINVAL},
      {R"({"action": "delete"})", EINVAL},
      {R"({"action": "create", "name": "a", "memory": [{"bytes": 4096}]})", EINVAL},  // no cpus
      {R"({"action": "create", "name": "a", "cpus": "1", "cpu_count": 1, "memory": [{"bytes": 4096}]})", EINVAL},
      {R"({"action": "create", "name": "a", "cpus": "x", "memory": [{"bytes": 4096}]})", EINVAL},
      {R"({"action": "create", "name": "a", "cpus": "1"})", EINVAL},  // no memory
      {R"({"action": "create", "name": "a", "cpus": "1", "memory": [{"bytes": -1}]})", EINVAL},
      {R"({"action": "create", "name": "a", "cpus": "1", "memory": [{"bytes": 1.5}]})", EINVAL},
      {R"({"action": "create", "name": "a", "cpus": "1", "memory": [{"bytes": 4096, "extra": 1}]})", EINVAL},
      {R"({"action": "create", "name": "a", "cpus": "1", "memory": [{"node": 0}]})", EINVAL},
      {R"({"action": "create", "name": "a", "cpus": "1", "memory": [{"bytes": 4096}], "devices": ["gpu:0"]})", EINVAL},
      {R"({"action": "create", "name": "a", "cpu_count": 5000000000, "memory": [{"bytes": 4096}]})", EINVAL},
      {R"({"action": "init", "cpus": "3-1"})", EINVAL},
      {R"({"action": "init", "memory": "1G"})", EINVAL},
      {R"({"action": "plan"})", EINVAL},
      {R"({"action": "plan", "policy": "random"})", EINVAL},
      {R"({"action": "plan", "policy": "even", "apply": "yes"})", EINVAL},
      {R"({"action": "host-stop", "now": true})", EINVAL},
      {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
       EBADMSG},
  };
  for (const auto& [line, code] : bad) {
    auto r = rpc::parse_request(line);
    ASSERT_FALSE(r) << line;
    EXPECT_EQ(r.error().code(), code) << line << ": " << r.error().to_string();
    EXPECT_GT(std::strlen(r.error().message()), 0u);
  }
  auto unknown = rpc::parse_request(R"({"action": "show", "bogus": 1})");
  EXPECT_NE(std::string(unknown.error().message()).find("bogus"), std::string::npos);
}

TEST(RpcProtocol, OversizeRequestIsEmsgsize) {
  std::string big = R"({"action": "show", "name": ")" + std::string(rpc::kMaxRequestBytes, 'x') + "\"}";
  EXPECT_EQ(rpc::parse_request(big).error().code(), EMSGSIZE);
}

TEST(RpcProtocol, ResponsesRoundTrip) {
  auto ok = rpc::parse_response(rpc::encode_response(rpc::Response::success({{"a", 1}}, "text\n")));
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->ok);
  EXPECT_EQ(ok->result.at("a").as_int64(), 1);
  EXPECT_EQ(ok->text, "text\n");

  auto e = MK_FAIL(EBUSY, "instance is running", "'a' is active");
  auto bad = rpc::parse_response(rpc::encode_response(rpc::Response::failure(e, "stop it")));
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->ok);
  EXPECT_EQ(bad->error.errnum, EBUSY);
  EXPECT_EQ(bad->error.to_string(), e.to_string());
  EXPECT_EQ(bad->error.hint, "stop it");
  EXPECT_EQ(rpc::WireError::from(MK_FAIL(EIO, "plain", "%s", "")).to_string(), "plain");

  for (const char* junk : {"", "{}", R"({"ok": true})", R"({"ok": false, "error": {"errno": "x"}})", "nope"})
    EXPECT_EQ(rpc::parse_response(junk).error().code(), EBADMSG) << junk;
}


// ---- lifecycle actions (load, start, stop, ping, console, top) ----

// Every refusal is EINVAL with a message naming the field and the rule.
void expect_refused(const std::string& line, const std::string& words) {
  auto r = rpc::parse_request(line);
  ASSERT_FALSE(r) << "accepted: " << line;
  EXPECT_EQ(r.error().code(), EINVAL) << line << ": " << r.error().to_string();
  EXPECT_STREQ(r.error().what(), "bad request") << line;
  EXPECT_NE(std::string(r.error().message()).find(words), std::string::npos)
      << line << "\n  message: " << r.error().message() << "\n  expected to contain: " << words;
}

template <class A>
A parsed_as(const std::string& line) {
  auto r = rpc::parse_request(line);
  EXPECT_TRUE(r) << line << ": " << (r ? "" : r.error().to_string());
  if (!r) return A{};
  EXPECT_TRUE(std::holds_alternative<A>(*r)) << line << " parsed as " << rpc::action_name(*r);
  return std::holds_alternative<A>(*r) ? std::get<A>(*r) : A{};
}

TEST(RpcLifecycle, LoadRoundTripsEveryField) {
  rpc::LoadAction load{"web", "./images/mk-kernel", "mk.poll_budget=200 quiet", "/usr/bin/nginx -g 'daemon off;'"};
  auto l = std::get<rpc::LoadAction>(round_trip(load));
  EXPECT_EQ(l.name, "web");
  EXPECT_EQ(l.kernel, "./images/mk-kernel");  // as the user gave it: the daemon resolves it
  EXPECT_EQ(l.cmdline, "mk.poll_budget=200 quiet");
  EXPECT_EQ(l.init, "/usr/bin/nginx -g 'daemon off;'");
  // The limits themselves are accepted.
  rpc::LoadAction big{"web", "/k", std::string(4096, 'c'), std::string(4096, 'i')};
  auto b = std::get<rpc::LoadAction>(round_trip(big));
  EXPECT_EQ(b.cmdline.size(), 4096u);
  EXPECT_EQ(b.init.size(), 4096u);
}

TEST(RpcLifecycle, LoadDefaultsCmdlineAndInitToEmpty) {
  auto l = parsed_as<rpc::LoadAction>(R"({"action": "load", "name": "a", "kernel": "/boot/k"})");
  EXPECT_EQ(l.name, "a");
  EXPECT_EQ(l.kernel, "/boot/k");
  EXPECT_EQ(l.cmdline, "");
  EXPECT_EQ(l.init, "");
}

TEST(RpcLifecycle, LoadRefusals) {
  expect_refused(R"({"action": "load", "kernel": "/k"})", "load: missing field 'name'");
  expect_refused(R"({"action": "load", "name": "a"})", "load: missing field 'kernel'");
  expect_refused(R"({"action": "load", "name": "a", "kernel": ""})", "load.kernel: empty path");
  const std::string long_text(4097, 'x');
  expect_refused(R"({"action": "load", "name": "a", "kernel": "/k", "cmdline": ")" + long_text + "\"}",
                 "cmdline and init are at most 4096 bytes");
  expect_refused(R"({"action": "load", "name": "a", "kernel": "/k", "init": ")" + long_text + "\"}",
                 "cmdline and init are at most 4096 bytes");
  expect_refused(R"({"action": "load", "name": 1, "kernel": "/k"})", "load.name: expected a string");
  expect_refused(R"({"action": "load", "name": "a", "kernel": 7})", "load.kernel: expected a string");
  expect_refused(R"({"action": "load", "name": "a", "kernel": "/k", "cmdline": 3})", "load.cmdline: expected a string");
  expect_refused(R"({"action": "load", "name": "a", "kernel": "/k", "init": ["x"]})", "load.init: expected a string");
  expect_refused(R"({"action": "load", "name": "a", "kernel": "/k", "argv": "x"})", "load: unknown field 'argv'");
}

TEST(RpcLifecycle, LoadUserRoundTripsAndRefusals) {
  rpc::LoadAction l{"a", "/k", "", "", 65534u, 100u};
  auto back = std::get<rpc::LoadAction>(round_trip(l));
  EXPECT_EQ(back.uid, std::optional<uint32_t>(65534u));
  EXPECT_EQ(back.gid, std::optional<uint32_t>(100u));
  auto none = parsed_as<rpc::LoadAction>(R"({"action": "load", "name": "a", "kernel": "/k"})");
  EXPECT_FALSE(none.uid.has_value());
  EXPECT_FALSE(none.gid.has_value());
  expect_refused(R"({"action": "load", "name": "a", "kernel": "/k", "gid": 5})", "load.gid: only together with uid");
  expect_refused(R"({"action": "load", "name": "a", "kernel": "/k", "uid": 4294967295})", "above 4294967294");
  expect_refused(R"({"action": "load", "name": "a", "kernel": "/k", "uid": "root"})", "load.uid: expected a non-negative integer");
}

TEST(RpcLifecycle, StartRoundTripsAndDefaults) {
  for (uint32_t t : {1u, 12345u, 600000u}) {
    auto s = std::get<rpc::StartAction>(round_trip(rpc::StartAction{"web", t}));
    EXPECT_EQ(s.name, "web");
    EXPECT_EQ(s.timeout_ms, t);
  }
  auto d = parsed_as<rpc::StartAction>(R"({"action": "start", "name": "a"})");
  EXPECT_EQ(d.name, "a");
  EXPECT_EQ(d.timeout_ms, 10000u);
  EXPECT_FALSE(d.steer_irqs || d.evict_host_tasks || d.exclusive_memory);  // isolation extras: off
  for (int bits = 1; bits < 8; ++bits) {
    rpc::StartAction in{"web", 500};
    in.steer_irqs = bits & 1;
    in.evict_host_tasks = bits & 2;
    in.exclusive_memory = bits & 4;
    auto out = std::get<rpc::StartAction>(round_trip(in));
    EXPECT_EQ(out.steer_irqs, in.steer_irqs);
    EXPECT_EQ(out.evict_host_tasks, in.evict_host_tasks);
    EXPECT_EQ(out.exclusive_memory, in.exclusive_memory);
  }
  expect_refused(R"({"action": "start", "name": "a", "steer_irqs": 1})", "start.steer_irqs");
}

TEST(RpcLifecycle, StartRefusals) {
  expect_refused(R"({"action": "start"})", "start: missing field 'name'");
  expect_refused(R"({"action": "start", "name": "a", "timeout_ms": 0})", "start.timeout_ms: 0 is below 1");
  expect_refused(R"({"action": "start", "name": "a", "timeout_ms": 600001})",
                 "start.timeout_ms: 600001 is above 600000");
  expect_refused(R"({"action": "start", "name": "a", "timeout_ms": "100"})",
                 "start.timeout_ms: expected a non-negative integer");
  expect_refused(R"({"action": "start", "name": "a", "timeout_ms": -5})",
                 "start.timeout_ms: expected a non-negative integer");
  expect_refused(R"({"action": "start", "name": "a", "timeout_ms": 2.5})",
                 "start.timeout_ms: expected a non-negative integer");
  expect_refused(R"({"action": "start", "name": "a", "wait": true})", "start: unknown field 'wait'");
}

TEST(RpcLifecycle, StopRoundTripsAndDefaults) {
  rpc::StopAction stop{"web", true, 0, 600000};
  auto s = std::get<rpc::StopAction>(round_trip(stop));
  EXPECT_EQ(s.name, "web");
  EXPECT_TRUE(s.force);
  EXPECT_EQ(s.grace_ms, 0u);
  EXPECT_EQ(s.timeout_ms, 600000u);
  rpc::StopAction other{"db", false, 600000, 1};
  auto o = std::get<rpc::StopAction>(round_trip(other));
  EXPECT_FALSE(o.force);
  EXPECT_EQ(o.grace_ms, 600000u);
  EXPECT_EQ(o.timeout_ms, 1u);

  auto d = parsed_as<rpc::StopAction>(R"({"action": "stop", "name": "a"})");
  EXPECT_EQ(d.name, "a");
  EXPECT_FALSE(d.force);
  EXPECT_EQ(d.grace_ms, 2000u);
  EXPECT_EQ(d.timeout_ms, 5000u);
}

TEST(RpcLifecycle, StopRefusals) {
  expect_refused(R"({"action": "stop", "force": true})", "stop: missing field 'name'");
  expect_refused(R"({"action": "stop", "name": "a", "timeout_ms": 0})", "stop.timeout_ms: 0 is below 1");
  expect_refused(R"({"action": "stop", "name": "a", "timeout_ms": 600001})",
                 "stop.timeout_ms: 600001 is above 600000");
  expect_refused(R"({"action": "stop", "name": "a", "grace_ms": 600001})", "stop.grace_ms: 600001 is above 600000");
  expect_refused(R"({"action": "stop", "name": "a", "grace_ms": "1s"})",
                 "stop.grace_ms: expected a non-negative integer");
  expect_refused(R"({"action": "stop", "name": "a", "timeout_ms": "1"})",
                 "stop.timeout_ms: expected a non-negative integer");
  expect_refused(R"({"action": "stop", "name": "a", "force": 1})", "stop.force: expected true or false");
  expect_refused(R"({"action": "stop", "name": "a", "force": "yes"})", "stop.force: expected true or false");
  expect_refused(R"({"action": "stop", "name": "a", "kill": true})", "stop: unknown field 'kill'");
}

TEST(RpcLifecycle, PingRoundTripsAndDefaults) {
  rpc::PingAction to_host{"web", std::nullopt, 100000, 0};
  auto h = std::get<rpc::PingAction>(round_trip(to_host));
  EXPECT_EQ(h.name, "web");
  EXPECT_FALSE(h.from);
  EXPECT_EQ(h.count, 100000u);
  EXPECT_EQ(h.size, 0u);
  rpc::PingAction between{"web", "db", 1, 4096};
  auto b = std::get<rpc::PingAction>(round_trip(between));
  ASSERT_TRUE(b.from);
  EXPECT_EQ(*b.from, "db");
  EXPECT_EQ(b.count, 1u);
  EXPECT_EQ(b.size, 4096u);
  // Without "from" the request has no such key at all.
  EXPECT_EQ(rpc::encode_request(to_host).find("from"), std::string::npos);

  auto d = parsed_as<rpc::PingAction>(R"({"action": "ping", "name": "a"})");
  EXPECT_EQ(d.name, "a");
  EXPECT_FALSE(d.from);
  EXPECT_EQ(d.count, 10u);
  EXPECT_EQ(d.size, 64u);
}

TEST(RpcLifecycle, PingRefusals) {
  expect_refused(R"({"action": "ping", "from": "b"})", "ping: missing field 'name'");
  expect_refused(R"({"action": "ping", "name": "a", "count": 0})", "ping.count: 0 is below 1");
  expect_refused(R"({"action": "ping", "name": "a", "count": 100001})", "ping.count: 100001 is above 100000");
  expect_refused(R"({"action": "ping", "name": "a", "size": 4097})", "ping.size: 4097 is above 4096");
  expect_refused(R"({"action": "ping", "name": "a", "count": "10"})", "ping.count: expected a non-negative integer");
  expect_refused(R"({"action": "ping", "name": "a", "size": true})", "ping.size: expected a non-negative integer");
  expect_refused(R"({"action": "ping", "name": "a", "from": 2})", "ping.from: expected a string");
  expect_refused(R"({"action": "ping", "name": "a", "interval": 1})", "ping: unknown field 'interval'");
}

TEST(RpcLifecycle, ConsoleRoundTripsAndRefusals) {
  EXPECT_EQ(std::get<rpc::ConsoleAction>(round_trip(rpc::ConsoleAction{"web"})).name, "web");
  expect_refused(R"({"action": "console"})", "console: missing field 'name'");
  expect_refused(R"({"action": "console", "name": 3})", "console.name: expected a string");
  // -f is client-side: it never crosses the socket.
  expect_refused(R"({"action": "console", "name": "a", "follow": true})", "console: unknown field 'follow'");
}

TEST(RpcLifecycle, TopRoundTripsAndDefaults) {
  for (uint32_t ms : {50u, 777u, 10000u})
    EXPECT_EQ(std::get<rpc::TopAction>(round_trip(rpc::TopAction{ms})).interval_ms, ms);
  EXPECT_EQ(parsed_as<rpc::TopAction>(R"({"action": "top"})").interval_ms, 500u);
}

TEST(RpcLifecycle, TopRefusals) {
  expect_refused(R"({"action": "top", "interval_ms": 49})", "top.interval_ms: 49 is below 50");
  expect_refused(R"({"action": "top", "interval_ms": 10001})", "top.interval_ms: 10001 is above 10000");
  expect_refused(R"({"action": "top", "interval_ms": "1s"})", "top.interval_ms: expected a non-negative integer");
  expect_refused(R"({"action": "top", "name": "a"})", "top: unknown field 'name'");
}

TEST(RpcLifecycle, UpdateRoundTripsAndDefaults) {
  rpc::UpdateAction u{"web", "/opt/mk-kernel.2", std::string("--services=kv"), 600000, "corrupt-package"};
  auto b = std::get<rpc::UpdateAction>(round_trip(u));
  EXPECT_EQ(b.name, "web");
  EXPECT_EQ(b.kernel, "/opt/mk-kernel.2");
  EXPECT_EQ(b.cmdline, "--services=kv");
  EXPECT_EQ(b.timeout_ms, 600000u);
  EXPECT_EQ(b.fault, "corrupt-package");

  auto d = parsed_as<rpc::UpdateAction>(R"({"action": "update", "name": "a"})");
  EXPECT_EQ(d.name, "a");
  EXPECT_TRUE(d.kernel.empty());
  EXPECT_FALSE(d.cmdline);  // absent: keep the loaded command line
  EXPECT_EQ(d.timeout_ms, 10000u);
  EXPECT_TRUE(d.fault.empty());
  auto e = parsed_as<rpc::UpdateAction>(R"({"action": "update", "name": "a", "cmdline": ""})");
  EXPECT_EQ(e.cmdline, "");  // present and empty: a new, empty command line
}

TEST(RpcLifecycle, UpdateRefusals) {
  expect_refused(R"({"action": "update"})", "update: missing field 'name'");
  expect_refused(R"({"action": "update", "name": "a", "timeout_ms": 0})", "update.timeout_ms: 0 is below 1");
  expect_refused(R"({"action": "update", "name": "a", "timeout_ms": 600001})",
                 "update.timeout_ms: 600001 is above 600000");
  expect_refused(R"({"action": "update", "name": "a", "fault": "explode"})",
                 "update.fault: 'explode' (known: corrupt-package, host-exit-after-freeze)");
  expect_refused(R"({"action": "update", "name": "a", "cmdline": ")" + std::string(4097, 'x') + R"("})",
                 "update.cmdline: at most 4096 bytes");
  expect_refused(R"({"action": "update", "name": "a", "kernel": 7})", "update.kernel: expected a string");
  expect_refused(R"({"action": "update", "name": "a", "force": true})", "update: unknown field 'force'");
}

TEST(RpcLifecycle, StagedUpdateAndAbortRoundTripAndRefusals) {
  rpc::UpdateAction u;
  u.name = "kv";
  u.staged = true;
  u.spare_cpus = *mk::CpuSet::parse("2-3");
  u.fault = "fail:services";
  auto b = std::get<rpc::UpdateAction>(round_trip(u));
  EXPECT_TRUE(b.staged);
  EXPECT_EQ(b.spare_cpus->to_string(), "2-3");
  EXPECT_EQ(b.fault, "fail:services");
  auto d = parsed_as<rpc::UpdateAction>(R"({"action": "update", "name": "a", "staged": true})");
  EXPECT_TRUE(d.staged);
  EXPECT_FALSE(d.spare_cpus);
  EXPECT_FALSE(parsed_as<rpc::UpdateAction>(R"({"action": "update", "name": "a"})").staged);
  expect_refused(R"({"action": "update", "name": "a", "spare_cpus": "2"})", "update.spare_cpus: only with staged");
  expect_refused(R"({"action": "update", "name": "a", "staged": true, "spare_cpus": ""})", "update.spare_cpus: empty");
  expect_refused(R"({"action": "update", "name": "a", "staged": true, "fault": "corrupt-package"})",
                 "update.fault: 'corrupt-package' (known: fail:STEP, host-exit-after:STEP)");
  expect_refused(R"({"action": "update", "name": "a", "fault": "fail:tenants"})",
                 "update.fault: 'fail:tenants' (known: corrupt-package, host-exit-after-freeze)");
  expect_refused(R"({"action": "update", "name": "a", "staged": 1})", "update.staged: expected");
  EXPECT_EQ(std::get<rpc::UpdateAbortAction>(round_trip(rpc::UpdateAbortAction{"kv"})).name, "kv");
  expect_refused(R"({"action": "update-abort"})", "update-abort: missing field 'name'");
}

TEST(RpcLifecycle, CpuMoveRoundTripsAndDefaults) {
  rpc::CpuMoveAction m{3, "old", "new", 250, "fail:add CPU"};
  auto b = std::get<rpc::CpuMoveAction>(round_trip(m));
  EXPECT_EQ(b.cpu, 3u);
  EXPECT_EQ(b.from, "old");
  EXPECT_EQ(b.to, "new");
  EXPECT_EQ(b.timeout_ms, 250u);
  EXPECT_EQ(b.fault, "fail:add CPU");
  auto d = parsed_as<rpc::CpuMoveAction>(R"({"action": "cpu-move", "cpu": 0, "from": "a", "to": "b"})");
  EXPECT_EQ(d.cpu, 0u);
  EXPECT_EQ(d.timeout_ms, 5000u);
  EXPECT_TRUE(d.fault.empty());
}

TEST(RpcLifecycle, CpuMoveRefusals) {
  expect_refused(R"({"action": "cpu-move", "from": "a", "to": "b"})", "cpu-move: missing field 'cpu'");
  expect_refused(R"({"action": "cpu-move", "cpu": 1, "to": "b"})", "cpu-move: missing field 'from'");
  expect_refused(R"({"action": "cpu-move", "cpu": 1, "from": "a"})", "cpu-move: missing field 'to'");
  expect_refused(R"({"action": "cpu-move", "cpu": 8192, "from": "a", "to": "b"})", "cpu-move.cpu: 8192 is above 8191");
  expect_refused(R"({"action": "cpu-move", "cpu": -1, "from": "a", "to": "b"})",
                 "cpu-move.cpu: expected a non-negative integer");
  expect_refused(R"({"action": "cpu-move", "cpu": 1, "from": "a", "to": "b", "timeout_ms": 0})",
                 "cpu-move.timeout_ms: 0 is below 1");
  expect_refused(R"({"action": "cpu-move", "cpu": 1, "from": "a", "to": "b", "fault": "boom"})",
                 "cpu-move.fault: 'boom' (known: fail:STEP, host-exit-after:STEP)");
  expect_refused(R"({"action": "cpu-move", "cpu": 1, "from": "a", "to": "b", "fault": "fail:"})",
                 "cpu-move.fault: 'fail:'");
  expect_refused(R"({"action": "cpu-move", "cpu": 1, "from": "a", "to": "b", "name": "x"})",
                 "cpu-move: unknown field 'name'");
}

TEST(RpcLifecycle, ResizeRoundTripsAndRefusals) {
  rpc::ResizeAction r{"kv", *mk::CpuSet::parse("0-1,4"), 100, "host-exit-after:release CPU 1"};
  auto b = std::get<rpc::ResizeAction>(round_trip(r));
  EXPECT_EQ(b.name, "kv");
  EXPECT_EQ(b.cpus.to_string(), "0-1,4");
  EXPECT_EQ(b.timeout_ms, 100u);
  EXPECT_EQ(b.fault, "host-exit-after:release CPU 1");
  auto d = parsed_as<rpc::ResizeAction>(R"({"action": "resize", "name": "a", "cpus": "0"})");
  EXPECT_EQ(d.cpus.to_string(), "0");
  EXPECT_EQ(d.timeout_ms, 5000u);
  expect_refused(R"({"action": "resize", "name": "a"})", "resize: missing field 'cpus'");
  expect_refused(R"({"action": "resize", "cpus": "0"})", "resize: missing field 'name'");
  expect_refused(R"({"action": "resize", "name": "a", "cpus": "1-x"})", "resize.cpus");
  expect_refused(R"({"action": "resize", "name": "a", "cpus": "0", "fault": "host-exit-after:"})",
                 "resize.fault: 'host-exit-after:'");
}

TEST(RpcLifecycle, ResourcesRoundTripsAndRefusals) {
  rpc::ResourcesAction m;
  m.name = "kv";
  m.memory = std::vector<mk::MemorySpec>{{64ull << 20, std::nullopt}, {32ull << 20, 1u}};
  m.timeout_ms = 250;
  m.fault = "fail:add region 1";
  auto b = std::get<rpc::ResourcesAction>(round_trip(m));
  EXPECT_EQ(b.name, "kv");
  ASSERT_TRUE(b.memory);
  ASSERT_EQ(b.memory->size(), 2u);
  EXPECT_EQ((*b.memory)[0].bytes, 64ull << 20);
  EXPECT_FALSE((*b.memory)[0].node);
  EXPECT_EQ((*b.memory)[1].node, 1u);
  EXPECT_FALSE(b.devices);
  EXPECT_EQ(b.timeout_ms, 250u);
  EXPECT_EQ(b.fault, "fail:add region 1");
  rpc::ResourcesAction d;
  d.name = "kv";
  d.devices = std::vector<mk::DeviceSpec>{*mk::DeviceSpec::parse("listen:127.0.0.1:6380"),
                                          *mk::DeviceSpec::parse("file:/srv/x:ro")};
  auto e = std::get<rpc::ResourcesAction>(round_trip(d));
  ASSERT_TRUE(e.devices);
  EXPECT_EQ(*e.devices, *d.devices);
  EXPECT_FALSE(e.memory);
  // No device but the console is a list too.
  auto none = parsed_as<rpc::ResourcesAction>(R"({"action": "resources", "name": "a", "devices": []})");
  ASSERT_TRUE(none.devices);
  EXPECT_TRUE(none.devices->empty());
  EXPECT_EQ(none.timeout_ms, 5000u);
  expect_refused(R"({"action": "resources", "name": "a"})", "resources: give exactly one of memory and devices");
  expect_refused(R"({"action": "resources", "name": "a", "memory": [{"bytes": 4096}], "devices": []})",
                 "give exactly one");
  expect_refused(R"({"action": "resources", "name": "a", "memory": []})", "resources.memory: at least one region");
  expect_refused(R"({"action": "resources", "name": "a", "memory": [{"node": 0}]})", "missing field 'bytes'");
  expect_refused(R"({"action": "resources", "name": "a", "devices": ["tape:x"]})", "resources.devices");
  expect_refused(R"({"action": "resources", "name": "a", "devices": [], "fault": "boom"})", "resources.fault: 'boom'");
  expect_refused(R"({"action": "resources", "devices": []})", "resources: missing field 'name'");
}

TEST(RpcProtocol, ProgressFramesRoundTripAndAreToldFromResponses) {
  const boost::json::object p{{"instance", "a"}, {"phase", "freeze"}, {"ms", 0.25}};
  const std::string line = rpc::encode_progress(p);
  auto back = rpc::parse_progress(line);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, p);
  // A response is never taken for progress, and progress never for a response.
  EXPECT_FALSE(rpc::parse_progress(rpc::encode_response(rpc::Response::success({{"progress", 1}}, "x"))));
  EXPECT_FALSE(rpc::parse_response(line));
  EXPECT_FALSE(rpc::parse_progress(R"({"progress": 3})"));
  EXPECT_FALSE(rpc::parse_progress(R"({"progress": {}, "ok": true})"));
  EXPECT_FALSE(rpc::parse_progress(R"({"progress": {"a": )"));
}

TEST(RpcLifecycle, NamesAndClassification) {
  const std::vector<std::pair<rpc::Action, std::string>> lifecycle = {
      {rpc::LoadAction{}, "load"}, {rpc::StartAction{}, "start"},     {rpc::StopAction{}, "stop"},
      {rpc::PingAction{}, "ping"}, {rpc::ConsoleAction{}, "console"}, {rpc::TopAction{}, "top"},
      {rpc::UpdateAction{}, "update"}, {rpc::CpuMoveAction{}, "cpu-move"}, {rpc::ResizeAction{}, "resize"},
      {rpc::UpdateAbortAction{}, "update-abort"}, {rpc::ResourcesAction{}, "resources"},
  };
  for (const auto& [a, name] : lifecycle) {
    EXPECT_EQ(rpc::action_name(a), name);
    EXPECT_TRUE(rpc::is_lifecycle(a)) << name;
    EXPECT_FALSE(rpc::changes_partition(a)) << name;
    // The wire name is what encode_request writes and parse_request dispatches on.
    EXPECT_NE(rpc::encode_request(a).find("\"action\":\"" + name + "\""), std::string::npos) << name;
  }
  rpc::PlanAction applied;
  applied.apply = true;
  const std::vector<rpc::Action> others = {rpc::InitAction{}, rpc::CreateAction{},     rpc::DeleteAction{},
                                           rpc::ShowAction{}, rpc::PlanAction{},       applied,
                                           rpc::HostStatusAction{}, rpc::HostStopAction{}};
  for (const auto& a : others) EXPECT_FALSE(rpc::is_lifecycle(a)) << rpc::action_name(a);
}

TEST(RpcLifecycle, UnknownActionListsTheLifecycleActions) {
  auto r = rpc::parse_request(R"({"action": "reboot", "name": "a"})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EOPNOTSUPP);
  const std::string msg = r.error().message();
  EXPECT_NE(msg.find("'reboot'"), std::string::npos) << msg;
  for (const char* a : {"load", "start", "stop", "ping", "console", "top", "update", "cpu-move", "resize"})
    EXPECT_NE(msg.find(std::string(" ") + a), std::string::npos) << a << " missing from: " << msg;
}

}  // namespace
