#include "storage/audit_verify.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "crypto/hash.h"
#include "storage/audit_entry.h"
#include "storage/checkpoint.h"
#include "storage/merkle.h"

namespace phivault::storage {
namespace {

using Json = nlohmann::json;
using Kind = AuditProblem::Kind;

std::string Num(uint64_t n) { return std::to_string(n); }

struct ExportLine {
  enum class Type { kBlank, kEntry, kCheckpoint, kConsistency } type = Type::kBlank;
  uint64_t index = 0;      // entry
  MerkleHash leaf_hash{};  // entry: as exported
  std::string text;        // entry bytes, or checkpoint note
  bool proven = false;     // entry: carries "tree_size" and "inclusion" (a filtered export)
  uint64_t tree_size = 0;  // entry, if proven; consistency: "to"
  std::vector<MerkleHash> inclusion;    // entry, if proven; consistency: "proof"
  std::optional<Json> phi;              // entry: the readable PHI, if any
  std::optional<std::string> phi_salt;  // entry: the raw salt, if any
  uint64_t from = 0;                    // consistency
};

// A 64-hex-digit hash, or nullopt.
std::optional<MerkleHash> HashFromHex(const Json& j) {
  if (!j.is_string()) return std::nullopt;
  StatusOr<std::string> raw = crypto::HexDecode(j.get<std::string>());
  MerkleHash out{};
  if (!raw.ok() || raw->size() != out.size()) return std::nullopt;
  std::memcpy(out.data(), raw->data(), out.size());
  return out;
}

// Parses one export line; InvalidArgument saying what is wrong with it.
StatusOr<ExportLine> ParseExportLine(std::string_view line) {
  ExportLine out;
  if (line.empty()) return out;
  const Json j = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("not a JSON object");
  const auto type = j.find("type");
  if (type == j.end() || !type->is_string()) return InvalidArgument("no \"type\"");
  const auto string_member = [&](const char* name) -> const Json* {
    const auto it = j.find(name);
    return it != j.end() && it->is_string() ? &*it : nullptr;
  };
  if (*type == "checkpoint") {
    const Json* note = string_member("note");
    if (note == nullptr || j.size() != 2) {
      return InvalidArgument("a checkpoint line needs exactly \"type\" and \"note\"");
    }
    out.type = ExportLine::Type::kCheckpoint;
    out.text = note->get<std::string>();
    return out;
  }
  const auto hash_list = [](const Json& list, const char* what,
                            std::vector<MerkleHash>& hashes) -> Status {
    if (!list.is_array()) return InvalidArgument(std::string(what) + " is not an array");
    for (const Json& h : list) {
      const std::optional<MerkleHash> hash = HashFromHex(h);
      if (!hash) return InvalidArgument(std::string("a ") + what + " hash is not 64 hex digits");
      hashes.push_back(*hash);
    }
    return Status::Ok();
  };
  if (*type == "consistency") {
    const auto from = j.find("from");
    const auto to = j.find("to");
    const auto proof = j.find("proof");
    if (from == j.end() || !from->is_number_unsigned() || to == j.end() ||
        !to->is_number_unsigned() || proof == j.end() || j.size() != 4) {
      return InvalidArgument(
          "a consistency line needs exactly \"type\", \"from\", \"to\" and \"proof\"");
    }
    PV_RETURN_IF_ERROR(hash_list(*proof, "\"proof\"", out.inclusion));
    out.type = ExportLine::Type::kConsistency;
    out.from = from->get<uint64_t>();
    out.tree_size = to->get<uint64_t>();
    return out;
  }
  if (*type != "entry") return InvalidArgument("unknown \"type\"");
  const auto index = j.find("index");
  const Json* leaf_hash = string_member("leaf_hash");
  const Json* entry = string_member("entry");
  // "phi" (the unsealed PHI fields, in exports made for the compliance role) is a readable copy
  // of what is sealed inside "entry"; "phi_salt" with the entry's "phi_commit" binds it.
  const auto phi = j.find("phi");
  const Json* phi_salt = string_member("phi_salt");
  const auto tree_size = j.find("tree_size");
  const auto inclusion = j.find("inclusion");
  if ((tree_size == j.end()) != (inclusion == j.end())) {
    return InvalidArgument("\"tree_size\" and \"inclusion\" go together");
  }
  out.proven = tree_size != j.end();
  const bool has_phi = phi != j.end() && phi->is_object();
  const size_t members =
      4 + (has_phi ? 1 : 0) + (phi_salt != nullptr ? 1 : 0) + (out.proven ? 2 : 0);
  if (index == j.end() || !index->is_number_unsigned() || leaf_hash == nullptr ||
      entry == nullptr || j.size() != members) {
    return InvalidArgument(
        "an entry line needs exactly \"type\", \"index\", \"leaf_hash\" and \"entry\" "
        "(and optionally \"phi\" with \"phi_salt\", and \"tree_size\" with \"inclusion\")");
  }
  if (phi_salt != nullptr) {
    StatusOr<std::string> salt = crypto::HexDecode(phi_salt->get<std::string>());
    if (!has_phi) return InvalidArgument("\"phi_salt\" without \"phi\"");
    if (!salt.ok() || salt->size() != 32) {
      return InvalidArgument("\"phi_salt\" is not 64 hex digits");
    }
    out.phi_salt = std::move(salt).value();
  }
  if (has_phi) out.phi = *phi;
  const std::optional<MerkleHash> exported_leaf = HashFromHex(*leaf_hash);
  if (!exported_leaf) return InvalidArgument("\"leaf_hash\" is not 64 hex digits");
  if (out.proven) {
    if (!tree_size->is_number_unsigned()) {
      return InvalidArgument("\"tree_size\" is not an unsigned integer");
    }
    if (!inclusion->is_array()) return InvalidArgument("\"inclusion\" is not an array");
    for (const Json& h : *inclusion) {
      const std::optional<MerkleHash> hash = HashFromHex(h);
      if (!hash) return InvalidArgument("an \"inclusion\" hash is not 64 hex digits");
      out.inclusion.push_back(*hash);
    }
    out.tree_size = tree_size->get<uint64_t>();
  }
  out.type = ExportLine::Type::kEntry;
  out.index = index->get<uint64_t>();
  out.leaf_hash = *exported_leaf;
  out.text = entry->get<std::string>();
  return out;
}

// What the checks need to know about one entry line.
struct EntryFacts {
  uint64_t index = 0;         // the export's index
  MerkleHash leaf{};          // recomputed from the bytes
  bool leaf_matches = false;  // recomputed leaf == exported leaf_hash
  std::string hash_hex;       // hex SHA-256 of the bytes: what the next entry's prev must be
  std::optional<AuditEntry> decoded;
  std::string decode_error;
  std::optional<Json> phi;
  std::optional<std::string> phi_salt;
};

EntryFacts Examine(const ExportLine& line) {
  EntryFacts f;
  f.phi = line.phi;
  f.phi_salt = line.phi_salt;
  f.index = line.index;
  f.leaf = MerkleLeafHash(line.text);
  f.leaf_matches = f.leaf == line.leaf_hash;
  f.hash_hex = crypto::HexEncode(crypto::AsView(crypto::Sha256(line.text)));
  StatusOr<AuditEntry> decoded = DecodeAuditEntry(line.text);
  if (decoded.ok()) {
    f.decoded = std::move(decoded).value();
  } else {
    f.decode_error = decoded.status().message();
  }
  return f;
}

class Verifier {
 public:
  Verifier(const crypto::NoteVerifier& key, const AuditVerifyOptions& options)
      : key_(key), options_(options) {}

