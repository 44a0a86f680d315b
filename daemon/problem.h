// Errors at the socket boundary: RFC 9457 problem details (application/problem+json).
//
// The only place where Status codes become HTTP status codes. Every problem has a stable type
// URI "urn:phivault:problem:<kebab-name>" that clients may switch on; title and detail are for
// people. Details are taken from Status messages, which never carry PHI.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace phivault::daemon {

struct Problem {
  int status = 500;
  std::string type;    // the kebab-case name, without the "urn:phivault:problem:" prefix
  std::string title;   // short, fixed per type
  std::string detail;  // what went wrong in this request
  // For a 403 from the access policy: the rule that decided (a rule name, "default-deny",
  // "protected:<category>", "restriction:<id>", "config:<key>"). Never PHI.
  std::string rule;
  // For a 410 record-shredded: the certificate of destruction (32 hex digits) of the sweep that
  // destroyed the record, when the message names one (kCertificateMarker). Never PHI.
  std::string certificate;
};

inline constexpr std::string_view kProblemContentType = "application/problem+json";
inline constexpr std::string_view kProblemTypePrefix = "urn:phivault:problem:";

// Some problems share a Status code with others and are told apart by the exact phrase the
// lower layers put in the message (pinned by tests against the real service and store):
// storage/records.cc's shredded record, the content limit of daemon/api_json.cc and
// daemon/service.cc, and daemon/service.cc's failed audit write.
inline constexpr std::string_view kShreddedMessage = "record was crypto-shredded";
inline constexpr std::string_view kContentTooLargeMessage = "content exceeds max_content_bytes";
inline constexpr std::string_view kAuditUnavailableMessage =
    "the audit log could not be written; nothing was done";
// A policy file that failed validation on reload (the old policy stays in force): 422.
inline constexpr std::string_view kInvalidPolicyMessage = "the policy was not loaded";
// A PermissionDenied message may end in " [rule: <name>]" (daemon/service.cc): the problem's
// `rule`, taken off the detail.
inline constexpr std::string_view kRuleMarker = " [rule: ";
// A kShreddedMessage of a record a retention sweep destroyed continues
// " (certificate <32 lowercase hex digits>)": the problem's `certificate`.
inline constexpr std::string_view kCertificateMarker = " (certificate ";

// Maps a non-OK Status to its problem:
//   InvalidArgument 400 invalid-request (422 invalid-policy for kInvalidPolicyMessage),
//   Unauthenticated 401 unauthenticated, PermissionDenied 403 forbidden (with `rule`), NotFound 404
//   not-found, AlreadyExists 409 conflict, FailedPrecondition 409 failed-precondition (410
//   record-shredded for kShreddedMessage, with `certificate`), ResourceExhausted 413
//   payload-too-large for kContentTooLargeMessage, otherwise 507 insufficient-storage (the store's
//   disk-space refusals: the reserve, compaction space, RocksDB's own out-of-space), DataLoss 500
//   integrity-failure, Unavailable 503 audit-unavailable for kAuditUnavailableMessage, otherwise
//   unavailable, Internal 500 internal.
// A message matches when it contains the whole phrase (a caller may add context around it).
Problem ProblemFromStatus(const Status& status);

// A problem that has no Status behind it (routing, HTTP framing).
Problem MakeProblem(int http_status, std::string type, std::string detail);

// The JSON document: {"type","title","status","detail","request_id"}, plus "rule" and
// "certificate" when set.
std::string ProblemJson(const Problem& problem, std::string_view request_id);

}  // namespace phivault::daemon
