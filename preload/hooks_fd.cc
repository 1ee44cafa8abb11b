// Descriptor-level hooks: the write family and sends on stdout, stderr and the syslog socket;
// the calls that close, replace or connect descriptors (so the per-descriptor classification
// stays right when numbers are reused); and exec, _exit and vfork, which must not lose a
// partial line or share the shim's state between two processes.
#include <alloca.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "capture.h"
#include "real.h"
#include "textbuf.h"

using namespace comet_preload;

namespace {

size_t IovBytes(const struct iovec* iov, int iovcnt) {
  size_t n = 0;
  for (int i = 0; i < iovcnt; i++) n += iov[i].iov_len;
  return n;
}

// A datagram (or stream write) to the syslog socket: captured, then delivered as sent.
void CaptureIovMessage(const struct iovec* iov, int iovcnt) {
  if (iovcnt == 1) {
    (void)CaptureMessage(kSyslog, static_cast<const char*>(iov[0].iov_base), iov[0].iov_len);
    return;
  }
  TextBuf text;
  for (int i = 0; i < iovcnt; i++) {
    if (!text.Append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len)) return;
  }
  (void)CaptureMessage(kSyslog, text.data(), text.size());
}

bool AddressIsSyslog(const struct sockaddr* addr, socklen_t len) {
  if (!addr || len <= offsetof(sockaddr_un, sun_path) || addr->sa_family != AF_UNIX) return false;
  const auto* un = reinterpret_cast<const sockaddr_un*>(addr);
  const size_t max = len - offsetof(sockaddr_un, sun_path);
  return IsSyslogPath(un->sun_path, strnlen(un->sun_path, max));
}

ssize_t WritevSink(int sink, int fd, const struct iovec* iov, int iovcnt,
                   ssize_t (*deliver)(int, const struct iovec*, int)) {
  ErrnoKeeper keep;
  ssize_t r = static_cast<ssize_t>(IovBytes(iov, iovcnt));
  if (CurrentSettings().tee) {
    r = deliver(fd, iov, iovcnt);
    if (r < 0) {
      keep.Set(errno);
      return r;
    }
  }
  CaptureIov(sink, fd, iov, iovcnt, static_cast<size_t>(r));
  return r;
}

ssize_t RealWritev(int fd, const struct iovec* iov, int iovcnt) { return REAL(writev)(fd, iov, iovcnt); }

// The sink of a write made while this thread is already inside the shim. That is a signal
// handler (the engine never writes to stdout or stderr): its lines cannot be captured now and
// are counted as such (the caller delivers them).
void CountNestedWrite(int fd, const struct iovec* iov, int iovcnt) {
  const int sink = iovcnt > 0 ? SinkOfFd(fd) : -1;
  if (sink >= 0 && sink != kSyslog) {
    ErrnoKeeper keep;
    CountPassedThrough(iov, iovcnt);
  }
}

// Captures what a positioned write delivered. pwrite on a pipe or terminal fails with ESPIPE,
// and the program must see that: only a regular file is written by the shim alone.
template <class Deliver>
ssize_t PositionedWrite(int fd, const struct iovec* iov, int iovcnt, Deliver deliver) {
  Guard g;
  const int sink = g.entered() ? SinkOfFd(fd) : -1;
  if (sink < 0 || sink == kSyslog) return deliver();
  if (!CurrentSettings().tee && SinkIsSeekable(sink)) {
    ErrnoKeeper keep;
    CaptureIov(sink, fd, iov, iovcnt, SIZE_MAX);
    return static_cast<ssize_t>(IovBytes(iov, iovcnt));
  }
  const ssize_t r = deliver();
  if (r > 0) {
    ErrnoKeeper keep;
    CaptureIov(sink, fd, iov, iovcnt, static_cast<size_t>(r));
  }
  return r;
}

void ExecFlush() {
  Guard g;
  if (g.entered()) {
    ErrnoKeeper keep;
    FlushPartialLines(true);
  }
}

// execl-style argument lists as an argv array on the stack.
#define COMET_COLLECT_ARGS(argv, arg0, after)                        \
  size_t argc = 1;                                                   \
  {                                                                  \
    va_list count;                                                   \
    va_start(count, arg0);                                           \
    while (va_arg(count, const char*) != nullptr) argc++;            \
    va_end(count);                                                   \
  }                                                                  \
  char** argv = static_cast<char**>(alloca((argc + 1) * sizeof(char*))); \
  va_list ap;                                                        \
  va_start(ap, arg0);                                                \
  argv[0] = const_cast<char*>(arg0);                                 \
  for (size_t i = 1; i <= argc; i++) argv[i] = va_arg(ap, char*);    \
  after;                                                             \
  va_end(ap)

}  // namespace

