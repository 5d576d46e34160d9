// Injected time and randomness (docs/conventions.md §1: pure cores never read the clock or RNG themselves).
// Thread-safety: implementations must be safe to call from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>

namespace mte {

using SystemTime = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual SystemTime Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  SystemTime Now() const override { return std::chrono::system_clock::now(); }
};

// Seconds since the Unix epoch, the unit every timestamp in the store uses.
inline int64_t UnixSeconds(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// RFC 3339 UTC, e.g. "2026-11-28T07:06:59Z".
std::string_view FormatRfc3339(int64_t unix_seconds, char (&buf)[32]);

class Rng {
 public:
  virtual ~Rng() = default;
  // Fills `out` with cryptographically secure random bytes. Aborts if the system RNG fails
  // (an unrecoverable state, docs/conventions.md §1).
  virtual void Fill(std::span<uint8_t> out) = 0;
};

}  // namespace mte
