// The HIPAA accounting of disclosures (45 CFR 164.528) and the access report.
//
// Pure functions over plain records: the caller gathers a patient's disclosures (from unsealed
// audit entries) and any suspension statements; these functions decide what the individual is
// owed and in which form. docs/accounting.md explains every rule with its citation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "policies/audit_view.h"

namespace phivault::policies {

// The legal basis of a disclosure. The first group is excluded from the accounting by
// 164.528(a)(1); the second must be accounted for.
enum class DisclosureKind {
  // Excluded, 164.528(a)(1)(i)-(viii):
  kTpoTreatment,           // (i)    treatment, 164.506
  kTpoPayment,             // (i)    payment, 164.506
  kTpoOperations,          // (i)    health care operations, 164.506
  kToIndividual,           // (ii)   to the individual, 164.502(a)(1)(i)
  kIncidentToPermitted,    // (iii)  incidental to a permitted use or disclosure, 164.502(a)(1)(iii)
  kAuthorization,          // (iv)   pursuant to an authorization, 164.508
  kFacilityDirectory,      // (v)    facility directory, 164.510(a)
  kPersonsInvolvedInCare,  // (v)    persons involved in the individual's care, 164.510(b)
  kNotification,           // (v)    other notification purposes (e.g. disaster relief), 164.510(b)
  kNationalSecurity,       // (vi)   national security and intelligence, 164.512(k)(2)
  kCorrectionalInstitution,  // (vii)  correctional institutions / law enforcement custody,
                             // 164.512(k)(5)
  kLimitedDataSet,           // (viii) as part of a limited data set, 164.514(e)
  // Accounted for:
  kToSecretary,         // to HHS for compliance review, 164.502(a)(2)(ii)
  kRequiredByLaw,       // 164.512(a)
  kPublicHealth,        // 164.512(b)
  kAbuseNeglect,        // victims of abuse, neglect or domestic violence, 164.512(c)
  kHealthOversight,     // 164.512(d)
  kJudicial,            // judicial and administrative proceedings, 164.512(e)
  kLawEnforcement,      // 164.512(f)
  kDecedent,            // coroners, medical examiners, funeral directors, 164.512(g)
  kOrganDonation,       // cadaveric organ, eye or tissue donation, 164.512(h)
  kResearch,            // research without authorization (IRB/privacy board waiver), 164.512(i)
  kAvertThreat,         // to avert a serious threat to health or safety, 164.512(j)
  kMilitary,            // armed forces personnel, 164.512(k)(1)
  kProtectiveServices,  // protective services for the President and others, 164.512(k)(3)
  kStateDepartment,     // medical suitability determinations, 164.512(k)(4)
  kPublicBenefits,      // government programs providing public benefits, 164.512(k)(6)
  kWorkersComp,         // workers' compensation, 164.512(l)
  kImpermissible,       // a disclosure the Privacy Rule did not permit (e.g. a misdirected fax)
};

// Stable snake_case name, e.g. "tpo_treatment", "law_enforcement", "workers_comp".
std::string_view DisclosureKindName(DisclosureKind kind);
// Parses a name produced by DisclosureKindName. InvalidArgument for anything else.
StatusOr<DisclosureKind> ParseDisclosureKind(std::string_view name);
// The regulation that permits (or, for kImpermissible, governs) the disclosure, e.g.
// "45 CFR 164.512(f)".
std::string_view DisclosureKindCitation(DisclosureKind kind);
// A plain-language purpose statement for the kind, used when a disclosure carries none.
std::string_view DisclosureKindStatement(DisclosureKind kind);
// True if 164.528(a)(1) requires the disclosure to appear in an accounting.
bool IsAccountable(DisclosureKind kind);
// True if repeated disclosures of this kind may be summarised under 164.528(b)(3), which covers
// only disclosures under 164.502(a)(2)(ii) or 164.512.
bool IsSummarisable(DisclosureKind kind);

// The basis implied by a PurposeOfUse code alone, for entries recorded without an explicit basis;
// nullopt when the code does not determine one (research may be authorised or waived, legal may
// be a subpoena or counsel, ...). Callers must treat nullopt as accountable, never as excluded.
std::optional<DisclosureKind> DefaultDisclosureKind(std::string_view purpose_code);
// The PurposeOfUse code that names the purpose of a disclosure of this kind, "" when no code of
// the value set does (the accounting then shows the basis's statement alone).
std::string_view DisclosureKindPurposeOfUse(DisclosureKind kind);

struct Disclosure {
  int64_t time_unix_us = 0;
  std::string patient_id;
  std::string recipient_name;                    // required for accountable kinds
  std::optional<std::string> recipient_address;  // "if known", 164.528(b)(2)(ii)
  std::string purpose_code;                      // HL7 PurposeOfUse, may be empty
  std::string purpose_statement;                 // "" -> DisclosureKindStatement(kind)
  std::string description;                       // brief description of the PHI; required
  std::vector<std::string> record_ids;
  DisclosureKind kind = DisclosureKind::kImpermissible;
};

// A health oversight agency's or law enforcement official's statement under 164.528(a)(2).
struct Suspension {
  std::string agency;  // matched against Disclosure::recipient_name (case and spacing ignored)
  int64_t start_unix_us = 0;  // when the statement was made (oral) or takes effect (written)
  std::optional<int64_t> end_unix_us;  // written: required; oral: optional, capped at 30 days
  bool oral = false;
  std::string statement;  // the documented statement, incl. who made it (164.528(a)(2)(ii)(A))
};

struct AccountingRequest {
  std::string patient_id;
  int64_t requested_at_unix_us = 0;
  // Start of the period to account for; default and earliest: six calendar years before the
  // request (164.528(a)(1), (a)(3)).
  std::optional<int64_t> period_start_unix_us;
};

// One line of an accounting: a single disclosure, or the summary of repeated disclosures to the
// same recipient for the same purpose (164.528(b)(3)), which shows the first disclosure in full.
struct AccountingEntry {
  Disclosure first;               // the disclosure (the first one of a summary)
  std::string purpose;            // the purpose statement to show (never empty)
  size_t count = 1;               // number of disclosures this line stands for
  int64_t last_time_unix_us = 0;  // date of the last disclosure (== first.time for single lines)

