// The vault through power cuts and failing storage: the real VaultService, keyring, RocksDB store
// and audit log, whose files go through simulated disks that lose everything not synced at a cut
// (tests/storage/power_cut_fs.h, tests/crypto/power_cut_keyring_files.h). After each cut and
// reboot: every acknowledged record version reads back with identical bytes, nothing
// unacknowledged is half there (a record or version either absent or complete, and audited), the
// audit log verifies and holds an entry for every acknowledged operation. Cuts fall at random
// under concurrent creates, amends and reads, and at every change of a retention sweep, a backup
// and a keyring update. With failing writes and syncs a request fails with a 5xx problem,
// nothing failed is acknowledged, and the vault takes requests again once the fault clears.
//
// PHIVAULT_POWER_CUTS=<n> runs n random cuts instead of the CI's few (docs/reliability-power.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "crypto/keyring.h"
#include "crypto/secret.h"
#include "crypto/signing.h"
#include "daemon/config.h"
#include "daemon/problem.h"
#include "daemon/service.h"
#include "storage/audit_log.h"
#include "storage/audit_verify.h"
#include "storage/backup.h"
#include "storage/file_scan.h"
#include "storage/ledger.h"
#include "storage/records.h"
#include "storage/rocks_store.h"
#include "storage/store.h"
#include "storage/vault_id.h"
#include "tests/crypto/power_cut_keyring_files.h"
#include "tests/storage/power_cut_fs.h"
#include "tests/testing/power_switch.h"
#include "tests/testing/temp_dir.h"

