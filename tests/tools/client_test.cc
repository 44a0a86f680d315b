// phivault::client::Client against a scripted fake daemon on a temporary Unix socket.
#include "tools/client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "tests/testing/temp_dir.h"
#include "tests/tools/fake_daemon.h"
#include "tools/cli.h"

namespace phivault::client {
namespace {

using testing::FakeDaemon;
using testing::Problem;
using testing::Reply;
using testing::SeenRequest;

const Actor kActor{.user = "dr.house", .role = "physician", .purpose = "TREAT"};

nlohmann::json MetadataJson(uint32_t version = 1) {
  nlohmann::json j = {{"record_id", "rec_AbC-123"},
                      {"version", version},
                      {"patient_id", "SYNTH-0001"},
                      {"category", "clinical_note"},
                      {"content_type", "text/plain"},
                      {"encounter_date", "2024-03-01"},
                      {"author", "Dr. Synthetic"},
                      {"created", "2024-03-01T10:00:00.123456Z"},
                      {"content_bytes", 5}};
  if (version > 1) j["amendment_reason"] = "typo";
  return j;
}

Reply JsonReply(int status, const nlohmann::json& j) {
  return Reply{.status = status, .body = j.dump()};
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto::InitSodium().ok()); }
  testing::TempDir dir_;
  std::string socket_ = dir_.Sub("d.sock");
};

TEST_F(ClientTest, HealthSendsNoActorHeadersOrToken) {
  FakeDaemon daemon(socket_);
  Client client(socket_, "pvt_secret");
  ASSERT_TRUE(client.Health().ok());
  SeenRequest r = daemon.last();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.uri, "/v1/health");
  EXPECT_FALSE(r.has("authorization"));
  EXPECT_FALSE(r.has("x-phivault-user"));
}

TEST_F(ClientTest, HealthRejectsAnAnswerThatIsNotOk) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler([](const SeenRequest&) { return Reply{.body = R"({"status":"starting"})"}; });
  Client client(socket_);
  auto r = client.Health();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kProtocol);
}

TEST_F(ClientTest, StatusSendsActorHeadersAndBearerTokenAndParsesFields) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler([](const SeenRequest&) {
    return JsonReply(200, {{"version", "0.1.0"},
                           {"uptime_seconds", 12},
                           {"audit_entries", 345},
                           {"epochs", 3},
                           {"records", 17},
                           {"patients", 5},
                           {"disk",
                            {{"free_bytes", 1000000},
                             {"reserve_bytes", 268435456},
                             {"live_data_bytes", 4096},
                             {"table_bytes", 1024},
                             {"blob_bytes", 2048},
                             {"log_bytes", 1024}}}});
  });
  Client client(socket_, "pvt_secret");
  Actor actor = kActor;
  actor.request_id = "trace-7";
  auto s = client.Status(actor);
  ASSERT_TRUE(s.ok()) << s.error().Message();
  EXPECT_EQ(s->version, "0.1.0");
  EXPECT_EQ(s->uptime_seconds, 12);
  EXPECT_EQ(s->audit_entries, 345u);
  EXPECT_EQ(s->epochs, 3u);
  EXPECT_EQ(s->disk.reserve_bytes, 268435456u);
  EXPECT_EQ(s->disk.live_data_bytes, 4096u);
  EXPECT_EQ(s->records, 17u);
  EXPECT_EQ(s->patients, 5u);
  EXPECT_EQ(s->disk.table_bytes, 1024u);
  EXPECT_EQ(s->disk.blob_bytes, 2048u);
  EXPECT_EQ(s->disk.log_bytes, 1024u);

  SeenRequest r = daemon.last();
  EXPECT_EQ(r.uri, "/v1/status");
  EXPECT_EQ(r.headers["authorization"], "Bearer pvt_secret");
  EXPECT_EQ(r.headers["x-phivault-user"], "dr.house");
  EXPECT_EQ(r.headers["x-phivault-role"], "physician");
  EXPECT_EQ(r.headers["x-phivault-purpose"], "TREAT");
  EXPECT_EQ(r.headers["x-request-id"], "trace-7");
}

