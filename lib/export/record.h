// Exported internal header: how one record is framed on disk (comet/format.h has the layout).
// The benchmarks frame records exactly as the library does, so that a comparison with a plain
// write(2) logger checksums and copies the same bytes.
#pragma once

#include <cstdint>

#include "comet/format.h"

namespace comet::internal {

// CRC of a record: payload first, then header bytes [4,16); the stored CRC is this XOR the
// segment's record key.
uint32_t RecordCrc(const char* payload, uint32_t size_flags, int64_t ts);
inline void EncodeRecordHeader(char* out, uint32_t masked_crc, uint32_t size_flags, int64_t ts) {
  format::store32(out + format::rec::kCrc, masked_crc);
  format::store32(out + format::rec::kSizeFlags, size_flags);
  format::store64(out + format::rec::kTimestamp, static_cast<uint64_t>(ts));
}

}  // namespace comet::internal
