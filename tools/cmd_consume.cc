// `comet consume DIR --group G PATTERN [--max N] [--json] [--follow] [-c key=value ...]`: reads
// what group G has not consumed yet from one stream or every shard of a prefix, prints it and
// acks it.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "cli.h"
#include "commands.h"
#include "comet/consumer.h"

namespace comet::cli {
namespace {

constexpr OptionSpec kOptions[] = {
    {"--group", true}, {"--max", true}, {"--json", false}, {"--follow", false}, {"-c", true}};
constexpr size_t kBatch = 1000;
// A following read wakes at once on an append; it looks for SIGINT and SIGTERM this often.
constexpr int64_t kSignalCheckNs = 100'000'000;

struct ConsumeOptions {
  std::string dir, group, pattern;
  std::optional<uint64_t> max;
  bool json = false, follow = false;
  Config cfg = Config::Default();
};

Result<ConsumeOptions> ParseConsumeOptions(std::span<char* const> argv) {
  auto args = ParseArgs(argv, kOptions);
  if (!args.ok()) return args.status();
  if (args->positional.size() != 2) return Status::Invalid("expected DIR and PATTERN");
  ConsumeOptions o;
  o.dir = args->positional[0];
  o.pattern = args->positional[1];
  auto group = args->Get("--group");
  if (!group) return Status::Invalid("--group G is required");
  o.group = *group;
  if (auto v = args->Get("--max")) {
    auto n = ParseCount("--max", *v);
    if (!n.ok()) return n.status();
    o.max = *n;
  }
  o.json = args->Has("--json");
  o.follow = args->Has("--follow");
  if (Status s = ApplySettings(&o.cfg, args->GetAll("-c")); !s.ok()) return s;
  return o;
}

// SIGINT and SIGTERM stay pending (blocked) and end a --follow between two reads, so the
// entries printed are always acked first.
class StopSignals {
 public:
  StopSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~StopSignals() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  // True once SIGINT or SIGTERM arrived; takes it, so that unblocking later does not kill.
  bool Pending() {
    if (stopped_) return true;
    const timespec now{0, 0};
    stopped_ = sigtimedwait(&set_, nullptr, &now) > 0;
    return stopped_;
  }

 private:
  sigset_t set_, old_;
  bool stopped_ = false;
};

// Reads, prints and acks until nothing is left (or, following, until a stop signal), or until
// max entries are consumed. Returns how many.
Result<uint64_t> Consume(Consumer* k, const ConsumeOptions& o) {
  StopSignals signals;
  Output out;
  std::vector<Message> batch;
  uint64_t done = 0;
  while (!o.max || done < *o.max) {
    const size_t want = o.max ? std::min<uint64_t>(kBatch, *o.max - done) : kBatch;
    Status st = k->Read(o.pattern, want, &batch, o.follow ? kSignalCheckNs : 0);
    if (!st.ok()) return st;
    if (batch.empty()) {
      if (!o.follow || signals.Pending()) break;
      continue;
    }
    for (const Message& m : batch) {
      AppendEntryLine(&out.buffer(), m.stream, m.id, m.timestamp_ns, m.data, o.json);
    }
    // At least once: what is acked was written out first.
    if (!out.Flush()) return Status::Io("writing to stdout failed (nothing of it was acked)");
    if (Status a = k->Ack(batch); !a.ok()) return a;
    done += batch.size();
    if (o.follow && signals.Pending()) break;
  }
  return done;
}

}  // namespace

int RunConsume(std::span<char* const> argv) {
  auto o = ParseConsumeOptions(argv);
  if (!o.ok()) return UsageError("consume", o.status().message());
  auto client = Client::Open(o->dir, o->cfg);
  if (!client.ok()) return Fail(Annotate(client.status(), o->dir, "opening " + o->dir));
  auto k = Consumer::Open(client->get(), o->group);
  if (!k.ok()) return Fail(k.status());
  Result<uint64_t> done = Consume(k->get(), *o);
  Status closed = (*k)->Close();
  if (!done.ok()) {
    return Fail(Annotate(done.status(), o->pattern,
                         "consuming " + o->pattern + " as group '" + o->group + "'"));
  }
  if (!closed.ok()) return Fail(closed);
  if (Status s = (*client)->Close(); !s.ok()) return Fail(s);
  return kExitOk;
}

}  // namespace comet::cli
