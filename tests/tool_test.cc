// The `comet` tool, run as a real process: what it prints and how it exits.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "comet/client.h"
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

// ---- consumer groups: `comet consume` and `comet groups` ----------------------------------------

TEST_F(ToolTest, ConsumePrintsWhatTheGroupHasNotConsumedAndAcksIt) {
  ASSERT_EQ(Comet("append " + Data() + " ev:shard:0000", "a0\na1\na2\na3\n").status, 0);
  ASSERT_EQ(Comet("append " + Data() + " ev:shard:0001", "b0\nb1\n").status, 0);
  ToolRun first = Comet("consume " + Data() + " --group g 'ev:shard:*' --max 2 --json");
  ASSERT_EQ(first.status, 0) << comet_test::ReadFile(Sub("stderr.txt"));
  const std::string line = first.out.substr(0, first.out.find('\n') + 1);
  EXPECT_TRUE(line.starts_with("{\"stream\":\"ev:shard:0000\",\"shard\":0,\"entry\":0,\"ts\":"))
      << line;
  EXPECT_TRUE(line.ends_with(",\"data\":\"a0\"}\n")) << line;
  EXPECT_EQ(std::count(first.out.begin(), first.out.end(), '\n'), 2) << first.out;
  ToolRun rest = Comet("consume " + Data() + " --group g 'ev:shard:*'");
  ASSERT_EQ(rest.status, 0) << comet_test::ReadFile(Sub("stderr.txt"));
  EXPECT_EQ(std::count(rest.out.begin(), rest.out.end(), '\n'), 4) << rest.out;
  for (const char* line : {"a2\n", "a3\n", "b0\n", "b1\n"}) {
    EXPECT_NE((first.out + rest.out).find(line), std::string::npos) << line;
  }
  ToolRun none = Comet("consume " + Data() + " --group g 'ev:shard:*'");
  EXPECT_EQ(none.status, 0);
  EXPECT_EQ(none.out, "") << "everything was acked";
  ToolRun other = Comet("consume " + Data() + " --group other ev:shard:0001");
  EXPECT_EQ(other.status, 0);
  EXPECT_EQ(other.out, "b0\nb1\n") << "another group reads from the beginning";
}

TEST_F(ToolTest, ConsumeRefusesBadArgumentsNamingThem) {
  ASSERT_EQ(Comet("append " + Data() + " ev:shard:0000", "x\n").status, 0);
  EXPECT_EQ(Comet("consume " + Data() + " 'ev:shard:*'").status, 2) << "no --group";
  EXPECT_EQ(Comet("consume " + Data() + " --group g").status, 2) << "no pattern";
  EXPECT_EQ(Comet("consume " + Data() + " --group g 'ev:shard:*' --max x").status, 2);
  ToolRun r = Comet("consume " + Data() + " --group g 'ev:*'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(comet_test::ReadFile(Sub("stderr.txt")).find("'ev:*'"), std::string::npos)
      << comet_test::ReadFile(Sub("stderr.txt"));
  r = Comet("consume " + Data() + " --group " + std::string(256, 'g') + " 'ev:shard:*'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(comet_test::ReadFile(Sub("stderr.txt")).find("256 bytes"), std::string::npos)
      << comet_test::ReadFile(Sub("stderr.txt"));
}

TEST_F(ToolTest, GroupsAndStatsShowEveryGroupsOffsetAndLagPerStream) {
  ASSERT_EQ(Comet("append " + Data() + " ev:shard:0000", "a0\na1\na2\na3\n").status, 0);
  ASSERT_EQ(Comet("append " + Data() + " ev:shard:0001", "b0\nb1\n").status, 0);
  ASSERT_EQ(Comet("consume " + Data() + " --group done 'ev:shard:*'").status, 0);
  ASSERT_EQ(Comet("consume " + Data() + " --group slow ev:shard:0000 --max 1").status, 0);
  ToolRun g = Comet("groups " + Data());
  ASSERT_EQ(g.status, 0) << comet_test::ReadFile(Sub("stderr.txt"));
  EXPECT_EQ(g.out,
            "groups:\n"
            "  GROUP  STREAM            COMMITTED           END           LAG    SKIPPED\n"
            "  done   ev:shard:0000             4             4             0          0\n"
            "  done   ev:shard:0001             2             2             0          0\n"
            "  slow   ev:shard:0000             1             4             3          0\n");
  ToolRun j = Comet("groups " + Data() + " --json");
  ASSERT_EQ(j.status, 0);
  EXPECT_EQ(std::count(j.out.begin(), j.out.end(), '\n'), 3) << j.out;
  EXPECT_NE(j.out.find("{\"group\":\"slow\",\"stream\":\"ev:shard:0000\",\"prefix_id\":0,"
                       "\"shard\":0,\"committed\":1,\"end\":4,\"lag\":3,\"skipped\":0,"),
            std::string::npos)
      << j.out;
  ToolRun s = Comet("stats " + Data());
  ASSERT_EQ(s.status, 0);
  EXPECT_NE(s.out.find(g.out), std::string::npos) << s.out;
  ToolRun p = Comet("stats " + Data() + " --prometheus");
  ASSERT_EQ(p.status, 0);
  EXPECT_NE(p.out.find("comet_group_lag{group=\"slow\",stream=\"ev:shard:0000\",prefix_id=\"0\","
                       "shard=\"0\"} 3\n"),
            std::string::npos)
      << p.out;
  EXPECT_EQ(Comet("groups " + Sub("missing")).status, 1);
  EXPECT_FALSE(comet_test::FileExists(Sub("missing")));
}

// --follow waits for new entries (written here by another member of the directory) and stops
// cleanly on SIGTERM with what it printed acked.
TEST_F(ToolTest, ConsumeFollowPrintsNewEntriesUntilSigterm) {
  auto writer = comet::Client::OpenMultiProcess(Data());
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  auto first = (*writer)->PickStream("f", "key", 4);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE((*writer)->Append(*first, "before").ok());
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    execl(bin_.c_str(), bin_.c_str(), "consume", Data().c_str(), "--group", "g", "f:shard:*",
          "--follow", "-c", "concurrency.mode=multi", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  char got[7] = {};
  EXPECT_TRUE(comet_test::ReadFull(out[0], got, 7, 30000));
  EXPECT_EQ(std::string(got, 7), "before\n");
  // The consumer joined: route to a shard this process still writes.
  auto next = (*writer)->PickStream("f", "key", 4);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  ASSERT_TRUE((*writer)->Append(*next, "after").ok());
  char got2[6] = {};
  EXPECT_TRUE(comet_test::ReadFull(out[0], got2, 6, 30000));
  EXPECT_EQ(std::string(got2, 6), "after\n");
  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(out[0]);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  ToolRun again = Comet("consume " + Data() + " --group g 'f:shard:*' -c concurrency.mode=multi");
  EXPECT_EQ(again.status, 0) << comet_test::ReadFile(Sub("stderr.txt"));
  EXPECT_EQ(again.out, "") << "what --follow printed was acked";
}

}  // namespace
