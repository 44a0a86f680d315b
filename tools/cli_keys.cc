// `phivault key rotate`, `phivault recovery-kit create|combine`, `phivault keyring
// export|import` (docs/keys.md). Everything but `key rotate` runs offline, on files.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "crypto/keyring.h"
#include "crypto/keyring_export.h"
#include "crypto/master_key.h"
#include "crypto/recovery_kit.h"
#include "crypto/secret.h"
#include "tools/cli_internal.h"

namespace phivault::tools {
namespace {

using crypto::SecretBytes;
const crypto::InsecureSecretKeyAccess kAccess = crypto::InsecureSecretKeyAccess::Get();
constexpr size_t kMaxSecretInput = 64 * 1024;

// Everything readable from `fd` (at most kMaxSecretInput bytes), in locked memory.
std::optional<SecretBytes> ReadSecret(int fd, const std::string& what, std::string* error) {
  SecretBytes buffer = SecretBytes::Zeros(kMaxSecretInput);
  size_t got = 0;
  while (got < buffer.size()) {
    const ssize_t n = ::read(fd, buffer.mutable_data(kAccess) + got, buffer.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = "cannot read " + what + ": " + std::strerror(errno);
      return std::nullopt;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got == buffer.size()) {
    *error = what + " is larger than " + std::to_string(kMaxSecretInput) + " bytes";
    return std::nullopt;
  }
  return SecretBytes::CopyFrom(buffer.view(kAccess).substr(0, got), kAccess);
}

// The master key from a key file (mode-checked like phivaultd's), or 32 raw bytes on standard
// input for "-" (e.g. `systemd-creds decrypt CRED -`).
std::optional<SecretBytes> LoadKey(const std::string& path, std::string* error) {
  if (path != "-") {
    auto key = crypto::LoadMasterKeyFile(path);
    if (!key.ok()) {
      *error = key.status().message();
      return std::nullopt;
    }
    return std::move(*key);
  }
  if (::isatty(STDIN_FILENO)) {
    *error = "--key-file - reads the 32-byte key from standard input, which is a terminal";
    return std::nullopt;
  }
  auto key = ReadSecret(STDIN_FILENO, "the master key on standard input", error);
  if (!key) return std::nullopt;
  if (key->size() != crypto::kMasterKeyBytes) {
    *error = "the master key on standard input must be exactly 32 bytes, got " +
             std::to_string(key->size());
    return std::nullopt;
  }
  return key;
}

std::optional<std::string> ReadFile(const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int LocalFail(std::string_view title, const Status& s) {
  PrintError(title, s.message());
  return s.code() == StatusCode::kFailedPrecondition ? kExitVerifyFailed : kExitError;
}

int RunKitCreate(const Globals& g, int shares, int threshold, const std::string& key_file) {
  std::string error;
  auto key = LoadKey(key_file, &error);
  if (!key) {
    PrintError("cannot load the master key", error);
    return kExitError;
  }
  auto kit = crypto::CreateRecoveryKit(*key, shares, threshold);
  if (!kit.ok()) return UsageError(kit.status().message());
  auto info = crypto::InspectRecoveryShare((*kit)[0], 1);
  if (!info.ok()) return LocalFail("recovery kit", info.status());
  if (g.json) {
    nlohmann::json out = {
        {"kit_id", info->kit_id}, {"threshold", threshold}, {"shares", nlohmann::json::array()}};
    for (size_t i = 0; i < kit->size(); ++i) {
      out["shares"].push_back({{"number", i + 1}, {"text", std::string((*kit)[i].view(kAccess))}});
    }
    PrintJson(out);
    return kExitOk;
  }
  std::cout << "# phivault recovery kit " << info->kit_id << ": " << shares << " shares, any "
            << threshold << " restore the master key; fewer reveal nothing about it.\n"
            << "# Give each share to one holder, on paper; keep no other copy (docs/keys.md).\n";
  for (size_t i = 0; i < kit->size(); ++i) {
    std::cout << "\n# share " << i + 1 << " of " << shares << " (kit " << info->kit_id
              << ", threshold " << threshold << ")\n"
              << (*kit)[i].view(kAccess) << "\n";
  }
  std::cout.flush();
  return kExitOk;
}

// Shares from standard input, one per line; empty lines and lines starting with '#' are skipped.
std::optional<std::vector<SecretBytes>> ReadShares(std::string* error) {
  const bool tty = ::isatty(STDIN_FILENO);
  if (tty) {
    std::cerr << "Type or paste one share per line; an empty line (or Ctrl-D) ends the input.\n";
  }
  std::vector<SecretBytes> shares;
  if (!tty) {
    auto all = ReadSecret(STDIN_FILENO, "the shares on standard input", error);
    if (!all) return std::nullopt;
    const std::string_view text = all->view(kAccess);
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string_view::npos) end = text.size();
      std::string_view line = text.substr(start, end - start);
      while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
      if (!line.empty() && line.front() != '#' && line.find_first_not_of(" \t\r") != line.npos) {
        shares.push_back(SecretBytes::CopyFrom(line, kAccess));
      }
      start = end + 1;
    }
    return shares;
  }
  for (;;) {
    std::cerr << "share " << shares.size() + 1 << ": " << std::flush;
    SecretBytes line = SecretBytes::Zeros(1024);
    size_t n = 0;
    bool eof = false;
    while (n < line.size()) {
      char c = 0;
      const ssize_t r = ::read(STDIN_FILENO, &c, 1);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        eof = true;
        break;
      }
      if (c == '\n') break;
      line.mutable_data(kAccess)[n++] = static_cast<uint8_t>(c);
    }
    const std::string_view typed = line.view(kAccess).substr(0, n);
    if (typed.find_first_not_of(" \t\r") == std::string_view::npos) break;
    shares.push_back(SecretBytes::CopyFrom(typed, kAccess));
    if (eof) break;
  }
  return shares;
}

int RunKitCombine(const Globals& g, const std::string& out, const std::string& keyring) {
  if (out == "-" && ::isatty(STDOUT_FILENO)) {
    return UsageError("--out - writes the raw 32-byte key to standard output, which is a terminal");
  }
  if (out != "-" && ::access(out.c_str(), F_OK) == 0) {
    return UsageError(out + " exists; a restored key is never written over a file");
  }
  std::string error;
  auto shares = ReadShares(&error);
  if (!shares) {
    PrintError("cannot read the shares", error);
    return kExitError;
  }
  auto key = crypto::CombineRecoveryShares(*shares);
  if (!key.ok()) return LocalFail("cannot restore the master key", key.status());
  std::optional<crypto::Keyring::CopyInfo> checked;
  if (!keyring.empty()) {
    auto bytes = ReadFile(keyring, &error);
    if (!bytes) {
      PrintError("cannot check the key against the keyring", error);
      return kExitError;
    }
    auto info = crypto::Keyring::InspectCopy(*bytes, *key, nullptr);
    if (!info.ok()) {
      PrintError(
          "the restored key does not open the keyring " + keyring,
          info.status().message() + (info.status().code() == StatusCode::kFailedPrecondition
                                         ? " (was the master key rotated after this kit was made?)"
                                         : ""));
      return kExitVerifyFailed;
    }
    checked = *info;
  }
  if (out == "-") {
    const std::string_view raw = key->view(kAccess);
    if (::write(STDOUT_FILENO, raw.data(), raw.size()) != static_cast<ssize_t>(raw.size())) {
      PrintError("cannot write the key", std::strerror(errno));
      return kExitError;
    }
  } else if (Status s = crypto::WriteMasterKeyFile(out, *key); !s.ok()) {
    return LocalFail("cannot write the key file", s);
  }
  if (g.json) {
    nlohmann::json j = {{"restored", true}, {"out", out}};
    if (checked) {
      j["keyring"] = {
          {"path", keyring}, {"vault_id", checked->vault_id}, {"generation", checked->generation}};
    }
    if (out != "-") PrintJson(j);
    return kExitOk;
  }
  std::ostream& msg = out == "-" ? std::cerr : std::cout;
  msg << "master key restored from " << shares->size() << " shares"
      << (out == "-" ? std::string(" to standard output") : " to " + out + " (mode 0400)");
  if (checked) {
    msg << "; it opens the keyring " << keyring << " of vault " << checked->vault_id
        << " (generation " << checked->generation << ")";
  }
  msg << "\n";
  return kExitOk;
}

int RunKeyringExport(const Globals& g, const std::string& keyring, const std::string& key_file,
                     const std::string& file) {
  if (::access(file.c_str(), F_OK) == 0) {
    return UsageError(file + " exists; an export is never written over a file");
  }
  std::string error;
  auto key = LoadKey(key_file, &error);
  if (!key) {
    PrintError("cannot load the master key", error);
    return kExitError;
  }
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  crypto::KeyringExportInfo info;
  StatusOr<std::string> sealed = DataLoss("not read");
  // phivaultd updates its keyring in place: a read that overlaps an update may not
  // authenticate, and the next one does.
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto bytes = ReadFile(keyring, &error);
    if (!bytes) {
      PrintError("cannot export the keyring", error);
      return kExitError;
    }
    sealed = crypto::SealKeyringExport(*bytes, *key, now, &info);
    if (sealed.ok() || sealed.status().code() != StatusCode::kDataLoss) break;
    ::usleep(100000);
  }
  if (!sealed.ok()) return LocalFail("cannot export the keyring " + keyring, sealed.status());
  auto out = OutputFile::Create(file, &error);
  if (!out || !out->Write(*sealed) || !out->Commit(&error)) {
    PrintError("cannot write " + file, out ? (error.empty() ? out->error() : error) : error);
    return kExitError;
  }
  ::chmod(file.c_str(), S_IRUSR);
  if (g.json) {
    PrintJson({{"file", file},
               {"vault_id", info.copy.vault_id},
               {"generation", info.copy.generation},
               {"live_epochs", info.copy.live_epochs},
               {"destroyed_epochs", info.copy.destroyed_epochs},
               {"exported_unix", info.exported_unix}});
    return kExitOk;
  }
  std::cout << "keyring of vault " << info.copy.vault_id << " (generation " << info.copy.generation
            << ", " << info.copy.live_epochs << " live epoch keys) exported to " << file
            << " (mode 0400), sealed under the current master key.\n"
            << "Whoever holds this file and the master key can read every record whose key it "
               "holds, including records shredded after today: destroy it when its custody period "
               "ends (docs/keys.md).\n";
  return kExitOk;
}

