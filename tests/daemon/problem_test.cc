// Status -> problem+json: the HTTP status and stable type clients switch on.
#include "daemon/problem.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <atomic>
#include <nlohmann/json.hpp>

#include "crypto/keyring.h"
#include "crypto/secret.h"
#include "daemon/api_json.h"
#include "daemon/service.h"
#include "storage/ledger.h"
#include "storage/store.h"
#include "tests/testing/in_process_vault.h"

namespace phivault::daemon {
namespace {

struct Mapping {
  Status status;
  int http;
  std::string type;
};

TEST(ProblemTest, EveryStatusCodeMapsToItsProblem) {
  const Mapping mappings[] = {
      {InvalidArgument("field 'category' is required"), 400, "invalid-request"},
      {Unauthenticated("no token"), 401, "unauthenticated"},
      {PermissionDenied("no rule allows it"), 403, "forbidden"},
      {NotFound("no such record"), 404, "not-found"},
      {AlreadyExists("exists"), 409, "conflict"},
      {FailedPrecondition("epoch key was destroyed"), 409, "failed-precondition"},
      {FailedPrecondition("record was crypto-shredded"), 410, "record-shredded"},
      {ResourceExhausted("disk space below reserve"), 507, "insufficient-storage"},
      {ResourceExhausted("not enough free disk space to compact"), 507, "insufficient-storage"},
      {ResourceExhausted("rocksdb: IO error: No space left on device"), 507,
       "insufficient-storage"},
      {ResourceExhausted("content exceeds max_content_bytes"), 413, "payload-too-large"},
      {DataLoss("record failed integrity check"), 500, "integrity-failure"},
      {Unavailable("the audit log could not be written; nothing was done"), 503,
       "audit-unavailable"},
      {Unavailable("database I/O error"), 503, "unavailable"},
      // Mentioning the audit log is not enough: only a failed audit write is audit-unavailable.
      {Unavailable("rocksdb: IO error: cannot read audit tree node"), 503, "unavailable"},
      {Internal("impossible"), 500, "internal"},
  };
  for (const auto& m : mappings) {
    SCOPED_TRACE(m.status.ToString());
    const Problem p = ProblemFromStatus(m.status);
    EXPECT_EQ(p.status, m.http);
    EXPECT_EQ(p.type, m.type);
    EXPECT_EQ(p.detail, m.status.message());
    EXPECT_FALSE(p.title.empty());
  }
}

// The messages ProblemFromStatus tells apart come from other modules. These tests produce them
// the way a request does, with the real service, store, ledger and keyring, so that rewording
// one of them breaks a test here instead of silently changing an HTTP status.
class ProblemFromServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vault_.config.max_content_bytes = 16;
    phivault::testing::InProcessVaultOptions options;
    options.reserve_bytes = 1 << 20;
    options.free_space = [this](const std::string&) -> StatusOr<uint64_t> {
      return free_bytes_.load();
    };
    ASSERT_NO_FATAL_FAILURE(vault_.Open(options));
    keyring_ = vault_.keyring.get();
    faulty_ = vault_.faulty_ledger.get();
    service_ = vault_.service.get();
  }

  RequestContext Ctx() const {
    RequestContext ctx;
    ctx.request_id = "req-1";
    ctx.principal.name = "test-app";
    ctx.principal.actions = {"record.create", "record.read"};
    ctx.user = "dr.synthetic";
    ctx.role = "physician";
    ctx.purpose = "TREAT";
    return ctx;
  }

  static CreateRecordRequest Note(std::string content) {
    return {"synthetic-0001", "clinical_note", "text/plain",
            "2026-11-02",     "Dr. Synthetic", std::move(content)};
  }

  StatusOr<storage::RecordMetadata> CreateNote() {
    return service_->CreateRecord(Ctx(), Note("x"));
  }

  static void ExpectMapsTo(const Status& status, int http, const std::string& type) {
    SCOPED_TRACE(status.ToString());
    ASSERT_FALSE(status.ok());
    const Problem p = ProblemFromStatus(status);
    EXPECT_EQ(p.status, http);
    EXPECT_EQ(p.type, type);
  }

  std::atomic<uint64_t> free_bytes_{1ull << 40};
  phivault::testing::InProcessVault vault_;
  const Config& config_ = vault_.config;
  crypto::Keyring* keyring_ = nullptr;
  phivault::testing::FaultyLedger* faulty_ = nullptr;
  VaultService* service_ = nullptr;
};

