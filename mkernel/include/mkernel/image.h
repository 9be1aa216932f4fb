// DOC: mk::inspect_image / mk::verify_image — kernel image inspection (the
// OpenSSL seam: only image.cc includes OpenSSL headers).
//
// What this is: the check behind `mkctl load NAME --kernel IMAGE`. An image
// is an ELF executable the process backend spawns as the instance's kernel
// (boot.h, ImageSpec::path). Loading records an ImageInfo: the resolved path,
// its size and SHA-256, and the ELF machine; starting re-checks that record so
// an instance never boots a file other than the one the user loaded.
//
// Place in the boot flow: `load` calls inspect_image() and stores the
// ImageInfo with the instance; `start` calls verify_image(recorded) right
// before boot_instance() spawns recorded.path.
//
// Happy path (inspect_image):
//   1. realpath(path): symlinks resolved, the ImageInfo names the real file.
//   2. stat: a regular file; access(X_OK): executable by the caller.
//   3. read(2) the first 64 bytes: ELF magic, ELFCLASS64, ELFDATA2LSB,
//      e_type ET_EXEC or ET_DYN (pie), e_machine == this binary's machine.
//   4. read(2) the rest in chunks, hashing every byte with SHA-256 (EVP).
//
// Unhappy paths: the file is untrusted input — a short or garbage file is an
// ENOEXEC, never a crash. Every error's detail names the path and what to do.
//
// Returns (inspect_image):
//   ENOENT  no such file (or a dangling symlink);
//   EISDIR  a directory; EINVAL another non-regular file (fifo, device, ...);
//   EACCES  not executable ("chmod +x PATH"), or a directory on the path is
//           not searchable;
//   ENOEXEC not ELF / not 64-bit / not little endian / not an executable
//           (ET_REL, ET_CORE) / another architecture ("aarch64 image, this
//           host is x86_64");
//   EIO     read error (or the hash could not be computed).
// Returns (verify_image): the errors of inspect_image, and ESTALE when the
// file's size or SHA-256 differ from the record ("reload it").
#pragma once

#include <cstdint>
#include <string>

#include "mk/result.h"

namespace mk {

struct ImageInfo {
  std::string path;     // absolute, symlinks resolved (realpath)
  std::string sha256;   // 64 lowercase hex chars of the file's bytes
  uint64_t size = 0;    // bytes
  std::string machine;  // "x86_64" / "aarch64" / ... from e_machine
  bool pie = false;     // ET_DYN
  bool operator==(const ImageInfo&) const = default;
};

// Validates that `path` is a kernel image this host can boot and hashes it.
Result<ImageInfo> inspect_image(const std::string& path);

// Re-inspects recorded.path; ESTALE if its digest or size changed since load.
Result<void> verify_image(const ImageInfo& recorded);

}  // namespace mk
