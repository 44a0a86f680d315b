// C2SP tlog-checkpoint notes: exact text, signing, verification and strict parsing.
#include <gtest/gtest.h>

#include <string>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "crypto/signing.h"
#include "storage/checkpoint.h"
#include "tests/storage_merkle/rfc_vectors.h"

namespace phivault::storage {
namespace {

constexpr std::string_view kOrigin = "phivault.example/clinic-a/audit";

std::unique_ptr<crypto::Ed25519Signer> NewSigner() {
  if (!crypto::InitSodium().ok()) std::abort();
  return std::move(crypto::Ed25519Signer::Create(crypto::SecretBytes::Random(32))).value();
}

crypto::NoteVerifier VerifierFor(const crypto::Ed25519Signer& signer, std::string_view name) {
  return {std::string(name), signer.public_key()};
}

Checkpoint Sample() { return {std::string(kOrigin), 8, testing::RfcRoots()[7], {}}; }

TEST(Checkpoint, TextIsOriginSizeAndBase64Root) {
  StatusOr<std::string> text = CheckpointText(Sample());
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, std::string(kOrigin) + "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n");
}

TEST(Checkpoint, ParsesTheSpecificationExample) {
  // The example checkpoint text of https://c2sp.org/tlog-checkpoint (C2SP/C2SP
  // tlog-checkpoint.md).
  StatusOr<Checkpoint> cp = ParseCheckpointText(
      "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n");
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  EXPECT_EQ(cp->origin, "example.com/behind-the-sofa");
  EXPECT_EQ(cp->size, 20852163u);
  EXPECT_EQ(crypto::Base64Encode(crypto::AsView(cp->root)),
            "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=");
  EXPECT_TRUE(cp->extensions.empty());
}

TEST(Checkpoint, SignedNoteHasTheSignedNoteLayoutAndOpens) {
  auto signer = NewSigner();
  StatusOr<std::string> note = SignCheckpoint(Sample(), kOrigin, *signer);
  ASSERT_TRUE(note.ok()) << note.status().ToString();
  const std::string text = *CheckpointText(Sample());
  // Text, a blank line, then "— <name> <base64(4-byte key id || 64-byte signature)>".
  ASSERT_EQ(note->substr(0, text.size() + 1), text + "\n");
  const std::string sig_prefix = "\xE2\x80\x94 " + std::string(kOrigin) + " ";
  ASSERT_EQ(note->substr(text.size() + 1, sig_prefix.size()), sig_prefix);
  std::string sig_b64 = note->substr(text.size() + 1 + sig_prefix.size());
  ASSERT_EQ(sig_b64.back(), '\n');
  sig_b64.pop_back();
  StatusOr<std::string> sig = crypto::Base64Decode(sig_b64);
  ASSERT_TRUE(sig.ok());
  ASSERT_EQ(sig->size(), 4u + 64u);
  EXPECT_EQ(sig->substr(0, 4), crypto::NoteKeyId(kOrigin, signer->public_key()));

  StatusOr<Checkpoint> opened = OpenCheckpoint(*note, VerifierFor(*signer, kOrigin));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(*opened, Sample());
}

TEST(Checkpoint, OpenRejectsOtherKeysAndAlteredText) {
  auto signer = NewSigner();
  auto other = NewSigner();
  const std::string note = *SignCheckpoint(Sample(), kOrigin, *signer);
  EXPECT_FALSE(OpenCheckpoint(note, VerifierFor(*other, kOrigin)).ok());
  EXPECT_FALSE(OpenCheckpoint(note, VerifierFor(*signer, "another-name")).ok());
  std::string altered = note;
  altered.replace(kOrigin.size() + 1, 1, "9");  // size 8 -> 9
  EXPECT_FALSE(OpenCheckpoint(altered, VerifierFor(*signer, kOrigin)).ok());
}

TEST(Checkpoint, ExtensionLinesRoundTrip) {
  auto signer = NewSigner();
  Checkpoint cp = Sample();
  cp.extensions = {"extension one", "two"};
  StatusOr<std::string> note = SignCheckpoint(cp, kOrigin, *signer);
  ASSERT_TRUE(note.ok());
  StatusOr<Checkpoint> opened = OpenCheckpoint(*note, VerifierFor(*signer, kOrigin));
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, cp);
}

TEST(Checkpoint, EmptyTreeCheckpoint) {
  Checkpoint cp{std::string(kOrigin), 0, MerkleEmptyRoot(), {}};
  StatusOr<Checkpoint> parsed = ParseCheckpointText(*CheckpointText(cp));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, cp);
}

TEST(Checkpoint, TextRefusesOriginsThatWouldFrameAnotherCheckpoint) {
  Checkpoint cp = Sample();
  cp.origin = "";
  EXPECT_EQ(CheckpointText(cp).status().code(), StatusCode::kInvalidArgument);
  cp.origin = "evil\n999";
  EXPECT_EQ(CheckpointText(cp).status().code(), StatusCode::kInvalidArgument);
  cp = Sample();
  cp.extensions = {""};
  EXPECT_EQ(CheckpointText(cp).status().code(), StatusCode::kInvalidArgument);
}

