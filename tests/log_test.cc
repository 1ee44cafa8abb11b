// Single-process behaviour of the log: append, read, sizes, compression, rotation, identities,
// reopen, the C ABI, sync modes and concurrent appenders on one shard.
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "comet/client.h"
#include "comet/comet.h"
#include "comet/config.h"
#include "comet/format.h"
#include "comet/stats.h"
#include "comet/status.h"
#include "comet/stream.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Code;
using comet::Config;
using comet::Entry;
using comet::EntryId;
using comet::Status;

constexpr uint64_t kKiB = 1024, kMiB = 1024 * kKiB;

#define EXPECT_OK(expr)                                        \
  do {                                                         \
    const ::comet::Status _s = (expr);                         \
    EXPECT_TRUE(_s.ok()) << #expr << ": " << _s.ToString();    \
  } while (0)

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class LogTest : public comet_test::TempDirTest {
 protected:
  std::unique_ptr<Client> Open(const Config& cfg = Config()) {
    auto r = Client::Open(dir_, cfg);
    EXPECT_TRUE(r.ok()) << "Open(" << dir_ << "): " << r.status().ToString();
    if (!r.ok()) return nullptr;
    return std::move(r).value();
  }

  static Config Small(uint64_t max_segment_bytes) {
    Config c;
    c.storage.max_segment_bytes = max_segment_bytes;
    c.sync.mode = comet::SyncMode::kNone;
    return c;
  }

  // Reads one entry and returns its payload, or fails the test.
  static std::string MustRead(Client* c, std::string_view stream, uint64_t entry) {
    Entry e;
    Status s = c->Read(stream, entry, &e);
    EXPECT_TRUE(s.ok()) << stream << " entry " << entry << ": " << s.ToString();
    if (!s.ok()) return "<unreadable>";
    EXPECT_EQ(e.id.entry, entry);
    return std::string(e.data);
  }

  static std::vector<EntryId> AppendAll(Client* c, std::string_view stream,
                                        const std::vector<std::string>& payloads) {
    std::vector<std::string_view> views(payloads.begin(), payloads.end());
    std::vector<EntryId> ids(payloads.size());
    Status s = c->Append(stream, views, ids.data());
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) ids.clear();
    return ids;
  }
};

// ---- append and read ------------------------------------------------------------------------

TEST_F(LogTest, AppendedEntriesGetDenseIdsInOrderAndReadBack) {
  auto c = Open();
  ASSERT_TRUE(c);
  const std::string stream = "events:shard:0003";
  std::vector<EntryId> ids;
  const int64_t before = NowNs();
  for (int i = 0; i < 10; i++) {
    EntryId id;
    ASSERT_OK(c->Append(stream, "entry-" + std::to_string(i), &id));
    ids.push_back(id);
  }
  const int64_t after = NowNs();
  for (int i = 0; i < 10; i++) {
    EXPECT_EQ(ids[i].entry, static_cast<uint64_t>(i));
    EXPECT_EQ(ids[i].shard, 3u);
    EXPECT_EQ(ids[i].prefix_id, ids[0].prefix_id);
  }
  for (int i = 0; i < 10; i++) {
    Entry e;
    ASSERT_OK(c->Read(stream, i, &e));
    EXPECT_EQ(e.data, "entry-" + std::to_string(i));
    EXPECT_EQ(e.id, ids[i]);
    EXPECT_FALSE(e.compressed);
    EXPECT_GE(e.timestamp_ns, before);
    EXPECT_LE(e.timestamp_ns, after);
  }
}

TEST_F(LogTest, BatchAppendReturnsIdsInInputOrder) {
  auto c = Open();
  ASSERT_TRUE(c);
  const std::string stream = "batch:shard:0000";
  auto ids = AppendAll(c.get(), stream, {"a", "bb", "ccc", "dddd", "eeeee"});
  ASSERT_EQ(ids.size(), 5u);
  for (uint64_t i = 0; i < 5; i++) {
    EXPECT_EQ(ids[i].entry, i);
    EXPECT_EQ(MustRead(c.get(), stream, i), std::string(i + 1, static_cast<char>('a' + i)));
  }
  ids = AppendAll(c.get(), stream, {"f", "g"});
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0].entry, 5u);
  EXPECT_EQ(ids[1].entry, 6u);
}

TEST_F(LogTest, LengthCountsEntries) {
  auto c = Open();
  ASSERT_TRUE(c);
  const std::string stream = "len:shard:0001";
  ASSERT_TRUE(c->GetStream(stream).ok());
  auto len = c->Length(stream);
  ASSERT_TRUE(len.ok()) << len.status().ToString();
  EXPECT_EQ(*len, 0u);
  for (int i = 0; i < 7; i++) ASSERT_OK(c->Append(stream, "x"));
  len = c->Length(stream);
  ASSERT_TRUE(len.ok()) << len.status().ToString();
  EXPECT_EQ(*len, 7u);
}

TEST_F(LogTest, StreamHandleAppendsAndReads) {
  auto c = Open();
  ASSERT_TRUE(c);
  auto h = c->GetStream("handle:v2:shard:00A7");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  comet::Stream* s = *h;
  EXPECT_EQ(s->name(), "handle:v2:shard:00A7");
  EXPECT_EQ(s->shard(), 0xA7u);
  const std::string_view payloads[] = {"one", "two"};
  EntryId ids[2];
  ASSERT_OK(c->Append(s, payloads, ids));
  EXPECT_EQ(ids[0].prefix_id, s->prefix_id());
  EXPECT_EQ(ids[1].entry, 1u);
  Entry e;
  ASSERT_OK(c->Read(s, 1, &e));
  EXPECT_EQ(e.data, "two");
  // The same name gives the same handle.
  auto again = c->GetStream("handle:v2:shard:00A7");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, s);
}

