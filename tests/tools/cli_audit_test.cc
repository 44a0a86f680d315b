// The `phivault` binary's compliance commands: disclosures, suspensions, reports, and the audit
// commands. Offline verification and local proof checking run against a real audit log built
// with the storage code (tests/tools/real_audit_log.h); the daemon is a scripted fake.
#include <sys/stat.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "crypto/signing.h"
#include "storage/audit_entry.h"
#include "storage/audit_verify.h"
#include "tests/testing/temp_dir.h"
#include "tests/tools/fake_daemon.h"
#include "tests/tools/real_audit_log.h"
#include "tests/tools/run_phivault.h"

namespace phivault::tools {
namespace {

using testing::CliRun;
using testing::FakeDaemon;
using ::testing::HasSubstr;
using testing::Problem;
using testing::ReadFile;
using testing::RealAuditLog;
using testing::Reply;
using testing::SeenRequest;
using ::testing::StartsWith;
using testing::WriteFile;

// [begin, end) of the export line of entry `index` (members are written in sorted order).
std::pair<size_t, size_t> EntryLine(const std::string& text, uint64_t index) {
  const size_t at = text.find("\"index\":" + std::to_string(index) + ",\"leaf_hash\"");
  if (at == std::string::npos) return {std::string::npos, std::string::npos};
  const size_t begin = text.rfind('\n', at);
  return {begin == std::string::npos ? 0 : begin + 1, text.find('\n', at) + 1};
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  for (size_t at = 0; at < text.size();) {
    const size_t nl = text.find('\n', at);
    out.push_back(text.substr(at, nl - at));
    at = nl == std::string::npos ? text.size() : nl + 1;
  }
  return out;
}

// The summary line of a verified full export: counts, then the newest checkpoint's signing time.
::testing::Matcher<const std::string&> VerifiedFull(const std::string& counts,
                                                    const std::string& more = "") {
  return ::testing::MatchesRegex("ok: " + counts +
                                 "; checkpoint signed [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                                 "[0-9]{2}Z" +
                                 more + "\n");
}

mode_t Mode(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

class CliAuditTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto::InitSodium().ok()); }

  CliRun Phivault(const std::vector<std::string>& args, const std::string& input = "") {
    return testing::RunPhivault(args, {}, input, dir_.path().string());
  }
  // Runs `command` under /bin/sh, for pipes into phivault.
  CliRun Shell(const std::string& command) {
    const std::string in = dir_.Sub("stdin");
    WriteFile(in, "");
    return testing::RunProgram("/bin/sh", {"-c", command}, {}, in, dir_.path().string());
  }
  // Talks to the fake daemon as the compliance officer.
  std::vector<std::string> To(std::vector<std::string> rest) {
    std::vector<std::string> args = {"--socket",  sock_,     "--role",  "compliance_officer",
                                     "--purpose", "HOPERAT", "--token", "t"};
    args.insert(args.end(), rest.begin(), rest.end());
    return args;
  }
  nlohmann::json LastBody() { return nlohmann::json::parse(daemon_.last().body); }

  phivault::testing::TempDir dir_;
  std::string sock_ = dir_.Sub("d.sock");
  FakeDaemon daemon_{sock_};
};

// ---- disclosures, suspensions, reports ----

TEST_F(CliAuditTest, DiscloseSendsTheDisclosureAndPrintsTheAuditSeq) {
  daemon_.SetHandler(
      [](const SeenRequest&) { return Reply{.status = 201, .body = R"({"audit_seq":314})"}; });
  CliRun r = Phivault(To({"disclose", "--patient", "SYNTH-0001", "--recipient",
                          "County Health Department", "--address", "1 Main St", "--basis",
                          "public_health", "--description", "lab result", "--record", "rec_1",
                          "--record", "rec_2", "--date", "2026-11-29", "--statement", "required"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "314\n");
  EXPECT_EQ(daemon_.last().method, "POST");
  EXPECT_EQ(daemon_.last().uri, "/v1/disclosures");
  EXPECT_EQ(daemon_.last().headers["x-phivault-purpose"], "HOPERAT");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"recipient_name", "County Health Department"},
                                        {"recipient_address", "1 Main St"},
                                        {"basis", "public_health"},
                                        {"description", "lab result"},
                                        {"record_ids", {"rec_1", "rec_2"}},
                                        {"disclosed_at", "2026-11-29"},
                                        {"purpose_statement", "required"}}));

  CliRun json = Phivault(To(
      {"--json", "disclose", "--patient", "SYNTH-0001", "--recipient", "X", "--description", "d"}));
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(nlohmann::json::parse(json.out)["audit_seq"], 314);
  EXPECT_EQ(LastBody(),
            (nlohmann::json{
                {"patient_id", "SYNTH-0001"}, {"recipient_name", "X"}, {"description", "d"}}));
}

