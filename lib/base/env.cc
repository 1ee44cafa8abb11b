#include "env.h"
#include "hot.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <mutex>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace comet::env {

// ---- the fault seam ----------------------------------------------------------------------------

namespace {

std::atomic<bool> g_armed{false};

struct FaultState {
  std::mutex mu;
  std::array<uint64_t, size_t(Call::kCount)> counts{};
  struct Armed {
    Fault fault;
    uint64_t first;  // the count of its kind at which it starts failing
  };
  std::vector<Armed> faults;
};

FaultState& Faults() {
  static FaultState* s = new FaultState;  // never destroyed: calls may come during exit
  return *s;
}

// Counts the call and says how it is to go: the errno to fail it with, or 0 to make it (with *n,
// the bytes a write may write, lowered for a short write).
int InjectedSlow(Call c, size_t* n) {
  FaultState& s = Faults();
  std::lock_guard lk(s.mu);
  const uint64_t k = ++s.counts[size_t(c)];
  for (const FaultState::Armed& a : s.faults) {
    const Fault& f = a.fault;
    if (f.call != c || k < a.first || (f.times != 0 && k >= a.first + f.times)) continue;
    if (f.err != 0) return f.err;
    if (n && f.short_bytes > 0) *n = std::min(*n, f.short_bytes);
  }
  return 0;
}

// The check every call makes first: one relaxed load and a branch that is never taken unarmed.
inline int Injected(Call c, size_t* n = nullptr) {
  if (__builtin_expect(!g_armed.load(std::memory_order_relaxed), 1)) return 0;
  return InjectedSlow(c, n);
}

// Makes the system call fn() unless a fault fails this call of kind c: then errno is set and
// `failed` returned, as the kernel would.
template <typename R, typename Fn>
R Sys(Call c, R failed, Fn&& fn) {
  if (int e = Injected(c)) {
    errno = e;
    return failed;
  }
  return fn();
}

int SysDataSync(int fd) {
  return Sys(Call::kDataSync, -1, [&] { return fdatasync(fd); });
}

}  // namespace

std::string_view CallName(Call c) {
  switch (c) {
#define COMET_ENV_CALL_NAME(name, text) \
  case Call::name:                      \
    return text;
    COMET_ENV_CALLS(COMET_ENV_CALL_NAME)
#undef COMET_ENV_CALL_NAME
    case Call::kCount: break;
  }
  return "?";
}

void InjectFault(const Fault& f) {
  FaultState& s = Faults();
  std::lock_guard lk(s.mu);
  if (!g_armed.load(std::memory_order_relaxed)) s.counts = {};
  s.faults.push_back({f, s.counts[size_t(f.call)] + std::max<uint64_t>(f.nth, 1)});
  g_armed.store(true, std::memory_order_relaxed);
}

void CountCalls() {
  FaultState& s = Faults();
  std::lock_guard lk(s.mu);
  s.counts = {};
  s.faults.clear();
  g_armed.store(true, std::memory_order_relaxed);
}

uint64_t CallCount(Call c) {
  FaultState& s = Faults();
  std::lock_guard lk(s.mu);
  return s.counts[size_t(c)];
}

void ClearFaults() {
  FaultState& s = Faults();
  std::lock_guard lk(s.mu);
  g_armed.store(false, std::memory_order_relaxed);
  s.faults.clear();
  s.counts = {};
}

// ---- clocks, paths -----------------------------------------------------------------------------

COMET_HOT int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

std::string Join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

namespace {

// A root process creating a file or directory gives it the owner and group of the directory it
// is created in, so that a data directory handed to an unprivileged user stays writable by that
// user whatever root creates in it later (a server's master writing beside its workers, which
// dropped privileges). Best effort: a failure leaves root as the owner, as before.
void TakeParentOwner(int fd, const std::string& path) {
  if (geteuid() != 0) return;
  const size_t slash = path.rfind('/');
  const std::string parent = slash == std::string::npos ? "."
                             : slash == 0               ? "/"
                                                        : path.substr(0, slash);
  struct stat dir, self;
  if (stat(parent.c_str(), &dir) != 0) return;
  const int got = fd >= 0 ? fstat(fd, &self) : lstat(path.c_str(), &self);
  if (got != 0 || (self.st_uid == dir.st_uid && self.st_gid == dir.st_gid)) return;
  const int rc = fd >= 0 ? fchown(fd, dir.st_uid, dir.st_gid)
                         : lchown(path.c_str(), dir.st_uid, dir.st_gid);
  (void)rc;
}

}  // namespace

