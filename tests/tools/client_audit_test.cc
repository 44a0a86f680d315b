// The client's compliance calls (disclosures, suspensions, reports, audit export, checkpoints and
// proofs) against a scripted fake daemon: what each sends, what it makes of the answer, and how
// a streamed export behaves when it is large, cut short, or refused by its receiver.
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "tests/testing/temp_dir.h"
#include "tests/tools/fake_daemon.h"
#include "tools/client.h"

namespace phivault::client {
namespace {

using testing::FakeDaemon;
using testing::Problem;
using testing::Reply;
using testing::SeenRequest;

const Actor kCompliance{.user = "co.synthetic", .role = "compliance_officer", .purpose = "HOPERAT"};

const std::string kHashA(64, 'a');
const std::string kHashB(64, 'b');

nlohmann::json MetadataJson() {
  return {{"record_id", "rec_1"},         {"version", 2},
          {"patient_id", "SYNTH-0001"},   {"category", "lab_result"},
          {"content_type", "text/plain"}, {"encounter_date", "2024-03-01"},
          {"author", "Dr. Synthetic"},    {"created", "2024-03-01T10:00:00.000001Z"},
          {"content_bytes", 5},           {"amendment_reason", "typo"}};
}

class ClientAuditTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto::InitSodium().ok()); }
  nlohmann::json LastBody() { return nlohmann::json::parse(daemon_.last().body); }

  phivault::testing::TempDir dir_;
  std::string socket_ = dir_.Sub("d.sock");
  FakeDaemon daemon_{socket_};
  Client client_{socket_, "pvt_t"};
};

TEST_F(ClientAuditTest, RecordDisclosureSendsEveryGivenFieldAndReturnsTheAuditSeq) {
  daemon_.SetHandler(
      [](const SeenRequest&) { return Reply{.status = 201, .body = R"({"audit_seq":42})"}; });
  DisclosureRecord record{.patient_id = "SYNTH-0001",
                          .record_ids = {"rec_1", "rec_2"},
                          .disclosed_at = "2026-11-29",
                          .disclosure = {.recipient_name = "County Health Department",
                                         .recipient_address = "1 Main St",
                                         .basis = "public_health",
                                         .description = "lab result",
                                         .purpose_statement = "notifiable disease"}};
  auto seq = client_.RecordDisclosure(kCompliance, record);
  ASSERT_TRUE(seq.ok()) << seq.error().Message();
  EXPECT_EQ(*seq, 42u);
  SeenRequest req = daemon_.last();
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.uri, "/v1/disclosures");
  EXPECT_EQ(req.headers["x-phivault-role"], "compliance_officer");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"record_ids", {"rec_1", "rec_2"}},
                                        {"disclosed_at", "2026-11-29"},
                                        {"recipient_name", "County Health Department"},
                                        {"recipient_address", "1 Main St"},
                                        {"basis", "public_health"},
                                        {"description", "lab result"},
                                        {"purpose_statement", "notifiable disease"}}));
}

TEST_F(ClientAuditTest, OptionalDisclosureFieldsAreLeftOutWhenUnset) {
  daemon_.SetHandler(
      [](const SeenRequest&) { return Reply{.status = 201, .body = R"({"audit_seq":1})"}; });
  ASSERT_TRUE(client_
                  .RecordDisclosure(kCompliance, {.patient_id = "SYNTH-0001",
                                                  .disclosure = {.recipient_name = "Dr. Other",
                                                                 .description = "summary"}})
                  .ok());
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"recipient_name", "Dr. Other"},
                                        {"description", "summary"}}));
}

