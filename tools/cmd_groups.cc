// `comet groups DIR [--json]`: every consumer group's committed offset and lag per stream, read
// from the control region without joining a group (see comet/stats.h), so it runs beside live
// consumers and needs only read access.
#include <string>

#include "cli.h"
#include "commands.h"
#include "comet/stats.h"

namespace comet::cli {
namespace {

constexpr OptionSpec kOptions[] = {{"--json", false}};

}  // namespace

int RunGroups(std::span<char* const> argv) {
  auto args = ParseArgs(argv, kOptions);
  if (!args.ok()) return UsageError("groups", args.status().message());
  if (args->positional.size() != 1) return UsageError("groups", "expected DIR");
  const std::string& dir = args->positional[0];
  Result<DirectoryStats> stats = ReadStats(dir);
  if (!stats.ok()) return Fail(Annotate(stats.status(), dir, "reading the groups of " + dir));
  Output out;
  out.Write(args->Has("--json") ? FormatGroupsJsonLines(*stats) : FormatGroupsText(*stats));
  if (!out.Flush()) return Fail(Status::Io("writing to stdout failed"));
  return kExitOk;
}

}  // namespace comet::cli
