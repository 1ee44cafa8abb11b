// Multi-process mode with real processes: fork-inherited writers, independently opened
// processes, shard leases and their takeover after SIGKILL, slot reuse, PID reuse, waiting
// readers across processes, racing joins up to a full process table, damaged control files, and
// the prefork pattern.
//
// Children are plain fork()s of this binary. They never use gtest assertions: they report over a
// pipe (binary records or text lines) and through their exit code, and always leave with _exit.
// Every child is killed (if still running) and reaped by pid when its test ends, and dies with
// the test process (PR_SET_PDEATHSIG) if that one is killed.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/format.h"
#include "comet/stats.h"
#include "comet/status.h"
#include "comet/stream.h"
#include "membership.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Code;
using comet::Config;
using comet::Entry;
using comet::EntryId;
using comet::Status;
namespace format = comet::format;
using comet_test::FileSize;
using comet_test::PatchFile;
using comet_test::ReadAt;
using comet_test::MonotonicNs;
using comet_test::ReadFull;
using comet_test::WriteFull;

constexpr uint32_t kShards = 8;

// Multi-process mode with small segments (the tests make many shards in many directories) and no
// fdatasync (process crashes lose nothing acknowledged whatever the sync mode).
Config MultiConfig(uint32_t max_processes = 64) {
  Config c = Config::MultiProcess();
  c.storage.max_segment_bytes = 1 << 20;
  c.storage.prefault_bytes = 64 << 10;
  c.sync.mode = comet::SyncMode::kNone;
  c.concurrency.max_processes = max_processes;
  return c;
}


int64_t RealNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::string Shard(const std::string& prefix, uint32_t s) { return comet::ShardStreamName(prefix, s); }

// The shard number of "<prefix>:shard:NNNN", or UINT32_MAX.
uint32_t ShardOf(const std::string& stream) {
  auto parsed = comet::ParseStreamName(stream);
  return parsed.ok() ? parsed->shard : UINT32_MAX;
}

// ---- pipes -----------------------------------------------------------------------------------


template <class T>
bool Send(int fd, const T& v) {
  return WriteFull(fd, &v, sizeof v);
}
// Bytes a failed Recv consumed (a child's text message read where a record was expected).
thread_local std::string g_partial;

template <class T>
bool Recv(int fd, T* v, int timeout_ms) {
  char buf[sizeof(T)];
  auto* p = buf;
  size_t n = sizeof buf;
  const int64_t deadline = MonotonicNs() + int64_t{timeout_ms} * 1'000'000;
  while (n > 0) {
    const int64_t left_ms = (deadline - MonotonicNs()) / 1'000'000;
    struct pollfd pfd = {fd, POLLIN, 0};
    int pr = left_ms > 0 ? poll(&pfd, 1, static_cast<int>(left_ms)) : 0;
    if (pr < 0 && errno == EINTR) continue;
    ssize_t r = pr > 0 ? read(fd, p, n) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      g_partial.assign(buf, static_cast<size_t>(p - buf));
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  std::memcpy(static_cast<void*>(v), buf, sizeof buf);
  return true;
}

// In a child: waits for a one-byte command from the parent. 0 on EOF or timeout.
char WaitCommand(int fd, int timeout_ms) {
  char c = 0;
  return ReadFull(fd, &c, 1, timeout_ms) ? c : 0;
}

// ---- children --------------------------------------------------------------------------------

// The children of one test. Spawn forks a child running body(report_fd, command_fd) and _exits
// with its result; the destructor SIGKILLs and reaps every child not reaped yet.
class Children {
 public:
  struct Child {
    pid_t pid = -1;
    int report = -1;   // read end: what the child reports
    int command = -1;  // write end: commands to the child
    bool reaped = false;
    int status = 0;    // wait status once reaped
  };

  Children() = default;
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;
  ~Children() {
    for (auto& c : kids_) {
      if (!c->reaped) {
        kill(c->pid, SIGCONT);
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &c->status, 0);
        c->reaped = true;
      }
      CloseFds(c.get());
    }
  }

  Child* Spawn(const std::function<int(int, int)>& body) {
    int up[2], down[2];
    if (pipe(up) != 0) return nullptr;
    if (pipe(down) != 0) {
      close(up[0]);
      close(up[1]);
      return nullptr;
    }
    const pid_t parent = getpid();
    fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) return nullptr;
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(98);
      close(up[0]);
      close(down[1]);
      // Our siblings' pipes are not ours: holding them would hide their EOFs.
      for (auto& c : kids_) {
        if (c->report >= 0) close(c->report);
        if (c->command >= 0) close(c->command);
      }
      int rc = body(up[1], down[0]);
      _exit(rc);
    }
    close(up[1]);
    close(down[0]);
    auto c = std::make_unique<Child>();
    c->pid = pid;
    c->report = up[0];
    c->command = down[1];
    kids_.push_back(std::move(c));
    return kids_.back().get();
  }

  static bool Command(Child* c, char cmd) { return WriteFull(c->command, &cmd, 1); }

  // Waits up to timeout_ms for the child to exit; SIGKILLs it after that. Returns its exit code,
  // or -1 (killed by a signal) / -2 (timed out), with a description in *what.
  static int Reap(Child* c, int timeout_ms = 20000, std::string* what = nullptr) {
    if (!c->reaped) {
      const int64_t deadline = MonotonicNs() + int64_t{timeout_ms} * 1'000'000;
      bool timed_out = false;
      for (;;) {
        pid_t r = waitpid(c->pid, &c->status, WNOHANG);
        if (r == c->pid) break;
        if (MonotonicNs() >= deadline) {
          kill(c->pid, SIGKILL);
          waitpid(c->pid, &c->status, 0);
          timed_out = true;
          break;
        }
        usleep(2000);
      }
      c->reaped = true;
      if (timed_out) {
        if (what) *what = "timed out after " + std::to_string(timeout_ms) + " ms (killed)";
        return -2;
      }
    }
    if (what) *what = Describe(c->status);
    return WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1;
  }

  static int KillAndReap(Child* c) {
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &c->status, 0);
    c->reaped = true;
    return c->status;
  }

  static std::string Describe(int status) {
    if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
    return "wait status " + std::to_string(status);
  }

  // Everything left in the child's report pipe (call after reaping: the write end is closed).
  static std::string DrainText(Child* c) {
    std::string s;
    s.swap(g_partial);
    char buf[4096];
    for (;;) {
      struct pollfd pfd = {c->report, POLLIN, 0};
      if (poll(&pfd, 1, 1000) <= 0) break;
      ssize_t n = read(c->report, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      s.append(buf, static_cast<size_t>(n));
    }
    return s;
  }

 private:
  static void CloseFds(Child* c) {
    if (c->report >= 0) close(c->report);
    if (c->command >= 0) close(c->command);
    c->report = c->command = -1;
  }
  std::vector<std::unique_ptr<Child>> kids_;
};
using Child = Children::Child;

// In a child: a text line for the parent (used for failures; the parent prints it).
void Say(int fd, const std::string& line) {
  std::string l = "[pid " + std::to_string(getpid()) + "] " + line + "\n";
  (void)WriteFull(fd, l.data(), l.size());
}

// The process slot this process holds in `dir`, per ReadStats (a live slot with our pid); -1.
int32_t OwnSlot(const std::string& dir) {
  auto st = comet::ReadStats(dir);
  if (!st.ok()) return -1;
  for (const auto& p : st->processes) {
    if (p.live && p.pid == static_cast<uint32_t>(getpid())) return static_cast<int32_t>(p.slot);
  }
  return -1;
}

const comet::ProcessInfo* FindSlot(const comet::DirectoryStats& s, uint32_t slot) {
  for (const auto& p : s.processes) {
    if (p.slot == slot) return &p;
  }
  return nullptr;
}

const comet::StreamStats* FindStreamStats(const comet::DirectoryStats& s, const std::string& name) {
  for (const auto& st : s.streams) {
    if (st.name == name) return &st;
  }
  return nullptr;
}

template <size_t N>
void CopyMessage(char (&dst)[N], const std::string& msg) {
  std::snprintf(dst, N, "%s", msg.c_str());
}

// ---- payloads --------------------------------------------------------------------------------

// [u32 a][u32 b][pseudo-random bytes determined by (tag, a, b), 0..96 of them]
std::string TaggedPayload(uint32_t tag, uint32_t a, uint32_t b) {
  std::string s(8, '\0');
  std::memcpy(&s[0], &a, 4);
  std::memcpy(&s[4], &b, 4);
  const uint64_t seed = (uint64_t{tag} << 48) ^ (uint64_t{a} << 24) ^ b;
  s += comet_test::RandomBytes(seed, comet_test::SplitMix64(seed) % 97);
  return s;
}

bool DecodeTagged(std::string_view data, uint32_t* a, uint32_t* b) {
  if (data.size() < 8) return false;
  std::memcpy(a, data.data(), 4);
  std::memcpy(b, data.data() + 4, 4);
  return true;
}

// ---- fixture ---------------------------------------------------------------------------------

class MultiProcessTest : public comet_test::TempDirTest {
 protected:
  std::unique_ptr<Client> Open(const std::string& dir, const Config& cfg) {
    auto r = Client::Open(dir, cfg);
    EXPECT_TRUE(r.ok()) << "Open(" << dir << "): " << r.status().ToString();
    if (!r.ok()) return nullptr;
    return std::move(r).value();
  }

