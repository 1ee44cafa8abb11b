// The write path, rotation, group commit and the background work that keeps the hot path free
// of system calls.
#include "shard.h"

#include <algorithm>
#include <cstring>
#include <deque>

#include "clock.h"
#include "compress.h"
#include "control.h"
#include "env.h"
#include "hot.h"
#include "probes.h"
#include "test_hooks.h"

namespace comet::internal {

using namespace format;

namespace {

// Counters in the control region have one writer (the shard's owner, under its lock), so a
// plain load+store is enough and costs no locked instruction.
inline void Bump(std::atomic<uint64_t>& c, uint64_t n) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// How far ahead of the writer pre-faulting aims, in time at the writer's measured pace: enough
// to cover the maintainer's wake-up and a pass on a busy machine.
constexpr int64_t kPrefaultLeadNs = 50'000'000;
// The pace is measured over at least this long.
constexpr int64_t kPaceSampleNs = 5'000'000;

// The capacity a new segment asks for when it must hold at least `need` bytes of records: a
// whole segment, or more for an entry larger than one.
uint64_t WantedCapacity(const Config& cfg, uint64_t need) {
  return std::max(cfg.storage.max_segment_bytes, kSegmentHeaderSize + need);
}

std::atomic<void (*)(uint64_t)> index_write_hook{nullptr};  // test_hooks.h

// Retention may delete a sealed segment before its index file is written. A pass raises
// retained_from before it unlinks the segment and its index, so an index renamed into place
// before the second check below is unlinked by the pass, and one renamed after it, here.
void WriteIndexUnlessRetired(const Segment& s, const std::string& path, const ShardSlot* slot) {
  auto retired = [&] { return slot && slot->retained_from.load() > s.base(); };
  if (retired()) return;
  if (auto hook = index_write_hook.load(std::memory_order_relaxed)) hook(s.base());
  if (s.WriteIndexFile(path).ok() && retired()) (void)env::Unlink(path);
}

}  // namespace

void SetIndexWriteHook(void (*hook)(uint64_t base)) { index_write_hook.store(hook); }

// ---- write path ------------------------------------------------------------------------------

Result<std::shared_ptr<Segment>> Shard::NewSegment(uint64_t base, uint64_t need) {
  const Config& cfg = ctx_->cfg;
  if (Status st = EnsureDir(); !st.ok()) return st;
  const uint64_t want = WantedCapacity(cfg, need);
  std::shared_ptr<Segment> seg;
  if (want == cfg.storage.max_segment_bytes) {
    std::lock_guard lk(spare_mu_);
    seg = std::move(spare_);  // its room was taken when it was made
  }
  if (!seg) {
    const uint64_t room =
        ctx_->TakeRoom(want, std::min(want, std::max(kSegmentHeaderSize + need, kLeastRoom)));
    const std::string tmp = TempName("fresh");
    Result<std::shared_ptr<Segment>> r =
        Segment::Create(env::Join(dir_, tmp), rel_dir_ + "/" + tmp,
                        cfg.index.interval, room, cfg.storage.prefault_bytes,
                        cfg.HugeMappings());
    if (!r.ok()) {
      ctx_->GiveRoom(room);
      return Status(r.status().code(), name_ + ": new segment: " + r.status().message());
    }
    seg = std::move(*r);
    prefaulted_.fetch_add(seg->populated(), std::memory_order_relaxed);
  }
  SegmentHeader h;
  h.prefix_id = prefix_id_;
  h.shard = shard_;
  h.prefix = prefix_;
  h.base_entry = base;
  h.created_ns = env::NowNs();
  if (Status st = seg->Activate(&h, SegmentPath(base, "seg"), SegmentRel(base, "seg")); !st.ok()) {
    DropFresh(*seg);
    return st;
  }
  return seg;
}

void Shard::DropFresh(const Segment& seg) {
  (void)env::Unlink(seg.path());
  ctx_->GiveRoom(seg.capacity());
}

bool Shard::TakeSpareRoom() {
  const uint64_t want = ctx_->cfg.storage.max_segment_bytes;
  const uint64_t got = ctx_->TakeRoom(want, 0);
  if (got == want) return true;
  ctx_->GiveRoom(got);
  return false;
}

Status Shard::ResumeActive() {
  const Config& cfg = ctx_->cfg;
  resume_pending_ = false;
  const uint64_t want = cfg.storage.max_segment_bytes;  // at least write_off_ (LoadLocked)
  const uint64_t room = ctx_->TakeRoom(want, std::min(want, write_off_ + kLeastRoom));
  Status st = active_->PrepareForAppend(write_off_, room, cfg.storage.prefault_bytes,
                                        cfg.HugeMappings());
  if (st.ok()) {
    active_room_ = room;
    return st;
  }
  ctx_->GiveRoom(room);
  active_->SealAt(next_entry_ - active_->base(), write_off_);
  return Status(st.code(), "segment " + active_->rel() + ": cannot reopen for appending (" +
                               st.message() + "); sealed, appends go to a new segment");
}

Result<std::shared_ptr<Segment>> Shard::TimedNewSegment(uint64_t base, uint64_t need) {
  const uint64_t capacity = WantedCapacity(ctx_->cfg, need);
  COMET_PROBE(rotate_start, prefix_id_, shard_, 0, capacity);
  const uint64_t t0 = Ticks();
  Result<std::shared_ptr<Segment>> s = NewSegment(base, need);
  ctx_->Record(kOpRotate, TicksToNs(Ticks() - t0));
  COMET_PROBE(rotate_done, prefix_id_, shard_, 0, s.ok() ? (*s)->capacity() : capacity,
              s.status().raw());
  return s;
}

// REQUIRES: write_mu_ held.
void Shard::Rotate(std::shared_ptr<Segment> next) {
  std::shared_ptr<Segment> old = active_;
  bool drop_old = false;
  ctx_->GiveRoom(active_room_);
  active_room_ = next->capacity();
  if (old) {
    uint64_t count = next_entry_ - old->base();
    drop_old = count == 0;  // an empty segment replaced by one for an oversized entry
    old->Seal(count, write_off_);
  }
  {
    std::unique_lock lk(list_mu_);
    if (drop_old) segments_.pop_back();
    segments_.push_back(next);
  }
  active_ = next;
  write_off_ = kSegmentHeaderSize;
  until_node_ = 0;
  if (old) Bump(slot_->rotations, 1);
  if (old && !next->fully_prefaulted()) cold_rotations_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lk(sync_mu_);
    if (old && !drop_old) unsynced_.push_back(old);
    sync_active_ = next;
    dir_dirty_ = true;
  }
  if (old && !drop_old) {
    std::lock_guard lk(finish_mu_);
    to_finish_.push_back(old);
  }
  ctx_->maintainer->Notify();
}

