#include "textbuf.h"

#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "real.h"

namespace comet_preload {

TextBuf::~TextBuf() {
  if (data_ != inline_) std::free(data_);
}

bool TextBuf::Grow(size_t extra) {
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

bool TextBuf::Append(const char* s) { return Append(s, std::strlen(s)); }

bool TextBuf::AppendV(int fortify_flag, const char* fmt, va_list ap) {
  const int saved_errno = errno;  // %m formats the caller's errno, whatever Reserve did to it
  if (AppendCommon(fmt, ap)) return true;
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

template <unsigned kBase>
bool TextBuf::AppendDigits(unsigned long long v) {
  char digits[24];
  char* const end = digits + sizeof digits;
  char* p = end;
  do {
    *--p = "0123456789abcdef"[v % kBase];
    v /= kBase;
  } while (v != 0);
  return Append(p, static_cast<size_t>(end - p));
}

bool TextBuf::AppendCommon(const char* fmt, va_list ap) {
  const size_t start = len_;
  va_list args;
  va_copy(args, ap);
  bool ok = true;
  while (ok) {
    const char* percent = strchrnul(fmt, '%');
    if (percent != fmt) ok = Append(fmt, static_cast<size_t>(percent - fmt));
    if (*percent == '\0') break;
    fmt = percent + 1;
    ok = ok && AppendConversion(&fmt, &args);
  }
  va_end(args);
  if (!ok) {
    len_ = start;
    data_[len_] = '\0';
  }
  return ok;
}

// One conversion after its '%'; *fmt moves past it.
bool TextBuf::AppendConversion(const char** fmt, va_list* ap) {
  const char* p = *fmt;
  int precision = -1;  // none
  if (*p == '.') {
    p++;
    if (*p == '*') {
      precision = std::max(va_arg(*ap, int), -1);  // a negative one counts as none
      p++;
    } else {
      for (precision = 0; *p >= '0' && *p <= '9'; p++) {
        if (precision > 100'000'000) return false;
        precision = precision * 10 + (*p - '0');
      }
    }
  }
  char length = 0;  // 'l', 'q' (ll) or 'z'
  if (*p == 'l' || *p == 'z') length = *p++;
  if (length == 'l' && *p == 'l') {
    length = 'q';
    p++;
  }
  const char conversion = *p++;
  *fmt = p;
  if (conversion == 's' && length == 0) {
    const char* s = va_arg(*ap, const char*);
    if (s == nullptr) return false;  // "(null)" or nothing, by precision: left to vsnprintf
    return Append(s, precision < 0 ? std::strlen(s) : strnlen(s, static_cast<size_t>(precision)));
  }
  if (precision >= 0) return false;
  if (conversion == 'c' && length == 0) {
    const char c = static_cast<char>(va_arg(*ap, int));
    return Append(&c, 1);
  }
  if (conversion == '%' && length == 0) return Append("%", 1);
  return AppendInteger(conversion, length, ap);
}

static_assert(sizeof(long) == sizeof(long long), "%ld is read as a long long");

bool TextBuf::AppendInteger(char conversion, char length, va_list* ap) {
  if (conversion == 'd' || conversion == 'i') {
    const long long v = length == 0 ? va_arg(*ap, int)
                        : length == 'z' ? va_arg(*ap, ssize_t)
                                        : va_arg(*ap, long long);
    const unsigned long long magnitude = v < 0 ? 0ull - static_cast<unsigned long long>(v) : v;
    return (v >= 0 || Append("-", 1)) && AppendDigits<10>(magnitude);
  }
  if (conversion != 'u' && conversion != 'x') return false;
  const unsigned long long v = length == 0 ? va_arg(*ap, unsigned)
                               : length == 'z' ? va_arg(*ap, size_t)
                                               : va_arg(*ap, unsigned long long);
  return conversion == 'u' ? AppendDigits<10>(v) : AppendDigits<16>(v);
}

template bool TextBuf::AppendDigits<10>(unsigned long long);
template bool TextBuf::AppendDigits<16>(unsigned long long);

bool TextBuf::AppendF(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const bool ok = AppendV(-1, fmt, ap);
  va_end(ap);
  return ok;
}

}  // namespace comet_preload
