// A latency histogram in the HdrHistogram style, for measuring programs (the tools' demo, the
// benchmarks): values below 1024 get a bucket each (exact); above, each power-of-two range
// [2^e, 2^(e+1)) is split into 64 equal buckets, so a reported percentile is at most 1/64 (1.6%)
// above the true value. It covers up to 2^40 (in ns, 18 minutes); larger values land in the last
// bucket (max stays exact). Percentiles report the highest value of the bucket that holds the
// rank (never optimistic), capped at the exact maximum. Fixed memory (23 KiB), O(1) record.
// Not thread-safe: one per thread, merged afterwards. (The library's own histograms are the
// control region's: comet/format.h.)
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace comet {

class Histogram {
 public:
  static constexpr int kLinearBits = 10;  // exact below 1024 ns
  static constexpr int kSubBits = 6;      // 64 buckets per power of two above
  static constexpr int kMaxExp = 40;      // top: 2^40 ns
  static constexpr uint64_t kLinear = 1ull << kLinearBits;
  static constexpr size_t kBuckets = kLinear + (size_t(kMaxExp - kLinearBits) << kSubBits);

  inline void Record(uint64_t ns) {
    counts_[Index(ns)]++;
    count_++;
    sum_ += ns;
    if (ns > max_) max_ = ns;
    if (ns < min_) min_ = ns;
  }

  void Reset() {
    counts_.fill(0);
    count_ = sum_ = max_ = 0;
    min_ = UINT64_MAX;
  }

  void Merge(const Histogram& o) {
    for (size_t i = 0; i < kBuckets; i++) counts_[i] += o.counts_[i];
    count_ += o.count_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
    min_ = std::min(min_, o.min_);
  }

  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  double mean() const { return count_ ? double(sum_) / double(count_) : 0; }

  // Samples certainly above `ns` (those in buckets entirely above it).
  uint64_t CountAbove(uint64_t ns) const {
    uint64_t n = 0;
    for (size_t i = Index(ns) + 1; i < kBuckets; i++) n += counts_[i];
    return n;
  }

  // p in [0, 100]. The highest value equivalent to the sample of rank ceil(p% * count).
  double Percentile(double p) const {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * double(count_)));
    rank = std::clamp<uint64_t>(rank, 1, count_);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; i++) {
      seen += counts_[i];
      if (seen >= rank) return double(std::min(BucketHigh(i), max_));
    }
    return double(max_);
  }

  static inline size_t Index(uint64_t ns) {
    if (ns < kLinear) return static_cast<size_t>(ns);
    int e = 63 - __builtin_clzll(ns);  // e >= kLinearBits
    if (e >= kMaxExp) return kBuckets - 1;
    size_t sub = static_cast<size_t>((ns >> (e - kSubBits)) & ((1u << kSubBits) - 1));
    return kLinear + (size_t(e - kLinearBits) << kSubBits) + sub;
  }
  // Lowest and highest value that land in bucket i.
  static uint64_t BucketLow(size_t i) {
    if (i < kLinear) return i;
    size_t j = i - kLinear;
    int e = kLinearBits + int(j >> kSubBits);
    uint64_t sub = j & ((1u << kSubBits) - 1);
    return (1ull << e) + (sub << (e - kSubBits));
  }
  static uint64_t BucketHigh(size_t i) {
    if (i < kLinear) return i;
    if (i == kBuckets - 1) return UINT64_MAX;
    return BucketLow(i + 1) - 1;
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0, sum_ = 0, max_ = 0, min_ = UINT64_MAX;
};

}  // namespace comet
