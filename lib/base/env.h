// The narrow OS layer: every system call the engine makes goes through here, so errno becomes a
// Status (naming the path) in one place and faults can be injected in tests.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "comet/status.h"

namespace comet::env {

int64_t NowNs();          // CLOCK_REALTIME, nanoseconds since the Unix epoch
int64_t MonotonicNs();    // CLOCK_MONOTONIC

std::string Join(const std::string& a, const std::string& b);

Status MkdirAll(const std::string& path);
Result<bool> Exists(const std::string& path);
// Names in a directory (no "." or ".."); NOT_FOUND if it does not exist.
Result<std::vector<std::string>> ListDir(const std::string& path);
Status Rename(const std::string& from, const std::string& to);
Status Unlink(const std::string& path);
Status FsyncDir(const std::string& path);

Result<int> OpenFile(const std::string& path, int flags, mode_t mode = 0644);
void Close(int fd);
Result<uint64_t> FileSize(int fd, const std::string& path);
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
Status WriteFile(const std::string& path, const void* data, size_t n, bool durable);
Result<std::string> ReadFile(const std::string& path);

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

}  // namespace comet::env
