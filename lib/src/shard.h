// A shard: one stream's segments, its write path, read path, recovery and sync.
//
// Write path (Append): compress and checksum outside any lock; then, under write_mu_, reserve
// segments (all or nothing), copy records into the mapping, and publish the new committed entry
// number with a release store into the control region. No system call on that path except on
// rotation without a ready spare segment.
//
// Readers never take write_mu_: they load the committed entry number (acquire), find the
// segment under a shared lock of the segment list, and read the mapping.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/format.h"
#include "bpf_export.h"
#include "segment.h"

namespace comet::shm {
class ControlRegion;
}

namespace comet::internal {

// Wakes a background thread: cheap when it is awake, a futex wake when it sleeps.
class Wakeup {
 public:
  void Notify();
  // Sleeps until a Notify not yet seen by the (single) waiter, or timeout_ns.
  void Wait(int64_t timeout_ns);

 private:
  std::atomic<uint32_t> seq_{0};
  uint32_t seen_ = 0;  // waiter's own
  std::atomic<uint32_t> sleeping_{0};
};

// Appends are timed one call in this many per shard; each timed call counts for all of them.
inline constexpr uint32_t kAppendSample = 16;
// Records of a batch up to this many are prepared on the stack.
inline constexpr size_t kRecordsOnStack = 8;

// What every shard of a client shares. Owned jointly by the client and its shards, so that a
// handle which outlives its Client (an Iterator keeps its Shard) still finds the configuration
// and a mapped control region, and learns from `closed` that it must stop.
struct ShardContext {
  Config cfg;
  std::string root;            // the data directory as given to Open
  bool read_only = false;
  bool writer_live = false;    // read-only client: a writer held the directory at the last look
  std::atomic<bool> closed{false};  // the client was closed (or destroyed)
  std::shared_ptr<shm::ControlRegion> control_owner;
  shm::ControlRegion* control = nullptr;  // control_owner.get(), or null
  // The client's background threads. Only writers notify them, and a closed client has none.
  Wakeup* maintainer = nullptr;
  Wakeup* syncer = nullptr;
  // This process's latency histograms in the control region (null for read-only clients).
  std::atomic<format::ProcessMetrics*> metrics{nullptr};
  // The pinned export map, when there is one (bpf_export.h): the same figures go there too.
  std::atomic<comet_export*> exported{nullptr};
  // The export mappings, the current one last. They live as long as the context (a handle may
  // outlive its client, and an appender may still hold an older map's address); only the
  // client's open and its maintainer thread change the list.
  std::vector<std::unique_ptr<ExportMap>> export_maps;
  // Disk reserved ahead of this client's writers (active and spare segments' capacity), bounded
  // by storage.max_preallocated_bytes. TakeRoom grants as much of `want` as the budget has left,
  // but never less than `least` (what the caller must store anyway); GiveRoom returns it.
  std::atomic<uint64_t> room{0};
  uint64_t TakeRoom(uint64_t want, uint64_t least) {
    const uint64_t limit = cfg.storage.max_preallocated_bytes;
    uint64_t used = room.load(std::memory_order_relaxed), grant;
    do {
      grant = std::max(least, std::min(want, used < limit ? limit - used : 0));
    } while (!room.compare_exchange_weak(used, used + grant, std::memory_order_relaxed));
    return grant;
  }
  void GiveRoom(uint64_t n) { room.fetch_sub(n, std::memory_order_relaxed); }
  // Adds one timed operation that stands for `weight` operations (sampled timing).
  void Record(format::MetricOp op, uint64_t ns, uint64_t weight = 1) const {
    format::ProcessMetrics* m = metrics.load(std::memory_order_relaxed);
    if (!m) return;
    format::OpMetrics& o = m->ops[op];
    unsigned b = ns == 0 ? 0 : 63 - static_cast<unsigned>(__builtin_clzll(ns));
    o.buckets[b].fetch_add(weight, std::memory_order_relaxed);
    o.count.fetch_add(weight, std::memory_order_relaxed);
    o.sum_ns.fetch_add(ns * weight, std::memory_order_relaxed);
    if (comet_export* x = exported.load(std::memory_order_relaxed)) {
      ExportMap::Add(x, op, b, ns, weight);
    }
  }
};

// The least room a new segment gets, however little the preallocation budget has left.
constexpr uint64_t kLeastRoom = 64 << 10;

// "entries A..B" for `count` entries from `from`, or "no entries".
std::string EntryRange(uint64_t from, uint64_t count);

class Shard {
 public:
  Shard(std::shared_ptr<ShardContext> ctx, uint32_t prefix_id, std::string prefix, uint32_t shard);
  ~Shard();