Status Shard::NotOwner() const {
  uint64_t owner = slot_ ? slot_->owner.load(std::memory_order_acquire) : 0;
  std::string who = "no process";
  if (owner != 0 && ctx_->control) {
    uint32_t slot = static_cast<uint32_t>(owner >> 32) - 1;
    if (slot < ctx_->control->max_processes()) {
      who = "process slot " + std::to_string(slot) + " (pid " +
            std::to_string(ctx_->control->process(slot)->pid.load(std::memory_order_relaxed)) + ")";
    }
  }
  return Status::NotOwner(name_ + " is written by " + who +
                          ", not this process; route keys with PickStream to shards it owns");
}

COMET_HOT Status Shard::Append(std::span<const std::string_view> entries, EntryId* ids) {
  if (ctx_->read_only) return Status::Invalid("client is read-only; cannot append to " + name_);
  if (!writer_.load(std::memory_order_acquire)) {
    return closed_ ? Status::Closed("client is closed; cannot append to " + name_) : NotOwner();
  }
  const size_t n = entries.size();
  if (n == 0) return Status::Ok();

  // A small batch is prepared on the stack: an append right after a system call pays for every
  // page it touches (a thread-local in a shared library is a call into the dynamic linker and a
  // page of its own).
  PreparedRecord on_stack[kRecordsOnStack];
  PreparedRecord* recs = on_stack;
  if (n > kRecordsOnStack) {
    thread_local std::vector<PreparedRecord> large;
    large.resize(n);
    recs = large.data();
  }
  const int64_t ts = env::NowNs();
  if (Status st = PrepareRecords(entries, ts, recs); !st.ok()) return st;

  std::unique_lock lk(write_mu_);
  if (closed_) return Status::Closed("client is closed; cannot append to " + name_);
  if (!writer_.load(std::memory_order_relaxed)) return NotOwner();
  if (resume_pending_) (void)ResumeActive();  // on failure, the segment is sealed: see below
  std::vector<std::shared_ptr<Segment>> fresh;  // allocates only when a segment is made
  if (Status st = ReserveSegments({recs, n}, &fresh); !st.ok()) return st;
  Publish(n, WriteRecords(entries, recs, ts, &fresh, ids));
  const uint64_t last = next_entry_;
  const bool want_prefault = PrefaultDue();
  lk.unlock();
  return AfterAppend(last, want_prefault);
}