TEST_F(LogTest, InvalidStreamNamesAreRefused) {
  auto c = Open();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->Append("nope", "x").code(), Code::kInvalid);
  EXPECT_EQ(c->Append("x:shard:00a7", "x").code(), Code::kInvalid);
  EXPECT_EQ(c->Append("a/b:shard:0001", "x").code(), Code::kInvalid);
  auto g = c->GetStream("x:shard:42");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), Code::kInvalid);
  EXPECT_TRUE(c->Streams().empty());
}

TEST_F(LogTest, StreamsListsEveryStreamSorted) {
  auto c = Open();
  ASSERT_TRUE(c);
  ASSERT_OK(c->Append("b:shard:0002", "x"));
  ASSERT_OK(c->Append("a:shard:0001", "x"));
  ASSERT_OK(c->Append("b:shard:0001", "x"));
  EXPECT_EQ(c->Streams(),
            (std::vector<std::string>{"a:shard:0001", "b:shard:0001", "b:shard:0002"}));
}

// ---- sizes ----------------------------------------------------------------------------------

TEST_F(LogTest, EntrySizesRoundTripAcrossReopen) {
  const std::string stream = "sizes:shard:0000";
  const std::vector<size_t> sizes = {0, 1, 4095, 4096, 4097, 10 * kMiB + 1};
  std::vector<std::string> payloads;
  for (size_t i = 0; i < sizes.size(); i++) payloads.push_back(comet_test::RandomBytes(i, sizes[i]));
  payloads.push_back(comet_test::CompressibleBytes(99, 10 * kMiB + 1));
  {
    auto c = Open();
    ASSERT_TRUE(c);
    for (size_t i = 0; i < payloads.size(); i++) {
      EntryId id;
      ASSERT_OK(c->Append(stream, payloads[i], &id));
      EXPECT_EQ(id.entry, i);
    }
    for (size_t i = 0; i < payloads.size(); i++) {
      Entry e;
      ASSERT_OK(c->Read(stream, i, &e));
      EXPECT_EQ(e.data.size(), payloads[i].size()) << "entry " << i;
      EXPECT_TRUE(e.data == payloads[i]) << "entry " << i << " differs";
    }
    ASSERT_OK(c->Close());
  }
  auto c = Open();
  ASSERT_TRUE(c);
  for (size_t i = 0; i < payloads.size(); i++) {
    Entry e;
    ASSERT_OK(c->Read(stream, i, &e));
    EXPECT_EQ(e.data.size(), payloads[i].size()) << "entry " << i;
    EXPECT_TRUE(e.data == payloads[i]) << "entry " << i << " differs after reopen";
  }
}

TEST_F(LogTest, MaximumSizeEntryRoundTripsAcrossReopen) {
  const std::string stream = "big:shard:0000";
  const std::string payload = comet_test::RandomBytes(64, 64 * kMiB);
  {
    auto c = Open();
    ASSERT_TRUE(c);
    ASSERT_OK(c->Append(stream, "before"));
    EntryId id;
    ASSERT_OK(c->Append(stream, payload, &id));
    EXPECT_EQ(id.entry, 1u);
    ASSERT_OK(c->Append(stream, "after"));
    Entry e;
    ASSERT_OK(c->Read(stream, 1, &e));
    EXPECT_EQ(e.data.size(), payload.size());
    EXPECT_TRUE(e.data == payload);
    ASSERT_OK(c->Close());
  }
  auto c = Open();
  ASSERT_TRUE(c);
  Entry e;
  ASSERT_OK(c->Read(stream, 1, &e));
  EXPECT_EQ(e.data.size(), payload.size());
  EXPECT_TRUE(e.data == payload) << "64 MiB entry differs after reopen";
  EXPECT_EQ(MustRead(c.get(), stream, 0), "before");
  EXPECT_EQ(MustRead(c.get(), stream, 2), "after");
}

TEST_F(LogTest, EntryAboveMaximumIsTooLargeAndNothingIsAppended) {
  auto c = Open();
  ASSERT_TRUE(c);
  const std::string stream = "big:shard:0001";
  ASSERT_OK(c->Append(stream, "first"));
  const std::string payload(64 * kMiB + 1, 'z');
  Status s = c->Append(stream, payload);
  EXPECT_EQ(s.code(), Code::kTooLarge) << s.ToString();
  EXPECT_FALSE(s.message().empty());
  auto len = c->Length(stream);
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, 1u);
  EntryId id;
  ASSERT_OK(c->Append(stream, "second", &id));
  EXPECT_EQ(id.entry, 1u);
}

TEST_F(LogTest, BatchWithOneOversizedEntryAppendsNothing) {
  Config cfg;
  cfg.storage.max_entry_bytes = 1 * kKiB;
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  const std::string stream = "batch:shard:0009";
  const std::string big(2 * kKiB, 'b');
  const std::string_view batch[] = {"a", big, "c"};
  EntryId ids[3];
  EXPECT_EQ(c->Append(stream, batch, ids).code(), Code::kTooLarge);
  auto len = c->Length(stream);
  ASSERT_TRUE(len.ok()) << len.status().ToString();
  EXPECT_EQ(*len, 0u);
  Entry e;
  EXPECT_EQ(c->Read(stream, 0, &e).code(), Code::kNotFound);
  EntryId id;
  ASSERT_OK(c->Append(stream, "ok", &id));
  EXPECT_EQ(id.entry, 0u);
  EXPECT_EQ(MustRead(c.get(), stream, 0), "ok");
}

// ---- compression ----------------------------------------------------------------------------

