// Multi-process benchmarks: real OS processes (fork) sharing one data directory.
//
//   BM_MultiProc_Append/single_mode     one process, default single mode: one 100-byte entry per
//                                       Append (sync none), latency histogram per call; the
//                                       reference for the two below, from the same harness
//   BM_MultiProc_Append/multi/1proc     the same in concurrency.mode=multi, 1 writer process
//   BM_MultiProc_Append/multi/2proc     2 writer processes at once, each on a shard it owns
//                                       (PickStream over 8 shards); histograms merged
//   BM_MultiProc_Batch100/1proc|2proc   batches of 100 (sync none) for a fixed wall time, 1 or 2
//                                       writer processes started together; total entries/s
//   BM_MultiProc_WriteToRead/spin       a writer process appends an entry carrying its
//                                       CLOCK_MONOTONIC send time; a reader process (a multi-mode
//                                       member) busy-polls Iterator::Next and records receive
//                                       time - send time. Ping-pong: the writer sends the next
//                                       entry once the reader has acknowledged (shared page), so
//                                       no sample waits behind an earlier one
//   BM_MultiProc_WriteToRead/park       the same with the reader parked in Iterator::Wait (long
//                                       timeout); the writer sleeps 1 ms between appends.
//   BM_MultiProc_WriteToRead/consumer   the same parked hand-off to a consumer of a group waiting
//                                       in Consumer::Read, which acks every batch: the end-to-end
//                                       append -> handler latency (consumers.wait_spin default)
//   .../consumer/spin:0|2ms             the same with consumers.wait_spin=0 (straight to the
//                                       futex) and 2ms (longer than the 1 ms gap: never sleeps)
//   BM_MultiProc_Floor/spin             floor of /spin without Comet: a timestamp stored into a
//                                       shared page, seen by a process spinning on it
//   BM_MultiProc_Floor/futex            floor of /park: the same with the reader in FUTEX_WAIT on
//                                       the shared word and the writer calling FUTEX_WAKE
//
// Each benchmark function runs once (Iterations(1)) and forks its processes itself; the children
// report through pipes (a fixed message, then the raw latency histogram) and are killed and
// reaped by pid on any failure. Protocol: every child opens its client and reports; after 60 ms
// (three membership refreshes of the multi-mode maintainer, so every process sees all the
// others) the parent sets the children up one at a time: a writer picks its stream with
// PickStream and appends until an append is no longer NOT_OWNER, warms up (4000 entries, 20 ms
// pause, as the in-process benchmarks do) and reports its shard; then the parent sends every
// child the same start time (CLOCK_MONOTONIC, 5 ms ahead) and run time, collects the results,
// and only then lets the children close their clients (a process leaving would move shards
// while the others still measure).
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <span>
#include <thread>

#include "comet/consumer.h"
#include "common.h"

namespace comet_bench {
namespace {

constexpr int64_t kLatencyRunNs = 400'000'000;  // per single-append run
constexpr int64_t kBatchRunNs = 1'000'000'000;  // per batched-append run
constexpr int64_t kSpinRunNs = 400'000'000;     // spinning reader
constexpr int64_t kParkRunNs = 1'000'000'000;   // parked reader (~900 samples at 1 ms)
constexpr int64_t kFloorRunNs = 300'000'000;    // each floor
constexpr int64_t kParkGapNs = 1'000'000;       // writer's sleep between appends, parked reader
constexpr uint32_t kShards = 8;
constexpr const char* kPrefix = "mp";

// ---- pipes --------------------------------------------------------------------------------------

enum MsgKind : uint32_t { kOpened = 1, kReady, kResult, kError };
enum CmdKind : uint32_t { kSetup = 1, kGo, kExit };

// Child -> parent. A kResult with has_hist is followed by the raw LatencyHistogram.
struct Msg {
  uint32_t kind = 0;
  uint32_t has_hist = 0;
  int64_t shard = -1;          // kReady: the shard this child writes or reads
  double count = 0;            // kResult: entries appended / samples taken
  double secs = 0;             // kResult: seconds of the timed loop
  double faults = 0, vcsw = 0, ivcsw = 0, user_s = 0, sys_s = 0;  // timed thread, rusage
  double proc_cpu_s = 0;  // the whole process (background threads too) over the timed loop
  char text[512] = {};         // kError: what failed
};
// Parent -> child.
struct Cmd {
  uint32_t kind = 0;
  int32_t arg = -1;       // kSetup: for a reader, the shard its writer reported
  int64_t start_ns = 0;   // kGo: CLOCK_MONOTONIC start
  int64_t run_ns = 0;     // kGo: timed-loop length
};

bool WriteAll(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= size_t(w);
  }
  return true;
}

// Reads exactly n bytes within timeout_ms. 0 ok, 1 EOF, 2 timeout, 3 error.
int ReadAll(int fd, void* p, size_t n, int64_t timeout_ms) {
  char* c = static_cast<char*>(p);
  const int64_t deadline = Clock::MonotonicNs() + timeout_ms * 1'000'000;
  while (n > 0) {
    int64_t left = (deadline - int64_t(Clock::MonotonicNs())) / 1'000'000;
    if (left <= 0) return 2;
    pollfd pfd{fd, POLLIN, 0};
    int pr = ::poll(&pfd, 1, int(std::min<int64_t>(left, 1000)));
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) return 3;
    if (pr == 0) continue;
    ssize_t r = ::read(fd, c, n);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r < 0) return 3;
    if (r == 0) return 1;
    c += r;
    n -= size_t(r);
  }
  return 0;
}

