// Retention: whole sealed segments deleted oldest first by age, shard and total size and a
// free-disk floor; never the active one; consumer groups protect what they have not consumed
// unless force_delete_after or a budget overrules them (the loss is counted); readers keep what
// they hold; consumers resume at the first retained entry; a SIGKILL in the middle of a pass
// leaves a directory that opens dense and verifies clean; `comet retention`.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/consumer.h"
#include "comet/format.h"
#include "comet/stats.h"
#include "small_tmpfs.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Config;
using comet::Consumer;
using comet::Entry;
using comet::Message;
using comet::RetentionReport;
using comet::Status;
namespace format = comet::format;

constexpr const char* kStream = "logs:shard:0000";
constexpr uint64_t kSegmentBytes = 16 << 10;

// 100 bytes naming the stream and the entry: a read of the wrong entry cannot pass for it.
std::string Payload(const std::string& stream, uint64_t i) {
  std::string p = stream + "#" + std::to_string(i) + " ";
  p.resize(100, '.');
  return p;
}

// Small segments, no background pass (each test runs its passes), no age limit unless set.
Config Cfg() {
  Config c;
  c.storage.prefault_bytes = 0;
  c.storage.max_segment_bytes = kSegmentBytes;
  c.sync.mode = comet::SyncMode::kNone;
  c.retention.max_age_ns = 0;
  c.retention.interval_ns = 0;
  return c;
}

