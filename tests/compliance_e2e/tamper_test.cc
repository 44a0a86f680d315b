// Tampering with an exported audit log is caught by `phivault audit verify` (offline, exit 7),
// which names what was done and where: an altered entry, a deleted, copied or swapped line, a log
// cut short under its signed checkpoint, and a checkpoint signed by another vault's key.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/compliance_e2e/compliance_harness.h"

namespace phivault::compliance_e2e {
namespace {

using e2e::ReadFile;
using e2e::WriteFile;

class ComplianceE2eTamperTest : public ComplianceVaultTest {
 protected:
  void SetUp() override {
    ComplianceVaultTest::SetUp();
    if (HasFatalFailure()) return;
    // Some audited activity, a signed checkpoint over it, more activity, then the export.
    client::Client c = vault_.AppClient();
    for (int i = 0; i < 6; ++i) {
      auto m = c.CreateRecord(e2e::Physician(),
                              client::NewRecord{.patient_id = "synthetic-patient-tamper",
                                                .category = "clinical_note",
                                                .content_type = "text/plain",
                                                .encounter_date = "2026-04-01",
                                                .author = "dr.synthetic",
                                                .content = "Synthetic note " + std::to_string(i)});
      ASSERT_TRUE(m.ok()) << m.error().Message();
      ASSERT_TRUE(c.ReadContent(e2e::Physician(), m->record_id).ok());
    }
    auto checkpoint = Officer(vault_, {"audit", "checkpoint", "--new"});
    ASSERT_EQ(checkpoint.exit_code, 0) << Describe(checkpoint);
    checkpoint_size_ = ParseCheckpoint(checkpoint.out).size;
    ASSERT_GE(checkpoint_size_, 12u);
    ASSERT_TRUE(c.SearchPatient(e2e::Physician(), "synthetic-patient-tamper").ok());

    auto pub = Officer(vault_, {"audit", "pubkey"});
    ASSERT_EQ(pub.exit_code, 0) << Describe(pub);
    ASSERT_EQ(Lines(pub.out).size(), 1u) << Describe(pub);
    key_ = Lines(pub.out)[0];

    export_path_ = vault_.ScratchPath("audit.jsonl");
    auto exp = Officer(vault_, {"audit", "export", "-o", export_path_});
    ASSERT_EQ(exp.exit_code, 0) << Describe(exp);
    lines_ = Lines(ReadFile(export_path_));
    ASSERT_EQ(Verify(lines_).exit_code, 0) << "the untouched export verifies";
  }

  // Offline: the CLI gets a socket path at which no daemon listens.
  ProcessResult VerifyFile(const std::string& path, const std::string& key) {
    return e2e::RunProcess({PHIVAULT_CLI_PATH, "audit", "verify", path, "--key", key},
                           vault_.ScratchPath(""),
                           {{"PHIVAULT_SOCKET", vault_.ScratchPath("no-daemon.sock")}});
  }
  ProcessResult Verify(const std::vector<std::string>& lines) {
    const std::string path = vault_.ScratchPath("tampered-" + std::to_string(++copies_) + ".jsonl");
    WriteFile(path, JoinLines(lines));
    return VerifyFile(path, key_);
  }
  // The position in lines_ of the entry line with leaf index `index`.
  size_t LineOfEntry(int64_t index) const {
    for (size_t i = 0; i < lines_.size(); ++i) {
      ExportLine l{.raw = lines_[i], .json = nlohmann::json::parse(lines_[i], nullptr, false)};
      if (l.index() == index) return i;
    }
    ADD_FAILURE() << "no entry line with index " << index;
    return 0;
  }
  // Asserts a verification failure (exit 7) whose output mentions each of `needles`.
  void ExpectRejected(const ProcessResult& r, const std::vector<std::string>& needles) {
    EXPECT_EQ(r.exit_code, kExitVerificationFailed) << Describe(r);
    const std::string all = r.out + r.err;
    for (const auto& n : needles) {
      EXPECT_NE(all.find(n), std::string::npos) << "expected \"" << n << "\" in\n" << Describe(r);
    }
    EXPECT_EQ(r.out.find("ok:"), std::string::npos) << Describe(r);
  }

  std::string key_, export_path_;
  std::vector<std::string> lines_;
  uint64_t checkpoint_size_ = 0;
  int copies_ = 0;
};

TEST_F(ComplianceE2eTamperTest, OneChangedByteInAnEntryNamesThatEntry) {
  const size_t at = LineOfEntry(5);
  auto line = nlohmann::json::parse(lines_[at]);
  std::string entry = line["entry"].get<std::string>();
  // Change one character in the middle of the entry's bytes to another of the same class, so the
  // line stays valid JSON and only the entry's content differs.
  size_t pos = entry.size() / 2;
  while (pos < entry.size() && std::isalnum(static_cast<unsigned char>(entry[pos])) == 0) ++pos;
  ASSERT_LT(pos, entry.size());
  entry[pos] = entry[pos] == '7' ? '8'
               : std::isdigit(static_cast<unsigned char>(entry[pos])) != 0
                   ? '7'
                   : (entry[pos] == 'x' ? 'y' : 'x');
  line["entry"] = entry;
  auto tampered = lines_;
  tampered[at] = line.dump();
  ExpectRejected(Verify(tampered), {"entry 5", "altered"});
}

TEST_F(ComplianceE2eTamperTest, DeletedCopiedAndSwappedLinesAreNamed) {
  auto deleted = lines_;
  deleted.erase(deleted.begin() + static_cast<long>(LineOfEntry(4)));
  ExpectRejected(Verify(deleted), {"entry 4", "missing"});

  auto copied = lines_;
  copied.insert(copied.begin() + static_cast<long>(LineOfEntry(4)) + 1, lines_[LineOfEntry(4)]);
  ExpectRejected(Verify(copied), {"inserted"});

  auto swapped = lines_;
  std::swap(swapped[LineOfEntry(6)], swapped[LineOfEntry(7)]);
  ExpectRejected(Verify(swapped), {"entries 6 and 7", "reordered"});
}

TEST_F(ComplianceE2eTamperTest, DroppingEntriesUnderASignedCheckpointIsTruncation) {
  // Keep every checkpoint line; drop the entries from two before the checkpoint's size onwards.
  const int64_t keep = static_cast<int64_t>(checkpoint_size_) - 2;
  std::vector<std::string> truncated;
  int dropped = 0;
  for (const auto& raw : lines_) {
    ExportLine l{.raw = raw, .json = nlohmann::json::parse(raw, nullptr, false)};
    if (l.is_entry() && l.index() >= keep) {
      ++dropped;
      continue;
    }
    truncated.push_back(raw);
  }
  ASSERT_GE(dropped, 2);
  ExpectRejected(Verify(truncated), {"truncated", std::to_string(checkpoint_size_),
                                     std::to_string(keep) + " entries"});
}

TEST_F(ComplianceE2eTamperTest, AnotherVaultsKeyDoesNotVerifyTheCheckpoint) {
  Vault other;
  ASSERT_TRUE(other.ok());
  PrepareForCompliance(other);
  ASSERT_TRUE(other.Start());
  auto pub = Officer(other, {"audit", "pubkey"});
  other.Stop();
  ASSERT_EQ(pub.exit_code, 0) << Describe(pub);
  ASSERT_EQ(Lines(pub.out).size(), 1u);
  const std::string other_key = Lines(pub.out)[0];
  ASSERT_NE(other_key, key_) << "two vaults must not share an audit key";
  ExpectRejected(VerifyFile(export_path_, other_key), {"checkpoint 1", "not signed"});
}

}  // namespace
}  // namespace phivault::compliance_e2e
