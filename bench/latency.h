// Latency measurement for the benchmarks: a cycle-accurate clock and the log-linear histogram
// (histogram.h).
//
// Clock: the library's TSC clock (clock.h: rdtsc/rdtscp, calibrated against CLOCK_MONOTONIC),
// when the CPU advertises constant_tsc and nonstop_tsc; clock_gettime(CLOCK_MONOTONIC) otherwise. The
// cost of one Start()/Stop() pair is measured at Init() and reported by the benchmark main; it
// is part of every latency sample and is never subtracted.
#pragma once

#include <time.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "clock.h"
#include "histogram.h"

namespace comet_bench {

class Clock {
 public:
  // Chooses the time source and measures its own overhead.
  static void Init();

  // Start() and Stop() bracket the measured code: the fences keep the measured instructions
  // between the two reads. Their difference, in ticks, goes through ToNs().
  static inline uint64_t Start() {
    return use_tsc_ ? comet::internal::TicksBefore() : MonotonicNs();
  }
  static inline uint64_t Stop() { return use_tsc_ ? comet::internal::TicksAfter() : MonotonicNs(); }
  static inline uint64_t ToNs(uint64_t ticks) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(ticks) * mult_) >> 32);
  }

  static inline uint64_t MonotonicNs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
  }

  static bool uses_tsc() { return use_tsc_; }
  static double tsc_ghz() { return tsc_ghz_; }
  // Median and minimum cost of an empty Start()/Stop() pair, in ns.
  static double overhead_p50_ns() { return overhead_p50_ns_; }
  static double overhead_min_ns() { return overhead_min_ns_; }
  // Smallest observable step of the time source, in ns.
  static double resolution_ns() { return resolution_ns_; }
  static std::string Describe();

 private:
  static inline bool use_tsc_ = false;
  static inline uint64_t mult_ = 1ull << 32;  // ns per tick, 32.32 fixed point
  static inline double tsc_ghz_ = 0;
  static inline double overhead_p50_ns_ = 0;
  static inline double overhead_min_ns_ = 0;
  static inline double resolution_ns_ = 0;
};

using LatencyHistogram = comet::Histogram;

// ---- Clock implementation (header-only) ---------------------------------------------------

namespace detail {
inline bool CpuHasFlag(const std::string& flag) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::string padded = " " + line + " ";
    return padded.find(" " + flag + " ") != std::string::npos;
  }
  return false;
}
}  // namespace detail

inline void Clock::Init() {
  use_tsc_ = detail::CpuHasFlag("constant_tsc") && detail::CpuHasFlag("nonstop_tsc") &&
             detail::CpuHasFlag("rdtscp");
  if (use_tsc_) {
    mult_ = comet::internal::NsPerTickQ32();
    tsc_ghz_ = 4294967296.0 / double(mult_);
  } else {
    mult_ = 1ull << 32;
  }
  // Overhead of the bracket itself.
  LatencyHistogram h;
  for (int i = 0; i < 200'000; i++) {
    uint64_t a = Start();
    uint64_t b = Stop();
    h.Record(ToNs(b - a));
  }
  overhead_p50_ns_ = h.Percentile(50);
  overhead_min_ns_ = double(h.min());
  // Granularity: the smallest step between two successive reads that differ (a virtualised
  // TSC may advance in steps of several ticks).
  uint64_t step = UINT64_MAX;
  uint64_t prev = Start();
  for (int i = 0; i < 200'000; i++) {
    uint64_t t = Start();
    if (t > prev) step = std::min(step, t - prev);
    prev = t;
  }
  resolution_ns_ = step == UINT64_MAX ? 0 : double(step) / (use_tsc_ ? tsc_ghz_ : 1.0);
}

inline std::string Clock::Describe() {
  char buf[256];
  if (use_tsc_) {
    std::snprintf(buf, sizeof buf,
                  "rdtsc/rdtscp (invariant TSC %.3f GHz, calibrated on CLOCK_MONOTONIC, "
                  "observed step %.1f ns); an empty Start/Stop pair costs p50 %.0f ns, min %.0f ns",
                  tsc_ghz_, resolution_ns_, overhead_p50_ns_, overhead_min_ns_);
  } else {
    std::snprintf(buf, sizeof buf,
                  "clock_gettime(CLOCK_MONOTONIC) (observed step %.1f ns); an empty Start/Stop "
                  "pair costs p50 %.0f ns, min %.0f ns",
                  resolution_ns_, overhead_p50_ns_, overhead_min_ns_);
  }
  return buf;
}

}  // namespace comet_bench