TEST_F(CliAuditTest, DiscloseWithoutRecipientOrDescriptionIsAUsageError) {
  CliRun r = Phivault(To({"disclose", "--patient", "SYNTH-0001", "--description", "d"}));
  EXPECT_EQ(r.exit_code, 2);
  r = Phivault(To({"disclose", "--patient", "SYNTH-0001", "--recipient", "X"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, StartsWith("phivault: usage error: "));
  EXPECT_TRUE(daemon_.requests().empty());
}

TEST_F(CliAuditTest, GetDiscloseToPostsTheDisclosureAndWritesTheContent) {
  daemon_.SetHandler([](const SeenRequest&) {
    nlohmann::json j = {
        {"record_id", "rec_1"},         {"version", 1},
        {"patient_id", "SYNTH-0001"},   {"category", "lab_result"},
        {"content_type", "text/plain"}, {"encounter_date", "2024-05-06"},
        {"author", "Dr. Synthetic"},    {"created", "2024-05-06T08:00:00.000001Z"},
        {"content_bytes", 5},           {"content_base64", crypto::Base64Encode("HbA1c")}};
    return Reply{.body = j.dump()};
  });
  const std::string file = dir_.Sub("disclosed.txt");
  CliRun r = Phivault(To({"get", "rec_1", "--version", "1", "--disclose-to", "Synthetic Cardiology",
                          "--basis", "tpo_treatment", "--description", "lab results", "-o", file}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(file), "HbA1c");
  EXPECT_EQ(Mode(file), 0600u);
  EXPECT_EQ(daemon_.last().method, "POST");
  EXPECT_EQ(daemon_.last().uri, "/v1/records/rec_1/disclosures");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"version", 1},
                                        {"recipient_name", "Synthetic Cardiology"},
                                        {"basis", "tpo_treatment"},
                                        {"description", "lab results"}}));
  CliRun out = Phivault(To({"get", "rec_1", "--disclose-to", "X", "--description", "d"}));
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out, "HbA1c");
}

TEST_F(CliAuditTest, GetDisclosureOptionsNeedARecipientAndADescription) {
  EXPECT_EQ(Phivault(To({"get", "rec_1", "--description", "d"})).exit_code, 2);
  EXPECT_EQ(Phivault(To({"get", "rec_1", "--disclose-to", "X"})).exit_code, 2);
  EXPECT_TRUE(daemon_.requests().empty());
}

TEST_F(CliAuditTest, SuspendSendsTheSuspension) {
  daemon_.SetHandler(
      [](const SeenRequest&) { return Reply{.status = 201, .body = R"({"audit_seq":9})"}; });
  CliRun r = Phivault(To({"suspend", "--agency", "State Oversight Board", "--start", "2026-01-01",
                          "--oral", "--statement", "investigation under way"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "9\n");
  EXPECT_EQ(daemon_.last().uri, "/v1/disclosure-suspensions");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"agency", "State Oversight Board"},
                                        {"start", "2026-01-01"},
                                        {"oral", true},
                                        {"statement", "investigation under way"}}));
}

TEST_F(CliAuditTest, ReportsGoToStdoutOrAPrivateFile) {
  daemon_.SetHandler([](const SeenRequest& r) {
    if (r.uri == "/v1/reports/accounting") {
      return Reply{.content_type = "text/html; charset=utf-8", .body = "<h1>Accounting</h1>\n"};
    }
    return Reply{.content_type = "text/csv; charset=utf-8", .body = "time,user\n"};
  });
  const std::string html = dir_.Sub("accounting.html");
  WriteFile(html, "old");
  ASSERT_EQ(::chmod(html.c_str(), 0644), 0);
  CliRun r = Phivault(To({"report", "accounting", "--patient", "SYNTH-0001", "--from", "2021-01-01",
                          "--format", "html", "-o", html}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(html), "<h1>Accounting</h1>\n");
  EXPECT_EQ(Mode(html), 0600u);  // a report names the patient: never left readable by others
  EXPECT_EQ(
      LastBody(),
      (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"from", "2021-01-01"}, {"format", "html"}}));

  CliRun csv = Phivault(To({"report", "access", "--patient", "SYNTH-0001", "--format", "csv"}));
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  EXPECT_EQ(csv.out, "time,user\n");
  EXPECT_EQ(daemon_.last().uri, "/v1/reports/access");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"format", "csv"}}));

  ASSERT_EQ(Phivault(To({"report", "access", "--patient", "SYNTH-0001"})).exit_code, 0);
  EXPECT_EQ(LastBody()["format"], "json");
  EXPECT_EQ(Phivault(To({"report", "access", "--patient", "P", "--format", "pdf"})).exit_code, 2);
}

