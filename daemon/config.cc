#include "daemon/config.h"

#include <sys/un.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <set>
#include <string_view>

#include <toml++/toml.h>

#include "crypto/hash.h"
#include "policies/purpose_of_use.h"

namespace phivault::daemon {
namespace {

namespace fs = std::filesystem;

constexpr size_t kSaltBytes = 16;
// libsodium's bounds for Argon2id (crypto_pwhash_argon2id_OPSLIMIT_MIN/MAX, MEMLIMIT_MIN/MAX on
// 64-bit platforms).
constexpr uint64_t kOpsLimitMin = 1;
constexpr uint64_t kOpsLimitMax = 4294967295ull;
constexpr uint64_t kMemLimitMin = 8192;
constexpr uint64_t kMemLimitMax = 4398046510080ull;

bool IsNameChar(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return !first && (c == '-' || c == '_');
}

// Category and role names: lowercase, starting with a letter or digit, at most 64 bytes.
bool IsValidName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!IsNameChar(s[i], i == 0)) return false;
  }
  return true;
}

// Application names also allow upper case and dots (they appear in logs and audit entries).
bool IsValidApplicationName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

bool HasControlChar(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Reads typed values out of the TOML tree, naming the file and the full key in every error.
class Reader {
 public:
  Reader(std::string file, fs::path base_dir)
      : file_(std::move(file)), base_(std::move(base_dir)) {}

  Status Error(std::string_view key, std::string_view constraint) const {
    return InvalidArgument(file_ + ": " + std::string(key) + " " + std::string(constraint));
  }

  static std::string Join(std::string_view prefix, std::string_view key) {
    return prefix.empty() ? std::string(key) : std::string(prefix) + "." + std::string(key);
  }

  Status CheckKeys(const toml::table& t, std::string_view prefix,
                   std::initializer_list<std::string_view> allowed) const {
    for (auto&& [k, v] : t) {
      if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end()) {
        return InvalidArgument(file_ + ": unknown key " + Join(prefix, k.str()));
      }
    }
    return Status::Ok();
  }

  // Leaves `out` untouched when the key is absent.
  Status String(const toml::table& t, std::string_view prefix, std::string_view key,
                std::string& out, bool required = false) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return required ? Error(Join(prefix, key), "is required") : Status::Ok();
    const auto* s = n->as_string();
    if (s == nullptr) return Error(Join(prefix, key), "must be a string");
    out = s->get();
    return Status::Ok();
  }

  Status NonEmptyString(const toml::table& t, std::string_view prefix, std::string_view key,
                        std::string& out, bool required = false) const {
    const bool present = t.contains(key);
    PV_RETURN_IF_ERROR(String(t, prefix, key, out, required));
    if (present && out.empty()) return Error(Join(prefix, key), "must not be empty");
    return Status::Ok();
  }

  // A path; relative paths are resolved against the config file's directory.
  Status Path(const toml::table& t, std::string_view prefix, std::string_view key, std::string& out,
              bool required = false) const {
    const bool present = t.contains(key);
    PV_RETURN_IF_ERROR(NonEmptyString(t, prefix, key, out, required));
    if (present) out = Resolve(out);
    return Status::Ok();
  }

  std::string Resolve(const std::string& p) const {
    fs::path path(p);
    if (path.is_relative()) path = base_ / path;
    return path.lexically_normal().string();
  }

  template <typename T>
  Status Integer(const toml::table& t, std::string_view prefix, std::string_view key, T& out,
                 uint64_t min, uint64_t max) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return Status::Ok();
    const auto* i = n->as_integer();
    const std::string range =
        "must be an integer between " + std::to_string(min) + " and " + std::to_string(max);
    if (i == nullptr || i->get() < 0) return Error(Join(prefix, key), range);
    const auto v = static_cast<uint64_t>(i->get());
    if (v < min || v > max) return Error(Join(prefix, key), range);
    out = static_cast<T>(v);
    return Status::Ok();
  }

  // An array of strings, each accepted by `valid` (described by `what`), without duplicates.
  Status StringList(const toml::table& t, std::string_view prefix, std::string_view key,
                    std::vector<std::string>& out,
                    const std::function<bool(const std::string&)>& valid, std::string_view what,
                    bool allow_empty = false) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return Status::Ok();
    const std::string name = Join(prefix, key);
    const auto* a = n->as_array();
    if (a == nullptr) return Error(name, "must be an array of strings");
    if (a->empty() && !allow_empty) return Error(name, "must not be empty");
    std::vector<std::string> values;
    std::set<std::string> seen;
    for (size_t i = 0; i < a->size(); ++i) {
      const auto* s = a->get(i)->as_string();
      const std::string elem = name + "[" + std::to_string(i) + "]";
      if (s == nullptr) return Error(elem, "must be a string");
      if (!valid(s->get())) return Error(elem, what);
      if (!seen.insert(s->get()).second) return Error(elem, "is a duplicate");
      values.push_back(s->get());
    }
    out = std::move(values);
    return Status::Ok();
  }

  const toml::table* Table(const toml::table& t, std::string_view key, Status& st) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return nullptr;
    const auto* tbl = n->as_table();
    if (tbl == nullptr) st = Error(key, "must be a table");
    return tbl;
  }

  const std::string& file() const { return file_; }

 private:
  std::string file_;
  fs::path base_;
};

