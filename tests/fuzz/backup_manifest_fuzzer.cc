// A backup's manifest (storage/backup.h), as `phivault backup verify` checks a backup directory
// offline: the input is written as the directory's manifest.phivault and VerifyBackup reads,
// parses and verifies it (under the key it names) and checks the files it lists, of which the
// directory holds none but one small file (db/CURRENT).
#include <filesystem>

#include "storage/backup.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  phivault::fuzz::InitOrDie();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = phivault::fuzz::ScratchDir() + "/backup";
    std::filesystem::create_directories(d + "/db");
    phivault::fuzz::WriteFileOrDie(d + "/db/CURRENT", "MANIFEST-000005\n");
    return d;
  }();
  phivault::fuzz::WriteFileOrDie(dir + "/" + std::string(phivault::storage::kBackupManifestName),
                                 phivault::fuzz::AsText(data, size));
  (void)phivault::storage::VerifyBackup(dir, std::nullopt);
  (void)phivault::storage::ListBackups(dir);
  return 0;
}