  // Loads the shard's segments. A writer recovers: torn tail truncated, damage reported, index
  // rebuilt where missing; `problems` receives a line per problem. A follower (a read-only
  // client, or a process that does not own the shard) only reads, following the writer.
  Status Load(std::vector<std::string>* problems, bool as_writer);
  // Ownership changes in multi-process mode. BecomeWriter reloads the shard from disk and
  // recovers what the previous owner left; BecomeFollower publishes, syncs per sync.mode and
  // stops appending (NOT_OWNER) so that another process can take the shard over.
  Status BecomeWriter(std::vector<std::string>* problems);
  Status BecomeFollower();
  // fork(): take every lock of the shard before, release after; in the child, also forget the
  // writer state (the parent still writes the shard).
  void LockForFork();
  void UnlockAfterFork(bool child);
  bool is_writer() const { return writer_.load(std::memory_order_acquire); }
  format::ShardSlot* slot() const { return slot_; }
  // Blocks until entry `e` is readable, or timeout_ns passes (TIMEOUT); spins briefly first.
  Status WaitFor(uint64_t e, int64_t timeout_ns);

  Status Append(std::span<const std::string_view> entries, EntryId* ids);
  // Whether to time this append: one call in kAppendSample. The count is racy between threads
  // (a relaxed load and store, no locked instruction), which only moves the sample.
  bool SampleAppend() {
    const uint32_t n = append_calls_.load(std::memory_order_relaxed) + 1;
    append_calls_.store(n, std::memory_order_relaxed);
    return n % kAppendSample == 0;
  }
  Status Read(uint64_t e, Entry* out);
  // Reads entry e at a known offset (iterators); returns the offset of the next record.
  Status ReadAt(const std::shared_ptr<Segment>& seg, uint64_t e, uint64_t* off, Entry* out);
  // The segment holding entry e. NOT_FOUND for entries before the first, in a gap or beyond.
  // On a gap, *resume is set to the first entry after it.
  Status Locate(uint64_t e, std::shared_ptr<Segment>* seg, uint64_t* resume);

  // Entries below this are readable. A read-only client follows the writer's publication, but
  // never below what its own load found (no writer may have published yet).
  uint64_t Committed() const {
    const uint64_t c = committed_->load(std::memory_order_acquire);
    return c >= floor_ ? c : floor_;
  }
  // Whether `seg` is sealed, here or (adopted once its entries are committed) by the writer.
  bool SealSeen(Segment& seg) const { return seg.SealVisible(Committed()); }
  uint64_t FirstEntry() const;
  // Retention deleted every entry below this (as the control region tells every process; 0
  // without one). Their segments may still be in this process's list and mapped.
  uint64_t RetainedFrom() const {
    return slot_ ? slot_->retained_from.load(std::memory_order_acquire) : 0;
  }
  // Drops the segments retention deleted from the list (readers holding one keep it mapped).
  void ForgetRetained();

  // Makes every entry below `target` durable (group commit: one fdatasync serves all waiters).
  Status SyncTo(uint64_t target) { return SyncUpTo(target, false, false); }
  Status SyncAll() { return SyncTo(Committed()); }
  // Background duties: pre-fault ahead of the writer, prepare a spare segment and pre-fault it
  // in full, finish sealed segments (truncate, index file). Returns quickly when there is
  // nothing to do; true when work is left that should not wait for the next period.
  bool Maintain();
  // Interval sync: syncs if entries are waiting and the interval passed or sync.entries reached.
  void MaybeIntervalSync(int64_t now_mono);

  // Stops appends (CLOSED), finishes background duties, syncs per mode.
  Status Close();
  // Whether the client this shard belongs to was closed: handles then answer CLOSED.
  bool client_closed() const { return ctx_->closed.load(std::memory_order_acquire); }

  Status Inspect(StreamInfo* info);
  // Checks every record of every segment; returns bad records.
  uint64_t Verify(std::vector<std::string>* problems);
  void AddStats(Stats* s) const;

  const std::string& name() const { return name_; }
  const std::string& prefix() const { return prefix_; }
  uint32_t prefix_id() const { return prefix_id_; }
  uint32_t shard() const { return shard_; }

