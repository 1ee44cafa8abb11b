// Shard loading: what a writer recovers (torn tails, damage, lost caches) and what a follower
// reads without touching anything.
#include "shard.h"

#include <algorithm>
#include <optional>
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
      if (s.status().IsNotFound()) continue;  // deleted since listed (retention, recovery)
      // The system refused (damage is not an error here: Open returns the segment with its
      // header_error). Going on without the file would renumber its entries and, for the last
      // one, hand their numbers out again: the load fails instead, and changes nothing.
      return s.status();
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

// A crash in the middle of an append leaves the first records of a batch that was never
// acknowledged (kFlagBatchMore on its last record), and maybe segments made for it, written or
// not: the batch goes whole, so numbering stays dense. Entries below `acked` were acknowledged:
// what is missing after them is damage, left to the scans to report. A writer removes the
// files (or re-seals a segment sealed mid-batch); a reader only leaves them out. Returns the
// byte limit of the last segment's data (kNotSealed: its end).
uint64_t Shard::DropUnfinishedBatch(std::vector<std::shared_ptr<Segment>>* segs,
                                    const Published& pub, bool writer,
                                    std::vector<std::string>* problems,
                                    std::optional<ScanResult>* tail_scan) {
  while (!segs->empty()) {
    Segment& s = *segs->back();
    if (!s.header_error().empty() || s.header().major < 2) break;
    const bool sealed = s.header().sealed && s.header().sealed_end <= s.map_len();
    ScanHints hints = pub.For(s);
    hints.fill_index = !sealed;
    if (sealed) hints.expected_count = s.header().sealed_count;
    ScanResult r = s.Scan(sealed ? s.header().sealed_end : RecoveryLimit(s, writer), hints);
    const bool whole = r.batch_count == r.count && !(r.count == 0 && segs->size() > 1);
    if (whole || s.base() + r.batch_count < pub.acked()) {
      if (!sealed) *tail_scan = std::move(r);  // the recovery of the active segment reuses it
      break;
    }
    const std::string what = "segment " + s.rel() + ": " +
                             EntryRange(s.base() + r.batch_count, r.count - r.batch_count);
    if (r.batch_count == 0 && segs->size() > 1) {
      problems->push_back(what + " of a batch cut short by a crash removed with the segment");
      if (writer) {
        (void)env::Unlink(s.path());
        (void)env::Unlink(SegmentPath(s.base(), "idx"));
      }
      segs->pop_back();
      continue;
    }
    problems->push_back(what + " of a batch cut short by a crash removed");
    if (!sealed) {
      s.index().Clear();  // nodes of the dropped records; the segment is scanned again
      return r.batch_end;
    }
    if (writer) (void)env::Unlink(SegmentPath(s.base(), "idx"));
    s.CutSeal(r.batch_count, r.batch_end, writer);
    break;
  }
  return kNotSealed;
}

// Scan hints for segment s: where the last writer's acknowledged data ended, if in s.
ScanHints Shard::Published::For(const Segment& s) const {
  ScanHints h;
  if (known && base == s.base() && entry > s.base()) {
    h.acknowledged_end = offset;
    h.acknowledged_count = entry - s.base();
  }
  return h;
}

// How far recovery reads the active segment: a writer, all of it; a follower only what it can
// prove is inside the file (the writer may seal and truncate the segment at any moment).
uint64_t Shard::RecoveryLimit(Segment& s, bool writer) {
  return writer ? s.map_len() : FollowerLimit(s);
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
  Published pub;
  if (Status st = AttachSlot(writer, &pub); !st.ok()) return st;
  // Processes that may write create the shard's directory now, so that others discover the
  // stream as soon as it is registered.
  if (!ctx_->read_only) {
    if (Status st = EnsureDir(); !st.ok()) return st;
  }
  std::vector<std::shared_ptr<Segment>> segs;
  if (Status st = LoadSegments(&segs, problems, writer); !st.ok()) return st;
  // A follower of a live writer lists only segments that hold a committed entry, and adopts a
  // seal only once every entry it counts is committed (see Refresh and RefreshSeal).
  const bool follows_writer = !writer && slot_ && (!ctx_->read_only || ctx_->writer_live);
  if (follows_writer) {
    std::erase_if(segs, [&](const auto& s) { return s->base() >= pub.entry; });
  }
  Loaded loaded = CheckSegments(&segs, pub, writer, follows_writer, problems);
  std::vector<std::pair<uint64_t, uint64_t>> gaps = FindGaps(segs, writer, problems);
  KeepAcknowledgedNumbers(pub, writer, &loaded, &gaps, problems);
  Install(std::move(segs), std::move(gaps), std::move(loaded), writer);
  if (!writer) {
    Follow();
    return Status::Ok();
  }
  return StartWriting(problems);
}

