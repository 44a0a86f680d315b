// Audit entries as FHIR R4 (4.0.1) AuditEvent resources, in a Bundle.
//
// Mapping (docs/accounting.md has the sources):
//   type      DICOM (http://dicom.nema.org/resources/ontology/DCM): 110110 "Patient Record" for
//             record create/read/amend/erase, 110112 "Query" for list/search, 110106 "Export" for
//             export and disclosure, 110101 "Audit Log Used" for audit reads, 110113 "Security
//             Alert" for key/policy changes and for every break-glass access, 110100 "Application
//             Activity" otherwise.
//   subtype   break-glass: 110127 "Emergency Override Started"; key/policy changes: 110129
//             "Security Configuration".
//   action    C/R/U/D/E (http://hl7.org/fhir/audit-event-action).
//   outcome   success 0, denied 4 (minor failure), error 8 (serious failure), anything else 12
//             (major failure); outcomeDesc carries the deciding rule / error type.
//   purposeOfEvent  the PurposeOfUse code in http://terminology.hl7.org/CodeSystem/v3-ActReason
//             (text only for a code outside the value set; break-glass reason as text).
//   agent     the user (requestor, role as text), the application (DCM 110150 "Application"),
//             and for a disclosure the recipient (DCM 110152 "Destination Role ID").
//   source    the vault (observer display, site, type 4 "Application Server").
//   entity    the patient (audit-entity-type 1 "Person", object-role 1 "Patient") and each record
//             (audit-entity-type 2 "System Object", object-role 4 "Domain Resource"), by
//             identifier.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "policies/audit_view.h"

namespace phivault::policies {

struct FhirExportOptions {
  std::string observer_name = "phivault";  // source.observer.display and source.site
  // Identifier.system URIs; a practice should set patient_system to its MRN system.
  std::string user_system = "urn:phivault:user";
  std::string application_system = "urn:phivault:application";
  std::string patient_system = "urn:phivault:patient";
  std::string record_system = "urn:phivault:record";
  // If set (e.g. "https://vault.example.org/fhir"), entries get fullUrl = base + "/AuditEvent/" +
  // id.
  std::string full_url_base;
};

enum class FhirBundleType { kCollection, kSearchset };

// How an audit action maps onto AuditEvent.type/subtype/action.
struct AuditEventClass {
  std::string_view type_code;
  std::string_view type_display;
  char action;                    // 'C', 'R', 'U', 'D' or 'E'
  std::string_view subtype_code;  // "" when none
  std::string_view subtype_display;
};
// The class of `action` (e.g. "record.read"), break-glass overriding the type.
AuditEventClass ClassifyAuditAction(std::string_view action, bool break_glass);

// One AuditEvent resource (id "phivault-<seq>"). Never fails; invalid UTF-8 is replaced when the
// JSON is dumped with error_handler_t::replace (as ToFhirBundleJson does).
nlohmann::json ToFhirAuditEvent(const DecodedAuditEntry& entry, const FhirExportOptions& options);

// A Bundle of the entries' AuditEvents in the given order; a searchset also gets `total` and
// search.mode "match" on each entry (R4 bdl-1 allows total only on searchset/history).
nlohmann::json ToFhirBundle(std::span<const DecodedAuditEntry> entries, FhirBundleType type,
                            int64_t generated_at_unix_us, const FhirExportOptions& options);

// ToFhirBundle as compact JSON text, invalid UTF-8 replaced by U+FFFD.
std::string ToFhirBundleJson(std::span<const DecodedAuditEntry> entries, FhirBundleType type,
                             int64_t generated_at_unix_us, const FhirExportOptions& options);

}  // namespace phivault::policies
