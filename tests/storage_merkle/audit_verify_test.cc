// The offline verifier of audit exports: a clean export passes, and every kind of tampering is
// caught and named precisely.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "crypto/signing.h"
#include "storage/audit_entry.h"
#include "storage/audit_verify.h"
#include "storage/checkpoint.h"
#include "storage/ledger.h"
#include "storage/merkle.h"
#include "tests/storage_merkle/memory_store.h"

namespace phivault::storage {
namespace {

using Kind = AuditProblem::Kind;

constexpr std::string_view kOrigin = "phivault.example/clinic-a/audit";

std::unique_ptr<crypto::Ed25519Signer> NewSigner() {
  if (!crypto::InitSodium().ok()) std::abort();
  return std::move(crypto::Ed25519Signer::Create(crypto::SecretBytes::Random(32))).value();
}

std::string HashHex(std::string_view bytes) {
  return crypto::HexEncode(crypto::AsView(crypto::Sha256(bytes)));
}

AuditEntry SyntheticEntry(uint64_t i) {
  AuditEntry e;
  e.time_unix_us = 1'760'000'000'000'000 + static_cast<int64_t>(i) * 1000;
  e.request_id = "req-" + std::to_string(i);
  e.application = "test-ehr";
  e.user = "clinician-" + std::to_string(i % 3);
  e.role = "physician";
  e.action = "record.read";
  e.outcome = "success";
  e.reason = "rule:treat";
  e.purpose = "TREAT";
  e.records = {"rec-" + std::to_string(i)};
  return e;
}

std::string Encode(const AuditEntry& e) {
  StatusOr<std::string> bytes = EncodeAuditEntry(e);
  if (!bytes.ok()) std::abort();
  return *bytes;
}

// The PHI fields sealed in synthetic entry `i`, and the salt sealed with them.
nlohmann::json SyntheticPhi(uint64_t i) {
  return {{"patient_id", "synthetic-" + std::to_string(1000 + i)}};
}
std::string SyntheticSalt(uint64_t i) { return std::string(32, static_cast<char>('a' + i % 26)); }

// Entry bytes `from`..`to` - 1 of a chained log whose entry `from` follows `prev_hash`. Each
// entry commits to SyntheticPhi(i) unless `commit_phi` is false.
std::vector<std::string> ChainedEntries(uint64_t from, uint64_t to, std::string prev_hash,
                                        const std::string& action = "record.read",
                                        bool commit_phi = true) {
  std::vector<std::string> out;
  for (uint64_t i = from; i < to; ++i) {
    AuditEntry e = SyntheticEntry(i);
    e.seq = i + 1;
    e.prev_hash = prev_hash;
    e.action = action;
    if (commit_phi) e.phi_commit = PhiCommitment(SyntheticSalt(i), SyntheticPhi(i));
    out.push_back(Encode(e));
    prev_hash = HashHex(out.back());
  }
  return out;
}

// Decodes, changes and re-encodes entry bytes (a forger who knows the format).
std::string Reencode(const std::string& bytes, const std::function<void(AuditEntry&)>& change) {
  StatusOr<AuditEntry> e = DecodeAuditEntry(bytes);
  if (!e.ok()) std::abort();
  change(*e);
  return Encode(*e);
}

MerkleHash RootOf(const std::vector<std::string>& entries, size_t n) {
  std::vector<MerkleHash> leaves;
  for (size_t i = 0; i < n; ++i) leaves.push_back(MerkleLeafHash(entries[i]));
  return MerkleReferenceRoot(leaves);
}

// One export line before rendering, so tests can tamper with the structure.
struct Line {
  bool is_entry = true;
  uint64_t index = 0;
  std::string bytes;  // entry
  std::string note;   // checkpoint
};

class AuditVerifyTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kEntries = 40;

  AuditVerifyTest() : signer_(NewSigner()), verifier_{std::string(kOrigin), signer_->public_key()} {
    entries_ = ChainedEntries(0, kEntries, "");
  }

  static constexpr int64_t kSignedAt = 1'764'587'258;  // 2025-12-01T11:07:38Z

  std::string Note(uint64_t size, const MerkleHash& root,
                   const crypto::Ed25519Signer* signer = nullptr) const {
    Checkpoint cp{std::string(kOrigin), size, root, {}};
    cp.time_unix_seconds = kSignedAt + static_cast<int64_t>(size);
    StatusOr<std::string> note = SignCheckpoint(cp, kOrigin, signer ? *signer : *signer_);
    if (!note.ok()) std::abort();
    return *note;
  }

  // The honest export: every entry, with a checkpoint right after entries 10, 25 and 40.
  std::vector<Line> Export(const std::vector<uint64_t>& checkpoint_sizes = {10, 25, 40}) const {
    std::vector<Line> lines;
    for (uint64_t i = 0; i < entries_.size(); ++i) {
      lines.push_back({true, i, entries_[i], {}});
      for (uint64_t size : checkpoint_sizes) {
        if (size == i + 1) lines.push_back({false, 0, {}, Note(size, RootOf(entries_, size))});
      }
    }
    return lines;
  }