// Finds or takes this shard's slot in the control region, and reads from it the hints of where
// the last writer's acknowledged data ended.
Status Shard::AttachSlot(bool writer, Published* pub) {
  if (!ctx_->control) return Status::Ok();
  if (ctx_->read_only) {
    slot_ = ctx_->control->Find(prefix_id_, shard_);
  } else {
    Result<ShardSlot*> s = ctx_->control->Acquire(prefix_id_, shard_);
    if (!s.ok()) return Status(s.status().code(), name_ + ": " + s.status().message());
    slot_ = *s;
  }
  if (slot_ && (!writer || !ctx_->control->fresh())) {
    pub->entry = slot_->committed_entry.load(std::memory_order_acquire);
    pub->offset = slot_->committed_offset.load(std::memory_order_acquire);
    pub->base = slot_->active_base.load(std::memory_order_acquire);
    pub->known = pub->entry > 0 || pub->offset > 0;
  }
  return Status::Ok();
}

// Whoever recovers (a writer, or a reader with no writer live) sees no batch cut short, and no
// entry number handed out twice.
bool Shard::Recovers(bool writer) const {
  return writer || (ctx_->read_only && !ctx_->writer_live);
}

// Takes each listed segment for what it is: damaged, sealed, or the last writer's active one,
// whose tail is recovered.
Shard::Loaded Shard::CheckSegments(std::vector<std::shared_ptr<Segment>>* segs,
                                   const Published& pub, bool writer, bool follows_writer,
                                   std::vector<std::string>* problems) {
  uint64_t tail_limit = kNotSealed;
  std::optional<ScanResult> tail_scan;
  if (Recovers(writer)) tail_limit = DropUnfinishedBatch(segs, pub, writer, problems, &tail_scan);
  Loaded loaded;
  for (size_t i = 0; i < segs->size(); i++) {
    Segment& s = *(*segs)[i];
    const bool last = i + 1 == segs->size();
    if (!s.header_error().empty()) {
      loaded.next = LoadDamaged(*segs, i, pub, writer && last, problems);
      continue;
    }
    const bool sealed = s.header().sealed && s.header().sealed_end <= s.map_len() &&
                        s.header().sealed_end >= kSegmentHeaderSize &&
                        (!follows_writer || s.SealCommitted(s.header().sealed_count, pub.entry));
    if (sealed || !last) {
      LoadSealed(s, sealed, problems);
    } else {
      ScanResult r = tail_scan ? std::move(*tail_scan)
                               : s.Scan(std::min(RecoveryLimit(s, writer), tail_limit), pub.For(s));
      if (RecoverTail((*segs)[i], &r, writer, problems, &loaded)) continue;
    }
    loaded.next = s.base() + s.sealed_count();
  }
  return loaded;
}

// A segment whose header is unreadable: sealed over the entries it must have held, all counted
// as corrupt. An empty one at the end is set aside by a writer. Returns the next entry number.
uint64_t Shard::LoadDamaged(const std::vector<std::shared_ptr<Segment>>& segs, size_t i,
                            const Published& pub, bool set_aside_if_empty,
                            std::vector<std::string>* problems) {
  Segment& s = *segs[i];
  const uint64_t count = DamagedCount(segs, i, pub.acked());
  s.MarkSealed(count, s.map_len());
  problems->push_back(s.header_error() + "; " + EntryRange(s.base(), count) + " unreadable");
  CountCorrupt(count);
  if (set_aside_if_empty && count == 0) SetAside(s, problems);
  return s.base() + count;
}