namespace phivault::daemon {
namespace {

using storage::testing::FsFault;
using storage::testing::FsOp;

constexpr int64_t kStartUs = 1'793'000'000LL * 1000000;  // 2026-10-26T07:33:20Z

uint64_t EnvCount(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

RequestContext Ctx(std::string user, std::string role, std::string purpose) {
  RequestContext ctx;
  ctx.request_id = "req";
  ctx.principal.name = "test-app";
  ctx.principal.actions = KnownActions();
  ctx.principal.roles = DefaultRoles();
  ctx.user = std::move(user);
  ctx.role = std::move(role);
  ctx.purpose = std::move(purpose);
  return ctx;
}
RequestContext Physician(std::string request_id = "req") {
  auto ctx = Ctx("dr.synthetic", "physician", "TREAT");
  ctx.request_id = std::move(request_id);
  return ctx;
}
RequestContext Admin() { return Ctx("admin.synthetic", "vault_admin", "HOPERAT"); }
RequestContext Officer() { return Ctx("co.synthetic", "compliance_officer", "HOPERAT"); }

// A vault whose disks can lose power. Open/Reboot open the real components on them as phivaultd
// does; Cut stops the machine and makes the disks what a reboot would find.
class PowerCutVault {
 public:
  PowerCutVault() {
    config.categories = DefaultCategories();
    config.roles = DefaultRoles();
    config.data_dir = dir.path().string();
    config.audit_origin = "test.example/audit";
    if (!crypto::InitSodium().ok()) std::abort();
    master_ = crypto::SecretBytes::Random(32);
  }

  // Creates the keyring on first use. A failure (e.g. a cut scheduled inside Open) is returned.
  Status Open() {
    PV_RETURN_IF_ERROR(crypto::InitSodium());
    crypto::KeyringOptions ko{dir.Sub("keyring"), {}, &keyring_files};
    auto k = created_ ? crypto::Keyring::Open(ko, Copy(master_))
                      : crypto::Keyring::Create(ko, Copy(master_));
    if (!k.ok() && !created_ && keyring_files.Exists(ko.path)) {
      // A Create cut in the middle: the file exists and is opened like any other.
      k = crypto::Keyring::Open(ko, Copy(master_));
    }
    if (!k.ok()) return k.status();
    created_ = true;
    keyring = std::move(*k);
    storage::RocksStoreOptions so;
    so.path = dir.Sub("db");
    so.reserve_bytes = 1 << 20;
    auto s = storage::OpenRocksStoreOn(so, fs);
    if (!s.ok()) return s.status();
    store = std::move(*s);
    // As phivaultd binds a database to its keyring at start (backups name the vault id).
    PV_RETURN_IF_ERROR(storage::BindVaultId(*store, keyring->vault_id()));
    auto log = storage::AuditLog::Open(*store, keyring->audit_signer(), config.audit_origin);
    if (!log.ok()) return log.status();
    audit_log = std::move(*log);
    auto svc = NewVaultService({&config, store.get(), &audit_log->ledger(), keyring.get(),
                                audit_log.get(), nullptr, clock, std::nullopt, nullptr});
    if (!svc.ok()) return svc.status();
    service = std::move(*svc);
    return Status::Ok();
  }

  // The machine stops now; then the disks keep what was durable (with `seed`, plus a random
  // part of what was not) and the power comes back.
  void Cut(std::optional<uint64_t> seed) {
    power->Cut();
    service.reset();
    audit_log.reset();
    store.reset();
    keyring.reset();
    dropped_bytes += fs->DropUnsynced(seed).bytes_dropped;
    keyring_writes_lost += keyring_files.DropUnsynced(seed);
    fs->Clear();
    power->Restore();
  }

  // Opens after a cut; a cut during Open itself is retried, as a machine that boots again.
  void Reboot() {
    for (int attempt = 0; attempt < 3; ++attempt) {
      Status s = Open();
      if (s.ok()) return;
      ADD_FAILURE() << "the vault does not open after a power cut: " << s.ToString();
      Cut(std::nullopt);
    }
  }

  // Rotates the master key straight in the keyring (the service's rotation needs a key source).
  // A rotation that failed may still have taken effect on disk (crypto/keyring.h: keep the old
  // key until a later call succeeds), so every key made is kept for OpenEitherKey.
  Status Rotate() {
    auto next = crypto::SecretBytes::Random(32);
    other_keys_.push_back(Copy(next));
    Status s = keyring->Rotate(Copy(next));
    if (keyring->SealedUnder(next)) {
      other_keys_.back() = std::move(master_);
      master_ = std::move(next);
    }
    return s;
  }
  // After a cut in a rotation: opens with the key the keyring is sealed under, which must be
  // the one before or the one of the interrupted rotation.
  Status OpenEitherKey() {
    Status s = Open();
    for (size_t i = other_keys_.size(); i > 0 && !s.ok() && other_keys_.size() - i < 2; --i) {
      if (s.message().find("master key does not match") == std::string::npos) return s;
      std::swap(master_, other_keys_[i - 1]);
      s = Open();
    }
    return s;
  }

  phivault::testing::TempDir dir;
  Config config;
  std::function<int64_t()> clock;
  std::shared_ptr<phivault::testing::PowerSwitch> power =
      std::make_shared<phivault::testing::PowerSwitch>();
  std::shared_ptr<storage::testing::PowerCutFs> fs =
      std::make_shared<storage::testing::PowerCutFs>(power);
  crypto::testing::PowerCutKeyringFiles keyring_files{power};
  std::unique_ptr<crypto::Keyring> keyring;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<storage::AuditLog> audit_log;
  std::unique_ptr<VaultService> service;
  uint64_t dropped_bytes = 0;
  uint64_t keyring_writes_lost = 0;

 private:
  static crypto::SecretBytes Copy(const crypto::SecretBytes& key) {
    return crypto::SecretBytes::CopyFrom(key.view(crypto::InsecureSecretKeyAccess::Get()),
                                         crypto::InsecureSecretKeyAccess::Get());
  }
  crypto::SecretBytes master_;
  std::vector<crypto::SecretBytes> other_keys_;
  bool created_ = false;
};

// What clients were told, and what they were not told the outcome of.
struct OpLog {
  struct Op {
    std::string request_id;
    std::string action;  // record.create, record.amend, record.read
    std::string record_id;
    uint32_t version = 0;
  };
  struct Pending {  // a write whose outcome the client never learnt
    std::string request_id;
    std::string patient;    // creates
    std::string record_id;  // amends
    uint32_t version = 0;   // the version it would have made
    std::string content;
  };
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> versions;  // record id -> content of each
  std::map<std::string, std::string> patient_of;
  std::vector<Op> acked;
  std::vector<Pending> pending;
};

class PowerLossTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(NewVault()); }
  // A fresh vault in a new directory (the old one is removed).
  void NewVault() {
    vault_.reset();
    vault_ = std::make_unique<PowerCutVault>();
    vault_->clock = [this] { return now_us_.load(); };
    Status s = vault_->Open();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Every acknowledged version reads back identically; each pending write is absent or complete
  // (and then audited); the audit log verifies and holds every acknowledged operation.
  void CheckVault(OpLog& log, const std::string& when) {
    SCOPED_TRACE(when);
    auto& svc = *vault_->service;
    for (const auto& [id, contents] : log.versions) {
      for (uint32_t v = 1; v <= contents.size(); ++v) {
        auto r = svc.ReadRecord(Physician("check"), id, v, true);
        ASSERT_TRUE(r.ok()) << "acknowledged " << id << "@" << v << ": " << r.status().ToString();
        ASSERT_EQ(r->content, contents[v - 1]) << "acknowledged " << id << "@" << v << " altered";
      }
    }
    std::map<std::string, std::vector<storage::AuditEntry>> by_request;
    ASSERT_TRUE(storage::ScanAuditEntries(*vault_->store, 1, vault_->audit_log->ledger().size(),
                                          [&](const storage::AuditEntry& e, std::string_view) {
                                            by_request[e.request_id].push_back(e);
                                            return true;
                                          })
                    .ok());
    auto audited = [&](const std::string& request_id, const std::string& action,
                       const std::string& ref) {
      for (const auto& e : by_request[request_id]) {
        if (e.action == action && e.outcome == "success" &&
            std::find(e.records.begin(), e.records.end(), ref) != e.records.end()) {
          return true;
        }
      }
      return false;
    };
    for (const auto& op : log.acked) {
      ASSERT_TRUE(
          audited(op.request_id, op.action, op.record_id + "@" + std::to_string(op.version)))
          << "no audit entry for acknowledged " << op.action << " " << op.request_id;
    }
    for (const auto& p : log.pending) {
      if (!p.patient.empty()) {
        auto list = svc.ListRecords(Physician("check"), p.patient);
        ASSERT_TRUE(list.ok()) << list.status().ToString();
        ASSERT_LE(list->records.size(), 1u);
        if (list->records.empty()) continue;
        const auto& meta = list->records[0];
        auto r = svc.ReadRecord(Physician("check"), meta.record_id, 1, true);
        ASSERT_TRUE(r.ok()) << "unacknowledged create half there: " << r.status().ToString();
        ASSERT_EQ(r->content, p.content) << "unacknowledged create stored altered";
        ASSERT_TRUE(audited(p.request_id, "record.create", meta.record_id + "@1"))
            << "unacknowledged create stored without its audit entry";
        // From now on it is part of the state every later check holds the vault to.
        log.versions[meta.record_id] = {p.content};
        log.patient_of[meta.record_id] = p.patient;
      } else {
        auto latest = svc.ReadRecord(Physician("check"), p.record_id, std::nullopt, false);
        ASSERT_TRUE(latest.ok()) << latest.status().ToString();
        auto& contents = log.versions[p.record_id];
        if (latest->meta.version == contents.size()) continue;
        ASSERT_EQ(latest->meta.version, p.version) << "unacknowledged amend made another version";
        auto r = svc.ReadRecord(Physician("check"), p.record_id, p.version, true);
        ASSERT_TRUE(r.ok()) << "unacknowledged amend half there: " << r.status().ToString();
        ASSERT_EQ(r->content, p.content) << "unacknowledged amend stored altered";
        ASSERT_TRUE(
            audited(p.request_id, "record.amend", p.record_id + "@" + std::to_string(p.version)))
            << "unacknowledged amend stored without its audit entry";
        contents.push_back(p.content);
      }
    }
    log.pending.clear();
    ASSERT_NO_FATAL_FAILURE(CheckAuditVerifies());
  }

  void CheckAuditVerifies() {
    std::string exported;
    ASSERT_TRUE(vault_->service
                    ->ExportAudit(Officer(), {},
                                  [&](std::string_view chunk) {
                                    exported.append(chunk);
                                    return true;
                                  })
                    .ok());
    auto key = vault_->service->AuditVerifierKey(Officer());
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    auto verifier = crypto::ParseNoteVerifierKey(*key);
    ASSERT_TRUE(verifier.ok());
    std::istringstream in(exported);
    auto report = storage::VerifyAuditExport(in, *verifier);
    ASSERT_TRUE(report.ok()) << report.status().ToString();
    ASSERT_TRUE(report->ok) << "the audit log does not verify: "
                            << (report->problem ? report->problem->message : "?");
  }

  storage::RecordMetadata MustCreate(OpLog& log, const std::string& patient,
                                     const std::string& encounter, const std::string& content) {
    auto m = vault_->service->CreateRecord(
        Physician("setup-" + patient),
        {patient, "clinical_note", "text/plain", encounter, "Dr. Synthetic", content});
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    if (!m.ok()) return {};
    log.versions[m->record_id] = {content};
    log.patient_of[m->record_id] = patient;
    log.acked.push_back({"setup-" + patient, "record.create", m->record_id, 1});
    return *m;
  }

  StatusOr<SweepResult> Sweep() {
    SweepRequest req;
    req.dry_run = false;
    auto admin = Admin();
    return vault_->service->Sweep(&admin, req, nullptr);
  }
  size_t EntriesFor(std::string_view action, const std::string& record_id) {
    size_t n = 0;
    EXPECT_TRUE(storage::ScanAuditEntries(*vault_->store, 1, vault_->audit_log->ledger().size(),
                                          [&](const storage::AuditEntry& e, std::string_view) {
                                            if (e.action != action) return true;
                                            for (const auto& r : e.records) {
                                              if (r.rfind(record_id, 0) == 0) {
                                                ++n;
                                                break;
                                              }
                                            }
                                            return true;
                                          })
                    .ok());
    return n;
  }
  std::set<std::string> DestroyedEpochs() {
    std::set<std::string> out;
    for (const auto& e : vault_->keyring->ListEpochs()) {
      if (e.destroyed) out.insert(e.id);
    }
    return out;
  }
  // The changes (writes, syncs, creates, renames, ...) that `fn` makes on the vault's disks.
  template <typename Fn>
  uint64_t ChangesOf(Fn&& fn) {
    const uint64_t before = vault_->power->changes();
    fn();
    return vault_->power->changes() - before;
  }
  // The cut points to try among `n` changes: every one in the long mode, else `few` spread
  // evenly (the first and the last included).
  static std::vector<uint64_t> CutPoints(uint64_t n, uint64_t few) {
    std::vector<uint64_t> out;
    if (EnvCount("PHIVAULT_POWER_CUTS", 0) > 0 || n <= few) {
      for (uint64_t i = 0; i < n; ++i) out.push_back(i);
      return out;
    }
    for (uint64_t i = 0; i < few; ++i) out.push_back(i * (n - 1) / (few - 1));
    return out;
  }

  std::atomic<int64_t> now_us_{kStartUs};
  std::unique_ptr<PowerCutVault> vault_;
};

// Clients create, amend and read at once until the power goes at a random change; after each
// reboot the checks above hold for everything acknowledged in every cycle so far.
TEST_F(PowerLossTest, RandomCutsUnderConcurrentRequestsLoseNothingAcknowledged) {
  const uint64_t cuts = EnvCount("PHIVAULT_POWER_CUTS", 8);
  const uint64_t seed = EnvCount("PHIVAULT_POWER_SEED", 20261202);
  std::mt19937_64 rng(seed);
  OpLog log;
  uint64_t acked_total = 0;
  for (uint64_t cycle = 0; cycle < cuts; ++cycle) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " cycle " + std::to_string(cycle));
    // Each cycle's records have an encounter date of their own, hence a retention day and an
    // epoch key of their own: the cycle's first create updates the keyring.
    char encounter[11];
    std::snprintf(encounter, sizeof encounter, "2024-%02d-%02d",
                  static_cast<int>(1 + cycle / 28 % 12), static_cast<int>(1 + cycle % 28));
    vault_->power->CutAfter(1 + rng() % 400);
    std::atomic<uint64_t> counter{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([&, t, encounter, client_seed = rng()] {
        std::mt19937_64 r(client_seed);
        std::vector<std::string> mine;
        while (!vault_->power->off()) {
          const std::string rid = "c" + std::to_string(cycle) + "-t" + std::to_string(t) + "-" +
                                  std::to_string(counter++);
          const int pick = static_cast<int>(r() % 10);
          if (pick < 4 || mine.empty()) {
            const std::string patient = "synthetic-power-" + rid;
            const std::string content =
                "synthetic note " + rid + " " + std::string(r() % 3000, 'x');
            {
              std::lock_guard<std::mutex> lock(log.mu);
              log.pending.push_back({rid, patient, "", 1, content});
            }
            auto m = vault_->service->CreateRecord(
                Physician(rid),
                {patient, "clinical_note", "text/plain", encounter, "Dr. Synthetic", content});
            if (!m.ok()) break;
            std::lock_guard<std::mutex> lock(log.mu);
            std::erase_if(log.pending,
                          [&](const OpLog::Pending& p) { return p.request_id == rid; });
            log.versions[m->record_id] = {content};
            log.patient_of[m->record_id] = patient;
            log.acked.push_back({rid, "record.create", m->record_id, 1});
            mine.push_back(m->record_id);
          } else if (pick < 7) {
            const std::string& id = mine[r() % mine.size()];
            const std::string content = "synthetic amendment " + rid;
            uint32_t next = 0;
            {
              std::lock_guard<std::mutex> lock(log.mu);
              next = static_cast<uint32_t>(log.versions[id].size() + 1);
              log.pending.push_back({rid, "", id, next, content});
            }
            auto m = vault_->service->AmendRecord(Physician(rid), id,
                                                  {content, "synthetic correction", {}, {}, {}});
            if (!m.ok()) break;
            std::lock_guard<std::mutex> lock(log.mu);
            std::erase_if(log.pending,
                          [&](const OpLog::Pending& p) { return p.request_id == rid; });
            EXPECT_EQ(m->version, next);
            log.versions[id].push_back(content);
            log.acked.push_back({rid, "record.amend", id, m->version});
          } else if (pick < 9) {
            const std::string& id = mine[r() % mine.size()];
            auto got = vault_->service->ReadRecord(Physician(rid), id, std::nullopt, true);
            if (!got.ok()) break;
            std::lock_guard<std::mutex> lock(log.mu);
            EXPECT_EQ(got->content, log.versions[id].back());
            log.acked.push_back({rid, "record.read", id, got->meta.version});
          } else {
            // What RocksDB does by itself when a memtable fills: table files, a new MANIFEST
            // entry, a new WAL, directory syncs — all inside the cut window.
            (void)vault_->store->Flush();
          }
        }
      });
    }
    for (auto& c : clients) c.join();
    acked_total = log.acked.size();
    vault_->Cut(cycle % 2 == 0 ? std::optional<uint64_t>(rng()) : std::nullopt);
    ASSERT_NO_FATAL_FAILURE(vault_->Reboot());
    ASSERT_NO_FATAL_FAILURE(CheckVault(log, "after cut " + std::to_string(cycle)));
  }
  std::cout << "power cuts: " << cuts << ", acknowledged operations checked: " << acked_total
            << ", records: " << log.versions.size()
            << ", unsynced bytes dropped: " << vault_->dropped_bytes
            << ", keyring writes lost or torn: " << vault_->keyring_writes_lost << "\n";
  EXPECT_GT(acked_total, cuts);
}

