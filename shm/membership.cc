#include "membership.h"

#include <fcntl.h>

#include <cstdio>
#include <cstring>

#include "env.h"

namespace comet::shm {

uint64_t ProcessStartTime(int pid) {
  Result<std::string> stat = env::ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return 0;
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return 0;
  const char* p = stat->c_str() + close + 1;
  for (int field = 3; field < 22 && *p; field++) {
    while (*p == ' ') p++;
    while (*p && *p != ' ') p++;
  }
  return std::strtoull(p, nullptr, 10);
}

Membership::~Membership() {
  for (int fd : probe_fds_) env::Close(fd);
  env::Close(lock_fd_);
}

std::string SlotLockPath(const std::string& dir, uint32_t slot) {
  char name[32];
  std::snprintf(name, sizeof name, "slots/%04u.lock", slot);
  return env::Join(dir, name);
}

std::string Membership::LockPath(uint32_t slot) const { return SlotLockPath(dir_, slot); }

Result<std::unique_ptr<Membership>> Membership::Join(const std::string& dir,
                                                    ControlRegion* control) {
  std::unique_ptr<Membership> m(new Membership(dir, control));
  if (Status st = env::MkdirAll(env::Join(dir, "slots")); !st.ok()) return st;
  m->probe_fds_.assign(control->max_processes(), -1);
  if (Status st = m->Claim(); !st.ok()) return st;
  return m;
}

Status Membership::Claim() {
  const uint32_t n = control_->max_processes();
  for (uint32_t i = 0; i < n; i++) {
    Result<int> fd = env::OpenFile(LockPath(i), O_RDWR | O_CREAT);
    if (!fd.ok()) return fd.status();
    Status locked = env::OfdLock(*fd, env::LockType::kExclusive, 0, 0, false, LockPath(i));
    if (!locked.ok()) {
      env::Close(*fd);
      if (locked.IsNotOwner()) continue;  // held by a live process
      return locked;
    }
    format::ProcessSlot* ps = control_->process(i);
    slot_ = i;
    lock_fd_ = *fd;
    epoch_ = ps->epoch.load(std::memory_order_relaxed) + 1;
    const int pid = env::ProcessId();
    ps->pid.store(static_cast<uint32_t>(pid), std::memory_order_relaxed);
    ps->start_time.store(ProcessStartTime(pid), std::memory_order_relaxed);
    ps->owned_shards.store(0, std::memory_order_relaxed);
    ps->epoch.store(epoch_, std::memory_order_release);
    ps->state.store(format::kProcessLive, std::memory_order_release);
    control_->header()->generation.fetch_add(1, std::memory_order_acq_rel);
    return Status::Ok();
  }
  return Status::Full("all " + std::to_string(n) + " process slots of " + dir_ +
                      " are held by live processes (raise concurrency.max_processes for a new "
                      "directory)");
}

bool Membership::SlotLocked(uint32_t slot) {
  std::lock_guard lk(probe_mu_);
  int& fd = probe_fds_[slot];
  if (fd < 0) {
    Result<int> r = env::OpenFile(LockPath(slot), O_RDONLY);
    if (!r.ok()) return false;  // never created: never held
    fd = *r;
  }
  return env::OfdLockHeld(fd, 0, 0);
}

std::vector<uint32_t> Membership::LiveSlots() {
  std::vector<uint32_t> live;
  const uint32_t n = control_->max_processes();
  for (uint32_t i = 0; i < n; i++) {
    if (control_->process(i)->state.load(std::memory_order_acquire) == format::kProcessNeverUsed) {
      continue;
    }
    if (i == slot_ && lock_fd_ >= 0) {
      live.push_back(i);
    } else if (SlotLocked(i)) {
      live.push_back(i);
    }
  }
  return live;
}

bool Membership::IsLive(uint64_t owner_word) {
  if (owner_word == 0) return false;
  uint32_t slot = static_cast<uint32_t>(owner_word >> 32) - 1;
  if (slot >= control_->max_processes()) return false;
  uint64_t epoch = control_->process(slot)->epoch.load(std::memory_order_acquire);
  if ((epoch & 0xFFFFFFFF) != (owner_word & 0xFFFFFFFF)) return false;
  if (slot == slot_ && lock_fd_ >= 0) return true;
  return SlotLocked(slot);
}

void Membership::Leave() {
  if (lock_fd_ < 0) return;
  format::ProcessSlot* ps = control_->process(slot_);
  ps->owned_shards.store(0, std::memory_order_relaxed);
  ps->state.store(format::kProcessClosed, std::memory_order_release);
  control_->header()->generation.fetch_add(1, std::memory_order_acq_rel);
  env::Close(lock_fd_);  // the kernel releases the OFD lock with its last descriptor
  lock_fd_ = -1;
}

Status Membership::RejoinAfterFork() {
  // These descriptors share open file descriptions (and so the OFD lock) with the parent;
  // closing our copies leaves the parent's lock in place.
  env::Close(lock_fd_);
  lock_fd_ = -1;
  {
    std::lock_guard lk(probe_mu_);
    for (int& fd : probe_fds_) {
      env::Close(fd);
      fd = -1;
    }
  }
  return Claim();
}

}  // namespace comet::shm
