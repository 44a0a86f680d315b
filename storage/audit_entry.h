// One audit log entry and its canonical byte form.
//
// The bytes are canonical JSON (keys sorted, no insignificant whitespace, UTF-8), one entry per
// leaf of the audit Merkle tree: leaf hash = SHA-256(0x00 || bytes). Fields that could be PHI
// (patient id, disclosure recipient, break-glass reason, free text) are never stored in the clear:
// they travel sealed under the keyring's audit key in `sealed_phi`. The patient appears only as
// a blind id, which lets the log be indexed and filtered by patient without revealing who.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/status.h"

namespace phivault::storage {

struct AuditEntry {
  // Set by the ledger when the entry is committed:
  uint64_t seq = 0;          // 1, 2, 3, ... without gaps
  int64_t time_unix_us = 0;  // commit time, UTC microseconds
  std::string prev_hash;     // hex SHA-256 of the previous entry's bytes ("" for seq 1)

  // Set by the service layer:
  std::string request_id;
  std::string application;  // authenticated application name, or "cli:<uid>" for operators
  std::string user;         // the acting user (workforce id, not PHI)
  std::string role;
  std::string action;                // e.g. "record.create", "record.read", "record.list"
  std::string outcome;               // "success", "denied", "error"
  std::string reason;                // the rule that decided, or the error type
  std::string purpose;               // HL7 PurposeOfUse code, e.g. "TREAT"
  std::string patient_bid;           // hex blind id of the patient, "" if none
  std::vector<std::string> records;  // "<record id>" or "<record id>@<version>"
  std::string sealed_phi;            // base64 of the audit-key-sealed JSON object of PHI fields
  // Hex SHA-256 commitment to the PHI fields (PhiCommitment below), "" when there are none. It
  // binds the readable copy of the PHI that compliance exports carry to the hashed entry.
  std::string phi_commit;
  bool break_glass = false;

  // Who connected (SO_PEERCRED), whatever they claimed.
  uint32_t peer_uid = 0;
  int64_t peer_pid = 0;
  // For requests that failed authentication: the user, role and purpose the caller claimed
  // (user, role and purpose then stay empty, so a stranger's claim never reads as an identity).
  std::string claimed_user;
  std::string claimed_role;
  std::string claimed_purpose;
  // How many attempts this entry stands for: 1, or more for a summary of repeated failed
  // authentications from one peer uid.
  uint64_t count = 1;

  // Set by the ledger: the sequence number of the previous entry naming the same patient
  // (entries with a patient_bid only) and of the previous entry by the same user; 0 for none.
  // These chains, inside the hashed bytes, make a deleted index key detectable.
  uint64_t patient_prev = 0;
  uint64_t user_prev = 0;
};

// Canonical JSON bytes of `e` (all fields, including seq/time/prev). Object keys, in the order
// they appear: action, app, btg, claimed_purpose, claimed_role, claimed_user, count, outcome,
// patient_bid, patient_prev, peer_pid, peer_uid, phi, phi_commit, prev, purpose, reason, records,
// request_id, role, seq, time_us, user, user_prev. InvalidArgument naming the field if a string
// is not valid UTF-8 (it could not be encoded deterministically).
StatusOr<std::string> EncodeAuditEntry(const AuditEntry& e);
// Parses bytes produced by EncodeAuditEntry. DataLoss naming the field if a field is missing,
// has the wrong type, or is unknown, or if `bytes` is not exactly the canonical encoding.
StatusOr<AuditEntry> DecodeAuditEntry(std::string_view bytes);

// Canonical text of a PHI object (compact JSON, keys sorted, UTF-8; an invalid UTF-8 sequence
// becomes U+FFFD, so a parsed copy of this text has the same canonical text): what the
// commitment covers.
std::string CanonicalPhiJson(const nlohmann::json& phi);
// The commitment to PHI fields: hex SHA-256("phivault/audit/phi-commit/v1" || 0x00 || salt ||
// canonical PHI JSON). `salt` is 32 random bytes kept sealed with the PHI, so the commitment
// reveals nothing about PHI that could be guessed (a patient id, say).
std::string PhiCommitment(std::string_view salt, const nlohmann::json& phi);

}  // namespace phivault::storage
