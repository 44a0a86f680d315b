#include "tools/cli.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "crypto/signing.h"
#include "policies/purpose_of_use.h"
#include "storage/audit_verify.h"
#include "storage/checkpoint.h"
#include "storage/merkle.h"
#include "tools/cli_init.h"
#include "tools/cli_internal.h"

namespace phivault::tools {
namespace {

constexpr const char* kDefaultSocket = "/run/phivault/phivault.sock";

// The daemon's default categories (daemon/config.cc DefaultCategories); a config may name others.
constexpr const char* kDefaultCategories =
    "demographics, insurance, clinical_note, lab_result, imaging, medication, billing, consent, "
    "correspondence, psychotherapy_note, substance_use";

}  // namespace

// The codes a request may carry: every PurposeOfUse code but the abstract root (as the daemon's
// daemon/auth.cc PurposeOfUseCodes). Checked here so that a typo is a usage error naming the
// valid codes, not a refusal from the daemon.
bool IsPurposeOfUseCode(std::string_view code) {
  const auto entry = policies::LookupPurposeOfUse(code);
  return entry.has_value() && entry->category != policies::PurposeCategory::kAbstract;
}

// The common codes first, then every code in alphabetical order.
std::string PurposeOfUseCodeList() {
  std::vector<std::string_view> codes;
  for (const auto& c : policies::AllPurposeOfUseCodes()) {
    if (c.category != policies::PurposeCategory::kAbstract) codes.push_back(c.code);
  }
  std::sort(codes.begin(), codes.end());
  std::string out = "TREAT, ETREAT, HPAYMT, HOPERAT, PATRQT, HLEGAL, PUBHLTH, HRESCH; all codes:";
  for (std::string_view code : codes) out += " " + std::string(code);
  return out;
}

namespace {

constexpr const char* kExitCodeHelp =
    "Exit codes:\n"
    "  0  success\n"
    "  1  other error (bad request, conflict, invalid policy, too large, disk below\n"
    "     reserve, server error); `policy test`: a case failed; `policy diff`: changes\n"
    "  2  usage error (bad or missing arguments)\n"
    "  3  denied (401 unauthenticated, 403 forbidden); `policy check`: deny\n"
    "  4  not found (404), or the record was shredded (410)\n"
    "  5  daemon unavailable (cannot connect, connection lost, or 503)\n"
    "  6  integrity failure (stored data failed authentication)\n"
    "  7  verification failed (audit export, proof or checkpoint did not verify)\n"
    "Environment: PHIVAULT_SOCKET, PHIVAULT_TOKEN, PHIVAULT_USER, PHIVAULT_ROLE,\n"
    "PHIVAULT_PURPOSE provide defaults for the matching options.\n";

struct RecordArgs {
  std::string patient;
  std::string category;
  std::string type;
  std::string encounter_date;
  std::string author;
  std::string reason;
  std::string id;
  std::string input = "-";
  std::string output;
  uint32_t version = 0;
  std::string dir;
  bool force_config = false;
  std::string practice_name;
  std::string retention_preset;
};

// Disclosure, suspension, report and audit options (one command runs per invocation).
struct ComplianceArgs {
  // disclose / get --disclose-to
  std::string recipient;
  std::string address;
  std::string basis;
  std::string disclosure_purpose;
  std::string description;
  std::string statement;
  std::vector<std::string> records;
  std::string date;
  // suspend
  std::string agency;
  std::string start;
  std::string end;
  bool oral = false;
  // report and export
  std::string patient;
  std::string from;
  std::string to;
  std::string format;
  std::string user;
  std::string action;
  std::string outcome;
  std::string output;
  // audit checkpoint / prove / consistency / verify
  bool new_checkpoint = false;
  uint64_t seq = 0;
  uint64_t size = 0;
  std::string checkpoint_file;
  std::string leaf_hash;
  uint64_t old_size = 0;
  uint64_t new_size = 0;
  std::string old_checkpoint;
  std::string new_checkpoint_file;
  std::vector<std::string> trusted_checkpoints;  // audit export / verify --trusted-checkpoint
  uint64_t min_size = 0;                         // audit verify --min-size
  std::string file;
  std::string key;
  std::string key_file;
  std::string origin;
  bool live = false;
};

std::string LoginName() {
  if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_name != nullptr) {
    return pw->pw_name;
  }
  if (const char* user = std::getenv("USER"); user != nullptr && *user != '\0') return user;
  return "uid:" + std::to_string(::geteuid());
}

}  // namespace

void PrintError(std::string_view title, std::string_view detail) {
  std::cerr << "phivault: " << title;
  if (!detail.empty()) std::cerr << ": " << detail;
  std::cerr << "\n";
}

int Fail(const client::Error& e) {
  std::string detail = e.detail;
  if (!e.rule.empty()) detail += (detail.empty() ? "(rule: " : " (rule: ") + e.rule + ")";
  PrintError(e.title, detail);
  if (!e.certificate.empty()) {
    std::cerr << "phivault: its certificate of destruction: phivault certificate show "
              << Printable(e.certificate) << "\n";
  }
  return ExitCodeFor(e);
}

int UsageError(std::string_view detail) {
  PrintError("usage error", detail);
  std::cerr << "Run with --help for more information.\n";
  return kExitUsage;
}

// Replaces control characters so that daemon-supplied text cannot drive the terminal.
std::string Printable(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return out;
}

namespace {

// As Printable, but keeps line breaks (for multi-line daemon text such as a checkpoint note).
std::string PrintableLines(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n') || u == 0x7f) c = '?';
  }
  return out;
}

}  // namespace

std::optional<std::string> ReadInput(const std::string& path, std::string* error) {
  std::string data;
  if (path == "-") {
    data.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    if (std::cin.bad()) {
      *error = "cannot read standard input";
      return std::nullopt;
    }
    return data;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot open " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) {
    *error = "cannot read " + path;
    return std::nullopt;
  }
  return data;
}

std::optional<OutputFile> OutputFile::Create(const std::string& path, std::string* error) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    *error = "cannot create " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  if (::fchmod(fd, 0600) != 0) {
    *error = "cannot make " + path + " private: " + std::strerror(errno);
    ::close(fd);
    return std::nullopt;
  }
  return OutputFile(path, fd);
}

OutputFile::OutputFile(OutputFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

OutputFile::~OutputFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
}

