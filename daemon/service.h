// The vault service: the one path every PHI access takes.
//
// Each public method authorises the request (policies), does the work (crypto + storage) and
// appends exactly one audit entry through the ledger: in the same atomic batch as a write, and
// durably before a read's content is returned. If the entry cannot be written the method fails
// with Unavailable and returns nothing. Denied and failed attempts are audited too.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/keyring.h"
#include "crypto/status.h"
#include "daemon/config.h"
#include "storage/ledger.h"
#include "storage/records.h"
#include "storage/store.h"

namespace phivault::daemon {

// Who is asking, as established by the socket boundary (daemon/auth.h).
struct Principal {
  enum class Kind { kApplication, kOperator };
  Kind kind = Kind::kApplication;
  std::string name;  // application name, or "cli:<uid>" for an operator
  uint32_t uid = 0;  // peer uid
  std::vector<std::string> actions;  // what the config lets this principal do
  std::string operator_role;         // the role an operator's config entry gives them
};

struct RequestContext {
  std::string request_id;
  Principal principal;
  std::string user;     // acting user (X-Phivault-User)
  std::string role;     // acting role (X-Phivault-Role)
  std::string purpose;  // HL7 PurposeOfUse (X-Phivault-Purpose)
};

struct CreateRecordRequest {
  std::string patient_id;
  std::string category;
  std::string content_type;
  std::string encounter_date;  // YYYY-MM-DD
  std::string author;
  std::string content;
};

struct AmendRecordRequest {
  std::string content;
  std::string reason;                       // why the record is amended (required)
  std::optional<std::string> content_type;  // default: the previous version's
  std::optional<std::string> encounter_date;
  std::optional<std::string> author;
};

struct VaultStatus {
  std::string version;
  int64_t uptime_seconds = 0;
  uint64_t audit_entries = 0;
  uint64_t epochs = 0;
  storage::SpaceInfo space;
};

class VaultService {
 public:
  virtual ~VaultService() = default;

  // Stores version 1 of a new record. InvalidArgument for a bad field (named), ResourceExhausted
  // for content over the limit or a disk below reserve, PermissionDenied if not allowed.
  virtual StatusOr<storage::RecordMetadata> CreateRecord(const RequestContext& ctx,
                                                        CreateRecordRequest req) = 0;
  // Reads a version (latest if none given). NotFound, DataLoss (integrity), PermissionDenied.
  virtual StatusOr<storage::Record> ReadRecord(const RequestContext& ctx,
                                               const std::string& record_id,
                                               std::optional<uint32_t> version,
                                               bool with_content) = 0;
  // Adds a version; the earlier ones stay readable.
  virtual StatusOr<storage::RecordMetadata> AmendRecord(const RequestContext& ctx,
                                                       const std::string& record_id,
                                                       AmendRecordRequest req) = 0;
  // Metadata of the latest version of each of a patient's records.
  virtual StatusOr<std::vector<storage::RecordMetadata>> ListRecords(
      const RequestContext& ctx, const std::string& patient_id) = 0;
  // No PHI; not audited (it touches no PHI) but still requires the "status" action.
  virtual StatusOr<VaultStatus> GetStatus(const RequestContext& ctx) = 0;

  // Audits a request that failed authentication or header validation before reaching one of
  // the methods above (`action` is the route's action). Best effort: returns the ledger status.
  virtual Status AuditRejected(const RequestContext& ctx, const std::string& action,
                               const std::string& reason) = 0;
};

struct ServiceDeps {
  const Config* config;
  storage::Store* store;
  storage::Ledger* ledger;
  crypto::Keyring* keyring;
};
std::unique_ptr<VaultService> NewVaultService(const ServiceDeps& deps);

}  // namespace phivault::daemon
