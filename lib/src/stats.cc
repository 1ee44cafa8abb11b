// Reading a directory's figures from its control region, and rendering them (see stats.h).
//
// Everything here is read-only: the control file is mapped read-only through
// shm::ControlRegion::OpenReader, PREFIX files and slot lock files are opened O_RDONLY, and
// process liveness is asked with F_OFD_GETLK, which tests a lock without taking one. So `comet
// stats` and the exporter can run as any user who can read the directory, next to live writers.
#include "comet/stats.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string_view>
#include <utility>
#include <vector>

#include "comet/stream.h"
#include "control.h"
#include "env.h"
#include "membership.h"

#include "text.h"

namespace comet {

using format::kHistogramBuckets;
using format::kOpCount;

namespace {

using text::AppendJsonString;
using text::Format;
using text::Utf8SequenceLength;

// ---- reading ---------------------------------------------------------------------------------

// One byte more than a prefix may have, so an overlong file is read as overlong, not cut valid.
constexpr size_t kMaxPrefixFileBytes = format::kMaxPrefixLen + 1;

// The prefix named by DIR/streams/<id>/PREFIX, or "?" when that file is missing or not a valid
// prefix (the writer recovers it from a segment header on its next open; a reader must not).
std::string PrefixName(const std::string& dir, uint32_t prefix_id) {
  Result<std::string> text = env::ReadFile(
      env::Join(dir, "streams/" + text::UpperHex(prefix_id, 8) + "/PREFIX"), kMaxPrefixFileBytes);
  return text.ok() && ValidatePrefix(*text).ok() ? *text : "?";
}

// A slot's holder keeps an OFD lock on its slot file for its whole life (shm::SlotLockPath), so a
// held lock means a live holder, whatever the slot bytes say.
bool SlotLockHeld(const std::string& dir, uint32_t slot) {
  return env::OfdLockHeldAt(shm::SlotLockPath(dir, slot), 0, 0);
}

void AddOp(const format::OpMetrics& m, LatencyHistogram* h) {
  h->count += m.count.load(std::memory_order_relaxed);
  h->sum_ns += m.sum_ns.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kHistogramBuckets; i++) {
    h->buckets[i] += m.buckets[i].load(std::memory_order_relaxed);
  }
}

void ReadProcesses(const shm::ControlRegion& r, const std::string& dir, DirectoryStats* s) {
  for (uint32_t i = 0; i < r.max_processes(); i++) {
    // Histograms stay after their holder leaves (they are cumulative), so every slot counts.
    const format::ProcessMetrics* m = r.metrics(i);
    for (uint32_t op = 0; op < kOpCount; op++) AddOp(m->ops[op], &s->ops[op]);

    const format::ProcessSlot* p = r.process(i);
    if (p->state.load(std::memory_order_acquire) == format::kProcessNeverUsed) continue;
    ProcessInfo info;
    info.slot = i;
    info.pid = p->pid.load(std::memory_order_relaxed);
    info.start_time = p->start_time.load(std::memory_order_relaxed);
    info.epoch = p->epoch.load(std::memory_order_relaxed);
    info.owned_shards = p->owned_shards.load(std::memory_order_relaxed);
    info.live = SlotLockHeld(dir, i);
    s->processes.push_back(info);
  }
}

StreamStats ReadShard(const format::ShardSlot& slot, const std::string& prefix) {
  StreamStats st;
  st.prefix_id = slot.prefix_id;
  st.shard = slot.shard;
  // Not ShardStreamName: the shard number comes from shared memory and is not trusted to fit.
  st.name = prefix + ":shard:" + text::UpperHex(slot.shard, 4);
  uint64_t owner = slot.owner.load(std::memory_order_acquire);
  st.owner_slot = owner == 0 ? -1 : static_cast<int32_t>((owner >> 32) - 1);
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  st.committed_entry = slot.committed_entry.load(std::memory_order_acquire);
  st.synced_entry = get(slot.synced_entry);
#define COMET_READ_COUNTER(field, ...) st.field = get(slot.field);
  COMET_STREAM_COUNTERS(COMET_READ_COUNTER)
#undef COMET_READ_COUNTER
  st.retained_from = get(slot.retained_from);
  return st;
}

void ReadRetention(const shm::ControlRegion& r, DirectoryStats* s) {
  const format::ControlHeader* h = r.header();
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
#define COMET_READ_COUNTER(header_field, field, ...) s->retention.field = get(h->header_field);
  COMET_RETENTION_COUNTERS(COMET_READ_COUNTER)
#undef COMET_READ_COUNTER
  s->retention.last_pass_ns = h->retention_last_ns.load(std::memory_order_relaxed);
  // Skipped counts are per (group, stream): summed into their group, by group slot.
  const uint32_t groups = r.group_count();
  std::vector<GroupLosses> by_slot(groups);
  std::vector<bool> ready(groups);
  for (uint32_t g = 0; g < groups; g++) {
    const format::GroupSlot* slot = r.group(g);
    ready[g] = slot->state.load(std::memory_order_acquire) == format::kSlotReady;
    by_slot[g].name.assign(slot->name, std::min<size_t>(slot->name_len, format::kMaxGroupName));
    by_slot[g].retention_lost = get(slot->retention_lost);
  }
  const uint32_t offsets = r.offset_count();
  for (uint32_t i = 0; i < offsets; i++) {
    const format::OffsetSlot* o = r.offset(i);
    if (o->state.load(std::memory_order_acquire) == format::kSlotReady && o->group < groups) {
      by_slot[o->group].skipped += get(o->skipped);
    }
  }
  for (uint32_t g = 0; g < groups; g++) {
    if (ready[g]) s->group_losses.push_back(std::move(by_slot[g]));
  }
}

void ReadStreams(const shm::ControlRegion& r, const std::string& dir, DirectoryStats* s) {
  std::map<uint32_t, std::string> prefixes;  // each PREFIX file is read once
  const uint32_t n = r.shard_count();        // Validate checked it against max_shards
  for (uint32_t i = 0; i < n; i++) {
    const format::ShardSlot* slot = r.shard_at(i);
    if (slot->state.load(std::memory_order_acquire) != format::kSlotReady) continue;
    auto [it, fresh] = prefixes.try_emplace(slot->prefix_id);
    if (fresh) it->second = PrefixName(dir, slot->prefix_id);
    s->streams.push_back(ReadShard(*slot, it->second));
  }
  std::sort(s->streams.begin(), s->streams.end(), [](const StreamStats& a, const StreamStats& b) {
    if (a.name != b.name) return a.name < b.name;
    return a.prefix_id != b.prefix_id ? a.prefix_id < b.prefix_id : a.shard < b.shard;
  });
}

// The first entry stored in a stream: the base of its oldest segment (0 if none is found).
uint64_t FirstStoredEntry(const std::string& dir, uint32_t prefix_id, uint32_t shard) {
  const std::string path = env::Join(
      dir, "streams/" + text::UpperHex(prefix_id, 8) + "/" + text::UpperHex(shard & 0xFFFF, 4));
  Result<std::vector<std::string>> names = env::ListDir(path);
  if (!names.ok()) return 0;
  uint64_t first = UINT64_MAX;
  for (const std::string& n : *names) {
    uint64_t base;
    if (n.size() == 20 && n.ends_with(".seg") && text::ParseUpperHex(n.substr(0, 16), 16, &base)) {
      first = std::min(first, base);
    }
  }
  return first == UINT64_MAX ? 0 : first;
}

void ReadGroups(const shm::ControlRegion& r, const std::string& dir, DirectoryStats* s) {
  std::map<uint64_t, const StreamStats*> streams;  // by prefix_id << 32 | shard
  for (const StreamStats& st : s->streams) streams[uint64_t{st.prefix_id} << 32 | st.shard] = &st;
  std::map<uint64_t, uint64_t> first;  // each stream's directory is listed once
  const uint32_t groups = std::min(r.group_count(), r.header()->max_groups);
  const uint32_t offsets = std::min(r.offset_count(), r.header()->max_offsets);
  for (uint32_t i = 0; i < offsets; i++) {
    const format::OffsetSlot* o = r.offset(i);
    if (o->state.load(std::memory_order_acquire) != format::kSlotReady || o->group >= groups) {
      continue;
    }
    const format::GroupSlot* g = r.group(o->group);
    if (g->state.load(std::memory_order_acquire) != format::kSlotReady) continue;
    GroupStreamStats gs;
    gs.group.assign(g->name, std::min<size_t>(g->name_len, format::kMaxGroupName));
    gs.prefix_id = o->prefix_id;
    gs.shard = o->shard;
    gs.committed = o->committed.load(std::memory_order_acquire);
    gs.skipped = o->skipped.load(std::memory_order_relaxed);
    gs.updated_ns = o->updated_ns.load(std::memory_order_relaxed);
    const uint64_t key = uint64_t{o->prefix_id} << 32 | o->shard;
    auto st = streams.find(key);
    if (st != streams.end()) {
      gs.stream = st->second->name;
      gs.end = st->second->committed_entry;
    } else {
      gs.stream = PrefixName(dir, o->prefix_id) + ":shard:" + text::UpperHex(o->shard, 4);
    }
    auto [f, fresh] = first.try_emplace(key);
    if (fresh) f->second = FirstStoredEntry(dir, o->prefix_id, o->shard);
    const uint64_t from = std::max(gs.committed, f->second);
    gs.lag = gs.end > from ? gs.end - from : 0;
    s->groups.push_back(std::move(gs));
  }
  std::sort(s->groups.begin(), s->groups.end(),
            [](const GroupStreamStats& a, const GroupStreamStats& b) {
              if (a.group != b.group) return a.group < b.group;
              if (a.stream != b.stream) return a.stream < b.stream;
              return a.prefix_id != b.prefix_id ? a.prefix_id < b.prefix_id : a.shard < b.shard;
            });
}

// ---- shared rendering helpers ----------------------------------------------------------------

// Calls emit_valid(piece) for runs of valid UTF-8 and emit_bad(byte) for each invalid byte.
template <class Valid, class Bad>
void SplitUtf8(std::string_view s, Valid emit_valid, Bad emit_bad) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : Utf8SequenceLength(s, i);
    if (len == 0) {
      emit_bad(c);
      i++;
    } else {
      emit_valid(s.substr(i, len));
      i += len;
    }
  }
}