TEST_F(LogTest, PayloadsThatLookLikeZstdAreStoredAndReturnedVerbatim) {
  auto c = Open();
  ASSERT_TRUE(c);
  const std::string stream = "zstd:shard:0000";
  const std::string magic("\x28\xB5\x2F\xFD", 4);
  // A genuine zstd frame, stored as an ordinary (uncompressed) payload.
  const std::string text = "hello hello hello hello hello hello";
  std::string frame(ZSTD_compressBound(text.size()), '\0');
  const size_t n = ZSTD_compress(frame.data(), frame.size(), text.data(), text.size(), 1);
  ASSERT_FALSE(ZSTD_isError(n));
  frame.resize(n);
  const std::vector<std::string> payloads = {
      magic, magic + "plain text after the magic", frame,
      magic + comet_test::RandomBytes(5, 8 * kKiB)};  // big but incompressible
  for (const auto& p : payloads) ASSERT_OK(c->Append(stream, p));
  for (size_t i = 0; i < payloads.size(); i++) {
    Entry e;
    ASSERT_OK(c->Read(stream, i, &e));
    EXPECT_TRUE(e.data == payloads[i]) << "entry " << i;
    EXPECT_FALSE(e.compressed) << "entry " << i;
  }
  ASSERT_OK(c->Close());
  c = Open();
  ASSERT_TRUE(c);
  for (size_t i = 0; i < payloads.size(); i++) {
    Entry e;
    ASSERT_OK(c->Read(stream, i, &e));
    EXPECT_TRUE(e.data == payloads[i]) << "entry " << i << " after reopen";
  }
}

TEST_F(LogTest, CompressibleEntryIsStoredSmallerAndRoundTrips) {
  const std::string stream = "zstd:shard:0001";
  const std::string payload = comet_test::CompressibleBytes(1, 8 * kKiB);
  {
    auto c = Open();
    ASSERT_TRUE(c);
    ASSERT_OK(c->Append(stream, payload));
    Entry e;
    ASSERT_OK(c->Read(stream, 0, &e));
    EXPECT_TRUE(e.compressed);
    EXPECT_LT(e.stored_size, payload.size());
    EXPECT_TRUE(e.data == payload);
    ASSERT_OK(c->Close());
  }
  auto c = Open();
  ASSERT_TRUE(c);
  Entry e;
  ASSERT_OK(c->Read(stream, 0, &e));
  EXPECT_TRUE(e.compressed);
  EXPECT_LT(e.stored_size, payload.size());
  EXPECT_TRUE(e.data == payload) << "compressed entry differs after reopen";
}

TEST_F(LogTest, BatchOfCompressibleEntriesKeepsEachPayload) {
  // Every compressed entry of a batch keeps its own buffer until the batch is written, also
  // while the thread's buffers grow (a new thread starts with none).
  const std::string stream = "zstd:shard:0002";
  std::vector<std::string> payloads;
  for (int i = 0; i < 40; i++) payloads.push_back(comet_test::CompressibleBytes(100 + i, 8 * kKiB));
  auto c = Open();
  ASSERT_TRUE(c);
  std::thread([&] { AppendAll(c.get(), stream, payloads); }).join();
  for (uint64_t i = 0; i < payloads.size(); i++) {
    Entry e;
    ASSERT_OK(c->Read(stream, i, &e));
    EXPECT_TRUE(e.compressed) << "entry " << i;
    EXPECT_TRUE(e.data == payloads[i]) << "entry " << i << " holds another entry's payload";
  }
}

TEST_F(LogTest, EntryBelowCompressionThresholdIsStoredAsIs) {
  auto c = Open();
  ASSERT_TRUE(c);
  const std::string payload = comet_test::CompressibleBytes(2, 4095);
  ASSERT_OK(c->Append("zstd:shard:0002", payload));
  Entry e;
  ASSERT_OK(c->Read("zstd:shard:0002", 0, &e));
  EXPECT_FALSE(e.compressed);
  EXPECT_EQ(e.stored_size, 4095u);
  EXPECT_TRUE(e.data == payload);
}

TEST_F(LogTest, CompressionMinBytesZeroDisablesCompression) {
  Config cfg;
  cfg.compression.min_bytes = 0;
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  const std::string payload = comet_test::CompressibleBytes(3, 64 * kKiB);
  ASSERT_OK(c->Append("zstd:shard:0003", payload));
  Entry e;
  ASSERT_OK(c->Read("zstd:shard:0003", 0, &e));
  EXPECT_FALSE(e.compressed);
  EXPECT_EQ(e.stored_size, payload.size());
  EXPECT_TRUE(e.data == payload);
}

// ---- rotation -------------------------------------------------------------------------------