Status ParseSocketMode(const Reader& r, const toml::table& t, uint32_t& mode) {
  std::string text;
  PV_RETURN_IF_ERROR(r.String(t, "", "socket_mode", text));
  if (!t.contains("socket_mode")) return Status::Ok();
  constexpr std::string_view kWhat = "must be an octal string such as \"0660\"";
  if (text.size() < 3 || text.size() > 4) return r.Error("socket_mode", kWhat);
  uint32_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return r.Error("socket_mode", kWhat);
    v = v * 8 + static_cast<uint32_t>(c - '0');
  }
  if (v > 0777) return r.Error("socket_mode", kWhat);
  if ((v & 0007) != 0) return r.Error("socket_mode", "must not grant access to others");
  if ((v & 0600) != 0600) return r.Error("socket_mode", "must let the owner read and write");
  mode = v;
  return Status::Ok();
}

Status ParseMasterKey(const Reader& r, const toml::table& t, MasterKeySource& mk) {
  constexpr std::string_view p = "master_key";
  PV_RETURN_IF_ERROR(r.CheckKeys(t, p,
                                 {"source", "file", "credential", "passphrase_env",
                                  "passphrase_file", "salt", "opslimit", "memlimit"}));
  std::string source;
  PV_RETURN_IF_ERROR(r.String(t, p, "source", source, /*required=*/true));
  // Keys that belong to another source are an error: they suggest a misunderstanding.
  std::vector<std::string_view> allowed;
  if (source == "file") {
    mk.kind = MasterKeySource::Kind::kFile;
    PV_RETURN_IF_ERROR(r.Path(t, p, "file", mk.file, /*required=*/true));
    allowed = {"source", "file"};
  } else if (source == "credential") {
    mk.kind = MasterKeySource::Kind::kCredential;
    PV_RETURN_IF_ERROR(r.NonEmptyString(t, p, "credential", mk.credential));
    if (mk.credential.find('/') != std::string::npos || mk.credential == "." ||
        mk.credential == "..") {
      return r.Error("master_key.credential", "must be a credential name, not a path");
    }
    allowed = {"source", "credential"};
  } else if (source == "passphrase") {
    mk.kind = MasterKeySource::Kind::kPassphrase;
    if (t.contains("passphrase_env") && t.contains("passphrase_file")) {
      return r.Error("master_key.passphrase_file", "cannot be combined with passphrase_env");
    }
    PV_RETURN_IF_ERROR(r.NonEmptyString(t, p, "passphrase_env", mk.passphrase_env));
    PV_RETURN_IF_ERROR(r.Path(t, p, "passphrase_file", mk.passphrase_file));
    PV_RETURN_IF_ERROR(r.NonEmptyString(t, p, "salt", mk.salt_base64, /*required=*/true));
    auto salt = crypto::Base64Decode(mk.salt_base64);
    if (!salt.ok() || salt->size() != kSaltBytes) {
      return r.Error("master_key.salt", "must be the base64 encoding of exactly 16 bytes");
    }
    PV_RETURN_IF_ERROR(r.Integer(t, p, "opslimit", mk.opslimit, kOpsLimitMin, kOpsLimitMax));
    PV_RETURN_IF_ERROR(r.Integer(t, p, "memlimit", mk.memlimit, kMemLimitMin, kMemLimitMax));
    allowed = {"source", "passphrase_env", "passphrase_file", "salt", "opslimit", "memlimit"};
  } else {
    return r.Error("master_key.source", "must be one of \"file\", \"credential\", \"passphrase\"");
  }
  for (auto&& [k, v] : t) {
    if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end()) {
      return r.Error(Reader::Join(p, k.str()),
                     "is not used with source = \"" + source + "\"; remove it");
    }
  }
  return Status::Ok();
}

