#include "policies/fhir_audit_event.h"

#include <array>

#include "policies/purpose_of_use.h"
#include "policies/time_format.h"

namespace phivault::policies {
namespace {

using nlohmann::json;

constexpr std::string_view kDcm = "http://dicom.nema.org/resources/ontology/DCM";
constexpr std::string_view kEntityType = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
constexpr std::string_view kObjectRole = "http://terminology.hl7.org/CodeSystem/object-role";
constexpr std::string_view kSourceType =
    "http://terminology.hl7.org/CodeSystem/security-source-type";

struct ActionRule {
  std::string_view action;  // exact action, or a prefix ending in '.'
  AuditEventClass cls;
};

constexpr AuditEventClass kPatientRecordC{"110110", "Patient Record", 'C', "", ""};
constexpr AuditEventClass kPatientRecordR{"110110", "Patient Record", 'R', "", ""};
constexpr AuditEventClass kPatientRecordU{"110110", "Patient Record", 'U', "", ""};
constexpr AuditEventClass kPatientRecordD{"110110", "Patient Record", 'D', "", ""};
constexpr AuditEventClass kQuery{"110112", "Query", 'E', "", ""};
constexpr AuditEventClass kExport{"110106", "Export", 'R', "", ""};
constexpr AuditEventClass kAuditLogUsed{"110101", "Audit Log Used", 'R', "", ""};
constexpr AuditEventClass kSecurityConfig{"110113", "Security Alert", 'E', "110129",
                                          "Security Configuration"};
constexpr AuditEventClass kApplicationActivity{"110100", "Application Activity", 'E', "", ""};

constexpr std::array<ActionRule, 14> kRules{{
    {"record.create", kPatientRecordC},
    {"record.read", kPatientRecordR},
    {"record.amend", kPatientRecordU},
    {"record.list", kQuery},
    {"record.search", kQuery},
    {"record.export", kExport},
    {"record.disclose", kExport},
    {"disclosure.", kExport},
    {"record.erase", kPatientRecordD},
    {"record.shred", kPatientRecordD},
    {"hold.", kPatientRecordU},
    {"audit.", kAuditLogUsed},
    {"key.", kSecurityConfig},
    {"policy.", kSecurityConfig},
}};

bool Matches(std::string_view rule, std::string_view action) {
  if (!rule.empty() && rule.back() == '.') return action.substr(0, rule.size()) == rule;
  return rule == action;
}

json Coding(std::string_view system, std::string_view code, std::string_view display) {
  json c = {{"system", system}, {"code", code}};
  if (!display.empty()) c["display"] = display;
  return c;
}

json Identifier(const std::string& system, const std::string& value) {
  return {{"system", system}, {"value", value}};
}

std::string_view OutcomeCode(std::string_view outcome) {
  if (outcome == "success") return "0";
  if (outcome == "denied") return "4";
  if (outcome == "error") return "8";
  return "12";
}

bool IsDisclosure(std::string_view action) {
  return action == "record.disclose" || Matches("disclosure.", action);
}

}  // namespace

AuditEventClass ClassifyAuditAction(std::string_view action, bool break_glass) {
  AuditEventClass cls = kApplicationActivity;
  for (const ActionRule& r : kRules) {
    if (Matches(r.action, action)) {
      cls = r.cls;
      break;
    }
  }
  if (break_glass) {
    cls.type_code = "110113";
    cls.type_display = "Security Alert";
    cls.subtype_code = "110127";
    cls.subtype_display = "Emergency Override Started";
  }
  return cls;
}

json ToFhirAuditEvent(const DecodedAuditEntry& e, const FhirExportOptions& options) {
  const AuditEventClass cls = ClassifyAuditAction(e.action, e.break_glass);
  json ev = {{"resourceType", "AuditEvent"},
             {"id", "phivault-" + std::to_string(e.seq)},
             {"type", Coding(kDcm, cls.type_code, cls.type_display)}};
  if (!cls.subtype_code.empty()) {
    ev["subtype"] = json::array({Coding(kDcm, cls.subtype_code, cls.subtype_display)});
  }
  ev["action"] = std::string(1, cls.action);
  ev["recorded"] = FormatUtcTimestamp(e.time_unix_us);
  ev["outcome"] = OutcomeCode(e.outcome);
  std::string desc = e.outcome;
  if (!e.reason.empty()) desc += desc.empty() ? e.reason : ": " + e.reason;
  if (!desc.empty()) ev["outcomeDesc"] = desc;

  json purpose = json::object();
  if (const std::optional<PurposeOfUseCode> p = LookupPurposeOfUse(e.purpose)) {
    purpose["coding"] = json::array({Coding(kActReasonSystem, p->code, p->display)});
  } else if (!e.purpose.empty()) {
    purpose["text"] = e.purpose;
  }
  if (e.break_glass && e.break_glass_reason && !e.break_glass_reason->empty()) {
    purpose["text"] = *e.break_glass_reason;
  }
  if (!purpose.empty()) ev["purposeOfEvent"] = json::array({std::move(purpose)});

  // FHIR forbids empty strings, so absent values are left out rather than sent as "".
  json user = {{"requestor", true}};
  if (!e.user.empty()) {
    user["who"] = {{"identifier", Identifier(options.user_system, e.user)}};
    user["name"] = e.user;
  }
  if (!e.role.empty()) user["role"] = json::array({{{"text", e.role}}});
  json agents = json::array({std::move(user)});
  if (!e.application.empty()) {
    agents.push_back(
        {{"type", {{"coding", json::array({Coding(kDcm, "110150", "Application")})}}},
         {"who", {{"identifier", Identifier(options.application_system, e.application)}}},
         {"name", e.application},
         {"requestor", false}});
  }
  if (IsDisclosure(e.action) && e.recipient && !e.recipient->empty()) {
    agents.push_back(
        {{"type", {{"coding", json::array({Coding(kDcm, "110152", "Destination Role ID")})}}},
         {"name", *e.recipient},
         {"requestor", false}});
  }
  ev["agent"] = std::move(agents);

  ev["source"] = {{"site", options.observer_name},
                  {"observer", {{"display", options.observer_name}}},
                  {"type", json::array({Coding(kSourceType, "4", "Application Server")})}};

  json entities = json::array();
  if (e.patient_id && !e.patient_id->empty()) {
    entities.push_back(
        {{"what",
          {{"type", "Patient"}, {"identifier", Identifier(options.patient_system, *e.patient_id)}}},
         {"type", Coding(kEntityType, "1", "Person")},
         {"role", Coding(kObjectRole, "1", "Patient")}});
  }
  for (const std::string& record : e.records) {
    if (record.empty()) continue;
    entities.push_back({{"what", {{"identifier", Identifier(options.record_system, record)}}},
                        {"type", Coding(kEntityType, "2", "System Object")},
                        {"role", Coding(kObjectRole, "4", "Domain Resource")}});
  }
  if (!entities.empty()) ev["entity"] = std::move(entities);
  return ev;
}

json ToFhirBundle(std::span<const DecodedAuditEntry> entries, FhirBundleType type,
                  int64_t generated_at_unix_us, const FhirExportOptions& options) {
  const bool searchset = type == FhirBundleType::kSearchset;
  json bundle = {{"resourceType", "Bundle"},
                 {"type", searchset ? "searchset" : "collection"},
                 {"timestamp", FormatUtcTimestamp(generated_at_unix_us)}};
  if (searchset) bundle["total"] = entries.size();
  json list = json::array();
  for (const DecodedAuditEntry& e : entries) {
    json item = json::object();
    json resource = ToFhirAuditEvent(e, options);
    if (!options.full_url_base.empty()) {
      item["fullUrl"] = options.full_url_base + "/AuditEvent/" + resource["id"].get<std::string>();
    }
    item["resource"] = std::move(resource);
    if (searchset) item["search"] = {{"mode", "match"}};
    list.push_back(std::move(item));
  }
  if (!list.empty()) bundle["entry"] = std::move(list);
  return bundle;
}

std::string ToFhirBundleJson(std::span<const DecodedAuditEntry> entries, FhirBundleType type,
                             int64_t generated_at_unix_us, const FhirExportOptions& options) {
  return ToFhirBundle(entries, type, generated_at_unix_us, options)
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace phivault::policies
