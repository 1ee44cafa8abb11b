// `comet exporter DIR [--listen ADDRESS:PORT]`: a tiny HTTP/1.1 server for Prometheus.
//
// GET /metrics reads the stats afresh (comet/stats.h, read-only) and answers in the OpenMetrics
// format when the Accept header asks for it, else in the classic text format 0.0.4. One thread,
// one ppoll() loop over non-blocking sockets: every connection has a size limit and a deadline,
// so a slow or stuck client costs a slot for a few seconds and never blocks the others. Every
// response closes its connection (no keep-alive to track). SIGINT and SIGTERM are blocked except
// inside ppoll, so a stop request is never lost between two checks; the loop then closes
// everything and exits 0.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "cli.h"
#include "commands.h"
#include "comet/stats.h"

namespace comet::cli {
namespace {

constexpr OptionSpec kOptions[] = {{"--listen", true}};
constexpr const char* kDefaultListen = "127.0.0.1:9464";
constexpr size_t kMaxRequestBytes = 8 << 10;  // request line and headers; we take no bodies
constexpr int64_t kConnectionDeadlineMs = 5000;
constexpr size_t kMaxConnections = 64;        // beyond this, new clients wait in the backlog

constexpr std::string_view kOpenMetricsType =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
constexpr std::string_view kClassicType = "text/plain; version=0.0.4; charset=utf-8";

volatile sig_atomic_t g_stop = 0;
void OnStopSignal(int) { g_stop = 1; }

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- listening address -----------------------------------------------------------------------

struct ListenAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;
  bool v6 = false;
};

// "127.0.0.1:9464", "[::1]:9464", "localhost:9464", "0.0.0.0:9464". Names other than localhost
// are refused: resolving them could pick an address nobody meant to expose. An empty host is
// refused too, so listening on every interface always takes an explicit 0.0.0.0 or [::].
Result<ListenAddress> ParseListen(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Status::Invalid("--listen '" + text + "': " + why);
  };
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return bad("expected ADDRESS:PORT");
  std::string host = text.substr(0, colon);
  Result<uint64_t> port = ParseCount("--listen port", text.substr(colon + 1));
  if (!port.ok() || *port > 65535) return bad("the port must be 0..65535");
  if (host.empty()) return bad("give an address (0.0.0.0 listens on every interface)");
  if (host == "localhost") host = "127.0.0.1";

  ListenAddress out;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    auto* a = reinterpret_cast<sockaddr_in6*>(&out.addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(*port));
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a->sin6_addr) != 1) {
      return bad("not an IPv6 address");
    }
    out.len = sizeof(sockaddr_in6);
    out.v6 = true;
    return out;
  }
  auto* a = reinterpret_cast<sockaddr_in*>(&out.addr);
  a->sin_family = AF_INET;
  a->sin_port = htons(static_cast<uint16_t>(*port));
  if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) {
    return bad("not an IPv4 address, [IPv6] address or localhost");
  }
  out.len = sizeof(sockaddr_in);
  return out;
}

// The address actually bound (port 0 becomes the kernel's pick), as a URL host:port.
std::string BoundHostPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  auto* a = reinterpret_cast<sockaddr_in*>(&ss);
  inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
  return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
}

Result<int> Listen(const ListenAddress& where, const std::string& text) {
  int fd = socket(where.v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(errno, "socket for " + text);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // restart despite TIME_WAIT
  if (bind(fd, reinterpret_cast<const sockaddr*>(&where.addr), where.len) != 0 ||
      listen(fd, 64) != 0) {
    Status st = Status::FromErrno(errno, "listen on " + text);
    close(fd);
    return st;
  }
  return fd;
}

// ---- HTTP ------------------------------------------------------------------------------------

struct Request {
  std::string method, path, accept;
};

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// Where the request head ends (the position of the empty line that ends it), or npos. Lines
// end in CRLF, or in a bare LF, which RFC 9112 (2.2) lets a server accept: some clients and
// hand-typed requests send it.
size_t HeadEnd(std::string_view in) {
  for (size_t nl = in.find('\n'); nl != std::string_view::npos; nl = in.find('\n', nl + 1)) {
    size_t next = nl + 1;
    if (next < in.size() && in[next] == '\r') next++;
    if (next < in.size() && in[next] == '\n') return nl;
  }
  return std::string_view::npos;
}

// Parses the request line and the one header we use. `head` ends before the empty line; its
// lines end in LF, with or without CR.
bool ParseRequest(std::string_view head, Request* out) {
  size_t eol = head.find('\n');
  std::string_view line = Trim(head.substr(0, eol));
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1 || !line.substr(sp2 + 1).starts_with("HTTP/")) {
    return false;
  }
  out->method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  out->path = target.substr(0, target.find('?'));  // scrapers may add parameters; ignored
  while (eol != std::string_view::npos) {
    size_t start = eol + 1;
    eol = head.find('\n', start);
    std::string_view h = head.substr(start, eol == std::string_view::npos ? eol : eol - start);
    size_t colon = h.find(':');
    if (colon != std::string_view::npos && EqualsIgnoreCase(Trim(h.substr(0, colon)), "accept")) {
      if (!out->accept.empty()) out->accept += ",";
      out->accept += Trim(h.substr(colon + 1));
    }
  }
  return true;
}

