// Append benchmarks and their baselines.
//
//   BM_Baseline_*        the physical floor of an append: memcpy of 100 bytes into a faulted
//                        buffer, CRC32C of 100 bytes, a wall-clock read, and all three together
//   BM_Write2_Single     write(2) of 100 bytes to an O_APPEND file (latency histogram)
//   BM_Write2_Batch/N    writev(2) of N 100-byte buffers to an O_APPEND file (entries/s)
//   BM_Write2_Framed/N/F the original's method: batches of N entries framed as Comet frames
//                        them (header, CRC32C, batch flag) into a user-space buffer that goes
//                        to an O_APPEND file with one write(2) per batch (F = batch) or whenever
//                        it would pass F bytes (4k, 64k); registered right before the Comet
//                        batch benchmark it is compared with, so that both share each pass
//   BM_Append_Single/A/M one 100-byte entry per Append, A = handle (Stream*) or name API,
//                        M = sync.mode none or interval; latency histogram per call
//   BM_Append_Single_Untimed/handle/none   the same without the per-call clock reads (mean)
//   BM_Append_AfterSyscall/A/S  the append right after a system call: write(2) of 100 bytes to
//                        S = a file, /dev/null, or /dev/null followed by loads from 4096 pages
//                        (cold_tlb: the TLB as a kernel with page-table isolation and no PCID
//                        leaves it), then one append (after), then another (warm),
//                        A = C stream handle (comet_stream_append) or C++ handle; p50/p99 of
//                        each and of the write(2), and the ratios after/warm and write(2)/after
//   BM_Append_Batch/N/M  N 100-byte entries per Append call (entries/s)
//   BM_Append_Shards/S   batches of 100 round robin over S stream handles (entries/s)
//
// Each call of a benchmark function uses a fresh data directory under /tmp (removed after), a
// default config (storage.max_segment_bytes 64 MiB) except for sync.mode, and warms up before
// the timed loop: a few thousand untimed appends and a 20 ms pause so the background
// pre-faulter is ahead of the writer, as it is in a long-running process.
#include <fcntl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <span>
#include <thread>

#include "comet/comet.h"
#include "common.h"
#include "record.h"

namespace comet_bench {
namespace {

using comet::SyncMode;

constexpr double kMinTime = 0.5;       // seconds per reported run
constexpr size_t kWarmEntries = 4000;  // untimed appends before a single-append loop

void Warm(std::chrono::milliseconds pause) { std::this_thread::sleep_for(pause); }

// ---- baselines: the floor ---------------------------------------------------------------------

// A 16 MiB pre-faulted buffer written sequentially like a segment mapping.
class Ring {
 public:
  static constexpr size_t kBytes = 16u << 20;
  Ring() : buf_(static_cast<char*>(std::aligned_alloc(4096, kBytes))) {
    std::memset(buf_, 1, kBytes);
  }
  ~Ring() { std::free(buf_); }
  char* Reserve(size_t n) {
    if (pos_ + n > kBytes) pos_ = 0;
    char* p = buf_ + pos_;
    pos_ += n;
    return p;
  }

 private:
  char* buf_;
  size_t pos_ = 0;
};

inline int64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void PublishMean(benchmark::State& state, const std::string& key, const std::string& bench,
                 double secs, double items_per_iter = 1) {
  double iters = double(state.iterations());
  if (iters <= 0 || secs <= 0) return;
  SetFigure(key + ".mean_ns", secs * 1e9 / iters, bench, state.iterations());
  SetFigure(key + ".items_per_s", iters * items_per_iter / secs, bench, state.iterations());
  LatestRates()[key] = iters * items_per_iter / secs;
}

void BM_Baseline_Memcpy(benchmark::State& state, const std::string& bench) {
  Ring ring;
  Payloads p;
  size_t i = 0;
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    std::string_view e = p[i++];
    std::memcpy(ring.Reserve(e.size()), e.data(), e.size());
    benchmark::ClobberMemory();
  }
  PublishMean(state, "floor.memcpy", bench, wt.Seconds());
  state.SetItemsProcessed(state.iterations());
}

void BM_Baseline_Crc32c(benchmark::State& state, const std::string& bench) {
  Payloads p;
  size_t i = 0;
  uint32_t acc = 0;
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    std::string_view e = p[i++];
    acc += Crc32c(0, e.data(), e.size());
    benchmark::DoNotOptimize(acc);
  }
  PublishMean(state, "floor.crc", bench, wt.Seconds());
  state.SetItemsProcessed(state.iterations());
}

