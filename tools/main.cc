// `comet`: the command-line tool of the Comet log. Dispatches to one subcommand per file
// (cmd_*.cc) and prints usage.
#include <cstdio>
#include <span>
#include <string_view>

#include "cli.h"
#include "commands.h"

namespace comet::cli {
namespace {

struct Command {
  std::string_view name;
  int (*run)(std::span<char* const> args);
  std::string_view synopsis;
  std::string_view details;
};

constexpr Command kCommands[] = {
    {"append", RunAppend, "append DIR STREAM [-c key=value ...]",
     "Appends one entry per line of stdin (trailing newline stripped, empty lines kept)\n"
     "to STREAM, opening DIR as the writer (created if needed). -c sets a config key,\n"
     "e.g. -c sync.mode=always -c compression.min_bytes=1KiB.\n"},
    {"tail", RunTail, "tail DIR STREAM [--from N] [-n N] [--json]",
     "Prints the last N entries of STREAM (default 10), or with --from the entries from\n"
     "entry N (at most -n of them if given). Opens DIR read-only, so it works while a\n"
     "writer is running. --json prints one object per line:\n"
     "  {\"stream\":..,\"shard\":..,\"entry\":..,\"ts\":..,\"data\":..}\n"
     "Corrupt entries are reported on stderr and skipped; the exit code is then 1.\n"},
    {"consume", RunConsume,
     "consume DIR --group G PATTERN [--max N] [--json] [--follow] [-c key=value ...]",
     "Reads what consumer group G has not consumed yet from PATTERN (one stream, or every\n"
     "shard of a prefix: <prefix>:shard:*), prints it like tail (--json: one object per\n"
     "line) and acks it once printed: run again, it prints only what came since. Stops\n"
     "at the end, after N entries with --max, or with --follow waits for new entries\n"
     "until SIGINT or SIGTERM. Opens DIR as a writer (offsets are written); -c sets a\n"
     "config key, e.g. -c concurrency.mode=multi beside writers in other processes.\n"},
    {"groups", RunGroups, "groups DIR [--json]",
     "Lists every consumer group's committed offset, the stream's end and the lag (entries\n"
     "not yet committed) per stream. --json prints one object per line. Read-only, like\n"
     "stats: joins no group and moves no offset.\n"},
    {"inspect", RunInspect, "inspect DIR [--json]",
     "Lists every stream of DIR: prefix id, shard, first and next entry number, segments\n"
     "(file, base entry, entries, bytes, sealed or active), gaps [from, to) and corrupt\n"
     "records. Read-only, so it works while a writer is running.\n"},
    {"verify", RunVerify, "verify DIR",
     "Checks the CRC of every record of every stream (read-only). Prints each problem and a\n"
     "summary. Exit 0 when clean, 1 when corruption was found, 2 when it could not check.\n"},
    {"retention", RunRetention, "retention DIR [-c key=value ...]",
     "Runs a retention pass over DIR now and prints each segment it deleted and why: whole\n"
     "sealed segments, oldest first, never a shard's active one, by retention.max_age,\n"
     "retention.max_shard_bytes, retention.max_total_bytes and retention.min_free_bytes,\n"
     "keeping retention.min_segments per shard; entries a consumer group has not consumed\n"
     "are kept past max_age until retention.force_delete_after. Set them with -c (e.g.\n"
     "-c retention.max_age=7d); none is set by default. Opens DIR as a writer: with a live\n"
     "single-mode writer it fails (that writer runs retention itself); for a directory\n"
     "shared by processes add -c concurrency.mode=multi.\n"},
    {"stats", RunStats, "stats DIR [--json | --prometheus]",
     "Prints the counters and latency histograms of DIR from its control region: processes\n"
     "(live or gone), per-stream positions and counters, and per-operation latency\n"
     "percentiles summed over every process. --json prints one object; --prometheus prints\n"
     "the OpenMetrics text format. Read-only: never writes, creates or locks anything, and\n"
     "needs only read access to DIR.\n"},
    {"exporter", RunExporter, "exporter DIR [--listen ADDRESS:PORT]",
     "Serves the stats of DIR over HTTP for Prometheus: GET /metrics (OpenMetrics when the\n"
     "Accept header asks for it, else the classic text format), read fresh on every request.\n"
     "Listens on 127.0.0.1:9464 unless --listen names an address (IPv4, [IPv6] or localhost;\n"
     "0.0.0.0 only when given explicitly). Port 0 picks a free port. Prints the URL it\n"
     "serves, and stops cleanly on SIGINT or SIGTERM. Read-only, like stats.\n"},
    {"probe", RunProbe,
     "probe [--pin DIR] [--pid PID | --lib PATH] [--interval S] [--duration S] [--keep]\n"
     "              [--cgroup DIR] [--export-only] [-- COMMAND ARGS...]",
     "Loads Comet's eBPF programs (root), attaches them to the library's USDT probes in\n"
     "every process using libcomet.so (or the library or program at PATH, or process PID)\n"
     "and to the kernel's sync, page-fault and scheduler tracepoints, pins their maps under\n"
     "DIR (default /sys/fs/bpf/comet) for bpftool, and prints latency histograms every\n"
     "S seconds (default 5; 0: only at the end). Stops after --duration, on SIGINT or\n"
     "SIGTERM, or when COMMAND (run once attached) exits; then detaches and unpins, unless\n"
     "--keep leaves the maps pinned. --cgroup counts only tasks in that cgroup v2.\n"
     "--export-only just creates and pins the maps, attaching nothing: clients then add\n"
     "their own histograms into DIR/comet_export at no system call (metrics.bpf_pin_dir).\n"},
    {"demo", RunDemo, "demo [DIR] [--lines N] [-c key=value ...]",
     "Writes a realistic log workload (nginx access lines and JSON app logs, 2,000,000 by\n"
     "default) to 8 shards of logs:v1 in DIR (default build/demo), reads it back, verifies\n"
     "it and prints throughput, latency percentiles and the compression ratio. DIR is wiped\n"
     "first, but only if it is empty or was created by a previous demo.\n"},
};

void PrintUsage(std::FILE* f) {
  std::fprintf(f,
               "comet - an embedded segmented append-only log\n\n"
               "usage:\n");
  for (const Command& c : kCommands) {
    std::fprintf(f, "  comet %.*s\n", static_cast<int>(c.synopsis.size()), c.synopsis.data());
  }
  std::fprintf(f,
               "  comet help [COMMAND]\n\n"
               "STREAM is <prefix>:shard:<NNNN>, e.g. logs:v1:shard:0003.\n"
               "Exit codes: 0 success, 1 failure, 2 usage error.\n");
}

const Command* FindCommand(std::string_view name) {
  for (const Command& c : kCommands) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

void PrintCommandHelp(const Command& c) {
  std::printf("usage: comet %.*s\n\n%.*s", static_cast<int>(c.synopsis.size()),
              c.synopsis.data(), static_cast<int>(c.details.size()), c.details.data());
}

bool IsHelpFlag(std::string_view arg) { return arg == "-h" || arg == "--help"; }

int Help(std::span<char* const> args) {
  if (args.empty()) {
    PrintUsage(stdout);
    return kExitOk;
  }
  const Command* c = FindCommand(args[0]);
  if (c == nullptr) {
    PrintError("help: unknown command '" + std::string(args[0]) + "'");
    PrintUsage(stderr);
    return kExitUsage;
  }
  PrintCommandHelp(*c);
  return kExitOk;
}

int Main(std::span<char* const> args) {
  if (args.empty()) {
    PrintUsage(stdout);
    return kExitOk;
  }
  std::string_view name = args[0];
  std::span<char* const> rest = args.subspan(1);
  if (name == "help" || IsHelpFlag(name)) return Help(rest);
  const Command* c = FindCommand(name);
  if (c == nullptr) {
    PrintError("unknown command '" + std::string(name) + "'");
    PrintUsage(stderr);
    return kExitUsage;
  }
  for (std::string_view arg : rest) {
    if (arg == "--") break;
    if (IsHelpFlag(arg)) {
      PrintCommandHelp(*c);
      return kExitOk;
    }
  }
  return c->run(rest);
}

}  // namespace
}  // namespace comet::cli

int main(int argc, char** argv) {
  return comet::cli::Main(std::span<char* const>(argv + 1, argc > 0 ? argc - 1 : 0));
}
