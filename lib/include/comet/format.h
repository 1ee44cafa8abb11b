// Comet's persistent and shared formats, all in one place.
//
// Everything Comet writes to disk or shares between processes is defined here: the data
// directory layout, the segment header, the record header, the sparse index file and the
// control region. Every multi-byte integer on disk is little-endian and is read and written
// through the helpers at the bottom of this file, never by copying a struct. The control
// region is shared memory between processes of one machine, so it is native-endian and made
// of std::atomic fields at pinned offsets.
//
// Data directory (no absolute path is stored anywhere; the directory can be moved):
//
//   DIR/comet.ctl                       control region (shared memory, see below)
//   DIR/comet.lock                      writer claim: an exclusive OFD lock for a single-mode
//                                       writer, shared for multi-mode processes (holds a pid)
//   DIR/slots/<slot:04d>.lock           process slot liveness: an OFD lock held by the live holder
//   DIR/streams/<prefix id:08X>/PREFIX  the stream prefix's name (also in every segment header)
//   DIR/streams/<prefix id:08X>/<shard:04X>/<base entry:016X>.seg   segment files
//   DIR/streams/<prefix id:08X>/<shard:04X>/<base entry:016X>.idx   sparse index (a cache)
//
// Segment file (preallocated to storage.max_segment_bytes, truncated to its data when sealed):
//
//   +--------------------+---------+---------+-----+---------+----------------------+
//   | header (256 bytes) | record0 | record1 | ... | recordN | zeros (preallocated) |
//   +--------------------+---------+---------+-----+---------+----------------------+
//
//   Segment header:
//     off size field
//       0   4  magic          "CMTS"
//       4   2  major          kFormatMajor; a reader reads kOldestReadableMajor..kFormatMajor
//                             and refuses others (only under a good header CRC: a version
//                             under a bad one is damage to this segment)
//       6   2  minor          kFormatMinor; additions only
//       8   4  header_size    kSegmentHeaderSize
//      12   4  prefix_id      the stream prefix's number in this directory
//      16   4  shard          0..0xFFFF
//      20   4  prefix_len     1..kMaxPrefixLen
//      24   8  base_entry     entry number of record0
//      32   8  created_ns     wall clock, nanoseconds since the Unix epoch
//      40   4  header_crc     masked CRC32C of bytes [0,40) then the prefix_len name bytes
//      44   4  seal_crc       masked CRC32C of bytes [48,64); 0 while the segment is active
//      48   8  sealed_count   number of records (valid when seal_crc matches)
//      56   8  sealed_end     byte offset just past the last record (valid when sealed)
//      64 192  prefix         the stream prefix's bytes, zero padded
//
//   Record (16 bytes of framing, then the payload; records are packed, no padding):
//     off size field
//       0   4  crc            masked CRC32C of the payload, then bytes [4,16) of this header,
//                             XOR the segment's header_crc (the record key; version 1: 0)
//       4   4  size_flags     bits 0..29: stored payload length; bit 30: kFlagZstd;
//                             bit 31: kFlagBatchMore (version 1: reserved, always 0)
//       8   8  timestamp_ns   wall clock at append, nanoseconds since the Unix epoch
//      16      payload        size bytes (zstd frame when kFlagZstd is set)
//
//   kFlagBatchMore is set on every record of a batch but its last, so the log, read in order,
//   ends on a record without it unless a crash cut a batch short; recovery then drops the
//   batch's records (and the segments made for it) whole. A flag on the records after the
//   first instead could not tell a complete batch from a cut one at the end of the log.
//
//   The record key ties every record to one segment: a record left in a file that is later
//   reused for another segment (another header, so another header_crc) fails its CRC there.
//   An all-zero header never passes its CRC (no segment's header_crc equals the one key that
//   would let it: the writer nudges created_ns when it would), so the preallocated zeros
//   after the last record are a clean end. The CRC covers the payload first so that it can be
//   computed before the writer takes the shard lock; the key is applied under it.
//
// Index file (a cache: rebuilt from the segment when missing, stale or corrupt):
//     off size field
//       0   4  magic          "CMTI"
//       4   2  major (kIndexMajor)  6 2 minor
//       8   4  interval       one node every `interval` entries
//      12   4  node_count
//      16   8  base_entry     must equal the segment's
//      24   8  entry_count    must equal the segment's sealed_count
//      32   8  data_end       must equal the segment's sealed_end
//      40   4  segment_crc    the segment's header_crc (ties the index to one segment)
//      44   4  crc            masked CRC32C of bytes [0,44) then the node array
//      48      nodes          node_count x u32: byte offset of entry base_entry + i*interval
//
// Control region: see ControlHeader below.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "comet/counters.h"
#include "comet/metric_ops.h"

