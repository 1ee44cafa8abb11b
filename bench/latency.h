// Latency measurement for the benchmarks: a cycle-accurate clock and a log-linear histogram.
//
// Clock: the invariant TSC (rdtsc/rdtscp), calibrated against CLOCK_MONOTONIC_RAW, when the
// CPU advertises constant_tsc and nonstop_tsc; clock_gettime(CLOCK_MONOTONIC) otherwise. The
// cost of one Start()/Stop() pair is measured at Init() and reported by the benchmark main; it
// is part of every latency sample and is never subtracted.
//
// LatencyHistogram: like HdrHistogram with 6 significant bits. Values below 1024 ns get a
// bucket per nanosecond (exact); above, each power-of-two range [2^e, 2^(e+1)) is split into 64
// equal buckets, so a reported percentile is at most 1/64 (1.6%) above the true value. It
// covers up to 2^40 ns (18 minutes); larger values land in the last bucket (max stays exact).
// Percentiles report the highest value of the bucket that holds the rank (never optimistic),
// capped at the exact maximum.
#pragma once

#include <time.h>
#include <x86intrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

namespace comet_bench {

class Clock {
 public:
  // Chooses the time source, calibrates it (about 50 ms) and measures its own overhead.
  static void Init();

  // Start() and Stop() bracket the measured code: the fences keep the measured instructions
  // between the two reads. Their difference, in ticks, goes through ToNs().
  static inline uint64_t Start() {
    if (use_tsc_) {
      _mm_lfence();
      uint64_t t = __rdtsc();
      _mm_lfence();
      return t;
    }
    return MonotonicNs();
  }
  static inline uint64_t Stop() {
    if (use_tsc_) {
      unsigned aux;
      uint64_t t = __rdtscp(&aux);
      _mm_lfence();
      return t;
    }
    return MonotonicNs();
  }
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

class LatencyHistogram {
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

  void Merge(const LatencyHistogram& o) {
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
inline uint64_t MonotonicRawNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}
}  // namespace detail

inline void Clock::Init() {
  use_tsc_ = detail::CpuHasFlag("constant_tsc") && detail::CpuHasFlag("nonstop_tsc") &&
             detail::CpuHasFlag("rdtscp");
  if (use_tsc_) {
    // TSC ticks over ~50 ms of CLOCK_MONOTONIC_RAW (error of the end reads: ~1e-6).
    uint64_t n0 = detail::MonotonicRawNs();
    uint64_t t0 = __rdtsc();
    uint64_t n1;
    do {
      n1 = detail::MonotonicRawNs();
    } while (n1 - n0 < 50'000'000);
    uint64_t t1 = __rdtsc();
    double best = double(t1 - t0) / double(n1 - n0);
    tsc_ghz_ = best;
    mult_ = static_cast<uint64_t>(std::llround((1.0 / best) * 4294967296.0));
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
                  "rdtsc/rdtscp (invariant TSC %.3f GHz, calibrated on CLOCK_MONOTONIC_RAW, "
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
