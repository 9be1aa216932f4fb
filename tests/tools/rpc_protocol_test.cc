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

}  // namespace
