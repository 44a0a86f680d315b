// `phivault backup create|verify|ls|restore|prune` (docs/backups.md). `create` asks the daemon,
// which backs up while it serves; `verify`, `ls`, `restore` and `prune` work offline, without the
// daemon or the keyring (restore needs the daemon stopped).
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "crypto/hash.h"
#include "crypto/signing.h"
#include "storage/backup.h"
#include "storage/checkpoint.h"
#include "tools/cli_internal.h"

namespace phivault::tools {
namespace {

// One NDJSON line on standard output, as `retention sweep --json` prints them.
void JsonLine(const nlohmann::json& j) {
  std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n"
            << std::flush;
}

// Progress as `retention sweep` shows it: with --json a {"progress":{"phase","done","total"}}
// line on standard output per report; otherwise a bar on standard error, only on a terminal.
class Progress {
 public:
  explicit Progress(const Globals& g)
      : json_(g.json), bar_(!g.json && ::isatty(STDERR_FILENO) == 1) {}
  ~Progress() { End(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void operator()(const client::SweepProgress& p) {
    if (json_) {
      JsonLine({{"progress", client::ToJson(p)}});
    } else if (bar_) {
      std::cerr << SweepProgressBar(p) << std::flush;
      drawn_ = true;
    }
  }
  storage::BackupProgressFn Fn() {
    if (!json_ && !bar_) return nullptr;
    return [this](std::string_view phase, uint64_t done, uint64_t total) {
      (*this)(client::SweepProgress{std::string(phase), done, total});
    };
  }
  // Ends the bar's line, so that what follows starts on a line of its own.
  void End() {
    if (drawn_) std::cerr << "\n";
    drawn_ = false;
  }

 private:
  bool json_;
  bool bar_;
  bool drawn_ = false;
};

// With --json, the final line of a command that streams progress: {"error":{...}}.
void JsonErrorLine(std::string_view title, std::string_view detail) {
  JsonLine({{"error", {{"title", title}, {"detail", detail}}}});
}

std::string Bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

nlohmann::json ManifestJson(const storage::BackupManifest& m) {
  return {{"id", m.id},
          {"vault_id", m.vault_id},
          {"created", storage::Rfc3339Utc(m.created_unix)},
          {"keyring_generation", m.keyring_generation},
          {"audit_size", m.audit_size},
          {"audit_root", crypto::Base64Encode(crypto::AsView(m.audit_root))},
          {"verifier_key", m.verifier_key},
          {"files", m.files.size()},
          {"bytes", m.TotalBytes()}};
}

int RunVerify(const std::string& dir, const std::string& id,
              const std::optional<crypto::NoteVerifier>& key, const Globals& g) {
  auto backup = storage::ResolveBackupDir(dir, id);
  if (!backup.ok()) {
    if (g.json) JsonErrorLine("no backup", backup.status().message());
    PrintError("no backup", backup.status().message());
    return kExitNotFound;
  }
  Progress progress(g);
  auto v = storage::VerifyBackup(*backup, key, progress.Fn());
  progress.End();
  if (!v.ok()) {
    if (g.json) JsonErrorLine("cannot verify the backup", v.status().message());
    PrintError("cannot verify the backup", v.status().message());
    return kExitError;
  }
  if (g.json) {
    nlohmann::json problems = nlohmann::json::array();
    for (const auto& p : v->problems) {
      problems.push_back({{"kind", p.kind}, {"path", p.path}, {"detail", p.detail}});
    }
    JsonLine({{"result",
               {{"ok", v->ok()},
                {"backup", *backup},
                {"signature_ok", v->signature_ok},
                {"key_source", v->key_source},
                {"manifest", v->manifest ? ManifestJson(*v->manifest) : nlohmann::json()},
                {"files_checked", v->files_checked},
                {"bytes_checked", v->bytes_checked},
                {"problems", problems}}}});
  } else if (v->ok()) {
    std::cout << "ok: backup " << Printable(v->manifest->id) << " verified\n"
              << "  signature: Ed25519 over the manifest (" << v->key_source << ")\n"
              << "  files:     " << v->files_checked << " files, " << Bytes(v->bytes_checked)
              << ", every BLAKE2b-256 and size as listed; no file that is not listed\n"
              << "  audit:     " << v->manifest->audit_size << " entries at backup time\n"
              << "  needs:     vault " << Printable(v->manifest->vault_id)
              << ", keyring generation " << v->manifest->keyring_generation
              << " or later (the keyring is not in the backup)\n";
  }
  if (!v->ok()) {
    for (const auto& p : v->problems) {
      PrintError("verification failed", p.kind + (p.path.empty() ? "" : " " + Printable(p.path)) +
                                            ": " + Printable(p.detail));
    }
    return kExitVerifyFailed;
  }
  if (!key) {
    std::cerr << "phivault: note: checked against the key the manifest names; pass --pubkey with "
                 "the audit verifier key kept apart from the backup to check who signed it\n";
  }
  return kExitOk;
}

int RunList(const std::string& dir, const Globals& g) {
  auto list = storage::ListBackups(dir);
  if (!list.ok()) {
    PrintError("cannot list backups", list.status().message());
    return kExitNotFound;
  }
  if (list->empty()) {
    PrintError("no backup", "no backup in " + Printable(dir) +
                                " (no directory there holds a manifest.phivault)");
    return kExitNotFound;
  }
  if (g.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& b : *list) {
      nlohmann::json item = b.manifest ? ManifestJson(*b.manifest) : nlohmann::json::object();
      item["path"] = b.dir;
      if (b.manifest) {
        item["new_bytes"] = b.new_bytes;
        item["shared_bytes"] = b.shared_bytes;
        item["unique_bytes"] = b.unique_bytes;
      }
      if (!b.error.empty()) item["error"] = b.error;
      out.push_back(std::move(item));
    }
    PrintJson({{"backups", out}, {"signatures_checked", false}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "CREATED", "FILES", "SIZE", "NEW", "SHARED",
                                                 "ONLY HERE", "AUDIT ENTRIES", "KEYRING GEN"}};
  for (const auto& b : *list) {
    if (!b.manifest) {
      rows.push_back({Printable(b.dir), "unreadable: " + Printable(b.error), "-", "-", "-", "-",
                      "-", "-", "-"});
      continue;
    }
    const auto& m = *b.manifest;
    rows.push_back({Printable(m.id), storage::Rfc3339Utc(m.created_unix),
                    std::to_string(m.files.size()), Bytes(m.TotalBytes()), Bytes(b.new_bytes),
                    Bytes(b.shared_bytes), Bytes(b.unique_bytes), std::to_string(m.audit_size),
                    std::to_string(m.keyring_generation)});
  }
  PrintTable(rows);
  std::cerr << "phivault: note: read from the manifests without checking them; `phivault backup "
               "verify` checks a backup. NEW: not in an earlier backup here; SHARED: the same "
               "file as an earlier one (hard link); ONLY HERE: freed if this backup is removed\n";
  return kExitOk;
}

int RunPrune(const std::string& dir, size_t keep, bool dry_run, const Globals& g) {
  auto r = storage::PruneBackups(dir, keep, dry_run);
  if (!r.ok()) {
    PrintError("cannot prune", Printable(r.status().message()));
    return r.status().code() == StatusCode::kNotFound          ? kExitNotFound
           : r.status().code() == StatusCode::kInvalidArgument ? kExitUsage
                                                               : kExitError;
  }
  if (g.json) {
    PrintJson({{"dry_run", dry_run},
               {"removed", r->removed},
               {"kept", r->kept},
               {"freed_bytes", r->freed_bytes}});
    return kExitOk;
  }
  for (const auto& id : r->removed) {
    std::cout << (dry_run ? "would remove " : "removed ") << Printable(id) << "\n";
  }
  std::cout << (dry_run ? "would free " : "freed ") << Bytes(r->freed_bytes) << "; kept "
            << r->kept.size() << " backup" << (r->kept.size() == 1 ? "" : "s")
            << " (each still complete)\n";
  return kExitOk;
}

int RunRestore(const std::string& dir, const std::string& id, const std::string& data_dir,
               const std::optional<crypto::NoteVerifier>& key, const Globals& g) {
  auto backup = storage::ResolveBackupDir(dir, id);
  if (!backup.ok()) {
    if (g.json) JsonErrorLine("no backup", backup.status().message());
    PrintError("no backup", backup.status().message());
    return kExitNotFound;
  }
  Progress progress(g);
  storage::RestoreOptions options;
  options.backup_dir = *backup;
  options.data_dir = data_dir;
  options.key = key;
  options.progress = progress.Fn();
  auto r = storage::RestoreBackup(options);
  progress.End();
  if (!r.ok()) {
    if (g.json) JsonErrorLine("restore refused", r.status().message());
    PrintError("restore refused", Printable(r.status().message()));
    return r.status().message().find("does not verify") != std::string::npos ? kExitVerifyFailed
                                                                             : kExitError;
  }
  if (g.json) {
    JsonLine({{"result",
               {{"ok", true},
                {"backup", *backup},
                {"manifest", ManifestJson(r->manifest)},
                {"key_source", r->key_source},
                {"had_database", r->had_database},
                {"previous_audit_size", r->previous_audit_size},
                {"previous_extends_backup", r->previous_extends_backup},
                {"lacking_entries", r->lacking_entries},
                {"set_aside", r->set_aside},
                {"keyring_generation",
                 r->keyring_generation ? nlohmann::json(*r->keyring_generation) : nlohmann::json()},
                {"marker", r->marker_path}}}});
  } else {
    std::cout << "restored backup " << Printable(r->manifest.id) << " into " << Printable(data_dir)
              << "/db\n"
              << "  verified:  signature (" << r->key_source
              << "), every file re-hashed as copied\n"
              << "  audit log: " << r->manifest.audit_size << " entries, as at backup time\n";
    if (r->had_database) {
      std::cout << "  previous:  " << r->previous_audit_size << " entries; the restored log lacks "
                << r->lacking_entries << " of them"
                << (r->previous_extends_backup ? " (the previous log extended the backup's)"
                                               : " (the previous log did NOT extend the backup's)")
                << "\n"
                << "  kept:      the previous database at " << Printable(r->set_aside)
                << " (its audit log holds the entries the restored one lacks)\n";
    }
    std::cout << "  audited:   phivaultd appends backup.restore at its next start\n";
  }
  if (!r->keyring_generation) {
    std::cerr << "phivault: note: there is no keyring at " << Printable(data_dir)
              << "/keyring: copy the vault's CURRENT keyring there before starting phivaultd (a "
                 "backup never contains it)\n";
  }
  return kExitOk;
}

}  // namespace

BackupCommands::BackupCommands(CLI::App& app) {
  CLI::App* backup = app.add_subcommand(
      "backup", "data backups that die with the key: create, verify, list, restore");
  backup->require_subcommand(1);
  backup->fallthrough();
  create_ = backup->add_subcommand(
      "create",
      "ask the daemon to back the vault up, while it serves, into a new directory under DIR "
      "(on the daemon's machine); the keyring is never part of it");
  create_->add_option("dir", a_.dir, "the backups directory (absolute path)")->required();
  verify_ = backup->add_subcommand(
      "verify",
      "check a backup offline: manifest signature, every file's size and BLAKE2b-256, no foreign "
      "file; exit 7 if it does not verify");
  ls_ = backup->add_subcommand(
      "ls",
      "list the backups in DIR with their new and shared bytes (from their manifests, "
      "unchecked)");
  prune_ = backup->add_subcommand(
      "prune",
      "remove all but the newest N backups in DIR; the kept ones stay complete (what they share "
      "with a removed one is a hard link)");
  prune_->add_option("dir", a_.dir, "the backups directory")->required();
  prune_->add_option("--keep", a_.keep, "how many of the newest backups to keep (at least 1)")
      ->required();
  prune_->add_flag("--dry-run", a_.dry_run, "say what would be removed and freed; remove nothing");
  restore_ = backup->add_subcommand(
      "restore",
      "verify a backup, then put its database in place of DATA_DIR/db (the daemon must be "
      "stopped); the previous database is kept aside");
  for (CLI::App* cmd : {verify_, ls_, restore_}) {
    cmd->add_option("dir", a_.dir, "a backup, or the backups directory")->required();
  }
  for (CLI::App* cmd : {verify_, restore_}) {
    cmd->add_option("--id", a_.id, "the backup's id in DIR (default: the newest)");
    cmd->add_option("--pubkey", a_.pubkey,
                    "file holding the audit verifier key, as `phivault audit pubkey` prints it");
  }
  restore_->add_option("--data-dir", a_.data_dir, "the vault's data_dir (db/ and keyring)")
      ->required();
}

bool BackupCommands::LongRunning() const { return create_->parsed(); }

std::optional<int> BackupCommands::RunLocal(const Globals& g) const {
  if (!verify_->parsed() && !ls_->parsed() && !restore_->parsed() && !prune_->parsed()) {
    return std::nullopt;
  }
  if (ls_->parsed()) return RunList(a_.dir, g);
  if (prune_->parsed()) return RunPrune(a_.dir, a_.keep, a_.dry_run, g);
  int rc = kExitOk;
  std::optional<crypto::NoteVerifier> key;
  if (!a_.pubkey.empty()) {
    key = KeyFromFile(a_.pubkey, &rc);
    if (!key) return rc;
  }
  if (verify_->parsed()) return RunVerify(a_.dir, a_.id, key, g);
  return RunRestore(a_.dir, a_.id, a_.data_dir, key, g);
}

std::optional<int> BackupCommands::Run(client::Client& c, const client::Actor& actor,
                                       const Globals& g) const {
  if (!create_->parsed()) return std::nullopt;
  if (a_.dir.empty() || a_.dir.front() != '/') {
    return UsageError("backup create needs an absolute DIR (the daemon resolves it)");
  }
  Progress progress(g);
  auto made =
      c.CreateBackup(actor, a_.dir, [&progress](const client::SweepProgress& p) { progress(p); });
  progress.End();
  if (!made.ok()) {
    if (g.json) {
      const client::Error& e = made.error();
      JsonLine({{"error",
                 {{"type", e.type},
                  {"title", e.title},
                  {"status", e.http_status},
                  {"detail", e.detail}}}});
    }
    return Fail(made.error());
  }
  if (g.json) {
    JsonLine({{"result", client::ToJson(*made)}});
    return kExitOk;
  }
  std::cout << "backup " << Printable(made->id) << " at " << Printable(made->path) << "\n"
            << "  " << made->files << " files, " << Bytes(made->bytes) << " ("
            << Bytes(made->bytes - std::min(made->shared_bytes, made->bytes))
            << " new, the rest shared with earlier backups in the directory); audit log at "
            << made->audit_size << " entries; needs keyring generation " << made->keyring_generation
            << " or later\n"
            << "  check it with: phivault backup verify " << Printable(made->path)
            << " --pubkey FILE\n";
  return kExitOk;
}

}  // namespace phivault::tools
