// The compliance routes (disclosures, suspensions, reports, audit export and proofs) through the
// real server and handlers against a mock VaultService: what reaches the service, what the
// client gets back, and that malformed requests never reach the service.
#include <signal.h>

#include <future>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon/problem.h"
#include "tests/daemon/api_server_fixture.h"
#include "tests/daemon/raw_http_client.h"

namespace phivault::daemon {
namespace {

using ::testing::_;
using ::testing::AllOf;
using testing::ExpectProblem;
using ::testing::Field;
using ::testing::HasSubstr;
using testing::HttpServerTest;
using ::testing::Invoke;
using testing::kRecordId;
using ::testing::Not;
using testing::RawConnection;
using testing::RawResponse;
using testing::Request;
using ::testing::Return;
using testing::SampleMeta;
using testing::TestConfig;

using json = nlohmann::json;

// 2026-11-29T00:00:00Z and 2026-11-29T15:47:09Z in microseconds.
constexpr int64_t kNov29 = 1795910400000000;
constexpr int64_t kNov29Afternoon = 1795967229000000;

// A synthetic value that must never come back in a problem detail.
constexpr char kSecret[] = "synthetic-secret-Roe";

class RoutesTest : public HttpServerTest {
 protected:
  // Many requests in a row, each on its own connection: the server may still be closing the
  // previous ones, so the fixture's connection limit of 3 would refuse some of them.
  void Start(Config config) {
    config.limits.max_connections = 64;
    HttpServerTest::Start(std::move(config));
  }
  void Start() { Start(TestConfig(getuid())); }

