// The access policy as a user of the service meets it: break-glass windows that expire and are
// reviewed, denials that read nothing and name their rule, listings that withhold, policy reloads
// that keep a good policy in force, restrictions, the right-of-access export, patient requests and
// confidential contacts. A real store, keyring and verifiable audit log; a fake clock moves time.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "daemon/service.h"
#include "policies/access_policy.h"
#include "policies/time_format.h"
#include "storage/audit_log.h"
#include "storage/records.h"
#include "tests/testing/in_process_vault.h"

namespace phivault::daemon {
namespace {

constexpr int64_t kMinuteUs = 60LL * 1000000;
constexpr int64_t kStartUs = 1'793'000'000LL * 1000000;  // 2026-10-26T07:33:20Z, a fixed "now"

class PolicyServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vault_.clock = [this] { return now_us_.load(); };
    ASSERT_NO_FATAL_FAILURE(Open());
  }

  void Open() {
    ASSERT_NO_FATAL_FAILURE(vault_.Open());
    store_ = vault_.store.get();
    ledger_ = &vault_.ledger();
    service_ = vault_.service.get();
  }

  // A new service on the same store, keyring and audit log: what a daemon restart sees.
  void RestartService() {
    vault_.service.reset();
    service_ = nullptr;
    auto opened =
        NewVaultService({&vault_.config, store_, vault_.faulty_ledger.get(), vault_.keyring.get(),
                         vault_.audit_log.get(), vault_.policy, vault_.clock});
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    vault_.service = std::move(*opened);
    service_ = vault_.service.get();
  }

  void Advance(int64_t us) { now_us_ += us; }

  static RequestContext Ctx(std::string user, std::string role, std::string purpose,
                            std::vector<std::string> actions = KnownActions()) {
    RequestContext ctx;
    ctx.request_id = "req";
    ctx.principal.name = "test-app";
    ctx.principal.actions = std::move(actions);
    ctx.principal.roles = DefaultRoles();
    ctx.user = std::move(user);
    ctx.role = std::move(role);
    ctx.purpose = std::move(purpose);
    return ctx;
  }
  static RequestContext Physician(std::string purpose = "TREAT") {
    return Ctx("dr.synthetic", "physician", std::move(purpose));
  }
  static RequestContext Officer() { return Ctx("co.synthetic", "compliance_officer", "HOPERAT"); }
  static RequestContext FrontDesk(std::string purpose = "HOPERAT") {
    return Ctx("fd.synthetic", "front_office", std::move(purpose));
  }
  static RequestContext Billing(std::string purpose = "HPAYMT") {
    return Ctx("bill.synthetic", "billing", std::move(purpose));
  }

  std::string Create(const RequestContext& ctx, const std::string& patient,
                     const std::string& category, const std::string& content) {
    auto m = service_->CreateRecord(
        ctx, {patient, category, "text/plain", "2026-10-01", "Dr. Synthetic", content});
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? m->record_id : "";
  }

  storage::AuditEntry Entry(uint64_t seq) {
    auto e = storage::ReadAuditEntry(*store_, seq);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? *e : storage::AuditEntry{};
  }
  storage::AuditEntry LastEntry() { return Entry(ledger_->size()); }

  std::string BlindId(const std::string& patient) {
    return crypto::HexEncode(
        storage::RecordRepository(*store_, *vault_.keyring).PatientBlindId(patient));
  }

  size_t CountKeys(storage::Cf cf) {
    size_t n = 0;
    EXPECT_TRUE(store_
                    ->Scan(cf, "", "\xff\xff\xff\xff",
                           [&](std::string_view, std::string_view) {
                             ++n;
                             return true;
                           })
                    .ok());
    return n;
  }

  // Flips one byte of every stored record content value, so that decrypting any of it fails.
  void TamperAllContent() {
    storage::WriteBatch tamper;
    ASSERT_TRUE(store_
                    ->Scan(storage::Cf::kRecords, "c", "d",
                           [&](std::string_view key, std::string_view value) {
                             std::string v(value);
                             v[v.size() / 2] ^= 0x01;
                             tamper.Put(storage::Cf::kRecords, std::string(key), v);
                             return true;
                           })
                    .ok());
    ASSERT_FALSE(tamper.empty());
    ASSERT_TRUE(store_->Write(tamper, true).ok());
  }

  std::vector<BreakGlassWindow> Windows(bool pending_only) {
    auto w = service_->ReviewBreakGlass(Officer(), pending_only);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    return w.ok() ? *w : std::vector<BreakGlassWindow>{};
  }

  StatusOr<storage::Record> Read(const RequestContext& ctx, const std::string& id) {
    return service_->ReadRecord(ctx, id, std::nullopt, /*with_content=*/true);
  }

  std::atomic<int64_t> now_us_{kStartUs};
  testing::InProcessVault vault_;
  storage::Store* store_ = nullptr;
  storage::Ledger* ledger_ = nullptr;
  VaultService* service_ = nullptr;
};

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// ---- Break-glass ----------------------------------------------------------------------------

