#include "comet/config.h"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "comet/format.h"
#include "config_keys.h"

namespace comet {
namespace {

Status BadValue(std::string_view key, std::string_view value, std::string_view why) {
  return Status::Invalid("config " + std::string(key) + "='" + std::string(value) + "': " +
                         std::string(why));
}

// Splits "64MiB" into 64 and "MiB".
bool SplitNumber(std::string_view text, uint64_t* n, std::string_view* unit) {
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') i++;
  if (i == 0) return false;
  auto r = std::from_chars(text.data(), text.data() + i, *n);
  if (r.ec != std::errc()) return false;
  *unit = text.substr(i);
  while (!unit->empty() && unit->front() == ' ') unit->remove_prefix(1);
  return true;
}

bool MulChecked(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

Result<uint64_t> ParseCount(std::string_view key, std::string_view value) {
  uint64_t n = 0;
  auto r = std::from_chars(value.data(), value.data() + value.size(), n);
  if (value.empty() || r.ec != std::errc() || r.ptr != value.data() + value.size()) {
    return BadValue(key, value, "expected a non-negative integer");
  }
  return n;
}

Result<bool> ParseBool(std::string_view key, std::string_view v) {
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  return BadValue(key, v, "expected true or false");
}

}  // namespace

Result<uint64_t> ParseDuration(std::string_view text) {
  uint64_t n = 0;
  std::string_view unit;
  if (!SplitNumber(text, &n, &unit)) {
    return Status::Invalid("duration '" + std::string(text) + "' must start with a number");
  }
  struct U { std::string_view name; uint64_t ns; };
  static constexpr U kUnits[] = {{"", 1},          {"ns", 1},
                                 {"us", 1000},     {"ms", 1000000},
                                 {"s", 1000000000ull},   {"m", 60000000000ull},
                                 {"h", 3600000000000ull}, {"d", 86400000000000ull}};
  for (const U& u : kUnits) {
    if (unit == u.name) {
      uint64_t out;
      if (!MulChecked(n, u.ns, &out)) {
        return Status::Invalid("duration '" + std::string(text) + "' is too large");
      }
      return out;
    }
  }
  return Status::Invalid("duration '" + std::string(text) +
                         "' has an unknown unit (use ns, us, ms, s, m, h or d)");
}

Result<uint64_t> ParseSize(std::string_view text) {
  uint64_t n = 0;
  std::string_view unit;
  if (!SplitNumber(text, &n, &unit)) {
    return Status::Invalid("size '" + std::string(text) + "' must start with a number");
  }
  struct U { std::string_view name; uint64_t mul; };
  static constexpr U kUnits[] = {{"", 1},           {"B", 1},
                                 {"KiB", 1ull << 10}, {"MiB", 1ull << 20},
                                 {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
                                 {"PiB", 1ull << 50},
                                 {"KB", 1000},        {"MB", 1000000},
                                 {"GB", 1000000000},  {"TB", 1000000000000ull}};
  for (const U& u : kUnits) {
    if (unit == u.name) {
      uint64_t out;
      if (!MulChecked(n, u.mul, &out)) {
        return Status::Invalid("size '" + std::string(text) + "' is too large");
      }
      return out;
    }
  }
  return Status::Invalid("size '" + std::string(text) +
                         "' has an unknown unit (use B, KiB, MiB, GiB, TiB, PiB, KB, MB, GB or "
                         "TB)");
}

Config Config::Optimized(uint32_t shard_count, uint64_t memory_mb) {
  Config c;
  if (shard_count == 0) shard_count = 16;
  uint64_t per_shard = (memory_mb << 20) / shard_count;
  c.storage.max_segment_bytes = std::clamp<uint64_t>(per_shard, 1ull << 20, 1ull << 30);
  c.storage.prefault_bytes = std::min<uint64_t>(c.storage.prefault_bytes,
                                                c.storage.max_segment_bytes / 4);
  return c;
}

Config Config::HighThroughput() {
  Config c;
  c.sync.interval_ns = 5'000'000'000;
  c.sync.entries = 100'000;
  c.compression.min_bytes = 1ull << 20;
  c.index.interval = 256;
  return c;
}

Config Config::HighCompression() {
  Config c;
  c.compression.min_bytes = 512;
  c.compression.level = 6;
  return c;
}

Config Config::MultiProcess() {
  Config c;
  c.concurrency.mode = ConcurrencyMode::kMulti;
  return c;
}

const std::vector<std::string>& Config::Keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> v;
    for (const internal::ConfigKey& k : internal::ConfigKeys()) v.emplace_back(k.name);
    return v;
  }();
  return keys;
}

namespace {

using internal::ConfigKey;
using internal::KeyKind;

// Parses a value of the key's kind into a number (bools 0/1, choices their index).
Result<uint64_t> ParseNumber(const ConfigKey& k, std::string_view value) {
  switch (k.kind) {
    case KeyKind::kSize:
    case KeyKind::kDuration: {
      Result<uint64_t> r = k.kind == KeyKind::kSize ? ParseSize(value) : ParseDuration(value);
      if (!r.ok()) return BadValue(k.name, value, r.status().message());
      return r;
    }
    case KeyKind::kCount: return ParseCount(k.name, value);
    case KeyKind::kBool: {
      Result<bool> r = ParseBool(k.name, value);
      if (!r.ok()) return r.status();
      return uint64_t{*r};
    }
    case KeyKind::kChoice: {
      uint64_t i = 0;
      for (std::string_view rest = k.choices; !rest.empty(); i++) {
        const size_t bar = rest.find('|');
        if (rest.substr(0, bar) == value) return i;
        rest = bar == std::string_view::npos ? std::string_view() : rest.substr(bar + 1);
      }
      std::string names(k.choices);
      std::replace(names.begin(), names.end(), '|', ' ');
      return BadValue(k.name, value, "expected one of: " + names);
    }
    case KeyKind::kPath: break;
  }
  return Status::Invalid("config " + std::string(k.name) + " is not a number");
}

bool InRange(const ConfigKey& k, uint64_t v) {
  if (k.kind != KeyKind::kSize && k.kind != KeyKind::kCount && k.kind != KeyKind::kDuration) {
    return true;  // parsed from a closed set
  }
  return (k.zero_off && v == 0) || (v >= k.lo && v <= k.hi);
}

// The range for a message: README's text without its backticks.
std::string PlainRange(const ConfigKey& k) {
  std::string r = internal::RangeText(k);
  std::erase(r, '`');
  return r;
}

Status CheckPath(const ConfigKey& k, std::string_view value) {
  if (value.empty() || value[0] == '/') return Status::Ok();
  return BadValue(k.name, value, "must be an absolute path, or empty to disable");
}

}  // namespace

Status Config::Set(std::string_view key, std::string_view value) {
  const ConfigKey* k = internal::FindConfigKey(key);
  if (!k) {
    std::string known;
    for (const std::string& name : Keys()) known += (known.empty() ? "" : ", ") + name;
    return Status::Invalid("unknown config key '" + std::string(key) + "' (known keys: " + known +
                           ")");
  }
  if (k->kind == KeyKind::kPath) {
    if (Status st = CheckPath(*k, value); !st.ok()) return st;
    k->set_text(*this, value);
    return Status::Ok();
  }
  Result<uint64_t> v = ParseNumber(*k, value);
  if (!v.ok()) return v.status();
  if (!InRange(*k, *v)) return BadValue(key, value, "must be " + PlainRange(*k));
  k->set(*this, *v);
  return Status::Ok();
}

Status Config::Validate() const {
  for (const ConfigKey& k : internal::ConfigKeys()) {
    const std::string shown = internal::ShowValue(k, *this);
    if (k.kind == KeyKind::kPath) {
      if (Status st = CheckPath(k, shown); !st.ok()) return st;
    } else if (!InRange(k, k.get(*this))) {
      return BadValue(k.name, shown, "must be " + PlainRange(k));
    }
  }
  return ValidateRetention();
}

// A shard's active segment alone takes storage.max_segment_bytes on disk: a smaller budget
// could never hold after a pass.
Status Config::ValidateRetention() const {
  const Retention& r = retention;
  auto at_least_a_segment = [&](const char* key, uint64_t v) -> Status {
    if (v == 0 || v >= storage.max_segment_bytes) return Status::Ok();
    return Status::Invalid("config " + std::string(key) + "=" + std::to_string(v) +
                           ": must be 0 (no limit) or at least storage.max_segment_bytes (" +
                           std::to_string(storage.max_segment_bytes) +
                           "), which a shard's active segment alone takes");
  };
  if (Status st = at_least_a_segment("retention.max_shard_bytes", r.max_shard_bytes); !st.ok()) {
    return st;
  }
  if (Status st = at_least_a_segment("retention.max_total_bytes", r.max_total_bytes); !st.ok()) {
    return st;
  }
  if (r.min_segments == 0) {
    return Status::Invalid("config retention.min_segments=0: must be at least 1 (a shard's "
                           "active segment is never deleted)");
  }
  if (r.force_delete_after_ns != 0 && r.max_age_ns != 0 &&
      r.force_delete_after_ns < r.max_age_ns) {
    return Status::Invalid("config retention.force_delete_after=" +
                           std::to_string(r.force_delete_after_ns) +
                           "ns is shorter than retention.max_age=" +
                           std::to_string(r.max_age_ns) +
                           "ns: unconsumed entries would get less time than consumed ones");
  }
  return Status::Ok();
}

namespace internal {
namespace {

constexpr uint64_t kMs = 1'000'000, kSec = 1'000'000'000;

#define NUMBER(field)                                                                    \
  +[](const Config& c) { return static_cast<uint64_t>(c.field); },                       \
      +[](Config& c, uint64_t v) { c.field = static_cast<std::decay_t<decltype(c.field)>>(v); }
#define TEXT(field)                                          \
  +[](const Config& c) -> const std::string& { return c.field; }, \
      +[](Config& c, std::string_view v) { c.field = std::string(v); }

// constexpr: constant-initialized, so Set and Validate work before dynamic initialization (the
// preload shim reads its settings in a constructor).
constexpr ConfigKey kKeys[] = {
    {"storage.max_segment_bytes", KeyKind::kSize, 4096, 4ull << 30, false, "",
     "rotate before a segment would exceed this (one larger entry gets its own segment)",
     NUMBER(storage.max_segment_bytes)},
    {"storage.max_entry_bytes", KeyKind::kSize, 0, format::kMaxStoredSize, false, "",
     "larger entries fail with `COMET_ERR_TOO_LARGE` (1 GiB − 1 at most)",
     NUMBER(storage.max_entry_bytes)},
    {"storage.prefault_bytes", KeyKind::kSize, 0, 1ull << 30, false, "",
     "how far ahead of the writer pages are pre-faulted, at least (the window grows to 50 ms at "
     "the writer's measured pace); `0` disables pre-faulting",
     NUMBER(storage.prefault_bytes)},
    {"storage.max_preallocated_bytes", KeyKind::kSize, 0, 1ull << 50, false, "",
     "disk one writing client reserves ahead of its writers in all (active segments' room, taken "
     "when a stream is first appended to, and spares); past it a stream's next segment is just "
     "big enough for what it holds (at least 64 KiB) and no spare is made",
     NUMBER(storage.max_preallocated_bytes)},
    {"storage.huge_pages", KeyKind::kChoice, 0, UINT64_MAX, false, "auto|true|false",
     "map segments on 2 MiB boundaries with `MADV_HUGEPAGE` so that the page cache's 2 MiB folios "
     "take one mapping entry each (`auto`: only with `sync.mode=none`, because a sync then writes "
     "back whole 2 MiB folios)",
     NUMBER(storage.huge_pages)},
    {"storage.drop_synced_pages", KeyKind::kBool, 0, UINT64_MAX, false, "",
     "once a sync has written a sealed segment to disk, drop its pages from the page cache "
     "(`posix_fadvise(DONTNEED)`) so that the next segments get that memory, still warm, "
     "instead of fresh pages (`sync.mode` `interval` and `always`; with `none` nothing is "
     "synced or dropped); the cost: a later read of that segment comes from disk. See \"Fresh "
     "memory\" below",
     NUMBER(storage.drop_synced_pages)},
    {"storage.max_streams", KeyKind::kCount, 1, 1u << 20, false, "",
     "streams one directory can hold (control-region table size)",
     NUMBER(storage.max_streams)},
    {"sync.mode", KeyKind::kChoice, 0, UINT64_MAX, false, "none|interval|always",
     "see Guarantees",
     NUMBER(sync.mode)},
    {"sync.interval", KeyKind::kDuration, kMs, 3600 * kSec, false, "",
     "background group commit period",
     NUMBER(sync.interval_ns)},
    {"sync.entries", KeyKind::kCount, 1, 1ull << 40, false, "",
     "… or after this many entries per shard",
     NUMBER(sync.entries)},
    {"compression.min_bytes", KeyKind::kSize, 0, format::kMaxStoredSize, false, "",
     "zstd-compress entries at least this big (`0`: never)",
     NUMBER(compression.min_bytes)},
    {"compression.level", KeyKind::kCount, 1, 19, false, "",
     "zstd level",
     NUMBER(compression.level)},
    {"index.interval", KeyKind::kCount, 1, 1u << 16, false, "",
     "one sparse-index node per this many entries",
     NUMBER(index.interval)},
    {"concurrency.mode", KeyKind::kChoice, 0, UINT64_MAX, false, "single|multi",
     "`single`: one writer process; `multi`: many processes share the directory",
     NUMBER(concurrency.mode)},
    {"concurrency.max_processes", KeyKind::kCount, 1, 4096, false, "",
     "member slots (fixed when the control file is created)",
     NUMBER(concurrency.max_processes)},
    {"open.read_only", KeyKind::kBool, 0, UINT64_MAX, false, "",
     "read a directory another process writes; no claim, no recovery",
     NUMBER(open.read_only)},
    {"metrics.bpf_pin_dir", KeyKind::kPath, 0, UINT64_MAX, false, "",
     "where to look for the pinned export map of `comet probe`; empty disables",
     nullptr, nullptr, TEXT(metrics.bpf_pin_dir)},
    {"metrics.probe_sample", KeyKind::kCount, 1, 65536, false, "",
     "while a USDT consumer is attached, the append and read probes fire on one call in N",
     NUMBER(metrics.probe_sample)},
    {"consumers.max_groups", KeyKind::kCount, 1, 1u << 16, false, "",
     "consumer groups one directory can hold (control-region table, fixed at creation)",
     NUMBER(consumers.max_groups)},
    {"consumers.max_offsets", KeyKind::kCount, 1, 1u << 22, false, "",
     "(group, stream) offsets one directory can hold (fixed at creation)",
     NUMBER(consumers.max_offsets)},
    {"consumers.wait_spin", KeyKind::kDuration, 0, 10 * kMs, false, "",
     "how long a consumer with nothing to read polls before it sleeps on the futex (see "
     "\"Consumers\"): CPU for latency",
     NUMBER(consumers.wait_spin_ns)},
    {"retention.max_age", KeyKind::kDuration, 0, UINT64_MAX, false, "",
     "delete sealed segments whose entries are all older, e.g. `7d` (`0`: no age limit); see "
     "\"Retention\"",
     NUMBER(retention.max_age_ns)},
    {"retention.max_shard_bytes", KeyKind::kSize, 0, UINT64_MAX, false, "",
     "a shard's segment files, at most (`0`: no limit; else at least `storage.max_segment_bytes`)",
     NUMBER(retention.max_shard_bytes)},
    {"retention.max_total_bytes", KeyKind::kSize, 0, UINT64_MAX, false, "",
     "every shard's segment files together, at most (`0`: no limit; else at least "
     "`storage.max_segment_bytes`)",
     NUMBER(retention.max_total_bytes)},
    {"retention.min_segments", KeyKind::kCount, 1, 1u << 20, false, "",
     "segments always kept per shard, the active one included",
     NUMBER(retention.min_segments)},
    {"retention.force_delete_after", KeyKind::kDuration, 0, UINT64_MAX, false, "",
     "entries a consumer group has not consumed are kept past `max_age` until this old (`0`: "
     "until a size budget or the free-disk floor needs them); at least `max_age`",
     NUMBER(retention.force_delete_after_ns)},
    {"retention.min_free_bytes", KeyKind::kSize, 0, UINT64_MAX, false, "",
     "delete the oldest segments while the file system has less free space (`0`: no floor)",
     NUMBER(retention.min_free_bytes)},
    {"retention.interval", KeyKind::kDuration, kMs, 24 * 3600 * kSec, true, "",
     "how often the background pass runs (`0`: never in the background, only `RunRetention` / "
     "`comet retention`)",
     NUMBER(retention.interval_ns)},
    {"read.check_crc", KeyKind::kBool, 0, UINT64_MAX, false, "",
     "check the CRC of every record a read returns; `false` checks each segment once, in full, "
     "then trusts the page cache (damage made later is returned as data)",
     NUMBER(read.check_crc)},
};

#undef NUMBER
#undef TEXT

// v with the largest unit that divides it exactly ("64MiB", "1m"), or bare.
std::string WithUnit(uint64_t v, std::span<const std::pair<const char*, uint64_t>> units) {
  for (const auto& [name, size] : units) {
    if (v != 0 && v % size == 0) return std::to_string(v / size) + name;
  }
  return std::to_string(v);
}

std::string ShowNumber(KeyKind kind, uint64_t v) {
  static constexpr std::pair<const char*, uint64_t> kSizes[] = {
      {"PiB", 1ull << 50}, {"TiB", 1ull << 40}, {"GiB", 1ull << 30}, {"MiB", 1ull << 20},
      {"KiB", 1ull << 10}};
  static constexpr std::pair<const char*, uint64_t> kDurations[] = {
      {"d", 86400 * kSec}, {"h", 3600 * kSec}, {"m", 60 * kSec}, {"s", kSec},
      {"ms", kMs},         {"us", 1000},       {"ns", 1}};
  if (kind == KeyKind::kSize) return WithUnit(v, kSizes);
  if (kind == KeyKind::kDuration) return v == 0 ? "0" : WithUnit(v, kDurations);
  return std::to_string(v);
}

// `a`, `b`, `c` from "a|b|c".
std::string ListChoices(std::string_view choices) {
  std::string out;
  while (!choices.empty()) {
    const size_t bar = choices.find('|');
    out += (out.empty() ? "`" : ", `") + std::string(choices.substr(0, bar)) + "`";
    choices = bar == std::string_view::npos ? std::string_view() : choices.substr(bar + 1);
  }
  return out;
}

}  // namespace

std::span<const ConfigKey> ConfigKeys() { return kKeys; }

const ConfigKey* FindConfigKey(std::string_view name) {
  for (const ConfigKey& k : kKeys) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

std::string ShowValue(const ConfigKey& k, const Config& c) {
  switch (k.kind) {
    case KeyKind::kBool: return k.get(c) ? "true" : "false";
    case KeyKind::kChoice: {
      std::string_view rest = k.choices;
      for (uint64_t i = k.get(c); i > 0 && rest.find('|') != std::string_view::npos; i--) {
        rest = rest.substr(rest.find('|') + 1);
      }
      return std::string(rest.substr(0, rest.find('|')));
    }
    case KeyKind::kPath: return k.get_text(c);
    default: return ShowNumber(k.kind, k.get(c));
  }
}

std::string RangeText(const ConfigKey& k) {
  switch (k.kind) {
    case KeyKind::kBool: return "`true`, `false`";
    case KeyKind::kChoice: return ListChoices(k.choices);
    case KeyKind::kPath: return "an absolute path, or empty";
    default: break;
  }
  if (k.lo == 0 && k.hi == UINT64_MAX) return "any";
  std::string range = ShowNumber(k.kind, k.lo) + "–" + ShowNumber(k.kind, k.hi);
  return k.zero_off ? "`0`, or " + range : range;
}

}  // namespace internal
}  // namespace comet
