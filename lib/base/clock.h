// A cheap clock for latency histograms on hot paths: the TSC, converted to nanoseconds with a
// factor calibrated once against CLOCK_MONOTONIC. Reading it costs a few nanoseconds, where
// clock_gettime costs about twenty.
#pragma once

#include <x86intrin.h>

#include <cstdint>

namespace comet::internal {

inline uint64_t Ticks() { return __rdtsc(); }

// Ticks() fenced, to bracket a measured piece of code: the code's instructions stay between
// TicksBefore() and TicksAfter() (rdtscp waits for what comes before it).
inline uint64_t TicksBefore() {
  _mm_lfence();
  const uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
}
inline uint64_t TicksAfter() {
  unsigned aux;
  const uint64_t t = __rdtscp(&aux);
  _mm_lfence();
  return t;
}

// Nanoseconds per tick as a 32.32 fixed-point factor; calibrated on first use (a few ms, once
// per process).
uint64_t NsPerTickQ32();

inline uint64_t TicksToNs(uint64_t ticks) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(ticks) * NsPerTickQ32()) >> 32);
}

}  // namespace comet::internal