TEST_F(ProblemFromServiceTest, ShreddedRecordIs410) {
  auto created = CreateNote();
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  ASSERT_TRUE(keyring_->DestroyEpoch(created->epoch_id).ok());
  auto read = service_->ReadRecord(Ctx(), created->record_id, std::nullopt, true);
  ExpectMapsTo(read.status(), 410, "record-shredded");
}

TEST_F(ProblemFromServiceTest, DiskBelowReserveIs507) {
  free_bytes_ = 0;
  // The store asks the filesystem at most every 100 ms (storage/rocks_store.cc), and the vault's
  // start has just written the policy's entry.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  ExpectMapsTo(CreateNote().status(), 507, "insufficient-storage");
}

TEST_F(ProblemFromServiceTest, FailedAuditWriteIs503AuditUnavailable) {
  auto created = CreateNote();
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  faulty_->fail_ = true;
  auto read = service_->ReadRecord(Ctx(), created->record_id, std::nullopt, true);
  ExpectMapsTo(read.status(), 503, "audit-unavailable");
}

TEST_F(ProblemFromServiceTest, ContentOverTheLimitIs413WhereverItIsCaught) {
  const std::string content(17, 'x');  // max_content_bytes is 16
  ExpectMapsTo(service_->CreateRecord(Ctx(), Note(content)).status(), 413, "payload-too-large");
  const std::string body = R"({"patient_id":"p","category":"c","content_type":"text/plain",)"
                           R"("encounter_date":"2026-11-02","author":"a","content":")" +
                           content + "\"}";
  ExpectMapsTo(DecodeCreateRecord(body, config_.max_content_bytes).status(), 413,
               "payload-too-large");
}

TEST(ProblemTest, JsonHasTheRfc9457MembersAndTheRequestId) {
  const std::string text = ProblemJson(MakeProblem(404, "not-found", "no such route"), "req-1");
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["type"], "urn:phivault:problem:not-found");
  EXPECT_EQ(j["title"], "Not found");
  EXPECT_EQ(j["status"], 404);
  EXPECT_EQ(j["detail"], "no such route");
  EXPECT_EQ(j["request_id"], "req-1");
  EXPECT_EQ(j.size(), 5u);
}

// A record destroyed by a retention sweep names the sweep's certificate of destruction, so that a
// client can fetch it (GET /v1/certificates/{id}); a shredded record without one has no member.
TEST(ProblemTest, ShreddedRecordCarriesTheCertificateOfItsSweep) {
  const std::string id = "00112233445566778899aabbccddeeff";
  const Problem p =
      ProblemFromStatus(FailedPrecondition("record was crypto-shredded (certificate " + id + ")"));
  EXPECT_EQ(p.status, 410);
  EXPECT_EQ(p.type, "record-shredded");
  EXPECT_EQ(p.certificate, id);
  EXPECT_EQ(p.detail, "record was crypto-shredded (certificate " + id + ")");
  const auto j = nlohmann::json::parse(ProblemJson(p, "req-1"));
  EXPECT_EQ(j["certificate"], id);
  EXPECT_EQ(j["status"], 410);

  const Problem bare = ProblemFromStatus(FailedPrecondition("record was crypto-shredded"));
  EXPECT_EQ(bare.status, 410);
  EXPECT_TRUE(bare.certificate.empty());
  EXPECT_FALSE(nlohmann::json::parse(ProblemJson(bare, "r")).contains("certificate"));
  // Anything but exactly 32 lowercase hex digits and ")" is not taken for an id.
  for (const std::string& tail :
       {std::string("(certificate 0011)"), "(certificate " + id + "0)",
        std::string("(certificate 00112233445566778899AABBCCDDEEFF)"), "(certificate " + id}) {
    SCOPED_TRACE(tail);
    const Problem odd = ProblemFromStatus(FailedPrecondition("record was crypto-shredded " + tail));
    EXPECT_EQ(odd.status, 410);
    EXPECT_TRUE(odd.certificate.empty());
  }
}

TEST(ProblemTest, InvalidUtf8InADetailDoesNotThrow) {
  const std::string text = ProblemJson(MakeProblem(400, "invalid-request", "bad \xff byte"), "r");
  EXPECT_TRUE(nlohmann::json::accept(text));
}

}  // namespace
}  // namespace phivault::daemon
