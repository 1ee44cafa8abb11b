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

  // Fill, then the stream's segment files.
  std::vector<std::string> FillSegments(const Config& cfg, const std::string& stream, uint64_t n) {
    return comet_test::ListSegments(dir_, Fill(cfg, stream, n), 0);
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

// ---- damaged records keep their ids ----------------------------------------------------------

// Eight bytes that name their entry: 24-byte records.
std::string Payload8(uint64_t i) { return "entry-" + std::string(1, char('0' + i / 10)) +
                                          std::string(1, char('0' + i % 10)); }

// 20 entries in one unsealed segment, closed cleanly; 48 zeroed bytes cover records 5 and 6.
// The damaged run could have held one to three records: the control region's committed
// (entry, offset) proves it held two, so every later id reads its own payload.
TEST_F(DamageTest, ZeroedRecordsInActiveSegmentKeepLaterIds) {
  const Config cfg = SmallSegments(1 << 20);
  uint32_t prefix_id = 0;
  {
    auto c = Open(cfg);
    ASSERT_TRUE(c);
    EntryId id{};
    for (uint64_t i = 0; i < 20; i++) ASSERT_OK(c->Append("z:shard:0000", Payload8(i), &id));
    prefix_id = id.prefix_id;
    ASSERT_OK(c->Close());
  }
  auto segs = comet_test::ListSegments(dir_, prefix_id, 0);
  ASSERT_EQ(segs.size(), 1u);
  const std::string zeros(48, '\0');
  ASSERT_TRUE(comet_test::PatchFile(segs[0], kSegHdr + 5 * (kRecHdr + 8), zeros.data(), 48));

  for (bool read_only : {true, false}) {
    Config c2 = cfg;
    c2.open.read_only = read_only;
    auto c = Open(c2);
    ASSERT_TRUE(c);
    const std::string mode = read_only ? "read-only" : "writer";
    auto len = c->Length("z:shard:0000");
    ASSERT_TRUE(len.ok());
    EXPECT_EQ(*len, 20u) << mode;
    for (uint64_t i = 0; i < 20; i++) {
      Entry e;
      Status st = c->Read("z:shard:0000", i, &e);
      if (i == 5 || i == 6) {
        EXPECT_EQ(st.code(), Code::kCorrupt) << mode << " id " << i << ": " << st.ToString();
      } else {
        ASSERT_TRUE(st.ok()) << mode << " id " << i << ": " << st.ToString();
        EXPECT_EQ(std::string(e.data), Payload8(i)) << mode << " id " << i;
      }
    }
  }
  comet_test::ToolRun v = Verify();
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_NE(v.out.find("entries 5..6 unreadable"), std::string::npos) << v.out;
}

// 400 entries in 4 KiB segments; the 16-byte headers of records 5 and 12 of the first (sealed)
// segment are zeroed. Each damaged run is 26 bytes, too short to have held two records, and
// the sealed count and index agree: only entries 5 and 12 are unreadable, in both modes, with
// or without the index file.
TEST_F(DamageTest, ZeroedHeadersInSealedSegmentKeepEveryOtherId) {
  const Config cfg = SmallSegments(4096);
  auto segs = FillSegments(cfg, "s:shard:0000", 400);
  ASSERT_GE(segs.size(), 3u);
  const std::string zeros(kRecHdr, '\0');
  for (uint64_t k : {5, 12}) {
    ASSERT_TRUE(comet_test::PatchFile(segs[0], kSegHdr + k * kRecordSize, zeros.data(), kRecHdr));
  }
  ExpectIdsBothModes(cfg, "s:shard:0000", 400, {5, 12});
  comet_test::ToolRun v = Verify();
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_NE(v.out.find("2 corrupt records"), std::string::npos) << v.out;

  for (const auto& idx : comet_test::ListFilesRecursive(dir_, ".idx")) ASSERT_EQ(::unlink(idx.c_str()), 0);
  ExpectIdsBothModes(cfg, "s:shard:0000", 400, {5, 12});
}

// Two damaged runs that could each have held one or two records (37 bytes: two 16-byte headers
// fit): the sealed count cannot split them, but the index node at entry 16 places the records
// between them and the count places those after. Ids that nothing proves are unreadable, never
// another entry's.
TEST_F(DamageTest, RecordsBetweenRunsOfUnprovenCountAreNeverShifted) {
  const Config cfg = SmallSegments(4096);
  auto segs = FillSegments(cfg, "u:shard:0000", 400);
  ASSERT_GE(segs.size(), 2u);
  // Records 5 and 20, each with the first 11 bytes of the next record's header.
  const std::string zeros(kRecordSize + 11, '\0');
  for (uint64_t k : {5, 20}) {
    ASSERT_TRUE(comet_test::PatchFile(segs[0], kSegHdr + k * kRecordSize, zeros.data(), zeros.size()));
  }
  ExpectIdsBothModes(cfg, "u:shard:0000", 400, {5, 6, 20, 21});
  // Without the index, nothing places entries 7..19: they are reported, not shifted.
  for (const auto& idx : comet_test::ListFilesRecursive(dir_, ".idx")) ASSERT_EQ(::unlink(idx.c_str()), 0);
  ExpectIdsBothModes(cfg, "u:shard:0000", 400, Range(5, 22));
}

// ---- reads check what they return ------------------------------------------------------------

// Damage made on disk while a writer has the segment open and trusted is caught by the read.
TEST_F(DamageTest, PayloadByteFlippedWhileWriterIsOpenReadsCorrupt) {
  auto c = Open(SmallSegments(1 << 20));
  ASSERT_TRUE(c);
  EntryId id{};
  for (uint64_t i = 0; i < 20; i++) ASSERT_OK(c->Append("w:shard:0000", Payload(i), &id));
  ExpectIds(c.get(), "w:shard:0000", 20, {}, "before");
  auto segs = comet_test::ListSegments(dir_, id.prefix_id, 0);
  ASSERT_EQ(segs.size(), 1u);
  ASSERT_TRUE(comet_test::FlipByte(segs[0], kSegHdr + 7 * kRecordSize + kRecHdr + 3, 0x01));
  ExpectIds(c.get(), "w:shard:0000", 20, {7}, "after");
}

// A length field set to 2^30 - 1 while a writer is open: CORRUPT, never a read past the data.
// In a sealed segment the read scans it again and every other id reads; in the active one
// (which changes under a scan) ids that the walk from their index node cannot reach past the
// damage are CORRUPT until recovery, never another entry. After a reopen only the two damaged
// entries are unreadable, by id and by iterator.
TEST_F(DamageTest, HugeLengthFieldReadsCorruptNotPastTheData) {
  const Config cfg = SmallSegments(4096);
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  EntryId id{};
  for (uint64_t i = 0; i < 200; i++) ASSERT_OK(c->Append("h:shard:0000", Payload(i), &id));
  auto segs = comet_test::ListSegments(dir_, id.prefix_id, 0);
  ASSERT_EQ(segs.size(), 2u);
  ExpectIds(c.get(), "h:shard:0000", 200, {}, "before");
  char sf[4];
  format::store32(sf, format::kSizeMask);
  ASSERT_TRUE(comet_test::PatchFile(segs[0], kSegHdr + 3 * kRecordSize + 4, sf, 4));
  const uint64_t base1 = comet_test::SegmentBase(segs[1]);
  ASSERT_TRUE(comet_test::PatchFile(segs[1], kSegHdr + 2 * kRecordSize + 4, sf, 4));
  for (uint64_t i = 0; i < 200; i++) {
    Entry e;
    Status st = c->Read("h:shard:0000", i, &e);
    if (i == 3 || i == base1 + 2 || (i > base1 + 2 && i < base1 + 16 && st.IsCorrupt())) {
      EXPECT_EQ(st.code(), Code::kCorrupt) << "id " << i << ": " << st.ToString();
    } else {
      ASSERT_TRUE(st.ok()) << "id " << i << ": " << st.ToString();
      EXPECT_EQ(std::string(e.data), Payload(i)) << "id " << i;
    }
  }
  ASSERT_OK(c->Close());
  c = Open(cfg);
  ASSERT_TRUE(c);
  ExpectIds(c.get(), "h:shard:0000", 200, {3, base1 + 2}, "reopened");
  auto it = c->Scan("h:shard:0000", 0);
  ASSERT_TRUE(it.ok());
  uint64_t corrupt = 0, good = 0;
  for (;;) {
    Entry e;
    Status st = it->Next(&e);
    if (st.IsNotFound()) break;
    if (st.IsCorrupt()) {
      corrupt++;
      continue;
    }
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(std::string(e.data), Payload(e.id.entry));
    good++;
  }
  EXPECT_EQ(corrupt, 2u);
  EXPECT_EQ(good, 198u);
}

// ---- verify tells the truth ----------------------------------------------------------------

// The newest segment file is deleted: the control region still knows the committed end, so
// verify reports the entries that vanished, and a writer never hands their ids out again.
TEST_F(DamageTest, VerifyReportsTheEntriesOfADeletedLastSegment) {
  const Config cfg = SmallSegments(4096);
  auto segs = FillSegments(cfg, "d:shard:0000", 400);
  ASSERT_EQ(segs.size(), 3u);
  const uint64_t from = comet_test::SegmentBase(segs[2]);
  ASSERT_EQ(::unlink(segs[2].c_str()), 0);
  comet_test::ToolRun v = Verify();
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_NE(v.out.find(std::to_string(from) + "..399"), std::string::npos) << v.out;
  auto c = Open(cfg);
  ASSERT_TRUE(c);
  EntryId id;
  ASSERT_OK(c->Append("d:shard:0000", "after", &id));
  EXPECT_EQ(id.entry, 400u);
}

// The first segment cut to 17 bytes: its entries, up to the next segment's base, are reported
// unreadable by verify, and inspect counts the same number of corrupt records.
TEST_F(DamageTest, VerifyReportsTheEntriesOfATruncatedFirstSegmentLikeInspect) {
  const Config cfg = SmallSegments(4096);
  auto segs = FillSegments(cfg, "t:shard:0000", 400);
  ASSERT_EQ(segs.size(), 3u);
  const uint64_t next = comet_test::SegmentBase(segs[1]);
  ASSERT_TRUE(comet_test::TruncateFile(segs[0], 17));
  comet_test::ToolRun v = Verify();
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_NE(v.out.find("entries 0.." + std::to_string(next - 1) + " unreadable"), std::string::npos)
      << v.out;
  EXPECT_NE(v.out.find(std::to_string(next) + " corrupt records"), std::string::npos) << v.out;
  comet_test::ToolRun i = comet_test::RunTool("inspect " + dir_, scratch());
  EXPECT_EQ(i.status, 0) << i.err;
  EXPECT_NE(i.out.find("corrupt " + std::to_string(next)), std::string::npos) << i.out;
  ExpectIdsBothModes(cfg, "t:shard:0000", 400, Range(0, next));
}

// A directory that is not a Comet data directory is an error of its own (exit 2), not a clean
// bill of health (0) nor corruption (1).
TEST_F(DamageTest, VerifyRefusesADirectoryThatIsNotACometDirectory) {
  for (const std::string& d : {dir_, std::string("/etc")}) {
    comet_test::ToolRun v = comet_test::RunTool("verify " + d, scratch());
    EXPECT_EQ(v.status, 2) << d << ": " << v.out << v.err;
    EXPECT_NE(v.err.find("not a Comet data directory"), std::string::npos) << v.err;
  }
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
