// The `comet` tool, run as a real process: what it prints and how it exits.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "test_util.h"

namespace {

using comet_test::TempDirTest;

using comet_test::ToolRun;

// Runs `comet ARGS` with `input` on stdin; stderr is left in Sub("stderr.txt").
class ToolTest : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    bin_ = comet_test::ToolBinary();
    if (!comet_test::FileExists(bin_)) GTEST_SKIP() << "no comet binary at " << bin_ << " (set COMET_BIN)";
  }

  ToolRun Comet(const std::string& args, const std::string& input = "") {
    return comet_test::RunTool(args, dir_, input);
  }

  std::string Data() const { return dir_ + "/data"; }
  std::string bin_;
};

TEST_F(ToolTest, AppendThenTailRoundTripsLines) {
  ToolRun a = Comet("append " + Data() + " app:shard:0002", "first line\n\nthird line\n");
  ASSERT_EQ(a.status, 0) << comet_test::ReadFile(Sub("stderr.txt"));
  EXPECT_NE(a.out.find("3 entries"), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("0..2"), std::string::npos) << a.out;
  ToolRun t = Comet("tail " + Data() + " app:shard:0002 --from 0");
  ASSERT_EQ(t.status, 0);
  EXPECT_EQ(t.out, "first line\n\nthird line\n");
}

TEST_F(ToolTest, TailJsonNamesStreamShardEntryTimestampAndData) {
  ASSERT_EQ(Comet("append " + Data() + " app:shard:00A7", "say \"hi\"\n").status, 0);
  ToolRun t = Comet("tail " + Data() + " app:shard:00A7 --json");
  ASSERT_EQ(t.status, 0);
  EXPECT_NE(t.out.find("\"stream\":\"app:shard:00A7\""), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("\"shard\":167"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("\"entry\":0"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("\"ts\":"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("\"data\":\"say \\\"hi\\\"\""), std::string::npos) << t.out;
}

TEST_F(ToolTest, VerifyExitsZeroWhenCleanAndOneOnCorruption) {
  std::string lines;
  for (int i = 0; i < 100; i++) lines += "line number " + std::to_string(i) + " of the verify test\n";
  ASSERT_EQ(Comet("append " + Data() + " v:shard:0000", lines).status, 0);
  EXPECT_EQ(Comet("verify " + Data()).status, 0);
  auto segs = comet_test::ListSegments(Data(), 0, 0);
  ASSERT_EQ(segs.size(), 1u);
  // A byte inside entry 50's payload (256-byte header, then 16 + payload per record).
  uint64_t off = 256;
  for (int i = 0; i < 50; i++) off += 16 + ("line number " + std::to_string(i) + " of the verify test").size();
  ASSERT_TRUE(comet_test::FlipByte(segs[0], off + 16 + 3));
  ToolRun v = Comet("verify " + Data());
  EXPECT_EQ(v.status, 1);
  std::string all = v.out + comet_test::ReadFile(Sub("stderr.txt"));
  EXPECT_NE(all.find("0000000000000000.seg"), std::string::npos) << all;
  EXPECT_NE(all.find("entry 50"), std::string::npos) << all;
}

TEST_F(ToolTest, InspectListsStreamsAndSegments) {
  ASSERT_EQ(Comet("append " + Data() + " a:shard:0001", "x\ny\n").status, 0);
  ASSERT_EQ(Comet("append " + Data() + " b:shard:0001", "z\n").status, 0);
  ToolRun i = Comet("inspect " + Data());
  ASSERT_EQ(i.status, 0);
  EXPECT_NE(i.out.find("a:shard:0001"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("b:shard:0001"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("0000000000000000.seg"), std::string::npos) << i.out;
}

TEST_F(ToolTest, BadInputGetsAClearErrorAndNonZeroExit) {
  ToolRun r = Comet("append " + Data() + " not-a-stream", "x\n");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(comet_test::ReadFile(Sub("stderr.txt")).find("not-a-stream"), std::string::npos);
  r = Comet("tail " + Sub("missing") + " a:shard:0000");
  EXPECT_NE(r.status, 0);
  EXPECT_FALSE(comet_test::FileExists(Sub("missing"))) << "a read-only command created a directory";
}

// A line with no end must not make `comet append` buffer without bound: it is refused once it
// passes storage.max_entry_bytes, after the lines before it were appended. The input never
// ends, so a tool that kept reading would make this test fail at its 256 MiB cap.
TEST_F(ToolTest, AppendRefusesALineLongerThanTheEntryLimitWithoutReadingItAll) {
  int in[2], err[2];
  ASSERT_EQ(pipe(in), 0);
  ASSERT_EQ(pipe(err), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(err[1], 2);
    close(in[1]);
    close(err[0]);
    execl(bin_.c_str(), bin_.c_str(), "append", Data().c_str(), "long:shard:0000", "-c",
          "storage.max_entry_bytes=1MiB", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(in[0]);
  close(err[1]);
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &old);
  uint64_t written = 0;
  bool refused = false;
  const std::string head = "first\nsecond\n";
  const std::string chunk(64 << 10, 'x');
  if (write(in[1], head.data(), head.size()) == static_cast<ssize_t>(head.size())) {
    while (written < (256ull << 20)) {
      ssize_t n = write(in[1], chunk.data(), chunk.size());
      if (n < 0) {
        refused = errno == EPIPE;
        break;
      }
      written += static_cast<uint64_t>(n);
    }
  }
  close(in[1]);
  sigaction(SIGPIPE, &old, nullptr);
  std::string error_text;
  char buf[4096];
  for (ssize_t n; (n = read(err[0], buf, sizeof buf)) > 0;) error_text.append(buf, n);
  close(err[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(refused) << "the tool read " << written << " bytes of one line";
  EXPECT_LT(written, 16ull << 20);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 1) << error_text;
  EXPECT_NE(error_text.find("stdin line 3 is longer than storage.max_entry_bytes (1048576 bytes)"),
            std::string::npos)
      << error_text;
  EXPECT_NE(error_text.find("appended 2 entries"), std::string::npos) << error_text;
  ToolRun t = Comet("tail " + Data() + " long:shard:0000 --from 0");
  ASSERT_EQ(t.status, 0);
  EXPECT_EQ(t.out, "first\nsecond\n");
}

}  // namespace
