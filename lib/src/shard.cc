#include "shard.h"

#include <fcntl.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "clock.h"
#include "compress.h"
#include "control.h"
#include "env.h"

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

// ---- helpers ---------------------------------------------------------------------------------

namespace {

std::string Hex(uint64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*" PRIX64, width, v);
  return buf;
}

// Counters in the control region have one writer (the shard's owner, under its lock), so a
// plain load+store is enough and costs no locked instruction.
inline void Bump(std::atomic<uint64_t>& c, uint64_t n) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

bool ParseSegmentName(const std::string& name, uint64_t* base) {
  if (name.size() != 20 || name.compare(16, 4, ".seg") != 0) return false;
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    char c = name[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return false;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  *base = v;
  return true;
}

}  // namespace

// ---- construction, paths ---------------------------------------------------------------------

Shard::Shard(const ShardContext* ctx, uint32_t prefix_id, std::string prefix, uint32_t shard)
    : ctx_(ctx),
      prefix_id_(prefix_id),
      shard_(shard),
      prefix_(std::move(prefix)),
      name_(ShardStreamName(prefix_, shard)),
      dir_(env::Join(ctx->root, "streams/" + Hex(prefix_id, 8) + "/" + Hex(shard, 4))),
      rel_dir_("streams/" + Hex(prefix_id, 8) + "/" + Hex(shard, 4)) {}

Shard::~Shard() = default;

std::string Shard::SegmentPath(uint64_t base, const char* ext) const {
  return env::Join(dir_, Hex(base, 16) + "." + ext);
}

// A file name of its own for every segment file being prepared: a spare still being renamed
// into place must never share its name with the next one (O_TRUNC would empty it).
std::string Shard::TempName(const char* what) {
  return "." + std::string(what) + "-" +
         std::to_string(temp_seq_.fetch_add(1, std::memory_order_relaxed)) + ".tmp";
}

std::string Shard::SegmentRel(uint64_t base, const char* ext) const {
  return rel_dir_ + "/" + Hex(base, 16) + "." + ext;
}

Status Shard::EnsureDir() {
  if (dir_exists_) return Status::Ok();
  Status st = env::MkdirAll(dir_);
  if (st.ok()) dir_exists_ = true;
  return st;
}

uint64_t Shard::FirstEntry() const {
  std::shared_lock lk(list_mu_);
  return segments_.empty() ? Committed() : segments_.front()->base();
}

void Shard::CountCorrupt(uint64_t n) {
  if (n == 0) return;
  corrupt_.fetch_add(n, std::memory_order_relaxed);
  if (slot_ && !ctx_->read_only) slot_->corrupt_records.fetch_add(n, std::memory_order_relaxed);
  if (ctx_->control && !ctx_->read_only) {
    ctx_->control->header()->corrupt_records.fetch_add(n, std::memory_order_relaxed);
  }
}

// ---- load and recovery -----------------------------------------------------------------------

Status Shard::LoadSegments(std::vector<std::shared_ptr<Segment>>* segs,
                           std::vector<std::string>* problems, bool writable) {
  Result<std::vector<std::string>> names = env::ListDir(dir_);
  if (!names.ok()) return names.status().IsNotFound() ? Status::Ok() : names.status();
  dir_exists_ = true;
  std::vector<std::pair<uint64_t, std::string>> files;
  for (const std::string& n : *names) {
    uint64_t base;
    if (ParseSegmentName(n, &base)) {
      files.emplace_back(base, n);
    } else if (writable && n.size() > 4 && n[0] == '.' && n.ends_with(".tmp")) {
      (void)env::Unlink(env::Join(dir_, n));  // an unfinished spare or index from a crash
    }
  }
  std::sort(files.begin(), files.end());
  for (auto& [base, n] : files) {
    std::string path = env::Join(dir_, n), rel = rel_dir_ + "/" + n;
    Result<std::shared_ptr<Segment>> s =
        Segment::Open(path, rel, ctx_->cfg.index.interval, writable);
    if (!s.ok()) {
      if (s.status().code() == Code::kVersion) return s.status();
      problems->push_back(s.status().message() + "; its entries are unreadable");
      CountCorrupt(1);
      continue;
    }
    const SegmentHeader& h = (*s)->header();
    if (h.base_entry != base || h.prefix_id != prefix_id_ || h.shard != shard_) {
      problems->push_back("segment " + rel + " header names prefix " + std::to_string(h.prefix_id) +
                          " shard " + std::to_string(h.shard) + " base " +
                          std::to_string(h.base_entry) + ", not this file; ignored");
      CountCorrupt(1);
      continue;
    }
    segs->push_back(std::move(*s));
  }
  return Status::Ok();
}

Status Shard::Load(std::vector<std::string>* problems, bool as_writer) {
  std::lock_guard wl(write_mu_);
  return LoadLocked(problems, as_writer);
}

// REQUIRES: write_mu_ held.
Status Shard::LoadLocked(std::vector<std::string>* problems, bool writer) {
  const Config& cfg = ctx_->cfg;
  // Hints from the control region: where the last writer's acknowledged data ended.
  uint64_t hint_entry = 0, hint_offset = 0, hint_base = kNotSealed;
  bool hinted = false;
  if (ctx_->control) {
    if (ctx_->read_only) {
      slot_ = ctx_->control->Find(prefix_id_, shard_);
    } else {
      Result<ShardSlot*> s = ctx_->control->Acquire(prefix_id_, shard_);
      if (!s.ok()) return Status(s.status().code(), name_ + ": " + s.status().message());
      slot_ = *s;
    }
    if (slot_ && (!writer || !ctx_->control->fresh())) {
      hint_entry = slot_->committed_entry.load(std::memory_order_acquire);
      hint_offset = slot_->committed_offset.load(std::memory_order_acquire);
      hint_base = slot_->active_base.load(std::memory_order_acquire);
      hinted = hint_entry > 0 || hint_offset > 0;
    }
  }

  // Processes that may write create the shard's directory now, so that others discover the
  // stream as soon as it is registered.
  if (!ctx_->read_only) {
    if (Status st = EnsureDir(); !st.ok()) return st;
  }
  std::vector<std::shared_ptr<Segment>> segs;
  if (Status st = LoadSegments(&segs, problems, writer); !st.ok()) return st;

  // A crash between creating a segment for a batch and publishing the batch leaves an empty
  // last segment whose base counts entries that were never written: drop it, so numbering goes
  // on from the data (the acknowledged-number rule below still applies).
  if (writer && segs.size() > 1 && !segs.back()->header().sealed &&
      !(hinted && hint_entry > segs.back()->base())) {
    Segment& last = *segs.back();
    ScanHints probe;
    probe.fill_index = false;
    if (!last.CheckRecord(kSegmentHeaderSize, last.map_len()) &&
        last.Scan(last.map_len(), probe).count == 0) {
      problems->push_back("segment " + last.rel() + ": empty segment of an unfinished batch removed");
      (void)env::Unlink(last.path());
      segs.pop_back();
    }
  }

  uint64_t next = hinted && segs.empty() ? hint_entry : 0;
  std::shared_ptr<Segment> active;
  uint64_t write_off = 0;
  for (size_t i = 0; i < segs.size(); i++) {
    Segment& s = *segs[i];
    const bool last = i + 1 == segs.size();
    const std::string idx = SegmentPath(s.base(), "idx");
    if (s.header().sealed && s.header().sealed_end <= s.map_len() &&
        s.header().sealed_end >= kSegmentHeaderSize) {
      s.MarkSealed(s.header().sealed_count, s.header().sealed_end);
      if (s.LoadIndexFile(idx)) s.set_state(Segment::kUntrusted);
    } else if (!last && s.LoadIndexFile(idx)) {
      s.set_state(Segment::kUntrusted);
    } else if (!last) {
      ScanResult r = s.Scan(s.map_len(), ScanHints{});
      for (auto& p : r.problems) problems->push_back(p);
      CountCorrupt(r.bad.size());
      s.MarkSealed(r.count, r.end);
      s.AdoptScan(&r);
    } else {
      // The active segment of the last writer: recover its tail.
      ScanHints hints;
      if (hinted && hint_base == s.base() && hint_entry > s.base()) {
        hints.acknowledged_end = hint_offset;
      }
      // A follower reads only what it can prove is inside the file: the writer may seal and
      // truncate this segment at any moment.
      ScanResult r = s.Scan(writer ? s.map_len() : FollowerLimit(s), hints);
      for (auto& p : r.problems) problems->push_back(p);
      CountCorrupt(r.bad.size());
      s.AdoptScan(&r);
      if (r.torn) {
        torn_.fetch_add(1, std::memory_order_relaxed);
        if (writer) ctx_->control->header()->torn_tails.fetch_add(1);
        problems->push_back("segment " + s.rel() + ": torn record at offset " +
                            std::to_string(r.torn_at) + " (entry " +
                            std::to_string(s.base() + r.count) +
                            ", never acknowledged) removed");
      }
      if (!writer) {
        s.set_data_end(r.end);
        next = s.base() + r.count;
        active = segs[i];
        write_off = r.end;
        continue;
      }
      // A damaged segment is sealed as it is, so its damage map never changes under readers;
      // appends go on in a new segment.
      if (r.bad.empty() && r.end <= cfg.storage.max_segment_bytes) {
        Status st = s.PrepareForAppend(r.end, cfg.storage.max_segment_bytes,
                                       cfg.storage.prefault_bytes);
        if (st.ok()) {
          active = segs[i];
          write_off = r.end;
          next = s.base() + r.count;
          continue;
        }
        problems->push_back("segment " + s.rel() + ": cannot reopen for appending (" +
                            st.message() + "); sealed, appends go to a new segment");
      }
      (void)env::Truncate(s.fd(), r.end, s.path());
      s.Seal(r.count, r.end);
    }
    next = s.base() + s.sealed_count();
  }

  // Gaps between segments; overlaps are corruption (the later header wins).
  std::vector<std::pair<uint64_t, uint64_t>> gaps;
  for (size_t i = 0; i + 1 < segs.size(); i++) {
    uint64_t end = segs[i]->base() + segs[i]->sealed_count();
    uint64_t nb = segs[i + 1]->base();
    if (end < nb) {
      gaps.emplace_back(end, nb);
      problems->push_back(name_ + ": entries " + std::to_string(end) + ".." +
                          std::to_string(nb - 1) + " are missing (no segment holds them)");
      if (writer) ctx_->control->header()->gaps.fetch_add(1);
    } else if (end > nb) {
      problems->push_back(name_ + ": segment " + segs[i]->rel() + " overlaps " +
                          segs[i + 1]->rel() + "; entries from " + std::to_string(nb) +
                          " are read from the later one");
      segs[i]->MarkSealed(nb - segs[i]->base(), segs[i]->data_end());
    }
  }
  // The control region remembers more acknowledged entries than the segments hold (the newest
  // segment file is gone): never hand those numbers out again.
  if (writer && hinted && hint_entry > next) {
    problems->push_back(name_ + ": entries " + std::to_string(next) + ".." +
                        std::to_string(hint_entry - 1) +
                        " were acknowledged but no segment holds them; numbering continues at " +
                        std::to_string(hint_entry));
    ctx_->control->header()->gaps.fetch_add(1);
    if (active) {
      (void)env::Truncate(active->fd(), write_off, active->path());
      active->Seal(next - active->base(), write_off);
      active.reset();
    }
    gaps.emplace_back(next, hint_entry);
    next = hint_entry;
  }

  {
    std::unique_lock lk(list_mu_);
    segments_ = std::move(segs);
    gaps_ = std::move(gaps);
  }
  next_entry_ = next;
  active_ = active;
  write_off_ = write_off;
  if (active_) {
    const uint32_t interval = cfg.index.interval;
    until_node_ = static_cast<uint32_t>((interval - (next - active_->base()) % interval) % interval);
  }
  if (!writer) {
    active_.reset();
    if (slot_ && (!ctx_->read_only || ctx_->writer_live)) {
      committed_ = &slot_->committed_entry;
    } else {
      local_committed_.store(next, std::memory_order_release);
      committed_ = &local_committed_;
    }
    return Status::Ok();
  }
  if (active_) {
    if (cfg.sync.mode != SyncMode::kNone) {
      if (Status st = env::DataSync(active_->fd(), active_->path()); !st.ok()) return st;
    }
    sync_active_ = active_;
  }
  synced_ = next;
  slot_->committed_offset.store(write_off_, std::memory_order_relaxed);
  slot_->active_base.store(active_ ? active_->base() : next, std::memory_order_relaxed);
  slot_->synced_entry.store(next, std::memory_order_relaxed);
  slot_->committed_entry.store(next, std::memory_order_release);
  committed_ = &slot_->committed_entry;
  writer_.store(true, std::memory_order_release);
  return Status::Ok();
}

uint64_t Shard::ReadLimit(Segment& s) {
  if (s.sealed()) return s.data_end();
  return writer_.load(std::memory_order_acquire) ? s.map_len() : FollowerLimit(s);
}

uint64_t Shard::FollowerLimit(Segment& s) {
  if (s.RefreshSeal()) return s.data_end();
  if (slot_) {
    uint64_t base = slot_->active_base.load(std::memory_order_acquire);
    uint64_t off = slot_->committed_offset.load(std::memory_order_acquire);
    // Sealed meanwhile: the offset may already be the next segment's.
    if (s.RefreshSeal()) return s.data_end();
    if (base == s.base()) return std::min<uint64_t>(off, s.map_len());
    return kSegmentHeaderSize;  // being sealed right now: nothing is provably readable yet
  }
  // No control region (read-only, damaged): only a dead writer leaves unsealed segments then.
  return s.map_len();
}

// Read-only clients following a live writer: pick up segments created since Load.
Status Shard::Refresh() {
  std::vector<std::string> ignored;
  std::vector<std::shared_ptr<Segment>> found;
  if (Status st = LoadSegments(&found, &ignored, false); !st.ok()) return st;
  std::unique_lock lk(list_mu_);
  uint64_t last = segments_.empty() ? 0 : segments_.back()->base();
  for (auto& s : found) {
    if (!segments_.empty() && s->base() <= last) continue;
    if (s->header().sealed) s->MarkSealed(s->header().sealed_count, s->header().sealed_end);
    segments_.push_back(s);
  }
  return Status::Ok();
}

// ---- write path ------------------------------------------------------------------------------

Result<std::shared_ptr<Segment>> Shard::NewSegment(uint64_t base, uint64_t capacity) {
  const Config& cfg = ctx_->cfg;
  if (Status st = EnsureDir(); !st.ok()) return st;
  std::shared_ptr<Segment> seg;
  if (capacity == cfg.storage.max_segment_bytes) {
    std::lock_guard lk(spare_mu_);
    seg = std::move(spare_);
  }
  if (!seg) {
    const std::string tmp = TempName("fresh");
    Result<std::shared_ptr<Segment>> r =
        Segment::Create(env::Join(dir_, tmp), rel_dir_ + "/" + tmp,
                        cfg.index.interval, capacity, cfg.storage.prefault_bytes);
    if (!r.ok()) return Status(r.status().code(), name_ + ": new segment: " + r.status().message());
    seg = std::move(*r);
  }
  SegmentHeader h;
  h.prefix_id = prefix_id_;
  h.shard = shard_;
  h.prefix = prefix_;
  h.base_entry = base;
  h.created_ns = env::NowNs();
  if (Status st = seg->Activate(&h, SegmentPath(base, "seg"), SegmentRel(base, "seg")); !st.ok()) {
    (void)env::Unlink(seg->path());
    return st;
  }
  return seg;
}

// REQUIRES: write_mu_ held.
void Shard::Rotate(std::shared_ptr<Segment> next) {
  std::shared_ptr<Segment> old = active_;
  bool drop_old = false;
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

Status Shard::Append(std::span<const std::string_view> entries, EntryId* ids) {
  const Config& cfg = ctx_->cfg;
  if (ctx_->read_only) return Status::Invalid("client is read-only; cannot append to " + name_);
  if (!writer_.load(std::memory_order_acquire)) {
    return closed_ ? Status::Closed("client is closed; cannot append to " + name_) : NotOwner();
  }
  const size_t n = entries.size();
  if (n == 0) return Status::Ok();

  // Outside the lock: size checks, compression, CRCs.
  thread_local std::vector<PreparedRecord> recs;
  thread_local std::vector<std::string> bufs;
  recs.resize(n);
  const int64_t ts = env::NowNs();
  size_t used_bufs = 0;
  for (size_t i = 0; i < n; i++) {
    std::string_view e = entries[i];
    if (e.size() > cfg.storage.max_entry_bytes) {
      return Status::TooLarge(name_ + ": entry " + std::to_string(i) + " of the batch is " +
                              std::to_string(e.size()) + " bytes; storage.max_entry_bytes is " +
                              std::to_string(cfg.storage.max_entry_bytes));
    }
    const char* p = e.data();
    uint32_t sf = static_cast<uint32_t>(e.size());
    if (cfg.compression.min_bytes > 0 && e.size() >= cfg.compression.min_bytes) {
      if (bufs.size() <= used_bufs) bufs.emplace_back();
      if (Compress(e, cfg.compression.level, &bufs[used_bufs])) {
        p = bufs[used_bufs].data();
        sf = static_cast<uint32_t>(bufs[used_bufs].size()) | kFlagZstd;
        used_bufs++;
      }
    }
    recs[i] = PreparedRecord{p, sf, RecordCrc(p, sf, ts)};
  }

  std::unique_lock lk(write_mu_);
  if (closed_) return Status::Closed("client is closed; cannot append to " + name_);
  if (!writer_.load(std::memory_order_relaxed)) return NotOwner();

  // Plan the segments this batch needs, and get them all before writing anything, so that a
  // full disk fails the batch as a whole.
  thread_local std::vector<Plan> plan;
  thread_local std::vector<std::shared_ptr<Segment>> fresh;
  plan.clear();
  fresh.clear();
  {
    bool have = active_ != nullptr;
    uint64_t off = have ? write_off_ : 0, cap = have ? active_->capacity() : 0;
    for (size_t i = 0; i < n; i++) {
      uint64_t need = kRecordHeaderSize + (recs[i].size_flags & kSizeMask);
      if (!have || off + need > cap) {
        uint64_t c = std::max<uint64_t>(cfg.storage.max_segment_bytes, kSegmentHeaderSize + need);
        plan.push_back(Plan{c, next_entry_ + i});
        off = kSegmentHeaderSize;
        cap = c;
        have = true;
      }
      off += need;
    }
  }
  for (const Plan& p : plan) {
    const uint64_t t0 = Ticks();
    Result<std::shared_ptr<Segment>> s = NewSegment(p.base, p.capacity);
    ctx_->Record(kOpRotate, TicksToNs(Ticks() - t0));
    if (!s.ok()) {
      for (auto& f : fresh) (void)env::Unlink(f->path());
      fresh.clear();
      Bump(slot_->failed_appends, 1);
      return s.status();
    }
    fresh.push_back(std::move(*s));
  }

  const uint32_t interval = cfg.index.interval;
  size_t k = 0;
  uint64_t bytes = 0, stored = 0, compressed = 0;
  for (size_t i = 0; i < n; i++) {
    if (k < plan.size() && plan[k].base == next_entry_) Rotate(std::move(fresh[k++]));
    const PreparedRecord& r = recs[i];
    const uint32_t size = r.size_flags & kSizeMask;
    char* dst = active_->map() + write_off_;
    EncodeRecordHeader(dst, r.masked_crc, r.size_flags, ts);
    std::memcpy(dst + kRecordHeaderSize, r.payload, size);
    if (until_node_ == 0) {
      active_->index().Push(static_cast<uint32_t>(write_off_));
      until_node_ = interval;
    }
    until_node_--;
    if (ids) ids[i] = EntryId{prefix_id_, shard_, next_entry_};
    write_off_ += kRecordHeaderSize + size;
    next_entry_++;
    bytes += entries[i].size();
    stored += kRecordHeaderSize + size;
    compressed += (r.size_flags & kFlagZstd) ? 1 : 0;
  }
  fresh.clear();

  // Publish: committed_entry last, with release; readers acquire it. Recovery trusts
  // (active_base, committed_offset) only when committed_entry shows entries in that segment.
  slot_->active_base.store(active_->base(), std::memory_order_relaxed);
  slot_->committed_offset.store(write_off_, std::memory_order_relaxed);
  // seq_cst: the waiters load below must not pass this store (a parked reader increments
  // waiters, then re-reads committed_entry).
  slot_->committed_entry.store(next_entry_, std::memory_order_seq_cst);
  Bump(slot_->appended_entries, n);
  Bump(slot_->appended_bytes, bytes);
  Bump(slot_->stored_bytes, stored);
  if (compressed) Bump(slot_->compressed_entries, compressed);
  if (slot_->waiters.load(std::memory_order_relaxed) != 0) {
    slot_->futex_seq.fetch_add(1, std::memory_order_release);
    env::FutexWake(&slot_->futex_seq, INT32_MAX);
  }
  const uint64_t last = next_entry_;
  const bool want_prefault = cfg.storage.prefault_bytes > 0 &&
                             write_off_ + cfg.storage.prefault_bytes / 2 > active_->populated();
  lk.unlock();

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
      act_end &= ~uint64_t{4095};
      goal = std::min(goal, act->base() + EntriesBelow(act.get(), act_end, goal));
    }
    const uint64_t t0 = Ticks();
    Status st;
    for (auto& s : segs) {
      s->DropWrittenPages(s->data_end());
      if (st.ok()) st = env::SyncMapped(s->map(), s->data_end(), s->path());
    }
    if (st.ok() && act) {
      act->DropWrittenPages(act_end);
      st = env::SyncMapped(act->map(), act_end, act->path());
    }
    if (st.ok() && dirty) st = env::FsyncDir(dir_);
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
    (void)s->WriteIndexFile(SegmentPath(s->base(), "idx"));
  }
}

