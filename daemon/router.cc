#include "daemon/router.h"

#include <algorithm>

namespace phivault::daemon {
namespace {

std::vector<std::string_view> Split(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path.front() != '/') return out;
  path.remove_prefix(1);
  for (;;) {
    const size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool IsParam(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

// Number of literal segments if `path` matches `tmpl`, -1 otherwise.
int MatchScore(const std::vector<std::string_view>& tmpl, const std::vector<std::string_view>& path,
               std::vector<std::string>* params) {
  if (tmpl.size() != path.size()) return -1;
  int literals = 0;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (IsParam(tmpl[i])) {
      if (path[i].empty()) return -1;
      if (params != nullptr) params->emplace_back(path[i]);
    } else if (tmpl[i] == path[i]) {
      ++literals;
    } else {
      return -1;
    }
  }
  return literals;
}

}  // namespace

const std::vector<RouteSpec>& Routes() {
  using A = RouteSpec::Access;
  static const std::vector<RouteSpec> kRoutes = {
      {RouteId::kHealth, "GET", "/v1/health", A::kPublic, ""},
      {RouteId::kStatus, "GET", "/v1/status", A::kAuthenticated, "status"},
      {RouteId::kCreateRecord, "POST", "/v1/records", A::kPhi, "record.create"},
      {RouteId::kSearchRecords, "POST", "/v1/records/_search", A::kPhi, "record.list"},
      {RouteId::kReadRecord, "GET", "/v1/records/{id}", A::kPhi, "record.read"},
      {RouteId::kReadContent, "GET", "/v1/records/{id}/content", A::kPhi, "record.read"},
      {RouteId::kReadMetadata, "GET", "/v1/records/{id}/metadata", A::kPhi, "record.read"},
      {RouteId::kAmendRecord, "POST", "/v1/records/{id}/versions", A::kPhi, "record.amend"},
      {RouteId::kDiscloseRecord, "POST", "/v1/records/{id}/disclosures", A::kPhi,
       "record.disclose"},
      {RouteId::kRecordDisclosure, "POST", "/v1/disclosures", A::kPhi, "record.disclose"},
      {RouteId::kAddSuspension, "POST", "/v1/disclosure-suspensions", A::kPhi,
       "disclosure.suspend"},
      {RouteId::kAccountingReport, "POST", "/v1/reports/accounting", A::kPhi, "report.accounting"},
      {RouteId::kAccessReport, "POST", "/v1/reports/access", A::kPhi, "report.access"},
      {RouteId::kAuditExport, "POST", "/v1/audit/export", A::kPhi, "audit.export"},
      {RouteId::kAuditVerifierKey, "GET", "/v1/audit/pubkey", A::kAuthenticated, "audit.verify"},
      {RouteId::kAuditCheckpoint, "GET", "/v1/audit/checkpoint", A::kAuthenticated, "audit.verify"},
      {RouteId::kAuditNewCheckpoint, "POST", "/v1/audit/checkpoints", A::kAuthenticated,
       "audit.verify"},
      {RouteId::kAuditInclusionProof, "GET", "/v1/audit/proofs/inclusion", A::kAuthenticated,
       "audit.verify"},
      {RouteId::kAuditConsistencyProof, "GET", "/v1/audit/proofs/consistency", A::kAuthenticated,
       "audit.verify"},
      {RouteId::kPolicyReload, "POST", "/v1/policy/reload", A::kPhi, "policy.reload"},
      {RouteId::kPolicyShow, "GET", "/v1/policy", A::kAuthenticated, "policy.show"},
      {RouteId::kPolicyHistory, "GET", "/v1/policy/history", A::kAuthenticated, "policy.show"},
      {RouteId::kPolicyCheck, "POST", "/v1/policy/check", A::kPhi, "policy.check"},
      {RouteId::kAuditReview, "POST", "/v1/audit/review", A::kPhi, "audit.review"},
      {RouteId::kAuditSignOff, "POST", "/v1/audit/review/{id}/sign-off", A::kPhi, "audit.sign-off"},
      {RouteId::kAddRestriction, "POST", "/v1/restrictions", A::kPhi, "restriction.add"},
      {RouteId::kSearchRestrictions, "POST", "/v1/restrictions/_search", A::kPhi,
       "restriction.list"},
      {RouteId::kEndRestriction, "POST", "/v1/restrictions/{id}/end", A::kPhi, "restriction.end"},
      {RouteId::kPatientExport, "POST", "/v1/patients/export", A::kPhi, "patient.export"},
      {RouteId::kOpenPatientRequest, "POST", "/v1/patient-requests", A::kPhi, "request.open"},
      {RouteId::kExtendPatientRequest, "POST", "/v1/patient-requests/{id}/extend", A::kPhi,
       "request.extend"},
      {RouteId::kClosePatientRequest, "POST", "/v1/patient-requests/{id}/close", A::kPhi,
       "request.close"},
      {RouteId::kSearchPatientRequests, "POST", "/v1/patient-requests/_search", A::kPhi,
       "request.list"},
      {RouteId::kSetContact, "PUT", "/v1/patients/contact", A::kPhi, "contact.set"},
      {RouteId::kGetContact, "POST", "/v1/patients/contact/_get", A::kPhi, "contact.show"},
      {RouteId::kSetPatientFacts, "PUT", "/v1/patients/facts", A::kPhi, "patient.facts"},
      {RouteId::kGetPatientFacts, "POST", "/v1/patients/facts/_get", A::kPhi, "patient.facts"},
      {RouteId::kPatientRetention, "POST", "/v1/retention/_patient", A::kPhi, "retention.show"},
      {RouteId::kRetentionRules, "GET", "/v1/retention/rules", A::kPhi, "retention.show"},
      {RouteId::kPlaceHold, "POST", "/v1/holds", A::kPhi, "hold.place"},
      {RouteId::kReleaseHold, "POST", "/v1/holds/{id}/release", A::kPhi, "hold.release"},
      {RouteId::kSearchHolds, "POST", "/v1/holds/_search", A::kPhi, "hold.list"},
      {RouteId::kSweep, "POST", "/v1/retention/sweep", A::kPhi, "retention.sweep"},
      {RouteId::kListCertificates, "GET", "/v1/certificates", A::kPhi, "certificate.read"},
      {RouteId::kGetCertificate, "GET", "/v1/certificates/{id}", A::kPhi, "certificate.read"},
      {RouteId::kCreateBackup, "POST", "/v1/admin/backups", A::kPhi, "backup.create"},
      {RouteId::kRotateMasterKey, "POST", "/v1/keys/rotate", A::kPhi, "key.rotate"},
      {RouteId::kArchiveRun, "POST", "/v1/admin/archive/run", A::kPhi, "archive.run"},
  };
  return kRoutes;
}

RouteMatch MatchRoute(std::string_view method, std::string_view path) {
  const std::vector<std::string_view> segments = Split(path);
  RouteMatch match;
  if (segments.empty()) return match;
  int best = -1;
  for (const auto& r : Routes()) {
    best = std::max(best, MatchScore(Split(r.path), segments, nullptr));
  }
  if (best < 0) return match;
  for (const auto& r : Routes()) {
    const auto tmpl = Split(r.path);
    if (MatchScore(tmpl, segments, nullptr) != best) continue;
    if (r.method == method) {
      match.route = &r;
      MatchScore(tmpl, segments, &match.params);
      match.allowed_methods.clear();
      return match;
    }
    match.allowed_methods.push_back(r.method);
  }
  return match;
}

}  // namespace phivault::daemon
