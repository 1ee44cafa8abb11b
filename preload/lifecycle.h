// Starting and stopping capture (the constructor, fork and exit handlers in shim.cc).
#pragma once

#include <sys/types.h>

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
// The same for syslog's openlog state; the child makes its "ident[pid]: " again.
void LockSyslogForFork();
void UnlockSyslogAfterFork(bool child);
// Gives the data directory (recursively) to uid:gid. REQUIRES: root, capture started.
void HandDirectoryTo(uid_t uid, gid_t gid);
// The same for COMET_USER's user and group (as root; otherwise only checks the name).
bool HandDirectoryToUser(const std::string& user, std::string* error);

}  // namespace comet_preload
