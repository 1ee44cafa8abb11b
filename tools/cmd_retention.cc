// `comet retention DIR [-c key=value ...]`: runs a retention pass now, with the retention.*
// settings given (the defaults otherwise), and prints what it deleted.
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "cli.h"
#include "commands.h"

namespace comet::cli {
namespace {

constexpr OptionSpec kOptions[] = {{"-c", true}};

std::string Summary(const RetentionReport& r) {
  std::string s = "deleted " + Plural(r.segments, "segment") + ", " + Plural(r.entries, "entry", "entries") +
                  ", " + HumanBytes(static_cast<double>(r.bytes));
  if (r.unconsumed > 0) {
    s += "; " + Plural(r.unconsumed, "entry", "entries") + " not yet consumed by every group";
  }
  return s;
}

}  // namespace

int RunRetention(std::span<char* const> argv) {
  auto args = ParseArgs(argv, kOptions);
  if (!args.ok()) return UsageError("retention", args.status().message());
  if (args->positional.size() != 1) return UsageError("retention", "expected DIR");
  const std::string& dir = args->positional[0];
  Config cfg = Config::Default();
  cfg.retention.interval_ns = 0;  // this one pass only, so that it reports all it deletes
  if (Status s = ApplySettings(&cfg, args->GetAll("-c")); !s.ok()) {
    return UsageError("retention", s.message());
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Fail(Status::NotFound("no data directory " + dir));
  }
  auto client = Client::Open(dir, cfg);
  if (!client.ok()) {
    Status s = Annotate(client.status(), dir, "opening " + dir);
    if (s.IsNotOwner()) {
      s = Status::NotOwner(s.message() + " (a writer runs retention itself every "
                                          "retention.interval)");
    }
    return Fail(s);
  }
  Result<RetentionReport> r = (*client)->RunRetention();
  Status closed = (*client)->Close();
  if (!r.ok()) return Fail(Annotate(r.status(), dir, "retention in " + dir));
  for (const std::string& line : r->deleted) std::printf("%s\n", line.c_str());
  std::printf("%s\n", Summary(*r).c_str());
  if (!closed.ok()) return Fail(Annotate(closed, dir, "closing " + dir));
  return std::fflush(stdout) == 0 ? kExitOk : kExitFail;
}

}  // namespace comet::cli
