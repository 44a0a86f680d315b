// Shared pieces of the compliance end-to-end tests: a vault from tests/e2e/harness.h whose
// configuration lets the compliance officer (an operator at the CLI) use the audit, disclosure and
// report commands, the CLI run as that officer or as a physician through the application token,
// a small synthetic practice day recorded with the CLI alone, and readers for what the CLI writes
// (export lines, CSV, checkpoint notes).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/e2e/harness.h"

namespace phivault::compliance_e2e {

using e2e::ProcessResult;
using e2e::Vault;

inline constexpr std::string_view kOfficerRole = "compliance_officer";
inline constexpr int kExitVerificationFailed = 7;

// Every action the daemon knows (docs/configuration.md, "Actions").
const std::vector<std::string>& AllActions();

// What PrepareForCompliance had to change in the configuration `phivault init` wrote.
struct ConfigChanges {
  std::vector<std::string> actions_added;  // actions init's lists did not grant
  bool operator_role_changed = false;      // the operator's role was not the compliance role
};

// Before the daemon starts: grants every action to the application and the operator, makes the
// operator (the person at the CLI, recognised by uid) act as the compliance officer, and applies
// `root_keys` (e.g. "audit_checkpoint_interval_seconds = 1") at the top level. Adds a test
// failure if the configuration does not have the shape `phivault init` documents.
ConfigChanges PrepareForCompliance(Vault& vault, std::string_view root_keys = "");

// The CLI as the compliance officer: an operator (no token), role compliance_officer.
ProcessResult Officer(Vault& vault, std::vector<std::string> args);
// The CLI as a physician: the application token, role physician, purpose TREAT.
ProcessResult PhysicianCli(Vault& vault, std::vector<std::string> args);

// `what` with the process's exit code and both output streams, for assertion messages.
std::string Describe(const ProcessResult& r);

// A synthetic patient's records and the disclosures made from them, recorded with the CLI alone.
struct PracticeDay {
  std::string patient;
  std::vector<std::string> record_ids;
  std::string record_content;     // content of record_ids[0]
  std::string health_department;  // public_health, once, with an address
  std::string health_department_address;
  std::string health_department_date;  // YYYY-MM-DD
  std::string referral_clinic;         // tpo_treatment: never in an accounting
  std::string registry;                // public_health, kRegistryDisclosures times, same purpose
  std::string registry_first_date;     // YYYY-MM-DD of the first registry disclosure
  std::string registry_last_date;      // YYYY-MM-DD of the last registry disclosure
  std::string police;                  // law_enforcement, through `phivault get --disclose-to`
  static constexpr int kRegistryDisclosures = 3;
};
// Records a PracticeDay (fails the test on any CLI error; check HasFatalFailure()).
PracticeDay RecordPracticeDay(Vault& vault);

// The date `days` days before today (UTC), YYYY-MM-DD.
std::string DaysAgo(int days);

// Splits text into lines without their terminators; no trailing empty line.
std::vector<std::string> Lines(std::string_view text);
std::string JoinLines(const std::vector<std::string>& lines);

// RFC 4180 CSV (quoted fields, doubled quotes, CRLF or LF line ends) as rows of fields.
std::vector<std::vector<std::string>> ParseCsv(std::string_view text);

// One line of a JSON Lines audit export.
struct ExportLine {
  std::string raw;
  nlohmann::json json;  // discarded if the line is not JSON
  bool is_entry() const { return json.is_object() && json.value("type", "") == "entry"; }
  bool is_checkpoint() const { return json.is_object() && json.value("type", "") == "checkpoint"; }
  int64_t index() const { return is_entry() ? json.value("index", int64_t{-1}) : -1; }
};
std::vector<ExportLine> ParseExport(std::string_view text);

// A C2SP signed note as printed by `phivault audit checkpoint`.
struct CheckpointNote {
  std::string origin;
  uint64_t size = 0;
  std::string root_base64;
  std::string time;            // the signing time, RFC 3339 UTC, from the "time" line
  std::string signature_line;  // "— <key name> <base64>"
};
// Fails the test (and returns what it could read) unless `text` is a well-formed checkpoint.
CheckpointNote ParseCheckpoint(std::string_view text);

// The first match of a "ok: N entries, K checkpoints, C covered" verify summary; false if none.
struct VerifySummary {
  uint64_t entries = 0, checkpoints = 0, covered = 0;
};
bool ParseVerifySummary(std::string_view out, VerifySummary& summary);

// An executable file at `path`.
bool IsExecutable(const std::string& path);

// A started vault prepared for the compliance officer; stopped cleanly after the test.
class ComplianceVaultTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Top-level configuration keys for PrepareForCompliance.
  virtual std::string RootConfigKeys() const { return ""; }

  Vault vault_;
  ConfigChanges changes_;
};

}  // namespace phivault::compliance_e2e
