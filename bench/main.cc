// comet_bench: runs the Google Benchmark suites (all Google Benchmark flags work, e.g.
// --benchmark_filter=Append; every benchmark runs COMET_BENCH_REPS times, default 3, and the
// figures are medians; COMET_BENCH_REPS=1 for a quick pass), then prints the headline figures as
// one markdown table and writes it to build/bench/results.md (next to the binary's build/bin/;
// COMET_BENCH_RESULTS overrides the path). COMET_BENCH_SLOW=1 prints the entry numbers of
// single appends that took 1 ms or more.
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common.h"

namespace comet_bench {
namespace {

std::string Fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string FmtNs(double ns) {
  if (ns < 1000) return Fmt("%.0f ns", ns);
  if (ns < 1e6) return Fmt("%.2f µs", ns / 1e3);
  if (ns < 1e9) return Fmt("%.2f ms", ns / 1e6);
  return Fmt("%.2f s", ns / 1e9);
}

std::string FmtRate(double per_s) {
  if (per_s >= 1e6) return Fmt("%.1f M/s", per_s / 1e6);
  if (per_s >= 1e3) return Fmt("%.1f k/s", per_s / 1e3);
  return Fmt("%.0f /s", per_s);
}

enum class Kind { kLatency, kRate };

struct Value {
  std::optional<double> v;
  double lo = 0, hi = 0;  // range over repetitions, when more than one
  int runs = 0;
};

Value Fig(const std::string& key) {
  const Figure* f = GetFigure(key);
  if (!f) return {};
  return {f->value, f->lo, f->hi, f->runs};
}
Value Fixed(double v) { return {v, 0, 0, 0}; }

struct Row {
  std::string figure;
  Kind kind;
  Value comet;
  std::optional<double> target;  // latency: at most; rate: at least
  Value baseline;
  std::string baseline_name;
  // Rates: the median (and range) of per-pass ratios to a baseline run just before in the same
  // pass, shown instead of the ratio of the two medians; the target then applies to it.
  Value paired{};
  std::optional<double> ratio_target{};
};

std::string FmtValue(Kind k, double v) { return k == Kind::kLatency ? FmtNs(v) : FmtRate(v); }

// "lo–hi" in the unit FmtValue picks for `ref`, without the unit.
std::string FmtRange(Kind k, double ref, double lo, double hi) {
  double scale = 1;
  const char* f = "%.0f";
  if (k == Kind::kLatency) {
    if (ref >= 1e9)
      scale = 1e9, f = "%.2f";
    else if (ref >= 1e6)
      scale = 1e6, f = "%.2f";
    else if (ref >= 1000)
      scale = 1e3, f = "%.2f";
  } else {
    if (ref >= 1e6)
      scale = 1e6, f = "%.1f";
    else if (ref >= 1e3)
      scale = 1e3, f = "%.1f";
  }
  return Fmt(f, lo / scale) + "–" + Fmt(f, hi / scale);
}

std::string TargetCell(const Row& r) {
  if (r.ratio_target) {
    std::string s = Fmt("≥ %.1f× baseline", *r.ratio_target);
    if (!r.paired.v) return s;
    return s + (*r.paired.v >= *r.ratio_target ? " ✓" : " ✗");
  }
  if (!r.target) return "—";
  double t = *r.target;
  std::string s = (r.kind == Kind::kLatency ? "≤ " : "≥ ") + FmtValue(r.kind, t);
  if (!r.comet.v) return s;
  double c = *r.comet.v;
  if (r.kind == Kind::kLatency) {
    if (c <= t) return s + " ✓";
    return s + " ✗ (" + Fmt("%.0f%%", (c / t - 1) * 100) + " over)";
  }
  if (c >= t) return s + " ✓";
  return s + " ✗ (" + Fmt("%.0f%%", (1 - c / t) * 100) + " short)";
}

std::string RatioCell(const Row& r) {
  if (r.paired.v) {
    std::string s = Fmt("%.2f×", *r.paired.v);
    if (r.paired.runs > 1) s += Fmt(" (%.2f", r.paired.lo) + Fmt("–%.2f)", r.paired.hi);
    return s;
  }
  if (!r.comet.v || !r.baseline.v || *r.comet.v <= 0 || *r.baseline.v <= 0) return "—";
  double ratio = r.kind == Kind::kLatency ? *r.baseline.v / *r.comet.v : *r.comet.v / *r.baseline.v;
  return Fmt(ratio >= 10 ? "%.0f×" : "%.2f×", ratio);
}

std::string ReadFirstLine(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      auto c = line.find(':');
      if (c == std::string::npos) continue;
      std::string v = line.substr(c + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "unknown";
}

std::string MachineLine() {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  std::string model = ReadFirstLine("/proc/cpuinfo", "model name");
  std::string mhz = ReadFirstLine("/proc/cpuinfo", "cpu MHz");
  utsname u{};
  uname(&u);
  std::ifstream cs("/sys/devices/system/clocksource/clocksource0/current_clocksource");
  std::string clocksource;
  std::getline(cs, clocksource);
  char date[64];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::ostringstream o;
  o << "Machine: " << ncpu << " CPU (nproc), " << model << " @ " << mhz << " MHz, Linux "
    << u.release << ", clocksource " << clocksource << "; " << date << ".";
  return o.str();
}

// How busy the machine was around us: /proc/stat against our own rusage.
struct CpuSample {
  double busy = 0, steal = 0, total = 0;  // seconds, all CPUs, from /proc/stat
  double self = 0;                        // this process's user+sys seconds
  double wall = 0;
  std::string loadavg;
};

CpuSample SampleCpu() {
  CpuSample c;
  std::ifstream in("/proc/stat");
  std::string cpu;
  uint64_t v[10] = {};
  in >> cpu;
  for (auto& x : v) in >> x;
  const double hz = double(sysconf(_SC_CLK_TCK));
  // user nice system idle iowait irq softirq steal guest guest_nice
  c.busy = double(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;
  c.steal = double(v[7]) / hz;
  c.total = double(v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]) / hz;
  // This process and its reaped children (the multi-process benchmarks' fork()ed processes).
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage ru{};
    getrusage(who, &ru);
    c.self += double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
              double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  }
  c.wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  std::ifstream la("/proc/loadavg");
  std::string a, b, d;
  la >> a >> b >> d;
  c.loadavg = a + " " + b + " " + d;
  return c;
}

std::string LoadLine(const CpuSample& s, const CpuSample& e) {
  double wall = e.wall - s.wall, self = e.self - s.self, busy = e.busy - s.busy;
  double total = e.total - s.total, steal = e.steal - s.steal;
  double others = std::max(0.0, busy - steal - self);
  std::ostringstream o;
  o << "Load: this run took " << Fmt("%.1f", wall) << " s wall and " << Fmt("%.1f", self)
    << " CPU-s; other processes and kernel threads (writeback for our files included) used "
    << Fmt("%.1f", others) << " CPU-s (" << Fmt("%.0f", total > 0 ? 100 * others / total : 0)
    << "% of all CPUs), steal " << Fmt("%.1f", total > 0 ? 100 * steal / total : 0) << "%; loadavg "
    << s.loadavg << " at start, " << e.loadavg << " at end.";
  return o.str();
}

// The headline rows: appends, batches, shards and reads, each against its baseline.
std::vector<Row> HeadlineRows() {
  const double kGoSingleNs = 1700;
  std::vector<Row> rows;
  auto lat = [&](std::string figure, std::string key, std::optional<double> target,
                 std::string base_key, std::string base_name) {
    rows.push_back(
        {std::move(figure), Kind::kLatency, Fig(key), target, Fig(base_key), std::move(base_name)});
  };
  auto rate = [&](std::string figure, std::string key, std::optional<double> target,
                  std::string base_key, std::string base_name) {
    rows.push_back(
        {std::move(figure), Kind::kRate, Fig(key), target, Fig(base_key), std::move(base_name)});
  };

  for (std::string mode : {"none", "interval"}) {
    std::string k = "append.single.handle." + mode;
    lat("single append 100 B p50 (handle, sync " + mode + ")", k + ".p50", 100, "write2.single.p50",
        "write(2) p50");
    lat("single append 100 B p99 (handle, sync " + mode + ")", k + ".p99", std::nullopt,
        "write2.single.p99", "write(2) p99");
    lat("single append 100 B p99.9 (handle, sync " + mode + ")", k + ".p999", 5000,
        "write2.single.p999", "write(2) p99.9");
    lat("single append 100 B max (handle, sync " + mode + ")", k + ".max", std::nullopt,
        "write2.single.max", "write(2) max");
  }
  for (std::string mode : {"none", "interval"}) {
    std::string k = "append.single.name." + mode;
    lat("single append 100 B p50 (name, sync " + mode + ")", k + ".p50", 100, "write2.single.p50",
        "write(2) p50");
    lat("single append 100 B p99.9 (name, sync " + mode + ")", k + ".p999", 5000,
        "write2.single.p999", "write(2) p99.9");
  }
  rows.push_back({"single append 100 B mean, no timer (handle, none)", Kind::kLatency,
                  Fig("append.single_untimed.handle.none.mean_ns"), std::nullopt,
                  Fixed(kGoSingleNs), "Go original on an Apple M2 (quoted, not measured here)"});
  lat("single append 100 B mean vs its floor", "append.single_untimed.handle.none.mean_ns",
      std::nullopt, "floor.record.mean_ns", "clock+header+memcpy+CRC32C");

  for (int b : {10, 100, 1000}) {
    std::string bs = std::to_string(b);
    rate("batched append, batch " + bs + " (sync none)", "append.batch" + bs + ".none.items_per_s",
         20e6, "write2.batch" + bs + ".items_per_s", "writev(2) of " + bs + " × 100 B");
  }
  rate("batched append, batch 100 (sync interval)", "append.batch100.interval.items_per_s", 20e6,
       "write2.batch100.items_per_s", "writev(2) of 100 × 100 B");
  for (int s : {1, 4, 64}) {
    std::string ss = std::to_string(s);
    rate(ss + " shard" + (s > 1 ? "s" : "") + ", round robin, batch 100 (sync none)",
         "append.shards" + ss + ".items_per_s", std::nullopt,
         s == 1 ? "write2.batch100.items_per_s" : "append.shards1.items_per_s",
         s == 1 ? "writev(2) of 100 × 100 B" : "Comet, 1 shard");
  }
  rate("sequential read, Iterator (2M × 100 B)", "read.seq.items_per_s", 50e6,
       "readfile.seq.items_per_s", "read(2) 1 MiB + CRC32C per record");
  rate("sequential read, read.check_crc=false", "read.seq.nocrc.items_per_s", std::nullopt,
       "read.seq.items_per_s", "Comet, every CRC checked (default)");
  lat("random read by id, mean (handle)", "read.random.handle.mean_ns", std::nullopt,
      "pread.random.mean_ns", "pread(2) 116 B");
  lat("random read by id, mean (name)", "read.random.name.mean_ns", std::nullopt,
      "pread.random.mean_ns", "pread(2) 116 B");
  return rows;
}

// Against the original's method on this machine: records framed in a user-space buffer and
// written with write(2), run just before each Comet batch benchmark in every pass.
std::vector<Row> OriginalMethodRows() {
  std::vector<Row> rows;
  for (std::string b : {"100", "1000"}) {
    const std::string k = "append.batch" + b + ".none", base = "write2.framed.batch" + b;
    rows.push_back({"batched append, batch " + b + " (sync none)", Kind::kRate,
                         Fig(k + ".items_per_s"), std::nullopt, Fig(base + ".items_per_s"),
                         "write(2) per batch", Fig(k + ".vs_" + base), 2.0});
  }
  rows.push_back({"batched append, batch 100 (sync interval)", Kind::kRate,
                       Fig("append.batch100.interval.items_per_s"), std::nullopt,
                       Fig("write2.framed.batch100.items_per_s"), "write(2) per batch",
                       Fig("append.batch100.interval.vs_write2.framed.batch100"), 2.0});
  for (std::string f : {"4k", "64k"}) {
    rows.push_back({"batched append, batch 100 (sync none)", Kind::kRate,
                         Fig("append.batch100.none.items_per_s"), std::nullopt,
                         Fig("write2.framed." + f + ".items_per_s"),
                         "write(2) per " + std::string(f == "4k" ? "4" : "64") + " KiB buffered"});
  }
  for (std::string b : {"100", "1000"}) {
    rows.push_back({"process CPU per entry, batch " + b + " (sync none; every thread)",
                         Kind::kLatency, Fig("append.batch" + b + ".none.cpu_ns"), std::nullopt,
                         Fig("write2.framed.batch" + b + ".cpu_ns"), "write(2) per batch"});
  }
  return rows;
}

// Multi-process rows: real processes (fork) sharing one directory.
std::vector<Row> MultiProcessRows() {
  std::vector<Row> rows;
  auto scaled = [](const char* key, double k) -> std::optional<double> {
    const Figure* f = GetFigure(key);
    if (!f) return std::nullopt;
    return f->value * k;
  };
  const std::string sm = "single-mode process, same harness";
  for (int n : {1, 2}) {
    const std::string k = "mp.append.multi" + std::to_string(n);
    const std::string who = n == 1 ? "1 writer process" : "2 writer processes";
    rows.push_back({"multi-process single append 100 B p50, " + who + " (sync none)",
                       Kind::kLatency, Fig(k + ".p50"),
                       scaled("mp.append.single_mode.p50", 1.5),
                       Fig("mp.append.single_mode.p50"), sm + " p50"});
    rows.push_back({"multi-process single append 100 B p99, " + who, Kind::kLatency,
                       Fig(k + ".p99"), std::nullopt, Fig("mp.append.single_mode.p99"),
                       sm + " p99"});
    rows.push_back({"multi-process single append 100 B p99.9, " + who, Kind::kLatency,
                       Fig(k + ".p999"), std::nullopt, Fig("mp.append.single_mode.p999"),
                       sm + " p99.9"});
  }
  rows.push_back({"multi-process single append 100 B p50, 2 writer processes",
                     Kind::kLatency, Fig("mp.append.multi2.p50"), std::nullopt,
                     Fixed(33000), "Go original, multi-process"});
  rows.push_back({"single-mode process single append 100 B p50 (the reference above)",
                     Kind::kLatency, Fig("mp.append.single_mode.p50"), std::nullopt,
                     Fig("append.single.handle.none.p50"), "in-process benchmark p50"});
  rows.push_back({"batched append, batch 100, 1 writer process (multi, sync none)",
                     Kind::kRate, Fig("mp.batch100.multi1.items_per_s"), std::nullopt,
                     Fig("append.batch100.none.items_per_s"), "single mode, in-process"});
  rows.push_back({"batched append, batch 100, 2 writer processes, total", Kind::kRate,
                     Fig("mp.batch100.multi2.items_per_s"),
                     scaled("mp.batch100.multi1.items_per_s", 1.7),
                     Fig("mp.batch100.multi1.items_per_s"), "1 writer process"});
  rows.push_back({"write→read across processes p50, spinning reader", Kind::kLatency,
                     Fig("mp.w2r.spin.p50"), 2000, Fig("mp.floor.spin.p50"),
                     "shared-page store→spin p50"});
  rows.push_back({"write→read across processes p99, spinning reader", Kind::kLatency,
                     Fig("mp.w2r.spin.p99"), std::nullopt, Fig("mp.floor.spin.p99"),
                     "shared-page store→spin p99"});
  rows.push_back({"write→read across processes p50, parked reader (Iterator::Wait)",
                     Kind::kLatency, Fig("mp.w2r.park.p50"), 50000, Fig("mp.floor.futex.p50"),
                     "FUTEX_WAKE→woken p50"});
  rows.push_back({"write→read across processes p99, parked reader (Iterator::Wait)",
                     Kind::kLatency, Fig("mp.w2r.park.p99"), std::nullopt,
                     Fig("mp.floor.futex.p99"), "FUTEX_WAKE→woken p99"});
  return rows;
}

// Whether a filtered run measured any of these rows.
bool AnyMeasured(const std::vector<Row>& rs) {
  for (const Row& r : rs)
    if (r.comet.v) return true;
  return false;
}

// A section's table of rows, its header written before its first line.
class RowTable {
 public:
  RowTable(std::ostream& o, const std::string& filter) : o_(o), filter_(filter) {}

