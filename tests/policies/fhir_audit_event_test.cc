#include "policies/fhir_audit_event.h"

#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"

namespace phivault::policies {
namespace {

using nlohmann::json;
using testing::T;

constexpr char kDcm[] = "http://dicom.nema.org/resources/ontology/DCM";
constexpr char kPatient[] = "synthetic-patient-0001";

DecodedAuditEntry Entry(std::string action, std::string outcome = "success") {
  DecodedAuditEntry e;
  e.seq = 17;
  e.time_unix_us = T("2025-03-04T05:06:07.123456Z");
  e.request_id = "req-17";
  e.application = "ehr-frontdesk";
  e.user = "nurse.0042";
  e.role = "nurse";
  e.action = std::move(action);
  e.outcome = std::move(outcome);
  e.reason = "rule:nurse-read-clinical";
  e.purpose = "TREAT";
  e.patient_id = kPatient;
  e.records = {"rec-1@2", "rec-3"};
  return e;
}

// The element names FHIR R4 (4.0.1) defines for AuditEvent and its backbone elements: anything
// else (e.g. an R5 "severity", "category" or "authorization") would fail validation.
const std::set<std::string> kEventKeys = {"resourceType",
                                          "id",
                                          "meta",
                                          "implicitRules",
                                          "language",
                                          "text",
                                          "contained",
                                          "extension",
                                          "modifierExtension",
                                          "type",
                                          "subtype",
                                          "action",
                                          "period",
                                          "recorded",
                                          "outcome",
                                          "outcomeDesc",
                                          "purposeOfEvent",
                                          "agent",
                                          "source",
                                          "entity"};
const std::set<std::string> kAgentKeys = {"type",  "role",      "who",         "altId",
                                          "name",  "requestor", "location",    "policy",
                                          "media", "network",   "purposeOfUse"};
const std::set<std::string> kSourceKeys = {"site", "observer", "type"};
const std::set<std::string> kEntityKeys = {
    "what", "type", "role", "lifecycle", "securityLabel", "name", "description", "query", "detail"};
const std::set<std::string> kCodingKeys = {"system", "version", "code", "display", "userSelected"};

void ExpectKeysWithin(const json& object, const std::set<std::string>& allowed,
                      const std::string& where) {
  ASSERT_TRUE(object.is_object()) << where;
  for (const auto& [key, value] : object.items()) {
    EXPECT_TRUE(allowed.count(key)) << where << " has non-R4 element " << key;
  }
}

void ExpectCoding(const json& c, const std::string& where) {
  ExpectKeysWithin(c, kCodingKeys, where);
  EXPECT_TRUE(c.contains("system") && c["system"].is_string()) << where;
  EXPECT_TRUE(c.contains("code") && c["code"].is_string()) << where;
}

// FHIR forbids empty strings, empty arrays and empty objects anywhere in a resource.
void ExpectNoEmptyValues(const json& j, const std::string& path) {
  if (j.is_string()) {
    EXPECT_FALSE(j.get<std::string>().empty()) << path;
  }
  if (j.is_array() || j.is_object()) {
    EXPECT_FALSE(j.empty()) << path;
  }
  if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i)
      ExpectNoEmptyValues(j[i], path + "[" + std::to_string(i) + "]");
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.items()) ExpectNoEmptyValues(v, path + "." + k);
  }
}

