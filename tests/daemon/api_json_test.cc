// Strict request decoding and response encoding.
#include "daemon/api_json.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "crypto/secret.h"

namespace phivault::daemon {
namespace {

using ::testing::HasSubstr;

class ApiJsonTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto::InitSodium().ok()); }
};

TEST(Utf8Test, AcceptsWellFormedText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(
      IsValidUtf8("Gr\xc3\xbc\xc3\x9f"
                  "e \xe2\x82\xac \xf0\x9f\x98\x80"));  // ü ß € 😀
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));         // U+10FFFF
}

TEST(Utf8Test, RejectsMalformedSequences) {
  struct Case {
    std::string bytes;
    size_t at;
  };
  // Cases from RFC 3629 section 3 and the Unicode "maximal subpart" examples.
  const Case cases[] = {
      {"ab\x80", 2},                // lone continuation byte
      {"\xc0\xaf", 0},              // overlong '/'
      {"\xe0\x80\xaf", 0},          // overlong '/', three bytes
      {"\xed\xa0\x80", 0},          // UTF-16 surrogate U+D800
      {"\xf4\x90\x80\x80", 0},      // above U+10FFFF
      {"\xf8\x88\x80\x80\x80", 0},  // five-byte form
      {"x\xe2\x82", 1},             // truncated
      {"\xff", 0},
  };
  for (const auto& c : cases) {
    size_t at = 99;
    EXPECT_FALSE(IsValidUtf8(c.bytes, &at));
    EXPECT_EQ(at, c.at);
  }
}

TEST_F(ApiJsonTest, ParseRejectsWhatIsNotOneWellFormedObject) {
  for (const std::string body :
       {"", "{", "[]", "\"x\"", "{} {}", "{\"a\":1,}", "{'a':1}", "{\"a\":\"\x01\"}",
        "{\"a\":1,\"a\":2}", "{\"a\":{\"b\":1,\"b\":1}}", "[[[[[[[[[[[[1]]]]]]]]]]]]"}) {
    SCOPED_TRACE(body);
    auto j = ParseJsonObject(body);
    ASSERT_FALSE(j.ok());
    EXPECT_EQ(j.status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(ParseJsonObject(R"({"a":{"a":1},"b":[1,2]})").ok());
}

// The content routes' fast parser (RapidJSON) takes only flat objects of distinct strings, and
// what it takes the strict parser takes as the same document; everything else it leaves to the
// strict parser, whose answer (and error message) is then the route's.
TEST_F(ApiJsonTest, FastParserTakesOnlyWhatTheStrictOneTakesAsTheSameDocument) {
  const std::string big = std::string(1 << 20, 'a') + "\\n\\t\\\"\\\\\\/ é 漢字 \xf0\x9f\x98\x80";
  const std::vector<std::string> taken = {
      "{}",
      R"({"a":"b"})",
      " \t\r\n{ \"a\" : \"b\" , \"c\":\"\" }\n",
      R"({"a":"\b\f\n\r\t\"\\\/"})",
      "{\"content\":\"" + big + "\"}",
      R"({"":"empty key"})",
      "{\"a\":\"del \x7f byte\"}",
  };
  for (const std::string& body : taken) {
    SCOPED_TRACE(body.substr(0, 80));
    auto fast = FastFlatStringObject(body);
    auto strict = ParseJsonObject(body);
    ASSERT_TRUE(fast.has_value());
    ASSERT_TRUE(strict.ok()) << strict.status().ToString();
    EXPECT_EQ(*fast, *strict);
  }
  EXPECT_EQ((*FastFlatStringObject("{\"content\":\"" + big + "\"}"))["content"].get<std::string>(),
            std::string(1 << 20, 'a') + "\n\t\"\\/ é 漢字 \xf0\x9f\x98\x80");

  // Left to the strict parser: what it refuses (with its own message), and what it takes but
  // the fast path does not try (nesting, other types, \u escapes, a BOM, many members).
  std::string many = "{";
  for (int i = 0; i < 17; ++i) many += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":\"v\"";
  many += "}";
  const std::vector<std::string> left = {
      "", "{", "[]", "\"x\"", "{} {}", "{\"a\":\"b\"} x", "{\"a\":\"b\",}", "{'a':'b'}",
      "{\"a\":\"\x01\"}",
      // RapidJSON's SIMD scan misses 0x1A-0x1F (fuzz finding)
      "{\"a\":\"~~~\x1a~~~~~~~~~~~~~~~~~~~~~~~~~~~~\"}",
      "{\"a\":\"~~~~~~~~~~~~~~~~~~~~~~~~~~~~\x1f~~~~~\"}", "{\"a\":\"\x1d\"}",
      "{\"a\":\"b\",\"a\":\"b\"}", "{\"a\":\"b\"}" + std::string(1, '\0'),
      std::string("{\"a\":\"b") + '\0' + "c\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u0041\"}",
      "{\"a\":\"\\ud800\"}", "{\"a\":1}", "{\"a\":null}", "{\"a\":[\"b\"]}",
      "{\"a\":{\"b\":\"c\"}}", "\xef\xbb\xbf{\"a\":\"b\"}", "{\"a\":\"\xff\"}",
      "{\"a\":\"\xed\xa0\x80\"}", many, "[[[[[[[[[[[[1]]]]]]]]]]]]", "{\"a\":\"b\"",
      "{\"a\" \"b\"}", "/*c*/{\"a\":\"b\"}"};
  for (const std::string& body : left) {
    SCOPED_TRACE(body);
    EXPECT_FALSE(FastFlatStringObject(body).has_value());
  }
  // Through the route's decoder, such a body gets the strict parser's answer.
  auto dup = DecodeCreateRecord(R"({"patient_id":"p","patient_id":"p"})", 100);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().message(), "the body has a duplicate field");
  auto escaped = DecodeCreateRecord(
      R"({"patient_id":"p-1","category":"lab-result","content_type":"text/plain",)"
      R"("encounter_date":"2026-01-02","author":"dr-a","content":"\u00e9"})",
      100);
  ASSERT_TRUE(escaped.ok()) << escaped.status().ToString();
  EXPECT_EQ(escaped->content, "\xc3\xa9");
}

