// Consumer-group benchmarks, in one process on a stream of 1M entries of 100 bytes:
//
//   BM_Consumer_Ack/batch:N   the cost of Ack alone, per id: batches of N distinct ids just
//                             delivered (each id acked once, in order, as a consumer does);
//                             only the Ack calls are timed. Figure: consumer.ack.ns_per_id
//   BM_Consumer_Consume       Read (batches of 1000 zero-copy views) + Ack of every batch, the
//                             whole consume path; items are entries. Figure:
//                             consumer.consume.items_per_s
//
// The end-to-end latency across processes, with a consumer waiting on the futex, is
// BM_MultiProc_WriteToRead/consumer (multiprocess_bench.cc). When the stream is consumed to its
// end, the group is reset to its beginning (untimed) and the pass starts again.
#include <memory>
#include <span>

#include "comet/consumer.h"
#include "common.h"

namespace comet_bench {
namespace {

constexpr uint64_t kEntries = 1'000'000;
constexpr const char* kStream = "consume:shard:0000";

struct ConsumeData {
  TempDir dir;
  std::unique_ptr<comet::Client> client;
  std::string error;
};

// One directory for every consumer benchmark, filled once.
ConsumeData* Data() {
  static std::unique_ptr<ConsumeData> d;
  if (d) return d.get();
  d = std::make_unique<ConsumeData>();
  d->error = [&]() -> std::string {
    if (!d->dir.ok()) return "mkdtemp under /tmp failed";
    comet::Config cfg;
    cfg.sync.mode = comet::SyncMode::kNone;
    auto c = comet::Client::Open(d->dir.Sub("data"), cfg);
    if (!c.ok()) return "Client::Open: " + c.status().ToString();
    d->client = std::move(c).value();
    Payloads payloads(1024);
    std::vector<std::string_view> batch(1000);
    for (uint64_t j = 0; j < kEntries; j += batch.size()) {
      for (size_t k = 0; k < batch.size(); k++) batch[k] = payloads[j + k];
      comet::Status st = d->client->Append(kStream, std::span<const std::string_view>(batch));
      if (!st.ok()) return "Append: " + st.ToString();
    }
    return "";
  }();
  Cleanups().push_back([] { d.reset(); });
  return d.get();
}

// A consumer of a fresh group (a new name per call: every run starts at entry 0), or null with
// the benchmark failed.
std::unique_ptr<comet::Consumer> Join(benchmark::State& state) {
  static int groups = 0;
  ConsumeData* d = Data();
  if (!d->error.empty()) {
    state.SkipWithError(("consumer fixture: " + d->error).c_str());
    return nullptr;
  }
  auto k = comet::Consumer::Open(d->client.get(), "bench-" + std::to_string(groups++));
  if (!k.ok()) {
    FailStatus(state, "Consumer::Open", k.status());
    return nullptr;
  }
  return std::move(k).value();
}

// Reads the next batch into *msgs, starting the stream over at its end.
bool NextBatch(benchmark::State& state, comet::Consumer* k, size_t n,
               std::vector<comet::Message>* msgs) {
  comet::Status st = k->Read(kStream, n, msgs);
  if (st.ok() && msgs->empty()) {
    st = k->Reset(kStream, comet::Consumer::From::kBeginning);
    if (st.ok()) st = k->Read(kStream, n, msgs);
  }
  if (!st.ok() || msgs->empty()) {
    FailStatus(state, "Read", st.ok() ? comet::Status::NotFound("no entries") : st);
    return false;
  }
  return true;
}

void BM_Consumer_Ack(benchmark::State& state, size_t batch, const std::string& bench) {
  std::unique_ptr<comet::Consumer> k = Join(state);
  if (!k) {
    for (auto _ : state) {
    }
    return;
  }
  std::vector<comet::Message> msgs;
  std::vector<comet::EntryId> ids;
  uint64_t acked = 0;
  double ack_secs = 0;
  for (auto _ : state) {
    if (!NextBatch(state, k.get(), batch, &msgs)) break;
    ids.clear();
    for (const comet::Message& m : msgs) ids.push_back(m.id);
    const auto t0 = std::chrono::steady_clock::now();
    comet::Status st = k->Ack(ids);
    const auto t1 = std::chrono::steady_clock::now();
    if (!st.ok()) {
      FailStatus(state, "Ack", st);
      break;
    }
    const double secs = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(secs);
    ack_secs += secs;
    acked += ids.size();
  }
  if (state.error_occurred() || acked == 0) return;
  state.SetItemsProcessed(int64_t(acked));
  state.counters["ns_per_id"] = ack_secs * 1e9 / double(acked);
  SetFigure("consumer.ack.batch" + std::to_string(batch) + ".ns_per_id",
            ack_secs * 1e9 / double(acked), bench, state.iterations());
}

void BM_Consumer_Consume(benchmark::State& state, const std::string& bench) {
  std::unique_ptr<comet::Consumer> k = Join(state);
  if (!k) {
    for (auto _ : state) {
    }
    return;
  }
  std::vector<comet::Message> msgs;
  uint64_t consumed = 0, bytes = 0;
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    if (!NextBatch(state, k.get(), 1000, &msgs)) break;
    for (const comet::Message& m : msgs) {
      benchmark::DoNotOptimize(m.data.data());
      bytes += m.data.size();
    }
    comet::Status st = k->Ack(std::span<const comet::Message>(msgs));
    if (!st.ok()) {
      FailStatus(state, "Ack", st);
      break;
    }
    consumed += msgs.size();
  }
  const double secs = wt.Seconds();
  if (state.error_occurred()) return;
  SetFigure("consumer.consume.items_per_s", double(consumed) / secs, bench, state.iterations());
  state.SetItemsProcessed(int64_t(consumed));
  state.SetBytesProcessed(int64_t(bytes));
}

}  // namespace

void RegisterConsumerBenchmarks() {
  for (size_t batch : {size_t{100}, size_t{1000}}) {
    RegisterNamed("BM_Consumer_Ack/batch:" + std::to_string(batch),
                  [batch](benchmark::State& st, const std::string& n) {
                    BM_Consumer_Ack(st, batch, n);
                  })
        ->MinTime(0.5)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  RegisterNamed("BM_Consumer_Consume", BM_Consumer_Consume)
      ->MinTime(0.5)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace comet_bench
