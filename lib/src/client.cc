// The public C++ API: Client, Stream, Entry and Iterator over ClientImpl.
#include "comet/client.h"

#include "client_impl.h"
#include "clock.h"
#include "hot.h"
#include "probes.h"

namespace comet {

using internal::ClientImpl;
using internal::kProbeAll;

namespace {

// Probe arguments, evaluated only while a probe is attached.
uint32_t ProbePrefix(const Stream* s) { return s ? s->prefix_id() : kProbeAll; }
uint32_t ProbeShard(const Stream* s) { return s ? s->shard() : kProbeAll; }
uint64_t PayloadBytes(std::span<const std::string_view> entries) {
  uint64_t n = 0;
  for (std::string_view e : entries) n += e.size();
  return n;
}
int ProbeStatus(const Status& st) { return static_cast<int>(st.code()); }
// metrics.probe_sample: while a probe pair is attached, one call in `every` per thread fires it.
bool ProbeThisCall(uint32_t every, uint32_t* calls) { return every <= 1 || ++*calls % every == 0; }

}  // namespace

// ---- Entry, Iterator, Stream -----------------------------------------------------------------

Entry::Entry() = default;
Entry::~Entry() = default;
Entry::Entry(Entry&& o) noexcept { *this = std::move(o); }
Entry& Entry::operator=(Entry&& o) noexcept {
  if (this == &o) return *this;
  id = o.id;
  timestamp_ns = o.timestamp_ns;
  compressed = o.compressed;
  stored_size = o.stored_size;
  segment_ = std::move(o.segment_);
  const bool owned = o.compressed && o.data.data() == o.buffer_.data();
  buffer_ = std::move(o.buffer_);
  data = owned ? std::string_view(buffer_) : o.data;
  o.data = {};
  return *this;
}

Iterator::Iterator() = default;
Iterator::~Iterator() = default;
Iterator::Iterator(Iterator&&) noexcept = default;
Iterator& Iterator::operator=(Iterator&&) noexcept = default;

namespace {

// An iterator works until its client is closed; it keeps what it reads mapped, so it never
// crashes after that, but it answers CLOSED.
Status CheckIterator(const std::shared_ptr<internal::Shard>& shard) {
  if (!shard) return Status::Invalid("iterator is not initialised (use Client::Scan)");
  if (shard->client_closed()) {
    return Status::Closed(shard->name() + ": the client this iterator was made by is closed");
  }
  return Status::Ok();
}

}  // namespace

Status Iterator::Wait(int64_t timeout_ns) {
  if (Status st = CheckIterator(shard_); !st.ok()) return st;
  return shard_->WaitFor(next_, timeout_ns);
}

Status Iterator::Next(Entry* out) {
  if (Status st = CheckIterator(shard_); !st.ok()) return st;
  if (next_ >= committed_) {
    committed_ = shard_->Committed();
    if (next_ >= committed_) {
      return Status::NotFound(shard_->name() + ": no entry " + std::to_string(next_) + " yet");
    }
  }
  if (!segment_ || next_ < segment_->base() || next_ < shard_->RetainedFrom() ||
      // Sealed here or by a writer in another process: then entries go on in the next one.
      (segment_->SealVisible(committed_) && next_ >= segment_->base() + segment_->sealed_count())) {
    segment_.reset();
    uint64_t resume = next_;
    Status st = shard_->Locate(next_, &segment_, &resume);
    if (!st.ok()) {
      if (resume > next_) next_ = resume;  // skip the gap or the deleted prefix
      return st;
    }
    offset_ = internal::Segment::kBadOffset;
  }
  Status st = shard_->ReadAt(segment_, next_, &offset_, out);
  if (st.ok() || st.IsCorrupt()) next_++;
  return st;
}

Stream::Stream(std::shared_ptr<internal::Shard> s) : shard_(std::move(s)) {}
const std::string& Stream::name() const { return shard_->name(); }
uint32_t Stream::prefix_id() const { return shard_->prefix_id(); }
uint32_t Stream::shard() const { return shard_->shard(); }

// ---- Client ----------------------------------------------------------------------------------

Client::Client(std::unique_ptr<ClientImpl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Open(const std::string& dir, const Config& cfg) {
  if (dir.empty()) return Status::Invalid("data directory path is empty");
  auto impl = std::make_unique<ClientImpl>(dir, cfg);
  if (Status st = impl->Open(); !st.ok()) return st;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Result<std::unique_ptr<Client>> Client::OpenMultiProcess(const std::string& dir, Config cfg) {
  cfg.concurrency.mode = ConcurrencyMode::kMulti;
  return Open(dir, cfg);
}

Status Client::Close() { return impl_->Close(); }

Result<Stream*> Client::GetStream(std::string_view name) { return impl_->GetStream(name); }

COMET_HOT Status Client::Append(Stream* s, std::span<const std::string_view> entries,
                                EntryId* ids_out) {
  auto append = [&]() COMET_HOT -> Status {
    if (Status st = impl_->CheckOpen(); !st.ok()) return st;
    if (!s) return Status::Invalid("null stream handle");
    if (entries.size() > kMaxBatchEntries) {
      return Status::Invalid(s->name() + ": a batch of " + std::to_string(entries.size()) +
                             " entries; at most " + std::to_string(kMaxBatchEntries) +
                             " per call");
    }
    // Timing every call would cost a quarter of a single append (two TSC reads and three locked
    // adds on this class of machine): one call in kAppendSample is timed and counts for all.
    if (!s->shard_->SampleAppend()) return s->shard_->Append(entries, ids_out);
    const uint64_t t0 = internal::Ticks();
    Status st = s->shard_->Append(entries, ids_out);
    impl_->ctx_->Record(format::kOpAppend, internal::TicksToNs(internal::Ticks() - t0),
                        internal::kAppendSample);
    return st;
  };
  if (!COMET_PROBE_PAIR_ENABLED(append)) return append();
  const uint32_t every = impl_->ctx_->cfg.metrics.probe_sample;
  thread_local uint32_t probed_calls = 0;
  if (!ProbeThisCall(every, &probed_calls)) return append();
  COMET_PROBE(append_start, ProbePrefix(s), ProbeShard(s), entries.size(), PayloadBytes(entries));
  Status st = append();
  COMET_PROBE(append_done, ProbePrefix(s), ProbeShard(s), entries.size(), PayloadBytes(entries),
              ProbeStatus(st), every);
  return st;
}

COMET_HOT Status Client::Append(std::string_view stream, std::span<const std::string_view> entries,
                                EntryId* ids_out) {
  Result<Stream*> s = impl_->GetStream(stream);
  if (!s.ok()) return s.status();
  return Append(*s, entries, ids_out);
}

Status Client::Sync() {
  COMET_PROBE(sync_start, kProbeAll, kProbeAll, 0, 0);
  Status st = impl_->CheckOpen();
  if (st.ok()) st = impl_->SyncAll();
  COMET_PROBE(sync_done, kProbeAll, kProbeAll, 0, 0, ProbeStatus(st));
  return st;
}

Status Client::Read(Stream* s, uint64_t entry, Entry* out) {
  auto read = [&]() -> Status {
    const uint64_t t0 = internal::Ticks();
    if (Status st = impl_->CheckOpen(); !st.ok()) return st;
    if (!s) return Status::Invalid("null stream handle");
    Status st = s->shard_->Read(entry, out);
    impl_->Record(format::kOpRead, internal::TicksToNs(internal::Ticks() - t0));
    return st;
  };
  if (!COMET_PROBE_PAIR_ENABLED(read)) return read();
  const uint32_t every = impl_->ctx_->cfg.metrics.probe_sample;
  thread_local uint32_t probed_calls = 0;
  if (!ProbeThisCall(every, &probed_calls)) return read();
  COMET_PROBE(read_start, ProbePrefix(s), ProbeShard(s), 1, 0);
  Status st = read();
  COMET_PROBE(read_done, ProbePrefix(s), ProbeShard(s), st.ok() ? 1 : 0,
              st.ok() ? out->data.size() : 0, ProbeStatus(st), every);
  return st;
}

Status Client::Read(std::string_view stream, uint64_t entry, Entry* out) {
  Result<Stream*> s = impl_->FindStream(stream);
  if (!s.ok()) return s.status();
  return Read(*s, entry, out);
}

void Client::CountUncapturedLines(uint64_t lines) {
  shm::ControlRegion* control = impl_->ctx_->control;
  if (control) control->header()->uncaptured_lines.fetch_add(lines, std::memory_order_relaxed);
}

Result<std::string> Client::PickStream(std::string_view prefix, std::string_view key,
                                       uint32_t shard_count) {
  return impl_->PickStream(prefix, key, shard_count);
}

Status Client::WaitFor(Stream* s, uint64_t entry, int64_t timeout_ns) {
  if (Status st = impl_->CheckOpen(); !st.ok()) return st;
  if (!s) return Status::Invalid("null stream handle");
  return s->shard_->WaitFor(entry, timeout_ns);
}

Status Client::ReadRange(std::string_view stream, uint64_t from, size_t max,
                         std::vector<Entry>* out, uint64_t* corrupt) {
  Result<Iterator> it = Scan(stream, from);
  if (!it.ok()) return it.status();
  uint64_t bad = 0;
  while (out->size() < max) {
    Entry e;
    Status st = it->Next(&e);
    if (st.ok()) {
      out->push_back(std::move(e));
    } else if (st.IsCorrupt()) {
      bad++;
    } else if (st.IsNotFound() && it->position() < (*it).shard_->Committed()) {
      continue;  // a gap: the iterator moved past it
    } else if (st.IsNotFound()) {
      break;
    } else {
      return st;
    }
  }
  if (corrupt) *corrupt = bad;
  return Status::Ok();
}

Result<Iterator> Client::Scan(Stream* s, uint64_t from) {
  if (!s) return Status::Invalid("null stream handle");
  return impl_->Scan(s, from);
}

Result<Iterator> Client::Scan(std::string_view stream, uint64_t from) {
  Result<Stream*> s = impl_->FindStream(stream);
  if (!s.ok()) return s.status();
  return impl_->Scan(*s, from);
}

Result<uint64_t> Client::Length(std::string_view stream) {
  Result<Stream*> s = impl_->FindStream(stream);
  if (!s.ok()) {
    if (s.status().IsNotFound()) return uint64_t{0};
    return s.status();
  }
  return (*s)->shard_->Committed();
}

std::vector<std::string> Client::Streams() { return impl_->StreamNames(); }

Result<StreamInfo> Client::Inspect(std::string_view stream) {
  Result<Stream*> s = impl_->FindStream(stream);
  if (!s.ok()) return s.status();
  StreamInfo info;
  if (Status st = (*s)->shard_->Inspect(&info); !st.ok()) return st;
  return info;
}

Result<uint64_t> Client::Verify(std::vector<std::string>* problems) {
  if (Status st = impl_->CheckOpen(); !st.ok()) return st;
  uint64_t bad = 0;
  for (auto& s : impl_->AllShards()) bad += s->Verify(problems);
  return bad;
}

Stats Client::GetStats() {
  Stats st;
  for (auto& s : impl_->AllShards()) s->AddStats(&st);
  if (impl_->ctx_->control) {
    st.gaps = impl_->ctx_->control->header()->gaps.load(std::memory_order_relaxed);
  }
  return st;
}

Result<RetentionReport> Client::RunRetention() {
  if (Status st = impl_->CheckOpen(); !st.ok()) return st;
  return impl_->RunRetention(true);
}

std::vector<std::string> Client::RecoveryReport() const { return impl_->Report(); }
const std::string& Client::dir() const { return impl_->ctx_->root; }
const Config& Client::config() const { return impl_->ctx_->cfg; }

}  // namespace comet
