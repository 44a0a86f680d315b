#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "daemon/retention_targets.h"

namespace phivault::daemon {
namespace {

// A sweep reads records without their locks after Watch(): a change that began before Watch()
// (and so named its patient to nobody) must be finished by then, or the sweep could decide from
// what that change is about to overwrite.
TEST(RetentionGateTest, WatchWaitsForSectionsThatBeganBeforeIt) {
  RetentionGate gate;
  std::optional<RetentionGate::Section> before(gate.Enter("patient-before"));
  std::atomic<bool> watching{false};
  std::thread sweep([&] {
    gate.Watch();
    watching = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(watching) << "Watch() returned while a section from before it was running";
  // A section that begins now is named to the watch and does not hold it up.
  { RetentionGate::Section during = gate.Enter("patient-during"); }
  before.reset();
  sweep.join();
  EXPECT_TRUE(watching);
  { RetentionGate::Section after = gate.Enter("patient-after"); }
  bool all = true;
  const auto touched = gate.TakeTouched(&all);
  EXPECT_FALSE(all);
  EXPECT_EQ(touched.count("patient-before"), 0u);
  EXPECT_EQ(touched.count("patient-after"), 1u);
  gate.Close();  // nothing running: returns
  gate.Open();
  gate.Unwatch();
}

TEST(RetentionGateTest, TouchAllIsRememberedOnlyWhileASweepWatches) {
  RetentionGate gate;
  gate.TouchAll();
  gate.Watch();
  bool all = true;
  EXPECT_TRUE(gate.TakeTouched(&all).empty());
  EXPECT_FALSE(all) << "a retention change before the watch must not stop the sweep";
  {
    RetentionGate::Section table_change = gate.Enter({});
    gate.TouchAll();
  }
  gate.TakeTouched(&all);
  EXPECT_TRUE(all);
  gate.Unwatch();
  gate.Watch();
  gate.TakeTouched(&all);
  EXPECT_FALSE(all);
  gate.Unwatch();
}

}  // namespace
}  // namespace phivault::daemon
