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

#include "crypto/status.h"

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
  bool break_glass = false;
};

// Canonical JSON bytes of `e` (all fields, including seq/time/prev). Object keys, in the order
// they appear: action, app, btg, outcome, patient_bid, phi, prev, purpose, reason, records,
// request_id, role, seq, time_us, user. InvalidArgument naming the field if a string is not
// valid UTF-8 (it could not be encoded deterministically).
StatusOr<std::string> EncodeAuditEntry(const AuditEntry& e);
// Parses bytes produced by EncodeAuditEntry. DataLoss naming the field if a field is missing,
// has the wrong type, or is unknown, or if `bytes` is not exactly the canonical encoding.
StatusOr<AuditEntry> DecodeAuditEntry(std::string_view bytes);

}  // namespace phivault::storage
