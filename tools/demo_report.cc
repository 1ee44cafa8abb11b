// Prints what `comet demo` measured (see demo.h).
#include <cstdio>
#include <string>

#include "cli.h"
#include "comet/stream.h"
#include "demo.h"

namespace comet::cli {
namespace {

double PerSecond(uint64_t n, uint64_t ns) { return ns == 0 ? 0.0 : n * 1e9 / ns; }
std::string GroupedRate(double per_second) { return Grouped(static_cast<uint64_t>(per_second)); }

const char* SyncModeName(SyncMode m) {
  switch (m) {
    case SyncMode::kNone: return "none";
    case SyncMode::kInterval: return "interval";
    case SyncMode::kAlways: return "always";
  }
  return "?";
}

std::string LatencyLine(std::string_view label, const Histogram& h) {
  return Format("          %-14s %9s calls   p50 %-8s  p99 %-8s  p99.9 %-8s  max %s\n",
                std::string(label).c_str(), Grouped(h.count()).c_str(),
                HumanDuration(h.Percentile(50)).c_str(),
                HumanDuration(h.Percentile(99)).c_str(),
                HumanDuration(h.Percentile(99.9)).c_str(), HumanDuration(h.max()).c_str());
}

void PrintAppend(const AppendReport& a) {
  const uint64_t n = TotalEntries(a.expected), bytes = TotalBytes(a.expected);
  std::printf("append    %s entries, %s payload in %s (%s entries/s, %s/s, generation included)\n",
              Grouped(n).c_str(), HumanBytes(bytes).c_str(), HumanDuration(a.wall_ns).c_str(),
              GroupedRate(PerSecond(n, a.wall_ns)).c_str(),
              HumanBytes(PerSecond(bytes, a.wall_ns)).c_str());
  std::printf("          inside Append: %s (%s entries/s, %s/s)\n",
              HumanDuration(a.in_append_ns).c_str(),
              GroupedRate(PerSecond(n, a.in_append_ns)).c_str(),
              HumanBytes(PerSecond(bytes, a.in_append_ns)).c_str());
  std::printf("%s", LatencyLine("batch of 64", a.batch_latency).c_str());
  std::printf("%s", LatencyLine("single entry", a.single_latency).c_str());
  if (a.batch_latency.count() > 0) {
    std::printf("          per entry in a batch of 64: %s on average\n",
                HumanDuration(a.batch_latency.mean() / kDemoBatch).c_str());
  }
}

void PrintStorage(const AppendReport& a, const StorageReport& st, const ReadReport& r,
                  const Config& cfg) {
  const uint64_t payload = TotalBytes(a.expected);
  const double ratio = st.record_bytes == 0 ? 0.0 : static_cast<double>(payload) / st.record_bytes;
  std::printf("storage   %s payload -> %s stored (ratio %.2fx, 16-byte framing included)\n",
              HumanBytes(payload).c_str(), HumanBytes(st.record_bytes).c_str(), ratio);
  std::printf("          %s (%s sealed by rotation, %s active) of at most %s each\n",
              Plural(st.segments, "segment").c_str(), Grouped(st.sealed).c_str(),
              Grouped(st.segments - st.sealed).c_str(),
              SizeLabel(cfg.storage.max_segment_bytes).c_str());
  if (r.compressed > 0) {
    std::printf("          zstd: %s entries >= %s, %s -> %s (%.1fx)\n",
                Grouped(r.compressed).c_str(), SizeLabel(cfg.compression.min_bytes).c_str(), HumanBytes(r.compressed_payload).c_str(),
                HumanBytes(r.compressed_stored).c_str(),
                r.compressed_stored == 0 ? 0.0
                                         : static_cast<double>(r.compressed_payload) /
                                               r.compressed_stored);
  }
}

void PrintRead(const ReadReport& r) {
  const uint64_t n = TotalEntries(r.seen), bytes = TotalBytes(r.seen);
  std::printf("read      %s entries, %s in %s (%s entries/s, %s/s), %s corrupt\n",
              Grouped(n).c_str(), HumanBytes(bytes).c_str(), HumanDuration(r.ns).c_str(),
              GroupedRate(PerSecond(n, r.ns)).c_str(), HumanBytes(PerSecond(bytes, r.ns)).c_str(),
              Grouped(r.corrupt).c_str());
}

// Compares what was read with what was appended; prints one line per mismatching shard.
bool PrintVerification(const AppendReport& a, const ReadReport& r) {
  bool ok = r.corrupt == 0 && r.misnumbered == 0;
  for (uint32_t shard = 0; shard < kDemoShards; ++shard) {
    const Tally& want = a.expected[shard];
    const Tally& got = r.seen[shard];
    if (want == got) continue;
    ok = false;
    std::printf("MISMATCH  %s: appended %s entries (%s bytes), read back %s entries (%s bytes)%s\n",
                ShardStreamName(kDemoPrefix, shard).c_str(), Grouped(want.entries).c_str(),
                Grouped(want.bytes).c_str(), Grouped(got.entries).c_str(),
                Grouped(got.bytes).c_str(), want.hash != got.hash ? ", contents differ" : "");
  }
  if (r.misnumbered > 0) {
    std::printf("MISMATCH  %s entries out of sequence\n", Grouped(r.misnumbered).c_str());
  }
  if (ok) {
    std::printf("verify    all %u shards read back exactly what was appended (counts, bytes, "
                "checksums, dense entry numbers)\n", kDemoShards);
  }
  return ok;
}

}  // namespace

std::string SizeLabel(uint64_t bytes) {
  if (bytes != 0 && bytes % (1u << 20) == 0) return Grouped(bytes >> 20) + " MiB";
  if (bytes != 0 && bytes % (1u << 10) == 0) return Grouped(bytes >> 10) + " KiB";
  return Plural(bytes, "byte");
}

bool PrintDemoReport(const DemoResult& r, const Config& cfg) {
  PrintAppend(r.append);
  PrintStorage(r.append, r.storage, r.read, cfg);
  PrintRead(r.read);
  std::printf("durable   %s while appending (sync.mode %s)\n"
              "          close (final sync) %s, reopen (recovery of %u shards) %s\n",
              Plural(r.stats.syncs, "fdatasync").c_str(), SyncModeName(cfg.sync.mode),
              HumanDuration(r.close_ns).c_str(), kDemoShards, HumanDuration(r.open_ns).c_str());
  return PrintVerification(r.append, r.read);
}

}  // namespace comet::cli
