#include "storage/audit_log.h"

#include "crypto/hash.h"
#include "storage/key_encoding.h"

namespace phivault::storage {
namespace {

std::string CheckpointKey(uint64_t size) { return "c" + BigEndian64(size); }

}  // namespace

StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(Store& store,
                                                   const crypto::Ed25519Signer& signer,
                                                   std::string origin) {
  if (origin.empty() || origin.find('\n') != std::string::npos) {
    return InvalidArgument("audit origin must be a non-empty single line");
  }
  std::unique_ptr<AuditLog> log(new AuditLog(store, signer, std::move(origin)));
  PV_ASSIGN_OR_RETURN(log->tree_, MerkleTree::Open(store));
  // The tree may lag the ledger only for a log written before the tree existed: catch up
  // before the observer starts feeding new entries.
  {
    PV_ASSIGN_OR_RETURN(auto plain, Ledger::Open(store));
    if (log->tree_->size() < plain->size()) {
      PV_RETURN_IF_ERROR(BackfillMerkleTree(store, *log->tree_, plain->size()));
    } else if (log->tree_->size() > plain->size()) {
      return DataLoss("the audit Merkle tree is larger than the audit log");
    }
  }
  log->observer_ = std::make_unique<MerkleLedgerObserver>(*log->tree_);
  PV_ASSIGN_OR_RETURN(log->ledger_, Ledger::Open(store, log->observer_.get()));
  return log;
}

std::string AuditLog::VerifierKey() const {
  return crypto::NoteVerifierKey(origin_, signer_.public_key());
}

StatusOr<std::string> AuditLog::MakeCheckpoint() {
  std::lock_guard<std::mutex> lock(checkpoint_mu_);
  // Stored nodes never change once written, so the root at this size stays right while
  // appends continue.
  const uint64_t size = tree_->size();
  if (size == 0) return FailedPrecondition("the audit log is empty");
  auto latest = LatestCheckpoint();
  if (latest.ok()) {
    auto text = crypto::VerifyNote(*latest, {origin_, signer_.public_key()});
    if (text.ok()) {
      auto parsed = ParseCheckpointText(*text);
      if (parsed.ok() && parsed->size == size) return latest;
    }
  } else if (latest.status().code() != StatusCode::kNotFound) {
    return latest.status();
  }
  PV_ASSIGN_OR_RETURN(MerkleHash root, tree_->RootAt(size));
  PV_ASSIGN_OR_RETURN(std::string note,
                      SignCheckpoint({origin_, size, root, {}}, origin_, signer_));
  WriteBatch batch;
  batch.Put(Cf::kAuditTree, CheckpointKey(size), note);
  PV_RETURN_IF_ERROR(store_.Write(batch, /*sync=*/true));
  return note;
}

StatusOr<std::string> AuditLog::LatestCheckpoint() {
  std::optional<std::string> note;
  PV_RETURN_IF_ERROR(
      store_.ScanReverse(Cf::kAuditTree, "c", "d", [&](std::string_view, std::string_view value) {
        note = std::string(value);
        return false;
      }));
  if (!note) return NotFound("no audit checkpoint has been made yet");
  return *note;
}

StatusOr<std::vector<std::string>> AuditLog::Checkpoints() {
  std::vector<std::string> notes;
  PV_RETURN_IF_ERROR(
      store_.Scan(Cf::kAuditTree, "c", "d", [&](std::string_view, std::string_view value) {
        notes.emplace_back(value);
        return true;
      }));
  return notes;
}

}  // namespace phivault::storage