  bool summarised() const { return count > 1; }
};

struct Accounting {
  std::string patient_id;
  int64_t requested_at_unix_us = 0;
  int64_t period_start_unix_us = 0;
  int64_t period_end_unix_us = 0;        // == requested_at
  std::vector<AccountingEntry> entries;  // by date of (first) disclosure, oldest first
  // Disclosures withheld because a suspension was in force when the accounting was requested.
  // For the covered entity's own documentation (164.528(d)); renderers never show it, since
  // telling the individual would defeat the suspension.
  size_t withheld_under_suspension = 0;
};

// Builds the accounting owed for `request`. Disclosures of other patients, of excluded kinds,
// outside [period start, request time] (both ends included) are left out; disclosures to an agency
// with a suspension in force at the request time are withheld. InvalidArgument if the patient is
// empty, the period starts after the request or more than six years before it, a suspension is
// malformed (written without an end, end before start, no agency), or an accountable disclosure
// lacks a recipient name or description (messages name the index, never PHI).
StatusOr<Accounting> BuildAccounting(const AccountingRequest& request,
                                     std::span<const Disclosure> disclosures,
                                     std::span<const Suspension> suspensions);

// True if `suspension` suspends the accounting of disclosures to its agency for a request made at
// `at_unix_us`: written ones from start until (not including) their end; oral ones for at most 30
// days from the statement (164.528(a)(2)(ii)(C)). A written statement without an end is never in
// force (BuildAccounting rejects it).
bool SuspensionInForce(const Suspension& suspension, int64_t at_unix_us);

struct AccessReportRequest {
  std::string patient_id;
  int64_t requested_at_unix_us = 0;
};

struct AccessReportEntry {
  int64_t time_unix_us = 0;
  std::string user;
  std::string role;
  std::string application;
  std::string action;
  std::string purpose;  // PurposeOfUse code as recorded
  std::string outcome;
  bool break_glass = false;
};

struct AccessReport {
  std::string patient_id;
  int64_t requested_at_unix_us = 0;
  int64_t period_start_unix_us = 0;  // three calendar years before the request
  int64_t period_end_unix_us = 0;
  std::vector<AccessReportEntry> entries;  // oldest first, all outcomes, TPO included
};

inline constexpr int kAccountingYears = 6;
inline constexpr int kAccessReportYears = 3;
inline constexpr int64_t kOralSuspensionMaxMicros = 30 * 86'400LL * 1'000'000LL;

// Every audited access to the patient's records in the three years before the request (both ends
// included), whatever the purpose or outcome. InvalidArgument if the patient id is empty.
StatusOr<AccessReport> BuildAccessReport(const AccessReportRequest& request,
                                         std::span<const DecodedAuditEntry> entries);

}  // namespace phivault::policies
