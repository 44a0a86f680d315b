#include "tests/compliance_e2e/compliance_harness.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <regex>

#include "crypto/hash.h"
#include "crypto/secret.h"

namespace phivault::compliance_e2e {
namespace {

using e2e::ReadFile;
using e2e::WriteFile;

constexpr std::string_view kOfficerUser = "officer.synthetic";
constexpr std::string_view kOfficerPurpose = "HCOMPL";  // HL7 v3 "health compliance"

std::string TomlStringList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i == 0 ? "\"" : ", \"") + items[i] + "\"";
  return out + "]";
}

std::vector<std::string> QuotedStrings(std::string_view line) {
  std::vector<std::string> out;
  size_t at = 0;
  while ((at = line.find('"', at)) != std::string_view::npos) {
    const size_t end = line.find('"', at + 1);
    if (end == std::string_view::npos) break;
    out.emplace_back(line.substr(at + 1, end - at - 1));
    at = end + 1;
  }
  return out;
}

}  // namespace

const std::vector<std::string>& AllActions() {
  static const std::vector<std::string> actions = {
      "record.create",     "record.read",     "record.amend",
      "record.list",       "record.disclose", "disclosure.suspend",
      "report.accounting", "report.access",   "audit.export",
      "audit.verify",      "status"};
  return actions;
}

ConfigChanges PrepareForCompliance(Vault& vault, std::string_view root_keys) {
  ConfigChanges changes;
  std::vector<std::string> lines = Lines(ReadFile(vault.config_path()));
  int action_lists = 0;
  bool in_operator = false, saw_operator = false;
  for (auto& line : lines) {
    if (line.rfind("[", 0) == 0) in_operator = line == "[[operators]]";
    saw_operator |= in_operator;
    if (line.rfind("actions = [", 0) == 0) {
      ++action_lists;
      const auto granted = QuotedStrings(line);
      for (const auto& a : AllActions()) {
        if (std::find(granted.begin(), granted.end(), a) == granted.end() &&
            std::find(changes.actions_added.begin(), changes.actions_added.end(), a) ==
                changes.actions_added.end()) {
          changes.actions_added.push_back(a);
        }
      }
      line = "actions = " + TomlStringList(AllActions());
    } else if (in_operator && line.rfind("role = ", 0) == 0) {
      const std::string wanted = "role = \"" + std::string(kOfficerRole) + "\"";
      if (line != wanted) {
        changes.operator_role_changed = true;
        line = wanted;
      }
    }
  }
  EXPECT_GE(action_lists, 2) << "phivault init should write an application and an operator";
  EXPECT_TRUE(saw_operator) << "phivault init wrote no [[operators]] entry";
  std::string text;
  if (!root_keys.empty()) text = std::string(root_keys) + "\n";
  text += JoinLines(lines);
  WriteFile(vault.config_path(), text);
  return changes;
}

ProcessResult Officer(Vault& vault, std::vector<std::string> args) {
  const bool has_purpose = std::find(args.begin(), args.end(), "--purpose") != args.end();
  std::vector<std::string> argv = {"--role", std::string(kOfficerRole), "--as",
                                   std::string(kOfficerUser)};
  if (!has_purpose) {
    argv.push_back("--purpose");
    argv.emplace_back(kOfficerPurpose);
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return vault.Cli(argv);
}

ProcessResult PhysicianCli(Vault& vault, std::vector<std::string> args) {
  std::vector<std::string> argv = {"--role", "physician", "--as", "dr.synthetic"};
  if (std::find(args.begin(), args.end(), "--purpose") == args.end()) {
    argv.insert(argv.end(), {"--purpose", "TREAT"});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return vault.Cli(argv, {{"PHIVAULT_TOKEN", vault.token()}});
}

std::string Describe(const ProcessResult& r) {
  std::string s = "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "");
  s += "\n--- stdout:\n" + r.out.substr(0, 4000) + "\n--- stderr:\n" + r.err.substr(0, 4000);
  return s;
}

std::string DaysAgo(int days) {
  const auto t = std::chrono::system_clock::now() - std::chrono::hours(24) * days;
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[16];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
  return buf;
}

PracticeDay RecordPracticeDay(Vault& vault) {
  PracticeDay day;
  day.patient = "synthetic-patient-" + e2e::RandomHex(4);
  day.record_content = "Synthetic note: notifiable condition suspected; culture sent.";
  day.health_department = "Synthetic County Health Department";
  day.health_department_address = "100 Example Avenue, Springfield, ST 00000";
  day.referral_clinic = "Synthetic Cardiology Referral Clinic";
  day.registry = "Synthetic State Cancer Registry";
  day.police = "Synthetic City Police Department";

  day.health_department_date = DaysAgo(40);
  day.registry_first_date = DaysAgo(30);
  const std::string note = vault.ScratchPath("note.txt");
  for (int i = 0; i < 2; ++i) {
    WriteFile(note, i == 0 ? day.record_content : "Synthetic lab result " + std::to_string(i));
    auto put =
        PhysicianCli(vault, {"put", "--patient", day.patient, "--category",
                             i == 0 ? "clinical_note" : "lab_result", "--type", "text/plain",
                             "--encounter-date", DaysAgo(50), "--author", "Dr. Synthetic", note});
    EXPECT_EQ(put.exit_code, 0) << Describe(put);
    if (put.exit_code != 0) return day;
    day.record_ids.push_back(Lines(put.out).empty() ? "" : Lines(put.out).front());
  }

  auto disclose = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "disclose");
    auto r = Officer(vault, args);
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_FALSE(Lines(r.out).empty()) << "disclose should print the audit seq";
  };
  // The officer records disclosures made outside the vault as an operations task (HOPERAT); each
  // disclosure's own purpose follows from its basis.
  disclose({"--purpose", "HOPERAT", "--patient", day.patient, "--recipient", day.health_department,
            "--address", day.health_department_address, "--basis", "public_health", "--description",
            "Laboratory result for a notifiable condition", "--record", day.record_ids[1], "--date",
            day.health_department_date});
  disclose({"--purpose", "HOPERAT", "--patient", day.patient, "--recipient", day.referral_clinic,
            "--basis", "tpo_treatment", "--description", "Referral letter and clinical note",
            "--record", day.record_ids[0], "--date", DaysAgo(35)});
  for (int i = 0; i < PracticeDay::kRegistryDisclosures; ++i) {
    day.registry_last_date = i == 0 ? day.registry_first_date : DaysAgo(30 - 10 * i);
    disclose({"--purpose", "HOPERAT", "--patient", day.patient, "--recipient", day.registry,
              "--basis", "public_health", "--description", "Tumour registry abstract",
              "--statement", "Cancer registry reporting required by state law", "--date",
              day.registry_last_date});
  }
  // Clinical content leaves only through a clinician (the compliance role reads none): the
  // physician answers the warrant.
  auto get = PhysicianCli(vault, {"--purpose", "HLEGAL", "get", day.record_ids[0], "--disclose-to",
                                  day.police, "--basis", "law_enforcement", "--description",
                                  "Clinical note requested by court-ordered warrant"});
  EXPECT_EQ(get.exit_code, 0) << Describe(get);
  EXPECT_EQ(get.out, day.record_content) << "get --disclose-to prints the record it disclosed";
  return day;
}

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.emplace_back(line);
    start = end + 1;
  }
  return out;
}

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

