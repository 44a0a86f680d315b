#include "daemon/service.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <mutex>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "daemon/record_rules.h"

namespace phivault::daemon {
namespace {

constexpr std::string_view kAuditPhiAad = "phivault/audit/phi/v1";

int64_t NowUnixMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool Allows(const Principal& p, std::string_view action) {
  return std::find(p.actions.begin(), p.actions.end(), action) != p.actions.end();
}

// The outcome recorded for a failed request: "denied" for authorisation failures, "error" for
// everything else; the reason is the stable status code name.
storage::AuditEntry& MarkFailure(storage::AuditEntry& e, const Status& s) {
  e.outcome =
      (s.code() == StatusCode::kPermissionDenied || s.code() == StatusCode::kUnauthenticated)
          ? "denied"
          : "error";
  if (e.reason.empty()) e.reason = std::string(StatusCodeName(s.code()));
  return e;
}

class VaultServiceImpl final : public VaultService {
 public:
  explicit VaultServiceImpl(const ServiceDeps& deps)
      : config_(*deps.config),
        store_(*deps.store),
        ledger_(*deps.ledger),
        keyring_(*deps.keyring),
        records_(*deps.store, *deps.keyring),
        started_(std::chrono::steady_clock::now()) {}

  StatusOr<storage::RecordMetadata> CreateRecord(const RequestContext& ctx,
                                                 CreateRecordRequest req) override {
    storage::AuditEntry entry = NewEntry(ctx, "record.create");
    if (!req.patient_id.empty() && ValidatePatientId(req.patient_id).ok()) {
      AttachPatient(entry, req.patient_id);
    }
    if (Status s = Authorize(ctx, "record.create"); !s.ok()) return Fail(std::move(entry), s);
    if (Status s = ValidateCreate(req); !s.ok()) return Fail(std::move(entry), s);

    storage::Record record;
    record.meta.record_id = storage::NewRecordId();
    record.meta.version = 1;
    record.meta.patient_id = std::move(req.patient_id);
    record.meta.category = std::move(req.category);
    record.meta.content_type = std::move(req.content_type);
    record.meta.encounter_date = std::move(req.encounter_date);
    record.meta.author = std::move(req.author);
    record.meta.created_unix_us = NowUnixMicros();
    record.meta.content_bytes = req.content.size();
    record.meta.epoch_id =
        RetentionEpochId(record.meta.created_unix_us, config_.default_retention_years);
    record.content = std::move(req.content);

    entry.records = {record.meta.record_id + "@1"};
    storage::WriteBatch batch;
    if (Status s = records_.StageVersion(record, batch); !s.ok()) return Fail(std::move(entry), s);
    if (Status s = CommitWithEntry(std::move(batch), std::move(entry)); !s.ok()) return s;
    return std::move(record.meta);
  }

  StatusOr<storage::Record> ReadRecord(const RequestContext& ctx, const std::string& record_id,
                                       std::optional<uint32_t> version,
                                       bool with_content) override {
    storage::AuditEntry entry = NewEntry(ctx, "record.read");
    entry.records = {record_id};
    if (Status s = Authorize(ctx, "record.read"); !s.ok()) return Fail(std::move(entry), s);
    if (!storage::IsValidRecordId(record_id)) {
      return Fail(std::move(entry), InvalidArgument("record id is malformed"));
    }
    uint32_t v = 0;
    if (version.has_value()) {
      if (*version == 0) return Fail(std::move(entry), InvalidArgument("version must be >= 1"));
      v = *version;
    } else {
      auto latest = records_.LatestVersion(record_id);
      if (!latest.ok()) return Fail(std::move(entry), latest.status());
      v = *latest;
    }
    entry.records = {record_id + "@" + std::to_string(v)};
    auto record = records_.ReadVersion(record_id, v, with_content);
    if (!record.ok()) {
      if (record.status().code() == StatusCode::kDataLoss) entry.reason = "integrity_failure";
      return Fail(std::move(entry), record.status());
    }
    AttachPatient(entry, record->meta.patient_id);
    // The entry is durable before any content leaves this method: fail closed.
    if (Status s = CommitWithEntry({}, std::move(entry)); !s.ok()) return s;
    return record;
  }