// Structural R4 checks every event must pass: required elements, cardinalities, codings.
void ExpectValidR4AuditEvent(const json& ev) {
  ExpectKeysWithin(ev, kEventKeys, "AuditEvent");
  EXPECT_EQ(ev["resourceType"], "AuditEvent");
  ExpectCoding(ev["type"], "type");  // 1..1 Coding (not a CodeableConcept in R4)
  if (ev.contains("subtype")) {
    ASSERT_TRUE(ev["subtype"].is_array());
    for (const json& c : ev["subtype"]) ExpectCoding(c, "subtype");
  }
  const std::set<std::string> actions = {"C", "R", "U", "D", "E"};
  EXPECT_TRUE(actions.count(ev["action"].get<std::string>()));
  const std::set<std::string> outcomes = {"0", "4", "8", "12"};
  EXPECT_TRUE(outcomes.count(ev["outcome"].get<std::string>()));
  EXPECT_TRUE(ParseUtcTimestamp(ev["recorded"].get<std::string>()).ok());
  ASSERT_TRUE(ev["agent"].is_array());
  ASSERT_FALSE(ev["agent"].empty());
  for (const json& a : ev["agent"]) {
    ExpectKeysWithin(a, kAgentKeys, "agent");
    EXPECT_TRUE(a["requestor"].is_boolean());  // 1..1
  }
  ExpectKeysWithin(ev["source"], kSourceKeys, "source");
  EXPECT_TRUE(ev["source"].contains("observer"));  // 1..1
  if (ev.contains("entity")) {
    for (const json& en : ev["entity"]) {
      ExpectKeysWithin(en, kEntityKeys, "entity");
      ExpectCoding(en["type"], "entity.type");
      ExpectCoding(en["role"], "entity.role");
    }
  }
  if (ev.contains("purposeOfEvent")) {
    for (const json& p : ev["purposeOfEvent"]) {
      for (const auto& [k, v] : p.items()) EXPECT_TRUE(k == "coding" || k == "text") << k;
    }
  }
  ExpectNoEmptyValues(ev, "AuditEvent");
}

