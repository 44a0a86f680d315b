// Pieces the `phivault` command files share (tools/cli.cc, cli_policy.cc, cli_patient.cc,
// cli_retention.cc, cli_bench.cc): the
// global options, error printing with the CLI's exit codes, PHI-safe output files, and the
// command groups that live in their own files. Not a public interface.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/signing.h"
#include "tools/cli.h"
#include "tools/client.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace phivault::tools {

struct Globals {
  std::string socket;
  std::string token;
  std::string user;
  std::string role;
  std::string purpose = "TREAT";
  bool purpose_given = false;  // by --purpose or PHIVAULT_PURPOSE, not the default
  bool json = false;
};

// "phivault: <title>: <detail>" on standard error.
void PrintError(std::string_view title, std::string_view detail);
// Prints the daemon's error (with the deciding rule of a 403) and returns its exit code.
int Fail(const client::Error& e);
// Prints a usage error with the hint to --help; returns kExitUsage.
int UsageError(std::string_view detail);
// Replaces control characters so that daemon-supplied text cannot drive the terminal.
std::string Printable(std::string_view s);
// The whole of `path` ("-": standard input), or nullopt with `*error` set.
std::optional<std::string> ReadInput(const std::string& path, std::string* error);
// Pretty JSON on standard output; text that is not valid UTF-8 is printed with U+FFFD.
void PrintJson(const nlohmann::json& j);
// The audit seq (or {"audit_seq"} with --json), or the error.
int PrintAuditSeq(const client::Result<uint64_t>& seq, const Globals& g);
// Left-aligned columns, two spaces apart; the first row is the header. Cells must be printable.
void PrintTable(const std::vector<std::vector<std::string>>& rows);
// Empty -> nullopt.
std::optional<std::string> Opt(const std::string& s);

// True for the codes a request may carry (every HL7 PurposeOfUse code but the abstract root).
bool IsPurposeOfUseCode(std::string_view code);
// The common codes first, then every code, for usage errors.
std::string PurposeOfUseCodeList();

// A file that receives PHI (content, reports, exports): mode 0600 even if it existed before,
// and removed again unless Commit succeeds, so that a failed write leaves no partial copy.
class OutputFile {
 public:
  static std::optional<OutputFile> Create(const std::string& path, std::string* error);
  OutputFile(OutputFile&& other) noexcept;
  OutputFile& operator=(OutputFile&&) = delete;
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile();

  bool Write(std::string_view data);
  // Closes the file and keeps it. False (file removed, `*error` set) if an earlier write or the
  // close failed.
  bool Commit(std::string* error);
  // Why the last Write failed.
  const std::string& error() const { return error_; }

 private:
  OutputFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
  std::string error_;
};

// `phivault policy ...` (tools/cli_policy.cc): check, show, history and reload ask the daemon;
// test and diff run the policy engine locally, without a daemon.
class PolicyCommands {
 public:
  explicit PolicyCommands(CLI::App& app);
  // The exit code of `policy test` / `policy diff` if one of them was parsed.
  std::optional<int> RunLocal(const Globals& g) const;
  // The exit code of the daemon command parsed, if it is one of these.
  std::optional<int> Run(client::Client& c, const client::Actor& actor, const Globals& g) const;

 private:
  struct Args {
    std::string as_user, role, purpose, action, record, category;
    uint32_t version = 0;
    bool author = false, consent = false, break_glass = false;
    std::string at;
    std::string policy_file, cases_file, old_file, new_file, config;
  };
  Args a_;
  CLI::App* check_ = nullptr;
  CLI::App* show_ = nullptr;
  CLI::App* history_ = nullptr;
  CLI::App* reload_ = nullptr;
  CLI::App* test_ = nullptr;
  CLI::App* diff_ = nullptr;
};

// The patient-rights and review commands (tools/cli_patient.cc): `audit review`,
// `restrictions`, `patient export|contact|set|facts`, `requests`.
class PatientCommands {
 public:
  PatientCommands(CLI::App& app, CLI::App& audit);
  // The exit code of the command parsed, if it is one of these. `patient export` acts with
  // purpose PATRQT unless a purpose was given.
  std::optional<int> Run(client::Client& c, const client::Actor& actor, const Globals& g) const;

 private:
  struct Args {
    std::string id, note, patient, reason, recipient, address, channel, kind, received, outcome,
        delivered, output, request;
    std::vector<std::string> purposes, records, categories;
    bool all = false, overdue = false;
    std::string dob, died, last_encounter;  // patient set
    bool clear_dob = false, clear_died = false;
  };
  Args a_;
  CLI::App* review_ = nullptr;
  CLI::App* sign_off_ = nullptr;
  CLI::App* restrict_add_ = nullptr;
  CLI::App* restrict_ls_ = nullptr;
  CLI::App* restrict_end_ = nullptr;
  CLI::App* export_ = nullptr;
  CLI::App* contact_set_ = nullptr;
  CLI::App* contact_show_ = nullptr;
  CLI::App* request_open_ = nullptr;
  CLI::App* request_extend_ = nullptr;
  CLI::App* request_close_ = nullptr;
  CLI::App* request_ls_ = nullptr;
  CLI::App* facts_set_ = nullptr;
  CLI::App* facts_show_ = nullptr;
};

