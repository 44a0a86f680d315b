// A keyring file from attacker bytes (crypto/keyring.h), opened as phivaultd opens it at start,
// through the keyring's injectable file layer (an in-memory file system, so Open's repairs and
// migrations write nowhere), under the fixed test master key its seed keyrings are sealed with;
// and the same bytes inspected as `phivault keys` and a restore inspect a copy.
#include <map>
#include <string>

#include "crypto/keyring.h"
#include "crypto/keyring_file.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

class MemoryFiles : public phivault::crypto::KeyringFiles {
 public:
  phivault::StatusOr<std::string> Read(const std::string& path) override {
    auto it = files_.find(path);
    if (it == files_.end()) return phivault::NotFound(path + ": no such file");
    return it->second;
  }
  bool Exists(const std::string& path) override { return files_.count(path) != 0; }
  phivault::Status Create(const std::string& path, std::string_view data) override {
    if (Exists(path)) return phivault::AlreadyExists(path + ": exists");
    files_[path] = std::string(data);
    return phivault::Status::Ok();
  }
  phivault::Status WriteAt(const std::string& path, uint64_t offset,
                           std::string_view data) override {
    auto it = files_.find(path);
    if (it == files_.end()) return phivault::Unavailable(path + ": no such file");
    // A real file system refuses a write this far out; so does the harness, rather than
    // allocate it.
    if (offset > (1u << 24) || data.size() > (1u << 24)) return phivault::Unavailable(path);
    std::string& f = it->second;
    if (f.size() < offset + data.size()) f.resize(offset + data.size(), '\0');
    f.replace(offset, data.size(), data);
    return phivault::Status::Ok();
  }
  phivault::Status Sync(const std::string&) override { return phivault::Status::Ok(); }
  phivault::Status Shred(const std::string& path) override {
    files_.erase(path);
    return phivault::Status::Ok();
  }

  std::map<std::string, std::string> files_;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  phivault::fuzz::InitOrDie();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes = phivault::fuzz::AsText(data, size);
  MemoryFiles files;
  files.files_["/vault/keyring"] = std::string(bytes);
  phivault::crypto::KeyringOptions options;
  options.path = "/vault/keyring";
  options.files = &files;
  auto keyring = phivault::crypto::Keyring::Open(options, phivault::fuzz::FuzzMasterKey());
  if (keyring.ok()) {
    // What the daemon does next with an opened keyring: list and use its epochs.
    for (const auto& epoch : (*keyring)->ListEpochs()) (void)(*keyring)->GetEpoch(epoch.id);
  }
  std::string clean;
  (void)phivault::crypto::Keyring::InspectCopy(bytes, phivault::fuzz::FuzzMasterKey(), &clean);
  return 0;
}
