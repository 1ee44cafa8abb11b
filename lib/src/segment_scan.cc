// Reading a segment's records back after the fact (recovery, verify, a reader's first look): a
// walk that says what lies at each offset, then a numbering that gives an id only to a record
// whose id is proven.
//
// A record header describes itself only while its length is trusted. After damage the walk
// resynchronises on the next record whose CRC passes; how many records the damaged bytes held
// is then known only from something else: the run's size (under 32 bytes it held one record),
// the sealed count, the acknowledged (entry, offset) of the control region, the sparse index.
// Records that none of these place get no id: their ids are reported unreadable, never shifted.
#include <algorithm>

#include "segment.h"

namespace comet::internal {

using namespace format;

namespace {

constexpr uint64_t kUnknown = ~uint64_t{0};

bool AllZero(const char* p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Damaged bytes between good records: they held at least `min` and at most `max` records.
struct Run {
  size_t before;        // good records walked before it
  uint64_t off, len;
  uint64_t min, max;
  bool length_trusted;  // one record whose length held: only its payload or CRC was hit
};

// A stretch of the walk whose ids are fixed relative to each other: good records and runs of
// proven count, between two runs of unproven count.
struct Block {
  size_t first_good, end_good;  // good records [first_good, end_good)
  size_t first_run, end_run;    // runs [first_run, end_run), all of proven count
  uint64_t len = 0;             // ids it spans
  uint64_t start = kUnknown;    // id (from the base) of its first entry, once proven
  bool conflict = false;        // two anchors disagreed: nothing in it is proven
};

}  // namespace

// What the walk found, in order.
struct ScanWalk {
  std::vector<uint64_t> good;  // offsets of good records
  std::vector<Run> runs;
  uint64_t end = kSegmentHeaderSize;       // where the walk stopped (the start of a final run)
  uint64_t data_end = kSegmentHeaderSize;  // past the last good record or damaged run
  bool torn = false;
  uint64_t torn_at = 0;
  size_t batch_good = 0;  // good records up to the last one that ends a batch
  uint64_t batch_end = kSegmentHeaderSize;
  uint64_t MinCount() const {
    uint64_t n = good.size();
    for (const Run& r : runs) n += r.min;
    return n;
  }
  uint64_t MaxCount() const {
    uint64_t n = good.size();
    for (const Run& r : runs) n += r.max;
    return n;
  }
};

// ---- phase 1: the walk -----------------------------------------------------------------------

// What lies at an offset where no good record starts.
enum class Segment::At { kEnd, kTornTail, kDamage };

Segment::At Segment::Classify(uint64_t o, uint64_t limit, const ScanHints& h, uint64_t max_count,
                              uint64_t* next) const {
  *next = 0;
  const bool acknowledged = h.acknowledged_end > o;
  // More records must follow only if the damage seen so far cannot account for the count.
  const bool expect_more = h.expected_count != kNotSealed && max_count < h.expected_count;
  if (acknowledged || expect_more) return At::kDamage;
  const bool zero = o + kRecordHeaderSize > limit || AllZero(rmap() + o, kRecordHeaderSize);
  // Past everything acknowledged: zeros are the clean end; anything else is a record torn by a
  // crash mid-copy. Either way the log ends here.
  if (h.acknowledged_end != 0 || o + kRecordHeaderSize > limit) {
    return zero ? At::kEnd : At::kTornTail;
  }
  // Nothing says where the data ends: only a good record further on makes this damage.
  *next = Resync(o + 1, limit);
  if (*next != 0) return At::kDamage;
  return zero ? At::kEnd : At::kTornTail;
}

// The next offset from `from` where a record checks out, or 0.
uint64_t Segment::Resync(uint64_t from, uint64_t limit) const {
  for (uint64_t y = from; y + kRecordHeaderSize <= limit; y++) {
    const char* p = rmap() + y;
    uint32_t sf = load32(p + rec::kSizeFlags);
    if ((sf & ~allowed_bits_) || load64(p + rec::kTimestamp) == 0) continue;
    if (y + kRecordHeaderSize + (sf & kSizeMask) > limit) continue;
    if (CheckRecord(y, limit)) return y;
  }
  return 0;
}

uint64_t Segment::RecordEnd(uint64_t off) const {
  return off + kRecordHeaderSize + (load32(rmap() + off + rec::kSizeFlags) & kSizeMask);
}

// The damaged run at `o`: one record if its length field leads to where a record must end (a
// good record, the acknowledged end, a sealed segment's data end); else up to the next good
// record (`next`, 0 to search), or through the end of the data. Returns where to go on, or 0.
uint64_t Segment::MeasureRun(uint64_t o, uint64_t limit, const ScanHints& h, uint64_t next,
                             ScanWalk* w) const {
  const uint32_t sf = o + kRecordHeaderSize <= limit ? load32(rmap() + o + rec::kSizeFlags) : 0;
  const uint64_t after = o + kRecordHeaderSize + (sf & kSizeMask);
  if (!(sf & ~allowed_bits_) && after <= limit &&
      (CheckRecord(after, limit) || after == h.acknowledged_end ||
       (h.expected_count != kNotSealed && after == limit))) {
    w->runs.push_back(Run{w->good.size(), o, after - o, 1, 1, true});
    return after;
  }
  if (next == 0) next = Resync(o + 1, limit);
  // Without a good record further on, the damage runs through the end of the data: the
  // acknowledged end even where the file is now shorter (the missing bytes are damage too).
  const uint64_t end = next != 0 ? next : h.acknowledged_end > o ? h.acknowledged_end : limit;
  const uint64_t len = std::max<uint64_t>(end, o + 1) - o;
  w->runs.push_back(Run{w->good.size(), o, len, 1,
                        std::max<uint64_t>(1, len / kRecordHeaderSize), false});
  w->data_end = o + len;
  return next;
}

// Good records and damaged runs, from the header to the end of the data.
void Segment::WalkRecords(uint64_t limit, const ScanHints& h, ScanWalk* w) const {
  uint64_t o = kSegmentHeaderSize;
  for (;;) {
    const uint64_t min_count = w->MinCount();
    if (h.expected_count != kNotSealed && min_count >= h.expected_count) break;
    if (CheckRecord(o, limit)) {
      w->good.push_back(o);
      const uint64_t end = RecordEnd(o);
      if (!(load32(rmap() + o + rec::kSizeFlags) & kFlagBatchMore)) {
        w->batch_good = w->good.size();
        w->batch_end = end;
      }
      o = end;
      continue;
    }
    uint64_t next;
    const At at = Classify(o, limit, h, w->MaxCount(), &next);
    if (at != At::kDamage) {
      w->torn = at == At::kTornTail;
      w->torn_at = o;
      break;
    }
    next = MeasureRun(o, limit, h, next, w);
    if (next == 0) {  // damaged through the end
      w->end = o;
      return;
    }
    o = next;
  }
  w->end = w->data_end = o;
}

// Index nodes that land on a good record: (good record, its id). Node j is entry j * interval.
std::vector<std::pair<size_t, uint64_t>> Segment::IndexAnchors(const ScanWalk& w) const {
  std::vector<std::pair<size_t, uint64_t>> out;
  for (size_t j = 0; j < index_.size(); j++) {
    auto it = std::lower_bound(w.good.begin(), w.good.end(), uint64_t{index_.Get(j)});
    if (it != w.good.end() && *it == index_.Get(j)) {
      out.emplace_back(static_cast<size_t>(it - w.good.begin()), uint64_t{j} * index_.interval());
    }
  }
  return out;
}

// ---- phase 2: numbering ----------------------------------------------------------------------

namespace {

// Splits the walk into blocks at every run of unproven count.
std::vector<Block> SplitBlocks(const std::vector<uint64_t>& good, const std::vector<Run>& runs) {
  std::vector<Block> blocks;
  Block b{0, 0, 0, 0};
  for (size_t k = 0; k < runs.size(); k++) {
    if (runs[k].min == runs[k].max) continue;
    b.end_good = runs[k].before;
    b.end_run = k;
    blocks.push_back(b);
    b = Block{runs[k].before, 0, k + 1, 0};
  }
  b.end_good = good.size();
  b.end_run = runs.size();
  blocks.push_back(b);
  for (Block& x : blocks) {
    x.len = x.end_good - x.first_good;
    for (size_t k = x.first_run; k < x.end_run; k++) x.len += runs[k].min;
  }
  return blocks;
}

// Ids from the start of block b to good record g (or to run k, with g = runs[k].before and
// only the runs before k counted).
uint64_t RelativeId(const Block& b, size_t g, const std::vector<Run>& runs, size_t run_limit) {
  uint64_t id = g - b.first_good;
  for (size_t k = b.first_run; k < std::min(b.end_run, run_limit) && runs[k].before <= g; k++) {
    id += runs[k].min;
  }
  return id;
}

void Anchor(Block* b, uint64_t rel, uint64_t id) {
  if (id < rel) {
    b->conflict = true;
  } else if (b->start == kUnknown) {
    b->start = id - rel;
  } else if (b->start != id - rel) {
    b->conflict = true;
  }
}

// Proves block starts: the first block starts at 0; the last ends at the expected count and
// at the acknowledged count when the data ends at the acknowledged offset; a record at the
// acknowledged offset or at an index node has that id. A run between two proven blocks must
// hold a count it can hold, else the later block is not trusted.
void ProveStarts(const std::vector<uint64_t>& good, const std::vector<Run>& runs,
                 uint64_t data_end, const ScanHints& h,
                 std::vector<std::pair<size_t, uint64_t>> anchors, std::vector<Block>* blocks) {
  Block& last = blocks->back();
  blocks->front().start = 0;
  if (h.expected_count != kNotSealed) Anchor(&last, last.len, h.expected_count);
  if (h.acknowledged_end != 0 && h.acknowledged_count != kNotSealed) {
    auto it = std::lower_bound(good.begin(), good.end(), h.acknowledged_end);
    if (it != good.end() && *it == h.acknowledged_end) {
      anchors.emplace_back(static_cast<size_t>(it - good.begin()), h.acknowledged_count);
    } else if (data_end == h.acknowledged_end) {
      Anchor(&last, last.len, h.acknowledged_count);
    }
  }
  for (auto [g, id] : anchors) {
    auto it = std::upper_bound(blocks->begin(), blocks->end(), g,
                               [](size_t v, const Block& b) { return v < b.end_good; });
    if (it != blocks->end()) Anchor(&*it, RelativeId(*it, g, runs, runs.size()), id);
  }
  uint64_t prev_end = blocks->front().len;
  bool prev_known = !blocks->front().conflict;
  for (size_t i = 1; i < blocks->size(); i++) {
    Block& b = (*blocks)[i];
    const Run& run = runs[(*blocks)[i - 1].end_run];
    if (b.conflict || (b.start != kUnknown && prev_known &&
                       (b.start < prev_end + run.min || b.start > prev_end + run.max))) {
      b.start = kUnknown;
    }
    prev_known = b.start != kUnknown;
    if (prev_known) prev_end = b.start + b.len;
  }
}

// The count: the expected one, or the end of the last block, or when that is not proven the
// most the damage could hold (numbering goes on past it rather than reuse an id).
uint64_t CountOf(const std::vector<Block>& blocks, const std::vector<Run>& runs,
                 const ScanHints& h) {
  if (h.expected_count != kNotSealed) return h.expected_count;
  uint64_t count = 0;
  for (size_t i = 0; i < blocks.size(); i++) {
    if (blocks[i].start != kUnknown) {
      count = blocks[i].start + blocks[i].len;
    } else {
      count += runs[blocks[i - 1].end_run].max + blocks[i].len;
    }
  }
  return count;
}

// A line per damaged run: the ids it held when proven, else every id up to the next proven one.
void ReportRuns(const std::string& rel, uint64_t base, const ScanWalk& w,
                const std::vector<Block>& blocks, uint64_t count, ScanResult* r) {
  auto where = [&](const Run& run) {
    return "segment " + rel + " offset " + std::to_string(run.off) + ": ";
  };
  auto ids = [&](uint64_t a, uint64_t n) {
    if (n == 1) return "entry " + std::to_string(base + a);
    return "entries " + std::to_string(base + a) + ".." + std::to_string(base + a + n - 1);
  };
  for (size_t i = 0; i < blocks.size(); i++) {
    const Block& b = blocks[i];
    if (b.start == kUnknown) continue;  // covered by the line of the run before it
    for (size_t k = b.first_run; k < b.end_run; k++) {
      const Run& run = w.runs[k];
      const uint64_t id = b.start + RelativeId(b, run.before, w.runs, k);
      r->problems.push_back(where(run) + (run.length_trusted
                                              ? ids(id, 1) + " fails its CRC"
                                              : std::to_string(run.len) + " damaged bytes; " +
                                                    ids(id, run.min) + " unreadable"));
    }
    if (i + 1 == blocks.size()) break;
    const Run& run = w.runs[b.end_run];
    size_t j = i + 1;
    while (j < blocks.size() && blocks[j].start == kUnknown) j++;
    const uint64_t from = b.start + b.len, to = j < blocks.size() ? blocks[j].start : count;
    r->problems.push_back(where(run) + std::to_string(run.len) + " damaged bytes; " +
                          (to > from ? ids(from, to - from) : std::string("no entries")) +
                          " unreadable" +
                          (j == i + 1 ? "" : " (records after the damage cannot be numbered)"));
  }
}

}  // namespace

// Per-entry offsets (kBadOffset where unreadable), the damage list and the batch tail.
std::vector<uint64_t> Segment::Number(const ScanWalk& w, const ScanHints& h, bool use_index,
                                      ScanResult* r) const {
  std::vector<Block> blocks = SplitBlocks(w.good, w.runs);
  if (blocks.size() > 1 || !w.runs.empty()) {
    std::vector<std::pair<size_t, uint64_t>> anchors;
    if (use_index) anchors = IndexAnchors(w);
    ProveStarts(w.good, w.runs, w.data_end, h, std::move(anchors), &blocks);
  } else {
    blocks.front().start = 0;
  }
  r->count = CountOf(blocks, w.runs, h);
  std::vector<uint64_t> offs(r->count, kBadOffset);
  for (const Block& b : blocks) {
    if (b.start == kUnknown) continue;
    for (size_t g = b.first_good; g < b.end_good; g++) {
      const uint64_t id = b.start + RelativeId(b, g, w.runs, w.runs.size());
      if (id < r->count) offs[id] = w.good[g];
    }
  }
  ReportRuns(rel_, base(), w, blocks, r->count, r);
  for (uint64_t k = 0; k < r->count; k++) {
    if (offs[k] == kBadOffset) r->bad.push_back(k);
  }
  r->batch_count = r->count;
  r->batch_end = w.end;
  // Only good records after the last batch end: a batch cut short (for the caller to judge).
  if (w.batch_good < w.good.size() &&
      (w.runs.empty() || w.runs.back().before < w.batch_good)) {
    auto at = std::find(offs.begin(), offs.end(), w.good[w.batch_good]);
    if (at != offs.end()) {
      r->batch_count = static_cast<uint64_t>(at - offs.begin());
      r->batch_end = w.batch_end;
    }
  }
  return offs;
}

ScanResult Segment::Scan(uint64_t limit, const ScanHints& h) {
  ScanResult r;
  limit = std::min<uint64_t>(limit, map_len());
  const bool fill = h.fill_index && index_.size() == 0;
  ScanWalk w;
  WalkRecords(limit, h, &w);
  r.end = w.end;
  r.torn = w.torn;
  r.torn_at = w.torn_at;
  std::vector<uint64_t> offs = Number(w, h, !fill, &r);
  if (fill) {
    uint64_t last = kSegmentHeaderSize;
    for (uint64_t k = 0; k < offs.size(); k++) {
      if (offs[k] != kBadOffset) last = offs[k];
      if (k % index_.interval() == 0) index_.Push(static_cast<uint32_t>(last));
    }
  }
  if (!r.bad.empty()) r.offsets = std::move(offs);
  return r;
}

}  // namespace comet::internal
