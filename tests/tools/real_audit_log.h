// A real, verifiable audit log for the CLI's audit tests: the storage code's AuditLog (ledger,
// Merkle tree, signed checkpoints) on a temporary RocksDB, signing with a fresh keyring's audit
// key. It writes exports exactly as docs/audit-export.md specifies and serves the proofs and
// checkpoints a fake daemon hands to `phivault`.
#pragma once

#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/keyring.h"
#include "crypto/secret.h"
#include "storage/audit_entry.h"
#include "storage/audit_log.h"
#include "storage/audit_verify.h"
#include "storage/checkpoint.h"
#include "storage/ledger.h"
#include "storage/merkle.h"
#include "storage/store.h"

namespace phivault::testing {

class RealAuditLog {
 public:
  static constexpr const char* kOrigin = "test.example/clinic/audit";

  // `dir` must exist and outlive the log. Aborts on setup failure (a broken test environment).
  explicit RealAuditLog(const std::string& dir) {
    auto keyring = crypto::Keyring::Create({dir + "/keyring", {}}, crypto::SecretBytes::Random(32));
    if (!keyring.ok()) std::abort();
    keyring_ = std::move(*keyring);
    storage::RocksStoreOptions options;
    options.path = dir + "/db";
    options.reserve_bytes = 0;
    auto store = storage::OpenRocksStore(options);
    if (!store.ok()) std::abort();
    store_ = std::move(*store);
    auto log = storage::AuditLog::Open(*store_, keyring_->audit_signer(), kOrigin);
    if (!log.ok()) std::abort();
    log_ = std::move(*log);
  }

  // The PHI that synthetic entry `seq` commits to, and the salt sealed with it.
  static nlohmann::json Phi(uint64_t seq) {
    return {{"patient_id", "SYNTH-" + std::to_string(1000 + seq)}};
  }
  static std::string Salt(uint64_t seq) {
    return std::string(32, static_cast<char>('A' + seq % 26));
  }

  // Commits `n` synthetic read entries (a record read by a test user), each committing to its
  // Phi() as the daemon's entries do.
  void Append(int n) {
    for (int i = 0; i < n; ++i) {
      storage::AuditEntry e;
      const uint64_t next = log_->ledger().size() + 1;
      e.phi_commit = storage::PhiCommitment(Salt(next), Phi(next));
      e.request_id = "req-" + std::to_string(next);
      e.application = "test-ehr";
      e.user = "clinician-" + std::to_string(next % 3);
      e.role = "physician";
      e.action = "record.read";
      e.outcome = "success";
      e.reason = "rule:treat";
      e.purpose = "TREAT";
      e.records = {"rec_" + std::to_string(next)};
      if (!log_->ledger().Commit(storage::WriteBatch{}, std::move(e)).ok()) std::abort();
    }
  }

  // Signs a checkpoint of the current tree; returns its note.
  std::string Checkpoint() {
    auto note = log_->MakeCheckpoint(storage::CheckpointKind::kScheduled);
    if (!note.ok()) std::abort();
    return *note;
  }

  // A checkpoint of any tree signed with this log's key (to forge a fork in tests).
  std::string Sign(const storage::Checkpoint& checkpoint) const {
    auto note = storage::SignCheckpoint(checkpoint, kOrigin, keyring_->audit_signer());
    if (!note.ok()) std::abort();
    return *note;
  }

  std::string VerifierKey() const { return log_->VerifierKey(); }
  uint64_t size() const { return log_->tree().size(); }

  // The JSON Lines export: every entry (with its readable PHI if `with_phi`, as made for the
  // compliance role), each stored checkpoint right after the last entry it covers.
  std::string Export(bool with_phi = false) {
    auto notes = log_->Checkpoints();
    if (!notes.ok()) std::abort();
    std::map<uint64_t, std::vector<std::string>> after;
    for (const std::string& note : *notes) {
      auto cp = storage::OpenCheckpoint(note, Verifier());
      if (!cp.ok()) std::abort();
      after[cp->size].push_back(note);
    }
    std::string out;
    Status s = storage::ScanAuditEntries(
        *store_, 1, size(), [&](const storage::AuditEntry& e, std::string_view bytes) {
          auto line = storage::AuditExportEntryLine(e.seq - 1, bytes);
          if (!line.ok()) std::abort();
          if (with_phi) line = storage::AuditExportAddPhi(*line, Phi(e.seq), Salt(e.seq));
          if (!line.ok()) std::abort();
          out += *line + "\n";
          for (const std::string& note : after[e.seq]) {
            out += *storage::AuditExportCheckpointLine(note) + "\n";
          }
          return true;
        });
    if (!s.ok()) std::abort();
    return out;
  }

  // A filtered export as the daemon writes it: entries `seqs`, each with its inclusion proof
  // against a checkpoint of the current tree, a consistency proof from each of `trusted_sizes`,
  // then that checkpoint.
  std::string FilteredExport(const std::vector<uint64_t>& seqs,
                             const std::vector<uint64_t>& trusted_sizes = {}) {
    const std::string note = Checkpoint();
    const uint64_t m = size();
    std::string out;
    for (uint64_t seq : seqs) {
      auto bytes = storage::ReadAuditEntryBytes(*store_, seq);
      auto path = log_->tree().InclusionProof(seq - 1, m);
      if (!bytes.ok() || !path.ok()) std::abort();
      out += *storage::AuditExportProvenEntryLine(seq - 1, *bytes, m, *path) + "\n";
    }
    for (uint64_t from : trusted_sizes) {
      auto proof = log_->tree().ConsistencyProof(from, m);
      if (!proof.ok()) std::abort();
      out += storage::AuditExportConsistencyLine(from, m, *proof) + "\n";
    }
    return out + *storage::AuditExportCheckpointLine(note) + "\n";
  }

  // The daemon's JSON answers for the proof routes.
  nlohmann::json InclusionJson(uint64_t seq, std::optional<uint64_t> tree_size = std::nullopt) {
    const uint64_t m = tree_size.value_or(size());
    auto path = log_->tree().InclusionProof(seq - 1, m);
    auto leaf = storage::ReadAuditEntryBytes(*store_, seq);
    if (!path.ok() || !leaf.ok()) std::abort();
    return {{"seq", seq},
            {"leaf_index", seq - 1},
            {"tree_size", m},
            {"leaf_hash", Hex(storage::MerkleLeafHash(*leaf))},
            {"path", HexList(*path)}};
  }
  nlohmann::json ConsistencyJson(uint64_t from, uint64_t to) {
    auto path = log_->tree().ConsistencyProof(from, to);
    if (!path.ok()) std::abort();
    return {{"from", from}, {"to", to}, {"path", HexList(*path)}};
  }
  std::optional<std::string> LatestCheckpoint() {
    auto note = log_->LatestCheckpoint();
    if (!note.ok()) return std::nullopt;
    return *note;
  }

  crypto::NoteVerifier Verifier() const {
    auto v = crypto::ParseNoteVerifierKey(VerifierKey());
    if (!v.ok()) std::abort();
    return *v;
  }

  static std::string Hex(const storage::MerkleHash& h) {
    return crypto::HexEncode(crypto::AsView(h));
  }
  static std::vector<std::string> HexList(const std::vector<storage::MerkleHash>& hashes) {
    std::vector<std::string> out;
    for (const auto& h : hashes) out.push_back(Hex(h));
    return out;
  }

 private:
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::AuditLog> log_;
};

}  // namespace phivault::testing
