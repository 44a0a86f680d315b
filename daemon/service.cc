#include "daemon/service.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "base/mutex.h"
#include "crypto/hash.h"
#include "crypto/master_key.h"
#include "daemon/encounter_cache.h"
#include "daemon/patient_export.h"
#include "daemon/policy_loader.h"
#include "daemon/problem.h"
#include "daemon/record_rules.h"
#include "daemon/retention_targets.h"
#include "policies/accounting.h"
#include "policies/fhir_audit_event.h"
#include "policies/purpose_of_use.h"
#include "policies/report_render.h"
#include "policies/time_format.h"
#include "storage/audit_verify.h"
#include "storage/destruction_certificate.h"
#include "storage/file_scan.h"

namespace phivault::daemon {
namespace {

constexpr std::string_view kAuditPhiAad = "phivault/audit/phi/v1";
constexpr std::string_view kSuspensionAad = "phivault/suspension/v1";
constexpr std::string_view kSuspensionPrefix = "suspension/";
// The PHI commitment salt travels sealed with the PHI fields, under this member.
constexpr const char* kPhiSaltMember = "commit_salt";
constexpr size_t kPhiSaltBytes = 32;
// Clock skew tolerated for a disclosure said to have happened "now" on another machine.
constexpr int64_t kFutureSkewUs = 5LL * 60 * 1000000;

std::optional<std::string> OptionalString(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

int64_t NowUnixMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool Allows(const Principal& p, std::string_view action) {
  return std::find(p.actions.begin(), p.actions.end(), action) != p.actions.end();
}

// The outcome recorded for a failed request: "denied" for authorisation failures, "error" for
// everything else; the reason, unless already set, is "integrity_failure" for stored bytes that
// failed authentication and the stable status code name otherwise.
storage::AuditEntry& MarkFailure(storage::AuditEntry& e, const Status& s) {
  e.outcome =
      (s.code() == StatusCode::kPermissionDenied || s.code() == StatusCode::kUnauthenticated)
          ? "denied"
          : "error";
  if (e.reason.empty()) {
    e.reason = s.code() == StatusCode::kDataLoss ? "integrity_failure"
                                                 : std::string(StatusCodeName(s.code()));
  }
  return e;
}

// What a denial says: the explanation, then the deciding rule in the form
// daemon/problem.h's ProblemFromStatus lifts into the problem's `rule` member.
Status Denied(std::string explanation, std::string_view rule) {
  return PermissionDenied(std::move(explanation) + " [rule: " + std::string(rule) + "]");
}

// One request's pass through the guard: the audit entry being built, the policy snapshot it is
// decided on (taken once), and what the work stages to commit with the entry.
struct Pass {
  storage::AuditEntry entry;
  std::shared_ptr<const policies::AccessPolicy> policy;
  nlohmann::json phi = nlohmann::json::object();  // sealed into the entry when it is written
  storage::WriteBatch batch;
  bool decided = false;  // an access decision was made (checked before anything is committed)
  bool committed = false;
  std::string upfront_rule;  // record actions: the rule that lets the role act on some category
  std::vector<std::function<void()>> after_commit;  // in-memory effects of what was staged
  std::vector<std::string> rules;  // the rules that permitted, for the entry's reason
  void Permitted(std::string_view rule) {
    decided = true;
    if (std::find(rules.begin(), rules.end(), rule) == rules.end()) rules.emplace_back(rule);
  }
};

class VaultServiceImpl final : public VaultService {
 public:
  explicit VaultServiceImpl(const ServiceDeps& deps)
      : config_(*deps.config),
        store_(*deps.store),
        ledger_(*deps.ledger),
        keyring_(*deps.keyring),
        audit_log_(deps.audit_log),
        records_(*deps.store, *deps.keyring),
        state_(*deps.store, deps.keyring->audit_key(),
               [this](std::string_view patient_id) { return records_.PatientBlindId(patient_id); }),
        policy_(deps.policy),
        clock_(deps.clock),
        started_(std::chrono::steady_clock::now()),
        encounters_(deps.config->memory.encounter_cache_patients),
        sweep_fault_(deps.sweep_fault) {
    if (deps.retention) retention_ = std::make_shared<const LoadedRetention>(*deps.retention);
    if (policy_ == nullptr) {
      auto loaded = LoadAccessPolicy(config_);
      if (!loaded.ok()) {
        // Refuse everything rather than run without a policy; main() loads the policy first and
        // does not start with a bad one, so this is reached only by a broken caller.
        spdlog::critical("no access policy: {}", loaded.status().message());
      } else {
        policy_ = std::move(loaded).value();
      }
    }
  }

  StatusOr<storage::RecordMetadata> CreateRecord(const RequestContext& ctx,
                                                 CreateRecordRequest req) override {
    // A new record can lengthen the patient's other records (a later last encounter): the
    // record and their re-wrap are one change to a sweep.
    RetentionGate::Section section = gate_.Enter(req.patient_id);
    const std::string patient_id = req.patient_id;
    auto created = CreateRecordIn(ctx, std::move(req));
    if (created.ok() && NoteEncounter(patient_id, created->encounter_date)) {
      SettlePatientLogged(patient_id);
    }
    return created;
  }

  StatusOr<storage::RecordMetadata> CreateRecordIn(const RequestContext& ctx,
                                                   CreateRecordRequest req) {
    return GuardedFor<storage::RecordMetadata>(
        ctx, "record.create", "create", req.patient_id,
        [&](Pass& pass) -> StatusOr<storage::RecordMetadata> {
          if (!req.patient_id.empty() && ValidatePatientId(req.patient_id).ok()) {
            AttachPatient(pass, req.patient_id);
          }
          PV_RETURN_IF_ERROR(ValidateCategory(req.category));
          storage::RecordMetadata subject;
          subject.patient_id = req.patient_id;
          subject.category = req.category;
          subject.created_by = ctx.user;
          PV_RETURN_IF_ERROR(DecideOnRecord(pass, ctx, "create", subject));
          PV_RETURN_IF_ERROR(ValidateCreate(req));

          storage::Record record;
          record.meta.record_id = storage::NewRecordId();
          record.meta.version = 1;
          record.meta.patient_id = std::move(req.patient_id);
          record.meta.category = std::move(req.category);
          record.meta.content_type = std::move(req.content_type);
          record.meta.encounter_date = std::move(req.encounter_date);
          record.meta.author = std::move(req.author);
          record.meta.created_by = ctx.user;
          record.meta.created_unix_us = Now();
          record.meta.content_bytes = req.content.size();
          PV_ASSIGN_OR_RETURN(RetentionTarget target,
                              TargetFor(record.meta, record.meta.encounter_date));
          PV_ASSIGN_OR_RETURN(record.meta.epoch_id, LiveEpochFor(target));
          record.content = std::move(req.content);
          pass.entry.records = {record.meta.record_id + "@1"};
          PV_RETURN_IF_ERROR(records_.StageVersion(record, pass.batch));
          return std::move(record.meta);
        });
  }

  StatusOr<storage::Record> ReadRecord(const RequestContext& ctx, const std::string& record_id,
                                       std::optional<uint32_t> version,
                                       bool with_content) override {
    auto read = ReadAudited(ctx, "record.read", "read", record_id, version, with_content, nullptr);
    if (read.ok()) AfterArchivedRead(record_id, *read, with_content);
    return read;
  }

  StatusOr<storage::Record> DiscloseRecord(const RequestContext& ctx, const std::string& record_id,
                                           std::optional<uint32_t> version,
                                           const DisclosureInfo& disclosure) override {
    auto read =
        ReadAudited(ctx, "record.disclose", "disclose", record_id, version, true, &disclosure);
    if (read.ok()) AfterArchivedRead(record_id, *read, true);
    return read;
  }

  // A read that succeeded (and was audited): says whether the version lies in the archive and,
  // with [archive] restore_on_read, moves an archived record back. The move is best effort and
  // not synced (a lost move leaves the record archived and readable); under the record's lock it
  // re-reads what is stored, so a record shredded meanwhile gets nothing back.
  void AfterArchivedRead(const std::string& record_id, storage::Record& read, bool with_content) {
    if (!with_content) {
      auto archived = records_.IsArchived(record_id, read.meta.version);
      read.archived = archived.ok() && *archived;
    }
    if (!read.archived || !config_.archive.restore_on_read) return;
    // The move re-seals the content (new bytes): a sweep watching must take its new fingerprints.
    RetentionGate::Section section = gate_.Enter(read.meta.patient_id);
    MutexLock lock(StripeFor(record_id));
    storage::WriteBatch batch;
    auto moved = records_.StageUnarchive(record_id, batch);
    Status written = moved.ok() ? store_.Write(batch, /*sync=*/false) : moved.status();
    if (!written.ok() && !IsShredded(written)) {
      spdlog::warn("archive: moving record {} back after a read failed: {}", record_id,
                   written.message());
    }
  }

  StatusOr<storage::RecordMetadata> AmendRecord(const RequestContext& ctx,
                                                const std::string& record_id,
                                                AmendRecordRequest req) override {
    RetentionGate::Section section = gate_.Enter({});
    std::string patient_id;
    bool encounter_moved = false;
    auto amended = AmendRecordIn(ctx, record_id, std::move(req), &patient_id, &encounter_moved);
    if (amended.ok() && encounter_moved) {
      ForgetEncounters(patient_id);
      SettlePatientLogged(patient_id);
    }
    return amended;
  }

  StatusOr<storage::RecordMetadata> AmendRecordIn(const RequestContext& ctx,
                                                  const std::string& record_id,
                                                  AmendRecordRequest req, std::string* patient_id,
                                                  bool* encounter_moved) {
    return Guarded<storage::RecordMetadata>(
        ctx, "record.amend", "amend", [&](Pass& pass) -> StatusOr<storage::RecordMetadata> {
          pass.entry.records = {record_id};
          if (!storage::IsValidRecordId(record_id)) {
            return InvalidArgument("record id is malformed");
          }
          PV_RETURN_IF_ERROR(ValidateAmend(req));
          // Versions of one record are numbered under its stripe lock so two concurrent
          // amendments cannot both claim the same version.
          MutexLock lock(StripeFor(record_id));
          PV_ASSIGN_OR_RETURN(uint32_t latest, records_.LatestVersion(record_id));
          PV_ASSIGN_OR_RETURN(storage::Record previous,
                              records_.ReadVersion(record_id, latest, /*with_content=*/false));
          AttachPatient(pass, previous.meta.patient_id);
          gate_.Touch(previous.meta.patient_id);
          *patient_id = previous.meta.patient_id;
          pass.entry.records = {record_id + "@" + std::to_string(latest)};
          PV_RETURN_IF_ERROR(DecideOnRecord(pass, ctx, "amend", previous.meta));

          storage::Record record;
          const std::string previous_encounter = previous.meta.encounter_date;
          record.meta = std::move(previous.meta);
          record.meta.version = latest + 1;
          if (req.content_type) record.meta.content_type = std::move(*req.content_type);
          if (req.encounter_date) record.meta.encounter_date = std::move(*req.encounter_date);
          if (req.author) record.meta.author = std::move(*req.author);
          record.meta.amendment_reason = std::move(req.reason);
          record.meta.created_unix_us = Now();
          record.meta.content_bytes = req.content.size();
          record.content = std::move(req.content);
          pass.entry.records = {record_id + "@" + std::to_string(record.meta.version)};
          // The record's expiry follows its latest version: every version moves with it.
          *encounter_moved = record.meta.encounter_date != previous_encounter;
          PV_ASSIGN_OR_RETURN(RetentionTarget target,
                              TargetFor(record.meta, record.meta.encounter_date));
          PV_ASSIGN_OR_RETURN(record.meta.epoch_id, EpochToHold(target, record.meta.epoch_id));
          PV_RETURN_IF_ERROR(
              records_.StageRewrap(record_id, record.meta.epoch_id, pass.batch).status());
          PV_RETURN_IF_ERROR(records_.StageVersion(record, pass.batch));
          // The entry is committed under the stripe lock, so the next amendment sees this one.
          PV_RETURN_IF_ERROR(CommitPass(pass));
          return std::move(record.meta);
        });
  }

  StatusOr<RecordList> ListRecords(const RequestContext& ctx,
                                   const std::string& patient_id) override {
    return GuardedFor<RecordList>(
        ctx, "record.list", "list", patient_id, [&](Pass& pass) -> StatusOr<RecordList> {
          if (ValidatePatientId(patient_id).ok()) AttachPatient(pass, patient_id);
          PV_RETURN_IF_ERROR(ValidatePatientId(patient_id));
          PV_ASSIGN_OR_RETURN(std::vector<storage::RecordMetadata> all,
                              records_.ListPatient(patient_id));
          RecordList out;
          for (auto& m : all) {
            const Verdict v = Decide(pass, ctx, "list", &m);
            if (!v.allowed) {
              ++out.withheld;
              continue;
            }
            PV_RETURN_IF_ERROR(Admit(pass, ctx, v, m));
            pass.entry.records.push_back(m.record_id + "@" + std::to_string(m.version));
            out.records.push_back(std::move(m));
          }
          // Nothing visible (or nothing stored): the upfront check already found a rule that lets
          // this role list some category for this purpose.
          if (!pass.decided) pass.Permitted(pass.upfront_rule);
          if (out.withheld > 0) pass.rules.push_back("withheld=" + std::to_string(out.withheld));
          return out;
        });
  }

  StatusOr<VaultStatus> GetStatus(const RequestContext& ctx) override {
    if (Status s = Authorize(ctx, "status"); !s.ok()) return s;
    VaultStatus st;
    st.version = PHIVAULT_VERSION;
    st.uptime_seconds = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::steady_clock::now() - started_)
                            .count();
    st.audit_entries = ledger_.size();
    st.synced_writes = store_.synced_writes();
    st.encounter_cache_patients = encounters_.size();
    st.encounter_cache_capacity = encounters_.capacity();
    st.epochs = 0;
    for (const auto& e : keyring_.ListEpochs()) {
      if (!e.destroyed) ++st.epochs;
    }
    // One key per record in the patient index ('p' blind id(32) id(16), storage/records.h),
    // sorted by blind id: a key-only walk counts records and patients without decrypting
    // anything. It reads O(records) small keys, cheap next to any request that touches content.
    constexpr size_t kBlindIdEnd = 1 + 32;
    std::string last_patient;
    if (Status s = store_.Scan(storage::Cf::kIndexes, "p", "q",
                               [&](std::string_view key, std::string_view) {
                                 ++st.records;
                                 const std::string_view patient = key.substr(0, kBlindIdEnd);
                                 if (patient != last_patient) {
                                   ++st.patients;
                                   last_patient.assign(patient);
                                 }
                                 return true;
                               });
        !s.ok()) {
      return s;
    }
    auto space = store_.Space();
    if (!space.ok()) return space.status();
    st.space = *space;
    return st;
  }

  Status AuditRejected(const RequestContext& ctx, const std::string& action,
                       const std::string& reason, uint64_t count) override {
    storage::AuditEntry entry = NewEntry(ctx, action);
    if (ctx.principal.name.empty()) {
      entry.claimed_user = std::move(entry.user);
      entry.claimed_role = std::move(entry.role);
      entry.claimed_purpose = std::move(entry.purpose);
      entry.user.clear();
      entry.role.clear();
      entry.purpose.clear();
    }
    entry.outcome = "denied";
    entry.reason = reason;
    entry.count = std::max<uint64_t>(count, 1);
    return CommitWithEntry({}, std::move(entry)).status();
  }

  StatusOr<uint64_t> RecordDisclosure(const RequestContext& ctx,
                                      RecordDisclosureRequest req) override {
    return GuardedFor<uint64_t>(
        ctx, "record.disclose", "account", req.patient_id, [&](Pass& pass) -> StatusOr<uint64_t> {
          if (ValidatePatientId(req.patient_id).ok()) AttachPatient(pass, req.patient_id);
          PV_RETURN_IF_ERROR(ValidatePatientId(req.patient_id));
          for (const auto& id : req.record_ids) {
            if (!storage::IsValidRecordId(id))
              return InvalidArgument("record_ids must be record ids");
          }
          const int64_t now = Now();
          const int64_t when = req.disclosed_at_unix_us.value_or(now);
          if (when > now + kFutureSkewUs) {
            return InvalidArgument("disclosed_at must not be in the future");
          }
          PV_ASSIGN_OR_RETURN(nlohmann::json phi,
                              DisclosurePhi(req.disclosure, /*read_purpose=*/""));
          phi["disclosed_at_us"] = when;
          pass.phi.update(phi);
          pass.entry.records = req.record_ids;
          PV_RETURN_IF_ERROR(CommitPass(pass));
          return pass.entry.seq;
        });
  }

  StatusOr<uint64_t> AddDisclosureSuspension(const RequestContext& ctx,
                                             SuspensionRequest req) override {
    return Guarded<uint64_t>(
        ctx, "disclosure.suspend", "suspend", [&](Pass& pass) -> StatusOr<uint64_t> {
          Status valid = ValidateText("agency", req.agency, 256);
          if (valid.ok()) valid = ValidateText("statement", req.statement, 4096);
          if (valid.ok() && !req.oral && !req.end_unix_us) {
            valid = InvalidArgument("end is required for a written suspension");
          }
          if (valid.ok() && req.end_unix_us && *req.end_unix_us <= req.start_unix_us) {
            valid = InvalidArgument("end must be after start");
          }
          PV_RETURN_IF_ERROR(valid);
          nlohmann::json body = {{"agency", req.agency},
                                 {"start_us", req.start_unix_us},
                                 {"oral", req.oral},
                                 {"statement", req.statement}};
          if (req.end_unix_us) body["end_us"] = *req.end_unix_us;
          pass.batch.Put(
              storage::Cf::kState,
              std::string(kSuspensionPrefix) + crypto::HexEncode(crypto::RandomBytes(16)),
              keyring_.audit_key().Encrypt(body.dump(), kSuspensionAad));
          pass.phi.update(body);
          PV_RETURN_IF_ERROR(CommitPass(pass));
          return pass.entry.seq;
        });
  }

  StatusOr<RenderedReport> AccountingOfDisclosures(const RequestContext& ctx,
                                                   const ReportRequest& req) override {
    const int64_t now = Now();
    auto built = GuardedFor<policies::Accounting>(
        ctx, "report.accounting", "report", req.patient_id,
        [&](Pass& pass) -> StatusOr<policies::Accounting> {
          if (ValidatePatientId(req.patient_id).ok()) AttachPatient(pass, req.patient_id);
          PV_RETURN_IF_ERROR(ValidatePatientId(req.patient_id));
          std::vector<policies::Disclosure> disclosures;
          Status gathered = ForEachPatientEntry(
              req.patient_id, [&](const storage::AuditEntry& e, const nlohmann::json& phi) {
                if (e.action != "record.disclose" || e.outcome != "success") return Status::Ok();
                return AppendDisclosure(e, phi, disclosures);
              });
          PV_RETURN_IF_ERROR(gathered);
          PV_ASSIGN_OR_RETURN(auto suspensions, LoadSuspensions());
          return policies::BuildAccounting({req.patient_id, now, req.period_start_unix_us},
                                           disclosures, suspensions);
        });
    if (!built.ok()) return built.status();
    const auto* accounting = &*built;
    const policies::ReportContext context = ReportContextFor(now, req.patient_id);
    switch (req.format) {
      case ReportFormat::kCsv:
        return RenderedReport{"text/csv; charset=utf-8",
                              policies::RenderAccountingCsv(*accounting)};
      case ReportFormat::kHtml:
        return RenderedReport{"text/html; charset=utf-8",
                              policies::RenderAccountingHtml(*accounting, context)};
      case ReportFormat::kJson:
        break;
    }
    return RenderedReport{"application/json", policies::RenderAccountingJson(*accounting, context)};
  }

  StatusOr<RenderedReport> AccessReport(const RequestContext& ctx,
                                        const ReportRequest& req) override {
    const int64_t now = Now();
    auto built = GuardedFor<policies::AccessReport>(
        ctx, "report.access", "report", req.patient_id,
        [&](Pass& pass) -> StatusOr<policies::AccessReport> {
          if (ValidatePatientId(req.patient_id).ok()) AttachPatient(pass, req.patient_id);
          PV_RETURN_IF_ERROR(ValidatePatientId(req.patient_id));
          std::vector<policies::DecodedAuditEntry> entries;
          Status gathered = ForEachPatientEntry(
              req.patient_id, [&](const storage::AuditEntry& e, const nlohmann::json& phi) {
                entries.push_back(Decode(e, &phi));
                return Status::Ok();
              });
          PV_RETURN_IF_ERROR(gathered);
          return policies::BuildAccessReport({req.patient_id, now}, entries);
        });
    if (!built.ok()) return built.status();
    const auto* report = &*built;
    const policies::ReportContext context = ReportContextFor(now, req.patient_id);
    switch (req.format) {
      case ReportFormat::kCsv:
        return RenderedReport{"text/csv; charset=utf-8", policies::RenderAccessReportCsv(*report)};
      case ReportFormat::kHtml:
        return RenderedReport{"text/html; charset=utf-8",
                              policies::RenderAccessReportHtml(*report, context)};
      case ReportFormat::kJson:
        break;
    }
    return RenderedReport{"application/json", policies::RenderAccessReportJson(*report, context)};
  }

  Status ExportAudit(const RequestContext& ctx, const AuditExportRequest& req,
                     const ExportSink& sink) override {
    // The export is on the record before any of it leaves. Its entries' PHI fields are unsealed
    // only where the policy in force (this request's snapshot) lets the role `unseal`, and only
    // for a role the principal is bound to: the handler already refuses a role it is not bound
    // to; checked here again so that no other path to ExportAudit unseals PHI on a header alone.
    bool with_phi = false;
    auto admitted = GuardedFor<bool>(
        ctx, "audit.export", "audit", req.patient_id.value_or(""),
        [&](Pass& pass) -> StatusOr<bool> {
          if (req.patient_id) PV_RETURN_IF_ERROR(ValidatePatientId(*req.patient_id));
          if (audit_log_ == nullptr) {
            return FailedPrecondition("the verifiable audit log is not open");
          }
          const auto& bound = ctx.principal.roles;
          with_phi = std::find(bound.begin(), bound.end(), ctx.role) != bound.end() &&
                     Decide(pass, ctx, "unseal", nullptr).allowed;
          return true;
        });
    if (!admitted.ok()) return admitted.status();
    // A filtered JSON Lines export proves each entry against a checkpoint signed now; a full
    // one also holds the stored checkpoints below it, which narrow down where a change was made.
    // Either holds exactly the entries that checkpoint covers (its own audit entry among them), so
    // a verifier finds every entry under a signature; entries committed while it is written
    // belong to the next export. FHIR and CSV carry no checkpoint, so none is made for them.
    const bool jsonl = req.format == ExportFormat::kJsonLines;
    const bool proven = req.filtered() && jsonl;
    std::vector<std::string> checkpoints;
    uint64_t size = ledger_.size();
    if (jsonl) {
      PV_ASSIGN_OR_RETURN(std::string fresh_note,
                          audit_log_->MakeCheckpoint(storage::CheckpointKind::kHandedOut));
      // Our own note, just made: its text is enough.
      PV_ASSIGN_OR_RETURN(storage::Checkpoint fresh,
                          storage::ParseUnverifiedCheckpoint(fresh_note));
      size = fresh.size;
      if (!proven) {
        PV_ASSIGN_OR_RETURN(checkpoints, audit_log_->Checkpoints(size));
      }
      checkpoints.push_back(std::move(fresh_note));
    }

    uint64_t exported = 0;

    std::vector<policies::DecodedAuditEntry> decoded;  // FHIR and CSV are built whole
    std::string chunk;
    bool stopped = false;
    auto flush = [&](bool force) {
      if (!stopped && (force || chunk.size() >= (256u << 10))) {
        stopped = !sink(chunk);
        chunk.clear();
      }
    };
    auto visit = [&](const storage::AuditEntry& e, std::string_view bytes) -> Status {
      if (!Matches(req, e)) return Status::Ok();
      std::optional<UnsealedPhi> phi;
      if (with_phi) {
        PV_ASSIGN_OR_RETURN(UnsealedPhi unsealed, UnsealPhi(e));
        phi = std::move(unsealed);
      }
      ++exported;
      if (req.format == ExportFormat::kJsonLines) {
        std::string line;
        if (proven) {
          PV_ASSIGN_OR_RETURN(auto inclusion, audit_log_->tree().InclusionProof(e.seq - 1, size));
          PV_ASSIGN_OR_RETURN(
              line, storage::AuditExportProvenEntryLine(e.seq - 1, bytes, size, inclusion));
        } else {
          PV_ASSIGN_OR_RETURN(line, storage::AuditExportEntryLine(e.seq - 1, bytes));
        }
        // The readable copy goes out only where the entry commits to it: the verifier rejects
        // any "phi" that its entry's phi_commit does not bind.
        if (phi && !phi->fields.empty() && !phi->salt.empty() && !e.phi_commit.empty()) {
          PV_ASSIGN_OR_RETURN(line,
                              storage::AuditExportAddPhi(std::move(line), phi->fields, phi->salt));
        }
        chunk += line;
        chunk += '\n';
        flush(false);
      } else {
        decoded.push_back(Decode(e, phi ? &phi->fields : nullptr));
      }
      return Status::Ok();
    };

    // A patient or user filter reads only that chain's entries, not the whole log; a chain that
    // disagrees with its index fails the export (DataLoss) rather than silently leaving entries
    // out.
    auto visit_chained = [&](const storage::AuditEntry& e, std::string_view bytes) -> Status {
      if (stopped) return Status::Ok();
      return visit(e, bytes);
    };
    Status scanned;
    if (req.patient_id) {
      scanned = storage::ScanPatientAuditEntries(store_, records_.PatientBlindId(*req.patient_id),
                                                 visit_chained, size);
    } else if (req.user) {
      scanned = storage::ScanUserAuditEntries(store_, *req.user, visit_chained, size);
    } else {
      Status inner;
      scanned = storage::ScanAuditEntries(
          store_, 1, size, [&](const storage::AuditEntry& e, std::string_view bytes) {
            inner = visit(e, bytes);
            return inner.ok() && !stopped;
          });
      if (scanned.ok()) scanned = inner;
    }
    PV_RETURN_IF_ERROR(scanned);

    switch (req.format) {
      case ExportFormat::kJsonLines:
        // With no entry, a filtered export has nothing to prove; a lone checkpoint would read
        // as a log truncated to nothing.
        if (proven && exported == 0) break;
        if (proven) {
          // A full export is checked against a trusted checkpoint by recomputing the root; a
          // filtered one needs the proof that the trusted tree is a prefix of this one. A size
          // above this tree has no proof: the verifier reports the log as rolled back.
          for (uint64_t from : req.trusted_sizes) {
            if (from > size) continue;
            PV_ASSIGN_OR_RETURN(auto proof, audit_log_->tree().ConsistencyProof(from, size));
            chunk += storage::AuditExportConsistencyLine(from, size, proof);
            chunk += '\n';
          }
        }
        for (const auto& note : checkpoints) {
          PV_ASSIGN_OR_RETURN(std::string line, storage::AuditExportCheckpointLine(note));
          chunk += line;
          chunk += '\n';
        }
        break;
      case ExportFormat::kFhir:
        chunk =
            policies::ToFhirBundleJson(decoded, policies::FhirBundleType::kSearchset, Now(), {});
        break;
      case ExportFormat::kCsv:
        chunk = policies::RenderAuditEntriesCsv(decoded);
        break;
    }
    flush(true);
    return Status::Ok();
  }

  StatusOr<std::string> AuditCheckpoint(const RequestContext& ctx, bool fresh) override {
    PV_RETURN_IF_ERROR(AuthorizeAuditRead(ctx));
    if (fresh) return audit_log_->MakeCheckpoint(storage::CheckpointKind::kHandedOut);
    return audit_log_->LatestCheckpoint();
  }

  StatusOr<InclusionProofResult> AuditInclusionProof(const RequestContext& ctx, uint64_t seq,
                                                     std::optional<uint64_t> tree_size) override {
    PV_RETURN_IF_ERROR(AuthorizeAuditRead(ctx));
    const uint64_t size = tree_size.value_or(audit_log_->tree().size());
    if (seq == 0 || seq > size) return InvalidArgument("seq must be between 1 and the tree size");
    PV_ASSIGN_OR_RETURN(std::string bytes, storage::ReadAuditEntryBytes(store_, seq));
    PV_ASSIGN_OR_RETURN(auto path, audit_log_->tree().InclusionProof(seq - 1, size));
    InclusionProofResult r;
    r.leaf_index = seq - 1;
    r.tree_size = size;
    r.leaf_hash_hex = HexOf(storage::MerkleLeafHash(bytes));
    for (const auto& h : path) r.path_hex.push_back(HexOf(h));
    return r;
  }

  StatusOr<std::vector<std::string>> AuditConsistencyProof(const RequestContext& ctx,
                                                           uint64_t size1,
                                                           uint64_t size2) override {
    PV_RETURN_IF_ERROR(AuthorizeAuditRead(ctx));
    PV_ASSIGN_OR_RETURN(auto path, audit_log_->tree().ConsistencyProof(size1, size2));
    std::vector<std::string> out;
    for (const auto& h : path) out.push_back(HexOf(h));
    return out;
  }

  StatusOr<std::string> AuditVerifierKey(const RequestContext& ctx) override {
    // The key is public: whoever may read certificates of destruction may check them with it.
    if (!Allows(ctx.principal, "audit.verify") && Allows(ctx.principal, "certificate.read")) {
      PV_RETURN_IF_ERROR(Authorize(ctx, "certificate.read"));
      if (audit_log_ == nullptr) return FailedPrecondition("the verifiable audit log is not open");
      return audit_log_->VerifierKey();
    }
    PV_RETURN_IF_ERROR(AuthorizeAuditRead(ctx));
    return audit_log_->VerifierKey();
  }

  // ---- Start-up and the access policy

  // ---- Retention, legal holds and destruction (docs/retention.md, docs/destruction.md)

  StatusOr<std::pair<PatientFacts, uint64_t>> SetPatientFacts(
      const RequestContext& ctx, const PatientFactsUpdate& update) override {
    auto result = GuardedFor<std::pair<PatientFacts, uint64_t>>(
        ctx, "patient.facts", "admin", update.patient_id,
        [&](Pass& pass) -> StatusOr<std::pair<PatientFacts, uint64_t>> {
          PV_RETURN_IF_ERROR(ValidatePatientId(update.patient_id));
          RetentionGate::Section section = gate_.Enter(update.patient_id);
          MutexLock lock(state_mu_);
          PatientFacts facts = state_.GetFacts(update.patient_id).value_or(PatientFacts{});
          facts.patient_id = update.patient_id;
          auto apply = [](std::optional<std::string>& field,
                          const std::optional<std::string>& value) {
            if (!value) return;
            if (value->empty()) {
              field.reset();
            } else {
              field = *value;
            }
          };
          apply(facts.date_of_birth, update.date_of_birth);
          apply(facts.date_of_death, update.date_of_death);
          apply(facts.last_encounter, update.last_encounter);
          facts.updated_us = Now();
          facts.updated_by = ctx.user.empty() ? ctx.principal.name : ctx.user;
          PV_ASSIGN_OR_RETURN(
              PatientFacts staged,
              state_.StageSetFacts(facts, policies::FormatUtcDate(Now()), pass.batch));
          nlohmann::json changed = nlohmann::json::object();
          if (update.date_of_birth) changed["date_of_birth"] = *update.date_of_birth;
          if (update.date_of_death) changed["date_of_death"] = *update.date_of_death;
          if (update.last_encounter) changed["last_encounter"] = *update.last_encounter;
          pass.phi["facts"] = changed;
          pass.after_commit.push_back([this, staged] { state_.ApplyFacts(staged); });
          PV_RETURN_IF_ERROR(CommitPass(pass));
          if (update.last_encounter) ForgetEncounters(update.patient_id);
          return std::make_pair(staged, pass.entry.seq);
        });
    // The facts are stored and audited; moving the records follows. If a move fails, the
    // record stays where it was until the sweep, which rechecks every record it would destroy.
    if (result.ok()) SettlePatientLogged(update.patient_id);
    return result;
  }

  StatusOr<PatientFacts> GetPatientFacts(const RequestContext& ctx,
                                         const std::string& patient_id) override {
    return GuardedAs<PatientFacts>(
        ctx, "patient.facts", "patient.facts.show", "admin",
        [&](Pass&) -> StatusOr<PatientFacts> {
          PV_RETURN_IF_ERROR(ValidatePatientId(patient_id));
          auto facts = state_.GetFacts(patient_id);
          if (!facts) return NotFound("no facts are recorded for this patient");
          return *facts;
        },
        patient_id);
  }

  StatusOr<std::vector<RecordRetention>> PatientRetention(const RequestContext& ctx,
                                                          const std::string& patient_id) override {
    return GuardedFor<std::vector<RecordRetention>>(
        ctx, "retention.show", "audit", patient_id,
        [&](Pass& pass) -> StatusOr<std::vector<RecordRetention>> {
          PV_RETURN_IF_ERROR(ValidatePatientId(patient_id));
          PV_ASSIGN_OR_RETURN(std::vector<storage::RecordMetadata> all,
                              records_.ListPatient(patient_id));
          std::vector<RecordRetention> out;
          for (const auto& m : all) {
            PV_ASSIGN_OR_RETURN(RetentionTarget t, TargetFor(m));
            RecordRetention r;
            r.record_id = m.record_id;
            r.versions = m.version;
            r.category = m.category;
            r.epoch_id = m.epoch_id;
            r.outcome = t.outcome;
            if (t.expires) r.expires_on = FormatDay(*t.expires);
            r.reason = t.reason;
            r.hold_ids = t.hold_ids;
            pass.entry.records.push_back(m.record_id + "@" + std::to_string(m.version));
            out.push_back(std::move(r));
          }
          return out;
        });
  }

  StatusOr<RetentionTableInfo> RetentionRules(const RequestContext& ctx) override {
    PV_RETURN_IF_ERROR(AuthorizeUnaudited(ctx, "retention.show", "audit"));
    auto loaded = std::atomic_load(&retention_);
    RetentionTableInfo info;
    info.preset = loaded->table->preset();
    info.source = loaded->source;
    info.sha256_hex = loaded->sha256_hex;
    info.rules = loaded->table->rules();
    return info;
  }

  StatusOr<std::pair<LegalHold, uint64_t>> PlaceHold(const RequestContext& ctx,
                                                     const PlaceHoldRequest& req) override {
    std::vector<std::string> to_move;
    auto placed = GuardedFor<std::pair<LegalHold, uint64_t>>(
        ctx, "hold.place", "hold", req.patient_id,
        [&](Pass& pass) -> StatusOr<std::pair<LegalHold, uint64_t>> {
          PV_RETURN_IF_ERROR(ValidatePatientId(req.patient_id));
          RetentionGate::Section section = gate_.Enter(req.patient_id);
          if (req.record_ids.empty()) {
            PV_ASSIGN_OR_RETURN(std::vector<storage::RecordMetadata> all,
                                records_.ListPatient(req.patient_id));
            for (const auto& m : all) to_move.push_back(m.record_id);
          } else {
            for (const auto& id : req.record_ids) {
              if (!storage::IsValidRecordId(id)) {
                return InvalidArgument("field 'record_ids': a record id is malformed");
              }
              PV_ASSIGN_OR_RETURN(uint32_t latest, records_.LatestVersion(id));
              PV_ASSIGN_OR_RETURN(storage::Record r, records_.ReadVersion(id, latest, false));
              if (r.meta.patient_id != req.patient_id) {
                return NotFound("no such record for this patient");
              }
              to_move.push_back(id);
            }
          }
          LegalHold draft;
          draft.matter = req.matter;
          draft.reason = req.reason;
          draft.patient_id = req.patient_id;
          draft.scope = req.record_ids.empty() ? HoldScope::kPatient : HoldScope::kRecords;
          draft.record_ids = req.record_ids;
          draft.placed_by = ctx.user.empty() ? ctx.principal.name : ctx.user;
          draft.placed_us = Now();
          LegalHold hold;
          {
            MutexLock lock(state_mu_);
            PV_ASSIGN_OR_RETURN(hold, state_.StageHold(draft, pass.batch));
            // The hold's own key exists before anything refers to it.
            PV_RETURN_IF_ERROR(keyring_.GetOrCreateEpoch("h" + hold.id).status());
            pass.entry.records = {"hold:" + hold.id};
            for (const auto& id : to_move) pass.entry.records.push_back(id);
            pass.phi["matter"] = hold.matter;
            pass.phi["reason"] = hold.reason;
            pass.after_commit.push_back([this, hold] { state_.ApplyHold(hold); });
            PV_RETURN_IF_ERROR(CommitPass(pass));
          }
          // Under the gate: a sweep cannot erase between the hold and the re-wrap.
          for (const auto& id : to_move) {
            if (auto moved = Settle(id); !moved.ok() && !IsShredded(moved.status())) {
              return Unavailable(
                  "the legal hold is placed and recorded, but moving a record under its key "
                  "failed (" +
                  moved.status().message() +
                  "); nothing it covers will be destroyed, and the next sweep moves it");
            }
          }
          return std::make_pair(hold, pass.entry.seq);
        });
    return placed;
  }

  StatusOr<std::pair<LegalHold, uint64_t>> ReleaseHold(const RequestContext& ctx,
                                                       const std::string& hold_id,
                                                       const std::string& reason) override {
    return Guarded<std::pair<LegalHold, uint64_t>>(
        ctx, "hold.release", "hold", [&](Pass& pass) -> StatusOr<std::pair<LegalHold, uint64_t>> {
          pass.entry.records = {"hold:" + hold_id};
          auto existing = state_.GetHold(hold_id);
          if (!existing) return NotFound("no such legal hold");
          AttachPatient(pass, existing->patient_id);
          RetentionGate::Section section = gate_.Enter(existing->patient_id);
          LegalHold released;
          {
            MutexLock lock(state_mu_);
            PV_ASSIGN_OR_RETURN(
                released,
                state_.StageRelease(hold_id, ctx.user.empty() ? ctx.principal.name : ctx.user,
                                    reason, Now(), pass.batch));
            pass.phi["reason"] = reason;
            pass.after_commit.push_back([this, released] { state_.ApplyHold(released); });
            PV_RETURN_IF_ERROR(CommitPass(pass));
          }
          PV_RETURN_IF_ERROR(RetireHoldEpoch(released.id));
          return std::make_pair(released, pass.entry.seq);
        });
  }

  StatusOr<std::vector<LegalHold>> ListHolds(const RequestContext& ctx,
                                             const std::optional<std::string>& patient_id,
                                             bool include_released) override {
    if (patient_id) {
      PV_RETURN_IF_ERROR(ValidatePatientId(*patient_id));
    }
    PV_RETURN_IF_ERROR(AuthorizeUnaudited(ctx, "hold.list", "hold"));
    return state_.ListHolds(patient_id, include_released);
  }

  StatusOr<std::vector<CertificateSummary>> ListCertificates(const RequestContext& ctx) override {
    PV_RETURN_IF_ERROR(AuthorizeUnaudited(ctx, "certificate.read", "audit"));
    std::vector<CertificateSummary> out;
    Status parse_error;
    PV_RETURN_IF_ERROR(
        store_.Scan(storage::Cf::kState, kCertSummaryPrefix, PrefixEnd(kCertSummaryPrefix),
                    [&](std::string_view, std::string_view value) {
                      auto j = nlohmann::json::parse(value, nullptr, false);
                      if (j.is_discarded() || !j.is_object()) {
                        parse_error = DataLoss("a stored certificate summary is malformed");
                        return false;
                      }
                      CertificateSummary s;
                      s.id = j.value("id", "");
                      s.started_unix_us = j.value("started_us", int64_t{0});
                      s.finished_unix_us = j.value("finished_us", int64_t{0});
                      s.records = j.value("records", uint64_t{0});
                      s.versions = j.value("versions", uint64_t{0});
                      s.patients = j.value("patients", uint64_t{0});
                      s.epoch_ids = j.value("epoch_ids", std::vector<std::string>{});
                      out.push_back(std::move(s));
                      return true;
                    }));
    PV_RETURN_IF_ERROR(parse_error);
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
      return a.finished_unix_us != b.finished_unix_us ? a.finished_unix_us > b.finished_unix_us
                                                      : a.id < b.id;
    });
    return out;
  }

