#include "crypto/aead.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/crypto/test_util.h"

namespace phivault::crypto {
namespace {

using testing::Secret;
using testing::Unhex;

// AEAD_XChaCha20_Poly1305 test vector from draft-irtf-cfrg-xchacha-03, Appendix A.3.1
// ("Developer-Friendly Test Vectors"),
// https://datatracker.ietf.org/doc/html/draft-irtf-cfrg-xchacha-03
struct XChaChaVector {
  std::string key = Unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
  std::string nonce = Unhex("404142434445464748494a4b4c4d4e4f5051525354555657");
  std::string aad = Unhex("50515253c0c1c2c3c4c5c6c7");
  std::string plaintext = Unhex(
      "4c616469657320616e642047656e746c656d656e206f662074686520636c6173"
      "73206f66202739393a204966204920636f756c64206f6666657220796f75206f"
      "6e6c79206f6e652074697020666f7220746865206675747572652c2073756e73"
      "637265656e20776f756c642062652069742e");
  std::string ciphertext = Unhex(
      "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
      "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
      "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
      "21f9664c97637da9768812f615c68b13b52e");
  std::string tag = Unhex("c0875924c1c7987947deafd8780acf49");
};

std::unique_ptr<Aead> MakeAead(std::string_view key) {
  auto aead = Aead::Create(Secret(key));
  EXPECT_TRUE(aead.ok()) << aead.status().ToString();
  return std::move(aead).value();
}

TEST(AeadTest, MatchesDraftXChaChaKnownAnswer) {
  const XChaChaVector v;
  auto aead = MakeAead(v.key);
  const std::string sealed =
      aead->EncryptWithNonceForTesting(v.nonce, v.plaintext, v.aad, InsecureSecretKeyAccess::Get());
  EXPECT_EQ(HexEncode(sealed), HexEncode(v.nonce + v.ciphertext + v.tag));
  auto opened = aead->Decrypt(v.nonce + v.ciphertext + v.tag, v.aad);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(*opened, v.plaintext);
}

TEST(AeadTest, EncryptRoundTripsWithFreshNonces) {
  auto aead = Aead::Generate();
  const std::string plaintext = "synthetic note: patient P-0001 reports mild headache";
  const std::string a = aead->Encrypt(plaintext, "record-1|v1");
  const std::string b = aead->Encrypt(plaintext, "record-1|v1");
  EXPECT_EQ(a.size(), plaintext.size() + Aead::kOverhead);
  EXPECT_NE(a.substr(0, Aead::kNonceBytes), b.substr(0, Aead::kNonceBytes));
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find(plaintext), std::string::npos);
  for (const std::string& sealed : {a, b}) {
    auto opened = aead->Decrypt(sealed, "record-1|v1");
    ASSERT_TRUE(opened.ok());
    EXPECT_EQ(*opened, plaintext);
  }
}

TEST(AeadTest, EmptyPlaintextAndAssociatedDataRoundTrip) {
  auto aead = Aead::Generate();
  const std::string sealed = aead->Encrypt("", "");
  EXPECT_EQ(sealed.size(), Aead::kOverhead);
  auto opened = aead->Decrypt(sealed, "");
  ASSERT_TRUE(opened.ok());
  EXPECT_TRUE(opened->empty());
  EXPECT_EQ(aead->Decrypt(sealed, "x").status().code(), StatusCode::kDataLoss);
}

TEST(AeadTest, EveryBitFlipOfCiphertextIsRejected) {
  const XChaChaVector v;
  auto aead = MakeAead(v.key);
  const std::string sealed = v.nonce + v.ciphertext + v.tag;
  for (size_t i = 0; i < sealed.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string tampered = sealed;
      tampered[i] = static_cast<char>(tampered[i] ^ (1 << bit));
      auto opened = aead->Decrypt(tampered, v.aad);
      ASSERT_FALSE(opened.ok()) << "byte " << i << " bit " << bit;
      EXPECT_EQ(opened.status().code(), StatusCode::kDataLoss);
      EXPECT_EQ(opened.status().message(), "ciphertext failed authentication");
    }
  }
}