  static size_t PositionOfEntry(const std::vector<Line>& lines, uint64_t index) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].is_entry && lines[i].index == index) return i;
    }
    std::abort();
  }

  static std::vector<std::string> Render(const std::vector<Line>& lines) {
    std::vector<std::string> out;
    for (const Line& l : lines) {
      StatusOr<std::string> text =
          l.is_entry ? AuditExportEntryLine(l.index, l.bytes) : AuditExportCheckpointLine(l.note);
      if (!text.ok()) std::abort();
      out.push_back(*text);
    }
    return out;
  }

  AuditVerifyReport Verify(const std::vector<std::string>& rendered,
                           const AuditVerifyOptions& options = {}) const {
    std::string text;
    for (const std::string& l : rendered) text += l + "\n";
    std::istringstream in(text);
    StatusOr<AuditVerifyReport> report = VerifyAuditExport(in, verifier_, options);
    if (!report.ok()) {
      ADD_FAILURE() << report.status().ToString();
      return {};
    }
    return *report;
  }
  AuditVerifyReport Verify(const std::vector<Line>& lines,
                           const AuditVerifyOptions& options = {}) const {
    return Verify(Render(lines), options);
  }
  // Options trusting the honest checkpoints of `sizes`, named "saved-<size>.txt".
  AuditVerifyOptions Trusting(const std::vector<uint64_t>& sizes) const {
    AuditVerifyOptions options;
    for (uint64_t size : sizes) {
      options.trusted.push_back(
          {"saved-" + std::to_string(size) + ".txt", Note(size, RootOf(entries_, size))});
    }
    return options;
  }
  // The RFC 9162 consistency proof from `from` to `to` leaves of the honest log.
  std::vector<MerkleHash> ConsistencyProof(uint64_t from, uint64_t to) const {
    testing::MemoryStore store;
    auto tree = std::move(MerkleTree::Open(store)).value();
    WriteBatch batch;
    for (uint64_t i = 0; i < to; ++i) tree->Append(MerkleLeafHash(entries_[i]), batch);
    if (!store.Write(batch, true).ok()) std::abort();
    tree->Commit();
    return std::move(tree->ConsistencyProof(from, to)).value();
  }

  // A filtered export as the daemon writes it: the entries at `indexes`, each with its inclusion
  // proof in the tree of `tree_size` leaves, then the one checkpoint of that size.
  std::vector<std::string> FilteredExport(const std::vector<uint64_t>& indexes,
                                          uint64_t tree_size = kEntries) const {
    testing::MemoryStore store;
    auto tree = std::move(MerkleTree::Open(store)).value();
    WriteBatch batch;
    for (uint64_t i = 0; i < tree_size; ++i) tree->Append(MerkleLeafHash(entries_[i]), batch);
    if (!store.Write(batch, true).ok()) std::abort();
    tree->Commit();
    std::vector<std::string> out;
    for (uint64_t i : indexes) {
      StatusOr<std::vector<MerkleHash>> proof = tree->InclusionProof(i, tree_size);
      if (!proof.ok()) std::abort();
      out.push_back(*AuditExportProvenEntryLine(i, entries_[i], tree_size, *proof));
    }
    out.push_back(*AuditExportCheckpointLine(Note(tree_size, tree->Root())));
    return out;
  }

  static void ExpectProblem(const AuditVerifyReport& report, Kind kind, uint64_t index,
                            uint64_t checkpoint, const std::string& message) {
    EXPECT_FALSE(report.ok);
    ASSERT_TRUE(report.problem.has_value());
    EXPECT_EQ(report.problem->message, message);
    EXPECT_EQ(report.problem->kind, kind);
    EXPECT_EQ(report.problem->index, index);
    EXPECT_EQ(report.problem->checkpoint, checkpoint);
  }

  std::unique_ptr<crypto::Ed25519Signer> signer_;
  crypto::NoteVerifier verifier_;
  std::vector<std::string> entries_;
};

TEST_F(AuditVerifyTest, HonestExportVerifies) {
  AuditVerifyReport report = Verify(Export());
  EXPECT_TRUE(report.ok);
  EXPECT_FALSE(report.problem.has_value());
  EXPECT_EQ(report.entries_checked, 40u);
  EXPECT_EQ(report.checkpoints_checked, 3u);
  EXPECT_EQ(report.entries_covered, 40u);
}

TEST_F(AuditVerifyTest, CheckpointsMayBeAnywhereInTheExport) {
  std::vector<Line> lines = Export();
  std::vector<Line> moved;
  for (const Line& l : lines) {
    if (!l.is_entry) moved.push_back(l);
  }
  for (const Line& l : lines) {
    if (l.is_entry) moved.push_back(l);
  }
  AuditVerifyReport report = Verify(moved);
  EXPECT_TRUE(report.ok) << report.problem->message;
  EXPECT_EQ(report.checkpoints_checked, 3u);
}

TEST_F(AuditVerifyTest, ReportsTheSigningTimeOfTheLargestCheckpoint) {
  AuditVerifyReport report = Verify(Export());
  ASSERT_TRUE(report.ok);
  EXPECT_EQ(report.checkpoint_time, kSignedAt + 40);
}

TEST_F(AuditVerifyTest, EntriesAfterTheLastCheckpointAreUncovered) {
  entries_ = ChainedEntries(0, 45, "");
  AuditVerifyReport report = Verify(Export());
  ExpectProblem(report, Kind::kUncovered, 40, 0,
                "entry 40 is not covered by any signed checkpoint (the largest covers 40 "
                "entries): entries 40 to 44 could have been written by anyone");
  EXPECT_EQ(report.entries_checked, 45u);
  EXPECT_EQ(report.entries_covered, 40u);
}

TEST_F(AuditVerifyTest, ForgedExportWithItsCheckpointsStrippedIsUncovered) {
  // A forger rewrites entry 17, re-chains everything after it (fresh leaf hashes and prevs),
  // and drops the checkpoints that would expose it.
  std::vector<std::string> forged(entries_.begin(), entries_.begin() + 17);
  const std::vector<std::string> tail =
      ChainedEntries(17, kEntries, HashHex(entries_[16]), "record.amend");
  forged.insert(forged.end(), tail.begin(), tail.end());
  std::vector<Line> lines;
  for (uint64_t i = 0; i < kEntries; ++i) lines.push_back({true, i, forged[i], {}});
  AuditVerifyReport report = Verify(lines);
  ExpectProblem(report, Kind::kUncovered, 0, 0,
                "entry 0 is not covered by any signed checkpoint (the export has none): entries "
                "0 to 39 could have been written by anyone");
  EXPECT_EQ(report.entries_checked, 40u);
}

