// A small string builder for formatted output: a 2 KiB inline buffer (the common case, no
// allocation), growing on the heap only for longer text. The formats log lines mostly use are
// formatted here directly (glibc's printf machinery costs ~80 ns a call on its own); any other
// format goes through vsnprintf, so the text is always what printf would have written.
#pragma once

#include <stdarg.h>

#include <cstddef>
#include <cstring>

namespace comet_preload {

class TextBuf {
 public:
  TextBuf() = default;
  ~TextBuf();
  TextBuf(const TextBuf&) = delete;
  TextBuf& operator=(const TextBuf&) = delete;

  bool Append(const char* s, size_t n) {
    if (!Reserve(n)) return false;
    std::memcpy(data_ + len_, s, n);
    len_ += n;
    data_[len_] = '\0';
    return true;
  }
  bool Append(const char* s);
  // printf-style; fortify_flag >= 0 formats through __vsnprintf_chk with that flag, as the
  // fortified entry points would. False (errno set) if the format fails or memory runs out.
  bool AppendV(int fortify_flag, const char* fmt, va_list ap);
  bool AppendF(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  // v in base 10 or 16, as %llu and %llx write it.
  template <unsigned kBase>
  bool AppendDigits(unsigned long long v);

  const char* data() const { return data_; }
  size_t size() const { return len_; }
  void Clear() { len_ = 0; }
  // Drops trailing bytes equal to c.
  void TrimTrailing(char c) {
    while (len_ > 0 && data_[len_ - 1] == c) len_--;
  }

 private:
  // Room for extra bytes and a NUL.
  bool Reserve(size_t extra) { return cap_ - len_ > extra || Grow(extra); }
  bool Grow(size_t extra);
  // The common subset of printf formats: literal text, %%, %s (with a precision, also .*), %c,
  // and %d %i %u %x with an optional l, ll or z and no flag, width or precision. False, with
  // nothing appended, for any other format or a null string (vsnprintf then does the work).
  bool AppendCommon(const char* fmt, va_list ap);
  bool AppendConversion(const char** fmt, va_list* ap);
  bool AppendInteger(char conversion, char length, va_list* ap);

  char inline_[2048];
  char* data_ = inline_;
  size_t len_ = 0, cap_ = sizeof inline_;
};

}  // namespace comet_preload