  // Sends `body` to `target` and expects a 400 whose detail contains `detail` and does not echo
  // kSecret. The StrictMock service fails the test if it is called.
  void ExpectBadBodyDetail(const std::string& target, const std::string& body,
                           const std::string& detail) {
    SCOPED_TRACE(body);
    const RawResponse r = Send(Request("POST", target, body));
    ExpectProblem(r, 400, "invalid-request");
    EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr(detail));
    EXPECT_THAT(r.body, Not(HasSubstr(kSecret)));
  }
  // As above, with a detail that names `field`.
  void ExpectBadBody(const std::string& target, const std::string& body, const std::string& field) {
    ExpectBadBodyDetail(target, body, "'" + field);
  }
};
using ComplianceRoutesTest = RoutesTest;
using AuditRoutesTest = RoutesTest;

std::string DiscloseTarget() { return std::string("/v1/records/") + kRecordId + "/disclosures"; }

TEST_F(ComplianceRoutesTest, RecordDisclosureDecodesEveryField) {
  Start();
  EXPECT_CALL(service_, RecordDisclosure(_, _))
      .WillOnce(Invoke([](const RequestContext& ctx, RecordDisclosureRequest req) {
        EXPECT_EQ(ctx.user, "nurse.synthetic");
        EXPECT_EQ(req.patient_id, "synthetic-patient-0001");
        EXPECT_EQ(req.record_ids, (std::vector<std::string>{kRecordId, "BBBBBBBBBBBBBBBBBBBBBB"}));
        EXPECT_EQ(req.disclosed_at_unix_us, std::optional<int64_t>(kNov29));
        EXPECT_EQ(req.disclosure.recipient_name, "Synthetic County Health Dept");
        EXPECT_EQ(req.disclosure.recipient_address, std::optional<std::string>("1 Main St"));
        EXPECT_EQ(req.disclosure.basis, "public_health");
        EXPECT_EQ(req.disclosure.description, "immunization history");
        EXPECT_EQ(req.disclosure.purpose_statement, "outbreak investigation");
        return StatusOr<uint64_t>(42);
      }));
  const RawResponse r = Send(
      Request("POST", "/v1/disclosures",
              R"({"patient_id":"synthetic-patient-0001","record_ids":["AAAAAAAAAAAAAAAAAAAAAA",)"
              R"("BBBBBBBBBBBBBBBBBBBBBB"],"disclosed_at":"2026-11-29",)"
              R"("recipient_name":"Synthetic County Health Dept","recipient_address":"1 Main St",)"
              R"("basis":"public_health","description":"immunization history",)"
              R"("purpose_statement":"outbreak investigation"})"));
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(Body(r), json({{"audit_seq", 42}}));
}

TEST_F(ComplianceRoutesTest, RecordDisclosureLeavesOptionalFieldsAbsent) {
  Start();
  EXPECT_CALL(service_, RecordDisclosure(_, _))
      .WillOnce(Invoke([](const RequestContext&, RecordDisclosureRequest req) {
        EXPECT_TRUE(req.record_ids.empty());
        EXPECT_FALSE(req.disclosed_at_unix_us.has_value());
        EXPECT_FALSE(req.disclosure.recipient_address.has_value());
        EXPECT_TRUE(req.disclosure.basis.empty());
        EXPECT_TRUE(req.disclosure.purpose_statement.empty());
        return StatusOr<uint64_t>(7);
      }));
  const RawResponse r = Send(
      Request("POST", "/v1/disclosures",
              R"({"patient_id":"p-1","recipient_name":"Dr. Synthetic","description":"labs"})"));
  EXPECT_EQ(r.status, 201);
}

TEST_F(ComplianceRoutesTest, RecordDisclosureAcceptsRfc3339Times) {
  Start();
  EXPECT_CALL(service_, RecordDisclosure(_, Field(&RecordDisclosureRequest::disclosed_at_unix_us,
                                                  std::optional<int64_t>(kNov29Afternoon))))
      .WillOnce(Return(StatusOr<uint64_t>(8)));
  EXPECT_EQ(Send(Request("POST", "/v1/disclosures",
                         R"({"patient_id":"p-1","recipient_name":"r","description":"d",)"
                         R"("disclosed_at":"2026-11-29T15:47:09Z"})"))
                .status,
            201);
}

TEST_F(ComplianceRoutesTest, RecordDisclosureRejectsMalformedBodies) {
  Start();
  const std::string base = R"("patient_id":"p-1","recipient_name":"r","description":"d")";
  const std::string s = kSecret;
  ExpectBadBody("/v1/disclosures", "{" + base + R"(,"recipient":"x"})", "recipient'");
  ExpectBadBody("/v1/disclosures", "{" + base + R"(,"record_ids":")" + s + "\"}", "record_ids");
  ExpectBadBody("/v1/disclosures", "{" + base + R"(,"record_ids":[1]})", "record_ids");
  ExpectBadBody("/v1/disclosures", "{" + base + R"(,"disclosed_at":")" + s + "\"}", "disclosed_at");
  ExpectBadBody("/v1/disclosures", "{" + base + R"(,"disclosed_at":"2026-02-30"})", "disclosed_at");
  ExpectBadBody("/v1/disclosures", "{" + base + R"(,"disclosed_at":1795910400})", "disclosed_at");
  ExpectBadBody("/v1/disclosures", "{" + base + R"(,"basis":")" + s + "\"}", "basis");
  ExpectBadBody("/v1/disclosures", R"({"patient_id":"p-1","description":"d"})", "recipient_name");
  ExpectBadBody("/v1/disclosures", R"({"patient_id":"p-1","recipient_name":"r"})", "description");
  ExpectBadBody("/v1/disclosures", R"({"recipient_name":"r","description":"d"})", "patient_id");
  ExpectProblem(Send(Request("POST", "/v1/disclosures", R"({"patient_id": )")), 400,
                "invalid-request");
}

