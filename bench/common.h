// Shared pieces of the Comet benchmarks: the figure registry that main() turns into the results
// table, temporary data directories, payloads, and a few helpers.
//
// Every benchmark function may be called several times by Google Benchmark (growing iteration
// counts until the minimum time is reached, then repetitions); see SetFigure for which of the
// recorded values a figure reports.
#pragma once

#include <benchmark/benchmark.h>
#include <nmmintrin.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "comet/client.h"
#include "crc32c.h"
#include "latency.h"

namespace comet_bench {

// ---- figure registry ------------------------------------------------------------------------

struct Figure {
  double value = 0;       // median of the reported runs
  double lo = 0, hi = 0;  // their range
  int runs = 0;
  std::string benchmark;  // the benchmark that produced it
};

// Every value recorded for a key: per benchmark (repetitions are registered as separate
// benchmarks, ".../rep:2"), the iteration count of the run that recorded it and the value.
struct FigureSamples {
  std::map<std::string, std::vector<std::pair<int64_t, double>>> by_benchmark;
};

inline std::map<std::string, FigureSamples>& FigureRuns() {
  static std::map<std::string, FigureSamples> f;
  return f;
}
// Google Benchmark calls a benchmark function with growing iteration counts until a run is long
// enough, and reports that last run (with --benchmark_repetitions=N, N runs of that count). Per
// benchmark, the values of its runs with the largest iteration count count; the figure of a key
// is the median of those over all benchmarks that recorded it (the repetitions).
inline void SetFigure(const std::string& key, double value, const std::string& benchmark,
                      int64_t iterations) {
  FigureRuns()[key].by_benchmark[benchmark].emplace_back(iterations, value);
}
// The figure of `key`, or null when nothing recorded it. The pointer is valid until the next
// call.
inline const Figure* GetFigure(const std::string& key) {
  static Figure result;
  auto it = FigureRuns().find(key);
  if (it == FigureRuns().end()) return nullptr;
  std::vector<double> v;
  for (const auto& [bench, runs] : it->second.by_benchmark) {
    int64_t top = 0;
    for (const auto& r : runs) top = std::max(top, r.first);
    for (const auto& r : runs)
      if (r.first == top) v.push_back(r.second);
    result.benchmark = bench;
  }
  if (v.empty()) return nullptr;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  result.value = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  result.lo = v.front();
  result.hi = v.back();
  result.runs = static_cast<int>(n);
  return &result;
}
inline bool AnyFigures() { return !FigureRuns().empty(); }

// Notes collected while running (failures, anomalies) printed under the table.
inline std::map<std::string, std::string>& Notes() {
  static std::map<std::string, std::string> n;
  return n;
}

// A benchmark that failed reports nothing, not even what its shorter calibration runs recorded.
inline void DropFigures(const std::string& benchmark) {
  auto& runs = FigureRuns();
  for (auto it = runs.begin(); it != runs.end();) {
    it->second.by_benchmark.erase(benchmark);
    if (it->second.by_benchmark.empty())
      it = runs.erase(it);
    else
      ++it;
  }
  Notes()[benchmark] = "failed; its figures are left out (the error is in the benchmark output)";
}

// Repetitions: every benchmark is registered COMET_BENCH_REPS times (default 3), as
// "<name>/rep:<k>", one full pass after another, and figures are medians over the passes. This
// is done by registration rather than --benchmark_repetitions because libbenchmark 1.7.1
// crashes computing the aggregates when one repetition fails (google/benchmark#1406).
inline int Reps() {
  const char* e = std::getenv("COMET_BENCH_REPS");
  int r = e && *e ? std::atoi(e) : 3;
  return std::clamp(r, 1, 20);
}
// The suffix RegisterNamed appends to names ("" or "/rep:<k>").
inline std::string& RepSuffix() {
  static std::string s;
  return s;
}

// Registers fn(state, name) under `name`, dropping the figures of a failed run.
template <class Fn>
benchmark::internal::Benchmark* RegisterNamed(const std::string& base_name, Fn fn) {
  const std::string name = base_name + RepSuffix();
  return benchmark::RegisterBenchmark(name.c_str(), [fn, name](benchmark::State& st) {
    fn(st, name);
    if (st.error_occurred()) DropFigures(name);
  });
}

// Work to run after all benchmarks (fixtures shared between benchmarks).
inline std::vector<std::function<void()>>& Cleanups() {
  static std::vector<std::function<void()>> c;
  return c;
}

// Records a latency histogram as counters (ns) on the benchmark and as figures.
inline void PublishLatency(benchmark::State& state, const LatencyHistogram& h,
                           const std::string& key, const std::string& bench) {
  double p50 = h.Percentile(50), p99 = h.Percentile(99), p999 = h.Percentile(99.9);
  state.counters["p50_ns"] = p50;
  state.counters["p99_ns"] = p99;
  state.counters["p999_ns"] = p999;
  state.counters["max_ns"] = double(h.max());
  SetFigure(key + ".p50", p50, bench, state.iterations());
  SetFigure(key + ".p99", p99, bench, state.iterations());
  SetFigure(key + ".p999", p999, bench, state.iterations());
  SetFigure(key + ".max", double(h.max()), bench, state.iterations());
  SetFigure(key + ".samples", double(h.count()), bench, state.iterations());
  if (h.count() > 0) {
    SetFigure(key + ".over_1us", double(h.CountAbove(1000)) / double(h.count()), bench,
              state.iterations());
    SetFigure(key + ".over_10us", double(h.CountAbove(10'000)) / double(h.count()), bench,
              state.iterations());
    SetFigure(key + ".over_1ms", double(h.CountAbove(1'000'000)), bench, state.iterations());
  }
}

// Wall-clock seconds around a benchmark loop (same span Google Benchmark's real time covers).
class WallTimer {
 public:
  void Start() { t0_ = std::chrono::steady_clock::now(); }
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  std::chrono::steady_clock::time_point t0_;
};

// What the calling thread went through during a timed loop: page faults it took itself (the
// design says the hot path never faults), voluntary context switches (it blocked: a lock, a
// page lock, I/O) and involuntary ones (it was preempted); plus the machine's TLB-shootdown
// IPIs (writeback write-protecting mapped pages interrupts the appending CPU). Read with
// getrusage(RUSAGE_THREAD) and /proc/interrupts outside the loop.
class ThreadUsage {
 public:
  void Start() {
    tlb_a_ = InterruptCount("TLB:");
    getrusage(RUSAGE_THREAD, &a_);
  }
  void Stop() {
    getrusage(RUSAGE_THREAD, &b_);
    tlb_b_ = InterruptCount("TLB:");
  }
  // TLB-shootdown IPIs received by all CPUs meanwhile (system-wide, /proc/interrupts).
  int64_t tlb_shootdowns() const { return int64_t(tlb_b_ - tlb_a_); }

  // The total over all CPUs of one /proc/interrupts row ("TLB:", "CAL:", ...); 0 if absent.
  static uint64_t InterruptCount(const char* row) {
    FILE* f = std::fopen("/proc/interrupts", "re");
    if (!f) return 0;
    char line[4096];
    uint64_t total = 0;
    const size_t len = std::strlen(row);
    while (std::fgets(line, sizeof line, f)) {
      const char* p = line;
      while (*p == ' ') p++;
      if (std::strncmp(p, row, len) != 0) continue;
      p += len;
      char* end;
      for (;;) {
        unsigned long long v = std::strtoull(p, &end, 10);
        if (end == p) break;
        total += v;
        p = end;
      }
      break;
    }
    std::fclose(f);
    return total;
  }
  int64_t faults() const { return (b_.ru_minflt - a_.ru_minflt) + (b_.ru_majflt - a_.ru_majflt); }
  int64_t voluntary() const { return b_.ru_nvcsw - a_.ru_nvcsw; }
  int64_t involuntary() const { return b_.ru_nivcsw - a_.ru_nivcsw; }
  static double Secs(const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; }
  double user_s() const { return Secs(b_.ru_utime) - Secs(a_.ru_utime); }
  double sys_s() const { return Secs(b_.ru_stime) - Secs(a_.ru_stime); }
  // Counters on the benchmark and figures "<key>.faults" etc., per million entries.
  void Publish(benchmark::State& state, double entries, const std::string& key,
               const std::string& bench) const {
    state.counters["wr_faults"] = double(faults());
    state.counters["wr_vcsw"] = double(voluntary());
    state.counters["wr_ivcsw"] = double(involuntary());
    state.counters["tlb_ipis"] = double(tlb_shootdowns());
    // Share of the appending thread's CPU time spent in the kernel (page faults, syscalls).
    if (user_s() + sys_s() > 0) state.counters["wr_sys_frac"] = sys_s() / (user_s() + sys_s());
    if (entries <= 0) return;
    SetFigure(key + ".faults_per_M", double(faults()) * 1e6 / entries, bench, state.iterations());
    SetFigure(key + ".tlb_per_M", double(tlb_shootdowns()) * 1e6 / entries, bench,
              state.iterations());
    SetFigure(key + ".vcsw_per_M", double(voluntary()) * 1e6 / entries, bench, state.iterations());
    if (user_s() + sys_s() > 0)
      SetFigure(key + ".sys_frac", sys_s() / (user_s() + sys_s()), bench, state.iterations());
    SetFigure(key + ".ivcsw_per_M", double(involuntary()) * 1e6 / entries, bench,
              state.iterations());
  }

 private:
  rusage a_{}, b_{};
  uint64_t tlb_a_ = 0, tlb_b_ = 0;
};

// CPU time of the whole process (every thread: the library's background threads count) over a
// timed loop, published as "<key>.cpu_ns" per entry: on a loaded machine, what a method costs
// even when the wall clock mostly measures waiting for a CPU.
class ProcessCpu {
 public:
  ProcessCpu() : t0_(Now()) {}
  void Publish(benchmark::State& state, double entries, const std::string& key,
               const std::string& bench) const {
    if (entries <= 0) return;
    const double ns = (Now() - t0_) * 1e9 / entries;
    state.counters["cpu_ns_per_entry"] = ns;
    SetFigure(key + ".cpu_ns", ns, bench, state.iterations());
  }

 private:
  static double Now() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ThreadUsage::Secs(ru.ru_utime) + ThreadUsage::Secs(ru.ru_stime);
  }
  double t0_;
};

// The latest rate a baseline measured, by figure key: a benchmark run right after it in the
// same pass divides by it, so that a ratio compares runs that saw the same machine load.
inline std::map<std::string, double>& LatestRates() {
  static std::map<std::string, double> r;
  return r;
}

// ---- temporary directories ------------------------------------------------------------------

inline constexpr const char* kTmpPrefix = "/tmp/comet_bench.";

// A fresh directory /tmp/comet_bench.<pid>.XXXXXX, removed with everything in it on
// destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = std::string(kTmpPrefix) + std::to_string(getpid()) + ".XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr) path_ = buf.data();
  }
  ~TempDir() { Remove(); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }
  void Remove() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    path_.clear();
  }

 private:
  std::string path_;
};

