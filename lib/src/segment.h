// A segment: one file of records, its mapping, its sparse index and what is known about its
// integrity. Encoding and decoding of the segment header, the record header and the index file
// live here too; the byte layout itself is in comet/format.h.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comet/format.h"
#include "comet/status.h"
#include "record.h"

namespace comet::internal {

inline constexpr uint64_t kNotSealed = ~uint64_t{0};

struct ScanWalk;  // segment_scan.cc

struct SegmentHeader {
  uint16_t major = format::kFormatMajor;
  uint32_t prefix_id = 0;
  uint32_t shard = 0;
  std::string prefix;
  uint64_t base_entry = 0;
  int64_t created_ns = 0;
  uint32_t header_crc = 0;
  bool sealed = false;
  uint64_t sealed_count = 0;
  uint64_t sealed_end = 0;
};

// Writes the 256-byte header (unsealed, version kFormatMajor) into out and sets h->header_crc
// (nudging h->created_ns if needed: see format.h).
void EncodeSegmentHeader(SegmentHeader* h, char* out);
// The same, exactly as given (no nudge).
void EncodeHeaderOnce(SegmentHeader* h, char* out);
// Writes the seal fields into a header in place.
void EncodeSeal(char* header, uint64_t count, uint64_t end);
// Decodes and checks a header. CORRUPT (naming `path`) on bad magic or CRC; VERSION for another
// major. A bad seal CRC is not an error: the segment is simply not sealed.
Status DecodeSegmentHeader(const char* p, size_t n, const std::string& path, SegmentHeader* out);

// A record as the writer prepares it before taking the shard lock.
struct PreparedRecord {
  const char* payload;
  uint32_t size_flags;   // stored size | flags
  uint32_t masked_crc;
};
// Append-only array of u32 node offsets that readers may read while the one writer appends:
// fixed chunk table, chunks allocated on demand, size published with release.
class SparseIndex {
 public:
  SparseIndex(uint32_t interval, uint64_t capacity_bytes);
  ~SparseIndex();
  SparseIndex(const SparseIndex&) = delete;
  SparseIndex& operator=(const SparseIndex&) = delete;

  uint32_t interval() const { return interval_; }
  size_t size() const { return size_.load(std::memory_order_acquire); }
  uint32_t Get(size_t i) const;  // REQUIRES: i < size()
  void Push(uint32_t offset);    // single writer
  void Clear();                  // REQUIRES: no concurrent readers

 private:
  static constexpr size_t kChunk = 1024;
  uint32_t interval_;
  size_t max_chunks_;
  std::unique_ptr<std::atomic<uint32_t*>[]> chunks_;
  std::atomic<size_t> size_{0};
};

// What a scan of a segment's records found.
struct ScanResult {
  uint64_t count = 0;            // entries, bad ones included
  uint64_t end = 0;              // offset just past the last good record
  // Entries up to the last good record that ends a batch (kFlagBatchMore clear), and the offset
  // just past it: count and end unless the records after it are a batch cut short.
  uint64_t batch_count = 0;
  uint64_t batch_end = format::kSegmentHeaderSize;
  bool torn = false;             // stopped at damage after the acknowledged end (a torn tail)
  uint64_t torn_at = 0;
  std::vector<uint64_t> bad;     // entry indexes (from base) of damaged records
  std::vector<uint64_t> offsets; // every entry's offset (kept only when something is bad)
  std::vector<std::string> problems;  // one line per problem found, naming file and offset
};

// Hints that let a scan tell a torn tail from corruption in acknowledged data.
struct ScanHints {
  uint64_t acknowledged_end = 0;     // bytes below this were acknowledged (0: unknown)
  uint64_t acknowledged_count = kNotSealed;  // entries that end at acknowledged_end
  uint64_t expected_count = kNotSealed;  // entries the segment is known to hold
  bool fill_index = true;                // push index nodes (when the index is empty)
};

class Segment {
 public:
  Segment(std::string path, std::string rel, uint32_t index_interval, uint64_t capacity);
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // Creates a preallocated, mapped segment file at `path` (the header is written by Activate).
  // With `huge`, both mappings are 2 MiB entries where the kernel can (env::Map).
  static Result<std::shared_ptr<Segment>> Create(const std::string& path, const std::string& rel,
                                                 uint32_t index_interval, uint64_t capacity,
                                                 uint64_t prefault, bool huge);
  // Opens an existing segment file and decodes its header (no records are read). A damaged
  // header (CORRUPT) still gives a segment: header_error() says why, its base is `name_base`
  // (from the file name) and every entry in it is bad. VERSION for another major. A segment
  // opened read-only and not sealed may grow (a new writer re-extends the file a clean close
  // truncated): its mapping reserves kMaxGrowth bytes, of which map_len() are in the file.
  static Result<std::shared_ptr<Segment>> Open(const std::string& path, const std::string& rel,
                                               uint32_t index_interval, bool writable,
                                               uint64_t name_base);
  // The most a segment file can be extended to (storage.max_segment_bytes at most, or one
  // oversized entry, which is sealed at once).
  static constexpr uint64_t kMaxGrowth = uint64_t{4} << 30;
  // A follower's view of a file that grew: map_len() follows the file's size, up to the
  // reserved mapping. True when the first `want` bytes are readable.
  bool Grow(uint64_t want);