TEST_F(ApiJsonTest, ParseErrorsDoNotQuoteTheInput) {
  auto j = ParseJsonObject(R"({"patient_id": "synthetic-Jane-Roe)");
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), ::testing::Not(HasSubstr("Jane")));
}

const char kCreate[] = R"({"patient_id":"p-1","category":"lab-result","content_type":"text/plain",)"
                       R"("encounter_date":"2026-01-02","author":"dr-a","content":"x"})";

TEST_F(ApiJsonTest, CreateNeedsEveryFieldAndExactlyOneContent) {
  auto ok = DecodeCreateRecord(kCreate, 100);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->patient_id, "p-1");
  EXPECT_EQ(ok->content, "x");

  for (const char* field : {"patient_id", "category", "content_type", "encounter_date", "author"}) {
    nlohmann::json j = nlohmann::json::parse(kCreate);
    j.erase(field);
    auto r = DecodeCreateRecord(j.dump(), 100);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_THAT(r.status().message(), HasSubstr(std::string("'") + field + "' is required"));
    j[field] = nullptr;
    r = DecodeCreateRecord(j.dump(), 100);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_THAT(r.status().message(), HasSubstr(std::string("'") + field + "' must be a string"));
  }
  nlohmann::json both = nlohmann::json::parse(kCreate);
  both["content_base64"] = "eA==";
  EXPECT_THAT(DecodeCreateRecord(both.dump(), 100).status().message(), HasSubstr("exactly one of"));
  nlohmann::json neither = nlohmann::json::parse(kCreate);
  neither.erase("content");
  EXPECT_THAT(DecodeCreateRecord(neither.dump(), 100).status().message(),
              HasSubstr("exactly one of"));
}

TEST_F(ApiJsonTest, Base64ContentIsDecodedAndChecked) {
  nlohmann::json j = nlohmann::json::parse(kCreate);
  j.erase("content");
  j["content_base64"] = "AAEC/w==";
  auto r = DecodeCreateRecord(j.dump(), 100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->content, std::string("\x00\x01\x02\xff", 4));
  j["content_base64"] = "not base64!";
  EXPECT_THAT(DecodeCreateRecord(j.dump(), 100).status().message(),
              HasSubstr("'content_base64' must be standard base64"));
}

TEST_F(ApiJsonTest, ContentOverTheLimitIsResourceExhausted) {
  auto r = DecodeCreateRecord(kCreate, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
}

TEST_F(ApiJsonTest, AmendKeepsAbsentOptionalFieldsAbsent) {
  auto r =
      DecodeAmendRecord(R"({"reason":"typo","content":"y","encounter_date":"2026-02-03"})", 100);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->reason, "typo");
  EXPECT_EQ(r->encounter_date, std::optional<std::string>("2026-02-03"));
  EXPECT_FALSE(r->content_type.has_value());
  EXPECT_FALSE(r->author.has_value());
  EXPECT_THAT(DecodeAmendRecord(R"({"content":"y"})", 100).status().message(),
              HasSubstr("'reason' is required"));
  EXPECT_THAT(
      DecodeAmendRecord(R"({"reason":"r","content":"y","patient_id":"p"})", 100).status().message(),
      HasSubstr("unknown field 'patient_id'"));
}

