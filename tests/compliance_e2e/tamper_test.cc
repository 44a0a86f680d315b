// Tampering with an exported audit log is caught by `phivault audit verify` (offline, exit 7),
// which names what was done and where: an altered entry, a deleted, copied or swapped line, a log
// cut short under its signed checkpoint, a checkpoint signed by another vault's key, a forged log
// stripped of its checkpoints, an export cut back to an older checkpoint (against a newer one the
// officer kept), and an altered readable PHI copy.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/hash.h"
#include "storage/audit_entry.h"
#include "storage/audit_verify.h"
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
  ProcessResult Verify(const std::vector<std::string>& lines,
                       const std::vector<std::string>& extra = {}) {
    const std::string path = vault_.ScratchPath("tampered-" + std::to_string(++copies_) + ".jsonl");
    WriteFile(path, JoinLines(lines));
    std::vector<std::string> args = {PHIVAULT_CLI_PATH, "audit", "verify", path, "--key", key_};
    args.insert(args.end(), extra.begin(), extra.end());
    return e2e::RunProcess(args, vault_.ScratchPath(""),
                           {{"PHIVAULT_SOCKET", vault_.ScratchPath("no-daemon.sock")}});
  }
  // Saves a fresh signed checkpoint from the daemon, as an officer keeps each one they receive.
  std::string SaveFreshCheckpoint(const std::string& name) {
    auto cp = Officer(vault_, {"audit", "checkpoint", "--new"});
    EXPECT_EQ(cp.exit_code, 0) << Describe(cp);
    const std::string path = vault_.ScratchPath(name);
    WriteFile(path, cp.out);
    return path;
  }
  // The size of the last checkpoint line of `lines`.
  static uint64_t LastCheckpointSize(const std::vector<std::string>& lines) {
    uint64_t size = 0;
    for (const auto& raw : lines) {
      ExportLine l{.raw = raw, .json = nlohmann::json::parse(raw, nullptr, false)};
      if (l.is_checkpoint()) size = ParseCheckpoint(l.json["note"].get<std::string>()).size;
    }
    return size;
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
  // Keep every checkpoint line; drop the entries from two before the last checkpoint's size on.
  const uint64_t last = LastCheckpointSize(lines_);
  ASSERT_GT(last, checkpoint_size_) << "the export ends with a checkpoint signed for it";
  const int64_t keep = static_cast<int64_t>(last) - 2;
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
  ExpectRejected(Verify(truncated),
                 {"truncated", std::to_string(last), std::to_string(keep) + " entries"});
}

TEST_F(ComplianceE2eTamperTest, AForgedLogStrippedOfItsCheckpointsIsNotCovered) {
  // Rewrite entry 5 (its outcome), re-chain every later entry and recompute every leaf hash, and
  // drop the checkpoints, which no forger can sign again: structurally perfect, but unsigned.
  std::vector<std::string> forged;
  std::string prev;
  for (const auto& raw : lines_) {
    ExportLine l{.raw = raw, .json = nlohmann::json::parse(raw, nullptr, false)};
    if (!l.is_entry()) continue;
    auto e = storage::DecodeAuditEntry(l.json["entry"].get<std::string>());
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    if (l.index() == 5) e->outcome = e->outcome == "success" ? "denied" : "success";
    e->prev_hash = prev;
    auto bytes = storage::EncodeAuditEntry(*e);
    ASSERT_TRUE(bytes.ok());
    prev = crypto::HexEncode(crypto::AsView(crypto::Sha256(*bytes)));
    forged.push_back(*storage::AuditExportEntryLine(e->seq - 1, *bytes));
  }
  ASSERT_GT(forged.size(), 5u);
  ExpectRejected(Verify(forged), {"entry 0", "not covered by any signed checkpoint"});
}