void BM_Baseline_ClockRealtime(benchmark::State& state, const std::string& bench) {
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    int64_t t = RealtimeNs();
    benchmark::DoNotOptimize(t);
  }
  PublishMean(state, "floor.clock", bench, wt.Seconds());
  state.SetItemsProcessed(state.iterations());
}

// What an append must do at least: timestamp, 16-byte header, copy, CRC over payload+header.
void BM_Baseline_Record(benchmark::State& state, const std::string& bench) {
  Ring ring;
  Payloads p;
  size_t i = 0;
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    std::string_view e = p[i++];
    char* r = ring.Reserve(16 + e.size());
    uint32_t size = static_cast<uint32_t>(e.size());
    int64_t ts = RealtimeNs();
    std::memcpy(r + 4, &size, 4);
    std::memcpy(r + 8, &ts, 8);
    std::memcpy(r + 16, e.data(), e.size());
    uint32_t crc = Crc32c(Crc32c(0, e.data(), e.size()), r + 4, 12);
    std::memcpy(r, &crc, 4);
    benchmark::ClobberMemory();
  }
  PublishMean(state, "floor.record", bench, wt.Seconds());
  state.SetItemsProcessed(state.iterations());
}

// ---- baselines: write(2) ----------------------------------------------------------------------

int OpenAppendFile(benchmark::State& state, const TempDir& dir) {
  std::string path = dir.Sub("write2.log");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::string msg = "open " + path + ": " + std::strerror(errno);
    state.SkipWithError(msg.c_str());
  }
  return fd;
}

void BM_Write2_Single(benchmark::State& state, const std::string& bench) {
  TempDir dir;
  int fd = dir.ok() ? OpenAppendFile(state, dir) : -1;
  if (fd < 0) {
    if (!dir.ok()) state.SkipWithError("mkdtemp failed");
    for (auto _ : state) {
    }
    return;
  }
  Payloads p;
  for (size_t i = 0; i < 2000; i++) {
    if (::write(fd, p[i].data(), p[i].size()) < 0) break;
  }
  auto h = std::make_unique<LatencyHistogram>();
  size_t i = 0;
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    std::string_view e = p[i++];
    uint64_t t0 = Clock::Start();
    ssize_t n = ::write(fd, e.data(), e.size());
    uint64_t t1 = Clock::Stop();
    h->Record(Clock::ToNs(t1 - t0));
    if (n != ssize_t(e.size())) [[unlikely]] {
      state.SkipWithError("write(2) failed or was short");
      break;
    }
  }
  double secs = wt.Seconds();
  ::close(fd);
  PublishLatency(state, *h, "write2.single", bench);
  PublishMean(state, "write2.single", bench, secs);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * int64_t(kEntryBytes));
}