// True when the Accept header lists application/openmetrics-text with a non-zero q (Prometheus
// sends it first, with the classic format as a fallback).
bool WantsOpenMetrics(std::string_view accept) {
  while (!accept.empty()) {
    size_t comma = accept.find(',');
    std::string_view range = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    size_t semi = range.find(';');
    if (!EqualsIgnoreCase(Trim(range.substr(0, semi)), "application/openmetrics-text")) continue;
    bool zero_q = false;
    while (semi != std::string_view::npos) {
      std::string_view rest = range.substr(semi + 1);
      semi = rest.find(';');
      std::string_view param = Trim(rest.substr(0, semi));
      if (param.starts_with("q=") || param.starts_with("Q=")) {
        zero_q = std::strtod(std::string(param.substr(2)).c_str(), nullptr) <= 0.0;
      }
      range = rest;
    }
    if (!zero_q) return true;
  }
  return false;
}

// The classic text format (0.0.4) has no "# EOF" and no UNIT lines, and names a counter family
// by its sample name, with "_total" (as the official client libraries do).
std::string ToClassicText(std::string_view openmetrics) {
  std::vector<std::string> counters;
  std::string out;
  auto counter_name = [&](std::string_view name) {
    for (const std::string& c : counters) {
      if (c == name) return true;
    }
    return false;
  };
  while (!openmetrics.empty()) {
    size_t nl = openmetrics.find('\n');
    std::string_view line = openmetrics.substr(0, nl);
    openmetrics = nl == std::string_view::npos ? std::string_view() : openmetrics.substr(nl + 1);
    if (line == "# EOF" || line.starts_with("# UNIT ")) continue;
    if (line.starts_with("# TYPE ") || line.starts_with("# HELP ")) {
      std::string_view rest = line.substr(7);
      size_t sp = rest.find(' ');
      std::string_view name = rest.substr(0, sp);
      std::string_view tail = sp == std::string_view::npos ? "" : rest.substr(sp);
      if (line.starts_with("# TYPE ") && tail == " counter") counters.emplace_back(name);
      if (counter_name(name)) {
        out.append(line.substr(0, 7)).append(name).append("_total").append(tail).append("\n");
        continue;
      }
    }
    out.append(line).append("\n");
  }
  return out;
}

std::string Response(int code, std::string_view reason, std::string_view type,
                     const std::string& body, bool head_only, std::string_view extra = {}) {
  std::string r = Format("HTTP/1.1 %d ", code);
  r.append(reason).append("\r\nContent-Type: ").append(type);
  r.append(Format("\r\nContent-Length: %zu\r\n", body.size()));
  r.append("Connection: close\r\nCache-Control: no-store\r\n").append(extra).append("\r\n");
  if (!head_only) r.append(body);
  return r;
}

constexpr std::string_view kTextType = "text/plain; charset=utf-8";

std::string IndexPage(const std::string& dir) {
  std::string escaped;
  for (char c : dir) {
    switch (c) {
      case '<': escaped += "&lt;"; break;
      case '>': escaped += "&gt;"; break;
      case '&': escaped += "&amp;"; break;
      case '"': escaped += "&quot;"; break;
      default: escaped += c;
    }
  }
  return "<!doctype html>\n<html><head><title>Comet exporter</title></head><body>\n"
         "<h1>Comet exporter</h1>\n<p>Data directory: <code>" + escaped +
         "</code></p>\n<p><a href=\"/metrics\">/metrics</a></p>\n</body></html>\n";
}

