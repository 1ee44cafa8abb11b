// `comet probe [--pin DIR] [--pid PID | --lib PATH] [--interval S] [--duration S] [--keep]
//              [--cgroup DIR] [-- COMMAND ARGS...]`:
// attaches the BPF programs (bpf/) to the library's USDT probes and the kernel's tracepoints,
// pins their maps, prints the histograms every --interval seconds and once more at the end
// (--duration reached, SIGINT, SIGTERM, or COMMAND exited), then detaches and unpins (unless
// --keep). Until it has attached it prints nothing on stdout; then one line starting with
// "comet probe: attached", which scripts may wait for.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include "cli.h"
#include "commands.h"

#ifdef COMET_HAVE_BPF
#include "probe.h"
#include "probe_report.h"
#endif

namespace comet::cli {

#ifndef COMET_HAVE_BPF

int RunProbe(std::span<char* const>) {
  return Fail(Status::Invalid(
      "this comet was built without BPF support: building it needs clang, llvm, bpftool, "
      "libbpf-dev and /sys/kernel/btf/vmlinux (make deps installs the packages)"));
}

#else

namespace {

constexpr OptionSpec kOptions[] = {{"--pin", true},      {"--pid", true},
                                   {"--lib", true},      {"--interval", true},
                                   {"--duration", true}, {"--keep", false},
                                   {"--cgroup", true},   {"--export-only", false}};

Result<double> ParseSeconds(std::string_view option, const std::string& text) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v) || v < 0 || v > 1e9) {
    return Status::Invalid(std::string(option) + " expects seconds (e.g. 5 or 0.5), not '" +
                           text + "'");
  }
  return v;
}

// The executable `cmd` names, as execvp would find it.
std::string FindExecutable(const std::string& cmd) {
  if (cmd.find('/') != std::string::npos) return cmd;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + cmd;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return cmd;
}

void PrintSnapshot(const bpf::Probe& probe, const std::string& heading) {
  bpf::Snapshot snap;
  Status st = probe.Read(&snap);
  if (!st.ok()) {
    PrintError(st);
    return;
  }
  std::string out = heading + "\n" + FormatSnapshot(snap);
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
}

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

struct Settings {
  bpf::ProbeOptions probe;
  double interval = 5, duration = 0;
  std::vector<std::string> command;
};

Result<Settings> Parse(std::span<char* const> argv) {
  auto args = ParseArgs(argv, kOptions);
  if (!args.ok()) return args.status();
  Settings s;
  if (auto v = args->Get("--pin")) s.probe.pin_dir = *v;
  if (auto v = args->Get("--pid")) {
    Result<uint64_t> pid = ParseCount("--pid", *v);
    if (!pid.ok()) return pid.status();
    if (*pid == 0 || *pid > 0x7fffffff) return Status::Invalid("--pid: no process " + *v);
    s.probe.pid = static_cast<int>(*pid);
  }
  s.probe.targets = args->GetAll("--lib");
  if (s.probe.pid && !s.probe.targets.empty()) {
    return Status::Invalid("--pid and --lib exclude each other");
  }
  if (auto v = args->Get("--interval")) {
    Result<double> r = ParseSeconds("--interval", *v);
    if (!r.ok()) return r.status();
    s.interval = *r;
  }
  if (auto v = args->Get("--duration")) {
    Result<double> r = ParseSeconds("--duration", *v);
    if (!r.ok()) return r.status();
    s.duration = *r;
  }
  if (auto v = args->Get("--cgroup")) s.probe.cgroup = *v;
  s.probe.keep = args->Has("--keep");
  if (args->Has("--export-only")) {
    if (s.probe.pid || !s.probe.targets.empty() || !args->positional.empty()) {
      return Status::Invalid("--export-only attaches nothing: no --pid, --lib or COMMAND");
    }
    s.probe.attach = false;
    s.probe.keep = true;
    return s;
  }
  s.command = args->positional;
  if (!s.command.empty() && s.probe.pid) {
    return Status::Invalid("--pid and a COMMAND exclude each other");
  }
  // A command linking the library statically is its own target.
  if (!s.command.empty() && s.probe.targets.empty()) {
    std::string exe = FindExecutable(s.command[0]);
    if (bpf::HasCometProbes(exe)) s.probe.targets.push_back(exe);
  }
  return s;
}

