#include "tools/cli.h"

#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "tools/cli_init.h"

namespace phivault::tools {
namespace {

constexpr const char* kDefaultSocket = "/run/phivault/phivault.sock";

constexpr const char* kExitCodeHelp =
    "Exit codes:\n"
    "  0  success\n"
    "  1  other error (bad request, too large, disk below reserve, server error)\n"
    "  2  usage error (bad or missing arguments)\n"
    "  3  denied (401 unauthenticated, 403 forbidden)\n"
    "  4  not found (404), or the record was shredded (410)\n"
    "  5  daemon unavailable (cannot connect, connection lost, or 503)\n"
    "  6  integrity failure (stored data failed authentication)\n"
    "Environment: PHIVAULT_SOCKET, PHIVAULT_TOKEN, PHIVAULT_USER, PHIVAULT_ROLE,\n"
    "PHIVAULT_PURPOSE provide defaults for the matching options.\n";

struct Globals {
  std::string socket = kDefaultSocket;
  std::string token;
  std::string user;
  std::string role;
  std::string purpose = "TREAT";
  bool json = false;
};

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
};

std::string LoginName() {
  if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_name != nullptr) {
    return pw->pw_name;
  }
  if (const char* user = std::getenv("USER"); user != nullptr && *user != '\0') return user;
  return "uid:" + std::to_string(::geteuid());
}

void PrintError(std::string_view title, std::string_view detail) {
  std::cerr << "phivault: " << title;
  if (!detail.empty()) std::cerr << ": " << detail;
  std::cerr << "\n";
}

int Fail(const client::Error& e) {
  PrintError(e.title, e.detail);
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

// Content is PHI: the output file is created 0600, and removed again if writing fails.
bool WriteOutput(const std::string& path, std::string_view data, std::string* error) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    *error = "cannot create " + path + ": " + std::strerror(errno);
    return false;
  }
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = "cannot write " + path + ": " + std::strerror(errno);
      ::close(fd);
      ::unlink(path.c_str());
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (::close(fd) != 0) {
    *error = "cannot write " + path + ": " + std::strerror(errno);
    ::unlink(path.c_str());
    return false;
  }
  return true;
}

void PrintJson(const nlohmann::json& j) { std::cout << j.dump(2) << "\n"; }

int RunInit(const Globals& g, const RecordArgs& a) {
  InitOptions options{.dir = a.dir, .force_config = a.force_config, .uid = ::getuid()};
  auto r = InitDevVault(options);
  if (!r.ok()) {
    PrintError("init failed", r.status().message());
    return r.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitError;
  }
  if (g.json) {
    PrintJson({{"dir", r->dir},
               {"config", r->config_path},
               {"master_key", r->key_path},
               {"data_dir", r->data_dir},
               {"socket", r->socket_path},
               {"created_master_key", r->created_key},
               {"application", "dev-app"},
               {"token", r->token}});
    return kExitOk;
  }
  std::cout << "Created a development vault in " << r->dir << "\n"
            << "  config:     " << r->config_path << "\n"
            << "  master key: " << r->key_path
            << (r->created_key ? " (new; losing it loses every record)" : " (kept)") << "\n"
            << "  data:       " << r->data_dir << "\n"
            << "  socket:     " << r->socket_path << "\n\n"
            << "Token of application \"dev-app\". It is shown ONCE and not stored anywhere (the "
               "config keeps only its SHA-256); copy it now:\n"
            << r->token << "\n\n"
            << "Start the daemon:  phivaultd --config " << r->config_path << "\n"
            << "Then:              export PHIVAULT_SOCKET=" << r->socket_path << "\n";
  return kExitOk;
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
            << "audit entries:    " << s->audit_entries << "\n"
            << "key epochs:       " << s->epochs << "\n"
            << "disk free:        " << s->disk.free_bytes << " bytes\n"
            << "disk reserve:     " << s->disk.reserve_bytes << " bytes\n"
            << "live data:        " << s->disk.live_data_bytes << " bytes\n";
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
  if (!m.ok()) return Fail(m.error());
  if (g.json) {
    PrintJson(client::ToJson(*m));
  } else {
    std::cout << Printable(m->record_id) << "\n";
  }
  return kExitOk;
}

