// Failure counting with lockout (docs/conventions.md §3: per-account, per-address and per-token
// attempt limits): the portal's login and claim failures and the MEF's Enrolment-Token guesses and
// failed RSPF runs, all in the store (StoredFailureLimiter), so that every process on one database
// counts together, a restart forgets nothing and an operator can clear a lock.
// Thread-safety: safe to call concurrently.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/result.h"
#include "store/store.h"

namespace mte {

// How failures lock a key: the rules applied to a key's store::FailureRecord.
struct FailurePolicy {
  int max_failures = 5;      // the max_failures-th counted failure locks the key ...
  int64_t lock_seconds = 0;  // ... for this long
  // > 0: failures count within a window that starts at the first one; a failure after the
  // window starts a new one. 0: failures count until a lock has ended.
  int64_t window_seconds = 0;
  // > lock_seconds: every further lock of the same key (until it is cleared) lasts twice as long
  // as the one before, up to this. 0: every lock lasts lock_seconds.
  int64_t max_lock_seconds = 0;

  // The longest a lock lasts; a failure older than this is forgotten.
  int64_t Horizon() const { return std::max(lock_seconds, max_lock_seconds); }

  // Seconds until the record's lock ends; 0 when it is not locked.
  static int64_t RetryAfter(const store::FailureRecord& r, int64_t now) {
    return r.locked_until > now ? r.locked_until - now : 0;
  }

  // Whether the record has failed recently: it is locked, or has a failure counted since its
  // last lock ended that is younger than the longest lock.
  bool HasFailures(const store::FailureRecord& r, int64_t now) const {
    if (r.locked_until > now) return true;
    const bool counting = r.count > 0 && (r.locked_until == 0 || r.last_failure > r.locked_until);
    return counting && now - r.last_failure < Horizon();
  }

  // Counts a failure at `now`, locking the record at the max_failures-th. An active lock is not
  // extended.
  void RecordFailure(store::FailureRecord& r, int64_t now) const {
    if (window_seconds > 0) {
      if (now - r.window_start > window_seconds) r = {0, now, 0, 0, r.locks};
    } else if (r.locked_until != 0 && r.locked_until <= now) {
      r = {0, 0, 0, 0, r.locks};
    }
    r.last_failure = now;
    if (r.locked_until > now) return;
    if (++r.count >= max_failures) {
      int64_t seconds = lock_seconds;
      for (int i = 0; i < r.locks && seconds < max_lock_seconds; ++i) seconds *= 2;
      if (max_lock_seconds > lock_seconds) seconds = std::min(seconds, max_lock_seconds);
      r.locked_until = now + seconds;
      ++r.locks;
    }
  }
};

// In the store (table login_failures), so that every process using the store counts together.
// A failure record that locks nothing is dropped once it is older than the policy's horizon.
class StoredFailureLimiter {
 public:
  StoredFailureLimiter(store::Store& store, FailurePolicy policy)
      : store_(store), policy_(policy) {}

  Result<int64_t> RetryAfter(const std::string& key, int64_t now) {
    MTE_TRY_ASSIGN(auto record, store_.FindFailures(key));
    return record ? FailurePolicy::RetryAfter(*record, now) : 0;
  }

  Result<bool> HasFailures(const std::string& key, int64_t now) {
    MTE_TRY_ASSIGN(auto record, store_.FindFailures(key));
    return record.has_value() && policy_.HasFailures(*record, now);
  }

  Result<void> RecordFailure(const std::string& key, int64_t now) {
    return store_.UpdateFailures(
        key, [&](store::FailureRecord& r) { policy_.RecordFailure(r, now); }, now,
        now - policy_.Horizon());
  }

  Result<void> Clear(const std::string& key) {
    MTE_TRY(store_.ClearFailures({key}));
    return {};
  }

 private:
  store::Store& store_;
  const FailurePolicy policy_;
};

}  // namespace mte
