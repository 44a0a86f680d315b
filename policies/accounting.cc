#include "policies/accounting.h"

#include <algorithm>
#include <array>
#include <map>
#include <tuple>

#include "policies/purpose_of_use.h"
#include "policies/time_format.h"

namespace phivault::policies {
namespace {

using K = DisclosureKind;

struct KindInfo {
  K kind;
  std::string_view name;
  std::string_view citation;
  bool accountable;
  bool summarisable;
  std::string_view statement;
};

constexpr std::array<KindInfo, 29> kKinds{{
    {K::kTpoTreatment, "tpo_treatment", "45 CFR 164.506", false, false, "Treatment."},
    {K::kTpoPayment, "tpo_payment", "45 CFR 164.506", false, false, "Payment for health care."},
    {K::kTpoOperations, "tpo_operations", "45 CFR 164.506", false, false,
     "Health care operations."},
    {K::kToIndividual, "to_individual", "45 CFR 164.502(a)(1)(i)", false, false,
     "Disclosure to the individual."},
    {K::kIncidentToPermitted, "incident_to_permitted", "45 CFR 164.502(a)(1)(iii)", false, false,
     "Incidental to a permitted use or disclosure."},
    {K::kAuthorization, "authorization", "45 CFR 164.508", false, false,
     "Disclosure the individual authorized in writing."},
    {K::kFacilityDirectory, "facility_directory", "45 CFR 164.510(a)", false, false,
     "Facility directory."},
    {K::kPersonsInvolvedInCare, "persons_involved_in_care", "45 CFR 164.510(b)", false, false,
     "To a person involved in the individual's care."},
    {K::kNotification, "notification", "45 CFR 164.510(b)", false, false,
     "Notification of family or disaster relief."},
    {K::kNationalSecurity, "national_security", "45 CFR 164.512(k)(2)", false, false,
     "National security and intelligence activities."},
    {K::kCorrectionalInstitution, "correctional_institution", "45 CFR 164.512(k)(5)", false, false,
     "To a correctional institution or law enforcement official having custody."},
    {K::kLimitedDataSet, "limited_data_set", "45 CFR 164.514(e)", false, false,
     "As part of a limited data set."},
    {K::kToSecretary, "to_secretary", "45 CFR 164.502(a)(2)(ii)", true, true,
     "To the U.S. Department of Health and Human Services to review our compliance with the "
     "HIPAA Privacy Rule."},
    {K::kRequiredByLaw, "required_by_law", "45 CFR 164.512(a)", true, true, "Required by law."},
    {K::kPublicHealth, "public_health", "45 CFR 164.512(b)", true, true,
     "Public health activities (for example disease reporting)."},
    {K::kAbuseNeglect, "abuse_neglect", "45 CFR 164.512(c)", true, true,
     "Report about a victim of abuse, neglect or domestic violence to a government authority."},
    {K::kHealthOversight, "health_oversight", "45 CFR 164.512(d)", true, true,
     "Health oversight activities (for example audits, investigations, licensure)."},
    {K::kJudicial, "judicial", "45 CFR 164.512(e)", true, true,
     "Judicial or administrative proceeding (court order or subpoena)."},
    {K::kLawEnforcement, "law_enforcement", "45 CFR 164.512(f)", true, true,
     "Law enforcement purposes."},
    {K::kDecedent, "decedent", "45 CFR 164.512(g)", true, true,
     "To a coroner, medical examiner or funeral director about a deceased person."},
    {K::kOrganDonation, "organ_donation", "45 CFR 164.512(h)", true, true,
     "Organ, eye or tissue donation."},
    {K::kResearch, "research", "45 CFR 164.512(i)", true, true,
     "Research approved by an institutional review board or privacy board."},
    {K::kAvertThreat, "avert_threat", "45 CFR 164.512(j)", true, true,
     "To prevent or lessen a serious threat to health or safety."},
    {K::kMilitary, "military", "45 CFR 164.512(k)(1)", true, true, "Military command authorities."},
    {K::kProtectiveServices, "protective_services", "45 CFR 164.512(k)(3)", true, true,
     "Protective services for the President and others."},
    {K::kStateDepartment, "state_department", "45 CFR 164.512(k)(4)", true, true,
     "Medical suitability determination by the U.S. Department of State."},
    {K::kPublicBenefits, "public_benefits", "45 CFR 164.512(k)(6)", true, true,
     "Government program providing public benefits."},
    {K::kWorkersComp, "workers_comp", "45 CFR 164.512(l)", true, true, "Workers' compensation."},
    {K::kImpermissible, "impermissible", "45 CFR 164.528(a)(1)", true, false,
     "Disclosure not permitted by the HIPAA Privacy Rule."},
}};

const KindInfo& Info(K kind) {
  for (const KindInfo& k : kKinds) {
    if (k.kind == kind) return k;
  }
  return kKinds.back();
}

// Recipient names are typed by people: compare them case-blind with runs of spaces collapsed.
std::string NormaliseName(std::string_view s) {
  std::string out;
  bool space = false;
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : ch);
  }
  return out;
}

