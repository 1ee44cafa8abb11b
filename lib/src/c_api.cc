// The C ABI: a thin layer over the C++ API. No exception crosses it; every failure sets the
// thread's last-error message.
#include "comet/comet.h"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

#include "comet/browse.h"
#include "comet/client.h"
#include "comet/consumer.h"
#include "comet/stats.h"
#include "env.h"
#include "hot.h"

struct comet_config {
  comet::Config cfg;
};

struct comet_stream {
  comet::Client* client;
  comet::Stream* stream;
};

struct comet_client {
  std::unique_ptr<comet::Client> client;
  std::mutex streams_mu;  // guards streams
  std::unordered_map<comet::Stream*, std::unique_ptr<comet_stream>> streams;
};

struct comet_scan {
  comet::Iterator it;
  std::string stream;
  // The entries the last comet_scan_next delivered: they own (or keep mapped) the bytes the
  // messages point at.
  std::vector<comet::Entry> held;
  uint64_t skipped = 0;
};

struct comet_consumer {
  std::unique_ptr<comet::Consumer> consumer;
  std::vector<comet::Message> delivered;  // the last read's views (their bytes are the consumer's)
};

namespace {

thread_local std::string last_error;

int Fail(const comet::Status& st) {
  last_error = st.message();
  return st.raw();
}

int Fail(int code, std::string msg) {
  last_error = std::move(msg);
  return code;
}

COMET_HOT int Done(const comet::Status& st) { return st.ok() ? COMET_OK : Fail(st); }

// Copies a NUL-terminated name into the caller's buffer.
int CopyOut(const std::string& name, char* buf, size_t cap) {
  if (name.size() + 1 > cap) {
    return Fail(COMET_ERR_TOO_LARGE, "stream name needs " + std::to_string(name.size() + 1) +
                                         " bytes; the buffer holds " + std::to_string(cap));
  }
  std::memcpy(buf, name.c_str(), name.size() + 1);
  return COMET_OK;
}

template <class F>
int Guard(F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return Fail(COMET_ERR_NOMEM, "out of memory");
  } catch (const std::exception& e) {
    return Fail(COMET_ERR_IO, std::string("internal error: ") + e.what());
  }
}

// Checks a C batch and hands it to `append` as views: on the stack for the common small batch,
// in a per-thread buffer beyond that.
template <class F>
COMET_HOT int AppendBatch(const char* what, const void* const* data, const size_t* lens,
                          size_t n, F&& append) {
  if (n > 0 && (!data || !lens)) return Fail(COMET_ERR_INVALID, std::string(what) + ": null argument");
  if (n > comet::kMaxBatchEntries) {
    return Fail(COMET_ERR_INVALID, std::string(what) + ": a batch of " + std::to_string(n) +
                                       " entries; at most " +
                                       std::to_string(comet::kMaxBatchEntries) + " per call");
  }
  return Guard([&]() -> int {
    constexpr size_t kOnStack = 8;
    std::string_view small[kOnStack];
    std::string_view* views = small;
    if (n > kOnStack) {
      thread_local std::vector<std::string_view> large;  // reached only for larger batches
      large.resize(n);
      views = large.data();
    }
    for (size_t i = 0; i < n; i++) {
      if (!data[i] && lens[i] > 0) {
        return Fail(COMET_ERR_INVALID, std::string(what) + ": entry " + std::to_string(i) +
                                           " has a null pointer and a non-zero length");
      }
      views[i] = std::string_view(static_cast<const char*>(data[i]), lens[i]);
    }
    return Done(append(std::span<const std::string_view>(views, n)));
  });
}

comet_message ToMessage(const comet::EntryId& id, int64_t timestamp_ns, std::string_view data,
                        const char* stream) {
  return comet_message{comet_id{id.prefix_id, id.shard, id.entry}, timestamp_ns, data.data(),
                       data.size(), stream};
}

