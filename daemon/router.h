// The API's routes: one table, used to dispatch requests and checked against the OpenAPI
// description (docs/api/openapi.json) by a test, so the two cannot drift apart.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace phivault::daemon {

enum class RouteId {
  kHealth,
  kStatus,
  kCreateRecord,
  kSearchRecords,
  kReadRecord,
  kReadContent,
  kReadMetadata,
  kAmendRecord,
  kDiscloseRecord,
  kRecordDisclosure,
  kAddSuspension,
  kAccountingReport,
  kAccessReport,
  kAuditExport,
  kAuditVerifierKey,
  kAuditCheckpoint,
  kAuditNewCheckpoint,
  kAuditInclusionProof,
  kAuditConsistencyProof,
  kPolicyReload,
  kPolicyShow,
  kPolicyHistory,
  kPolicyCheck,
  kAuditReview,
  kAuditSignOff,
  kAddRestriction,
  kSearchRestrictions,
  kEndRestriction,
  kPatientExport,
  kOpenPatientRequest,
  kExtendPatientRequest,
  kClosePatientRequest,
  kSearchPatientRequests,
  kSetContact,
  kGetContact,
  kSetPatientFacts,
  kGetPatientFacts,
  kPatientRetention,
  kRetentionRules,
  kPlaceHold,
  kReleaseHold,
  kSearchHolds,
  kSweep,
  kListCertificates,
  kGetCertificate,
  kCreateBackup,
  kRotateMasterKey,
  kArchiveRun,
};

struct RouteSpec {
  RouteId id;
  std::string_view method;
  std::string_view path;  // template; "{name}" matches one non-empty path segment
  // What the route needs: kPublic nothing; kAuthenticated authentication and the acting-party
  // headers (routes that reveal no PHI, whose service calls are not audited either); kPhi the
  // same, and every rejection is audited.
  enum class Access { kPublic, kAuthenticated, kPhi } access;
  std::string_view action;  // the config action it performs ("" for kPublic)
};

const std::vector<RouteSpec>& Routes();

struct RouteMatch {
  const RouteSpec* route = nullptr;  // nullptr: no route for this method and path
  std::vector<std::string> params;   // raw (undecoded) path segments for the "{...}" parts
  std::vector<std::string_view> allowed_methods;  // when only the method is wrong
};

// Matches an undecoded request path (no query). When several templates match, those with the
// most literal segments win ("/v1/records/_search" over "/v1/records/{id}").
RouteMatch MatchRoute(std::string_view method, std::string_view path);

}  // namespace phivault::daemon
