// Kernel image inspection: the real mk-kernel binary is accepted with the
// right machine, size and SHA-256 (checked against a known answer and against
// sha256sum); every rejection path returns its errno and a detail that says
// what to do; verify_image notices a changed file.
#include "mkernel/image.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace mk {
namespace {

const std::string kKernel = std::string(MK_BIN_DIR) + "/mk-kernel";

// In one read: the ASan build's mk-kernel is 44 MB, and a character at a
// time through istreambuf_iterator took 5 s per test there.
std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return {};
  std::string out(static_cast<std::size_t>(f.tellg()), '\0');
  f.seekg(0);
  f.read(out.data(), static_cast<std::streamsize>(out.size()));
  return f ? out : std::string();
}

#if defined(__x86_64__)
constexpr uint16_t kHostMachine = EM_X86_64;
constexpr const char* kHostName = "x86_64";
#elif defined(__aarch64__)
constexpr uint16_t kHostMachine = EM_AARCH64;
constexpr const char* kHostName = "aarch64";
#else
constexpr uint16_t kHostMachine = 0;
constexpr const char* kHostName = "";
#endif

// sha256sum's answer for `path` (an independent implementation).
std::string sha256sum(const std::string& path) {
  std::string cmd = "sha256sum '" + path + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return "";
  char line[256] = {};
  std::string out = std::fgets(line, sizeof line, p) ? std::string(line, 64) : "";
  ::pclose(p);
  return out;
}

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mk-image-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    kernel = read_bytes(kKernel);
    ASSERT_GE(kernel.size(), sizeof(Elf64_Ehdr)) << kKernel << " missing or short";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string write(const std::string& name, const std::string& bytes, mode_t mode = 0755) {
    std::string path = dir + "/" + name;
    {
      std::ofstream f(path, std::ios::binary | std::ios::trunc);
      f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }
  // A copy of mk-kernel with its ELF header patched by `patch`.
  template <class F>
  std::string patched(const std::string& name, F&& patch) {
    std::string b = kernel;
    Elf64_Ehdr eh;
    std::memcpy(&eh, b.data(), sizeof eh);
    patch(eh);
    std::memcpy(b.data(), &eh, sizeof eh);
    return write(name, b);
  }
  void expect_error(const std::string& path, int code, const char* needle) {
    auto r = inspect_image(path);
    ASSERT_FALSE(r) << path << " accepted";
    EXPECT_EQ(r.error().code(), code) << r.error().to_string();
    std::string msg = r.error().to_string();
    EXPECT_NE(msg.find(needle), std::string::npos) << "'" << needle << "' not in: " << msg;
  }
  std::string dir;
  std::string kernel;
};

TEST_F(ImageTest, RealKernelImage) {
  auto r = inspect_image(kKernel);
  ASSERT_TRUE(r) << r.error().to_string();
  char real[PATH_MAX];
  ASSERT_NE(::realpath(kKernel.c_str(), real), nullptr);
  EXPECT_EQ(r->path, real);
  EXPECT_EQ(r->size, kernel.size());
  EXPECT_EQ(r->sha256.size(), 64u);
  EXPECT_EQ(r->sha256.find_first_not_of("0123456789abcdef"), std::string::npos) << r->sha256;
  std::string want = sha256sum(kKernel);
  if (!want.empty()) {
    EXPECT_EQ(r->sha256, want);
  }
  if (kHostMachine != 0) {
    EXPECT_EQ(r->machine, kHostName);
  }
  Elf64_Ehdr eh;
  std::memcpy(&eh, kernel.data(), sizeof eh);
  EXPECT_EQ(r->pie, eh.e_type == ET_DYN);
}

// Known answer: a bare 64-byte x86_64 ELF header (e_type ET_EXEC, e_version 1,
// e_ehsize 64, everything else zero). The digest is
//   printf '\x7fELF\x02\x01\x01' | head -c 7 > f; head -c 9 /dev/zero >> f;
//   printf '\x02\x00\x3e\x00\x01\x00\x00\x00' >> f; head -c 28 /dev/zero >> f;
//   printf '\x40\x00' >> f; head -c 10 /dev/zero >> f; sha256sum f
TEST_F(ImageTest, KnownAnswerSha256) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "the known-answer header is an x86_64 one";
#endif
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  std::string path = write("kat", std::string(reinterpret_cast<const char*>(&eh), sizeof eh));
  auto r = inspect_image(path);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->size, 64u);
  EXPECT_EQ(r->machine, "x86_64");
  EXPECT_FALSE(r->pie);
  EXPECT_EQ(r->sha256, "be79ffb15701bfd8095f8a8bba26a9746d8f2748622f3a86035be4c410e2a5d9");
  std::string want = sha256sum(path);
  if (!want.empty()) {
    EXPECT_EQ(r->sha256, want);
  }
}

TEST_F(ImageTest, MissingFile) {
  expect_error(dir + "/no-such-image", ENOENT, "no-such-image");
  expect_error("", ENOENT, "image path");
}

TEST_F(ImageTest, DanglingSymlink) {
  std::string link = dir + "/dangling";
  ASSERT_EQ(::symlink((dir + "/gone").c_str(), link.c_str()), 0);
  expect_error(link, ENOENT, "no such file");
}

TEST_F(ImageTest, Directory) { expect_error(dir, EISDIR, "directory"); }

