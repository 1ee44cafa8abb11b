// Pre-faulting: the background thread maps and touches the pages the writer will store into
// before it gets there, and the spare segment in full before it becomes the active one. Checked
// through the kernel's view of this process's mappings (/proc/self/smaps: the resident part of
// the writer's mapping of each segment file) and the client's counters, never by timing.
#include <sys/mman.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "comet/client.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Config;
using comet::Stats;

constexpr uint64_t kKiB = 1024, kMiB = 1024 * kKiB;

// This process's writable shared mappings ("rw-s" in /proc/self/smaps) of files under `dir`
// whose path ends with `suffix`: where they start and how much of them is resident.
struct Mapping {
  std::string path;
  uintptr_t start = 0;
  uint64_t rss = 0;
};
std::vector<Mapping> WritableMappings(const std::string& dir, const std::string& suffix) {
  std::vector<Mapping> out;
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool in_map = false;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string range, perms, off, dev, inode, path;
    if (line.find('-') < line.find(' ') && (ls >> range >> perms >> off >> dev >> inode)) {
      std::getline(ls >> std::ws, path);
      in_map = perms == "rw-s" && path.rfind(dir, 0) == 0 && path.size() >= suffix.size() &&
               path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
      if (in_map) out.push_back({path, std::stoull(range, nullptr, 16), 0});
      continue;
    }
    if (in_map && line.rfind("Rss:", 0) == 0) out.back().rss = std::stoull(line.substr(4)) * kKiB;
  }
  return out;
}

// Whether every 4 KiB page of [start+from, start+to) is present in this process's page table
// (/proc/self/pagemap bit 63).
bool AllPresent(uintptr_t start, uint64_t from, uint64_t to) {
  int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool all = true;
  for (uint64_t off = from & ~uint64_t{4095}; off < to && all; off += 4096) {
    uint64_t e = 0;
    all = ::pread(fd, &e, sizeof e, off_t((start + off) / 4096 * 8)) == sizeof e && (e >> 63);
  }
  ::close(fd);
  return all;
}

// Waits (polling, up to a minute: the machine may be loaded) until pred() holds.
template <class Pred>
bool WaitFor(Pred pred) {
  const int64_t deadline = comet_test::MonotonicNs() + 60'000'000'000;
  while (comet_test::MonotonicNs() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

class PrefaultTest : public comet_test::TempDirTest {
 protected:
  std::unique_ptr<Client> Open(uint64_t segment, uint64_t prefault) {
    Config cfg;
    cfg.storage.max_segment_bytes = segment;
    cfg.storage.prefault_bytes = prefault;
    cfg.sync.mode = comet::SyncMode::kNone;
    auto c = Client::Open(dir_, cfg);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }
};

TEST_F(PrefaultTest, PagesAheadOfTheWriterAreMappedBeforeItGetsThere) {
  const uint64_t window = 256 * kKiB;
  auto c = Open(8 * kMiB, window);
  ASSERT_TRUE(c);
  std::string payload(100, 'p');
  std::vector<std::string_view> batch(100, payload);
  auto s = c->GetStream("pf:shard:0000");
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 60; i++) ASSERT_OK(c->Append(*s, batch));  // 696,000 bytes: past the first window
  const uint64_t end = 256 + c->GetStats().stored_bytes;  // the segment header, then records
  auto maps = WritableMappings(dir_, ".seg");
  ASSERT_EQ(maps.size(), 1u);
  // The window beyond the writer's end fills in without another append.
  EXPECT_TRUE(WaitFor([&] { return AllPresent(maps[0].start, end, end + window); }))
      << "pages after byte " << end << " of " << maps[0].path << " not mapped";
  EXPECT_GE(c->GetStats().prefaulted_bytes, window);
  EXPECT_EQ(c->GetStats().cold_rotations, 0u);
  ASSERT_OK(c->Close());
}

TEST_F(PrefaultTest, SpareSegmentIsFullyTouchedBeforeItBecomesActive) {
  // A window as large as a segment: the active one is pre-faulted whole when it is made, and
  // the spare in one pass, so the counter tells exactly when the spare is done.
  const uint64_t seg = 1 * kMiB;
  auto c = Open(seg, seg);
  ASSERT_TRUE(c);
  std::string payload(100, 's');
  std::vector<std::string_view> batch(100, payload);  // 11,600 bytes stored
  auto s = c->GetStream("pf:shard:0000");
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 50; i++) ASSERT_OK(c->Append(*s, batch));  // past half the segment
  // The spare segment (a temporary file until it is activated) is pre-faulted in full ...
  ASSERT_TRUE(WaitFor([&] { return c->GetStats().prefaulted_bytes >= 2 * seg; }))
      << "pre-faulted " << c->GetStats().prefaulted_bytes << " bytes";
  // ... and resident and mapped, every page of it.
  auto spare = WritableMappings(dir_, ".tmp");
  ASSERT_EQ(spare.size(), 1u) << "one spare segment, mapped";
  EXPECT_EQ(spare[0].rss, seg) << spare[0].path;
  EXPECT_TRUE(AllPresent(spare[0].start, 0, seg)) << spare[0].path;

  // Fill the active segment: an append rotates onto the spare.
  const uint64_t rotations = c->GetStats().rotations;
  while (c->GetStats().rotations == rotations) ASSERT_OK(c->Append(*s, batch));
  EXPECT_EQ(c->GetStats().cold_rotations, 0u);
  EXPECT_EQ(comet_test::ListSegments(dir_, 0, 0).size(), 2u);
  ASSERT_OK(c->Close());
}