class RetentionTest : public comet_test::TempDirTest {
 protected:
  void TearDown() override {
    comet::internal::SetRetentionNowNs(0);
    comet_test::TempDirTest::TearDown();
  }
  std::unique_ptr<Client> Open(const Config& cfg) {
    auto r = Client::Open(dir_, cfg);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  static void Fill(Client* c, const std::string& stream, uint64_t n, uint64_t from = 0) {
    for (uint64_t i = from; i < from + n; i++) ASSERT_OK(c->Append(stream, Payload(stream, i)));
  }
  static RetentionReport Pass(Client* c) {
    auto r = c->RunRetention();
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : RetentionReport{};
  }
  std::vector<std::string> Segments(uint32_t shard = 0) const {
    return comet_test::ListSegments(dir_, 0, shard);
  }
  uint64_t Bytes(uint32_t shard = 0) const {
    uint64_t n = 0;
    for (const std::string& s : Segments(shard)) n += comet_test::FileSize(s);
    return n;
  }
  // The group `name` commits `offset` on kStream.
  static void CommitAt(Client* c, const std::string& name, uint64_t offset) {
    auto k = Consumer::Open(c, name);
    ASSERT_TRUE(k.ok()) << k.status().ToString();
    ASSERT_OK((*k)->Reset(kStream, Consumer::From::kEntry, offset));
    ASSERT_OK((*k)->Close());
  }
  comet::GroupLosses Losses(const std::string& group) const {
    auto s = comet::ReadStats(dir_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (s.ok()) {
      for (const comet::GroupLosses& g : s->group_losses) {
        if (g.name == group) return g;
      }
    }
    ADD_FAILURE() << "no group " << group << " in the stats";
    return {};
  }
  // Every entry from the first retained one to the end reads back its own payload, the ones
  // before it are NOT_FOUND, and no gap is reported.
  static void ExpectDenseFrom(Client* c, uint64_t first, uint64_t next) {
    auto info = c->Inspect(kStream);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->first.entry, first);
    EXPECT_EQ(info->next_entry, next);
    EXPECT_TRUE(info->gaps.empty());
    if (first > 0) {
      Entry e;
      EXPECT_TRUE(c->Read(kStream, first - 1, &e).IsNotFound());
      EXPECT_TRUE(c->Read(kStream, 0, &e).IsNotFound());
    }
    for (uint64_t i = first; i < next; i++) {
      Entry e;
      ASSERT_OK(c->Read(kStream, i, &e));
      ASSERT_EQ(e.data, Payload(kStream, i));
    }
  }
};

uint64_t SegmentCreatedNs(const std::string& path) {
  uint64_t v = 0;
  EXPECT_TRUE(comet_test::ReadAt(path, format::seg::kCreatedNs, &v, sizeof v));
  return v;
}

// ---- groups protect what they have not consumed ----------------------------------------------

TEST_F(RetentionTest, SlowGroupAtOffsetOneKeepsItsData) {
  Config cfg = Cfg();
  cfg.retention.max_age_ns = 1;  // every sealed segment is old enough
  auto c = Open(cfg);
  Fill(c.get(), kStream, 2000);
  const size_t before = Segments().size();
  ASSERT_GE(before, 10u);
  CommitAt(c.get(), "slow", 1);
  CommitAt(c.get(), "fast", 2000);
  RetentionReport r = Pass(c.get());
  EXPECT_EQ(r.segments, 0u) << (r.deleted.empty() ? "" : r.deleted[0]);
  EXPECT_EQ(Segments().size(), before);
  ExpectDenseFrom(c.get(), 0, 2000);
  EXPECT_EQ(Losses("slow").retention_lost, 0u);

  // Once the slow group moves on, what it consumed goes, and only that.
  CommitAt(c.get(), "slow", 1000);
  r = Pass(c.get());
  EXPECT_GT(r.segments, 0u);
  EXPECT_EQ(r.unconsumed, 0u);
  const uint64_t first = comet_test::SegmentBase(Segments().front());
  EXPECT_LE(first, 1000u);
  EXPECT_GT(first + 200, 1000u) << "the segment holding entry 1000 and those after it stay";
  ExpectDenseFrom(c.get(), first, 2000);
}

TEST_F(RetentionTest, ForceDeleteAfterOverridesASlowGroupAndCountsItsLoss) {
  Config cfg = Cfg();
  cfg.retention.max_age_ns = 1;
  cfg.retention.force_delete_after_ns = 1;
  auto c = Open(cfg);
  Fill(c.get(), kStream, 2000);
  CommitAt(c.get(), "slow", 1);
  CommitAt(c.get(), "fast", 2000);
  RetentionReport r = Pass(c.get());
  ASSERT_EQ(Segments().size(), 1u) << "only the active segment stays";
  const uint64_t first = comet_test::SegmentBase(Segments().front());
  EXPECT_EQ(r.entries, first);
  EXPECT_EQ(r.unconsumed, first - 1);
  EXPECT_EQ(Losses("slow").retention_lost, first - 1);
  EXPECT_EQ(Losses("fast").retention_lost, 0u);
  ExpectDenseFrom(c.get(), first, 2000);
}

// ---- limits ----------------------------------------------------------------------------------

TEST_F(RetentionTest, SizeLimitsHoldAfterAPassEvenOverASlowGroup) {
  Config cfg = Cfg();
  cfg.retention.max_shard_bytes = 4 * kSegmentBytes;
  cfg.retention.max_total_bytes = 6 * kSegmentBytes;
  auto c = Open(cfg);
  const std::string other = "logs:shard:0001";
  Fill(c.get(), kStream, 3000);
  Fill(c.get(), other, 600);
  CommitAt(c.get(), "slow", 0);  // bounded resources win over the group
  ASSERT_GT(Bytes(0), cfg.retention.max_shard_bytes);
  RetentionReport r = Pass(c.get());
  EXPECT_LE(Bytes(0), cfg.retention.max_shard_bytes);
  EXPECT_LE(Bytes(1), cfg.retention.max_shard_bytes);
  EXPECT_LE(Bytes(0) + Bytes(1), cfg.retention.max_total_bytes);
  const uint64_t first = comet_test::SegmentBase(Segments().front());
  EXPECT_GT(first, 0u);
  EXPECT_EQ(Losses("slow").retention_lost, first);
  EXPECT_GE(r.unconsumed, first);
  ExpectDenseFrom(c.get(), first, 3000);
  // Appends go on after a pass, numbering unbroken.
  comet::EntryId id;
  ASSERT_OK(c->Append(kStream, std::string_view("after"), &id));
  EXPECT_EQ(id.entry, 3000u);
}

TEST_F(RetentionTest, MaxAgeDeletesOnlySegmentsWhoseEntriesAreAllOlder) {
  Config cfg = Cfg();
  cfg.retention.max_age_ns = 3600ull * 1'000'000'000;
  auto c = Open(cfg);
  Fill(c.get(), kStream, 2000);
  std::vector<std::string> segs = Segments();
  ASSERT_GE(segs.size(), 6u);
  EXPECT_EQ(Pass(c.get()).segments, 0u) << "nothing is an hour old";
  // An hour after segment 3 was created: the entries of segments 0..2 are all older than that
  // (each ended when the next began); segment 3 may hold younger ones.
  const int64_t created3 = static_cast<int64_t>(SegmentCreatedNs(segs[3]));
  comet::internal::SetRetentionNowNs(created3 + static_cast<int64_t>(cfg.retention.max_age_ns) + 1);
  RetentionReport r = Pass(c.get());
  EXPECT_EQ(r.segments, 3u);
  ASSERT_FALSE(Segments().empty());
  EXPECT_EQ(Segments().front(), segs[3]);
  ExpectDenseFrom(c.get(), comet_test::SegmentBase(segs[3]), 2000);
}

TEST_F(RetentionTest, MinSegmentsAreKeptWhateverTheLimits) {
  Config cfg = Cfg();
  cfg.retention.max_shard_bytes = kSegmentBytes;
  cfg.retention.max_age_ns = 1;
  cfg.retention.min_segments = 3;
  auto c = Open(cfg);
  Fill(c.get(), kStream, 2000);
  Pass(c.get());
  std::vector<std::string> segs = Segments();
  ASSERT_EQ(segs.size(), 3u);
  ExpectDenseFrom(c.get(), comet_test::SegmentBase(segs[0]), 2000);
}

TEST_F(RetentionTest, TheActiveSegmentIsNeverDeleted) {
  Config cfg = Cfg();
  cfg.retention.max_age_ns = 1;
  cfg.retention.force_delete_after_ns = 1;
  cfg.retention.max_shard_bytes = kSegmentBytes;
  cfg.retention.max_total_bytes = kSegmentBytes;
  cfg.retention.min_free_bytes = uint64_t{1} << 62;  // never reached: delete all that may go
  auto c = Open(cfg);
  Fill(c.get(), kStream, 1000);
  Fill(c.get(), "logs:shard:0001", 10);  // one segment, the active one
  CommitAt(c.get(), "slow", 0);
  Pass(c.get());
  ASSERT_EQ(Segments(0).size(), 1u);
  ASSERT_EQ(Segments(1).size(), 1u);
  const uint64_t first = comet_test::SegmentBase(Segments(0).front());
  EXPECT_GT(first, 0u);
  ExpectDenseFrom(c.get(), first, 1000);
  Pass(c.get());
  ASSERT_EQ(Segments(0).size(), 1u);
  Fill(c.get(), kStream, 10, 1000);
  ExpectDenseFrom(c.get(), first, 1010);
  // And after reopening.
  ASSERT_OK(c->Close());
  c = Open(cfg);
  ExpectDenseFrom(c.get(), first, 1010);
}

// ---- readers ---------------------------------------------------------------------------------

TEST_F(RetentionTest, AReaderHoldingViewsIntoADeletedSegmentStillReadsThem) {
  Config cfg = Cfg();
  cfg.retention.max_shard_bytes = 2 * kSegmentBytes;
  auto c = Open(cfg);
  Fill(c.get(), kStream, 2000);
  const std::string first_file = Segments().front();
  Entry held;
  ASSERT_OK(c->Read(kStream, 5, &held));
  auto it = c->Scan(kStream, 0);
  ASSERT_TRUE(it.ok());
  Entry e0;
  ASSERT_OK(it->Next(&e0));

  Pass(c.get());
  ASSERT_FALSE(comet_test::FileExists(first_file));
  // The views still read what they pointed at: the mapping outlives the file.
  EXPECT_EQ(held.data, Payload(kStream, 5));
  EXPECT_EQ(e0.data, Payload(kStream, 0));
  // Deleted ids are NOT_FOUND, through Read and through the iterator, which moves on to the
  // first retained entry.
  const uint64_t first = comet_test::SegmentBase(Segments().front());
  Entry e;
  EXPECT_TRUE(c->Read(kStream, 1, &e).IsNotFound());
  EXPECT_TRUE(it->Next(&e).IsNotFound());
  EXPECT_EQ(it->position(), first);
  ASSERT_OK(it->Next(&e));
  EXPECT_EQ(e.data, Payload(kStream, first));
  EXPECT_EQ(held.data, Payload(kStream, 5));
}

TEST_F(RetentionTest, ConsumersResumeAtTheFirstRetainedEntryWithTheSkipCounted) {
  Config cfg = Cfg();
  cfg.retention.max_shard_bytes = 2 * kSegmentBytes;
  auto c = Open(cfg);
  Fill(c.get(), kStream, 2000);
  auto k = Consumer::Open(c.get(), "billing");
  ASSERT_TRUE(k.ok());
  std::vector<Message> got;
  ASSERT_OK((*k)->Read(kStream, 1, &got));
  ASSERT_EQ(got.size(), 1u);
  ASSERT_OK((*k)->Ack(got));  // committed 1

  Pass(c.get());
  const uint64_t first = comet_test::SegmentBase(Segments().front());
  ASSERT_GT(first, 1u);
  ASSERT_OK((*k)->Read(kStream, 10, &got));
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got[0].id.entry, first);
  EXPECT_EQ(got[0].data, Payload(kStream, first));
  ASSERT_OK((*k)->Ack(got));
  ASSERT_OK((*k)->Close());
  const comet::GroupLosses l = Losses("billing");
  EXPECT_EQ(l.retention_lost, first - 1);
  EXPECT_EQ(l.skipped, first - 1);
  auto stats = comet::ReadStats(dir_);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->retention.entries, first);
  EXPECT_EQ(stats->streams.at(0).retained_from, first);
  EXPECT_TRUE(comet_test::Contains(comet::FormatStatsText(*stats), "group billing"));
}

