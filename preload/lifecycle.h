// Starting and stopping capture (the constructor, fork and exit handlers in shim.cc).
#pragma once

#include <string>

#include "settings.h"

namespace comet_preload {

// Records the original stdout and stderr, allocates the line buffers and opens the data
// directory in multi-process mode. False with *error set if the directory cannot be used.
bool StartCapture(Settings settings, std::string* error);
// From now on every hook passes its call through.
void StopCapture();
// pthread_atfork: no line buffer is mid-update across fork; the child starts with empty
// buffers and picks its own shards.
void LockSinksForFork();
void UnlockSinksAfterFork(bool child);

}  // namespace comet_preload
