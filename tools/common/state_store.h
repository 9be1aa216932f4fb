// DOC: mk::tools::StateStore — the runtime directory and its persisted state.
//
// What this is: where the partition (pool + instances) lives between calls.
// The live machine's state.json belongs to mkerneld (it loads it at start and
// saves after every change, tools/mkerneld/controller.h); the per-topology
// files are read and written by mkctl itself (--topology). Same format.
//
// Layout of the runtime directory (MKERNEL_RUNTIME_DIR, else /run/mkernel as
// root, else $XDG_RUNTIME_DIR/mkernel, else /tmp/mkernel-UID):
//   lock                       flock(2) target serializing state writers
//                              (mkerneld while saving, mkctl --topology)
//   mkerneld.lock, control.sock, mkerneld.log   the daemon's (daemon_client.h)
//   state.json                 the live machine's partition
//   topo/NAME-HASH.json        the partition planned for an hwloc XML file
//                              (--topology): experiments never touch the
//                              live machine's state
//
// Happy path:
//   1. StateStore::open(dir, topology_source) creates the directory (0700),
//      takes the lock (shared to read, exclusive to change);
//   2. load() parses and validates the file (a missing file is an empty
//      partition);
//   3. save() writes a temporary file, fsyncs it, renames it over the old
//      one and fsyncs the directory, so a crash leaves the old or the new
//      state, never a mix.
// Unhappy paths:
//   1. the directory cannot be created or locked → error naming it;
//   2. the file is corrupt or truncated → EBADMSG naming the file and the
//      problem; it is never replaced silently (move it away to start over);
//   3. a write fails (disk full, read-only) → the error, old state intact.
#pragma once

#include <string>

#include "mk/result.h"
#include "mkernel/partition.h"

namespace mk::tools {

// The runtime directory from the environment (see above).
std::string runtime_dir();
// Creates the runtime directory (0700) and its missing parents.
Result<void> make_runtime_dir(const std::string& dir);

// Writes `text` to `path` atomically and durably (temporary file, fsync,
// rename, fsync of the directory). On failure the temporary file is removed
// and `path` is as it was. Returns: the errno of the step that failed, the
// message naming `path`, the errno's name (ENOSPC, EROFS) and what to do.
Result<void> write_file_atomic(const std::string& path, const std::string& text);
// Moves a corrupt file aside, never over an earlier copy: PATH.corrupt, or
// PATH.corrupt.N when that exists. Returns: the new name; errno of link.
Result<std::string> move_aside(const std::string& path);

class StateStore {
 public:
  enum class Mode { Read, Write };
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;
  StateStore(StateStore&& o) noexcept;
  ~StateStore();

  // topology_source: "live" or the XML path given with --topology.
  static Result<StateStore> open(const std::string& dir, const std::string& topology_source, Mode mode);

  Result<Partition> load() const;
  Result<void> save(const Partition& p) const;
  const std::string& path() const { return path_; }

 private:
  StateStore() = default;
  std::string dir_, path_, topology_source_;
  int lock_fd_ = -1;
};

// JSON text of a partition, and back (validated: ids, names, cpu lists,
// sizes, devices, no CPU or device owned twice). Exposed for tests and the
// fuzzer. parse returns EBADMSG with a detail naming the bad field.
std::string partition_to_json_text(const Partition& p, const std::string& topology_source);
Result<Partition> partition_from_json_text(std::string_view text, const std::string& expected_source);

}  // namespace mk::tools
