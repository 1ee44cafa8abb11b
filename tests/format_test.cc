// The on-disk format, byte for byte: what format.h and the README promise.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

#include "comet/format.h"
#include "crc32c.h"
#include "segment.h"

namespace comet::internal {
namespace {

using namespace format;

std::string Hex(const char* p, size_t n) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < n; i++) {
    std::snprintf(b, sizeof b, "%02x", static_cast<unsigned char>(p[i]));
    s += b;
  }
  return s;
}

// README's worked example: the entry "hello" appended at 2026-12-01T00:00:00Z as a batch of
// its own, to the first segment of logs:shard:0000 (prefix id 0) created at the same instant.
TEST(RecordFormat, ReadmeExampleIsExact) {
  const int64_t ts = 1796083200ll * 1000000000ll;  // 2026-12-01T00:00:00Z
  SegmentHeader sh;
  sh.prefix = "logs";
  sh.created_ns = ts;
  char seg_hdr[kSegmentHeaderSize];
  EncodeSegmentHeader(&sh, seg_hdr);
  EXPECT_EQ(sh.header_crc, 0x9d541c2au);
  EXPECT_EQ(RecordCrc("hello", 5, ts), 0xf94cc9a4u);
  char h[16];
  EncodeRecordHeader(h, RecordCrc("hello", 5, ts) ^ sh.header_crc, 5, ts);
  EXPECT_EQ(Hex(h, 16), "8ed518640500000000000c8327f8ec18");
  // As the first of a batch of two it says that another record follows (bit 31).
  EncodeRecordHeader(h, RecordCrc("hello", 5 | kFlagBatchMore, ts) ^ sh.header_crc,
                     5 | kFlagBatchMore, ts);
  EXPECT_EQ(Hex(h, 16), "de60f5620500008000000c8327f8ec18");
}

TEST(RecordFormat, CrcCoversPayloadThenHeaderTail) {
  const int64_t ts = 42;
  char tail[12];
  store32(tail, 3 | kFlagZstd);
  store64(tail + 4, 42);
  uint32_t c = crc32c::Extend(crc32c::Value("abc", 3), tail, 12);
  EXPECT_EQ(RecordCrc("abc", 3 | kFlagZstd, ts), crc32c::Mask(c));
  // The flag is covered: flipping it changes the CRC.
  EXPECT_NE(RecordCrc("abc", 3, ts), RecordCrc("abc", 3 | kFlagZstd, ts));
}

TEST(RecordFormat, AllZeroHeaderNeverChecksOut) {
  EXPECT_NE(RecordCrc("", 0, 0), 0u);
}

TEST(SegmentHeader, RoundTripsAndSeals) {
  SegmentHeader h;
  h.prefix_id = 7;
  h.shard = 0xA7;
  h.prefix = "events:v1";
  h.base_entry = 123456789;
  h.created_ns = 1796083200ll * 1000000000ll;
  char buf[kSegmentHeaderSize];
  EncodeSegmentHeader(&h, buf);
  EXPECT_EQ(std::memcmp(buf, "CMTS", 4), 0);
  EXPECT_EQ(load16(buf + seg::kMajor), kFormatMajor);
  EXPECT_EQ(load32(buf + seg::kShard), 0xA7u);
  EXPECT_EQ(load64(buf + seg::kBaseEntry), 123456789u);
  EXPECT_EQ(std::string(buf + seg::kPrefix, 9), "events:v1");
  SegmentHeader d;
  ASSERT_TRUE(DecodeSegmentHeader(buf, sizeof buf, "x.seg", &d).ok());
  EXPECT_EQ(d.prefix, "events:v1");
  EXPECT_EQ(d.base_entry, 123456789u);
  EXPECT_FALSE(d.sealed);
  EncodeSeal(buf, 1000, 116256);
  ASSERT_TRUE(DecodeSegmentHeader(buf, sizeof buf, "x.seg", &d).ok());
  EXPECT_TRUE(d.sealed);
  EXPECT_EQ(d.sealed_count, 1000u);
  EXPECT_EQ(d.sealed_end, 116256u);
  // A damaged seal is not a seal (and not an error): the segment is rescanned instead.
  buf[seg::kSealedCount] ^= 1;
  ASSERT_TRUE(DecodeSegmentHeader(buf, sizeof buf, "x.seg", &d).ok());
  EXPECT_FALSE(d.sealed);
}

