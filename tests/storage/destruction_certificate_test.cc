#include "storage/destruction_certificate.h"

#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "crypto/signing.h"

namespace phivault::storage {
namespace {

using ::testing::HasSubstr;

constexpr char kOrigin[] = "vault.example/audit";
constexpr char kBidA[] = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
constexpr char kBidB[] = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

std::unique_ptr<crypto::Ed25519Signer> NewSigner() {
  auto signer = crypto::Ed25519Signer::Create(crypto::SecretBytes::Random(32));
  EXPECT_TRUE(signer.ok()) << signer.status().ToString();
  return std::move(*signer);
}

crypto::NoteVerifier VerifierOf(const crypto::Ed25519Signer& signer) {
  return {kOrigin, signer.public_key()};
}

// Records and epoch ids in canonical (ascending) order, so a round trip compares equal.
DestructionCertificate Sample() {
  DestructionCertificate c;
  c.id = "00112233445566778899aabbccddeeff";
  c.principal = "system:retention-sweep";
  c.user = "retention-sweep";
  c.role = "system";
  c.started_unix_us = 1'796'123'258'123'456;  // 2026-12-01T11:07:38.123456Z
  c.finished_unix_us = 1'796'123'301'000'001;
  c.epoch_ids = {"d20261130", "d20261201"};
  c.media = "vault data directory (RocksDB files) and keyring copies";
  c.records = {
      {"Bbbbbbbbbbbbbbbbbbbbbw", 1, "lab", kBidA},
      {"Bbbbbbbbbbbbbbbbbbbbbw", 2, "lab", kBidA},
      {"Cccccccccccccccccccccg", 1, "psychotherapy_notes", kBidB},
  };
  c.verification = "decrypt of each destroyed version; byte scan of live database files";
  c.verification_result = "passed: 3 of 3 versions fail to decrypt; no ciphertext found";
  c.tool_name = "phivault";
  c.tool_version = "0.9.0";
  c.audit_seq_first = 4107;
  c.audit_seq_last = 4111;
  return c;
}

std::string SignSample(const crypto::Ed25519Signer& signer) {
  auto note = SignDestructionCertificate(Sample(), signer, kOrigin);
  EXPECT_TRUE(note.ok()) << note.status().ToString();
  return note.ok() ? *note : std::string();
}

// `note` with its first line starting with `prefix` replaced by `line`.
std::string ReplaceLine(const std::string& note, const std::string& prefix,
                        const std::string& line) {
  size_t at = note.find("\n" + prefix);
  EXPECT_NE(at, std::string::npos) << prefix;
  if (at == std::string::npos) return note;
  ++at;
  const size_t end = note.find('\n', at);
  return note.substr(0, at) + line + note.substr(end);
}

TEST(DestructionCertificateTest, TextIsTheDocumentedForm) {
  auto text = DestructionCertificateText(Sample(), kOrigin);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text,
            "vault.example/audit\n"
            "phivault destruction certificate v1\n"
            "id 00112233445566778899aabbccddeeff\n"
            "principal system:retention-sweep\n"
            "user retention-sweep\n"
            "role system\n"
            "started 2026-12-01T11:07:38.123456Z\n"
            "finished 2026-12-01T11:08:21.000001Z\n"
            "method purge by cryptographic erase of epoch keys d20261130, d20261201, then "
            "deletion and compaction of the ciphertext\n"
            "media vault data directory (RocksDB files) and keyring copies\n"
            "record Bbbbbbbbbbbbbbbbbbbbbw 1 lab " +
                std::string(kBidA) +
                "\n"
                "record Bbbbbbbbbbbbbbbbbbbbbw 2 lab " +
                kBidA +
                "\n"
                "record Cccccccccccccccccccccg 1 psychotherapy_notes " +
                kBidB +
                "\n"
                "counts records=2 versions=3 patients=2\n"
                "verification decrypt of each destroyed version; byte scan of live database "
                "files\n"
                "result passed: 3 of 3 versions fail to decrypt; no ciphertext found\n"
                "tool phivault 0.9.0\n"
                "audit-seq 4107 4111\n");
}

TEST(DestructionCertificateTest, EncodingIsIndependentOfInputOrder) {
  DestructionCertificate shuffled = Sample();
  std::swap(shuffled.records[0], shuffled.records[2]);
  std::swap(shuffled.epoch_ids[0], shuffled.epoch_ids[1]);
  EXPECT_EQ(DestructionCertificateText(shuffled, kOrigin).value(),
            DestructionCertificateText(Sample(), kOrigin).value());
  // Counted by neighbours when sorted, with hash sets when not: the same counts.
  const DestructionCounts a = CountDestroyed(shuffled), b = CountDestroyed(Sample());
  EXPECT_EQ(a.records, 2u);
  EXPECT_EQ(a.records, b.records);
  EXPECT_EQ(a.versions, b.versions);
  EXPECT_EQ(a.patients, b.patients);
  EXPECT_EQ(a.versions_by_category, b.versions_by_category);
}

TEST(DestructionCertificateTest, SignThenVerifyRoundTrips) {
  const auto signer = NewSigner();
  const std::string note = SignSample(*signer);
  auto cert = VerifyDestructionCertificate(note, VerifierOf(*signer));
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_EQ(*cert, Sample());
  const DestructionCounts counts = CountDestroyed(*cert);
  EXPECT_EQ(counts.records, 2u);
  EXPECT_EQ(counts.versions, 3u);
  EXPECT_EQ(counts.patients, 2u);
  EXPECT_EQ(counts.versions_by_category, (std::vector<std::pair<std::string, uint64_t>>{
                                             {"lab", 2}, {"psychotherapy_notes", 1}}));
}

TEST(DestructionCertificateTest, VerifiesWithTheParsedVerifierKeyString) {
  const auto signer = NewSigner();
  auto verifier =
      crypto::ParseNoteVerifierKey(crypto::NoteVerifierKey(kOrigin, signer->public_key()));
  ASSERT_TRUE(verifier.ok()) << verifier.status().ToString();
  EXPECT_TRUE(VerifyDestructionCertificate(SignSample(*signer), *verifier).ok());
}

TEST(DestructionCertificateTest, SignedByAnotherKeyFails) {
  const auto signer = NewSigner();
  const auto other = NewSigner();
  auto cert = VerifyDestructionCertificate(SignSample(*other), VerifierOf(*signer));
  ASSERT_EQ(cert.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(cert.status().message(), HasSubstr("not signed by vault.example/audit"));
}

TEST(DestructionCertificateTest, ForgedSignatureUnderTheRightKeyIdFails) {
  const auto signer = NewSigner();
  const auto other = NewSigner();
  // The verifier's key id in front of another key's signature of the same text.
  const std::string good = SignSample(*signer);
  const std::string by_other = SignSample(*other);
  const size_t b64 = by_other.rfind(' ') + 1;
  auto raw = crypto::Base64Decode(by_other.substr(b64, by_other.size() - b64 - 1));
  ASSERT_TRUE(raw.ok());
  const std::string forged =
      good.substr(0, good.rfind(' ') + 1) +
      crypto::Base64Encode(crypto::NoteKeyId(kOrigin, signer->public_key()) + raw->substr(4)) +
      "\n";
  auto cert = VerifyDestructionCertificate(forged, VerifierOf(*signer));
  ASSERT_EQ(cert.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(cert.status().message(), HasSubstr("signature does not verify"));
}

struct Tamper {
  std::string prefix;     // the line to change, by its start
  std::string altered;    // a well-formed line with another value
  std::string malformed;  // a line that breaks the form
  std::string named;      // what the malformed line's message names
};

std::vector<Tamper> Tampers() {
  const std::string bid_a(kBidA), bid_b(kBidB);
  return {
      {"id ", "id 00112233445566778899aabbccddeefe", "id 00112233445566778899AABBCCDDEEFF", "id"},
      {"principal ", "principal user:mallory", "principal ", "principal"},
      {"user ", "user mallory", "user  mallory", "user"},
      {"role ", "role admin", "role", "role"},
      {"started ", "started 2026-12-01T11:07:38.123457Z", "started 2026-12-01T11:07:38Z",
       "started"},
      {"finished ", "finished 2026-12-01T11:08:22.000001Z",
       "finished 2026-12-01T11:08:21.000001+00:00", "finished"},
      {"method ",
       "method purge by cryptographic erase of epoch keys d20261130, then deletion and compaction "
       "of the ciphertext",
       "method clear by overwrite", "method"},
      {"media ", "media a USB stick", "media \tx", "media"},
      {"record Bbbbbbbbbbbbbbbbbbbbbw 1 ", "record Bbbbbbbbbbbbbbbbbbbbbw 1 lab " + bid_b,
       "record Bbbbbbbbbbbbbbbbbbbbbw 01 lab " + bid_a, "record version"},
      {"record Bbbbbbbbbbbbbbbbbbbbbw 2 ", "record Bbbbbbbbbbbbbbbbbbbbbw 2 billing " + bid_a,
       "record Bbbbbbbbbbbbbbbbbbbbbw 2 Lab " + bid_a, "record category"},
      {"record Ccc", "record Dddddddddddddddddddddw 1 psychotherapy_notes " + bid_b,
       "record Cccccccccccccccccccccg 1 psychotherapy_notes synthetic-patient-0001",
       "patient blind id"},
      {"counts ", "counts records=2 versions=3 patients=2",
       "counts records=1 versions=3 patients=2", "counts"},
      {"verification ", "verification none", "verification ", "verification"},
      {"result ", "result failed", "result", "result"},
      {"tool ", "tool phivault 0.9.1", "tool phivault", "tool"},
      {"audit-seq ", "audit-seq 4107 4112", "audit-seq 4107 -4112", "audit-seq"},
  };
}

TEST(DestructionCertificateTest, EveryAlteredFieldFailsTheSignature) {
  const auto signer = NewSigner();
  const std::string note = SignSample(*signer);
  for (const Tamper& t : Tampers()) {
    const std::string altered = ReplaceLine(note, t.prefix, t.altered);
    if (t.prefix == "counts ") continue;  // the sample's own counts: no alteration possible
    ASSERT_NE(altered, note) << t.prefix;
    auto cert = VerifyDestructionCertificate(altered, VerifierOf(*signer));
    ASSERT_EQ(cert.status().code(), StatusCode::kDataLoss) << t.prefix;
    EXPECT_THAT(cert.status().message(), HasSubstr("signature does not verify")) << t.prefix;
  }
}

TEST(DestructionCertificateTest, EveryMalformedFieldIsNamed) {
  const auto signer = NewSigner();
  const std::string note = SignSample(*signer);
  for (const Tamper& t : Tampers()) {
    auto cert =
        VerifyDestructionCertificate(ReplaceLine(note, t.prefix, t.malformed), VerifierOf(*signer));
    ASSERT_EQ(cert.status().code(), StatusCode::kDataLoss) << t.malformed;
    EXPECT_THAT(cert.status().message(), HasSubstr("certificate is malformed")) << t.malformed;
    EXPECT_THAT(cert.status().message(), HasSubstr(t.named)) << t.malformed;
  }
}

TEST(DestructionCertificateTest, OneFormOnly) {
  const auto signer = NewSigner();
  const std::string note = SignSample(*signer);
  const auto verify = [&](const std::string& n) {
    return VerifyDestructionCertificate(n, VerifierOf(*signer)).status();
  };
  // A repeated line, an unknown line, a reordered pair, a missing line, a record out of order.
  const size_t user = note.find("\nuser ") + 1;
  const std::string user_line = note.substr(user, note.find('\n', user) - user + 1);
  EXPECT_THAT(verify(note.substr(0, user) + user_line + note.substr(user)).message(),
              HasSubstr("line 6 must be 'role ...'"));
  EXPECT_THAT(verify(note.substr(0, user) + "comment hi\n" + note.substr(user)).message(),
              HasSubstr("'user ...'"));
  const size_t role = note.find("\nrole ") + 1;
  const std::string role_line = note.substr(role, note.find('\n', role) - role + 1);
  const std::string swapped =
      note.substr(0, user) + role_line + user_line + note.substr(role + role_line.size());
  EXPECT_THAT(verify(swapped).message(), HasSubstr("'user ...'"));
  const std::string missing = note.substr(0, user) + note.substr(user + user_line.size());
  EXPECT_THAT(verify(missing).message(), HasSubstr("'user ...'"));
  const size_t tail = note.rfind("\n\n");
  EXPECT_THAT(verify(note.substr(0, tail) + "\nextra 1" + note.substr(tail)).message(),
              HasSubstr("lines after audit-seq"));
  const std::string first = "record Bbbbbbbbbbbbbbbbbbbbbw 1 lab " + std::string(kBidA) + "\n";
  const std::string second = "record Bbbbbbbbbbbbbbbbbbbbbw 2 lab " + std::string(kBidA) + "\n";
  std::string reordered = note;
  const size_t records = reordered.find(first + second);
  ASSERT_NE(records, std::string::npos);
  reordered.replace(records, first.size() + second.size(), second + first);
  EXPECT_THAT(verify(reordered).message(), HasSubstr("in ascending order"));
  for (const Status& s : {verify(swapped), verify(missing), verify(reordered)}) {
    EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  }
  EXPECT_EQ(verify("not a note").code(), StatusCode::kDataLoss);
  EXPECT_EQ(verify(note.substr(0, note.rfind("\n\n") + 2)).code(), StatusCode::kDataLoss);
}

TEST(DestructionCertificateTest, OriginMustBeTheVerifiersName) {
  const auto signer = NewSigner();
  auto note = SignDestructionCertificate(Sample(), *signer, "other.example/audit");
  ASSERT_TRUE(note.ok());
  auto cert = VerifyDestructionCertificate(*note, VerifierOf(*signer));
  ASSERT_EQ(cert.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(cert.status().message(), HasSubstr("origin"));
}

TEST(DestructionCertificateTest, NoPatientIdCanBeRepresented) {
  const auto signer = NewSigner();
  for (const std::string& not_a_bid :
       {std::string("synthetic-patient-0001"), std::string(""), std::string(kBidA).substr(0, 63),
        std::string(kBidA) + "0",
        std::string("0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9"),
        std::string(64, 'g')}) {
    DestructionCertificate c = Sample();
    c.records[1].patient_bid = not_a_bid;
    auto note = SignDestructionCertificate(c, *signer, kOrigin);
    ASSERT_EQ(note.status().code(), StatusCode::kInvalidArgument) << not_a_bid;
    EXPECT_THAT(note.status().message(), HasSubstr("patient blind id must be 64 lowercase hex"));
  }
}

TEST(DestructionCertificateTest, SignRefusesFieldsThatBreakTheForm) {
  const auto signer = NewSigner();
  const auto refused = [&](auto edit, std::string_view named) {
    DestructionCertificate c = Sample();
    edit(c);
    auto note = SignDestructionCertificate(c, *signer, kOrigin);
    EXPECT_EQ(note.status().code(), StatusCode::kInvalidArgument) << named;
    EXPECT_THAT(note.status().message(), HasSubstr(named));
  };
  refused([](auto& c) { c.id = NewDestructionCertificateId().substr(1); }, "id");
  refused([](auto& c) { c.user = "a\nrole admin"; }, "user");
  refused([](auto& c) { c.role.clear(); }, "role");
  refused([](auto& c) { c.principal = " system"; }, "principal");
  refused([](auto& c) { c.finished_unix_us = c.started_unix_us - 1; }, "finished");
  refused([](auto& c) { c.started_unix_us = -1; }, "started");
  refused([](auto& c) { c.epoch_ids.clear(); }, "epoch key");
  refused([](auto& c) { c.epoch_ids.push_back("svc:audit-sign"); }, "epoch id");
  refused([](auto& c) { c.epoch_ids.push_back("d20261130"); }, "epoch key once");
  refused([](auto& c) { c.records.clear(); }, "at least one record");
  refused([](auto& c) { c.records.push_back(c.records[0]); }, "record version once");
  refused([](auto& c) { c.records[0].record_id = "not-a-record-id"; }, "record id");
  refused([](auto& c) { c.records[0].version = 0; }, "record version");
  refused([](auto& c) { c.records[0].category = "lab results"; }, "record category");
  refused([](auto& c) { c.media.clear(); }, "media");
  refused([](auto& c) { c.verification.clear(); }, "verification");
  refused([](auto& c) { c.verification_result.clear(); }, "result");
  refused([](auto& c) { c.tool_name = "php vault"; }, "tool name");
  refused([](auto& c) { c.tool_version.clear(); }, "tool version");
  refused([](auto& c) { c.audit_seq_last = c.audit_seq_first - 1; }, "audit-seq");
  DestructionCertificate c = Sample();
  EXPECT_EQ(SignDestructionCertificate(c, *signer, "bad origin").status().code(),
            StatusCode::kInvalidArgument);
}

TEST(DestructionCertificateTest, IdsAreFreshLowercaseHex) {
  const std::string a = NewDestructionCertificateId();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, NewDestructionCertificateId());
}

}  // namespace
}  // namespace phivault::storage
