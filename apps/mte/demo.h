// `mte demo` (what `make demo` runs): sets up an MTE in a temporary directory, starts `mte serve`
// on 127.0.0.1 with ephemeral ports, and runs both enrolment flows of the seed through the real
// binaries (`mte`, `mte-enrolee`, `mte-obf`, found next to this executable), narrating each step
// with the seed's step numbers:
//   - clause 8.y.3, enrolment without an OBF (PPSK-RSPF), device sensor-0001;
//   - clause 8.y.4, enrolment via an On-Boarding Function, device sensor-0002.
// Kpm, passwords, bearer tokens and Enrolment-Tokens are never printed (commands and child
// output are shown with them masked); claim and setup codes are label data and are shown.
// Thread-safety: call once per process, from the main thread (it installs SIGINT/SIGTERM/SIGPIPE
// handlers and starts and reaps child processes).
#pragma once

#include <chrono>

namespace mte {

struct DemoOptions {
  bool keep = false;                 // keep the temporary directory (data, logs, device state)
  std::chrono::seconds timeout{60};  // bound on the whole demo, shutdown included
};

// Returns the process exit status: 0 when both flows completed and the MTE shut down cleanly;
// otherwise 1 after one line "mte demo: ..." on stderr. Every process it started is stopped and
// reaped, and the temporary directory is removed unless options.keep, on every path.
int RunDemo(const DemoOptions& options);

}  // namespace mte