// Writer threads append, reader threads read by id and scan, a thread runs passes, and a
// read-only process scans from outside: every read returns its own payload or NOT_FOUND.
TEST_F(RetentionTest, ConcurrentReadersAndWritersSeeNothingButNotFound) {
  Config cfg = Cfg();
  cfg.retention.max_shard_bytes = 3 * kSegmentBytes;
  auto c = Open(cfg);
  const std::vector<std::string> streams = {"logs:shard:0000", "logs:shard:0001"};
  constexpr uint64_t kEntries = 20000;
  for (const auto& s : streams) Fill(c.get(), s, 1);
  std::atomic<bool> done{false};
  std::atomic<uint64_t> errors{0}, reads{0};
  auto bad = [&](const Status& st, const std::string& what) {
    if (st.ok() || st.IsNotFound()) return false;
    ADD_FAILURE() << what << ": " << st.ToString();
    errors++;
    return true;
  };
  std::vector<std::thread> threads;
  for (const auto& s : streams) {
    threads.emplace_back([&, s] { Fill(c.get(), s, kEntries - 1, 1); });
    threads.emplace_back([&, s] {
      std::mt19937_64 rng(7);
      while (!done.load()) {
        uint64_t n = *c->Length(s);
        Entry e;
        uint64_t i = rng() % n;
        Status st = c->Read(s, i, &e);
        if (bad(st, "read")) return;
        if (st.ok() && e.data != Payload(s, i)) {
          ADD_FAILURE() << s << " entry " << i << " read another payload";
          return;
        }
        reads++;
      }
    });
    threads.emplace_back([&, s] {
      auto it = c->Scan(s, 0);
      while (!done.load() || it->position() < kEntries) {
        Entry e;
        const uint64_t at = it->position();
        Status st = it->Next(&e);
        if (bad(st, "scan")) return;
        if (st.ok() && e.data != Payload(s, at)) {
          ADD_FAILURE() << s << " scan at " << at << " read another payload";
          return;
        }
        if (st.IsNotFound() && it->position() == at && at >= kEntries) break;
      }
    });
  }
  // A process of its own scans through a read-only client while the directory shrinks.
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t child = fork();
  if (child == 0) {
    close(pipefd[0]);
    Config ro = Cfg();
    ro.open.read_only = true;
    auto rc = Client::Open(dir_, ro);
    int fails = rc.ok() ? 0 : 1;
    for (int round = 0; rc.ok() && round < 20 && !fails; round++) {
      auto it = (*rc)->Scan(kStream, 0);
      for (int i = 0; i < 2000 && it.ok(); i++) {
        Entry e;
        const uint64_t at = it->position();
        Status st = it->Next(&e);
        if (!st.ok() && !st.IsNotFound()) fails++;
        if (st.ok() && e.data != Payload(kStream, at)) fails++;
      }
    }
    (void)!write(pipefd[1], &fails, sizeof fails);
    _exit(0);
  }
  close(pipefd[1]);
  uint64_t passes = 0;
  while (*c->Length(streams[0]) < kEntries || *c->Length(streams[1]) < kEntries) {
    auto r = c->RunRetention();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    passes++;
  }
  int child_fails = -1;
  EXPECT_TRUE(comet_test::ReadFull(pipefd[0], &child_fails, sizeof child_fails, 120000));
  close(pipefd[0]);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_EQ(child_fails, 0);
  Pass(c.get());
  done = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_LE(Bytes(0), cfg.retention.max_shard_bytes);
  EXPECT_GT(passes, 0u);
  ASSERT_OK(c->Close());
  comet_test::ToolRun v = comet_test::RunTool("verify " + dir_, dir_);
  EXPECT_EQ(v.status, 0) << v.out << v.err;
  std::printf("  %llu passes beside %llu random reads\n", static_cast<unsigned long long>(passes),
              static_cast<unsigned long long>(reads.load()));
}

