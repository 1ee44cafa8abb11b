// Recovery, damaged on purpose, with real processes: torn tails, flipped bytes, lost caches,
// missing segments, moved directories, SIGKILL at random instants, second writers, and foreign
// or newer control files.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/format.h"
#include "comet/status.h"
#include "crc32c.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Code;
using comet::Config;
using comet::Entry;
using comet::EntryId;
using comet::Status;
namespace format = comet::format;
using comet_test::FileSize;
using comet_test::ListFilesRecursive;
using comet_test::ReadFull;
using comet_test::WriteFull;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kRecHdr = format::kRecordHeaderSize;
constexpr uint64_t kSegHdr = format::kSegmentHeaderSize;

// `len` bytes with no zero byte, so zeroing any suffix of a record changes it.
std::string NonZeroBytes(uint64_t seed, size_t len) {
  std::string s = comet_test::RandomBytes(seed, len);
  for (auto& ch : s) ch = static_cast<char>(static_cast<unsigned char>(ch) | 1);
  return s;
}

Config SmallConfig(uint64_t max_segment_bytes, comet::SyncMode mode = comet::SyncMode::kNone) {
  Config c;
  c.storage.max_segment_bytes = max_segment_bytes;
  c.storage.prefault_bytes = 0;
  c.sync.mode = mode;
  return c;
}

// ---- child processes ------------------------------------------------------------------------

struct Child {
  pid_t pid = -1;
  int fd = -1;  // read end of the child's report pipe
};

// Forks a child that runs body(write_fd) and _exits with its return value.
Child Spawn(const std::function<int(int)>& body) {
  int p[2];
  if (pipe(p) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    int rc = body(p[1]);
    _exit(rc);
  }
  close(p[1]);
  return {pid, p[0]};
}


// SIGKILLs the child and reaps it; returns the wait status.
int KillAndReap(Child* c) {
  kill(c->pid, SIGKILL);
  int status = 0;
  waitpid(c->pid, &status, 0);
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  return status;
}