// The child's end.
class ChildIo {
 public:
  ChildIo(int in, int out) : in_(in), out_(out) {}
  bool Send(const Msg& m) { return WriteAll(out_, &m, sizeof m); }
  bool SendHist(const LatencyHistogram& h) { return WriteAll(out_, &h, sizeof h); }
  int Fail(const std::string& text) {
    Msg m;
    m.kind = kError;
    std::snprintf(m.text, sizeof m.text, "%s", text.c_str());
    Send(m);
    return 1;
  }
  bool Opened() {
    Msg m;
    m.kind = kOpened;
    return Send(m);
  }
  bool Ready(int64_t shard) {
    Msg m;
    m.kind = kReady;
    m.shard = shard;
    return Send(m);
  }
  // Blocks (up to 2 minutes) for the next command; false unless it is `kind`.
  bool Wait(uint32_t kind, Cmd* c) {
    return ReadAll(in_, c, sizeof *c, 120'000) == 0 && c->kind == kind;
  }

 private:
  int in_, out_;
};

// The children of one benchmark run, and the parent's end of their pipes. Every child still
// running when this goes away is SIGKILLed and reaped, by pid.
class Children {
 public:
  ~Children() { KillAll(); }

  // Forks a child that runs body(io) and _exits with its return value. False on failure.
  bool Spawn(const std::function<int(ChildIo&)>& body) {
    int to[2], from[2];
    if (::pipe2(to, O_CLOEXEC) != 0) return false;
    if (::pipe2(from, O_CLOEXEC) != 0) {
      ::close(to[0]);
      ::close(to[1]);
      return false;
    }
    const pid_t parent = getpid();
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) {
      for (int fd : {to[0], to[1], from[0], from[1]}) ::close(fd);
      return false;
    }
    if (pid == 0) {
      // Never outlive the benchmark, never return into it.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(3);
      ::alarm(180);
      ::signal(SIGPIPE, SIG_DFL);
      for (const Child& c : c_) {
        ::close(c.to);
        ::close(c.from);
      }
      ::close(to[1]);
      ::close(from[0]);
      int rc = 4;
      try {
        ChildIo io(to[0], from[1]);
        rc = body(io);
      } catch (...) {
        rc = 5;
      }
      _exit(rc);
    }
    ::close(to[0]);
    ::close(from[1]);
    c_.push_back(Child{pid, to[1], from[0], ""});
    return true;
  }

  size_t size() const { return c_.size(); }

  bool Send(size_t i, const Cmd& cmd) { return WriteAll(c_[i].to, &cmd, sizeof cmd); }
  bool SendAll(const Cmd& cmd) {
    for (size_t i = 0; i < c_.size(); i++)
      if (!Send(i, cmd)) return false;
    return true;
  }

  // Receives n bytes from child i; "" or what went wrong (its exit status if it died, or a
  // timeout).
  std::string Recv(size_t i, void* p, size_t n, int64_t timeout_ms) {
    int r = ReadAll(c_[i].from, p, n, timeout_ms);
    if (r == 0) return "";
    if (r == 2) return Who(i) + ": no report within " + std::to_string(timeout_ms) + " ms";
    if (r == 3) return Who(i) + ": read from its pipe failed: " + std::strerror(errno);
    return Who(i) + " exited without reporting: " + Reap(i, 2000);
  }
  // Receives a message of kind `want`; a child's kError becomes the returned error.
  std::string RecvMsg(size_t i, Msg* m, uint32_t want, int64_t timeout_ms) {
    std::string err = Recv(i, m, sizeof *m, timeout_ms);
    if (!err.empty()) return err;
    m->text[sizeof m->text - 1] = '\0';
    if (m->kind == kError) return Who(i) + ": " + m->text;
    if (m->kind != want) return Who(i) + ": unexpected message " + std::to_string(m->kind);
    return "";
  }

  // Waits up to timeout_ms for every child to exit (SIGKILL after that); "" when all exited
  // with status 0.
  std::string WaitAll(int64_t timeout_ms) {
    std::string err;
    for (size_t i = 0; i < c_.size(); i++) {
      std::string e = Reap(i, timeout_ms);
      if (e != "exit 0" && err.empty()) err = Who(i) + ": " + e;
    }
    return err;
  }

  void KillAll() {
    for (Child& c : c_) {
      if (c.pid > 0) {
        ::kill(c.pid, SIGKILL);
        int status;
        while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
        }
        c.pid = -c.pid;
      }
      if (c.to >= 0) ::close(c.to);
      if (c.from >= 0) ::close(c.from);
      c.to = c.from = -1;
    }
    c_.clear();
  }

 private:
  struct Child {
    pid_t pid;  // negative once reaped
    int to, from;
    std::string status;  // how it ended, once reaped
  };
  std::string Who(size_t i) const {
    return "child " + std::to_string(i) + " (pid " + std::to_string(std::abs(c_[i].pid)) + ")";
  }
  // Waits for child i (SIGKILL after timeout_ms); describes how it ended.
  std::string Reap(size_t i, int64_t timeout_ms) {
    Child& c = c_[i];
    if (c.pid <= 0) return c.status;
    const pid_t pid = c.pid;
    int status = 0;
    const int64_t deadline = int64_t(Clock::MonotonicNs()) + timeout_ms * 1'000'000;
    pid_t r;
    while ((r = ::waitpid(pid, &status, WNOHANG)) == 0 && int64_t(Clock::MonotonicNs()) < deadline)
      ::usleep(1000);
    if (r == 0) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      c.status = "still running after " + std::to_string(timeout_ms) + " ms; killed";
    } else if (r < 0) {
      c.status = std::string("waitpid: ") + std::strerror(errno);
    } else if (WIFEXITED(status)) {
      c.status = "exit " + std::to_string(WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
      c.status = std::string("killed by signal ") + strsignal(WTERMSIG(status));
    }
    c.pid = -pid;
    return c.status;
  }
  std::vector<Child> c_;
};

