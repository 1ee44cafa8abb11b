// `comet probe` for real: the BPF programs attached to libcomet.so's USDT probes and to the
// kernel, driven by another process (comet_probe_target, linked against libcomet.so), and read
// back from the pinned maps with `bpftool -j`. Needs root and a kernel with BPF; without them
// the suite skips, unless COMET_REQUIRE_BPF=1 (CI), where a skip is a failure. A BPF filesystem
// is mounted on /sys/fs/bpf for the suite if none is, and unmounted after it if it is then
// empty. Each test pins under its own /sys/fs/bpf/comet-test-<pid>-<n>, removed afterwards.
#include <signal.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <linux/magic.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "comet/client.h"
#include "comet/format.h"
#include "json_lite.h"
#include "test_util.h"

namespace {

using comet_test::Contains;
using comet_test::Json;
using comet_test::RunResult;
using comet_test::RunTool;
using comet_test::TempDirTest;
namespace fs = std::filesystem;

constexpr const char* kBpfFs = "/sys/fs/bpf";

std::string TargetBin() { return comet_test::BinDir() + "/comet_probe_target"; }
std::string Bpftool() {
  for (const char* p : {"/usr/sbin/bpftool", "/usr/bin/bpftool", "/sbin/bpftool"})
    if (access(p, X_OK) == 0) return p;
  return "bpftool";
}

bool IsBpfFs(const char* path) {
  struct statfs fs;
  return statfs(path, &fs) == 0 && static_cast<unsigned long>(fs.f_type) == BPF_FS_MAGIC;
}

// A running `comet probe`, its stdout read up to the "attached" line.
class ProbeProcess {
 public:
  ~ProbeProcess() { Stop(SIGKILL); }

  // Starts `comet probe ARGS`; true once it printed that it attached. On failure the output is
  // in out()/err().
  bool Start(const std::vector<std::string>& args) {
    int o[2], e[2];
    if (pipe2(o, O_CLOEXEC) != 0 || pipe2(e, O_CLOEXEC) != 0) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(o[1], 1);
      dup2(e[1], 2);
      std::vector<std::string> argv{comet_test::ToolBinary(), "probe"};
      argv.insert(argv.end(), args.begin(), args.end());
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(s.data());
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
    close(o[1]);
    close(e[1]);
    out_fd_ = o[0];
    err_fd_ = e[0];
    // Generous deadline: loading and attaching takes well under a second, but a loaded machine
    // may be slow; it only matters when something is wrong.
    const int64_t deadline = comet_test::MonotonicNs() + 60'000'000'000;
    while (!Contains(out_, "comet probe: attached")) {
      int left = static_cast<int>((deadline - comet_test::MonotonicNs()) / 1'000'000);
      if (left <= 0 || !ReadSome(out_fd_, &out_, left)) {
        Stop(SIGKILL);
        return false;
      }
    }
    return true;
  }