TEST(SegmentHeader, DamageAndForeignVersionsAreNamed) {
  SegmentHeader h;
  h.prefix = "p";
  char buf[kSegmentHeaderSize];
  EncodeSegmentHeader(&h, buf);
  SegmentHeader d;
  char bad[kSegmentHeaderSize];
  std::memcpy(bad, buf, sizeof bad);
  bad[seg::kPrefix] = 'q';
  Status st = DecodeSegmentHeader(bad, sizeof bad, "dir/0.seg", &d);
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.message().find("dir/0.seg"), std::string::npos);
  // Another version under a header CRC that does not match is damage, not a newer format.
  std::memcpy(bad, buf, sizeof bad);
  store16(bad + seg::kMajor, kFormatMajor + 1);
  EXPECT_EQ(DecodeSegmentHeader(bad, sizeof bad, "dir/0.seg", &d).code(), Code::kCorrupt);
  // Under a matching CRC it is another format, refused by name.
  uint32_t crc = comet::crc32c::Value(bad, seg::kHeaderCrc);
  crc = comet::crc32c::Extend(crc, bad + seg::kPrefix, 1);
  store32(bad + seg::kHeaderCrc, comet::crc32c::Mask(crc));
  st = DecodeSegmentHeader(bad, sizeof bad, "dir/0.seg", &d);
  EXPECT_EQ(st.code(), Code::kVersion);
  EXPECT_NE(st.message().find("version " + std::to_string(kFormatMajor + 1)), std::string::npos);
  std::memcpy(bad, buf, sizeof bad);
  bad[0] = 'X';
  EXPECT_EQ(DecodeSegmentHeader(bad, sizeof bad, "dir/0.seg", &d).code(), Code::kCorrupt);
  EXPECT_EQ(DecodeSegmentHeader(buf, 100, "dir/0.seg", &d).code(), Code::kCorrupt);
}

TEST(SparseIndex, PushedNodesReadBackInOrder) {
  SparseIndex idx(4, 1 << 20);
  EXPECT_EQ(idx.size(), 0u);
  for (uint32_t i = 0; i < 5000; i++) idx.Push(256 + i * 16);
  ASSERT_EQ(idx.size(), 5000u);
  for (uint32_t i = 0; i < 5000; i++) ASSERT_EQ(idx.Get(i), 256u + i * 16) << "node " << i;
}

// A reader on another thread that trusts size() finds every node below it written, chunk
// boundaries included, while the writer keeps pushing.
TEST(SparseIndex, ConcurrentReadersSeeOnlyPublishedNodes) {
  constexpr uint32_t kNodes = 1 << 20;
  SparseIndex idx(1, uint64_t{kNodes} * kRecordHeaderSize);
  std::atomic<bool> done{false};
  std::atomic<uint64_t> checks{0}, wrong{0};
  std::thread reader([&] {
    while (!done.load(std::memory_order_acquire)) {
      const size_t n = idx.size();
      if (n == 0) continue;
      if (idx.Get(n - 1) != 256 + (n - 1) * 16) wrong++;
      checks++;
    }
  });
  // The reader must be reading while the writer pushes, however the two threads are scheduled:
  // the writer goes on only once the first read happened.
  idx.Push(256);
  while (checks.load() == 0) std::this_thread::yield();
  for (uint32_t i = 1; i < kNodes; i++) idx.Push(256 + i * 16);
  done.store(true, std::memory_order_release);
  reader.join();
  EXPECT_EQ(wrong.load(), 0u) << "of " << checks.load() << " reads of the newest node";
}

TEST(ControlLayout, SizeFollowsTables) {
  EXPECT_EQ(control_file_size(64, 4096, 64, 4096),
            4096u + 64 * 128 + 64 * 2688 + 4096 * 256 + 64 * 320 + 4096 * 64);
  EXPECT_EQ(shard_table_offset(64) % kCacheLine, 0u);
  EXPECT_EQ(metrics_table_offset(64) % kCacheLine, 0u);
  EXPECT_EQ(sizeof(ShardSlot) % kCacheLine, 0u);
}

}  // namespace
}  // namespace comet::internal
