// Consumer groups: independent, durable read positions over streams, with at-least-once
// delivery.
//
// A group has one committed offset per stream: the next entry to deliver, every entry below it
// acked (or passed over because it was damaged or deleted before it was read). Offsets live in
// the control region, shared at once by every process of the directory, and in a durable,
// checksummed file per group (DIR/groups/), written after commits per sync.mode (always: before
// Ack returns; interval: by the background syncer every sync.interval; none: without fdatasync,
// every 100 ms), so a control region that is rebuilt or deleted loses none of them.
//
// Delivery: a Consumer delivers each entry of a stream once, in order, from the group's
// committed offset; an ack never moves the offset past an entry this consumer delivered and
// was not acked (acks out of order are held until the gap closes). Entries delivered and not
// acked when the consumer is closed or its process dies are delivered again to the next
// consumer of the group. Consumers of one group that read the same stream at once each deliver
// it (use static assignment in Process to split streams among them).
//
// Thread safety: a Consumer is not thread-safe; use one per thread (they may share a group).
// Lifetimes: a Consumer must not outlive its Client; after the Client is closed its calls fail
// with CLOSED. Messages are views valid until the Consumer's next Read or Close.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "comet/client.h"
#include "comet/status.h"
#include "comet/stream.h"

namespace comet {

namespace internal {
class ConsumerImpl;
}

// One delivered entry. `data` points into the segment mapping for an uncompressed entry (zero
// copy) and into the consumer's buffer for a compressed one; `stream` is the stream's name.
struct Message {
  EntryId id;
  int64_t timestamp_ns = 0;
  std::string_view data;
  std::string_view stream;
};

// What a Process handler says about its batch. A Status converts: OK is Done, a failure Fail.
struct Handled {
  enum Kind {
    kDone,        // processed: the batch is acked
    kFail,        // failed: retried with backoff, then handed to the dead-letter policy
    kDeadLetter,  // poison: handed to the dead-letter policy now, without retries
    kStop,        // processed: the batch is acked and Process returns OK
  };
  Kind kind = kDone;
  Status error;  // kFail, kDeadLetter: why (for the error callback)
  Handled() = default;
  Handled(Status st)  // NOLINT: implicit by design
      : kind(st.ok() ? kDone : kFail), error(std::move(st)) {}
  static Handled Done() { return Handled(); }
  static Handled Fail(Status why) { return Handled(kFail, std::move(why)); }
  static Handled DeadLetter(Status why) { return Handled(kDeadLetter, std::move(why)); }
  static Handled Stop() { return Handled(kStop, Status()); }

 private:
  Handled(Kind k, Status st) : kind(k), error(std::move(st)) {}
};

struct ProcessOptions {
  // What to consume: stream names and/or patterns "<prefix>:shard:*" (shards created while the
  // loop runs are picked up). At least one.
  std::vector<std::string> streams;
  // When not empty, only these shard numbers (of every stream above).
  std::vector<uint32_t> shards;
  // Static assignment: this worker takes the shards s with s % workers == worker, so workers
  // 0..workers-1 of a group split the shards with no overlap.
  uint32_t worker = 0, workers = 1;
  // At most this many entries per handler call; a batch comes from one stream.
  size_t batch_size = 100;
  // How long one wait for new entries lasts before the loop looks at its streams again. The
  // wait ends at once on an append to any of them (futex), or on cancellation.
  int64_t wait_ns = 1'000'000'000;
  // A failed batch is retried up to max_retries times (the handler sees it max_retries + 1
  // times), after retry_backoff_ns, doubling per attempt up to max_backoff_ns. Other streams go
  // on meanwhile. A batch of several entries that still fails is retried entry by entry, so
  // that only the poison entries reach the dead-letter policy.
  uint32_t max_retries = 3;
  int64_t retry_backoff_ns = 10'000'000;
  int64_t max_backoff_ns = 1'000'000'000;
  // What becomes of an entry that failed every retry (or that the handler called poison):
  enum class DeadLetter {
    kStream,  // appended to "<prefix>:dlq:shard:<same shard>" (its payload), then acked
    kDrop,    // acked, nothing kept
    kStop,    // Process returns the handler's error; the entry stays unacked
  };
  DeadLetter dead_letter = DeadLetter::kStream;
  // Called for every handler failure with its attempt (0 for the first), and for read and
  // dead-letter failures (attempt 0).
  std::function<void(const Status& error, uint32_t attempt)> on_error;
  // Called after every handler call with the batch size and the handler's duration.
  std::function<void(size_t size, int64_t duration_ns)> on_batch;
  // Cancellation: when stop is requested, Process returns OK as soon as the current handler
  // call returns (a blocked wait ends at once).
  std::stop_token stop;
};

class Consumer {
 public:
  using Handler = std::function<Handled(std::span<const Message> batch)>;
  // Joins group `group` (1 to 255 bytes; created on first use) on a writable client. INVALID
  // for a bad name or a read-only client; FULL when the control region's group table is full.
  static Result<std::unique_ptr<Consumer>> Open(Client* client, std::string_view group);
  ~Consumer();  // Close()
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  const std::string& group() const;