// A sweep cut at any of its changes: after the reboot the next sweep completes; the expired
// record is destroyed exactly once (one shred entry), the unexpired and the held one keep their
// bytes, an epoch key once destroyed is never back, and the content is in no file.
TEST_F(PowerLossTest, ACutAnywhereInASweepIsCompletedByTheNextSweep) {
  std::vector<std::string> fingerprints;
  auto setup = [&](OpLog& log) -> std::string {
    const auto gone =
        MustCreate(log, "synthetic-sweep-gone", "2011-01-01", "synthetic sweep note gone");
    auto fp =
        storage::RecordRepository(*vault_->store, *vault_->keyring).Fingerprints(gone.record_id);
    EXPECT_TRUE(fp.ok());
    if (fp.ok()) fingerprints = *fp;
    MustCreate(log, "synthetic-sweep-held", "2011-01-01", "synthetic sweep note held");
    MustCreate(log, "synthetic-sweep-kept", "2026-01-01", "synthetic sweep note kept");
    PlaceHoldRequest hold;
    hold.patient_id = "synthetic-sweep-held";
    hold.matter = "Synthetic matter";
    hold.reason = "preservation letter";
    EXPECT_TRUE(vault_->service->PlaceHold(Admin(), hold).ok());
    log.versions.erase(gone.record_id);
    now_us_ += 3LL * 365 * 86400 * 1000000;
    return gone.record_id;
  };
  uint64_t n = 0;
  {
    OpLog log;
    setup(log);
    n = ChangesOf([&] { ASSERT_TRUE(Sweep().ok()); });
  }
  ASSERT_GT(n, 5u);
  uint64_t cuts = 0;
  for (uint64_t k : CutPoints(n + 1, 6)) {
    SCOPED_TRACE("cut after change " + std::to_string(k) + " of " + std::to_string(n));
    now_us_ = kStartUs;
    ASSERT_NO_FATAL_FAILURE(NewVault());
    OpLog log;
    const std::string gone = setup(log);
    vault_->power->CutAfter(k);
    const bool acked = Sweep().ok();
    vault_->Cut(k % 2 == 1 ? std::optional<uint64_t>(k) : std::nullopt);
    ++cuts;
    ASSERT_NO_FATAL_FAILURE(vault_->Reboot());
    const auto destroyed_before = DestroyedEpochs();
    if (acked) {
      EXPECT_EQ(vault_->service->ReadRecord(Physician(), gone, std::nullopt, true).status().code(),
                StatusCode::kFailedPrecondition);
    }
    auto next = Sweep();
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    EXPECT_EQ(vault_->service->ReadRecord(Physician(), gone, std::nullopt, true).status().code(),
              StatusCode::kFailedPrecondition);
    EXPECT_EQ(EntriesFor("record.shred", gone), 1u);
    EXPECT_EQ(vault_->service->ListCertificates(Officer())->size(), 1u);
    ASSERT_NO_FATAL_FAILURE(CheckVault(log, "after the completing sweep"));
    const auto destroyed_after = DestroyedEpochs();
    EXPECT_TRUE(std::includes(destroyed_after.begin(), destroyed_after.end(),
                              destroyed_before.begin(), destroyed_before.end()));
    EXPECT_FALSE(destroyed_after.empty());
    // One more cut with nothing going on, and a reboot: no destroyed key comes back.
    vault_->Cut(std::nullopt);
    ASSERT_NO_FATAL_FAILURE(vault_->Reboot());
    const auto destroyed_later = DestroyedEpochs();
    EXPECT_TRUE(std::includes(destroyed_later.begin(), destroyed_later.end(),
                              destroyed_after.begin(), destroyed_after.end()));
    EXPECT_EQ(vault_->service->ReadRecord(Physician(), gone, std::nullopt, true).status().code(),
              StatusCode::kFailedPrecondition);
    ASSERT_FALSE(fingerprints.empty());
    auto found = storage::FindInFiles(vault_->dir.Sub("db"), fingerprints);
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    EXPECT_TRUE(found->empty()) << "the destroyed record's bytes are still in a file";
  }
  std::cout << "sweep: " << n << " changes, " << cuts << " cuts\n";
}

