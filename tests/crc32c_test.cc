// CRC32C against the RFC 3720 (iSCSI) B.4 vectors, a bitwise reference, and the mask.
#include "crc32c.h"

#include <cstdint>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "test_util.h"

namespace {

using comet::crc32c::Extend;
using comet::crc32c::Mask;
using comet::crc32c::Unmask;
using comet::crc32c::Value;

// Bit-at-a-time reference over the reflected Castagnoli polynomial: slow, obviously correct.
uint32_t ReferenceCrc32c(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
  }
  return ~c;
}

TEST(Crc32c, Rfc3720ThirtyTwoZeroBytes) {
  uint8_t buf[32];
  std::memset(buf, 0, sizeof buf);
  EXPECT_EQ(Value(buf, sizeof buf), 0x8a9136aau);
}

TEST(Crc32c, Rfc3720ThirtyTwoOnesBytes) {
  uint8_t buf[32];
  std::memset(buf, 0xff, sizeof buf);
  EXPECT_EQ(Value(buf, sizeof buf), 0x62a8ab43u);
}

TEST(Crc32c, Rfc3720AscendingBytes) {
  uint8_t buf[32];
  for (int i = 0; i < 32; i++) buf[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(Value(buf, sizeof buf), 0x46dd794eu);
}

TEST(Crc32c, Rfc3720DescendingBytes) {
  uint8_t buf[32];
  for (int i = 0; i < 32; i++) buf[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(Value(buf, sizeof buf), 0x113fdb5cu);
}

TEST(Crc32c, Rfc3720IscsiReadCommand) {
  const uint8_t data[48] = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  };
  EXPECT_EQ(Value(data, sizeof data), 0xd9963a56u);
}

TEST(Crc32c, CheckStringNineDigits) {
  const char* s = "123456789";
  EXPECT_EQ(Value(s, 9), 0xe3069283u);
}

TEST(Crc32c, EmptyInputIsZero) {
  EXPECT_EQ(Value("", 0), 0u);
  EXPECT_EQ(Extend(0x12345678u, "", 0), 0x12345678u);
}

TEST(Crc32c, DiffersForDifferentInputs) {
  EXPECT_NE(Value("a", 1), Value("foo", 3));
  EXPECT_NE(Value("hello", 5), Value("hellp", 5));
}

TEST(Crc32c, ExtendOfSplitEqualsValueOfWhole) {
  const std::string data = comet_test::RandomBytes(7, 1000);
  const uint32_t whole = Value(data.data(), data.size());
  for (size_t split = 0; split <= data.size(); split += (split < 64 ? 1 : 37)) {
    uint32_t c = Value(data.data(), split);
    c = Extend(c, data.data() + split, data.size() - split);
    ASSERT_EQ(c, whole) << "split at " << split;
  }
  // Three pieces.
  uint32_t c = Extend(0, data.data(), 3);
  c = Extend(c, data.data() + 3, 500);
  c = Extend(c, data.data() + 503, data.size() - 503);
  EXPECT_EQ(c, whole);
}

TEST(Crc32c, MatchesBitwiseReferenceAtEveryLengthAndAlignment) {
  const std::string data = comet_test::RandomBytes(11, 400);
  for (size_t align = 0; align < 8; align++) {
    for (size_t len = 0; len + align <= 300; len++) {
      ASSERT_EQ(Value(data.data() + align, len), ReferenceCrc32c(data.data() + align, len))
          << "align " << align << " len " << len;
    }
  }
}

TEST(Crc32c, MaskRoundTripsAndChangesTheValue) {
  const uint32_t crc = Value("foo", 3);
  EXPECT_NE(crc, Mask(crc));
  EXPECT_NE(crc, Mask(Mask(crc)));
  EXPECT_EQ(crc, Unmask(Mask(crc)));
  EXPECT_EQ(crc, Unmask(Unmask(Mask(Mask(crc)))));
  for (uint64_t i = 0; i < 10000; i++) {
    const uint32_t x = static_cast<uint32_t>(comet_test::SplitMix64(i));
    ASSERT_EQ(Unmask(Mask(x)), x);
    ASSERT_NE(Mask(x), x) << x;
  }
  EXPECT_NE(Mask(0), 0u);  // an all-zero header never checks out
}

}  // namespace
