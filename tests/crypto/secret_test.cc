#include "crypto/secret.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cstdlib>
#include <vector>

#include "tests/crypto/test_util.h"

namespace phivault::crypto {
namespace {

TEST(SecretBytesTest, RandomIsFreshEachTime) {
  const SecretBytes a = SecretBytes::Random(32);
  const SecretBytes b = SecretBytes::Random(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_FALSE(ConstantTimeEquals(a.view(InsecureSecretKeyAccess::Get()),
                                  b.view(InsecureSecretKeyAccess::Get())));
}

TEST(SecretBytesTest, CopyFromAndZeros) {
  const SecretBytes s = testing::Secret("0123456789abcdef");
  EXPECT_EQ(s.view(InsecureSecretKeyAccess::Get()), "0123456789abcdef");
  const SecretBytes z = SecretBytes::Zeros(4);
  EXPECT_EQ(z.view(InsecureSecretKeyAccess::Get()), std::string(4, '\0'));
  EXPECT_TRUE(SecretBytes().empty());
}

TEST(SecretBytesTest, MoveLeavesSourceEmpty) {
  SecretBytes a = testing::Secret("key material");
  SecretBytes b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): documented contract
  EXPECT_EQ(b.view(InsecureSecretKeyAccess::Get()), "key material");
  SecretBytes c = testing::Secret("other");
  c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move): documented contract
  EXPECT_EQ(c.view(InsecureSecretKeyAccess::Get()), "key material");
}

// Beyond RLIMIT_MEMLOCK the memory cannot be locked; allocation must still succeed.
void AllocateWithoutMemlockAndExit() {
  const struct rlimit none = {0, 0};
  ::setrlimit(RLIMIT_MEMLOCK, &none);
  std::vector<SecretBytes> keys;
  for (int i = 0; i < 64; ++i) keys.push_back(SecretBytes::Random(32));
  std::exit(keys.back().size() == 32 ? 0 : 1);
}

TEST(SecretBytesTest, AllocationSurvivesZeroMemlockLimit) {
  EXPECT_EXIT(AllocateWithoutMemlockAndExit(), ::testing::ExitedWithCode(0), "");
}

TEST(ConstantTimeEqualsTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
}

void HardenAndExit() {
  if (!InitAndHardenProcess().ok()) std::exit(1);
  struct rlimit core;
  ::getrlimit(RLIMIT_CORE, &core);
  const bool hardened =
      ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 && core.rlim_cur == 0 && core.rlim_max == 0;
  std::exit(hardened ? 0 : 2);
}

TEST(InitAndHardenProcessTest, MakesProcessUndumpableWithoutCoreFiles) {
  // Runs in a child so that the test runner itself stays debuggable.
  EXPECT_EXIT(HardenAndExit(), ::testing::ExitedWithCode(0), "");
  EXPECT_TRUE(InitSodium().ok());
}

}  // namespace
}  // namespace phivault::crypto
