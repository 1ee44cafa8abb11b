// Faults injected through the system-call seam (env.h): the k-th call of a kind fails with a
// chosen errno, or writes short. Appends get a clear error and lose nothing stored, a reopen
// recovers, and retries absorb EINTR and short writes. Also shows that the engine's calls really
// go through the seam, by counting them.
#include <cerrno>
#include <string>
#include <vector>

#include "comet/client.h"
#include "env.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Code;
using comet::Config;
using comet::Entry;
using comet::Status;
using comet::env::Call;
using comet::env::Fault;

constexpr const char* kStream = "fault:shard:0000";

// Every entry's payload names its number, so a lost, repeated or reordered entry shows.
std::string Payload(uint64_t entry) {
  std::string p = "entry " + std::to_string(entry) + " ";
  p.resize(200, 'f');
  return p;
}

class FaultTest : public comet_test::TempDirTest {
 protected:
  void TearDown() override {
    comet::env::ClearFaults();
    TempDirTest::TearDown();
  }

  static Config SmallSegments(const char* sync_mode = "none") {
    Config cfg;
    EXPECT_TRUE(cfg.Set("storage.max_segment_bytes", "64KiB").ok());
    EXPECT_TRUE(cfg.Set("sync.mode", sync_mode).ok());
    return cfg;
  }

  // Appends entry `next` and returns the status.
  static Status AppendNext(Client* c, uint64_t next) {
    const std::string p = Payload(next);
    return c->Append(kStream, p);
  }

  // Every entry of the stream reads back as Payload(its number), and there are `count`.
  void ExpectEntries(Client* c, uint64_t count) {
    auto it = c->Scan(kStream, 0);
    ASSERT_TRUE(it.ok()) << it.status().ToString();
    Entry e;
    uint64_t n = 0;
    Status st;
    while ((st = it->Next(&e)).ok()) {
      ASSERT_EQ(e.id.entry, n);
      ASSERT_EQ(e.data, Payload(n)) << "entry " << n;
      n++;
    }
    EXPECT_TRUE(st.IsNotFound()) << st.ToString();
    EXPECT_EQ(n, count);
  }
};

// A full disk when a new segment is put in place: the append that needed it fails with FULL,
// naming the call and the file, and leaves no entry behind; what was stored before stays
// readable; appends work again once the disk has room; a reopen sees exactly the appended
// entries.
TEST_F(FaultTest, AppendNeedingANewSegmentFailsWithFullAndLosesNothing) {
  uint64_t stored = 0;
  {
    auto c = Client::Open(dir_, SmallSegments());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    for (; stored < 100; stored++) ASSERT_OK(AppendNext(c->get(), stored));
    // Every rename fails from now on: a new segment (spare or not) is renamed into place.
    comet::env::InjectFault({.call = Call::kRename, .nth = 1, .times = 0, .err = ENOSPC});
    Status failed;
    for (int i = 0; i < 1000 && failed.ok(); i++) {
      failed = AppendNext(c->get(), stored);
      if (failed.ok()) stored++;
    }
    ASSERT_EQ(failed.code(), Code::kFull) << failed.ToString();
    EXPECT_NE(failed.message().find("rename"), std::string::npos) << failed.ToString();
    EXPECT_NE(failed.message().find(".seg"), std::string::npos) << failed.ToString();
    EXPECT_GT(stored, 100u);  // the first segment filled before the fault mattered
    // A retry meets the same full disk, and nothing of the failed appends shows.
    EXPECT_EQ(AppendNext(c->get(), stored).code(), Code::kFull);
    EXPECT_EQ(*(*c)->Length(kStream), stored);
    ExpectEntries(c->get(), stored);

    comet::env::ClearFaults();  // room again
    for (int i = 0; i < 50; i++, stored++) ASSERT_OK(AppendNext(c->get(), stored));
    ExpectEntries(c->get(), stored);
    ASSERT_OK((*c)->Close());
  }
  auto c = Client::Open(dir_, SmallSegments());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE((*c)->RecoveryReport().empty());
  ExpectEntries(c->get(), stored);
}