// Outside the lock: size checks, compression, CRCs.
COMET_HOT_PART Status Shard::PrepareRecords(std::span<const std::string_view> entries,
                                            int64_t ts, PreparedRecord* recs) {
  const Config& cfg = ctx_->cfg;
  const size_t n = entries.size();
  size_t used_bufs = 0;
  for (size_t i = 0; i < n; i++) {
    std::string_view e = entries[i];
    if (e.size() > cfg.storage.max_entry_bytes) {
      return Status::TooLarge(name_ + ": entry " + std::to_string(i) + " of the batch is " +
                              std::to_string(e.size()) + " bytes; storage.max_entry_bytes is " +
                              std::to_string(cfg.storage.max_entry_bytes));
    }
    const char* p = e.data();
    // Every record of a batch but its last says another follows (format.h).
    const uint32_t more = i + 1 < n ? kFlagBatchMore : 0;
    uint32_t sf = static_cast<uint32_t>(e.size());
    if (cfg.compression.min_bytes > 0 && e.size() >= cfg.compression.min_bytes) {
      // A deque: growing it never moves the buffers already filled, whose data the earlier
      // records of this batch point at (a moved short string would take its bytes with it).
      thread_local std::deque<std::string> bufs;
      if (bufs.size() <= used_bufs) bufs.emplace_back();
      if (Compress(e, cfg.compression.level, &bufs[used_bufs])) {
        p = bufs[used_bufs].data();
        sf = static_cast<uint32_t>(bufs[used_bufs].size()) | kFlagZstd;
        used_bufs++;
      }
    }
    sf |= more;
    recs[i] = PreparedRecord{p, sf, RecordCrc(p, sf, ts)};
  }
  return Status::Ok();
}

// Gets every segment the batch needs before anything is written, so that a full disk fails the
// batch as a whole.
COMET_HOT_PART Status Shard::ReserveSegments(std::span<const PreparedRecord> recs,
                                             std::vector<std::shared_ptr<Segment>>* fresh) {
  bool have = active_ && !active_->sealed();
  uint64_t off = have ? write_off_ : 0, cap = have ? active_->capacity() : 0;
  for (size_t i = 0; i < recs.size(); i++) {
    const uint64_t need = kRecordHeaderSize + (recs[i].size_flags & kSizeMask);
    if (!have || off + need > cap) {
      Result<std::shared_ptr<Segment>> s = TimedNewSegment(next_entry_ + i, need);
      if (!s.ok()) {
        for (auto& f : *fresh) DropFresh(*f);
        Bump(slot_->failed_appends, 1);
        return s.status();
      }
      off = kSegmentHeaderSize;
      cap = (*s)->capacity();
      have = true;
      fresh->push_back(std::move(*s));
    }
    off += need;
  }
  return Status::Ok();
}

