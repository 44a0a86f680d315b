// The daemon's socket boundary end to end, in process: the real Poco server on a temporary Unix
// socket, the real router, authenticator and handlers, and a mock VaultService. Requests are
// written byte by byte, so malformed framing can be sent on purpose.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <future>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "daemon/auth.h"
#include "daemon/config.h"
#include "daemon/handlers.h"
#include "daemon/http_server.h"
#include "daemon/mock_service.h"
#include "tests/daemon/api_server_fixture.h"
#include "tests/daemon/raw_http_client.h"
#include "tests/testing/temp_dir.h"

namespace phivault::daemon {
namespace {

using ::testing::_;
using ::testing::AllOf;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::Invoke;
using testing::RawConnection;
using testing::RawResponse;
using ::testing::Return;
using ::testing::StrictMock;

using json = nlohmann::json;
using testing::ExpectProblem;
using testing::HttpServerTest;
using testing::kCreateBody;
using testing::kRecordId;
using testing::kToken;
using testing::Lower;
using testing::Request;
using testing::SampleMeta;
using testing::TestConfig;

TEST_F(HttpServerTest, SocketFileGetsTheConfiguredMode) {
  Start();
  struct stat st {};
  ASSERT_EQ(stat(socket_path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(HttpServerTest, StaleSocketFileIsReplacedAndRemovedOnStop) {
  // A socket file left behind by a crashed daemon: bound, but nobody listens on it.
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  ASSERT_EQ(access(socket_path_.c_str(), F_OK), 0);
  Start();
  server_->Stop(std::chrono::seconds(1));
  Start();
  EXPECT_EQ(Send(Request("GET", "/v1/health", "", "", false)).status, 200);
  server_->Stop(std::chrono::seconds(1));
  EXPECT_NE(access(socket_path_.c_str(), F_OK), 0);
}

TEST_F(HttpServerTest, SecondServerOnTheSameSocketIsRefused) {
  Start();
  HttpServerOptions options;
  options.socket_path = socket_path_;
  options.limits = config_.limits;
  auto second =
      HttpServer::Start(options, NewApiHandlerFactory(ApiDeps{&config_, &service_, auth_.get()}));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(Send(Request("GET", "/v1/health", "", "", false)).status, 200);
}

TEST_F(HttpServerTest, HealthNeedsNoCredentials) {
  Start();
  const RawResponse r = Send(Request("GET", "/v1/health", "", "", false));
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(Body(r), json({{"status", "ok"}}));
  EXPECT_EQ(r.Header("x-request-id").size(), 24u);
}

TEST_F(HttpServerTest, RequestIdIsEchoedOnlyWhenWellFormed) {
  Start();
  RawResponse r = Send(Request("GET", "/v1/health", "", "X-Request-Id: abc.DEF_123-x\r\n", false));
  EXPECT_EQ(r.Header("x-request-id"), "abc.DEF_123-x");
  r = Send(Request("GET", "/v1/health", "", "X-Request-Id: has space/slash\r\n", false));
  EXPECT_NE(r.Header("x-request-id"), "has space/slash");
  EXPECT_EQ(r.Header("x-request-id").size(), 24u);
  r = Send(
      Request("GET", "/v1/health", "", "X-Request-Id: " + std::string(65, 'a') + "\r\n", false));
  EXPECT_EQ(r.Header("x-request-id").size(), 24u);
}

TEST_F(HttpServerTest, CreateRecordPassesDecodedFieldsAndIdentity) {
  Start();
  EXPECT_CALL(service_, CreateRecord(_, _))
      .WillOnce(Invoke([](const RequestContext& ctx,
                          CreateRecordRequest req) -> StatusOr<storage::RecordMetadata> {
        EXPECT_EQ(ctx.principal.name, "ehr");
        EXPECT_EQ(ctx.principal.kind, Principal::Kind::kApplication);
        EXPECT_EQ(ctx.principal.uid, getuid());
        EXPECT_EQ(ctx.user, "nurse.synthetic");
        EXPECT_EQ(ctx.role, "nurse");
        EXPECT_EQ(ctx.purpose, "TREAT");
        EXPECT_FALSE(ctx.request_id.empty());
        EXPECT_EQ(req.patient_id, "synthetic-patient-0001");
        EXPECT_EQ(req.category, "clinical-note");
        EXPECT_EQ(req.content_type, "text/plain");
        EXPECT_EQ(req.encounter_date, "2026-11-29");
        EXPECT_EQ(req.author, "dr-synthetic");
        EXPECT_EQ(req.content, "hello");
        return SampleMeta();
      }));
  const RawResponse r = Send(Request("POST", "/v1/records", kCreateBody));
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.Header("location"), std::string("/v1/records/") + kRecordId);
  EXPECT_EQ(r.Header("cache-control"), "no-store");
  const json j = Body(r);
  EXPECT_EQ(j["record_id"], kRecordId);
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["created"], "2026-11-29T15:47:09.123456Z");
  EXPECT_EQ(j["content_bytes"], 5);
  EXPECT_FALSE(j.contains("epoch_id"));
  EXPECT_FALSE(j.contains("amendment_reason"));
}

TEST_F(HttpServerTest, CreateRecordAcceptsBase64Content) {
  Start();
  EXPECT_CALL(service_,
              CreateRecord(_, Field(&CreateRecordRequest::content, std::string("\x00\xff\x10", 3))))
      .WillOnce(Return(SampleMeta()));
  std::string body = kCreateBody;
  body.replace(body.find(R"("content":"hello")"), 17, R"("content_base64":"AP8Q")");
  EXPECT_EQ(Send(Request("POST", "/v1/records", body)).status, 201);
}

TEST_F(HttpServerTest, MalformedBodiesAreRejectedBeforeTheService) {
  Start();
  struct Case {
    std::string body;
    std::string detail;
  };
  const Case cases[] = {
      {R"({"patient_id": )", "not valid JSON"},
      {"{\"patient_id\":\"synthetic-\xc3\x28\"}", "not valid UTF-8"},
      {"{\"patient_id\":\"\xed\xa0\x80\"}", "not valid UTF-8"},  // an encoded surrogate
      {kCreateBody.substr(0, kCreateBody.size() - 1) + R"(,"shoe_size":42})",
       "unknown field 'shoe_size'"},
      {R"({"patient_id":42,"category":"clinical-note","content_type":"text/plain",)"
       R"("encounter_date":"2026-11-29","author":"dr","content":"x"})",
       "'patient_id' must be a string"},
      {R"({"patient_id":"a","patient_id":"b"})", "duplicate field"},
      {R"(["not","an","object"])", "must be a JSON object"},
      {R"({"category":"clinical-note"})", "'patient_id' is required"},
  };
  for (const auto& c : cases) {
    const RawResponse r = Send(Request("POST", "/v1/records", c.body));
    SCOPED_TRACE(c.detail);
    ExpectProblem(r, 400, "invalid-request");
    EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr(c.detail));
  }
}

TEST_F(HttpServerTest, ProblemDetailsNeverEchoTheBody) {
  Start();
  const RawResponse r =
      Send(Request("POST", "/v1/records/_search", R"({"patient_id": "synthetic-secret-name)"));
  ExpectProblem(r, 400, "invalid-request");
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr("synthetic-secret-name")));
}

TEST_F(HttpServerTest, RecordIdsWithPathCharactersNeverReachTheService) {
  Start();
  for (const std::string target :
       {"/v1/records/..%2F..%2Fetc%2Fpasswd", "/v1/records/%2e%2e", "/v1/records/short",
        "/v1/records/AAAAAAAAAAAAAAAAAAAAA.", "/v1/records/AAAAAAAAAAAAAAAAAAAAAA%00/content"}) {
    SCOPED_TRACE(target);
    ExpectProblem(Send(Request("GET", target)), 400, "invalid-request");
  }
  ExpectProblem(Send(Request("GET", "/v1/records/a/b")), 404, "not-found");
  ExpectProblem(Send(Request("GET", "/v1/records/../v1/health")), 404, "not-found");
}

TEST_F(HttpServerTest, ReadRoutesPassVersionAndShapeTheResponse) {
  Start();
  storage::Record rec{SampleMeta(2), "hello"};
  EXPECT_CALL(service_, ReadRecord(_, std::string(kRecordId), std::optional<uint32_t>(2), true))
      .Times(2)
      .WillRepeatedly(Return(rec));
  EXPECT_CALL(service_, ReadRecord(_, std::string(kRecordId), std::optional<uint32_t>(), false))
      .WillOnce(Return(storage::Record{SampleMeta(2), ""}));

  RawResponse r = Send(Request("GET", std::string("/v1/records/") + kRecordId + "?version=2"));
  ASSERT_EQ(r.status, 200);
  json j = Body(r);
  EXPECT_EQ(j["content_base64"], "aGVsbG8=");
  EXPECT_EQ(j["amendment_reason"], "typo");

  r = Send(Request("GET", std::string("/v1/records/") + kRecordId + "/content?version=2"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.Header("content-type"), "text/plain");
  EXPECT_EQ(r.Header("x-phivault-record-id"), kRecordId);
  EXPECT_EQ(r.Header("x-phivault-version"), "2");

  r = Send(Request("GET", std::string("/v1/records/") + kRecordId + "/metadata"));
  ASSERT_EQ(r.status, 200);
  EXPECT_FALSE(Body(r).contains("content_base64"));
}

TEST_F(HttpServerTest, BadQueriesAreRejected) {
  Start();
  const std::string base = std::string("/v1/records/") + kRecordId;
  for (const std::string q : {"?version=0", "?version=abc", "?version=4294967296", "?v=1",
                              "?version=1&version=2", "?version=-1"}) {
    SCOPED_TRACE(q);
    ExpectProblem(Send(Request("GET", base + q)), 400, "invalid-request");
  }
  ExpectProblem(Send(Request("POST", "/v1/records?x=1", kCreateBody)), 400, "invalid-request");
}

TEST_F(HttpServerTest, SearchTakesThePatientIdFromTheBody) {
  Start();
  EXPECT_CALL(service_, ListRecords(_, std::string("synthetic-patient-0001")))
      .WillOnce(Return(RecordList{{SampleMeta(), SampleMeta(3)}, 2}));
  const RawResponse r =
      Send(Request("POST", "/v1/records/_search", R"({"patient_id":"synthetic-patient-0001"})"));
  ASSERT_EQ(r.status, 200);
  const json j = Body(r);
  ASSERT_EQ(j["records"].size(), 2u);
  EXPECT_EQ(j["records"][1]["version"], 3);
  EXPECT_EQ(j["withheld"], 2) << "how many records the policy kept back, and nothing about them";
}

TEST_F(HttpServerTest, AmendPassesOptionalFieldsOnlyWhenGiven) {
  Start();
  EXPECT_CALL(service_, AmendRecord(_, std::string(kRecordId), _))
      .WillOnce(Invoke([](const RequestContext&, const std::string&,
                          AmendRecordRequest req) -> StatusOr<storage::RecordMetadata> {
        EXPECT_EQ(req.reason, "typo");
        EXPECT_EQ(req.content, "fixed");
        EXPECT_EQ(req.author, std::optional<std::string>("dr-other"));
        EXPECT_FALSE(req.content_type.has_value());
        EXPECT_FALSE(req.encounter_date.has_value());
        return SampleMeta(2);
      }));
  const RawResponse r = Send(Request("POST", std::string("/v1/records/") + kRecordId + "/versions",
                                     R"({"reason":"typo","content":"fixed","author":"dr-other"})"));
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(r.Header("location"), std::string("/v1/records/") + kRecordId + "?version=2");
}

TEST_F(HttpServerTest, ServiceErrorsBecomeProblems) {
  Start();
  EXPECT_CALL(service_, ReadRecord(_, _, _, _))
      .WillOnce(Return(FailedPrecondition("record was crypto-shredded")))
      .WillOnce(Return(NotFound("no such record")))
      .WillOnce(Return(DataLoss("record failed integrity check")))
      .WillOnce(Return(PermissionDenied("no rule allows this")))
      .WillOnce(Return(Unavailable("the audit log could not be written; nothing was done")));
  EXPECT_CALL(service_, CreateRecord(_, _))
      .WillOnce(Return(ResourceExhausted("disk space below reserve")));
  const std::string target = std::string("/v1/records/") + kRecordId;
  ExpectProblem(Send(Request("GET", target)), 410, "record-shredded");
  ExpectProblem(Send(Request("GET", target)), 404, "not-found");
  ExpectProblem(Send(Request("GET", target)), 500, "integrity-failure");
  ExpectProblem(Send(Request("GET", target)), 403, "forbidden");
  ExpectProblem(Send(Request("GET", target)), 503, "audit-unavailable");
  ExpectProblem(Send(Request("POST", "/v1/records", kCreateBody)), 507, "insufficient-storage");
}

TEST_F(HttpServerTest, ContentOverTheLimitIs413WithoutCallingTheService) {
  Start();
  std::string body = kCreateBody;
  body.replace(body.find(R"("hello")"), 7, "\"" + std::string(1001, 'x') + "\"");
  ExpectProblem(Send(Request("POST", "/v1/records", body)), 413, "payload-too-large");
}

TEST_F(HttpServerTest, OversizedBodyIs413BeforeItIsRead) {
  Start();
  RawConnection c(socket_path_);
  // Only the headers are sent: the answer must not wait for 10000 body bytes.
  std::string head = Request("POST", "/v1/records", "");
  head.replace(head.find("Content-Length: 0"), 17, "Content-Length: 10000");
  const RawResponse r = c.RoundTrip(head);
  ExpectProblem(r, 413, "payload-too-large");
  EXPECT_EQ(Lower(r.Header("connection")), "close");
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(HttpServerTest, OversizedChunkedBodyIs413) {
  Start();
  std::string head = Request("POST", "/v1/records", "");
  head.replace(head.find("Content-Length: 0"), 17, "Transfer-Encoding: chunked");
  std::string chunks;
  for (int i = 0; i < 5; ++i) chunks += "400\r\n" + std::string(1024, 'x') + "\r\n";
  ExpectProblem(Send(head + chunks + "0\r\n\r\n"), 413, "payload-too-large");
}

TEST_F(HttpServerTest, ChunkedBodyWithinTheLimitIsAccepted) {
  Start();
  EXPECT_CALL(service_, ListRecords(_, std::string("synthetic-patient-0001")))
      .WillOnce(Return(RecordList{}));
  const std::string body = R"({"patient_id":"synthetic-patient-0001"})";
  std::string head = Request("POST", "/v1/records/_search", "");
  head.replace(head.find("Content-Length: 0"), 17, "Transfer-Encoding: chunked");
  char size[16];
  std::snprintf(size, sizeof(size), "%zx", body.size());
  const RawResponse r = Send(head + size + "\r\n" + body + "\r\n0\r\n\r\n");
  EXPECT_EQ(r.status, 200);
}

// Bodies larger than the reader's first buffer, with Content-Length and chunked, arrive whole.
TEST_F(HttpServerTest, LargeBodiesArriveIntact) {
  Config config = TestConfig(getuid());
  config.max_content_bytes = 3 << 20;
  config.limits.max_body_bytes = 5 << 20;
  Start(config);
  std::string content(std::size_t{3} << 20, '\0');
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>('a' + i % 26);
  std::string body = kCreateBody;
  body.replace(body.find(R"("hello")"), 7, "\"" + content + "\"");
  EXPECT_CALL(service_, CreateRecord(_, Field(&CreateRecordRequest::content, content)))
      .Times(2)
      .WillRepeatedly(Return(SampleMeta()));
  EXPECT_EQ(Send(Request("POST", "/v1/records", body)).status, 201);

  std::string head = Request("POST", "/v1/records", "");
  head.replace(head.find("Content-Length: 0"), 17, "Transfer-Encoding: chunked");
  std::string chunks;
  constexpr std::size_t kChunk = 100000;  // not a power of two: chunks straddle buffer growth
  for (std::size_t at = 0; at < body.size(); at += kChunk) {
    const std::string piece = body.substr(at, kChunk);
    char size[16];
    std::snprintf(size, sizeof(size), "%zx", piece.size());
    chunks += size + std::string("\r\n") + piece + "\r\n";
  }
  EXPECT_EQ(Send(head + chunks + "0\r\n\r\n").status, 201);
}

// Exactly at the limit is accepted with either framing; a chunked body one byte over is 413
// (a Content-Length over the limit is refused before reading: OversizedBodyIs413BeforeItIsRead).
// A search's limit is limits.max_small_body_bytes.
TEST_F(HttpServerTest, BodyExactlyAtTheLimitIsReadAndOneByteMoreIs413) {
  Config config = TestConfig(getuid());
  config.max_content_bytes = 1 << 20;
  config.limits.max_body_bytes = 2 << 20;
  config.limits.max_small_body_bytes = 64 << 10;
  Start(config);
  const std::string empty_search = R"({"patient_id":"synthetic-patient-0001"})";
  // JSON allows trailing whitespace, which pads a valid body to any length.
  const auto padded = [&](std::size_t size) {
    return empty_search + std::string(size - empty_search.size(), ' ');
  };
  const auto chunked = [](std::string head, const std::string& body) {
    head.replace(head.find("Content-Length: 0"), 17, "Transfer-Encoding: chunked");
    char size[16];
    std::snprintf(size, sizeof(size), "%zx", body.size());
    return head + size + "\r\n" + body + "\r\n0\r\n\r\n";
  };
  EXPECT_CALL(service_, ListRecords(_, std::string("synthetic-patient-0001")))
      .Times(2)
      .WillRepeatedly(Return(RecordList{}));
  const std::size_t max = config.limits.max_small_body_bytes;
  EXPECT_EQ(Send(Request("POST", "/v1/records/_search", padded(max))).status, 200);
  EXPECT_EQ(Send(chunked(Request("POST", "/v1/records/_search", ""), padded(max))).status, 200);
  ExpectProblem(Send(chunked(Request("POST", "/v1/records/_search", ""), padded(max + 1))), 413,
                "payload-too-large");
}

TEST_F(HttpServerTest, BodyShorterThanContentLengthIs400) {
  Start();
  RawConnection c(socket_path_);
  std::string head = Request("POST", "/v1/records", "");
  head.replace(head.find("Content-Length: 0"), 17, "Content-Length: 100");
  ASSERT_TRUE(c.Send(head + R"({"patient)"));
  c.ShutdownWrite();
  const RawResponse r = c.Read();
  if (r.received) ExpectProblem(r, 400, "invalid-request");
}

TEST_F(HttpServerTest, BodyRequiresLengthAndJsonContentType) {
  Start();
  std::string no_length = Request("POST", "/v1/records", "");
  no_length.replace(no_length.find("Content-Length: 0\r\n"), 19, "");
  ExpectProblem(Send(no_length), 411, "length-required");
  std::string form = Request("POST", "/v1/records", kCreateBody);
  form.replace(form.find("application/json"), 16, "application/x-www-form-urlencoded");
  ExpectProblem(Send(form), 415, "unsupported-media-type");
}

TEST_F(HttpServerTest, OversizedHeadersAreRejected) {
  Start();
  std::string many;
  for (int i = 0; i < 40; ++i)
    many += "X-Filler-" + std::to_string(i) + ": " + std::string(60, 'f') + "\r\n";
  const RawResponse big = Send(Request("GET", "/v1/health", "", many, false));
  ASSERT_TRUE(big.received);
  EXPECT_EQ(big.status, 431);

  std::string too_many;
  for (int i = 0; i < 150; ++i) too_many += "X-F" + std::to_string(i) + ": 1\r\n";
  const RawResponse r = Send(Request("GET", "/v1/health", "", too_many, false));
  if (r.received) {
    EXPECT_TRUE(r.status == 400 || r.status == 431) << r.status;
  }
}

TEST_F(HttpServerTest, UnknownRoutesAndMethods) {
  Start();
  ExpectProblem(Send(Request("GET", "/v2/records")), 404, "not-found");
  RawResponse r = Send(Request("DELETE", "/v1/records"));
  ExpectProblem(r, 405, "method-not-allowed");
  EXPECT_EQ(r.Header("allow"), "POST");
  r = Send(Request("GET", "/v1/records/_search"));
  ExpectProblem(r, 405, "method-not-allowed");
  EXPECT_EQ(r.Header("allow"), "POST");
}

TEST_F(HttpServerTest, MissingActingHeadersAre400AndAudited) {
  Start();
  EXPECT_CALL(service_,
              AuditRejected(_, std::string("record.create"), HasSubstr("invalid-request"), _))
      .WillOnce(Return(Status::Ok()));
  std::string req = Request("POST", "/v1/records", kCreateBody);
  req.replace(req.find("X-Phivault-Purpose: TREAT\r\n"), 27, "");
  const RawResponse r = Send(req);
  ExpectProblem(r, 400, "invalid-request");
  EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr("X-Phivault-Purpose"));
}

TEST_F(HttpServerTest, UnknownRoleOrPurposeIs403AndAudited) {
  Start();
  EXPECT_CALL(service_, AuditRejected(AllOf(Field(&RequestContext::user, "nurse.synthetic"),
                                            Field(&RequestContext::purpose, "TREAT")),
                                      std::string("record.read"), HasSubstr("forbidden"), _))
      .WillOnce(Return(Status::Ok()));
  EXPECT_CALL(service_, AuditRejected(Field(&RequestContext::role, "nurse"),
                                      std::string("record.list"), HasSubstr("forbidden"), _))
      .WillOnce(Return(Status::Ok()));
  std::string bad_role = Request("GET", std::string("/v1/records/") + kRecordId);
  bad_role.replace(bad_role.find("Role: nurse"), 11, "Role: wizard");
  ExpectProblem(Send(bad_role), 403, "forbidden");
  std::string bad_purpose = Request("POST", "/v1/records/_search", R"({"patient_id":"x"})");
  bad_purpose.replace(bad_purpose.find("Purpose: TREAT"), 14, "Purpose: CURIOSITY");
  ExpectProblem(Send(bad_purpose), 403, "forbidden");
}

TEST_F(HttpServerTest, MissingCredentialsAre401AndAudited) {
  Start();
  EXPECT_CALL(service_,
              AuditRejected(_, std::string("record.create"), HasSubstr("unauthenticated"), _))
      .WillOnce(Return(Status::Ok()));
  std::string req = Request("POST", "/v1/records", kCreateBody);
  req.replace(req.find("Authorization: Bearer "), 22, "Authorization: Bearer x");
  const RawResponse r = Send(req);
  ExpectProblem(r, 401, "unauthenticated");
  EXPECT_EQ(r.Header("www-authenticate"), "Bearer realm=\"phivault\"");
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr(kToken)));
}

TEST_F(HttpServerTest, StatusRouteRejectionsAreNotAuditedAsPhi) {
  Start(TestConfig(getuid() + 1));
  // Right token, wrong peer uid: refused, and no PHI route involved, so no audit call.
  ExpectProblem(Send(Request("GET", "/v1/status")), 401, "unauthenticated");
}

TEST_F(HttpServerTest, OperatorIsRecognisedByPeerUidWithoutToken) {
  Config config = TestConfig(getuid() + 1);
  OperatorConfig op;
  op.uid = getuid();
  op.role = "vault_admin";
  op.actions = {"status"};
  config.operators.push_back(op);
  Start(config);
  VaultStatus status;
  status.version = "0.1.0";
  status.uptime_seconds = 7;
  status.space.free_bytes = 100;
  EXPECT_CALL(service_,
              GetStatus(AllOf(Field(&RequestContext::principal,
                                    Field(&Principal::name, "cli:" + std::to_string(getuid()))),
                              Field(&RequestContext::role, "vault_admin"))))
      .WillOnce(Return(status));
  std::string req = Request("GET", "/v1/status");
  req.replace(req.find("Authorization: "),
              req.find("\r\n", req.find("Authorization: ")) - req.find("Authorization: ") + 2, "");
  req.replace(req.find("Role: nurse"), 11, "Role: vault_admin");
  const RawResponse r = Send(req);
  ASSERT_EQ(r.status, 200);
  const json j = Body(r);
  EXPECT_EQ(j["uptime_seconds"], 7);
  EXPECT_EQ(j["disk"]["free_bytes"], 100);
}

// An operator is the person their uid belongs to: the acting user is that account's name, and
// a different X-Phivault-User (the CLI's --as) is ignored rather than believed.
TEST_F(HttpServerTest, OperatorActsAsThePeersAccountNotTheUserHeader) {
  Config config = TestConfig(getuid() + 1);
  OperatorConfig op;
  op.uid = getuid();
  op.role = "vault_admin";
  op.actions = {"status"};
  config.operators.push_back(op);
  Start(config);
  const std::string account = AccountNameOf(getuid());
  ASSERT_NE(account, "nurse.synthetic");
  EXPECT_CALL(service_,
              GetStatus(AllOf(
                  Field(&RequestContext::user, account),
                  Field(&RequestContext::principal,
                        AllOf(Field(&Principal::account, account),
                              Field(&Principal::roles, std::vector<std::string>{"vault_admin"}))))))
      .WillOnce(Return(VaultStatus{}));
  std::string req = Request("GET", "/v1/status");
  req.replace(req.find("Authorization: "),
              req.find("\r\n", req.find("Authorization: ")) - req.find("Authorization: ") + 2, "");
  req.replace(req.find("Role: nurse"), 11, "Role: vault_admin");
  EXPECT_EQ(Send(req).status, 200);
}

// An application asserts only the roles and purposes its entry lists: anything else is a 403
// that names the rule, and the refusal is audited under the (authenticated) application.
TEST_F(HttpServerTest, RoleOrPurposeTheApplicationIsNotBoundToIs403AndAudited) {
  Config config = TestConfig(getuid());
  config.applications[0].roles = {"physician"};
  config.applications[0].purposes = {"TREAT"};
  Start(config);
  const std::string target = std::string("/v1/records/") + kRecordId;

  std::string officer = Request("GET", target);
  officer.replace(officer.find("Role: nurse"), 11, "Role: compliance_officer");
  EXPECT_CALL(
      service_,
      AuditRejected(AllOf(Field(&RequestContext::role, "compliance_officer"),
                          Field(&RequestContext::principal, Field(&Principal::name, "ehr"))),
                    std::string("record.read"),
                    HasSubstr("application ehr may not assert role compliance_officer "
                              "(config:application_roles)"),
                    1))
      .WillOnce(Return(Status::Ok()));
  RawResponse r = Send(officer);
  ExpectProblem(r, 403, "forbidden");
  EXPECT_EQ(Body(r)["detail"],
            "application ehr may not assert role compliance_officer (config:application_roles)");

  std::string payment = Request("GET", target);
  payment.replace(payment.find("Role: nurse"), 11, "Role: physician");
  payment.replace(payment.find("Purpose: TREAT"), 14, "Purpose: HPAYMT");
  EXPECT_CALL(service_,
              AuditRejected(Field(&RequestContext::purpose, "HPAYMT"), std::string("record.read"),
                            HasSubstr("(config:application_purposes)"), 1))
      .WillOnce(Return(Status::Ok()));
  r = Send(payment);
  ExpectProblem(r, 403, "forbidden");
  EXPECT_EQ(Body(r)["detail"],
            "application ehr may not assert purpose HPAYMT (config:application_purposes)");

  // The role and purpose it is bound to reach the service, which learns the bound roles.
  std::string physician = Request("GET", "/v1/status");
  physician.replace(physician.find("Role: nurse"), 11, "Role: physician");
  EXPECT_CALL(
      service_,
      GetStatus(AllOf(Field(&RequestContext::role, "physician"),
                      Field(&RequestContext::user, "nurse.synthetic"),
                      Field(&RequestContext::principal,
                            Field(&Principal::roles, std::vector<std::string>{"physician"})))))
      .WillOnce(Return(VaultStatus{}));
  EXPECT_EQ(Send(physician).status, 200);
}

TEST_F(HttpServerTest, StatusLinesCarryTheStandardReasonPhrase) {
  Start();
  EXPECT_CALL(service_, CreateRecord(_, _)).WillOnce(Return(SampleMeta()));
  EXPECT_CALL(service_, AuditRejected(_, _, _, _)).WillRepeatedly(Return(Status::Ok()));
  std::string no_length = Request("POST", "/v1/records", "");
  no_length.replace(no_length.find("Content-Length: 0\r\n"), 19, "");
  std::string form = Request("POST", "/v1/records", kCreateBody);
  form.replace(form.find("application/json"), 16, "application/x-www-form-urlencoded");
  std::string bad_token = Request("GET", std::string("/v1/records/") + kRecordId);
  bad_token.replace(bad_token.find("Bearer "), 7, "Bearer x");
  std::string bad_role = Request("GET", std::string("/v1/records/") + kRecordId);
  bad_role.replace(bad_role.find("Role: nurse"), 11, "Role: wizard");
  std::string big_body = kCreateBody;
  big_body.replace(big_body.find(R"("hello")"), 7, "\"" + std::string(1001, 'x') + "\"");
  std::string many;
  for (int i = 0; i < 40; ++i) {
    many += "X-Filler-" + std::to_string(i) + ": " + std::string(60, 'f') + "\r\n";
  }
  struct Case {
    std::string request;
    int status;
    std::string reason;
  };
  const Case cases[] = {
      {Request("GET", "/v1/health", "", "", false), 200, "OK"},
      {Request("POST", "/v1/records", kCreateBody), 201, "Created"},
      {Request("GET", "/v1/records/short"), 400, "Bad Request"},
      {bad_token, 401, "Unauthorized"},
      {bad_role, 403, "Forbidden"},
      {Request("GET", "/v2/nothing"), 404, "Not Found"},
      {Request("DELETE", "/v1/records"), 405, "Method Not Allowed"},
      {no_length, 411, "Length Required"},
      {Request("POST", "/v1/records", big_body), 413, "Request Entity Too Large"},
      {form, 415, "Unsupported Media Type"},
      {Request("GET", "/v1/health", "", many, false), 431, "Request Header Fields Too Large"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.status);
    const RawResponse r = Send(c.request);
    ASSERT_TRUE(r.received);
    EXPECT_EQ(r.status, c.status);
    EXPECT_EQ(r.reason, c.reason);
  }
}

TEST_F(HttpServerTest, ServiceErrorStatusLinesCarryTheirReasonPhrase) {
  Start();
  EXPECT_CALL(service_, ReadRecord(_, _, _, _))
      .WillOnce(Return(FailedPrecondition("record was crypto-shredded")))
      .WillOnce(Return(AlreadyExists("exists")))
      .WillOnce(Return(DataLoss("record failed integrity check")))
      .WillOnce(Return(Unavailable("the audit log could not be written; nothing was done")));
  EXPECT_CALL(service_, CreateRecord(_, _))
      .WillOnce(Return(ResourceExhausted("disk space below reserve")));
  const std::string target = std::string("/v1/records/") + kRecordId;
  EXPECT_EQ(Send(Request("GET", target)).reason, "Gone");
  EXPECT_EQ(Send(Request("GET", target)).reason, "Conflict");
  EXPECT_EQ(Send(Request("GET", target)).reason, "Internal Server Error");
  EXPECT_EQ(Send(Request("GET", target)).reason, "Service Unavailable");
  EXPECT_EQ(Send(Request("POST", "/v1/records", kCreateBody)).reason, "Insufficient Storage");
}

TEST_F(HttpServerTest, PeerCredentialsReachTheServiceAndEveryRejection) {
  Start();
  EXPECT_CALL(service_, CreateRecord(AllOf(Field(&RequestContext::peer_uid, getuid()),
                                           Field(&RequestContext::peer_pid, getpid())),
                                     _))
      .WillOnce(Return(SampleMeta()));
  EXPECT_CALL(service_, AuditRejected(AllOf(Field(&RequestContext::peer_uid, getuid()),
                                            Field(&RequestContext::peer_pid, getpid())),
                                      _, _, _))
      .Times(3)
      .WillRepeatedly(Return(Status::Ok()));
  EXPECT_EQ(Send(Request("POST", "/v1/records", kCreateBody)).status, 201);
  std::string bad_token = Request("POST", "/v1/records", kCreateBody);
  bad_token.replace(bad_token.find("Bearer "), 7, "Bearer x");
  EXPECT_EQ(Send(bad_token).status, 401);
  std::string bad_role = Request("POST", "/v1/records", kCreateBody);
  bad_role.replace(bad_role.find("Role: nurse"), 11, "Role: wizard");
  EXPECT_EQ(Send(bad_role).status, 403);
  std::string no_user = Request("POST", "/v1/records", kCreateBody);
  no_user.replace(no_user.find("X-Phivault-User: nurse.synthetic\r\n"), 34, "");
  EXPECT_EQ(Send(no_user).status, 400);
}

// A user header that is not UTF-8 used to make the refusal's audit entry impossible to encode;
// now it is refused first, and the entry carries the claim escaped.
TEST_F(HttpServerTest, MalformedUserHeaderIs400AndAuditedSanitised) {
  Start();
  const std::string target = std::string("/v1/records/") + kRecordId;
  std::string with_token = Request("GET", target);
  with_token.replace(with_token.find("User: nurse.synthetic"), 21, "User: nurse\xc3\x28");
  EXPECT_CALL(
      service_,
      AuditRejected(
          AllOf(Field(&RequestContext::user, "nurse\\xc3("), Field(&RequestContext::role, "nurse"),
                Field(&RequestContext::principal, Field(&Principal::name, "ehr"))),
          std::string("record.read"), HasSubstr("invalid-request: the X-Phivault-User header"), 1))
      .WillOnce(Return(Status::Ok()));
  RawResponse r = Send(with_token);
  ExpectProblem(r, 400, "invalid-request");
  EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr("X-Phivault-User"));

