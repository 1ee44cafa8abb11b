// Consumer::Process: retries, dead letters, streams that never hold each other up, static
// assignment, failover, discovery, cancellation and bounded resources.
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/consumer.h"
#include "comet/format.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Config;
using comet::Consumer;
using comet::Handled;
using comet::Message;
using comet::ProcessOptions;
using comet::Result;
using comet::Status;

Config Quiet() {
  Config c;
  c.storage.prefault_bytes = 0;
  c.storage.max_segment_bytes = 1 << 20;
  c.sync.mode = comet::SyncMode::kNone;
  return c;
}

ProcessOptions Fast(std::vector<std::string> streams) {
  ProcessOptions o;
  o.streams = std::move(streams);
  o.retry_backoff_ns = 1'000'000;
  o.max_backoff_ns = 4'000'000;
  o.wait_ns = 100'000'000;
  return o;
}

// Runs a Process loop that must end by itself; a watchdog cancels it after 60 s so a broken
// loop fails the test instead of hanging it.
Status RunBounded(Consumer* k, const Consumer::Handler& h, ProcessOptions o,
                  bool* timed_out = nullptr) {
  std::stop_source watchdog;
  o.stop = watchdog.get_token();
  std::atomic<bool> done{false};
  std::thread t([&] {
    const int64_t deadline = comet_test::MonotonicNs() + 60'000'000'000;
    while (!done.load() && comet_test::MonotonicNs() < deadline) usleep(2000);
    if (!done.load()) watchdog.request_stop();
  });
  Status st = k->Process(h, o);
  done = true;
  t.join();
  if (timed_out) *timed_out = watchdog.stop_requested();
  EXPECT_FALSE(watchdog.stop_requested()) << "the loop did not end by itself";
  return st;
}

