// Damage keeps ids: bytes damaged on purpose in segments, headers and records, then every id is
// read back in writer and read-only mode alike. An intact entry reads its own payload under its
// own id; a damaged one is CORRUPT; no id is ever shifted onto another entry's payload.
#include <memory>
#include <set>
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

// Ten bytes that name their entry, so a shifted id shows up as the wrong payload.
std::string Payload(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "entry-%04llu", static_cast<unsigned long long>(i % 10000));
  return buf;
}
constexpr uint64_t kRecordSize = kRecHdr + 10;  // every record of these tests

Config SmallSegments(uint64_t bytes) {
  Config c;
  c.storage.max_segment_bytes = bytes;
  c.storage.prefault_bytes = 0;
  c.sync.mode = comet::SyncMode::kNone;
  return c;
}

Config ReadOnly(Config c) {
  c.open.read_only = true;
  return c;
}

class DamageTest : public comet_test::TempDirTest {
 protected:
  std::unique_ptr<Client> Open(const Config& cfg) {
    auto r = Client::Open(dir_, cfg);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  // Appends Payload(0..n-1) one entry per call and closes cleanly; returns the prefix id.
  uint32_t Fill(const Config& cfg, const std::string& stream, uint64_t n) {
    auto c = Open(cfg);
    if (!c) return 0;
    EntryId id{};
    for (uint64_t i = 0; i < n; i++) {
      Status st = c->Append(stream, Payload(i), &id);
      EXPECT_TRUE(st.ok()) << st.ToString();
      EXPECT_EQ(id.entry, i);
    }
    EXPECT_TRUE(c->Close().ok());
    return id.prefix_id;
  }

  // Every id below n reads its own payload, except those in `bad`, which are CORRUPT.
  static void ExpectIds(Client* c, const std::string& stream, uint64_t n,
                        const std::set<uint64_t>& bad, const std::string& mode) {
    auto len = c->Length(stream);
    ASSERT_TRUE(len.ok()) << len.status().ToString();
    EXPECT_EQ(*len, n) << mode;
    for (uint64_t i = 0; i < n; i++) {
      Entry e;
      Status st = c->Read(stream, i, &e);
      if (bad.count(i)) {
        EXPECT_EQ(st.code(), Code::kCorrupt) << mode << " id " << i << ": " << st.ToString();
      } else {
        ASSERT_TRUE(st.ok()) << mode << " id " << i << ": " << st.ToString();
        EXPECT_EQ(std::string(e.data), Payload(i)) << mode << " id " << i;
      }
    }
  }

  // The same checks with a writer, then with a read-only client.
  void ExpectIdsBothModes(const Config& cfg, const std::string& stream, uint64_t n,
                          const std::set<uint64_t>& bad) {
    {
      auto c = Open(cfg);
      ASSERT_TRUE(c);
      ExpectIds(c.get(), stream, n, bad, "writer");
    }
    auto r = Open(ReadOnly(cfg));
    ASSERT_TRUE(r);
    ExpectIds(r.get(), stream, n, bad, "read-only");
  }

  comet_test::ToolRun Verify() { return comet_test::RunTool("verify " + dir_, scratch()); }

  std::string scratch() {
    if (scratch_.empty()) scratch_ = comet_test::MakeTempDir("comet-scratch");
    return scratch_;
  }
  void TearDown() override {
    comet_test::RemoveAll(scratch_);
    TempDirTest::TearDown();
  }
  std::string scratch_;
};

std::set<uint64_t> Range(uint64_t from, uint64_t to) {
  std::set<uint64_t> s;
  for (uint64_t i = from; i < to; i++) s.insert(i);
  return s;
}

// ---- segment headers ------------------------------------------------------------------------

// One flipped bit in the version field of one segment header is damage to that segment: its
// header CRC says so before its version is believed. The other segments and streams read,
// appends go on, and verify reports corruption (exit 1), not an unreadable directory (exit 2).
TEST_F(DamageTest, BitFlipInSegmentHeaderVersionDamagesOnlyThatSegment) {
  const Config cfg = SmallSegments(4096);
  const uint32_t a = Fill(cfg, "a:shard:0000", 400);
  Fill(cfg, "b:shard:0000", 50);
  auto segs = comet_test::ListSegments(dir_, a, 0);
  ASSERT_GE(segs.size(), 3u);
  const uint64_t from = comet_test::SegmentBase(segs[1]), to = comet_test::SegmentBase(segs[2]);
  ASSERT_TRUE(comet_test::FlipByte(segs[1], format::seg::kMajor + 1, 0x40));

  ExpectIdsBothModes(cfg, "a:shard:0000", 400, Range(from, to));
  ExpectIdsBothModes(cfg, "b:shard:0000", 50, {});
  {
    auto c = Open(cfg);
    ASSERT_TRUE(c);
    EntryId id;
    ASSERT_OK(c->Append("a:shard:0000", "after", &id));
    EXPECT_EQ(id.entry, 400u);
    ASSERT_OK(c->Append("b:shard:0000", "after", &id));
    EXPECT_EQ(id.entry, 50u);
  }
  comet_test::ToolRun v = Verify();
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_NE(v.out.find(comet_test::fs::path(segs[1]).filename().string()), std::string::npos)
      << v.out;
}

// ---- temporary files ------------------------------------------------------------------------

// A crash can leave a temporary file wherever Comet writes one by rename: an index file, a new
// or spare segment, the control region, a prefix name. Recovery removes every one of them.
TEST_F(DamageTest, NoTemporaryFileSurvivesRecovery) {
  const Config cfg = SmallSegments(4096);
  const uint32_t a = Fill(cfg, "a:shard:0000", 400);
  const std::string shard = comet_test::ShardDir(dir_, a, 0);
  const std::string prefix_dir = dir_ + "/streams/" + comet_test::Hex(a, 8);
  const std::vector<std::string> planted = {
      shard + "/0000000000000000.idx.tmp", shard + "/.fresh-0.tmp", shard + "/.spare-3.tmp",
      dir_ + "/comet.ctl.tmp", prefix_dir + "/PREFIX.tmp"};
  for (const auto& p : planted) ASSERT_TRUE(comet_test::WriteFile(p, "left by a crash")) << p;
  ASSERT_TRUE(comet_test::ListFilesRecursive(dir_, ".tmp").size() == planted.size());

  {
    auto c = Open(cfg);
    ASSERT_TRUE(c);
    ExpectIds(c.get(), "a:shard:0000", 400, {}, "writer");
  }
  EXPECT_EQ(comet_test::ListFilesRecursive(dir_, ".tmp"), std::vector<std::string>{});
}

}  // namespace