Status ParseLimits(const Reader& r, const toml::table& t, Limits& l) {
  constexpr std::string_view p = "limits";
  PV_RETURN_IF_ERROR(r.CheckKeys(
      t, p,
      {"max_body_bytes", "max_header_bytes", "max_connections", "idle_timeout_ms",
       "disk_reserve_bytes", "auth_failure_burst", "auth_failure_refill_ms",
       "auth_failure_summary_ms", "auth_failures_per_connection", "request_timeout_ms",
       "min_body_bytes_per_second", "max_connections_per_uid", "reserved_operator_connections",
       "operator_uids", "max_small_body_bytes", "max_inflight_body_bytes"}));
  PV_RETURN_IF_ERROR(r.Integer(t, p, "max_body_bytes", l.max_body_bytes, 1024, 2ull << 30));
  PV_RETURN_IF_ERROR(r.Integer(t, p, "max_header_bytes", l.max_header_bytes, 1024, 65536));
  PV_RETURN_IF_ERROR(r.Integer(t, p, "max_connections", l.max_connections, 1, 4096));
  PV_RETURN_IF_ERROR(r.Integer(t, p, "idle_timeout_ms", l.idle_timeout_ms, 100, 3600000));
  PV_RETURN_IF_ERROR(
      r.Integer(t, p, "disk_reserve_bytes", l.disk_reserve_bytes, 1ull << 20, 1ull << 50));
  PV_RETURN_IF_ERROR(r.Integer(t, p, "auth_failure_burst", l.auth_failure_burst, 1, 1000));
  PV_RETURN_IF_ERROR(
      r.Integer(t, p, "auth_failure_refill_ms", l.auth_failure_refill_ms, 10, 3600000));
  PV_RETURN_IF_ERROR(
      r.Integer(t, p, "auth_failure_summary_ms", l.auth_failure_summary_ms, 100, 3600000));
  PV_RETURN_IF_ERROR(
      r.Integer(t, p, "auth_failures_per_connection", l.auth_failures_per_connection, 1, 1000));
  PV_RETURN_IF_ERROR(r.Integer(t, p, "request_timeout_ms", l.request_timeout_ms, 100, 3600000));
  PV_RETURN_IF_ERROR(
      r.Integer(t, p, "min_body_bytes_per_second", l.min_body_bytes_per_second, 0, 1ull << 40));
  PV_RETURN_IF_ERROR(
      r.Integer(t, p, "max_connections_per_uid", l.max_connections_per_uid, 1, 4096));
  PV_RETURN_IF_ERROR(
      r.Integer(t, p, "reserved_operator_connections", l.reserved_operator_connections, 0, 4095));
  if (l.reserved_operator_connections >= l.max_connections) {
    return r.Error("limits.reserved_operator_connections",
                   "must be less than limits.max_connections");
  }
  if (const toml::node* uids = t.get("operator_uids"); uids != nullptr) {
    const auto* ua = uids->as_array();
    if (ua == nullptr) return r.Error("limits.operator_uids", "must be an array of user ids");
    l.operator_uids.clear();
    for (size_t j = 0; j < ua->size(); ++j) {
      const auto* u = ua->get(j)->as_integer();
      if (u == nullptr || u->get() < 0 || u->get() > 4294967294ll) {
        return r.Error("limits.operator_uids[" + std::to_string(j) + "]",
                       "must be an integer between 0 and 4294967294");
      }
      l.operator_uids.push_back(static_cast<uint32_t>(u->get()));
    }
  }
  PV_RETURN_IF_ERROR(
      r.Integer(t, p, "max_small_body_bytes", l.max_small_body_bytes, 1024, 2ull << 30));
  PV_RETURN_IF_ERROR(r.Integer(t, p, "max_inflight_body_bytes", l.max_inflight_body_bytes,
                               1ull << 20, 1ull << 40));
  // Left out, these follow max_body_bytes; given, they must be consistent with it.
  if (t.get("max_small_body_bytes") == nullptr) {
    l.max_small_body_bytes = std::min(l.max_small_body_bytes, l.max_body_bytes);
  } else if (l.max_small_body_bytes > l.max_body_bytes) {
    return r.Error("limits.max_small_body_bytes", "must not exceed limits.max_body_bytes");
  }
  if (t.get("max_inflight_body_bytes") == nullptr) {
    l.max_inflight_body_bytes = std::max(l.max_inflight_body_bytes, 2 * l.max_body_bytes);
  } else if (l.max_inflight_body_bytes < l.max_body_bytes) {
    return r.Error("limits.max_inflight_body_bytes",
                   "must be at least limits.max_body_bytes (one largest request must fit)");
  }
  return Status::Ok();
}

