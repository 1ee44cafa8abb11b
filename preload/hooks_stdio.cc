// stdio hooks. glibc's stdio writes through its internal write, which no LD_PRELOAD can
// interpose, so every output function is hooked at its entry: text for a stream whose
// descriptor is the original stdout or stderr is captured here and never enters the stream's
// buffer. That buffer stays unallocated, so the inline putc_unlocked of programs built with
// optimisation always falls through to __overflow, which is hooked too. With COMET_TEE=1 the
// real function also runs, buffering as it would without the shim (so that the original output
// is byte-identical); inline putc_unlocked into a fully buffered stream's buffer is then
// delivered but not captured.
#include <stdarg.h>
#include <stdio.h>

#include <climits>
#include <cstring>

#include "capture.h"
#include "real.h"
#include "textbuf.h"

using namespace comet_preload;

namespace {

// Text a stdio call writes to a captured stream. False (errno set) if the tee'd real write
// failed, as the real call would have.
bool StreamText(int sink, FILE* fp, const struct iovec* iov, int iovcnt, bool lock) {
  ErrnoKeeper keep;
  if (lock) flockfile(fp);
  bool ok = true;
  size_t delivered = SIZE_MAX;
  if (CurrentSettings().tee) {
    delivered = 0;
    for (int i = 0; i < iovcnt && ok; i++) {
      const size_t n = REAL(fwrite_unlocked)(iov[i].iov_base, 1, iov[i].iov_len, fp);
      delivered += n;
      if (n < iov[i].iov_len) {
        ok = false;
        keep.Set(errno);
      }
    }
  }
  CaptureIov(sink, fp->_fileno, iov, iovcnt, delivered);
  if (lock) funlockfile(fp);
  return ok;
}

bool StreamBytes(int sink, FILE* fp, const void* data, size_t n, bool lock) {
  const struct iovec iov = {const_cast<void*>(data), n};
  return StreamText(sink, fp, &iov, 1, lock);
}

int StreamChar(FILE* fp, int c, bool lock, int (*real_fn)(int, FILE*)) {
  Guard g;
  const int sink = g.entered() ? StdioSink(fp) : -1;
  if (sink < 0) return real_fn(c, fp);
  const char ch = static_cast<char>(c);
  return StreamBytes(sink, fp, &ch, 1, lock) ? static_cast<unsigned char>(ch) : EOF;
}

size_t StreamWrite(const void* p, size_t size, size_t nmemb, FILE* fp, bool lock,
                   size_t (*real_fn)(const void*, size_t, size_t, FILE*)) {
  Guard g;
  const int sink = g.entered() ? StdioSink(fp) : -1;
  size_t bytes;
  if (sink < 0 || __builtin_mul_overflow(size, nmemb, &bytes)) return real_fn(p, size, nmemb, fp);
  if (bytes == 0) return 0;
  return StreamBytes(sink, fp, p, bytes, lock) ? nmemb : 0;
}

int StreamPuts(const char* s, FILE* fp, bool lock, int (*real_fn)(const char*, FILE*)) {
  Guard g;
  const int sink = g.entered() ? StdioSink(fp) : -1;
  if (sink < 0) return real_fn(s, fp);
  return StreamBytes(sink, fp, s, std::strlen(s), lock) ? 1 : EOF;
}

// printf family on a stream; fortify_flag < 0 for the plain entry points.
int StreamPrintf(FILE* fp, int fortify_flag, const char* fmt, va_list ap) {
  Guard g;
  const int sink = g.entered() ? StdioSink(fp) : -1;
  if (sink < 0) {
    return fortify_flag < 0 ? REAL(vfprintf)(fp, fmt, ap)
                            : REAL(__vfprintf_chk)(fp, fortify_flag, fmt, ap);
  }
  TextBuf text;
  if (!text.AppendV(fortify_flag, fmt, ap)) return -1;
  if (text.size() > INT_MAX) {
    errno = EOVERFLOW;
    return -1;
  }
  return StreamBytes(sink, fp, text.data(), text.size(), true) ? static_cast<int>(text.size()) : -1;
}

// printf family on a descriptor.
int FdPrintf(int fd, int fortify_flag, const char* fmt, va_list ap) {
  Guard g;
  const int sink = g.entered() ? SinkOfFd(fd) : -1;
  if (sink < 0 || sink == kSyslog) {
    return fortify_flag < 0 ? REAL(vdprintf)(fd, fmt, ap)
                            : REAL(__vdprintf_chk)(fd, fortify_flag, fmt, ap);
  }
  TextBuf text;
  if (!text.AppendV(fortify_flag, fmt, ap)) return -1;
  const ssize_t r = WriteSink(sink, fd, text.data(), text.size());
  return r < 0 ? -1 : static_cast<int>(r);
}

}  // namespace

