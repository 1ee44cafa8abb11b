// Consumer groups: independent offsets, acks held behind gaps, resets, lag, offsets that survive
// restarts, a deleted or damaged control file, and SIGKILL of a consumer (real processes).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/consumer.h"
#include "comet/format.h"
#include "comet/stats.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Code;
using comet::Config;
using comet::Consumer;
using comet::EntryId;
using comet::Message;
using comet::Status;

std::string Payload(const std::string& stream, uint64_t i) {
  return stream + "#" + std::to_string(i);
}

Config Quiet(comet::SyncMode mode = comet::SyncMode::kNone) {
  Config c;
  c.storage.prefault_bytes = 0;
  c.storage.max_segment_bytes = 1 << 20;
  c.sync.mode = mode;
  return c;
}

class ConsumerTest : public comet_test::TempDirTest {
 protected:
  std::unique_ptr<Client> Open(const Config& cfg = Quiet()) {
    auto r = Client::Open(dir_, cfg);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  static std::unique_ptr<Consumer> Join(Client* c, std::string_view group) {
    auto r = Consumer::Open(c, group);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  // Appends Payload(stream, from..from+n-1).
  static void Fill(Client* c, const std::string& stream, uint64_t n, uint64_t from = 0) {
    for (uint64_t i = from; i < from + n; i++) ASSERT_OK(c->Append(stream, Payload(stream, i)));
  }
  // Reads everything available (no wait) in batches of `batch`, acking each batch if `ack`.
  static std::vector<std::string> Drain(Consumer* k, const std::string& pattern, bool ack = true,
                                        size_t batch = 7) {
    std::vector<std::string> got;
    std::vector<Message> msgs;
    for (;;) {
      Status st = k->Read(pattern, batch, &msgs);
      EXPECT_TRUE(st.ok()) << st.ToString();
      if (!st.ok() || msgs.empty()) break;
      std::vector<EntryId> ids;
      for (const Message& m : msgs) {
        got.emplace_back(m.data);
        ids.push_back(m.id);
      }
      if (ack) EXPECT_OK(k->Ack(ids));
    }
    return got;
  }
  static void EXPECT_OK(const Status& st) { EXPECT_TRUE(st.ok()) << st.ToString(); }
};

std::vector<std::string> Expected(const std::string& stream, uint64_t from, uint64_t to) {
  std::vector<std::string> v;
  for (uint64_t i = from; i < to; i++) v.push_back(Payload(stream, i));
  return v;
}

TEST_F(ConsumerTest, GroupNamesOfOneTo255BytesAreAccepted) {
  auto c = Open();
  for (size_t len : {size_t{0}, size_t{256}, size_t{1000}}) {
    auto r = Consumer::Open(c.get(), std::string(len, 'g'));
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_EQ(r.status().code(), Code::kInvalid) << r.status().ToString();
    EXPECT_NE(r.status().message().find(std::to_string(len) + " bytes"), std::string::npos)
        << r.status().message();
  }
  EXPECT_TRUE(Consumer::Open(c.get(), "g").ok());
  auto longest = Join(c.get(), std::string(255, 'x'));
  ASSERT_TRUE(longest);
  Fill(c.get(), "n:shard:0000", 3);
  EXPECT_EQ(Drain(longest.get(), "n:shard:0000"), Expected("n:shard:0000", 0, 3));
  ASSERT_OK(longest->Close());
  ASSERT_OK(c->Close());
  // The longest name round-trips through its group file.
  ASSERT_TRUE(comet_test::WriteFile(Sub("comet.ctl"), ""));
  c = Open();
  longest = Join(c.get(), std::string(255, 'x'));
  EXPECT_EQ(*longest->Committed("n:shard:0000"), 3u);
}

TEST_F(ConsumerTest, FullGroupTableIsFull) {
  Config cfg = Quiet();
  ASSERT_OK(cfg.Set("consumers.max_groups", "2"));
  auto c = Open(cfg);
  ASSERT_TRUE(Join(c.get(), "a"));
  ASSERT_TRUE(Join(c.get(), "b"));
  ASSERT_TRUE(Join(c.get(), "a")) << "an existing group takes no new slot";
  auto r = Consumer::Open(c.get(), "c");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFull);
  EXPECT_NE(r.status().message().find("consumers.max_groups"), std::string::npos)
      << r.status().message();
}

TEST_F(ConsumerTest, FullOffsetTableIsFullNamingGroupAndStream) {
  Config cfg = Quiet();
  ASSERT_OK(cfg.Set("consumers.max_offsets", "2"));
  auto c = Open(cfg);
  for (int s = 0; s < 3; s++) Fill(c.get(), "f:shard:000" + std::to_string(s), 1);
  auto k = Join(c.get(), "g");
  std::vector<Message> msgs;
  ASSERT_OK(k->Read("f:shard:0000", 10, &msgs));
  ASSERT_OK(k->Read("f:shard:0001", 10, &msgs));
  Status st = k->Read("f:shard:0002", 10, &msgs);
  EXPECT_EQ(st.code(), Code::kFull) << st.ToString();
  EXPECT_NE(st.message().find("f:shard:0002"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("'g'"), std::string::npos) << st.message();
}

TEST_F(ConsumerTest, TwoGroupsEachReceiveAll) {
  auto c = Open();
  Fill(c.get(), "ev:shard:0000", 50);
  Fill(c.get(), "ev:shard:0001", 30);
  auto a = Join(c.get(), "a");
  auto b = Join(c.get(), "b");
  std::multiset<std::string> want;
  for (auto& p : Expected("ev:shard:0000", 0, 50)) want.insert(p);
  for (auto& p : Expected("ev:shard:0001", 0, 30)) want.insert(p);
  for (Consumer* k : {a.get(), b.get()}) {
    std::vector<std::string> got = Drain(k, "ev:shard:*");
    EXPECT_EQ(std::multiset<std::string>(got.begin(), got.end()), want) << k->group();
    EXPECT_EQ(*k->Lag("ev:shard:*"), 0u);
  }
}

TEST_F(ConsumerTest, PatternNeedsTheExactPrefix) {
  auto c = Open();
  Fill(c.get(), "ev:shard:0000", 2);
  Fill(c.get(), "ev:v2:shard:0000", 2);
  Fill(c.get(), "xev:shard:0000", 2);
  auto k = Join(c.get(), "g");
  EXPECT_EQ(Drain(k.get(), "ev:shard:*"), Expected("ev:shard:0000", 0, 2));
  std::vector<Message> msgs;
  for (const char* bad : {"ev:shard:", "ev:*", "*", "ev:shard:00*", ":shard:*"}) {
    Status st = k->Read(bad, 10, &msgs);
    EXPECT_EQ(st.code(), Code::kInvalid) << bad << ": " << st.ToString();
  }
  // A pattern that matches nothing yet is not an error.
  ASSERT_OK(k->Read("none:shard:*", 10, &msgs));
  EXPECT_TRUE(msgs.empty());
}

TEST_F(ConsumerTest, RestartResumesExactlyAfterTheLastAck) {
  {
    auto c = Open();
    Fill(c.get(), "r:shard:0000", 100);
    auto k = Join(c.get(), "g");
    std::vector<Message> msgs;
    ASSERT_OK(k->Read("r:shard:0000", 40, &msgs));
    ASSERT_EQ(msgs.size(), 40u);
    std::vector<EntryId> ids;
    for (size_t i = 0; i < 37; i++) ids.push_back(msgs[i].id);  // 37..39 delivered, not acked
    ASSERT_OK(k->Ack(ids));
    EXPECT_EQ(*k->Committed("r:shard:0000"), 37u);
    ASSERT_OK(c->Close());
  }
  auto c = Open();
  auto k = Join(c.get(), "g");
  EXPECT_EQ(Drain(k.get(), "r:shard:0000"), Expected("r:shard:0000", 37, 100));
}

TEST_F(ConsumerTest, OutOfOrderAcksNeverCommitPastAGap) {
  auto c = Open();
  Fill(c.get(), "o:shard:0000", 200);
  auto k = Join(c.get(), "g");
  std::vector<Message> msgs;
  ASSERT_OK(k->Read("o:shard:0000", 200, &msgs));
  ASSERT_EQ(msgs.size(), 200u);
  auto ack = [&](uint64_t from, uint64_t to) {
    std::vector<EntryId> ids;
    for (uint64_t i = from; i < to; i++) ids.push_back(msgs[i].id);
    ASSERT_OK(k->Ack(ids));
  };
  ack(5, 150);  // across word boundaries of the window
  EXPECT_EQ(*k->Committed("o:shard:0000"), 0u);
  ack(0, 4);
  EXPECT_EQ(*k->Committed("o:shard:0000"), 4u) << "entry 4 was delivered and not acked";
  ack(151, 200);
  EXPECT_EQ(*k->Committed("o:shard:0000"), 4u);
  ack(4, 5);
  EXPECT_EQ(*k->Committed("o:shard:0000"), 150u);
  ack(150, 151);
  EXPECT_EQ(*k->Committed("o:shard:0000"), 200u);
  ack(0, 200);  // acking again is harmless
  EXPECT_EQ(*k->Committed("o:shard:0000"), 200u);
}

TEST_F(ConsumerTest, AckOfAnEntryNeverDeliveredIsInvalid) {
  auto c = Open();
  Fill(c.get(), "a:shard:0000", 10);
  Fill(c.get(), "b:shard:0000", 10);
  auto k = Join(c.get(), "g");
  std::vector<Message> msgs;
  ASSERT_OK(k->Read("a:shard:0000", 3, &msgs));
  ASSERT_EQ(msgs.size(), 3u);
  EntryId beyond = msgs[2].id;
  beyond.entry = 3;  // stored, not delivered
  Status st = k->Ack(beyond);
  EXPECT_EQ(st.code(), Code::kInvalid) << st.ToString();
  EXPECT_NE(st.message().find("never delivered"), std::string::npos) << st.message();
  // Another stream's id this consumer never read (a different prefix id, same shard number).
  EntryId other;
  ASSERT_OK(c->Append("b:shard:0000", "x", &other));
  other.entry = 0;
  EXPECT_EQ(k->Ack(other).code(), Code::kInvalid);
  // The valid ids of a call with a bad one are still acked.
  std::vector<EntryId> mixed = {msgs[0].id, beyond, msgs[1].id};
  EXPECT_EQ(k->Ack(mixed).code(), Code::kInvalid);
  EXPECT_EQ(*k->Committed("a:shard:0000"), 2u);
}

TEST_F(ConsumerTest, ResetToAnEntryTheBeginningOrNBeforeTheEnd) {
  auto c = Open();
  Fill(c.get(), "z:shard:0000", 50);
  auto k = Join(c.get(), "g");
  ASSERT_EQ(Drain(k.get(), "z:shard:0000").size(), 50u);
  ASSERT_OK(k->Reset("z:shard:0000", Consumer::From::kEntry, 45));
  EXPECT_EQ(*k->Committed("z:shard:0000"), 45u);
  EXPECT_EQ(*k->Lag("z:shard:0000"), 5u);
  EXPECT_EQ(Drain(k.get(), "z:shard:0000"), Expected("z:shard:0000", 45, 50));
  ASSERT_OK(k->Reset("z:shard:*", Consumer::From::kBeforeEnd, 3));
  EXPECT_EQ(Drain(k.get(), "z:shard:0000"), Expected("z:shard:0000", 47, 50));
  ASSERT_OK(k->Reset("z:shard:*", Consumer::From::kBeforeEnd, 1000));
  EXPECT_EQ(*k->Committed("z:shard:0000"), 0u);
  // Delivered before the reset: acking those ids now is not an error and commits nothing.
  std::vector<Message> msgs;
  ASSERT_OK(k->Read("z:shard:0000", 10, &msgs));
  ASSERT_OK(k->Reset("z:shard:0000", Consumer::From::kBeginning));
  ASSERT_OK(k->Ack(msgs[9].id));
  EXPECT_EQ(*k->Committed("z:shard:0000"), 0u);
  // Another consumer of the group follows a reset made by this one.
  auto other = Join(c.get(), "g");
  ASSERT_OK(k->Reset("z:shard:0000", Consumer::From::kEntry, 20));
  EXPECT_EQ(Drain(other.get(), "z:shard:0000"), Expected("z:shard:0000", 20, 50));
  EXPECT_EQ(k->Reset("nothing:shard:*", Consumer::From::kBeginning).code(), Code::kNotFound);
}

TEST_F(ConsumerTest, LagCountsEntriesNotCommitted) {
  auto c = Open();
  Fill(c.get(), "l:shard:0000", 10);
  Fill(c.get(), "l:shard:0001", 4);
  auto k = Join(c.get(), "g");
  EXPECT_EQ(*k->Lag("l:shard:*"), 14u);
  std::vector<Message> msgs;
  ASSERT_OK(k->Read("l:shard:0000", 6, &msgs));
  EXPECT_EQ(*k->Lag("l:shard:*"), 14u) << "delivered is not committed";
  ASSERT_OK(k->Ack(msgs[0].id));
  EXPECT_EQ(*k->Lag("l:shard:*"), 13u);
  EXPECT_EQ(*k->Lag("l:shard:0001"), 4u);
}

TEST_F(ConsumerTest, DamagedEntriesArePassedOverAndCommitted) {
  uint32_t prefix_id = 0;
  {
    auto c = Open();
    EntryId id;
    ASSERT_OK(c->Append("d:shard:0000", Payload("d:shard:0000", 0), &id));
    prefix_id = id.prefix_id;
    Fill(c.get(), "d:shard:0000", 9, 1);
    ASSERT_OK(c->Close());
  }
  // Damage the payload of entry 3 (every record of this stream is 16 + 14 bytes).
  auto segs = comet_test::ListSegments(dir_, prefix_id, 0);
  ASSERT_EQ(segs.size(), 1u);
  ASSERT_TRUE(comet_test::FlipByte(segs[0], comet::format::kSegmentHeaderSize + 3 * 30 + 20));
  auto c = Open();
  auto k = Join(c.get(), "g");
  std::vector<std::string> want = Expected("d:shard:0000", 0, 10);
  want.erase(want.begin() + 3);
  EXPECT_EQ(Drain(k.get(), "d:shard:0000"), want);
  EXPECT_EQ(*k->Committed("d:shard:0000"), 10u);
}

TEST_F(ConsumerTest, WildcardFindsAShardCreatedLater) {
  auto c = Open();
  Fill(c.get(), "w:shard:0000", 2);
  auto k = Join(c.get(), "g");
  EXPECT_EQ(Drain(k.get(), "w:shard:*").size(), 2u);
  Fill(c.get(), "w:shard:0005", 3);
  EXPECT_EQ(Drain(k.get(), "w:shard:*"), Expected("w:shard:0005", 0, 3));
}

TEST_F(ConsumerTest, ABlockedReadWakesOnAnAppend) {
  auto c = Open();
  Fill(c.get(), "b:shard:0000", 1);
  Fill(c.get(), "b:shard:0001", 1);
  auto k = Join(c.get(), "g");
  EXPECT_EQ(Drain(k.get(), "b:shard:*").size(), 2u);
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_OK(c->Append("b:shard:0001", "late"));
  });
  std::vector<Message> msgs;
  ASSERT_OK(k->Read("b:shard:*", 10, &msgs, 60'000'000'000));
  writer.join();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].data, "late");
  EXPECT_EQ(msgs[0].stream, "b:shard:0001");
  // And a read with a short timeout returns empty, not an error.
  ASSERT_OK(k->Ack(msgs[0].id));
  ASSERT_OK(k->Read("b:shard:*", 10, &msgs, 1'000'000));
  EXPECT_TRUE(msgs.empty());
}

