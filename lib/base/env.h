// The narrow OS layer: every system call the engine and the control region make goes through
// here, so errno becomes a Status (naming the path) in one place, and a test can make any call of
// a kind fail (see "Fault injection" at the end).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "comet/status.h"

namespace comet::env {

int64_t NowNs();          // CLOCK_REALTIME, nanoseconds since the Unix epoch
int64_t MonotonicNs();    // CLOCK_MONOTONIC

std::string Join(const std::string& a, const std::string& b);

// The page size mappings are managed in (madvise ranges, pre-faulting, write-back steps); 2 MiB
// for huge mappings.
inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kHugePageSize = uint64_t{2} << 20;
inline constexpr uint64_t AlignDown(uint64_t x, uint64_t page) { return x & ~(page - 1); }
inline constexpr uint64_t AlignUp(uint64_t x, uint64_t page) {
  return AlignDown(x + page - 1, page);
}

Status MkdirAll(const std::string& path);
Result<bool> Exists(const std::string& path);
// Names in a directory (no "." or ".."); NOT_FOUND if it does not exist.
Result<std::vector<std::string>> ListDir(const std::string& path);
Status Rename(const std::string& from, const std::string& to);
// Renames the directory `from` to `to` unless `to` already exists (as a directory that is not
// empty): false then, and `from` stays.
Result<bool> RenameDirIfAbsent(const std::string& from, const std::string& to);
Status Unlink(const std::string& path);
// Removes an empty directory; a missing one is not an error.
Status RemoveDir(const std::string& path);
Status FsyncDir(const std::string& path);

Result<int> OpenFile(const std::string& path, int flags, mode_t mode = 0644);
void Close(int fd);
Result<uint64_t> FileSize(int fd, const std::string& path);
// Which file a path names (stat): equal ids, the same file.
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileId&) const = default;
};
Result<FileId> GetFileId(const std::string& path);
// Bytes an unprivileged process may still allocate on the file system holding `path` (statvfs).
Result<uint64_t> FreeBytes(const std::string& path);
Status Preallocate(int fd, uint64_t bytes, const std::string& path);  // fallocate, no SIGBUS later
Status Truncate(int fd, uint64_t bytes, const std::string& path);
Status DataSync(int fd, const std::string& path);
// Writes back [0, len) of a MAP_SHARED mapping and waits (msync MS_SYNC). Unlike fdatasync it
// leaves the pre-faulted pages beyond `len` alone, so the writer does not fault on them again.
Status SyncMapped(char* base, uint64_t len, const std::string& path);
// Starts the write-back of the file's dirty pages and drops its clean, unmapped ones from the
// page cache (posix_fadvise DONTNEED); best effort.
void DropCached(int fd);
Status PreadFull(int fd, void* buf, size_t n, uint64_t off, const std::string& path, size_t* got);
// Writes all n bytes at offset off (short writes resumed, EINTR retried).
Status PwriteFull(int fd, const void* data, size_t n, uint64_t off, const std::string& path);
// Replaces the file: writes path.tmp, fdatasyncs it when durable, renames it over path.
Status WriteFile(const std::string& path, const void* data, size_t n, bool durable);
// The file's bytes, at most max_bytes of them (a damaged or foreign file must not make a reader
// allocate without bound).
Result<std::string> ReadFile(const std::string& path, size_t max_bytes = SIZE_MAX);

// OFD locks (fcntl F_OFD_*) on [start, start+len) of a file, len 0 meaning to its end. They belong
// to the open file description, so the kernel drops them when it is closed, the holder's death
// included: a held lock means a live holder, whatever any other byte says.
enum class LockType { kShared, kExclusive, kUnlock };
// Takes, changes or releases the lock. With wait, blocks until granted; without, NOT_OWNER when
// another description holds a conflicting lock. EINTR is retried.
Status OfdLock(int fd, LockType type, uint64_t start, uint64_t len, bool wait,
               const std::string& path);
// Whether another open file description holds a lock of either kind overlapping the range (the
// question asks about an exclusive lock, which conflicts with both kinds; Linux answers it on a
// read-only descriptor). False when the kernel cannot say.
bool OfdLockHeld(int fd, uint64_t start, uint64_t len);
// The same for the file at path, opened read-only for the question; false if it does not exist.
bool OfdLockHeldAt(const std::string& path, uint64_t start, uint64_t len);

