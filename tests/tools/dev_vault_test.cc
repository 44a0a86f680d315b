// The first hour with phivault (issue 7): a vault made by the real `phivault init`, served by the
// real phivaultd, walked through with the guides' own commands, run by bash in the order the
// guides give them. A command quoted here must appear in its guide word for word (whitespace and
// trailing comments aside), so a guide that changes without its commands still working fails.
#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Whitespace runs become one space; a " # comment" is dropped.
std::string Normalize(std::string_view line) {
  std::string out;
  for (char c : line) {
    if (c == ' ' || c == '\t') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  if (size_t hash = out.find(" # "); hash != std::string::npos) out.erase(hash);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// The shell blocks (```sh) of a Markdown file, each as lines with backslash continuations joined
// and Normalize applied.
std::vector<std::vector<std::string>> ShellBlocks(const std::string& markdown) {
  std::vector<std::vector<std::string>> blocks;
  std::istringstream in(markdown);
  std::string line, pending;
  bool in_block = false;
  while (std::getline(in, line)) {
    if (!in_block) {
      if (line == "```sh") {
        in_block = true;
        blocks.emplace_back();
      }
      continue;
    }
    if (line == "```") {
      in_block = false;
      continue;
    }
    if (!line.empty() && line.back() == '\\') {
      pending += line.substr(0, line.size() - 1) + " ";
      continue;
    }
    blocks.back().push_back(Normalize(pending + line));
    pending.clear();
  }
  return blocks;
}

std::string Joined(const std::vector<std::vector<std::string>>& blocks) {
  std::string out;
  for (const auto& b : blocks) {
    for (const auto& l : b) out += l + "\n";
  }
  return out;
}

std::string CliDir() {
  std::string path = PHIVAULT_CLI_PATH;
  return path.substr(0, path.rfind('/'));
}

mode_t Mode(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

// One command of a guide. `doc` is the command as the guide prints it ("" for set-up the guide
// leaves to the reader); `run` is what bash runs, `doc` itself unless the guide's command names
// things this vault cannot have (a sequence number, a file from last June).
struct Step {
  std::string doc;
  std::string run;
  int exit_code = 0;
  std::string out_has;
};

class GuideTest : public VaultTest {
 protected:
  void SetUp() override {
    VaultTest::SetUp();
    work_ = vault_.ScratchPath("work");
    ASSERT_EQ(::mkdir(work_.c_str(), 0700), 0);
  }

  // Runs `script` with bash in the work folder: `phivault` on PATH, this vault's socket, no
  // token (the guides' operators need none), and `env` added.
  ProcessResult Bash(const std::string& script, std::map<std::string, std::string> env) {
    env["PATH"] = CliDir() + ":/usr/bin:/bin";
    env["PHIVAULT_SOCKET"] = vault_.socket_path();
    return RunProcess({"/bin/bash", "-c", "set -eo pipefail\ncd '" + work_ + "'\n" + script},
                      vault_.ScratchPath(""), env);
  }

  void Walk(const std::string& guide, const std::vector<Step>& steps,
            const std::map<std::string, std::string>& env) {
    const std::string commands = Joined(ShellBlocks(ReadFile(guide)));
    ASSERT_FALSE(commands.empty()) << guide << " has no ```sh blocks";
    for (const Step& step : steps) {
      if (!step.doc.empty()) {
        EXPECT_NE(commands.find(Normalize(step.doc)), std::string::npos)
            << guide << " no longer says: " << step.doc;
      }
      const std::string& script = step.run.empty() ? step.doc : step.run;
      ProcessResult r = Bash(script, env);
      EXPECT_EQ(r.exit_code, step.exit_code) << script << "\n--- stdout:\n"
                                             << r.out << "\n--- stderr:\n"
                                             << r.err;
      if (!step.out_has.empty()) {
        EXPECT_THAT(r.out, HasSubstr(step.out_has)) << script;
      }
    }
  }

  std::string work_;
};

// A record and a read by dr.example, so that the guide's exports and reports have something in
// them: the practice application's part (README), with the dev-app token.
std::string PracticeApplicationWork(const std::string& token) {
  return "export PHIVAULT_TOKEN=" + token +
         "\n"
         "id=$(echo 'BP 120/80, synthetic patient' | phivault --as dr.example --role physician "
         "--purpose TREAT put --patient SYNTH-0001 --category clinical_note --type text/plain "
         "--encounter-date 2026-11-29 --author 'Dr. Example')\n"
         "phivault --as dr.example --role physician --purpose TREAT get \"$id\" >/dev/null\n";
}

TEST_F(GuideTest, ComplianceGuideRunsAsWrittenOnAFreshDevVault) {
  const std::string guide = std::string(PHIVAULT_DOCS_DIR) + "/compliance.md";
  const std::string commands = Joined(ShellBlocks(ReadFile(guide)));
  // Section 1's settings, with this vault's socket for /run/phivault/phivault.sock.
  EXPECT_THAT(commands, HasSubstr("export PHIVAULT_ROLE=compliance-officer"));
  EXPECT_THAT(commands, HasSubstr("export PHIVAULT_PURPOSE=HOPERAT"));
  const std::map<std::string, std::string> env = {{"PHIVAULT_ROLE", "compliance-officer"},
                                                  {"PHIVAULT_PURPOSE", "HOPERAT"}};
  const std::string today_export = "audit-$(date -u +%F).jsonl";
  const std::string first_saved = "old=$(ls checkpoints/2*.txt | head -n 1)\n";
  Walk(guide,
       {
           {"", PracticeApplicationWork(vault_.token())},
           // 1. Set up
           {"phivault status", "", 0, "audit entries:"},
           // 2. Keep the public key
           {"phivault audit pubkey > audit.pub"},
           {"cat audit.pub", "", 0, "+"},
           {"phivault audit pubkey | cmp - audit.pub && echo \"same key\"", "", 0, "same key"},
           // 3. Export the audit log
           {"phivault audit export -o " + today_export},
           // (the checkpoint kept last comes from section 5; on a new vault, the first one)
           {"", "mkdir -p checkpoints && phivault audit checkpoint --new > checkpoints/last.txt"},
           {"phivault audit export --patient SYNTH-0001 --trusted-checkpoint checkpoints/last.txt "
            "-o synth-0001.jsonl"},
           {"phivault audit verify synth-0001.jsonl --key-file audit.pub --trusted-checkpoint "
            "checkpoints/last.txt",
            "", 0, "ok: "},
           {"phivault audit export --format csv --patient SYNTH-0001 --from 2026-01-01 "
            "--to 2027-01-01 -o synth-0001-2026.csv"},
           {"phivault audit export --format fhir --outcome denied -o denied.fhir.json"},
           {"phivault audit export --format csv --user dr.example --action record.read "
            "--from 2026-11-29T08:00:00Z -o dr-example-reads.csv"},
           // 4. Verify the export offline (that section's wording is not pinned here).
           {"", "phivault audit verify " + today_export + " --key-file audit.pub", 0, "ok: "},
           {"", "phivault audit verify --live --key-file audit.pub", 0, "ok: "},
           // 5. Inspect and keep checkpoints
           {"phivault audit checkpoint --new", "", 0, "phivault/audit\n"},
           {"phivault audit checkpoint", "", 0, "phivault/audit\n"},
           {"mkdir -p checkpoints"},
           {"phivault audit checkpoint --new > checkpoints/$(date -u +%Y%m%dT%H%M%SZ).txt"},
           {"grep '\"type\":\"checkpoint\"' audit-2026-11-29.jsonl | tail -n 1 | jq -j .note > "
            "checkpoints/last.txt",
            "grep '\"type\":\"checkpoint\"' " + today_export +
                " | tail -n 1 | jq -j .note > checkpoints/last.txt"},
           {"",
            "phivault audit verify " + today_export +
                " --key-file audit.pub --trusted-checkpoint checkpoints/last.txt",
            0, "ok: "},
           {"", PracticeApplicationWork(vault_.token())},  // the log grows
           {"phivault audit checkpoint --new > checkpoints/now.txt"},
           {"phivault audit consistency --old-checkpoint \"$old\" "
            "--new-checkpoint checkpoints/now.txt --key-file audit.pub",
            first_saved + "phivault audit consistency --old-checkpoint \"$old\" "
                          "--new-checkpoint checkpoints/now.txt --key-file audit.pub",
            0, "is a prefix of the signed tree of"},
           {"phivault audit consistency --from 31050 --to 48200",
            "phivault audit consistency --from 1 --to 3"},
           {"", "jq -r 'select(.type == \"checkpoint\") | .note' " + today_export},
           // 6. Prove an entry
           {"phivault audit prove --seq 1234 --key-file audit.pub",
            "phivault audit prove --seq 1 --key-file audit.pub", 0, "ok: entry 1 "},
           {"",
            "leaf=$(jq -r 'select(.type == \"entry\" and .index == 0) | .leaf_hash' " +
                today_export + ")\nphivault audit prove --seq 1 --leaf-hash \"$leaf\" " +
                "--key-file audit.pub",
            0, "ok: entry 1 "},
           {"",
            first_saved + "phivault audit prove --seq 1 --checkpoint \"$old\" --key-file "
                          "audit.pub",
            0, "ok: entry 1 "},
           // 7. A patient's accounting of disclosures
           {"phivault report accounting --patient SYNTH-0001 --format html -o "
            "accounting-SYNTH-0001.html"},
           {"phivault report accounting --patient SYNTH-0001 --format csv -o "
            "accounting-SYNTH-0001.csv"},
           {"phivault report access --patient SYNTH-0001 --format html -o access-SYNTH-0001.html"},
           {"phivault report access --patient SYNTH-0001 --format csv -o access-SYNTH-0001.csv"},
           {"phivault disclose --patient SYNTH-0001 --recipient \"County Health Department\" "
            "--address \"1 Main St, Springfield\" --basis public_health --description \"lab "
            "result for a notifiable disease\" --date 2026-11-28"},
           {"phivault disclose --patient SYNTH-0001 --recipient \"Springfield Police "
            "Department\" --basis law_enforcement --description \"copy of the emergency "
            "department note\" --date 2026-11-27"},
           {"phivault suspend --agency \"State Health Oversight Board\" --start 2026-11-29 "
            "--end 2027-05-29 --statement \"accounting would impede the Board's investigation\""},
           {"phivault suspend --agency \"Springfield Police Department\" --start 2026-11-29 "
            "--oral --statement \"oral request by the investigating officer\""},
           {"", "phivault report accounting --patient SYNTH-0001 > accounting.json"},
       },
       env);

  // The disclosure's purpose is its basis's, not the HOPERAT the officer recorded it under.
  const auto accounting = nlohmann::json::parse(ReadFile(work_ + "/accounting.json"));
  bool found = false;
  for (const auto& d : accounting["disclosures"]) {
    if (d["recipient"]["name"] != "County Health Department") continue;
    found = true;
    EXPECT_EQ(d["purpose"]["code"], "PUBHLTH") << d.dump();
    EXPECT_EQ(d["basis"], "public_health");
  }
  EXPECT_TRUE(found) << accounting.dump();

  for (const char* report : {"accounting-SYNTH-0001.html", "accounting-SYNTH-0001.csv",
                             "access-SYNTH-0001.html", "access-SYNTH-0001.csv"}) {
    EXPECT_EQ(Mode(work_ + "/" + report), 0600u) << report;
  }
  // The patient-facing page names the practice init configured, never the software.
  const std::string html = ReadFile(work_ + "/accounting-SYNTH-0001.html");
  EXPECT_THAT(html, HasSubstr("Development Practice (synthetic data)"));
  EXPECT_THAT(html, Not(HasSubstr("phivault made")));
}

// docs/cli.md's examples, after its first three lines (init, starting the daemon, the socket),
// which the harness has done: run as one script, exactly as printed.
TEST_F(GuideTest, CliExamplesRunAsWrittenWithoutAToken) {
  const std::string guide = std::string(PHIVAULT_DOCS_DIR) + "/cli.md";
  const std::string text = ReadFile(guide);
  const size_t examples = text.find("## Examples");
  ASSERT_NE(examples, std::string::npos);
  const auto blocks = ShellBlocks(text.substr(examples));
  ASSERT_FALSE(blocks.empty());
  std::vector<std::string> lines = blocks.front();
  ASSERT_GT(lines.size(), 3u);
  EXPECT_EQ(lines[0].rfind("phivault init --dir ~/pv-dev", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1], "phivaultd --config ~/pv-dev/phivault.toml &");
  EXPECT_EQ(lines[2].rfind("export PHIVAULT_SOCKET=~/pv-dev/phivault.sock", 0), 0u) << lines[2];
  std::string script;
  // The socket line may set more than the socket: keep its other settings.
  if (size_t more = lines[2].find(' ', std::string("export ").size()); more != std::string::npos) {
    script += "export " + lines[2].substr(more + 1) + "\n";
  }
  for (size_t i = 3; i < lines.size(); ++i) script += lines[i] + "\n";
  ProcessResult r = Bash(script, {});
  EXPECT_EQ(r.exit_code, 0) << script << "\n--- stdout:\n" << r.out << "\n--- stderr:\n" << r.err;
  EXPECT_THAT(r.out, HasSubstr("BP 120/80"));  // the first version, read back
  EXPECT_THAT(ReadFile(work_ + "/accounting.html"), HasSubstr("Accounting of Disclosures"));
}

// `status` reports what was stored: records, patients and the bytes the data occupies on disk
// (before any memtable is flushed, that is the write-ahead log).
TEST_F(GuideTest, StatusShowsRecordsPatientsAndLiveData) {
  client::Client app = vault_.AppClient();
  const std::string content = RandomBytes(1 << 20);
  for (const char* patient : {"SYNTH-A", "SYNTH-A", "SYNTH-B"}) {
    auto m = app.CreateRecord(Physician(), {.patient_id = patient,
                                            .category = "imaging",
                                            .content_type = "application/octet-stream",
                                            .encounter_date = "2026-11-29",
                                            .author = "Dr. Example",
                                            .content = content});
    ASSERT_TRUE(m.ok()) << m.error().Message();
  }
  ProcessResult r =
      Bash("phivault --json status", {{"PHIVAULT_ROLE", "administrator"}, {"PHIVAULT_USER", "a"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["records"], 3);
  EXPECT_EQ(j["patients"], 2);
  const uint64_t live = j["disk"]["live_data_bytes"];
  EXPECT_GE(live, 3u << 20);
  EXPECT_EQ(live, j["disk"]["table_bytes"].get<uint64_t>() +
                      j["disk"]["blob_bytes"].get<uint64_t>() +
                      j["disk"]["log_bytes"].get<uint64_t>());

  ProcessResult text = Bash("phivault status", {{"PHIVAULT_ROLE", "administrator"}});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("records:          3\n"));
  EXPECT_THAT(text.out, HasSubstr("patients:         2\n"));
  EXPECT_THAT(text.out, HasSubstr("live data:        " + std::to_string(live) + " bytes ("));

  // The daemon flushes on a clean stop: the content is then in blob files, and still counted.
  vault_.Stop();
  ASSERT_TRUE(vault_.Start());
  ProcessResult again = Bash("phivault --json status", {{"PHIVAULT_ROLE", "administrator"}});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const auto k = nlohmann::json::parse(again.out);
  EXPECT_EQ(k["records"], 3);
  EXPECT_EQ(k["patients"], 2);
  EXPECT_GE(k["disk"]["blob_bytes"].get<uint64_t>(), 3u << 20);
  EXPECT_GT(k["disk"]["table_bytes"].get<uint64_t>(), 0u);
  EXPECT_GE(k["disk"]["live_data_bytes"].get<uint64_t>(), 3u << 20);
}

// The creator of a dev vault is an operator in every role; a role the config does not know is
// still refused, and so is a request naming none of the configured roles.
TEST_F(GuideTest, TheCreatorActsInAnyConfiguredRoleWithoutAToken) {
  for (const char* role : {"administrator", "physician", "nurse", "reception", "billing",
                           "compliance-officer", "medical-assistant"}) {
    ProcessResult r = Bash("phivault status", {{"PHIVAULT_ROLE", role}});
    EXPECT_EQ(r.exit_code, 0) << role << ": " << r.err;
  }
  ProcessResult r = Bash("phivault status", {{"PHIVAULT_ROLE", "janitor"}});
  EXPECT_EQ(r.exit_code, 3) << r.err;
}

}  // namespace
}  // namespace phivault::e2e