// The offsets live in the group files too: a deleted, emptied or damaged control file loses none.
TEST_F(ConsumerTest, OffsetsSurviveTheControlFileDeletedOrDamaged) {
  for (comet::SyncMode mode : {comet::SyncMode::kNone, comet::SyncMode::kInterval,
                               comet::SyncMode::kAlways}) {
    SCOPED_TRACE(static_cast<int>(mode));
    comet_test::RemoveAll(dir_);
    {
      auto c = Open(Quiet(mode));
      Fill(c.get(), "s:shard:0000", 30);
      Fill(c.get(), "s:shard:0001", 30);
      auto k = Join(c.get(), "g");
      auto k2 = Join(c.get(), "h");
      std::vector<Message> msgs;
      ASSERT_OK(k->Read("s:shard:0000", 12, &msgs));
      ASSERT_OK(k->Ack(msgs));
      ASSERT_OK(k->Read("s:shard:0001", 5, &msgs));
      ASSERT_OK(k->Ack(msgs));
      ASSERT_OK(k2->Read("s:shard:0001", 1, &msgs));
      ASSERT_OK(k2->Ack(msgs));
      ASSERT_OK(c->Close());
    }
    for (int damage = 0; damage < 3; damage++) {
      const std::string ctl = Sub("comet.ctl");
      if (damage == 0) {
        ASSERT_EQ(::unlink(ctl.c_str()), 0);
      } else if (damage == 1) {
        ASSERT_TRUE(comet_test::WriteFile(ctl, "junk"));
      } else {
        ASSERT_TRUE(comet_test::FlipByte(ctl, 16));
      }
      auto c = Open(Quiet(mode));
      auto k = Join(c.get(), "g");
      auto k2 = Join(c.get(), "h");
      EXPECT_EQ(*k->Committed("s:shard:0000"), 12u) << damage;
      EXPECT_EQ(*k->Committed("s:shard:0001"), 5u) << damage;
      EXPECT_EQ(*k2->Committed("s:shard:0001"), 1u) << damage;
      EXPECT_EQ(*k2->Committed("s:shard:0000"), 0u) << damage;
      ASSERT_OK(c->Close());
    }
  }
}

