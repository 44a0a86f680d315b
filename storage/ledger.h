// The ledger: the only way changes and audit entries reach the store.
//
// Commit() appends one audit entry and, in the same atomic synced batch, the changes it
// describes. Concurrent callers are grouped: one leader takes every pending request, assigns
// consecutive sequence numbers, links each entry to the previous one (hash chain), updates the
// audit index and Merkle tree, and writes the whole group with one sync. Either a request's changes
// and its entry are both durable, or neither is and Commit returns the error (fail closed).
#pragma once

#include <cstdint>
#include <memory>

#include "crypto/status.h"
#include "storage/audit_entry.h"
#include "storage/store.h"

namespace phivault::storage {

class Ledger {
 public:
  // Recovers the sequence counter and chain head from `store`. DataLoss if the stored tail is
  // inconsistent.
  static StatusOr<std::unique_ptr<Ledger>> Open(Store& store);
  virtual ~Ledger() = default;

  // Durably commits `changes` (may be empty: a read is audited with no changes) together with
  // `entry`. Returns the sequence number given to the entry. On any error nothing of this call
  // was written and no sequence number was consumed.
  virtual StatusOr<uint64_t> Commit(WriteBatch changes, AuditEntry entry) = 0;

  // Number of audit entries committed so far.
  virtual uint64_t size() const = 0;
};

// Reads audit entries back. NotFound for a sequence number beyond the end.
StatusOr<AuditEntry> ReadAuditEntry(Store& store, uint64_t seq);

}  // namespace phivault::storage
