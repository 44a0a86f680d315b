// The verifiable audit log: the ledger (entries, hash chain, group commit), the RFC 9162 Merkle
// tree fed in the same batches, and the signed checkpoints over it, opened and kept together.
//
// Checkpoints are stored in Cf::kAuditTree under 'c' BE64(tree size) -> signed note, and their
// kind under 'k' BE64(tree size) -> "s" (scheduled) or "h" (handed out); a checkpoint without a
// kind key predates kinds and is kept like a scheduled one.
//
// Which checkpoints are kept. Verification never needs a stored checkpoint other than the one it
// is handed (any older tree size can be proven consistent from the tree nodes), so stored ones
// are kept for people, and their number is bounded by time:
//   - scheduled checkpoints (the daemon's timer, shutdown) are all kept: one per interval;
//   - handed-out checkpoints (an export's, the fresh-checkpoint API's) are all kept for an hour,
//     so the next export still holds the one just given out; older ones are thinned to the
//     newest of each UTC hour.
// Within the hour their number is bounded by the log's growth too: one of an unchanged log
// replaces the stored one of the same size. So a year of any load leaves at most 8760 older
// handed-out checkpoints beside the scheduled ones. One that was thinned away stays valid: its
// holder can still verify it and have an export proven consistent with it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "crypto/signing.h"
#include "storage/checkpoint.h"
#include "storage/ledger.h"
#include "storage/merkle.h"
#include "storage/store.h"

namespace phivault::storage {

enum class CheckpointKind {
  kScheduled,  // made on the daemon's timer or at shutdown
  kHandedOut,  // given to someone: an export's checkpoint, or the fresh-checkpoint API's
};

class AuditLog {
 public:
  // Unix seconds, UTC: the time signed into checkpoints and used to thin them.
  using Clock = std::function<int64_t()>;

  // Opens the tree, the ledger (with the tree observing it) and backfills the tree if the log
  // predates it. `signer` signs checkpoints as `origin`; both must outlive the log. `clock`
  // defaults to the system clock.
  static StatusOr<std::unique_ptr<AuditLog>> Open(Store& store, const crypto::Ed25519Signer& signer,
                                                  std::string origin, Clock clock = nullptr);

  Ledger& ledger() { return *ledger_; }
  const MerkleTree& tree() const { return *tree_; }
  const std::string& origin() const { return origin_; }
  // The signed-note verifier key for this log's checkpoints.
  std::string VerifierKey() const;

  // Signs and stores a checkpoint of the current tree, carrying the signing time, and returns
  // its note. kScheduled: if the newest stored checkpoint already has this size it is returned
  // instead (and kept from then on). kHandedOut: always signed now, so its time says when it was
  // handed out; it replaces a stored one of the same size (staying scheduled if that one was),
  // and older handed-out ones are thinned (see above). An empty log is not checkpointed:
  // FailedPrecondition "the audit log is empty".
  StatusOr<std::string> MakeCheckpoint(CheckpointKind kind) EXCLUDES(checkpoint_mu_);
  // The newest stored checkpoint note; NotFound if none was made yet.
  StatusOr<std::string> LatestCheckpoint();
  // Every stored checkpoint note of a tree smaller than `below` (all if nullopt), oldest first.
  StatusOr<std::vector<std::string>> Checkpoints(std::optional<uint64_t> below = std::nullopt);

 private:
  AuditLog(Store& store, const crypto::Ed25519Signer& signer, std::string origin, Clock clock)
      : store_(store), signer_(signer), origin_(std::move(origin)), clock_(std::move(clock)) {}
  // Deletes the handed-out checkpoints that the retention rule above no longer keeps at `now`.
  Status ThinHandedOut(int64_t now) REQUIRES(checkpoint_mu_);
  StatusOr<bool> IsHandedOut(uint64_t size);

  Store& store_;
  const crypto::Ed25519Signer& signer_;
  std::string origin_;
  Clock clock_;
  std::unique_ptr<MerkleTree> tree_;
  std::unique_ptr<MerkleLedgerObserver> observer_;
  std::unique_ptr<Ledger> ledger_;
  Mutex checkpoint_mu_;  // one checkpoint at a time
  // The hours before `thinned_before_` (unix seconds of a whole UTC hour) hold one handed-out
  // checkpoint each, and no checkpoint of a size below `thinned_size_` needs looking at again.
  // The first thinning after Open scans from the start; each later one only what has since
  // fallen behind the horizon.
  int64_t thinned_before_ GUARDED_BY(checkpoint_mu_) = 0;
  uint64_t thinned_size_ GUARDED_BY(checkpoint_mu_) = 0;
};

}  // namespace phivault::storage
