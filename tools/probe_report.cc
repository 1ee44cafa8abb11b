#include "probe_report.h"

#include <algorithm>

#include "cli.h"

namespace comet::cli {
namespace {

constexpr int kBarWidth = 40;

std::string Bar(uint64_t v, uint64_t max) {
  int n = max == 0 ? 0 : static_cast<int>((v * kBarWidth + max - 1) / max);
  return std::string(static_cast<size_t>(n), '*') + std::string(static_cast<size_t>(kBarWidth - n), ' ');
}

}  // namespace

double Percentile(const comet_hist& h, double q) {
  uint64_t total = 0;
  for (__u64 c : h.slots) total += c;
  if (total == 0) return 0;
  const double rank = q * static_cast<double>(total);
  double seen = 0;
  for (int i = 0; i < COMET_HIST_SLOTS; i++) {
    const double c = static_cast<double>(h.slots[i]);
    if (c > 0 && seen + c >= rank) {
      const double lo = i == 0 ? 0 : static_cast<double>(uint64_t{1} << i);
      const double hi = static_cast<double>(uint64_t{1} << i) * 2;
      return lo + (hi - lo) * std::clamp((rank - seen) / c, 0.0, 1.0);
    }
    seen += c;
  }
  return 0;
}

std::string FormatHistogram(const std::string& title, const comet_hist& h) {
  if (h.count == 0) return "";
  std::string out = title + ": " + Plural(h.count, "call");
  if (h.entries) out += ", " + Plural(h.entries, "entry", "entries");
  if (h.bytes) out += ", " + HumanBytes(static_cast<double>(h.bytes));
  if (h.errors) out += ", " + Plural(h.errors, "error");
  out += "; mean " + HumanDuration(static_cast<double>(h.sum_ns) / static_cast<double>(h.count)) +
         ", p50 " + HumanDuration(Percentile(h, 0.5)) + ", p99 " +
         HumanDuration(Percentile(h, 0.99)) + ", p99.9 " + HumanDuration(Percentile(h, 0.999)) +
         "\n";
  int first = COMET_HIST_SLOTS, last = -1;
  uint64_t max = 0;
  for (int i = 0; i < COMET_HIST_SLOTS; i++) {
    if (!h.slots[i]) continue;
    first = std::min(first, i);
    last = i;
    max = std::max<uint64_t>(max, h.slots[i]);
  }
  out += Format("%24s : %-10s distribution\n", "ns", "count");
  for (int i = first; i <= last; i++) {
    const uint64_t lo = i == 0 ? 0 : uint64_t{1} << i, hi = (uint64_t{1} << (i + 1)) - 1;
    out += Format("%11llu -> %-10llu : %-10llu |%s|\n", static_cast<unsigned long long>(lo),
                  static_cast<unsigned long long>(hi),
                  static_cast<unsigned long long>(h.slots[i]), Bar(h.slots[i], max).c_str());
  }
  return out;
}

std::string FormatSnapshot(const bpf::Snapshot& s) {
  std::string out;
  for (uint32_t op = 0; op < COMET_OP_COUNT; op++) {
    std::string h = FormatHistogram(bpf::OpName(op), s.ops[op]);
    if (!h.empty()) out += h + "\n";
  }
  for (uint32_t op = 0; op < COMET_K_COUNT; op++) {
    std::string h = FormatHistogram(std::string("kernel ") + bpf::KernelOpName(op), s.kernel[op]);
    if (!h.empty()) out += h + "\n";
  }
  std::string shards;
  for (const auto& [k, h] : s.shards) {
    // The hot-path operations; the others are in the per-shard map for bpftool.
    const bool hot = k.op == COMET_OP_APPEND || k.op == COMET_OP_COMMIT || k.op == COMET_OP_READ ||
                     k.op == COMET_OP_WAIT;
    if (k.prefix_id == 0xFFFFFFFFu || !hot) continue;
    shards += Format("  %-9s prefix %u shard %04X: %s, p50 %s, p99 %s\n", bpf::OpName(k.op),
                     k.prefix_id, k.shard, Plural(h.count, "call").c_str(),
                     HumanDuration(Percentile(h, 0.5)).c_str(),
                     HumanDuration(Percentile(h, 0.99)).c_str());
  }
  if (!shards.empty()) out += "per shard:\n" + shards + "\n";
  for (const auto& [pid, f] : s.faults) {
    out += Format("page faults of appending threads, pid %u: %s, %s of them inside append calls\n", pid,
                  Grouped(f.faults).c_str(), Grouped(f.in_append).c_str());
  }
  if (out.empty()) out = "(nothing counted yet)\n";
  return out;
}

}  // namespace comet::cli
