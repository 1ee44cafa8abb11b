#include "crc32c.h"
#include "hot.h"

#include <cstring>
#include <nmmintrin.h>

namespace comet::crc32c {
namespace {

// Software fallback: slicing by one byte over the reflected Castagnoli polynomial.
struct Table {
  uint32_t t[256];
  constexpr Table() : t{} {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      t[i] = c;
    }
  }
};
constexpr Table kTable;

uint32_t ExtendSoftware(uint32_t crc, const uint8_t* p, size_t n) {
  uint32_t c = ~crc;
  for (size_t i = 0; i < n; i++) c = kTable.t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return ~c;
}

__attribute__((target("sse4.2"))) COMET_HOT uint32_t ExtendHardware(uint32_t crc, const uint8_t* p,
                                                           size_t n) {
  uint64_t c = ~crc;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  if (n >= 4) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    c32 = _mm_crc32_u32(c32, v);
    p += 4;
    n -= 4;
  }
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}

bool DetectHardware() { return __builtin_cpu_supports("sse4.2"); }
const bool kHardware = DetectHardware();

}  // namespace

COMET_HOT uint32_t Extend(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  return kHardware ? ExtendHardware(crc, p, n) : ExtendSoftware(crc, p, n);
}

bool HardwareAccelerated() { return kHardware; }

}  // namespace comet::crc32c
