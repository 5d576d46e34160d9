#include "base/failpoint.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace mte {

void FailpointHit(std::string_view name) {
  static const std::string active = [] {
    const char* v = std::getenv("MTE_FAILPOINT");
    return std::string(v == nullptr ? "" : v);
  }();
  if (!active.empty() && active == name) ::_exit(86);
}

}  // namespace mte
