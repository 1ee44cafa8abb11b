// `comet demo [DIR] [--lines N] [-c key=value ...]`: the engine's own demo (about 600 MB).
//
// Appends a realistic log workload (demo_workload.h) to 8 shards of "logs:v1", routed by request
// id, in batches of 64 plus every 32nd line appended on its own, timing every Append call. Then
// it closes, reopens (recovery) and reads everything back, checking that each shard holds exactly
// what was appended, and prints throughput, latency percentiles and the compression ratio.
#include <errno.h>  // program_invocation_name

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cli.h"
#include "commands.h"
#include "comet/stream.h"
#include "demo.h"
#include "demo_dir.h"
#include "demo_workload.h"

namespace comet::cli {
namespace {

constexpr std::string_view kPrefix = kDemoPrefix;
constexpr uint32_t kShards = kDemoShards;
constexpr size_t kBatch = kDemoBatch;
constexpr uint64_t kSingleEvery = 32;  // every 32nd line is appended on its own
constexpr uint64_t kDefaultLines = 2'000'000;
constexpr const char* kDefaultDir = "build/demo";
constexpr uint64_t kSegmentBytes = 16ull << 20;
constexpr uint64_t kSeed = 0xC0FFEE;

constexpr OptionSpec kOptions[] = {{"--lines", true}, {"-c", true}};

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

struct DemoOptions {
  std::string dir = kDefaultDir;
  uint64_t lines = kDefaultLines;
  std::vector<std::string> settings;
};

Result<DemoOptions> ParseDemoOptions(std::span<char* const> argv) {
  auto args = ParseArgs(argv, kOptions);
  if (!args.ok()) return args.status();
  if (args->positional.size() > 1) return Status::Invalid("expected at most one DIR");
  DemoOptions o;
  if (!args->positional.empty()) o.dir = args->positional[0];
  if (auto v = args->Get("--lines")) {
    auto n = ParseCount("--lines", *v);
    if (!n.ok()) return n.status();
    o.lines = *n;
  }
  o.settings = args->GetAll("-c");
  return o;
}

Result<Config> DemoConfig(const DemoOptions& o) {
  Config cfg = Config::Default();
  cfg.storage.max_segment_bytes = kSegmentBytes;
  if (Status s = ApplySettings(&cfg, o.settings); !s.ok()) return s;
  return cfg;
}

Result<std::unique_ptr<Client>> OpenDemo(const std::string& dir, const Config& cfg) {
  auto client = Client::Open(dir, cfg);
  if (!client.ok()) return Annotate(client.status(), dir, "opening " + dir);
  return std::move(client).value();
}

Result<std::array<Stream*, kShards>> OpenStreams(Client* client) {
  std::array<Stream*, kShards> streams{};
  for (uint32_t shard = 0; shard < kShards; ++shard) {
    std::string name = ShardStreamName(kPrefix, shard);
    auto s = client->GetStream(name);
    if (!s.ok()) return Status(s.status().code(), name + ": " + s.status().message());
    streams[shard] = *s;
  }
  return streams;
}

// ---- append phase ----------------------------------------------------------------------------

// Routes lines to shards and appends them: batches per shard through stream handles, and every
// kSingleEvery-th line alone by the name PickShardStream gives.
class Appender {
 public:
  Appender(Client* client, const std::array<Stream*, kShards>& streams, AppendReport* report)
      : client_(client), streams_(streams), report_(report) {}

  // Takes the line (swaps it with a spare buffer, so *line comes back with unspecified text).
  Status Add(uint64_t seq, std::string* line, const std::string& key) {
    const uint32_t shard = PickShard(key, kShards);
    report_->expected[shard].Add(*line);
    if (seq % kSingleEvery == 0) return AppendSingle(key, *line);
    Pending& p = pending_[shard];
    std::swap(*line, p.lines[p.n++]);
    return p.n == kBatch ? Flush(shard) : Status::Ok();
  }

  Status FlushAll() {
    for (uint32_t shard = 0; shard < kShards; ++shard) {
      if (Status s = Flush(shard); !s.ok()) return s;
    }
    return Status::Ok();
  }

 private:
  struct Pending {
    std::array<std::string, kBatch> lines;
    size_t n = 0;
  };

  Status AppendSingle(const std::string& key, std::string_view line) {
    const std::string stream = PickShardStream(kPrefix, key, kShards);
    const uint64_t t0 = NowNs();
    Status s = client_->Append(stream, line);
    const uint64_t dt = NowNs() - t0;
    report_->single_latency.Record(dt);
    report_->in_append_ns += dt;
    if (!s.ok()) return Status(s.code(), "appending one entry to " + stream + ": " + s.message());
    return s;
  }

  Status Flush(uint32_t shard) {
    Pending& p = pending_[shard];
    if (p.n == 0) return Status::Ok();
    std::array<std::string_view, kBatch> views;
    for (size_t i = 0; i < p.n; ++i) views[i] = p.lines[i];
    const uint64_t t0 = NowNs();
    Status s = client_->Append(streams_[shard], std::span(views.data(), p.n));
    const uint64_t dt = NowNs() - t0;
    if (p.n == kBatch) report_->batch_latency.Record(dt);
    report_->in_append_ns += dt;
    if (!s.ok()) {
      return Status(s.code(), "appending " + std::to_string(p.n) + " entries to " +
                                  streams_[shard]->name() + ": " + s.message());
    }
    p.n = 0;
    return s;
  }