Status ParseLog(const Reader& r, const toml::table& t, Config& c) {
  PV_RETURN_IF_ERROR(r.CheckKeys(t, "log", {"level", "file"}));
  PV_RETURN_IF_ERROR(r.String(t, "log", "level", c.log_level));
  static constexpr std::string_view kLevels[] = {"trace", "debug",    "info", "warn",
                                                 "error", "critical", "off"};
  if (std::find(std::begin(kLevels), std::end(kLevels), c.log_level) == std::end(kLevels)) {
    return r.Error("log.level", "must be one of trace, debug, info, warn, error, critical, off");
  }
  return r.Path(t, "log", "file", c.log_file);
}

Status ParseArchive(const Reader& r, const toml::table& t, ArchiveConfig& a) {
  PV_RETURN_IF_ERROR(r.CheckKeys(t, "archive", {"after_days", "restore_on_read"}));
  // At least a month: an archive run moves bytes, and a record read last week is not cold.
  PV_RETURN_IF_ERROR(r.Integer(t, "archive", "after_days", a.after_days, 30, 36600));
  if (!t.contains("after_days")) return r.Error("archive.after_days", "is required");
  if (const toml::node* n = t.get("restore_on_read"); n != nullptr) {
    const auto* b = n->as_boolean();
    if (b == nullptr) return r.Error("archive.restore_on_read", "must be true or false");
    a.restore_on_read = b->get();
  }
  return Status::Ok();
}

Status ParseMemory(const Reader& r, const toml::table& t, MemoryConfig& m) {
  constexpr std::string_view p = "memory";
  PV_RETURN_IF_ERROR(r.CheckKeys(t, p,
                                 {"block_cache_bytes", "memtable_budget_bytes",
                                  "encounter_cache_patients", "release_after_idle_seconds"}));
  PV_RETURN_IF_ERROR(
      r.Integer(t, p, "block_cache_bytes", m.block_cache_bytes, 8ull << 20, 1ull << 40));
  // Given alone, the block cache carries the budget along at half its size.
  if (!t.contains("memtable_budget_bytes")) {
    m.memtable_budget_bytes = m.block_cache_bytes / 2;
  }
  PV_RETURN_IF_ERROR(
      r.Integer(t, p, "memtable_budget_bytes", m.memtable_budget_bytes, 4ull << 20, 1ull << 40));
  if (m.memtable_budget_bytes >= m.block_cache_bytes) {
    return r.Error("memory.memtable_budget_bytes",
                   "must be less than memory.block_cache_bytes (the memtables are charged to the "
                   "block cache, and reads need some of it)");
  }
  PV_RETURN_IF_ERROR(
      r.Integer(t, p, "encounter_cache_patients", m.encounter_cache_patients, 100, 100000000));
  return r.Integer(t, p, "release_after_idle_seconds", m.release_after_idle_seconds, 0, 86400);
}

