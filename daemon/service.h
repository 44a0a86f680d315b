// The vault service: the one path every PHI access takes.
//
// Each public method authorises the request (policies), does the work (crypto + storage) and
// appends exactly one audit entry through the ledger: in the same atomic batch as a write, and
// durably before a read's content is returned. If the entry cannot be written the method fails
// with Unavailable and returns nothing. Denied and failed attempts are audited too.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "crypto/keyring.h"
#include "daemon/config.h"
#include "daemon/patient_state.h"
#include "daemon/retention_loader.h"
#include "policies/access_policy.h"
#include "policies/retention.h"
#include "storage/audit_log.h"
#include "storage/backup.h"
#include "storage/ledger.h"
#include "storage/records.h"
#include "storage/store.h"

namespace phivault::daemon {

// Who is asking, as established by the socket boundary (daemon/auth.h).
struct Principal {
  // kSystem: the daemon itself (its scheduled retention sweep); never built from a request.
  // The configuration's `actions` still bound it; the access policy does not decide for it (its
  // entries name it, with rule "system:<name>").
  enum class Kind { kApplication, kOperator, kSystem };
  Kind kind = Kind::kApplication;
  std::string name;                  // application name, or "cli:<uid>" for an operator
  uint32_t uid = 0;                  // peer uid
  std::vector<std::string> actions;  // what the config lets this principal do
  std::string operator_role;         // the role an operator's config entry gives them
  // The roles this principal is bound to by its config entry: an application's `roles`, an
  // operator entry's one role. A request may assert only one of them, and what a role unlocks
  // (an export's unsealed PHI) is decided on these, never on the header alone.
  std::vector<std::string> roles;
  // The HL7 PurposeOfUse codes an application may assert; empty: any.
  std::vector<std::string> purposes;
  // An operator's account name (the peer uid's passwd entry, "uid:<n>" without one): their
  // acting user, whatever X-Phivault-User says.
  std::string account;
};

struct RequestContext {
  std::string request_id;
  // Empty `principal.name` means authentication failed: user, role and purpose are then only
  // what the caller claimed, and the audit entry records them as claims.
  Principal principal;
  std::string user;     // acting user (X-Phivault-User)
  std::string role;     // acting role (X-Phivault-Role)
  std::string purpose;  // HL7 PurposeOfUse (X-Phivault-Purpose)
  // X-Phivault-Break-Glass-Reason: why the user breaks the glass (purpose ETREAT or BTG); opens a
  // time-limited window for this user and patient. Sealed into the audit entry. Empty: none.
  std::string break_glass_reason;
  // X-Phivault-Consent: the consent or authorization a substance-use (42 CFR Part 2) record is
  // read under. Recorded in the audit entry. Empty: none.
  std::string consent;
  uint32_t peer_uid = 0;  // SO_PEERCRED of the connection
  int64_t peer_pid = 0;
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

// A disclosure of PHI to someone outside the vault (45 CFR 164.528).
struct DisclosureInfo {
  std::string recipient_name;
  std::optional<std::string> recipient_address;
  // policies::DisclosureKindName ("public_health", "tpo_treatment", ...). Empty: derived from
  // `purpose` where that settles it (TREAT -> treatment); otherwise InvalidArgument.
  std::string basis;
  std::string description;        // brief description of the PHI disclosed
  std::string purpose_statement;  // optional; the basis's standard statement otherwise
  // The HL7 PurposeOfUse of the disclosure itself (not of the request that records it). Empty:
  // the basis's own code (law_enforcement -> HLEGAL); for a read that discloses, the read's
  // purpose. A purpose that implies another basis than `basis` is InvalidArgument.
  std::string purpose;
};

struct RecordDisclosureRequest {
  std::string patient_id;
  std::vector<std::string> record_ids;          // optional: the records disclosed
  std::optional<int64_t> disclosed_at_unix_us;  // default: now; never in the future
  DisclosureInfo disclosure;
};

// A request by a health oversight agency or law enforcement official to suspend the
// individual's right to an accounting of disclosures to it (45 CFR 164.528(a)(2)).
struct SuspensionRequest {
  std::string agency;
  int64_t start_unix_us = 0;
  std::optional<int64_t> end_unix_us;  // required unless oral
  bool oral = false;
  std::string statement;
};

enum class ReportFormat { kJson, kCsv, kHtml };
struct ReportRequest {
  std::string patient_id;
  std::optional<int64_t> period_start_unix_us;  // accounting only; default six years back
  ReportFormat format = ReportFormat::kJson;
};
struct RenderedReport {
  std::string content_type;
  std::string body;
};

enum class ExportFormat { kJsonLines, kFhir, kCsv };
struct AuditExportRequest {
  ExportFormat format = ExportFormat::kJsonLines;
  std::optional<int64_t> from_unix_us;  // inclusive
  std::optional<int64_t> to_unix_us;    // exclusive
  std::optional<std::string> patient_id;
  std::optional<std::string> user;
  std::optional<std::string> action;
  std::optional<std::string> outcome;
  // JSON Lines, filtered: the sizes of checkpoints the requester already holds. The export then
  // carries a consistency proof from each size not above its checkpoint's to that checkpoint.
  std::vector<uint64_t> trusted_sizes;
  bool filtered() const {
    return from_unix_us || to_unix_us || patient_id || user || action || outcome;
  }
};
// Receives the export in pieces; returning false stops the export (the client went away).
using ExportSink = std::function<bool(std::string_view chunk)>;

struct InclusionProofResult {
  uint64_t leaf_index = 0;  // seq - 1
  uint64_t tree_size = 0;
  std::string leaf_hash_hex;
  std::vector<std::string> path_hex;
};

// A patient's records as one caller may see them.
struct RecordList {
  std::vector<storage::RecordMetadata> records;  // latest version of each visible record
  uint64_t withheld = 0;  // records of the patient the policy does not let this caller see
};

// The policy in force, as reported after a reload or for a time.
struct PolicyInfo {
  std::string name;
  std::string sha256_hex;
  size_t rules = 0;
  bool changed = false;  // a reload: whether it differs from the policy it replaced
  int64_t in_force_from_unix_us = 0;
  std::optional<int64_t> in_force_until_unix_us;
  uint64_t audit_seq = 0;  // the audit entry that recorded it coming into force
  std::string text;        // PolicyAt only
};

// `phivault policy check`: explain a decision without touching content.
struct PolicyCheckRequest {
  std::string as_user;
  std::string role;
  std::string purpose;
  std::string action;  // a policy action (policies::PolicyActions)
  std::optional<std::string> record_id;
  std::optional<uint32_t> version;
  std::optional<std::string> category;  // instead of a record
  bool author = false;                  // with `category`: as if as_user wrote the record
  bool consent = false;
  bool break_glass = false;
};
struct PolicyCheckResult {
  bool allowed = false;
  std::string rule;
  std::string explanation;
  std::string category;
  bool is_author = false;
};

// The right of access (45 CFR 164.524): every record version of the patient's designated record
// set that the policy lets out, as a tar archive.
struct PatientExportRequest {
  std::string patient_id;
  std::string request_id;  // optional: the patient request (RequestKind::kAccess) it answers
};

// ---- Retention, legal holds, destruction (docs/retention.md, docs/destruction.md)

// `phivault patient set`: the facts retention rules read. Each field: unset = keep as stored;
// "" = clear it; otherwise YYYY-MM-DD (not in the future; not before the date of birth).
struct PatientFactsUpdate {
  std::string patient_id;
  std::optional<std::string> date_of_birth;
  std::optional<std::string> date_of_death;
  std::optional<std::string> last_encounter;
};

// How long one record is kept, as the retention table in force decides it now.
struct RecordRetention {
  std::string record_id;
  uint32_t versions = 0;
  std::string category;
  std::string epoch_id;  // the epoch key its DEKs are wrapped under now
  // "expires", "permanent", "held" (an active legal hold covers it), "undetermined".
  std::string outcome;
  std::string expires_on;             // YYYY-MM-DD for "expires" (and for "held": when it would)
  std::string reason;                 // the deciding rules in words (RetentionDecision::reason)
  std::vector<std::string> hold_ids;  // the active holds covering it
};

struct RetentionTableInfo {
  std::string preset;
  std::string source;      // the retention file, or "preset <name>" without one
  std::string sha256_hex;  // of the table's canonical text: changes when the rules change
  // One per rule: name, categories ("*" or a list), basis, years, age_of_majority, source.
  std::vector<policies::RetentionRule> rules;
};

struct PlaceHoldRequest {
  std::string patient_id;
  std::string matter;  // the matter's name, one line
  std::string reason;
  std::vector<std::string> record_ids;  // empty: every record of the patient, now and later
};

struct SweepRequest {
  bool dry_run = true;
  // Destroy what has expired on or before this UTC day (YYYY-MM-DD). Default: today. A real
  // sweep refuses a day after today (InvalidArgument); a dry run may look ahead.
  std::optional<std::string> until;
};

// One record a sweep destroys (or, dry run, would destroy).
struct SweepCandidate {
  std::string record_id;
  uint32_t versions = 0;
  std::string category;
  std::string patient_bid;  // hex blind id: a sweep's output never names a patient
  std::string epoch_id;
  std::string expires_on;  // YYYY-MM-DD
  std::string reason;      // the deciding rules, as RecordRetention::reason
};

// Machine-readable progress of a sweep, reported between its steps and every few thousand
// records: phase is "plan", "recheck", "erase", "delete", "compact", "verify", "audit",
// "certificate", "done".
struct SweepProgress {
  std::string phase;
  uint64_t done = 0;
  uint64_t total = 0;
};
using SweepProgressFn = std::function<void(const SweepProgress&)>;

struct SweepResult {
  std::string sweep_id;  // = the certificate id when one was issued
  bool dry_run = true;
  std::string until;  // YYYY-MM-DD
  // Destroyed (dry run: would be destroyed), ordered by record id. A dry run lists every
  // candidate; a real sweep lists at most 1000 (the certificate lists them all).
  std::vector<SweepCandidate> destroyed;
  uint64_t destroyed_records = 0;
  uint64_t destroyed_versions = 0;
  uint64_t rewrapped_records = 0;  // found not to be expired after all and moved to a later epoch
  uint64_t held_records = 0;       // found under a legal hold and moved to the hold's epoch
  std::vector<std::string> epochs_destroyed;
  bool resumed = false;        // it completed a sweep an earlier run left unfinished
  std::string certificate_id;  // empty when nothing was destroyed (or dry run)
  std::string verification_result;
  uint64_t audit_seq = 0;  // the sweep's summary entry
};

struct CertificateSummary {
  std::string id;
  int64_t started_unix_us = 0;
  int64_t finished_unix_us = 0;
  uint64_t records = 0;
  uint64_t versions = 0;
  uint64_t patients = 0;
  std::vector<std::string> epoch_ids;
};

// ---- Backups (docs/backups.md)

struct BackupRequest {
  std::string dir;  // the backups directory, absolute, outside the data directory
  storage::BackupProgressFn progress;  // not from the request: called as the backup proceeds
};

// ---- Master-key rotation (docs/keys.md)

struct KeyRotateRequest {
  // The passphrase source: the new passphrase (required; refused for the other sources). The
  // new key is derived from it with the configured salt and Argon2id limits.
  std::optional<crypto::SecretBytes> new_passphrase;
};

struct KeyRotateResult {
  std::string source;  // "file", "credential" or "passphrase"
  uint64_t keyring_generation = 0;
  size_t keyring_copies = 0;  // the primary and every mirror, all re-sealed
  // For the file and credential sources: where the new key waits to be installed (empty for
  // the passphrase source).
  std::string pending_key_path;
  uint64_t audit_seq = 0;
};

// ---- Archive tier (docs/archive.md)

struct ArchiveRequest {
  bool dry_run = true;
};

struct ArchiveResult {
  bool dry_run = true;
  // YYYY-MM-DD: records last accessed and with the patient's last encounter before this day
  // (today minus [archive] after_days) are archived.
  std::string cutoff;
  uint64_t audit_entries_read = 0;  // the entries since the cutoff, read to find recent access
  uint64_t examined_records = 0;    // every record in the patient index
  uint64_t archived_records = 0;    // moved now (dry run: would be moved)
  uint64_t archived_versions = 0;
  uint64_t already_archived = 0;  // due, but every version was in the archive already
  // A real run that moved anything compacts the store, so that the moved bytes leave the live
  // tier's files; false if it did not (compaction_error says why).
  bool compacted = false;
  std::string compaction_error;
  uint64_t audit_seq = 0;  // the run's archive.run entry
};

struct VaultStatus {
  std::string version;
  int64_t uptime_seconds = 0;
  uint64_t audit_entries = 0;
  uint64_t epochs = 0;
  uint64_t records = 0;        // records stored (each counted once, however many versions it has)
  uint64_t patients = 0;       // distinct patients with at least one record
  uint64_t synced_writes = 0;  // synced store writes since start (group commits: one sync each)
  storage::SpaceInfo space;
  // Patients in the encounter cache, and its configured capacity (memory.encounter_cache_patients).
  uint64_t encounter_cache_patients = 0;
  uint64_t encounter_cache_capacity = 0;
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
  // Only the records the policy lets this caller see; how many others there are is counted, and
  // nothing else about them is said.
  virtual StatusOr<RecordList> ListRecords(const RequestContext& ctx,
                                           const std::string& patient_id) = 0;
  // No PHI; not audited (it touches no PHI) but still requires the "status" action.
  virtual StatusOr<VaultStatus> GetStatus(const RequestContext& ctx) = 0;

