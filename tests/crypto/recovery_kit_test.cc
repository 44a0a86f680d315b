// The recovery kit: any threshold of shares restores the master key (and a vault keyring opens
// with it), fewer do not, and a mistyped share is caught and named.
#include "crypto/recovery_kit.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <algorithm>
#include <string>
#include <vector>

#include "crypto/keyring.h"
#include "tests/crypto/test_util.h"

namespace phivault::crypto {
namespace {

using testing::Secret;
using testing::TempDir;

const InsecureSecretKeyAccess kAccess = InsecureSecretKeyAccess::Get();

std::string Text(const SecretBytes& s) { return std::string(s.view(kAccess)); }

std::vector<SecretBytes> Pick(const std::vector<SecretBytes>& kit, std::vector<int> numbers) {
  std::vector<SecretBytes> out;
  for (int n : numbers) out.push_back(Secret(kit[static_cast<size_t>(n - 1)].view(kAccess)));
  return out;
}

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

// Re-encodes 52 payload bytes the way crypto/recovery_kit.h describes, checksum recomputed:
// a share that is well-formed but carries other bytes than the kit gave out.
std::string Encode(const std::string& payload) {
  std::string out = "PVRK";
  uint32_t buffer = 0;
  int bits = 0;
  std::string chars;
  for (unsigned char c : payload) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 5) {
      chars.push_back(kAlphabet[(buffer >> (bits - 5)) & 31]);
      bits -= 5;
    }
  }
  if (bits > 0) chars.push_back(kAlphabet[(buffer << (5 - bits)) & 31]);
  for (size_t i = 0; i < chars.size(); i += 4) out += "-" + chars.substr(i, 4);
  return out;
}
std::string Decode(std::string text) {
  text.erase(std::remove(text.begin(), text.end(), '-'), text.end());
  text = text.substr(4);
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    buffer = (buffer << 5) | static_cast<uint32_t>(kAlphabet.find(c));
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<char>((buffer >> (bits - 8)) & 0xff));
      bits -= 8;
    }
  }
  return out;
}
std::string WithChecksum(std::string payload) {
  unsigned char h[32];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(payload.data()), 48,
                     nullptr, 0);
  payload.replace(48, 4, reinterpret_cast<const char*>(h), 4);
  return payload;
}

class RecoveryKitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitSodium().ok());
    auto kit = CreateRecoveryKit(Secret(master_), 5, 3);
    ASSERT_TRUE(kit.ok()) << kit.status().ToString();
    kit_ = std::move(*kit);
    ASSERT_EQ(kit_.size(), 5u);
  }
  const std::string master_ = RandomBytes(32);
  std::vector<SecretBytes> kit_;
};

TEST_F(RecoveryKitTest, SharesAreTypeableTextWithTheirNumberAndThreshold) {
  for (size_t i = 0; i < kit_.size(); ++i) {
    const std::string text = Text(kit_[i]);
    EXPECT_EQ(text.substr(0, 5), "PVRK-");
    EXPECT_EQ(text.size(), 4u + 21u * 5u);
    EXPECT_TRUE(std::all_of(text.begin() + 4, text.end(), [](char c) {
      return c == '-' || (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
    })) << text;
    auto info = InspectRecoveryShare(kit_[i], 1);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->number, static_cast<int>(i + 1));
    EXPECT_EQ(info->count, 5);
    EXPECT_EQ(info->threshold, 3);
    EXPECT_EQ(info->kit_id.size(), 8u);
    EXPECT_EQ(info->kit_id, InspectRecoveryShare(kit_[0], 1)->kit_id);
  }
  // The key itself appears in no share.
  for (const auto& s : kit_) {
    EXPECT_EQ(Decode(Text(s)).find(master_.substr(0, 8)), std::string::npos);
  }
}

TEST_F(RecoveryKitTest, AnyThreeOfFiveRestoreTheKey) {
  for (const std::vector<int>& pick : std::vector<std::vector<int>>{
           {1, 2, 3}, {3, 4, 5}, {5, 1, 3}, {2, 4, 5}, {1, 2, 3, 4, 5}, {4, 2, 1, 5}}) {
    auto key = CombineRecoveryShares(Pick(kit_, pick));
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    EXPECT_EQ(key->view(kAccess), master_);
  }
}

TEST_F(RecoveryKitTest, TwoSharesDoNotRestoreTheKeyAndSaySo) {
  auto key = CombineRecoveryShares(Pick(kit_, {2, 5}));
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(key.status().message(), "3 shares are needed to restore the key, 2 given");
}

TEST_F(RecoveryKitTest, InputIsForgivingAboutCaseSpacesAndDashes) {
  std::string text = Text(kit_[1]);
  std::transform(text.begin(), text.end(), text.begin(), [](char c) {
    return static_cast<char>(c == '-' ? ' ' : std::tolower(static_cast<unsigned char>(c)));
  });
  std::vector<SecretBytes> shares = Pick(kit_, {1, 3});
  shares.push_back(Secret("  " + text + "\n"));
  auto key = CombineRecoveryShares(shares);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->view(kAccess), master_);
}