  // Writes the header of a freshly created segment and gives the file its final name.
  Status Activate(SegmentHeader* h, const std::string& final_path, const std::string& final_rel);

  // Scans records from the header to `limit` bytes, checking every CRC, and numbers them: an
  // entry gets an offset only where its id is proven (segment_scan.cc). Fills the sparse index
  // if it is empty; otherwise uses its nodes as proof.
  ScanResult Scan(uint64_t limit, const ScanHints& hints);
  // Adopts a scan's damage map and marks the segment trusted. REQUIRES: scan_mutex held.
  void AdoptScan(ScanResult* r);
  // A trusted segment found damaged since its last scan: reads check CRCs until it is scanned
  // again. Only for sealed segments (an active one changes under a scan).
  void Distrust();

  // Writes sealed_count/sealed_end into the mapped header and publishes them.
  void Seal(uint64_t count, uint64_t end);
  // Cuts the file at `end` (best effort: its preallocated tail, or whatever a recovery dropped)
  // and seals it there.
  void SealAt(uint64_t count, uint64_t end);
  // Marks the segment sealed from its header or index file (at open).
  void MarkSealed(uint64_t count, uint64_t end) {
    data_end_ = end;
    sealed_count_.store(count, std::memory_order_release);
  }
  // Seals at a smaller count (a batch cut short by a crash): in the file too when `write`.
  void CutSeal(uint64_t count, uint64_t end, bool write);
  // Re-reads the seal from the mapped header (followers of a writer in another process or
  // client). A seal is adopted only when every entry it counts is below `committed`: a writer
  // seals a segment in the middle of a batch, and a crash before the batch is acknowledged makes
  // the next writer seal it again with fewer entries.
  bool RefreshSeal(uint64_t committed);
  // The seal in the mapped header, whoever wrote it and whether or not it is adopted: false
  // when there is none (or its end is not in the file).
  bool HeaderSeal(uint64_t* count, uint64_t* end);
  // Whether a seal counting `count` entries counts only entries below `committed`.
  bool SealCommitted(uint64_t count, uint64_t committed) const {
    return count <= committed && base() <= committed - count;
  }
  // Whether the segment is sealed, by this process or by the writer in another one: a single load
  // of the mapped seal CRC while it is not, a full check once it is.
  bool SealVisible(uint64_t committed) {
    if (sealed()) return true;
    if (format::load32(rmap() + format::seg::kSealCrc) == 0) return false;
    return RefreshSeal(committed);
  }
  bool sealed() const { return sealed_count_.load(std::memory_order_acquire) != kNotSealed; }
  uint64_t sealed_count() const { return sealed_count_.load(std::memory_order_acquire); }
  uint64_t data_end() const { return data_end_; }

  // Index file: load (false if missing, stale or corrupt) and write.
  bool LoadIndexFile(const std::string& idx_path);
  Status WriteIndexFile(const std::string& idx_path) const;

  // Byte offset of entry `e` (absolute entry number), or kBadOffset if it cannot be found
  // (damaged, or an unchecked walk left the mapping). REQUIRES: e in this segment, readable.
  // Walks at most interval-1 record headers from the nearest index node.
  static constexpr uint64_t kBadOffset = ~uint64_t{0};
  uint64_t OffsetOf(uint64_t e) const;
  // True if entry `e` is known damaged.
  bool IsBad(uint64_t e) const;
  // Why the header is not trusted; empty when it is fine.
  const std::string& header_error() const { return header_error_; }
  bool damaged() const { return damage_.load(std::memory_order_acquire) != nullptr; }

  // Checks one record at `off` (its end must be within `limit`): false if header or CRC is bad.
  bool CheckRecord(uint64_t off, uint64_t limit) const;
  // Only that the record's header and length lie within `limit` (no CRC).
  bool RecordFits(uint64_t off, uint64_t limit) const {
    return off + format::kRecordHeaderSize <= limit &&
           off + format::kRecordHeaderSize +
                   (format::load32(rmap() + off + format::rec::kSizeFlags) & format::kSizeMask) <=
               limit;
  }
  // What a record's stored CRC is XORed with (format.h): the header CRC from version 2 on.
  uint32_t record_key() const { return record_key_; }
  // Re-targets an existing segment for appending: drops every byte from `end` on (a torn
  // tail), re-preallocates to `capacity`, maps it writable.
  Status PrepareForAppend(uint64_t end, uint64_t capacity, uint64_t prefault, bool huge);

