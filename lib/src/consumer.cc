// Consumer: reading streams for a group, acks held until the gaps before them close, commits
// into the control region and the group's file, resets and lag.
#include "consumer_impl.h"

#include <algorithm>

#include "env.h"

namespace comet::internal {

using format::GroupSlot;
using format::OffsetSlot;

namespace {

uint64_t Key(uint32_t prefix_id, uint32_t shard) { return uint64_t{prefix_id} << 32 | shard; }

// "<prefix>:shard:*" -> prefix; an exact stream name -> itself with *exact set.
Status ParsePattern(std::string_view pattern, std::string* prefix, bool* exact) {
  constexpr std::string_view kAll = ":shard:*";
  if (pattern.size() > kAll.size() && pattern.ends_with(kAll)) {
    *prefix = std::string(pattern.substr(0, pattern.size() - kAll.size()));
    *exact = false;
    Status st = ValidatePrefix(*prefix);
    if (!st.ok()) return Status::Invalid("pattern '" + std::string(pattern) + "': " + st.message());
    return Status::Ok();
  }
  Result<StreamName> n = ParseStreamName(pattern);
  if (!n.ok()) {
    return Status::Invalid("'" + std::string(pattern) + "' is neither a stream name nor a " +
                           "pattern <prefix>:shard:*: " + n.status().message());
  }
  *prefix = std::string(pattern);
  *exact = true;
  return Status::Ok();
}

// Moves an offset forward only (acks of two consumers of a group may race).
void CommitForward(OffsetSlot* o, uint64_t to) {
  uint64_t cur = o->committed.load(std::memory_order_acquire);
  while (cur < to && !o->committed.compare_exchange_weak(cur, to, std::memory_order_acq_rel)) {
  }
}

}  // namespace

Cursor* ConsumerImpl::Find(uint32_t prefix_id, uint32_t shard) {
  if (last_ && last_->shard->prefix_id() == prefix_id && last_->shard->shard() == shard) {
    return last_;
  }
  auto it = cursors_.find(Key(prefix_id, shard));
  if (it == cursors_.end()) return nullptr;
  last_ = it->second.get();
  return last_;
}

Status ConsumerImpl::Reposition(Cursor* c, uint64_t at) {
  Result<Iterator> it = client_->Scan(c->stream, at);
  if (!it.ok()) return it.status();
  c->it = std::move(*it);
  c->window.Reset(at);
  c->dirty = false;
  return Status::Ok();
}

Result<Cursor*> ConsumerImpl::GetCursor(Stream* s) {
  if (Cursor* c = Find(s->prefix_id(), s->shard())) return c;
  Result<OffsetSlot*> slot = control_->AcquireOffset(group_, s->prefix_id(), s->shard());
  if (!slot.ok()) {
    return Status(slot.status().code(), "group '" + name_ + "', stream " + s->name() + ": " +
                                            slot.status().message());
  }
  auto c = std::make_unique<Cursor>();
  c->shard = s->shard_;
  c->stream = s;
  c->slot = *slot;
  c->epoch = c->slot->epoch.load(std::memory_order_acquire);
  const uint64_t at = c->slot->committed.load(std::memory_order_acquire);
  if (Status st = Reposition(c.get(), at); !st.ok()) return st;
  c->delivered_hw = at;
  Cursor* raw = c.get();
  cursors_[Key(s->prefix_id(), s->shard())] = std::move(c);
  return raw;
}

Status ConsumerImpl::Follow(Cursor* c) {
  const uint64_t epoch = c->slot->epoch.load(std::memory_order_acquire);
  if (epoch == c->epoch) return Status::Ok();
  c->epoch = epoch;
  return Reposition(c, c->slot->committed.load(std::memory_order_acquire));
}

Result<std::vector<Cursor*>> ConsumerImpl::Match(std::string_view pattern) {
  auto pc = patterns_.find(std::string(pattern));
  const uint32_t seen = control_->shard_count();
  if (pc != patterns_.end() && pc->second.streams_seen == seen) return pc->second.cursors;
  std::string prefix;
  bool exact = false;
  if (Status st = ParsePattern(pattern, &prefix, &exact); !st.ok()) return st;
  if (Status st = impl_->Discover(); !st.ok()) return st;
  std::vector<Cursor*> cursors;
  if (exact) {
    Result<Stream*> s = impl_->FindStream(prefix);
    if (!s.ok() && !s.status().IsNotFound()) return s.status();
    if (s.ok()) {
      Result<Cursor*> c = GetCursor(*s);
      if (!c.ok()) return c.status();
      cursors.push_back(*c);
    }
  } else {
    std::vector<std::shared_ptr<Shard>> shards = impl_->AllShards();
    std::sort(shards.begin(), shards.end(),
              [](const auto& a, const auto& b) { return a->shard() < b->shard(); });
    for (const auto& sh : shards) {
      if (sh->prefix() != prefix) continue;
      Result<Stream*> s = impl_->FindStream(sh->name());
      if (!s.ok()) return s.status();
      Result<Cursor*> c = GetCursor(*s);
      if (!c.ok()) return c.status();
      cursors.push_back(*c);
    }
  }
  PatternCache& cache = patterns_[std::string(pattern)];
  cache.cursors = cursors;
  // A stream takes its slot in the shard table before its directory exists: until this client
  // knows as many streams as the table holds, look again at the next call (and wait briefly).
  discovering_ = impl_->AllShards().size() < seen;
  cache.streams_seen = discovering_ ? UINT32_MAX : seen;
  return cursors;
}

Status ConsumerImpl::ReadFrom(Cursor* c, size_t max, std::deque<Entry>* store,
                              std::vector<Message>* out) {
  if (Status st = Follow(c); !st.ok()) return st;
  uint64_t skipped = 0;
  Status result;
  while (out->size() < max) {
    const uint64_t at = c->it.position();
    if (store->size() <= out->size()) store->resize(out->size() + 1);
    Entry& e = (*store)[out->size()];
    Status st = c->it.Next(&e);
    if (st.ok()) {
      c->window.Deliver();
      out->push_back(Message{e.id, e.timestamp_ns, e.data, c->shard->name()});
      continue;
    }
    if (c->it.position() > at) {
      // Damaged, or deleted before it was read (a gap, or retention): never deliverable.
      skipped += c->it.position() - at;
      c->window.Skip(c->it.position());
      c->dirty = true;
      continue;
    }
    if (!st.IsNotFound()) result = st;  // NOT_FOUND without moving: the end, for now
    break;
  }
  c->delivered_hw = std::max(c->delivered_hw, c->window.end());
  if (skipped) c->slot->skipped.fetch_add(skipped, std::memory_order_relaxed);
  if (c->dirty) to_commit_.push_back(c);
  return result;
}

Status ConsumerImpl::Read(std::string_view pattern, size_t max, std::vector<Message>* out,
                          int64_t timeout_ns) {
  out->clear();
  if (Status st = CheckOpen(); !st.ok()) return st;
  const int64_t deadline = timeout_ns < 0 ? -1 : env::MonotonicNs() + timeout_ns;
  for (;;) {
    Result<std::vector<Cursor*>> cursors = Match(pattern);
    if (!cursors.ok()) return cursors.status();
    PatternCache& cache = patterns_[std::string(pattern)];
    Status first_error;
    const size_t n = cursors->size();
    for (size_t i = 0; i < n && out->size() < max; i++) {
      Cursor* c = (*cursors)[(cache.turn + i) % n];
      Status st = ReadFrom(c, max, &held_, out);
      if (!st.ok() && first_error.ok()) first_error = st;
    }
    if (n) cache.turn = (cache.turn + 1) % n;
    Status committed = AfterCommit();
    if (!out->empty()) return committed;
    if (!first_error.ok()) return first_error;
    if (!committed.ok()) return committed;
    const int64_t left = deadline < 0 ? -1 : deadline - env::MonotonicNs();
    if (max == 0 || (deadline >= 0 && left <= 0)) return Status::Ok();
    WaitForData(*cursors, left);
    if (Status st = CheckOpen(); !st.ok()) return st;
  }
}

void ConsumerImpl::WaitForData(const std::vector<Cursor*>& cursors, int64_t timeout_ns) {
  const int64_t t0 = env::MonotonicNs();
  if (!Spin(cursors, timeout_ns)) Sleep(cursors, timeout_ns);
  const uint64_t max = ctx_->cfg.consumers.wait_spin_ns;
  spin_ns_ = env::MonotonicNs() - t0 <= static_cast<int64_t>(max) ? max : spin_ns_ / 2;
}

// Polls the streams' published counts for up to spin_ns_ (and the timeout); true when one of
// them has an entry this consumer has not read.
bool ConsumerImpl::Spin(const std::vector<Cursor*>& cursors, int64_t timeout_ns) {
  const int64_t spin = static_cast<int64_t>(spin_ns_);
  const int64_t budget = timeout_ns < 0 ? spin : std::min(spin, timeout_ns);
  if (budget <= 0) return false;
  const int64_t until = env::MonotonicNs() + budget;
  for (uint32_t i = 1;; i++) {
    for (const Cursor* c : cursors) {
      if (c->shard->Committed() > c->it.position()) return true;
    }
    __builtin_ia32_pause();
    if (i % 64 == 0 && env::MonotonicNs() >= until) return false;
  }
}

void ConsumerImpl::Sleep(const std::vector<Cursor*>& cursors, int64_t timeout_ns) {
  // Announce as a waiter on every stream (writers wake only announced futexes), then check
  // once more before sleeping: an append between the reads above and here is not slept through.
  std::vector<env::FutexWord> words;
  std::vector<format::ShardSlot*> announced;
  const size_t n = std::min(cursors.size(), env::kMaxFutexWaits - 1);
  bool ready = false;
  for (size_t i = 0; i < n; i++) {
    format::ShardSlot* slot = cursors[i]->shard->slot();
    if (!slot) continue;
    slot->waiters.fetch_add(1, std::memory_order_seq_cst);
    announced.push_back(slot);
    words.push_back({&slot->futex_seq, slot->futex_seq.load(std::memory_order_seq_cst)});
    if (cursors[i]->shard->Committed() > cursors[i]->it.position()) ready = true;
  }
  // A new stream: the shard table grows (its futex word is woken by Acquire).
  format::ControlHeader* h = control_->header();
  words.push_back({&h->shard_count, h->shard_count.load(std::memory_order_seq_cst)});
  // Streams beyond what one futex_waitv takes, and the client closing, are looked at every
  // 10 ms; appends to the streams waited on wake this at once.
  const bool all = n == cursors.size() && !discovering_;
  int64_t wait = all ? 10'000'000 : 1'000'000;
  if (timeout_ns >= 0) wait = std::min(wait, timeout_ns);
  if (!ready) env::FutexWaitAny(words.data(), words.size(), wait);
  for (format::ShardSlot* slot : announced) slot->waiters.fetch_sub(1, std::memory_order_relaxed);
}

bool ConsumerImpl::Commit(Cursor* c) {
  c->dirty = false;
  const uint64_t base = c->window.Advance();
  if (base <= c->slot->committed.load(std::memory_order_acquire)) return false;
  CommitForward(c->slot, base);
  c->slot->updated_ns.store(env::NowNs(), std::memory_order_relaxed);
  return true;
}

// Commits every cursor with new acks, then records the group's change (and, in sync.mode
// always, writes its file before returning).
Status ConsumerImpl::AfterCommit() {
  if (to_commit_.empty()) return Status::Ok();
  bool moved = false;
  for (Cursor* c : to_commit_) {
    if (c->dirty && Commit(c)) moved = true;
  }
  to_commit_.clear();
  if (!moved) return Status::Ok();
  control_->group(group_)->seq.fetch_add(1, std::memory_order_acq_rel);
  if (ctx_->cfg.sync.mode == SyncMode::kAlways) return groups_->FlushGroup(group_, true);
  return Status::Ok();
}

Status ConsumerImpl::Ack(std::span<const EntryId> ids) {
  if (Status st = CheckOpen(); !st.ok()) return st;
  Status bad;
  uint64_t acked = 0;
  Cursor* followed = nullptr;
  for (const EntryId& id : ids) {
    Cursor* c = Find(id.prefix_id, id.shard);
    if (c && c != followed) {
      if (Status st = Follow(c); !st.ok() && bad.ok()) bad = st;
      followed = c;
    }
    if (!c || id.entry >= c->window.end()) {
      if (c && id.entry < c->delivered_hw) continue;  // delivered before a reset
      if (bad.ok()) {
        bad = Status::Invalid("group '" + name_ + "': entry " + std::to_string(id.entry) +
                              " of prefix " + std::to_string(id.prefix_id) + " shard " +
                              std::to_string(id.shard) + (c ? " (" + c->shard->name() + ")" : "") +
                              " was never delivered to this consumer");
      }
      continue;
    }
    if (id.entry < c->window.base()) continue;  // acked before
    c->window.Ack(id.entry);
    acked++;
    if (!c->dirty) {
      c->dirty = true;
      to_commit_.push_back(c);
    }
  }
  if (acked) control_->group(group_)->acked.fetch_add(acked, std::memory_order_relaxed);
  Status st = AfterCommit();
  return bad.ok() ? st : bad;
}

Status ConsumerImpl::Reset(std::string_view pattern, Consumer::From from, uint64_t n) {
  if (Status st = CheckOpen(); !st.ok()) return st;
  Result<std::vector<Cursor*>> cursors = Match(pattern);
  if (!cursors.ok()) return cursors.status();
  if (cursors->empty()) {
    return Status::NotFound("no stream matches '" + std::string(pattern) + "' in " + ctx_->root);
  }
  for (Cursor* c : *cursors) {
    const uint64_t first = c->shard->FirstEntry(), end = c->shard->Committed();
    uint64_t to = n;
    if (from == Consumer::From::kBeginning) to = first;
    if (from == Consumer::From::kBeforeEnd) to = end > n ? std::max(end - n, first) : first;
    c->slot->committed.store(to, std::memory_order_release);
    c->slot->epoch.fetch_add(1, std::memory_order_acq_rel);
    c->slot->updated_ns.store(env::NowNs(), std::memory_order_relaxed);
    if (Status st = Follow(c); !st.ok()) return st;
  }
  control_->group(group_)->seq.fetch_add(1, std::memory_order_acq_rel);
  if (ctx_->cfg.sync.mode == SyncMode::kAlways) return groups_->FlushGroup(group_, true);
  return Status::Ok();
}

Result<uint64_t> ConsumerImpl::Lag(std::string_view pattern) {
  if (Status st = CheckOpen(); !st.ok()) return st;
  Result<std::vector<Cursor*>> cursors = Match(pattern);
  if (!cursors.ok()) return cursors.status();
  uint64_t lag = 0;
  for (Cursor* c : *cursors) {
    const uint64_t from = std::max(c->slot->committed.load(std::memory_order_acquire),
                                   c->shard->FirstEntry());
    const uint64_t end = c->shard->Committed();
    if (end > from) lag += end - from;
  }
  return lag;
}

Result<uint64_t> ConsumerImpl::Committed(std::string_view stream) {
  if (Status st = CheckOpen(); !st.ok()) return st;
  Result<Stream*> s = impl_->FindStream(stream);
  if (!s.ok()) return s.status();
  OffsetSlot* o = control_->FindOffset(group_, (*s)->prefix_id(), (*s)->shard());
  return o ? o->committed.load(std::memory_order_acquire) : 0;
}

Status ConsumerImpl::Close() {
  if (closed_) return Status::Ok();
  closed_ = true;
  held_.clear();
  if (ctx_->closed.load(std::memory_order_acquire)) return Status::Ok();  // the client flushed
  if (ctx_->cfg.sync.mode == SyncMode::kNone) return groups_->FlushGroup(group_, false);
  return groups_->FlushGroup(group_, true);
}

}  // namespace comet::internal

