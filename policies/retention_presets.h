// The shipped retention presets (policies/retention/*.toml), compiled in by
// policies/CMakeLists.txt. Internal to policies/retention.cc and its tests; use
// RetentionTable::Preset.
#pragma once

#include <span>
#include <string_view>

namespace phivault::policies {

struct RetentionPresetText {
  std::string_view name;  // "us-tx"
  std::string_view file;  // "policies/retention/us-tx.toml", named in errors
  std::string_view text;  // the TOML file
};

// Every shipped preset, in name order.
std::span<const RetentionPresetText> ShippedRetentionPresets();

}  // namespace phivault::policies
