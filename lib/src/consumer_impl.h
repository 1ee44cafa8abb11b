// ConsumerImpl: what a Consumer is made of. Reading, acks and commits are in consumer.cc, the
// process loop in process.cc.
#pragma once

#include <bit>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "client_impl.h"
#include "comet/consumer.h"

namespace comet::internal {

// Entries of one stream this consumer delivered since the committed offset: [base, end), one
// bit per entry, set once acked (or skipped). Everything below base is acked.
class AckWindow {
 public:
  void Reset(uint64_t at) {
    origin_ = at & ~uint64_t{63};
    base_ = end_ = at;
    bits_.clear();
    if (at != origin_) bits_.push_back((uint64_t{1} << (at - origin_)) - 1);
  }
  uint64_t base() const { return base_; }
  uint64_t end() const { return end_; }
  // The next entry, e == end(), was delivered.
  void Deliver() { Grow(++end_); }
  // Entries [end(), to) were passed over: they count as acked.
  void Skip(uint64_t to) {
    if (to <= end_) return;
    if (base_ == end_) {
      Reset(to);
      return;
    }
    Grow(to);
    for (uint64_t e = end_; e < to;) {
      const uint64_t rel = e - origin_, bit = rel & 63, n = std::min<uint64_t>(64 - bit, to - e);
      const uint64_t mask = n == 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1) << bit;
      bits_[rel >> 6] |= mask;
      e += n;
    }
    end_ = to;
  }
  // REQUIRES: base() <= e < end().
  void Ack(uint64_t e) {
    const uint64_t rel = e - origin_;
    bits_[rel >> 6] |= uint64_t{1} << (rel & 63);
  }
  // Moves base past every acked entry at its front; returns the new base.
  uint64_t Advance() {
    while (base_ < end_) {
      const uint64_t rel = base_ - origin_, bit = rel & 63;
      const int ones = std::countr_one(bits_[rel >> 6] >> bit);
      const uint64_t room = 64 - bit;
      base_ += std::min<uint64_t>(static_cast<uint64_t>(ones), room);
      if (static_cast<uint64_t>(ones) < room) break;
    }
    base_ = std::min(base_, end_);
    while (!bits_.empty() && origin_ + 64 <= base_) {
      bits_.pop_front();
      origin_ += 64;
    }
    return base_;
  }

 private:
  void Grow(uint64_t end) {
    while (origin_ + 64 * bits_.size() < end) bits_.push_back(0);
  }
  uint64_t origin_ = 0, base_ = 0, end_ = 0;  // origin_: a multiple of 64, the first word's
  std::deque<uint64_t> bits_;
};

// One stream as this consumer reads it.
struct Cursor {
  std::shared_ptr<Shard> shard;
  Stream* stream = nullptr;
  format::OffsetSlot* slot = nullptr;
  Iterator it;              // at the next entry to deliver (window.end())
  uint64_t epoch = 0;       // the slot's reset epoch this cursor follows
  uint64_t delivered_hw = 0;  // one past the highest entry ever delivered (acks of entries
                              // delivered before a reset are ignored, not refused)
  AckWindow window;
  bool dirty = false;       // acked since the last commit
};

class ConsumerImpl {
 public:
  ConsumerImpl(Client* client, uint32_t group, std::string name)
      : client_(client),
        impl_(client->impl_.get()),
        ctx_(impl_->ctx_),
        control_(ctx_->control_owner),
        groups_(impl_->groups()),
        group_(group),
        name_(std::move(name)),
        spin_ns_(ctx_->cfg.consumers.wait_spin_ns) {}

  const std::string& name() const { return name_; }
  Status Read(std::string_view pattern, size_t max, std::vector<Message>* out,
              int64_t timeout_ns);
  Status Ack(std::span<const EntryId> ids);
  Status Reset(std::string_view pattern, Consumer::From from, uint64_t n);
  Status Process(const Consumer::Handler& handler, const ProcessOptions& opts);
  Result<uint64_t> Lag(std::string_view pattern);
  Result<uint64_t> Committed(std::string_view stream);
  Status Close();

 private:
  Status CheckOpen() const {
    if (closed_) return Status::Closed("consumer of group '" + name_ + "' is closed");
    // The context outlives the client: once it says closed, impl_ may be gone.
    if (ctx_->closed.load(std::memory_order_acquire)) {
      return Status::Closed("client for " + ctx_->root + " is closed");
    }
    return impl_->CheckOpen();
  }
  // The streams a pattern names, discovering streams created since the last look.
  Result<std::vector<Cursor*>> Match(std::string_view pattern);
  Result<Cursor*> GetCursor(Stream* s);
  Cursor* Find(uint32_t prefix_id, uint32_t shard);
  // Drops what the cursor holds when its offset was reset (by anyone).
  Status Follow(Cursor* c);
  Status Reposition(Cursor* c, uint64_t at);
  // Reads from one cursor into *store (entries) and *out (views of them) until out holds max;
  // OK at its end.
  Status ReadFrom(Cursor* c, size_t max, std::deque<Entry>* store, std::vector<Message>* out);
  // Commits the cursor's acked front; true if the offset moved.
  bool Commit(Cursor* c);
  Status AfterCommit();
  // Waits until an append to one of the cursors' streams, a new stream, or timeout_ns: spins
  // first (consumers.wait_spin, adapted in spin_ns_), then sleeps on the futex words.
  void WaitForData(const std::vector<Cursor*>& cursors, int64_t timeout_ns);
  bool Spin(const std::vector<Cursor*>& cursors, int64_t timeout_ns);
  void Sleep(const std::vector<Cursor*>& cursors, int64_t timeout_ns);
  // The process loop's pieces (process.cc).
  struct Work;
  Result<std::vector<Cursor*>> Assigned(const ProcessOptions& opts);
  Status DeadLetter(Cursor* c, const Message& m, const ProcessOptions& opts);

  Client* const client_;
  ClientImpl* const impl_;
  const std::shared_ptr<ShardContext> ctx_;
  const std::shared_ptr<shm::ControlRegion> control_;
  const std::shared_ptr<GroupStore> groups_;
  const uint32_t group_;
  const std::string name_;
  uint64_t spin_ns_;  // the next wait's spin budget (WaitForData)
  bool closed_ = false;

  std::unordered_map<uint64_t, std::unique_ptr<Cursor>> cursors_;  // by prefix_id << 32 | shard
  Cursor* last_ = nullptr;                                         // Ack's one-entry cache
  struct PatternCache {
    uint32_t streams_seen = UINT32_MAX;  // control region shard_count at the last match
    std::vector<Cursor*> cursors;
    size_t turn = 0;                     // where the next Read starts
  };
  std::unordered_map<std::string, PatternCache> patterns_;
  bool discovering_ = false;  // the last Match found fewer streams than the shard table holds
  std::deque<Entry> held_;  // what the last Read's messages point into (a deque: growing it
                            // never moves an entry, so views into earlier ones stay valid)
  std::vector<Cursor*> to_commit_;
};

}  // namespace comet::internal