TEST_F(LogTest, RotationKeepsEverySegmentWithinMaxSizeAndReadsAcrossBoundaries) {
  const uint64_t kMax = 4096;
  auto c = Open(Small(kMax));
  ASSERT_TRUE(c);
  const std::string stream = "rot:shard:0000";
  std::vector<std::string> payloads;
  uint32_t prefix_id = 0;
  for (int i = 0; i < 200; i++) {
    payloads.push_back(comet_test::RandomBytes(1000 + i, 100));
    EntryId id;
    ASSERT_OK(c->Append(stream, payloads.back(), &id));
    ASSERT_EQ(id.entry, static_cast<uint64_t>(i));
    prefix_id = id.prefix_id;
  }
  // 200 records of 116 bytes cannot fit in fewer than 7 segments of (4096 - 256) bytes.
  auto files = comet_test::ListSegments(dir_, prefix_id, 0);
  EXPECT_GE(files.size(), 7u);
  for (const auto& f : files) EXPECT_LE(comet_test::FileSize(f), kMax) << f;

  // Every entry via Read.
  for (int i = 0; i < 200; i++) ASSERT_EQ(MustRead(c.get(), stream, i), payloads[i]) << i;
  // Every entry via an Iterator.
  auto it = c->Scan(stream, 0);
  ASSERT_TRUE(it.ok()) << it.status().ToString();
  for (int i = 0; i < 200; i++) {
    Entry e;
    ASSERT_OK(it->Next(&e));
    ASSERT_EQ(e.id.entry, static_cast<uint64_t>(i));
    ASSERT_TRUE(e.data == payloads[i]) << i;
  }
  Entry end;
  EXPECT_EQ(it->Next(&end).code(), Code::kNotFound);
  // An iterator starting mid-segment.
  auto mid = c->Scan(stream, 77);
  ASSERT_TRUE(mid.ok());
  for (int i = 77; i < 200; i++) {
    Entry e;
    ASSERT_OK(mid->Next(&e));
    ASSERT_EQ(e.id.entry, static_cast<uint64_t>(i));
    ASSERT_TRUE(e.data == payloads[i]) << i;
  }

  // Inspect agrees with the files: contiguous segments named by their base entry.
  auto info = c->Inspect(stream);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  ASSERT_EQ(info->segments.size(), files.size());
  uint64_t next = 0;
  for (size_t i = 0; i < info->segments.size(); i++) {
    const auto& seg = info->segments[i];
    EXPECT_EQ(seg.base_entry, next) << seg.file;
    EXPECT_EQ(comet_test::SegmentBase(files[i]), seg.base_entry);
    EXPECT_GT(seg.entries, 0u);
    EXPECT_LE(seg.bytes + comet::format::kSegmentHeaderSize, kMax);
    if (i + 1 < info->segments.size()) {
      EXPECT_TRUE(seg.sealed) << seg.file;
    }
    next = seg.base_entry + seg.entries;
  }
  EXPECT_EQ(next, 200u);
  EXPECT_EQ(info->next_entry, 200u);
  EXPECT_TRUE(info->gaps.empty());
  EXPECT_GE(c->GetStats().rotations, files.size() - 1);

  ASSERT_OK(c->Close());
  for (const auto& f : comet_test::ListSegments(dir_, prefix_id, 0))
    EXPECT_LE(comet_test::FileSize(f), kMax) << f << " after Close";
  c = Open(Small(kMax));
  ASSERT_TRUE(c);
  for (int i = 0; i < 200; i++) ASSERT_EQ(MustRead(c.get(), stream, i), payloads[i]) << i;
}

TEST_F(LogTest, EntryLargerThanSegmentGetsItsOwnSegment) {
  const uint64_t kMax = 4096;
  Config cfg = Small(kMax);
  cfg.compression.min_bytes = 0;
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  const std::string stream = "rot:shard:0001";
  std::vector<std::string> payloads;
  for (int i = 0; i < 3; i++) payloads.push_back(comet_test::RandomBytes(i, 50));
  payloads.push_back(comet_test::RandomBytes(3, 10000));
  for (int i = 4; i < 7; i++) payloads.push_back(comet_test::RandomBytes(i, 50));
  for (const auto& p : payloads) ASSERT_OK(c->Append(stream, p));

  auto info = c->Inspect(stream);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  bool found = false;
  for (const auto& seg : info->segments) {
    if (seg.base_entry <= 3 && 3 < seg.base_entry + seg.entries) {
      found = true;
      EXPECT_EQ(seg.base_entry, 3u) << seg.file;
      EXPECT_EQ(seg.entries, 1u) << seg.file;
      EXPECT_GE(seg.bytes, 10000u);
    } else {
      EXPECT_LE(seg.bytes + comet::format::kSegmentHeaderSize, kMax) << seg.file;
    }
  }
  EXPECT_TRUE(found) << "no segment holds entry 3";
  for (size_t i = 0; i < payloads.size(); i++)
    EXPECT_EQ(MustRead(c.get(), stream, i), payloads[i]) << i;
  ASSERT_OK(c->Close());
  c = Open(cfg);
  ASSERT_TRUE(c);
  for (size_t i = 0; i < payloads.size(); i++)
    EXPECT_EQ(MustRead(c.get(), stream, i), payloads[i]) << i << " after reopen";
}

// ---- lifecycle and identity -----------------------------------------------------------------

TEST_F(LogTest, CallsAfterCloseFailWithClosed) {
  auto c = Open();
  ASSERT_TRUE(c);
  ASSERT_OK(c->Append("life:shard:0000", "x"));
  ASSERT_OK(c->Close());
  EXPECT_EQ(c->Append("life:shard:0000", "y").code(), Code::kClosed);
  Entry e;
  EXPECT_EQ(c->Read("life:shard:0000", 0, &e).code(), Code::kClosed);
  EXPECT_OK(c->Close());  // idempotent
}

TEST_F(LogTest, PrefixesAreIndependentIdentities) {
  auto c = Open();
  ASSERT_TRUE(c);
  std::vector<EntryId> a, b;
  for (int i = 0; i < 3; i++) {
    EntryId id;
    ASSERT_OK(c->Append("a:shard:0001", "a" + std::to_string(i), &id));
    a.push_back(id);
  }
  for (int i = 0; i < 5; i++) {
    EntryId id;
    ASSERT_OK(c->Append("b:shard:0001", "b" + std::to_string(i), &id));
    b.push_back(id);
  }
  EXPECT_NE(a[0].prefix_id, b[0].prefix_id);
  EXPECT_EQ(a[2].entry, 2u);
  EXPECT_EQ(b[0].entry, 0u);
  EXPECT_EQ(b[4].entry, 4u);
  EXPECT_EQ(*c->Length("a:shard:0001"), 3u);
  EXPECT_EQ(*c->Length("b:shard:0001"), 5u);
  EXPECT_EQ(MustRead(c.get(), "a:shard:0001", 0), "a0");
  EXPECT_EQ(MustRead(c.get(), "b:shard:0001", 0), "b0");
  // Same prefix, another shard: same prefix id, independent numbering.
  EntryId other;
  ASSERT_OK(c->Append("a:shard:0002", "a-other", &other));
  EXPECT_EQ(other.prefix_id, a[0].prefix_id);
  EXPECT_EQ(other.shard, 2u);
  EXPECT_EQ(other.entry, 0u);
  ASSERT_OK(c->Close());

  // Prefix ids are stable across reopen.
  c = Open();
  ASSERT_TRUE(c);
  EntryId a3, b5;
  ASSERT_OK(c->Append("b:shard:0001", "b5", &b5));
  ASSERT_OK(c->Append("a:shard:0001", "a3", &a3));
  EXPECT_EQ(a3.prefix_id, a[0].prefix_id);
  EXPECT_EQ(b5.prefix_id, b[0].prefix_id);
  EXPECT_EQ(a3.entry, 3u);
  EXPECT_EQ(b5.entry, 5u);
}

