// Format versions on disk: a version-1 directory (written here byte by byte, as the previous
// format defined it) stays readable and appendable; a version-2 record is tied to its segment,
// so a stale record in a reused segment file never reads as new.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/format.h"
#include "comet/status.h"
#include "crc32c.h"
#include "segment.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Config;
using comet::Entry;
using comet::EntryId;
namespace format = comet::format;
namespace internal = comet::internal;

constexpr uint64_t kSegHdr = format::kSegmentHeaderSize;

std::string OldPayload(uint64_t i) { return "v1 entry " + std::to_string(i); }

// A version-1 segment: major 1 under its header CRC, records with an unkeyed CRC and bit 31
// clear, sealed (count and end under the seal CRC) or not.
std::string Version1Segment(const std::string& prefix, uint64_t base, uint64_t count, bool sealed) {
  internal::SegmentHeader h;
  h.prefix = prefix;
  h.base_entry = base;
  h.created_ns = 1700000000ll * 1000000000ll;
  std::string seg(kSegHdr, '\0');
  internal::EncodeHeaderOnce(&h, seg.data());
  format::store16(seg.data() + format::seg::kMajor, 1);
  uint32_t crc = comet::crc32c::Value(seg.data(), format::seg::kHeaderCrc);
  crc = comet::crc32c::Extend(crc, seg.data() + format::seg::kPrefix, prefix.size());
  format::store32(seg.data() + format::seg::kHeaderCrc, comet::crc32c::Mask(crc));
  for (uint64_t i = base; i < base + count; i++) {
    const std::string p = OldPayload(i);
    const int64_t ts = h.created_ns + static_cast<int64_t>(i);
    char rec[format::kRecordHeaderSize];
    const uint32_t sf = static_cast<uint32_t>(p.size());
    internal::EncodeRecordHeader(rec, internal::RecordCrc(p.data(), sf, ts), sf, ts);
    seg.append(rec, sizeof rec);
    seg += p;
  }
  if (sealed) internal::EncodeSeal(seg.data(), count, seg.size());
  return seg;
}

class FormatVersionTest : public comet_test::TempDirTest {
 protected:
  std::unique_ptr<Client> Open(bool read_only) {
    Config cfg;
    cfg.sync.mode = comet::SyncMode::kNone;
    cfg.open.read_only = read_only;
    auto r = Client::Open(dir_, cfg);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  static void ExpectOld(Client* c, uint64_t n, const std::string& mode) {
    auto len = c->Length("old:shard:0000");
    ASSERT_TRUE(len.ok());
    ASSERT_GE(*len, n) << mode;
    for (uint64_t i = 0; i < n; i++) {
      Entry e;
      ASSERT_OK(c->Read("old:shard:0000", i, &e));
      EXPECT_EQ(std::string(e.data), OldPayload(i)) << mode << " id " << i;
    }
  }
};

// A directory written by format version 1 (a sealed segment and the active one, no control
// file) reads in both modes; a writer seals the old active segment and goes on in a version-2
// one; verify finds nothing wrong.
TEST_F(FormatVersionTest, Version1DirectoryStaysReadableAndAppendable) {
  const std::string shard = comet_test::ShardDir(dir_, 0, 0);
  ASSERT_TRUE(comet_test::fs::create_directories(shard));
  ASSERT_TRUE(comet_test::WriteFile(dir_ + "/streams/00000000/PREFIX", "old"));
  ASSERT_TRUE(comet_test::WriteFile(shard + "/0000000000000000.seg",
                                    Version1Segment("old", 0, 30, true)));
  ASSERT_TRUE(comet_test::WriteFile(shard + "/000000000000001E.seg",
                                    Version1Segment("old", 30, 12, false)));
  {
    auto r = Open(true);
    ASSERT_TRUE(r);
    ExpectOld(r.get(), 42, "read-only");
  }
  {
    auto c = Open(false);
    ASSERT_TRUE(c);
    ExpectOld(c.get(), 42, "writer");
    EntryId id;
    ASSERT_OK(c->Append("old:shard:0000", "new", &id));
    EXPECT_EQ(id.entry, 42u);
    ASSERT_OK(c->Close());
  }
  auto segs = comet_test::ListSegments(dir_, 0, 0);
  ASSERT_EQ(segs.size(), 3u);
  std::string major(2, '\0');
  ASSERT_TRUE(comet_test::ReadAt(segs[1], format::seg::kMajor, major.data(), 2));
  EXPECT_EQ(format::load16(major.data()), 1) << "the version-1 segment was rewritten";
  ASSERT_TRUE(comet_test::ReadAt(segs[2], format::seg::kMajor, major.data(), 2));
  EXPECT_EQ(format::load16(major.data()), format::kFormatMajor);
  auto r = Open(true);
  ASSERT_TRUE(r);
  ExpectOld(r.get(), 42, "reopened");
  Entry e;
  ASSERT_OK(r->Read("old:shard:0000", 42, &e));
  EXPECT_EQ(e.data, "new");
  comet_test::ToolRun v = comet_test::RunTool("verify " + dir_, dir_);
  EXPECT_EQ(v.status, 0) << v.out << v.err;
}

// The records of a segment file whose header is rewritten for another segment (a reused file
// whose new writer died before writing) are stale: they fail their CRC under the new header's
// key and are not taken for new entries.
TEST_F(FormatVersionTest, StaleRecordsInAReusedSegmentFileAreNotReadAsNew) {
  {
    auto c = Open(false);
    ASSERT_TRUE(c);
    for (int i = 0; i < 10; i++) ASSERT_OK(c->Append("re:shard:0000", "stale " + std::to_string(i)));
    ASSERT_OK(c->Close());
  }
  auto segs = comet_test::ListSegments(dir_, 0, 0);
  ASSERT_EQ(segs.size(), 1u);
  internal::SegmentHeader h;
  h.prefix = "re";
  h.created_ns = 1800000000ll * 1000000000ll;
  std::string hdr(kSegHdr, '\0');
  internal::EncodeSegmentHeader(&h, hdr.data());
  ASSERT_TRUE(comet_test::PatchFile(segs[0], 0, hdr.data(), hdr.size()));
  ASSERT_EQ(::unlink((dir_ + "/comet.ctl").c_str()), 0);

  auto c = Open(false);
  ASSERT_TRUE(c);
  auto len = c->Length("re:shard:0000");
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, 0u) << "stale records were read as entries of the new segment";
  EntryId id;
  ASSERT_OK(c->Append("re:shard:0000", "fresh", &id));
  EXPECT_EQ(id.entry, 0u);
  Entry e;
  ASSERT_OK(c->Read("re:shard:0000", 0, &e));
  EXPECT_EQ(e.data, "fresh");
}

}  // namespace

