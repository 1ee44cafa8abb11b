// The Comet client: open a data directory, append to streams, read them back.
//
// Thread safety: a Client is safe to use from many threads at once. Many threads may append to
// the same stream concurrently; entry numbers are dense per stream and each returned id reads
// back its own payload. Entries and Iterators are not thread-safe; use one per thread.
//
// Durability: when Append returns OK the entries are in the shared page-cache mapping of their
// segment, so a crash of the process at any instant loses none of them. Power loss is covered
// by sync.mode (see config.h).
//
// Writers: in the default single-process mode, opening a directory for writing takes an
// exclusive claim on it; a second writer (another process, or another Client in this process)
// gets NOT_OWNER. In multi-process mode (concurrency.mode=multi) many processes share the
// directory: each shard has one writer process at a time, assigned by the live membership, and
// an append to a shard another live process writes gets NOT_OWNER. Any client reads every shard.
// Open with open.read_only = true to read a directory without joining it (tools).
//
// Lifetimes: a Client owns its Streams; Entries and Iterators may outlive it.
//  - Stream*: owned by the Client. Valid until the Client is destroyed; after Close, calls that
//    take it fail with CLOSED. Never use one after its Client is destroyed.
//  - Entry: a value. Its data view stays valid as long as the Entry (see Entry), whatever
//    happens to the Client or the segment file meanwhile.
//  - Iterator: a value that keeps what it reads mapped (segments and the control region). After
//    its Client is closed or destroyed it does not crash: Next and Wait return CLOSED (a Wait
//    blocked at that moment returns CLOSED within about 10 ms).
//  - Everything else returned (StreamInfo, Stats, names, Result values) is a plain copy.
//
// fork(): a client opened before fork() keeps working in the child with no call from the
// application (multi-process mode): the child joins as a process of its own on its first call
// and takes the shards assigned to it; the parent hands those over. A single-mode client does not
// survive fork() in the child (its calls fail with NOT_OWNER).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "comet/config.h"
#include "comet/counters.h"
#include "comet/status.h"
#include "comet/stream.h"

namespace comet {

// The most entries one Append call takes (the batch is all or nothing, so it is built whole).
inline constexpr size_t kMaxBatchEntries = size_t{1} << 24;

class Consumer;

namespace internal {
class ClientImpl;
class ConsumerImpl;
class Shard;
class Segment;
}  // namespace internal

// One entry read back. `data` is a view: for an uncompressed entry it points straight into the
// segment mapping (zero-copy), for a compressed one into this Entry's own buffer. The view stays
// valid until this Entry is destroyed, reassigned or reused by another read; the Entry keeps the
// segment mapped even if the file is deleted or the Client destroyed meanwhile.
class Entry {
 public:
  Entry();
  ~Entry();
  Entry(Entry&&) noexcept;
  Entry& operator=(Entry&&) noexcept;

  EntryId id;
  int64_t timestamp_ns = 0;
  std::string_view data;
  bool compressed = false;      // stored zstd-compressed (data is already decompressed)
  uint32_t stored_size = 0;     // bytes the payload occupies on disk

 private:
  friend class internal::Shard;
  friend class Iterator;
  std::shared_ptr<internal::Segment> segment_;
  std::string buffer_;
};

// Reads a stream in entry order from a starting entry. Created by Client::Scan. It may outlive
// its Client; once that is closed or destroyed, Next and Wait return CLOSED.
class Iterator {
 public:
  Iterator();
  ~Iterator();
  Iterator(Iterator&&) noexcept;
  Iterator& operator=(Iterator&&) noexcept;

