#include "clock.h"

#include <chrono>
#include <thread>

#include "env.h"

namespace comet::internal {

uint64_t NsPerTickQ32() {
  static const uint64_t factor = [] {
    const int64_t t0 = env::MonotonicNs();
    const uint64_t c0 = Ticks();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const int64_t t1 = env::MonotonicNs();
    const uint64_t c1 = Ticks();
    if (c1 <= c0 || t1 <= t0) return uint64_t{1} << 32;  // no usable TSC: ticks as ns
    return static_cast<uint64_t>((static_cast<unsigned __int128>(t1 - t0) << 32) / (c1 - c0));
  }();
  return factor;
}

}  // namespace comet::internal