// Waits for the child to exit on its own; returns its exit code, or -1 (killed after 30 s).
int Reap(Child* c) {
  int status = 0;
  for (int i = 0; i < 3000; i++) {
    pid_t r = waitpid(c->pid, &status, WNOHANG);
    if (r == c->pid) {
      if (c->fd >= 0) close(c->fd);
      c->fd = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    usleep(10000);
  }
  KillAndReap(c);
  return -1;
}

// A child that opens `dir` (sync.mode none), appends the given payloads to `stream` one by one,
// reports "r" and then waits to be killed. Its active segment stays preallocated and unsealed.
Child SpawnAppenderAndWait(const std::string& dir, const Config& cfg, const std::string& stream,
                           const std::vector<std::string>& payloads) {
  return Spawn([&](int fd) {
    auto r = Client::Open(dir, cfg);
    if (!r.ok()) return 2;
    for (const auto& p : payloads) {
      if (!(*r)->Append(stream, p).ok()) return 3;
    }
    if (!WriteFull(fd, "r", 1)) return 4;
    for (;;) pause();
  });
}

// Runs SpawnAppenderAndWait to completion and SIGKILLs the child once it reported.
void AppendInChildAndKill(const std::string& dir, const Config& cfg, const std::string& stream,
                          const std::vector<std::string>& payloads) {
  Child child = SpawnAppenderAndWait(dir, cfg, stream, payloads);
  ASSERT_GT(child.pid, 0);
  char c = 0;
  const bool ready = ReadFull(child.fd, &c, 1, 30000);
  int status = KillAndReap(&child);
  ASSERT_TRUE(ready && c == 'r') << "child did not finish appending; wait status " << status;
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

// ---- fixture --------------------------------------------------------------------------------

class RecoveryTest : public comet_test::TempDirTest {
 protected:
  std::unique_ptr<Client> Open(const std::string& dir, const Config& cfg = Config()) {
    auto r = Client::Open(dir, cfg);
    EXPECT_TRUE(r.ok()) << "Open(" << dir << "): " << r.status().ToString();
    if (!r.ok()) return nullptr;
    return std::move(r).value();
  }

  // Every entry of a stream as (payload, timestamp), failing the test on any unreadable entry.
  static std::vector<std::pair<std::string, int64_t>> ReadAll(Client* c, const std::string& s) {
    std::vector<std::pair<std::string, int64_t>> out;
    auto len = c->Length(s);
    EXPECT_TRUE(len.ok()) << s << ": " << len.status().ToString();
    if (!len.ok()) return out;
    for (uint64_t i = 0; i < *len; i++) {
      Entry e;
      Status st = c->Read(s, i, &e);
      EXPECT_TRUE(st.ok()) << s << " entry " << i << ": " << st.ToString();
      if (!st.ok()) return out;
      EXPECT_EQ(e.id.entry, i);
      out.emplace_back(std::string(e.data), e.timestamp_ns);
    }
    return out;
  }
};

// ---- torn tails -----------------------------------------------------------------------------

constexpr int kTornEntries = 8;
constexpr size_t kTornSize = 40;
const char* const kTornStream = "torn:shard:0000";

std::string TornPayload(uint64_t i) { return NonZeroBytes(500 + i, kTornSize); }

// Where the last record of a directory holding only kTornStream lies.
struct LastRecord {
  std::string seg;  // absolute path of the last segment
  uint64_t start = 0, end = 0;
};

LastRecord FindLastRecord(const std::string& dir, int entries) {
  LastRecord lr;
  auto segs = ListFilesRecursive(dir, ".seg");
  if (segs.empty()) return lr;
  lr.seg = segs.back();
  const uint64_t base = comet_test::SegmentBase(lr.seg);
  lr.start = kSegHdr + (entries - 1 - base) * (kRecHdr + kTornSize);
  lr.end = lr.start + kRecHdr + kTornSize;
  return lr;
}

// The record at `off` checks out per format.h: masked CRC32C of the payload, then header
// bytes [4,16), XOR the segment's header CRC (the record key).
bool RecordChecksOut(const std::string& seg, uint64_t off, const std::string& payload) {
  char hdr[kRecHdr];
  char key[4];
  if (!comet_test::ReadAt(seg, off, hdr, sizeof hdr) ||
      !comet_test::ReadAt(seg, format::seg::kHeaderCrc, key, sizeof key)) {
    return false;
  }
  const uint32_t sf = format::load32(hdr + format::rec::kSizeFlags);
  if ((sf & format::kSizeMask) != payload.size() || (sf & ~format::kSizeMask) != 0) return false;
  std::string stored(payload.size(), '\0');
  if (!comet_test::ReadAt(seg, off + kRecHdr, stored.data(), stored.size())) return false;
  if (stored != payload) return false;
  uint32_t crc = comet::crc32c::Value(payload.data(), payload.size());
  crc = comet::crc32c::Extend(crc, hdr + 4, 12);
  return format::load32(hdr + format::rec::kCrc) == (comet::crc32c::Mask(crc) ^ format::load32(key));
}

// Opens a damaged copy and checks the torn-tail contract; returns "" or the first violation.
std::string CheckTornTailRecovered(const std::string& dir, const Config& cfg) {
  const uint64_t n = kTornEntries;
  {
    auto r = Client::Open(dir, cfg);
    if (!r.ok()) return "Open: " + r.status().ToString();
    Client* c = r->get();
    auto len = c->Length(kTornStream);
    if (!len.ok()) return "Length: " + len.status().ToString();
    if (*len != n - 1) {
      Entry e;
      return "Length " + std::to_string(*len) + ", want " + std::to_string(n - 1) +
             "; Read(torn entry " + std::to_string(n - 1) + ") gives " +
             c->Read(kTornStream, n - 1, &e).ToString();
    }
    for (uint64_t i = 0; i + 1 < n; i++) {
      Entry e;
      Status s = c->Read(kTornStream, i, &e);
      if (!s.ok()) return "Read(" + std::to_string(i) + "): " + s.ToString();
      if (e.data != TornPayload(i)) return "entry " + std::to_string(i) + " differs";
    }
    Entry e;
    Status s = c->Read(kTornStream, n - 1, &e);
    if (s.code() != Code::kNotFound) return "Read(torn entry) gave " + s.ToString() + ", want NOT_FOUND";
    for (uint64_t k = 0; k < 2; k++) {
      EntryId id;
      s = c->Append(kTornStream, TornPayload(100 + k), &id);
      if (!s.ok()) return "Append: " + s.ToString();
      if (id.entry != n - 1 + k)
        return "new entry got id " + std::to_string(id.entry) + ", want " + std::to_string(n - 1 + k);
    }
    for (uint64_t k = 0; k < 2; k++) {
      s = c->Read(kTornStream, n - 1 + k, &e);
      if (!s.ok()) return "Read(new " + std::to_string(k) + "): " + s.ToString();
      if (e.data != TornPayload(100 + k)) return "new entry " + std::to_string(k) + " differs";
    }
    s = c->Close();
    if (!s.ok()) return "Close: " + s.ToString();
  }
  // And it stays that way: no torn bytes resurface on the next open.
  auto r = Client::Open(dir, cfg);
  if (!r.ok()) return "reopen: " + r.status().ToString();
  auto len = (*r)->Length(kTornStream);
  if (!len.ok() || *len != n + 1) return "Length after reopen is not " + std::to_string(n + 1);
  for (uint64_t i = 0; i <= n; i++) {
    Entry e;
    Status s = (*r)->Read(kTornStream, i, &e);
    if (!s.ok()) return "reopen Read(" + std::to_string(i) + "): " + s.ToString();
    const std::string want = i + 1 < n ? TornPayload(i) : TornPayload(100 + (i - (n - 1)));
    if (e.data != want) return "reopen entry " + std::to_string(i) + " differs";
  }
  return "";
}

// The last record was acknowledged (the control region's committed position, or the seal, is
// past it) and then damaged: that is not a torn write but lost acknowledged data. Its entry
// number stays taken (ids are never reused), reads of it fail with CORRUPT, it is reported, and
// new appends continue after it.
std::string CheckAcknowledgedTailReported(const std::string& dir, const Config& cfg) {
  const uint64_t n = kTornEntries;
  auto r = Client::Open(dir, cfg);
  if (!r.ok()) return "Open: " + r.status().ToString();
  Client* c = r->get();
  if (c->RecoveryReport().empty()) return "recovery reported nothing";
  auto len = c->Length(kTornStream);
  if (!len.ok() || *len != n) return "Length is not " + std::to_string(n);
  for (uint64_t i = 0; i + 1 < n; i++) {
    Entry e;
    Status s = c->Read(kTornStream, i, &e);
    if (!s.ok()) return "Read(" + std::to_string(i) + "): " + s.ToString();
    if (e.data != TornPayload(i)) return "entry " + std::to_string(i) + " differs";
  }
  Entry e;
  Status s = c->Read(kTornStream, n - 1, &e);
  if (s.code() != Code::kCorrupt) return "Read(damaged entry) gave " + s.ToString() + ", want CORRUPT";
  std::vector<std::string> problems;
  auto bad = c->Verify(&problems);
  if (!bad.ok() || *bad != 1) return "Verify did not count exactly one bad record";
  for (uint64_t k = 0; k < 2; k++) {
    EntryId id;
    s = c->Append(kTornStream, TornPayload(100 + k), &id);
    if (!s.ok()) return "Append: " + s.ToString();
    if (id.entry != n + k) return "new entry got id " + std::to_string(id.entry);
    s = c->Read(kTornStream, n + k, &e);
    if (!s.ok() || e.data != TornPayload(100 + k)) return "new entry " + std::to_string(k) + " differs";
  }
  s = c->Close();
  return s.ok() ? "" : "Close: " + s.ToString();
}

enum class Damage { kTruncate, kZero };

// For every byte offset inside the last record of `pristine`: copy it, damage from that offset
// (truncate, or zero to the end of the file), apply `tweak` to the copy, and check recovery.
void SweepTornTail(const std::string& pristine, const std::string& scratch, const Config& cfg,
                   const std::function<void(const std::string& dir, const LastRecord&)>& tweak,
                   bool acknowledged = false) {
  const LastRecord lr = FindLastRecord(pristine, kTornEntries);
  ASSERT_FALSE(lr.seg.empty());
  ASSERT_GE(FileSize(lr.seg), lr.end) << lr.seg;
  ASSERT_TRUE(RecordChecksOut(lr.seg, lr.start, TornPayload(kTornEntries - 1)))
      << "the last record is not where format.h puts it: " << lr.seg << " offset " << lr.start;
  const std::string rel = lr.seg.substr(pristine.size());
  std::vector<std::string> failures;
  int cases = 0;
  for (uint64_t off = lr.start; off < lr.end; off++) {
    for (Damage d : {Damage::kTruncate, Damage::kZero}) {
      std::error_code ec;
      comet_test::fs::remove_all(scratch, ec);
      ASSERT_TRUE(comet_test::CopyTree(pristine, scratch));
      const std::string seg = scratch + rel;
      if (d == Damage::kTruncate) {
        ASSERT_TRUE(comet_test::TruncateFile(seg, off));
      } else {
        ASSERT_TRUE(comet_test::ZeroFrom(seg, off));
      }
      if (tweak) tweak(scratch, lr);
      cases++;
      std::string err = acknowledged ? CheckAcknowledgedTailReported(scratch, cfg)
                                     : CheckTornTailRecovered(scratch, cfg);
      if (!err.empty()) {
        failures.push_back(std::string(d == Damage::kTruncate ? "truncated" : "zeroed") +
                           " from record offset +" + std::to_string(off - lr.start) + ": " + err);
      }
    }
  }
  std::error_code ec;
  comet_test::fs::remove_all(scratch, ec);
  std::string first;
  for (size_t i = 0; i < failures.size() && i < 4; i++) first += "\n  " + failures[i];
  EXPECT_TRUE(failures.empty()) << failures.size() << " of " << cases
                                << " torn-tail cases failed, e.g.:" << first;
}

std::vector<std::string> TornPayloads() {
  std::vector<std::string> v;
  for (int i = 0; i < kTornEntries; i++) v.push_back(TornPayload(i));
  return v;
}

// Rewinds the control region so the last record was never published: the writer died while
// copying it. ShardSlot.committed_entry/committed_offset are at fixed offsets (format.h).
void UnpublishLastRecord(const std::string& dir, const LastRecord& lr) {
  const std::string ctl = dir + "/comet.ctl";
  std::string bytes = comet_test::ReadFile(ctl);
  ASSERT_GE(bytes.size(), format::kControlHeaderSize);
  const uint64_t table = format::load64(bytes.data() + offsetof(format::ControlHeader, shard_table_offset));
  const uint32_t count = format::load32(bytes.data() + offsetof(format::ControlHeader, shard_count));
  int patched = 0;
  for (uint32_t i = 0; i < count; i++) {
    const uint64_t slot = table + uint64_t{i} * sizeof(format::ShardSlot);
    ASSERT_LE(slot + sizeof(format::ShardSlot), bytes.size());
    if (format::load32(bytes.data() + slot) != 1) continue;
    if (format::load32(bytes.data() + slot + 8) != 0) continue;  // shard 0
    char buf[8];
    format::store64(buf, kTornEntries - 1);
    ASSERT_TRUE(comet_test::PatchFile(ctl, slot + 64, buf, 8));  // committed_entry
    format::store64(buf, lr.start);
    ASSERT_TRUE(comet_test::PatchFile(ctl, slot + 72, buf, 8));  // committed_offset
    const uint64_t synced = format::load64(bytes.data() + slot + 88);
    format::store64(buf, std::min<uint64_t>(synced, kTornEntries - 1));
    ASSERT_TRUE(comet_test::PatchFile(ctl, slot + 88, buf, 8));  // synced_entry
    patched++;
  }
  ASSERT_EQ(patched, 1) << "expected exactly one shard slot for " << kTornStream;
}

// A clean Close, then the acknowledged last record is damaged byte by byte: reported, its number
// kept, never returned as data.
TEST_F(RecoveryTest, DamagedAcknowledgedLastRecordAfterCleanCloseIsReportedAtEveryOffset) {
  const std::string pristine = Sub("pristine");
  const Config cfg = SmallConfig(16 * kKiB);
  {
    auto c = Open(pristine, cfg);
    ASSERT_TRUE(c);
    for (const auto& p : TornPayloads()) ASSERT_OK(c->Append(kTornStream, p));
    ASSERT_OK(c->Close());
  }
  SweepTornTail(pristine, Sub("work"), cfg, nullptr, /*acknowledged=*/true);
}

// A writer killed by SIGKILL leaves its active segment preallocated with zeros after the last
// record; damaging that acknowledged record at any byte is reported the same way.
TEST_F(RecoveryTest, DamagedAcknowledgedLastRecordOfKilledWriterIsReportedAtEveryOffset) {
  const std::string pristine = Sub("pristine");
  const Config cfg = SmallConfig(16 * kKiB);
  AppendInChildAndKill(pristine, cfg, kTornStream, TornPayloads());
  if (HasFatalFailure()) return;
  const LastRecord lr = FindLastRecord(pristine, kTornEntries);
  EXPECT_EQ(FileSize(lr.seg), 16 * kKiB) << "active segment should be preallocated";
  SweepTornTail(pristine, Sub("work"), cfg, nullptr, /*acknowledged=*/true);
}

// The realistic torn write: the writer died while copying a record it never published (the
// control region's committed position is before it).
TEST_F(RecoveryTest, TornUnpublishedRecordOfKilledWriterIsDroppedAtEveryOffset) {
  const std::string pristine = Sub("pristine");
  const Config cfg = SmallConfig(16 * kKiB);
  AppendInChildAndKill(pristine, cfg, kTornStream, TornPayloads());
  if (HasFatalFailure()) return;
  SweepTornTail(pristine, Sub("work"), cfg, UnpublishLastRecord);
}

// Without the control region, only the segment says where the data ends.
TEST_F(RecoveryTest, TornLastRecordWithoutControlFileIsDroppedAtEveryOffset) {
  const std::string pristine = Sub("pristine");
  const Config cfg = SmallConfig(16 * kKiB);
  AppendInChildAndKill(pristine, cfg, kTornStream, TornPayloads());
  if (HasFatalFailure()) return;
  SweepTornTail(pristine, Sub("work"), cfg, [](const std::string& dir, const LastRecord&) {
    ASSERT_EQ(::unlink((dir + "/comet.ctl").c_str()), 0);
  });
}

TEST_F(RecoveryTest, UntouchedKilledWriterLosesNothing) {
  const Config cfg = SmallConfig(16 * kKiB);
  AppendInChildAndKill(dir_, cfg, kTornStream, TornPayloads());
  if (HasFatalFailure()) return;
  auto c = Open(dir_, cfg);
  ASSERT_TRUE(c);
  auto all = ReadAll(c.get(), kTornStream);
  ASSERT_EQ(all.size(), static_cast<size_t>(kTornEntries));
  for (int i = 0; i < kTornEntries; i++) EXPECT_EQ(all[i].first, TornPayload(i));
  EntryId id;
  ASSERT_OK(c->Append(kTornStream, "next", &id));
  EXPECT_EQ(id.entry, static_cast<uint64_t>(kTornEntries));
}

TEST_F(RecoveryTest, TornTailIsCountedInStats) {
  const Config cfg = SmallConfig(16 * kKiB);
  AppendInChildAndKill(dir_, cfg, kTornStream, TornPayloads());
  if (HasFatalFailure()) return;
  const LastRecord lr = FindLastRecord(dir_, kTornEntries);
  UnpublishLastRecord(dir_, lr);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(comet_test::ZeroFrom(lr.seg, lr.start + kRecHdr + kTornSize / 2));
  auto c = Open(dir_, cfg);
  ASSERT_TRUE(c);
  EXPECT_EQ(*c->Length(kTornStream), static_cast<uint64_t>(kTornEntries - 1));
  EXPECT_GE(c->GetStats().torn_tails, 1u);
  EXPECT_EQ(c->GetStats().corrupt_records, 0u) << "a torn tail is not corruption";
}

// ---- corruption in the middle ---------------------------------------------------------------

constexpr size_t kMidSize = 100;
std::string MidPayload(uint32_t shard, uint64_t i) { return NonZeroBytes(shard * 1000 + i, kMidSize); }

class CorruptMiddleTest : public RecoveryTest {
 protected:
  // Writes 10 entries to each of two shards; returns the segment file of shard 0.
  std::string WriteTwoShards(const Config& cfg, uint32_t* prefix_id) {
    auto c = Open(dir_, cfg);
    if (!c) return "";
    for (uint32_t shard = 0; shard < 2; shard++) {
      for (uint64_t i = 0; i < 10; i++) {
        EntryId id;
        Status s = c->Append(comet::ShardStreamName("mid", shard), MidPayload(shard, i), &id);
        EXPECT_TRUE(s.ok()) << s.ToString();
        *prefix_id = id.prefix_id;
      }
    }
    EXPECT_TRUE(c->Close().ok());
    auto segs = comet_test::ListSegments(dir_, *prefix_id, 0);
    EXPECT_EQ(segs.size(), 1u);
    return segs.empty() ? "" : segs[0];
  }

  static uint64_t RecordOffset(uint64_t i) { return kSegHdr + i * (kRecHdr + kMidSize); }

  void ExpectOnlyEntryFiveIsCorrupt(Client* c, const std::string& seg) {
    const std::string s0 = "mid:shard:0000";
    Entry e;
    Status s = c->Read(s0, 5, &e);
    EXPECT_EQ(s.code(), Code::kCorrupt) << s.ToString();
    EXPECT_FALSE(s.message().empty());
    for (uint64_t i : {0, 4, 6, 9}) {
      Status r = c->Read(s0, i, &e);
      ASSERT_TRUE(r.ok()) << "entry " << i << ": " << r.ToString();
      EXPECT_TRUE(e.data == MidPayload(0, i)) << i;
    }
    auto len = c->Length(s0);
    ASSERT_TRUE(len.ok());
    EXPECT_EQ(*len, 10u) << "damage in the middle must not truncate the log";

    // The iterator reports CORRUPT once and reads on.
    auto it = c->Scan(s0, 0);
    ASSERT_TRUE(it.ok()) << it.status().ToString();
    std::vector<uint64_t> good;
    int corrupt = 0;
    for (int calls = 0; calls < 20; calls++) {
      Status n = it->Next(&e);
      if (n.ok()) {
        EXPECT_TRUE(e.data == MidPayload(0, e.id.entry)) << e.id.entry;
        good.push_back(e.id.entry);
      } else if (n.code() == Code::kCorrupt) {
        corrupt++;
      } else {
        EXPECT_EQ(n.code(), Code::kNotFound) << n.ToString();
        break;
      }
    }
    EXPECT_EQ(corrupt, 1);
    EXPECT_EQ(good, (std::vector<uint64_t>{0, 1, 2, 3, 4, 6, 7, 8, 9}));
    EXPECT_EQ(it->position(), 10u);

    // ReadRange skips and counts it.
    std::vector<Entry> out;
    uint64_t bad = 0;
    ASSERT_OK(c->ReadRange(s0, 0, 100, &out, &bad));
    EXPECT_EQ(out.size(), 9u);
    EXPECT_EQ(bad, 1u);

    // Verify counts one bad record and names the file.
    std::vector<std::string> problems;
    auto v = c->Verify(&problems);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(*v, 1u);
    ASSERT_FALSE(problems.empty());
    const std::string base = comet_test::fs::path(seg).filename().string();
    bool named = false;
    for (const auto& p : problems) named = named || p.find(base) != std::string::npos;
    EXPECT_TRUE(named) << "no problem line names " << base << "; first: " << problems[0];

    // The other shard is unaffected.
    for (uint64_t i = 0; i < 10; i++) {
      Status r = c->Read("mid:shard:0001", i, &e);
      ASSERT_TRUE(r.ok()) << "shard 1 entry " << i << ": " << r.ToString();
      EXPECT_TRUE(e.data == MidPayload(1, i));
    }
    EXPECT_GE(c->GetStats().corrupt_records, 1u);
  }
};

TEST_F(CorruptMiddleTest, FlippedPayloadByteIsReportedAndNeighboursRead) {
  const Config cfg = SmallConfig(64 * kKiB);
  uint32_t pid = 0;
  const std::string seg = WriteTwoShards(cfg, &pid);
  ASSERT_FALSE(seg.empty());
  ASSERT_TRUE(comet_test::FlipByte(seg, RecordOffset(5) + kRecHdr + 50));
  auto c = Open(dir_, cfg);
  ASSERT_TRUE(c);
  ExpectOnlyEntryFiveIsCorrupt(c.get(), seg);
  // Appends go on after the damage, with the next id.
  EntryId id;
  ASSERT_OK(c->Append("mid:shard:0000", "after", &id));
  EXPECT_EQ(id.entry, 10u);
}

TEST_F(CorruptMiddleTest, FlippedTimestampByteIsReportedAndNeighboursRead) {
  const Config cfg = SmallConfig(64 * kKiB);
  uint32_t pid = 0;
  const std::string seg = WriteTwoShards(cfg, &pid);
  ASSERT_FALSE(seg.empty());
  ASSERT_TRUE(comet_test::FlipByte(seg, RecordOffset(5) + format::rec::kTimestamp + 1, 0x10));
  auto c = Open(dir_, cfg);
  ASSERT_TRUE(c);
  ExpectOnlyEntryFiveIsCorrupt(c.get(), seg);
}

TEST_F(CorruptMiddleTest, FlippedByteInActiveSegmentOfKilledWriterIsCorruptionNotTornTail) {
  const Config cfg = SmallConfig(64 * kKiB);
  std::vector<std::string> p0, p1;
  for (uint64_t i = 0; i < 10; i++) p0.push_back(MidPayload(0, i));
  AppendInChildAndKill(dir_, cfg, "mid:shard:0000", p0);
  if (HasFatalFailure()) return;
  // Shard 1 written by a second (clean) session.
  {
    auto c = Open(dir_, cfg);
    ASSERT_TRUE(c);
    for (uint64_t i = 0; i < 10; i++) ASSERT_OK(c->Append("mid:shard:0001", MidPayload(1, i)));
    ASSERT_OK(c->Close());
  }
  std::string seg;
  for (const auto& s : ListFilesRecursive(dir_, ".seg"))
    if (s.find("/0000/") != std::string::npos) seg = s;
  ASSERT_FALSE(seg.empty());
  ASSERT_TRUE(comet_test::FlipByte(seg, RecordOffset(5) + kRecHdr + 7));
  auto c = Open(dir_, cfg);
  ASSERT_TRUE(c);
  ExpectOnlyEntryFiveIsCorrupt(c.get(), seg);
}

// ---- caches: index files and the control region ---------------------------------------------

class CacheLossTest : public RecoveryTest {
 protected:
  void SetUp() override {
    RecoveryTest::SetUp();
    cfg_ = SmallConfig(4096);
    cfg_.index.interval = 4;
    auto c = Open(dir_, cfg_);
    ASSERT_TRUE(c);
    for (int i = 0; i < 150; i++) {
      for (const char* s : {"cache:shard:0000", "cache:shard:0003"}) {
        ASSERT_OK(c->Append(s, NonZeroBytes(i * 7 + s[15], 60 + i % 50)));
      }
    }
    ASSERT_OK(c->Close());
    before_ = Snapshot();
    ASSERT_EQ(before_.size(), 2u);
    ASSERT_EQ(before_[0].size(), 150u);
    ASSERT_EQ(before_[1].size(), 150u);
    idx_ = ListFilesRecursive(dir_, ".idx");
    ASSERT_FALSE(idx_.empty()) << "sealed segments should have index files";
    ASSERT_TRUE(comet_test::FileExists(dir_ + "/comet.ctl"));
  }

  std::vector<std::vector<std::pair<std::string, int64_t>>> Snapshot() {
    auto c = Open(dir_, cfg_);
    if (!c) return {};
    std::vector<std::vector<std::pair<std::string, int64_t>>> out;
    for (const char* s : {"cache:shard:0000", "cache:shard:0003"}) out.push_back(ReadAll(c.get(), s));
    // Numbering continues where it was.
    EntryId id;
    EXPECT_TRUE(c->Append("cache:shard:0003", "probe", &id).ok());
    EXPECT_EQ(id.entry, 150u);
    EXPECT_TRUE(c->Close().ok());
    return out;
  }

  void ExpectSameData() {
    auto c = Open(dir_, cfg_);
    ASSERT_TRUE(c);
    int i = 0;
    for (const char* s : {"cache:shard:0000", "cache:shard:0003"}) {
      auto all = ReadAll(c.get(), s);
      ASSERT_GE(all.size(), 150u) << s;
      for (size_t k = 0; k < 150; k++) {
        EXPECT_EQ(all[k].first, before_[i][k].first) << s << " entry " << k;
        EXPECT_EQ(all[k].second, before_[i][k].second) << s << " entry " << k << " timestamp";
      }
      i++;
    }
    EntryId id;
    ASSERT_OK(c->Append("cache:shard:0000", "after", &id));
    EXPECT_EQ(id.entry, 150u);
    // Reads through a fresh iterator too (the index is what positions it).
    auto it = c->Scan("cache:shard:0003", 77);
    ASSERT_TRUE(it.ok());
    Entry e;
    ASSERT_OK(it->Next(&e));
    EXPECT_EQ(e.id.entry, 77u);
    EXPECT_EQ(std::string(e.data), before_[1][77].first);
  }

  Config cfg_;
  std::vector<std::vector<std::pair<std::string, int64_t>>> before_;
  std::vector<std::string> idx_;
};

TEST_F(CacheLossTest, DeletedIndexFilesAndControlFileAreRebuiltWithSameNumbering) {
  for (const auto& f : idx_) ASSERT_EQ(::unlink(f.c_str()), 0) << f;
  ASSERT_EQ(::unlink((dir_ + "/comet.ctl").c_str()), 0);
  ExpectSameData();
  EXPECT_TRUE(comet_test::FileExists(dir_ + "/comet.ctl"));
}

TEST_F(CacheLossTest, GarbledIndexFilesAndControlFileAreRebuiltWithSameNumbering) {
  uint64_t seed = 1;
  for (const auto& f : idx_) {
    ASSERT_TRUE(comet_test::WriteFile(f, comet_test::RandomBytes(seed++, FileSize(f))));
  }
  const std::string ctl = dir_ + "/comet.ctl";
  ASSERT_TRUE(comet_test::WriteFile(ctl, comet_test::RandomBytes(seed++, FileSize(ctl))));
  ExpectSameData();
}

TEST_F(CacheLossTest, ShortenedIndexFilesAreRebuilt) {
  for (const auto& f : idx_) ASSERT_TRUE(comet_test::TruncateFile(f, FileSize(f) / 2));
  ExpectSameData();
}

TEST_F(CacheLossTest, IndexWithFlippedNodeByteIsRebuilt) {
  // The node array is covered by the index CRC: a wrong offset must never be trusted.
  for (const auto& f : idx_) {
    if (FileSize(f) > format::idx::kNodes + 4) {
      ASSERT_TRUE(comet_test::FlipByte(f, format::idx::kNodes + 4, 0x08));
    }
  }
  ExpectSameData();
}

// ---- missing segments -----------------------------------------------------------------------

TEST_F(RecoveryTest, MissingMiddleSegmentLeavesAGapAndKeepsLaterIds) {
  const Config cfg = SmallConfig(4096);
  const std::string stream = "gap:shard:0000";
  std::vector<std::string> payloads;
  uint32_t prefix_id = 0;
  {
    auto c = Open(dir_, cfg);
    ASSERT_TRUE(c);
    for (int i = 0; i < 200; i++) {
      payloads.push_back(NonZeroBytes(9000 + i, 100));
      EntryId id;
      ASSERT_OK(c->Append(stream, payloads.back(), &id));
      prefix_id = id.prefix_id;
    }
    ASSERT_OK(c->Close());
  }
  auto segs = comet_test::ListSegments(dir_, prefix_id, 0);
  ASSERT_GE(segs.size(), 5u);
  const uint64_t gap_from = comet_test::SegmentBase(segs[2]);
  const uint64_t gap_to = comet_test::SegmentBase(segs[3]);
  ASSERT_LT(gap_from, gap_to);
  ASSERT_EQ(::unlink(segs[2].c_str()), 0);
  std::string idx = segs[2].substr(0, segs[2].size() - 4) + ".idx";
  ::unlink(idx.c_str());

  auto c = Open(dir_, cfg);
  ASSERT_TRUE(c);
  EXPECT_EQ(*c->Length(stream), 200u);
  for (uint64_t i = 0; i < 200; i++) {
    Entry e;
    Status s = c->Read(stream, i, &e);
    if (i >= gap_from && i < gap_to) {
      EXPECT_EQ(s.code(), Code::kNotFound) << "entry " << i << " is in the gap: " << s.ToString();
    } else {
      ASSERT_TRUE(s.ok()) << "entry " << i << ": " << s.ToString();
      EXPECT_EQ(e.id.entry, i);
      EXPECT_TRUE(e.data == payloads[i]) << i;
    }
  }
  auto info = c->Inspect(stream);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  bool reported = false;
  for (const auto& g : info->gaps) reported = reported || (g.first == gap_from && g.second == gap_to);
  EXPECT_TRUE(reported) << "Inspect does not report the gap [" << gap_from << "," << gap_to << ")";
  EXPECT_EQ(info->next_entry, 200u);
  EXPECT_GE(c->GetStats().gaps, 1u);

  // An iterator skips the gap and reads every other entry in order.
  auto it = c->Scan(stream, 0);
  ASSERT_TRUE(it.ok());
  std::vector<uint64_t> seen;
  for (int calls = 0; calls < 400; calls++) {
    Entry e;
    Status s = it->Next(&e);
    if (s.ok()) {
      seen.push_back(e.id.entry);
      EXPECT_TRUE(e.data == payloads[e.id.entry]);
    } else if (s.code() == Code::kNotFound && it->position() >= 200) {
      break;
    }
  }
  std::vector<uint64_t> want;
  for (uint64_t i = 0; i < 200; i++)
    if (i < gap_from || i >= gap_to) want.push_back(i);
  EXPECT_EQ(seen, want);

  EntryId id;
  ASSERT_OK(c->Append(stream, "after the gap", &id));
  EXPECT_EQ(id.entry, 200u);
}

// ---- moved directory ------------------------------------------------------------------------

TEST_F(RecoveryTest, MovedDirectoryOpensWithEverythingReadable) {
  const std::string a = Sub("a"), b = Sub("b");
  const Config cfg = SmallConfig(4096);
  std::vector<std::string> payloads;
  {
    auto c = Open(a, cfg);
    ASSERT_TRUE(c);
    for (int i = 0; i < 100; i++) {
      payloads.push_back(NonZeroBytes(i, 80));
      ASSERT_OK(c->Append("moved:shard:0000", payloads.back()));
      ASSERT_OK(c->Append("other:shard:0001", payloads.back()));
    }
    ASSERT_OK(c->Close());
  }
  ASSERT_EQ(::rename(a.c_str(), b.c_str()), 0);
  auto c = Open(b, cfg);
  ASSERT_TRUE(c);
  for (const char* s : {"moved:shard:0000", "other:shard:0001"}) {
    auto all = ReadAll(c.get(), s);
    ASSERT_EQ(all.size(), 100u) << s;
    for (int i = 0; i < 100; i++) EXPECT_EQ(all[i].first, payloads[i]) << s << " " << i;
  }
  EXPECT_EQ(c->Streams(), (std::vector<std::string>{"moved:shard:0000", "other:shard:0001"}));
  EntryId id;
  ASSERT_OK(c->Append("moved:shard:0000", "x", &id));
  EXPECT_EQ(id.entry, 100u);
}

// ---- SIGKILL at random instants -------------------------------------------------------------

// The payload of entry e: deterministic, random-sized, sometimes compressible.
std::string CrashPayload(uint64_t e) {
  const uint64_t h = comet_test::SplitMix64(e * 7919 + 1);
  if (e % 97 == 5) return comet_test::CompressibleBytes(e, 5000 + h % 3000);
  return comet_test::RandomBytes(e, h % 700);
}

struct Ack {
  uint64_t entry;
  uint64_t hash;
};
constexpr uint64_t kReadyMark = ~uint64_t{0};

int CrashChild(const std::string& dir, int fd, uint64_t seed) {
  Config cfg = SmallConfig(64 * kKiB);
  auto r = Client::Open(dir, cfg);
  if (!r.ok()) return 2;
  Client* c = r->get();
  const std::string stream = "crash:shard:0000";
  if (!c->GetStream(stream).ok()) return 3;
  auto len = c->Length(stream);
  if (!len.ok()) return 4;
  uint64_t next = *len;
  Ack ready = {kReadyMark, next};
  if (!WriteFull(fd, &ready, sizeof ready)) return 5;
  std::mt19937_64 rng(seed);
  std::vector<std::string> payloads;
  std::vector<std::string_view> views;
  std::vector<EntryId> ids;
  for (;;) {
    const size_t n = 1 + rng() % 8;
    payloads.clear();
    for (size_t k = 0; k < n; k++) payloads.push_back(CrashPayload(next + k));
    views.assign(payloads.begin(), payloads.end());
    ids.resize(n);
    if (!c->Append(stream, views, ids.data()).ok()) return 6;
    for (size_t k = 0; k < n; k++) {
      if (ids[k].entry != next + k) return 7;
      Ack a = {ids[k].entry, comet_test::Fnv1a64(payloads[k].data(), payloads[k].size())};
      if (!WriteFull(fd, &a, sizeof a)) return 8;
    }
    next += n;
  }
}

TEST_F(RecoveryTest, SigkillAtRandomInstantsLosesNothingAcknowledged) {
  const std::string dir = Sub("crash");
  const std::string stream = "crash:shard:0000";
  std::mt19937_64 rng(20240501);
  uint64_t total_acked = 0;
  uint64_t prev_len = 0;
  for (int iter = 0; iter < 20; iter++) {
    SCOPED_TRACE("iteration " + std::to_string(iter));
    Child child = Spawn([&](int fd) { return CrashChild(dir, fd, 1000 + iter); });
    ASSERT_GT(child.pid, 0);
    Ack ready{};
    const bool started = ReadFull(child.fd, &ready, sizeof ready, 30000);
    if (!started) {
      int st = KillAndReap(&child);
      FAIL() << "child never became ready; wait status " << st
             << (WIFEXITED(st) ? " exit " + std::to_string(WEXITSTATUS(st)) : "");
    }
    ASSERT_EQ(ready.entry, kReadyMark);
    EXPECT_EQ(ready.hash, prev_len) << "the child saw another length than the last session left";

    // Let it run 1-30 ms, draining its acknowledgements meanwhile, then SIGKILL it.
    std::vector<Ack> acks;
    std::string pending;
    auto drain = [&](int timeout_ms) {
      char buf[65536];
      struct pollfd pfd = {child.fd, POLLIN, 0};
      if (poll(&pfd, 1, timeout_ms) <= 0) return false;
      ssize_t r = read(child.fd, buf, sizeof buf);
      if (r <= 0) return false;
      pending.append(buf, static_cast<size_t>(r));
      size_t whole = pending.size() / sizeof(Ack) * sizeof(Ack);
      for (size_t o = 0; o < whole; o += sizeof(Ack)) {
        Ack a;
        std::memcpy(&a, pending.data() + o, sizeof a);
        acks.push_back(a);
      }
      pending.erase(0, whole);
      return true;
    };
    const int delay_ms = 1 + static_cast<int>(rng() % 30);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            deadline - std::chrono::steady_clock::now())
                                            .count());
      drain(std::max(left, 0));
    }
    kill(child.pid, SIGKILL);
    while (drain(1000)) {
    }
    int status = 0;
    waitpid(child.pid, &status, 0);
    close(child.fd);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "child ended on its own: exit " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    total_acked += acks.size();

    // Reopen: every acknowledged entry is there, byte-exact; the readable set is a prefix.
    auto c = Open(dir, SmallConfig(64 * kKiB));
    ASSERT_TRUE(c);
    auto len_r = c->Length(stream);
    ASSERT_TRUE(len_r.ok()) << len_r.status().ToString();
    const uint64_t len = *len_r;
    uint64_t expect_next = prev_len;
    for (const Ack& a : acks) {
      ASSERT_EQ(a.entry, expect_next) << "acknowledged ids are not consecutive";
      expect_next++;
      const std::string want = CrashPayload(a.entry);
      ASSERT_EQ(a.hash, comet_test::Fnv1a64(want.data(), want.size()));
      ASSERT_LT(a.entry, len) << "acknowledged entry " << a.entry << " lost (length " << len << ")";
    }
    const uint64_t last_acked = acks.empty() ? prev_len : acks.back().entry;
    size_t bad = 0;
    for (uint64_t e = 0; e < len; e++) {
      Entry out;
      Status s = c->Read(stream, e, &out);
      if (!s.ok() || out.data != CrashPayload(e)) {
        if (bad++ < 3) {
          ADD_FAILURE() << "entry " << e << " of " << len << " (last acknowledged "
                        << last_acked << ", " << acks.size() << " acks this round): "
                        << s.ToString();
        }
      }
    }
    ASSERT_EQ(bad, 0u) << "the readable entries are not an intact prefix";
    Entry out;
    EXPECT_EQ(c->Read(stream, len, &out).code(), Code::kNotFound);

    // New appends continue with the next ids.
    for (uint64_t k = 0; k < 2; k++) {
      EntryId id;
      const std::string p = CrashPayload(len + k);
      ASSERT_OK(c->Append(stream, p, &id));
      EXPECT_EQ(id.entry, len + k);
      ASSERT_OK(c->Read(stream, len + k, &out));
      EXPECT_TRUE(out.data == p);
    }
    ASSERT_OK(c->Close());
    prev_len = len + 2;
  }
  EXPECT_GT(total_acked, 20u) << "the children acknowledged almost nothing: the test is vacuous";
  EXPECT_GT(ListFilesRecursive(dir, ".seg").size(), 1u) << "no rotation happened";
}

