// Running real, unmodified programs under the LD_PRELOAD shim, and reading back what it
// captured: the vocabulary of the preload tests.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/stream.h"
#include "test_util.h"

extern char** environ;

namespace comet_test {

// The shim in build/lib, as an absolute path (LD_PRELOAD is resolved in every directory).
inline std::string ShimPath() {
  const std::string path = BinDir() + "/../lib/libcomet_preload.so";
  char* real = realpath(path.c_str(), nullptr);
  std::string abs = real ? real : path;
  free(real);
  return abs;
}

// How the program's stdout is connected.
enum class Output { kPipe, kFile, kSocket };

struct ProgramRun {
  int exit_code = -1;  // -1 unless it exited normally
  int signal = 0;
  std::string out, err;
};

struct RunSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;   // NAME=VALUE added to a copy of this environment
  bool shim = true;               // LD_PRELOAD the shim
  Output out = Output::kPipe;
  std::string out_file;           // Output::kFile: the file (its contents come back in out)
  std::string manifest;           // if set, opened as fd 3 (the target's expectations)
};

// A program run under the shim (or without it), its stdout a pipe.
inline RunSpec Program(std::vector<std::string> argv, std::vector<std::string> env = {},
                       bool shim = true) {
  RunSpec spec;
  spec.argv = std::move(argv);
  spec.env = std::move(env);
  spec.shim = shim;
  return spec;
}

// The environment without any COMET_* or LD_PRELOAD of the test's own.
inline std::vector<std::string> CleanEnv() {
  std::vector<std::string> env;
  for (char** e = environ; *e; e++) {
    std::string s(*e);
    if (s.rfind("COMET_", 0) == 0 || s.rfind("LD_PRELOAD=", 0) == 0) continue;
    env.push_back(s);
  }
  return env;
}

// Runs the program to its end, reading stdout and stderr as they come (a 1 MiB line would
// fill a pipe). The child dies with the test (PR_SET_PDEATHSIG) and is reaped by pid.
inline ProgramRun RunProgram(const RunSpec& spec) {
  ProgramRun r;
  int out[2] = {-1, -1}, err[2];
  if (pipe2(err, O_CLOEXEC) != 0) return r;
  int child_out = -1;
  if (spec.out == Output::kPipe) {
    if (pipe2(out, O_CLOEXEC) != 0) return r;
    child_out = out[1];
  } else if (spec.out == Output::kSocket) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) != 0) return r;
    child_out = out[1];
  } else {
    child_out = open(spec.out_file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  }
  int manifest = -1;
  if (!spec.manifest.empty()) {
    manifest = open(spec.manifest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  }
  std::vector<std::string> env = CleanEnv();
  if (spec.shim) env.push_back("LD_PRELOAD=" + ShimPath());
  env.insert(env.end(), spec.env.begin(), spec.env.end());
  std::vector<char*> argv, envp;
  for (const std::string& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    dup2(child_out, 1);
    dup2(err[1], 2);
    if (manifest >= 0) dup2(manifest, 3);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(err[1]);
  if (manifest >= 0) close(manifest);
  if (spec.out != Output::kFile) close(out[1]);
  if (spec.out == Output::kFile) close(child_out);
  struct pollfd fds[2] = {{spec.out == Output::kFile ? -1 : out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = (fds[0].fd >= 0) + 1;
  while (open_fds > 0) {
    if (poll(fds, 2, 120'000) <= 0) break;  // a generous bound for a loaded machine
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !fds[i].revents) continue;
      char buf[65536];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  if (pid > 0) {
    // Closing its output is not the end (what it writes at exit comes after): wait for it,
    // generously, and kill it only if it hangs.
    int status = 0;
    const int64_t deadline = MonotonicNs() + 120'000'000'000;
    pid_t got;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && MonotonicNs() < deadline) usleep(2000);
    if (got == 0) {
      kill(pid, SIGKILL);
      got = waitpid(pid, &status, 0);
    }
    if (got == pid) {
      if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
    }
  }
  if (spec.out == Output::kFile) r.out = ReadFile(spec.out_file);
  return r;
}

// One captured entry.
struct Captured {
  std::string stream;
  uint64_t entry = 0;
  std::string data;
};

// Every entry of every stream of `prefix` in the data directory, stream by stream in entry
// order (read-only: the directory may still have live writers).
inline std::vector<Captured> ReadCaptured(const std::string& dir, const std::string& prefix) {
  std::vector<Captured> out;
  comet::Config cfg;
  cfg.open.read_only = true;
  auto client = comet::Client::Open(dir, cfg);
  if (!client.ok()) return out;
  for (const std::string& name : (*client)->Streams()) {
    auto parsed = comet::ParseStreamName(name);
    if (!parsed.ok() || parsed->prefix != prefix) continue;
    std::vector<comet::Entry> entries;
    if (!(*client)->ReadRange(name, 0, SIZE_MAX, &entries).ok()) continue;
    for (const comet::Entry& e : entries) out.push_back({name, e.id.entry, std::string(e.data)});
  }
  return out;
}

// The lines of each sink a target recorded in its manifest ("SINK HEX" per line).
inline std::map<std::string, std::vector<std::string>> ReadManifest(const std::string& path) {
  std::map<std::string, std::vector<std::string>> m;
  const std::string text = ReadFile(path);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    std::string bytes;
    for (size_t i = sp + 1; i + 1 < line.size(); i += 2) {
      bytes.push_back(static_cast<char>(std::stoi(line.substr(i, 2), nullptr, 16)));
    }
    m[line.substr(0, sp)].push_back(bytes);
  }
  return m;
}

// Differences between two multisets of lines, readable in a failure message ("" if equal).
inline std::string MultisetDiff(const std::vector<std::string>& want,
                                const std::vector<std::string>& got) {
  std::map<std::string, int> count;
  for (const std::string& w : want) count[w]++;
  for (const std::string& g : got) count[g]--;
  std::string diff;
  for (const auto& [line, n] : count) {
    if (n == 0) continue;
    std::string shown = line.size() > 80 ? line.substr(0, 80) + "...(" + std::to_string(line.size()) + " bytes)" : line;
    diff += (n > 0 ? "  missing x" + std::to_string(n) : "  extra x" + std::to_string(-n)) + ": " + shown + "\n";
  }
  return diff;
}

inline std::vector<std::string> Datas(const std::vector<Captured>& c) {
  std::vector<std::string> out;
  for (const Captured& e : c) out.push_back(e.data);
  return out;
}

}  // namespace comet_test
