// phivault::client — the one client library for phivaultd's socket API, used by the `phivault`
// CLI, the end-to-end tests and the benchmark.
//
// A Client speaks HTTP/1.1 over the daemon's Unix socket and nothing else: it never opens a
// network connection. It keeps one connection open between calls (keep-alive) and replaces it
// when the daemon has closed it. Every call returns a Result<T>: the value, or an Error carrying
// the HTTP status and the daemon's problem+json fields.
//
// Threads: a Client is NOT thread-safe; it owns one connection and calls on it are sequential.
// Use one Client per thread (they are cheap: a socket path, a token and one connection).
//
// SIGPIPE: the client writes with MSG_NOSIGNAL, so a daemon closing the socket never raises
// SIGPIPE in the calling process.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "crypto/secret.h"

namespace phivault::client {

// Who is acting and why; sent as X-Phivault-User / -Role / -Purpose on every call except
// Health. `request_id`, if set, is sent as X-Request-Id and echoed in the daemon's audit entry
// and problem responses. The optional fields are sent only when set; the daemon seals both
// into the audit entry.
struct Actor {
  std::string user;
  std::string role;
  std::string purpose = "TREAT";  // HL7 PurposeOfUse code
  std::string request_id;
  // X-Phivault-Break-Glass-Reason: why the emergency access is needed (1..512 bytes). Required
  // to open a break-glass window (purpose ETREAT or BTG).
  std::optional<std::string> break_glass_reason;
  // X-Phivault-Consent: the consent or authorization id (1..128 of [A-Za-z0-9._:/-]) that lets
  // the request reach consent-protected records (42 CFR Part 2).
  std::optional<std::string> consent;
};

// What went wrong, as precisely as the caller needs to decide what to do next.
enum class ErrorKind {
  kUnavailable,      // could not connect, connection lost, timed out, or 503 (audit unavailable)
  kInvalid,          // 400: the request was malformed or a field was out of range
  kUnauthenticated,  // 401: missing or bad token / unknown peer
  kForbidden,        // 403: authenticated but not allowed
  kNotFound,         // 404
  kConflict,         // 409: the state does not allow it (already signed off, ended, closed...)
  kInvalidPolicy,    // 422: the policy file is invalid (detail names file:line and rule)
  kShredded,         // 410: the record existed and was destroyed
  kTooLarge,         // 413
  kIntegrity,        // 500 with type integrity-failure: stored bytes failed authentication
  kDiskFull,         // 507: the daemon's disk is below its reserve
  kServer,           // any other non-2xx response
  kProtocol,         // the daemon's response could not be understood
  kClient,           // the request could not be built (e.g. socket path too long)
};

// Stable lowercase name, e.g. "not-found".
std::string_view ErrorKindName(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::kServer;
  int http_status = 0;     // 0 when no HTTP response was received
  std::string type;        // problem type URN ("urn:phivault:problem:forbidden"); may be empty
  std::string title;       // short, human readable; never empty
  std::string detail;      // may be empty
  std::string request_id;  // as reported by the daemon; may be empty
  std::string rule;        // 403: the policy rule that decided ("restriction:r_1"); may be empty
  // 410 of a record a retention sweep destroyed: that sweep's certificate of destruction (32 hex
  // digits, for GetCertificate); may be empty.
  std::string certificate;

  // "<title>: <detail>", or "<title>" when there is no detail; then " (rule: <rule>)" if known.
  std::string Message() const;
  // The closest phivault::Status (e.g. kForbidden -> PermissionDenied), message = Message().
  phivault::Status ToStatus() const;
};

// A value or an Error. Accessing the value of an error aborts (std::get).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Error& error() const { return std::get<Error>(v_); }
  // HTTP status of the failure, 0 for success or when no response was received.
  int http_status() const { return ok() ? 0 : error().http_status; }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> v_;
};

// Success without a value.
struct Empty {};

struct DiskStatus {
  uint64_t free_bytes = 0;
  uint64_t reserve_bytes = 0;
  uint64_t live_data_bytes = 0;  // table_bytes + blob_bytes + log_bytes
  uint64_t table_bytes = 0;
  uint64_t blob_bytes = 0;
  uint64_t log_bytes = 0;
};

