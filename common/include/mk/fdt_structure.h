// DOC: mk::check_fdt_structure — a bounds-checked walk of an FDT's structure
// block, run before any libfdt call on an untrusted blob.
//
// What this is: the first line of defence of every FDT parser in the tree
// (the boot tree and pool tree in common/, the KHO blob in handover/). The
// libfdt of Debian 12 loops forever in fdt_check_full() on a property whose
// length word is negative (found by fuzz_pool_tree: a 574-byte blob with
// len = 0xfffffff4 sent the walk backwards). This walk needs no libfdt: it
// reads the header's offsets and sizes, then every token of the structure
// block, and insists that each one stays inside the block and moves forward.
// Only a blob that passes is handed to libfdt.
//
// Checks: header fields inside the blob (struct and strings blocks within
// totalsize, 4-byte aligned struct block); tokens BEGIN_NODE (NUL-terminated
// name inside the block), PROP (length and name offset inside their
// blocks), END_NODE, NOP, END; nesting never below the root (one root
// only); END reached inside the block with every node closed. Depth is not
// capped here (the walk is iterative); each parser caps its own.
// Returns: EBADMSG with a detail naming the offset and the problem.
#pragma once

#include <cstdint>
#include <span>

#include "mk/result.h"

namespace mk {

Result<void> check_fdt_structure(std::span<const uint8_t> blob);

}  // namespace mk
