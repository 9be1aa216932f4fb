// Sessions: every preservable fd type, every refused type (at preserve time),
// every errno of preserve/retrieve/finish and of the registry, the subtree
// description, and restore on the incoming side.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "handover/session.h"

namespace mk::handover {
namespace {

OwnedFd tcp_listener() {
  OwnedFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(s.get(), 4), 0);
  return s;
}

OwnedFd tcp_connect(int listener) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  OwnedFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return c;
}

struct TmpDir {
  std::string path;
  TmpDir() {
    char t[] = "/tmp/mk-session-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~TmpDir() { std::system(("rm -rf " + path).c_str()); }
};

ino_t inode(int fd) {
  struct stat st{};
  ::fstat(fd, &st);
  return st.st_ino;
}

TEST(Session, ClassifiesEveryPreservableType) {
  TmpDir dir;
  OwnedFd memfd(::memfd_create("state", MFD_CLOEXEC));
  EXPECT_EQ(*classify_fd(memfd.get()), FdType::kMemfd);
  OwnedFd file(::open((dir.path + "/f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600));
  EXPECT_EQ(*classify_fd(file.get()), FdType::kRegular);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  OwnedFd pr(p[0]), pw(p[1]);
  EXPECT_EQ(*classify_fd(pr.get()), FdType::kPipe);
  EXPECT_EQ(*classify_fd(pw.get()), FdType::kPipe);
  ASSERT_EQ(::mkfifo((dir.path + "/fifo").c_str(), 0600), 0);
  OwnedFd fifo(::open((dir.path + "/fifo").c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  EXPECT_EQ(*classify_fd(fifo.get()), FdType::kFifo);
  int sp[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  OwnedFd u0(sp[0]), u1(sp[1]);
  EXPECT_EQ(*classify_fd(u0.get()), FdType::kUnixSocket);
  OwnedFd listener = tcp_listener();
  EXPECT_EQ(*classify_fd(listener.get()), FdType::kTcpListen);
  OwnedFd client = tcp_connect(listener.get());
  EXPECT_EQ(*classify_fd(client.get()), FdType::kTcpConnected);
  OwnedFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_EQ(*classify_fd(server.get()), FdType::kTcpConnected);
  OwnedFd ev(::eventfd(0, EFD_CLOEXEC));
  EXPECT_EQ(*classify_fd(ev.get()), FdType::kEventfd);
  OwnedFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  EXPECT_EQ(*classify_fd(null.get()), FdType::kCharDevice);
  // A block device: the first one of /sys/class/block this process may open.
  bool block = false;
  if (DIR* d = ::opendir("/sys/class/block")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      OwnedFd b(::open((std::string("/dev/") + e->d_name).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
      if (!b.valid()) continue;
      EXPECT_EQ(*classify_fd(b.get()), FdType::kBlockDevice) << e->d_name;
      block = true;
      break;
    }
    ::closedir(d);
  }
  if (!block) std::fprintf(stderr, "note: no openable block device here; kBlockDevice not exercised\n");
  for (FdType t : {FdType::kCharDevice, FdType::kBlockDevice}) {
    EXPECT_EQ(parse_fd_type(to_string(t)), t);  // round trip of the subtree's type names
  }
}

void expect_refused(int fd, const char* type) {
  SessionRegistry reg;
  Session* s = *reg.create("s");
  auto r = s->preserve(fd, 1);
  ASSERT_FALSE(r) << type;
  EXPECT_EQ(r.error().code(), ENOENT) << r.error().to_string();
  EXPECT_NE(std::string(r.error().message()).find(std::string("of type ") + type), std::string::npos)
      << r.error().message();
  EXPECT_EQ(s->size(), 0u);
}

TEST(Session, RefusesUnpreservableTypesAtPreserveTime) {
  TmpDir dir;
  OwnedFd d(::open(dir.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  expect_refused(d.get(), "directory");
  OwnedFd ep(::epoll_create1(EPOLL_CLOEXEC));
  expect_refused(ep.get(), "eventpoll");
  OwnedFd tfd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC));
  expect_refused(tfd.get(), "timerfd");
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  OwnedFd sfd(::signalfd(-1, &set, SFD_CLOEXEC));
  expect_refused(sfd.get(), "signalfd");
  OwnedFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0)));
  ASSERT_TRUE(pidfd.valid());
  expect_refused(pidfd.get(), "pid");  // "pidfd" (or "[pidfd]" on older kernels)
  OwnedFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  expect_refused(udp.get(), "socket (inet, not TCP)");
  OwnedFd tcp(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  expect_refused(tcp.get(), "socket (TCP, neither");
}

TEST(Session, PreserveRetrieveFinish) {
  SessionRegistry reg;
  Session* s = *reg.create("kv");
  OwnedFd memfd(::memfd_create("state", MFD_CLOEXEC));
  ino_t ino = inode(memfd.get());
  OwnedFd ev(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(s->preserve(memfd.get(), 7));
  ASSERT_TRUE(s->preserve(ev.get(), 3));
  memfd.reset();  // the session holds its own dup
  ev.reset();

  auto fds = s->files();
  ASSERT_EQ(fds.size(), 2u);
  EXPECT_EQ(fds[0], (PreservedFile{3, FdType::kEventfd, O_RDWR | O_NONBLOCK}));
  EXPECT_EQ(fds[1], (PreservedFile{7, FdType::kMemfd, O_RDWR}));

  auto busy = s->finish();
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code(), EBUSY);
  EXPECT_NE(std::string(busy.error().message()).find("token 3"), std::string::npos);

  EXPECT_TRUE(s->contains(7));
  EXPECT_TRUE(s->knows(7));
  EXPECT_FALSE(s->contains(99));
  EXPECT_FALSE(s->knows(99));
  auto got = s->retrieve(7);
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_EQ(inode(got->get()), ino);
  EXPECT_FALSE(s->contains(7));  // retrieved: no longer held
  EXPECT_TRUE(s->knows(7));      // but it was in the session
  auto again = s->retrieve(7);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), EALREADY);
  auto unknown = s->retrieve(99);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), ENOENT);
  EXPECT_EQ(s->files().size(), 1u);  // retrieved entries leave the description
  EXPECT_EQ(s->finish().error().code(), EBUSY);
  ASSERT_TRUE(s->retrieve(3));
  ASSERT_TRUE(s->finish());
  EXPECT_TRUE(s->finished());
  EXPECT_TRUE(s->finish());  // idempotent
  OwnedFd more(::eventfd(0, EFD_CLOEXEC));
  EXPECT_EQ(s->preserve(more.get(), 1).error().code(), EINVAL);
  EXPECT_EQ(s->retrieve(3).error().code(), EINVAL);
}

TEST(Session, PreserveErrors) {
  SessionRegistry reg;
  Session* s = *reg.create("s");
  OwnedFd ev(::eventfd(0, EFD_CLOEXEC));
  ASSERT_TRUE(s->preserve(ev.get(), 1));
  auto dup = s->preserve(ev.get(), 1);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), EEXIST);
  EXPECT_EQ(s->preserve(-1, 2).error().code(), EBADF);
  EXPECT_EQ(s->preserve(1 << 20, 2).error().code(), EBADF);
  EXPECT_EQ(s->size(), 1u);
  EXPECT_TRUE(s->finish().error().code() == EBUSY);
}