namespace comet {

using internal::ConsumerImpl;

Consumer::Consumer(std::unique_ptr<ConsumerImpl> impl) : impl_(std::move(impl)) {}
Consumer::~Consumer() { (void)Close(); }

Result<std::unique_ptr<Consumer>> Consumer::Open(Client* client, std::string_view group) {
  if (!client) return Status::Invalid("null client");
  if (Status st = shm::ValidateGroupName(group); !st.ok()) return st;
  internal::ClientImpl* impl = client->impl_.get();
  if (Status st = impl->CheckOpen(); !st.ok()) return st;
  if (!impl->groups()) {
    return Status::Invalid("consumer group '" + std::string(group) + "' on " + client->dir() +
                           ": a read-only client cannot commit offsets; open it writable "
                           "(concurrency.mode=multi to share the directory with its writers)");
  }
  Result<uint32_t> g = impl->ctx_->control->AcquireGroup(group);
  if (!g.ok()) return g.status();
  return std::unique_ptr<Consumer>(
      new Consumer(std::make_unique<ConsumerImpl>(client, *g, std::string(group))));
}

const std::string& Consumer::group() const { return impl_->name(); }

Status Consumer::Read(std::string_view pattern, size_t max, std::vector<Message>* out,
                      int64_t timeout_ns) {
  return impl_->Read(pattern, max, out, timeout_ns);
}
Status Consumer::Ack(std::span<const EntryId> ids) { return impl_->Ack(ids); }
Status Consumer::Ack(std::span<const Message> messages) {
  std::vector<EntryId> ids;
  ids.reserve(messages.size());
  for (const Message& m : messages) ids.push_back(m.id);
  return impl_->Ack(ids);
}
Status Consumer::Reset(std::string_view pattern, From from, uint64_t n) {
  return impl_->Reset(pattern, from, n);
}
Status Consumer::Process(const Handler& handler, const ProcessOptions& options) {
  return impl_->Process(handler, options);
}
Result<uint64_t> Consumer::Lag(std::string_view pattern) { return impl_->Lag(pattern); }
Result<uint64_t> Consumer::Committed(std::string_view stream) { return impl_->Committed(stream); }
Status Consumer::Close() { return impl_->Close(); }

}  // namespace comet
