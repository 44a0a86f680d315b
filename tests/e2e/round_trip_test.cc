// Records go in and come back unchanged: through the client library and through plain curl.
#include <regex>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

using client::NewRecord;
using client::RecordMetadata;

void ExpectMetadataOf(const RecordMetadata& m, const NewRecord& r, uint32_t version) {
  EXPECT_TRUE(std::regex_match(m.record_id, std::regex("[A-Za-z0-9_-]{22}"))) << m.record_id;
  EXPECT_EQ(m.version, version);
  EXPECT_EQ(m.patient_id, r.patient_id);
  EXPECT_EQ(m.category, r.category);
  EXPECT_EQ(m.content_type, r.content_type);
  EXPECT_EQ(m.encounter_date, r.encounter_date);
  EXPECT_EQ(m.author, r.author);
  EXPECT_EQ(m.content_bytes, r.content.size());
  EXPECT_TRUE(std::regex_match(
      m.created, std::regex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z")))
      << m.created;
}

void ExpectSameMetadata(const RecordMetadata& a, const RecordMetadata& b) {
  EXPECT_EQ(ToJson(a), ToJson(b));
}

using E2eRoundTripTest = VaultTest;

TEST_F(E2eRoundTripTest, TextAndLargeBinaryRecordsComeBackByteForByte) {
  client::Client c = vault_.AppClient();
  const NewRecord text{.patient_id = "synthetic-patient-rt-1",
                       .category = "clinical_note",
                       .content_type = "text/plain",
                       .encounter_date = "2026-03-14",
                       .author = "dr.synthetic",
                       .content = "Synthetic note: BP 120/80, péd. follow-up in 2 weeks.\n"};
  const NewRecord binary{.patient_id = "synthetic-patient-rt-1",
                         .category = "imaging",
                         .content_type = "application/dicom",
                         .encounter_date = "2026-03-15",
                         .author = "dr.radiology",
                         .content = RandomBytes(20 << 20)};

  for (const NewRecord* r : {&text, &binary}) {
    SCOPED_TRACE(r->content_type);
    auto created = c.CreateRecord(Physician(), *r);
    ASSERT_TRUE(created.ok()) << created.error().Message();
    ExpectMetadataOf(*created, *r, 1);
    EXPECT_TRUE(created->amendment_reason.empty());

    auto record = c.ReadRecord(Physician(), created->record_id);
    ASSERT_TRUE(record.ok()) << record.error().Message();
    ExpectSameMetadata(record->metadata, *created);
    EXPECT_EQ(record->content.size(), r->content.size());
    EXPECT_TRUE(record->content == r->content) << "JSON read returned different bytes";

    auto raw = c.ReadContent(Physician(), created->record_id);
    ASSERT_TRUE(raw.ok()) << raw.error().Message();
    EXPECT_EQ(raw->content_type, r->content_type);
    EXPECT_EQ(raw->bytes.size(), r->content.size());
    EXPECT_TRUE(raw->bytes == r->content) << "raw content read returned different bytes";

    auto meta = c.ReadMetadata(Physician(), created->record_id);
    ASSERT_TRUE(meta.ok()) << meta.error().Message();
    ExpectSameMetadata(*meta, *created);
  }
}

TEST_F(E2eRoundTripTest, AmendmentKeepsTheOriginalVersion) {
  client::Client c = vault_.AppClient();
  const NewRecord original{.patient_id = "synthetic-patient-amend-1",
                           .category = "medication",
                           .content_type = "text/plain",
                           .encounter_date = "2026-01-10",
                           .author = "dr.synthetic",
                           .content = "Synthetic prescription: amoxicillin 500 mg"};
  auto v1 = c.CreateRecord(Physician(), original);
  ASSERT_TRUE(v1.ok()) << v1.error().Message();

  const client::Amendment amendment{.reason = "dosage corrected",
                                    .content = "Synthetic prescription: amoxicillin 250 mg",
                                    .author = "dr.corrector"};
  auto v2 = c.AmendRecord(Physician(), v1->record_id, amendment);
  ASSERT_TRUE(v2.ok()) << v2.error().Message();
  EXPECT_EQ(v2->record_id, v1->record_id);
  EXPECT_EQ(v2->version, 2u);
  EXPECT_EQ(v2->amendment_reason, "dosage corrected");
  EXPECT_EQ(v2->author, "dr.corrector");
  EXPECT_EQ(v2->content_type, "text/plain");  // kept from version 1
  EXPECT_EQ(v2->patient_id, original.patient_id);

  // The latest version is the amendment ...
  auto latest = c.ReadRecord(Physician(), v1->record_id);
  ASSERT_TRUE(latest.ok()) << latest.error().Message();
  EXPECT_EQ(latest->metadata.version, 2u);
  EXPECT_EQ(latest->content, amendment.content);
  EXPECT_EQ(latest->metadata.amendment_reason, "dosage corrected");
  // ... and the original is still there, unchanged.
  auto first = c.ReadRecord(Physician(), v1->record_id, 1);
  ASSERT_TRUE(first.ok()) << first.error().Message();
  ExpectSameMetadata(first->metadata, *v1);
  EXPECT_EQ(first->content, original.content);
  EXPECT_TRUE(first->metadata.amendment_reason.empty());
  auto first_raw = c.ReadContent(Physician(), v1->record_id, 1);
  ASSERT_TRUE(first_raw.ok()) << first_raw.error().Message();
  EXPECT_EQ(first_raw->bytes, original.content);
  auto second = c.ReadMetadata(Physician(), v1->record_id, 2);
  ASSERT_TRUE(second.ok()) << second.error().Message();
  ExpectSameMetadata(*second, *v2);

  auto no_v3 = c.ReadRecord(Physician(), v1->record_id, 3);
  ASSERT_FALSE(no_v3.ok());
  EXPECT_EQ(no_v3.error().kind, client::ErrorKind::kNotFound);

  auto list = c.SearchPatient(Physician(), original.patient_id);
  ASSERT_TRUE(list.ok()) << list.error().Message();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].record_id, v1->record_id);
  EXPECT_EQ((*list)[0].version, 2u);
}

