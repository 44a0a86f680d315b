#include "daemon/router.h"

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