TEST_F(ApiJsonTest, SearchTakesOnlyThePatientId) {
  auto r = DecodeSearchRecords(R"({"patient_id":"p-1"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "p-1");
  EXPECT_FALSE(DecodeSearchRecords(R"({"patient_id":"p-1","limit":5})").ok());
  EXPECT_FALSE(DecodeSearchRecords(R"({"patient_id":["p-1"]})").ok());
}

TEST_F(ApiJsonTest, UnknownFieldNamesAreQuotedOnlyWhenPlain) {
  auto r = DecodeSearchRecords(R"({"patient_id":"p","Jane Roe, born 1970":1})");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("Jane")));
}

TEST(RequestTimeTest, AcceptsRfc3339AndBareDates) {
  // 2026-11-29T00:00:00Z = 1795910400 s.
  EXPECT_EQ(ParseRequestTime("from", "2026-11-29").value(), 1795910400000000);
  EXPECT_EQ(ParseRequestTime("from", "2026-11-29T15:47:09Z").value(), 1795967229000000);
  EXPECT_EQ(ParseRequestTime("from", "2026-11-29T15:47:09.5Z").value(), 1795967229500000);
  EXPECT_EQ(ParseRequestTime("from", "2026-11-29T16:47:09+01:00").value(), 1795967229000000);
}

TEST(RequestTimeTest, ErrorsNameTheFieldAndNeverTheValue) {
  for (const char* text : {"yesterday", "2026-02-30", "2026-11-29T25:00:00Z", "2031-01-02T03:04:05",
                           "2031-01-02 03:04:05Z", "synthetic-Roe"}) {
    SCOPED_TRACE(text);
    auto t = ParseRequestTime("disclosed_at", text);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(t.status().message(), HasSubstr("field 'disclosed_at'"));
    EXPECT_THAT(t.status().message(), ::testing::Not(HasSubstr(text)));
  }
}

TEST(ComplianceDecodeTest, DisclosureBasisMustBeAKnownKind) {
  const std::string base = R"({"patient_id":"p","recipient_name":"r","description":"d")";
  auto ok = DecodeRecordDisclosure(base + R"(,"basis":"law_enforcement"})");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->disclosure.basis, "law_enforcement");
  auto bad = DecodeRecordDisclosure(base + R"(,"basis":"synthetic-Roe"})");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'basis'"));
  EXPECT_THAT(bad.status().message(), ::testing::Not(HasSubstr("Roe")));
}

TEST(ComplianceDecodeTest, FormatsDefaultAndRejectUnknownValues) {
  auto report = DecodeAccessReport(R"({"patient_id":"p"})");
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->format, ReportFormat::kJson);
  auto exported = DecodeAuditExport("{}");
  ASSERT_TRUE(exported.ok());
  EXPECT_EQ(exported->format, ExportFormat::kJsonLines);
  EXPECT_FALSE(exported->filtered());
  auto bad = DecodeAuditExport(R"({"format":"JSONL"})");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'format' must be one of: jsonl, fhir, csv"));
  EXPECT_THAT(DecodeAccountingReport(R"({"patient_id":"p","format":7})").status().message(),
              HasSubstr("'format' must be a string"));
}

TEST(ComplianceDecodeTest, ExportContentTypes) {
  EXPECT_EQ(ExportContentType(ExportFormat::kJsonLines), "application/x-ndjson");
  EXPECT_EQ(ExportContentType(ExportFormat::kFhir), "application/fhir+json");
  EXPECT_EQ(ExportContentType(ExportFormat::kCsv), "text/csv; charset=utf-8");
}

TEST(ComplianceDecodeTest, EmptyObjectMeansNoMembers) {
  EXPECT_TRUE(DecodeEmptyObject("{}").ok());
  EXPECT_TRUE(DecodeEmptyObject(" { } ").ok());
  EXPECT_THAT(DecodeEmptyObject(R"({"fresh":true})").message(), HasSubstr("'fresh'"));
  EXPECT_FALSE(DecodeEmptyObject("").ok());
  EXPECT_FALSE(DecodeEmptyObject("null").ok());
}

