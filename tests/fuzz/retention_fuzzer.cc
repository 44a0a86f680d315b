// The practice's retention file (daemon/retention_loader.h ParseRetention, as LoadRetention and
// `phivault retention check` read it), against the default categories; an accepted table then
// decides one record of every category and is compared with the preset it replaces, as a reload
// does.
#include <chrono>

#include "daemon/config.h"
#include "daemon/retention_loader.h"
#include "policies/retention.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace std::chrono;

const phivault::daemon::Config& DefaultConfig() {
  static const phivault::daemon::Config* config = [] {
    auto* c = new phivault::daemon::Config();
    c->roles = phivault::daemon::DefaultRoles();
    c->categories = phivault::daemon::DefaultCategories();
    return c;
  }();
  return *config;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const phivault::daemon::Config& config = DefaultConfig();
  auto loaded = phivault::daemon::ParseRetention(config, "retention.toml",
                                                 std::string(phivault::fuzz::AsText(data, size)));
  if (!loaded.ok()) return 0;
  phivault::policies::RetentionFacts facts;
  facts.date_of_birth = year_month_day{year{2010}, month{2}, day{29}};
  facts.last_encounter = year_month_day{year{2026}, month{11}, day{30}};
  facts.record_encounter = year_month_day{year{2020}, month{1}, day{15}};
  for (const std::string& category : config.categories) {
    (void)loaded->table->Decide(category, facts);
  }
  static const auto preset =
      phivault::policies::RetentionTable::Preset(phivault::daemon::kDefaultRetentionPreset);
  if (preset.ok()) (void)phivault::policies::FindShortenings(*preset, *loaded->table);
  return 0;
}