TEST_F(ComplianceRoutesTest, DiscloseRecordReturnsTheRecordWithContent) {
  Start();
  EXPECT_CALL(service_, DiscloseRecord(_, std::string(kRecordId), std::optional<uint32_t>(2), _))
      .WillOnce(Invoke([](const RequestContext&, const std::string&, std::optional<uint32_t>,
                          const DisclosureInfo& d) -> StatusOr<storage::Record> {
        EXPECT_EQ(d.recipient_name, "Synthetic Insurance Co");
        EXPECT_FALSE(d.recipient_address.has_value());
        EXPECT_EQ(d.basis, "tpo_payment");
        EXPECT_EQ(d.description, "claim attachment");
        return storage::Record{SampleMeta(2), "hello"};
      }));
  EXPECT_CALL(service_, DiscloseRecord(_, std::string(kRecordId), std::optional<uint32_t>(), _))
      .WillOnce(Return(storage::Record{SampleMeta(), "hello"}));
  RawResponse r = Send(Request("POST", DiscloseTarget(),
                               R"({"version":2,"recipient_name":"Synthetic Insurance Co",)"
                               R"("basis":"tpo_payment","description":"claim attachment"})"));
  ASSERT_EQ(r.status, 200);
  const json j = Body(r);
  EXPECT_EQ(j["record_id"], kRecordId);
  EXPECT_EQ(j["version"], 2);
  EXPECT_EQ(j["content_base64"], "aGVsbG8=");
  EXPECT_EQ(j["amendment_reason"], "typo");

  r = Send(Request("POST", DiscloseTarget(), R"({"recipient_name":"r","description":"d"})"));
  EXPECT_EQ(r.status, 200);
}

TEST_F(ComplianceRoutesTest, DiscloseRecordRejectsMalformedRequests) {
  Start();
  const std::string tail = R"(,"recipient_name":"r","description":"d"})";
  for (const std::string version : {"0", "4294967296", "-1", "1.5", "\"2\"", "null"}) {
    ExpectBadBody(DiscloseTarget(), R"({"version":)" + version + tail, "version");
  }
  ExpectBadBody(DiscloseTarget(), R"({"patient_id":"p")" + tail, "patient_id");
  ExpectBadBody(DiscloseTarget(), R"({"basis":"gossip")" + tail, "basis");
  ExpectProblem(Send(Request("POST", "/v1/records/short/disclosures", "{" + tail.substr(1))), 400,
                "invalid-request");
  ExpectProblem(Send(Request("POST", DiscloseTarget() + "?version=1", "{" + tail.substr(1))), 400,
                "invalid-request");
}

TEST_F(ComplianceRoutesTest, SuspensionDecodesTimesAndTheOralFlag) {
  Start();
  EXPECT_CALL(service_, AddDisclosureSuspension(_, _))
      .WillOnce(Invoke([](const RequestContext&, SuspensionRequest req) {
        EXPECT_EQ(req.agency, "Synthetic Oversight Agency");
        EXPECT_EQ(req.start_unix_us, kNov29);
        EXPECT_EQ(req.end_unix_us, std::optional<int64_t>(kNov29Afternoon));
        EXPECT_FALSE(req.oral);
        EXPECT_EQ(req.statement, "would impede the investigation");
        return StatusOr<uint64_t>(9);
      }))
      .WillOnce(Invoke([](const RequestContext&, SuspensionRequest req) {
        EXPECT_TRUE(req.oral);
        EXPECT_FALSE(req.end_unix_us.has_value());
        return StatusOr<uint64_t>(10);
      }));
  RawResponse r = Send(Request(
      "POST", "/v1/disclosure-suspensions",
      R"({"agency":"Synthetic Oversight Agency","start":"2026-11-29","end":"2026-11-29T15:47:09Z",)"
      R"("statement":"would impede the investigation"})"));
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(Body(r), json({{"audit_seq", 9}}));
  r = Send(Request("POST", "/v1/disclosure-suspensions",
                   R"({"agency":"a","start":"2026-11-29","oral":true,"statement":"s"})"));
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(Body(r), json({{"audit_seq", 10}}));
}