// A backup cut at any of its changes: the vault is intact after the reboot, a backup that was
// acknowledged verifies, one that was not is either complete or fails verification, and the
// next backup succeeds.
TEST_F(PowerLossTest, ACutAnywhereInABackupLeavesTheVaultIntactAndNoPartialBackupVerifies) {
  OpLog log;
  for (int i = 0; i < 6; ++i) {
    MustCreate(log, "synthetic-backup-" + std::to_string(i), "2026-10-01",
               "synthetic backup note " + std::to_string(i) + std::string(5000, 'b'));
  }
  // Backups go outside the data directory (the service refuses one inside it).
  phivault::testing::TempDir backup_root;
  const std::string backups = backup_root.Sub("ref");
  uint64_t n = 0;
  n = ChangesOf([&] {
    auto made = vault_->service->CreateBackup(Admin(), {backups});
    ASSERT_TRUE(made.ok()) << made.status().ToString();
  });
  ASSERT_GT(n, 3u);
  auto key = vault_->service->AuditVerifierKey(Officer());
  ASSERT_TRUE(key.ok());
  auto verifier = crypto::ParseNoteVerifierKey(*key);
  ASSERT_TRUE(verifier.ok());
  uint64_t cuts = 0, partial = 0;
  for (uint64_t k : CutPoints(n + 1, 6)) {
    SCOPED_TRACE("cut after change " + std::to_string(k) + " of " + std::to_string(n));
    const std::string dir = backup_root.Sub("cut-" + std::to_string(k));
    vault_->power->CutAfter(k);
    const bool acked = vault_->service->CreateBackup(Admin(), {dir}).ok();
    vault_->Cut(k % 2 == 1 ? std::optional<uint64_t>(k) : std::nullopt);
    ++cuts;
    ASSERT_NO_FATAL_FAILURE(vault_->Reboot());
    ASSERT_NO_FATAL_FAILURE(CheckVault(log, "after a cut in a backup"));
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) {
      EXPECT_FALSE(acked) << "an acknowledged backup is gone";
      continue;
    }
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (!entry.is_directory()) continue;
      auto v = storage::VerifyBackup(entry.path().string(), *verifier);
      const bool ok = v.ok() && v->ok();
      if (acked) {
        EXPECT_TRUE(ok) << "an acknowledged backup does not verify";
      }
      if (!ok) ++partial;
    }
  }
  auto again = vault_->service->CreateBackup(Admin(), {backup_root.Sub("after")});
  EXPECT_TRUE(again.ok()) << again.status().ToString();
  std::cout << "backup: " << n << " changes, " << cuts << " cuts, " << partial
            << " partial backups, each refused by verify\n";
}

