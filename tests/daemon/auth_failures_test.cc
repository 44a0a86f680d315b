// The per-uid budget of failed authentications: what gets its own audit entry, what is
// summarised, when summaries are written, and that no attempt is ever left out. A fake clock
// drives the windows; the thread is off, so FlushDue is called where the thread would.
#include "daemon/auth_failures.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon/mock_service.h"

namespace phivault::daemon {
namespace {

using ::testing::_;
using ::testing::AllOf;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::Invoke;
using ::testing::NiceMock;
using ::testing::Return;
using namespace std::chrono_literals;

// Records every AuditRejected call: (uid, action, reason, count).
struct Written {
  uint32_t uid;
  std::string action;
  std::string reason;
  uint64_t count;
  std::string claimed_user;
};

class AuthFailureLimiterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ON_CALL(service_, AuditRejected(_, _, _, _))
        .WillByDefault(Invoke([this](const RequestContext& ctx, const std::string& action,
                                     const std::string& reason, uint64_t count) {
          std::lock_guard<std::mutex> lock(mu_);
          if (!ledger_up_)
            return Unavailable("the audit log could not be written; nothing was done");
          written_.push_back({ctx.peer_uid, action, reason, count, ctx.user});
          return Status::Ok();
        }));
  }

  std::unique_ptr<AuthFailureLimiter> Make(uint32_t burst = 3) {
    AuthFailureOptions o;
    o.burst = burst;
    o.refill = 10s;
    o.summary_window = 60s;
    o.now = [this] { return now_; };
    o.flush_thread = false;
    return std::make_unique<AuthFailureLimiter>(o, &service_);
  }

  static RequestContext Stranger(uint32_t uid, std::string user = "claimed.user") {
    RequestContext ctx;
    ctx.peer_uid = uid;
    ctx.peer_pid = 4242;
    ctx.user = std::move(user);
    ctx.request_id = "req-" + std::to_string(uid);
    return ctx;
  }

  uint64_t CountFor(uint32_t uid) {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t n = 0;
    for (const auto& w : written_) n += w.uid == uid ? w.count : 0;
    return n;
  }

  NiceMock<MockVaultService> service_;
  std::mutex mu_;  // the limiter's thread writes too
  std::vector<Written> written_;
  bool ledger_up_ = true;
  std::chrono::steady_clock::time_point now_{std::chrono::hours(1000)};
};

TEST_F(AuthFailureLimiterTest, TheBudgetIsAuditedOneByOneThenSummarised) {
  auto limiter = Make(3);
  const std::string reason = "unauthenticated: the bearer token is not valid for this peer";
  for (int i = 0; i < 1000; ++i) {
    const auto outcome = limiter->RecordFailure(Stranger(1000), "record.read", reason);
    EXPECT_EQ(outcome.throttled, i >= 3) << i;
    EXPECT_TRUE(outcome.audit.ok());
  }
  ASSERT_EQ(written_.size(), 3u);
  for (const auto& w : written_) EXPECT_EQ(w.count, 1u);

  EXPECT_EQ(limiter->FlushDue(), 0u);
  EXPECT_EQ(written_.size(), 3u) << "a summary was written before its window ended";
  now_ += 60s;
  EXPECT_EQ(limiter->FlushDue(), 0u);
  ASSERT_EQ(written_.size(), 4u);
  EXPECT_EQ(written_[3].count, 997u);
  EXPECT_EQ(written_[3].action, "record.read");
  EXPECT_EQ(written_[3].claimed_user, "claimed.user");
  EXPECT_THAT(written_[3].reason, HasSubstr(reason));
  EXPECT_THAT(written_[3].reason, HasSubstr("summary of 997 failed authentications"));
  EXPECT_THAT(written_[3].reason, HasSubstr("peer uid 1000"));
  EXPECT_EQ(CountFor(1000), 1000u);
}

TEST_F(AuthFailureLimiterTest, OtherUidsHaveTheirOwnBudget) {
  auto limiter = Make(2);
  for (int i = 0; i < 10; ++i) limiter->RecordFailure(Stranger(1000), "record.read", "r");
  EXPECT_FALSE(limiter->RecordFailure(Stranger(2000), "record.read", "r").throttled);
  EXPECT_FALSE(limiter->RecordFailure(Stranger(2000), "record.read", "r").throttled);
  EXPECT_TRUE(limiter->RecordFailure(Stranger(2000), "record.read", "r").throttled);
  limiter.reset();
  EXPECT_EQ(CountFor(1000), 10u);
  EXPECT_EQ(CountFor(2000), 3u);
}