extern "C" {
#pragma GCC visibility push(default)  // the interposed symbols

ssize_t write(int fd, const void* buf, size_t n) {
  Guard g;
  if (!g.entered()) {
    const struct iovec iov = {const_cast<void*>(buf), n};
    CountNestedWrite(fd, &iov, 1);
    return REAL(write)(fd, buf, n);
  }
  const int sink = SinkOfFd(fd);
  if (sink < 0) return REAL(write)(fd, buf, n);
  if (sink == kSyslog) {
    (void)CaptureMessage(kSyslog, static_cast<const char*>(buf), n);
    return REAL(write)(fd, buf, n);
  }
  return WriteSink(sink, fd, buf, n);
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  Guard g;
  if (!g.entered()) {
    CountNestedWrite(fd, iov, iovcnt);
    return REAL(writev)(fd, iov, iovcnt);
  }
  const int sink = iovcnt > 0 ? SinkOfFd(fd) : -1;
  if (sink < 0) return REAL(writev)(fd, iov, iovcnt);
  if (sink == kSyslog) {
    CaptureIovMessage(iov, iovcnt);
    return REAL(writev)(fd, iov, iovcnt);
  }
  return WritevSink(sink, fd, iov, iovcnt, RealWritev);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  const struct iovec iov = {const_cast<void*>(buf), n};
  return PositionedWrite(fd, &iov, 1, [&] { return REAL(pwrite)(fd, buf, n, off); });
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  const struct iovec iov = {const_cast<void*>(buf), n};
  return PositionedWrite(fd, &iov, 1, [&] { return REAL(pwrite64)(fd, buf, n, off); });
}

ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t off) {
  return PositionedWrite(fd, iov, iovcnt, [&] { return REAL(pwritev)(fd, iov, iovcnt, off); });
}

ssize_t pwritev64(int fd, const struct iovec* iov, int iovcnt, off_t off) {
  return PositionedWrite(fd, iov, iovcnt, [&] { return REAL(pwritev64)(fd, iov, iovcnt, off); });
}

ssize_t pwritev2(int fd, const struct iovec* iov, int iovcnt, off_t off, int flags) {
  if (off == -1) {  // the current file position: a plain writev with flags
    Guard g;
    const int sink = g.entered() && iovcnt > 0 ? SinkOfFd(fd) : -1;
    if (sink >= 0 && sink != kSyslog) {
      return WritevSink(sink, fd, iov, iovcnt, RealWritev);
    }
    return REAL(pwritev2)(fd, iov, iovcnt, off, flags);
  }
  return PositionedWrite(fd, iov, iovcnt,
                         [&] { return REAL(pwritev2)(fd, iov, iovcnt, off, flags); });
}

ssize_t send(int fd, const void* buf, size_t n, int flags) {
  Guard g;
  const int sink = g.entered() ? SinkOfFd(fd) : -1;
  if (sink < 0) return REAL(send)(fd, buf, n, flags);
  if (sink == kSyslog) {
    (void)CaptureMessage(kSyslog, static_cast<const char*>(buf), n);
    return REAL(send)(fd, buf, n, flags);
  }
  if (CurrentSettings().tee) {
    const ssize_t r = REAL(send)(fd, buf, n, flags);
    if (r > 0) {
      ErrnoKeeper keep;
      CaptureBytes(sink, fd, static_cast<const char*>(buf), static_cast<size_t>(r));
    }
    return r;
  }
  return WriteSink(sink, fd, buf, n);
}

ssize_t sendto(int fd, const void* buf, size_t n, int flags, const struct sockaddr* addr,
               socklen_t addrlen) {
  if (!addr) return send(fd, buf, n, flags);
  Guard g;
  if (g.entered() && Active() && CurrentSettings().capture[kSyslog] && AddressIsSyslog(addr, addrlen)) {
    (void)CaptureMessage(kSyslog, static_cast<const char*>(buf), n);
  }
  return REAL(sendto)(fd, buf, n, flags, addr, addrlen);
}

ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  Guard g;
  if (!g.entered() || !msg) return REAL(sendmsg)(fd, msg, flags);
  const int iovcnt = static_cast<int>(msg->msg_iovlen);
  if (msg->msg_name) {
    if (Active() && CurrentSettings().capture[kSyslog] &&
        AddressIsSyslog(static_cast<const sockaddr*>(msg->msg_name), msg->msg_namelen)) {
      CaptureIovMessage(msg->msg_iov, iovcnt);
    }
    return REAL(sendmsg)(fd, msg, flags);
  }
  const int sink = iovcnt > 0 ? SinkOfFd(fd) : -1;
  if (sink < 0) return REAL(sendmsg)(fd, msg, flags);
  if (sink == kSyslog) {
    CaptureIovMessage(msg->msg_iov, iovcnt);
    return REAL(sendmsg)(fd, msg, flags);
  }
  if (CurrentSettings().tee || msg->msg_controllen > 0) {  // descriptors passed: deliver
    const ssize_t r = REAL(sendmsg)(fd, msg, flags);
    if (r > 0) {
      ErrnoKeeper keep;
      CaptureIov(sink, fd, msg->msg_iov, iovcnt, static_cast<size_t>(r));
    }
    return r;
  }
  ErrnoKeeper keep;
  CaptureIov(sink, fd, msg->msg_iov, iovcnt, SIZE_MAX);
  return static_cast<ssize_t>(IovBytes(msg->msg_iov, iovcnt));
}