TEST_F(CliAuditTest, DaemonRefusalsKeepTheirExitCodes) {
  daemon_.SetHandler(
      [](const SeenRequest&) { return Problem(403, "forbidden", "Forbidden", "role may not"); });
  CliRun r = Phivault(To({"report", "accounting", "--patient", "SYNTH-0001"}));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "phivault: Forbidden: role may not\n");
  daemon_.SetHandler([](const SeenRequest&) {
    return Problem(400, "invalid-request", "Invalid request", "field start is not a time");
  });
  r = Phivault(To({"suspend", "--agency", "A", "--start", "soon", "--oral", "--statement", "s"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("field start is not a time"));
}

// ---- audit export ----

TEST_F(CliAuditTest, ExportSendsTheFiltersAndStreamsToStdout) {
  std::string body;
  for (int i = 0; i < 500; ++i)
    body += "{\"type\":\"entry\",\"index\":" + std::to_string(i) + "}\n";
  daemon_.SetHandler([&body](const SeenRequest&) {
    return Reply{
        .content_type = "application/x-ndjson", .body = body, .chunked = true, .chunk_bytes = 700};
  });
  CliRun r = Phivault(To({"audit", "export", "--format", "fhir", "--from", "2026-01-01", "--to",
                          "2026-02-01T00:00:00Z", "--patient", "SYNTH-0001", "--user", "dr.x",
                          "--action", "record.read", "--outcome", "denied"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, body);
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/export");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"format", "fhir"},
                                        {"from", "2026-01-01"},
                                        {"to", "2026-02-01T00:00:00Z"},
                                        {"patient_id", "SYNTH-0001"},
                                        {"user", "dr.x"},
                                        {"action", "record.read"},
                                        {"outcome", "denied"}}));
  EXPECT_EQ(Phivault(To({"audit", "export", "--format", "xml"})).exit_code, 2);
}

TEST_F(CliAuditTest, ExportToAFileIsPrivateAndRemovedWhenTheExportBreaks) {
  daemon_.SetHandler(
      [](const SeenRequest&) { return Reply{.body = "{\"type\":\"entry\"}\n", .chunked = true}; });
  const std::string file = dir_.Sub("audit.jsonl");
  CliRun r = Phivault(To({"audit", "export", "-o", file}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(file), "{\"type\":\"entry\"}\n");
  EXPECT_EQ(Mode(file), 0600u);
  EXPECT_EQ(LastBody(), (nlohmann::json{{"format", "jsonl"}}));

  daemon_.SetHandler([](const SeenRequest&) {
    return Reply{.body = std::string(5000, 'e'),
                 .chunked = true,
                 .chunk_bytes = 1000,
                 .cut_before_end = true};
  });
  const std::string broken = dir_.Sub("broken.jsonl");
  CliRun cut = Phivault(To({"audit", "export", "-o", broken}));
  EXPECT_EQ(cut.exit_code, 5);
  EXPECT_THAT(cut.err, HasSubstr("incomplete"));
  EXPECT_EQ(Mode(broken), 0u);  // no truncated export left to be mistaken for a whole one
}

// ---- pubkey, checkpoint ----

TEST_F(CliAuditTest, PubkeyAndCheckpointPrintWhatTheDaemonSigned) {
  RealAuditLog log(dir_.path().string());
  log.Append(3);
  const std::string note = log.Checkpoint();
  daemon_.SetHandler([&](const SeenRequest& r) {
    if (r.uri == "/v1/audit/pubkey") {
      return Reply{.body = nlohmann::json{{"verifier_key", log.VerifierKey()}}.dump()};
    }
    return Reply{.status = r.method == "POST" ? 201 : 200,
                 .content_type = "text/plain; charset=utf-8",
                 .body = note};
  });
  CliRun key = Phivault(To({"audit", "pubkey"}));
  ASSERT_EQ(key.exit_code, 0) << key.err;
  EXPECT_EQ(key.out, log.VerifierKey() + "\n");

  CliRun cp = Phivault(To({"audit", "checkpoint"}));
  ASSERT_EQ(cp.exit_code, 0) << cp.err;
  EXPECT_EQ(cp.out, note);
  EXPECT_EQ(daemon_.last().method, "GET");
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/checkpoint");

  CliRun fresh = Phivault(To({"audit", "checkpoint", "--new"}));
  ASSERT_EQ(fresh.exit_code, 0) << fresh.err;
  EXPECT_EQ(daemon_.last().method, "POST");
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/checkpoints");
}

// ---- offline verify on a real export ----

class CliVerifyTest : public CliAuditTest {
 protected:
  void SetUp() override {
    CliAuditTest::SetUp();
    log_.emplace(dir_.Sub(""));
    log_->Append(6);
    log_->Checkpoint();
    log_->Append(4);
    log_->Checkpoint();
    export_ = dir_.Sub("audit.jsonl");
    WriteFile(export_, log_->Export());
  }
  // Offline: no socket, no role, nothing but the file and the key.
  CliRun Verify(const std::string& file, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "--socket", dir_.Sub("no-daemon.sock"), "audit", "verify", file,
        "--key",    log_->VerifierKey()};
    args.insert(args.end(), extra.begin(), extra.end());
    return Phivault(args);
  }

  std::optional<RealAuditLog> log_;
  std::string export_;
};