TEST_F(ComplianceRoutesTest, SuspensionRejectsMalformedBodies) {
  Start();
  const std::string target = "/v1/disclosure-suspensions";
  const std::string s = kSecret;
  ExpectBadBody(target, R"({"agency":"a","statement":"s"})", "start");
  ExpectBadBody(target, R"({"agency":"a","start":")" + s + R"(","statement":"s"})", "start");
  ExpectBadBody(
      target, R"({"agency":"a","start":"2026-11-29","end":")" + s + R"(","statement":"s"})", "end");
  ExpectBadBody(target, R"({"agency":"a","start":"2026-11-29","oral":"yes","statement":"s"})",
                "oral");
  ExpectBadBody(target, R"({"agency":"a","start":"2026-11-29","statement":"s","until":"x"})",
                "until");
  ExpectBadBody(target, R"({"start":"2026-11-29","statement":"s"})", "agency");
}

TEST_F(ComplianceRoutesTest, ReportsCarryTheServicesBodyAndContentType) {
  Start();
  EXPECT_CALL(service_,
              AccountingOfDisclosures(
                  _, AllOf(Field(&ReportRequest::patient_id, "synthetic-patient-0001"),
                           Field(&ReportRequest::format, ReportFormat::kCsv),
                           Field(&ReportRequest::period_start_unix_us, std::optional(kNov29)))))
      .WillOnce(Return(RenderedReport{"text/csv; charset=utf-8", "date,recipient\r\n"}));
  EXPECT_CALL(service_, AccountingOfDisclosures(
                            _, AllOf(Field(&ReportRequest::format, ReportFormat::kJson),
                                     Field(&ReportRequest::period_start_unix_us, std::nullopt))))
      .WillOnce(Return(RenderedReport{"application/json", R"({"disclosures":[]})"}));
  EXPECT_CALL(service_, AccessReport(_, AllOf(Field(&ReportRequest::patient_id, "p-2"),
                                              Field(&ReportRequest::format, ReportFormat::kHtml))))
      .WillOnce(Return(RenderedReport{"text/html; charset=utf-8", "<!doctype html><p>report"}));

  RawResponse r = Send(
      Request("POST", "/v1/reports/accounting",
              R"({"patient_id":"synthetic-patient-0001","from":"2026-11-29","format":"csv"})"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "text/csv; charset=utf-8");
  EXPECT_EQ(r.body, "date,recipient\r\n");
  r = Send(Request("POST", "/v1/reports/accounting", R"({"patient_id":"p-1"})"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.body, R"({"disclosures":[]})");
  r = Send(Request("POST", "/v1/reports/access", R"({"patient_id":"p-2","format":"html"})"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(r.body, "<!doctype html><p>report");
}

TEST_F(ComplianceRoutesTest, ReportsRejectMalformedBodies) {
  Start();
  const std::string s = kSecret;
  ExpectBadBody("/v1/reports/accounting", R"({"patient_id":"p","format":")" + s + "\"}", "format");
  ExpectBadBody("/v1/reports/accounting", R"({"patient_id":"p","from":")" + s + "\"}", "from");
  ExpectBadBody("/v1/reports/accounting", R"({"format":"json"})", "patient_id");
  ExpectBadBody("/v1/reports/access", R"({"patient_id":"p","format":"pdf"})", "format");
  // The access report covers a fixed period: no "from".
  ExpectBadBody("/v1/reports/access", R"({"patient_id":"p","from":"2026-11-29"})", "from");
  ExpectBadBody("/v1/reports/access", R"({"patient_id":["p"]})", "patient_id");
}

TEST_F(ComplianceRoutesTest, EveryBodyRouteRefusesBadJsonUnknownFieldsAndOtherMediaTypes) {
  Start();
  const std::vector<std::string> targets = {
      "/v1/disclosures",        DiscloseTarget(),     "/v1/disclosure-suspensions",
      "/v1/reports/accounting", "/v1/reports/access", "/v1/audit/export",
      "/v1/audit/checkpoints"};
  for (const auto& target : targets) {
    SCOPED_TRACE(target);
    ExpectBadBodyDetail(target, R"({"patient_id": ")" + std::string(kSecret), "not valid JSON");
    ExpectBadBody(target, R"({"synthetic_extra":1})", "synthetic_extra'");
    ExpectBadBodyDetail(target, R"({"a":1,"a":1})", "duplicate field");
    std::string form = Request("POST", target, "{}");
    form.replace(form.find("application/json"), 16, "text/plain");
    ExpectProblem(Send(form), 415, "unsupported-media-type");
  }
}

TEST_F(ComplianceRoutesTest, ServiceErrorsBecomeProblems) {
  Start();
  EXPECT_CALL(service_, RecordDisclosure(_, _))
      .WillOnce(Return(Unavailable(std::string(kAuditUnavailableMessage))))
      .WillOnce(Return(InvalidArgument("disclosed_at must not be in the future")));
  EXPECT_CALL(service_, AccessReport(_, _))
      .WillOnce(Return(PermissionDenied("the configuration does not allow this principal")));
  const std::string body = R"({"patient_id":"p","recipient_name":"r","description":"d"})";
  ExpectProblem(Send(Request("POST", "/v1/disclosures", body)), 503, "audit-unavailable");
  ExpectProblem(Send(Request("POST", "/v1/disclosures", body)), 400, "invalid-request");
  ExpectProblem(Send(Request("POST", "/v1/reports/access", R"({"patient_id":"p"})")), 403,
                "forbidden");
}

// Every PHI route added for compliance audits its 401 and 403 rejections under its own action.
TEST_F(ComplianceRoutesTest, RejectionsAreAuditedUnderTheRoutesAction) {
  Start();
  struct Route {
    std::string method;
    std::string target;
    std::string action;
  };
  const Route routes[] = {
      {"POST", "/v1/disclosures", "record.disclose"},
      {"POST", DiscloseTarget(), "record.disclose"},
      {"POST", "/v1/disclosure-suspensions", "disclosure.suspend"},
      {"POST", "/v1/reports/accounting", "report.accounting"},
      {"POST", "/v1/reports/access", "report.access"},
      {"POST", "/v1/audit/export", "audit.export"},
  };
  for (const auto& route : routes) {
    SCOPED_TRACE(route.target);
    EXPECT_CALL(service_, AuditRejected(_, route.action, HasSubstr("unauthenticated"), _))
        .WillOnce(Return(Status::Ok()));
    EXPECT_CALL(service_, AuditRejected(Field(&RequestContext::user, "nurse.synthetic"),
                                        route.action, HasSubstr("forbidden"), _))
        .WillOnce(Return(Status::Ok()));
    std::string bad_token = Request(route.method, route.target, "{}");
    bad_token.replace(bad_token.find("Bearer "), 7, "Bearer x");
    ExpectProblem(Send(bad_token), 401, "unauthenticated");
    std::string bad_role = Request(route.method, route.target, "{}");
    bad_role.replace(bad_role.find("Role: nurse"), 11, "Role: wizard");
    ExpectProblem(Send(bad_role), 403, "forbidden");
    ::testing::Mock::VerifyAndClearExpectations(&service_);
  }
}

TEST_F(ComplianceRoutesTest, ExportStreamsEveryChunkInOrder) {
  Start();
  std::vector<std::string> chunks;
  for (char c : std::string("abcdef")) chunks.push_back(std::string(40000, c) + "\n");
  EXPECT_CALL(service_,
              ExportAudit(_,
                          AllOf(Field(&AuditExportRequest::format, ExportFormat::kJsonLines),
                                Field(&AuditExportRequest::from_unix_us, std::nullopt),
                                Field(&AuditExportRequest::patient_id, std::nullopt)),
                          _))
      .WillOnce(
          Invoke([&](const RequestContext&, const AuditExportRequest&, const ExportSink& sink) {
            for (const auto& chunk : chunks) EXPECT_TRUE(sink(chunk));
            return Status::Ok();
          }));
  const RawResponse r = Send(Request("POST", "/v1/audit/export", "{}"));
  ASSERT_TRUE(r.received) << "the export did not end with its final chunk";
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.chunked);
  EXPECT_GE(r.chunks, chunks.size());
  EXPECT_EQ(r.Header("content-type"), "application/x-ndjson");
  EXPECT_EQ(r.Header("cache-control"), "no-store");
  std::string all;
  for (const auto& chunk : chunks) all += chunk;
  EXPECT_EQ(r.body, all);
}

TEST_F(ComplianceRoutesTest, ExportPassesFiltersAndLabelsEachFormat) {
  Start();
  EXPECT_CALL(
      service_,
      ExportAudit(
          _,
          AllOf(Field(&AuditExportRequest::format, ExportFormat::kCsv),
                Field(&AuditExportRequest::from_unix_us, std::optional(kNov29)),
                Field(&AuditExportRequest::to_unix_us, std::optional(kNov29Afternoon)),
                Field(&AuditExportRequest::patient_id, std::optional<std::string>("p-1")),
                Field(&AuditExportRequest::user, std::optional<std::string>("u")),
                Field(&AuditExportRequest::action, std::optional<std::string>("record.read")),
                Field(&AuditExportRequest::outcome, std::optional<std::string>("denied"))),
          _))
      .WillOnce(
          Invoke([](const RequestContext&, const AuditExportRequest&, const ExportSink& sink) {
            sink("seq,time\r\n");
            return Status::Ok();
          }));
  EXPECT_CALL(service_, ExportAudit(_, Field(&AuditExportRequest::format, ExportFormat::kFhir), _))
      .WillOnce(Return(Status::Ok()));
  RawResponse r = Send(Request(
      "POST", "/v1/audit/export",
      R"({"format":"csv","from":"2026-11-29","to":"2026-11-29T15:47:09Z","patient_id":"p-1",)"
      R"("user":"u","action":"record.read","outcome":"denied"})"));
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "text/csv; charset=utf-8");
  EXPECT_EQ(r.body, "seq,time\r\n");
  // An export that produces nothing is still a complete, empty response.
  r = Send(Request("POST", "/v1/audit/export", R"({"format":"fhir"})"));
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/fhir+json");
  EXPECT_EQ(r.body, "");
}

