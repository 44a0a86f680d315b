// The daemon's configuration file (daemon/config.h LoadConfig), as phivaultd reads it at start.
#include "daemon/config.h"
#include "daemon/policy_loader.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = phivault::fuzz::ScratchDir() + "/phivault.toml";
  phivault::fuzz::WriteFileOrDie(path, phivault::fuzz::AsText(data, size));
  auto config = phivault::daemon::LoadConfig(path);
  // What phivaultd derives from an accepted configuration before it reads any other file.
  if (config.ok()) (void)phivault::daemon::PolicyVocabularyFor(*config);
  return 0;
}
