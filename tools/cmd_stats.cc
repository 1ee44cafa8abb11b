// `comet stats DIR [--json | --prometheus]`: the counters and latency histograms of a data
// directory, read from its control region without touching anything (see comet/stats.h), so it
// runs next to live writers and needs only read access.
#include <string>

#include "cli.h"
#include "commands.h"
#include "comet/stats.h"

namespace comet::cli {
namespace {

constexpr OptionSpec kOptions[] = {{"--json", false}, {"--prometheus", false}};

}  // namespace

int RunStats(std::span<char* const> argv) {
  auto args = ParseArgs(argv, kOptions);
  if (!args.ok()) return UsageError("stats", args.status().message());
  if (args->positional.size() != 1) return UsageError("stats", "expected DIR");
  const bool json = args->Has("--json");
  const bool prometheus = args->Has("--prometheus");
  if (json && prometheus) return UsageError("stats", "--json and --prometheus exclude each other");

  const std::string& dir = args->positional[0];
  Result<DirectoryStats> stats = ReadStats(dir);
  if (!stats.ok()) return Fail(Annotate(stats.status(), dir, "reading the stats of " + dir));

  Output out;
  if (json) {
    out.Write(FormatStatsJson(*stats));
  } else if (prometheus) {
    out.Write(FormatStatsPrometheus(*stats));
  } else {
    out.Write(FormatStatsText(*stats));
  }
  if (!out.Flush()) return Fail(Status::Io("writing to stdout failed"));
  return kExitOk;
}

}  // namespace comet::cli
