// The demo's synthetic log workload (see demo_workload.h). Lines are assembled with plain
// appends rather than printf so that generating two million of them stays well under a second.
#include "demo_workload.h"

#include <ctime>
#include <string_view>

namespace comet::cli {
namespace {

constexpr int64_t kStartSeconds = 1733047200;  // 2024-12-01T10:00:00Z

constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

struct Route {
  std::string_view method;
  std::string_view path;  // '{}' is replaced by a number derived from the request
  std::string_view service;
  uint32_t weight;
};

constexpr Route kRoutes[] = {
    {"GET", "/api/v1/products/{}", "catalog", 30},
    {"GET", "/api/v1/search?q=wireless+headphones&page={}", "search", 14},
    {"GET", "/api/v1/users/{}/orders?limit=20", "orders", 10},
    {"POST", "/api/v1/cart/items", "cart", 9},
    {"GET", "/static/js/app.{}.min.js", "static", 12},
    {"POST", "/api/v1/checkout", "checkout", 5},
    {"POST", "/api/v1/auth/login", "auth", 4},
    {"GET", "/api/v2/recommendations?user={}&limit=24", "recommend", 8},
    {"DELETE", "/api/v1/cart/items/{}", "cart", 3},
    {"GET", "/healthz", "edge", 5},
};

constexpr std::string_view kAgents[] = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.39 Mobile Safari/537.36",
    "curl/8.5.0",
    "kube-probe/1.31",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
};

constexpr std::string_view kReferers[] = {"-", "https://shop.example.com/",
                                          "https://shop.example.com/cart",
                                          "https://www.google.com/"};

struct Message {
  std::string_view level;
  std::string_view text;
};

constexpr Message kMessages[] = {
    {"info", "request handled"},
    {"info", "cache hit"},
    {"info", "cache miss, loaded from primary"},
    {"debug", "query plan selected index idx_products_category"},
    {"info", "price computed with 2 promotions applied"},
    {"info", "session refreshed"},
    {"warn", "slow query: SELECT * FROM order_items WHERE order_id = $1"},
    {"info", "inventory reserved"},
    {"warn", "upstream retry after connection reset"},
    {"info", "payment authorized"},
};

constexpr std::string_view kFrames[] = {
    "com.example.shop.checkout.PaymentService.authorize(PaymentService.java:",
    "com.example.shop.checkout.CheckoutController.submit(CheckoutController.java:",
    "com.example.shop.inventory.ReservationClient.reserve(ReservationClient.java:",
    "io.grpc.stub.ClientCalls.blockingUnaryCall(ClientCalls.java:",
    "org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:",
    "org.apache.tomcat.util.net.NioEndpoint$SocketProcessor.doRun(NioEndpoint.java:",
    "java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:",
};

void AppendUint(std::string* out, uint64_t v) {
  char buf[20];
  char* p = buf + sizeof buf;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out->append(p, static_cast<size_t>(buf + sizeof buf - p));
}

// v / 10^decimals with exactly `decimals` digits after the point.
void AppendFixed(std::string* out, uint64_t v, unsigned decimals) {
  uint64_t scale = 1;
  for (unsigned i = 0; i < decimals; ++i) scale *= 10;
  AppendUint(out, v / scale);
  out->push_back('.');
  uint64_t frac = v % scale;
  for (uint64_t s = scale / 10; s > 0; s /= 10) {
    out->push_back(static_cast<char>('0' + frac / s % 10));
  }
}

void AppendWithNumber(std::string* out, std::string_view pattern, uint64_t n) {
  size_t hole = pattern.find("{}");
  if (hole == std::string_view::npos) {
    out->append(pattern);
    return;
  }
  out->append(pattern.substr(0, hole));
  AppendUint(out, n);
  out->append(pattern.substr(hole + 2));
}

const Route& PickRoute(uint32_t r) {
  static const uint32_t total = [] {
    uint32_t t = 0;
    for (const Route& route : kRoutes) t += route.weight;
    return t;
  }();
  r %= total;
  for (const Route& route : kRoutes) {
    if (r < route.weight) return route;
    r -= route.weight;
  }
  return kRoutes[0];
}

}  // namespace

LogWorkload::LogWorkload(uint64_t seed) : state_(seed), now_us_(kStartSeconds * 1'000'000) {
  StartRequest();
}

// splitmix64: fast, and good enough for a workload.
uint64_t LogWorkload::Rand() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void LogWorkload::Tick() { now_us_ += Below(800); }

