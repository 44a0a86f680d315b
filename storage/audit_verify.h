// Offline verification of an audit log export (`phivault audit verify`), with nothing but the
// export and the audit verifier key.
//
// Export format (JSON Lines, UTF-8, one JSON object per line; docs/audit-export.md):
//   {"type":"entry","index":<i>,"leaf_hash":"<hex SHA-256(0x00 || entry)>","entry":"<bytes>"}
//       one per audit entry (entry seq = index + 1); "entry" is the exact canonical entry bytes
//       (storage/audit_entry.h) as a JSON string. Exports made for the compliance role add
//       "phi":{...} (the entry's sealed PHI fields, readable) and "phi_salt":"<hex of 32 bytes>",
//       which bind it: PhiCommitment(salt, phi) must equal the entry's "phi_commit".
//   {"type":"checkpoint","note":"<C2SP signed note of a tlog-checkpoint>"}
//       signed checkpoints (storage/checkpoint.h), oldest first, anywhere among the entries.
//   {"type":"consistency","from":<size>,"to":<size>,"proof":["<hex>", ...]}
//       an RFC 9162 consistency proof from the tree of <from> leaves to the export's checkpoint
//       of size <to>: filtered exports carry one per trusted size the export was asked for.
// A full export holds every entry, index 0, 1, 2, ... in order, ending with a checkpoint that
// covers them all. A filtered export holds some entries, indexes increasing, and each entry line
// also carries
//   "tree_size":<S>,"inclusion":["<hex>", ...]
//       the RFC 9162 inclusion proof of leaf <index> in the tree of S leaves, lowest sibling
//       first; the export must hold a signed checkpoint of size S.
// Either every entry line carries a proof (filtered) or none does (full).
// Blank lines are ignored; member order within an object does not matter.
//
// What is checked, in this order, stopping at the first problem:
//   0. each trusted checkpoint (AuditVerifyOptions): its signature by the given key and origin;
//   1. every line is a well-formed export line;
//   2. each checkpoint, in file order: its signature by the given key, its origin (if one is
//      expected), and that its size is not below the previous checkpoint's (equal sizes need
//      equal roots);
//   3. full export: each entry, in order: its leaf hash recomputed, its index contiguous from 0,
//      its "seq" equal to index + 1 and its "prev" equal to the hex SHA-256 of the previous
//      entry's bytes (hash chain), its "phi" against its commitment; and every checkpoint's and
//      trusted checkpoint's root against the root recomputed from the leaves at its size, as
//      soon as the entries reach that size;
//      filtered export: each entry, in order: its leaf hash recomputed, its "seq" equal to
//      index + 1, its index above the previous entry's, its inclusion proof against the root of
//      the checkpoint of its tree size, its "prev" if the previous entry is its predecessor, its
//      "phi" against its commitment;
//   4. full export: that no checkpoint covers more entries than the export holds;
//   5. that the export is not smaller than any trusted checkpoint or the minimum size, and
//      (filtered export) that each trusted checkpoint is consistent with the export's
//      checkpoint: equal roots at equal sizes, else a consistency proof line from its size;
//   6. full export: that every entry is covered by a verified checkpoint (an export checkpoint
//      or a trusted one): nothing that no signature covers is reported ok.
// Checks 2 and 3 together establish that consecutive checkpoints are consistent: both roots are
// recomputed from one sequence of leaves, the older size being the smaller.
// A filtered export proves that each entry it holds is in the signed log at its index; it cannot
// prove that the filter left out nothing that matched. Without a trusted checkpoint or minimum
// size, nothing shows that an export is not an older (shorter) one, complete in itself.
#pragma once

#include <cstdint>
#include <istream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/status.h"
#include "crypto/signing.h"
#include "storage/merkle.h"

