// Field rules for records, shared by the service layer and its tests: what counts as a valid
// patient id, content type, date or free-text field, and which retention epoch a new record
// falls into. Messages name the field, never its value (values may be PHI).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace phivault::daemon {

// Non-empty, at most 128 bytes, no control characters.
Status ValidatePatientId(std::string_view patient_id);
// "type/subtype" with RFC 9110 token characters, optional parameters; at most 127 bytes.
Status ValidateContentType(std::string_view content_type);
// A real calendar date written YYYY-MM-DD, year 1900..9999.
Status ValidateDate(std::string_view field, std::string_view date);
// Non-empty, at most `max_bytes`, no control characters other than tab/newline.
Status ValidateText(std::string_view field, std::string_view text, size_t max_bytes);

// The retention epoch of a record created at `created_unix_us`: "d" + YYYYMMDD of the UTC day
// `retention_years` after creation (29 February maps to 28 February in a non-leap year).
std::string RetentionEpochId(int64_t created_unix_us, uint32_t retention_years);

}  // namespace phivault::daemon
