// The capture core: which descriptors are the original stdout, stderr and the syslog socket,
// the per-stream line buffers, and appending lines to the process's own shards.
//
// Thread safety: every function may be called from any thread. Hooks call them only inside a
// Guard (below); a call that finds the thread already inside the shim (a signal handler that
// writes, or the engine's own system calls) must go straight to the real function.
#pragma once

#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstddef>
#include <string_view>

#include "settings.h"

namespace comet_preload {

// Re-entrancy guard in initial-exec TLS (no allocation, no lock, safe in signal handlers).
extern __thread bool t_inside __attribute__((tls_model("initial-exec")));

class Guard {
 public:
  Guard() : entered_(!t_inside) { t_inside = true; }
  ~Guard() {
    if (entered_) t_inside = false;
  }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
  // False when the thread was already inside the shim: pass the call through untouched.
  bool entered() const { return entered_; }

 private:
  bool entered_;
};

// Keeps the caller's errno across the shim's own work.
class ErrnoKeeper {
 public:
  ErrnoKeeper() : saved_(errno) {}
  ~ErrnoKeeper() { errno = saved_; }
  void Set(int e) { saved_ = e; }

 private:
  int saved_;
};

// True once the constructor has opened the data directory; false when inert.
bool Active();
const Settings& CurrentSettings();

// The sink a descriptor writes to, or -1 when it is not captured. Compares the open file's
// identity (device, inode, type) with the original stdout and stderr, and a socket's peer with
// the syslog socket; the answer is cached per descriptor until ForgetFd.
int SinkOfFd(int fd);
// The stdout or stderr sink a stdio stream writes to, or -1.
inline int StdioSink(FILE* fp) {
  const int sink = fp ? SinkOfFd(fp->_fileno) : -1;
  return sink == kSyslog ? -1 : sink;
}
// The descriptor was closed, replaced or reconnected: classify it again on its next write.
void ForgetFd(int fd);
void ForgetFds(unsigned lo, unsigned hi);
// A socket connected (or sending) to `path`: is it the syslog socket?
bool IsSyslogPath(const char* path, size_t len);
void MarkSyslogFd(int fd);
// True when stdout's or stderr's original file is a regular file (pwrite works on it).
bool SinkIsSeekable(int sink);

// Bytes written to fd, a stdout or stderr sink: split into lines (one entry each, the newline
// dropped; longer than COMET_MAX_LINE split), partial lines kept until their newline. A line
// Comet cannot take goes to fd (unless COMET_TEE already wrote it) and is counted.
void CaptureBytes(int sink, int fd, const char* data, size_t n);
// write(2) to a stdout or stderr sink: CaptureBytes, returning n (with COMET_TEE, after the
// real write, whatever it returned, with its errno).
ssize_t WriteSink(int sink, int fd, const void* buf, size_t n);
void CaptureIov(int sink, int fd, const struct iovec* iov, int iovcnt, size_t limit);
// Bytes written to stdout or stderr by a signal handler that interrupted the shim on the same
// thread: a sink's buffer may be mid-update, so they go to their destination as without the
// shim, and their lines (a partial one counting as one) are counted as not captured.
// Async-signal-safe.
void CountPassedThrough(const struct iovec* iov, int iovcnt);
// One whole message (a syslog line or a datagram): one entry, trailing newlines and NULs
// dropped. False if Comet could not take it (counted; the caller delivers it).
bool CaptureMessage(int sink, const char* data, size_t n);
// Appends the partial lines of every sink (at exit, _exit and exec). With `wait` false, a sink
// whose lock is busy is skipped (async-signal contexts).
void FlushPartialLines(bool wait);

// Lines that could not be captured and went (or stay) at their original destination.
uint64_t LostLines();

}  // namespace comet_preload