TEST_F(LogTest, ReopenAfterCleanCloseContinuesNumbering) {
  const std::string stream = "reopen:shard:0000";
  uint32_t prefix_id;
  {
    auto c = Open();
    ASSERT_TRUE(c);
    auto ids = AppendAll(c.get(), stream, {"0", "1", "2", "3", "4"});
    ASSERT_EQ(ids.size(), 5u);
    prefix_id = ids[0].prefix_id;
    ASSERT_OK(c->Close());
  }
  auto c = Open();
  ASSERT_TRUE(c);
  EXPECT_EQ(*c->Length(stream), 5u);
  auto ids = AppendAll(c.get(), stream, {"5", "6", "7"});
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0].entry, 5u);
  EXPECT_EQ(ids[2].entry, 7u);
  EXPECT_EQ(ids[0].prefix_id, prefix_id);
  for (int i = 0; i < 8; i++) EXPECT_EQ(MustRead(c.get(), stream, i), std::to_string(i));
}

TEST_F(LogTest, ReadRangeReturnsConsecutiveEntriesAndStopsAtTheEnd) {
  auto c = Open();
  ASSERT_TRUE(c);
  const std::string stream = "range:shard:0000";
  for (int i = 0; i < 10; i++) ASSERT_OK(c->Append(stream, "r" + std::to_string(i)));
  std::vector<Entry> out;
  uint64_t corrupt = 99;
  ASSERT_OK(c->ReadRange(stream, 3, 4, &out, &corrupt));
  ASSERT_EQ(out.size(), 4u);
  for (size_t i = 0; i < 4; i++) {
    EXPECT_EQ(out[i].id.entry, 3 + i);
    EXPECT_EQ(out[i].data, "r" + std::to_string(3 + i));
  }
  EXPECT_EQ(corrupt, 0u);
  std::vector<Entry> tail;
  ASSERT_OK(c->ReadRange(stream, 8, 10, &tail));
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[0].data, "r8");
  EXPECT_EQ(tail[1].data, "r9");
}

TEST_F(LogTest, ReadBeyondTheEndIsNotFound) {
  auto c = Open();
  ASSERT_TRUE(c);
  const std::string stream = "end:shard:0000";
  ASSERT_TRUE(c->GetStream(stream).ok());
  Entry e;
  EXPECT_EQ(c->Read(stream, 0, &e).code(), Code::kNotFound);
  for (int i = 0; i < 10; i++) ASSERT_OK(c->Append(stream, "x"));
  EXPECT_EQ(c->Read(stream, 10, &e).code(), Code::kNotFound);
  EXPECT_EQ(c->Read(stream, 1000000, &e).code(), Code::kNotFound);
  EXPECT_EQ(c->Read(stream, UINT64_MAX, &e).code(), Code::kNotFound);
  EXPECT_OK(c->Read(stream, 9, &e));
}

TEST_F(LogTest, IteratorWaitsAtTheEndAndSeesNewEntries) {
  auto c = Open();
  ASSERT_TRUE(c);
  const std::string stream = "iter:shard:0000";
  for (int i = 0; i < 3; i++) ASSERT_OK(c->Append(stream, "i" + std::to_string(i)));
  auto it = c->Scan(stream, 0);
  ASSERT_TRUE(it.ok()) << it.status().ToString();
  Entry e;
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(it->Next(&e));
    EXPECT_EQ(e.data, "i" + std::to_string(i));
  }
  EXPECT_EQ(it->Next(&e).code(), Code::kNotFound);
  EXPECT_EQ(it->position(), 3u);
  EXPECT_EQ(it->Next(&e).code(), Code::kNotFound);
  EXPECT_EQ(it->position(), 3u);
  ASSERT_OK(c->Append(stream, "i3"));
  ASSERT_OK(c->Append(stream, "i4"));
  ASSERT_OK(it->Next(&e));
  EXPECT_EQ(e.data, "i3");
  EXPECT_EQ(e.id.entry, 3u);
  ASSERT_OK(it->Next(&e));
  EXPECT_EQ(e.data, "i4");
  EXPECT_EQ(it->position(), 5u);
}

// ---- stats, limits, lifetimes ----------------------------------------------------------------

TEST_F(LogTest, StatsCountAppendsBytesAndCompression) {
  auto c = Open();
  ASSERT_TRUE(c);
  const std::string big = comet_test::CompressibleBytes(4, 8 * kKiB);
  ASSERT_OK(c->Append("stats:shard:0000", "hello"));
  ASSERT_OK(c->Append("stats:shard:0000", big));
  ASSERT_OK(c->Append("stats:shard:0001", "abc"));
  const comet::Stats st = c->GetStats();
  EXPECT_EQ(st.appended_entries, 3u);
  EXPECT_EQ(st.appended_bytes, 5u + big.size() + 3u);
  EXPECT_EQ(st.compressed_entries, 1u);
  EXPECT_GE(st.stored_bytes, 3 * comet::format::kRecordHeaderSize + 8u);
  EXPECT_LT(st.stored_bytes, st.appended_bytes + 3 * comet::format::kRecordHeaderSize)
      << "the compressed entry should store fewer bytes than given";
  EXPECT_EQ(st.streams, 2u);
  EXPECT_GE(st.segments, 2u);
  EXPECT_EQ(st.corrupt_records, 0u);
  EXPECT_EQ(st.failed_appends, 0u);
}