TEST_F(CliVerifyTest, ARealExportVerifiesOfflineWithOnlyThePublicKey) {
  CliRun r = Verify(export_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, VerifiedFull("10 entries, 2 checkpoints, 10 covered"));
  // Nothing shows that this is not an older export, complete in itself: the user is told.
  EXPECT_EQ(r.err,
            "phivault: note: without --trusted-checkpoint, an older export, complete in itself, "
            "would verify too\n");

  const std::string key_file = dir_.Sub("audit.pub");
  WriteFile(key_file, log_->VerifierKey() + "\n");
  CliRun from_file = Phivault(
      {"audit", "verify", export_, "--key-file", key_file, "--origin", RealAuditLog::kOrigin});
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;

  CliRun json = Phivault({"--json", "audit", "verify", export_, "--key-file", key_file});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["entries_covered"], 10);
}

TEST_F(CliVerifyTest, OneFlippedByteInAnEntryFailsWithExitSevenNamingTheEntry) {
  std::string text = ReadFile(export_);
  // Entry index 4 (seq 5) was made by clinician-2; change one byte of its user field.
  const auto [begin, end] = EntryLine(text, 4);
  ASSERT_NE(begin, std::string::npos);
  const size_t user = text.find("clinician-2", begin);
  ASSERT_LT(user, end);
  text[user + 10] = '7';
  const std::string tampered = dir_.Sub("tampered.jsonl");
  WriteFile(tampered, text);

  CliRun r = Verify(tampered);
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_TRUE(r.out.empty());
  EXPECT_THAT(r.err, StartsWith("phivault: verification failed: entry 4 was altered"));
  EXPECT_THAT(r.err, HasSubstr("audit seq 5"));
}

TEST_F(CliVerifyTest, AnotherKeyOrOriginFailsWithExitSeven) {
  auto other = crypto::Ed25519Signer::Create(crypto::SecretBytes::Random(32));
  ASSERT_TRUE(other.ok());
  const std::string other_key =
      crypto::NoteVerifierKey(RealAuditLog::kOrigin, (*other)->public_key());
  CliRun r = Phivault({"audit", "verify", export_, "--key", other_key});
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_THAT(r.err, StartsWith("phivault: verification failed: "));

  CliRun origin = Verify(export_, {"--origin", "elsewhere.example/audit"});
  EXPECT_EQ(origin.exit_code, 7);
}

TEST_F(CliVerifyTest, ADroppedEntryFailsWithExitSeven) {
  std::string text = ReadFile(export_);
  const auto [begin, end] = EntryLine(text, 7);
  ASSERT_NE(begin, std::string::npos);
  text.erase(begin, end - begin);
  const std::string dropped = dir_.Sub("dropped.jsonl");
  WriteFile(dropped, text);
  CliRun r = Verify(dropped);
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_THAT(r.err, HasSubstr("entry 7"));
}