void Shard::Maintain() {
  if (ctx_->read_only || !writer_.load(std::memory_order_acquire)) return;
  const Config& cfg = ctx_->cfg;
  FinishSealed();

  std::shared_ptr<Segment> a;
  {
    std::lock_guard lk(write_mu_);
    a = active_;
  }
  prefault_asked_.store(false, std::memory_order_relaxed);
  if (!a || a->sealed()) return;
  uint64_t cur = slot_->active_base.load(std::memory_order_relaxed) == a->base()
                     ? slot_->committed_offset.load(std::memory_order_relaxed)
                     : kSegmentHeaderSize;
  // Pages behind the writer leave its mapping before the kernel writes them back.
  a->DropWrittenPages(cur);
  // Pre-fault ahead of the writer so that its stores never fault.
  if (cfg.storage.prefault_bytes > 0) {
    uint64_t target = std::min<uint64_t>(a->capacity(), cur + cfg.storage.prefault_bytes);
    uint64_t have = std::max<uint64_t>(a->populated(), cur);
    if (have < target && env::PopulateWrite(a->map(), have, target - have).ok()) {
      a->set_populated(target);
    }
  }
  // Past half of the active segment, prepare the next one off the hot path.
  if (cur > a->capacity() / 2 && a->capacity() == cfg.storage.max_segment_bytes) {
    bool need;
    {
      std::lock_guard lk(spare_mu_);
      need = spare_ == nullptr;
    }
    if (need && EnsureDir().ok()) {
      const std::string tmp = TempName("spare");
      Result<std::shared_ptr<Segment>> s =
          Segment::Create(env::Join(dir_, tmp), rel_dir_ + "/" + tmp,
                          cfg.index.interval, cfg.storage.max_segment_bytes,
                          cfg.storage.prefault_bytes);
      if (s.ok()) {
        std::lock_guard lk(spare_mu_);
        spare_ = std::move(*s);
      }
    }
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
  }
  {
    std::lock_guard lk(sync_mu_);
    sync_active_.reset();
    unsynced_.clear();
  }
  std::lock_guard sl(spare_mu_);
  if (spare_) {
    (void)env::Unlink(spare_->path());
    spare_.reset();
  }
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
  spare_.reset();
  to_finish_.clear();
  unsynced_.clear();
  sync_active_.reset();
  sync_leader_ = false;
}

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
  if (announced) slot_->waiters.fetch_add(1, std::memory_order_seq_cst);
  Status st;
  for (;;) {
    uint32_t seq = slot_->futex_seq.load(std::memory_order_seq_cst);
    if (Committed() > e) break;
    int64_t wait = announced ? 10'000'000 : 1'000'000;  // re-check now and then regardless
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
  return st;
}