  bool failed() const { return report_.problem.has_value(); }

  // Before any line: each trusted checkpoint must be signed by the key, for the expected log.
  void AddTrusted() {
    for (size_t i = 0; i < options_.trusted.size() && !failed(); ++i) {
      const TrustedCheckpoint& t = options_.trusted[i];
      const std::string name = "trusted checkpoint " + t.name;
      StatusOr<Checkpoint> cp = OpenCheckpoint(t.note, key_);
      if (!cp.ok()) {
        const StatusCode code = cp.status().code();
        const std::string why = code == StatusCode::kNotFound || code == StatusCode::kDataLoss
                                    ? " is not signed by the given key"
                                    : " is malformed (" + cp.status().message() + ")";
        return FailTrusted(Kind::kBadTrustedCheckpoint, i + 1, name + why);
      }
      if (!options_.origin.empty() && cp->origin != options_.origin) {
        return FailTrusted(
            Kind::kBadTrustedCheckpoint, i + 1,
            name + " is for log '" + cp->origin + "', not '" + options_.origin + "'");
      }
      trusted_.push_back({i + 1, std::move(cp).value()});
    }
    // Checked against the entries smallest first, as the entries reach each size.
    std::stable_sort(trusted_.begin(), trusted_.end(),
                     [](const Stored& a, const Stored& b) { return a.cp.size < b.cp.size; });
  }