std::string Indexed(std::string_view what, size_t i, std::string_view problem) {
  return std::string(what) + " #" + std::to_string(i) + ": " + std::string(problem);
}

Status ValidateSuspension(const Suspension& s, size_t i) {
  if (NormaliseName(s.agency).empty()) {
    return InvalidArgument(Indexed("suspension", i, "agency is required"));
  }
  if (!s.oral && !s.end_unix_us) {
    return InvalidArgument(Indexed(
        "suspension", i, "a written statement must specify its end (45 CFR 164.528(a)(2)(i))"));
  }
  if (s.end_unix_us && *s.end_unix_us < s.start_unix_us) {
    return InvalidArgument(Indexed("suspension", i, "end is before start"));
  }
  return Status::Ok();
}

bool Withheld(const Disclosure& d, std::span<const Suspension> suspensions, int64_t at) {
  if (d.kind != K::kHealthOversight && d.kind != K::kLawEnforcement) return false;
  const std::string recipient = NormaliseName(d.recipient_name);
  return std::any_of(suspensions.begin(), suspensions.end(), [&](const Suspension& s) {
    return NormaliseName(s.agency) == recipient && SuspensionInForce(s, at);
  });
}

}  // namespace

std::string_view DisclosureKindName(DisclosureKind kind) { return Info(kind).name; }

StatusOr<DisclosureKind> ParseDisclosureKind(std::string_view name) {
  for (const KindInfo& k : kKinds) {
    if (k.name == name) return k.kind;
  }
  return InvalidArgument("unknown disclosure kind");
}

std::string_view DisclosureKindCitation(DisclosureKind kind) { return Info(kind).citation; }
std::string_view DisclosureKindStatement(DisclosureKind kind) { return Info(kind).statement; }
bool IsAccountable(DisclosureKind kind) { return Info(kind).accountable; }
bool IsSummarisable(DisclosureKind kind) { return Info(kind).summarisable; }

std::optional<DisclosureKind> DefaultDisclosureKind(std::string_view code) {
  // Codes under HOPERAT that name a 164.512 purpose (DONAT, FRAUD, GOV, HDECD, HLEGAL, HPRGRP,
  // MILCDM) and HMARKT (which needs an authorization, 164.508(a)(3)) do not decide the basis.
  static constexpr std::array<std::string_view, 7> kAmbiguousOperations = {
      "DONAT", "FRAUD", "GOV", "HDECD", "HLEGAL", "HPRGRP", "MILCDM"};
  if (code == "HDIRECT") return K::kFacilityDirectory;
  // Population-based activities are health care operations in 164.501, whatever HL7's tree says.
  if (code == "POPHLTH") return K::kTpoOperations;
  if (code == "PATRQT" || code == "PWATRNY") return K::kToIndividual;  // 164.502(g) representative
  if (code == "FAMRQT" || code == "SUPNWK") return K::kPersonsInvolvedInCare;
  if (code == "THREAT") return K::kAvertThreat;
  if (code == "PUBHLTH") return K::kPublicHealth;
  if (PurposeIsA(code, "TREAT")) return K::kTpoTreatment;
  if (PurposeIsA(code, "HPAYMT") && code != "MILDCRG") return K::kTpoPayment;
  if (PurposeIsA(code, "HOPERAT") &&
      std::find(kAmbiguousOperations.begin(), kAmbiguousOperations.end(), code) ==
          kAmbiguousOperations.end()) {
    return K::kTpoOperations;
  }
  return std::nullopt;
}

std::string_view DisclosureKindPurposeOfUse(DisclosureKind kind) {
  switch (kind) {
    case K::kTpoTreatment:
      return "TREAT";
    case K::kTpoPayment:
      return "HPAYMT";
    case K::kTpoOperations:
      return "HOPERAT";
    case K::kToIndividual:
      return "PATRQT";
    case K::kFacilityDirectory:
      return "HDIRECT";
    case K::kPersonsInvolvedInCare:
      return "FAMRQT";
    case K::kNotification:
      return "DISASTER";
    case K::kPublicHealth:
      return "PUBHLTH";
    case K::kAvertThreat:
      return "THREAT";
    case K::kResearch:
      return "HRESCH";
    case K::kDecedent:
      return "HDECD";
    case K::kOrganDonation:
      return "DONAT";
    case K::kMilitary:
      return "MILCDM";
    case K::kJudicial:
    case K::kLawEnforcement:
      return "HLEGAL";
    default:
      return "";
  }
}

