// Rotation under load: the background thread prepares spare segments while the writer rotates
// into them, again and again.
#include <string>
#include <vector>

#include "comet/client.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Config;
using comet::Entry;
using comet::Status;

class RotationTest : public comet_test::TempDirTest {};

TEST_F(RotationTest, EveryEntryReadsBackInPlaceWhileSparesAreMadeAndTakenConcurrently) {
  Config cfg;
  ASSERT_TRUE(cfg.Set("storage.max_segment_bytes", "64KiB").ok());
  ASSERT_TRUE(cfg.Set("storage.prefault_bytes", "16KiB").ok());
  ASSERT_TRUE(cfg.Set("sync.mode", "none").ok());
  auto c = Client::Open(dir_, cfg);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto s = (*c)->GetStream("rot:shard:0000");
  ASSERT_TRUE(s.ok());
  // Every entry's payload names its place, so a lost, repeated or reordered entry shows.
  auto payload = [](uint64_t entry) {
    std::string p = "entry " + std::to_string(entry) + " ";
    p.resize(100, 'r');
    return p;
  };
  constexpr uint64_t kBatches = 3000, kPerBatch = 60;  // about 7 KiB: a rotation every 9 batches
  std::vector<std::string> data(kPerBatch);
  std::vector<std::string_view> batch(kPerBatch);
  for (uint64_t i = 0; i < kBatches; i++) {
    for (uint64_t j = 0; j < kPerBatch; j++) batch[j] = data[j] = payload(i * kPerBatch + j);
    Status st = (*c)->Append(*s, batch);
    ASSERT_TRUE(st.ok()) << "batch " << i << ": " << st.ToString();
  }
  auto it = (*c)->Scan(*s, 0);
  ASSERT_TRUE(it.ok());
  Entry e;
  uint64_t n = 0;
  Status st;
  while ((st = it->Next(&e)).ok()) {
    ASSERT_EQ(e.id.entry, n);
    ASSERT_EQ(e.data, payload(n)) << "entry " << n;
    n++;
  }
  EXPECT_TRUE(st.IsNotFound()) << st.ToString();
  EXPECT_EQ(n, kBatches * kPerBatch);
  EXPECT_GT((*c)->GetStats().rotations, 300u);
  ASSERT_TRUE((*c)->Close().ok());
}

}  // namespace

namespace {

TEST(OpenMultiProcessTest, JoinsAsAMemberAndOwnsEveryShardWhenAlone) {
  const std::string dir = comet_test::MakeTempDir();
  ASSERT_FALSE(dir.empty());
  comet::Config cfg;  // single mode asked for: OpenMultiProcess overrides it
  auto c = comet::Client::OpenMultiProcess(dir, cfg);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->config().concurrency.mode, comet::ConcurrencyMode::kMulti);
  for (uint32_t s = 0; s < 4; s++) {
    EXPECT_TRUE((*c)->Append(comet::ShardStreamName("solo", s), "x").ok()) << "shard " << s;
  }
  ASSERT_TRUE((*c)->Close().ok());
  comet_test::RemoveAll(dir);
}

}  // namespace