void BM_Write2_Batch(benchmark::State& state, size_t batch, const std::string& bench) {
  TempDir dir;
  int fd = dir.ok() ? OpenAppendFile(state, dir) : -1;
  if (fd < 0) {
    if (!dir.ok()) state.SkipWithError("mkdtemp failed");
    for (auto _ : state) {
    }
    return;
  }
  Payloads p;
  std::vector<iovec> iov(batch);
  size_t want = 0;
  for (size_t k = 0; k < batch; k++) {
    iov[k].iov_base = const_cast<char*>(p[k].data());
    iov[k].iov_len = p[k].size();
    want += p[k].size();
  }
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    ssize_t n = ::writev(fd, iov.data(), int(batch));
    if (n != ssize_t(want)) [[unlikely]] {
      state.SkipWithError("writev(2) failed or was short");
      break;
    }
  }
  double secs = wt.Seconds();
  ::close(fd);
  PublishMean(state, "write2.batch" + std::to_string(batch), bench, secs, double(batch));
  state.SetItemsProcessed(state.iterations() * int64_t(batch));
  state.SetBytesProcessed(state.iterations() * int64_t(batch * kEntryBytes));
}

// The original's method: records framed in a user-space buffer, one write(2) per flush. The
// framing is the library's own (EncodeRecordHeader, RecordCrc), so both sides checksum and copy
// the same bytes; `flush_bytes` 0 flushes once per batch.
void BM_Write2_Framed(benchmark::State& state, size_t batch, size_t flush_bytes,
                      const std::string& key, const std::string& bench) {
  using namespace comet::format;
  TempDir dir;
  int fd = dir.ok() ? OpenAppendFile(state, dir) : -1;
  if (fd < 0) {
    if (!dir.ok()) state.SkipWithError("mkdtemp failed");
    for (auto _ : state) {
    }
    return;
  }
  Payloads p;
  const size_t record = kRecordHeaderSize + kEntryBytes;
  std::vector<char> buf(std::max(flush_bytes, batch * record));
  size_t used = 0;
  bool failed = false;
  auto flush = [&] {
    if (used > 0 && ::write(fd, buf.data(), used) != ssize_t(used)) failed = true;
    used = 0;
  };
  ProcessCpu cpu;
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    const int64_t ts = RealtimeNs();
    for (size_t k = 0; k < batch; k++) {
      if (flush_bytes > 0 && used + record > flush_bytes) flush();
      std::string_view e = p[k];
      const uint32_t sf = uint32_t(e.size()) | (k + 1 < batch ? kFlagBatchMore : 0);
      char* dst = buf.data() + used;
      comet::internal::EncodeRecordHeader(dst, comet::internal::RecordCrc(e.data(), sf, ts), sf,
                                          ts);
      std::memcpy(dst + kRecordHeaderSize, e.data(), e.size());
      used += record;
    }
    if (flush_bytes == 0) flush();
    if (failed) [[unlikely]] {
      state.SkipWithError("write(2) failed or was short");
      break;
    }
  }
  flush();
  double secs = wt.Seconds();
  const double entries = double(state.iterations()) * double(batch);
  cpu.Publish(state, entries, key, bench);
  ::close(fd);
  PublishMean(state, key, bench, secs, double(batch));
  state.SetItemsProcessed(state.iterations() * int64_t(batch));
  state.SetBytesProcessed(state.iterations() * int64_t(batch * kEntryBytes));
}

// ---- Comet appends ----------------------------------------------------------------------------

constexpr const char* kStream = "bench:shard:0000";

// Opens a fresh directory; null (and the benchmark marked failed) on error. The loop of a
// failed benchmark must still be entered by the caller, so Google Benchmark is satisfied.
struct Fixture {
  TempDir dir;
  std::unique_ptr<comet::Client> client;
  std::vector<comet::Stream*> streams;

  bool Open(benchmark::State& state, SyncMode mode, size_t shards) {
    if (!dir.ok()) {
      state.SkipWithError("mkdtemp under /tmp failed");
      return false;
    }
    client = OpenClient(state, dir.Sub("data"), mode);
    if (!client) return false;
    for (size_t s = 0; s < shards; s++) {
      auto name = comet::ShardStreamName("bench", uint32_t(s));
      comet::Stream* h = GetStreamOrFail(state, client.get(), name);
      if (!h) return false;
      streams.push_back(h);
    }
    return true;
  }
  void Close(benchmark::State& state) {
    if (!client) return;
    comet::Status st = client->Close();
    if (!st.ok() && !state.error_occurred()) FailStatus(state, "Client::Close", st);
    client.reset();
    dir.Remove();
  }
};

