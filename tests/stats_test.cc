// Stats: ReadStats over a real directory, `comet stats` and `comet exporter` as real processes
// (the exporter fetched with curl), and the promise that reading stats never modifies anything.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "comet/client.h"
#include "comet/counters.h"
#include "comet/format.h"
#include "comet/stats.h"
#include "test_util.h"

namespace {

using comet_test::TempDirTest;
namespace fs = std::filesystem;

constexpr const char* kAlpha = "alpha:shard:0000";
constexpr const char* kBeta = "beta:v1:shard:0003";
constexpr uint64_t kAlphaEntries = 5;
constexpr uint64_t kBetaEntries = 7;

using comet_test::ToolBinary;
using comet_test::Contains;
using comet_test::RunResult;
using comet_test::RunTool;

// ---- directory snapshots ---------------------------------------------------------------------

struct FileState {
  std::string bytes;  // empty for directories
  int64_t mtime_ns = 0;
  mode_t mode = 0;
  bool operator==(const FileState&) const = default;
};

// Every file and directory under `dir`: contents, mtime and mode. Directories are included so
// that a created or deleted file shows up as a changed directory mtime too.
std::map<std::string, FileState> Snapshot(const std::string& dir) {
  std::map<std::string, FileState> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    struct stat st;
    if (lstat(e.path().c_str(), &st) != 0) continue;
    FileState f;
    f.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    f.mode = st.st_mode;
    if (S_ISREG(st.st_mode)) f.bytes = comet_test::ReadFile(e.path().string());
    out[e.path().string()] = std::move(f);
  }
  struct stat st;
  if (lstat(dir.c_str(), &st) == 0) {
    out[dir] = FileState{"", int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec,
                         st.st_mode};
  }
  return out;
}

// Names the first difference, for a readable failure.
std::string FirstDifference(const std::map<std::string, FileState>& before,
                            const std::map<std::string, FileState>& after) {
  for (const auto& [path, state] : before) {
    auto it = after.find(path);
    if (it == after.end()) return path + " disappeared";
    if (it->second.bytes != state.bytes) return path + " changed its contents";
    if (it->second.mtime_ns != state.mtime_ns) return path + " changed its mtime";
    if (it->second.mode != state.mode) return path + " changed its mode";
  }
  for (const auto& [path, state] : after) {
    if (!before.count(path)) return path + " appeared";
  }
  return "";
}

// ---- fixture ---------------------------------------------------------------------------------

class StatsTest : public TempDirTest {
 protected:
  std::string Data() const { return dir_ + "/data"; }

  // Two streams of two prefixes, then Close: the control region keeps their counters.
  void WriteTwoStreams() {
    auto client = comet::Client::Open(Data());
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    for (uint64_t i = 0; i < kAlphaEntries; i++) {
      ASSERT_TRUE((*client)->Append(kAlpha, "alpha entry " + std::to_string(i)).ok());
    }
    for (uint64_t i = 0; i < kBetaEntries; i++) {
      ASSERT_TRUE((*client)->Append(kBeta, "beta entry " + std::to_string(i)).ok());
    }
    ASSERT_TRUE((*client)->Close().ok());
  }

  const comet::StreamStats* Find(const comet::DirectoryStats& s, const std::string& name) {
    for (const comet::StreamStats& st : s.streams) {
      if (st.name == name) return &st;
    }
    return nullptr;
  }

  // `comet_stream_appended_entries_total{stream="..",prefix_id="..",shard=".."} N` as the
  // exposition prints it, with the prefix id ReadStats reports.
  std::string AppendedSample(const std::string& name, uint64_t n) {
    auto s = comet::ReadStats(Data());
    EXPECT_TRUE(s.ok());
    if (!s.ok()) return "?";
    const comet::StreamStats* st = Find(*s, name);
    EXPECT_NE(st, nullptr) << name;
    if (!st) return "?";
    return "comet_stream_appended_entries_total{stream=\"" + name + "\",prefix_id=\"" +
           std::to_string(st->prefix_id) + "\",shard=\"" + std::to_string(st->shard) + "\"} " +
           std::to_string(n);
  }
};

// ---- ReadStats -------------------------------------------------------------------------------