TEST_F(ClientTest, OperatorClientSendsNoAuthorizationHeader) {
  FakeDaemon daemon(socket_);
  Client client(socket_);
  auto r = client.Send("GET", "/v1/status", &kActor);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(daemon.last().has("authorization"));
  EXPECT_EQ(daemon.last().headers["x-phivault-role"], "physician");
}

TEST_F(ClientTest, CreateRecordSendsBinaryContentAsBase64AndParsesMetadata) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler([](const SeenRequest&) { return JsonReply(201, MetadataJson()); });
  Client client(socket_, "tok");
  const std::string content("\x00\x01\xff\n\r binary \x00", 14);
  NewRecord rec{.patient_id = "SYNTH-0001",
                .category = "clinical_note",
                .content_type = "application/octet-stream",
                .encounter_date = "2024-03-01",
                .author = "Dr. Synthetic",
                .content = content};
  auto m = client.CreateRecord(kActor, rec);
  ASSERT_TRUE(m.ok()) << m.error().Message();
  EXPECT_EQ(m->record_id, "rec_AbC-123");
  EXPECT_EQ(m->version, 1u);
  EXPECT_EQ(m->created, "2024-03-01T10:00:00.123456Z");
  EXPECT_EQ(m->content_bytes, 5u);
  EXPECT_TRUE(m->amendment_reason.empty());

  SeenRequest r = daemon.last();
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.uri, "/v1/records");
  EXPECT_NE(r.headers["content-type"].find("application/json"), std::string::npos);
  auto body = nlohmann::json::parse(r.body);
  EXPECT_FALSE(body.contains("content"));
  EXPECT_EQ(body["patient_id"], "SYNTH-0001");
  EXPECT_EQ(body["category"], "clinical_note");
  EXPECT_EQ(body["content_type"], "application/octet-stream");
  EXPECT_EQ(body["encounter_date"], "2024-03-01");
  EXPECT_EQ(body["author"], "Dr. Synthetic");
  auto decoded = crypto::Base64Decode(body["content_base64"].get<std::string>());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, content);
}

TEST_F(ClientTest, ReadRecordAsksForTheVersionAndDecodesContent) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler([](const SeenRequest&) {
    nlohmann::json j = MetadataJson(2);
    j["content_base64"] = crypto::Base64Encode(std::string("hello\0world", 11));
    return JsonReply(200, j);
  });
  Client client(socket_);
  auto r = client.ReadRecord(kActor, "rec_AbC-123", 2);
  ASSERT_TRUE(r.ok()) << r.error().Message();
  EXPECT_EQ(daemon.last().uri, "/v1/records/rec_AbC-123?version=2");
  EXPECT_EQ(r->metadata.version, 2u);
  EXPECT_EQ(r->metadata.amendment_reason, "typo");
  EXPECT_EQ(r->content, std::string("hello\0world", 11));
}

TEST_F(ClientTest, RecordIdIsPercentEncodedInThePath) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler([](const SeenRequest&) { return JsonReply(200, MetadataJson()); });
  Client client(socket_);
  ASSERT_TRUE(client.ReadMetadata(kActor, "a/b?c").ok());
  EXPECT_EQ(daemon.last().uri, "/v1/records/a%2Fb%3Fc/metadata");
}

