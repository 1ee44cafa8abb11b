// The demo's shared definitions: what `comet demo` measures (cmd_demo.cc) and prints
// (demo_report.cc).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "comet/client.h"
#include "comet/config.h"
#include "histogram.h"

namespace comet::cli {

inline constexpr std::string_view kDemoPrefix = "logs:v1";
inline constexpr uint32_t kDemoShards = 8;
inline constexpr size_t kDemoBatch = 64;

// What a shard holds, independent of order (single appends overtake the batched lines generated
// before them): entry count, payload bytes and a sum of per-entry hashes.
struct Tally {
  uint64_t entries = 0;
  uint64_t bytes = 0;
  uint64_t hash = 0;

  void Add(std::string_view data) {
    ++entries;
    bytes += data.size();
    hash += std::hash<std::string_view>{}(data);
  }
  bool operator==(const Tally&) const = default;
};
using Tallies = std::array<Tally, kDemoShards>;

inline uint64_t TotalEntries(const Tallies& t) {
  uint64_t n = 0;
  for (const Tally& s : t) n += s.entries;
  return n;
}

inline uint64_t TotalBytes(const Tallies& t) {
  uint64_t n = 0;
  for (const Tally& s : t) n += s.bytes;
  return n;
}

struct AppendReport {
  Tallies expected;
  Histogram batch_latency;   // per Append call of a 64-entry batch
  Histogram single_latency;  // per Append call of one entry (by stream name)
  uint64_t in_append_ns = 0;
  uint64_t wall_ns = 0;      // line generation included
};

struct ReadReport {
  Tallies seen;
  uint64_t ns = 0;
  uint64_t corrupt = 0;
  uint64_t misnumbered = 0;  // entries whose number is not the previous one + 1
  uint64_t compressed = 0, compressed_payload = 0, compressed_stored = 0;
};

struct StorageReport {
  uint64_t segments = 0, sealed = 0, record_bytes = 0;
};

// Everything one run measured.
struct DemoResult {
  AppendReport append;
  Stats stats;             // the writer's, taken before it closed
  uint64_t close_ns = 0;   // closing the writer (final sync)
  uint64_t open_ns = 0;    // reopening it (recovery)
  ReadReport read;
  StorageReport storage;
};

// "16 MiB", "64 KiB", or plain bytes: how sizes are configured.
std::string SizeLabel(uint64_t bytes);

// Prints the report of a run; returns whether every shard read back what was appended.
bool PrintDemoReport(const DemoResult& r, const Config& cfg);

// Reopens `dir` in multi-process mode, forks `workers` appending `lines` each through the
// client they inherited, measures a blocked reader process's wake-up, and prints the figures.
Status PreforkPhase(const std::string& dir, const Config& base, int workers, uint64_t lines);

}  // namespace comet::cli
