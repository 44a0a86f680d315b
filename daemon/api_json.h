// The JSON side of the API: strict decoding of request bodies and encoding of responses.
//
// Request bodies must be a JSON object in valid UTF-8, with no duplicate or unknown members and
// every member of the documented type; each error is InvalidArgument naming the member (never
// its value, which may be PHI). Field contents (dates, content types, ...) are checked by the
// service layer, so that such rejections are audited.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "crypto/status.h"
#include "daemon/service.h"
#include "storage/records.h"

namespace phivault::daemon {

// True if `s` is well-formed UTF-8 (RFC 3629: no overlongs, surrogates or code points above
// U+10FFFF). `*error_at` gets the offset of the first bad byte.
bool IsValidUtf8(std::string_view s, size_t* error_at = nullptr);

// Parses a request body that must be one JSON object. InvalidArgument for invalid UTF-8,
// malformed JSON, a non-object, duplicate member names or nesting deeper than 8.
StatusOr<nlohmann::json> ParseJsonObject(std::string_view body);

// POST /v1/records. Exactly one of "content" (text) and "content_base64"; ResourceExhausted
// "content exceeds max_content_bytes" if the decoded content is larger than `max_content_bytes`.
StatusOr<CreateRecordRequest> DecodeCreateRecord(std::string_view body, uint64_t max_content_bytes);
// POST /v1/records/{id}/versions.
StatusOr<AmendRecordRequest> DecodeAmendRecord(std::string_view body, uint64_t max_content_bytes);
// POST /v1/records/_search: the patient id.
StatusOr<std::string> DecodeSearchRecords(std::string_view body);

// "2026-11-29T15:47:09.123456Z".
std::string FormatRfc3339Micros(int64_t unix_us);

// {"record_id","version","patient_id","category","content_type","encounter_date","author",
//  "created","content_bytes"} plus "amendment_reason" for versions after the first. The epoch
// id is internal and never exposed.
nlohmann::json EncodeMetadata(const storage::RecordMetadata& meta);
// {"version","uptime_seconds","audit_entries","epochs","disk":{...}}.
nlohmann::json EncodeStatus(const VaultStatus& status);

// Serialises a response document (UTF-8; invalid bytes, which cannot come from validated
// input, are replaced rather than thrown on).
std::string DumpJson(const nlohmann::json& j);

}  // namespace phivault::daemon
