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
#include <memory>
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

class Consumer {
 public:
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