// Removes directories left behind by earlier runs that died (their pid is gone).
inline void RemoveStaleTempDirs() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/tmp", ec)) {
    std::string name = e.path().filename().string();
    const std::string pfx = "comet_bench.";
    if (name.rfind(pfx, 0) != 0) continue;
    pid_t pid = static_cast<pid_t>(std::atol(name.c_str() + pfx.size()));
    if (pid <= 0 || pid == getpid()) continue;
    if (kill(pid, 0) == 0 || errno == EPERM) continue;  // still alive
    std::error_code ec2;
    std::filesystem::remove_all(e.path(), ec2);
  }
}

// ---- payloads -------------------------------------------------------------------------------

inline constexpr size_t kEntryBytes = 100;

// `count` distinct printable payloads of `size` bytes each (log-line-like text), contiguous.
class Payloads {
 public:
  // `count` is rounded up to a power of two, so that indexing is a mask, not a division.
  explicit Payloads(size_t count = 1024, size_t size = kEntryBytes) {
    count = std::bit_ceil(std::max<size_t>(count, 1));
    mask_ = count - 1;
    buf_.resize(count * size);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < buf_.size(); i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      buf_[i] = static_cast<char>(' ' + (x % 95));
    }
    for (size_t i = 0; i < count; i++) views_.emplace_back(buf_.data() + i * size, size);
  }
  const std::vector<std::string_view>& views() const { return views_; }
  std::string_view operator[](size_t i) const { return views_[i & mask_]; }
  size_t count() const { return views_.size(); }

 private:
  size_t mask_ = 0;
  std::string buf_;
  std::vector<std::string_view> views_;
};

