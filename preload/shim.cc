// The constructor: resolve the real functions, read the environment, open the data directory
// (in the process that loads the shim, before a server drops privileges or clears its
// environment), and register the fork and exit handlers. Any problem leaves the program running
// uncaptured after one line on its original stderr.
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>

#include <string>

#include "capture.h"
#include "lifecycle.h"
#include "real.h"
#include "settings.h"

namespace comet_preload {
namespace {

void Diagnose(const std::string& what) {
  const std::string line = "comet_preload: " + what + "; output is not captured\n";
  (void)REAL(write)(2, line.data(), line.size());
}

void AtForkPrepare() {
  LockSyslogForFork();
  LockSinksForFork();
}
void AtForkParent() {
  UnlockSinksAfterFork(false);
  UnlockSyslogAfterFork(false);
}
void AtForkChild() {
  UnlockSinksAfterFork(true);
  UnlockSyslogAfterFork(true);
}

void AtExit() {
  Guard g;
  if (g.entered()) FlushPartialLines(true);
}

// Fatal signals: a line the program had begun but not ended is stored before the process dies
// of the signal it would have died of. Installed only where the disposition is the default (a
// signal the program ignores stays ignored; a handler the program installs later replaces
// this one). The flush skips a sink another thread is writing, and everything when the signal
// hit this thread inside the shim.
constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
struct sigaction g_previous[NSIG];

void OnFatalSignal(int sig) {
  {
    Guard g;
    if (g.entered()) {
      ErrnoKeeper keep;
      FlushPartialLines(false);
    }
  }
  // Back to what was there (the default), and the same signal again: the process ends as it
  // would have without the shim (a fault re-raised here, abort's SIGABRT, a core dump).
  sigaction(sig, &g_previous[sig], nullptr);
  raise(sig);
}

void CatchFatalSignals() {
  for (int sig : kFatalSignals) {
    struct sigaction current;
    if (sigaction(sig, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) continue;
    struct sigaction flush = {};
    flush.sa_handler = OnFatalSignal;
    flush.sa_flags = SA_NODEFER | SA_RESETHAND | SA_ONSTACK;
    sigemptyset(&flush.sa_mask);
    g_previous[sig] = current;
    sigaction(sig, &flush, nullptr);
  }
}

__attribute__((constructor)) void Init() {
  ResolveReal();
  if (getauxval(AT_SECURE)) return;  // setuid/setgid programs: never
  Guard g;
  ErrnoKeeper keep;
  comet::Result<Settings> settings = ReadSettings();
  if (!settings.ok()) {
    if (!settings.status().IsNotFound()) Diagnose(settings.status().message());
    return;
  }
  const std::string user = settings->user;
  std::string error;
  if (!StartCapture(std::move(*settings), &error)) {
    Diagnose(error);
    return;
  }
  if (!user.empty() && !HandDirectoryToUser(user, &error)) {
    StopCapture();
    Diagnose(error);
    return;
  }
  pthread_atfork(AtForkPrepare, AtForkParent, AtForkChild);
  atexit(AtExit);
  CatchFatalSignals();
}

}  // namespace
}  // namespace comet_preload
