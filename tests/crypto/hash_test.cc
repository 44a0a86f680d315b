#include "crypto/hash.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tests/crypto/test_util.h"

namespace phivault::crypto {
namespace {

using testing::Secret;

std::string HexOf(const Sha256Digest& d) { return HexEncode(AsView(d)); }

// FIPS 180-2, Appendix B.1 (one block "abc"), B.2 (two blocks) and B.3 (one million "a").
TEST(Sha256Test, MatchesFips180KnownAnswers) {
  EXPECT_EQ(HexOf(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexOf(Sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(HexOf(Sha256(std::string(1000000, 'a'))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, MultiPartEqualsOneShotAtEverySplit) {
  const std::string msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  const Sha256Digest whole = Sha256(msg);
  const std::string_view v = msg;
  for (size_t i = 0; i <= msg.size(); ++i) {
    EXPECT_EQ(Sha256({v.substr(0, i), v.substr(i)}), whole) << i;
  }
  EXPECT_EQ(Sha256({"a", "b", "", "c"}), Sha256("abc"));
  EXPECT_NE(Sha256({"ab", "d"}), Sha256("abc"));
}

std::unique_ptr<BlindIndex> MakeIndex(std::string_view key) {
  auto index = BlindIndex::Create(Secret(key));
  EXPECT_TRUE(index.ok());
  return std::move(index).value();
}

TEST(BlindIndexTest, DeterministicForSameKeyDomainAndValue) {
  const std::string key(32, '\x07');
  const std::string a = MakeIndex(key)->Compute("patient", "MRN-000123");
  const std::string b = MakeIndex(key)->Compute("patient", "MRN-000123");
  EXPECT_EQ(a.size(), BlindIndex::kOutputBytes);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.find("MRN-000123"), std::string::npos);
}

TEST(BlindIndexTest, DependsOnKeyDomainAndValue) {
  auto index = MakeIndex(std::string(32, '\x07'));
  const std::string base = index->Compute("patient", "MRN-000123");
  EXPECT_NE(MakeIndex(std::string(32, '\x08'))->Compute("patient", "MRN-000123"), base);
  EXPECT_NE(index->Compute("recipient", "MRN-000123"), base);
  EXPECT_NE(index->Compute("patient", "MRN-000124"), base);
  // The domain is length-prefixed: moving bytes across the boundary changes the result.
  EXPECT_NE(index->Compute("ab", "c"), index->Compute("a", "bc"));
  EXPECT_NE(index->Compute("", "abc"), index->Compute("abc", ""));
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(index->Compute("patient", std::to_string(i)));
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(BlindIndexTest, RejectsWrongKeyLength) {
  for (size_t n : {0, 16, 31, 33}) {
    auto index = BlindIndex::Create(SecretBytes::Random(n));
    ASSERT_FALSE(index.ok());
    EXPECT_EQ(index.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(index.status().message(), "blind index key must be 32 bytes");
  }
}

TEST(HexTest, RoundTripsEveryByte) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  const std::string hex = HexEncode(all);
  EXPECT_EQ(hex.substr(0, 8), "00010203");
  EXPECT_EQ(hex.substr(hex.size() - 4), "feff");
  auto back = HexDecode(hex);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, all);
  EXPECT_EQ(HexDecode("DEADbeef").value(), "\xde\xad\xbe\xef");
  EXPECT_EQ(HexDecode("").value(), "");
}

TEST(HexTest, RejectsMalformedInput) {
  for (std::string_view bad : {"a", "abc", "0g", "zz", "0x00", "00 ", " 00", "0-", "00\n"}) {
    auto r = HexDecode(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

// RFC 4648, section 10 test vectors.
TEST(Base64Test, MatchesRfc4648Vectors) {
  const std::vector<std::pair<std::string, std::string>> vectors = {{"", ""},
                                                                    {"f", "Zg=="},
                                                                    {"fo", "Zm8="},
                                                                    {"foo", "Zm9v"},
                                                                    {"foob", "Zm9vYg=="},
                                                                    {"fooba", "Zm9vYmE="},
                                                                    {"foobar", "Zm9vYmFy"}};
  for (const auto& [raw, b64] : vectors) {
    EXPECT_EQ(Base64Encode(raw), b64);
    auto back = Base64Decode(b64);
    ASSERT_TRUE(back.ok()) << b64;
    EXPECT_EQ(*back, raw);
  }
}

TEST(Base64Test, StandardDecodingIsStrict) {
  for (std::string_view bad : {"Zg", "Zg=", "Zg===", "Zh==", "Zm9", "Zm9v\n", "Zm 9v", "Zm9v!",
                               "Zm-v", "Zm_v", "=Zm9", "Zm9v===="}) {
    auto r = Base64Decode(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(Base64UrlTest, RoundTripsWithoutPadding) {
  const std::string raw = "\xfb\xff\xfe";
  EXPECT_EQ(Base64Encode(raw), "+//+");
  EXPECT_EQ(Base64UrlEncode(raw), "-__-");
  EXPECT_EQ(Base64UrlEncode("f"), "Zg");
  EXPECT_EQ(Base64UrlDecode("-__-").value(), raw);
  EXPECT_EQ(Base64UrlDecode("Zg").value(), "f");
  const std::string random = RandomBytes(100);
  EXPECT_EQ(Base64UrlDecode(Base64UrlEncode(random)).value(), random);
  for (std::string_view bad : {"Zg==", "+//+", "Zh", "Z", "Zm9v\n"}) {
    EXPECT_EQ(Base64UrlDecode(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(RandomBytesTest, ReturnsRequestedLengthFreshEachTime) {
  EXPECT_EQ(RandomBytes(0).size(), 0u);
  const std::string a = RandomBytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, RandomBytes(32));
}

}  // namespace
}  // namespace phivault::crypto