std::string MetricsResponse(const std::string& dir, const Request& req, bool head_only) {
  Result<DirectoryStats> stats = ReadStats(dir);
  if (!stats.ok()) {
    return Response(503, "Service Unavailable", kTextType, stats.status().message() + "\n",
                    head_only);
  }
  std::string body = FormatStatsPrometheus(*stats);
  if (WantsOpenMetrics(req.accept)) return Response(200, "OK", kOpenMetricsType, body, head_only);
  return Response(200, "OK", kClassicType, ToClassicText(body), head_only);
}

// HEAD is served like GET without the body, as every HTTP server must (RFC 9110 9.1).
std::string Respond(const std::string& dir, std::string_view head) {
  Request req;
  if (!ParseRequest(head, &req)) {
    return Response(400, "Bad Request", kTextType, "bad request\n", false);
  }
  const bool head_only = req.method == "HEAD";
  if (req.method != "GET" && !head_only) {
    return Response(405, "Method Not Allowed", kTextType, "only GET and HEAD\n", false,
                    "Allow: GET, HEAD\r\n");
  }
  if (req.path == "/metrics") return MetricsResponse(dir, req, head_only);
  if (req.path == "/") {
    return Response(200, "OK", "text/html; charset=utf-8", IndexPage(dir), head_only);
  }
  return Response(404, "Not Found", kTextType, "not found; try /metrics\n", head_only);
}

// ---- connections -----------------------------------------------------------------------------

struct Connection {
  enum State { kReading, kWriting, kDraining };
  int fd = -1;
  State state = kReading;
  std::string in, out;
  size_t sent = 0;
  int64_t deadline_ms = 0;
};

// Reads what is there, at most 16 reads per wake-up so that a client streaming garbage cannot
// keep the loop away from the others (and from its own deadline). Once the blank line ending
// the headers arrives, builds the response. False when the connection should be closed now.
bool OnReadable(const std::string& dir, Connection* c) {
  char buf[4096];
  for (int reads = 0; reads < 16; reads++) {
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (n == 0) return false;  // the peer is gone (or done, when draining)
    if (c->state == Connection::kDraining) continue;  // discard until the peer closes
    c->in.append(buf, static_cast<size_t>(n));
    size_t end = HeadEnd(c->in);
    const bool too_big = end == std::string::npos ? c->in.size() > kMaxRequestBytes
                                                  : end > kMaxRequestBytes;
    if (too_big) {
      c->out = Response(431, "Request Header Fields Too Large", kTextType,
                        "request larger than 8 KiB\n", false);
    } else if (end != std::string::npos) {
      c->out = Respond(dir, std::string_view(c->in).substr(0, end));
    } else {
      continue;
    }
    c->state = Connection::kWriting;
    return true;
  }
  return true;
}

