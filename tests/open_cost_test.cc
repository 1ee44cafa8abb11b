// What opening a directory costs: a stream gets its segment room (preallocation, mapping,
// pre-faulting) when it is first appended to, not when it is loaded, and the room reserved ahead
// of writers is bounded by storage.max_preallocated_bytes.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/status.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Config;
using comet::Entry;
namespace fs = std::filesystem;

struct DiskUse {
  uint64_t apparent = 0;   // sum of st_size
  uint64_t allocated = 0;  // sum of st_blocks * 512
};

// What the segment files of a directory take: their sizes and the blocks allocated to them.
DiskUse SegmentDiskUse(const std::string& dir) {
  DiskUse u;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().filename().string().find(".seg") == std::string::npos) {
      continue;
    }
    struct stat st {};
    if (::stat(e.path().c_str(), &st) != 0) continue;
    u.apparent += static_cast<uint64_t>(st.st_size);
    u.allocated += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return u;
}

uint64_t ResidentBytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

std::string StreamName(int i) {
  char name[32];
  std::snprintf(name, sizeof name, "idle:shard:%04d", i);
  return name;
}

std::string Payload(int stream, int k) {
  return "stream " + std::to_string(stream) + " entry " + std::to_string(k);
}

class OpenCostTest : public comet_test::TempDirTest {
 protected:
  // Fills `streams` streams with three entries each, in small segments, and closes.
  void FillIdleStreams(int streams) {
    Config small;
    small.storage.max_segment_bytes = 64 << 10;
    small.storage.prefault_bytes = 0;
    small.sync.mode = comet::SyncMode::kNone;  // this slow disk takes ms per fdatasync
    auto c = Client::Open(dir_, small);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    for (int i = 0; i < streams; i++) {
      for (int k = 0; k < 3; k++) ASSERT_OK((*c)->Append(StreamName(i), Payload(i, k)));
    }
    ASSERT_OK((*c)->Close());
  }
};

// Thousands of idle streams open without a segment's room each: with the default config
// (64 MiB segments, 4 MiB pre-faulted) loading used to extend, map and pre-fault the active
// segment of every stream (2,000 streams: 128 GiB requested, 8 GiB resident).
TEST_F(OpenCostTest, ThousandsOfIdleStreamsOpenWithoutPreallocatingOrPrefaulting) {
  constexpr int kStreams = 2000;
  FillIdleStreams(kStreams);
  const DiskUse before = SegmentDiskUse(dir_);
  const uint64_t rss_before = ResidentBytes();

  Config defaults;  // 64 MiB segments, 4 MiB pre-faulted
  defaults.sync.mode = comet::SyncMode::kNone;  // no fdatasync of what the fill left unsynced
  auto c = Client::Open(dir_, defaults);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const DiskUse open = SegmentDiskUse(dir_);
  const uint64_t rss_growth = ResidentBytes() - rss_before;
  EXPECT_EQ(open.apparent, before.apparent) << "opening changed the segments' sizes";
  EXPECT_LE(open.allocated, before.allocated + (1u << 20)) << "opening allocated disk blocks";
  // Per stream: its shard, one mapped page or two of its segment, its index; no pre-faulting.
  EXPECT_LT(rss_growth, uint64_t{64} << 20) << "opening made " << rss_growth << " bytes resident";
  EXPECT_EQ((*c)->Streams().size(), static_cast<size_t>(kStreams));

  // Every stream still reads what it holds, and appends continue its numbering.
  Entry e;
  ASSERT_OK((*c)->Read(StreamName(1234), 2, &e));
  EXPECT_EQ(e.data, Payload(1234, 2));
  comet::EntryId id;
  ASSERT_OK((*c)->Append(StreamName(1234), Payload(1234, 3), &id));
  EXPECT_EQ(id.entry, 3u);
  ASSERT_OK((*c)->Close());

  auto r = Client::Open(dir_, defaults);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (int k = 0; k < 4; k++) {
    ASSERT_OK((*r)->Read(StreamName(1234), k, &e));
    EXPECT_EQ(e.data, Payload(1234, k));
  }
  ASSERT_OK((*r)->Read(StreamName(0), 2, &e));
  EXPECT_EQ(e.data, Payload(0, 2));
  std::vector<std::string> problems;
  auto checked = (*r)->Verify(&problems);
  ASSERT_TRUE(checked.ok()) << checked.status().ToString();
  EXPECT_TRUE(problems.empty()) << problems.front();
}

// The first append to a loaded stream gives only that stream its room.
TEST_F(OpenCostTest, FirstAppendExtendsOnlyTheStreamAppendedTo) {
  FillIdleStreams(8);
  const DiskUse before = SegmentDiskUse(dir_);
  Config cfg;
  cfg.storage.max_segment_bytes = 8 << 20;
  auto c = Client::Open(dir_, cfg);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_OK((*c)->Append(StreamName(5), Payload(5, 3)));
  const DiskUse after = SegmentDiskUse(dir_);
  // One segment grew to 8 MiB; a spare may not exist yet (the writer is far from half way).
  EXPECT_GE(after.apparent, before.apparent + (7 << 20));
  EXPECT_LT(after.apparent, before.apparent + (9 << 20));
  ASSERT_OK((*c)->Close());
  EXPECT_EQ(SegmentDiskUse(dir_).apparent, before.apparent + Payload(5, 3).size() + 16);
}

// Room reserved ahead of writers (active segments and spares) stays within
// storage.max_preallocated_bytes; streams past the budget get segments just big enough for what
// they append (at least 64 KiB), and nothing is refused.
TEST_F(OpenCostTest, PreallocationStaysWithinItsBudget) {
  Config cfg;
  cfg.storage.max_segment_bytes = 1 << 20;
  cfg.storage.prefault_bytes = 0;
  ASSERT_OK(cfg.Set("storage.max_preallocated_bytes", "3MiB"));
  auto c = Client::Open(dir_, cfg);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  constexpr int kStreams = 12;
  const std::string payload(900, 'x');
  for (int round = 0; round < 40; round++) {
    for (int i = 0; i < kStreams; i++) ASSERT_OK((*c)->Append(StreamName(i), payload));
    const DiskUse u = SegmentDiskUse(dir_);
    const uint64_t data = uint64_t(round + 1) * kStreams * (payload.size() + 16);
    // The budget, one minimum-size segment per stream past it, the data and segment headers.
    EXPECT_LE(u.apparent, (3u << 20) + kStreams * (64u << 10) + data + kStreams * 2 * 4096)
        << "round " << round;
  }
  Entry e;
  for (int i = 0; i < kStreams; i++) {
    ASSERT_OK((*c)->Read(StreamName(i), 39, &e));
    EXPECT_EQ(e.data, payload);
  }
  ASSERT_OK((*c)->Close());
}

TEST(OpenCostConfigTest, MaxPreallocatedBytesIsAKeyWithARange) {
  Config cfg;
  ASSERT_OK(cfg.Set("storage.max_preallocated_bytes", "0"));
  EXPECT_EQ(cfg.storage.max_preallocated_bytes, 0u);
  ASSERT_OK(cfg.Set("storage.max_preallocated_bytes", "16GiB"));
  EXPECT_EQ(cfg.storage.max_preallocated_bytes, uint64_t{16} << 30);
  comet::Status st = cfg.Set("storage.max_preallocated_bytes", "lots");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("storage.max_preallocated_bytes"), std::string::npos);
}

}  // namespace
