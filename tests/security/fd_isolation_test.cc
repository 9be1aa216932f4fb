// No fd of one instance in another (issue #8). Two KV instances are booted
// through mkctl/mkerneld (fa on CPU 0 with a listen device and a shell tenant
// that has two children, fb on CPU 1 with two memory regions and a sleep
// tenant); they share an IPI channel. Then every process of each instance's
// cgroup (cgroup.procs: the image and every tenant) is walked: each fd
// (/proc/PID/fd: readlink, stat -> st_dev/st_ino, fdinfo for eventfd ids and
// pidfd pids) and each mapping (/proc/PID/maps: memfd mappings by dev/inode).
//
// Ownership comes from the host's side: the runtime record mkerneld keeps
// per instance (`mkctl show NAME --json`: the fd numbers inside the image of
// its memory regions, host channel, peer channels with the peer's id,
// console read end, handover socket), cross-checked against the memfds
// mkerneld itself holds (/proc/<mkerneld>/fd: mk-NAME-memN per instance).
// Asserted:
//  - an object (memfd, pipe, socket, file, pidfd, eventfd) held or mapped by
//    two instances is a channel both records name as a peer channel between
//    them, and nothing else;
//  - an object an instance shares with mkerneld is one of its own (regions,
//    host channel, peer channels, console pipe, handover socket): no control
//    socket, lock, state or log file, other instance's console pipe or pidfd;
//  - every memfd an instance holds or maps is its own (by inode and by name);
//    a pidfd names a process of the instance itself.
// The walk must be able to fail: it must find each instance's own regions
// and channel ends on fds and in maps, the pair channel in both instances,
// and the checker run on a deliberately wrong ownership model (the peer
// channel undeclared, a region attributed to the other instance) must
// report those as violations.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <map>
#include <set>

#include "../tools/daemon_fixture.h"
#include "../tools/instance_probe.h"

namespace {

using namespace std::chrono_literals;

// An object's identity. Objects with a real inode (memfd, pipe, socket,
// file, pidfs pidfd) by device and inode; eventfds (one shared anon inode)
// by their fdinfo eventfd-id.
using Key = std::string;

Key inode_key(dev_t dev, ino_t ino) { return std::to_string(major(dev)) + ":" + std::to_string(minor(dev)) + ":" + std::to_string(ino); }

std::string fdinfo_field(const fs::path& fdinfo, const std::string& name) {
  std::ifstream f(fdinfo);
  for (std::string line; std::getline(f, line);)
    if (line.rfind(name + ":", 0) == 0) return trim(line.substr(line.find_first_not_of(" \t", name.size() + 1)));
  return "";
}

struct FdEntry {
  int fd;
  std::string link;  // readlink
  Key key;           // "" for anon objects without an identity (eventpoll, timerfd)
  std::string pidfd_pid;
};

struct MapEntry {
  Key key;
  std::string path;
};

struct ProcWalk {
  pid_t pid;
  std::string comm;
  std::vector<FdEntry> fds;
  std::vector<MapEntry> memfd_maps;
  std::size_t map_lines = 0;
};

ProcWalk walk(pid_t pid) {
  ProcWalk w{pid, trim(slurp(fs::path("/proc") / std::to_string(pid) / "comm")), {}, {}, 0};
  const fs::path proc = fs::path("/proc") / std::to_string(pid);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(proc / "fd", ec)) {
    FdEntry f{std::stoi(e.path().filename().string()), "", "", ""};
    f.link = fs::read_symlink(e.path(), ec).string();
    if (ec) continue;  // closed meanwhile
    if (f.link.rfind("anon_inode:", 0) == 0) {
      const fs::path info = proc / "fdinfo" / std::to_string(f.fd);
      if (f.link == "anon_inode:[eventfd]") f.key = "eventfd:" + fdinfo_field(info, "eventfd-id");
      if (f.link == "anon_inode:[pidfd]") f.pidfd_pid = fdinfo_field(info, "Pid");
    } else {
      struct stat st{};
      if (::stat(e.path().c_str(), &st) != 0) continue;
      f.key = inode_key(st.st_dev, st.st_ino);
      if (f.link.rfind("pidfd:", 0) == 0 || f.link == "anon_inode:[pidfd]")
        f.pidfd_pid = fdinfo_field(proc / "fdinfo" / std::to_string(f.fd), "Pid");
    }
    w.fds.push_back(f);
  }
  std::ifstream maps(proc / "maps");
  for (std::string line; std::getline(maps, line);) {
    ++w.map_lines;
    // start-end perms offset MAJ:MIN inode path
    std::istringstream in(line);
    std::string range, perms, offset, devs, path;
    unsigned long inode = 0;
    in >> range >> perms >> offset >> devs >> inode;
    std::getline(in, path);
    path = path.empty() ? "" : path.substr(path.find_first_not_of(' ') == std::string::npos ? 0 : path.find_first_not_of(' '));
    if (path.rfind("/memfd:", 0) != 0) continue;
    const unsigned maj = static_cast<unsigned>(std::stoul(devs.substr(0, devs.find(':')), nullptr, 16));
    const unsigned min = static_cast<unsigned>(std::stoul(devs.substr(devs.find(':') + 1), nullptr, 16));
    w.memfd_maps.push_back({std::to_string(maj) + ":" + std::to_string(min) + ":" + std::to_string(inode), path});
  }
  return w;
}

