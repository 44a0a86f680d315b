// Retention end to end: the real phivaultd, run days ahead with libfaketime so that records
// expire, and the real phivault CLI. A dry run lists what would go; a real sweep destroys it,
// leaves its plaintext and its epoch key in no file, answers 410 with the certificate id, and
// issues a certificate that `phivault certificate verify` accepts offline and refuses once
// altered; a hold keeps its record; the daemon's own scheduled sweep does the same unattended.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

constexpr const char* kFakeTime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

bool AnyFileHolds(const std::string& dir, const std::string& needle) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && ReadAll(e.path()).find(needle) != std::string::npos) return true;
  }
  return false;
}

class E2eRetentionTest : public VaultTest {
 protected:
  bool StartInSetUp() const override { return false; }

  // The daemon `days` days ahead of the real clock (libfaketime, a test-suite dependency).
  void StartDaysAhead(int days) {
    ASSERT_TRUE(std::filesystem::exists(kFakeTime)) << "install faketime (scripts/install-deps.sh)";
    // Under AddressSanitizer, ASan's runtime must come first in the daemon's library list: the
    // one this test process has loaded is preloaded before libfaketime.
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
  std::string StoreOld(const std::string& patient, const std::string& content) {
    auto m = vault_.AppClient().CreateRecord(Physician(),
                                             client::NewRecord{.patient_id = patient,
                                                               .category = "clinical_note",
                                                               .content_type = "text/plain",
                                                               .encounter_date = "2005-05-05",
                                                               .author = "Dr. Synthetic",
                                                               .content = content});
    EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().Message());
    return m.ok() ? m->record_id : "";
  }
  // The epoch a record's DEKs are wrapped under, as `phivault retention show` reports it.
  std::string EpochOf(const std::string& patient, const std::string& id) {
    const ProcessResult shown = Admin({"--json", "retention", "show", "--patient", patient});
    EXPECT_EQ(shown.exit_code, 0) << shown.err;
    auto j = nlohmann::json::parse(shown.out, nullptr, false);
    if (j.is_discarded() || !j.contains("records")) return "";
    for (const auto& r : j["records"]) {
      if (r.value("record_id", "") == id) return r.value("epoch_id", "");
    }
    return "";
  }
  // The sealed bytes of an epoch key in the keyring file (slot layout: crypto/keyring.h).
  std::string SealedKey(const std::string& epoch_id) {
    const std::string bytes = ReadAll(vault_.data_dir() + "/keyring");
    std::string id = epoch_id;
    id.resize(48, '\0');
    const size_t at = bytes.find(id);
    return at == std::string::npos ? "" : bytes.substr(at + 48 + 4 + 8 + 8, 72);
  }
};

