#include "daemon/router.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace phivault::daemon {
namespace {

TEST(RouterTest, MatchesEachRouteAndCapturesTheId) {
  RouteMatch m = MatchRoute("GET", "/v1/records/AAAAAAAAAAAAAAAAAAAAAA/content");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->id, RouteId::kReadContent);
  EXPECT_EQ(m.params, std::vector<std::string>{"AAAAAAAAAAAAAAAAAAAAAA"});

  m = MatchRoute("POST", "/v1/records");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->id, RouteId::kCreateRecord);
  EXPECT_EQ(m.route->action, "record.create");
}

TEST(RouterTest, LiteralSegmentsBeatParameters) {
  RouteMatch m = MatchRoute("POST", "/v1/records/_search");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->id, RouteId::kSearchRecords);
  // GET on the literal path is a wrong method, not a read of a record called "_search".
  m = MatchRoute("GET", "/v1/records/_search");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allowed_methods, std::vector<std::string_view>{"POST"});
}

TEST(RouterTest, ComplianceRoutesMatchWithTheirActions) {
  struct Case {
    const char* method;
    const char* path;
    RouteId id;
    std::string_view action;
  };
  const Case cases[] = {
      {"POST", "/v1/records/AAAAAAAAAAAAAAAAAAAAAA/disclosures", RouteId::kDiscloseRecord,
       "record.disclose"},
      {"POST", "/v1/disclosures", RouteId::kRecordDisclosure, "record.disclose"},
      {"POST", "/v1/disclosure-suspensions", RouteId::kAddSuspension, "disclosure.suspend"},
      {"POST", "/v1/reports/accounting", RouteId::kAccountingReport, "report.accounting"},
      {"POST", "/v1/reports/access", RouteId::kAccessReport, "report.access"},
      {"POST", "/v1/audit/export", RouteId::kAuditExport, "audit.export"},
      {"GET", "/v1/audit/pubkey", RouteId::kAuditVerifierKey, "audit.verify"},
      {"GET", "/v1/audit/checkpoint", RouteId::kAuditCheckpoint, "audit.verify"},
      {"POST", "/v1/audit/checkpoints", RouteId::kAuditNewCheckpoint, "audit.verify"},
      {"GET", "/v1/audit/proofs/inclusion", RouteId::kAuditInclusionProof, "audit.verify"},
      {"GET", "/v1/audit/proofs/consistency", RouteId::kAuditConsistencyProof, "audit.verify"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    const RouteMatch m = MatchRoute(c.method, c.path);
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->id, c.id);
    EXPECT_EQ(m.route->action, c.action);
  }
  // The singular checkpoint is read, the plural collection is where new ones are made.
  EXPECT_EQ(MatchRoute("POST", "/v1/audit/checkpoint").allowed_methods,
            std::vector<std::string_view>{"GET"});
  EXPECT_EQ(MatchRoute("GET", "/v1/audit/checkpoints").allowed_methods,
            std::vector<std::string_view>{"POST"});
}

TEST(RouterTest, RetentionRoutesMatchWithTheirActions) {
  struct Case {
    const char* method;
    const char* path;
    RouteId id;
    std::string_view action;
  };
  const Case cases[] = {
      {"PUT", "/v1/patients/facts", RouteId::kSetPatientFacts, "patient.facts"},
      {"POST", "/v1/patients/facts/_get", RouteId::kGetPatientFacts, "patient.facts"},
      {"POST", "/v1/retention/_patient", RouteId::kPatientRetention, "retention.show"},
      {"GET", "/v1/retention/rules", RouteId::kRetentionRules, "retention.show"},
      {"POST", "/v1/retention/sweep", RouteId::kSweep, "retention.sweep"},
      {"POST", "/v1/holds", RouteId::kPlaceHold, "hold.place"},
      {"POST", "/v1/holds/_search", RouteId::kSearchHolds, "hold.list"},
      {"POST", "/v1/holds/HHHHHHHHHHHHHHHHHHHHHw/release", RouteId::kReleaseHold, "hold.release"},
      {"GET", "/v1/certificates", RouteId::kListCertificates, "certificate.read"},
      {"GET", "/v1/certificates/00112233445566778899aabbccddeeff", RouteId::kGetCertificate,
       "certificate.read"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    const RouteMatch m = MatchRoute(c.method, c.path);
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->id, c.id);
    EXPECT_EQ(m.route->action, c.action);
  }
}

TEST(RouterTest, OnlyRoutesThatRevealNoPhiSkipRejectionAudits) {
  for (const auto& r : Routes()) {
    const bool no_phi = r.action == "status" || r.action == "audit.verify" ||
                        r.action == "policy.show" || r.action.empty();
    EXPECT_EQ(r.access == RouteSpec::Access::kPhi, !no_phi) << r.method << " " << r.path;
  }
}

TEST(RouterTest, WrongMethodListsTheAllowedOnes) {
  RouteMatch m = MatchRoute("DELETE", "/v1/records/AAAAAAAAAAAAAAAAAAAAAA");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allowed_methods, std::vector<std::string_view>{"GET"});
}

TEST(RouterTest, UnknownPathsMatchNothing) {
  for (const char* path : {"", "v1/health", "/", "/v1", "/v1/health/", "/v1/records/a/b",
                           "/v1/records//content", "/v1/records/", "/V1/health"}) {
    const RouteMatch m = MatchRoute("GET", path);
    EXPECT_EQ(m.route, nullptr) << path;
    EXPECT_TRUE(m.allowed_methods.empty()) << path;
  }
}

TEST(RouterTest, EveryRouteButHealthNeedsAnAction) {
  for (const auto& r : Routes()) {
    if (r.access == RouteSpec::Access::kPublic) {
      EXPECT_TRUE(r.action.empty()) << r.path;
    } else {
      EXPECT_FALSE(r.action.empty()) << r.path;
    }
  }
}

}  // namespace
}  // namespace phivault::daemon