bool OutputFile::Write(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = "cannot write " + path_ + ": " + std::strerror(errno);
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool OutputFile::Commit(std::string* error) {
  const int fd = std::exchange(fd_, -1);
  if (error_.empty() && ::close(fd) != 0) {
    error_ = "cannot write " + path_ + ": " + std::strerror(errno);
  } else if (!error_.empty()) {
    ::close(fd);
  }
  if (error_.empty()) return true;
  ::unlink(path_.c_str());
  *error = error_;
  return false;
}

void PrintJson(const nlohmann::json& j) {
  std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

int PrintAuditSeq(const client::Result<uint64_t>& seq, const Globals& g) {
  if (!seq.ok()) return Fail(seq.error());
  if (g.json) {
    PrintJson({{"audit_seq", *seq}});
  } else {
    std::cout << *seq << "\n";
  }
  return kExitOk;
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return;
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

std::optional<std::string> Opt(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

namespace {

bool WriteOutput(const std::string& path, std::string_view data, std::string* error) {
  auto file = OutputFile::Create(path, error);
  if (!file) return false;
  file->Write(data);
  return file->Commit(error);
}

// Writes `data` to FILE (0600) if `path` is set, else to standard output.
int Emit(const std::string& path, std::string_view data, std::string_view what) {
  std::string error;
  if (!path.empty()) {
    if (!WriteOutput(path, data, &error)) {
      PrintError("cannot write " + std::string(what), error);
      return kExitError;
    }
    return kExitOk;
  }
  std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
  std::cout.flush();
  if (!std::cout) {
    PrintError("cannot write " + std::string(what), "standard output failed");
    return kExitError;
  }
  return kExitOk;
}

// Which retention preset the vault keeps records by, from which legal sources, and where to
// lengthen it: a vault must never keep records by a preset nobody knew it chose.
std::string RetentionLine(const InitResult& r, bool preset_defaulted) {
  std::string sources;
  for (const auto& s : r.retention_sources) sources += (sources.empty() ? "" : ", ") + s;
  std::string out = "retention:  preset " + r.retention_preset + " (" + sources + ")";
  if (!r.created_retention) {
    out += ", from the existing " + r.retention_path + " (kept)";
  } else if (preset_defaulted) {
    out += ", the default: choose another with --retention-preset";
  }
  return out + "; lengthen it in " + r.retention_path + "; see docs/retention.md";
}

int RunInit(const Globals& g, const RecordArgs& a) {
  InitOptions options{.dir = a.dir,
                      .force_config = a.force_config,
                      .uid = ::getuid(),
                      .practice_name = a.practice_name,
                      .retention_preset = a.retention_preset};
  auto r = InitDevVault(options);
  if (!r.ok()) {
    PrintError("init failed", r.status().message());
    return r.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitError;
  }
  // The token itself is never printed: standard output often ends up in a log.
  if (g.json) {
    PrintJson({{"dir", r->dir},
               {"config", r->config_path},
               {"master_key", r->key_path},
               {"data_dir", r->data_dir},
               {"socket", r->socket_path},
               {"created_master_key", r->created_key},
               {"application", "dev-app"},
               {"token_file", r->token_path},
               {"practice_name", r->practice_name},
               {"retention_file", r->retention_path},
               {"created_retention_file", r->created_retention},
               {"retention_preset", r->retention_preset},
               {"retention_sources", r->retention_sources}});
    return kExitOk;
  }
  std::cout << "Created a development vault in " << r->dir << " (for SYNTHETIC DATA only)\n"
            << "  config:     " << r->config_path << "\n"
            << "  master key: " << r->key_path
            << (r->created_key ? " (new; losing it loses every record)" : " (kept)") << "\n"
            << "  data:       " << r->data_dir << "\n"
            << "  socket:     " << r->socket_path << "\n"
            << "  token:      " << r->token_path
            << " (mode 0600; the token of application \"dev-app\", which may do everything)\n"
            << "  practice:   \"" << Printable(r->practice_name) << "\""
            << (a.practice_name.empty() ? " (the default; set it with --practice-name)" : "")
            << ", named on the reports given to patients\n"
            << "  " << RetentionLine(*r, a.retention_preset.empty()) << "\n"
            << "  operator:   uid " << options.uid
            << " (you), in every role: --role picks one; no token needed\n\n"
            << "Start the daemon:  phivaultd --config " << r->config_path << "\n"
            << "Then:              export PHIVAULT_SOCKET=" << r->socket_path
            << " PHIVAULT_TOKEN=$(cat " << r->token_path << ")\n";
  return kExitOk;
}

// "1234567 bytes (1.2 MiB)": exact for scripts that read the text, readable for people.
std::string Bytes(uint64_t n) {
  std::string out = std::to_string(n) + " bytes";
  if (n < 1024) return out;
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(n) / 1024;
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, " (%.1f %s)", v, kUnits[unit]);
  return out + buf;
}

int RunStatus(client::Client& c, const client::Actor& actor, const Globals& g) {
  auto s = c.Status(actor);
  if (!s.ok()) return Fail(s.error());
  if (g.json) {
    PrintJson(client::ToJson(*s));
    return kExitOk;
  }
  std::cout << "version:          " << Printable(s->version) << "\n"
            << "uptime:           " << s->uptime_seconds << " s\n"
            << "records:          " << s->records << "\n"
            << "patients:         " << s->patients << "\n"
            << "audit entries:    " << s->audit_entries << "\n"
            << "key epochs:       " << s->epochs << "\n"
            << "disk free:        " << Bytes(s->disk.free_bytes) << "\n"
            << "disk reserve:     " << Bytes(s->disk.reserve_bytes) << "\n"
            << "live data:        " << Bytes(s->disk.live_data_bytes) << "\n"
            << "  tables:         " << Bytes(s->disk.table_bytes) << "\n"
            << "  blob files:     " << Bytes(s->disk.blob_bytes) << "\n"
            << "  log (WAL):      " << Bytes(s->disk.log_bytes) << "\n";
  return kExitOk;
}

int RunPut(client::Client& c, const client::Actor& actor, const Globals& g, const RecordArgs& a) {
  std::string error;
  auto content = ReadInput(a.input, &error);
  if (!content) {
    PrintError("cannot read content", error);
    return kExitError;
  }
  client::NewRecord record{.patient_id = a.patient,
                           .category = a.category,
                           .content_type = a.type,
                           .encounter_date = a.encounter_date,
                           .author = a.author,
                           .content = std::move(*content)};
  auto m = c.CreateRecord(actor, record);
  if (!m.ok()) {
    // The daemon names its JSON field; say which option that was.
    if (m.error().kind == client::ErrorKind::kInvalid &&
        m.error().detail.find("category") != std::string::npos) {
      constexpr std::string_view kField = "field 'category'";
      std::string detail = Printable(m.error().detail);
      if (const size_t at = detail.find(kField); at != std::string::npos) {
        detail.replace(at, kField.size(), "--category");
      } else {
        detail = "--category: " + detail;
      }
      PrintError(m.error().title, detail);
      return ExitCodeFor(m.error());
    }
    return Fail(m.error());
  }
  if (g.json) {
    PrintJson(client::ToJson(*m));
  } else {
    std::cout << Printable(m->record_id) << "\n";
  }
  return kExitOk;
}

client::Disclosure DisclosureFrom(const ComplianceArgs& d) {
  return client::Disclosure{.recipient_name = d.recipient,
                            .recipient_address = Opt(d.address),
                            .basis = Opt(d.basis),
                            .purpose = Opt(d.disclosure_purpose),
                            .description = d.description,
                            .purpose_statement = Opt(d.statement)};
}

// `get`, and `get --disclose-to` (the same output, through the audited disclosure route).
int RunGet(client::Client& c, const client::Actor& actor, const Globals& g, const RecordArgs& a,
           const ComplianceArgs& d) {
  std::optional<uint32_t> version;
  if (a.version != 0) version = a.version;
  if (g.json || !d.recipient.empty()) {
    auto r = d.recipient.empty() ? c.ReadRecord(actor, a.id, version)
                                 : c.DiscloseRecord(actor, a.id, version, DisclosureFrom(d));
    if (!r.ok()) return Fail(r.error());
    if (!g.json) return Emit(a.output, r->content, "content");
    nlohmann::json j = client::ToJson(r->metadata);
    j["archived"] = r->archived;
    if (!a.output.empty()) {
      if (int rc = Emit(a.output, r->content, "content"); rc != kExitOk) return rc;
    } else {
      j["content_base64"] = crypto::Base64Encode(r->content);
    }
    PrintJson(j);
    return kExitOk;
  }
  auto content = c.ReadContent(actor, a.id, version);
  if (!content.ok()) return Fail(content.error());
  return Emit(a.output, content->bytes, "content");
}

int RunDisclose(client::Client& c, const client::Actor& actor, const Globals& g,
                const ComplianceArgs& d) {
  client::DisclosureRecord record{.patient_id = d.patient,
                                  .record_ids = d.records,
                                  .disclosed_at = Opt(d.date),
                                  .disclosure = DisclosureFrom(d)};
  return PrintAuditSeq(c.RecordDisclosure(actor, record), g);
}

int RunSuspend(client::Client& c, const client::Actor& actor, const Globals& g,
               const ComplianceArgs& d) {
  client::Suspension suspension{.agency = d.agency,
                                .start = d.start,
                                .end = Opt(d.end),
                                .oral = d.oral,
                                .statement = d.statement};
  return PrintAuditSeq(c.AddSuspension(actor, suspension), g);
}

int RunReport(client::Client& c, const client::Actor& actor, const ComplianceArgs& d,
              bool accounting) {
  const std::string format = d.format.empty() ? "json" : d.format;
  auto report = accounting ? c.AccountingReport(actor, d.patient, Opt(d.from), format)
                           : c.AccessReport(actor, d.patient, format);
  if (!report.ok()) return Fail(report.error());
  return Emit(d.output, report->body, "the report");
}

// ---- audit ----

int VerifyFailed(std::string_view detail) {
  PrintError("verification failed", Printable(detail));
  return kExitVerifyFailed;
}

// The verifier key from --key or --key-file, or nullopt if neither was given. Exit code in
// `*rc` (usage error for an unreadable or malformed key).
std::optional<crypto::NoteVerifier> KeyFromArgs(const ComplianceArgs& a, int* rc) {
  *rc = kExitOk;
  if (a.key.empty() && a.key_file.empty()) return std::nullopt;
  std::string text = a.key;
  if (!a.key_file.empty()) {
    std::string error;
    auto data = ReadInput(a.key_file, &error);
    if (!data) {
      PrintError("cannot read the verifier key", error);
      *rc = kExitError;
      return std::nullopt;
    }
    text = std::move(*data);
  }
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  const auto first = std::find_if_not(text.begin(), text.end(), space);
  const auto last = std::find_if_not(text.rbegin(), text.rend(), space).base();
  auto verifier = crypto::ParseNoteVerifierKey(
      first < last ? std::string_view(&*first, static_cast<size_t>(last - first))
                   : std::string_view());
  if (!verifier.ok()) {
    *rc = UsageError("the verifier key is not valid: " + verifier.status().message());
    return std::nullopt;
  }
  return std::move(verifier).value();
}

// The key from the options, else from the daemon (saying so: a key fetched from the vault under
// audit proves only that the log is consistent with what that vault signs today).
std::optional<crypto::NoteVerifier> KeyFromArgsOrDaemon(client::Client& c,
                                                        const client::Actor& actor,
                                                        const ComplianceArgs& a, int* rc) {
  auto given = KeyFromArgs(a, rc);
  if (given || *rc != kExitOk) return given;
  auto fetched = c.AuditVerifierKey(actor);
  if (!fetched.ok()) {
    *rc = Fail(fetched.error());
    return std::nullopt;
  }
  auto verifier = crypto::ParseNoteVerifierKey(*fetched);
  if (!verifier.ok()) {
    PrintError("unexpected response from daemon",
               "its verifier key is not valid: " + verifier.status().message());
    *rc = kExitError;
    return std::nullopt;
  }
  std::cerr << "phivault: note: using the verifier key fetched from the daemon ("
            << Printable(*fetched)
            << "); pass --key or --key-file with a key obtained independently to check the "
               "daemon itself\n";
  return std::move(verifier).value();
}

std::optional<storage::MerkleHash> HashFromHex(std::string_view hex) {
  auto bytes = crypto::HexDecode(hex);
  if (!bytes.ok() || bytes->size() != storage::MerkleHash{}.size()) return std::nullopt;
  storage::MerkleHash h{};
  std::copy(bytes->begin(), bytes->end(), h.begin());
  return h;
}

std::optional<std::vector<storage::MerkleHash>> PathFromHex(const std::vector<std::string>& hex) {
  std::vector<storage::MerkleHash> path;
  for (const std::string& h : hex) {
    auto hash = HashFromHex(h);
    if (!hash) return std::nullopt;
    path.push_back(*hash);
  }
  return path;
}

std::string RootBase64(const storage::MerkleHash& root) {
  return crypto::Base64Encode(crypto::AsView(root));
}

// Opens a signed checkpoint note; exit 7 with the reason if it does not verify.
std::optional<storage::Checkpoint> OpenNote(std::string_view note,
                                            const crypto::NoteVerifier& verifier,
                                            std::string_view what, int* rc) {
  auto cp = storage::OpenCheckpoint(note, verifier);
  if (!cp.ok()) {
    *rc = VerifyFailed(std::string(what) + " does not verify: " + cp.status().message());
    return std::nullopt;
  }
  *rc = kExitOk;
  return std::move(cp).value();
}

int RunAuditPubkey(client::Client& c, const client::Actor& actor, const Globals& g) {
  auto key = c.AuditVerifierKey(actor);
  if (!key.ok()) return Fail(key.error());
  if (g.json) {
    PrintJson({{"verifier_key", *key}});
  } else {
    std::cout << Printable(*key) << "\n";
  }
  return kExitOk;
}

int RunAuditCheckpoint(client::Client& c, const client::Actor& actor, const Globals& g,
                       const ComplianceArgs& a) {
  auto note = c.AuditCheckpoint(actor, a.new_checkpoint);
  if (!note.ok()) return Fail(note.error());
  if (g.json) {
    PrintJson({{"note", *note}});
  } else {
    std::cout << PrintableLines(*note);
  }
  return kExitOk;
}

// The checkpoint to prove against: from --checkpoint FILE, else the daemon's newest, made fresh
// when it is missing or smaller than `need`.
std::optional<storage::Checkpoint> ProofCheckpoint(client::Client& c, const client::Actor& actor,
                                                   const ComplianceArgs& a,
                                                   const crypto::NoteVerifier& verifier,
                                                   uint64_t need, int* rc) {
  if (!a.checkpoint_file.empty()) {
    std::string error;
    auto note = ReadInput(a.checkpoint_file, &error);
    if (!note) {
      PrintError("cannot read the checkpoint", error);
      *rc = kExitError;
      return std::nullopt;
    }
    return OpenNote(*note, verifier, "the checkpoint in " + a.checkpoint_file, rc);
  }
  auto note = c.AuditCheckpoint(actor, false);
  if (!note.ok() && note.error().kind != client::ErrorKind::kNotFound) {
    *rc = Fail(note.error());
    return std::nullopt;
  }
  std::optional<storage::Checkpoint> cp;
  if (note.ok()) {
    cp = OpenNote(*note, verifier, "the daemon's checkpoint", rc);
    if (!cp) return std::nullopt;
  }
  if (!cp || cp->size < need) {
    auto fresh = c.AuditCheckpoint(actor, true);
    if (!fresh.ok()) {
      *rc = Fail(fresh.error());
      return std::nullopt;
    }
    cp = OpenNote(*fresh, verifier, "the daemon's checkpoint", rc);
  }
  return cp;
}

int RunAuditProve(client::Client& c, const client::Actor& actor, const Globals& g,
                  const ComplianceArgs& a) {
  if (a.size != 0 && a.seq > a.size) return UsageError("--seq must not be above --size");
  std::optional<storage::MerkleHash> expected_leaf;
  if (!a.leaf_hash.empty()) {
    expected_leaf = HashFromHex(a.leaf_hash);
    if (!expected_leaf) return UsageError("--leaf-hash must be 64 hex digits");
  }
  int rc = kExitOk;
  auto verifier = KeyFromArgsOrDaemon(c, actor, a, &rc);
  if (!verifier) return rc;
  auto cp = ProofCheckpoint(c, actor, a, *verifier, std::max(a.seq, a.size), &rc);
  if (!cp) return rc;
  const uint64_t size = a.size != 0 ? a.size : cp->size;
  if (size > cp->size || a.seq > cp->size) {
    PrintError("cannot prove", "the checkpoint covers " + std::to_string(cp->size) +
                                   " entries, fewer than asked for");
    return a.checkpoint_file.empty() ? kExitNotFound : kExitUsage;
  }

  auto proof = c.InclusionProof(actor, a.seq, size);
  if (!proof.ok()) return Fail(proof.error());
  auto leaf = HashFromHex(proof->leaf_hash_hex);
  auto path = PathFromHex(proof->path_hex);
  if (!leaf || !path) return VerifyFailed("the inclusion proof holds a malformed hash");
  if (expected_leaf && *expected_leaf != *leaf) {
    return VerifyFailed("entry " + std::to_string(a.seq) +
                        " in the log does not have the given --leaf-hash");
  }
  std::optional<client::ConsistencyProofResult> consistency;
  if (size == cp->size) {
    if (Status s = storage::VerifyInclusionProof(proof->leaf_index, size, *leaf, *path, cp->root);
        !s.ok()) {
      return VerifyFailed(s.message());
    }
  } else {
    // Entry in the tree of `size` leaves, and that tree a prefix of the signed one.
    auto root = storage::RootFromInclusionProof(proof->leaf_index, size, *leaf, *path);
    if (!root.ok()) return VerifyFailed(root.status().message());
    auto cons = c.ConsistencyProof(actor, size, cp->size);
    if (!cons.ok()) return Fail(cons.error());
    auto cons_path = PathFromHex(cons->path_hex);
    if (!cons_path) return VerifyFailed("the consistency proof holds a malformed hash");
    if (Status s = storage::VerifyConsistencyProof(size, cp->size, *cons_path, *root, cp->root);
        !s.ok()) {
      return VerifyFailed(s.message());
    }
    consistency = std::move(*cons);
  }

  if (g.json) {
    nlohmann::json j = {
        {"verified", true},
        {"inclusion", client::ToJson(*proof)},
        {"checkpoint",
         {{"origin", cp->origin}, {"size", cp->size}, {"root", RootBase64(cp->root)}}}};
    if (consistency) j["consistency"] = client::ToJson(*consistency);
    PrintJson(j);
    return kExitOk;
  }
  std::cout << "ok: entry " << a.seq << " (leaf " << proof->leaf_index << ", leaf hash "
            << proof->leaf_hash_hex << ") is in the tree of " << size << " entries";
  if (consistency) std::cout << ", which the signed tree of " << cp->size << " entries extends";
  std::cout << "\ncheckpoint: " << Printable(cp->origin) << ", " << cp->size << " entries, root "
            << RootBase64(cp->root) << "\n";
  return kExitOk;
}

int RunAuditConsistency(client::Client& c, const client::Actor& actor, const Globals& g,
                        const ComplianceArgs& a) {
  if (a.old_checkpoint.empty() != a.new_checkpoint_file.empty()) {
    return UsageError("--old-checkpoint and --new-checkpoint go together");
  }
  uint64_t from = a.old_size, to = a.new_size;
  std::optional<storage::Checkpoint> old_cp, new_cp;
  if (!a.old_checkpoint.empty()) {
    int rc = kExitOk;
    auto verifier = KeyFromArgsOrDaemon(c, actor, a, &rc);
    if (!verifier) return rc;
    std::string error;
    auto old_note = ReadInput(a.old_checkpoint, &error);
    auto new_note = old_note ? ReadInput(a.new_checkpoint_file, &error) : std::nullopt;
    if (!old_note || !new_note) {
      PrintError("cannot read the checkpoint", error);
      return kExitError;
    }
    old_cp = OpenNote(*old_note, *verifier, "the old checkpoint", &rc);
    if (!old_cp) return rc;
    new_cp = OpenNote(*new_note, *verifier, "the new checkpoint", &rc);
    if (!new_cp) return rc;
    if (from == 0) from = old_cp->size;
    if (to == 0) to = new_cp->size;
    if (from != old_cp->size || to != new_cp->size) {
      return UsageError("--from and --to must be the sizes of the old and new checkpoints (" +
                        std::to_string(old_cp->size) + " and " + std::to_string(new_cp->size) +
                        ")");
    }
  } else if (from == 0 || to == 0) {
    return UsageError("--from and --to are required without checkpoints");
  }
  if (from > to) return UsageError("--from must not be above --to");

  auto proof = c.ConsistencyProof(actor, from, to);
  if (!proof.ok()) return Fail(proof.error());
  if (old_cp) {
    auto path = PathFromHex(proof->path_hex);
    if (!path) return VerifyFailed("the consistency proof holds a malformed hash");
    if (Status s = storage::VerifyConsistencyProof(from, to, *path, old_cp->root, new_cp->root);
        !s.ok()) {
      return VerifyFailed(s.message());
    }
  }
  if (g.json) {
    nlohmann::json j = client::ToJson(*proof);
    if (old_cp) j["verified"] = true;
    PrintJson(j);
    return kExitOk;
  }
  std::cout << "consistency proof from " << from << " to " << to << " entries ("
            << proof->path_hex.size() << " hashes):\n";
  for (const std::string& h : proof->path_hex) std::cout << h << "\n";
  if (old_cp) {
    std::cout << "ok: the signed tree of " << from << " entries is a prefix of the signed tree of "
              << to << " entries\n";
  }
  return kExitOk;
}

// The --trusted-checkpoint files: each read whole, named by its path. Exit code in `*rc`.
std::optional<std::vector<storage::TrustedCheckpoint>> ReadTrustedCheckpoints(
    const ComplianceArgs& a, int* rc) {
  *rc = kExitOk;
  std::vector<storage::TrustedCheckpoint> out;
  for (const std::string& path : a.trusted_checkpoints) {
    std::string error;
    auto note = ReadInput(path, &error);
    if (!note) {
      PrintError("cannot read the trusted checkpoint", error);
      *rc = kExitError;
      return std::nullopt;
    }
    out.push_back({path, std::move(*note)});
  }
  return out;
}

int RunAuditExport(client::Client& c, const client::Actor& actor, const ComplianceArgs& a) {
  client::AuditExportQuery query{.format = a.format.empty() ? "jsonl" : a.format,
                                 .from = Opt(a.from),
                                 .to = Opt(a.to),
                                 .patient_id = Opt(a.patient),
                                 .user = Opt(a.user),
                                 .action = Opt(a.action),
                                 .outcome = Opt(a.outcome)};
  int rc = kExitOk;
  auto trusted = ReadTrustedCheckpoints(a, &rc);
  if (!trusted) return rc;
  for (const storage::TrustedCheckpoint& t : *trusted) {
    // Only the size is sent, to ask for a proof from it; `audit verify` checks the signature.
    auto cp = storage::ParseUnverifiedCheckpoint(t.note);
    if (!cp.ok()) {
      return UsageError("--trusted-checkpoint " + t.name +
                        " is not a checkpoint note: " + cp.status().message());
    }
    query.trusted_sizes.push_back(cp->size);
  }
  if (a.output.empty()) {
    auto r = c.ExportAudit(actor, query, std::cout);
    return r.ok() ? kExitOk : Fail(r.error());
  }
  std::string error;
  auto file = OutputFile::Create(a.output, &error);
  if (!file) {
    PrintError("cannot write the export", error);
    return kExitError;
  }
  auto r =
      c.ExportAudit(actor, query, [&file](std::string_view chunk) { return file->Write(chunk); });
  if (!r.ok()) {
    if (!file->error().empty()) {
      PrintError("cannot write the export", file->error());
      return kExitError;
    }
    return Fail(r.error());  // the file is removed: no truncated export is left behind
  }
  if (!file->Commit(&error)) {
    PrintError("cannot write the export", error);
    return kExitError;
  }
  return kExitOk;
}

// A private temporary file, already unlinked: only this process can reach it, through `fd`,
// and nothing is left behind however the process ends.
struct TempFile {
  int fd = -1;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
  }
  static std::optional<TempFile> Create(std::string* error) {
    const char* base = std::getenv("TMPDIR");
    std::string path =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/phivault-audit-XXXXXX";
    TempFile t;
    t.fd = ::mkostemp(path.data(), O_CLOEXEC);
    if (t.fd < 0) {
      *error = "cannot create a temporary file in " + path.substr(0, path.rfind('/')) + ": " +
               std::strerror(errno);
      return std::nullopt;
    }
    ::unlink(path.c_str());
    return t;
  }
  TempFile() = default;
  TempFile(TempFile&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  TempFile& operator=(TempFile&&) = delete;
  bool Write(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::write(fd, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // A fresh read stream over the file from its start (Linux: through /proc/self/fd).
  std::string ProcPath() const { return "/proc/self/fd/" + std::to_string(fd); }
};

int VerifyExportStream(std::istream& in, const crypto::NoteVerifier& verifier,
                       const ComplianceArgs& a, const Globals& g) {
  int rc = kExitOk;
  auto trusted = ReadTrustedCheckpoints(a, &rc);
  if (!trusted) return rc;
  auto report = storage::VerifyAuditExport(
      in, verifier, {.origin = a.origin, .trusted = std::move(*trusted), .min_size = a.min_size});
  if (!report.ok()) {
    PrintError("cannot verify the export", report.status().message());
    return kExitError;
  }
  const std::string signed_at =
      report->checkpoint_time ? storage::Rfc3339Utc(*report->checkpoint_time) : "";
  if (g.json) {
    nlohmann::json j = {{"ok", report->ok},
                        {"filtered", report->filtered},
                        {"entries_checked", report->entries_checked},
                        {"checkpoints_checked", report->checkpoints_checked},
                        {"entries_covered", report->entries_covered},
                        {"trusted_checked", report->trusted_checked}};
    if (!signed_at.empty()) j["checkpoint_time"] = signed_at;
    if (report->problem) {
      j["problem"] = {{"message", report->problem->message},
                      {"index", report->problem->index},
                      {"checkpoint", report->problem->checkpoint},
                      {"trusted", report->problem->trusted}};
    }
    PrintJson(j);
  }
  if (!report->ok) {
    if (!report->problem) return VerifyFailed("the export did not verify");
    using Kind = storage::AuditProblem::Kind;
    const storage::AuditProblem& problem = *report->problem;
    std::string where;
    if (problem.kind >= Kind::kAltered && problem.kind <= Kind::kPhiUnbound &&
        problem.kind != Kind::kTruncated) {
      // The verifier counts entries by index; people look for the audit sequence number too.
      where = " [export line \"index\":" + std::to_string(problem.index) + ", audit seq " +
              std::to_string(problem.index + 1) + "]";
    }
    if (problem.kind == Kind::kNoConsistencyProof) {
      where = " (phivault audit export --trusted-checkpoint FILE adds the proof)";
    }
    return VerifyFailed(problem.message + where);
  }
  // What the signatures say beyond the counts: when the vault signed, and what it was held to.
  std::string extra;
  if (!signed_at.empty()) extra += "; checkpoint signed " + signed_at;
  if (report->trusted_checked > 0) {
    extra += "; consistent with " + std::to_string(report->trusted_checked) +
             " trusted checkpoint" + (report->trusted_checked == 1 ? "" : "s");
  }
  if (report->filtered) {
    if (!g.json) {
      std::cout << "ok: " << report->entries_checked
                << " entries (filtered export, each proven against checkpoint of size "
                << report->entries_covered << ")" << extra << "\n";
    }
    std::cerr << "phivault: note: a filtered export cannot show that no matching entry was left "
                 "out\n";
  } else if (!g.json) {
    std::cout << "ok: " << report->entries_checked << " entries, " << report->checkpoints_checked
              << " checkpoints, " << report->entries_covered << " covered" << extra << "\n";
  }
  if (a.trusted_checkpoints.empty() && a.min_size == 0) {
    std::cerr << "phivault: note: without --trusted-checkpoint, an older export, complete in "
                 "itself, would verify too\n";
  }
  return kExitOk;
}

int RunAuditVerifyFile(const Globals& g, const ComplianceArgs& a) {
  int rc = kExitOk;
  auto verifier = KeyFromArgs(a, &rc);
  if (rc != kExitOk) return rc;
  if (!verifier) return UsageError("--key or --key-file is required to verify offline");
  if (a.file != "-") {
    std::ifstream in(a.file, std::ios::binary);
    if (!in) {
      PrintError("cannot open the export", a.file + ": " + std::strerror(errno));
      return kExitError;
    }
    return VerifyExportStream(in, *verifier, a, g);
  }
  // The verifier reads its input twice: a pipe on standard input is copied first.
  struct stat st;
  if (::fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
    std::ifstream in("/proc/self/fd/0", std::ios::binary);
    if (in) return VerifyExportStream(in, *verifier, a, g);
  }
  std::string error;
  auto temp = TempFile::Create(&error);
  if (!temp) {
    PrintError("cannot verify standard input (it must be copied to a file first)", error);
    return kExitError;
  }
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      PrintError("cannot read standard input", std::strerror(errno));
      return kExitError;
    }
    if (n == 0) break;
    if (!temp->Write(std::string_view(buf, static_cast<size_t>(n)))) {
      PrintError("cannot copy standard input to a temporary file", std::strerror(errno));
      return kExitError;
    }
  }
  std::ifstream in(temp->ProcPath(), std::ios::binary);
  if (!in) {
    PrintError("cannot verify standard input", "its temporary copy cannot be reopened");
    return kExitError;
  }
  return VerifyExportStream(in, *verifier, a, g);
}

int RunAuditVerifyLive(client::Client& c, const client::Actor& actor, const Globals& g,
                       const ComplianceArgs& a) {
  int rc = kExitOk;
  auto verifier = KeyFromArgsOrDaemon(c, actor, a, &rc);
  if (!verifier) return rc;
  std::string error;
  auto temp = TempFile::Create(&error);
  if (!temp) {
    PrintError("cannot export the log", error);
    return kExitError;
  }
  std::string write_error;
  auto r = c.ExportAudit(actor, client::AuditExportQuery{}, [&](std::string_view chunk) {
    if (temp->Write(chunk)) return true;
    write_error = std::strerror(errno);
    return false;
  });
  if (!write_error.empty()) {
    PrintError("cannot export the log", "writing the temporary copy failed: " + write_error);
    return kExitError;
  }
  if (!r.ok()) return Fail(r.error());
  std::ifstream in(temp->ProcPath(), std::ios::binary);
  if (!in) {
    PrintError("cannot verify the export", "its temporary copy cannot be reopened");
    return kExitError;
  }
  return VerifyExportStream(in, *verifier, a, g);
}

int RunAmend(client::Client& c, const client::Actor& actor, const Globals& g, const RecordArgs& a) {
  std::string error;
  auto content = ReadInput(a.input, &error);
  if (!content) {
    PrintError("cannot read content", error);
    return kExitError;
  }
  client::Amendment amendment{.reason = a.reason, .content = std::move(*content)};
  if (!a.type.empty()) amendment.content_type = a.type;
  if (!a.encounter_date.empty()) amendment.encounter_date = a.encounter_date;
  if (!a.author.empty()) amendment.author = a.author;
  auto m = c.AmendRecord(actor, a.id, amendment);
  if (!m.ok()) return Fail(m.error());
  if (g.json) {
    PrintJson(client::ToJson(*m));
  } else {
    std::cout << Printable(m->record_id) << " version " << m->version << "\n";
  }
  return kExitOk;
}

int RunList(client::Client& c, const client::Actor& actor, const Globals& g, const RecordArgs& a) {
  auto found = c.SearchPatientRecords(actor, a.patient);
  if (!found.ok()) return Fail(found.error());
  if (g.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& m : found->records) list.push_back(client::ToJson(m));
    PrintJson({{"records", list}, {"withheld", found->withheld}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"RECORD ID", "VERSION", "CATEGORY", "TYPE", "ENCOUNTER", "AUTHOR", "CREATED", "SIZE"}};
  for (const auto& m : found->records) {
    rows.push_back({Printable(m.record_id), std::to_string(m.version), Printable(m.category),
                    Printable(m.content_type), Printable(m.encounter_date), Printable(m.author),
                    Printable(m.created), std::to_string(m.content_bytes)});
  }
  PrintTable(rows);
  if (found->withheld > 0) {
    std::cerr << "phivault: " << found->withheld << " more record"
              << (found->withheld == 1 ? "" : "s") << " withheld by policy\n";
  }
  return kExitOk;
}

}  // namespace

ExitCode ExitCodeFor(const client::Error& error) {
  switch (error.kind) {
    case client::ErrorKind::kUnauthenticated:
    case client::ErrorKind::kForbidden:
      return kExitDenied;
    case client::ErrorKind::kNotFound:
    case client::ErrorKind::kShredded:
      return kExitNotFound;
    case client::ErrorKind::kUnavailable:
      return kExitUnavailable;
    case client::ErrorKind::kIntegrity:
      return kExitIntegrity;
    case client::ErrorKind::kInvalid:
    case client::ErrorKind::kConflict:
    case client::ErrorKind::kInvalidPolicy:
    case client::ErrorKind::kTooLarge:
    case client::ErrorKind::kDiskFull:
    case client::ErrorKind::kServer:
    case client::ErrorKind::kProtocol:
    case client::ErrorKind::kClient:
      return kExitError;
  }
  return kExitError;
}

bool IsCalendarDate(std::string_view d) {
  if (d.size() != 10 || d[4] != '-' || d[7] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (d[i] < '0' || d[i] > '9') return false;
  }
  auto num = [&d](size_t pos, size_t len) {
    int v = 0;
    for (size_t i = pos; i < pos + len; ++i) v = v * 10 + (d[i] - '0');
    return v;
  };
  const int year = num(0, 4), month = num(5, 2), day = num(8, 2);
  if (month < 1 || month > 12 || day < 1) return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  const int max_day = month == 2 && leap ? 29 : kDays[month - 1];
  return day <= max_day;
}

int RunCli(int argc, char** argv) {
  CLI::App app{
      "phivault: command-line client for phivaultd, the encrypted medical-records vault.\n"
      "Talks to the daemon over its Unix socket; every record access is audited by the "
      "daemon. `audit verify FILE`, `policy test`, `policy diff` and `certificate verify --file F "
      "--pubkey K` work offline, without a daemon."};
  app.name("phivault");
  app.footer(kExitCodeHelp);
  app.require_subcommand(1);
  app.fallthrough();

  Globals g;
  g.socket = kDefaultSocket;
  g.user = LoginName();
  app.add_option("--socket", g.socket, "daemon socket")
      ->envname("PHIVAULT_SOCKET")
      ->capture_default_str();
  app.add_option("--token", g.token,
                 "application bearer token (operators need none); prefer PHIVAULT_TOKEN, since "
                 "command lines are visible to other users")
      ->envname("PHIVAULT_TOKEN");
  app.add_option("--as", g.user, "acting user")->envname("PHIVAULT_USER")->capture_default_str();
  app.add_option("--role", g.role, "acting role, e.g. physician (required to talk to the daemon)")
      ->envname("PHIVAULT_ROLE");
  CLI::Option* purpose =
      app.add_option("--purpose", g.purpose,
                     "HL7 PurposeOfUse code, e.g. TREAT, ETREAT, HPAYMT, HOPERAT, PATRQT, HLEGAL, "
                     "PUBHLTH, HRESCH")
          ->envname("PHIVAULT_PURPOSE")
          ->capture_default_str();
  app.add_flag("--json", g.json, "machine-readable JSON output");

  RecordArgs a;
  ComplianceArgs d;
  CLI::App* init =
      app.add_subcommand("init", "create a development vault folder (synthetic data only)");
  init->add_option("--dir", a.dir, "folder to create the vault in")->required();
  init->add_flag("--force-config", a.force_config,
                 "replace an existing phivault.toml and issue a new token (the master key is "
                 "kept)");
  init->add_option("--practice-name", a.practice_name,
                   "the practice named on reports given to patients")
      ->default_str(kDefaultPracticeName);
  init->add_option("--retention-preset", a.retention_preset,
                   "the retention preset DIR/retention.toml names (docs/retention.md), one of: " +
                       RetentionPresetList())
      ->default_str(kDefaultRetentionPreset);

  CLI::App* status = app.add_subcommand("status", "show the daemon's status");

  CLI::App* put = app.add_subcommand("put", "store a new record; prints its record id");
  put->add_option("--patient", a.patient, "patient identifier")->required();
  put->add_option("--category", a.category,
                  std::string("record category: one of the daemon's configured categories; by "
                              "default ") +
                      kDefaultCategories)
      ->required();
  put->add_option("--type", a.type, "content type (MIME), e.g. text/plain")->required();
  put->add_option("--encounter-date", a.encounter_date, "YYYY-MM-DD")->required();
  put->add_option("--author", a.author, "author of the record")->required();
  put->add_option("file", a.input, "content file, or - for standard input")->capture_default_str();

  CLI::App* get = app.add_subcommand(
      "get",
      "write a record's content to stdout or a file (--disclose-to: and record a disclosure)");
  get->add_option("id", a.id, "record id")->required();
  get->add_option("--version", a.version, "version to read (default: latest)")
      ->check(CLI::Range(1u, 0xffffffffu));
  get->add_option("-o,--output", a.output, "write the content to FILE (created 0600)");
  CLI::Option* get_to =
      get->add_option("--disclose-to", d.recipient, "record a disclosure of this read to NAME");
  get->add_option("--address", d.address, "the recipient's address, if known")->needs(get_to);
  get->add_option("--basis", d.basis, "disclosure basis, e.g. public_health")->needs(get_to);
  get->add_option("--disclosure-purpose", d.disclosure_purpose,
                  "PurposeOfUse of the disclosure (default: the basis's, or this read's)")
      ->needs(get_to);
  CLI::Option* get_description =
      get->add_option("--description", d.description, "brief description of what is disclosed")
          ->needs(get_to);
  get->add_option("--statement", d.statement, "statement of the purpose of the disclosure")
      ->needs(get_to);

  CLI::App* amend = app.add_subcommand("amend", "add a new version of a record");
  amend->add_option("id", a.id, "record id")->required();
  amend->add_option("--reason", a.reason, "why the record is amended")->required();
  amend->add_option("--type", a.type, "content type (default: the previous version's)");
  amend->add_option("--encounter-date", a.encounter_date, "YYYY-MM-DD");
  amend->add_option("--author", a.author, "author of the amendment");
  amend->add_option("file", a.input, "content file, or - for standard input")
      ->capture_default_str();

  CLI::App* ls = app.add_subcommand(
      "ls", "list a patient's records (latest versions); says how many the policy withholds");
  ls->add_option("--patient", a.patient, "patient identifier")->required();

  CLI::App* disclose = app.add_subcommand(
      "disclose", "record a disclosure made outside the vault; prints its audit seq");
  disclose->add_option("--patient", d.patient, "patient identifier")->required();
  disclose->add_option("--recipient", d.recipient, "who received the PHI")->required();
  disclose->add_option("--address", d.address, "the recipient's address, if known");
  disclose->add_option("--basis", d.basis,
                       "disclosure basis, e.g. law_enforcement (default: from "
                       "--disclosure-purpose)");
  disclose->add_option("--disclosure-purpose", d.disclosure_purpose,
                       "PurposeOfUse of the disclosure itself, e.g. HLEGAL (default: the "
                       "basis's; never the recording user's --purpose)");
  disclose->add_option("--description", d.description, "brief description of what was disclosed")
      ->required();
  disclose->add_option("--record", d.records, "id of a record disclosed (repeatable)");
  disclose->add_option("--date", d.date,
                       "when it was disclosed: YYYY-MM-DD or RFC 3339 UTC (default: now)");
  disclose->add_option("--statement", d.statement, "statement of the purpose of the disclosure");

  // Sent as X-Phivault-Break-Glass-Reason and X-Phivault-Consent; sealed into the audit entry.
  std::string break_glass_reason, consent;
  std::vector<CLI::Option*> request_conditions;
  for (CLI::App* cmd : {put, get, amend, ls, disclose}) {
    request_conditions.push_back(cmd->add_option(
        "--break-glass-reason", break_glass_reason,
        "why emergency access is needed (opens a break-glass window with --purpose ETREAT or "
        "BTG; the access is reviewed)"));
    request_conditions.push_back(cmd->add_option(
        "--consent", consent,
        "consent or authorization id for consent-protected records (42 CFR Part 2)"));
  }

  CLI::App* suspend = app.add_subcommand(
      "suspend", "record an agency's suspension of accounting (45 CFR 164.528(a)(2))");
  suspend->add_option("--agency", d.agency, "the oversight agency or official")->required();
  suspend->add_option("--start", d.start, "YYYY-MM-DD or RFC 3339 UTC")->required();
  suspend->add_option("--end", d.end, "YYYY-MM-DD or RFC 3339 UTC (required unless --oral)");
  suspend->add_flag("--oral", d.oral, "the request was oral (lasts at most 30 days)");
  suspend->add_option("--statement", d.statement, "the agency's statement")->required();

  CLI::App* report = app.add_subcommand("report", "patient reports");
  report->require_subcommand(1);
  report->fallthrough();
  CLI::App* accounting =
      report->add_subcommand("accounting", "a patient's accounting of disclosures");
  CLI::App* access = report->add_subcommand("access", "a patient's access report");
  for (CLI::App* r : {accounting, access}) {
    r->add_option("--patient", d.patient, "patient identifier")->required();
    r->add_option("--format", d.format, "json, csv or html")
        ->check(CLI::IsMember({"json", "csv", "html"}))
        ->default_str("json");
    r->add_option("-o,--output", d.output, "write the report to FILE (created 0600)");
  }
  accounting->add_option("--from", d.from, "start of the period (default: six years back)");

  CLI::App* audit = app.add_subcommand("audit", "the tamper-evident audit log");
  audit->require_subcommand(1);
  audit->fallthrough();
  CLI::App* pubkey = audit->add_subcommand("pubkey", "print the audit verifier key");
  CLI::App* checkpoint = audit->add_subcommand("checkpoint", "print the newest signed checkpoint");
  checkpoint->add_flag("--new", d.new_checkpoint, "sign a fresh checkpoint first");
  CLI::App* prove =
      audit->add_subcommand("prove", "prove and verify locally that an entry is in the log");
  prove->add_option("--seq", d.seq, "the entry's sequence number")
      ->required()
      ->check(CLI::Range(uint64_t{1}, UINT64_MAX));
  prove->add_option("--size", d.size, "prove within the tree of this many entries")
      ->check(CLI::Range(uint64_t{1}, UINT64_MAX));
  prove->add_option("--checkpoint", d.checkpoint_file,
                    "verify against this saved checkpoint note (default: the daemon's newest)");
  prove->add_option("--leaf-hash", d.leaf_hash,
                    "also require this leaf hash (hex, e.g. from an export line)");
  CLI::App* consistency = audit->add_subcommand(
      "consistency", "print (and verify, given both checkpoints) a consistency proof");
  consistency->add_option("--from", d.old_size, "the older tree size")
      ->check(CLI::Range(uint64_t{1}, UINT64_MAX));
  consistency->add_option("--to", d.new_size, "the newer tree size")
      ->check(CLI::Range(uint64_t{1}, UINT64_MAX));
  consistency->add_option("--old-checkpoint", d.old_checkpoint, "saved checkpoint note of --from");
  consistency->add_option("--new-checkpoint", d.new_checkpoint_file,
                          "saved checkpoint note of --to");
  CLI::App* export_cmd = audit->add_subcommand("export", "stream the audit log");
  export_cmd->add_option("--format", d.format, "jsonl (verifiable), fhir or csv")
      ->check(CLI::IsMember({"jsonl", "fhir", "csv"}))
      ->default_str("jsonl");
  export_cmd->add_option("--from", d.from, "entries at or after: YYYY-MM-DD or RFC 3339 UTC");
  export_cmd->add_option("--to", d.to, "entries before: YYYY-MM-DD or RFC 3339 UTC");
  export_cmd->add_option("--patient", d.patient, "only entries about this patient");
  export_cmd->add_option("--user", d.user, "only entries by this acting user");
  export_cmd->add_option("--action", d.action, "only this action, e.g. record.read");
  export_cmd->add_option("--outcome", d.outcome, "only this outcome, e.g. denied");
  export_cmd->add_option("-o,--output", d.output, "write to FILE (created 0600)");
  CLI::App* verify = audit->add_subcommand(
      "verify", "verify an exported log (offline) or the daemon's whole log (--live)");
  verify->add_option("file", d.file, "JSON Lines export, or - for standard input");
  verify->add_flag("--live", d.live, "export the daemon's log to a private temporary file first");
  for (CLI::App* cmd : {prove, consistency, verify}) {
    cmd->add_option("--key", d.key, "the audit verifier key (from `phivault audit pubkey`)");
    cmd->add_option("--key-file", d.key_file, "file holding the verifier key");
  }
  verify->add_option("--origin", d.origin, "require this log origin in every checkpoint");
  verify->add_option("--trusted-checkpoint", d.trusted_checkpoints,
                     "a checkpoint kept from before (repeatable): the export must extend it");
  verify->add_option("--min-size", d.min_size, "the export must cover at least N entries");
  export_cmd->add_option("--trusted-checkpoint", d.trusted_checkpoints,
                         "a checkpoint kept from before (repeatable): a filtered export then "
                         "carries the proof that it extends it");

  PolicyCommands policy(app);
  PatientCommands patient(app, *audit);
  RetentionCommands retention(app);
  BackupCommands backup(app);
  KeyCommands keys(app);
  ArchiveCommands archive(app);
  BenchCommand bench(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return UsageError(e.what());
  }

  if (init->parsed()) return RunInit(g, a);
  if (!d.key.empty() && !d.key_file.empty()) {
    return UsageError("give the verifier key with --key or --key-file, not both");
  }
  if (verify->parsed() && d.live == !d.file.empty()) {
    return UsageError("audit verify needs either FILE or --live");
  }
  if (verify->parsed() && !d.live) return RunAuditVerifyFile(g, d);
  if (auto rc = policy.RunLocal(g)) return *rc;
  if (auto rc = retention.RunLocal(g)) return *rc;
  if (auto rc = backup.RunLocal(g)) return *rc;
  if (auto rc = keys.RunLocal(g)) return *rc;

  if (g.role.empty()) return UsageError("--role is required (or set PHIVAULT_ROLE)");
  if (g.user.empty()) return UsageError("--as must not be empty");
  if (g.purpose.empty()) return UsageError("--purpose must not be empty");
  if (!IsPurposeOfUseCode(g.purpose)) {
    return UsageError("--purpose " + Printable(g.purpose) +
                      " is not an HL7 PurposeOfUse code (codes are case-sensitive); the usual "
                      "ones are " +
                      PurposeOfUseCodeList());
  }
  if (!a.encounter_date.empty() && !IsCalendarDate(a.encounter_date)) {
    return UsageError("--encounter-date must be a calendar date written YYYY-MM-DD");
  }
  if (get_to->count() > 0 && (d.recipient.empty() || d.description.empty())) {
    return UsageError("--disclose-to needs a recipient name and --description");
  }
  if (get_description->count() > 0 && d.description.empty()) {
    return UsageError("--description must not be empty");
  }
  for (CLI::Option* opt : request_conditions) {
    if (opt->count() > 0 && opt->as<std::string>().empty()) {
      return UsageError(opt->get_name() + " must not be empty");
    }
  }
  g.purpose_given = purpose->count() > 0;
  if (auto rc = bench.Run(g)) return *rc;

  client::ClientOptions options{.socket_path = g.socket, .token = g.token};
  // A sweep's compaction and verification may run for minutes between two progress lines.
  if (retention.LongRunning() || backup.LongRunning() || archive.LongRunning()) {
    options.timeout = std::chrono::hours(1);
  }
  client::Client c(options);
  client::Actor actor{.user = g.user, .role = g.role, .purpose = g.purpose};
  if (!break_glass_reason.empty()) actor.break_glass_reason = break_glass_reason;
  if (!consent.empty()) actor.consent = consent;
  if (status->parsed()) return RunStatus(c, actor, g);
  if (put->parsed()) return RunPut(c, actor, g, a);
  if (get->parsed()) return RunGet(c, actor, g, a, d);
  if (amend->parsed()) return RunAmend(c, actor, g, a);
  if (ls->parsed()) return RunList(c, actor, g, a);
  if (disclose->parsed()) return RunDisclose(c, actor, g, d);
  if (suspend->parsed()) return RunSuspend(c, actor, g, d);
  if (accounting->parsed()) return RunReport(c, actor, d, /*accounting=*/true);
  if (access->parsed()) return RunReport(c, actor, d, /*accounting=*/false);
  if (pubkey->parsed()) return RunAuditPubkey(c, actor, g);
  if (checkpoint->parsed()) return RunAuditCheckpoint(c, actor, g, d);
  if (prove->parsed()) return RunAuditProve(c, actor, g, d);
  if (consistency->parsed()) return RunAuditConsistency(c, actor, g, d);
  if (export_cmd->parsed()) return RunAuditExport(c, actor, d);
  if (verify->parsed()) return RunAuditVerifyLive(c, actor, g, d);
  if (auto rc = policy.Run(c, actor, g)) return *rc;
  if (auto rc = patient.Run(c, actor, g)) return *rc;
  if (auto rc = retention.Run(c, actor, g)) return *rc;
  if (auto rc = backup.Run(c, actor, g)) return *rc;
  if (auto rc = keys.Run(c, actor, g)) return *rc;
  if (auto rc = archive.Run(c, actor, g)) return *rc;
  return UsageError("unknown command");
}

}  // namespace phivault::tools