struct VaultStatus {
  std::string version;
  int64_t uptime_seconds = 0;
  uint64_t audit_entries = 0;
  uint64_t epochs = 0;
  uint64_t records = 0;
  uint64_t patients = 0;
  DiskStatus disk;
};

struct RecordMetadata {
  std::string record_id;
  uint32_t version = 0;
  std::string patient_id;
  std::string category;
  std::string content_type;
  std::string encounter_date;  // YYYY-MM-DD
  std::string author;
  std::string created;  // RFC 3339, microseconds, UTC
  uint64_t content_bytes = 0;
  std::string amendment_reason;  // empty for version 1
};

struct Record {
  RecordMetadata metadata;
  std::string content;    // raw bytes
  bool archived = false;  // read from the archive tier (docs/archive.md)
};

// Raw content as served by GET /v1/records/{id}/content.
struct Content {
  std::string content_type;
  std::string bytes;
};

struct NewRecord {
  std::string patient_id;
  std::string category;
  std::string content_type;
  std::string encounter_date;  // YYYY-MM-DD
  std::string author;
  std::string content;  // raw bytes; always sent base64-encoded, so binary is fine
};

struct Amendment {
  std::string reason;
  std::string content;                      // raw bytes
  std::optional<std::string> content_type;  // default: the previous version's
  std::optional<std::string> encounter_date;
  std::optional<std::string> author;
};

// A disclosure of PHI to someone outside the vault (45 CFR 164.528). Times are RFC 3339 UTC
// ("2026-11-29T15:47:09Z") or a bare date YYYY-MM-DD meaning 00:00:00Z; the daemon checks them.
struct Disclosure {
  std::string recipient_name;
  std::optional<std::string> recipient_address;
  std::optional<std::string> basis;  // e.g. "public_health"; default: derived from `purpose`
  // HL7 PurposeOfUse of the disclosure itself; default: the basis's code (or, for a read that
  // discloses, the read's purpose). Never the purpose of the user who records it.
  std::optional<std::string> purpose;
  std::string description;  // brief description of the PHI disclosed
  std::optional<std::string> purpose_statement;
};

// A disclosure made outside the vault (paper, fax, phone), recorded for the accounting.
struct DisclosureRecord {
  std::string patient_id;
  std::vector<std::string> record_ids;      // optional: the records disclosed
  std::optional<std::string> disclosed_at;  // default: now
  Disclosure disclosure;
};

// A request by an agency to suspend a patient's right to an accounting of disclosures to it.
struct Suspension {
  std::string agency;
  std::string start;
  std::optional<std::string> end;  // required by the daemon unless oral
  bool oral = false;
  std::string statement;
};

// A rendered report (accounting of disclosures, access report) as the daemon sent it.
struct Report {
  std::string content_type;
  std::string body;
};

// Filters and format of an audit export; unset fields are not sent.
struct AuditExportQuery {
  std::string format = "jsonl";     // "jsonl", "fhir" or "csv"
  std::optional<std::string> from;  // inclusive
  std::optional<std::string> to;    // exclusive
  std::optional<std::string> patient_id;
  std::optional<std::string> user;
  std::optional<std::string> action;
  std::optional<std::string> outcome;
  // Sizes of checkpoints the caller already holds: a filtered JSON Lines export then carries a
  // consistency proof from each to its own checkpoint (sent as ?trusted_size=N, repeated).
  std::vector<uint64_t> trusted_sizes;
};

struct ExportInfo {
  std::string content_type;
  uint64_t bytes = 0;  // body bytes delivered to the sink
};

// Receives a streamed response body in pieces as they arrive. Returning false stops the
// transfer: the call then fails with kClient "output failed" and the connection is dropped.
using ChunkSink = std::function<bool(std::string_view chunk)>;

// GET /v1/audit/proofs/inclusion. Hashes are lowercase hex as the daemon sent them (checked to be
// 64 hex digits each).
struct InclusionProofResult {
  uint64_t seq = 0;
  uint64_t leaf_index = 0;  // seq - 1
  uint64_t tree_size = 0;
  std::string leaf_hash_hex;
  std::vector<std::string> path_hex;
};

// GET /v1/audit/proofs/consistency.
struct ConsistencyProofResult {
  uint64_t from = 0;
  uint64_t to = 0;
  std::vector<std::string> path_hex;
};

