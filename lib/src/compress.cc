#include "compress.h"

#include <zstd.h>

namespace comet::internal {
namespace {

struct Contexts {
  ZSTD_CCtx* c = nullptr;
  ZSTD_DCtx* d = nullptr;
  ~Contexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
  }
};
thread_local Contexts tls;

}  // namespace

bool Compress(std::string_view in, int level, std::string* out) {
  if (!tls.c) tls.c = ZSTD_createCCtx();
  if (!tls.c) return false;
  size_t bound = ZSTD_compressBound(in.size());
  out->resize(bound);
  size_t n = ZSTD_compressCCtx(tls.c, out->data(), bound, in.data(), in.size(), level);
  if (ZSTD_isError(n) || n >= in.size()) return false;
  out->resize(n);
  return true;
}

Status Decompress(const char* p, size_t n, size_t max_size, std::string* out,
                  const std::string& where) {
  unsigned long long size = ZSTD_getFrameContentSize(p, n);
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > max_size) {
    return Status::Corrupt(where + ": compressed payload has no valid zstd frame size");
  }
  if (!tls.d) tls.d = ZSTD_createDCtx();
  if (!tls.d) return Status::Io("cannot allocate a zstd decompression context");
  out->resize(size);
  size_t got = ZSTD_decompressDCtx(tls.d, out->data(), size, p, n);
  if (ZSTD_isError(got) || got != size) {
    return Status::Corrupt(where + ": zstd frame does not decompress (" +
                           (ZSTD_isError(got) ? std::string(ZSTD_getErrorName(got)) : "short") + ")");
  }
  return Status::Ok();
}

}  // namespace comet::internal
