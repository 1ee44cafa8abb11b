#include "capture.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "comet/client.h"
#include "lifecycle.h"
#include "real.h"

namespace comet_preload {

__thread bool t_inside __attribute__((tls_model("initial-exec"))) = false;

namespace {

// Descriptor classes in the cache: 0 not classified yet, 1 not captured, 2 + sink.
constexpr int kFdCacheSize = 4096;
constexpr uint8_t kUnknown = 0, kNotCaptured = 1;

struct Identity {
  bool valid = false;
  dev_t dev = 0;
  ino_t ino = 0;
  mode_t type = 0;
  bool Matches(const struct stat& st) const {
    return valid && st.st_dev == dev && st.st_ino == ino && (st.st_mode & S_IFMT) == type;
  }
};

// One captured stream. `mu` guards everything below it.
struct SinkState {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  comet::Stream* stream = nullptr;  // this process's shard of the prefix; null: pick again
  char* partial = nullptr;          // a line not yet ended (capacity: max_line)
  size_t len = 0;
  int last_fd = -1;                 // where the partial line would have gone
};

struct State {
  bool active = false;
  Settings settings;
  comet::Client* client = nullptr;  // lives until the process ends
  Identity original[2];             // stdout, stderr as the process started
  std::string syslog_real;          // the syslog socket path with symlinks resolved
  SinkState sinks[kSinkCount];
  std::atomic<uint8_t> fd_class[kFdCacheSize] = {};
  std::atomic<uint64_t> lost{0};
};

State& S() {
  static State* s = new State;  // never destroyed: hooks run until the very end
  return *s;
}

class SinkLock {
 public:
  explicit SinkLock(SinkState& s) : s_(s) { pthread_mutex_lock(&s_.mu); }
  ~SinkLock() { pthread_mutex_unlock(&s_.mu); }
  SinkLock(const SinkLock&) = delete;
  SinkLock& operator=(const SinkLock&) = delete;