// ---- read path -------------------------------------------------------------------------------

Status Shard::Locate(uint64_t e, std::shared_ptr<Segment>* seg, uint64_t* resume) {
  for (int attempt = 0;; attempt++) {
    // A follower's list may predate segments its writer created since: look once more.
    const bool follower = !writer_.load(std::memory_order_acquire);
    bool look_again = false;
    {
      std::shared_lock lk(list_mu_);
      auto it = std::upper_bound(segments_.begin(), segments_.end(), e,
                                 [](uint64_t v, const std::shared_ptr<Segment>& s) {
                                   return v < s->base();
                                 });
      if (it == segments_.begin()) {
        if (!(follower && attempt == 0)) {
          if (resume) *resume = segments_.empty() ? Committed() : segments_.front()->base();
          return Status::NotFound(name_ + ": entry " + std::to_string(e) +
                                  " is before the first stored entry");
        }
        look_again = true;
      } else {
        const std::shared_ptr<Segment>& s = *(it - 1);
        if (follower) s->RefreshSeal();
        const uint64_t count = s->sealed_count();
        if (count == kNotSealed || e < s->base() + count) {
          *seg = s;
          return Status::Ok();
        }
        if (it != segments_.end()) {
          if (resume) *resume = (*it)->base();
          return Status::NotFound(name_ + ": entry " + std::to_string(e) +
                                  " is in a gap: entries " + std::to_string(s->base() + count) +
                                  ".." + std::to_string((*it)->base() - 1) +
                                  " are missing (their segment file is gone)");
        }
        look_again = follower && attempt == 0;
      }
    }
    if (!look_again) break;
    if (Status st = Refresh(); !st.ok()) return st;
  }
  if (resume) *resume = e;
  return Status::NotFound(name_ + ": entry " + std::to_string(e) + " does not exist yet");
}