TEST_F(CliVerifyTest, StandardInputIsVerifiedFromAFileOrAPipe) {
  CliRun redirected =
      Phivault({"audit", "verify", "-", "--key", log_->VerifierKey()}, ReadFile(export_));
  ASSERT_EQ(redirected.exit_code, 0) << redirected.err;
  EXPECT_THAT(redirected.out, VerifiedFull("10 entries, 2 checkpoints, 10 covered"));

  CliRun piped = Shell("cat '" + export_ + "' | '" PHIVAULT_BINARY "' audit verify - --key '" +
                       log_->VerifierKey() + "'");
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_THAT(piped.out, VerifiedFull("10 entries, 2 checkpoints, 10 covered"));
}

TEST_F(CliVerifyTest, EntriesAfterTheLastCheckpointFailAsUncovered) {
  log_->Append(2);
  WriteFile(export_, log_->Export());
  CliRun r = Verify(export_);
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_THAT(r.err, StartsWith("phivault: verification failed: entry 10 is not covered by any "
                                "signed checkpoint"));
  EXPECT_THAT(r.err, HasSubstr("audit seq 11"));
}

TEST_F(CliVerifyTest, AForgedExportWithItsCheckpointsStrippedFails) {
  // Rewrite entry 3 (one byte of its user), re-chain every later entry with fresh leaf hashes,
  // and drop the checkpoints, which no forger can re-sign.
  std::string forged;
  std::string prev;
  for (const std::string& raw : Lines(ReadFile(export_))) {
    nlohmann::json j = nlohmann::json::parse(raw);
    if (j["type"] != "entry") continue;
    auto e = storage::DecodeAuditEntry(j["entry"].get<std::string>());
    ASSERT_TRUE(e.ok());
    if (e->seq == 4) e->user = "clinician-7";
    e->prev_hash = prev;
    const std::string bytes = *storage::EncodeAuditEntry(*e);
    prev = crypto::HexEncode(crypto::AsView(crypto::Sha256(bytes)));
    forged += *storage::AuditExportEntryLine(e->seq - 1, bytes) + "\n";
  }
  WriteFile(export_, forged);
  CliRun r = Verify(export_);
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_THAT(r.err, StartsWith("phivault: verification failed: entry 0 is not covered by any "
                                "signed checkpoint (the export has none)"));
}

TEST_F(CliVerifyTest, AnExportCutBackToAnOlderCheckpointFailsAgainstANewerTrustedOne) {
  const std::string saved = dir_.Sub("checkpoint-10.txt");
  WriteFile(saved, *log_->LatestCheckpoint());
  CliRun consistent = Verify(export_, {"--trusted-checkpoint", saved});
  ASSERT_EQ(consistent.exit_code, 0) << consistent.err;
  EXPECT_THAT(consistent.out, VerifiedFull("10 entries, 2 checkpoints, 10 covered",
                                           "; consistent with 1 trusted checkpoint"));
  EXPECT_TRUE(consistent.err.empty()) << consistent.err;

  // The log grows and the officer keeps the newer checkpoint; the old export (complete in itself,
  // as an export cut back to its older checkpoint is) no longer passes.
  log_->Append(5);
  const std::string newer = dir_.Sub("checkpoint-15.txt");
  WriteFile(newer, log_->Checkpoint());
  CliRun r = Verify(export_, {"--trusted-checkpoint", saved, "--trusted-checkpoint", newer});
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_THAT(r.err, StartsWith("phivault: verification failed: log rolled back or cut short: "
                                "trusted checkpoint " +
                                newer + " (size 15) has 15 entries but the export only 10"));

  CliRun min = Verify(export_, {"--min-size", "11"});
  EXPECT_EQ(min.exit_code, 7);
  EXPECT_THAT(min.err, HasSubstr("fewer than the required 11"));
  EXPECT_EQ(Verify(export_, {"--min-size", "10"}).exit_code, 0);

  CliRun unreadable = Verify(export_, {"--trusted-checkpoint", dir_.Sub("missing.txt")});
  EXPECT_EQ(unreadable.exit_code, 1);
  EXPECT_THAT(unreadable.err, HasSubstr("cannot read the trusted checkpoint"));
}