// Bucket i holds [2^i, 2^(i+1)) ns; its upper bound does not fit 64 bits for the last bucket.
double BucketUpperNs(size_t i) { return std::ldexp(1.0, static_cast<int>(i) + 1); }

// ---- JSON ------------------------------------------------------------------------------------


// Writes a JSON object member by member: Key() puts the comma between members.
class JsonObject {
 public:
  explicit JsonObject(std::string* out) : out_(out) { out_->push_back('{'); }
  void Key(std::string_view k) {
    if (!first_) out_->push_back(',');
    first_ = false;
    AppendJsonString(out_, k);
    out_->push_back(':');
  }
  void Num(std::string_view k, uint64_t v) { Key(k); out_->append(std::to_string(v)); }
  void Int(std::string_view k, int64_t v) { Key(k); out_->append(std::to_string(v)); }
  void Bool(std::string_view k, bool v) { Key(k); out_->append(v ? "true" : "false"); }
  void Str(std::string_view k, std::string_view v) { Key(k); AppendJsonString(out_, v); }
  void Close() { out_->push_back('}'); }

 private:
  std::string* out_;
  bool first_ = true;
};

void AppendProcessJson(std::string* out, const ProcessInfo& p) {
  JsonObject o(out);
  o.Num("slot", p.slot);
  o.Num("pid", p.pid);
  o.Num("start_time", p.start_time);
  o.Num("epoch", p.epoch);
  o.Num("owned_shards", p.owned_shards);
  o.Bool("live", p.live);
  o.Close();
}