TEST_F(StatsTest, ReadStatsReportsEveryStreamWithItsCommittedEntryAndCounters) {
  WriteTwoStreams();
  auto s = comet::ReadStats(Data());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->dir, Data());
  EXPECT_EQ(s->layout_version,
            comet::format::control_version(comet::format::kControlMajor,
                                           comet::format::kControlMinor));
  ASSERT_EQ(s->streams.size(), 2u);
  EXPECT_EQ(s->streams[0].name, kAlpha);  // sorted by name
  EXPECT_EQ(s->streams[1].name, kBeta);
  EXPECT_EQ(s->streams[0].committed_entry, kAlphaEntries);
  EXPECT_EQ(s->streams[0].appended_entries, kAlphaEntries);
  EXPECT_EQ(s->streams[1].committed_entry, kBetaEntries);
  EXPECT_EQ(s->streams[1].appended_entries, kBetaEntries);
  EXPECT_EQ(s->streams[1].shard, 3u);
  EXPECT_NE(s->streams[0].prefix_id, s->streams[1].prefix_id);
  EXPECT_GT(s->streams[0].appended_bytes, 0u);
  EXPECT_GE(s->streams[0].stored_bytes, s->streams[0].appended_bytes);
  // Everything closed: no process may be reported live.
  for (const comet::ProcessInfo& p : s->processes) EXPECT_FALSE(p.live) << "slot " << p.slot;
  // Histograms may still be empty (not every build fills them); their totals must agree.
  for (uint32_t op = 0; op < comet::format::kOpCount; op++) {
    uint64_t total = 0;
    for (uint64_t b : s->ops[op].buckets) total += b;
    EXPECT_EQ(total, s->ops[op].count) << comet::MetricOpName(op);
  }
}

TEST_F(StatsTest, ReadStatsOfADirectoryWithoutControlFileIsNotFound) {
  ASSERT_TRUE(comet_test::WriteFile(Sub("stray"), "x"));
  auto s = comet::ReadStats(dir_);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.status().IsNotFound()) << s.status().ToString();
  EXPECT_TRUE(Contains(s.status().message(), "comet.ctl")) << s.status().message();
  EXPECT_FALSE(comet_test::FileExists(Sub("comet.ctl")));
}

TEST_F(StatsTest, ReadStatsRejectsAForeignControlFile) {
  WriteTwoStreams();
  ASSERT_TRUE(comet_test::FlipByte(Data() + "/comet.ctl", 0));  // the magic
  auto s = comet::ReadStats(Data());
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.status().IsCorrupt()) << s.status().ToString();
}

