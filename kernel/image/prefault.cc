// Prefaulting the image's code (prefault.h).
#include "prefault.h"

#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <vector>

namespace mk::image {

namespace {

struct Range {
  std::uintptr_t begin, end;
};

int collect(dl_phdr_info* info, std::size_t, void* data) {
  auto* out = static_cast<std::vector<Range>*>(data);
  // The first object is the executable itself (a static-pie: the only one).
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W)) continue;
    out->push_back(Range{info->dlpi_addr + ph.p_vaddr, info->dlpi_addr + ph.p_vaddr + ph.p_memsz});
  }
  return 1;  // stop after the first object
}

}  // namespace

Result<std::size_t> prefault_image() {
  std::vector<Range> ranges;
  ::dl_iterate_phdr(collect, &ranges);
  const std::uintptr_t page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  std::size_t total = 0;
  for (const Range& r : ranges) {
    const std::uintptr_t b = r.begin & ~(page - 1);
    const std::uintptr_t e = (r.end + page - 1) & ~(page - 1);
    if (::madvise(reinterpret_cast<void*>(b), e - b, MADV_POPULATE_READ) != 0) {
      return errno_error("madvise(MADV_POPULATE_READ) of the image's code");
    }
    total += e - b;
  }
  return total;
}

}  // namespace mk::image
