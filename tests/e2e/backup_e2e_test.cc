// Backups end to end (docs/backups.md): the real phivaultd backs up while it serves, the real
// phivault CLI verifies and restores offline. A backup taken before a retention sweep, restored
// with the current keyring (here or on "another machine"), brings no shredded record back
// (410) and every other record back byte for byte; a damaged backup is refused by verify and
// restore without touching the vault; a backup made under load loses nothing; the restore says
// how many audit entries the restored log lacks and is itself audited.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/signing.h"
#include "storage/backup.h"
#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFakeTime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

nlohmann::json ParseJson(const std::string& text) {
  return nlohmann::json::parse(text, nullptr, false);
}

// The NDJSON lines a long command prints with --json, as `retention sweep --json` does.
std::vector<nlohmann::json> JsonLines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  for (size_t at = 0; at < out.size();) {
    const size_t nl = std::min(out.find('\n', at), out.size());
    if (nl > at) lines.push_back(ParseJson(out.substr(at, nl - at)));
    at = nl + 1;
  }
  return lines;
}

// The {"result":...} that ends such output (null if it does not end in one).
nlohmann::json ResultLine(const std::string& out) {
  const auto lines = JsonLines(out);
  if (lines.empty() || !lines.back().is_object() || !lines.back().contains("result")) return {};
  return lines.back()["result"];
}

// Every line but the last is {"progress":{"phase","done","total"}} with done <= total, reported
// in order; the phases seen.
std::set<std::string> ProgressPhases(const std::string& out) {
  const auto lines = JsonLines(out);
  std::set<std::string> phases;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    const auto& p = lines[i]["progress"];
    EXPECT_TRUE(p.is_object()) << lines[i].dump();
    if (!p.is_object()) continue;
    EXPECT_LE(p["done"].get<uint64_t>(), p["total"].get<uint64_t>()) << lines[i].dump();
    phases.insert(p["phase"].get<std::string>());
  }
  return phases;
}

// Every file under `dir` with its bytes: what "untouched" is compared on.
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const std::string& f : AllFiles(dir)) out[f] = ReadFile(f);
  return out;
}

class E2eBackupTest : public VaultTest {
 protected:
  bool StartInSetUp() const override { return false; }

