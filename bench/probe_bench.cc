// The cost of observing appends: USDT probe sites with nothing attached (two per append, against
// the same call without them), and appends with `comet probe` attached or the pinned export on.
#include <time.h>

#include "common.h"
#include "probes.h"

namespace comet_bench {
namespace {

constexpr double kMinTime = 0.5;

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

template <uint64_t (*Body)(uint64_t)>
void BM_ProbeSites(benchmark::State& state, bool probed, const std::string& key,
                   const std::string& bench) {
  uint64_t x = 0;
  // Thread CPU time: the difference sought is a fraction of a nanosecond, and on a shared
  // machine wall time also counts the time other processes held the CPU.
  timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  if (probed) {
    for (auto _ : state) x = Probed<Body>(x, 3);
  } else {
    for (auto _ : state) x = Plain<Body>(x, 3);
  }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  double secs = double(t1.tv_sec - t0.tv_sec) + double(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  benchmark::DoNotOptimize(x);
  SetFigure(key, secs * 1e9 / double(state.iterations()), bench, state.iterations());
}

}  // namespace

void RegisterProbeBenchmarks() {
  for (bool floor : {false, true}) {
    for (bool probed : {false, true}) {
      std::string body = floor ? "floor" : "empty", v = probed ? "detached" : "none";
      auto fn = floor ? BM_ProbeSites<Floor> : BM_ProbeSites<Empty>;
      RegisterNamed("BM_ProbeSites/" + body + "/" + v,
                    [=](benchmark::State& st, const std::string& n) {
                      fn(st, probed, "probe.sites." + body + "." + v + ".cpu_ns", n);
                    })
          ->MinTime(kMinTime)
          ->UseRealTime()
          ->Unit(benchmark::kNanosecond);
    }
  }
}

}  // namespace comet_bench
