// The demo's prefork phase: what a prefork server does with Comet. The same directory is reopened
// in multi-process mode; the master forks workers that keep using the client they inherited,
// each appending access-log lines routed to the shards it owns, while a reader process blocked
// on the log measures how soon each new entry reaches it. Then the figures every process left in
// the control region are read back the way `comet stats` reads them.
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "cli.h"
#include "comet/stats.h"
#include "comet/stream.h"
#include "demo.h"
#include "histogram.h"

namespace comet::cli {
namespace {

constexpr std::string_view kAccessPrefix = "access:v1";
constexpr uint32_t kAccessShards = 8;
constexpr const char* kPingStream = "ping:shard:0000";

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// What a child reports through its pipe.
struct ChildReport {
  uint64_t appended = 0;
  uint64_t not_owner = 0;
  uint64_t failed = 0;
  uint64_t p50_ns = 0, p99_ns = 0;
};

bool WriteAll(int fd, const void* p, size_t n) { return write(fd, p, n) == static_cast<ssize_t>(n); }
bool ReadAll(int fd, void* p, size_t n) { return read(fd, p, n) == static_cast<ssize_t>(n); }

// A worker: the client it inherited from the master becomes its own on first use.
[[noreturn]] void Worker(Client* client, int worker, uint64_t lines, int out) {
  ChildReport r;
  Histogram latency;
  for (uint64_t i = 0; i < lines; i++) {
    std::string key = "req-" + std::to_string(worker) + "-" + std::to_string(i);
    Result<std::string> stream = client->PickStream(kAccessPrefix, key, kAccessShards);
    if (!stream.ok()) {
      r.failed++;
      continue;
    }
    std::string line = Format("10.0.%d.%llu - - \"GET /api/items/%llu HTTP/1.1\" 200 %llu \"%s\"",
                              worker, static_cast<unsigned long long>(i % 250),
                              static_cast<unsigned long long>(i * 7919 % 100000),
                              static_cast<unsigned long long>(512 + i % 4096), key.c_str());
    const uint64_t t0 = MonotonicNs();
    Status s = client->Append(*stream, line);
    latency.Record(MonotonicNs() - t0);
    if (s.ok()) r.appended++;
    else if (s.IsNotOwner()) r.not_owner++;  // a shard moving between processes right now
    else r.failed++;
  }
  r.p50_ns = static_cast<uint64_t>(latency.Percentile(50));
  r.p99_ns = static_cast<uint64_t>(latency.Percentile(99));
  (void)client->Close();
  _exit(WriteAll(out, &r, sizeof r) ? 0 : 1);
}

// The reader: a process of its own (a member, so that writers wake it), blocked on the ping
// stream; each ping carries the master's monotonic send time.
[[noreturn]] void Reader(const std::string& dir, const Config& cfg, uint64_t pings, int ready,
                         int out) {
  ChildReport r;
  Histogram wake;
  auto client = Client::Open(dir, cfg);
  Result<Stream*> stream = client.ok() ? (*client)->GetStream(kPingStream) : client.status();
  if (stream.ok()) {
    auto it = (*client)->Scan(*stream, 0);
    char go = 1;
    if (it.ok() && WriteAll(ready, &go, 1)) {
      for (uint64_t i = 0; i < pings; i++) {
        if (!it->Wait(5'000'000'000).ok()) break;
        const uint64_t now = MonotonicNs();
        Entry e;
        if (!it->Next(&e).ok() || e.data.size() != sizeof(uint64_t)) break;
        uint64_t sent;
        std::memcpy(&sent, e.data.data(), sizeof sent);
        wake.Record(now - sent);
        r.appended++;
      }
    }
  }
  r.p50_ns = static_cast<uint64_t>(wake.Percentile(50));
  r.p99_ns = static_cast<uint64_t>(wake.Percentile(99));
  _exit(WriteAll(out, &r, sizeof r) ? 0 : 1);
}

pid_t Spawn(const std::function<void(int)>& child, int* read_end) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    child(fds[1]);
  }
  close(fds[1]);
  *read_end = fds[0];
  return pid;
}

bool Collect(pid_t pid, int fd, ChildReport* r) {
  bool ok = ReadAll(fd, r, sizeof *r);
  close(fd);
  int status = 0;
  waitpid(pid, &status, 0);
  return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

Status PreforkPhase(const std::string& dir, const Config& base, int workers, uint64_t lines) {
  std::printf("\nprefork   reopened in multi-process mode; the master forks %d workers that keep "
              "its client\n", workers);
  Config cfg = base;
  cfg.concurrency.mode = ConcurrencyMode::kMulti;
  auto master = Client::Open(dir, cfg);
  if (!master.ok()) return master.status();
  // The ping stream exists before the reader looks for it; shard 0 stays with the master (the
  // lowest live slot).
  if (Result<Stream*> s = (*master)->GetStream(kPingStream); !s.ok()) return s.status();

  std::vector<std::pair<pid_t, int>> kids;
  for (int w = 0; w < workers; w++) {
    int fd;
    pid_t pid = Spawn([&](int out) { Worker(master->get(), w, lines, out); }, &fd);
    if (pid < 0) return Status::Io("fork failed");
    kids.emplace_back(pid, fd);
  }
  ChildReport total;
  for (int w = 0; w < workers; w++) {
    ChildReport r;
    if (!Collect(kids[w].first, kids[w].second, &r)) return Status::Io("a worker failed");
    std::printf("          worker %d  %s lines appended (%s moved away mid-append), p50 %s  p99 %s\n",
                w, Grouped(r.appended).c_str(), Grouped(r.not_owner).c_str(),
                HumanDuration(r.p50_ns).c_str(), HumanDuration(r.p99_ns).c_str());
    total.appended += r.appended;
  }
  uint64_t seen = 0;
  for (const std::string& name : AllShardStreams(kAccessPrefix, kAccessShards)) {
    Result<uint64_t> n = (*master)->Length(name);
    if (n.ok()) seen += *n;
  }
  std::printf("          master reads %s lines across %u shards of %s (%s appended)\n",
              Grouped(seen).c_str(), kAccessShards, std::string(kAccessPrefix).c_str(),
              Grouped(total.appended).c_str());

  // Cross-process wake-up: master appends pings, a blocked reader process receives them.
  const uint64_t pings = 200;
  int ready[2];
  if (pipe(ready) != 0) return Status::Io("pipe failed");
  int fd;
  pid_t reader = Spawn([&](int out) {
    close(ready[0]);
    Reader(dir, cfg, pings, ready[1], out);
  }, &fd);
  close(ready[1]);
  char go;
  bool started = ReadAll(ready[0], &go, 1);
  close(ready[0]);
  Result<Stream*> ping = (*master)->GetStream(kPingStream);
  for (uint64_t i = 0; started && ping.ok() && i < pings; i++) {
    usleep(2000);  // let the reader block again
    uint64_t now = MonotonicNs();
    std::string_view bytes(reinterpret_cast<const char*>(&now), sizeof now);
    if (!(*master)->Append(*ping, std::span<const std::string_view>(&bytes, 1)).ok()) break;
  }
  ChildReport r;
  bool ok = Collect(reader, fd, &r);
  std::printf("          a blocked reader process woke for %s of %llu entries: p50 %s  p99 %s "
              "after the append\n", Grouped(r.appended).c_str(),
              static_cast<unsigned long long>(pings), HumanDuration(r.p50_ns).c_str(),
              HumanDuration(r.p99_ns).c_str());
  if (Status s = (*master)->Close(); !s.ok()) return s;

  Result<DirectoryStats> stats = ReadStats(dir);
  if (!stats.ok()) return stats.status();
  const LatencyHistogram& a = stats->ops[format::kOpAppend];
  std::printf("stats     %zu process slots used; appends by all processes: %s, p50 < %s, "
              "p99 < %s (try: comet stats %s)\n",
              stats->processes.size(), Grouped(a.count).c_str(),
              HumanDuration(a.PercentileNs(50)).c_str(), HumanDuration(a.PercentileNs(99)).c_str(),
              dir.c_str());
  if (!ok || !started || seen != total.appended || r.appended != pings) {
    return Status::Corrupt("prefork phase: the processes did not see what was appended");
  }
  return Status::Ok();
}

}  // namespace comet::cli