void AppendStreamJson(std::string* out, const StreamStats& st) {
  JsonObject o(out);
  o.Str("name", st.name);
  o.Num("prefix_id", st.prefix_id);
  o.Num("shard", st.shard);
  o.Int("owner_slot", st.owner_slot);
  o.Num("committed_entry", st.committed_entry);
  o.Num("synced_entry", st.synced_entry);
#define COMET_COUNTER_JSON(field, ...) o.Num(#field, st.field);
  COMET_STREAM_COUNTERS(COMET_COUNTER_JSON)
#undef COMET_COUNTER_JSON
  o.Num("retained_from", st.retained_from);
  o.Close();
}

void AppendRetentionJson(std::string* out, const DirectoryStats& s) {
  JsonObject o(out);
#define COMET_COUNTER_JSON(header_field, field, ...) o.Num(#field, s.retention.field);
  COMET_RETENTION_COUNTERS(COMET_COUNTER_JSON)
#undef COMET_COUNTER_JSON
  o.Int("last_pass_ns", s.retention.last_pass_ns);
  o.Key("groups");
  out->push_back('[');
  for (size_t i = 0; i < s.group_losses.size(); i++) {
    if (i > 0) out->push_back(',');
    JsonObject g(out);
    g.Str("name", s.group_losses[i].name);
    g.Num("retention_lost", s.group_losses[i].retention_lost);
    g.Num("skipped", s.group_losses[i].skipped);
    g.Close();
  }
  out->push_back(']');
  o.Close();
}