// The index-write handshake: the writer's maintainer stops just before it writes the first
// sealed segment's index file, until the test has run a pass that deletes that segment.
std::atomic<int> g_index_stage{0};  // 1: the writer is at the index write; 2: go on
void StopBeforeIndexWrite(uint64_t base) {
  if (base != 0) return;
  g_index_stage.store(1);
  while (g_index_stage.load() != 2) std::this_thread::yield();
}

// A pass that deletes a sealed segment while its writer is about to write the segment's index
// file leaves no index behind for it (the writer checks retained_from after the write).
TEST_F(RetentionTest, AnIndexWrittenForADeletedSegmentDoesNotOutliveIt) {
  Config cfg = Cfg();
  cfg.retention.max_shard_bytes = 3 * kSegmentBytes;
  g_index_stage.store(0);
  comet::internal::SetIndexWriteHook(StopBeforeIndexWrite);
  struct Unhook {
    ~Unhook() {
      g_index_stage.store(2);
      comet::internal::SetIndexWriteHook(nullptr);
    }
  } unhook;
  auto c = Open(cfg);
  Fill(c.get(), kStream, 700);  // five segments or more
  const int64_t deadline = comet_test::MonotonicNs() + 30'000'000'000;
  while (g_index_stage.load() != 1 && comet_test::MonotonicNs() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(g_index_stage.load(), 1) << "the writer never came to write the first index file";
  EXPECT_GE(Pass(c.get()).segments, 1u);
  ASSERT_GT(comet_test::SegmentBase(Segments().front()), 0u) << "the first segment is deleted";
  g_index_stage.store(2);
  ASSERT_OK(c->Close());  // joins the maintainer: its index write is done
  const std::vector<std::string> idx = comet_test::ListFilesRecursive(dir_, ".idx");
  EXPECT_FALSE(idx.empty()) << "the sealed segments that remain have their index files";
  for (const std::string& i : idx) {
    EXPECT_TRUE(comet_test::FileExists(i.substr(0, i.size() - 4) + ".seg"))
        << i << " outlived its segment";
  }
}

// ---- crashes ---------------------------------------------------------------------------------

// The child's side of the kill handshake: at its k-th deletion (retained_from raised, the file
// not yet unlinked) it tells the parent, which kills it a random few microseconds later, while
// the pass goes on; or, with g_stop_there, while it waits right there.
int g_kill_pipe = -1;
uint64_t g_kill_at = 0;
bool g_stop_there = false;
void TellAtDeletion(uint64_t deleted) {
  if (deleted != g_kill_at) return;
  char b = 1;
  (void)!write(g_kill_pipe, &b, 1);
  if (g_stop_there) pause();
}

// A process runs a pass that deletes many segments and is SIGKILLed in the middle of it (at a
// random deletion, a random few microseconds after its handshake: between raising the shard's
// retained_from and unlinking, between unlinking a segment and its index, between segments); the
// directory then opens with dense numbering from a reported first entry and verifies clean.
TEST_F(RetentionTest, SigkillDuringAPassLeavesADenseDirectory) {
  std::mt19937_64 rng(42);
  Config cfg = Cfg();
  cfg.storage.max_segment_bytes = 4096;
  constexpr int kRounds = 12;
  uint64_t next = 0;
  int cut = 0;    // rounds whose pass was killed before it finished
  int ahead = 0;  // ... between raising retained_from and unlinking the segment
  for (int round = 0; round < kRounds && !HasFailure(); round++) {
    SCOPED_TRACE("round " + std::to_string(round));
    {
      auto c = Open(cfg);
      Fill(c.get(), kStream, 2000, next);
      next += 2000;
    }
    const size_t before = Segments().size();
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    g_kill_at = rng() % (before - 8);
    g_stop_there = round % 3 == 0 || round == kRounds - 1;
    pid_t pid = fork();
    if (pid == 0) {
      close(ready[0]);
      g_kill_pipe = ready[1];
      comet::internal::SetRetentionDeleteHook(TellAtDeletion);
      Config k = cfg;
      k.retention.max_shard_bytes = 4 * 4096;
      auto c = Client::Open(dir_, k);
      if (c.ok()) (void)(*c)->RunRetention();
      pause();  // stays until killed
      _exit(0);
    }
    close(ready[1]);
    char b;
    ASSERT_TRUE(comet_test::ReadFull(ready[0], &b, 1, 30000));
    close(ready[0]);
    // The kill instant: a random spin, not a synchronisation.
    const int64_t until = comet_test::MonotonicNs() + static_cast<int64_t>(rng() % 40) * 1000;
    while (comet_test::MonotonicNs() < until) {
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status));

    auto c = Open(cfg);
    auto info = c->Inspect(kStream);
    ASSERT_TRUE(info.ok());
    std::vector<std::string> segs = Segments();
    ASSERT_FALSE(segs.empty());
    if (segs.size() > 4) cut++;
    if (info->first.entry > comet_test::SegmentBase(segs.front())) ahead++;
    EXPECT_GE(info->first.entry, comet_test::SegmentBase(segs.front()));
    ExpectDenseFrom(c.get(), info->first.entry, next);
    ASSERT_OK(c->Close());
    comet_test::ToolRun v = comet_test::RunTool("verify " + dir_, dir_);
    EXPECT_EQ(v.status, 0) << v.out << v.err;
  }
  std::printf("  %d of %d passes killed before they finished (%d between retained_from and "
              "unlink)\n", cut, kRounds, ahead);
  // The last round's pass stopped between raising retained_from and unlinking: a pass with no
  // limit set completes that deletion, and removes index files left without their segment.
  auto c = Open(cfg);
  const uint64_t first = c->Inspect(kStream)->first.entry;
  ASSERT_GT(first, comet_test::SegmentBase(Segments().front()));
  Pass(c.get());
  EXPECT_EQ(comet_test::SegmentBase(Segments().front()), first);
  for (const std::string& idx : comet_test::ListFilesRecursive(dir_, ".idx")) {
    EXPECT_GE(comet_test::SegmentBase(idx), first) << idx;
  }
  ExpectDenseFrom(c.get(), first, next);
}