TEST_F(AuditVerifyTest, AnEmptyExportProvesNothing) {
  ExpectProblem(Verify(std::vector<std::string>{}), Kind::kUncovered, 0, 0,
                "the export holds no signed checkpoint: nothing in it is covered");
  // A signed checkpoint of the empty log does cover it.
  AuditVerifyReport report = Verify(std::vector<Line>{{false, 0, {}, Note(0, MerkleEmptyRoot())}});
  EXPECT_TRUE(report.ok);
  EXPECT_EQ(report.checkpoints_checked, 1u);
}

TEST_F(AuditVerifyTest, FlippedByteInAnEntry) {
  std::vector<std::string> rendered = Render(Export());
  std::string& line = rendered[PositionOfEntry(Export(), 17)];
  const size_t at = line.find("record.read");
  ASSERT_NE(at, std::string::npos);
  line[at + 10] ^= 0x01;  // "record.read" -> "record.rea" + 'e'
  ExpectProblem(Verify(rendered), Kind::kAltered, 17, 0,
                "entry 17 was altered (leaf hash mismatch)");
}

TEST_F(AuditVerifyTest, AlteredEntryWithRecomputedLeafHash) {
  std::vector<Line> lines = Export();
  lines[PositionOfEntry(lines, 17)].bytes =
      Reencode(entries_[17], [](AuditEntry& e) { e.action = "record.amend"; });
  AuditVerifyReport report = Verify(lines);
  ExpectProblem(report, Kind::kAltered, 17, 0,
                "entry 17 was altered (hash chain broken: entry 18 does not link to it)");
  EXPECT_EQ(report.entries_checked, 18u);
}

TEST_F(AuditVerifyTest, AlteredPrevFieldOfAnEntry) {
  std::vector<Line> lines = Export();
  lines[PositionOfEntry(lines, 17)].bytes =
      Reencode(entries_[17], [&](AuditEntry& e) { e.prev_hash = HashHex(entries_[3]); });
  ExpectProblem(Verify(lines), Kind::kAltered, 17, 0,
                "entry 17 was altered (hash chain broken: its prev does not match entry 16)");
}

TEST_F(AuditVerifyTest, AlteredSequenceNumber) {
  std::vector<Line> lines = Export();
  lines[PositionOfEntry(lines, 17)].bytes =
      Reencode(entries_[17], [](AuditEntry& e) { e.seq = 99; });
  ExpectProblem(Verify(lines), Kind::kAltered, 17, 0,
                "entry 17 was altered (seq is 99, expected 18)");
}

TEST_F(AuditVerifyTest, AlteredLastEntryIsCaughtByTheCheckpoint) {
  std::vector<Line> lines = Export();
  lines[PositionOfEntry(lines, 39)].bytes =
      Reencode(entries_[39], [](AuditEntry& e) { e.outcome = "denied"; });
  ExpectProblem(Verify(lines), Kind::kRootMismatch, 25, 3,
                "checkpoint 3 (size 40) does not match the entries: an entry from 25 to 39 was "
                "altered, inserted or removed");
}

TEST_F(AuditVerifyTest, RewrittenHistoryIsCaughtByTheFirstCheckpointAfterIt) {
  // A forger who rewrites entry 17 and re-chains everything after it.
  std::vector<std::string> forged(entries_.begin(), entries_.begin() + 17);
  const std::vector<std::string> tail =
      ChainedEntries(17, kEntries, HashHex(entries_[16]), "record.amend");
  forged.insert(forged.end(), tail.begin(), tail.end());
  std::vector<Line> lines = Export();
  for (Line& l : lines) {
    if (l.is_entry) l.bytes = forged[l.index];
  }
  ExpectProblem(Verify(lines), Kind::kRootMismatch, 10, 2,
                "checkpoint 2 (size 25) does not match the entries: an entry from 10 to 24 was "
                "altered, inserted or removed");
}

TEST_F(AuditVerifyTest, DeletedEntry) {
  std::vector<Line> lines = Export();
  lines.erase(lines.begin() + PositionOfEntry(lines, 17));
  AuditVerifyReport report = Verify(lines);
  ExpectProblem(report, Kind::kMissing, 17, 0, "entry 17 missing (index jumps from 16 to 18)");
  EXPECT_EQ(report.entries_checked, 17u);
  EXPECT_EQ(report.checkpoints_checked, 1u);
}

TEST_F(AuditVerifyTest, DeletedEntriesWithIndexesRenumbered) {
  std::vector<Line> lines = Export();
  lines.erase(lines.begin() + PositionOfEntry(lines, 17),
              lines.begin() + PositionOfEntry(lines, 19));
  uint64_t next = 0;
  for (Line& l : lines) {
    if (l.is_entry) l.index = next++;
  }
  ExpectProblem(Verify(lines), Kind::kMissing, 17, 0,
                "entries 17 to 18 missing (index jumps from 16 to 19)");
}

TEST_F(AuditVerifyTest, DeletedFirstEntry) {
  std::vector<Line> lines = Export();
  lines.erase(lines.begin());
  ExpectProblem(Verify(lines), Kind::kMissing, 0, 0, "entry 0 missing (log starts at index 1)");
}

TEST_F(AuditVerifyTest, SwappedPair) {
  std::vector<Line> lines = Export();
  std::swap(lines[PositionOfEntry(lines, 17)], lines[PositionOfEntry(lines, 18)]);
  ExpectProblem(Verify(lines), Kind::kReordered, 17, 0, "entries 17 and 18 reordered");
}