  // Pass 1: consistency proofs, used to link trusted checkpoints to a filtered export.
  void AddConsistency(const ExportLine& line) {
    consistency_.push_back({line.from, line.tree_size, line.inclusion});
  }

  void MalformedLine(uint64_t line_no, const std::string& why) {
    Fail(Kind::kMalformedLine, line_no, 0,
         "line " + Num(line_no) + " is not a valid export line (" + why + ")");
  }

  // Pass 1, in file order: signature, origin and order of each checkpoint.
  void AddCheckpoint(std::string_view note) {
    const uint64_t ordinal = checkpoints_.size() + 1;
    const std::string name = "checkpoint " + Num(ordinal);
    StatusOr<Checkpoint> cp = OpenCheckpoint(note, key_);
    if (!cp.ok()) {
      const StatusCode code = cp.status().code();
      if (code == StatusCode::kNotFound || code == StatusCode::kDataLoss) {
        return Fail(Kind::kBadSignature, 0, ordinal, name + " is not signed by the given key");
      }
      return Fail(Kind::kBadCheckpoint, 0, ordinal,
                  name + " is malformed (" + cp.status().message() + ")");
    }
    if (!options_.origin.empty() && cp->origin != options_.origin) {
      return Fail(Kind::kWrongOrigin, 0, ordinal,
                  name + " is for log '" + cp->origin + "', not '" + options_.origin + "'");
    }
    if (!checkpoints_.empty()) {
      const Checkpoint& prev = checkpoints_.back().cp;
      const std::string prev_name = "checkpoint " + Num(ordinal - 1);
      if (cp->size < prev.size) {
        return Fail(Kind::kReplayedCheckpoint, 0, ordinal,
                    name + " replayed or older than " + prev_name + " (size " + Num(cp->size) +
                        " < " + Num(prev.size) + ")");
      }
      if (cp->size == prev.size && cp->root != prev.root) {
        return Fail(Kind::kConflictingCheckpoint, 0, ordinal,
                    name + " conflicts with " + prev_name + " (same size " + Num(cp->size) +
                        ", different root)");
      }
    }
    checkpoints_.push_back({ordinal, std::move(cp).value()});
  }

  // Pass 1 also sees every entry line: all must carry a proof, or none.
  void SeeEntryLine(uint64_t line_no, const ExportLine& line) {
    if (!entry_lines_seen_) {
      entry_lines_seen_ = true;
      report_.filtered = line.proven;
    } else if (line.proven != report_.filtered) {
      MalformedLine(line_no,
                    "some entry lines carry an inclusion proof and others do not: an export is "
                    "either full or filtered");
    }
  }

  // Pass 2 begins: checkpoints of the empty tree can be checked before any entry.
  void StartEntries() {
    if (!report_.filtered) CheckCheckpointsAtCurrentSize();
  }