  void Rows(const std::vector<Row>& rs) {
    for (const Row& r : rs) {
      // A filtered run shows only what it measured; a full run shows failures as n/a.
      if (!r.comet.v && !filter_.empty()) continue;
      Header();
      std::string comet = r.comet.v ? FmtValue(r.kind, *r.comet.v) : "n/a";
      if (r.comet.v && r.comet.runs > 1)
        comet += " (" + FmtRange(r.kind, *r.comet.v, r.comet.lo, r.comet.hi) + ")";
      std::string base = r.baseline.v ? FmtValue(r.kind, *r.baseline.v) + " " + r.baseline_name
                                      : "n/a (" + r.baseline_name + ")";
      o_ << "| " << r.figure << " | " << comet << " | " << TargetCell(r) << " | " << base
         << " | " << RatioCell(r) << " |\n";
    }
  }

  // A baseline on its own.
  void Baseline(const std::string& figure, Kind k, const std::string& key) {
    const Figure* f = GetFigure(key);
    if (!f && !filter_.empty()) return;
    Header();
    o_ << "| " << figure << " | — | — | " << (f ? FmtValue(k, f->value) : "n/a") << " | — |\n";
  }

 private:
  void Header() {
    if (header_done_) return;
    o_ << "| figure | Comet | target | baseline | ratio |\n";
    o_ << "| --- | ---: | --- | --- | ---: |\n";
    header_done_ = true;
  }

