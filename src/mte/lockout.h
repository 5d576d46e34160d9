// Failure counting with lockout (docs/conventions.md §3: per-account, per-address and per-token attempt
// limits): the portal's login and claim failures, the MEF's Enrolment-Token guesses and failed
// RSPF runs. In memory, per process; bounded.
// Thread-safety: safe to call concurrently.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace mte {

template <class Key>
class FailureLimiter {
 public:
  struct Policy {
    int max_failures = 5;      // the max_failures-th counted failure locks the key ...
    int64_t lock_seconds = 0;  // ... for this long
    // > 0: failures count within a window that starts at the first one; a failure after the
    // window starts a new one. 0: failures count until a lock has ended.
    int64_t window_seconds = 0;
    // > lock_seconds: every further lock of the same key (until Clear) lasts twice as long as the
    // one before, up to this. 0: every lock lasts lock_seconds.
    int64_t max_lock_seconds = 0;
  };

  // At most this many keys are tracked. When full, keys that lock nothing are dropped; if it is
  // still full, a new key's failure is not recorded. An active lock is never dropped.
  static constexpr size_t kMaxKeys = 100000;

  explicit FailureLimiter(Policy policy) : policy_(policy) {}

  bool Locked(const Key& key, int64_t now) const { return RetryAfter(key, now) > 0; }

  // Seconds until the key's lock ends; 0 when it is not locked.
  int64_t RetryAfter(const Key& key, int64_t now) const {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    return it != entries_.end() && it->second.locked_until > now ? it->second.locked_until - now
                                                                  : 0;
  }

  // Whether the key has failed recently: it is locked, or has a failure counted since its last
  // lock ended that is younger than the longest lock.
  bool HasFailures(const Key& key, int64_t now) const {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    const Entry& e = it->second;
    if (e.locked_until > now) return true;
    const bool counting = e.count > 0 && (e.locked_until == 0 || e.last_failure > e.locked_until);
    return counting && now - e.last_failure < std::max(policy_.lock_seconds,
                                                       policy_.max_lock_seconds);
  }

  void RecordFailure(const Key& key, int64_t now) {
    std::lock_guard lock(mu_);
    if (entries_.size() >= kMaxKeys && !entries_.count(key)) {
      std::erase_if(entries_,
                    [now](const auto& entry) { return entry.second.locked_until <= now; });
      if (entries_.size() >= kMaxKeys) return;
    }
    Entry& e = entries_[key];
    if (policy_.window_seconds > 0) {
      if (now - e.window_start > policy_.window_seconds) e = Entry{0, now, 0, 0, e.locks};
    } else if (e.locked_until != 0 && e.locked_until <= now) {
      e = Entry{0, 0, 0, 0, e.locks};
    }
    e.last_failure = now;
    if (e.locked_until > now) return;  // already locked: the lock is not extended
    if (++e.count >= policy_.max_failures) {
      int64_t seconds = policy_.lock_seconds;
      for (int i = 0; i < e.locks && seconds < policy_.max_lock_seconds; ++i) seconds *= 2;
      if (policy_.max_lock_seconds > policy_.lock_seconds) {
        seconds = std::min(seconds, policy_.max_lock_seconds);
      }
      e.locked_until = now + seconds;
      ++e.locks;
    }
  }

  void Clear(const Key& key) {
    std::lock_guard lock(mu_);
    entries_.erase(key);
  }

 private:
  struct Entry {
    int count = 0;
    int64_t window_start = 0;
    int64_t locked_until = 0;
    int64_t last_failure = 0;
    int locks = 0;  // locks so far (for the growing duration)
  };

  const Policy policy_;
  mutable std::mutex mu_;
  std::map<Key, Entry> entries_;
};

}  // namespace mte
