// The read path: locating an entry, checking it, and the inspection of a shard.
#include "shard.h"

#include <algorithm>
#include <cstring>

#include "compress.h"
#include "control.h"
#include "env.h"

namespace comet::internal {

using namespace format;

// ---- read path -------------------------------------------------------------------------------

Status Shard::Locate(uint64_t e, std::shared_ptr<Segment>* seg, uint64_t* resume) {
  if (const uint64_t from = RetainedFrom(); e < from) {
    ForgetRetained();
    if (resume) *resume = from;
    return Status::NotFound(name_ + ": entry " + std::to_string(e) +
                            " was deleted by retention; the first retained entry is " +
                            std::to_string(from));
  }
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
        if (follower) SealSeen(*s);
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

// Scans a segment and adopts what the scan found, unless its state already reaches `enough`:
// kUntrusted to get an index (EnsureReady), kTrusted to get a complete damage map (ScanFully).
// The limit never passes what is provably in the file (ReadLimit), which matters for a follower
// whose writer may truncate a segment it just sealed.
void Shard::ScanUnless(const std::shared_ptr<Segment>& seg, Segment::State enough) {
  if (seg->state() >= enough) return;
  std::lock_guard lk(seg->scan_mutex());
  if (seg->state() >= enough) return;
  ScanHints hints;
  const uint64_t limit = ReadLimit(*seg);
  if (seg->sealed()) {
    hints.expected_count = seg->sealed_count();
  } else if (!writer_.load(std::memory_order_acquire)) {
    // A follower's limit is where the published records end (FollowerLimit).
    if (slot_) hints.acknowledged_end = limit;
  } else if (slot_ && slot_->active_base.load(std::memory_order_acquire) == seg->base()) {
    hints.acknowledged_end = slot_->committed_offset.load(std::memory_order_acquire);
  }
  ScanResult r = seg->Scan(limit, hints);
  CountCorrupt(r.bad.size());
  seg->AdoptScan(&r);
}

Status Shard::ReadAt(const std::shared_ptr<Segment>& seg, uint64_t e, uint64_t* off, Entry* out) {
  // Without a CRC check per read, a segment is checked once, in full, before it is trusted.
  if (ctx_->cfg.read.check_crc) {
    EnsureReady(seg);
  } else {
    ScanFully(seg);
  }
  for (int attempt = 0; attempt < 2; attempt++) {
    const Segment::State state = seg->state();
    auto where = [&](uint64_t o) {
      return name_ + ": entry " + std::to_string(e) + " at offset " + std::to_string(o) +
             " of segment " + seg->rel();
    };
    if (state == Segment::kTrusted && seg->IsBad(e)) {
      *off = Segment::kBadOffset;
      const std::string why = seg->header_error().empty() ? "it failed its CRC"
                                                          : seg->header_error();
      return Status::Corrupt(name_ + ": entry " + std::to_string(e) + " in segment " + seg->rel() +
                             " is not returned: " + why);
    }
    uint64_t o = (*off != Segment::kBadOffset && !seg->damaged()) ? *off : seg->OffsetOf(e);
    const uint64_t limit = ReadLimit(*seg);
    const bool check = state != Segment::kTrusted || ctx_->cfg.read.check_crc;
    bool good = o != Segment::kBadOffset &&
                (check ? seg->CheckRecord(o, limit) : seg->RecordFits(o, limit));
    if (!good) {
      *off = Segment::kBadOffset;
      // Not scanned since this damage was made (or never): scan, so that the ids after it are
      // placed by what the scan proves, and look again.
      // A follower's segment may also have grown since its scan (entries it never saw).
      const bool may_have_changed = seg->sealed() || !writer_.load(std::memory_order_acquire);
      if (state != Segment::kTrusted || (attempt == 0 && may_have_changed)) {
        seg->Distrust();
        ScanFully(seg);
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
    if (out->segment_ != seg) out->segment_ = seg;  // no reference-count traffic within one
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
  ForgetRetained();
  info->first = EntryId{prefix_id_, shard_, FirstEntry()};
  std::shared_lock lk(list_mu_);
  for (const auto& s : segments_) {
    if (!writer_.load(std::memory_order_acquire)) SealSeen(*s);
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
    if (!s->header_error().empty()) {
      const uint64_t n = s->sealed() ? s->sealed_count() : 0;
      problems->push_back(s->header_error() + "; " + EntryRange(s->base(), n) + " unreadable");
      bad += n;
      continue;
    }
    if (!writer_.load(std::memory_order_acquire)) SealSeen(*s);
    EnsureReady(s);
    ScanHints hints;
    // An unsealed segment is read to where the writer's publication ends (a follower's read
    // limit): a writer may be copying records past it.
    const uint64_t limit = ReadLimit(*s);
    if (s->sealed()) {
      hints.expected_count = s->sealed_count();
    } else {
      hints.expected_count = c > s->base() ? c - s->base() : 0;
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
  s->prefaulted_bytes += prefaulted_.load(std::memory_order_relaxed);
  s->cold_rotations += cold_rotations_.load(std::memory_order_relaxed);
  if (!slot_) return;
  // Every stream counter from the slot, but corrupt_records: counted above by this process,
  // which finds damage as a reader too (the slot's count is the writers').
#define COMET_ADD_SLOT_COUNTER(field, ...)         \
  if (&Stats::field != &Stats::corrupt_records) \
    s->field += slot_->field.load(std::memory_order_relaxed);
  COMET_STREAM_COUNTERS(COMET_ADD_SLOT_COUNTER)
#undef COMET_ADD_SLOT_COUNTER
}

}  // namespace comet::internal