  // Reads a version and records that it was disclosed to `disclosure.recipient_name`: one
  // audit entry, action "record.disclose", which the accounting of disclosures counts.
  virtual StatusOr<storage::Record> DiscloseRecord(const RequestContext& ctx,
                                                   const std::string& record_id,
                                                   std::optional<uint32_t> version,
                                                   const DisclosureInfo& disclosure) = 0;
  // Records a disclosure made outside the vault (paper, fax, phone). Returns the audit seq.
  virtual StatusOr<uint64_t> RecordDisclosure(const RequestContext& ctx,
                                              RecordDisclosureRequest req) = 0;
  // Records an accounting suspension. Returns the audit seq.
  virtual StatusOr<uint64_t> AddDisclosureSuspension(const RequestContext& ctx,
                                                     SuspensionRequest req) = 0;
  // The patient's accounting of disclosures (six years or less) and access report (three years).
  // Both are audited; PermissionDenied without the "report.accounting"/"report.access" action.
  virtual StatusOr<RenderedReport> AccountingOfDisclosures(const RequestContext& ctx,
                                                           const ReportRequest& req) = 0;
  virtual StatusOr<RenderedReport> AccessReport(const RequestContext& ctx,
                                                const ReportRequest& req) = 0;
  // Streams the audit log (filtered, in the requested format) to `sink`. The export itself is
  // audited before the first byte is produced. PHI fields are unsealed only for the compliance
  // role, and only for entries whose phi_commit binds them. The JSON Lines form is what
  // `phivault audit verify` checks. A checkpoint is signed when the export starts (kHandedOut);
  // a full export holds exactly the entries it covers and ends with it, after the stored
  // checkpoints below it; a filtered one holds the matching entries it covers, each with its
  // inclusion proof, the consistency proofs asked for by `trusted_sizes`, then that checkpoint.
  virtual Status ExportAudit(const RequestContext& ctx, const AuditExportRequest& req,
                             const ExportSink& sink) = 0;
  // Audit log proofs (action "audit.verify"; they reveal no PHI and are not audited).
  // A checkpoint: the newest stored one, or a fresh one if `fresh`.
  virtual StatusOr<std::string> AuditCheckpoint(const RequestContext& ctx, bool fresh) = 0;
  virtual StatusOr<InclusionProofResult> AuditInclusionProof(const RequestContext& ctx,
                                                             uint64_t seq,
                                                             std::optional<uint64_t> tree_size) = 0;
  virtual StatusOr<std::vector<std::string>> AuditConsistencyProof(const RequestContext& ctx,
                                                                   uint64_t size1,
                                                                   uint64_t size2) = 0;
  // Needs "audit.verify", or "certificate.read" (the key checks certificates of destruction).
  virtual StatusOr<std::string> AuditVerifierKey(const RequestContext& ctx) = 0;

