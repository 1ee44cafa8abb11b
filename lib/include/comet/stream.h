// Stream names, shard routing and entry ids.
//
// A stream is "<prefix>:shard:<NNNN>": a non-empty prefix (at most 192 bytes of valid UTF-8, no
// '/', no control characters, no NUL) then exactly four upper-case hexadecimal digits. The prefix is
// part of the identity: "logs:shard:0003" and "events:shard:0003" are two different logs.
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "comet/status.h"

namespace comet {

inline constexpr uint32_t kMaxShards = 0x10000;  // four hex digits

struct StreamName {
  std::string prefix;
  uint32_t shard = 0;
  bool operator==(const StreamName&) const = default;
};

// Parses and validates a stream name; the error says what is wrong with it.
Result<StreamName> ParseStreamName(std::string_view name);
// Checks a prefix on its own (the same rules as inside a stream name).
Status ValidatePrefix(std::string_view prefix);

// "<prefix>:shard:<NNNN>". REQUIRES: shard < kMaxShards.
std::string ShardStreamName(std::string_view prefix, uint32_t shard);

// Stable, machine-independent routing of a key to one of `shard_count` shards: a 64-bit FNV-1a
// of the key fed to jump consistent hashing, so growing the shard count from n to n+1 moves
// only about 1/(n+1) of the keys. shard_count 0 means 16.
uint32_t PickShard(const void* key, size_t len, uint32_t shard_count);
inline uint32_t PickShard(std::string_view key, uint32_t shard_count) {
  return PickShard(key.data(), key.size(), shard_count);
}
std::string PickShardStream(std::string_view prefix, std::string_view key, uint32_t shard_count);

// [0, n) and their stream names (n 0 means 16).
std::vector<uint32_t> AllShardsRange(uint32_t n);
std::vector<std::string> AllShardStreams(std::string_view prefix, uint32_t n);

// An entry's identity: the stream prefix's number in this data directory, the shard, and the
// dense per-stream entry number (from 0, never reused or renumbered).
struct EntryId {
  uint32_t prefix_id = 0;
  uint32_t shard = 0;
  uint64_t entry = 0;
  bool operator==(const EntryId&) const = default;
};

}  // namespace comet