TEST_F(PolicyServiceTest, BreakGlassWindowOpensWithAReasonExpiresAndIsSignedOffOnce) {
  const std::string patient = "synthetic-bg-0001";
  const std::string id = Create(Physician(), patient, "clinical_note", "allergic to penicillin");

  RequestContext emergency = Physician("ETREAT");
  EXPECT_EQ(Read(emergency, id).status().code(), StatusCode::kPermissionDenied)
      << "without a reason, an emergency purpose opens nothing";
  emergency.break_glass_reason = "unconscious in the ED, no history available";
  auto first = Read(emergency, id);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->content, "allergic to penicillin");
  const storage::AuditEntry read = LastEntry();
  EXPECT_EQ(read.action, "record.read");
  EXPECT_EQ(read.outcome, "success");
  EXPECT_TRUE(read.break_glass);
  EXPECT_EQ(read.reason, "emergency-access");
  const storage::AuditEntry start = Entry(ledger_->size() - 1);
  EXPECT_EQ(start.action, "breakglass.start");
  EXPECT_EQ(start.reason, "emergency-access");
  EXPECT_TRUE(start.break_glass);
  EXPECT_EQ(start.patient_bid, BlindId(patient));
  ASSERT_EQ(start.records.size(), 1u);
  const std::string window_id = start.records[0].substr(std::string("window:").size());

  // Within the window the reason need not be repeated, and no second window is opened.
  Advance(30 * kMinuteUs);
  RequestContext within = Physician("ETREAT");
  const uint64_t before = ledger_->size();
  ASSERT_TRUE(Read(within, id).ok());
  EXPECT_EQ(ledger_->size(), before + 1);
  EXPECT_TRUE(LastEntry().break_glass);

  EXPECT_TRUE(Windows(/*pending_only=*/true).empty()) << "an open window is not pending";
  auto all = Windows(/*pending_only=*/false);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id, window_id);
  EXPECT_EQ(StatusOf(all[0]), WindowStatus::kOpen);
  EXPECT_EQ(all[0].accesses, 2u);
  EXPECT_EQ(all[0].expires_us, kStartUs + 60 * kMinuteUs) << "the default policy's 60 minutes";
  EXPECT_EQ(service_->SignOffBreakGlass(Officer(), window_id, "too early").status().code(),
            StatusCode::kFailedPrecondition);

  // Past the window: the sweep writes the end entry, linked to the patient.
  Advance(31 * kMinuteUs);
  ASSERT_TRUE(service_->CloseExpiredBreakGlass().ok());
  const storage::AuditEntry end = LastEntry();
  EXPECT_EQ(end.action, "breakglass.end");
  EXPECT_EQ(end.reason, "expired");
  EXPECT_EQ(end.user, "dr.synthetic");
  EXPECT_TRUE(end.break_glass);
  EXPECT_EQ(end.patient_bid, BlindId(patient));
  EXPECT_EQ(end.records, std::vector<std::string>{"window:" + window_id});
  const uint64_t after_sweep = ledger_->size();
  ASSERT_TRUE(service_->CloseExpiredBreakGlass().ok());
  EXPECT_EQ(ledger_->size(), after_sweep) << "a window ends once";

  auto denied = Read(within, id);
  EXPECT_EQ(denied.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(LastEntry().outcome, "denied");
  EXPECT_FALSE(LastEntry().break_glass);

  auto pending = Windows(/*pending_only=*/true);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].id, window_id);
  EXPECT_EQ(StatusOf(pending[0]), WindowStatus::kPending);
  EXPECT_EQ(pending[0].accesses, 2u);
  ASSERT_TRUE(pending[0].closed_us.has_value());
  EXPECT_EQ(*pending[0].closed_us, kStartUs + 60 * kMinuteUs) << "closed when it expired";

  auto signed_off = service_->SignOffBreakGlass(Officer(), window_id, "justified: ED admission");
  ASSERT_TRUE(signed_off.ok()) << signed_off.status().ToString();
  EXPECT_EQ(signed_off->first.signed_off_by, "co.synthetic");
  EXPECT_EQ(signed_off->second, ledger_->size());
  EXPECT_EQ(LastEntry().action, "audit.sign-off");
  EXPECT_EQ(LastEntry().patient_bid, BlindId(patient));
  EXPECT_EQ(service_->SignOffBreakGlass(Officer(), window_id, "again").status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Windows(/*pending_only=*/true).empty());
  auto reviewed = Windows(/*pending_only=*/false);
  ASSERT_EQ(reviewed.size(), 1u);
  EXPECT_EQ(StatusOf(reviewed[0]), WindowStatus::kSignedOff);
  EXPECT_EQ(service_->SignOffBreakGlass(Officer(), "no-such-window", "x").status().code(),
            StatusCode::kNotFound);
}

TEST_F(PolicyServiceTest, BreakGlassWindowsSurviveARestartAndExpireWhileDown) {
  const std::string patient = "synthetic-bg-0002";
  const std::string id = Create(Physician(), patient, "lab_result", "K+ 6.8 mmol/L");
  RequestContext emergency = Physician("ETREAT");
  emergency.break_glass_reason = "arrhythmia on arrival";
  ASSERT_TRUE(Read(emergency, id).ok());

  ASSERT_NO_FATAL_FAILURE(RestartService());
  Advance(10 * kMinuteUs);
  ASSERT_TRUE(Read(Physician("ETREAT"), id).ok()) << "the window is still open after a restart";
  auto open = Windows(/*pending_only=*/false);
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].accesses, 2u) << "accesses before and after the restart are counted";

  // The window expires while the service is down: the start-up closes it.
  Advance(2 * 60 * kMinuteUs);
  ASSERT_NO_FATAL_FAILURE(RestartService());
  EXPECT_EQ(LastEntry().action, "breakglass.end");
  EXPECT_EQ(LastEntry().patient_bid, BlindId(patient));
  auto pending = Windows(/*pending_only=*/true);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].id, open[0].id);
  EXPECT_EQ(Read(Physician("ETREAT"), id).status().code(), StatusCode::kPermissionDenied);
}