bool SuspensionInForce(const Suspension& s, int64_t at) {
  if (at < s.start_unix_us) return false;
  if (!s.oral) return s.end_unix_us && at < *s.end_unix_us;
  const int64_t cap = s.start_unix_us + kOralSuspensionMaxMicros;
  return at < std::min(s.end_unix_us.value_or(cap), cap);
}

StatusOr<Accounting> BuildAccounting(const AccountingRequest& request,
                                     std::span<const Disclosure> disclosures,
                                     std::span<const Suspension> suspensions) {
  if (request.patient_id.empty()) return InvalidArgument("patient id is required");
  const int64_t end = request.requested_at_unix_us;
  const int64_t earliest = SubtractCalendarYears(end, kAccountingYears);
  const int64_t start = request.period_start_unix_us.value_or(earliest);
  if (start > end) return InvalidArgument("accounting period starts after the request date");
  if (start < earliest) {
    return InvalidArgument(
        "accounting period must not exceed six years before the request (45 CFR 164.528(a)(1))");
  }
  for (size_t i = 0; i < suspensions.size(); ++i) {
    PV_RETURN_IF_ERROR(ValidateSuspension(suspensions[i], i));
  }

  Accounting out;
  out.patient_id = request.patient_id;
  out.requested_at_unix_us = end;
  out.period_start_unix_us = start;
  out.period_end_unix_us = end;

  std::vector<const Disclosure*> owed;
  for (size_t i = 0; i < disclosures.size(); ++i) {
    const Disclosure& d = disclosures[i];
    if (d.patient_id != request.patient_id || !IsAccountable(d.kind)) continue;
    if (d.time_unix_us < start || d.time_unix_us > end) continue;
    if (NormaliseName(d.recipient_name).empty()) {
      return InvalidArgument(
          Indexed("disclosure", i, "recipient name is required (45 CFR 164.528(b)(2)(ii))"));
    }
    if (d.description.empty()) {
      return InvalidArgument(Indexed(
          "disclosure", i, "description of the information is required (164.528(b)(2)(iii))"));
    }
    if (Withheld(d, suspensions, end)) {
      ++out.withheld_under_suspension;
      continue;
    }
    owed.push_back(&d);
  }
  std::stable_sort(owed.begin(), owed.end(), [](const Disclosure* a, const Disclosure* b) {
    return a->time_unix_us < b->time_unix_us;
  });

  // Same recipient, same basis, same purpose code and statement: one "single purpose".
  using Key = std::tuple<std::string, DisclosureKind, std::string, std::string>;
  std::map<Key, size_t> line_of;
  for (const Disclosure* d : owed) {
    std::string purpose = d->purpose_statement.empty()
                              ? std::string(DisclosureKindStatement(d->kind))
                              : d->purpose_statement;
    if (IsSummarisable(d->kind)) {
      Key key{NormaliseName(d->recipient_name), d->kind, d->purpose_code, NormaliseName(purpose)};
      auto [it, inserted] = line_of.try_emplace(std::move(key), out.entries.size());
      if (!inserted) {
        AccountingEntry& line = out.entries[it->second];
        ++line.count;
        line.last_time_unix_us = d->time_unix_us;
        continue;
      }
    }
    out.entries.push_back(AccountingEntry{*d, std::move(purpose), 1, d->time_unix_us});
  }
  return out;
}

StatusOr<AccessReport> BuildAccessReport(const AccessReportRequest& request,
                                         std::span<const DecodedAuditEntry> entries) {
  if (request.patient_id.empty()) return InvalidArgument("patient id is required");
  AccessReport out;
  out.patient_id = request.patient_id;
  out.requested_at_unix_us = request.requested_at_unix_us;
  out.period_end_unix_us = request.requested_at_unix_us;
  out.period_start_unix_us =
      SubtractCalendarYears(request.requested_at_unix_us, kAccessReportYears);

  std::vector<const DecodedAuditEntry*> hits;
  for (const DecodedAuditEntry& e : entries) {
    if (e.patient_id != request.patient_id) continue;
    if (e.time_unix_us < out.period_start_unix_us || e.time_unix_us > out.period_end_unix_us) {
      continue;
    }
    hits.push_back(&e);
  }
  std::stable_sort(hits.begin(), hits.end(), [](const auto* a, const auto* b) {
    return std::tie(a->time_unix_us, a->seq) < std::tie(b->time_unix_us, b->seq);
  });
  out.entries.reserve(hits.size());
  for (const DecodedAuditEntry* e : hits) {
    out.entries.push_back(AccessReportEntry{e->time_unix_us, e->user, e->role, e->application,
                                            e->action, e->purpose, e->outcome, e->break_glass});
  }
  return out;
}

}  // namespace phivault::policies