// Several threads append to one shard of a child that is killed at a random instant; every
// acknowledged entry reads back its own payload and the readable entries are a dense prefix.
struct MtAck {
  uint64_t entry;
  uint64_t seed;  // the payload is MtPayload(seed)
};

std::string MtPayload(uint64_t seed) {
  return std::to_string(seed) + ":" + comet_test::RandomBytes(seed, comet_test::SplitMix64(seed) % 900);
}

bool MtPayloadIntact(std::string_view p) {
  const size_t colon = p.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 20) return false;
  for (size_t i = 0; i < colon; i++)
    if (p[i] < '0' || p[i] > '9') return false;
  return p == MtPayload(std::stoull(std::string(p.substr(0, colon))));
}

TEST_F(RecoveryTest, SigkillDuringMultiThreadedAppendsLosesNothingAcknowledged) {
  const std::string dir = Sub("mtcrash");
  const std::string stream = "mtcrash:shard:0001";
  std::mt19937_64 rng(77);
  uint64_t prev_len = 0, total_acked = 0;
  for (int iter = 0; iter < 8; iter++) {
    SCOPED_TRACE("iteration " + std::to_string(iter));
    Child child = Spawn([&](int fd) {
      auto r = Client::Open(dir, SmallConfig(32 * kKiB));
      if (!r.ok()) return 2;
      Client* c = r->get();
      if (!c->GetStream(stream).ok()) return 3;
      if (!WriteFull(fd, "r", 1)) return 4;
      std::vector<std::thread> threads;
      for (int t = 0; t < 4; t++) {
        threads.emplace_back([&, t] {
          for (uint64_t i = 0;; i++) {
            const size_t n = 1 + (i + t) % 3;
            std::vector<std::string> ps;
            std::vector<uint64_t> seeds;
            for (size_t k = 0; k < n; k++) {
              seeds.push_back((uint64_t(iter) << 40) | (uint64_t(t) << 32) | (i * 4 + k));
              ps.push_back(MtPayload(seeds.back()));
            }
            std::vector<std::string_view> v(ps.begin(), ps.end());
            std::vector<EntryId> ids(n);
            if (!c->Append(stream, v, ids.data()).ok()) _exit(6);
            for (size_t k = 0; k < n; k++) {
              MtAck a = {ids[k].entry, seeds[k]};
              if (!WriteFull(fd, &a, sizeof a)) _exit(8);  // one write: atomic below PIPE_BUF
            }
          }
        });
      }
      for (auto& th : threads) th.join();
      return 9;
    });
    ASSERT_GT(child.pid, 0);
    char ch = 0;
    if (!ReadFull(child.fd, &ch, 1, 30000)) {
      int st = KillAndReap(&child);
      FAIL() << "child never became ready; wait status " << st;
    }
    std::vector<MtAck> acks;
    std::string pending;
    auto drain = [&](int timeout_ms) {
      char buf[65536];
      struct pollfd pfd = {child.fd, POLLIN, 0};
      if (poll(&pfd, 1, timeout_ms) <= 0) return false;
      ssize_t r = read(child.fd, buf, sizeof buf);
      if (r <= 0) return false;
      pending.append(buf, static_cast<size_t>(r));
      size_t whole = pending.size() / sizeof(MtAck) * sizeof(MtAck);
      for (size_t o = 0; o < whole; o += sizeof(MtAck)) {
        MtAck a;
        std::memcpy(&a, pending.data() + o, sizeof a);
        acks.push_back(a);
      }
      pending.erase(0, whole);
      return true;
    };
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(1 + rng() % 30);
    while (std::chrono::steady_clock::now() < deadline) drain(1);
    kill(child.pid, SIGKILL);
    while (drain(1000)) {
    }
    int status = 0;
    waitpid(child.pid, &status, 0);
    close(child.fd);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "child ended on its own: exit " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    total_acked += acks.size();

    auto c = Open(dir, SmallConfig(32 * kKiB));
    ASSERT_TRUE(c);
    const uint64_t len = *c->Length(stream);
    std::set<uint64_t> acked_ids;
    for (const MtAck& a : acks) {
      EXPECT_TRUE(acked_ids.insert(a.entry).second) << "id " << a.entry << " acknowledged twice";
      ASSERT_GE(a.entry, prev_len);
      ASSERT_LT(a.entry, len) << "acknowledged entry " << a.entry << " lost";
      Entry e;
      Status s = c->Read(stream, a.entry, &e);
      ASSERT_TRUE(s.ok()) << "acknowledged entry " << a.entry << ": " << s.ToString();
      ASSERT_TRUE(e.data == MtPayload(a.seed)) << "entry " << a.entry << " holds another payload";
    }
    size_t bad = 0;
    for (uint64_t e = prev_len; e < len; e++) {
      Entry out;
      Status s = c->Read(stream, e, &out);
      if (!s.ok() || !MtPayloadIntact(out.data)) {
        if (bad++ < 3) ADD_FAILURE() << "entry " << e << " of " << len << ": " << s.ToString();
      }
    }
    ASSERT_EQ(bad, 0u) << "the readable entries are not an intact prefix";
    EntryId id;
    ASSERT_OK(c->Append(stream, MtPayload(~uint64_t{0} >> 1), &id));
    EXPECT_EQ(id.entry, len);
    ASSERT_OK(c->Close());
    prev_len = len + 1;
  }
  EXPECT_GT(total_acked, 8u);
}