// ---- other processes --------------------------------------------------------------------------

// A child process running `body(out, in)`: it reports through `out` and takes commands from `in`.
struct Proc {
  pid_t pid = -1;
  int from = -1, to = -1;  // the parent's ends
};

Proc Spawn(const std::function<int(int out, int in)>& body) {
  int up[2], down[2];
  if (pipe(up) != 0 || pipe(down) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    close(up[0]);
    close(down[1]);
    _exit(body(up[1], down[0]));
  }
  close(up[1]);
  close(down[0]);
  return Proc{pid, up[0], down[1]};
}

template <typename T>
bool Send(int fd, const T& v) {
  return comet_test::WriteFull(fd, &v, sizeof v);
}
template <typename T>
bool Recv(const Proc& p, T* v, int timeout_ms = 60000) {
  return comet_test::ReadFull(p.from, v, sizeof *v, timeout_ms);
}

// Waits for the child and returns its exit code (-1 if it did not exit normally).
int Reap(Proc* p) {
  int status = 0;
  if (p->pid > 0 && waitpid(p->pid, &status, 0) != p->pid) status = -1;
  close(p->from);
  close(p->to);
  p->pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Whether /proc/locks shows a blocked lock request on byte `byte` of the file with inode `ino`
// (a process waiting in F_OFD_SETLKW: "N: -> OFDLCK ADVISORY WRITE -1 MAJ:MIN:INODE START END").
bool LockRequestBlocked(ino_t ino, int byte) {
  const std::string locks = comet_test::ReadFile("/proc/locks");
  const std::string key = ":" + std::to_string(ino) + " " + std::to_string(byte) + " ";
  size_t at = 0;
  while ((at = locks.find(key, at)) != std::string::npos) {
    const size_t line = locks.rfind('\n', at);
    const std::string head = locks.substr(line == std::string::npos ? 0 : line + 1, at);
    if (head.find("->") != std::string::npos && head.find("OFDLCK") != std::string::npos) {
      return true;
    }
    at += key.size();
  }
  return false;
}

// The deletion hook of a process whose pass must stop in the middle: at its first deletion it
// says so on g_hook_out and waits for a byte on g_hook_in.
int g_hook_out = -1, g_hook_in = -1;
void StopAtFirstDeletion(uint64_t deleted) {
  if (deleted != 0) return;
  char b = 'd';
  (void)!write(g_hook_out, &b, 1);
  (void)!read(g_hook_in, &b, 1);
}

// Two processes run retention at once: the second waits on the directory's lock while the first
// is in the middle of its pass (seen in /proc/locks, not guessed by a sleep), deletes nothing
// meanwhile, and runs its own pass, which finds nothing left, once the first has finished.
TEST_F(RetentionTest, OnePassRunsAtATimeAcrossProcesses) {
  Config cfg = Cfg();
  {
    auto c = Open(cfg);
    Fill(c.get(), kStream, 2000);
  }
  const size_t before = Segments().size();
  cfg.concurrency.mode = comet::ConcurrencyMode::kMulti;
  cfg.retention.max_shard_bytes = 3 * kSegmentBytes;
  // Each process runs one pass; its hook tells of every deletion (the first one stops the pass
  // of the process told to, until the parent lets it go on).
  auto pass = [&](bool stop) {
    return [&, stop](int out, int in) -> int {
      g_hook_out = out;
      g_hook_in = in;
      comet::internal::SetRetentionDeleteHook(stop ? StopAtFirstDeletion : +[](uint64_t) {
        char b = 'd';
        (void)!write(g_hook_out, &b, 1);
      });
      auto c = Client::Open(dir_, cfg);
      if (!c.ok()) return 2;
      char ready = 'r';
      if (!Send(out, ready)) return 3;
      auto r = (*c)->RunRetention();
      if (!r.ok()) return 4;
      char done = 'f';
      if (!Send(out, done) || !Send(out, r->segments)) return 5;
      return (*c)->Close().ok() ? 0 : 6;
    };
  };
  Proc a = Spawn(pass(true));
  char msg = 0;
  ASSERT_TRUE(Recv(a, &msg) && msg == 'r');
  ASSERT_TRUE(Recv(a, &msg) && msg == 'd') << "the first pass deleted nothing";
  const size_t held = Segments().size();

  Proc b = Spawn(pass(false));
  ASSERT_TRUE(Recv(b, &msg) && msg == 'r');
  struct stat lock_file {};
  ASSERT_EQ(stat((dir_ + "/comet.lock").c_str(), &lock_file), 0);
  // Until the second process waits for the lock, nothing may come from it (a byte would be a
  // deletion or the end of its pass).
  bool blocked = false;
  const int64_t deadline = comet_test::MonotonicNs() + 30'000'000'000;
  while (!blocked && comet_test::MonotonicNs() < deadline) {
    pollfd p{b.from, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 1), 0) << "the second process deleted or finished while the first "
                                    "process's pass was in progress";
    blocked = LockRequestBlocked(lock_file.st_ino, 3);
  }
  ASSERT_TRUE(blocked) << "the second pass never waited for the lock";
  EXPECT_EQ(Segments().size(), held);

  ASSERT_TRUE(Send(a.to, msg));  // the first pass goes on
  uint64_t deleted_a = 0, deleted_b = 0;
  while (Recv(a, &msg) && msg == 'd') {
  }
  ASSERT_EQ(msg, 'f');
  ASSERT_TRUE(Recv(a, &deleted_a));
  ASSERT_TRUE(Recv(b, &msg));
  EXPECT_EQ(msg, 'f') << "the second pass deleted what the first left";
  ASSERT_TRUE(Recv(b, &deleted_b));
  EXPECT_EQ(Reap(&a), 0);
  EXPECT_EQ(Reap(&b), 0);
  EXPECT_EQ(deleted_a, before - Segments().size());
  EXPECT_EQ(deleted_b, 0u);
  EXPECT_EQ(comet::ReadStats(dir_)->retention.passes, 2u);
  EXPECT_LE(Bytes(), cfg.retention.max_shard_bytes);
}

