// The encounter cache is bounded, and what it forgets never shortens a record's retention: a
// patient it no longer knows is read from the store again, and a new encounter for such a patient
// is treated as later, so the patient's other records are recomputed. Unit tests of
// daemon/encounter_cache.h, then the service with a cache far smaller than its patients.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "daemon/encounter_cache.h"
#include "daemon/service.h"
#include "tests/testing/in_process_vault.h"

namespace phivault::daemon {
namespace {

using std::chrono::year_month_day;

year_month_day Day(int y, unsigned m, unsigned d) {
  return year_month_day{std::chrono::year(y), std::chrono::month(m), std::chrono::day(d)};
}

void FillComplete(EncounterCache& cache, const std::string& patient, year_month_day day) {
  cache.Finish(cache.Begin(patient), day);
}

TEST(EncounterCacheTest, HoldsAtMostItsCapacityLeastRecentlyUsedFirstOut) {
  EncounterCache cache(3);
  for (const char* p : {"p1", "p2", "p3"}) FillComplete(cache, p, Day(2020, 1, 1));
  ASSERT_TRUE(cache.Lookup("p1").has_value());  // p1 is now the most recently used
  FillComplete(cache, "p4", Day(2020, 1, 1));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_FALSE(cache.Lookup("p2").has_value());
  EXPECT_TRUE(cache.Lookup("p1").has_value());
  EXPECT_TRUE(cache.Lookup("p4").has_value());
}

TEST(EncounterCacheTest, AnEncounterOfAPatientItDoesNotKnowIsLater) {
  EncounterCache cache(1);
  EXPECT_TRUE(cache.Note("p1", Day(2020, 5, 1)));
  EXPECT_FALSE(cache.Note("p1", Day(2020, 4, 1)));  // earlier than one it saw
  EXPECT_FALSE(cache.Note("p1", Day(2020, 5, 1)));
  EXPECT_TRUE(cache.Note("p2", Day(2019, 1, 1)));  // evicts p1
  // Evicted, p1's dates are unknown again: even an earlier one counts as later (recompute).
  EXPECT_TRUE(cache.Note("p1", Day(2020, 4, 1)));
  // A partial entry (made by Note) never answers for the whole patient.
  EXPECT_FALSE(cache.Lookup("p1").has_value());
}

TEST(EncounterCacheTest, AFillMergesWhatWasNotedWhileItRead) {
  EncounterCache cache(4);
  const EncounterCache::Fill fill = cache.Begin("p1");
  EXPECT_TRUE(cache.Note("p1", Day(2026, 10, 1)));  // a record stored after the read
  EXPECT_EQ(cache.Finish(fill, Day(2020, 3, 1)), Day(2026, 10, 1));
  EXPECT_EQ(cache.Lookup("p1"), std::optional<std::optional<year_month_day>>(Day(2026, 10, 1)));
}

TEST(EncounterCacheTest, AFillThatLostItsEntryCachesNothing) {
  EncounterCache cache(1);
  const EncounterCache::Fill fill = cache.Begin("p1");
  cache.Note("p1", Day(2026, 10, 1));
  cache.Note("p2", Day(2020, 1, 1));  // evicts p1, and with it the 2026 encounter
  // What the read found is returned, but not cached as the whole truth about p1.
  EXPECT_EQ(cache.Finish(fill, Day(2020, 3, 1)), Day(2020, 3, 1));
  EXPECT_FALSE(cache.Lookup("p1").has_value());
}

TEST(EncounterCacheTest, AFillForgottenMidwayCachesNothing) {
  EncounterCache cache(4);
  FillComplete(cache, "p1", Day(2020, 3, 1));
  const EncounterCache::Fill fill = cache.Begin("p1");
  cache.Forget("p1");  // an amendment moved an encounter date
  cache.Finish(fill, Day(2020, 3, 1));
  EXPECT_FALSE(cache.Lookup("p1").has_value());
}

TEST(EncounterCacheTest, AWindowRefusesFillsOfPatientsForgottenSinceItOpened) {
  EncounterCache cache(4);
  EncounterCache::Window window = cache.OpenWindow();
  // The sweep read p1's and p2's records here; then p1's record was amended.
  cache.Forget("p1");
  cache.Finish(window.Begin("p1"), Day(2020, 3, 1));
  cache.Finish(window.Begin("p2"), Day(2020, 3, 1));
  EXPECT_FALSE(cache.Lookup("p1").has_value());
  EXPECT_TRUE(cache.Lookup("p2").has_value());
}

TEST(EncounterCacheTest, AWindowsRoomKeepsItsEntriesUntilItCloses) {
  EncounterCache cache(2);
  {
    EncounterCache::Window window = cache.OpenWindow();
    window.Reserve(6);
    for (int i = 0; i < 8; ++i) {
      cache.Finish(window.Begin("p" + std::to_string(i)), Day(2020, 1, 1));
    }
    EXPECT_EQ(cache.size(), 8u);
    for (int i = 0; i < 8; ++i) EXPECT_TRUE(cache.Lookup("p" + std::to_string(i)).has_value());
  }
  EXPECT_EQ(cache.size(), 2u);
}

// The service, with room for far fewer patients than it meets.
constexpr int64_t kStartUs = 1'793'000'000LL * 1000000;  // 2026-10-26T07:33:20Z, "now"
constexpr uint32_t kCapacity = 8;

class EncounterCacheServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vault_.config.memory.encounter_cache_patients = kCapacity;
    vault_.clock = [this] { return now_us_.load(); };
    ASSERT_NO_FATAL_FAILURE(vault_.Open());
    service_ = vault_.service.get();
  }
  static RequestContext Ctx(std::string user, std::string role, std::string purpose) {
    RequestContext ctx;
    ctx.request_id = "req";
    ctx.principal.name = "test-app";
    ctx.principal.actions = KnownActions();
    ctx.principal.roles = DefaultRoles();
    ctx.user = std::move(user);
    ctx.role = std::move(role);
    ctx.purpose = std::move(purpose);
    return ctx;
  }
  static RequestContext Physician() { return Ctx("dr.synthetic", "physician", "TREAT"); }
  static RequestContext Admin() { return Ctx("admin.synthetic", "vault_admin", "HOPERAT"); }

