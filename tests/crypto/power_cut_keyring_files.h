// Keyring file I/O (crypto/keyring_file.h) on a machine that can lose power: writes reach the
// real file only when the file is synced; until then they sit in a "page cache" that reads see
// and that a cut loses. With a seed, the cut lets a random subset of the unsynced writes land,
// each possibly torn at a 512-byte sector boundary, as a disk that wrote some of its cache in any
// order. Shares its PowerSwitch with the store's file system (tests/storage/power_cut_fs.h), so
// one cut stops both.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "crypto/keyring_file.h"
#include "tests/testing/power_switch.h"

namespace phivault::crypto::testing {

class PowerCutKeyringFiles final : public KeyringFiles {
 public:
  explicit PowerCutKeyringFiles(std::shared_ptr<phivault::testing::PowerSwitch> power)
      : power_(std::move(power)) {}

  // Only after the keyring is closed and the power is off: what the disk keeps of the unsynced
  // writes (nothing without a seed). Returns how many writes were lost or torn.
  size_t DropUnsynced(std::optional<uint64_t> seed) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t lost = 0;
    std::mt19937_64 rng(seed.value_or(0));
    for (auto& [path, writes] : pending_) {
      for (auto& [offset, data] : writes) {
        if (!seed || rng() % 2 == 0) {
          ++lost;
          continue;
        }
        size_t keep = data.size();
        if (rng() % 2 == 0) {
          keep = (rng() % (data.size() / 512 + 1)) * 512;
          if (keep < data.size()) ++lost;
        }
        (void)real().WriteAt(path, offset, std::string_view(data).substr(0, keep));
      }
      (void)real().Sync(path);
    }
    pending_.clear();
    return lost;
  }

  StatusOr<std::string> Read(const std::string& path) override {
    auto bytes = real().Read(path);
    if (!bytes.ok()) return bytes;
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [offset, data] : pending_[path]) {
      if (bytes->size() < offset + data.size()) bytes->resize(offset + data.size(), '\0');
      bytes->replace(offset, data.size(), data);
    }
    return bytes;
  }
  bool Exists(const std::string& path) override { return real().Exists(path); }
  Status Create(const std::string& path, std::string_view data) override {
    if (!power_->Step()) return Unavailable("power cut creating " + path);
    return real().Create(path, data);
  }
  Status WriteAt(const std::string& path, uint64_t offset, std::string_view data) override {
    if (!power_->Step()) return Unavailable("power cut writing " + path);
    std::lock_guard<std::mutex> lock(mu_);
    pending_[path].emplace_back(offset, std::string(data));
    return Status::Ok();
  }
  Status Sync(const std::string& path) override {
    if (!power_->Step()) return Unavailable("power cut syncing " + path);
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [offset, data] : pending_[path]) {
      PV_RETURN_IF_ERROR(real().WriteAt(path, offset, data));
    }
    pending_.erase(path);
    return real().Sync(path);
  }
  Status Shred(const std::string& path) override {
    if (!power_->Step()) return Unavailable("power cut shredding " + path);
    return real().Shred(path);
  }

 private:
  static KeyringFiles& real() { return PosixKeyringFiles(); }

  const std::shared_ptr<phivault::testing::PowerSwitch> power_;
  std::mutex mu_;
  std::map<std::string, std::vector<std::pair<uint64_t, std::string>>> pending_;  // GUARDED_BY
};

}  // namespace phivault::crypto::testing