// retention.min_free_bytes alone, on a small tmpfs: a pass in a process of its own deletes the
// oldest segments until the file system has the free space asked for, and no more than that.
TEST_F(RetentionTest, MinFreeBytesAloneFreesTheFileSystemDownToTheFloor) {
  comet_test::SmallTmpfs fs(Sub("fs"), "8m");
  if (!fs.mounted()) GTEST_SKIP() << fs.why_not();
  const std::string data = fs.path() + "/data";
  Config cfg = Cfg();
  {
    auto c = Client::Open(data, cfg);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    Fill(c->get(), kStream, 30000);
    ASSERT_OK((*c)->Close());
  }
  const size_t before = comet_test::ListSegments(data, 0, 0).size();
  auto free_bytes = [&] {
    struct statvfs st {};
    EXPECT_EQ(statvfs(fs.path().c_str(), &st), 0);
    return uint64_t{st.f_bavail} * st.f_frsize;
  };
  const uint64_t floor = free_bytes() + (1 << 20);
  comet_test::ToolRun r = comet_test::RunTool(
      "retention " + data + " -c storage.max_segment_bytes=16KiB -c retention.min_free_bytes=" +
          std::to_string(floor),
      dir_);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(comet_test::Contains(r.out, "free disk space below retention.min_free_bytes"))
      << r.out;
  const uint64_t now_free = free_bytes();
  EXPECT_GE(now_free, floor);
  // The last deletion crossed the floor: one segment, plus the page each deleted segment's
  // size was rounded up to and the page of its index file.
  const size_t after = comet_test::ListSegments(data, 0, 0).size();
  EXPECT_LT(now_free, floor + kSegmentBytes + (before - after) * 2 * 4096);
  EXPECT_GT(before - after, (1u << 20) / kSegmentBytes / 2);
  auto c = Client::Open(data, cfg);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const uint64_t first = comet_test::SegmentBase(comet_test::ListSegments(data, 0, 0).front());
  ASSERT_GT(first, 0u);
  Entry e;
  EXPECT_TRUE((*c)->Read(kStream, first - 1, &e).IsNotFound());
  ASSERT_OK((*c)->Read(kStream, first, &e));
  EXPECT_EQ(e.data, Payload(kStream, first));
  ASSERT_OK((*c)->Close());
}