// Sends what the socket takes. After the last byte, half-closes and drains: closing with unread
// request bytes would make the kernel send a reset that can destroy the response in flight.
bool OnWritable(Connection* c) {
  while (c->sent < c->out.size()) {
    ssize_t n = send(c->fd, c->out.data() + c->sent, c->out.size() - c->sent, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    c->sent += static_cast<size_t>(n);
  }
  shutdown(c->fd, SHUT_WR);
  c->state = Connection::kDraining;
  return true;
}

void AcceptAll(int listener, std::vector<Connection>* conns) {
  while (conns->size() < kMaxConnections) {
    int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a client that left before we got to it
    Connection c;
    c.fd = fd;
    c.deadline_ms = NowMs() + kConnectionDeadlineMs;
    conns->push_back(std::move(c));
  }
}

// The ppoll timeout: until the nearest connection deadline, or forever when idle.
int64_t NextTimeoutMs(const std::vector<Connection>& conns) {
  if (conns.empty()) return -1;
  int64_t next = conns.front().deadline_ms;
  for (const Connection& c : conns) next = std::min(next, c.deadline_ms);
  return std::max<int64_t>(0, next - NowMs());
}

// ppoll delivers a pending signal only when it would otherwise sleep; while clients keep it
// busy, a stop request could wait behind them, so it is also looked for after every wake-up.
bool StopPending() {
  sigset_t pending;
  if (g_stop || sigpending(&pending) != 0) return g_stop;
  return sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1;
}

// Runs until SIGINT or SIGTERM. `unblocked` is the signal mask to wait with.
int Serve(const std::string& dir, int listener, const sigset_t& unblocked) {
  std::vector<Connection> conns;
  std::vector<pollfd> fds;
  while (!g_stop) {
    // At the connection limit the listener is not polled: new clients wait in the backlog.
    const short accept_events = conns.size() < kMaxConnections ? POLLIN : 0;
    fds.assign(1, pollfd{listener, accept_events, 0});
    for (const Connection& c : conns) {
      const short events = c.state == Connection::kWriting ? POLLOUT : POLLIN;
      fds.push_back({c.fd, events, 0});
    }
    int64_t wait_ms = NextTimeoutMs(conns);
    timespec ts{wait_ms / 1000, (wait_ms % 1000) * 1000000};
    int ready = ppoll(fds.data(), fds.size(), wait_ms < 0 ? nullptr : &ts, &unblocked);
    if (ready < 0) {
      if (errno == EINTR) continue;  // a stop signal: the loop condition sees it
      PrintError(Status::FromErrno(errno, "poll").message());
      break;
    }
    if (StopPending()) break;
    const int64_t now = NowMs();
    std::vector<Connection> kept;
    for (size_t i = 0; i < conns.size(); i++) {
      Connection& c = conns[i];
      const short ev = fds[i + 1].revents;
      bool keep = now < c.deadline_ms;  // a stuck client loses its connection, nothing more
      if (keep && (ev & (POLLIN | POLLHUP | POLLERR)) && c.state != Connection::kWriting) {
        keep = OnReadable(dir, &c);
      }
      if (keep && c.state == Connection::kWriting) keep = OnWritable(&c);
      if (keep && (ev & (POLLERR | POLLNVAL))) keep = false;
      if (keep) {
        kept.push_back(std::move(c));
      } else {
        close(c.fd);
      }
    }
    conns = std::move(kept);
    if (fds[0].revents & POLLIN) AcceptAll(listener, &conns);
  }
  for (const Connection& c : conns) close(c.fd);
  return kExitOk;
}

// Blocks SIGINT and SIGTERM (they are delivered only inside ppoll) and installs the handler.
// *unblocked receives the mask to wait with. SIGPIPE is ignored: a client that leaves early
// must not kill the exporter (send also passes MSG_NOSIGNAL).
void SetUpSignals(sigset_t* unblocked) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop, unblocked);
  sigdelset(unblocked, SIGINT);
  sigdelset(unblocked, SIGTERM);
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

}  // namespace

int RunExporter(std::span<char* const> argv) {
  auto args = ParseArgs(argv, kOptions);
  if (!args.ok()) return UsageError("exporter", args.status().message());
  if (args->positional.size() != 1) return UsageError("exporter", "expected DIR");
  const std::string& dir = args->positional[0];
  if (args->GetAll("--listen").size() > 1) {
    return UsageError("exporter", "--listen given more than once; the exporter listens on one "
                                  "address");
  }
  const std::string listen_text = args->Get("--listen").value_or(kDefaultListen);
  Result<ListenAddress> where = ParseListen(listen_text);
  if (!where.ok()) return UsageError("exporter", where.status().message());

  // A typo in DIR fails now; a directory whose writer has not created the control file yet is
  // served (503 until it appears), so the exporter can start before the application.
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Fail(Status::NotFound("no data directory " + dir));
  }
  if (Result<DirectoryStats> s = ReadStats(dir); !s.ok()) {
    PrintError("warning: " + s.status().message() + "; serving 503 until it is readable");
  }

  sigset_t unblocked;
  SetUpSignals(&unblocked);
  Result<int> listener = Listen(*where, listen_text);
  if (!listener.ok()) return Fail(listener.status());
  std::printf("listening on http://%s/metrics\n", BoundHostPort(*listener).c_str());
  std::fflush(stdout);
  int rc = Serve(dir, *listener, unblocked);
  close(*listener);
  return rc;
}

}  // namespace comet::cli
