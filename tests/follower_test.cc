// Followers: read-only clients that stay open while writers come, go, crash and create streams.
// What they return must be what a fresh reader returns, and they must see everything.
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/status.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Code;
using comet::Config;
using comet::Entry;
using comet::Status;
using comet::Stream;

constexpr uint64_t kKiB = 1024;

// The payload of entry `id` of `stream`: its own name and id, then bytes derived from them, of
// a length that varies with the id; one in 100 is larger than a 64 KiB segment (its batch takes
// two new segments).
std::string Payload(const std::string& stream, uint64_t id) {
  const uint64_t seed = comet_test::Fnv1a64(stream.data(), stream.size()) ^ (id * 0x9E3779B97F4A7C15ull);
  const uint64_t r = comet_test::SplitMix64(seed);
  const size_t len = r % 100 == 7 ? 70 * 1024 : 40 + r % 1500;
  std::string p = stream + "#" + std::to_string(id) + "#";
  p += comet_test::RandomBytes(seed, len);
  return p;
}

Config Small(uint64_t segment_bytes = 64 * kKiB) {
  Config c;
  c.storage.max_segment_bytes = segment_bytes;
  c.storage.prefault_bytes = 0;
  c.sync.mode = comet::SyncMode::kNone;
  return c;
}

Config ReadOnly(Config c = Small()) {
  c.open.read_only = true;
  return c;
}