TEST_F(ConsumerTest, ADamagedGroupFileIsReportedAndSetAside) {
  {
    auto c = Open();
    Fill(c.get(), "s:shard:0000", 5);
    auto k = Join(c.get(), "g");
    EXPECT_EQ(Drain(k.get(), "s:shard:0000").size(), 5u);
    ASSERT_OK(c->Close());
  }
  auto files = comet_test::ListFilesRecursive(Sub("groups"), ".grp");
  ASSERT_EQ(files.size(), 1u);
  ASSERT_TRUE(comet_test::FlipByte(files[0], 40));
  // With the control file intact, the offsets are still there.
  {
    auto c = Open();
    bool reported = false;
    for (const std::string& line : c->RecoveryReport()) {
      if (line.find(files[0]) != std::string::npos && line.find("CRC") != std::string::npos) {
        reported = true;
      }
    }
    EXPECT_TRUE(reported) << "no report line names " << files[0];
    auto k = Join(c.get(), "g");
    EXPECT_EQ(*k->Committed("s:shard:0000"), 5u);
    ASSERT_OK(c->Close());
  }
  EXPECT_FALSE(comet_test::FileExists(files[0] + ".damaged")) << "aside has a time suffix";
  EXPECT_EQ(comet_test::ListFilesRecursive(Sub("groups"), ".grp").size(), 1u)
      << "closing wrote the group's file again";
}