  // The daemon `days` days ahead of the real clock (libfaketime), as retention_e2e_test does.
  void StartDaysAhead(int days) {
    ASSERT_TRUE(fs::exists(kFakeTime)) << "install faketime (scripts/install-deps.sh)";
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
  // A note whose retention ends the day after it is stored (an encounter long ago).
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
  // `phivault audit pubkey` into a file kept apart from the vault.
  std::string SavePubkey() {
    const ProcessResult pubkey = Admin({"audit", "pubkey"});
    EXPECT_EQ(pubkey.exit_code, 0) << pubkey.err;
    const std::string file = vault_.ScratchPath("audit.pub");
    WriteFile(file, pubkey.out);
    return file;
  }
  // `phivault backup create` into `dir`; the backup's path.
  std::string Backup(const std::string& dir) {
    const ProcessResult made = Admin({"--json", "backup", "create", dir});
    EXPECT_EQ(made.exit_code, 0) << made.err;
    const auto j = ResultLine(made.out);
    EXPECT_TRUE(j.is_object() && j.contains("path")) << made.out;
    return j.is_object() ? j.value("path", "") : "";
  }
  int Verify(const std::string& backup, const std::string& pubkey, nlohmann::json* out = nullptr) {
    const ProcessResult v = vault_.Cli({"--json", "backup", "verify", backup, "--pubkey", pubkey});
    if (out != nullptr) *out = ResultLine(v.out);
    return v.exit_code;
  }
  ProcessResult Restore(const std::string& backup, const std::string& data_dir,
                        const std::string& pubkey) {
    return vault_.Cli(
        {"--json", "backup", "restore", backup, "--data-dir", data_dir, "--pubkey", pubkey});
  }
  // Every audit entry, as `phivault audit export` gives them.
  std::vector<nlohmann::json> AuditEntries() {
    const ProcessResult exported = Admin({"audit", "export", "--format", "jsonl"});
    EXPECT_EQ(exported.exit_code, 0) << exported.err;
    std::vector<nlohmann::json> out;
    for (size_t at = 0; at < exported.out.size();) {
      const size_t nl = exported.out.find('\n', at);
      auto line = ParseJson(exported.out.substr(at, nl - at));
      if (line.is_object() && line.value("type", "") == "entry" && line["entry"].is_string()) {
        auto entry = ParseJson(line["entry"].get<std::string>());
        if (entry.is_object()) out.push_back(std::move(entry));
      }
      if (nl == std::string::npos) break;
      at = nl + 1;
    }
    return out;
  }
  int HttpStatusOfRead(const std::string& id) {
    auto r = vault_.AppClient().ReadRecord(Physician(), id);
    return r.ok() ? 200 : r.error().http_status;
  }
  // A record destroyed after the backup, read in the restored vault: gone (410 record-shredded),
  // never an integrity failure or a decrypt error, and absent from its patient's records.
  void ExpectGoneAfterRestore(const std::string& id, const std::string& patient) {
    auto r = vault_.AppClient().ReadRecord(Physician(), id);
    ASSERT_FALSE(r.ok()) << "a shredded record read back";
    EXPECT_EQ(r.error().http_status, 410) << r.error().Message();
    EXPECT_TRUE(r.error().type.ends_with("record-shredded")) << r.error().type;
    auto listed = vault_.AppClient().SearchPatient(Physician(), patient);
    ASSERT_TRUE(listed.ok()) << listed.error().Message();
    for (const auto& m : *listed) EXPECT_NE(m.record_id, id);
  }
  // The sweep that destroys what StoreOld stored, two days on (the daemon keeps running); its
  // certificate id in `certificate` if given.
  void SweepTwoDaysOn(std::string* certificate = nullptr) {
    ASSERT_NO_FATAL_FAILURE(StartDaysAhead(2));
    const ProcessResult swept = Admin({"--json", "retention", "sweep", "--destroy"});
    ASSERT_EQ(swept.exit_code, 0) << swept.err;
    if (certificate != nullptr) {
      *certificate = ResultLine(swept.out).value("certificate_id", "");
      ASSERT_EQ(certificate->size(), 32u) << swept.out;
    }
  }
  // The first 32 bytes of each version's sealed content and the whole sealed header of
  // `ids` (version 1) as the database at `db` holds them: what must be in no file once purged.
  std::vector<std::string> StoredCiphertext(const std::string& db,
                                            const std::vector<std::string>& ids) {
    std::vector<std::string> out;
    auto store = storage::OpenDatabaseReadOnly(db);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return out;
    for (const auto& id : ids) {
      const std::string raw = *crypto::Base64UrlDecode(id);
      const std::string v1("\0\0\0\1", 4);
      auto content = (*store)->Get(storage::Cf::kRecords, "c" + raw + v1);
      auto header = (*store)->Get(storage::Cf::kRecords, "m" + raw + v1);
      EXPECT_TRUE(content.ok() && content->has_value() && header.ok() && header->has_value());
      if (!content.ok() || !*content || !header.ok() || !*header) continue;
      out.push_back((*content)->substr(0, 32));
      out.push_back((*header)->substr((*header)->size() - 32));  // the sealed metadata's tag
    }
    return out;
  }
  // Files under `dir` holding any of `needles`.
  static std::vector<std::string> FilesWithAny(const std::string& dir,
                                               const std::vector<std::string>& needles) {
    std::vector<std::string> hits;
    for (const auto& n : needles) {
      for (auto& f : FilesWithBytes(dir, n)) hits.push_back(std::move(f));
    }
    return hits;
  }
};

// Finds the audit entry of `action` whose reason holds `text`.
bool HasEntry(const std::vector<nlohmann::json>& entries, const std::string& action,
              const std::string& text) {
  for (const auto& e : entries) {
    if (e.value("action", "") == action && e.value("reason", "").find(text) != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST_F(E2eBackupTest, RestoreBeforeSweepKeepsShreddedRecordsGoneAndTheRestByteIdentical) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string canary = "synthetic-backup-canary-7c1f";
  const std::vector<std::string> gone = {StoreOld("synthetic-bk-1", canary + "-a"),
                                         StoreOld("synthetic-bk-2", canary + "-b")};
  const std::vector<std::string> gone_patients = {"synthetic-bk-1", "synthetic-bk-2"};
  std::map<std::string, std::string> kept;
  for (int i = 0; i < 4; ++i) {
    const std::string content = "synthetic kept note " + std::to_string(i) + " " + RandomHex(600);
    kept[StoreNote("synthetic-bk-keep-" + std::to_string(i), content)] = content;
  }
  const std::string big = RandomBytes(300 * 1024);  // goes to a blob file
  kept[StoreNote("synthetic-bk-keep-big", big)] = big;
  const std::string pubkey = SavePubkey();
  const std::string backup = Backup(vault_.ScratchPath("backups"));
  ASSERT_FALSE(backup.empty());
  EXPECT_EQ(Verify(backup, pubkey), 0);
  const ProcessResult listed =
      vault_.Cli({"--json", "backup", "ls", vault_.ScratchPath("backups")});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_EQ(ParseJson(listed.out)["backups"].size(), 1u) << listed.out;
  const ProcessResult inside = Admin({"backup", "create", vault_.data_dir() + "/backups"});
  EXPECT_EQ(inside.exit_code, 1);
  EXPECT_NE(inside.err.find("outside the data directory"), std::string::npos) << inside.err;
  EXPECT_EQ(Admin({"backup", "create", "relative/dir"}).exit_code, 2);
  EXPECT_EQ(vault_
                .Cli({"backup", "create", vault_.ScratchPath("backups")},
                     {{"PHIVAULT_ROLE", "physician"}, {"PHIVAULT_PURPOSE", "TREAT"}})
                .exit_code,
            3)
      << "a role the policy gives no vault administration is refused";
  vault_.Stop();

  // The keyring never enters a backup: no file holds the keyring's header or a sealed key slot.
  const std::string keyring = ReadFile(vault_.data_dir() + "/keyring");
  ASSERT_GT(keyring.size(), 16384u);
  const size_t header = keyring.compare(0, 4, "PVK2") == 0 ? 0 : 8192;
  ASSERT_EQ(keyring.compare(header, 4, "PVK2"), 0);
  // Magic, version, generation, slot count and the first bytes of the random sealed check.
  EXPECT_TRUE(FilesWithBytes(backup, keyring.substr(header, 48)).empty());
  EXPECT_TRUE(FilesWithBytes(backup, canary).empty()) << "content is only ever sealed";

  std::string certificate;
  ASSERT_NO_FATAL_FAILURE(SweepTwoDaysOn(&certificate));
  for (const auto& id : gone) EXPECT_EQ(HttpStatusOfRead(id), 410);
  const uint64_t entries_before_restore = AuditEntries().size();
  vault_.Stop();

  // Restoring into the running vault's place is refused while the daemon holds the database.
  ASSERT_NO_FATAL_FAILURE(StartDaysAhead(2));
  const ProcessResult busy = Restore(backup, vault_.data_dir(), pubkey);
  EXPECT_NE(busy.exit_code, 0);
  EXPECT_NE(busy.err.find("in use"), std::string::npos) << busy.err;
  vault_.Stop();

  const ProcessResult restored = Restore(backup, vault_.data_dir(), pubkey);
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  const auto report = ResultLine(restored.out);
  ASSERT_TRUE(report.is_object()) << restored.out;
  const uint64_t backup_size = report["manifest"]["audit_size"].get<uint64_t>();
  EXPECT_TRUE(report["previous_extends_backup"].get<bool>());
  const uint64_t previous = report["previous_audit_size"].get<uint64_t>();
  EXPECT_GE(previous, entries_before_restore);
  const uint64_t lacking = report["lacking_entries"].get<uint64_t>();
  EXPECT_EQ(lacking, previous - backup_size);
  EXPECT_GT(lacking, 0u);
  EXPECT_TRUE(fs::is_directory(report["set_aside"].get<std::string>()));
  // The restored database brought the shredded records' ciphertext back (unreadable: its keys
  // are gone) ...
  const std::vector<std::string> ciphertext = StoredCiphertext(vault_.data_dir() + "/db", gone);
  ASSERT_EQ(ciphertext.size(), 2 * gone.size());
  EXPECT_FALSE(FilesWithAny(vault_.data_dir() + "/db", ciphertext).empty());
  // ... and a backup cut short left its staging directory of hard links behind.
  const std::string staging = vault_.data_dir() + "/backup-staging";
  fs::create_directories(staging);
  WriteFile(staging + "/000123.sst", ReadFile(AllFiles(vault_.data_dir() + "/db").front()));

  ASSERT_NO_FATAL_FAILURE(StartDaysAhead(2));
  // ... which the first start purges: no byte of it in any file of the data directory.
  EXPECT_FALSE(fs::exists(staging));
  EXPECT_EQ(FilesWithAny(vault_.data_dir(), ciphertext), std::vector<std::string>{});
  for (size_t i = 0; i < gone.size(); ++i) {
    SCOPED_TRACE("shredded stays shredded");
    ExpectGoneAfterRestore(gone[i], gone_patients[i]);
    // Still 410 naming the sweep's certificate, which the restored vault now holds too.
    auto r = vault_.AppClient().ReadRecord(Physician(), gone[i]);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().certificate, certificate) << r.error().Message();
  }
  EXPECT_EQ(Admin({"certificate", "show", certificate}).exit_code, 0);
  for (const auto& [id, content] : kept) EXPECT_EQ(ReadNote(id), content);
  const auto entries = AuditEntries();
  EXPECT_TRUE(HasEntry(entries, "backup.restore", "lacks " + std::to_string(lacking)))
      << "the restore is audited with what the restored log lacks";
  EXPECT_TRUE(HasEntry(entries, "backup.restore", "is the one this database holds"));
  EXPECT_TRUE(HasEntry(entries, "backup.restore",
                       "ciphertext, metadata and index entries of 2 records (2 versions)"));
  EXPECT_TRUE(
      HasEntry(entries, "backup.restore", "certificates of their destruction: " + certificate));
  EXPECT_TRUE(HasEntry(entries, "backup.restore", "none of their 6 ciphertext fingerprints"));
  EXPECT_FALSE(fs::exists(vault_.data_dir() + "/restore-marker.json"));
  // The restored vault sweeps as before; what it brought back under destroyed keys stays 410.
  const ProcessResult swept = Admin({"--json", "retention", "sweep", "--destroy"});
  EXPECT_EQ(swept.exit_code, 0) << swept.err;
  for (const auto& id : gone) EXPECT_EQ(HttpStatusOfRead(id), 410);
  for (const auto& [id, content] : kept) EXPECT_EQ(ReadNote(id), content);
}

TEST_F(E2eBackupTest, BackupCopiedToAnotherMachineRestoresWithTheCurrentKeyring) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string gone = StoreOld("synthetic-bk-far-1", "synthetic far note to shred");
  const std::string content = "synthetic far note kept " + RandomHex(300);
  const std::string kept = StoreNote("synthetic-bk-far-2", content);
  const std::string pubkey = SavePubkey();
  const std::string backup = Backup(vault_.ScratchPath("backups"));
  ASSERT_FALSE(backup.empty());
  vault_.Stop();
  // "Another machine": the backup copied off before the sweep.
  const std::string elsewhere = vault_.ScratchPath("offsite");
  fs::create_directories(elsewhere);
  fs::copy(backup, elsewhere + "/" + fs::path(backup).filename().string(),
           fs::copy_options::recursive);
  const std::string offsite = elsewhere + "/" + fs::path(backup).filename().string();

  ASSERT_NO_FATAL_FAILURE(SweepTwoDaysOn());
  EXPECT_EQ(HttpStatusOfRead(gone), 410);
  vault_.Stop();

  // A fresh data directory there, with a copy of the vault's current keyring.
  const std::string fresh = vault_.ScratchPath("machine2-data");
  fs::create_directories(fresh);
  fs::copy_file(vault_.data_dir() + "/keyring", fresh + "/keyring");
  EXPECT_EQ(Verify(offsite, pubkey), 0);
  const ProcessResult restored = Restore(offsite, fresh, pubkey);
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  EXPECT_FALSE(ResultLine(restored.out)["had_database"].get<bool>());
  vault_.EditConfig("data_dir = \"" + vault_.data_dir() + "\"", "data_dir = \"" + fresh + "\"");
  const std::vector<std::string> ciphertext = StoredCiphertext(fresh + "/db", {gone});
  ASSERT_EQ(ciphertext.size(), 2u);
  ASSERT_NO_FATAL_FAILURE(StartDaysAhead(2));
  ExpectGoneAfterRestore(gone, "synthetic-bk-far-1");
  EXPECT_EQ(ReadNote(kept), content);
  EXPECT_EQ(FilesWithAny(fresh, ciphertext), std::vector<std::string>{});
  // No previous database there, so no certificate to name: the tombstone names the purge.
  auto r = vault_.AppClient().ReadRecord(Physician(), gone);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().http_status, 410);
  EXPECT_EQ(r.error().certificate.size(), 32u) << r.error().Message();
  const auto entries = AuditEntries();
  EXPECT_TRUE(HasEntry(entries, "backup.restore", "is the one this database holds"));
  EXPECT_TRUE(HasEntry(entries, "backup.restore", "name this purge: " + r.error().certificate));
}