  StatusOr<storage::RecordMetadata> AmendRecord(const RequestContext& ctx,
                                                const std::string& record_id,
                                                AmendRecordRequest req) override {
    storage::AuditEntry entry = NewEntry(ctx, "record.amend");
    entry.records = {record_id};
    if (Status s = Authorize(ctx, "record.amend"); !s.ok()) return Fail(std::move(entry), s);
    if (!storage::IsValidRecordId(record_id)) {
      return Fail(std::move(entry), InvalidArgument("record id is malformed"));
    }
    if (Status s = ValidateAmend(req); !s.ok()) return Fail(std::move(entry), s);

    // Versions of one record are numbered under its stripe lock so two concurrent amendments
    // cannot both claim the same version.
    std::lock_guard<std::mutex> lock(StripeFor(record_id));
    auto latest = records_.LatestVersion(record_id);
    if (!latest.ok()) return Fail(std::move(entry), latest.status());
    auto previous = records_.ReadVersion(record_id, *latest, /*with_content=*/false);
    if (!previous.ok()) {
      if (previous.status().code() == StatusCode::kDataLoss) entry.reason = "integrity_failure";
      return Fail(std::move(entry), previous.status());
    }
    AttachPatient(entry, previous->meta.patient_id);

    storage::Record record;
    record.meta = std::move(previous->meta);
    record.meta.version = *latest + 1;
    if (req.content_type) record.meta.content_type = std::move(*req.content_type);
    if (req.encounter_date) record.meta.encounter_date = std::move(*req.encounter_date);
    if (req.author) record.meta.author = std::move(*req.author);
    record.meta.amendment_reason = std::move(req.reason);
    record.meta.created_unix_us = NowUnixMicros();
    record.meta.content_bytes = req.content.size();
    record.content = std::move(req.content);

    entry.records = {record_id + "@" + std::to_string(record.meta.version)};
    storage::WriteBatch batch;
    if (Status s = records_.StageVersion(record, batch); !s.ok()) return Fail(std::move(entry), s);
    if (Status s = CommitWithEntry(std::move(batch), std::move(entry)); !s.ok()) return s;
    return std::move(record.meta);
  }

  StatusOr<std::vector<storage::RecordMetadata>> ListRecords(
      const RequestContext& ctx, const std::string& patient_id) override {
    storage::AuditEntry entry = NewEntry(ctx, "record.list");
    if (ValidatePatientId(patient_id).ok()) AttachPatient(entry, patient_id);
    if (Status s = Authorize(ctx, "record.list"); !s.ok()) return Fail(std::move(entry), s);
    if (Status s = ValidatePatientId(patient_id); !s.ok()) return Fail(std::move(entry), s);
    auto list = records_.ListPatient(patient_id);
    if (!list.ok()) {
      if (list.status().code() == StatusCode::kDataLoss) entry.reason = "integrity_failure";
      return Fail(std::move(entry), list.status());
    }
    for (const auto& m : *list)
      entry.records.push_back(m.record_id + "@" + std::to_string(m.version));
    if (Status s = CommitWithEntry({}, std::move(entry)); !s.ok()) return s;
    return list;
  }

  StatusOr<VaultStatus> GetStatus(const RequestContext& ctx) override {
    if (Status s = Authorize(ctx, "status"); !s.ok()) return s;
    VaultStatus st;
    st.version = PHIVAULT_VERSION;
    st.uptime_seconds = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::steady_clock::now() - started_)
                            .count();
    st.audit_entries = ledger_.size();
    st.epochs = 0;
    for (const auto& e : keyring_.ListEpochs()) {
      if (!e.destroyed) ++st.epochs;
    }
    auto space = store_.Space();
    if (!space.ok()) return space.status();
    st.space = *space;
    return st;
  }

  Status AuditRejected(const RequestContext& ctx, const std::string& action,
                       const std::string& reason) override {
    storage::AuditEntry entry = NewEntry(ctx, action);
    entry.outcome = "denied";
    entry.reason = reason;
    return CommitWithEntry({}, std::move(entry));
  }