// ---- real processes, real SIGKILL ------------------------------------------------------------

// Forks a consumer of group "g" that reads exactly `read` entries of `stream`, acks the first
// `acked` of them, says so over a pipe and waits to be killed. Returns its pid once it has acked,
// or -1 (the child reaped) if it failed first.
pid_t StartChildThatAcks(const std::string& dir, const Config& cfg, const std::string& stream,
                         size_t read, size_t acked) {
  int up[2];
  if (pipe(up) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    close(up[0]);
    auto r = Client::Open(dir, cfg);
    if (!r.ok()) _exit(2);
    auto k = Consumer::Open(r->get(), "g");
    if (!k.ok()) _exit(3);
    std::vector<Message> msgs;
    if (!(*k)->Read(stream, read, &msgs).ok() || msgs.size() != read) _exit(4);
    std::vector<EntryId> ids;
    for (size_t i = 0; i < acked; i++) ids.push_back(msgs[i].id);
    if (!(*k)->Ack(ids).ok()) _exit(5);
    char ready = 'a';
    comet_test::WriteFull(up[1], &ready, 1);
    pause();
    _exit(0);
  }
  close(up[1]);
  char ready = 0;
  const bool ok = pid > 0 && comet_test::ReadFull(up[0], &ready, 1, 30000);
  close(up[0]);
  if (pid > 0 && !ok) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  return ok ? pid : -1;
}