// An I/O error writing back an append with sync.mode=always: Append says so (IO, naming msync
// and the segment), the next append once the device answers again is durable as usual, and a
// reopen has every entry whose append succeeded.
TEST_F(FaultTest, SyncFailureIsReportedToTheAppenderAndTheNextSyncRecovers) {
  uint64_t acked = 0;
  {
    auto c = Client::Open(dir_, SmallSegments("always"));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    for (; acked < 10; acked++) ASSERT_OK(AppendNext(c->get(), acked));
    comet::env::InjectFault({.call = Call::kMsync, .nth = 1, .times = 1, .err = EIO});
    Status failed = AppendNext(c->get(), acked);
    ASSERT_EQ(failed.code(), Code::kIo) << failed.ToString();
    EXPECT_NE(failed.message().find("msync"), std::string::npos) << failed.ToString();
    EXPECT_NE(failed.message().find("Input/output error"), std::string::npos)
        << failed.ToString();
    acked++;  // published before its sync failed: it stays, and the next sync covers it
    EXPECT_EQ(comet::env::CallCount(Call::kMsync), 1u);
    for (int i = 0; i < 10; i++, acked++) ASSERT_OK(AppendNext(c->get(), acked));
    EXPECT_GT(comet::env::CallCount(Call::kMsync), 1u);
    ASSERT_OK((*c)->Close());
  }
  auto c = Client::Open(dir_, SmallSegments("always"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ExpectEntries(c->get(), acked);
}

// A signal interrupting a wait for a lock (EINTR) is not an error: the wait is made again.
TEST_F(FaultTest, InterruptedLockWaitsAreRetried) {
  comet::env::InjectFault({.call = Call::kLock, .nth = 1, .times = 3, .err = EINTR});
  auto c = Client::Open(dir_, SmallSegments());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_GE(comet::env::CallCount(Call::kLock), 4u);  // three interrupted, then granted
  ASSERT_OK(AppendNext(c->get(), 0));
  ASSERT_OK((*c)->Close());
}

// Writes that come back short are resumed: a new stream's PREFIX file, written one byte per
// call, is whole, so a reopen finds the stream by its name.
TEST_F(FaultTest, ShortWritesAreResumedUntilEveryByteIsWritten) {
  {
    auto c = Client::Open(dir_, SmallSegments());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    comet::env::InjectFault(
        {.call = Call::kWrite, .nth = 1, .times = 0, .err = 0, .short_bytes = 1});
    ASSERT_OK(AppendNext(c->get(), 0));
    // One call per byte of "fault" at least, with no error.
    EXPECT_GE(comet::env::CallCount(Call::kWrite), std::string("fault").size());
    comet::env::ClearFaults();
    ASSERT_OK((*c)->Close());
  }
  auto c = Client::Open(dir_, SmallSegments());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->Streams(), std::vector<std::string>{kStream});
  ExpectEntries(c->get(), 1);
}

// A failure to open a file (EIO on the k-th open(2) made while opening the directory and reading
// it) is an IO error naming the file, and changes nothing: the next open finds every entry.
TEST_F(FaultTest, OpenFailingMidwayIsAnErrorAndChangesNothing) {
  uint64_t stored = 0;
  {
    auto c = Client::Open(dir_, SmallSegments());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    for (; stored < 600; stored++) ASSERT_OK(AppendNext(c->get(), stored));  // a few segments
    ASSERT_OK((*c)->Close());
  }
  // Opens the directory and reads it all: the first error, or OK with every entry as appended.
  auto open_and_read = [&]() -> Status {
    auto c = Client::Open(dir_, SmallSegments());
    if (!c.ok()) return c.status();
    auto it = (*c)->Scan(kStream, 0);
    if (!it.ok()) return it.status();
    Entry e;
    uint64_t n = 0;
    Status st;
    while ((st = it->Next(&e)).ok()) {
      EXPECT_EQ(e.data, Payload(n)) << "entry " << n;
      n++;
    }
    if (!st.IsNotFound()) return st;
    EXPECT_EQ(n, stored);
    return (*c)->Close();
  };
  comet::env::CountCalls();
  ASSERT_OK(open_and_read());
  const uint64_t opens = comet::env::CallCount(Call::kOpen);
  ASSERT_GT(opens, 5u);  // the lock, the control region, the segments...
  int refused = 0;
  for (uint64_t k = 1; k <= opens; k++) {
    comet::env::ClearFaults();
    comet::env::InjectFault({.call = Call::kOpen, .nth = k, .times = 1, .err = EIO});
    Status st = open_and_read();
    if (st.ok()) continue;  // an open whose failure has a fallback (e.g. a missing index)
    refused++;
    EXPECT_EQ(st.code(), Code::kIo) << "open #" << k << ": " << st.ToString();
    EXPECT_NE(st.message().find(dir_), std::string::npos) << "open #" << k << ": " << st.ToString();
  }
  EXPECT_GT(refused, 0);
  comet::env::ClearFaults();
  ASSERT_OK(open_and_read());
}

// The engine's system calls go through the seam: opening a directory and rotating segments are
// counted as the calls they make.
TEST_F(FaultTest, TheEngineMakesItsSystemCallsThroughTheSeam) {
  Config cfg = SmallSegments();
  ASSERT_TRUE(cfg.Set("storage.prefault_bytes", "0").ok());
  comet::env::CountCalls();
  auto c = Client::Open(dir_, cfg);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_GT(comet::env::CallCount(Call::kOpen), 0u);
  EXPECT_GT(comet::env::CallCount(Call::kLock), 0u);  // the directory's claim
  EXPECT_GT(comet::env::CallCount(Call::kMap), 0u);   // the control region
  uint64_t n = 0;
  for (; n < 200; n++) ASSERT_OK(AppendNext(c->get(), n));  // the first segment, made
  const uint64_t rotations = (*c)->GetStats().rotations;
  comet::env::CountCalls();
  while ((*c)->GetStats().rotations == rotations) ASSERT_OK(AppendNext(c->get(), n++));
  EXPECT_GE(comet::env::CallCount(Call::kRename), 1u);  // the new segment put in place
  ASSERT_OK((*c)->Close());
}

}  // namespace