TEST_F(CliVerifyTest, AnAlteredReadablePhiFailsNamingTheEntry) {
  WriteFile(export_, log_->Export(/*with_phi=*/true));
  ASSERT_EQ(Verify(export_).exit_code, 0);
  std::string text = ReadFile(export_);
  // Entry index 4 (seq 5) is about SYNTH-1005: name another patient in its readable copy.
  const auto [begin, end] = EntryLine(text, 4);
  const size_t at = text.find("SYNTH-1005", begin);
  ASSERT_LT(at, end);
  text.replace(at, 10, "SYNTH-2005");
  WriteFile(export_, text);
  CliRun r = Verify(export_);
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_THAT(r.err, StartsWith("phivault: verification failed: entry 4's readable \"phi\" does "
                                "not match the entry's phi_commit"));
  EXPECT_THAT(r.err, HasSubstr("audit seq 5"));
}

TEST_F(CliVerifyTest, AFilteredExportNeedsAConsistencyProofFromEachTrustedCheckpoint) {
  const std::string saved = dir_.Sub("checkpoint-10.txt");
  WriteFile(saved, *log_->LatestCheckpoint());
  log_->Append(3);
  WriteFile(export_, log_->FilteredExport({2, 11}, {10}));
  CliRun ok = Verify(export_, {"--trusted-checkpoint", saved});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("; consistent with 1 trusted checkpoint"));

  WriteFile(export_, log_->FilteredExport({2, 11}));
  CliRun missing = Verify(export_, {"--trusted-checkpoint", saved});
  EXPECT_EQ(missing.exit_code, 7);
  EXPECT_THAT(missing.err, HasSubstr("no consistency proof from trusted checkpoint " + saved));
  EXPECT_THAT(missing.err, HasSubstr("phivault audit export --trusted-checkpoint FILE"));
}

TEST_F(CliVerifyTest, ExportAsksTheDaemonForProofsFromTheTrustedSizes) {
  const std::string ten = dir_.Sub("cp10.txt"), twelve = dir_.Sub("cp12.txt");
  WriteFile(ten, *log_->LatestCheckpoint());
  log_->Append(2);
  WriteFile(twelve, log_->Checkpoint());
  daemon_.SetHandler([](const SeenRequest&) { return Reply{.body = "", .chunked = true}; });
  CliRun r = Phivault(To({"audit", "export", "--patient", "SYNTH-1", "--trusted-checkpoint", ten,
                          "--trusted-checkpoint", twelve, "-o", dir_.Sub("out.jsonl")}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/export?trusted_size=10&trusted_size=12");

  const std::string junk = dir_.Sub("junk.txt");
  WriteFile(junk, "not a checkpoint\n");
  CliRun bad = Phivault(To({"audit", "export", "--trusted-checkpoint", junk}));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("is not a checkpoint note"));
}

TEST_F(CliVerifyTest, VerifyNeedsAKeyAndExactlyOneSource) {
  EXPECT_EQ(Phivault({"audit", "verify", export_}).exit_code, 2);
  EXPECT_EQ(Phivault({"audit", "verify", "--key", log_->VerifierKey()}).exit_code, 2);
  EXPECT_EQ(Phivault({"audit", "verify", export_, "--key", "not-a-key"}).exit_code, 2);
  CliRun missing = Phivault({"audit", "verify", dir_.Sub("missing"), "--key", log_->VerifierKey()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("cannot open the export"));
}

TEST_F(CliVerifyTest, LiveVerifyExportsTheWholeLogAndVerifiesIt) {
  const std::string body = log_->Export();
  daemon_.SetHandler([&](const SeenRequest& r) {
    if (r.uri == "/v1/audit/pubkey") {
      return Reply{.body = nlohmann::json{{"verifier_key", log_->VerifierKey()}}.dump()};
    }
    return Reply{
        .content_type = "application/x-ndjson", .body = body, .chunked = true, .chunk_bytes = 333};
  });
  CliRun given = Phivault(To({"audit", "verify", "--live", "--key", log_->VerifierKey()}));
  ASSERT_EQ(given.exit_code, 0) << given.err;
  EXPECT_THAT(given.out, VerifiedFull("10 entries, 2 checkpoints, 10 covered"));
  EXPECT_EQ(daemon_.requests().size(), 1u);
  EXPECT_EQ(LastBody(), (nlohmann::json{{"format", "jsonl"}}));

  CliRun fetched = Phivault(To({"audit", "verify", "--live"}));
  ASSERT_EQ(fetched.exit_code, 0) << fetched.err;
  EXPECT_THAT(fetched.err, HasSubstr("fetched from the daemon"));
  EXPECT_EQ(daemon_.requests()[1].uri, "/v1/audit/pubkey");
}

TEST_F(CliVerifyTest, LiveVerifyOfATruncatedExportIsNeverOk) {
  const std::string body = log_->Export();
  daemon_.SetHandler([&](const SeenRequest&) {
    return Reply{.body = body.substr(0, body.size() / 2),
                 .chunked = true,
                 .chunk_bytes = 100,
                 .cut_before_end = true};
  });
  CliRun r = Phivault(To({"audit", "verify", "--live", "--key", log_->VerifierKey()}));
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("ok")));
}