TEST_F(PolicyServiceTest, ExpiredWindowsAreAllClosedOnceTheAuditLogIsBack) {
  const std::string a = Create(Physician(), "synthetic-bg-0003", "clinical_note", "a");
  const std::string b = Create(Physician(), "synthetic-bg-0004", "clinical_note", "b");
  RequestContext emergency = Physician("ETREAT");
  emergency.break_glass_reason = "mass casualty incident";
  ASSERT_TRUE(Read(emergency, a).ok());
  Advance(kMinuteUs);
  ASSERT_TRUE(Read(emergency, b).ok());
  Advance(2 * 60 * kMinuteUs);

  vault_.faulty_ledger->fail_ = true;
  EXPECT_EQ(service_->CloseExpiredBreakGlass().code(), StatusCode::kUnavailable);
  vault_.faulty_ledger->fail_ = false;
  const uint64_t before = ledger_->size();
  ASSERT_TRUE(service_->CloseExpiredBreakGlass().ok());
  EXPECT_EQ(ledger_->size(), before + 2) << "one end entry per window, none lost to the failure";
  EXPECT_EQ(Windows(/*pending_only=*/true).size(), 2u);
}

// ---- Denials ------------------------------------------------------------------------------

TEST_F(PolicyServiceTest, ADeniedReadDecryptsNothingAndStoresOnlyItsAuditEntry) {
  const std::string patient = "synthetic-deny-0001";
  const std::string id =
      Create(Ctx("dr.other", "physician", "TREAT"), patient, "psychotherapy_note", "session 4");
  ASSERT_NO_FATAL_FAILURE(TamperAllContent());
  const size_t records_before = CountKeys(storage::Cf::kRecords);
  const size_t state_before = CountKeys(storage::Cf::kState);
  const uint64_t before = ledger_->size();

  auto denied = Read(Physician(), id);
  ASSERT_EQ(denied.status().code(), StatusCode::kPermissionDenied)
      << "a decryption would have failed with DataLoss: " << denied.status().ToString();
  EXPECT_TRUE(EndsWith(denied.status().message(), "[rule: protected:psychotherapy_note]"))
      << denied.status().message();
  EXPECT_EQ(ledger_->size(), before + 1);
  const storage::AuditEntry e = LastEntry();
  EXPECT_EQ(e.action, "record.read");
  EXPECT_EQ(e.outcome, "denied");
  EXPECT_EQ(e.reason, "protected:psychotherapy_note");
  EXPECT_EQ(e.patient_bid, BlindId(patient));
  EXPECT_EQ(e.records, std::vector<std::string>{id + "@1"});
  EXPECT_EQ(CountKeys(storage::Cf::kRecords), records_before);
  EXPECT_EQ(CountKeys(storage::Cf::kState), state_before);

  // The author is let through to the content, which is where the tampering shows.
  EXPECT_EQ(Read(Ctx("dr.other", "physician", "TREAT"), id).status().code(), StatusCode::kDataLoss);
}

TEST_F(PolicyServiceTest, ListingWithholdsAndCountsWhatTheCallerMayNotSee) {
  const std::string patient = "synthetic-list-0001";
  const std::string note = Create(Physician(), patient, "clinical_note", "knee pain");
  const std::string demo = Create(Physician(), patient, "demographics", "address on file");

  auto physician = service_->ListRecords(Physician(), patient);
  ASSERT_TRUE(physician.ok());
  EXPECT_EQ(physician->records.size(), 2u);
  EXPECT_EQ(physician->withheld, 0u);

  auto front = service_->ListRecords(FrontDesk("TREAT"), patient);
  ASSERT_TRUE(front.ok()) << front.status().ToString();
  ASSERT_EQ(front->records.size(), 1u);
  EXPECT_EQ(front->records[0].record_id, demo);
  EXPECT_EQ(front->withheld, 1u);
  const storage::AuditEntry e = LastEntry();
  EXPECT_EQ(e.action, "record.list");
  EXPECT_EQ(e.outcome, "success");
  EXPECT_EQ(e.records, std::vector<std::string>{demo + "@1"});
  EXPECT_EQ(e.reason, "front-desk,withheld=1");
  EXPECT_EQ(e.patient_bid, BlindId(patient));
}

TEST_F(PolicyServiceTest, ARoleWithNoListRightIsDeniedBeforeAnythingIsRead) {
  const std::string patient = "synthetic-list-0002";
  Create(Physician(), patient, "clinical_note", "x");
  // Billing lists only for payment; the compliance officer has no record action at all.
  for (const RequestContext& ctx : {Billing("TREAT"), Officer()}) {
    auto stored = service_->ListRecords(ctx, patient);
    ASSERT_EQ(stored.status().code(), StatusCode::kPermissionDenied) << ctx.role;
    EXPECT_TRUE(EndsWith(stored.status().message(), "[rule: default-deny]"))
        << stored.status().message();
    const storage::AuditEntry e = LastEntry();
    EXPECT_EQ(e.action, "record.list");
    EXPECT_EQ(e.outcome, "denied");
    EXPECT_EQ(e.reason, "default-deny");
    EXPECT_TRUE(e.records.empty());
    // Nothing about the patient was looked at: a patient with no records gets the same answer.
    auto none = service_->ListRecords(ctx, "synthetic-list-nobody");
    EXPECT_EQ(none.status().ToString(), stored.status().ToString());
  }
}