int RunKeyringImport(const Globals& g, const std::string& file, const std::string& key_file,
                     const std::string& to) {
  std::string error;
  auto bytes = ReadFile(file, &error);
  if (!bytes) {
    PrintError("cannot import the keyring", error);
    return kExitError;
  }
  auto key = LoadKey(key_file, &error);
  if (!key) {
    PrintError("cannot load the master key", error);
    return kExitError;
  }
  crypto::KeyringExportInfo info;
  if (Status s = crypto::ImportKeyringExport(*bytes, *key, to, nullptr, &info); !s.ok()) {
    return LocalFail("cannot import the keyring", s);
  }
  if (g.json) {
    PrintJson({{"keyring", to},
               {"vault_id", info.copy.vault_id},
               {"generation", info.copy.generation},
               {"exported_unix", info.exported_unix}});
    return kExitOk;
  }
  std::cout << "keyring of vault " << info.copy.vault_id << " (generation " << info.copy.generation
            << ") written to " << to
            << ". Keys destroyed after the export was made are back in it: run a retention sweep "
               "before serving requests (docs/keys.md).\n";
  return kExitOk;
}

int RunRotate(client::Client& c, const client::Actor& actor, const Globals& g,
              const std::string& passphrase_file) {
  std::optional<SecretBytes> passphrase;
  if (!passphrase_file.empty()) {
    std::string error;
    const int fd = passphrase_file == "-" ? STDIN_FILENO
                                          : ::open(passphrase_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      PrintError("cannot read the new passphrase", passphrase_file + ": " + std::strerror(errno));
      return kExitError;
    }
    passphrase = ReadSecret(fd, "the new passphrase", &error);
    if (fd != STDIN_FILENO) ::close(fd);
    if (!passphrase) {
      PrintError("cannot read the new passphrase", error);
      return kExitError;
    }
    // The first line, as phivaultd reads master_key.passphrase_file.
    const std::string_view all = passphrase->view(kAccess);
    const size_t eol = all.find('\n');
    if (eol != std::string_view::npos) {
      passphrase = SecretBytes::CopyFrom(all.substr(0, eol), kAccess);
    }
    if (passphrase->empty()) return UsageError("the new passphrase must not be empty");
  }
  auto r = c.RotateMasterKey(actor, passphrase ? &*passphrase : nullptr);
  if (!r.ok()) return Fail(r.error());
  if (g.json) {
    PrintJson({{"source", r->source},
               {"keyring_generation", r->keyring_generation},
               {"keyring_copies", r->keyring_copies},
               {"pending_key_path",
                r->pending_key_path ? nlohmann::json(*r->pending_key_path) : nlohmann::json()},
               {"audit_seq", r->audit_seq}});
    return kExitOk;
  }
  std::cout << "master key rotated (source " << Printable(r->source) << "): keyring generation "
            << r->keyring_generation << ", keyring copies re-sealed: " << r->keyring_copies
            << "; audit entry " << r->audit_seq << "\n";
  if (r->pending_key_path) {
    const std::string p = Printable(*r->pending_key_path);
    std::cout << "The new key is at " << p << ". Install it now, where [master_key] loads it:\n"
              << "  key file:   install -m 0400 -o phivault -g phivault " << p
              << " /etc/phivault/master.key\n"
              << "  credential: systemd-creds encrypt --name=phivault-master-key " << p
              << " /etc/phivault/master.key.cred\n"
              << "phivaultd uses it until then, and removes it at the first start at which the "
                 "configured key opens the keyring.\n";
  } else {
    std::cout << "Set the new passphrase where [master_key] reads it before phivaultd next "
                 "starts.\n";
  }
  std::cout << "Make a new recovery kit and keyring export: the old ones open only the keyring "
               "as it was before (docs/keys.md).\n";
  return kExitOk;
}

}  // namespace