// The library's own counters over the whole call (warm-up included): fdatasync/msync rounds per
// second and segment rotations.
void PublishStats(benchmark::State& state, comet::Client* c, double secs, const std::string& key,
                  const std::string& bench) {
  if (!c || secs <= 0) return;
  comet::Stats st = c->GetStats();
  state.counters["syncs_per_s"] = double(st.syncs) / secs;
  state.counters["rotations"] = double(st.rotations);
  SetFigure(key + ".syncs_per_s", double(st.syncs) / secs, bench, state.iterations());
  SetFigure(key + ".rotations", double(st.rotations), bench, state.iterations());
}

void DrainFailed(benchmark::State& state) {
  for (auto _ : state) {
  }
}

void BM_Append_Single(benchmark::State& state, bool by_name, SyncMode mode, bool timed,
                      const std::string& key, const std::string& bench) {
  Fixture f;
  if (!f.Open(state, mode, 1)) return DrainFailed(state);
  comet::Client* c = f.client.get();
  comet::Stream* s = f.streams[0];
  const std::string name = kStream;
  Payloads p;

  for (size_t i = 0; i < kWarmEntries; i++) {
    std::string_view e = p[i];
    comet::Status st = c->Append(s, std::span<const std::string_view>(&e, 1));
    if (!st.ok()) {
      FailStatus(state, "warm-up Append", st);
      return DrainFailed(state);
    }
  }
  Warm(std::chrono::milliseconds(20));

  auto h = std::make_unique<LatencyHistogram>();
  // The first calls of at least 1 ms (call number, ns), printed with COMET_BENCH_SLOW=1.
  constexpr uint64_t kSlowNs = 1'000'000;
  std::vector<std::pair<size_t, uint64_t>> slow;
  slow.reserve(32);
  size_t i = 0;
  ThreadUsage tu;
  WallTimer wt;
  tu.Start();
  wt.Start();
  if (timed) {
    for (auto _ : state) {
      std::string_view e = p[i++];
      uint64_t t0 = Clock::Start();
      comet::Status st =
          by_name ? c->Append(name, e) : c->Append(s, std::span<const std::string_view>(&e, 1));
      uint64_t t1 = Clock::Stop();
      uint64_t ns = Clock::ToNs(t1 - t0);
      h->Record(ns);
      if (ns >= kSlowNs) [[unlikely]] {
        if (slow.size() < 32) slow.emplace_back(i - 1, ns);
      }
      if (!st.ok()) [[unlikely]] {
        FailStatus(state, "Append", st);
        break;
      }
    }
  } else {
    for (auto _ : state) {
      std::string_view e = p[i++];
      comet::Status st =
          by_name ? c->Append(name, e) : c->Append(s, std::span<const std::string_view>(&e, 1));
      if (!st.ok()) [[unlikely]] {
        FailStatus(state, "Append", st);
        break;
      }
    }
  }
  double secs = wt.Seconds();
  tu.Stop();
  PublishStats(state, f.client.get(), secs, key, bench);
  f.Close(state);
  if (state.error_occurred()) return;
  if (timed) PublishLatency(state, *h, key, bench);
  if (const char* e = std::getenv("COMET_BENCH_SLOW"); e && *e == '1' && !slow.empty()) {
    // Entry numbers count the warm-up; a 64 MiB segment holds ~578k 116-byte records.
    std::fprintf(stderr, "%s (%lld calls): calls >= 1 ms at entry:", bench.c_str(),
                 static_cast<long long>(state.iterations()));
    for (auto [n, ns] : slow) std::fprintf(stderr, " %zu (%.2f ms)", n + kWarmEntries, ns / 1e6);
    std::fprintf(stderr, "\n");
  }
  tu.Publish(state, double(state.iterations()), key, bench);
  PublishMean(state, key, bench, secs);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * int64_t(kEntryBytes));
}