// ---- Policy reload, history and check ------------------------------------------------------

// Who sees unsealed PHI in an audit export is the policy's `unseal` action, on a role the
// principal is bound to: with a policy that grants it to nobody, even the compliance officer
// gets none, and with one that grants it to the vault administrator, the administrator does.
TEST(PolicyUnsealTest, ThePolicyDecidesWhoSeesUnsealedPhiInAnExport) {
  auto export_as = [](const std::string& policy_text, const std::string& role) {
    testing::InProcessVault vault;
    const std::string path = vault.dir.Sub("policy.toml");
    std::ofstream(path) << policy_text;
    vault.config.policy_file = path;
    EXPECT_NO_FATAL_FAILURE(vault.Open());
    if (vault.service == nullptr) return std::string();
    RequestContext physician;
    physician.request_id = "req-create";
    physician.principal.name = "test-app";
    physician.principal.actions = KnownActions();
    physician.principal.roles = DefaultRoles();
    physician.user = "dr.synthetic";
    physician.role = "physician";
    physician.purpose = "TREAT";
    EXPECT_TRUE(vault.service
                    ->CreateRecord(physician, {"synthetic-unseal-1", "clinical_note", "text/plain",
                                               "2026-10-01", "Dr. Synthetic", "note"})
                    .ok());
    RequestContext reader = physician;
    reader.user = "reader.synthetic";
    reader.role = role;
    reader.purpose = "HOPERAT";
    std::string out;
    EXPECT_TRUE(vault.service
                    ->ExportAudit(reader, {},
                                  [&](std::string_view chunk) {
                                    out.append(chunk);
                                    return true;
                                  })
                    .ok());
    return out;
  };
  const std::string original(policies::DefaultPolicyToml());
  ASSERT_NE(export_as(original, "compliance_officer").find("synthetic-unseal-1"),
            std::string::npos);
  EXPECT_EQ(export_as(original, "vault_admin").find("synthetic-unseal-1"), std::string::npos);

  std::string no_unseal = original;
  const std::string granted = R"(actions = ["audit", "unseal", "review", "suspend", "policy"])";
  const size_t at = no_unseal.find(granted);
  ASSERT_NE(at, std::string::npos);
  no_unseal.replace(at, granted.size(), R"(actions = ["audit", "review", "suspend", "policy"])");
  const std::string officer_export = export_as(no_unseal, "compliance_officer");
  EXPECT_NE(officer_export.find("record.create"), std::string::npos);
  EXPECT_EQ(officer_export.find("synthetic-unseal-1"), std::string::npos);

  const std::string admin_grant = R"(actions = ["admin", "policy", "hold", "sweep", "audit"])";
  std::string admin_unseals = original;
  const size_t admin_at = admin_unseals.find(admin_grant);
  ASSERT_NE(admin_at, std::string::npos);
  admin_unseals.replace(admin_at, admin_grant.size(),
                        R"(actions = ["admin", "policy", "hold", "sweep", "audit", "unseal"])");
  EXPECT_NE(export_as(admin_unseals, "vault_admin").find("synthetic-unseal-1"), std::string::npos);
}

