// Shared by the in-process API tests: the real Poco server on a temporary Unix socket, the real
// router, authenticator and handlers, a StrictMock VaultService, and helpers to write requests
// byte by byte and check problem responses.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

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
#include "tests/daemon/raw_http_client.h"
#include "tests/testing/temp_dir.h"

namespace phivault::daemon::testing {

using json = nlohmann::json;

inline constexpr char kToken[] = "pvt_synthetic-test-token";
inline constexpr char kRecordId[] = "AAAAAAAAAAAAAAAAAAAAAA";

inline std::string TokenHash(const std::string& token) {
  return crypto::HexEncode(crypto::AsView(crypto::Sha256(token)));
}

inline Config TestConfig(uint32_t app_uid) {
  Config c;
  c.config_path = "test.toml";
  c.roles = DefaultRoles();
  c.categories = DefaultCategories();
  c.max_content_bytes = 1000;
  c.limits.max_body_bytes = 4096;
  c.limits.max_header_bytes = 2048;
  // Well above what any test holds open at once: a connection a test has just closed may not yet
  // be counted down by the server when the next one arrives. The limit test sets its own.
  c.limits.max_connections = 16;
  c.limits.idle_timeout_ms = 400;
  // Likewise a budget of failed authentications no test spends by accident (each audits every
  // refusal on its own); the tests of the budget set their own.
  c.limits.auth_failure_burst = 1000;
  ApplicationConfig app;
  app.name = "ehr";
  app.token_sha256_hex = TokenHash(kToken);
  app.uids = {app_uid};
  app.actions = KnownActions();
  app.roles = DefaultRoles();
  c.applications.push_back(app);
  return c;
}

inline storage::RecordMetadata SampleMeta(uint32_t version = 1) {
  storage::RecordMetadata m;
  m.record_id = kRecordId;
  m.version = version;
  m.patient_id = "synthetic-patient-0001";
  m.category = "clinical-note";
  m.content_type = "text/plain";
  m.encounter_date = "2026-11-29";
  m.author = "dr-synthetic";
  m.created_unix_us = 1795967229123456;  // 2026-11-29T15:47:09.123456Z
  m.content_bytes = 5;
  m.epoch_id = "d20361129";
  if (version > 1) m.amendment_reason = "typo";
  return m;
}

inline std::string Request(const std::string& method, const std::string& target,
                           const std::string& body = "", const std::string& extra_headers = "",
                           bool with_auth = true) {
  std::string r = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n";
  if (with_auth) {
    r += std::string("Authorization: Bearer ") + kToken + "\r\n";
    r += "X-Phivault-User: nurse.synthetic\r\nX-Phivault-Role: nurse\r\n"
         "X-Phivault-Purpose: TREAT\r\n";
  }
  r += extra_headers;
  if (!body.empty() || method == "POST") {
    r +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return r + "\r\n" + body;
}

inline const std::string kCreateBody =
    R"({"patient_id":"synthetic-patient-0001","category":"clinical-note",)"
    R"("content_type":"text/plain","encounter_date":"2026-11-29","author":"dr-synthetic",)"
    R"("content":"hello"})";

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto::InitSodium().ok()); }

  void Start(Config config) {
    config_ = std::move(config);
    auto auth = Authenticator::Create(config_);
    ASSERT_TRUE(auth.ok()) << auth.status().ToString();
    auth_ = std::move(auth).value();
    HttpServerOptions options;
    options.socket_path = socket_path_;
    options.socket_mode = 0660;
    options.limits = config_.limits;
    auto server =
        HttpServer::Start(options, NewApiHandlerFactory(ApiDeps{&config_, &service_, auth_.get()}));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }
  void Start() { Start(TestConfig(getuid())); }

  RawResponse Send(const std::string& request) {
    RawConnection c(socket_path_);
    EXPECT_TRUE(c.connected());
    return c.RoundTrip(request);
  }

  static json Body(const RawResponse& r) { return json::parse(r.body); }

  // Waits (bounded) until the server counts `n` live connections.
  bool WaitForConnections(size_t n) {
    for (int i = 0; i < 400 && server_->active_connections() != n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return server_->active_connections() == n;
  }

  phivault::testing::TempDir dir_;
  std::string socket_path_ = dir_.Sub("phivault.sock");
  Config config_;
  ::testing::StrictMock<MockVaultService> service_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<HttpServer> server_;
};

inline std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

inline void ExpectProblem(const RawResponse& r, int status, const std::string& type) {
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, status);
  EXPECT_EQ(r.Header("content-type"), "application/problem+json");
  const json j = json::parse(r.body);
  EXPECT_EQ(j["type"], "urn:phivault:problem:" + type);
  EXPECT_EQ(j["status"], status);
  EXPECT_EQ(j["request_id"], r.Header("x-request-id"));
  EXPECT_TRUE(j["title"].is_string());
  EXPECT_TRUE(j["detail"].is_string());
}

}  // namespace phivault::daemon::testing
