// Status -> problem+json: the HTTP status and stable type clients switch on.
#include "daemon/problem.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace phivault::daemon {
namespace {

struct Mapping {
  Status status;
  int http;
  std::string type;
};

TEST(ProblemTest, EveryStatusCodeMapsToItsProblem) {
  const Mapping mappings[] = {
      {InvalidArgument("field 'category' is required"), 400, "invalid-request"},
      {Unauthenticated("no token"), 401, "unauthenticated"},
      {PermissionDenied("no rule allows it"), 403, "forbidden"},
      {NotFound("no such record"), 404, "not-found"},
      {AlreadyExists("exists"), 409, "conflict"},
      {FailedPrecondition("epoch key was destroyed"), 409, "failed-precondition"},
      {FailedPrecondition("record was crypto-shredded"), 410, "record-shredded"},
      {ResourceExhausted("disk space below reserve"), 507, "insufficient-storage"},
      {ResourceExhausted("content exceeds max_content_bytes"), 413, "payload-too-large"},
      {DataLoss("record failed integrity check"), 500, "integrity-failure"},
      {Unavailable("the audit log could not be written"), 503, "audit-unavailable"},
      {Unavailable("database I/O error"), 503, "unavailable"},
      {Internal("impossible"), 500, "internal"},
  };
  for (const auto& m : mappings) {
    SCOPED_TRACE(m.status.ToString());
    const Problem p = ProblemFromStatus(m.status);
    EXPECT_EQ(p.status, m.http);
    EXPECT_EQ(p.type, m.type);
    EXPECT_EQ(p.detail, m.status.message());
    EXPECT_FALSE(p.title.empty());
  }
}

TEST(ProblemTest, JsonHasTheRfc9457MembersAndTheRequestId) {
  const std::string text = ProblemJson(MakeProblem(404, "not-found", "no such route"), "req-1");
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["type"], "urn:phivault:problem:not-found");
  EXPECT_EQ(j["title"], "Not found");
  EXPECT_EQ(j["status"], 404);
  EXPECT_EQ(j["detail"], "no such route");
  EXPECT_EQ(j["request_id"], "req-1");
  EXPECT_EQ(j.size(), 5u);
}

TEST(ProblemTest, InvalidUtf8InADetailDoesNotThrow) {
  const std::string text = ProblemJson(MakeProblem(400, "invalid-request", "bad \xff byte"), "r");
  EXPECT_TRUE(nlohmann::json::accept(text));
}

}  // namespace
}  // namespace phivault::daemon
