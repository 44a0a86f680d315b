// Restarts keep every record and every audit entry, including a SIGTERM in the middle of load.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

using client::NewRecord;

NewRecord TextRecord(std::string patient, std::string content) {
  return NewRecord{.patient_id = std::move(patient),
                   .category = "clinical_note",
                   .content_type = "text/plain",
                   .encounter_date = "2026-04-01",
                   .author = "dr.synthetic",
                   .content = std::move(content)};
}

using E2eRestartTest = VaultTest;

TEST_F(E2eRestartTest, RestartKeepsRecordsAndTheAuditCount) {
  client::Client c = vault_.AppClient();
  const auto actor = Physician();
  auto audit_entries = [&]() -> uint64_t {
    auto s = c.Status(actor);
    EXPECT_TRUE(s.ok()) << s.error().Message();
    return s.ok() ? s->audit_entries : 0;
  };

  struct Stored {
    std::string id;
    uint32_t version;
    std::string content;
  };
  std::vector<Stored> stored;
  uint64_t count = audit_entries();
  EXPECT_EQ(audit_entries(), count) << "reading the status is not a PHI access";

  for (int i = 0; i < 3; ++i) {
    const std::string content = "Synthetic restart note " + std::to_string(i);
    auto m = c.CreateRecord(actor, TextRecord("synthetic-patient-restart", content));
    ASSERT_TRUE(m.ok()) << m.error().Message();
    stored.push_back({m->record_id, 1, content});
    EXPECT_EQ(audit_entries(), ++count) << "create";
  }
  const std::string binary = RandomBytes(100 << 10);
  auto big = c.CreateRecord(actor, NewRecord{.patient_id = "synthetic-patient-restart",
                                             .category = "lab_result",
                                             .content_type = "application/pdf",
                                             .encounter_date = "2026-04-02",
                                             .author = "lab.synthetic",
                                             .content = binary});
  ASSERT_TRUE(big.ok()) << big.error().Message();
  stored.push_back({big->record_id, 1, binary});
  EXPECT_EQ(audit_entries(), ++count) << "create";

  auto amended = c.AmendRecord(actor, stored[0].id,
                               client::Amendment{.reason = "typo", .content = "Corrected note"});
  ASSERT_TRUE(amended.ok()) << amended.error().Message();
  stored.push_back({stored[0].id, 2, "Corrected note"});
  EXPECT_EQ(audit_entries(), ++count) << "amend";

  ASSERT_TRUE(c.ReadRecord(actor, stored[1].id).ok());
  EXPECT_EQ(audit_entries(), ++count) << "read";
  ASSERT_TRUE(c.ReadContent(actor, stored[1].id).ok());
  EXPECT_EQ(audit_entries(), ++count) << "read content";
  ASSERT_TRUE(c.ReadMetadata(actor, stored[1].id).ok());
  EXPECT_EQ(audit_entries(), ++count) << "read metadata";
  ASSERT_TRUE(c.SearchPatient(actor, "synthetic-patient-restart").ok());
  EXPECT_EQ(audit_entries(), ++count) << "list";
  // A failed access is audited too.
  auto missing = c.ReadRecord(actor, "AAAAAAAAAAAAAAAAAAAAAA");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, client::ErrorKind::kNotFound);
  EXPECT_EQ(audit_entries(), ++count) << "read of a missing record";

  vault_.Stop();
  ASSERT_TRUE(vault_.Start());
  client::Client after = vault_.AppClient();
  auto status = after.Status(actor);
  ASSERT_TRUE(status.ok()) << status.error().Message();
  EXPECT_EQ(status->audit_entries, count) << "the audit log lost or gained entries on restart";

  for (const auto& s : stored) {
    auto r = after.ReadRecord(actor, s.id, s.version);
    ASSERT_TRUE(r.ok()) << r.error().Message();
    EXPECT_EQ(r->metadata.version, s.version);
    EXPECT_TRUE(r->content == s.content) << s.id << " v" << s.version;
    ++count;
  }
  auto list = after.SearchPatient(actor, "synthetic-patient-restart");
  ASSERT_TRUE(list.ok()) << list.error().Message();
  EXPECT_EQ(list->size(), 4u);
  ++count;
  auto final_status = after.Status(actor);
  ASSERT_TRUE(final_status.ok());
  EXPECT_EQ(final_status->audit_entries, count);
}

TEST_F(E2eRestartTest, SigtermUnderLoadLosesNoAcknowledgedRecord) {
  constexpr int kThreads = 8;
  constexpr int kMaxPerThread = 2000;  // bounds the test if the daemon never stops accepting
  struct Ack {
    std::string id;
    std::string content;
  };
  std::vector<std::vector<Ack>> acked(kThreads);
  std::vector<std::string> failures_before_sigterm(kThreads);
  std::atomic<bool> sigterm_sent{false};
  std::atomic<int> total_acked{0};

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      client::Client c = vault_.AppClient();
      for (int i = 0; i < kMaxPerThread; ++i) {
        std::string content = "Synthetic load note " + std::to_string(t) + "/" + std::to_string(i) +
                              " " + RandomHex(16);
        auto m = c.CreateRecord(Physician("load." + std::to_string(t)),
                                TextRecord("synthetic-patient-load-" + std::to_string(t), content));
        if (!m.ok()) {
          if (!sigterm_sent.load()) failures_before_sigterm[t] = m.error().Message();
          return;
        }
        acked[t].push_back({m->record_id, std::move(content)});
        total_acked.fetch_add(1);
      }
    });
  }

  // About a second of load, and at least some acknowledged records, before the signal.
  const auto start = std::chrono::steady_clock::now();
  while (total_acked.load() < kThreads &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_until(start + std::chrono::seconds(1));
  sigterm_sent.store(true);
  EXPECT_EQ(kill(vault_.daemon().pid(), SIGTERM), 0);  // threads must be joined either way
  for (auto& th : threads) th.join();
  auto code = vault_.daemon().WaitExit(std::chrono::seconds(40));
  ASSERT_TRUE(code.has_value()) << "phivaultd did not stop after SIGTERM";
  EXPECT_EQ(*code, 0) << ReadFile(vault_.daemon().stderr_path());

  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures_before_sigterm[t], "") << "thread " << t << " failed before SIGTERM";
  }
  ASSERT_GT(total_acked.load(), 0);
  RecordProperty("acknowledged_records", total_acked.load());

  ASSERT_TRUE(vault_.Start());
  client::Client c = vault_.AppClient();
  size_t checked = 0;
  for (const auto& per_thread : acked) {
    for (const auto& a : per_thread) {
      auto r = c.ReadContent(Physician(), a.id);
      ASSERT_TRUE(r.ok()) << "acknowledged record " << a.id
                          << " is gone after restart: " << r.error().Message();
      EXPECT_EQ(r->bytes, a.content);
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<size_t>(total_acked.load()));
}

}  // namespace
}  // namespace phivault::e2e