// Copies the records into the mapping, rotating onto the reserved segments as each fills.
COMET_HOT_PART Shard::Written Shard::WriteRecords(std::span<const std::string_view> entries,
                                                  const PreparedRecord* recs, int64_t ts,
                                                  std::vector<std::shared_ptr<Segment>>* fresh,
                                                  EntryId* ids) {
  const uint32_t interval = ctx_->cfg.index.interval;
  size_t k = 0;
  Written w;
  for (size_t i = 0; i < entries.size(); i++) {
    if (k < fresh->size() && (*fresh)[k]->base() == next_entry_) Rotate(std::move((*fresh)[k++]));
    const PreparedRecord& r = recs[i];
    const uint32_t size = r.size_flags & kSizeMask;
    char* dst = active_->map() + write_off_;
    EncodeRecordHeader(dst, r.masked_crc ^ active_->record_key(), r.size_flags, ts);
    std::memcpy(dst + kRecordHeaderSize, r.payload, size);
    if (until_node_ == 0) {
      active_->index().Push(static_cast<uint32_t>(write_off_));
      until_node_ = interval;
    }
    until_node_--;
    if (ids) ids[i] = EntryId{prefix_id_, shard_, next_entry_};
    write_off_ += kRecordHeaderSize + size;
    next_entry_++;
    w.bytes += entries[i].size();
    w.stored += kRecordHeaderSize + size;
    w.compressed += (r.size_flags & kFlagZstd) ? 1 : 0;
  }
  return w;
}

// Makes the `n` entries just written visible to readers and wakes those parked.
COMET_HOT_PART void Shard::Publish(size_t n, const Written& w) {
  // committed_entry last, with release; readers acquire it. Recovery trusts
  // (active_base, committed_offset) only when committed_entry shows entries in that segment.
  // The offset before the base, both with release: a reader that loads the base first gets an
  // offset of that segment, or of a later one only once the base's segment is sealed.
  slot_->committed_offset.store(write_off_, std::memory_order_release);
  slot_->active_base.store(active_->base(), std::memory_order_release);
  // seq_cst: the waiters load below must not pass this store (a parked reader increments
  // waiters, then re-reads committed_entry).
  slot_->committed_entry.store(next_entry_, std::memory_order_seq_cst);
  Bump(slot_->appended_entries, n);
  Bump(slot_->appended_bytes, w.bytes);
  Bump(slot_->stored_bytes, w.stored);
  if (w.compressed) Bump(slot_->compressed_entries, w.compressed);
  if (slot_->waiters.load(std::memory_order_relaxed) != 0) {
    slot_->futex_seq.fetch_add(1, std::memory_order_release);
    env::FutexWake(&slot_->futex_seq, INT32_MAX);
  }
}

// REQUIRES: write_mu_ held. Whether the writer is within half a window of the pre-faulted pages.
COMET_HOT_PART bool Shard::PrefaultDue() const {
  const Config& cfg = ctx_->cfg;
  const uint64_t window = std::max<uint64_t>(prefault_window_.load(std::memory_order_relaxed),
                                             cfg.storage.prefault_bytes);
  return cfg.storage.prefault_bytes > 0 && !active_->fully_prefaulted() &&
         write_off_ + window / 2 > active_->populated();
}

// Outside the lock: asks the maintainer for pages and the syncer for a sync, or syncs up to
// entry `last` itself (sync.mode always).
COMET_HOT_PART Status Shard::AfterAppend(uint64_t last, bool want_prefault) {
  const Config& cfg = ctx_->cfg;
  if (want_prefault && !prefault_asked_.exchange(true, std::memory_order_relaxed)) {
    ctx_->maintainer->Notify();
  }
  switch (cfg.sync.mode) {
    case SyncMode::kAlways:
      return SyncTo(last);
    case SyncMode::kInterval:
      if (last - slot_->synced_entry.load(std::memory_order_relaxed) >= cfg.sync.entries &&
          !sync_asked_.exchange(true, std::memory_order_relaxed)) {
        ctx_->syncer->Notify();
      }
      break;
    case SyncMode::kNone:
      break;
  }
  return Status::Ok();
}

// ---- sync and background work ----------------------------------------------------------------

uint64_t Shard::EntriesBelow(Segment* seg, uint64_t end, uint64_t committed) const {
  SparseIndex& idx = seg->index();
  size_t lo = 0, hi = idx.size();
  while (lo < hi) {  // the last node at or below `end`
    size_t mid = (lo + hi) / 2;
    if (idx.Get(mid) <= end) lo = mid + 1; else hi = mid;
  }
  if (lo == 0) return 0;
  uint64_t k = uint64_t{lo - 1} * idx.interval();
  uint64_t off = idx.Get(lo - 1);
  while (seg->base() + k < committed) {
    uint64_t next =
        off + kRecordHeaderSize + (load32(seg->rmap() + off + rec::kSizeFlags) & kSizeMask);
    if (next > end) break;
    off = next;
    k++;
  }
  return k;
}

