// The ledger: the only way changes and audit entries reach the store.
//
// Commit() appends one audit entry and, in the same atomic synced batch, the changes it
// describes. Concurrent callers are grouped: one leader takes every pending request, assigns
// consecutive sequence numbers, links each entry to the previous one (hash chain), updates the
// audit index and Merkle tree, and writes the whole group with one sync. Either a request's changes
// and its entry are both durable, or neither is and Commit returns the error (fail closed).
//
// Keys the ledger writes (in the same batch as the changes):
//   kAudit    BE64(seq)                            -> canonical entry bytes (audit_entry.h)
//   kState    "ledger/head"                        -> BE64(last seq) || SHA-256(last entry bytes)
//   kIndexes  'a' 'p' patient blind id(32) BE64(seq) -> "" (entries naming a patient)
//   kIndexes  'a' 'u' user 0x00 BE64(seq)          -> "" (entries by acting user)
//   kIndexes  'h' 'p' patient blind id(32)         -> BE64(seq of the patient's newest entry)
//   kIndexes  'h' 'u' user                         -> BE64(seq of the user's newest entry)
// The patient index key holds the 32 raw bytes of the entry's hex `patient_bid`; entries without
// a patient have no patient index key.
//
// The index keys are outside the hash chain and the Merkle tree, so each entry also carries, in
// its hashed bytes, the seq of the previous entry naming the same patient (`patient_prev`) and by
// the same user (`user_prev`). Scans walk that chain down from the head key and cross-check it
// against the index: a deleted or added index key is DataLoss naming the entry, never a silently
// shorter answer. (What the chain cannot see: the newest entries removed from the index AND the
// head rolled back to an older entry together; docs/threat-model.md.)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "storage/audit_entry.h"
#include "storage/store.h"

namespace phivault::storage {

inline constexpr std::string_view kLedgerHeadKey = "ledger/head";

// Per-entry work that must land in the same batch as the entries (e.g. the audit Merkle tree).
// All calls come from one thread at a time (the current group leader), in sequence order:
// OnAppend for each entry of a group, then exactly one of OnCommitted / OnAborted.
class LedgerObserver {
 public:
  virtual ~LedgerObserver() = default;
  // Entry `seq` with canonical bytes `entry_bytes` is about to be written; add puts to `batch`.
  // An error fails the whole group (nothing is written) and is returned to its callers.
  [[nodiscard]] virtual Status OnAppend(uint64_t seq, std::string_view entry_bytes,
                                        WriteBatch& batch) = 0;
  // Every entry up to and including `last_seq` is durable.
  virtual void OnCommitted(uint64_t last_seq) = 0;
  // The group was not written: forget the in-memory effect of every OnAppend since the last
  // OnCommitted (the next group reuses those sequence numbers).
  virtual void OnAborted() = 0;
};

class Ledger {
 public:
  // Recovers the sequence counter and chain head from `store`: reads "ledger/head", checks that
  // the tail entry hashes to the stored hash and that nothing follows it. DataLoss if the stored
  // tail is inconsistent. `store` and `observer` (optional) must outlive the ledger.
  static StatusOr<std::unique_ptr<Ledger>> Open(Store& store, LedgerObserver* observer = nullptr);
  virtual ~Ledger() = default;

  // Durably commits `changes` (may be empty: a read is audited with no changes) together with
  // `entry`; seq, time and prev of `entry` are set here. Returns the sequence number given to the
  // entry. On any error nothing of this call was written and no sequence number was consumed.
  // InvalidArgument if the entry cannot be encoded (invalid UTF-8, a NUL in `user`, a
  // `patient_bid` that is not 64 hex digits); otherwise the store's error (e.g. ResourceExhausted).
  // A commit without changes is written as WriteClass::kAuditOnly (it may use the disk reserve),
  // also when grouped with commits whose changes the full disk refuses.
  virtual StatusOr<uint64_t> Commit(WriteBatch changes, AuditEntry entry) = 0;

  // Commits each (changes, entry) pair as Commit would, in order and with consecutive sequence
  // numbers, all in one group: one write and one sync for all of them (for bulk work such as a
  // retention sweep's entries; keep it to hundreds, other requests wait behind the group).
  // Returns one result per pair, as Commit's: a pair whose entry cannot be encoded fails alone;
  // a store error fails every pair. The default commits them one by one.
  virtual std::vector<StatusOr<uint64_t>> CommitAll(
      std::vector<std::pair<WriteBatch, AuditEntry>> commits) {
    std::vector<StatusOr<uint64_t>> out;
    out.reserve(commits.size());
    for (auto& [changes, entry] : commits) {
      out.push_back(Commit(std::move(changes), std::move(entry)));
    }
    return out;
  }

  // Number of audit entries committed so far (= the last sequence number).
  virtual uint64_t size() const = 0;
};

// Reads audit entries back. NotFound for a sequence number beyond the end (or 0); DataLoss if
// the stored bytes do not decode or carry another sequence number.
StatusOr<AuditEntry> ReadAuditEntry(Store& store, uint64_t seq);
// The canonical bytes of entry `seq` (what the hash chain and Merkle leaves cover). NotFound as
// ReadAuditEntry.
StatusOr<std::string> ReadAuditEntryBytes(Store& store, uint64_t seq);

// Calls `fn(entry, bytes)` for entries from_seq..to_seq (inclusive, in order) until it returns
// false. Stops at the end of the log if to_seq is beyond it. DataLoss as ReadAuditEntry, or if
// a sequence number is missing in the middle.
using AuditScanFn = std::function<bool(const AuditEntry& entry, std::string_view bytes)>;
[[nodiscard]] Status ScanAuditEntries(Store& store, uint64_t from_seq, uint64_t to_seq,
                                      const AuditScanFn& fn);

// Calls fn(entry, bytes) for every audit entry naming the patient with raw 32-byte blind id
// `patient_blind_id`, oldest first, until fn returns an error (which is returned). Entries beyond
// `up_to_seq` are skipped. Before the first call it checks the patient's chain against the index
// (see above): DataLoss naming the first entry that one has and the other lacks, or an entry
// whose chain link is broken ("the audit index of this patient is missing entry 17").
using AuditEntryFn = std::function<Status(const AuditEntry& entry, std::string_view bytes)>;
[[nodiscard]] Status ScanPatientAuditEntries(Store& store, std::string_view patient_blind_id,
                                             const AuditEntryFn& fn,
                                             uint64_t up_to_seq = UINT64_MAX);
// The same for every audit entry by acting user `user`.
[[nodiscard]] Status ScanUserAuditEntries(Store& store, std::string_view user,
                                          const AuditEntryFn& fn, uint64_t up_to_seq = UINT64_MAX);

// Storage key of entry `seq` in Cf::kAudit (BE64).
std::string AuditKey(uint64_t seq);

}  // namespace phivault::storage
