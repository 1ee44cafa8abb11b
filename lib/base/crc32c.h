// CRC32C (Castagnoli), hardware-accelerated with SSE4.2 where the CPU has it.
// Thread-safe, no state. Checked against the RFC 3720 (iSCSI) test vectors in the tests.
#pragma once

#include <cstddef>
#include <cstdint>

namespace comet::crc32c {

// Returns the CRC32C of data[0,n) appended to a stream whose CRC so far is `crc` (0 to start).
uint32_t Extend(uint32_t crc, const void* data, size_t n);
inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }

// True when Extend uses the SSE4.2 crc32 instruction.
bool HardwareAccelerated();

// Stored CRCs are masked, so that a CRC of data that itself contains CRCs is not degenerate
// and an all-zero header never checks out.
inline constexpr uint32_t kMaskDelta = 0xa282ead8u;
inline uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }
inline uint32_t Unmask(uint32_t masked) {
  uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace comet::crc32c
