#include "policies/accounting.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"

namespace phivault::policies {
namespace {

using testing::kDay;
using testing::T;

constexpr char kPatient[] = "synthetic-patient-0001";
constexpr char kAgency[] = "State Board of Medicine";

Disclosure Make(DisclosureKind kind, int64_t time, std::string recipient = "County Health Dept",
                std::string purpose_code = "PUBHLTH") {
  Disclosure d;
  d.time_unix_us = time;
  d.patient_id = kPatient;
  d.recipient_name = std::move(recipient);
  d.recipient_address = "1 Main St, Springfield";
  d.purpose_code = std::move(purpose_code);
  d.description = "Immunization record";
  d.record_ids = {"rec-1@1"};
  d.kind = kind;
  return d;
}

class AccountingTest : public ::testing::Test {
 protected:
  AccountingRequest Request() const {
    AccountingRequest r;
    r.patient_id = kPatient;
    r.requested_at_unix_us = now_;
    return r;
  }
  Accounting Build(const std::vector<Disclosure>& ds, const std::vector<Suspension>& ss = {},
                   std::optional<AccountingRequest> req = std::nullopt) {
    StatusOr<Accounting> a = BuildAccounting(req.value_or(Request()), ds, ss);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? *a : Accounting{};
  }

  const int64_t now_ = T("2025-06-15T12:00:00Z");
};

// --- 164.528(a)(1): what is excluded and what is owed -------------------------------------------

struct KindCase {
  const char* name;
  bool accountable;
};

class KindTest : public AccountingTest, public ::testing::WithParamInterface<KindCase> {};

TEST_P(KindTest, ExcludedKindsAreLeftOutAndOthersListed) {
  const StatusOr<DisclosureKind> kind = ParseDisclosureKind(GetParam().name);
  ASSERT_TRUE(kind.ok()) << GetParam().name;
  EXPECT_EQ(DisclosureKindName(*kind), GetParam().name);
  EXPECT_EQ(IsAccountable(*kind), GetParam().accountable);

  const Accounting a = Build({Make(*kind, T("2024-01-10T09:00:00Z"))});
  if (GetParam().accountable) {
    ASSERT_EQ(a.entries.size(), 1u);
    EXPECT_EQ(a.entries[0].first.kind, *kind);
    EXPECT_EQ(a.entries[0].count, 1u);
  } else {
    EXPECT_TRUE(a.entries.empty());
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllKinds, KindTest,
    ::testing::Values(
        // Excluded by 164.528(a)(1)(i)-(viii).
        KindCase{"tpo_treatment", false}, KindCase{"tpo_payment", false},
        KindCase{"tpo_operations", false}, KindCase{"to_individual", false},
        KindCase{"incident_to_permitted", false}, KindCase{"authorization", false},
        KindCase{"facility_directory", false}, KindCase{"persons_involved_in_care", false},
        KindCase{"notification", false}, KindCase{"national_security", false},
        KindCase{"correctional_institution", false}, KindCase{"limited_data_set", false},
        // Owed: 164.502(a)(2)(ii), every 164.512 purpose not named in (a)(1), and
        // impermissible disclosures.
        KindCase{"to_secretary", true}, KindCase{"required_by_law", true},
        KindCase{"public_health", true}, KindCase{"abuse_neglect", true},
        KindCase{"health_oversight", true}, KindCase{"judicial", true},
        KindCase{"law_enforcement", true}, KindCase{"decedent", true},
        KindCase{"organ_donation", true}, KindCase{"research", true},
        KindCase{"avert_threat", true}, KindCase{"military", true},
        KindCase{"protective_services", true}, KindCase{"state_department", true},
        KindCase{"public_benefits", true}, KindCase{"workers_comp", true},
        KindCase{"impermissible", true}),
    [](const ::testing::TestParamInfo<KindCase>& param_info) {
      return std::string(param_info.param.name);
    });

TEST(DisclosureKind, UnknownNamesAreRejected) {
  EXPECT_EQ(ParseDisclosureKind("TPO").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseDisclosureKind("").status().code(), StatusCode::kInvalidArgument);
}

TEST(DisclosureKind, CitationsNameTheRegulation) {
  EXPECT_EQ(DisclosureKindCitation(DisclosureKind::kLawEnforcement), "45 CFR 164.512(f)");
  EXPECT_EQ(DisclosureKindCitation(DisclosureKind::kNationalSecurity), "45 CFR 164.512(k)(2)");
  EXPECT_EQ(DisclosureKindCitation(DisclosureKind::kCorrectionalInstitution),
            "45 CFR 164.512(k)(5)");
}

TEST_F(AccountingTest, OtherPatientsDisclosuresAreIgnored) {
  Disclosure other = Make(DisclosureKind::kPublicHealth, T("2024-01-10T09:00:00Z"));
  other.patient_id = "synthetic-patient-0002";
  EXPECT_TRUE(Build({other}).entries.empty());
}

TEST_F(AccountingTest, EntryCarriesDateRecipientAddressDescriptionAndPurpose) {
  Disclosure d = Make(DisclosureKind::kJudicial, T("2023-03-03T10:00:00Z"), "Clerk of Court");
  d.purpose_statement = "Subpoena duces tecum, case 24-CV-001";
  const Accounting a = Build({d});
  ASSERT_EQ(a.entries.size(), 1u);
  const AccountingEntry& e = a.entries[0];
  EXPECT_EQ(e.first.time_unix_us, T("2023-03-03T10:00:00Z"));
  EXPECT_EQ(e.first.recipient_name, "Clerk of Court");
  EXPECT_EQ(e.first.recipient_address, "1 Main St, Springfield");
  EXPECT_EQ(e.first.description, "Immunization record");
  EXPECT_EQ(e.purpose, "Subpoena duces tecum, case 24-CV-001");
  EXPECT_EQ(e.last_time_unix_us, e.first.time_unix_us);
  EXPECT_FALSE(e.summarised());
}

TEST_F(AccountingTest, MissingPurposeStatementFallsBackToThePlainLanguageBasis) {
  const Accounting a = Build({Make(DisclosureKind::kWorkersComp, T("2023-03-03T10:00:00Z"))});
  ASSERT_EQ(a.entries.size(), 1u);
  EXPECT_EQ(a.entries[0].purpose, "Workers' compensation.");
}

TEST_F(AccountingTest, AccountableDisclosureWithoutRecipientOrDescriptionIsRejectedWithoutPhi) {
  Disclosure no_recipient = Make(DisclosureKind::kPublicHealth, T("2023-03-03T10:00:00Z"), "  ");
  StatusOr<Accounting> a = BuildAccounting(Request(), std::vector{no_recipient}, {});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("disclosure #0"), std::string::npos);
  EXPECT_EQ(a.status().message().find(kPatient), std::string::npos);

  Disclosure no_description = Make(DisclosureKind::kPublicHealth, T("2023-03-03T10:00:00Z"));
  no_description.description.clear();
  EXPECT_EQ(BuildAccounting(Request(), std::vector{no_description}, {}).status().code(),
            StatusCode::kInvalidArgument);

  // An excluded disclosure is never shown, so its missing recipient does not matter.
  Disclosure tpo = Make(DisclosureKind::kTpoTreatment, T("2023-03-03T10:00:00Z"), "");
  EXPECT_TRUE(BuildAccounting(Request(), std::vector{tpo}, {}).ok());
}

TEST_F(AccountingTest, EmptyPatientIsRejected) {
  AccountingRequest r = Request();
  r.patient_id.clear();
  EXPECT_EQ(BuildAccounting(r, {}, {}).status().code(), StatusCode::kInvalidArgument);
}

// --- The period: six years before the request, both ends included --------------------------------

TEST_F(AccountingTest, DefaultPeriodIsSixCalendarYearsBeforeTheRequest) {
  const Accounting a = Build({});
  EXPECT_EQ(a.period_start_unix_us, T("2019-06-15T12:00:00Z"));
  EXPECT_EQ(a.period_end_unix_us, now_);
}

TEST_F(AccountingTest, DisclosureExactlySixYearsBeforeIsIncludedOneMicrosecondEarlierIsNot) {
  const int64_t edge = T("2019-06-15T12:00:00Z");
  const Accounting a = Build({Make(DisclosureKind::kPublicHealth, edge, "Edge Agency"),
                              Make(DisclosureKind::kPublicHealth, edge - 1, "Too Old Agency")});
  ASSERT_EQ(a.entries.size(), 1u);
  EXPECT_EQ(a.entries[0].first.recipient_name, "Edge Agency");
}

TEST_F(AccountingTest, DisclosureAtTheRequestInstantIsIncludedFutureDatedIsIgnored) {
  const Accounting a = Build({Make(DisclosureKind::kPublicHealth, now_, "Now Agency"),
                              Make(DisclosureKind::kPublicHealth, now_ + 1, "Future Agency"),
                              Make(DisclosureKind::kPublicHealth, now_ + 30 * kDay, "Later")});
  ASSERT_EQ(a.entries.size(), 1u);
  EXPECT_EQ(a.entries[0].first.recipient_name, "Now Agency");
}

TEST_F(AccountingTest, PeriodLongerThanSixYearsIsRejected) {
  AccountingRequest r = Request();
  r.period_start_unix_us = T("2019-06-15T12:00:00Z") - 1;
  const StatusOr<Accounting> a = BuildAccounting(r, {}, {});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);