TEST_F(ClientTest, ReadContentReturnsRawBytesAndContentType) {
  FakeDaemon daemon(socket_);
  const std::string pdf("%PDF-1.7\x00\xff", 10);
  daemon.SetHandler([&pdf](const SeenRequest&) {
    return Reply{.status = 200, .content_type = "application/pdf", .body = pdf};
  });
  Client client(socket_);
  auto r = client.ReadContent(kActor, "rec_1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(daemon.last().uri, "/v1/records/rec_1/content");
  EXPECT_EQ(r->content_type, "application/pdf");
  EXPECT_EQ(r->bytes, pdf);
}

TEST_F(ClientTest, AmendSendsReasonAndOnlyTheGivenOptionalFields) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler([](const SeenRequest&) { return JsonReply(201, MetadataJson(2)); });
  Client client(socket_);
  Amendment amendment{.reason = "corrected dosage", .content = "new text"};
  amendment.author = "Dr. Second";
  auto m = client.AmendRecord(kActor, "rec_1", amendment);
  ASSERT_TRUE(m.ok()) << m.error().Message();
  EXPECT_EQ(m->version, 2u);
  SeenRequest r = daemon.last();
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.uri, "/v1/records/rec_1/versions");
  auto body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["reason"], "corrected dosage");
  EXPECT_EQ(body["author"], "Dr. Second");
  EXPECT_FALSE(body.contains("content_type"));
  EXPECT_FALSE(body.contains("encounter_date"));
  EXPECT_EQ(*crypto::Base64Decode(body["content_base64"].get<std::string>()), "new text");
}

TEST_F(ClientTest, SearchPatientPostsThePatientIdAndParsesEveryRecord) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler([](const SeenRequest&) {
    return JsonReply(200, {{"records", {MetadataJson(1), MetadataJson(3)}}});
  });
  Client client(socket_);
  auto list = client.SearchPatient(kActor, "SYNTH-0001");
  ASSERT_TRUE(list.ok()) << list.error().Message();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].version, 3u);
  EXPECT_EQ(daemon.last().uri, "/v1/records/_search");
  EXPECT_EQ(nlohmann::json::parse(daemon.last().body),
            (nlohmann::json{{"patient_id", "SYNTH-0001"}}));
}

TEST_F(ClientTest, ProblemJsonIsParsedIntoTheError) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler([](const SeenRequest&) {
    return Problem(403, "forbidden", "forbidden", "role billing may not read psychotherapy_note");
  });
  Client client(socket_);
  auto r = client.ReadRecord(kActor, "rec_1");
  ASSERT_FALSE(r.ok());
  const Error& e = r.error();
  EXPECT_EQ(r.http_status(), 403);
  EXPECT_EQ(e.kind, ErrorKind::kForbidden);
  EXPECT_EQ(e.type, "urn:phivault:problem:forbidden");
  EXPECT_EQ(e.title, "forbidden");
  EXPECT_EQ(e.detail, "role billing may not read psychotherapy_note");
  EXPECT_EQ(e.request_id, "req-42");
  EXPECT_EQ(e.Message(), "forbidden: role billing may not read psychotherapy_note");
  EXPECT_EQ(e.ToStatus().code(), StatusCode::kPermissionDenied);
}

TEST_F(ClientTest, ErrorWithoutProblemBodyFallsBackToTheReasonPhrase) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler([](const SeenRequest&) {
    return Reply{.status = 404, .content_type = "text/plain", .body = "nope"};
  });
  Client client(socket_);
  auto r = client.ReadMetadata(kActor, "rec_1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(r.error().title, "Not Found");
  EXPECT_TRUE(r.error().type.empty());
}

struct Mapping {
  int status;
  std::string problem;
  ErrorKind kind;
  int exit_code;
};

