// Read benchmarks and their baselines, over one stream of 2M pre-appended 100-byte entries.
//
//   BM_Read_Sequential        Iterator::Next over the whole stream, again and again (entries/s);
//                             every entry's number and size are checked; every record's CRC
//                             too (the default)
//   BM_Read_Sequential/nocrc  the same with read.check_crc=false (each segment checked once, in
//                             full, when first read; then the page cache is trusted)
//   BM_Read_ById/handle|name  Client::Read of uniformly random entry numbers (ns per read)
//   BM_ReadFile_Sequential    baseline: read(2) of a flat file of the same 116-byte records in
//                             1 MiB chunks, CRC32C-checking every record (entries/s)
//   BM_Pread_Random           baseline: pread(2) of one 116-byte record at a random offset
//
// The data is written once, on first use, outside any timing (sync.mode none, batches of
// 1000), spot-checked, and the writer is closed; the benchmarks read through a read-only client
// (a writer client if read-only open fails). Everything is page-cache resident. The directory
// is removed after the last benchmark.
#include <fcntl.h>
#include <unistd.h>

#include <span>

#include "comet/comet.h"
#include "common.h"

namespace comet_bench {
namespace {

constexpr uint64_t kEntries = 2'000'000;
constexpr const char* kStream = "read:shard:0000";
constexpr size_t kRecord = 16 + kEntryBytes;  // flat-file record: crc, size, timestamp, payload

struct ReadData {
  TempDir dir;
  Payloads payloads;
  std::unique_ptr<comet::Client> client;
  comet::Stream* stream = nullptr;
  std::unique_ptr<comet::Client> nocrc_client;  // read.check_crc=false
  comet::Stream* nocrc_stream = nullptr;
  std::string flat_path;
  std::string error;  // set when setup failed
  std::vector<uint64_t> random_ids;
  std::string note;
};

std::string SetUp(ReadData* d) {
  if (!d->dir.ok()) return "mkdtemp under /tmp failed";
  const std::string data = d->dir.Sub("data");
  {
    comet::Config cfg;
    cfg.sync.mode = comet::SyncMode::kNone;
    auto r = comet::Client::Open(data, cfg);
    if (!r.ok()) return "Client::Open(" + data + "): " + r.status().ToString();
    std::unique_ptr<comet::Client> w = std::move(r).value();
    auto s = w->GetStream(kStream);
    if (!s.ok()) return "GetStream: " + s.status().ToString();
    std::vector<std::string_view> batch(1000);
    for (uint64_t j = 0; j < kEntries; j += batch.size()) {
      for (size_t k = 0; k < batch.size(); k++) batch[k] = d->payloads[j + k];
      comet::Status st = w->Append(s.value(), std::span<const std::string_view>(batch));
      if (!st.ok()) return "Append at entry " + std::to_string(j) + ": " + st.ToString();
    }
    auto len = w->Length(kStream);
    if (!len.ok()) return "Length: " + len.status().ToString();
    if (len.value() != kEntries)
      return "Length is " + std::to_string(len.value()) + ", expected " + std::to_string(kEntries);
    comet::Status st = w->Close();
    if (!st.ok()) return "Close after writing: " + st.ToString();
  }
  {
    comet::Config cfg;
    cfg.open.read_only = true;
    auto r = comet::Client::Open(data, cfg);
    if (!r.ok()) {
      d->note = "read-only open failed (" + r.status().ToString() + "); reads use a writer";
      comet::Config wcfg;
      wcfg.sync.mode = comet::SyncMode::kNone;
      r = comet::Client::Open(data, wcfg);
      if (!r.ok()) return "Client::Open for reading: " + r.status().ToString();
    }
    d->client = std::move(r).value();
    auto s = d->client->GetStream(kStream);
    if (!s.ok()) return "GetStream for reading: " + s.status().ToString();
    d->stream = s.value();
  }
  {
    comet::Config cfg;
    cfg.open.read_only = true;
    cfg.read.check_crc = false;
    auto r = comet::Client::Open(data, cfg);
    if (!r.ok()) return "Client::Open with read.check_crc=false: " + r.status().ToString();
    d->nocrc_client = std::move(r).value();
    auto s = d->nocrc_client->GetStream(kStream);
    if (!s.ok()) return "GetStream (read.check_crc=false): " + s.status().ToString();
    d->nocrc_stream = s.value();
  }
  // Spot checks: every returned entry must be the one written.
  for (uint64_t j : {uint64_t(0), uint64_t(1), uint64_t(1'234'567), kEntries - 1}) {
    comet::Entry e;
    comet::Status st = d->client->Read(d->stream, j, &e);
    if (!st.ok()) return "Read(" + std::to_string(j) + "): " + st.ToString();
    if (e.data != d->payloads[j] || e.id.entry != j)
      return "Read(" + std::to_string(j) + ") returned the wrong entry";
  }
  // The flat file of the baselines: the same records, written with plain write(2).
  d->flat_path = d->dir.Sub("flat.log");
  int fd = ::open(d->flat_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return "open " + d->flat_path + ": " + std::strerror(errno);
  std::string buf;
  buf.reserve(4u << 20);
  for (uint64_t j = 0; j < kEntries; j++) {
    std::string_view e = d->payloads[j];
    char rec[kRecord];
    uint32_t size = uint32_t(e.size());
    int64_t ts = int64_t(j);
    std::memcpy(rec + 4, &size, 4);
    std::memcpy(rec + 8, &ts, 8);
    std::memcpy(rec + 16, e.data(), e.size());
    uint32_t crc = Crc32c(0, rec + 4, kRecord - 4);
    std::memcpy(rec, &crc, 4);
    buf.append(rec, kRecord);
    if (buf.size() + kRecord > buf.capacity() || j + 1 == kEntries) {
      if (::write(fd, buf.data(), buf.size()) != ssize_t(buf.size())) {
        ::close(fd);
        return "write " + d->flat_path + " failed";
      }
      buf.clear();
    }
  }
  ::close(fd);
  uint64_t x = 0x2545F4914F6CDD1Dull;
  d->random_ids.resize(1u << 20);
  for (auto& id : d->random_ids) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    id = x % kEntries;
  }
  return "";
}

ReadData* Data() {
  static std::unique_ptr<ReadData> d;
  if (!d) {
    d = std::make_unique<ReadData>();
    d->error = SetUp(d.get());
    if (!d->note.empty()) Notes()["read"] = d->note;
    Cleanups().push_back([] {
      if (!d) return;
      if (d->client) (void)d->client->Close();
      d.reset();
    });
  }
  return d.get();
}

// The data, or null with the benchmark failed (and its loop drained).
ReadData* DataOrFail(benchmark::State& state) {
  ReadData* d = Data();
  if (!d->error.empty()) {
    std::string msg = "read fixture: " + d->error;
    state.SkipWithError(msg.c_str());
    for (auto _ : state) {
    }
    return nullptr;
  }
  return d;
}

void BM_Read_Sequential(benchmark::State& state, bool check_crc, const std::string& bench) {
  ReadData* d = DataOrFail(state);
  if (!d) return;
  comet::Client* client = check_crc ? d->client.get() : d->nocrc_client.get();
  comet::Stream* stream = check_crc ? d->stream : d->nocrc_stream;
  auto r = client->Scan(stream, 0);
  if (!r.ok()) {
    FailStatus(state, "Scan", r.status());
    for (auto _ : state) {
    }
    return;
  }
  comet::Iterator it = std::move(r).value();
  comet::Entry e;
  uint64_t expect = 0, bad = 0, passes = 0;
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    comet::Status st = it.Next(&e);
    if (!st.ok()) [[unlikely]] {
      if (st.IsNotFound() && expect == kEntries) {
        passes++;
        auto again = client->Scan(stream, 0);
        if (again.ok()) {
          it = std::move(again).value();
          expect = 0;
          st = it.Next(&e);
        } else {
          st = again.status();
        }
      }
      if (!st.ok()) {
        FailStatus(state, ("Next at entry " + std::to_string(expect)).c_str(), st);
        break;
      }
    }
    bad += (e.id.entry != expect) | (e.data.size() != kEntryBytes);
    benchmark::DoNotOptimize(e.data.data());
    expect++;
  }
  double secs = wt.Seconds();
  if (state.error_occurred()) return;
  if (bad) {
    std::string msg = std::to_string(bad) + " entries came back with a wrong number or size";
    state.SkipWithError(msg.c_str());
    return;
  }
  SetFigure(check_crc ? "read.seq.items_per_s" : "read.seq.nocrc.items_per_s",
            double(state.iterations()) / secs, bench, state.iterations());
  state.counters["passes"] = double(passes);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * int64_t(kEntryBytes));
}

