// Full disk: the real phivaultd with its data directory on a 48 MiB tmpfs, filled with creates.
// Creates are refused (507, the reserve) before RocksDB can hit ENOSPC (Debian's build aborts
// there); reads keep working and keep being audited; a restart finds every acknowledged record;
// when space returns, creates resume without a restart. Needs root (mount); skipped otherwise.
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const client::Actor kOfficer{
    .user = "co.synthetic", .role = "compliance_officer", .purpose = "HOPERAT"};

constexpr uint64_t kReserve = 16ull << 20;
constexpr size_t kFillerBytes = 8ull << 20;
constexpr size_t kNoteBytes = 256 << 10;

class E2eFullDiskTest : public VaultTest {
 protected:
  bool StartInSetUp() const override { return false; }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root";
    VaultTest::SetUp();
    ASSERT_FALSE(HasFatalFailure());
    // The data directory `phivault init` made (keyring, vault id) moves onto a small tmpfs.
    const std::string data = vault_.data_dir();
    const std::string saved = vault_.ScratchPath("data-before-mount");
    fs::copy(data, saved, fs::copy_options::recursive);
    ASSERT_EQ(::mount("tmpfs", data.c_str(), "tmpfs", 0, "size=48m,mode=0700"), 0)
        << std::strerror(errno);
    mounted_ = data;
    fs::copy(saved, data, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    vault_.EditConfig("disk_reserve_bytes = 16777216",
                      "disk_reserve_bytes = " + std::to_string(kReserve));
  }

  void TearDown() override {
    VaultTest::TearDown();
    if (!mounted_.empty()) {
      EXPECT_EQ(::umount2(mounted_.c_str(), MNT_DETACH), 0) << std::strerror(errno);
    }
  }

  client::Result<client::RecordMetadata> Create(const std::string& content) {
    return vault_.AppClient().CreateRecord(Physician(),
                                           client::NewRecord{.patient_id = "SYN-FULL-1",
                                                             .category = "clinical_note",
                                                             .content_type = "text/plain",
                                                             .encounter_date = "2026-11-01",
                                                             .author = "Dr. Synthetic",
                                                             .content = content});
  }

  // Successful record.read entries in a full audit export.
  int AuditedReads() {
    std::ostringstream out;
    auto exported = vault_.AppClient().ExportAudit(kOfficer, client::AuditExportQuery{}, out);
    EXPECT_TRUE(exported.ok()) << exported.error().Message();
    int reads = 0;
    std::istringstream lines(out.str());
    for (std::string line; std::getline(lines, line);) {
      const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || j.value("type", "") != "entry") continue;
      const json e = json::parse(j["entry"].get<std::string>(), nullptr, false);
      if (e.value("action", "") == "record.read" && e.value("outcome", "") == "success") ++reads;
    }
    return reads;
  }

  std::string mounted_;
};

TEST_F(E2eFullDiskTest, RefusesCreatesBeforeTheDiskFillsKeepsReadingAndResumes) {
  const std::string filler = vault_.data_dir() + "/filler";
  WriteFile(filler, std::string(kFillerBytes, 'f'));
  ASSERT_TRUE(vault_.Start());

  // Fill: 256 KiB notes until the daemon refuses. 48 MiB cannot hold 400 of them.
  std::vector<std::pair<std::string, std::string>> acknowledged;  // record id, content
  client::Error refusal;
  for (int i = 0; i < 400; ++i) {
    std::string content = "Synthetic note " + std::to_string(i) + " " + RandomHex(kNoteBytes / 2);
    auto created = Create(content);
    if (!created.ok()) {
      refusal = created.error();
      break;
    }
    acknowledged.emplace_back(created->record_id, std::move(content));
  }
  ASSERT_GT(acknowledged.size(), 10u) << refusal.Message();
  ASSERT_EQ(refusal.http_status, 507) << refusal.Message();
  EXPECT_NE(refusal.Message().find("disk space below reserve"), std::string::npos)
      << refusal.Message();
  const auto free_at_refusal = fs::space(vault_.data_dir()).available;
  RecordProperty("acknowledged_creates", static_cast<int>(acknowledged.size()));
  RecordProperty("free_bytes_at_refusal", std::to_string(free_at_refusal));
  EXPECT_GE(free_at_refusal, kReserve) << "the refusal came after the reserve was used";

  // Full, the daemon stays up: more creates are refused the same way, reads work and are audited.
  for (int i = 0; i < 3; ++i) {
    auto again = Create("Synthetic note refused " + RandomHex(kNoteBytes / 2));
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().http_status, 507);
  }
  const int reads_before = AuditedReads();
  constexpr int kReads = 50;
  for (int i = 0; i < kReads; ++i) {
    const auto& [id, content] = acknowledged[static_cast<size_t>(i) % acknowledged.size()];
    EXPECT_EQ(ReadNote(id), content) << "read " << i << " on a full disk";
  }
  EXPECT_EQ(AuditedReads(), reads_before + kReads);
  EXPECT_FALSE(vault_.daemon().Exited()) << "phivaultd exited on a full disk";

  // A restart on the full disk loses and damages nothing that was acknowledged.
  vault_.Stop();
  ASSERT_TRUE(vault_.Start());
  for (const auto& [id, content] : acknowledged) EXPECT_EQ(ReadNote(id), content) << id;
  EXPECT_EQ(AuditedReads(), reads_before + kReads + static_cast<int>(acknowledged.size()));

  // Something else fills the disk into the reserve: 12 MiB left of the 16 MiB reserve. Creates
  // stay refused; reads go on, their audit entries written into the reserve (not below 4 MiB).
  const int reads_in_reserve_before = AuditedReads();
  const std::string filler2 = vault_.data_dir() + "/filler2";
  const uint64_t free_now = fs::space(vault_.data_dir()).available;
  ASSERT_GT(free_now, 13ull << 20);
  WriteFile(filler2, std::string(free_now - (12ull << 20), 'g'));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // past the free-space cache
  auto in_reserve = Create("Synthetic note in the reserve");
  ASSERT_FALSE(in_reserve.ok());
  EXPECT_EQ(in_reserve.error().http_status, 507);
  for (int i = 0; i < kReads; ++i) {
    const auto& [id, content] = acknowledged[static_cast<size_t>(i) % acknowledged.size()];
    EXPECT_EQ(ReadNote(id), content) << "read " << i << " inside the reserve";
  }
  EXPECT_FALSE(vault_.daemon().Exited()) << "phivaultd exited with the disk inside the reserve";

  // Space returns: creates resume without a restart (free space is re-read at least every
  // 100 ms, so the first few attempts may still see the old figure).
  fs::remove(filler);
  fs::remove(filler2);
  client::Result<client::RecordMetadata> resumed = Create("Synthetic note after space returned");
  for (int attempt = 0; attempt < 50 && !resumed.ok(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    resumed = Create("Synthetic note after space returned");
  }
  ASSERT_TRUE(resumed.ok()) << resumed.error().Message();
  EXPECT_EQ(ReadNote(resumed->record_id), "Synthetic note after space returned");
  // The reads made inside the reserve were audited. (An audit export writes more than its own
  // audit entry, so it is counted only now that space is back.)
  EXPECT_EQ(AuditedReads(), reads_in_reserve_before + kReads + 1);
}

}  // namespace
}  // namespace phivault::e2e
