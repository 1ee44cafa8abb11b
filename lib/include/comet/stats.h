// Reading a data directory's figures without touching it: counters and latency histograms from
// the control region, aggregated across every process that uses the directory.
//
// ReadStats maps DIR/comet.ctl read-only and reads DIR/streams/*/PREFIX; it never creates,
// locks for writing, or modifies anything, and needs no privileges beyond read access.
// Thread-safe (no shared state).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "comet/counters.h"
#include "comet/metric_ops.h"
#include "comet/status.h"

namespace comet {

// A log2 latency histogram: bucket i counts operations of [2^i, 2^(i+1)) ns. Appends are timed
// one call in 16 per thread, each timed call counting for 16, so their counts are estimates
// (exact per-stream entry counts are in StreamStats); other operations are timed every time.
struct LatencyHistogram {
  uint64_t count = 0;
  uint64_t sum_ns = 0;
  std::array<uint64_t, format::kHistogramBuckets> buckets{};
  // The upper bound (ns) of the bucket holding the p-th percentile (0 < p <= 100); 0 if empty.
  uint64_t PercentileNs(double p) const;
};

struct ProcessInfo {
  uint32_t slot = 0;
  uint32_t pid = 0;
  uint64_t start_time = 0;   // clock ticks since boot (/proc/<pid>/stat field 22)
  uint64_t epoch = 0;
  uint64_t owned_shards = 0;
  bool live = false;         // its OFD lock on DIR/slots/<slot>.lock is held
};

struct StreamStats {
  std::string name;          // "<prefix>:shard:<NNNN>" ("?:shard:NNNN" if the prefix is unknown)
  uint32_t prefix_id = 0;
  uint32_t shard = 0;
  int32_t owner_slot = -1;   // process slot of the current writer, -1 if none
  uint64_t committed_entry = 0, synced_entry = 0;
#define COMET_STATS_FIELD(field, ...) uint64_t field = 0;
  COMET_STREAM_COUNTERS(COMET_STATS_FIELD)  // appended_entries, ... (comet/counters.h)
  uint64_t retained_from = 0;  // retention deleted every entry below this
};

// What retention did, all processes together.
struct RetentionStats {
  // passes, segments, entries, bytes, unconsumed (comet/counters.h).
#define COMET_RETENTION_STATS_FIELD(header_field, field, ...) uint64_t field = 0;
  COMET_RETENTION_COUNTERS(COMET_RETENTION_STATS_FIELD)
#undef COMET_RETENTION_STATS_FIELD
  int64_t last_pass_ns = 0;   // wall clock of the last pass (0: none yet)
};

// A consumer group's losses: entries retention deleted before the group consumed them, and
// entries its consumers passed over unread (deleted or damaged), over every stream.
struct GroupLosses {
  std::string name;
  uint64_t retention_lost = 0, skipped = 0;
};

// One consumer group's position in one stream.
struct GroupStreamStats {
  std::string group;
  std::string stream;        // as StreamStats::name
  uint32_t prefix_id = 0;
  uint32_t shard = 0;
  uint64_t committed = 0;    // the group's offset: the next entry it delivers, all below acked
  uint64_t end = 0;          // the stream's committed_entry (its next entry number)
  uint64_t lag = 0;          // entries stored and not committed: end - max(committed, first
                             // stored entry)
  uint64_t skipped = 0;      // entries the group passed over unread (damaged or deleted)
  int64_t updated_ns = 0;    // wall clock of its last commit (0: never)
};

struct DirectoryStats {
  std::string dir;
  uint32_t layout_version = 0;     // control_version(major, minor)
  uint32_t max_processes = 0;
  uint32_t max_streams = 0;
  // rebuilds, corrupt_records, torn_tails, gaps, takeovers, uncaptured_lines (comet/counters.h).
  COMET_DIRECTORY_COUNTERS(COMET_STATS_FIELD)
  std::vector<ProcessInfo> processes;  // slots ever used
  std::vector<StreamStats> streams;    // sorted by name
  std::vector<GroupStreamStats> groups;  // every group's offset per stream, by group then stream
  RetentionStats retention;
  std::vector<GroupLosses> group_losses;  // per group, in the order groups were created
  // Indexed by format::MetricOp, summed over every process slot.
  std::array<LatencyHistogram, format::kOpCount> ops;
};

#undef COMET_STATS_FIELD

// Name of an operation for output ("append", "sync", "rotate", "read", "ack").
const char* MetricOpName(uint32_t op);

// NOT_FOUND if DIR has no control file; VERSION/CORRUPT if it is not a usable one.
Result<DirectoryStats> ReadStats(const std::string& dir);

// Renderings: a JSON object, and the Prometheus / OpenMetrics text exposition format (metric
// families comet_*, histograms with cumulative le buckets in seconds, ending in "# EOF").
std::string FormatStatsJson(const DirectoryStats& s);
std::string FormatStatsPrometheus(const DirectoryStats& s);
std::string FormatStatsText(const DirectoryStats& s);
// The groups alone (`comet groups`): a table, or one JSON object per (group, stream) and line.
std::string FormatGroupsText(const DirectoryStats& s);
std::string FormatGroupsJsonLines(const DirectoryStats& s);

}  // namespace comet