TEST_F(ImageTest, Fifo) {
  std::string fifo = dir + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0755), 0);
  expect_error(fifo, EINVAL, "not a regular file");
}

TEST_F(ImageTest, NotExecutable) {
  std::string path = write("noexec", kernel, 0644);
  expect_error(path, EACCES, "chmod +x");
}

TEST_F(ImageTest, ShellScript) {
  std::string path = write("script.sh", "#!/bin/sh\nexit 0\n");
  expect_error(path, ENOEXEC, "script");
}

TEST_F(ImageTest, EmptyAndGarbage) {
  expect_error(write("empty", ""), ENOEXEC, "not an ELF");
  expect_error(write("garbage", std::string(4096, 'x')), ENOEXEC, "not an ELF");
}

TEST_F(ImageTest, TruncatedElf) {
  std::string path = write("truncated", kernel.substr(0, 10));
  expect_error(path, ENOEXEC, "truncated");
  expect_error(write("magic-only", kernel.substr(0, 4)), ENOEXEC, "truncated");
}

TEST_F(ImageTest, Elf32) {
  std::string path = patched("elf32", [](Elf64_Ehdr& eh) { eh.e_ident[EI_CLASS] = ELFCLASS32; });
  expect_error(path, ENOEXEC, "32-bit");
}

TEST_F(ImageTest, BigEndian) {
  std::string path = patched("be", [](Elf64_Ehdr& eh) { eh.e_ident[EI_DATA] = ELFDATA2MSB; });
  expect_error(path, ENOEXEC, "big-endian");
}

TEST_F(ImageTest, RelocatableObject) {
  std::string path = patched("rel.o", [](Elf64_Ehdr& eh) { eh.e_type = ET_REL; });
  expect_error(path, ENOEXEC, "ET_REL");
  path = patched("core", [](Elf64_Ehdr& eh) { eh.e_type = ET_CORE; });
  expect_error(path, ENOEXEC, "ET_CORE");
}

TEST_F(ImageTest, OtherMachine) {
  if (kHostMachine == 0) GTEST_SKIP() << "host machine name not known to the test";
  uint16_t other = kHostMachine == EM_AARCH64 ? EM_X86_64 : EM_AARCH64;
  const char* other_name = other == EM_AARCH64 ? "aarch64" : "x86_64";
  std::string path = patched("other", [&](Elf64_Ehdr& eh) { eh.e_machine = other; });
  std::string want = std::string(other_name) + " image, this host is " + kHostName;
  expect_error(path, ENOEXEC, want.c_str());
  path = patched("riscv", [](Elf64_Ehdr& eh) { eh.e_machine = EM_RISCV; });
  want = std::string("riscv image, this host is ") + kHostName;
  expect_error(path, ENOEXEC, want.c_str());
  path = patched("unknown", [](Elf64_Ehdr& eh) { eh.e_machine = 0xbeef; });
  expect_error(path, ENOEXEC, "machine 48879 image");
}

TEST_F(ImageTest, SymlinkResolvesToRealPath) {
  std::string real = write("kernel", kernel);
  ASSERT_EQ(::mkdir((dir + "/links").c_str(), 0755), 0);
  std::string link = dir + "/links/current";
  ASSERT_EQ(::symlink("../kernel", link.c_str()), 0);
  auto a = inspect_image(link);
  ASSERT_TRUE(a) << a.error().to_string();
  auto b = inspect_image(real);
  ASSERT_TRUE(b) << b.error().to_string();
  EXPECT_EQ(a->path, real);
  EXPECT_EQ(*a, *b);
  // Relative paths resolve to absolute ones too.
  auto c = inspect_image(dir + "/links/../kernel");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->path, real);
}

TEST_F(ImageTest, VerifyUnchanged) {
  std::string path = write("kernel", kernel);
  auto info = inspect_image(path);
  ASSERT_TRUE(info) << info.error().to_string();
  auto v = verify_image(*info);
  EXPECT_TRUE(v) << v.error().to_string();
}

TEST_F(ImageTest, VerifyChangedContentSameSize) {
  std::string path = write("kernel", kernel);
  auto info = inspect_image(path);
  ASSERT_TRUE(info) << info.error().to_string();
  std::string b = kernel;
  b[b.size() / 2] = static_cast<char>(b[b.size() / 2] ^ 0x5a);
  write("kernel", b);
  auto v = verify_image(*info);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ESTALE) << v.error().to_string();
  EXPECT_NE(v.error().to_string().find("reload it"), std::string::npos) << v.error().to_string();
}

TEST_F(ImageTest, VerifyChangedSize) {
  std::string path = write("kernel", kernel);
  auto info = inspect_image(path);
  ASSERT_TRUE(info) << info.error().to_string();
  {
    std::ofstream f(path, std::ios::binary | std::ios::app);
    f << '\0';
  }
  auto v = verify_image(*info);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ESTALE) << v.error().to_string();
}

TEST_F(ImageTest, VerifyPassesInspectErrors) {
  std::string path = write("kernel", kernel);
  auto info = inspect_image(path);
  ASSERT_TRUE(info) << info.error().to_string();
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto v = verify_image(*info);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), EACCES) << v.error().to_string();
  ASSERT_EQ(::unlink(path.c_str()), 0);
  v = verify_image(*info);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ENOENT) << v.error().to_string();
}

}  // namespace
}  // namespace mk
