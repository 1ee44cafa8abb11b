#include "textbuf.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "real.h"

namespace comet_preload {

TextBuf::~TextBuf() {
  if (data_ != inline_) std::free(data_);
}

bool TextBuf::Reserve(size_t extra) {
  if (cap_ - len_ > extra) return true;  // always keep room for a NUL
  size_t cap = cap_ * 2;
  while (cap - len_ <= extra) cap *= 2;
  char* p = static_cast<char*>(std::malloc(cap));
  if (!p) return false;
  std::memcpy(p, data_, len_);
  if (data_ != inline_) std::free(data_);
  data_ = p;
  cap_ = cap;
  return true;
}

bool TextBuf::Append(const char* s, size_t n) {
  if (!Reserve(n)) return false;
  std::memcpy(data_ + len_, s, n);
  len_ += n;
  data_[len_] = '\0';
  return true;
}

bool TextBuf::Append(const char* s) { return Append(s, std::strlen(s)); }

bool TextBuf::AppendV(int fortify_flag, const char* fmt, va_list ap) {
  const int saved_errno = errno;  // %m formats the caller's errno, whatever Reserve did to it
  for (int pass = 0; pass < 2; pass++) {
    const size_t room = cap_ - len_;
    errno = saved_errno;
    va_list copy;
    va_copy(copy, ap);
    const int n = fortify_flag >= 0
                      ? REAL(__vsnprintf_chk)(data_ + len_, room, fortify_flag, room, fmt, copy)
                      : std::vsnprintf(data_ + len_, room, fmt, copy);
    va_end(copy);
    if (n < 0) return false;
    if (static_cast<size_t>(n) < room) {
      len_ += static_cast<size_t>(n);
      return true;
    }
    if (!Reserve(static_cast<size_t>(n))) return false;
  }
  errno = EOVERFLOW;
  return false;
}

bool TextBuf::AppendF(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const bool ok = AppendV(-1, fmt, ap);
  va_end(ap);
  return ok;
}

}  // namespace comet_preload
