// An in-memory storage::Store for tests of code written against the Store interface: ordered
// maps per column family, all-or-nothing batches, an injectable write failure and read counts.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "storage/store.h"

namespace phivault::storage::testing {

class MemoryStore : public Store {
 public:
  StatusOr<std::optional<std::string>> Get(Cf cf, std::string_view key) override {
    std::lock_guard lock(mu_);
    ++gets_;
    const auto& map = maps_[static_cast<size_t>(cf)];
    auto it = map.find(std::string(key));
    if (it == map.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }

  Status Write(const WriteBatch& batch, bool) override {
    std::lock_guard lock(mu_);
    if (fail_writes_) return Unavailable("injected write failure");
    for (const WriteBatch::Op& op : batch.ops()) {
      auto& map = maps_[static_cast<size_t>(op.cf)];
      switch (op.kind) {
        case WriteBatch::Kind::kPut:
          map[op.key] = op.value;
          break;
        case WriteBatch::Kind::kDelete:
          map.erase(op.key);
          break;
        case WriteBatch::Kind::kDeleteRange:
          if (op.key < op.value) map.erase(map.lower_bound(op.key), map.lower_bound(op.value));
          break;
      }
    }
    return Status::Ok();
  }

  Status Scan(Cf cf, std::string_view begin, std::string_view end, const ScanFn& fn) override {
    std::lock_guard lock(mu_);
    const auto& map = maps_[static_cast<size_t>(cf)];
    for (auto it = map.lower_bound(std::string(begin)); it != map.end(); ++it) {
      if (!end.empty() && it->first >= end) break;
      if (!fn(it->first, it->second)) break;
    }
    return Status::Ok();
  }

  Status ScanReverse(Cf cf, std::string_view begin, std::string_view end,
                     const ScanFn& fn) override {
    std::lock_guard lock(mu_);
    const auto& map = maps_[static_cast<size_t>(cf)];
    auto it = end.empty() ? map.end() : map.lower_bound(std::string(end));
    while (it != map.begin()) {
      --it;
      if (it->first < begin) break;
      if (!fn(it->first, it->second)) break;
    }
    return Status::Ok();
  }

  Status Flush() override { return Status::Ok(); }
  Status CompactAll() override { return Status::Ok(); }
  StatusOr<SpaceInfo> Space() override { return SpaceInfo{}; }

  // Every later Write fails with Unavailable and changes nothing, until cleared.
  void set_fail_writes(bool fail) {
    std::lock_guard lock(mu_);
    fail_writes_ = fail;
  }
  // Number of Get calls so far.
  uint64_t gets() const { return gets_; }
  // Number of keys in `cf`.
  size_t count(Cf cf) const {
    std::lock_guard lock(mu_);
    return maps_[static_cast<size_t>(cf)].size();
  }
  // Overwrites one stored value directly (to simulate corruption).
  void Corrupt(Cf cf, const std::string& key, std::string value) {
    std::lock_guard lock(mu_);
    maps_[static_cast<size_t>(cf)][key] = std::move(value);
  }

 private:
  mutable std::mutex mu_;
  std::array<std::map<std::string, std::string>, kNumCfs> maps_;
  bool fail_writes_ = false;
  std::atomic<uint64_t> gets_{0};
};

}  // namespace phivault::storage::testing
