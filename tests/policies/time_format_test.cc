#include "policies/time_format.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace phivault::policies {
namespace {

using testing::T;

TEST(TimeFormat, FormatsEpochAndKnownInstants) {
  EXPECT_EQ(FormatUtcTimestamp(0), "1970-01-01T00:00:00.000000Z");
  // 2000-01-01T00:00:00Z is Unix time 946684800 (POSIX seconds since the epoch).
  EXPECT_EQ(FormatUtcTimestamp(946'684'800LL * kMicrosPerSecond), "2000-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatUtcTimestamp(946'684'800LL * kMicrosPerSecond + 1'500'123),
            "2000-01-01T00:00:01.500123Z");
  EXPECT_EQ(FormatUtcDate(946'684'800LL * kMicrosPerSecond - 1), "1999-12-31");
}

TEST(TimeFormat, FormatsInstantsBeforeTheEpoch) {
  EXPECT_EQ(FormatUtcTimestamp(-1), "1969-12-31T23:59:59.999999Z");
}

TEST(TimeFormat, ParsesDatesTimesFractionsAndOffsets) {
  EXPECT_EQ(*ParseUtcTimestamp("2000-01-01"), 946'684'800LL * kMicrosPerSecond);
  EXPECT_EQ(*ParseUtcTimestamp("2000-01-01T00:00:01.5Z"),
            946'684'801LL * kMicrosPerSecond + 500'000);
  EXPECT_EQ(*ParseUtcTimestamp("2024-03-01T10:00:00+02:00"),
            *ParseUtcTimestamp("2024-03-01T08:00:00Z"));
  EXPECT_EQ(*ParseUtcTimestamp("2024-03-01T10:00:00-05:30"),
            *ParseUtcTimestamp("2024-03-01T15:30:00Z"));
  const int64_t t = T("2031-07-04T23:59:58.123456Z");
  EXPECT_EQ(*ParseUtcTimestamp(FormatUtcTimestamp(t)), t);
}

TEST(TimeFormat, RejectsMalformedTimestamps) {
  for (const char* bad :
       {"", "2024", "2023-02-29", "2024-13-01", "2024-00-10", "2024-03-01T24:00:00Z",
        "2024-03-01T10:00:00", "2024-03-01T10:00:00Zx", "2024-03-01T10:00Z",
        "2024-03-01T10:00:00.Z", "2024-03-01T10:00:00.1234567890Z", "2024-03-01T10:00:00+2:00",
        "24-03-01", "2024/03/01"}) {
    const StatusOr<int64_t> t = ParseUtcTimestamp(bad);
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(TimeFormat, SubtractsCalendarYearsKeepingTimeOfDay) {
  EXPECT_EQ(SubtractCalendarYears(T("2025-06-15T12:34:56.000001Z"), 6),
            T("2019-06-15T12:34:56.000001Z"));
  EXPECT_EQ(SubtractCalendarYears(T("2024-03-01T00:00:00Z"), 6), T("2018-03-01T00:00:00Z"));
  EXPECT_EQ(SubtractCalendarYears(T("2028-02-29T08:00:00Z"), 4), T("2024-02-29T08:00:00Z"));
}

TEST(TimeFormat, LeapDayMapsToFebruary28WhenTheEarlierYearHasNone) {
  EXPECT_EQ(SubtractCalendarYears(T("2024-02-29T12:00:00Z"), 6), T("2018-02-28T12:00:00Z"));
  EXPECT_EQ(SubtractCalendarYears(T("2024-02-29T12:00:00Z"), 3), T("2021-02-28T12:00:00Z"));
}

}  // namespace
}  // namespace phivault::policies
