// Failed authentications, budgeted per peer uid, so that a local process holding no token can
// neither flood the six-year audit log nor slip an attempt past it.
//
// Every peer uid has a token bucket of `burst` attempts that regains one attempt every `refill`.
// A failed authentication that finds an attempt left in its uid's bucket is audited on its own
// entry at once. One that finds the bucket empty is "throttled": it is counted into the pending
// summary for its (uid, action, reason), which is written as ONE audit entry
// (VaultService::AuditRejected with count = the attempts it stands for) once `summary_window` has
// passed since the first attempt it counts, and in any case when the limiter is destroyed. So
// every attempt is in exactly one entry, and a stranger costs the log at most `burst` entries
// plus one summary per window and reason. A summary the ledger refuses is kept and retried.
//
// Only failures are counted: a request that authenticates is never delayed or refused here,
// whichever uid it comes from.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <tuple>

#include "base/mutex.h"
#include "base/status.h"
#include "daemon/service.h"

namespace phivault::daemon {

struct AuthFailureOptions {
  uint32_t burst = 5;
  std::chrono::milliseconds refill{10000};
  std::chrono::milliseconds summary_window{60000};
  // Tests pass a fake clock and write due summaries themselves (FlushDue) instead of the thread.
  std::function<std::chrono::steady_clock::time_point()> now = std::chrono::steady_clock::now;
  bool flush_thread = true;
};

class AuthFailureLimiter {
 public:
  // `service` receives every audit entry and must outlive the limiter.
  AuthFailureLimiter(AuthFailureOptions options, VaultService* service);
  // Stops the thread, then writes every pending summary (once; failures are logged).
  ~AuthFailureLimiter();
  AuthFailureLimiter(const AuthFailureLimiter&) = delete;
  AuthFailureLimiter& operator=(const AuthFailureLimiter&) = delete;

  struct Outcome {
    bool throttled = false;  // the uid's budget was spent: the attempt went into a summary
    Status audit;            // writing its own entry; OK when summarised or not audited
  };
  // One failed authentication from ctx.peer_uid. `action` is the audited action of the route, or
  // empty for a route whose refusals are not audited (the attempt still spends the uid's budget,
  // so a flood there cannot be used to earn audited attempts). `reason` is the entry's reason.
  // `ctx` carries the claims already fit for an entry (valid UTF-8).
  Outcome RecordFailure(const RequestContext& ctx, const std::string& action,
                        const std::string& reason);

  // Writes the summaries whose window has ended (every pending one if `all`). Returns the number
  // of attempts still unwritten because the audit log refused them.
  uint64_t FlushDue(bool all = false) EXCLUDES(mu_);

 private:
  struct Bucket {
    double attempts = 0;
    std::chrono::steady_clock::time_point updated;
  };
  struct Summary {
    RequestContext first;  // the first attempt's claims, pid and request id
    uint64_t count = 0;
    std::chrono::steady_clock::time_point opened;
    std::chrono::system_clock::time_point first_at;
    std::chrono::system_clock::time_point last_at;
  };
  using SummaryKey = std::tuple<uint32_t, std::string, std::string>;  // uid, action, reason

  bool SpendAttempt(uint32_t uid, std::chrono::steady_clock::time_point now) REQUIRES(mu_);
  void Run() EXCLUDES(mu_);
  Status WriteSummary(const SummaryKey& key, const Summary& s);

  const AuthFailureOptions options_;
  VaultService* const service_;
  Mutex mu_;
  CondVar wake_;
  std::map<uint32_t, Bucket> buckets_ GUARDED_BY(mu_);
  std::map<SummaryKey, Summary> summaries_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the rest is initialised
};

}  // namespace phivault::daemon
