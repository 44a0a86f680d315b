// An attacker with write access to the database but no key deletes what the audit chain and the
// record heads exist to protect: a patient's audit index key (hiding a disclosure from the HIPAA
// accounting) and a record's newest version (making the previous one "latest"). Both must be
// refused as integrity failures, never answered with less.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "storage/key_encoding.h"
#include "storage/store.h"
#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

constexpr const char* kPatient = "synthetic-patient-index-tamper";

client::Actor Officer() {
  return client::Actor{
      .user = "officer.synthetic", .role = "compliance_officer", .purpose = "HOPERAT"};
}

// Deletes every key of `cf` that ends with `suffix` and starts with `prefix`; returns how many.
size_t DeleteKeys(storage::Store& store, storage::Cf cf, const std::string& prefix,
                  const std::string& suffix) {
  std::vector<std::string> doomed;
  EXPECT_TRUE(store
                  .Scan(cf, prefix, storage::PrefixEnd(prefix),
                        [&](std::string_view key, std::string_view) {
                          if (key.size() >= suffix.size() &&
                              key.substr(key.size() - suffix.size()) == suffix) {
                            doomed.emplace_back(key);
                          }
                          return true;
                        })
                  .ok());
  storage::WriteBatch batch;
  for (const auto& k : doomed) batch.Delete(cf, k);
  EXPECT_TRUE(store.Write(batch, /*sync=*/true).ok());
  return doomed.size();
}

using E2eIndexTamperTest = VaultTest;

TEST_F(E2eIndexTamperTest, DeletedPatientIndexKeyFailsTheAccountingClosed) {
  client::Client c = vault_.AppClient();
  const std::string id = StoreNote(kPatient, "Synthetic note.");
  ASSERT_FALSE(id.empty());
  client::DisclosureRecord police{.patient_id = kPatient,
                                  .record_ids = {id},
                                  .disclosure = {.recipient_name = "Synthetic County Police",
                                                 .basis = "law_enforcement",
                                                 .description = "visit summary"}};
  auto hidden = c.RecordDisclosure(Officer(), police);
  ASSERT_TRUE(hidden.ok()) << hidden.error().Message();
  auto before = c.AccountingReport(Officer(), kPatient, std::nullopt);
  ASSERT_TRUE(before.ok()) << before.error().Message();
  ASSERT_NE(before->body.find("Synthetic County Police"), std::string::npos);
  // The disclosure's purpose is its own (law enforcement -> HLEGAL), not the officer's HOPERAT.
  const auto j = nlohmann::json::parse(before->body);
  ASSERT_EQ(j["disclosures"].size(), 1u);
  EXPECT_EQ(j["disclosures"][0]["purpose"]["code"], "HLEGAL") << before->body;
  vault_.Stop();

  {
    auto store = OpenStoreOrDie(vault_.db_path());
    ASSERT_NE(store, nullptr);
    ASSERT_EQ(DeleteKeys(*store, storage::Cf::kIndexes, "ap", storage::BigEndian64(*hidden)), 1u);
  }

  ASSERT_TRUE(vault_.Start());
  client::Client after = vault_.AppClient();
  auto report = after.AccountingReport(Officer(), kPatient, std::nullopt);
  ASSERT_FALSE(report.ok()) << "an accounting was produced without the hidden disclosure:\n"
                            << report->body;
  EXPECT_EQ(report.error().kind, client::ErrorKind::kIntegrity) << report.error().Message();
  EXPECT_NE(report.error().Message().find("missing entry " + std::to_string(*hidden)),
            std::string::npos)
      << report.error().Message();
  auto access = after.AccessReport(Officer(), kPatient);
  ASSERT_FALSE(access.ok());
  EXPECT_EQ(access.error().kind, client::ErrorKind::kIntegrity);

  // The CLI says so too, with the integrity exit code.
  const ProcessResult cli = vault_.Cli({"report", "accounting", "--patient", kPatient},
                                       {{"PHIVAULT_TOKEN", vault_.token()},
                                        {"PHIVAULT_ROLE", "compliance_officer"},
                                        {"PHIVAULT_USER", "officer.synthetic"},
                                        {"PHIVAULT_PURPOSE", "HOPERAT"}});
  EXPECT_EQ(cli.exit_code, 6) << cli.out << cli.err;
}

TEST_F(E2eIndexTamperTest, DeletedNewestVersionIsAnIntegrityErrorNotTheOlderVersion) {
  client::Client c = vault_.AppClient();
  const std::string id = StoreNote(kPatient, "Allergy: none (synthetic).");
  ASSERT_FALSE(id.empty());
  auto amended = c.AmendRecord(
      Physician(), id,
      {.reason = "allergy discovered", .content = "Allergy: penicillin (synthetic)."});
  ASSERT_TRUE(amended.ok()) << amended.error().Message();
  vault_.Stop();

  {
    auto store = OpenStoreOrDie(vault_.db_path());
    ASSERT_NE(store, nullptr);
    storage::WriteBatch batch;
    batch.Delete(storage::Cf::kRecords, RecordKey('m', id, 2));
    batch.Delete(storage::Cf::kRecords, RecordKey('c', id, 2));
    ASSERT_TRUE(store->Write(batch, /*sync=*/true).ok());
  }

  ASSERT_TRUE(vault_.Start());
  client::Client after = vault_.AppClient();
  auto latest = after.ReadContent(Physician(), id);
  ASSERT_FALSE(latest.ok()) << "served as latest: " << latest->bytes;
  EXPECT_EQ(latest.error().kind, client::ErrorKind::kIntegrity);
  auto list = after.SearchPatient(Physician(), kPatient);
  ASSERT_FALSE(list.ok()) << "the list hid the missing version";
  EXPECT_EQ(list.error().kind, client::ErrorKind::kIntegrity);
  // The original version is still there and still readable by number.
  auto original = after.ReadContent(Physician(), id, 1);
  ASSERT_TRUE(original.ok()) << original.error().Message();
  EXPECT_EQ(original->bytes, "Allergy: none (synthetic).");
}

}  // namespace
}  // namespace phivault::e2e