TEST(PolicyReloadTest, ABadFileKeepsTheOldPolicyAndAGoodOneIsAuditedAndKeptInTheHistory) {
  std::atomic<int64_t> now{kStartUs};
  testing::InProcessVault vault;
  vault.clock = [&now] { return now.load(); };
  const std::string path = vault.dir.Sub("policy.toml");
  const std::string original(policies::DefaultPolicyToml());
  std::ofstream(path) << original;
  vault.config.policy_file = path;
  ASSERT_NO_FATAL_FAILURE(vault.Open());
  VaultService& service = *vault.service;
  storage::Ledger& ledger = vault.ledger();
  auto last = [&] { return *storage::ReadAuditEntry(*vault.store, ledger.size()); };
  const RequestContext admin = [] {
    RequestContext c;
    c.principal.name = "test-app";
    c.principal.actions = KnownActions();
    c.user = "admin.synthetic";
    c.role = "vault_admin";
    c.purpose = "HOPERAT";
    return c;
  }();
  RequestContext check_as = admin;
  check_as.user = "co.synthetic";
  check_as.role = "compliance_officer";
  const PolicyCheckRequest nurse_reads{"rn.synthetic", "nurse",      "TREAT",        "read",
                                       std::nullopt,   std::nullopt, "clinical_note"};
  auto in_force = [&] {
    auto r = service.CheckPolicy(check_as, nurse_reads);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->explanation : "";
  };
  ASSERT_EQ(ledger.size(), 2u);  // the policy and the retention table coming into force
  EXPECT_EQ(last().action, "retention.load");
  EXPECT_NE(in_force().find("policy 'small-practice-default'"), std::string::npos);

  // A rule naming an undeclared role: refused with the file and line; nothing changes.
  const size_t broken_line =
      static_cast<size_t>(std::count(original.begin(), original.end(), '\n'));
  std::ofstream(path) << original
                      << "\n[[permit]]\nname = \"broken\"\nroles = [\"surgeon\"]\n"
                         "actions = [\"read\"]\ncategories = [\"*\"]\npurposes = [\"TREAT\"]\n";
  uint64_t before = ledger.size();
  auto bad = service.ReloadPolicy(nullptr);
  ASSERT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("the policy was not loaded"), std::string::npos);
  const std::string where = path + ":";
  const size_t at = bad.status().message().find(where);
  ASSERT_NE(at, std::string::npos) << bad.status().message();
  const size_t line = std::stoul(bad.status().message().substr(at + where.size()));
  EXPECT_GT(line, broken_line) << "the line is in the appended rule";
  EXPECT_NE(bad.status().message().find("rule 'broken'"), std::string::npos);
  // The daemon's failed attempt (SIGHUP) is audited, and changes nothing else.
  ASSERT_EQ(ledger.size(), before + 1);
  {
    auto e = storage::ReadAuditEntry(*vault.store, ledger.size());
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->action, "policy.reload");
    EXPECT_EQ(e->outcome, "error");
    EXPECT_EQ(e->application, "phivaultd");
  }
  EXPECT_NE(in_force().find("policy 'small-practice-default'"), std::string::npos);
  before = ledger.size();

  // The same refusal asked for by an administrator is audited as that request's error.
  auto bad_by_admin = service.ReloadPolicy(&admin);
  EXPECT_EQ(bad_by_admin.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger.size(), before + 1);
  EXPECT_EQ(last().action, "policy.reload");
  EXPECT_EQ(last().outcome, "error");

  // A good, changed file: in force, audited with its hash, kept in the history.
  const int64_t before_change = now.load();
  now += 60 * kMinuteUs;
  std::string changed = original;
  const std::string old_name = "name = \"small-practice-default\"";
  changed.replace(changed.find(old_name), old_name.size(), "name = \"small-practice-v2\"");
  std::ofstream(path) << changed;
  before = ledger.size();
  auto good = service.ReloadPolicy(nullptr);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_TRUE(good->changed);
  EXPECT_EQ(good->name, "small-practice-v2");
  const crypto::Sha256Digest digest = crypto::Sha256(changed);
  const std::string hex = crypto::HexEncode(crypto::AsView(digest));
  EXPECT_EQ(good->sha256_hex, hex);
  EXPECT_EQ(ledger.size(), before + 1);
  EXPECT_EQ(last().action, "policy.load");
  EXPECT_EQ(last().reason, "sha256:" + hex);
  EXPECT_EQ(good->audit_seq, ledger.size());
  EXPECT_NE(in_force().find("policy 'small-practice-v2'"), std::string::npos);

  auto history = service.PolicyHistory(check_as);
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].name, "small-practice-default");
  EXPECT_EQ((*history)[1].name, "small-practice-v2");
  EXPECT_EQ((*history)[1].audit_seq, good->audit_seq);
  auto then = service.PolicyAt(check_as, before_change);
  ASSERT_TRUE(then.ok()) << then.status().ToString();
  EXPECT_EQ(then->text, original);
  auto current = service.PolicyAt(check_as, std::nullopt);
  ASSERT_TRUE(current.ok());
  EXPECT_EQ(current->text, changed);
  EXPECT_EQ(service.PolicyAt(check_as, kStartUs - 1).status().code(), StatusCode::kNotFound);

  // The same file again: nothing changes and nothing is written.
  now += kMinuteUs;
  before = ledger.size();
  auto same = service.ReloadPolicy(nullptr);
  ASSERT_TRUE(same.ok()) << same.status().ToString();
  EXPECT_FALSE(same->changed);
  EXPECT_EQ(same->audit_seq, good->audit_seq);
  EXPECT_EQ(ledger.size(), before);
  EXPECT_EQ(service.PolicyHistory(check_as)->size(), 2u);
}

// SIGHUP reloads arrive while requests are being served: no request may fail or be decided
// under half a policy, and every policy that came into force is in the history.
TEST(PolicyReloadTest, ReloadsBesideTrafficFailNoRequestAndEachIsKeptInTheHistory) {
  std::atomic<int64_t> now{kStartUs};
  testing::InProcessVault vault;
  vault.clock = [&now] { return now.load(); };
  const std::string path = vault.dir.Sub("policy.toml");
  const std::string original(policies::DefaultPolicyToml());
  std::ofstream(path) << original;
  vault.config.policy_file = path;
  ASSERT_NO_FATAL_FAILURE(vault.Open());
  VaultService& service = *vault.service;
  RequestContext physician;
  physician.principal.name = "test-app";
  physician.principal.actions = KnownActions();
  physician.user = "dr.synthetic";
  physician.role = "physician";
  physician.purpose = "TREAT";

  constexpr int kClients = 3;
  constexpr int kRequestsPerClient = 15;
  constexpr int kReloads = 6;
  std::atomic<bool> reloads_done{false};
  std::vector<std::string> failures[kClients];
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      // At least kRequestsPerClient, and on until the last reload is in force.
      for (int i = 0; i < kRequestsPerClient || !reloads_done.load(); ++i) {
        const std::string content = "note " + std::to_string(c) + "/" + std::to_string(i);
        auto created = service.CreateRecord(
            physician, {"synthetic-reload-" + std::to_string(c), "clinical_note", "text/plain",
                        "2026-10-20", "Dr. Synthetic", content});
        if (!created.ok()) {
          failures[c].push_back("create: " + created.status().ToString());
          continue;
        }
        auto read = service.ReadRecord(physician, created->record_id, std::nullopt, true);
        if (!read.ok() || read->content != content) {
          failures[c].push_back("read " + created->record_id + ": " + read.status().ToString());
        }
      }
    });
  }
  std::vector<std::string> loaded;
  const std::string old_name = "name = \"small-practice-default\"";
  for (int r = 1; r <= kReloads; ++r) {
    std::string changed = original;
    loaded.push_back("small-practice-v" + std::to_string(r));
    changed.replace(changed.find(old_name), old_name.size(), "name = \"" + loaded.back() + "\"");
    std::ofstream(path) << changed;
    now += kMinuteUs;
    auto reloaded = service.ReloadPolicy(nullptr);
    if (!reloaded.ok()) {
      ADD_FAILURE() << "reload " << r << ": " << reloaded.status().ToString();
      break;  // the clients must still be joined
    }
    EXPECT_TRUE(reloaded->changed);
    EXPECT_EQ(reloaded->name, loaded.back());
  }
  reloads_done = true;
  for (std::thread& t : clients) t.join();
  for (int c = 0; c < kClients; ++c) {
    EXPECT_TRUE(failures[c].empty()) << "client " << c << ": " << failures[c].front();
  }
  RequestContext officer = physician;
  officer.user = "co.synthetic";
  officer.role = "compliance_officer";
  officer.purpose = "HOPERAT";
  auto history = service.PolicyHistory(officer);
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  ASSERT_EQ(history->size(), 1u + kReloads);
  for (int r = 0; r < kReloads; ++r) EXPECT_EQ((*history)[r + 1].name, loaded[r]);
}