// A size-versioned struct from the caller holds at least its size field.
int CheckSized(size_t size, const char* what) {
  if (size >= 8) return COMET_OK;
  return Fail(COMET_ERR_INVALID, std::string(what) + ": a struct of " + std::to_string(size) +
                                     " bytes; at least 8 (its size field) expected");
}

// A struct versioned by size: fills the caller's `size` bytes with what fits of `full`, zeroes
// fields this library does not know, and records in out->size how many bytes it filled.
template <class T>
int FillSized(const T& full, T* out, size_t size, const char* what) {
  if (int rc = CheckSized(size, what); rc != COMET_OK) return rc;
  const size_t n = std::min(size, sizeof(T));
  std::memset(static_cast<void*>(out), 0, size);
  std::memcpy(static_cast<void*>(out), &full, n);
  out->size = static_cast<uint32_t>(n);
  return COMET_OK;
}

}  // namespace

static_assert(COMET_ERR_INVALID == static_cast<int>(comet::Code::kInvalid));
static_assert(COMET_ERR_VERSION == static_cast<int>(comet::Code::kVersion));
static_assert(COMET_ERR_NOMEM == static_cast<int>(comet::Code::kNoMem));
static_assert(sizeof(comet_id) == 16 && sizeof(comet::EntryId) == 16);
static_assert(offsetof(comet_id, prefix_id) == offsetof(comet::EntryId, prefix_id));
static_assert(offsetof(comet_id, shard) == offsetof(comet::EntryId, shard));
static_assert(offsetof(comet_id, entry) == offsetof(comet::EntryId, entry));
static_assert(COMET_MAX_BATCH == comet::kMaxBatchEntries);

