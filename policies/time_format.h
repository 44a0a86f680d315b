// UTC timestamps for compliance reports: microseconds since the Unix epoch (the unit of
// storage::AuditEntry::time_unix_us), their RFC 3339 text form, and calendar-year arithmetic.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace phivault::policies {

inline constexpr int64_t kMicrosPerSecond = 1'000'000;
inline constexpr int64_t kMicrosPerDay = 86'400 * kMicrosPerSecond;

// "YYYY-MM-DDThh:mm:ss.ffffffZ" (RFC 3339, UTC, always six fraction digits). This is also a valid
// FHIR `instant`.
std::string FormatUtcTimestamp(int64_t unix_us);
// "YYYY-MM-DD" (UTC calendar date).
std::string FormatUtcDate(int64_t unix_us);

// Parses "YYYY-MM-DD" (midnight UTC) or "YYYY-MM-DDThh:mm:ss[.f{1,9}]Z" / "...+hh:mm" /
// "...-hh:mm". InvalidArgument naming the problem if the text is not such a timestamp or not a real
// date.
StatusOr<int64_t> ParseUtcTimestamp(std::string_view text);

// The same UTC time of day on the same calendar date `years` years earlier. February 29 maps to
// February 28 when the earlier year has no leap day (the later of the two candidates would make
// the span shorter than `years` years and drop a day from a patient's accounting).
int64_t SubtractCalendarYears(int64_t unix_us, int years);

}  // namespace phivault::policies
