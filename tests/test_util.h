// Test vocabulary shared by the suites: a fixture that owns a unique temporary data directory,
// and small file helpers to list segments, damage bytes, shrink files and read them back.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <poll.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "comet/format.h"
#include "comet/status.h"
#include "test_hooks.h"

// Asserts a comet::Status is OK, printing it otherwise.
#define ASSERT_OK(expr)                                     \
  do {                                                      \
    const ::comet::Status _s = (expr);                      \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s.ToString(); \
  } while (0)

namespace comet_test {

namespace fs = std::filesystem;

// Creates a fresh directory under $TMPDIR (or /tmp) with mkdtemp. Aborts the test on failure.
inline std::string MakeTempDir(const std::string& tag = "comet") {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + tag + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp(" << tmpl << "): " << std::strerror(errno);
    return std::string();
  }
  return std::string(buf.data());
}

// Set COMET_TEST_KEEP=1 to keep every test directory for a post-mortem.
inline void RemoveAll(const std::string& path) {
  if (path.empty()) return;
  if (const char* keep = std::getenv("COMET_TEST_KEEP"); keep && *keep && *keep != '0') return;
  std::error_code ec;
  fs::remove_all(path, ec);
}

// Fixture: dir_ is a unique empty directory for each test, removed recursively afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override {
    const char* keep = std::getenv("COMET_TEST_KEEP");
    if (HasFailure() && keep && *keep && *keep != '0')
      std::fprintf(stderr, "  kept test directory: %s\n", dir_.c_str());
    RemoveAll(dir_);
  }

  // A path inside the fixture's directory (not created).
  std::string Sub(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
};

inline std::string Hex(uint64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llX", width, static_cast<unsigned long long>(v));
  return buf;
}

// DIR/streams/<prefix id %08X>/<shard %04X>
inline std::string ShardDir(const std::string& dir, uint32_t prefix_id, uint32_t shard) {
  return dir + "/streams/" + Hex(prefix_id, 8) + "/" + Hex(shard, 4);
}

// DIR/streams/<prefix id %08X>/<shard %04X>/<base %016X>.seg
inline std::string SegmentPath(const std::string& dir, uint32_t prefix_id, uint32_t shard,
                               uint64_t base) {
  return ShardDir(dir, prefix_id, shard) + "/" + Hex(base, 16) + ".seg";
}

