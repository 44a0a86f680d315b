#include "daemon/retention_loader.h"

#include <fstream>
#include <sstream>

#include "crypto/hash.h"

namespace phivault::daemon {

StatusOr<LoadedRetention> ParseRetention(const Config& config, std::string source,
                                         std::string text) {
  PV_ASSIGN_OR_RETURN(policies::RetentionTable table,
                      policies::RetentionTable::Parse(text, source, config.categories));
  LoadedRetention out;
  out.table = std::make_shared<const policies::RetentionTable>(std::move(table));
  out.source = std::move(source);
  out.sha256_hex = crypto::HexEncode(crypto::AsView(crypto::Sha256(text)));
  out.text = std::move(text);
  return out;
}

StatusOr<LoadedRetention> LoadRetention(const Config& config) {
  if (config.retention_file.empty()) {
    return ParseRetention(
        config, "preset " + std::string(kDefaultRetentionPreset),
        "[retention]\npreset = \"" + std::string(kDefaultRetentionPreset) + "\"\n");
  }
  std::ifstream in(config.retention_file, std::ios::binary);
  if (!in) return NotFound(config.retention_file + ": cannot open the retention file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Unavailable(config.retention_file + ": cannot read the retention file");
  return ParseRetention(config, config.retention_file, std::move(text).str());
}

}  // namespace phivault::daemon