// ---- one writer -----------------------------------------------------------------------------

TEST_F(RecoveryTest, SecondWriterProcessIsRefusedWithNotOwner) {
  auto w = Open(dir_);
  ASSERT_TRUE(w);
  ASSERT_OK(w->Append("own:shard:0000", "held"));
  Child child = Spawn([&](int) {
    auto r = Client::Open(dir_, Config());
    if (r.ok()) return 1;
    return r.status().code() == Code::kNotOwner ? 0 : 2;
  });
  ASSERT_GT(child.pid, 0);
  EXPECT_EQ(Reap(&child), 0) << "exit 1: a second writer opened; exit 2: wrong error code";
  // The first writer is unaffected.
  EntryId id;
  ASSERT_OK(w->Append("own:shard:0000", "still mine", &id));
  EXPECT_EQ(id.entry, 1u);

  // Once it closes, another process may write.
  ASSERT_OK(w->Close());
  Child after = Spawn([&](int) {
    auto r = Client::Open(dir_, Config());
    if (!r.ok()) return 1;
    EntryId nid;
    if (!(*r)->Append("own:shard:0000", "child", &nid).ok()) return 2;
    if (nid.entry != 2) return 3;
    return (*r)->Close().ok() ? 0 : 4;
  });
  EXPECT_EQ(Reap(&after), 0);
}