Status ParseActions(const Reader& r, const toml::table& t, const std::string& prefix,
                    std::vector<std::string>& actions) {
  const std::vector<std::string> known = KnownActions();
  std::string what = "must be one of:";
  for (const auto& a : known) what += " " + a;
  if (!t.contains("actions")) return r.Error(prefix + ".actions", "is required");
  return r.StringList(
      t, prefix, "actions", actions,
      [&](const std::string& a) { return std::find(known.begin(), known.end(), a) != known.end(); },
      what);
}

// An application's `roles` (required: a token alone must not let it act in every role) and
// `purposes` (optional).
Status ParseApplicationRoles(const Reader& r, const toml::table& t, const std::string& prefix,
                             const std::vector<std::string>& configured, ApplicationConfig& app) {
  if (!t.contains("roles")) {
    return r.Error(prefix + ".roles",
                   "is required: the roles this application may assert in X-Phivault-Role");
  }
  std::string roles_rule = "must be one of the configured roles:";
  for (const auto& role : configured) roles_rule += " " + role;
  PV_RETURN_IF_ERROR(r.StringList(
      t, prefix, "roles", app.roles,
      [&](const std::string& role) {
        return std::find(configured.begin(), configured.end(), role) != configured.end();
      },
      roles_rule));
  return r.StringList(
      t, prefix, "purposes", app.purposes,
      [](const std::string& code) {
        const auto entry = policies::LookupPurposeOfUse(code);
        return entry.has_value() && entry->category != policies::PurposeCategory::kAbstract;
      },
      "must be an HL7 PurposeOfUse code (e.g. TREAT, HPAYMT, HOPERAT)");
}

const toml::array* ArrayOfTables(const Reader& r, const toml::table& root, std::string_view key,
                                 Status& st) {
  const toml::node* n = root.get(key);
  if (n == nullptr) return nullptr;
  const auto* a = n->as_array();
  if (a == nullptr || !a->is_array_of_tables()) {
    st = r.Error(key, "must be an array of tables ([[" + std::string(key) + "]])");
    return nullptr;
  }
  return a;
}

Status ParseApplications(const Reader& r, const toml::table& root, Config& c) {
  Status st;
  const toml::array* apps = ArrayOfTables(r, root, "applications", st);
  PV_RETURN_IF_ERROR(st);
  if (apps == nullptr) return Status::Ok();
  std::set<std::string> names;
  std::set<std::string> hashes;
  for (size_t i = 0; i < apps->size(); ++i) {
    const toml::table& t = *apps->get(i)->as_table();
    const std::string p = "applications[" + std::to_string(i) + "]";
    PV_RETURN_IF_ERROR(
        r.CheckKeys(t, p, {"name", "token_sha256", "uids", "actions", "roles", "purposes"}));
    ApplicationConfig app;
    PV_RETURN_IF_ERROR(r.String(t, p, "name", app.name, /*required=*/true));
    if (!IsValidApplicationName(app.name)) {
      return r.Error(p + ".name", "must be 1 to 64 characters from [A-Za-z0-9._-]");
    }
    if (!names.insert(app.name).second) return r.Error(p + ".name", "is a duplicate");
    PV_RETURN_IF_ERROR(r.String(t, p, "token_sha256", app.token_sha256_hex, /*required=*/true));
    std::transform(
        app.token_sha256_hex.begin(), app.token_sha256_hex.end(), app.token_sha256_hex.begin(),
        [](char ch) { return (ch >= 'A' && ch <= 'F') ? static_cast<char>(ch + 32) : ch; });
    if (app.token_sha256_hex.size() != 64 || !IsLowerHex(app.token_sha256_hex)) {
      return r.Error(p + ".token_sha256", "must be 64 hexadecimal characters (a SHA-256 digest)");
    }
    if (!hashes.insert(app.token_sha256_hex).second) {
      return r.Error(p + ".token_sha256", "is shared with another application");
    }
    const toml::node* uids = t.get("uids");
    if (uids == nullptr) return r.Error(p + ".uids", "is required");
    const auto* ua = uids->as_array();
    if (ua == nullptr || ua->empty()) {
      return r.Error(p + ".uids", "must be a non-empty array of user ids");
    }
    for (size_t j = 0; j < ua->size(); ++j) {
      const auto* u = ua->get(j)->as_integer();
      if (u == nullptr || u->get() < 0 || u->get() > 4294967294ll) {
        return r.Error(p + ".uids[" + std::to_string(j) + "]",
                       "must be an integer between 0 and 4294967294");
      }
      app.uids.push_back(static_cast<uint32_t>(u->get()));
    }
    PV_RETURN_IF_ERROR(ParseActions(r, t, p, app.actions));
    PV_RETURN_IF_ERROR(ParseApplicationRoles(r, t, p, c.roles, app));
    c.applications.push_back(std::move(app));
  }
  return Status::Ok();
}

