// `phivault retention|hold|certificate ...`: how long records are kept, legal holds, retention
// sweeps, and the certificates of destruction sweeps issue (docs/retention.md,
// docs/destruction.md). `certificate verify --file F --pubkey K` works offline.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "crypto/signing.h"
#include "policies/time_format.h"
#include "storage/destruction_certificate.h"
#include "tools/cli_internal.h"

namespace phivault::tools {
namespace {

std::string Join(const std::vector<std::string>& items, std::string_view separator = ",") {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += separator;
    out += Printable(item);
  }
  return out;
}

std::string OrDash(const std::optional<std::string>& v) {
  return v && !v->empty() ? Printable(*v) : "-";
}

std::string OrDash(const std::string& v) { return v.empty() ? "-" : Printable(v); }

// "N record(s)".
std::string Count(uint64_t n, std::string_view noun) {
  return std::to_string(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
}

// ---- retention ----

int RunRules(client::Client& c, const client::Actor& actor, const Globals& g) {
  auto table = c.GetRetentionRules(actor);
  if (!table.ok()) return Fail(table.error());
  if (g.json) {
    PrintJson(client::ToJson(*table));
    return kExitOk;
  }
  std::cout << "preset " << Printable(table->preset) << " from " << Printable(table->source)
            << " (sha256 " << Printable(table->sha256) << ")\n";
  std::vector<std::vector<std::string>> rows = {
      {"RULE", "CATEGORIES", "AFTER", "YEARS", "MAJORITY", "SOURCE", "WRITTEN AT"}};
  for (const auto& r : table->rules) {
    rows.push_back({Printable(r.name), Join(r.categories), Printable(r.basis),
                    r.basis == "permanent" ? "-" : std::to_string(r.years),
                    r.age_of_majority ? std::to_string(*r.age_of_majority) : "-", OrDash(r.source),
                    OrDash(r.origin)});
  }
  PrintTable(rows);
  return kExitOk;
}

int RunShow(client::Client& c, const client::Actor& actor, const Globals& g,
            const std::string& patient) {
  auto records = c.PatientRetention(actor, patient);
  if (!records.ok()) return Fail(records.error());
  if (g.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& r : *records) list.push_back(client::ToJson(r));
    PrintJson({{"records", list}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"RECORD", "CATEGORY", "VERSIONS", "OUTCOME", "EXPIRES", "EPOCH", "HOLDS", "REASON"}};
  for (const auto& r : *records) {
    rows.push_back({Printable(r.record_id), Printable(r.category), std::to_string(r.versions),
                    Printable(r.outcome), OrDash(r.expires_on), Printable(r.epoch_id),
                    r.hold_ids.empty() ? "-" : Join(r.hold_ids), Printable(r.reason)});
  }
  PrintTable(rows);
  return kExitOk;
}

// A patient's blind id, shortened for a table (the full one is in the --json output).
std::string BlindIdPrefix(const std::string& bid) {
  return bid.size() > 12 ? Printable(bid.substr(0, 12)) + "..." : Printable(bid);
}

void PrintDryRun(const client::SweepResult& r) {
  std::cout << "dry run until " << Printable(r.until) << ": "
            << Count(r.destroyed_records, "record") << " ("
            << Count(r.destroyed_versions, "version")
            << ") would be destroyed; nothing was destroyed\n";
  if (r.held_records > 0) {
    std::cout << Count(r.held_records, "expired record") << " kept under a legal hold\n";
  }
  if (r.destroyed.empty()) return;
  std::vector<std::vector<std::string>> rows = {
      {"RECORD", "CATEGORY", "VERSIONS", "EPOCH", "EXPIRED", "PATIENT (BLIND ID)", "RULE"}};
  for (const auto& d : r.destroyed) {
    rows.push_back({Printable(d.record_id), Printable(d.category), std::to_string(d.versions),
                    Printable(d.epoch_id), Printable(d.expires_on), BlindIdPrefix(d.patient_bid),
                    Printable(d.reason)});
  }
  PrintTable(rows);
}

void PrintDestroyed(const client::SweepResult& r) {
  if (r.resumed) std::cout << "completed the sweep an earlier run left unfinished\n";
  std::cout << "destroyed " << Count(r.destroyed_records, "record") << " ("
            << Count(r.destroyed_versions, "version") << ") expired on or before "
            << Printable(r.until) << "\n";
  if (!r.epochs_destroyed.empty()) {
    std::cout << "epoch keys destroyed: " << Join(r.epochs_destroyed, ", ") << "\n";
  }
  if (r.rewrapped_records > 0) {
    std::cout << Count(r.rewrapped_records, "record")
              << " found not to be expired and moved to a later epoch\n";
  }
  if (r.held_records > 0) {
    std::cout << Count(r.held_records, "record") << " kept under a legal hold\n";
  }
  if (!r.verification_result.empty()) {
    std::cout << "verification: " << Printable(r.verification_result) << "\n";
  }
  if (r.certificate_id) {
    std::cout << "certificate of destruction: " << Printable(*r.certificate_id) << "\n"
              << "  phivault certificate show " << Printable(*r.certificate_id) << "\n";
  } else {
    std::cout << "nothing was destroyed: no certificate was issued\n";
  }
  std::cout << "audit seq " << r.audit_seq << "\n";
}

int RunSweep(client::Client& c, const client::Actor& actor, const Globals& g, bool dry_run,
             const std::string& until) {
  const bool bar = !g.json && ::isatty(STDERR_FILENO) == 1;
  bool drawn = false;
  const client::SweepProgressCallback on_progress = [&](const client::SweepProgress& p) {
    if (g.json) {
      std::cout << nlohmann::json{{"progress", client::ToJson(p)}}.dump(
                       -1, ' ', false, nlohmann::json::error_handler_t::replace)
                << "\n"
                << std::flush;
    } else if (bar) {
      std::cerr << SweepProgressBar(p) << std::flush;
      drawn = true;
    }
  };
  auto r = c.Sweep(actor, dry_run, Opt(until), on_progress);
  if (drawn) std::cerr << "\n";
  if (!r.ok()) {
    if (g.json) {
      const client::Error& e = r.error();
      std::cout << nlohmann::json{{"error",
                                   {{"type", e.type},
                                    {"title", e.title},
                                    {"status", e.http_status},
                                    {"detail", e.detail}}}}
                       .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                << "\n";
    }
    return Fail(r.error());
  }
  if (g.json) {
    std::cout << nlohmann::json{{"result", client::ToJson(*r)}}.dump(
                     -1, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
  } else if (r->dry_run) {
    PrintDryRun(*r);
  } else {
    PrintDestroyed(*r);
  }
  return kExitOk;
}

// ---- holds ----

int PrintHoldChanged(const client::Result<client::HoldChanged>& r, const Globals& g, bool placed) {
  if (!r.ok()) return Fail(r.error());
  if (g.json) {
    PrintJson({{"hold", client::ToJson(r->hold)}, {"audit_seq", r->audit_seq}});
  } else if (placed) {
    std::cout << Printable(r->hold.id) << "\n";
  } else {
    std::cout << "released " << Printable(r->hold.id) << " at " << OrDash(r->hold.released_at)
              << ", audit seq " << r->audit_seq << "\n";
  }
  return kExitOk;
}

int RunHoldList(client::Client& c, const client::Actor& actor, const Globals& g,
                const std::string& patient, bool all) {
  auto holds = c.ListHolds(actor, Opt(patient), all);
  if (!holds.ok()) return Fail(holds.error());
  if (g.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& h : *holds) list.push_back(client::ToJson(h));
    PrintJson({{"holds", list}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "PATIENT", "MATTER", "COVERS", "PLACED", "PLACED BY", "RELEASED", "REASON"}};
  for (const auto& h : *holds) {
    rows.push_back({Printable(h.id), Printable(h.patient_id), Printable(h.matter),
                    h.scope == "patient" ? "all records" : "records " + Join(h.record_ids),
                    Printable(h.placed_at), Printable(h.placed_by), OrDash(h.released_at),
                    Printable(h.reason)});
  }
  PrintTable(rows);
  return kExitOk;
}

// ---- certificates ----

int RunCertificateList(client::Client& c, const client::Actor& actor, const Globals& g) {
  auto list = c.ListCertificates(actor);
  if (!list.ok()) return Fail(list.error());
  if (g.json) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& s : *list) items.push_back(client::ToJson(s));
    PrintJson({{"certificates", items}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "STARTED", "FINISHED", "RECORDS", "VERSIONS", "PATIENTS", "EPOCH KEYS"}};
  for (const auto& s : *list) {
    rows.push_back({Printable(s.id), Printable(s.started_at), Printable(s.finished_at),
                    std::to_string(s.records), std::to_string(s.versions),
                    std::to_string(s.patients), Join(s.epoch_ids)});
  }
  PrintTable(rows);
  return kExitOk;
}

int RunCertificateShow(client::Client& c, const client::Actor& actor, const Globals& g,
                       const std::string& id, bool html, const std::string& output) {
  if (html && g.json) return UsageError("certificate show takes --html or --json, not both");
  const client::CertificateFormat format = html     ? client::CertificateFormat::kHtml
                                           : g.json ? client::CertificateFormat::kJson
                                                    : client::CertificateFormat::kNote;
  auto r = c.GetCertificate(actor, id, format);
  if (!r.ok()) return Fail(r.error());
  if (output.empty()) {
    std::cout << r->body;
    if (!r->body.empty() && r->body.back() != '\n') std::cout << "\n";
    return kExitOk;
  }
  std::string error;
  auto file = OutputFile::Create(output, &error);
  if (!file || !file->Write(r->body) || !file->Commit(&error)) {
    PrintError("cannot write the certificate", file && error.empty() ? file->error() : error);
    return kExitError;
  }
  return kExitOk;
}

// Verifies `note` and says what was checked; exit 7 with the reason if it does not verify.
int VerifyCertificateNote(const std::string& note, const crypto::NoteVerifier& verifier,
                          const std::string& key_source, const Globals& g) {
  auto cert = storage::VerifyDestructionCertificate(note, verifier);
  if (!cert.ok()) {
    if (g.json) PrintJson({{"ok", false}, {"problem", cert.status().message()}});
    PrintError("verification failed", Printable(cert.status().message()));
    return kExitVerifyFailed;
  }
  const storage::DestructionCounts counts = storage::CountDestroyed(*cert);
  if (g.json) {
    PrintJson({{"ok", true},
               {"id", cert->id},
               {"signed_by", verifier.name},
               {"key_source", key_source},
               {"started", policies::FormatUtcTimestamp(cert->started_unix_us)},
               {"finished", policies::FormatUtcTimestamp(cert->finished_unix_us)},
               {"principal", cert->principal},
               {"user", cert->user},
               {"role", cert->role},
               {"records", counts.records},
               {"versions", counts.versions},
               {"patients", counts.patients},
               {"epoch_ids", cert->epoch_ids},
               {"verification_result", cert->verification_result},
               {"audit_seq_first", cert->audit_seq_first},
               {"audit_seq_last", cert->audit_seq_last}});
    return kExitOk;
  }
  std::cout << "ok: certificate " << Printable(cert->id) << " verified\n"
            << "  form:      every line as the certificate format defines it, counts match the "
               "record lines\n"
            << "  signature: Ed25519 by " << Printable(verifier.name) << " over the whole text ("
            << Printable(key_source) << ")\n"
            << "  performed: " << policies::FormatUtcTimestamp(cert->started_unix_us) << " to "
            << policies::FormatUtcTimestamp(cert->finished_unix_us) << " by "
            << Printable(cert->principal) << " (user " << Printable(cert->user) << ", role "
            << Printable(cert->role) << ")\n"
            << "  destroyed: " << Count(counts.records, "record") << ", "
            << Count(counts.versions, "version") << ", " << Count(counts.patients, "patient")
            << "; epoch keys " << Join(cert->epoch_ids, ", ") << "\n"
            << "  checked:   " << Printable(cert->verification) << ": "
            << Printable(cert->verification_result) << "\n"
            << "  audit:     entries " << cert->audit_seq_first << " to " << cert->audit_seq_last
            << "\n";
  return kExitOk;
}

std::optional<std::string> ReadNoteFile(const std::string& path, int* rc) {
  std::string error;
  auto note = ReadInput(path, &error);
  if (!note) {
    PrintError("cannot read the certificate", error);
    *rc = kExitError;
  }
  return note;
}

}  // namespace

std::optional<crypto::NoteVerifier> KeyFromFile(const std::string& path, int* rc) {
  std::string error;
  auto text = ReadInput(path, &error);
  if (!text) {
    PrintError("cannot read the verifier key", error);
    *rc = kExitError;
    return std::nullopt;
  }
  const auto space = [](char ch) { return std::isspace(static_cast<unsigned char>(ch)) != 0; };
  const auto first = std::find_if_not(text->begin(), text->end(), space);
  const auto last = std::find_if_not(text->rbegin(), text->rend(), space).base();
  const std::string key = first < last ? std::string(first, last) : std::string();
  auto verifier = crypto::ParseNoteVerifierKey(key);
  if (!verifier.ok()) {
    *rc = UsageError("--pubkey " + path + " is not a verifier key: " + verifier.status().message());
    return std::nullopt;
  }
  return std::move(verifier).value();
}

std::string SweepProgressBar(const client::SweepProgress& p) {
  constexpr size_t kWidth = 30;
  const uint64_t done = std::min(p.done, p.total);
  const uint64_t percent = p.total == 0 ? 100 : done * 100 / p.total;
  const size_t filled = static_cast<size_t>(p.total == 0 ? kWidth : done * kWidth / p.total);
  std::string phase = Printable(p.phase);
  if (phase.size() < 11) phase.resize(11, ' ');
  return "\r" + phase + " [" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "] " +
         std::to_string(p.done) + "/" + std::to_string(p.total) + " " + std::to_string(percent) +
         "%\x1b[K";
}

RetentionCommands::RetentionCommands(CLI::App& app) {
  CLI::App* retention =
      app.add_subcommand("retention", "how long records are kept, and retention sweeps");
  retention->require_subcommand(1);
  retention->fallthrough();
  rules_ = retention->add_subcommand("rules", "the retention table in force");
  show_ = retention->add_subcommand("show", "how long each of a patient's records is kept");
  show_->add_option("--patient", a_.patient, "patient identifier")->required();
  sweep_ = retention->add_subcommand(
      "sweep",
      "destroy (crypto-shred) the records whose retention has ended and that no legal hold "
      "covers, and issue a certificate of destruction; --dry-run lists them instead");
  CLI::Option* dry = sweep_->add_flag("--dry-run", a_.dry_run,
                                      "list what would be destroyed and why; destroy nothing");
  CLI::Option* destroy =
      sweep_->add_flag("--destroy", a_.destroy, "destroy the expired records (irreversible)");
  dry->excludes(destroy);
  sweep_->add_option("--until", a_.until,
                     "what expired on or before this day, YYYY-MM-DD (default: today; only a dry "
                     "run may look ahead)");

  CLI::App* hold = app.add_subcommand("hold", "legal holds: nothing they cover is destroyed");
  hold->require_subcommand(1);
  hold->fallthrough();
  hold_place_ = hold->add_subcommand("place", "place a legal hold; prints its id");
  hold_place_->add_option("--patient", a_.patient, "patient identifier")->required();
  hold_place_->add_option("--matter", a_.matter, "the matter (litigation, investigation, audit)")
      ->required();
  hold_place_->add_option("--reason", a_.reason, "why the hold is placed")->required();
  hold_place_->add_option("--record", a_.records,
                          "a record held (repeatable; default: every record of the patient, now "
                          "and later)");
  hold_release_ = hold->add_subcommand("release", "release a legal hold");
  hold_release_->add_option("id", a_.id, "the hold's id (from `hold ls`)")->required();
  hold_release_->add_option("--reason", a_.reason, "why it is released")->required();
  hold_ls_ = hold->add_subcommand("ls", "list active legal holds");
  hold_ls_->add_option("--patient", a_.patient, "only this patient's");
  hold_ls_->add_flag("--all", a_.all, "include released holds");

  CLI::App* certificate =
      app.add_subcommand("certificate", "certificates of destruction issued by retention sweeps");
  certificate->require_subcommand(1);
  certificate->fallthrough();
  cert_ls_ = certificate->add_subcommand("ls", "list certificates of destruction, newest first");
  cert_show_ = certificate->add_subcommand(
      "show",
      "print a certificate: the signed note (what `certificate verify` checks), or with --html "
      "a printable page, with --json its JSON form (both verified by the daemon first)");
  cert_show_->add_option("id", a_.id, "certificate id (32 hex digits)")->required();
  cert_show_->add_flag("--html", a_.html, "the printable HTML page");
  cert_show_->add_option("-o,--output", a_.output, "write to FILE (created 0600)");
  cert_verify_ = certificate->add_subcommand(
      "verify",
      "verify a certificate's signature and form with the audit verifier key (offline with "
      "--file and --pubkey); exit 7 if it does not verify");
  CLI::Option* id = cert_verify_->add_option("id", a_.id, "fetch this certificate from the daemon");
  cert_verify_->add_option("--file", a_.file, "a saved certificate note, or - for standard input")
      ->excludes(id);
  cert_verify_->add_option(
      "--pubkey", a_.pubkey,
      "file holding the audit verifier key, as `phivault audit pubkey` prints it (default: the "
      "daemon's)");
}

bool RetentionCommands::LongRunning() const { return sweep_->parsed(); }

std::optional<int> RetentionCommands::CheckArgs() const {
  if (sweep_->parsed()) {
    if (a_.dry_run == a_.destroy) {
      return UsageError(
          "retention sweep needs exactly one of --dry-run (list what would be destroyed) and "
          "--destroy (destroy it)");
    }
    if (!a_.until.empty() && !IsCalendarDate(a_.until)) {
      return UsageError("--until must be a calendar date written YYYY-MM-DD");
    }
  }
  if (cert_verify_->parsed() && a_.id.empty() && a_.file.empty()) {
    return UsageError("certificate verify needs a certificate ID or --file FILE");
  }
  return std::nullopt;
}

std::optional<int> RetentionCommands::RunLocal(const Globals& g) const {
  if (auto rc = CheckArgs()) return rc;
  if (!cert_verify_->parsed() || a_.file.empty() || a_.pubkey.empty()) return std::nullopt;
  int rc = kExitOk;
  auto verifier = KeyFromFile(a_.pubkey, &rc);
  if (!verifier) return rc;
  auto note = ReadNoteFile(a_.file, &rc);
  if (!note) return rc;
  return VerifyCertificateNote(*note, *verifier, "key from " + a_.pubkey, g);
}

std::optional<int> RetentionCommands::Run(client::Client& c, const client::Actor& actor,
                                          const Globals& g) const {
  if (rules_->parsed()) return RunRules(c, actor, g);
  if (show_->parsed()) return RunShow(c, actor, g, a_.patient);
  if (sweep_->parsed()) return RunSweep(c, actor, g, a_.dry_run, a_.until);
  if (hold_place_->parsed()) {
    return PrintHoldChanged(c.PlaceHold(actor, {.patient_id = a_.patient,
                                                .matter = a_.matter,
                                                .reason = a_.reason,
                                                .record_ids = a_.records}),
                            g, /*placed=*/true);
  }
  if (hold_release_->parsed()) {
    return PrintHoldChanged(c.ReleaseHold(actor, a_.id, a_.reason), g, /*placed=*/false);
  }
  if (hold_ls_->parsed()) return RunHoldList(c, actor, g, a_.patient, a_.all);
  if (cert_ls_->parsed()) return RunCertificateList(c, actor, g);
  if (cert_show_->parsed()) return RunCertificateShow(c, actor, g, a_.id, a_.html, a_.output);
  if (cert_verify_->parsed()) {
    int rc = kExitOk;
    std::optional<crypto::NoteVerifier> verifier;
    std::string key_source;
    if (!a_.pubkey.empty()) {
      verifier = KeyFromFile(a_.pubkey, &rc);
      key_source = "key from " + a_.pubkey;
    } else {
      auto key = c.AuditVerifierKey(actor);
      if (!key.ok()) return Fail(key.error());
      auto parsed = crypto::ParseNoteVerifierKey(*key);
      if (!parsed.ok()) {
        PrintError("unexpected response from daemon",
                   "its verifier key is not valid: " + parsed.status().message());
        return kExitError;
      }
      verifier = std::move(parsed).value();
      key_source = "key fetched from the daemon";
      std::cerr << "phivault: note: using the verifier key fetched from the daemon ("
                << Printable(*key)
                << "); pass --pubkey with a key kept apart from the vault to check the daemon "
                   "itself\n";
    }
    if (!verifier) return rc;
    std::optional<std::string> note;
    if (!a_.file.empty()) {
      note = ReadNoteFile(a_.file, &rc);
      if (!note) return rc;
    } else {
      auto fetched = c.GetCertificate(actor, a_.id, client::CertificateFormat::kNote);
      if (!fetched.ok()) return Fail(fetched.error());
      note = std::move(fetched->body);
    }
    return VerifyCertificateNote(*note, *verifier, key_source, g);
  }
  return std::nullopt;
}

}  // namespace phivault::tools
