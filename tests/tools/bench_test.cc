// `phivault bench` against the real phivaultd (the e2e harness): a short mixed run completes
// without errors and reports every field docs/benchmarks.md describes. No timing is asserted:
// the numbers depend on the machine.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

class BenchTest : public VaultTest {
 protected:
  ProcessResult Bench(std::vector<std::string> args) {
    std::vector<std::string> argv = {"--as", "dr.bench", "--role", "physician", "--json", "bench"};
    argv.insert(argv.end(), args.begin(), args.end());
    return vault_.Cli(argv, {{"PHIVAULT_TOKEN", vault_.token()}});
  }
};

TEST_F(BenchTest, MixedRunReportsEveryField) {
  ProcessResult r = Bench({"--workload", "mixed", "--clients", "2", "--duration", "2",
                           "--warmup-records", "20", "--data-dir", vault_.data_dir()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);

  EXPECT_EQ(j["backend"], "phivault");
  EXPECT_EQ(j["workload"], "mixed");
  EXPECT_EQ(j["size_bytes"], 1024);
  EXPECT_EQ(j["clients"], 2);
  EXPECT_EQ(j["warmup_records"], 20);
  EXPECT_EQ(j["errors"], 0);
  EXPECT_TRUE(j["first_error"].is_null());
  EXPECT_GT(j["ops"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["ops"].get<uint64_t>(), j["creates"].get<uint64_t>() + j["reads"].get<uint64_t>());
  EXPECT_GT(j["reads"].get<uint64_t>(), 0u);
  EXPECT_GT(j["ops_per_s"].get<double>(), 0);

  const auto& lat = j["latency_us"];
  for (const char* p : {"p50", "p95", "p99", "max"}) ASSERT_TRUE(lat[p].is_number()) << p;
  EXPECT_GT(lat["p50"].get<double>(), 0);
  EXPECT_LE(lat["p50"].get<double>(), lat["p95"].get<double>());
  EXPECT_LE(lat["p95"].get<double>(), lat["p99"].get<double>());
  EXPECT_LE(lat["p99"].get<double>(), lat["max"].get<double>());

  // The daemon was found through the socket's peer credentials and measured from /proc.
  const auto& server = j["server"];
  EXPECT_EQ(server["cpu_scope"], "daemon process");
  ASSERT_TRUE(server["cpu_us_per_op"].is_number()) << server.dump();
  EXPECT_GE(server["cpu_us_per_op"].get<double>(), 0);
  // Every request is audited durably, so some sync covers it: the daemon's status counts them.
  ASSERT_TRUE(server["syncs_per_op"].is_number()) << server.dump();
  EXPECT_GT(server["syncs_per_op"].get<double>(), 0);
  for (const char* k : {"before", "after", "peak"}) {
    ASSERT_TRUE(server["rss_bytes"][k].is_number()) << k;
    EXPECT_GT(server["rss_bytes"][k].get<uint64_t>(), 0u) << k;
  }
  EXPECT_GE(server["rss_bytes"]["peak"].get<uint64_t>(),
            server["rss_bytes"]["after"].get<uint64_t>());

  ASSERT_TRUE(j["client"]["cpu_us_per_op"].is_number());
  EXPECT_GT(j["client"]["cpu_us_per_op"].get<double>(), 0);

  // The stored records take space in the data directory.
  const auto& disk = j["disk"];
  EXPECT_EQ(disk["content_bytes_written"].get<uint64_t>(),
            (20 + j["creates"].get<uint64_t>()) * 1024);
  ASSERT_TRUE(disk["apparent_bytes_per_content_byte"].is_number()) << disk.dump();
  EXPECT_GT(disk["apparent_bytes_per_content_byte"].get<double>(), 0);
  EXPECT_TRUE(disk["bytes_per_content_byte"].is_number());
}

TEST_F(BenchTest, PingRunTouchesNoRecordAndNoAuditLog) {
  client::Client c = vault_.AppClient();
  auto audit_entries = [&]() -> uint64_t {
    auto s = c.Status(Physician());
    EXPECT_TRUE(s.ok()) << s.error().Message();
    return s.ok() ? s->audit_entries : 0;
  };
  const uint64_t audit_before = audit_entries();
  ProcessResult r = Bench({"--workload", "ping", "--clients", "2", "--ops", "200"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["workload"], "ping");
  EXPECT_EQ(j["errors"], 0);
  EXPECT_EQ(j["ops"], 200);
  EXPECT_EQ(j["pings"], 200);
  EXPECT_EQ(j["creates"], 0);
  EXPECT_EQ(j["reads"], 0);
  EXPECT_EQ(j["warmup_records"], 0);
  EXPECT_EQ(j["disk"]["content_bytes_written"], 0);
  ASSERT_TRUE(j["server"]["cpu_us_per_op"].is_number()) << j.dump();
  // Nothing was stored or audited: no sync was needed.
  ASSERT_TRUE(j["server"]["syncs_per_op"].is_number()) << j.dump();
  EXPECT_EQ(j["server"]["syncs_per_op"].get<double>(), 0);
  EXPECT_EQ(audit_entries(), audit_before);
}

TEST_F(BenchTest, OpsCountAndTable) {
  ProcessResult r = vault_.Cli({"--as", "dr.bench", "--role", "physician", "bench", "--workload",
                                "create", "--clients", "3", "--ops", "30", "--size", "64KiB"},
                               {{"PHIVAULT_TOKEN", vault_.token()}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("throughput"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("30 (30 create, 0 read"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("65536 B"), std::string::npos) << r.out;
}

TEST_F(BenchTest, RefusedRequestsAreErrors) {
  // Without the application token the daemon refuses every request: the run says so and fails.
  ProcessResult r = vault_.Cli({"--as", "dr.bench", "--role", "physician", "bench", "--ops", "5"},
                               {{"PHIVAULT_TOKEN", "not-the-token"}});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("HTTP 401"), std::string::npos) << r.err;
}

TEST_F(BenchTest, BadOptionsAreUsageErrors) {
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--size", "0"},
                                               {"--size", "2GiB"},
                                               {"--clients", "0"},
                                               {"--workload", "delete"},
                                               {"--duration", "-1"},
                                               {"--data-dir", "/nonexistent/dir"}}) {
    ProcessResult r = Bench(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << args[1] << ": " << r.err;
  }
}

}  // namespace
}  // namespace phivault::e2e