TEST_F(RecoveryTest, SecondWriterInSameProcessIsRefusedWithNotOwner) {
  auto w = Open(dir_);
  ASSERT_TRUE(w);
  auto second = Client::Open(dir_, Config());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kNotOwner);
  EXPECT_FALSE(second.status().message().empty());
  ASSERT_OK(w->Append("own:shard:0001", "x"));
  ASSERT_OK(w->Close());
  auto third = Client::Open(dir_, Config());
  EXPECT_TRUE(third.ok()) << "the claim was not released by Close: " << third.status().ToString();
}

TEST_F(RecoveryTest, KilledWritersClaimIsReleased) {
  AppendInChildAndKill(dir_, SmallConfig(64 * kKiB), "own:shard:0002", {"a", "b"});
  if (HasFatalFailure()) return;
  auto c = Open(dir_);
  ASSERT_TRUE(c);
  EXPECT_EQ(*c->Length("own:shard:0002"), 2u);
}

TEST_F(RecoveryTest, ReadOnlyClientReadsAlongsideTheWriter) {
  auto w = Open(dir_);
  ASSERT_TRUE(w);
  const std::string stream = "ro:shard:0000";
  for (int i = 0; i < 5; i++) ASSERT_OK(w->Append(stream, "e" + std::to_string(i)));
  Config ro;
  ro.open.read_only = true;
  auto r = Open(dir_, ro);
  ASSERT_TRUE(r);
  ASSERT_EQ(*r->Length(stream), 5u);
  Entry e;
  ASSERT_OK(r->Read(stream, 4, &e));
  EXPECT_EQ(e.data, "e4");
  // It follows the writer.
  for (int i = 5; i < 10; i++) ASSERT_OK(w->Append(stream, "e" + std::to_string(i)));
  auto len = r->Length(stream);
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, 10u);
  ASSERT_OK(r->Read(stream, 9, &e));
  EXPECT_EQ(e.data, "e9");
  // It does not write, and does not invent streams.
  EXPECT_FALSE(r->Append(stream, "nope").ok());
  auto missing = r->GetStream("nosuch:shard:0000");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_EQ(*w->Length(stream), 10u);
}