  // ---- Access policy (docs/policy.md)
  // Reads the configuration's policy file again and puts it in force for every later request.
  // InvalidArgument containing kInvalidPolicyMessage (daemon/problem.h) and naming file, line
  // and rule if it does not validate: the old policy stays. A policy that differs from the last
  // one in force is audited (action policy.load, reason "sha256:<hex>") and kept in the history.
  // `ctx` null: the daemon itself (start-up, SIGHUP), which needs no permission.
  virtual StatusOr<PolicyInfo> ReloadPolicy(const RequestContext* ctx) = 0;
  // The policy in force at `at_unix_us` (now if unset), with its text. NotFound before the first.
  virtual StatusOr<PolicyInfo> PolicyAt(const RequestContext& ctx,
                                        std::optional<int64_t> at_unix_us) = 0;
  // Every version ever in force, oldest first (kept for good: at least the six years of
  // 45 CFR 164.316(b)(2)).
  virtual StatusOr<std::vector<PolicyInfo>> PolicyHistory(const RequestContext& ctx) = 0;
  // What the policy in force decides for `req` (a record's metadata is read, never its content).
  // Audited (policy.check).
  virtual StatusOr<PolicyCheckResult> CheckPolicy(const RequestContext& ctx,
                                                  const PolicyCheckRequest& req) = 0;