 private:
  SinkState& s_;
};

// The original stdout and stderr of the first program the shim was loaded into, handed to the
// programs it execs (COMET_ORIGIN="DEV:INO:TYPE,DEV:INO:TYPE", "-" for a closed one): a program
// run by a shell with its output in a pipe ($(cmd), cmd | grep) keeps that output, and only
// what reaches the outermost program's stdout and stderr is captured.
constexpr const char* kOriginVar = "COMET_ORIGIN";

std::string FormatIdentity(const Identity& id) {
  if (!id.valid) return "-";
  char buf[64];
  snprintf(buf, sizeof buf, "%llx:%llx:%o", static_cast<unsigned long long>(id.dev),
           static_cast<unsigned long long>(id.ino), static_cast<unsigned>(id.type));
  return buf;
}

bool ParseIdentity(const char* s, Identity* id) {
  if (std::strcmp(s, "-") == 0) {
    *id = Identity();
    return true;
  }
  unsigned long long dev = 0, ino = 0;
  unsigned type = 0;
  if (sscanf(s, "%llx:%llx:%o", &dev, &ino, &type) != 3) return false;
  id->valid = true;
  id->dev = static_cast<dev_t>(dev);
  id->ino = static_cast<ino_t>(ino);
  id->type = static_cast<mode_t>(type);
  return true;
}

bool ParseOrigin(const char* v, Identity out[2]) {
  const char* comma = std::strchr(v, ',');
  if (!comma) return false;
  const std::string first(v, comma - v);
  return ParseIdentity(first.c_str(), &out[0]) && ParseIdentity(comma + 1, &out[1]);
}

Identity IdentityOf(int fd) {
  Identity id;
  struct stat st;
  if (fstat(fd, &st) == 0) {
    id.valid = true;
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    id.type = st.st_mode & S_IFMT;
  }
  return id;
}

bool PeerIsSyslog(int fd) {
  struct sockaddr_un addr;
  socklen_t len = sizeof addr;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || addr.sun_family != AF_UNIX ||
      len <= offsetof(sockaddr_un, sun_path)) {
    return false;
  }
  return IsSyslogPath(addr.sun_path, strnlen(addr.sun_path, len - offsetof(sockaddr_un, sun_path)));
}

int Classify(int fd) {
  State& st = S();
  struct stat sb;
  if (fstat(fd, &sb) != 0) return -1;
  const bool out = st.original[kStdout].Matches(sb), err = st.original[kStderr].Matches(sb);
  int sink = -1;
  if (out && err) {
    sink = fd == 2 ? kStderr : kStdout;  // one file for both: the descriptor number decides
  } else if (out) {
    sink = kStdout;
  } else if (err) {
    sink = kStderr;
  } else if (S_ISSOCK(sb.st_mode) && st.settings.capture[kSyslog] && PeerIsSyslog(fd)) {
    sink = kSyslog;
  }
  return sink >= 0 && st.settings.capture[sink] ? sink : -1;
}

// Picks this process's shard of the sink's prefix (multi-process mode routes only to shards
// this process owns; keyed by pid so one process's lines of a stream stay on one shard).
bool Pick(int sink, SinkState& s) {
  State& st = S();
  char key[16];
  const int n = snprintf(key, sizeof key, "%d", static_cast<int>(getpid()));
  comet::Result<std::string> name =
      st.client->PickStream(st.settings.prefix[sink], std::string_view(key, n), st.settings.shards);
  if (!name.ok()) return false;
  comet::Result<comet::Stream*> stream = st.client->GetStream(*name);
  if (!stream.ok()) return false;
  s.stream = *stream;
  return true;
}

// How long a line waits for a shard this process was just assigned (a new process, or one
// whose shards moved) while its previous writer hands it over. Only membership changes wait.
constexpr int64_t kHandOverWaitNs = 2'000'000'000;

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Appends `lines` as one batch. NOT_OWNER means the shards moved between processes: pick
// again, and wait (briefly) for a shard being handed over. REQUIRES: s.mu held.
bool Emit(int sink, SinkState& s, std::span<const std::string_view> lines) {
  State& st = S();
  int64_t deadline = 0;
  for (;;) {
    if (!s.stream && !Pick(sink, s)) return false;  // this process is assigned no shard
    const comet::Status status = st.client->Append(s.stream, lines);
    if (status.ok()) return true;
    if (!status.IsNotOwner()) return false;
    s.stream = nullptr;
    const int64_t now = NowNs();
    if (deadline == 0) deadline = now + kHandOverWaitNs;
    if (now >= deadline) return false;
    const timespec pause = {0, 1'000'000};
    nanosleep(&pause, nullptr);
  }
}

// Lines Comet could not take: counted here and in the directory (comet stats).
void CountLost(uint64_t lines) {
  S().lost.fetch_add(lines, std::memory_order_relaxed);
  S().client->CountUncapturedLines(lines);
}

// Lines on their way to Emit, pointing into the caller's buffer or the partial buffer.
class Batch {
 public:
  Batch(int sink, SinkState& s, int fd) : sink_(sink), s_(s), fd_(fd) {}
  ~Batch() { Flush(); }
  void Add(const char* p, size_t n, bool ended) {
    if (k_ == kMax) Flush();
    lines_[k_] = std::string_view(p, n);
    ended_[k_++] = ended;
  }
  void Flush() {
    if (k_ == 0) return;
    if (!Emit(sink_, s_, std::span<const std::string_view>(lines_, k_))) Lost();
    k_ = 0;
  }

 private:
  // Comet could not take them: to the original destination (unless tee wrote them already).
  void Lost() {
    CountLost(k_);
    if (S().settings.tee) return;
    static const char kNewline = '\n';
    for (size_t i = 0; i < k_; i++) {
      struct iovec iov[2] = {{const_cast<char*>(lines_[i].data()), lines_[i].size()},
                             {const_cast<char*>(&kNewline), ended_[i] ? 1u : 0u}};
      (void)REAL(writev)(fd_, iov, 2);
    }
  }