TEST_F(ClientAuditTest, DiscloseRecordPostsToTheRecordAndReturnsItsContent) {
  daemon_.SetHandler([](const SeenRequest&) {
    nlohmann::json j = MetadataJson();
    j["content_base64"] = crypto::Base64Encode("HbA1c");
    return Reply{.body = j.dump()};
  });
  auto record = client_.DiscloseRecord(
      kCompliance, "rec_1", 2,
      {.recipient_name = "Synthetic Cardiology", .description = "lab results"});
  ASSERT_TRUE(record.ok()) << record.error().Message();
  EXPECT_EQ(record->content, "HbA1c");
  EXPECT_EQ(record->metadata.version, 2u);
  EXPECT_EQ(daemon_.last().uri, "/v1/records/rec_1/disclosures");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"version", 2},
                                        {"recipient_name", "Synthetic Cardiology"},
                                        {"description", "lab results"}}));
}

TEST_F(ClientAuditTest, AddSuspensionSendsOralAndEnd) {
  daemon_.SetHandler(
      [](const SeenRequest&) { return Reply{.status = 201, .body = R"({"audit_seq":7})"}; });
  auto seq = client_.AddSuspension(kCompliance, {.agency = "State Oversight Board",
                                                 .start = "2026-01-01",
                                                 .end = "2026-03-01T00:00:00Z",
                                                 .statement = "investigation"});
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 7u);
  EXPECT_EQ(daemon_.last().uri, "/v1/disclosure-suspensions");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"agency", "State Oversight Board"},
                                        {"start", "2026-01-01"},
                                        {"end", "2026-03-01T00:00:00Z"},
                                        {"oral", false},
                                        {"statement", "investigation"}}));
}

TEST_F(ClientAuditTest, AnAnswerWithoutAuditSeqIsAProtocolError) {
  daemon_.SetHandler([](const SeenRequest&) { return Reply{.status = 201, .body = "{}"}; });
  auto seq = client_.AddSuspension(
      kCompliance, {.agency = "A", .start = "2026-01-01", .oral = true, .statement = "s"});
  ASSERT_FALSE(seq.ok());
  EXPECT_EQ(seq.error().kind, ErrorKind::kProtocol);
}

TEST_F(ClientAuditTest, ReportsReturnTheBodyAndContentTypeAsSent) {
  daemon_.SetHandler([](const SeenRequest& r) {
    if (r.uri == "/v1/reports/accounting") {
      return Reply{.content_type = "text/html; charset=utf-8", .body = "<h1>Accounting</h1>"};
    }
    return Reply{.content_type = "text/csv; charset=utf-8", .body = "time,user\n"};
  });
  auto accounting = client_.AccountingReport(kCompliance, "SYNTH-0001", "2021-01-01", "html");
  ASSERT_TRUE(accounting.ok());
  EXPECT_EQ(accounting->content_type, "text/html; charset=utf-8");
  EXPECT_EQ(accounting->body, "<h1>Accounting</h1>");
  EXPECT_EQ(
      LastBody(),
      (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"from", "2021-01-01"}, {"format", "html"}}));
  auto access = client_.AccessReport(kCompliance, "SYNTH-0001", "csv");
  ASSERT_TRUE(access.ok());
  EXPECT_EQ(access->body, "time,user\n");
  EXPECT_EQ(daemon_.last().uri, "/v1/reports/access");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"format", "csv"}}));
}

TEST_F(ClientAuditTest, ReportRefusalIsAnError) {
  daemon_.SetHandler(
      [](const SeenRequest&) { return Problem(403, "forbidden", "Forbidden", "not allowed"); });
  auto r = client_.AccessReport(kCompliance, "SYNTH-0001");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kForbidden);
}

TEST_F(ClientAuditTest, VerifierKeyAndCheckpointsUseTheirRoutes) {
  const std::string note = "test.example/audit\n3\nAAAA\n\n— test.example/audit sig\n";
  daemon_.SetHandler([&note](const SeenRequest& r) {
    if (r.uri == "/v1/audit/pubkey") return Reply{.body = R"({"verifier_key":"k+1+2"})"};
    return Reply{.status = r.method == "POST" ? 201 : 200,
                 .content_type = "text/plain; charset=utf-8",
                 .body = note};
  });
  auto key = client_.AuditVerifierKey(kCompliance);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(*key, "k+1+2");
  EXPECT_EQ(daemon_.last().method, "GET");

  auto newest = client_.AuditCheckpoint(kCompliance);
  ASSERT_TRUE(newest.ok());
  EXPECT_EQ(*newest, note);
  EXPECT_EQ(daemon_.last().method, "GET");
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/checkpoint");

  auto fresh = client_.AuditCheckpoint(kCompliance, /*fresh=*/true);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(daemon_.last().method, "POST");
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/checkpoints");
  EXPECT_EQ(daemon_.last().body, "{}");
}