TEST_F(E2eBackupTest, DamagedBackupsFailVerifyAndRestoreWithoutTouchingTheVault) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string content = "synthetic note " + RandomHex(2000);
  const std::string id = StoreNote("synthetic-bk-dmg", content);
  const std::string pubkey = SavePubkey();
  const std::string good = Backup(vault_.ScratchPath("backups"));
  ASSERT_FALSE(good.empty());
  StoreNote("synthetic-bk-dmg", "synthetic note written after the backup");
  vault_.Stop();

  std::string sst;
  for (const auto& f : AllFiles(good + "/db")) {
    if (f.ends_with(".sst") && fs::file_size(f) > 100) sst = f.substr(good.size() + 1);
  }
  ASSERT_FALSE(sst.empty());
  struct Damage {
    std::string name;
    std::string kind;  // the problem verify must report
    std::function<void(const std::string&)> apply;
  };
  const std::vector<Damage> damages = {
      {"altered", "altered",
       [&](const std::string& b) {
         std::string bytes = ReadFile(b + "/" + sst);
         bytes[bytes.size() / 2] ^= 0x01;
         WriteFile(b + "/" + sst, bytes);
       }},
      {"truncated", "truncated",
       [&](const std::string& b) {
         fs::resize_file(b + "/" + sst, fs::file_size(b + "/" + sst) / 2);
       }},
      {"removed", "missing", [&](const std::string& b) { fs::remove(b + "/" + sst); }},
      {"foreign", "foreign",
       [&](const std::string& b) { WriteFile(b + "/db/000999.sst", "planted"); }},
      {"resigned", "signature",
       [&](const std::string& b) {
         std::string m = ReadFile(b + "/manifest.phivault");
         const size_t at = m.find("keyring-generation ");
         m.insert(at + 19, "1");
         WriteFile(b + "/manifest.phivault", m);
       }},
  };
  const auto before = Snapshot(vault_.data_dir());
  for (const Damage& d : damages) {
    SCOPED_TRACE(d.name);
    const std::string copy = vault_.ScratchPath("damaged-" + d.name);
    fs::copy(good, copy, fs::copy_options::recursive);
    d.apply(copy);
    nlohmann::json v;
    EXPECT_EQ(Verify(copy, pubkey, &v), 7);
    bool reported = false;
    for (const auto& p : v["problems"]) reported = reported || p.value("kind", "") == d.kind;
    EXPECT_TRUE(reported) << v.dump();
    const ProcessResult r = Restore(copy, vault_.data_dir(), pubkey);
    EXPECT_EQ(r.exit_code, 7) << r.err;
    EXPECT_NE(r.err.find("nothing was restored"), std::string::npos) << r.err;
    EXPECT_EQ(Snapshot(vault_.data_dir()), before) << "the vault's files are untouched";
  }
  // A verifier key that is not the vault's does not verify even an intact backup.
  const std::string other = vault_.ScratchPath("other.pub");
  WriteFile(other, crypto::NoteVerifierKey("other", RandomBytes(32)) + "\n");
  EXPECT_EQ(Verify(good, other), 7);

  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(id), content);
  EXPECT_FALSE(HasEntry(AuditEntries(), "backup.restore", ""));
  vault_.Stop();

  // A planted marker claiming a restore: the daemon records it as not matching, changes nothing.
  const std::string marker = vault_.data_dir() + "/restore-marker.json";
  WriteFile(marker, nlohmann::json{{"backup_id", "20261201T000000Z-00000000"},
                                   {"audit_size", 1},
                                   {"audit_root", std::string(43, 'A') + "="},
                                   {"previous_audit_size", 0},
                                   {"previous_extends_backup", false},
                                   {"lacking_entries", 0},
                                   {"set_aside", ""},
                                   {"restored_unix", 0}}
                        .dump());
  ASSERT_TRUE(vault_.Start());
  EXPECT_FALSE(fs::exists(marker));
  EXPECT_TRUE(HasEntry(AuditEntries(), "backup.restore", "is NOT the one this database holds"));
  EXPECT_EQ(ReadNote(id), content);
}

