// Crash points for crash-safety tests: MTE_FAILPOINT=<name> in the environment makes
// MTE_FAILPOINT_HIT("<name>") terminate the process at once with _exit(86), as a power cut would
// (no destructors, no flushes beyond what the OS already has). Unset: a relaxed load and compare.
#pragma once

#include <string_view>

namespace mte {

void FailpointHit(std::string_view name);

}  // namespace mte

#define MTE_FAILPOINT_HIT(name) ::mte::FailpointHit(name)