// "buckets" is the full array: element i counts operations of [2^i, 2^(i+1)) ns.
void AppendHistogramJson(std::string* out, const LatencyHistogram& h) {
  JsonObject o(out);
  o.Num("count", h.count);
  o.Num("sum_ns", h.sum_ns);
  o.Num("p50_ns", h.PercentileNs(50));
  o.Num("p99_ns", h.PercentileNs(99));
  o.Num("p999_ns", h.PercentileNs(99.9));
  o.Key("buckets");
  out->push_back('[');
  for (size_t i = 0; i < kHistogramBuckets; i++) {
    if (i > 0) out->push_back(',');
    out->append(std::to_string(h.buckets[i]));
  }
  out->push_back(']');
  o.Close();
}

void AppendGroupJson(std::string* out, const GroupStreamStats& g) {
  JsonObject o(out);
  o.Str("group", g.group);
  o.Str("stream", g.stream);
  o.Num("prefix_id", g.prefix_id);
  o.Num("shard", g.shard);
  o.Num("committed", g.committed);
  o.Num("end", g.end);
  o.Num("lag", g.lag);
  o.Num("skipped", g.skipped);
  o.Int("updated_ns", g.updated_ns);
  o.Close();
}

// ---- text ------------------------------------------------------------------------------------

std::string HumanNs(double ns) {
  if (ns < 1e3) return Format("%.0f ns", ns);
  if (ns < 1e6) return Format("%.1f us", ns / 1e3);
  if (ns < 1e9) return Format("%.2f ms", ns / 1e6);
  return Format("%.2f s", ns / 1e9);
}

// A percentile is a bucket's upper bound, so it reads as "at most".
std::string PercentileText(const LatencyHistogram& h, double p) {
  uint64_t ns = h.PercentileNs(p);
  return ns == 0 ? "-" : "<" + HumanNs(static_cast<double>(ns));
}

void AppendProcessTable(std::string* out, const DirectoryStats& s) {
  if (s.processes.empty()) {
    out->append("processes: none registered\n");
    return;
  }
  out->append("processes:\n");
  out->append(Format("  %4s  %8s  %-6s  %8s  %12s\n", "SLOT", "PID", "STATE", "EPOCH",
                     "OWNED SHARDS"));
  for (const ProcessInfo& p : s.processes) {
    out->append(Format("  %4" PRIu32 "  %8" PRIu32 "  %-6s  %8" PRIu64 "  %12" PRIu64 "\n", p.slot,
                       p.pid, p.live ? "live" : "gone", p.epoch, p.live ? p.owned_shards : 0));
  }
}

void AppendStreamTable(std::string* out, const DirectoryStats& s) {
  if (s.streams.empty()) {
    out->append("streams: none\n");
    return;
  }
  int w = 6;
  for (const StreamStats& st : s.streams) w = std::max(w, static_cast<int>(st.name.size()));
  out->append("streams:\n");
  out->append(Format("  %-*s  %5s  %12s  %12s", w, "STREAM", "OWNER", "COMMITTED", "SYNCED"));
#define COMET_COUNTER_HEADING(field, prom, unit, help, column, width) \
  out->append(Format("  %*s", width, column));
  COMET_STREAM_COUNTERS(COMET_COUNTER_HEADING)
#undef COMET_COUNTER_HEADING
  out->push_back('\n');
  for (const StreamStats& st : s.streams) {
    std::string owner = st.owner_slot < 0 ? "-" : std::to_string(st.owner_slot);
    out->append(Format("  %-*s  %5s  %12" PRIu64 "  %12" PRIu64, w, st.name.c_str(),
                       owner.c_str(), st.committed_entry, st.synced_entry));
#define COMET_COUNTER_CELL(field, prom, unit, help, column, width) \
  out->append(Format("  %*" PRIu64, width, st.field));
    COMET_STREAM_COUNTERS(COMET_COUNTER_CELL)
#undef COMET_COUNTER_CELL
    out->push_back('\n');
  }
}