Status Shard::SyncUpTo(uint64_t target, bool spare_tail_page, bool releasing) {
  // Only the writer syncs (and writes synced_entry); a follower's sync is the owner's business.
  if (ctx_->read_only || (!writer_.load(std::memory_order_acquire) && !releasing)) {
    return Status::Ok();
  }
  std::unique_lock lk(sync_mu_);
  while (synced_ < target) {
    if (sync_leader_) {
      sync_cv_.wait(lk);
      continue;
    }
    // Lead one sync for everything published so far; waiters behind it share it.
    sync_leader_ = true;
    uint64_t goal = Committed();
    std::vector<std::shared_ptr<Segment>> segs = std::move(unsynced_);
    unsynced_.clear();
    std::shared_ptr<Segment> act = sync_active_;
    // Under sync_mu_ no rotation can complete, so this offset is the active segment's.
    uint64_t act_end = act ? std::min<uint64_t>(slot_->committed_offset.load(std::memory_order_acquire),
                                                act->map_len())
                           : 0;
    const bool dirty = dir_dirty_;
    dir_dirty_ = false;
    lk.unlock();
    if (act && spare_tail_page) {
      act_end = env::AlignDown(act_end, env::kPageSize);
      goal = std::min(goal, act->base() + EntriesBelow(act.get(), act_end, goal));
    }
    COMET_PROBE(commit_start, prefix_id_, shard_, goal - synced_, 0);
    const uint64_t t0 = Ticks();
    Status st;
    for (auto& s : segs) {
      s->DropWrittenPages(s->data_end());
      if (st.ok()) st = env::SyncMapped(s->map(), s->data_end(), s->path());
      if (st.ok() && ctx_->cfg.storage.drop_synced_pages) s->DropCached();
    }
    if (st.ok() && act) {
      act->DropWrittenPages(act_end);
      st = env::SyncMapped(act->map(), act_end, act->path());
    }
    if (st.ok() && dirty) st = env::FsyncDir(dir_);
    COMET_PROBE(commit_done, prefix_id_, shard_, goal - synced_, act_end, st.raw());
    lk.lock();
    sync_leader_ = false;
    if (!st.ok()) {
      unsynced_.insert(unsynced_.begin(), segs.begin(), segs.end());
      dir_dirty_ = dir_dirty_ || dirty;
      sync_cv_.notify_all();
      return Status(st.code(), name_ + ": sync: " + st.message());
    }
    ctx_->Record(kOpSync, TicksToNs(Ticks() - t0));
    synced_ = std::max(synced_, goal);
    last_sync_mono_ = env::MonotonicNs();
    slot_->synced_entry.store(synced_, std::memory_order_relaxed);
    slot_->syncs.fetch_add(1, std::memory_order_relaxed);
    sync_cv_.notify_all();
    if (spare_tail_page) break;  // best effort: the tail page goes with the next sync
  }
  return Status::Ok();
}

void Shard::MaybeIntervalSync(int64_t now_mono) {
  if (ctx_->read_only || !slot_ || !writer_.load(std::memory_order_acquire)) return;
  uint64_t c = Committed();
  uint64_t synced = slot_->synced_entry.load(std::memory_order_relaxed);
  if (c <= synced) return;
  bool due;
  {
    std::lock_guard lk(sync_mu_);
    due = now_mono - last_sync_mono_ >= static_cast<int64_t>(ctx_->cfg.sync.interval_ns) ||
          c - synced >= ctx_->cfg.sync.entries;
  }
  sync_asked_.store(false, std::memory_order_relaxed);
  // While the writer is moving, leave the page it is filling; once it is idle, sync it all.
  const bool moving = c != last_seen_committed_;
  last_seen_committed_ = c;
  if (due) (void)SyncUpTo(c, moving, false);
}

// Gives sealed segments back their preallocated tail and writes their index files.
void Shard::FinishSealed() {
  std::vector<std::shared_ptr<Segment>> done;
  {
    std::lock_guard lk(finish_mu_);
    done.swap(to_finish_);
  }
  for (auto& s : done) {
    (void)env::Truncate(s->fd(), s->data_end(), s->path());
    WriteIndexUnlessRetired(*s, SegmentPath(s->base(), "idx"), slot_);
  }
}

