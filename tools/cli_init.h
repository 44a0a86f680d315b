// `phivault init`: creates a development vault folder — master key, data folder, retention file,
// daemon config with one application token — so that `phivaultd --config DIR/phivault.toml`
// starts at once.
// A development vault is for synthetic data only: its master key is a plain file beside the data
// and its application and operator may do everything.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace phivault::tools {

// The practice name a development vault gets unless --practice-name says otherwise.
inline constexpr const char* kDefaultPracticeName = "Development Practice (synthetic data)";

// The retention preset a development vault gets unless --retention-preset says otherwise (the
// daemon's own default, daemon::kDefaultRetentionPreset).
inline constexpr const char* kDefaultRetentionPreset = "us-federal";

// The shipped retention presets' names, "us-ca, us-federal, ..." (policies::RetentionPresetNames).
std::string RetentionPresetList();

struct InitOptions {
  std::string dir;            // created (0700) if missing; made absolute
  bool force_config = false;  // replace an existing phivault.toml (the key file is kept)
  uint32_t uid = 0;           // who may use the application token and is the operator
  std::string practice_name;  // empty: kDefaultPracticeName
  // The retention preset (policies::RetentionPresetNames()) DIR/retention.toml names; empty:
  // kDefaultRetentionPreset.
  std::string retention_preset;
};

struct InitResult {
  std::string dir;  // absolute
  std::string config_path;
  std::string key_path;
  std::string data_dir;
  std::string socket_path;
  std::string token_path;  // DIR/dev-token (0600): the application token, and nothing else
  std::string practice_name;
  bool created_key = false;        // false: an existing key file was kept (--force-config)
  std::string token;               // the application token, as written to token_path
  std::string retention_path;      // DIR/retention.toml, named by the config's retention_file
  bool created_retention = false;  // false: an existing retention file was kept (--force-config)
  std::string retention_preset;    // the preset the retention file names
  // The legal sources of the table's rules, in table order, each once ("42 CFR 482.24(b)(1)").
  std::vector<std::string> retention_sources;
};

// The config file's text for these absolute paths and values (the exact keys the daemon knows).
struct DevConfig {
  std::string data_dir;
  std::string socket_path;
  std::string key_path;
  std::string retention_path;
  std::string token_path;  // named in a comment only
  std::string token_sha256_hex;
  std::string practice_name;
  uint32_t uid = 0;
};
std::string RenderDevConfig(const DevConfig& config);

// A practice retention file (docs/retention.md) naming `preset`, which must be a shipped preset,
// with commented guidance on lengthening it; loads as it is.
std::string RenderRetentionFile(std::string_view preset);

// A TOML basic string: quoted, with backslash, quote and control characters escaped.
std::string TomlQuote(std::string_view value);

// "pvt_" + base64url(32 random bytes).
std::string NewApplicationToken();

// Creates the vault folder. `uid` gets one operator entry per default role (administrator
// first), each allowed every action, and so does the application. The token is written to
// DIR/dev-token (0600, replaced by force_config), never printed. DIR/retention.toml names the
// chosen preset; like the key file it is never overwritten: with force_config an existing one is
// kept (and must load, and name options.retention_preset if one is given).
// AlreadyExists if DIR/phivault.toml exists (unless force_config), or if DIR/master.key or
// DIR/retention.toml exists without force_config.
// InvalidArgument if the socket path would be too long for a Unix socket, the practice name
// is over 128 bytes or holds a control character, the retention preset is not a shipped one
// (the message lists them), or a kept retention file does not load or names another preset.
// On success the key file is 0400, the config, the retention file and the token file 0600, the
// data folder 0700.
StatusOr<InitResult> InitDevVault(const InitOptions& options);

}  // namespace phivault::tools
