// Configuration: one struct with grouped fields, each with its default and trade-off.
//
// Every field can also be set by key as a string (the C ABI's comet_config_set), with the same
// validation: unknown keys and bad values are refused with a message naming key and value.
// Durations accept "250ms", "1s", "5m", "2h", "7d", "500us", "100ns" or a plain number of
// nanoseconds; sizes accept "4096", "64KiB", "64MiB", "1GiB" (and KB/MB/GB as powers of 1000).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "comet/status.h"

namespace comet {

enum class ConcurrencyMode {
  kSingle,  // one writer process owns the whole directory (an exclusive claim)
  kMulti,   // many processes share it; each shard has one writer process at a time
};

enum class HugePages {
  kAuto,  // with sync.mode=none only (default)
  kOn,
  kOff,
};

enum class SyncMode {
  kNone,      // never fdatasync; the kernel writes back. A process crash loses nothing
              // acknowledged; a power loss loses what the kernel had not written.
  kInterval,  // a background thread group-commits fdatasync every sync.interval or every
              // sync.entries entries per shard, whichever comes first (default)
  kAlways,    // append returns after fdatasync; concurrent appenders share one fdatasync
};

struct Config {
  // Whether segments are mapped with 2 MiB entries where the kernel can (storage.huge_pages).
  bool HugeMappings() const {
    return storage.huge_pages == HugePages::kOn ||
           (storage.huge_pages == HugePages::kAuto && sync.mode == SyncMode::kNone);
  }

  struct Storage {
    // A segment is rotated before it would exceed this; only a single larger entry makes a
    // bigger segment. Larger segments mean fewer files and rotations; smaller ones let
    // retention free space in finer steps. Range 4 KiB .. 4 GiB.
    uint64_t max_segment_bytes = 64ull << 20;
    // Largest entry accepted; larger appends fail with TOO_LARGE. At most 1 GiB - 1.
    uint64_t max_entry_bytes = 64ull << 20;
    // How far ahead of the writer the background thread pre-faults segment pages
    // (MADV_POPULATE_WRITE), so the hot path never takes a page fault. 0 disables.
    uint64_t prefault_bytes = 4ull << 20;
    // Disk a writing client reserves ahead of its writers, in all: the room of active segments
    // (reserved when a stream is first appended to, not when it is opened) and of spare ones.
    // Past it, a stream's next segment is just big enough for what it must hold (at least
    // 64 KiB) and no spare is prepared; nothing is refused. Range 0 .. 1 PiB.
    uint64_t max_preallocated_bytes = 4ull << 30;
    // Map segments on 2 MiB boundaries with MADV_HUGEPAGE, so that the kernel may map the page
    // cache's 2 MiB folios with one entry each: a first access then costs once per 2 MiB
    // rather than once per 4 KiB page (microseconds each under some hypervisors). A sync writes
    // a 2 MiB folio back whole, so kAuto uses it only with sync.mode=none.
    HugePages huge_pages = HugePages::kAuto;
    // Once a sync has written a sealed segment to disk, drop its pages from the page cache
    // (posix_fadvise(DONTNEED)), so that the kernel hands that memory, still warm, to the next
    // segments instead of fresh pages (sync.mode interval and always; with none nothing is
    // synced and nothing dropped). The cost: a later read of that segment comes from disk.
    bool drop_synced_pages = true;
    // Capacity of the control region's shard table: distinct (prefix, shard) streams this
    // directory can ever hold. Fixed when the control file is created.
    uint32_t max_streams = 4096;
  } storage;

  struct Sync {
    SyncMode mode = SyncMode::kInterval;
    uint64_t interval_ns = 1'000'000'000;  // sync.interval
    uint64_t entries = 1000;               // sync.entries: sync early after this many entries
  } sync;

  struct Compression {
    // Entries of at least this many bytes are zstd-compressed (outside any lock) when that
    // makes them smaller. 0 disables compression.
    uint64_t min_bytes = 4096;
    int level = 1;  // zstd level 1..19; higher is smaller and slower
  } compression;

  struct Index {
    // One sparse index node every this many entries: a read walks at most interval-1 record
    // headers from its node. Memory: 4 bytes per node.
    uint32_t interval = 16;
  } index;

  struct Concurrency {
    ConcurrencyMode mode = ConcurrencyMode::kSingle;
    // Process slots in the control region (fixed when the control file is created); when all
    // are held by live processes, opening fails with COMET_ERR_FULL.
    uint32_t max_processes = 64;
  } concurrency;