// ---- Comet helpers --------------------------------------------------------------------------

inline const char* ModeName(comet::SyncMode m) {
  switch (m) {
    case comet::SyncMode::kNone:
      return "none";
    case comet::SyncMode::kInterval:
      return "interval";
    case comet::SyncMode::kAlways:
      return "always";
  }
  return "?";
}

// Opens a writer on `dir` with the default config but the given sync mode. On failure marks
// the benchmark as failed and returns null.
// COMET_BENCH_CONFIG="key=value,key=value" sets further keys (for A/B runs of one build).
inline std::unique_ptr<comet::Client> OpenClient(benchmark::State& state, const std::string& dir,
                                                 comet::SyncMode mode) {
  comet::Config cfg;
  cfg.sync.mode = mode;
  if (const char* extra = std::getenv("COMET_BENCH_CONFIG")) {
    std::string_view rest = extra;
    while (!rest.empty()) {
      const std::string_view kv = rest.substr(0, rest.find(','));
      rest.remove_prefix(std::min(rest.size(), kv.size() + 1));
      const size_t eq = kv.find('=');
      comet::Status st =
          eq == std::string_view::npos
              ? comet::Status::Invalid("COMET_BENCH_CONFIG: no '=' in " + std::string(kv))
              : cfg.Set(kv.substr(0, eq), kv.substr(eq + 1));
      if (!st.ok()) {
        state.SkipWithError(st.ToString().c_str());
        return nullptr;
      }
    }
  }
  auto r = comet::Client::Open(dir, cfg);
  if (!r.ok()) {
    std::string msg = "Client::Open(" + dir + "): " + r.status().ToString();
    state.SkipWithError(msg.c_str());
    return nullptr;
  }
  return std::move(r).value();
}

inline comet::Stream* GetStreamOrFail(benchmark::State& state, comet::Client* c,
                                      const std::string& name) {
  auto r = c->GetStream(name);
  if (!r.ok()) {
    std::string msg = "GetStream(" + name + "): " + r.status().ToString();
    state.SkipWithError(msg.c_str());
    return nullptr;
  }
  return r.value();
}

inline void FailStatus(benchmark::State& state, const char* what, const comet::Status& st) {
  std::string msg = std::string(what) + ": " + st.ToString();
  state.SkipWithError(msg.c_str());
}

// ---- CRC32C for the baselines: the library's own, so that floors measure what appends pay --------

inline uint32_t Crc32c(uint32_t crc, const void* data, size_t n) {
  return comet::crc32c::Extend(crc, data, n);
}

// Registration entry points (called by main in this order).
void RegisterBaselineBenchmarks();
void RegisterAppendBenchmarks();
void RegisterReadBenchmarks();
void RegisterMultiProcessBenchmarks();
void RegisterProbeBenchmarks();
void RegisterFirstTouchBenchmarks();
void RegisterConsumerBenchmarks();

}  // namespace comet_bench