  r.period_start_unix_us = T("2019-06-15T12:00:00Z");
  EXPECT_TRUE(BuildAccounting(r, {}, {}).ok());
}

TEST_F(AccountingTest, ShorterPeriodIsHonoured) {
  AccountingRequest r = Request();
  r.period_start_unix_us = T("2024-01-01T00:00:00Z");
  const Accounting a = Build({Make(DisclosureKind::kPublicHealth, T("2023-12-31T23:59:59Z"), "A"),
                              Make(DisclosureKind::kPublicHealth, T("2024-01-01T00:00:00Z"), "B")},
                             {}, r);
  EXPECT_EQ(a.period_start_unix_us, T("2024-01-01T00:00:00Z"));
  ASSERT_EQ(a.entries.size(), 1u);
  EXPECT_EQ(a.entries[0].first.recipient_name, "B");
}

TEST_F(AccountingTest, PeriodStartingAfterTheRequestIsRejected) {
  AccountingRequest r = Request();
  r.period_start_unix_us = now_ + 1;
  EXPECT_EQ(BuildAccounting(r, {}, {}).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(AccountingTest, RequestOnLeapDayReachesBackToFebruary28) {
  AccountingRequest r = Request();
  r.requested_at_unix_us = T("2024-02-29T09:00:00Z");
  const Accounting a =
      Build({Make(DisclosureKind::kPublicHealth, T("2018-02-28T09:00:00Z"), "Edge")}, {}, r);
  EXPECT_EQ(a.period_start_unix_us, T("2018-02-28T09:00:00Z"));
  EXPECT_EQ(a.entries.size(), 1u);
}

TEST_F(AccountingTest, EntriesAreInDateOrder) {
  const Accounting a =
      Build({Make(DisclosureKind::kJudicial, T("2024-05-01T00:00:00Z"), "C"),
             Make(DisclosureKind::kPublicHealth, T("2021-05-01T00:00:00Z"), "A"),
             Make(DisclosureKind::kRequiredByLaw, T("2022-05-01T00:00:00Z"), "B")});
  ASSERT_EQ(a.entries.size(), 3u);
  EXPECT_EQ(a.entries[0].first.recipient_name, "A");
  EXPECT_EQ(a.entries[1].first.recipient_name, "B");
  EXPECT_EQ(a.entries[2].first.recipient_name, "C");
}

// --- 164.528(b)(3): repeated disclosures to one recipient for one purpose -----------------------

TEST_F(AccountingTest, RepeatedDisclosuresAreSummarisedWithFirstCountAndLastDate) {
  Disclosure first = Make(DisclosureKind::kPublicHealth, T("2021-01-05T00:00:00Z"));
  first.description = "First report";
  Disclosure second = Make(DisclosureKind::kPublicHealth, T("2022-02-05T00:00:00Z"));
  second.description = "Second report";
  Disclosure third = Make(DisclosureKind::kPublicHealth, T("2023-03-05T00:00:00Z"));
  third.description = "Third report";
  const Accounting a = Build({third, first, second});
  ASSERT_EQ(a.entries.size(), 1u);
  const AccountingEntry& e = a.entries[0];
  EXPECT_TRUE(e.summarised());
  EXPECT_EQ(e.count, 3u);
  EXPECT_EQ(e.first.time_unix_us, T("2021-01-05T00:00:00Z"));
  EXPECT_EQ(e.first.description, "First report");
  EXPECT_EQ(e.last_time_unix_us, T("2023-03-05T00:00:00Z"));
}

TEST_F(AccountingTest, RecipientNamesMatchIgnoringCaseAndSpacing) {
  const Accounting a = Build(
      {Make(DisclosureKind::kPublicHealth, T("2021-01-05T00:00:00Z"), "County Health Dept"),
       Make(DisclosureKind::kPublicHealth, T("2022-01-05T00:00:00Z"), " county  HEALTH dept ")});
  ASSERT_EQ(a.entries.size(), 1u);
  EXPECT_EQ(a.entries[0].count, 2u);
}

TEST_F(AccountingTest, DifferentRecipientOrPurposeIsNotSummarised) {
  const int64_t t1 = T("2021-01-05T00:00:00Z");
  const int64_t t2 = T("2022-01-05T00:00:00Z");
  Disclosure other_statement = Make(DisclosureKind::kPublicHealth, t2);
  other_statement.purpose_statement = "Tuberculosis case report";
  const Accounting a = Build({
      Make(DisclosureKind::kPublicHealth, t1),
      Make(DisclosureKind::kPublicHealth, t2, "State Cancer Registry"),         // other recipient
      Make(DisclosureKind::kPublicHealth, t2, "County Health Dept", "THREAT"),  // other code
      Make(DisclosureKind::kRequiredByLaw, t2),                                 // other basis
      other_statement,  // other purpose text
  });
  ASSERT_EQ(a.entries.size(), 5u);
  for (const AccountingEntry& e : a.entries) EXPECT_FALSE(e.summarised());
}

TEST_F(AccountingTest, SummaryCountsOnlyDisclosuresInsideThePeriod) {
  const Accounting a = Build({Make(DisclosureKind::kPublicHealth, T("2018-01-05T00:00:00Z")),
                              Make(DisclosureKind::kPublicHealth, T("2021-01-05T00:00:00Z")),
                              Make(DisclosureKind::kPublicHealth, T("2022-01-05T00:00:00Z")),
                              Make(DisclosureKind::kPublicHealth, now_ + kDay)});
  ASSERT_EQ(a.entries.size(), 1u);
  EXPECT_EQ(a.entries[0].count, 2u);
  EXPECT_EQ(a.entries[0].first.time_unix_us, T("2021-01-05T00:00:00Z"));
  EXPECT_EQ(a.entries[0].last_time_unix_us, T("2022-01-05T00:00:00Z"));
}

TEST_F(AccountingTest, ImpermissibleDisclosuresAreAlwaysListedOneByOne) {
  const Accounting a = Build({Make(DisclosureKind::kImpermissible, T("2021-01-05T00:00:00Z")),
                              Make(DisclosureKind::kImpermissible, T("2022-01-05T00:00:00Z"))});
  ASSERT_EQ(a.entries.size(), 2u);
  EXPECT_FALSE(a.entries[0].summarised());
  EXPECT_FALSE(a.entries[1].summarised());
}

// --- 164.528(a)(2): suspensions requested by oversight agencies and law enforcement -------------

Suspension Written(int64_t start, int64_t end, std::string agency = kAgency) {
  return Suspension{std::move(agency), start, end, false, "Letter ref. 2025-17 from the Board"};
}
Suspension Oral(int64_t start, std::optional<int64_t> end = std::nullopt) {
  return Suspension{kAgency, start, end, true, "Call from Investigator (synthetic), badge 0000"};
}

class SuspensionTest : public AccountingTest {
 protected:
  std::vector<Disclosure> Disclosures() const {
    return {Make(DisclosureKind::kHealthOversight, T("2024-01-10T00:00:00Z"), kAgency, "HCOMPL"),
            Make(DisclosureKind::kPublicHealth, T("2024-02-10T00:00:00Z"))};
  }
  // Builds the accounting as if requested at `at`.
  Accounting At(int64_t at, const std::vector<Suspension>& ss) {
    AccountingRequest r = Request();
    r.requested_at_unix_us = at;
    return Build(Disclosures(), ss, r);
  }
  static bool Lists(const Accounting& a, std::string_view recipient) {
    for (const AccountingEntry& e : a.entries) {
      if (e.first.recipient_name == recipient) return true;
    }
    return false;
  }

  const int64_t start_ = T("2025-01-01T00:00:00Z");
  const int64_t end_ = T("2025-04-01T00:00:00Z");
};

TEST_F(SuspensionTest, WrittenSuspensionWithholdsTheAgencysDisclosuresUntilItsEnd) {
  const std::vector<Suspension> ss = {Written(start_, end_)};
  const Accounting during = At(T("2025-02-01T00:00:00Z"), ss);
  EXPECT_FALSE(Lists(during, kAgency));
  EXPECT_TRUE(Lists(during, "County Health Dept"));
  EXPECT_EQ(during.withheld_under_suspension, 1u);

  EXPECT_FALSE(Lists(At(end_ - 1, ss), kAgency));
  EXPECT_TRUE(Lists(At(end_, ss), kAgency));  // the end is not part of the suspension
  EXPECT_TRUE(Lists(At(start_ - 1, ss), kAgency));
}

TEST_F(SuspensionTest, RequestMadeAfterTheSuspensionEndedShowsTheWithheldEntries) {
  const Accounting after = At(T("2025-09-01T00:00:00Z"), {Written(start_, end_)});
  EXPECT_TRUE(Lists(after, kAgency));
  EXPECT_EQ(after.withheld_under_suspension, 0u);
}

TEST_F(SuspensionTest, OralSuspensionLastsAtMostThirtyDays) {
  const int64_t thirty_days = 30 * kDay;
  EXPECT_FALSE(Lists(At(start_ + thirty_days - 1, {Oral(start_)}), kAgency));
  EXPECT_TRUE(Lists(At(start_ + thirty_days, {Oral(start_)}), kAgency));
  // Even if the official asked for longer.
  EXPECT_TRUE(Lists(At(start_ + thirty_days, {Oral(start_, start_ + 90 * kDay)}), kAgency));
  // A shorter oral period ends when stated.
  EXPECT_TRUE(Lists(At(start_ + 10 * kDay, {Oral(start_, start_ + 10 * kDay)}), kAgency));
}

TEST_F(SuspensionTest, WrittenStatementSubmittedDuringAnOralSuspensionExtendsIt) {
  const std::vector<Suspension> ss = {Oral(start_),
                                      Written(start_ + 20 * kDay, start_ + 120 * kDay)};
  EXPECT_FALSE(Lists(At(start_ + 60 * kDay, ss), kAgency));
  EXPECT_TRUE(Lists(At(start_ + 120 * kDay, ss), kAgency));
}

TEST_F(SuspensionTest, OnlyOversightAndLawEnforcementDisclosuresToThatAgencyAreWithheld) {
  std::vector<Disclosure> ds = {
      Make(DisclosureKind::kLawEnforcement, T("2024-01-10T00:00:00Z"), "City Police", "HLEGAL"),
      Make(DisclosureKind::kPublicHealth, T("2024-01-11T00:00:00Z"), "City Police"),
      Make(DisclosureKind::kLawEnforcement, T("2024-01-12T00:00:00Z"), "County Sheriff")};
  AccountingRequest r = Request();
  r.requested_at_unix_us = T("2025-02-01T00:00:00Z");
  const Accounting a = Build(ds, {Written(start_, end_, "CITY  police")}, r);
  ASSERT_EQ(a.entries.size(), 2u);
  EXPECT_EQ(a.entries[0].first.kind, DisclosureKind::kPublicHealth);
  EXPECT_EQ(a.entries[1].first.recipient_name, "County Sheriff");
  EXPECT_EQ(a.withheld_under_suspension, 1u);
}

TEST_F(SuspensionTest, MalformedSuspensionsAreRejected) {
  Suspension no_end = Written(start_, end_);
  no_end.end_unix_us.reset();
  Suspension backwards = Written(end_, start_);
  Suspension no_agency = Written(start_, end_, " ");
  for (const Suspension& s : {no_end, backwards, no_agency}) {
    const StatusOr<Accounting> a = BuildAccounting(Request(), Disclosures(), std::vector{s});
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(SuspensionInForce, FollowsTheWrittenAndOralRules) {
  const int64_t s = T("2025-01-01T00:00:00Z");
  EXPECT_TRUE(SuspensionInForce(Written(s, s + kDay), s));
  EXPECT_FALSE(SuspensionInForce(Written(s, s + kDay), s + kDay));
  EXPECT_FALSE(SuspensionInForce(Written(s, s + kDay), s - 1));
  EXPECT_TRUE(SuspensionInForce(Oral(s), s + 30 * kDay - 1));
  EXPECT_FALSE(SuspensionInForce(Oral(s), s + 30 * kDay));
  Suspension written_no_end = Written(s, s);
  written_no_end.end_unix_us.reset();
  EXPECT_FALSE(SuspensionInForce(written_no_end, s + 1));
}

// --- Basis implied by a PurposeOfUse code
// ----------------------------------------------------------

TEST(DefaultDisclosureKind, OnlyUnambiguousCodesImplyABasis) {
  EXPECT_EQ(DefaultDisclosureKind("TREAT"), DisclosureKind::kTpoTreatment);
  EXPECT_EQ(DefaultDisclosureKind("BTG"), DisclosureKind::kTpoTreatment);
  EXPECT_EQ(DefaultDisclosureKind("COVAUTH"), DisclosureKind::kTpoPayment);
  EXPECT_EQ(DefaultDisclosureKind("HQUALIMP"), DisclosureKind::kTpoOperations);
  EXPECT_EQ(DefaultDisclosureKind("POPHLTH"), DisclosureKind::kTpoOperations);
  EXPECT_EQ(DefaultDisclosureKind("HDIRECT"), DisclosureKind::kFacilityDirectory);
  EXPECT_EQ(DefaultDisclosureKind("PATRQT"), DisclosureKind::kToIndividual);
  EXPECT_EQ(DefaultDisclosureKind("FAMRQT"), DisclosureKind::kPersonsInvolvedInCare);
  EXPECT_EQ(DefaultDisclosureKind("PUBHLTH"), DisclosureKind::kPublicHealth);
  EXPECT_EQ(DefaultDisclosureKind("THREAT"), DisclosureKind::kAvertThreat);
  for (const char* ambiguous : {"HRESCH", "HLEGAL", "HMARKT", "MILCDM", "DONAT", "HDECD", "MILDCRG",
                                "GOV", "", "NOTACODE"}) {
    EXPECT_FALSE(DefaultDisclosureKind(ambiguous).has_value()) << ambiguous;
  }
}

// --- Access report -------------------------------------------------------------------------------

DecodedAuditEntry Access(uint64_t seq, int64_t time, std::string action = "record.read",
                         std::string purpose = "TREAT", std::string outcome = "success") {
  DecodedAuditEntry e;
  e.seq = seq;
  e.time_unix_us = time;
  e.application = "ehr-frontdesk";
  e.user = "nurse.0042";
  e.role = "nurse";
  e.action = std::move(action);
  e.outcome = std::move(outcome);
  e.purpose = std::move(purpose);
  e.patient_id = kPatient;
  e.records = {"rec-1"};
  return e;
}

TEST(AccessReport, ListsEveryAccessInTheThreeYearsBeforeTheRequest) {
  const int64_t now = T("2025-06-15T12:00:00Z");
  const int64_t edge = T("2022-06-15T12:00:00Z");
  DecodedAuditEntry other_patient = Access(7, T("2024-01-01T00:00:00Z"));
  other_patient.patient_id = "synthetic-patient-0002";
  DecodedAuditEntry no_patient = Access(8, T("2024-01-01T00:00:00Z"), "policy.reload");
  no_patient.patient_id.reset();
  const std::vector<DecodedAuditEntry> log = {
      Access(1, edge - 1),
      Access(2, edge),
      Access(3, T("2024-01-01T00:00:00Z"), "record.amend", "TREAT"),
      Access(4, T("2023-01-01T00:00:00Z"), "record.read", "HPAYMT", "denied"),
      Access(5, now),
      Access(6, now + 1),
      other_patient,
      no_patient,
  };
  const StatusOr<AccessReport> r = BuildAccessReport({kPatient, now}, log);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->period_start_unix_us, edge);
  EXPECT_EQ(r->period_end_unix_us, now);
  ASSERT_EQ(r->entries.size(), 4u);
  EXPECT_EQ(r->entries[0].time_unix_us, edge);
  EXPECT_EQ(r->entries[1].outcome, "denied");
  EXPECT_EQ(r->entries[1].purpose, "HPAYMT");
  EXPECT_EQ(r->entries[2].action, "record.amend");
  EXPECT_EQ(r->entries[3].time_unix_us, now);
  EXPECT_EQ(r->entries[0].user, "nurse.0042");
  EXPECT_EQ(r->entries[0].role, "nurse");
  EXPECT_EQ(r->entries[0].application, "ehr-frontdesk");
}

TEST(AccessReport, SameInstantEntriesKeepLogOrder) {
  const int64_t t = T("2025-01-01T00:00:00Z");
  const std::vector<DecodedAuditEntry> log = {Access(9, t, "record.amend"),
                                              Access(3, t, "record.read")};
  const StatusOr<AccessReport> r = BuildAccessReport({kPatient, T("2025-06-01T00:00:00Z")}, log);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->entries.size(), 2u);
  EXPECT_EQ(r->entries[0].action, "record.read");
}

TEST(AccessReport, EmptyPatientIsRejected) {
  EXPECT_EQ(BuildAccessReport({"", 0}, {}).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace phivault::policies
