// A batch is all or nothing across a crash, and a crash leaves dense numbering: batches cut
// short on purpose (bytes of the records that would not have been written yet are zeroed and the
// control region is put back to what it said before the batch), then real writer processes
// SIGKILLed at random instants during multi-entry and multi-segment batches.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/format.h"
#include "comet/status.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Code;
using comet::Config;
using comet::Entry;
using comet::EntryId;
using comet::Status;
namespace format = comet::format;

constexpr uint64_t kSegHdr = format::kSegmentHeaderSize;
constexpr uint64_t kRecHdr = format::kRecordHeaderSize;
constexpr uint64_t kSegmentBytes = 64 << 10;
const char* const kStream = "batch:shard:0000";

Config Cfg(comet::SyncMode mode) {
  Config c;
  c.storage.max_segment_bytes = kSegmentBytes;
  c.storage.prefault_bytes = 0;
  c.sync.mode = mode;
  return c;
}

// An entry that says which batch it belongs to, where, and what the rest of it must be:
// [u64 batch][u32 index][u32 batch size][bytes derived from the three].
std::string BatchEntry(uint64_t batch, uint32_t index, uint32_t n, size_t len) {
  std::string s = comet_test::RandomBytes(batch * 64 + index, len);
  format::store64(s.data(), batch);
  format::store32(s.data() + 8, index);
  format::store32(s.data() + 12, n);
  return s;
}

struct Parsed {
  uint64_t batch = 0;
  uint32_t index = 0, n = 0;
};

bool ParseEntry(std::string_view e, Parsed* p) {
  if (e.size() < 16) return false;
  p->batch = format::load64(e.data());
  p->index = format::load32(e.data() + 8);
  p->n = format::load32(e.data() + 12);
  return e == BatchEntry(p->batch, p->index, p->n, e.size());
}

// The three kinds of batch the writers below append: five 4 KiB entries (several records of one
// batch), or small + larger-than-a-segment + small (several new segments for one batch).
std::vector<std::string> MakeBatch(uint64_t batch) {
  std::vector<std::string> b;
  if (batch % 2 == 0) {
    for (uint32_t i = 0; i < 5; i++) b.push_back(BatchEntry(batch, i, 5, 4096));
  } else {
    b.push_back(BatchEntry(batch, 0, 3, 100));
    b.push_back(BatchEntry(batch, 1, 3, kSegmentBytes + 6000));
    b.push_back(BatchEntry(batch, 2, 3, 100));
  }
  return b;
}

Status AppendBatch(Client* c, uint64_t batch, EntryId* first) {
  std::vector<std::string> b = MakeBatch(batch);
  std::vector<std::string_view> views(b.begin(), b.end());
  std::vector<EntryId> ids(b.size());
  Status st = c->Append(kStream, std::span<const std::string_view>(views), ids.data());
  if (st.ok()) *first = ids[0];
  return st;
}

// The shard slot of (prefix id, shard) in the control file: its committed fields are put back
// to what they were before a batch, as if its writer had died before publishing it.
struct Published {
  uint64_t entry, offset, active_base;
};

bool SetPublished(const std::string& dir, uint32_t prefix_id, uint32_t shard, const Published& p) {
  const std::string ctl = dir + "/comet.ctl";
  char h[64];
  if (!comet_test::ReadAt(ctl, 0, h, sizeof h)) return false;
  const uint32_t max_shards = format::load32(h + 20);
  const uint64_t table = format::load64(h + 48);
  for (uint32_t i = 0; i < max_shards; i++) {
    const uint64_t slot = table + uint64_t{i} * sizeof(format::ShardSlot);
    char id[12];
    if (!comet_test::ReadAt(ctl, slot, id, sizeof id)) return false;
    if (format::load32(id) != 1 || format::load32(id + 4) != prefix_id || format::load32(id + 8) != shard) {
      continue;
    }
    char v[24];
    format::store64(v, p.entry);
    format::store64(v + 8, p.offset);
    format::store64(v + 16, p.active_base);
    return comet_test::PatchFile(ctl, slot + offsetof(format::ShardSlot, committed_entry), v, 24);
  }
  return false;
}

}  // namespace

