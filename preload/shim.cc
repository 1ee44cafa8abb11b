// The constructor: resolve the real functions, read the environment, open the data directory
// (in the process that loads the shim, before a server drops privileges or clears its
// environment), and register the fork and exit handlers. Any problem leaves the program running
// uncaptured after one line on its original stderr.
#include <pthread.h>
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

void AtForkPrepare() { LockSinksForFork(); }
void AtForkParent() { UnlockSinksAfterFork(false); }
void AtForkChild() { UnlockSinksAfterFork(true); }

void AtExit() {
  Guard g;
  if (g.entered()) FlushPartialLines(true);
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
}

}  // namespace
}  // namespace comet_preload
