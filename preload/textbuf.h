// A small string builder for formatted output: a 2 KiB inline buffer (the common case, no
// allocation), growing on the heap only for longer text.
#pragma once

#include <stdarg.h>

#include <cstddef>

namespace comet_preload {

class TextBuf {
 public:
  TextBuf() = default;
  ~TextBuf();
  TextBuf(const TextBuf&) = delete;
  TextBuf& operator=(const TextBuf&) = delete;

  bool Append(const char* s, size_t n);
  bool Append(const char* s);
  // printf-style; fortify_flag >= 0 formats through __vsnprintf_chk with that flag, as the
  // fortified entry points would. False (errno set) if the format fails or memory runs out.
  bool AppendV(int fortify_flag, const char* fmt, va_list ap);
  bool AppendF(const char* fmt, ...) __attribute__((format(printf, 2, 3)));

  const char* data() const { return data_; }
  size_t size() const { return len_; }
  void Clear() { len_ = 0; }
  // Drops trailing bytes equal to c.
  void TrimTrailing(char c) {
    while (len_ > 0 && data_[len_ - 1] == c) len_--;
  }

 private:
  bool Reserve(size_t extra);

  char inline_[2048];
  char* data_ = inline_;
  size_t len_ = 0, cap_ = sizeof inline_;
};

}  // namespace comet_preload
