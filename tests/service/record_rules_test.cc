#include "daemon/record_rules.h"

#include <gtest/gtest.h>

namespace phivault::daemon {
namespace {

constexpr int64_t kDayUs = 86400LL * 1000000;

TEST(RetentionEpochIdTest, AddsWholeYearsToTheUtcCreationDay) {
  // 2026-11-29T00:00:00Z is day 20786 since the epoch.
  EXPECT_EQ(RetentionEpochId(20786 * kDayUs, 10), "d20361129");
  // One microsecond before midnight is still the previous day.
  EXPECT_EQ(RetentionEpochId(20786 * kDayUs - 1, 10), "d20361128");
}

TEST(RetentionEpochIdTest, LeapDayFallsBackToTheLastDayOfFebruary) {
  // 2024-02-29 is day 19782.
  EXPECT_EQ(RetentionEpochId(19782 * kDayUs, 10), "d20340228");
  EXPECT_EQ(RetentionEpochId(19782 * kDayUs, 4), "d20280229");
}

TEST(RecordRulesTest, DatesMustBeRealCalendarDays) {
  EXPECT_TRUE(ValidateDate("encounter_date", "2026-02-28").ok());
  EXPECT_TRUE(ValidateDate("encounter_date", "2024-02-29").ok());
  for (const char* bad : {"2026-02-29", "2026-13-01", "2026-00-10", "26-01-01", "2026/01/01",
                          "2026-01-1", "1899-12-31", "", "2026-01-01T00:00"}) {
    Status s = ValidateDate("encounter_date", bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("encounter_date"), std::string::npos);
  }
}

TEST(RecordRulesTest, ContentTypesNeedTypeAndSubtype) {
  EXPECT_TRUE(ValidateContentType("text/plain").ok());
  EXPECT_TRUE(ValidateContentType("application/fhir+json; charset=utf-8").ok());
  for (const char* bad : {"", "text", "text/", "/plain", "te xt/plain", "text/pl\nain"}) {
    EXPECT_FALSE(ValidateContentType(bad).ok()) << bad;
  }
}

TEST(RecordRulesTest, PatientIdsThatLookLikeAnotherAreRefused) {
  EXPECT_TRUE(ValidatePatientId("synthetic-0001").ok());
  EXPECT_TRUE(ValidatePatientId("M\xc3\xbcller-0001").ok());  // precomposed u-umlaut
  EXPECT_TRUE(ValidatePatientId("\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd-7").ok());  // all Cyrillic
  EXPECT_FALSE(ValidatePatientId("synthetic-\xd0\xb0"
                                 "001")
                   .ok());  // Cyrillic a among Latin
  EXPECT_FALSE(ValidatePatientId("synthetic-\xce\xbf"
                                 "001")
                   .ok());  // Greek omicron
  EXPECT_FALSE(ValidatePatientId("synthetic-\xef\xbc\x90"
                                 "001")
                   .ok());  // fullwidth 0
  EXPECT_FALSE(ValidatePatientId("synthetic-\xe2\x80\x8b"
                                 "0001")
                   .ok());  // zero-width space
  EXPECT_FALSE(ValidatePatientId("synthetic-\xe2\x80\xae"
                                 "0001")
                   .ok());  // right-to-left override
  EXPECT_FALSE(ValidatePatientId("synthetic-\xc2\xa0"
                                 "0001")
                   .ok());                                             // no-break space
  EXPECT_FALSE(ValidatePatientId("synthetic-e\xcc\x81").ok());         // combining acute
  EXPECT_FALSE(ValidatePatientId("\xef\xbb\xbfsynthetic-0001").ok());  // BOM
}

TEST(RecordRulesTest, PatientIdsAreBoundedAndPrintable) {
  EXPECT_TRUE(ValidatePatientId("synthetic-0001").ok());
  EXPECT_FALSE(ValidatePatientId("").ok());
  EXPECT_FALSE(ValidatePatientId(std::string(129, 'a')).ok());
  EXPECT_FALSE(ValidatePatientId("abc\x01").ok());
}

TEST(RecordRulesTest, ErrorMessagesNameTheFieldNotTheValue) {
  Status s = ValidateText("author", std::string("Dr Synthetic\x02"), 256);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("author"), std::string::npos);
  EXPECT_EQ(s.message().find("Synthetic"), std::string::npos);
}

}  // namespace
}  // namespace phivault::daemon