  // Reads up to `max` entries not yet delivered by this consumer from the streams `pattern`
  // names: one stream ("events:shard:0003") or every shard of a prefix ("events:shard:*"; the
  // prefix must match exactly; shards created later are found). Streams are visited in turn
  // from where the last call stopped, so a busy one does not starve the others. When nothing
  // is available it waits up to timeout_ns (negative: forever) for an append to any of them,
  // sleeping on the control region's futexes. *out is replaced; it is empty (OK) on timeout.
  // Damaged entries, and entries deleted before they were read, are passed over and counted
  // (stats: skipped). A stream that fails to read does not stop the others: its error is
  // returned only when no other stream delivered anything.
  Status Read(std::string_view pattern, size_t max, std::vector<Message>* out,
              int64_t timeout_ns = 0);

  // Acks delivered entries; commits each stream's offset up to its first entry not acked.
  // Acking an entry again is harmless; acking an id this consumer never delivered is INVALID
  // (the other ids of the call are still acked).
  Status Ack(std::span<const EntryId> ids);
  Status Ack(const EntryId& id) { return Ack(std::span<const EntryId>(&id, 1)); }
  Status Ack(std::span<const Message> messages);

  // Moves the group's offset of every stream `pattern` names: to entry `n` (kEntry), to the
  // first stored entry (kBeginning), or to n entries before the end (kBeforeEnd; the first
  // stored entry if fewer). Every consumer of the group, in any process, drops what it
  // delivered and not acked and reads on from there.
  enum class From { kEntry, kBeginning, kBeforeEnd };
  Status Reset(std::string_view pattern, From from, uint64_t n = 0);

  // The process loop: reads the streams options.streams names, calls handler with batches of
  // one stream and acks what it handled, until the handler returns Stop (OK), options.stop is
  // requested (OK), or an error it cannot go on from (bad options, a closed client, a dead
  // letter it could not store, DeadLetter::kStop). A stream whose reads or handler fail never
  // holds up the others.
  Status Process(const Handler& handler, const ProcessOptions& options);

  // Entries stored and not yet committed by the group, summed over the streams `pattern`
  // names (entries deleted before they were read do not count).
  Result<uint64_t> Lag(std::string_view pattern);
  // The group's committed offset for one stream (0 if it never committed there).
  Result<uint64_t> Committed(std::string_view stream);

  // Commits what is acked, writes the group's file per sync.mode and releases the consumer.
  // Entries delivered and not acked are delivered again to the next consumer of the group.
  // Idempotent; later calls fail with CLOSED.
  Status Close();

 private:
  explicit Consumer(std::unique_ptr<internal::ConsumerImpl> impl);
  std::unique_ptr<internal::ConsumerImpl> impl_;
};

}  // namespace comet