namespace comet::format {

// Version 2 added batch boundaries (kFlagBatchMore) and the record key. Version 1 segments are
// still read (as if every record were a batch of its own, unkeyed); they are never appended to.
inline constexpr uint16_t kFormatMajor = 2;
inline constexpr uint16_t kFormatMinor = 0;
inline constexpr uint16_t kOldestReadableMajor = 1;

// ---- segment header --------------------------------------------------------------------------
inline constexpr uint32_t kSegmentMagic = 0x53544D43;  // "CMTS" little-endian
inline constexpr size_t kSegmentHeaderSize = 256;
inline constexpr size_t kMaxPrefixLen = 192;

namespace seg {
inline constexpr size_t kMagic = 0, kMajor = 4, kMinor = 6, kHeaderSize = 8, kPrefixId = 12,
                        kShard = 16, kPrefixLen = 20, kBaseEntry = 24, kCreatedNs = 32,
                        kHeaderCrc = 40, kSealCrc = 44, kSealedCount = 48, kSealedEnd = 56,
                        kPrefix = 64;
static_assert(kPrefix + kMaxPrefixLen == kSegmentHeaderSize);
static_assert(kSealedEnd + 8 == kPrefix);
static_assert(kHeaderCrc == 40 && kSealCrc == 44 && kSealedCount == 48);
}  // namespace seg

// ---- record header ---------------------------------------------------------------------------
inline constexpr size_t kRecordHeaderSize = 16;
inline constexpr uint32_t kSizeMask = (1u << 30) - 1;
inline constexpr uint32_t kFlagZstd = 1u << 30;
inline constexpr uint32_t kFlagBatchMore = 1u << 31;  // another record of the batch follows
inline constexpr uint64_t kMaxStoredSize = kSizeMask;  // 1 GiB - 1

namespace rec {
inline constexpr size_t kCrc = 0, kSizeFlags = 4, kTimestamp = 8, kPayload = 16;
static_assert(kPayload == kRecordHeaderSize);
}  // namespace rec

// ---- index file ------------------------------------------------------------------------------
inline constexpr uint32_t kIndexMagic = 0x49544D43;  // "CMTI"
inline constexpr uint16_t kIndexMajor = 1;  // unchanged by segment format version 2
inline constexpr size_t kIndexHeaderSize = 48;

namespace idx {
inline constexpr size_t kMagic = 0, kMajor = 4, kMinor = 6, kInterval = 8, kNodeCount = 12,
                        kBaseEntry = 16, kEntryCount = 24, kDataEnd = 32, kSegmentCrc = 40,
                        kCrc = 44, kNodes = 48;
static_assert(kNodes == kIndexHeaderSize);
}  // namespace idx

// ---- control region (DIR/comet.ctl) ----------------------------------------------------------
//
//   +---------------+--------------------------+----------------------------+------------------+
//   | ControlHeader | ProcessSlot[max_procs]   | ProcessMetrics[max_procs]  | ShardSlot[max_   |
//   | 4096 bytes    | 128 bytes each           | 2688 bytes each            | shards] 256 each |
//   +---------------+--------------------------+----------------------------+------------------+
//   | GroupSlot[max_groups] 320 bytes each | OffsetSlot[max_offsets] 64 bytes each |
//   +--------------------------------------+---------------------------------------+
//
// Offsets, never pointers. Every field that changes after creation is a lock-free atomic; each
// group written by a different party sits on its own 64-byte cache line. The creator fills the
// file, then publishes `version` last with a release store; an attacher waits for a non-zero
// version and rejects another major by name.
inline constexpr uint64_t kControlMagic = 0x4C5443544D4F43ull;  // "COMTCTL\0"
inline constexpr size_t kCacheLine = 64;
inline constexpr size_t kControlHeaderSize = 4096;
inline constexpr uint32_t kControlMajor = 1;
inline constexpr uint32_t kControlMinor = 1;  // 1: consumer-group tables

constexpr uint32_t control_version(uint32_t major, uint32_t minor) { return major << 16 | minor; }

static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// A counter of comet/counters.h as a shared-memory field.
#define COMET_COUNTER_FIELD(field, ...) std::atomic<uint64_t> field;

struct ControlHeader {
  // line 0: written once by the creator, covered by header_crc.
  uint64_t magic;                       // 0   kControlMagic
  std::atomic<uint32_t> version;        // 8   control_version(major, minor); 0 while creating
  uint32_t header_size;                 // 12  kControlHeaderSize
  uint32_t max_processes;               // 16
  uint32_t max_shards;                  // 20
  uint64_t file_size;                   // 24
  int64_t created_ns;                   // 32
  uint64_t process_table_offset;        // 40
  uint64_t shard_table_offset;          // 48
  uint64_t metrics_table_offset;        // 56
  // line 1: also written once by the creator (layout 1.1 and later).
  uint32_t header_crc;                  // 64  masked CRC32C of bytes [0,128) with version and
                                        //     header_crc = 0 (layout 1.0: of bytes [0,64))
  uint32_t max_groups;                  // 68  consumer-group table capacity
  uint32_t max_offsets;                 // 72  (group, stream) offset table capacity
  uint32_t reserved0;                   // 76
  uint64_t group_table_offset;          // 80
  uint64_t offset_table_offset;         // 88
  // line 2: the tables' allocation state.
  alignas(kCacheLine) std::atomic<uint32_t> shard_count;  // 128: slots in use (append-only)
  std::atomic<uint32_t> group_count;    // 132: group slots in use (append-only)
  std::atomic<uint64_t> generation;     // 136: bumped when process membership changes
  std::atomic<uint32_t> offset_count;   // 144: offset slots in use (append-only)
  uint8_t pad2[44];                     // 148
  // line 3: directory-wide counters (comet/counters.h), from offset 192.
  COMET_DIRECTORY_COUNTERS(COMET_COUNTER_FIELD)
  uint8_t pad3[16];                     // 240
  // line 4: retention (layout 1.1 files created before it hold zeros here, which is right): its
  // counters (comet/counters.h) from offset 256, then the time of the last pass.
  COMET_RETENTION_COUNTERS(COMET_COUNTER_FIELD)
  std::atomic<int64_t> retention_last_ns;                 // 296: wall clock of the last pass
};
static_assert(offsetof(ControlHeader, magic) == 0);
static_assert(offsetof(ControlHeader, version) == 8);
static_assert(offsetof(ControlHeader, header_size) == 12);
static_assert(offsetof(ControlHeader, max_processes) == 16);
static_assert(offsetof(ControlHeader, max_shards) == 20);
static_assert(offsetof(ControlHeader, file_size) == 24);
static_assert(offsetof(ControlHeader, created_ns) == 32);
static_assert(offsetof(ControlHeader, process_table_offset) == 40);
static_assert(offsetof(ControlHeader, shard_table_offset) == 48);
static_assert(offsetof(ControlHeader, metrics_table_offset) == 56);
static_assert(offsetof(ControlHeader, header_crc) == 64);
static_assert(offsetof(ControlHeader, max_groups) == 68);
static_assert(offsetof(ControlHeader, max_offsets) == 72);
static_assert(offsetof(ControlHeader, group_table_offset) == 80);
static_assert(offsetof(ControlHeader, offset_table_offset) == 88);
static_assert(offsetof(ControlHeader, shard_count) == 128);
static_assert(offsetof(ControlHeader, group_count) == 132);
static_assert(offsetof(ControlHeader, generation) == 136);
static_assert(offsetof(ControlHeader, offset_count) == 144);
static_assert(offsetof(ControlHeader, rebuilds) == 192);
static_assert(offsetof(ControlHeader, corrupt_records) == 200);
static_assert(offsetof(ControlHeader, torn_tails) == 208);
static_assert(offsetof(ControlHeader, gaps) == 216);
static_assert(offsetof(ControlHeader, takeovers) == 224);
static_assert(offsetof(ControlHeader, uncaptured_lines) == 232);
static_assert(offsetof(ControlHeader, retention_passes) == 256);
static_assert(offsetof(ControlHeader, retention_segments) == 264);
static_assert(offsetof(ControlHeader, retention_entries) == 272);
static_assert(offsetof(ControlHeader, retention_bytes) == 280);
static_assert(offsetof(ControlHeader, retention_unconsumed) == 288);
static_assert(offsetof(ControlHeader, retention_last_ns) == 296);
static_assert(sizeof(ControlHeader) <= kControlHeaderSize);
// Each directory counter at 192 + 8 * its place in the list, all on one cache line.
#define COMET_CHECK_DIRECTORY_COUNTER(field, ...)                \
  static_assert(offsetof(ControlHeader, field) ==                \
                192 + 8 * static_cast<size_t>(DirectoryCounter::field));
COMET_DIRECTORY_COUNTERS(COMET_CHECK_DIRECTORY_COUNTER)
#undef COMET_CHECK_DIRECTORY_COUNTER
static_assert(8 * static_cast<size_t>(DirectoryCounter::kCount) <= kCacheLine);
#define COMET_CHECK_RETENTION_COUNTER(field, ...)                \
  static_assert(offsetof(ControlHeader, field) ==                \
                256 + 8 * static_cast<size_t>(RetentionCounter::field));
COMET_RETENTION_COUNTERS(COMET_CHECK_RETENTION_COUNTER)
#undef COMET_CHECK_RETENTION_COUNTER

// ProcessSlot::state.
enum ProcessState : uint32_t { kProcessNeverUsed = 0, kProcessLive = 1, kProcessClosed = 2 };
// The state of a ShardSlot, GroupSlot or OffsetSlot: its identity is published by kSlotReady.
enum SlotState : uint32_t { kSlotFree = 0, kSlotReady = 1 };

// One per process that has the directory open in multi-process mode (a single-mode writer uses
// slot 0). Liveness is the OFD lock on DIR/slots/<slot>.lock, held for the life of the process and
// released by the kernel at its death; these bytes only describe the holder.
struct ProcessSlot {
  std::atomic<uint32_t> state;          // 0   0 never used, 1 live, 2 closed cleanly
  std::atomic<uint32_t> pid;            // 4
  std::atomic<uint64_t> start_time;     // 8   /proc/<pid>/stat starttime, clock ticks since boot
  std::atomic<uint64_t> epoch;          // 16  bumped each time the slot is claimed
  std::atomic<uint64_t> owned_shards;   // 24  shards this process writes now
  uint8_t reserved[96];                 // 32
};
static_assert(offsetof(ProcessSlot, state) == 0);
static_assert(offsetof(ProcessSlot, pid) == 4);
static_assert(offsetof(ProcessSlot, start_time) == 8);
static_assert(offsetof(ProcessSlot, epoch) == 16);
static_assert(offsetof(ProcessSlot, owned_shards) == 24);
static_assert(sizeof(ProcessSlot) == 128);

// Latency histograms, one set per process slot, written only by that process (so a reader sums
// them across slots). Bucket i counts operations that took [2^i, 2^(i+1)) nanoseconds (bucket 0
// also counts 0 ns; comet/metric_ops.h names the operations). Cumulative across the slot's
// holders: a new holder adds to them.
struct OpMetrics {
  std::atomic<uint64_t> count;          // 0   operations
  std::atomic<uint64_t> sum_ns;         // 8   total latency
  std::atomic<uint64_t> buckets[kHistogramBuckets];  // 16
};
static_assert(sizeof(OpMetrics) == 16 + 8 * kHistogramBuckets);
struct ProcessMetrics {
  OpMetrics ops[kOpCount];              // 0   indexed by MetricOp
  uint8_t pad[2688 - kOpCount * sizeof(OpMetrics)];
};
static_assert(sizeof(ProcessMetrics) == 2688 && sizeof(ProcessMetrics) % kCacheLine == 0);

// One per (prefix id, shard) that has ever been opened for writing in this directory.
struct ShardSlot {
  // line 0: identity, written once while holding the registry lock, then published by `state`.
  std::atomic<uint32_t> state;          // 0   0 free, 1 ready
  uint32_t prefix_id;                   // 4
  uint32_t shard;                       // 8
  uint32_t reserved0;                   // 12
  std::atomic<uint64_t> owner;          // 16  (process slot + 1) << 32 | epoch; 0 = none
  std::atomic<uint64_t> retained_from;  // 24  retention deleted every entry below this (the
                                        //     first remaining segment's base: a hint, the
                                        //     segment files are the truth)
  uint8_t pad0[32];                     // 32
  // line 1: the writer's publication. committed_entry is stored last, with release.
  std::atomic<uint64_t> committed_entry;   // 64  next entry number; all below are readable
  std::atomic<uint64_t> committed_offset;  // 72  byte end of the last record in the active segment
  std::atomic<uint64_t> active_base;       // 80  base entry of the active segment
  std::atomic<uint64_t> synced_entry;      // 88  entries below this survived fdatasync
  uint8_t pad1[32];                     // 96
  // line 2: waiting readers (futex word and waiter count).
  std::atomic<uint32_t> futex_seq;      // 128
  std::atomic<uint32_t> waiters;        // 132
  uint8_t pad2[56];                     // 136
  // line 3: per-stream counters (comet/counters.h), from offset 192.
  COMET_STREAM_COUNTERS(COMET_COUNTER_FIELD)
};
static_assert(offsetof(ShardSlot, owner) == 16);
static_assert(offsetof(ShardSlot, retained_from) == 24);
static_assert(offsetof(ShardSlot, committed_entry) == 64);
static_assert(offsetof(ShardSlot, committed_offset) == 72);
static_assert(offsetof(ShardSlot, active_base) == 80);
static_assert(offsetof(ShardSlot, synced_entry) == 88);
static_assert(offsetof(ShardSlot, futex_seq) == 128);
static_assert(offsetof(ShardSlot, waiters) == 132);
static_assert(offsetof(ShardSlot, appended_entries) == 192);
static_assert(offsetof(ShardSlot, failed_appends) == 248);
static_assert(sizeof(ShardSlot) == 256);
// Each stream counter at 192 + 8 * its place in the list, all on one cache line.
#define COMET_CHECK_STREAM_COUNTER(field, ...)                   \
  static_assert(offsetof(ShardSlot, field) == 192 + 8 * static_cast<size_t>(StreamCounter::field));
COMET_STREAM_COUNTERS(COMET_CHECK_STREAM_COUNTER)
#undef COMET_CHECK_STREAM_COUNTER
static_assert(8 * static_cast<size_t>(StreamCounter::kCount) == kCacheLine);
#undef COMET_COUNTER_FIELD

// Consumer groups (layout 1.1): one slot per group, then one per (group, stream) offset. The
// offsets are also kept in a durable file per group (below), so a rebuilt region loses none.
inline constexpr size_t kMaxGroupName = 255;
struct GroupSlot {
  // line 0: identity, written once while holding the allocation lock, published by `state`.
  std::atomic<uint32_t> state;          // 0   0 free, 1 ready
  uint32_t name_len;                    // 4   1..kMaxGroupName
  uint64_t file_key;                    // 8   the group's file is groups/<file_key:016X>.grp
  std::atomic<uint64_t> seq;            // 16  bumped after every commit and reset
  std::atomic<uint64_t> file_seq;       // 24  the seq the group file holds
  std::atomic<uint64_t> acked;          // 32  entries acked, all streams
  std::atomic<uint64_t> retention_lost; // 40  entries retention deleted before this group had
                                        //     consumed them (size budget, force_delete_after)
  uint8_t pad0[16];                     // 48
  char name[256];                       // 64  not NUL-terminated (name_len bytes)
};
static_assert(offsetof(GroupSlot, file_key) == 8);
static_assert(offsetof(GroupSlot, seq) == 16);
static_assert(offsetof(GroupSlot, file_seq) == 24);
static_assert(offsetof(GroupSlot, acked) == 32);
static_assert(offsetof(GroupSlot, retention_lost) == 40);
static_assert(offsetof(GroupSlot, name) == 64);
static_assert(sizeof(GroupSlot) == 320);

struct OffsetSlot {
  std::atomic<uint32_t> state;          // 0   0 free, 1 ready
  uint32_t group;                       // 4   index into the group table
  uint32_t prefix_id;                   // 8
  uint32_t shard;                       // 12
  std::atomic<uint64_t> committed;      // 16  next entry to deliver; every entry below is acked
                                        //     (or was skipped: damaged, or deleted unread)
  std::atomic<uint64_t> epoch;          // 24  bumped by a reset: consumers drop what they hold
  std::atomic<uint64_t> skipped;        // 32  entries passed over unread (damaged or deleted)
  std::atomic<int64_t> updated_ns;      // 40  wall clock of the last commit
  uint8_t pad[16];                      // 48
};
static_assert(offsetof(OffsetSlot, committed) == 16);
static_assert(offsetof(OffsetSlot, epoch) == 24);
static_assert(offsetof(OffsetSlot, skipped) == 32);
static_assert(offsetof(OffsetSlot, updated_ns) == 40);
static_assert(sizeof(OffsetSlot) == 64);

constexpr size_t process_table_offset() { return kControlHeaderSize; }
constexpr size_t metrics_table_offset(uint32_t max_processes) {
  return kControlHeaderSize + size_t{max_processes} * sizeof(ProcessSlot);
}
constexpr size_t shard_table_offset(uint32_t max_processes) {
  return metrics_table_offset(max_processes) + size_t{max_processes} * sizeof(ProcessMetrics);
}
constexpr size_t group_table_offset(uint32_t max_processes, uint32_t max_shards) {
  return shard_table_offset(max_processes) + size_t{max_shards} * sizeof(ShardSlot);
}
constexpr size_t offset_table_offset(uint32_t max_processes, uint32_t max_shards,
                                     uint32_t max_groups) {
  return group_table_offset(max_processes, max_shards) + size_t{max_groups} * sizeof(GroupSlot);
}
constexpr size_t control_file_size(uint32_t max_processes, uint32_t max_shards,
                                   uint32_t max_groups, uint32_t max_offsets) {
  return offset_table_offset(max_processes, max_shards, max_groups) +
         size_t{max_offsets} * sizeof(OffsetSlot);
}

// ---- group file (DIR/groups/<file_key:016X>.grp) ----------------------------------------------
//
// A consumer group's committed offsets, rewritten whole (temporary file, rename) after commits
// per sync.mode; the control region is loaded from it when it lacks the group or holds an
// older seq. Little-endian:
//     off size field
//       0   4  magic          "CMTG"
//       4   2  major (kGroupMajor)  6 2 minor
//       8   4  name_len       1..kMaxGroupName
//      12   4  count          offset records
//      16   8  seq            the group's seq when written
//      24   4  crc            masked CRC32C of bytes [0,24), then bytes [32, end)
//      28   4  reserved       0
//      32      name           name_len bytes
//              records        count x { u32 prefix_id, u32 shard, u64 committed, u64 skipped }
inline constexpr uint32_t kGroupMagic = 0x47544D43;  // "CMTG"
inline constexpr uint16_t kGroupMajor = 1;
inline constexpr size_t kGroupHeaderSize = 32;
inline constexpr size_t kGroupRecordSize = 24;
namespace grp {
inline constexpr size_t kMagic = 0, kMajor = 4, kMinor = 6, kNameLen = 8, kCount = 12, kSeq = 16,
                        kCrc = 24, kName = 32;
inline constexpr size_t kRecPrefixId = 0, kRecShard = 4, kRecCommitted = 8, kRecSkipped = 16;
static_assert(kName == kGroupHeaderSize && kRecSkipped + 8 == kGroupRecordSize);
}  // namespace grp

// ---- little-endian helpers -------------------------------------------------------------------
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the on-disk format is little-endian; add byte swaps for this target");

inline uint16_t load16(const void* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
inline uint32_t load32(const void* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint64_t load64(const void* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }
inline void store16(void* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void store32(void* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void store64(void* p, uint64_t v) { std::memcpy(p, &v, 8); }

}  // namespace comet::format
