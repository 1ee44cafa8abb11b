// A full disk: appends fail with FULL, as a whole batch, and nothing already stored is lost.
// Runs on a small tmpfs mounted for the test (root only; skipped with a message otherwise).
#include <sys/mount.h>

#include <memory>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "comet/client.h"
#include "small_tmpfs.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Code;
using comet::Config;
using comet::Entry;
using comet::Status;

class DiskFullTest : public comet_test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    small_ = std::make_unique<comet_test::SmallTmpfs>(Sub("small"), "4m");
    if (!small_->mounted()) GTEST_SKIP() << small_->why_not();
    mnt_ = small_->path();
  }
  void TearDown() override {
    small_.reset();
    TempDirTest::TearDown();
  }
  std::unique_ptr<comet_test::SmallTmpfs> small_;
  std::string mnt_;
};

TEST_F(DiskFullTest, AppendsFailWithFullAndEverythingAcknowledgedStaysReadable) {
  Config cfg;
  ASSERT_TRUE(cfg.Set("storage.max_segment_bytes", "512KiB").ok());
  ASSERT_TRUE(cfg.Set("storage.max_streams", "16").ok());
  ASSERT_TRUE(cfg.Set("concurrency.max_processes", "4").ok());
  ASSERT_TRUE(cfg.Set("sync.mode", "none").ok());
  const std::string dir = mnt_ + "/log";
  std::vector<std::string> acked;
  Status last;
  {
    auto c = Client::Open(dir, cfg);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    auto s = (*c)->GetStream("full:shard:0000");
    ASSERT_TRUE(s.ok());
    for (int i = 0; i < 100000; i++) {
      std::vector<std::string> batch;
      std::vector<std::string_view> views;
      for (int k = 0; k < 10; k++) batch.push_back(comet_test::RandomBytes(i * 10 + k, 1000));
      for (auto& b : batch) views.push_back(b);
      last = (*c)->Append(*s, views);
      if (!last.ok()) break;
      for (auto& b : batch) acked.push_back(b);
    }
    EXPECT_EQ(last.code(), Code::kFull) << last.ToString();
    EXPECT_NE(last.message().find("full:shard:0000"), std::string::npos) << last.message();
    ASSERT_GT(acked.size(), 1000u);
    // The failed batch left nothing behind: the stream ends with the last acknowledged entry.
    auto len = (*c)->Length("full:shard:0000");
    ASSERT_TRUE(len.ok());
    EXPECT_EQ(*len, acked.size());
    // The same batch again fails the same way (entries that still fit the active segment
    // would not: only what needs a new segment meets the full disk), and reads still work.
    std::vector<std::string> again(10, std::string(1000, 'z'));
    std::vector<std::string_view> views(again.begin(), again.end());
    for (int k = 0; k < 100 && (last = (*c)->Append(*s, views)).ok(); k++) {
      for (auto& b : again) acked.push_back(b);
    }
    EXPECT_EQ(last.code(), Code::kFull) << last.ToString();
    Entry e;
    ASSERT_TRUE((*c)->Read("full:shard:0000", acked.size() - 1, &e).ok());
    EXPECT_EQ(e.data, acked.back());
    EXPECT_TRUE((*c)->Close().ok());
  }
  // Reopened, every acknowledged entry reads back and nothing else is there.
  auto c = Client::Open(dir, cfg);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto len = (*c)->Length("full:shard:0000");
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, acked.size());
  for (size_t i = 0; i < acked.size(); i++) {
    Entry e;
    Status st = (*c)->Read("full:shard:0000", i, &e);
    ASSERT_TRUE(st.ok()) << i << ": " << st.ToString();
    ASSERT_EQ(e.data, acked[i]) << "entry " << i;
  }
  EXPECT_TRUE((*c)->Close().ok());
}

TEST_F(DiskFullTest, ReadOnlyFilesystemRefusesTheWriterByNameAndStillServesReaders) {
  Config cfg;
  ASSERT_TRUE(cfg.Set("storage.max_segment_bytes", "256KiB").ok());
  ASSERT_TRUE(cfg.Set("storage.max_streams", "16").ok());
  ASSERT_TRUE(cfg.Set("concurrency.max_processes", "4").ok());
  const std::string dir = mnt_ + "/log";
  {
    auto c = Client::Open(dir, cfg);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    for (int i = 0; i < 100; i++) {
      ASSERT_TRUE((*c)->Append("ro:shard:0002", "line " + std::to_string(i)).ok());
    }
    ASSERT_TRUE((*c)->Close().ok());
  }
  ASSERT_EQ(::mount(nullptr, mnt_.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr), 0)
      << std::strerror(errno);
  auto w = Client::Open(dir, cfg);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), Code::kIo) << w.status().ToString();
  EXPECT_NE(w.status().message().find(dir), std::string::npos) << w.status().message();
  EXPECT_NE(w.status().message().find("Read-only"), std::string::npos) << w.status().message();
  Config ro = cfg;
  ro.open.read_only = true;
  auto r = Client::Open(dir, ro);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Entry e;
  ASSERT_TRUE((*r)->Read("ro:shard:0002", 99, &e).ok());
  EXPECT_EQ(e.data, "line 99");
  EXPECT_TRUE((*r)->Close().ok());
}

}  // namespace
