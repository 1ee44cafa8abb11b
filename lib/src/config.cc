#include "comet/config.h"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "comet/format.h"

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
                         "' has an unknown unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)");
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
  static const std::vector<std::string> keys = {
      "storage.max_segment_bytes", "storage.max_entry_bytes", "storage.prefault_bytes",
      "storage.max_preallocated_bytes", "storage.max_streams",       "storage.huge_pages",
      "storage.drop_synced_pages", "sync.mode",
      "sync.interval",
      "sync.entries",              "compression.min_bytes",   "compression.level",
      "index.interval",            "concurrency.mode",        "concurrency.max_processes",
      "open.read_only",            "metrics.bpf_pin_dir",     "metrics.probe_sample",
      "read.check_crc",            "consumers.max_groups",    "consumers.max_offsets",
      "retention.max_age",         "retention.max_shard_bytes", "retention.max_total_bytes",
      "retention.min_segments",    "retention.force_delete_after", "retention.min_free_bytes",
      "retention.interval"};
  return keys;
}

Status Config::Set(std::string_view key, std::string_view value) {
  if (key == "storage.huge_pages") {
    if (value == "auto") storage.huge_pages = HugePages::kAuto;
    else if (value == "true") storage.huge_pages = HugePages::kOn;
    else if (value == "false") storage.huge_pages = HugePages::kOff;
    else return BadValue(key, value, "expected auto, true or false");
    return Status::Ok();
  }
  auto size_in = [&](uint64_t lo, uint64_t hi, uint64_t* field) -> Status {
    Result<uint64_t> r = ParseSize(value);
    if (!r.ok()) return BadValue(key, value, r.status().message());
    if (*r < lo || *r > hi) {
      return BadValue(key, value,
                      "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    }
    *field = *r;
    return Status::Ok();
  };
  auto count_in = [&](uint64_t lo, uint64_t hi, auto* field) -> Status {
    Result<uint64_t> r = ParseCount(key, value);
    if (!r.ok()) return r.status();
    if (*r < lo || *r > hi) {
      return BadValue(key, value,
                      "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    }
    *field = static_cast<std::remove_pointer_t<decltype(field)>>(*r);
    return Status::Ok();
  };
  if (key == "storage.max_segment_bytes") return size_in(4096, 4ull << 30, &storage.max_segment_bytes);
  if (key == "storage.max_entry_bytes") return size_in(0, format::kMaxStoredSize, &storage.max_entry_bytes);
  if (key == "storage.prefault_bytes") return size_in(0, 1ull << 30, &storage.prefault_bytes);
  if (key == "storage.max_preallocated_bytes") {
    return size_in(0, 1ull << 50, &storage.max_preallocated_bytes);
  }
  if (key == "storage.max_streams") return count_in(1, 1u << 20, &storage.max_streams);
  if (key == "sync.mode") {
    if (value == "none") sync.mode = SyncMode::kNone;
    else if (value == "interval") sync.mode = SyncMode::kInterval;
    else if (value == "always") sync.mode = SyncMode::kAlways;
    else return BadValue(key, value, "expected none, interval or always");
    return Status::Ok();
  }
  auto duration_in = [&](uint64_t lo, uint64_t hi, std::string_view range,
                         uint64_t* field) -> Status {
    Result<uint64_t> r = ParseDuration(value);
    if (!r.ok()) return BadValue(key, value, r.status().message());
    if (*r < lo || *r > hi) return BadValue(key, value, range);
    *field = *r;
    return Status::Ok();
  };
  if (key == "sync.interval") {
    return duration_in(1'000'000, 3600'000'000'000ull, "must be between 1ms and 1h",
                       &sync.interval_ns);
  }
  if (key == "sync.entries") return count_in(1, 1ull << 40, &sync.entries);
  if (key == "compression.min_bytes") return size_in(0, format::kMaxStoredSize, &compression.min_bytes);
  if (key == "compression.level") return count_in(1, 19, &compression.level);
  if (key == "index.interval") return count_in(1, 1u << 16, &index.interval);
  if (key == "concurrency.mode") {
    if (value == "single") concurrency.mode = ConcurrencyMode::kSingle;
    else if (value == "multi") concurrency.mode = ConcurrencyMode::kMulti;
    else return BadValue(key, value, "expected single or multi");
    return Status::Ok();
  }
  if (key == "concurrency.max_processes") return count_in(1, 4096, &concurrency.max_processes);
  if (key == "storage.drop_synced_pages") {
    Result<bool> r = ParseBool(key, value);
    if (!r.ok()) return r.status();
    storage.drop_synced_pages = *r;
    return Status::Ok();
  }
  if (key == "open.read_only") {
    Result<bool> r = ParseBool(key, value);
    if (!r.ok()) return r.status();
    open.read_only = *r;
    return Status::Ok();
  }
  if (key == "metrics.probe_sample") return count_in(1, 65536, &metrics.probe_sample);
  if (key == "metrics.bpf_pin_dir") {
    if (!value.empty() && value[0] != '/') {
      return BadValue(key, value, "must be an absolute path, or empty to disable");
    }
    metrics.bpf_pin_dir = std::string(value);
    return Status::Ok();
  }
  if (key == "consumers.max_groups") return count_in(1, 1u << 16, &consumers.max_groups);
  if (key == "consumers.max_offsets") return count_in(1, 1u << 22, &consumers.max_offsets);
  if (key == "retention.max_age") {
    return duration_in(0, UINT64_MAX, "", &retention.max_age_ns);
  }
  if (key == "retention.force_delete_after") {
    return duration_in(0, UINT64_MAX, "", &retention.force_delete_after_ns);
  }
  if (key == "retention.interval") {
    Result<uint64_t> r = ParseDuration(value);
    if (!r.ok()) return BadValue(key, value, r.status().message());
    if (*r != 0 && (*r < 1'000'000 || *r > 86400'000'000'000ull)) {
      return BadValue(key, value, "must be 0 (no background pass) or between 1ms and 1d");
    }
    retention.interval_ns = *r;
    return Status::Ok();
  }
  if (key == "retention.max_shard_bytes") return size_in(0, UINT64_MAX, &retention.max_shard_bytes);
  if (key == "retention.max_total_bytes") return size_in(0, UINT64_MAX, &retention.max_total_bytes);
  if (key == "retention.min_free_bytes") return size_in(0, UINT64_MAX, &retention.min_free_bytes);
  if (key == "retention.min_segments") return count_in(1, 1u << 20, &retention.min_segments);
  if (key == "read.check_crc") {
    Result<bool> r = ParseBool(key, value);
    if (!r.ok()) return r.status();
    read.check_crc = *r;
    return Status::Ok();
  }
  std::string known;
  for (const std::string& k : Keys()) known += (known.empty() ? "" : ", ") + k;
  return Status::Invalid("unknown config key '" + std::string(key) + "' (known keys: " + known + ")");
}

Status Config::Validate() const {
  if (storage.max_segment_bytes < 4096 || storage.max_segment_bytes > (4ull << 30)) {
    return Status::Invalid("config storage.max_segment_bytes=" +
                           std::to_string(storage.max_segment_bytes) +
                           ": must be between 4096 and 4GiB");
  }
  if (storage.max_entry_bytes > format::kMaxStoredSize) {
    return Status::Invalid("config storage.max_entry_bytes=" +
                           std::to_string(storage.max_entry_bytes) + ": the limit is " +
                           std::to_string(format::kMaxStoredSize));
  }
  if (storage.max_streams == 0) return Status::Invalid("config storage.max_streams must be > 0");
  if (index.interval == 0) return Status::Invalid("config index.interval must be > 0");
  if (consumers.max_groups == 0 || consumers.max_offsets == 0) {
    return Status::Invalid("config consumers.max_groups and consumers.max_offsets must be > 0");
  }
  if (concurrency.max_processes == 0 || concurrency.max_processes > 4096) {
    return Status::Invalid("config concurrency.max_processes=" +
                           std::to_string(concurrency.max_processes) + ": must be between 1 and 4096");
  }
  if (compression.level < 1 || compression.level > 19) {
    return Status::Invalid("config compression.level=" + std::to_string(compression.level) +
                           ": must be between 1 and 19");
  }
  if (storage.max_preallocated_bytes > (1ull << 50)) {
    return Status::Invalid("config storage.max_preallocated_bytes=" +
                           std::to_string(storage.max_preallocated_bytes) +
                           ": must be at most 1PiB");
  }
  if (sync.interval_ns < 1'000'000 || sync.interval_ns > 3600'000'000'000ull) {
    return Status::Invalid("config sync.interval=" + std::to_string(sync.interval_ns) +
                           "ns: must be between 1ms and 1h");
  }
  if (sync.entries == 0) return Status::Invalid("config sync.entries must be > 0");
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

}  // namespace comet
