// Damage is detected and refused: a flipped byte in the store, and a wrong master key.
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "storage/ledger.h"
#include "storage/store.h"
#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

using client::NewRecord;

NewRecord Note(std::string content) {
  return NewRecord{.patient_id = "synthetic-patient-integrity",
                   .category = "clinical_note",
                   .content_type = "text/plain",
                   .encounter_date = "2026-05-05",
                   .author = "dr.synthetic",
                   .content = std::move(content)};
}

using E2eIntegrityTest = VaultTest;

TEST_F(E2eIntegrityTest, FlippedStoredByteIsReportedAsIntegrityFailureAndAudited) {
  client::Client c = vault_.AppClient();
  const auto actor = Physician("dr.integrity");
  auto damaged =
      c.CreateRecord(actor, Note("Synthetic note that will be damaged on disk. " + RandomHex(64)));
  ASSERT_TRUE(damaged.ok()) << damaged.error().Message();
  auto intact = c.CreateRecord(actor, Note("Synthetic note that stays intact."));
  ASSERT_TRUE(intact.ok()) << intact.error().Message();
  vault_.Stop();

  {
    auto store = OpenStoreOrDie(vault_.db_path());
    ASSERT_NE(store, nullptr);
    const std::string key = RecordKey('c', damaged->record_id, 1);
    auto value = store->Get(storage::Cf::kRecords, key);
    ASSERT_TRUE(value.ok() && value->has_value()) << "the record's content is not at its key";
    std::string bytes = **value;
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
    storage::WriteBatch batch;
    batch.Put(storage::Cf::kRecords, key, bytes);
    ASSERT_TRUE(store->Write(batch, /*sync=*/true).ok());
  }

  ASSERT_TRUE(vault_.Start());
  client::Client after = vault_.AppClient();
  // Damage to one record does not affect another.
  auto good = after.ReadContent(actor, intact->record_id);
  ASSERT_TRUE(good.ok()) << good.error().Message();
  EXPECT_EQ(good->bytes, "Synthetic note that stays intact.");

  auto raw = after.ReadContent(actor, damaged->record_id);
  ASSERT_FALSE(raw.ok()) << "damaged content was served";
  EXPECT_EQ(raw.error().kind, client::ErrorKind::kIntegrity);
  EXPECT_EQ(raw.error().http_status, 500);

  const ProcessResult cli =
      vault_.Cli({"get", damaged->record_id}, {{"PHIVAULT_TOKEN", vault_.token()},
                                               {"PHIVAULT_ROLE", "physician"},
                                               {"PHIVAULT_USER", "dr.integrity"}});
  EXPECT_EQ(cli.exit_code, 6) << cli.err;
  EXPECT_TRUE(cli.out.empty()) << "the CLI printed content of a damaged record";

  auto read = after.ReadRecord(actor, damaged->record_id);
  ASSERT_FALSE(read.ok()) << "damaged record was served";
  EXPECT_EQ(read.error().http_status, 500);
  EXPECT_EQ(read.error().type, "urn:phivault:problem:integrity-failure");
  EXPECT_EQ(read.error().kind, client::ErrorKind::kIntegrity);
  auto status = after.Status(actor);
  ASSERT_TRUE(status.ok()) << status.error().Message();
  vault_.Stop();

  auto store = OpenStoreOrDie(vault_.db_path());
  ASSERT_NE(store, nullptr);
  auto ledger = storage::Ledger::Open(*store);
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  const uint64_t entries = (*ledger)->size();
  EXPECT_EQ(entries, status->audit_entries);
  auto last = storage::ReadAuditEntry(*store, entries);
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  EXPECT_EQ(last->action, "record.read");
  EXPECT_EQ(last->outcome, "error");
  EXPECT_EQ(last->reason, "integrity_failure");
  EXPECT_EQ(last->user, "dr.integrity");
  EXPECT_EQ(last->records, std::vector<std::string>{damaged->record_id + "@1"});
}

TEST_F(E2eIntegrityTest, WrongMasterKeyRefusesToStart) {
  client::Client c = vault_.AppClient();
  auto m = c.CreateRecord(Physician(), Note("Synthetic note under the right key."));
  ASSERT_TRUE(m.ok()) << m.error().Message();
  vault_.Stop();

  const std::string key_path = vault_.key_path();
  const std::string right_key = ReadFile(key_path);
  ASSERT_EQ(right_key.size(), 32u);
  auto replace_key = [&](const std::string& bytes) {
    ASSERT_EQ(chmod(key_path.c_str(), 0600), 0);
    WriteFile(key_path, bytes);
    ASSERT_EQ(chmod(key_path.c_str(), 0400), 0);
  };
  std::string wrong_key = RandomBytes(32);
  ASSERT_NE(wrong_key, right_key);
  replace_key(wrong_key);

  vault_.SpawnOnly();
  client::Client probe(vault_.socket_path());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!vault_.daemon().Exited() && std::chrono::steady_clock::now() < deadline) {
    EXPECT_FALSE(probe.Health().ok()) << "the daemon answered with a wrong master key";
    probe.Disconnect();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto code = vault_.daemon().WaitExit(std::chrono::milliseconds(0));
  ASSERT_TRUE(code.has_value()) << "phivaultd kept running with a wrong master key";
  EXPECT_NE(*code, 0);
  const std::string err = ReadFile(vault_.daemon().stderr_path());
  EXPECT_NE(err.find("master key does not match"), std::string::npos) << err;
  auto health = probe.Health();
  ASSERT_FALSE(health.ok());
  EXPECT_EQ(health.error().kind, client::ErrorKind::kUnavailable);

  // Nothing was harmed: with the right key back, the record reads again.
  replace_key(right_key);
  ASSERT_TRUE(vault_.Start());
  client::Client after = vault_.AppClient();
  auto r = after.ReadContent(Physician(), m->record_id);
  ASSERT_TRUE(r.ok()) << r.error().Message();
  EXPECT_EQ(r->bytes, "Synthetic note under the right key.");
}

}  // namespace
}  // namespace phivault::e2e
