#include "comet/status.h"

#include <cerrno>
#include <cstring>

namespace comet {

const char* code_name(Code c) {
  switch (c) {
    case Code::kOk: return "COMET_OK";
    case Code::kInvalid: return "COMET_ERR_INVALID";
    case Code::kIo: return "COMET_ERR_IO";
    case Code::kCorrupt: return "COMET_ERR_CORRUPT";
    case Code::kNotOwner: return "COMET_ERR_NOT_OWNER";
    case Code::kClosed: return "COMET_ERR_CLOSED";
    case Code::kFull: return "COMET_ERR_FULL";
    case Code::kTooLarge: return "COMET_ERR_TOO_LARGE";
    case Code::kNotFound: return "COMET_ERR_NOT_FOUND";
    case Code::kTimeout: return "COMET_ERR_TIMEOUT";
    case Code::kVersion: return "COMET_ERR_VERSION";
    case Code::kNoMem: return "COMET_ERR_NOMEM";
  }
  return "COMET_ERR_UNKNOWN";
}

Status Status::FromErrno(int err, std::string_view what) {
  std::string m(what);
  m += ": ";
  m += std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return Full(std::move(m));
  return Io(std::move(m));
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s = code_name(code_);
  s += ": ";
  s += message_;
  return s;
}

}  // namespace comet