  // Pass 2 of a filtered export, in file order: each entry stands on its own proof.
  void AddProvenEntry(const ExportLine& line) {
    if (failed()) return;
    const EntryFacts e = Examine(line);
    const uint64_t i = e.index;
    const std::string at = "entry " + Num(i);
    if (!e.leaf_matches)
      return Fail(Kind::kAltered, i, 0, at + " was altered (leaf hash mismatch)");
    if (!e.decoded) {
      return Fail(Kind::kAltered, i, 0,
                  at + " was altered (not a valid audit entry: " + e.decode_error + ")");
    }
    if (e.decoded->seq != i + 1) {
      return Fail(
          Kind::kAltered, i, 0,
          at + " was altered (seq is " + Num(e.decoded->seq) + ", expected " + Num(i + 1) + ")");
    }
    if (last_proven_ && i == last_proven_->index) {
      return Fail(Kind::kInserted, i, 0,
                  "entry inserted after entry " + Num(i) +
                      (e.hash_hex == last_proven_->hash_hex ? " (a copy of it)"
                                                            : " (with the same index)"));
    }
    if (last_proven_ && i < last_proven_->index) {
      return Fail(Kind::kReordered, i, 0,
                  "entries " + Num(i) + " and " + Num(last_proven_->index) + " reordered (" + at +
                      " comes after entry " + Num(last_proven_->index) + ")");
    }
    const Stored* cp = CheckpointOfSize(line.tree_size);
    if (cp == nullptr) {
      return Fail(Kind::kNoCheckpoint, i, 0,
                  at + " cannot be proven: its proof is for a tree of size " + Num(line.tree_size) +
                      " and the export has no checkpoint of that size");
    }
    if (Status proof = VerifyInclusionProof(i, line.tree_size, e.leaf, line.inclusion, cp->cp.root);
        !proof.ok()) {
      return Fail(Kind::kAltered, i, 0,
                  at + " was altered (inclusion proof against checkpoint " + Num(cp->ordinal) +
                      " fails: " + proof.message() + ")");
    }
    // The chain links only neighbours; a filtered export holds both only sometimes.
    const bool follows = last_proven_ ? last_proven_->index + 1 == i : i == 0;
    if (follows && e.decoded->prev_hash != (last_proven_ ? last_proven_->hash_hex : "")) {
      return Fail(Kind::kAltered, i, 0,
                  at + " was altered (hash chain broken: its prev does not match " +
                      (i == 0 ? "the start of the log" : "entry " + Num(i - 1)) + ")");
    }
    if (!CheckPhi(e, i)) return;
    last_proven_ = Proven{i, e.hash_hex};
    ++report_.entries_checked;
  }

  // Pass 2, in file order. Each entry is judged once the next one is known (or at the end),
  // because telling a removal from a swap or an insertion needs one entry of lookahead.
  void AddEntry(const ExportLine& line) {
    EntryFacts facts = Examine(line);
    if (window_) Judge(*window_, &facts);
    window_ = std::move(facts);
  }

  AuditVerifyReport Finish() {
    if (report_.filtered) {
      if (!failed()) {
        report_.checkpoints_checked = checkpoints_.size();
        if (!checkpoints_.empty()) {
          report_.entries_covered = checkpoints_.back().cp.size;
          report_.checkpoint_time = checkpoints_.back().cp.time_unix_seconds;
        }
        CheckTrustedAgainstFiltered();
        CheckMinSize();
      }
      report_.ok = !failed();
      return report_;
    }
    if (!failed() && window_) Judge(*window_, nullptr);
    window_.reset();
    if (!failed() && next_checkpoint_ < checkpoints_.size()) {
      const Stored& cp = checkpoints_[next_checkpoint_];
      Fail(Kind::kTruncated, range_.size(), cp.ordinal,
           "log truncated: checkpoint of size " + Num(cp.cp.size) + " but only " +
               Num(range_.size()) + " entries");
    }
    if (!failed() && next_trusted_ < trusted_.size()) {
      const Stored& t = trusted_[next_trusted_];
      FailTrusted(Kind::kRolledBack, t.ordinal,
                  "log rolled back or cut short: trusted checkpoint " + TrustedName(t) + " has " +
                      Num(t.cp.size) + " entries but the export only " + Num(range_.size()));
    }
    CheckMinSize();
    if (!failed() && report_.entries_covered < range_.size()) {
      const uint64_t first = report_.entries_covered;
      Fail(Kind::kUncovered, first, 0,
           "entry " + Num(first) + " is not covered by any signed checkpoint (" +
               (checkpoints_.empty() && trusted_.empty()
                    ? std::string("the export has none")
                    : "the largest covers " + Num(first) + " entries") +
               "): entries " + Num(first) + " to " + Num(range_.size() - 1) +
               " could have been written by anyone");
    }
    if (!failed() && checkpoints_.empty() && trusted_.empty()) {
      Fail(Kind::kUncovered, 0, 0,
           "the export holds no signed checkpoint: nothing in it is covered");
    }
    report_.ok = !failed();
    return report_;
  }