TEST_F(LogTest, InspectDescribesAStream) {
  auto c = Open();
  ASSERT_TRUE(c);
  for (int i = 0; i < 4; i++) ASSERT_OK(c->Append("insp:shard:0007", std::string(10, 'x')));
  auto info = c->Inspect("insp:shard:0007");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->name, "insp:shard:0007");
  EXPECT_EQ(info->first.entry, 0u);
  EXPECT_EQ(info->first.shard, 7u);
  EXPECT_EQ(info->next_entry, 4u);
  ASSERT_EQ(info->segments.size(), 1u);
  EXPECT_EQ(info->segments[0].base_entry, 0u);
  EXPECT_EQ(info->segments[0].entries, 4u);
  EXPECT_EQ(info->segments[0].bytes, 4 * (comet::format::kRecordHeaderSize + 10));
  EXPECT_FALSE(info->segments[0].sealed);
  EXPECT_EQ(info->segments[0].file.find('/'), std::string("streams").size())
      << "file should be relative to the data directory: " << info->segments[0].file;
  EXPECT_TRUE(comet_test::FileExists(dir_ + "/" + info->segments[0].file));
  EXPECT_TRUE(info->gaps.empty());
  EXPECT_EQ(info->corrupt_records, 0u);
}

TEST_F(LogTest, FullStreamTableIsAClearErrorAndExistingStreamsKeepWorking) {
  Config cfg;
  cfg.storage.max_streams = 4;
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  for (uint32_t shard = 0; shard < 4; shard++)
    ASSERT_OK(c->Append(comet::ShardStreamName("full", shard), "x"));
  Status s = c->Append("full:shard:0004", "y");
  EXPECT_EQ(s.code(), Code::kFull) << s.ToString();
  std::string msg = s.message();
  if (size_t at = msg.find("full:shard:0004"); at != std::string::npos) msg.erase(at, 15);
  EXPECT_NE(msg.find('4'), std::string::npos) << "message should name the capacity: "
                                              << s.message();
  EntryId id;
  ASSERT_OK(c->Append("full:shard:0002", "z", &id));
  EXPECT_EQ(id.entry, 1u);
  EXPECT_EQ(MustRead(c.get(), "full:shard:0002", 1), "z");
}

TEST_F(LogTest, EmptyBatchAppendsNothing) {
  auto c = Open();
  ASSERT_TRUE(c);
  ASSERT_OK(c->Append("empty:shard:0000", std::span<const std::string_view>()));
  ASSERT_OK(c->Append("empty:shard:0000", "first"));
  EXPECT_EQ(*c->Length("empty:shard:0000"), 1u);
}

TEST_F(LogTest, EntryViewStaysValidAfterItsSegmentFileIsDeleted) {
  auto c = Open(Small(4096));
  ASSERT_TRUE(c);
  const std::string stream = "life:shard:0001";
  std::vector<std::string> payloads;
  EntryId id;
  for (int i = 0; i < 100; i++) {
    payloads.push_back(comet_test::RandomBytes(77 + i, 100));
    ASSERT_OK(c->Append(stream, payloads.back(), &id));
  }
  Entry e;
  ASSERT_OK(c->Read(stream, 3, &e));
  auto segs = comet_test::ListSegments(dir_, id.prefix_id, 1);
  ASSERT_GE(segs.size(), 2u);
  ASSERT_EQ(::unlink(segs[0].c_str()), 0);
  EXPECT_TRUE(e.data == payloads[3]) << "a deleted segment's mapping must outlive the file";
}

// ---- readers concurrent with writers --------------------------------------------------------

TEST_F(LogTest, ReaderFollowingWritersSeesEveryEntryInOrderAcrossRotations) {
  auto c = Open(Small(4096));
  ASSERT_TRUE(c);
  const std::string stream = "follow:shard:0000";
  constexpr int kWriters = 2, kPerWriter = 1500;
  constexpr uint64_t kTotal = kWriters * kPerWriter;
  ASSERT_TRUE(c->GetStream(stream).ok());
  std::atomic<bool> writers_failed{false};
  std::atomic<uint64_t> bad_reads{0}, reader_errors{0};
  // Payloads are self-describing so the reader can check each one without coordination.
  auto payload_ok = [](std::string_view p) {
    const size_t dash = p.find('-');
    if (dash == std::string_view::npos) return false;
    const uint64_t seed = std::stoull(std::string(p.substr(0, dash)));
    return p.substr(dash + 1) == comet_test::RandomBytes(seed, (seed * 13) % 150);
  };
  std::thread reader([&] {
    auto it = c->Scan(stream, 0);
    if (!it.ok()) {
      reader_errors++;
      return;
    }
    uint64_t next = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (next < kTotal && std::chrono::steady_clock::now() < deadline) {
      Entry e;
      Status s = it->Next(&e);
      if (s.code() == Code::kNotFound) {
        std::this_thread::yield();
        continue;
      }
      if (!s.ok() || e.id.entry != next || !payload_ok(e.data)) {
        if (s.ok()) {
          bad_reads++;
        } else {
          reader_errors++;
        }
      }
      next++;
    }
    if (next < kTotal) reader_errors++;
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; w++) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; i++) {
        const uint64_t seed = static_cast<uint64_t>(w) * 100000 + i;
        const std::string p =
            std::to_string(seed) + "-" + comet_test::RandomBytes(seed, (seed * 13) % 150);
        if (!c->Append(stream, p).ok()) writers_failed = true;
      }
    });
  }
  for (auto& t : writers) t.join();
  reader.join();
  EXPECT_FALSE(writers_failed.load());
  EXPECT_EQ(bad_reads.load(), 0u);
  EXPECT_EQ(reader_errors.load(), 0u);
  EXPECT_EQ(*c->Length(stream), kTotal);
}

// ---- C ABI ----------------------------------------------------------------------------------