uint64_t Shard::PrefaultWindow(uint64_t base, uint64_t cur) {
  const int64_t now = env::MonotonicNs();
  if (base != pace_base_ || cur < pace_at_) {
    pace_base_ = base;  // a new segment: measure from here, keep the pace known so far
    pace_at_ = cur;
    pace_ns_ = now;
  } else if (now - pace_ns_ >= kPaceSampleNs) {
    const double rate = double(cur - pace_at_) * 1e9 / double(now - pace_ns_);
    pace_ = rate > pace_ ? rate : (pace_ + rate) / 2;  // up at once, down gradually
    pace_at_ = cur;
    pace_ns_ = now;
  }
  const uint64_t window = std::max<uint64_t>(
      ctx_->cfg.storage.prefault_bytes, uint64_t(pace_ * double(kPrefaultLeadNs) / 1e9));
  prefault_window_.store(window, std::memory_order_relaxed);
  return window;
}

bool Shard::PrefaultTo(Segment& s, uint64_t upto, uint64_t writer) {
  upto = std::min<uint64_t>(upto, s.capacity());
  if (upto <= std::max(s.populated(), writer)) return true;
  COMET_PROBE(prefault_start, prefix_id_, shard_, 0, upto - std::max(s.populated(), writer));
  Result<uint64_t> done = s.Prefault(upto, writer);
  if (done.ok()) prefaulted_.fetch_add(*done, std::memory_order_relaxed);
  COMET_PROBE(prefault_done, prefix_id_, shard_, 0, done.ok() ? *done : 0, done.status().raw());
  return done.ok();
}

bool Shard::Maintain() {
  if (ctx_->read_only || !writer_.load(std::memory_order_acquire)) return false;
  const Config& cfg = ctx_->cfg;
  FinishSealed();

  std::shared_ptr<Segment> a;
  {
    std::lock_guard lk(write_mu_);
    if (!resume_pending_) a = active_;
  }
  prefault_asked_.store(false, std::memory_order_relaxed);
  if (!a || a->sealed()) return false;
  uint64_t cur = slot_->active_base.load(std::memory_order_relaxed) == a->base()
                     ? slot_->committed_offset.load(std::memory_order_relaxed)
                     : kSegmentHeaderSize;
  // Pages behind the writer leave its mapping before the kernel writes them back.
  a->DropWrittenPages(cur);
  // First the active segment, a window ahead of the writer, so that its stores never fault.
  const bool prefault = cfg.storage.prefault_bytes > 0;
  const uint64_t window = prefault ? PrefaultWindow(a->base(), cur) : 0;
  if (prefault) PrefaultTo(*a, cur + window, cur);
  // Past half of the active segment, prepare the next one off the hot path, and pre-fault all
  // of it before the writer gets there, a window per pass so that the active segment's own
  // window is kept up in between.
  if (cur <= a->capacity() / 2 || a->capacity() != cfg.storage.max_segment_bytes) return false;
  std::shared_ptr<Segment> spare;
  {
    std::lock_guard lk(spare_mu_);
    spare = spare_;
  }
  if (!spare && EnsureDir().ok() && TakeSpareRoom()) {
    const std::string tmp = TempName("spare");
    COMET_PROBE(prealloc_start, prefix_id_, shard_, 0, cfg.storage.max_segment_bytes);
    Result<std::shared_ptr<Segment>> s =
        Segment::Create(env::Join(dir_, tmp), rel_dir_ + "/" + tmp, cfg.index.interval,
                        cfg.storage.max_segment_bytes, 0, cfg.HugeMappings());
    COMET_PROBE(prealloc_done, prefix_id_, shard_, 0, cfg.storage.max_segment_bytes,
                s.status().raw());
    if (s.ok()) {
      spare = *s;
      std::lock_guard lk(spare_mu_);
      spare_ = std::move(*s);
    } else {
      ctx_->GiveRoom(cfg.storage.max_segment_bytes);
    }
  }
  if (!spare || !prefault || spare->fully_prefaulted()) return false;
  // On failure, the next pass tries again after the usual wait rather than at once.
  return PrefaultTo(*spare, spare->populated() + window, 0) && !spare->fully_prefaulted();
}

}  // namespace comet::internal