// A child consumes and acks, reporting each acked entry number over a pipe, and is SIGKILLed in
// the middle; whatever it reported acked is never delivered again, and nothing is lost.
TEST_F(ConsumerTest, SigkillOfAConsumerLosesNoAckAndRedeliversOnlyUnacked) {
  constexpr uint64_t kN = 100000;
  {
    auto c = Open(Quiet(comet::SyncMode::kInterval));
    std::vector<std::string> batch;
    for (uint64_t i = 0; i < kN; i++) batch.push_back(Payload("k:shard:0000", i));
    std::vector<std::string_view> views(batch.begin(), batch.end());
    ASSERT_OK(c->Append("k:shard:0000", views));
    ASSERT_OK(c->Close());
  }
  for (int round = 0; round < 3; round++) {
    int up[2];
    ASSERT_EQ(pipe(up), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(up[0]);
      auto r = Client::Open(dir_, Quiet(comet::SyncMode::kInterval));
      if (!r.ok()) _exit(2);
      auto k = Consumer::Open(r->get(), "g");
      if (!k.ok()) _exit(3);
      std::vector<Message> msgs;
      for (;;) {
        if (!(*k)->Read("k:shard:0000", 50, &msgs).ok()) _exit(4);
        if (msgs.empty()) break;
        std::vector<EntryId> ids;
        for (const Message& m : msgs) ids.push_back(m.id);
        if (!(*k)->Ack(ids).ok()) _exit(5);
        uint64_t last = msgs.back().id.entry;
        if (!comet_test::WriteFull(up[1], &last, sizeof last)) _exit(6);
      }
      _exit(0);
    }
    close(up[1]);
    uint64_t last_acked = 0;
    bool any = false;
    // Let it get some way, then kill it wherever it is.
    for (int i = 0; i < 20 + round * 60; i++) {
      uint64_t v;
      if (!comet_test::ReadFull(up[0], &v, sizeof v, 30000)) break;
      last_acked = v;
      any = true;
    }
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    // Acks it reported after our last read still count; read what is left in the pipe.
    uint64_t v;
    while (comet_test::ReadFull(up[0], &v, sizeof v, 100)) last_acked = v;
    close(up[0]);
    ASSERT_TRUE(any);
    auto c = Open(Quiet(comet::SyncMode::kInterval));
    auto k = Join(c.get(), "g");
    const uint64_t committed = *k->Committed("k:shard:0000");
    EXPECT_GE(committed, last_acked + 1) << "an acked entry would be delivered again";
    std::vector<Message> msgs;
    ASSERT_OK(k->Read("k:shard:0000", 1, &msgs));
    if (committed < kN) {
      ASSERT_EQ(msgs.size(), 1u);
      EXPECT_EQ(msgs[0].id.entry, committed) << "delivery resumes at the committed offset";
    }
    ASSERT_OK(c->Close());
  }
  auto c = Open(Quiet(comet::SyncMode::kInterval));
  auto k = Join(c.get(), "g");
  const uint64_t committed = *k->Committed("k:shard:0000");
  EXPECT_EQ(Drain(k.get(), "k:shard:0000", true, 1000), Expected("k:shard:0000", committed, kN));
}

