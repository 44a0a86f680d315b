// `phivault init`: creates a development vault folder — master key, data folder, daemon config
// with one application token — so that `phivaultd --config DIR/phivault.toml` starts at once.
// A development vault is for synthetic data only: its master key is a plain file beside the data
// and its application and operator may do everything.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace phivault::tools {

// The practice name a development vault gets unless --practice-name says otherwise.
inline constexpr const char* kDefaultPracticeName = "Development Practice (synthetic data)";

struct InitOptions {
  std::string dir;            // created (0700) if missing; made absolute
  bool force_config = false;  // replace an existing phivault.toml (the key file is kept)
  uint32_t uid = 0;           // who may use the application token and is the operator
  std::string practice_name;  // empty: kDefaultPracticeName
};

struct InitResult {
  std::string dir;  // absolute
  std::string config_path;
  std::string key_path;
  std::string data_dir;
  std::string socket_path;
  std::string token_path;  // DIR/dev-token (0600): the application token, and nothing else
  std::string practice_name;
  bool created_key = false;  // false: an existing key file was kept (--force-config)
  std::string token;         // the application token, as written to token_path
};

// The config file's text for these absolute paths and values (the exact keys the daemon knows).
struct DevConfig {
  std::string data_dir;
  std::string socket_path;
  std::string key_path;
  std::string token_path;  // named in a comment only
  std::string token_sha256_hex;
  std::string practice_name;
  uint32_t uid = 0;
};
std::string RenderDevConfig(const DevConfig& config);

// A TOML basic string: quoted, with backslash, quote and control characters escaped.
std::string TomlQuote(std::string_view value);

// "pvt_" + base64url(32 random bytes).
std::string NewApplicationToken();

// Creates the vault folder. `uid` gets one operator entry per default role (administrator
// first), each allowed every action, and so does the application. The token is written to
// DIR/dev-token (0600, replaced by force_config), never printed.
// AlreadyExists if DIR/phivault.toml exists (unless force_config),
// or if DIR/master.key exists without force_config: a key file is never overwritten.
// InvalidArgument if the socket path would be too long for a Unix socket or the practice name
// is over 128 bytes or holds a control character. On success the key file is 0400, the config
// and the token file 0600, the data folder 0700.
StatusOr<InitResult> InitDevVault(const InitOptions& options);

}  // namespace phivault::tools
