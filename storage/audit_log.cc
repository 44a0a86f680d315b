#include "storage/audit_log.h"

#include <chrono>

#include "crypto/hash.h"
#include "storage/key_encoding.h"

namespace phivault::storage {
namespace {

// Handed-out checkpoints are all kept for an hour, then thinned to the newest of each UTC hour.
constexpr int64_t kKeepAllSeconds = 3600;
constexpr int64_t kBucketSeconds = 3600;

std::string CheckpointKey(uint64_t size) { return "c" + BigEndian64(size); }
std::string KindKey(uint64_t size) { return "k" + BigEndian64(size); }
std::string_view KindValue(CheckpointKind kind) {
  return kind == CheckpointKind::kHandedOut ? "h" : "s";
}

int64_t FloorTo(int64_t t, int64_t unit) { return t - ((t % unit) + unit) % unit; }

int64_t SystemNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One stored checkpoint as the retention rule sees it.
struct StoredCheckpoint {
  uint64_t size = 0;
  std::optional<int64_t> time;  // nullopt for notes without a time line (never thinned)
};

StoredCheckpoint Describe(std::string_view key, std::string_view note) {
  StoredCheckpoint s;
  s.size = ReadBigEndian64(key.substr(1));
  // Our own notes, read back from our own store: the text is enough, no signature check.
  if (auto cp = ParseUnverifiedCheckpoint(note); cp.ok()) s.time = cp->time_unix_seconds;
  return s;
}

}  // namespace

StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(Store& store,
                                                   const crypto::Ed25519Signer& signer,
                                                   std::string origin, Clock clock) {
  if (origin.empty() || origin.find('\n') != std::string::npos) {
    return InvalidArgument("audit origin must be a non-empty single line");
  }
  if (!clock) clock = SystemNow;
  std::unique_ptr<AuditLog> log(new AuditLog(store, signer, std::move(origin), std::move(clock)));
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

StatusOr<std::string> AuditLog::MakeCheckpoint(CheckpointKind kind) {
  MutexLock lock(checkpoint_mu_);
  // Stored nodes never change once written, so the root at this size stays right while
  // appends continue.
  const uint64_t size = tree_->size();
  if (size == 0) return FailedPrecondition("the audit log is empty");
  PV_ASSIGN_OR_RETURN(std::optional<std::string> same,
                      store_.Get(Cf::kAuditTree, CheckpointKey(size)));
  PV_ASSIGN_OR_RETURN(std::optional<std::string> same_kind,
                      store_.Get(Cf::kAuditTree, KindKey(size)));
  const bool same_is_scheduled =
      same && (!same_kind || *same_kind == KindValue(CheckpointKind::kScheduled));
  if (kind == CheckpointKind::kScheduled && same) {
    if (!same_is_scheduled) {
      WriteBatch batch;
      batch.Put(Cf::kAuditTree, KindKey(size), std::string(KindValue(kind)));
      batch.set_write_class(WriteClass::kAuditOnly);
      PV_RETURN_IF_ERROR(store_.Write(batch, /*sync=*/true));
    }
    return *same;
  }
  const int64_t now = clock_();
  PV_ASSIGN_OR_RETURN(MerkleHash root, tree_->RootAt(size));
  Checkpoint checkpoint{origin_, size, root, {}};
  checkpoint.time_unix_seconds = now;
  PV_ASSIGN_OR_RETURN(std::string note, SignCheckpoint(checkpoint, origin_, signer_));
  // A handed-out checkpoint replacing a scheduled one of the same size keeps it kept.
  const CheckpointKind stored_kind = same_is_scheduled ? CheckpointKind::kScheduled : kind;
  WriteBatch batch;
  batch.Put(Cf::kAuditTree, CheckpointKey(size), note);
  batch.Put(Cf::kAuditTree, KindKey(size), std::string(KindValue(stored_kind)));
  // A checkpoint is audit data, a few hundred bytes: like an audited read it may use the disk
  // reserve, so that a compliance officer can still export and verify the log on a full disk.
  batch.set_write_class(WriteClass::kAuditOnly);
  PV_RETURN_IF_ERROR(store_.Write(batch, /*sync=*/true));
  if (kind == CheckpointKind::kHandedOut) PV_RETURN_IF_ERROR(ThinHandedOut(now));
  return note;
}

Status AuditLog::ThinHandedOut(int64_t now) {
  // Whole hours behind the horizon, each looked at once.
  const int64_t horizon = FloorTo(now - kKeepAllSeconds, kBucketSeconds);
  if (horizon <= thinned_before_) return Status::Ok();
  // Candidates are gathered first and their kinds read afterwards: no store reads inside a scan.
  std::vector<StoredCheckpoint> candidates;
  uint64_t next_size = thinned_size_;
  PV_RETURN_IF_ERROR(store_.Scan(Cf::kAuditTree, CheckpointKey(thinned_size_), "d",
                                 [&](std::string_view key, std::string_view note) {
                                   const StoredCheckpoint s = Describe(key, note);
                                   if (s.time && *s.time >= horizon) return false;
                                   next_size = s.size + 1;
                                   if (s.time) candidates.push_back(s);
                                   return true;
                                 }));
  std::vector<uint64_t> drop;
  std::optional<StoredCheckpoint> newest_of_bucket;  // the hour's newest handed-out one so far
  for (const StoredCheckpoint& s : candidates) {
    PV_ASSIGN_OR_RETURN(bool handed_out, IsHandedOut(s.size));
    if (!handed_out) continue;
    if (newest_of_bucket &&
        FloorTo(*newest_of_bucket->time, kBucketSeconds) == FloorTo(*s.time, kBucketSeconds)) {
      drop.push_back(newest_of_bucket->size);
    }
    newest_of_bucket = s;
  }
  if (!drop.empty()) {
    WriteBatch batch;
    for (uint64_t size : drop) {
      batch.Delete(Cf::kAuditTree, CheckpointKey(size));
      batch.Delete(Cf::kAuditTree, KindKey(size));
    }
    batch.set_write_class(WriteClass::kAuditOnly);  // part of making a checkpoint (above)
    PV_RETURN_IF_ERROR(store_.Write(batch, /*sync=*/true));
  }
  thinned_before_ = horizon;
  thinned_size_ = next_size;
  return Status::Ok();
}

StatusOr<bool> AuditLog::IsHandedOut(uint64_t size) {
  PV_ASSIGN_OR_RETURN(std::optional<std::string> kind, store_.Get(Cf::kAuditTree, KindKey(size)));
  return kind && *kind == KindValue(CheckpointKind::kHandedOut);
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

StatusOr<std::vector<std::string>> AuditLog::Checkpoints(std::optional<uint64_t> below) {
  std::vector<std::string> notes;
  PV_RETURN_IF_ERROR(store_.Scan(Cf::kAuditTree, "c", below ? CheckpointKey(*below) : "d",
                                 [&](std::string_view, std::string_view value) {
                                   notes.emplace_back(value);
                                   return true;
                                 }));
  return notes;
}

}  // namespace phivault::storage