 private:
  struct Stored {
    uint64_t ordinal;
    Checkpoint cp;
  };
  struct Proven {
    uint64_t index;
    std::string hash_hex;
  };
  struct Consistency {
    uint64_t from;
    uint64_t to;
    std::vector<MerkleHash> proof;
  };

  std::string TrustedName(const Stored& t) const {
    return options_.trusted[t.ordinal - 1].name + " (size " + Num(t.cp.size) + ")";
  }

  void FailTrusted(Kind kind, uint64_t ordinal, std::string message) {
    if (failed()) return;
    report_.problem = AuditProblem{kind, 0, 0, std::move(message), ordinal};
  }

  // The readable PHI of an entry line, if any, must be what the entry commits to.
  bool CheckPhi(const EntryFacts& e, uint64_t i) {
    if (!e.phi) return true;
    const std::string at = "entry " + Num(i);
    if (e.decoded->phi_commit.empty()) {
      Fail(Kind::kPhiUnbound, i, 0,
           at + " carries a readable \"phi\" but commits to no PHI: it was added or altered");
      return false;
    }
    if (!e.phi_salt) {
      Fail(Kind::kPhiUnbound, i, 0,
           at + " carries a readable \"phi\" without \"phi_salt\": nothing binds it to the entry");
      return false;
    }
    if (PhiCommitment(*e.phi_salt, *e.phi) != e.decoded->phi_commit) {
      Fail(Kind::kPhiUnbound, i, 0,
           at + "'s readable \"phi\" does not match the entry's phi_commit: it was altered");
      return false;
    }
    return true;
  }

  void CheckMinSize() {
    if (failed() || options_.min_size == 0 || report_.entries_covered >= options_.min_size) return;
    FailTrusted(Kind::kRolledBack, 0,
                "log rolled back or cut short: the export covers " + Num(report_.entries_covered) +
                    " entries, fewer than the required " + Num(options_.min_size));
  }

  // Filtered export: each trusted checkpoint must be a prefix of the export's signed tree,
  // shown by equal roots at an equal size or by a consistency proof line from its size.
  void CheckTrustedAgainstFiltered() {
    const uint64_t size = report_.entries_covered;
    for (const Stored& t : trusted_) {
      if (failed()) return;
      const std::string name = "trusted checkpoint " + TrustedName(t);
      if (t.cp.size > size) {
        return FailTrusted(Kind::kRolledBack, t.ordinal,
                           "log rolled back: " + name +
                               " is larger than the export's checkpoint (" + Num(size) +
                               " entries)");
      }
      if (const Stored* same = CheckpointOfSize(t.cp.size); same != nullptr) {
        if (same->cp.root != t.cp.root) {
          return FailTrusted(Kind::kForked, t.ordinal,
                             name + " conflicts with checkpoint " + Num(same->ordinal) +
                                 " of the export (same size, different root): the log was "
                                 "rewritten");
        }
        ++report_.trusted_checked;
        continue;
      }
      const Consistency* proof = nullptr;
      const Stored* to = nullptr;
      for (const Consistency& c : consistency_) {
        if (c.from != t.cp.size) continue;
        to = CheckpointOfSize(c.to);
        if (to != nullptr) {
          proof = &c;
          break;
        }
      }
      if (proof == nullptr) {
        return FailTrusted(Kind::kNoConsistencyProof, t.ordinal,
                           "the export holds no consistency proof from " + name +
                               " to its checkpoint: export it again with that trusted "
                               "checkpoint");
      }
      if (Status s =
              VerifyConsistencyProof(t.cp.size, to->cp.size, proof->proof, t.cp.root, to->cp.root);
          !s.ok()) {
        return FailTrusted(Kind::kForked, t.ordinal,
                           "the export's log is not an extension of " + name +
                               " (consistency proof to checkpoint " + Num(to->ordinal) +
                               " fails: " + s.message() + ")");
      }
      ++report_.trusted_checked;
    }
  }