class FollowerTest : public comet_test::TempDirTest {
 protected:
  std::unique_ptr<Client> Open(const Config& cfg) {
    auto r = Client::Open(dir_, cfg);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  // Appends entries [from, to) of `stream`, each with its Payload.
  static void AppendRange(Client* c, const std::string& stream, uint64_t from, uint64_t to) {
    for (uint64_t id = from; id < to; id++) {
      comet::EntryId got;
      ASSERT_OK(c->Append(stream, Payload(stream, id), &got));
      ASSERT_EQ(got.entry, id) << stream;
    }
  }

  // The follower sees `n` entries of `stream`, each with its own payload, by Read and by Scan,
  // and waits for the next one (appended by `writer`).
  static void ExpectFollows(Client* follower, Client* writer, const std::string& stream,
                            uint64_t n) {
    auto len = follower->Length(stream);
    ASSERT_TRUE(len.ok()) << stream << ": " << len.status().ToString();
    ASSERT_EQ(*len, n) << stream;
    for (uint64_t id = 0; id < n; id += std::max<uint64_t>(1, n / 17)) {
      Entry e;
      ASSERT_OK(follower->Read(stream, id, &e));
      ASSERT_EQ(e.data, Payload(stream, id)) << stream << " entry " << id;
    }
    auto it = follower->Scan(stream, 0);
    ASSERT_TRUE(it.ok()) << stream << ": " << it.status().ToString();
    for (uint64_t id = 0; id < n; id++) {
      Entry e;
      ASSERT_OK(it->Next(&e));
      ASSERT_EQ(e.id.entry, id);
      ASSERT_EQ(e.data, Payload(stream, id)) << stream << " entry " << id;
    }
    auto s = follower->GetStream(stream);
    ASSERT_TRUE(s.ok()) << stream << ": " << s.status().ToString();
    std::thread later([&] { AppendRange(writer, stream, n, n + 1); });
    const Status waited = follower->WaitFor(*s, n, 10'000'000'000);
    later.join();
    ASSERT_OK(waited);
    Entry e;
    ASSERT_OK(follower->Read(stream, n, &e));
    EXPECT_EQ(e.data, Payload(stream, n));
  }
};

// Streams created after a read-only client opened, a new shard of a prefix it knows and a new
// prefix, are found through the control region's stream table: length, read, scan and wait.
TEST_F(FollowerTest, ReadOnlyClientDiscoversStreamsCreatedAfterItOpened) {
  auto w = Open(Small());
  ASSERT_TRUE(w);
  AppendRange(w.get(), "known:shard:0000", 0, 3);
  auto r = Open(ReadOnly());
  ASSERT_TRUE(r);
  AppendRange(w.get(), "known:shard:0001", 0, 500);
  AppendRange(w.get(), "fresh:shard:0000", 0, 40);
  ExpectFollows(r.get(), w.get(), "known:shard:0001", 500);
  ExpectFollows(r.get(), w.get(), "fresh:shard:0000", 40);
  ExpectFollows(r.get(), w.get(), "known:shard:0000", 3);
  const std::vector<std::string> names = r->Streams();
  EXPECT_EQ(names.size(), 3u);
  // A stream nobody created is still no stream.
  EXPECT_EQ(*r->Length("never:shard:0000"), 0u);
  Entry e;
  EXPECT_EQ(r->Read("never:shard:0000", 0, &e).code(), Code::kNotFound);
}

// A read-only client opened while no writer is live follows the writer that arrives after it:
// into the segment the last writer left (its file grows again), across rotations, and into
// streams the new writer creates.
TEST_F(FollowerTest, ReadOnlyClientOpenedWithoutAWriterFollowsOneThatArrivesLater) {
  {
    auto w = Open(Small());
    ASSERT_TRUE(w);
    AppendRange(w.get(), "late:shard:0000", 0, 1);
    ASSERT_OK(w->Close());
  }
  auto r = Open(ReadOnly());
  ASSERT_TRUE(r);
  ASSERT_EQ(*r->Length("late:shard:0000"), 1u);
  auto w = Open(Small());
  ASSERT_TRUE(w);
  AppendRange(w.get(), "late:shard:0000", 1, 3000);
  ASSERT_GT(comet_test::ListFilesRecursive(dir_, ".seg").size(), 10u);
  AppendRange(w.get(), "later:shard:0000", 0, 50);
  ExpectFollows(r.get(), w.get(), "late:shard:0000", 3000);
  ExpectFollows(r.get(), w.get(), "later:shard:0000", 50);
  std::vector<std::string> problems;
  auto bad = r->Verify(&problems);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(*bad, 0u) << (problems.empty() ? "" : problems.front());
}

// ---- a follower that stays open while writers are killed ------------------------------------

// A writer process: appends batches of 1 to 8 entries, each with its Payload, to random streams
// of `streams`, and writes a byte to `report` after each attempt. Stops (closing its client)
// when `command` has a byte. Exit codes above 1 name what went wrong.
int WriterProcess(const std::string& dir, bool multi, const std::vector<std::string>& streams,
                  uint64_t seed, int report, int command) {
  auto c = multi ? Client::OpenMultiProcess(dir, Small()) : Client::Open(dir, Small());
  if (!c.ok()) return 2;
  std::mt19937_64 rng(seed);
  for (;;) {
    const std::string& stream = streams[rng() % streams.size()];
    auto len = (*c)->Length(stream);
    if (!len.ok()) return 3;
    std::vector<std::string> batch;
    for (uint64_t i = 0, n = 1 + rng() % 8; i < n; i++) batch.push_back(Payload(stream, *len + i));
    std::vector<std::string_view> views(batch.begin(), batch.end());
    std::vector<comet::EntryId> ids(batch.size());
    Status st = (*c)->Append(stream, views, ids.data());
    if (!st.ok() && !st.IsNotOwner()) return 4;
    for (size_t i = 0; st.ok() && i < ids.size(); i++) {
      if (ids[i].entry != *len + i) return 5;
    }
    if (!comet_test::WriteFull(report, "b", 1)) return 6;
    pollfd p{command, POLLIN, 0};
    if (poll(&p, 1, 0) == 1) return (*c)->Close().ok() ? 0 : 7;
  }
}

struct Writer {
  pid_t pid = -1;
  int report = -1;   // read end: a byte per append
  int command = -1;  // write end: a byte asks for a clean close
};

Writer StartWriter(const std::string& dir, bool multi, const std::vector<std::string>& streams,
                   uint64_t seed) {
  int rep[2], cmd[2];
  if (pipe(rep) != 0) return {};
  if (pipe(cmd) != 0) {
    close(rep[0]);
    close(rep[1]);
    return {};
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(rep[0]);
    close(cmd[1]);
    _exit(WriterProcess(dir, multi, streams, seed, rep[1], cmd[0]));
  }
  close(rep[1]);
  close(cmd[0]);
  return {pid, rep[0], cmd[1]};
}

// Lets the writer append `appends` times, then SIGKILLs it or (`clean`) has it close. Returns
// a failure message, or "".
std::string StopWriter(Writer* w, int appends, bool clean) {
  std::string failure;
  for (int i = 0; i < appends && failure.empty(); i++) {
    char b;
    if (!comet_test::ReadFull(w->report, &b, 1, 30000)) failure = "writer stopped reporting";
  }
  int status = 0;
  if (clean && failure.empty()) {
    (void)comet_test::WriteFull(w->command, "c", 1);
    std::string drained = comet_test::Drain(w->report);
    waitpid(w->pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failure = "writer did not close cleanly";
  } else {
    kill(w->pid, SIGKILL);
    waitpid(w->pid, &status, 0);
    if (WIFEXITED(status)) failure = "writer exited with " + std::to_string(WEXITSTATUS(status));
  }
  close(w->report);
  close(w->command);
  *w = Writer{};
  return failure;
}

// Reads every stream of a read-only client as it grows, checking each entry against its
// Payload; any damage, gap or wrong payload is a failure.
class Follower {
 public:
  explicit Follower(Client* c) : c_(c) {}

  // Reads what is there now; true if anything was read.
  bool Poll() {
    bool progress = false;
    for (const std::string& name : c_->Streams()) {
      auto [at, fresh] = its_.try_emplace(name);
      if (fresh) {
        auto it = c_->Scan(name, 0);
        if (!it.ok()) {
          Fail(name + ": scan: " + it.status().ToString());
          its_.erase(at);
          continue;
        }
        at->second = std::move(*it);
      }
      comet::Iterator& it = at->second;
      for (int i = 0; i < 2000; i++) {
        const uint64_t pos = it.position();
        Entry e;
        Status st = it.Next(&e);
        if (st.ok()) {
          progress = true;
          read_++;
          if (e.id.entry != pos || e.data != Payload(name, pos)) {
            Fail(name + ": entry " + std::to_string(pos) + " returned the wrong payload");
          }
          continue;
        }
        if (!st.IsNotFound() || it.position() != pos) Fail(name + ": " + st.ToString());
        if (!st.IsNotFound()) continue;
        break;
      }
    }
    return progress;
  }

  // Reads until every stream reaches the length `truth` reports.
  void CatchUp(Client* truth) {
    for (int round = 0; round < 1000; round++) {
      bool behind = false;
      for (const std::string& name : truth->Streams()) {
        auto it = its_.find(name);
        behind = behind || it == its_.end() || it->second.position() < *truth->Length(name);
      }
      if (!behind) return;
      if (!Poll()) std::this_thread::yield();
    }
    Fail("the follower never caught up with a fresh reader");
  }

  uint64_t read() const { return read_; }
  const std::vector<std::string>& failures() const { return failures_; }

 private:
  void Fail(const std::string& what) {
    if (failures_.size() < 10) failures_.push_back(what);
  }
  Client* c_;
  std::map<std::string, comet::Iterator> its_;
  uint64_t read_ = 0;
  std::vector<std::string> failures_;
};

class FollowerKillTest : public FollowerTest {
 protected:
  void SetUp() override {
    FollowerTest::SetUp();
    // One descriptor per segment file, in each writer and in the follower.
    rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
      lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 65536);
      setrlimit(RLIMIT_NOFILE, &lim);
    }
  }

  // Writers are started, let append, and SIGKILLed (one round in five: closed) for `seconds`,
  // `concurrent` at a time, while a read-only client opened once they appended follows them
  // from a thread of this process.
  void KillLoop(bool multi, int concurrent, const std::vector<std::string>& streams,
                int64_t seconds) {
    std::mt19937_64 rng(multi ? 11 : 7);
    std::vector<Writer> writers;
    for (int i = 0; i < concurrent; i++) writers.push_back(StartWriter(dir_, multi, streams, rng()));
    for (Writer& w : writers) {
      char b;
      ASSERT_TRUE(comet_test::ReadFull(w.report, &b, 1, 30000)) << "a writer did not start";
    }
    auto r = Open(ReadOnly());
    ASSERT_TRUE(r);
    Follower follower(r.get());
    std::atomic<bool> stop{false};
    std::thread reader([&] {
      while (!stop.load()) {
        if (!follower.Poll()) std::this_thread::yield();
      }
    });
    std::string failure;
    int rounds = 0;
    const int64_t deadline = comet_test::MonotonicNs() + seconds * 1'000'000'000;
    while (failure.empty() && comet_test::MonotonicNs() < deadline) {
      Writer& w = writers[rng() % writers.size()];
      failure = StopWriter(&w, 1 + static_cast<int>(rng() % 40), rng() % 5 == 0);
      w = StartWriter(dir_, multi, streams, rng());
      rounds++;
    }
    for (Writer& w : writers) {
      std::string f = StopWriter(&w, 1, false);
      if (failure.empty()) failure = f;
    }
    stop = true;
    reader.join();
    ASSERT_EQ(failure, "") << "after " << rounds << " rounds";
    auto fresh = Open(ReadOnly());
    ASSERT_TRUE(fresh);
    follower.CatchUp(fresh.get());
    EXPECT_TRUE(follower.failures().empty())
        << follower.failures().size() << " failures in " << rounds << " rounds; first: "
        << follower.failures().front();
    EXPECT_GT(follower.read(), 1000u);
    const comet_test::RunResult v = comet_test::RunTool({comet_test::ToolBinary(), "verify", dir_});
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
    std::printf("  %d writer rounds, %llu entries followed\n", rounds,
                static_cast<unsigned long long>(follower.read()));
  }
};

// Single-mode writers are SIGKILLed (or closed) and restarted for ten seconds; the read-only
// client that stays open reports no damage and returns every entry with its own payload.
TEST_F(FollowerKillTest, ReadOnlyClientFollowsSingleModeWritersThroughKillsAndRestarts) {
  KillLoop(false, 1, {"kill:shard:0000", "kill:shard:0001"}, 9);
}

// The same with two multi-mode writer processes at a time taking shards over from each other.
TEST_F(FollowerKillTest, ReadOnlyClientFollowsMultiModeWritersThroughKillsAndTakeovers) {
  KillLoop(true, 2, {"multi:shard:0000", "multi:shard:0001", "multi:shard:0002"}, 9);
}

}  // namespace
