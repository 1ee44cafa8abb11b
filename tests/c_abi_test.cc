// The C ABI: routing, waiting, stream handles and scans.
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "comet/client.h"
#include "comet/comet.h"
#include "comet/format.h"
#include "test_util.h"

namespace {

using comet_test::TempDirTest;

class CAbiTest : public TempDirTest {
 protected:
  comet_client* Open(const char* mode) { return OpenWith({{"concurrency.mode", mode}}); }

  comet_client* OpenWith(const std::vector<std::pair<const char*, const char*>>& settings) {
    comet_config* cfg = comet_config_new();
    for (const auto& [key, value] : settings) {
      EXPECT_EQ(comet_config_set(cfg, key, value), COMET_OK) << key << ": " << comet_last_error();
    }
    comet_client* c = nullptr;
    EXPECT_EQ(comet_open(dir_.c_str(), cfg, &c), COMET_OK) << comet_last_error();
    comet_config_free(cfg);
    return c;
  }

  // Appends `payloads` one per call through a stream handle; returns the prefix id.
  static uint32_t AppendEach(comet_client* c, const char* stream,
                             const std::vector<std::string>& payloads) {
    comet_stream* s = nullptr;
    EXPECT_EQ(comet_stream_open(c, stream, &s), COMET_OK) << comet_last_error();
    comet_id id{};
    for (const std::string& p : payloads) {
      const void* data[] = {p.data()};
      size_t lens[] = {p.size()};
      EXPECT_EQ(comet_stream_append(s, data, lens, 1, &id), COMET_OK) << comet_last_error();
    }
    return id.prefix_id;
  }

  // Reads the scan to its current end, `max` messages per call, checking each call's views
  // after the call; returns the entry numbers delivered.
  static std::vector<uint64_t> Drain(comet_scan* it, size_t max, const char* stream,
                                     const std::vector<std::string>& payloads) {
    std::vector<uint64_t> seen;
    std::vector<comet_message> m(max);
    for (;;) {
      const int n = comet_scan_next(it, m.data(), max, 0);
      EXPECT_GE(n, 0) << comet_last_error();
      if (n <= 0) return seen;
      EXPECT_LE(size_t(n), max);
      for (int i = 0; i < n; i++) {
        EXPECT_STREQ(m[i].stream, stream);
        EXPECT_GT(m[i].timestamp_ns, 0);
        if (i > 0) {
          EXPECT_GE(m[i].timestamp_ns, m[i - 1].timestamp_ns);
        }
        const uint64_t e = m[i].id.entry;
        seen.push_back(e);
        if (e >= payloads.size()) continue;
        EXPECT_EQ(std::string(static_cast<const char*>(m[i].data), m[i].len), payloads[e])
            << "entry " << e;
      }
    }
  }
};

// Ten bytes that name their entry.
std::string Payload(uint64_t i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "entry-%04u", unsigned(i % 10000));
  return buf;
}

std::vector<std::string> Payloads(uint64_t n) {
  std::vector<std::string> out;
  for (uint64_t i = 0; i < n; i++) out.push_back(Payload(i));
  return out;
}

std::vector<uint64_t> Iota(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  for (uint64_t i = from; i < to; i++) out.push_back(i);
  return out;
}

TEST_F(CAbiTest, PickStreamInSingleModeIsPickShardPlusStreamName) {
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  for (int i = 0; i < 100; i++) {
    std::string key = "user-" + std::to_string(i);
    char got[64], want[64];
    ASSERT_EQ(comet_pick_stream(c, "ev", key.data(), key.size(), 16, got, sizeof got), COMET_OK);
    ASSERT_EQ(comet_stream_name("ev", comet_pick_shard(key.data(), key.size(), 16), want,
                                sizeof want),
              COMET_OK);
    EXPECT_STREQ(got, want);
  }
  char tiny[4];
  EXPECT_EQ(comet_pick_stream(c, "ev", "k", 1, 16, tiny, sizeof tiny), COMET_ERR_TOO_LARGE);
  EXPECT_EQ(comet_pick_stream(c, "bad/prefix", "k", 1, 16, tiny, sizeof tiny), COMET_ERR_INVALID);
  EXPECT_EQ(comet_close(c), COMET_OK);
}

TEST_F(CAbiTest, PickStreamInMultiModeRoutesToShardsThisProcessCanAppendTo) {
  comet_client* c = Open("multi");
  ASSERT_NE(c, nullptr);
  for (int i = 0; i < 50; i++) {
    std::string key = "k" + std::to_string(i);
    char name[64];
    ASSERT_EQ(comet_pick_stream(c, "mp", key.data(), key.size(), 8, name, sizeof name), COMET_OK)
        << comet_last_error();
    const void* data[] = {key.data()};
    size_t lens[] = {key.size()};
    EXPECT_EQ(comet_append(c, name, data, lens, 1, nullptr), COMET_OK) << comet_last_error();
  }
  EXPECT_EQ(comet_close(c), COMET_OK);
}

