// `comet inspect DIR [--json]`: streams, segments, gaps and corrupt records of a data
// directory, read-only.
#include <string>
#include <vector>

#include "cli.h"
#include "commands.h"

namespace comet::cli {
namespace {

constexpr OptionSpec kOptions[] = {{"--json", false}};

uint64_t SegmentEntries(const StreamInfo& info) {
  uint64_t n = 0;
  for (const SegmentInfo& seg : info.segments) n += seg.entries;
  return n;
}

uint64_t SegmentBytes(const StreamInfo& info) {
  uint64_t n = 0;
  for (const SegmentInfo& seg : info.segments) n += seg.bytes;
  return n;
}

// ---- text ------------------------------------------------------------------------------------

void AppendGapsText(const StreamInfo& info, std::string* out) {
  if (info.gaps.empty()) return;
  out->append("  gaps:");
  for (const auto& [from, to] : info.gaps) {
    out->append(Format(" [%llu, %llu)", static_cast<unsigned long long>(from),
                       static_cast<unsigned long long>(to)));
  }
  out->push_back('\n');
}

void AppendStreamText(const StreamInfo& info, std::string* out) {
  out->append(Format("%s  prefix id %u  shard %u  first %llu  next %llu  (%s, %s of records in "
                     "%s)  corrupt %llu  gaps %zu\n",
                     info.name.c_str(), info.first.prefix_id, info.first.shard,
                     static_cast<unsigned long long>(info.first.entry),
                     static_cast<unsigned long long>(info.next_entry),
                     Plural(SegmentEntries(info), "entry", "entries").c_str(),
                     Plural(SegmentBytes(info), "byte").c_str(),
                     Plural(info.segments.size(), "segment").c_str(),
                     static_cast<unsigned long long>(info.corrupt_records), info.gaps.size()));
  for (const SegmentInfo& seg : info.segments) {
    out->append(Format("  %s  base %llu  entries %llu  bytes %llu  %s\n", seg.file.c_str(),
                       static_cast<unsigned long long>(seg.base_entry),
                       static_cast<unsigned long long>(seg.entries),
                       static_cast<unsigned long long>(seg.bytes),
                       seg.sealed ? "sealed" : "active"));
  }
  AppendGapsText(info, out);
}

// ---- JSON ------------------------------------------------------------------------------------

void AppendSegmentJson(const SegmentInfo& seg, std::string* out) {
  out->append("{\"file\":");
  AppendJsonString(out, seg.file);
  out->append(Format(",\"base_entry\":%llu,\"entries\":%llu,\"bytes\":%llu,\"created_ns\":%lld,"
                     "\"sealed\":%s}",
                     static_cast<unsigned long long>(seg.base_entry),
                     static_cast<unsigned long long>(seg.entries),
                     static_cast<unsigned long long>(seg.bytes),
                     static_cast<long long>(seg.created_ns), seg.sealed ? "true" : "false"));
}

void AppendStreamJson(const StreamInfo& info, std::string* out) {
  out->append("{\"name\":");
  AppendJsonString(out, info.name);
  out->append(Format(",\"prefix_id\":%u,\"shard\":%u,\"first_entry\":%llu,\"next_entry\":%llu,"
                     "\"corrupt_records\":%llu,\"segments\":[",
                     info.first.prefix_id, info.first.shard,
                     static_cast<unsigned long long>(info.first.entry),
                     static_cast<unsigned long long>(info.next_entry),
                     static_cast<unsigned long long>(info.corrupt_records)));
  for (size_t i = 0; i < info.segments.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendSegmentJson(info.segments[i], out);
  }
  out->append("],\"gaps\":[");
  for (size_t i = 0; i < info.gaps.size(); ++i) {
    out->append(Format("%s[%llu,%llu]", i > 0 ? "," : "",
                       static_cast<unsigned long long>(info.gaps[i].first),
                       static_cast<unsigned long long>(info.gaps[i].second)));
  }
  out->append("]}");
}

// Inspects every stream; streams that fail are reported on stderr and left out.
std::vector<StreamInfo> InspectAll(Client* client, const std::string& dir, bool* failed) {
  std::vector<StreamInfo> infos;
  for (const std::string& name : client->Streams()) {
    auto info = client->Inspect(name);
    if (!info.ok()) {
      PrintError(Annotate(info.status(), name, "inspecting " + name + " in " + dir));
      *failed = true;
      continue;
    }
    infos.push_back(std::move(info).value());
  }
  return infos;
}

std::string RenderText(const std::string& dir, const std::vector<StreamInfo>& infos) {
  uint64_t entries = 0, bytes = 0, segments = 0, corrupt = 0;
  for (const StreamInfo& info : infos) {
    entries += SegmentEntries(info);
    bytes += SegmentBytes(info);
    segments += info.segments.size();
    corrupt += info.corrupt_records;
  }
  std::string out = Format("%s: %s, %s, %s, %s of records, %s\n", dir.c_str(),
                           Plural(infos.size(), "stream").c_str(),
                           Plural(segments, "segment").c_str(),
                           Plural(entries, "entry", "entries").c_str(),
                           Plural(bytes, "byte").c_str(),
                           Plural(corrupt, "corrupt record").c_str());
  for (const StreamInfo& info : infos) AppendStreamText(info, &out);
  return out;
}

std::string RenderJson(const std::string& dir, const std::vector<StreamInfo>& infos) {
  std::string out = "{\"dir\":";
  AppendJsonString(&out, dir);
  out.append(",\"streams\":[");
  for (size_t i = 0; i < infos.size(); ++i) {
    out.append(i > 0 ? ",\n  " : "\n  ");
    AppendStreamJson(infos[i], &out);
  }
  out.append(infos.empty() ? "]}\n" : "\n]}\n");
  return out;
}

}  // namespace

int RunInspect(std::span<char* const> argv) {
  auto args = ParseArgs(argv, kOptions);
  if (!args.ok()) return UsageError("inspect", args.status().message());
  if (args->positional.size() != 1) return UsageError("inspect", "expected DIR");
  const std::string& dir = args->positional[0];
  auto client = OpenReadOnly(dir);
  if (!client.ok()) return Fail(client.status());
  bool failed = false;
  std::vector<StreamInfo> infos = InspectAll(client->get(), dir, &failed);
  Output out;
  out.Write(args->Has("--json") ? RenderJson(dir, infos) : RenderText(dir, infos));
  if (!out.Flush()) {
    PrintError("writing to stdout failed");
    return kExitFail;
  }
  return failed ? kExitFail : kExitOk;
}

}  // namespace comet::cli
