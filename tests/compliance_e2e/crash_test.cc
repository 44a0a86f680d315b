// A daemon killed with SIGKILL while clients are writing audited requests (and while it signs
// checkpoints every second) restarts with a log that still verifies end to end, keeps every
// acknowledged record, and has an audit entry for every acknowledged request.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/compliance_e2e/compliance_harness.h"

namespace phivault::compliance_e2e {
namespace {

class ComplianceE2eCrashTest : public ComplianceVaultTest {
 protected:
  std::string RootConfigKeys() const override { return "audit_checkpoint_interval_seconds = 1"; }
};

TEST_F(ComplianceE2eCrashTest, KillNineMidAppendLeavesAVerifiableCompleteLog) {
  // The verifier key is pinned before the crash: the restarted daemon must still sign with it.
  auto pub = Officer(vault_, {"audit", "pubkey"});
  ASSERT_EQ(pub.exit_code, 0) << Describe(pub);
  ASSERT_EQ(Lines(pub.out).size(), 1u) << Describe(pub);
  const std::string key = Lines(pub.out)[0];

  uint64_t baseline = 0;
  {
    client::Client c = vault_.AppClient();
    auto s = c.Status(e2e::Physician());
    ASSERT_TRUE(s.ok()) << s.error().Message();
    baseline = s->audit_entries;
  }

  constexpr int kThreads = 4;
  constexpr int kMaxPerThread = 2000;  // bounds the test if the kill never lands
  struct Ack {
    std::string id;
    std::string content;
  };
  std::vector<std::vector<Ack>> acked(kThreads);
  std::vector<std::string> failures_before_kill(kThreads);
  std::atomic<bool> killed{false};
  std::atomic<int> acked_creates{0};
  std::atomic<int> acked_requests{0};  // creates and reads answered 2xx: each one is audited

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      client::Client c = vault_.AppClient();
      const auto actor = e2e::Physician("load." + std::to_string(t));
      for (int i = 0; i < kMaxPerThread; ++i) {
        std::string content = "Synthetic crash note " + std::to_string(t) + "/" +
                              std::to_string(i) + " " + e2e::RandomHex(8);
        auto m = c.CreateRecord(
            actor, client::NewRecord{.patient_id = "synthetic-patient-crash-" + std::to_string(t),
                                     .category = "clinical_note",
                                     .content_type = "text/plain",
                                     .encounter_date = "2026-04-01",
                                     .author = "dr.synthetic",
                                     .content = content});
        if (!m.ok()) {
          if (!killed.load()) failures_before_kill[t] = m.error().Message();
          return;
        }
        acked[t].push_back({m->record_id, std::move(content)});
        acked_creates.fetch_add(1);
        acked_requests.fetch_add(1);
        auto r = c.ReadContent(actor, m->record_id);
        if (!r.ok()) {
          if (!killed.load()) failures_before_kill[t] = r.error().Message();
          return;
        }
        acked_requests.fetch_add(1);
      }
    });
  }

  // Load for a little over a second (so that at least one periodic checkpoint is signed while
  // entries are being appended), then SIGKILL: no chance to flush or finish anything.
  const auto start = std::chrono::steady_clock::now();
  while (acked_creates.load() < kThreads &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_until(start + std::chrono::milliseconds(1500));
  // A checkpoint signed mid-load and handed out: the log must still prove it after the crash.
  std::string signed_before_crash;
  {
    client::Client c = vault_.AppClient();
    auto note = c.AuditCheckpoint(e2e::Physician(), /*fresh=*/true);
    EXPECT_TRUE(note.ok()) << note.error().Message();
    if (note.ok()) signed_before_crash = *note;
  }
  killed.store(true);
  EXPECT_EQ(kill(vault_.daemon().pid(), SIGKILL), 0);  // threads must be joined either way
  for (auto& th : threads) th.join();
  const auto code = vault_.daemon().WaitExit(std::chrono::seconds(20));
  ASSERT_TRUE(code.has_value()) << "phivaultd did not die from SIGKILL";
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures_before_kill[t], "") << "thread " << t << " failed before the kill";
  }
  ASSERT_GT(acked_creates.load(), 0);
  RecordProperty("acknowledged_requests", acked_requests.load());

  ASSERT_TRUE(vault_.Start()) << "the daemon must start on the store a SIGKILL left behind";

  // The whole log, exported by the restarted daemon, verifies against the pinned key.
  auto live = Officer(vault_, {"audit", "verify", "--live", "--key", key});
  EXPECT_EQ(live.exit_code, 0) << Describe(live);
  VerifySummary summary;
  EXPECT_TRUE(ParseVerifySummary(live.out, summary)) << Describe(live);

  // The same, exported to a file: it still holds the checkpoint signed before the crash, which
  // the verifier checked against the entries.
  const std::string export_path = vault_.ScratchPath("after-crash.jsonl");
  auto exp = Officer(vault_, {"audit", "export", "-o", export_path});
  ASSERT_EQ(exp.exit_code, 0) << Describe(exp);
  auto offline = e2e::RunProcess({PHIVAULT_CLI_PATH, "audit", "verify", export_path, "--key", key},
                                 vault_.ScratchPath(""),
                                 {{"PHIVAULT_SOCKET", vault_.ScratchPath("no-daemon.sock")}});
  EXPECT_EQ(offline.exit_code, 0) << Describe(offline);
  bool kept = false;
  for (const auto& line : ParseExport(e2e::ReadFile(export_path))) {
    kept |= line.is_checkpoint() && line.json.value("note", "") == signed_before_crash;
  }
  EXPECT_TRUE(kept) << "the checkpoint signed before the crash is not in the log:\n"
                    << signed_before_crash;

  client::Client c = vault_.AppClient();
  auto s = c.Status(e2e::Physician());
  ASSERT_TRUE(s.ok()) << s.error().Message();
  EXPECT_GE(s->audit_entries, baseline + static_cast<uint64_t>(acked_requests.load()))
      << "every acknowledged request has its audit entry";
  EXPECT_GE(summary.entries, baseline + static_cast<uint64_t>(acked_requests.load()));

  for (const auto& per_thread : acked) {
    for (const auto& a : per_thread) {
      auto r = c.ReadContent(e2e::Physician(), a.id);
      ASSERT_TRUE(r.ok()) << "acknowledged record " << a.id
                          << " is gone after the crash: " << r.error().Message();
      EXPECT_EQ(r->bytes, a.content);
    }
  }
}

}  // namespace
}  // namespace phivault::compliance_e2e