TEST_F(E2eBackupTest, OnlineBackupWhileClientsWriteLosesNothing) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  std::mutex mu;
  std::map<std::string, std::string> before_backup, after_backup, during;  // id -> content
  std::atomic<int> phase{0};  // 0 before the backup, 1 during it, 2 after it returned
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      client::Client c = vault_.AppClient();
      for (int i = 0; !stop.load(); ++i) {
        const int started = phase.load();
        const std::string content = "synthetic load note " + std::to_string(w) + "/" +
                                    std::to_string(i) + " " + RandomHex(200);
        auto m = c.CreateRecord(Physician(), client::NewRecord{.patient_id = "synthetic-bk-load",
                                                               .category = "clinical_note",
                                                               .content_type = "text/plain",
                                                               .encounter_date = "2026-11-30",
                                                               .author = "Dr. Synthetic",
                                                               .content = content});
        ASSERT_TRUE(m.ok()) << m.error().Message();
        const int ended = phase.load();
        std::lock_guard<std::mutex> lock(mu);
        (ended == 0 ? before_backup : started == 2 ? after_backup : during)[m->record_id] = content;
      }
    });
  }
  auto count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return before_backup.size();
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (count() < 200 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  phase = 1;
  const std::string pubkey = SavePubkey();
  const std::string backup = Backup(vault_.ScratchPath("backups"));
  phase = 2;
  while ([&] {
    std::lock_guard<std::mutex> lock(mu);
    return after_backup.size() < 50;
  }() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop = true;
  for (auto& t : writers) t.join();
  ASSERT_FALSE(backup.empty());
  // The live vault lost nothing while it was backed up.
  for (const auto* set : {&before_backup, &during, &after_backup}) {
    for (const auto& [id, content] : *set) ASSERT_EQ(ReadNote(id), content);
  }
  vault_.Stop();

  ASSERT_EQ(Verify(backup, pubkey), 0);
  const ProcessResult restored = Restore(backup, vault_.data_dir(), pubkey);
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  ASSERT_TRUE(vault_.Start());
  // Everything acknowledged before the backup began is in it, intact; what came after is not;
  // what was written meanwhile is either whole or absent, never damaged.
  for (const auto& [id, content] : before_backup) ASSERT_EQ(ReadNote(id), content);
  for (const auto& [id, content] : after_backup) ASSERT_EQ(HttpStatusOfRead(id), 404);
  for (const auto& [id, content] : during) {
    const int status = HttpStatusOfRead(id);
    ASSERT_TRUE(status == 200 || status == 404) << status;
    if (status == 200) {
      EXPECT_EQ(ReadNote(id), content);
    }
  }
}

TEST_F(E2eBackupTest, IncrementalBackupsShareFilesStreamJsonProgressAndSurvivePruning) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  std::map<std::string, std::string> notes;
  const std::string big = RandomBytes(400 * 1024);  // a blob file the second backup shares
  notes[StoreNote("synthetic-bk-inc-big", big)] = big;
  for (int i = 0; i < 3; ++i) {
    const std::string content = "synthetic incremental note " + std::to_string(i);
    notes[StoreNote("synthetic-bk-inc", content)] = content;
  }
  const std::string pubkey = SavePubkey();
  const std::string dir = vault_.ScratchPath("backups");

  const ProcessResult first = Admin({"--json", "backup", "create", dir});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(ProgressPhases(first.out), (std::set<std::string>{"checkpoint", "backup"}))
      << first.out;
  const auto one = ResultLine(first.out);
  ASSERT_TRUE(one.is_object()) << first.out;
  EXPECT_EQ(one["shared_bytes"].get<uint64_t>(), 0u);

  const std::string small = "synthetic note written between the backups";
  notes[StoreNote("synthetic-bk-inc", small)] = small;
  const ProcessResult second = Admin({"--json", "backup", "create", dir});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const auto two = ResultLine(second.out);
  ASSERT_TRUE(two.is_object()) << second.out;
  EXPECT_GE(two["shared_bytes"].get<uint64_t>(), big.size()) << "the unchanged blob is linked";
  EXPECT_LT(two["bytes"].get<uint64_t>() - two["shared_bytes"].get<uint64_t>(),
            one["bytes"].get<uint64_t>() / 2);
  EXPECT_TRUE(HasEntry(AuditEntries(), "backup.create", "shared with earlier backups"));
  // Refused before it began: a problem, as the last and only line.
  const ProcessResult nested =
      Admin({"--json", "backup", "create", two["path"].get<std::string>()});
  EXPECT_NE(nested.exit_code, 0);
  const auto nested_lines = JsonLines(nested.out);
  ASSERT_EQ(nested_lines.size(), 1u) << nested.out;
  EXPECT_NE(nested_lines[0]["error"]["detail"].get<std::string>().find("is a backup"),
            std::string::npos)
      << nested.out;
  vault_.Stop();

  const ProcessResult listed = vault_.Cli({"--json", "backup", "ls", dir});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  const auto backups = ParseJson(listed.out)["backups"];
  ASSERT_EQ(backups.size(), 2u) << listed.out;
  EXPECT_EQ(backups[0]["shared_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(backups[1]["shared_bytes"].get<uint64_t>(), two["shared_bytes"].get<uint64_t>());
  EXPECT_EQ(backups[1]["new_bytes"].get<uint64_t>() + backups[1]["shared_bytes"].get<uint64_t>(),
            two["bytes"].get<uint64_t>());
  const ProcessResult table = vault_.Cli({"backup", "ls", dir});
  EXPECT_NE(table.out.find("SHARED"), std::string::npos) << table.out;

  for (const auto& b : {one, two}) {
    const ProcessResult v = vault_.Cli(
        {"--json", "backup", "verify", b["path"].get<std::string>(), "--pubkey", pubkey});
    EXPECT_EQ(v.exit_code, 0) << v.err;
    EXPECT_EQ(ProgressPhases(v.out), std::set<std::string>{"verify"}) << v.out;
    EXPECT_TRUE(ResultLine(v.out)["ok"].get<bool>()) << v.out;
  }
  const ProcessResult not_a_backup =
      vault_.Cli({"--json", "backup", "verify", vault_.ScratchPath("nothing-here")});
  EXPECT_EQ(not_a_backup.exit_code, 4);
  EXPECT_TRUE(JsonLines(not_a_backup.out).back().contains("error")) << not_a_backup.out;

  const ProcessResult pruned = vault_.Cli({"--json", "backup", "prune", dir, "--keep", "1"});
  ASSERT_EQ(pruned.exit_code, 0) << pruned.err;
  EXPECT_EQ(ParseJson(pruned.out)["removed"], nlohmann::json::array({one["id"]})) << pruned.out;
  EXPECT_FALSE(fs::exists(one["path"].get<std::string>()));
  EXPECT_EQ(Verify(two["path"].get<std::string>(), pubkey), 0)
      << "removing the older backup leaves the newer one complete";

  const ProcessResult restored = Restore(two["path"].get<std::string>(), vault_.data_dir(), pubkey);
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  EXPECT_EQ(ProgressPhases(restored.out), (std::set<std::string>{"verify", "copy"}))
      << restored.out;
  EXPECT_TRUE(ResultLine(restored.out)["ok"].get<bool>());
  ASSERT_TRUE(vault_.Start());
  for (const auto& [id, content] : notes) EXPECT_EQ(ReadNote(id), content);
}

}  // namespace
}  // namespace phivault::e2e
