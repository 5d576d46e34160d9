// Names the calling thread (Linux: at most 15 characters, shown by `top -H`, `ps -L` and in
// /proc/PID/task/TID/comm), so that operators and the benchmark can tell the threads apart.
#pragma once

namespace mte {

// Best effort: a failure leaves the inherited name.
void SetThreadName(const char* name);

}  // namespace mte