  // ---- Break-glass review
  // Closes windows that have expired (writing each one's end entry), then lists windows: all, or
  // only those ended and not yet signed off.
  virtual StatusOr<std::vector<BreakGlassWindow>> ReviewBreakGlass(const RequestContext& ctx,
                                                                   bool pending_only) = 0;
  // The compliance officer's sign-off on an ended window. Audited.
  virtual StatusOr<std::pair<BreakGlassWindow, uint64_t>> SignOffBreakGlass(
      const RequestContext& ctx, const std::string& window_id, const std::string& note) = 0;
  // Writes the end entry of every window that has expired (the daemon calls this periodically).
  virtual Status CloseExpiredBreakGlass() = 0;

  // ---- Patient rights
  virtual StatusOr<std::pair<Restriction, uint64_t>> AddRestriction(const RequestContext& ctx,
                                                                    Restriction draft) = 0;
  virtual StatusOr<std::vector<Restriction>> ListRestrictions(const RequestContext& ctx,
                                                              const std::string& patient_id,
                                                              bool include_ended) = 0;
  virtual StatusOr<std::pair<Restriction, uint64_t>> EndRestriction(const RequestContext& ctx,
                                                                    const std::string& patient_id,
                                                                    const std::string& id,
                                                                    const std::string& reason) = 0;
  // Streams the archive to `sink`; audited as a disclosure to the individual before the first
  // byte. The archive's manifest names the patient's confidential contact, if any.
  virtual Status ExportPatient(const RequestContext& ctx, const PatientExportRequest& req,
                               const ExportSink& sink) = 0;
  virtual StatusOr<std::pair<PatientRequest, uint64_t>> OpenPatientRequest(
      const RequestContext& ctx, const std::string& patient_id, const std::string& kind,
      const std::optional<std::string>& received, const std::string& note) = 0;
  virtual StatusOr<std::pair<PatientRequest, uint64_t>> ExtendPatientRequest(
      const RequestContext& ctx, const std::string& id, const std::string& reason) = 0;
  virtual StatusOr<std::pair<PatientRequest, uint64_t>> ClosePatientRequest(
      const RequestContext& ctx, const std::string& id, const std::string& outcome,
      const std::string& delivered, const std::string& note) = 0;
  virtual StatusOr<std::vector<PatientRequest>> ListPatientRequests(
      const RequestContext& ctx, const std::optional<std::string>& patient_id, bool overdue_only,
      bool include_closed) = 0;
  virtual StatusOr<uint64_t> SetContact(const RequestContext& ctx, ConfidentialContact contact) = 0;
  virtual StatusOr<ConfidentialContact> GetContact(const RequestContext& ctx,
                                                   const std::string& patient_id) = 0;