  // Without a valid token as well: still 400 first (nothing is said about the token), and the
  // entry holds only claims, the long one cut short.
  std::string stranger = with_token;
  stranger.replace(stranger.find("Bearer "), 7, "Bearer x");
  const std::string bad_user = "User: nurse\xc3\x28";
  stranger.replace(stranger.find(bad_user), bad_user.size(),
                   "User: " + std::string(300, 'a') + "\x01");
  EXPECT_CALL(
      service_,
      AuditRejected(AllOf(Field(&RequestContext::user, std::string(128, 'a') + "\xe2\x80\xa6"),
                          Field(&RequestContext::principal, Field(&Principal::name, ""))),
                    std::string("record.read"), HasSubstr("invalid-request"), 1))
      .WillOnce(Return(Status::Ok()));
  r = Send(stranger);
  ExpectProblem(r, 400, "invalid-request");
  EXPECT_EQ(r.Header("www-authenticate"), "");

  // Poco drops a byte 0xFF from header lines (it reads as end-of-input): such a user must not
  // pass as the name without it. Refused, audited, and the connection closed.
  for (const std::string bad :
       {"User: nurse\xff", "User: nurse\xff.synthetic", "User: \xffnurse"}) {
    SCOPED_TRACE(bad);
    std::string req = Request("GET", target);
    req.replace(req.find("User: nurse.synthetic"), 21, bad);
    EXPECT_CALL(service_,
                AuditRejected(Field(&RequestContext::principal, Field(&Principal::name, "ehr")),
                              std::string("record.read"), HasSubstr("byte 0xFF"), 1))
        .WillOnce(Return(Status::Ok()));
    RawConnection ff(socket_path_);
    r = ff.RoundTrip(req);
    ExpectProblem(r, 400, "invalid-request");
    EXPECT_EQ(Lower(r.Header("connection")), "close");
    EXPECT_TRUE(ff.WaitClosed());
    ::testing::Mock::VerifyAndClearExpectations(&service_);
  }
  // A 0xFF in a body is refused as well (it cannot be in JSON text), not read as a shorter body.
  std::string body_ff = Request("POST", "/v1/records/_search", "{\"patient_id\":\"x\xffy\"}");
  EXPECT_CALL(service_, AuditRejected(_, std::string("record.list"), HasSubstr("0xFF"), 1))
      .WillOnce(Return(Status::Ok()));
  ExpectProblem(Send(body_ff), 400, "invalid-request");
}

