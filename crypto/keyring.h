// The keyring: epoch keys and the vault's service keys, each sealed under the master key, in one
// small file per copy (the primary and every mirror) that is updated in place for its whole life
// (one inode: a rename would leave every earlier version, with every key it held, in freed
// blocks).
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
// File format 2 (little-endian):
//   header regions 0 and 1, 8 KiB each, at offsets 0 and 8192; one holds the current header,
//   the other is zero (or, after a crash, an older or torn header):
//     "PVK2" | u32 format version (2) | u64 generation | u32 slot count |
//     sealed check (72) = Aead(master).Encrypt(constant, "phivault/keyring/check/v1") |
//     bitmap, one bit per slot: which of its two places holds it |
//     MAC (32) over the header so far and every current slot's MAC
//   slots from offset 16384, each with two places of 172 bytes (slot i, place p at
//   16384 + (2i + p) * 172); the unused place is zero:
//     id (48, zero-padded) | u32 state (1 live, 2 destroyed) | i64 created unix |
//     i64 destroyed unix | sealed key (72) = nonce(24) || ct(32) || tag(16),
//     AAD "phivault/keyring/slot/v1" || id; all zero in a tombstone |
//     MAC (32) over u64 slot index || the slot so far
//   MACs are keyed BLAKE2b-256 under crypto_kdf(master, subkey 1, context "pvkring2"), so only
//   the master-key holder can write a slot, a tombstone or a header that authenticates.
// Service keys are slots with the reserved ids "svc:blind-index", "svc:audit",
// "svc:audit-sign" (the Ed25519 seed), and "svc:vault-id" (vault id || 16 zero bytes, sealed like
// a key so that it is authenticated under the master key).
//
// An update (new epoch, destruction, rotation) goes to the primary, then to each mirror, in four
// synced steps per copy (pwrite + fdatasync each): (1) the changed slots into their unused
// places, (2) the new header, generation + 1, into the other header region, (3) the old header
// zeroed, (4) the old places zeroed. A crash before (2) completes leaves the old state, after it
// the new one; leftovers of an interrupted update are zeroed at the next Open. A destruction is
// thus: an authenticated tombstone, then the sealed key overwritten with zeros.
// A copy that does not authenticate (altered, zeroed, truncated, torn) is never believed: a
// zeroed slot is corruption, not a destruction. Open repairs such a copy from one that
// authenticates, merges the tombstones of every authenticating copy (a destroyed key is never
// brought back), and refuses to start when a mirror is newer than the primary. A format-1 file
// (rewritten by rename in earlier versions) is migrated in place at Open, and its leftover
// "<copy>.tmp" files are overwritten and removed.
// One process at a time may open a keyring.
//
// Thread-safe: all methods may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "crypto/aead.h"
#include "crypto/hash.h"
#include "crypto/keyring_file.h"
#include "crypto/secret.h"
#include "crypto/signing.h"

namespace phivault::crypto {

struct KeyringOptions {
  std::string path;                  // the primary keyring file
  std::vector<std::string> mirrors;  // further copies, each updated on every change
  KeyringFiles* files = nullptr;     // file I/O; nullptr = the real file system (tests inject)
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
  // "master key does not match the keyring" if no copy authenticates under `master_key` and
  // none shows signs of having been written with it — the daemon must refuse to start.
  // DataLoss naming the primary if no copy authenticates. FailedPrecondition "... is newer ..."
  // naming both if a mirror holds a later generation than the primary (the primary was rolled
  // back; using it would bring back destroyed keys), and nothing is written. Otherwise the
  // primary's state (or, if the primary does not authenticate, the newest copy's) plus every
  // copy's tombstones is written to every copy that differs (Unavailable naming it if that
  // fails). FailedPrecondition if the primary is missing but a mirror exists (restore it; a fresh
  // keyring would orphan every key). A keyring written before vault ids existed gets one here.
  // InvalidArgument if the master key is not 32 bytes or the mirrors repeat a path.
  static StatusOr<std::unique_ptr<Keyring>> Open(const KeyringOptions& options,
                                                 SecretBytes master_key);