Status MkdirAll(const std::string& path) {
  if (path.empty()) return Status::Invalid("empty directory path");
  std::string cur;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    cur = path.substr(0, j);
    if (!cur.empty()) {
      if (Sys(Call::kMkdir, -1, [&] { return mkdir(cur.c_str(), 0755); }) == 0) {
        TakeParentOwner(-1, cur);
      } else if (errno != EEXIST) {
        return Status::FromErrno(errno, "mkdir " + cur);
      }
    }
    i = j + 1;
  }
  struct stat st;
  if (Sys(Call::kStat, -1, [&] { return stat(path.c_str(), &st); }) != 0) {
    return Status::FromErrno(errno, "stat " + path);
  }
  if (!S_ISDIR(st.st_mode)) return Status::Invalid(path + " exists and is not a directory");
  return Status::Ok();
}

Result<bool> Exists(const std::string& path) {
  struct stat st;
  if (Sys(Call::kStat, -1, [&] { return stat(path.c_str(), &st); }) == 0) return true;
  if (errno == ENOENT) return false;
  return Status::FromErrno(errno, "stat " + path);
}

Result<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* d = Sys(Call::kListDir, static_cast<DIR*>(nullptr), [&] { return opendir(path.c_str()); });
  if (!d) {
    if (errno == ENOENT) return Status::NotFound("no directory " + path);
    return Status::FromErrno(errno, "opendir " + path);
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  closedir(d);
  return names;
}

namespace {

int SysRename(const std::string& from, const std::string& to) {
  return Sys(Call::kRename, -1, [&] { return rename(from.c_str(), to.c_str()); });
}

}  // namespace

Status Rename(const std::string& from, const std::string& to) {
  if (SysRename(from, to) != 0) return Status::FromErrno(errno, "rename " + from + " -> " + to);
  return Status::Ok();
}

Result<bool> RenameDirIfAbsent(const std::string& from, const std::string& to) {
  if (SysRename(from, to) == 0) return true;
  if (errno == EEXIST || errno == ENOTEMPTY) return false;
  return Status::FromErrno(errno, "rename " + from + " -> " + to);
}

Status Unlink(const std::string& path) {
  if (Sys(Call::kUnlink, -1, [&] { return unlink(path.c_str()); }) != 0 && errno != ENOENT) {
    return Status::FromErrno(errno, "unlink " + path);
  }
  return Status::Ok();
}

Status RemoveDir(const std::string& path) {
  if (Sys(Call::kRmdir, -1, [&] { return rmdir(path.c_str()); }) != 0 && errno != ENOENT) {
    return Status::FromErrno(errno, "rmdir " + path);
  }
  return Status::Ok();
}

Status FsyncDir(const std::string& path) {
  int fd =
      Sys(Call::kOpen, -1, [&] { return open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
  if (fd < 0) return Status::FromErrno(errno, "open directory " + path);
  int rc = Sys(Call::kFsync, -1, [&] { return fsync(fd); });
  int err = errno;
  close(fd);
  if (rc != 0) return Status::FromErrno(err, "fsync directory " + path);
  return Status::Ok();
}

Result<int> OpenFile(const std::string& path, int flags, mode_t mode) {
  int fd = Sys(Call::kOpen, -1, [&] { return open(path.c_str(), flags | O_CLOEXEC, mode); });
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("no file " + path);
    return Status::FromErrno(errno, "open " + path);
  }
  if (flags & O_CREAT) TakeParentOwner(fd, path);
  return fd;
}

void Close(int fd) {
  if (fd >= 0) close(fd);
}

Result<uint64_t> FileSize(int fd, const std::string& path) {
  struct stat st;
  if (Sys(Call::kStat, -1, [&] { return fstat(fd, &st); }) != 0)
    return Status::FromErrno(errno, "fstat " + path);
  return static_cast<uint64_t>(st.st_size);
}

Result<FileId> GetFileId(const std::string& path) {
  struct stat st;
  if (Sys(Call::kStat, -1, [&] { return stat(path.c_str(), &st); }) != 0) {
    if (errno == ENOENT) return Status::NotFound("no file " + path);
    return Status::FromErrno(errno, "stat " + path);
  }
  return FileId{st.st_dev, st.st_ino};
}

Result<uint64_t> FreeBytes(const std::string& path) {
  struct statvfs st;
  if (Sys(Call::kStat, -1, [&] { return statvfs(path.c_str(), &st); }) != 0)
    return Status::FromErrno(errno, "statvfs " + path);
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

Status Preallocate(int fd, uint64_t bytes, const std::string& path) {
  int rc = Injected(Call::kAllocate);  // posix_fallocate returns the error, errno untouched
  if (rc == 0) rc = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  if (rc != 0) {
    return Status::FromErrno(rc, "preallocate " + std::to_string(bytes) + " bytes for " + path);
  }
  return Status::Ok();
}

Status Truncate(int fd, uint64_t bytes, const std::string& path) {
  if (Sys(Call::kTruncate, -1, [&] { return ftruncate(fd, static_cast<off_t>(bytes)); }) != 0) {
    return Status::FromErrno(errno, "truncate " + path + " to " + std::to_string(bytes));
  }
  return Status::Ok();
}

Status DataSync(int fd, const std::string& path) {
  if (SysDataSync(fd) != 0) return Status::FromErrno(errno, "fdatasync " + path);
  return Status::Ok();
}

Status SyncMapped(char* base, uint64_t len, const std::string& path) {
  if (len == 0) return Status::Ok();
  if (Sys(Call::kMsync, -1, [&] { return msync(base, len, MS_SYNC); }) != 0) {
    return Status::FromErrno(errno, "msync " + std::to_string(len) + " bytes of " + path);
  }
  return Status::Ok();
}

void DropCached(int fd) { (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); }

Status PreadFull(int fd, void* buf, size_t n, uint64_t off, const std::string& path, size_t* got) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = Sys(Call::kRead, ssize_t{-1}, [&] {
      return pread(fd, static_cast<char*>(buf) + done, n - done, static_cast<off_t>(off + done));
    });
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "read " + path + " at offset " + std::to_string(off + done));
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  *got = done;
  return Status::Ok();
}