namespace phivault::storage {

struct AuditProblem {
  enum class Kind {
    kMalformedLine,          // a line is not a valid export line
    kBadCheckpoint,          // a checkpoint note or its text is malformed
    kBadSignature,           // a checkpoint is not signed by the given key
    kWrongOrigin,            // a checkpoint names another log
    kReplayedCheckpoint,     // a checkpoint is older than the one before it
    kConflictingCheckpoint,  // two checkpoints of one size with different roots (a fork)
    kAltered,                // an entry's bytes or numbering were changed
    kMissing,                // entries were removed from the middle of the log
    kReordered,              // entries appear out of order
    kInserted,               // an entry was added that is not part of the log
    kRootMismatch,           // a checkpoint's root differs from the entries' root at its size
    kTruncated,              // a checkpoint covers more entries than the export holds
    kNoCheckpoint,           // an entry's proof is for a tree size no checkpoint has
    kUncovered,              // full export: an entry no verified checkpoint covers
    kPhiUnbound,             // an entry's readable "phi" is not the one its entry commits to
    kBadTrustedCheckpoint,   // a trusted checkpoint is malformed, wrongly signed or of another log
    kRolledBack,             // the export is smaller than a trusted checkpoint or the minimum size
    kForked,                 // the export's log differs from a trusted checkpoint's at its size
    kNoConsistencyProof,     // filtered export: no proof links a trusted checkpoint to it
  };
  Kind kind;
  // For entry problems (kAltered .. kPhiUnbound): the entry index (seq - 1) of the first bad,
  // missing or uncovered entry. For kMalformedLine: the 1-based line number.
  uint64_t index = 0;
  // For checkpoint problems: the 1-based position of the checkpoint among the export's
  // checkpoints; 0 otherwise.
  uint64_t checkpoint = 0;
  // One sentence for people, e.g. "entry 17 was altered (leaf hash mismatch)".
  std::string message;
  // For trusted-checkpoint problems (kBadTrustedCheckpoint, kRolledBack, kForked,
  // kNoConsistencyProof): the 1-based position in AuditVerifyOptions::trusted; 0 otherwise
  // (kRolledBack against the minimum size).
  uint64_t trusted = 0;
};

struct AuditVerifyReport {
  bool ok = false;
  bool filtered = false;         // the entry lines carry inclusion proofs
  uint64_t entries_checked = 0;  // entries that passed every check before the first problem
  // Full export: checkpoints whose signature and root verified. Filtered export: checkpoints
  // whose signature verified (their roots are what the entries' proofs are checked against).
  uint64_t checkpoints_checked = 0;
  uint64_t entries_covered = 0;  // size of the largest verified checkpoint (or trusted one)
  // The signing time (unix seconds) of the export's largest verified checkpoint, if it has one.
  std::optional<int64_t> checkpoint_time;
  uint64_t trusted_checked = 0;         // trusted checkpoints the export was shown consistent with
  std::optional<AuditProblem> problem;  // set iff !ok
};

// A checkpoint the verifier's user kept from earlier (a previous export, `phivault audit
// checkpoint`): the export must extend the log it signs.
struct TrustedCheckpoint {
  std::string name;  // how messages name it, e.g. its file name
  std::string note;  // the signed note, checked with the same key as the export
};

struct AuditVerifyOptions {
  // If non-empty, every checkpoint's origin must equal it.
  std::string origin;
  // The export must be consistent with each, and cover at least as many entries.
  std::vector<TrustedCheckpoint> trusted;
  // The export must cover at least this many entries.
  uint64_t min_size = 0;
};

// Verifies the export read from `in`, which is read twice (checkpoints first, then entries) and
// must therefore be seekable (a file, or stdin redirected from one). Problems with the log are
// reported in the returned report; the Status is an error only when the input cannot be read
// (InvalidArgument "the audit export must be seekable", Unavailable on a read error).
StatusOr<AuditVerifyReport> VerifyAuditExport(std::istream& in,
                                              const crypto::NoteVerifier& verifier,
                                              const AuditVerifyOptions& options = {});

// The export line (without its newline) for entry `index` with canonical bytes `entry_bytes`.
// InvalidArgument if the bytes are not valid UTF-8 (canonical entries always are).
StatusOr<std::string> AuditExportEntryLine(uint64_t index, std::string_view entry_bytes);
// The filtered-export line (without its newline) for entry `index`: the line above plus
// "tree_size" and "inclusion", the hex of `inclusion` (MerkleTree::InclusionProof(index,
// tree_size)). Errors as AuditExportEntryLine.
StatusOr<std::string> AuditExportProvenEntryLine(uint64_t index, std::string_view entry_bytes,
                                                 uint64_t tree_size,
                                                 std::span<const MerkleHash> inclusion);
// The export line (without its newline) for a signed checkpoint note.
StatusOr<std::string> AuditExportCheckpointLine(std::string_view note);
// `entry_line` (an entry line from the functions above) with "phi" and "phi_salt" (hex of
// `salt`) added: the readable PHI of a compliance export, bound by the entry's phi_commit.
// InvalidArgument if `entry_line` is not a JSON object line.
StatusOr<std::string> AuditExportAddPhi(std::string entry_line, const nlohmann::json& phi,
                                        std::string_view salt);
// The export line (without its newline) of an RFC 9162 consistency proof from the tree of
// `from` leaves to that of `to` leaves (MerkleTree::ConsistencyProof(from, to)).
std::string AuditExportConsistencyLine(uint64_t from, uint64_t to,
                                       std::span<const MerkleHash> proof);

}  // namespace phivault::storage
