// HL7 v3 PurposeOfUse: why information is used or disclosed.
//
// The codes are those of the value set http://terminology.hl7.org/ValueSet/v3-PurposeOfUse as
// published in FHIR R4 (hl7.fhir.r4.core 4.0.1: 60 codes, all from the code system
// http://terminology.hl7.org/CodeSystem/v3-ActReason, which is the binding of
// AuditEvent.purposeOfEvent). Displays are the code system's, verbatim. The hierarchy (each code's
// parent) follows the code system's specialisation tree; the top of the tree gives the category.
// Sources are listed in docs/accounting.md.
#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace phivault::policies {

// The system URI to put in a FHIR Coding for these codes.
inline constexpr std::string_view kActReasonSystem =
    "http://terminology.hl7.org/CodeSystem/v3-ActReason";

// The branch of the PurposeOfUse tree a code belongs to.
enum class PurposeCategory {
  kTreatment,   // TREAT and its specialisations (ETREAT, BTG, ERTREAT, COC, CLINTRL, POPHLTH)
  kPayment,     // HPAYMT and its specialisations (CLMATTCH, COVAUTH, ELIGVER, ...)
  kOperations,  // HOPERAT and its specialisations (CAREMGT, HQUALIMP, HDIRECT, ...)
  kIndividualRequest,  // PATRQT and its specialisations (FAMRQT, PWATRNY, SUPNWK)
  kResearch,           // HRESCH and its specialisations (CLINTRCH, BIORCH, ...)
  kPublicHealth,       // PUBHLTH and its specialisations (DISASTER, THREAT)
  kMarketing,          // HMARKT
  kAbstract,           // the abstract root "PurposeOfUse" (not for use in instances)
};

// Stable lowercase name: "treatment", "payment", "operations", "individual_request", "research",
// "public_health", "marketing", "abstract".
std::string_view PurposeCategoryName(PurposeCategory category);

struct PurposeOfUseCode {
  std::string_view code;     // e.g. "ETREAT"
  std::string_view display;  // the code system's display, e.g. "Emergency Treatment"
  std::string_view parent;   // the code it specialises, "" for the abstract root
  PurposeCategory category;
};

// Every code of the value set, the abstract root first.
std::span<const PurposeOfUseCode> AllPurposeOfUseCodes();

// The entry for `code` (exact, case-sensitive match as codes are case-sensitive), or nullopt if it
// is not a PurposeOfUse code.
std::optional<PurposeOfUseCode> LookupPurposeOfUse(std::string_view code);

// True if `code` is `ancestor` or one of its (transitive) specialisations. False for unknown codes.
bool PurposeIsA(std::string_view code, std::string_view ancestor);

// Treatment, payment or health care operations (the "TPO" of 45 CFR 164.506).
bool IsTpoPurpose(std::string_view code);
// ETREAT or a specialisation of it (BTG, ERTREAT): emergency access.
bool IsEmergencyPurpose(std::string_view code);
// BTG: an override of normal provisioning that must be reviewed.
bool IsBreakGlassPurpose(std::string_view code);

}  // namespace phivault::policies
