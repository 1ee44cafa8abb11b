// The LD_PRELOAD shim on real, unmodified programs: a C program that writes through every
// entry point (built plain and with _FORTIFY_SOURCE=2), C++ iostreams, coreutils, Python and
// logger. Each run's output is compared with what the program meant to write (its manifest on
// fd 3) and with its real stdout and stderr: every line captured exactly once, nothing left on
// the original output unless tee'd, exit status and output unchanged when the shim is inert.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "comet/stats.h"
#include "preload_util.h"
#include "small_tmpfs.h"
#include "test_util.h"

namespace {

using comet_test::Captured;
using comet_test::Datas;
using comet_test::MultisetDiff;
using comet_test::Output;
using comet_test::ReadCaptured;
using comet_test::Program;
using comet_test::ProgramRun;
using comet_test::RunSpec;

const char* const kSinks[] = {"stdout", "stderr", "syslog"};

std::string Which(const std::string& name) {
  for (const char* dir : {"/usr/bin/", "/bin/", "/usr/local/bin/"}) {
    const std::string p = std::string(dir) + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

class PreloadTest : public comet_test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    if (!comet_test::FileExists(comet_test::ShimPath())) {
      GTEST_SKIP() << "no shim at " << comet_test::ShimPath();
    }
  }

  std::string Data() const { return dir_ + "/data"; }
  std::string Manifest() const { return dir_ + "/manifest"; }
  static std::string Target(bool fortify = false) {
    return comet_test::BinDir() + (fortify ? "/preload_target_fortify" : "/preload_target");
  }

  // Runs the target under the shim with COMET_DIR=Data() and its manifest on fd 3.
  ProgramRun RunTarget(std::vector<std::string> args, std::vector<std::string> env = {},
                Output out = Output::kPipe, bool fortify = false) {
    RunSpec spec;
    spec.argv = {Target(fortify)};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.env = {"COMET_DIR=" + Data()};
    spec.env.insert(spec.env.end(), env.begin(), env.end());
    spec.out = out;
    spec.out_file = Sub("stdout.txt");
    spec.manifest = Manifest();
    return comet_test::RunProgram(spec);
  }

  // Every sink holds exactly the manifest's lines, each once.
  void ExpectManifestCaptured() {
    auto manifest = comet_test::ReadManifest(Manifest());
    ASSERT_FALSE(manifest.empty()) << "the target recorded nothing";
    for (const char* sink : kSinks) {
      const std::string diff = MultisetDiff(manifest[sink], Datas(ReadCaptured(Data(), sink)));
      EXPECT_EQ(diff, "") << sink << " capture differs from what the program wrote:\n" << diff;
    }
    auto stats = comet::ReadStats(Data());
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->uncaptured_lines, 0u);
  }
};

TEST_F(PreloadTest, InertWithoutCometDir) {
  const RunSpec plain = Program({Target(), "stdio"}, {}, false);
  const RunSpec shimmed = Program({Target(), "stdio"});
  const ProgramRun a = comet_test::RunProgram(plain), b = comet_test::RunProgram(shimmed);
  EXPECT_EQ(a.exit_code, 0);
  EXPECT_EQ(b.exit_code, 0);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.err, b.err);
  EXPECT_NE(a.out.find("printf 7\n"), std::string::npos);
}

class PreloadEntryPoints : public PreloadTest, public ::testing::WithParamInterface<bool> {};

TEST_P(PreloadEntryPoints, EveryStdioErrAndFdEntryPointCapturedOnce) {
  const ProgramRun r = RunTarget({"stdio"}, {}, Output::kPipe, GetParam());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "") << "lines reached the real stdout with tee off";
  EXPECT_EQ(r.err, "");
  ExpectManifestCaptured();
}

TEST_P(PreloadEntryPoints, PartialLongAndBinaryLinesAndExitWithoutFlush) {
  const ProgramRun r = RunTarget({"lines"}, {}, Output::kPipe, GetParam());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  ExpectManifestCaptured();
}