// Opens a client through the C ABI on a fresh directory in `dir` (sync.mode none) and a
// handle for kStream; COMET_OK or the failing call's code (comet_last_error says why).
int OpenCStream(const TempDir& dir, comet_client** c, comet_stream** s) {
  comet_config* cfg = comet_config_new();
  int rc = cfg ? comet_config_set(cfg, "sync.mode", "none") : COMET_ERR_INVALID;
  if (rc == COMET_OK) rc = comet_open(dir.Sub("data").c_str(), cfg, c);
  comet_config_free(cfg);
  if (rc == COMET_OK) rc = comet_stream_open(*c, kStream, s);
  return rc;
}

// BM_Append_Single_Untimed/handle/none through the C ABI: comet_stream_append on a stream
// handle, one entry per call.
void BM_Append_Single_C(benchmark::State& state, const std::string& bench) {
  TempDir dir;
  comet_client* c = nullptr;
  comet_stream* s = nullptr;
  int rc = OpenCStream(dir, &c, &s);
  Payloads p;
  for (size_t i = 0; rc == COMET_OK && i < kWarmEntries; i++) {
    const void* data = p[i].data();
    const size_t len = p[i].size();
    rc = comet_stream_append(s, &data, &len, 1, nullptr);
  }
  if (rc != COMET_OK) {
    state.SkipWithError((std::string("C ABI setup: ") + comet_last_error()).c_str());
    if (c) comet_close(c);
    return DrainFailed(state);
  }
  Warm(std::chrono::milliseconds(20));
  size_t i = 0;
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    const std::string_view e = p[i++];
    const void* data = e.data();
    const size_t len = e.size();
    if (comet_stream_append(s, &data, &len, 1, nullptr) != COMET_OK) [[unlikely]] {
      state.SkipWithError((std::string("comet_stream_append: ") + comet_last_error()).c_str());
      break;
    }
  }
  const double secs = wt.Seconds();
  if (comet_close(c) != COMET_OK && !state.error_occurred()) {
    state.SkipWithError((std::string("comet_close: ") + comet_last_error()).c_str());
  }
  if (state.error_occurred()) return;
  PublishMean(state, "append.single_untimed.c_stream.none", bench, secs);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * int64_t(kEntryBytes));
}

// Where the write(2) before each append goes. kColdTlb writes to /dev/null and then (untimed)
// loads one byte from each of 4096 pages, which evicts the data TLB as a kernel with page-table
// isolation and no PCID does at every system call (this VM's CPU needs no isolation, so its
// system calls leave the TLB as it was).
enum class Sink { kFile, kDevNull, kColdTlb };
const char* SinkName(Sink s) {
  return s == Sink::kFile ? "file" : s == Sink::kDevNull ? "devnull" : "cold_tlb";
}

