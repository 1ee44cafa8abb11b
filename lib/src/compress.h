// zstd per entry: one context per thread, reused.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "comet/status.h"

namespace comet::internal {

// Compresses `in` at `level` into *out. False if compression failed or did not make it smaller
// (the caller then stores the entry raw).
bool Compress(std::string_view in, int level, std::string* out);
// Decompresses one frame into *out; CORRUPT naming `where` if it is not a valid frame or would
// exceed `max_size`.
Status Decompress(const char* p, size_t n, size_t max_size, std::string* out,
                  const std::string& where);

}  // namespace comet::internal
