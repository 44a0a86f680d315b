#include "daemon/auth_failures.h"

#include <algorithm>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "policies/time_format.h"

namespace phivault::daemon {
namespace {

using SteadyTime = std::chrono::steady_clock::time_point;

int64_t UnixMicros(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

}  // namespace

AuthFailureLimiter::AuthFailureLimiter(AuthFailureOptions options, VaultService* service)
    : options_(std::move(options)), service_(service) {
  if (options_.flush_thread) thread_ = std::thread([this] { Run(); });
}

AuthFailureLimiter::~AuthFailureLimiter() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  wake_.SignalAll();
  if (thread_.joinable()) thread_.join();
  if (const uint64_t lost = FlushDue(/*all=*/true); lost > 0) {
    spdlog::error("{} failed authentication attempts could not be audited at shutdown", lost);
  }
}

bool AuthFailureLimiter::SpendAttempt(uint32_t uid, SteadyTime now) {
  const double burst = options_.burst;
  auto [it, inserted] = buckets_.try_emplace(uid, Bucket{burst, now});
  Bucket& b = it->second;
  if (!inserted && now > b.updated) {
    const double regained = std::chrono::duration<double>(now - b.updated) /
                            std::chrono::duration<double>(options_.refill);
    b.attempts = std::min(burst, b.attempts + regained);
    b.updated = now;
  }
  if (b.attempts < 1) return false;
  b.attempts -= 1;
  return true;
}

AuthFailureLimiter::Outcome AuthFailureLimiter::RecordFailure(const RequestContext& ctx,
                                                              const std::string& action,
                                                              const std::string& reason) {
  Outcome outcome;
  {
    MutexLock lock(mu_);
    const SteadyTime now = options_.now();
    outcome.throttled = !SpendAttempt(ctx.peer_uid, now);
    if (outcome.throttled && !action.empty()) {
      auto [it, inserted] = summaries_.try_emplace(SummaryKey{ctx.peer_uid, action, reason});
      Summary& s = it->second;
      const auto wall = std::chrono::system_clock::now();
      if (inserted) {
        s.first = ctx;
        s.opened = now;
        s.first_at = wall;
      }
      s.last_at = wall;
      ++s.count;
      if (inserted) wake_.SignalAll();
    }
  }
  if (!outcome.throttled && !action.empty()) {
    outcome.audit = service_->AuditRejected(ctx, action, reason, 1);
  }
  return outcome;
}

Status AuthFailureLimiter::WriteSummary(const SummaryKey& key, const Summary& s) {
  const auto& [uid, action, reason] = key;
  const std::string text = reason + " (summary of " + std::to_string(s.count) +
                           " failed authentications from peer uid " + std::to_string(uid) +
                           " between " + policies::FormatUtcTimestamp(UnixMicros(s.first_at)) +
                           " and " + policies::FormatUtcTimestamp(UnixMicros(s.last_at)) +
                           "; the claims, pid and request id are the first attempt's)";
  return service_->AuditRejected(s.first, action, text, s.count);
}

uint64_t AuthFailureLimiter::FlushDue(bool all) {
  std::vector<std::pair<SummaryKey, Summary>> due;
  {
    MutexLock lock(mu_);
    const SteadyTime now = options_.now();
    for (auto it = summaries_.begin(); it != summaries_.end();) {
      if (all || now - it->second.opened >= options_.summary_window) {
        due.emplace_back(it->first, std::move(it->second));
        it = summaries_.erase(it);
      } else {
        ++it;
      }
    }
    // A bucket that has refilled completely says nothing a fresh one would not.
    const auto full_after = options_.refill * options_.burst;
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      it = now - it->second.updated >= full_after ? buckets_.erase(it) : std::next(it);
    }
  }
  uint64_t unwritten = 0;
  for (auto& [key, summary] : due) {
    const Status s = WriteSummary(key, summary);
    if (s.ok()) continue;
    spdlog::error("a summary of {} failed authentications could not be audited: {}; retrying",
                  summary.count, StatusCodeName(s.code()));
    unwritten += summary.count;
    // Put back (merged with any attempts counted meanwhile) to be retried next time.
    MutexLock lock(mu_);
    auto [it, inserted] = summaries_.try_emplace(key, summary);
    if (!inserted) {
      it->second.count += summary.count;
      it->second.first = std::move(summary.first);
      it->second.opened = summary.opened;
      it->second.first_at = summary.first_at;
    }
  }
  return unwritten;
}

void AuthFailureLimiter::Run() {
  MutexLock lock(mu_);
  while (!stopping_) {
    if (summaries_.empty()) {
      wake_.Wait(mu_);
      continue;
    }
    SteadyTime earliest = SteadyTime::max();
    for (const auto& [key, s] : summaries_) earliest = std::min(earliest, s.opened);
    const auto wait = earliest + options_.summary_window - options_.now();
    if (wait > std::chrono::steady_clock::duration::zero()) {
      wake_.WaitFor(mu_, wait);
      continue;
    }
    lock.Unlock();
    FlushDue();
    lock.Lock();
    // After a refused write the summary stays due; do not spin on a failing ledger.
    wake_.WaitFor(mu_, std::min<std::chrono::steady_clock::duration>(options_.summary_window,
                                                                     std::chrono::seconds(1)));
  }
}

}  // namespace phivault::daemon