  // ---- Retention (docs/retention.md). Policy actions: patient facts "admin", holds "hold",
  // sweeps "sweep", certificates and retention views "audit".
  // Sets the patient's facts (audited, action patient.facts); the patient's records' expiry is
  // recomputed and their DEKs re-wrapped where it moved. Returns the facts now stored.
  virtual StatusOr<std::pair<PatientFacts, uint64_t>> SetPatientFacts(
      const RequestContext& ctx, const PatientFactsUpdate& update) = 0;
  // NotFound "no facts are recorded for this patient". Audited (patient.facts.show).
  virtual StatusOr<PatientFacts> GetPatientFacts(const RequestContext& ctx,
                                                 const std::string& patient_id) = 0;
  // Each of the patient's records with its retention as decided now. Audited (retention.show);
  // reveals no content.
  virtual StatusOr<std::vector<RecordRetention>> PatientRetention(
      const RequestContext& ctx, const std::string& patient_id) = 0;
  // The retention table in force. Not audited (no PHI).
  virtual StatusOr<RetentionTableInfo> RetentionRules(const RequestContext& ctx) = 0;

  // Places a legal hold (audited, hold.place): its records are re-wrapped under the hold's own
  // epoch key before this returns. InvalidArgument naming the field; NotFound "no such record"
  // for a listed record that is not the patient's.
  virtual StatusOr<std::pair<LegalHold, uint64_t>> PlaceHold(const RequestContext& ctx,
                                                             const PlaceHoldRequest& req) = 0;
  // Releases a hold (audited, hold.release): its records return to their retention epoch (or, if
  // that has passed, to the next sweep's), then the hold's key is destroyed. NotFound "no such
  // legal hold"; FailedPrecondition "legal hold already released".
  virtual StatusOr<std::pair<LegalHold, uint64_t>> ReleaseHold(const RequestContext& ctx,
                                                               const std::string& hold_id,
                                                               const std::string& reason) = 0;
  // Not audited beyond the action check (a hold list names patients only to holders of "hold").
  virtual StatusOr<std::vector<LegalHold>> ListHolds(const RequestContext& ctx,
                                                     const std::optional<std::string>& patient_id,
                                                     bool include_released) = 0;

