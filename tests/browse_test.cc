// Browsing without touching offsets: the last N entries, the oldest and newest timestamps, every
// group's offset and lag per stream (ReadStats and its renderings), from C++ and C.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "comet/browse.h"
#include "comet/client.h"
#include "comet/comet.h"
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
using comet::Entry;
using comet::EntryId;
using comet::Message;
using comet::Status;

// "<stream>#<i>": 14 bytes for a 12-byte stream name and i < 10, so a record is 16 + 14 bytes.
std::string Payload(const std::string& stream, uint64_t i) {
  return stream + "#" + std::to_string(i);
}

class BrowseTest : public comet_test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    Config cfg;
    cfg.storage.prefault_bytes = 0;
    cfg.storage.max_segment_bytes = 1 << 20;
    cfg.sync.mode = comet::SyncMode::kNone;
    auto r = Client::Open(dir_, cfg);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    c_ = std::move(r).value();
  }

  // Appends Payload(stream, 0..n-1); returns the ids.
  std::vector<EntryId> Fill(const std::string& stream, uint64_t n) {
    std::vector<EntryId> ids(n);
    for (uint64_t i = 0; i < n; i++) {
      Status st = c_->Append(stream, Payload(stream, i), &ids[i]);
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
    return ids;
  }

  std::unique_ptr<Consumer> Join(const std::string& group) {
    auto r = Consumer::Open(c_.get(), group);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  // Reads up to n entries of `stream` as `k` and acks the first `ack` of them.
  static void ReadAndAck(Consumer* k, const std::string& stream, size_t n, size_t ack) {
    std::vector<Message> msgs;
    ASSERT_TRUE(k->Read(stream, n, &msgs).ok());
    ASSERT_EQ(msgs.size(), n);
    ASSERT_TRUE(k->Ack(std::span<const Message>(msgs.data(), ack)).ok());
  }

  // Flips a payload byte of entry `entry` of a stream written by Fill (one segment).
  void Damage(const EntryId& id) {
    auto segs = comet_test::ListSegments(dir_, id.prefix_id, id.shard);
    ASSERT_EQ(segs.size(), 1u);
    ASSERT_TRUE(comet_test::FlipByte(segs[0], comet::format::kSegmentHeaderSize + id.entry * 30 + 20));
  }

  static std::vector<std::string> Datas(const std::vector<Entry>& entries) {
    std::vector<std::string> out;
    for (const Entry& e : entries) out.emplace_back(e.data);
    return out;
  }

  std::unique_ptr<Client> c_;
};

TEST_F(BrowseTest, ReadLastGivesTheLastNEntriesOldestFirst) {
  Fill("b:shard:0000", 10);
  std::vector<Entry> got;
  ASSERT_TRUE(comet::ReadLast(c_.get(), "b:shard:0000", 3, &got).ok());
  EXPECT_EQ(Datas(got), (std::vector<std::string>{"b:shard:0000#7", "b:shard:0000#8",
                                                  "b:shard:0000#9"}));
  ASSERT_TRUE(comet::ReadLast(c_.get(), "b:shard:0000", 50, &got).ok());
  EXPECT_EQ(got.size(), 10u);
  EXPECT_EQ(got.front().id.entry, 0u);
  ASSERT_TRUE(comet::ReadLast(c_.get(), "b:shard:0000", 0, &got).ok());
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(comet::ReadLast(c_.get(), "none:shard:0000", 3, &got).code(), Code::kNotFound);
}

TEST_F(BrowseTest, DamagedEntriesAreLeftOutOfTheLastNAndOfTheTimeSpan) {
  const std::vector<EntryId> ids = Fill("b:shard:0000", 10);
  Damage(ids[0]);
  Damage(ids[9]);
  std::vector<Entry> got;
  uint64_t corrupt = 0;
  ASSERT_TRUE(comet::ReadLast(c_.get(), "b:shard:0000", 3, &got, &corrupt).ok());
  EXPECT_EQ(Datas(got), (std::vector<std::string>{"b:shard:0000#7", "b:shard:0000#8"}));
  EXPECT_EQ(corrupt, 1u);
  auto span = comet::StreamTimeSpan(c_.get(), "b:shard:0000");
  ASSERT_TRUE(span.ok()) << span.status().ToString();
  EXPECT_EQ(span->oldest_entry, 1u);
  EXPECT_EQ(span->newest_entry, 8u);
}

TEST_F(BrowseTest, TimeSpanIsTheOldestAndNewestEntrysTimestamps) {
  auto span = comet::StreamTimeSpan(c_.get(), "t:shard:0000");
  EXPECT_EQ(span.status().code(), Code::kNotFound);
  ASSERT_TRUE(c_->GetStream("t:shard:0000").ok());
  span = comet::StreamTimeSpan(c_.get(), "t:shard:0000");
  ASSERT_TRUE(span.ok()) << span.status().ToString();
  EXPECT_TRUE(span->empty);
  EXPECT_EQ(span->oldest_ns, 0);
  Fill("t:shard:0000", 5);
  Entry first, last;
  ASSERT_TRUE(c_->Read("t:shard:0000", 0, &first).ok());
  ASSERT_TRUE(c_->Read("t:shard:0000", 4, &last).ok());
  span = comet::StreamTimeSpan(c_.get(), "t:shard:0000");
  ASSERT_TRUE(span.ok());
  EXPECT_FALSE(span->empty);
  EXPECT_EQ(span->oldest_entry, 0u);
  EXPECT_EQ(span->newest_entry, 4u);
  EXPECT_EQ(span->oldest_ns, first.timestamp_ns);
  EXPECT_EQ(span->newest_ns, last.timestamp_ns);
  EXPECT_LE(span->oldest_ns, span->newest_ns);
}

TEST_F(BrowseTest, StatsListEveryGroupsOffsetAndLagPerStream) {
  Fill("ev:shard:0000", 10);
  Fill("ev:shard:0001", 4);
  auto a = Join("a");
  auto b = Join("b");
  ReadAndAck(a.get(), "ev:shard:0000", 5, 3);  // 3 committed, 2 delivered and not acked
  ReadAndAck(b.get(), "ev:shard:0001", 4, 4);
  ReadAndAck(b.get(), "ev:shard:0000", 1, 0);
  auto s = comet::ReadStats(dir_);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->groups.size(), 3u);
  const auto& g = s->groups;
  EXPECT_EQ(g[0].group, "a");
  EXPECT_EQ(g[0].stream, "ev:shard:0000");
  EXPECT_EQ(g[0].committed, 3u);
  EXPECT_EQ(g[0].end, 10u);
  EXPECT_EQ(g[0].lag, 7u);
  EXPECT_GT(g[0].updated_ns, 0);
  EXPECT_EQ(g[1].group, "b");
  EXPECT_EQ(g[1].stream, "ev:shard:0000");
  EXPECT_EQ(g[1].committed, 0u);
  EXPECT_EQ(g[1].lag, 10u);
  EXPECT_EQ(g[1].updated_ns, 0);
  EXPECT_EQ(g[2].stream, "ev:shard:0001");
  EXPECT_EQ(g[2].shard, 1u);
  EXPECT_EQ(g[2].committed, 4u);
  EXPECT_EQ(g[2].lag, 0u);
  EXPECT_EQ(*a->Lag("ev:shard:0000"), g[0].lag) << "the consumer's own figure agrees";

  const std::string json = comet::FormatStatsJson(*s);
  EXPECT_NE(json.find("\"groups\":[{\"group\":\"a\",\"stream\":\"ev:shard:0000\",\"prefix_id\":" +
                      std::to_string(g[0].prefix_id) +
                      ",\"shard\":0,\"committed\":3,\"end\":10,\"lag\":7,\"skipped\":0,"),
            std::string::npos)
      << json;
  const std::string prom = comet::FormatStatsPrometheus(*s);
  const std::string labels = "{group=\"a\",stream=\"ev:shard:0000\",prefix_id=\"" +
                             std::to_string(g[0].prefix_id) + "\",shard=\"0\"}";
  EXPECT_NE(prom.find("comet_group_lag" + labels + " 7\n"), std::string::npos) << prom;
  EXPECT_NE(prom.find("comet_group_committed_entry" + labels + " 3\n"), std::string::npos);
  EXPECT_NE(prom.find("comet_group_skipped_entries_total" + labels + " 0\n"), std::string::npos);
  const std::string text = comet::FormatStatsText(*s);
  EXPECT_NE(text.find("groups:\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  a      ev:shard:0000             3            10             7"),
            std::string::npos)
      << text;
}

