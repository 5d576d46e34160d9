// Process-wide logging setup. Code logs through spdlog directly (spdlog::info(...)); this header
// only configures the default logger: stderr, text or one JSON object per line.
//
// Rule (docs/conventions.md §3): nothing secret is ever passed to a log call. Secret types have no
// formatter; log identifiers (KpmID, KeID, enrolee id), never key material or codes.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace mte::log {

enum class Format { kText, kJson };

// level: trace, debug, info, warn, error, off. Fails (kLocalUsage/kConfig) on an unknown level.
Result<void> Init(std::string_view level, Format format);

// Peer-supplied text made safe for one log line: control characters, quotes and backslashes are
// escaped (\n, \x1b, ...) and the result is cut to `max` input bytes with "..." appended.
std::string Printable(std::string_view text, size_t max = 128);

}  // namespace mte::log