// A check on a category decides on someone else's record unless it says the user wrote it: the
// answer for a psychotherapy note differs.
TEST_F(PolicyServiceTest, CheckPolicyOnACategoryDecidesAsTheAuthorOnlyWhenAsked) {
  PolicyCheckRequest req;
  req.as_user = "dr.synthetic";
  req.role = "physician";
  req.purpose = "TREAT";
  req.action = "read";
  req.category = "psychotherapy_note";
  auto other = service_->CheckPolicy(Officer(), req);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_FALSE(other->allowed);
  EXPECT_EQ(other->rule, "protected:psychotherapy_note");
  EXPECT_FALSE(other->is_author);
  req.author = true;
  auto own = service_->CheckPolicy(Officer(), req);
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  EXPECT_TRUE(own->allowed);
  EXPECT_EQ(own->rule, "psychotherapy-notes-own");
  EXPECT_TRUE(own->is_author);
}

TEST_F(PolicyServiceTest, CheckPolicyOpensNoWindowReadsNoContentAndIsAudited) {
  const std::string patient = "synthetic-check-0001";
  const std::string id = Create(Physician(), patient, "clinical_note", "chest pain");
  ASSERT_NO_FATAL_FAILURE(TamperAllContent());

  PolicyCheckRequest req;
  req.as_user = "dr.synthetic";
  req.role = "physician";
  req.purpose = "ETREAT";
  req.action = "read";
  req.record_id = id;
  req.break_glass = true;
  auto allowed = service_->CheckPolicy(Officer(), req);
  ASSERT_TRUE(allowed.ok()) << allowed.status().ToString() << " (content was read?)";
  EXPECT_TRUE(allowed->allowed);
  EXPECT_EQ(allowed->rule, "emergency-access");
  EXPECT_EQ(allowed->category, "clinical_note");
  EXPECT_TRUE(allowed->is_author);
  const storage::AuditEntry e = LastEntry();
  EXPECT_EQ(e.action, "policy.check");
  EXPECT_EQ(e.outcome, "success");
  EXPECT_EQ(e.user, "co.synthetic");
  EXPECT_FALSE(e.break_glass);
  EXPECT_EQ(e.patient_bid, BlindId(patient));

  req.break_glass = false;
  auto denied = service_->CheckPolicy(Officer(), req);
  ASSERT_TRUE(denied.ok());
  EXPECT_FALSE(denied->allowed);
  EXPECT_NE(denied->explanation.find("X-Phivault-Break-Glass-Reason"), std::string::npos);

  EXPECT_TRUE(Windows(/*pending_only=*/false).empty()) << "a check opens no window";
  EXPECT_EQ(Read(Physician("ETREAT"), id).status().code(), StatusCode::kPermissionDenied)
      << "so the physician still needs a reason";
}

// ---- Restrictions ------------------------------------------------------------------------------

TEST_F(PolicyServiceTest, ARestrictionWithholdsRecordsFromItsPurposeAndItsSpecialisations) {
  const std::string patient = "synthetic-restrict-0001";
  const std::string bill = Create(Billing(), patient, "billing", "CPT 99213, paid out of pocket");
  ASSERT_TRUE(Read(Billing(), bill).ok());

  Restriction draft;
  draft.patient_id = patient;
  draft.purposes = {"HPAYMT"};
  draft.categories = {"billing"};
  draft.recipient = "the patient's health plan";
  auto added = service_->AddRestriction(FrontDesk(), draft);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  const std::string rule = "restriction:" + added->first.id;
  EXPECT_EQ(LastEntry().action, "restriction.add");
  EXPECT_EQ(LastEntry().patient_bid, BlindId(patient));

  for (const char* purpose : {"HPAYMT", "ELIGVER"}) {
    auto denied = Read(Billing(purpose), bill);
    ASSERT_EQ(denied.status().code(), StatusCode::kPermissionDenied) << purpose;
    EXPECT_TRUE(EndsWith(denied.status().message(), "[rule: " + rule + "]"))
        << denied.status().message();
    EXPECT_EQ(LastEntry().outcome, "denied");
    EXPECT_EQ(LastEntry().reason, rule);
  }
  auto listed = service_->ListRecords(Billing(), patient);
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->records.empty());
  EXPECT_EQ(listed->withheld, 1u);
  EXPECT_TRUE(Read(Physician(), bill).ok()) << "treatment is not restricted";

  auto active = service_->ListRestrictions(FrontDesk(), patient, false);
  ASSERT_TRUE(active.ok());
  ASSERT_EQ(active->size(), 1u);
  EXPECT_EQ((*active)[0].id, added->first.id);

  auto ended = service_->EndRestriction(FrontDesk(), patient, added->first.id, "patient revoked");
  ASSERT_TRUE(ended.ok()) << ended.status().ToString();
  EXPECT_EQ(LastEntry().action, "restriction.end");
  EXPECT_TRUE(Read(Billing(), bill).ok());
  EXPECT_TRUE(Read(Billing("ELIGVER"), bill).ok());
  EXPECT_EQ(
      service_->EndRestriction(FrontDesk(), patient, added->first.id, "again").status().code(),
      StatusCode::kFailedPrecondition);
  EXPECT_TRUE(service_->ListRestrictions(FrontDesk(), patient, false)->empty());
  EXPECT_EQ(service_->ListRestrictions(FrontDesk(), patient, true)->size(), 1u);
}

