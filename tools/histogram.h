// A latency histogram in the HDR style: log2 buckets, each split into 16 linear sub-buckets, so
// every recorded value lands in a bucket within 6.25% of it. Fixed memory (8 KiB), O(1) record.
// Not thread-safe: one per thread, merge afterwards.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

namespace comet::cli {

class Histogram {
 public:
  void Record(uint64_t value) {
    ++buckets_[BucketOf(value)];
    ++count_;
    sum_ += value;
    max_ = std::max(max_, value);
  }

  void Merge(const Histogram& other) {
    for (size_t i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    max_ = std::max(max_, other.max_);
  }

  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / count_; }

  // The value at quantile q (0..1): the midpoint of the bucket holding it, capped at max().
  uint64_t Percentile(double q) const {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(count_ - 1)) + 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += buckets_[i];
      if (seen >= rank) return std::min(Midpoint(i), max_);
    }
    return max_;
  }

 private:
  static constexpr unsigned kSubBits = 4;  // 16 sub-buckets per power of two
  static constexpr uint64_t kSub = 1u << kSubBits;
  static constexpr size_t kBuckets = kSub + (64 - kSubBits) * kSub;

  static size_t BucketOf(uint64_t v) {
    if (v < kSub) return static_cast<size_t>(v);
    unsigned log2 = 63u - static_cast<unsigned>(std::countl_zero(v));  // >= kSubBits
    uint64_t sub = (v >> (log2 - kSubBits)) & (kSub - 1);
    return static_cast<size_t>(kSub + (log2 - kSubBits) * kSub + sub);
  }

  static uint64_t LowerBound(size_t i) {
    if (i < kSub) return i;
    unsigned log2 = static_cast<unsigned>((i - kSub) / kSub) + kSubBits;
    uint64_t sub = (i - kSub) % kSub;
    return (uint64_t{1} << log2) + (sub << (log2 - kSubBits));
  }

  static uint64_t Midpoint(size_t i) {
    if (i < kSub) return i;
    uint64_t lo = LowerBound(i);
    uint64_t width = LowerBound(i + 1 < kBuckets ? i + 1 : i) - lo;
    return lo + width / 2;
  }

  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
};

}  // namespace comet::cli