  static constexpr size_t kMax = 64;
  int sink_;
  SinkState& s_;
  int fd_;
  size_t k_ = 0;
  // Filled by Add, read only below k_: left uninitialised (zeroing 64 views cost more than
  // the rest of a one-line capture).
  union {
    std::string_view lines_[kMax];
  };
  bool ended_[kMax];
};

// Splits bytes into lines. REQUIRES: s.mu held.
void Feed(Batch& b, SinkState& s, const char* p, size_t n) {
  const size_t max = S().settings.max_line;
  while (n > 0) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', n));
    size_t take = nl ? static_cast<size_t>(nl - p) : n;
    if (s.len == 0 && nl) {  // whole lines straight from the caller's buffer
      for (; take > max; take -= max, p += max, n -= max) b.Add(p, max, false);
      b.Add(p, take, true);
      p += take + 1;
      n -= take + 1;
      continue;
    }
    while (take > 0) {
      if (s.len == max) {  // a full partial line with more to come: split it here
        b.Add(s.partial, s.len, false);
        b.Flush();
        s.len = 0;
      }
      const size_t c = std::min(max - s.len, take);
      std::memcpy(s.partial + s.len, p, c);
      s.len += c;
      p += c;
      n -= c;
      take -= c;
    }
    if (nl) {
      b.Add(s.partial, s.len, true);
      b.Flush();
      s.len = 0;
      p++;
      n--;
    }
  }
}

}  // namespace

bool Active() { return S().active; }
const Settings& CurrentSettings() { return S().settings; }
uint64_t LostLines() { return S().lost.load(std::memory_order_relaxed); }

int SinkOfFd(int fd) {
  State& st = S();
  if (!st.active || fd < 0) return -1;
  if (fd >= kFdCacheSize) return Classify(fd);
  uint8_t c = st.fd_class[fd].load(std::memory_order_relaxed);
  if (c == kUnknown) {
    const int sink = Classify(fd);
    c = static_cast<uint8_t>(sink < 0 ? kNotCaptured : 2 + sink);
    st.fd_class[fd].store(c, std::memory_order_relaxed);
  }
  return c == kNotCaptured ? -1 : c - 2;
}

void ForgetFd(int fd) {
  if (fd >= 0 && fd < kFdCacheSize) S().fd_class[fd].store(kUnknown, std::memory_order_relaxed);
}

void ForgetFds(unsigned lo, unsigned hi) {
  for (unsigned fd = lo; fd <= hi && fd < kFdCacheSize; fd++) ForgetFd(static_cast<int>(fd));
}

bool IsSyslogPath(const char* path, size_t len) {
  const State& st = S();
  std::string_view p(path, len);
  return p == st.settings.syslog_socket || (!st.syslog_real.empty() && p == st.syslog_real);
}

void MarkSyslogFd(int fd) {
  if (fd >= 0 && fd < kFdCacheSize && S().settings.capture[kSyslog]) {
    S().fd_class[fd].store(2 + kSyslog, std::memory_order_relaxed);
  }
}

bool SinkIsSeekable(int sink) {
  return sink < kSyslog && S().original[sink].type == S_IFREG;
}

ssize_t WriteSink(int sink, int fd, const void* buf, size_t n) {
  ErrnoKeeper keep;
  ssize_t r = static_cast<ssize_t>(n);
  if (CurrentSettings().tee) {
    r = REAL(write)(fd, buf, n);
    if (r < 0) {
      keep.Set(errno);
      return r;
    }
  }
  CaptureBytes(sink, fd, static_cast<const char*>(buf), static_cast<size_t>(r));
  return r;
}

void CaptureBytes(int sink, int fd, const char* data, size_t n) {
  SinkState& s = S().sinks[sink];
  SinkLock lock(s);
  s.last_fd = fd;
  Batch b(sink, s, fd);
  Feed(b, s, data, n);
}