  // A checkpoint of `size` (all of one size have one root: pass 1 enforces it), or null.
  const Stored* CheckpointOfSize(uint64_t size) const {
    for (const Stored& s : checkpoints_) {
      if (s.cp.size == size) return &s;
    }
    return nullptr;
  }

  void Fail(Kind kind, uint64_t index, uint64_t checkpoint, std::string message) {
    if (failed()) return;
    report_.problem = AuditProblem{kind, index, checkpoint, std::move(message)};
  }

  // Hex hash of the entry `back` places before the next position ("" before the first entry,
  // which is what the first entry's prev holds).
  const std::string& PrevHash(size_t back) const {
    static const std::string kNone;
    return back < recent_.size() ? recent_[recent_.size() - 1 - back] : kNone;
  }

  void Judge(const EntryFacts& e, const EntryFacts* next_facts) {
    if (failed()) return;
    const uint64_t p = range_.size();
    const std::string at = "entry " + Num(p);
    if (!e.leaf_matches)
      return Fail(Kind::kAltered, p, 0, at + " was altered (leaf hash mismatch)");
    if (!e.decoded) {
      return Fail(Kind::kAltered, p, 0,
                  at + " was altered (not a valid audit entry: " + e.decode_error + ")");
    }
    const uint64_t seq = e.decoded->seq;
    const std::string& prev = e.decoded->prev_hash;
    const bool linked = prev == PrevHash(0);
    if (linked && e.index == p && seq == p + 1) {
      if (!CheckPhi(e, p)) return;
      return Accept(e);
    }

    // Lookahead is only trusted if the next entry is intact in itself.
    const EntryFacts* next =
        next_facts != nullptr && next_facts->leaf_matches && next_facts->decoded ? next_facts
                                                                                 : nullptr;
    const auto claims = [](const EntryFacts& x, uint64_t pos) {
      return x.index == pos || x.decoded->seq == pos + 1;
    };
    if (next != nullptr && ((claims(e, p + 1) && claims(*next, p)) ||
                            (prev == next->hash_hex && next->decoded->prev_hash == PrevHash(0)))) {
      return Fail(Kind::kReordered, p, 0,
                  "entries " + Num(p) + " and " + Num(p + 1) + " reordered");
    }
    if (p > 0 && e.hash_hex == PrevHash(0)) {
      return Fail(Kind::kInserted, p, 0,
                  "entry inserted at " + Num(p) + " (a copy of entry " + Num(p - 1) + ")");
    }
    if (!linked && next != nullptr && next->decoded->prev_hash == PrevHash(0)) {
      return Fail(Kind::kInserted, p, 0, "entry inserted at " + Num(p));
    }
    if (!linked && p > 0 && prev == PrevHash(1)) {
      return Fail(Kind::kInserted, p - 1, 0, "entry inserted at " + Num(p - 1));
    }
    if (!linked && (e.index > p || seq > p + 1)) {
      const uint64_t to = e.index > p ? e.index : seq - 1;
      std::string what = to == p + 1 ? at : "entries " + Num(p) + " to " + Num(to - 1);
      what += p == 0 ? " missing (log starts at index " + Num(to) + ")"
                     : " missing (index jumps from " + Num(p - 1) + " to " + Num(to) + ")";
      return Fail(Kind::kMissing, p, 0, what);
    }
    if (!linked) {
      // Changing an entry breaks the link to it from the next entry. If this entry's link to
      // its predecessor is broken but the next one links to it, the predecessor was changed;
      // if the next link is broken too, this entry's own bytes (its prev) were.
      if (p == 0 || (next != nullptr && next->decoded->prev_hash != e.hash_hex)) {
        return Fail(Kind::kAltered, p, 0,
                    at + " was altered (hash chain broken: its prev does not match " +
                        (p == 0 ? "the start of the log" : "entry " + Num(p - 1)) + ")");
      }
      return Fail(Kind::kAltered, p - 1, 0,
                  "entry " + Num(p - 1) + " was altered (hash chain broken: entry " + Num(p) +
                      " does not link to it)");
    }
    if (e.index != p) {
      return Fail(Kind::kAltered, p, 0, at + " was altered (index field is " + Num(e.index) + ")");
    }
    return Fail(Kind::kAltered, p, 0,
                at + " was altered (seq is " + Num(seq) + ", expected " + Num(p + 1) + ")");
  }