int ProcessId();  // getpid()

// MAP_SHARED mapping of [0, len) of fd. With `huge`, placed on a 2 MiB boundary and advised
// MADV_HUGEPAGE, so that the kernel may map 2 MiB folios of the file with one entry each.
Result<char*> Map(int fd, size_t len, bool writable, const std::string& path, bool huge = false);
void Unmap(char* p, size_t len);
// Drops the page-table entries of [off, off+len) of a shared file mapping (MADV_DONTNEED); the
// data stays in the page cache and is read back on the next access.
void DropMapped(char* base, uint64_t off, uint64_t len);
// Faults in pages [off, off+len) for writing without touching them (MADV_POPULATE_WRITE).
Status PopulateWrite(char* base, uint64_t off, uint64_t len);

// A pinned BPF object (bpf(2) BPF_OBJ_GET, read-write); its descriptor.
Result<int> BpfObjGet(const std::string& path);
// What the kernel says of the BPF map behind fd (BPF_OBJ_GET_INFO_BY_FD).
struct BpfMapInfo {
  uint32_t type = 0, key_size = 0, value_size = 0, max_entries = 0, flags = 0;
};
Result<BpfMapInfo> GetBpfMapInfo(int fd, const std::string& path);

// Futex on a 32-bit word that may live in shared memory.
void FutexWake(void* addr, int n);
// Waits while *addr == expected, at most timeout_ns (<0: forever). Returns false on timeout.
bool FutexWait(void* addr, uint32_t expected, int64_t timeout_ns);
// Waits until any of up to kMaxFutexWaits words differs from its expected value or is woken,
// at most timeout_ns (<0: forever): futex_waitv(2). Returns false on timeout.
inline constexpr size_t kMaxFutexWaits = 128;
struct FutexWord {
  void* addr;
  uint32_t expected;
};
bool FutexWaitAny(const FutexWord* words, size_t n, int64_t timeout_ns);

// ---- Fault injection (tests) -----------------------------------------------------------------
// Every call above that can fail is of one kind below (the futex, close and unmap calls, which
// cannot fail in a way the engine acts on, are not). Unarmed, the seam costs one predictable
// branch on a global per call. Armed, it counts the calls of each kind and fails those a Fault
// names, as the kernel would: errno set, -1 returned, so retry loops see an injected EINTR as a
// real one.
#define COMET_ENV_CALLS(X)                                                                   \
  X(kOpen, "open") X(kRead, "read") X(kWrite, "write") X(kTruncate, "ftruncate")           \
  X(kAllocate, "fallocate") X(kDataSync, "fdatasync") X(kFsync, "fsync") X(kMsync, "msync") \
  X(kRename, "rename") X(kUnlink, "unlink") X(kMkdir, "mkdir") X(kRmdir, "rmdir")          \
  X(kStat, "stat") X(kListDir, "opendir") X(kMap, "mmap") X(kAdvise, "madvise")            \
  X(kLock, "fcntl F_OFD_SETLK") X(kLockProbe, "fcntl F_OFD_GETLK") X(kBpf, "bpf")

enum class Call : uint8_t {
#define COMET_ENV_CALL_ENUM(name, text) name,
  COMET_ENV_CALLS(COMET_ENV_CALL_ENUM)
#undef COMET_ENV_CALL_ENUM
  kCount
};
std::string_view CallName(Call c);

struct Fault {
  Call call;
  uint64_t nth = 1;    // the nth call of the kind from the injection on fails (1: the next)
  uint64_t times = 1;  // and so do this many calls in a row from there (0: every one after)
  int err = 0;         // the errno it fails with, or 0 for a short write (kWrite only):
  size_t short_bytes = 0;  // the call writes at most this many bytes (>= 1), and succeeds
};
// Arms the seam (counting starts if it was not armed) and adds the fault.
void InjectFault(const Fault& f);
// Arms the seam with counts from zero and no faults.
void CountCalls();
// Calls of the kind made since the seam was armed.
uint64_t CallCount(Call c);
// Disarms the seam: no faults, no counting.
void ClearFaults();

}  // namespace comet::env