// A 100-byte payload that says which writer appended it and its sequence number there, the
// rest filled with a letter of both: a reader checks any entry on its own.
std::string WriterPayload(uint32_t writer, uint64_t seq) {
  std::string p = "w" + std::to_string(writer) + "#" + std::to_string(seq) + " ";
  p.resize(100, char('a' + (writer * 7 + seq) % 26));
  return p;
}
bool WellFormed(std::string_view p) {
  unsigned writer = 0;
  unsigned long long seq = 0;
  if (p.size() != 100 || std::sscanf(std::string(p).c_str(), "w%u#%llu ", &writer, &seq) != 2) {
    return false;
  }
  return p == WriterPayload(writer, seq);
}

// Retention passes in this process while two multi-mode writer processes append to shards of
// one prefix and a reader process scans and reads them: nobody sees an error but NOT_FOUND,
// no entry reads as another, and after a last pass every shard is within its size limit.
TEST_F(RetentionTest, PassesBesideTwoWriterProcessesAndAReaderProcess) {
  constexpr uint32_t kShards = 4;
  constexpr uint64_t kPerWriter = 20000;
  Config cfg = Cfg();
  cfg.concurrency.mode = comet::ConcurrencyMode::kMulti;
  cfg.retention.max_shard_bytes = 3 * kSegmentBytes;
  auto c = Open(cfg);
  ASSERT_NE(c, nullptr);

  auto writer = [&](uint32_t w) {
    return [&, w](int out, int) -> int {
      auto wc = Client::Open(dir_, cfg);
      if (!wc.ok()) return 2;
      uint64_t errors = 0;
      for (uint64_t i = 0; i < kPerWriter && errors == 0; i++) {
        for (int attempt = 0;; attempt++) {
          auto name = (*wc)->PickStream("mp", "k" + std::to_string(i), kShards);
          Status st = name.ok() ? (*wc)->Append(*name, WriterPayload(w, i)) : name.status();
          if (st.ok()) break;
          if (!st.IsNotOwner() || attempt > 5000) {
            std::fprintf(stderr, "writer %u entry %llu: %s\n", w, (unsigned long long)i,
                         st.ToString().c_str());
            errors++;
            break;
          }
          usleep(200);  // membership moving shards between processes
        }
      }
      if (!Send(out, errors)) return 3;
      return (*wc)->Close().ok() ? 0 : 4;
    };
  };
  auto reader = [&](int out, int in) -> int {
    Config ro = Cfg();
    ro.open.read_only = true;
    auto rc = Client::Open(dir_, ro);
    if (!rc.ok()) return 2;
    uint64_t errors = 0, reads = 0;
    std::mt19937_64 rng(11);
    auto check = [&](const Status& st, const Entry& e, const std::string& what) {
      if (st.ok() && WellFormed(e.data)) {
        reads++;
      } else if (!st.IsNotFound()) {
        std::fprintf(stderr, "reader %s: %s\n", what.c_str(),
                     st.ok() ? "another payload" : st.ToString().c_str());
        errors++;
      }
    };
    for (bool stop = false; !stop && errors == 0;) {
      pollfd p{in, POLLIN, 0};
      stop = poll(&p, 1, 0) > 0;  // one more round after the parent says stop
      for (uint32_t s = 0; s < kShards; s++) {
        const std::string name = comet::ShardStreamName("mp", s);
        auto it = (*rc)->Scan(name, 0);
        if (!it.ok()) continue;  // not created yet
        for (int i = 0; i < 3000; i++) {
          Entry e;
          const uint64_t at = it->position();
          Status st = it->Next(&e);
          check(st, e, name + " scan at " + std::to_string(at));
          if (st.IsNotFound() && it->position() == at) break;
        }
        auto len = (*rc)->Length(name);
        if (len.ok() && *len > 0) {
          Entry e;
          const uint64_t i = rng() % *len;
          check((*rc)->Read(name, i, &e), e, name + " read of " + std::to_string(i));
        }
      }
    }
    if (!Send(out, errors) || !Send(out, reads)) return 3;
    return 0;
  };
  // A child that died must fail the test, not end it with SIGPIPE.
  struct IgnoreSigpipe {
    void (*was)(int) = signal(SIGPIPE, SIG_IGN);
    ~IgnoreSigpipe() { signal(SIGPIPE, was); }
  } ignore_sigpipe;
  Proc w0 = Spawn(writer(0)), w1 = Spawn(writer(1)), rd = Spawn(reader);
  uint64_t passes = 0, deleted = 0, werr0 = ~0ull, werr1 = ~0ull;
  // Passes until both writers are done (each reports once, at its end).
  for (bool done0 = false, done1 = false; !(done0 && done1);) {
    auto r = c->RunRetention();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    passes++;
    deleted += r->segments;
    pollfd p[2] = {{w0.from, POLLIN, 0}, {w1.from, POLLIN, 0}};
    if (poll(p, 2, 0) > 0) {
      if (!done0 && p[0].revents) done0 = Recv(w0, &werr0);
      if (!done1 && p[1].revents) done1 = Recv(w1, &werr1);
    }
  }
  char stop = 's';
  EXPECT_TRUE(Send(rd.to, stop));
  uint64_t rerr = ~0ull, reads = 0;
  EXPECT_TRUE(Recv(rd, &rerr) && Recv(rd, &reads));
  EXPECT_EQ(Reap(&w0), 0);
  EXPECT_EQ(Reap(&w1), 0);
  EXPECT_EQ(Reap(&rd), 0) << "the reader process died";
  EXPECT_EQ(werr0, 0u);
  EXPECT_EQ(werr1, 0u);
  EXPECT_EQ(rerr, 0u);
  EXPECT_GT(reads, 0u);
  EXPECT_GT(deleted, 0u);
  ASSERT_OK(c->Close());
  c = Open(cfg);  // knows every stream the writers made
  ASSERT_NE(c, nullptr);
  Pass(c.get());
  uint64_t total = 0;
  for (uint32_t s = 0; s < kShards; s++) {
    auto info = c->Inspect(comet::ShardStreamName("mp", s));
    if (info.status().IsNotFound()) continue;  // a shard no writer held
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    total += info->next_entry;
    uint64_t bytes = 0;
    for (const std::string& f : comet_test::ListSegments(dir_, info->first.prefix_id, s)) {
      bytes += comet_test::FileSize(f);
    }
    EXPECT_LE(bytes, cfg.retention.max_shard_bytes) << "shard " << s;
    EXPECT_TRUE(info->gaps.empty());
  }
  EXPECT_EQ(total, 2 * kPerWriter);
  ASSERT_OK(c->Close());
  comet_test::ToolRun v = comet_test::RunTool("verify " + dir_, dir_);
  EXPECT_EQ(v.status, 0) << v.out << v.err;
  std::printf("  %llu passes deleted %llu segments beside %llu reads\n",
              (unsigned long long)passes, (unsigned long long)deleted, (unsigned long long)reads);
}