TEST(SessionRegistry, NamesAndErrnos) {
  SessionRegistry reg;
  ASSERT_TRUE(reg.create("a"));
  auto dup = reg.create("a");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), EEXIST);
  EXPECT_EQ(reg.create("").error().code(), EINVAL);
  EXPECT_EQ(reg.create("a/b").error().code(), EINVAL);
  EXPECT_EQ(reg.create(std::string(64, 'x')).error().code(), EINVAL);
  EXPECT_TRUE(reg.create(std::string(63, 'x')));
  EXPECT_EQ(reg.find("nope").error().code(), ENOENT);
  EXPECT_EQ(*reg.find("a"), *reg.find("a"));
  EXPECT_EQ(reg.remove("nope").error().code(), ENOENT);
  EXPECT_TRUE(reg.remove("a"));
  EXPECT_EQ(reg.find("a").error().code(), ENOENT);
  EXPECT_EQ(reg.size(), 1u);
}

TEST(Session, DescribeBlobRoundTripAndRestore) {
  SessionRegistry reg;
  Session* s = *reg.create("web");
  OwnedFd listener = tcp_listener();
  OwnedFd client = tcp_connect(listener.get());
  OwnedFd memfd(::memfd_create("kv", MFD_CLOEXEC));
  ASSERT_TRUE(s->preserve(listener.get(), 0x10));
  ASSERT_TRUE(s->preserve(client.get(), 0xabcdef0123));
  ASSERT_TRUE(s->preserve(memfd.get(), 2));
  ASSERT_TRUE(reg.create("empty"));

  auto subs = reg.describe();
  ASSERT_TRUE(subs) << subs.error().to_string();
  ASSERT_EQ(subs->size(), 2u);
  KhoBlob blob;
  blob.subsystems = *subs;
  auto bytes = emit_kho_blob(blob);
  ASSERT_TRUE(bytes) << bytes.error().to_string();
  auto parsed = parse_kho_blob(*bytes);
  ASSERT_TRUE(parsed) << parsed.error().to_string();
  auto files = find_compatible(*parsed, "web", kFilesCompatiblePrefix, kFilesVersion);
  ASSERT_TRUE(files) << files.error().to_string();
  EXPECT_EQ((*files)->children[0].name, "fd@2");
  EXPECT_EQ((*files)->children[2].name, "fd@abcdef0123");
  EXPECT_EQ(*Session::parse_files(**files), s->files());

  // The incoming side gets dups of the transfer fds (as SCM_RIGHTS would).
  std::vector<OwnedFd> received;
  for (int fd : s->transfer_fds()) received.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  auto restored = Session::restore(**files, std::move(received));
  ASSERT_TRUE(restored) << restored.error().to_string();
  EXPECT_EQ(restored->name(), "web");
  EXPECT_EQ(restored->files(), s->files());
  SessionRegistry incoming;
  Session* in = *incoming.adopt(std::move(*restored));
  std::vector<OwnedFd> second;
  for (int fd : s->transfer_fds()) second.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  auto twice = Session::restore(**files, std::move(second));
  ASSERT_TRUE(twice);
  EXPECT_EQ(incoming.adopt(std::move(*twice)).error().code(), EEXIST);
  auto l = in->retrieve(0x10);
  ASSERT_TRUE(l);
  EXPECT_EQ(*classify_fd(l->get()), FdType::kTcpListen);
  ASSERT_TRUE(in->retrieve(0xabcdef0123));
  ASSERT_TRUE(in->retrieve(2));
  EXPECT_TRUE(in->finish());
}