TEST_F(ComplianceRoutesTest, ExportRejectsMalformedBodies) {
  Start();
  const std::string s = kSecret;
  ExpectBadBody("/v1/audit/export", R"({"format":"xml"})", "format");
  ExpectBadBody("/v1/audit/export", R"({"from":")" + s + "\"}", "from");
  ExpectBadBody("/v1/audit/export", R"({"to":"2026-11-31"})", "to");
  ExpectBadBody("/v1/audit/export", R"({"from":"2026-11-29","to":"2026-11-28"})", "to");
  ExpectBadBody("/v1/audit/export", R"({"patient_id":5})", "patient_id");
  ExpectBadBody("/v1/audit/export", R"({"limit":5})", "limit");
  std::string no_body = Request("POST", "/v1/audit/export", "");
  no_body.replace(no_body.find("Content-Length: 0\r\n"), 19, "");
  ExpectProblem(Send(no_body), 411, "length-required");
}

TEST_F(ComplianceRoutesTest, ExportRefusedBeforeItsFirstByteIsAProblem) {
  Start();
  EXPECT_CALL(service_, ExportAudit(_, _, _))
      .WillOnce(Return(PermissionDenied("not allowed to export")))
      .WillOnce(Return(Unavailable(std::string(kAuditUnavailableMessage))));
  ExpectProblem(Send(Request("POST", "/v1/audit/export", "{}")), 403, "forbidden");
  ExpectProblem(Send(Request("POST", "/v1/audit/export", "{}")), 503, "audit-unavailable");
}