// A handler ran, the process died before acking: the entries come again.
TEST_F(ConsumerTest, SigkillBetweenHandlerAndAckRedelivers) {
  {
    auto c = Open();
    Fill(c.get(), "h:shard:0000", 10);
    ASSERT_OK(c->Close());
  }
  const pid_t pid = StartChildThatAcks(dir_, Quiet(), "h:shard:0000", 4, 2);  // 2 and 3 not acked
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  auto c = Open();
  auto k = Join(c.get(), "g");
  EXPECT_EQ(Drain(k.get(), "h:shard:0000"), Expected("h:shard:0000", 2, 10));
}

// Interval mode: once sync.interval has passed after an ack, the group file has it, even if the
// process is then SIGKILLed and the control file lost.
TEST_F(ConsumerTest, IntervalModeWritesTheGroupFileWithoutClose) {
  {
    auto c = Open();
    Fill(c.get(), "i:shard:0000", 10);
    ASSERT_OK(c->Close());
  }
  Config cfg = Quiet(comet::SyncMode::kInterval);
  ASSERT_OK(cfg.Set("sync.interval", "20ms"));
  const pid_t pid = StartChildThatAcks(dir_, cfg, "i:shard:0000", 6, 6);
  ASSERT_GT(pid, 0);
  // Wait (on the condition, generously) until the group file holds the ack.
  const int64_t deadline = comet_test::MonotonicNs() + 30'000'000'000;
  bool written = false;
  while (!written && comet_test::MonotonicNs() < deadline) {
    for (const std::string& f : comet_test::ListFilesRecursive(Sub("groups"), ".grp")) {
      std::string bytes = comet_test::ReadFile(f);
      // The one record's committed field: header 32 + name "g" 1 + prefix/shard 8.
      if (bytes.size() == 32 + 1 + 24 && comet::format::load64(bytes.data() + 41) == 6) {
        written = true;
      }
    }
    if (!written) usleep(5000);
  }
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  ASSERT_TRUE(written) << "the group file never recorded the ack";
  ASSERT_EQ(::unlink(Sub("comet.ctl").c_str()), 0);
  auto c = Open();
  auto k = Join(c.get(), "g");
  EXPECT_EQ(*k->Committed("i:shard:0000"), 6u);
}