  // Reads the next entry into *out. Returns OK and advances; NOT_FOUND at the current end of the
  // stream (call again later to see new entries; the position does not move); CORRUPT for a
  // damaged entry (the position moves past it, so the next call reads on); other codes for
  // entries in a gap (skipped: the position moves to the first entry after the gap).
  Status Next(Entry* out);
  // The entry number the next call will read.
  uint64_t position() const { return next_; }
  // Blocks until the entry at position() has been appended (by any process), or timeout_ns
  // passes (TIMEOUT; negative waits forever). Spins briefly, then sleeps on a futex in the
  // control region that the writer wakes only when someone waits.
  Status Wait(int64_t timeout_ns);

 private:
  friend class internal::ClientImpl;
  friend class Client;
  std::shared_ptr<internal::Shard> shard_;
  std::shared_ptr<internal::Segment> segment_;
  uint64_t next_ = 0;
  uint64_t offset_ = 0;       // byte offset of entry next_ in segment_, when known
  uint64_t committed_ = 0;    // cached committed entry count
};

// What Inspect reports about one segment.
struct SegmentInfo {
  std::string file;          // path relative to the data directory
  uint64_t base_entry = 0;
  uint64_t entries = 0;
  uint64_t bytes = 0;        // bytes of records (header excluded)
  int64_t created_ns = 0;
  bool sealed = false;
};

struct StreamInfo {
  std::string name;          // a stream of this prefix and shard
  EntryId first;             // first readable entry
  uint64_t next_entry = 0;   // entries [first.entry, next_entry) exist, less any gaps
  std::vector<SegmentInfo> segments;
  std::vector<std::pair<uint64_t, uint64_t>> gaps;  // [from, to) missing
  uint64_t corrupt_records = 0;                     // found so far
};

struct Stats {
  // appended_entries, ..., corrupt_records, failed_appends (comet/counters.h): this process's
  // streams; corrupt_records counts what this process found, as a reader too.
#define COMET_CLIENT_STATS_FIELD(field, ...) uint64_t field = 0;
  COMET_STREAM_COUNTERS(COMET_CLIENT_STATS_FIELD)
#undef COMET_CLIENT_STATS_FIELD
  uint64_t torn_tails = 0, gaps = 0, streams = 0, segments = 0;
  // This process's writers: bytes of segment pages mapped and touched ahead of the writer
  // (storage.prefault_bytes), and rotations onto a segment that was not touched in full.
  uint64_t prefaulted_bytes = 0, cold_rotations = 0;
};

// What one retention pass deleted (Client::RunRetention, `comet retention`).
struct RetentionReport {
  bool ran = false;  // false: another process was running a pass (the background call only)
  uint64_t segments = 0, entries = 0, bytes = 0;
  // Entries deleted before some consumer group had consumed them (the size budgets, the
  // free-disk floor or retention.force_delete_after overruled the group).
  uint64_t unconsumed = 0;
  // One line per deleted segment: stream, file, entries, bytes and why.
  std::vector<std::string> deleted;
};

// A handle on one stream, owned by its Client: valid until the Client is destroyed (after Close,
// calls that take it fail with CLOSED). Appending through a handle skips the name lookup.
class Stream {
 public:
  const std::string& name() const;
  uint32_t prefix_id() const;
  uint32_t shard() const;

 private:
  friend class internal::ClientImpl;
  friend class internal::ConsumerImpl;
  friend class Client;
  explicit Stream(std::shared_ptr<internal::Shard> s);
  std::shared_ptr<internal::Shard> shard_;
};

class Client {
 public:
  // Opens (creating if needed) the data directory `dir`. For a writer this takes the exclusive
  // claim, runs recovery on every stream found (torn tails truncated, corruption reported, the
  // index and control region rebuilt where missing or damaged) before returning.
  static Result<std::unique_ptr<Client>> Open(const std::string& dir, const Config& cfg = {});
  // Open with concurrency.mode=multi (whatever cfg says): this process joins the directory as
  // one of many writer processes.
  static Result<std::unique_ptr<Client>> OpenMultiProcess(const std::string& dir,
                                                          Config cfg = Config::MultiProcess());
  ~Client();  // closes