  StatusOr<std::string> GetCertificate(const RequestContext& ctx,
                                       const std::string& certificate_id) override {
    PV_RETURN_IF_ERROR(AuthorizeUnaudited(ctx, "certificate.read", "audit"));
    PV_ASSIGN_OR_RETURN(auto note,
                        store_.Get(storage::Cf::kState, std::string(kCertPrefix) + certificate_id));
    if (!note) return NotFound("no such certificate");
    return *note;
  }

  StatusOr<SweepResult> Sweep(const RequestContext* ctx_in, const SweepRequest& req,
                              const SweepProgressFn& progress) override {
    const RequestContext system = SystemContext("retention.sweep");
    const RequestContext& ctx = ctx_in != nullptr ? *ctx_in : system;
    std::unique_lock<std::mutex> running(sweep_mu_, std::try_to_lock);
    return Guarded<SweepResult>(
        ctx, "retention.sweep", "sweep", [&](Pass& pass) -> StatusOr<SweepResult> {
          if (!running.owns_lock()) {
            return FailedPrecondition("a retention sweep is already running");
          }
          const std::chrono::year_month_day today = DayOf(Now());
          std::chrono::year_month_day until = today;
          if (req.until) {
            auto d = ParseDay(*req.until);
            if (!d || !ValidateDate("until", *req.until).ok()) {
              return InvalidArgument("field 'until' must be a date written YYYY-MM-DD");
            }
            until = *d;
          }
          auto report = [&](std::string_view phase, uint64_t done, uint64_t total) {
            if (progress) progress(SweepProgress{std::string(phase), done, total});
          };
          if (req.dry_run) {
            pass.entry.reason = "dry-run until " + FormatDay(until);
            pass.Permitted(pass.upfront_rule.empty() ? "sweep" : pass.upfront_rule);
            return DryRunSweep(until, report);
          }
          if (std::chrono::sys_days(until) > std::chrono::sys_days(today)) {
            return InvalidArgument(
                "field 'until': a real sweep destroys only what has expired by today; use "
                "--dry-run to look ahead");
          }
          auto result = RunSweep(ctx, pass, until, report);
          if (result.ok()) {
            pass.entry.reason = result->certificate_id.empty()
                                    ? "nothing expired until " + result->until
                                    : "certificate " + result->certificate_id;
          }
          return result;
        });
  }

  StatusOr<storage::BackupManifest> CreateBackup(const RequestContext& ctx,
                                                 const BackupRequest& req) override {
    std::unique_lock<std::mutex> running(backup_mu_, std::try_to_lock);
    return Guarded<storage::BackupManifest>(
        ctx, "backup.create", "admin", [&](Pass& pass) -> StatusOr<storage::BackupManifest> {
          if (!running.owns_lock()) return FailedPrecondition("a backup is already running");
          if (req.dir.empty() || req.dir.front() != '/') {
            return InvalidArgument("field 'dir' must be an absolute path");
          }
          std::error_code ec;
          const std::filesystem::path dir = std::filesystem::weakly_canonical(req.dir, ec);
          const std::filesystem::path data =
              std::filesystem::weakly_canonical(config_.data_dir, ec);
          const auto rel = dir.lexically_relative(data);
          if (ec || rel.empty() || *rel.begin() != "..") {
            return InvalidArgument(
                "field 'dir' must be outside the data directory (a backup belongs on other "
                "storage)");
          }
          if (audit_log_ == nullptr) return FailedPrecondition("no audit log is open");
          storage::CreateBackupOptions options;
          options.dir = req.dir;
          options.keyring_path = (std::filesystem::path(config_.data_dir) / "keyring").string();
          options.signer = &keyring_.audit_signer();
          options.origin = audit_log_->origin();
          // On the database's filesystem, so that the checkpoint is hard links, not a copy.
          options.staging_dir =
              (std::filesystem::path(config_.data_dir) / storage::kBackupStagingName).string();
          options.progress = req.progress;
          auto made = storage::CreateBackup(store_, options);
          if (made.ok()) {
            pass.entry.reason = "backup " + made->id + ": " + std::to_string(made->files.size()) +
                                " files, " + std::to_string(made->TotalBytes()) + " bytes (" +
                                std::to_string(made->shared_bytes) +
                                " shared with earlier backups), audit log at " +
                                std::to_string(made->audit_size) + " entries";
          }
          return made;
        });
  }

  StatusOr<ArchiveResult> RunArchive(const RequestContext& ctx,
                                     const ArchiveRequest& req) override {
    std::unique_lock<std::mutex> running(archive_mu_, std::try_to_lock);
    return Guarded<ArchiveResult>(
        ctx, "archive.run", "admin", [&](Pass& pass) -> StatusOr<ArchiveResult> {
          if (!running.owns_lock()) return FailedPrecondition("an archive run is already running");
          if (config_.archive.after_days == 0) {
            return FailedPrecondition(
                "no archive tier is configured: set [archive] after_days (docs/archive.md)");
          }
          ArchiveResult result;
          result.dry_run = req.dry_run;
          const std::chrono::sys_days cutoff =
              std::chrono::sys_days(DayOf(Now())) - std::chrono::days(config_.archive.after_days);
          result.cutoff = FormatDay(std::chrono::year_month_day(cutoff));
          PV_RETURN_IF_ERROR(ArchiveDue(cutoff, req.dry_run, result));
          if (!req.dry_run && result.archived_versions > 0) {
            // The moved values stay in the live tier's files until they are compacted.
            if (Status s = store_.CompactAll(); s.ok()) {
              result.compacted = true;
            } else {
              result.compaction_error = s.message();
            }
          }
          pass.entry.reason = std::string(req.dry_run ? "dry-run " : "") + "cutoff " +
                              result.cutoff + ": " + std::to_string(result.archived_records) +
                              " records (" + std::to_string(result.archived_versions) +
                              " versions) " + (req.dry_run ? "due" : "archived") + ", " +
                              std::to_string(result.already_archived) + " already archived, " +
                              std::to_string(result.examined_records) + " examined";
          PV_RETURN_IF_ERROR(CommitPass(pass));
          result.audit_seq = pass.entry.seq;
          return result;
        });
  }

