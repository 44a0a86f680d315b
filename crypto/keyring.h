// The keyring: epoch keys and the vault's service keys, each sealed under the master key, in a
// small file that is rewritten atomically (write temp, fsync, rename, fsync dir) on every change
// and mirrored to every configured mirror path.
//
// Epoch ids name what a key protects:
//   "d20361129"   records whose retention ends on that UTC day
//   "h<hold-id>"  records under a legal hold
// Service keys are created with the keyring and are never destroyed:
//   blind index key (patient blind ids), audit key (PHI fields in audit entries),
//   audit signing key (Ed25519, signs audit checkpoints).
//
// Thread-safe: all methods may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/aead.h"
#include "crypto/hash.h"
#include "crypto/secret.h"
#include "crypto/signing.h"
#include "crypto/status.h"

namespace phivault::crypto {

struct KeyringOptions {
  std::string path;                  // the primary keyring file
  std::vector<std::string> mirrors;  // further copies, each rewritten on every change
};

class Keyring {
 public:
  // Opens the keyring at options.path, or creates it (with fresh service keys) if no file
  // exists there. FailedPrecondition "master key does not match the keyring" if the sealed check
  // value does not open under `master_key` — the daemon must refuse to start. DataLoss if the
  // file is truncated or malformed. A missing mirror is recreated from the primary.
  static StatusOr<std::unique_ptr<Keyring>> Open(const KeyringOptions& options,
                                                 SecretBytes master_key);

  // The key for `epoch_id`, creating and durably persisting it (primary and every mirror) first
  // if it does not exist. FailedPrecondition "epoch key was destroyed" for a destroyed epoch
  // (a destroyed epoch is never recreated). InvalidArgument for a malformed id.
  StatusOr<std::shared_ptr<const Aead>> GetOrCreateEpoch(std::string_view epoch_id);
  // NotFound if the epoch never existed; FailedPrecondition if it was destroyed.
  StatusOr<std::shared_ptr<const Aead>> GetEpoch(std::string_view epoch_id) const;

  // Crypto-shreds an epoch: overwrites its slot in the current file in place (fsynced), then
  // writes the new keyring to the primary and every mirror. OK only when every copy confirms;
  // otherwise Unavailable naming the copy that failed (the key is gone from memory either way).
  // NotFound if the epoch never existed; OK (idempotent) if already destroyed.
  [[nodiscard]] Status DestroyEpoch(std::string_view epoch_id);

  // Re-seals every key under `new_master_key` (O(number of keys); no record is touched) and
  // rewrites all copies.
  [[nodiscard]] Status Rotate(SecretBytes new_master_key);

  struct EpochInfo {
    std::string id;
    bool destroyed = false;
    int64_t created_unix = 0;
    int64_t destroyed_unix = 0;  // 0 unless destroyed
  };
  std::vector<EpochInfo> ListEpochs() const;

  const Aead& audit_key() const;          // seals PHI fields inside audit entries
  const BlindIndex& blind_index() const;  // patient blind ids
  const Ed25519Signer& audit_signer() const;  // signs audit checkpoints

  ~Keyring();

 private:
  Keyring();
  struct State;
  mutable std::mutex mu_;
  std::unique_ptr<State> state_;  // GUARDED_BY(mu_) for mutable parts
};

}  // namespace phivault::crypto