TEST_F(ClientAuditTest, NoCheckpointYetIsNotFound) {
  daemon_.SetHandler(
      [](const SeenRequest&) { return Problem(404, "not-found", "Not Found", "no checkpoint"); });
  auto note = client_.AuditCheckpoint(kCompliance);
  ASSERT_FALSE(note.ok());
  EXPECT_EQ(note.error().kind, ErrorKind::kNotFound);
}

TEST_F(ClientAuditTest, InclusionProofAsksForSeqAndSizeAndChecksTheAnswer) {
  daemon_.SetHandler([&](const SeenRequest&) {
    return Reply{.body = nlohmann::json{{"seq", 5},
                                        {"leaf_index", 4},
                                        {"tree_size", 9},
                                        {"leaf_hash", kHashA},
                                        {"path", {kHashB, kHashA}}}
                             .dump()};
  });
  auto proof = client_.InclusionProof(kCompliance, 5, 9);
  ASSERT_TRUE(proof.ok()) << proof.error().Message();
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/proofs/inclusion?seq=5&tree_size=9");
  EXPECT_EQ(proof->leaf_index, 4u);
  EXPECT_EQ(proof->tree_size, 9u);
  EXPECT_EQ(proof->leaf_hash_hex, kHashA);
  EXPECT_EQ(proof->path_hex, (std::vector<std::string>{kHashB, kHashA}));

  ASSERT_TRUE(client_.InclusionProof(kCompliance, 5).ok());
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/proofs/inclusion?seq=5");

  // An answer about another entry, or with a malformed hash, is not taken for a proof.
  auto other = client_.InclusionProof(kCompliance, 6);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().kind, ErrorKind::kProtocol);
  daemon_.SetHandler([&](const SeenRequest&) {
    return Reply{.body = nlohmann::json{{"seq", 5},
                                        {"leaf_index", 4},
                                        {"tree_size", 9},
                                        {"leaf_hash", kHashA},
                                        {"path", {"abc"}}}
                             .dump()};
  });
  auto bad_hash = client_.InclusionProof(kCompliance, 5);
  ASSERT_FALSE(bad_hash.ok());
  EXPECT_EQ(bad_hash.error().kind, ErrorKind::kProtocol);
}

TEST_F(ClientAuditTest, ConsistencyProofAsksForBothSizes) {
  daemon_.SetHandler([&](const SeenRequest&) {
    return Reply{.body = nlohmann::json{{"from", 3}, {"to", 8}, {"path", {kHashA}}}.dump()};
  });
  auto proof = client_.ConsistencyProof(kCompliance, 3, 8);
  ASSERT_TRUE(proof.ok());
  EXPECT_EQ(daemon_.last().method, "GET");
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/proofs/consistency?from=3&to=8");
  EXPECT_EQ(proof->path_hex, std::vector<std::string>{kHashA});
  EXPECT_FALSE(client_.ConsistencyProof(kCompliance, 2, 8).ok());  // answer for other sizes
}