Status PwriteFull(int fd, const void* data, size_t n, uint64_t off, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    size_t len = n - done;
    ssize_t w = -1;
    if (int e = Injected(Call::kWrite, &len)) {
      errno = e;
    } else {
      w = pwrite(fd, static_cast<const char*>(data) + done, len, static_cast<off_t>(off + done));
    }
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "write " + path + " at offset " + std::to_string(off + done));
    }
    done += static_cast<size_t>(w);
  }
  return Status::Ok();
}

Status WriteFile(const std::string& path, const void* data, size_t n, bool durable) {
  std::string tmp = path + ".tmp";
  Result<int> fd = OpenFile(tmp, O_WRONLY | O_CREAT | O_TRUNC);
  if (!fd.ok()) return fd.status();
  Status st = PwriteFull(*fd, data, n, 0, tmp);
  if (st.ok() && durable && SysDataSync(*fd) != 0)
    st = Status::FromErrno(errno, "fdatasync " + tmp);
  close(*fd);
  if (!st.ok()) {
    (void)Unlink(tmp);
    return st;
  }
  return Rename(tmp, path);
}

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  Result<int> fd = OpenFile(path, O_RDONLY | O_NOCTTY);
  if (!fd.ok()) return fd.status();
  std::string out;
  char buf[65536];
  while (out.size() < max_bytes) {
    const size_t want = std::min(sizeof buf, max_bytes - out.size());
    ssize_t r = Sys(Call::kRead, ssize_t{-1}, [&] { return read(*fd, buf, want); });
    if (r < 0) {
      if (errno == EINTR) continue;
      Status s = Status::FromErrno(errno, "read " + path);
      close(*fd);
      return s;
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  close(*fd);
  return out;
}

// ---- OFD locks ---------------------------------------------------------------------------------

namespace {

struct flock Range(short type, uint64_t start, uint64_t len) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(start);
  fl.l_len = static_cast<off_t>(len);
  return fl;
}

}  // namespace

Status OfdLock(int fd, LockType type, uint64_t start, uint64_t len, bool wait,
               const std::string& path) {
  const short t = type == LockType::kShared      ? F_RDLCK
                  : type == LockType::kExclusive ? F_WRLCK
                                                 : F_UNLCK;
  struct flock fl = Range(t, start, len);
  const int cmd = wait && type != LockType::kUnlock ? F_OFD_SETLKW : F_OFD_SETLK;
  while (Sys(Call::kLock, -1, [&] { return fcntl(fd, cmd, &fl); }) != 0) {
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EACCES) {
      return Status::NotOwner("bytes " + std::to_string(start) + ".." +
                              (len ? std::to_string(start + len) : std::string("end")) + " of " +
                              path + " are locked by another process");
    }
    return Status::FromErrno(errno, "lock " + path);
  }
  return Status::Ok();
}

bool OfdLockHeld(int fd, uint64_t start, uint64_t len) {
  struct flock fl = Range(F_WRLCK, start, len);
  if (Sys(Call::kLockProbe, -1, [&] { return fcntl(fd, F_OFD_GETLK, &fl); }) != 0) return false;
  return fl.l_type != F_UNLCK;
}

bool OfdLockHeldAt(const std::string& path, uint64_t start, uint64_t len) {
  Result<int> fd = OpenFile(path, O_RDONLY | O_NOCTTY);
  if (!fd.ok()) return false;
  const bool held = OfdLockHeld(*fd, start, len);
  close(*fd);
  return held;
}

int ProcessId() { return getpid(); }

// ---- mappings ----------------------------------------------------------------------------------