TEST_F(RecoveryTest, ReadOnlyClientFollowsTheWriterAcrossRotations) {
  const Config wcfg = SmallConfig(4096);
  auto w = Open(dir_, wcfg);
  ASSERT_TRUE(w);
  const std::string stream = "ro:shard:0002";
  ASSERT_OK(w->Append(stream, "first"));
  Config ro = wcfg;
  ro.open.read_only = true;
  auto r = Open(dir_, ro);
  ASSERT_TRUE(r);
  std::vector<std::string> payloads = {"first"};
  for (int i = 1; i < 300; i++) {
    payloads.push_back(NonZeroBytes(4000 + i, 90));
    ASSERT_OK(w->Append(stream, payloads.back()));
  }
  ASSERT_GT(ListFilesRecursive(dir_, ".seg").size(), 5u);
  auto all = ReadAll(r.get(), stream);
  ASSERT_EQ(all.size(), payloads.size());
  for (size_t i = 0; i < all.size(); i++) EXPECT_EQ(all[i].first, payloads[i]) << i;
  auto it = r->Scan(stream, 250);
  ASSERT_TRUE(it.ok());
  Entry e;
  ASSERT_OK(it->Next(&e));
  EXPECT_EQ(e.id.entry, 250u);
  EXPECT_TRUE(e.data == payloads[250]);
}

