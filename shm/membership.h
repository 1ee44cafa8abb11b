// Process membership: which processes share a data directory in multi-process mode.
//
// Each process claims a slot of the control region's process table by taking an exclusive OFD
// lock on DIR/slots/<slot:04d>.lock and holds it for its life. The kernel releases the lock
// when the process dies, however it dies, so liveness is exact: a slot is live iff its lock is
// held. pid and start time are recorded for people and tools, never trusted for liveness, so
// PID reuse cannot fool it. Each claim bumps the slot's epoch; a shard lease names (slot, epoch),
// so a lease of a dead holder is recognisably stale even after the slot is claimed again.
//
// Thread safety: Join/Leave are not concurrent with other calls on the same object; LiveSlots
// and IsLive may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comet/status.h"
#include "control.h"

namespace comet::shm {

class Membership {
 public:
  ~Membership();

  // Claims the lowest slot whose lock is free. FULL (naming the count) when every slot is held
  // by a live process.
  static Result<std::unique_ptr<Membership>> Join(const std::string& dir, ControlRegion* control);

  uint32_t slot() const { return slot_; }
  // The lease word this process writes into ShardSlot::owner.
  uint64_t owner_word() const { return (uint64_t{slot_} + 1) << 32 | (epoch_ & 0xFFFFFFFF); }

  // Slots held by live processes, ascending (this process included).
  std::vector<uint32_t> LiveSlots();
  // Whether a lease word names a live holder: its slot is live and still in the same epoch.
  bool IsLive(uint64_t owner_word);

  // Marks the slot closed and releases the lock.
  void Leave();
  // In a child after fork(): the lock belongs to the parent. Forget it (without releasing it)
  // and claim a slot of our own.
  Status RejoinAfterFork();
  // In a child right after fork(), alone in it: a probe the parent's maintainer thread was
  // making at the fork did not come along, so its mutex must not stay held.
  void ForgetLocksAfterFork() { new (&probe_mu_) std::mutex(); }

 private:
  Membership(std::string dir, ControlRegion* control) : dir_(std::move(dir)), control_(control) {}
  Status Claim();
  bool SlotLocked(uint32_t slot);
  std::string LockPath(uint32_t slot) const;

  std::string dir_;
  ControlRegion* control_;
  uint32_t slot_ = 0;
  uint64_t epoch_ = 0;
  int lock_fd_ = -1;
  std::mutex probe_mu_;
  std::vector<int> probe_fds_;  // one read-only fd per slot for F_OFD_GETLK probes
};

// DIR/slots/<slot>.lock: a member holds an OFD lock on its slot's file for its whole life, so
// the kernel says at once whether a slot's holder is alive (env::OfdLockHeldAt).
std::string SlotLockPath(const std::string& dir, uint32_t slot);

// Clock ticks since boot at which `pid` started (/proc/<pid>/stat field 22); 0 if unknown.
uint64_t ProcessStartTime(int pid);

}  // namespace comet::shm
