// docs/api/openapi.json must describe exactly the routes the daemon serves, with the headers and
// error responses the handlers actually use.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon/auth.h"
#include "daemon/router.h"
#include "policies/accounting.h"

namespace phivault::daemon {
namespace {

using nlohmann::json;

json LoadSpec() {
  std::ifstream in(PHIVAULT_OPENAPI_JSON);
  EXPECT_TRUE(in.good()) << "cannot read " << PHIVAULT_OPENAPI_JSON;
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Follows a local "$ref" ("#/components/...") if `node` is one.
const json& Resolve(const json& spec, const json& node) {
  if (node.is_object() && node.contains("$ref")) {
    const std::string ref = node["$ref"];
    return spec.at(json::json_pointer(ref.substr(1)));
  }
  return node;
}

TEST(OpenApiTest, IsOpenApi31) {
  const json spec = LoadSpec();
  EXPECT_EQ(spec["openapi"], "3.1.0");
}

TEST(OpenApiTest, EveryServedRouteIsDescribed) {
  const json spec = LoadSpec();
  for (const auto& r : Routes()) {
    const std::string path(r.path);
    ASSERT_TRUE(spec["paths"].contains(path)) << path << " is served but not in the spec";
    EXPECT_TRUE(spec["paths"][path].contains(Lower(r.method)))
        << r.method << " " << path << " is served but not in the spec";
  }
}

TEST(OpenApiTest, EveryDescribedOperationIsServed) {
  const json spec = LoadSpec();
  const std::set<std::string> kMethods = {"get",     "put",  "post",  "delete",
                                          "options", "head", "patch", "trace"};
  for (const auto& [path, item] : spec["paths"].items()) {
    for (const auto& [method, op] : item.items()) {
      if (kMethods.count(method) == 0) continue;
      const bool served = std::any_of(Routes().begin(), Routes().end(), [&](const RouteSpec& r) {
        return r.path == path && Lower(r.method) == method;
      });
      EXPECT_TRUE(served) << method << " " << path << " is in the spec but not served";
    }
  }
}

TEST(OpenApiTest, ProtectedRoutesDocumentHeadersAndRejections) {
  const json spec = LoadSpec();
  for (const auto& r : Routes()) {
    const json& op = spec["paths"][std::string(r.path)][Lower(r.method)];
    std::set<std::string> headers;
    for (const auto& p : op["parameters"]) {
      const json& param = Resolve(spec, p);
      if (param["in"] == "header" && param.value("required", false)) {
        headers.insert(param["name"]);
      }
    }
    const json& responses = op["responses"];
    if (r.access == RouteSpec::Access::kPublic) {
      EXPECT_EQ(op["security"], json::array()) << r.path;
      EXPECT_TRUE(headers.empty()) << r.path;
      continue;
    }
    EXPECT_EQ(headers,
              (std::set<std::string>{"X-Phivault-User", "X-Phivault-Role", "X-Phivault-Purpose"}))
        << r.path;
    for (const char* code : {"400", "401", "403", "500", "503"}) {
      ASSERT_TRUE(responses.contains(code)) << r.method << " " << r.path << " lacks " << code;
      EXPECT_TRUE(Resolve(spec, responses[code])["content"].contains("application/problem+json"));
    }
    if (r.method == "POST") {
      ASSERT_TRUE(op.contains("requestBody")) << r.path;
      for (const char* code : {"413", "415"}) {
        EXPECT_TRUE(responses.contains(code)) << r.path << " lacks " << code;
      }
      // A route whose body is optional accepts a request without one instead of answering 411.
      EXPECT_EQ(responses.contains("411"), op["requestBody"].value("required", false)) << r.path;
    }
  }
}

TEST(OpenApiTest, PurposeOfUseEnumIsTheDaemonsList) {
  const json spec = LoadSpec();
  const json& values = spec["components"]["parameters"]["Purpose"]["schema"]["enum"];
  std::vector<std::string> documented = values.get<std::vector<std::string>>();
  std::vector<std::string> known(PurposeOfUseCodes().begin(), PurposeOfUseCodes().end());
  EXPECT_EQ(documented, known);
}

TEST(OpenApiTest, DocumentedDisclosureBasesAreTheAccountingKinds) {
  const json spec = LoadSpec();
  const auto documented =
      spec["components"]["schemas"]["DisclosureBasis"]["enum"].get<std::set<std::string>>();
  // DisclosureKind is a dense enum whose last member is kImpermissible.
  std::set<std::string> kinds;
  for (int k = 0; k <= static_cast<int>(policies::DisclosureKind::kImpermissible); ++k) {
    kinds.emplace(policies::DisclosureKindName(static_cast<policies::DisclosureKind>(k)));
  }
  EXPECT_EQ(documented, kinds);
}

}  // namespace
}  // namespace phivault::daemon