// What one child reported.
struct ChildReport {
  Msg ready, result;
  std::unique_ptr<LatencyHistogram> hist;
};

// Runs the protocol described at the top of the file over one child per body; fills
// reports[i]. "" or what went wrong (the children are killed then).
std::string RunChildren(const std::vector<std::function<int(ChildIo&)>>& bodies, int64_t run_ns,
                        std::vector<ChildReport>* reports) {
  struct sigaction ign {}, old {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, &old);  // a dead child's pipe must fail our write, not kill us
  Children kids;
  std::string err = [&]() -> std::string {
    for (const auto& b : bodies)
      if (!kids.Spawn(b)) return std::string("fork: ") + std::strerror(errno);
    reports->clear();
    reports->resize(bodies.size());
    Msg m;
    for (size_t i = 0; i < kids.size(); i++) {
      if (auto e = kids.RecvMsg(i, &m, kOpened, 20'000); !e.empty()) return e;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    int64_t prev_shard = -1;
    for (size_t i = 0; i < kids.size(); i++) {
      Cmd c;
      c.kind = kSetup;
      c.arg = int32_t(prev_shard);
      if (!kids.Send(i, c)) return "child " + std::to_string(i) + ": cannot send setup";
      if (auto e = kids.RecvMsg(i, &(*reports)[i].ready, kReady, 20'000); !e.empty()) return e;
      prev_shard = (*reports)[i].ready.shard;
    }
    Cmd go;
    go.kind = kGo;
    go.start_ns = int64_t(Clock::MonotonicNs()) + 5'000'000;
    go.run_ns = run_ns;
    if (!kids.SendAll(go)) return "cannot send go";
    const int64_t wait_ms = run_ns / 1'000'000 + 20'000;
    for (size_t i = 0; i < kids.size(); i++) {
      ChildReport& r = (*reports)[i];
      if (auto e = kids.RecvMsg(i, &r.result, kResult, wait_ms); !e.empty()) return e;
      if (r.result.has_hist) {
        r.hist = std::make_unique<LatencyHistogram>();
        if (auto e = kids.Recv(i, r.hist.get(), sizeof(LatencyHistogram), 20'000); !e.empty())
          return e;
      }
    }
    Cmd ex;
    ex.kind = kExit;
    if (!kids.SendAll(ex)) return "cannot send exit";
    return kids.WaitAll(20'000);
  }();
  if (!err.empty()) {
    // One child's failure often starts in another: give the others a moment to say theirs.
    for (size_t i = 0; i < kids.size(); i++) {
      Msg m;
      if (kids.Recv(i, &m, sizeof m, 1500).empty() && m.kind == kError) {
        m.text[sizeof m.text - 1] = '\0';
        err += "; child " + std::to_string(i) + ": " + m.text;
      }
    }
  }
  kids.KillAll();
  sigaction(SIGPIPE, &old, nullptr);
  return err;
}

// ---- child side -----------------------------------------------------------------------------

uint64_t NsToTicks(int64_t ns) {
  return Clock::uses_tsc() ? uint64_t(double(ns) * Clock::tsc_ghz()) : uint64_t(ns);
}

// Sleeps, then spins, until CLOCK_MONOTONIC reaches t.
void SleepUntil(int64_t t) {
  int64_t early = t - 300'000;
  if (int64_t(Clock::MonotonicNs()) < early) {
    timespec ts{time_t(early / 1'000'000'000), long(early % 1'000'000'000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
  }
  while (int64_t(Clock::MonotonicNs()) < t) _mm_pause();
}

// consumer_spin_ns: consumers.wait_spin (negative: the default).
std::unique_ptr<comet::Client> OpenComet(const std::string& dir, bool multi, std::string* err,
                                         int64_t consumer_spin_ns = -1) {
  comet::Config cfg;
  cfg.sync.mode = comet::SyncMode::kNone;
  if (multi) cfg.concurrency.mode = comet::ConcurrencyMode::kMulti;
  if (consumer_spin_ns >= 0) cfg.consumers.wait_spin_ns = uint64_t(consumer_spin_ns);
  auto r = comet::Client::Open(dir, cfg);
  if (!r.ok()) {
    *err = "Client::Open(" + dir + (multi ? ", multi" : ", single") + "): " + r.status().ToString();
    return nullptr;
  }
  return std::move(r).value();
}

// The stream this process writes: in multi mode PickStream over kShards shards, retried (every
// 5 ms, up to 3 s) until an append to it is not NOT_OWNER; in single mode shard 0.
comet::Stream* TakeOwnStream(comet::Client* c, bool multi, const std::string& key,
                             std::string* err) {
  std::string probe(kEntryBytes, 'p');
  std::string_view pv = probe;
  std::span<const std::string_view> one(&pv, 1);
  if (!multi) {
    auto s = c->GetStream(comet::ShardStreamName(kPrefix, 0));
    if (!s.ok()) {
      *err = "GetStream: " + s.status().ToString();
      return nullptr;
    }
    return s.value();
  }
  const int64_t deadline = int64_t(Clock::MonotonicNs()) + 3'000'000'000;
  comet::Status last;
  for (;;) {
    auto name = c->PickStream(kPrefix, key, kShards);
    if (name.ok()) {
      auto s = c->GetStream(name.value());
      if (!s.ok()) {
        *err = "GetStream(" + name.value() + "): " + s.status().ToString();
        return nullptr;
      }
      last = c->Append(s.value(), one);
      if (last.ok()) return s.value();
    } else {
      last = name.status();
    }
    if (!last.IsNotOwner()) {
      *err = "probe append: " + last.ToString();
      return nullptr;
    }
    if (int64_t(Clock::MonotonicNs()) > deadline) {
      *err = "still not the owner of its shard after 3 s: " + last.ToString();
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ThreadUsage::Secs(ru.ru_utime) + ThreadUsage::Secs(ru.ru_stime);
}

void FillUsage(const ThreadUsage& tu, Msg* m) {
  m->faults = double(tu.faults());
  m->vcsw = double(tu.voluntary());
  m->ivcsw = double(tu.involuntary());
  m->user_s = tu.user_s();
  m->sys_s = tu.sys_s();
}

// A writer process: batch 0 = one timed entry per Append (latency histogram), else batches of
// `batch` for the run time (count only).
int WriterChild(ChildIo& io, const std::string& dir, bool multi, const std::string& key,
                size_t batch) {
  std::string err;
  std::unique_ptr<comet::Client> c = OpenComet(dir, multi, &err);
  if (!c) return io.Fail(err);
  if (!io.Opened()) return 2;
  Cmd cmd;
  if (!io.Wait(kSetup, &cmd)) return 2;
  comet::Stream* s = TakeOwnStream(c.get(), multi, key, &err);
  if (!s) return io.Fail(err);

  Payloads p;
  const size_t n = std::max<size_t>(batch, 1);
  std::vector<std::string_view> views(n);
  for (size_t k = 0; k < n; k++) views[k] = p[k];
  std::span<const std::string_view> span(views);
  for (size_t k = 0; k < 4000 / n; k++) {
    comet::Status st = c->Append(s, batch ? span : span.first(1));
    if (!st.ok()) return io.Fail("warm-up Append: " + st.ToString());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!io.Ready(s->shard())) return 2;
  if (!io.Wait(kGo, &cmd)) return 2;

  auto h = std::make_unique<LatencyHistogram>();
  uint64_t ops = 0;
  comet::Status st;
  ThreadUsage tu;
  tu.Start();
  SleepUntil(cmd.start_ns);
  const double cpu0 = ProcessCpuSeconds();
  const int64_t t_start = int64_t(Clock::MonotonicNs());
  const uint64_t end = Clock::Start() + NsToTicks(cmd.run_ns);
  if (batch == 0) {
    for (size_t i = 0;; i++) {
      std::string_view e = p[i];
      uint64_t t0 = Clock::Start();
      st = c->Append(s, std::span<const std::string_view>(&e, 1));
      uint64_t t1 = Clock::Stop();
      h->Record(Clock::ToNs(t1 - t0));
      if (!st.ok()) [[unlikely]]
        break;
      ops++;
      if (t1 >= end) break;
    }
  } else {
    for (;;) {
      st = c->Append(s, span);
      if (!st.ok()) [[unlikely]]
        break;
      ops += batch;
      if (Clock::Stop() >= end) break;
    }
  }
  const int64_t t_end = int64_t(Clock::MonotonicNs());
  const double cpu1 = ProcessCpuSeconds();
  tu.Stop();
  if (!st.ok()) return io.Fail("Append after " + std::to_string(ops) + " entries: " + st.ToString());
  Msg m;
  m.kind = kResult;
  m.has_hist = batch == 0;
  m.count = double(ops);
  m.secs = double(t_end - t_start) / 1e9;
  m.proc_cpu_s = cpu1 - cpu0;
  FillUsage(tu, &m);
  if (!io.Send(m)) return 2;
  if (batch == 0 && !io.SendHist(*h)) return 2;
  if (!io.Wait(kExit, &cmd)) return 2;
  st = c->Close();
  return st.ok() ? 0 : 6;
}

// ---- write-to-read ----------------------------------------------------------------------------

// A shared anonymous page (mapped before fork): the reader's acknowledgements, and the floors'
// mailbox.
struct alignas(64) SharedPage {
  alignas(64) std::atomic<uint64_t> ack{0};
  alignas(64) std::atomic<uint32_t> word{0};  // floors: sequence (futex word)
  std::atomic<int64_t> sent_ns{0};            // floors: send time of `word`
};

class SharedMap {
 public:
  SharedMap() {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) page_ = new (p) SharedPage();
  }
  ~SharedMap() {
    if (page_) munmap(page_, 4096);
  }
  SharedPage* get() const { return page_; }

 private:
  SharedPage* page_ = nullptr;
};

constexpr uint64_t kStopSeq = ~uint64_t{0};

// Payload of a timed entry: send time, sequence number, filler up to 100 bytes.
struct Stamp {
  int64_t sent_ns;
  uint64_t seq;
};

int W2RWriter(ChildIo& io, const std::string& dir, bool park, SharedPage* sh) {
  std::string err;
  std::unique_ptr<comet::Client> c = OpenComet(dir, true, &err);
  if (!c) return io.Fail(err);
  if (!io.Opened()) return 2;
  Cmd cmd;
  if (!io.Wait(kSetup, &cmd)) return 2;
  comet::Stream* s = TakeOwnStream(c.get(), true, "writer", &err);
  if (!s) return io.Fail(err);
  std::string buf(kEntryBytes, 'w');
  std::string_view e = buf;
  std::span<const std::string_view> one(&e, 1);
  for (int k = 0; k < 1000; k++) {
    comet::Status st = c->Append(s, one);
    if (!st.ok()) return io.Fail("warm-up Append: " + st.ToString());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!io.Ready(s->shard())) return 2;
  if (!io.Wait(kGo, &cmd)) return 2;

  uint64_t seq = 0;
  comet::Status st;
  std::string fail;
  ThreadUsage tu;
  tu.Start();
  SleepUntil(cmd.start_ns);
  const int64_t end = cmd.start_ns + cmd.run_ns;
  for (;;) {
    const int64_t now = int64_t(Clock::MonotonicNs());
    const bool stop = now >= end;
    Stamp stamp{now, stop ? kStopSeq : ++seq};
    std::memcpy(buf.data(), &stamp, sizeof stamp);
    st = c->Append(s, one);
    if (!st.ok() || stop) break;
    if (park) {
      timespec ts{0, long(kParkGapNs)};
      while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR) {
      }
    } else {
      // Ping-pong: the next entry once the reader has this one.
      const int64_t give_up = now + 1'000'000'000;
      uint32_t spins = 0;
      while (sh->ack.load(std::memory_order_acquire) < seq) {
        _mm_pause();
        if (++spins % 4096 == 0 && int64_t(Clock::MonotonicNs()) > give_up) {
          fail = "reader did not acknowledge entry " + std::to_string(seq) + " within 1 s";
          break;
        }
      }
      if (!fail.empty()) break;
    }
  }
  tu.Stop();
  if (!st.ok()) return io.Fail("Append of entry " + std::to_string(seq) + ": " + st.ToString());
  if (!fail.empty()) return io.Fail(fail);
  Msg m;
  m.kind = kResult;
  m.count = double(seq);
  m.secs = double(cmd.run_ns) / 1e9;
  FillUsage(tu, &m);
  if (!io.Send(m)) return 2;
  if (!io.Wait(kExit, &cmd)) return 2;
  st = c->Close();
  return st.ok() ? 0 : 6;
}

int W2RReader(ChildIo& io, const std::string& dir, bool park, SharedPage* sh) {
  std::string err;
  std::unique_ptr<comet::Client> c = OpenComet(dir, true, &err);
  if (!c) return io.Fail(err);
  if (!io.Opened()) return 2;
  Cmd cmd;
  if (!io.Wait(kSetup, &cmd)) return 2;
  if (cmd.arg < 0) return io.Fail("no writer shard");
  const std::string name = comet::ShardStreamName(kPrefix, uint32_t(cmd.arg));
  auto s = c->GetStream(name);
  if (!s.ok()) return io.Fail("GetStream(" + name + "): " + s.status().ToString());
  auto len = c->Length(name);
  if (!len.ok()) return io.Fail("Length: " + len.status().ToString());
  auto itr = c->Scan(s.value(), len.value());
  if (!itr.ok()) return io.Fail("Scan: " + itr.status().ToString());
  comet::Iterator it = std::move(itr).value();
  if (!io.Ready(int64_t(cmd.arg))) return 2;
  if (!io.Wait(kGo, &cmd)) return 2;

  auto h = std::make_unique<LatencyHistogram>();
  comet::Entry e;
  uint64_t expect = 1, bad = 0, polls = 0, last_pos = it.position();
  int64_t last_move = int64_t(Clock::MonotonicNs());
  std::string fail;
  ThreadUsage tu;
  tu.Start();
  const int64_t give_up = cmd.start_ns + cmd.run_ns + 10'000'000'000;
  for (;;) {
    comet::Status st = it.Next(&e);
    if (st.ok()) {
      const int64_t recv = int64_t(Clock::MonotonicNs());
      Stamp stamp{};
      if (e.data.size() >= sizeof stamp) std::memcpy(&stamp, e.data.data(), sizeof stamp);
      if (stamp.seq == kStopSeq) break;
      if (stamp.seq != expect) bad++;
      expect = stamp.seq + 1;
      h->Record(uint64_t(std::max<int64_t>(0, recv - stamp.sent_ns)));
      sh->ack.store(stamp.seq, std::memory_order_release);
      continue;
    }
    if (!st.IsNotFound()) {
      fail = "Next at entry " + std::to_string(it.position()) + ": " + st.ToString();
      break;
    }
    if (park) {
      comet::Status w = it.Wait(2'000'000'000);
      if (!w.ok() && w.code() != comet::Code::kTimeout) {
        fail = "Wait: " + w.ToString();
        break;
      }
      if (int64_t(Clock::MonotonicNs()) > give_up) {
        fail = "no stop entry 10 s after the run";
        break;
      }
    } else if ((++polls & 0xFFFFF) == 0) {
      const int64_t now = int64_t(Clock::MonotonicNs());
      if (now > give_up) {
        fail = "no stop entry 10 s after the run";
        break;
      }
      // Stuck behind entries that exist?
      if (it.position() != last_pos) {
        last_pos = it.position();
        last_move = now;
      } else if (now - last_move > 300'000'000) {
        auto l = c->Length(name);
        if (l.ok() && l.value() > last_pos) {
          fail = "Next stuck at entry " + std::to_string(last_pos) + " for 300 ms with Length " +
                 std::to_string(l.value()) + ": " + st.ToString();
          break;
        }
      }
    }
  }
  tu.Stop();
  if (!fail.empty()) return io.Fail(fail);
  if (bad) return io.Fail(std::to_string(bad) + " entries arrived out of sequence");
  Msg m;
  m.kind = kResult;
  m.has_hist = 1;
  m.count = double(h->count());
  m.secs = double(cmd.run_ns) / 1e9;
  FillUsage(tu, &m);
  if (!io.Send(m) || !io.SendHist(*h)) return 2;
  if (!io.Wait(kExit, &cmd)) return 2;
  return c->Close().ok() ? 0 : 6;
}

// The reader of BM_MultiProc_WriteToRead/consumer: a consumer of a group (positioned at the
// stream's end) waiting in Read on the futex; the latency is taken when the handler would see
// the entry, and every batch is acked.
int W2RConsumer(ChildIo& io, const std::string& dir, SharedPage* sh, int64_t spin_ns) {
  std::string err;
  std::unique_ptr<comet::Client> c = OpenComet(dir, true, &err, spin_ns);
  if (!c) return io.Fail(err);
  if (!io.Opened()) return 2;
  Cmd cmd;
  if (!io.Wait(kSetup, &cmd)) return 2;
  if (cmd.arg < 0) return io.Fail("no writer shard");
  const std::string name = comet::ShardStreamName(kPrefix, uint32_t(cmd.arg));
  auto k = comet::Consumer::Open(c.get(), "w2r");
  if (!k.ok()) return io.Fail("Consumer::Open: " + k.status().ToString());
  comet::Status st = (*k)->Reset(name, comet::Consumer::From::kBeforeEnd, 0);
  if (!st.ok()) return io.Fail("Reset: " + st.ToString());
  if (!io.Ready(int64_t(cmd.arg))) return 2;
  if (!io.Wait(kGo, &cmd)) return 2;

  auto h = std::make_unique<LatencyHistogram>();
  std::vector<comet::Message> msgs;
  uint64_t expect = 1, bad = 0;
  bool stop = false;
  std::string fail;
  ThreadUsage tu;
  tu.Start();
  const int64_t give_up = cmd.start_ns + cmd.run_ns + 10'000'000'000;
  while (!stop) {
    st = (*k)->Read(name, 64, &msgs, 2'000'000'000);
    if (!st.ok()) {
      fail = "Read: " + st.ToString();
      break;
    }
    const int64_t recv = int64_t(Clock::MonotonicNs());
    for (const comet::Message& m : msgs) {
      Stamp stamp{};
      if (m.data.size() >= sizeof stamp) std::memcpy(&stamp, m.data.data(), sizeof stamp);
      if (stamp.seq == kStopSeq) {
        stop = true;
        break;
      }
      if (stamp.seq != expect) bad++;
      expect = stamp.seq + 1;
      h->Record(uint64_t(std::max<int64_t>(0, recv - stamp.sent_ns)));
      sh->ack.store(stamp.seq, std::memory_order_release);
    }
    st = (*k)->Ack(std::span<const comet::Message>(msgs));
    if (!st.ok()) {
      fail = "Ack: " + st.ToString();
      break;
    }
    if (int64_t(Clock::MonotonicNs()) > give_up) {
      fail = "no stop entry 10 s after the run";
      break;
    }
  }
  tu.Stop();
  if (!fail.empty()) return io.Fail(fail);
  if (bad) return io.Fail(std::to_string(bad) + " entries arrived out of sequence");
  Msg m;
  m.kind = kResult;
  m.has_hist = 1;
  m.count = double(h->count());
  m.secs = double(cmd.run_ns) / 1e9;
  FillUsage(tu, &m);
  if (!io.Send(m) || !io.SendHist(*h)) return 2;
  if (!io.Wait(kExit, &cmd)) return 2;
  (void)(*k)->Close();
  return c->Close().ok() ? 0 : 6;
}

// ---- floors: the same hand-off without Comet ------------------------------------------------

long Futex(std::atomic<uint32_t>* w, int op, uint32_t val, const timespec* ts) {
  // Not FUTEX_PRIVATE_FLAG: the word is in a page shared between processes.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), op, val, ts, nullptr, 0);
}

int FloorWriter(ChildIo& io, bool futex, SharedPage* sh) {
  if (!io.Opened()) return 2;
  Cmd cmd;
  if (!io.Wait(kSetup, &cmd)) return 2;
  if (!io.Ready(0)) return 2;
  if (!io.Wait(kGo, &cmd)) return 2;
  SleepUntil(cmd.start_ns);
  const int64_t end = cmd.start_ns + cmd.run_ns;
  uint32_t seq = 0;
  std::string fail;
  for (;;) {
    const int64_t now = int64_t(Clock::MonotonicNs());
    const bool stop = now >= end;
    sh->sent_ns.store(stop ? -1 : now, std::memory_order_relaxed);
    sh->word.store(++seq, std::memory_order_seq_cst);
    if (futex) Futex(&sh->word, FUTEX_WAKE, INT32_MAX, nullptr);
    if (stop) break;
    if (futex) {
      timespec ts{0, long(kParkGapNs)};
      while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR) {
      }
    } else {
      const int64_t give_up = now + 1'000'000'000;
      uint32_t spins = 0;
      while (sh->ack.load(std::memory_order_acquire) < seq) {
        _mm_pause();
        if (++spins % 4096 == 0 && int64_t(Clock::MonotonicNs()) > give_up) {
          fail = "reader did not acknowledge within 1 s";
          break;
        }
      }
      if (!fail.empty()) break;
    }
  }
  if (!fail.empty()) return io.Fail(fail);
  Msg m;
  m.kind = kResult;
  m.count = seq;
  if (!io.Send(m)) return 2;
  return io.Wait(kExit, &cmd) ? 0 : 2;
}

int FloorReader(ChildIo& io, bool futex, SharedPage* sh) {
  if (!io.Opened()) return 2;
  Cmd cmd;
  if (!io.Wait(kSetup, &cmd)) return 2;
  if (!io.Ready(0)) return 2;
  if (!io.Wait(kGo, &cmd)) return 2;
  auto h = std::make_unique<LatencyHistogram>();
  uint32_t seen = sh->word.load(std::memory_order_acquire);
  uint64_t polls = 0;
  ThreadUsage tu;
  tu.Start();
  const int64_t give_up = cmd.start_ns + cmd.run_ns + 10'000'000'000;
  for (;;) {
    uint32_t w = sh->word.load(std::memory_order_acquire);
    if (w != seen) {
      const int64_t recv = int64_t(Clock::MonotonicNs());
      int64_t sent = sh->sent_ns.load(std::memory_order_relaxed);
      if (sent < 0) break;
      h->Record(uint64_t(std::max<int64_t>(0, recv - sent)));
      seen = w;
      sh->ack.store(w, std::memory_order_release);
      continue;
    }
    if (futex) {
      timespec ts{1, 0};
      Futex(&sh->word, FUTEX_WAIT, w, &ts);
    }
    if ((futex || (++polls & 0xFFFFF) == 0) && int64_t(Clock::MonotonicNs()) > give_up)
      return io.Fail("no stop signal 10 s after the run");
  }
  tu.Stop();
  Msg m;
  m.kind = kResult;
  m.has_hist = 1;
  m.count = double(h->count());
  m.secs = double(cmd.run_ns) / 1e9;
  FillUsage(tu, &m);
  if (!io.Send(m) || !io.SendHist(*h)) return 2;
  return io.Wait(kExit, &cmd) ? 0 : 2;
}

// ---- parent side: the benchmarks ------------------------------------------------------------

// Figures "<key>.faults_per_M" etc. (per million entries or samples) from the children's
// timed threads, summed; the same rows the in-process benchmarks get in the diagnostics table.
void PublishUsage(benchmark::State& state, const std::vector<const Msg*>& ms, double entries,
                  const std::string& key, const std::string& bench) {
  double faults = 0, vcsw = 0, ivcsw = 0, user = 0, sys = 0;
  for (const Msg* m : ms) {
    faults += m->faults;
    vcsw += m->vcsw;
    ivcsw += m->ivcsw;
    user += m->user_s;
    sys += m->sys_s;
  }
  state.counters["faults"] = faults;
  state.counters["vcsw"] = vcsw;
  state.counters["ivcsw"] = ivcsw;
  if (user + sys > 0) state.counters["sys_frac"] = sys / (user + sys);
  if (entries <= 0) return;
  const int64_t it = state.iterations();
  SetFigure(key + ".faults_per_M", faults * 1e6 / entries, bench, it);
  SetFigure(key + ".vcsw_per_M", vcsw * 1e6 / entries, bench, it);
  SetFigure(key + ".ivcsw_per_M", ivcsw * 1e6 / entries, bench, it);
  if (user + sys > 0) SetFigure(key + ".sys_frac", sys / (user + sys), bench, it);
}

// Mode of BM_MultiProc_Append.
enum class Procs { kSingleMode, kMulti1, kMulti2 };

void BM_MultiProc_Append(benchmark::State& state, Procs procs, const std::string& key,
                         const std::string& bench) {
  for (auto _ : state) {
    TempDir dir;
    if (!dir.ok()) {
      state.SkipWithError("mkdtemp under /tmp failed");
      break;
    }
    const std::string data = dir.Sub("data");
    const bool multi = procs != Procs::kSingleMode;
    const int n = procs == Procs::kMulti2 ? 2 : 1;
    std::vector<std::function<int(ChildIo&)>> bodies;
    for (int i = 0; i < n; i++) {
      const std::string k = "writer-" + std::to_string(i);
      bodies.push_back([=](ChildIo& io) { return WriterChild(io, data, multi, k, 0); });
    }
    std::vector<ChildReport> r;
    const uint64_t tlb0 = ThreadUsage::InterruptCount("TLB:");
    std::string err = RunChildren(bodies, kLatencyRunNs, &r);
    const uint64_t tlb1 = ThreadUsage::InterruptCount("TLB:");
    if (err.empty() && n == 2 && r[0].ready.shard == r[1].ready.shard)
      err = "both writer processes write shard " + std::to_string(r[0].ready.shard);
    if (!err.empty()) {
      state.SkipWithError(err.c_str());
      break;
    }
    LatencyHistogram h;
    std::vector<const Msg*> ms;
    double entries = 0;
    for (auto& c : r) {
      if (c.hist) h.Merge(*c.hist);
      ms.push_back(&c.result);
      entries += c.result.count;
    }
    PublishLatency(state, h, key, bench);
    PublishUsage(state, ms, entries, key, bench);
    SetFigure(key + ".tlb_per_M", double(tlb1 - tlb0) * 1e6 / entries, bench, state.iterations());
    if (n == 2) {
      state.counters["shard_a"] = double(r[0].ready.shard);
      state.counters["shard_b"] = double(r[1].ready.shard);
    }
    state.counters["entries"] = entries;
  }
}

void BM_MultiProc_Batch(benchmark::State& state, int n, const std::string& key,
                        const std::string& bench) {
  for (auto _ : state) {
    TempDir dir;
    if (!dir.ok()) {
      state.SkipWithError("mkdtemp under /tmp failed");
      break;
    }
    const std::string data = dir.Sub("data");
    std::vector<std::function<int(ChildIo&)>> bodies;
    for (int i = 0; i < n; i++) {
      const std::string k = "writer-" + std::to_string(i);
      bodies.push_back([=](ChildIo& io) { return WriterChild(io, data, true, k, 100); });
    }
    std::vector<ChildReport> r;
    const uint64_t tlb0 = ThreadUsage::InterruptCount("TLB:");
    std::string err = RunChildren(bodies, kBatchRunNs, &r);
    const uint64_t tlb1 = ThreadUsage::InterruptCount("TLB:");
    if (err.empty() && n == 2 && r[0].ready.shard == r[1].ready.shard)
      err = "both writer processes write shard " + std::to_string(r[0].ready.shard);
    if (!err.empty()) {
      state.SkipWithError(err.c_str());
      break;
    }
    double total = 0, entries = 0;
    std::vector<const Msg*> ms;
    for (size_t i = 0; i < r.size(); i++) {
      const Msg& m = r[i].result;
      double rate = m.secs > 0 ? m.count / m.secs : 0;
      state.counters["proc" + std::to_string(i) + "_per_s"] = rate;
      total += rate;
      entries += m.count;
      ms.push_back(&m);
    }
    state.counters["entries_per_s"] = total;
    // CPUs the writer processes kept busy (all their threads) during the run: 2 processes on
    // 2 cores cannot scale by 2 when 1 already needs more than 1 CPU.
    double cpus = 0;
    for (const Msg* m : ms) cpus += m->secs > 0 ? m->proc_cpu_s / m->secs : 0;
    state.counters["cpus_used"] = cpus;
    SetFigure(key + ".cpus", cpus, bench, state.iterations());
    SetFigure(key + ".items_per_s", total, bench, state.iterations());
    PublishUsage(state, ms, entries, key, bench);
    SetFigure(key + ".tlb_per_M", double(tlb1 - tlb0) * 1e6 / entries, bench, state.iterations());
  }
}

void BM_MultiProc_WriteToRead(benchmark::State& state, bool park, bool floor,
                              const std::string& key, const std::string& bench,
                              bool consumer = false, int64_t consumer_spin_ns = -1) {
  for (auto _ : state) {
    TempDir dir;
    SharedMap shared;
    if (!dir.ok() || !shared.get()) {
      state.SkipWithError("mkdtemp under /tmp or mmap of the shared page failed");
      break;
    }
    const std::string data = dir.Sub("data");
    SharedPage* sh = shared.get();
    std::vector<std::function<int(ChildIo&)>> bodies;
    if (floor) {
      bodies.push_back([=](ChildIo& io) { return FloorWriter(io, park, sh); });
      bodies.push_back([=](ChildIo& io) { return FloorReader(io, park, sh); });
    } else {
      bodies.push_back([=](ChildIo& io) { return W2RWriter(io, data, park, sh); });
      if (consumer) {
        bodies.push_back([=](ChildIo& io) { return W2RConsumer(io, data, sh, consumer_spin_ns); });
      } else {
        bodies.push_back([=](ChildIo& io) { return W2RReader(io, data, park, sh); });
      }
    }
    const int64_t run = floor ? kFloorRunNs : park ? kParkRunNs : kSpinRunNs;
    std::vector<ChildReport> r;
    std::string err = RunChildren(bodies, run, &r);
    if (err.empty() && (!r[1].hist || r[1].hist->count() == 0)) err = "the reader got nothing";
    if (!err.empty()) {
      state.SkipWithError(err.c_str());
      break;
    }
    PublishLatency(state, *r[1].hist, key, bench);
    state.counters["sent"] = r[0].result.count;
    state.counters["received"] = r[1].result.count;
    PublishUsage(state, {&r[1].result}, r[1].result.count, key + ".reader", bench);
    if (!floor) {
      // The writer's side too: its timed thread's switches per sample.
      state.counters["wr_vcsw"] = r[0].result.vcsw;
      state.counters["wr_ivcsw"] = r[0].result.ivcsw;
    }
  }
}

template <class Fn>
benchmark::internal::Benchmark* Reg(const std::string& name, Fn fn) {
  return RegisterNamed(name, fn)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

void RegisterMultiProcessBenchmarks() {
  Reg("BM_MultiProc_Append/single_mode", [](benchmark::State& st, const std::string& n) {
    BM_MultiProc_Append(st, Procs::kSingleMode, "mp.append.single_mode", n);
  });
  Reg("BM_MultiProc_Append/multi/1proc", [](benchmark::State& st, const std::string& n) {
    BM_MultiProc_Append(st, Procs::kMulti1, "mp.append.multi1", n);
  });
  Reg("BM_MultiProc_Append/multi/2proc", [](benchmark::State& st, const std::string& n) {
    BM_MultiProc_Append(st, Procs::kMulti2, "mp.append.multi2", n);
  });
  for (int p : {1, 2}) {
    Reg("BM_MultiProc_Batch100/" + std::to_string(p) + "proc",
        [p](benchmark::State& st, const std::string& n) {
          BM_MultiProc_Batch(st, p, "mp.batch100.multi" + std::to_string(p), n);
        });
  }
  Reg("BM_MultiProc_WriteToRead/spin", [](benchmark::State& st, const std::string& n) {
    BM_MultiProc_WriteToRead(st, false, false, "mp.w2r.spin", n);
  });
  Reg("BM_MultiProc_WriteToRead/park", [](benchmark::State& st, const std::string& n) {
    BM_MultiProc_WriteToRead(st, true, false, "mp.w2r.park", n);
  });
  Reg("BM_MultiProc_WriteToRead/consumer", [](benchmark::State& st, const std::string& n) {
    BM_MultiProc_WriteToRead(st, true, false, "mp.w2r.consumer", n, true);
  });
  // consumers.wait_spin off, and longer than the writer's 1 ms gap (a consumer that never sleeps).
  for (int64_t spin : {int64_t{0}, int64_t{2'000'000}}) {
    const std::string tag = spin ? "2ms" : "0";
    Reg("BM_MultiProc_WriteToRead/consumer/spin:" + tag,
        [spin, tag](benchmark::State& st, const std::string& n) {
          BM_MultiProc_WriteToRead(st, true, false, "mp.w2r.consumer.spin" + tag, n, true, spin);
        });
  }
  Reg("BM_MultiProc_Floor/spin", [](benchmark::State& st, const std::string& n) {
    BM_MultiProc_WriteToRead(st, false, true, "mp.floor.spin", n);
  });
  Reg("BM_MultiProc_Floor/futex", [](benchmark::State& st, const std::string& n) {
    BM_MultiProc_WriteToRead(st, true, true, "mp.floor.futex", n);
  });
}

}  // namespace comet_bench