Status Shard::EnsureReady(const std::shared_ptr<Segment>& seg) {
  if (seg->state() != Segment::kUnindexed) return Status::Ok();
  std::lock_guard lk(seg->scan_mutex());
  if (seg->state() != Segment::kUnindexed) return Status::Ok();
  ScanHints hints;
  uint64_t limit = seg->map_len();
  if (seg->sealed()) {
    hints.expected_count = seg->sealed_count();
    limit = seg->data_end();
  } else if (slot_ && slot_->active_base.load(std::memory_order_acquire) == seg->base()) {
    hints.acknowledged_end = slot_->committed_offset.load(std::memory_order_acquire);
  }
  ScanResult r = seg->Scan(limit, hints);
  CountCorrupt(r.bad.size());
  seg->AdoptScan(&r);
  return Status::Ok();
}

Status Shard::ScanFully(const std::shared_ptr<Segment>& seg) {
  std::lock_guard lk(seg->scan_mutex());
  if (seg->state() == Segment::kTrusted) return Status::Ok();
  ScanHints hints;
  uint64_t limit = seg->map_len();
  if (seg->sealed()) {
    hints.expected_count = seg->sealed_count();
    limit = seg->data_end();
  }
  ScanResult r = seg->Scan(limit, hints);
  CountCorrupt(r.bad.size());
  seg->AdoptScan(&r);
  return Status::Ok();
}