TEST_F(LogTest, CAbiAppendReadLengthClose) {
  comet_client* c = nullptr;
  ASSERT_EQ(comet_open(dir_.c_str(), nullptr, &c), COMET_OK) << comet_last_error();
  ASSERT_NE(c, nullptr);
  const char* stream = "cabi:shard:0002";
  const std::string p0 = "zero", p1 = "the first entry", p2 = "";
  const void* data[] = {p0.data(), p1.data(), p2.data()};
  const size_t lens[] = {p0.size(), p1.size(), p2.size()};
  comet_id ids[3];
  ASSERT_EQ(comet_append(c, stream, data, lens, 3, ids), COMET_OK) << comet_last_error();
  for (uint64_t i = 0; i < 3; i++) {
    EXPECT_EQ(ids[i].entry, i);
    EXPECT_EQ(ids[i].shard, 2u);
    EXPECT_EQ(ids[i].prefix_id, ids[0].prefix_id);
  }
  uint64_t len = 0;
  ASSERT_EQ(comet_length(c, stream, &len), COMET_OK);
  EXPECT_EQ(len, 3u);

  char buf[64];
  size_t n = 0;
  int64_t ts = 0;
  ASSERT_EQ(comet_read(c, stream, 1, buf, sizeof buf, &n, &ts), COMET_OK) << comet_last_error();
  EXPECT_EQ(std::string(buf, n), p1);
  EXPECT_GT(ts, 0);
  ASSERT_EQ(comet_read(c, stream, 2, buf, sizeof buf, &n, nullptr), COMET_OK);
  EXPECT_EQ(n, 0u);

  // A short buffer: TOO_LARGE, and the size needed.
  n = 0;
  EXPECT_EQ(comet_read(c, stream, 1, buf, 4, &n, nullptr), COMET_ERR_TOO_LARGE);
  EXPECT_EQ(n, p1.size());
  EXPECT_EQ(comet_read(c, stream, 3, buf, sizeof buf, &n, nullptr), COMET_ERR_NOT_FOUND);
  EXPECT_GT(std::strlen(comet_last_error()), 0u);
  EXPECT_EQ(comet_append(c, "bad name", data, lens, 1, nullptr), COMET_ERR_INVALID);
  EXPECT_NE(std::strstr(comet_last_error(), "bad name"), nullptr) << comet_last_error();

  // A second writer on the same directory is refused.
  comet_client* second = nullptr;
  EXPECT_EQ(comet_open(dir_.c_str(), nullptr, &second), COMET_ERR_NOT_OWNER);
  EXPECT_EQ(second, nullptr);

  ASSERT_EQ(comet_close(c), COMET_OK);

  // Reopen with a config through the C ABI; numbering continues.
  comet_config* cfg = comet_config_new();
  ASSERT_EQ(comet_config_set(cfg, "sync.mode", "always"), COMET_OK);
  ASSERT_EQ(comet_open(dir_.c_str(), cfg, &c), COMET_OK) << comet_last_error();
  comet_config_free(cfg);
  comet_id id;
  const void* d4[] = {"four"};
  const size_t l4[] = {4};
  ASSERT_EQ(comet_append(c, stream, d4, l4, 1, &id), COMET_OK);
  EXPECT_EQ(id.entry, 3u);
  ASSERT_EQ(comet_sync(c), COMET_OK);
  ASSERT_EQ(comet_read(c, stream, 0, buf, sizeof buf, &n, nullptr), COMET_OK);
  EXPECT_EQ(std::string(buf, n), p0);
  ASSERT_EQ(comet_close(c), COMET_OK);
}

// ---- sync modes -----------------------------------------------------------------------------

class SyncModeTest : public LogTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(SyncModeTest, AppendSyncAndReadBackAcrossReopen) {
  Config cfg;
  ASSERT_OK(cfg.Set("sync.mode", GetParam()));
  ASSERT_OK(cfg.Set("sync.interval", "10ms"));
  const std::string stream = "sync:shard:0000";
  std::vector<std::string> payloads;
  for (int i = 0; i < 30; i++) payloads.push_back(comet_test::RandomBytes(i, 10 + i * 7));
  {
    auto c = Open(cfg);
    ASSERT_TRUE(c);
    for (int i = 0; i < 30; i++) {
      EntryId id;
      ASSERT_OK(c->Append(stream, payloads[i], &id));
      EXPECT_EQ(id.entry, static_cast<uint64_t>(i));
    }
    ASSERT_OK(c->Sync());
    for (int i = 0; i < 30; i++) EXPECT_EQ(MustRead(c.get(), stream, i), payloads[i]);
    ASSERT_OK(c->Close());
  }
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  EXPECT_EQ(*c->Length(stream), 30u);
  for (int i = 0; i < 30; i++) EXPECT_EQ(MustRead(c.get(), stream, i), payloads[i]);
}

TEST_F(LogTest, IntervalModeSyncsInTheBackgroundAfterTheInterval) {
  Config cfg;
  ASSERT_OK(cfg.Set("sync.mode", "interval"));
  ASSERT_OK(cfg.Set("sync.interval", "10ms"));
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  ASSERT_OK(c->Append("bg:shard:0000", "x"));
  uint64_t syncs = 0;
  for (int i = 0; i < 200 && syncs == 0; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    syncs = c->GetStats().syncs;
  }
  EXPECT_GE(syncs, 1u) << "no background fdatasync within 2 s of a 10 ms interval";
}

TEST_F(LogTest, IntervalModeSyncsEarlyAfterSyncEntries) {
  Config cfg;
  ASSERT_OK(cfg.Set("sync.mode", "interval"));
  ASSERT_OK(cfg.Set("sync.interval", "1h"));
  ASSERT_OK(cfg.Set("sync.entries", "10"));
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  for (int i = 0; i < 25; i++) ASSERT_OK(c->Append("bg:shard:0001", "x"));
  uint64_t syncs = 0;
  for (int i = 0; i < 200 && syncs == 0; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    syncs = c->GetStats().syncs;
  }
  EXPECT_GE(syncs, 1u) << "25 entries with sync.entries=10 did not trigger a sync";
}