// ---- prove and consistency against a real log ----

class CliProveTest : public CliAuditTest {
 protected:
  void SetUp() override {
    CliAuditTest::SetUp();
    log_.emplace(dir_.Sub(""));
    log_->Append(5);
    log_->Checkpoint();
    log_->Append(6);
    // Serves the real log's checkpoints and proofs, or tampered ones.
    daemon_.SetHandler([this](const SeenRequest& r) {
      const std::string path = r.uri.substr(0, r.uri.find('?'));
      auto param = [&r](const std::string& name) -> std::optional<uint64_t> {
        const size_t at = r.uri.find(name + "=");
        if (at == std::string::npos) return std::nullopt;
        return std::stoull(r.uri.substr(at + name.size() + 1));
      };
      if (path == "/v1/audit/pubkey") {
        return Reply{.body = nlohmann::json{{"verifier_key", log_->VerifierKey()}}.dump()};
      }
      if (path == "/v1/audit/checkpoint" || path == "/v1/audit/checkpoints") {
        std::optional<std::string> note =
            r.method == "POST" ? log_->Checkpoint() : log_->LatestCheckpoint();
        if (!note) return Problem(404, "not-found", "Not Found", "no checkpoint yet");
        return Reply{.status = r.method == "POST" ? 201 : 200,
                     .content_type = "text/plain; charset=utf-8",
                     .body = forged_note_.empty() ? *note : forged_note_};
      }
      if (path == "/v1/audit/proofs/inclusion") {
        nlohmann::json j = log_->InclusionJson(*param("seq"), param("tree_size"));
        if (tamper_path_) j["path"][0] = std::string(64, '0');
        return Reply{.body = j.dump()};
      }
      if (path == "/v1/audit/proofs/consistency") {
        return Reply{.body = log_->ConsistencyJson(*param("from"), *param("to")).dump()};
      }
      return Problem(404, "not-found", "Not Found", "no route");
    });
  }
  std::vector<std::string> Uris() {
    std::vector<std::string> out;
    for (const auto& r : daemon_.requests()) out.push_back(r.method + " " + r.uri);
    return out;
  }

  std::optional<RealAuditLog> log_;
  bool tamper_path_ = false;
  std::string forged_note_;
};