  // Mapping-level access. map() is the writer's mapping; rmap() is for reading: a separate
  // read-only mapping where this process appends, so that write-back of pages the writer has
  // left behind never has to write-protect them in a mapping readers use.
  const SegmentHeader& header() const { return header_; }
  uint64_t base() const { return header_.base_entry; }
  char* map() const { return map_; }
  const char* rmap() const { return ro_map_ ? ro_map_ : map_; }
  // Unmaps written pages below `upto` from the writer's mapping (the data stays in the page
  // cache), so that their write-back costs no TLB shoot-down of the writer's CPU per page. A
  // mapping with 2 MiB entries is unmapped in whole 2 MiB steps, never split under the writer.
  void DropWrittenPages(uint64_t upto);
  // Drops a sealed, written-back segment's pages from the page cache: first from both mappings
  // (a reader's view stays valid: its page comes back from the file), then from the cache.
  void DropCached();
  size_t map_len() const { return map_len_.load(std::memory_order_acquire); }
  uint64_t capacity() const { return capacity_; }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  const std::string& rel() const { return rel_; }
  SparseIndex& index() { return index_; }

  // Readiness: kUnindexed (no index yet: scan before reading), kUntrusted (index from an
  // index file: check each record's CRC on read), kTrusted (written by this process or fully
  // scanned: the damage map is complete and reads skip the CRC).
  enum State : int { kUnindexed = 0, kUntrusted = 1, kTrusted = 2 };
  State state() const { return static_cast<State>(state_.load(std::memory_order_acquire)); }
  void set_state(State s) { state_.store(s, std::memory_order_release); }
  std::mutex& scan_mutex() { return scan_mu_; }

  // Pre-faulting (background threads, one at a time): maps pages [populated(), upto) for
  // writing (MADV_POPULATE_WRITE) and then touches each with an atomic add of zero on one word.
  // Populating alone is not enough on every machine: under a hypervisor that shadows the
  // guest's page tables, the first access through each new mapping entry still costs several
  // microseconds (bench/first_touch_bench.cc), and that access is made here instead of by the
  // writer. The add changes no data, so it is safe beside the writer's stores. Pages below
  // `writer` (the writer's offset, which it has touched itself) are skipped. Returns the bytes
  // pre-faulted.
  Result<uint64_t> Prefault(uint64_t upto, uint64_t writer = 0);
  uint64_t populated() const { return populated_.load(std::memory_order_relaxed); }
  bool fully_prefaulted() const { return populated() >= capacity_; }

  void set_data_end(uint64_t e) { data_end_ = e; }

 private:
  std::string path_, rel_;
  SegmentHeader header_;
  std::string header_error_;
  uint32_t record_key_ = 0;
  uint32_t allowed_bits_ = format::kSizeMask | format::kFlagZstd;  // size_flags bits a record may set
  Status MapForReaders();
  Status ReserveGrowth();
  void SetRecordRules();
  // Scan's parts (segment_scan.cc).
  enum class At;
  At Classify(uint64_t o, uint64_t limit, const ScanHints& h, uint64_t max_count,
              uint64_t* next) const;
  uint64_t Resync(uint64_t from, uint64_t limit) const;
  uint64_t RecordEnd(uint64_t off) const;
  uint64_t MeasureRun(uint64_t o, uint64_t limit, const ScanHints& h, uint64_t next,
                      ScanWalk* w) const;
  void WalkRecords(uint64_t limit, const ScanHints& h, ScanWalk* w) const;
  std::vector<std::pair<size_t, uint64_t>> IndexAnchors(const ScanWalk& w) const;
  std::vector<uint64_t> Number(const ScanWalk& w, const ScanHints& h, bool use_index,
                               ScanResult* r) const;

  int fd_ = -1;
  char* map_ = nullptr;
  char* ro_map_ = nullptr;  // read-only view of the same pages (appended segments only)
  std::atomic<uint64_t> dropped_{0};  // map_ bytes below this are unmapped (page aligned)
  std::atomic<size_t> map_len_{0};  // bytes of the mapping that are in the file
  size_t reserved_ = 0;             // the mapping's length (map_len_ or more: see Open)
  // Mappings replaced by PrepareForAppend: readers may still hold views into them, so they
  // last as long as the segment.
  std::vector<std::pair<char*, size_t>> retired_maps_;
  uint64_t capacity_ = 0;
  std::atomic<uint64_t> sealed_count_{kNotSealed};
  uint64_t data_end_ = 0;
  SparseIndex index_;
  // What the last full scan found damaged, published whole so that a scan after new damage can
  // replace it under readers: every map stays alive as long as the segment (re-scans are rare).
  struct Damage {
    std::vector<uint64_t> bad;      // sorted absolute entry numbers
    std::vector<uint64_t> offsets;  // per-entry offsets (kBadOffset for bad ones)
  };
  std::atomic<const Damage*> damage_{nullptr};
  std::vector<std::unique_ptr<Damage>> damage_maps_;  // guarded by scan_mu_
  std::atomic<int> state_{kUnindexed};
  std::mutex scan_mu_;
  std::atomic<uint64_t> populated_{0};
  bool huge_ = false;  // mapped with env::Map's `huge`
};

}  // namespace comet::internal