// Offsets are shared through the control region: an ack in one process is seen at once by a
// consumer of the same group in another (multi-process mode).
TEST_F(ConsumerTest, AnAckInOneProcessIsSeenByAnotherAtOnce) {
  Config cfg = Quiet();
  cfg.concurrency.mode = comet::ConcurrencyMode::kMulti;
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  Fill(c.get(), "m:shard:0000", 200);
  auto k = Join(c.get(), "g");
  int up[2], down[2];
  ASSERT_EQ(pipe(up), 0);
  ASSERT_EQ(pipe(down), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(up[0]);
    close(down[1]);
    auto r = Client::Open(dir_, cfg);
    if (!r.ok()) _exit(2);
    auto k2 = Consumer::Open(r->get(), "g");
    if (!k2.ok()) _exit(3);
    std::vector<Message> msgs;
    if (!(*k2)->Read("m:shard:0000", 100, &msgs).ok() || msgs.size() != 100) _exit(4);
    if (!(*k2)->Ack(msgs).ok()) _exit(5);
    char done = 'd';
    comet_test::WriteFull(up[1], &done, 1);
    comet_test::ReadFull(down[0], &done, 1, 60000);
    (void)(*r)->Close();
    _exit(0);
  }
  close(up[1]);
  close(down[0]);
  char done = 0;
  ASSERT_TRUE(comet_test::ReadFull(up[0], &done, 1, 30000));
  EXPECT_EQ(*k->Committed("m:shard:0000"), 100u);
  // A new consumer of the group here starts where the other process left off.
  auto k3 = Join(c.get(), "g");
  std::vector<Message> msgs;
  ASSERT_OK(k3->Read("m:shard:0000", 1, &msgs));
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].id.entry, 100u);
  comet_test::WriteFull(down[1], &done, 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(up[0]);
  close(down[1]);
}