// BM_Read_Sequential through the C ABI: comet_scan_next, 256 messages per call, from a read-only
// C client on the same directory; items are entries.
void BM_Read_Sequential_C(benchmark::State& state, const std::string& bench) {
  ReadData* d = DataOrFail(state);
  if (!d) return;
  comet_config* cfg = comet_config_new();
  int rc = cfg ? comet_config_set(cfg, "open.read_only", "true") : COMET_ERR_INVALID;
  comet_client* c = nullptr;
  if (rc == COMET_OK) rc = comet_open(d->dir.Sub("data").c_str(), cfg, &c);
  comet_config_free(cfg);
  comet_scan* it = nullptr;
  if (rc == COMET_OK) rc = comet_scan_open(c, kStream, 0, &it);
  if (rc != COMET_OK) {
    state.SkipWithError((std::string("C ABI setup: ") + comet_last_error()).c_str());
    if (c) comet_close(c);
    for (auto _ : state) {
    }
    return;
  }
  constexpr size_t kMax = 256;
  std::vector<comet_message> m(kMax);
  uint64_t expect = 0, bad = 0, items = 0;
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    int n = comet_scan_next(it, m.data(), kMax, 0);
    if (n == 0 && expect == kEntries) {  // the end: again from the start
      comet_scan_close(it);
      it = nullptr;
      expect = 0;
      n = comet_scan_open(c, kStream, 0, &it) == COMET_OK ? comet_scan_next(it, m.data(), kMax, 0)
                                                          : -1;
    }
    if (n <= 0) [[unlikely]] {
      state.SkipWithError((std::string("comet_scan_next: ") + comet_last_error()).c_str());
      break;
    }
    for (int i = 0; i < n; i++) {
      bad += (m[i].id.entry != expect) | (m[i].len != kEntryBytes);
      benchmark::DoNotOptimize(m[i].data);
      expect++;
    }
    items += uint64_t(n);
  }
  const double secs = wt.Seconds();
  comet_scan_close(it);
  comet_close(c);
  if (state.error_occurred()) return;
  if (bad) {
    std::string msg = std::to_string(bad) + " entries came back with a wrong number or size";
    state.SkipWithError(msg.c_str());
    return;
  }
  SetFigure("read.seq.c_scan.items_per_s", double(items) / secs, bench, state.iterations());
  state.SetItemsProcessed(int64_t(items));
  state.SetBytesProcessed(int64_t(items * kEntryBytes));
}

