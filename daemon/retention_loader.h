// Loading the retention table the configuration names (docs/retention.md): the practice's
// retention file, or the shipped us-federal preset when none is configured.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "daemon/config.h"
#include "policies/retention.h"

namespace phivault::daemon {

// The preset a vault uses when its configuration names no retention file.
inline constexpr std::string_view kDefaultRetentionPreset = "us-federal";

struct LoadedRetention {
  std::shared_ptr<const policies::RetentionTable> table;
  // Where it came from: the retention file's path as configured, or "preset us-federal".
  std::string source;
  // The text the table was parsed from: the file's, or "[retention]\npreset = \"us-federal\"\n"
  // for the default. Kept by the vault so that a later table can be checked against it.
  std::string text;
  std::string sha256_hex;  // of `text`
};

// Reads and validates config.retention_file (relative to the config file's directory) against the
// configured categories. InvalidArgument "<file>:<line>: ..." (policies::RetentionTable::Parse),
// NotFound / Unavailable naming the file if it cannot be read.
StatusOr<LoadedRetention> LoadRetention(const Config& config);
// Parses `text` as LoadRetention would have read it from `source`.
StatusOr<LoadedRetention> ParseRetention(const Config& config, std::string source,
                                         std::string text);

}  // namespace phivault::daemon