TEST_F(BrowseTest, BrowsingMovesNoOffset) {
  Fill("ev:shard:0000", 10);
  auto k = Join("g");
  ReadAndAck(k.get(), "ev:shard:0000", 6, 4);  // 4 committed, 4 and 5 delivered and not acked
  std::vector<Entry> last;
  ASSERT_TRUE(comet::ReadLast(c_.get(), "ev:shard:0000", 10, &last).ok());
  ASSERT_TRUE(comet::StreamTimeSpan(c_.get(), "ev:shard:0000").ok());
  ASSERT_TRUE(comet::ReadStats(dir_).ok());
  auto it = c_->Scan("ev:shard:0000", 2);
  ASSERT_TRUE(it.ok());
  Entry e;
  while (it->Next(&e).ok()) {
  }
  EXPECT_EQ(*k->Committed("ev:shard:0000"), 4u);
  std::vector<Message> msgs;
  ASSERT_TRUE(k->Read("ev:shard:0000", 10, &msgs).ok());
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.front().id.entry, 6u) << "the consumer reads on where it stopped";
}

// The same from C.
class CBrowseTest : public BrowseTest {
 protected:
  void SetUp() override {
    BrowseTest::SetUp();
    ASSERT_TRUE(c_->Close().ok());
    c_.reset();
    comet_config* cfg = comet_config_new();
    ASSERT_EQ(comet_config_set(cfg, "sync.mode", "none"), COMET_OK);
    ASSERT_EQ(comet_open(dir_.c_str(), cfg, &cc_), COMET_OK) << comet_last_error();
    comet_config_free(cfg);
  }
  void TearDown() override {
    if (cc_) {
      EXPECT_EQ(comet_close(cc_), COMET_OK);
    }
    BrowseTest::TearDown();
  }
  void CFill(const char* stream, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
      const std::string p = Payload(stream, i);
      const void* data[] = {p.data()};
      const size_t lens[] = {p.size()};
      ASSERT_EQ(comet_append(cc_, stream, data, lens, 1, nullptr), COMET_OK) << comet_last_error();
    }
  }
  comet_client* cc_ = nullptr;
};