void BM_Read_ById(benchmark::State& state, bool by_name, const std::string& bench) {
  ReadData* d = DataOrFail(state);
  if (!d) return;
  comet::Entry e;
  const std::string name = kStream;
  const uint64_t* ids = d->random_ids.data();
  const size_t mask = d->random_ids.size() - 1;
  size_t i = 0;
  uint64_t bad = 0;
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    uint64_t id = ids[i++ & mask];
    comet::Status st = by_name ? d->client->Read(name, id, &e) : d->client->Read(d->stream, id, &e);
    if (!st.ok()) [[unlikely]] {
      FailStatus(state, ("Read(" + std::to_string(id) + ")").c_str(), st);
      break;
    }
    bad += (e.id.entry != id) | (e.data.size() != kEntryBytes);
    benchmark::DoNotOptimize(e.data.data());
  }
  double secs = wt.Seconds();
  if (state.error_occurred()) return;
  if (bad) {
    std::string msg = std::to_string(bad) + " reads returned a wrong entry number or size";
    state.SkipWithError(msg.c_str());
    return;
  }
  std::string key = by_name ? "read.random.name" : "read.random.handle";
  SetFigure(key + ".mean_ns", secs * 1e9 / double(state.iterations()), bench, state.iterations());
  state.SetItemsProcessed(state.iterations());
}

