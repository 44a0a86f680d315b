// The power supply of a simulated machine, shared by every fault layer of one test vault (the
// RocksDB file system of tests/storage/power_cut_fs.h and the keyring files of
// tests/crypto/power_cut_keyring_files.h): once it is off, no layer changes anything on "disk".
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>

namespace phivault::testing {

class PowerSwitch {
 public:
  // Cuts the power at the `n`th change (write, sync, create, rename, ...) counted from now over
  // every layer: that change and every later one fail without effect.
  void CutAfter(uint64_t n) { remaining_.store(n); }
  void Cut() { off_.store(true); }
  bool off() const { return off_.load(); }
  // Power back on, no cut scheduled (after the layers have dropped what the cut lost).
  void Restore() {
    remaining_.store(kNever);
    off_.store(false);
  }

  // Called by a layer before each change: false if the power is off (then or already).
  bool Step() {
    if (off_.load()) return false;
    uint64_t left = remaining_.load();
    while (left != kNever) {
      if (left == 0) {
        off_.store(true);
        return false;
      }
      if (remaining_.compare_exchange_weak(left, left - 1)) break;
    }
    changes_.fetch_add(1);
    return true;
  }
  // Changes that went through while the power was on.
  uint64_t changes() const { return changes_.load(); }

 private:
  static constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
  std::atomic<bool> off_{false};
  std::atomic<uint64_t> remaining_{kNever};
  std::atomic<uint64_t> changes_{0};
};

}  // namespace phivault::testing
