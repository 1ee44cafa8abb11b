// The counters Comet keeps, each defined once. Every list below is an X-macro: a caller passes a
// macro X that is expanded once per counter, in order. From these lists come the control
// region's counter fields (comet/format.h, at offsets checked there), the plain fields of the
// figures a reader gets (comet/stats.h, comet/client.h), and the text, JSON and Prometheus
// renderings of `comet stats` and the exporter (lib/src/stats.cc).
//
// The order is the shared-memory layout: a counter is only ever appended at the end of its
// list, and never removed or reordered.
#pragma once

#include <cstddef>

// Directory-wide counters, one uint64 each on the control header's counter line (offset 192).
// X(field, prometheus_name, help, text) — `field` is also the JSON key; `text` labels the value
// in `comet stats`.
#define COMET_DIRECTORY_COUNTERS(X)                                                           \
  X(rebuilds, "comet_rebuilds", "Times the control region was rebuilt.", "rebuilds")          \
  X(corrupt_records, "comet_corrupt_records", "CRC failures seen, all streams.",              \
    "corrupt records")                                                                         \
  X(torn_tails, "comet_torn_tails", "Torn tails truncated by recovery.", "torn tails")        \
  X(gaps, "comet_gaps", "Missing segments reported.", "gaps")                                 \
  X(takeovers, "comet_takeovers", "Shards taken over from dead owners.", "takeovers")         \
  X(uncaptured_lines, "comet_uncaptured_lines",                                               \
    "Output lines the LD_PRELOAD shim could not store (sent to their original destination).", \
    "uncaptured lines")

// Per-stream counters, one uint64 each on a shard slot's counter line (offset 192).
// X(field, prometheus_name, unit, help, column, width) — `field` is also the JSON key; `unit` is
// the OpenMetrics unit ("" for none); `column` and `width` head and size the stream table of
// `comet stats`.
#define COMET_STREAM_COUNTERS(X)                                                               \
  X(appended_entries, "comet_stream_appended_entries", "", "Entries appended.", "APPENDED", 12) \
  X(appended_bytes, "comet_stream_appended_bytes", "bytes", "Payload bytes appended, as given.", \
    "APPENDED B", 14)                                                                          \
  X(stored_bytes, "comet_stream_stored_bytes", "bytes",                                        \
    "Bytes written to segments, framing and compression included.", "STORED B", 14)            \
  X(compressed_entries, "comet_stream_compressed_entries", "", "Entries stored zstd-compressed.", \
    "COMPRESSED", 10)                                                                          \
  X(rotations, "comet_stream_rotations", "", "Segment rotations.", "ROTATIONS", 9)             \
  X(syncs, "comet_stream_syncs", "", "fdatasync calls.", "SYNCS", 7)                          \
  X(corrupt_records, "comet_stream_corrupt_records", "", "Records that failed their CRC.",     \
    "CORRUPT", 7)                                                                              \
  X(failed_appends, "comet_stream_failed_appends", "", "Appends that failed.", "FAILED", 6)

// Retention's counters, one uint64 each on the control header's retention line (offset 256).
// X(field, stats_field, prometheus_name, help) — `stats_field` names it in RetentionStats and is
// its JSON key in the "retention" object.
#define COMET_RETENTION_COUNTERS(X)                                                        \
  X(retention_passes, passes, "comet_retention_passes", "Retention passes run.")           \
  X(retention_segments, segments, "comet_retention_segments",                              \
    "Segment files retention deleted.")                                                    \
  X(retention_entries, entries, "comet_retention_entries", "Entries retention deleted.")   \
  X(retention_bytes, bytes, "comet_retention_bytes", "Segment bytes retention deleted.")   \
  X(retention_unconsumed, unconsumed, "comet_retention_unconsumed_entries",                \
    "Entries retention deleted before every group had consumed them.")

namespace comet {

// Each counter's position in its list (DirectoryCounter::gaps == 3), for layout checks.
#define COMET_COUNTER_ENUMERATOR(field, ...) field,
enum class DirectoryCounter : size_t { COMET_DIRECTORY_COUNTERS(COMET_COUNTER_ENUMERATOR) kCount };
enum class StreamCounter : size_t { COMET_STREAM_COUNTERS(COMET_COUNTER_ENUMERATOR) kCount };
enum class RetentionCounter : size_t {
  COMET_RETENTION_COUNTERS(COMET_COUNTER_ENUMERATOR) kCount
};
#undef COMET_COUNTER_ENUMERATOR

}  // namespace comet