// curl's output split into the body and the status code appended by -w.
struct CurlReply {
  std::string body;
  int status = 0;
};
CurlReply SplitStatus(const std::string& out) {
  const size_t nl = out.rfind('\n');
  if (nl == std::string::npos) return {};
  return {out.substr(0, nl), std::atoi(out.c_str() + nl + 1)};
}

TEST_F(E2eRoundTripTest, PlainCurlOnTheSocketRoundTrips) {
  const std::string content = "Synthetic discharge summary\nLine 2: ünïcode ✓ \"quoted\" \\ end\n";
  const nlohmann::json request = {{"patient_id", "synthetic-patient-curl-1"},
                                  {"category", "clinical_note"},
                                  {"content_type", "text/plain"},
                                  {"encounter_date", "2026-02-02"},
                                  {"author", "dr.curl"},
                                  {"content", content}};
  const std::string body_path = vault_.ScratchPath("create.json");
  WriteFile(body_path, request.dump());
  const std::vector<std::string> headers = {"-H", "Authorization: Bearer " + vault_.token(),
                                            "-H", "X-Phivault-User: dr.curl",
                                            "-H", "X-Phivault-Role: physician",
                                            "-H", "X-Phivault-Purpose: TREAT"};

  std::vector<std::string> post = headers;
  post.insert(post.end(), {"-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                           "@" + body_path, "-w", "\n%{http_code}", "http://localhost/v1/records"});
  auto created = Curl(vault_.socket_path(), post);
  ASSERT_TRUE(created.has_value()) << "curl failed";
  const CurlReply reply = SplitStatus(*created);
  ASSERT_EQ(reply.status, 201) << reply.body;
  const auto meta = nlohmann::json::parse(reply.body, nullptr, false);
  ASSERT_TRUE(meta.is_object()) << reply.body;
  const std::string id = meta.value("record_id", "");
  ASSERT_EQ(id.size(), 22u) << reply.body;
  EXPECT_EQ(meta.value("patient_id", ""), "synthetic-patient-curl-1");
  EXPECT_EQ(meta.value("content_bytes", 0u), content.size());
  EXPECT_EQ(meta.value("version", 0u), 1u);

  const std::string out_path = vault_.ScratchPath("content.out");
  std::vector<std::string> get = headers;
  get.insert(get.end(), {"-o", out_path, "-w", "%{http_code} %{content_type}",
                         "http://localhost/v1/records/" + id + "/content"});
  auto fetched = Curl(vault_.socket_path(), get);
  ASSERT_TRUE(fetched.has_value()) << "curl failed";
  EXPECT_EQ(fetched->substr(0, 4), "200 ") << *fetched;
  EXPECT_NE(fetched->find("text/plain"), std::string::npos) << *fetched;
  EXPECT_EQ(ReadFile(out_path), content);

  std::vector<std::string> get_json = headers;
  get_json.insert(get_json.end(), {"-w", "\n%{http_code}", "http://localhost/v1/records/" + id});
  auto record = Curl(vault_.socket_path(), get_json);
  ASSERT_TRUE(record.has_value()) << "curl failed";
  const CurlReply json_reply = SplitStatus(*record);
  ASSERT_EQ(json_reply.status, 200) << json_reply.body;
  const auto j = nlohmann::json::parse(json_reply.body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("content_base64")) << json_reply.body;
  auto decoded = crypto::Base64Decode(j["content_base64"].get<std::string>());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, content);
  EXPECT_EQ(j.value("record_id", ""), id);
}

}  // namespace
}  // namespace phivault::e2e
