#include "tools/cli_init.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "crypto/hash.h"
#include "crypto/master_key.h"
#include "daemon/config.h"

namespace phivault::tools {
namespace {

namespace fs = std::filesystem;

// A development vault may do everything the daemon knows (daemon/config.cc KnownActions), as a
// TOML array.
std::string AllActions() {
  std::string out = "[";
  for (const auto& a : daemon::KnownActions()) out += (out.size() > 1 ? ",\"" : "\"") + a + "\"";
  return out + "]";
}

// The daemon's default roles (daemon/config.cc DefaultRoles). The creator of a development vault
// gets an operator entry for each, so that every guide in docs/ works as written whichever role
// it uses; administrator comes first because it is the role of a request that names none of them.
constexpr const char* kRoles[] = {"vault_admin",      "physician", "nurse",
                                  "front_office",     "billing",   "compliance_officer",
                                  "medical_assistant"};

Status ErrnoStatus(const std::string& what, int err) {
  return Internal(what + ": " + std::strerror(err));
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write failed", errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open " + dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus("cannot sync " + dir, err);
  return Status::Ok();
}

// Writes `text` to a temporary file beside `path` (mode 0600), syncs it and renames it over
// `path`, so a crash leaves either the old config or the new one, never half of one.
Status WriteFileAtomically(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("cannot create " + tmp, errno);
  Status s = WriteAll(fd, text);
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoStatus("cannot sync " + tmp, errno);
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoStatus("cannot rename " + tmp, errno);
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return FsyncDir(fs::path(path).parent_path().string());
}

Status MakeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0) return Status::Ok();
  if (errno == EEXIST && fs::is_directory(dir)) return Status::Ok();
  return ErrnoStatus("cannot create directory " + dir, errno);
}

}  // namespace

std::string TomlQuote(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string RenderDevConfig(const DevConfig& c) {
  const std::string uid = std::to_string(c.uid);
  std::string out;
  out += "# phivaultd development configuration, written by `phivault init`.\n";
  out += "# For SYNTHETIC DATA ONLY: the master key is a plain file beside the data, and the\n";
  out += "# application and the operator below may do everything the daemon knows.\n";
  out += "data_dir = " + TomlQuote(c.data_dir) + "\n";
  out += "socket_path = " + TomlQuote(c.socket_path) + "\n";
  out += "socket_mode = \"0660\"\n";
  out += "# Heads the reports given to patients (accounting of disclosures, access report).\n";
  out += "practice_name = " + TomlQuote(c.practice_name) + "\n";
  out += "\n[master_key]\n";
  out += "source = \"file\"\n";
  out += "file = " + TomlQuote(c.key_path) + "\n";
  out += "\n[limits]\n";
  out += "disk_reserve_bytes = 268435456\n";
  out += "\n[log]\n";
  out += "level = \"info\"\n";
  out += "\n# Only the SHA-256 of the token is kept here; the token is in the 0600 file " +
         TomlQuote(c.token_path) + ".\n";
  out += "[[applications]]\n";
  out += "name = \"dev-app\"\n";
  out += "token_sha256 = " + TomlQuote(c.token_sha256_hex) + "\n";
  out += "uids = [" + uid + "]\n";
  out += "actions = " + AllActions() + "\n";
  out +=
      "# The roles the app may assert in X-Phivault-Role; a real installation lists only the\n"
      "# ones its users hold (docs/configuration.md). Optionally `purposes = [...]` too.\n";
  std::string roles;
  for (const char* role : kRoles)
    roles += std::string(roles.empty() ? "" : ", ") + "\"" + role + "\"";
  out += "roles = [" + roles + "]\n";
  out += "\n# Uid " + uid +
         " (who ran `phivault init`) is an operator in every role: the request's role\n"
         "# (--role) picks the entry. A real installation gives each person the one role and\n"
         "# the actions their job needs (docs/configuration.md).\n";
  for (const char* role : kRoles) {
    out += "[[operators]]\n";
    out += "uid = " + uid + "\n";
    out += std::string("role = \"") + role + "\"\n";
    out += "actions = " + AllActions() + "\n";
  }
  return out;
}

std::string NewApplicationToken() {
  return "pvt_" + crypto::Base64UrlEncode(crypto::RandomBytes(32));
}

StatusOr<InitResult> InitDevVault(const InitOptions& options) {
  if (options.dir.empty()) return InvalidArgument("--dir must not be empty");
  std::error_code ec;
  const fs::path dir = fs::absolute(options.dir, ec).lexically_normal();
  if (ec) return InvalidArgument("cannot resolve --dir: " + ec.message());

  InitResult r;
  r.dir = dir.string();
  if (r.dir.size() > 1 && r.dir.back() == '/') r.dir.pop_back();
  r.config_path = r.dir + "/phivault.toml";
  r.key_path = r.dir + "/master.key";
  r.data_dir = r.dir + "/data";
  r.socket_path = r.dir + "/phivault.sock";
  r.token_path = r.dir + "/dev-token";
  r.practice_name = options.practice_name.empty() ? kDefaultPracticeName : options.practice_name;
  if (r.practice_name.size() > 128 ||
      std::any_of(r.practice_name.begin(), r.practice_name.end(),
                  [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; })) {
    return InvalidArgument("--practice-name must be at most 128 bytes without control characters");
  }

  if (r.socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return InvalidArgument("socket path " + r.socket_path + " is longer than " +
                           std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                           " bytes, the limit for a Unix socket; choose a shorter --dir");
  }
  struct stat st;
  const bool config_exists = ::lstat(r.config_path.c_str(), &st) == 0;
  const bool key_exists = ::lstat(r.key_path.c_str(), &st) == 0;
  if (config_exists && !options.force_config) {
    return AlreadyExists(r.config_path + " already exists; use --force-config to replace it");
  }
  if (key_exists && !options.force_config) {
    return AlreadyExists(r.key_path +
                         " already exists; refusing to overwrite a master key (it would make "
                         "the vault's data unreadable)");
  }

  fs::create_directories(dir, ec);
  if (ec) return Internal("cannot create directory " + r.dir + ": " + ec.message());
  PV_RETURN_IF_ERROR(MakeDir(r.data_dir));
  if (!key_exists) {
    PV_RETURN_IF_ERROR(crypto::CreateMasterKeyFile(r.key_path));
    r.created_key = true;
  }

  r.token = NewApplicationToken();
  DevConfig config;
  config.data_dir = r.data_dir;
  config.socket_path = r.socket_path;
  config.key_path = r.key_path;
  config.token_path = r.token_path;
  config.token_sha256_hex = crypto::HexEncode(crypto::AsView(crypto::Sha256(r.token)));
  config.practice_name = r.practice_name;
  config.uid = options.uid;
  // The token goes to a private file, never to standard output, where it would land in any log
  // the command's output is redirected to. Written before the config that accepts it.
  PV_RETURN_IF_ERROR(WriteFileAtomically(r.token_path, r.token + "\n"));
  PV_RETURN_IF_ERROR(WriteFileAtomically(r.config_path, RenderDevConfig(config)));
  return r;
}

}  // namespace phivault::tools