INSTANTIATE_TEST_SUITE_P(PlainAndFortified, PreloadEntryPoints, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Fortify" : "Plain"; });

TEST_F(PreloadTest, ThreadsWriteWholeLinesInOrderToOneShard) {
  const ProgramRun r = RunTarget({"threads"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectManifestCaptured();
  std::vector<Captured> got = ReadCaptured(Data(), "stdout");
  std::map<std::string, int> streams;
  std::vector<int> last(4, -1);
  for (const Captured& c : got) {
    streams[c.stream]++;
    int t = -1, i = -1;
    ASSERT_EQ(sscanf(c.data.c_str(), "thread %d line %d", &t, &i), 2) << c.data;
    ASSERT_TRUE(t >= 0 && t < 4);
    EXPECT_GT(i, last[t]) << "thread " << t << "'s lines out of order";
    last[t] = i;
  }
  EXPECT_EQ(streams.size(), 1u) << "one process's lines of one stream go to one shard";
}

TEST_F(PreloadTest, ForkSpawnExecVforkAndSignalHandlerEachLineOnce) {
  const ProgramRun r = RunTarget({"procs"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  ExpectManifestCaptured();
}

// A datagram listener standing in for the syslog daemon, at a private path.
class SyslogListener {
 public:
  explicit SyslogListener(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ADD_FAILURE() << "bind " << path << ": " << std::strerror(errno);
    }
  }
  ~SyslogListener() {
    close(fd_);
    unlink(path_.c_str());
  }
  // Every datagram received so far.
  std::vector<std::string> Drain() {
    std::vector<std::string> got;
    char buf[65536];
    ssize_t n;
    while ((n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT)) >= 0) got.emplace_back(buf, n);
    return got;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST_F(PreloadTest, SyslogCallsAndDatagramsToTheSyslogSocket) {
  SyslogListener listener(Sub("log"));
  const ProgramRun r = RunTarget({"syslog", Sub("log")}, {"COMET_SYSLOG_SOCKET=" + Sub("log")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectManifestCaptured();
  // Datagrams are captured and still delivered; syslog() calls are captured only.
  const std::vector<std::string> delivered = listener.Drain();
  ASSERT_EQ(delivered.size(), 4u);
  EXPECT_EQ(delivered[0], "<14>Dec  2 10:00:00 app: via send");
  EXPECT_EQ(delivered[2], std::string("<14>app: via sendmsg") + '\0');
}

TEST_F(PreloadTest, DupCloseAndDup2FollowTheOpenFileNotTheNumber) {
  const ProgramRun r = RunTarget({"fds", dir_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  ExpectManifestCaptured();
  EXPECT_EQ(comet_test::ReadFile(Sub("reused.txt")), "into the file\nappended to the file\n");
}

TEST_F(PreloadTest, SocketAsStdoutCapturesSends) {
  const ProgramRun r = RunTarget({"socket"}, {}, Output::kSocket);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  ExpectManifestCaptured();
}

TEST_F(PreloadTest, RegularFileAsStdoutCapturesPositionedWrites) {
  const ProgramRun r = RunTarget({"seek"}, {}, Output::kFile);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "") << "the file was written with tee off";
  ExpectManifestCaptured();
}

TEST_F(PreloadTest, TeeLeavesTheOriginalOutputByteIdentical) {
  const RunSpec plain = Program({Target(), "stdio"}, {}, false);
  const ProgramRun a = comet_test::RunProgram(plain);
  const ProgramRun b = RunTarget({"stdio"}, {"COMET_TEE=1"});
  ASSERT_EQ(b.exit_code, 0);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.err, b.err);
  ExpectManifestCaptured();
}

TEST_F(PreloadTest, ExitStatusOfErrIsKept) {
  const ProgramRun r = RunTarget({"exit", "3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(Datas(ReadCaptured(Data(), "stdout")), std::vector<std::string>{"exiting"});
  EXPECT_EQ(Datas(ReadCaptured(Data(), "stderr")),
            std::vector<std::string>{"preload_target: exit code 3"});
}

// A bad value: one line on the original stderr naming it, then the program runs uncaptured
// with its own output and exit status.
TEST_F(PreloadTest, BadValuesLeaveTheProgramRunningUncaptured) {
  const struct {
    std::string var, named;
  } cases[] = {{"COMET_SHARDS=0", "COMET_SHARDS='0'"},
               {"COMET_CAPTURE=stdout,journal", "COMET_CAPTURE="},
               {"COMET_TEE=yes", "COMET_TEE='yes'"},
               {"COMET_MAX_LINE=12 parsecs", "COMET_MAX_LINE="},
               {"COMET_STDOUT_STREAM=a/b", "COMET_STDOUT_STREAM='a/b'"},
               {"COMET_CONFIG_sync_mode=sometimes", "COMET_CONFIG_sync_mode='sometimes'"},
               {"COMET_CONFIG_no_such_key=1", "COMET_CONFIG_no_such_key='1': no such config key"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.var);
    const ProgramRun r = RunTarget({"exit", "4"}, {c.var});
    EXPECT_EQ(r.exit_code, 4);
    EXPECT_EQ(r.out, "exiting\n");
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;
    EXPECT_NE(r.err.find("comet_preload: " + c.named), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("preload_target: exit code 4\n"), std::string::npos) << r.err;
  }
}

TEST_F(PreloadTest, UnusableDirectoryLeavesTheProgramRunningUncaptured) {
  ASSERT_TRUE(comet_test::WriteFile(Sub("file"), "not a directory"));
  const RunSpec spec = Program({Target(), "exit", "5"}, {"COMET_DIR=" + Sub("file") + "/data"});
  const ProgramRun r = comet_test::RunProgram(spec);
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.out, "exiting\n");
  EXPECT_NE(r.err.find("comet_preload: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("output is not captured"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("preload_target: exit code 5\n"), std::string::npos) << r.err;
}

// Runs argv with /etc/ld.so.preload naming the shim, seen only by this one process: a private
// mount namespace with an overlay on /etc whose upper layer (in the test's directory) holds the
// file. LD_PRELOAD is not set: glibc honours /etc/ld.so.preload even in secure execution.
ProgramRun RunWithSystemPreload(const std::string& layers, std::vector<std::string> argv,
                                std::vector<std::string> env) {
  const std::string up = layers + "/up", work = layers + "/work";
  EXPECT_EQ(mkdir(layers.c_str(), 0755), 0);
  EXPECT_EQ(mkdir(up.c_str(), 0755), 0);
  EXPECT_EQ(mkdir(work.c_str(), 0755), 0);
  EXPECT_TRUE(comet_test::WriteFile(up + "/ld.so.preload", comet_test::ShimPath() + "\n"));
  const std::string script = "mount -t overlay comet-test -o lowerdir=/etc,upperdir=" + up +
                             ",workdir=" + work + " /etc && exec \"$@\"";
  std::vector<std::string> wrapped = {Which("unshare"), "--mount", "--propagation", "private",
                                      Which("sh"), "-c", script, "sh"};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return comet_test::RunProgram(Program(wrapped, std::move(env), /*shim=*/false));
}

// A setgid or setuid program (AT_SECURE) is never captured: the shim checks for itself rather
// than relying on glibc to drop LD_PRELOAD. A setgid copy of the target (group nogroup, run by
// root) writes with the shim loaded through /etc/ld.so.preload; the same copy without the setgid
// bit shows the shim is loaded that way and would capture.
TEST_F(PreloadTest, SecureExecutionProgramsAreNeverCaptured) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (a mount namespace and a setgid program)";
  if (Which("unshare").empty()) GTEST_SKIP() << "no unshare";
  struct statvfs fs;
  ASSERT_EQ(statvfs(dir_.c_str(), &fs), 0);
  if (fs.f_flag & ST_NOSUID) GTEST_SKIP() << dir_ << " is mounted nosuid";
  const std::string copy = Sub("target_copy");
  ASSERT_TRUE(comet_test::WriteFile(copy, comet_test::ReadFile(Target())));
  ASSERT_EQ(chmod(copy.c_str(), 0755), 0);

  const ProgramRun plain = RunWithSystemPreload(Sub("layers-plain"), {copy, "exit", "5"},
                                                {"COMET_DIR=" + Sub("data-plain")});
  if (plain.err.find("mount:") != std::string::npos) GTEST_SKIP() << "no overlay mount: " << plain.err;
  EXPECT_EQ(plain.exit_code, 5) << plain.err;
  EXPECT_EQ(plain.out, "") << "the shim was not loaded through /etc/ld.so.preload";
  EXPECT_EQ(Datas(ReadCaptured(Sub("data-plain"), "stdout")), std::vector<std::string>{"exiting"});

  ASSERT_EQ(chown(copy.c_str(), 0, 65534), 0);
  ASSERT_EQ(chmod(copy.c_str(), 02755), 0);  // setgid: AT_SECURE for its process
  const ProgramRun secure = RunWithSystemPreload(Sub("layers-secure"), {copy, "exit", "5"},
                                                 {"COMET_DIR=" + Sub("data-secure")});
  EXPECT_EQ(secure.exit_code, 5) << secure.err;
  EXPECT_EQ(secure.out, "exiting\n");
  EXPECT_EQ(secure.err, "target_copy: exit code 5\n");
  EXPECT_FALSE(comet_test::FileExists(Sub("data-secure"))) << "the shim opened COMET_DIR";
}

// A user who cannot write COMET_DIR (a directory of root's, one they cannot create, and one a
// root process already filled): the program runs as it would without the shim, with one line
// on its original stderr naming the directory.
TEST_F(PreloadTest, UnwritableDirectoryForItsUserLeavesTheProgramRunningUncaptured) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (runs the program as nobody)";
  const std::string setpriv = Which("setpriv"), env = Which("env");
  if (setpriv.empty() || env.empty()) GTEST_SKIP() << "no setpriv";
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);  // nobody reaches into it, and writes nothing
  ASSERT_EQ(mkdir(Sub("roots").c_str(), 0755), 0);
  const ProgramRun as_root = RunTarget({"exit", "6"});  // fills Data() as root
  ASSERT_EQ(as_root.exit_code, 6);
  ASSERT_EQ(as_root.out, "");
  for (const std::string& dir : {Sub("roots"), Sub("roots/data"), Data()}) {
    SCOPED_TRACE(dir);
    const ProgramRun r = comet_test::RunProgram(Program(
        {setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", env,
         "LD_PRELOAD=" + comet_test::ShimPath(), "COMET_DIR=" + dir, Target(), "exit", "6"},
        {}, /*shim=*/false));
    EXPECT_EQ(r.exit_code, 6);
    EXPECT_EQ(r.out, "exiting\n");
    const std::string diagnostic = "comet_preload: cannot use COMET_DIR='" + dir + "' (";
    EXPECT_EQ(r.err.rfind(diagnostic, 0), 0u) << r.err;
    EXPECT_NE(r.err.find("Permission denied); output is not captured\npreload_target: exit code 6\n"),
              std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;
  }
  EXPECT_FALSE(comet_test::FileExists(Sub("roots/data")));
  EXPECT_EQ(Datas(ReadCaptured(Data(), "stdout")), std::vector<std::string>{"exiting"});
}

// A line cut short by a fatal signal is stored before the process dies of that signal.
TEST_F(PreloadTest, FatalSignalStoresTheLineCutShort) {
  for (const std::string sig : {"ABRT", "SEGV"}) {
    SCOPED_TRACE(sig);
    const std::string data = Sub("data-" + sig);
    const ProgramRun r = comet_test::RunProgram(Program({Target(), "crash", sig}, {"COMET_DIR=" + data}));
    EXPECT_EQ(r.signal, sig == "ABRT" ? SIGABRT : SIGSEGV);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(Datas(ReadCaptured(data, "stdout")),
              (std::vector<std::string>{"before the crash", "cut short by SIG" + sig}));
  }
}

// A full disk: the lines Comet cannot take go to the original stdout, each once, and are
// counted; the program runs to its end.
TEST_F(PreloadTest, FullDiskSendsLinesToTheOriginalOutputAndCountsThem) {
  comet_test::SmallTmpfs small(Sub("small"), "4m");
  if (!small.mounted()) GTEST_SKIP() << small.why_not();
  const std::string data = small.path() + "/data";
  const int kLines = 100000;  // 10 MB of lines for a 4 MiB disk
  const ProgramRun r = comet_test::RunProgram(Program(
      {Target(), "many", std::to_string(kLines)},
      {"COMET_DIR=" + data, "COMET_SHARDS=1", "COMET_CONFIG_storage_max_segment_bytes=512KiB"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> all = Datas(ReadCaptured(data, "stdout"));
  const size_t captured = all.size();
  std::vector<std::string> uncaptured;
  for (size_t pos = 0, end; (end = r.out.find('\n', pos)) != std::string::npos; pos = end + 1) {
    uncaptured.push_back(r.out.substr(pos, end - pos));
  }
  all.insert(all.end(), uncaptured.begin(), uncaptured.end());
  EXPECT_GT(captured, 0u);
  EXPECT_GT(uncaptured.size(), 0u) << "the disk never filled";
  std::vector<std::string> want;
  char line[128];
  for (int i = 0; i < kLines; i++) {
    snprintf(line, sizeof line, "line %08d %087d", i, 0);
    want.push_back(line);
  }
  const std::string diff = MultisetDiff(want, all);
  EXPECT_TRUE(diff.empty()) << diff.substr(0, 2000);
  auto stats = comet::ReadStats(data);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->uncaptured_lines, uncaptured.size());
}

TEST_F(PreloadTest, CxxIostreamsSyncedAndUnsynced) {
  for (const std::string mode : {"synced", "unsynced"}) {
    SCOPED_TRACE(mode);
    const std::string data = Sub(mode);
    const RunSpec spec = Program({comet_test::BinDir() + "/preload_target_cxx", mode}, {"COMET_DIR=" + data});
    const ProgramRun r = comet_test::RunProgram(spec);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(MultisetDiff({"cout 1", "cout 2.5", "cout last"}, Datas(ReadCaptured(data, "stdout"))), "");
    EXPECT_EQ(MultisetDiff({"cerr 3", "clog 4"}, Datas(ReadCaptured(data, "stderr"))), "");
  }
}

// Coreutils (stdio, then close_stdout at exit), Python's own buffered io with and without -u.
TEST_F(PreloadTest, CoreutilsAndPython) {
  struct Case {
    std::vector<std::string> argv;
    std::vector<std::string> out, err;
  };
  const std::string py = Which("python3");
  std::vector<Case> cases = {
      {{Which("echo"), "hello", "world"}, {"hello world"}, {}},
      {{Which("printf"), "%s-%d\\n%s", "a", "1", "tail"}, {"a-1", "tail"}, {}},
      {{Which("seq"), "3"}, {"1", "2", "3"}, {}},
      {{Which("ls"), "/nonexistent-path"}, {}, {Which("ls") + ": cannot access '/nonexistent-path': No such file or directory"}},
  };
  if (!py.empty()) {
    const std::string script = "import sys\nprint('py out')\nprint('py err', file=sys.stderr)\nprint('partial', end='')";
    cases.push_back({{py, "-c", script}, {"py out", "partial"}, {"py err"}});
    cases.push_back({{py, "-u", "-c", script}, {"py out", "partial"}, {"py err"}});
  }
  for (size_t i = 0; i < cases.size(); i++) {
    const Case& c = cases[i];
    SCOPED_TRACE(c.argv[0] + " " + c.argv[1]);
    if (c.argv[0].empty()) continue;
    const std::string data = Sub("data-" + std::to_string(i));
    const RunSpec spec = Program(c.argv, {"COMET_DIR=" + data});
    const ProgramRun r = comet_test::RunProgram(spec);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(MultisetDiff(c.out, Datas(ReadCaptured(data, "stdout"))), "");
    EXPECT_EQ(MultisetDiff(c.err, Datas(ReadCaptured(data, "stderr"))), "");
  }
}

// A shell pipeline and a command substitution keep their output: only what reaches the
// outermost program's stdout is captured.
TEST_F(PreloadTest, PipesInsideAShellAreNotCaptured) {
  const RunSpec spec = Program({Which("sh"), "-c", "x=$(echo inner); echo \"got $x\" | tr a-z A-Z"},
                               {"COMET_DIR=" + Data()});
  const ProgramRun r = comet_test::RunProgram(spec);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(Datas(ReadCaptured(Data(), "stdout")), std::vector<std::string>{"GOT INNER"});
}

TEST_F(PreloadTest, LoggerSendsToTheSyslogSocket) {
  const std::string logger = Which("logger");
  if (logger.empty()) GTEST_SKIP() << "no logger";
  SyslogListener listener(Sub("log"));
  const RunSpec spec = Program({logger, "-u", Sub("log"), "-t", "tagged", "hello from logger"},
                               {"COMET_DIR=" + Data(), "COMET_SYSLOG_SOCKET=" + Sub("log")});
  const ProgramRun r = comet_test::RunProgram(spec);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> got = Datas(ReadCaptured(Data(), "syslog"));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].rfind("<13>", 0), 0u) << got[0];
  EXPECT_NE(got[0].find("tagged"), std::string::npos) << got[0];
  EXPECT_NE(got[0].find("hello from logger"), std::string::npos) << got[0];
  EXPECT_EQ(listener.Drain().size(), 1u) << "the datagram is still delivered";
}

}  // namespace