  Status RecordRestore(const StatusOr<storage::RestoreMarker>& marker) override {
    RequestContext ctx = SystemContext("backup.restore");
    ctx.principal.name = "phivaultd:restore";
    // First the deletion layer the backup lacks: what was shredded since it was taken.
    std::optional<PurgeSummary> purge;
    if (marker.ok()) {
      PV_ASSIGN_OR_RETURN(purge, PurgeRestoredShredded(*marker));
    }
    auto recorded =
        Guarded<bool>(ctx, "backup.restore", "admin", [&](Pass& pass) -> StatusOr<bool> {
          if (!marker.ok()) {
            pass.entry.reason = "a restore marker that is not one was found and removed (" +
                                marker.status().message() + "); nothing in it was believed";
            return true;
          }
          const storage::RestoreMarker& m = *marker;
          bool matches = false;
          if (audit_log_ != nullptr && m.audit_size <= audit_log_->tree().size()) {
            auto root = audit_log_->tree().RootAt(m.audit_size);
            matches = root.ok() && *root == m.audit_root;
          }
          std::string reason = "backup " + m.backup_id + " restored; its audit log of " +
                               std::to_string(m.audit_size) + " entries ";
          reason += matches ? "is the one this database holds"
                            : "is NOT the one this database holds (the marker was not written by a "
                              "restore of this database)";
          reason += "; reported by the restore: the log before it had " +
                    std::to_string(m.previous_audit_size) +
                    " entries, of which the restored log "
                    "lacks " +
                    std::to_string(m.lacking_entries);
          if (m.previous_audit_size > 0) {
            reason += m.previous_extends_backup ? " (it extended the backup's log)"
                                                : " (it did NOT extend the backup's log)";
          }
          if (!m.set_aside.empty()) reason += "; the previous database was kept as " + m.set_aside;
          if (purge) {
            reason += "; " + purge->Describe();
            pass.entry.records = purge->records;
            PV_RETURN_IF_ERROR(StageDeletePrefix(kRestorePurgePrefix, pass.batch));
          }
          pass.entry.reason = std::move(reason);
          if (!matches) MarkFailure(pass.entry, DataLoss("restore marker does not match"));
          return true;
        });
    return recorded.status();
  }

  StatusOr<KeyRotateResult> RotateMasterKey(const RequestContext& ctx,
                                            KeyRotateRequest req) override {
    std::unique_lock<std::mutex> running(rotate_mu_, std::try_to_lock);
    return Guarded<KeyRotateResult>(
        ctx, "key.rotate", "admin", [&](Pass& pass) -> StatusOr<KeyRotateResult> {
          if (!running.owns_lock()) return FailedPrecondition("a key rotation is already running");
          pass.entry.records = {"keyring"};
          const MasterKeySource& source = config_.master_key;
          KeyRotateResult result;
          crypto::SecretBytes new_key;
          if (source.kind == MasterKeySource::Kind::kPassphrase) {
            result.source = "passphrase";
            if (!req.new_passphrase || req.new_passphrase->empty()) {
              return InvalidArgument(
                  "field 'new_passphrase' is required: the master key comes from a passphrase");
            }
            PV_ASSIGN_OR_RETURN(std::string salt, crypto::Base64Decode(source.salt_base64));
            crypto::PassphraseParams params;
            params.salt = std::move(salt);
            params.opslimit = source.opslimit;
            params.memlimit = source.memlimit;
            PV_ASSIGN_OR_RETURN(
                new_key,
                crypto::DeriveMasterKeyFromPassphrase(
                    req.new_passphrase->view(crypto::InsecureSecretKeyAccess::Get()), params));
            if (keyring_.SealedUnder(new_key)) {
              return InvalidArgument("field 'new_passphrase': it gives the master key in use");
            }
          } else {
            result.source = source.kind == MasterKeySource::Kind::kFile ? "file" : "credential";
            if (req.new_passphrase) {
              return InvalidArgument("field 'new_passphrase': the master key comes from a " +
                                     result.source +
                                     ", not a passphrase; phivaultd makes the new key itself");
            }
            result.pending_key_path = crypto::PendingMasterKeyPath(config_.data_dir);
            new_key = crypto::SecretBytes::Random(crypto::kMasterKeyBytes);
            // Durable before the keyring changes: a crash after the re-seal must not lose the
            // only copy of the key that opens it.
            if (Status s = crypto::WriteMasterKeyFile(result.pending_key_path, new_key); !s.ok()) {
              if (s.code() == StatusCode::kAlreadyExists) {
                return FailedPrecondition(
                    "the new master key of an earlier rotation is waiting at " +
                    result.pending_key_path +
                    " to be installed; install it where the configuration loads the key from and "
                    "restart phivaultd before rotating again (docs/keys.md)");
              }
              return s;
            }
          }
          const crypto::InsecureSecretKeyAccess access = crypto::InsecureSecretKeyAccess::Get();
          Status rotated =
              keyring_.Rotate(crypto::SecretBytes::CopyFrom(new_key.view(access), access));
          const bool took_effect = keyring_.SealedUnder(new_key);
          if (!rotated.ok()) {
            if (!took_effect) {
              if (!result.pending_key_path.empty()) {
                (void)crypto::ShredMasterKeyFile(result.pending_key_path);
              }
              return Unavailable("the master key was not rotated; the old key stays in force (" +
                                 rotated.message() + ")");
            }
            pass.entry.reason = "master key rotated (source " + result.source +
                                "), a keyring copy not yet re-sealed: " + rotated.message();
            return Unavailable(
                "the master key was rotated, but a keyring copy could not be re-sealed (" +
                rotated.message() + "); the daemon retries it at every change and at start" +
                (result.pending_key_path.empty()
                     ? std::string()
                     : "; the new key is at " + result.pending_key_path + ": install it"));
          }
          result.keyring_generation = keyring_.generation();
          result.keyring_copies = 1 + config_.keyring_mirrors.size();
          pass.entry.reason =
              "master key rotated (source " + result.source + "), keyring generation " +
              std::to_string(result.keyring_generation) +
              ", keyring copies re-sealed: " + std::to_string(result.keyring_copies);
          PV_RETURN_IF_ERROR(CommitPass(pass));
          result.audit_seq = pass.entry.seq;
          spdlog::warn("master key rotated (source {}, keyring generation {}){}", result.source,
                       result.keyring_generation,
                       result.pending_key_path.empty()
                           ? std::string()
                           : "; install the new key from " + result.pending_key_path);
          return result;
        });
  }

 private:
  static constexpr std::string_view kJournalKey = "sweep/journal";
  static constexpr std::string_view kDoomedPrefix = "sweep/d/";
  static constexpr std::string_view kShredMarkPrefix = "sweep/a/";
  static constexpr std::string_view kCertPrefix = "cert/note/";
  static constexpr std::string_view kCertSummaryPrefix = "cert/summary/";
  static constexpr std::string_view kRetentionTableKey = "retention/table";
  static constexpr size_t kSweepBatch = 512;

  static std::string PrefixEnd(std::string_view prefix) {
    std::string end(prefix);
    end.back() = static_cast<char>(end.back() + 1);
    return end;
  }

  static bool IsShredded(const Status& s) {
    return s.code() == StatusCode::kFailedPrecondition &&
           s.message().find(kShreddedMessage) != std::string::npos;
  }

  RequestContext SystemContext(std::string action) const {
    RequestContext c;
    c.request_id = "system";
    c.principal.kind = Principal::Kind::kSystem;
    c.principal.name = "phivaultd:retention";
    c.principal.actions = {std::move(action)};
    c.user = "phivaultd";
    c.role = "system";
    c.purpose = "HOPERAT";
    return c;
  }

  // ---- Purge after a restore (docs/backups.md)

  static constexpr std::string_view kRestorePurgePrefix = "restore/purged/";

  struct PurgeSummary {
    uint64_t purged_records = 0;
    uint64_t purged_versions = 0;
    uint64_t partial_records = 0;  // some versions under destroyed keys, others readable: kept
    uint64_t damaged_records = 0;  // failed their integrity check: left for reads to report
    uint64_t fingerprints = 0;
    uint64_t hits = 0;  // fingerprints the byte search still found
    std::string hit_path;
    bool compacted = false;
    std::string compaction_error;
    std::set<std::string> certificates;  // from the previous database's tombstones
    std::set<std::string> purge_ids;     // named where there was none (no certificate behind it)
    std::vector<std::string> records;    // "<id>@1-<versions>", ascending
    std::string Describe() const {
      std::string out = "purged the stored ciphertext, metadata and index entries of " +
                        std::to_string(purged_records) + " records (" +
                        std::to_string(purged_versions) +
                        " versions) whose epoch keys were destroyed since the backup";
      if (partial_records > 0) {
        out += "; " + std::to_string(partial_records) +
               " records with only some versions under destroyed keys were kept";
      }
      if (damaged_records > 0) {
        out += "; " + std::to_string(damaged_records) +
               " records that failed their integrity check were left as they are";
      }
      if (purged_records == 0) return out;
      if (!certificates.empty()) {
        out += "; certificates of their destruction:";
        for (const auto& c : certificates) out += " " + c;
      }
      if (!purge_ids.empty()) {
        out += "; records without one (no previous database) name this purge:";
        for (const auto& c : purge_ids) out += " " + c;
      }
      out += compacted ? "; compacted" : "; NOT compacted (" + compaction_error + ")";
      out += hits == 0
                 ? "; byte search: none of their " + std::to_string(fingerprints) +
                       " ciphertext fingerprints is in any database file"
                 : "; byte search FOUND " + std::to_string(hits) + " of " +
                       std::to_string(fingerprints) + " fingerprints (first in " + hit_path + ")";
      return out;
    }
  };

  // At the first start after a restore: every record whose versions all lie under epoch keys the
  // keyring reports destroyed (shredded since the backup was taken) is deleted as a sweep deletes
  // it (StageShred: ciphertext, headers, head, patient and epoch index entries), with a tombstone
  // naming the certificate the previous database's tombstone names (its certificate is copied
  // over), or, where there is none (a restore on another machine), this purge's own id. Each
  // record's deletion is written with a progress key holding its fingerprints, so a purge cut
  // short is completed at the next start (the marker stays until the audit entry is written,
  // which removes the keys); then the store is compacted and searched for the fingerprints.
  StatusOr<PurgeSummary> PurgeRestoredShredded(const storage::RestoreMarker& marker) {
    PurgeSummary summary;
    std::set<std::string> destroyed;
    for (const auto& e : keyring_.ListEpochs()) {
      if (e.destroyed) destroyed.insert(e.id);
    }
    std::set<std::string> candidates;
    for (const auto& epoch : destroyed) {
      PV_RETURN_IF_ERROR(records_.ScanEpoch(epoch, [&](std::string_view id, uint32_t) {
        candidates.insert(std::string(id));
        return true;
      }));
    }
    // The previous database (set aside by the restore) holds the tombstones and certificates
    // of the sweeps that shredded them.
    std::unique_ptr<storage::Store> aside;
    std::unique_ptr<storage::RecordRepository> aside_records;
    if (!candidates.empty() && !marker.set_aside.empty()) {
      const std::string path =
          (std::filesystem::path(config_.data_dir) / marker.set_aside).string();
      auto opened = storage::OpenDatabaseReadOnly(path);
      if (opened.ok()) {
        aside = std::move(opened).value();
        aside_records = std::make_unique<storage::RecordRepository>(*aside, keyring_);
      } else {
        spdlog::warn(
            "restore purge: the previous database cannot be read ({}); the purged "
            "records' tombstones name the purge",
            opened.status().message());
      }
    }
    std::string own_id;  // a certificate-id-shaped name of this purge, made when first needed
    const int64_t now = Now();
    storage::WriteBatch batch;
    size_t in_batch = 0;
    for (const std::string& id : candidates) {
      MutexLock lock(StripeFor(id));
      auto latest = records_.LatestVersion(id);
      if (!latest.ok()) {
        if (IsShredded(latest.status())) continue;  // already has its tombstone
        // Damage is for `audit verify` and reads to report; it must not keep the vault down.
        ++summary.damaged_records;
        continue;
      }
      auto read = records_.ReadStoredVersions(id, *latest);
      if (!read.ok()) {
        ++summary.damaged_records;
        continue;
      }
      storage::RecordRepository::StoredVersions& stored = *read;
      const bool all_destroyed =
          std::all_of(stored.epoch_ids.begin(), stored.epoch_ids.end(),
                      [&](const std::string& e) { return destroyed.count(e) > 0; });
      if (!all_destroyed) {
        ++summary.partial_records;
        continue;
      }
      std::optional<std::string> certificate;
      if (aside_records) {
        auto by = aside_records->ShreddedBy(id);
        if (by.ok() && *by) certificate = **by;
      }
      if (certificate) {
        PV_RETURN_IF_ERROR(CopyCertificate(*aside, *certificate, batch));
      } else {
        if (own_id.empty()) own_id = storage::NewDestructionCertificateId();
        certificate = own_id;
      }
      PV_RETURN_IF_ERROR(records_.StageShred(id, *certificate, now, batch));
      std::string value = std::to_string(*latest) + " " + *certificate;
      for (const auto& f : stored.fingerprints) value += " " + crypto::HexEncode(f);
      batch.Put(storage::Cf::kState, std::string(kRestorePurgePrefix) + id, std::move(value));
      if (++in_batch == kSweepBatch) {
        PV_RETURN_IF_ERROR(store_.Write(batch, /*sync=*/false));
        batch = storage::WriteBatch();
        in_batch = 0;
      }
    }
    if (!batch.empty()) PV_RETURN_IF_ERROR(store_.Write(batch, /*sync=*/false));

    // What this start and any cut-short earlier one purged.
    std::vector<std::string> needles;
    Status parsed = Status::Ok();
    PV_RETURN_IF_ERROR(store_.Scan(
        storage::Cf::kState, kRestorePurgePrefix, PrefixEnd(kRestorePurgePrefix),
        [&](std::string_view key, std::string_view value) {
          const std::string id(key.substr(kRestorePurgePrefix.size()));
          std::vector<std::string> fields;
          for (size_t at = 0; at <= value.size();) {
            const size_t sp = std::min(value.find(' ', at), value.size());
            fields.emplace_back(value.substr(at, sp - at));
            at = sp + 1;
          }
          uint32_t versions = 0;
          auto [p, ec] =
              std::from_chars(fields[0].data(), fields[0].data() + fields[0].size(), versions);
          if (fields.size() < 2 || ec != std::errc() || versions == 0) {
            parsed = DataLoss("a restore purge progress key is malformed");
            return false;
          }
          ++summary.purged_records;
          summary.purged_versions += versions;
          summary.records.push_back(id + "@1-" + std::to_string(versions));
          summary.certificates.insert(fields[1]);
          for (size_t i = 2; i < fields.size(); ++i) {
            auto raw = crypto::HexDecode(fields[i]);
            if (!raw.ok()) {
              parsed = DataLoss("a restore purge progress key is malformed");
              return false;
            }
            needles.push_back(std::move(*raw));
          }
          return true;
        }));
    PV_RETURN_IF_ERROR(parsed);
    std::sort(summary.records.begin(), summary.records.end());
    // A certificate copied from the previous database is here; a purge's own id has none.
    for (auto it = summary.certificates.begin(); it != summary.certificates.end();) {
      PV_ASSIGN_OR_RETURN(auto note,
                          store_.Get(storage::Cf::kState, std::string(kCertPrefix) + *it));
      if (note) {
        ++it;
      } else {
        summary.purge_ids.insert(*it);
        it = summary.certificates.erase(it);
      }
    }
    if (summary.purged_records == 0) return summary;
    if (Status s = store_.CompactAll(); s.ok()) {
      summary.compacted = true;
    } else {
      summary.compaction_error = s.message();
    }
    summary.fingerprints = needles.size();
    PV_ASSIGN_OR_RETURN(std::vector<storage::FileHit> hits,
                        storage::FindInFiles(config_.data_dir + "/db", needles, needles.size()));
    std::set<size_t> found;
    for (const auto& h : hits) {
      if (found.insert(h.needle).second && summary.hit_path.empty()) summary.hit_path = h.path;
    }
    summary.hits = found.size();
    spdlog::info(
        "restore purge: {} records ({} versions) whose keys were destroyed since the "
        "backup deleted{}",
        summary.purged_records, summary.purged_versions,
        summary.hits == 0 ? "" : "; ciphertext still found in a file");
    return summary;
  }

  // Copies a destruction certificate (note and summary) from `from` into `batch` unless this
  // database has it.
  Status CopyCertificate(storage::Store& from, const std::string& id, storage::WriteBatch& batch) {
    for (std::string_view prefix : {kCertPrefix, kCertSummaryPrefix}) {
      const std::string key = std::string(prefix) + id;
      PV_ASSIGN_OR_RETURN(auto here, store_.Get(storage::Cf::kState, key));
      if (here) continue;
      PV_ASSIGN_OR_RETURN(auto there, from.Get(storage::Cf::kState, key));
      if (there) batch.Put(storage::Cf::kState, key, *there);
    }
    return Status::Ok();
  }

  // ---- Archive tier (docs/archive.md)

