// Kernel image inspection (see image.h). The OpenSSL seam.
#include "mkernel/image.h"

#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "mkernel/owned_fd.h"

namespace mk {
namespace {

#if defined(__x86_64__)
constexpr uint16_t kHostMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr uint16_t kHostMachine = EM_AARCH64;
#elif defined(__riscv) && __riscv_xlen == 64
constexpr uint16_t kHostMachine = EM_RISCV;
#elif defined(__powerpc64__)
constexpr uint16_t kHostMachine = EM_PPC64;
#elif defined(__s390x__)
constexpr uint16_t kHostMachine = EM_S390;
#else
#error "image.cc: add this architecture's EM_* value"
#endif

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "image.cc parses ELF headers in host byte order and accepts ELFDATA2LSB only");

// Fills `name` with the name of an ELF machine (e.g. "x86_64").
void machine_name(uint16_t m, char* name, std::size_t len) {
  const char* s = nullptr;
  switch (m) {
    case EM_X86_64: s = "x86_64"; break;
    case EM_AARCH64: s = "aarch64"; break;
    case EM_RISCV: s = "riscv"; break;
    case EM_386: s = "i386"; break;
    case EM_ARM: s = "arm"; break;
    case EM_PPC64: s = "ppc64"; break;
    case EM_PPC: s = "ppc"; break;
    case EM_S390: s = "s390"; break;
    case EM_MIPS: s = "mips"; break;
    case EM_SPARCV9: s = "sparc64"; break;
#ifdef EM_LOONGARCH
    case EM_LOONGARCH: s = "loongarch"; break;
#endif
    default: break;
  }
  if (s) std::snprintf(name, len, "%s", s);
  else std::snprintf(name, len, "machine %u", static_cast<unsigned>(m));
}

// read(2) until `len` bytes or EOF; returns the byte count or -1 (errno set).
ssize_t read_full(int fd, unsigned char* buf, std::size_t len) {
  std::size_t got = 0;
  while (got < len) {
    ssize_t n = ::read(fd, buf + got, len - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return static_cast<ssize_t>(got);
}

Error read_error(const char* path) {
  int e = errno;
  return MK_FAIL(EIO, "image read failed", "'%s': read: %s; check the file and the disk, then retry", path,
                 std::strerror(e ? e : EIO));
}

// Checks the ELF header of `p` (its first `n` bytes are valid). Sets pie.
Result<void> check_elf(const char* path, const unsigned char* p, std::size_t n, bool& pie) {
  if (n < SELFMAG || std::memcmp(p, ELFMAG, SELFMAG) != 0) {
    if (n >= 2 && p[0] == '#' && p[1] == '!')
      return MK_FAIL(ENOEXEC, "not a kernel image",
                     "'%s' is a script (#!), not an ELF executable; pass the kernel binary itself", path);
    return MK_FAIL(ENOEXEC, "not a kernel image", "'%s' is not an ELF file; pass an mk-kernel executable", path);
  }
  if (n < sizeof(Elf64_Ehdr))
    return MK_FAIL(ENOEXEC, "not a kernel image",
                   "'%s' is truncated (%zu bytes, shorter than an ELF header); rebuild or recopy the image", path, n);
  Elf64_Ehdr eh;
  std::memcpy(&eh, p, sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64)
    return MK_FAIL(ENOEXEC, "not a kernel image",
                   "'%s' is a %s ELF file (EI_CLASS %u); this host boots 64-bit images only", path,
                   eh.e_ident[EI_CLASS] == ELFCLASS32 ? "32-bit" : "malformed", eh.e_ident[EI_CLASS]);
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB)
    return MK_FAIL(ENOEXEC, "not a kernel image",
                   "'%s' is a %s ELF file (EI_DATA %u); this host boots little-endian images only", path,
                   eh.e_ident[EI_DATA] == ELFDATA2MSB ? "big-endian" : "malformed", eh.e_ident[EI_DATA]);
  if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) {
    const char* t = eh.e_type == ET_REL ? "relocatable object (ET_REL)"
                    : eh.e_type == ET_CORE ? "core dump (ET_CORE)"
                                           : "non-executable ELF file";
    return MK_FAIL(ENOEXEC, "not a kernel image", "'%s' is a %s, not an executable; pass the linked mk-kernel binary",
                   path, t);
  }
  if (eh.e_machine != kHostMachine) {
    char img[32], host[32];
    machine_name(eh.e_machine, img, sizeof img);
    machine_name(kHostMachine, host, sizeof host);
    return MK_FAIL(ENOEXEC, "image for another architecture",
                   "'%s': %s image, this host is %s; build the image for %s", path, img, host, host);
  }
  pie = eh.e_type == ET_DYN;
  return ok();
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

}  // namespace

Result<ImageInfo> inspect_image(const std::string& path) {
  const char* given = path.c_str();
  if (path.empty()) return MK_FAIL(ENOENT, "image not found", "empty image path; pass the kernel image's path");
  char real[PATH_MAX];
  if (!::realpath(given, real)) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR)
      return MK_FAIL(ENOENT, "image not found", "'%s': no such file; check the path (dangling symlink?)", given);
    if (e == EACCES)
      return MK_FAIL(EACCES, "image not accessible", "'%s': permission denied on a directory of the path", given);
    return MK_FAIL(e, "image path unresolvable", "'%s': realpath: %s", given, std::strerror(e));
  }
  struct stat sb;
  if (::stat(real, &sb) != 0) {
    int e = errno;
    if (e == ENOENT) return MK_FAIL(ENOENT, "image not found", "'%s': no such file; check the path", real);
    return MK_FAIL(e, "image not accessible", "'%s': stat: %s", real, std::strerror(e));
  }
  if (S_ISDIR(sb.st_mode))
    return MK_FAIL(EISDIR, "image not a regular file", "'%s' is a directory; pass the kernel image file inside it",
                   real);
  if (!S_ISREG(sb.st_mode))
    return MK_FAIL(EINVAL, "image not a regular file",
                   "'%s' is not a regular file (fifo, socket or device); pass the kernel image file", real);
  if (::access(real, X_OK) != 0) {
    int e = errno;
    if (e == EACCES)
      return MK_FAIL(EACCES, "image not executable", "'%s' is not executable by this user; run: chmod +x %s", real,
                     real);
    return MK_FAIL(e, "image not accessible", "'%s': access: %s", real, std::strerror(e));
  }
  // O_NONBLOCK: if the file was swapped for a fifo since stat, open must not hang.
  OwnedFd fd(::open(real, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) {
    int e = errno;
    if (e == EACCES)
      return MK_FAIL(EACCES, "image not readable", "'%s' is not readable by this user; run: chmod +r %s", real, real);
    return MK_FAIL(e == ENOENT ? ENOENT : EIO, "image open failed", "'%s': open: %s", real, std::strerror(e));
  }
  struct stat fsb;
  if (::fstat(fd.get(), &fsb) != 0 || !S_ISREG(fsb.st_mode))
    return MK_FAIL(EINVAL, "image not a regular file", "'%s' changed to a non-regular file while opening it; retry",
                   real);

  unsigned char buf[64 * 1024];
  static_assert(sizeof buf >= sizeof(Elf64_Ehdr));
  ssize_t n = read_full(fd.get(), buf, sizeof(Elf64_Ehdr));
  if (n < 0) return read_error(real);
  ImageInfo info;
  MK_TRY(check_elf(real, buf, static_cast<std::size_t>(n), info.pie));
  {
    Elf64_Ehdr eh;
    std::memcpy(&eh, buf, sizeof eh);
    char m[32];
    machine_name(eh.e_machine, m, sizeof m);
    info.machine = m;
  }

  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    return MK_FAIL(EIO, "image hash failed", "'%s': OpenSSL SHA-256 unavailable", real);
  uint64_t size = static_cast<uint64_t>(n);
  if (EVP_DigestUpdate(ctx.get(), buf, static_cast<std::size_t>(n)) != 1)
    return MK_FAIL(EIO, "image hash failed", "'%s': SHA-256 update failed", real);
  for (;;) {
    ssize_t r = ::read(fd.get(), buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      return read_error(real);
    }
    if (r == 0) break;
    if (EVP_DigestUpdate(ctx.get(), buf, static_cast<std::size_t>(r)) != 1)
      return MK_FAIL(EIO, "image hash failed", "'%s': SHA-256 update failed", real);
    size += static_cast<uint64_t>(r);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &mdlen) != 1 || mdlen != 32)
    return MK_FAIL(EIO, "image hash failed", "'%s': SHA-256 final failed", real);
  static constexpr char kHex[] = "0123456789abcdef";
  info.sha256.reserve(64);
  for (unsigned i = 0; i < mdlen; ++i) {
    info.sha256 += kHex[md[i] >> 4];
    info.sha256 += kHex[md[i] & 0xf];
  }
  info.path = real;
  info.size = size;
  return info;
}

Result<void> verify_image(const ImageInfo& recorded) {
  MK_TRY_ASSIGN(ImageInfo now, inspect_image(recorded.path));
  if (now.size != recorded.size || now.sha256 != recorded.sha256)
    return MK_FAIL(ESTALE, "image changed",
                   "'%s': image changed since it was loaded (size %llu -> %llu, sha256 %.12s... -> %.12s...): "
                   "reload it",
                   recorded.path.c_str(), static_cast<unsigned long long>(recorded.size),
                   static_cast<unsigned long long>(now.size), recorded.sha256.c_str(), now.sha256.c_str());
  return ok();
}

}  // namespace mk