TEST_F(AuditVerifyTest, SwappedPairWithIndexesKeptInOrder) {
  std::vector<Line> lines = Export();
  std::swap(lines[PositionOfEntry(lines, 17)].bytes, lines[PositionOfEntry(lines, 18)].bytes);
  ExpectProblem(Verify(lines), Kind::kReordered, 17, 0, "entries 17 and 18 reordered");
}

TEST_F(AuditVerifyTest, InsertedEntry) {
  // A well-formed forgery that claims to follow entry 16; the real entries keep their indexes.
  AuditEntry forged = SyntheticEntry(1000);
  forged.seq = 18;
  forged.prev_hash = HashHex(entries_[16]);
  std::vector<Line> lines = Export();
  lines.insert(lines.begin() + PositionOfEntry(lines, 17), Line{true, 17, Encode(forged), {}});
  AuditVerifyReport report = Verify(lines);
  ExpectProblem(report, Kind::kInserted, 17, 0, "entry inserted at 17");
}

TEST_F(AuditVerifyTest, InsertedEntryWithLaterEntriesRenumbered) {
  AuditEntry forged = SyntheticEntry(1000);
  forged.seq = 18;
  forged.prev_hash = "00";
  std::vector<Line> lines = Export();
  lines.insert(lines.begin() + PositionOfEntry(lines, 17), Line{true, 17, Encode(forged), {}});
  uint64_t next = 0;
  for (Line& l : lines) {
    if (!l.is_entry) continue;
    if (next > 17) {
      l.bytes = Reencode(l.bytes, [&](AuditEntry& e) { e.seq = next + 1; });
    }
    l.index = next++;
  }
  ExpectProblem(Verify(lines), Kind::kInserted, 17, 0, "entry inserted at 17");
}

TEST_F(AuditVerifyTest, DuplicatedEntry) {
  std::vector<Line> lines = Export();
  const size_t at = PositionOfEntry(lines, 17);
  lines.insert(lines.begin() + at + 1, lines[at]);
  ExpectProblem(Verify(lines), Kind::kInserted, 18, 0, "entry inserted at 18 (a copy of entry 17)");
}

TEST_F(AuditVerifyTest, TruncatedLog) {
  std::vector<Line> lines = Export();
  lines.erase(lines.begin() + PositionOfEntry(lines, 30),
              lines.begin() + PositionOfEntry(lines, 39) + 1);
  AuditVerifyReport report = Verify(lines);
  ExpectProblem(report, Kind::kTruncated, 30, 3,
                "log truncated: checkpoint of size 40 but only 30 entries");
  EXPECT_EQ(report.entries_checked, 30u);
  EXPECT_EQ(report.checkpoints_checked, 2u);
}

TEST_F(AuditVerifyTest, ReplayedOldCheckpoint) {
  std::vector<Line> lines = Export();
  lines.push_back({false, 0, {}, Note(10, RootOf(entries_, 10))});
  ExpectProblem(Verify(lines), Kind::kReplayedCheckpoint, 0, 4,
                "checkpoint 4 replayed or older than checkpoint 3 (size 10 < 40)");
}

TEST_F(AuditVerifyTest, CheckpointSignedByAnotherKey) {
  auto impostor = NewSigner();
  std::vector<Line> lines = Export();
  size_t seen = 0;
  for (Line& l : lines) {
    if (!l.is_entry && ++seen == 2) l.note = Note(25, RootOf(entries_, 25), impostor.get());
  }
  ExpectProblem(Verify(lines), Kind::kBadSignature, 0, 2,
                "checkpoint 2 is not signed by the given key");
}

TEST_F(AuditVerifyTest, CheckpointWithAlteredSize) {
  std::vector<Line> lines = Export();
  std::string& note = lines[PositionOfEntry(lines, 9) + 1].note;
  note.replace(note.find("\n10\n"), 4, "\n11\n");
  ExpectProblem(Verify(lines), Kind::kBadSignature, 0, 1,
                "checkpoint 1 is not signed by the given key");
}

TEST_F(AuditVerifyTest, ConflictingCheckpointsOfOneSize) {
  // The key holder signed two different trees of size 25: a fork shown to different parties.
  std::vector<std::string> fork = ChainedEntries(0, 25, "", "record.list");
  std::vector<Line> lines = Export();
  lines.insert(lines.begin() + PositionOfEntry(lines, 24) + 2,
               Line{false, 0, {}, Note(25, RootOf(fork, 25))});
  ExpectProblem(Verify(lines), Kind::kConflictingCheckpoint, 0, 3,
                "checkpoint 3 conflicts with checkpoint 2 (same size 25, different root)");
}

TEST_F(AuditVerifyTest, CheckpointOfAnotherLog) {
  AuditVerifyOptions options;
  options.origin = "phivault.example/clinic-b/audit";
  ExpectProblem(Verify(Render(Export()), options), Kind::kWrongOrigin, 0, 1,
                "checkpoint 1 is for log 'phivault.example/clinic-a/audit', not "
                "'phivault.example/clinic-b/audit'");
}

TEST_F(AuditVerifyTest, MalformedLines) {
  for (const std::string& bad : {
           std::string("not json"),
           std::string(R"({"type":"entry","index":3})"),
           std::string(R"({"type":"entry","index":-3,"leaf_hash":"00","entry":""})"),
           std::string(R"({"type":"bogus"})"),
           std::string(R"({"type":"checkpoint","note":7})"),
       }) {
    std::vector<std::string> rendered = Render(Export());
    rendered[5] = bad;
    AuditVerifyReport report = Verify(rendered);
    ASSERT_TRUE(report.problem.has_value()) << bad;
    EXPECT_EQ(report.problem->kind, Kind::kMalformedLine) << bad;
    EXPECT_EQ(report.problem->index, 6u) << bad;
    EXPECT_EQ(report.problem->message.rfind("line 6 is not a valid export line (", 0), 0u)
        << report.problem->message;
  }
}