void AppendGroupTable(std::string* out, const DirectoryStats& s) {
  if (s.groups.empty()) {
    out->append("groups: none\n");
    return;
  }
  int gw = 5, sw = 6;
  for (const GroupStreamStats& g : s.groups) {
    gw = std::max(gw, static_cast<int>(g.group.size()));
    sw = std::max(sw, static_cast<int>(g.stream.size()));
  }
  out->append("groups:\n");
  out->append(Format("  %-*s  %-*s  %12s  %12s  %12s  %9s\n", gw, "GROUP", sw, "STREAM",
                     "COMMITTED", "END", "LAG", "SKIPPED"));
  for (const GroupStreamStats& g : s.groups) {
    out->append(Format("  %-*s  %-*s  %12" PRIu64 "  %12" PRIu64 "  %12" PRIu64 "  %9" PRIu64
                       "\n",
                       gw, g.group.c_str(), sw, g.stream.c_str(), g.committed, g.end, g.lag,
                       g.skipped));
  }
}

void AppendRetentionText(std::string* out, const DirectoryStats& s) {
  const RetentionStats& r = s.retention;
  out->append(Format("retention: %" PRIu64 " passes deleted %" PRIu64 " segments, %" PRIu64
                     " entries, %" PRIu64 " bytes (%" PRIu64 " entries not yet consumed by "
                     "every group)\n",
                     r.passes, r.segments, r.entries, r.bytes, r.unconsumed));
  for (const StreamStats& st : s.streams) {
    if (st.retained_from == 0) continue;
    out->append(Format("  %s: first retained entry %" PRIu64 "\n", st.name.c_str(),
                       st.retained_from));
  }
  for (const GroupLosses& g : s.group_losses) {
    out->append(Format("  group %s: %" PRIu64 " entries lost to retention, %" PRIu64
                       " passed over unread\n",
                       g.name.c_str(), g.retention_lost, g.skipped));
  }
}

void AppendOpTable(std::string* out, const DirectoryStats& s) {
  out->append("operations (latency, all processes):\n");
  out->append(Format("  %-7s  %12s  %10s  %10s  %10s  %10s\n", "OP", "COUNT", "MEAN", "P50",
                     "P99", "P99.9"));
  for (uint32_t op = 0; op < kOpCount; op++) {
    const LatencyHistogram& h = s.ops[op];
    std::string mean =
        h.count == 0 ? "-" : HumanNs(static_cast<double>(h.sum_ns) / static_cast<double>(h.count));
    out->append(Format("  %-7s  %12" PRIu64 "  %10s  %10s  %10s  %10s\n", MetricOpName(op),
                       h.count, mean.c_str(), PercentileText(h, 50).c_str(),
                       PercentileText(h, 99).c_str(), PercentileText(h, 99.9).c_str()));
  }
}

// ---- Prometheus / OpenMetrics ----------------------------------------------------------------

// Label values are UTF-8 with \\, \" and \n escaped; an invalid byte (a prefix may hold any
// byte but control characters) becomes U+FFFD so the exposition stays parseable.
void AppendLabelValue(std::string* out, std::string_view v) {
  SplitUtf8(
      v,
      [out](std::string_view piece) {
        switch (piece[0]) {
          case '\\': out->append("\\\\"); break;
          case '"': out->append("\\\""); break;
          case '\n': out->append("\\n"); break;
          default: out->append(piece);
        }
      },
      [out](unsigned char) { out->append("\xEF\xBF\xBD"); });
}

using Labels = std::vector<std::pair<std::string_view, std::string>>;

void AppendSample(std::string* out, std::string_view name, const Labels& labels,
                  std::string_view value) {
  out->append(name);
  if (!labels.empty()) {
    out->push_back('{');
    for (size_t i = 0; i < labels.size(); i++) {
      if (i > 0) out->push_back(',');
      out->append(labels[i].first);
      out->append("=\"");
      AppendLabelValue(out, labels[i].second);
      out->push_back('"');
    }
    out->push_back('}');
  }
  out->push_back(' ');
  out->append(value);
  out->push_back('\n');
}