extern "C" {

int comet_version(void) { return COMET_VERSION; }

comet_config* comet_config_new(void) {
  try {
    return new comet_config();
  } catch (...) {
    return nullptr;
  }
}

int comet_config_set(comet_config* cfg, const char* key, const char* value) {
  if (!cfg || !key || !value) return Fail(COMET_ERR_INVALID, "comet_config_set: null argument");
  return Guard([&]() -> int { return Done(cfg->cfg.Set(key, value)); });
}

void comet_config_free(comet_config* cfg) { delete cfg; }

int comet_open(const char* dir, const comet_config* cfg, comet_client** out) {
  if (!dir || !out) return Fail(COMET_ERR_INVALID, "comet_open: null argument");
  return Guard([&]() -> int {
    comet::Result<std::unique_ptr<comet::Client>> c =
        comet::Client::Open(dir, cfg ? cfg->cfg : comet::Config());
    if (!c.ok()) return Fail(c.status());
    *out = new comet_client();
    (*out)->client = std::move(*c);
    return COMET_OK;
  });
}

int comet_close(comet_client* c) {
  if (!c) return Fail(COMET_ERR_INVALID, "comet_close: null client");
  int rc = Guard([&]() -> int { return Done(c->client->Close()); });
  delete c;
  return rc;
}

COMET_HOT int comet_append(comet_client* c, const char* stream, const void* const* data,
                           const size_t* lens, size_t n, comet_id* ids_out) {
  if (!c || !stream) return Fail(COMET_ERR_INVALID, "comet_append: null argument");
  // comet_id and EntryId have the same layout (asserted above).
  return AppendBatch("comet_append", data, lens, n, [&](std::span<const std::string_view> v) {
    return c->client->Append(std::string_view(stream), v,
                             reinterpret_cast<comet::EntryId*>(ids_out));
  });
}

int comet_stream_open(comet_client* c, const char* name, comet_stream** out) {
  if (!c || !name || !out) return Fail(COMET_ERR_INVALID, "comet_stream_open: null argument");
  return Guard([&]() -> int {
    comet::Result<comet::Stream*> s = c->client->GetStream(name);
    if (!s.ok()) return Fail(s.status());
    std::lock_guard lk(c->streams_mu);
    std::unique_ptr<comet_stream>& h = c->streams[*s];
    if (!h) h.reset(new comet_stream{c->client.get(), *s});
    *out = h.get();
    return COMET_OK;
  });
}

COMET_HOT int comet_stream_append(comet_stream* s, const void* const* data, const size_t* lens,
                                  size_t n, comet_id* ids_out) {
  if (!s) return Fail(COMET_ERR_INVALID, "comet_stream_append: null stream handle");
  return AppendBatch("comet_stream_append", data, lens, n,
                     [&](std::span<const std::string_view> v) {
                       return s->client->Append(s->stream, v,
                                                reinterpret_cast<comet::EntryId*>(ids_out));
                     });
}

int comet_scan_open(comet_client* c, const char* stream, uint64_t from_entry, comet_scan** out) {
  if (!c || !stream || !out) return Fail(COMET_ERR_INVALID, "comet_scan_open: null argument");
  return Guard([&]() -> int {
    comet::Result<comet::Iterator> it = c->client->Scan(stream, from_entry);
    if (!it.ok()) return Fail(it.status());
    *out = new comet_scan{std::move(*it), stream, {}, 0};
    return COMET_OK;
  });
}

int comet_scan_next(comet_scan* s, comet_message* out, size_t max, int64_t timeout_ns) {
  if (!s || (!out && max > 0)) return Fail(COMET_ERR_INVALID, "comet_scan_next: null argument");
  return Guard([&]() -> int {
    const size_t limit = std::min<size_t>(max, INT_MAX);  // the count is returned as an int
    int64_t deadline = -1;
    size_t n = 0;
    while (n < limit) {
      if (n == s->held.size()) s->held.emplace_back();
      const uint64_t at = s->it.position();
      comet::Status st = s->it.Next(&s->held[n]);
      if (st.ok()) {
        n++;
        continue;
      }
      if (st.IsCorrupt()) {
        s->skipped++;
        continue;
      }
      if (st.IsNotFound() && s->it.position() != at) continue;  // moved past a gap
      if (!st.IsNotFound()) {
        if (n > 0) break;  // deliver what was read; the failure repeats on the next call
        return Fail(st);
      }
      // The end of the stream for now.
      if (n > 0 || timeout_ns == 0) break;
      int64_t left = -1;
      if (timeout_ns > 0) {
        const int64_t now = comet::env::MonotonicNs();
        if (deadline < 0) deadline = now + timeout_ns;
        left = deadline - now;
        if (left <= 0) break;
      }
      st = s->it.Wait(left);
      if (st.code() == comet::Code::kTimeout) break;
      if (!st.ok()) return Fail(st);
    }
    // Filled once the entries are in place: growing `held` above may move them.
    for (size_t i = 0; i < n; i++) {
      const comet::Entry& e = s->held[i];
      out[i] = ToMessage(e.id, e.timestamp_ns, e.data, s->stream.c_str());
    }
    return static_cast<int>(n);
  });
}

int comet_scan_last(comet_client* c, const char* stream, uint64_t n, comet_scan** out) {
  if (!c || !stream || !out) return Fail(COMET_ERR_INVALID, "comet_scan_last: null argument");
  return Guard([&]() -> int {
    comet::Result<uint64_t> length = c->client->Length(stream);
    if (!length.ok()) return Fail(length.status());
    return comet_scan_open(c, stream, *length > n ? *length - n : 0, out);
  });
}

uint64_t comet_scan_position(const comet_scan* s) { return s ? s->it.position() : 0; }

uint64_t comet_scan_skipped(const comet_scan* s) { return s ? s->skipped : 0; }

int comet_scan_close(comet_scan* s) {
  delete s;
  return COMET_OK;
}

int comet_consumer_open(comet_client* c, const char* group, comet_consumer** out) {
  if (!c || !group || !out) return Fail(COMET_ERR_INVALID, "comet_consumer_open: null argument");
  return Guard([&]() -> int {
    comet::Result<std::unique_ptr<comet::Consumer>> k =
        comet::Consumer::Open(c->client.get(), group);
    if (!k.ok()) return Fail(k.status());
    *out = new comet_consumer{std::move(*k), {}};
    return COMET_OK;
  });
}

int comet_consumer_read(comet_consumer* k, const char* pattern, comet_message* out, size_t max,
                        int timeout_ms) {
  if (!k || !pattern || (!out && max > 0)) {
    return Fail(COMET_ERR_INVALID, "comet_consumer_read: null argument");
  }
  return Guard([&]() -> int {
    const size_t limit = std::min<size_t>(max, INT_MAX);  // the count is returned as an int
    const int64_t timeout_ns = timeout_ms < 0 ? -1 : int64_t{timeout_ms} * 1'000'000;
    comet::Status st = k->consumer->Read(pattern, limit, &k->delivered, timeout_ns);
    if (!st.ok()) return Fail(st);
    for (size_t i = 0; i < k->delivered.size(); i++) {
      const comet::Message& m = k->delivered[i];
      // m.stream views a whole std::string (the stream's name): NUL-terminated.
      out[i] = ToMessage(m.id, m.timestamp_ns, m.data, m.stream.data());
    }
    return static_cast<int>(k->delivered.size());
  });
}

int comet_consumer_ack(comet_consumer* k, const comet_id* ids, size_t n) {
  if (!k || (!ids && n > 0)) return Fail(COMET_ERR_INVALID, "comet_consumer_ack: null argument");
  return Guard([&]() -> int {
    // comet_id and EntryId have the same layout (asserted above).
    return Done(k->consumer->Ack(
        std::span<const comet::EntryId>(reinterpret_cast<const comet::EntryId*>(ids), n)));
  });
}

int comet_consumer_lag(comet_consumer* k, const char* pattern, uint64_t* lag_out) {
  if (!k || !pattern || !lag_out) {
    return Fail(COMET_ERR_INVALID, "comet_consumer_lag: null argument");
  }
  return Guard([&]() -> int {
    comet::Result<uint64_t> lag = k->consumer->Lag(pattern);
    if (!lag.ok()) return Fail(lag.status());
    *lag_out = *lag;
    return COMET_OK;
  });
}

int comet_consumer_close(comet_consumer* k) {
  if (!k) return COMET_OK;
  const int rc = Guard([&]() -> int { return Done(k->consumer->Close()); });
  delete k;
  return rc;
}

int comet_sync(comet_client* c) {
  if (!c) return Fail(COMET_ERR_INVALID, "comet_sync: null client");
  return Guard([&]() -> int { return Done(c->client->Sync()); });
}

int comet_read(comet_client* c, const char* stream, uint64_t entry, void* buf, size_t cap,
               size_t* len_out, int64_t* timestamp_ns_out) {
  if (!c || !stream || (!buf && cap > 0)) return Fail(COMET_ERR_INVALID, "comet_read: null argument");
  return Guard([&]() -> int {
    comet::Entry e;
    comet::Status st = c->client->Read(std::string_view(stream), entry, &e);
    if (!st.ok()) return Fail(st);
    if (len_out) *len_out = e.data.size();
    if (timestamp_ns_out) *timestamp_ns_out = e.timestamp_ns;
    if (e.data.size() > cap) {
      return Fail(COMET_ERR_TOO_LARGE, std::string(stream) + ": entry " + std::to_string(entry) +
                                           " is " + std::to_string(e.data.size()) +
                                           " bytes; the buffer holds " + std::to_string(cap));
    }
    if (!e.data.empty()) std::memcpy(buf, e.data.data(), e.data.size());
    return COMET_OK;
  });
}

int comet_length(comet_client* c, const char* stream, uint64_t* out) {
  if (!c || !stream || !out) return Fail(COMET_ERR_INVALID, "comet_length: null argument");
  return Guard([&]() -> int {
    comet::Result<uint64_t> n = c->client->Length(stream);
    if (!n.ok()) return Fail(n.status());
    *out = *n;
    return COMET_OK;
  });
}

int comet_list_streams(comet_client* c, comet_text_fn fn, void* arg) {
  if (!c || !fn) return Fail(COMET_ERR_INVALID, "comet_list_streams: null argument");
  return Guard([&]() -> int {
    const std::vector<std::string> names = c->client->Streams();
    for (const std::string& name : names) fn(arg, name.c_str());
    return static_cast<int>(std::min<size_t>(names.size(), INT_MAX));
  });
}

int comet_inspect(comet_client* c, const char* stream, comet_stream_info* out, size_t size) {
  if (!c || !stream || !out) return Fail(COMET_ERR_INVALID, "comet_inspect: null argument");
  return Guard([&]() -> int {
    comet::Result<comet::StreamInfo> info = c->client->Inspect(stream);
    if (!info.ok()) return Fail(info.status());
    comet_stream_info r{};
    r.prefix_id = info->first.prefix_id;
    r.shard = info->first.shard;
    r.first_entry = info->first.entry;
    r.next_entry = info->next_entry;
    r.segments = info->segments.size();
    for (const comet::SegmentInfo& seg : info->segments) {
      r.entries += seg.entries;
      r.bytes += seg.bytes;
    }
    r.gaps = info->gaps.size();
    for (const auto& [from, to] : info->gaps) r.missing_entries += to - from;
    r.corrupt_records = info->corrupt_records;
    comet::Result<comet::TimeSpan> span = comet::StreamTimeSpan(c->client.get(), stream);
    if (!span.ok()) return Fail(span.status());
    r.oldest_ns = span->oldest_ns;
    r.newest_ns = span->newest_ns;
    r.oldest_entry = span->oldest_entry;
    r.newest_entry = span->newest_entry;
    return FillSized(r, out, size, "comet_inspect");
  });
}

int comet_get_stats(comet_client* c, comet_stats* out, size_t size) {
  if (!c || !out) return Fail(COMET_ERR_INVALID, "comet_get_stats: null argument");
  return Guard([&]() -> int {
    comet::Result<comet::DirectoryStats> s = comet::ReadStats(c->client->dir());
    if (!s.ok()) return Fail(s.status());
    comet_stats r{};
    for (const comet::ProcessInfo& p : s->processes) r.live_processes += p.live ? 1 : 0;
    r.streams = s->streams.size();
    for (const comet::StreamStats& st : s->streams) {
      r.appended_entries += st.appended_entries;
      r.appended_bytes += st.appended_bytes;
      r.stored_bytes += st.stored_bytes;
      r.compressed_entries += st.compressed_entries;
      r.rotations += st.rotations;
      r.syncs += st.syncs;
      r.failed_appends += st.failed_appends;
    }
    r.corrupt_records = s->corrupt_records;
    r.torn_tails = s->torn_tails;
    r.gaps = s->gaps;
    r.takeovers = s->takeovers;
    r.rebuilds = s->rebuilds;
    r.retention_passes = s->retention.passes;
    r.retention_segments = s->retention.segments;
    r.retention_entries = s->retention.entries;
    r.retention_bytes = s->retention.bytes;
    r.retention_unconsumed = s->retention.unconsumed;
    r.retention_last_ns = s->retention.last_pass_ns;
    return FillSized(r, out, size, "comet_get_stats");
  });
}

int comet_retention_run(comet_client* c, comet_retention_report* out, size_t size) {
  if (!c) return Fail(COMET_ERR_INVALID, "comet_retention_run: null client");
  if (out) {  // a struct too small is refused before the pass runs
    if (int rc = CheckSized(size, "comet_retention_run"); rc != COMET_OK) return rc;
  }
  return Guard([&]() -> int {
    comet::Result<comet::RetentionReport> r = c->client->RunRetention();
    if (!r.ok()) return Fail(r.status());
    if (!out) return COMET_OK;
    comet_retention_report full{};
    full.segments = r->segments;
    full.entries = r->entries;
    full.bytes = r->bytes;
    full.unconsumed = r->unconsumed;
    return FillSized(full, out, size, "comet_retention_run");
  });
}

int comet_list_group_offsets(comet_client* c, comet_group_offset_fn fn, void* arg) {
  if (!c || !fn) return Fail(COMET_ERR_INVALID, "comet_list_group_offsets: null argument");
  return Guard([&]() -> int {
    comet::Result<comet::DirectoryStats> s = comet::ReadStats(c->client->dir());
    if (!s.ok()) return Fail(s.status());
    for (const comet::GroupStreamStats& g : s->groups) {
      comet_group_offset o{};
      o.size = sizeof o;
      o.prefix_id = g.prefix_id;
      o.shard = g.shard;
      o.group = g.group.c_str();
      o.stream = g.stream.c_str();
      o.committed = g.committed;
      o.next_entry = g.end;
      o.lag = g.lag;
      o.skipped = g.skipped;
      o.updated_ns = g.updated_ns;
      fn(arg, &o);
    }
    return static_cast<int>(std::min<size_t>(s->groups.size(), INT_MAX));
  });
}

int comet_verify(comet_client* c, comet_text_fn problem, void* arg, uint64_t* corrupt_out) {
  if (!c) return Fail(COMET_ERR_INVALID, "comet_verify: null client");
  return Guard([&]() -> int {
    std::vector<std::string> problems;
    comet::Result<uint64_t> bad = c->client->Verify(&problems);
    if (problem) {
      for (const std::string& p : problems) problem(arg, p.c_str());
    }
    if (!bad.ok()) return Fail(bad.status());
    if (corrupt_out) *corrupt_out = *bad;
    return COMET_OK;
  });
}

int comet_recovery_report(comet_client* c, comet_text_fn fn, void* arg) {
  if (!c || !fn) return Fail(COMET_ERR_INVALID, "comet_recovery_report: null argument");
  return Guard([&]() -> int {
    const std::vector<std::string> lines = c->client->RecoveryReport();
    for (const std::string& line : lines) fn(arg, line.c_str());
    return static_cast<int>(std::min<size_t>(lines.size(), INT_MAX));
  });
}

int comet_pick_stream(comet_client* c, const char* prefix, const void* key, size_t len,
                      uint32_t shard_count, char* buf, size_t cap) {
  if (!c || !prefix || (!key && len > 0) || (!buf && cap > 0)) {
    return Fail(COMET_ERR_INVALID, "comet_pick_stream: null argument");
  }
  return Guard([&]() -> int {
    comet::Result<std::string> name = c->client->PickStream(
        prefix, std::string_view(static_cast<const char*>(key), key ? len : 0), shard_count);
    if (!name.ok()) return Fail(name.status());
    return CopyOut(*name, buf, cap);
  });
}

int comet_wait(comet_client* c, const char* stream, uint64_t entry, int64_t timeout_ns) {
  if (!c || !stream) return Fail(COMET_ERR_INVALID, "comet_wait: null argument");
  return Guard([&]() -> int {
    // An iterator waits on an existing stream only: a misspelt name creates nothing.
    comet::Result<comet::Iterator> it = c->client->Scan(stream, entry);
    if (!it.ok()) return Fail(it.status());
    return Done(it->Wait(timeout_ns));
  });
}

uint32_t comet_pick_shard(const void* key, size_t len, uint32_t shard_count) {
  return comet::PickShard(key, key ? len : 0, shard_count);
}

int comet_stream_name(const char* prefix, uint32_t shard, char* buf, size_t cap) {
  if (!prefix || (!buf && cap > 0)) return Fail(COMET_ERR_INVALID, "comet_stream_name: null argument");
  if (comet::Status st = comet::ValidatePrefix(prefix); !st.ok()) return Fail(st);
  if (shard >= comet::kMaxShards) {
    return Fail(COMET_ERR_INVALID, "shard " + std::to_string(shard) + " is above 0xFFFF");
  }
  return CopyOut(comet::ShardStreamName(prefix, shard), buf, cap);
}

const char* comet_strerror(int err) { return comet::code_name(static_cast<comet::Code>(err)); }

const char* comet_last_error(void) { return last_error.c_str(); }

}  // extern "C"
