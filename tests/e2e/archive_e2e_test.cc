// The archive tier end to end: the real phivaultd, run 400 days ahead with libfaketime so that
// records turn cold, and the real phivault CLI. `archive run --dry-run` counts what is due and
// moves nothing; `archive run` moves the sealed content into the archive column family, reads
// through the same API answer the same bytes with "archived": true (also after a restart), and a
// retention sweep shreds an archived record: 410 afterwards and its sealed bytes in no file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "storage/file_scan.h"
#include "storage/store.h"
#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

constexpr const char* kFakeTime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

class E2eArchiveTest : public VaultTest {
 protected:
  bool StartInSetUp() const override { return false; }

  void StartDaysAhead(int days) {
    ASSERT_TRUE(std::filesystem::exists(kFakeTime)) << "install faketime (scripts/install-deps.sh)";
    // Under AddressSanitizer, ASan's runtime must come first in the daemon's library list.
    std::string preload = kFakeTime;
    std::ifstream maps("/proc/self/maps");
    for (std::string line; std::getline(maps, line);) {
      const size_t at = line.find('/');
      if (at != std::string::npos && line.find("/libasan.so", at) != std::string::npos) {
        preload = line.substr(at) + ":" + preload;
        break;
      }
    }
    vault_.SetDaemonEnv({{"LD_PRELOAD", preload},
                         {"FAKETIME", "+" + std::to_string(days) + "d"},
                         {"FAKETIME_DONT_RESET", "1"}});
    ASSERT_TRUE(vault_.Start());
  }
  ProcessResult Admin(const std::vector<std::string>& args) {
    return vault_.Cli(args, {{"PHIVAULT_ROLE", "vault_admin"}, {"PHIVAULT_PURPOSE", "HOPERAT"}});
  }
  std::string Store(const std::string& patient, const std::string& encounter,
                    const std::string& content) {
    auto m =
        vault_.AppClient().CreateRecord(Physician(), client::NewRecord{.patient_id = patient,
                                                                       .category = "clinical_note",
                                                                       .content_type = "text/plain",
                                                                       .encounter_date = encounter,
                                                                       .author = "Dr. Synthetic",
                                                                       .content = content});
    EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().Message());
    return m.ok() ? m->record_id : "";
  }
  nlohmann::json RunArchive(bool dry_run) {
    std::vector<std::string> args = {"--json", "archive", "run"};
    if (dry_run) args.emplace_back("--dry-run");
    const ProcessResult r = Admin(args);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  }
  // `phivault --json get ID` as the physician.
  nlohmann::json Get(const std::string& id) {
    const ProcessResult r = vault_.Cli(
        {"--json", "get", id}, {{"PHIVAULT_ROLE", "physician"}, {"PHIVAULT_USER", "dr.e2e"}});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  }
};

TEST_F(E2eArchiveTest, ColdRecordsRoundTripThroughTheArchiveAndShredFromIt) {
  ASSERT_TRUE(vault_.ok());
  vault_.AppendConfig("\n[archive]\nafter_days = 365\n");
  ASSERT_TRUE(vault_.Start());
  const std::string scan = "synthetic archived scan " + std::string(12000, 'x');
  const std::string kept = Store("synthetic-arc-e2e-1", "2025-06-01", scan);
  // Its retention ends the day after it is stored: a sweep 400 days on destroys it.
  std::string doomed_note;
  for (int i = 0; i < 100; ++i) doomed_note += "synthetic doomed note " + std::to_string(i) + "; ";
  const std::string doomed = Store("synthetic-arc-e2e-2", "2005-05-05", doomed_note);
  vault_.Stop();

  ASSERT_NO_FATAL_FAILURE(StartDaysAhead(400));
  const nlohmann::json dry = RunArchive(/*dry_run=*/true);
  EXPECT_EQ(dry.value("dry_run", false), true);
  EXPECT_EQ(dry.value("archived_records", 0), 2) << dry.dump();
  EXPECT_EQ(Get(kept).value("archived", true), false) << "a dry run moves nothing";

  // Read just now by Get: not cold any more; the doomed record was not read.
  const nlohmann::json none = RunArchive(false);
  EXPECT_EQ(none.value("archived_records", 0), 1) << none.dump();
  vault_.Stop();
  ASSERT_NO_FATAL_FAILURE(StartDaysAhead(800));
  const nlohmann::json run = RunArchive(false);
  EXPECT_EQ(run.value("archived_records", 0), 1) << run.dump();
  EXPECT_EQ(run.value("compacted", false), true) << run.dump();

  const nlohmann::json read = Get(kept);
  EXPECT_EQ(read.value("archived", false), true);
  EXPECT_EQ(read.value("content_base64", ""), crypto::Base64Encode(scan));
  auto content = vault_.AppClient().ReadContent(Physician(), kept, std::nullopt);
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(content->bytes, scan);
  vault_.Stop();

  // In the archive column family, not the live one, compressed before sealing (key 'z', far
  // smaller than the content); the sealed bytes of the doomed record noted.
  std::string doomed_sealed;
  {
    auto store = OpenStoreOrDie(vault_.db_path());
    for (const std::string& id : {kept, doomed}) {
      EXPECT_FALSE(store->Get(storage::Cf::kRecords, RecordKey('c', id, 1))->has_value());
      EXPECT_FALSE(store->Get(storage::Cf::kArchive, RecordKey('c', id, 1))->has_value());
      auto archived = store->Get(storage::Cf::kArchive, RecordKey('z', id, 1));
      ASSERT_TRUE(archived.ok() && archived->has_value());
      EXPECT_LT((*archived)->size(), (id == kept ? scan : doomed_note).size() / 2);
      if (id == doomed) doomed_sealed = (*archived)->substr(0, 32);
    }
  }
  const std::vector<std::string> needles = {doomed_sealed};
  auto before = storage::FindInFiles(vault_.db_path(), needles);
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(before->empty()) << "the search sees the archive's files";

  // A restart later, the sweep shreds the archived record like any other.
  ASSERT_NO_FATAL_FAILURE(StartDaysAhead(800));
  const ProcessResult swept = Admin({"--json", "retention", "sweep", "--destroy"});
  ASSERT_EQ(swept.exit_code, 0) << swept.err;
  uint64_t destroyed = 0;
  for (size_t at = 0; at < swept.out.size();) {
    const size_t nl = swept.out.find('\n', at);
    auto line = nlohmann::json::parse(swept.out.substr(at, nl - at), nullptr, false);
    if (!line.is_discarded() && line.contains("result")) {
      destroyed = line["result"].value("destroyed_records", 0u);
    }
    at = nl == std::string::npos ? swept.out.size() : nl + 1;
  }
  EXPECT_EQ(destroyed, 1u) << swept.out;
  auto gone = vault_.AppClient().ReadRecord(Physician(), doomed, std::nullopt);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().http_status, 410);
  EXPECT_EQ(Get(kept).value("content_base64", ""), crypto::Base64Encode(scan));
  vault_.Stop();
  auto after = storage::FindInFiles(vault_.dir(), needles);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty()) << after->front().path;
}

TEST_F(E2eArchiveTest, WithoutAnArchiveTierTheRunIsRefused) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const ProcessResult r = Admin({"archive", "run", "--dry-run"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("[archive] after_days"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace phivault::e2e