  // Sends `sig`, reads the rest of the output and reaps it; returns its exit code (-1 if it did
  // not exit normally, e.g. crashed).
  int Stop(int sig = SIGINT) {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, sig);
    while (out_fd_ >= 0 && ReadSome(out_fd_, &out_, 60'000)) {
    }
    while (err_fd_ >= 0 && ReadSome(err_fd_, &err_, 60'000)) {
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    pid_ = -1;
    for (int* fd : {&out_fd_, &err_fd_}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
    return exit_code_;
  }

  const std::string& out() const { return out_; }
  std::string err() {
    if (pid_ <= 0) return err_;
    return err_ + "(still running)";
  }

 private:
  static bool ReadSome(int fd, std::string* to, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    to->append(buf, static_cast<size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  int exit_code_ = -1;
  std::string out_, err_;
};

class BpfProbeTest : public TempDirTest {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      why_not_ = "not root";
      return;
    }
    if (!IsBpfFs(kBpfFs)) {
      if (mount("bpf", kBpfFs, "bpf", 0, nullptr) != 0) {
        why_not_ = std::string("cannot mount a BPF filesystem on /sys/fs/bpf: ") + strerror(errno);
        return;
      }
      mounted_ = true;
    }
    RunResult help = RunTool({comet_test::ToolBinary(), "probe", "--pin", "/nonexistent/x"});
    if (Contains(help.err, "without BPF support")) why_not_ = help.err;
  }
  static void TearDownTestSuite() {
    if (!mounted_) return;
    // Another run may have started pinning meanwhile: unmount only an empty filesystem.
    bool empty = true;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(kBpfFs, ec)) {
      const std::string n = e.path().filename().string();
      if (n != "maps.debug" && n != "progs.debug") empty = false;
    }
    if (empty) umount2(kBpfFs, MNT_DETACH);
    mounted_ = false;
  }

  void SetUp() override {
    TempDirTest::SetUp();
    if (!why_not_.empty()) {
      if (const char* r = std::getenv("COMET_REQUIRE_BPF"); r && *r == '1') {
        FAIL() << "COMET_REQUIRE_BPF=1 but BPF tests cannot run: " << why_not_;
      }
      GTEST_SKIP() << "BPF tests need root and BPF: " << why_not_;
    }
    static int n = 0;
    pin_ = std::string(kBpfFs) + "/comet-test-" + std::to_string(getpid()) + "-" +
           std::to_string(n++);
  }
  void TearDown() override {
    probe_.Stop(SIGKILL);
    std::error_code ec;
    fs::remove_all(pin_, ec);
    TempDirTest::TearDown();
  }

  // `comet probe --lib libcomet.so --pin pin_ --interval 0 EXTRA...`, asserted to attach.
  void StartProbe(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--lib", comet_test::SharedLibrary(), "--pin", pin_, "--interval", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    ASSERT_TRUE(probe_.Start(args)) << probe_.out() << probe_.err();
  }

  // Runs the target: `appends` append calls, `syncs` sync calls. Returns its pid.
  pid_t RunTarget(int appends, int syncs, std::vector<std::string> settings = {},
                  std::string* out = nullptr) {
    std::vector<std::string> argv{TargetBin(), Sub("data"), std::to_string(appends),
                                  std::to_string(syncs)};
    argv.insert(argv.end(), settings.begin(), settings.end());
    // RunTool forks and execs; the pid is the child's, learned through the target's own output.
    argv.insert(argv.begin(), {"/bin/sh", "-c", "echo pid=$$; exec \"$@\"", "sh"});
    RunResult r = RunTool(argv);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    if (out) *out = r.out;
    size_t p = r.out.find("pid=");
    return p == std::string::npos ? -1 : std::atoi(r.out.c_str() + p + 4);
  }

  // `bpftool -j map dump pinned pin_/MAP`, parsed.
  Json Dump(const std::string& map) {
    RunResult r = RunTool({Bpftool(), "-j", "map", "dump", "pinned", pin_ + "/" + map});
    Json j;
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(Json::Parse(r.out, &j)) << r.out;
    return j;
  }
  // The formatted value of the element whose formatted key is `key` (array maps).
  Json Element(const std::string& map, uint64_t key) {
    Json all = Dump(map);
    for (const Json& e : all.items) {
      const Json* f = e.Get("formatted");
      if (f && f->Get("key") && f->Get("key")->U64() == key && f->Get("value")) {
        return *f->Get("value");
      }
    }
    ADD_FAILURE() << "no key " << key << " in " << map;
    return Json();
  }
  static uint64_t Field(const Json& v, const std::string& name) {
    const Json* f = v.Get(name);
    EXPECT_NE(f, nullptr) << "no field " << name;
    return f ? f->U64() : 0;
  }
  static uint64_t SlotSum(const Json& v) {
    uint64_t n = 0;
    if (const Json* s = v.Get("slots"))
      for (const Json& x : s->items) n += x.U64();
    return n;
  }

  static inline std::string why_not_;
  static inline bool mounted_ = false;
  std::string pin_;
  ProbeProcess probe_;
};

// Entries and bytes the target appends in `appends` calls (batch sizes 1, 3, 7, 16 in turn;
// entry k is 10 + k % 50 bytes).
std::pair<uint64_t, uint64_t> TargetVolume(int appends) {
  const uint64_t batches[] = {1, 3, 7, 16};
  uint64_t entries = 0, bytes = 0;
  for (int i = 0; i < appends; i++) {
    for (uint64_t j = 0; j < batches[i % 4]; j++) bytes += 10 + (entries + j) % 50;
    entries += batches[i % 4];
  }
  return {entries, bytes};
}

TEST_F(BpfProbeTest, HistogramsCountEveryAppendAndSyncCallOnceWhateverTheBatch) {
  StartProbe();
  constexpr int kAppends = 37, kSyncs = 5;
  RunTarget(kAppends, kSyncs);
  auto [entries, bytes] = TargetVolume(kAppends);

  Json append = Element("comet_ops", 0);  // COMET_OP_APPEND
  EXPECT_EQ(Field(append, "count"), uint64_t{kAppends});
  EXPECT_EQ(SlotSum(append), uint64_t{kAppends});
  EXPECT_EQ(Field(append, "entries"), entries);
  EXPECT_EQ(Field(append, "bytes"), bytes);
  EXPECT_EQ(Field(append, "errors"), 0u);
  EXPECT_GT(Field(append, "sum_ns"), 0u);
  Json sync = Element("comet_ops", 1);  // COMET_OP_SYNC
  EXPECT_EQ(Field(sync, "count"), uint64_t{kSyncs});
  EXPECT_EQ(SlotSum(sync), uint64_t{kSyncs});

  // The per-shard map has the same appends under (op 0, prefix 0, shard 0).
  uint64_t shard_appends = 0;
  for (const Json& e : Dump("comet_shard_ops").items) {
    const Json* f = e.Get("formatted");
    ASSERT_NE(f, nullptr);
    const Json& k = *f->Get("key");
    if (Field(k, "op") == 0 && Field(k, "prefix_id") == 0 && Field(k, "shard") == 0)
      shard_appends += Field(*f->Get("value"), "count");
  }
  EXPECT_EQ(shard_appends, uint64_t{kAppends});

  EXPECT_EQ(probe_.Stop(SIGINT), 0) << probe_.err();
  EXPECT_TRUE(Contains(probe_.out(), "append: 37 calls, " + std::to_string(entries) + " entries"))
      << probe_.out();
  EXPECT_TRUE(Contains(probe_.out(), " -> ")) << probe_.out();
  EXPECT_TRUE(Contains(probe_.out(), "p99.9")) << probe_.out();
  // Detached and unpinned: the directory it created is gone.
  EXPECT_FALSE(fs::exists(pin_)) << pin_;
}

TEST_F(BpfProbeTest, SampledAppendsFireOneCallInNAndCountForN) {
  StartProbe();
  RunTarget(40, 0, {"metrics.probe_sample=4"});
  Json append = Element("comet_ops", 0);
  // Calls 4, 8, ..., 40 fire, each standing for 4: the count is exact for a multiple of 4.
  EXPECT_EQ(Field(append, "count"), 40u);
  EXPECT_EQ(SlotSum(append), 40u);
  // Every 4th call of the target is its batch of 16: only those fired (10 x 16 x 4 entries).
  EXPECT_EQ(Field(append, "entries"), 640u);
}

TEST_F(BpfProbeTest, AfterDetachCountsStopMovingAndKeepLeavesThePins) {
  StartProbe({"--keep"});
  RunTarget(8, 2);
  EXPECT_EQ(probe_.Stop(SIGTERM), 0) << probe_.err();
  ASSERT_TRUE(fs::exists(pin_ + "/comet_ops"));
  EXPECT_EQ(Field(Element("comet_ops", 0), "count"), 8u);

  RunTarget(8, 2);  // nothing attached now
  EXPECT_EQ(Field(Element("comet_ops", 0), "count"), 8u);
  EXPECT_EQ(Field(Element("comet_ops", 1), "count"), 2u);
}

TEST_F(BpfProbeTest, DurationEndsTheProbeAndUnpins) {
  StartProbe({"--duration", "0.2"});
  EXPECT_EQ(probe_.Stop(0), 0) << probe_.err();  // signal 0: just wait for it
  EXPECT_TRUE(Contains(probe_.out(), "detached; maps unpinned")) << probe_.out();
  EXPECT_FALSE(fs::exists(pin_));
}

TEST_F(BpfProbeTest, BpftoolPrintsTheNamedFieldsOfEveryMap) {
  StartProbe({"--keep"});
  RunTarget(300, 1, {"storage.prefault_bytes=0"});
  EXPECT_EQ(probe_.Stop(SIGINT), 0) << probe_.err();
  const std::vector<std::pair<std::string, std::vector<std::string>>> maps = {
      {"comet_ops", {"count", "sum_ns", "entries", "bytes", "errors", "slots"}},
      {"comet_shard_ops", {"op", "prefix_id", "shard", "count", "slots"}},
      {"comet_kernel", {"count", "sum_ns", "errors", "slots"}},
      {"comet_faults", {"faults", "in_append"}},
      {"comet_export", {"magic", "version", "ops", "attached", "op", "count", "sum_ns", "slots"}},
  };
  for (const auto& [map, fields] : maps) {
    RunResult r = RunTool({Bpftool(), "map", "dump", "pinned", pin_ + "/" + map});
    ASSERT_EQ(r.exit_code, 0) << map << ": " << r.err;
    for (const std::string& f : fields)
      EXPECT_TRUE(Contains(r.out, "\"" + f + "\": ")) << map << " lacks " << f << ":\n" << r.out;
  }
}

TEST_F(BpfProbeTest, SyncAlwaysShowsTheWriteBackLatencyInTheKernel) {
  StartProbe();
  constexpr int kAppends = 20;
  RunTarget(kAppends, 0, {"sync.mode=always"});
  // The library writes a segment back with msync(MS_SYNC) (and fsyncs the directory when it
  // created a file): at least one msync per acknowledged append in this mode.
  Json msync = Element("comet_kernel", 2);  // COMET_K_MSYNC
  EXPECT_GE(Field(msync, "count"), uint64_t{kAppends});
  EXPECT_EQ(SlotSum(msync), Field(msync, "count"));
  EXPECT_GT(Field(msync, "sum_ns"), 0u);
  Json fsync = Element("comet_kernel", 1);  // COMET_K_FSYNC: the directory
  EXPECT_GE(Field(fsync, "count"), 1u);
  // Commits (the library's view of the same write-backs) were timed too.
  EXPECT_GE(Field(Element("comet_ops", 2), "count"), uint64_t{kAppends});
}

TEST_F(BpfProbeTest, AppendingIntoFreshSegmentPagesShowsPageFaults) {
  StartProbe();
  // No pre-faulting: the appending thread touches every fresh page of the mapping itself.
  pid_t pid = RunTarget(2000, 0, {"storage.prefault_bytes=0", "storage.max_segment_bytes=1MiB"});
  ASSERT_GT(pid, 0);
  uint64_t faults = 0, in_append = 0;
  for (const Json& e : Dump("comet_faults").items) {
    const Json* f = e.Get("formatted");
    ASSERT_NE(f, nullptr);
    if (f->Get("key")->U64() != static_cast<uint64_t>(pid)) continue;
    faults = Field(*f->Get("value"), "faults");
    in_append = Field(*f->Get("value"), "in_append");
  }
  // 2000 calls of ~9 entries of ~35 bytes: ~650 KB of records, over 150 fresh pages.
  EXPECT_GE(in_append, 100u) << "faults " << faults;
  EXPECT_GE(faults, in_append);
}

TEST_F(BpfProbeTest, ABlockedReaderShowsItsWaitAndItsWakeUpToRunLatency) {
  // This test process links the library statically: attach to its own executable.
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  ASSERT_GT(n, 0);
  ASSERT_TRUE(probe_.Start({"--lib", std::string(self, size_t(n)), "--pin", pin_, "--interval",
                            "0"}))
      << probe_.err();
  auto c = comet::Client::Open(Sub("data"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const std::string stream = "wake:shard:0000";
  ASSERT_OK((*c)->Append(stream, "0"));
  constexpr int kRounds = 20;
  std::atomic<int> woken{0};
  std::thread reader([&] {
    for (int i = 1; i <= kRounds; i++) {
      if ((*c)->WaitFor(*(*c)->GetStream(stream), uint64_t(i), 60'000'000'000).ok()) woken++;
    }
  });
  for (int i = 1; i <= kRounds; i++) {
    // Append only once the reader is done with the previous entry and has announced itself as
    // blocked on this one (after its spin).
    const int64_t deadline = comet_test::MonotonicNs() + 60'000'000'000;
    while ((woken.load() < i - 1 || comet_test::Waiters(Sub("data"), 0, 0) == 0) &&
           comet_test::MonotonicNs() < deadline) {
    }
    ASSERT_OK((*c)->Append(stream, std::to_string(i)));
  }
  reader.join();
  EXPECT_EQ(woken.load(), kRounds);
  ASSERT_OK((*c)->Close());

  EXPECT_EQ(Field(Element("comet_ops", 7), "count"), uint64_t{kRounds});  // COMET_OP_WAIT
  // Each append wakes the sleeping reader (unless it was not asleep yet); its periodic
  // re-check wakes it too. Either way: woken while blocked in a wait, then ran.
  Json wake = Element("comet_kernel", 3);  // COMET_K_WAKE_TO_RUN
  EXPECT_GE(Field(wake, "count"), 1u);
  EXPECT_EQ(SlotSum(wake), Field(wake, "count"));
}

TEST_F(BpfProbeTest, PidCountsThatProcessOnly) {
  // This process (the library linked statically) is the one; the target, another process on
  // libcomet.so, is not.
  ASSERT_TRUE(probe_.Start({"--pid", std::to_string(getpid()), "--pin", pin_, "--interval", "0"}))
      << probe_.err();
  RunTarget(5, 0);
  auto c = comet::Client::Open(Sub("mine"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  for (int i = 0; i < 7; i++) ASSERT_OK((*c)->Append("pid:shard:0000", "entry"));
  ASSERT_OK((*c)->Close());
  EXPECT_EQ(Field(Element("comet_ops", 0), "count"), 7u);
}

// ---- the export map -----------------------------------------------------------------------------

TEST_F(BpfProbeTest, TheExportMapCountsWhatTheControlRegionCounts) {
  RunResult made = RunTool({comet_test::ToolBinary(), "probe", "--export-only", "--pin", pin_});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  ASSERT_TRUE(fs::exists(pin_ + "/comet_export"));
  RunTarget(160, 3, {"metrics.bpf_pin_dir=" + pin_});
  RunTarget(37, 1, {"metrics.bpf_pin_dir=" + pin_});

  RunResult stats = RunTool({comet_test::ToolBinary(), "stats", Sub("data"), "--json"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  Json sj;
  ASSERT_TRUE(Json::Parse(stats.out, &sj)) << stats.out;
  const Json* ops = sj.Get("ops");
  ASSERT_NE(ops, nullptr);
  Json x = Element("comet_export", 0);
  EXPECT_EQ(Field(x, "magic"), 0x505845544d4f43ull);
  EXPECT_EQ(Field(x, "attached"), 2u);
  const Json* xops = x.Get("op");
  ASSERT_TRUE(xops && xops->items.size() == 5);
  const char* names[] = {"append", "sync", "rotate", "read", "ack"};
  for (size_t i = 0; i < 5; i++) {
    SCOPED_TRACE(names[i]);
    const Json* c = ops->Get(names[i]);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(Field(xops->items[i], "count"), Field(*c, "count"));
    EXPECT_EQ(Field(xops->items[i], "sum_ns"), Field(*c, "sum_ns"));
    EXPECT_EQ(SlotSum(xops->items[i]), Field(*c, "count"));
  }
  // Appends are timed one call in 16, each standing for 16: 160 + 37 calls show as 192.
  EXPECT_EQ(Field(xops->items[0], "count"), 192u);
  EXPECT_GT(Field(xops->items[1], "count"), 0u);  // write-backs that did work
}

TEST_F(BpfProbeTest, WithoutThePinNothingIsExportedAndNothingFails) {
  // No pin at open: nothing exported, nothing fails. Then a client opened after the pin appeared
  // exports into it.
  RunTarget(32, 0, {"metrics.bpf_pin_dir=" + pin_});
  RunResult made = RunTool({comet_test::ToolBinary(), "probe", "--export-only", "--pin", pin_});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  EXPECT_EQ(Field(Element("comet_export", 0), "attached"), 0u);
  RunTarget(32, 0, {"metrics.bpf_pin_dir=" + pin_});
  Json x = Element("comet_export", 0);
  EXPECT_EQ(Field(x, "attached"), 1u);
  EXPECT_EQ(Field(x.Get("op")->items[0], "count"), 32u);
}

// ---- bad cases ---------------------------------------------------------------------------------

TEST_F(BpfProbeTest, NotRootIsAClearError) {
  passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  RunResult r = RunTool({comet_test::ToolBinary(), "probe", "--lib", comet_test::SharedLibrary(), "--pin", pin_},
                        nobody);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(Contains(r.err, "comet probe needs root")) << r.err;
  EXPECT_FALSE(fs::exists(pin_));
}

TEST_F(BpfProbeTest, APinDirectoryOutsideBpffsSaysHowToMountOne) {
  RunResult r = RunTool({comet_test::ToolBinary(), "probe", "--lib", comet_test::SharedLibrary(), "--pin",
                         Sub("pins")});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(Contains(r.err, "is not on a BPF filesystem")) << r.err;
  EXPECT_TRUE(Contains(r.err, "mount -t bpf bpf /sys/fs/bpf")) << r.err;
}

TEST_F(BpfProbeTest, AMissingPinDirectoryIsCreatedAndRemovedAfterwards) {
  const std::string nested = pin_ + "/a/b";
  ASSERT_TRUE(probe_.Start({"--lib", comet_test::SharedLibrary(), "--pin", nested, "--interval", "0"}))
      << probe_.err();
  EXPECT_TRUE(fs::exists(nested + "/comet_ops"));
  EXPECT_EQ(probe_.Stop(SIGINT), 0) << probe_.err();
  EXPECT_FALSE(fs::exists(pin_)) << "the directories it created are left behind";
}

TEST_F(BpfProbeTest, AStalePinOfAnotherLayoutIsReplaced) {
  ASSERT_EQ(mkdir(pin_.c_str(), 0700), 0);
  RunResult made = RunTool({Bpftool(), "map", "create", pin_ + "/comet_ops", "type", "array",
                            "key", "4", "value", "8", "entries", "4", "name", "comet_ops"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  StartProbe();
  RunTarget(3, 0);
  EXPECT_EQ(Field(Element("comet_ops", 0), "count"), 3u);
  EXPECT_EQ(probe_.Stop(SIGINT), 0) << probe_.err();
  EXPECT_TRUE(Contains(probe_.err(), "replaced " + pin_ + "/comet_ops: its layout is another"))
      << probe_.err();
}

TEST_F(BpfProbeTest, ATargetWithoutProbesIsAClearError) {
  RunResult r = RunTool({comet_test::ToolBinary(), "probe", "--lib", "/bin/true", "--pin", pin_});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(Contains(r.err, "/bin/true has no comet USDT probes")) << r.err;
  EXPECT_FALSE(fs::exists(pin_)) << "a failed start leaves its pin directory behind";
}

TEST_F(BpfProbeTest, ASecondProbeOnTheSamePinDirectoryIsRefused) {
  StartProbe();
  RunResult r = RunTool({comet_test::ToolBinary(), "probe", "--lib", comet_test::SharedLibrary(), "--pin", pin_});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(Contains(r.err, "another comet probe is using " + pin_)) << r.err;
  EXPECT_EQ(probe_.Stop(SIGINT), 0) << probe_.err();
}

}  // namespace
