// The measuring programs' histogram (lib/base/histogram.h): exact below 1024, above it a
// percentile is never below the true value and at most 1/64 above it.
#include "histogram.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace {

using comet::Histogram;

// The true p-th percentile: the sample of rank ceil(p% * n).
uint64_t TruePercentile(std::vector<uint64_t> v, double p) {
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * double(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

TEST(Histogram, ValuesBelow1024AreExact) {
  Histogram h;
  for (uint64_t v = 0; v < 1024; v++) h.Record(v);
  EXPECT_EQ(h.count(), 1024u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 1023u);
  EXPECT_EQ(h.Percentile(50), 511.0);
  EXPECT_EQ(h.Percentile(100), 1023.0);
}

TEST(Histogram, PercentilesAreNeverBelowTheTruthAndAtMostOneSixtyFourthAbove) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(10.0, 2.0);  // ns: mostly microseconds, long tail
  std::vector<uint64_t> samples;
  Histogram a, b;
  for (int i = 0; i < 200000; i++) {
    const uint64_t v = static_cast<uint64_t>(dist(rng));
    samples.push_back(v);
    (i % 2 ? a : b).Record(v);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), samples.size());
  EXPECT_EQ(a.max(), *std::max_element(samples.begin(), samples.end()));
  for (double p : {1.0, 50.0, 90.0, 99.0, 99.9, 99.99}) {
    const double truth = double(TruePercentile(samples, p));
    EXPECT_GE(a.Percentile(p), truth) << "p" << p;
    EXPECT_LE(a.Percentile(p), truth * (1 + 1.0 / 64)) << "p" << p;
  }
}

}  // namespace