  void Accept(const EntryFacts& e) {
    range_.Append(e.leaf);
    recent_.push_back(e.hash_hex);
    if (recent_.size() > 2) recent_.erase(recent_.begin());
    report_.entries_checked = range_.size();
    CheckCheckpointsAtCurrentSize();
  }

  void CheckCheckpointsAtCurrentSize() {
    while (!failed() && next_checkpoint_ < checkpoints_.size() &&
           checkpoints_[next_checkpoint_].cp.size == range_.size()) {
      const Stored& cp = checkpoints_[next_checkpoint_];
      if (cp.cp.root != range_.Root()) {
        const uint64_t from = report_.entries_covered;
        return Fail(Kind::kRootMismatch, from, cp.ordinal,
                    "checkpoint " + Num(cp.ordinal) + " (size " + Num(cp.cp.size) +
                        ") does not match the entries: an entry from " + Num(from) + " to " +
                        Num(cp.cp.size - 1) + " was altered, inserted or removed");
      }
      report_.entries_covered = cp.cp.size;
      report_.checkpoint_time = cp.cp.time_unix_seconds;
      ++report_.checkpoints_checked;
      ++next_checkpoint_;
    }
    while (!failed() && next_trusted_ < trusted_.size() &&
           trusted_[next_trusted_].cp.size == range_.size()) {
      const Stored& t = trusted_[next_trusted_];
      if (t.cp.root != range_.Root()) {
        return FailTrusted(Kind::kForked, t.ordinal,
                           "the export's entries do not match trusted checkpoint " +
                               TrustedName(t) + ": the log was rewritten before entry " +
                               Num(t.cp.size));
      }
      // A trusted checkpoint is signed by the same key: it covers what it matches.
      report_.entries_covered = std::max(report_.entries_covered, t.cp.size);
      ++report_.trusted_checked;
      ++next_trusted_;
    }
  }

