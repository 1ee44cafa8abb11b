// Handle lifetimes: what an Entry, an Iterator and a Stream do once their Client is closed or
// destroyed (client.h states the contract; these tests hold it to it).
#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/status.h"
#include "test_util.h"

namespace {

using comet::Client;
using comet::Code;
using comet::Config;
using comet::Entry;
using comet::Status;

constexpr const char* kStream = "life:shard:0000";

// The three ways a client reads a directory: the single-mode writer, a multi-process member and
// a read-only follower (opened beside a writer that wrote the entries).
class HandleLifetimeTest : public comet_test::TempDirTest,
                           public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    Config wcfg;
    if (std::string(GetParam()) == "multi") wcfg = Config::MultiProcess();
    auto w = Client::Open(dir_, wcfg);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    writer_ = std::move(*w);
    for (const char* e : {"zero", "one", "two"}) ASSERT_OK(writer_->Append(kStream, e));
    if (std::string(GetParam()) == "read_only") {
      Config ro;
      ro.open.read_only = true;
      auto r = Client::Open(dir_, ro);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      reader_ = std::move(*r);
    }
  }
  void TearDown() override {
    reader_.reset();
    writer_.reset();
    TempDirTest::TearDown();
  }
  // The client under test.
  std::unique_ptr<Client>& Subject() { return reader_ ? reader_ : writer_; }

  std::unique_ptr<Client> writer_, reader_;
};

TEST_P(HandleLifetimeTest, IteratorAndEntryOutliveTheirClientAndTheIteratorAnswersClosed) {
  auto it = Subject()->Scan(kStream, 0);
  ASSERT_TRUE(it.ok()) << it.status().ToString();
  Entry first;
  ASSERT_OK(it->Next(&first));
  ASSERT_EQ(first.data, "zero");
  Subject().reset();  // destroys the client: its control region and streams go away
  EXPECT_EQ(first.data, "zero") << "an Entry keeps its segment mapped";
  Entry next;
  Status st = it->Next(&next);
  EXPECT_EQ(st.code(), Code::kClosed) << st.ToString();
  EXPECT_NE(st.message().find(kStream), std::string::npos) << st.message();
  EXPECT_EQ(it->Wait(0).code(), Code::kClosed);
  EXPECT_EQ(it->Wait(-1).code(), Code::kClosed) << "must not block on a closed client";
}

TEST_P(HandleLifetimeTest, IteratorOfAClosedClientAnswersClosed) {
  auto it = Subject()->Scan(kStream, 1);
  ASSERT_TRUE(it.ok()) << it.status().ToString();
  ASSERT_OK(Subject()->Close());
  Entry e;
  EXPECT_EQ(it->Next(&e).code(), Code::kClosed);
  auto s = Subject()->GetStream(kStream);
  EXPECT_EQ(s.status().code(), Code::kClosed);
}

// A reader parked in Wait learns that its client was closed instead of sleeping until its
// deadline: Close wakes nobody, but the waiter re-checks at least every 10 ms.
TEST_P(HandleLifetimeTest, WaitBlockedWhenTheClientClosesReturnsClosed) {
  auto it = Subject()->Scan(kStream, 3);  // one past the end: Wait blocks
  ASSERT_TRUE(it.ok()) << it.status().ToString();
  std::atomic<int> result{1};
  std::thread waiter([&] { result = it->Wait(20'000'000'000).raw(); });
  ASSERT_OK(Subject()->Close());
  waiter.join();
  EXPECT_EQ(result.load(), static_cast<int>(Code::kClosed));
}

INSTANTIATE_TEST_SUITE_P(Modes, HandleLifetimeTest,
                         ::testing::Values("single", "multi", "read_only"));

}  // namespace