TEST_F(PrefaultTest, RotationWithoutAReadySpareIsCountedCold) {
  // No pre-faulting at all: every rotation lands on a segment nobody touched.
  auto c = Open(64 * kKiB, 0);
  ASSERT_TRUE(c);
  std::string payload(100, 'c');
  std::vector<std::string_view> batch(100, payload);
  auto s = c->GetStream("pf:shard:0000");
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 20; i++) ASSERT_OK(c->Append(*s, batch));
  const Stats st = c->GetStats();
  EXPECT_GE(st.rotations, 3u);
  EXPECT_EQ(st.cold_rotations, st.rotations);
  EXPECT_EQ(st.prefaulted_bytes, 0u);
  ASSERT_OK(c->Close());
}

// Pages of `path` in the page cache (mincore through a mapping of our own, which faults none).
uint64_t CachedPages(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const uint64_t size = fd >= 0 ? comet_test::FileSize(path) : 0;
  void* m = size > 0 ? ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
  uint64_t n = 0;
  if (m != MAP_FAILED) {
    std::vector<unsigned char> v((size + 4095) / 4096);
    if (::mincore(m, size, v.data()) == 0) {
      for (unsigned char b : v) n += b & 1;
    }
    ::munmap(m, size);
  }
  if (fd >= 0) ::close(fd);
  return n;
}

// A sealed segment a sync has written leaves the page cache (storage.drop_synced_pages), and
// reads back from disk; with the key off it stays cached.
TEST_F(PrefaultTest, SyncedSealedSegmentLeavesThePageCache) {
  for (bool drop : {true, false}) {
    SCOPED_TRACE(drop ? "drop_synced_pages=true" : "drop_synced_pages=false");
    const std::string dir = dir_ + (drop ? "/drop" : "/keep");
    Config cfg;
    cfg.storage.max_segment_bytes = 1 * kMiB;
    cfg.storage.drop_synced_pages = drop;
    cfg.sync.mode = comet::SyncMode::kInterval;
    auto c = Client::Open(dir, cfg);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    std::string payload(100, 'd');
    std::vector<std::string_view> batch(100, payload);
    auto s = (*c)->GetStream("pf:shard:0000");
    ASSERT_TRUE(s.ok());
    while ((*c)->GetStats().rotations == 0) ASSERT_OK((*c)->Append(*s, batch));
    ASSERT_OK((*c)->Sync());
    const std::string sealed = comet_test::ListSegments(dir, 0, 0).front();
    const uint64_t pages = comet_test::FileSize(sealed) / 4096;
    ASSERT_GT(pages, 200u);
    const uint64_t cached = CachedPages(sealed);
    if (drop) {
      EXPECT_LE(cached, 4u) << "of " << pages << " pages of " << sealed;
    } else {
      EXPECT_GE(cached, pages * 9 / 10) << "of " << pages << " pages of " << sealed;
    }
    comet::Entry e;
    ASSERT_OK((*c)->Read("pf:shard:0000", 0, &e));
    EXPECT_EQ(std::string(e.data), payload);
    ASSERT_OK((*c)->Close());
  }
}

}  // namespace
