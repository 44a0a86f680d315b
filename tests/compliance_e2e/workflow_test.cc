// The compliance officer's workflow with the `phivault` CLI alone (issue 3, "Done when"): record
// disclosures, export the audit log, fetch the verifier key, verify the export offline, read a
// signed checkpoint, prove an entry's inclusion, and produce the patient's accounting of
// disclosures as HTML and CSV.
#include <sys/stat.h>

#include <algorithm>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/compliance_e2e/compliance_harness.h"

namespace phivault::compliance_e2e {
namespace {

using e2e::ReadFile;

uint64_t AuditEntries(Vault& vault) {
  client::Client c = vault.AppClient();
  auto s = c.Status(e2e::Physician());
  EXPECT_TRUE(s.ok()) << s.error().Message();
  return s.ok() ? s->audit_entries : 0;
}

// Column `name` of `row`, given the header row.
std::string Column(const std::vector<std::string>& header, const std::vector<std::string>& row,
                   std::string_view name) {
  auto it = std::find(header.begin(), header.end(), name);
  EXPECT_NE(it, header.end()) << "CSV has no column " << name;
  const auto i = static_cast<size_t>(it - header.begin());
  return it == header.end() || i >= row.size() ? std::string() : row[i];
}

using ComplianceE2eWorkflowTest = ComplianceVaultTest;

TEST_F(ComplianceE2eWorkflowTest, OfficerExportsVerifiesAndReportsWithTheCliAlone) {
  const PracticeDay day = RecordPracticeDay(vault_);
  ASSERT_FALSE(HasFailure());

  // The verifier key, in signed-note form: <name>+<8 hex key id>+<base64(0x01 || key)>.
  auto pub = Officer(vault_, {"audit", "pubkey"});
  ASSERT_EQ(pub.exit_code, 0) << Describe(pub);
  const auto pub_lines = Lines(pub.out);
  ASSERT_EQ(pub_lines.size(), 1u) << Describe(pub);
  const std::string vkey = pub_lines[0];
  std::smatch key_parts;
  ASSERT_TRUE(std::regex_match(vkey, key_parts, std::regex(R"(([^+\s]+)\+([0-9a-f]{8})\+(\S+))")))
      << vkey;
  const std::string key_name = key_parts[1].str();

  // A fresh signed checkpoint, then the newest one: the same note (reading checkpoints is not
  // audited, so the log did not grow in between).
  auto fresh = Officer(vault_, {"audit", "checkpoint", "--new"});
  ASSERT_EQ(fresh.exit_code, 0) << Describe(fresh);
  const CheckpointNote fresh_note = ParseCheckpoint(fresh.out);
  EXPECT_EQ(fresh_note.origin, key_name) << "the checkpoint's origin is the key's name";
  EXPECT_EQ(fresh_note.size, AuditEntries(vault_)) << "a fresh checkpoint covers the whole log";
  auto newest = Officer(vault_, {"audit", "checkpoint"});
  ASSERT_EQ(newest.exit_code, 0) << Describe(newest);
  EXPECT_EQ(newest.out, fresh.out);
  ParseCheckpoint(newest.out);

  // The full export (JSON Lines) to a private file.
  const std::string export_path = vault_.ScratchPath("audit.jsonl");
  auto exp = Officer(vault_, {"audit", "export", "-o", export_path});
  ASSERT_EQ(exp.exit_code, 0) << Describe(exp);
  struct stat st;
  ASSERT_EQ(::stat(export_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the export names who saw which patient: mode 0600";
  const auto lines = ParseExport(ReadFile(export_path));
  const auto entries =
      std::count_if(lines.begin(), lines.end(), [](const ExportLine& l) { return l.is_entry(); });
  const auto checkpoints = std::count_if(lines.begin(), lines.end(),
                                         [](const ExportLine& l) { return l.is_checkpoint(); });
  EXPECT_EQ(static_cast<uint64_t>(entries), AuditEntries(vault_))
      << "the export holds every entry, including the one recording the export itself";
  EXPECT_GE(checkpoints, 1);
  EXPECT_EQ(entries + checkpoints, static_cast<long>(lines.size())) << "only entry and checkpoint "
                                                                       "lines";
  // 2 creates + 5 disclosures + 1 export at least, and every entry says what it was.
  EXPECT_GE(entries, 8);

  // Offline verification: no daemon is reachable from this process.
  auto verify = e2e::RunProcess({PHIVAULT_CLI_PATH, "audit", "verify", export_path, "--key", vkey},
                                vault_.ScratchPath(""),
                                {{"PHIVAULT_SOCKET", vault_.ScratchPath("no-daemon.sock")}});
  EXPECT_EQ(verify.exit_code, 0) << Describe(verify);
  VerifySummary summary;
  ASSERT_TRUE(ParseVerifySummary(verify.out, summary)) << Describe(verify);
  EXPECT_EQ(summary.entries, static_cast<uint64_t>(entries));
  EXPECT_EQ(summary.checkpoints, static_cast<uint64_t>(checkpoints));
  EXPECT_GE(summary.covered, fresh_note.size) << "the fresh checkpoint covers its entries";
  EXPECT_LE(summary.covered, summary.entries);

  // An inclusion proof for one of the disclosures, checked by the CLI against a signed
  // checkpoint.
  auto prove = Officer(vault_, {"audit", "prove", "--seq", "4"});
  EXPECT_EQ(prove.exit_code, 0) << Describe(prove);

  // The accounting of disclosures, printable (HTML) and for a spreadsheet (CSV).
  const std::string html_path = vault_.ScratchPath("accounting.html");
  auto html = Officer(vault_, {"report", "accounting", "--patient", day.patient, "--format", "html",
                               "-o", html_path});
  ASSERT_EQ(html.exit_code, 0) << Describe(html);
  const std::string page = ReadFile(html_path);
  EXPECT_NE(page.find("Accounting of Disclosures"), std::string::npos);
  EXPECT_NE(page.find(day.health_department), std::string::npos);
  EXPECT_NE(page.find(day.health_department_address), std::string::npos);
  EXPECT_NE(page.find(day.registry), std::string::npos);
  EXPECT_NE(page.find(std::to_string(PracticeDay::kRegistryDisclosures) + " disclosures"),
            std::string::npos);
  EXPECT_EQ(page.find(day.referral_clinic), std::string::npos)
      << "treatment disclosures are excluded from an accounting (45 CFR 164.528(a)(1)(i))";

  const std::string csv_path = vault_.ScratchPath("accounting.csv");
  auto csv = Officer(vault_, {"report", "accounting", "--patient", day.patient, "--format", "csv",
                              "-o", csv_path});
  ASSERT_EQ(csv.exit_code, 0) << Describe(csv);
  const std::string csv_text = ReadFile(csv_path);
  EXPECT_EQ(csv_text.find(day.referral_clinic), std::string::npos)
      << "treatment disclosures are excluded from an accounting (45 CFR 164.528(a)(1)(i))";
  const auto rows = ParseCsv(csv_text);
  ASSERT_GE(rows.size(), 1u) << csv_text;
  const auto& header = rows[0];
  ASSERT_EQ(rows.size(), 4u) << "health department, registry (summarised) and police:\n"
                             << csv_text;
  auto row_for = [&](const std::string& recipient) -> const std::vector<std::string>* {
    for (size_t i = 1; i < rows.size(); ++i) {
      if (Column(header, rows[i], "recipient_name") == recipient) return &rows[i];
    }
    ADD_FAILURE() << "no CSV row for " << recipient << ":\n" << csv_text;
    return nullptr;
  };
  if (const auto* r = row_for(day.health_department)) {
    EXPECT_EQ(Column(header, *r, "recipient_address"), day.health_department_address);
    EXPECT_EQ(Column(header, *r, "basis"), "public_health");
    EXPECT_EQ(Column(header, *r, "disclosure_count"), "1");
    EXPECT_EQ(Column(header, *r, "summarised"), "no");
    EXPECT_EQ(Column(header, *r, "record_ids"), day.record_ids[1]);
    EXPECT_EQ(Column(header, *r, "date"), day.health_department_date);
  }
  if (const auto* r = row_for(day.registry)) {
    EXPECT_EQ(Column(header, *r, "disclosure_count"),
              std::to_string(PracticeDay::kRegistryDisclosures));
    EXPECT_EQ(Column(header, *r, "summarised"), "yes");
    EXPECT_EQ(Column(header, *r, "date"), day.registry_first_date)
        << "the first disclosure is shown";
    EXPECT_EQ(Column(header, *r, "last_disclosure_date"), day.registry_last_date);
    EXPECT_EQ(Column(header, *r, "purpose"), "Cancer registry reporting required by state law");
  }
  if (const auto* r = row_for(day.police)) {
    EXPECT_EQ(Column(header, *r, "basis"), "law_enforcement");
    EXPECT_EQ(Column(header, *r, "record_ids"), day.record_ids[0]);
  }
}

}  // namespace
}  // namespace phivault::compliance_e2e
