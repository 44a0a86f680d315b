#include "crypto/signing.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "crypto/hash.h"
#include "tests/crypto/test_util.h"

namespace phivault::crypto {
namespace {

using testing::Secret;
using testing::Unhex;

std::unique_ptr<Ed25519Signer> MakeSigner(std::string_view seed) {
  auto signer = Ed25519Signer::Create(Secret(seed));
  EXPECT_TRUE(signer.ok()) << signer.status().ToString();
  return std::move(signer).value();
}

// RFC 8032, section 7.1, TEST 1 (empty message).
TEST(Ed25519Test, MatchesRfc8032Test1) {
  auto signer =
      MakeSigner(Unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
  EXPECT_EQ(HexEncode(signer->public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const std::string sig = signer->Sign("");
  EXPECT_EQ(HexEncode(sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
            "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
  EXPECT_TRUE(Ed25519Verify(signer->public_key(), "", sig));
  EXPECT_FALSE(Ed25519Verify(signer->public_key(), "x", sig));
  for (size_t i = 0; i < sig.size(); ++i) {
    std::string bad = sig;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    EXPECT_FALSE(Ed25519Verify(signer->public_key(), "", bad)) << i;
  }
  EXPECT_FALSE(Ed25519Verify(signer->public_key(), "", sig.substr(1)));
  EXPECT_FALSE(Ed25519Verify(signer->public_key().substr(1), "", sig));
  EXPECT_FALSE(Ed25519Verify(MakeSigner(std::string(32, '\1'))->public_key(), "", sig));
}

TEST(Ed25519Test, RejectsWrongSeedLength) {
  for (size_t n : {0, 31, 33, 64}) {
    auto signer = Ed25519Signer::Create(SecretBytes::Random(n));
    ASSERT_FALSE(signer.ok());
    EXPECT_EQ(signer.status().message(), "ed25519 seed must be 32 bytes");
  }
}

// Test vectors from golang.org/x/mod/sumdb/note, note_test.go (TestNewVerifier, TestSign,
// TestOpen): https://github.com/golang/mod/blob/master/sumdb/note/note_test.go
constexpr std::string_view kPeterSignerKey =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
constexpr std::string_view kPeterVerifierKey =
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
constexpr std::string_view kEnochVerifierKey =
    "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
constexpr std::string_view kNoteText =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n";
constexpr std::string_view kPeterSig =
    "\xe2\x80\x94 PeterNeumann "
    "x08go/ZJkuBS9UG/"
    "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
constexpr std::string_view kEnochSig =
    "\xe2\x80\x94 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/"
    "5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

// The Go signer key is "PRIVATE+KEY+<name>+<id>+base64(0x01 || seed)".
std::unique_ptr<Ed25519Signer> PeterSigner() {
  constexpr std::string_view kPrefix = "PRIVATE+KEY+PeterNeumann+c74f20a3+";
  auto raw = Base64Decode(kPeterSignerKey.substr(kPrefix.size()));
  // A typo in the vector itself, not a failure of the code under test.
  if (kPeterSignerKey.substr(0, kPrefix.size()) != kPrefix || !raw.ok() || raw->size() != 33 ||
      (*raw)[0] != '\x01') {
    std::abort();
  }
  return MakeSigner(raw->substr(1));
}

NoteVerifier Verifier(std::string_view vkey) {
  auto v = ParseNoteVerifierKey(vkey);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return *v;
}

TEST(SignedNoteTest, KeyIdAndVerifierKeyMatchGoVectors) {
  auto signer = PeterSigner();
  EXPECT_EQ(HexEncode(NoteKeyId("PeterNeumann", signer->public_key())), "c74f20a3");
  EXPECT_EQ(NoteVerifierKey("PeterNeumann", signer->public_key()), kPeterVerifierKey);
  const NoteVerifier v = Verifier(kPeterVerifierKey);
  EXPECT_EQ(v.name, "PeterNeumann");
  EXPECT_EQ(v.public_key, signer->public_key());
  EXPECT_EQ(Verifier(kEnochVerifierKey).name, "EnochRoot");
}

TEST(SignedNoteTest, SignMatchesGoVector) {
  auto note = SignNote(kNoteText, "PeterNeumann", *PeterSigner());
  ASSERT_TRUE(note.ok()) << note.status().ToString();
  EXPECT_EQ(*note, std::string(kNoteText) + "\n" + std::string(kPeterSig));
}

TEST(SignedNoteTest, VerifiesGoNotesAndIgnoresOtherSigners) {
  const std::string note =
      std::string(kNoteText) + "\n" + std::string(kPeterSig) + std::string(kEnochSig);
  auto by_peter = VerifyNote(note, Verifier(kPeterVerifierKey));
  ASSERT_TRUE(by_peter.ok()) << by_peter.status().ToString();
  EXPECT_EQ(*by_peter, kNoteText);
  auto by_enoch = VerifyNote(note, Verifier(kEnochVerifierKey));
  ASSERT_TRUE(by_enoch.ok()) << by_enoch.status().ToString();
  EXPECT_EQ(*by_enoch, kNoteText);

  const std::string peter_only = std::string(kNoteText) + "\n" + std::string(kPeterSig);
  auto missing = VerifyNote(peter_only, Verifier(kEnochVerifierKey));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "no signature by EnochRoot");
}

TEST(SignedNoteTest, RejectsTamperedNotes) {
  const NoteVerifier peter = Verifier(kPeterVerifierKey);
  const std::string note = std::string(kNoteText) + "\n" + std::string(kPeterSig);
  // Every single-character change to the text breaks the signature.
  for (size_t i = 0; i + 1 < kNoteText.size(); ++i) {
    std::string tampered = note;
    tampered[i] = tampered[i] == 'x' ? 'y' : 'x';
    EXPECT_EQ(VerifyNote(tampered, peter).status().code(), StatusCode::kDataLoss) << i;
  }
  // As in TestOpen: "ABCD" spliced into the base64 keeps it decodable but breaks the signature.
  const std::string sig(kPeterSig);
  const std::string spliced =
      std::string(kNoteText) + "\n" + sig.substr(0, 60) + "ABCD" + sig.substr(60);
  auto r = VerifyNote(spliced, peter);
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(r.status().message(), "note signature does not verify");

  // Another key signing under the same name has another key id: not a signature by `peter`.
  auto other = Ed25519Signer::Create(SecretBytes::Random(32));
  ASSERT_TRUE(other.ok());
  auto forged = SignNote(kNoteText, "PeterNeumann", **other);
  ASSERT_TRUE(forged.ok());
  EXPECT_EQ(VerifyNote(*forged, peter).status().code(), StatusCode::kNotFound);
}

TEST(SignedNoteTest, RejectsMalformedNotesLikeGo) {
  const NoteVerifier peter = Verifier(kPeterVerifierKey);
  const std::string text(kNoteText);
  const std::string sig(kPeterSig);
  const std::vector<std::string> bad = {
      text,
      text + "\n",
      text + "\n" + sig.substr(0, sig.size() - 1),
      "\x01" + text + "\n" + sig,
      "\xff" + text + "\n" + sig,
      text + "\n" +
          "\xe2\x80\x94 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2" +
          "pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
      text + "\n" + sig + "Unexpected line.\n",
      text + "\n" +
          [&] {
            std::string many;
            for (int i = 0; i < 101; ++i) many += sig;
            return many;
          }(),
  };
  for (const std::string& note : bad) {
    auto r = VerifyNote(note, peter);
    ASSERT_FALSE(r.ok()) << note;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << note;
  }
}

TEST(SignedNoteTest, SignRejectsBadTextAndNames) {
  auto signer = PeterSigner();
  for (std::string_view text :
       {"", "abc", "a\n\nb\n", "\n\n", "a\x01\n", "tab\there\n", "\xff\n"}) {
    EXPECT_EQ(SignNote(text, "PeterNeumann", *signer).status().code(), StatusCode::kInvalidArgument)
        << text;
  }
  for (std::string_view name : {"", "a+b", "a b", "tab\tname", "nbsp\xc2\xa0name"}) {
    EXPECT_EQ(SignNote(kNoteText, name, *signer).status().code(), StatusCode::kInvalidArgument)
        << name;
  }
  auto round = SignNote("phivault.example/audit\n42\nroot\n", "phivault.example/audit", *signer);
  ASSERT_TRUE(round.ok());
  auto text = VerifyNote(*round, {"phivault.example/audit", signer->public_key()});
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, "phivault.example/audit\n42\nroot\n");
}

// TestNewVerifier: every proper substring and every single-byte increment must be rejected.
TEST(SignedNoteTest, VerifierKeyManglingsAreRejected) {
  const std::string vkey(kPeterVerifierKey);
  for (size_t i = 0; i <= vkey.size(); ++i) {
    for (size_t j = i + 1; j <= vkey.size(); ++j) {
      if (i == 0 && j == vkey.size()) continue;
      EXPECT_FALSE(ParseNoteVerifierKey(vkey.substr(i, j - i)).ok()) << vkey.substr(i, j - i);
    }
  }
  for (size_t i = 0; i < vkey.size(); ++i) {
    std::string b = vkey;
    b[i] = static_cast<char>(b[i] + 1);
    EXPECT_FALSE(ParseNoteVerifierKey(b).ok()) << b;
  }
  // Wrong key length and unknown algorithm, each with an adjusted key id (Go vectors).
  EXPECT_FALSE(ParseNoteVerifierKey(
                   "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
                   .ok());
  EXPECT_FALSE(
      ParseNoteVerifierKey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
          .ok());
}

}  // namespace
}  // namespace phivault::crypto