TEST_F(RecoveryTest, ReadOnlyClientReadsWhatAnotherProcessWrites) {
  const std::string stream = "ro:shard:0001";
  std::vector<std::string> payloads;
  for (int i = 0; i < 20; i++) payloads.push_back(NonZeroBytes(i, 300));
  Child child = SpawnAppenderAndWait(dir_, SmallConfig(64 * kKiB), stream, payloads);
  ASSERT_GT(child.pid, 0);
  char c = 0;
  ASSERT_TRUE(ReadFull(child.fd, &c, 1, 30000)) << "child did not append";
  Config ro;
  ro.open.read_only = true;
  {
    auto r = Open(dir_, ro);
    if (r) {
      auto all = ReadAll(r.get(), stream);
      EXPECT_EQ(all.size(), payloads.size());
      for (size_t i = 0; i < all.size() && i < payloads.size(); i++) EXPECT_EQ(all[i].first, payloads[i]);
    }
  }
  KillAndReap(&child);
}

// ---- control file ---------------------------------------------------------------------------

class ControlFileTest : public RecoveryTest {
 protected:
  void SetUp() override {
    RecoveryTest::SetUp();
    auto c = Open(dir_);
    ASSERT_TRUE(c);
    for (int i = 0; i < 20; i++) ASSERT_OK(c->Append("ctl:shard:0000", "c" + std::to_string(i)));
    ASSERT_OK(c->Close());
    ctl_ = dir_ + "/comet.ctl";
    ASSERT_TRUE(comet_test::FileExists(ctl_));
  }

