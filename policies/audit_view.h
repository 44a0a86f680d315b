// An audit entry as compliance reporting sees it: the fields of storage::AuditEntry with the PHI
// fields (sealed in `sealed_phi` in storage) already unsealed by the caller.
//
// Kept as a plain struct so that reports do not depend on the storage module; the service layer
// fills it from a decoded storage::AuditEntry plus its unsealed PHI object.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace phivault::policies {

struct DecodedAuditEntry {
  uint64_t seq = 0;
  int64_t time_unix_us = 0;  // commit time, UTC microseconds
  std::string request_id;
  std::string application;  // authenticated application name, or "cli:<uid>"
  std::string user;         // acting user (workforce id)
  std::string role;
  std::string action;                // e.g. "record.read", "record.disclose"
  std::string outcome;               // "success", "denied", "error"
  std::string reason;                // the rule that decided, or the error type
  std::string purpose;               // HL7 PurposeOfUse code, e.g. "TREAT"
  std::vector<std::string> records;  // "<record id>" or "<record id>@<version>"
  bool break_glass = false;

  // Unsealed PHI fields:
  std::optional<std::string> patient_id;          // none for entries about no patient
  std::optional<std::string> recipient;           // disclosure recipient
  std::optional<std::string> break_glass_reason;  // the stated reason for an emergency override
};

}  // namespace phivault::policies