TEST_F(RecoveryKitTest, AMistypedShareIsNamed) {
  std::string typo = Text(kit_[3]);
  const size_t at = 30;
  typo[at] = typo[at] == 'A' ? 'B' : 'A';
  std::vector<SecretBytes> shares = Pick(kit_, {1, 2});
  shares.push_back(Secret(typo));
  auto key = CombineRecoveryShares(shares);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(key.status().message().find("share 3: checksum mismatch"), std::string::npos)
      << key.status().message();

  // Two characters swapped, a character outside the alphabet, a missing group.
  std::string swapped = Text(kit_[3]);
  std::swap(swapped[12], swapped[13]);
  if (swapped != Text(kit_[3])) {
    EXPECT_NE(InspectRecoveryShare(Secret(swapped), 4).status().message().find("share 4: checksum"),
              std::string::npos);
  }
  std::string digit = Text(kit_[0]);
  digit[6] = '0';
  auto bad = InspectRecoveryShare(Secret(digit), 2);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("share 2: '0' in group 1 is not in the share alphabet"),
            std::string::npos)
      << bad.status().message();
  EXPECT_NE(bad.status().message().find("letter O"), std::string::npos);
  const std::string short_text = Text(kit_[0]).substr(0, Text(kit_[0]).size() - 5);
  EXPECT_NE(InspectRecoveryShare(Secret(short_text), 1).status().message().find("80 characters"),
            std::string::npos);
  EXPECT_NE(InspectRecoveryShare(Secret("hello"), 7).status().message().find("share 7: not a"),
            std::string::npos);
}

TEST_F(RecoveryKitTest, SharesOfAnotherKitOrRepeatedSharesAreNamed) {
  auto other = CreateRecoveryKit(Secret(master_), 5, 3);
  ASSERT_TRUE(other.ok());
  std::vector<SecretBytes> mixed = Pick(kit_, {1, 2});
  mixed.push_back(Secret((*other)[2].view(kAccess)));
  auto key = CombineRecoveryShares(mixed);
  EXPECT_EQ(key.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(key.status().message().find("share 3 is from another recovery kit"), std::string::npos)
      << key.status().message();

  auto repeated = CombineRecoveryShares(Pick(kit_, {1, 2, 2}));
  EXPECT_EQ(repeated.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(repeated.status().message().find("share 2 and share 3 are both share number 2"),
            std::string::npos)
      << repeated.status().message();
}

// A share whose bytes were changed consistently (checksum recomputed — a forged or confused
// share): interpolation yields a wrong key, and the key check value refuses it.
TEST_F(RecoveryKitTest, WrongSharesThatInterpolateToGarbageAreRefusedByTheKeyCheckValue) {
  std::string payload = Decode(Text(kit_[2]));
  ASSERT_EQ(payload.size(), 52u);
  payload[8 + 5] = static_cast<char>(payload[8 + 5] ^ 0x01);  // one bit of the share itself
  std::vector<SecretBytes> shares = Pick(kit_, {1, 2});
  shares.push_back(Secret(Encode(WithChecksum(payload))));
  ASSERT_TRUE(InspectRecoveryShare(shares[2], 3).ok());
  auto key = CombineRecoveryShares(shares);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(key.status().message().find("key check value mismatch"), std::string::npos);

  // The same share claiming a lower threshold does not slip through with fewer shares either:
  // the kits no longer agree.
  std::string lowered = Decode(Text(kit_[2]));
  lowered[5] = 2;
  std::vector<SecretBytes> two = Pick(kit_, {1});
  two.push_back(Secret(Encode(WithChecksum(lowered))));
  EXPECT_EQ(CombineRecoveryShares(two).status().code(), StatusCode::kInvalidArgument);
  // Alone with a claimed threshold of 2 and another forged share, the key check value decides.
  std::string other = Decode(Text(kit_[0]));
  other[5] = 2;
  std::vector<SecretBytes> forged;
  forged.push_back(Secret(Encode(WithChecksum(other))));
  forged.push_back(Secret(Encode(WithChecksum(lowered))));
  auto garbage = CombineRecoveryShares(forged);
  EXPECT_EQ(garbage.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(garbage.status().message().find("key check value mismatch"), std::string::npos);
}

TEST_F(RecoveryKitTest, BadParametersAreRefused) {
  EXPECT_EQ(CreateRecoveryKit(Secret(master_), 5, 1).status().message(),
            "threshold must be at least 2");
  EXPECT_EQ(CreateRecoveryKit(Secret(master_), 3, 4).status().message(),
            "threshold must not exceed the number of shares");
  EXPECT_EQ(CreateRecoveryKit(Secret(master_), 256, 3).status().message(), "at most 255 shares");
  EXPECT_EQ(CreateRecoveryKit(Secret(master_.substr(1)), 5, 3).status().message(),
            "master key must be 32 bytes");
  EXPECT_EQ(CombineRecoveryShares({}).status().code(), StatusCode::kFailedPrecondition);
  auto big = CreateRecoveryKit(Secret(master_), 255, 254);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(InspectRecoveryShare((*big)[254], 1)->number, 255);
}

// The restored key opens the vault's keyring; a fresh kit of another key does not.
TEST_F(RecoveryKitTest, TheRestoredKeyOpensTheKeyring) {
  TempDir dir;
  const std::string path = dir.Sub("keyring");
  std::string sealed;
  {
    auto keyring = Keyring::Create({path, {}}, Secret(master_));
    ASSERT_TRUE(keyring.ok());
    sealed = (*keyring)->GetOrCreateEpoch("d20300101").value()->Encrypt("dek", "aad");
  }
  auto key = CombineRecoveryShares(Pick(kit_, {2, 3, 5}));
  ASSERT_TRUE(key.ok());
  auto keyring = Keyring::Open({path, {}}, std::move(*key));
  ASSERT_TRUE(keyring.ok()) << keyring.status().ToString();
  EXPECT_EQ((*keyring)->GetEpoch("d20300101").value()->Decrypt(sealed, "aad").value(), "dek");
}

}  // namespace
}  // namespace phivault::crypto