extern "C" {
#pragma GCC visibility push(default)  // the interposed symbols

size_t fwrite(const void* p, size_t size, size_t nmemb, FILE* fp) {
  return StreamWrite(p, size, nmemb, fp, true, REAL(fwrite));
}

size_t fwrite_unlocked(const void* p, size_t size, size_t nmemb, FILE* fp) {
  return StreamWrite(p, size, nmemb, fp, false, REAL(fwrite_unlocked));
}

int fputs(const char* s, FILE* fp) { return StreamPuts(s, fp, true, REAL(fputs)); }
int fputs_unlocked(const char* s, FILE* fp) { return StreamPuts(s, fp, false, REAL(fputs_unlocked)); }

int puts(const char* s) {
  Guard g;
  const int sink = g.entered() ? StdioSink(stdout) : -1;
  if (sink < 0) return REAL(puts)(s);
  const size_t n = std::strlen(s);
  const struct iovec iov[2] = {{const_cast<char*>(s), n}, {const_cast<char*>("\n"), 1}};
  if (!StreamText(sink, stdout, iov, 2, true)) return EOF;
  return n + 1 > INT_MAX ? INT_MAX : static_cast<int>(n + 1);
}

int fputc(int c, FILE* fp) { return StreamChar(fp, c, true, REAL(fputc)); }
int putc(int c, FILE* fp) { return StreamChar(fp, c, true, REAL(putc)); }
int fputc_unlocked(int c, FILE* fp) { return StreamChar(fp, c, false, REAL(fputc_unlocked)); }
int putc_unlocked(int c, FILE* fp) { return StreamChar(fp, c, false, REAL(putc_unlocked)); }
int putchar(int c) { return StreamChar(stdout, c, true, REAL(putc)); }
int putchar_unlocked(int c) { return StreamChar(stdout, c, false, REAL(putc_unlocked)); }

// Where inline putc_unlocked lands when the stream's buffer has no room (always, for captured
// streams: they never get a buffer). EOF asks for a flush: nothing is buffered.
int __overflow(FILE* fp, int ch) {
  Guard g;
  const int sink = g.entered() ? StdioSink(fp) : -1;
  if (sink < 0 || (ch == EOF && CurrentSettings().tee)) return REAL(__overflow)(fp, ch);
  if (ch == EOF) return 0;
  const char c = static_cast<char>(ch);
  if (CurrentSettings().tee) {
    ErrnoKeeper keep;
    const int r = REAL(__overflow)(fp, ch);
    if (r == EOF) {
      keep.Set(errno);
      return r;
    }
    CaptureBytes(sink, fp->_fileno, &c, 1);
    return r;
  }
  ErrnoKeeper keep;
  CaptureBytes(sink, fp->_fileno, &c, 1);
  return static_cast<unsigned char>(c);
}

int vfprintf(FILE* fp, const char* fmt, va_list ap) { return StreamPrintf(fp, -1, fmt, ap); }
int vprintf(const char* fmt, va_list ap) { return StreamPrintf(stdout, -1, fmt, ap); }
int __vfprintf_chk(FILE* fp, int flag, const char* fmt, va_list ap) {
  return StreamPrintf(fp, flag, fmt, ap);
}
int __vprintf_chk(int flag, const char* fmt, va_list ap) { return StreamPrintf(stdout, flag, fmt, ap); }

int fprintf(FILE* fp, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int r = StreamPrintf(fp, -1, fmt, ap);
  va_end(ap);
  return r;
}

int printf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int r = StreamPrintf(stdout, -1, fmt, ap);
  va_end(ap);
  return r;
}

int __fprintf_chk(FILE* fp, int flag, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int r = StreamPrintf(fp, flag, fmt, ap);
  va_end(ap);
  return r;
}

int __printf_chk(int flag, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int r = StreamPrintf(stdout, flag, fmt, ap);
  va_end(ap);
  return r;
}

int vdprintf(int fd, const char* fmt, va_list ap) { return FdPrintf(fd, -1, fmt, ap); }
int __vdprintf_chk(int fd, int flag, const char* fmt, va_list ap) { return FdPrintf(fd, flag, fmt, ap); }

int dprintf(int fd, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int r = FdPrintf(fd, -1, fmt, ap);
  va_end(ap);
  return r;
}

int __dprintf_chk(int fd, int flag, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int r = FdPrintf(fd, flag, fmt, ap);
  va_end(ap);
  return r;
}

#pragma GCC visibility pop
}  // extern "C"