  // The key for `epoch_id`, creating and durably persisting it (primary and every mirror) first
  // if it does not exist. ResourceExhausted on a full disk or when the keyring's 64,544 slots are
  // used. FailedPrecondition "epoch key was destroyed" for a destroyed epoch
  // (a destroyed epoch is never recreated). InvalidArgument for a malformed id (must match
  // ^(d[0-9]{8}|h[A-Za-z0-9_-]{1,40})$). Unavailable naming the copy if a write failed; while a
  // mirror is behind, every call retries it first.
  StatusOr<std::shared_ptr<const Aead>> GetOrCreateEpoch(std::string_view epoch_id);
  // NotFound if the epoch never existed; FailedPrecondition if it was destroyed;
  // InvalidArgument for a malformed id. Never touches the disk.
  StatusOr<std::shared_ptr<const Aead>> GetEpoch(std::string_view epoch_id) const;

  // Crypto-shreds an epoch: in every copy, writes its tombstone, then zeroes its sealed key in
  // place (see the update steps above). OK only when every copy confirms; otherwise Unavailable
  // (ResourceExhausted on a full disk) naming the copy that failed; the key is gone from memory
  // either way and the failed copies are retried by every later call. NotFound if the epoch never
  // existed; OK (idempotent) if already destroyed and every copy already confirmed it.
  [[nodiscard]] Status DestroyEpoch(std::string_view epoch_id);

  // DestroyEpoch for several epochs in one update of each copy (one tombstone per epoch, the same
  // four synced steps): a sweep erasing many days of epochs does not pay four syncs per day.
  // NotFound naming the first epoch that never existed (nothing destroyed); otherwise as
  // DestroyEpoch. Already destroyed ones are skipped.
  [[nodiscard]] Status DestroyEpochs(const std::vector<std::string>& epoch_ids);

  // Re-seals every key under `new_master_key` (O(number of keys); no record is touched) in place
  // in every copy; the places that held keys sealed under the old master key are zeroed. If the
  // primary's new header could not be written nothing changes (Unavailable). If it was written
  // but a later step or a mirror failed, the rotation has taken effect (Unavailable names the
  // copy; the next change or Open repairs it). A failing sync leaves the outcome uncertain: keep
  // the old master key until a later call succeeds. InvalidArgument if not 32 bytes.
  [[nodiscard]] Status Rotate(SecretBytes new_master_key);

  // The generation of the state in force (each update adds one).
  uint64_t generation() const;
  // True if `master_key` is the key the keyring is sealed under now (constant-time): tells a
  // caller whose Rotate failed whether the new key took effect.
  bool SealedUnder(const SecretBytes& master_key) const;

  struct EpochInfo {
    std::string id;
    bool destroyed = false;
    int64_t created_unix = 0;
    int64_t destroyed_unix = 0;  // 0 unless destroyed
  };
  std::vector<EpochInfo> ListEpochs() const;

  // What one keyring copy holds (a file read while phivaultd may be updating it, or one
  // restored from an export), checked under `master_key` without writing anything: every header
  // and slot authenticated, every live key unsealed. FailedPrecondition "master key does not
  // match the keyring" if no part of it was written with this key; DataLoss if it does not
  // authenticate (a torn read of a copy being updated also looks like this: read it again).
  // `clean`, if not null, receives the copy as Open leaves it: the current state only, with no
  // leftovers of an interrupted update. InvalidArgument if the key is not 32 bytes.
  struct CopyInfo {
    uint64_t generation = 0;
    std::string vault_id;  // 32 hex characters
    size_t live_epochs = 0;
    size_t destroyed_epochs = 0;
  };
  static StatusOr<CopyInfo> InspectCopy(std::string_view bytes, const SecretBytes& master_key,
                                        std::string* clean);

  // The vault id as 32 lowercase hex characters; fixed for the keyring's life (Rotate keeps it).
  const std::string& vault_id() const;

  const Aead& audit_key() const;              // seals PHI fields inside audit entries
  const BlindIndex& blind_index() const;      // patient blind ids
  const Ed25519Signer& audit_signer() const;  // signs audit checkpoints

  ~Keyring();

 private:
  Keyring();
  struct State;
  // Unseals the keys of `state`'s slots into memory. DataLoss if a slot does not open or a
  // service key is missing.
  static StatusOr<std::unique_ptr<Keyring>> Load(std::unique_ptr<State> state);
  mutable Mutex mu_;
  std::unique_ptr<State> state_ PT_GUARDED_BY(mu_);
  // Unsealed once by Load and never changed (Rotate re-seals them on disk, keeping the keys):
  // read without the mutex.
  std::unique_ptr<Aead> audit_key_;
  std::unique_ptr<BlindIndex> blind_index_;
  std::unique_ptr<Ed25519Signer> audit_signer_;
  std::string vault_id_;  // hex
};

}  // namespace phivault::crypto