Status ParseOperators(const Reader& r, const toml::table& root, Config& c) {
  Status st;
  const toml::array* ops = ArrayOfTables(r, root, "operators", st);
  PV_RETURN_IF_ERROR(st);
  if (ops == nullptr) return Status::Ok();
  for (size_t i = 0; i < ops->size(); ++i) {
    const toml::table& t = *ops->get(i)->as_table();
    const std::string p = "operators[" + std::to_string(i) + "]";
    PV_RETURN_IF_ERROR(r.CheckKeys(t, p, {"uid", "group", "role", "actions"}));
    OperatorConfig op;
    if (t.contains("uid") == t.contains("group")) {
      return r.Error(p, "must have exactly one of uid and group");
    }
    if (t.contains("uid")) {
      uint32_t uid = 0;
      if (t.get("uid")->as_integer() == nullptr) {
        return r.Error(p + ".uid", "must be an integer between 0 and 4294967294");
      }
      PV_RETURN_IF_ERROR(r.Integer(t, p, "uid", uid, 0, 4294967294ull));
      op.uid = uid;
    } else {
      PV_RETURN_IF_ERROR(r.NonEmptyString(t, p, "group", op.group));
    }
    PV_RETURN_IF_ERROR(r.String(t, p, "role", op.role, /*required=*/true));
    if (std::find(c.roles.begin(), c.roles.end(), op.role) == c.roles.end()) {
      return r.Error(p + ".role", "must be one of the configured roles");
    }
    PV_RETURN_IF_ERROR(ParseActions(r, t, p, op.actions));
    c.operators.push_back(std::move(op));
  }
  return Status::Ok();
}

// "HH:MM", 00:00 to 23:59.
bool IsClockTime(std::string_view s) {
  if (s.size() != 5 || s[2] != ':') return false;
  for (size_t i : {0, 1, 3, 4}) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  const int h = (s[0] - '0') * 10 + (s[1] - '0');
  const int m = (s[3] - '0') * 10 + (s[4] - '0');
  return h < 24 && m < 60;
}

