#include "comet/stream.h"

#include <cstdio>

#include "comet/format.h"
#include "text.h"

namespace comet {
namespace {

constexpr std::string_view kShardInfix = ":shard:";

}  // namespace

Status ValidatePrefix(std::string_view prefix) {
  if (prefix.empty()) return Status::Invalid("stream prefix is empty");
  if (prefix.size() > format::kMaxPrefixLen) {
    return Status::Invalid("stream prefix is " + std::to_string(prefix.size()) +
                           " bytes; the limit is " + std::to_string(format::kMaxPrefixLen));
  }
  auto hex = [](unsigned char c) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02X", c);
    return std::string(buf);
  };
  for (size_t i = 0; i < prefix.size();) {
    unsigned char c = static_cast<unsigned char>(prefix[i]);
    if (c >= 0x80) {
      size_t len = text::Utf8SequenceLength(prefix, i);
      if (len == 0) {
        return Status::Invalid("stream prefix is not valid UTF-8: byte " + hex(c) + " at " +
                               std::to_string(i) + " does not start a valid sequence");
      }
      i += len;
      continue;
    }
    if (c < 0x20 || c == 0x7f || c == '/') {
      return Status::Invalid("stream prefix has a forbidden byte " + hex(c) + " at " +
                             std::to_string(i) + " (no '/', NUL or control characters)");
    }
    i++;
  }
  return Status::Ok();
}

Result<StreamName> ParseStreamName(std::string_view name) {
  auto bad = [&](const std::string& why) {
    return Status::Invalid("invalid stream name '" + std::string(name) + "': " + why +
                           " (expected <prefix>:shard:<NNNN>, NNNN four upper-case hex digits)");
  };
  size_t pos = name.rfind(kShardInfix);
  if (pos == std::string_view::npos) return bad("no ':shard:' part");
  std::string_view digits = name.substr(pos + kShardInfix.size());
  if (digits.size() != 4) return bad("shard number must be exactly 4 hex digits");
  uint64_t shard = 0;
  if (!text::ParseUpperHex(digits, 4, &shard)) {
    return bad("shard number must be upper-case hex digits");
  }
  std::string_view prefix = name.substr(0, pos);
  if (Status s = ValidatePrefix(prefix); !s.ok()) return bad(s.message());
  return StreamName{std::string(prefix), static_cast<uint32_t>(shard)};
}

std::string ShardStreamName(std::string_view prefix, uint32_t shard) {
  std::string s(prefix);
  s += kShardInfix;
  s += text::UpperHex(shard & 0xFFFF, 4);
  return s;
}

uint32_t PickShard(const void* key, size_t len, uint32_t shard_count) {
  if (shard_count == 0) shard_count = 16;
  // FNV-1a 64 spreads the key; jump consistent hash (Lamping & Veach) maps it to a bucket so
  // that adding a shard moves only the keys that land on the new one.
  uint64_t h = 0xcbf29ce484222325ull;
  const auto* p = static_cast<const unsigned char*>(key);
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  int64_t b = -1, j = 0;
  while (j < static_cast<int64_t>(shard_count)) {
    b = j;
    h = h * 2862933555777941757ull + 1;
    j = static_cast<int64_t>(static_cast<double>(b + 1) *
                             (static_cast<double>(1ll << 31) / static_cast<double>((h >> 33) + 1)));
  }
  return static_cast<uint32_t>(b);
}

std::string PickShardStream(std::string_view prefix, std::string_view key, uint32_t shard_count) {
  return ShardStreamName(prefix, PickShard(key, shard_count));
}

std::vector<uint32_t> AllShardsRange(uint32_t n) {
  if (n == 0) n = 16;
  std::vector<uint32_t> v(n);
  for (uint32_t i = 0; i < n; i++) v[i] = i;
  return v;
}

std::vector<std::string> AllShardStreams(std::string_view prefix, uint32_t n) {
  std::vector<std::string> v;
  for (uint32_t s : AllShardsRange(n)) v.push_back(ShardStreamName(prefix, s));
  return v;
}

}  // namespace comet
