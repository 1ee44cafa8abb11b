// The configuration keys, one table: for each key how its value is parsed, the range it must
// fall in, where it lives in Config (so its default is Config{}'s) and what it means. Set and
// Validate are driven by it, and README's key table is checked against it by a test.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "comet/config.h"

namespace comet::internal {

enum class KeyKind {
  kSize,      // bytes: "4096", "64KiB", "1GiB", "10MB"
  kCount,     // a plain number
  kDuration,  // nanoseconds: "250ms", "1s", "7d"
  kBool,      // true/false (also 1/0, yes/no, on/off)
  kChoice,    // one of ConfigKey::choices
  kPath,      // an absolute path, or empty
};

struct ConfigKey {
  std::string_view name;
  KeyKind kind;
  uint64_t lo = 0, hi = UINT64_MAX;  // numbers: the inclusive range
  bool zero_off = false;             // numbers: 0 is also allowed (turns the feature off)
  std::string_view choices;          // kChoice: the names in the enum's order, '|'-separated
  std::string_view doc;              // README's "meaning" column
  // The field, as a number (bools 0/1, choices the enum's value); kPath: as text instead.
  uint64_t (*get)(const Config&) = nullptr;
  void (*set)(Config&, uint64_t) = nullptr;
  const std::string& (*get_text)(const Config&) = nullptr;
  void (*set_text)(Config&, std::string_view) = nullptr;
};

// Every key, in README's order.
std::span<const ConfigKey> ConfigKeys();
const ConfigKey* FindConfigKey(std::string_view name);

// The key's value in c, written as Set accepts it ("64MiB", "1s", "interval").
std::string ShowValue(const ConfigKey& k, const Config& c);
// The values the key accepts, as README's range column shows them.
std::string RangeText(const ConfigKey& k);

}  // namespace comet::internal