TEST_F(CAbiTest, WaitTimesOutThenWakesOnAppend) {
  const comet_test::SlowRecheck slow_recheck;  // only the append's wake-up ends the wait in time
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  const char* stream = "w:shard:0000";
  const void* data[] = {"x"};
  size_t lens[] = {1};
  comet_id first;
  ASSERT_EQ(comet_append(c, stream, data, lens, 1, &first), COMET_OK);
  EXPECT_EQ(comet_wait(c, stream, 0, 0), COMET_OK);
  EXPECT_EQ(comet_wait(c, stream, 1, 20'000'000), COMET_ERR_TIMEOUT);
  std::thread writer([&] {
    EXPECT_TRUE(comet_test::AwaitWaiters(dir_, first.prefix_id, first.shard, 1));
    EXPECT_EQ(comet_append(c, stream, data, lens, 1, nullptr), COMET_OK);
  });
  const int64_t start = comet_test::MonotonicNs();
  EXPECT_EQ(comet_wait(c, stream, 1, 30'000'000'000), COMET_OK) << comet_last_error();
  EXPECT_LT(comet_test::MonotonicNs() - start, 5'000'000'000)
      << "woken by the re-check, not by the append";
  writer.join();
  uint64_t n = 0;
  EXPECT_EQ(comet_length(c, stream, &n), COMET_OK);
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(comet_close(c), COMET_OK);
}

TEST_F(CAbiTest, ReadOnlyClientWaitsWithoutWritingTheControlRegion) {
  comet_client* w = Open("single");
  ASSERT_NE(w, nullptr);
  const char* stream = "ro:shard:0001";
  const void* data[] = {"first"};
  size_t lens[] = {5};
  ASSERT_EQ(comet_append(w, stream, data, lens, 1, nullptr), COMET_OK);
  comet_config* cfg = comet_config_new();
  ASSERT_EQ(comet_config_set(cfg, "open.read_only", "true"), COMET_OK);
  comet_client* r = nullptr;
  ASSERT_EQ(comet_open(dir_.c_str(), cfg, &r), COMET_OK) << comet_last_error();
  comet_config_free(cfg);
  EXPECT_EQ(comet_wait(r, stream, 0, 0), COMET_OK);
  EXPECT_EQ(comet_wait(r, stream, 1, 5'000'000), COMET_ERR_TIMEOUT);
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    EXPECT_EQ(comet_append(w, stream, data, lens, 1, nullptr), COMET_OK);
  });
  EXPECT_EQ(comet_wait(r, stream, 1, 10'000'000'000), COMET_OK) << comet_last_error();
  writer.join();
  EXPECT_EQ(comet_close(r), COMET_OK);
  EXPECT_EQ(comet_close(w), COMET_OK);
}

// A count no caller can mean is bad input, named as such, not an allocation failure.
TEST_F(CAbiTest, AppendCountBeyondTheBatchLimitIsInvalidAndAppendsNothing) {
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  const char* stream = "n:shard:0000";
  const void* data[] = {"x"};
  size_t lens[] = {1};
  for (size_t n : {SIZE_MAX, SIZE_MAX / 16, size_t{COMET_MAX_BATCH} + 1}) {
    SCOPED_TRACE(n);
    EXPECT_EQ(comet_append(c, stream, data, lens, n, nullptr), COMET_ERR_INVALID);
    const std::string msg = comet_last_error();
    EXPECT_NE(msg.find(std::to_string(n)), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(COMET_MAX_BATCH)), std::string::npos) << msg;
  }
  uint64_t len = 1;
  EXPECT_EQ(comet_length(c, stream, &len), COMET_OK);
  EXPECT_EQ(len, 0u);
  EXPECT_EQ(comet_append(c, stream, data, lens, 1, nullptr), COMET_OK) << comet_last_error();
  EXPECT_EQ(comet_close(c), COMET_OK);
}

// ---- stream handles --------------------------------------------------------------------------

TEST_F(CAbiTest, StreamHandleIsOnePerStreamAndAppendsLikeTheNamedCall) {
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  const char* name = "h:shard:0002";
  comet_stream *s = nullptr, *again = nullptr, *other = nullptr;
  ASSERT_EQ(comet_stream_open(c, name, &s), COMET_OK) << comet_last_error();
  ASSERT_EQ(comet_stream_open(c, name, &again), COMET_OK);
  ASSERT_EQ(comet_stream_open(c, "h:shard:0003", &other), COMET_OK);
  EXPECT_EQ(s, again);
  EXPECT_NE(s, other);

  // A batch held on the stack and one beyond it, then the named call continues the numbering.
  std::vector<std::string> want;
  for (size_t batch : {3, 20}) {
    std::vector<const void*> data;
    std::vector<size_t> lens;
    for (size_t i = 0; i < batch; i++) want.push_back(Payload(want.size()));
    for (size_t i = want.size() - batch; i < want.size(); i++) {
      data.push_back(want[i].data());
      lens.push_back(want[i].size());
    }
    std::vector<comet_id> ids(batch);
    ASSERT_EQ(comet_stream_append(s, data.data(), lens.data(), batch, ids.data()), COMET_OK)
        << comet_last_error();
    for (size_t i = 0; i < batch; i++) {
      EXPECT_EQ(ids[i].entry, want.size() - batch + i);
      EXPECT_EQ(ids[i].shard, 2u);
    }
  }
  comet_id named{};
  const void* data[] = {"by name"};
  size_t lens[] = {7};
  ASSERT_EQ(comet_append(c, name, data, lens, 1, &named), COMET_OK);
  EXPECT_EQ(named.entry, want.size());
  want.push_back("by name");
  for (uint64_t e = 0; e < want.size(); e++) {
    char buf[32];
    size_t n = 0;
    ASSERT_EQ(comet_read(c, name, e, buf, sizeof buf, &n, nullptr), COMET_OK) << e;
    EXPECT_EQ(std::string(buf, n), want[e]);
  }

  EXPECT_EQ(comet_stream_open(c, "h:shard:02", &s), COMET_ERR_INVALID);
  EXPECT_TRUE(comet_test::Contains(comet_last_error(), "h:shard:02")) << comet_last_error();
  EXPECT_EQ(comet_stream_open(c, nullptr, &s), COMET_ERR_INVALID);
  EXPECT_EQ(comet_stream_append(nullptr, data, lens, 1, nullptr), COMET_ERR_INVALID);
  EXPECT_EQ(comet_stream_append(again, nullptr, lens, 1, nullptr), COMET_ERR_INVALID);
  const void* null_data[] = {nullptr};
  EXPECT_EQ(comet_stream_append(again, null_data, lens, 1, nullptr), COMET_ERR_INVALID);
  EXPECT_EQ(comet_stream_append(again, data, lens, size_t{COMET_MAX_BATCH} + 1, nullptr),
            COMET_ERR_INVALID);
  uint64_t len = 0;
  ASSERT_EQ(comet_length(c, name, &len), COMET_OK);
  EXPECT_EQ(len, want.size());
  EXPECT_EQ(comet_close(c), COMET_OK);
}

TEST_F(CAbiTest, ReadOnlyClientOpensOnlyExistingStreams) {
  comet_client* w = Open("single");
  ASSERT_NE(w, nullptr);
  AppendEach(w, "ro:shard:0000", Payloads(1));
  EXPECT_EQ(comet_close(w), COMET_OK);
  comet_client* r = OpenWith({{"open.read_only", "true"}});
  ASSERT_NE(r, nullptr);
  comet_stream* s = nullptr;
  EXPECT_EQ(comet_stream_open(r, "ro:shard:0001", &s), COMET_ERR_NOT_FOUND);
  EXPECT_EQ(comet_stream_open(r, "ro:shard:0000", &s), COMET_OK) << comet_last_error();
  EXPECT_EQ(comet_close(r), COMET_OK);
}

// ---- scans -----------------------------------------------------------------------------------

// Each call delivers at most `max` messages in entry order; uncompressed payloads are views of
// the segment mapping (consecutive records sit side by side), not copies.
TEST_F(CAbiTest, ScanDeliversEveryEntryInOrderAsViewsOfTheSegment) {
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  const char* stream = "s:shard:0001";
  const std::vector<std::string> payloads = Payloads(50);
  AppendEach(c, stream, payloads);
  comet_scan* it = nullptr;
  ASSERT_EQ(comet_scan_open(c, stream, 0, &it), COMET_OK) << comet_last_error();
  comet_message m[7];
  std::vector<uint64_t> seen;
  for (int n; (n = comet_scan_next(it, m, 7, 0)) > 0;) {
    EXPECT_EQ(n, seen.size() + 7 <= 50 ? 7 : int(50 - seen.size()));
    for (int i = 0; i < n; i++) {
      seen.push_back(m[i].id.entry);
      EXPECT_EQ(m[i].id.shard, 1u);
      EXPECT_EQ(std::string(static_cast<const char*>(m[i].data), m[i].len),
                payloads[m[i].id.entry]);
      if (i > 0) {
        EXPECT_EQ(static_cast<const char*>(m[i].data),
                  static_cast<const char*>(m[i - 1].data) + m[i - 1].len +
                      comet::format::kRecordHeaderSize)
            << "entry " << m[i].id.entry << " is not a view of its record";
      }
    }
  }
  EXPECT_EQ(seen, Iota(0, 50));
  EXPECT_EQ(comet_scan_position(it), 50u);
  EXPECT_EQ(comet_scan_skipped(it), 0u);
  EXPECT_EQ(comet_scan_next(it, m, 0, 0), 0);
  EXPECT_EQ(comet_scan_close(it), COMET_OK);

  ASSERT_EQ(comet_scan_open(c, stream, 45, &it), COMET_OK);
  EXPECT_EQ(Drain(it, 100, stream, payloads), Iota(45, 50));
  EXPECT_EQ(comet_scan_close(it), COMET_OK);
  EXPECT_EQ(comet_close(c), COMET_OK);
}

// Compressed entries are decompressed into buffers the scan holds, one per message, so every
// view of one call stays intact until the next.
TEST_F(CAbiTest, ScanViewsOfCompressedEntriesStayValidForTheWholeCall) {
  comet_client* c = OpenWith({{"compression.min_bytes", "64"}});
  ASSERT_NE(c, nullptr);
  const char* stream = "z:shard:0000";
  std::vector<std::string> payloads;
  for (uint64_t i = 0; i < 30; i++) payloads.push_back(comet_test::CompressibleBytes(i, 2000));
  AppendEach(c, stream, payloads);
  comet_scan* it = nullptr;
  ASSERT_EQ(comet_scan_open(c, stream, 0, &it), COMET_OK);
  EXPECT_EQ(Drain(it, 8, stream, payloads), Iota(0, 30));
  EXPECT_EQ(comet_scan_close(it), COMET_OK);
  EXPECT_EQ(comet_close(c), COMET_OK);
}

TEST_F(CAbiTest, ScanSkipsAndCountsDamagedEntries) {
  const char* stream = "d:shard:0000";
  const std::vector<std::string> payloads = Payloads(10);
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  const uint32_t prefix_id = AppendEach(c, stream, payloads);
  ASSERT_EQ(comet_close(c), COMET_OK);
  const auto segs = comet_test::ListSegments(dir_, prefix_id, 0);
  ASSERT_EQ(segs.size(), 1u);
  constexpr uint64_t kRecord = comet::format::kRecordHeaderSize + 10;
  for (uint64_t bad : {3, 7}) {
    ASSERT_TRUE(comet_test::FlipByte(segs[0], comet::format::kSegmentHeaderSize + bad * kRecord +
                                                  comet::format::kRecordHeaderSize + 2));
  }
  c = Open("single");
  ASSERT_NE(c, nullptr);
  comet_scan* it = nullptr;
  ASSERT_EQ(comet_scan_open(c, stream, 0, &it), COMET_OK);
  EXPECT_EQ(Drain(it, 100, stream, payloads), (std::vector<uint64_t>{0, 1, 2, 4, 5, 6, 8, 9}));
  EXPECT_EQ(comet_scan_skipped(it), 2u);
  EXPECT_EQ(comet_scan_position(it), 10u);
  EXPECT_EQ(comet_scan_close(it), COMET_OK);
  EXPECT_EQ(comet_close(c), COMET_OK);
}

TEST_F(CAbiTest, ScanMovesPastAMissingSegment) {
  const char* stream = "g:shard:0000";
  const std::vector<std::string> payloads = Payloads(400);
  comet_client* c = OpenWith({{"storage.max_segment_bytes", "4096"},
                              {"storage.prefault_bytes", "0"}});
  ASSERT_NE(c, nullptr);
  const uint32_t prefix_id = AppendEach(c, stream, payloads);
  ASSERT_EQ(comet_close(c), COMET_OK);
  const auto segs = comet_test::ListSegments(dir_, prefix_id, 0);
  ASSERT_GE(segs.size(), 3u);
  const uint64_t gap_from = comet_test::SegmentBase(segs[1]);
  const uint64_t gap_to = comet_test::SegmentBase(segs[2]);
  ASSERT_EQ(::unlink(segs[1].c_str()), 0);
  ::unlink((segs[1].substr(0, segs[1].size() - 4) + ".idx").c_str());
  c = Open("single");
  ASSERT_NE(c, nullptr);
  comet_scan* it = nullptr;
  std::vector<uint64_t> want = Iota(0, gap_from);
  for (uint64_t e : Iota(gap_to, 400)) want.push_back(e);
  // One message per call reaches the gap with nothing delivered yet, 64 in the middle of a call.
  for (size_t max : {1, 64}) {
    SCOPED_TRACE(max);
    ASSERT_EQ(comet_scan_open(c, stream, 0, &it), COMET_OK);
    EXPECT_EQ(Drain(it, max, stream, payloads), want);
    EXPECT_EQ(comet_scan_skipped(it), 0u);
    EXPECT_EQ(comet_scan_close(it), COMET_OK);
  }
  EXPECT_EQ(comet_close(c), COMET_OK);
}

TEST_F(CAbiTest, ScanAtTheEndReturnsZeroAtOnceOrAfterItsTimeout) {
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  const char* stream = "t:shard:0000";
  AppendEach(c, stream, Payloads(1));
  comet_scan* it = nullptr;
  ASSERT_EQ(comet_scan_open(c, stream, 1, &it), COMET_OK);
  comet_message m[4];
  EXPECT_EQ(comet_scan_next(it, m, 4, 0), 0) << comet_last_error();
  constexpr int64_t kTimeout = 50'000'000;
  const int64_t t0 = comet_test::MonotonicNs();
  EXPECT_EQ(comet_scan_next(it, m, 4, kTimeout), 0) << comet_last_error();
  EXPECT_GE(comet_test::MonotonicNs() - t0, kTimeout);
  EXPECT_EQ(comet_scan_position(it), 1u);
  EXPECT_EQ(comet_scan_close(it), COMET_OK);
  EXPECT_EQ(comet_close(c), COMET_OK);
}

// A scan at the end with a positive or negative timeout sleeps on the control region's futex
// (its waiter count shows it) and returns the entry appended meanwhile, woken by the append.
TEST_F(CAbiTest, ScanThatWaitsReturnsTheEntryAppendedWhileItSleeps) {
  const comet_test::SlowRecheck slow_recheck;  // only the append's wake-up ends the wait in time
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  const char* stream = "wait:shard:0000";
  const uint32_t prefix_id = AppendEach(c, stream, Payloads(1));
  comet_stream* s = nullptr;
  ASSERT_EQ(comet_stream_open(c, stream, &s), COMET_OK);
  for (int64_t timeout : {int64_t{-1}, int64_t{60'000'000'000}}) {
    SCOPED_TRACE(timeout);
    uint64_t from = 0;
    ASSERT_EQ(comet_length(c, stream, &from), COMET_OK);
    comet_scan* it = nullptr;
    ASSERT_EQ(comet_scan_open(c, stream, from, &it), COMET_OK);
    comet_message m[4];
    int got = -100;
    std::thread reader([&] { got = comet_scan_next(it, m, 4, timeout); });
    const bool waiting = comet_test::AwaitWaiters(dir_, prefix_id, 0, 1);
    const std::string payload = "woken " + std::to_string(from);
    const void* data[] = {payload.data()};
    size_t lens[] = {payload.size()};
    const int64_t start = comet_test::MonotonicNs();
    EXPECT_EQ(comet_stream_append(s, data, lens, 1, nullptr), COMET_OK);
    reader.join();
    EXPECT_LT(comet_test::MonotonicNs() - start, 5'000'000'000)
        << "woken by the re-check, not by the append";
    ASSERT_TRUE(waiting) << "the scan never slept on the futex";
    ASSERT_EQ(got, 1) << comet_last_error();
    EXPECT_EQ(m[0].id.entry, from);
    EXPECT_EQ(std::string(static_cast<const char*>(m[0].data), m[0].len), payload);
    EXPECT_EQ(comet_scan_close(it), COMET_OK);
  }
  EXPECT_EQ(comet_close(c), COMET_OK);
}

// A reader that waits forever follows a writer appending batches of every size from another
// thread: every entry once, in order, with its own payload.
TEST_F(CAbiTest, ScanFollowsAConcurrentWriter) {
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  const char* stream = "f:shard:0000";
  constexpr uint64_t kEntries = 3000;
  const std::vector<std::string> payloads = Payloads(kEntries);
  comet_stream* s = nullptr;
  ASSERT_EQ(comet_stream_open(c, stream, &s), COMET_OK);
  comet_scan* it = nullptr;
  ASSERT_EQ(comet_scan_open(c, stream, 0, &it), COMET_OK);
  std::thread writer([&] {
    for (uint64_t e = 0, batch = 1; e < kEntries; e += batch, batch = batch % 13 + 1) {
      batch = std::min(batch, kEntries - e);
      std::vector<const void*> data;
      std::vector<size_t> lens;
      for (uint64_t i = e; i < e + batch; i++) {
        data.push_back(payloads[i].data());
        lens.push_back(payloads[i].size());
      }
      ASSERT_EQ(comet_stream_append(s, data.data(), lens.data(), batch, nullptr), COMET_OK);
    }
  });
  std::vector<uint64_t> seen;
  comet_message m[16];
  while (seen.size() < kEntries) {
    const int n = comet_scan_next(it, m, 16, -1);
    if (n <= 0) {
      ADD_FAILURE() << "a scan waiting forever returned " << n << ": " << comet_last_error();
      break;
    }
    for (int i = 0; i < n; i++) {
      seen.push_back(m[i].id.entry);
      EXPECT_EQ(std::string(static_cast<const char*>(m[i].data), m[i].len),
                payloads[m[i].id.entry]);
    }
  }
  writer.join();
  EXPECT_EQ(seen, Iota(0, kEntries));
  EXPECT_EQ(comet_scan_close(it), COMET_OK);
  EXPECT_EQ(comet_close(c), COMET_OK);
}

// A scan may outlive its client: what it delivered stays readable, then it answers CLOSED, and
// a scan asleep when the client closes wakes with CLOSED.
TEST_F(CAbiTest, ScanOutlivesItsClient) {
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  const char* stream = "o:shard:0000";
  const uint32_t prefix_id = AppendEach(c, stream, Payloads(3));
  comet_scan *it = nullptr, *sleeper = nullptr;
  ASSERT_EQ(comet_scan_open(c, stream, 0, &it), COMET_OK);
  ASSERT_EQ(comet_scan_open(c, stream, 3, &sleeper), COMET_OK);
  comet_message m[4], late[4];
  ASSERT_EQ(comet_scan_next(it, m, 4, 0), 3);
  int got = -100;
  std::thread reader([&] { got = comet_scan_next(sleeper, late, 4, -1); });
  const bool waiting = comet_test::AwaitWaiters(dir_, prefix_id, 0, 1);
  EXPECT_EQ(comet_close(c), COMET_OK);
  reader.join();
  ASSERT_TRUE(waiting);
  EXPECT_EQ(got, COMET_ERR_CLOSED);
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(std::string(static_cast<const char*>(m[i].data), m[i].len), Payload(i));
    EXPECT_STREQ(m[i].stream, stream);
  }
  EXPECT_EQ(comet_scan_next(it, m, 4, 0), COMET_ERR_CLOSED);
  EXPECT_EQ(comet_scan_close(it), COMET_OK);
  EXPECT_EQ(comet_scan_close(sleeper), COMET_OK);
}

TEST_F(CAbiTest, ScanOpenRefusesMissingStreamsAndBadArguments) {
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  comet_scan* it = nullptr;
  EXPECT_EQ(comet_scan_open(c, "none:shard:0000", 0, &it), COMET_ERR_NOT_FOUND);
  EXPECT_TRUE(comet_test::Contains(comet_last_error(), "none:shard:0000")) << comet_last_error();
  EXPECT_EQ(comet_scan_open(c, "bad", 0, &it), COMET_ERR_INVALID);
  EXPECT_EQ(comet_scan_open(c, nullptr, 0, &it), COMET_ERR_INVALID);
  EXPECT_EQ(it, nullptr);
  EXPECT_EQ(comet_scan_next(nullptr, nullptr, 1, 0), COMET_ERR_INVALID);
  EXPECT_EQ(comet_scan_close(nullptr), COMET_OK);
  EXPECT_EQ(comet_close(c), COMET_OK);
}

// ---- the directory -----------------------------------------------------------------------------

// Collects the texts a comet_text_fn receives.
void Collect(void* arg, const char* text) { static_cast<std::vector<std::string>*>(arg)->push_back(text); }

TEST_F(CAbiTest, DirectoryListsInspectsAndCountsItsStreams) {
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  AppendEach(c, "b:shard:0000", Payloads(2));
  AppendEach(c, "a:shard:0001", Payloads(3));
  const uint32_t a = AppendEach(c, "a:shard:0000", Payloads(5));
  std::vector<std::string> names;
  EXPECT_EQ(comet_list_streams(c, Collect, &names), 3) << comet_last_error();
  EXPECT_EQ(names, (std::vector<std::string>{"a:shard:0000", "a:shard:0001", "b:shard:0000"}));

  comet_stream_info info;
  ASSERT_EQ(comet_inspect(c, "a:shard:0000", &info, sizeof info), COMET_OK) << comet_last_error();
  EXPECT_EQ(info.size, sizeof info);
  EXPECT_EQ(info.prefix_id, a);
  EXPECT_EQ(info.shard, 0u);
  EXPECT_EQ(info.first_entry, 0u);
  EXPECT_EQ(info.next_entry, 5u);
  EXPECT_EQ(info.segments, 1u);
  EXPECT_EQ(info.entries, 5u);
  EXPECT_EQ(info.bytes, 5 * (comet::format::kRecordHeaderSize + 10));
  EXPECT_EQ(info.gaps, 0u);
  EXPECT_EQ(info.corrupt_records, 0u);
  EXPECT_EQ(comet_inspect(c, "c:shard:0000", &info, sizeof info), COMET_ERR_NOT_FOUND);

  comet_stats st;
  ASSERT_EQ(comet_get_stats(c, &st, sizeof st), COMET_OK) << comet_last_error();
  EXPECT_EQ(st.size, sizeof st);
  EXPECT_EQ(st.live_processes, 1u);
  EXPECT_EQ(st.streams, 3u);
  EXPECT_EQ(st.appended_entries, 10u);
  EXPECT_EQ(st.appended_bytes, 100u);
  EXPECT_EQ(st.failed_appends, 0u);
  EXPECT_EQ(st.corrupt_records, 0u);

  uint64_t corrupt = 1;
  std::vector<std::string> problems, report;
  EXPECT_EQ(comet_verify(c, Collect, &problems, &corrupt), COMET_OK) << comet_last_error();
  EXPECT_EQ(corrupt, 0u);
  EXPECT_TRUE(problems.empty()) << problems.front();
  EXPECT_EQ(comet_recovery_report(c, Collect, &report), 0);
  EXPECT_EQ(comet_close(c), COMET_OK);
}

// What recovery and verify find in a damaged directory reaches C: a damaged record and a
// missing segment.
TEST_F(CAbiTest, DirectoryReportsDamageAndGaps) {
  const char* stream = "dmg:shard:0000";
  comet_client* c = OpenWith({{"storage.max_segment_bytes", "4096"},
                              {"storage.prefault_bytes", "0"}});
  ASSERT_NE(c, nullptr);
  const uint32_t prefix_id = AppendEach(c, stream, Payloads(400));
  ASSERT_EQ(comet_close(c), COMET_OK);
  const auto segs = comet_test::ListSegments(dir_, prefix_id, 0);
  ASSERT_GE(segs.size(), 3u);
  const uint64_t gap_from = comet_test::SegmentBase(segs[1]);
  const uint64_t gap_to = comet_test::SegmentBase(segs[2]);
  ASSERT_EQ(::unlink(segs[1].c_str()), 0);
  ::unlink((segs[1].substr(0, segs[1].size() - 4) + ".idx").c_str());
  ASSERT_TRUE(comet_test::FlipByte(segs[2], comet::format::kSegmentHeaderSize +
                                                comet::format::kRecordHeaderSize + 2));

  c = OpenWith({{"storage.max_segment_bytes", "4096"}, {"storage.prefault_bytes", "0"}});
  ASSERT_NE(c, nullptr);
  std::vector<std::string> report, problems;
  EXPECT_GE(comet_recovery_report(c, Collect, &report), 1);
  bool gap_reported = false;
  for (const std::string& line : report) gap_reported |= line.find("missing") != std::string::npos;
  EXPECT_TRUE(gap_reported) << ::testing::PrintToString(report);

  uint64_t corrupt = 0;
  EXPECT_EQ(comet_verify(c, Collect, &problems, &corrupt), COMET_OK) << comet_last_error();
  EXPECT_EQ(corrupt, 1u);
  ASSERT_FALSE(problems.empty());
  const std::string seg_name = segs[2].substr(segs[2].rfind('/') + 1);
  EXPECT_TRUE(comet_test::Contains(problems[0], seg_name)) << problems[0];

  comet_stream_info info;
  ASSERT_EQ(comet_inspect(c, stream, &info, sizeof info), COMET_OK);
  EXPECT_EQ(info.next_entry, 400u);
  EXPECT_EQ(info.gaps, 1u);
  EXPECT_EQ(info.missing_entries, gap_to - gap_from);
  EXPECT_EQ(info.entries, 400 - (gap_to - gap_from));
  comet_stats st;
  ASSERT_EQ(comet_get_stats(c, &st, sizeof st), COMET_OK);
  EXPECT_GE(st.gaps, 1u);
  EXPECT_EQ(comet_close(c), COMET_OK);
}

// A program built against an older (shorter) or newer (longer) struct gets what fits, the
// rest zeroed, and the size the library filled.
TEST_F(CAbiTest, StructsAreVersionedBySize) {
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  AppendEach(c, "v:shard:0000", Payloads(4));
  unsigned char buf[sizeof(comet_stats) + 16];
  std::memset(buf, 0xAB, sizeof buf);
  ASSERT_EQ(comet_get_stats(c, reinterpret_cast<comet_stats*>(buf), sizeof buf), COMET_OK);
  comet_stats st;
  std::memcpy(&st, buf, sizeof st);
  EXPECT_EQ(st.size, sizeof(comet_stats));
  EXPECT_EQ(st.appended_entries, 4u);
  for (size_t i = sizeof(comet_stats); i < sizeof buf; i++) EXPECT_EQ(buf[i], 0) << i;

  // An older program that knew the fields up to appended_entries.
  const size_t old_size = offsetof(comet_stats, appended_entries) + sizeof(uint64_t);
  std::memset(buf, 0xAB, sizeof buf);
  ASSERT_EQ(comet_get_stats(c, reinterpret_cast<comet_stats*>(buf), old_size), COMET_OK);
  std::memcpy(&st, buf, sizeof st);
  EXPECT_EQ(st.size, old_size);
  EXPECT_EQ(st.appended_entries, 4u);
  for (size_t i = old_size; i < sizeof buf; i++) EXPECT_EQ(buf[i], 0xAB) << "byte " << i << " written";

  comet_stream_info info;
  EXPECT_EQ(comet_inspect(c, "v:shard:0000", &info, 4), COMET_ERR_INVALID);
  EXPECT_EQ(comet_get_stats(c, &st, 0), COMET_ERR_INVALID);
  EXPECT_EQ(comet_close(c), COMET_OK);
}

// comet_retention_run deletes what the client's retention.* keys say, reports it, and the
// directory's counters add it up; deleted entries read NOT_FOUND.
TEST_F(CAbiTest, RetentionRunDeletesReportsAndCounts) {
  comet_client* c = OpenWith({{"storage.max_segment_bytes", "16KiB"},
                              {"retention.max_shard_bytes", "48KiB"},
                              {"retention.interval", "0"}});
  ASSERT_NE(c, nullptr);
  AppendEach(c, "ret:shard:0000", Payloads(5000));
  comet_stream_info before{};
  ASSERT_EQ(comet_inspect(c, "ret:shard:0000", &before, sizeof before), COMET_OK);
  ASSERT_GT(before.segments, 3u);

  comet_retention_report r;
  std::memset(&r, 0xAB, sizeof r);
  ASSERT_EQ(comet_retention_run(c, &r, sizeof r), COMET_OK) << comet_last_error();
  EXPECT_EQ(r.size, sizeof r);
  EXPECT_EQ(r.reserved, 0u);
  comet_stream_info after{};
  ASSERT_EQ(comet_inspect(c, "ret:shard:0000", &after, sizeof after), COMET_OK);
  EXPECT_EQ(r.segments, before.segments - after.segments);
  EXPECT_EQ(r.entries, after.first_entry);
  EXPECT_GT(r.bytes, r.entries * 10);
  EXPECT_EQ(r.unconsumed, 0u);
  char buf[16];
  size_t n = 0;
  int64_t ts = 0;
  EXPECT_EQ(comet_read(c, "ret:shard:0000", 0, buf, sizeof buf, &n, &ts), COMET_ERR_NOT_FOUND);
  ASSERT_EQ(comet_read(c, "ret:shard:0000", after.first_entry, buf, sizeof buf, &n, &ts),
            COMET_OK);
  EXPECT_EQ(std::string(buf, n), Payload(after.first_entry));

  // A second pass finds nothing more; out may be NULL; an old program's shorter struct.
  ASSERT_EQ(comet_retention_run(c, nullptr, 0), COMET_OK);
  unsigned char old[offsetof(comet_retention_report, segments) + 8 + 8];
  std::memset(old, 0xAB, sizeof old);
  const size_t old_size = offsetof(comet_retention_report, segments) + 8;
  ASSERT_EQ(comet_retention_run(c, reinterpret_cast<comet_retention_report*>(old), old_size),
            COMET_OK);
  for (size_t i = old_size; i < sizeof old; i++) EXPECT_EQ(old[i], 0xAB) << "byte " << i;
  EXPECT_EQ(comet_retention_run(c, &r, 4), COMET_ERR_INVALID);
  EXPECT_EQ(comet_retention_run(nullptr, &r, sizeof r), COMET_ERR_INVALID);

  comet_stats st;
  ASSERT_EQ(comet_get_stats(c, &st, sizeof st), COMET_OK);
  EXPECT_EQ(st.retention_passes, 3u);
  EXPECT_EQ(st.retention_segments, r.segments);
  EXPECT_EQ(st.retention_entries, r.entries);
  EXPECT_EQ(st.retention_bytes, r.bytes);
  EXPECT_EQ(st.retention_unconsumed, 0u);
  EXPECT_GT(st.retention_last_ns, 0);
  EXPECT_EQ(comet_close(c), COMET_OK);

  comet_client* ro = OpenWith({{"open.read_only", "true"}});
  ASSERT_NE(ro, nullptr);
  EXPECT_EQ(comet_retention_run(ro, &r, sizeof r), COMET_ERR_INVALID);
  EXPECT_TRUE(comet_test::Contains(comet_last_error(), "read-only")) << comet_last_error();
  EXPECT_EQ(comet_close(ro), COMET_OK);
}

// A misspelt name given to comet_wait is an error, not a new stream holding a control slot.
TEST_F(CAbiTest, WaitOnAMissingStreamIsNotFoundAndCreatesNothing) {
  comet_client* c = Open("single");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(comet_wait(c, "typo:shard:0000", 0, 0), COMET_ERR_NOT_FOUND);
  EXPECT_TRUE(comet_test::Contains(comet_last_error(), "typo:shard:0000")) << comet_last_error();
  std::vector<std::string> names;
  EXPECT_EQ(comet_list_streams(c, Collect, &names), 0);
  comet_stats st;
  ASSERT_EQ(comet_get_stats(c, &st, sizeof st), COMET_OK);
  EXPECT_EQ(st.streams, 0u);
  EXPECT_EQ(comet_close(c), COMET_OK);
  EXPECT_TRUE(comet_test::ListFilesRecursive(dir_ + "/streams", "PREFIX").empty());
}

// comet_id is laid out as comet.h promises (and as the library's own id type, asserted there).
TEST(CAbiLayout, IdFieldsSitWhereTheHeaderPutsThem) {
  EXPECT_EQ(offsetof(comet_id, prefix_id), 0u);
  EXPECT_EQ(offsetof(comet_id, shard), 4u);
  EXPECT_EQ(offsetof(comet_id, entry), 8u);
  EXPECT_EQ(sizeof(comet_id), 16u);
  EXPECT_EQ(offsetof(comet_id, entry), offsetof(comet::EntryId, entry));
}

}  // namespace