// Realtime capture across processes: a writer process appends while a consumer here waits on
// the control region's futexes; after the writer stops gracefully every entry was delivered
// exactly once, each stream in order. The writer creates its streams (and their first segments)
// before the consumer first reads.
TEST_F(ConsumerTest, AConsumerGetsEveryEntryOfAWriterProcessThatStopsGracefully) {
  constexpr int kEntries = 3000, kShards = 4;
  Config cfg = Quiet();
  cfg.concurrency.mode = comet::ConcurrencyMode::kMulti;
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  auto k = Join(c.get(), "g");
  int up[2];
  ASSERT_EQ(pipe(up), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(up[0]);
    auto r = Client::Open(dir_, cfg);
    if (!r.ok()) _exit(2);
    // Entries 0..63 create every stream this process writes (their first segments too); then
    // the consumer starts and the rest arrive while it waits.
    auto append = [&](int from, int n) -> int {
      std::vector<std::string> payloads;
      for (int j = 0; j < n; j++) payloads.push_back("rt#" + std::to_string(from + j));
      auto stream = (*r)->PickStream("rt", std::to_string(from % 64), kShards);
      if (!stream.ok()) return -1;
      std::vector<std::string_view> views(payloads.begin(), payloads.end());
      Status st = (*r)->Append(*stream, views);
      if (st.IsNotOwner()) return 0;  // the shard moved meanwhile: route again
      return st.ok() ? n : -1;
    };
    for (int i = 0; i < 64;) {
      const int n = append(i, 1);
      if (n < 0) _exit(3);
      i += n;
    }
    char created = 'c';
    if (!comet_test::WriteFull(up[1], &created, 1)) _exit(4);
    for (int i = 64; i < kEntries;) {
      const int n = append(i, std::min(1 + i % 7, kEntries - i));
      if (n < 0) _exit(5);
      i += n;
    }
    _exit((*r)->Close().ok() ? 0 : 7);
  }
  close(up[1]);
  char created = 0;
  ASSERT_TRUE(comet_test::ReadFull(up[0], &created, 1, 30000));
  close(up[0]);
  std::set<int> seen;
  std::map<uint32_t, int> last_per_shard;
  int delivered = 0;
  std::vector<Message> msgs;
  const int64_t deadline = comet_test::MonotonicNs() + 60'000'000'000;
  while (static_cast<int>(seen.size()) < kEntries && comet_test::MonotonicNs() < deadline) {
    ASSERT_OK(k->Read("rt:shard:*", 256, &msgs, 100'000'000));
    for (const Message& m : msgs) {
      const int i = std::stoi(std::string(m.data.substr(3)));
      delivered++;
      seen.insert(i);
      auto [it, fresh] = last_per_shard.try_emplace(m.id.shard, -1);
      EXPECT_GT(i, it->second) << "shard " << m.id.shard << " out of order";
      it->second = i;
    }
    ASSERT_OK(k->Ack(msgs));
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_OK(k->Read("rt:shard:*", 256, &msgs));
  EXPECT_TRUE(msgs.empty()) << msgs.size() << " entries delivered again or late";
  EXPECT_EQ(static_cast<int>(seen.size()), kEntries);
  EXPECT_EQ(delivered, kEntries) << "an entry was delivered twice";
  EXPECT_EQ(*k->Lag("rt:shard:*"), 0u);
  auto stats = comet::ReadStats(dir_);
  ASSERT_TRUE(stats.ok());
  for (const comet::GroupStreamStats& g : stats->groups) {
    EXPECT_EQ(g.skipped, 0u) << g.stream << ": entries passed over unread";
  }
}

}  // namespace

// Realtime capture across processes: a writer process appends to the shards it owns of 64, a
// consumer in this process (the other member, there first) reads them as they come, and after
// the writer closed (its shards pass to this process) every entry has been delivered: none was
// passed over as damaged while the consumer followed the writer.
TEST_F(ConsumerTest, RealtimeCaptureAcrossProcessesDeliversEverythingAfterTheWriterCloses) {
  constexpr int kEntries = 400;
  constexpr uint32_t kShards = 64;
  Config cfg = Quiet();
  cfg.concurrency.mode = comet::ConcurrencyMode::kMulti;
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  auto k = Join(c.get(), "rt");
  ASSERT_TRUE(k);
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(go[1]);
    auto w = Client::Open(dir_, cfg);
    if (!w.ok()) _exit(2);
    char g;
    if (!comet_test::ReadFull(go[0], &g, 1, 30000)) _exit(3);
    for (int i = 0; i < kEntries;) {
      auto name = (*w)->PickStream("rt", std::to_string(i), kShards);
      Status st = name.ok() ? (*w)->Append(*name, "rt#" + std::to_string(i)) : name.status();
      if (st.ok()) {
        i++;
        usleep(2500);  // the pace of a realtime source
      } else if (!st.IsNotOwner()) {
        _exit(4);
      }
    }
    _exit((*w)->Close().ok() ? 0 : 5);
  }
  close(go[0]);
  ASSERT_TRUE(comet_test::WriteFull(go[1], "g", 1));
  std::set<std::string> got;
  bool writer_gone = false;
  int status = 0;
  // Bounded: everything is there within ten seconds of the writer's exit.
  int64_t deadline = comet_test::MonotonicNs() + 60'000'000'000;
  while (got.size() < kEntries && comet_test::MonotonicNs() < deadline) {
    std::vector<Message> msgs;
    ASSERT_OK(k->Read("rt:shard:*", 64, &msgs, 20'000'000));
    for (const Message& m : msgs) EXPECT_TRUE(got.insert(std::string(m.data)).second) << m.data;
    ASSERT_OK(k->Ack(msgs));
    if (!writer_gone && waitpid(pid, &status, WNOHANG) == pid) {
      writer_gone = true;
      deadline = comet_test::MonotonicNs() + 10'000'000'000;
    }
  }
  if (!writer_gone) waitpid(pid, &status, 0);
  close(go[1]);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(got.size(), static_cast<size_t>(kEntries));
}