int connect(int fd, const struct sockaddr* addr, socklen_t len) {
  const int r = REAL(connect)(fd, addr, len);
  Guard g;
  if (g.entered() && Active()) {
    ErrnoKeeper keep;
    ForgetFd(fd);
    if (r == 0 && AddressIsSyslog(addr, len)) MarkSyslogFd(fd);
  }
  return r;
}

int close(int fd) {
  ForgetFd(fd);
  const int r = REAL(close)(fd);
  ForgetFd(fd);
  return r;
}

int close_range(unsigned lo, unsigned hi, int flags) {
  if (!REAL(close_range)) {
    errno = ENOSYS;
    return -1;
  }
  const int r = REAL(close_range)(lo, hi, flags);
  ForgetFds(lo, hi);
  return r;
}

void closefrom(int lo) {
  if (REAL(closefrom)) REAL(closefrom)(lo);
  if (lo >= 0) ForgetFds(static_cast<unsigned>(lo), ~0u);
}

int dup2(int from, int to) {
  const int r = REAL(dup2)(from, to);
  ForgetFd(to);
  return r;
}

int dup3(int from, int to, int flags) {
  const int r = REAL(dup3)(from, to, flags);
  ForgetFd(to);
  return r;
}

int fclose(FILE* fp) {
  const int fd = fp ? fp->_fileno : -1;
  const int r = REAL(fclose)(fp);
  ForgetFd(fd);
  return r;
}

int pclose(FILE* fp) {
  const int fd = fp ? fp->_fileno : -1;
  const int r = REAL(pclose)(fp);
  ForgetFd(fd);
  return r;
}

FILE* freopen(const char* path, const char* mode, FILE* fp) {
  ForgetFd(fp ? fp->_fileno : -1);
  FILE* r = REAL(freopen)(path, mode, fp);
  if (r) ForgetFd(r->_fileno);
  return r;
}

FILE* freopen64(const char* path, const char* mode, FILE* fp) {
  ForgetFd(fp ? fp->_fileno : -1);
  FILE* r = REAL(freopen64)(path, mode, fp);
  if (r) ForgetFd(r->_fileno);
  return r;
}

// vfork's child would share the shim's buffers and shards with its parent: a real fork keeps
// them apart (a vfork child may only exec or _exit, which a forked child does just as well).
pid_t vfork(void) { return fork(); }

int execve(const char* path, char* const argv[], char* const envp[]) {
  ExecFlush();
  return REAL(execve)(path, argv, envp);
}

int execv(const char* path, char* const argv[]) {
  ExecFlush();
  return REAL(execv)(path, argv);
}

int execvp(const char* file, char* const argv[]) {
  ExecFlush();
  return REAL(execvp)(file, argv);
}

int execvpe(const char* file, char* const argv[], char* const envp[]) {
  ExecFlush();
  return REAL(execvpe)(file, argv, envp);
}

int fexecve(int fd, char* const argv[], char* const envp[]) {
  ExecFlush();
  return REAL(fexecve)(fd, argv, envp);
}

int execl(const char* path, const char* arg0, ...) {
  COMET_COLLECT_ARGS(argv, arg0, (void)0);
  return execv(path, argv);
}

int execlp(const char* file, const char* arg0, ...) {
  COMET_COLLECT_ARGS(argv, arg0, (void)0);
  return execvp(file, argv);
}

int execle(const char* path, const char* arg0, ...) {
  char* const* envp = nullptr;
  COMET_COLLECT_ARGS(argv, arg0, envp = va_arg(ap, char* const*));
  return execve(path, argv, envp);
}

void _exit(int status) {
  {
    Guard g;
    if (g.entered()) FlushPartialLines(false);
  }
  REAL(_exit)(status);
  __builtin_unreachable();
}

void _Exit(int status) {
  {
    Guard g;
    if (g.entered()) FlushPartialLines(false);
  }
  REAL(_Exit)(status);
  __builtin_unreachable();
}

#pragma GCC visibility pop
}  // extern "C"
