// The verifiable audit log: the ledger (entries, hash chain, group commit), the RFC 9162 Merkle
// tree fed in the same batches, and the signed checkpoints over it, opened and kept together.
//
// Checkpoints are stored in Cf::kAuditTree under 'c' BE64(tree size) -> signed note.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "crypto/signing.h"
#include "crypto/status.h"
#include "storage/checkpoint.h"
#include "storage/ledger.h"
#include "storage/merkle.h"
#include "storage/store.h"

namespace phivault::storage {

class AuditLog {
 public:
  // Opens the tree, the ledger (with the tree observing it) and backfills the tree if the log
  // predates it. `signer` signs checkpoints as `origin`; both must outlive the log.
  static StatusOr<std::unique_ptr<AuditLog>> Open(Store& store, const crypto::Ed25519Signer& signer,
                                                  std::string origin);

  Ledger& ledger() { return *ledger_; }
  const MerkleTree& tree() const { return *tree_; }
  const std::string& origin() const { return origin_; }
  // The signed-note verifier key for this log's checkpoints.
  std::string VerifierKey() const;

  // Signs and stores a checkpoint of the current tree, unless the newest stored one already has
  // this size; returns the newest checkpoint note either way. An empty log is not checkpointed:
  // FailedPrecondition "the audit log is empty".
  StatusOr<std::string> MakeCheckpoint();
  // The newest stored checkpoint note; NotFound if none was made yet.
  StatusOr<std::string> LatestCheckpoint();
  // Every stored checkpoint note, oldest first.
  StatusOr<std::vector<std::string>> Checkpoints();

 private:
  AuditLog(Store& store, const crypto::Ed25519Signer& signer, std::string origin)
      : store_(store), signer_(signer), origin_(std::move(origin)) {}

  Store& store_;
  const crypto::Ed25519Signer& signer_;
  std::string origin_;
  std::unique_ptr<MerkleTree> tree_;
  std::unique_ptr<MerkleLedgerObserver> observer_;
  std::unique_ptr<Ledger> ledger_;
  std::mutex checkpoint_mu_;  // one checkpoint at a time
};

}  // namespace phivault::storage