// ---- background passes, configuration, the tool -----------------------------------------------

TEST_F(RetentionTest, TheBackgroundPassRunsEveryInterval) {
  Config cfg = Cfg();
  cfg.retention.max_shard_bytes = 2 * kSegmentBytes;
  cfg.retention.interval_ns = 1'000'000;
  auto c = Open(cfg);
  Fill(c.get(), kStream, 2000);
  // The handshake: the directory's pass counter, which the maintainer bumps after each pass.
  const int64_t deadline = comet_test::MonotonicNs() + 30'000'000'000;
  while (Bytes() > cfg.retention.max_shard_bytes && comet_test::MonotonicNs() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_LE(Bytes(), cfg.retention.max_shard_bytes);
  EXPECT_GT(comet::ReadStats(dir_)->retention.passes, 0u);
}

TEST(RetentionConfig, BadValuesAreRefusedWithTheirKey) {
  Config c;
  Status bad = c.Set("retention.max_age", "soon");
  EXPECT_TRUE(bad.code() == comet::Code::kInvalid && comet_test::Contains(bad.message(), "retention.max_age"))
      << bad.ToString();
  EXPECT_EQ(c.retention.max_age_ns, 0u) << "nothing is deleted unless a limit is set";
  ASSERT_TRUE(c.Set("retention.max_age", "7d").ok());
  EXPECT_EQ(c.retention.max_age_ns, 7ull * 86400 * 1'000'000'000);
  ASSERT_TRUE(c.Set("retention.max_shard_bytes", "1GiB").ok());
  EXPECT_EQ(c.retention.max_shard_bytes, 1ull << 30);
  Status st = c.Set("retention.min_segments", "0");
  EXPECT_TRUE(st.code() == comet::Code::kInvalid && comet_test::Contains(st.message(), "retention.min_segments"))
      << st.ToString();
  st = c.Set("retention.interval", "5us");
  EXPECT_TRUE(st.code() == comet::Code::kInvalid && comet_test::Contains(st.message(), "retention.interval"))
      << st.ToString();
  ASSERT_TRUE(c.Set("retention.interval", "0").ok());

  Config small;
  small.retention.max_shard_bytes = small.storage.max_segment_bytes - 1;
  st = small.Validate();
  EXPECT_TRUE(st.code() == comet::Code::kInvalid && comet_test::Contains(st.message(), "retention.max_shard_bytes"))
      << st.ToString();
  Config force;
  force.retention.max_age_ns = 10;
  force.retention.force_delete_after_ns = 5;
  st = force.Validate();
  EXPECT_TRUE(st.code() == comet::Code::kInvalid &&
              comet_test::Contains(st.message(), "retention.force_delete_after"))
      << st.ToString();
  EXPECT_TRUE(Config().Validate().ok());
}

TEST_F(RetentionTest, CometRetentionRunsAPassNow) {
  {
    auto c = Open(Cfg());
    Fill(c.get(), kStream, 2000);
  }
  const size_t before = Segments().size();
  comet_test::ToolRun r = comet_test::RunTool(
      "retention " + dir_ + " -c storage.max_segment_bytes=16KiB -c retention.max_shard_bytes=48KiB",
      dir_);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(comet_test::Contains(r.out, "over retention.max_shard_bytes")) << r.out;
  EXPECT_TRUE(comet_test::Contains(r.out, "deleted " + std::to_string(before - 3) + " segments"))
      << r.out;
  EXPECT_EQ(Segments().size(), 3u);
  EXPECT_LE(Bytes(), 48u << 10);
  comet_test::ToolRun v = comet_test::RunTool("verify " + dir_, dir_);
  EXPECT_EQ(v.status, 0) << v.out << v.err;

  r = comet_test::RunTool("retention " + dir_ + " -c retention.min_segments=0", dir_);
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(comet_test::Contains(r.err, "retention.min_segments")) << r.err;
  r = comet_test::RunTool("retention " + Sub("missing"), dir_);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(comet_test::Contains(r.err, "no data directory")) << r.err;
  EXPECT_FALSE(comet_test::FileExists(Sub("missing")));
  // A live writer holds the directory, and runs retention itself.
  auto c = Open(Cfg());
  r = comet_test::RunTool("retention " + dir_, dir_);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(comet_test::Contains(r.err, "runs retention itself")) << r.err;
}

}  // namespace
