// Real prefork servers (nginx, gunicorn, Apache httpd) started under the LD_PRELOAD shim for the
// tests: a server in its own session with its stdout and stderr in pipes, the processes it
// forks found through /proc and killed by pid, and a small HTTP/1.0 client on loopback.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "preload_util.h"
#include "test_util.h"

namespace comet_test {

// A loopback port nothing listens on right now.
inline int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

struct HttpReply {
  int status = 0;  // 0: no reply
  std::string body;
};

// GET target over HTTP/1.0 (the server closes the connection after the reply).
inline HttpReply HttpGet(int port, const std::string& target) {
  HttpReply reply;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return reply;
  }
  const std::string request = "GET " + target + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  std::string text;
  if (WriteFull(fd, request.data(), request.size())) {
    char buf[4096];
    pollfd p = {fd, POLLIN, 0};
    while (poll(&p, 1, 60'000) > 0) {
      const ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  const size_t head_end = text.find("\r\n\r\n");
  if (text.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos) return reply;
  reply.status = std::atoi(text.c_str() + text.find(' ') + 1);
  reply.body = text.substr(head_end + 4);
  return reply;
}

// True once something accepts connections on the port (bounded by timeout_ms).
inline bool AwaitListening(int port, int timeout_ms) {
  const int64_t deadline = MonotonicNs() + int64_t{timeout_ms} * 1'000'000;
  do {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (ok) return true;
    usleep(10'000);
  } while (MonotonicNs() < deadline);
  return false;
}

// The direct children of a process (Linux's /proc/PID/task/PID/children).
inline std::vector<pid_t> ChildrenOf(pid_t pid) {
  const std::string p = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children";
  std::istringstream in(ReadFile(p));
  std::vector<pid_t> out;
  for (pid_t c; in >> c;) out.push_back(c);
  return out;
}

// Alive: it exists and is not a zombie.
inline bool ProcessAlive(pid_t pid) {
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

// A server under the shim, started in its own session (Apache signals its whole process group
// on stop) with stdout and stderr in pipes that a thread reads. Every process it forks that the
// test sees is remembered and, at Stop or destruction, killed by pid if still alive.
class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { Stop(SIGKILL); }

  bool Start(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0) return false;
    if (pipe2(err, O_CLOEXEC) != 0) return false;
    std::vector<std::string> full_env = CleanEnv();
    full_env.push_back("LD_PRELOAD=" + ShimPath());
    full_env.insert(full_env.end(), env.begin(), env.end());
    std::vector<char*> args, envp;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const std::string& e : full_env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(126);
      setsid();
      dup2(out[1], 1);
      dup2(err[1], 2);
      execve(args[0], args.data(), envp.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    if (pid_ < 0) {
      close(out[0]);
      close(err[0]);
      return false;
    }
    reader_ = std::thread([this, o = out[0], e = err[0]] { ReadOutputs(o, e); });
    return true;
  }

  pid_t pid() const { return pid_; }

  // The server's worker processes now (its direct children), remembered for the cleanup.
  std::vector<pid_t> Workers() {
    std::vector<pid_t> w = pid_ > 0 ? ChildrenOf(pid_) : std::vector<pid_t>{};
    seen_.insert(w.begin(), w.end());
    return w;
  }

  // Waits (bounded) until the server has exactly n workers, none of them in `gone`.
  bool AwaitWorkers(size_t n, const std::set<pid_t>& gone = {}) {
    const int64_t deadline = MonotonicNs() + 60'000'000'000;
    do {
      std::vector<pid_t> w = Workers();
      bool fresh = w.size() == n;
      for (pid_t p : w) fresh = fresh && !gone.count(p);
      if (fresh) return true;
      usleep(10'000);
    } while (MonotonicNs() < deadline);
    return false;
  }

  // Sends sig to the server and waits for it (bounded; then SIGKILL), then kills by pid every
  // worker it had that is still alive, and collects its output. Returns its wait status.
  int Stop(int sig) {
    if (pid_ <= 0) return exit_status_;
    Workers();
    kill(pid_, sig);
    const int64_t deadline = MonotonicNs() + 60'000'000'000;
    pid_t got;
    while ((got = waitpid(pid_, &exit_status_, WNOHANG)) == 0 && MonotonicNs() < deadline) {
      usleep(5'000);
    }
    if (got == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &exit_status_, 0);
    }
    for (pid_t w : seen_) {
      if (ProcessAlive(w)) kill(w, SIGKILL);
    }
    pid_ = -1;
    if (reader_.joinable()) reader_.join();
    return exit_status_;
  }

  // What reached the real stdout and stderr (complete after Stop).
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  void ReadOutputs(int out, int err) {
    pollfd fds[2] = {{out, POLLIN, 0}, {err, POLLIN, 0}};
    std::string* sinks[2] = {&out_, &err_};
    int open = 2;
    while (open > 0 && poll(fds, 2, -1) > 0) {
      for (int i = 0; i < 2; i++) {
        if (fds[i].fd < 0 || !fds[i].revents) continue;
        char buf[65536];
        const ssize_t n = read(fds[i].fd, buf, sizeof buf);
        if (n > 0) {
          sinks[i]->append(buf, static_cast<size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          close(fds[i].fd);
          fds[i].fd = -1;
          open--;
        }
      }
    }
  }

  pid_t pid_ = -1;
  int exit_status_ = 0;
  std::set<pid_t> seen_;
  std::thread reader_;
  std::string out_, err_;
};

}  // namespace comet_test