class ProcessTest : public comet_test::TempDirTest {
 protected:
  std::unique_ptr<Client> Open(const Config& cfg = Quiet()) {
    auto r = Client::Open(dir_, cfg);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  static std::unique_ptr<Consumer> Join(Client* c, const std::string& group) {
    auto r = Consumer::Open(c, group);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  static void Fill(Client* c, const std::string& stream, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
      ASSERT_TRUE(c->Append(stream, stream + "#" + std::to_string(i)).ok());
    }
  }
};

TEST_F(ProcessTest, HandlerFailingTwiceIsDeliveredThreeTimesAndAckedOnce) {
  auto c = Open();
  Fill(c.get(), "r:shard:0000", 1);
  auto k = Join(c.get(), "g");
  int calls = 0;
  std::vector<uint32_t> attempts;
  ProcessOptions o = Fast({"r:shard:*"});
  o.on_error = [&](const Status& st, uint32_t attempt) {
    EXPECT_EQ(st.message(), "not yet");
    attempts.push_back(attempt);
  };
  ASSERT_OK(RunBounded(k.get(), [&](std::span<const Message> b) -> Handled {
    EXPECT_EQ(b.size(), 1u);
    if (++calls < 3) return Status::Io("not yet");
    return Handled::Stop();
  }, o));
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(attempts, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(*k->Committed("r:shard:0000"), 1u);
  EXPECT_EQ(*c->Length("r:dlq:shard:0000"), 0u);
}

TEST_F(ProcessTest, APoisonEntryReachesTheDeadLetterStreamAndTheShardGoesOn) {
  auto c = Open();
  Fill(c.get(), "p:shard:0002", 5);
  auto k = Join(c.get(), "g");
  std::vector<std::string> handled;
  ProcessOptions o = Fast({"p:shard:*"});
  o.max_retries = 1;
  int poison_calls = 0;
  ASSERT_OK(RunBounded(k.get(), [&](std::span<const Message> b) -> Handled {
    for (const Message& m : b) {
      if (m.data == "p:shard:0002#2") {
        if (b.size() == 1) poison_calls++;
        return Status::Invalid("poison");
      }
    }
    for (const Message& m : b) handled.emplace_back(m.data);
    return b.back().data == "p:shard:0002#4" ? Handled::Stop() : Handled::Done();
  }, o));
  EXPECT_EQ(handled, (std::vector<std::string>{"p:shard:0002#0", "p:shard:0002#1",
                                               "p:shard:0002#3", "p:shard:0002#4"}));
  EXPECT_EQ(poison_calls, 2) << "alone, the poison entry gets max_retries + 1 attempts";
  comet::Entry e;
  ASSERT_OK(c->Read("p:dlq:shard:0002", 0, &e));
  EXPECT_EQ(e.data, "p:shard:0002#2");
  EXPECT_EQ(*c->Length("p:dlq:shard:0002"), 1u);
  EXPECT_EQ(*k->Committed("p:shard:0002"), 5u);
}

TEST_F(ProcessTest, AFailingShardNeverHoldsUpTheOthers) {
  auto c = Open();
  Fill(c.get(), "f:shard:0000", 3);
  Fill(c.get(), "f:shard:0001", 20);
  auto k = Join(c.get(), "g");
  ProcessOptions o = Fast({"f:shard:*"});
  o.batch_size = 4;
  o.max_retries = 1000;
  o.retry_backoff_ns = 30'000'000'000;  // a stream in backoff waits 30 s
  o.max_backoff_ns = 30'000'000'000;
  int shard0_calls = 0, shard1_entries = 0;
  ASSERT_OK(RunBounded(k.get(), [&](std::span<const Message> b) -> Handled {
    if (b[0].id.shard == 0) {
      shard0_calls++;
      return Status::Io("shard 0 is down");
    }
    shard1_entries += static_cast<int>(b.size());
    return shard1_entries == 20 ? Handled::Stop() : Handled::Done();
  }, o));
  EXPECT_EQ(shard1_entries, 20);
  EXPECT_EQ(shard0_calls, 1) << "shard 0 is still in its first backoff";
  EXPECT_EQ(*k->Committed("f:shard:0000"), 0u);
}

TEST_F(ProcessTest, ACorruptEntryInShard0DoesNotBlockShard1) {
  uint32_t prefix_id = 0;
  {
    auto c = Open();
    comet::EntryId id;
    ASSERT_OK(c->Append("x:shard:0000", "x:shard:0000#0", &id));
    prefix_id = id.prefix_id;
    for (int i = 1; i < 4; i++) ASSERT_OK(c->Append("x:shard:0000", "x:shard:0000#" + std::to_string(i)));
    Fill(c.get(), "x:shard:0001", 4);
    ASSERT_OK(c->Close());
  }
  auto segs = comet_test::ListSegments(dir_, prefix_id, 0);
  ASSERT_EQ(segs.size(), 1u);
  // Entry 1's payload (records of 16 + 14 bytes).
  ASSERT_TRUE(comet_test::FlipByte(segs[0], comet::format::kSegmentHeaderSize + 30 + 20));
  auto c = Open();
  auto k = Join(c.get(), "g");
  std::set<std::string> got;
  ASSERT_OK(RunBounded(k.get(), [&](std::span<const Message> b) -> Handled {
    for (const Message& m : b) got.emplace(m.data);
    return got.size() == 7 ? Handled::Stop() : Handled::Done();
  }, Fast({"x:shard:*"})));
  EXPECT_EQ(got.size(), 7u);
  EXPECT_FALSE(got.count("x:shard:0000#1"));
  EXPECT_EQ(*k->Committed("x:shard:0000"), 4u);
  EXPECT_EQ(*k->Committed("x:shard:0001"), 4u);
}

TEST_F(ProcessTest, ThreeWorkersSplitNineShardsDisjointAndComplete) {
  auto c = Open();
  for (int s = 0; s < 9; s++) Fill(c.get(), "a:shard:000" + std::to_string(s), 10);
  std::mutex mu;
  std::map<std::string, int> owner;  // payload -> worker
  std::set<std::pair<uint32_t, int>> shard_worker;
  std::stop_source all_done;
  std::atomic<int> total{0};
  std::vector<std::thread> workers;
  std::vector<Status> results(3);
  for (int w = 0; w < 3; w++) {
    workers.emplace_back([&, w] {
      auto k = Join(c.get(), "g");
      ProcessOptions o = Fast({"a:shard:*"});
      o.worker = w;
      o.workers = 3;
      o.stop = all_done.get_token();
      results[w] = k->Process([&](std::span<const Message> b) -> Handled {
        std::lock_guard lk(mu);
        for (const Message& m : b) {
          EXPECT_TRUE(owner.emplace(std::string(m.data), w).second) << m.data;
          shard_worker.emplace(m.id.shard, w);
        }
        if ((total += static_cast<int>(b.size())) == 90) all_done.request_stop();
        return Handled::Done();
      }, o);
    });
  }
  const int64_t deadline = comet_test::MonotonicNs() + 60'000'000'000;
  while (total.load() < 90 && comet_test::MonotonicNs() < deadline) usleep(2000);
  all_done.request_stop();
  for (auto& t : workers) t.join();
  for (const Status& st : results) ASSERT_OK(st);
  EXPECT_EQ(owner.size(), 90u);
  ASSERT_EQ(shard_worker.size(), 9u) << "a shard was handled by two workers";
  for (auto [shard, w] : shard_worker) EXPECT_EQ(static_cast<int>(shard % 3), w);
}

TEST_F(ProcessTest, FailoverTheSecondConsumerGetsExactlyTheRest) {
  auto c = Open();
  Fill(c.get(), "o:shard:0000", 30);
  std::vector<std::string> first, second;
  {
    auto k = Join(c.get(), "g");
    ProcessOptions o = Fast({"o:shard:*"});
    o.batch_size = 1;
    ASSERT_OK(RunBounded(k.get(), [&](std::span<const Message> b) -> Handled {
      first.emplace_back(b[0].data);
      return first.size() == 12 ? Handled::Stop() : Handled::Done();
    }, o));
  }
  auto k = Join(c.get(), "g");
  ASSERT_OK(RunBounded(k.get(), [&](std::span<const Message> b) -> Handled {
    for (const Message& m : b) second.emplace_back(m.data);
    return second.size() >= 18 ? Handled::Stop() : Handled::Done();
  }, Fast({"o:shard:*"})));
  ASSERT_EQ(first.size(), 12u);
  ASSERT_EQ(second.size(), 18u);
  for (int i = 0; i < 18; i++) EXPECT_EQ(second[i], "o:shard:0000#" + std::to_string(12 + i));
}

TEST_F(ProcessTest, AWildcardPicksUpAShardCreatedWhileRunning) {
  auto c = Open();
  Fill(c.get(), "d:shard:0000", 2);
  auto k = Join(c.get(), "g");
  std::atomic<int> seen{0};
  std::string late;
  std::thread writer([&] {
    while (seen.load() < 2) usleep(1000);
    ASSERT_OK(c->Append("d:shard:0007", "late"));
  });
  ProcessOptions o = Fast({"d:shard:*"});
  o.wait_ns = 60'000'000'000;  // only the new stream's appearance can wake it
  ASSERT_OK(RunBounded(k.get(), [&](std::span<const Message> b) -> Handled {
    seen += static_cast<int>(b.size());
    if (b[0].id.shard == 7) {
      late = std::string(b[0].data);
      return Handled::Stop();
    }
    return Handled::Done();
  }, o));
  writer.join();
  EXPECT_EQ(late, "late");
}

TEST_F(ProcessTest, CancellationEndsABlockedLoop) {
  auto c = Open();
  Fill(c.get(), "c:shard:0000", 1);
  auto k = Join(c.get(), "g");
  std::stop_source stop;
  ProcessOptions o = Fast({"c:shard:*"});
  o.wait_ns = 600'000'000'000;
  o.stop = stop.get_token();
  std::atomic<int> handled{0};
  auto loop = std::async(std::launch::async, [&] {
    return k->Process([&](std::span<const Message> b) -> Handled {
      handled += static_cast<int>(b.size());
      return Handled::Done();
    }, o);
  });
  const int64_t deadline = comet_test::MonotonicNs() + 60'000'000'000;
  while (handled.load() < 1 && comet_test::MonotonicNs() < deadline) usleep(1000);
  stop.request_stop();
  ASSERT_EQ(loop.wait_for(std::chrono::seconds(60)), std::future_status::ready)
      << "a 600 s wait was not ended by the stop request";
  ASSERT_OK(loop.get());
  EXPECT_EQ(handled.load(), 1);
}

TEST_F(ProcessTest, BadOptionsAreRefused) {
  auto c = Open();
  auto k = Join(c.get(), "g");
  auto h = [](std::span<const Message>) -> Handled { return Handled::Done(); };
  ProcessOptions o;
  EXPECT_EQ(k->Process(h, o).code(), comet::Code::kInvalid);
  o.streams = {"s:shard:*"};
  o.worker = 3;
  o.workers = 3;
  EXPECT_EQ(k->Process(h, o).code(), comet::Code::kInvalid);
  o.worker = 0;
  o.batch_size = 0;
  EXPECT_EQ(k->Process(h, o).code(), comet::Code::kInvalid);
  o.batch_size = 1;
  o.streams = {"bad name"};
  EXPECT_EQ(k->Process(h, o).code(), comet::Code::kInvalid);
}

int CountDir(const char* path) {
  int n = 0;
  if (DIR* d = opendir(path)) {
    while (readdir(d)) n++;
    closedir(d);
  }
  return n;
}

int CountMaps() {
  std::string maps = comet_test::ReadFile("/proc/self/maps");
  return static_cast<int>(std::count(maps.begin(), maps.end(), '\n'));
}

// Many append -> wake -> handle cycles: descriptors and mappings stay constant (nothing leaks
// per wake-up, per read or per batch). One segment holds them all: the writer keeps every segment
// of its shard open, which is not the consumer's to count.
TEST_F(ProcessTest, ManyWakeCyclesKeepFdAndMappingCountsConstant) {
  auto c = Open();
  auto k = Join(c.get(), "g");
  std::atomic<int> handled{0};
  std::stop_source stop;
  ProcessOptions o = Fast({"m:shard:*"});
  o.stop = stop.get_token();
  auto loop = std::async(std::launch::async, [&] {
    return k->Process([&](std::span<const Message> b) -> Handled {
      handled += static_cast<int>(b.size());
      return Handled::Done();
    }, o);
  });
  int fds_before = 0, maps_before = 0;
  const std::string entry(200, 'm');
  const int64_t deadline = comet_test::MonotonicNs() + 120'000'000'000;
  for (int i = 0; i < 3000 && comet_test::MonotonicNs() < deadline; i++) {
    if (i == 500) {  // warmed up: spare segments, threads and caches exist
      fds_before = CountDir("/proc/self/fd");
      maps_before = CountMaps();
    }
    ASSERT_OK(c->Append("m:shard:0000", entry));
    while (handled.load() <= i && comet_test::MonotonicNs() < deadline) sched_yield();
  }
  const int fds_after = CountDir("/proc/self/fd"), maps_after = CountMaps();
  stop.request_stop();
  ASSERT_OK(loop.get());
  EXPECT_EQ(handled.load(), 3000);
  EXPECT_LE(fds_after, fds_before + 2) << "descriptors grew over 2500 wake cycles";
  EXPECT_LE(maps_after, maps_before + 4) << "mappings grew over 2500 wake cycles";
}

}  // namespace