TEST_F(LogTest, NoneModeNeverSyncsUntilAskedTo) {
  Config cfg;
  ASSERT_OK(cfg.Set("sync.mode", "none"));
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  for (int i = 0; i < 50; i++) ASSERT_OK(c->Append("bg:shard:0002", "x"));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(c->GetStats().syncs, 0u);
  ASSERT_OK(c->Sync());
  EXPECT_GE(c->GetStats().syncs, 1u);
}

// The control region's synced_entry moves only after a write-back succeeded: in always mode it
// covers an entry by the time its Append returns.
TEST_F(LogTest, AlwaysModeAppendReturnsOnlyOnceItsEntryIsSynced) {
  Config cfg;
  ASSERT_OK(cfg.Set("sync.mode", "always"));
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  for (uint64_t i = 0; i < 20; i++) {
    EntryId id;
    ASSERT_OK(c->Append("always:shard:0001", "x" + std::to_string(i), &id));
    auto st = comet::ReadStats(dir_);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    ASSERT_EQ(st->streams.size(), 1u);
    EXPECT_GE(st->streams[0].synced_entry, id.entry + 1) << "entry " << id.entry;
  }
}

TEST_F(LogTest, AlwaysModeWithConcurrentAppendersReadsBack) {
  Config cfg;
  ASSERT_OK(cfg.Set("sync.mode", "always"));
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  const std::string stream = "always:shard:0000";
  std::vector<std::vector<std::pair<uint64_t, std::string>>> got(4);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; i++) {
        const std::string p = "t" + std::to_string(t) + "-" + std::to_string(i);
        EntryId id;
        if (!c->Append(stream, p, &id).ok()) {
          failures++;
          continue;
        }
        got[t].emplace_back(id.entry, p);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GE(c->GetStats().syncs, 1u);
  std::set<uint64_t> ids;
  for (const auto& v : got) {
    for (const auto& [entry, p] : v) {
      EXPECT_TRUE(ids.insert(entry).second) << "duplicate id " << entry;
      EXPECT_EQ(MustRead(c.get(), stream, entry), p);
    }
  }
  EXPECT_EQ(ids.size(), 160u);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(*ids.rbegin(), 159u);
}

TEST_F(LogTest, OpeningARegularFileAsDirectoryIsRefusedNamingThePath) {
  const std::string file = Sub("not-a-dir");
  ASSERT_TRUE(comet_test::WriteFile(file, "plain file"));
  auto r = Client::Open(file, Config());
  ASSERT_FALSE(r.ok());
  // A bad argument (INVALID) or the OS refusing (IO); never a crash or a silent success.
  const Code code = r.status().code();
  EXPECT_TRUE(code == Code::kInvalid || code == Code::kIo) << r.status().ToString();
  EXPECT_EQ(comet_test::ReadFile(file), "plain file") << "the file was modified";
  EXPECT_NE(r.status().message().find("not-a-dir"), std::string::npos) << r.status().message();
}

TEST_F(LogTest, InvalidConfigIsRefusedAtOpen) {
  Config cfg;
  cfg.storage.max_segment_bytes = 100;
  auto r = Client::Open(dir_, cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalid) << r.status().ToString();
}

INSTANTIATE_TEST_SUITE_P(Modes, SyncModeTest, ::testing::Values("none", "interval", "always"));

// ---- concurrency ----------------------------------------------------------------------------

TEST_F(LogTest, ConcurrentAppendersOnOneShardGetDenseUniqueIdsWithTheirOwnPayloads) {
  Config cfg = Small(256 * kKiB);  // rotations happen under contention too
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  const std::string stream = "mt:shard:0005";
  constexpr int kThreads = 16, kBatches = 300;
  struct Appended {
    uint64_t entry;
    std::string payload;
  };
  std::vector<std::vector<Appended>> results(kThreads);
  std::atomic<int> failures{0}, order_errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < kBatches; b++) {
        const int n = 1 + (t + b) % 4;
        std::vector<std::string> payloads;
        for (int k = 0; k < n; k++) {
          std::string p = "t" + std::to_string(t) + "-b" + std::to_string(b) + "-k" +
                          std::to_string(k) + "-";
          p.append(static_cast<size_t>((t * 31 + b * 7 + k) % 200), static_cast<char>('a' + t));
          payloads.push_back(std::move(p));
        }
        std::vector<std::string_view> views(payloads.begin(), payloads.end());
        std::vector<EntryId> ids(n);
        Status s = c->Append(stream, views, ids.data());
        if (!s.ok()) {
          failures++;
          continue;
        }
        for (int k = 0; k < n; k++) {
          if (k > 0 && ids[k].entry <= ids[k - 1].entry) order_errors++;
          results[t].push_back({ids[k].entry, std::move(payloads[k])});
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(order_errors.load(), 0) << "ids within a batch are not in input order";

  std::vector<uint64_t> all;
  size_t mismatches = 0;
  for (const auto& r : results) {
    for (const auto& a : r) {
      all.push_back(a.entry);
      Entry e;
      Status s = c->Read(stream, a.entry, &e);
      if (!s.ok() || e.data != a.payload) mismatches++;
    }
  }
  EXPECT_EQ(mismatches, 0u);
  std::sort(all.begin(), all.end());
  size_t expected_total = 0;
  for (int t = 0; t < kThreads; t++)
    for (int b = 0; b < kBatches; b++) expected_total += 1 + (t + b) % 4;
  ASSERT_EQ(all.size(), expected_total);
  size_t not_dense = 0;
  for (size_t i = 0; i < all.size(); i++)
    if (all[i] != i) not_dense++;
  EXPECT_EQ(not_dense, 0u) << "ids are not exactly 0.." << all.size() - 1;
  EXPECT_EQ(*c->Length(stream), expected_total);
}

}  // namespace