Status Shard::ReadAt(const std::shared_ptr<Segment>& seg, uint64_t e, uint64_t* off, Entry* out) {
  if (Status st = EnsureReady(seg); !st.ok()) return st;
  for (int attempt = 0; attempt < 2; attempt++) {
    const Segment::State state = seg->state();
    auto where = [&](uint64_t o) {
      return name_ + ": entry " + std::to_string(e) + " at offset " + std::to_string(o) +
             " of segment " + seg->rel();
    };
    if (state == Segment::kTrusted && seg->IsBad(e)) {
      *off = Segment::kBadOffset;
      return Status::Corrupt(name_ + ": entry " + std::to_string(e) + " in segment " + seg->rel() +
                             " failed its CRC; it is not returned");
    }
    uint64_t o = (*off != Segment::kBadOffset && !seg->damaged()) ? *off : seg->OffsetOf(e);
    const uint64_t limit = ReadLimit(*seg);
    const bool check = state != Segment::kTrusted || ctx_->read_only;
    bool good = o != Segment::kBadOffset &&
                (check ? seg->CheckRecord(o, limit) : o + kRecordHeaderSize <= limit);
    if (!good) {
      *off = Segment::kBadOffset;
      if (state != Segment::kTrusted) {
        (void)ScanFully(seg);
        continue;
      }
      CountCorrupt(1);
      return Status::Corrupt(where(o) + " fails its CRC; it is not returned");
    }
    const char* p = seg->rmap() + o;
    const uint32_t sf = load32(p + rec::kSizeFlags);
    const uint32_t size = sf & kSizeMask;
    out->id = EntryId{prefix_id_, shard_, e};
    out->timestamp_ns = static_cast<int64_t>(load64(p + rec::kTimestamp));
    out->stored_size = size;
    out->compressed = (sf & kFlagZstd) != 0;
    out->segment_ = seg;
    if (out->compressed) {
      Status st = Decompress(p + kRecordHeaderSize, size, kMaxStoredSize, &out->buffer_, where(o));
      if (!st.ok()) {
        *off = o + kRecordHeaderSize + size;
        out->data = {};
        return st;
      }
      out->data = out->buffer_;
    } else {
      out->data = std::string_view(p + kRecordHeaderSize, size);
    }
    *off = o + kRecordHeaderSize + size;
    return Status::Ok();
  }
  return Status::Corrupt(name_ + ": entry " + std::to_string(e) + " in segment " + seg->rel() +
                         " cannot be located");
}