// The append right after a system call: each iteration writes 100 bytes with write(2) to
// `sink` (an O_APPEND file in the benchmark's directory, or /dev/null), then appends one entry
// (after-syscall), then appends another (warm: right after an append, as in a tight loop). All
// three are timed on their own, so the two appends and the write(2) beside them come from the
// same run. `append(e)` appends one entry and returns false on failure.
template <class AppendFn>
void AfterSyscallLoop(benchmark::State& state, int sink, bool cold_tlb, const std::string& key,
                      const std::string& bench, AppendFn&& append) {
  constexpr size_t kTlbPages = 4096;
  std::unique_ptr<Ring> thrash = cold_tlb ? std::make_unique<Ring>() : nullptr;
  static_assert(Ring::kBytes >= kTlbPages * 4096);
  Payloads p;
  for (size_t i = 0; i < kWarmEntries; i++) {
    if (!append(p[i])) return DrainFailed(state);
  }
  Warm(std::chrono::milliseconds(20));
  auto after = std::make_unique<LatencyHistogram>();
  auto warm = std::make_unique<LatencyHistogram>();
  auto sys = std::make_unique<LatencyHistogram>();
  size_t i = 0;
  for (auto _ : state) {
    const std::string_view line = p[i + 7];
    uint64_t t0 = Clock::Start();
    const ssize_t n = ::write(sink, line.data(), line.size());
    uint64_t t1 = Clock::Stop();
    sys->Record(Clock::ToNs(t1 - t0));
    if (thrash) {
      for (size_t k = 0; k < kTlbPages; k++) {
        benchmark::DoNotOptimize(*static_cast<volatile char*>(thrash->Reserve(4096)));
      }
    }
    t0 = Clock::Start();
    bool ok = append(p[i++]);
    t1 = Clock::Stop();
    after->Record(Clock::ToNs(t1 - t0));
    t0 = Clock::Start();
    ok = append(p[i++]) && ok;
    t1 = Clock::Stop();
    warm->Record(Clock::ToNs(t1 - t0));
    if (!ok || n != ssize_t(line.size())) [[unlikely]] {
      if (!state.error_occurred()) state.SkipWithError("write(2) beside the appends failed");
      break;
    }
  }
  if (state.error_occurred()) return;
  PublishLatency(state, *after, key + ".after", bench);
  PublishLatency(state, *warm, key + ".warm", bench);
  PublishLatency(state, *sys, key + ".write2", bench);
  const double a = after->Percentile(50), w = warm->Percentile(50), s = sys->Percentile(50);
  state.counters["after_p50"] = a;
  state.counters["after_p99"] = after->Percentile(99);
  state.counters["warm_p50"] = w;
  state.counters["warm_p99"] = warm->Percentile(99);
  state.counters["write2_p50"] = s;
  for (const char* k : {"p50_ns", "p99_ns", "p999_ns", "max_ns"}) state.counters.erase(k);
  state.counters["after_over_warm"] = w > 0 ? a / w : 0;
  state.counters["write2_over_after"] = a > 0 ? s / a : 0;
  if (w > 0) SetFigure(key + ".after_over_warm", a / w, bench, state.iterations());
  if (a > 0) SetFigure(key + ".write2_over_after", s / a, bench, state.iterations());
  state.SetItemsProcessed(state.iterations() * 2);
}

// The write(2) target of AfterSyscallLoop: a file in `dir`, or /dev/null.
int OpenSink(benchmark::State& state, const TempDir& dir, Sink sink) {
  if (sink == Sink::kFile) return OpenAppendFile(state, dir);
  int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (fd < 0) state.SkipWithError("open /dev/null failed");
  return fd;
}

// C++: Client::Append on a Stream handle.
void BM_Append_AfterSyscall_Handle(benchmark::State& state, Sink where, const std::string& key,
                                   const std::string& bench) {
  Fixture f;
  if (!f.Open(state, SyncMode::kNone, 1)) return DrainFailed(state);
  const int sink = OpenSink(state, f.dir, where);
  if (sink < 0) return DrainFailed(state);
  comet::Client* c = f.client.get();
  comet::Stream* s = f.streams[0];
  AfterSyscallLoop(state, sink, where == Sink::kColdTlb, key, bench, [&](std::string_view e) {
    comet::Status st = c->Append(s, std::span<const std::string_view>(&e, 1));
    if (!st.ok()) [[unlikely]] FailStatus(state, "Append", st);
    return st.ok();
  });
  ::close(sink);
  f.Close(state);
}