// ---- The right of access -----------------------------------------------------------------------

struct TarFile {
  std::string path;
  std::string bytes;
};

std::vector<TarFile> ReadTar(const std::string& tar, bool* complete) {
  std::vector<TarFile> files;
  *complete = false;
  std::unique_ptr<struct archive, decltype(&archive_read_free)> a(archive_read_new(),
                                                                  archive_read_free);
  archive_read_support_format_tar(a.get());
  if (archive_read_open_memory(a.get(), tar.data(), tar.size()) != ARCHIVE_OK) return files;
  struct archive_entry* entry = nullptr;
  int r;
  while ((r = archive_read_next_header(a.get(), &entry)) == ARCHIVE_OK) {
    TarFile f;
    f.path = archive_entry_pathname(entry);
    char buf[8192];
    la_ssize_t n;
    while ((n = archive_read_data(a.get(), buf, sizeof buf)) > 0) {
      f.bytes.append(buf, static_cast<size_t>(n));
    }
    files.push_back(std::move(f));
    if (n < 0) return files;
  }
  *complete = r == ARCHIVE_EOF;
  return files;
}

TEST_F(PolicyServiceTest, PatientExportHoldsWhatThePolicyLetsOutAndIsAuditedFirst) {
  const std::string patient = "synthetic-export-0001";
  const std::string note = Create(Physician(), patient, "clinical_note", "first visit");
  ASSERT_TRUE(service_
                  ->AmendRecord(
                      Physician(), note,
                      {"first visit, corrected", "typo", std::nullopt, std::nullopt, std::nullopt})
                  .ok());
  const std::string lab = Create(Physician(), patient, "lab_result", "TSH 2.1");
  Create(Physician(), patient, "psychotherapy_note", "session notes");
  ConfidentialContact contact;
  contact.patient_id = patient;
  contact.address = "PO Box 17, Springfield";
  contact.channel = ContactChannel::kMail;
  ASSERT_TRUE(service_->SetContact(FrontDesk(), contact).ok());

  // Only the config action patient.export, as the route requires.
  const RequestContext exporter = Ctx("fd.synthetic", "front_office", "PATRQT", {"patient.export"});
  std::string tar;
  uint64_t ledger_at_first_byte = 0;
  Status exported = service_->ExportPatient(exporter, {patient, ""}, [&](std::string_view chunk) {
    if (ledger_at_first_byte == 0) ledger_at_first_byte = ledger_->size();
    tar.append(chunk);
    return true;
  });
  ASSERT_TRUE(exported.ok()) << exported.ToString();
  ASSERT_GT(ledger_at_first_byte, 0u);
  EXPECT_EQ(ledger_->size(), ledger_at_first_byte) << "nothing is audited after the first byte";
  const storage::AuditEntry e = Entry(ledger_at_first_byte);
  EXPECT_EQ(e.action, "record.disclose");
  EXPECT_EQ(e.outcome, "success");
  EXPECT_EQ(e.user, "fd.synthetic");
  EXPECT_EQ(e.patient_bid, BlindId(patient));
  EXPECT_EQ(e.reason, "right-of-access-export,withheld=1");
  EXPECT_EQ(e.records.size(), 3u) << "two versions of the note and the lab result";

  bool complete = false;
  const std::vector<TarFile> files = ReadTar(tar, &complete);
  ASSERT_TRUE(complete);
  std::map<std::string, std::string> by_path;
  for (const TarFile& f : files) by_path[f.path] = f.bytes;
  ASSERT_TRUE(by_path.contains("manifest.json"));
  const nlohmann::json manifest = nlohmann::json::parse(by_path["manifest.json"]);
  EXPECT_EQ(manifest["patient_id"], patient);
  EXPECT_EQ(manifest["withheld"], 1);
  EXPECT_FALSE(manifest["withheld_reason"].get<std::string>().empty());
  EXPECT_EQ(manifest["deliver_to"]["address"], "PO Box 17, Springfield");
  std::map<std::string, std::string> content_of;  // "id@version" -> bytes
  for (const auto& r : manifest["records"]) {
    const std::string file = r["file"];
    ASSERT_TRUE(by_path.contains(file)) << file;
    const crypto::Sha256Digest digest = crypto::Sha256(by_path[file]);
    EXPECT_EQ(r["sha256"], crypto::HexEncode(crypto::AsView(digest)));
    EXPECT_NE(r["category"], "psychotherapy_note");
    content_of[r["record_id"].get<std::string>() + "@" + std::to_string(r["version"].get<int>())] =
        by_path[file];
  }
  EXPECT_EQ(content_of, (std::map<std::string, std::string>{{note + "@1", "first visit"},
                                                            {note + "@2", "first visit, corrected"},
                                                            {lab + "@1", "TSH 2.1"}}));
  EXPECT_EQ(files.size(), 4u) << "the manifest and three record versions, nothing else";

  // Without the config action nothing is streamed, and the refusal is audited.
  std::string none;
  Status refused =
      service_->ExportPatient(Ctx("fd.synthetic", "front_office", "PATRQT", {"record.disclose"}),
                              {patient, ""}, [&](std::string_view chunk) {
                                none.append(chunk);
                                return true;
                              });
  EXPECT_EQ(refused.code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(LastEntry().reason, "config:actions");
}

// ---- Patient requests and confidential contacts -----------------------------------------------

TEST_F(PolicyServiceTest, APatientRequestCannotHaveBeenReceivedAfterToday) {
  // Tomorrow (by the fake clock) is allowed, for a request received in another time zone.
  auto future = service_->OpenPatientRequest(FrontDesk(), "synthetic-request-0002", "access",
                                             "2026-11-30", "");
  EXPECT_EQ(future.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(future.status().message().find("received"), std::string::npos);
  EXPECT_TRUE(service_
                  ->OpenPatientRequest(FrontDesk(), "synthetic-request-0002", "access",
                                       policies::FormatUtcDate(kStartUs + 86400LL * 1000000), "")
                  .ok());
}

TEST_F(PolicyServiceTest, PatientRequestsRoundTripWithTheirDeadlinesAndAreAudited) {
  const std::string patient = "synthetic-request-0001";
  auto opened =
      service_->OpenPatientRequest(FrontDesk(), patient, "access", "2026-10-02", "by letter");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  const std::string id = opened->first.id;
  EXPECT_EQ(opened->first.due, "2026-11-01");
  EXPECT_EQ(opened->second, ledger_->size());
  EXPECT_EQ(LastEntry().action, "request.open");
  EXPECT_EQ(LastEntry().patient_bid, BlindId(patient));

  auto extended = service_->ExtendPatientRequest(FrontDesk(), id, "records held off site");
  ASSERT_TRUE(extended.ok()) << extended.status().ToString();
  EXPECT_EQ(extended->first.due, "2026-12-01");
  EXPECT_EQ(LastEntry().action, "request.extend");
  EXPECT_EQ(LastEntry().patient_bid, BlindId(patient));
  EXPECT_EQ(service_->ExtendPatientRequest(FrontDesk(), id, "again").status().code(),
            StatusCode::kFailedPrecondition);

  auto open = service_->ListPatientRequests(FrontDesk(), patient, false, false);
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ((*open)[0].id, id);
  EXPECT_TRUE((*open)[0].extended);
  EXPECT_EQ(LastEntry().action, "request.list");

  auto closed = service_->ClosePatientRequest(FrontDesk(), id, "fulfilled", "sha256:abcd", "");
  ASSERT_TRUE(closed.ok()) << closed.status().ToString();
  EXPECT_TRUE(closed->first.closed);
  EXPECT_EQ(LastEntry().action, "request.close");
  EXPECT_EQ(LastEntry().patient_bid, BlindId(patient));
  EXPECT_EQ(service_->ClosePatientRequest(FrontDesk(), id, "fulfilled", "x", "").status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_TRUE(service_->ListPatientRequests(FrontDesk(), patient, false, false)->empty());
  auto all = service_->ListPatientRequests(FrontDesk(), patient, false, true);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].delivered, "sha256:abcd");

  EXPECT_EQ(
      service_->OpenPatientRequest(Billing(), patient, "access", std::nullopt, "").status().code(),
      StatusCode::kPermissionDenied);
  EXPECT_EQ(LastEntry().outcome, "denied");
}

TEST_F(PolicyServiceTest, ConfidentialContactsRoundTripAndAreAudited) {
  const std::string patient = "synthetic-contact-0001";
  EXPECT_EQ(service_->GetContact(FrontDesk(), patient).status().code(), StatusCode::kNotFound);
  ConfidentialContact contact;
  contact.patient_id = patient;
  contact.address = "alt.address@example.org";
  contact.channel = ContactChannel::kEmail;
  contact.note = "not the home address";
  auto seq = service_->SetContact(FrontDesk(), contact);
  ASSERT_TRUE(seq.ok()) << seq.status().ToString();
  EXPECT_EQ(*seq, ledger_->size());
  EXPECT_EQ(LastEntry().action, "contact.set");
  EXPECT_EQ(LastEntry().patient_bid, BlindId(patient));

  auto got = service_->GetContact(FrontDesk(), patient);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->address, "alt.address@example.org");
  EXPECT_EQ(got->channel, ContactChannel::kEmail);
  EXPECT_EQ(got->note, "not the home address");
  EXPECT_EQ(got->updated_us, kStartUs);
  EXPECT_EQ(LastEntry().action, "contact.show");
  EXPECT_EQ(LastEntry().patient_bid, BlindId(patient));

  ASSERT_NO_FATAL_FAILURE(RestartService());
  auto after = service_->GetContact(FrontDesk(), patient);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->address, "alt.address@example.org");
}

}  // namespace
}  // namespace phivault::daemon