// What the host says an instance owns.
struct Ownership {
  std::string name;
  int id = 0;
  pid_t image = 0;
  // A channel is its memfd and its two doorbell eventfds: fds N, N+1, N+2
  // in the image (kernel/sdk/src/boot_info.cc), N from the record.
  std::set<Key> regions, host_channel, console, handover;
  Key host_channel_memfd;
  std::map<int, std::set<Key>> peers;  // peer id -> channel keys
  std::map<int, Key> peer_memfd;       // peer id -> channel memfd key
  std::set<Key> shared_with_host() const {
    std::set<Key> s = regions;
    s.insert(host_channel.begin(), host_channel.end());
    s.insert(console.begin(), console.end());
    s.insert(handover.begin(), handover.end());
    for (const auto& [id, k] : peers) s.insert(k.begin(), k.end());
    return s;
  }
};

struct InstanceWalk {
  std::vector<ProcWalk> procs;
  std::set<pid_t> pids() const {
    std::set<pid_t> s;
    for (const auto& p : procs) s.insert(p.pid);
    return s;
  }
};

// The checker: violations of the rules above, one line each.
std::vector<std::string> violations(const std::vector<Ownership>& own, const std::map<std::string, InstanceWalk>& walks,
                                    const ProcWalk& daemon, const fs::path& rt) {
  std::vector<std::string> out;
  std::set<Key> daemon_keys;
  std::map<Key, std::string> daemon_link;
  for (const auto& f : daemon.fds)
    if (!f.key.empty()) {
      daemon_keys.insert(f.key);
      daemon_link[f.key] = f.link;
    }
  // key -> instances that hold or map it (with an example).
  std::map<Key, std::map<std::string, std::string>> holders;
  for (const auto& o : own) {
    const InstanceWalk& iw = walks.at(o.name);
    const std::set<pid_t> mine = iw.pids();
    const std::set<Key> host_shared = o.shared_with_host();
    std::set<Key> own_memfds = host_shared;
    for (const auto& p : iw.procs) {
      const std::string who = o.name + " pid " + std::to_string(p.pid) + " (" + p.comm + ")";
      for (const auto& f : p.fds) {
        const std::string what = who + " fd " + std::to_string(f.fd) + " -> " + f.link;
        if (!f.key.empty() && f.link != "/dev/null") holders[f.key][o.name] = what;
        if (!f.pidfd_pid.empty() && !mine.count(static_cast<pid_t>(std::atoi(f.pidfd_pid.c_str()))))
          out.push_back(what + ": a pidfd of pid " + f.pidfd_pid + ", not a process of " + o.name);
        if (!f.link.empty() && f.link.rfind(rt.string(), 0) == 0)
          out.push_back(what + ": a file of mkerneld's runtime directory");
        if (!f.key.empty() && f.link != "/dev/null" && daemon_keys.count(f.key) && !host_shared.count(f.key))
          out.push_back(what + ": mkerneld's own fd (" + daemon_link[f.key] + "), not one of " + o.name + "'s");
        if (f.link.rfind("/memfd:", 0) == 0) {
          const bool boot_tree = f.link.rfind("/memfd:mk-boot-tree-" + o.name + " ", 0) == 0;
          if (!own_memfds.count(f.key) && !boot_tree) out.push_back(what + ": a memfd that is not " + o.name + "'s");
          for (const auto& other : own)
            if (other.name != o.name && (f.link.find("mk-" + other.name + "-") != std::string::npos ||
                                         f.link.find("mk-boot-tree-" + other.name + " ") != std::string::npos))
              out.push_back(what + ": named after instance " + other.name);
        }
      }
      for (const auto& m : p.memfd_maps) {
        const std::string what = who + " maps " + m.path;
        holders[m.key][o.name] = what;
        const bool boot_tree = m.path.rfind("/memfd:mk-boot-tree-" + o.name + " ", 0) == 0;
        if (!own_memfds.count(m.key) && !boot_tree) out.push_back(what + ": a memfd mapping that is not " + o.name + "'s");
      }
    }
  }
  // Held by two instances: only a channel both records name between them.
  for (const auto& [key, by] : holders) {
    if (by.size() < 2) continue;
    std::vector<const Ownership*> who;
    for (const auto& o : own)
      if (by.count(o.name)) who.push_back(&o);
    bool ok = who.size() == 2;
    if (ok) {
      auto a = who[0]->peers.find(who[1]->id);
      auto b = who[1]->peers.find(who[0]->id);
      ok = a != who[0]->peers.end() && b != who[1]->peers.end() && a->second.count(key) && b->second.count(key);
    }
    if (!ok) {
      std::string line = "object " + key + " held by " + std::to_string(by.size()) + " instances:";
      for (const auto& [n, what] : by) line += " [" + what + "]";
      out.push_back(line + ": not a channel between them");
    }
  }
  return out;
}