// C: comet_stream_append on a stream handle.
void BM_Append_AfterSyscall_C(benchmark::State& state, Sink where, const std::string& key,
                              const std::string& bench) {
  TempDir dir;
  comet_client* c = nullptr;
  comet_stream* s = nullptr;
  int rc = OpenCStream(dir, &c, &s);
  const int sink = rc == COMET_OK ? OpenSink(state, dir, where) : -1;
  if (rc != COMET_OK || sink < 0) {
    if (rc != COMET_OK) {
      state.SkipWithError((std::string("C ABI setup: ") + comet_last_error()).c_str());
    }
    if (c) comet_close(c);
    return DrainFailed(state);
  }
  AfterSyscallLoop(state, sink, where == Sink::kColdTlb, key, bench, [&](std::string_view e) {
    const void* data = e.data();
    const size_t len = e.size();
    if (comet_stream_append(s, &data, &len, 1, nullptr) == COMET_OK) [[likely]] return true;
    state.SkipWithError((std::string("comet_stream_append: ") + comet_last_error()).c_str());
    return false;
  });
  ::close(sink);
  if (comet_close(c) != COMET_OK && !state.error_occurred()) {
    state.SkipWithError((std::string("comet_close: ") + comet_last_error()).c_str());
  }
}

// Batches of `batch` entries, round robin over `shards` stream handles.
// `paired`: the key of a baseline run just before in the same pass; the rate's ratio to it is
// published as "<key>.vs_<paired>".
void BM_Append_Batch(benchmark::State& state, size_t batch, size_t shards, SyncMode mode,
                     const std::string& key, const std::string& bench,
                     const std::string& paired = "") {
  Fixture f;
  if (!f.Open(state, mode, shards)) return DrainFailed(state);
  comet::Client* c = f.client.get();
  Payloads p;
  std::vector<std::string_view> views(batch);
  for (size_t k = 0; k < batch; k++) views[k] = p[k];
  std::span<const std::string_view> span(views);

  // Warm up: ~4000 entries per shard, then let the pre-faulter get ahead.
  size_t warm_calls = std::max<size_t>(1, 4000 / batch);
  for (size_t k = 0; k < warm_calls * shards; k++) {
    comet::Status st = c->Append(f.streams[k % shards], span);
    if (!st.ok()) {
      FailStatus(state, "warm-up Append", st);
      return DrainFailed(state);
    }
  }
  Warm(std::chrono::milliseconds(20 + 2 * shards));

  size_t k = 0;
  comet::Stream* const* st_handles = f.streams.data();
  ThreadUsage tu;
  ProcessCpu cpu;
  WallTimer wt;
  tu.Start();
  wt.Start();
  for (auto _ : state) {
    comet::Status st = c->Append(st_handles[k], span);
    if (++k == shards) k = 0;
    if (!st.ok()) [[unlikely]] {
      FailStatus(state, "Append", st);
      break;
    }
  }
  double secs = wt.Seconds();
  tu.Stop();
  PublishStats(state, f.client.get(), secs, key, bench);
  f.Close(state);
  if (state.error_occurred()) return;
  const double entries = double(state.iterations()) * double(batch);
  cpu.Publish(state, entries, key, bench);
  PublishMean(state, key, bench, secs, double(batch));
  tu.Publish(state, entries, key, bench);
  if (auto base = LatestRates().find(paired); !paired.empty() && base != LatestRates().end()) {
    SetFigure(key + ".vs_" + paired, LatestRates()[key] / base->second, bench, state.iterations());
  }
  state.SetItemsProcessed(state.iterations() * int64_t(batch));
  state.SetBytesProcessed(state.iterations() * int64_t(batch * kEntryBytes));
}

// Registers fn under `name` with the common settings; fn gets the benchmark name.
template <class Fn>
benchmark::internal::Benchmark* Reg(const std::string& name, Fn fn) {
  return RegisterNamed(name, fn)->MinTime(kMinTime)->UseRealTime()->Unit(benchmark::kNanosecond);
}

}  // namespace