// The family's metadata. OpenMetrics names a counter family without "_total" (its samples carry
// it) and allows UNIT only when the name ends with "_<unit>".
void AppendFamily(std::string* out, std::string_view name, std::string_view type,
                  std::string_view help, std::string_view unit = {}) {
  out->append("# TYPE ").append(name).append(" ").append(type).append("\n");
  if (!unit.empty()) out->append("# UNIT ").append(name).append(" ").append(unit).append("\n");
  out->append("# HELP ").append(name).append(" ").append(help).append("\n");
}

// The shortest decimal that reads back as the same double ("2e-09", "1.6e-08", "0.001024"),
// so le labels are stable and match what Prometheus itself would print.
std::string ShortestDouble(double v) {
  for (int precision = 1; precision <= 17; precision++) {
    std::string s = Format("%.*g", precision, v);
    if (std::strtod(s.c_str(), nullptr) == v) return s;
  }
  return Format("%.17g", v);
}

void AppendHistogram(std::string* out, uint32_t op, const LatencyHistogram& h) {
  std::string name = std::string("comet_") + MetricOpName(op) + "_seconds";
  AppendFamily(out, name, "histogram",
               std::string("Latency of ") + MetricOpName(op) + " operations, all processes.",
               "seconds");
  // The buckets are read one by one while writers add to them, so the total comes from the
  // buckets themselves: +Inf and _count must agree and cumulative counts must not decrease.
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kHistogramBuckets; i++) {
    cumulative += h.buckets[i];
    AppendSample(out, name + "_bucket", {{"le", ShortestDouble(BucketUpperNs(i) / 1e9)}},
                 std::to_string(cumulative));
  }
  AppendSample(out, name + "_bucket", {{"le", "+Inf"}}, std::to_string(cumulative));
  AppendSample(out, name + "_count", {}, std::to_string(cumulative));
  AppendSample(out, name + "_sum", {}, ShortestDouble(static_cast<double>(h.sum_ns) / 1e9));
}

Labels StreamLabels(const StreamStats& st) {
  return {{"stream", st.name}, {"prefix_id", std::to_string(st.prefix_id)},
          {"shard", std::to_string(st.shard)}};
}

struct StreamMetric {
  const char* name;  // family name; counters get "_total" on their samples
  const char* type;
  const char* unit;
  const char* help;
  uint64_t StreamStats::*field;
};

constexpr StreamMetric kStreamMetrics[] = {
    {"comet_stream_committed_entry", "gauge", "",
     "Next entry number of the stream; every entry below it is readable.",
     &StreamStats::committed_entry},
    {"comet_stream_synced_entry", "gauge", "", "Entries below this survived fdatasync.",
     &StreamStats::synced_entry},
#define COMET_COUNTER_METRIC(field, prom, unit, help, ...) \
  {prom, "counter", unit, help, &StreamStats::field},
    COMET_STREAM_COUNTERS(COMET_COUNTER_METRIC)
#undef COMET_COUNTER_METRIC
    {"comet_stream_retained_from", "gauge", "",
     "Retention deleted every entry below this entry number.", &StreamStats::retained_from},
};

void AppendStreamMetrics(std::string* out, const DirectoryStats& s) {
  for (const StreamMetric& m : kStreamMetrics) {
    AppendFamily(out, m.name, m.type, m.help, m.unit);
    const std::string sample =
        std::string(m.name) + (std::string_view(m.type) == "counter" ? "_total" : "");
    for (const StreamStats& st : s.streams) {
      AppendSample(out, sample, StreamLabels(st), std::to_string(st.*(m.field)));
    }
  }
}

