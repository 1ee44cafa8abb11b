// The control region: DIR/comet.ctl mapped MAP_SHARED (Boost.Interprocess) by every process that
// opens the directory, read-only by tools. Its layout is format::ControlHeader and the tables
// after it (comet/format.h). It holds per-shard committed positions and counters; everything in
// it can be rebuilt from the segments, so a missing or damaged file is rebuilt by the writer.
//
// Thread safety: the region is shared memory; all mutable fields are atomics. Slot allocation
// takes the registry spin lock in the header.
#pragma once

#include <memory>
#include <string>

#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>

#include "comet/format.h"
#include "comet/status.h"

namespace comet::shm {

class ControlRegion {
 public:
  static constexpr const char* kFileName = "comet.ctl";

  // Opens DIR/comet.ctl for the writer. Creates it if missing; if it is damaged (bad magic,
  // size, CRC or values) moves it aside to comet.ctl.damaged-<ns> and creates a fresh one, and
  // says so in *note. Another major version is refused with VERSION naming both versions.
  static Result<std::unique_ptr<ControlRegion>> OpenWriter(const std::string& dir,
                                                           uint32_t max_streams,
                                                           uint32_t max_processes,
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
  format::ProcessSlot* process(uint32_t i) const;      // REQUIRES: i < max_processes()
  format::ProcessMetrics* metrics(uint32_t i) const;   // REQUIRES: i < max_processes()

  ~ControlRegion();
  // In a child after fork(): the descriptor behind the allocation lock is shared with the
  // parent, so it would not exclude it; the next Acquire opens one of our own.
  void ForgetLockAfterFork();

 private:
  ControlRegion() = default;
  Status Attach(bool writable);
  static Status Create(const std::string& path, uint32_t max_streams, uint32_t max_processes);
  Status Validate() const;

  std::string path_;
  bool fresh_ = false;
  int lock_fd_ = -1;  // for the OFD lock that serialises slot allocation
  boost::interprocess::file_mapping file_;
  boost::interprocess::mapped_region region_;
  format::ControlHeader* header_ = nullptr;
  format::ShardSlot* shards_ = nullptr;
};

}  // namespace comet::shm
