// The process loop: batches per stream, retries with exponential backoff that never hold up the
// other streams, poison entries isolated and dead-lettered, static assignment, cancellation.
#include <algorithm>
#include <climits>
#include <set>

#include "consumer_impl.h"
#include "env.h"

namespace comet::internal {

// One stream's batch in the loop: its entries stay here (they are views) until acked.
struct ConsumerImpl::Work {
  std::deque<Entry> store;
  std::vector<Message> batch;
  size_t next = 0;          // isolating: the entry handled one by one now
  bool isolating = false;   // the batch failed as a whole: entries are retried one at a time
  uint32_t attempt = 0;     // failures of what is being handled now
  int64_t due = 0;          // monotonic time before which it waits (backoff)
  bool pending() const { return !batch.empty(); }
  std::span<const Message> current() const {
    return isolating ? std::span<const Message>(&batch[next], 1) : std::span<const Message>(batch);
  }
};

namespace {

Status CheckOptions(const ProcessOptions& o) {
  if (o.streams.empty()) return Status::Invalid("process: no streams or patterns given");
  if (o.workers == 0 || o.worker >= o.workers) {
    return Status::Invalid("process: worker " + std::to_string(o.worker) + " of " +
                           std::to_string(o.workers) + "; need worker < workers");
  }
  if (o.batch_size == 0) return Status::Invalid("process: batch_size must be > 0");
  if (o.wait_ns <= 0 || o.retry_backoff_ns < 0 || o.max_backoff_ns < o.retry_backoff_ns) {
    return Status::Invalid("process: wait_ns must be > 0 and 0 <= retry_backoff_ns <= "
                           "max_backoff_ns");
  }
  return Status::Ok();
}

int64_t Backoff(const ProcessOptions& o, uint32_t attempt) {
  int64_t d = o.retry_backoff_ns;
  for (uint32_t i = 0; i < attempt && d < o.max_backoff_ns; i++) d *= 2;
  return std::min(d, o.max_backoff_ns);
}

}  // namespace

// The streams this worker takes: every stream the options name, then the shard list and the
// static assignment applied; sorted so every pass visits them in one order.
Result<std::vector<Cursor*>> ConsumerImpl::Assigned(const ProcessOptions& opts) {
  std::set<Cursor*> seen;
  std::vector<Cursor*> out;
  for (const std::string& p : opts.streams) {
    Result<std::vector<Cursor*>> m = Match(p);
    if (!m.ok()) return m.status();
    for (Cursor* c : *m) {
      const uint32_t shard = c->shard->shard();
      if (!opts.shards.empty() &&
          std::find(opts.shards.begin(), opts.shards.end(), shard) == opts.shards.end()) {
        continue;
      }
      if (shard % opts.workers != opts.worker) continue;
      if (seen.insert(c).second) out.push_back(c);
    }
  }
  return out;
}

Status ConsumerImpl::DeadLetter(Cursor* c, const Message& m, const ProcessOptions& opts) {
  if (opts.dead_letter == ProcessOptions::DeadLetter::kStream) {
    const std::string prefix = c->shard->prefix() + ":dlq";
    if (Status v = ValidatePrefix(prefix); !v.ok()) return v;
    std::string stream = ShardStreamName(prefix, c->shard->shard());
    Status st = client_->Append(stream, m.data);
    if (st.IsNotOwner()) {
      // Multi-process mode: that shard of the dead-letter prefix is another process's.
      Result<std::string> mine = client_->PickStream(prefix, m.stream, 16);
      if (!mine.ok()) return mine.status();
      st = client_->Append(*mine, m.data);
    }
    if (!st.ok()) return st;
  }
  return Status::Ok();
}

Status ConsumerImpl::Process(const Consumer::Handler& handler, const ProcessOptions& opts) {
  if (Status st = CheckOpen(); !st.ok()) return st;
  if (Status st = CheckOptions(opts); !st.ok()) return st;
  if (!handler) return Status::Invalid("process: no handler");
  // Cancellation wakes a blocked wait: it sleeps on the shard table's futex word too.
  std::stop_callback wake(opts.stop, [h = control_->header()] {
    env::FutexWake(&h->shard_count, INT32_MAX);
  });
  auto report = [&](const Status& st, uint32_t attempt) {
    if (opts.on_error) opts.on_error(st, attempt);
  };
  std::unordered_map<Cursor*, Work> work;
  size_t turn = 0;
  while (!opts.stop.stop_requested()) {
    if (Status st = CheckOpen(); !st.ok()) return st;
    Result<std::vector<Cursor*>> cursors = Assigned(opts);
    if (!cursors.ok()) return cursors.status();
    const size_t n = cursors->size();
    bool progressed = false;
    int64_t next_due = INT64_MAX;
    std::vector<Cursor*> idle;  // streams to wait on: nothing pending
    for (size_t i = 0; i < n && !opts.stop.stop_requested(); i++) {
      Cursor* c = (*cursors)[(turn + i) % n];
      Work& w = work[c];
      const int64_t now = env::MonotonicNs();
      if (w.due > now) {
        next_due = std::min(next_due, w.due);
        continue;
      }
      if (!w.pending()) {
        std::vector<Message> batch;
        Status st = ReadFrom(c, opts.batch_size, &w.store, &batch);
        (void)AfterCommit();  // passed-over entries
        if (!st.ok()) {
          report(st, 0);  // this stream waits; the others go on
          w.due = now + Backoff(opts, 0);
          next_due = std::min(next_due, w.due);
          continue;
        }
        if (batch.empty()) {
          idle.push_back(c);
          continue;
        }
        w.batch = std::move(batch);
        w.next = 0;
        w.isolating = false;
        w.attempt = 0;
      }
      progressed = true;
      const std::span<const Message> cur = w.current();
      const int64_t t0 = env::MonotonicNs();
      Handled h = handler(cur);
      if (opts.on_batch) opts.on_batch(cur.size(), env::MonotonicNs() - t0);
      if (h.kind == Handled::kFail) {
        report(h.error, w.attempt);
        if (w.attempt < opts.max_retries) {
          w.due = env::MonotonicNs() + Backoff(opts, w.attempt++);
          next_due = std::min(next_due, w.due);
          continue;
        }
        if (!w.isolating && cur.size() > 1) {
          // Find the poison among them: each entry gets its own retries.
          w.isolating = true;
          w.attempt = 0;
          continue;
        }
      }
      if (h.kind == Handled::kFail || h.kind == Handled::kDeadLetter) {
        if (opts.dead_letter == ProcessOptions::DeadLetter::kStop) return h.error;
        for (const Message& m : cur) {
          if (Status st = DeadLetter(c, m, opts); !st.ok()) {
            report(st, 0);
            return st;
          }
        }
      }
      std::vector<EntryId> ids;
      for (const Message& m : cur) ids.push_back(m.id);
      if (Status st = Ack(ids); !st.ok()) report(st, 0);
      w.attempt = 0;
      w.due = 0;
      if (h.kind == Handled::kStop) return Status::Ok();
      if (w.isolating && ++w.next < w.batch.size()) continue;
      w.batch.clear();
      w.store.clear();  // no segment stays mapped for a batch that is done
    }
    if (n) turn = (turn + 1) % n;
    if (progressed || opts.stop.stop_requested()) continue;
    int64_t wait = opts.wait_ns;
    if (next_due != INT64_MAX) wait = std::clamp<int64_t>(next_due - env::MonotonicNs(), 0, wait);
    if (wait > 0) WaitForData(idle, wait);
  }
  return Status::Ok();
}

}  // namespace comet::internal