void AppendGroupMetrics(std::string* out, const DirectoryStats& s) {
  const struct {
    const char* name;
    const char* type;
    const char* help;
    uint64_t GroupStreamStats::*field;
  } metrics[] = {
      {"comet_group_lag", "gauge", "Entries stored and not yet committed by the group.",
       &GroupStreamStats::lag},
      {"comet_group_committed_entry", "gauge",
       "The group's offset: the next entry it delivers; every entry below is acked.",
       &GroupStreamStats::committed},
      {"comet_group_skipped_entries", "counter",
       "Entries the group passed over unread (damaged or deleted).", &GroupStreamStats::skipped},
  };
  for (const auto& m : metrics) {
    AppendFamily(out, m.name, m.type, m.help);
    const std::string sample =
        std::string(m.name) + (std::string_view(m.type) == "counter" ? "_total" : "");
    for (const GroupStreamStats& g : s.groups) {
      AppendSample(out, sample,
                   {{"group", g.group}, {"stream", g.stream},
                    {"prefix_id", std::to_string(g.prefix_id)}, {"shard", std::to_string(g.shard)}},
                   std::to_string(g.*(m.field)));
    }
  }
}

void AppendProcessMetrics(std::string* out, const DirectoryStats& s) {
  size_t live = 0;
  for (const ProcessInfo& p : s.processes) live += p.live ? 1 : 0;
  AppendFamily(out, "comet_processes_live", "gauge",
               "Processes holding a slot lock on the directory now.");
  AppendSample(out, "comet_processes_live", {}, std::to_string(live));
  // A dead holder's owned_shards is stale, so only live processes are listed.
  AppendFamily(out, "comet_process_owned_shards", "gauge", "Shards a live process writes now.");
  for (const ProcessInfo& p : s.processes) {
    if (!p.live) continue;
    AppendSample(out, "comet_process_owned_shards",
                 {{"slot", std::to_string(p.slot)}, {"pid", std::to_string(p.pid)}},
                 std::to_string(p.owned_shards));
  }
  AppendFamily(out, "comet_streams", "gauge", "Streams registered in the control region.");
  AppendSample(out, "comet_streams", {}, std::to_string(s.streams.size()));
}

void AppendDirectoryCounters(std::string* out, const DirectoryStats& s) {
#define COMET_COUNTER_METRIC(field, prom, help, ...) \
  AppendFamily(out, prom, "counter", help);          \
  AppendSample(out, std::string(prom) + "_total", {}, std::to_string(s.field));
  COMET_DIRECTORY_COUNTERS(COMET_COUNTER_METRIC)
#undef COMET_COUNTER_METRIC
}

void AppendRetentionMetrics(std::string* out, const DirectoryStats& s) {
  const RetentionStats& r = s.retention;
#define COMET_COUNTER_METRIC(header_field, field, prom, help) \
  AppendFamily(out, prom, "counter", help);                  \
  AppendSample(out, std::string(prom) + "_total", {}, std::to_string(r.field));
  COMET_RETENTION_COUNTERS(COMET_COUNTER_METRIC)
#undef COMET_COUNTER_METRIC
  AppendFamily(out, "comet_group_retention_lost", "counter",
               "Entries retention deleted before this group had consumed them.");
  for (const GroupLosses& g : s.group_losses) {
    AppendSample(out, "comet_group_retention_lost_total", {{"group", g.name}},
                 std::to_string(g.retention_lost));
  }
}

}  // namespace

// ---- public API ------------------------------------------------------------------------------

uint64_t LatencyHistogram::PercentileNs(double p) const {
  // Ranked against the buckets, not `count`: they are read separately while writers update them.
  uint64_t total = 0;
  for (uint64_t b : buckets) total += b;
  if (total == 0) return 0;
  p = std::clamp(p, 0.0, 100.0);
  const double want = std::ceil(p / 100.0 * static_cast<double>(total));
  const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(want));
  uint64_t seen = 0;
  for (size_t i = 0; i < kHistogramBuckets; i++) {
    seen += buckets[i];
    if (seen >= rank) return i + 1 >= 64 ? UINT64_MAX : uint64_t{1} << (i + 1);
  }
  return UINT64_MAX;
}

const char* MetricOpName(uint32_t op) {
  static constexpr const char* kNames[kOpCount] = {"append", "sync", "rotate", "read", "ack"};
  return op < kOpCount ? kNames[op] : "unknown";
}