// Runs the command with the default signal mask; returns its pid, or -1.
pid_t Spawn(const std::vector<std::string>& command, const sigset_t& old_mask) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  std::vector<char*> argv;
  for (const std::string& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  std::fprintf(stderr, "comet probe: cannot run %s: %s\n", argv[0], std::strerror(errno));
  _exit(127);
}

}  // namespace

int RunProbe(std::span<char* const> argv) {
  Result<Settings> parsed = Parse(argv);
  if (!parsed.ok()) return UsageError("probe", parsed.status().message());
  Settings& s = *parsed;

  sigset_t stop, old_mask;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGCHLD);
  sigprocmask(SIG_BLOCK, &stop, &old_mask);

  std::vector<std::string> notes;
  Result<std::unique_ptr<bpf::Probe>> started = bpf::Probe::Start(s.probe, &notes);
  for (const std::string& n : notes) std::fprintf(stderr, "comet probe: %s\n", n.c_str());
  if (!started.ok()) return Fail(started.status());
  std::unique_ptr<bpf::Probe> probe = std::move(*started);
  if (!s.probe.attach) {
    std::printf("comet probe: maps pinned in %s; clients using this pin directory export their "
                "histograms into %s/%s (bpftool map dump pinned %s/%s)\n",
                probe->pin_dir().c_str(), probe->pin_dir().c_str(), COMET_EXPORT_MAP,
                probe->pin_dir().c_str(), COMET_EXPORT_MAP);
    return kExitOk;
  }
  std::printf("comet probe: attached %zu probes; maps pinned in %s (bpftool map dump pinned "
              "%s/comet_ops)\n",
              probe->attached_probes(), probe->pin_dir().c_str(), probe->pin_dir().c_str());
  std::fflush(stdout);

  pid_t child = s.command.empty() ? -1 : Spawn(s.command, old_mask);
  int exit_code = kExitOk;
  if (!s.command.empty() && child < 0) {
    PrintError(Status::FromErrno(errno, "fork"));
    exit_code = kExitFail;
  }
  const int64_t start = NowNs();
  const int64_t deadline = s.duration > 0 ? start + static_cast<int64_t>(s.duration * 1e9) : -1;
  const int64_t period = s.interval > 0 ? static_cast<int64_t>(s.interval * 1e9) : -1;
  int64_t next_print = period > 0 ? start + period : -1;
  bool child_done = child <= 0;
  while (exit_code == kExitOk) {
    int64_t now = NowNs(), wake = -1;
    for (int64_t t : {deadline, next_print})
      if (t >= 0 && (wake < 0 || t < wake)) wake = t;
    int64_t wait_ns = wake < 0 ? 3'600'000'000'000 : std::max<int64_t>(0, wake - now);
    timespec ts{static_cast<time_t>(wait_ns / 1'000'000'000), static_cast<long>(wait_ns % 1'000'000'000)};
    siginfo_t info;
    int sig = sigtimedwait(&stop, &info, &ts);
    if (sig == SIGINT || sig == SIGTERM) break;
    if (sig == SIGCHLD && child > 0) {
      int status = 0;
      if (waitpid(child, &status, WNOHANG) == child) {
        exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        child_done = true;
        break;
      }
      continue;
    }
    now = NowNs();
    if (deadline >= 0 && now >= deadline) break;
    if (next_print >= 0 && now >= next_print) {
      PrintSnapshot(*probe, Format("--- %.1f s ---", static_cast<double>(now - start) / 1e9));
      next_print += period;
    }
  }
  if (!child_done) {
    kill(child, SIGTERM);  // stopped early: the command goes too
    int status = 0;
    waitpid(child, &status, 0);
  }
  PrintSnapshot(*probe, Format("=== comet probe: %.1f s ===",
                               static_cast<double>(NowNs() - start) / 1e9));
  const std::string dir = probe->pin_dir();
  const bool keep = s.probe.keep;
  probe.reset();  // detach, unpin
  if (keep) {
    std::printf("comet probe: detached; maps left pinned in %s (bpftool map dump pinned "
                "%s/comet_ops; rm -r %s removes them)\n",
                dir.c_str(), dir.c_str(), dir.c_str());
  } else {
    std::printf("comet probe: detached; maps unpinned\n");
  }
  std::fflush(stdout);
  return exit_code;
}

#endif

}  // namespace comet::cli
