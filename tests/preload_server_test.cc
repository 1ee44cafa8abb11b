// Real prefork servers from Debian under the LD_PRELOAD shim, on a free loopback port with their
// own temporary configuration: nginx (master and 2 workers), gunicorn (2 workers) and Apache
// httpd (prefork, 2 children), as www-data when the test runs as root. Each access line carries
// the pid of the process that served the request, so the test checks that every request left
// exactly one line in Comet and none on the real stdout, in a shard owned by the worker that
// served it; that the workers' start lines are in the stderr streams; that the server answers
// correctly throughout; and that a worker killed with SIGKILL is replaced and capture goes on
// with nothing that was captured before lost.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "comet/stats.h"
#include "preload_util.h"
#include "server_util.h"
#include "test_util.h"

namespace {

using comet_test::Captured;
using comet_test::ReadCaptured;
using comet_test::ServerProcess;

bool IsRoot() { return geteuid() == 0; }

// What each server needs: its command line for a prefix directory and port (writing its
// configuration there), the line it logs when a worker starts, and its stop signal.
struct ServerKind {
  std::string binary;  // skipped when missing (`make deps` installs it)
  std::function<std::vector<std::string>(const std::string& prefix, int port)> command;
  std::function<std::string(pid_t worker)> start_line;
  bool echoes_query = true;  // the reply is "hello N\n" for /hello?n=N (else "hello\n")
  int stop_signal = SIGTERM;
  // The captured stream the error log lands in, and how each of its lines starts given the
  // master's pid (not checked if unset).
  std::string error_stream = "stderr";
  std::function<std::string(pid_t master)> error_line_start;
};

// An access line "PID TARGET" (gunicorn writes "<PID> TARGET").
struct AccessLine {
  pid_t pid = 0;
  std::string target;
};

bool ParseAccessLine(const std::string& line, AccessLine* out) {
  const size_t sp = line.find(' ');
  if (sp == std::string::npos) return false;
  std::string pid = line.substr(0, sp);
  if (pid.size() > 2 && pid.front() == '<' && pid.back() == '>') pid = pid.substr(1, pid.size() - 2);
  out->pid = std::atoi(pid.c_str());
  out->target = line.substr(sp + 1);
  return out->pid > 0;
}

class ServerUnderShimTest : public comet_test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    if (!comet_test::FileExists(comet_test::ShimPath())) GTEST_SKIP() << "no shim";
    // The workers run as www-data: they must reach the data directory inside the test's.
    ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
    port_ = comet_test::FreeLoopbackPort();
    ASSERT_GT(port_, 0);
  }

  std::string Data() const { return dir_ + "/data"; }

  // Starts the server and waits until it listens with 2 workers.
  void Start(const ServerKind& kind) {
    ASSERT_TRUE(server_.Start(kind.command(dir_, port_), {"COMET_DIR=" + Data()}));
    ASSERT_TRUE(comet_test::AwaitListening(port_, 60'000)) << "the server never listened";
    ASSERT_TRUE(server_.AwaitWorkers(2)) << "the server never had 2 workers";
  }

  // One request, checked: 200 and the body naming the request.
  void Request(const std::string& tag) {
    const std::string target = "/hello?n=" + tag;
    const comet_test::HttpReply reply = comet_test::HttpGet(port_, target);
    ASSERT_EQ(reply.status, 200) << target;
    ASSERT_EQ(reply.body, kind_.echoes_query ? "hello " + tag + "\n" : "hello\n") << target;
    targets_.push_back(target);
  }

  // True when every worker is a live member of the data directory and every shard is held by
  // the live process it is assigned to (shard s: the live process of rank s % live, by slot).
  bool Settled(const std::vector<pid_t>& workers) {
    auto stats = comet::ReadStats(Data());
    if (!stats.ok()) return false;
    std::vector<int32_t> live;
    std::set<pid_t> live_pids;
    for (const comet::ProcessInfo& p : stats->processes) {
      if (!p.live) continue;
      live.push_back(static_cast<int32_t>(p.slot));
      live_pids.insert(static_cast<pid_t>(p.pid));
    }
    std::sort(live.begin(), live.end());
    for (pid_t w : workers) {
      if (!live_pids.count(w)) return false;
    }
    for (const comet::StreamStats& s : stats->streams) {
      if (s.owner_slot != live[s.shard % live.size()]) return false;
    }
    return true;
  }

  // Requests until every worker has written a line and the shards have settled, so that no
  // shard moves during the round (a process joins the directory at its first line, and shards
  // move when members come and go).
  void WarmUp(const std::string& round) {
    const std::vector<pid_t> workers = server_.Workers();
    for (int i = 0; i < 2000; i++) {
      if (Settled(workers)) return;
      ASSERT_NO_FATAL_FAILURE(Request("warm-" + round + "-" + std::to_string(i)));
    }
    FAIL() << "the workers never all served a request and settled in 2000 requests";
  }

  // Waits (bounded) until n stdout lines are in Comet, and returns them.
  std::vector<Captured> AwaitAccessLines(size_t n) {
    std::vector<Captured> got;
    const int64_t deadline = comet_test::MonotonicNs() + 60'000'000'000;
    do {
      got = ReadCaptured(Data(), "stdout");
      if (got.size() >= n) break;
      usleep(10'000);
    } while (comet_test::MonotonicNs() < deadline);
    return got;
  }

  // Every request sent so far left exactly one access line; each line of this round is in a
  // shard owned by the process that served it. Returns the pids that served this round.
  std::set<pid_t> ExpectAccessLines(const std::string& round) {
    const std::vector<Captured> got = AwaitAccessLines(targets_.size());
    std::vector<std::string> seen;
    std::map<std::string, pid_t> owner = StreamOwners();
    std::set<pid_t> served;
    for (const Captured& c : got) {
      AccessLine line;
      if (!ParseAccessLine(c.data, &line)) {
        ADD_FAILURE() << "not an access line: " << c.data;
        continue;
      }
      seen.push_back(line.target);
      if (line.target.find("=" + round + "-") == std::string::npos) continue;
      served.insert(line.pid);
      EXPECT_EQ(owner[c.stream], line.pid) << c.stream << " entry " << c.entry << ": " << c.data;
    }
    EXPECT_EQ(comet_test::MultisetDiff(targets_, seen), "");
    return served;
  }

  // Stream name -> pid of the process owning it now.
  std::map<std::string, pid_t> StreamOwners() {
    std::map<std::string, pid_t> owners;
    auto stats = comet::ReadStats(Data());
    if (!stats.ok()) return owners;
    std::map<int32_t, pid_t> by_slot;
    for (const comet::ProcessInfo& p : stats->processes) by_slot[p.slot] = p.pid;
    for (const comet::StreamStats& s : stats->streams) {
      if (s.owner_slot >= 0) owners[s.name] = by_slot[s.owner_slot];
    }
    return owners;
  }

  // A round of n requests after the warm-up; returns the pids that served it.
  std::set<pid_t> Round(const std::string& round, int n) {
    WarmUp(round);
    for (int i = 0; i < n; i++) {
      Request(round + "-" + std::to_string(i));
      if (HasFatalFailure()) return {};
    }
    return ExpectAccessLines(round);
  }

  // Every wanted line reaches the error log's streams, whole (a new process's first line may
  // wait for its shard to be handed over: bounded).
  void ExpectErrorLines(const ServerKind& kind, const std::set<std::string>& wanted) {
    std::set<std::string> missing = wanted;
    const std::string start = kind.error_line_start ? kind.error_line_start(server_.pid()) : "";
    const int64_t deadline = comet_test::MonotonicNs() + 60'000'000'000;
    while (!missing.empty() && comet_test::MonotonicNs() < deadline) {
      for (const std::string& line : comet_test::Datas(ReadCaptured(Data(), kind.error_stream))) {
        std::erase_if(missing, [&](const std::string& want) {
          if (line.find(want) == std::string::npos) return false;
          EXPECT_EQ(line.rfind(start, 0), 0u) << "not starting with '" << start << "': " << line;
          return true;
        });
      }
      if (!missing.empty()) usleep(10'000);
    }
    for (const std::string& want : missing) {
      ADD_FAILURE() << "no '" << want << "' in the " << kind.error_stream << " streams";
    }
  }

  void ExpectStartLines(const ServerKind& kind, const std::vector<pid_t>& workers) {
    std::set<std::string> lines;
    for (pid_t w : workers) lines.insert(kind.start_line(w));
    ExpectErrorLines(kind, lines);
  }

  // The whole scenario: a round, a worker killed and replaced, another round, a clean stop.
  void Run(const ServerKind& kind) {
    kind_ = kind;
    if (access(kind.binary.c_str(), X_OK) != 0) {
      GTEST_SKIP() << kind.binary << " is not installed (make deps installs it)";
    }
    ASSERT_NO_FATAL_FAILURE(Start(kind));
    const std::vector<pid_t> first = server_.Workers();
    const std::set<pid_t> served = Round("a", 200);
    ASSERT_FALSE(HasFailure());
    ExpectStartLines(kind, first);
    ASSERT_FALSE(served.empty());

    const pid_t victim = *served.begin();
    ASSERT_EQ(kill(victim, SIGKILL), 0);
    ASSERT_TRUE(server_.AwaitWorkers(2, {victim})) << "the killed worker was not replaced";
    const std::set<pid_t> served_after = Round("b", 200);
    EXPECT_FALSE(served_after.count(victim));
    ExpectStartLines(kind, server_.Workers());

    const int status = server_.Stop(kind.stop_signal);
    EXPECT_TRUE(WIFEXITED(status) || WIFSIGNALED(status));
    EXPECT_EQ(server_.out(), "") << "access lines reached the real stdout with tee off";
    // Only what a signal handler writes while the shim is busy on its thread (nginx's master
    // logs the signals it gets) may reach the real stderr, and it is counted.
    auto stats = comet::ReadStats(Data());
    ASSERT_TRUE(stats.ok());
    const std::string& err = server_.err();
    EXPECT_EQ(stats->uncaptured_lines, static_cast<uint64_t>(std::count(err.begin(), err.end(), '\n')))
        << err;
  }

  ServerKind kind_;
  int port_ = -1;
  ServerProcess server_;
  std::vector<std::string> targets_;
};

// As root the workers run as www-data (the master, root, opens the data directory).
std::string UserLine(const std::string& directive) { return IsRoot() ? directive + "\n" : ""; }

ServerKind Nginx() {
  ServerKind k;
  k.binary = "/usr/sbin/nginx";
  k.command = [](const std::string& prefix, int port) {
    std::string temp;
    for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"}) {
      temp += std::string("  ") + t + "_temp_path " + prefix + "/" + t + ";\n";
    }
    const std::string conf = prefix + "/nginx.conf";
    EXPECT_TRUE(comet_test::WriteFile(conf,
        "worker_processes 2;\n" + UserLine("user www-data;") +
        "pid " + prefix + "/nginx.pid;\n"
        "error_log stderr notice;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        "  log_format pids '$pid $request_uri';\n"
        "  access_log /dev/stdout pids;\n" + temp +
        "  server {\n"
        "    listen 127.0.0.1:" + std::to_string(port) + " reuseport;\n"
        "    location / { return 200 \"hello $arg_n\\n\"; }\n"
        "  }\n"
        "}\n"));
    return std::vector<std::string>{"/usr/sbin/nginx", "-p", prefix + "/", "-e", "stderr", "-c",
                                    conf, "-g", "daemon off;"};
  };
  k.start_line = [](pid_t w) { return "start worker process " + std::to_string(w); };
  return k;
}

// Sync workers; the access log on stdout, the error log (worker boots) on stderr.
ServerKind Gunicorn() {
  ServerKind k;
  k.binary = "/usr/bin/python3";
  k.command = [](const std::string& prefix, int port) {
    EXPECT_TRUE(comet_test::WriteFile(prefix + "/app.py",
        "def app(environ, start_response):\n"
        "    body = ('hello %s\\n' % environ.get('QUERY_STRING', '')[2:]).encode()\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain'),\n"
        "                              ('Content-Length', str(len(body)))])\n"
        "    return [body]\n"));
    std::vector<std::string> argv = {"/usr/bin/python3", "-m", "gunicorn", "--workers", "2",
        "--bind", "127.0.0.1:" + std::to_string(port), "--chdir", prefix, "--access-logfile", "-",
        "--access-logformat", "%(p)s %(U)s?%(q)s"};
    if (IsRoot()) argv.insert(argv.end(), {"--user", "www-data", "--group", "www-data"});
    argv.push_back("app:app");
    return argv;
  };
  k.start_line = [](pid_t w) { return "Booting worker with pid: " + std::to_string(w); };
  return k;
}

// The prefork MPM with exactly 2 children, serving a static file; the error log to error_log
// (/dev/stderr or syslog:FACILITY).
ServerKind Apache(const std::string& error_log = "/dev/stderr") {
  ServerKind k;
  k.binary = "/usr/sbin/apache2";
  k.command = [error_log](const std::string& prefix, int port) {
    const std::string www = prefix + "/www", conf = prefix + "/httpd.conf";
    EXPECT_EQ(mkdir(www.c_str(), 0755), 0);
    EXPECT_TRUE(comet_test::WriteFile(www + "/hello", "hello\n"));
    const std::string modules = "/usr/lib/apache2/modules/";
    EXPECT_TRUE(comet_test::WriteFile(conf,
        "ServerRoot " + prefix + "\n"
        "ServerName localhost\n"
        "Listen 127.0.0.1:" + std::to_string(port) + "\n"
        "PidFile " + prefix + "/httpd.pid\n"
        "LoadModule mpm_prefork_module " + modules + "mod_mpm_prefork.so\n"
        "LoadModule authz_core_module " + modules + "mod_authz_core.so\n"
        "StartServers 2\nMinSpareServers 2\nMaxSpareServers 3\nServerLimit 2\n"
        "MaxRequestWorkers 2\n" +
        UserLine("User www-data\nGroup www-data") +
        "ErrorLog " + error_log + "\n"
        "LogLevel notice\n"
        "LogFormat \"%P %U%q\" pids\n"
        "CustomLog /dev/stdout pids\n"
        "DocumentRoot " + www + "\n"
        "<Directory " + www + ">\n  Require all granted\n</Directory>\n"));
    return std::vector<std::string>{"/usr/sbin/apache2", "-f", conf, "-d", prefix, "-DFOREGROUND"};
  };
  // The parent's notice once its children are started (prefork logs no line per child).
  k.start_line = [](pid_t) { return "resuming normal operations"; };
  k.echoes_query = false;
  return k;
}

// ErrorLog syslog:local7: Apache's syslog() calls (openlog with LOG_PID in the master, before
// it forks) land in the syslog streams as "<PRI>apache2[pid]: message", local7.notice = 189.
ServerKind ApacheSyslog() {
  ServerKind k = Apache("syslog:local7");
  k.error_stream = "syslog";
  k.error_line_start = [](pid_t master) { return "<189>apache2[" + std::to_string(master) + "]: "; };
  return k;
}

TEST_F(ServerUnderShimTest, Nginx) { Run(Nginx()); }
TEST_F(ServerUnderShimTest, Gunicorn) { Run(Gunicorn()); }
TEST_F(ServerUnderShimTest, ApachePrefork) { Run(Apache()); }
TEST_F(ServerUnderShimTest, ApachePreforkErrorLogToSyslog) { Run(ApacheSyslog()); }

}  // namespace