// A keyring update cut at any of its writes — a new epoch key made for a record, and a master
// key rotation: the keyring opens as the old or the new one (never torn), with the old or the
// new master key, and every acknowledged record reads back.
TEST_F(PowerLossTest, ACutAnywhereInAKeyringUpdateLeavesTheOldOrTheNewKeyring) {
  OpLog log;
  MustCreate(log, "synthetic-keyring-0", "2026-10-01", "synthetic keyring note 0");
  // Records are sealed under the epoch of their retention day, so each encounter date of its own
  // makes the create add an epoch key to the keyring first.
  auto encounter = [](uint64_t i) {
    char date[11];
    std::snprintf(date, sizeof date, "2025-%02d-%02d", static_cast<int>(1 + (i / 28) % 12),
                  static_cast<int>(1 + i % 28));
    return std::string(date);
  };
  uint64_t n_create = ChangesOf(
      [&] { MustCreate(log, "synthetic-keyring-1", encounter(200), "synthetic keyring note 1"); });
  uint64_t cuts = 0;
  for (uint64_t k = 0; k <= n_create; ++k) {
    SCOPED_TRACE("create: cut after change " + std::to_string(k));
    const std::string rid = "keyring-create-" + std::to_string(k);
    const std::string patient = "synthetic-keyring-cut-" + std::to_string(k);
    const std::string content = "synthetic keyring cut note " + std::to_string(k);
    const uint64_t generation = vault_->keyring->generation();
    log.pending.push_back({rid, patient, "", 1, content});
    vault_->power->CutAfter(k);
    auto m = vault_->service->CreateRecord(
        Physician(rid),
        {patient, "clinical_note", "text/plain", encounter(k), "Dr. Synthetic", content});
    if (m.ok()) {
      log.pending.pop_back();
      log.versions[m->record_id] = {content};
      log.acked.push_back({rid, "record.create", m->record_id, 1});
    }
    vault_->Cut(k % 2 == 1 ? std::optional<uint64_t>(k) : std::nullopt);
    ++cuts;
    ASSERT_NO_FATAL_FAILURE(vault_->Reboot());
    const uint64_t after = vault_->keyring->generation();
    EXPECT_TRUE(after == generation || after == generation + 1) << generation << " -> " << after;
    ASSERT_NO_FATAL_FAILURE(CheckVault(log, "after a cut in a create"));
  }
  uint64_t n_rotate = ChangesOf([&] { ASSERT_TRUE(vault_->Rotate().ok()); });
  ASSERT_GT(n_rotate, 3u);
  for (uint64_t k = 0; k <= n_rotate; ++k) {
    SCOPED_TRACE("rotation: cut after change " + std::to_string(k));
    const uint64_t generation = vault_->keyring->generation();
    vault_->power->CutAfter(k);
    (void)vault_->Rotate();
    vault_->Cut(k % 2 == 1 ? std::optional<uint64_t>(k) : std::nullopt);
    ++cuts;
    Status opened = vault_->OpenEitherKey();
    ASSERT_TRUE(opened.ok()) << "the keyring opens under neither key: " << opened.ToString();
    const uint64_t after = vault_->keyring->generation();
    EXPECT_TRUE(after == generation || after == generation + 1) << generation << " -> " << after;
    ASSERT_NO_FATAL_FAILURE(CheckVault(log, "after a cut in a rotation"));
  }
  std::cout << "keyring: " << n_create << " changes per create with a new epoch, " << n_rotate
            << " per rotation, " << cuts << " cuts, " << vault_->keyring_writes_lost
            << " keyring writes lost or torn\n";
}

