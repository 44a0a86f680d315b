// The master key (KEK): created by `phivault init`, loaded by the daemon from a file, a systemd
// credential, or derived from a passphrase with Argon2id.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/secret.h"

namespace phivault::crypto {

inline constexpr size_t kMasterKeyBytes = 32;

// Writes 32 random bytes to `path`, created with O_EXCL and mode 0400, fsynced (file and
// directory). AlreadyExists if anything is at `path`: a key file is never overwritten.
// NotFound if the directory does not exist; Unavailable on an I/O failure (the partial file is
// removed, so the call can be retried).
[[nodiscard]] Status CreateMasterKeyFile(const std::string& path);

// As CreateMasterKeyFile, but writes `key` (a key restored from a recovery kit, or a rotation's
// new key). InvalidArgument "master key must be 32 bytes".
[[nodiscard]] Status WriteMasterKeyFile(const std::string& path, const SecretBytes& key);

// Overwrites the key file at `path` with zeros in place, syncs, unlinks it and syncs its
// directory: for a key that must not outlive its use (a rotation's pending key once installed).
// OK if nothing is at `path`; InvalidArgument if it is not a regular file; Unavailable on an I/O
// failure.
[[nodiscard]] Status ShredMasterKeyFile(const std::string& path);

// Reads a 32-byte key file. NotFound if missing; InvalidArgument "master key file must be
// exactly 32 bytes" (or if it is not a regular file); PermissionDenied "master key file must not be
// readable by group or others" if its mode allows group/other access.
[[nodiscard]] StatusOr<SecretBytes> LoadMasterKeyFile(const std::string& path);

// Reads credential `name` from $CREDENTIALS_DIRECTORY (systemd LoadCredential=/
// LoadCredentialEncrypted=). FailedPrecondition if the variable is unset; otherwise as
// LoadMasterKeyFile (the mode check is skipped: systemd owns that directory). InvalidArgument
// if `name` is not a plain file name.
[[nodiscard]] StatusOr<SecretBytes> LoadMasterKeyCredential(const std::string& name);

// Where phivaultd keeps the new master key of a rotation (`phivault key rotate`) for the key
// file and systemd credential sources, from before the keyring is re-sealed until an
// administrator has installed it where the configuration loads the key from:
// <data_dir>/master-key.next (0400). At start, a daemon whose configured key no longer opens
// the keyring opens it with this key instead; one whose configured key opens it shreds this file
// (docs/keys.md).
std::string PendingMasterKeyPath(const std::string& data_dir);

struct PassphraseParams {
  std::string salt;               // 16 raw bytes (crypto_pwhash_SALTBYTES)
  uint64_t opslimit = 3;          // crypto_pwhash_OPSLIMIT_MODERATE
  uint64_t memlimit = 268435456;  // 256 MiB, crypto_pwhash_MEMLIMIT_MODERATE
};
// Argon2id13. InvalidArgument if the salt is not 16 bytes, the passphrase is empty, or limits are
// outside libsodium's bounds; ResourceExhausted if the derivation fails (out of memory).
[[nodiscard]] StatusOr<SecretBytes> DeriveMasterKeyFromPassphrase(std::string_view passphrase,
                                                                  const PassphraseParams& params);

}  // namespace phivault::crypto
