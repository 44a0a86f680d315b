// Helpers shared by the policies tests.
#pragma once

#include <cstdint>
#include <string_view>

#include <gtest/gtest.h>

#include "policies/time_format.h"

namespace phivault::policies::testing {

// Parses a timestamp literal written in a test; a typo fails the test loudly.
inline int64_t T(std::string_view text) {
  StatusOr<int64_t> t = ParseUtcTimestamp(text);
  EXPECT_TRUE(t.ok()) << text << ": " << t.status().ToString();
  return t.ok() ? *t : 0;
}

inline constexpr int64_t kDay = kMicrosPerDay;

}  // namespace phivault::policies::testing
