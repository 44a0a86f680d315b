// The file operations the keyring needs, and nothing more: whole-file reads, in-place writes at
// an offset, data syncs and exclusive creation. There is no rename and no truncate: each keyring
// copy stays one inode for its whole life, so no earlier version of it (with keys destroyed
// since) is left behind in freed blocks by the keyring itself (crypto/keyring.h).
// Tests substitute an implementation that fails, tears a write or runs out of space at a chosen
// operation, to prove that a crash at any point leaves the old or the new keyring.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace phivault::crypto {

// No operation follows a symlink at the final path component: someone who can write the data
// directory must not be able to redirect the keyring's writes (ELOOP is reported as Unavailable).
class KeyringFiles {
 public:
  virtual ~KeyringFiles() = default;

  // The whole file. NotFound if nothing exists at `path`; Unavailable naming it otherwise.
  virtual StatusOr<std::string> Read(const std::string& path) = 0;
  // True if anything (file, symlink, directory) exists at `path`.
  virtual bool Exists(const std::string& path) = 0;
  // Creates `path` with mode 0600 (AlreadyExists if anything exists there; symlinks are not
  // followed), writes `data`, and syncs the file and its directory. Unavailable naming the path
  // on failure; a partial file may be left.
  [[nodiscard]] virtual Status Create(const std::string& path, std::string_view data) = 0;
  // Writes `data` at `offset` of the existing file `path`, in place (pwrite), extending the file
  // when the range ends past its end. Not durable until Sync. Unavailable naming the path (and
  // ResourceExhausted when the disk is full) on failure; part of `data` may have been written.
  [[nodiscard]] virtual Status WriteAt(const std::string& path, uint64_t offset,
                                       std::string_view data) = 0;
  // Makes every earlier WriteAt on `path` durable (fdatasync).
  [[nodiscard]] virtual Status Sync(const std::string& path) = 0;
  // Overwrites the file at `path` with zeros, syncs, and unlinks it: for temporary files that
  // earlier keyring versions could leave behind, full copies of the keyring of their time.
  // OK if nothing exists there.
  [[nodiscard]] virtual Status Shred(const std::string& path) = 0;
};

// The real file system (POSIX calls). Lives for the whole process; thread-safe.
KeyringFiles& PosixKeyringFiles();

}  // namespace phivault::crypto