TEST_F(AuditVerifyTest, UnseekableInputIsRefused) {
  struct NoSeek : std::stringbuf {
    using std::stringbuf::stringbuf;
    pos_type seekoff(off_type, std::ios_base::seekdir, std::ios_base::openmode) override {
      return pos_type(off_type(-1));
    }
  };
  NoSeek buf("");
  std::istream in(&buf);
  EXPECT_EQ(VerifyAuditExport(in, verifier_).status().code(), StatusCode::kInvalidArgument);
}

// A filtered export: some entries, each with its inclusion proof against one signed checkpoint.
constexpr uint64_t kFilteredLines = 6;  // entry lines of FilteredExport(kSome); then a checkpoint
const std::vector<uint64_t> kSome = {3, 4, 5, 17, 30, 39};

TEST_F(AuditVerifyTest, FilteredExportVerifies) {
  AuditVerifyReport report = Verify(FilteredExport(kSome));
  EXPECT_TRUE(report.ok) << report.problem->message;
  EXPECT_TRUE(report.filtered);
  EXPECT_EQ(report.entries_checked, kFilteredLines);
  EXPECT_EQ(report.checkpoints_checked, 1u);
  EXPECT_EQ(report.entries_covered, 40u);
}

TEST_F(AuditVerifyTest, FilteredExportAgainstAnOlderTreeVerifies) {
  AuditVerifyReport report = Verify(FilteredExport({0, 1, 20, 33}, 34));
  EXPECT_TRUE(report.ok) << report.problem->message;
  EXPECT_EQ(report.entries_checked, 4u);
  EXPECT_EQ(report.entries_covered, 34u);
}

TEST_F(AuditVerifyTest, FullExportIsNotReportedAsFiltered) {
  AuditVerifyReport report = Verify(Export());
  EXPECT_TRUE(report.ok);
  EXPECT_FALSE(report.filtered);
}

TEST_F(AuditVerifyTest, FilteredExportKeepsTheReadableCopyOfPhi) {
  std::vector<std::string> rendered = FilteredExport(kSome);
  rendered[3] = *AuditExportAddPhi(rendered[3], SyntheticPhi(17), SyntheticSalt(17));
  AuditVerifyReport report = Verify(rendered);
  EXPECT_TRUE(report.ok) << report.problem->message;
  EXPECT_EQ(report.entries_checked, kFilteredLines);
}

// ---- the readable PHI of compliance exports ----

// The honest export with every entry's readable PHI, as a compliance export carries it.
std::vector<std::string> WithPhi(std::vector<std::string> rendered) {
  for (std::string& line : rendered) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j["type"] != "entry") continue;
    const uint64_t i = j["index"];
    line = *AuditExportAddPhi(line, SyntheticPhi(i), SyntheticSalt(i));
  }
  return rendered;
}

// Entry line `index` of `rendered` with `change` applied to its JSON.
void ChangeEntryLine(std::vector<std::string>& rendered, uint64_t index,
                     const std::function<void(nlohmann::json&)>& change) {
  for (std::string& line : rendered) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["type"] != "entry" || j["index"] != index) continue;
    change(j);
    line = j.dump();
    return;
  }
  std::abort();
}

TEST_F(AuditVerifyTest, BoundPhiVerifiesInFullAndFilteredExports) {
  AuditVerifyReport full = Verify(WithPhi(Render(Export())));
  EXPECT_TRUE(full.ok) << full.problem->message;
  AuditVerifyReport filtered = Verify(WithPhi(FilteredExport(kSome)));
  EXPECT_TRUE(filtered.ok) << filtered.problem->message;
}

TEST_F(AuditVerifyTest, AlteredPhiIsNamed) {
  for (bool filtered : {false, true}) {
    std::vector<std::string> rendered =
        WithPhi(filtered ? FilteredExport(kSome) : Render(Export()));
    ChangeEntryLine(rendered, 17, [](nlohmann::json& j) { j["phi"]["patient_id"] = "someone"; });
    AuditVerifyReport report = Verify(rendered);
    ExpectProblem(report, Kind::kPhiUnbound, 17, 0,
                  "entry 17's readable \"phi\" does not match the entry's phi_commit: it was "
                  "altered");
    EXPECT_EQ(report.entries_checked, filtered ? 3u : 17u);
  }
}

TEST_F(AuditVerifyTest, PhiWithAnotherSaltOrAnAddedFieldIsAltered) {
  std::vector<std::string> rendered = WithPhi(Render(Export()));
  ChangeEntryLine(rendered, 5,
                  [](nlohmann::json& j) { j["phi_salt"] = crypto::HexEncode(SyntheticSalt(6)); });
  EXPECT_EQ(Verify(rendered).problem->kind, Kind::kPhiUnbound);
  rendered = WithPhi(Render(Export()));
  ChangeEntryLine(rendered, 5, [](nlohmann::json& j) { j["phi"]["recipient_name"] = "Insurer"; });
  EXPECT_EQ(Verify(rendered).problem->kind, Kind::kPhiUnbound);
}

TEST_F(AuditVerifyTest, PhiWithoutSaltIsUnbound) {
  std::vector<std::string> rendered = WithPhi(Render(Export()));
  ChangeEntryLine(rendered, 8, [](nlohmann::json& j) { j.erase("phi_salt"); });
  ExpectProblem(Verify(rendered), Kind::kPhiUnbound, 8, 0,
                "entry 8 carries a readable \"phi\" without \"phi_salt\": nothing binds it to "
                "the entry");
}