  // The raw ShardSlot::owner word of (prefix_id, shard) in DIR/comet.ctl, read with pread
  // (the file is MAP_SHARED by its users, so the page cache is the truth). 0 if not found.
  static uint64_t RawOwnerWord(const std::string& dir, uint32_t prefix_id, uint32_t shard) {
    const std::string ctl = dir + "/comet.ctl";
    format::ControlHeader h;
    if (!ReadAt(ctl, 0, &h, sizeof h)) return 0;
    uint32_t count = 0;
    if (!ReadAt(ctl, offsetof(format::ControlHeader, shard_count), &count, 4)) return 0;
    for (uint32_t i = 0; i < count && i < h.max_shards; i++) {
      const uint64_t off = h.shard_table_offset + uint64_t{i} * sizeof(format::ShardSlot);
      uint32_t pid = 0, sh = 0;
      uint64_t owner = 0;
      if (!ReadAt(ctl, off + 4, &pid, 4) || !ReadAt(ctl, off + 8, &sh, 4) ||
          !ReadAt(ctl, off + 16, &owner, 8))
        return 0;
      if (pid == prefix_id && sh == shard) return owner;
    }
    return 0;
  }

  // Polls ReadStats until pred(stats) holds or timeout_ms passes; returns whether it held.
  static bool PollStats(const std::string& dir, int timeout_ms,
                        const std::function<bool(const comet::DirectoryStats&)>& pred,
                        comet::DirectoryStats* last = nullptr) {
    const int64_t deadline = MonotonicNs() + int64_t{timeout_ms} * 1'000'000;
    for (;;) {
      auto st = comet::ReadStats(dir);
      if (st.ok()) {
        if (last) *last = *st;
        if (pred(*st)) return true;
      }
      if (MonotonicNs() >= deadline) return false;
      usleep(5000);
    }
  }
};

// ---- 1. forked writers, one reader process ---------------------------------------------------

