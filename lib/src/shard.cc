// Shard: construction, ownership changes (write -> follow and back, fork) and waiting readers.
// The write path is in shard_write.cc, the read path in shard_read.cc, loading and recovery in
// shard_recovery.cc.
#include "shard.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "clock.h"
#include "compress.h"
#include "control.h"
#include "env.h"
#include "probes.h"
#include "test_hooks.h"
#include "text.h"

namespace comet::internal {

using namespace format;

// ---- Wakeup ----------------------------------------------------------------------------------

void Wakeup::Notify() {
  seq_.fetch_add(1, std::memory_order_release);
  if (sleeping_.load(std::memory_order_seq_cst)) env::FutexWake(&seq_, 1);
}

void Wakeup::Wait(int64_t timeout_ns) {
  // A Notify that arrived while the waiter was busy must not be slept through.
  uint32_t cur = seq_.load(std::memory_order_acquire);
  if (cur == seen_) {
    sleeping_.store(1, std::memory_order_seq_cst);
    if (seq_.load(std::memory_order_seq_cst) == cur) env::FutexWait(&seq_, cur, timeout_ns);
    sleeping_.store(0, std::memory_order_relaxed);
  }
  seen_ = seq_.load(std::memory_order_acquire);
}

using text::UpperHex;

// ---- construction, paths ---------------------------------------------------------------------

Shard::Shard(std::shared_ptr<ShardContext> ctx, uint32_t prefix_id, std::string prefix, uint32_t shard)
    : ctx_(std::move(ctx)),
      prefix_id_(prefix_id),
      shard_(shard),
      prefix_(std::move(prefix)),
      name_(ShardStreamName(prefix_, shard)),
      dir_(env::Join(ctx_->root, "streams/" + UpperHex(prefix_id, 8) + "/" + UpperHex(shard, 4))),
      rel_dir_("streams/" + UpperHex(prefix_id, 8) + "/" + UpperHex(shard, 4)) {}

Shard::~Shard() = default;

std::string Shard::SegmentPath(uint64_t base, const char* ext) const {
  return env::Join(dir_, UpperHex(base, 16) + "." + ext);
}

// A file name of its own for every segment file being prepared: a spare still being renamed
// into place must never share its name with the next one (O_TRUNC would empty it).
std::string Shard::TempName(const char* what) {
  return "." + std::string(what) + "-" +
         std::to_string(temp_seq_.fetch_add(1, std::memory_order_relaxed)) + ".tmp";
}

std::string Shard::SegmentRel(uint64_t base, const char* ext) const {
  return rel_dir_ + "/" + UpperHex(base, 16) + "." + ext;
}

Status Shard::EnsureDir() {
  if (dir_exists_) return Status::Ok();
  Status st = env::MkdirAll(dir_);
  if (st.ok()) dir_exists_ = true;
  return st;
}

uint64_t Shard::FirstEntry() const {
  std::shared_lock lk(list_mu_);
  return std::max(segments_.empty() ? Committed() : segments_.front()->base(), RetainedFrom());
}

// A segment is gone when the next one starts at or below retained_from; the last one never is.
void Shard::ForgetRetained() {
  const uint64_t from = RetainedFrom();
  auto gone = [&] { return segments_.size() > 1 && segments_[1]->base() <= from; };
  {
    std::shared_lock lk(list_mu_);
    if (!gone()) return;
  }
  std::unique_lock lk(list_mu_);
  size_t n = 0;
  while (n + 1 < segments_.size() && segments_[n + 1]->base() <= from) n++;
  segments_.erase(segments_.begin(), segments_.begin() + static_cast<ptrdiff_t>(n));
  std::erase_if(gaps_, [&](const std::pair<uint64_t, uint64_t>& g) { return g.second <= from; });
}

void Shard::CountCorrupt(uint64_t n) {
  if (n == 0) return;
  corrupt_.fetch_add(n, std::memory_order_relaxed);
  if (slot_ && !ctx_->read_only) slot_->corrupt_records.fetch_add(n, std::memory_order_relaxed);
  if (ctx_->control && !ctx_->read_only) {
    ctx_->control->header()->corrupt_records.fetch_add(n, std::memory_order_relaxed);
  }
}

// Stops appends (they get NOT_OWNER, or CLOSED when closing), makes what was appended durable
// per sync.mode, finishes sealed segments and drops the spare: what both Close and handing the
// shard to another process need.
Status Shard::StopWriting(bool closing) {
  {
    std::lock_guard lk(write_mu_);
    if (closing) closed_ = true;
    if (!writer_.load(std::memory_order_relaxed)) return Status::Ok();
    writer_.store(false, std::memory_order_release);
  }
  Status st;
  if (ctx_->cfg.sync.mode != SyncMode::kNone) st = SyncUpTo(Committed(), false, true);
  FinishSealed();
  {
    std::lock_guard lk(write_mu_);
    if (active_ && closing) {
      // Give back the preallocated tail; recovery re-extends it on the next open.
      Status t = env::Truncate(active_->fd(), write_off_, active_->path());
      if (st.ok()) st = t;
    }
    active_.reset();
    ctx_->GiveRoom(active_room_);
    active_room_ = 0;
    resume_pending_ = false;
  }
  {
    std::lock_guard lk(sync_mu_);
    sync_active_.reset();
    unsynced_.clear();
  }
  std::lock_guard sl(spare_mu_);
  if (spare_) DropFresh(*spare_);
  spare_.reset();
  return st;
}

Status Shard::Close() { return StopWriting(true); }

Status Shard::BecomeFollower() { return StopWriting(false); }

Status Shard::BecomeWriter(std::vector<std::string>* problems) {
  std::lock_guard wl(write_mu_);
  if (closed_) return Status::Closed("client is closed; cannot take over " + name_);
  if (writer_.load(std::memory_order_relaxed)) return Status::Ok();
  return LoadLocked(problems, true);
}

void Shard::LockForFork() {
  write_mu_.lock();
  spare_mu_.lock();
  list_mu_.lock();
  for (auto& seg : segments_) seg->scan_mutex().lock();
  sync_mu_.lock();
  finish_mu_.lock();
}

void Shard::UnlockAfterFork(bool child) {
  if (child) ForgetWriterAfterFork();
  finish_mu_.unlock();
  sync_mu_.unlock();
  for (auto& seg : segments_) seg->scan_mutex().unlock();
  if (child) {
    new (&list_mu_) std::shared_mutex();  // see ClientImpl::UnlockAfterFork
  } else {
    list_mu_.unlock();
  }
  spare_mu_.unlock();
  write_mu_.unlock();
}

void Shard::ForgetWriterAfterFork() {
  // Runs in the child with every lock of this shard held by the forking thread (see the
  // pthread_atfork handlers); the parent keeps writing, so nothing here touches the files.
  writer_.store(false, std::memory_order_relaxed);
  active_.reset();
  ctx_->GiveRoom(active_room_ + (spare_ ? spare_->capacity() : 0));
  active_room_ = 0;
  resume_pending_ = false;
  spare_.reset();
  to_finish_.clear();
  unsynced_.clear();
  sync_active_.reset();
  sync_leader_ = false;
}

namespace {
std::atomic<int64_t> wait_recheck_ns{10'000'000};
}  // namespace

void SetWaitRecheckNs(int64_t ns) { wait_recheck_ns.store(ns, std::memory_order_relaxed); }
int64_t WaitRecheckNs() { return wait_recheck_ns.load(std::memory_order_relaxed); }

Status Shard::WaitFor(uint64_t e, int64_t timeout_ns) {
  if (Committed() > e) return Status::Ok();
  for (int i = 0; i < 2000; i++) {  // a few microseconds: the common case for a busy writer
    __builtin_ia32_pause();
    if (Committed() > e) return Status::Ok();
  }
  if (!slot_) return Status::Timeout(name_ + ": no control region to wait on");
  const int64_t deadline = timeout_ns < 0 ? -1 : env::MonotonicNs() + timeout_ns;
  // A read-only client maps the control region read-only: it cannot announce itself as a
  // waiter, so writers do not wake it and it re-checks every millisecond instead.
  const bool announced = !ctx_->read_only;
  COMET_PROBE(wait_start, prefix_id_, shard_, 0, 0);
  if (announced) slot_->waiters.fetch_add(1, std::memory_order_seq_cst);
  Status st;
  for (;;) {
    uint32_t seq = slot_->futex_seq.load(std::memory_order_seq_cst);
    if (Committed() > e) break;
    if (client_closed()) {
      st = Status::Closed(name_ + ": the client was closed while waiting for entry " +
                          std::to_string(e));
      break;
    }
    int64_t wait = announced ? WaitRecheckNs() : 1'000'000;  // re-check now and then regardless
    if (deadline >= 0) {
      int64_t left = deadline - env::MonotonicNs();
      if (left <= 0) {
        st = Status::Timeout(name_ + ": entry " + std::to_string(e) + " did not arrive in time");
        break;
      }
      wait = std::min(wait, left);
    }
    env::FutexWait(&slot_->futex_seq, seq, wait);
  }
  if (announced) slot_->waiters.fetch_sub(1, std::memory_order_relaxed);
  COMET_PROBE(wait_done, prefix_id_, shard_, 0, 0, st.raw());
  return st;
}

}  // namespace comet::internal