// A recycled file: the segment of entries 0..49 is reused, under a new header, for the segment
// that starts at entry 50 (as retention plus file reuse would leave it). The new writer writes
// 20 records of the same size over the first stale ones and dies without closing, so 30 stale
// records follow its own, each on a record boundary. Recovery must count only the 20: the stale
// records were keyed by the old header (another base, another creation time).
TEST_F(FormatVersionTest, RecycledFileKeepsOnlyTheNewWritersRecordsAfterACrash) {
  const std::string stream = "rc:shard:0000";
  auto payload = [](const char* tag, int i) {
    char b[32];
    std::snprintf(b, sizeof b, "%s entry %04d", tag, i);  // the same length for both
    return std::string(b);
  };
  {
    auto c = Open(false);
    ASSERT_TRUE(c);
    for (int i = 0; i < 50; i++) ASSERT_OK(c->Append(stream, payload("old", i)));
    ASSERT_OK(c->Close());
  }
  auto segs = comet_test::ListSegments(dir_, 0, 0);
  ASSERT_EQ(segs.size(), 1u);
  const std::string reused = comet_test::ShardDir(dir_, 0, 0) + "/0000000000000032.seg";
  ASSERT_EQ(::rename(segs[0].c_str(), reused.c_str()), 0);
  internal::SegmentHeader h;
  h.prefix = "rc";
  h.base_entry = 50;
  h.created_ns = comet_test::MonotonicNs() + 1;
  std::string hdr(kSegHdr, '\0');
  internal::EncodeSegmentHeader(&h, hdr.data());
  ASSERT_TRUE(comet_test::PatchFile(reused, 0, hdr.data(), hdr.size()));

  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // the new writer: 20 appends, then gone without a close
    Config cfg;
    cfg.sync.mode = comet::SyncMode::kNone;
    auto r = Client::Open(dir_, cfg);
    bool ok = r.ok();
    for (int i = 0; ok && i < 20; i++) {
      EntryId id;
      ok = (*r)->Append(stream, payload("new", 50 + i), &id).ok() && id.entry == uint64_t(50 + i);
    }
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the writer did not see an empty segment at entry 50";

  auto c = Open(false);
  ASSERT_TRUE(c);
  auto len = c->Length(stream);
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, 70u) << "stale records of the recycled file were read as new entries";
  for (int i = 50; i < 70; i++) {
    Entry e;
    ASSERT_OK(c->Read(stream, i, &e));
    EXPECT_EQ(std::string(e.data), payload("new", i));
  }
  Entry e;
  EXPECT_FALSE(c->Read(stream, 70, &e).ok());
}