  const crypto::NoteVerifier& key_;
  const AuditVerifyOptions& options_;
  std::vector<Stored> checkpoints_;   // sizes non-decreasing (pass 1 enforces it)
  size_t next_checkpoint_ = 0;        // first checkpoint whose root is not yet checked
  CompactRange range_;                // the accepted entries' leaves
  std::vector<std::string> recent_;   // hex hashes of the last (up to) two accepted entries
  std::optional<EntryFacts> window_;  // the entry waiting for its lookahead
  bool entry_lines_seen_ = false;
  std::optional<Proven> last_proven_;  // filtered: the last accepted entry
  std::vector<Stored> trusted_;        // ordinal = position in options_.trusted; sorted by size
  size_t next_trusted_ = 0;            // full: first trusted checkpoint not yet matched
  std::vector<Consistency> consistency_;
  AuditVerifyReport report_;
};

}  // namespace

StatusOr<AuditVerifyReport> VerifyAuditExport(std::istream& in,
                                              const crypto::NoteVerifier& verifier,
                                              const AuditVerifyOptions& options) {
  const std::streampos start = in.tellg();
  if (start == std::streampos(-1)) return InvalidArgument("the audit export must be seekable");
  Verifier v(verifier, options);
  v.AddTrusted();

  // Runs `fn` on each parsed line; false if the input could not be read.
  const auto for_each_line = [&](const auto& fn) {
    std::string line;
    uint64_t line_no = 0;
    while (!v.failed() && std::getline(in, line)) {
      ++line_no;
      StatusOr<ExportLine> parsed = ParseExportLine(line);
      if (!parsed.ok()) {
        v.MalformedLine(line_no, parsed.status().message());
      } else {
        fn(*parsed, line_no);
      }
    }
    return !in.bad();
  };

  if (!v.failed() && !for_each_line([&](const ExportLine& l, uint64_t line_no) {
        if (l.type == ExportLine::Type::kCheckpoint) v.AddCheckpoint(l.text);
        if (l.type == ExportLine::Type::kConsistency) v.AddConsistency(l);
        if (l.type == ExportLine::Type::kEntry) v.SeeEntryLine(line_no, l);
      })) {
    return Unavailable("cannot read the audit export");
  }
  if (!v.failed()) {
    in.clear();
    in.seekg(start);
    if (!in) return InvalidArgument("the audit export must be seekable");
    v.StartEntries();
    if (!for_each_line([&](const ExportLine& l, uint64_t) {
          if (l.type != ExportLine::Type::kEntry) return;
          if (l.proven) {
            v.AddProvenEntry(l);
          } else {
            v.AddEntry(l);
          }
        })) {
      return Unavailable("cannot read the audit export");
    }
  }
  return v.Finish();
}

namespace {

Json EntryLineJson(uint64_t index, std::string_view entry_bytes) {
  return {{"type", "entry"},
          {"index", index},
          {"leaf_hash", crypto::HexEncode(crypto::AsView(MerkleLeafHash(entry_bytes)))},
          {"entry", std::string(entry_bytes)}};
}

StatusOr<std::string> DumpEntryLine(const Json& j) {
  try {
    return j.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::strict);
  } catch (const Json::exception&) {
    return InvalidArgument("audit entry bytes are not valid UTF-8");
  }
}

}  // namespace

StatusOr<std::string> AuditExportEntryLine(uint64_t index, std::string_view entry_bytes) {
  return DumpEntryLine(EntryLineJson(index, entry_bytes));
}

StatusOr<std::string> AuditExportProvenEntryLine(uint64_t index, std::string_view entry_bytes,
                                                 uint64_t tree_size,
                                                 std::span<const MerkleHash> inclusion) {
  Json j = EntryLineJson(index, entry_bytes);
  j["tree_size"] = tree_size;
  Json& path = j["inclusion"] = Json::array();
  for (const MerkleHash& h : inclusion) path.push_back(crypto::HexEncode(crypto::AsView(h)));
  return DumpEntryLine(j);
}

StatusOr<std::string> AuditExportAddPhi(std::string entry_line, const Json& phi,
                                        std::string_view salt) {
  if (entry_line.size() < 2 || entry_line.front() != '{' || entry_line.back() != '}') {
    return InvalidArgument("not an export entry line");
  }
  const std::string phi_text = CanonicalPhiJson(phi);
  // The line is a JSON object of our own making: add the members before its closing brace
  // rather than parsing it again.
  entry_line.pop_back();
  entry_line += ",\"phi\":";
  entry_line += phi_text;
  entry_line += ",\"phi_salt\":\"";
  entry_line += crypto::HexEncode(salt);
  entry_line += "\"}";
  return entry_line;
}

std::string AuditExportConsistencyLine(uint64_t from, uint64_t to,
                                       std::span<const MerkleHash> proof) {
  Json j = {{"type", "consistency"}, {"from", from}, {"to", to}, {"proof", Json::array()}};
  for (const MerkleHash& h : proof) j["proof"].push_back(crypto::HexEncode(crypto::AsView(h)));
  return j.dump();
}

StatusOr<std::string> AuditExportCheckpointLine(std::string_view note) {
  Json j = {{"type", "checkpoint"}, {"note", std::string(note)}};
  try {
    return j.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::strict);
  } catch (const Json::exception&) {
    return InvalidArgument("checkpoint note is not valid UTF-8");
  }
}

}  // namespace phivault::storage