Status Parse(const Reader& r, const toml::table& root, Config& c) {
  if (root.contains("default_retention_years")) {
    return r.Error("default_retention_years",
                   "was replaced by retention_file (a preset with its legal sources, which may "
                   "only be lengthened; see docs/retention.md): remove it");
  }
  PV_RETURN_IF_ERROR(r.CheckKeys(root, "",
                                 {"data_dir",
                                  "socket_path",
                                  "socket_mode",
                                  "socket_group",
                                  "retention_file",
                                  "retention_sweep_at",
                                  "max_content_bytes",
                                  "categories",
                                  "roles",
                                  "compliance_role",
                                  "practice_name",
                                  "audit_origin",
                                  "audit_checkpoint_interval_seconds",
                                  "keyring_mirrors",
                                  "master_key",
                                  "policy_file",
                                  "limits",
                                  "log",
                                  "applications",
                                  "operators",
                                  "archive",
                                  "memory"}));

  PV_RETURN_IF_ERROR(r.Path(root, "", "data_dir", c.data_dir, /*required=*/true));
  PV_RETURN_IF_ERROR(r.Path(root, "", "socket_path", c.socket_path, /*required=*/true));
  if (c.socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return r.Error("socket_path", "must be shorter than " +
                                      std::to_string(sizeof(sockaddr_un{}.sun_path)) +
                                      " bytes once resolved (a Unix socket limit)");
  }
  PV_RETURN_IF_ERROR(ParseSocketMode(r, root, c.socket_mode));
  PV_RETURN_IF_ERROR(r.NonEmptyString(root, "", "socket_group", c.socket_group));
  PV_RETURN_IF_ERROR(r.Path(root, "", "retention_file", c.retention_file));
  PV_RETURN_IF_ERROR(r.NonEmptyString(root, "", "retention_sweep_at", c.retention_sweep_at));
  if (!c.retention_sweep_at.empty() && !IsClockTime(c.retention_sweep_at)) {
    return r.Error("retention_sweep_at", "must be a UTC time of day written HH:MM (00:00-23:59)");
  }
  PV_RETURN_IF_ERROR(r.Integer(root, "", "max_content_bytes", c.max_content_bytes, 1, 1ull << 30));

  const auto valid_name = [](const std::string& s) { return IsValidName(s); };
  constexpr std::string_view kNameRule =
      "must be 1 to 64 characters from [a-z0-9_-], starting with a letter or digit";
  PV_RETURN_IF_ERROR(r.StringList(root, "", "categories", c.categories, valid_name, kNameRule));
  PV_RETURN_IF_ERROR(r.StringList(root, "", "roles", c.roles, valid_name, kNameRule));

  if (root.contains("compliance_role")) {
    PV_RETURN_IF_ERROR(r.String(root, "", "compliance_role", c.compliance_role));
    if (std::find(c.roles.begin(), c.roles.end(), c.compliance_role) == c.roles.end()) {
      return r.Error("compliance_role", "must be one of the configured roles");
    }
  }
  PV_RETURN_IF_ERROR(r.Path(root, "", "policy_file", c.policy_file));
  PV_RETURN_IF_ERROR(r.NonEmptyString(root, "", "practice_name", c.practice_name));
  if (c.practice_name.size() > 128 || HasControlChar(c.practice_name)) {
    return r.Error("practice_name", "must be at most 128 bytes without control characters");
  }
  PV_RETURN_IF_ERROR(r.NonEmptyString(root, "", "audit_origin", c.audit_origin));
  if (c.audit_origin.size() > 255 || !std::all_of(c.audit_origin.begin(), c.audit_origin.end(),
                                                  [](char ch) { return ch > 0x20 && ch < 0x7f; })) {
    return r.Error("audit_origin",
                   "must be 1 to 255 printable ASCII characters without spaces (e.g. "
                   "\"clinic.example/phivault\")");
  }
  PV_RETURN_IF_ERROR(r.Integer(root, "", "audit_checkpoint_interval_seconds",
                               c.audit_checkpoint_interval_seconds, 0, 86400));

  std::vector<std::string> mirrors;
  PV_RETURN_IF_ERROR(r.StringList(
      root, "", "keyring_mirrors", mirrors, [](const std::string& s) { return !s.empty(); },
      "must not be empty", /*allow_empty=*/true));
  const std::string primary = (fs::path(c.data_dir) / "keyring").string();
  std::set<std::string> resolved;
  for (size_t i = 0; i < mirrors.size(); ++i) {
    std::string m = r.Resolve(mirrors[i]);
    const std::string elem = "keyring_mirrors[" + std::to_string(i) + "]";
    if (m == primary) return r.Error(elem, "must not be the primary keyring " + primary);
    if (!resolved.insert(m).second) return r.Error(elem, "is a duplicate");
    c.keyring_mirrors.push_back(std::move(m));
  }

  Status st;
  const toml::table* mk = r.Table(root, "master_key", st);
  PV_RETURN_IF_ERROR(st);
  if (mk == nullptr) return r.Error("master_key", "is required");
  PV_RETURN_IF_ERROR(ParseMasterKey(r, *mk, c.master_key));

  if (const toml::table* limits = r.Table(root, "limits", st); limits != nullptr) {
    PV_RETURN_IF_ERROR(ParseLimits(r, *limits, c.limits));
  }
  PV_RETURN_IF_ERROR(st);
  // A body carries the content base64-encoded, plus the other JSON fields.
  const uint64_t min_body = (c.max_content_bytes + 2) / 3 * 4 + 65536;
  if (c.limits.max_body_bytes < min_body) {
    return r.Error("limits.max_body_bytes", "must be at least " + std::to_string(min_body) +
                                                " (max_content_bytes in base64 plus 64 KiB)");
  }

  if (const toml::table* log = r.Table(root, "log", st); log != nullptr) {
    PV_RETURN_IF_ERROR(ParseLog(r, *log, c));
  }
  PV_RETURN_IF_ERROR(st);

  if (const toml::table* archive = r.Table(root, "archive", st); archive != nullptr) {
    PV_RETURN_IF_ERROR(ParseArchive(r, *archive, c.archive));
  }
  PV_RETURN_IF_ERROR(st);

  if (const toml::table* memory = r.Table(root, "memory", st); memory != nullptr) {
    PV_RETURN_IF_ERROR(ParseMemory(r, *memory, c.memory));
  }
  PV_RETURN_IF_ERROR(st);

  PV_RETURN_IF_ERROR(ParseApplications(r, root, c));
  PV_RETURN_IF_ERROR(ParseOperators(r, root, c));
  return Status::Ok();
}

}  // namespace

