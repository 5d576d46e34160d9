#include "base/clock.h"

#include <ctime>
#include <string_view>

namespace mte {

std::string_view FormatRfc3339(int64_t unix_seconds, char (&buf)[32]) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return {buf, n};
}

}  // namespace mte