// One line of `retention sweep`'s progress bar on a terminal: "\r<phase> [###...] done/total
// N%" and an erase to the end of the line, so that each redraws the last.
std::string SweepProgressBar(const client::SweepProgress& progress);
// The verifier key in the file at `path` as `phivault audit pubkey` prints it (surrounding space
// ignored), for the offline --pubkey checks (certificates, backups). On failure prints the error,
// sets *rc (a usage error for a malformed key) and returns nullopt.
std::optional<crypto::NoteVerifier> KeyFromFile(const std::string& path, int* rc);

// `phivault retention|hold|certificate ...` (tools/cli_retention.cc). `certificate verify
// --file F --pubkey K` runs offline.
class RetentionCommands {
 public:
  explicit RetentionCommands(CLI::App& app);
  // A usage error in these commands' arguments, or the exit code of the offline verify.
  std::optional<int> RunLocal(const Globals& g) const;
  // The exit code of the daemon command parsed, if it is one of these.
  std::optional<int> Run(client::Client& c, const client::Actor& actor, const Globals& g) const;
  // True for `retention sweep`, which waits longer for the daemon than other commands.
  bool LongRunning() const;

 private:
  std::optional<int> CheckArgs() const;
  struct Args {
    std::string patient, matter, reason, id, until, output, file, pubkey;
    std::vector<std::string> records;
    bool all = false, dry_run = false, destroy = false, html = false;
  };
  Args a_;
  CLI::App* rules_ = nullptr;
  CLI::App* show_ = nullptr;
  CLI::App* sweep_ = nullptr;
  CLI::App* hold_place_ = nullptr;
  CLI::App* hold_release_ = nullptr;
  CLI::App* hold_ls_ = nullptr;
  CLI::App* cert_ls_ = nullptr;
  CLI::App* cert_show_ = nullptr;
  CLI::App* cert_verify_ = nullptr;
};

// `phivault backup create|verify|ls|restore|prune` (tools/cli_backup.cc). verify, ls, restore
// and prune run offline; create asks the daemon.
class BackupCommands {
 public:
  explicit BackupCommands(CLI::App& app);
  // The exit code of an offline command (verify, ls, restore, prune) if one was parsed.
  std::optional<int> RunLocal(const Globals& g) const;
  // The exit code of `backup create` if it was parsed.
  std::optional<int> Run(client::Client& c, const client::Actor& actor, const Globals& g) const;
  // True for `backup create`, which waits longer for the daemon than other commands.
  bool LongRunning() const;

 private:
  struct Args {
    std::string dir, id, pubkey, data_dir;
    size_t keep = 0;
    bool dry_run = false;
  };
  Args a_;
  CLI::App* create_ = nullptr;
  CLI::App* verify_ = nullptr;
  CLI::App* ls_ = nullptr;
  CLI::App* restore_ = nullptr;
  CLI::App* prune_ = nullptr;
};

// `phivault key rotate` (asks the daemon), and the offline key-custody commands
// (tools/cli_keys.cc): `recovery-kit create|combine`, `keyring export|import` (docs/keys.md).
class KeyCommands {
 public:
  explicit KeyCommands(CLI::App& app);
  // The exit code of an offline command if one was parsed.
  std::optional<int> RunLocal(const Globals& g) const;
  // The exit code of `key rotate` if it was parsed.
  std::optional<int> Run(client::Client& c, const client::Actor& actor, const Globals& g) const;

 private:
  struct Args {
    int shares = 0, threshold = 0;
    std::string key_file, out, keyring, file, to, new_passphrase_file;
  };
  Args a_;
  CLI::App* rotate_ = nullptr;
  CLI::App* kit_create_ = nullptr;
  CLI::App* kit_combine_ = nullptr;
  CLI::App* export_ = nullptr;
  CLI::App* import_ = nullptr;
};

// `phivault archive run [--dry-run]` (tools/cli_archive.cc; asks the daemon).
class ArchiveCommands {
 public:
  explicit ArchiveCommands(CLI::App& app);
  // The exit code of `archive run` if it was parsed.
  std::optional<int> Run(client::Client& c, const client::Actor& actor, const Globals& g) const;
  // True for `archive run`, which compacts the store and may take minutes.
  bool LongRunning() const;

 private:
  bool dry_run_ = false;
  CLI::App* run_ = nullptr;
};

// `phivault bench` (tools/cli_bench.cc): the load generator over the daemon's socket, with its
// own connections (one per client thread) rather than the CLI's client.
class BenchCommand {
 public:
  explicit BenchCommand(CLI::App& app);
  // The exit code of `bench` if it was parsed.
  std::optional<int> Run(const Globals& g) const;

 private:
  struct Args {
    std::string workload = "create", size = "1KiB", data_dir;
    int clients = 16;
    double duration_s = 10;
    uint64_t ops = 0, warmup_records = 0;
    int daemon_pid = 0;
  };
  Args a_;
  CLI::App* cmd_ = nullptr;
};

}  // namespace phivault::tools