std::vector<std::string> DefaultCategories() {
  return {"demographics",   "insurance",          "clinical_note", "lab_result",
          "imaging",        "medication",         "billing",       "consent",
          "correspondence", "psychotherapy_note", "substance_use"};
}

std::vector<std::string> DefaultRoles() {
  return {"physician",          "nurse",      "medical_assistant", "front_office", "billing",
          "compliance_officer", "vault_admin"};
}

std::vector<std::string> KnownActions() {
  return {"record.create",    "record.read",        "record.amend",      "record.list",
          "record.disclose",  "disclosure.suspend", "report.accounting", "report.access",
          "audit.export",     "audit.verify",       "audit.review",      "audit.sign-off",
          "policy.reload",    "policy.show",        "policy.check",      "restriction.add",
          "restriction.list", "restriction.end",    "patient.export",    "request.open",
          "request.extend",   "request.close",      "request.list",      "contact.set",
          "contact.show",     "patient.facts",      "retention.show",    "retention.sweep",
          "hold.place",       "hold.release",       "hold.list",         "certificate.read",
          "status",           "backup.create",      "key.rotate",        "archive.run"};
}

StatusOr<Config> LoadConfig(const std::string& path) {
  Config c;
  c.config_path = path;
  c.categories = DefaultCategories();
  c.roles = DefaultRoles();
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  if (ec) return InvalidArgument(path + ": cannot resolve the path of the config file");
  if (!fs::is_regular_file(abs, ec)) return NotFound(path + ": no such config file");
  Reader reader(path, abs.parent_path());
  toml::table root;
  try {
    root = toml::parse_file(abs.string());
  } catch (const toml::parse_error& e) {
    return InvalidArgument(path + ":" + std::to_string(e.source().begin.line) + ":" +
                           std::to_string(e.source().begin.column) + ": " +
                           std::string(e.description()));
  } catch (const std::exception& e) {
    return InvalidArgument(path + ": cannot be read: " + e.what());
  }
  PV_RETURN_IF_ERROR(Parse(reader, root, c));
  return c;
}

}  // namespace phivault::daemon
