// Consumer groups' committed offsets: the control region's group and offset tables (shared by
// every process, claimed under its allocation lock) and the durable file per group that keeps
// them when the control region is rebuilt, moved aside or deleted (format.h, "group file").
//
// Thread safety: GroupStore is safe to use from many threads; writes of one group's file are
// serialised across threads and processes by an OFD lock on DIR/groups/LOCK (byte file_key).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "comet/format.h"
#include "comet/status.h"
#include "env.h"

namespace comet::shm {
class ControlRegion;
}

namespace comet::internal {

inline constexpr const char* kGroupsDir = "groups";

// One group's offsets as its file holds them.
struct GroupFile {
  std::string name;
  uint64_t seq = 0;
  struct Record {
    uint32_t prefix_id = 0, shard = 0;
    uint64_t committed = 0, skipped = 0;
  };
  std::vector<Record> records;
};
std::string EncodeGroupFile(const GroupFile& g);
// CORRUPT (naming `path`) when the bytes are not a whole, intact group file.
Status DecodeGroupFile(std::string_view bytes, const std::string& path, GroupFile* out);

class GroupStore {
 public:
  GroupStore(std::string root, std::shared_ptr<shm::ControlRegion> control)
      : root_(std::move(root)), control_(std::move(control)) {}
  ~GroupStore();

  // At open, holding the directory's setup lock: every group file whose group the control
  // region lacks, or holds at an older seq, is loaded into it. A damaged file is moved aside
  // (to <name>.damaged-<ns>) and reported in *problems.
  Status Load(std::vector<std::string>* problems);
  // Writes the file of every group whose offsets changed since it was last written
  // (fdatasync'd and its directory synced when `durable`).
  Status Flush(bool durable);
  // Writes group `g`'s file if its offsets changed since it was last written.
  Status FlushGroup(uint32_t g, bool durable);
  // In a child after fork(): the lock descriptor is shared with the parent.
  void ForgetLockAfterFork();

 private:
  Status LockFile(uint64_t key, env::LockType type);

  const std::string root_;
  const std::shared_ptr<shm::ControlRegion> control_;
  std::mutex mu_;  // lock_fd_ and dir_made_
  int lock_fd_ = -1;
  bool dir_made_ = false;
};

}  // namespace comet::internal