Status Shard::Read(uint64_t e, Entry* out) {
  uint64_t c = Committed();
  if (e >= c) {
    return Status::NotFound(name_ + ": entry " + std::to_string(e) +
                            " does not exist (next entry is " + std::to_string(c) + ")");
  }
  std::shared_ptr<Segment> seg;
  if (Status st = Locate(e, &seg, nullptr); !st.ok()) return st;
  uint64_t off = Segment::kBadOffset;
  return ReadAt(seg, e, &off, out);
}

// ---- inspection ------------------------------------------------------------------------------

Status Shard::Inspect(StreamInfo* info) {
  info->name = name_;
  const uint64_t c = Committed();
  info->next_entry = c;
  if (!writer_.load(std::memory_order_acquire)) (void)Refresh();
  std::shared_lock lk(list_mu_);
  info->first = EntryId{prefix_id_, shard_, segments_.empty() ? c : segments_.front()->base()};
  for (const auto& s : segments_) {
    if (!writer_.load(std::memory_order_acquire)) s->RefreshSeal();
    SegmentInfo si;
    si.file = s->rel();
    si.base_entry = s->base();
    si.created_ns = s->header().created_ns;
    si.sealed = s->sealed();
    if (si.sealed) {
      si.entries = s->sealed_count();
      si.bytes = s->data_end() - kSegmentHeaderSize;
    } else {
      si.entries = c > s->base() ? c - s->base() : 0;
      uint64_t end = slot_ && slot_->active_base.load(std::memory_order_relaxed) == s->base()
                         ? slot_->committed_offset.load(std::memory_order_relaxed)
                         : s->data_end();
      si.bytes = end > kSegmentHeaderSize ? end - kSegmentHeaderSize : 0;
    }
    info->segments.push_back(si);
  }
  info->gaps = gaps_;
  info->corrupt_records = corrupt_.load(std::memory_order_relaxed);
  return Status::Ok();
}