TEST_F(ComplianceE2eTamperTest, AnExportCutBackToAnOlderCheckpointFailsAgainstANewerOne) {
  // The officer keeps the checkpoint each export ends with; the log grows; a newer export.
  const uint64_t old_size = LastCheckpointSize(lines_);
  std::string old_checkpoint_line;
  for (const auto& raw : lines_) {
    if (ExportLine{.raw = raw, .json = nlohmann::json::parse(raw)}.is_checkpoint()) {
      old_checkpoint_line = raw;
    }
  }
  client::Client c = vault_.AppClient();
  ASSERT_TRUE(c.SearchPatient(e2e::Physician(), "synthetic-patient-tamper").ok());
  const std::string newer = SaveFreshCheckpoint("newer-checkpoint.txt");
  const std::string newer_export = vault_.ScratchPath("newer.jsonl");
  auto exp = Officer(vault_, {"audit", "export", "-o", newer_export});
  ASSERT_EQ(exp.exit_code, 0) << Describe(exp);
  const auto newer_lines = Lines(ReadFile(newer_export));
  ASSERT_EQ(Verify(newer_lines, {"--trusted-checkpoint", newer}).exit_code, 0);

  // An attacker cuts the newer export back to the older checkpoint: complete in itself.
  std::vector<std::string> cut;
  for (const auto& raw : newer_lines) {
    ExportLine l{.raw = raw, .json = nlohmann::json::parse(raw, nullptr, false)};
    if (l.is_entry() && l.index() < static_cast<int64_t>(old_size)) cut.push_back(raw);
  }
  cut.push_back(old_checkpoint_line);
  ASSERT_EQ(Verify(cut).exit_code, 0) << "without a trusted checkpoint, nothing shows the cut";
  ExpectRejected(Verify(cut, {"--trusted-checkpoint", newer}),
                 {"rolled back", "trusted checkpoint " + newer});
  // So does the old export itself.
  ExpectRejected(Verify(lines_, {"--trusted-checkpoint", newer}), {"rolled back", newer});
}

TEST_F(ComplianceE2eTamperTest, AlteredOrAddedReadablePhiIsCaught) {
  // The officer's export carries the entries' PHI in readable form, bound by their commitments.
  size_t with_phi = lines_.size();
  size_t without_phi = lines_.size();
  for (size_t i = 0; i < lines_.size(); ++i) {
    ExportLine l{.raw = lines_[i], .json = nlohmann::json::parse(lines_[i], nullptr, false)};
    if (!l.is_entry()) continue;
    if (l.json.contains("phi") && l.json["phi"].contains("patient_id")) {
      if (with_phi == lines_.size()) with_phi = i;
    } else if (without_phi == lines_.size()) {
      without_phi = i;
    }
  }
  ASSERT_LT(without_phi, lines_.size());
  // A readable PHI added where the entry commits to none (a forger's "recipient", say).
  {
    auto tampered = lines_;
    nlohmann::json j = nlohmann::json::parse(tampered[without_phi]);
    j["phi"] = {{"patient_id", "synthetic-patient-tamper"}, {"recipient_name", "Someone"}};
    j["phi_salt"] = std::string(64, 'a');
    tampered[without_phi] = j.dump();
    ExpectRejected(Verify(tampered),
                   {"entry " + std::to_string(j["index"].get<int64_t>()), "readable \"phi\""});
  }
  ASSERT_LT(with_phi, lines_.size()) << "the compliance export carries readable PHI";
  auto tampered = lines_;
  nlohmann::json j = nlohmann::json::parse(tampered[with_phi]);
  j["phi"]["patient_id"] = "synthetic-patient-someone-else";
  tampered[with_phi] = j.dump();
  ExpectRejected(Verify(tampered), {"entry " + std::to_string(j["index"].get<int64_t>()),
                                    "readable \"phi\"", "does not match"});
}

TEST_F(ComplianceE2eTamperTest, AFilteredExportIsLinkedToATrustedCheckpointByAConsistencyProof) {
  const std::string saved = SaveFreshCheckpoint("saved-checkpoint.txt");
  client::Client c = vault_.AppClient();
  ASSERT_TRUE(c.SearchPatient(e2e::Physician(), "synthetic-patient-tamper").ok());
  const std::string with_proof = vault_.ScratchPath("filtered-proof.jsonl");
  auto exp = Officer(vault_, {"audit", "export", "--patient", "synthetic-patient-tamper",
                              "--trusted-checkpoint", saved, "-o", with_proof});
  ASSERT_EQ(exp.exit_code, 0) << Describe(exp);
  auto ok = VerifyFile(with_proof, key_);
  ASSERT_EQ(ok.exit_code, 0) << Describe(ok);
  auto linked = e2e::RunProcess({PHIVAULT_CLI_PATH, "audit", "verify", with_proof, "--key", key_,
                                 "--trusted-checkpoint", saved},
                                vault_.ScratchPath(""),
                                {{"PHIVAULT_SOCKET", vault_.ScratchPath("no-daemon.sock")}});
  ASSERT_EQ(linked.exit_code, 0) << Describe(linked);
  EXPECT_NE(linked.out.find("consistent with 1 trusted checkpoint"), std::string::npos)
      << Describe(linked);

  // Exported without asking for the proof: the verifier says what is missing.
  const std::string without = vault_.ScratchPath("filtered.jsonl");
  exp =
      Officer(vault_, {"audit", "export", "--patient", "synthetic-patient-tamper", "-o", without});
  ASSERT_EQ(exp.exit_code, 0) << Describe(exp);
  ExpectRejected(Verify(Lines(ReadFile(without)), {"--trusted-checkpoint", saved}),
                 {"no consistency proof from trusted checkpoint " + saved});
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