void CaptureIov(int sink, int fd, const struct iovec* iov, int iovcnt, size_t limit) {
  SinkState& s = S().sinks[sink];
  SinkLock lock(s);
  s.last_fd = fd;
  Batch b(sink, s, fd);
  for (int i = 0; i < iovcnt && limit > 0; i++) {
    const size_t n = std::min(iov[i].iov_len, limit);
    Feed(b, s, static_cast<const char*>(iov[i].iov_base), n);
    limit -= n;
  }
}

void CountPassedThrough(const struct iovec* iov, int iovcnt) {
  uint64_t lines = 0;
  bool any = false;
  for (int i = 0; i < iovcnt; i++) {
    const char* p = static_cast<const char*>(iov[i].iov_base);
    const char* end = p + iov[i].iov_len;
    any = any || iov[i].iov_len > 0;
    while ((p = static_cast<const char*>(std::memchr(p, '\n', end - p))) != nullptr) {
      lines++;
      p++;
    }
  }
  if (lines == 0 && any) lines = 1;
  if (lines > 0) CountLost(lines);
}

bool CaptureMessage(int sink, const char* data, size_t n) {
  while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\0')) n--;
  n = std::min<size_t>(n, S().settings.config.storage.max_entry_bytes);
  SinkState& s = S().sinks[sink];
  SinkLock lock(s);
  const std::string_view line(data, n);
  if (Emit(sink, s, std::span<const std::string_view>(&line, 1))) return true;
  CountLost(1);
  return false;
}

void FlushPartialLines(bool wait) {
  State& st = S();
  if (!st.active) return;
  for (int i = 0; i < kSyslog; i++) {
    SinkState& s = st.sinks[i];
    if (wait ? pthread_mutex_lock(&s.mu) != 0 : pthread_mutex_trylock(&s.mu) != 0) continue;
    if (s.len > 0) {
      Batch b(i, s, s.last_fd);
      b.Add(s.partial, s.len, false);
      b.Flush();
      s.len = 0;
    }
    pthread_mutex_unlock(&s.mu);
  }
}

// ---- lifecycle (lifecycle.h) -------------------------------------------------------------------

bool StartCapture(Settings settings, std::string* error) {
  State& st = S();
  st.settings = std::move(settings);
  const char* origin = getenv(kOriginVar);
  if (!origin || !ParseOrigin(origin, st.original)) {
    st.original[kStdout] = IdentityOf(1);
    st.original[kStderr] = IdentityOf(2);
    const std::string v = FormatIdentity(st.original[0]) + "," + FormatIdentity(st.original[1]);
    setenv(kOriginVar, v.c_str(), 1);
  }
  if (char* real_path = realpath(st.settings.syslog_socket.c_str(), nullptr)) {
    st.syslog_real = real_path;
    free(real_path);
  }
  for (int i = 0; i < kSyslog; i++) {
    if (!st.settings.capture[i]) continue;
    st.sinks[i].partial = static_cast<char*>(malloc(st.settings.max_line));
    if (!st.sinks[i].partial) {
      *error = "cannot allocate the line buffers";
      return false;
    }
  }
  comet::Result<std::unique_ptr<comet::Client>> c =
      comet::Client::OpenMultiProcess(st.settings.dir, st.settings.config);
  if (!c.ok()) {
    *error = "cannot use COMET_DIR='" + st.settings.dir + "' (" + c.status().message() + ")";
    return false;
  }
  st.client = c->release();
  st.active = true;
  return true;
}

void StopCapture() { S().active = false; }

void LockSinksForFork() {
  for (SinkState& s : S().sinks) pthread_mutex_lock(&s.mu);
}

void UnlockSinksAfterFork(bool child) {
  for (SinkState& s : S().sinks) {
    if (child) {  // the parent keeps its partial lines and its shards
      s.len = 0;
      s.stream = nullptr;
    }
    pthread_mutex_unlock(&s.mu);
  }
}

}  // namespace comet_preload