  void ExpectDataIntact() {
    auto c = Open(dir_);
    ASSERT_TRUE(c);
    auto all = ReadAll(c.get(), "ctl:shard:0000");
    ASSERT_EQ(all.size(), 20u);
    for (int i = 0; i < 20; i++) EXPECT_EQ(all[i].first, "c" + std::to_string(i));
    EntryId id;
    ASSERT_OK(c->Append("ctl:shard:0000", "next", &id));
    EXPECT_EQ(id.entry, 20u);
  }

  std::string ctl_;
};

TEST_F(ControlFileTest, GarbageControlFileIsRebuilt) {
  ASSERT_TRUE(comet_test::WriteFile(ctl_, comet_test::RandomBytes(3, 8192)));
  ExpectDataIntact();
}

TEST_F(ControlFileTest, TextControlFileIsRebuilt) {
  ASSERT_TRUE(comet_test::WriteFile(ctl_, "this is not a control file\n"));
  ExpectDataIntact();
}

TEST_F(ControlFileTest, EmptyControlFileIsRebuilt) {
  ASSERT_TRUE(comet_test::WriteFile(ctl_, ""));
  ExpectDataIntact();
}

TEST_F(ControlFileTest, ControlFileWithBadHeaderCrcIsRebuilt) {
  ASSERT_TRUE(comet_test::FlipByte(ctl_, 16, 0x01));  // max_processes, covered by header_crc
  ExpectDataIntact();
}

TEST_F(ControlFileTest, NewerMajorVersionIsRefusedWithVersion) {
  uint32_t original = 0;
  ASSERT_TRUE(comet_test::ReadAt(ctl_, 8, &original, 4));
  ASSERT_EQ(original, format::control_version(format::kControlMajor, format::kControlMinor));
  // header_crc covers [0,128) with version = 0 (format.h), so patching version keeps it valid.
  char v[4];
  format::store32(v, format::control_version(2, 0));
  ASSERT_TRUE(comet_test::PatchFile(ctl_, 8, v, 4));
  {
    auto r = Client::Open(dir_, Config());
    ASSERT_FALSE(r.ok()) << "opened a control file of major version 2";
    EXPECT_EQ(r.status().code(), Code::kVersion) << r.status().ToString();
    EXPECT_NE(r.status().message().find("comet.ctl"), std::string::npos) << r.status().message();
  }
  // Refusing must not have rebuilt or damaged anything: restore the version and all is there.
  uint32_t after = 0;
  ASSERT_TRUE(comet_test::ReadAt(ctl_, 8, &after, 4));
  EXPECT_EQ(after, format::control_version(2, 0)) << "a newer control file was overwritten";
  format::store32(v, original);
  ASSERT_TRUE(comet_test::PatchFile(ctl_, 8, v, 4));
  ExpectDataIntact();
}

TEST_F(ControlFileTest, NewerMinorVersionIsAccepted) {
  char v[4];
  format::store32(v, format::control_version(format::kControlMajor, format::kControlMinor + 1));
  ASSERT_TRUE(comet_test::PatchFile(ctl_, 8, v, 4));
  ExpectDataIntact();
}

// A segment written by another major format version is refused with VERSION, not misread.
TEST_F(RecoveryTest, SegmentOfNewerMajorVersionIsRefusedWithVersion) {
  uint32_t prefix_id = 0;
  {
    auto c = Open(dir_);
    ASSERT_TRUE(c);
    EntryId id;
    ASSERT_OK(c->Append("ver:shard:0000", "v", &id));
    prefix_id = id.prefix_id;
    ASSERT_OK(c->Close());
  }
  auto segs = comet_test::ListSegments(dir_, prefix_id, 0);
  ASSERT_EQ(segs.size(), 1u);
  std::string hdr(kSegHdr, '\0');
  ASSERT_TRUE(comet_test::ReadAt(segs[0], 0, hdr.data(), hdr.size()));
  format::store16(hdr.data() + format::seg::kMajor, format::kFormatMajor + 1);
  // Recompute header_crc (bytes [0,40) then the prefix name) so only the version is wrong.
  const uint32_t plen = format::load32(hdr.data() + format::seg::kPrefixLen);
  ASSERT_EQ(plen, 3u);
  uint32_t crc = comet::crc32c::Value(hdr.data(), format::seg::kHeaderCrc);
  crc = comet::crc32c::Extend(crc, hdr.data() + format::seg::kPrefix, plen);
  format::store32(hdr.data() + format::seg::kHeaderCrc, comet::crc32c::Mask(crc));
  ASSERT_TRUE(comet_test::PatchFile(segs[0], 0, hdr.data(), format::seg::kSealCrc));

  auto r = Client::Open(dir_, Config());
  if (!r.ok()) {
    EXPECT_EQ(r.status().code(), Code::kVersion) << r.status().ToString();
  } else {
    Entry e;
    Status s = (*r)->Read("ver:shard:0000", 0, &e);
    EXPECT_EQ(s.code(), Code::kVersion) << s.ToString();
  }
  // Not overwritten.
  std::string now(kSegHdr, '\0');
  ASSERT_TRUE(comet_test::ReadAt(segs[0], 0, now.data(), now.size()));
  EXPECT_EQ(format::load16(now.data() + format::seg::kMajor), format::kFormatMajor + 1);
}

}  // namespace