class FdIsolation : public Daemon {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (cgroups, namespaces)";
    if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs CPUs 0 and 1";
    Daemon::SetUp();
    a = "fda-" + std::to_string(::getpid());
    b = "fdb-" + std::to_string(::getpid());
  }
  void TearDown() override {
    if (::geteuid() != 0 || std::thread::hardware_concurrency() < 2) return;
    run("stop " + a + " --force");
    run("stop " + b + " --force");
    Daemon::TearDown();
    for (const std::string& n : {a, b})
      for (const char* h : {"cpuset", "memory"}) ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel/" + n).c_str());
    for (const char* h : {"cpuset", "memory"}) ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel").c_str());
  }
  json::object show(const std::string& n) {
    CliRun r = run("show " + n + " --json");
    EXPECT_EQ(r.code, 0) << r.err;
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    return !ec && v.is_object() ? v.as_object().at("instance").as_object() : json::object{};
  }
  // The identity of fd `fd` of `pid`, as walk() computes it.
  Key key_of(pid_t pid, int fd) {
    const fs::path proc = fs::path("/proc") / std::to_string(pid);
    std::error_code ec;
    const std::string link = fs::read_symlink(proc / "fd" / std::to_string(fd), ec).string();
    EXPECT_FALSE(ec) << pid << " fd " << fd;
    if (link == "anon_inode:[eventfd]") return "eventfd:" + fdinfo_field(proc / "fdinfo" / std::to_string(fd), "eventfd-id");
    struct stat st{};
    const std::string p = (proc / "fd" / std::to_string(fd)).string();
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return inode_key(st.st_dev, st.st_ino);
  }
  std::set<Key> channel_keys(pid_t pid, int fd) {
    std::set<Key> s;
    for (int i = 0; i < 3; ++i) s.insert(key_of(pid, fd + i));
    EXPECT_EQ(s.size(), 3u);
    for (int i = 1; i < 3; ++i) {
      EXPECT_EQ(key_of(pid, fd + i).rfind("eventfd:", 0), 0u) << "fd " << fd << "+" << i << " of " << pid << " is not an eventfd";
    }
    return s;
  }
  Ownership ownership(const std::string& n) {
    json::object inst = show(n);
    Ownership o;
    o.name = n;
    o.id = static_cast<int>(inst.at("id").as_int64());
    const json::object& rt_rec = inst.at("runtime").as_object();
    o.image = static_cast<pid_t>(rt_rec.at("pid").as_int64());
    for (const auto& fd : rt_rec.at("region_fds").as_array()) o.regions.insert(key_of(o.image, static_cast<int>(fd.as_int64())));
    const int hc = static_cast<int>(rt_rec.at("host_channel_fd").as_int64());
    o.host_channel = channel_keys(o.image, hc);
    o.host_channel_memfd = key_of(o.image, hc);
    o.console.insert(key_of(o.image, static_cast<int>(rt_rec.at("console_host_fd").as_int64())));
    if (rt_rec.contains("handover_host_fd"))
      o.handover.insert(key_of(o.image, static_cast<int>(rt_rec.at("handover_host_fd").as_int64())));
    for (const auto& p : rt_rec.at("peers").as_array()) {
      const int id = static_cast<int>(p.at("peer_id").as_int64()), fd = static_cast<int>(p.at("fd").as_int64());
      o.peers[id] = channel_keys(o.image, fd);
      o.peer_memfd[id] = key_of(o.image, fd);
    }
    return o;
  }
  InstanceWalk walk_instance(const std::string& n) {
    InstanceWalk iw;
    std::ifstream procs(fs::path("/sys/fs/cgroup/cpuset/mkernel") / n / "cgroup.procs");
    for (pid_t p; procs >> p;) iw.procs.push_back(walk(p));
    return iw;
  }
  std::string a, b;
};