TEST_F(CliProveTest, ProvesAnEntryInTheNewestCheckpoint) {
  CliRun r = Phivault(To({"audit", "prove", "--seq", "3", "--key", log_->VerifierKey()}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("ok: entry 3 (leaf 2, leaf hash "));
  EXPECT_THAT(r.out, HasSubstr("is in the tree of 5 entries"));
  EXPECT_THAT(Uris(), ::testing::ElementsAre("GET /v1/audit/checkpoint",
                                             "GET /v1/audit/proofs/inclusion?seq=3&tree_size=5"));
}

TEST_F(CliProveTest, AnEntryBeyondTheNewestCheckpointGetsAFreshOne) {
  CliRun r = Phivault(To({"audit", "prove", "--seq", "9", "--key", log_->VerifierKey()}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("is in the tree of 11 entries"));
  EXPECT_THAT(Uris(),
              ::testing::ElementsAre("GET /v1/audit/checkpoint", "POST /v1/audit/checkpoints",
                                     "GET /v1/audit/proofs/inclusion?seq=9&tree_size=11"));
}

TEST_F(CliProveTest, AProofInAnOlderTreeIsLinkedToTheCheckpointByConsistency) {
  log_->Checkpoint();  // newest: 11 entries
  CliRun r = Phivault(
      To({"--json", "audit", "prove", "--seq", "2", "--size", "7", "--key", log_->VerifierKey()}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["verified"], true);
  EXPECT_EQ(j["inclusion"]["tree_size"], 7);
  EXPECT_EQ(j["checkpoint"]["size"], 11);
  EXPECT_EQ(j["consistency"]["from"], 7);
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/proofs/consistency?from=7&to=11");
}

TEST_F(CliProveTest, ATamperedProofFailsWithExitSeven) {
  tamper_path_ = true;
  CliRun r = Phivault(To({"audit", "prove", "--seq", "3", "--key", log_->VerifierKey()}));
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_THAT(r.err, StartsWith("phivault: verification failed: "));
  EXPECT_TRUE(r.out.empty());
}

TEST_F(CliProveTest, ACheckpointNotSignedByTheKeyFailsWithExitSeven) {
  auto other = crypto::Ed25519Signer::Create(crypto::SecretBytes::Random(32));
  ASSERT_TRUE(other.ok());
  auto cp = storage::OpenCheckpoint(*log_->LatestCheckpoint(), log_->Verifier());
  ASSERT_TRUE(cp.ok());
  auto forged = storage::SignCheckpoint(*cp, RealAuditLog::kOrigin, **other);
  ASSERT_TRUE(forged.ok());
  forged_note_ = *forged;
  CliRun r = Phivault(To({"audit", "prove", "--seq", "3", "--key", log_->VerifierKey()}));
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_THAT(r.err, HasSubstr("checkpoint does not verify"));
}

TEST_F(CliProveTest, LeafHashMustMatchWhenGiven) {
  const std::string leaf = log_->InclusionJson(4)["leaf_hash"];
  CliRun ok = Phivault(
      To({"audit", "prove", "--seq", "4", "--leaf-hash", leaf, "--key", log_->VerifierKey()}));
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  CliRun other = Phivault(To({"audit", "prove", "--seq", "4", "--leaf-hash", std::string(64, 'c'),
                              "--key", log_->VerifierKey()}));
  EXPECT_EQ(other.exit_code, 7);
  EXPECT_THAT(other.err, HasSubstr("entry 4"));
}

TEST_F(CliProveTest, ASavedCheckpointIsProvedAgainstWithoutFetchingOne) {
  const std::string saved = dir_.Sub("cp5.txt");
  WriteFile(saved, *log_->LatestCheckpoint());
  CliRun r = Phivault(
      To({"audit", "prove", "--seq", "5", "--checkpoint", saved, "--key", log_->VerifierKey()}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(Uris(), ::testing::ElementsAre("GET /v1/audit/proofs/inclusion?seq=5&tree_size=5"));
}

TEST_F(CliProveTest, WithoutAKeyTheDaemonsKeyIsUsedAndTheUserIsTold) {
  CliRun r = Phivault(To({"audit", "prove", "--seq", "1"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("fetched from the daemon"));
  EXPECT_EQ(daemon_.requests().front().uri, "/v1/audit/pubkey");
}

TEST_F(CliProveTest, ConsistencyPrintsAndVerifiesBetweenSavedCheckpoints) {
  const std::string old_cp = dir_.Sub("old.txt"), new_cp = dir_.Sub("new.txt");
  WriteFile(old_cp, *log_->LatestCheckpoint());
  WriteFile(new_cp, log_->Checkpoint());
  CliRun printed = Phivault(To({"audit", "consistency", "--from", "5", "--to", "11"}));
  ASSERT_EQ(printed.exit_code, 0) << printed.err;
  EXPECT_THAT(printed.out, StartsWith("consistency proof from 5 to 11 entries ("));
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/proofs/consistency?from=5&to=11");

  CliRun verified = Phivault(To({"audit", "consistency", "--old-checkpoint", old_cp,
                                 "--new-checkpoint", new_cp, "--key", log_->VerifierKey()}));
  ASSERT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_THAT(verified.out, HasSubstr("ok: the signed tree of 5 entries is a prefix"));

  // A validly signed checkpoint of another tree of 5 entries (a fork) is not a prefix.
  const storage::MerkleHash fork_root = storage::MerkleLeafHash("another history");
  const std::string fork_cp = dir_.Sub("fork.txt");
  WriteFile(fork_cp, log_->Sign({RealAuditLog::kOrigin, 5, fork_root, {}}));
  CliRun forked = Phivault(To({"audit", "consistency", "--old-checkpoint", fork_cp,
                               "--new-checkpoint", new_cp, "--key", log_->VerifierKey()}));
  EXPECT_EQ(forked.exit_code, 7);
  EXPECT_THAT(forked.err, StartsWith("phivault: verification failed: "));

  EXPECT_EQ(Phivault(To({"audit", "consistency", "--from", "5"})).exit_code, 2);
  EXPECT_EQ(Phivault(To({"audit", "consistency", "--old-checkpoint", old_cp})).exit_code, 2);
}

}  // namespace
}  // namespace phivault::tools