TEST_F(MultiProcessTest, FourForkedWritersAppendConcurrentlyAndAReaderProcessSeesEachEntryOnce) {
  constexpr uint32_t kWriters = 4, kPerWriter = 10000, kTag = 1;
  const Config cfg = MultiConfig();
  auto master = Open(dir_, cfg);
  ASSERT_NE(master, nullptr);
  Client* client = master.get();

  struct WriterReport {
    uint32_t written = 0;
    uint32_t retries = 0;
    uint32_t per_shard[kShards] = {};
    char first_retry[512] = {};  // why the first NOT_OWNER retry happened
  };

  Children kids;
  std::vector<Child*> writers;
  for (uint32_t w = 0; w < kWriters; w++) {
    Child* c = kids.Spawn([&, w](int out, int in) -> int {
      // The first call on the inherited client joins as a process of its own.
      auto first = client->PickStream("w", "join", kShards);
      if (!first.ok()) {
        Say(out, "first PickStream after fork: " + first.status().ToString());
        return 2;
      }
      if (!Send(out, 'r') || WaitCommand(in, 30000) != 'g') return 3;
      WriterReport rep;
      for (uint32_t i = 0; i < kPerWriter; i++) {
        const std::string payload = TaggedPayload(kTag, w, i);
        const std::string key = "key-" + std::to_string(w) + "-" + std::to_string(i);
        for (uint32_t attempt = 0;; attempt++) {
          auto name = client->PickStream("w", key, kShards);
          Status st = name.status();
          EntryId id;
          if (name.ok()) st = client->Append(*name, payload, &id);
          if (st.ok()) {
            if (id.shard != ShardOf(*name)) {
              Say(out, "append to " + *name + " returned an id of shard " + std::to_string(id.shard));
              return 4;
            }
            rep.per_shard[id.shard % kShards]++;
            break;
          }
          if (st.IsNotOwner() && attempt < 2000) {
            if (rep.retries++ == 0) CopyMessage(rep.first_retry, key + ": " + st.ToString());
            usleep(1000);
            continue;
          }
          Say(out, "writer " + std::to_string(w) + " entry " + std::to_string(i) + ": " +
                       st.ToString());
          return 5;
        }
        rep.written++;
      }
      // Stay a member until every writer is done: a writer leaving moves its shards (by
      // design), which would mix writers within a shard and make others retry.
      if (!Send(out, rep) || WaitCommand(in, 60000) != 'x') return 7;
      Status cs = client->Close();
      if (!cs.ok()) {
        Say(out, "Close: " + cs.ToString());
        return 6;
      }
      return 0;
    });
    ASSERT_NE(c, nullptr);
    writers.push_back(c);
  }
  for (Child* c : writers) {
    char r = 0;
    ASSERT_TRUE(Recv(c->report, &r, 10000) && r == 'r')
        << "writer did not join: " << Children::Reap(c, 1000) << " " << Children::DrainText(c);
  }
  // All five processes are members; let every one of them rebalance to the final membership
  // before the writers start, so PickStream's view is the settled one.
  ASSERT_TRUE(PollStats(dir_, 5000, [](const comet::DirectoryStats& s) {
    return std::count_if(s.processes.begin(), s.processes.end(),
                         [](const comet::ProcessInfo& p) { return p.live; }) == 5;
  }));
  usleep(100'000);
  for (Child* c : writers) ASSERT_TRUE(Children::Command(c, 'g'));

  uint64_t total_retries = 0;
  std::string first_retry;
  uint32_t per_shard[kShards] = {};
  std::vector<WriterReport> reps(kWriters);
  for (uint32_t w = 0; w < kWriters; w++) {
    if (!Recv(writers[w]->report, &reps[w], 30000)) {
      std::string what;
      Children::Reap(writers[w], 1000, &what);
      FAIL() << "writer " << w << ": " << what << "\n" << Children::DrainText(writers[w]);
    }
  }
  for (Child* c : writers) ASSERT_TRUE(Children::Command(c, 'x'));
  for (uint32_t w = 0; w < kWriters; w++) {
    const WriterReport& rep = reps[w];
    std::string what;
    const int code = Children::Reap(writers[w], 30000, &what);
    ASSERT_EQ(code, 0) << "writer " << w << ": " << what << "\n" << Children::DrainText(writers[w]);
    EXPECT_EQ(rep.written, kPerWriter);
    if (rep.retries) first_retry = rep.first_retry;
    total_retries += rep.retries;
    for (uint32_t s = 0; s < kShards; s++) per_shard[s] += rep.per_shard[s];
  }
  // Once membership settled, PickStream only routes to shards the writer holds.
  EXPECT_EQ(total_retries, 0u) << "appends through PickStream got NOT_OWNER after membership "
                                  "settled, e.g. "
                               << first_retry;

  // A separate reader process with its own client (not the inherited one) checks every entry.
  // (A read-only client in a forked child is covered by its own test below.)
  Child* reader = kids.Spawn([&](int out, int) -> int {
    auto r = Client::Open(dir_, cfg);
    if (!r.ok()) {
      Say(out, "reader Open: " + r.status().ToString());
      return 2;
    }
    Client* c = r->get();
    std::vector<std::vector<uint8_t>> seen(kWriters, std::vector<uint8_t>(kPerWriter, 0));
    uint64_t total = 0, bad = 0;
    uint32_t counts[kShards] = {};
    for (uint32_t s = 0; s < kShards; s++) {
      const std::string name = Shard("w", s);
      auto len = c->Length(name);
      if (!len.ok()) {
        Say(out, "Length(" + name + "): " + len.status().ToString());
        return 3;
      }
      if (*len == 0) continue;
      auto it = c->Scan(name, 0);
      if (!it.ok()) {
        Say(out, "Scan(" + name + "): " + it.status().ToString());
        return 3;
      }
      int64_t writer_of_shard = -1;
      int64_t last_seq = -1;
      for (uint64_t e = 0; e < *len; e++) {
        Entry entry;
        Status st = it->Next(&entry);
        if (!st.ok()) {
          Say(out, name + " entry " + std::to_string(e) + ": " + st.ToString());
          return 4;
        }
        uint32_t w = 0, i = 0;
        if (entry.id.entry != e || !DecodeTagged(entry.data, &w, &i) || w >= kWriters ||
            i >= kPerWriter || entry.data != TaggedPayload(kTag, w, i)) {
          if (bad++ < 5) Say(out, name + " entry " + std::to_string(e) + " has wrong content");
          continue;
        }
        if (seen[w][i]++) {
          if (bad++ < 5)
            Say(out, "writer " + std::to_string(w) + " seq " + std::to_string(i) + " seen twice");
        }
        // One writer per shard, and each writer's entries in its own order.
        if (writer_of_shard < 0) writer_of_shard = w;
        if (writer_of_shard != w) {
          if (bad++ < 5) Say(out, name + " has entries of writers " +
                                      std::to_string(writer_of_shard) + " and " + std::to_string(w));
        }
        if (static_cast<int64_t>(i) <= last_seq && writer_of_shard == w) {
          if (bad++ < 5) Say(out, name + ": writer order broken at entry " + std::to_string(e));
        }
        last_seq = i;
        total++;
        counts[s]++;
      }
      Entry extra;
      if (it->Next(&extra).ok()) {
        Say(out, name + " has an entry beyond its Length");
        bad++;
      }
    }
    for (uint32_t w = 0; w < kWriters; w++) {
      for (uint32_t i = 0; i < kPerWriter; i++) {
        if (!seen[w][i] && bad++ < 10) {
          Say(out, "missing writer " + std::to_string(w) + " seq " + std::to_string(i));
        }
      }
    }
    if (!Send(out, total) || !Send(out, counts)) return 5;
    return bad == 0 ? 0 : 6;
  });
  ASSERT_NE(reader, nullptr);
  uint64_t total = 0;
  uint32_t counts[kShards] = {};
  const bool got = Recv(reader->report, &total, 30000) && Recv(reader->report, &counts, 1000);
  std::string what;
  const int code = Children::Reap(reader, 30000, &what);
  ASSERT_TRUE(got && code == 0) << "reader: " << what << "\n" << Children::DrainText(reader);
  EXPECT_EQ(total, uint64_t{kWriters} * kPerWriter);
  for (uint32_t s = 0; s < kShards; s++) {
    EXPECT_EQ(counts[s], per_shard[s]) << "shard " << s << ": reader count vs writers' acks";
  }
  ASSERT_OK(master->Close());
}

// ---- 2. two independently opened processes never share a shard -------------------------------

TEST_F(MultiProcessTest, TwoIndependentProcessesSplitShardsAndTheOtherGetsNotOwner) {
  const Config cfg = MultiConfig();
  {
    auto c = Open(dir_, cfg);
    ASSERT_NE(c, nullptr);
    for (uint32_t s = 0; s < kShards; s++) ASSERT_OK(c->Append(Shard("own", s), "seed"));
    ASSERT_OK(c->Close());
  }

  struct Result {
    int32_t slot = -1;
    uint32_t ok_mask = 0;
    uint32_t not_owner_mask = 0;
    uint32_t other_errors = 0;
  };
  auto body = [&](int out, int in) -> int {
    auto r = Client::Open(dir_, cfg);
    if (!r.ok()) {
      Say(out, "Open: " + r.status().ToString());
      return 2;
    }
    Client* c = r->get();
    const int32_t slot = OwnSlot(dir_);
    if (!Send(out, slot) || WaitCommand(in, 30000) != 'g') return 3;
    Result res;
    res.slot = slot;
    for (uint32_t s = 0; s < kShards; s++) {
      Status st = c->Append(Shard("own", s), "from slot " + std::to_string(slot));
      if (st.ok()) {
        res.ok_mask |= 1u << s;
      } else if (st.code() == Code::kNotOwner) {
        res.not_owner_mask |= 1u << s;
      } else {
        res.other_errors++;
        Say(out, Shard("own", s) + ": " + st.ToString());
      }
    }
    if (!Send(out, res) || WaitCommand(in, 30000) != 'x') return 4;
    return c->Close().ok() ? 0 : 5;
  };

  Children kids;
  Child* a = kids.Spawn(body);
  ASSERT_NE(a, nullptr);
  int32_t slot_a = -1, slot_b = -1;
  ASSERT_TRUE(Recv(a->report, &slot_a, 10000)) << Children::DrainText(a);
  Child* b = kids.Spawn(body);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(Recv(b->report, &slot_b, 10000)) << Children::DrainText(b);
  ASSERT_GE(slot_a, 0);
  ASSERT_GE(slot_b, 0);
  ASSERT_NE(slot_a, slot_b);

  // Both are up: wait until the leases reflect the two-process membership (shard s belongs to
  // the live process of rank s % 2), then let each try every shard.
  const int32_t low = std::min(slot_a, slot_b), high = std::max(slot_a, slot_b);
  comet::DirectoryStats stats;
  // owned_shards counts a shard once its new owner finished taking it over (not just the lease).
  const bool settled = PollStats(dir_, 3000, [&](const comet::DirectoryStats& s) {
    for (uint32_t sh = 0; sh < kShards; sh++) {
      const auto* st = FindStreamStats(s, Shard("own", sh));
      if (!st || st->owner_slot != (sh % 2 == 0 ? low : high)) return false;
    }
    for (int32_t slot : {low, high}) {
      const auto* p = FindSlot(s, static_cast<uint32_t>(slot));
      if (!p || !p->live || p->owned_shards != kShards / 2) return false;
    }
    return true;
  }, &stats);
  EXPECT_TRUE(settled) << comet::FormatStatsText(stats);

  ASSERT_TRUE(Children::Command(a, 'g'));
  ASSERT_TRUE(Children::Command(b, 'g'));
  Result ra, rb;
  ASSERT_TRUE(Recv(a->report, &ra, 10000)) << Children::DrainText(a);
  ASSERT_TRUE(Recv(b->report, &rb, 10000)) << Children::DrainText(b);

  EXPECT_EQ(ra.other_errors + rb.other_errors, 0u);
  EXPECT_EQ(ra.ok_mask & rb.ok_mask, 0u) << "both processes appended to the same shard";
  EXPECT_EQ(ra.ok_mask | rb.ok_mask, 0xFFu) << "some shard had no writer";
  EXPECT_EQ(ra.not_owner_mask, 0xFFu & ~ra.ok_mask);
  EXPECT_EQ(rb.not_owner_mask, 0xFFu & ~rb.ok_mask);
  EXPECT_EQ(slot_a == low ? ra.ok_mask : rb.ok_mask, 0x55u) << "even shards go to the lower slot";

  // The leases in the control region agree with who could append.
  auto after = comet::ReadStats(dir_);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  for (uint32_t s = 0; s < kShards; s++) {
    const auto* st = FindStreamStats(*after, Shard("own", s));
    ASSERT_NE(st, nullptr) << Shard("own", s);
    const int32_t expected = (ra.ok_mask >> s & 1) ? slot_a : slot_b;
    EXPECT_EQ(st->owner_slot, expected) << st->name;
    EXPECT_EQ(st->committed_entry, 2u) << st->name << ": the seed entry and one append";
  }
  for (int32_t slot : {slot_a, slot_b}) {
    const auto* p = FindSlot(*after, static_cast<uint32_t>(slot));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(p->live);
    EXPECT_EQ(p->owned_shards, 4u) << "slot " << slot;
  }

  ASSERT_TRUE(Children::Command(a, 'x'));
  ASSERT_TRUE(Children::Command(b, 'x'));
  std::string wa, wb;
  EXPECT_EQ(Children::Reap(a, 10000, &wa), 0) << wa << Children::DrainText(a);
  EXPECT_EQ(Children::Reap(b, 10000, &wb), 0) << wb << Children::DrainText(b);
}

// ---- 3. SIGKILL of a worker: takeover, nothing acknowledged lost ------------------------------

TEST_F(MultiProcessTest, KilledWorkersShardsAreTakenOverWithEveryAcknowledgedEntryIntact) {
  constexpr uint32_t kTagSurvivor = 30, kTagWorker = 31;
  constexpr size_t kAcksBeforeKill = 3000;
  const Config cfg = MultiConfig();
  auto survivor = Open(dir_, cfg);
  ASSERT_NE(survivor, nullptr);
  for (uint32_t s = 0; s < kShards; s++) {
    ASSERT_OK(survivor->Append(Shard("k", s), TaggedPayload(kTagSurvivor, s, 0)));
  }

  struct Ack {
    uint32_t shard;
    uint32_t k;       // the worker's k-th append to this shard
    uint64_t entry;   // the id it was acknowledged with
  };
  Children kids;
  Child* worker = kids.Spawn([&](int out, int) -> int {
    auto r = Client::Open(dir_, cfg);
    if (!r.ok()) {
      Say(out, "Open: " + r.status().ToString());
      return 2;
    }
    Client* c = r->get();
    uint32_t k[kShards] = {};
    for (uint64_t i = 0;; i++) {
      auto name = c->PickStream("k", "key" + std::to_string(i), kShards);
      if (!name.ok()) {
        Say(out, "PickStream: " + name.status().ToString());
        return 3;
      }
      const uint32_t s = ShardOf(*name);
      EntryId id;
      Status st = c->Append(*name, TaggedPayload(kTagWorker, s, k[s]), &id);
      if (!st.ok()) {
        Say(out, *name + ": " + st.ToString());
        return 4;
      }
      Ack a{s, k[s], id.entry};
      k[s]++;
      if (!Send(out, a)) return 5;  // acknowledged: the parent may kill us from here on
    }
  });
  ASSERT_NE(worker, nullptr);

  std::vector<Ack> acks;
  Ack a;
  while (acks.size() < kAcksBeforeKill && Recv(worker->report, &a, 10000)) acks.push_back(a);
  ASSERT_EQ(acks.size(), kAcksBeforeKill) << Children::DrainText(worker);
  const int status = Children::KillAndReap(worker);
  const int64_t killed_at = MonotonicNs();
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << Children::Describe(status);
  while (Recv(worker->report, &a, 1000)) acks.push_back(a);  // acks written before death

  std::set<uint32_t> worker_shards;
  std::map<uint32_t, uint64_t> max_acked;
  for (const Ack& x : acks) {
    ASSERT_LT(x.shard, kShards);
    worker_shards.insert(x.shard);
    max_acked[x.shard] = std::max(max_acked[x.shard], x.entry);
    // The worker appended to its shards alone, after the survivor's entry 0.
    EXPECT_EQ(x.entry, uint64_t{x.k} + 1) << "shard " << x.shard;
  }
  EXPECT_EQ(worker_shards.size(), kShards / 2) << "the worker held half of the shards";

  // The survivor takes every shard over: appends succeed everywhere within ~2 s.
  std::map<uint32_t, EntryId> next_ids;
  while (next_ids.size() < kShards && MonotonicNs() - killed_at < 2'000'000'000) {
    for (uint32_t s = 0; s < kShards; s++) {
      if (next_ids.count(s)) continue;
      EntryId id;
      Status st = survivor->Append(Shard("k", s), TaggedPayload(kTagSurvivor, s, 1), &id);
      if (st.ok()) {
        next_ids[s] = id;
      } else {
        ASSERT_TRUE(st.IsNotOwner()) << st.ToString();
      }
    }
    if (next_ids.size() < kShards) usleep(5000);
  }
  const double takeover_ms = (MonotonicNs() - killed_at) / 1e6;
  ASSERT_EQ(next_ids.size(), kShards) << "the survivor did not own every shard within 2 s";
  RecordProperty("takeover_ms", std::to_string(takeover_ms));

  // PickStream in the sole survivor routes to every shard.
  std::set<uint32_t> picked;
  for (int i = 0; i < 400; i++) {
    auto name = survivor->PickStream("k", "x" + std::to_string(i), kShards);
    ASSERT_TRUE(name.ok()) << name.status().ToString();
    picked.insert(ShardOf(*name));
  }
  EXPECT_EQ(picked.size(), kShards);

  // Every entry reads back: entry 0 the survivor's, then the worker's (acknowledged or not,
  // whatever it committed before dying) in its order, then the survivor's new one.
  for (uint32_t s = 0; s < kShards; s++) {
    const std::string name = Shard("k", s);
    const uint64_t next = next_ids[s].entry;
    if (worker_shards.count(s)) {
      EXPECT_GT(next, max_acked[s]) << name << ": new appends continue after the acknowledged ones";
    } else {
      EXPECT_EQ(next, 1u) << name;
    }
    auto len = survivor->Length(name);
    ASSERT_TRUE(len.ok());
    EXPECT_EQ(*len, next + 1) << name;
    for (uint64_t e = 0; e <= next; e++) {
      Entry entry;
      Status st = survivor->Read(name, e, &entry);
      ASSERT_TRUE(st.ok()) << name << " entry " << e << ": " << st.ToString();
      std::string want = e == 0      ? TaggedPayload(kTagSurvivor, s, 0)
                         : e == next ? TaggedPayload(kTagSurvivor, s, 1)
                                     : TaggedPayload(kTagWorker, s, static_cast<uint32_t>(e - 1));
      ASSERT_EQ(entry.data, want) << name << " entry " << e;
    }
  }
  for (const Ack& x : acks) {
    Entry entry;
    Status st = survivor->Read(Shard("k", x.shard), x.entry, &entry);
    ASSERT_TRUE(st.ok()) << "acknowledged " << Shard("k", x.shard) << " entry " << x.entry << ": "
                         << st.ToString();
    ASSERT_EQ(entry.data, TaggedPayload(kTagWorker, x.shard, x.k));
  }

  auto stats = comet::ReadStats(dir_);
  ASSERT_TRUE(stats.ok());
  const int32_t me = OwnSlot(dir_);
  for (uint32_t s = 0; s < kShards; s++) {
    const auto* st = FindStreamStats(*stats, Shard("k", s));
    ASSERT_NE(st, nullptr);
    EXPECT_EQ(st->owner_slot, me) << st->name;
  }
  EXPECT_GE(stats->takeovers, worker_shards.size());
  ASSERT_OK(survivor->Close());
}

// ---- 4. a new process reuses the dead one's slot with a new epoch -----------------------------

TEST_F(MultiProcessTest, NewProcessReusesADeadProcessSlotWithABumpedEpoch) {
  const Config cfg = MultiConfig();
  auto survivor = Open(dir_, cfg);
  ASSERT_NE(survivor, nullptr);
  for (uint32_t s = 0; s < kShards; s++) ASSERT_OK(survivor->Append(Shard("r", s), "x"));
  const int32_t survivor_slot = OwnSlot(dir_);
  ASSERT_EQ(survivor_slot, 0);

  auto body = [&](int out, int) -> int {
    auto r = Client::Open(dir_, cfg);
    if (!r.ok()) {
      Say(out, "Open: " + r.status().ToString());
      return 2;
    }
    if (!Send(out, OwnSlot(dir_))) return 3;
    for (;;) pause();
  };

  Children kids;
  Child* first = kids.Spawn(body);
  ASSERT_NE(first, nullptr);
  int32_t first_slot = -1;
  ASSERT_TRUE(Recv(first->report, &first_slot, 10000)) << Children::DrainText(first);
  ASSERT_EQ(first_slot, 1);
  auto before = comet::ReadStats(dir_);
  ASSERT_TRUE(before.ok());
  const auto* p1 = FindSlot(*before, 1);
  ASSERT_NE(p1, nullptr);
  EXPECT_TRUE(p1->live);
  EXPECT_EQ(p1->pid, static_cast<uint32_t>(first->pid));
  const uint64_t first_epoch = p1->epoch;

  Children::KillAndReap(first);
  auto dead = comet::ReadStats(dir_);
  ASSERT_TRUE(dead.ok());
  ASSERT_NE(FindSlot(*dead, 1), nullptr);
  EXPECT_FALSE(FindSlot(*dead, 1)->live) << "the kernel released the dead process's slot lock";

  Child* second = kids.Spawn(body);
  ASSERT_NE(second, nullptr);
  int32_t second_slot = -1;
  ASSERT_TRUE(Recv(second->report, &second_slot, 10000)) << Children::DrainText(second);
  EXPECT_EQ(second_slot, first_slot) << "the lowest free slot is the dead process's";

  comet::DirectoryStats after;
  // The new holder takes the odd shards with a lease naming (slot 1, new epoch).
  const bool settled = PollStats(dir_, 3000, [&](const comet::DirectoryStats& s) {
    for (uint32_t sh = 0; sh < kShards; sh++) {
      const auto* st = FindStreamStats(s, Shard("r", sh));
      if (!st || st->owner_slot != (sh % 2 == 0 ? survivor_slot : second_slot)) return false;
    }
    return true;
  }, &after);
  EXPECT_TRUE(settled) << comet::FormatStatsText(after);
  const auto* p2 = FindSlot(after, static_cast<uint32_t>(second_slot));
  ASSERT_NE(p2, nullptr);
  EXPECT_TRUE(p2->live);
  EXPECT_EQ(p2->pid, static_cast<uint32_t>(second->pid));
  EXPECT_EQ(p2->epoch, first_epoch + 1);
  EXPECT_EQ(p2->start_time, comet::shm::ProcessStartTime(second->pid));
  const uint64_t want_word = (uint64_t{1} + 1) << 32 | ((first_epoch + 1) & 0xFFFFFFFF);
  EXPECT_EQ(RawOwnerWord(dir_, 0, 1), want_word) << "lease of r:shard:0001 names the new epoch";
  ASSERT_OK(survivor->Close());
}

// ---- 5. PID reuse does not make a dead holder look alive -------------------------------------

TEST_F(MultiProcessTest, DeadSlotWithAReusedLivePidIsStillTakenOver) {
  const Config cfg = MultiConfig();
  // A: slot 0, the eventual survivor. B: slot 1, killed. A is stopped while B dies and while
  // B's slot is made to name a live process, so nothing takes B's shards before the patch.
  auto body = [&](int out, int in) -> int {
    auto r = Client::Open(dir_, cfg);
    if (!r.ok()) {
      Say(out, "Open: " + r.status().ToString());
      return 2;
    }
    Client* c = r->get();
    if (!Send(out, OwnSlot(dir_))) return 3;
    for (;;) {
      char cmd = WaitCommand(in, 60000);
      if (cmd == 'a' || cmd == 'A') {
        // 'a': try every shard once; 'A': retry NOT_OWNER for up to 2 s. Report the shards
        // whose append succeeded.
        uint32_t mask = 0;
        const int64_t deadline = MonotonicNs() + (cmd == 'A' ? 2'000'000'000 : 0);
        for (;;) {
          for (uint32_t s = 0; s < kShards; s++) {
            if (mask >> s & 1) continue;
            Status st = c->Append(Shard("p", s), "slot" + std::to_string(OwnSlot(dir_)));
            if (st.ok()) mask |= 1u << s;
            else if (!st.IsNotOwner()) Say(out, st.ToString());
          }
          if (mask == 0xFF || MonotonicNs() >= deadline) break;
          usleep(2000);
        }
        if (!Send(out, mask)) return 4;
      } else {
        return cmd == 'x' && c->Close().ok() ? 0 : 5;
      }
    }
  };
  {
    auto c = Open(dir_, cfg);
    ASSERT_NE(c, nullptr);
    for (uint32_t s = 0; s < kShards; s++) ASSERT_OK(c->Append(Shard("p", s), "seed"));
    ASSERT_OK(c->Close());
  }
  Children kids;
  Child* a = kids.Spawn(body);
  ASSERT_NE(a, nullptr);
  int32_t slot_a = -1, slot_b = -1;
  ASSERT_TRUE(Recv(a->report, &slot_a, 10000)) << Children::DrainText(a);
  Child* b = kids.Spawn(body);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(Recv(b->report, &slot_b, 10000)) << Children::DrainText(b);
  ASSERT_EQ(slot_a, 0);
  ASSERT_EQ(slot_b, 1);
  comet::DirectoryStats stats;
  ASSERT_TRUE(PollStats(dir_, 3000, [&](const comet::DirectoryStats& s) {
    for (uint32_t sh = 0; sh < kShards; sh++) {
      const auto* st = FindStreamStats(s, Shard("p", sh));
      if (!st || st->owner_slot != static_cast<int32_t>(sh % 2)) return false;
    }
    return true;
  }, &stats)) << comet::FormatStatsText(stats);
  uint32_t mask_b = 0;
  ASSERT_TRUE(Children::Command(b, 'A') && Recv(b->report, &mask_b, 10000));
  ASSERT_EQ(mask_b, 0xAAu);

  ASSERT_EQ(kill(a->pid, SIGSTOP), 0);
  Children::KillAndReap(b);

  // B's slot now names a live process: this test process, with its true start time.
  const std::string ctl = dir_ + "/comet.ctl";
  format::ControlHeader h;
  ASSERT_TRUE(ReadAt(ctl, 0, &h, sizeof h));
  const uint64_t slot_off = h.process_table_offset + uint64_t{1} * sizeof(format::ProcessSlot);
  const uint32_t my_pid = static_cast<uint32_t>(getpid());
  const uint64_t my_start = comet::shm::ProcessStartTime(getpid());
  ASSERT_NE(my_start, 0u);
  ASSERT_TRUE(PatchFile(ctl, slot_off + offsetof(format::ProcessSlot, pid), &my_pid, 4));
  ASSERT_TRUE(PatchFile(ctl, slot_off + offsetof(format::ProcessSlot, start_time), &my_start, 8));

  auto patched = comet::ReadStats(dir_);
  ASSERT_TRUE(patched.ok());
  const auto* pb = FindSlot(*patched, 1);
  ASSERT_NE(pb, nullptr);
  EXPECT_EQ(pb->pid, my_pid) << "the patch took";
  EXPECT_FALSE(pb->live) << "a live pid in a dead slot must not make it live";
  for (uint32_t sh = 1; sh < kShards; sh += 2) {
    const auto* st = FindStreamStats(*patched, Shard("p", sh));
    ASSERT_NE(st, nullptr);
    EXPECT_EQ(st->owner_slot, 1) << "nothing took " << st->name << " while A was stopped";
  }

  ASSERT_EQ(kill(a->pid, SIGCONT), 0);
  // The survivor appends to every shard within ~2 s (polling with appends).
  uint32_t mask_a = 0;
  ASSERT_TRUE(Children::Command(a, 'A') && Recv(a->report, &mask_a, 10000)) << Children::DrainText(a);
  EXPECT_EQ(mask_a, 0xFFu) << "the survivor did not take the dead holder's shards in 2 s";
  comet::DirectoryStats after;
  const bool taken = PollStats(dir_, 1000, [&](const comet::DirectoryStats& s) {
    for (uint32_t sh = 0; sh < kShards; sh++) {
      const auto* st = FindStreamStats(s, Shard("p", sh));
      if (!st || st->owner_slot != 0) return false;
    }
    return true;
  }, &after);
  EXPECT_TRUE(taken) << "leases do not name the survivor:\n" << comet::FormatStatsText(after);
  EXPECT_GE(after.takeovers, 4u);
  const auto* pa = FindSlot(after, 0);
  ASSERT_NE(pa, nullptr);
  EXPECT_TRUE(pa->live);
  EXPECT_EQ(pa->owned_shards, kShards);
  const auto* pb2 = FindSlot(after, 1);
  ASSERT_NE(pb2, nullptr);
  EXPECT_FALSE(pb2->live);

  ASSERT_TRUE(Children::Command(a, 'x'));
  std::string what;
  EXPECT_EQ(Children::Reap(a, 10000, &what), 0) << what << Children::DrainText(a);
}

// ---- 6. readers in another process: visibility and wake-up latency ----------------------------

// The append's futex wake is what ends the wait: with the periodic re-check slowed to a minute, a
// reader woken late by more than a second (or timing out after ten) means the wake was lost.
TEST_F(MultiProcessTest, ReaderProcessSeesNewEntriesAndABlockedWaitWakesWithinMilliseconds) {
  const comet_test::SlowRecheck slow_recheck;
  const Config cfg = MultiConfig();
  const std::string name = Shard("ev", 0);
  auto writer = Open(dir_, cfg);
  ASSERT_NE(writer, nullptr);
  EntryId first;
  ASSERT_OK(writer->Append(name, "hello", &first));

  struct Wake {
    int32_t code = 0;         // Status code of the wait
    int32_t read_code = 0;    // Status code of reading the entry after it
    int64_t latency_ns = 0;   // wake-up (CLOCK_MONOTONIC) minus the writer's time before Append
    int64_t blocked_ns = 0;   // wake-up minus the start of the wait
    int64_t realtime_skew_ns = 0;  // CLOCK_REALTIME at wake-up minus Entry.timestamp_ns
  };
  auto finish = [](Status wait_st, Status read_st, const Entry& e, int64_t start, int64_t woke,
                   int64_t woke_real) {
    Wake w;
    w.code = wait_st.raw();
    w.read_code = read_st.raw();
    int64_t writer_ns = 0;
    if (read_st.ok() && e.data.size() >= 8) std::memcpy(&writer_ns, e.data.data(), 8);
    w.latency_ns = woke - writer_ns;
    w.blocked_ns = woke - start;
    w.realtime_skew_ns = woke_real - e.timestamp_ns;
    return w;
  };

  Children kids;
  Child* reader = kids.Spawn([&](int out, int) -> int {
    auto r = Client::Open(dir_, cfg);  // a member of its own, not inherited
    if (!r.ok()) {
      Say(out, "Open: " + r.status().ToString());
      return 2;
    }
    Client* c = r->get();
    auto s = c->GetStream(name);
    if (!s.ok()) {
      Say(out, "GetStream: " + s.status().ToString());
      return 3;
    }
    Entry e;
    if (Status st = c->Read(*s, 0, &e); !st.ok() || e.data != "hello") {
      Say(out, "entry 0: " + st.ToString());
      return 4;
    }
    // 1. An entry appended later by the other process becomes readable, no reopen.
    if (!Send(out, 'a')) return 5;
    const int64_t deadline = MonotonicNs() + 5'000'000'000;
    Status st;
    while (!(st = c->Read(*s, 1, &e)).ok() && MonotonicNs() < deadline) usleep(200);
    if (!st.ok() || e.data != "second") {
      Say(out, "entry 1 never showed up: " + st.ToString());
      return 6;
    }
    auto len = c->Length(name);
    if (!len.ok() || *len != 2) {
      Say(out, "Length after entry 1 is not 2");
      return 7;
    }
    // 2. Iterator::Wait blocks until the writer appends entry 2.
    auto it = c->Scan(*s, 2);
    if (!it.ok()) return 8;
    int64_t start = MonotonicNs();
    if (!Send(out, 'w')) return 9;
    Status ws = it->Wait(10'000'000'000);
    int64_t woke = MonotonicNs(), woke_real = RealNs();
    Status rs = it->Next(&e);
    if (!Send(out, finish(ws, rs, e, start, woke, woke_real))) return 10;
    // 3. Client::WaitFor blocks until entry 3.
    start = MonotonicNs();
    if (!Send(out, 'W')) return 11;
    ws = c->WaitFor(*s, 3, 10'000'000'000);
    woke = MonotonicNs();
    woke_real = RealNs();
    rs = c->Read(*s, 3, &e);
    if (!Send(out, finish(ws, rs, e, start, woke, woke_real))) return 12;
    // 4. Nothing arrives: TIMEOUT after the timeout, not before.
    start = MonotonicNs();
    ws = c->WaitFor(*s, 4, 50'000'000);
    Wake t;
    t.code = ws.raw();
    t.blocked_ns = MonotonicNs() - start;
    if (!Send(out, t)) return 13;
    return c->Close().ok() ? 0 : 14;
  });
  ASSERT_NE(reader, nullptr);

  char c = 0;
  ASSERT_TRUE(Recv(reader->report, &c, 10000) && c == 'a') << Children::DrainText(reader);
  ASSERT_OK(writer->Append(name, "second"));

  auto append_stamped = [&](uint64_t expect_entry) {
    // Only once the reader has announced itself blocked (it is past its spin).
    ASSERT_TRUE(comet_test::AwaitWaiters(dir_, first.prefix_id, first.shard, 1));
    std::string payload(8, '\0');
    const int64_t now = MonotonicNs();
    std::memcpy(&payload[0], &now, 8);
    payload += "stamped";
    EntryId id;
    ASSERT_OK(writer->Append(name, payload, &id));
    EXPECT_EQ(id.entry, expect_entry);
  };
  auto check = [&](const Wake& w, const char* what) {
    EXPECT_EQ(w.code, 0) << what << ": wait status " << w.code;
    EXPECT_EQ(w.read_code, 0) << what << ": read after the wait " << w.read_code;
    EXPECT_GE(w.latency_ns, 0) << what << " returned before the append";
    EXPECT_LT(w.latency_ns, 1'000'000'000) << what << " woke " << w.latency_ns / 1e6
                                           << " ms after the append";
    EXPECT_GE(w.realtime_skew_ns, -50'000'000) << what << ": Entry.timestamp_ns is in the future";
    EXPECT_LT(w.realtime_skew_ns, 1'000'000'000) << what << ": Entry.timestamp_ns is stale";
    RecordProperty(std::string(what) + "_wake_us", std::to_string(w.latency_ns / 1000));
  };

  ASSERT_TRUE(Recv(reader->report, &c, 10000) && c == 'w') << Children::DrainText(reader);
  append_stamped(2);
  Wake w1;
  ASSERT_TRUE(Recv(reader->report, &w1, 10000)) << Children::DrainText(reader);
  check(w1, "Iterator::Wait");

  ASSERT_TRUE(Recv(reader->report, &c, 10000) && c == 'W') << Children::DrainText(reader);
  append_stamped(3);
  Wake w2;
  ASSERT_TRUE(Recv(reader->report, &w2, 10000)) << Children::DrainText(reader);
  check(w2, "Client::WaitFor");

  Wake t;
  ASSERT_TRUE(Recv(reader->report, &t, 10000)) << Children::DrainText(reader);
  EXPECT_EQ(t.code, static_cast<int>(Code::kTimeout));
  EXPECT_GE(t.blocked_ns, 50'000'000);
  EXPECT_LT(t.blocked_ns, 1'000'000'000);

  std::string what;
  EXPECT_EQ(Children::Reap(reader, 10000, &what), 0) << what << Children::DrainText(reader);
  ASSERT_OK(writer->Close());
}

// ---- fork-inherited children creating prefixes and streams at once ------------------------------

// Children of one master that all use the inherited client must still take turns where the
// library serialises processes (prefix registration, shard-table allocation).
TEST_F(MultiProcessTest, ForkInheritedChildrenRegisteringPrefixesAtOnceAgreeOnOneIdEach) {
  constexpr int kChildren = 4, kPrefixes = 20;
  auto master = Open(dir_, MultiConfig());
  ASSERT_NE(master, nullptr);
  Client* client = master.get();
  Children kids;
  std::vector<Child*> children;
  for (int j = 0; j < kChildren; j++) {
    Child* c = kids.Spawn([&](int out, int in) -> int {
      if (auto r = client->Length("join:shard:0000"); !r.ok()) {  // joins as its own process
        Say(out, "first call after fork: " + r.status().ToString());
        return 2;
      }
      if (!Send(out, 'r') || WaitCommand(in, 30000) != 'g') return 3;
      int bad = 0;
      for (int p = 0; p < kPrefixes; p++) {
        auto s = client->GetStream(Shard("reg" + std::to_string(p), 0));
        if (!s.ok() && bad++ < 2) {
          Say(out, "GetStream reg" + std::to_string(p) + ": " + s.status().ToString());
        }
      }
      return bad == 0 ? 0 : 4;
    });
    ASSERT_NE(c, nullptr);
    children.push_back(c);
  }
  for (Child* c : children) {
    char r = 0;
    ASSERT_TRUE(Recv(c->report, &r, 10000) && r == 'r') << Children::DrainText(c);
  }
  for (Child* c : children) ASSERT_TRUE(Children::Command(c, 'g'));
  for (Child* c : children) {
    std::string what;
    EXPECT_EQ(Children::Reap(c, 20000, &what), 0) << what << "\n" << Children::DrainText(c);
  }
  // One directory per prefix.
  std::map<std::string, std::vector<std::string>> ids_of;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/streams")) {
    const std::string id = e.path().filename().string();
    if (id.starts_with(".")) continue;
    ids_of[comet_test::ReadFile(e.path().string() + "/PREFIX")].push_back(id);
  }
  EXPECT_EQ(ids_of.size(), size_t{kPrefixes}) << "prefix directories without a valid PREFIX";
  std::string dups;
  for (const auto& [prefix, ids] : ids_of) {
    if (ids.size() != 1) dups += " '" + prefix + "' x" + std::to_string(ids.size());
  }
  EXPECT_TRUE(dups.empty()) << "prefixes registered more than once:" << dups;
  ASSERT_OK(master->Close());
}

TEST_F(MultiProcessTest, ForkInheritedChildrenCreatingStreamsAtOnceGetOneShardSlotEach) {
  constexpr uint32_t kChildren = 4, kPerChild = 64;
  auto master = Open(dir_, MultiConfig());
  ASSERT_NE(master, nullptr);
  // The prefix and the shard table are in use before the fork, as in a master that logs.
  ASSERT_OK(master->Append(Shard("tbl", 0), "master"));
  Client* client = master.get();
  Children kids;
  std::vector<Child*> children;
  for (uint32_t j = 0; j < kChildren; j++) {
    Child* c = kids.Spawn([&, j](int out, int in) -> int {
      if (auto r = client->Length(Shard("tbl", 0)); !r.ok()) {
        Say(out, "first call after fork: " + r.status().ToString());
        return 2;
      }
      if (!Send(out, 'r') || WaitCommand(in, 30000) != 'g') return 3;
      int bad = 0;
      for (uint32_t k = 0; k < kPerChild; k++) {
        auto s = client->GetStream(Shard("tbl", 1 + j * kPerChild + k));
        if (!s.ok()) {
          Say(out, s.status().ToString());
          bad++;
        }
      }
      return bad == 0 ? 0 : 4;
    });
    ASSERT_NE(c, nullptr);
    children.push_back(c);
  }
  for (Child* c : children) {
    char r = 0;
    ASSERT_TRUE(Recv(c->report, &r, 10000) && r == 'r') << Children::DrainText(c);
  }
  for (Child* c : children) ASSERT_TRUE(Children::Command(c, 'g'));
  for (Child* c : children) {
    std::string what;
    EXPECT_EQ(Children::Reap(c, 20000, &what), 0) << what << "\n" << Children::DrainText(c);
  }
  auto stats = comet::ReadStats(dir_);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  std::set<std::string> names;
  for (const auto& st : stats->streams) {
    EXPECT_TRUE(names.insert(st.name).second) << st.name << " has two shard-table slots";
  }
  EXPECT_EQ(stats->streams.size(), size_t{1 + kChildren * kPerChild})
      << "every stream has its own slot in the control region's shard table";
  for (uint32_t s = 0; s <= kChildren * kPerChild; s++) {
    EXPECT_TRUE(names.count(Shard("tbl", s))) << Shard("tbl", s) << " has no shard-table slot";
  }
  ASSERT_OK(master->Close());
}

// ---- a follower that saw a stream before its first segment ----------------------------------

TEST_F(MultiProcessTest, ProcessThatCreatedAStreamAnotherProcessWritesReadsItsEntries) {
  constexpr uint32_t kCount = 5;
  const Config cfg = MultiConfig();
  auto reader = Open(dir_, cfg);  // slot 0
  ASSERT_NE(reader, nullptr);
  const std::string name = Shard("f", 1);  // shard 1: assigned to the second process

  Children kids;
  Child* writer = kids.Spawn([&](int out, int in) -> int {
    auto r = Client::Open(dir_, cfg);
    if (!r.ok()) {
      Say(out, "Open: " + r.status().ToString());
      return 2;
    }
    Client* c = r->get();
    if (!Send(out, 'r') || WaitCommand(in, 30000) != 'g') return 3;
    uint32_t done = 0;
    const int64_t deadline = MonotonicNs() + 2'000'000'000;
    while (done < kCount) {
      Status st = c->Append(name, TaggedPayload(7, 1, done));
      if (st.ok()) {
        done++;
      } else if (!st.IsNotOwner() || MonotonicNs() > deadline) {
        Say(out, name + ": " + st.ToString());
        return 4;
      } else {
        usleep(2000);  // taking over the stream the other process created
      }
    }
    if (!Send(out, done) || WaitCommand(in, 30000) != 'x') return 5;
    return c->Close().ok() ? 0 : 6;
  });
  ASSERT_NE(writer, nullptr);
  char r = 0;
  ASSERT_TRUE(Recv(writer->report, &r, 10000) && r == 'r') << Children::DrainText(writer);
  // This process creates the stream (it has no segment yet) but does not own its shard.
  auto stream = reader->GetStream(name);
  ASSERT_TRUE(stream.ok()) << stream.status().ToString();
  EXPECT_TRUE(reader->Append(name, "not mine").IsNotOwner());
  ASSERT_TRUE(Children::Command(writer, 'g'));
  uint32_t done = 0;
  ASSERT_TRUE(Recv(writer->report, &done, 10000)) << Children::DrainText(writer);
  ASSERT_EQ(done, kCount);

  auto len = reader->Length(name);
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, kCount);
  for (uint32_t i = 0; i < kCount; i++) {
    Entry e;
    Status st = reader->Read(*stream, i, &e);
    EXPECT_TRUE(st.ok()) << name << " entry " << i << ": " << st.ToString();
    if (st.ok()) {
      EXPECT_EQ(e.data, TaggedPayload(7, 1, i));
    }
  }
  ASSERT_TRUE(Children::Command(writer, 'x'));
  std::string what;
  EXPECT_EQ(Children::Reap(writer, 10000, &what), 0) << what << Children::DrainText(writer);
  ASSERT_OK(reader->Close());
}

// ---- a read-only client in a forked child -------------------------------------------------------

TEST_F(MultiProcessTest, ReadOnlyClientOpenedInAForkedChildReadsWhatWritersPublished) {
  const Config cfg = MultiConfig();
  auto writer = Open(dir_, cfg);
  ASSERT_NE(writer, nullptr);
  for (uint32_t i = 0; i < 10; i++) ASSERT_OK(writer->Append(Shard("ro", 0), TaggedPayload(5, 0, i)));

  Children kids;
  Child* reader = kids.Spawn([&](int out, int) -> int {
    Config rc;
    rc.open.read_only = true;
    auto r = Client::Open(dir_, rc);
    if (!r.ok()) {
      Say(out, "read-only Open: " + r.status().ToString());
      return 2;
    }
    Client* c = r->get();
    auto len = c->Length(Shard("ro", 0));
    if (!len.ok() || *len != 10) {
      Say(out, "Length: " + (len.ok() ? std::to_string(*len) : len.status().ToString()));
      return 3;
    }
    for (uint32_t i = 0; i < 10; i++) {
      Entry e;
      Status st = c->Read(Shard("ro", 0), i, &e);
      if (!st.ok() || e.data != TaggedPayload(5, 0, i)) {
        Say(out, "entry " + std::to_string(i) + ": " + st.ToString());
        return 4;
      }
    }
    return c->Close().ok() ? 0 : 5;
  });
  ASSERT_NE(reader, nullptr);
  std::string what;
  const int code = Children::Reap(reader, 10000, &what);
  EXPECT_EQ(code, 0) << what << "\n" << Children::DrainText(reader);
  ASSERT_OK(writer->Close());
}

// ---- 8. racing joins, up to a full process table ----------------------------------------------

// Forks `n` children that each wait for 'g', open `dir` in multi mode, report their slot (or -1
// and a message), then wait for 'x' before closing.
std::vector<Child*> SpawnJoiners(Children* kids, const std::string& dir, const Config& cfg, int n) {
  std::vector<Child*> out;
  for (int i = 0; i < n; i++) {
    Child* c = kids->Spawn([&dir, cfg](int report, int in) -> int {
      if (WaitCommand(in, 30000) != 'g') return 2;
      auto r = Client::Open(dir, cfg);
      if (!r.ok()) {
        (void)Send(report, int32_t{-1});
        Say(report, "Open: " + r.status().ToString());
        return 3;
      }
      if (!Send(report, OwnSlot(dir))) return 4;
      if (WaitCommand(in, 60000) != 'x') return 5;
      return (*r)->Close().ok() ? 0 : 6;
    });
    if (!c) break;
    out.push_back(c);
  }
  return out;
}

void StartJoinersAndCollectSlots(const std::vector<Child*>& kids, std::vector<int32_t>* slots) {
  for (Child* c : kids) ASSERT_TRUE(Children::Command(c, 'g'));
  for (Child* c : kids) {
    int32_t slot = -2;
    ASSERT_TRUE(Recv(c->report, &slot, 20000)) << "pid " << c->pid << " did not report";
    ASSERT_GE(slot, 0) << Children::Reap(c, 2000) << " " << Children::DrainText(c);
    slots->push_back(slot);
  }
}

void FinishJoiners(const std::vector<Child*>& kids) {
  for (Child* c : kids) EXPECT_TRUE(Children::Command(c, 'x'));
  for (Child* c : kids) {
    std::string what;
    EXPECT_EQ(Children::Reap(c, 20000, &what), 0) << what << " " << Children::DrainText(c);
  }
}

TEST_F(MultiProcessTest, TwentyRacingProcessesGetDistinctSlotsAndThe65thGetsFull) {
  const int64_t t0 = MonotonicNs();
  const Config cfg = MultiConfig();  // concurrency.max_processes default: 64
  ASSERT_EQ(Config().concurrency.max_processes, 64u);
  Children kids;
  std::vector<Child*> first = SpawnJoiners(&kids, dir_, cfg, 20);
  ASSERT_EQ(first.size(), 20u);
  std::vector<int32_t> slots;
  StartJoinersAndCollectSlots(first, &slots);
  ASSERT_EQ(slots.size(), 20u);
  std::set<int32_t> distinct(slots.begin(), slots.end());
  EXPECT_EQ(distinct.size(), 20u) << "two racing processes share a slot";
  EXPECT_EQ(*distinct.rbegin(), 19) << "the 20 take the 20 lowest slots";

  std::vector<Child*> more = SpawnJoiners(&kids, dir_, cfg, 44);
  ASSERT_EQ(more.size(), 44u);
  StartJoinersAndCollectSlots(more, &slots);
  ASSERT_EQ(slots.size(), 64u);
  distinct = std::set<int32_t>(slots.begin(), slots.end());
  EXPECT_EQ(distinct.size(), 64u);
  EXPECT_EQ(*distinct.begin(), 0);
  EXPECT_EQ(*distinct.rbegin(), 63);

  auto stats = comet::ReadStats(dir_);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(std::count_if(stats->processes.begin(), stats->processes.end(),
                          [](const comet::ProcessInfo& p) { return p.live; }),
            64);

  auto full = Client::Open(dir_, cfg);
  ASSERT_FALSE(full.ok()) << "a 65th process joined a 64-slot table";
  EXPECT_EQ(full.status().code(), Code::kFull) << full.status().ToString();
  EXPECT_NE(full.status().message().find("64"), std::string::npos) << full.status().ToString();

  FinishJoiners(first);
  FinishJoiners(more);
  // With everyone gone a newcomer fits again.
  auto again = Client::Open(dir_, cfg);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ASSERT_OK((*again)->Close());
  RecordProperty("seconds", std::to_string((MonotonicNs() - t0) / 1e9));
}

TEST_F(MultiProcessTest, EightSlotTableTakesEightRacingProcessesAndRefusesTheNinth) {
  const Config cfg = MultiConfig(8);
  Children kids;
  std::vector<Child*> joiners = SpawnJoiners(&kids, dir_, cfg, 8);
  ASSERT_EQ(joiners.size(), 8u);
  std::vector<int32_t> slots;
  StartJoinersAndCollectSlots(joiners, &slots);
  std::set<int32_t> distinct(slots.begin(), slots.end());
  EXPECT_EQ(distinct.size(), 8u);
  EXPECT_EQ(*distinct.rbegin(), 7);

  // The ninth, from another process too.
  Child* ninth = kids.Spawn([&](int out, int) -> int {
    auto r = Client::Open(dir_, cfg);
    if (r.ok()) return 2;
    Say(out, r.status().ToString());
    return r.status().code() == Code::kFull ? 0 : 3;
  });
  ASSERT_NE(ninth, nullptr);
  std::string what;
  const int code = Children::Reap(ninth, 10000, &what);
  const std::string msg = Children::DrainText(ninth);
  EXPECT_EQ(code, 0) << what << " " << msg;
  EXPECT_NE(msg.find("8"), std::string::npos) << msg;

  auto full = Client::Open(dir_, cfg);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), Code::kFull);
  EXPECT_NE(full.status().message().find("all 8 "), std::string::npos) << full.status().ToString();

  FinishJoiners(joiners);
}

// ---- 9. damaged control files in multi mode ---------------------------------------------------

class MultiProcessControlFileTest : public MultiProcessTest {
 protected:
  static constexpr uint32_t kEntries = 40;

  void SetUp() override {
    MultiProcessTest::SetUp();
    auto c = Open(dir_, MultiConfig());
    ASSERT_NE(c, nullptr);
    for (uint32_t s = 0; s < 3; s++) {
      for (uint32_t i = 0; i < kEntries; i++) ASSERT_OK(c->Append(Shard("d", s), TaggedPayload(9, s, i)));
    }
    ASSERT_OK(c->Close());
    ctl_ = dir_ + "/comet.ctl";
    ASSERT_NE(FileSize(ctl_), UINT64_MAX);
  }

  // Opens the directory in multi mode in a child process (so a crash is a failed test, not a
  // dead test binary). The child exits 0 if the open succeeded and every entry read back, 10 on
  // a VERSION error, 11 on another error, and reports the status message.
  struct Outcome {
    int code = -1;
    std::string what, text;
  };
  Outcome OpenInChild() {
    Children kids;
    Child* c = kids.Spawn([&](int out, int) -> int {
      auto r = Client::Open(dir_, MultiConfig());
      if (!r.ok()) {
        Say(out, r.status().ToString());
        return r.status().code() == Code::kVersion ? 10 : 11;
      }
      Client* cl = r->get();
      for (const auto& line : cl->RecoveryReport()) Say(out, "report: " + line);
      for (uint32_t s = 0; s < 3; s++) {
        auto len = cl->Length(Shard("d", s));
        if (!len.ok() || *len != kEntries) {
          Say(out, Shard("d", s) + " has " + (len.ok() ? std::to_string(*len) : len.status().ToString()) +
                       " entries");
          return 3;
        }
        for (uint32_t i = 0; i < kEntries; i++) {
          Entry e;
          Status st = cl->Read(Shard("d", s), i, &e);
          if (!st.ok() || e.data != TaggedPayload(9, s, i)) {
            Say(out, Shard("d", s) + " entry " + std::to_string(i) + ": " + st.ToString());
            return 4;
          }
        }
        // And it can write again after the rebuild, numbering on.
        EntryId id;
        Status st = cl->Append(Shard("d", s), "after", &id);
        if (!st.ok() || id.entry != kEntries) {
          Say(out, "append after rebuild: " + st.ToString() + " entry " + std::to_string(id.entry));
          return 5;
        }
      }
      return cl->Close().ok() ? 0 : 6;
    });
    Outcome o;
    if (!c) return o;
    o.code = Children::Reap(c, 20000, &o.what);
    o.text = Children::DrainText(c);
    return o;
  }

  std::string ctl_;
};

TEST_F(MultiProcessControlFileTest, GarbageControlFileIsRebuiltAndDataStaysReadable) {
  const uint64_t size = FileSize(ctl_);
  ASSERT_TRUE(comet_test::WriteFile(ctl_, comet_test::RandomBytes(77, size)));
  Outcome o = OpenInChild();
  EXPECT_EQ(o.code, 0) << o.what << "\n" << o.text;
  EXPECT_NE(o.text.find("comet.ctl"), std::string::npos) << "the rebuild is reported: " << o.text;
  EXPECT_EQ(FileSize(ctl_), size);
}

TEST_F(MultiProcessControlFileTest, ForeignSmallFileAsControlFileIsRebuilt) {
  ASSERT_TRUE(comet_test::WriteFile(ctl_, "not a control file\n"));
  Outcome o = OpenInChild();
  EXPECT_EQ(o.code, 0) << o.what << "\n" << o.text;
}

TEST_F(MultiProcessControlFileTest, ControlFileWithAValidMagicButBadHeaderCrcIsRebuilt) {
  // Right magic and version, damaged max_processes: the header CRC catches it.
  uint32_t bogus = 3;
  ASSERT_TRUE(PatchFile(ctl_, offsetof(format::ControlHeader, max_processes), &bogus, 4));
  Outcome o = OpenInChild();
  EXPECT_EQ(o.code, 0) << o.what << "\n" << o.text;
}

TEST_F(MultiProcessControlFileTest, NewerMajorVersionIsRefusedNamingBothVersions) {
  const uint32_t newer = format::control_version(2, 0);
  ASSERT_TRUE(PatchFile(ctl_, offsetof(format::ControlHeader, version), &newer, 4));
  const std::string before = comet_test::ReadFile(ctl_);
  Outcome o = OpenInChild();
  EXPECT_EQ(o.code, 10) << o.what << "\n" << o.text;
  EXPECT_NE(o.text.find("2.0"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("1." + std::to_string(format::kControlMinor)), std::string::npos) << o.text;
  // Not moved aside, not rewritten: a newer build's file is left alone.
  EXPECT_EQ(comet_test::ReadFile(ctl_), before);
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().filename().string().find("comet.ctl.damaged"), std::string::npos)
        << e.path();
  }
  auto stats = comet::ReadStats(dir_);
  EXPECT_EQ(stats.status().code(), Code::kVersion) << stats.status().ToString();
}

TEST_F(MultiProcessControlFileTest, HalfTruncatedControlFileIsRebuiltAndDataStaysReadable) {
  const uint64_t size = FileSize(ctl_);
  ASSERT_TRUE(comet_test::TruncateFile(ctl_, size / 2));
  Outcome o = OpenInChild();
  EXPECT_EQ(o.code, 0) << o.what << "\n" << o.text;
  EXPECT_EQ(FileSize(ctl_), size) << "a full-size control file was rebuilt";
  auto c = Open(dir_, MultiConfig());
  ASSERT_NE(c, nullptr);
  for (uint32_t s = 0; s < 3; s++) {
    auto len = c->Length(Shard("d", s));
    ASSERT_TRUE(len.ok());
    EXPECT_EQ(*len, kEntries + 1) << "the child's append after the rebuild is there too";
  }
  ASSERT_OK(c->Close());
}

TEST_F(MultiProcessControlFileTest, ControlFileTruncatedBelowItsHeaderIsRebuilt) {
  ASSERT_TRUE(comet_test::TruncateFile(ctl_, 100));
  Outcome o = OpenInChild();
  EXPECT_EQ(o.code, 0) << o.what << "\n" << o.text;
}

TEST_F(MultiProcessControlFileTest, EmptyControlFileIsRebuilt) {
  ASSERT_TRUE(comet_test::TruncateFile(ctl_, 0));
  Outcome o = OpenInChild();
  EXPECT_EQ(o.code, 0) << o.what << "\n" << o.text;
}

// ---- 10. prefork --------------------------------------------------------------------------------

TEST_F(MultiProcessTest, PreforkChildrenWriteTheirShardsAndTheMasterTakesAllBackAfterThem) {
  constexpr uint32_t kChildren = 2, kPerChild = 2000, kTag = 10;
  const Config cfg = MultiConfig();
  auto master = Open(dir_, cfg);
  ASSERT_NE(master, nullptr);
  Client* client = master.get();

  struct Summary {
    uint32_t per_shard[kShards] = {};
    uint32_t retries = 0;
    char first_retry[512] = {};
  };
  Children kids;
  std::vector<Child*> workers;
  for (uint32_t j = 0; j < kChildren; j++) {
    Child* c = kids.Spawn([&, j](int out, int in) -> int {
      auto first = client->PickStream("pf", "join", kShards);
      if (!first.ok()) {
        Say(out, "PickStream after fork: " + first.status().ToString());
        return 2;
      }
      if (!Send(out, 'r') || WaitCommand(in, 30000) != 'g') return 3;
      Summary sum;
      for (uint32_t i = 0; i < kPerChild; i++) {
        const std::string key = std::to_string(j) + "/" + std::to_string(i);
        for (uint32_t attempt = 0;; attempt++) {
          auto name = client->PickStream("pf", key, kShards);
          Status st = name.status();
          if (name.ok()) st = client->Append(*name, TaggedPayload(kTag, j, i));
          if (st.ok()) {
            sum.per_shard[ShardOf(*name)]++;
            break;
          }
          if (st.IsNotOwner() && attempt < 2000) {
            if (sum.retries++ == 0) CopyMessage(sum.first_retry, key + ": " + st.ToString());
            usleep(1000);
            continue;
          }
          Say(out, key + ": " + st.ToString());
          return 4;
        }
      }
      // Both children finish appending before either leaves (a leaving child hands its
      // shards to the others, by design).
      if (!Send(out, sum) || WaitCommand(in, 60000) != 'x') return 5;
      Status cs = client->Close();
      if (!cs.ok()) {
        Say(out, "Close: " + cs.ToString());
        return 6;
      }
      return 0;
    });
    ASSERT_NE(c, nullptr);
    workers.push_back(c);
  }
  for (Child* c : workers) {
    char r = 0;
    ASSERT_TRUE(Recv(c->report, &r, 10000) && r == 'r') << Children::DrainText(c);
  }
  ASSERT_TRUE(PollStats(dir_, 5000, [](const comet::DirectoryStats& s) {
    return std::count_if(s.processes.begin(), s.processes.end(),
                         [](const comet::ProcessInfo& p) { return p.live; }) == 3;
  }));
  usleep(100'000);
  for (Child* c : workers) ASSERT_TRUE(Children::Command(c, 'g'));

  uint32_t expected[kShards] = {};
  uint32_t retries = 0;
  std::string first_retry;
  std::vector<Summary> sums(kChildren);
  for (uint32_t j = 0; j < kChildren; j++) {
    if (!Recv(workers[j]->report, &sums[j], 30000)) {
      std::string what;
      Children::Reap(workers[j], 1000, &what);
      FAIL() << "child " << j << ": " << what << "\n" << Children::DrainText(workers[j]);
    }
  }
  for (Child* c : workers) ASSERT_TRUE(Children::Command(c, 'x'));
  for (uint32_t j = 0; j < kChildren; j++) {
    const Summary& sum = sums[j];
    Child* c = workers[j];
    std::string what;
    const int code = Children::Reap(c, 20000, &what);
    ASSERT_EQ(code, 0) << what << "\n" << Children::DrainText(c);
    for (uint32_t s = 0; s < kShards; s++) expected[s] += sum.per_shard[s];
    if (sum.retries) first_retry = sum.first_retry;
    retries += sum.retries;
  }
  EXPECT_EQ(retries, 0u) << "PickStream routed to a shard the child could not append to, e.g. "
                         << first_retry;
  const int64_t children_gone = MonotonicNs();

  // The master sees every child's entries, once each.
  std::set<std::pair<uint32_t, uint32_t>> seen;
  for (uint32_t s = 0; s < kShards; s++) {
    const std::string name = Shard("pf", s);
    auto len = master->Length(name);
    ASSERT_TRUE(len.ok()) << len.status().ToString();
    EXPECT_EQ(*len, expected[s]) << name;
    for (uint64_t e = 0; e < *len; e++) {
      Entry entry;
      Status st = master->Read(name, e, &entry);
      ASSERT_TRUE(st.ok()) << name << " entry " << e << ": " << st.ToString();
      uint32_t j = 0, i = 0;
      ASSERT_TRUE(DecodeTagged(entry.data, &j, &i));
      ASSERT_EQ(entry.data, TaggedPayload(kTag, j, i)) << name << " entry " << e;
      EXPECT_TRUE(seen.insert({j, i}).second) << "child " << j << " entry " << i << " twice";
    }
  }
  EXPECT_EQ(seen.size(), size_t{kChildren} * kPerChild);

  // ... and takes every shard again within ~1 s of their exit.
  std::set<uint32_t> done;
  while (done.size() < kShards && MonotonicNs() - children_gone < 1'000'000'000) {
    for (uint32_t s = 0; s < kShards; s++) {
      if (done.count(s)) continue;
      EntryId id;
      Status st = master->Append(Shard("pf", s), "master", &id);
      if (st.ok()) {
        EXPECT_EQ(id.entry, expected[s]) << Shard("pf", s) << ": numbering continues";
        done.insert(s);
      } else {
        ASSERT_TRUE(st.IsNotOwner()) << st.ToString();
      }
    }
    if (done.size() < kShards) usleep(5000);
  }
  EXPECT_EQ(done.size(), kShards) << "the master did not get every shard back within 1 s";
  auto stats = comet::ReadStats(dir_);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(std::count_if(stats->processes.begin(), stats->processes.end(),
                          [](const comet::ProcessInfo& p) { return p.live; }),
            1);
  ASSERT_OK(master->Close());
}

}  // namespace

// ---- a reader process following a writer process across rotations ---------------------------

// The reader's own view of the active segment does not know when the writer seals it; its
// iterator must notice the seal in the shared header and go on in the next segment, without
// reporting damage or skipping an entry.
TEST_F(MultiProcessTest, ReaderProcessFollowsAWriterProcessAcrossRotationsWithoutLosingEntries) {
  Config cfg = Config::MultiProcess();
  cfg.sync.mode = comet::SyncMode::kNone;
  cfg.storage.max_segment_bytes = 16 * 1024;  // a rotation every ~140 entries
  constexpr int kEntries = 1500;
  Children kids;
  Children::Child* writer = kids.Spawn([&](int report, int command) {
    auto c = Open(dir_, cfg);
    if (!c) return 2;
    auto name = c->PickStream("fol", "writer", 1);
    auto s = name.ok() ? c->GetStream(*name) : comet::Result<comet::Stream*>(name.status());
    if (!s.ok()) return 3;
    char go;
    if (!WriteFull(report, "r", 1) || !ReadFull(command, &go, 1, 20000)) return 4;
    for (int i = 0; i < kEntries; i++) {
      std::string e = "entry " + std::to_string(i) + std::string(90, '.');
      std::string_view v = e;
      if (!c->Append(*s, std::span<const std::string_view>(&v, 1)).ok()) return 5;
      if (i % 10 == 0) usleep(200);  // let the reader catch up to the end now and then
    }
    if (!ReadFull(command, &go, 1, 60000)) return 6;  // stay a member until the reader is done
    return c->Close().ok() ? 0 : 7;
  });
  ASSERT_NE(writer, nullptr);
  char ready;
  ASSERT_TRUE(ReadFull(writer->report, &ready, 1, 20000));
  Children::Child* reader = kids.Spawn([&](int report, int) {
    auto c = Open(dir_, cfg);
    if (!c) return 2;
    auto s = c->GetStream("fol:shard:0000");
    if (!s.ok()) return 3;
    auto it = c->Scan(*s, 0);
    if (!it.ok()) return 4;
    if (!WriteFull(report, "r", 1)) return 5;
    for (int i = 0; i < kEntries; i++) {
      if (!it->Wait(10'000'000'000).ok()) return 10;
      Entry e;
      Status st = it->Next(&e);
      if (!st.ok()) {
        std::fprintf(stderr, "reader at %d: %s\n", i, st.ToString().c_str());
        return 11;
      }
      if (e.id.entry != static_cast<uint64_t>(i) || !e.data.starts_with("entry " + std::to_string(i) + ".")) {
        return 12;
      }
    }
    return 0;
  });
  ASSERT_NE(reader, nullptr);
  ASSERT_TRUE(ReadFull(reader->report, &ready, 1, 20000));
  ASSERT_TRUE(Children::Command(writer, 'g'));
  std::string what;
  EXPECT_EQ(Children::Reap(reader, 30000, &what), 0) << what;
  ASSERT_TRUE(Children::Command(writer, 'q'));
  EXPECT_EQ(Children::Reap(writer, 30000, &what), 0) << what;
  auto c = Open(dir_, Config());
  ASSERT_TRUE(c);
  EXPECT_GT(c->GetStats().segments, 5u) << "the test needs rotations";
}