std::vector<std::vector<std::string>> ParseCsv(std::string_view text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, field_started = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
      field_started = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      field_started = true;
    } else if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (field_started || !field.empty() || !row.empty()) {
        row.push_back(std::move(field));
        rows.push_back(std::move(row));
      }
      row.clear();
      field.clear();
      field_started = false;
    } else {
      field += c;
      field_started = true;
    }
  }
  if (field_started || !field.empty() || !row.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<ExportLine> ParseExport(std::string_view text) {
  std::vector<ExportLine> out;
  for (auto& line : Lines(text)) {
    if (line.empty()) continue;
    ExportLine l{.raw = line, .json = nlohmann::json::parse(line, nullptr, false)};
    out.push_back(std::move(l));
  }
  return out;
}

CheckpointNote ParseCheckpoint(std::string_view text) {
  CheckpointNote note;
  const auto lines = Lines(text);
  EXPECT_GE(lines.size(), 6u) << "a checkpoint note has origin, size, root, its signing time, a "
                                 "blank line and a signature line:\n"
                              << text;
  if (lines.size() < 6) return note;
  note.origin = lines[0];
  EXPECT_FALSE(note.origin.empty());
  EXPECT_TRUE(std::regex_match(lines[1], std::regex("[1-9][0-9]*"))) << "size line: " << lines[1];
  note.size = std::strtoull(lines[1].c_str(), nullptr, 10);
  note.root_base64 = lines[2];
  auto root = crypto::Base64Decode(note.root_base64);
  EXPECT_TRUE(root.ok() && root->size() == 32)
      << "root line is not base64 of 32 bytes: " << lines[2];
  EXPECT_TRUE(std::regex_match(lines[3], std::regex("time [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:"
                                                    "[0-9]{2}:[0-9]{2}Z")))
      << "the first extension line is the signing time: " << lines[3];
  note.time = lines[3].substr(5);
  EXPECT_EQ(lines[4], "") << "the signature block follows a blank line";
  note.signature_line = lines[5];
  const std::string prefix = "\u2014 " + note.origin + " ";
  EXPECT_EQ(note.signature_line.rfind(prefix, 0), 0u)
      << "signature line should start with an em dash, a space and the key name: "
      << note.signature_line;
  if (note.signature_line.rfind(prefix, 0) == 0) {
    auto sig = crypto::Base64Decode(note.signature_line.substr(prefix.size()));
    EXPECT_TRUE(sig.ok() && sig->size() == 68) << "key id (4) + Ed25519 signature (64)";
  }
  return note;
}

bool ParseVerifySummary(std::string_view out, VerifySummary& summary) {
  static const std::regex re(R"(ok: ([0-9]+) entries, ([0-9]+) checkpoints?, ([0-9]+) covered)");
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_search(out.begin(), out.end(), m, re)) return false;
  summary.entries = std::stoull(m[1].str());
  summary.checkpoints = std::stoull(m[2].str());
  summary.covered = std::stoull(m[3].str());
  return true;
}

bool IsExecutable(const std::string& path) {
  struct stat st;
  return !path.empty() && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         ::access(path.c_str(), X_OK) == 0;
}

void ComplianceVaultTest::SetUp() {
  ASSERT_TRUE(crypto::InitSodium().ok());
  ASSERT_TRUE(vault_.ok());
  changes_ = PrepareForCompliance(vault_, RootConfigKeys());
  ASSERT_FALSE(HasFailure());
  if (!changes_.actions_added.empty()) {
    std::string added;
    for (const auto& a : changes_.actions_added) added += (added.empty() ? "" : " ") + a;
    RecordProperty("actions_not_written_by_init", added);
  }
  ASSERT_TRUE(vault_.Start());
}

void ComplianceVaultTest::TearDown() {
  if (vault_.daemon().running()) vault_.Stop();
}

}  // namespace phivault::compliance_e2e