int RunGet(client::Client& c, const client::Actor& actor, const Globals& g, const RecordArgs& a) {
  std::optional<uint32_t> version;
  if (a.version != 0) version = a.version;
  std::string error;
  if (g.json) {
    auto r = c.ReadRecord(actor, a.id, version);
    if (!r.ok()) return Fail(r.error());
    nlohmann::json j = client::ToJson(r->metadata);
    if (!a.output.empty()) {
      if (!WriteOutput(a.output, r->content, &error)) {
        PrintError("cannot write content", error);
        return kExitError;
      }
    } else {
      j["content_base64"] = crypto::Base64Encode(r->content);
    }
    PrintJson(j);
    return kExitOk;
  }
  auto content = c.ReadContent(actor, a.id, version);
  if (!content.ok()) return Fail(content.error());
  if (!a.output.empty()) {
    if (!WriteOutput(a.output, content->bytes, &error)) {
      PrintError("cannot write content", error);
      return kExitError;
    }
    return kExitOk;
  }
  std::cout.write(content->bytes.data(), static_cast<std::streamsize>(content->bytes.size()));
  std::cout.flush();
  if (!std::cout) {
    PrintError("cannot write content", "standard output failed");
    return kExitError;
  }
  return kExitOk;
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
  auto records = c.SearchPatient(actor, a.patient);
  if (!records.ok()) return Fail(records.error());
  if (g.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& m : *records) list.push_back(client::ToJson(m));
    PrintJson({{"records", list}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"RECORD ID", "VERSION", "CATEGORY", "TYPE", "ENCOUNTER", "AUTHOR", "CREATED", "SIZE"}};
  for (const auto& m : *records) {
    rows.push_back({Printable(m.record_id), std::to_string(m.version), Printable(m.category),
                    Printable(m.content_type), Printable(m.encounter_date), Printable(m.author),
                    Printable(m.created), std::to_string(m.content_bytes)});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
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
      "daemon."};
  app.name("phivault");
  app.footer(kExitCodeHelp);
  app.require_subcommand(1);
  app.fallthrough();

  Globals g;
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
  app.add_option("--purpose", g.purpose, "HL7 PurposeOfUse code, e.g. TREAT, HPAYMT, ETREAT")
      ->envname("PHIVAULT_PURPOSE")
      ->capture_default_str();
  app.add_flag("--json", g.json, "machine-readable JSON output");

  RecordArgs a;
  CLI::App* init = app.add_subcommand("init", "create a development vault folder");
  init->add_option("--dir", a.dir, "folder to create the vault in")->required();
  init->add_flag("--force-config", a.force_config,
                 "replace an existing phivault.toml (the master key is kept)");

  CLI::App* status = app.add_subcommand("status", "show the daemon's status");

  CLI::App* put = app.add_subcommand("put", "store a new record; prints its record id");
  put->add_option("--patient", a.patient, "patient identifier")->required();
  put->add_option("--category", a.category, "record category, e.g. clinical_note")->required();
  put->add_option("--type", a.type, "content type (MIME), e.g. text/plain")->required();
  put->add_option("--encounter-date", a.encounter_date, "YYYY-MM-DD")->required();
  put->add_option("--author", a.author, "author of the record")->required();
  put->add_option("file", a.input, "content file, or - for standard input")->capture_default_str();

  CLI::App* get = app.add_subcommand("get", "write a record's content to stdout or a file");
  get->add_option("id", a.id, "record id")->required();
  get->add_option("--version", a.version, "version to read (default: latest)")
      ->check(CLI::Range(1u, 0xffffffffu));
  get->add_option("-o,--output", a.output, "write the content to FILE (created 0600)");

  CLI::App* amend = app.add_subcommand("amend", "add a new version of a record");
  amend->add_option("id", a.id, "record id")->required();
  amend->add_option("--reason", a.reason, "why the record is amended")->required();
  amend->add_option("--type", a.type, "content type (default: the previous version's)");
  amend->add_option("--encounter-date", a.encounter_date, "YYYY-MM-DD");
  amend->add_option("--author", a.author, "author of the amendment");
  amend->add_option("file", a.input, "content file, or - for standard input")
      ->capture_default_str();

  CLI::App* ls = app.add_subcommand("ls", "list a patient's records (latest versions)");
  ls->add_option("--patient", a.patient, "patient identifier")->required();

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

  if (g.role.empty()) return UsageError("--role is required (or set PHIVAULT_ROLE)");
  if (g.user.empty()) return UsageError("--as must not be empty");
  if (g.purpose.empty()) return UsageError("--purpose must not be empty");
  if (!a.encounter_date.empty() && !IsCalendarDate(a.encounter_date)) {
    return UsageError("--encounter-date must be a calendar date written YYYY-MM-DD");
  }

  client::Client c(client::ClientOptions{.socket_path = g.socket, .token = g.token});
  const client::Actor actor{.user = g.user, .role = g.role, .purpose = g.purpose};
  if (status->parsed()) return RunStatus(c, actor, g);
  if (put->parsed()) return RunPut(c, actor, g, a);
  if (get->parsed()) return RunGet(c, actor, g, a);
  if (amend->parsed()) return RunAmend(c, actor, g, a);
  if (ls->parsed()) return RunList(c, actor, g, a);
  return UsageError("unknown command");
}

}  // namespace phivault::tools
