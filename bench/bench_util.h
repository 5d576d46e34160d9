// Small pieces shared by the benchmark programs (mte_bench_bare, mte_bench_engine,
// mte_bench_flowb).
#pragma once

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace mte::bench {

// CPU time of the calling thread, in ns.
inline int64_t ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// utime + stime of a whole process (all threads, live and exited), in clock ticks, from
// /proc/PID/stat; -1 when it cannot be read.
inline long long ProcessTicks(int pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "rb");
  if (f == nullptr) return -1;
  char buf[2048];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  std::string stat(buf, n);
  auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  // Fields after "(comm)": 3 state ... 14 utime 15 stime.
  const char* p = stat.c_str() + close + 1;
  long long utime = -1, stime = -1;
  for (int field = 3; field <= 15; ++field) {
    while (*p == ' ') ++p;
    if (*p == '\0') return -1;
    if (field == 14) utime = std::atoll(p);
    if (field == 15) stime = std::atoll(p);
    while (*p != ' ' && *p != '\0') ++p;
  }
  return utime < 0 || stime < 0 ? -1 : utime + stime;
}

// Nearest-rank percentile (p in 0..100); 0 for no values.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// --reps N (1..100), --handshakes N per repetition (1..100000), --warmup N (0..100000).
struct RepArgs {
  int reps = 7;
  int per_rep = 200;
  int warmup = 50;
};

// false (after printing the usage line for `program`) on an unknown option.
inline bool ParseRepArgs(int argc, char** argv, const char* program, RepArgs& out) {
  for (int i = 1; i < argc; i += 2) {
    std::string a = argv[i];
    if (i + 1 >= argc) a.clear();  // an option without its value
    int v = a.empty() ? 0 : std::atoi(argv[i + 1]);
    if (a == "--reps") {
      out.reps = std::clamp(v, 1, 100);
    } else if (a == "--handshakes") {
      out.per_rep = std::clamp(v, 1, 100000);
    } else if (a == "--warmup") {
      out.warmup = std::clamp(v, 0, 100000);
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--handshakes N] [--warmup N]\n", program);
      return false;
    }
  }
  return true;
}

}  // namespace mte::bench