// A segment no longer written: sealed as its header says (when `sealed_header`), else as far as
// its index file or a scan finds records.
void Shard::LoadSealed(Segment& s, bool sealed_header, std::vector<std::string>* problems) {
  const std::string idx = SegmentPath(s.base(), "idx");
  if (sealed_header) s.MarkSealed(s.header().sealed_count, s.header().sealed_end);
  if (s.LoadIndexFile(idx)) {
    s.set_state(Segment::kUntrusted);
    return;
  }
  if (sealed_header) return;
  ScanResult r = s.Scan(s.map_len(), ScanHints{});
  for (auto& p : r.problems) problems->push_back(p);
  CountCorrupt(r.bad.size());
  s.MarkSealed(r.count, r.end);
  s.AdoptScan(&r);
}

// The active segment of the last writer, scanned as `r`: its tail is recovered. Returns true
// when it stays active (in `loaded`), false when it is sealed as it is.
bool Shard::RecoverTail(const std::shared_ptr<Segment>& seg, ScanResult* r, bool writer,
                        std::vector<std::string>* problems, Loaded* loaded) {
  Segment& s = *seg;
  for (auto& p : r->problems) problems->push_back(p);
  CountCorrupt(r->bad.size());
  s.AdoptScan(r);
  if (r->torn) {
    torn_.fetch_add(1, std::memory_order_relaxed);
    if (writer) ctx_->control->header()->torn_tails.fetch_add(1);
    problems->push_back("segment " + s.rel() + ": torn record at offset " +
                        std::to_string(r->torn_at) + " (entry " +
                        std::to_string(s.base() + r->count) + ", never acknowledged) removed");
  }
  if (!writer) s.set_data_end(r->end);
  // A writer seals a damaged segment as it is, so its damage map never changes under readers,
  // and so one of an older format version: appends go on in a new segment. Any other stays
  // active, to be extended for appending by StartWriting or on its first append.
  if (writer && (!r->bad.empty() || r->end > ctx_->cfg.storage.max_segment_bytes ||
                 s.header().major != kFormatMajor)) {
    s.SealAt(r->count, r->end);
    return false;
  }
  loaded->active = seg;
  loaded->write_off = r->end;
  loaded->next = s.base() + r->count;
  return true;
}

// Gaps between segments; overlaps are corruption (the later header wins).
std::vector<std::pair<uint64_t, uint64_t>> Shard::FindGaps(
    const std::vector<std::shared_ptr<Segment>>& segs, bool writer,
    std::vector<std::string>* problems) {
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
  return gaps;
}

// The control region remembers more acknowledged entries than the segments hold (the newest
// segment files are gone): they are a reported gap, and their numbers are never handed out
// again. A reader sees the same when no writer is live (a live one has seen it already).
void Shard::KeepAcknowledgedNumbers(const Published& pub, bool writer, Loaded* loaded,
                                    std::vector<std::pair<uint64_t, uint64_t>>* gaps,
                                    std::vector<std::string>* problems) {
  const uint64_t next = loaded->next;
  if (!pub.known || pub.entry <= next || !Recovers(writer)) return;
  problems->push_back(name_ + ": entries " + std::to_string(next) + ".." +
                      std::to_string(pub.entry - 1) +
                      " were acknowledged but no segment holds them; numbering continues at " +
                      std::to_string(pub.entry));
  if (writer) ctx_->control->header()->gaps.fetch_add(1);
  if (writer && loaded->active) {
    loaded->active->SealAt(next - loaded->active->base(), loaded->write_off);
    loaded->active.reset();
  }
  gaps->emplace_back(next, pub.entry);
  loaded->next = pub.entry;
}

// Makes what the load found the shard's state.
void Shard::Install(std::vector<std::shared_ptr<Segment>> segs,
                    std::vector<std::pair<uint64_t, uint64_t>> gaps, Loaded loaded, bool writer) {
  {
    std::unique_lock lk(list_mu_);
    segments_ = std::move(segs);
    gaps_ = std::move(gaps);
  }
  next_entry_ = loaded.next;
  active_ = std::move(loaded.active);
  active_room_ = 0;
  write_off_ = loaded.write_off;
  resume_pending_ = writer && active_ && !active_->sealed();
  if (active_) {
    const uint32_t interval = ctx_->cfg.index.interval;
    until_node_ =
        static_cast<uint32_t>((interval - (next_entry_ - active_->base()) % interval) % interval);
  }
}