 private:
  std::string SegmentPath(uint64_t base, const char* ext) const;
  std::string SegmentRel(uint64_t base, const char* ext) const;
  std::string TempName(const char* what);
  Status EnsureDir();
  // The sync itself. With `spare_tail_page`, the active segment is written back only up to the
  // last whole page, so that the writer, still filling that page, does not take a write-protect
  // fault behind the writeback; entries on that page wait for the next sync.
  Status SyncUpTo(uint64_t target, bool spare_tail_page, bool releasing);
  Status StopWriting(bool closing);
  void FinishSealed();
  Status NotOwner() const;
  void ForgetWriterAfterFork();
  // Entries of segment `seg` that end at or below byte `end`, counted from its base.
  uint64_t EntriesBelow(Segment* seg, uint64_t end, uint64_t committed) const;
  // A segment for entries from `base` with room for at least `need` bytes of records: the spare
  // when it fits, else a new file with as much room as ctx_->room allows.
  Result<std::shared_ptr<Segment>> NewSegment(uint64_t base, uint64_t need);
  Result<std::shared_ptr<Segment>> TimedNewSegment(uint64_t base, uint64_t need);
  // Removes a segment made for a batch that failed, and gives back its room.
  void DropFresh(const Segment& seg);
  // Takes a whole segment's room for a spare, if the budget has it.
  bool TakeSpareRoom();
  // REQUIRES: write_mu_ held, resume_pending_. Extends the loaded active segment for appending;
  // if that fails, seals it as it is (appends go on in a new segment) and says why.
  Status ResumeActive();
  // How far ahead of the writer (at byte `cur` of segment `base`) to keep pages pre-faulted:
  // storage.prefault_bytes, or what the writer's measured pace covers in kPrefaultLead.
  uint64_t PrefaultWindow(uint64_t base, uint64_t cur);
  // Pre-faults segment `s` up to `upto`; false when that failed (MADV_POPULATE_WRITE refused).
  bool PrefaultTo(Segment& s, uint64_t upto, uint64_t writer);
  void Rotate(std::shared_ptr<Segment> next);
  // The phases of Append, in order (shard_write.cc, inline there).
  struct Written {
    uint64_t bytes = 0, stored = 0, compressed = 0;  // as given, as stored, entries compressed
  };
  Status PrepareRecords(std::span<const std::string_view> entries, int64_t ts,
                        PreparedRecord* recs);
  Status ReserveSegments(std::span<const PreparedRecord> recs,
                         std::vector<std::shared_ptr<Segment>>* fresh);
  Written WriteRecords(std::span<const std::string_view> entries, const PreparedRecord* recs,
                       int64_t ts, std::vector<std::shared_ptr<Segment>>* fresh, EntryId* ids);
  void Publish(size_t n, const Written& w);
  bool PrefaultDue() const;
  Status AfterAppend(uint64_t last, bool want_prefault);
  void ScanUnless(const std::shared_ptr<Segment>& seg, Segment::State enough);
  void EnsureReady(const std::shared_ptr<Segment>& seg) { ScanUnless(seg, Segment::kUntrusted); }
  void ScanFully(const std::shared_ptr<Segment>& seg) { ScanUnless(seg, Segment::kTrusted); }
  Status LoadLocked(std::vector<std::string>* problems, bool writer);
  // The byte limit a follower may read in an unsealed segment without passing the file's end.
  uint64_t FollowerLimit(Segment& s);
  uint64_t ReadLimit(Segment& s);
  Status Refresh();
  void CountCorrupt(uint64_t n);
  uint64_t DamagedCount(const std::vector<std::shared_ptr<Segment>>& segs, size_t i,
                        uint64_t committed);
  void SetAside(Segment& s, std::vector<std::string>* problems);
  // What the control region remembers of the last writer's publication: a hint, since the
  // segments are the truth (it may be lost, rebuilt, or older than them after a power loss).
  struct Published {
    bool known = false;
    uint64_t entry = 0, offset = 0, base = kNotSealed;
    uint64_t acked() const { return known ? entry : 0; }  // entries below were acknowledged
    ScanHints For(const Segment& s) const;
  };
  uint64_t DropUnfinishedBatch(std::vector<std::shared_ptr<Segment>>* segs, const Published& pub,
                               bool writer, std::vector<std::string>* problems,
                               std::optional<ScanResult>* tail_scan);
  uint64_t RecoveryLimit(Segment& s, bool writer);
  Status LoadSegments(std::vector<std::shared_ptr<Segment>>* segs,
                      std::vector<std::string>* problems, bool writable);
  // The phases of LoadLocked, in order (shard_recovery.cc).
  struct Loaded {
    std::shared_ptr<Segment> active;  // the segment appends go on in, if any
    uint64_t next = 0, write_off = 0;  // the next entry number; the active segment's data end
  };
  Status AttachSlot(bool writer, Published* pub);
  bool Recovers(bool writer) const;
  Loaded CheckSegments(std::vector<std::shared_ptr<Segment>>* segs, const Published& pub,
                       bool writer, bool follows_writer, std::vector<std::string>* problems);
  uint64_t LoadDamaged(const std::vector<std::shared_ptr<Segment>>& segs, size_t i,
                       const Published& pub, bool set_aside_if_empty,
                       std::vector<std::string>* problems);
  void LoadSealed(Segment& s, bool sealed_header, std::vector<std::string>* problems);
  bool RecoverTail(const std::shared_ptr<Segment>& seg, ScanResult* r, bool writer,
                   std::vector<std::string>* problems, Loaded* loaded);
  std::vector<std::pair<uint64_t, uint64_t>> FindGaps(
      const std::vector<std::shared_ptr<Segment>>& segs, bool writer,
      std::vector<std::string>* problems);
  void KeepAcknowledgedNumbers(const Published& pub, bool writer, Loaded* loaded,
                               std::vector<std::pair<uint64_t, uint64_t>>* gaps,
                               std::vector<std::string>* problems);
  void Install(std::vector<std::shared_ptr<Segment>> segs,
               std::vector<std::pair<uint64_t, uint64_t>> gaps, Loaded loaded, bool writer);
  void Follow();
  Status StartWriting(std::vector<std::string>* problems);