TEST_F(AuthFailureLimiterTest, TheBudgetRefillsOverTime) {
  auto limiter = Make(2);
  limiter->RecordFailure(Stranger(1000), "record.read", "r");
  limiter->RecordFailure(Stranger(1000), "record.read", "r");
  EXPECT_TRUE(limiter->RecordFailure(Stranger(1000), "record.read", "r").throttled);
  now_ += 10s;
  EXPECT_FALSE(limiter->RecordFailure(Stranger(1000), "record.read", "r").throttled);
  EXPECT_TRUE(limiter->RecordFailure(Stranger(1000), "record.read", "r").throttled);
  now_ += 1h;  // never more than the burst, however long the pause
  EXPECT_FALSE(limiter->RecordFailure(Stranger(1000), "record.read", "r").throttled);
  EXPECT_FALSE(limiter->RecordFailure(Stranger(1000), "record.read", "r").throttled);
  EXPECT_TRUE(limiter->RecordFailure(Stranger(1000), "record.read", "r").throttled);
}

TEST_F(AuthFailureLimiterTest, SummariesAreKeptApartByActionAndReason) {
  auto limiter = Make(1);
  limiter->RecordFailure(Stranger(1000), "record.read", "bad token");
  for (int i = 0; i < 4; ++i) limiter->RecordFailure(Stranger(1000), "record.read", "bad token");
  for (int i = 0; i < 5; ++i) limiter->RecordFailure(Stranger(1000), "record.create", "bad token");
  for (int i = 0; i < 6; ++i) {
    limiter->RecordFailure(Stranger(1000), "record.read", "malformed header");
  }
  now_ += 60s;
  limiter->FlushDue();
  ASSERT_EQ(written_.size(), 4u);
  EXPECT_EQ(CountFor(1000), 16u);
}

TEST_F(AuthFailureLimiterTest, UnauditedRoutesSpendTheBudgetButWriteNothing) {
  auto limiter = Make(2);
  EXPECT_FALSE(limiter->RecordFailure(Stranger(1000), "", "r").throttled);
  EXPECT_FALSE(limiter->RecordFailure(Stranger(1000), "", "r").throttled);
  EXPECT_TRUE(limiter->RecordFailure(Stranger(1000), "", "r").throttled);
  EXPECT_TRUE(limiter->RecordFailure(Stranger(1000), "record.read", "r").throttled);
  limiter.reset();
  ASSERT_EQ(written_.size(), 1u);
  EXPECT_EQ(written_[0].count, 1u);
}

TEST_F(AuthFailureLimiterTest, DestructionWritesEveryPendingSummary) {
  auto limiter = Make(1);
  for (int i = 0; i < 50; ++i) limiter->RecordFailure(Stranger(1000), "record.read", "r");
  for (int i = 0; i < 7; ++i) limiter->RecordFailure(Stranger(1001), "record.list", "r");
  ASSERT_EQ(written_.size(), 2u);
  limiter.reset();
  EXPECT_EQ(written_.size(), 4u);
  EXPECT_EQ(CountFor(1000), 50u);
  EXPECT_EQ(CountFor(1001), 7u);
}

TEST_F(AuthFailureLimiterTest, ARefusedSummaryIsRetriedWithTheAttemptsSinceMerged) {
  auto limiter = Make(1);
  for (int i = 0; i < 10; ++i) limiter->RecordFailure(Stranger(1000), "record.read", "r");
  now_ += 60s;
  ledger_up_ = false;
  EXPECT_EQ(limiter->FlushDue(), 9u);
  ledger_up_ = true;
  // The budget has refilled (one attempt): the first of these is audited alone.
  for (int i = 0; i < 5; ++i) limiter->RecordFailure(Stranger(1000), "record.read", "r");
  EXPECT_EQ(limiter->FlushDue(), 0u);
  ASSERT_EQ(written_.size(), 3u);
  EXPECT_EQ(written_[2].count, 13u);
  EXPECT_EQ(CountFor(1000), 15u);
}

TEST_F(AuthFailureLimiterTest, TheThreadWritesSummariesWhenTheirWindowEnds) {
  AuthFailureOptions o;
  o.burst = 1;
  o.refill = 10s;
  o.summary_window = 50ms;
  auto limiter = std::make_unique<AuthFailureLimiter>(o, &service_);
  for (int i = 0; i < 20; ++i) limiter->RecordFailure(Stranger(1000), "record.read", "r");
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (CountFor(1000) < 20 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(CountFor(1000), 20u);
  limiter.reset();
  EXPECT_EQ(written_.size(), 2u);
}

}  // namespace
}  // namespace phivault::daemon
