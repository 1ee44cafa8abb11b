// The demo's synthetic log workload: what a small web shop's edge machine logs.
//
// Each simulated request produces zero to three JSON application log lines (one service each)
// followed by an nginx access line, all carrying the request id, which is also the routing key,
// so that one request's lines land in one shard. Roughly 1.5% of requests fail with a 5xx and
// log an error with a long stack trace (4.5-13 KiB, very compressible). Deterministic for a seed.
#pragma once

#include <cstdint>
#include <string>

namespace comet::cli {

class LogWorkload {
 public:
  explicit LogWorkload(uint64_t seed);

  // Writes the next log line into *line and its routing key (the request id) into *key.
  void Next(std::string* line, std::string* key);

 private:
  struct Request {
    char id[17];  // 16 hex digits
    uint32_t user = 0;
    uint32_t route = 0;
    uint32_t status = 200;
    uint32_t bytes = 0;
    uint32_t micros = 0;  // response time
    uint32_t app_lines_left = 0;
    bool error_logged = false;
  };

  uint64_t Rand();
  uint32_t Below(uint32_t n) { return static_cast<uint32_t>(Rand() % n); }
  void StartRequest();
  void Tick();
  void AccessLine(std::string* out);
  void AppLine(std::string* out);
  void ErrorLine(std::string* out);
  void RefreshClock();
  void AppendIsoTime(std::string* out);
  void AppendNginxTime(std::string* out);
  void AppendPath(std::string* out);

  uint64_t state_;
  int64_t now_us_;  // simulated wall clock
  int64_t cached_second_ = -1;
  char iso_[32] = {};    // "2024-12-01T10:15:32" for cached_second_
  char nginx_[40] = {};  // "01/Dec/2024:10:15:32 +0000"
  Request req_;
};

}  // namespace comet::cli