  const std::shared_ptr<ShardContext> ctx_;
  const uint32_t prefix_id_, shard_;
  const std::string prefix_, name_, dir_, rel_dir_;
  format::ShardSlot* slot_ = nullptr;
  std::atomic<uint64_t> local_committed_{0};
  std::atomic<uint64_t>* committed_ = &local_committed_;
  uint64_t floor_ = 0;  // read-only clients: the entries their own load found
  bool dir_exists_ = false;

  // Segment list: readers copy shared_ptrs under a shared lock; the writer changes it while
  // holding write_mu_ and an exclusive lock.
  mutable std::shared_mutex list_mu_;
  std::vector<std::shared_ptr<Segment>> segments_;
  std::vector<std::pair<uint64_t, uint64_t>> gaps_;

  // Writer state, guarded by write_mu_.
  std::mutex write_mu_;
  std::atomic<bool> writer_{false};  // this process holds the shard (changes under write_mu_)
  std::shared_ptr<Segment> active_;
  uint64_t active_room_ = 0;  // of ctx_->room, what active_ holds
  // Loaded, not yet extended for appending: the first append does that (ResumeActive), so that
  // opening a directory of idle streams reserves, maps and pre-faults nothing.
  bool resume_pending_ = false;
  uint64_t write_off_ = 0;
  uint64_t next_entry_ = 0;
  uint32_t until_node_ = 0;  // entries until the next sparse-index node
  std::atomic<bool> closed_{false};  // set under write_mu_; read without it for messages
  std::atomic<bool> prefault_asked_{false};
  std::atomic<bool> sync_asked_{false};
  std::atomic<uint32_t> append_calls_{0};  // SampleAppend

  // A preallocated, pre-faulted segment file waiting to become the next active one.
  std::mutex spare_mu_;
  std::shared_ptr<Segment> spare_;

  // Sealed segments waiting for truncation and an index file.
  std::mutex finish_mu_;
  std::vector<std::shared_ptr<Segment>> to_finish_;

  // Group commit.
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  bool sync_leader_ = false;
  uint64_t synced_ = 0;
  int64_t last_sync_mono_ = 0;
  uint64_t last_seen_committed_ = 0;  // interval syncer: did the writer move since last time?
  std::vector<std::shared_ptr<Segment>> unsynced_;  // sealed, not yet fdatasync'd
  std::shared_ptr<Segment> sync_active_;
  bool dir_dirty_ = false;

  // Pre-faulting: bytes done, rotations onto a segment not touched in full, and the writer's
  // pace as the maintainer last measured it (bytes per second) with where and when.
  std::atomic<uint64_t> prefaulted_{0};
  std::atomic<uint64_t> cold_rotations_{0};
  std::atomic<uint64_t> prefault_window_{0};  // bytes ahead of the writer the maintainer keeps
  uint64_t pace_at_ = 0, pace_base_ = 0;
  int64_t pace_ns_ = 0;
  double pace_ = 0;

  std::atomic<uint64_t> temp_seq_{0};
  std::atomic<uint64_t> corrupt_{0};
  std::atomic<uint64_t> torn_{0};
};

}  // namespace comet::internal
