// A stranger on the socket, against the real daemon: a flood of bad tokens is answered, cut off
// connection by connection, and audited as a handful of entries whose counts add up to every
// attempt, while a client with the right token is served throughout. Malformed acting-party
// headers are refused and still audited. The audit log is read back through an export.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/daemon/raw_http_client.h"
#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

using daemon::testing::RawConnection;
using daemon::testing::RawResponse;
using nlohmann::json;

client::NewRecord Note() {
  return client::NewRecord{.patient_id = "synthetic-patient-flood",
                           .category = "clinical_note",
                           .content_type = "text/plain",
                           .encounter_date = "2026-08-08",
                           .author = "dr.synthetic",
                           .content = "Synthetic note for the flood tests."};
}

const client::Actor kOfficer{
    .user = "co.synthetic", .role = "compliance_officer", .purpose = "HOPERAT"};

std::string Get(const std::string& target, const std::string& token, const std::string& user,
                const std::string& role = "physician") {
  std::string r = "GET " + target + " HTTP/1.1\r\nHost: localhost\r\n";
  if (!token.empty()) r += "Authorization: Bearer " + token + "\r\n";
  return r + "X-Phivault-User: " + user + "\r\nX-Phivault-Role: " + role +
         "\r\nX-Phivault-Purpose: TREAT\r\n\r\n";
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class E2eAuthFloodTest : public VaultTest {
 protected:
  bool StartInSetUp() const override { return false; }

  // Sets the [limits] of the failure budget (phivault init writes a [limits] table).
  void SetBudget(const std::string& settings) {
    vault_.EditConfig("disk_reserve_bytes = 16777216",
                      "disk_reserve_bytes = 16777216\n" + settings);
  }

  // The decoded audit entries of a full export.
  std::vector<json> AuditEntries() {
    client::Client c = vault_.AppClient();
    std::ostringstream out;
    auto exported = c.ExportAudit(kOfficer, client::AuditExportQuery{}, out);
    EXPECT_TRUE(exported.ok()) << exported.error().Message();
    std::vector<json> entries;
    std::istringstream lines(out.str());
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || j.value("type", "") != "entry") continue;
      entries.push_back(json::parse(j["entry"].get<std::string>(), nullptr, false));
    }
    return entries;
  }

  // The denied entries whose claimed user is `user`, and the attempts they count.
  std::vector<json> DeniedClaiming(const std::string& user, uint64_t* attempts) {
    std::vector<json> out;
    *attempts = 0;
    for (auto& e : AuditEntries()) {
      if (e.value("outcome", "") != "denied" || e.value("claimed_user", "") != user) continue;
      *attempts += e.value("count", uint64_t{0});
      out.push_back(std::move(e));
    }
    return out;
  }
};

TEST_F(E2eAuthFloodTest, AThousandBadTokensAreAFewEntriesCountingEveryAttempt) {
  // No refill during the test: exactly 5 attempts get their own entry.
  SetBudget(
      "auth_failure_burst = 5\nauth_failure_refill_ms = 3600000\n"
      "auth_failure_summary_ms = 1000");
  ASSERT_TRUE(vault_.Start());
  client::Client app = vault_.AppClient();
  auto stored = app.CreateRecord(Physician(), Note());
  ASSERT_TRUE(stored.ok()) << stored.error().Message();
  const std::string target = "/v1/records/" + stored->record_id + "/metadata";

  // A well-behaved client, from the same uid, reads throughout the flood.
  std::atomic<bool> flooding{true};
  std::atomic<int> served{0}, refused{0};
  std::thread good([&] {
    client::Client c = vault_.AppClient();
    while (flooding.load()) {
      auto read = c.ReadMetadata(Physician(), stored->record_id);
      (read.ok() ? served : refused).fetch_add(1);
    }
  });

  const std::string bad = Get(target, "pvt_" + RandomHex(32), "mallory");
  const auto flood_start = std::chrono::steady_clock::now();
  int answered = 0, connections = 0, first_connection_requests = 0;
  auto conn = std::make_unique<RawConnection>(vault_.socket_path());
  ++connections;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(conn->connected());
    const RawResponse r = conn->RoundTrip(bad);
    ASSERT_TRUE(r.received) << "attempt " << i << " got no answer";
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.reason, "Unauthorized");
    ++answered;
    if (connections == 1) ++first_connection_requests;
    if (Lower(r.Header("connection")) == "close") {
      EXPECT_TRUE(conn->WaitClosed()) << "the server said close but kept the connection";
      conn = std::make_unique<RawConnection>(vault_.socket_path());
      ++connections;
    }
  }
  const auto flood_seconds = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::steady_clock::now() - flood_start)
                                 .count();
  flooding.store(false);
  good.join();
  EXPECT_EQ(answered, 1000);
  EXPECT_LE(first_connection_requests, 3) << "the first connection was not closed in time";
  EXPECT_GE(connections, 990) << "throttled attempts should each end their connection";
  EXPECT_GT(served.load(), 0);
  EXPECT_EQ(refused.load(), 0) << "the client with the right token was refused";

  // Summaries are written once their window (1 s here) has passed.
  uint64_t attempts = 0;
  std::vector<json> entries;
  for (int i = 0; i < 100 && attempts < 1000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    entries = DeniedClaiming("mallory", &attempts);
  }
  EXPECT_EQ(attempts, 1000u);
  // 5 on their own, then at most one summary per 1 s window the flood lasted (and one more for
  // the window it ended in).
  EXPECT_GE(entries.size(), 6u);
  EXPECT_LE(entries.size(), 5u + static_cast<size_t>(flood_seconds) + 2)
      << "the flood was not summarised";
  size_t summaries = 0;
  for (const auto& e : entries) {
    EXPECT_EQ(e.value("peer_uid", uint32_t{0}), getuid());
    EXPECT_GT(e.value("peer_pid", int64_t{0}), 0);
    EXPECT_EQ(e.value("app", "x"), "") << "a stranger was recorded as an application";
    EXPECT_EQ(e.value("user", "x"), "") << "a claim was recorded as the acting user";
    EXPECT_EQ(e.value("claimed_role", ""), "physician");
    EXPECT_NE(e.value("reason", "").find("unauthenticated"), std::string::npos);
    if (e.value("count", uint64_t{0}) > 1) ++summaries;
  }
  EXPECT_GE(summaries, 1u);
}

