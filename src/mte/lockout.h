// Failure counting with lockout (docs/conventions.md §3: per-account, per-address and per-token attempt
// limits): the portal's login and claim failures, the MEF's Enrolment-Token guesses and failed
// RSPF runs. In memory, per process; bounded.
// Thread-safety: safe to call concurrently.
#pragma once

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
  };

  // At most this many keys are tracked. When full, keys that lock nothing are dropped; if it is
  // still full, a new key's failure is not recorded. An active lock is never dropped.
  static constexpr size_t kMaxKeys = 100000;

  explicit FailureLimiter(Policy policy) : policy_(policy) {}

  bool Locked(const Key& key, int64_t now) const {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    return it != entries_.end() && it->second.locked_until > now;
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
      if (now - e.window_start > policy_.window_seconds) e = Entry{0, now, 0};
    } else if (e.locked_until != 0 && e.locked_until <= now) {
      e = Entry{};
    }
    if (++e.count >= policy_.max_failures) e.locked_until = now + policy_.lock_seconds;
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
  };

  const Policy policy_;
  mutable std::mutex mu_;
  std::map<Key, Entry> entries_;
};

}  // namespace mte