Result<char*> Map(int fd, size_t len, bool writable, const std::string& path, bool huge) {
  constexpr size_t kHuge = kHugePageSize;
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  char* at = nullptr;
  if (huge && len >= kHuge) {
    // Reserve a span one 2 MiB step longer, keep its aligned part, map the file over it.
    void* r = mmap(nullptr, len + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r != MAP_FAILED) {
      char* base = static_cast<char*>(r);
      at = reinterpret_cast<char*>(AlignUp(reinterpret_cast<uintptr_t>(base), kHuge));
      if (at > base) munmap(base, size_t(at - base));
      munmap(at + len, size_t(base + len + kHuge - (at + len)));
    }
  }
  void* p = Sys(Call::kMap, MAP_FAILED, [&] {
    return mmap(at, len, prot, MAP_SHARED | (at ? MAP_FIXED : 0), fd, 0);
  });
  if (p == MAP_FAILED) {
    int e = errno;
    if (at) munmap(at, len);
    return Status::FromErrno(e, "mmap " + std::to_string(len) + " bytes of " + path);
  }
  if (at) (void)madvise(p, len, MADV_HUGEPAGE);  // a kernel without THP maps 4 KiB pages
  return static_cast<char*>(p);
}

void Unmap(char* p, size_t len) {
  if (p) munmap(p, len);
}

void DropMapped(char* base, uint64_t off, uint64_t len) {
  if (len > 0) madvise(base + off, len, MADV_DONTNEED);
}

Status PopulateWrite(char* base, uint64_t off, uint64_t len) {
  const uint64_t start = AlignDown(off, kPageSize);
  const uint64_t end = AlignUp(off + len, kPageSize);
  if (end <= start) return Status::Ok();
  if (Sys(Call::kAdvise, -1,
          [&] { return madvise(base + start, end - start, MADV_POPULATE_WRITE); }) != 0) {
    return Status::FromErrno(errno, "madvise(MADV_POPULATE_WRITE)");
  }
  return Status::Ok();
}

Result<int> BpfObjGet(const std::string& path) {
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.pathname = reinterpret_cast<uintptr_t>(path.c_str());
  int fd = static_cast<int>(
      Sys(Call::kBpf, -1L, [&] { return syscall(SYS_bpf, BPF_OBJ_GET, &attr, sizeof attr); }));
  if (fd < 0) return Status::FromErrno(errno, "BPF_OBJ_GET " + path);
  return fd;
}

Result<BpfMapInfo> GetBpfMapInfo(int fd, const std::string& path) {
  struct bpf_map_info info;
  std::memset(&info, 0, sizeof info);
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.info.bpf_fd = static_cast<uint32_t>(fd);
  attr.info.info_len = sizeof info;
  attr.info.info = reinterpret_cast<uintptr_t>(&info);
  if (Sys(Call::kBpf, -1L,
          [&] { return syscall(SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr, sizeof attr); }) != 0) {
    return Status::FromErrno(errno, "BPF_OBJ_GET_INFO_BY_FD " + path);
  }
  return BpfMapInfo{info.type, info.key_size, info.value_size, info.max_entries, info.map_flags};
}

void FutexWake(void* addr, int n) {
  syscall(SYS_futex, addr, FUTEX_WAKE, n, nullptr, nullptr, 0);
}

bool FutexWait(void* addr, uint32_t expected, int64_t timeout_ns) {
  timespec ts{}, *tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = timeout_ns / 1000000000;
    ts.tv_nsec = timeout_ns % 1000000000;
    tsp = &ts;
  }
  long rc = syscall(SYS_futex, addr, FUTEX_WAIT, expected, tsp, nullptr, 0);
  return !(rc != 0 && errno == ETIMEDOUT);
}

bool FutexWaitAny(const FutexWord* words, size_t n, int64_t timeout_ns) {
  if (n == 1) return FutexWait(words[0].addr, words[0].expected, timeout_ns);
  struct futex_waitv w[kMaxFutexWaits];
  n = std::min(n, kMaxFutexWaits);
  for (size_t i = 0; i < n; i++) {
    w[i] = {};
    w[i].val = words[i].expected;
    w[i].uaddr = reinterpret_cast<uintptr_t>(words[i].addr);
    w[i].flags = FUTEX_32;  // shared: the words live in a MAP_SHARED file mapping
  }
  timespec ts{}, *tsp = nullptr;
  if (timeout_ns >= 0) {  // futex_waitv takes an absolute time
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t t = int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec + timeout_ns;
    ts.tv_sec = t / 1000000000;
    ts.tv_nsec = t % 1000000000;
    tsp = &ts;
  }
  long rc = syscall(SYS_futex_waitv, w, n, 0, tsp, CLOCK_MONOTONIC);
  return !(rc < 0 && errno == ETIMEDOUT);
}

}  // namespace comet::env
