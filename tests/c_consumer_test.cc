// The C ABI of consumer groups: comet_consumer_open/read/ack/lag/close.
#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "comet/comet.h"
#include "test_util.h"

namespace {

class CConsumerTest : public comet_test::TempDirTest {
 protected:
  void TearDown() override {
    if (c_) {
      EXPECT_EQ(comet_close(c_), COMET_OK) << comet_last_error();
    }
    TempDirTest::TearDown();
  }

  comet_client* Open(std::vector<std::pair<const char*, const char*>> settings = {}) {
    comet_config* cfg = comet_config_new();
    settings.insert(settings.begin(), {{"sync.mode", "none"},
                                       {"storage.prefault_bytes", "0"},
                                       {"storage.max_segment_bytes", "1MiB"}});
    for (const auto& [key, value] : settings) {
      EXPECT_EQ(comet_config_set(cfg, key, value), COMET_OK) << key << ": " << comet_last_error();
    }
    comet_client* c = nullptr;
    EXPECT_EQ(comet_open(dir_.c_str(), cfg, &c), COMET_OK) << comet_last_error();
    comet_config_free(cfg);
    return c;
  }

  // Appends n entries "<stream>/<i>" to stream.
  void Fill(const std::string& stream, uint64_t from, uint64_t to) {
    for (uint64_t i = from; i < to; i++) {
      const std::string p = Payload(stream, i);
      const void* data[] = {p.data()};
      const size_t lens[] = {p.size()};
      ASSERT_EQ(comet_append(c_, stream.c_str(), data, lens, 1, nullptr), COMET_OK)
          << comet_last_error();
    }
  }

  comet_consumer* Join(const char* group) {
    comet_consumer* k = nullptr;
    EXPECT_EQ(comet_consumer_open(c_, group, &k), COMET_OK) << comet_last_error();
    return k;
  }

  static std::string Payload(const std::string& stream, uint64_t i) {
    return stream + "/" + std::to_string(i);
  }

  // Reads `pattern` to its current end, `max` per call, checking every view after its call;
  // returns "<stream>/<entry>" per message, and acks them when `ack`.
  static std::vector<std::string> Drain(comet_consumer* k, const char* pattern, size_t max,
                                        bool ack) {
    std::vector<std::string> got;
    std::vector<comet_message> m(max);
    for (;;) {
      const int n = comet_consumer_read(k, pattern, m.data(), max, 0);
      EXPECT_GE(n, 0) << comet_last_error();
      if (n <= 0) return got;
      EXPECT_LE(size_t(n), max);
      std::vector<comet_id> ids;
      for (int i = 0; i < n; i++) {
        const std::string data(static_cast<const char*>(m[i].data), m[i].len);
        EXPECT_EQ(data, Payload(m[i].stream, m[i].id.entry));
        EXPECT_GT(m[i].timestamp_ns, 0);
        got.push_back(data);
        ids.push_back(m[i].id);
      }
      if (ack) {
        EXPECT_EQ(comet_consumer_ack(k, ids.data(), ids.size()), COMET_OK) << comet_last_error();
      }
    }
  }

  static std::vector<std::string> Expected(const std::string& stream, uint64_t from,
                                           uint64_t to) {
    std::vector<std::string> v;
    for (uint64_t i = from; i < to; i++) v.push_back(Payload(stream, i));
    return v;
  }

  static uint64_t Lag(comet_consumer* k, const char* pattern) {
    uint64_t lag = ~uint64_t{0};
    EXPECT_EQ(comet_consumer_lag(k, pattern, &lag), COMET_OK) << comet_last_error();
    return lag;
  }

