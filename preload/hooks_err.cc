// perror and the err/warn/error families. glibc prints them through its internal stdio (perror
// even through a private stream on a dup of fd 2), so each is formatted here, with glibc's
// layout, and captured as one piece: "prog: message: strerror\n".
#include <err.h>
#include <errno.h>
#include <error.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "real.h"
#include "textbuf.h"

using namespace comet_preload;

namespace {

// Writes finished text to stderr: captured when stderr is, else through the real stream.
void ToStderr(int sink, const TextBuf& text) {
  if (sink >= 0) {
    CaptureBytes(sink, stderr->_fileno, text.data(), text.size());
    if (!CurrentSettings().tee) return;
  }
  flockfile(stderr);
  (void)REAL(fwrite_unlocked)(text.data(), 1, text.size(), stderr);
  funlockfile(stderr);
  fflush(stderr);
}

// "prog: [message][: strerror(errnum)]\n" as warn/warnx print it (errnum < 0: no error text).
void Warn(int errnum, const char* fmt, va_list ap) {
  const int sink = StdioSink(stderr);
  TextBuf text;
  text.AppendF("%s: ", program_invocation_short_name);
  if (fmt) {
    text.AppendV(-1, fmt, ap);
    if (errnum >= 0) text.Append(": ");
  }
  if (errnum >= 0) text.Append(strerror(errnum));
  text.Append("\n");
  ToStderr(sink, text);
}

// error() and error_at_line(): stdout flushed first, then the message, counted.
// sink: stderr's, or -1 to write through the real stream.
void Error(int sink, int status, int errnum, bool at_line, const char* file, unsigned line,
           const char* fmt, va_list ap) {
  fflush(stdout);
  TextBuf text;
  if (error_print_progname) {
    error_print_progname();
  } else {
    text.AppendF(at_line ? "%s:" : "%s: ", program_invocation_name);
  }
  if (at_line) {
    if (file) {
      text.AppendF("%s:%u: ", file, line);
    } else {
      text.Append(" ");
    }
  }
  text.AppendV(-1, fmt, ap);
  if (errnum) text.AppendF(": %s", strerror(errnum));
  text.Append("\n");
  ++error_message_count;
  ToStderr(sink, text);
  if (status) exit(status);
}

}  // namespace

extern "C" {
#pragma GCC visibility push(default)  // the interposed symbols

void perror(const char* s) {
  Guard g;
  const int sink = g.entered() ? StdioSink(stderr) : -1;
  if (sink < 0) return REAL(perror)(s);
  ErrnoKeeper keep;
  const int e = errno;
  TextBuf text;
  if (s && *s) text.AppendF("%s: ", s);
  text.AppendF("%s\n", strerror(e));
  ToStderr(sink, text);
}

void vwarn(const char* fmt, va_list ap) {
  Guard g;
  if (!g.entered() || StdioSink(stderr) < 0) return REAL(vwarn)(fmt, ap);
  ErrnoKeeper keep;
  Warn(errno, fmt, ap);
}

void vwarnx(const char* fmt, va_list ap) {
  Guard g;
  if (!g.entered() || StdioSink(stderr) < 0) return REAL(vwarnx)(fmt, ap);
  ErrnoKeeper keep;
  Warn(-1, fmt, ap);
}

void warn(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vwarn(fmt, ap);
  va_end(ap);
}

void warnx(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vwarnx(fmt, ap);
  va_end(ap);
}

void verr(int status, const char* fmt, va_list ap) {
  vwarn(fmt, ap);
  exit(status);
}

void verrx(int status, const char* fmt, va_list ap) {
  vwarnx(fmt, ap);
  exit(status);
}

void err(int status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verr(status, fmt, ap);
}

void errx(int status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verrx(status, fmt, ap);
}

// glibc has no va_list form of error(), so the shim formats it whether or not stderr is
// captured (uncaptured, the text goes through the real stderr stream, as glibc would write it).
void error(int status, int errnum, const char* fmt, ...) {
  Guard g;
  va_list ap;
  va_start(ap, fmt);
  {
    ErrnoKeeper keep;
    Error(g.entered() ? StdioSink(stderr) : -1, status, errnum, false, nullptr, 0, fmt, ap);
  }
  va_end(ap);
}

void error_at_line(int status, int errnum, const char* file, unsigned line, const char* fmt, ...) {
  static const char* last_file;
  static unsigned last_line;
  if (error_one_per_line) {
    if (last_line == line && file && last_file &&
        (file == last_file || strcmp(file, last_file) == 0)) {
      return;  // glibc prints each place once under error_one_per_line
    }
    last_file = file;
    last_line = line;
  }
  Guard g;
  va_list ap;
  va_start(ap, fmt);
  {
    ErrnoKeeper keep;
    Error(g.entered() ? StdioSink(stderr) : -1, status, errnum, true, file, line, fmt, ap);
  }
  va_end(ap);
}

#pragma GCC visibility pop
}  // extern "C"