TEST_F(HttpServerTest, OperatorWithoutTokenInAnotherRoleIsToldTheTokenIsMissing) {
  Config config = TestConfig(getuid());
  OperatorConfig op;
  op.uid = getuid();
  op.role = "vault_admin";
  op.actions = KnownActions();
  config.operators.push_back(op);
  Start(config);
  std::string req = Request("GET", std::string("/v1/records/") + kRecordId);
  const size_t auth = req.find("Authorization: ");
  req.erase(auth, req.find("\r\n", auth) - auth + 2);
  const std::string expected = "no bearer token was sent, and the operator entry for peer uid " +
                               std::to_string(getuid()) +
                               " allows role \"vault_admin\" only (X-Phivault-Role names "
                               "\"nurse\"); operators act only in their configured role";
  EXPECT_CALL(service_,
              AuditRejected(Field(&RequestContext::principal,
                                  Field(&Principal::name, "cli:" + std::to_string(getuid()))),
                            std::string("record.read"), "forbidden: " + expected, 1))
      .WillOnce(Return(Status::Ok()));
  const RawResponse r = Send(req);
  ExpectProblem(r, 403, "forbidden");
  EXPECT_EQ(Body(r)["detail"], expected);
}

TEST_F(HttpServerTest, FailedAuthenticationsBeyondTheBudgetAreSummarisedAndCloseTheConnection) {
  Config config = TestConfig(getuid());
  config.limits.auth_failure_burst = 2;
  config.limits.auth_failures_per_connection = 100;
  config.limits.auth_failure_summary_ms = 3600000;  // only the server's end writes the summary
  Start(config);
  const std::string target = std::string("/v1/records/") + kRecordId;
  std::string bad_token = Request("GET", target);
  bad_token.replace(bad_token.find("Bearer "), 7, "Bearer x");
  EXPECT_CALL(service_,
              AuditRejected(Field(&RequestContext::principal, Field(&Principal::name, "")),
                            std::string("record.read"), HasSubstr("unauthenticated"), 1))
      .Times(2)
      .WillRepeatedly(Return(Status::Ok()));

  RawConnection c(socket_path_);
  for (int i = 0; i < 2; ++i) {
    const RawResponse r = c.RoundTrip(bad_token);
    ExpectProblem(r, 401, "unauthenticated");
    EXPECT_NE(Lower(r.Header("connection")), "close") << i;
  }
  RawResponse r = c.RoundTrip(bad_token);
  ExpectProblem(r, 401, "unauthenticated");
  EXPECT_EQ(Lower(r.Header("connection")), "close");
  EXPECT_TRUE(c.WaitClosed());
  ::testing::Mock::VerifyAndClearExpectations(&service_);

  // The same uid with the right token is served as ever, while the stranger keeps trying.
  EXPECT_CALL(service_, ReadRecord(_, _, _, _))
      .WillOnce(Return(storage::Record{SampleMeta(), "hello"}));
  RawConnection good(socket_path_);
  EXPECT_EQ(good.RoundTrip(Request("GET", target)).status, 200);
  for (int i = 0; i < 7; ++i) {
    r = Send(bad_token);
    ExpectProblem(r, 401, "unauthenticated");
    EXPECT_EQ(Lower(r.Header("connection")), "close");
  }

  // Stopping the server writes the summary of the 8 attempts beyond the budget (before Stop
  // returns: phivaultd may exit without destructors after it).
  EXPECT_CALL(service_,
              AuditRejected(Field(&RequestContext::peer_uid, getuid()), std::string("record.read"),
                            HasSubstr("summary of 8 failed authentications"), 8))
      .WillOnce(Return(Status::Ok()));
  EXPECT_TRUE(server_->Stop(std::chrono::seconds(5)));
  ::testing::Mock::VerifyAndClearExpectations(&service_);
}

