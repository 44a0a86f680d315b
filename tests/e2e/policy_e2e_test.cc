// The access policy (issue 8) as users of the real phivaultd and phivault CLI meet it: what a
// denial returns and leaves behind, protected categories, restrictions, break-glass windows,
// policy reloads, right-of-access exports and patient request deadlines.
#include <archive.h>
#include <archive_entry.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

using nlohmann::json;

client::Actor As(std::string user, std::string role, std::string purpose) {
  return client::Actor{
      .user = std::move(user), .role = std::move(role), .purpose = std::move(purpose)};
}

client::NewRecord Synthetic(std::string patient, std::string category, std::string content) {
  return client::NewRecord{.patient_id = std::move(patient),
                           .category = std::move(category),
                           .content_type = "text/plain",
                           .encounter_date = "2026-10-01",
                           .author = "Dr. Synthetic",
                           .content = std::move(content)};
}

std::string Sha256Hex(std::string_view bytes) {
  const crypto::Sha256Digest d = crypto::Sha256(bytes);
  return crypto::HexEncode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

// The login name the daemon records for the CLI, an operator recognised by its uid.
std::string OperatorAccount() {
  const struct passwd* pw = getpwuid(getuid());
  return pw != nullptr ? std::string(pw->pw_name) : "uid:" + std::to_string(getuid());
}

// Today's date (UTC) plus `days`, as YYYY-MM-DD.
std::string UtcDate(int days) {
  const std::time_t t = std::time(nullptr) + static_cast<std::time_t>(days) * 86400;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

// Now (UTC) as RFC 3339 with microseconds, as the daemon writes its times.
std::string NowRfc3339() {
  const auto now = std::chrono::system_clock::now();
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  const std::time_t t = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[16];
  std::snprintf(frac, sizeof frac, ".%06lldZ", static_cast<long long>(us % 1000000));
  return std::string(buf) + frac;
}

json ParseJson(const std::string& text) { return json::parse(text, nullptr, false); }

// One entry of a JSON Lines audit export and its unsealed PHI (empty object if none).
struct AuditLine {
  json entry;
  json phi;
};

// The files of a tar archive, by path.
std::map<std::string, std::string> ReadTar(const std::string& tar) {
  std::map<std::string, std::string> files;
  std::unique_ptr<struct archive, decltype(&archive_read_free)> a(archive_read_new(),
                                                                  archive_read_free);
  archive_read_support_format_tar(a.get());
  if (archive_read_open_memory(a.get(), tar.data(), tar.size()) != ARCHIVE_OK) return files;
  struct archive_entry* entry = nullptr;
  int r = ARCHIVE_OK;
  while ((r = archive_read_next_header(a.get(), &entry)) == ARCHIVE_OK) {
    std::string bytes;
    char buf[8192];
    la_ssize_t n = 0;
    while ((n = archive_read_data(a.get(), buf, sizeof buf)) > 0) {
      bytes.append(buf, static_cast<size_t>(n));
    }
    EXPECT_GE(n, 0) << "damaged tar member " << archive_entry_pathname(entry);
    files[archive_entry_pathname(entry)] = std::move(bytes);
  }
  EXPECT_EQ(r, ARCHIVE_EOF) << "the tar does not end cleanly";
  return files;
}

class E2ePolicyTest : public VaultTest {
 protected:
  // The CLI as an operator (no token) in `role` for `purpose`.
  ProcessResult Cli(const std::string& role, const std::string& purpose,
                    const std::vector<std::string>& args) {
    return vault_.Cli(args, {{"PHIVAULT_ROLE", role}, {"PHIVAULT_PURPOSE", purpose}});
  }
  ProcessResult Officer(const std::vector<std::string>& args) {
    return Cli("compliance_officer", "HOPERAT", args);
  }
  ProcessResult Admin(const std::vector<std::string>& args) {
    return Cli("vault_admin", "HOPERAT", args);
  }

  // Stores `record` as `actor`; its id, or "" after a test failure.
  std::string Store(const client::Actor& actor, const client::NewRecord& record) {
    client::Client c = vault_.AppClient();
    auto m = c.CreateRecord(actor, record);
    EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().Message());
    return m.ok() ? m->record_id : "";
  }

  // The whole audit log as the compliance officer exports it with the CLI.
  std::vector<AuditLine> AuditLog() {
    const ProcessResult r = Officer({"audit", "export"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<AuditLine> lines;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
      const json j = ParseJson(line);
      if (!j.is_object() || j.value("type", "") != "entry") continue;
      AuditLine a{.entry = ParseJson(j.value("entry", "")), .phi = json::object()};
      if (j.contains("phi")) a.phi = j["phi"].is_string() ? ParseJson(j["phi"]) : j["phi"];
      lines.push_back(std::move(a));
    }
    EXPECT_FALSE(lines.empty()) << r.out;
    return lines;
  }

  // The entries of `log` with `action` and `outcome` that name `record_id` (any version; any
  // record if empty).
  static std::vector<AuditLine> Entries(const std::vector<AuditLine>& log,
                                        const std::string& action, const std::string& outcome,
                                        const std::string& record_id = "") {
    std::vector<AuditLine> out;
    for (const AuditLine& a : log) {
      if (a.entry.value("action", "") != action || a.entry.value("outcome", "") != outcome) {
        continue;
      }
      bool names = record_id.empty();
      for (const auto& r : a.entry.value("records", json::array())) {
        const std::string s = r.get<std::string>();
        if (s == record_id || s.rfind(record_id + "@", 0) == 0) names = true;
      }
      if (names) out.push_back(a);
    }
    return out;
  }
};

// 1. A refused request returns nothing, stores nothing, and is in the audit log with its rule
// and in the patient's access report.
TEST_F(E2ePolicyTest, DeniedRequestsReturnAndStoreNothingAndAreAuditedWithTheirRule) {
  const std::string patient = "SYNTH-POL-0001";
  const std::string secret = "Synthetic note: reception must never see this.";
  const std::string id = StoreNote(patient, secret);
  ASSERT_FALSE(id.empty());
  client::Client app = vault_.AppClient();

  auto read = app.ReadRecord(As("fo.synthetic", "front_office", "HOPERAT"), id);
  ASSERT_FALSE(read.ok()) << "front office read a clinical note";
  EXPECT_EQ(read.error().http_status, 403);
  EXPECT_EQ(read.error().rule, "default-deny");
  EXPECT_EQ(read.error().Message().find("Synthetic note"), std::string::npos);

  auto created = app.CreateRecord(As("billing.synthetic", "billing", "HPAYMT"),
                                  Synthetic(patient, "clinical_note", "billing's own note"));
  ASSERT_FALSE(created.ok()) << "billing created a clinical note";
  EXPECT_EQ(created.error().http_status, 403);
  EXPECT_EQ(created.error().rule, "default-deny");
  auto list = app.SearchPatientRecords(Physician(), patient);
  ASSERT_TRUE(list.ok()) << list.error().Message();
  ASSERT_EQ(list->records.size(), 1u) << "a refused create stored a record";
  EXPECT_EQ(list->records[0].record_id, id);

  // The CLI: exit 3, nothing on standard output, the rule on standard error.
  const ProcessResult get = Cli("front_office", "HOPERAT", {"get", id});
  EXPECT_EQ(get.exit_code, 3) << get.err;
  EXPECT_EQ(get.out, "");
  EXPECT_NE(get.err.find("(rule: default-deny)"), std::string::npos) << get.err;

  const auto log = AuditLog();
  const auto denied_reads = Entries(log, "record.read", "denied", id);
  ASSERT_EQ(denied_reads.size(), 2u);  // the app's and the CLI's
  for (const auto& a : denied_reads) EXPECT_EQ(a.entry.value("reason", ""), "default-deny");
  EXPECT_EQ(denied_reads[0].entry.value("user", ""), "fo.synthetic");
  const auto denied_creates = Entries(log, "record.create", "denied");
  ASSERT_EQ(denied_creates.size(), 1u);
  EXPECT_EQ(denied_creates[0].entry.value("reason", ""), "default-deny");
  EXPECT_EQ(denied_creates[0].entry.value("user", ""), "billing.synthetic");

  const ProcessResult report = Officer({"report", "access", "--patient", patient});
  ASSERT_EQ(report.exit_code, 0) << report.err;
  const json j = ParseJson(report.out);
  ASSERT_TRUE(j.is_object()) << report.out;
  auto denial_listed = [&](const std::string& user, const std::string& action) {
    for (const auto& e : j.value("accesses", json::array())) {
      if (e.value("user", "") == user && e.value("action", "") == action &&
          e.value("outcome", "") == "denied") {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(denial_listed("fo.synthetic", "record.read")) << report.out;
  EXPECT_TRUE(denial_listed("billing.synthetic", "record.create")) << report.out;
  EXPECT_EQ(report.out.find("Synthetic note"), std::string::npos);
}

// 2. A psychotherapy note reaches its author only; a list as anyone else withholds it and says
// only how many.
TEST_F(E2ePolicyTest, PsychotherapyNotesReachOnlyTheirAuthor) {
  const std::string patient = "SYNTH-POL-0002";
  const client::Actor author = Physician("dr.author");
  const client::Actor other = Physician("dr.other");
  const std::string psy = Store(
      author, Synthetic(patient, "psychotherapy_note", "Synthetic session notes, author only."));
  const std::string note = Store(author, Synthetic(patient, "clinical_note", "Synthetic BP."));
  ASSERT_FALSE(psy.empty());
  ASSERT_FALSE(note.empty());
  client::Client app = vault_.AppClient();

  auto own = app.ReadContent(author, psy);
  ASSERT_TRUE(own.ok()) << own.error().Message();
  EXPECT_EQ(own->bytes, "Synthetic session notes, author only.");

  auto theirs = app.ReadContent(other, psy);
  ASSERT_FALSE(theirs.ok()) << "another physician read a psychotherapy note";
  EXPECT_EQ(theirs.error().http_status, 403);
  EXPECT_EQ(theirs.error().rule, "protected:psychotherapy_note");

  auto listed = app.SearchPatientRecords(other, patient);
  ASSERT_TRUE(listed.ok()) << listed.error().Message();
  ASSERT_EQ(listed->records.size(), 1u);
  EXPECT_EQ(listed->records[0].record_id, note);
  EXPECT_EQ(listed->withheld, 1u);
  auto by_author = app.SearchPatientRecords(author, patient);
  ASSERT_TRUE(by_author.ok()) << by_author.error().Message();
  EXPECT_EQ(by_author->records.size(), 2u);
  EXPECT_EQ(by_author->withheld, 0u);

  // The raw answer says nothing else about the withheld note.
  auto raw = app.Send("POST", "/v1/records/_search", &other, json{{"patient_id", patient}}.dump());
  ASSERT_TRUE(raw.ok()) << raw.error().Message();
  EXPECT_EQ(raw->status, 200);
  EXPECT_EQ(raw->body.find(psy), std::string::npos) << raw->body;
  EXPECT_EQ(raw->body.find("psychotherapy"), std::string::npos) << raw->body;

  // `phivault ls` (the operator is not the author): the note is not listed, the count is.
  const ProcessResult ls = Cli("physician", "TREAT", {"ls", "--patient", patient});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find(note), std::string::npos) << ls.out;
  EXPECT_EQ(ls.out.find(psy), std::string::npos) << ls.out;
  EXPECT_EQ(ls.out.find("psychotherapy_note"), std::string::npos) << ls.out;
  EXPECT_NE(ls.err.find("phivault: 1 more record withheld by policy"), std::string::npos) << ls.err;
}

// 3. Substance use records need a consent id, which the audit entry keeps.
TEST_F(E2ePolicyTest, SubstanceUseRecordsNeedAConsentIdWhichIsAudited) {
  const std::string patient = "SYNTH-POL-0003";
  client::Actor with_consent = Physician();
  with_consent.consent = "consent:2026/0042";
  const std::string id =
      Store(with_consent, Synthetic(patient, "substance_use", "Synthetic Part 2 program note."));
  ASSERT_FALSE(id.empty());
  client::Client app = vault_.AppClient();

  auto bare = app.ReadContent(Physician(), id);
  ASSERT_FALSE(bare.ok()) << "a substance use record was read without consent";
  EXPECT_EQ(bare.error().http_status, 403);
  EXPECT_EQ(bare.error().rule, "protected:substance_use");
  EXPECT_NE(bare.error().detail.find("X-Phivault-Consent"), std::string::npos)
      << bare.error().Message();

  const ProcessResult cli_bare = Cli("physician", "TREAT", {"get", id});
  EXPECT_EQ(cli_bare.exit_code, 3) << cli_bare.err;
  EXPECT_EQ(cli_bare.out, "");
  EXPECT_NE(cli_bare.err.find("(rule: protected:substance_use)"), std::string::npos)
      << cli_bare.err;

  const ProcessResult cli =
      Cli("physician", "TREAT", {"get", id, "--consent", "consent:2026/0099"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_EQ(cli.out, "Synthetic Part 2 program note.");

  // A list withholds it without a consent and shows it with one.
  auto hidden = app.SearchPatientRecords(Physician(), patient);
  ASSERT_TRUE(hidden.ok()) << hidden.error().Message();
  EXPECT_TRUE(hidden->records.empty());
  EXPECT_EQ(hidden->withheld, 1u);
  const ProcessResult ls =
      Cli("physician", "TREAT", {"ls", "--patient", patient, "--consent", "consent:2026/0099"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find(id), std::string::npos) << ls.out;
  EXPECT_EQ(ls.err.find("withheld"), std::string::npos) << ls.err;

  const auto reads = Entries(AuditLog(), "record.read", "success", id);
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].phi.value("consent_id", ""), "consent:2026/0099") << reads[0].phi.dump();
}

// 4. A restriction the patient asked for refuses the restricted purposes on the restricted
// records, through every route, until it is ended; every step is audited.
TEST_F(E2ePolicyTest, RestrictionsRefuseTheirPurposesUntilEnded) {
  const std::string patient = "SYNTH-POL-0004";
  const std::string other_patient = "SYNTH-POL-0044";
  const client::Actor biller = As("billing.synthetic", "billing", "HPAYMT");
  const std::string bill = Store(biller, Synthetic(patient, "billing", "Synthetic claim 1."));
  const std::string other_bill =
      Store(biller, Synthetic(other_patient, "billing", "Synthetic claim 2."));
  ASSERT_FALSE(bill.empty());
  ASSERT_FALSE(other_bill.empty());

  const ProcessResult add =
      Officer({"restrictions", "add", "--patient", patient, "--purpose", "HPAYMT", "--purpose",
               "HOPERAT", "--category", "billing", "--recipient", "health plan", "--note",
               "paid out of pocket (synthetic)"});
  ASSERT_EQ(add.exit_code, 0) << add.err;
  std::string rid = add.out;
  while (!rid.empty() && rid.back() == '\n') rid.pop_back();
  ASSERT_FALSE(rid.empty());
  const std::string rule = "restriction:" + rid;

  client::Client app = vault_.AppClient();
  const client::Disclosure to_plan{.recipient_name = "Synthetic Health Plan",
                                   .description = "claim"};
  auto read = app.ReadContent(biller, bill);
  ASSERT_FALSE(read.ok()) << "a restricted record was read for payment";
  EXPECT_EQ(read.error().http_status, 403);
  EXPECT_EQ(read.error().rule, rule);
  auto list = app.SearchPatientRecords(biller, patient);
  ASSERT_TRUE(list.ok()) << list.error().Message();
  EXPECT_TRUE(list->records.empty());
  EXPECT_EQ(list->withheld, 1u);
  auto disclose = app.DiscloseRecord(biller, bill, std::nullopt, to_plan);
  ASSERT_FALSE(disclose.ok()) << "a restricted record was disclosed to the health plan";
  EXPECT_EQ(disclose.error().http_status, 403);
  EXPECT_EQ(disclose.error().rule, rule);
  const ProcessResult cli_get = Cli("billing", "HPAYMT", {"get", bill});
  EXPECT_EQ(cli_get.exit_code, 3) << cli_get.err;
  EXPECT_NE(cli_get.err.find("(rule: " + rule + ")"), std::string::npos) << cli_get.err;

  // Another patient's billing is not restricted; treatment of this patient is not either.
  auto other_read = app.ReadContent(biller, other_bill);
  ASSERT_TRUE(other_read.ok()) << other_read.error().Message();
  EXPECT_EQ(other_read->bytes, "Synthetic claim 2.");
  auto other_disclosed = app.DiscloseRecord(biller, other_bill, std::nullopt, to_plan);
  EXPECT_TRUE(other_disclosed.ok()) << other_disclosed.error().Message();

  // A more specific payment purpose is no way around it.
  auto specific = app.ReadContent(As("billing.synthetic", "billing", "CLMATTCH"), bill);
  ASSERT_FALSE(specific.ok()) << "CLMATTCH (under HPAYMT) read the restricted record";
  EXPECT_EQ(specific.error().rule, rule);
  // A restriction naming a record that is not the patient's would refuse nothing: refused.
  const ProcessResult stray =
      Officer({"restrictions", "add", "--patient", patient, "--purpose", "HPAYMT", "--record",
               other_bill, "--recipient", "health plan"});
  EXPECT_EQ(stray.exit_code, 1) << stray.out << stray.err;
  EXPECT_NE(stray.err.find("record_ids"), std::string::npos) << stray.err;
  EXPECT_EQ(stray.out, "");
  const ProcessResult unknown =
      Officer({"restrictions", "add", "--patient", patient, "--purpose", "HPAYMT", "--record",
               std::string(22, 'A'), "--recipient", "health plan"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown.out << unknown.err;
  EXPECT_EQ(std::regex_replace(unknown.err, std::regex(std::string(22, 'A')), "ID"),
            std::regex_replace(stray.err, std::regex(other_bill), "ID"))
      << "the refusal tells whether the record exists";

  const ProcessResult ls = Officer({"restrictions", "ls", "--patient", patient});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find(rid), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("health plan"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("HPAYMT"), std::string::npos) << ls.out;

  const ProcessResult end =
      Officer({"restrictions", "end", "--patient", patient, "--id", rid, "--reason", "revoked"});
  ASSERT_EQ(end.exit_code, 0) << end.err;
  EXPECT_EQ(end.out.rfind("ended " + rid + " at ", 0), 0u) << end.out;
  const ProcessResult again =
      Officer({"restrictions", "end", "--patient", patient, "--id", rid, "--reason", "revoked"});
  EXPECT_EQ(again.exit_code, 1) << again.err;
  const ProcessResult ls_after = Officer({"restrictions", "ls", "--patient", patient});
  ASSERT_EQ(ls_after.exit_code, 0) << ls_after.err;
  EXPECT_EQ(ls_after.out.find(rid), std::string::npos) << ls_after.out;

  auto lifted = app.ReadContent(biller, bill);
  ASSERT_TRUE(lifted.ok()) << lifted.error().Message();
  EXPECT_EQ(lifted->bytes, "Synthetic claim 1.");

  const auto log = AuditLog();
  EXPECT_EQ(Entries(log, "restriction.add", "success").size(), 1u);
  EXPECT_EQ(Entries(log, "restriction.add", "error").size(), 2u);
  EXPECT_EQ(Entries(log, "restriction.list", "success").size(), 2u);
  EXPECT_EQ(Entries(log, "restriction.end", "success").size(), 1u);
  const auto denied_reads = Entries(log, "record.read", "denied", bill);
  ASSERT_EQ(denied_reads.size(), 3u);  // the app's, the CLI's, and as CLMATTCH
  for (const auto& a : denied_reads) EXPECT_EQ(a.entry.value("reason", ""), rule);
  const auto denied_disclosures = Entries(log, "record.disclose", "denied", bill);
  ASSERT_EQ(denied_disclosures.size(), 1u);
  EXPECT_EQ(denied_disclosures[0].entry.value("reason", ""), rule);
  EXPECT_EQ(Entries(log, "record.disclose", "success", other_bill).size(), 1u);
  EXPECT_EQ(Entries(log, "record.read", "success", bill).size(), 1u);
}

// 5. Break-glass: a reason opens a window, the window is listed for review and cannot be signed
// off while open, and its accesses are flagged in the audit log.
TEST_F(E2ePolicyTest, BreakGlassNeedsAReasonOpensAWindowAndIsReviewed) {
  const std::string patient = "SYNTH-POL-0005";
  const std::string id = StoreNote(patient, "Synthetic: allergic to penicillin.");
  ASSERT_FALSE(id.empty());
  client::Client app = vault_.AppClient();

  auto nurse = app.ReadContent(As("nurse.synthetic", "nurse", "ETREAT"), id);
  ASSERT_FALSE(nurse.ok()) << "emergency access without a reason";
  EXPECT_EQ(nurse.error().http_status, 403);
  EXPECT_NE(nurse.error().detail.find("X-Phivault-Break-Glass-Reason"), std::string::npos)
      << nurse.error().Message();

  const ProcessResult bare = Cli("physician", "ETREAT", {"get", id});
  EXPECT_EQ(bare.exit_code, 3) << bare.err;
  EXPECT_EQ(bare.out, "");
  EXPECT_NE(bare.err.find("X-Phivault-Break-Glass-Reason"), std::string::npos) << bare.err;

  const ProcessResult opened = Cli(
      "physician", "ETREAT", {"get", id, "--break-glass-reason", "unconscious on arrival (synth)"});
  ASSERT_EQ(opened.exit_code, 0) << opened.err;
  EXPECT_EQ(opened.out, "Synthetic: allergic to penicillin.");
  const ProcessResult within = Cli("physician", "ETREAT", {"get", id});
  ASSERT_EQ(within.exit_code, 0) << "a read within the open window was refused: " << within.err;

  // Neither the window nor a reason reaches a protected category.
  const std::string psy =
      Store(Physician("dr.author"), Synthetic(patient, "psychotherapy_note", "Synthetic session."));
  ASSERT_FALSE(psy.empty());
  const ProcessResult protected_read =
      Cli("physician", "ETREAT", {"get", psy, "--break-glass-reason", "still unconscious"});
  EXPECT_EQ(protected_read.exit_code, 3) << protected_read.out;
  EXPECT_EQ(protected_read.out, "");
  // Nor does it let the user write.
  const ProcessResult put =
      vault_.Cli({"put", "--patient", patient, "--category", "clinical_note", "--type",
                  "text/plain", "--encounter-date", "2026-10-01", "--author", "Dr. Synthetic"},
                 {{"PHIVAULT_ROLE", "physician"}, {"PHIVAULT_PURPOSE", "ETREAT"}},
                 "Synthetic emergency note.");
  EXPECT_EQ(put.exit_code, 3) << put.out << put.err;

  const ProcessResult review = Officer({"--json", "audit", "review", "--all"});
  ASSERT_EQ(review.exit_code, 0) << review.err;
  const json events = ParseJson(review.out).value("events", json::array());
  ASSERT_EQ(events.size(), 1u) << review.out;
  const json& e = events[0];
  EXPECT_EQ(e.value("status", ""), "open");
  EXPECT_EQ(e.value("user", ""), OperatorAccount());
  EXPECT_EQ(e.value("role", ""), "physician");
  EXPECT_EQ(e.value("patient_id", ""), patient);
  EXPECT_EQ(e.value("reason", ""), "unconscious on arrival (synth)");
  EXPECT_EQ(e.value("accesses", 0), 2);
  // Awaiting review means ended: an open window is not listed without --all.
  const ProcessResult pending = Officer({"--json", "audit", "review"});
  ASSERT_EQ(pending.exit_code, 0) << pending.err;
  EXPECT_TRUE(ParseJson(pending.out).value("events", json::array()).empty()) << pending.out;

  const ProcessResult sign =
      Officer({"audit", "review", "sign-off", e.value("id", ""), "--note", "too early"});
  EXPECT_EQ(sign.exit_code, 1) << sign.err;
  const ProcessResult missing =
      Officer({"audit", "review", "sign-off", std::string(22, 'A'), "--note", "x"});
  EXPECT_EQ(missing.exit_code, 4) << missing.err;

  const auto log = AuditLog();
  const auto starts = Entries(log, "breakglass.start", "success");
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_TRUE(starts[0].entry.value("btg", false));
  EXPECT_EQ(starts[0].phi.value("break_glass_reason", ""), "unconscious on arrival (synth)");
  const auto reads = Entries(log, "record.read", "success", id);
  size_t flagged = 0;
  for (const auto& a : reads) {
    if (a.entry.value("btg", false)) ++flagged;
  }
  EXPECT_EQ(flagged, 2u) << "the break-glass reads are not flagged btg=true";
  for (const auto& a : Entries(log, "record.read", "denied", id)) {
    EXPECT_FALSE(a.entry.value("btg", true));
  }
}

// A policy file the daemon is configured with, starting from the policy in force by default.
class E2ePolicyReloadTest : public E2ePolicyTest {
 protected:
  bool StartInSetUp() const override { return false; }

  void SetUp() override {
    E2ePolicyTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(vault_.Start());
    const ProcessResult show = Officer({"policy", "show"});
    ASSERT_EQ(show.exit_code, 0) << show.err;
    default_text_ = show.out;
    ASSERT_NE(default_text_.find("name = \"front-desk\""), std::string::npos);
    vault_.Stop();
    policy_path_ = vault_.ScratchPath("policy.toml");
    WriteFile(policy_path_, default_text_);
    vault_.EditConfig("socket_mode = \"0660\"",
                      "socket_mode = \"0660\"\npolicy_file = \"" + policy_path_ + "\"");
    ASSERT_TRUE(vault_.Start());
    insurance_ = Store(front_desk_, Synthetic(kPatient, "insurance", "Synthetic plan 123."));
    ASSERT_FALSE(insurance_.empty());
  }

  // True if front office reads the insurance record; a test failure if it fails otherwise than
  // with a policy denial.
  bool FrontDeskReadsInsurance() {
    client::Client app = vault_.AppClient();
    auto r = app.ReadContent(front_desk_, insurance_);
    if (r.ok()) return r->bytes == "Synthetic plan 123.";
    EXPECT_EQ(r.error().http_status, 403) << r.error().Message();
    return false;
  }

  std::string PolicySha() {
    const ProcessResult r = Officer({"--json", "policy", "show"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return ParseJson(r.out).value("sha256", "");
  }

  // The policy text with the front desk's categories replaced by `categories`.
  std::string WithFrontDeskCategories(const std::string& categories) const {
    const std::string from =
        "categories = [\"demographics\", \"insurance\", \"consent\", \"correspondence\"]";
    std::string text = default_text_;
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos);
    if (at != std::string::npos) text.replace(at, from.size(), categories);
    return text;
  }

  // 1-based line of the first occurrence of `needle` in `text`.
  static int LineOf(const std::string& text, const std::string& needle) {
    const size_t at = text.find(needle);
    if (at == std::string::npos) return 0;
    return 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
  }

  static constexpr char kPatient[] = "SYNTH-POL-0006";
  const client::Actor front_desk_ = As("fo.synthetic", "front_office", "HOPERAT");
  std::string default_text_, policy_path_, insurance_;
};

// 6. A bad policy file never replaces a good one; a good one takes effect and is kept in the
// history.
TEST_F(E2ePolicyReloadTest, ReloadRefusesBadFilesKeepsTheOldPolicyAndRecordsGoodOnes) {
  ASSERT_TRUE(FrontDeskReadsInsurance());
  const std::string sha = PolicySha();
  ASSERT_EQ(sha.size(), 64u);

  // A TOML syntax error.
  WriteFile(policy_path_, default_text_ + "\n[[permit]\n");
  // The unclosed table header is on the line after the blank one appended.
  const int syntax_line =
      static_cast<int>(std::count(default_text_.begin(), default_text_.end(), '\n')) + 2;
  const ProcessResult syntax = Admin({"policy", "reload"});
  EXPECT_EQ(syntax.exit_code, 1) << syntax.err;
  EXPECT_EQ(syntax.out, "");
  EXPECT_NE(syntax.err.find(policy_path_ + ":" + std::to_string(syntax_line) + ":"),
            std::string::npos)
      << "expected line " << syntax_line << ": " << syntax.err;
  EXPECT_TRUE(FrontDeskReadsInsurance()) << "the old policy is no longer in force";
  EXPECT_EQ(PolicySha(), sha);

  // An unknown role.
  std::string unknown = default_text_;
  const std::string roles = "roles = [\"front_office\"]\nactions = [\"create\", \"read\"";
  ASSERT_NE(unknown.find(roles), std::string::npos);
  unknown.replace(unknown.find(roles), roles.size(),
                  "roles = [\"front_office\", \"surgeon\"]\nactions = [\"create\", \"read\"");
  WriteFile(policy_path_, unknown);
  const ProcessResult role = Admin({"policy", "reload"});
  EXPECT_EQ(role.exit_code, 1) << role.err;
  const std::regex named(
      std::regex_replace(policy_path_, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
      R"(:[0-9]+: rule 'front-desk': unknown role 'surgeon')");
  EXPECT_TRUE(std::regex_search(role.err, named)) << role.err;
  EXPECT_TRUE(FrontDeskReadsInsurance()) << "the old policy is no longer in force";
  EXPECT_EQ(PolicySha(), sha);

  // A good change: front office no longer reads insurance.
  const std::string before = NowRfc3339();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const std::string changed =
      WithFrontDeskCategories(R"(categories = ["demographics", "consent", "correspondence"])");
  WriteFile(policy_path_, changed);
  const ProcessResult good = Admin({"policy", "reload"});
  ASSERT_EQ(good.exit_code, 0) << good.err;
  EXPECT_EQ(good.out.rfind("reloaded: policy \"small-practice-default\" (sha256 ", 0), 0u)
      << good.out;
  EXPECT_FALSE(FrontDeskReadsInsurance()) << "the new policy is not in force";
  client::Client app = vault_.AppClient();
  auto refused = app.ReadContent(front_desk_, insurance_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().rule, "default-deny");
  const std::string new_sha = PolicySha();
  EXPECT_NE(new_sha, sha);
  EXPECT_EQ(new_sha, Sha256Hex(changed));
  const ProcessResult unchanged = Admin({"policy", "reload"});
  ASSERT_EQ(unchanged.exit_code, 0) << unchanged.err;
  EXPECT_EQ(unchanged.out.rfind("unchanged: ", 0), 0u) << unchanged.out;

  const ProcessResult history = Officer({"--json", "policy", "history"});
  ASSERT_EQ(history.exit_code, 0) << history.err;
  const json versions = ParseJson(history.out).value("versions", json::array());
  ASSERT_EQ(versions.size(), 2u) << history.out;
  EXPECT_EQ(versions[0].value("sha256", ""), sha);
  EXPECT_TRUE(versions[0]["in_force_until"].is_string()) << history.out;
  EXPECT_EQ(versions[1].value("sha256", ""), new_sha);
  EXPECT_TRUE(versions[1]["in_force_until"].is_null()) << history.out;
  EXPECT_EQ(versions[0].value("in_force_until", ""), versions[1].value("in_force_from", ""))
      << "a gap or an overlap between two versions: " << history.out;
  EXPECT_LT(versions[0].value("in_force_from", ""), before);
  EXPECT_GT(versions[1].value("in_force_from", ""), before);
  const ProcessResult table = Officer({"policy", "history"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find(sha), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(new_sha), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("(in force)"), std::string::npos) << table.out;

  const ProcessResult old = Officer({"policy", "show", "--at", before});
  ASSERT_EQ(old.exit_code, 0) << old.err;
  EXPECT_EQ(old.out, default_text_);
  EXPECT_NE(old.err.find(sha), std::string::npos) << old.err;
  const ProcessResult now = Officer({"policy", "show"});
  ASSERT_EQ(now.exit_code, 0) << now.err;
  EXPECT_EQ(now.out, changed);
  const ProcessResult ancient = Officer({"policy", "show", "--at", "2001-01-01"});
  EXPECT_EQ(ancient.exit_code, 4) << ancient.err;

  const auto log = AuditLog();
  EXPECT_EQ(Entries(log, "policy.reload", "success").size(), 2u);
  EXPECT_EQ(Entries(log, "policy.reload", "error").size() +
                Entries(log, "policy.reload", "denied").size(),
            2u);
}

TEST_F(E2ePolicyReloadTest, SighupReloadsAGoodFileAndKeepsTheOldPolicyForABadOne) {
  ASSERT_TRUE(FrontDeskReadsInsurance());
  const std::string sha = PolicySha();
  const std::string changed =
      WithFrontDeskCategories(R"(categories = ["demographics", "consent", "correspondence"])");
  WriteFile(policy_path_, changed);
  ASSERT_EQ(kill(vault_.daemon().pid(), SIGHUP), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (PolicySha() == sha && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(PolicySha(), Sha256Hex(changed)) << "SIGHUP did not reload the policy";
  EXPECT_FALSE(FrontDeskReadsInsurance());
  const ProcessResult history = Officer({"--json", "policy", "history"});
  ASSERT_EQ(history.exit_code, 0) << history.err;
  EXPECT_EQ(ParseJson(history.out).value("versions", json::array()).size(), 2u) << history.out;

  WriteFile(policy_path_, changed + "\n[[permit]]\nname = \"broken\"\nroles = [\"surgeon\"]\n");
  ASSERT_EQ(kill(vault_.daemon().pid(), SIGHUP), 0);
  const std::string refusal = "SIGHUP: the policy in force is unchanged";
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (ReadFile(vault_.log_file()).find(refusal) == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(ReadFile(vault_.log_file()).find(refusal), std::string::npos)
      << "the daemon did not report the bad file";
  EXPECT_FALSE(vault_.daemon().Exited()) << "a bad policy file stopped the daemon";
  EXPECT_EQ(PolicySha(), Sha256Hex(changed));
  EXPECT_FALSE(FrontDeskReadsInsurance());
  const ProcessResult kept = Officer({"--json", "policy", "history"});
  ASSERT_EQ(kept.exit_code, 0) << kept.err;
  EXPECT_EQ(ParseJson(kept.out).value("versions", json::array()).size(), 2u) << kept.out;
  const std::string note = StoreNote(kPatient, "Synthetic: still serving.");
  EXPECT_EQ(ReadNote(note), "Synthetic: still serving.");
}

// 5. (continued) A window ends after its policy's window_minutes; it is then awaiting review,
// no longer lets reads in without a reason, and can be signed off once.
TEST_F(E2ePolicyReloadTest, BreakGlassWindowEndsAndIsSignedOffOnce) {
  std::string text = default_text_;
  const size_t at = text.find("window_minutes = 60");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, std::string("window_minutes = 60").size(), "window_minutes = 1");
  WriteFile(policy_path_, text);
  const ProcessResult reload = Admin({"policy", "reload"});
  ASSERT_EQ(reload.exit_code, 0) << reload.err;

  const std::string id = StoreNote(kPatient, "Synthetic: on warfarin.");
  const ProcessResult opened =
      Cli("nurse", "ETREAT", {"get", id, "--break-glass-reason", "collapsed in the lobby (synth)"});
  ASSERT_EQ(opened.exit_code, 0) << opened.err;

  // Wait (bounded) for the one-minute window to end.
  json event;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    const ProcessResult pending = Officer({"--json", "audit", "review"});
    ASSERT_EQ(pending.exit_code, 0) << pending.err;
    const json events = ParseJson(pending.out).value("events", json::array());
    if (!events.empty()) {
      event = events[0];
      break;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  ASSERT_TRUE(event.is_object()) << "the window did not end within two minutes";
  EXPECT_EQ(event.value("status", ""), "pending");
  EXPECT_EQ(event.value("role", ""), "nurse");
  EXPECT_EQ(event.value("accesses", 0), 1);
  EXPECT_TRUE(event["closed"].is_string()) << event.dump();

  const ProcessResult after = Cli("nurse", "ETREAT", {"get", id});
  EXPECT_EQ(after.exit_code, 3) << "the ended window still lets reads in: " << after.out;
  EXPECT_EQ(after.out, "");

  const std::string window = event.value("id", "");
  const ProcessResult sign =
      Officer({"audit", "review", "sign-off", window, "--note", "reviewed with the nurse"});
  ASSERT_EQ(sign.exit_code, 0) << sign.err;
  EXPECT_EQ(sign.out.rfind("signed off " + window + " by " + OperatorAccount() + " at ", 0), 0u)
      << sign.out;
  const ProcessResult twice = Officer({"audit", "review", "sign-off", window, "--note", "again"});
  EXPECT_EQ(twice.exit_code, 1) << twice.err;

  const ProcessResult pending = Officer({"--json", "audit", "review"});
  ASSERT_EQ(pending.exit_code, 0) << pending.err;
  EXPECT_TRUE(ParseJson(pending.out).value("events", json::array()).empty()) << pending.out;
  const ProcessResult all = Officer({"--json", "audit", "review", "--all"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  const json events = ParseJson(all.out).value("events", json::array());
  ASSERT_EQ(events.size(), 1u) << all.out;
  EXPECT_EQ(events[0].value("status", ""), "signed_off");
  EXPECT_EQ(events[0].value("signed_off_by", ""), OperatorAccount());
  EXPECT_EQ(events[0].value("note", ""), "reviewed with the nurse");

  const auto log = AuditLog();
  EXPECT_EQ(Entries(log, "breakglass.end", "success").size(), 1u);
  EXPECT_EQ(Entries(log, "audit.sign-off", "success").size(), 1u);
}

// 7. `policy check` explains a decision on a record from its metadata, never its content.
TEST_F(E2ePolicyTest, PolicyCheckExplainsDecisionsWithoutReturningContent) {
  const std::string canary = "Synthetic canary " + RandomHex(8);
  const std::string id = StoreNote("SYNTH-POL-0007", canary);
  ASSERT_FALSE(id.empty());

  const ProcessResult deny =
      Officer({"policy", "check", "--as", "fo.synthetic", "--role", "front_office", "--purpose",
               "HOPERAT", "--action", "read", "--record", id});
  EXPECT_EQ(deny.exit_code, 3) << deny.err;
  EXPECT_EQ(deny.out.rfind("deny\n", 0), 0u) << deny.out;
  EXPECT_NE(deny.out.find("rule:        default-deny"), std::string::npos) << deny.out;
  EXPECT_NE(deny.out.find("category:    clinical_note\n"), std::string::npos) << deny.out;
  EXPECT_NE(deny.out.find("front_office"), std::string::npos) << deny.out;

  const ProcessResult allow =
      Officer({"policy", "check", "--as", "billing.synthetic", "--role", "billing", "--purpose",
               "HPAYMT", "--action", "read", "--record", id});
  EXPECT_EQ(allow.exit_code, 0) << allow.err;
  EXPECT_EQ(allow.out.rfind("allow\n", 0), 0u) << allow.out;
  EXPECT_NE(allow.out.find("rule:        billing-coding"), std::string::npos) << allow.out;

  // The note's author (Physician()'s user) is recognised as such.
  const ProcessResult author =
      Officer({"--json", "policy", "check", "--as", Physician().user, "--role", "physician",
               "--purpose", "TREAT", "--action", "amend", "--record", id});
  EXPECT_EQ(author.exit_code, 0) << author.err;
  const json j = ParseJson(author.out);
  EXPECT_EQ(j.value("allowed", false), true) << author.out;
  EXPECT_EQ(j.value("rule", ""), "clinical-care");
  EXPECT_EQ(j.value("category", ""), "clinical_note");
  EXPECT_EQ(j.value("is_author", false), true);

  for (const auto* r : {&deny, &allow, &author}) {
    EXPECT_EQ(r->out.find("canary"), std::string::npos) << r->out;
    EXPECT_EQ(r->err.find("canary"), std::string::npos) << r->err;
  }
  const auto log = AuditLog();
  EXPECT_EQ(Entries(log, "policy.check", "success").size(), 3u);
  EXPECT_TRUE(Entries(log, "record.read", "success", id).empty()) << "the check read the record";
}

// 8. The patient's export: every version of every record but psychotherapy notes, each file as
// its manifest hash says, to be delivered to the confidential contact.
TEST_F(E2ePolicyTest, PatientExportHoldsEveryVersionButPsychotherapyNotes) {
  const std::string patient = "SYNTH-POL-0008";
  client::Actor clinician = Physician();
  clinician.consent = "consent:2026/0008";
  const std::string note = Store(clinician, Synthetic(patient, "clinical_note", "Synth v1."));
  const std::string psy =
      Store(clinician, Synthetic(patient, "psychotherapy_note", "Synthetic private session."));
  const std::string sud = Store(clinician, Synthetic(patient, "substance_use", "Synth SUD."));
  const std::string ins = Store(As("fo.synthetic", "front_office", "HOPERAT"),
                                Synthetic(patient, "insurance", "Synth plan 8."));
  const std::string elsewhere = StoreNote("SYNTH-POL-0088", "Another patient's note.");
  for (const auto* id : {&note, &psy, &sud, &ins, &elsewhere}) ASSERT_FALSE(id->empty());
  client::Client app = vault_.AppClient();
  auto v2 = app.AmendRecord(Physician(), note, {.reason = "corrected", .content = "Synth v2."});
  ASSERT_TRUE(v2.ok()) << v2.error().Message();

  const ProcessResult contact = Cli("front_office", "PATRQT",
                                    {"patient", "contact", "set", "--patient", patient, "--address",
                                     "PO Box 1, Springfield", "--channel", "mail"});
  ASSERT_EQ(contact.exit_code, 0) << contact.err;

  // Billing may not export: refused, and no file is left behind.
  const std::string refused_out = vault_.ScratchPath("refused.tar");
  const ProcessResult refused =
      Cli("billing", "PATRQT", {"patient", "export", "--patient", patient, "-o", refused_out});
  EXPECT_EQ(refused.exit_code, 3) << refused.err;
  EXPECT_FALSE(std::filesystem::exists(refused_out));

  const std::string out = vault_.ScratchPath("out.tar");
  const ProcessResult exported =
      Cli("front_office", "PATRQT", {"patient", "export", "--patient", patient, "-o", out});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  struct stat st {};
  ASSERT_EQ(::stat(out.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string tar = ReadFile(out);
  EXPECT_EQ(tar.find("Synthetic private session"), std::string::npos);
  EXPECT_EQ(tar.find("Another patient"), std::string::npos);
  const auto files = ReadTar(tar);
  ASSERT_TRUE(files.contains("manifest.json"));
  const json manifest = ParseJson(files.at("manifest.json"));
  ASSERT_TRUE(manifest.is_object()) << files.at("manifest.json");
  EXPECT_EQ(manifest.value("patient_id", ""), patient);
  EXPECT_EQ(manifest.value("withheld", -1), 1);
  EXPECT_FALSE(manifest.value("withheld_reason", "").empty());
  ASSERT_TRUE(manifest["deliver_to"].is_object()) << manifest.dump();
  EXPECT_EQ(manifest["deliver_to"].value("address", ""), "PO Box 1, Springfield");
  EXPECT_EQ(manifest["deliver_to"].value("channel", ""), "mail");

  const std::map<std::string, std::string> expected = {{note + "@1", "Synth v1."},
                                                       {note + "@2", "Synth v2."},
                                                       {sud + "@1", "Synth SUD."},
                                                       {ins + "@1", "Synth plan 8."}};
  std::map<std::string, std::string> listed;
  for (const auto& r : manifest.value("records", json::array())) {
    const std::string key = r.value("record_id", "") + "@" + std::to_string(r.value("version", 0));
    const std::string file = r.value("file", "");
    EXPECT_EQ(file.rfind("records/" + r.value("record_id", "") + "/v" +
                             std::to_string(r.value("version", 0)) + ".",
                         0),
              0u)
        << file;
    ASSERT_TRUE(files.contains(file)) << file << " is listed but not in the tar";
    EXPECT_EQ(r.value("sha256", ""), Sha256Hex(files.at(file))) << file;
    listed[key] = files.at(file);
  }
  EXPECT_EQ(listed, expected);
  EXPECT_EQ(files.size(), expected.size() + 1) << "the tar holds files the manifest omits";

  const ProcessResult accounting = Officer({"report", "accounting", "--patient", patient});
  ASSERT_EQ(accounting.exit_code, 0) << accounting.err;
  const json report = ParseJson(accounting.out);
  ASSERT_TRUE(report.is_object()) << accounting.out;
  ASSERT_TRUE(report["deliver_to"].is_object()) << accounting.out;
  EXPECT_EQ(report["deliver_to"].value("address", ""), "PO Box 1, Springfield");
  EXPECT_EQ(report["deliver_to"].value("channel", ""), "mail");

  const auto exports = Entries(AuditLog(), "record.disclose", "success");
  ASSERT_FALSE(exports.empty()) << "the export is not audited as a disclosure";
}

// 9. Patient requests keep their deadlines: 30 days for access, one extension, overdue ones
// listed.
TEST_F(E2ePolicyTest, PatientRequestsKeepTheirDeadlines) {
  const std::string patient = "SYNTH-POL-0009";
  auto front_desk = [&](const std::vector<std::string>& args) {
    return Cli("front_office", "PATRQT", args);
  };
  const ProcessResult opened = front_desk(
      {"requests", "open", "--patient", patient, "--kind", "access", "--received", "2026-11-01"});
  ASSERT_EQ(opened.exit_code, 0) << opened.err;
  const std::smatch m = [&] {
    std::smatch s;
    std::regex_match(opened.out, s, std::regex("(\\S+) due (\\S+)\n"));
    return s;
  }();
  ASSERT_EQ(m.size(), 3u) << opened.out;
  const std::string rid = m[1];
  EXPECT_EQ(m[2], "2026-12-01");

  const ProcessResult extended = front_desk({"requests", "extend", rid, "--reason", "archive"});
  ASSERT_EQ(extended.exit_code, 0) << extended.err;
  EXPECT_EQ(extended.out, rid + " due 2026-12-31\n");
  const ProcessResult twice = front_desk({"requests", "extend", rid, "--reason", "again"});
  EXPECT_EQ(twice.exit_code, 1) << twice.err;

  const std::string delivered = Sha256Hex("synthetic export");
  const ProcessResult closed =
      front_desk({"requests", "close", rid, "--outcome", "fulfilled", "--delivered", delivered});
  ASSERT_EQ(closed.exit_code, 0) << closed.err;
  const ProcessResult reclosed =
      front_desk({"requests", "close", rid, "--outcome", "fulfilled", "--delivered", delivered});
  EXPECT_EQ(reclosed.exit_code, 1) << reclosed.err;

  const ProcessResult late = front_desk(
      {"requests", "open", "--patient", patient, "--kind", "access", "--received", UtcDate(-40)});
  ASSERT_EQ(late.exit_code, 0) << late.err;
  const std::string late_id = late.out.substr(0, late.out.find(' '));
  const ProcessResult fresh =
      front_desk({"requests", "open", "--patient", patient, "--kind", "amendment"});
  ASSERT_EQ(fresh.exit_code, 0) << fresh.err;
  const std::string fresh_id = fresh.out.substr(0, fresh.out.find(' '));
  EXPECT_EQ(fresh.out, fresh_id + " due " + UtcDate(60) + "\n");

  const ProcessResult closed_extend =
      front_desk({"requests", "extend", rid, "--reason", "after closing"});
  EXPECT_EQ(closed_extend.exit_code, 1) << closed_extend.err;

  const ProcessResult overdue = front_desk({"requests", "ls", "--overdue"});
  ASSERT_EQ(overdue.exit_code, 0) << overdue.err;
  EXPECT_NE(overdue.out.find(late_id), std::string::npos) << overdue.out;
  EXPECT_NE(overdue.out.find("OVERDUE"), std::string::npos) << overdue.out;
  EXPECT_EQ(overdue.out.find(fresh_id), std::string::npos) << overdue.out;
  EXPECT_EQ(overdue.out.find(rid), std::string::npos) << overdue.out;

  const ProcessResult all = front_desk({"--json", "requests", "ls", "--all"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  const json requests = ParseJson(all.out).value("requests", json::array());
  ASSERT_EQ(requests.size(), 3u) << all.out;
  for (const auto& r : requests) {
    if (r.value("id", "") != rid) continue;
    EXPECT_EQ(r.value("status", ""), "closed");
    EXPECT_EQ(r.value("outcome", ""), "fulfilled");
    EXPECT_EQ(r.value("delivered", ""), delivered);
    EXPECT_EQ(r.value("due", ""), "2026-12-31");
    EXPECT_TRUE(r.value("extended", false));
  }
}

}  // namespace
}  // namespace phivault::e2e