// JSON forms, exactly as the daemon's API spells them (for `--json` output and tests).
nlohmann::json ToJson(const RecordMetadata& m);
nlohmann::json ToJson(const VaultStatus& s);
nlohmann::json ToJson(const InclusionProofResult& p);
nlohmann::json ToJson(const ConsistencyProofResult& p);
// Parses the daemon's metadata object. kProtocol Error naming the missing/ill-typed field.
Result<RecordMetadata> MetadataFromJson(const nlohmann::json& j);

// POST /v1/records/_search: what the caller may see of a patient's records.
struct PatientRecords {
  std::vector<RecordMetadata> records;  // latest version of each
  uint64_t withheld = 0;                // records of the patient the policy keeps from the caller
};

// ---- access policy (issue 8) ----

// POST /v1/policy/reload.
struct PolicyReloadResult {
  std::string name;
  std::string sha256;
  uint64_t rules = 0;
  bool changed = false;  // false: the file was the policy already in force
  uint64_t audit_seq = 0;
};

// A policy version: GET /v1/policy (with `text`) or an entry of GET /v1/policy/history
// (`text` empty). Times RFC 3339 UTC.
struct PolicyVersion {
  std::string name;
  std::string sha256;
  std::string in_force_from;
  std::optional<std::string> in_force_until;  // nullopt: still in force
  uint64_t audit_seq = 0;
  std::string text;
};