TEST_F(E2eAuthFloodTest, SummariesStillOpenAtShutdownAreWritten) {
  SetBudget("auth_failure_burst = 2\nauth_failure_summary_ms = 3600000");
  ASSERT_TRUE(vault_.Start());
  const std::string bad =
      Get("/v1/records/AAAAAAAAAAAAAAAAAAAAAA/metadata", "pvt_" + RandomHex(32), "eve.synthetic");
  for (int i = 0; i < 50; ++i) {
    RawConnection c(vault_.socket_path());
    const RawResponse r = c.RoundTrip(bad);
    ASSERT_TRUE(r.received);
    EXPECT_EQ(r.status, 401);
  }
  uint64_t attempts = 0;
  EXPECT_EQ(DeniedClaiming("eve.synthetic", &attempts).size(), 2u);
  EXPECT_EQ(attempts, 2u) << "the summary was written before its window ended";
  vault_.Stop();
  ASSERT_TRUE(vault_.Start());
  const auto entries = DeniedClaiming("eve.synthetic", &attempts);
  EXPECT_EQ(attempts, 50u);
  EXPECT_EQ(entries.size(), 3u);
}

TEST_F(E2eAuthFloodTest, MalformedHeadersAndTokenlessOperatorsAreRefusedAndAudited) {
  // phivault init makes its caller an operator in every role; this operator holds no physician
  // entry, so a tokenless physician request finds only the administrator entry.
  vault_.EditConfig("role = \"physician\"", "role = \"vault_admin\"");
  ASSERT_TRUE(vault_.Start());
  const std::string target = "/v1/records/AAAAAAAAAAAAAAAAAAAAAA/metadata";

  // Not UTF-8, with the right token and without one: 400 either way, and audited.
  RawConnection c(vault_.socket_path());
  RawResponse r = c.RoundTrip(Get(target, vault_.token(), "nurse\xc3\x28"));
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.reason, "Bad Request");
  auto problem = json::parse(r.body, nullptr, false);
  EXPECT_EQ(problem.value("type", ""), "urn:phivault:problem:invalid-request");
  EXPECT_NE(problem.value("detail", "").find("X-Phivault-User"), std::string::npos);
  r = c.RoundTrip(Get(target, "pvt_" + RandomHex(32), "stranger\xc3(" + std::string(200, 'z')));
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, 400);

  // No token from the operator's uid (an administrator, not a physician), as a physician.
  r = c.RoundTrip(Get(target, "", "dr.forgetful"));
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.reason, "Forbidden");
  problem = json::parse(r.body, nullptr, false);
  EXPECT_EQ(problem.value("detail", ""),
            "no bearer token was sent, and the operator entry for peer uid " +
                std::to_string(getuid()) +
                " allows role \"vault_admin\" only (X-Phivault-Role names \"physician\"); "
                "operators act only in their configured role");

  // A byte 0xFF, which Poco would silently drop from the header: refused, not read as "dr.ff".
  RawConnection ff(vault_.socket_path());
  r = ff.RoundTrip(Get(target, vault_.token(), "dr.\xff\xff"));
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Lower(r.Header("connection")), "close");
  EXPECT_TRUE(ff.WaitClosed());

  bool app_entry = false, stranger_entry = false, operator_entry = false, ff_entry = false;
  for (const auto& e : AuditEntries()) {
    if (e.value("outcome", "") != "denied") continue;
    EXPECT_EQ(e.value("peer_uid", uint32_t{0}), getuid());
    if (e.value("user", "") == "nurse\\xc3(") {
      app_entry = true;
      EXPECT_EQ(e.value("app", ""), "dev-app");
      EXPECT_NE(e.value("reason", "").find("X-Phivault-User"), std::string::npos);
    }
    const std::string claimed = e.value("claimed_user", "");
    if (claimed.rfind("stranger\\xc3(zzz", 0) == 0) {
      stranger_entry = true;
      EXPECT_EQ(e.value("app", "x"), "");
      EXPECT_EQ(claimed.size(), 128u + 3) << "128 bytes and the ellipsis";
    }
    if (e.value("reason", "").find("byte 0xFF") != std::string::npos) {
      ff_entry = true;
      EXPECT_EQ(e.value("app", ""), "dev-app");
    }
    if (e.value("user", "") == "dr.forgetful") {
      operator_entry = true;
      EXPECT_NE(e.value("reason", "").find("no bearer token was sent"), std::string::npos);
    }
  }
  EXPECT_TRUE(app_entry) << "the refusal of an authenticated malformed user left no entry";
  EXPECT_TRUE(stranger_entry) << "the refusal of a stranger's malformed user left no entry";
  EXPECT_TRUE(operator_entry) << "the refusal of a tokenless operator left no entry";
  EXPECT_TRUE(ff_entry) << "the refusal of a header with 0xFF left no entry";
}

}  // namespace
}  // namespace phivault::e2e