TEST_F(CBrowseTest, ScanLastReadsTheLastNEntriesAndFollowsAppends) {
  CFill("b:shard:0000", 10);
  comet_scan* it = nullptr;
  ASSERT_EQ(comet_scan_last(cc_, "b:shard:0000", 3, &it), COMET_OK) << comet_last_error();
  comet_message m[8];
  ASSERT_EQ(comet_scan_next(it, m, 8, 0), 3);
  EXPECT_EQ(m[0].id.entry, 7u);
  EXPECT_EQ(std::string(static_cast<const char*>(m[2].data), m[2].len), "b:shard:0000#9");
  CFill("b:shard:0000", 1);
  EXPECT_EQ(comet_scan_next(it, m, 8, 0), 1);
  comet_scan_close(it);
  ASSERT_EQ(comet_scan_last(cc_, "b:shard:0000", 100, &it), COMET_OK);
  EXPECT_EQ(comet_scan_position(it), 0u);
  comet_scan_close(it);
  EXPECT_EQ(comet_scan_last(cc_, "none:shard:0000", 3, &it), COMET_ERR_NOT_FOUND);
  EXPECT_EQ(comet_scan_last(cc_, "bad", 3, &it), COMET_ERR_INVALID);
  EXPECT_EQ(comet_scan_last(cc_, "b:shard:0000", 3, nullptr), COMET_ERR_INVALID);
}

TEST_F(CBrowseTest, InspectGivesTheOldestAndNewestTimestamps) {
  CFill("t:shard:0000", 4);
  comet_stream_info info;
  ASSERT_EQ(comet_inspect(cc_, "t:shard:0000", &info, sizeof info), COMET_OK) << comet_last_error();
  EXPECT_EQ(info.size, sizeof info);
  EXPECT_EQ(info.oldest_entry, 0u);
  EXPECT_EQ(info.newest_entry, 3u);
  comet_scan* it = nullptr;
  ASSERT_EQ(comet_scan_open(cc_, "t:shard:0000", 0, &it), COMET_OK);
  comet_message m[4];
  ASSERT_EQ(comet_scan_next(it, m, 4, 0), 4);
  EXPECT_EQ(info.oldest_ns, m[0].timestamp_ns);
  EXPECT_EQ(info.newest_ns, m[3].timestamp_ns);
  comet_scan_close(it);
}

TEST_F(CBrowseTest, ListGroupOffsetsGivesEveryGroupsLagPerStreamWithoutJoining) {
  CFill("ev:shard:0000", 6);
  comet_consumer* k = nullptr;
  ASSERT_EQ(comet_consumer_open(cc_, "g", &k), COMET_OK);
  comet_message m[4];
  ASSERT_EQ(comet_consumer_read(k, "ev:shard:*", m, 4, 0), 4);
  const comet_id acked[] = {m[0].id, m[1].id};
  ASSERT_EQ(comet_consumer_ack(k, acked, 2), COMET_OK);
  struct Seen {
    std::string group, stream;
    comet_group_offset o;
  };
  std::vector<Seen> seen;
  auto collect = [](void* arg, const comet_group_offset* o) {
    static_cast<std::vector<Seen>*>(arg)->push_back({o->group, o->stream, *o});
  };
  ASSERT_EQ(comet_list_group_offsets(cc_, collect, &seen), 1) << comet_last_error();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].group, "g");
  EXPECT_EQ(seen[0].stream, "ev:shard:0000");
  EXPECT_EQ(seen[0].o.size, sizeof(comet_group_offset));
  EXPECT_EQ(seen[0].o.committed, 2u);
  EXPECT_EQ(seen[0].o.next_entry, 6u);
  EXPECT_EQ(seen[0].o.lag, 4u);
  EXPECT_EQ(seen[0].o.prefix_id, m[0].id.prefix_id);
  uint64_t lag = 0;
  ASSERT_EQ(comet_consumer_lag(k, "ev:shard:*", &lag), COMET_OK);
  EXPECT_EQ(lag, seen[0].o.lag);
  EXPECT_EQ(comet_list_group_offsets(cc_, nullptr, nullptr), COMET_ERR_INVALID);
  EXPECT_EQ(comet_consumer_close(k), COMET_OK);
}

}  // namespace
