// The cost of observing appends: USDT probe sites with nothing attached (two per append, against
// the same call without them), and appends with `comet probe` attached or the pinned export on.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "common.h"
#include "probes.h"

namespace comet_bench {
namespace {

constexpr double kMinTime = 0.5;

double ThreadCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

std::string CometTool() {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "comet";
  std::string exe(self, size_t(n));
  return exe.substr(0, exe.rfind('/')) + "/comet";
}

std::string PinDir(const char* what) {
  return std::string("/sys/fs/bpf/comet-bench-") + what + "-" + std::to_string(getpid());
}

// Runs `comet probe ARGS`: with `wait_attached`, returns once it printed that it attached
// (the caller stops it with Stop); else waits for it to exit. Empty error on success.
struct ProbeRun {
  pid_t pid = -1;
  int out = -1;

  std::string Start(const std::vector<std::string>& args, bool wait_attached) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return "pipe failed";
    pid = fork();
    if (pid == 0) {
      dup2(p[1], 1);
      int null = open("/dev/null", O_WRONLY);
      if (null >= 0) dup2(null, 2);
      std::vector<std::string> argv{CometTool(), "probe"};
      argv.insert(argv.end(), args.begin(), args.end());
      std::vector<char*> a;
      for (auto& x : argv) a.push_back(x.data());
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
    close(p[1]);
    out = p[0];
    std::string got;
    char buf[4096];
    while (got.find("comet probe: ") == std::string::npos) {
      pollfd pf{out, POLLIN, 0};
      if (poll(&pf, 1, 60000) <= 0) break;
      ssize_t n = read(out, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, size_t(n));
    }
    if (!wait_attached) return Stop() == 0 ? "" : "comet probe failed (root and BPF needed)";
    if (got.find("comet probe: attached") == std::string::npos) {
      Stop();
      return "comet probe did not attach (root and BPF needed)";
    }
    return "";
  }
  int Stop() {
    if (pid <= 0) return -1;
    kill(pid, SIGINT);
    char buf[4096];
    while (read(out, buf, sizeof buf) > 0) {
    }
    int status = 0;
    waitpid(pid, &status, 0);
    close(out);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
};

// The pin directory with an export map, created once (`comet probe --export-only`) and removed
// after all benchmarks.
const std::string* ExportPin(std::string* error) {
  static std::string dir, err;
  static bool done = false;
  if (!done) {
    done = true;
    dir = PinDir("export");
    ProbeRun run;
    err = run.Start({"--export-only", "--pin", dir}, false);
    if (err.empty()) {
      Cleanups().push_back([] {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      });
    }
  }
  *error = err;
  return err.empty() ? &dir : nullptr;
}

enum class Observed { kDetached, kExport, kAttached, kSampled };
const char* ObservedName(Observed o) {
  switch (o) {
    case Observed::kDetached: return "detached";
    case Observed::kExport: return "export";
    case Observed::kAttached: return "attached";
    case Observed::kSampled: return "sampled16";
  }
  return "?";
}

// Single 100-byte appends (sync none, untimed loop) with probes detached, with the export map
// on, or with `comet probe --pid <self>` attached (every call, or sampled: metrics.probe_sample
// 16). Mean wall and thread-CPU time per append.
void BM_AppendObserved(benchmark::State& state, Observed o, const std::string& bench) {
  TempDir dir;
  comet::Config cfg;
  cfg.sync.mode = comet::SyncMode::kNone;
  cfg.metrics.bpf_pin_dir = "";
  std::string error;
  if (o == Observed::kExport) {
    const std::string* pin = ExportPin(&error);
    if (!pin) return state.SkipWithError(error.c_str());
    cfg.metrics.bpf_pin_dir = *pin;
  }
  ProbeRun probe;
  if (o == Observed::kSampled) cfg.metrics.probe_sample = 16;
  if (o == Observed::kAttached || o == Observed::kSampled) {
    error = probe.Start({"--pid", std::to_string(getpid()), "--pin", PinDir("attached"),
                         "--interval", "0"},
                        true);
    if (!error.empty()) return state.SkipWithError(error.c_str());
  }
  auto client = comet::Client::Open(dir.Sub("data"), cfg);
  if (!client.ok()) {
    probe.Stop();
    return state.SkipWithError(client.status().ToString().c_str());
  }
  comet::Stream* s = GetStreamOrFail(state, client->get(), "bench:shard:0000");
  Payloads p;
  size_t i = 0;
  for (; s && i < 10000; i++) {
    std::string_view e = p[i];
    (void)(*client)->Append(s, std::span<const std::string_view>(&e, 1));
  }
  WallTimer wt;
  wt.Start();
  const double cpu0 = ThreadCpuSeconds();
  for (auto _ : state) {
    if (!s) break;
    std::string_view e = p[i++];
    comet::Status st = (*client)->Append(s, std::span<const std::string_view>(&e, 1));
    if (!st.ok()) [[unlikely]] {
      FailStatus(state, "Append", st);
      break;
    }
  }
  const double secs = wt.Seconds(), cpu = ThreadCpuSeconds() - cpu0;
  (void)(*client)->Close();
  probe.Stop();
  if (state.error_occurred() || state.iterations() == 0) return;
  const double n = double(state.iterations());
  const std::string key = std::string("probe.append.") + ObservedName(o);
  SetFigure(key + ".mean_ns", secs * 1e9 / n, bench, state.iterations());
  SetFigure(key + ".cpu_ns", cpu * 1e9 / n, bench, state.iterations());
  state.SetItemsProcessed(state.iterations());
}

// Two bodies: an empty call (the sites' cost with nothing to hide behind) and an append's floor
// (copy 100 bytes and CRC them, what every append does). The probed variants add what
// Client::Append adds: two probe sites whose arguments are evaluated only when enabled.
char g_src[100], g_dst[100];
__attribute__((noinline)) uint64_t Empty(uint64_t x) {
  benchmark::DoNotOptimize(x);
  return x + 1;
}
__attribute__((noinline)) uint64_t Floor(uint64_t x) {
  std::memcpy(g_dst, g_src, sizeof g_dst);
  benchmark::ClobberMemory();
  return x + Crc32c(0, g_dst, sizeof g_dst);
}
template <uint64_t (*Body)(uint64_t)>
__attribute__((noinline)) uint64_t Plain(uint64_t x, uint32_t shard) {
  return Body(x + shard);
}
template <uint64_t (*Body)(uint64_t)>
__attribute__((noinline)) uint64_t Probed(uint64_t x, uint32_t shard) {
  if (!COMET_PROBE_PAIR_ENABLED(append)) return Body(x + shard);
  COMET_PROBE(append_start, 0u, shard, x, x * 100);
  uint64_t r = Body(x + shard);
  COMET_PROBE(append_done, 0u, shard, x, x * 100, 0);
  return r;
}

// Interleaves chunks of calls without and with the probe sites and keeps each variant's fastest
// chunk (thread CPU): preemption and other processes only ever make a chunk slower, so the
// minimums compare the code, not the machine's load at two different moments.
template <uint64_t (*Body)(uint64_t)>
void BM_ProbeSites(benchmark::State& state, const std::string& key, const std::string& bench) {
  constexpr int kChunk = 200000;
  uint64_t x = 0;
  double best_plain = 1e9, best_probed = 1e9;
  for (auto _ : state) {
    double t0 = ThreadCpuSeconds();
    for (int i = 0; i < kChunk; i++) x = Plain<Body>(x, 3);
    double t1 = ThreadCpuSeconds();
    for (int i = 0; i < kChunk; i++) x = Probed<Body>(x, 3);
    double t2 = ThreadCpuSeconds();
    best_plain = std::min(best_plain, (t1 - t0) * 1e9 / kChunk);
    best_probed = std::min(best_probed, (t2 - t1) * 1e9 / kChunk);
  }
  benchmark::DoNotOptimize(x);
  SetFigure(key + ".none.cpu_ns", best_plain, bench, state.iterations());
  SetFigure(key + ".detached.cpu_ns", best_probed, bench, state.iterations());
}

// Appends with the export map off and on, interleaved in chunks on two clients (two
// directories), fastest chunk of each (thread CPU): the export's added cost per append.
void BM_AppendExportAB(benchmark::State& state, const std::string& bench) {
  std::string error;
  const std::string* pin = ExportPin(&error);
  if (!pin) return state.SkipWithError(error.c_str());
  TempDir dir;
  comet::Config off;
  off.sync.mode = comet::SyncMode::kNone;
  off.metrics.bpf_pin_dir = "";
  comet::Config on = off;
  on.metrics.bpf_pin_dir = *pin;
  auto a = comet::Client::Open(dir.Sub("off"), off);
  auto b = comet::Client::Open(dir.Sub("on"), on);
  if (!a.ok() || !b.ok()) return state.SkipWithError("Client::Open failed");
  comet::Stream* sa = GetStreamOrFail(state, a->get(), "bench:shard:0000");
  comet::Stream* sb = GetStreamOrFail(state, b->get(), "bench:shard:0000");
  if (!sa || !sb) return;
  Payloads p;
  constexpr int kChunk = 4096;  // a multiple of the library's 1-in-16 timing
  size_t i = 0;
  auto run = [&](comet::Client* c, comet::Stream* s) {
    const double t0 = ThreadCpuSeconds();
    for (int k = 0; k < kChunk; k++, i++) {
      std::string_view e = p[i];
      (void)c->Append(s, std::span<const std::string_view>(&e, 1));
    }
    return (ThreadCpuSeconds() - t0) * 1e9 / kChunk;
  };
  run(a->get(), sa);
  run(b->get(), sb);
  double best_off = 1e9, best_on = 1e9;
  for (auto _ : state) {
    best_off = std::min(best_off, run(a->get(), sa));
    best_on = std::min(best_on, run(b->get(), sb));
  }
  (void)(*a)->Close();
  (void)(*b)->Close();
  SetFigure("probe.export_ab.off.cpu_ns", best_off, bench, state.iterations());
  SetFigure("probe.export_ab.on.cpu_ns", best_on, bench, state.iterations());
}

}  // namespace

void RegisterProbeBenchmarks() {
  RegisterNamed("BM_ProbeSites/empty", [](benchmark::State& st, const std::string& n) {
    BM_ProbeSites<Empty>(st, "probe.sites.empty", n);
  })->Iterations(40)->Unit(benchmark::kNanosecond);
  RegisterNamed("BM_ProbeSites/floor", [](benchmark::State& st, const std::string& n) {
    BM_ProbeSites<Floor>(st, "probe.sites.floor", n);
  })->Iterations(40)->Unit(benchmark::kNanosecond);
  RegisterNamed("BM_AppendExportAB", BM_AppendExportAB)->Iterations(40)->Unit(benchmark::kNanosecond);
  for (Observed o : {Observed::kDetached, Observed::kExport, Observed::kAttached,
                     Observed::kSampled}) {
    RegisterNamed(std::string("BM_AppendObserved/") + ObservedName(o),
                  [o](benchmark::State& st, const std::string& n) { BM_AppendObserved(st, o, n); })
        ->MinTime(o == Observed::kAttached ? 0.2 : kMinTime)
        ->UseRealTime()
        ->Unit(benchmark::kNanosecond);
  }
}

}  // namespace comet_bench