  // The records named by a successful audit entry since `since_us`: every access to a record
  // (create, read, amend, disclose, ...) is audited with its id, so the log is where the last
  // access is found, and reads need not write anything for it. `read` counts the entries.
  StatusOr<std::unordered_set<std::string>> RecordsAccessedSince(int64_t since_us, uint64_t& read) {
    std::unordered_set<std::string> ids;
    const uint64_t size = ledger_.size();
    // Commit times rise with sequence numbers: the first entry at or after `since_us`.
    uint64_t lo = 1, hi = size + 1;
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo) / 2;
      PV_ASSIGN_OR_RETURN(storage::AuditEntry e, storage::ReadAuditEntry(store_, mid));
      if (e.time_unix_us < since_us) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    PV_RETURN_IF_ERROR(storage::ScanAuditEntries(
        store_, lo, size, [&](const storage::AuditEntry& e, std::string_view) {
          ++read;
          if (e.outcome != "success") return true;
          for (const std::string& r : e.records) ids.insert(r.substr(0, r.find('@')));
          return true;
        }));
    return ids;
  }

  // Finds (and unless `dry_run`, archives) every record due at `cutoff`.
  Status ArchiveDue(std::chrono::sys_days cutoff, bool dry_run, ArchiveResult& result) {
    const int64_t cutoff_us =
        std::chrono::duration_cast<std::chrono::microseconds>(cutoff.time_since_epoch()).count();
    PV_ASSIGN_OR_RETURN(auto recent, RecordsAccessedSince(cutoff_us, result.audit_entries_read));
    return records_.ForEachRecord([&](const std::string& id, int64_t created_us) -> Status {
      ++result.examined_records;
      if (created_us >= cutoff_us || recent.count(id) > 0) return Status::Ok();
      // A move changes the stored bytes (compression re-seals them): a sweep watching must
      // decide the patient again and take the new fingerprints (Touch below).
      RetentionGate::Section section = gate_.Enter({});
      MutexLock lock(StripeFor(id));
      Status due = ArchiveOneLocked(id, cutoff, cutoff_us, dry_run, result);
      return IsShredded(due) ? Status::Ok() : due;
    });
  }

  // One record, under its lock: due if its latest version is older than the cutoff and the
  // patient's last encounter (the records' encounter dates and the patient's facts) is too.
  Status ArchiveOneLocked(const std::string& id, std::chrono::sys_days cutoff, int64_t cutoff_us,
                          bool dry_run, ArchiveResult& result) {
    PV_ASSIGN_OR_RETURN(uint32_t latest, records_.LatestVersion(id));
    PV_ASSIGN_OR_RETURN(storage::Record rec, records_.ReadVersion(id, latest, false));
    if (rec.meta.created_unix_us >= cutoff_us) return Status::Ok();
    PV_ASSIGN_OR_RETURN(auto last, PatientLastEncounter(rec.meta.patient_id));
    if (auto facts = state_.GetFacts(rec.meta.patient_id); facts && facts->last_encounter) {
      MergeDay(last, ParseDay(*facts->last_encounter));
    }
    if (last && std::chrono::sys_days(*last) >= cutoff) return Status::Ok();
    if (dry_run) {
      uint32_t due = 0;
      for (uint32_t v = 1; v <= latest; ++v) {
        PV_ASSIGN_OR_RETURN(bool archived, records_.IsArchived(id, v));
        if (!archived) ++due;
      }
      CountArchived(due, result);
      return Status::Ok();
    }
    gate_.Touch(rec.meta.patient_id);
    storage::WriteBatch batch;
    PV_ASSIGN_OR_RETURN(uint32_t moved, records_.StageArchive(id, batch));
    // Not synced one by one: the run's audit entry is, and its sync makes every move before it
    // durable. A move lost in a crash leaves the record in the live tier, readable as before.
    if (moved > 0) PV_RETURN_IF_ERROR(store_.Write(batch, /*sync=*/false));
    CountArchived(moved, result);
    return Status::Ok();
  }
  static void CountArchived(uint32_t versions, ArchiveResult& result) {
    if (versions == 0) {
      ++result.already_archived;
      return;
    }
    ++result.archived_records;
    result.archived_versions += versions;
  }

  // The patient's latest encounter known to the vault (the records' encounter dates), cached
  // (daemon/encounter_cache.h: bounded, and a patient it does not know is read from the store).
  StatusOr<std::optional<std::chrono::year_month_day>> PatientLastEncounter(
      const std::string& patient_id) {
    if (auto known = encounters_.Lookup(patient_id)) return *known;
    const EncounterCache::Fill fill = encounters_.Begin(patient_id);
    PV_ASSIGN_OR_RETURN(std::vector<storage::RecordMetadata> all, records_.ListPatient(patient_id));
    std::optional<std::chrono::year_month_day> last;
    for (const auto& m : all) MergeDay(last, ParseDay(m.encounter_date));
    return encounters_.Finish(fill, last);
  }
  static void MergeDay(std::optional<std::chrono::year_month_day>& into,
                       std::optional<std::chrono::year_month_day> day) {
    if (day && (!into || std::chrono::sys_days(*day) > std::chrono::sys_days(*into))) into = day;
  }
  // Returns true if `day` is later than what was known (the patient's other records may keep
  // longer now); always for a patient the cache does not know.
  bool NoteEncounter(const std::string& patient_id, std::string_view date) {
    return encounters_.Note(patient_id, ParseDay(date));
  }
  void ForgetEncounters(const std::string& patient_id) { encounters_.Forget(patient_id); }

  // `known_last`, if given, is the patient's latest encounter as the caller knows it (a sweep).
  StatusOr<RetentionTarget> TargetFor(
      const storage::RecordMetadata& latest, std::optional<std::string_view> extra_encounter = {},
      const std::optional<std::chrono::year_month_day>* known_last = nullptr) {
    auto loaded = std::atomic_load(&retention_);
    std::optional<std::chrono::year_month_day> last;
    if (known_last != nullptr) {
      last = *known_last;
    } else {
      PV_ASSIGN_OR_RETURN(last, PatientLastEncounter(latest.patient_id));
    }
    if (extra_encounter) MergeDay(last, ParseDay(*extra_encounter));
    return DecideTarget(*loaded->table, latest, state_.GetFacts(latest.patient_id), last,
                        state_.IsHeld(latest.patient_id, latest.record_id), DayOf(Now()));
  }

  // The live epoch for `t`, created on demand: a day already erased by a sweep is skipped to the
  // next day (a record moved there dies at the next sweep).
  StatusOr<std::string> LiveEpochFor(const RetentionTarget& t) {
    if (t.epoch_id.front() == 'h') {
      PV_RETURN_IF_ERROR(keyring_.GetOrCreateEpoch(t.epoch_id).status());
      return t.epoch_id;
    }
    auto day = EpochDay(t.epoch_id);
    if (!day) return Internal("retention target is not a day epoch");
    for (int i = 0; i < 3660; ++i) {
      const std::string id = DayEpochId(*day);
      auto key = keyring_.GetOrCreateEpoch(id);
      if (key.ok()) return id;
      if (key.status().code() != StatusCode::kFailedPrecondition) return key.status();
      day = std::chrono::year_month_day{std::chrono::sys_days(*day) + std::chrono::days(1)};
    }
    return Internal("no live epoch within ten years of the retention date");
  }

  // The epoch a record belongs under now, given where it is: a record already in a day epoch
  // between its expiry and the earliest allowed day stays (moving it would only delay it).
  StatusOr<std::string> EpochToHold(const RetentionTarget& t, std::string_view current) {
    if (t.outcome == "expires" && t.expires) {
      auto c = EpochDay(current);
      auto d = EpochDay(t.epoch_id);
      if (c && d && std::chrono::sys_days(*c) >= std::chrono::sys_days(*t.expires) &&
          std::chrono::sys_days(*c) <= std::chrono::sys_days(*d) &&
          keyring_.GetEpoch(current).ok()) {
        return std::string(current);
      }
    }
    return LiveEpochFor(t);
  }

  // Moves every version of `record_id` under the epoch its retention (or a hold) calls for.
  // Caller holds the record's stripe lock. Returns the versions moved.
  StatusOr<uint32_t> SettleLocked(std::string_view record_id) {
    PV_ASSIGN_OR_RETURN(uint32_t latest, records_.LatestVersion(record_id));
    PV_ASSIGN_OR_RETURN(storage::Record rec, records_.ReadVersion(record_id, latest, false));
    PV_ASSIGN_OR_RETURN(RetentionTarget t, TargetFor(rec.meta));
    PV_ASSIGN_OR_RETURN(std::string epoch, EpochToHold(t, rec.meta.epoch_id));
    storage::WriteBatch batch;
    PV_ASSIGN_OR_RETURN(uint32_t moved, records_.StageRewrap(record_id, epoch, batch));
    if (moved > 0) PV_RETURN_IF_ERROR(store_.Write(batch, /*sync=*/true));
    return moved;
  }
  StatusOr<uint32_t> Settle(std::string_view record_id) {
    MutexLock lock(StripeFor(record_id));
    return SettleLocked(record_id);
  }
  // Re-settles every record of the patient. Failures are logged (no PHI) and left to the
  // sweep's recheck, which never destroys a record before rechecking it.
  void SettlePatientLogged(const std::string& patient_id) {
    auto all = records_.ListPatient(patient_id);
    if (!all.ok()) {
      spdlog::warn("retention: could not list a patient's records to re-wrap them: {}",
                   all.status().message());
      return;
    }
    for (const auto& m : *all) {
      if (auto s = Settle(m.record_id); !s.ok() && !IsShredded(s.status())) {
        spdlog::warn("retention: re-wrap of record {} failed: {}", m.record_id,
                     s.status().message());
      }
    }
  }

  // After a hold is released: its records go back to their retention (or another hold), then
  // its key is destroyed. Nothing remains under the key when it is destroyed.
  Status RetireHoldEpoch(const std::string& hold_id) {
    const std::string epoch = "h" + hold_id;
    auto key = keyring_.GetEpoch(epoch);
    if (!key.ok()) {
      return key.status().code() == StatusCode::kFailedPrecondition ||
                     key.status().code() == StatusCode::kNotFound
                 ? Status::Ok()
                 : key.status();
    }
    std::set<std::string> ids;
    PV_RETURN_IF_ERROR(records_.ScanEpoch(epoch, [&](std::string_view id, uint32_t) {
      ids.emplace(id);
      return true;
    }));
    for (const auto& id : ids) {
      auto moved = Settle(id);
      if (!moved.ok()) {
        return Unavailable("the hold is released, but record " + id +
                           " could not be moved back to its retention (" +
                           moved.status().message() + "); the next sweep completes this");
      }
    }
    bool empty = true;
    PV_RETURN_IF_ERROR(records_.ScanEpoch(epoch, [&](std::string_view, uint32_t) {
      empty = false;
      return false;
    }));
    if (!empty) return Unavailable("the hold is released, but records remain under its key");
    Status destroyed = keyring_.DestroyEpoch(epoch);
    if (!destroyed.ok()) {
      return Unavailable(
          "the hold is released, but its key could not be destroyed in every "
          "keyring copy (" +
          destroyed.message() + "); the next sweep retries");
    }
    return Status::Ok();
  }

  // ---- The sweep

  struct Doomed {
    std::string record_id;
    uint32_t versions = 0;
    std::string category;
    std::string patient_bid;
    std::string epoch_id;
    std::string expires_on;
    std::string reason;
    std::vector<std::string> fingerprints;
  };
  // The journal keeps the chosen records in chunks of kDoomedPerChunk, each chunk one sealed
  // value: the byte kDoomedChunkFormat, then per record
  //   <record id: its 16 raw bytes> <versions: varint> <category: ref>
  //   <patient blind id: varint length, raw bytes> <epoch id: ref> <expires on: ref>
  //   <fingerprint count: varint> <fingerprints: 16 bytes each>
  // where a ref is 0 followed by a new string (varint length, bytes), which becomes the chunk's
  // next table entry, or i >= 1 for the chunk's i-th entry (categories, epochs and days repeat
  // from record to record). The fingerprints are each version's first 16 bytes of sealed
  // content, sealed metadata and wrapped DEK (random nonce bytes: unique, and what the byte
  // search matches on). Binary rather than text: a million records made 230 MB of hex lines,
  // whose synced write and read-back were seconds of a sweep. The reason is not kept (the
  // certificate does not carry it).
  static constexpr size_t kFingerprintBytes = 16;
  static constexpr size_t kRawIdBytes = 16;  // a record id's bytes (22 characters of text)
  static constexpr size_t kDoomedPerChunk = 4096;
  static constexpr char kDoomedChunkFormat = '\x02';
  class DoomedWriter {
   public:
    DoomedWriter() { out_.push_back(kDoomedChunkFormat); }
    Status Add(const Doomed& d) {
      PV_ASSIGN_OR_RETURN(std::string raw_id, crypto::Base64UrlDecode(d.record_id));
      PV_ASSIGN_OR_RETURN(std::string bid, crypto::HexDecode(d.patient_bid));
      if (raw_id.size() != kRawIdBytes || d.versions == 0) {
        return Internal("sweep journal: a chosen record has a malformed id or no version");
      }
      out_ += raw_id;
      Varint(d.versions);
      Ref(d.category);
      Bytes(bid);
      Ref(d.epoch_id);
      Ref(d.expires_on);
      Varint(d.fingerprints.size());
      for (const auto& f : d.fingerprints) {
        if (f.size() < kFingerprintBytes) return Internal("sweep journal: a fingerprint is short");
        out_.append(f, 0, kFingerprintBytes);
      }
      return Status::Ok();
    }
    std::string Take() {
      std::string chunk = std::move(out_);
      out_.assign(1, kDoomedChunkFormat);
      table_.clear();
      return chunk;
    }

   private:
    void Varint(uint64_t v) {
      for (; v >= 0x80; v >>= 7) out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      out_.push_back(static_cast<char>(v));
    }
    void Bytes(std::string_view b) {
      Varint(b.size());
      out_ += b;
    }
    void Ref(const std::string& s) {
      auto [it, added] = table_.emplace(s, table_.size() + 1);
      Varint(added ? 0 : it->second);
      if (added) Bytes(s);
    }
    std::string out_;
    std::unordered_map<std::string, uint64_t> table_;
  };
  // Reads a chunk written by DoomedWriter into `out`; DataLoss on anything else.
  static Status ReadDoomedChunk(std::string_view in, std::vector<Doomed>& out) {
    const Status bad = DataLoss("sweep journal entry is malformed");
    if (in.empty() || in.front() != kDoomedChunkFormat) return bad;
    in.remove_prefix(1);
    std::vector<std::string> table;
    auto varint = [&](uint64_t& v) {
      v = 0;
      for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
        const auto byte = static_cast<uint8_t>(in.front());
        in.remove_prefix(1);
        v |= static_cast<uint64_t>(byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) return true;
      }
      return false;
    };
    auto bytes = [&](std::string& s) {
      uint64_t n = 0;
      if (!varint(n) || n > in.size()) return false;
      s.assign(in.substr(0, n));
      in.remove_prefix(n);
      return true;
    };
    auto ref = [&](std::string& s) {
      uint64_t k = 0;
      if (!varint(k)) return false;
      if (k == 0) {
        if (!bytes(s)) return false;
        table.push_back(s);
        return true;
      }
      if (k > table.size()) return false;
      s = table[k - 1];
      return true;
    };
    while (!in.empty()) {
      if (in.size() < kRawIdBytes) return bad;
      Doomed d;
      d.record_id = crypto::Base64UrlEncode(in.substr(0, kRawIdBytes));
      in.remove_prefix(kRawIdBytes);
      uint64_t versions = 0, count = 0;
      std::string bid;
      if (!varint(versions) || versions == 0 || versions > UINT32_MAX || !ref(d.category) ||
          !bytes(bid) || !ref(d.epoch_id) || !ref(d.expires_on) || !varint(count) ||
          count > in.size() / kFingerprintBytes || !storage::IsValidRecordId(d.record_id)) {
        return bad;
      }
      d.versions = static_cast<uint32_t>(versions);
      d.patient_bid = crypto::HexEncode(bid);
      d.fingerprints.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        d.fingerprints.emplace_back(in.substr(0, kFingerprintBytes));
        in.remove_prefix(kFingerprintBytes);
      }
      out.push_back(std::move(d));
    }
    return Status::Ok();
  }
  struct Journal;
  // What a chunk of chosen records is sealed to: its key, its sweep and its staging.
  static std::string ChunkBinding(std::string_view key, const Journal& j) {
    return std::string(key) + '|' + j.id + '|' + std::to_string(j.doomed_generation);
  }
  static std::string ChunkKey(size_t index) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%08zu", index);
    return std::string(kDoomedPrefix) + buf;
  }
  // Replaces the journal's chosen records with `doomed`.
  template <typename Range>
  Status StageDoomed(const Range& doomed, Journal& j, storage::WriteBatch& batch) {
    ++j.doomed_generation;
    j.doomed = std::size(doomed);
    PV_RETURN_IF_ERROR(StageDeletePrefix(kDoomedPrefix, batch));
    DoomedWriter writer;
    size_t in_chunk = 0;
    size_t index = 0;
    auto flush = [&] {
      const std::string key = ChunkKey(index++);
      batch.Put(storage::Cf::kState, key, SealStateValue(ChunkBinding(key, j), writer.Take()));
      in_chunk = 0;
    };
    for (const auto& item : doomed) {
      PV_RETURN_IF_ERROR(writer.Add(DoomedOf(item)));
      if (++in_chunk == kDoomedPerChunk) flush();
    }
    if (in_chunk > 0) flush();
    return Status::Ok();
  }
  static const Doomed& DoomedOf(const Doomed& d) { return d; }
  static const Doomed& DoomedOf(const std::pair<const std::string, Doomed>& p) { return p.second; }
  static SweepCandidate CandidateOf(const Doomed& d) {
    return SweepCandidate{d.record_id, d.versions,   d.category, d.patient_bid,
                          d.epoch_id,  d.expires_on, d.reason};
  }

  struct Journal {
    std::string id;
    std::string until;
    int64_t started_us = 0;
    std::string phase;
    std::vector<std::string> epochs;
    std::string principal, user, role;
    uint64_t rewrapped = 0, held = 0;
    // How many chosen records the journal's chunks hold: a chunk deleted from the data directory
    // (each is sealed, but the set of chunks is not) would otherwise make the sweep forget
    // records whose keys it has erased, and certify without them.
    uint64_t doomed = 0;
    // Which staging of the chosen records the chunks belong to: each chunk is sealed bound to
    // the sweep's id and this number, so a chunk of an earlier staging (the recheck's, before the
    // erase step dropped the records that still open) cannot be put back in place of the current
    // one and have a live record deleted.
    uint64_t doomed_generation = 0;
    std::string verification_result;
  };
  static std::string JournalJson(const Journal& j) {
    return nlohmann::json{{"id", j.id},
                          {"until", j.until},
                          {"started_us", j.started_us},
                          {"phase", j.phase},
                          {"epochs", j.epochs},
                          {"principal", j.principal},
                          {"user", j.user},
                          {"role", j.role},
                          {"rewrapped", j.rewrapped},
                          {"held", j.held},
                          {"doomed", j.doomed},
                          {"doomed_generation", j.doomed_generation},
                          {"verification_result", j.verification_result}}
        .dump();
  }
  // The sweep journal and the retention table in force are sealed under the audit key, bound to
  // their storage key: someone who can write the data directory cannot plant a journal that makes
  // the next sweep erase live epochs or delete live records, nor a "table in force" shorter than
  // the real one that a shortened retention file would then pass, nor move a value to another
  // key. `what` names the value in the error.
  std::string SealStateValue(std::string_view key, std::string_view plaintext) const {
    return keyring_.audit_key().Encrypt(plaintext, "phivault/state/v1" + std::string(key));
  }
  StatusOr<std::string> OpenStateValue(std::string_view key, std::string_view sealed,
                                       std::string_view what) const {
    auto opened = keyring_.audit_key().Decrypt(sealed, "phivault/state/v1" + std::string(key));
    if (!opened.ok()) return DataLoss(std::string(what) + " failed its integrity check");
    return opened;
  }

  StatusOr<std::optional<Journal>> LoadJournal() {
    PV_ASSIGN_OR_RETURN(auto sealed, store_.Get(storage::Cf::kState, kJournalKey));
    if (!sealed) return std::optional<Journal>();
    PV_ASSIGN_OR_RETURN(std::string v, OpenStateValue(kJournalKey, *sealed, "the sweep journal"));
    auto j = nlohmann::json::parse(v, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return DataLoss("the sweep journal is malformed");
    try {
      Journal out;
      out.id = j.at("id").get<std::string>();
      out.until = j.at("until").get<std::string>();
      out.started_us = j.at("started_us").get<int64_t>();
      out.phase = j.at("phase").get<std::string>();
      out.epochs = j.at("epochs").get<std::vector<std::string>>();
      out.principal = j.at("principal").get<std::string>();
      out.user = j.at("user").get<std::string>();
      out.role = j.at("role").get<std::string>();
      out.rewrapped = j.at("rewrapped").get<uint64_t>();
      out.held = j.at("held").get<uint64_t>();
      out.doomed = j.at("doomed").get<uint64_t>();
      out.doomed_generation = j.at("doomed_generation").get<uint64_t>();
      out.verification_result = j.at("verification_result").get<std::string>();
      if (!ParseDay(out.until)) return DataLoss("the sweep journal is malformed");
      return std::optional<Journal>(std::move(out));
    } catch (const std::exception&) {
      return DataLoss("the sweep journal is malformed");
    }
  }
  Status SaveJournal(const Journal& j, storage::WriteBatch batch = {}) {
    batch.Put(storage::Cf::kState, std::string(kJournalKey),
              SealStateValue(kJournalKey, JournalJson(j)));
    return store_.Write(batch, /*sync=*/true);
  }
  StatusOr<std::vector<Doomed>> LoadDoomed(const Journal& j) {
    std::vector<Doomed> out;
    Status bad;
    PV_RETURN_IF_ERROR(store_.Scan(
        storage::Cf::kState, kDoomedPrefix, PrefixEnd(kDoomedPrefix),
        [&](std::string_view key, std::string_view value) {
          auto opened = OpenStateValue(ChunkBinding(key, j), value, "the sweep journal");
          bad = opened.ok() ? ReadDoomedChunk(*opened, out) : opened.status();
          return bad.ok();
        }));
    PV_RETURN_IF_ERROR(bad);
    if (out.size() != j.doomed) {
      return DataLoss("the sweep journal holds " + std::to_string(out.size()) + " of its " +
                      std::to_string(j.doomed) + " chosen records");
    }
    return out;
  }
  Status StageDeletePrefix(std::string_view prefix, storage::WriteBatch& batch) {
    return store_.Scan(storage::Cf::kState, prefix, PrefixEnd(prefix),
                       [&](std::string_view key, std::string_view) {
                         batch.Delete(storage::Cf::kState, std::string(key));
                         return true;
                       });
  }

  Status Fault(std::string_view step) { return sweep_fault_ ? sweep_fault_(step) : Status::Ok(); }

  using Report = std::function<void(std::string_view, uint64_t, uint64_t)>;

  // Runs fn(i) for every i in [0, n) on up to two threads (this runs beside the vault's traffic
  // on small machines; more would only contend on the store). The first error stops the rest
  // and is returned.
  static Status ParallelFor(size_t n, const std::function<Status(size_t)>& fn) {
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex mu;
    Status first;
    auto work = [&] {
      for (size_t i = next++; i < n && !failed; i = next++) {
        Status st = fn(i);
        if (!st.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (first.ok()) first = st;
          failed = true;
        }
      }
    };
    const size_t threads = std::min<size_t>(2, std::max(1u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (size_t t = 1; t < threads && n > 1; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    return first;
  }

  // The live day epochs up to `until`, ascending.
  std::vector<std::string> ExpiredDayEpochs(std::chrono::year_month_day until) const {
    std::vector<std::string> out;
    for (const auto& e : keyring_.ListEpochs()) {
      if (e.destroyed) continue;
      auto day = EpochDay(e.id);
      if (day && std::chrono::sys_days(*day) <= std::chrono::sys_days(until)) out.push_back(e.id);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Every record with a version in `epochs`, with its versions counted.
  StatusOr<std::vector<std::string>> RecordsIn(const std::vector<std::string>& epochs) {
    std::vector<std::string> ids;
    for (const auto& e : epochs) {
      PV_RETURN_IF_ERROR(records_.ScanEpoch(e, [&](std::string_view id, uint32_t) {
        ids.emplace_back(id);
        return true;
      }));
    }
    // Sorted and unique (a record's versions may sit in several of the epochs). In id order,
    // records next to each other are next to each other in the store too.
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return ids;
  }

  // Decides one record for a sweep up to `until`. Expired: returns it (consolidating its versions
  // under one doomed epoch). Otherwise moves it where it belongs (when `apply`) and returns
  // nullopt. Caller holds the stripe lock.
  struct Recheck {
    std::optional<Doomed> doomed;
    bool rewrapped = false;
    bool held = false;
  };
  // `seen`, if given, is what this sweep read of the record moments ago (RecheckAll, pass 1): the
  // decision is made from it without reading again (a real sweep needs its stored versions too).
  // Taken from (moved out of).
  struct Seen {
    storage::RecordMetadata meta;  // of the latest version
    // Where every version's DEK is wrapped and the fingerprints (a real sweep only).
    std::optional<storage::RecordRepository::StoredVersions> stored;
  };
  StatusOr<Recheck> RecheckLocked(std::string_view record_id, std::chrono::year_month_day until,
                                  const std::set<std::string>& doomed_epochs, bool apply,
                                  Seen* seen = nullptr,
                                  const std::optional<std::chrono::year_month_day>* last = nullptr,
                                  const std::string* patient_bid = nullptr) {
    Recheck out;
    storage::Record rec;
    std::optional<storage::RecordRepository::StoredVersions> stored;
    uint32_t latest = 0;
    if (seen != nullptr && (!apply || seen->stored)) {
      latest = seen->meta.version;
      rec.meta = std::move(seen->meta);
      if (seen->stored) {
        stored = std::move(seen->stored);
        rec.meta.epoch_id = stored->epoch_ids.back();
      }
    } else {
      PV_ASSIGN_OR_RETURN(latest, records_.LatestVersion(record_id));
      PV_ASSIGN_OR_RETURN(rec, records_.ReadVersion(record_id, latest, false));
      patient_bid = nullptr;  // it was the blind id of what `seen` held
    }
    PV_ASSIGN_OR_RETURN(RetentionTarget t, TargetFor(rec.meta, {}, last));
    if (t.ExpiredBy(until) && doomed_epochs.count(rec.meta.epoch_id) > 0) {
      Doomed d;
      d.record_id = std::string(record_id);
      d.versions = latest;
      d.category = rec.meta.category;
      d.patient_bid = patient_bid != nullptr
                          ? *patient_bid
                          : crypto::HexEncode(records_.PatientBlindId(rec.meta.patient_id));
      d.epoch_id = rec.meta.epoch_id;
      d.expires_on = FormatDay(*t.expires);
      d.reason = t.reason;
      if (apply) {
        uint32_t moved = 0;
        if (latest > 1) {
          // Every version under the one epoch that is erased.
          storage::WriteBatch batch;
          PV_ASSIGN_OR_RETURN(moved, records_.StageRewrap(record_id, rec.meta.epoch_id, batch));
          if (moved > 0) PV_RETURN_IF_ERROR(store_.Write(batch, /*sync=*/true));
        }
        if (stored && moved == 0) {
          d.fingerprints = std::move(stored->fingerprints);
        } else {
          PV_ASSIGN_OR_RETURN(d.fingerprints, records_.Fingerprints(record_id, latest));
        }
      }
      out.doomed = std::move(d);
      return out;
    }
    out.held = t.outcome == "held";
    out.rewrapped = !out.held;
    if (apply) {
      PV_ASSIGN_OR_RETURN(std::string epoch, EpochToHold(t, rec.meta.epoch_id));
      storage::WriteBatch batch;
      PV_ASSIGN_OR_RETURN(uint32_t moved, records_.StageRewrap(record_id, epoch, batch));
      if (moved > 0) PV_RETURN_IF_ERROR(store_.Write(batch, /*sync=*/true));
    }
    return out;
  }

  // RecheckLocked for every record of `ids` (under its stripe lock) on two threads, reporting
  // the "recheck" phase; a record already shredded is left out (nullopt).
  StatusOr<std::vector<std::optional<Recheck>>> RecheckAll(
      const std::vector<std::string>& ids, std::chrono::year_month_day until,
      const std::set<std::string>& doomed_epochs, bool apply, const Report& report) {
    std::vector<std::optional<Recheck>> checks(ids.size());
    // Open before pass 1 reads any record, so that pass 2 caches nothing an amendment changed
    // meanwhile; and room for every candidate patient's entry until pass 3 has read it back.
    EncounterCache::Window window = encounters_.OpenWindow();
    std::atomic<uint64_t> done{0};
    std::mutex report_mu;
    auto progress = [&] {
      // Each record counts half when opened and half when decided.
      if (const uint64_t n = ++done; n % 2000 == 0) {
        std::lock_guard<std::mutex> lock(report_mu);
        report("recheck", n / 2, ids.size());
      }
    };
    // 1. Every record read once, without its lock: the latest metadata and, for a real sweep,
    // where each version's DEK is wrapped and the fingerprints (a record already shredded stays
    // nullopt). Nothing read here goes stale unnoticed: every change that moves a record or
    // re-seals its bytes runs in a gate section, which names its patient to the watching sweep
    // (decided again under the closed gate before anything is erased), and Watch() waited for
    // the sections that began before it.
    std::vector<std::optional<Seen>> seen(ids.size());
    if (apply) {
      // In batches: every head, header and content prefix of a batch in three batched reads.
      constexpr size_t kPerBatch = 512;
      PV_RETURN_IF_ERROR(ParallelFor((ids.size() + kPerBatch - 1) / kPerBatch, [&](size_t b) {
        const size_t begin = b * kPerBatch;
        const size_t end = std::min(ids.size(), begin + kPerBatch);
        std::vector<std::string> batch(ids.begin() + begin, ids.begin() + end);
        auto reads = records_.ReadLatestForSweep(batch);
        for (size_t i = begin; i < end; ++i) {
          auto& read = reads[i - begin];
          if (read.ok()) {
            seen[i] = Seen{std::move(read->meta), std::move(read->stored)};
          } else if (!IsShredded(read.status())) {
            return read.status();
          }
          progress();
        }
        return Status::Ok();
      }));
    } else {
      PV_RETURN_IF_ERROR(ParallelFor(ids.size(), [&](size_t i) -> Status {
        auto latest = records_.LatestVersion(ids[i]);
        auto rec = latest.ok() ? records_.ReadVersion(ids[i], *latest, false)
                               : StatusOr<storage::Record>(latest.status());
        if (rec.ok()) {
          seen[i] = Seen{std::move(rec->meta), std::nullopt};
        } else if (!IsShredded(rec.status())) {
          return rec.status();
        }
        progress();
        return Status::Ok();
      }));
    }
    // 2. The encounter cache of each of their patients, reading only the records not opened
    // above (the patient's later encounters may keep these longer).
    struct Opened {
      std::vector<std::string_view> ids;  // into `ids`: sorted, as `ids` is
      std::optional<std::chrono::year_month_day> last;
      std::optional<std::chrono::year_month_day> all;  // over every stored record (pass 2)
      std::string bid;                                 // the patient's blind id, hex (pass 2)
    };
    std::unordered_map<std::string, Opened> by_patient;
    by_patient.reserve(ids.size() / 4 + 16);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!seen[i]) continue;
      Opened& o = by_patient[seen[i]->meta.patient_id];
      o.ids.push_back(ids[i]);
      MergeDay(o.last, ParseDay(seen[i]->meta.encounter_date));
    }
    std::vector<std::pair<const std::string, Opened>*> patients;
    patients.reserve(by_patient.size());
    window.Reserve(by_patient.size());
    for (auto& entry : by_patient) patients.push_back(&entry);
    PV_RETURN_IF_ERROR(ParallelFor(patients.size(), [&](size_t p) -> Status {
      auto& [patient_id, opened] = *patients[p];
      opened.bid = crypto::HexEncode(records_.PatientBlindId(patient_id));
      if (auto known = encounters_.Lookup(patient_id)) {
        opened.all = *known;
      } else {
        const EncounterCache::Fill fill = window.Begin(patient_id);
        PV_ASSIGN_OR_RETURN(std::vector<storage::RecordMetadata> others,
                            records_.ListPatientExcept(patient_id, opened.ids));
        std::optional<std::chrono::year_month_day> last = opened.last;
        for (const auto& m : others) MergeDay(last, ParseDay(m.encounter_date));
        opened.all = encounters_.Finish(fill, last);
      }
      opened.ids = {};
      return Status::Ok();
    }));
    // Pass 3 takes each patient's latest encounter from here rather than from the shared cache
    // (one lock for everybody): an encounter stored after pass 2 came with a gate section, and
    // its patient is decided again before anything is erased.
    // 3. The decision, under each record's lock.
    Status rechecked = ParallelFor(ids.size(), [&](size_t i) -> Status {
      {
        // From what pass 1 read; a real sweep takes the lock for the re-wraps it writes, a dry
        // run writes nothing.
        std::optional<MutexLock> lock;
        if (apply) lock.emplace(StripeFor(ids[i]));
        const std::optional<std::chrono::year_month_day>* last = nullptr;
        const std::string* bid = nullptr;
        if (seen[i]) {
          if (auto it = by_patient.find(seen[i]->meta.patient_id); it != by_patient.end()) {
            last = &it->second.all;
            bid = &it->second.bid;
          }
        }
        auto checked = RecheckLocked(ids[i], until, doomed_epochs, apply,
                                     seen[i] ? &*seen[i] : nullptr, last, bid);
        if (!checked.ok()) {
          if (!IsShredded(checked.status())) return checked.status();
        } else {
          checks[i] = std::move(checked).value();
        }
      }
      seen[i].reset();
      progress();
      return Status::Ok();
    });
    PV_RETURN_IF_ERROR(rechecked);
    by_patient.clear();
    report("recheck", ids.size(), ids.size());
    return checks;
  }

  StatusOr<SweepResult> DryRunSweep(std::chrono::year_month_day until, const Report& report) {
    SweepResult r;
    r.dry_run = true;
    r.until = FormatDay(until);
    const std::vector<std::string> epochs = ExpiredDayEpochs(until);
    const std::set<std::string> epoch_set(epochs.begin(), epochs.end());
    report("plan", 0, epochs.size());
    PV_ASSIGN_OR_RETURN(std::vector<std::string> ids, RecordsIn(epochs));
    PV_ASSIGN_OR_RETURN(std::vector<std::optional<Recheck>> checks,
                        RecheckAll(ids, until, epoch_set, /*apply=*/false, report));
    for (auto& checked : checks) {
      if (!checked) continue;
      if (checked->doomed) {
        ++r.destroyed_records;
        r.destroyed_versions += checked->doomed->versions;
        r.destroyed.push_back(CandidateOf(*checked->doomed));
      } else if (checked->held) {
        ++r.held_records;
      } else {
        ++r.rewrapped_records;
      }
    }
    std::set<std::string> epochs_used;
    for (const auto& d : r.destroyed) epochs_used.insert(d.epoch_id);
    r.epochs_destroyed.assign(epochs_used.begin(), epochs_used.end());
    report("done", ids.size(), ids.size());
    return r;
  }

  StatusOr<SweepResult> RunSweep(const RequestContext& ctx, Pass& pass,
                                 std::chrono::year_month_day until, const Report& report) {
    PV_ASSIGN_OR_RETURN(std::optional<Journal> pending, LoadJournal());
    SweepResult result;
    result.dry_run = false;
    result.resumed = pending.has_value();
    Journal j;
    if (pending) {
      j = std::move(*pending);
      // A sweep that stopped before its keys were erased starts over from its recheck: what
      // changed since (records, facts, holds) is decided afresh. Once any of its keys is erased
      // (in the primary, or in any copy: Open merged the tombstones) it can only go forward.
      if (j.phase == "erase") {
        bool erased_any = false;
        for (const auto& e : j.epochs) {
          if (keyring_.GetEpoch(e).status().code() == StatusCode::kFailedPrecondition) {
            erased_any = true;
          }
        }
        if (!erased_any) j.phase = "recheck";
      }
    } else {
      j.id = storage::NewDestructionCertificateId();
      j.until = FormatDay(until);
      j.started_us = Now();
      j.phase = "recheck";
      j.principal = ctx.principal.name;
      j.user = ctx.user.empty() ? ctx.principal.name : ctx.user;
      j.role = ctx.role.empty() ? "none" : ctx.role;
    }
    const std::chrono::year_month_day j_until = *ParseDay(j.until);
    result.sweep_id = j.id;
    result.until = j.until;
    pass.entry.records = {"sweep:" + j.id};

    if (j.phase == "recheck") {
      PV_RETURN_IF_ERROR(Fault("recheck"));
      // Released holds whose keys remain (a release interrupted before it destroyed the key).
      for (const auto& h : state_.ListHolds(std::nullopt, /*include_released=*/true)) {
        if (!h.active() && keyring_.GetEpoch("h" + h.id).ok()) {
          PV_RETURN_IF_ERROR(RetireHoldEpoch(h.id));
        }
      }
      j.epochs = ExpiredDayEpochs(j_until);
      PV_RETURN_IF_ERROR(SaveJournal(j));
      gate_.Watch();
      struct Unwatch {
        RetentionGate& g;
        ~Unwatch() { g.Unwatch(); }
      } unwatch{gate_};
      const std::set<std::string> epoch_set(j.epochs.begin(), j.epochs.end());
      report("plan", 0, j.epochs.size());
      PV_ASSIGN_OR_RETURN(std::vector<std::string> ids, RecordsIn(j.epochs));
      PV_ASSIGN_OR_RETURN(std::vector<std::optional<Recheck>> checks,
                          RecheckAll(ids, j_until, epoch_set, /*apply=*/true, report));
      std::map<std::string, Doomed> doomed;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (!checks[i]) continue;
        if (checks[i]->doomed) {
          doomed.emplace(ids[i], std::move(*checks[i]->doomed));
        } else if (checks[i]->held) {
          ++j.held;
        } else {
          ++j.rewrapped;
        }
      }
      checks.clear();

      // Erasure runs alone: changes that were running finish first, and the patients they
      // touched are decided again, so no record whose retention grew meanwhile is erased.
      PV_RETURN_IF_ERROR(Fault("erase"));
      gate_.Close();
      struct Reopen {
        RetentionGate& g;
        ~Reopen() { g.Open(); }
      } reopen{gate_};
      // Only chosen records can be in the epochs being erased (nothing is ever wrapped into today
      // or earlier), so only the touched patients' chosen records are decided again.
      bool touched_all = false;
      std::set<std::string> touched = gate_.TakeTouched(&touched_all);
      if (touched_all) {
        return Unavailable(
            "sweep: the retention table changed while the sweep was deciding; nothing was "
            "erased; run the sweep again");
      }
      std::set<std::string> touched_bids;
      for (const auto& patient : touched) {
        touched_bids.insert(crypto::HexEncode(records_.PatientBlindId(patient)));
      }
      std::vector<std::string> again;
      for (const auto& [id, d] : doomed) {
        if (touched_bids.count(d.patient_bid) > 0) again.push_back(id);
      }
      for (const auto& id : again) {
        MutexLock lock(StripeFor(id));
        auto checked = RecheckLocked(id, j_until, epoch_set, /*apply=*/true);
        if (!checked.ok()) {
          if (IsShredded(checked.status())) continue;
          return checked.status();
        }
        if (checked->doomed) {
          doomed.insert_or_assign(id, std::move(*checked->doomed));
        } else {
          doomed.erase(id);
        }
      }
      storage::WriteBatch batch;
      PV_RETURN_IF_ERROR(StageDoomed(doomed, j, batch));
      j.phase = "erase";
      PV_RETURN_IF_ERROR(SaveJournal(j, std::move(batch)));
      // No progress is reported while the gate is closed: a slow reader of the progress stream
      // must not hold up everybody's writes.
      if (!j.epochs.empty()) {
        Status erased = keyring_.DestroyEpochs(j.epochs);
        if (!erased.ok()) {
          return Unavailable("sweep step erase: " + erased.message() +
                             "; no certificate was issued and the next sweep completes it");
        }
      }
    }
    report("erase", j.epochs.size(), j.epochs.size());
    PV_ASSIGN_OR_RETURN(std::vector<Doomed> doomed, LoadDoomed(j));

    if (j.phase == "erase") {
      // Only day epochs up to the journal's day, which may not be after today.
      if (std::chrono::sys_days(j_until) > std::chrono::sys_days(DayOf(Now()))) {
        return DataLoss("the sweep journal's day is in the future");
      }
      for (const auto& e : j.epochs) {
        auto day = EpochDay(e);
        if (!day || std::chrono::sys_days(*day) > std::chrono::sys_days(j_until)) {
          return DataLoss("the sweep journal names epoch " + e + ", which it may not erase");
        }
      }
      // Resumed after the erasure began: finish it in every copy.
      if (!j.epochs.empty()) {
        Status erased = keyring_.DestroyEpochs(j.epochs);
        if (!erased.ok()) {
          return Unavailable("sweep step erase: " + erased.message() +
                             "; no certificate was issued and the next sweep completes it");
        }
      }
      // Verification 1: no destroyed record version decrypts any more. A record that moved to a
      // live epoch after an interrupted sweep (a hold, a new encounter) is not destroyed.
      PV_RETURN_IF_ERROR(Fault("verify-erase"));
      std::vector<char> gone(doomed.size(), 0);
      std::atomic<uint64_t> done{0};
      std::mutex report_mu;
      // In batches (one batched read of heads and one of versions each). Without the records'
      // locks: a version can be added only by opening the one before, which nothing can do for a
      // record whose keys are destroyed, and a record that still opens is not certified anyway.
      constexpr size_t kPerBatch = 512;
      const size_t batches = (doomed.size() + kPerBatch - 1) / kPerBatch;
      Status verified = ParallelFor(batches, [&](size_t b) -> Status {
        const size_t begin = b * kPerBatch;
        const size_t end = std::min(doomed.size(), begin + kPerBatch);
        std::vector<std::string> ids;
        ids.reserve(end - begin);
        for (size_t i = begin; i < end; ++i) ids.push_back(doomed[i].record_id);
        // The heads are authenticated without any epoch key: every version they count is checked
        // and certified, whatever the recheck saw.
        auto checked = records_.CheckErased(ids);
        if (!checked.ok()) {
          if (checked.status().code() != StatusCode::kDataLoss) return checked.status();
          return DataLoss("sweep verification: " + checked.status().message());
        }
        for (size_t i = begin; i < end; ++i) {
          Doomed& d = doomed[i];
          const auto& c = (*checked)[i - begin];
          if (c.latest != d.versions) {
            d.versions = c.latest;
            PV_ASSIGN_OR_RETURN(d.fingerprints, records_.Fingerprints(d.record_id, c.latest));
          }
          gone[i] = c.erased ? 1 : 0;
        }
        const uint64_t n = done += end - begin;
        std::lock_guard<std::mutex> lock(report_mu);
        report("verify", n, doomed.size());
        return Status::Ok();
      });
      PV_RETURN_IF_ERROR(verified);
      std::vector<Doomed> confirmed;
      storage::WriteBatch batch;
      for (size_t i = 0; i < doomed.size(); ++i) {
        if (gone[i]) {
          confirmed.push_back(std::move(doomed[i]));
        } else {
          ++j.rewrapped;
        }
      }
      doomed = std::move(confirmed);
      for (const auto& e : j.epochs) {
        auto key = keyring_.GetEpoch(e);
        if (key.ok() || key.status().code() != StatusCode::kFailedPrecondition) {
          return DataLoss("sweep verification: epoch key " + e + " is not destroyed");
        }
      }
      PV_RETURN_IF_ERROR(StageDoomed(doomed, j, batch));
      j.phase = "delete";
      PV_RETURN_IF_ERROR(SaveJournal(j, std::move(batch)));
    }

    // The deletes below are compacted once, by the compact step: compacting them as they are
    // flushed too would rewrite most of the database twice. Resumed once the compact step is
    // done or the sweep stops (a restart resumes them as well). Only a speed-up: a store that
    // cannot pause them is swept all the same.
    struct CompactionPause {
      storage::Store& store;
      bool paused = false;
      void Resume() {
        if (paused) paused = !store.SetAutoCompactions(true).ok();
      }
      ~CompactionPause() { Resume(); }
    } compaction_pause{store_};
    if (j.phase == "delete") {
      compaction_pause.paused = store_.SetAutoCompactions(false).ok();
      PV_RETURN_IF_ERROR(Fault("delete"));
      const int64_t now = Now();
      // The erased epochs' indexes go whole, one range each: every version left in them belongs
      // to a record that no longer opens (one moved out took its index entry with it).
      // Every write of this step is unlogged (no WAL: millions of small deletes, which would
      // also make the WAL's size limit flush every family over and over), and the flush below
      // makes it durable before the journal moves on. A crash before that loses only writes that
      // the journal, still at "delete", makes the next sweep repeat.
      storage::WriteBatch indexes;
      for (const auto& e : j.epochs) PV_RETURN_IF_ERROR(records_.StageEpochIndexErase(e, indexes));
      indexes.set_unlogged(true);
      PV_RETURN_IF_ERROR(store_.Write(indexes, /*sync=*/false));
      constexpr size_t kPerTask = 2048;
      const size_t tasks = (doomed.size() + kPerTask - 1) / kPerTask;
      // Records in the order of their stored keys (the raw id bytes, not the id's text), and each
      // batch's keys sorted: the memtable then takes most keys right after the one before
      // (its skip list reuses the last insert's position) instead of searching for each.
      std::vector<std::pair<std::string, size_t>> order;
      order.reserve(doomed.size());
      for (size_t i = 0; i < doomed.size(); ++i) {
        PV_ASSIGN_OR_RETURN(std::string raw, crypto::Base64UrlDecode(doomed[i].record_id));
        order.emplace_back(std::move(raw), i);
      }
      std::sort(order.begin(), order.end());
      std::atomic<uint64_t> done{0};
      std::mutex report_mu;
      Status deleted = ParallelFor(tasks, [&](size_t t) -> Status {
        storage::WriteBatch staged;
        const size_t end = std::min(doomed.size(), (t + 1) * kPerTask);
        for (size_t k = t * kPerTask; k < end; ++k) {
          const Doomed& d = doomed[order[k].second];
          // The read-back above counted its versions from the head after the erasure.
          PV_ASSIGN_OR_RETURN(std::string bid, crypto::HexDecode(d.patient_bid));
          MutexLock lock(StripeFor(d.record_id));
          PV_RETURN_IF_ERROR(
              records_.StageShredErased(d.record_id, d.versions, bid, j.id, now, staged));
        }
        // Every key occurs once (distinct records), so the order within the batch is free.
        staged.SortByKey();
        staged.set_unlogged(true);
        PV_RETURN_IF_ERROR(store_.Write(staged, /*sync=*/false));
        const uint64_t n = done += end - t * kPerTask;
        std::lock_guard<std::mutex> lock(report_mu);
        report("delete", n, doomed.size());
        return Status::Ok();
      });
      PV_RETURN_IF_ERROR(deleted);
      if (Status flushed = store_.Flush(); !flushed.ok()) {
        return Unavailable("sweep step delete: " + flushed.message() +
                           "; no certificate was issued and the next sweep completes it");
      }
      j.phase = "compact";
      PV_RETURN_IF_ERROR(SaveJournal(j));
    }

    if (j.phase == "compact") {
      PV_RETURN_IF_ERROR(Fault("compact"));
      report("compact", 0, 1);
      if (Status s = store_.CompactAll(); !s.ok()) {
        return Unavailable("sweep step compact: " + s.message() +
                           "; the keys are erased, but no certificate was issued and the next "
                           "sweep completes it");
      }
      compaction_pause.Resume();
      report("compact", 1, 1);
      j.phase = "verify";
      PV_RETURN_IF_ERROR(SaveJournal(j));
    }

    if (j.phase == "verify") {
      PV_RETURN_IF_ERROR(Fault("verify"));
      std::vector<std::string> needles;
      for (const auto& d : doomed) {
        for (const auto& f : d.fingerprints) needles.push_back(f);
      }
      report("verify", 0, needles.size());
      uint64_t versions = 0;
      for (const auto& d : doomed) versions += d.versions;
      // Every record reads as destroyed (no head, an authentic tombstone), in batches on two
      // threads.
      constexpr size_t kPerCheck = 4096;
      PV_RETURN_IF_ERROR(
          ParallelFor((doomed.size() + kPerCheck - 1) / kPerCheck, [&](size_t b) -> Status {
            const size_t begin = b * kPerCheck;
            const size_t end = std::min(doomed.size(), begin + kPerCheck);
            std::vector<std::string> batch;
            batch.reserve(end - begin);
            for (size_t i = begin; i < end; ++i) batch.push_back(doomed[i].record_id);
            PV_ASSIGN_OR_RETURN(std::vector<bool> shredded, records_.ReadAsShredded(batch));
            for (size_t i = 0; i < batch.size(); ++i) {
              if (shredded[i]) continue;
              return DataLoss("sweep verification: record " + batch[i] +
                              " does not read as destroyed");
            }
            return Status::Ok();
          }));
      const std::string db_dir = config_.data_dir + "/db";
      if (!needles.empty()) {
        PV_ASSIGN_OR_RETURN(std::vector<storage::FileHit> hits,
                            storage::FindInFiles(db_dir, needles));
        if (!hits.empty()) {
          return DataLoss(
              "sweep verification failed: ciphertext of a destroyed record is still "
              "in " +
              hits.front().path +
              " after compaction; no certificate was issued and the next sweep "
              "retries");
        }
      }
      report("verify", needles.size(), needles.size());
      j.verification_result = "passed: none of the " + std::to_string(versions) +
                              " destroyed record versions decrypts; none of their " +
                              std::to_string(needles.size()) +
                              " ciphertext fingerprints is in any live database file";
      j.phase = "audit";
      PV_RETURN_IF_ERROR(SaveJournal(j));
    }

    uint64_t audit_first = 0;
    uint64_t audit_last = 0;
    if (j.phase == "audit") {
      PV_RETURN_IF_ERROR(Fault("audit"));
      PV_RETURN_IF_ERROR(WriteShredEntries(ctx, j, doomed, report));
      j.phase = "certificate";
      PV_RETURN_IF_ERROR(SaveJournal(j));
    }
    if (j.phase != "certificate") return DataLoss("the sweep journal names an unknown phase");
    PV_RETURN_IF_ERROR(Fault("certificate"));
    PV_RETURN_IF_ERROR(ShredEntryRange(j.id, audit_first, audit_last));

    result.rewrapped_records = j.rewrapped;
    result.held_records = j.held;
    result.epochs_destroyed = j.epochs;
    result.verification_result = j.verification_result;
    std::sort(doomed.begin(), doomed.end(),
              [](const Doomed& a, const Doomed& b) { return a.record_id < b.record_id; });
    for (const auto& d : doomed) {
      ++result.destroyed_records;
      result.destroyed_versions += d.versions;
      if (result.destroyed.size() < 1000) result.destroyed.push_back(CandidateOf(d));
    }
    if (!doomed.empty()) {
      report("certificate", 0, 1);
      storage::DestructionCertificate cert;
      cert.id = j.id;
      cert.principal = j.principal;
      cert.user = j.user;
      cert.role = j.role;
      cert.started_unix_us = j.started_us;
      cert.finished_unix_us = std::max(Now(), j.started_us);
      // Only the epochs that held what is certified are named; empty days are erased too.
      std::set<std::string> used;
      for (const auto& d : doomed) used.insert(d.epoch_id);
      cert.epoch_ids.assign(used.begin(), used.end());
      cert.media = "vault database " + config_.data_dir + "/db and keyring copies (" +
                   std::to_string(1 + config_.keyring_mirrors.size()) + ")";
      for (const auto& d : doomed) {
        for (uint32_t v = 1; v <= d.versions; ++v) {
          cert.records.push_back({d.record_id, v, d.category, d.patient_bid});
        }
      }
      cert.verification =
          "each destroyed record version read back through the vault (its DEK must not unwrap "
          "once its epoch key is destroyed in every keyring copy); a byte search of every live "
          "database file for each version's sealed content, sealed metadata and wrapped DEK "
          "after deletion and forced compaction";
      cert.verification_result = j.verification_result;
      cert.tool_name = "phivaultd";
      cert.tool_version = PHIVAULT_VERSION;
      cert.audit_seq_first = audit_first;
      cert.audit_seq_last = audit_last;
      PV_ASSIGN_OR_RETURN(
          std::string note,
          storage::SignDestructionCertificate(cert, keyring_.audit_signer(), config_.audit_origin));
      const storage::DestructionCounts counts = storage::CountDestroyed(cert);
      pass.batch.Put(storage::Cf::kState, std::string(kCertPrefix) + j.id, note);
      pass.batch.Put(storage::Cf::kState, std::string(kCertSummaryPrefix) + j.id,
                     nlohmann::json{{"id", j.id},
                                    {"started_us", cert.started_unix_us},
                                    {"finished_us", cert.finished_unix_us},
                                    {"records", counts.records},
                                    {"versions", counts.versions},
                                    {"patients", counts.patients},
                                    {"epoch_ids", cert.epoch_ids}}
                         .dump());
      result.certificate_id = j.id;
      report("certificate", 1, 1);
    }
    // The journal goes with the summary entry, in one batch: a sweep is finished exactly once.
    pass.batch.Delete(storage::Cf::kState, std::string(kJournalKey));
    PV_RETURN_IF_ERROR(StageDeletePrefix(kDoomedPrefix, pass.batch));
    PV_RETURN_IF_ERROR(StageDeletePrefix(kShredMarkPrefix, pass.batch));
    report("done", 1, 1);
    return result;
  }

  // One record.shred entry per patient, each with a marker in its batch so that a resumed
  // sweep writes none twice. Several writers at once let the ledger group them.
  Status WriteShredEntries(const RequestContext& ctx, const Journal& j,
                           const std::vector<Doomed>& doomed, const Report& report) {
    std::map<std::string, std::vector<const Doomed*>> by_patient;
    for (const auto& d : doomed) by_patient[d.patient_bid].push_back(&d);
    std::vector<std::pair<std::string, std::vector<const Doomed*>>> todo;
    for (auto& [bid, list] : by_patient) {
      PV_ASSIGN_OR_RETURN(auto mark,
                          store_.Get(storage::Cf::kState, std::string(kShredMarkPrefix) + bid));
      if (!mark) todo.emplace_back(bid, std::move(list));
    }
    // The entries go to the ledger in chunks, each one group (one write, one sync): one commit per
    // entry from many threads spent most of this step waking and waiting (docs/benchmarks.md).
    // A few writers keep the next chunk ready while the ledger writes the one before.
    constexpr size_t kPerChunk = 256;
    const size_t chunks = (todo.size() + kPerChunk - 1) / kPerChunk;
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> done{0};
    std::mutex err_mu;
    Status error;
    auto fail = [&](const Status& s) {
      std::lock_guard<std::mutex> lock(err_mu);
      if (error.ok()) error = s;
    };
    auto worker = [&] {
      for (size_t c = next++; c < chunks; c = next++) {
        const size_t begin = c * kPerChunk;
        const size_t end = std::min(todo.size(), begin + kPerChunk);
        std::vector<std::pair<storage::WriteBatch, storage::AuditEntry>> commits;
        commits.reserve(end - begin);
        for (size_t i = begin; i < end; ++i) {
          storage::AuditEntry e = NewEntry(ctx, "record.shred");
          e.patient_bid = todo[i].first;
          for (const Doomed* d : todo[i].second) {
            e.records.push_back(d->record_id + "@1-" + std::to_string(d->versions));
          }
          e.reason = "retention expired; certificate " + j.id;
          storage::WriteBatch batch;
          batch.Put(storage::Cf::kState, std::string(kShredMarkPrefix) + todo[i].first, "");
          commits.emplace_back(std::move(batch), std::move(e));
        }
        // A marker's value is its entry's seq, which the ledger assigns: written after.
        std::vector<StatusOr<uint64_t>> seqs = ledger_.CommitAll(std::move(commits));
        storage::WriteBatch marks;
        for (size_t i = begin; i < end; ++i) {
          const StatusOr<uint64_t>& seq = seqs[i - begin];
          if (!seq.ok()) {
            fail(seq.status().code() == StatusCode::kResourceExhausted
                     ? seq.status()
                     : Unavailable("the audit log could not be written; nothing was done"));
            return;
          }
          marks.Put(storage::Cf::kState, std::string(kShredMarkPrefix) + todo[i].first,
                    std::to_string(*seq));
        }
        if (Status s = store_.Write(marks, /*sync=*/false); !s.ok()) {
          fail(s);
          return;
        }
        const uint64_t n = done += end - begin;
        std::lock_guard<std::mutex> lock(err_mu);
        report("audit", n, todo.size());
      }
    };
    std::vector<std::thread> threads;
    const size_t n_threads = std::min<size_t>(4, chunks);
    for (size_t t = 0; t < n_threads; ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    if (!error.ok()) {
      return Unavailable("sweep step audit: " + error.message() +
                         "; no certificate was issued and the next sweep completes it");
    }
    report("audit", todo.size(), todo.size());
    return Status::Ok();
  }

  // The range of the sweep's record.shred entries, from their markers. A marker whose seq was
  // not recorded (a crash right after its entry was committed) is found in the patient's audit
  // chain.
  Status ShredEntryRange(const std::string& sweep_id, uint64_t& first, uint64_t& last) {
    first = 0;
    last = 0;
    std::vector<std::pair<std::string, std::string>> marks;
    PV_RETURN_IF_ERROR(store_.Scan(
        storage::Cf::kState, kShredMarkPrefix, PrefixEnd(kShredMarkPrefix),
        [&](std::string_view key, std::string_view value) {
          marks.emplace_back(std::string(key.substr(kShredMarkPrefix.size())), std::string(value));
          return true;
        }));
    for (const auto& [bid, value] : marks) {
      uint64_t seq = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), seq);
      if (value.empty() || ec != std::errc() || p != value.data() + value.size()) {
        seq = 0;
        auto raw = crypto::HexDecode(bid);
        if (!raw.ok()) return DataLoss("a sweep audit marker is malformed");
        const std::string reason = "retention expired; certificate " + sweep_id;
        PV_RETURN_IF_ERROR(storage::ScanPatientAuditEntries(
            store_, *raw, [&](const storage::AuditEntry& e, std::string_view) {
              if (e.action == "record.shred" && e.reason == reason) seq = e.seq;
              return Status::Ok();
            }));
        if (seq == 0) return DataLoss("a sweep's record.shred entry is missing from the log");
      }
      if (first == 0 || seq < first) first = seq;
      last = std::max(last, seq);
    }
    return Status::Ok();
  }

 public:
  Status Start() {
    PV_RETURN_IF_ERROR(state_.Load());
    PV_RETURN_IF_ERROR(InstallPolicy(nullptr, std::atomic_load(&policy_)).status());
    auto retention = std::atomic_load(&retention_);
    if (retention == nullptr) {
      PV_ASSIGN_OR_RETURN(LoadedRetention loaded, LoadRetention(config_));
      retention = std::make_shared<const LoadedRetention>(std::move(loaded));
    }
    PV_RETURN_IF_ERROR(InstallRetention(nullptr, std::move(retention)));
    return CloseExpiredBreakGlass();
  }

  // Puts a retention table in force. The first table, and every change, is audited
  // (retention.load, reason "sha256:<hex> <source>") and kept; a table that would shorten any
  // category's retention against the one in force is refused (FailedPrecondition naming each
  // shortening) and changes nothing. After a change every record is re-settled (its DEKs
  // re-wrapped where its expiry moved; content is never re-encrypted).
  Status InstallRetention(const RequestContext* ctx, std::shared_ptr<const LoadedRetention> next) {
    PV_ASSIGN_OR_RETURN(auto sealed, store_.Get(storage::Cf::kState, kRetentionTableKey));
    std::optional<LoadedRetention> previous;
    if (sealed) {
      PV_ASSIGN_OR_RETURN(std::string stored, OpenStateValue(kRetentionTableKey, *sealed,
                                                             "the stored retention table"));
      auto j = nlohmann::json::parse(stored, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j.contains("source") ||
          !j["text"].is_string() || !j["source"].is_string()) {
        return DataLoss("the stored retention table is malformed");
      }
      auto parsed =
          ParseRetention(config_, j["source"].get<std::string>(), j["text"].get<std::string>());
      if (!parsed.ok()) {
        return FailedPrecondition(
            "the retention table in force no longer validates against this configuration (" +
            parsed.status().message() +
            "): a category it covers was removed? Records of it would lose their retention");
      }
      previous = std::move(parsed).value();
    }
    if (previous && previous->sha256_hex == next->sha256_hex) {
      std::atomic_store(&retention_, std::move(next));
      return Status::Ok();
    }
    if (previous) {
      const auto shortenings = policies::FindShortenings(*previous->table, *next->table);
      if (!shortenings.empty()) {
        std::string why;
        for (const auto& sh : shortenings) {
          why += (why.empty() ? "" : "; ") + sh.category + ": " + sh.reason;
        }
        return FailedPrecondition("retention table " + next->source +
                                  " would shorten the retention in force (" + previous->source +
                                  "), which no one may do: " + why);
      }
    }
    RetentionGate::Section section = gate_.Enter({});
    // Every record's retention may grow: a sweep watching must not erase what it decided under
    // the table before (it stops before erasing; the next sweep decides afresh).
    gate_.TouchAll();
    storage::WriteBatch batch;
    batch.Put(storage::Cf::kState, std::string(kRetentionTableKey),
              SealStateValue(kRetentionTableKey, nlohmann::json{{"source", next->source},
                                                                {"sha256", next->sha256_hex},
                                                                {"text", next->text},
                                                                {"from_us", Now()}}
                                                     .dump()));
    storage::AuditEntry e;
    if (ctx != nullptr) {
      e = NewEntry(*ctx, "retention.load");
    } else {
      e.application = "phivaultd";
      e.action = "retention.load";
      e.outcome = "success";
    }
    e.reason = "sha256:" + next->sha256_hex + " " + next->source;
    PV_RETURN_IF_ERROR(CommitWithEntry(std::move(batch), std::move(e)).status());
    std::atomic_store(&retention_, next);
    spdlog::info("retention: table {} ({}) in force", next->source, next->sha256_hex.substr(0, 12));
    if (previous) return ResettleAll();
    return Status::Ok();
  }

  // The configuration's retention file again, with the access policy (reload, SIGHUP).
  Status ReloadRetention(const RequestContext* ctx) {
    auto loaded = LoadRetention(config_);
    Status s = loaded.ok() ? InstallRetention(
                                 ctx, std::make_shared<const LoadedRetention>(std::move(*loaded)))
                           : loaded.status();
    if (s.ok()) return s;
    return Status(s.code() == StatusCode::kDataLoss ? s.code() : StatusCode::kInvalidArgument,
                  "the access policy was reloaded, but the retention table was not (the one in "
                  "force stays): " +
                      s.message());
  }

  // Every record moved to the epoch its retention now calls for, a batch at a time.
  Status ResettleAll() {
    std::vector<std::string> epochs;
    for (const auto& e : keyring_.ListEpochs()) {
      if (!e.destroyed) epochs.push_back(e.id);
    }
    PV_ASSIGN_OR_RETURN(std::vector<std::string> ids, RecordsIn(epochs));
    storage::WriteBatch batch;
    uint64_t moved_records = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      {
        MutexLock lock(StripeFor(ids[i]));
        auto latest = records_.LatestVersion(ids[i]);
        if (!latest.ok()) {
          if (IsShredded(latest.status())) continue;
          return latest.status();
        }
        PV_ASSIGN_OR_RETURN(storage::Record rec, records_.ReadVersion(ids[i], *latest, false));
        PV_ASSIGN_OR_RETURN(RetentionTarget t, TargetFor(rec.meta));
        PV_ASSIGN_OR_RETURN(std::string epoch, EpochToHold(t, rec.meta.epoch_id));
        PV_ASSIGN_OR_RETURN(uint32_t moved, records_.StageRewrap(ids[i], epoch, batch));
        if (moved > 0) ++moved_records;
      }
      if (batch.ops().size() >= kSweepBatch * 4 || (i + 1 == ids.size() && !batch.empty())) {
        PV_RETURN_IF_ERROR(store_.Write(batch, /*sync=*/true));
        batch = storage::WriteBatch();
      }
    }
    spdlog::info("retention: {} of {} records re-wrapped under a new epoch", moved_records,
                 ids.size());
    return Status::Ok();
  }

  StatusOr<PolicyInfo> ReloadPolicy(const RequestContext* ctx) override {
    if (ctx != nullptr) {
      // A person or application asking: guarded like everything else, and a bad file is
      // audited as the request's error.
      std::shared_ptr<const policies::AccessPolicy> loaded;
      auto admitted = Guarded<bool>(*ctx, "policy.reload", "admin", [&](Pass&) -> StatusOr<bool> {
        auto l = LoadAccessPolicy(config_);
        if (!l.ok()) {
          return InvalidArgument(std::string(kInvalidPolicyMessage) + ": " + l.status().message());
        }
        loaded = std::move(l).value();
        return true;
      });
      if (!admitted.ok()) return admitted.status();
      PV_ASSIGN_OR_RETURN(PolicyInfo info, InstallPolicy(ctx, std::move(loaded)));
      PV_RETURN_IF_ERROR(ReloadRetention(ctx));
      return info;
    }
    auto l = LoadAccessPolicy(config_);
    if (!l.ok()) {
      // The daemon's own attempt (SIGHUP) is on the record too, like a requester's.
      storage::AuditEntry e;
      e.application = "phivaultd";
      e.action = "policy.reload";
      e.outcome = "error";
      e.reason = "invalid_argument";
      if (Status s = CommitWithEntry({}, std::move(e)).status(); !s.ok()) return s;
      return InvalidArgument(std::string(kInvalidPolicyMessage) + ": " + l.status().message());
    }
    PV_ASSIGN_OR_RETURN(PolicyInfo info, InstallPolicy(nullptr, std::move(l).value()));
    PV_RETURN_IF_ERROR(ReloadRetention(nullptr));
    return info;
  }

  StatusOr<PolicyInfo> PolicyAt(const RequestContext& ctx,
                                std::optional<int64_t> at_unix_us) override {
    PV_RETURN_IF_ERROR(AuthorizeUnaudited(ctx, "policy.show", "policy"));
    const int64_t at = at_unix_us.value_or(Now());
    auto version = state_.PolicyAt(at);
    if (!version) return NotFound("no policy was in force at that time");
    PolicyInfo info = InfoOf(*version);
    info.text = version->text;
    return info;
  }

  StatusOr<std::vector<PolicyInfo>> PolicyHistory(const RequestContext& ctx) override {
    PV_RETURN_IF_ERROR(AuthorizeUnaudited(ctx, "policy.show", "policy"));
    std::vector<PolicyInfo> out;
    for (const auto& v : state_.PolicyHistory()) out.push_back(InfoOf(v));
    return out;
  }

  StatusOr<PolicyCheckResult> CheckPolicy(const RequestContext& ctx,
                                          const PolicyCheckRequest& req) override {
    return Guarded<PolicyCheckResult>(
        ctx, "policy.check", "policy", [&](Pass& pass) -> StatusOr<PolicyCheckResult> {
          if (!policies::IsPolicyAction(req.action)) {
            std::string known;
            for (auto a : policies::PolicyActions())
              known += (known.empty() ? "" : ", ") + std::string(a);
            return InvalidArgument("field 'action' must be one of: " + known);
          }
          if (!policies::LookupPurposeOfUse(req.purpose)) {
            return InvalidArgument("field 'purpose' is not an HL7 PurposeOfUse code");
          }
          RequestContext as = ctx;
          as.user = req.as_user;
          as.role = req.role;
          as.purpose = req.purpose;
          as.consent = req.consent ? "check" : "";
          as.break_glass_reason = req.break_glass ? "check" : "";
          PolicyCheckResult out;
          storage::RecordMetadata subject;
          const storage::RecordMetadata* record = nullptr;
          if (policies::IsRecordAction(req.action)) {
            if (req.record_id) {
              if (!storage::IsValidRecordId(*req.record_id)) {
                return InvalidArgument("record id is malformed");
              }
              uint32_t v = 0;
              if (req.version) {
                v = *req.version;
              } else {
                PV_ASSIGN_OR_RETURN(v, records_.LatestVersion(*req.record_id));
              }
              PV_ASSIGN_OR_RETURN(storage::Record r,
                                  records_.ReadVersion(*req.record_id, v, /*with_content=*/false));
              subject = std::move(r.meta);
              AttachPatient(pass, subject.patient_id);
              pass.entry.records = {*req.record_id + "@" + std::to_string(v)};
            } else if (req.category) {
              PV_RETURN_IF_ERROR(ValidateCategory(*req.category));
              subject.category = *req.category;
              if (req.author) subject.created_by = req.as_user;
            } else {
              return InvalidArgument(
                  "a record action is decided on a record: give record_id or category");
            }
            record = &subject;
          }
          // The check itself must not open or count a break-glass window.
          const Verdict v = Decide(pass, as, req.action, record);
          out.allowed = v.allowed;
          out.rule = v.rule;
          out.explanation =
              v.allowed ? "allowed by rule '" + v.rule + "' of policy '" + pass.policy->name() + "'"
                        : v.explanation;
          out.category = subject.category;
          out.is_author =
              record != nullptr && !subject.created_by.empty() && subject.created_by == req.as_user;
          pass.phi["checked"] = {{"user", req.as_user},    {"role", req.role},
                                 {"purpose", req.purpose}, {"action", req.action},
                                 {"allowed", v.allowed},   {"rule", v.rule}};
          return out;
        });
  }

  // ---- Break-glass review

  StatusOr<std::vector<BreakGlassWindow>> ReviewBreakGlass(const RequestContext& ctx,
                                                           bool pending_only) override {
    PV_RETURN_IF_ERROR(CloseExpiredBreakGlass());
    return Guarded<std::vector<BreakGlassWindow>>(
        ctx, "audit.review", "review", [&](Pass& pass) -> StatusOr<std::vector<BreakGlassWindow>> {
          auto list = state_.ListWindows(pending_only);
          for (const auto& w : list) pass.entry.records.push_back("window:" + w.id);
          return list;
        });
  }

  StatusOr<std::pair<BreakGlassWindow, uint64_t>> SignOffBreakGlass(
      const RequestContext& ctx, const std::string& window_id, const std::string& note) override {
    PV_RETURN_IF_ERROR(CloseExpiredBreakGlass());
    return Guarded<std::pair<BreakGlassWindow, uint64_t>>(
        ctx, "audit.sign-off", "review",
        [&](Pass& pass) -> StatusOr<std::pair<BreakGlassWindow, uint64_t>> {
          pass.entry.records = {"window:" + window_id};
          MutexLock lock(state_mu_);
          auto window = state_.GetWindow(window_id);
          if (!window) return NotFound("no such break-glass window");
          AttachPatient(pass, window->patient_id);
          PV_ASSIGN_OR_RETURN(BreakGlassWindow signed_off,
                              state_.StageSignOff(window_id, ctx.user, note, Now(), pass.batch));
          pass.phi["note"] = note;
          pass.after_commit.push_back([this, signed_off] { state_.ApplyWindow(signed_off); });
          PV_RETURN_IF_ERROR(CommitPass(pass));
          return std::make_pair(signed_off, pass.entry.seq);
        });
  }

  Status CloseExpiredBreakGlass() override {
    const int64_t now = Now();
    const std::vector<BreakGlassWindow> expired = state_.TakeExpired(now);
    // On a failure, this window and the ones not reached yet go back to a later call.
    auto release_from = [&](size_t first) {
      for (size_t j = first; j < expired.size(); ++j) state_.ReleaseExpired(expired[j].id);
    };
    for (size_t i = 0; i < expired.size(); ++i) {
      const BreakGlassWindow& w = expired[i];
      MutexLock lock(state_mu_);
      storage::WriteBatch batch;
      auto closed = state_.StageCloseWindow(w.id, std::min(now, w.expires_us), batch);
      if (!closed.ok()) {
        release_from(i);
        return closed.status();
      }
      storage::AuditEntry end;
      end.application = "phivaultd";
      end.action = "breakglass.end";
      end.outcome = "success";
      end.reason = "expired";
      end.user = w.user;
      end.role = w.role;
      end.break_glass = true;
      end.records = {"window:" + w.id};
      end.patient_bid = crypto::HexEncode(records_.PatientBlindId(w.patient_id));
      SealPhi(end, {{"patient_id", w.patient_id},
                    {"break_glass_reason", w.reason},
                    {"accesses", closed->accesses}});
      auto seq = CommitWithEntry(std::move(batch), std::move(end));
      if (!seq.ok()) {
        release_from(i);
        return seq.status();
      }
      state_.ApplyWindow(*closed);
    }
    return Status::Ok();
  }

  // ---- Patient rights

  StatusOr<std::pair<Restriction, uint64_t>> AddRestriction(const RequestContext& ctx,
                                                            Restriction draft) override {
    return GuardedFor<std::pair<Restriction, uint64_t>>(
        ctx, "restriction.add", "restrict", draft.patient_id,
        [&](Pass& pass) -> StatusOr<std::pair<Restriction, uint64_t>> {
          if (ValidatePatientId(draft.patient_id).ok()) AttachPatient(pass, draft.patient_id);
          PV_RETURN_IF_ERROR(ValidatePatientId(draft.patient_id));
          for (const auto& c : draft.categories) PV_RETURN_IF_ERROR(ValidateCategory(c));
          // A restriction naming a record that is not the patient's would refuse nothing. The
          // answer is the same whether or not the record exists.
          for (const std::string& id : draft.record_ids) {
            if (!storage::IsValidRecordId(id)) continue;  // refused below, naming the field
            StatusOr<uint32_t> latest = records_.LatestVersion(id);
            if (!latest.ok() && latest.status().code() != StatusCode::kNotFound) {
              return latest.status();
            }
            bool of_patient = false;
            if (latest.ok()) {
              PV_ASSIGN_OR_RETURN(storage::Record r, records_.ReadVersion(id, *latest, false));
              of_patient = r.meta.patient_id == draft.patient_id;
            }
            if (!of_patient) {
              return InvalidArgument("record_ids: " + id + " is not a record of this patient");
            }
          }
          draft.created_by = ctx.user;
          draft.created_us = Now();
          MutexLock lock(state_mu_);
          PV_ASSIGN_OR_RETURN(Restriction added,
                              state_.StageAddRestriction(std::move(draft), pass.batch));
          pass.entry.records = {"restriction:" + added.id};
          pass.entry.records.insert(pass.entry.records.end(), added.record_ids.begin(),
                                    added.record_ids.end());
          pass.phi["restriction"] = {{"purposes", added.purposes},
                                     {"categories", added.categories},
                                     {"recipient", added.recipient}};
          pass.after_commit.push_back([this, added] { state_.ApplyRestriction(added); });
          PV_RETURN_IF_ERROR(CommitPass(pass));
          return std::make_pair(added, pass.entry.seq);
        });
  }

  StatusOr<std::vector<Restriction>> ListRestrictions(const RequestContext& ctx,
                                                      const std::string& patient_id,
                                                      bool include_ended) override {
    return GuardedFor<std::vector<Restriction>>(
        ctx, "restriction.list", "restrict", patient_id,
        [&](Pass& pass) -> StatusOr<std::vector<Restriction>> {
          if (ValidatePatientId(patient_id).ok()) AttachPatient(pass, patient_id);
          PV_RETURN_IF_ERROR(ValidatePatientId(patient_id));
          return state_.RestrictionsOf(patient_id, include_ended);
        });
  }

  StatusOr<std::pair<Restriction, uint64_t>> EndRestriction(const RequestContext& ctx,
                                                            const std::string& patient_id,
                                                            const std::string& id,
                                                            const std::string& reason) override {
    return GuardedFor<std::pair<Restriction, uint64_t>>(
        ctx, "restriction.end", "restrict", patient_id,
        [&](Pass& pass) -> StatusOr<std::pair<Restriction, uint64_t>> {
          pass.entry.records = {"restriction:" + id};
          if (ValidatePatientId(patient_id).ok()) AttachPatient(pass, patient_id);
          PV_RETURN_IF_ERROR(ValidatePatientId(patient_id));
          MutexLock lock(state_mu_);
          PV_ASSIGN_OR_RETURN(
              Restriction ended,
              state_.StageEndRestriction(patient_id, id, ctx.user, reason, Now(), pass.batch));
          pass.phi["end_reason"] = reason;
          pass.after_commit.push_back([this, ended] { state_.ApplyRestriction(ended); });
          PV_RETURN_IF_ERROR(CommitPass(pass));
          return std::make_pair(ended, pass.entry.seq);
        });
  }

  StatusOr<std::pair<PatientRequest, uint64_t>> OpenPatientRequest(
      const RequestContext& ctx, const std::string& patient_id, const std::string& kind,
      const std::optional<std::string>& received, const std::string& note) override {
    return GuardedFor<std::pair<PatientRequest, uint64_t>>(
        ctx, "request.open", "request", patient_id,
        [&](Pass& pass) -> StatusOr<std::pair<PatientRequest, uint64_t>> {
          if (ValidatePatientId(patient_id).ok()) AttachPatient(pass, patient_id);
          PV_RETURN_IF_ERROR(ValidatePatientId(patient_id));
          PV_ASSIGN_OR_RETURN(RequestKind k, ParseRequestKind(kind));
          const std::string today = policies::FormatUtcDate(Now());
          const std::string day = received.value_or(today);
          // YYYY-MM-DD compares as text; a day's grace for a request received in another zone.
          if (day.size() == today.size() && day > policies::FormatUtcDate(Now() + 86400000000LL)) {
            return InvalidArgument("field 'received' must not be in the future");
          }
          MutexLock lock(state_mu_);
          PV_ASSIGN_OR_RETURN(PatientRequest opened,
                              state_.StageOpenRequest(patient_id, k, day, note, pass.batch));
          pass.entry.records = {"request:" + opened.id};
          pass.phi["request"] = {
              {"kind", kind}, {"received", opened.received}, {"due", opened.due}};
          pass.after_commit.push_back([this, opened] { state_.ApplyRequest(opened); });
          PV_RETURN_IF_ERROR(CommitPass(pass));
          return std::make_pair(opened, pass.entry.seq);
        });
  }

  StatusOr<std::pair<PatientRequest, uint64_t>> ExtendPatientRequest(
      const RequestContext& ctx, const std::string& id, const std::string& reason) override {
    return Guarded<std::pair<PatientRequest, uint64_t>>(
        ctx, "request.extend", "request",
        [&](Pass& pass) -> StatusOr<std::pair<PatientRequest, uint64_t>> {
          pass.entry.records = {"request:" + id};
          MutexLock lock(state_mu_);
          auto existing = state_.GetRequest(id);
          if (existing) AttachPatient(pass, existing->patient_id);
          PV_ASSIGN_OR_RETURN(PatientRequest extended,
                              state_.StageExtendRequest(id, reason, pass.batch));
          pass.phi["extension_reason"] = reason;
          pass.phi["due"] = extended.due;
          pass.after_commit.push_back([this, extended] { state_.ApplyRequest(extended); });
          PV_RETURN_IF_ERROR(CommitPass(pass));
          return std::make_pair(extended, pass.entry.seq);
        });
  }

  StatusOr<std::pair<PatientRequest, uint64_t>> ClosePatientRequest(
      const RequestContext& ctx, const std::string& id, const std::string& outcome,
      const std::string& delivered, const std::string& note) override {
    return Guarded<std::pair<PatientRequest, uint64_t>>(
        ctx, "request.close", "request",
        [&](Pass& pass) -> StatusOr<std::pair<PatientRequest, uint64_t>> {
          pass.entry.records = {"request:" + id};
          PV_ASSIGN_OR_RETURN(RequestOutcome o, ParseRequestOutcome(outcome));
          MutexLock lock(state_mu_);
          auto existing = state_.GetRequest(id);
          if (existing) AttachPatient(pass, existing->patient_id);
          PV_ASSIGN_OR_RETURN(PatientRequest closed,
                              state_.StageCloseRequest(id, o, delivered, note, Now(), pass.batch));
          pass.phi["delivered"] = delivered;
          pass.phi["outcome"] = outcome;
          pass.after_commit.push_back([this, closed] { state_.ApplyRequest(closed); });
          PV_RETURN_IF_ERROR(CommitPass(pass));
          return std::make_pair(closed, pass.entry.seq);
        });
  }

  StatusOr<std::vector<PatientRequest>> ListPatientRequests(
      const RequestContext& ctx, const std::optional<std::string>& patient_id, bool overdue_only,
      bool include_closed) override {
    return Guarded<std::vector<PatientRequest>>(
        ctx, "request.list", "request", [&](Pass& pass) -> StatusOr<std::vector<PatientRequest>> {
          if (patient_id) {
            if (ValidatePatientId(*patient_id).ok()) AttachPatient(pass, *patient_id);
            PV_RETURN_IF_ERROR(ValidatePatientId(*patient_id));
          }
          auto list = state_.ListRequests(patient_id, overdue_only, policies::FormatUtcDate(Now()),
                                          include_closed);
          for (const auto& r : list) pass.entry.records.push_back("request:" + r.id);
          return list;
        });
  }

  StatusOr<uint64_t> SetContact(const RequestContext& ctx, ConfidentialContact contact) override {
    return GuardedFor<uint64_t>(
        ctx, "contact.set", "contact", contact.patient_id, [&](Pass& pass) -> StatusOr<uint64_t> {
          if (ValidatePatientId(contact.patient_id).ok()) AttachPatient(pass, contact.patient_id);
          PV_RETURN_IF_ERROR(ValidatePatientId(contact.patient_id));
          contact.updated_us = Now();
          MutexLock lock(state_mu_);
          PV_ASSIGN_OR_RETURN(ConfidentialContact set, state_.StageSetContact(contact, pass.batch));
          pass.phi["channel"] = std::string(ContactChannelName(set.channel));
          pass.after_commit.push_back([this, set] { state_.ApplyContact(set); });
          PV_RETURN_IF_ERROR(CommitPass(pass));
          return pass.entry.seq;
        });
  }

  StatusOr<ConfidentialContact> GetContact(const RequestContext& ctx,
                                           const std::string& patient_id) override {
    return GuardedFor<ConfidentialContact>(
        ctx, "contact.show", "contact", patient_id,
        [&](Pass& pass) -> StatusOr<ConfidentialContact> {
          if (ValidatePatientId(patient_id).ok()) AttachPatient(pass, patient_id);
          PV_RETURN_IF_ERROR(ValidatePatientId(patient_id));
          auto c = state_.GetContact(patient_id);
          if (!c) return NotFound("no confidential contact is recorded for this patient");
          return *c;
        });
  }

  Status ExportPatient(const RequestContext& ctx, const PatientExportRequest& req,
                       const ExportSink& sink) override;

 private:
  int64_t Now() const { return clock_ ? clock_() : NowUnixMicros(); }

  // A policy decision, with what a denial says.
  struct Verdict {
    bool allowed = false;
    std::string rule;
    bool break_glass = false;
    std::string explanation;  // for a denial; names no PHI
  };

  // The one guarded path. Builds the audit entry, takes the policy snapshot, checks what the
  // configuration lets the principal do, decides actions on no record before the work runs,
  // runs `work` (which decides each record it touches, DecideOnRecord/Decide+Admit, before it
  // reads content), and commits the entry (with what the work staged) before the result is
  // returned. A failure of any step is audited with its rule or error, and an entry that cannot
  // be written fails the request. Work that must commit under a lock of its own calls CommitPass
  // itself.
  template <typename T, typename Work>
  StatusOr<T> Guarded(const RequestContext& ctx, std::string_view audit_action,
                      std::string_view policy_action, Work&& work) {
    return GuardedAs<T>(ctx, audit_action, audit_action, policy_action, std::forward<Work>(work));
  }
  // Guarded, for a request about the patient `patient_id` (a claim, checked by the work).
  template <typename T, typename Work>
  StatusOr<T> GuardedFor(const RequestContext& ctx, std::string_view audit_action,
                         std::string_view policy_action, std::string_view patient_id, Work&& work) {
    return GuardedAs<T>(ctx, audit_action, audit_action, policy_action, std::forward<Work>(work),
                        patient_id);
  }
  // Guarded, for a request whose configuration action is not the action it is audited as.
  template <typename T, typename Work>
  StatusOr<T> GuardedAs(const RequestContext& ctx, std::string_view config_action,
                        std::string_view audit_action, std::string_view policy_action, Work&& work,
                        std::string_view patient_id = {}) {
    Pass pass;
    pass.entry = NewEntry(ctx, audit_action);
    // A request about one patient is linked to them from the start, so that even a refusal
    // before any work shows in the patient's access report.
    if (!patient_id.empty() && ValidatePatientId(patient_id).ok()) AttachPatient(pass, patient_id);
    pass.policy = std::atomic_load(&policy_);
    if (Status s = Authorize(ctx, config_action, &pass.entry.reason); !s.ok()) return Fail(pass, s);
    if (pass.policy == nullptr) return Fail(pass, Unavailable("no access policy is in force"));
    if (Status s = DecideUpfront(pass, ctx, policy_action); !s.ok()) return Fail(pass, s);
    StatusOr<T> result = work(pass);
    if (!result.ok()) return Fail(pass, result.status());
    if (!pass.committed) {
      if (!pass.decided) return Fail(pass, Internal("no access decision was made"));
      PV_RETURN_IF_ERROR(CommitPass(pass));
    }
    return result;
  }

  // Actions on no record are decided here, once. For record actions this checks that the role
  // may do the action to some category for this purpose at all (so that a role with no such
  // right learns nothing, not even whether a record exists); each record is decided by the work.
  Status DecideUpfront(Pass& pass, const RequestContext& ctx, std::string_view action) {
    if (ctx.principal.kind == Principal::Kind::kSystem) {
      pass.Permitted("system:" + ctx.principal.name);
      return Status::Ok();
    }
    const policies::AccessPolicy& policy = *pass.policy;
    if (!policies::IsRecordAction(action)) {
      const Verdict v = Decide(pass, ctx, action, nullptr);
      if (!v.allowed) return DenyWith(pass, v);
      pass.Permitted(v.rule);
      return Status::Ok();
    }
    Verdict first;
    for (const std::string& category : policy.categories()) {
      policies::AccessRequest r = RequestFor(pass, ctx, action, category);
      // Any condition a request could meet counts here: the record decides on the real ones.
      r.is_author = true;
      r.has_consent = true;
      r.break_glass = policy.IsBreakGlassPurpose(ctx.purpose);
      const policies::Decision d = policy.Decide(r);
      if (d.allowed) {
        pass.upfront_rule = std::string(d.rule);
        return Status::Ok();
      }
      if (first.rule.empty()) first.rule = std::string(d.rule);
    }
    first.explanation = "role " + ctx.role + " may not " + std::string(action) +
                        " any record for purpose " + ctx.purpose;
    if (first.rule.empty()) first.rule = "default-deny";
    return DenyWith(pass, first);
  }

  policies::AccessRequest RequestFor(const Pass&, const RequestContext& ctx,
                                     std::string_view action, std::string_view category) const {
    policies::AccessRequest r;
    r.role = ctx.role;
    r.action = action;
    r.purpose = ctx.purpose;
    r.category = category;
    r.has_consent = !ctx.consent.empty();
    return r;
  }

  // The decision on `record` (nullptr for an action on no record): the policy, with the
  // request's conditions, then the patient's restrictions. Pure but for the break-glass lookup.
  Verdict Decide(const Pass& pass, const RequestContext& ctx, std::string_view action,
                 const storage::RecordMetadata* record) const {
    const policies::AccessPolicy& policy = *pass.policy;
    policies::AccessRequest r =
        RequestFor(pass, ctx, action, record != nullptr ? record->category : std::string_view());
    if (record != nullptr) {
      r.is_author = !record->created_by.empty() && record->created_by == ctx.user;
    }
    const bool glass_purpose = policy.IsBreakGlassPurpose(ctx.purpose);
    if (glass_purpose) {
      r.break_glass = !ctx.break_glass_reason.empty() ||
                      (record != nullptr && BreakGlassOpen(ctx, record->patient_id));
    }
    const policies::Decision d = policy.Decide(r);
    Verdict v;
    v.allowed = d.allowed;
    v.rule = std::string(d.rule);
    v.break_glass = d.break_glass;
    if (!v.allowed) {
      v.explanation = ExplainDenial(policy, ctx, action, record, r, d);
      return v;
    }
    if (record != nullptr) {
      if (auto blocking = BlockingRestriction(*record, ctx.purpose); blocking) {
        v.allowed = false;
        v.rule = "restriction:" + *blocking;
        v.explanation =
            "a restriction the patient requested (45 CFR 164.522(a)) withholds this "
            "record from purpose " +
            ctx.purpose;
      }
    }
    return v;
  }

  static std::string ExplainDenial(const policies::AccessPolicy& policy, const RequestContext& ctx,
                                   std::string_view action, const storage::RecordMetadata* record,
                                   const policies::AccessRequest& r, const policies::Decision& d) {
    const std::string what = record != nullptr
                                 ? std::string(action) + " " + record->category + " records"
                                 : std::string(action);
    const std::string_view rule = d.rule;
    if (rule.rfind("protected:", 0) == 0) {
      switch (policy.ProtectionOf(r.category)) {
        case policies::Protection::kConsent:
          return record->category +
                 " records are read only under a consent or authorization (42 CFR Part 2): send "
                 "its id in X-Phivault-Consent";
        case policies::Protection::kAuthor:
          return record->category +
                 " records are readable only by their author (45 CFR 164.508(a)(2))";
        case policies::Protection::kNone:
          break;
      }
    }
    if (policy.IsBreakGlassPurpose(ctx.purpose) && !r.break_glass) {
      return "purpose " + ctx.purpose +
             " is break-glass access: state the reason in X-Phivault-Break-Glass-Reason";
    }
    if (rule == "default-deny") {
      return "no rule of policy '" + policy.name() + "' lets role " + ctx.role + " " + what +
             " for purpose " + ctx.purpose;
    }
    return "policy '" + policy.name() + "' forbids role " + ctx.role + " to " + what +
           " for purpose " + ctx.purpose;
  }

  Status DenyWith(Pass& pass, const Verdict& v) {
    pass.entry.reason = v.rule;
    pass.decided = true;
    return Denied(v.explanation, v.rule);
  }

  // Decides `record` and, if allowed, admits it (break-glass bookkeeping); a denial sets the
  // entry's reason to its rule.
  Status DecideOnRecord(Pass& pass, const RequestContext& ctx, std::string_view action,
                        const storage::RecordMetadata& record) {
    const Verdict v = Decide(pass, ctx, action, &record);
    if (!v.allowed) return DenyWith(pass, v);
    return Admit(pass, ctx, v, record);
  }

  // An allowed decision on `record`: noted in the entry; a break-glass one is flagged, with its
  // reason, and counted in (or opens) the user's window for the patient.
  Status Admit(Pass& pass, const RequestContext& ctx, const Verdict& v,
               const storage::RecordMetadata& record) {
    pass.Permitted(v.rule);
    if (!ctx.consent.empty()) pass.phi["consent_id"] = ctx.consent;
    if (v.break_glass) {
      pass.entry.break_glass = true;
      PV_ASSIGN_OR_RETURN(std::string reason, EnterBreakGlass(pass, ctx, record.patient_id));
      pass.phi["break_glass_reason"] = reason;
    }
    return Status::Ok();
  }

  StatusOr<storage::Record> ReadAudited(const RequestContext& ctx, std::string_view action,
                                        std::string_view policy_action,
                                        const std::string& record_id,
                                        std::optional<uint32_t> version, bool with_content,
                                        const DisclosureInfo* disclosure) {
    return Guarded<storage::Record>(
        ctx, action, policy_action, [&](Pass& pass) -> StatusOr<storage::Record> {
          pass.entry.records = {record_id};
          if (!storage::IsValidRecordId(record_id)) {
            return InvalidArgument("record id is malformed");
          }
          if (disclosure != nullptr) {
            PV_ASSIGN_OR_RETURN(nlohmann::json d, DisclosurePhi(*disclosure, ctx.purpose));
            pass.phi.update(d);
          }
          uint32_t v = 0;
          if (version.has_value()) {
            if (*version == 0) return InvalidArgument("version must be >= 1");
            v = *version;
          } else {
            PV_ASSIGN_OR_RETURN(v, records_.LatestVersion(record_id));
          }
          pass.entry.records = {record_id + "@" + std::to_string(v)};
          // The decision is made on the record's authenticated metadata; its content is
          // decrypted only if it allows. A denial is linked to the patient all the same.
          auto gate = [&](const storage::RecordMetadata& meta) -> Status {
            AttachPatient(pass, meta.patient_id);
            return DecideOnRecord(pass, ctx, policy_action, meta);
          };
          if (!with_content) {
            PV_ASSIGN_OR_RETURN(storage::Record record, records_.ReadVersion(record_id, v, false));
            PV_RETURN_IF_ERROR(gate(record.meta));
            return record;
          }
          return records_.ReadVersionGated(record_id, v, gate);
        });
  }

  storage::AuditEntry NewEntry(const RequestContext& ctx, std::string_view action) const {
    storage::AuditEntry e;
    e.request_id = ctx.request_id;
    e.application = ctx.principal.name;
    e.user = ctx.user;
    e.role = ctx.role;
    e.purpose = ctx.purpose;
    e.peer_uid = ctx.peer_uid;
    e.peer_pid = ctx.peer_pid;
    e.action = std::string(action);
    e.outcome = "success";
    return e;
  }

  void AttachPatient(Pass& pass, std::string_view patient_id) const {
    pass.entry.patient_bid = crypto::HexEncode(records_.PatientBlindId(patient_id));
    pass.phi["patient_id"] = std::string(patient_id);
  }

  // Seals the pass's PHI fields into its entry and commits it with what the work staged.
  Status CommitPass(Pass& pass) {
    if (!pass.decided) return Internal("no access decision was made");
    if (pass.entry.reason.empty()) {
      for (const auto& r : pass.rules) {
        pass.entry.reason += (pass.entry.reason.empty() ? "" : ",") + r;
      }
      if (pass.entry.reason.empty()) pass.entry.reason = pass.upfront_rule;
    }
    if (!pass.phi.empty()) SealPhi(pass.entry, pass.phi);
    auto seq = CommitWithEntry(std::move(pass.batch), pass.entry);
    if (!seq.ok()) return seq.status();
    pass.entry.seq = *seq;
    pass.committed = true;
    for (auto& apply : pass.after_commit) apply();
    return Status::Ok();
  }

  // Audits a failed request, then reports the failure (or, if even the audit entry cannot be
  // written, that the audit log is unavailable). Nothing the work staged is written.
  Status Fail(Pass& pass, const Status& cause) {
    if (pass.committed) return cause;
    MarkFailure(pass.entry, cause);
    if (!pass.phi.empty()) SealPhi(pass.entry, pass.phi);
    if (auto seq = CommitWithEntry({}, std::move(pass.entry)); !seq.ok()) return seq.status();
    return cause;
  }

  // Seals `phi` into the entry with a fresh commitment salt, and commits to it inside the hashed
  // entry bytes, so the readable copy a compliance export carries can be checked offline.
  void SealPhi(storage::AuditEntry& e, const nlohmann::json& phi) const {
    const std::string salt = crypto::RandomBytes(kPhiSaltBytes);
    nlohmann::json sealed = phi;
    sealed[kPhiSaltMember] = crypto::HexEncode(salt);
    e.sealed_phi = crypto::Base64Encode(
        keyring_.audit_key().Encrypt(storage::CanonicalPhiJson(sealed), kAuditPhiAad));
    e.phi_commit = storage::PhiCommitment(salt, phi);
  }

  struct UnsealedPhi {
    nlohmann::json fields = nlohmann::json::object();
    std::string salt;  // raw commitment salt; empty if the entry has no PHI
  };
  // The PHI fields of `e`, checked against the entry's commitment: DataLoss naming the entry if
  // they fail to open, are malformed, or do not match what the hashed entry committed to.
  StatusOr<UnsealedPhi> UnsealPhi(const storage::AuditEntry& e) const {
    UnsealedPhi out;
    if (e.sealed_phi.empty()) {
      if (!e.phi_commit.empty()) {
        return DataLoss("audit entry " + std::to_string(e.seq) + " lost its PHI fields");
      }
      return out;
    }
    const std::string where = "audit entry " + std::to_string(e.seq);
    auto sealed = crypto::Base64Decode(e.sealed_phi);
    if (!sealed.ok()) return DataLoss(where + " has malformed PHI fields");
    auto plain = keyring_.audit_key().Decrypt(*sealed, kAuditPhiAad);
    if (!plain.ok()) return DataLoss(where + " failed integrity check");
    auto j = nlohmann::json::parse(*plain, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return DataLoss(where + " has malformed PHI fields");
    auto salt_it = j.find(kPhiSaltMember);
    auto salt = salt_it != j.end() && salt_it->is_string()
                    ? crypto::HexDecode(salt_it->get<std::string>())
                    : StatusOr<std::string>(DataLoss("no salt"));
    if (!salt.ok() || salt->size() != kPhiSaltBytes) {
      return DataLoss(where + " has malformed PHI fields");
    }
    j.erase(kPhiSaltMember);
    if (storage::PhiCommitment(*salt, j) != e.phi_commit) {
      return DataLoss(where + "'s PHI fields do not match its commitment");
    }
    out.fields = std::move(j);
    out.salt = std::move(*salt);
    return out;
  }

  // The sealed fields of a disclosure, with its basis and purpose resolved. The purpose is the
  // disclosure's own (given, or its basis's code); a request's purpose stands in only for a read
  // that is itself the disclosure (`read_purpose`), never for one recording a disclosure after
  // the fact, whose purpose is the recording's (e.g. HOPERAT).
  StatusOr<nlohmann::json> DisclosurePhi(const DisclosureInfo& d,
                                         std::string_view read_purpose) const {
    PV_RETURN_IF_ERROR(ValidateText("recipient_name", d.recipient_name, 256));
    if (d.recipient_address)
      PV_RETURN_IF_ERROR(ValidateText("recipient_address", *d.recipient_address, 512));
    PV_RETURN_IF_ERROR(ValidateText("description", d.description, 1024));
    if (!d.purpose_statement.empty()) {
      PV_RETURN_IF_ERROR(ValidateText("purpose_statement", d.purpose_statement, 1024));
    }
    if (!d.purpose.empty() && !policies::LookupPurposeOfUse(d.purpose)) {
      return InvalidArgument("purpose is not an HL7 PurposeOfUse code");
    }
    const std::string_view stated = d.purpose.empty() ? read_purpose : d.purpose;
    policies::DisclosureKind kind;
    if (d.basis.empty()) {
      auto derived = policies::DefaultDisclosureKind(stated);
      if (!derived) {
        return InvalidArgument(stated.empty()
                                   ? "basis is required: give the disclosure's basis or purpose"
                                   : "basis is required: purpose " + std::string(stated) +
                                         " does not determine it");
      }
      kind = *derived;
    } else {
      PV_ASSIGN_OR_RETURN(kind, policies::ParseDisclosureKind(d.basis));
      if (!d.purpose.empty()) {
        auto implied = policies::DefaultDisclosureKind(d.purpose);
        if (implied && *implied != kind) {
          return InvalidArgument("purpose " + d.purpose + " means a " +
                                 std::string(policies::DisclosureKindName(*implied)) +
                                 " disclosure, not " + d.basis);
        }
      }
    }
    std::string purpose = d.purpose;
    if (purpose.empty()) {
      // A read's purpose names this disclosure only if it agrees with the basis.
      auto implied = policies::DefaultDisclosureKind(read_purpose);
      purpose = implied && *implied == kind
                    ? std::string(read_purpose)
                    : std::string(policies::DisclosureKindPurposeOfUse(kind));
    }
    nlohmann::json phi = {{"recipient_name", d.recipient_name},
                          {"description", d.description},
                          {"basis", std::string(policies::DisclosureKindName(kind))},
                          {"purpose", purpose}};
    if (d.recipient_address) phi["recipient_address"] = *d.recipient_address;
    if (!d.purpose_statement.empty()) phi["purpose_statement"] = d.purpose_statement;
    return phi;
  }

  Status AppendDisclosure(const storage::AuditEntry& e, const nlohmann::json& phi,
                          std::vector<policies::Disclosure>& out) const {
    policies::Disclosure d;
    d.time_unix_us = phi.value("disclosed_at_us", e.time_unix_us);
    d.patient_id = phi.value("patient_id", "");
    d.recipient_name = phi.value("recipient_name", "");
    d.recipient_address = OptionalString(phi, "recipient_address");
    d.purpose_code = phi.value("purpose", "");
    d.purpose_statement = phi.value("purpose_statement", "");
    d.description = phi.value("description", "");
    for (const auto& r : e.records) d.record_ids.push_back(r.substr(0, r.find('@')));
    PV_ASSIGN_OR_RETURN(d.kind, policies::ParseDisclosureKind(phi.value("basis", "")));
    out.push_back(std::move(d));
    return Status::Ok();
  }

  StatusOr<std::vector<policies::Suspension>> LoadSuspensions() {
    std::vector<policies::Suspension> out;
    Status inner;
    std::string end(kSuspensionPrefix);
    end.back() = static_cast<char>(end.back() + 1);
    PV_RETURN_IF_ERROR(store_.Scan(
        storage::Cf::kState, kSuspensionPrefix, end, [&](std::string_view, std::string_view v) {
          auto plain = keyring_.audit_key().Decrypt(v, kSuspensionAad);
          auto j = plain.ok() ? nlohmann::json::parse(*plain, nullptr, false) : nlohmann::json();
          if (!j.is_object()) {
            inner = DataLoss("a stored accounting suspension failed its integrity check");
            return false;
          }
          policies::Suspension s;
          s.agency = j.value("agency", "");
          s.start_unix_us = j.value("start_us", int64_t{0});
          if (j.contains("end_us")) s.end_unix_us = j["end_us"].get<int64_t>();
          s.oral = j.value("oral", false);
          s.statement = j.value("statement", "");
          out.push_back(std::move(s));
          return true;
        }));
    PV_RETURN_IF_ERROR(inner);
    return out;
  }

  Status ForEachPatientEntry(
      const std::string& patient_id,
      const std::function<Status(const storage::AuditEntry&, const nlohmann::json&)>& fn) {
    return storage::ScanPatientAuditEntries(
        store_, records_.PatientBlindId(patient_id),
        [&](const storage::AuditEntry& e, std::string_view) -> Status {
          PV_ASSIGN_OR_RETURN(UnsealedPhi unsealed, UnsealPhi(e));
          const nlohmann::json& phi = unsealed.fields;
          // A blind-id collision is astronomically unlikely, but never report another patient.
          if (phi.value("patient_id", "") != patient_id) return Status::Ok();
          return fn(e, phi);
        });
  }

  static policies::DecodedAuditEntry Decode(const storage::AuditEntry& e,
                                            const nlohmann::json* phi) {
    policies::DecodedAuditEntry d;
    d.seq = e.seq;
    d.time_unix_us = e.time_unix_us;
    d.request_id = e.request_id;
    d.application = e.application;
    d.user = e.user;
    d.role = e.role;
    d.action = e.action;
    d.outcome = e.outcome;
    d.reason = e.reason;
    d.purpose = e.purpose;
    d.records = e.records;
    d.break_glass = e.break_glass;
    if (phi != nullptr) {
      d.patient_id = OptionalString(*phi, "patient_id");
      d.recipient = OptionalString(*phi, "recipient_name");
      d.break_glass_reason = OptionalString(*phi, "break_glass_reason");
    }
    return d;
  }

  bool Matches(const AuditExportRequest& req, const storage::AuditEntry& e) const {
    if (req.from_unix_us && e.time_unix_us < *req.from_unix_us) return false;
    if (req.to_unix_us && e.time_unix_us >= *req.to_unix_us) return false;
    if (req.user && e.user != *req.user) return false;
    if (req.action && e.action != *req.action) return false;
    if (req.outcome && e.outcome != *req.outcome) return false;
    return true;
  }

  policies::ReportContext ReportContextFor(int64_t now, const std::string& patient_id) const {
    policies::ReportContext c;
    if (auto contact = state_.GetContact(patient_id); contact) {
      c.deliver_to_address = contact->address;
      c.deliver_to_channel = std::string(ContactChannelName(contact->channel));
    }
    c.practice_name = config_.practice_name;
    c.generated_at_unix_us = now;
    return c;
  }

  // Requests that reveal no PHI (the policy text, proofs): decided but not audited.
  Status AuthorizeUnaudited(const RequestContext& ctx, std::string_view config_action,
                            std::string_view policy_action) const {
    PV_RETURN_IF_ERROR(Authorize(ctx, config_action));
    Pass pass;
    pass.policy = std::atomic_load(&policy_);
    if (pass.policy == nullptr) return Unavailable("no access policy is in force");
    const Verdict v = Decide(pass, ctx, policy_action, nullptr);
    if (!v.allowed) return Denied(v.explanation, v.rule);
    return Status::Ok();
  }

  static PolicyInfo InfoOf(const PolicyVersion& v) {
    PolicyInfo info;
    info.name = v.name;
    info.sha256_hex = v.sha256_hex;
    info.in_force_from_unix_us = v.from_us;
    info.audit_seq = v.audit_seq;
    return info;
  }

  // Puts `policy` in force. If it differs from the newest version in the history, its coming
  // into force is audited (by `ctx`, or the daemon) together with the new history version.
  StatusOr<PolicyInfo> InstallPolicy(const RequestContext* ctx,
                                     std::shared_ptr<const policies::AccessPolicy> policy) {
    MutexLock lock(state_mu_);
    const auto history = state_.PolicyHistory();
    PolicyInfo info;
    info.name = policy->name();
    info.sha256_hex = policy->sha256_hex();
    info.rules = policy->rules().size();
    if (!history.empty() && history.back().sha256_hex == policy->sha256_hex()) {
      info.in_force_from_unix_us = history.back().from_us;
      info.audit_seq = history.back().audit_seq;
      std::atomic_store(&policy_, std::move(policy));
      return info;
    }
    storage::WriteBatch batch;
    const int64_t now = std::max(Now(), history.empty() ? 0 : history.back().from_us + 1);
    PV_ASSIGN_OR_RETURN(PolicyVersion version,
                        state_.StagePolicyVersion(policy->name(), policy->text(), now, batch));
    storage::AuditEntry e;
    if (ctx != nullptr) {
      e = NewEntry(*ctx, "policy.load");
    } else {
      e.application = "phivaultd";
      e.action = "policy.load";
      e.outcome = "success";
    }
    e.reason = "sha256:" + policy->sha256_hex();
    e.records = {"policy:" + policy->name()};
    PV_ASSIGN_OR_RETURN(uint64_t seq, CommitWithEntry(std::move(batch), std::move(e)));
    std::atomic_store(&policy_, std::move(policy));
    if (Status s = state_.ApplyPolicyVersion(version, seq); !s.ok()) {
      spdlog::warn("the policy history could not record its audit seq: {}",
                   StatusCodeName(s.code()));
    }
    spdlog::info("access policy {} (sha256 {}) in force, {} rules", info.name, info.sha256_hex,
                 info.rules);
    info.changed = true;
    info.in_force_from_unix_us = now;
    info.audit_seq = seq;
    return info;
  }

  // Proofs, checkpoints and the verifier key reveal no PHI and are made to be handed to anyone
  // who holds (part of) the log: the configuration's audit.verify action is all they need, like
  // the status. Everything that reveals an entry goes through the policy (ExportAudit).
  Status AuthorizeAuditRead(const RequestContext& ctx) const {
    PV_RETURN_IF_ERROR(Authorize(ctx, "audit.verify"));
    if (audit_log_ == nullptr) return FailedPrecondition("the verifiable audit log is not open");
    return Status::Ok();
  }

  // A window belongs to the user, role and application that opened it: the same user name
  // asserted by another application, or in another role, does not inherit it.
  static bool WindowIsFor(const BreakGlassWindow& w, const RequestContext& ctx) {
    return w.role == ctx.role && w.application == ctx.principal.name;
  }

  bool BreakGlassOpen(const RequestContext& ctx, const std::string& patient_id) const {
    const auto w = state_.FindOpen(ctx.user, patient_id, Now());
    return w.has_value() && WindowIsFor(*w, ctx);
  }

  // The id of an active restriction of the record's patient that withholds it from `purpose`.
  std::optional<std::string> BlockingRestriction(const storage::RecordMetadata& record,
                                                 const std::string& purpose) const {
    const std::vector<Restriction> all = state_.RestrictionsOf(record.patient_id, false);
    if (all.empty()) return std::nullopt;
    const Restriction* r = FindBlocking(all, record.record_id, record.category, purpose);
    if (r == nullptr) return std::nullopt;
    return r->id;
  }

  // Break-glass access by ctx.user to the patient's records: counted in the user's open window,
  // or, with a stated reason, in a new one whose start is audited on its own entry first.
  // Returns the window's reason.
  StatusOr<std::string> EnterBreakGlass(Pass& pass, const RequestContext& ctx,
                                        const std::string& patient_id) {
    MutexLock lock(state_mu_);
    const int64_t now = Now();
    std::optional<BreakGlassWindow> window = state_.FindOpen(ctx.user, patient_id, now);
    if (window && !WindowIsFor(*window, ctx)) {
      return Denied(
          "this user's break-glass window for the patient was opened by another "
          "application or in another role; it ends at " +
              policies::FormatUtcTimestamp(window->expires_us),
          "break-glass:window-elsewhere");
    }
    if (!window) {
      if (ctx.break_glass_reason.empty()) {
        return Denied(
            "the break-glass window has ended: state a reason in "
            "X-Phivault-Break-Glass-Reason to open a new one",
            "break-glass:window-ended");
      }
      BreakGlassWindow draft;
      draft.user = ctx.user;
      draft.role = ctx.role;
      draft.application = ctx.principal.name;
      draft.patient_id = patient_id;
      draft.reason = ctx.break_glass_reason;
      draft.opened_us = now;
      draft.expires_us = now + pass.policy->break_glass_window_seconds() * 1000000;
      storage::WriteBatch batch;
      PV_ASSIGN_OR_RETURN(BreakGlassWindow opened, state_.StageOpenWindow(draft, batch));
      storage::AuditEntry start = NewEntry(ctx, "breakglass.start");
      start.break_glass = true;
      start.reason = std::string(pass.rules.empty() ? "break-glass" : pass.rules.back());
      start.records = {"window:" + opened.id};
      start.patient_bid = crypto::HexEncode(records_.PatientBlindId(patient_id));
      SealPhi(start, {{"patient_id", patient_id},
                      {"break_glass_reason", opened.reason},
                      {"expires_us", opened.expires_us}});
      PV_RETURN_IF_ERROR(CommitWithEntry(std::move(batch), std::move(start)).status());
      state_.ApplyOpenWindow(opened);
      window = std::move(opened);
    }
    PV_RETURN_IF_ERROR(state_.StageAccess(window->id, pass.batch));
    pass.after_commit.push_back([this, id = window->id] { state_.ApplyAccess(id); });
    pass.phi["break_glass_window"] = window->id;
    return window->reason;
  }

  static std::string HexOf(const storage::MerkleHash& h) {
    return crypto::HexEncode(std::string_view(reinterpret_cast<const char*>(h.data()), h.size()));
  }

  // On refusal, `rule` (if given) receives the configuration rule that refused, for the audit
  // entry.
  Status Authorize(const RequestContext& ctx, std::string_view action,
                   std::string* rule = nullptr) const {
    // A person at the CLI acts in the role their configuration entry gives them, whatever role
    // the request claims.
    if (ctx.principal.kind == Principal::Kind::kOperator &&
        ctx.role != ctx.principal.operator_role) {
      if (rule != nullptr) *rule = "config:operator_role";
      return Denied("no bearer token was sent, so this request acts as operator " +
                        ctx.principal.name + ", whose configuration entry allows role '" +
                        ctx.principal.operator_role + "' only (not '" + ctx.role + "')",
                    "config:operator_role");
    }
    if (!Allows(ctx.principal, action)) {
      if (rule != nullptr) *rule = "config:actions";
      return Denied(
          "the configuration does not allow this principal to perform " + std::string(action),
          "config:actions");
    }
    return Status::Ok();
  }

  StatusOr<uint64_t> CommitWithEntry(storage::WriteBatch batch, storage::AuditEntry entry) {
    auto seq = ledger_.Commit(std::move(batch), std::move(entry));
    if (seq.ok()) return seq;
    if (seq.status().code() == StatusCode::kResourceExhausted) return seq.status();
    return Unavailable("the audit log could not be written; nothing was done");
  }

  Mutex& StripeFor(std::string_view record_id) {
    return stripes_[std::hash<std::string_view>{}(record_id) % stripes_.size()];
  }

  Status ValidateCategory(const std::string& category) const {
    if (std::find(config_.categories.begin(), config_.categories.end(), category) ==
        config_.categories.end()) {
      std::string allowed;
      for (const auto& c : config_.categories) allowed += (allowed.empty() ? "" : ", ") + c;
      return InvalidArgument("field 'category': '" + category +
                             "' is not a configured category (allowed: " + allowed + ")");
    }
    return Status::Ok();
  }

  Status ValidateCreate(const CreateRecordRequest& r) const {
    PV_RETURN_IF_ERROR(ValidatePatientId(r.patient_id));
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
  storage::AuditLog* audit_log_;
  storage::RecordRepository records_;
  PatientState state_;
  // Serialises Stage -> Commit -> Apply on state_ (daemon/patient_state.h), and reloads.
  Mutex state_mu_;
  std::shared_ptr<const policies::AccessPolicy> policy_;  // atomic_load/atomic_store only
  std::function<int64_t()> clock_;
  std::chrono::steady_clock::time_point started_;
  std::array<Mutex, 64> stripes_;
  // Retention (docs/retention.md): the table in force (atomic_load/atomic_store only), the gate
  // that keeps a sweep's erasure apart from changes that move records, the patients' latest
  // encounters (computed once from their records, then kept up to date), one sweep at a time.
  std::shared_ptr<const LoadedRetention> retention_;
  RetentionGate gate_;
  EncounterCache encounters_;
  std::mutex sweep_mu_;
  std::mutex rotate_mu_;   // one master-key rotation at a time
  std::mutex archive_mu_;  // one archive run at a time
  std::mutex backup_mu_;   // one backup at a time: they share the staging directory
  std::function<Status(std::string_view)> sweep_fault_;
};

Status VaultServiceImpl::ExportPatient(const RequestContext& ctx, const PatientExportRequest& req,
                                       const ExportSink& sink) {
  struct Item {
    storage::RecordMetadata latest;
  };
  std::vector<Item> items;
  uint64_t withheld = 0;
  const int64_t now = Now();
  // Authorised by the route's configuration action, audited as a disclosure to the individual.
  auto admitted = GuardedAs<bool>(
      ctx, "patient.export", "record.disclose", "export",
      [&](Pass& pass) -> StatusOr<bool> {
        if (ValidatePatientId(req.patient_id).ok()) AttachPatient(pass, req.patient_id);
        PV_RETURN_IF_ERROR(ValidatePatientId(req.patient_id));
        if (!req.request_id.empty()) {
          auto request = state_.GetRequest(req.request_id);
          if (!request || request->patient_id != req.patient_id) {
            return NotFound("no such patient request for this patient");
          }
          if (request->kind != RequestKind::kAccess) {
            return InvalidArgument("field 'request_id' names a request that is not for access");
          }
          pass.phi["patient_request"] = req.request_id;
        }
        PV_ASSIGN_OR_RETURN(std::vector<storage::RecordMetadata> all,
                            records_.ListPatient(req.patient_id));
        for (auto& m : all) {
          const Verdict v = Decide(pass, ctx, "export", &m);
          if (!v.allowed) {
            ++withheld;
            continue;
          }
          PV_RETURN_IF_ERROR(Admit(pass, ctx, v, m));
          for (uint32_t version = 1; version <= m.version; ++version) {
            pass.entry.records.push_back(m.record_id + "@" + std::to_string(version));
          }
          items.push_back({std::move(m)});
        }
        if (!pass.decided) pass.Permitted(pass.upfront_rule);
        if (withheld > 0) pass.rules.push_back("withheld=" + std::to_string(withheld));
        const auto contact = state_.GetContact(req.patient_id);
        pass.phi.update(
            {{"recipient_name", "the individual (right of access, 45 CFR 164.524)"},
             {"description", "designated record set: " + std::to_string(items.size()) + " records"},
             {"basis",
              std::string(policies::DisclosureKindName(policies::DisclosureKind::kToIndividual))},
             {"purpose", ctx.purpose}});
        if (contact) pass.phi["recipient_address"] = contact->address;
        return true;
      },
      req.patient_id);
  if (!admitted.ok()) return admitted.status();

  // On the record; now the archive. A failure from here on cuts the stream short.
  PV_ASSIGN_OR_RETURN(auto tar, TarStreamWriter::Create(sink));
  ExportManifest manifest;
  manifest.patient_id = req.patient_id;
  manifest.generated_us = now;
  manifest.practice = config_.practice_name;
  manifest.deliver_to = state_.GetContact(req.patient_id);
  manifest.withheld = withheld;
  if (withheld > 0) {
    manifest.withheld_reason =
        "Some records are not part of what this export may include under the practice's access "
        "policy (for example psychotherapy notes, which 45 CFR 164.524(a)(1)(i) excludes from the "
        "right of access). You may ask the practice about them.";
  }
  for (const Item& item : items) {
    for (uint32_t version = 1; version <= item.latest.version; ++version) {
      PV_ASSIGN_OR_RETURN(storage::Record r,
                          records_.ReadVersion(item.latest.record_id, version, true));
      ExportManifestRecord m;
      m.record_id = r.meta.record_id;
      m.version = version;
      m.category = r.meta.category;
      m.content_type = r.meta.content_type;
      m.encounter_date = r.meta.encounter_date;
      m.author = r.meta.author;
      m.created_us = r.meta.created_unix_us;
      m.file = ExportRecordPath(m.record_id, version, m.content_type);
      const crypto::Sha256Digest digest = crypto::Sha256(r.content);
      m.sha256_hex = crypto::HexEncode(
          std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
      PV_RETURN_IF_ERROR(tar->AddFile(m.file, r.content, r.meta.created_unix_us / 1000000));
      manifest.records.push_back(std::move(m));
    }
  }
  PV_RETURN_IF_ERROR(
      tar->AddFile("manifest.json", BuildExportManifestJson(manifest), now / 1000000));
  return tar->Finish();
}

}  // namespace

StatusOr<std::unique_ptr<VaultService>> NewVaultService(const ServiceDeps& deps) {
  auto service = std::make_unique<VaultServiceImpl>(deps);
  PV_RETURN_IF_ERROR(service->Start());
  return std::unique_ptr<VaultService>(std::move(service));
}

}  // namespace phivault::daemon