TEST_F(HttpServerTest, AConnectionIsClosedAfterAFewFailedAuthentications) {
  Config config = TestConfig(getuid());
  config.limits.auth_failures_per_connection = 3;
  Start(config);
  std::string bad_token = Request("GET", "/v1/status");
  bad_token.replace(bad_token.find("Bearer "), 7, "Bearer x");
  RawConnection c(socket_path_);
  for (int i = 0; i < 2; ++i) {
    const RawResponse r = c.RoundTrip(bad_token);
    ExpectProblem(r, 401, "unauthenticated");
    EXPECT_NE(Lower(r.Header("connection")), "close") << i;
  }
  const RawResponse r = c.RoundTrip(bad_token);
  ExpectProblem(r, 401, "unauthenticated");
  EXPECT_EQ(Lower(r.Header("connection")), "close");
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  Start();
  RawConnection c(socket_path_);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c.RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
  }
}

// Bodies above 3 KiB are written with their headers in one go (SendWholeResponse), not through
// Poco's 4 KiB stream: each comes back byte for byte with the same headers as any response, and
// the connection goes on serving.
TEST_F(HttpServerTest, LargeResponsesArriveWholeWithTheirHeadersOnAKeptConnection) {
  Start();
  const std::vector<size_t> sizes = {3072, 3073, 64 << 10, (1 << 20) + 7};
  std::vector<std::string> contents;
  {
    ::testing::InSequence in_order;
    for (size_t n : sizes) {
      contents.push_back(crypto::RandomBytes(n));
      EXPECT_CALL(service_, ReadRecord(_, std::string(kRecordId), std::optional<uint32_t>(), true))
          .WillOnce(Return(storage::Record{SampleMeta(1), contents.back()}));
    }
  }
  RawConnection c(socket_path_);
  for (size_t i = 0; i < sizes.size(); ++i) {
    const RawResponse r =
        c.RoundTrip(Request("GET", std::string("/v1/records/") + kRecordId + "/content", "",
                            "X-Request-Id: large-" + std::to_string(i) + "\r\n"));
    ASSERT_EQ(r.status, 200) << sizes[i];
    EXPECT_EQ(r.reason, "OK");
    EXPECT_TRUE(r.body == contents[i]) << sizes[i] << " bytes came back as " << r.body.size();
    EXPECT_EQ(r.Header("content-length"), std::to_string(sizes[i]));
    EXPECT_EQ(r.Header("content-type"), "text/plain");
    EXPECT_EQ(r.Header("x-request-id"), "large-" + std::to_string(i));
    EXPECT_EQ(r.Header("cache-control"), "no-store");
    EXPECT_EQ(r.Header("x-content-type-options"), "nosniff");
    EXPECT_EQ(r.Header("x-phivault-record-id"), kRecordId);
    EXPECT_EQ(Lower(r.Header("connection")), "keep-alive");
  }
  EXPECT_EQ(c.RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
}

// A client that asks for a large record and never reads it does not hold its thread past the
// send timeout (limits.idle_timeout_ms, 400 ms here): the server gives up, closes the connection,
// and serves everyone else meanwhile.
TEST_F(HttpServerTest, AClientThatStopsReadingALargeResponseIsCutOffAndOthersAreServed) {
  Start();
  EXPECT_CALL(service_, ReadRecord(_, std::string(kRecordId), std::optional<uint32_t>(), true))
      .WillOnce(Return(storage::Record{SampleMeta(1), crypto::RandomBytes(16 << 20)}));
  RawConnection stuck(socket_path_);
  ASSERT_TRUE(stuck.Send(Request("GET", std::string("/v1/records/") + kRecordId + "/content")));
  {
    RawConnection other(socket_path_);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(other.RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
  }
  // Closed by the server well before 16 MiB could have been taken: the client reads what the
  // socket buffered, then the end.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitForConnections(0));
  EXPECT_TRUE(stuck.WaitClosed());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

// A client that hangs up in the middle of a large response: the write fails (EPIPE; the send
// asks for no SIGPIPE), the connection is released, and the server goes on serving.
TEST_F(HttpServerTest, AClientThatHangsUpDuringALargeResponseDoesNotHurtTheServer) {
  Start();
  EXPECT_CALL(service_, ReadRecord(_, std::string(kRecordId), std::optional<uint32_t>(), true))
      .Times(3)
      .WillRepeatedly(Return(storage::Record{SampleMeta(1), crypto::RandomBytes(16 << 20)}));
  for (int i = 0; i < 3; ++i) {
    RawConnection gone(socket_path_);
    ASSERT_TRUE(gone.Send(Request("GET", std::string("/v1/records/") + kRecordId + "/content")));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the server is mid-write
  }
  EXPECT_TRUE(WaitForConnections(0));
  RawConnection after(socket_path_);
  EXPECT_EQ(after.RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
}

TEST_F(HttpServerTest, ConnectionsBeyondTheLimitGet503) {
  Config config = TestConfig(getuid());
  config.limits.max_connections = 3;
  Start(config);
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<RawConnection>(socket_path_));
    ASSERT_EQ(held.back()->RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
  }
  ASSERT_TRUE(WaitForConnections(3));
  RawConnection extra(socket_path_);
  const RawResponse r = extra.RoundTrip(Request("GET", "/v1/health", "", "", false));
  ExpectProblem(r, 503, "too-many-connections");
  EXPECT_TRUE(extra.WaitClosed());

  held.pop_back();
  ASSERT_TRUE(WaitForConnections(2));
  RawConnection again(socket_path_);
  EXPECT_EQ(again.RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
}

TEST_F(HttpServerTest, IdleConnectionsAreClosedAfterTheTimeout) {
  Start();  // idle_timeout_ms = 400
  RawConnection silent(socket_path_);
  RawConnection after_request(socket_path_);
  ASSERT_EQ(after_request.RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(silent.WaitClosed());
  EXPECT_TRUE(after_request.WaitClosed());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  EXPECT_TRUE(WaitForConnections(0));
}

TEST_F(HttpServerTest, StopFinishesTheRequestInProgressAndRefusesNewOnes) {
  Start();
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  EXPECT_CALL(service_, CreateRecord(_, _))
      .WillOnce(Invoke(
          [&](const RequestContext&, CreateRecordRequest) -> StatusOr<storage::RecordMetadata> {
            entered.set_value();
            released.wait();
            return SampleMeta();
          }));
  RawConnection idle(socket_path_);
  ASSERT_EQ(idle.RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);

  auto client = std::async(std::launch::async, [&] {
    RawConnection c(socket_path_);
    return c.RoundTrip(Request("POST", "/v1/records", kCreateBody));
  });
  entered.get_future().wait();
  auto stopped =
      std::async(std::launch::async, [&] { return server_->Stop(std::chrono::seconds(10)); });

  // Idle keep-alive connections are closed (at the latest when their idle timeout ends).
  EXPECT_TRUE(idle.WaitClosed());
  for (int i = 0; i < 200 && access(socket_path_.c_str(), F_OK) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  RawConnection late(socket_path_);
  EXPECT_FALSE(late.connected());
  EXPECT_EQ(stopped.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);

  release.set_value();
  const RawResponse r = client.get();
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, 201);
  EXPECT_TRUE(stopped.get());
}

// --- Hostile clients (docs/reliability.md) ----------------------------------------------------

class HostileClientTest : public HttpServerTest {
 protected:
  // Starts the server with `config`; `implicit_operators` false leaves only limits.operator_uids
  // as operators (the test's own uid is otherwise one, as the server's).
  void StartWith(Config config, bool implicit_operators) {
    config_ = std::move(config);
    auto auth = Authenticator::Create(config_);
    ASSERT_TRUE(auth.ok()) << auth.status().ToString();
    auth_ = std::move(auth).value();
    HttpServerOptions options;
    options.socket_path = socket_path_;
    options.limits = config_.limits;
    options.implicit_operators = implicit_operators;
    auto server =
        HttpServer::Start(options, NewApiHandlerFactory(ApiDeps{&config_, &service_, auth_.get()}));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  // A POST /v1/records head announcing `length` body bytes (no body).
  static std::string CreateHead(size_t length, const std::string& framing = "") {
    std::string r = Request("GET", "/v1/records", "", "", true);
    r.replace(0, 3, "POST");
    r.erase(r.size() - 2);
    r += "Content-Type: application/json\r\n";
    r += framing.empty() ? "Content-Length: " + std::to_string(length) + "\r\n" : framing;
    return r + "\r\n";
  }
};

TEST_F(HostileClientTest, AmbiguousFramingIs400AndClosesWithoutReachingTheService) {
  Start();  // StrictMock: any service call fails the test
  const std::string chunked_body = std::to_string(kCreateBody.size()) + "\r\n" + kCreateBody;
  const std::vector<std::string> framings = {
      "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
      "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
      "Transfer-Encoding: gzip, chunked\r\n",
      "Transfer-Encoding: chunked, chunked\r\n",
      "Transfer-Encoding: identity\r\n",
      "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
      "Transfer-Encoding: xchunked\r\n",
      "Transfer-Encoding: chunked;q=1\r\n",
      "Content-Length: " + std::to_string(kCreateBody.size()) +
          "\r\nContent-Length: " + std::to_string(kCreateBody.size()) + "\r\n",
      "Content-Length: 3\r\nContent-Length: " + std::to_string(kCreateBody.size()) + "\r\n",
      "Content-Length: +" + std::to_string(kCreateBody.size()) + "\r\n",
      "Content-Length: " + std::to_string(kCreateBody.size()) + ", " +
          std::to_string(kCreateBody.size()) + "\r\n",
  };
  for (const std::string& framing : framings) {
    SCOPED_TRACE(framing);
    RawConnection c(socket_path_);
    const RawResponse r = c.RoundTrip(CreateHead(0, framing) + kCreateBody);
    // A Content-Length Poco cannot parse makes Poco close the connection without an answer
    // before any handler runs; everything else gets our problem. All are closed.
    const bool unparsable_length =
        framing.rfind("Content-Length: ", 0) == 0 && framing.find(", ") != std::string::npos;
    if (!unparsable_length) {
      ExpectProblem(r, 400, "invalid-framing");
      EXPECT_EQ(Lower(r.Header("connection")), "close");
    } else if (r.received) {
      EXPECT_EQ(r.status, 400);
    }
    EXPECT_TRUE(c.WaitClosed());
  }
}

TEST_F(HostileClientTest, ChunkedBodyCutShortIsAnErrorNotAShortBody) {
  Start();  // StrictMock: a short body reaching CreateRecord would fail the test
  const std::string te = "Transfer-Encoding: chunked\r\n";
  const std::string whole = kCreateBody;
  const std::vector<std::string> bodies = {
      // A chunk announced longer than what arrives before the end of the stream.
      "100\r\n" + whole,
      // Complete JSON in the first chunk, then no terminating chunk.
      std::to_string(whole.size()) + "\r\n" + whole + "\r\n",
      // The terminating chunk without the final CRLF.
      [&] {
        std::ostringstream o;
        o << std::hex << whole.size();
        return o.str() + "\r\n" + whole + "\r\n0\r\n";
      }(),
      // Chunk data not followed by CRLF.
      [&] {
        std::ostringstream o;
        o << std::hex << whole.size();
        return o.str() + "\r\n" + whole + "XX0\r\n\r\n";
      }(),
      // A size that is not hexadecimal, and one with a sign.
      "zz\r\n" + whole + "\r\n0\r\n\r\n",
      "-5\r\nhello\r\n0\r\n\r\n",
      // Bare LF line endings.
      [&] {
        std::ostringstream o;
        o << std::hex << whole.size();
        return o.str() + "\n" + whole + "\n0\n\n";
      }(),
  };
  for (const std::string& body : bodies) {
    SCOPED_TRACE(body);
    RawConnection c(socket_path_);
    ASSERT_TRUE(c.Send(CreateHead(0, te) + body));
    c.ShutdownWrite();
    const RawResponse r = c.Read();
    if (r.received) ExpectProblem(r, 400, "invalid-request");
    EXPECT_TRUE(c.WaitClosed());
  }
}

TEST_F(HostileClientTest, CompleteChunkedBodyStillWorks) {
  Start();
  EXPECT_CALL(service_, CreateRecord(_, Field(&CreateRecordRequest::content, "hello")))
      .WillOnce(Return(SampleMeta()));
  const std::string a = kCreateBody.substr(0, 10);
  const std::string b = kCreateBody.substr(10);
  std::ostringstream o;
  o << std::hex << a.size() << ";ext=1\r\n"
    << a << "\r\n"
    << b.size() << "\r\n"
    << b << "\r\n0\r\nX-Trailer: t\r\n\r\n";
  const RawResponse r = Send(CreateHead(0, "Transfer-Encoding: chunked\r\n") + o.str());
  EXPECT_EQ(r.status, 201);
}

TEST_F(HostileClientTest, SlowlorisHeadersAreCutOffByTheRequestDeadline) {
  Config config = TestConfig(getuid());
  config.limits.idle_timeout_ms = 1000;    // each byte arrives well within the per-read timeout
  config.limits.request_timeout_ms = 600;  // but the request as a whole does not
  StartWith(config, true);
  RawConnection c(socket_path_);
  const std::string head = Request("GET", "/v1/health", "", "", false);
  bool cut_off = false;
  for (size_t i = 0; i < head.size() && !cut_off; ++i) {
    // 80 bytes at 100 ms each take 8 s: far beyond the deadline.
    cut_off = !c.Send(head.substr(i, 1));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(cut_off || c.WaitClosed());
  EXPECT_TRUE(cut_off) << "the whole slow request was accepted";
  // Others are served meanwhile and after.
  EXPECT_EQ(Send(Request("GET", "/v1/health", "", "", false)).status, 200);
}

TEST_F(HostileClientTest, BodyBelowTheMinimumRateIs408) {
  Config config = TestConfig(getuid());
  config.limits.idle_timeout_ms = 2000;
  config.limits.request_timeout_ms = 60000;
  config.limits.min_body_bytes_per_second = 200;
  StartWith(config, true);
  RawConnection c(socket_path_, 10000);
  ASSERT_TRUE(c.Send(CreateHead(kCreateBody.size())));
  // 4 bytes every 200 ms: 20 bytes/s, a tenth of the minimum rate.
  bool cut_off = false;
  for (size_t i = 0; i < kCreateBody.size() && !cut_off; i += 4) {
    cut_off = !c.Send(kCreateBody.substr(i, 4));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const RawResponse r = c.Read();
  if (r.received) {
    ExpectProblem(r, 408, "request-timeout");
  } else {
    EXPECT_TRUE(cut_off);
  }
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(HostileClientTest, OneUidCannotTakeMoreThanItsShareOfConnections) {
  Config config = TestConfig(getuid());
  config.limits.max_connections = 8;
  config.limits.max_connections_per_uid = 2;
  config.limits.reserved_operator_connections = 0;
  StartWith(config, /*implicit_operators=*/false);
  RawConnection a(socket_path_), b(socket_path_);
  ASSERT_EQ(a.RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
  ASSERT_EQ(b.RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
  RawConnection third(socket_path_);
  const RawResponse r = third.RoundTrip(Request("GET", "/v1/health", "", "", false));
  ExpectProblem(r, 503, "too-many-connections");
  EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr("max_connections_per_uid"));
  EXPECT_TRUE(third.WaitClosed());
}

TEST_F(HostileClientTest, ReservedSlotsAreKeptForOperators) {
  Config config = TestConfig(getuid());
  config.limits.max_connections = 4;
  config.limits.max_connections_per_uid = 4;
  config.limits.reserved_operator_connections = 2;
  {
    StartWith(config, /*implicit_operators=*/false);  // this uid is no operator
    RawConnection a(socket_path_), b(socket_path_);
    ASSERT_EQ(a.RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
    ASSERT_EQ(b.RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
    RawConnection third(socket_path_);
    const RawResponse r = third.RoundTrip(Request("GET", "/v1/health", "", "", false));
    ExpectProblem(r, 503, "too-many-connections");
    EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr("reserved for operators"));
  }
  server_->Stop(std::chrono::seconds(5));
  server_.reset();
  config.limits.operator_uids = {getuid()};
  StartWith(config, /*implicit_operators=*/false);  // now it is one
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<RawConnection>(socket_path_));
    EXPECT_EQ(held.back()->RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
  }
}

TEST_F(HostileClientTest, RoutesWithoutContentTakeOnlySmallBodies) {
  Config config = TestConfig(getuid());
  config.limits.max_body_bytes = 1 << 20;
  config.limits.max_small_body_bytes = 2048;
  StartWith(config, true);
  // 3000 bytes: within max_body_bytes, over the small limit; refused before a byte is read.
  RawConnection c(socket_path_);
  std::string head = CreateHead(3000);
  head.replace(head.find("/v1/records"), 11, "/v1/records/_search");
  const RawResponse r = c.RoundTrip(head);
  ExpectProblem(r, 413, "payload-too-large");
  EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr("max_small_body_bytes"));
}

TEST_F(HostileClientTest, DeepNestingFailsTheParseAtOnce) {
  Config config = TestConfig(getuid());
  config.limits.max_body_bytes = 1 << 20;
  config.limits.max_small_body_bytes = 1 << 20;
  StartWith(config, true);
  const std::string nested = "{\"patient_id\":" + std::string(500000, '[') + "}";
  std::string head = CreateHead(nested.size());
  head.replace(head.find("/v1/records"), 11, "/v1/records/_search");
  const RawResponse r = Send(head + nested);
  ExpectProblem(r, 400, "invalid-request");
  EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr("nested too deeply"));
}

TEST_F(HostileClientTest, RequestBytesInFlightBeyondTheBudgetGet503WithRetryAfter) {
  Config config = TestConfig(getuid());
  config.limits.max_body_bytes = 1 << 20;
  config.limits.max_inflight_body_bytes = (1 << 20) + 1000;
  config.max_content_bytes = 100000;
  StartWith(config, true);
  // One client announces a 1 MiB body and sends it slowly: that much is held for it.
  RawConnection holder(socket_path_);
  ASSERT_TRUE(holder.Send(CreateHead(1 << 20) + "{"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // Another's 2000 bytes do not fit in what is left.
  const RawResponse r = Send(CreateHead(2000) + std::string(2000, ' '));
  ExpectProblem(r, 503, "server-busy");
  EXPECT_EQ(r.Header("retry-after"), "1");
  // Once the holder is gone its bytes are free again.
  holder.ShutdownWrite();
  EXPECT_TRUE(holder.WaitClosed());
  EXPECT_CALL(service_, CreateRecord(_, _)).WillOnce(Return(SampleMeta()));
  EXPECT_EQ(Send(CreateHead(kCreateBody.size()) + kCreateBody).status, 201);
}

TEST_F(HostileClientTest, StopClosesIdleConnectionsAtOnceWhileASlowRequestRuns) {
  Config config = TestConfig(getuid());
  config.limits.idle_timeout_ms = 60000;  // an idle close can only come from Stop
  StartWith(config, true);
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  EXPECT_CALL(service_, CreateRecord(_, _))
      .WillOnce(Invoke(
          [&](const RequestContext&, CreateRecordRequest) -> StatusOr<storage::RecordMetadata> {
            entered.set_value();
            released.wait();
            return SampleMeta();
          }));
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 3; ++i) {
    idle.push_back(std::make_unique<RawConnection>(socket_path_, 20000));
    ASSERT_EQ(idle.back()->RoundTrip(Request("GET", "/v1/health", "", "", false)).status, 200);
  }
  RawConnection half_sent(socket_path_, 20000);  // a request head still arriving
  ASSERT_TRUE(half_sent.Send("GET /v1/health HTTP/1.1\r\nHost: x\r\n"));
  auto slow = std::async(std::launch::async, [&] {
    RawConnection c(socket_path_, 20000);
    return c.RoundTrip(Request("POST", "/v1/records", kCreateBody));
  });
  entered.get_future().wait();
  auto stopped =
      std::async(std::launch::async, [&] { return server_->Stop(std::chrono::seconds(30)); });
  // The slow request is still held, yet every idle connection is closed: none waits for it.
  for (auto& c : idle) EXPECT_TRUE(c->WaitClosed());
  EXPECT_TRUE(half_sent.WaitClosed());
  EXPECT_EQ(stopped.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  release.set_value();
  const RawResponse r = slow.get();
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(Lower(r.Header("connection")), "close");
  EXPECT_TRUE(stopped.get());
}

}  // namespace
}  // namespace phivault::daemon
