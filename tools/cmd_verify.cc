// `comet verify DIR`: checks the CRC of every record (read-only) and reports every entry it
// cannot read: damaged records, damaged segments, gaps (missing segments, including the newest
// ones, known from the control region). Exit 0 clean, 1 corruption or gaps found, 2 when it
// could not check (usage, a missing directory or one that is not a Comet data directory, I/O).
#include <string>
#include <vector>

#include "cli.h"
#include "commands.h"

namespace comet::cli {
namespace {

constexpr int kExitCorrupt = 1;
constexpr int kExitCannotCheck = 2;

// What Inspect adds to Verify: the records the segments hold (what Verify read) and the gaps
// (missing segments), which Verify does not count as bad records.
struct Coverage {
  size_t streams = 0;
  uint64_t records = 0;
  uint64_t gaps = 0;
};

// Also prints a problem line per gap.
Coverage InspectCoverage(Client* client) {
  Coverage c;
  std::vector<std::string> names = client->Streams();
  c.streams = names.size();
  for (const std::string& name : names) {
    auto info = client->Inspect(name);
    if (!info.ok()) continue;  // Verify reports the problem itself
    for (const SegmentInfo& seg : info->segments) c.records += seg.entries;
    for (const auto& [from, to] : info->gaps) {
      std::printf("%s: entries %llu..%llu are missing (no segment holds them)\n", name.c_str(),
                  static_cast<unsigned long long>(from),
                  static_cast<unsigned long long>(to - 1));
      ++c.gaps;
    }
  }
  return c;
}

std::string Summary(const Coverage& c, uint64_t bad) {
  std::string s =
      Plural(c.records, "record") + " checked in " + Plural(c.streams, "stream") + ": ";
  if (bad == 0 && c.gaps == 0) return s + "ok";
  s += Plural(bad, "corrupt record");
  if (c.gaps > 0) s += ", " + Plural(c.gaps, "gap");
  return s;
}

}  // namespace

int RunVerify(std::span<char* const> argv) {
  auto args = ParseArgs(argv, {});
  if (!args.ok()) return UsageError("verify", args.status().message());
  if (args->positional.size() != 1) return UsageError("verify", "expected DIR");
  const std::string& dir = args->positional[0];
  auto client = OpenReadOnly(dir);
  if (!client.ok()) {
    PrintError(client.status());
    return kExitCannotCheck;
  }
  std::vector<std::string> problems;
  auto bad = (*client)->Verify(&problems);
  for (const std::string& p : problems) std::printf("%s\n", p.c_str());
  if (!bad.ok()) {
    PrintError(Annotate(bad.status(), dir, "verifying " + dir));
    return kExitCannotCheck;
  }
  Coverage c = InspectCoverage(client->get());
  std::printf("%s\n", Summary(c, *bad).c_str());
  if (std::fflush(stdout) != 0) return kExitCannotCheck;
  return *bad == 0 && c.gaps == 0 ? kExitOk : kExitCorrupt;
}

}  // namespace comet::cli
