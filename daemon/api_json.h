// The JSON side of the API: strict decoding of request bodies and encoding of responses.
//
// Request bodies must be a JSON object in valid UTF-8, with no duplicate or unknown members and
// every member of the documented type; each error is InvalidArgument naming the member (never
// its value, which may be PHI). Values the service layer takes as enums or numbers (formats,
// times, versions, the disclosure basis) are decoded here; other field contents (dates, content
// types, lengths, ...) are checked by the service layer, so that such rejections are audited.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "daemon/service.h"
#include "storage/records.h"

namespace phivault::daemon {

// True if `s` is well-formed UTF-8 (RFC 3629: no overlongs, surrogates or code points above
// U+10FFFF). `*error_at` gets the offset of the first bad byte.
bool IsValidUtf8(std::string_view s, size_t* error_at = nullptr);

// Parses a request body that must be one JSON object. InvalidArgument for invalid UTF-8,
// malformed JSON, a non-object, duplicate member names or nesting deeper than 8.
StatusOr<nlohmann::json> ParseJsonObject(std::string_view body);
// The fast path of the routes that carry record content (create, amend): the object `body` holds
// if it is an object of at most 16 distinct string members, in valid UTF-8, with no backslash-u
// escape and no NUL byte anywhere; std::nullopt for anything else, which ParseJsonObject then
// decides. Whatever it returns, ParseJsonObject returns too for the same body.
std::optional<nlohmann::json> FastFlatStringObject(std::string_view body);

// POST /v1/records. Exactly one of "content" (text) and "content_base64"; ResourceExhausted
// "content exceeds max_content_bytes" if the decoded content is larger than `max_content_bytes`.
StatusOr<CreateRecordRequest> DecodeCreateRecord(std::string_view body, uint64_t max_content_bytes);
// POST /v1/records/{id}/versions.
StatusOr<AmendRecordRequest> DecodeAmendRecord(std::string_view body, uint64_t max_content_bytes);
// POST /v1/records/_search: the patient id.
StatusOr<std::string> DecodeSearchRecords(std::string_view body);

// A time in a request body: RFC 3339 ("2026-11-29T15:47:09Z", fraction optional, "Z" or a
// numeric offset) or a bare date "YYYY-MM-DD" meaning 00:00:00Z. InvalidArgument naming `field`.
StatusOr<int64_t> ParseRequestTime(std::string_view field, std::string_view text);

// POST /v1/disclosures. "patient_id", "recipient_name" and "description" are required;
// "record_ids" (array of strings), "disclosed_at" (time), "recipient_address", "basis" (a
// policies::DisclosureKindName) and "purpose_statement" are optional.
StatusOr<RecordDisclosureRequest> DecodeRecordDisclosure(std::string_view body);

// POST /v1/records/{id}/disclosures: an optional "version" (1..4294967295) and the disclosure
// ("recipient_name", "description"; optional "recipient_address", "basis", "purpose_statement").
struct DiscloseRecordBody {
  std::optional<uint32_t> version;
  DisclosureInfo disclosure;
};
StatusOr<DiscloseRecordBody> DecodeDiscloseRecord(std::string_view body);

// POST /v1/disclosure-suspensions: "agency", "start" (time), "statement"; optional "end" (time)
// and "oral" (boolean, default false).
StatusOr<SuspensionRequest> DecodeSuspension(std::string_view body);

// POST /v1/reports/accounting: "patient_id"; optional "from" (time) and "format" ("json", "csv",
// "html"; default json).
StatusOr<ReportRequest> DecodeAccountingReport(std::string_view body);
// POST /v1/reports/access: "patient_id"; optional "format" as above.
StatusOr<ReportRequest> DecodeAccessReport(std::string_view body);

// POST /v1/audit/export: optional "format" ("jsonl", "fhir", "csv"; default jsonl), "from" and
// "to" (times; from before to), "patient_id", "user", "action", "outcome" (strings).
StatusOr<AuditExportRequest> DecodeAuditExport(std::string_view body);
// The Content-Type of an export in `format`.
std::string_view ExportContentType(ExportFormat format);

// ---- Issue 8: policy, break-glass review, patient rights (docs/api/openapi.json). Each decoder
// refuses unknown members and names the field it rejects, never its value.
StatusOr<PolicyCheckRequest> DecodePolicyCheck(std::string_view body);
// {"status": "pending"|"all"} (default pending): true for pending only.
StatusOr<bool> DecodeReviewQuery(std::string_view body);
// {"note": "..."} (required, 1..4096 bytes).
StatusOr<std::string> DecodeSignOff(std::string_view body);
StatusOr<Restriction> DecodeAddRestriction(std::string_view body);
struct RestrictionSearch {
  std::string patient_id;
  bool include_ended = false;
};
StatusOr<RestrictionSearch> DecodeRestrictionSearch(std::string_view body);
struct EndRestrictionBody {
  std::string patient_id;
  std::string reason;
};
StatusOr<EndRestrictionBody> DecodeEndRestriction(std::string_view body);
StatusOr<PatientExportRequest> DecodePatientExport(std::string_view body);
struct OpenRequestBody {
  std::string patient_id;
  std::string kind;
  std::optional<std::string> received;
  std::string note;
};
StatusOr<OpenRequestBody> DecodeOpenRequest(std::string_view body);
// {"reason": "..."}.
StatusOr<std::string> DecodeExtendRequest(std::string_view body);
struct CloseRequestBody {
  std::string outcome;
  std::string delivered;
  std::string note;
};
StatusOr<CloseRequestBody> DecodeCloseRequest(std::string_view body);
struct RequestSearch {
  std::optional<std::string> patient_id;
  bool overdue = false;
  bool include_closed = false;
};
StatusOr<RequestSearch> DecodeRequestSearch(std::string_view body);
StatusOr<ConfidentialContact> DecodeSetContact(std::string_view body);

nlohmann::json EncodePolicyInfo(const PolicyInfo& info, bool with_text);
nlohmann::json EncodePolicyCheck(const PolicyCheckResult& result);
nlohmann::json EncodeWindow(const BreakGlassWindow& window);
nlohmann::json EncodeRestriction(const Restriction& r);
nlohmann::json EncodePatientRequest(const PatientRequest& r, std::string_view today);
nlohmann::json EncodeContact(const ConfidentialContact& c);

// ---- Issue 9: retention, legal holds, sweeps, certificates (docs/api/openapi.json). Dates are
// passed on as given (YYYY-MM-DD; the service checks them, so that a refusal is audited).
// PUT /v1/patients/facts: "patient_id" and optional "date_of_birth", "date_of_death",
// "last_encounter": absent = keep, null or "" = clear (the update's ""), else the date.
StatusOr<PatientFactsUpdate> DecodePatientFacts(std::string_view body);
// POST /v1/holds: "patient_id", "matter", "reason", optional "record_ids".
StatusOr<PlaceHoldRequest> DecodePlaceHold(std::string_view body);
// POST /v1/holds/{id}/release: {"reason": "..."} (required).
StatusOr<std::string> DecodeReleaseHold(std::string_view body);
struct HoldSearch {
  std::optional<std::string> patient_id;
  bool include_released = false;
};
// POST /v1/holds/_search: optional "patient_id" and "include_released" (default false).
StatusOr<HoldSearch> DecodeHoldSearch(std::string_view body);
// POST /v1/retention/sweep: "dry_run" (required: a destroying sweep is only ever asked for in
// so many words) and optional "until".
StatusOr<SweepRequest> DecodeSweep(std::string_view body);
// POST /v1/keys/rotate: optional "new_passphrase" (the passphrase source), moved into locked
// memory; the parsed copies are wiped.
StatusOr<KeyRotateRequest> DecodeKeyRotate(std::string body);
// {"source","keyring_generation","keyring_copies","pending_key_path" (null for the passphrase
//  source),"audit_seq"}.
nlohmann::json EncodeKeyRotateResult(const KeyRotateResult& result);

// {"patient_id","date_of_birth","date_of_death","last_encounter" (each null when unknown),
//  "updated_at","updated_by"}.
nlohmann::json EncodePatientFacts(const PatientFacts& facts);
// {"record_id","versions","category","epoch_id","outcome","expires_on" (null unless known),
//  "reason","hold_ids"}.
nlohmann::json EncodeRecordRetention(const RecordRetention& r);
// {"preset","source","sha256","rules":[{"name","categories","basis","years",
//  "age_of_majority" (majority rules only),"source","origin"}]}.
nlohmann::json EncodeRetentionTable(const RetentionTableInfo& table);
// {"id","matter","reason","patient_id","scope","record_ids","placed_by","placed_at",
//  "released_at" (null while active),"released_by","release_reason","active"}.
nlohmann::json EncodeHold(const LegalHold& hold);
// {"phase","done","total"}.
nlohmann::json EncodeSweepProgress(const SweepProgress& progress);
// {"sweep_id","dry_run","until","destroyed":[{"record_id","versions","category","patient_bid",
//  "epoch_id","expires_on","reason"}],"destroyed_records","destroyed_versions",
//  "rewrapped_records","held_records","epochs_destroyed","resumed","certificate_id" (null when
//  none was issued),"verification_result","audit_seq"}.
nlohmann::json EncodeSweepResult(const SweepResult& result);
// {"id","started_at","finished_at","records","versions","patients","epoch_ids"}.
nlohmann::json EncodeCertificateSummary(const CertificateSummary& summary);

// A body that must be the empty object {} (routes whose body is optional).
Status DecodeEmptyObject(std::string_view body);

// "2026-11-29T15:47:09.123456Z".
std::string FormatRfc3339Micros(int64_t unix_us);

// {"record_id","version","patient_id","category","content_type","encounter_date","author",
//  "created","content_bytes"} plus "amendment_reason" for versions after the first. The epoch
// id is internal and never exposed.
nlohmann::json EncodeMetadata(const storage::RecordMetadata& meta);
// {"version","uptime_seconds","audit_entries","epochs","records","patients","synced_writes",
// "disk":{...}}.
nlohmann::json EncodeStatus(const VaultStatus& status);

// {"seq","leaf_index","tree_size","leaf_hash","path"} for the entry with sequence number `seq`.
nlohmann::json EncodeInclusionProof(uint64_t seq, const InclusionProofResult& proof);
// {"from","to","path"}.
nlohmann::json EncodeConsistencyProof(uint64_t from, uint64_t to,
                                      const std::vector<std::string>& path_hex);

// POST /v1/admin/backups: {"dir": absolute path of the backups directory}.
StatusOr<BackupRequest> DecodeBackupRequest(std::string_view body);
// {"id","path","vault_id","created","keyring_generation","audit_size","audit_root" (base64),
//  "verifier_key","files","bytes"} of a backup just made under `dir`.
nlohmann::json EncodeBackupManifest(const storage::BackupManifest& manifest,
                                    const std::string& dir);

// POST /v1/admin/archive/run: {"dry_run": bool} (required, as for a sweep).
StatusOr<ArchiveRequest> DecodeArchiveRequest(std::string_view body);
// {"dry_run","cutoff","audit_entries_read","examined_records","archived_records",
//  "archived_versions","already_archived","compacted","compaction_error" (string or null),
//  "audit_seq"}.
nlohmann::json EncodeArchiveResult(const ArchiveResult& result);

// Serialises a response document (UTF-8; invalid bytes, which cannot come from validated
// input, are replaced rather than thrown on).
std::string DumpJson(const nlohmann::json& j);

}  // namespace phivault::daemon