TEST(Checkpoint, ParseRejectsMalformedText) {
  const std::string root = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=";
  const std::string origin(kOrigin);
  for (const std::string& text : {
           std::string(),
           origin + "\n8\n" + root,                                         // no final newline
           origin + "\n8\n",                                                // no root line
           "\n8\n" + root + "\n",                                           // empty origin
           origin + "\n08\n" + root + "\n",                                 // leading zero
           origin + "\n+8\n" + root + "\n",                                 // sign
           origin + "\n-8\n" + root + "\n",                                 // negative
           origin + "\n8 \n" + root + "\n",                                 // trailing space
           origin + "\n\n" + root + "\n",                                   // empty size
           origin + "\n18446744073709551616\n" + root + "\n",               // 2^64
           origin + "\n8\nAAAA\n",                                          // 3-byte root
           origin + "\n8\n" + root.substr(0, 42) + "==\n",                  // 31-byte root
           origin + "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=\n",  // non-canonical
           origin + "\n8\n" + root + "\n\n",                                // empty extension line
       }) {
    EXPECT_EQ(ParseCheckpointText(text).status().code(), StatusCode::kInvalidArgument)
        << "accepted: " << text;
  }
  EXPECT_TRUE(ParseCheckpointText(origin + "\n18446744073709551615\n" + root + "\n").ok());
}

TEST(Checkpoint, TimeLineComesFirstAfterTheRootAndRoundTrips) {
  auto signer = NewSigner();
  Checkpoint cp = Sample();
  cp.time_unix_seconds = 1'764'587'258;
  cp.extensions = {"other extension"};
  EXPECT_EQ(*CheckpointText(cp), std::string(kOrigin) +
                                     "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
                                     "time 2025-12-01T11:07:38Z\nother extension\n");
  const std::string note = *SignCheckpoint(cp, kOrigin, *signer);
  StatusOr<Checkpoint> opened = OpenCheckpoint(note, VerifierFor(*signer, kOrigin));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(*opened, cp);
  // The time is signed: changing it breaks the signature.
  std::string altered = note;
  altered.replace(altered.find("11:07:38"), 8, "11:07:39");
  EXPECT_FALSE(OpenCheckpoint(altered, VerifierFor(*signer, kOrigin)).ok());
}

TEST(Checkpoint, Rfc3339UtcKnownValues) {
  EXPECT_EQ(Rfc3339Utc(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(Rfc3339Utc(951'782'400), "2000-02-29T00:00:00Z");
  EXPECT_EQ(Rfc3339Utc(1'764'587'258), "2025-12-01T11:07:38Z");
  EXPECT_EQ(Rfc3339Utc(253'402'300'799), "9999-12-31T23:59:59Z");
  EXPECT_EQ(Rfc3339Utc(-1), "");
  EXPECT_EQ(Rfc3339Utc(253'402'300'800), "");
}

TEST(Checkpoint, TimeOutsideItsRangeOrAsAnExtensionIsRefused) {
  Checkpoint cp = Sample();
  cp.time_unix_seconds = -1;
  EXPECT_EQ(CheckpointText(cp).status().code(), StatusCode::kInvalidArgument);
  cp = Sample();
  cp.extensions = {"time 2025-12-01T11:07:38Z"};
  EXPECT_EQ(CheckpointText(cp).status().code(), StatusCode::kInvalidArgument);
}

TEST(Checkpoint, ParseRejectsMalformedTimeLines) {
  const std::string head =
      std::string(kOrigin) + "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n";
  EXPECT_EQ(ParseCheckpointText(head + "time 2025-12-01T11:07:38Z\n")->time_unix_seconds,
            1'764'587'258);
  for (const char* line : {
           "time 2025-12-01T11:07:38+00:00",  // offset instead of Z
           "time 2025-12-01 11:07:38Z",       // space instead of T
           "time 2025-12-01T11:07:38.5Z",     // fraction
           "time 2025-02-29T00:00:00Z",       // no such day
           "time 2025-12-01T24:00:00Z",       // no such hour
           "time 2025-12-01T11:07:60Z",       // leap second
           "time 1969-12-31T23:59:59Z",       // before 1970
           "time +025-12-01T11:07:38Z",       // sign
           "time  2025-12-01T11:07:38Z",      // two spaces
           "time 1764587258",                 // unix seconds
           "time ",
       }) {
    EXPECT_EQ(ParseCheckpointText(head + line + "\n").status().code(), StatusCode::kInvalidArgument)
        << "accepted: " << line;
  }
  EXPECT_EQ(ParseCheckpointText(head + "time 2025-12-01T11:07:38Z\ntime 2025-12-01T11:07:39Z\n")
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  // Other lines that merely start with "time" are opaque extensions.
  StatusOr<Checkpoint> other = ParseCheckpointText(head + "timestamp 5\n");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->time_unix_seconds.has_value());
  EXPECT_EQ(other->extensions, std::vector<std::string>{"timestamp 5"});
}

TEST(Checkpoint, ParseUnverifiedReadsTheTextWithoutTheKey) {
  auto signer = NewSigner();
  Checkpoint cp = Sample();
  cp.time_unix_seconds = 1'764'587'258;
  StatusOr<Checkpoint> parsed = ParseUnverifiedCheckpoint(*SignCheckpoint(cp, kOrigin, *signer));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, cp);
  EXPECT_EQ(ParseUnverifiedCheckpoint(*CheckpointText(cp)).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace phivault::storage