uint64_t Shard::Verify(std::vector<std::string>* problems) {
  // The committed count first: a writer seals a segment before it publishes any entry of the
  // next, so every unsealed segment seen after this load holds entries below c only.
  const uint64_t c = Committed();
  if (!writer_.load(std::memory_order_acquire)) (void)Refresh();
  std::vector<std::shared_ptr<Segment>> segs;
  {
    std::shared_lock lk(list_mu_);
    segs = segments_;
  }
  uint64_t bad = 0;
  for (auto& s : segs) {
    if (!writer_.load(std::memory_order_acquire)) s->RefreshSeal();
    (void)EnsureReady(s);
    ScanHints hints;
    uint64_t limit;
    if (s->sealed()) {
      hints.expected_count = s->sealed_count();
      limit = s->data_end();
    } else {
      hints.expected_count = c > s->base() ? c - s->base() : 0;
      limit = s->map_len();
    }
    ScanResult r = s->Scan(limit, hints);
    if (r.count < hints.expected_count) {
      problems->push_back("segment " + s->rel() + ": holds " + std::to_string(r.count) +
                          " readable entries, " + std::to_string(hints.expected_count) +
                          " expected");
      bad += hints.expected_count - r.count;
    }
    for (auto& p : r.problems) problems->push_back(p);
    bad += r.bad.size();
  }
  return bad;
}

void Shard::AddStats(Stats* s) const {
  s->streams++;
  {
    std::shared_lock lk(list_mu_);
    s->segments += segments_.size();
  }
  s->corrupt_records += corrupt_.load(std::memory_order_relaxed);
  s->torn_tails += torn_.load(std::memory_order_relaxed);
  if (!slot_) return;
  s->appended_entries += slot_->appended_entries.load(std::memory_order_relaxed);
  s->appended_bytes += slot_->appended_bytes.load(std::memory_order_relaxed);
  s->stored_bytes += slot_->stored_bytes.load(std::memory_order_relaxed);
  s->compressed_entries += slot_->compressed_entries.load(std::memory_order_relaxed);
  s->rotations += slot_->rotations.load(std::memory_order_relaxed);
  s->syncs += slot_->syncs.load(std::memory_order_relaxed);
  s->failed_appends += slot_->failed_appends.load(std::memory_order_relaxed);
}

}  // namespace comet::internal
