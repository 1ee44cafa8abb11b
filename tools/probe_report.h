// How `comet probe` prints what the pinned maps hold: log2 histograms in the
// `low -> high : count |****|` form, each under a summary line with percentiles.
#pragma once

#include <string>

#include "probe.h"

namespace comet::cli {

// The value at quantile q (0..1) of a log2 histogram, interpolated linearly inside its slot.
double Percentile(const comet_hist& h, double q);
// A summary line (calls, entries, bytes, errors, mean, p50, p99, p99.9) and the histogram's
// non-empty range of slots. Empty when nothing was counted.
std::string FormatHistogram(const std::string& title, const comet_hist& h);
// Every non-empty histogram of a snapshot, the per-shard counts and the page-fault counters.
std::string FormatSnapshot(const bpf::Snapshot& s);

}  // namespace comet::cli