void BM_ReadFile_Sequential(benchmark::State& state, const std::string& bench) {
  ReadData* d = DataOrFail(state);
  if (!d) return;
  int fd = ::open(d->flat_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    state.SkipWithError("open flat file failed");
    for (auto _ : state) {
    }
    return;
  }
  constexpr size_t kChunk = (1u << 20) / kRecord * kRecord;
  std::vector<char> buf(kChunk);
  size_t have = 0, pos = 0;
  uint64_t bad = 0;
  bool failed = false;
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    if (pos == have) [[unlikely]] {
      ssize_t n = ::read(fd, buf.data(), kChunk);
      if (n == 0) {
        ::lseek(fd, 0, SEEK_SET);
        n = ::read(fd, buf.data(), kChunk);
      }
      if (n <= 0 || n % ssize_t(kRecord) != 0) {
        failed = true;
        break;
      }
      have = size_t(n);
      pos = 0;
    }
    const char* rec = buf.data() + pos;
    uint32_t crc, size;
    std::memcpy(&crc, rec, 4);
    std::memcpy(&size, rec + 4, 4);
    bad += Crc32c(0, rec + 4, 12 + size) != crc;
    benchmark::DoNotOptimize(rec);
    pos += 16 + size;
  }
  double secs = wt.Seconds();
  ::close(fd);
  if (failed) {
    state.SkipWithError("read(2) of the flat file failed");
    return;
  }
  if (bad) state.SkipWithError("flat file CRC mismatch");
  SetFigure("readfile.seq.items_per_s", double(state.iterations()) / secs, bench,
            state.iterations());
  state.SetItemsProcessed(state.iterations());
}

void BM_Pread_Random(benchmark::State& state, const std::string& bench) {
  ReadData* d = DataOrFail(state);
  if (!d) return;
  int fd = ::open(d->flat_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    state.SkipWithError("open flat file failed");
    for (auto _ : state) {
    }
    return;
  }
  const uint64_t* ids = d->random_ids.data();
  const size_t mask = d->random_ids.size() - 1;
  size_t i = 0;
  char rec[kRecord];
  WallTimer wt;
  wt.Start();
  for (auto _ : state) {
    uint64_t id = ids[i++ & mask];
    ssize_t n = ::pread(fd, rec, kRecord, off_t(id * kRecord));
    if (n != ssize_t(kRecord)) [[unlikely]] {
      state.SkipWithError("pread(2) failed or was short");
      break;
    }
    benchmark::DoNotOptimize(rec);
  }
  double secs = wt.Seconds();
  ::close(fd);
  SetFigure("pread.random.mean_ns", secs * 1e9 / double(state.iterations()), bench,
            state.iterations());
  state.SetItemsProcessed(state.iterations());
}

template <class Fn>
benchmark::internal::Benchmark* Reg(const std::string& name, Fn fn) {
  return RegisterNamed(name, fn)->MinTime(0.5)->UseRealTime()->Unit(benchmark::kNanosecond);
}

}  // namespace

void RegisterReadBenchmarks() {
  Reg("BM_Read_Sequential",
      [](benchmark::State& st, const std::string& n) { BM_Read_Sequential(st, true, n); });
  Reg("BM_Read_Sequential/nocrc",
      [](benchmark::State& st, const std::string& n) { BM_Read_Sequential(st, false, n); });
  Reg("BM_Read_Sequential/c_scan", BM_Read_Sequential_C);
  Reg("BM_Read_ById/handle",
      [](benchmark::State& st, const std::string& n) { BM_Read_ById(st, false, n); });
  Reg("BM_Read_ById/name",
      [](benchmark::State& st, const std::string& n) { BM_Read_ById(st, true, n); });
  Reg("BM_ReadFile_Sequential", BM_ReadFile_Sequential);
  Reg("BM_Pread_Random", BM_Pread_Random);
}

}  // namespace comet_bench
