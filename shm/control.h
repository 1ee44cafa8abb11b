// The control region: DIR/comet.ctl mapped MAP_SHARED (Boost.Interprocess) by every process that
// opens the directory, read-only by tools. Its layout is format::ControlHeader and the tables
// after it (comet/format.h). It holds per-shard committed positions and counters; everything in
// it can be rebuilt from the segments, so a missing or damaged file is rebuilt by the writer.
//
// Thread safety: the region is shared memory; all mutable fields are atomics. Slot allocation
// holds an OFD lock on the control file's first byte (WithAllocationLock), which the kernel
// releases if its holder dies.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>

#include "comet/format.h"
#include "comet/status.h"

namespace comet::shm {

// A consumer group name: 1 to format::kMaxGroupName bytes; INVALID otherwise, naming the length.
Status ValidateGroupName(std::string_view name);

// Table capacities, fixed when the file is created.
struct ControlLimits {
  uint32_t max_streams = 4096;
  uint32_t max_processes = 64;
  uint32_t max_groups = 64;
  uint32_t max_offsets = 4096;
};

class ControlRegion {
 public:
  static constexpr const char* kFileName = "comet.ctl";

  // Opens DIR/comet.ctl for the writer. Creates it if missing; if it is damaged (bad magic,
  // size, CRC or values) or of an older minor layout, moves it aside to comet.ctl.damaged-<ns>
  // and creates a fresh one, and says so in *note. Another major version is refused with
  // VERSION naming both versions.
  static Result<std::unique_ptr<ControlRegion>> OpenWriter(const std::string& dir,
                                                           const ControlLimits& limits,
                                                           std::string* note);
  // Maps an existing DIR/comet.ctl read-only. NOT_FOUND if missing; VERSION or CORRUPT if it is
  // not a usable control file. Never writes.
  static Result<std::unique_ptr<ControlRegion>> OpenReader(const std::string& dir);

  format::ControlHeader* header() const { return header_; }
  // True when this open created the file (no committed positions from before).
  bool fresh() const { return fresh_; }
  const std::string& path() const { return path_; }

  // The slot of (prefix_id, shard), or nullptr.
  format::ShardSlot* Find(uint32_t prefix_id, uint32_t shard) const;
  // Finds or allocates the slot. FULL (naming the capacity) when the table is full.
  Result<format::ShardSlot*> Acquire(uint32_t prefix_id, uint32_t shard);

  uint32_t shard_count() const { return header_->shard_count.load(std::memory_order_acquire); }
  format::ShardSlot* shard_at(uint32_t i) const;  // REQUIRES: i < shard_count()
  uint32_t max_processes() const { return header_->max_processes; }

  // Consumer groups. FindGroup: the slot index of the group named `name`, or -1. AcquireGroup
  // finds or allocates it (with file key `file_key`, or, when 0, the first key from
  // the name's hash that no other group uses); FULL names the capacity.
  int64_t FindGroup(std::string_view name) const;
  Result<uint32_t> AcquireGroup(std::string_view name, uint64_t file_key = 0);
  uint32_t group_count() const { return header_->group_count.load(std::memory_order_acquire); }
  format::GroupSlot* group(uint32_t i) const;  // REQUIRES: i < group_count()
  // The offset slot of (group, prefix_id, shard), or nullptr; AcquireOffset allocates it
  // (committed 0). FULL names the capacity.
  format::OffsetSlot* FindOffset(uint32_t group, uint32_t prefix_id, uint32_t shard) const;
  Result<format::OffsetSlot*> AcquireOffset(uint32_t group, uint32_t prefix_id, uint32_t shard);
  uint32_t offset_count() const { return header_->offset_count.load(std::memory_order_acquire); }
  format::OffsetSlot* offset(uint32_t i) const;  // REQUIRES: i < offset_count()
  format::ProcessSlot* process(uint32_t i) const;      // REQUIRES: i < max_processes()
  format::ProcessMetrics* metrics(uint32_t i) const;   // REQUIRES: i < max_processes()

  ~ControlRegion();
  // In a child after fork(): the descriptor behind the allocation lock is shared with the
  // parent, so it would not exclude it; the next Acquire opens one of our own.
  void ForgetLockAfterFork();

 private:
  ControlRegion() = default;
  Status Attach(bool writable);
  static Status Create(const std::string& path, const ControlLimits& limits);
  Status Validate() const;
  // Runs `fn` holding the allocation lock (an OFD lock on byte 0 of the file).
  Status WithAllocationLock(const std::function<Status()>& fn);
  void SetTables();

  std::string path_;
  bool fresh_ = false;
  int lock_fd_ = -1;  // for the OFD lock that serialises slot allocation
  boost::interprocess::file_mapping file_;
  boost::interprocess::mapped_region region_;
  format::ControlHeader* header_ = nullptr;
  format::ShardSlot* shards_ = nullptr;
  format::GroupSlot* groups_ = nullptr;
  format::OffsetSlot* offsets_ = nullptr;
};

}  // namespace comet::shm