void LogWorkload::StartRequest() {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t id = Rand();
  for (int i = 0; i < 16; ++i) req_.id[i] = kHex[(id >> (4 * i)) & 15];
  req_.id[16] = '\0';
  // A few heavy users and a long tail.
  req_.user = Below(4) == 0 ? 1000 + Below(50) : 1000 + Below(200000);
  req_.route = static_cast<uint32_t>(&PickRoute(static_cast<uint32_t>(Rand())) - kRoutes);
  uint32_t roll = Below(1000);
  req_.status = roll < 15   ? 500 + 2 * Below(2)  // 500 or 502: logs a stack trace
                : roll < 45 ? 404
                : roll < 60 ? 401
                : roll < 120 ? 304
                : kRoutes[req_.route].method == "POST" ? 201
                                                       : 200;
  req_.bytes = req_.status == 304 ? 0 : 200 + Below(Below(8) == 0 ? 250000 : 12000);
  req_.micros = 300 + Below(Below(20) == 0 ? 2'000'000 : 40'000);
  req_.app_lines_left = kRoutes[req_.route].service == "static" ? 0 : Below(4);
  req_.error_logged = req_.status < 500;
}

void LogWorkload::Next(std::string* line, std::string* key) {
  line->clear();
  key->assign(req_.id, 16);
  Tick();
  if (!req_.error_logged) {
    req_.error_logged = true;
    ErrorLine(line);
  } else if (req_.app_lines_left > 0) {
    --req_.app_lines_left;
    AppLine(line);
  } else {
    AccessLine(line);
    StartRequest();
  }
}

void LogWorkload::RefreshClock() {
  int64_t second = now_us_ / 1'000'000;
  if (second == cached_second_) return;
  cached_second_ = second;
  std::time_t t = static_cast<std::time_t>(second);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(iso_, sizeof iso_, "%Y-%m-%dT%H:%M:%S", &tm);
  std::strftime(nginx_, sizeof nginx_, "%d/---/%Y:%H:%M:%S +0000", &tm);
  std::string_view month = kMonths[tm.tm_mon];  // not locale-dependent, unlike %b
  for (size_t i = 0; i < 3; ++i) nginx_[3 + i] = month[i];
}

void LogWorkload::AppendIsoTime(std::string* out) {
  RefreshClock();
  out->append(iso_);
  out->push_back('.');
  uint64_t micros = static_cast<uint64_t>(now_us_ % 1'000'000);
  for (uint64_t s = 100000; s > 0; s /= 10) {
    out->push_back(static_cast<char>('0' + micros / s % 10));
  }
  out->push_back('Z');
}

void LogWorkload::AppendNginxTime(std::string* out) {
  RefreshClock();
  out->append(nginx_);
}

void LogWorkload::AppendPath(std::string* out) {
  AppendWithNumber(out, kRoutes[req_.route].path, req_.user * 7 % 100000);
}

// 203.0.113.42 - - [01/Dec/2024:10:15:32 +0000] "GET /p HTTP/1.1" 200 5123 "-" "UA" rt=0.012
// uct=0.001 req_id=...
void LogWorkload::AccessLine(std::string* out) {
  const Route& route = kRoutes[req_.route];
  uint64_t ip = (req_.user * 2654435761u) >> 8;
  out->append(ip & 1 ? "198.51." : "203.0.");
  AppendUint(out, ip % 256);
  out->push_back('.');
  AppendUint(out, (ip >> 8) % 254 + 1);
  out->append(" - - [");
  AppendNginxTime(out);
  out->append("] \"");
  out->append(route.method);
  out->push_back(' ');
  AppendPath(out);
  out->append(Below(3) == 0 ? " HTTP/2.0\" " : " HTTP/1.1\" ");
  AppendUint(out, req_.status);
  out->push_back(' ');
  AppendUint(out, req_.bytes);
  out->append(" \"");
  out->append(kReferers[Below(std::size(kReferers))]);
  out->append("\" \"");
  out->append(kAgents[req_.user % std::size(kAgents)]);
  out->append("\" rt=");
  AppendFixed(out, req_.micros / 1000, 3);
  out->append(" uct=");
  AppendFixed(out, Below(3), 3);
  out->append(" req_id=");
  out->append(req_.id, 16);
}

// {"ts":"...","level":"info","service":"catalog","req_id":"...","user_id":1234,
//  "msg":"cache hit","duration_ms":1.234,"route":"GET /api/..."}
void LogWorkload::AppLine(std::string* out) {
  const Route& route = kRoutes[req_.route];
  const Message& m = kMessages[Below(std::size(kMessages))];
  out->append("{\"ts\":\"");
  AppendIsoTime(out);
  out->append("\",\"level\":\"");
  out->append(m.level);
  out->append("\",\"service\":\"");
  out->append(route.service);
  out->append("\",\"req_id\":\"");
  out->append(req_.id, 16);
  out->append("\",\"user_id\":");
  AppendUint(out, req_.user);
  out->append(",\"msg\":\"");
  out->append(m.text);
  out->append("\",\"duration_ms\":");
  AppendFixed(out, Below(req_.micros), 3);
  out->append(",\"route\":\"");
  out->append(route.method);
  out->push_back(' ');
  AppendPath(out);
  out->push_back('"');
  if (Below(4) == 0) {
    out->append(",\"db\":{\"queries\":");
    AppendUint(out, 1 + Below(12));
    out->append(",\"rows\":");
    AppendUint(out, Below(500));
    out->append(",\"pool\":\"primary-");
    AppendUint(out, Below(3));
    out->append("\"}");
  }
  out->push_back('}');
}

// An error with a Java-style stack trace: 60-160 frames, 4.5-13 KiB, highly repetitive.
void LogWorkload::ErrorLine(std::string* out) {
  const Route& route = kRoutes[req_.route];
  out->append("{\"ts\":\"");
  AppendIsoTime(out);
  out->append("\",\"level\":\"error\",\"service\":\"");
  out->append(route.service);
  out->append("\",\"req_id\":\"");
  out->append(req_.id, 16);
  out->append("\",\"user_id\":");
  AppendUint(out, req_.user);
  out->append(",\"status\":");
  AppendUint(out, req_.status);
  out->append(",\"msg\":\"upstream call failed: io.grpc.StatusRuntimeException: UNAVAILABLE: "
              "connection refused\",\"stack\":\"io.grpc.StatusRuntimeException: UNAVAILABLE");
  uint32_t frames = 60 + Below(100);
  for (uint32_t i = 0; i < frames; ++i) {
    out->append("\\n\\tat ");
    out->append(kFrames[(i + Below(2)) % std::size(kFrames)]);
    AppendUint(out, 40 + (i * 37 + req_.user) % 900);
    out->push_back(')');
  }
  out->append("\"}");
}

}  // namespace comet::cli