 private:
  storage::AuditEntry NewEntry(const RequestContext& ctx, std::string_view action) const {
    storage::AuditEntry e;
    e.request_id = ctx.request_id;
    e.application = ctx.principal.name;
    e.user = ctx.user;
    e.role = ctx.role;
    e.purpose = ctx.purpose;
    e.action = std::string(action);
    e.outcome = "success";
    return e;
  }

  // The patient appears in the entry only as a blind id plus the sealed identifier.
  void AttachPatient(storage::AuditEntry& e, std::string_view patient_id) const {
    e.patient_bid = crypto::HexEncode(records_.PatientBlindId(patient_id));
    nlohmann::json phi = {{"patient_id", std::string(patient_id)}};
    e.sealed_phi = crypto::Base64Encode(keyring_.audit_key().Encrypt(phi.dump(), kAuditPhiAad));
  }

  Status Authorize(const RequestContext& ctx, std::string_view action) const {
    if (!Allows(ctx.principal, action)) {
      return PermissionDenied("the configuration does not allow this principal to perform " +
                              std::string(action));
    }
    return Status::Ok();
  }

  // Audits a failed request, then reports the failure (or, if even the audit entry cannot be
  // written, that the audit log is unavailable).
  Status Fail(storage::AuditEntry entry, const Status& cause) {
    if (entry.reason.empty() && cause.code() == StatusCode::kPermissionDenied) {
      entry.reason = "config:actions";
    }
    MarkFailure(entry, cause);
    if (Status s = CommitWithEntry({}, std::move(entry)); !s.ok()) return s;
    return cause;
  }

  Status CommitWithEntry(storage::WriteBatch batch, storage::AuditEntry entry) {
    auto seq = ledger_.Commit(std::move(batch), std::move(entry));
    if (seq.ok()) return Status::Ok();
    if (seq.status().code() == StatusCode::kResourceExhausted) return seq.status();
    return Unavailable("the audit log could not be written; nothing was done");
  }

  std::mutex& StripeFor(std::string_view record_id) {
    return stripes_[std::hash<std::string_view>{}(record_id) % stripes_.size()];
  }

  Status ValidateCreate(const CreateRecordRequest& r) const {
    PV_RETURN_IF_ERROR(ValidatePatientId(r.patient_id));
    if (std::find(config_.categories.begin(), config_.categories.end(), r.category) ==
        config_.categories.end()) {
      return InvalidArgument("category is not one of the configured categories");
    }
    PV_RETURN_IF_ERROR(ValidateContentType(r.content_type));
    PV_RETURN_IF_ERROR(ValidateDate("encounter_date", r.encounter_date));
    PV_RETURN_IF_ERROR(ValidateText("author", r.author, 256));
    return ValidateContent(r.content);
  }

  Status ValidateAmend(const AmendRecordRequest& r) const {
    PV_RETURN_IF_ERROR(ValidateText("reason", r.reason, 2048));
    if (r.content_type) PV_RETURN_IF_ERROR(ValidateContentType(*r.content_type));
    if (r.encounter_date) PV_RETURN_IF_ERROR(ValidateDate("encounter_date", *r.encounter_date));
    if (r.author) PV_RETURN_IF_ERROR(ValidateText("author", *r.author, 256));
    return ValidateContent(r.content);
  }

  Status ValidateContent(const std::string& content) const {
    if (content.empty()) return InvalidArgument("content must not be empty");
    if (content.size() > config_.max_content_bytes) {
      return ResourceExhausted("content exceeds max_content_bytes (" +
                               std::to_string(config_.max_content_bytes) + ")");
    }
    return Status::Ok();
  }

  const Config& config_;
  storage::Store& store_;
  storage::Ledger& ledger_;
  crypto::Keyring& keyring_;
  storage::RecordRepository records_;
  std::chrono::steady_clock::time_point started_;
  std::array<std::mutex, 64> stripes_;
};

}  // namespace

std::unique_ptr<VaultService> NewVaultService(const ServiceDeps& deps) {
  return std::make_unique<VaultServiceImpl>(deps);
}

}  // namespace phivault::daemon