// POST /v1/policy/check: what the policy in force decides for a user, without acting. Either
// `record_id` (decided on its metadata; `version` default latest) or `category`.
struct PolicyCheckQuery {
  std::string as_user;
  std::string role;
  std::string purpose;
  std::string action;  // a policy action: read, list, disclose, ...
  std::optional<std::string> record_id;
  std::optional<uint32_t> version;
  std::optional<std::string> category;
  bool author = false;  // with `category`: as if as_user were the record's author
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

// One break-glass window, from POST /v1/audit/review.
struct BreakGlassEvent {
  std::string id;
  std::string user;
  std::string role;
  std::string application;
  std::string patient_id;
  std::string reason;
  std::string opened;
  std::string expires;
  std::optional<std::string> closed;
  uint64_t accesses = 0;
  std::string status;  // "open", "pending" (ended, not signed off) or "signed_off"
  std::optional<std::string> signed_off_by;
  std::optional<std::string> signed_off_at;
  std::optional<std::string> note;
};

struct SignOffResult {
  std::string id;
  std::string signed_off_by;
  std::string signed_off_at;
  uint64_t audit_seq = 0;
};

// A restriction of uses and disclosures the practice agreed to (45 CFR 164.522(a)). No
// record_ids and no categories: it covers all of the patient's records.
struct NewRestriction {
  std::string patient_id;
  std::vector<std::string> purposes;  // HL7 PurposeOfUse codes; required, non-empty
  std::vector<std::string> record_ids;
  std::vector<std::string> categories;
  std::string recipient;
  std::optional<std::string> note;
};

struct Restriction {
  std::string id;
  std::vector<std::string> purposes;
  std::vector<std::string> record_ids;
  std::vector<std::string> categories;
  std::string recipient;
  std::optional<std::string> note;
  std::string created;
  std::string created_by;
  std::optional<std::string> ended;
  std::optional<std::string> ended_by;
  std::optional<std::string> end_reason;
};

// What an audited creation returns: the new object's id and its audit entry.
struct Created {
  std::string id;
  uint64_t audit_seq = 0;
};

struct RestrictionEnded {
  std::string id;
  std::string ended;
  uint64_t audit_seq = 0;
};

// A patient's request under 45 CFR 164.524/.526/.528 and its deadline.
struct NewPatientRequest {
  std::string patient_id;
  std::string kind;                     // "access", "amendment" or "accounting"
  std::optional<std::string> received;  // YYYY-MM-DD; default today
  std::optional<std::string> note;
};

struct PatientRequestOpened {
  std::string id;
  std::string due;  // YYYY-MM-DD
  uint64_t audit_seq = 0;
};

struct PatientRequestExtended {
  std::string id;
  std::string due;
};

struct PatientRequestClosure {
  std::string outcome;    // "fulfilled" or "denied"
  std::string delivered;  // an export's sha256, a report's audit seq, a record@version
  std::optional<std::string> note;
};

struct PatientRequestClosed {
  std::string id;
  std::string closed;
  uint64_t audit_seq = 0;
};

struct PatientRequestQuery {
  std::optional<std::string> patient_id;  // default: every patient's
  bool overdue = false;                   // only requests past their due date
  bool include_closed = false;
};

struct PatientRequest {
  std::string id;
  std::string patient_id;
  std::string kind;
  std::string received;
  std::string due;
  bool extended = false;
  std::optional<std::string> extension_reason;
  std::string status;  // "open" or "closed"
  std::optional<std::string> outcome;
  std::optional<std::string> closed;
  std::optional<std::string> delivered;
  bool overdue = false;
};

// Where a patient asked to be contacted (45 CFR 164.522(b)).
struct ConfidentialContact {
  std::string patient_id;
  std::string address;
  std::string channel;  // "mail", "email", "phone" or "portal"
  std::optional<std::string> note;
  std::string updated;  // as read back; not sent
};

// ---- retention, legal holds, sweeps, certificates (issue 9) ----

// The facts retention rules read (dates YYYY-MM-DD; nullopt: not known).
struct PatientFacts {
  std::string patient_id;
  std::optional<std::string> date_of_birth;
  std::optional<std::string> date_of_death;
  std::optional<std::string> last_encounter;
  std::string updated_at;  // RFC 3339 UTC
  std::string updated_by;
};

// PUT /v1/patients/facts. Each date: nullopt keeps what is stored, "" clears it (sent as null),
// anything else is sent as the date (the daemon checks it).
struct PatientFactsChange {
  std::string patient_id;
  std::optional<std::string> date_of_birth;
  std::optional<std::string> date_of_death;
  std::optional<std::string> last_encounter;
};

struct PatientFactsSet {
  PatientFacts facts;
  uint64_t audit_seq = 0;
};

// One record's retention as the table in force decides it now.
struct RecordRetention {
  std::string record_id;
  uint32_t versions = 0;
  std::string category;
  std::string epoch_id;
  std::string outcome;                    // "expires", "permanent", "held" or "undetermined"
  std::optional<std::string> expires_on;  // YYYY-MM-DD
  std::string reason;                     // the deciding rules in words
  std::vector<std::string> hold_ids;      // active legal holds covering it
};

struct RetentionRule {
  std::string name;
  std::vector<std::string> categories;  // or {"*"}
  std::string basis;                    // "service", "last_encounter", "majority", "death", ...
  int years = 0;
  std::optional<int> age_of_majority;  // majority rules only
  std::string source;                  // the legal source
  std::string origin;                  // <file>:<line>
};

struct RetentionRules {
  std::string preset;
  std::string source;
  std::string sha256;
  std::vector<RetentionRule> rules;
};

// POST /v1/holds. No record_ids: every record of the patient, now and later.
struct NewHold {
  std::string patient_id;
  std::string matter;
  std::string reason;
  std::vector<std::string> record_ids;
};

struct LegalHold {
  std::string id;
  std::string matter;
  std::string reason;
  std::string patient_id;
  std::string scope;  // "patient" or "records"
  std::vector<std::string> record_ids;
  std::string placed_by;
  std::string placed_at;
  std::optional<std::string> released_at;  // nullopt while active
  std::string released_by;
  std::string release_reason;
  bool active = true;
};

// A placed or released hold and the audit entry that recorded it.
struct HoldChanged {
  LegalHold hold;
  uint64_t audit_seq = 0;
};

// One progress line of a streamed sweep: phase "plan", "recheck", "erase", "delete", "compact",
// "verify", "audit", "certificate" or "done", with `done` of `total` steps of that phase.
struct SweepProgress {
  std::string phase;
  uint64_t done = 0;
  uint64_t total = 0;
};
using SweepProgressCallback = std::function<void(const SweepProgress&)>;

// A record a sweep destroyed (dry run: would destroy). Patients appear only as blind ids.
struct SweepCandidate {
  std::string record_id;
  uint32_t versions = 0;
  std::string category;
  std::string patient_bid;
  std::string epoch_id;
  std::string expires_on;
  std::string reason;
};

struct SweepResult {
  std::string sweep_id;
  bool dry_run = true;
  std::string until;
  std::vector<SweepCandidate> destroyed;
  uint64_t destroyed_records = 0;
  uint64_t destroyed_versions = 0;
  uint64_t rewrapped_records = 0;
  uint64_t held_records = 0;
  std::vector<std::string> epochs_destroyed;
  bool resumed = false;
  std::optional<std::string> certificate_id;  // nullopt: none was issued
  std::string verification_result;
  uint64_t audit_seq = 0;
};

struct CertificateSummary {
  std::string id;
  std::string started_at;
  std::string finished_at;
  uint64_t records = 0;
  uint64_t versions = 0;
  uint64_t patients = 0;
  std::vector<std::string> epoch_ids;
};

// A backup the daemon made (POST /v1/admin/backups; docs/backups.md).
struct BackupCreated {
  std::string id;
  std::string path;  // the backup's directory
  std::string vault_id;
  std::string created;
  uint64_t keyring_generation = 0;
  uint64_t audit_size = 0;
  std::string audit_root;  // base64
  std::string verifier_key;
  uint64_t files = 0;
  uint64_t bytes = 0;
  uint64_t shared_bytes = 0;  // of `bytes`, hard-linked from earlier backups in the directory
};
nlohmann::json ToJson(const BackupCreated& b);

// An archive run (POST /v1/admin/archive/run; docs/archive.md).
struct ArchiveRun {
  bool dry_run = true;
  std::string cutoff;  // YYYY-MM-DD
  uint64_t audit_entries_read = 0;
  uint64_t examined_records = 0;
  uint64_t archived_records = 0;  // dry run: due
  uint64_t archived_versions = 0;
  uint64_t already_archived = 0;
  bool compacted = false;
  std::string compaction_error;  // empty if none
  uint64_t audit_seq = 0;
};
nlohmann::json ToJson(const ArchiveRun& r);

// The forms GET /v1/certificates/{id} comes in: the signed note (what `certificate verify`
// checks), or, verified by the daemon first, its printable HTML or JSON rendering.
enum class CertificateFormat { kNote, kHtml, kJson };

nlohmann::json ToJson(const PatientFacts& f);
nlohmann::json ToJson(const RecordRetention& r);
nlohmann::json ToJson(const RetentionRules& r);
nlohmann::json ToJson(const LegalHold& h);
nlohmann::json ToJson(const SweepProgress& p);
nlohmann::json ToJson(const SweepResult& r);
nlohmann::json ToJson(const CertificateSummary& c);

nlohmann::json ToJson(const PolicyVersion& v);
nlohmann::json ToJson(const PolicyCheckResult& r);
nlohmann::json ToJson(const BreakGlassEvent& e);
nlohmann::json ToJson(const Restriction& r);
nlohmann::json ToJson(const PatientRequest& r);
nlohmann::json ToJson(const ConfidentialContact& c);

struct ClientOptions {
  std::string socket_path;
  std::string token;  // bearer token; empty for operators (recognised by peer uid)
  // Per-operation limit on connecting, sending and waiting for each chunk of the response.
  std::chrono::milliseconds timeout{60000};
  // Responses larger than this are refused as kProtocol (content is at most 64 MiB, which is
  // about 85 MiB as base64 in JSON).
  uint64_t max_response_bytes = 128ull << 20;
};

// POST /v1/keys/rotate's answer (docs/keys.md).
struct KeyRotation {
  std::string source;  // "file", "credential" or "passphrase"
  uint64_t keyring_generation = 0;
  uint64_t keyring_copies = 0;
  std::optional<std::string> pending_key_path;  // where the new key waits to be installed
  uint64_t audit_seq = 0;
};

class Client {
 public:
  // Does not connect: the first call does. Never fails.
  explicit Client(ClientOptions options);
  Client(const std::string& socket_path, std::string token = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  // GET /v1/health: no actor headers, no token needed. Ok if the daemon answers {"status":"ok"}.
  Result<Empty> Health();
  // Calls Health every 10 ms until it succeeds or `timeout` has passed (for tests and scripts
  // that have just started the daemon). Returns the last failure on timeout.
  Result<Empty> WaitUntilHealthy(std::chrono::milliseconds timeout);
  // GET /v1/status.
  Result<VaultStatus> Status(const Actor& actor);
  // POST /v1/records: stores version 1 and returns its metadata.
  Result<RecordMetadata> CreateRecord(const Actor& actor, const NewRecord& record);
  // GET /v1/records/{id}[?version=N]: metadata and content in one audited read.
  Result<Record> ReadRecord(const Actor& actor, const std::string& record_id,
                            std::optional<uint32_t> version = std::nullopt);
  // GET /v1/records/{id}/content: the raw bytes and their content type.
  Result<Content> ReadContent(const Actor& actor, const std::string& record_id,
                              std::optional<uint32_t> version = std::nullopt);
  // GET /v1/records/{id}/metadata.
  Result<RecordMetadata> ReadMetadata(const Actor& actor, const std::string& record_id,
                                      std::optional<uint32_t> version = std::nullopt);
  // POST /v1/records/{id}/versions: adds a version and returns its metadata.
  Result<RecordMetadata> AmendRecord(const Actor& actor, const std::string& record_id,
                                     const Amendment& amendment);
  // POST /v1/records/_search: metadata of the latest version of each of a patient's records.
  Result<std::vector<RecordMetadata>> SearchPatient(const Actor& actor,
                                                    const std::string& patient_id);
  // As SearchPatient, with the number of records the policy withholds from the caller.
  Result<PatientRecords> SearchPatientRecords(const Actor& actor, const std::string& patient_id);

  // POST /v1/records/{id}/disclosures: reads a version (latest if none given) and records its
  // disclosure to `disclosure.recipient_name` in the same audited call.
  Result<Record> DiscloseRecord(const Actor& actor, const std::string& record_id,
                                std::optional<uint32_t> version, const Disclosure& disclosure);
  // POST /v1/disclosures: records a disclosure made outside the vault; returns its audit seq.
  Result<uint64_t> RecordDisclosure(const Actor& actor, const DisclosureRecord& record);
  // POST /v1/disclosure-suspensions: records an accounting suspension; returns its audit seq.
  Result<uint64_t> AddSuspension(const Actor& actor, const Suspension& suspension);
  // POST /v1/reports/accounting: the patient's accounting of disclosures in `format` ("json",
  // "csv" or "html"), from `from` (default: six years back).
  Result<Report> AccountingReport(const Actor& actor, const std::string& patient_id,
                                  const std::optional<std::string>& from,
                                  const std::string& format = "json");
  // POST /v1/reports/access: the patient's access report in `format`.
  Result<Report> AccessReport(const Actor& actor, const std::string& patient_id,
                              const std::string& format = "json");

  // POST /v1/audit/export[?trusted_size=N...], streamed: each piece of the body goes to `sink` as
  // it arrives, so an export of any size needs constant memory (max_response_bytes does not apply).
  // kUnavailable "response incomplete" if the daemon ends the body early (it cuts the connection
  // when the export fails after it began): whatever reached the sink is then a truncated export.
  Result<ExportInfo> ExportAudit(const Actor& actor, const AuditExportQuery& query,
                                 const ChunkSink& sink);
  // As above, writing to `out`; fails with kClient "output failed" when `out` goes bad.
  Result<ExportInfo> ExportAudit(const Actor& actor, const AuditExportQuery& query,
                                 std::ostream& out);

  // GET /v1/audit/pubkey: the signed-note verifier key of the audit checkpoints.
  Result<std::string> AuditVerifierKey(const Actor& actor);
  // GET /v1/audit/checkpoint (newest stored; kNotFound if none yet) or, if `fresh`, POST
  // /v1/audit/checkpoints (signs one now; 409 kConflict if the log is empty). The signed note.
  Result<std::string> AuditCheckpoint(const Actor& actor, bool fresh = false);
  // GET /v1/audit/proofs/inclusion: entry `seq` in the tree of `tree_size` leaves (default: the
  // current tree). kProtocol if the answer is for another entry or a hash is malformed.
  Result<InclusionProofResult> InclusionProof(const Actor& actor, uint64_t seq,
                                              std::optional<uint64_t> tree_size = std::nullopt);
  // GET /v1/audit/proofs/consistency: the tree of `from` leaves is a prefix of that of `to`.
  Result<ConsistencyProofResult> ConsistencyProof(const Actor& actor, uint64_t from, uint64_t to);

  // POST /v1/policy/reload: re-reads the policy file. kInvalidPolicy (detail "<file>:<line>: rule
  // '<name>': <what>") if the file is invalid; the policy in force then stays.
  Result<PolicyReloadResult> ReloadPolicy(const Actor& actor);
  // GET /v1/policy[?at=...]: the policy in force now or at `at` (RFC 3339 or YYYY-MM-DD), with
  // its text. kNotFound if none was in force then.
  Result<PolicyVersion> ShowPolicy(const Actor& actor,
                                   const std::optional<std::string>& at = std::nullopt);
  // GET /v1/policy/history: every version that was in force, oldest first (text empty).
  Result<std::vector<PolicyVersion>> PolicyHistory(const Actor& actor);
  // POST /v1/policy/check: the decision the policy in force makes for `query` (audited).
  Result<PolicyCheckResult> CheckPolicy(const Actor& actor, const PolicyCheckQuery& query);

  // POST /v1/audit/review: break-glass windows awaiting review, or all of them.
  Result<std::vector<BreakGlassEvent>> ListBreakGlassEvents(const Actor& actor,
                                                            bool include_all = false);
  // POST /v1/audit/review/{id}/sign-off. kConflict if already signed off or still open.
  Result<SignOffResult> SignOffBreakGlass(const Actor& actor, const std::string& event_id,
                                          const std::string& note);

  // POST /v1/restrictions.
  Result<Created> AddRestriction(const Actor& actor, const NewRestriction& restriction);
  // POST /v1/restrictions/_search: the patient's restrictions in force (and ended ones too).
  Result<std::vector<Restriction>> ListRestrictions(const Actor& actor,
                                                    const std::string& patient_id,
                                                    bool include_ended = false);
  // POST /v1/restrictions/{id}/end. kConflict if already ended.
  Result<RestrictionEnded> EndRestriction(const Actor& actor, const std::string& patient_id,
                                          const std::string& restriction_id,
                                          const std::string& reason);

  // POST /v1/patients/export, streamed as ExportAudit: the tar of the patient's designated
  // record set (manifest.json and records/). `request_id`: the patient request it fulfils. The
  // actor's purpose should be PATRQT.
  Result<ExportInfo> ExportPatient(const Actor& actor, const std::string& patient_id,
                                   const std::optional<std::string>& request_id,
                                   const ChunkSink& sink);
  Result<ExportInfo> ExportPatient(const Actor& actor, const std::string& patient_id,
                                   const std::optional<std::string>& request_id, std::ostream& out);

  // POST /v1/patient-requests: opens a request and returns its due date.
  Result<PatientRequestOpened> OpenPatientRequest(const Actor& actor,
                                                  const NewPatientRequest& request);
  // POST /v1/patient-requests/{id}/extend: +30 days, once (kConflict the second time or
  // once closed).
  Result<PatientRequestExtended> ExtendPatientRequest(const Actor& actor,
                                                      const std::string& request_id,
                                                      const std::string& reason);
  // POST /v1/patient-requests/{id}/close. kConflict if already closed.
  Result<PatientRequestClosed> ClosePatientRequest(const Actor& actor,
                                                   const std::string& request_id,
                                                   const PatientRequestClosure& closure);
  // POST /v1/patient-requests/_search.
  Result<std::vector<PatientRequest>> ListPatientRequests(const Actor& actor,
                                                          const PatientRequestQuery& query);

  // PUT /v1/patients/contact: sets (replaces) where the patient is to be contacted; returns
  // the audit seq. `contact.updated` is not sent.
  Result<uint64_t> SetContact(const Actor& actor, const ConfidentialContact& contact);
  // POST /v1/patients/contact/_get. kNotFound if the patient asked for none.
  Result<ConfidentialContact> GetContact(const Actor& actor, const std::string& patient_id);

  // PUT /v1/patients/facts: sets (or, with "", clears) the facts retention rules read; returns
  // the facts as now stored and the audit seq.
  Result<PatientFactsSet> SetPatientFacts(const Actor& actor, const PatientFactsChange& change);
  // POST /v1/patients/facts/_get. kNotFound if none were ever set.
  Result<PatientFacts> GetPatientFacts(const Actor& actor, const std::string& patient_id);
  // POST /v1/retention/_patient: each of the patient's records with its retention now.
  Result<std::vector<RecordRetention>> PatientRetention(const Actor& actor,
                                                        const std::string& patient_id);
  // GET /v1/retention/rules: the retention table in force.
  Result<RetentionRules> GetRetentionRules(const Actor& actor);

  // POST /v1/holds. kNotFound if a listed record is not the patient's.
  Result<HoldChanged> PlaceHold(const Actor& actor, const NewHold& hold);
  // POST /v1/holds/{id}/release. kNotFound for an unknown hold, kConflict if already released.
  Result<HoldChanged> ReleaseHold(const Actor& actor, const std::string& hold_id,
                                  const std::string& reason);
  // POST /v1/holds/_search: active holds (and released ones too), of one patient or all.
  Result<std::vector<LegalHold>> ListHolds(const Actor& actor,
                                           const std::optional<std::string>& patient_id,
                                           bool include_released = false);

  // POST /v1/retention/sweep, one JSON answer when the sweep is over. `dry_run` false destroys.
  // kConflict if a sweep is already running.
  Result<SweepResult> Sweep(const Actor& actor, bool dry_run,
                            const std::optional<std::string>& until);
  // As above, streamed (Accept: application/x-ndjson): `on_progress` is called for each progress
  // line as it arrives. A sweep that fails after it began fails with the Error of the problem in
  // its last line; kUnavailable if the stream ends without a result.
  Result<SweepResult> Sweep(const Actor& actor, bool dry_run,
                            const std::optional<std::string>& until,
                            const SweepProgressCallback& on_progress);

  // GET /v1/certificates: certificates of destruction, newest first.
  Result<std::vector<CertificateSummary>> ListCertificates(const Actor& actor);
  // GET /v1/certificates/{id} in `format` (body and content type as sent). kNotFound; for kHtml
  // and kJson kIntegrity if the note does not verify with the daemon's audit verifier key.
  Result<Report> GetCertificate(const Actor& actor, const std::string& certificate_id,
                                CertificateFormat format = CertificateFormat::kNote);

  // POST /v1/admin/backups: the daemon backs the vault up, while serving, into a new directory
  // under `dir` (absolute, on the daemon's machine) and returns what it made.
  Result<BackupCreated> CreateBackup(const Actor& actor, const std::string& dir);
  // As above, streamed (Accept: application/x-ndjson) as Sweep is: `on_progress` is called for
  // each progress line ("checkpoint", then "backup" in bytes).
  Result<BackupCreated> CreateBackup(const Actor& actor, const std::string& dir,
                                     const SweepProgressCallback& on_progress);
  // POST /v1/admin/archive/run: moves the records due to the archive tier (a dry run counts
  // them). kConflict if a run is already going or no archive tier is configured.
  Result<ArchiveRun> RunArchive(const Actor& actor, bool dry_run);
  // POST /v1/keys/rotate: re-seals the keyring under a new master key. `new_passphrase` only for
  // a daemon whose key comes from a passphrase (sent from locked memory, JSON-escaped there).
  // kConflict if a rotation is running or an earlier one's key is not installed yet.
  Result<KeyRotation> RotateMasterKey(const Actor& actor,
                                      const crypto::SecretBytes* new_passphrase = nullptr);

  // Number of connections opened so far (keep-alive observability for tests and benchmarks).
  uint64_t connections_opened() const;
  // Closes the kept-alive connection, if any; the next call reconnects.
  void Disconnect();

  // A raw HTTP response, for tests of the API surface that the typed calls do not cover.
  struct RawResponse {
    int status = 0;
    std::string content_type;
    std::string body;
  };
  // Sends `method path` with the actor headers (unless `actor` is null) and `body` (JSON if
  // non-empty). Fails only when no complete HTTP response was received (kUnavailable,
  // kProtocol); non-2xx statuses are returned as RawResponse.
  Result<RawResponse> Send(const std::string& method, const std::string& path, const Actor* actor,
                           const std::string& body = {});

 private:
  class Connection;
  // One request/response. The body of a 2xx response goes to `sink` if it is set (RawResponse
  // body left empty), otherwise into RawResponse::body. `accept`: the Accept header (default:
  // JSON, problems, anything).
  Result<RawResponse> Exchange(const std::string& method, const std::string& path,
                               const Actor* actor, const std::vector<std::string_view>& body,
                               const ChunkSink* sink = nullptr, std::string_view accept = {});
  Result<Connection*> Connect();

  ClientOptions options_;
  std::unique_ptr<Connection> connection_;
  uint64_t connections_opened_ = 0;
};

// Maps a non-2xx response to an Error (problem+json parsed when present).
Error ErrorFromResponse(int http_status, const std::string& content_type, const std::string& body);

}  // namespace phivault::client