Result<DirectoryStats> ReadStats(const std::string& dir) {
  Result<std::unique_ptr<shm::ControlRegion>> region = shm::ControlRegion::OpenReader(dir);
  if (!region.ok()) return region.status();
  const shm::ControlRegion& r = **region;
  const format::ControlHeader* h = r.header();
  DirectoryStats s;
  s.dir = dir;
  s.layout_version = h->version.load(std::memory_order_acquire);
  s.max_processes = h->max_processes;
  s.max_streams = h->max_shards;
#define COMET_READ_COUNTER(field, ...) s.field = h->field.load(std::memory_order_relaxed);
  COMET_DIRECTORY_COUNTERS(COMET_READ_COUNTER)
#undef COMET_READ_COUNTER
  ReadProcesses(r, dir, &s);
  ReadStreams(r, dir, &s);
  ReadGroups(r, dir, &s);
  ReadRetention(r, &s);
  return s;
}

std::string FormatStatsJson(const DirectoryStats& s) {
  std::string out;
  JsonObject o(&out);
  o.Str("dir", s.dir);
  o.Str("layout_version", text::VersionText(s.layout_version));
  o.Num("max_processes", s.max_processes);
  o.Num("max_streams", s.max_streams);
  o.Key("counters");
  {
    JsonObject c(&out);
#define COMET_COUNTER_JSON(field, ...) c.Num(#field, s.field);
    COMET_DIRECTORY_COUNTERS(COMET_COUNTER_JSON)
#undef COMET_COUNTER_JSON
    c.Close();
  }
  o.Key("processes");
  out.push_back('[');
  for (size_t i = 0; i < s.processes.size(); i++) {
    if (i > 0) out.push_back(',');
    AppendProcessJson(&out, s.processes[i]);
  }
  out.push_back(']');
  o.Key("streams");
  out.push_back('[');
  for (size_t i = 0; i < s.streams.size(); i++) {
    if (i > 0) out.push_back(',');
    AppendStreamJson(&out, s.streams[i]);
  }
  out.push_back(']');
  o.Key("groups");
  out.push_back('[');
  for (size_t i = 0; i < s.groups.size(); i++) {
    if (i > 0) out.push_back(',');
    AppendGroupJson(&out, s.groups[i]);
  }
  out.push_back(']');
  o.Key("retention");
  AppendRetentionJson(&out, s);
  o.Key("ops");
  {
    JsonObject ops(&out);
    for (uint32_t op = 0; op < kOpCount; op++) {
      ops.Key(MetricOpName(op));
      AppendHistogramJson(&out, s.ops[op]);
    }
    ops.Close();
  }
  o.Close();
  out.push_back('\n');
  return out;
}

std::string FormatStatsText(const DirectoryStats& s) {
  size_t live = 0;
  for (const ProcessInfo& p : s.processes) live += p.live ? 1 : 0;
  std::string out =
      Format("%s: layout %s, %zu of %" PRIu32 " streams, %zu live of %" PRIu32 " process slots\n",
             s.dir.c_str(), text::VersionText(s.layout_version).c_str(), s.streams.size(),
             s.max_streams, live, s.max_processes);
  out += "counters:";
  const char* sep = " ";
#define COMET_COUNTER_TEXT(field, prom, help, label)                    \
  out += Format("%s%" PRIu64 " %s", sep, s.field, label); \
  sep = ", ";
  COMET_DIRECTORY_COUNTERS(COMET_COUNTER_TEXT)
#undef COMET_COUNTER_TEXT
  out += "\n";
  AppendProcessTable(&out, s);
  AppendStreamTable(&out, s);
  AppendGroupTable(&out, s);
  AppendRetentionText(&out, s);
  AppendOpTable(&out, s);
  return out;
}

std::string FormatGroupsText(const DirectoryStats& s) {
  std::string out;
  AppendGroupTable(&out, s);
  return out;
}

std::string FormatGroupsJsonLines(const DirectoryStats& s) {
  std::string out;
  for (const GroupStreamStats& g : s.groups) {
    AppendGroupJson(&out, g);
    out.push_back('\n');
  }
  return out;
}

std::string FormatStatsPrometheus(const DirectoryStats& s) {
  std::string out;
  for (uint32_t op = 0; op < kOpCount; op++) AppendHistogram(&out, op, s.ops[op]);
  AppendStreamMetrics(&out, s);
  AppendGroupMetrics(&out, s);
  AppendProcessMetrics(&out, s);
  AppendDirectoryCounters(&out, s);
  AppendRetentionMetrics(&out, s);
  out.append("# EOF\n");
  return out;
}

}  // namespace comet