TEST_F(ComplianceRoutesTest, ExportFailingMidwayNeverLooksComplete) {
  Start();
  EXPECT_CALL(service_, ExportAudit(_, _, _))
      .WillOnce(
          Invoke([](const RequestContext&, const AuditExportRequest&, const ExportSink& sink) {
            EXPECT_TRUE(sink("{\"seq\":1}\n"));
            return DataLoss("audit entry 2 failed its integrity check");
          }));
  RawConnection c(socket_path_);
  const RawResponse r = c.RoundTrip(Request("POST", "/v1/audit/export", "{}"));
  EXPECT_FALSE(r.received);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"seq\":1}\n");
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(ComplianceRoutesTest, ExportStopsWhenTheClientGoesAway) {
  signal(SIGPIPE, SIG_IGN);  // as phivaultd does: a vanished peer is an error return, not a signal
  Start();
  std::promise<int> accepted_chunks;
  EXPECT_CALL(service_, ExportAudit(_, _, _))
      .WillOnce(
          Invoke([&](const RequestContext&, const AuditExportRequest&, const ExportSink& sink) {
            const std::string chunk(64 << 10, 'x');
            int n = 0;
            // Far more than any socket buffer holds: the sink must say stop long before the end.
            while (n < 4096 && sink(chunk)) ++n;
            accepted_chunks.set_value(n);
            return Status::Ok();
          }));
  {
    RawConnection c(socket_path_);
    ASSERT_TRUE(c.Send(Request("POST", "/v1/audit/export", "{}")));
    ASSERT_TRUE(c.ReadUntil("\r\n\r\n"));
  }
  auto n = accepted_chunks.get_future();
  ASSERT_EQ(n.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_LT(n.get(), 4096);
}

TEST_F(AuditRoutesTest, VerifierKeyAndCheckpoints) {
  Start();
  const std::string note =
      "phivault/audit\n3\nq83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n\n"
      "\xe2\x80\x94 phivault/audit AAAA\n";
  EXPECT_CALL(service_, AuditVerifierKey(_)).WillOnce(Return(std::string("phivault/audit+0a+AQ")));
  EXPECT_CALL(service_, AuditCheckpoint(_, false))
      .WillOnce(Return(note))
      .WillOnce(Return(NotFound("no checkpoint yet")));
  EXPECT_CALL(service_, AuditCheckpoint(_, true)).Times(2).WillRepeatedly(Return(note));

  RawResponse r = Send(Request("GET", "/v1/audit/pubkey"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json({{"verifier_key", "phivault/audit+0a+AQ"}}));

  r = Send(Request("GET", "/v1/audit/checkpoint"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(r.body, note);
  ExpectProblem(Send(Request("GET", "/v1/audit/checkpoint")), 404, "not-found");

  // POST without a body, and with an empty object.
  std::string no_body = Request("POST", "/v1/audit/checkpoints", "");
  const std::string framing = "Content-Type: application/json\r\nContent-Length: 0\r\n";
  no_body.replace(no_body.find(framing), framing.size(), "");
  r = Send(no_body);
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(r.Header("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(r.body, note);
  EXPECT_EQ(Send(Request("POST", "/v1/audit/checkpoints", "{}")).status, 201);
}

TEST_F(AuditRoutesTest, NewCheckpointOfAnEmptyLogIsAConflict) {
  Start();
  EXPECT_CALL(service_, AuditCheckpoint(_, true))
      .WillOnce(Return(FailedPrecondition("the audit log is empty")));
  ExpectProblem(Send(Request("POST", "/v1/audit/checkpoints", "{}")), 409, "failed-precondition");
  ExpectBadBody("/v1/audit/checkpoints", R"({"size":3})", "size");
  ExpectProblem(Send(Request("POST", "/v1/audit/checkpoints", "[]")), 400, "invalid-request");
  ExpectProblem(Send(Request("GET", "/v1/audit/checkpoint?fresh=1")), 400, "invalid-request");
}

TEST_F(AuditRoutesTest, InclusionProofPassesSeqAndTreeSize) {
  Start();
  InclusionProofResult proof;
  proof.leaf_index = 4;
  proof.tree_size = 9;
  proof.leaf_hash_hex = std::string(64, 'a');
  proof.path_hex = {std::string(64, 'b'), std::string(64, 'c')};
  EXPECT_CALL(service_, AuditInclusionProof(_, 5u, std::optional<uint64_t>(9)))
      .WillOnce(Return(proof));
  EXPECT_CALL(service_, AuditInclusionProof(_, 18446744073709551615u, std::optional<uint64_t>()))
      .WillOnce(Return(InvalidArgument("seq must be between 1 and the tree size")));
  const RawResponse r = Send(Request("GET", "/v1/audit/proofs/inclusion?seq=5&tree_size=9"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json({{"seq", 5},
                           {"leaf_index", 4},
                           {"tree_size", 9},
                           {"leaf_hash", std::string(64, 'a')},
                           {"path", {std::string(64, 'b'), std::string(64, 'c')}}}));
  ExpectProblem(Send(Request("GET", "/v1/audit/proofs/inclusion?seq=18446744073709551615")), 400,
                "invalid-request");
}

TEST_F(AuditRoutesTest, ConsistencyProofPassesBothSizes) {
  Start();
  EXPECT_CALL(service_, AuditConsistencyProof(_, 3u, 7u))
      .WillOnce(Return(std::vector<std::string>{std::string(64, 'd')}));
  const RawResponse r = Send(Request("GET", "/v1/audit/proofs/consistency?from=3&to=7"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json({{"from", 3}, {"to", 7}, {"path", {std::string(64, 'd')}}}));
}

TEST_F(AuditRoutesTest, BadProofQueriesNeverReachTheService) {
  Start();
  struct Case {
    std::string target;
    std::string detail;
  };
  const Case cases[] = {
      {"/v1/audit/proofs/inclusion", "'seq' is required"},
      {"/v1/audit/proofs/inclusion?tree_size=3", "'seq' is required"},
      {"/v1/audit/proofs/inclusion?seq=", "'seq' must be a decimal number"},
      {"/v1/audit/proofs/inclusion?seq", "'seq' must be a decimal number"},
      {"/v1/audit/proofs/inclusion?seq=abc", "'seq' must be a decimal number"},
      {"/v1/audit/proofs/inclusion?seq=-1", "'seq' must be a decimal number"},
      {"/v1/audit/proofs/inclusion?seq=%31", "'seq' must be a decimal number"},
      {"/v1/audit/proofs/inclusion?seq=18446744073709551616", "'seq' must be a decimal number"},
      {"/v1/audit/proofs/inclusion?seq=1&seq=2", "'seq' is given twice"},
      {"/v1/audit/proofs/inclusion?seq=1&size=3", "unknown query parameter"},
      {"/v1/audit/proofs/inclusion?seq=1&", "unknown query parameter"},
      {"/v1/audit/proofs/consistency?from=1", "'to' is required"},
      {"/v1/audit/proofs/consistency?to=1", "'from' is required"},
      {"/v1/audit/proofs/consistency?from=1&to=2&seq=3", "unknown query parameter"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.target);
    const RawResponse r = Send(Request("GET", c.target));
    ExpectProblem(r, 400, "invalid-request");
    EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr(c.detail));
  }
}

// The proof routes reveal no PHI: like /v1/status, their rejections are refused without an
// audit entry (the StrictMock fails on any AuditRejected call).
TEST_F(AuditRoutesTest, RejectionsOnProofRoutesAreNotAudited) {
  Start(TestConfig(getuid() + 1));
  for (const std::string target :
       {"/v1/audit/pubkey", "/v1/audit/checkpoint", "/v1/audit/proofs/inclusion?seq=1",
        "/v1/audit/proofs/consistency?from=1&to=2"}) {
    SCOPED_TRACE(target);
    ExpectProblem(Send(Request("GET", target)), 401, "unauthenticated");
  }
  ExpectProblem(Send(Request("POST", "/v1/audit/checkpoints", "{}")), 401, "unauthenticated");
}

}  // namespace
}  // namespace phivault::daemon