// A connection preserved as tcp-connected whose client leaves (and which
// its old owner shut down) while it travels is still that connection; a
// TCP socket that never had a peer is not.
TEST(Session, RestoreTakesAConnectionWhoseClientLeftInTransit) {
  OwnedFd listener = tcp_listener();
  OwnedFd client = tcp_connect(listener.get());
  OwnedFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(server.valid());
  SessionRegistry reg;
  Session* s = *reg.create("conns");
  ASSERT_TRUE(s->preserve(server.get(), 5));
  Subsystem sub = *s->describe();
  client.reset();                               // the client goes
  ASSERT_EQ(::shutdown(server.get(), SHUT_RDWR), 0);  // the old owner closes it on purpose
  std::vector<OwnedFd> sent;
  sent.emplace_back(::fcntl(server.get(), F_DUPFD_CLOEXEC, 0));
  ASSERT_FALSE(classify_fd(sent.back().get()));  // not connected any more
  auto r = Session::restore(sub, std::move(sent));
  ASSERT_TRUE(r) << r.error().to_string();
  auto fd = r->retrieve(5);
  ASSERT_TRUE(fd);
  char c;
  EXPECT_EQ(::read(fd->get(), &c, 1), 0);  // the application sees the end
  // An unconnected TCP socket described as a listener is still refused.
  SessionRegistry reg2;
  Session* l = *reg2.create("l");
  ASSERT_TRUE(l->preserve(listener.get(), 1));
  std::vector<OwnedFd> fresh;
  fresh.emplace_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto bad = Session::restore(*l->describe(), std::move(fresh));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), EINVAL);
}