  // A retention sweep (docs/destruction.md). `ctx` null: the daemon's scheduled sweep, as the
  // system principal "phivaultd:retention". Audited (retention.sweep, and record.shred per
  // patient). Fails closed: any step that cannot be confirmed fails the sweep (Unavailable /
  // DataLoss naming the step) and no certificate is issued; the next sweep completes it.
  // FailedPrecondition "a retention sweep is already running" if one is.
  virtual StatusOr<SweepResult> Sweep(const RequestContext* ctx, const SweepRequest& req,
                                      const SweepProgressFn& progress) = 0;
  // Certificates of destruction, newest first. Action certificate.read, policy action "audit".
  virtual StatusOr<std::vector<CertificateSummary>> ListCertificates(const RequestContext& ctx) = 0;
  // The signed note (storage/destruction_certificate.h). NotFound "no such certificate".
  virtual StatusOr<std::string> GetCertificate(const RequestContext& ctx,
                                               const std::string& certificate_id) = 0;

  // Makes a backup while the vault serves (storage/backup.h CreateBackup) under req.dir and
  // returns its manifest. Audited (backup.create, policy action "admin"). InvalidArgument for a
  // relative dir or one inside the data directory; FailedPrecondition while another backup runs;
  // the backup's errors otherwise. Services that cannot back up: FailedPrecondition.
  virtual StatusOr<storage::BackupManifest> CreateBackup(const RequestContext& ctx,
                                                         const BackupRequest& req) {
    (void)ctx;
    (void)req;
    return FailedPrecondition("this service cannot make backups");
  }
  // Appends the `backup.restore` audit entry for what a restore left in the data directory (or
  // for a marker that is not one), as the system principal "phivaultd:restore". The marker's
  // audit size and root are checked against the log now open and the entry says whether they
  // match; its other counts are recorded as what the restore reported. The ledger's status.
  virtual Status RecordRestore(const StatusOr<storage::RestoreMarker>& marker) {
    (void)marker;
    return FailedPrecondition("this service cannot record restores");
  }
  // Moves the records due for the archive tier (last access and the patient's last encounter
  // before today minus [archive] after_days) to the archive column family, each in one atomic
  // step, without decrypting their content (storage/records.h StageArchive); a dry run only
  // counts them. Audited (archive.run, policy action "admin"; the reason carries the counts and
  // no PHI). FailedPrecondition "no archive tier is configured ..." without after_days, or
  // "an archive run is already running". Services without it: FailedPrecondition.
  virtual StatusOr<ArchiveResult> RunArchive(const RequestContext& ctx, const ArchiveRequest& req) {
    (void)ctx;
    (void)req;
    return FailedPrecondition("this service cannot archive");
  }