  storage::RecordMetadata Create(const std::string& patient, const std::string& encounter) {
    auto m = service_->CreateRecord(Physician(), {patient, "clinical_note", "text/plain", encounter,
                                                  "Dr. Synthetic", "synthetic note"});
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : storage::RecordMetadata{};
  }
  std::string EpochOf(const std::string& id) {
    auto r = service_->ReadRecord(Physician(), id, std::nullopt, false);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->meta.epoch_id : "";
  }
  // Pushes every earlier patient out of the cache.
  void MeetOtherPatients(const std::string& prefix, int n) {
    for (int i = 0; i < n; ++i) Create(prefix + std::to_string(i), "2024-06-01");
  }
  uint64_t CachedPatients() {
    auto st = service_->GetStatus(Admin());
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    EXPECT_EQ(st->encounter_cache_capacity, kCapacity);
    return st.ok() ? st->encounter_cache_patients : 0;
  }

  testing::InProcessVault vault_;
  VaultService* service_ = nullptr;
  std::atomic<int64_t> now_us_{kStartUs};
};

TEST_F(EncounterCacheServiceTest, ANewEncounterLengthensRecordsOfAPatientTheCacheForgot) {
  const auto first = Create("patient-enc-1", "2020-03-01");
  EXPECT_EQ(first.epoch_id, "d20270301");
  MeetOtherPatients("patient-enc-other-", 3 * kCapacity);
  EXPECT_LE(CachedPatients(), kCapacity);
  Create("patient-enc-1", "2026-10-01");
  // 5 years after the new last encounter, as with a cache that never forgets.
  EXPECT_EQ(EpochOf(first.record_id), "d20311001");

  // Forgotten again, an earlier encounter shortens nothing.
  MeetOtherPatients("patient-enc-more-", 3 * kCapacity);
  Create("patient-enc-1", "2018-01-01");
  EXPECT_EQ(EpochOf(first.record_id), "d20311001");
}

TEST_F(EncounterCacheServiceTest, ASweepOverMorePatientsThanTheCacheDestroysExactlyWhatExpired) {
  constexpr int kExpired = 5 * kCapacity;
  std::vector<std::string> doomed;
  for (int i = 0; i < kExpired; ++i) {
    doomed.push_back(Create("patient-enc-old-" + std::to_string(i), "2012-02-02").record_id);
  }
  // A patient whose old record is kept by a later encounter, met long before the sweep.
  const auto kept_old = Create("patient-enc-kept", "2012-02-02");
  const auto kept_new = Create("patient-enc-kept", "2026-02-02");
  MeetOtherPatients("patient-enc-other-", 3 * kCapacity);
  now_us_ += 4LL * 365 * 86400 * 1000000;  // 2030: the 2012 records (2019) expired

  const RequestContext admin = Admin();
  SweepRequest dry;
  dry.dry_run = true;
  auto listed = service_->Sweep(&admin, dry, nullptr);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(listed->destroyed_records, static_cast<uint64_t>(kExpired));
  SweepRequest real;
  real.dry_run = false;
  auto swept = service_->Sweep(&admin, real, nullptr);
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_EQ(swept->destroyed_records, static_cast<uint64_t>(kExpired));
  for (const auto& id : doomed) {
    EXPECT_FALSE(service_->ReadRecord(Physician(), id, std::nullopt, true).ok());
  }
  EXPECT_TRUE(service_->ReadRecord(Physician(), kept_old.record_id, std::nullopt, true).ok());
  EXPECT_TRUE(service_->ReadRecord(Physician(), kept_new.record_id, std::nullopt, true).ok());
  // The sweep's extra room is given back.
  EXPECT_LE(CachedPatients(), kCapacity);
}

}  // namespace
}  // namespace phivault::daemon