TEST_F(E2eRetentionTest, SweepDestroysWhatExpiredAndCertifiesItVerifiablyOffline) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string canary = "synthetic-retention-canary-5d1e";
  const std::string gone = StoreOld("synthetic-ret-e2e-1", canary);
  const std::string held = StoreOld("synthetic-ret-e2e-2", "synthetic held note");
  const std::string fresh = StoreNote("synthetic-ret-e2e-3", "synthetic fresh note");
  const std::string gone_epoch = EpochOf("synthetic-ret-e2e-1", gone);
  ASSERT_FALSE(gone_epoch.empty());
  const ProcessResult hold = Admin({"--json", "hold", "place", "--patient", "synthetic-ret-e2e-2",
                                    "--matter", "Synthetic v. Clinic", "--reason", "litigation"});
  ASSERT_EQ(hold.exit_code, 0) << hold.err;
  const ProcessResult pubkey = Admin({"audit", "pubkey"});
  ASSERT_EQ(pubkey.exit_code, 0) << pubkey.err;
  const std::string pubkey_file = vault_.ScratchPath("audit.pub");
  std::ofstream(pubkey_file) << pubkey.out;
  vault_.Stop();
  const std::string sealed = SealedKey(gone_epoch);
  ASSERT_EQ(sealed.size(), 72u);

  // Two days on, the old record's retention (floored to the day after it was stored) is over.
  ASSERT_NO_FATAL_FAILURE(StartDaysAhead(2));
  const ProcessResult dry = Admin({"--json", "retention", "sweep", "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  nlohmann::json dry_result;
  for (size_t at = 0; at < dry.out.size();) {
    const size_t nl = dry.out.find('\n', at);
    auto line = nlohmann::json::parse(dry.out.substr(at, nl - at), nullptr, false);
    if (!line.is_discarded() && line.contains("result")) dry_result = line["result"];
    at = nl == std::string::npos ? dry.out.size() : nl + 1;
  }
  ASSERT_TRUE(dry_result.is_object()) << dry.out;
  ASSERT_EQ(dry_result["destroyed"].size(), 1u) << dry.out;
  EXPECT_EQ(dry_result["destroyed"][0]["record_id"], gone);
  EXPECT_EQ(ReadNote(gone), canary);  // a dry run changes nothing

  const ProcessResult usage = Admin({"retention", "sweep"});
  EXPECT_EQ(usage.exit_code, 2) << usage.out;
  const ProcessResult real = Admin({"--json", "retention", "sweep", "--destroy"});
  ASSERT_EQ(real.exit_code, 0) << real.err;
  std::string certificate;
  for (size_t at = 0; at < real.out.size();) {
    const size_t nl = real.out.find('\n', at);
    auto line = nlohmann::json::parse(real.out.substr(at, nl - at), nullptr, false);
    if (!line.is_discarded() && line.contains("result")) {
      certificate = line["result"].value("certificate_id", "");
      EXPECT_EQ(line["result"]["destroyed_records"], 1);
    }
    at = nl == std::string::npos ? real.out.size() : nl + 1;
  }
  ASSERT_EQ(certificate.size(), 32u) << real.out;

  // 410 with the certificate, through the socket API.
  auto read = vault_.AppClient().ReadRecord(Physician(), gone, std::nullopt);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().http_status, 410);
  EXPECT_EQ(read.error().certificate, certificate);
  EXPECT_EQ(ReadNote(held), "synthetic held note");
  EXPECT_EQ(ReadNote(fresh), "synthetic fresh note");

  // The certificate: shown, verified offline, and refused once altered.
  const std::string cert_file = vault_.ScratchPath("certificate.txt");
  const ProcessResult shown = Admin({"certificate", "show", certificate, "-o", cert_file});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  const ProcessResult verified =
      vault_.Cli({"certificate", "verify", "--file", cert_file, "--pubkey", pubkey_file});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  std::string text = ReadAll(cert_file);
  const size_t at = text.find(gone);
  ASSERT_NE(at, std::string::npos);
  text[at] = text[at] == 'A' ? 'B' : 'A';
  std::ofstream(cert_file, std::ios::trunc) << text;
  const ProcessResult tampered =
      vault_.Cli({"certificate", "verify", "--file", cert_file, "--pubkey", pubkey_file});
  EXPECT_EQ(tampered.exit_code, 7) << tampered.out << tampered.err;
  vault_.Stop();

  // Nothing of it in any file of the vault: not the plaintext, not the epoch key.
  EXPECT_FALSE(AnyFileHolds(vault_.dir(), canary));
  EXPECT_FALSE(AnyFileHolds(vault_.dir(), sealed));
}

TEST_F(E2eRetentionTest, TheDaemonSweepsOnItsOwnScheduleAsTheSystemPrincipal) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string gone = StoreOld("synthetic-ret-e2e-sched", "synthetic scheduled note");
  vault_.Stop();
  // Midnight UTC has always passed: the daemon sweeps as soon as it starts.
  vault_.EditConfig("# retention_sweep_at = \"03:00\"", "retention_sweep_at = \"00:00\"");
  ASSERT_NO_FATAL_FAILURE(StartDaysAhead(2));
  // The certificate is the sweep's last step: wait for it, then the record reads as gone.
  std::string listed;
  for (int i = 0; i < 150 && listed.find("\"records\": 1") == std::string::npos; ++i) {
    const ProcessResult certs = Admin({"--json", "certificate", "ls"});
    ASSERT_EQ(certs.exit_code, 0) << certs.err;
    listed = certs.out;
    if (listed.find("\"records\": 1") == std::string::npos) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  EXPECT_NE(listed.find("\"records\": 1"), std::string::npos) << listed;
  auto read = vault_.AppClient().ReadRecord(Physician(), gone, std::nullopt);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().http_status, 410);
  EXPECT_FALSE(read.error().certificate.empty());
}

}  // namespace
}  // namespace phivault::e2e