  comet_client* c_ = nullptr;
};

TEST_F(CConsumerTest, TwoGroupsEachReceiveEveryEntryOfEveryShard) {
  c_ = Open();
  Fill("ev:shard:0000", 0, 40);
  Fill("ev:shard:0001", 0, 25);
  std::multiset<std::string> want;
  for (const auto& p : Expected("ev:shard:0000", 0, 40)) want.insert(p);
  for (const auto& p : Expected("ev:shard:0001", 0, 25)) want.insert(p);
  for (const char* group : {"a", "b"}) {
    comet_consumer* k = Join(group);
    EXPECT_EQ(Lag(k, "ev:shard:*"), 65u);
    const std::vector<std::string> got = Drain(k, "ev:shard:*", 7, true);
    EXPECT_EQ(std::multiset<std::string>(got.begin(), got.end()), want) << group;
    EXPECT_EQ(Lag(k, "ev:shard:*"), 0u);
    EXPECT_EQ(comet_consumer_close(k), COMET_OK) << comet_last_error();
  }
}

TEST_F(CConsumerTest, ReopenResumesAfterTheLastAckAndRedeliversTheUnacked) {
  c_ = Open();
  Fill("r:shard:0000", 0, 30);
  comet_consumer* k = Join("g");
  comet_message m[20];
  ASSERT_EQ(comet_consumer_read(k, "r:shard:0000", m, 20, 0), 20) << comet_last_error();
  comet_id ids[12];
  for (int i = 0; i < 12; i++) ids[i] = m[i].id;  // 12..19 delivered, not acked
  ASSERT_EQ(comet_consumer_ack(k, ids, 12), COMET_OK) << comet_last_error();
  EXPECT_EQ(Lag(k, "r:shard:0000"), 18u);
  ASSERT_EQ(comet_consumer_close(k), COMET_OK) << comet_last_error();
  ASSERT_EQ(comet_close(c_), COMET_OK) << comet_last_error();

  c_ = Open();
  k = Join("g");
  EXPECT_EQ(Drain(k, "r:shard:0000", 5, false), Expected("r:shard:0000", 12, 30));
  EXPECT_EQ(comet_consumer_close(k), COMET_OK);
}

TEST_F(CConsumerTest, OutOfOrderAcksAreHeldUntilTheGapCloses) {
  c_ = Open();
  Fill("o:shard:0000", 0, 3);
  comet_consumer* k = Join("g");
  comet_message m[3];
  ASSERT_EQ(comet_consumer_read(k, "o:shard:0000", m, 3, 0), 3);
  const comet_id later[] = {m[2].id, m[1].id};
  ASSERT_EQ(comet_consumer_ack(k, later, 2), COMET_OK) << comet_last_error();
  EXPECT_EQ(Lag(k, "o:shard:0000"), 3u) << "entry 0 was delivered and not acked";
  ASSERT_EQ(comet_consumer_ack(k, &m[0].id, 1), COMET_OK) << comet_last_error();
  EXPECT_EQ(Lag(k, "o:shard:0000"), 0u);
  EXPECT_EQ(comet_consumer_ack(k, later, 2), COMET_OK) << "acking again is harmless";
  EXPECT_EQ(comet_consumer_ack(k, nullptr, 0), COMET_OK);
  EXPECT_EQ(comet_consumer_close(k), COMET_OK);
}

TEST_F(CConsumerTest, AckOfAnIdNeverDeliveredIsInvalidAndTheOthersAreStillAcked) {
  c_ = Open();
  Fill("a:shard:0000", 0, 10);
  comet_consumer* k = Join("g");
  comet_message m[3];
  ASSERT_EQ(comet_consumer_read(k, "a:shard:0000", m, 3, 0), 3);
  comet_id beyond = m[2].id;
  beyond.entry = 3;  // stored, not delivered
  const comet_id mixed[] = {m[0].id, beyond, m[1].id};
  EXPECT_EQ(comet_consumer_ack(k, mixed, 3), COMET_ERR_INVALID);
  EXPECT_NE(std::strstr(comet_last_error(), "never delivered"), nullptr) << comet_last_error();
  EXPECT_NE(std::strstr(comet_last_error(), "entry 3"), nullptr) << comet_last_error();
  EXPECT_EQ(Lag(k, "a:shard:0000"), 8u) << "entries 0 and 1 are committed";
  comet_id unknown = m[0].id;
  unknown.shard = 7;  // a stream this consumer never read
  EXPECT_EQ(comet_consumer_ack(k, &unknown, 1), COMET_ERR_INVALID);
  EXPECT_EQ(comet_consumer_close(k), COMET_OK);
}

TEST_F(CConsumerTest, GroupNamesOfOneTo255BytesAreAccepted) {
  c_ = Open();
  comet_consumer* k = nullptr;
  EXPECT_EQ(comet_consumer_open(c_, "", &k), COMET_ERR_INVALID);
  EXPECT_NE(std::strstr(comet_last_error(), "0 bytes"), nullptr) << comet_last_error();
  EXPECT_EQ(comet_consumer_open(c_, std::string(256, 'g').c_str(), &k), COMET_ERR_INVALID);
  EXPECT_NE(std::strstr(comet_last_error(), "256 bytes"), nullptr) << comet_last_error();
  EXPECT_EQ(k, nullptr) << "*out is set only on success";
  ASSERT_EQ(comet_consumer_open(c_, std::string(255, 'g').c_str(), &k), COMET_OK)
      << comet_last_error();
  EXPECT_EQ(comet_consumer_close(k), COMET_OK);
}

TEST_F(CConsumerTest, FullGroupTableIsFull) {
  c_ = Open({{"consumers.max_groups", "1"}});
  comet_consumer* a = Join("a");
  comet_consumer* b = nullptr;
  EXPECT_EQ(comet_consumer_open(c_, "b", &b), COMET_ERR_FULL);
  EXPECT_NE(std::strstr(comet_last_error(), "consumers.max_groups"), nullptr) << comet_last_error();
  EXPECT_EQ(comet_consumer_close(a), COMET_OK);
}

TEST_F(CConsumerTest, ReadOnlyClientCannotJoinAGroup) {
  c_ = Open();
  Fill("s:shard:0000", 0, 1);
  comet_client* ro = nullptr;
  comet_config* cfg = comet_config_new();
  ASSERT_EQ(comet_config_set(cfg, "open.read_only", "true"), COMET_OK);
  ASSERT_EQ(comet_open(dir_.c_str(), cfg, &ro), COMET_OK) << comet_last_error();
  comet_config_free(cfg);
  comet_consumer* k = nullptr;
  EXPECT_EQ(comet_consumer_open(ro, "g", &k), COMET_ERR_INVALID);
  EXPECT_NE(std::strstr(comet_last_error(), "read-only"), nullptr) << comet_last_error();
  EXPECT_EQ(comet_close(ro), COMET_OK);
}

TEST_F(CConsumerTest, PatternsNeedTheirSyntaxAndTheExactPrefix) {
  c_ = Open();
  Fill("ev:shard:0000", 0, 2);
  Fill("ev:v2:shard:0000", 0, 2);
  comet_consumer* k = Join("g");
  comet_message m[4];
  uint64_t lag = 0;
  for (const char* bad : {"", "ev", "ev:*", "*", "ev:shard:", "ev:shard:00*", ":shard:*",
                          "ev:shard:*x", "ev:shard:00001", "ev:shard:000g"}) {
    EXPECT_EQ(comet_consumer_read(k, bad, m, 4, 0), COMET_ERR_INVALID) << bad;
    EXPECT_NE(std::strstr(comet_last_error(), bad), nullptr) << comet_last_error();
    EXPECT_EQ(comet_consumer_lag(k, bad, &lag), COMET_ERR_INVALID) << bad;
  }
  EXPECT_EQ(Drain(k, "ev:shard:*", 4, true), Expected("ev:shard:0000", 0, 2));
  // A pattern or stream that names nothing yet is not an error.
  EXPECT_EQ(comet_consumer_read(k, "none:shard:*", m, 4, 0), 0) << comet_last_error();
  EXPECT_EQ(comet_consumer_read(k, "none:shard:0001", m, 4, 0), 0) << comet_last_error();
  EXPECT_EQ(Lag(k, "none:shard:*"), 0u);
  EXPECT_EQ(comet_consumer_close(k), COMET_OK);
}

TEST_F(CConsumerTest, NullArgumentsAreInvalid) {
  c_ = Open();
  comet_consumer* k = nullptr;
  EXPECT_EQ(comet_consumer_open(nullptr, "g", &k), COMET_ERR_INVALID);
  EXPECT_EQ(comet_consumer_open(c_, nullptr, &k), COMET_ERR_INVALID);
  EXPECT_EQ(comet_consumer_open(c_, "g", nullptr), COMET_ERR_INVALID);
  k = Join("g");
  comet_message m[1];
  uint64_t lag = 0;
  EXPECT_EQ(comet_consumer_read(nullptr, "s:shard:0000", m, 1, 0), COMET_ERR_INVALID);
  EXPECT_EQ(comet_consumer_read(k, nullptr, m, 1, 0), COMET_ERR_INVALID);
  EXPECT_EQ(comet_consumer_read(k, "s:shard:0000", nullptr, 1, 0), COMET_ERR_INVALID);
  EXPECT_EQ(comet_consumer_read(k, "s:shard:0000", nullptr, 0, 0), 0);
  EXPECT_EQ(comet_consumer_ack(nullptr, nullptr, 0), COMET_ERR_INVALID);
  EXPECT_EQ(comet_consumer_ack(k, nullptr, 1), COMET_ERR_INVALID);
  EXPECT_EQ(comet_consumer_lag(k, "s:shard:0000", nullptr), COMET_ERR_INVALID);
  EXPECT_EQ(comet_consumer_lag(nullptr, "s:shard:0000", &lag), COMET_ERR_INVALID);
  EXPECT_EQ(comet_consumer_close(nullptr), COMET_OK);
  EXPECT_EQ(comet_consumer_close(k), COMET_OK);
}

TEST_F(CConsumerTest, ReadWaitsForAnAppendOrItsTimeout) {
  c_ = Open();
  Fill("w:shard:0000", 0, 1);
  comet_consumer* k = Join("g");
  comet_message m[4];
  ASSERT_EQ(comet_consumer_read(k, "w:shard:*", m, 4, 0), 1);
  EXPECT_EQ(comet_consumer_read(k, "w:shard:*", m, 4, 0), 0);
  EXPECT_EQ(comet_consumer_read(k, "w:shard:*", m, 4, 20), 0) << comet_last_error();
  // A read that waits forever returns the entry appended by another thread, whether the append
  // lands before or during its sleep.
  std::thread writer([&] { Fill("w:shard:0000", 1, 2); });
  const int n = comet_consumer_read(k, "w:shard:*", m, 4, -1);
  writer.join();
  ASSERT_EQ(n, 1) << comet_last_error();
  EXPECT_EQ(m[0].id.entry, 1u);
  EXPECT_STREQ(m[0].stream, "w:shard:0000");
  EXPECT_EQ(comet_consumer_close(k), COMET_OK);
}

TEST_F(CConsumerTest, AfterItsClientClosesAConsumerIsClosedAndStillFreed) {
  c_ = Open();
  Fill("x:shard:0000", 0, 2);
  comet_consumer* k = Join("g");
  comet_message m[2];
  ASSERT_EQ(comet_consumer_read(k, "x:shard:0000", m, 1, 0), 1);
  ASSERT_EQ(comet_consumer_ack(k, &m[0].id, 1), COMET_OK);
  ASSERT_EQ(comet_close(c_), COMET_OK);
  c_ = nullptr;
  uint64_t lag = 0;
  EXPECT_EQ(comet_consumer_read(k, "x:shard:0000", m, 2, 0), COMET_ERR_CLOSED);
  EXPECT_EQ(comet_consumer_ack(k, &m[0].id, 1), COMET_ERR_CLOSED);
  EXPECT_EQ(comet_consumer_lag(k, "x:shard:0000", &lag), COMET_ERR_CLOSED);
  EXPECT_EQ(comet_consumer_close(k), COMET_OK);
  // The ack made before the client closed is kept.
  c_ = Open();
  k = Join("g");
  EXPECT_EQ(Drain(k, "x:shard:0000", 2, false), Expected("x:shard:0000", 1, 2));
  EXPECT_EQ(comet_consumer_close(k), COMET_OK);
}

TEST(CAbiErrors, OutOfMemoryHasItsOwnCode) {
  EXPECT_STREQ(comet_strerror(COMET_ERR_NOMEM), "COMET_ERR_NOMEM");
  EXPECT_LT(COMET_ERR_NOMEM, COMET_ERR_VERSION);
}

}  // namespace