TEST_F(AuditVerifyTest, PhiOnAnEntryThatCommitsToNoneIsUnbound) {
  entries_ = ChainedEntries(0, kEntries, "", "record.read", /*commit_phi=*/false);
  std::vector<std::string> rendered = Render(Export());
  ChangeEntryLine(rendered, 12, [](nlohmann::json& j) {
    j["phi"] = SyntheticPhi(12);
    j["phi_salt"] = crypto::HexEncode(SyntheticSalt(12));
  });
  ExpectProblem(Verify(rendered), Kind::kPhiUnbound, 12, 0,
                "entry 12 carries a readable \"phi\" but commits to no PHI: it was added or "
                "altered");
}

TEST_F(AuditVerifyTest, MalformedPhiMembers) {
  for (const auto& change : std::vector<std::function<void(nlohmann::json&)>>{
           [](nlohmann::json& j) { j.erase("phi"); },                        // salt alone
           [](nlohmann::json& j) { j["phi_salt"] = "abcd"; },                // short salt
           [](nlohmann::json& j) { j["phi_salt"] = std::string(64, 'g'); },  // not hex
           [](nlohmann::json& j) { j["phi_salt"] = 7; },                     // not a string
       }) {
    std::vector<std::string> rendered = WithPhi(Render(Export()));
    ChangeEntryLine(rendered, 0, change);
    AuditVerifyReport report = Verify(rendered);
    ASSERT_TRUE(report.problem.has_value());
    EXPECT_EQ(report.problem->kind, Kind::kMalformedLine);
    EXPECT_EQ(report.problem->index, 1u);
  }
}

// ---- trusted checkpoints and the minimum size ----

TEST_F(AuditVerifyTest, FullExportConsistentWithTrustedCheckpointsVerifies) {
  // 25 is a checkpoint in the export too; 30 is not: its root is recomputed from the entries.
  AuditVerifyReport report = Verify(Export(), Trusting({25, 30, 40}));
  EXPECT_TRUE(report.ok) << report.problem->message;
  EXPECT_EQ(report.trusted_checked, 3u);
  EXPECT_EQ(report.entries_covered, 40u);
}

TEST_F(AuditVerifyTest, ATrustedCheckpointCoversEntriesBeyondTheExportsCheckpoints) {
  AuditVerifyReport report = Verify(Export({10, 25}), Trusting({40}));
  EXPECT_TRUE(report.ok) << report.problem->message;
  EXPECT_EQ(report.entries_covered, 40u);
}

TEST_F(AuditVerifyTest, ExportCutBackToAnOlderCheckpointIsRolledBack) {
  // Complete in itself: entries 0-24 and the checkpoints of 10 and 25.
  std::vector<Line> lines = Export();
  lines.erase(lines.begin() + PositionOfEntry(lines, 25), lines.end());
  ASSERT_TRUE(Verify(lines).ok);
  AuditVerifyReport report = Verify(lines, Trusting({10, 40}));
  ExpectProblem(report, Kind::kRolledBack, 0, 0,
                "log rolled back or cut short: trusted checkpoint saved-40.txt (size 40) has 40 "
                "entries but the export only 25");
  EXPECT_EQ(report.problem->trusted, 2u);
}

TEST_F(AuditVerifyTest, RewrittenLogIsForkedFromATrustedCheckpoint) {
  // Another history of 30 entries, validly signed (the forger cannot sign; the vault did, before
  // someone rewrote its data directory).
  AuditVerifyOptions options;
  const std::vector<std::string> other = ChainedEntries(0, 30, "", "record.amend");
  options.trusted.push_back({"old.txt", Note(30, RootOf(other, 30))});
  AuditVerifyReport report = Verify(Export(), options);
  ExpectProblem(report, Kind::kForked, 0, 0,
                "the export's entries do not match trusted checkpoint old.txt (size 30): the log "
                "was rewritten before entry 30");
  EXPECT_EQ(report.problem->trusted, 1u);
}

TEST_F(AuditVerifyTest, TrustedCheckpointWithAnotherKeyOrMalformedIsRefused) {
  auto other = NewSigner();
  AuditVerifyOptions options;
  options.trusted.push_back({"other.txt", Note(25, RootOf(entries_, 25), other.get())});
  AuditVerifyReport report = Verify(Export(), options);
  ExpectProblem(report, Kind::kBadTrustedCheckpoint, 0, 0,
                "trusted checkpoint other.txt is not signed by the given key");
  EXPECT_EQ(report.problem->trusted, 1u);
  options.trusted = {{"junk.txt", "not a note"}};
  EXPECT_EQ(Verify(Export(), options).problem->kind, Kind::kBadTrustedCheckpoint);
  options = Trusting({25});
  options.origin = "elsewhere";
  EXPECT_EQ(Verify(Export(), options).problem->kind, Kind::kBadTrustedCheckpoint);
}

TEST_F(AuditVerifyTest, MinimumSize) {
  AuditVerifyOptions options;
  options.min_size = 40;
  EXPECT_TRUE(Verify(Export(), options).ok);
  options.min_size = 41;
  ExpectProblem(Verify(Export(), options), Kind::kRolledBack, 0, 0,
                "log rolled back or cut short: the export covers 40 entries, fewer than the "
                "required 41");
  EXPECT_EQ(Verify(FilteredExport(kSome), options).problem->kind, Kind::kRolledBack);
}

