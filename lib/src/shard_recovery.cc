// Shard loading: what a writer recovers (torn tails, damage, lost caches) and what a follower
// reads without touching anything.
#include "shard.h"

#include <algorithm>
#include <cstring>

#include "control.h"
#include "env.h"
#include "probes.h"
#include "text.h"

namespace comet::internal {

using namespace format;

namespace {

bool ParseSegmentName(const std::string& name, uint64_t* base) {
  return name.size() == 20 && name.compare(16, 4, ".seg") == 0 &&
         text::ParseUpperHex(std::string_view(name).substr(0, 16), 16, base);
}

}  // namespace

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
    } else if (writable && n.ends_with(".tmp")) {
      // An unfinished segment, spare or index file (<base>.idx.tmp) left by a crash: only this
      // shard's writer creates files here, and it is this process now.
      (void)env::Unlink(env::Join(dir_, n));
    }
  }
  std::sort(files.begin(), files.end());
  for (auto& [base, n] : files) {
    std::string path = env::Join(dir_, n), rel = rel_dir_ + "/" + n;
    Result<std::shared_ptr<Segment>> s =
        Segment::Open(path, rel, ctx_->cfg.index.interval, writable, base);
    if (!s.ok()) {
      if (s.status().code() == Code::kVersion) return s.status();
      problems->push_back(s.status().message() + "; its entries are unreadable");
      CountCorrupt(1);
      continue;
    }
    if (!(*s)->header_error().empty()) {
      segs->push_back(std::move(*s));  // its entries are counted and reported by the caller
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

// Entries of a segment whose header is damaged: up to the next segment's base, or for the last
// one, up to the committed end the control region remembers, or else the records still found
// in it. Numbers past them are never handed out again.
uint64_t Shard::DamagedCount(const std::vector<std::shared_ptr<Segment>>& segs, size_t i,
                             uint64_t committed) {
  Segment& s = *segs[i];
  if (i + 1 < segs.size()) return segs[i + 1]->base() - s.base();
  uint64_t count = committed > s.base() ? committed - s.base() : 0;
  if (s.map_len() >= kSegmentHeaderSize) {
    ScanHints probe;
    probe.fill_index = false;
    count = std::max(count, s.Scan(s.map_len(), probe).count);
  }
  return count;
}

// A damaged last segment that provably holds no entry gives its file name to the next segment:
// its bytes are kept under another name for a post-mortem.
void Shard::SetAside(Segment& s, std::vector<std::string>* problems) {
  const std::string to = s.path() + ".damaged";
  if (env::Rename(s.path(), to).ok()) {
    problems->push_back("segment " + s.rel() + " moved aside to " + s.rel() + ".damaged");
  }
}

std::string EntryRange(uint64_t from, uint64_t count) {
  if (count == 0) return "no entries";
  return "entries " + std::to_string(from) + ".." + std::to_string(from + count - 1);
}

Status Shard::Load(std::vector<std::string>* problems, bool as_writer) {
  std::lock_guard wl(write_mu_);
  if (as_writer) COMET_PROBE(recovery_start, prefix_id_, shard_, 0, 0);
  Status st = LoadLocked(problems, as_writer);
  if (as_writer) COMET_PROBE(recovery_done, prefix_id_, shard_, next_entry_, 0, st.raw());
  return st;
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
  if (writer && segs.size() > 1 && segs.back()->header_error().empty() &&
      !segs.back()->header().sealed &&
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
    if (!s.header_error().empty()) {
      const uint64_t count = DamagedCount(segs, i, hinted ? hint_entry : 0);
      s.MarkSealed(count, s.map_len());
      problems->push_back(s.header_error() + "; " + EntryRange(s.base(), count) + " unreadable");
      CountCorrupt(count);
      if (writer && last && count == 0) SetAside(s, problems);
      next = s.base() + count;
      continue;
    }
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
  if (s.SealVisible()) return s.data_end();
  if (slot_) {
    uint64_t base = slot_->active_base.load(std::memory_order_acquire);
    uint64_t off = slot_->committed_offset.load(std::memory_order_acquire);
    // Sealed meanwhile: the offset may already be the next segment's.
    if (s.SealVisible()) return s.data_end();
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

}  // namespace comet::internal