KeyCommands::KeyCommands(CLI::App& app) {
  CLI::App* key = app.add_subcommand("key", "the master key");
  key->require_subcommand(1);
  key->fallthrough();
  rotate_ = key->add_subcommand(
      "rotate",
      "re-seal the keyring under a new master key while phivaultd serves (audited); prints where "
      "the new key waits to be installed");
  rotate_->add_option("--new-passphrase-file", a_.new_passphrase_file,
                      "the passphrase source: a file whose first line is the new passphrase "
                      "(\"-\": standard input)");

  CLI::App* kit = app.add_subcommand(
      "recovery-kit", "the master key split into Shamir shares for its holders (offline)");
  kit->require_subcommand(1);
  kit->fallthrough();
  kit_create_ = kit->add_subcommand(
      "create", "print the shares of a new recovery kit, each a line to write down");
  kit_create_->add_option("--shares", a_.shares, "how many shares (2-255)")->required();
  kit_create_->add_option("--threshold", a_.threshold, "how many of them restore the key")
      ->required();
  kit_create_
      ->add_option("--key-file", a_.key_file,
                   "the master key file (\"-\": 32 raw bytes on standard input, e.g. from "
                   "systemd-creds decrypt)")
      ->required();
  kit_combine_ = kit->add_subcommand(
      "combine", "restore the master key from shares read from standard input, one per line");
  kit_combine_
      ->add_option("--out", a_.out,
                   "the key file to create (mode 0400), or \"-\" for the raw key on standard "
                   "output (e.g. into systemd-creds encrypt)")
      ->required();
  kit_combine_->add_option("--keyring", a_.keyring,
                           "also check that the restored key opens this keyring copy");

  CLI::App* keyring = app.add_subcommand("keyring", "the keyring's offline custody");
  keyring->require_subcommand(1);
  keyring->fallthrough();
  export_ = keyring->add_subcommand(
      "export", "seal a copy of the keyring for offline custody (under the master key)");
  export_->add_option("FILE", a_.file, "the export to create (mode 0400)")->required();
  export_->add_option("--keyring", a_.keyring, "the keyring copy to export")
      ->default_val("/var/lib/phivault/keyring");
  export_->add_option("--key-file", a_.key_file, "the master key file (\"-\": standard input)")
      ->required();
  import_ = keyring->add_subcommand(
      "import", "write the keyring inside an export as a new keyring file (phivaultd stopped)");
  import_->add_option("FILE", a_.file, "the export")->required();
  import_->add_option("--to", a_.to, "the keyring file to create (never overwritten)")->required();
  import_
      ->add_option("--key-file", a_.key_file,
                   "the master key of the export's time (\"-\": standard input)")
      ->required();
}

std::optional<int> KeyCommands::RunLocal(const Globals& g) const {
  if (kit_create_->parsed()) return RunKitCreate(g, a_.shares, a_.threshold, a_.key_file);
  if (kit_combine_->parsed()) return RunKitCombine(g, a_.out, a_.keyring);
  if (export_->parsed()) return RunKeyringExport(g, a_.keyring, a_.key_file, a_.file);
  if (import_->parsed()) return RunKeyringImport(g, a_.file, a_.key_file, a_.to);
  return std::nullopt;
}

std::optional<int> KeyCommands::Run(client::Client& c, const client::Actor& actor,
                                    const Globals& g) const {
  if (rotate_->parsed()) return RunRotate(c, actor, g, a_.new_passphrase_file);
  return std::nullopt;
}

}  // namespace phivault::tools