TEST_F(AuditVerifyTest, FilteredExportWithAConsistencyProofFromATrustedCheckpointVerifies) {
  std::vector<std::string> rendered = FilteredExport(kSome);
  rendered.push_back(AuditExportConsistencyLine(25, 40, ConsistencyProof(25, 40)));
  AuditVerifyReport report = Verify(rendered, Trusting({25, 40}));
  EXPECT_TRUE(report.ok) << report.problem->message;
  EXPECT_EQ(report.trusted_checked, 2u);  // 40 by equal roots, 25 by the proof
}

TEST_F(AuditVerifyTest, FilteredExportWithoutTheConsistencyProofIsRefused) {
  AuditVerifyReport report = Verify(FilteredExport(kSome), Trusting({25}));
  ExpectProblem(report, Kind::kNoConsistencyProof, 0, 0,
                "the export holds no consistency proof from trusted checkpoint saved-25.txt "
                "(size 25) to its checkpoint: export it again with that trusted checkpoint");
  EXPECT_EQ(report.problem->trusted, 1u);
}

TEST_F(AuditVerifyTest, FilteredExportOfAForkedLogFailsItsConsistencyProof) {
  AuditVerifyOptions options;
  const std::vector<std::string> other = ChainedEntries(0, 25, "", "record.amend");
  options.trusted.push_back({"old.txt", Note(25, RootOf(other, 25))});
  std::vector<std::string> rendered = FilteredExport(kSome);
  rendered.push_back(AuditExportConsistencyLine(25, 40, ConsistencyProof(25, 40)));
  AuditVerifyReport report = Verify(rendered, options);
  ASSERT_TRUE(report.problem.has_value());
  EXPECT_EQ(report.problem->kind, Kind::kForked);
  EXPECT_EQ(report.problem->message.rfind("the export's log is not an extension of trusted "
                                          "checkpoint old.txt (size 25)",
                                          0),
            0u)
      << report.problem->message;
}

TEST_F(AuditVerifyTest, FilteredExportOlderThanATrustedCheckpointIsRolledBack) {
  AuditVerifyReport report = Verify(FilteredExport({0, 1, 20}, 30), Trusting({40}));
  ExpectProblem(report, Kind::kRolledBack, 0, 0,
                "log rolled back: trusted checkpoint saved-40.txt (size 40) is larger than the "
                "export's checkpoint (30 entries)");
}

TEST_F(AuditVerifyTest, MalformedConsistencyLines) {
  for (const std::string& bad : {
           std::string(R"({"type":"consistency","from":1,"to":2})"),
           std::string(R"({"type":"consistency","from":-1,"to":2,"proof":[]})"),
           std::string(R"({"type":"consistency","from":1,"to":2,"proof":["ab"]})"),
           std::string(R"({"type":"consistency","from":1,"to":2,"proof":[],"x":1})"),
       }) {
    std::vector<std::string> rendered = FilteredExport(kSome);
    rendered.push_back(bad);
    AuditVerifyReport report = Verify(rendered);
    ASSERT_TRUE(report.problem.has_value()) << bad;
    EXPECT_EQ(report.problem->kind, Kind::kMalformedLine) << bad;
  }
}

TEST_F(AuditVerifyTest, FilteredExportWithAFlippedByte) {
  std::vector<std::string> rendered = FilteredExport(kSome);
  std::string& line = rendered[3];  // entry 17
  const size_t at = line.find("record.read");
  ASSERT_NE(at, std::string::npos);
  line[at + 10] ^= 0x01;
  AuditVerifyReport report = Verify(rendered);
  ExpectProblem(report, Kind::kAltered, 17, 0, "entry 17 was altered (leaf hash mismatch)");
  EXPECT_EQ(report.entries_checked, 3u);
}

TEST_F(AuditVerifyTest, FilteredExportWithAnEntryRewrittenAndItsLeafHashRecomputed) {
  std::vector<std::string> rendered = FilteredExport(kSome);
  nlohmann::json line = nlohmann::json::parse(rendered[3]);
  const std::string forged = Reencode(entries_[17], [](AuditEntry& e) { e.outcome = "denied"; });
  line["entry"] = forged;
  line["leaf_hash"] = crypto::HexEncode(crypto::AsView(MerkleLeafHash(forged)));
  rendered[3] = line.dump();
  ExpectProblem(Verify(rendered), Kind::kAltered, 17, 0,
                "entry 17 was altered (inclusion proof against checkpoint 1 fails: inclusion "
                "proof does not lead to the root)");
}

TEST_F(AuditVerifyTest, FilteredExportWithAProofHashChanged) {
  std::vector<std::string> rendered = FilteredExport(kSome);
  nlohmann::json line = nlohmann::json::parse(rendered[4]);  // entry 30
  std::string hash = line["inclusion"][1];
  hash[0] = hash[0] == '0' ? '1' : '0';
  line["inclusion"][1] = hash;
  rendered[4] = line.dump();
  ExpectProblem(Verify(rendered), Kind::kAltered, 30, 0,
                "entry 30 was altered (inclusion proof against checkpoint 1 fails: inclusion "
                "proof does not lead to the root)");
}

TEST_F(AuditVerifyTest, FilteredExportWithAProofHashDropped) {
  std::vector<std::string> rendered = FilteredExport(kSome);
  nlohmann::json line = nlohmann::json::parse(rendered[0]);  // entry 3
  line["inclusion"].erase(0);
  rendered[0] = line.dump();
  ExpectProblem(Verify(rendered), Kind::kAltered, 3, 0,
                "entry 3 was altered (inclusion proof against checkpoint 1 fails: inclusion "
                "proof has the wrong length)");
}

