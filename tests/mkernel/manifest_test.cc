// make_boot_tree: the fd layout the image is started with (manifest.h):
// memory regions, console, devices, the host channel, one fd triple per peer
// channel in BootOptions::peers order, and last the console's host end
// (the console device's "host-fd" property).
#include "mkernel/manifest.h"

#include <gtest/gtest.h>

#include "mk/abi/control_messages.h"
#include "mk/units.h"
#include "test_topologies.h"

namespace mk {
namespace {

class ManifestTest : public ::testing::Test {
protected:
  void SetUp() override { topo = test::load(test::kRaptorLake); }
  // Two CPUs, one region, one file device: fds 4 (memory), 5 (console),
  // 6 (file), then the channels from 7.
  Instance web() {
    Instance i;
    i.id = 2;
    i.name = "web";
    i.cpus = CpuSet::of({4, 5});
    i.memory = {{0, kGiB}};
    i.devices = {*DeviceSpec::parse("file:/srv/data:ro")};
    return i;
  }
  Topology topo;
};

const BootDevice &console_of(const BootTree &t) {
  for (const auto &d : t.devices)
    if (d.kind == DeviceKind::kConsole)
      return d;
  ADD_FAILURE() << "no console device";
  static const BootDevice none;
  return none;
}

TEST_F(ManifestTest, HostChannelThenConsoleHostFdByDefault) {
  auto t = make_boot_tree(topo, web(), BootOptions{});
  ASSERT_TRUE(t) << t.error().to_string();
  ASSERT_EQ(t->memory.size(), 1u);
  EXPECT_EQ(t->memory[0].fd, kFirstResourceFd);
  EXPECT_EQ(console_of(*t).fd, 5);
  ASSERT_EQ(t->ipi.channels.size(), 1u);
  const IpiChannel &host = t->ipi.channels[0];
  EXPECT_EQ(host.peer_id, abi::kHostId);
  EXPECT_EQ(host.fd, 7);
  EXPECT_EQ(host.side, 1);
  EXPECT_EQ(first_channel_fd(*t), 7); // the host-fd property is not a device fd
  // The last fd: right after the host channel's triple.
  EXPECT_EQ(console_of(*t).properties.at("host-fd"), "10");
}

TEST_F(ManifestTest, PeersGetConsecutiveTriplesAfterTheHostChannel) {
  BootOptions o;
  o.peers = {{3, "db", 0, kHostRingSlots},
             {9, "cache", 1, 128},
             {511, "metrics", 0, 64}};
  auto t = make_boot_tree(topo, web(), o);
  ASSERT_TRUE(t) << t.error().to_string();
  ASSERT_EQ(t->ipi.channels.size(), 4u);
  EXPECT_EQ(t->ipi.channels[0].peer_id, abi::kHostId);
  EXPECT_EQ(t->ipi.channels[0].fd, 7);
  EXPECT_EQ(t->ipi.channels[0].side, 1);
  const struct {
    uint32_t peer;
    const char *name;
    int fd;
    uint8_t side;
    uint32_t ring;
  } want[] = {{3, "db", 10, 0, kHostRingSlots * 64},
              {9, "cache", 13, 1, 128 * 64},
              {511, "metrics", 16, 0, 64 * 64}};
  for (std::size_t k = 0; k < 3; ++k) {
    const IpiChannel &c = t->ipi.channels[k + 1];
    SCOPED_TRACE(want[k].name);
    EXPECT_EQ(c.peer_id, want[k].peer);
    EXPECT_EQ(c.peer_name, want[k].name);
    EXPECT_EQ(c.fd, want[k].fd);
    EXPECT_EQ(c.side, want[k].side);
    EXPECT_EQ(c.ring_size, want[k].ring);
    EXPECT_EQ(c.role, ChannelRole::kBidirectional);
  }
  EXPECT_EQ(console_of(*t).properties.at("host-fd"), "19");
  // The tree survives the wire: side and host-fd included.
  auto blob = emit_boot_tree(*t);
  ASSERT_TRUE(blob) << blob.error().to_string();
  auto back = parse_boot_tree(*blob);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, *t);
  EXPECT_EQ(back->ipi.channels[1].side, 0);
  EXPECT_EQ(console_of(*back).properties.at("host-fd"), "19");
}

TEST_F(ManifestTest, NoConsoleHostFdWhenNotAsked) {
  BootOptions o;
  o.console_host_fd = false;
  o.peers = {{3, "db", 0, kHostRingSlots}};
  auto t = make_boot_tree(topo, web(), o);
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(console_of(*t).properties.count("host-fd"), 0u);
  EXPECT_TRUE(console_of(*t).properties.empty());
  EXPECT_EQ(console_of(*t).fd, 5); // the console itself is unchanged
  ASSERT_EQ(t->ipi.channels.size(), 2u);
  EXPECT_EQ(t->ipi.channels[1].fd, 10);
}

TEST_F(ManifestTest, WithoutAHostChannelPeersStartAtTheFirstChannelFd) {
  BootOptions o;
  o.host_channel = false;
  o.peers = {{3, "db", 1, kHostRingSlots}, {4, "cache", 0, kHostRingSlots}};
  auto t = make_boot_tree(topo, web(), o);
  ASSERT_TRUE(t) << t.error().to_string();
  ASSERT_EQ(t->ipi.channels.size(), 2u);
  EXPECT_EQ(t->ipi.channels[0].peer_id, 3u);
  EXPECT_EQ(t->ipi.channels[0].fd, 7);
  EXPECT_EQ(t->ipi.channels[1].fd, 10);
  EXPECT_EQ(console_of(*t).properties.at("host-fd"), "13");
}

TEST_F(ManifestTest, MinimalInstanceConsoleHostFd) {
  Instance i;
  i.id = 1;
  i.name = "a";
  i.cpus = CpuSet::of({0});
  i.memory = {{0, kGiB}};
  auto t = make_boot_tree(topo, i, BootOptions{});
  ASSERT_TRUE(t) << t.error().to_string();
  // 4 memory, 5 console, 6..8 host channel, 9 the console's host end.
  EXPECT_EQ(t->ipi.channels.at(0).fd, 6);
  EXPECT_EQ(console_of(*t).properties.at("host-fd"), "9");
}

TEST_F(ManifestTest, RefusesChannelsTheBootTreeForbids) {
  const struct {
    const char *label;
    BootOptions opts;
    const char *detail;
  } cases[] = {
      {"side a towards the host",
       {.host_channel = false,
        .peers = {{abi::kHostId, "host", 0, kHostRingSlots}}},
       "the host channel's side is the host's to create"},
      {"peer is the host again",
       {.peers = {{abi::kHostId, "host2", 1, kHostRingSlots}}},
       "duplicate channel"},
      {"peer is itself",
       {.peers = {{2, "web", 0, kHostRingSlots}}},
       "channel peer 2 is out of range"},
      {"peer twice",
       {.peers = {{3, "db", 0, kHostRingSlots}, {3, "db", 1, kHostRingSlots}}},
       "duplicate channel"},
      {"side 2",
       {.peers = {{3, "db", 2, kHostRingSlots}}},
       "'mkernel,side' is 2"},
      {"bad peer name",
       {.peers = {{3, "d b", 0, kHostRingSlots}}},
       "'peer-name' 'd b'"},
  };
  for (const auto &c : cases) {
    SCOPED_TRACE(c.label);
    auto t = make_boot_tree(topo, web(), c.opts);
    ASSERT_FALSE(t);
    EXPECT_EQ(t.error().code(), EINVAL);
    EXPECT_NE(std::string(t.error().detail()).find(c.detail), std::string::npos)
        << t.error().to_string();
  }
}

TEST_F(ManifestTest, ParkedSuccessorDevicesWithoutFdsAndTheHandoverSocketLast) {
  // A live update's successor: the file device comes in the handoff package
  // (fd -1, no number taken), the handover socket follows the console's host end.
  Instance i = web();
  i.devices.push_back(*DeviceSpec::parse("listen:127.0.0.1:6379"));
  BootOptions bo;
  bo.device_fds = false;
  bo.parked = true;
  auto t = make_boot_tree(topo, i, bo);
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(console_of(*t).fd, console_fd_of(i));
  EXPECT_EQ(console_of(*t).fd, 5);
  int listed = 0;
  for (const auto &d : t->devices) {
    if (d.kind == DeviceKind::kFile || d.kind == DeviceKind::kListen) {
      EXPECT_EQ(d.fd, -1) << d.name;
      ++listed;
    }
  }
  EXPECT_EQ(listed, 2);
  EXPECT_EQ(t->ipi.channels.at(0).fd, 6);  // right after the console
  EXPECT_EQ(console_of(*t).properties.at("host-fd"), "9");
  ASSERT_TRUE(t->handover_socket.has_value());
  EXPECT_EQ(*t->handover_socket, 10);
  EXPECT_EQ(t->handover_socket_host, 11);
  EXPECT_TRUE(t->parked);
  // The normal layout has a handover socket too (staged updates), after
  // the devices' fds, and is not parked.
  auto n = make_boot_tree(topo, i, BootOptions{});
  ASSERT_TRUE(n);
  EXPECT_EQ(n->handover_socket, 12);
  EXPECT_EQ(n->handover_socket_host, 13);
  EXPECT_FALSE(n->parked);
  EXPECT_EQ(console_of(*n).fd, console_fd_of(i));
  BootOptions none;
  none.handover_socket = false;
  none.parked = true;  // no socket: no parking
  auto x = make_boot_tree(topo, i, none);
  ASSERT_TRUE(x);
  EXPECT_FALSE(x->handover_socket);
  EXPECT_FALSE(x->parked);
}

TEST_F(ManifestTest, RefusesACpuTheTopologyDoesNotKnow) {
  Instance i = web();
  i.cpus = CpuSet::of({4, 8000});
  auto t = make_boot_tree(topo, i, BootOptions{});
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), EINVAL);
  EXPECT_STREQ(t.error().what(), "cpu not in topology");
  EXPECT_NE(std::string(t.error().detail()).find("cpu 8000"), std::string::npos)
      << t.error().to_string();
}

} // namespace
} // namespace mk