// A follower reads what the writer publishes. A read-only client that found no writer live
// recovered the entries itself: it reads those, and follows a writer that arrives later.
void Shard::Follow() {
  active_.reset();
  local_committed_.store(next_entry_, std::memory_order_release);
  floor_ = ctx_->read_only && !ctx_->writer_live ? next_entry_ : 0;
  committed_ = slot_ ? &slot_->committed_entry : &local_committed_;
}

// The writer takes over from the load: the active segment ready, what recovery kept durable,
// and the control region's publication and sync state reset to it.
Status Shard::StartWriting(std::vector<std::string>* problems) {
  const Config& cfg = ctx_->cfg;
  const uint64_t next = next_entry_;
  // A cleanly closed segment ends at its data and is extended on its first append, so that
  // opening a directory of idle streams reserves, maps and pre-faults nothing. A crash left the
  // room in place (and perhaps a torn tail past the data): that one is extended now.
  if (resume_pending_ && active_->map_len() != write_off_) {
    if (Status st = ResumeActive(); !st.ok()) problems->push_back(st.message());
  }
  // What recovery kept is made durable before it counts as synced, unless the control region
  // already says it is (a cleanly closed segment, unchanged since: no fdatasync per idle stream).
  const bool durable = resume_pending_ && !ctx_->control->fresh() &&
                       slot_->synced_entry.load(std::memory_order_relaxed) >= next;
  if (active_) {
    if (cfg.sync.mode != SyncMode::kNone && !durable) {
      if (Status st = env::DataSync(active_->fd(), active_->path()); !st.ok()) return st;
    }
    sync_active_ = active_;
  }
  synced_ = next;
  last_sync_mono_ = env::MonotonicNs();  // the interval runs from load, not from boot
  slot_->committed_offset.store(write_off_, std::memory_order_release);  // see Append
  slot_->active_base.store(active_ ? active_->base() : next, std::memory_order_release);
  slot_->synced_entry.store(next, std::memory_order_relaxed);
  slot_->committed_entry.store(next, std::memory_order_release);
  committed_ = &slot_->committed_entry;
  floor_ = 0;
  writer_.store(true, std::memory_order_release);
  return Status::Ok();
}

uint64_t Shard::ReadLimit(Segment& s) {
  if (s.sealed()) return s.data_end();
  return writer_.load(std::memory_order_acquire) ? s.map_len() : FollowerLimit(s);
}

// Every record below it was published (or, in a sealed segment, written in full).
uint64_t Shard::FollowerLimit(Segment& s) {
  if (SealSeen(s)) return s.data_end();
  // No control region (read-only, damaged): only a dead writer leaves unsealed segments then.
  if (!slot_) return s.map_len();
  // The base first: the offset is then of that segment, unless it was sealed meanwhile (the
  // writer seals a segment before it publishes an offset in the next one, see Append). A seal
  // not yet adopted (its batch is not published) still says where the records end.
  const uint64_t base = slot_->active_base.load(std::memory_order_acquire);
  const uint64_t off = slot_->committed_offset.load(std::memory_order_acquire);
  uint64_t count, end;
  if (s.HeaderSeal(&count, &end)) return SealSeen(s) ? s.data_end() : end;
  if (base != s.base()) return kSegmentHeaderSize;  // nothing in it is provably published
  s.Grow(off);  // a new writer re-extended the file a clean close had truncated
  return std::min<uint64_t>(off, s.map_len());
}

// Followers of a live writer: pick up segments created since Load. Only segments that hold a
// committed entry are listed (the committed count is taken before the directory is read): a
// segment made for a batch that a crash cut short is removed by the next writer, which may
// create another file of the same name.
Status Shard::Refresh() {
  const uint64_t committed = Committed();
  std::vector<std::string> ignored;
  std::vector<std::shared_ptr<Segment>> found;
  if (Status st = LoadSegments(&found, &ignored, false); !st.ok()) return st;
  std::unique_lock lk(list_mu_);
  uint64_t last = segments_.empty() ? 0 : segments_.back()->base();
  for (auto& s : found) {
    if (!segments_.empty() && s->base() <= last) continue;
    if (s->base() >= committed) break;
    s->SealVisible(committed);
    segments_.push_back(s);
  }
  return Status::Ok();
}

}  // namespace comet::internal