// Segment files of one stream, sorted by base entry (the names are fixed-width hex, so the
// lexicographic order is the numeric one).
inline std::vector<std::string> ListSegments(const std::string& dir, uint32_t prefix_id,
                                             uint32_t shard) {
  std::vector<std::string> out;
  std::error_code ec;
  fs::directory_iterator it(ShardDir(dir, prefix_id, shard), ec);
  if (ec) return out;
  for (const auto& e : it) {
    if (e.is_regular_file() && e.path().extension() == ".seg") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Every regular file under `dir` whose name ends with `suffix` (e.g. ".seg", ".idx"), sorted.
inline std::vector<std::string> ListFilesRecursive(const std::string& dir,
                                                   const std::string& suffix) {
  std::vector<std::string> out;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, ec);
  if (ec) return out;
  for (const auto& e : it) {
    if (!e.is_regular_file()) continue;
    const std::string p = e.path().string();
    if (p.size() >= suffix.size() && p.compare(p.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(p);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The base entry encoded in a segment file name ("...../000000000000002A.seg" -> 42).
inline uint64_t SegmentBase(const std::string& path) {
  const std::string name = fs::path(path).stem().string();
  return std::strtoull(name.c_str(), nullptr, 16);
}

inline uint64_t FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return UINT64_MAX;
  return static_cast<uint64_t>(st.st_size);
}

inline bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Replaces the file's contents (creating it if needed).
inline bool WriteFile(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) {
      ::close(fd);
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return ::close(fd) == 0;
}

// Overwrites bytes in place at `offset`, without changing the file size (unless it extends it).
inline bool PatchFile(const std::string& path, uint64_t offset, const void* data, size_t n) {
  int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) return false;
  bool ok = ::pwrite(fd, data, n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n);
  return ::close(fd) == 0 && ok;
}

inline bool ReadAt(const std::string& path, uint64_t offset, void* data, size_t n) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  bool ok = ::pread(fd, data, n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n);
  ::close(fd);
  return ok;
}

// XORs the byte at `offset` with `mask` (default: flips every bit).
inline bool FlipByte(const std::string& path, uint64_t offset, uint8_t mask = 0xFF) {
  uint8_t b = 0;
  if (!ReadAt(path, offset, &b, 1)) return false;
  b ^= mask;
  return PatchFile(path, offset, &b, 1);
}

inline bool TruncateFile(const std::string& path, uint64_t size) {
  return ::truncate(path.c_str(), static_cast<off_t>(size)) == 0;
}

// Zeroes [offset, end of file).
inline bool ZeroFrom(const std::string& path, uint64_t offset) {
  uint64_t size = FileSize(path);
  if (size == UINT64_MAX) return false;
  if (offset >= size) return true;
  std::string zeros(size - offset, '\0');
  return PatchFile(path, offset, zeros.data(), zeros.size());
}

// Recursive copy of a directory tree (dst must not exist).
inline bool CopyTree(const std::string& src, const std::string& dst) {
  std::error_code ec;
  fs::copy(src, dst, fs::copy_options::recursive, ec);
  return !ec;
}

// ---- deterministic payloads ------------------------------------------------------------------

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// `len` pseudo-random (incompressible) bytes determined by `seed`.
inline std::string RandomBytes(uint64_t seed, size_t len) {
  std::string s(len, '\0');
  uint64_t state = SplitMix64(seed);
  size_t i = 0;
  while (i + 8 <= len) {
    state = SplitMix64(state);
    std::memcpy(&s[i], &state, 8);
    i += 8;
  }
  state = SplitMix64(state);
  for (; i < len; i++) {
    s[i] = static_cast<char>(state & 0xff);
    state >>= 8;
  }
  return s;
}

// `len` bytes of highly compressible log-like text determined by `seed`.
inline std::string CompressibleBytes(uint64_t seed, size_t len) {
  std::string line = "2024-05-01T12:00:00Z INFO request served path=/api/v1/items status=200 seed=" +
                     std::to_string(seed) + "\n";
  std::string s;
  s.reserve(len + line.size());
  while (s.size() < len) s += line;
  s.resize(len);
  return s;
}

inline uint64_t Fnv1a64(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

// ---- pipes between a test and its child processes ---------------------------------------------

inline int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Readers that announced themselves blocked on (prefix_id, shard) of DIR: the shard slot's
// waiter count in comet.ctl (0 when there is no such slot).
inline uint32_t Waiters(const std::string& dir, uint32_t prefix_id, uint32_t shard) {
  using namespace comet::format;
  const std::string ctl = dir + "/comet.ctl";
  ControlHeader h;
  if (!ReadAt(ctl, 0, &h, sizeof h)) return 0;
  uint32_t count = 0, p = 0, s = 0, waiters = 0;
  if (!ReadAt(ctl, offsetof(ControlHeader, shard_count), &count, 4)) return 0;
  for (uint32_t i = 0; i < count && i < h.max_shards; i++) {
    const uint64_t off = h.shard_table_offset + uint64_t{i} * sizeof(ShardSlot);
    if (ReadAt(ctl, off + offsetof(ShardSlot, prefix_id), &p, 4) &&
        ReadAt(ctl, off + offsetof(ShardSlot, shard), &s, 4) && p == prefix_id && s == shard) {
      return ReadAt(ctl, off + offsetof(ShardSlot, waiters), &waiters, 4) ? waiters : 0;
    }
  }
  return 0;
}

// For one scope, blocked readers re-check their stream only every `ns` (default a minute), so a
// wake-up that an append failed to deliver shows as a reader that is late by that much.
class SlowRecheck {
 public:
  explicit SlowRecheck(int64_t ns = 60'000'000'000) : saved_(comet::internal::WaitRecheckNs()) {
    comet::internal::SetWaitRecheckNs(ns);
  }
  ~SlowRecheck() { comet::internal::SetWaitRecheckNs(saved_); }
  SlowRecheck(const SlowRecheck&) = delete;
  SlowRecheck& operator=(const SlowRecheck&) = delete;

 private:
  int64_t saved_;
};

// The handshake before waking a reader: returns once at least `n` readers are blocked on the
// shard (false after timeout_ms).
inline bool AwaitWaiters(const std::string& dir, uint32_t prefix_id, uint32_t shard, uint32_t n,
                         int timeout_ms = 30000) {
  const int64_t deadline = MonotonicNs() + int64_t{timeout_ms} * 1'000'000;
  while (Waiters(dir, prefix_id, shard) < n) {
    if (MonotonicNs() > deadline) return false;
    usleep(100);
  }
  return true;
}

// Reads exactly n bytes within timeout_ms. False on EOF, error or timeout.
inline bool ReadFull(int fd, void* buf, size_t n, int timeout_ms) {
  auto* p = static_cast<char*>(buf);
  const int64_t deadline = MonotonicNs() + int64_t{timeout_ms} * 1'000'000;
  while (n > 0) {
    const int64_t left_ms = (deadline - MonotonicNs()) / 1'000'000;
    if (left_ms <= 0) return false;
    struct pollfd pfd = {fd, POLLIN, 0};
    int pr = poll(&pfd, 1, static_cast<int>(left_ms));
    if (pr < 0 && errno != EINTR) return false;
    if (pr <= 0) continue;
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

inline bool WriteFull(int fd, const void* buf, size_t n) {
  const auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// ---- the `comet` tool as a real process ------------------------------------------------------

struct ToolRun {
  int status = -1;    // exit code, or -1 if it did not exit normally
  std::string out;    // stdout
  std::string err;    // stderr
};

// The tool binary: $COMET_BIN (set by `make test`), else build/bin/comet.
inline std::string ToolBinary() {
  const char* bin = std::getenv("COMET_BIN");
  return bin && *bin ? bin : "build/bin/comet";
}

// The directory of the build's programs, and the shared library the build made beside it.
inline std::string BinDir() {
  const std::string b = ToolBinary();
  return b.substr(0, b.rfind('/'));
}
inline std::string SharedLibrary() { return BinDir() + "/../lib/libcomet.so"; }

// Runs `comet ARGS` through the shell with `input` on stdin; `scratch` is a directory for the
// stdin and stderr files.
inline ToolRun RunTool(const std::string& args, const std::string& scratch,
                       const std::string& input = "") {
  const std::string in = scratch + "/stdin.txt", err = scratch + "/stderr.txt";
  ToolRun r;
  if (!WriteFile(in, input)) return r;
  std::string cmd = "'" + ToolBinary() + "' " + args + " < '" + in + "' 2>'" + err + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = ReadFile(err);
  return r;
}

inline bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---- tools run as child processes ------------------------------------------------------------

struct RunResult {
  int exit_code = -1;  // -1 unless it exited normally
  std::string out, err;
};

// Reads a pipe to its end.
inline std::string Drain(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) s.append(buf, static_cast<size_t>(n));
  }
  return s;
}

// Runs argv directly (no shell), as `run_as` when it is not null; waits for it by pid. Output
// must be small (stdout is read to its end before stderr).
inline RunResult RunTool(const std::vector<std::string>& argv, const passwd* run_as = nullptr) {
  RunResult r;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return r;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    if (run_as && (setgroups(0, nullptr) != 0 || setgid(run_as->pw_gid) != 0 ||
                   setuid(run_as->pw_uid) != 0)) {
      _exit(126);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  // stderr is small; read stdout fully first, then stderr (no deadlock for these outputs).
  r.out = Drain(out[0]);
  r.err = Drain(err[0]);
  close(out[0]);
  close(err[0]);
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  }
  return r;
}

}  // namespace comet_test
