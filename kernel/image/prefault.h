// Prefaulting the image's own code before a live update's blackout.
//
// Role in the handover flow: a page of the executable that a process has
// not run yet costs a page fault on first use, and on a paravirtualized
// guest each one is several microseconds. The freeze (old image) and the
// restore (successor) run code nothing ran before, so the old image calls
// this at prepare and the parked successor before READY: the page tables
// of every read-only segment of the executable (code, constants) are
// filled with MADV_POPULATE_READ (Linux 5.14+) while nobody waits.
//
// Returns: the number of bytes populated; errno of madvise (EINVAL on a
// kernel without MADV_POPULATE_READ: the caller just goes on).
#pragma once

#include <cstddef>

#include "mk/result.h"

namespace mk::image {

Result<std::size_t> prefault_image();

}  // namespace mk::image
