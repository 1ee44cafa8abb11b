// The shim's configuration, read once from the environment in the constructor (the master of a
// prefork server reads it before its workers clear their environment).
#pragma once

#include <cstdint>
#include <string>

#include "comet/config.h"
#include "comet/status.h"

namespace comet_preload {

// What is captured: one sink each.
enum Sink : int { kStdout = 0, kStderr = 1, kSyslog = 2, kSinkCount = 3 };

struct Settings {
  std::string dir;                                   // COMET_DIR
  bool capture[kSinkCount] = {true, true, true};     // COMET_CAPTURE
  std::string prefix[kSinkCount] = {"stdout", "stderr", "syslog"};  // COMET_*_STREAM
  uint32_t shards = 16;                              // COMET_SHARDS
  bool tee = false;                                  // COMET_TEE
  uint64_t max_line = 64 << 10;                      // COMET_MAX_LINE
  std::string user;                                  // COMET_USER
  std::string syslog_socket = "/dev/log";            // COMET_SYSLOG_SOCKET
  comet::Config config = comet::Config::MultiProcess();  // COMET_CONFIG_<key>
};

// Reads the environment. NOT_FOUND when COMET_DIR is unset or empty (the shim stays inert);
// INVALID naming the variable and its value for anything it cannot use.
comet::Result<Settings> ReadSettings();

}  // namespace comet_preload
