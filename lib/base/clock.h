// A cheap clock for latency histograms on hot paths: the TSC, converted to nanoseconds with a
// factor calibrated once against CLOCK_MONOTONIC. Reading it costs a few nanoseconds, where
// clock_gettime costs about twenty.
#pragma once

#include <x86intrin.h>

#include <cstdint>

namespace comet::internal {

inline uint64_t Ticks() { return __rdtsc(); }

// Nanoseconds per tick as a 32.32 fixed-point factor; calibrated on first use (a few ms, once
// per process).
uint64_t NsPerTickQ32();

inline uint64_t TicksToNs(uint64_t ticks) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(ticks) * NsPerTickQ32()) >> 32);
}

}  // namespace comet::internal
