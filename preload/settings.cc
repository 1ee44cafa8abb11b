#include "settings.h"

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "comet/stream.h"

extern char** environ;

namespace comet_preload {
namespace {

using comet::Result;
using comet::Status;

Status Bad(std::string_view var, std::string_view value, std::string_view why) {
  return Status::Invalid(std::string(var) + "='" + std::string(value) + "': " + std::string(why));
}

const char* Get(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

Status ParseCapture(std::string_view v, bool capture[kSinkCount]) {
  static constexpr std::string_view kNames[kSinkCount] = {"stdout", "stderr", "syslog"};
  for (int i = 0; i < kSinkCount; i++) capture[i] = false;
  size_t pos = 0;
  while (pos <= v.size()) {
    size_t end = v.find(',', pos);
    if (end == std::string_view::npos) end = v.size();
    std::string_view word = v.substr(pos, end - pos);
    int found = -1;
    for (int i = 0; i < kSinkCount; i++) {
      if (word == kNames[i]) found = i;
    }
    if (found < 0) return Bad("COMET_CAPTURE", v, "expected a comma-separated list of stdout, stderr, syslog");
    capture[found] = true;
    pos = end + 1;
  }
  return Status::Ok();
}

Status ParseFlag(const char* var, bool* out) {
  const char* v = Get(var);
  if (!v) return Status::Ok();
  if (std::strcmp(v, "0") == 0 || std::strcmp(v, "1") == 0) {
    *out = v[0] == '1';
    return Status::Ok();
  }
  return Bad(var, v, "expected 0 or 1");
}

// COMET_CONFIG_<key with dots as underscores>: matched against the known keys, so that keys
// with underscores of their own (storage.max_segment_bytes) map back unambiguously.
Status ParseConfigVars(comet::Config* cfg) {
  static constexpr std::string_view kPrefix = "COMET_CONFIG_";
  for (char** e = environ; e && *e; e++) {
    std::string_view entry(*e);
    if (entry.substr(0, kPrefix.size()) != kPrefix) continue;
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view var = entry.substr(0, eq), value = entry.substr(eq + 1);
    std::string_view name = var.substr(kPrefix.size());
    const std::string* key = nullptr;
    for (const std::string& k : comet::Config::Keys()) {
      std::string flat = k;
      for (char& c : flat) c = c == '.' ? '_' : c;
      if (flat == name) key = &k;
    }
    if (!key) return Bad(var, value, "no such config key");
    if (*key == "concurrency.mode" || *key == "open.read_only") {
      return Bad(var, value, "fixed by the shim (every process writes its own shards)");
    }
    if (Status st = cfg->Set(*key, value); !st.ok()) return Bad(var, value, st.message());
  }
  return cfg->Validate();
}

}  // namespace

Result<Settings> ReadSettings() {
  Settings s;
  const char* dir = Get("COMET_DIR");
  if (!dir) return Status::NotFound("COMET_DIR is not set");
  s.dir = dir;
  if (const char* v = Get("COMET_CAPTURE")) {
    if (Status st = ParseCapture(v, s.capture); !st.ok()) return st;
  }
  static constexpr const char* kStreamVars[kSinkCount] = {
      "COMET_STDOUT_STREAM", "COMET_STDERR_STREAM", "COMET_SYSLOG_STREAM"};
  for (int i = 0; i < kSinkCount; i++) {
    const char* v = Get(kStreamVars[i]);
    if (!v) continue;
    if (Status st = comet::ValidatePrefix(v); !st.ok()) return Bad(kStreamVars[i], v, st.message());
    s.prefix[i] = v;
  }
  if (const char* v = Get("COMET_SHARDS")) {
    std::string_view t(v);
    uint32_t n = 0;
    auto r = std::from_chars(t.data(), t.data() + t.size(), n);
    if (r.ec != std::errc() || r.ptr != t.data() + t.size() || n == 0 || n > comet::kMaxShards) {
      return Bad("COMET_SHARDS", v, "expected a shard count from 1 to 65536");
    }
    s.shards = n;
  }
  if (Status st = ParseFlag("COMET_TEE", &s.tee); !st.ok()) return st;
  if (Status st = ParseConfigVars(&s.config); !st.ok()) return st;
  if (const char* v = Get("COMET_MAX_LINE")) {
    Result<uint64_t> n = comet::ParseSize(v);
    if (!n.ok()) return Bad("COMET_MAX_LINE", v, n.status().message());
    if (*n < 1 || *n > s.config.storage.max_entry_bytes || *n > (1ull << 30)) {
      return Bad("COMET_MAX_LINE", v,
                 "must be at least 1 byte and at most storage.max_entry_bytes (" +
                     std::to_string(s.config.storage.max_entry_bytes) + ")");
    }
    s.max_line = *n;
  }
  if (const char* v = Get("COMET_USER")) s.user = v;
  if (const char* v = Get("COMET_SYSLOG_SOCKET")) s.syslog_socket = v;
  return s;
}

}  // namespace comet_preload
