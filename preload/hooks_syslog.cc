// syslog(3). glibc's syslog sends through internal calls, so it is replaced whole while syslog
// is captured: openlog's ident, options and facility and setlogmask's mask are honoured (and
// passed on to the real functions, so that tee and lines Comet cannot take reach the syslog
// socket as they would have), and each message becomes one entry "<PRI>ident[pid]: message".
#include <stdarg.h>
#include <syslog.h>
#include <unistd.h>

#include "capture.h"
#include "real.h"
#include "textbuf.h"

using namespace comet_preload;

namespace {

// What openlog and setlogmask set. Read and written under the syslog sink's capture, which is
// serialised; a torn read between a concurrent openlog and syslog is as glibc's own.
struct LogState {
  const char* ident = nullptr;  // the caller's string, as glibc keeps it
  int option = 0;
  int facility = LOG_USER;
  int mask = 0xff;
};
LogState g_log;

bool SyslogCaptured() { return Active() && CurrentSettings().capture[kSyslog]; }

void RealSyslog(int pri, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  REAL(vsyslog)(pri, fmt, ap);
  va_end(ap);
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
  pri &= LOG_PRIMASK | LOG_FACMASK;
  if (!(LOG_MASK(LOG_PRI(pri)) & g_log.mask)) return;
  if ((pri & LOG_FACMASK) == 0) pri |= g_log.facility;
  const char* ident = g_log.ident ? g_log.ident : program_invocation_short_name;
  TextBuf text;
  text.AppendF("<%d>", pri);
  const size_t ident_at = text.size();
  text.Append(ident);
  if (g_log.option & LOG_PID) text.AppendF("[%d]", static_cast<int>(getpid()));
  text.Append(": ");
  const size_t header = text.size();
  va_list copy;
  va_copy(copy, ap);
  const bool formatted = text.AppendV(fortify_flag, fmt, copy);
  va_end(copy);
  if (!formatted) return;
  text.TrimTrailing('\n');
  const bool taken = CaptureMessage(kSyslog, text.data(), text.size());
  if (!taken || CurrentSettings().tee) RealSyslog(pri, "%s", text.data() + header);
  if (g_log.option & LOG_PERROR) {  // also to stderr, "ident[pid]: message\n"
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

extern "C" {
#pragma GCC visibility push(default)  // the interposed symbols

void openlog(const char* ident, int option, int facility) {
  g_log.ident = ident;
  g_log.option = option;
  if (facility != 0 && (facility & ~LOG_FACMASK) == 0) g_log.facility = facility;
  REAL(openlog)(ident, option, facility);
}

void closelog(void) {
  g_log.ident = nullptr;  // glibc keeps the options and the facility
  REAL(closelog)();
}

int setlogmask(int mask) {
  const int old = g_log.mask;
  if (mask != 0) g_log.mask = mask;
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
