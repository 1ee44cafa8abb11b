// The C ABI's routing and waiting calls.
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "comet/comet.h"
#include "test_util.h"

namespace {

using comet_test::TempDirTest;

class CAbiTest : public TempDirTest {
 protected:
  comet_client* Open(const char* mode) {
    comet_config* cfg = comet_config_new();
    EXPECT_EQ(comet_config_set(cfg, "concurrency.mode", mode), COMET_OK);
    comet_client* c = nullptr;
    EXPECT_EQ(comet_open(dir_.c_str(), cfg, &c), COMET_OK) << comet_last_error();
    comet_config_free(cfg);
    return c;
  }
};

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

}  // namespace