TEST(Rfc3339Test, FormatsUtcWithMicroseconds) {
  EXPECT_EQ(FormatRfc3339Micros(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatRfc3339Micros(1795967229123456), "2026-11-29T15:47:09.123456Z");
  EXPECT_EQ(FormatRfc3339Micros(951782400000001), "2000-02-29T00:00:00.000001Z");
}

TEST(EncodeTest, MetadataHidesTheEpochAndShowsReasonsForAmendments) {
  storage::RecordMetadata m;
  m.record_id = "AAAAAAAAAAAAAAAAAAAAAA";
  m.version = 1;
  m.epoch_id = "d20361129";
  m.amendment_reason = "";
  nlohmann::json j = EncodeMetadata(m);
  EXPECT_FALSE(j.contains("epoch_id"));
  EXPECT_FALSE(j.contains("amendment_reason"));
  EXPECT_EQ(j.size(), 9u);
  m.version = 2;
  m.amendment_reason = "typo";
  j = EncodeMetadata(m);
  EXPECT_EQ(j["amendment_reason"], "typo");
}

// Issue 9: a fact left out is kept, null or "" clears it; a sweep never defaults to destroying.
TEST(RetentionDecodeTest, FactsTellKeepClearAndSetApart) {
  auto u = DecodePatientFacts(
      R"({"patient_id":"p","date_of_birth":"2010-04-01","date_of_death":null,"last_encounter":""})");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->date_of_birth, std::optional<std::string>("2010-04-01"));
  EXPECT_EQ(u->date_of_death, std::optional<std::string>(""));
  EXPECT_EQ(u->last_encounter, std::optional<std::string>(""));
  u = DecodePatientFacts(R"({"patient_id":"p"})");
  ASSERT_TRUE(u.ok());
  EXPECT_FALSE(u->date_of_birth || u->date_of_death || u->last_encounter);
  EXPECT_EQ(DecodePatientFacts(R"({"patient_id":"p","date_of_birth":[]})").status().code(),
            StatusCode::kInvalidArgument);
}

TEST(RetentionDecodeTest, SweepNeedsAnExplicitDryRun) {
  EXPECT_THAT(DecodeSweep("{}").status().message(), ::testing::HasSubstr("'dry_run' is required"));
  auto real = DecodeSweep(R"({"dry_run":false})");
  ASSERT_TRUE(real.ok());
  EXPECT_FALSE(real->dry_run);
  EXPECT_FALSE(real->until.has_value());
  auto dry = DecodeSweep(R"({"dry_run":true,"until":"2027-01-31"})");
  ASSERT_TRUE(dry.ok());
  EXPECT_TRUE(dry->dry_run);
  EXPECT_EQ(dry->until, std::optional<std::string>("2027-01-31"));
}

TEST(KeyRotateDecodeTest, NewPassphraseIsOptionalAndMovesIntoLockedMemory) {
  auto none = DecodeKeyRotate("{}");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->new_passphrase.has_value());
  auto given = DecodeKeyRotate(R"({"new_passphrase":"new \"synthetic\" phrase"})");
  ASSERT_TRUE(given.ok());
  ASSERT_TRUE(given->new_passphrase.has_value());
  EXPECT_EQ(given->new_passphrase->view(crypto::InsecureSecretKeyAccess::Get()),
            "new \"synthetic\" phrase");
  EXPECT_THAT(DecodeKeyRotate(R"({"new_key":"x"})").status().message(), HasSubstr("new_key"));
  EXPECT_EQ(DecodeKeyRotate(R"({"new_passphrase":7})").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeKeyRotate("[").status().code(), StatusCode::kInvalidArgument);
}

TEST(KeyRotateEncodeTest, PendingKeyPathIsNullForThePassphraseSource) {
  KeyRotateResult r;
  r.source = "passphrase";
  r.keyring_generation = 9;
  r.keyring_copies = 2;
  r.audit_seq = 41;
  const nlohmann::json j = EncodeKeyRotateResult(r);
  EXPECT_EQ(j["source"], "passphrase");
  EXPECT_TRUE(j["pending_key_path"].is_null());
  EXPECT_EQ(j["keyring_copies"], 2);
  r.pending_key_path = "/var/lib/phivault/master-key.next";
  EXPECT_EQ(EncodeKeyRotateResult(r)["pending_key_path"], "/var/lib/phivault/master-key.next");
}

TEST(RetentionEncodeTest, UnknownDatesAndMissingCertificatesAreNull) {
  PatientFacts f;
  f.patient_id = "p";
  f.date_of_death = "";
  const nlohmann::json facts = EncodePatientFacts(f);
  EXPECT_TRUE(facts["date_of_birth"].is_null());
  EXPECT_TRUE(facts["date_of_death"].is_null());
  EXPECT_EQ(facts["updated_at"], "1970-01-01T00:00:00.000000Z");
  SweepResult dry;
  EXPECT_TRUE(EncodeSweepResult(dry)["certificate_id"].is_null());
  EXPECT_EQ(EncodeSweepResult(dry)["destroyed"], nlohmann::json::array());
  LegalHold h;
  h.released_us = 1000000;
  EXPECT_EQ(EncodeHold(h)["released_at"], "1970-01-01T00:00:01.000000Z");
  EXPECT_EQ(EncodeHold(h)["active"], false);
  EXPECT_EQ(EncodeHold(h)["scope"], "patient");
}

}  // namespace
}  // namespace phivault::daemon