TEST(FhirAuditEvent, ReadMapsToPatientRecordWithAgentsSourceAndEntities) {
  FhirExportOptions options;
  options.observer_name = "phivault@clinic-1";
  const json ev = ToFhirAuditEvent(Entry("record.read"), options);
  ExpectValidR4AuditEvent(ev);
  EXPECT_EQ(ev["id"], "phivault-17");
  EXPECT_EQ(ev["type"],
            (json{{"system", kDcm}, {"code", "110110"}, {"display", "Patient Record"}}));
  EXPECT_FALSE(ev.contains("subtype"));
  EXPECT_EQ(ev["action"], "R");
  EXPECT_EQ(ev["recorded"], "2025-03-04T05:06:07.123456Z");
  EXPECT_EQ(ev["outcome"], "0");
  EXPECT_EQ(ev["outcomeDesc"], "success: rule:nurse-read-clinical");
  EXPECT_EQ(
      ev["purposeOfEvent"],
      json::parse(R"([{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason",
                            "code":"TREAT","display":"treatment"}]}])"));

  const json& user = ev["agent"][0];
  EXPECT_EQ(user["requestor"], true);
  EXPECT_EQ(user["who"]["identifier"]["system"], "urn:phivault:user");
  EXPECT_EQ(user["who"]["identifier"]["value"], "nurse.0042");
  EXPECT_EQ(user["role"], json::parse(R"([{"text":"nurse"}])"));
  const json& app = ev["agent"][1];
  EXPECT_EQ(app["requestor"], false);
  EXPECT_EQ(app["type"]["coding"][0]["code"], "110150");
  EXPECT_EQ(app["who"]["identifier"]["value"], "ehr-frontdesk");

  EXPECT_EQ(ev["source"]["observer"]["display"], "phivault@clinic-1");
  EXPECT_EQ(ev["source"]["type"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/security-source-type");
  EXPECT_EQ(ev["source"]["type"][0]["code"], "4");

  ASSERT_EQ(ev["entity"].size(), 3u);
  const json& patient = ev["entity"][0];
  EXPECT_EQ(patient["what"]["type"], "Patient");
  EXPECT_EQ(patient["what"]["identifier"]["value"], kPatient);
  EXPECT_EQ(
      patient["type"],
      json::parse(
          R"({"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1","display":"Person"})"));
  EXPECT_EQ(
      patient["role"],
      json::parse(
          R"({"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1","display":"Patient"})"));
  EXPECT_EQ(ev["entity"][1]["what"]["identifier"]["value"], "rec-1@2");
  EXPECT_EQ(ev["entity"][1]["type"]["code"], "2");
  EXPECT_EQ(ev["entity"][1]["role"]["code"], "4");
  EXPECT_EQ(ev["entity"][2]["what"]["identifier"]["value"], "rec-3");
}

TEST(FhirAuditEvent, ActionsMapToDicomEventTypesAndActionCodes) {
  struct Case {
    const char* action;
    const char* type;
    const char* display;
    const char* code;
  };
  for (const Case& c :
       {Case{"record.create", "110110", "Patient Record", "C"},
        Case{"record.amend", "110110", "Patient Record", "U"},
        Case{"record.shred", "110110", "Patient Record", "D"},
        Case{"record.list", "110112", "Query", "E"}, Case{"record.export", "110106", "Export", "R"},
        Case{"record.disclose", "110106", "Export", "R"},
        Case{"audit.export", "110101", "Audit Log Used", "R"},
        Case{"something.new", "110100", "Application Activity", "E"}}) {
    const json ev = ToFhirAuditEvent(Entry(c.action), {});
    ExpectValidR4AuditEvent(ev);
    EXPECT_EQ(ev["type"]["code"], c.type) << c.action;
    EXPECT_EQ(ev["type"]["display"], c.display) << c.action;
    EXPECT_EQ(ev["action"], c.code) << c.action;
  }
  const json key = ToFhirAuditEvent(Entry("key.rotate"), {});
  EXPECT_EQ(key["type"]["code"], "110113");
  EXPECT_EQ(key["subtype"][0]["code"], "110129");
  EXPECT_EQ(key["subtype"][0]["display"], "Security Configuration");
}

TEST(FhirAuditEvent, BreakGlassIsASecurityAlertWithEmergencyOverrideSubtype) {
  DecodedAuditEntry e = Entry("record.read");
  e.break_glass = true;
  e.purpose = "BTG";
  e.break_glass_reason = "Unconscious patient in ED";
  const json ev = ToFhirAuditEvent(e, {});
  ExpectValidR4AuditEvent(ev);
  EXPECT_EQ(ev["type"],
            (json{{"system", kDcm}, {"code", "110113"}, {"display", "Security Alert"}}));
  EXPECT_EQ(ev["subtype"],
            json::array({json{
                {"system", kDcm}, {"code", "110127"}, {"display", "Emergency Override Started"}}}));
  EXPECT_EQ(ev["action"], "R");
  EXPECT_EQ(ev["purposeOfEvent"][0]["coding"][0]["code"], "BTG");
  EXPECT_EQ(ev["purposeOfEvent"][0]["coding"][0]["display"], "break the glass");
  EXPECT_EQ(ev["purposeOfEvent"][0]["text"], "Unconscious patient in ED");
}

TEST(FhirAuditEvent, OutcomesMapToR4Codes) {
  EXPECT_EQ(ToFhirAuditEvent(Entry("record.read", "denied"), {})["outcome"], "4");
  EXPECT_EQ(ToFhirAuditEvent(Entry("record.read", "error"), {})["outcome"], "8");
  EXPECT_EQ(ToFhirAuditEvent(Entry("record.read", "aborted"), {})["outcome"], "12");
  EXPECT_EQ(ToFhirAuditEvent(Entry("record.read", "denied"), {})["outcomeDesc"],
            "denied: rule:nurse-read-clinical");
}

TEST(FhirAuditEvent, DisclosureNamesTheRecipientAsDestination) {
  DecodedAuditEntry e = Entry("record.disclose");
  e.recipient = "County Health Dept";
  e.purpose = "PUBHLTH";
  const json ev = ToFhirAuditEvent(e, {});
  ExpectValidR4AuditEvent(ev);
  ASSERT_EQ(ev["agent"].size(), 3u);
  EXPECT_EQ(ev["agent"][2]["type"]["coding"][0]["code"], "110152");
  EXPECT_EQ(ev["agent"][2]["type"]["coding"][0]["display"], "Destination Role ID");
  EXPECT_EQ(ev["agent"][2]["name"], "County Health Dept");
  EXPECT_EQ(ev["agent"][2]["requestor"], false);
}

TEST(FhirAuditEvent, UnknownPurposeIsTextAndMissingFieldsAreOmitted) {
  DecodedAuditEntry e = Entry("policy.reload");
  e.purpose = "LOCALCODE";
  e.user.clear();
  e.role.clear();
  e.application.clear();
  e.reason.clear();
  e.patient_id.reset();
  e.records = {""};
  const json ev = ToFhirAuditEvent(e, {});
  ExpectValidR4AuditEvent(ev);
  EXPECT_EQ(ev["purposeOfEvent"], json::parse(R"([{"text":"LOCALCODE"}])"));
  ASSERT_EQ(ev["agent"].size(), 1u);
  EXPECT_EQ(ev["agent"][0], json::parse(R"({"requestor":true})"));
  EXPECT_FALSE(ev.contains("entity"));
  EXPECT_EQ(ev["outcomeDesc"], "success");
}

TEST(FhirBundle, CollectionHoldsEveryEventWithoutTotal) {
  std::vector<DecodedAuditEntry> entries = {Entry("record.create"), Entry("record.read")};
  entries[1].seq = 18;
  const json b = ToFhirBundle(entries, FhirBundleType::kCollection, T("2025-06-01T00:00:00Z"), {});
  EXPECT_EQ(b["resourceType"], "Bundle");
  EXPECT_EQ(b["type"], "collection");
  EXPECT_EQ(b["timestamp"], "2025-06-01T00:00:00.000000Z");
  EXPECT_FALSE(b.contains("total"));  // bdl-1
  ASSERT_EQ(b["entry"].size(), 2u);
  for (const json& item : b["entry"]) {
    EXPECT_FALSE(item.contains("search"));  // bdl-2
    EXPECT_FALSE(item.contains("fullUrl"));
    ExpectValidR4AuditEvent(item["resource"]);
  }
  EXPECT_EQ(b["entry"][1]["resource"]["id"], "phivault-18");
}

TEST(FhirBundle, SearchsetHasTotalMatchModeAndUniqueFullUrls) {
  std::vector<DecodedAuditEntry> entries = {Entry("record.read"), Entry("record.read")};
  entries[1].seq = 18;
  FhirExportOptions options;
  options.full_url_base = "https://vault.example.org/fhir";
  const json b = ToFhirBundle(entries, FhirBundleType::kSearchset, 0, options);
  EXPECT_EQ(b["type"], "searchset");
  EXPECT_EQ(b["total"], 2);
  std::set<std::string> urls;
  for (const json& item : b["entry"]) {
    EXPECT_EQ(item["search"]["mode"], "match");
    urls.insert(item["fullUrl"].get<std::string>());
  }
  EXPECT_EQ(urls, (std::set<std::string>{"https://vault.example.org/fhir/AuditEvent/phivault-17",
                                         "https://vault.example.org/fhir/AuditEvent/phivault-18"}));
}

TEST(FhirBundle, EmptyBundleHasNoEntryArray) {
  const json b = ToFhirBundle({}, FhirBundleType::kSearchset, 0, {});
  EXPECT_EQ(b["total"], 0);
  EXPECT_FALSE(b.contains("entry"));
}

TEST(FhirBundle, InvalidUtf8IsReplacedNotThrown) {
  DecodedAuditEntry e = Entry("record.read");
  e.user = "bad\xFFuser";
  const std::string text = ToFhirBundleJson(std::vector{e}, FhirBundleType::kCollection, 0, {});
  const json b = json::parse(text);
  EXPECT_EQ(b["entry"][0]["resource"]["agent"][0]["name"], "bad\xEF\xBF\xBDuser");
}

}  // namespace
}  // namespace phivault::policies