TEST(AeadTest, EveryBitFlipOfAssociatedDataIsRejected) {
  const XChaChaVector v;
  auto aead = MakeAead(v.key);
  const std::string sealed = v.nonce + v.ciphertext + v.tag;
  for (size_t i = 0; i < v.aad.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string aad = v.aad;
      aad[i] = static_cast<char>(aad[i] ^ (1 << bit));
      EXPECT_EQ(aead->Decrypt(sealed, aad).status().code(), StatusCode::kDataLoss);
    }
  }
  EXPECT_EQ(aead->Decrypt(sealed, v.aad + "x").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(aead->Decrypt(sealed, v.aad.substr(1)).status().code(), StatusCode::kDataLoss);
}

TEST(AeadTest, WrongKeyIsRejected) {
  const XChaChaVector v;
  std::string other_key = v.key;
  other_key[31] = static_cast<char>(other_key[31] ^ 1);
  auto aead = MakeAead(other_key);
  EXPECT_EQ(aead->Decrypt(v.nonce + v.ciphertext + v.tag, v.aad).status().code(),
            StatusCode::kDataLoss);
}

TEST(AeadTest, MalformedLengthsAreRejected) {
  const XChaChaVector v;
  auto aead = MakeAead(v.key);
  const std::string sealed = v.nonce + v.ciphertext + v.tag;
  for (size_t n = 0; n < sealed.size(); ++n) {
    auto opened = aead->Decrypt(sealed.substr(0, n), v.aad);
    ASSERT_FALSE(opened.ok()) << n;
    EXPECT_EQ(opened.status().code(),
              n < Aead::kOverhead ? StatusCode::kInvalidArgument : StatusCode::kDataLoss)
        << n;
  }
  EXPECT_EQ(aead->Decrypt(sealed + '\0', v.aad).status().code(), StatusCode::kDataLoss);
}

TEST(AeadTest, CreateRejectsWrongKeyLengths) {
  for (size_t n : {0, 1, 16, 31, 33, 64}) {
    auto aead = Aead::Create(SecretBytes::Random(n));
    ASSERT_FALSE(aead.ok()) << n;
    EXPECT_EQ(aead.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(aead.status().message(), "key length must be 32 bytes");
  }
}

TEST(AeadTest, WrapKeyRoundTrips) {
  auto kek = Aead::Generate();
  const SecretBytes dek = SecretBytes::Random(32);
  const std::string wrapped = WrapKey(*kek, dek, "rec-1|1|d20300101");
  EXPECT_EQ(wrapped.size(), 32 + Aead::kOverhead);
  EXPECT_EQ(wrapped.find(dek.view(InsecureSecretKeyAccess::Get())), std::string::npos);
  auto unwrapped = UnwrapKey(*kek, wrapped, "rec-1|1|d20300101");
  ASSERT_TRUE(unwrapped.ok());
  EXPECT_TRUE(ConstantTimeEquals(unwrapped->view(InsecureSecretKeyAccess::Get()),
                                 dek.view(InsecureSecretKeyAccess::Get())));
}

TEST(AeadTest, EveryBitFlipOfWrappedKeyIsRejected) {
  auto kek = Aead::Generate();
  const std::string wrapped = WrapKey(*kek, SecretBytes::Random(32), "rec-1|1|d20300101");
  for (size_t i = 0; i < wrapped.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string tampered = wrapped;
      tampered[i] = static_cast<char>(tampered[i] ^ (1 << bit));
      EXPECT_EQ(UnwrapKey(*kek, tampered, "rec-1|1|d20300101").status().code(),
                StatusCode::kDataLoss)
          << "byte " << i << " bit " << bit;
    }
  }
  EXPECT_EQ(UnwrapKey(*kek, wrapped, "rec-1|2|d20300101").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(UnwrapKey(*Aead::Generate(), wrapped, "rec-1|1|d20300101").status().code(),
            StatusCode::kDataLoss);
}

TEST(AeadTest, UnwrapKeyRejectsMalformedLengths) {
  auto kek = Aead::Generate();
  const std::string wrapped = WrapKey(*kek, SecretBytes::Random(32), "aad");
  for (size_t n = 0; n < wrapped.size(); ++n) {
    EXPECT_EQ(UnwrapKey(*kek, wrapped.substr(0, n), "aad").status().code(),
              n <= Aead::kOverhead ? StatusCode::kInvalidArgument : StatusCode::kDataLoss)
        << n;
  }
}

}  // namespace
}  // namespace phivault::crypto