class BatchCrashTest : public comet_test::TempDirTest {
 protected:
  void KillLoop(comet::SyncMode mode, int rounds, uint64_t seed);

  // Appends the given batches with one writer, closes it, and returns the segment files.
  std::vector<std::string> WriteBatches(const Config& cfg, std::initializer_list<uint64_t> batches) {
    auto c = Open(cfg);
    if (!c) return {};
    EntryId id{};
    for (uint64_t b : batches) EXPECT_TRUE(AppendBatch(c.get(), b, &id).ok());
    EXPECT_TRUE(c->Close().ok());
    prefix_id_ = id.prefix_id;
    return comet_test::ListSegments(dir_, prefix_id_, 0);
  }
  uint32_t prefix_id_ = 0;

  std::unique_ptr<Client> Open(const Config& cfg) {
    auto r = Client::Open(dir_, cfg);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  // Every entry reads back, batches are whole and in order, every batch in `acked` starts at its
  // acknowledged id, there is no gap, and verify finds nothing. Returns the length.
  uint64_t ExpectWholeBatches(Client* c, const std::map<uint64_t, uint64_t>& acked) {
    auto len = c->Length(kStream);
    EXPECT_TRUE(len.ok());
    if (!len.ok()) return 0;
    std::map<uint64_t, uint64_t> first_of;  // batch -> first id
    Parsed open{};
    for (uint64_t i = 0; i < *len; i++) {
      Entry e;
      Status st = c->Read(kStream, i, &e);
      EXPECT_TRUE(st.ok()) << "id " << i << ": " << st.ToString();
      if (!st.ok()) return *len;
      Parsed p;
      EXPECT_TRUE(ParseEntry(e.data, &p)) << "id " << i << " holds a damaged payload";
      if (open.n != 0) {
        EXPECT_TRUE(p.batch == open.batch && p.index == open.index + 1)
            << "id " << i << ": batch " << open.batch << " stops after " << open.index + 1 << " of "
            << open.n << " entries";
      } else {
        EXPECT_EQ(p.index, 0u) << "id " << i << " starts in the middle of batch " << p.batch;
        first_of[p.batch] = i;
      }
      open = p;
      if (p.index + 1 == p.n) open = Parsed{};
    }
    EXPECT_EQ(open.n, 0u) << "the log ends inside batch " << open.batch << " (" << open.index + 1
                          << " of " << open.n << " entries)";
    for (auto [batch, id] : acked) {
      auto it = first_of.find(batch);
      EXPECT_TRUE(it != first_of.end() && it->second == id)
          << "acknowledged batch " << batch << " at id " << id << " is not there";
    }
    auto info = c->Inspect(kStream);
    if (!info.ok() && info.status().IsNotFound() && *len == 0) return 0;  // killed before any
    EXPECT_TRUE(info.ok() && info->gaps.empty())
        << "numbering has a gap: " << (info.ok() && !info->gaps.empty() ? info->gaps[0].first : 0)
        << ".." << (info.ok() && !info->gaps.empty() ? info->gaps[0].second : 0) << "\n"
        << [&] { std::string r; for (auto& l : c->RecoveryReport()) r += l + "\n"; return r; }();
    std::vector<std::string> problems;
    auto bad = c->Verify(&problems);
    EXPECT_TRUE(bad.ok() && *bad == 0 && problems.empty())
        << (problems.empty() ? "" : problems.front());
    return *len;
  }
};

namespace {

// ---- batches cut short on purpose -----------------------------------------------------------

// A 5-entry batch of which only 2 records reached the segment before the writer died: the
// control region still says what it said before the batch. Both records go; numbering goes on
// where the batch began.
TEST_F(BatchCrashTest, BatchCutShortByACrashIsDroppedWhole) {
  const Config cfg = Cfg(comet::SyncMode::kNone);
  // Batch 0: five 4 KiB entries, ids 0..4; batch 2, ids 5..9, is the one cut short below.
  auto segs = WriteBatches(cfg, {0, 2});
  const uint32_t prefix_id = prefix_id_;
  const uint64_t batch_start = kSegHdr + 5 * (kRecHdr + 4096);
  ASSERT_EQ(segs.size(), 1u);
  ASSERT_TRUE(comet_test::ZeroFrom(segs[0], batch_start + 2 * (kRecHdr + 4096)));
  ASSERT_TRUE(SetPublished(dir_, prefix_id, 0, {5, batch_start, 0}));

  for (bool read_only : {true, false}) {
    Config c2 = cfg;
    c2.open.read_only = read_only;
    auto c = Open(c2);
    ASSERT_TRUE(c);
    EXPECT_EQ(ExpectWholeBatches(c.get(), {{0, 0}}), 5u) << (read_only ? "read-only" : "writer");
    if (read_only) continue;
    EntryId id;
    ASSERT_OK(AppendBatch(c.get(), 4, &id));
    EXPECT_EQ(id.entry, 5u);
  }
}

// The same without the control file: the flags alone say the batch was cut short.
TEST_F(BatchCrashTest, BatchCutShortIsDroppedWholeWithoutTheControlFile) {
  const Config cfg = Cfg(comet::SyncMode::kNone);
  auto segs = WriteBatches(cfg, {0, 2});
  ASSERT_EQ(segs.size(), 1u);
  ASSERT_TRUE(comet_test::ZeroFrom(segs[0], kSegHdr + 8 * (kRecHdr + 4096)));  // 3 of batch 2
  ASSERT_EQ(::unlink((dir_ + "/comet.ctl").c_str()), 0);
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  EXPECT_EQ(ExpectWholeBatches(c.get(), {{0, 0}}), 5u);
}

// A batch of small + larger-than-a-segment + small made two new segments before writing. The
// writer died after its first two records: the first sits at the end of the old segment (sealed
// when the batch moved on), the second alone in the first new segment (sealed too), and the
// second new segment is empty. Recovery removes both new segments and re-seals the old one
// before the batch: dense numbering, nothing of the batch left, verify clean.
TEST_F(BatchCrashTest, BatchThatMadeSeveralSegmentsIsDroppedWholeAfterACrash) {
  const Config cfg = Cfg(comet::SyncMode::kNone);
  // Batch 0: ids 0..4 in segment 0; batch 1: ids 5 (segment 0), 6 (segment 6), 7 (segment 7).
  auto segs = WriteBatches(cfg, {0, 1});
  const uint32_t prefix_id = prefix_id_;
  ASSERT_EQ(segs.size(), 3u);
  ASSERT_EQ(comet_test::SegmentBase(segs[2]), 7u);
  ASSERT_TRUE(comet_test::ZeroFrom(segs[2], kSegHdr));  // the last record was never written
  const uint64_t batch_start = kSegHdr + 5 * (kRecHdr + 4096);
  ASSERT_TRUE(SetPublished(dir_, prefix_id, 0, {5, batch_start, 0}));

  {
    Config ro = cfg;
    ro.open.read_only = true;
    auto c = Open(ro);
    ASSERT_TRUE(c);
    EXPECT_EQ(ExpectWholeBatches(c.get(), {{0, 0}}), 5u) << "read-only";
  }
  {
    auto c = Open(cfg);
    ASSERT_TRUE(c);
    EXPECT_EQ(ExpectWholeBatches(c.get(), {{0, 0}}), 5u) << "writer";
    EntryId id;
    ASSERT_OK(AppendBatch(c.get(), 3, &id));
    EXPECT_EQ(id.entry, 5u);
    EXPECT_EQ(ExpectWholeBatches(c.get(), {{0, 0}, {3, 5}}), 8u);
  }
  comet_test::ToolRun v = comet_test::RunTool("verify " + dir_, dir_);
  EXPECT_EQ(v.status, 0) << v.out << v.err;
}

// ---- real crashes ---------------------------------------------------------------------------

// A writer process that appends batches first..first+max-1 and reports each acknowledged batch
// as (batch, first id) on its pipe, then waits to be killed.
pid_t SpawnBatchWriter(const std::string& dir, const Config& cfg, uint64_t first, int max,
                       int* report_fd) {
  int p[2];
  if (pipe(p) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    auto c = Client::Open(dir, cfg);
    if (!c.ok()) _exit(2);
    for (int k = 0; k < max; k++) {
      EntryId id;
      if (!AppendBatch(c->get(), first + k, &id).ok()) _exit(3);
      uint64_t msg[2] = {first + k, id.entry};
      if (!comet_test::WriteFull(p[1], msg, sizeof msg)) _exit(4);
    }
    for (;;) pause();
  }
  close(p[1]);
  *report_fd = p[0];
  return pid;
}

}  // namespace

// Rounds of: a writer appends; it is SIGKILLed after a random number of acknowledged batches
// plus a random few hundred microseconds (often in the middle of one); a new writer recovers
// and everything is checked, and `comet verify` too when a directory is done with (a fresh one
// every 25 rounds bounds the reading).
void BatchCrashTest::KillLoop(comet::SyncMode mode, int rounds, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string dir;
  std::map<uint64_t, uint64_t> acked;
  int cut = 0;
  auto verify = [&] {
    comet_test::ToolRun v = comet_test::RunTool("verify " + dir, dir_);
    EXPECT_EQ(v.status, 0) << dir << ":\n" << v.out << v.err;
  };
  for (int round = 0; round < rounds && !HasFailure(); round++) {
    if (round % 25 == 0) {
      if (round > 0) verify();
      dir = Sub("run" + std::to_string(round));
      acked.clear();
    }
    int fd = -1;
    pid_t pid = SpawnBatchWriter(dir, Cfg(mode), uint64_t(round) * 1000, 12, &fd);
    ASSERT_GT(pid, 0);
    const int wait_acks = static_cast<int>(rng() % 8);
    uint64_t msg[2];
    for (int k = 0; k < wait_acks && comet_test::ReadFull(fd, msg, sizeof msg, 30000); k++) {
      acked[msg[0]] = msg[1];
    }
    // The kill instant: a random spin, not a synchronisation.
    const int64_t until = comet_test::MonotonicNs() + static_cast<int64_t>(rng() % 400) * 1000;
    while (comet_test::MonotonicNs() < until) {
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited with " << WEXITSTATUS(status);
    while (comet_test::ReadFull(fd, msg, sizeof msg, 1000)) acked[msg[0]] = msg[1];
    close(fd);

    auto c = Client::Open(dir, Cfg(mode));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    for (const std::string& line : (*c)->RecoveryReport()) {
      if (line.find("cut short") != std::string::npos) cut++;
    }
    SCOPED_TRACE("round " + std::to_string(round));
    ExpectWholeBatches(c->get(), acked);
  }
  verify();
  std::printf("  %d rounds; %d batches cut short by a kill were dropped whole\n", rounds, cut);
}

namespace {

TEST_F(BatchCrashTest, SigkillDuringBatchesLeavesWholeBatchesAndDenseNumberingSyncNone) {
  KillLoop(comet::SyncMode::kNone, 200, 1);
}

TEST_F(BatchCrashTest, SigkillDuringBatchesLeavesWholeBatchesAndDenseNumberingSyncAlways) {
  KillLoop(comet::SyncMode::kAlways, 100, 2);
}

}  // namespace
