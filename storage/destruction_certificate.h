// Certificates of destruction: what a retention sweep destroyed, how, and how it checked, signed
// with the audit signing key so that anyone holding the vault's audit verifier key can check one
// offline.
//
// The fields follow the sample "Certificate of Sanitization" of NIST SP 800-88 Rev. 1,
// "Guidelines for Media Sanitization" (December 2014, https://doi.org/10.6028/NIST.SP.800-88r1),
// Appendix G, with the documentation items of its section 4.8, mapped onto records in a vault:
//   person performing sanitization (name, position/title)  -> principal, user, role
//   media type / media source / manufacturer, model, serial -> media (free text, e.g. "vault
//                                                               data directory and keyring copies")
//   sanitization description (clear, purge, destroy)        -> always "purge" (MethodStatement)
//   method used (overwrite, block erase, crypto erase, ...)  -> cryptographic erase of epoch_ids,
//                                                               then deletion and compaction
//   tool used (include version)                             -> tool_name, tool_version
//   verification method                                     -> verification, verification_result
//   date                                                    -> started / finished
//   signature                                               -> the note's Ed25519 signature
// and, beyond the sample, what was destroyed (record versions with categories and patient blind
// ids, and their counts) and the audit entries that record the sweep (audit_seq_first..last).
// A certificate never names a patient: it holds only blind ids (64 lowercase hex digits), and
// Sign refuses anything else in that place.
//
// The canonical form is a C2SP signed note (https://c2sp.org/signed-note, see crypto/signing.h)
// whose text is, line by line, in exactly this order (each line ends in "\n"):
//
//   <origin>                                 the signing key's name, as for audit checkpoints
//   phivault destruction certificate v1
//   id <32 lowercase hex digits>
//   principal <text>
//   user <text>
//   role <text>
//   started <YYYY-MM-DDThh:mm:ss.ffffffZ>    always six fraction digits, UTC
//   finished <YYYY-MM-DDThh:mm:ss.ffffffZ>   not before started
//   method <MethodStatement(certificate)>
//   media <text>
//   record <record id> <version> <category> <patient blind id>   one or more, ascending by
//                                                                  (record id, version)
//   counts records=<n> versions=<n> patients=<n>                  derived from the record lines
//   verification <text>
//   result <text>
//   tool <name> <version>
//   audit-seq <first> <last>                 decimal, no leading zeroes, first <= last
//
// <text> is non-empty UTF-8 without control characters or leading/trailing spaces. Epoch ids
// are the keyring's (d<8 digits> or h<1-40 of [A-Za-z0-9_-]>), ascending, at least one.
// Categories are configured category names: 1-64 of [a-z0-9_-], starting with a letter or digit.
// There is exactly one text for a certificate: parsing refuses missing, repeated, reordered or
// unknown lines, times in any other form, and numbers with signs or leading zeroes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "crypto/signing.h"

namespace phivault::storage {

struct DestroyedRecordVersion {
  std::string record_id;    // storage::IsValidRecordId
  uint32_t version = 0;     // >= 1
  std::string category;     // the record's category
  std::string patient_bid;  // hex blind id of the patient (RecordRepository::PatientBlindId)

  bool operator==(const DestroyedRecordVersion&) const = default;
};

struct DestructionCertificate {
  std::string id;  // NewDestructionCertificateId()
  // Who performed it: the authenticated principal (e.g. the sweep's system principal), the
  // acting user, and the role the access policy decided on.
  std::string principal;
  std::string user;
  std::string role;
  int64_t started_unix_us = 0;
  int64_t finished_unix_us = 0;
  std::vector<std::string> epoch_ids;  // the epoch keys that were crypto-erased
  std::string media;                   // what was sanitized, in the operator's words
  std::vector<DestroyedRecordVersion> records;
  std::string verification;         // what was checked after erasure
  std::string verification_result;  // what the check found
  std::string tool_name;            // no spaces
  std::string tool_version;         // no spaces
  uint64_t audit_seq_first = 0;     // the audit entries of this destruction, inclusive
  uint64_t audit_seq_last = 0;

  bool operator==(const DestructionCertificate&) const = default;
};

// A fresh certificate id: 16 bytes from the CSPRNG as 32 lowercase hex digits.
std::string NewDestructionCertificateId();

// "purge by cryptographic erase of epoch keys <id>, <id>, then deletion and compaction of the
// ciphertext", with the epoch ids in ascending order: the certificate's method line.
std::string MethodStatement(const DestructionCertificate& certificate);

struct DestructionCounts {
  uint64_t records = 0;   // distinct record ids
  uint64_t versions = 0;  // record lines
  uint64_t patients = 0;  // distinct patient blind ids
  // Versions per category, ascending by category.
  std::vector<std::pair<std::string, uint64_t>> versions_by_category;
};
DestructionCounts CountDestroyed(const DestructionCertificate& certificate);

// The note text of `certificate` under `origin` (a valid note key name), records and epoch ids
// sorted. InvalidArgument naming the field that breaks the rules above (e.g. "certificate
// patient blind id must be 64 lowercase hex digits", "certificate must name at least one
// record"), a duplicate record version or epoch id, or finished before started.
StatusOr<std::string> DestructionCertificateText(const DestructionCertificate& certificate,
                                                 std::string_view origin);
// Parses a note text (as written by DestructionCertificateText) into the certificate and sets
// `origin` to its first line. InvalidArgument naming the line that breaks the form.
StatusOr<DestructionCertificate> ParseDestructionCertificateText(std::string_view text,
                                                                 std::string* origin);

// The signed note of `certificate`, signed by `signer` (the audit signing key) under the key name
// `origin`. Errors as DestructionCertificateText and crypto::SignNote.
StatusOr<std::string> SignDestructionCertificate(const DestructionCertificate& certificate,
                                                 const crypto::Ed25519Signer& signer,
                                                 std::string_view origin);
// The certificate in `note` if it is well-formed, its origin is verifier.name and its signature by
// that key verifies. Otherwise DataLoss naming what failed:
//   "certificate is malformed: <the line and rule>" (checked first, so an edit that breaks the
//     form is named by its field),
//   "certificate origin is not the verifier's key name",
//   "certificate is not signed by <name>" (e.g. signed by another vault's key),
//   "certificate signature does not verify (the text was altered after signing)": a well-formed
//     edit of any field; a signature cannot say which field changed.
[[nodiscard]] StatusOr<DestructionCertificate> VerifyDestructionCertificate(
    std::string_view note, const crypto::NoteVerifier& verifier);

}  // namespace phivault::storage