TEST_F(ClientAuditTest, ExportSendsFiltersAndStreamsEveryChunk) {
  std::string body;
  for (int i = 0; i < 2000; ++i)
    body += "{\"type\":\"entry\",\"index\":" + std::to_string(i) + "}\n";
  daemon_.SetHandler([&body](const SeenRequest&) {
    return Reply{
        .content_type = "application/x-ndjson", .body = body, .chunked = true, .chunk_bytes = 1000};
  });
  std::vector<size_t> pieces;
  std::string received;
  AuditExportQuery query{
      .format = "csv", .from = "2026-01-01", .patient_id = "SYNTH-0001", .outcome = "denied"};
  auto info = client_.ExportAudit(kCompliance, query, [&](std::string_view chunk) {
    pieces.push_back(chunk.size());
    received.append(chunk);
    return true;
  });
  ASSERT_TRUE(info.ok()) << info.error().Message();
  EXPECT_EQ(received, body);
  EXPECT_EQ(info->bytes, body.size());
  EXPECT_EQ(info->content_type, "application/x-ndjson");
  EXPECT_GT(pieces.size(), 1u);  // delivered as it came, not as one buffered string
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/export");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"format", "csv"},
                                        {"from", "2026-01-01"},
                                        {"patient_id", "SYNTH-0001"},
                                        {"outcome", "denied"}}));
  // The connection stays usable after a complete chunked body.
  daemon_.SetHandler([](const SeenRequest&) { return Reply{.body = R"({"status":"ok"})"}; });
  ASSERT_TRUE(client_.Health().ok());
  EXPECT_EQ(client_.connections_opened(), 1u);
}

TEST_F(ClientAuditTest, ExportIsNotBoundByTheBufferedResponseLimit) {
  const std::string body(3 << 20, 'x');
  daemon_.SetHandler([&body](const SeenRequest&) {
    return Reply{.body = body, .chunked = true, .chunk_bytes = 64 << 10};
  });
  Client small(ClientOptions{.socket_path = socket_, .max_response_bytes = 1 << 10});
  std::ostringstream out;
  auto info = small.ExportAudit(kCompliance, {}, out);
  ASSERT_TRUE(info.ok()) << info.error().Message();
  EXPECT_EQ(out.str().size(), body.size());
  EXPECT_EQ(LastBody(), (nlohmann::json{{"format", "jsonl"}}));
}

TEST_F(ClientAuditTest, ExportCutBeforeItsLastChunkIsReportedIncomplete) {
  daemon_.SetHandler([](const SeenRequest&) {
    return Reply{.body = std::string(10000, 'e'),
                 .chunked = true,
                 .chunk_bytes = 1000,
                 .cut_before_end = true};
  });
  std::ostringstream out;
  auto info = client_.ExportAudit(kCompliance, {}, out);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().kind, ErrorKind::kUnavailable);
  EXPECT_NE(info.error().Message().find("incomplete"), std::string::npos);
  // The next call reconnects rather than reading the broken connection.
  daemon_.SetHandler([](const SeenRequest&) { return Reply{.body = R"({"status":"ok"})"}; });
  EXPECT_TRUE(client_.Health().ok());
}

TEST_F(ClientAuditTest, ExportStopsWhenTheReceiverRefusesAChunk) {
  daemon_.SetHandler([](const SeenRequest&) {
    return Reply{.body = std::string(100000, 'e'), .chunked = true, .chunk_bytes = 1000};
  });
  int calls = 0;
  auto info = client_.ExportAudit(kCompliance, {}, [&calls](std::string_view) {
    ++calls;
    return false;
  });
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().kind, ErrorKind::kClient);
  EXPECT_EQ(info.error().title, "output failed");
  EXPECT_EQ(calls, 1);
}

TEST_F(ClientAuditTest, ExportRefusedBeforeItBeganIsTheDaemonsProblem) {
  daemon_.SetHandler([](const SeenRequest&) {
    return Problem(400, "invalid-request", "Invalid request", "field from is not a time");
  });
  bool called = false;
  auto info = client_.ExportAudit(kCompliance, {.from = "yesterday"}, [&called](std::string_view) {
    called = true;
    return true;
  });
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(info.error().detail, "field from is not a time");
  EXPECT_FALSE(called);  // a problem body is never handed out as export data
}

}  // namespace
}  // namespace phivault::client
