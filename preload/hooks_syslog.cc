// syslog(3). glibc's syslog sends through internal calls, so it is replaced whole while syslog
// is captured: openlog's ident, options and facility and setlogmask's mask are honoured (and
// passed on to the real functions, so that tee and lines Comet cannot take reach the syslog
// socket as they would have), and each message becomes one entry "<PRI>ident[pid]: message".
#include <pthread.h>
#include <stdarg.h>
#include <syslog.h>
#include <unistd.h>

#include <string>

#include "capture.h"
#include "lifecycle.h"
#include "real.h"
#include "textbuf.h"

using namespace comet_preload;

namespace {

// What openlog and setlogmask set, and the "ident[pid]: " every entry starts with, made once per
// openlog (and again in a forked child) rather than per message. `mu` guards all of it while
// the shim captures (glibc's syslog takes a lock per message too), and fork holds it
// (LockSyslogForFork) so that a child never inherits it locked or half-updated.
struct LogState {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  const char* ident = nullptr;  // the caller's string, as glibc keeps it
  int option = 0;
  int facility = LOG_USER;
  int mask = 0xff;
  std::string prefix;           // "ident[pid]: " (LOG_PID) or "ident: "; empty: make it again
};
LogState g_log;

// Taken only while capturing: an inert shim registers no fork handlers, and reads nothing back.
class LogLock {
 public:
  LogLock() : held_(Active()) {
    if (held_) pthread_mutex_lock(&g_log.mu);
  }
  ~LogLock() {
    if (held_) pthread_mutex_unlock(&g_log.mu);
  }
  LogLock(const LogLock&) = delete;
  LogLock& operator=(const LogLock&) = delete;

 private:
  bool held_;
};

// REQUIRES: g_log.mu held.
const std::string& Prefix() {
  if (g_log.prefix.empty()) {
    g_log.prefix = g_log.ident ? g_log.ident : program_invocation_short_name;
    if (g_log.option & LOG_PID) g_log.prefix += "[" + std::to_string(getpid()) + "]";
    g_log.prefix += ": ";
  }
  return g_log.prefix;
}

bool SyslogCaptured() { return Active() && CurrentSettings().capture[kSyslog]; }

void RealSyslog(int pri, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  REAL(vsyslog)(pri, fmt, ap);
  va_end(ap);
}

// "<PRI>ident[pid]: " for a message of priority pri, or false if setlogmask masks it.
bool AppendHeader(int* pri, int* option, TextBuf* text, size_t* ident_at) {
  LogLock lock;
  *pri &= LOG_PRIMASK | LOG_FACMASK;
  if (!(LOG_MASK(LOG_PRI(*pri)) & g_log.mask)) return false;
  if ((*pri & LOG_FACMASK) == 0) *pri |= g_log.facility;
  *option = g_log.option;
  text->Append("<", 1);
  text->AppendDigits<10>(static_cast<unsigned>(*pri));
  text->Append(">", 1);
  *ident_at = text->size();
  const std::string& prefix = Prefix();
  return text->Append(prefix.data(), prefix.size());
}

void Syslog(int pri, int fortify_flag, const char* fmt, va_list ap) {
  Guard g;
  if (!g.entered() || !SyslogCaptured()) {
    if (fortify_flag < 0) return REAL(vsyslog)(pri, fmt, ap);
    TextBuf text;  // the real __vsyslog_chk is not needed: format here, log the text
    if (text.AppendV(fortify_flag, fmt, ap)) RealSyslog(pri, "%s", text.data());
    return;
  }
  ErrnoKeeper keep;
  TextBuf text;
  int option = 0;
  size_t ident_at = 0;
  if (!AppendHeader(&pri, &option, &text, &ident_at)) return;
  const size_t header = text.size();
  va_list copy;
  va_copy(copy, ap);
  const bool formatted = text.AppendV(fortify_flag, fmt, copy);
  va_end(copy);
  if (!formatted) return;
  text.TrimTrailing('\n');
  const bool taken = CaptureMessage(kSyslog, text.data(), text.size());
  if (!taken || CurrentSettings().tee) RealSyslog(pri, "%s", text.data() + header);
  if (option & LOG_PERROR) {  // also to stderr, "ident[pid]: message\n"
    text.Append("\n");
    const int sink = SinkOfFd(2);
    if (sink == kStdout || sink == kStderr) {
      (void)WriteSink(sink, 2, text.data() + ident_at, text.size() - ident_at);
    } else {
      (void)REAL(write)(2, text.data() + ident_at, text.size() - ident_at);
    }
  }
}

}  // namespace

namespace comet_preload {

void LockSyslogForFork() { pthread_mutex_lock(&g_log.mu); }

void UnlockSyslogAfterFork(bool child) {
  if (child) g_log.prefix.clear();  // a new pid
  pthread_mutex_unlock(&g_log.mu);
}

}  // namespace comet_preload

extern "C" {
#pragma GCC visibility push(default)  // the interposed symbols

void openlog(const char* ident, int option, int facility) {
  {
    LogLock lock;
    g_log.ident = ident;
    g_log.option = option;
    if (facility != 0 && (facility & ~LOG_FACMASK) == 0) g_log.facility = facility;
    g_log.prefix.clear();
  }
  REAL(openlog)(ident, option, facility);
}

void closelog(void) {
  {
    LogLock lock;
    g_log.ident = nullptr;  // glibc keeps the options and the facility
    g_log.prefix.clear();
  }
  REAL(closelog)();
}

int setlogmask(int mask) {
  int old;
  {
    LogLock lock;
    old = g_log.mask;
    if (mask != 0) g_log.mask = mask;
  }
  (void)REAL(setlogmask)(mask);
  return old;
}

void vsyslog(int pri, const char* fmt, va_list ap) { Syslog(pri, -1, fmt, ap); }
void __vsyslog_chk(int pri, int flag, const char* fmt, va_list ap) { Syslog(pri, flag, fmt, ap); }

void syslog(int pri, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  Syslog(pri, -1, fmt, ap);
  va_end(ap);
}

void __syslog_chk(int pri, int flag, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  Syslog(pri, flag, fmt, ap);
  va_end(ap);
}

#pragma GCC visibility pop
}  // extern "C"
