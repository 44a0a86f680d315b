#include "policies/purpose_of_use.h"

#include <array>

namespace phivault::policies {
namespace {

using C = PurposeCategory;

// Order and parents: R4 value set v3-PurposeOfUse (4.0.1) in code-system hierarchy order.
constexpr std::array<PurposeOfUseCode, 60> kCodes{{
    {"PurposeOfUse", "purpose of use", "", C::kAbstract},
    {"HMARKT", "healthcare marketing", "PurposeOfUse", C::kMarketing},
    {"HOPERAT", "healthcare operations", "PurposeOfUse", C::kOperations},
    {"CAREMGT", "care management", "HOPERAT", C::kOperations},
    {"DONAT", "donation", "HOPERAT", C::kOperations},
    {"FRAUD", "fraud", "HOPERAT", C::kOperations},
    {"GOV", "government", "HOPERAT", C::kOperations},
    {"HACCRED", "health accreditation", "HOPERAT", C::kOperations},
    {"HCOMPL", "health compliance", "HOPERAT", C::kOperations},
    {"HDECD", "decedent", "HOPERAT", C::kOperations},
    {"HDIRECT", "directory", "HOPERAT", C::kOperations},
    {"HDM", "healthcare delivery management", "HOPERAT", C::kOperations},
    {"HLEGAL", "legal", "HOPERAT", C::kOperations},
    {"HOUTCOMS", "health outcome measure", "HOPERAT", C::kOperations},
    {"HPRGRP", "health program reporting", "HOPERAT", C::kOperations},
    {"HQUALIMP", "health quality improvement", "HOPERAT", C::kOperations},
    {"HSYSADMIN", "health system administration", "HOPERAT", C::kOperations},
    {"LABELING", "labeling", "HOPERAT", C::kOperations},
    {"METAMGT", "metadata management", "HOPERAT", C::kOperations},
    {"MEMADMIN", "member administration", "HOPERAT", C::kOperations},
    {"MILCDM", "military command", "HOPERAT", C::kOperations},
    {"PATADMIN", "patient administration", "HOPERAT", C::kOperations},
    {"PATSFTY", "patient safety", "HOPERAT", C::kOperations},
    {"PERFMSR", "performance measure", "HOPERAT", C::kOperations},
    {"RECORDMGT", "records management", "HOPERAT", C::kOperations},
    {"SYSDEV", "system development", "HOPERAT", C::kOperations},
    {"HTEST", "test health data", "HOPERAT", C::kOperations},
    {"TRAIN", "training", "HOPERAT", C::kOperations},
    {"HPAYMT", "healthcare payment", "PurposeOfUse", C::kPayment},
    {"CLMATTCH", "claim attachment", "HPAYMT", C::kPayment},
    {"COVAUTH", "coverage authorization", "HPAYMT", C::kPayment},
    {"COVERAGE", "coverage under policy or program", "HPAYMT", C::kPayment},
    {"ELIGDTRM", "eligibility determination", "HPAYMT", C::kPayment},
    {"ELIGVER", "eligibility verification", "HPAYMT", C::kPayment},
    {"ENROLLM", "enrollment", "HPAYMT", C::kPayment},
    {"MILDCRG", "military discharge", "HPAYMT", C::kPayment},
    {"REMITADV", "remittance advice", "HPAYMT", C::kPayment},
    {"HRESCH", "healthcare research", "PurposeOfUse", C::kResearch},
    {"BIORCH", "biomedical research", "HRESCH", C::kResearch},
    {"CLINTRCH", "clinical trial research", "HRESCH", C::kResearch},
    {"CLINTRCHNPC", "clinical trial research without patient care", "CLINTRCH", C::kResearch},
    {"CLINTRCHPC", "clinical trial research with patient care", "CLINTRCH", C::kResearch},
    {"PRECLINTRCH", "preclinical trial research", "CLINTRCH", C::kResearch},
    {"DSRCH", "disease specific healthcare research", "HRESCH", C::kResearch},
    {"POARCH", "population origins or ancestry healthcare research", "HRESCH", C::kResearch},
    {"TRANSRCH", "translational healthcare research", "HRESCH", C::kResearch},
    {"PATRQT", "patient requested", "PurposeOfUse", C::kIndividualRequest},
    {"FAMRQT", "family requested", "PATRQT", C::kIndividualRequest},
    {"PWATRNY", "power of attorney", "PATRQT", C::kIndividualRequest},
    {"SUPNWK", "support network", "PATRQT", C::kIndividualRequest},
    {"PUBHLTH", "public health", "PurposeOfUse", C::kPublicHealth},
    {"DISASTER", "disaster", "PUBHLTH", C::kPublicHealth},
    {"THREAT", "threat", "PUBHLTH", C::kPublicHealth},
    {"TREAT", "treatment", "PurposeOfUse", C::kTreatment},
    {"CLINTRL", "clinical trial", "TREAT", C::kTreatment},
    {"COC", "coordination of care", "TREAT", C::kTreatment},
    {"ETREAT", "Emergency Treatment", "TREAT", C::kTreatment},
    {"BTG", "break the glass", "ETREAT", C::kTreatment},
    {"ERTREAT", "emergency room treatment", "ETREAT", C::kTreatment},
    {"POPHLTH", "population health", "TREAT", C::kTreatment},
}};

}  // namespace

std::string_view PurposeCategoryName(PurposeCategory category) {
  switch (category) {
    case C::kTreatment:
      return "treatment";
    case C::kPayment:
      return "payment";
    case C::kOperations:
      return "operations";
    case C::kIndividualRequest:
      return "individual_request";
    case C::kResearch:
      return "research";
    case C::kPublicHealth:
      return "public_health";
    case C::kMarketing:
      return "marketing";
    case C::kAbstract:
      return "abstract";
  }
  return "abstract";
}

std::span<const PurposeOfUseCode> AllPurposeOfUseCodes() { return kCodes; }

std::optional<PurposeOfUseCode> LookupPurposeOfUse(std::string_view code) {
  for (const PurposeOfUseCode& c : kCodes) {
    if (c.code == code) return c;
  }
  return std::nullopt;
}

bool PurposeIsA(std::string_view code, std::string_view ancestor) {
  std::optional<PurposeOfUseCode> c = LookupPurposeOfUse(code);
  while (c) {
    if (c->code == ancestor) return true;
    c = LookupPurposeOfUse(c->parent);
  }
  return false;
}

bool IsTpoPurpose(std::string_view code) {
  const std::optional<PurposeOfUseCode> c = LookupPurposeOfUse(code);
  return c && (c->category == C::kTreatment || c->category == C::kPayment ||
               c->category == C::kOperations);
}

bool IsEmergencyPurpose(std::string_view code) { return PurposeIsA(code, "ETREAT"); }

bool IsBreakGlassPurpose(std::string_view code) { return code == "BTG"; }

}  // namespace phivault::policies
