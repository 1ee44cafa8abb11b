// `comet tail DIR STREAM [--from N] [-n N] [--json]`: prints entries of one stream, read-only.
#include <algorithm>
#include <optional>
#include <string>

#include "cli.h"
#include "commands.h"

namespace comet::cli {
namespace {

constexpr uint64_t kDefaultCount = 10;
constexpr OptionSpec kOptions[] = {{"--from", true}, {"-n", true}, {"--json", false}};

struct TailOptions {
  std::string dir;
  std::string stream;
  std::optional<uint64_t> from;
  std::optional<uint64_t> count;
  bool json = false;
};

Result<TailOptions> ParseTailOptions(std::span<char* const> argv) {
  auto args = ParseArgs(argv, kOptions);
  if (!args.ok()) return args.status();
  if (args->positional.size() != 2) return Status::Invalid("expected DIR STREAM");
  TailOptions o;
  o.dir = args->positional[0];
  o.stream = args->positional[1];
  o.json = args->Has("--json");
  if (Status s = CheckStreamName(o.stream); !s.ok()) return s;
  if (auto v = args->Get("--from")) {
    auto n = ParseCount("--from", *v);
    if (!n.ok()) return n.status();
    o.from = *n;
  }
  if (auto v = args->Get("-n")) {
    auto n = ParseCount("-n", *v);
    if (!n.ok()) return n.status();
    o.count = *n;
  }
  return o;
}

// The entries to print: [from, end), fixed when tail starts.
struct Window {
  uint64_t from = 0;
  uint64_t end = 0;
};

Window ComputeWindow(const TailOptions& o, uint64_t length) {
  if (o.from) {
    uint64_t end = length;
    if (o.count && *o.count < length - std::min(*o.from, length)) end = *o.from + *o.count;
    return {*o.from, end};
  }
  uint64_t n = o.count.value_or(kDefaultCount);
  return {length > n ? length - n : 0, length};
}

// Prints the window's entries. Corrupt entries are noted on stderr and counted; gaps (missing
// segments) are noted on stderr and skipped. Entries that retention deleted are not there to
// print: the window starts at the first retained entry at the earliest.
class Tailer {
 public:
  Tailer(Client* client, Stream* stream, const TailOptions& o)
      : client_(client), stream_(stream), o_(o) {}

  Status Run(Window w) {
    auto first = FirstRetained();
    if (!first.ok()) return first.status();
    w.from = std::max(w.from, *first);
    if (w.from >= w.end) return Status::Ok();
    auto it = client_->Scan(stream_, w.from);
    if (!it.ok()) return it.status();
    Entry e;
    while (it->position() < w.end) {
      const uint64_t pos = it->position();
      Status s = it->Next(&e);
      if (s.ok()) {
        if (e.id.entry >= w.end) break;
        AppendEntryLine(&out_.buffer(), o_.stream, e.id, e.timestamp_ns, e.data, o_.json);
        out_.MaybeFlush();
      } else if (s.IsCorrupt()) {
        NoteCorrupt(pos, s);
        if (it->position() <= pos) return Status(s.code(), "cannot read past it");
      } else if (it->position() > pos) {
        NoteGap(pos, it->position());
      } else if (s.IsNotFound()) {
        // The end of the stream, or retention deleted entries while we were reading.
        auto retained = FirstRetained();
        if (!retained.ok() || *retained <= pos) break;
        it = client_->Scan(stream_, *retained);
        if (!it.ok()) return it.status();
      } else {
        return Status(s.code(), "entry " + std::to_string(pos) + ": " + s.message());
      }
    }
    if (!out_.Flush()) return Status::Io("writing to stdout failed");
    return Status::Ok();
  }

  uint64_t corrupt() const { return corrupt_; }

 private:
  Result<uint64_t> FirstRetained() {
    auto info = client_->Inspect(o_.stream);
    if (!info.ok()) return info.status();
    return info->first.entry;
  }

  void NoteGap(uint64_t from, uint64_t to) {
    out_.Flush();  // keep stdout and stderr in order on a terminal
    PrintError(o_.stream + ": entries " + std::to_string(from) + ".." + std::to_string(to - 1) +
               " are missing (a gap in the segments), skipped");
  }

  void NoteCorrupt(uint64_t entry, const Status& s) {
    ++corrupt_;
    out_.Flush();  // keep stdout and stderr in order on a terminal
    Status named = Annotate(s, o_.stream, o_.stream + " entry " + std::to_string(entry));
    PrintError(named.message() + " (skipped)");
  }

  Client* client_;
  Stream* stream_;
  const TailOptions& o_;
  Output out_;
  uint64_t corrupt_ = 0;
};

}  // namespace

int RunTail(std::span<char* const> argv) {
  auto o = ParseTailOptions(argv);
  if (!o.ok()) return UsageError("tail", o.status().message());
  auto client = OpenReadOnly(o->dir);
  if (!client.ok()) return Fail(client.status());
  auto stream = (*client)->GetStream(o->stream);
  if (!stream.ok()) return Fail(Annotate(stream.status(), o->stream, o->stream));
  auto length = (*client)->Length(o->stream);
  if (!length.ok()) return Fail(Annotate(length.status(), o->stream, o->stream));
  Tailer tailer(client->get(), *stream, *o);
  Status s = tailer.Run(ComputeWindow(*o, *length));
  if (!s.ok()) return Fail(Annotate(s, o->stream, "reading " + o->stream + " in " + o->dir));
  if (tailer.corrupt() > 0) {
    PrintError(Plural(tailer.corrupt(), "corrupt entry", "corrupt entries") + " skipped in " + o->stream +
               " (" + o->dir + ")");
    return kExitFail;
  }
  return kExitOk;
}

}  // namespace comet::cli