TEST_F(FdIsolation, NoInstanceHoldsOrMapsAnotherInstancesOrTheDaemonsFds) {
  const uint16_t port = free_port();
  ASSERT_NE(port, 0);
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  CliRun c1 = run("create " + a + " --cpus 0 --memory 64M --device listen:127.0.0.1:" + std::to_string(port));
  ASSERT_EQ(c1.code, 0) << c1.err;
  CliRun c2 = run("create " + b + " --cpus 1 --memory 32M --memory 32M");
  ASSERT_EQ(c2.code, 0) << c2.err;
  const std::string kernel = std::string(MK_BIN_DIR) + "/mk-kernel";
  ASSERT_EQ(run("load " + a + " --kernel " + kernel + " --init 'sh -c \"sleep 300 & sleep 300 & wait\"'").code, 0);
  ASSERT_EQ(run("load " + b + " --kernel " + kernel + " --init 'sleep 300'").code, 0);
  CliRun s1 = run("start " + a);
  ASSERT_EQ(s1.code, 0) << s1.err;
  CliRun s2 = run("start " + b);
  ASSERT_EQ(s2.code, 0) << s2.err;
  // b grows a second region while running, so the walk sees a region added
  // after boot (sent over the handover socket) too.
  CliRun g = run("update " + b + " --memory 64M,32M");
  ASSERT_EQ(g.code, 0) << g.err << g.out;
  // The channel between them works (so it exists, on both sides).
  CliRun ping = run("ping " + b + " --from " + a + " --count 3");
  ASSERT_EQ(ping.code, 0) << ping.err;
  // Tenants up: fa's shell with its two sleeps, fb's sleep.
  for (int i = 0; i < 200; ++i) {
    if (walk_instance(a).procs.size() >= 4 && walk_instance(b).procs.size() >= 2) break;
    std::this_thread::sleep_for(20ms);
  }

  auto check_all = [&](const std::string& where, bool self_test) {
    const pid_t daemon = daemon_pid();
    ASSERT_GT(daemon, 0);
    std::vector<Ownership> own = {ownership(a), ownership(b)};
    ASSERT_EQ(own[0].regions.size(), 1u);
    ASSERT_EQ(own[1].regions.size(), 2u) << "fb has two regions after the update";
    ASSERT_EQ(own[0].peers.size(), 1u) << "a channel between the two";
    ASSERT_EQ(own[1].peers.size(), 1u);
    ASSERT_EQ(own[0].peers.at(own[1].id), own[1].peers.at(own[0].id)) << "both records name the same channel";
    ASSERT_EQ(own[0].peer_memfd.at(own[1].id), own[1].peer_memfd.at(own[0].id));

    std::map<std::string, InstanceWalk> walks = {{a, walk_instance(a)}, {b, walk_instance(b)}};
    const ProcWalk dw = walk(daemon);

    // The host's own view agrees with the records: mkerneld holds memfds named
    // mk-NAME-memN whose inodes are exactly the regions the record names.
    for (const auto& o : own) {
      std::set<Key> host_regions;
      for (const auto& f : dw.fds)
        if (f.link.rfind("/memfd:mk-" + o.name + "-mem", 0) == 0) host_regions.insert(f.key);
      EXPECT_EQ(host_regions, o.regions) << where << ": " << o.name << ": the regions mkerneld holds are not the ones the image has";
      std::set<Key> dkeys;
      for (const auto& f : dw.fds) dkeys.insert(f.key);
      for (const auto& k : o.host_channel) EXPECT_TRUE(dkeys.count(k)) << where << ": " << o.name << ": host channel not held by mkerneld";
    }

    // Positive control: each image holds and maps its own regions and channel
    // ends; the pair channel is held and mapped by both.
    for (const auto& o : own) {
      const InstanceWalk& iw = walks.at(o.name);
      ASSERT_GE(iw.procs.size(), o.name == a ? 4u : 2u) << where << ": " << o.name << ": image and tenants";
      const ProcWalk* image = nullptr;
      for (const auto& p : iw.procs)
        if (p.pid == o.image) image = &p;
      ASSERT_NE(image, nullptr) << where << ": " << o.name << ": the image is not in its cgroup";
      std::set<Key> held, mapped;
      for (const auto& f : image->fds) held.insert(f.key);
      for (const auto& m : image->memfd_maps) mapped.insert(m.key);
      std::set<Key> on_fds = o.regions, in_maps = o.regions;
      on_fds.insert(o.host_channel.begin(), o.host_channel.end());
      in_maps.insert(o.host_channel_memfd);
      for (const auto& [id, k] : o.peers) on_fds.insert(k.begin(), k.end());
      for (const auto& [id, k] : o.peer_memfd) in_maps.insert(k);
      for (const auto& k : on_fds) EXPECT_TRUE(held.count(k)) << where << ": " << o.name << ": own object " << k << " not found on an fd";
      for (const auto& k : in_maps) EXPECT_TRUE(mapped.count(k)) << where << ": " << o.name << ": own memfd " << k << " not found in maps";
    }

    // The real check.
    const std::vector<std::string> v = violations(own, walks, dw, rt);
    for (const auto& line : v) ADD_FAILURE() << where << ": leak: " << line;

    if (self_test) {
    // The checker fails when it should: the peer channel left out of b's
    // record, and a's region attributed to b, must each be reported.
    {
      std::vector<Ownership> wrong = own;
      wrong[1].peers.clear();
      const auto w = violations(wrong, walks, dw, rt);
      const Key pair = own[0].peer_memfd.begin()->second;
      EXPECT_TRUE(std::any_of(w.begin(), w.end(), [&](const std::string& l) { return l.find("object " + pair + " held by 2") != std::string::npos; }))
          << "an undeclared channel between the instances was not reported";
    }
    {
      std::vector<Ownership> wrong = own;
      const Key region = *own[0].regions.begin();
      wrong[0].regions.erase(region);
      wrong[1].regions.insert(region);
      const auto w = violations(wrong, walks, dw, rt);
      EXPECT_TRUE(std::any_of(w.begin(), w.end(), [&](const std::string& l) {
        return l.find(a + " pid " + std::to_string(own[0].image)) != std::string::npos && l.find("not " + a + "'s") != std::string::npos;
      })) << "a region of another instance held by the image was not reported";
    }

    }
    // Summary.
    std::size_t pids = 0, fds = 0, map_lines = 0, memfd_maps = 0;
    for (const auto& [n, iw] : walks) {
      std::size_t f = 0, ml = 0, mm = 0;
      std::string who;
      for (const auto& p : iw.procs) {
        f += p.fds.size();
        ml += p.map_lines;
        mm += p.memfd_maps.size();
        who += " " + std::to_string(p.pid) + "(" + p.comm + ")";
      }
      std::printf("[ fd walk ] %s: %s: %zu process(es)%s; %zu fds, %zu mappings (%zu of memfds)\n", where.c_str(), n.c_str(), iw.procs.size(),
                  who.c_str(), f, ml, mm);
      pids += iw.procs.size();
      fds += f;
      map_lines += ml;
      memfd_maps += mm;
    }
    std::printf("[ fd walk ] %s: total: %zu processes, %zu fds, %zu mappings (%zu of memfds); mkerneld pid %d: %zu fds; %zu violation(s)\n",
                where.c_str(), pids, fds, map_lines, memfd_maps, daemon, dw.fds.size(), v.size());
  };
  check_all("after boot", true);
  if (HasFatalFailure()) return;
  // A live update of a: the successor image (another pid) must hold exactly
  // a's objects again, the old image's handover leaving nothing behind in
  // either instance.
  CliRun u = run("update " + a);
  ASSERT_EQ(u.code, 0) << u.err << u.out;
  for (int i = 0; i < 200 && walk_instance(a).procs.size() < 4; ++i) std::this_thread::sleep_for(20ms);
  check_all("after a live update of " + a, false);
}

}  // namespace