// A disk whose syncs and writes fail: each failed request is a 5xx problem, nothing failed is
// acknowledged, the vault takes requests again by itself once the fault clears (no restart), and
// after a cut everything acknowledged is there.
TEST_F(PowerLossTest, FailingStorageFailsRequestsCleanlyAndTheVaultRecoversByItself) {
  OpLog log;
  MustCreate(log, "synthetic-failing-0", "2026-10-01", "synthetic failing note 0");
  std::map<int, int> problems;  // HTTP status -> count
  std::mutex mu;
  for (uint32_t kind : {static_cast<uint32_t>(FsOp::kSync), static_cast<uint32_t>(FsOp::kAppend),
                        FsOp::kSync | FsOp::kAppend}) {
    vault_->fs->Fail({.ops = kind, .probability = 0.2, .seed = kind});
    std::vector<std::thread> clients;
    std::atomic<int> counter{0};
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([&, t] {
        for (int i = 0; i < 40; ++i) {
          const std::string rid =
              "failing-" + std::to_string(kind) + "-" + std::to_string(t) + "-" + std::to_string(i);
          const std::string patient = "synthetic-failing-" + rid;
          const std::string content = "synthetic failing note " + rid;
          {
            std::lock_guard<std::mutex> lock(mu);
            log.pending.push_back({rid, patient, "", 1, content});
          }
          ++counter;
          auto m = vault_->service->CreateRecord(
              Physician(rid),
              {patient, "clinical_note", "text/plain", "2026-10-01", "Dr. Synthetic", content});
          std::lock_guard<std::mutex> lock(mu);
          if (!m.ok()) {
            const Problem p = ProblemFromStatus(m.status());
            ++problems[p.status];
            EXPECT_GE(p.status, 500) << m.status().ToString();
            continue;
          }
          std::erase_if(log.pending, [&](const OpLog::Pending& p) { return p.request_id == rid; });
          log.versions[m->record_id] = {content};
          log.acked.push_back({rid, "record.create", m->record_id, 1});
        }
      });
    }
    for (auto& c : clients) c.join();
    EXPECT_GT(vault_->fs->failures_injected(), 0u);
    vault_->fs->Clear();
    // Recovers by itself: within the backoff, requests succeed again without a restart.
    bool recovered = false;
    for (int i = 0; i < 100 && !recovered; ++i) {
      auto m = vault_->service->CreateRecord(
          Physician("recover-" + std::to_string(kind) + "-" + std::to_string(i)),
          {"synthetic-failing-recover", "clinical_note", "text/plain", "2026-10-01",
           "Dr. Synthetic", "synthetic recovery note"});
      recovered = m.ok();
      if (m.ok()) {
        log.versions[m->record_id] = {"synthetic recovery note"};
        log.acked.push_back({"recover-" + std::to_string(kind) + "-" + std::to_string(i),
                             "record.create", m->record_id, 1});
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    ASSERT_TRUE(recovered) << "the vault did not recover by itself after the fault cleared";
    ASSERT_NO_FATAL_FAILURE(CheckVault(log, "after the fault cleared, before a restart"));
    vault_->Cut(kind);
    ASSERT_NO_FATAL_FAILURE(vault_->Reboot());
    ASSERT_NO_FATAL_FAILURE(CheckVault(log, "after a cut following the faults"));
  }
  for (const auto& [status, count] : problems) {
    std::cout << "failing storage: " << count << " requests failed with " << status << "\n";
  }
  EXPECT_FALSE(problems.empty());
}

}  // namespace
}  // namespace phivault::daemon
