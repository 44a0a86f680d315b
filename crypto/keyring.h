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
// The vault id (16 random bytes, created with the keyring) binds the keyring to its database,
// which stores the same id: a keyring from another vault, or a fresh keyring over a database
// that already holds data, is refused by the daemon instead of orphaning every record.
//
// File format (little-endian; every slot has the same size so that a slot can be overwritten in
// place):
//   header   "PVKR" | u32 format version (1) | u32 slot count |
//            sealed check (72) = Aead(master).Encrypt(constant, "phivault/keyring/check/v1")
//   slot     id (48, zero-padded) | u32 state (1 live, 2 destroyed) | i64 created unix |
//            i64 destroyed unix | sealed key (72) = nonce(24) || ct(32) || tag(16),
//            AAD "phivault/keyring/slot/v1" || id; all zero once destroyed
//   trailer  SHA-256 of everything before it with the sealed-key fields counted as zero
//            (they carry their own tags), so zeroing a slot in place keeps the file valid
// Service keys are slots with the reserved ids "svc:blind-index", "svc:audit",
// "svc:audit-sign" (the Ed25519 seed), and "svc:vault-id" (vault id || 16 zero bytes, sealed like
// a key so that it is authenticated under the master key). A live slot whose sealed key is all zero
// is a destruction that was interrupted after its overwrite; Open completes it. Every write scrubs
// destroyed slots in place in each existing copy (pwrite + fdatasync), then replaces the primary,
// then each mirror (temp file, fsync, rename, fsync dir; mode 0600). One process at a time may open
// a keyring.
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
  // Creates a new keyring (fresh service keys, fresh vault id) at options.path and every mirror.
  // Creation is never implicit: a new keyring orphans every record sealed under an old one, so
  // only a caller that has established that no vault exists yet may call this.
  // AlreadyExists naming the file if the primary or any mirror exists (nothing is written).
  // Unavailable naming the copy if a write fails. InvalidArgument as for Open.
  static StatusOr<std::unique_ptr<Keyring>> Create(const KeyringOptions& options,
                                                   SecretBytes master_key);

  // Opens the existing keyring at options.path. NotFound "no keyring" if neither the primary nor
  // any mirror exists (and only then; the caller decides whether to Create). FailedPrecondition
  // "master key does not match the keyring" if the sealed check value does not open under
  // `master_key` — the daemon must refuse to start. DataLoss if the file is truncated or
  // malformed. A missing or differing mirror is rewritten from the primary (Unavailable naming it
  // if that fails). FailedPrecondition if the primary is missing but a mirror exists (restore it;
  // a fresh keyring would orphan every key). A keyring written before vault ids existed gets one
  // here (persisted to every copy). InvalidArgument if the master key is not 32 bytes or the
  // mirrors repeat a path.
  static StatusOr<std::unique_ptr<Keyring>> Open(const KeyringOptions& options,
                                                 SecretBytes master_key);

  // The key for `epoch_id`, creating and durably persisting it (primary and every mirror) first
  // if it does not exist. FailedPrecondition "epoch key was destroyed" for a destroyed epoch
  // (a destroyed epoch is never recreated). InvalidArgument for a malformed id (must match
  // ^(d[0-9]{8}|h[A-Za-z0-9_-]{1,40})$). Unavailable naming the copy if a write failed; while a
  // mirror is behind, every call retries it first.
  StatusOr<std::shared_ptr<const Aead>> GetOrCreateEpoch(std::string_view epoch_id);
  // NotFound if the epoch never existed; FailedPrecondition if it was destroyed;
  // InvalidArgument for a malformed id. Never touches the disk.
  StatusOr<std::shared_ptr<const Aead>> GetEpoch(std::string_view epoch_id) const;

  // Crypto-shreds an epoch: overwrites its slot in the current file in place (fsynced), then
  // writes the new keyring to the primary and every mirror. OK only when every copy confirms;
  // otherwise Unavailable naming the copy that failed (the key is gone from memory either way).
  // NotFound if the epoch never existed; OK (idempotent) if already destroyed and every copy
  // already confirmed it (otherwise the copies are rewritten again).
  [[nodiscard]] Status DestroyEpoch(std::string_view epoch_id);

  // Re-seals every key under `new_master_key` (O(number of keys); no record is touched) and
  // rewrites all copies. If the primary cannot be written nothing changes (Unavailable). If the
  // primary was written but a mirror failed, the rotation has taken effect (Unavailable names
  // the mirror; the next change or Open rewrites it). InvalidArgument if not 32 bytes.
  [[nodiscard]] Status Rotate(SecretBytes new_master_key);

  struct EpochInfo {
    std::string id;
    bool destroyed = false;
    int64_t created_unix = 0;
    int64_t destroyed_unix = 0;  // 0 unless destroyed
  };
  std::vector<EpochInfo> ListEpochs() const;

  // The vault id as 32 lowercase hex characters; fixed for the keyring's life (Rotate keeps it).
  const std::string& vault_id() const;

  const Aead& audit_key() const;              // seals PHI fields inside audit entries
  const BlindIndex& blind_index() const;      // patient blind ids
  const Ed25519Signer& audit_signer() const;  // signs audit checkpoints

  ~Keyring();

 private:
  Keyring();
  struct State;
  // Unseals `state`'s slots into memory, completes interrupted destructions, and writes every
  // copy if `needs_write` or a mirror differs from `primary` (the primary file's bytes).
  static StatusOr<std::unique_ptr<Keyring>> Load(std::unique_ptr<State> state, bool needs_write,
                                                 std::string_view primary);
  mutable std::mutex mu_;
  std::unique_ptr<State> state_;  // GUARDED_BY(mu_) for mutable parts
};

}  // namespace phivault::crypto
