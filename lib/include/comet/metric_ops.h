// The shape of Comet's latency histograms: which operations are timed and how many log2 buckets
// each has. Shared by the control region's layout (comet/format.h, whose per-process metrics are
// shared-memory atomics) and the figures a reader gets (comet/stats.h, plain values), so that
// user code reading stats does not see the control region's atomics.
#pragma once

#include <cstddef>
#include <cstdint>

namespace comet::format {

// Bucket i counts operations that took [2^i, 2^(i+1)) nanoseconds (bucket 0 also counts 0 ns).
inline constexpr size_t kHistogramBuckets = 64;
enum MetricOp : uint32_t { kOpAppend = 0, kOpSync = 1, kOpRotate = 2, kOpRead = 3, kOpAck = 4,
                           kOpCount = 5 };

}  // namespace comet::format