void RegisterBaselineBenchmarks() {
  Reg("BM_Baseline_Memcpy100", BM_Baseline_Memcpy)->MinTime(0.2);
  Reg("BM_Baseline_Crc32c100", BM_Baseline_Crc32c)->MinTime(0.2);
  Reg("BM_Baseline_ClockRealtime", BM_Baseline_ClockRealtime)->MinTime(0.2);
  Reg("BM_Baseline_Record116", BM_Baseline_Record)->MinTime(0.2);
  Reg("BM_Write2_Single", BM_Write2_Single);
  for (size_t b : {10, 100, 1000}) {
    Reg("BM_Write2_Batch/" + std::to_string(b),
        [b](benchmark::State& st, const std::string& n) { BM_Write2_Batch(st, b, n); });
  }
}

void RegisterAppendBenchmarks() {
  for (SyncMode mode : {SyncMode::kNone, SyncMode::kInterval}) {
    for (bool by_name : {false, true}) {
      std::string api = by_name ? "name" : "handle";
      std::string key = std::string("append.single.") + api + "." + ModeName(mode);
      Reg("BM_Append_Single/" + api + "/" + ModeName(mode),
          [=](benchmark::State& st, const std::string& n) {
            BM_Append_Single(st, by_name, mode, true, key, n);
          });
    }
  }
  Reg("BM_Append_Single_Untimed/handle/none", [](benchmark::State& st, const std::string& n) {
    BM_Append_Single(st, false, SyncMode::kNone, false, "append.single_untimed.handle.none", n);
  });
  Reg("BM_Append_Single_Untimed/c_stream/none", BM_Append_Single_C);
  // One append right after a write(2) of 100 bytes and one right after that append.
  for (Sink where : {Sink::kFile, Sink::kDevNull, Sink::kColdTlb}) {
    const std::string sink = SinkName(where);
    Reg("BM_Append_AfterSyscall/c_stream/" + sink, [=](benchmark::State& st, const std::string& n) {
      BM_Append_AfterSyscall_C(st, where, "append.after_syscall.c_stream." + sink, n);
    });
    Reg("BM_Append_AfterSyscall/handle/" + sink, [=](benchmark::State& st, const std::string& n) {
      BM_Append_AfterSyscall_Handle(st, where, "append.after_syscall.handle." + sink, n);
    });
  }
  // Each batch size right after the original's method at that size (one write(2) per batch),
  // and batch 100 also after its 4 KiB and 64 KiB buffers: ratios from neighbouring runs.
  auto framed = [](size_t b, size_t flush, const std::string& key, const std::string& tag = "") {
    Reg("BM_Write2_Framed/" + std::to_string(b) + "/" +
            (flush ? std::to_string(flush >> 10) + "k" : std::string("batch")) + tag,
        [=](benchmark::State& st, const std::string& n) { BM_Write2_Framed(st, b, flush, key, n); });
  };
  for (size_t b : {10, 100, 1000}) {
    const std::string bs = std::to_string(b), paired = "write2.framed.batch" + bs;
    if (b == 100) {
      framed(b, 4 << 10, "write2.framed.4k");
      framed(b, 64 << 10, "write2.framed.64k");
    }
    if (b != 10) framed(b, 0, paired);
    Reg("BM_Append_Batch/" + bs + "/none", [=](benchmark::State& st, const std::string& n) {
      BM_Append_Batch(st, b, 1, SyncMode::kNone, "append.batch" + bs + ".none", n,
                      b != 10 ? paired : "");
    });
  }
  // Once more before the interval run, as another sample of the same figure.
  framed(100, 0, "write2.framed.batch100", "/again");
  Reg("BM_Append_Batch/100/interval", [](benchmark::State& st, const std::string& n) {
    BM_Append_Batch(st, 100, 1, SyncMode::kInterval, "append.batch100.interval", n,
                    "write2.framed.batch100");
  });
  for (size_t s : {1, 4, 64}) {
    Reg("BM_Append_Shards/" + std::to_string(s) + "/batch100/none",
        [s](benchmark::State& st, const std::string& n) {
          BM_Append_Batch(st, 100, s, SyncMode::kNone, "append.shards" + std::to_string(s), n);
        });
  }
}

}  // namespace comet_bench