  std::ostream& o_;
  const std::string& filter_;
  bool header_done_ = false;
};

// The headline rows, then the baselines and floors on their own.
void WriteHeadline(std::ostream& o, const std::string& filter) {
  RowTable t(o, filter);
  t.Rows(HeadlineRows());
  t.Baseline("baseline: write(2) 100 B O_APPEND p50", Kind::kLatency, "write2.single.p50");
  t.Baseline("baseline: write(2) 100 B O_APPEND p99.9", Kind::kLatency, "write2.single.p999");
  t.Baseline("floor: memcpy 100 B into a faulted buffer", Kind::kLatency, "floor.memcpy.mean_ns");
  t.Baseline("floor: CRC32C of 100 B (SSE4.2)", Kind::kLatency, "floor.crc.mean_ns");
  t.Baseline("floor: clock_gettime(CLOCK_REALTIME)", Kind::kLatency, "floor.clock.mean_ns");
  t.Baseline("floor: one 116 B record (clock+header+memcpy+CRC)", Kind::kLatency,
            "floor.record.mean_ns");
}

// A section of rows: its title, its table and how to read it. A filtered run that measured none
// of its rows leaves it out (false).
bool WriteRowSection(std::ostream& o, const std::string& filter, const char* title,
                     const std::vector<Row>& rows, const char* how) {
  if (!filter.empty() && !AnyMeasured(rows)) return false;
  o << "\n### " << title << "\n\n";
  RowTable(o, filter).Rows(rows);
  o << "\n" << how;
  return true;
}

void WriteOriginalMethod(std::ostream& o, const std::string& filter) {
  WriteRowSection(
      o, filter, "Against the original's method, measured here (framed records, write(2))",
      OriginalMethodRows(),
      "The original appends into a user-space buffer and hands it to the kernel with "
      "write(2). The baseline does the same with Comet's own framing (16-byte header, "
      "CRC32C, batch flag) into an O_APPEND file, flushing once per batch or whenever 4 KiB "
      "or 64 KiB are buffered; each Comet batch benchmark runs right after its baseline in "
      "every pass, and the ratio is the median (range) of those neighbouring pairs. CPU per "
      "entry is the whole process's user+system time (Comet's pre-fault thread included; "
      "kernel writeback threads in neither).\n");
}

void WriteMultiProcess(std::ostream& o, const std::string& filter) {
  const bool shown = WriteRowSection(
      o, filter, "Multi-process (fork()ed processes sharing one directory, concurrency.mode=multi)",
      MultiProcessRows(),
      "Each process is a fork() of the benchmark that opens its own client; writers append "
      "only to shards they own (PickStream over 8 shards, checked by a probe append), start "
      "together on a CLOCK_MONOTONIC start time sent through a pipe and report through pipes. "
      "Targets: multi-process p50 ≤ 1.5 × the single-mode process's p50 from the same run; "
      "2 writer processes ≥ 1.7 × 1. Write→read: the entry carries its CLOCK_MONOTONIC send "
      "time; the spinning reader busy-polls Iterator::Next (the writer sends the next entry "
      "once the previous one was seen), the parked one sleeps in Iterator::Wait while the "
      "writer sleeps 1 ms between appends. Baselines: the same hand-off through a shared page "
      "without Comet (store→spin, and FUTEX_WAKE of a reader in FUTEX_WAIT).\n");
  if (!shown) return;
  // GetFigure's result is only valid until its next call.
  auto value = [](const char* key) {
    const Figure* f = GetFigure(key);
    return f ? f->value : 0.0;
  };
  const double cpus1 = value("mp.batch100.multi1.cpus");
  const double rate1 = value("mp.batch100.multi1.items_per_s");
  const double cpus2 = value("mp.batch100.multi2.cpus");
  const double rate2 = value("mp.batch100.multi2.items_per_s");
  if (cpus1 > 0 && cpus2 > 0 && rate1 > 0 && rate2 > 0)
    o << "Batched writers kept " << Fmt("%.2f", cpus1) << " CPUs busy with 1 process (its "
      << "appending thread and its pre-fault thread; " << Fmt("%.0f", cpus1 * 1e9 / rate1)
      << " CPU-ns per entry) and " << Fmt("%.2f", cpus2) << " with 2 ("
      << Fmt("%.0f", cpus2 * 1e9 / rate2) << " CPU-ns per entry) on "
      << sysconf(_SC_NPROCESSORS_ONLN) << " CPUs: the 2-process figure is CPU-bound, and 1.7× "
      << "needs one process to use no more than " << Fmt("%.2f", 2 / 1.7)
      << " CPUs at the same cost per entry.\n";
}

// Observing appends: USDT sites detached, the export map, comet probe attached.
void WriteProbes(std::ostream& o) {
  auto cpu = [](const std::string& key) -> std::optional<double> {
    const Figure* f = GetFigure(key);
    if (!f) return std::nullopt;
    return f->value;
  };
  auto delta = [&](const std::string& a, const std::string& b) -> std::optional<double> {
    auto x = cpu(a), y = cpu(b);
    if (!x || !y) return std::nullopt;
    return *x - *y;
  };
  struct ProbeRow {
    std::string figure;
    std::optional<double> ns;
    std::optional<double> target;
  };
  const std::string sites = "probe.sites.", app = "probe.append.";
  std::vector<ProbeRow> pr = {
      {"USDT sites with nothing attached, per append, around an append's floor (copy + CRC)",
       delta(sites + "floor.detached.cpu_ns", sites + "floor.none.cpu_ns"), 1},
      {"USDT sites with nothing attached, per append, around an empty call",
       delta(sites + "empty.detached.cpu_ns", sites + "empty.none.cpu_ns"), std::nullopt},
      {"single append 100 B, probes detached, export off (thread CPU per append)",
       cpu(app + "detached.cpu_ns"), std::nullopt},
      {"export map on: added cost per append (interleaved A/B, fastest chunks)",
       delta("probe.export_ab.on.cpu_ns", "probe.export_ab.off.cpu_ns"), 10},
      {"single append 100 B, export map on (separate run)", cpu(app + "export.cpu_ns"),
       std::nullopt},
      {"comet probe attached: single append 100 B (thread CPU, traps included)",
       cpu(app + "attached.cpu_ns"), std::nullopt},
  };
  pr.push_back({"comet probe attached, metrics.probe_sample=16: single append 100 B",
                cpu(app + "sampled16.cpu_ns"), std::nullopt});
  if (auto d = delta(app + "attached.cpu_ns", app + "detached.cpu_ns")) {
    pr.push_back({"comet probe attached: cost per uprobe hit (2 hits per append)", *d / 2,
                  std::nullopt});
  }
  bool any = false;
  for (const ProbeRow& r : pr) any = any || r.ns;
  if (any) {
    o << "\n### Observing appends (eBPF)\n\n| figure | Comet | target |\n| --- | ---: | --- |\n";
    for (const ProbeRow& r : pr) {
      std::string v = r.ns ? Fmt("%.2f ns", *r.ns) : "n/a (needs root and BPF)";
      std::string t = "—";
      if (r.target) {
        t = "≤ " + Fmt("%.0f ns", *r.target);
        if (r.ns) t += *r.ns <= *r.target ? " ✓" : " ✗";
      }
      o << "| " << r.figure << " | " << v << " | " << t << " |\n";
    }
    o << "\nThread CPU time, medians over the repetitions; differences of a nanosecond are "
         "within the noise of a shared machine, so the detached-sites and export figures "
         "interleave chunks of both variants and compare each one's fastest chunk. The sites' "
         "cost is measured on a stand-in "
         "call with the same two probe sites as Client::Append (one load and one branch when "
         "detached); attached, every hit is a uprobe trap into the kernel.\n";
  }
}

// Where a fresh segment page costs its writer time (bench/first_touch_bench.cc).
void WriteFreshPages(std::ostream& o) {
  const std::vector<std::pair<std::string, std::string>> probe = {
      {"write2", "write(2) of 4 KiB into an O_APPEND file"},
      {"populate", "MADV_POPULATE_WRITE, 4 KiB mapping entries"},
      {"store_first", "first store after populating"},
      {"store_second", "second store into the same page"},
      {"load_first", "first load after populating (instead of a store)"},
      {"store_after_pwrite", "first store after the kernel wrote the page (pwrite)"},
      {"touch", "atomic add of zero after populating (the pre-fault touch)"},
      {"store_after_touch", "store after the touch"},
      {"populate_huge", "MADV_POPULATE_WRITE, 2 MiB-aligned, MADV_HUGEPAGE"},
      {"store_after_populate_huge", "first store after that"},
      {"store_same_map_after_sync", "store through the same mapping after write-back"},
      {"populate_recycled", "MADV_POPULATE_WRITE of a second mapping of cached, written pages"},
      {"store_recycled_after_populate", "first store after that"},
      {"fadvise_dontneed", "posix_fadvise(DONTNEED) of written-back pages"},
      {"populate_after_dontneed", "MADV_POPULATE_WRITE of a fresh file right after that"},
      {"store_after_populate_after_dontneed", "first store after that"},
      {"store_after_zap_and_repopulate", "store after MADV_DONTNEED and populate again"},
      {"anon_first", "first store into fresh anonymous memory"}};
  bool any = false;
  for (const auto& [k, label] : probe) any = any || GetFigure("probe.page." + k);
  if (any) {
    o << "\n### Fresh pages: cost per 4 KiB page (16 MiB fallocated file)\n\n"
         "| step | per page |\n| --- | ---: |\n";
    for (const auto& [k, label] : probe) {
      const Figure* f = GetFigure("probe.page." + k);
      o << "| " << label << " | " << (f ? FmtNs(f->value) : "n/a") << " |\n";
    }
    o << "\nA first access that costs microseconds although the page is populated, that a "
         "load pays as a store does and a page the kernel has just written pays too, is the "
         "hypervisor building its own entry for the process's new page-table entry (shadow "
         "paging); one 2 MiB entry pays it once for 512 pages. A populate that costs "
         "microseconds for a fresh page but much less for a cached one is the zeroing of a "
         "new page-cache page touching guest memory the host no longer backs.\n";
  }
}

// Diagnostics: what the appending thread went through in each timed loop.
void WriteDiagnostics(std::ostream& o) {
  std::vector<std::pair<std::string, std::string>> diag = {
      {"append.single.handle.none", "single/handle/none"},
      {"append.single.handle.interval", "single/handle/interval"},
      {"append.single.name.none", "single/name/none"},
      {"append.single.name.interval", "single/name/interval"},
      {"append.single_untimed.handle.none", "single untimed/handle/none"},
      {"append.batch10.none", "batch 10/none"},
      {"append.batch100.none", "batch 100/none"},
      {"append.batch1000.none", "batch 1000/none"},
      {"append.batch100.interval", "batch 100/interval"},
      {"append.shards1", "1 shard"},
      {"append.shards4", "4 shards"},
      {"append.shards64", "64 shards"},
      {"mp.append.single_mode", "single-mode process/none"},
      {"mp.append.multi1", "multi-process, 1 writer/none"},
      {"mp.append.multi2", "multi-process, 2 writers (both)/none"},
      {"mp.batch100.multi1", "multi-process batch 100, 1 writer"},
      {"mp.batch100.multi2", "multi-process batch 100, 2 writers (both)"},
      {"mp.w2r.spin.reader", "spinning reader process (per sample)"},
      {"mp.w2r.park.reader", "parked reader process (per sample)"},
      {"mp.floor.futex.reader", "futex floor reader (per sample)"}};
  bool header = false;
  for (const auto& [key, label] : diag) {
    const Figure* f = GetFigure(key + ".faults_per_M");
    if (!f) continue;
    if (!header) {
      o << "\n| appending thread, timed loop | page faults /M entries | CPU in kernel | "
           "blocked (vol. cs) /M | preempted (invol. cs) /M | calls > 1 µs | calls > 10 µs | "
           "calls > 1 ms | TLB-shootdown IPIs /M | library syncs /s | rotations |\n";
      o << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
      header = true;
    }
    auto num = [&](const std::string& k, const char* fmt, double scale) -> std::string {
      const Figure* g = GetFigure(k);
      return g ? Fmt(fmt, g->value * scale) : "—";
    };
    o << "| " << label << " | " << num(key + ".faults_per_M", "%.0f", 1) << " | "
      << num(key + ".sys_frac", "%.0f%%", 100) << " | " << num(key + ".vcsw_per_M", "%.0f", 1)
      << " | " << num(key + ".ivcsw_per_M", "%.0f", 1) << " | "
      << num(key + ".over_1us", "%.3f%%", 100) << " | " << num(key + ".over_10us", "%.4f%%", 100)
      << " | " << num(key + ".over_1ms", "%.0f", 1) << " | " << num(key + ".tlb_per_M", "%.0f", 1)
      << " | " << num(key + ".syncs_per_s", "%.0f", 1) << " | "
      << num(key + ".rotations", "%.0f", 1) << " |\n";
  }
  if (header)
    o << "\n(A 100-byte entry fills a 4 KiB page every ~35 entries: 28,000 faults /M means the "
         "writer faulted every page itself.)\n";
}

// How to read the table, and what it was measured on.
void WriteFooter(std::ostream& o, const std::string& filter, const std::string& load_line,
                 int reps) {
  o << "\nRatio: how many times better Comet is than the baseline (latency: baseline/Comet; "
       "throughput: Comet/baseline); above 1 means Comet is faster.\n";
  o << "Latency percentiles come from a log-linear histogram (exact below 1 µs, ≤ 1.6% above) of "
       "every call of the timed run; each sample includes the timer: "
    << Clock::Describe() << " (not subtracted).\n";
  o << MachineLine() << "\n";
  o << load_line << "\n";
  o << "Caveat: "
    << (reps > 1 ? "figures are medians of " + std::to_string(reps) +
                       " repetitions (the Comet column gives their range in brackets), "
                       "from one invocation"
                 : std::string("one run"))
    << " on a shared 2-vCPU VM (noisy neighbours, no CPU pinning; the library's pre-fault and "
       "sync threads share the 2 cores with the benchmark); treat differences under ~10-20% as "
       "noise.\n";
  if (!filter.empty()) o << "Filtered run: --benchmark_filter=" << filter << "\n";
  for (const auto& [k, v] : Notes()) o << "Note (" << k << "): " << v << "\n";
}

// The results table, one section after another.
std::string BuildTable(const std::string& filter, const std::string& load_line, int reps) {
  std::ostringstream o;
  WriteHeadline(o, filter);
  WriteOriginalMethod(o, filter);
  WriteMultiProcess(o, filter);
  WriteProbes(o);
  WriteFreshPages(o);
  WriteDiagnostics(o);
  WriteFooter(o, filter, load_line, reps);
  return o.str();
}

std::string ResultsPath() {
  if (const char* p = std::getenv("COMET_BENCH_RESULTS"); p && *p) return p;
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  // build/bin/comet_bench -> build/bench/results.md; elsewhere, relative to the cwd.
  if (ec || exe.parent_path().filename() != "bin") return "build/bench/results.md";
  return (exe.parent_path().parent_path() / "bench" / "results.md").string();
}

}  // namespace
}  // namespace comet_bench

