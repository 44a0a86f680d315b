// A Store wrapper for fault injection: forwards to a real store, and fails writes on demand the
// way a full or broken disk would (the wrapped store is not touched by a failed write).
#pragma once

#include <atomic>
#include <mutex>
#include <optional>

#include "storage/store.h"

namespace phivault::storage::testing {

class FaultStore final : public Store {
 public:
  explicit FaultStore(Store& base) : base_(base) {}

  // The next `count` writes fail with `error` without reaching the wrapped store.
  void FailNextWrites(int count, Status error) {
    std::lock_guard<std::mutex> lock(mu_);
    failures_left_ = count;
    error_ = std::move(error);
  }
  // Writes that reached the wrapped store, successful or not.
  int writes() const { return writes_.load(); }

  StatusOr<std::optional<std::string>> Get(Cf cf, std::string_view key) override {
    return base_.Get(cf, key);
  }
  Status Write(const WriteBatch& batch, bool sync) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (failures_left_ > 0) {
        --failures_left_;
        return error_;
      }
    }
    ++writes_;
    return base_.Write(batch, sync);
  }
  Status Scan(Cf cf, std::string_view begin, std::string_view end, const ScanFn& fn) override {
    return base_.Scan(cf, begin, end, fn);
  }
  Status ScanReverse(Cf cf, std::string_view begin, std::string_view end,
                     const ScanFn& fn) override {
    return base_.ScanReverse(cf, begin, end, fn);
  }
  Status Flush() override { return base_.Flush(); }
  Status CompactAll() override { return base_.CompactAll(); }
  Status SetAutoCompactions(bool enabled) override { return base_.SetAutoCompactions(enabled); }
  StatusOr<SpaceInfo> Space() override { return base_.Space(); }

 private:
  Store& base_;
  std::mutex mu_;
  int failures_left_ = 0;  // GUARDED_BY(mu_)
  Status error_;           // GUARDED_BY(mu_)
  std::atomic<int> writes_{0};
};

}  // namespace phivault::storage::testing