  struct Metrics {
    // Directory of the pinned eBPF maps of `comet probe`. While DIR/comet_export is pinned
    // there, every writing client also adds its latency histograms to it (atomic adds into a
    // shared mapping, no system call), so that bpftool shows them with no probe attached; the
    // pin is looked for at open and then once a second. Empty disables.
    std::string bpf_pin_dir = "/sys/fs/bpf/comet";
    // While a USDT consumer (comet probe) is attached, the append and read probes fire on one
    // call in this many per thread, each fired call telling the consumer it stands for this
    // many: an attached uprobe costs microseconds per hit, sampling divides that. 1..65536.
    uint32_t probe_sample = 1;
  } metrics;

  struct Open {
    // Open without the writer claim: no recovery, no appends; reads what writers published.
    // Tools use this to read a directory that a live process is writing.
    bool read_only = false;
  } open;

  struct Read {
    // Check the CRC of every record a read returns. Off, each segment is checked once, in full,
    // when it is first read (or not at all when this process wrote it) and later reads trust
    // the page cache: damage made to the file afterwards (a stray write, a bad disk read) is
    // then returned as data. Lengths are bounded by the segment's data end either way. See
    // README's benchmark table for what the check costs.
    bool check_crc = true;
  } read;

  struct Consumers {
    // Capacity of the control region's consumer-group table, and of its (group, stream) offset
    // table: 320 and 64 bytes per slot. Fixed when the control file is created; beyond them,
    // opening a new group or reading a new stream fails with COMET_ERR_FULL.
    uint32_t max_groups = 64;
    uint32_t max_offsets = 4096;
    // How long a consumer with nothing to read (Read, Process, comet_consumer_read) polls its
    // streams' published counts before it sleeps on the futex (consumers.wait_spin). An entry
    // that arrives within it is handed over with no system call on either side (writers wake
    // sleeping readers only), which saves the wake-up (~15 us on a VM); the price is that much
    // CPU per wait. The budget follows the streams' pace: a wait that lasted longer halves the
    // next one (a consumer of a quiet stream soon stops spinning), one it would have covered
    // restores it. 0 disables; at most 10 ms.
    uint64_t wait_spin_ns = 50'000;
  } consumers;

  struct Retention {
    // Retention deletes whole sealed segments of a shard, oldest first, never its last (the
    // active) one. A segment's age is that of its newest possible entry: the time since the
    // segment after it was created. 0 turns a limit off; every limit is off by default, so
    // nothing is deleted unless one is set.
    uint64_t max_age_ns = 0;  // retention.max_age (e.g. 7d)
    uint64_t max_shard_bytes = 0;  // segment files of one shard, at most (0: no limit)
    uint64_t max_total_bytes = 0;  // segment files of every shard together (0: no limit)
    // Keep at least this many segments per shard (the active one counts), whatever the limits.
    uint32_t min_segments = 1;
    // Entries a consumer group has not consumed yet (at or above its committed offset) are
    // kept past max_age, until they are older than this (0: kept until a size budget or the
    // free-disk floor needs their space). Must be >= max_age when both are set.
    uint64_t force_delete_after_ns = 0;
    // Delete the oldest segments while the file system holding the directory has less free
    // space than this (0: no floor).
    uint64_t min_free_bytes = 0;
    // How often the background pass runs (one process at a time for the whole directory);
    // 0: never in the background, only Client::RunRetention (`comet retention`).
    uint64_t interval_ns = 60'000'000'000;  // retention.interval
  } retention;

  // Presets.
  static Config Default() { return Config(); }
  // Segment size from a memory budget spread over the shards (clamped to 1 MiB .. 1 GiB).
  static Config Optimized(uint32_t shard_count, uint64_t memory_mb);
  // Batches and big syncs: sync every 5 s or 100k entries, compress only >= 1 MiB entries,
  // sparser index.
  static Config HighThroughput();
  // Compress entries >= 512 bytes at zstd level 6.
  static Config HighCompression();
  // Default settings in multi-process mode (prefork servers, independent worker processes).
  static Config MultiProcess();

  // Sets one field by key ("sync.mode", "always"). Unknown keys and bad values fail with
  // COMET_ERR_INVALID naming the key and the value.
  Status Set(std::string_view key, std::string_view value);
  // Checks cross-field constraints; called by Client::Open.
  Status Validate() const;
  Status ValidateRetention() const;
  // Every key Set accepts, in a stable order.
  static const std::vector<std::string>& Keys();
};

// Parsers shared with the tools. They fail with COMET_ERR_INVALID and say why.
Result<uint64_t> ParseDuration(std::string_view text);
Result<uint64_t> ParseSize(std::string_view text);

}  // namespace comet