// Liveness is the OFD lock on slots/<slot>.lock, whichever kind the holder takes; the slot
// bytes alone never make a process live.
TEST_F(StatsTest, ProcessIsLiveExactlyWhileItsSlotLockIsHeld) {
  WriteTwoStreams();
  comet::format::ProcessSlot slot{};
  slot.state = 1;
  slot.pid = static_cast<uint32_t>(getpid());
  slot.epoch = 9;
  slot.owned_shards = 2;
  ASSERT_TRUE(comet_test::PatchFile(Data() + "/comet.ctl", comet::format::process_table_offset(),
                                    &slot, sizeof slot));
  auto live_of_slot0 = [&]() -> int {
    auto s = comet::ReadStats(Data());
    if (!s.ok()) return -1;
    for (const comet::ProcessInfo& p : s->processes) {
      if (p.slot == 0) return p.live ? 1 : 0;
    }
    return -2;
  };
  const std::string lock = Data() + "/slots/0000.lock";
  fs::create_directories(Data() + "/slots");
  ::unlink(lock.c_str());
  EXPECT_EQ(live_of_slot0(), 0) << "no lock file";

  int fd = ::open(lock.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(live_of_slot0(), 0) << "lock file, no lock";
  for (short type : {F_WRLCK, F_RDLCK}) {
    struct flock fl {};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    ASSERT_EQ(fcntl(fd, F_OFD_SETLK, &fl), 0) << std::strerror(errno);
    EXPECT_EQ(live_of_slot0(), 1) << (type == F_WRLCK ? "exclusive lock" : "shared lock");
    fl.l_type = F_UNLCK;
    ASSERT_EQ(fcntl(fd, F_OFD_SETLK, &fl), 0);
  }
  EXPECT_EQ(live_of_slot0(), 0) << "lock released";
  ::close(fd);
  auto s = comet::ReadStats(Data());
  ASSERT_TRUE(s.ok());
  ASSERT_FALSE(s->processes.empty());
  EXPECT_EQ(s->processes[0].pid, static_cast<uint32_t>(getpid()));
  EXPECT_EQ(s->processes[0].epoch, 9u);
}

TEST(StatsHistogramTest, PercentileIsTheUpperBoundOfTheBucketHoldingIt) {
  comet::LatencyHistogram h;
  EXPECT_EQ(h.PercentileNs(50), 0u);  // empty
  h.buckets[3] = 90;                  // [8, 16) ns
  h.buckets[10] = 9;                  // [1024, 2048) ns
  h.buckets[20] = 1;                  // [1 Mi, 2 Mi) ns
  h.count = 100;
  EXPECT_EQ(h.PercentileNs(50), 16u);
  EXPECT_EQ(h.PercentileNs(90), 16u);
  EXPECT_EQ(h.PercentileNs(99), 2048u);
  EXPECT_EQ(h.PercentileNs(99.9), uint64_t{1} << 21);
  EXPECT_EQ(h.PercentileNs(100), uint64_t{1} << 21);
  comet::LatencyHistogram top;
  top.buckets[63] = 1;
  EXPECT_EQ(top.PercentileNs(50), UINT64_MAX);  // 2^64 does not fit
}

TEST(StatsFormatTest, PrometheusIsOpenMetricsWithEscapedLabelsAndCumulativeBuckets) {
  comet::DirectoryStats s;
  s.dir = "/d";
  s.layout_version = comet::format::control_version(1, 0);
  comet::StreamStats st;
  st.name = "we\"ird\\pre\xff" ":shard:0001";
  st.shard = 1;
  st.appended_entries = 42;
  s.streams.push_back(st);
  s.ops[comet::format::kOpAppend].buckets[0] = 2;
  s.ops[comet::format::kOpAppend].buckets[1] = 3;
  s.ops[comet::format::kOpAppend].count = 5;
  s.ops[comet::format::kOpAppend].sum_ns = 15;
  std::string text = comet::FormatStatsPrometheus(s);
  EXPECT_TRUE(Contains(text, "# TYPE comet_append_seconds histogram\n")) << text;
  EXPECT_TRUE(Contains(text, "comet_append_seconds_bucket{le=\"2e-09\"} 2\n")) << text;
  EXPECT_TRUE(Contains(text, "comet_append_seconds_bucket{le=\"4e-09\"} 5\n")) << text;
  EXPECT_TRUE(Contains(text, "comet_append_seconds_bucket{le=\"+Inf\"} 5\n")) << text;
  EXPECT_TRUE(Contains(text, "comet_append_seconds_count 5\n")) << text;
  EXPECT_TRUE(Contains(text, "comet_append_seconds_sum 1.5e-08\n")) << text;
  // OpenMetrics: the counter family has no _total, its samples do.
  EXPECT_TRUE(Contains(text, "# TYPE comet_stream_appended_entries counter\n")) << text;
  EXPECT_TRUE(Contains(text,
                       "comet_stream_appended_entries_total{stream=\"we\\\"ird\\\\pre\xEF\xBF\xBD"
                       ":shard:0001\",prefix_id=\"0\",shard=\"1\"} 42\n"))
      << text;
  ASSERT_GE(text.size(), 6u);
  EXPECT_EQ(text.substr(text.size() - 6), "# EOF\n");
  std::string json = comet::FormatStatsJson(s);
  EXPECT_TRUE(Contains(json, "\"name\":\"we\\\"ird\\\\pre\\u00ff:shard:0001\"")) << json;
  EXPECT_TRUE(Contains(json, "\"layout_version\":\"1.0\"")) << json;
}

// Every counter of comet/counters.h, each given its own value, appears with that value, its name
// and its help text in the JSON, Prometheus and text renderings.
TEST(StatsFormatTest, EveryCounterAppearsInEveryRendering) {
  comet::DirectoryStats s;
  s.dir = "/d";
  comet::StreamStats st;
  st.name = "p:shard:0001";
  st.shard = 1;
  uint64_t value = 1000;
#define SET_DIRECTORY_COUNTER(field, ...) s.field = value++;
  COMET_DIRECTORY_COUNTERS(SET_DIRECTORY_COUNTER)
#undef SET_DIRECTORY_COUNTER
#define SET_RETENTION_COUNTER(header_field, field, ...) s.retention.field = value++;
  COMET_RETENTION_COUNTERS(SET_RETENTION_COUNTER)
#undef SET_RETENTION_COUNTER
#define SET_STREAM_COUNTER(field, ...) st.field = value++;
  COMET_STREAM_COUNTERS(SET_STREAM_COUNTER)
#undef SET_STREAM_COUNTER
  s.streams.push_back(st);
  const std::string json = comet::FormatStatsJson(s);
  const std::string prom = comet::FormatStatsPrometheus(s);
  const std::string text = comet::FormatStatsText(s);
  const std::string labels = "{stream=\"p:shard:0001\",prefix_id=\"0\",shard=\"1\"}";
  auto expect_counter = [&](const std::string& field, const char* name, const char* help,
                            const std::string& sample_labels, uint64_t v, const std::string& in_text) {
    const std::string n = std::to_string(v);
    EXPECT_TRUE(Contains(json, "\"" + field + "\":" + n + ",") ||
                Contains(json, "\"" + field + "\":" + n + "}"))
        << field << " missing from the JSON:\n" << json;
    EXPECT_TRUE(Contains(prom, "# TYPE " + std::string(name) + " counter\n")) << name << "\n" << prom;
    EXPECT_TRUE(Contains(prom, "# HELP " + std::string(name) + " " + help + "\n")) << name << "\n" << prom;
    EXPECT_TRUE(Contains(prom, std::string(name) + "_total" + sample_labels + " " + n + "\n"))
        << name << " sample missing:\n" << prom;
    EXPECT_TRUE(Contains(text, in_text)) << field << " missing from the text:\n" << text;
  };
  value = 1000;
#define CHECK_DIRECTORY_COUNTER(field, name, help, label) \
  expect_counter(#field, name, help, "", value, std::to_string(value) + " " + label); \
  value++;
  COMET_DIRECTORY_COUNTERS(CHECK_DIRECTORY_COUNTER)
#undef CHECK_DIRECTORY_COUNTER
#define CHECK_RETENTION_COUNTER(header_field, field, name, help)                   \
  expect_counter(#field, name, help, "", value, std::to_string(value) + " ");         \
  value++;
  COMET_RETENTION_COUNTERS(CHECK_RETENTION_COUNTER)
#undef CHECK_RETENTION_COUNTER
#define CHECK_STREAM_COUNTER(field, name, unit, help, column, width) \
  expect_counter(#field, name, help, labels, value, column);         \
  EXPECT_TRUE(Contains(text, "  " + std::to_string(value))) << #field << "\n" << text; \
  value++;
  COMET_STREAM_COUNTERS(CHECK_STREAM_COUNTER)
#undef CHECK_STREAM_COUNTER
}

// ---- `comet stats` ---------------------------------------------------------------------------

TEST_F(StatsTest, StatsToolPrintsStreamsInEveryFormat) {
  WriteTwoStreams();
  RunResult json = RunTool({ToolBinary(), "stats", Data(), "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_TRUE(Contains(json.out, "\"name\":\"alpha:shard:0000\"")) << json.out;
  EXPECT_TRUE(Contains(json.out, "\"name\":\"beta:v1:shard:0003\"")) << json.out;
  EXPECT_TRUE(Contains(json.out, "\"committed_entry\":5,")) << json.out;
  EXPECT_TRUE(Contains(json.out, "\"appended_entries\":7,")) << json.out;
  EXPECT_TRUE(Contains(json.out, "\"layout_version\":\"1.1\"")) << json.out;
  EXPECT_TRUE(Contains(json.out, "\"append\":{\"count\":")) << json.out;

  RunResult prom = RunTool({ToolBinary(), "stats", Data(), "--prometheus"});
  ASSERT_EQ(prom.exit_code, 0) << prom.err;
  EXPECT_TRUE(Contains(prom.out, AppendedSample(kAlpha, kAlphaEntries) + "\n")) << prom.out;
  EXPECT_TRUE(Contains(prom.out, AppendedSample(kBeta, kBetaEntries) + "\n")) << prom.out;
  EXPECT_TRUE(Contains(prom.out, "# TYPE comet_append_seconds histogram\n")) << prom.out;

  RunResult text = RunTool({ToolBinary(), "stats", Data()});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_TRUE(Contains(text.out, kAlpha)) << text.out;
  EXPECT_TRUE(Contains(text.out, kBeta)) << text.out;
}

TEST_F(StatsTest, StatsToolFailsWithAMessageOnAMissingDirectory) {
  RunResult r = RunTool({ToolBinary(), "stats", Sub("nope")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.starts_with("comet: ")) << r.err;
  EXPECT_TRUE(Contains(r.err, Sub("nope"))) << r.err;
  EXPECT_FALSE(comet_test::FileExists(Sub("nope")));
  EXPECT_EQ(RunTool({ToolBinary(), "stats", Data(), "--json", "--prometheus"}).exit_code, 2);
}

// The promise of stats.h: reading never creates, writes or truncates anything, so it is safe
// on a directory in use and works for a user who may only read it.
TEST_F(StatsTest, ReadingStatsNeverModifiesAnyFile) {
  WriteTwoStreams();
  const auto before = Snapshot(Data());
  for (int round = 0; round < 3; round++) {
    for (const char* format : {"--json", "--prometheus", ""}) {
      std::vector<std::string> argv = {ToolBinary(), "stats", Data()};
      if (*format) argv.push_back(format);
      RunResult r = RunTool(argv);
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    ASSERT_TRUE(comet::ReadStats(Data()).ok());
  }
  EXPECT_EQ(FirstDifference(before, Snapshot(Data())), "");

  if (geteuid() != 0) GTEST_SKIP() << "not root: cannot run the tool as another user";
  const passwd* nobody = getpwnam("nobody");
  if (nobody == nullptr) GTEST_SKIP() << "no user 'nobody'";
  // A copy owned by root that others may only read and traverse: any write would fail.
  std::string shared = comet_test::MakeTempDir("comet-shared");
  ASSERT_FALSE(shared.empty());
  std::string copy = shared + "/data";
  ASSERT_TRUE(comet_test::CopyTree(Data(), copy));
  ASSERT_EQ(chmod(shared.c_str(), 0755), 0);
  ASSERT_EQ(std::system(("chmod -R a+rX,go-w '" + copy + "'").c_str()), 0);
  const auto copy_before = Snapshot(copy);
  for (const char* format : {"--json", "--prometheus", ""}) {
    std::vector<std::string> argv = {ToolBinary(), "stats", copy};
    if (*format) argv.push_back(format);
    RunResult r = RunTool(argv, nobody);
    EXPECT_EQ(r.exit_code, 0) << "as nobody, " << format << ": " << r.err;
    EXPECT_TRUE(Contains(r.out, kBeta)) << r.out;
  }
  EXPECT_EQ(FirstDifference(copy_before, Snapshot(copy)), "");
  comet_test::RemoveAll(shared);
}

// ---- `comet exporter` ------------------------------------------------------------------------

// The exporter as a child process; the destructor kills and reaps it if a test bailed out.
class ExporterProcess {
 public:
  ~ExporterProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) close(out_);
  }

  // Starts `comet exporter DIR --listen 127.0.0.1:0` and reads the URL it prints.
  bool Start(const std::string& dir, std::string* error) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(p[1], 1);
      execl(ToolBinary().c_str(), ToolBinary().c_str(), "exporter", dir.c_str(), "--listen",
            "127.0.0.1:0", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(p[1]);
    out_ = p[0];
    std::string line = ReadLine(std::chrono::seconds(10));
    const std::string prefix = "listening on ";
    if (!line.starts_with(prefix)) {
      *error = "the exporter printed '" + line + "'";
      return false;
    }
    url_ = line.substr(prefix.size());
    base_ = url_.substr(0, url_.size() - std::string("/metrics").size());
    return true;
  }

  // SIGTERM, then the exit status (-1 unless it exited normally).
  int Stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    pid_t got = waitpid(pid_, &status, 0);
    pid_ = -1;
    return got > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  const std::string& metrics_url() const { return url_; }
  std::string Url(const std::string& path) const { return base_ + path; }
  int port() const { return std::atoi(base_.substr(base_.rfind(':') + 1).c_str()); }

 private:
  std::string ReadLine(std::chrono::seconds timeout) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{out_, POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) continue;
      char c;
      if (read(out_, &c, 1) != 1) break;
      if (c == '\n') return line;
      line.push_back(c);
    }
    return line;
  }

  pid_t pid_ = -1;
  int out_ = -1;
  std::string url_, base_;
};

struct HttpReply {
  int status = 0;
  std::string content_type, body;
};

// Fetches with curl, the way a person would check an exporter by hand.
HttpReply Curl(const std::string& extra_args, const std::string& url, const std::string& tmp) {
  HttpReply r;
  const std::string body_file = tmp + "/curl-body";
  std::string cmd = "/usr/bin/curl -sS --max-time 10 -o '" + body_file +
                    "' -w '%{http_code} %{content_type}' " + extra_args + " '" + url + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::string out;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  size_t sp = out.find(' ');
  r.status = std::atoi(out.substr(0, sp).c_str());
  if (sp != std::string::npos) r.content_type = out.substr(sp + 1);
  r.body = comet_test::ReadFile(body_file);
  return r;
}

class ExporterTest : public StatsTest {
 protected:
  void SetUp() override {
    StatsTest::SetUp();
    ASSERT_TRUE(comet_test::FileExists("/usr/bin/curl"))
        << "/usr/bin/curl is missing: run `make deps` (the exporter tests need a real HTTP client)";
  }
};

TEST_F(ExporterTest, ServesFreshMetricsToCurlAndStopsCleanlyOnSigterm) {
  WriteTwoStreams();
  ExporterProcess exporter;
  std::string error;
  ASSERT_TRUE(exporter.Start(Data(), &error)) << error;
  EXPECT_TRUE(exporter.metrics_url().starts_with("http://127.0.0.1:")) << exporter.metrics_url();

  HttpReply om = Curl("-H 'Accept: application/openmetrics-text; version=1.0.0'",
                      exporter.metrics_url(), dir_);
  EXPECT_EQ(om.status, 200);
  EXPECT_EQ(om.content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
  EXPECT_TRUE(Contains(om.body, AppendedSample(kAlpha, kAlphaEntries) + "\n")) << om.body;
  EXPECT_TRUE(Contains(om.body, AppendedSample(kBeta, kBetaEntries) + "\n")) << om.body;
  EXPECT_TRUE(Contains(om.body, "# TYPE comet_append_seconds histogram\n")) << om.body;
  EXPECT_TRUE(om.body.ends_with("# EOF\n"));

  HttpReply classic = Curl("", exporter.metrics_url(), dir_);
  EXPECT_EQ(classic.status, 200);
  EXPECT_EQ(classic.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_TRUE(Contains(classic.body, AppendedSample(kAlpha, kAlphaEntries) + "\n"));
  EXPECT_TRUE(Contains(classic.body, "# TYPE comet_append_seconds histogram\n"));
  EXPECT_TRUE(Contains(classic.body, "# TYPE comet_stream_appended_entries_total counter\n"));
  EXPECT_FALSE(Contains(classic.body, "# EOF"));

  // Read afresh on every request: a later append shows up in the next scrape.
  {
    auto client = comet::Client::Open(Data());
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    ASSERT_TRUE((*client)->Append(kAlpha, "one more").ok());
    ASSERT_TRUE((*client)->Close().ok());
  }
  HttpReply again = Curl("", exporter.metrics_url(), dir_);
  EXPECT_TRUE(Contains(again.body, AppendedSample(kAlpha, kAlphaEntries + 1) + "\n"))
      << again.body;

  EXPECT_EQ(Curl("", exporter.Url("/nope"), dir_).status, 404);
  EXPECT_EQ(Curl("-X POST -d x", exporter.metrics_url(), dir_).status, 405);
  HttpReply index = Curl("", exporter.Url("/"), dir_);
  EXPECT_EQ(index.status, 200);
  EXPECT_TRUE(Contains(index.body, "/metrics"));

  EXPECT_EQ(exporter.Stop(), 0);
}

// One thread serves everyone, so a client that connects and sends nothing must not hold up
// the next one.
TEST_F(ExporterTest, AStuckClientDoesNotBlockOthers) {
  WriteTwoStreams();
  ExporterProcess exporter;
  std::string error;
  ASSERT_TRUE(exporter.Start(Data(), &error)) << error;
  int stuck = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(stuck, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(exporter.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(stuck, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(send(stuck, "GET /metr", 9, 0), 9);  // and never the rest
  HttpReply r = Curl("", exporter.metrics_url(), dir_);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(Contains(r.body, AppendedSample(kBeta, kBetaEntries) + "\n"));
  close(stuck);
  EXPECT_EQ(exporter.Stop(), 0);
}

// A request head over 8 KiB is answered 431 and never read in full.
TEST_F(ExporterTest, RefusesAnOversizedRequest) {
  WriteTwoStreams();
  ExporterProcess exporter;
  std::string error;
  ASSERT_TRUE(exporter.Start(Data(), &error)) << error;
  const std::string padding = "-H 'X-Padding: " + std::string(9000, 'a') + "'";
  HttpReply r = Curl(padding, exporter.metrics_url(), dir_);
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ(Curl("", exporter.metrics_url(), dir_).status, 200);
  EXPECT_EQ(exporter.Stop(), 0);
}

// Sends `request` on a fresh connection and returns all the exporter answers before closing it
// (at most 10 s).
std::string RawExchange(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "socket failed";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{fd, POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) continue;
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      reply.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return reply;
}

// RFC 9112 lets a server take a bare LF as a line end; clients typed by hand (nc, printf) send
// them, and got no answer at all.
TEST_F(ExporterTest, AnswersARequestWhoseLinesEndInBareLineFeeds) {
  WriteTwoStreams();
  ExporterProcess exporter;
  std::string error;
  ASSERT_TRUE(exporter.Start(Data(), &error)) << error;
  std::string lf = RawExchange(exporter.port(), "GET /metrics HTTP/1.1\nHost: x\n\n");
  EXPECT_TRUE(lf.starts_with("HTTP/1.1 200 OK\r\n")) << lf;
  EXPECT_TRUE(Contains(lf, AppendedSample(kAlpha, kAlphaEntries) + "\n")) << lf;
  std::string mixed = RawExchange(
      exporter.port(), "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\n\r\n");
  EXPECT_TRUE(mixed.starts_with("HTTP/1.1 200 OK\r\n")) << mixed;
  EXPECT_TRUE(Contains(mixed, "# EOF\n")) << "the Accept header was not read: " << mixed;
  std::string head = RawExchange(exporter.port(), "HEAD / HTTP/1.0\n\n");
  EXPECT_TRUE(head.starts_with("HTTP/1.1 200 OK\r\n")) << head;
  EXPECT_FALSE(Contains(head, "<html>")) << head;
  EXPECT_EQ(exporter.Stop(), 0);
}

TEST_F(ExporterTest, RefusesASecondListenAddress) {
  WriteTwoStreams();
  // The second address is bad, so that a build which silently took the last one fails fast
  // (with a message about that address) instead of serving forever.
  RunResult r = RunTool({ToolBinary(), "exporter", Data(), "--listen", "127.0.0.1:0", "--listen",
                         "127.0.0.1"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(Contains(r.err, "--listen given more than once")) << r.err;
  EXPECT_TRUE(r.out.empty()) << "it started listening: " << r.out;
}

TEST_F(ExporterTest, RefusesAnAddressThatIsNotGivenExplicitly) {
  WriteTwoStreams();
  for (const char* listen : {":9464", "example.com:80", "127.0.0.1:70000", "127.0.0.1"}) {
    RunResult r = RunTool({ToolBinary(), "exporter", Data(), "--listen", listen});
    EXPECT_EQ(r.exit_code, 2) << listen << ": " << r.err;
    EXPECT_TRUE(Contains(r.err, "--listen")) << r.err;
  }
  RunResult missing = RunTool({ToolBinary(), "exporter", Sub("nope"), "--listen", "127.0.0.1:0"});
  EXPECT_EQ(missing.exit_code, 1) << missing.err;
}

}  // namespace
