#include "policies/purpose_of_use.h"

#include <set>
#include <string>

#include <gtest/gtest.h>

namespace phivault::policies {
namespace {

TEST(PurposeOfUse, HasTheSixtyCodesOfTheR4ValueSetEachOnce) {
  // hl7.fhir.r4.core 4.0.1, ValueSet v3-PurposeOfUse: 60 concepts.
  const auto codes = AllPurposeOfUseCodes();
  EXPECT_EQ(codes.size(), 60u);
  std::set<std::string_view> seen;
  for (const PurposeOfUseCode& c : codes) {
    EXPECT_TRUE(seen.insert(c.code).second) << c.code;
    EXPECT_FALSE(c.display.empty()) << c.code;
  }
  for (const char* required : {"TREAT", "ETREAT", "BTG", "ERTREAT", "CAREMGT", "HPAYMT", "HOPERAT",
                               "PATRQT", "HLEGAL", "PUBHLTH", "HRESCH", "HMARKT"}) {
    EXPECT_TRUE(seen.count(required)) << required;
  }
}

TEST(PurposeOfUse, EveryParentExistsAndSharesTheCategory) {
  for (const PurposeOfUseCode& c : AllPurposeOfUseCodes()) {
    if (c.parent.empty()) {
      EXPECT_EQ(c.code, "PurposeOfUse");
      continue;
    }
    const auto parent = LookupPurposeOfUse(c.parent);
    ASSERT_TRUE(parent.has_value()) << c.code;
    if (parent->category != PurposeCategory::kAbstract) {
      EXPECT_EQ(parent->category, c.category) << c.code;
    }
  }
}

TEST(PurposeOfUse, DisplaysAreTheCodeSystemsOwn) {
  EXPECT_EQ(LookupPurposeOfUse("ETREAT")->display, "Emergency Treatment");
  EXPECT_EQ(LookupPurposeOfUse("BTG")->display, "break the glass");
  EXPECT_EQ(LookupPurposeOfUse("HPAYMT")->display, "healthcare payment");
  EXPECT_EQ(LookupPurposeOfUse("HOPERAT")->display, "healthcare operations");
  EXPECT_EQ(LookupPurposeOfUse("PATRQT")->display, "patient requested");
}

TEST(PurposeOfUse, CodesAreCaseSensitiveAndUnknownCodesAreNotFound) {
  EXPECT_FALSE(LookupPurposeOfUse("treat").has_value());
  EXPECT_FALSE(LookupPurposeOfUse("").has_value());
  EXPECT_FALSE(LookupPurposeOfUse("NOTACODE").has_value());
  EXPECT_FALSE(IsTpoPurpose("treat"));
}

TEST(PurposeOfUse, SpecialisationFollowsTheHierarchy) {
  EXPECT_TRUE(PurposeIsA("BTG", "ETREAT"));
  EXPECT_TRUE(PurposeIsA("BTG", "TREAT"));
  EXPECT_TRUE(PurposeIsA("CLINTRCHNPC", "HRESCH"));
  EXPECT_TRUE(PurposeIsA("TREAT", "TREAT"));
  EXPECT_FALSE(PurposeIsA("TREAT", "BTG"));
  EXPECT_FALSE(PurposeIsA("HPAYMT", "TREAT"));
  EXPECT_FALSE(PurposeIsA("NOTACODE", "TREAT"));
}

TEST(PurposeOfUse, ClassifiesTreatmentPaymentOperations) {
  for (const char* tpo : {"TREAT", "ETREAT", "BTG", "COC", "HPAYMT", "COVAUTH", "CLMATTCH",
                          "HOPERAT", "CAREMGT", "HQUALIMP"}) {
    EXPECT_TRUE(IsTpoPurpose(tpo)) << tpo;
  }
  for (const char* other :
       {"PATRQT", "FAMRQT", "HRESCH", "PUBHLTH", "THREAT", "HMARKT", "PurposeOfUse"}) {
    EXPECT_FALSE(IsTpoPurpose(other)) << other;
  }
  EXPECT_EQ(LookupPurposeOfUse("PWATRNY")->category, PurposeCategory::kIndividualRequest);
  EXPECT_EQ(LookupPurposeOfUse("DISASTER")->category, PurposeCategory::kPublicHealth);
  EXPECT_EQ(PurposeCategoryName(LookupPurposeOfUse("ELIGVER")->category), "payment");
}

TEST(PurposeOfUse, RecognisesEmergencyAndBreakGlass) {
  EXPECT_TRUE(IsEmergencyPurpose("ETREAT"));
  EXPECT_TRUE(IsEmergencyPurpose("BTG"));
  EXPECT_TRUE(IsEmergencyPurpose("ERTREAT"));
  EXPECT_FALSE(IsEmergencyPurpose("TREAT"));
  EXPECT_TRUE(IsBreakGlassPurpose("BTG"));
  EXPECT_FALSE(IsBreakGlassPurpose("ETREAT"));
}

}  // namespace
}  // namespace phivault::policies