  // Rotates the master key while the vault serves requests (audited, key.rotate; policy action
  // "admin"): the keyring — every slot and both headers, in the primary and every mirror — is
  // re-sealed under a new key; no record is touched. For the file and credential sources the
  // daemon makes the new key and writes it to crypto::PendingMasterKeyPath(data_dir) before the
  // keyring changes, so a crash at any point leaves a keyring that the old or the new key opens
  // and a daemon that finds it at its next start; for the passphrase source the key comes from
  // `req.new_passphrase`. FailedPrecondition "a key rotation is already running", or naming the
  // pending key of an earlier rotation that is not installed yet; InvalidArgument for a missing
  // or unexpected new_passphrase; Unavailable naming the keyring copy that failed (the message
  // says whether the new key took effect).
  virtual StatusOr<KeyRotateResult> RotateMasterKey(const RequestContext& ctx,
                                                    KeyRotateRequest req) = 0;

  // Audits a request that failed authentication or header validation before reaching one of
  // the methods above (`action` is the route's action). `count` > 1 summarises that many
  // rejected attempts in one entry. For an unauthenticated `ctx` (empty principal name) the
  // user, role and purpose are recorded as claimed, never as the acting identity; they must be
  // valid UTF-8 (the caller sanitises what it could not validate). Returns the ledger status.
  virtual Status AuditRejected(const RequestContext& ctx, const std::string& action,
                               const std::string& reason, uint64_t count = 1) = 0;
};

struct ServiceDeps {
  const Config* config;
  storage::Store* store;
  storage::Ledger* ledger;
  crypto::Keyring* keyring;
  storage::AuditLog* audit_log;  // proofs and checkpoints; may be null in tests of the record path
  // The policy to start with (daemon/policy_loader.h LoadAccessPolicy); null: the configuration's.
  std::shared_ptr<const policies::AccessPolicy> policy;
  // Unix microseconds now; null: the system clock. Tests move it to expire break-glass windows.
  std::function<int64_t()> clock;
  // The retention table to start with (daemon/retention_loader.h LoadRetention); unset: the
  // configuration's.
  std::optional<LoadedRetention> retention;
  // Tests only: called at each step of a real sweep ("recheck", "erase", "delete", "compact",
  // "verify", "audit", "certificate") before it runs; an error stops the sweep right there, as a
  // crash would, leaving its journal for the next sweep to complete.
  std::function<Status(std::string_view step)> sweep_fault;
};
// Loads the patient-rights state, puts the policy in force (auditing it if it is new), and closes
// break-glass windows that expired while the daemon was down. The store's or the state's error
// (DataLoss for a tampered value), or the policy's (InvalidArgument) otherwise.
StatusOr<std::unique_ptr<VaultService>> NewVaultService(const ServiceDeps& deps);

}  // namespace phivault::daemon