TEST_F(ClientTest, EveryDaemonStatusMapsToItsErrorKindAndExitCode) {
  const std::vector<Mapping> table = {
      {400, "invalid-request", ErrorKind::kInvalid, 1},
      {401, "unauthenticated", ErrorKind::kUnauthenticated, 3},
      {403, "forbidden", ErrorKind::kForbidden, 3},
      {404, "not-found", ErrorKind::kNotFound, 4},
      {410, "record-shredded", ErrorKind::kShredded, 4},
      {413, "payload-too-large", ErrorKind::kTooLarge, 1},
      {500, "integrity-failure", ErrorKind::kIntegrity, 6},
      {500, "internal", ErrorKind::kServer, 1},
      {503, "audit-unavailable", ErrorKind::kUnavailable, 5},
      {507, "insufficient-storage", ErrorKind::kDiskFull, 1},
  };
  FakeDaemon daemon(socket_);
  Client client(socket_);
  for (const Mapping& m : table) {
    daemon.SetHandler([&m](const SeenRequest&) { return Problem(m.status, m.problem, "t", "d"); });
    auto r = client.ReadMetadata(kActor, "rec_1");
    ASSERT_FALSE(r.ok()) << m.status;
    EXPECT_EQ(r.error().kind, m.kind) << m.status << " " << m.problem;
    EXPECT_EQ(r.error().http_status, m.status);
    EXPECT_EQ(tools::ExitCodeFor(r.error()), m.exit_code) << m.status << " " << m.problem;
  }
}

TEST_F(ClientTest, MetadataWithAMissingFieldIsAProtocolError) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler([](const SeenRequest&) {
    nlohmann::json j = MetadataJson();
    j.erase("created");
    return JsonReply(201, j);
  });
  Client client(socket_);
  auto r = client.CreateRecord(kActor, NewRecord{.content = "x"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kProtocol);
  EXPECT_NE(r.error().detail.find("created"), std::string::npos);
  EXPECT_EQ(tools::ExitCodeFor(r.error()), 1);
}

TEST_F(ClientTest, KeepAliveReusesOneConnectionForManyCalls) {
  FakeDaemon daemon(socket_);
  Client client(socket_);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client.Health().ok());
  EXPECT_EQ(client.connections_opened(), 1u);
  EXPECT_EQ(daemon.connections(), 1);
  EXPECT_EQ(daemon.requests().size(), 5u);
}

TEST_F(ClientTest, ReconnectsWhenTheDaemonAnswersConnectionClose) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler(
      [](const SeenRequest&) { return Reply{.body = R"({"status":"ok"})", .close = true}; });
  Client client(socket_);
  ASSERT_TRUE(client.Health().ok());
  ASSERT_TRUE(client.Health().ok());
  EXPECT_EQ(client.connections_opened(), 2u);
}

TEST_F(ClientTest, ReconnectsAfterTheDaemonClosedAnIdleConnection) {
  FakeDaemon daemon(socket_, /*keep_alive_timeout_ms=*/50);
  daemon.SetHandler([](const SeenRequest&) { return JsonReply(201, MetadataJson()); });
  Client client(socket_);
  ASSERT_TRUE(client.CreateRecord(kActor, NewRecord{.content = "a"}).ok());
  // Let the daemon's idle timeout close the kept-alive connection.
  for (int i = 0; i < 500 && daemon.open_connections() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(daemon.open_connections(), 0);
  auto second = client.CreateRecord(kActor, NewRecord{.content = "b"});
  ASSERT_TRUE(second.ok()) << second.error().Message();
  EXPECT_EQ(client.connections_opened(), 2u);
  EXPECT_EQ(daemon.requests().size(), 2u);  // the POST was sent exactly once more
}

TEST_F(ClientTest, AnAnswerSentBeforeTheBodyWasReadIsReported) {
  FakeDaemon daemon(socket_);
  daemon.RejectBodiesOver(1024);
  Client client(socket_);
  // Far more than the socket buffers hold, so the daemon closes while the client still sends.
  auto r = client.CreateRecord(kActor, NewRecord{.content = std::string(4u << 20, 'x')});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTooLarge) << r.error().Message();
  EXPECT_EQ(r.http_status(), 413);
  EXPECT_TRUE(client.Health().ok());  // and the next call gets a fresh connection
  EXPECT_EQ(client.connections_opened(), 2u);
}

TEST_F(ClientTest, WaitUntilHealthyWaitsForADaemonThatIsStarting) {
  std::unique_ptr<FakeDaemon> daemon;
  std::thread starter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    daemon = std::make_unique<FakeDaemon>(socket_);
  });
  Client client(socket_);
  auto r = client.WaitUntilHealthy(std::chrono::seconds(30));
  starter.join();
  EXPECT_TRUE(r.ok()) << r.error().Message();
}

