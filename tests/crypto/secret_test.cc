#include "crypto/secret.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "crypto/secret_testing.h"
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

TEST(SecretPoolTest, KeysUpTo64BytesComeFromSlotClasses) {
  EXPECT_EQ(SecretSlotClassForTesting(0), 0u);
  EXPECT_EQ(SecretSlotClassForTesting(1), 32u);
  EXPECT_EQ(SecretSlotClassForTesting(32), 32u);
  EXPECT_EQ(SecretSlotClassForTesting(33), 64u);
  EXPECT_EQ(SecretSlotClassForTesting(64), 64u);
  EXPECT_EQ(SecretSlotClassForTesting(65), 0u);
}

TEST(SecretPoolTest, ReleasedSlotIsWiped) {
  for (size_t size : {size_t{1}, size_t{20}, size_t{32}, size_t{33}, size_t{64}}) {
    SCOPED_TRACE(size);
    const uint8_t* slot = nullptr;
    {
      const SecretBytes key = SecretBytes::Random(size);
      slot = key.data(InsecureSecretKeyAccess::Get());
      EXPECT_EQ(InspectSecretSlotForTesting(slot), SecretSlotState::kInUse);
    }
    EXPECT_EQ(InspectSecretSlotForTesting(slot), SecretSlotState::kFreeAndWiped);
  }
}

TEST(SecretPoolTest, MoveAssignmentWipesTheOverwrittenKey) {
  SecretBytes a = SecretBytes::Random(32);
  SecretBytes b = SecretBytes::Random(32);
  const uint8_t* old_b = b.data(InsecureSecretKeyAccess::Get());
  b = std::move(a);
  EXPECT_EQ(InspectSecretSlotForTesting(old_b), SecretSlotState::kFreeAndWiped);
  EXPECT_EQ(InspectSecretSlotForTesting(b.data(InsecureSecretKeyAccess::Get())),
            SecretSlotState::kInUse);
}

TEST(SecretPoolTest, ReleasedSlotIsReusedWithoutANewMapping) {
  const uint8_t* first = nullptr;
  {
    const SecretBytes key = testing::Secret(std::string(32, '\xa5'));
    first = key.data(InsecureSecretKeyAccess::Get());
  }
  const SecretBytes next = SecretBytes::Zeros(32);
  EXPECT_EQ(next.data(InsecureSecretKeyAccess::Get()), first);
  EXPECT_EQ(next.view(InsecureSecretKeyAccess::Get()), std::string(32, '\0'));
}

TEST(SecretPoolTest, LargerSecretsBypassThePool) {
  const SecretBytes big = SecretBytes::Random(65);
  const SecretBytes passphrase = testing::Secret(std::string(4096, 'p'));
  EXPECT_EQ(InspectSecretSlotForTesting(big.data(InsecureSecretKeyAccess::Get())),
            SecretSlotState::kNotInPool);
  EXPECT_EQ(InspectSecretSlotForTesting(passphrase.data(InsecureSecretKeyAccess::Get())),
            SecretSlotState::kNotInPool);
  EXPECT_EQ(passphrase.view(InsecureSecretKeyAccess::Get()), std::string(4096, 'p'));
}

TEST(SecretPoolTest, ManySlabsOfLiveKeysAreDistinct) {
  // Several slabs' worth of live keys: every one keeps its own bytes.
  std::vector<SecretBytes> keys;
  for (uint32_t i = 0; i < 3000; ++i) {
    std::string bytes(32, '\0');
    std::memcpy(bytes.data(), &i, sizeof i);
    keys.push_back(testing::Secret(bytes));
  }
  for (uint32_t i = 0; i < keys.size(); ++i) {
    uint32_t got = 0;
    std::memcpy(&got, keys[i].data(InsecureSecretKeyAccess::Get()), sizeof got);
    ASSERT_EQ(got, i);
  }
}

// Threads allocate, fill, check and release keys of both classes and of the fallback size at
// once; a slot handed to two owners, or handed out before its wipe, shows as a wrong byte.
TEST(SecretPoolTest, ConcurrentAllocateAndRelease) {
  constexpr int kThreads = 16;
  constexpr int kRounds = 2000;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &failures] {
      const auto fill = static_cast<char>(t + 1);
      std::vector<SecretBytes> held;
      for (int round = 0; round < kRounds; ++round) {
        const size_t size = (round % 3 == 0) ? 32 : (round % 3 == 1) ? 64 : 100;
        SecretBytes zeros = SecretBytes::Zeros(size);
        if (zeros.view(InsecureSecretKeyAccess::Get()) != std::string(size, '\0')) ++failures;
        std::memset(zeros.mutable_data(InsecureSecretKeyAccess::Get()), fill, size);
        held.push_back(std::move(zeros));
        if (held.size() == 8) {
          for (const SecretBytes& s : held) {
            if (s.view(InsecureSecretKeyAccess::Get()) != std::string(s.size(), fill)) ++failures;
          }
          held.clear();
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

#if defined(__SANITIZE_ADDRESS__)
#define PHIVAULT_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PHIVAULT_TEST_ASAN 1
#endif
#endif

#if defined(PHIVAULT_TEST_ASAN)
// Under ASan the pool poisons free slots and the unused tail of a live slot, so a use after
// free of a key, or reading past its end, is still reported.
uint8_t ReadAfterRelease() {
  const uint8_t* slot = nullptr;
  {
    const SecretBytes key = SecretBytes::Random(32);
    slot = key.data(InsecureSecretKeyAccess::Get());
  }
  return *static_cast<const volatile uint8_t*>(slot);
}

uint8_t ReadPastTheEnd() {
  const SecretBytes key = SecretBytes::Random(20);
  return *static_cast<const volatile uint8_t*>(key.data(InsecureSecretKeyAccess::Get()) + 20);
}

TEST(SecretPoolDeathTest, AsanReportsUseOfReleasedKey) {
  EXPECT_DEATH(ReadAfterRelease(), "use-after-poison");
  EXPECT_DEATH(ReadPastTheEnd(), "use-after-poison");
}
#endif

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