  Client* client_;
  std::array<Stream*, kShards> streams_;
  AppendReport* report_;
  std::array<Pending, kShards> pending_;
};

Status AppendWorkload(Client* client, uint64_t lines, AppendReport* report) {
  auto streams = OpenStreams(client);
  if (!streams.ok()) return streams.status();
  Appender appender(client, *streams, report);
  LogWorkload workload(kSeed);
  std::string line, key;
  const uint64_t t0 = NowNs();
  for (uint64_t seq = 0; seq < lines; ++seq) {
    workload.Next(&line, &key);
    if (Status s = appender.Add(seq, &line, key); !s.ok()) return s;
  }
  Status s = appender.FlushAll();
  report->wall_ns = NowNs() - t0;
  return s;
}

// ---- read phase ------------------------------------------------------------------------------

Status ReadShard(Client* client, Stream* stream, Tally* tally, ReadReport* report) {
  auto it = client->Scan(stream, 0);
  if (!it.ok()) return Status(it.status().code(), stream->name() + ": " + it.status().message());
  Entry e;
  uint64_t next = 0;
  while (true) {
    const uint64_t pos = it->position();
    Status s = it->Next(&e);
    if (s.ok()) {
      if (e.id.entry != next) ++report->misnumbered;
      next = e.id.entry + 1;
      tally->Add(e.data);
      if (e.compressed) {
        ++report->compressed;
        report->compressed_payload += e.data.size();
        report->compressed_stored += e.stored_size;
      }
    } else if (s.IsCorrupt()) {
      ++report->corrupt;
    } else if (it->position() > pos) {
      continue;  // a gap was skipped
    } else if (s.IsNotFound()) {
      return Status::Ok();  // the end
    } else {
      return Status(s.code(), stream->name() + " entry " + std::to_string(pos) + ": " +
                                  s.message());
    }
  }
}

Status ReadAll(Client* client, ReadReport* report) {
  auto streams = OpenStreams(client);
  if (!streams.ok()) return streams.status();
  const uint64_t t0 = NowNs();
  for (uint32_t shard = 0; shard < kShards; ++shard) {
    Status s = ReadShard(client, (*streams)[shard], &report->seen[shard], report);
    if (!s.ok()) return s;
  }
  report->ns = NowNs() - t0;
  return Status::Ok();
}

// ---- storage summary -------------------------------------------------------------------------

Status SummarizeStorage(Client* client, StorageReport* report) {
  for (uint32_t shard = 0; shard < kShards; ++shard) {
    std::string name = ShardStreamName(kPrefix, shard);
    auto info = client->Inspect(name);
    if (!info.ok()) return Status(info.status().code(), name + ": " + info.status().message());
    for (const SegmentInfo& seg : info->segments) {
      ++report->segments;
      report->sealed += seg.sealed ? 1 : 0;
      report->record_bytes += seg.bytes;
    }
  }
  return Status::Ok();
}

// Opens the writer, appends the workload and closes (the closing sync is part of writing).
Status WritePhase(const DemoOptions& o, const Config& cfg, DemoResult* r) {
  auto client = OpenDemo(o.dir, cfg);
  if (!client.ok()) return client.status();
  Status s = AppendWorkload(client->get(), o.lines, &r->append);
  r->stats = (*client)->GetStats();
  const uint64_t t0 = NowNs();
  Status closed = (*client)->Close();
  r->close_ns = NowNs() - t0;
  if (!s.ok()) return s;
  return Annotate(closed, o.dir, "closing " + o.dir);
}

// Reopens (recovery runs), reads everything back and sums up the segments.
Status ReadPhase(const DemoOptions& o, const Config& cfg, DemoResult* r) {
  const uint64_t t0 = NowNs();
  auto client = OpenDemo(o.dir, cfg);
  r->open_ns = NowNs() - t0;
  if (!client.ok()) return client.status();
  if (Status s = ReadAll(client->get(), &r->read); !s.ok()) return s;
  if (Status s = SummarizeStorage(client->get(), &r->storage); !s.ok()) return s;
  return Annotate((*client)->Close(), o.dir, "closing " + o.dir);
}

}  // namespace

int RunDemo(std::span<char* const> argv) {
  auto o = ParseDemoOptions(argv);
  if (!o.ok()) return UsageError("demo", o.status().message());
  auto cfg = DemoConfig(*o);
  if (!cfg.ok()) return UsageError("demo", cfg.status().message());
  if (Status s = PrepareDemoDir(o->dir); !s.ok()) return Fail(s);
  std::printf("comet demo: %s log lines -> %s (%s, %u shards, %s segments)\n\n",
              Grouped(o->lines).c_str(), o->dir.c_str(), std::string(kPrefix).c_str(), kShards,
              SizeLabel(cfg->storage.max_segment_bytes).c_str());
  std::fflush(stdout);

  auto result = std::make_unique<DemoResult>();
  if (Status s = WritePhase(*o, *cfg, result.get()); !s.ok()) return Fail(s);
  if (Status s = ReadPhase(*o, *cfg, result.get()); !s.ok()) return Fail(s);
  if (!PrintDemoReport(*result, *cfg)) {
    std::printf("\nFAILED: the log in %s does not hold what was appended\n", o->dir.c_str());
    return kExitFail;
  }
  if (Status s = PreforkPhase(o->dir, *cfg, 2, std::max<uint64_t>(o->lines / 20, 1000)); !s.ok()) {
    return Fail(s);
  }
  const char* self = program_invocation_name;  // as typed, e.g. build/bin/comet
  std::printf("\nok: the demo log is in %s; try\n"
              "  %s inspect %s\n"
              "  %s tail %s %s -n 3 --json\n",
              o->dir.c_str(), self, o->dir.c_str(), self, o->dir.c_str(),
              ShardStreamName(kPrefix, 0).c_str());
  return kExitOk;
}

}  // namespace comet::cli