TEST_F(ClientTest, WaitUntilHealthyGivesUpWithTheLastError) {
  Client client(dir_.Sub("never.sock"));
  auto r = client.WaitUntilHealthy(std::chrono::milliseconds(50));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kUnavailable);
}

TEST_F(ClientTest, NoSocketFileIsUnavailable) {
  Client client(dir_.Sub("missing.sock"));
  auto r = client.Health();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kUnavailable);
  EXPECT_EQ(r.http_status(), 0);
  EXPECT_NE(r.error().detail.find("missing.sock"), std::string::npos);
  EXPECT_EQ(tools::ExitCodeFor(r.error()), 5);
  EXPECT_EQ(r.error().ToStatus().code(), StatusCode::kUnavailable);
}

TEST_F(ClientTest, StaleSocketFileWithNoListenerIsUnavailable) {
  // What a crashed daemon leaves behind: a socket file nobody listens on.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  Client client(socket_);
  auto r = client.Status(kActor);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kUnavailable);
  EXPECT_NE(r.error().detail.find("is phivaultd running"), std::string::npos);
}

TEST_F(ClientTest, UnavailableAfterTheDaemonStops) {
  Client client(socket_);
  {
    FakeDaemon daemon(socket_);
    ASSERT_TRUE(client.Health().ok());
  }
  ::unlink(socket_.c_str());
  auto r = client.Health();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kUnavailable);
}

TEST_F(ClientTest, HeaderInjectionIsRefusedBeforeAnythingIsSent) {
  FakeDaemon daemon(socket_);
  Client client(socket_);
  Actor actor = kActor;
  actor.user = "mallory\r\nX-Phivault-Role: admin";
  auto r = client.Status(actor);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kClient);
  EXPECT_TRUE(daemon.requests().empty());
}

TEST_F(ClientTest, ResponseLargerThanTheLimitIsRefused) {
  FakeDaemon daemon(socket_);
  daemon.SetHandler([](const SeenRequest&) {
    return Reply{.status = 200, .content_type = "text/plain", .body = std::string(4096, 'x')};
  });
  Client client(ClientOptions{.socket_path = socket_, .max_response_bytes = 1024});
  auto r = client.ReadContent(kActor, "rec_1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kProtocol);
}

TEST_F(ClientTest, DefaultResponseLimitAdmitsTheLargestRecord) {
  // 64 MiB of content is 89478488 bytes of base64 inside the JSON read response.
  EXPECT_GT(ClientOptions{}.max_response_bytes, 89478488u + 65536u);
}

// Large enough to cross every buffer on both sides; the full 64 MiB would only add run time.
TEST_F(ClientTest, MultiMebibyteContentRoundTrips) {
  FakeDaemon daemon(socket_);
  std::string content(8u << 20, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>((i * 131) >> 7);
  bool upload_intact = false;
  daemon.SetHandler([&content, &upload_intact](const SeenRequest& req) {
    nlohmann::json in = nlohmann::json::parse(req.body);
    upload_intact = *crypto::Base64Decode(in["content_base64"].get<std::string>()) == content;
    return JsonReply(201, MetadataJson());
  });
  Client client(socket_);
  auto m = client.CreateRecord(kActor, NewRecord{.content = content});
  ASSERT_TRUE(m.ok()) << m.error().Message();
  EXPECT_TRUE(upload_intact);

  daemon.SetHandler([&content](const SeenRequest&) {
    nlohmann::json out = MetadataJson();
    out["content_base64"] = crypto::Base64Encode(content);
    return JsonReply(200, out);
  });
  auto r = client.ReadRecord(kActor, "rec_AbC-123");
  ASSERT_TRUE(r.ok()) << r.error().Message();
  EXPECT_TRUE(r->content == content);
}

}  // namespace
}  // namespace phivault::client