  // Flushes per sync.mode, stops background work, releases the claim. Idempotent. Calls after
  // Close fail with CLOSED.
  Status Close();

  // Returns the handle for a stream, registering the prefix in this directory if new.
  // Read-only clients get NOT_FOUND for streams that do not exist.
  Result<Stream*> GetStream(std::string_view name);

  // Appends entries in order; ids_out (if not null) receives entries.size() ids in input
  // order. The batch is all or nothing: on failure no entry of it becomes visible.
  Status Append(Stream* s, std::span<const std::string_view> entries, EntryId* ids_out = nullptr);
  Status Append(std::string_view stream, std::span<const std::string_view> entries,
                EntryId* ids_out = nullptr);
  Status Append(std::string_view stream, std::string_view entry, EntryId* id_out = nullptr) {
    return Append(stream, std::span<const std::string_view>(&entry, 1), id_out);
  }

  // Makes every entry appended so far durable (fdatasync), whatever sync.mode says.
  Status Sync();

  // Routes a key to a stream "<prefix>:shard:<NNNN>" among `shard_count` shards. In single mode
  // this is PickShardStream. In multi-process mode it routes only to shards assigned to this
  // process (the live processes split the shards), so appends to the result do not get
  // NOT_OWNER; the same key may map elsewhere after processes come and go.
  Result<std::string> PickStream(std::string_view prefix, std::string_view key,
                                 uint32_t shard_count);

  // Blocks until `entry` of the stream exists or timeout_ns passes (TIMEOUT).
  Status WaitFor(Stream* s, uint64_t entry, int64_t timeout_ns);

  // Reads one entry. NOT_FOUND beyond the end, before the first retained entry, or in a gap;
  // CORRUPT if the record fails its CRC.
  Status Read(std::string_view stream, uint64_t entry, Entry* out);
  Status Read(Stream* s, uint64_t entry, Entry* out);
  // Reads up to `max` entries from `from` (stopping at the end). Damaged entries are skipped and
  // counted in *corrupt (if not null).
  Status ReadRange(std::string_view stream, uint64_t from, size_t max, std::vector<Entry>* out,
                   uint64_t* corrupt = nullptr);
  // An iterator from entry `from`.
  Result<Iterator> Scan(std::string_view stream, uint64_t from);
  Result<Iterator> Scan(Stream* s, uint64_t from);

  // The next entry number of a stream (entries below it exist or existed). 0 for a stream
  // without entries.
  Result<uint64_t> Length(std::string_view stream);
  // Every stream in the directory, sorted by prefix then shard.
  std::vector<std::string> Streams();
  Result<StreamInfo> Inspect(std::string_view stream);
  // Checks the CRC of every record of every stream; returns the number of bad records and a
  // line per problem (what and where) in *problems.
  Result<uint64_t> Verify(std::vector<std::string>* problems);
  Stats GetStats();
  // Runs a retention pass over the whole directory now (retention.* of this client's Config),
  // waiting for a pass another process is running to finish first. The background pass runs
  // every retention.interval in one writing process at a time. INVALID for a read-only client.
  Result<RetentionReport> RunRetention();
  // What Open found and repaired (torn tails removed, damaged records, gaps, a rebuilt control
  // file), and later takeovers of shards from dead processes, one line each naming the file and
  // offset. Empty for a clean directory.
  std::vector<std::string> RecoveryReport() const;
  // Counts output lines that a capture layered on this client (the LD_PRELOAD shim) could not
  // store and sent to their original destination instead; `comet stats` reports the total of
  // every process as uncaptured_lines. Lock-free.
  void CountUncapturedLines(uint64_t lines);

  const std::string& dir() const;
  const Config& config() const;

 private:
  friend class Consumer;
  friend class internal::ConsumerImpl;
  explicit Client(std::unique_ptr<internal::ClientImpl> impl);
  std::unique_ptr<internal::ClientImpl> impl_;
};

}  // namespace comet
