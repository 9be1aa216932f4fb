// Fuzzes mk::IrqSteering::load (mkernel/src/irq.cc, its StateReader): the
// daemon's irq-affinity.json, the original IRQ affinities a previous daemon
// saved and this one restores, which a crash or a hand edit can leave in any
// shape. The input is written to the state file and loaded. Invariants: a
// refusal is EBADMSG with a message; what is accepted names IRQs >= 0 and
// CPUs < kMaxCpus, and its canonical form (what save() writes) loads into
// a fresh IrqSteering unchanged.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_check.h"
#include "mkernel/irq.h"

namespace {

char g_dir[] = "/tmp/mk-fuzz-irq.XXXXXX";  // plain storage: still valid in the atexit handler

const std::string& dir() {
  static const std::string d = [] {
    MK_FUZZ_CHECK(::mkdtemp(g_dir) != nullptr, "mkdtemp: errno %d", errno);
    std::atexit(+[] {  // at the end of a run (a crash leaves it for the input's reproduction)
      for (const char* f : {"/irq-affinity.json", "/resaved.json"}) ::unlink((std::string(g_dir) + f).c_str());
      ::rmdir(g_dir);
    });
    return std::string(g_dir);
  }();
  return d;
}

void write_file(const std::string& path, const uint8_t* data, size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  MK_FUZZ_CHECK(fd >= 0, "open %s: errno %d", path.c_str(), errno);
  MK_FUZZ_CHECK(size == 0 || ::write(fd, data, size) == static_cast<ssize_t>(size), "short write");
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The SysRoot is never read by load()/save(): a directory with no /proc.
  const std::string in = dir() + "/irq-affinity.json", out = dir() + "/resaved.json";
  write_file(in, data, size);
  mk::IrqSteering s(mk::SysRoot(dir()), in);
  auto r = s.load();
  if (!r) {
    MK_FUZZ_CHECK(r.error().code() == EBADMSG, "code %d: %s", r.error().code(), r.error().to_string().c_str());
    MK_FUZZ_CHECK(!r.error().to_string().empty(), "empty error");
    return 0;
  }
  for (const auto& [irq, cpus] : s.originals()) {
    MK_FUZZ_CHECK(irq >= 0, "accepted irq %d", irq);
    MK_FUZZ_CHECK(cpus.empty() || cpus.last() < static_cast<int>(mk::CpuSet::kMaxCpus), "cpu %d", cpus.last());
  }
  // save() is private (apply() calls it): write what load() kept in the
  // form save() writes (irq.cc state_text) and load it into a fresh one.
  std::string t = "{\"format\":\"mkernel-irq-affinity/1\",\"reserved\":\"" + s.reserved().to_string() +
                  "\",\"default_smp_affinity\":";
  t += s.default_original() ? "\"" + s.default_original()->to_string() + "\"" : std::string("null");
  t += ",\"irqs\":{";
  bool first = true;
  for (const auto& [irq, cpus] : s.originals()) {
    t += (first ? "\"" : ",\"") + std::to_string(irq) + "\":\"" + cpus.to_string() + "\"";
    first = false;
  }
  t += "}}\n";
  write_file(out, reinterpret_cast<const uint8_t*>(t.data()), t.size());
  mk::IrqSteering copy(mk::SysRoot(dir()), out);
  auto back = copy.load();
  MK_FUZZ_CHECK(back.has_value(), "canonical state rejected: %s\n%s", back.error().to_string().c_str(), t.c_str());
  MK_FUZZ_CHECK(copy.originals() == s.originals(), "originals changed:\n%s", t.c_str());
  MK_FUZZ_CHECK(copy.default_original() == s.default_original(), "default affinity changed:\n%s", t.c_str());
  MK_FUZZ_CHECK(copy.reserved() == s.reserved(), "reserved changed:\n%s", t.c_str());
  // Loading is deterministic: the same file into a fresh object, same result.
  mk::IrqSteering again(mk::SysRoot(dir()), in);
  MK_FUZZ_CHECK(again.load().has_value() && again.originals() == s.originals(), "second load differs");
  return 0;
}