TEST_F(AuditVerifyTest, FilteredExportWithARenumberedEntry) {
  // Entry 17's line claims index 18 with entry 18's proof: its bytes still say seq 18.
  std::vector<std::string> rendered = FilteredExport(kSome);
  nlohmann::json line = nlohmann::json::parse(rendered[3]);
  line["index"] = 18;
  line["inclusion"] = nlohmann::json::parse(FilteredExport({18})[0])["inclusion"];
  rendered[3] = line.dump();
  ExpectProblem(Verify(rendered), Kind::kAltered, 18, 0,
                "entry 18 was altered (seq is 18, expected 19)");
}

TEST_F(AuditVerifyTest, FilteredExportWithAnEntryMovedBeforeAnEarlierOne) {
  std::vector<std::string> rendered = FilteredExport(kSome);
  std::rotate(rendered.begin() + 1, rendered.begin() + 4, rendered.begin() + 5);  // 30 before 4
  AuditVerifyReport report = Verify(rendered);
  ExpectProblem(report, Kind::kReordered, 4, 0,
                "entries 4 and 30 reordered (entry 4 comes after entry 30)");
  EXPECT_EQ(report.entries_checked, 2u);
}

TEST_F(AuditVerifyTest, FilteredExportWithADuplicatedEntry) {
  std::vector<std::string> rendered = FilteredExport(kSome);
  rendered.insert(rendered.begin() + 4, rendered[3]);
  ExpectProblem(Verify(rendered), Kind::kInserted, 17, 0,
                "entry inserted after entry 17 (a copy of it)");
}

TEST_F(AuditVerifyTest, FilteredExportWithoutTheCheckpointItsProofsNeed) {
  std::vector<std::string> rendered = FilteredExport(kSome, 40);
  rendered.back() = *AuditExportCheckpointLine(Note(35, RootOf(entries_, 35)));
  AuditVerifyReport report = Verify(rendered);
  ExpectProblem(report, Kind::kNoCheckpoint, 3, 0,
                "entry 3 cannot be proven: its proof is for a tree of size 40 and the export has "
                "no checkpoint of that size");
  EXPECT_EQ(report.entries_checked, 0u);
}

TEST_F(AuditVerifyTest, FilteredExportWithAForgedCheckpoint) {
  auto impostor = NewSigner();
  std::vector<std::string> rendered = FilteredExport(kSome);
  rendered.back() = *AuditExportCheckpointLine(Note(40, RootOf(entries_, 40), impostor.get()));
  ExpectProblem(Verify(rendered), Kind::kBadSignature, 0, 1,
                "checkpoint 1 is not signed by the given key");
}

TEST_F(AuditVerifyTest, EntryLinesWithAndWithoutProofsAreMalformed) {
  std::vector<std::string> rendered = FilteredExport(kSome);
  rendered.insert(rendered.begin() + 3, *AuditExportEntryLine(10, entries_[10]));
  AuditVerifyReport report = Verify(rendered);
  ExpectProblem(report, Kind::kMalformedLine, 4, 0,
                "line 4 is not a valid export line (some entry lines carry an inclusion proof and "
                "others do not: an export is either full or filtered)");

  std::vector<std::string> full = Render(Export());
  full.insert(full.begin() + 2, FilteredExport({2})[0]);
  report = Verify(full);
  ASSERT_TRUE(report.problem.has_value());
  EXPECT_EQ(report.problem->kind, Kind::kMalformedLine);
  EXPECT_EQ(report.problem->index, 3u);
}

TEST_F(AuditVerifyTest, MalformedProofMembers) {
  const nlohmann::json good = nlohmann::json::parse(FilteredExport(kSome)[2]);
  std::vector<nlohmann::json> bad(5, good);
  bad[0].erase("inclusion");
  bad[1].erase("tree_size");
  bad[2]["tree_size"] = -40;
  bad[3]["inclusion"] = "00";
  bad[4]["inclusion"][0] = "xyz";
  for (const nlohmann::json& j : bad) {
    std::vector<std::string> rendered = FilteredExport(kSome);
    rendered[2] = j.dump();
    AuditVerifyReport report = Verify(rendered);
    ASSERT_TRUE(report.problem.has_value()) << j.dump();
    EXPECT_EQ(report.problem->kind, Kind::kMalformedLine) << j.dump();
    EXPECT_EQ(report.problem->index, 3u) << j.dump();
  }
}

// The whole chain: ledger -> Merkle tree -> signed checkpoint -> export -> offline verify.
TEST(AuditVerifyEndToEnd, ExportOfALedgerLogVerifies) {
  auto signer = NewSigner();
  testing::MemoryStore store;
  auto tree = std::move(MerkleTree::Open(store)).value();
  MerkleLedgerObserver observer(*tree);
  auto ledger = std::move(Ledger::Open(store, &observer)).value();

  std::vector<std::string> lines;
  for (uint64_t i = 0; i < 30; ++i) {
    AuditEntry e = SyntheticEntry(i);
    e.user = "Zoë-" + std::to_string(i);  // non-ASCII UTF-8 survives the export
    ASSERT_TRUE(ledger->Commit({}, e).ok());
    lines.push_back(*AuditExportEntryLine(i, *ReadAuditEntryBytes(store, i + 1)));
    if (i % 7 == 6 || i == 29) {
      Checkpoint cp{std::string(kOrigin), tree->size(), tree->Root(), {}};
      lines.push_back(*AuditExportCheckpointLine(*SignCheckpoint(cp, kOrigin, *signer)));
    }
  }
  std::string text;
  for (const std::string& l : lines) text += l + "\n";
  std::istringstream in(text);
  StatusOr<AuditVerifyReport> report =
      VerifyAuditExport(in, {std::string(kOrigin), signer->public_key()});
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem->message;
  EXPECT_EQ(report->entries_checked, 30u);
  EXPECT_EQ(report->checkpoints_checked, 5u);
  EXPECT_EQ(report->entries_covered, 30u);
}

}  // namespace
}  // namespace phivault::storage