TEST(Session, RestoreRefusesMismatches) {
  SessionRegistry reg;
  Session* s = *reg.create("web");
  OwnedFd ev(::eventfd(0, EFD_CLOEXEC));
  ASSERT_TRUE(s->preserve(ev.get(), 1));
  Subsystem sub = *s->describe();

  auto dup_ev = [&] {
    std::vector<OwnedFd> v;
    v.emplace_back(::fcntl(ev.get(), F_DUPFD_CLOEXEC, 0));
    return v;
  };
  EXPECT_TRUE(Session::restore(sub, dup_ev()));
  EXPECT_EQ(Session::restore(sub, {}).error().code(), EINVAL);  // count
  std::vector<OwnedFd> memfd;
  memfd.emplace_back(::memfd_create("x", MFD_CLOEXEC));
  auto wrong = Session::restore(sub, std::move(memfd));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), EINVAL);
  EXPECT_NE(std::string(wrong.error().message()).find("is memfd, the subtree says eventfd"), std::string::npos);
  std::vector<OwnedFd> closed;
  closed.emplace_back(1 << 20);
  EXPECT_EQ(Session::restore(sub, std::move(closed)).error().code(), EBADF);

  Subsystem v2 = sub;
  v2.compatible = "mkernel,files-v2";
  EXPECT_EQ(Session::restore(v2, dup_ev()).error().code(), EPROTONOSUPPORT);
  Subsystem other = sub;
  other.compatible = "mkernel,memory-v1";
  EXPECT_EQ(Session::restore(other, dup_ev()).error().code(), EPROTONOSUPPORT);

  auto mutate = [&](auto edit) {
    Subsystem m = sub;
    edit(m);
    auto r = Session::restore(m, dup_ev());
    EXPECT_FALSE(r);
    if (!r) {
      EXPECT_EQ(r.error().code(), EINVAL) << r.error().to_string();
    }
  };
  mutate([](Subsystem& m) { m.properties.clear(); });
  mutate([](Subsystem& m) { m.properties[0] = KhoProperty::string("session", "other"); });
  mutate([](Subsystem& m) { m.children[0].properties[1] = KhoProperty::string("type", "socket"); });
  mutate([](Subsystem& m) { m.children[0].properties[2] = KhoProperty::u32("flags", 1u << 30); });
  mutate([](Subsystem& m) { m.children[0].properties[3] = KhoProperty::u32("index", 1); });
  mutate([](Subsystem& m) { m.children[0].properties[0] = KhoProperty::u64("token", 2); });
  mutate([](Subsystem& m) { m.children[0].properties.pop_back(); });
  mutate([](Subsystem& m) { m.children[0].properties.push_back(KhoProperty::u32("x", 0)); });
  mutate([](Subsystem& m) { m.children[0].properties[0] = KhoProperty::u32("token", 1); });
  mutate([](Subsystem& m) { m.children[0].children.push_back(KhoNode{"n", {}, {}}); });
}

}  // namespace
}  // namespace mk::handover
