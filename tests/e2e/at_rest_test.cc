// What the daemon leaves on disk: after flush and compaction no file under the data directory
// holds plaintext PHI or any record's DEK.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/aead.h"
#include "crypto/keyring.h"
#include "crypto/master_key.h"
#include "storage/store.h"
#include "tests/e2e/harness.h"
#include "tests/storage/file_search.h"

namespace phivault::e2e {
namespace {

using storage::testing::FilesContaining;

using E2eAtRestTest = VaultTest;

TEST_F(E2eAtRestTest, NoPlaintextOrDekInAnyDataFileAfterCompaction) {
  // Random, so that a 32-byte piece found in a file can only have come from these values.
  const std::string patient = "synthetic-patient-" + RandomHex(24);
  const std::string author = "dr.synthetic." + RandomHex(24);
  const std::string small_text = "Synthetic progress note " + RandomHex(200);
  const std::string large_text = "Synthetic imaging report " + RandomHex(40000);  // blob file
  const std::string amended_text = "Synthetic amended progress note " + RandomHex(200);
  const std::string reason = "Synthetic amendment reason " + RandomHex(24);

  client::Client c = vault_.AppClient();
  const auto actor = Physician();
  auto small = c.CreateRecord(actor, client::NewRecord{.patient_id = patient,
                                                       .category = "clinical_note",
                                                       .content_type = "text/plain",
                                                       .encounter_date = "2026-06-01",
                                                       .author = author,
                                                       .content = small_text});
  ASSERT_TRUE(small.ok()) << small.error().Message();
  auto large = c.CreateRecord(actor, client::NewRecord{.patient_id = patient,
                                                       .category = "imaging",
                                                       .content_type = "text/plain",
                                                       .encounter_date = "2026-06-02",
                                                       .author = author,
                                                       .content = large_text});
  ASSERT_TRUE(large.ok()) << large.error().Message();
  auto amended = c.AmendRecord(actor, small->record_id,
                               client::Amendment{.reason = reason, .content = amended_text});
  ASSERT_TRUE(amended.ok()) << amended.error().Message();
  ASSERT_TRUE(c.ReadRecord(actor, small->record_id, 1).ok());
  ASSERT_TRUE(c.SearchPatient(actor, patient).ok());
  vault_.Stop();

  // Every DEK, recovered as a reader does: the epoch key from the keyring (opened with the
  // master key) unwraps the DEK in each version header under the documented AAD (records.h).
  std::vector<std::string> deks;
  std::string sealed_large;
  {
    auto store = OpenStoreOrDie(vault_.db_path());
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Flush().ok());
    ASSERT_TRUE(store->CompactAll().ok());

    auto master_key = crypto::LoadMasterKeyFile(vault_.key_path());
    ASSERT_TRUE(master_key.ok()) << master_key.status().ToString();
    auto keyring =
        crypto::Keyring::Open({vault_.data_dir() + "/keyring", {}}, std::move(master_key).value());
    ASSERT_TRUE(keyring.ok()) << keyring.status().ToString();

    std::vector<std::pair<std::string, std::string>> headers;
    ASSERT_TRUE(store
                    ->Scan(storage::Cf::kRecords, "m", "n",
                           [&](std::string_view key, std::string_view value) {
                             headers.emplace_back(key, value);
                             return true;
                           })
                    .ok());
    ASSERT_EQ(headers.size(), 3u) << "two records, one amendment";
    for (const auto& [key, value] : headers) {
      ASSERT_EQ(key.size(), 21u);
      const std::string raw_id = key.substr(1, 16);
      const std::string version = key.substr(17, 4);
      const std::vector<std::string> fields = ParseVersionHeader(value);
      ASSERT_EQ(fields.size(), 4u) << "malformed version header";
      auto epoch = (*keyring)->GetEpoch(fields[0]);
      ASSERT_TRUE(epoch.ok()) << epoch.status().ToString();
      auto dek =
          crypto::UnwrapKey(**epoch, fields[1], "phivault/dek/v1" + raw_id + version + fields[0]);
      ASSERT_TRUE(dek.ok()) << "wrapped DEK does not open with the documented AAD";
      deks.emplace_back(dek->view(crypto::InsecureSecretKeyAccess::Get()));
    }
    auto sealed = store->Get(storage::Cf::kRecords, RecordKey('c', large->record_id, 1));
    ASSERT_TRUE(sealed.ok() && sealed->has_value());
    sealed_large = **sealed;
  }
  ASSERT_EQ(deks.size(), 3u);
  EXPECT_NE(deks[0], deks[1]);
  EXPECT_NE(deks[1], deks[2]);
  EXPECT_NE(deks[0], deks[2]);

  const std::string data_dir = vault_.data_dir();
  for (const auto& [what, value] :
       std::vector<std::pair<std::string, std::string>>{{"patient id", patient},
                                                        {"author", author},
                                                        {"content", small_text},
                                                        {"large content", large_text},
                                                        {"amended content", amended_text},
                                                        {"amendment reason", reason}}) {
    EXPECT_EQ(FilesContaining(data_dir, value), std::vector<std::string>{})
        << what << " found in plaintext";
  }
  for (size_t i = 0; i < deks.size(); ++i) {
    EXPECT_EQ(FilesContaining(data_dir, deks[i]), std::vector<std::string>{})
        << "DEK " << i << " found in a file";
  }

  // The search does look at these files: it finds the sealed content and the raw record ids.
  EXPECT_FALSE(FilesContaining(data_dir, sealed_large).empty());
  const std::string raw_id = RecordKey('c', small->record_id, 1).substr(1, 16);
  EXPECT_FALSE(FilesWithBytes(data_dir, raw_id).empty());
  EXPECT_FALSE(FilesWithBytes(data_dir, "PVK2").empty()) << "the keyring was not searched";
}

}  // namespace
}  // namespace phivault::e2e