int main(int argc, char** argv) {
  using namespace comet_bench;
  std::vector<char*> args(argv, argv + argc);
  args.push_back(nullptr);
  int nargs = argc;

  // With a machine-readable format on stdout, the table goes to stderr.
  bool table_to_stderr = false;
  std::string filter;
  int reps = 1;
  for (int i = 1; i < nargs; i++) {
    std::string a = args[i];
    if (a.rfind("--benchmark_filter=", 0) == 0) filter = a.substr(19);
    if (a.rfind("--benchmark_repetitions=", 0) == 0) reps = std::max(1, std::atoi(a.c_str() + 24));
    if (a.rfind("--benchmark_format=", 0) == 0) table_to_stderr = a != "--benchmark_format=console";
  }

  RemoveStaleTempDirs();
  Clock::Init();
  const int passes = Reps();
  for (int k = 1; k <= passes; k++) {
    RepSuffix() = passes > 1 ? "/rep:" + std::to_string(k) : "";
    RegisterBaselineBenchmarks();
    RegisterAppendBenchmarks();
    RegisterReadBenchmarks();
    RegisterMultiProcessBenchmarks();
    RegisterProbeBenchmarks();
    RegisterFirstTouchBenchmarks();
    RegisterConsumerBenchmarks();
  }

  benchmark::Initialize(&nargs, args.data());
  if (benchmark::ReportUnrecognizedArguments(nargs, args.data())) return 1;
  CpuSample before = SampleCpu();
  benchmark::RunSpecifiedBenchmarks();
  CpuSample after = SampleCpu();
  for (auto& c : Cleanups()) c();
  Cleanups().clear();

  if (AnyFigures()) {
    std::string table = BuildTable(filter, LoadLine(before, after), reps * passes);
    (table_to_stderr ? std::cerr : std::cout) << "\n" << table << std::flush;
    std::string path = ResultsPath();
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    std::ofstream out(path);
    if (out) {
      out << "# Comet benchmark results\n\n" << table;
      std::cerr << "results written to " << path << "\n";
    } else {
      std::cerr << "could not write " << path << "\n";
    }
  }
  benchmark::Shutdown();
  return 0;
}
